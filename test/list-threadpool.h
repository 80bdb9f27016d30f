/* Tests of the thread-pool example and of answering from the pool:
 * TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_THREADPOOL(TEST, HELPER)
