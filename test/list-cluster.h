/* Tests of the cluster module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_CLUSTER(TEST, HELPER) /* end */
