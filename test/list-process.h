/* Tests of the process module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_PROCESS(TEST, HELPER) /* end */
