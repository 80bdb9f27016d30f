/* Tests of `herd run`: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_RUN(TEST, HELPER)       \
  TEST(run_help, 10000)                    \
  TEST(run_bad_usage, 60000)               \
  TEST(run_program_errors, 40000)          \
  TEST(run_check_plan, 30000)              \
  TEST(run_listen_errors, 60000)           \
  TEST(run_unix_stale, 10000)              \
  TEST(run_user, 10000)                    \
  TEST(run_inherited_sockets, 10000)       \
  TEST(run_reload_c_shared, 60000)         \
  TEST(run_reload_c_reuseport, 60000)      \
  TEST(run_reload_python_shared, 60000)    \
  TEST(run_reload_python_reuseport, 60000) \
  TEST(run_reload_node, 90000)             \
  TEST(run_bad_deploys, 60000)             \
  TEST(run_crash_loop, 40000)              \
  TEST(run_crash_after_long_life, 30000)   \
  TEST(run_graceful_stop_inflight, 30000)  \
  TEST(run_stop_kills_at_deadline, 30000)  \
  TEST(run_kill9_leaves_nothing, 30000)    \
  TEST(run_pid1_reaps_orphans, 30000)      \
  TEST(run_socket_activation, 30000)       \
  TEST(run_sd_notify_order, 30000)         \
  TEST(run_log_integrity, 90000)           \
  TEST(run_scale_ttin_ttou, 60000)         \
  TEST(run_passes_usr1, 30000)             \
  TEST(run_seed_rr, 150000)                \
  TEST(run_seed_shared, 150000)            \
  TEST(run_seed_reuseport, 150000)         \
  TEST(run_stop_second_signal, 30000)      \
  TEST(run_worker_id_stable, 30000)        \
  TEST(run_sd_notify_watchdog, 30000)      \
  TEST(run_user_workers, 30000)            \
  TEST(run_node_plain_server, 60000)       \
  TEST(run_node_listen_fd3, 60000)         \
  HELPER(run_log_lines)                    \
  TEST(run_hostile_scale_up_fails, 60000)  \
  TEST(run_hostile_signal_starting, 60000) \
  TEST(run_hostile_node_unready, 60000)    \
  TEST(run_hostile_names, 60000)           \
  TEST(run_hostile_messages, 60000)        \
  TEST(run_hostile_node_unix_only, 60000)  \
  TEST(run_hostile_user_unix, 30000)       \
  TEST(run_hostile_binary_file, 30000)     \
  TEST(run_hostile_demo_signals, 60000) /* end */
