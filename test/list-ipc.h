/* Tests of the ipc module: TEST(name, timeout_ms) and HELPER(name). */
#define HERD_TESTS_IPC(TEST, HELPER) /* end */
