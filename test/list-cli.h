/* Tests of the cli module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CLI(TEST, HELPER) /* end */
