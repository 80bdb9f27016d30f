/* Tests of the process module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_PROCESS(TEST, HELPER)         \
  TEST(process_exit_code, 5000)                  \
  TEST(process_exit_signal, 5000)                \
  TEST(process_close_after_exit_and_pipes, 5000) \
  TEST(process_unread_pipes_drained, 5000)       \
  TEST(process_argv0, 5000)                      \
  TEST(process_cwd, 5000)                        \
  TEST(process_env_replace, 5000)                \
  TEST(process_env_extend, 5000)                 \
  TEST(process_path_from_child_env, 5000)        \
  TEST(process_stdio_ignore, 5000)               \
  TEST(process_stdio_fd_and_inherit, 5000)       \
  TEST(process_stdio_fd_overlap, 5000)           \
  TEST(process_detached, 5000)                   \
  TEST(process_shell, 5000)                      \
  TEST(process_kill, 5000)                       \
  TEST(process_ref_unref, 5000)                  \
  TEST(process_timeout, 5000)                    \
  TEST(process_timeout_escalation, 5000)         \
  TEST(process_abort, 5000)                      \
  TEST(process_spawn_errors, 5000)               \
  TEST(process_spawn_errors_fork_path, 5000)     \
  TEST(process_emfile, 5000)                     \
  TEST(process_no_fd_leak, 5000)                 \
  TEST(process_no_zombies, 5000)                 \
  TEST(process_close_before_exit, 8000)          \
  TEST(process_stream_100mb, 15000)              \
  TEST(process_loop_never_blocks, 10000)         \
  TEST(process_uid_gid, 5000)                    \
  TEST(process_ipc_channel, 5000)                \
  TEST(process_stdin_write_end, 5000)            \
  TEST(process_close_variants, 5000)             \
  TEST(process_script_without_shebang, 5000)     \
  TEST(process_paused_pipe_kept, 5000)           \
  TEST(process_signals_default, 5000)            \
  TEST(process_unref_pipes_hold_loop, 5000)      \
  TEST(process_sigchld_ignored, 10000)           \
  TEST(process_sigchld_ignored_inherited, 10000) \
  TEST(process_foreign_wait_all, 5000)           \
  TEST(process_close_range_missing, 5000)        \
  TEST(process_parent_death_signal, 8000)        \
  TEST(process_group, 8000)                      \
  TEST(process_listen_fds, 5000)                 \
  TEST(process_subreaper_orphans, 15000)         \
  TEST(exec_output, 5000)                        \
  TEST(exec_file_output, 5000)                   \
  TEST(exec_file_no_shell, 5000)                 \
  TEST(exec_max_buffer, 5000)                    \
  TEST(exec_max_buffer_default, 5000)            \
  TEST(exec_max_buffer_unlimited, 5000)          \
  TEST(exec_failed, 5000)                        \
  TEST(exec_timeout, 5000)                       \
  TEST(exec_spawn_error, 5000)                   \
  TEST(exec_abort, 5000)                         \
  TEST(exec_stdin, 5000)                         \
  TEST(exec_timeout_grandchild, 8000)            \
  TEST(exec_abort_grandchild, 8000)              \
  TEST(exec_file_timeout_grandchild, 8000)       \
  TEST(exec_file_abort_grandchild, 8000)         \
  TEST(exec_max_buffer_grandchild, 10000)        \
  TEST(exec_timeout_after_exit, 8000)            \
  TEST(spawn_sync_input, 5000)                   \
  TEST(spawn_sync_input_unread, 5000)            \
  TEST(spawn_sync_input_too_large, 5000)         \
  TEST(spawn_sync_status, 5000)                  \
  TEST(spawn_sync_timeout, 5000)                 \
  TEST(spawn_sync_enobufs, 5000)                 \
  TEST(spawn_sync_private_loop, 5000)            \
  TEST(exec_sync_stderr_inherit, 5000)           \
  TEST(exec_sync_failed, 5000)                   \
  TEST(exec_sync_timeout_grandchild, 8000)       \
  TEST(exec_file_sync_timeout_grandchild, 8000)  \
  TEST(spawn_sync_timeout_grandchild, 10000)     \
  TEST(exec_sync_max_buffer_grandchild, 8000)    \
  TEST(process_signal_names_node, 20000)         \
  TEST(process_kill_signal_names, 8000)          \
  TEST(process_kill_signal_invalid, 5000)        \
  TEST(process_spawn_event_node, 10000)          \
  TEST(process_spawn_event_order, 5000)          \
  TEST(process_spawnargs_node, 10000)            \
  TEST(process_stdio_node_defaults, 5000)        \
  TEST(process_stdio_node, 30000)                \
  TEST(process_stdio_parse, 5000)                \
  TEST(process_stdio_many, 8000)                 \
  TEST(spawn_sync_output_node, 10000)            \
  TEST(process_env_no_path_node, 10000)          \
  TEST(process_kill_group_on_exit, 10000)        \
  TEST(process_kill_group_after_close, 10000)    \
  TEST(process_kill_group, 10000)                \
  HELPER(process_fd_targets)                     \
  HELPER(process_sid)                            \
  HELPER(process_list_fds)                       \
  HELPER(process_sig_status)                     \
  HELPER(process_sigchld_checks)                 \
  HELPER(process_sigchld_ignored_exec)           \
  HELPER(process_no_close_range)                 \
  HELPER(process_pdeath_parent)                  \
  HELPER(process_group_ids)                      \
  HELPER(process_listen_report)                  \
  HELPER(process_make_orphans)                   \
  HELPER(process_fd_write)                       \
  HELPER(process_fd_report)
