/* Tests of Node's advanced serialization on the channel, across modules
 * (test-ipc-advanced.c, and the cluster ones in test-cluster-node.c):
 * TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_ADVANCED(TEST, HELPER)            \
  TEST(ipc_advanced_values, 20000)                   \
  TEST(ipc_advanced_json_bridge, 5000)               \
  TEST(ipc_advanced_wire, 20000)                     \
  TEST(ipc_advanced_handles, 5000)                   \
  TEST(ipc_advanced_malformed, 5000)                 \
  TEST(ipc_advanced_over_limit, 20000)               \
  TEST(ipc_advanced_socket_list, 5000)               \
  TEST(ipc_advanced_reply_flood, 30000)              \
  TEST(ipc_advanced_hangup, 5000)                    \
  TEST(ipc_advanced_open_parent, 5000)               \
  TEST(ipc_advanced_spawn_options, 5000)             \
  TEST(ipc_advanced_alloc, 60000)                    \
  TEST(ipc_advanced_node_parent, 30000)              \
  TEST(ipc_advanced_node_parent_handles, 30000)      \
  TEST(ipc_advanced_node_parent_echo_handles, 30000) \
  TEST(ipc_advanced_node_parent_big, 30000)          \
  TEST(ipc_advanced_node_parent_socket_list, 15000)  \
  TEST(ipc_advanced_fork_node_child, 30000)          \
  TEST(ipc_advanced_fork_herd_child, 20000)          \
  TEST(cluster_node_rr_advanced, 30000)              \
  TEST(cluster_node_shared_advanced, 30000)          \
  TEST(cluster_node_primary_rr_advanced, 30000)      \
  TEST(cluster_node_primary_none_advanced, 30000)    \
  HELPER(ipc_advanced_peer)
