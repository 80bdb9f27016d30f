/* Tests of the cluster module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CLUSTER(TEST, HELPER)            \
  TEST(cluster_events, 10000)                       \
  TEST(cluster_settings_spawn, 10000)               \
  TEST(cluster_settings_spawn_env, 10000)           \
  TEST(cluster_default_args, 10000)                 \
  TEST(cluster_disconnect_all, 10000)               \
  TEST(cluster_policy_rr, 10000)                    \
  TEST(cluster_policy_shared, 10000)                \
  TEST(cluster_policy_reuseport, 10000)             \
  TEST(cluster_policy_env, 5000)                    \
  TEST(cluster_server_standalone, 5000)             \
  TEST(cluster_worker_disconnect, 10000)            \
  TEST(cluster_listen_error, 10000)                 \
  TEST(cluster_fork_enoent, 5000)                   \
  TEST(cluster_silent_output, 5000)                 \
  TEST(cluster_node_rr, 15000)                      \
  TEST(cluster_node_shared, 15000)                  \
  TEST(cluster_node_reuseport, 15000)               \
  TEST(cluster_node_reuseport_drain, 15000)         \
  TEST(cluster_node_primary_rr, 20000)              \
  TEST(cluster_node_primary_none, 20000)            \
  TEST(cluster_rr_declined, 10000)                  \
  TEST(cluster_rr_all_decline, 10000)               \
  TEST(cluster_rr_inflight_to_dead_worker, 10000)   \
  TEST(cluster_reuseport_slot_backlog, 15000)       \
  TEST(cluster_worker_primary_gone_at_start, 5000)  \
  TEST(cluster_server_emfile, 5000)                 \
  TEST(cluster_server_emfile_listen, 5000)          \
  TEST(cluster_server_poll_error, 5000)             \
  TEST(cluster_rr_emfile, 10000)                    \
  TEST(cluster_replace_rr_keepalive, 120000)        \
  TEST(cluster_replace_rr_close, 240000)            \
  TEST(cluster_replace_shared_keepalive, 120000)    \
  TEST(cluster_replace_shared_close, 180000)        \
  TEST(cluster_replace_reuseport_keepalive, 120000) \
  TEST(cluster_replace_reuseport_close, 180000)     \
  TEST(cluster_scale_down_rr, 20000)                \
  TEST(cluster_scale_down_shared, 20000)            \
  TEST(cluster_scale_down_reuseport, 20000)         \
  TEST(cluster_reuseport_disconnect_fork, 30000)    \
  TEST(cluster_replace_failures, 30000)             \
  TEST(cluster_node_replace, 60000)                 \
  TEST(cluster_close_kill_timeout, 10000)           \
  TEST(cluster_alloc_failures, 60000)               \
  TEST(cluster_protocol_lies, 10000)                \
  TEST(cluster_rr_handoff_fails, 10000)             \
  TEST(cluster_rr_poll_error, 10000)                \
  TEST(cluster_query_flood, 15000)                  \
  TEST(cluster_pipe, 20000)                         \
  TEST(cluster_node_pipe, 20000)                    \
  TEST(cluster_udp, 20000)                          \
  TEST(cluster_node_udp, 20000)                     \
  TEST(cluster_listen_fd, 20000)                    \
  TEST(cluster_node_listen_fd, 20000)               \
  TEST(cluster_listen_fd_refused, 10000)            \
  TEST(cluster_listen_zero, 20000)                  \
  TEST(cluster_node_listen_zero, 20000)             \
  TEST(cluster_node_primary_kinds_rr, 30000)        \
  TEST(cluster_node_primary_kinds_none, 30000)      \
  TEST(cluster_worker_events, 20000)                \
  TEST(cluster_worker_self, 20000)                  \
  TEST(cluster_node_worker_object, 20000)           \
  TEST(cluster_node_primary_worker_self, 20000)     \
  HELPER(cluster_self_worker)                       \
  HELPER(cluster_kind_worker)                       \
  HELPER(cluster_worker)                            \
  HELPER(cluster_raw_worker)                        \
  HELPER(cluster_liar)                              \
  HELPER(cluster_query_flood)
