#include "task.h"

#include <fcntl.h>
#include <unistd.h>

TEST_IMPL(error_names) {
  ASSERT_STR_EQ(herd_err_name(HERD_EMAXBUFFER), "HERD_EMAXBUFFER");
  ASSERT_STR_EQ(herd_strerror(HERD_EMAXBUFFER), "maxBuffer length exceeded");
  ASSERT_STR_EQ(herd_err_name(UV_ENOENT), "ENOENT");
  ASSERT_STR_EQ(herd_err_name(HERD_EWORKERDIED), "HERD_EWORKERDIED");
  return 0;
}

/* The runner's own fd check must notice a leaked fd: run a helper that
 * leaks one on purpose as a test... simpler: count fds around an open. */
TEST_IMPL(runner_fd_check) {
  int before = test_count_fds();
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT(fd >= 0);
  ASSERT_EQ(test_count_fds(), before + 1);
  close(fd);
  ASSERT_EQ(test_count_fds(), before);
  return 0;
}

HELPER_IMPL(hello) {
  (void)argc;
  (void)argv;
  printf("hello\n");
  return 0;
}
