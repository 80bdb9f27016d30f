#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>

/* Sets or clears `bit` in the flags that fcntl() reads with `get` and
 * writes with `put`. */
static int fd_flag(int fd, int get, int put, int bit, int set) {
  int flags = fcntl(fd, get);
  if (flags == -1)
    return -errno;
  flags = set ? (flags | bit) : (flags & ~bit);
  if (fcntl(fd, put, flags) == -1)
    return -errno;
  return 0;
}

int herd__cloexec(int fd, int set) {
  return fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, set);
}

int herd__nonblock(int fd, int set) {
  return fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, set);
}

void* herd__malloc(size_t size) {
  return malloc(size);
}

void* herd__realloc(void* p, size_t size) {
  return realloc(p, size);
}
