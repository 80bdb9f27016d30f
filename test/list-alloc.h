/* Allocation-failure tests: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_ALLOC(TEST, HELPER)        \
  TEST(alloc_spawn_pipes, 30000)              \
  TEST(alloc_spawn_shell_env, 30000)          \
  TEST(alloc_spawn_ipc, 30000)                \
  TEST(alloc_spawn_listen_fds, 30000)         \
  TEST(alloc_spawn_failure, 30000)            \
  TEST(alloc_spawn_many_fds, 30000)           \
  TEST(alloc_child_close_reaper, 30000)       \
  TEST(alloc_fork, 30000)                     \
  TEST(alloc_exec, 30000)                     \
  TEST(alloc_exec_file, 30000)                \
  TEST(alloc_exec_large_output, 60000)        \
  TEST(alloc_spawn_sync, 30000)               \
  TEST(alloc_spawn_sync_output, 30000)        \
  TEST(alloc_exec_sync, 30000)                \
  TEST(alloc_exec_file_sync, 30000)           \
  TEST(alloc_ipc_calls, 30000)                \
  TEST(alloc_ipc_open_parent, 30000)          \
  TEST(alloc_ipc_exchange, 30000)             \
  TEST(alloc_ipc_big_message, 30000)          \
  TEST(alloc_value_json, 30000)               \
  TEST(alloc_http_exchange, 30000)            \
  TEST(alloc_server_standalone, 10000)        \
  TEST(alloc_cluster_worker, 30000)           \
  TEST(alloc_cluster_primary, 60000)          \
  TEST(alloc_cluster_listen, 30000)           \
  TEST(alloc_cluster, 120000)                 \
  TEST(alloc_supervisor, 120000)              \
  TEST(alloc_supervisor_reload_scale, 120000) \
  TEST(alloc_supervisor_cluster, 180000)
