/* Tests of the cli module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CLI(TEST, HELPER)        \
  TEST(cli_help_version, 10000)             \
  TEST(cli_demo_bad_flags, 15000)           \
  TEST(cli_demo_port_in_use, 10000)         \
  TEST(cli_demo_ab_rr, 30000)               \
  TEST(cli_demo_ab_shared, 30000)           \
  TEST(cli_demo_ab_reuseport, 30000)        \
  TEST(cli_demo_sigterm, 10000)             \
  TEST(cli_demo_worker_respawn, 15000)      \
  TEST(cli_demo_shutdown_under_load, 20000) \
  TEST(cli_demo_primary_sigkill, 10000)     \
  TEST(cli_demo_primary_stalled, 60000) /* end */
