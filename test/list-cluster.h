/* Tests of the cluster module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CLUSTER(TEST, HELPER) \
  TEST(cluster_events, 10000)            \
  TEST(cluster_disconnect_all, 10000)    \
  TEST(cluster_policy_rr, 10000)         \
  TEST(cluster_policy_shared, 10000)     \
  TEST(cluster_policy_reuseport, 10000)  \
  TEST(cluster_policy_env, 5000)         \
  TEST(cluster_server_standalone, 5000)  \
  HELPER(cluster_worker)
