/* Tests of the supervisor module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_SUPERVISOR(TEST, HELPER)      \
  TEST(supervisor_serve_reload_stop, 30000)      \
  TEST(supervisor_ready_modes, 30000)            \
  TEST(supervisor_backoff_gives_up, 30000)       \
  TEST(supervisor_fail_fast, 30000)              \
  TEST(supervisor_restart_after_uptime, 30000)   \
  TEST(supervisor_stop_escalates, 30000)         \
  TEST(supervisor_exit_kills_group, 30000)       \
  TEST(supervisor_reload_program_gone, 30000)    \
  TEST(supervisor_notify_from_group_only, 30000) \
  TEST(supervisor_bad_options, 30000)            \
  TEST(supervisor_cluster_kind, 60000) /* end */
