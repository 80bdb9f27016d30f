/* Tests of the listen module: address parsing, binding (reuseport groups,
 * dual stack, unix socket files stale and live), inherited sockets. */
#include "task.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

TEST_IMPL(listen_parse) {
  static const struct {
    const char* text;
    int family;
    int port;
    unsigned flags;
    const char* canonical;
  } good[] = {
      {"127.0.0.1:8000", AF_INET, 8000, 0, "127.0.0.1:8000"},
      {"0.0.0.0:0", AF_INET, 0, 0, "0.0.0.0:0"},
      {"[::1]:65535", AF_INET6, 65535, 0, "[::1]:65535"},
      {"[::]:80", AF_INET6, 80, 0, "[::]:80"},
      {"[0:0::1]:80", AF_INET6, 80, 0, "[::1]:80"},
      {":8080", AF_INET6, 8080, HERD_LISTEN_ANY, ":8080"},
      {"localhost:81", AF_INET, 81, 0, "127.0.0.1:81"},
      {"unix:/run/app.sock", AF_UNIX, 0, 0, "unix:/run/app.sock"},
      {"unix:rel/app.sock", AF_UNIX, 0, 0, "unix:rel/app.sock"},
      {"unix:@herd", AF_UNIX, 0, HERD_LISTEN_ABSTRACT, "unix:@herd"},
  };
  static const struct {
    const char* text;
    int err;
  } bad[] = {
      {"", UV_EINVAL},
      {":", UV_EINVAL},
      {"8000", UV_EINVAL},
      {"127.0.0.1", UV_EINVAL},
      {"127.0.0.1:", UV_EINVAL},
      {"127.0.0.1:65536", UV_EINVAL},
      {"127.0.0.1:-1", UV_EINVAL},
      {"127.0.0.1:+1", UV_EINVAL},
      {"127.0.0.1:80x", UV_EINVAL},
      {"127.0.0.1: 80", UV_EINVAL},
      {"::1:80", UV_EINVAL},
      {"[::1]", UV_EINVAL},
      {"[::1]:", UV_EINVAL},
      {"[::1]80", UV_EINVAL},
      {"[]:80", UV_EINVAL},
      {"[127.0.0.1]:80", UV_EINVAL},
      {"[zz::1]:80", UV_EINVAL},
      {"unix:", UV_EINVAL},
      {"unix:@", UV_EINVAL},
      {"tcp:127.0.0.1:80", UV_EINVAL},
  };
  char longpath[200];
  herd_listen_addr_t a;

  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    memset(&a, 0xff, sizeof(a));
    if (herd_listen_parse(good[i].text, &a) != 0)
      FATAL("'%s' did not parse", good[i].text);
    ASSERT_EQ(a.family, good[i].family);
    ASSERT_EQ(a.port, good[i].port);
    ASSERT_EQ(a.flags, good[i].flags);
    ASSERT_STR_EQ(a.text, good[i].canonical);
    ASSERT_EQ(a.sa.ss_family, good[i].family);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int r = herd_listen_parse(bad[i].text, &a);
    if (r != bad[i].err)
      FATAL("'%s': %d (%s)", bad[i].text, r, herd_err_name(r));
  }
  /* Unix names: 107 bytes fit, 108 do not. */
  memset(longpath, 'x', sizeof(longpath));
  memcpy(longpath, "unix:/", 6);
  longpath[5 + 107] = '\0';
  ASSERT_OK(herd_listen_parse(longpath, &a));
  longpath[5 + 107] = 'x';
  longpath[5 + 108] = '\0';
  ASSERT_EQ(herd_listen_parse(longpath, &a), UV_ENAMETOOLONG);
  /* Abstract names: "@" and 107 bytes fit, 108 do not. */
  memcpy(longpath, "unix:@", 6);
  longpath[5 + 108] = 'x';
  longpath[5 + 109] = '\0';
  ASSERT_EQ(herd_listen_parse(longpath, &a), UV_ENAMETOOLONG);
  longpath[5 + 108] = '\0';
  ASSERT_OK(herd_listen_parse(longpath, &a));
  ASSERT_EQ(a.len, offsetof(struct sockaddr_un, sun_path) + 1 + 107);
  /* A name that does not resolve. */
  ASSERT(herd_listen_parse("no-such-host.invalid:80", &a) < 0);
  ASSERT_EQ(herd_listen_parse(NULL, &a), UV_EINVAL);
  return 0;
}

static int fd_flags_ok(int fd) {
  return (fcntl(fd, F_GETFD) & FD_CLOEXEC) && (fcntl(fd, F_GETFL) & O_NONBLOCK);
}

/* Connects to `addr` and returns the connected fd (blocking), or -1. */
static int connect_to(const herd_listen_addr_t* addr) {
  int fd = socket(addr->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  if (connect(fd, (const struct sockaddr*)&addr->sa, addr->len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int connect_loopback(int family, int port) {
  herd_listen_addr_t a;
  char text[64];
  snprintf(text, sizeof(text), family == AF_INET ? "127.0.0.1:%d" : "[::1]:%d",
           port);
  ASSERT_OK(herd_listen_parse(text, &a));
  return connect_to(&a);
}

/* Accepts one connection within ms, -1 if none came. */
static int accept_within(int lfd, int ms) {
  struct pollfd pfd = {lfd, POLLIN, 0};
  if (poll(&pfd, 1, ms) != 1)
    return -1;
  return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

TEST_IMPL(listen_bind_tcp) {
  herd_listen_addr_t a, b;
  herd_listen_options_t o;
  int fd, fd2, fd3, c, s, on = 0;
  socklen_t len = sizeof(on);

  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  ASSERT(a.port > 0);
  ASSERT(fd_flags_ok(fd));
  ASSERT_OK(getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, &len));
  ASSERT(on);
  {
    char want[32];
    snprintf(want, sizeof(want), "127.0.0.1:%d", a.port);
    ASSERT_STR_EQ(a.text, want);
  }
  c = connect_to(&a);
  ASSERT(c >= 0);
  s = accept_within(fd, 1000);
  ASSERT(s >= 0);
  close(s);
  close(c);

  /* The same address again: in use, without SO_REUSEPORT. */
  b = a;
  ASSERT_EQ(herd_listen_bind(&b, NULL, &fd2), UV_EADDRINUSE);
  close(fd);

  /* A reuseport group: every socket, the first included, gets the flag,
   * and later ones bind the port the first got. */
  memset(&o, 0, sizeof(o));
  o.flags = HERD_LISTEN_REUSEPORT;
  o.backlog = 16;
  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
  ASSERT_OK(herd_listen_bind(&a, &o, &fd));
  ASSERT(a.port > 0);
  ASSERT_OK(herd_listen_bind(&a, &o, &fd2));
  ASSERT_OK(herd_listen_bind(&a, &o, &fd3));
  on = 0;
  ASSERT_OK(getsockopt(fd3, SOL_SOCKET, SO_REUSEPORT, &on, &len));
  ASSERT(on);
  for (int i = 0; i < 8; i++) {
    c = connect_to(&a);
    ASSERT(c >= 0);
    {
      /* The connection is queued on one socket of the group. */
      struct pollfd pfd[3] = {
          {fd, POLLIN, 0}, {fd2, POLLIN, 0}, {fd3, POLLIN, 0}};
      ASSERT(poll(pfd, 3, 1000) >= 1);
      s = -1;
      for (int k = 0; k < 3 && s < 0; k++)
        if (pfd[k].revents & POLLIN)
          s = accept4(pfd[k].fd, NULL, NULL, SOCK_CLOEXEC);
    }
    ASSERT(s >= 0);
    close(s);
    close(c);
  }
  /* Without the flag the group refuses a newcomer. */
  b = a;
  ASSERT_EQ(herd_listen_bind(&b, NULL, &s), UV_EADDRINUSE);
  close(fd);
  close(fd2);
  close(fd3);

  /* Not a local address. */
  ASSERT_OK(herd_listen_parse("192.0.2.1:0", &a));
  ASSERT_EQ(herd_listen_bind(&a, NULL, &fd), UV_EADDRNOTAVAIL);
  memset(&a, 0, sizeof(a));
  ASSERT_EQ(herd_listen_bind(&a, NULL, &fd), UV_EINVAL);
  return 0;
}

static int have_ipv6(void) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in6 sin6;
  int ok;
  if (fd < 0)
    return 0;
  memset(&sin6, 0, sizeof(sin6));
  sin6.sin6_family = AF_INET6;
  sin6.sin6_addr = in6addr_loopback;
  ok = bind(fd, (struct sockaddr*)&sin6, sizeof(sin6)) == 0;
  close(fd);
  return ok;
}

TEST_IMPL(listen_bind_dual_stack) {
  herd_listen_addr_t any, v6, v4;
  int fd, fd6, fd4, c, s;
  char text[32];

  if (!have_ipv6()) {
    fprintf(stderr, "no IPv6 loopback: only the IPv4 part\n");
    ASSERT_OK(herd_listen_parse(":0", &any));
    ASSERT_OK(herd_listen_bind(&any, NULL, &fd));
    c = connect_loopback(AF_INET, any.port);
    ASSERT(c >= 0);
    close(c);
    close(fd);
    return 0;
  }
  /* ":PORT" takes IPv4 and IPv6 clients on one socket. */
  ASSERT_OK(herd_listen_parse(":0", &any));
  ASSERT_OK(herd_listen_bind(&any, NULL, &fd));
  ASSERT(any.port > 0);
  snprintf(text, sizeof(text), ":%d", any.port);
  ASSERT_STR_EQ(any.text, text);
  for (int family = AF_INET;; family = AF_INET6) {
    c = connect_loopback(family, any.port);
    ASSERT(c >= 0);
    s = accept_within(fd, 1000);
    ASSERT(s >= 0);
    close(s);
    close(c);
    if (family == AF_INET6)
      break;
  }
  close(fd);

  /* "[::]:PORT" is IPv6 only, so 0.0.0.0:PORT can be listened on too. */
  ASSERT_OK(herd_listen_parse("[::]:0", &v6));
  ASSERT_OK(herd_listen_bind(&v6, NULL, &fd6));
  snprintf(text, sizeof(text), "0.0.0.0:%d", v6.port);
  ASSERT_OK(herd_listen_parse(text, &v4));
  ASSERT_OK(herd_listen_bind(&v4, NULL, &fd4));
  close(fd6);
  close(fd4);
  return 0;
}

static void unix_addr(herd_listen_addr_t* a, char* path, size_t cap) {
  char text[160];
  snprintf(path, cap, "/tmp/herd-listen-%d.sock", (int)getpid());
  unlink(path);
  snprintf(text, sizeof(text), "unix:%s", path);
  ASSERT_OK(herd_listen_parse(text, a));
}

TEST_IMPL(listen_bind_unix) {
  herd_listen_addr_t a, b;
  char path[128];
  struct stat st;
  int fd, fd2, c, s, f;
  mode_t old = umask(077);

  /* The file gets mode 0666 whatever the umask, as systemd and nginx do. */
  unix_addr(&a, path, sizeof(path));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  ASSERT(fd_flags_ok(fd));
  ASSERT(a.flags & HERD_LISTEN_OWNED);
  ASSERT_EQ(lstat(path, &st), 0);
  ASSERT(S_ISSOCK(st.st_mode));
  ASSERT_EQ(st.st_mode & 0777, 0666);
  ASSERT_EQ(umask(077), 077); /* restored */
  c = connect_to(&a);
  ASSERT(c >= 0);
  s = accept_within(fd, 1000);
  ASSERT(s >= 0);
  close(s);
  close(c);

  /* Someone listens there: in use, and the file stays. */
  b = a;
  ASSERT_EQ(herd_listen_bind(&b, NULL, &fd2), UV_EADDRINUSE);
  ASSERT_EQ(lstat(path, &st), 0);

  /* The listener died without removing its file: the file is stale and
   * taken over. */
  close(fd);
  b = a;
  ASSERT_OK(herd_listen_bind(&b, NULL, &fd2));
  c = connect_to(&b);
  ASSERT(c >= 0);
  close(c);

  /* Cleanup removes only the file it created: here another process
   * replaced it (as a systemd socket unit would, removing whatever is
   * there) while this one still held its socket. */
  ASSERT_EQ(unlink(path), 0);
  a = b;
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  ASSERT_OK(herd_listen_cleanup(&b));
  ASSERT_EQ(lstat(path, &st), 0);
  close(fd2);
  ASSERT_OK(herd_listen_cleanup(&a));
  ASSERT_EQ(lstat(path, &st), -1);
  ASSERT_OK(herd_listen_cleanup(&a)); /* already gone: fine */
  close(fd);

  /* A regular file is never removed. */
  f = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT(f >= 0);
  close(f);
  b = a;
  ASSERT_EQ(herd_listen_bind(&b, NULL, &fd2), UV_EEXIST);
  ASSERT_EQ(lstat(path, &st), 0);
  ASSERT(S_ISREG(st.st_mode));
  unlink(path);

  /* A missing directory. */
  ASSERT_OK(herd_listen_parse("unix:/tmp/herd-no-such-dir/x.sock", &b));
  ASSERT_EQ(herd_listen_bind(&b, NULL, &fd2), UV_ENOENT);

  /* A mode of the caller's choosing. */
  {
    herd_listen_options_t o;
    memset(&o, 0, sizeof(o));
    o.unix_mode = 0600;
    b = a;
    ASSERT_OK(herd_listen_bind(&b, &o, &fd2));
    ASSERT_EQ(lstat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_OK(herd_listen_cleanup(&b));
    close(fd2);
  }
  umask(old);
  return 0;
}

TEST_IMPL(listen_bind_unix_abstract) {
  herd_listen_addr_t a, b;
  char text[64];
  int fd, fd2, c, s;

  snprintf(text, sizeof(text), "unix:@herd-listen-%d", (int)getpid());
  ASSERT_OK(herd_listen_parse(text, &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  ASSERT(!(a.flags & HERD_LISTEN_OWNED));
  c = connect_to(&a);
  ASSERT(c >= 0);
  s = accept_within(fd, 1000);
  ASSERT(s >= 0);
  close(s);
  close(c);
  b = a;
  ASSERT_EQ(herd_listen_bind(&b, NULL, &fd2), UV_EADDRINUSE);
  ASSERT_OK(herd_listen_addr_from_fd(fd, &b));
  ASSERT_STR_EQ(b.text, text);
  ASSERT(b.flags & HERD_LISTEN_ABSTRACT);
  ASSERT_OK(herd_listen_cleanup(&a));
  close(fd);
  return 0;
}

TEST_IMPL(listen_addr_from_fd) {
  herd_listen_addr_t a, d;
  char path[128];
  int fd, p[2], s;

  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  ASSERT_OK(herd_listen_addr_from_fd(fd, &d));
  ASSERT_EQ(d.family, AF_INET);
  ASSERT_EQ(d.port, a.port);
  ASSERT_STR_EQ(d.text, a.text);
  ASSERT_EQ(d.flags, HERD_LISTEN_INHERITED);
  close(fd);

  unix_addr(&a, path, sizeof(path));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  ASSERT_OK(herd_listen_addr_from_fd(fd, &d));
  ASSERT_STR_EQ(d.text, a.text);
  ASSERT(!(d.flags & HERD_LISTEN_OWNED));
  ASSERT_OK(herd_listen_cleanup(&d)); /* not its file: nothing */
  ASSERT_EQ(access(path, F_OK), 0);
  ASSERT_OK(herd_listen_cleanup(&a));
  close(fd);

  /* Not listening, not a socket, not open. */
  s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(herd_listen_addr_from_fd(s, &d), UV_EINVAL);
  close(s);
  s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(herd_listen_addr_from_fd(s, &d), UV_EINVAL);
  close(s);
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  ASSERT_EQ(herd_listen_addr_from_fd(p[0], &d), UV_ENOTSOCK);
  close(p[0]);
  close(p[1]);
  ASSERT_EQ(herd_listen_addr_from_fd(p[0], &d), UV_EBADF);
  return 0;
}
