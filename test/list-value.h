/* Tests of the value module (JavaScript values and Node's advanced
 * serialization): TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_VALUE(TEST, HELPER) \
  TEST(value_api, 5000)                \
  TEST(value_bad_arguments, 5000)      \
  TEST(value_roundtrip, 10000)         \
  TEST(value_node_channel, 30000)      \
  TEST(value_node_v8, 30000)           \
  TEST(value_json, 5000)               \
  TEST(value_number_strings, 30000)    \
  TEST(value_json_vs_node, 30000)      \
  TEST(value_malformed, 20000)         \
  TEST(value_limits, 10000)            \
  TEST(value_alloc_failure, 30000)     \
  HELPER(value_peer)
