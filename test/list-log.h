/* Tests of the log module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_LOG(TEST, HELPER) \
  TEST(log_eight_writers, 60000)     \
  TEST(log_long_lines, 10000)        \
  TEST(log_output_socket, 10000)     \
  TEST(log_shared_output, 20000)     \
  TEST(log_output_error, 10000)      \
  TEST(log_close_early, 10000)       \
  TEST(log_out_of_memory, 10000)     \
  HELPER(log_writer)
