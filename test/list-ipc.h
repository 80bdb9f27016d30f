/* Tests of the ipc module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_IPC(TEST, HELPER)        \
  TEST(ipc_json, 5000)                      \
  TEST(ipc_json_vs_node, 10000)             \
  TEST(ipc_roundtrip, 20000)                \
  TEST(ipc_bad_input, 5000)                 \
  TEST(ipc_line_too_long, 10000)            \
  TEST(ipc_peer_close_mid_message, 5000)    \
  TEST(ipc_stray_fds_and_internal, 5000)    \
  TEST(ipc_handle_nack, 5000)               \
  TEST(ipc_backpressure, 15000)             \
  TEST(ipc_buffer_until_start, 5000)        \
  TEST(ipc_open_parent_env, 5000)           \
  TEST(ipc_handle_pass, 5000)               \
  TEST(ipc_fork_herd_child, 30000)          \
  TEST(ipc_fork_node_child, 30000)          \
  TEST(ipc_node_parent, 30000)              \
  TEST(ipc_node_parent_echo_example, 30000) \
  TEST(ipc_node_parent_advanced, 15000)     \
  TEST(ipc_example_fork_count, 15000)       \
  TEST(ipc_fork_silent_exec_argv, 10000)    \
  TEST(ipc_internal_handle, 5000)           \
  TEST(ipc_ref_unref, 5000)                 \
  TEST(ipc_send_from_prepare, 5000)         \
  TEST(ipc_send_from_timer, 5000)           \
  TEST(ipc_reply_same_turn, 5000)           \
  TEST(ipc_forward_as_received, 5000)       \
  TEST(ipc_huge_message, 10000)             \
  TEST(ipc_fd_pairing, 5000)                \
  TEST(ipc_fork_child_close, 10000)         \
  TEST(ipc_ack_before_written, 5000)        \
  TEST(ipc_nack_before_written, 5000)       \
  TEST(ipc_stray_internal_replies, 5000)    \
  TEST(ipc_reply_flood, 20000)              \
  TEST(ipc_both_ways_bulk, 20000)           \
  TEST(ipc_alloc_failures, 20000)           \
  TEST(ipc_worker_stray_replies, 10000)     \
  TEST(ipc_worker_many_orphans, 10000)      \
  TEST(ipc_worker_newconn, 10000)           \
  TEST(ipc_worker_disconnect_ack, 10000)    \
  TEST(ipc_worker_reply_flood, 20000)       \
  TEST(ipc_node_parent_big, 30000)          \
  TEST(ipc_node_parent_over_limit, 30000)   \
  TEST(ipc_node_parent_socket_list, 15000)  \
  TEST(ipc_node_child_exits, 15000)         \
  HELPER(ipc_peer)                          \
  HELPER(ipc_worker)                        \
  /* end */
