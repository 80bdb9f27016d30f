/* Tests of the supervisor module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_SUPERVISOR(TEST, HELPER) \
  TEST(supervisor_serve_reload_stop, 30000) /* end */
