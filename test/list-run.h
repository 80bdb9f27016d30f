/* Tests of `herd run`: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_RUN(TEST, HELPER)    \
  TEST(run_help, 10000)                 \
  TEST(run_bad_usage, 60000)            \
  TEST(run_program_errors, 40000)       \
  TEST(run_check_plan, 30000)           \
  TEST(run_listen_errors, 60000)        \
  TEST(run_unix_stale, 10000)           \
  TEST(run_user, 10000)                 \
  TEST(run_inherited_sockets, 10000)    \
  TEST(run_reload_c_shared, 60000)      \
  TEST(run_reload_c_reuseport, 60000)   \
  TEST(run_reload_python_shared, 60000) \
  TEST(run_reload_python_reuseport, 60000) /* end */
