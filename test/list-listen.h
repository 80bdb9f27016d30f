/* Tests of the listen module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_LISTEN(TEST, HELPER) \
  TEST(listen_parse, 10000)             \
  TEST(listen_bind_tcp, 5000)           \
  TEST(listen_bind_dual_stack, 5000)    \
  TEST(listen_bind_unix, 5000)          \
  TEST(listen_bind_unix_abstract, 5000) \
  TEST(listen_addr_from_fd, 5000) /* end */
