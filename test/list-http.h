/* Tests of the http module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_HTTP(TEST, HELPER) /* end */
