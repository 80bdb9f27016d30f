#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>

int herd__cloexec(int fd, int set) {
  int flags = fcntl(fd, F_GETFD);
  if (flags == -1)
    return -errno;
  flags = set ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (fcntl(fd, F_SETFD, flags) == -1)
    return -errno;
  return 0;
}

int herd__nonblock(int fd, int set) {
  int flags = fcntl(fd, F_GETFL);
  if (flags == -1)
    return -errno;
  flags = set ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, flags) == -1)
    return -errno;
  return 0;
}

void* herd__malloc(size_t size) {
  return malloc(size);
}

void* herd__realloc(void* p, size_t size) {
  return realloc(p, size);
}
