/* Tests of the core module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CORE(TEST, HELPER) \
  TEST(error_names, 5000)             \
  TEST(runner_fd_check, 5000)         \
  HELPER(hello)
