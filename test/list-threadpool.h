/* Tests of answering HTTP requests from libuv's thread pool and of
 * examples/threadpool-deflate: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_THREADPOOL(TEST, HELPER) \
  TEST(threadpool_loop_responsive, 20000)   \
  TEST(threadpool_example, 30000)
