/* Socket helpers of the cluster module: numeric addresses, binding the
 * sockets the primary shares, and reading them back. */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int herd__cluster_sockaddr(const char* host, int port, int* address_type,
                           struct sockaddr_storage* ss) {
  memset(ss, 0, sizeof(*ss));
  if (port < 0 || port > 65535)
    return UV_EINVAL;
  if (host == NULL || host[0] == '\0') {
    /* Node binds "any" when no host is given; IPv4 keeps it simple and
     * matches addressType 4 that Node workers announce for it. */
    struct sockaddr_in* sin = (struct sockaddr_in*)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    *address_type = 4;
    return 0;
  }
  if (uv_ip4_addr(host, port, (struct sockaddr_in*)ss) == 0) {
    *address_type = 4;
    return 0;
  }
  if (uv_ip6_addr(host, port, (struct sockaddr_in6*)ss) == 0) {
    *address_type = 6;
    return 0;
  }
  return UV_EINVAL;
}

int herd__cluster_bind(const char* host, int port, int reuseport, int backlog,
                       int* fd_out, int* bound_port) {
  struct sockaddr_storage ss;
  socklen_t slen;
  int type, fd, on = 1, r;

  r = herd__cluster_sockaddr(host, port, &type, &ss);
  if (r != 0)
    return r;
  slen = type == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  /* SO_REUSEADDR as libuv sets it: a restarted primary can bind at once even
   * with connections of the previous run in TIME_WAIT. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0)
    goto fail;
  if (reuseport &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
    goto fail;
  if (bind(fd, (struct sockaddr*)&ss, slen) != 0)
    goto fail;
  if (backlog > 0 && listen(fd, backlog) != 0)
    goto fail;
  if (bound_port != NULL) {
    r = herd__cluster_sockname(fd, NULL, 0, NULL, bound_port);
    if (r != 0) {
      close(fd);
      return r;
    }
  }
  *fd_out = fd;
  return 0;

fail:
  r = -errno;
  close(fd);
  return r;
}

int herd__cluster_sockname(int fd, char* address, size_t cap, int* family,
                           int* port) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);

  if (getsockname(fd, (struct sockaddr*)&ss, &len) != 0)
    return -errno;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in* sin = (struct sockaddr_in*)&ss;
    if (address != NULL)
      inet_ntop(AF_INET, &sin->sin_addr, address, (socklen_t)cap);
    if (port != NULL)
      *port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6* sin6 = (struct sockaddr_in6*)&ss;
    if (address != NULL)
      inet_ntop(AF_INET6, &sin6->sin6_addr, address, (socklen_t)cap);
    if (port != NULL)
      *port = ntohs(sin6->sin6_port);
  } else {
    return UV_EINVAL;
  }
  if (family != NULL)
    *family = ss.ss_family;
  return 0;
}
