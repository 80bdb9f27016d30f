/* Socket helpers of the cluster module: numeric addresses, binding the
 * sockets the primary shares and those a server opens for itself (TCP,
 * Unix socket paths, UDP, fds given by number), and reading them back. */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
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

int herd__sock_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr*)&ss, &len) != 0)
    return -errno;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in*)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6*)&ss)->sin6_port);
  return -1;
}

/* An fd given by number (Node's listen({fd}) and bind({fd})): a socket of
 * type `type` in an Internet or Unix family that is not connected, so that
 * neither a channel nor a client connection can be passed off as a server. */
static int sock_dup_checked(int fd, int type, int* out) {
  int v, dup_fd;
  socklen_t vl = sizeof(v);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);

  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) != 0 || v != type)
    return UV_EINVAL;
  vl = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &vl) != 0 ||
      (v != AF_INET && v != AF_INET6 && (v != AF_UNIX || type != SOCK_STREAM)))
    return UV_EINVAL;
  if (getpeername(fd, (struct sockaddr*)&ss, &sl) == 0 || errno != ENOTCONN)
    return UV_EINVAL;
  dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup_fd < 0)
    return -errno;
  *out = dup_fd;
  return 0;
}

int herd__sock_open(const herd__sock_t* s, int* fd_out, int* bound_port) {
  struct sockaddr_storage ss;
  socklen_t slen;
  int fd = -1, type, on = 1, r;

  switch (s->kind) {
    case HERD__SOCK_FD:
      r = sock_dup_checked(s->fd, SOCK_STREAM, &fd);
      if (r != 0)
        return r;
      if (herd__nonblock(fd, 1) != 0 ||
          (s->backlog > 0 && listen(fd, s->backlog) != 0))
        goto fail;
      break;
    case HERD__SOCK_PIPE: {
      struct sockaddr_un* sun = (struct sockaddr_un*)&ss;
      size_t n = s->address != NULL ? strlen(s->address) : 0;
      if (n == 0)
        return UV_EINVAL;
      if (n >= sizeof(sun->sun_path))
        return UV_ENAMETOOLONG;
      memset(sun, 0, sizeof(*sun));
      sun->sun_family = AF_UNIX;
      memcpy(sun->sun_path, s->address, n);
      fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0)
        return -errno;
      if (bind(fd, (struct sockaddr*)sun, sizeof(*sun)) != 0)
        goto fail;
      if (s->backlog > 0 && listen(fd, s->backlog) != 0) {
        r = -errno;
        close(fd);
        unlink(s->address); /* it was ours: bind created it */
        return r;
      }
      break;
    }
    case HERD__SOCK_UDP:
    case HERD__SOCK_TCP: {
      const char* host = s->address;
      int udp = s->kind == HERD__SOCK_UDP;
      if (udp && s->fd >= 0) {
        r = sock_dup_checked(s->fd, SOCK_DGRAM, &fd);
        if (r != 0)
          return r;
        if (herd__nonblock(fd, 1) != 0)
          goto fail;
        break;
      }
      if (udp && host == NULL)
        host = s->udp6 ? "::" : "0.0.0.0";
      r = herd__cluster_sockaddr(host, s->port, &type, &ss);
      if (r != 0)
        return r;
      if (udp && (type == 6) != !!s->udp6)
        return UV_EINVAL; /* Node: an address of the other family */
      slen =
          type == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
      fd = socket(
          ss.ss_family,
          (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0)
        return -errno;
      /* libuv's choices: SO_REUSEADDR on every TCP server, on UDP sockets
       * only when asked. */
      if ((!udp || s->reuseaddr) &&
          setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0)
        goto fail;
      if (type == 6 && s->ipv6only &&
          setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0)
        goto fail;
      if (bind(fd, (struct sockaddr*)&ss, slen) != 0)
        goto fail;
      if (!udp && s->backlog > 0 && listen(fd, s->backlog) != 0)
        goto fail;
      break;
    }
    default:
      return UV_EINVAL;
  }
  if (bound_port != NULL) {
    r = herd__sock_port(fd);
    if (r < -1) {
      close(fd);
      return r;
    }
    *bound_port = r;
  }
  *fd_out = fd;
  return 0;

fail:
  r = -errno;
  close(fd);
  return r;
}
