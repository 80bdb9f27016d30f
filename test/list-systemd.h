/* Tests of the systemd module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_SYSTEMD(TEST, HELPER) \
  TEST(sd_notify_parse, 5000)            \
  TEST(sd_notifier_send, 5000)           \
  TEST(sd_notifier_watchdog, 5000)       \
  TEST(sd_listen_fds, 10000)             \
  TEST(sd_notify_socket, 10000)          \
  HELPER(sd_listen_fds_check)            \
  HELPER(sd_notify_sender)
