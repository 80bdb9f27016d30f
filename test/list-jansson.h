/* Tests of the jansson companion (libherd-jansson): TEST(name, timeout_ms)
 * and HELPER(name). */
#define HERD_TESTS_JANSSON(TEST, HELPER) \
  TEST(jansson_node_child, 20000)        \
  TEST(jansson_cluster, 20000)           \
  TEST(jansson_parse_errors, 5000)       \
  TEST(jansson_buffer, 5000)             \
  TEST(jansson_send_errors, 5000)        \
  HELPER(jansson_worker)
