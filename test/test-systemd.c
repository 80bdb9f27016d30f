/* Tests of the systemd module: the sd_notify client and its watchdog,
 * sd_listen_fds for herd itself, and the notify socket herd gives workers
 * (messages parsed, attributed by kernel credentials, bad datagrams
 * dropped). Real sockets and real child processes throughout. */
#include "task.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_usec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Parses a string literal, without its terminating NUL. */
#define PARSE(lit) herd_sd_notify_parse(lit, sizeof(lit) - 1, &m)

TEST_IMPL(sd_notify_parse) {
  herd_sd_notify_msg_t m;
  char big[HERD_SD_MESSAGE_MAX + 2];
  static const char all[] =
      "READY=1\nRELOADING=1\nSTOPPING=1\nWATCHDOG=1\nSTATUS=serving 2/2\n"
      "MAINPID=4242\nMONOTONIC_USEC=123456\nERRNO=2\nEXTEND_TIMEOUT_USEC=5\n"
      "X_UNKNOWN=whatever";

  ASSERT_OK(herd_sd_notify_parse(all, sizeof(all) - 1, &m));
  ASSERT_EQ(m.fields, HERD_SD_READY | HERD_SD_RELOADING | HERD_SD_STOPPING |
                          HERD_SD_WATCHDOG | HERD_SD_STATUS | HERD_SD_MAINPID |
                          HERD_SD_MONOTONIC | HERD_SD_ERRNO |
                          HERD_SD_EXTEND_TIMEOUT);
  ASSERT_EQ(m.status_len, strlen("serving 2/2"));
  ASSERT(memcmp(m.status, "serving 2/2", m.status_len) == 0);
  ASSERT_EQ(m.main_pid, 4242);
  ASSERT_EQ(m.monotonic_usec, 123456);
  ASSERT_EQ(m.errno_value, 2);
  ASSERT_EQ(m.extend_timeout_usec, 5);
  ASSERT_EQ(m.pid, 0); /* never from the text */

  /* Malformed assignments are ignored, the rest of the message counts. */
  {
    static const char bad[] =
        "READY=0\nREADY=11\nREADY\nMAINPID=abc\nMAINPID=0\nMAINPID=-5\n"
        "MAINPID=99999999999\nSTATUS=\xff\xfe\nWATCHDOG=trigger\nERRNO=-1\n"
        "=1\n\n\nSTOPPING=1";
    ASSERT_OK(herd_sd_notify_parse(bad, sizeof(bad) - 1, &m));
    ASSERT_EQ(m.fields, HERD_SD_WATCHDOG_TRIGGER | HERD_SD_STOPPING);
  }
  /* The last STATUS= wins; an empty one is valid. */
  ASSERT_OK(PARSE("STATUS=a\nSTATUS="));
  ASSERT_EQ(m.fields, HERD_SD_STATUS);
  ASSERT_EQ(m.status_len, 0);
  /* UTF-8: valid multi-byte text passes; overlongs and surrogates do
   * not. */
  ASSERT_OK(PARSE("STATUS=\xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x91"));
  ASSERT_EQ(m.fields, HERD_SD_STATUS);
  ASSERT_OK(PARSE("STATUS=\xc0\xaf"));
  ASSERT_EQ(m.fields, 0);
  ASSERT_OK(PARSE("STATUS=\xed\xa0\x80"));
  ASSERT_EQ(m.fields, 0);
  ASSERT_OK(PARSE("STATUS=\xe2\x82"));
  ASSERT_EQ(m.fields, 0);
  /* One trailing NUL is tolerated, a NUL inside is not. */
  ASSERT_OK(herd_sd_notify_parse("READY=1", sizeof("READY=1"), &m));
  ASSERT_EQ(m.fields, HERD_SD_READY);
  ASSERT_EQ(herd_sd_notify_parse("READY=1\0STOPPING=1", 18, &m), UV_EINVAL);
  ASSERT_EQ(herd_sd_notify_parse("", 0, &m), UV_EINVAL);
  memset(big, 'a', sizeof(big));
  memcpy(big, "STATUS=", 7);
  ASSERT_OK(herd_sd_notify_parse(big, HERD_SD_MESSAGE_MAX, &m));
  ASSERT_EQ(herd_sd_notify_parse(big, HERD_SD_MESSAGE_MAX + 1, &m), UV_EINVAL);
  return 0;
}

/* A datagram socket standing in for systemd's notify socket. */
static int receiver(const char* name, char* env, size_t cap) {
  struct sockaddr_un sun;
  socklen_t len;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), on = 1;
  ASSERT(fd >= 0);
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)), 0);
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (name[0] == '@') {
    memcpy(sun.sun_path + 1, name + 1, strlen(name) - 1);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
  } else {
    unlink(name);
    strcpy(sun.sun_path, name);
    len = sizeof(sun);
  }
  ASSERT_EQ(bind(fd, (struct sockaddr*)&sun, len), 0);
  snprintf(env, cap, "%s", name);
  return fd;
}

/* One datagram within 5 s, NUL-terminated; its length. */
static size_t recv_msg(int fd, char* buf, size_t cap) {
  struct pollfd pfd = {fd, POLLIN, 0};
  ssize_t n;
  ASSERT_EQ(poll(&pfd, 1, 5000), 1);
  n = recv(fd, buf, cap - 1, 0);
  ASSERT(n >= 0);
  buf[n] = '\0';
  return (size_t)n;
}

static int closed_cbs;
static void on_notifier_closed(herd_sd_notifier_t* n) {
  (void)n;
  closed_cbs++;
}

TEST_IMPL(sd_notifier_send) {
  const char* names[2];
  char path[64], abstract[64], env[128], buf[HERD_SD_MESSAGE_MAX + 64];
  char big[HERD_SD_MESSAGE_MAX + 8];
  uv_loop_t loop;
  herd_sd_notifier_t n;

  snprintf(path, sizeof(path), "/tmp/herd-sd-%d.sock", (int)getpid());
  snprintf(abstract, sizeof(abstract), "@herd-sd-%d", (int)getpid());
  names[0] = path;
  names[1] = abstract;
  ASSERT_OK(uv_loop_init(&loop));
  for (int i = 0; i < 2; i++) {
    int fd = receiver(names[i], env, sizeof(env));
    uint64_t before, after, usec;
    ASSERT_EQ(setenv("NOTIFY_SOCKET", env, 1), 0);
    ASSERT_OK(herd_sd_notifier_init(&loop, &n, HERD_SD_UNSET_ENV));
    ASSERT(n.enabled);
    ASSERT(getenv("NOTIFY_SOCKET") == NULL);
    ASSERT_EQ(herd_sd_notify(&n, "READY=1"), 1);
    recv_msg(fd, buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "READY=1");
    ASSERT_EQ(herd_sd_notifyf(&n, "STATUS=%d workers", 4), 1);
    recv_msg(fd, buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "STATUS=4 workers");
    before = mono_usec();
    ASSERT_EQ(herd_sd_notify_reloading(&n, "reloading"), 1);
    after = mono_usec();
    recv_msg(fd, buf, sizeof(buf));
    ASSERT_EQ(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64, &usec), 1);
    ASSERT(usec >= before && usec <= after);
    ASSERT(strstr(buf, "\nSTATUS=reloading") != NULL);
    ASSERT_EQ(herd_sd_notify(&n, "STOPPING=1"), 1);
    recv_msg(fd, buf, sizeof(buf));
    ASSERT_STR_EQ(buf, "STOPPING=1");
    ASSERT_EQ(n.sent, 4);

    /* Bad messages. */
    ASSERT_EQ(herd_sd_notify(&n, ""), UV_EINVAL);
    memset(big, 'x', sizeof(big));
    big[sizeof(big) - 1] = '\0';
    ASSERT_EQ(herd_sd_notify(&n, big), UV_EMSGSIZE);
    ASSERT_EQ(herd_sd_notifyf(&n, "%s", big), UV_EMSGSIZE);

    /* The manager went away. */
    close(fd);
    if (names[i][0] == '/') {
      ASSERT(herd_sd_notify(&n, "READY=1") == UV_ECONNREFUSED);
      unlink(path);
      ASSERT(herd_sd_notify(&n, "READY=1") == UV_ENOENT);
    } else {
      ASSERT(herd_sd_notify(&n, "READY=1") == UV_ECONNREFUSED);
    }
    ASSERT_EQ(n.last_error, herd_sd_notify(&n, "READY=1"));
    herd_sd_notifier_close(&n, on_notifier_closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed_cbs, i + 1);
  }

  /* No NOTIFY_SOCKET: nothing to do, quietly. */
  unsetenv("NOTIFY_SOCKET");
  ASSERT_OK(herd_sd_notifier_init(&loop, &n, 0));
  ASSERT(!n.enabled);
  ASSERT_EQ(herd_sd_notify(&n, "READY=1"), 0);
  herd_sd_notifier_close(&n, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);

  /* Addresses herd cannot use; the variables go all the same. */
  {
    static const struct {
      const char* value;
      int err;
    } bad[] = {{"relative/path", UV_EINVAL},
               {"@", UV_EINVAL},
               {"", UV_EINVAL},
               {"vsock:2:1234", UV_EAFNOSUPPORT}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
      ASSERT_EQ(setenv("NOTIFY_SOCKET", bad[i].value, 1), 0);
      ASSERT_EQ(herd_sd_notifier_init(&loop, &n, HERD_SD_UNSET_ENV),
                bad[i].err);
      ASSERT(getenv("NOTIFY_SOCKET") == NULL);
    }
    ASSERT_EQ(setenv("NOTIFY_SOCKET", abstract, 1), 0);
    ASSERT_EQ(setenv("WATCHDOG_USEC", "12x", 1), 0);
    ASSERT_EQ(herd_sd_notifier_init(&loop, &n, HERD_SD_UNSET_ENV), UV_EINVAL);
    ASSERT(getenv("WATCHDOG_USEC") == NULL);
  }
  test_loop_close(&loop);
  return 0;
}

/* The watchdog: WATCHDOG=1 every WATCHDOG_USEC / 2 while the loop runs,
 * only for the process WATCHDOG_PID names. */
typedef struct {
  uv_poll_t poll;
  int fd;
  int pings;
  uint64_t first, last;
  herd_sd_notifier_t* n;
} dog_t;

static void on_dog_readable(uv_poll_t* p, int status, int events) {
  dog_t* d = (dog_t*)p;
  char buf[256];
  (void)status;
  (void)events;
  ASSERT(recv(d->fd, buf, sizeof(buf), 0) == 10);
  ASSERT(memcmp(buf, "WATCHDOG=1", 10) == 0);
  if (d->pings++ == 0)
    d->first = uv_now(p->loop);
  d->last = uv_now(p->loop);
  if (d->pings == 4) {
    uv_close((uv_handle_t*)p, NULL);
    herd_sd_notifier_close(d->n, NULL);
  }
}

TEST_IMPL(sd_notifier_watchdog) {
  char name[64], env[64], pid[32];
  uv_loop_t loop;
  herd_sd_notifier_t n;
  dog_t d;

  snprintf(name, sizeof(name), "@herd-dog-%d", (int)getpid());
  ASSERT_OK(uv_loop_init(&loop));
  memset(&d, 0, sizeof(d));
  d.fd = receiver(name, env, sizeof(env));
  d.n = &n;
  ASSERT_EQ(setenv("NOTIFY_SOCKET", env, 1), 0);
  ASSERT_EQ(setenv("WATCHDOG_USEC", "60000", 1), 0);
  snprintf(pid, sizeof(pid), "%d", (int)getpid());
  ASSERT_EQ(setenv("WATCHDOG_PID", pid, 1), 0);
  ASSERT_OK(herd_sd_notifier_init(&loop, &n, HERD_SD_UNSET_ENV));
  ASSERT_EQ(n.watchdog_usec, 60000);
  ASSERT(getenv("WATCHDOG_USEC") == NULL && getenv("WATCHDOG_PID") == NULL);
  ASSERT_OK(uv_poll_init(&loop, &d.poll, d.fd));
  ASSERT_OK(uv_poll_start(&d.poll, UV_READABLE, on_dog_readable));
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(d.pings, 4);
  /* Three intervals of 30 ms, give or take the loop's rounding. */
  ASSERT_GE(d.last - d.first, 3 * 30 - 3);

  /* Meant for another process: no keep-alive. */
  ASSERT_EQ(setenv("NOTIFY_SOCKET", env, 1), 0);
  ASSERT_EQ(setenv("WATCHDOG_USEC", "60000", 1), 0);
  ASSERT_EQ(setenv("WATCHDOG_PID", "1", 1), 0);
  ASSERT_OK(herd_sd_notifier_init(&loop, &n, 0));
  ASSERT_EQ(n.watchdog_usec, 0);
  ASSERT(getenv("WATCHDOG_USEC") != NULL); /* not unset without the flag */
  herd_sd_notifier_close(&n, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  /* Or not wanted. */
  unsetenv("WATCHDOG_PID");
  ASSERT_OK(herd_sd_notifier_init(&loop, &n, HERD_SD_NO_WATCHDOG));
  ASSERT_EQ(n.watchdog_usec, 0);
  herd_sd_notifier_close(&n, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  close(d.fd);
  test_loop_close(&loop);
  return 0;
}

/* sd_listen_fds in a helper whose fds 3 and 4 are listening sockets (and
 * 5 is not open), set up by the test. Each case sets the variables as a
 * manager would and checks the answer. */
static void set_listen_env(const char* pid, const char* fds,
                           const char* names) {
  char self[32];
  snprintf(self, sizeof(self), "%d", (int)getpid());
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  unsetenv("LISTEN_PIDFDID");
  if (pid != NULL)
    setenv("LISTEN_PID", strcmp(pid, "self") == 0 ? self : pid, 1);
  if (fds != NULL)
    setenv("LISTEN_FDS", fds, 1);
  if (names != NULL)
    setenv("LISTEN_FDNAMES", names, 1);
}

static int fail_allocs;
static void* failing_malloc(size_t n) {
  return fail_allocs ? NULL : malloc(n);
}
static void* failing_realloc(void* p, size_t n) {
  return fail_allocs ? NULL : realloc(p, n);
}
static void* failing_calloc(size_t c, size_t n) {
  return fail_allocs ? NULL : calloc(c, n);
}

static int have_pidfs(uint64_t* self_id) {
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  struct statfs sfs;
  struct stat st;
  int ok = 0;
  if (fd < 0)
    return 0;
  if (fstatfs(fd, &sfs) == 0 && sfs.f_type == 0x50494446 &&
      fstat(fd, &st) == 0) {
    *self_id = (uint64_t)st.st_ino;
    ok = 1;
  }
  close(fd);
  return ok;
}

HELPER_IMPL(sd_listen_fds_check) {
  char** names = NULL;
  uint64_t id;
  char idtext[32];
  (void)argc;
  (void)argv;
  ASSERT_OK(herd_replace_allocator(failing_malloc, failing_realloc,
                                   failing_calloc, free));
  ASSERT(!(fcntl(3, F_GETFD) & FD_CLOEXEC));
  ASSERT(!(fcntl(4, F_GETFD) & FD_CLOEXEC));
  ASSERT_EQ(fcntl(5, F_GETFD), -1);

  /* Not for this process, or no LISTEN_PID: 0, fds untouched. */
  set_listen_env(NULL, "2", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, &names), 0);
  ASSERT(names == NULL);
  set_listen_env("1", "2", "a:b");
  ASSERT_EQ(herd_sd_listen_fds(HERD_SD_UNSET_ENV, &names), 0);
  ASSERT(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL &&
         getenv("LISTEN_FDNAMES") == NULL);
  ASSERT(!(fcntl(3, F_GETFD) & FD_CLOEXEC));
  set_listen_env("self", NULL, NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), 0);

  /* Ours: the count, the names, the fds made close-on-exec. */
  set_listen_env("self", "2", "web:admin");
  ASSERT_EQ(herd_sd_listen_fds(0, &names), 2);
  ASSERT_STR_EQ(names[0], "web");
  ASSERT_STR_EQ(names[1], "admin");
  ASSERT(names[2] == NULL);
  herd_sd_names_free(names);
  ASSERT(fcntl(3, F_GETFD) & FD_CLOEXEC);
  ASSERT(fcntl(4, F_GETFD) & FD_CLOEXEC);
  ASSERT(getenv("LISTEN_FDS") != NULL); /* kept without the flag */
  set_listen_env("self", "2", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, &names), 2);
  ASSERT_STR_EQ(names[0], "unknown");
  ASSERT_STR_EQ(names[1], "unknown");
  herd_sd_names_free(names);
  set_listen_env("self", "2", "a:");
  ASSERT_EQ(herd_sd_listen_fds(0, &names), 2);
  ASSERT_STR_EQ(names[0], "a");
  ASSERT_STR_EQ(names[1], "");
  herd_sd_names_free(names);
  herd_sd_names_free(NULL);

  /* Bad variables. */
  set_listen_env("self", "2", "a:b:c");
  ASSERT_EQ(herd_sd_listen_fds(0, &names), UV_EINVAL);
  set_listen_env("self", "2", "a");
  ASSERT_EQ(herd_sd_listen_fds(0, &names), UV_EINVAL);
  set_listen_env("self", "0", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), UV_EINVAL);
  set_listen_env("self", "-1", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), UV_EINVAL);
  set_listen_env("self", "2x", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), UV_EINVAL);
  set_listen_env("12ab", "2", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), UV_EINVAL);
  set_listen_env("self", "99999999999", NULL);
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), UV_EINVAL);
  set_listen_env("self", "3", NULL); /* fd 5 is not open */
  ASSERT_EQ(herd_sd_listen_fds(0, NULL), UV_EBADF);

  /* LISTEN_PIDFDID: where pidfds have inode numbers of their own, one
   * that is not this process's means the sockets are not ours. */
  if (have_pidfs(&id)) {
    set_listen_env("self", "2", NULL);
    setenv("LISTEN_PIDFDID", "1", 1);
    ASSERT_EQ(herd_sd_listen_fds(0, NULL), 0);
    snprintf(idtext, sizeof(idtext), "%llu", (unsigned long long)id);
    setenv("LISTEN_PIDFDID", idtext, 1);
    ASSERT_EQ(herd_sd_listen_fds(0, NULL), 2);
  } else {
    fprintf(stderr, "no pidfs: LISTEN_PIDFDID not checked\n");
  }

  /* Out of memory for the names: an error, nothing allocated. */
  set_listen_env("self", "2", "a:b");
  fail_allocs = 1;
  ASSERT_EQ(herd_sd_listen_fds(0, &names), UV_ENOMEM);
  fail_allocs = 0;
  ASSERT(names == NULL);
  ASSERT_EQ(herd_sd_listen_fds(HERD_SD_UNSET_ENV, NULL), 2);
  ASSERT(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL &&
         getenv("LISTEN_FDNAMES") == NULL && getenv("LISTEN_PIDFDID") == NULL);
  return 0;
}

TEST_IMPL(sd_listen_fds) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  herd_listen_addr_t a;
  herd_stdio_t stdio[5];
  int fds[2];

  for (int i = 0; i < 2; i++) {
    ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
    ASSERT_OK(herd_listen_bind(&a, NULL, &fds[i]));
  }
  memset(&o, 0, sizeof(o));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_INHERIT;
  stdio[2].kind = HERD_STDIO_INHERIT;
  stdio[3].kind = HERD_STDIO_FD;
  stdio[3].fd = fds[0];
  stdio[4].kind = HERD_STDIO_FD;
  stdio[4].fd = fds[1];
  o.stdio = stdio;
  o.stdio_count = 5;
  o.timeout = 10000;
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("sd_listen_fds_check", NULL, NULL), &o, &r));
  ASSERT_EQ(r.signal, 0);
  ASSERT_EQ(r.status, 0);
  herd_sync_result_free(&r);
  close(fds[0]);
  close(fds[1]);
  return 0;
}

/* The notify socket herd gives a worker. */

HELPER_IMPL(sd_notify_sender) {
  uv_loop_t loop;
  herd_sd_notifier_t n;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_sd_notifier_init(&loop, &n, HERD_SD_UNSET_ENV));
  ASSERT(n.enabled);
  for (int i = 1; i < argc; i++)
    ASSERT_EQ(herd_sd_notify(&n, argv[i]), 1);
  herd_sd_notifier_close(&n, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}

typedef struct {
  herd_sd_notify_socket_t s;
  herd_child_t child;
  int child_closed;
  int socket_closed;
  int n;
  pid_t pid[8];
  unsigned fields[8];
  char status[8][64];
  pid_t main_pid[8];
} notify_test_t;

static void on_notify(herd_sd_notify_socket_t* s,
                      const herd_sd_notify_msg_t* m) {
  notify_test_t* t = (notify_test_t*)s;
  ASSERT(t->n < 8);
  t->pid[t->n] = m->pid;
  t->fields[t->n] = m->fields;
  snprintf(t->status[t->n], sizeof(t->status[0]), "%.*s", (int)m->status_len,
           m->status ? m->status : "");
  t->main_pid[t->n] = m->main_pid;
  ASSERT_EQ(m->uid, getuid());
  t->n++;
}

static void on_sender_closed(herd_child_t* c) {
  notify_test_t* t = c->data;
  t->child_closed = 1;
}

static void on_notify_socket_closed(herd_sd_notify_socket_t* s) {
  ((notify_test_t*)s)->socket_closed = 1;
}

/* Sends one datagram to `address` from this process, with `fd` attached
 * when >= 0. */
static void send_raw(const char* address, const void* data, size_t len,
                     int fd) {
  struct sockaddr_un sun;
  socklen_t slen;
  struct iovec iov = {(void*)data, len};
  struct msghdr mh;
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } control;
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT(s >= 0);
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (address[0] == '@') {
    memcpy(sun.sun_path + 1, address + 1, strlen(address) - 1);
    slen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(address));
  } else {
    strcpy(sun.sun_path, address);
    slen = sizeof(sun);
  }
  memset(&mh, 0, sizeof(mh));
  mh.msg_name = &sun;
  mh.msg_namelen = slen;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    struct cmsghdr* c;
    memset(&control, 0, sizeof(control));
    mh.msg_control = control.buf;
    mh.msg_controllen = sizeof(control.buf);
    c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ASSERT_EQ(sendmsg(s, &mh, 0), (ssize_t)len);
  close(s);
}

static void run_until(uv_loop_t* loop, int* flag, int want) {
  for (int i = 0; i < 5000 && *flag < want; i++)
    uv_run(loop, UV_RUN_ONCE);
  ASSERT_GE(*flag, want);
}

TEST_IMPL(sd_notify_socket) {
  uv_loop_t loop;
  notify_test_t t;
  herd_spawn_options_t o;
  herd_stdio_t stdio[3];
  char env[HERD_SD_ADDRESS_MAX + 16];
  const char* envv[2] = {env, NULL};
  const char* args[] = {"--helper", "sd_notify_sender",
                        "READY=1\nSTATUS=up\nMAINPID=1", "STOPPING=1", NULL};
  char big[5000];
  int p[2];
  char c;

  ASSERT_OK(uv_loop_init(&loop));
  memset(&t, 0, sizeof(t));
  ASSERT_OK(herd_sd_notify_socket_init(&loop, &t.s, NULL, on_notify));
  ASSERT(t.s.address[0] == '@' && strlen(t.s.address) > 1);

  /* A child speaks: its messages carry its pid, whatever they claim. */
  snprintf(env, sizeof(env), "NOTIFY_SOCKET=%s", t.s.address);
  memset(&o, 0, sizeof(o));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_INHERIT;
  stdio[2].kind = HERD_STDIO_INHERIT;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.env = envv;
  o.flags = HERD_SPAWN_ENV_EXTEND;
  o.close_cb = on_sender_closed;
  t.child.data = &t;
  ASSERT_OK(herd_spawn(&loop, &t.child, test_exe(), args, &o));
  run_until(&loop, &t.n, 2);
  run_until(&loop, &t.child_closed, 1);
  ASSERT_EQ(t.child.exit_status, 0);
  ASSERT_EQ(t.pid[0], t.child.pid);
  ASSERT_EQ(t.fields[0], HERD_SD_READY | HERD_SD_STATUS | HERD_SD_MAINPID);
  ASSERT_STR_EQ(t.status[0], "up");
  ASSERT_EQ(t.main_pid[0], 1); /* a claim, reported as such */
  ASSERT_EQ(t.pid[1], t.child.pid);
  ASSERT_EQ(t.fields[1], HERD_SD_STOPPING);

  /* Datagrams systemd would drop: a NUL inside, too long, empty. */
  send_raw(t.s.address, "READY=1\0STOPPING=1", 18, -1);
  memset(big, 'a', sizeof(big));
  memcpy(big, "READY=1\nSTATUS=", 15);
  send_raw(t.s.address, big, sizeof(big), -1);
  send_raw(t.s.address, "", 0, -1);
  /* An fd attached (FDSTORE=1): the message counts, the fd is closed. */
  ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
  send_raw(t.s.address, "FDSTORE=1\nREADY=1", 17, p[1]);
  close(p[1]);
  run_until(&loop, &t.n, 3);
  ASSERT_EQ(t.s.dropped, 3);
  ASSERT_EQ(t.s.received, 3);
  ASSERT_EQ(t.pid[2], getpid());
  ASSERT_EQ(t.fields[2], HERD_SD_READY);
  ASSERT_EQ(read(p[0], &c, 1), 0); /* every write end is closed */
  close(p[0]);
  herd_sd_notify_socket_close(&t.s, on_notify_socket_closed);
  herd_sd_notify_socket_close(&t.s, on_notify_socket_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(t.socket_closed, 1);

  /* A socket file instead of an abstract name: removed at close. */
  {
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/tmp/herd-notify-%d.sock", (int)getpid());
    unlink(path);
    memset(&t, 0, sizeof(t));
    ASSERT_OK(herd_sd_notify_socket_init(&loop, &t.s, path, on_notify));
    ASSERT_STR_EQ(t.s.address, path);
    ASSERT_EQ(herd_sd_notify_socket_init(&loop, &t.s, path, on_notify),
              UV_EADDRINUSE);
    send_raw(path, "READY=1", 7, -1);
    run_until(&loop, &t.n, 1);
    ASSERT_EQ(t.pid[0], getpid());
    ASSERT_EQ(lstat(path, &st), 0);
    herd_sd_notify_socket_close(&t.s, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(lstat(path, &st), -1);
    ASSERT_EQ(herd_sd_notify_socket_init(&loop, &t.s, "rel.sock", on_notify),
              UV_EINVAL);
    ASSERT_EQ(herd_sd_notify_socket_init(&loop, &t.s, NULL, NULL), UV_EINVAL);
  }
  test_loop_close(&loop);
  return 0;
}
