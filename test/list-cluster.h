/* Tests of the cluster module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CLUSTER(TEST, HELPER)           \
  TEST(cluster_events, 10000)                      \
  TEST(cluster_disconnect_all, 10000)              \
  TEST(cluster_policy_rr, 10000)                   \
  TEST(cluster_policy_shared, 10000)               \
  TEST(cluster_policy_reuseport, 10000)            \
  TEST(cluster_policy_env, 5000)                   \
  TEST(cluster_server_standalone, 5000)            \
  TEST(cluster_worker_disconnect, 10000)           \
  TEST(cluster_listen_error, 10000)                \
  TEST(cluster_fork_enoent, 5000)                  \
  TEST(cluster_silent_output, 5000)                \
  TEST(cluster_node_rr, 15000)                     \
  TEST(cluster_node_shared, 15000)                 \
  TEST(cluster_node_reuseport, 15000)              \
  TEST(cluster_node_primary_rr, 20000)             \
  TEST(cluster_node_primary_none, 20000)           \
  TEST(cluster_rr_declined, 10000)                 \
  TEST(cluster_rr_inflight_to_dead_worker, 10000)  \
  TEST(cluster_reuseport_slot_backlog, 15000)      \
  TEST(cluster_worker_primary_gone_at_start, 5000) \
  TEST(cluster_server_emfile, 5000)                \
  TEST(cluster_server_emfile_listen, 5000)         \
  TEST(cluster_rr_emfile, 10000)                   \
  HELPER(cluster_worker)                           \
  HELPER(cluster_raw_worker)
