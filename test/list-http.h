/* Tests of the http module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_HTTP(TEST, HELPER)       \
  TEST(http_get, 5000)                      \
  TEST(http_keep_alive, 5000)               \
  TEST(http_pipelining, 5000)               \
  TEST(http_pipelining_many, 10000)         \
  TEST(http_connection_close, 5000)         \
  TEST(http_http10, 5000)                   \
  TEST(http_bad_request, 5000)              \
  TEST(http_header_too_large, 5000)         \
  TEST(http_body_too_large, 5000)           \
  TEST(http_post_body, 10000)               \
  TEST(http_idle_timeout, 5000)             \
  TEST(http_client_abort, 5000)             \
  TEST(http_adopt, 5000)                    \
  TEST(http_adopt_early_data, 5000)         \
  TEST(http_adopt_waiting, 5000)            \
  TEST(http_adopt_waiting_idle, 5000)       \
  TEST(http_accept, 5000)                   \
  TEST(http_graceful_close, 5000)           \
  TEST(http_graceful_waiting, 5000)         \
  TEST(http_graceful_waiting_adopt, 5000)   \
  TEST(http_graceful_partial, 5000)         \
  TEST(http_graceful_partial_adopt, 5000)   \
  TEST(http_graceful_idle, 5000)            \
  TEST(http_graceful_idle_adopt, 5000)      \
  TEST(http_graceful_silent, 5000)          \
  TEST(http_graceful_silent_adopt, 5000)    \
  TEST(http_graceful_ab, 30000)             \
  TEST(http_graceful_ab_adopt, 30000)       \
  TEST(http_graceful_ab_close, 30000)       \
  TEST(http_graceful_ab_close_adopt, 30000) \
  TEST(http_node_client, 15000)             \
  TEST(http_api_errors, 5000)               \
  TEST(http_accept_batch, 10000)
