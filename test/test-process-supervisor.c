/* Tests of what a supervisor needs from spawn: the parent-death signal, a
 * process group and killing it, systemd's socket activation (LISTEN_FDS),
 * and the subreaper. */
#include "task.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  herd_child_t child; /* first: the callbacks cast back */
  char out[4096];
  size_t out_len;
  int exit_calls, error_calls, close_calls;
  int64_t status;
  int sig;
  int err;
} sup_run_t;

static void sup_read(herd_child_t* child, int fd, const char* buf,
                     ssize_t nread) {
  sup_run_t* r = (sup_run_t*)child;
  (void)fd;
  if (nread <= 0)
    return;
  ASSERT(r->out_len + (size_t)nread < sizeof(r->out));
  memcpy(r->out + r->out_len, buf, (size_t)nread);
  r->out_len += (size_t)nread;
  r->out[r->out_len] = '\0';
}

static void sup_exit(herd_child_t* child, int64_t status, int sig) {
  sup_run_t* r = (sup_run_t*)child;
  r->exit_calls++;
  r->status = status;
  r->sig = sig;
}

static void sup_error(herd_child_t* child, int err) {
  sup_run_t* r = (sup_run_t*)child;
  r->error_calls++;
  r->err = err;
}

static void sup_close(herd_child_t* child) {
  sup_run_t* r = (sup_run_t*)child;
  r->close_calls++;
}

static void sup_opts(herd_spawn_options_t* o) {
  memset(o, 0, sizeof(*o));
  o->exit_cb = sup_exit;
  o->error_cb = sup_error;
  o->close_cb = sup_close;
}

/* Runs a child to the end, reading its stdout when that is a pipe. */
static void sup_run(sup_run_t* r, const char* file, const char* const* args,
                    herd_spawn_options_t* o) {
  uv_loop_t loop;
  memset(r, 0, sizeof(*r));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_spawn(&loop, &r->child, file, args, o));
  if (herd_child_stream(&r->child, 1) != NULL)
    ASSERT_OK(herd_child_read_start(&r->child, 1, sup_read));
  test_loop_run_close(&loop);
  ASSERT_EQ(r->close_calls, 1);
}

/* The parent-death signal: helper A starts `sleep` with it and reports the
 * sleep's pid; A is then SIGKILLed, and the sleep must die of the signal.
 * The test process is a subreaper for the duration, so the orphaned sleep
 * becomes its child and its status can be read. */
HELPER_IMPL(process_pdeath_parent) {
  herd_stdio_t stdio[3] = {
      {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}};
  const char* args[] = {"30", NULL};
  herd_spawn_options_t o;
  herd_child_t child;
  uv_loop_t loop;
  (void)argc;
  (void)argv;
  memset(&o, 0, sizeof(o));
  o.stdio = stdio;
  o.stdio_count = 3;
  o.parent_death_signal = SIGUSR1;
  ASSERT_OK(uv_loop_init(&loop));
  memset(&child, 0, sizeof(child));
  ASSERT_OK(herd_spawn(&loop, &child, "sleep", args, &o));
  printf("%d\n", (int)child.pid);
  fflush(stdout);
  uv_run(&loop, UV_RUN_DEFAULT);
  return 1; /* Never reached: the test kills this process. */
}

static void pdeath_read(herd_child_t* child, int fd, const char* buf,
                        ssize_t nread) {
  sup_read(child, fd, buf, nread);
  if (nread > 0 && strchr(((sup_run_t*)child)->out, '\n') != NULL)
    uv_stop(child->loop);
}

TEST_IMPL(process_parent_death_signal) {
  herd_spawn_options_t o;
  uv_loop_t loop;
  sup_run_t a;
  siginfo_t info;
  struct pollfd pfd;
  int sleeper_fd;
  pid_t sleeper;

  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  sup_opts(&o);
  ASSERT_OK(uv_loop_init(&loop));
  memset(&a, 0, sizeof(a));
  ASSERT_OK(herd_spawn(&loop, &a.child, test_exe(),
                       test_helper_args("process_pdeath_parent", NULL, NULL),
                       &o));
  ASSERT_OK(herd_child_read_start(&a.child, 1, pdeath_read));
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 1);
  sleeper = (pid_t)atoi(a.out);
  ASSERT(sleeper > 0);
  sleeper_fd = pidfd_open(sleeper, 0);
  ASSERT(sleeper_fd >= 0);
  ASSERT_OK(herd_child_kill(&a.child, SIGKILL));
  test_loop_run_close(&loop);
  ASSERT_EQ(a.sig, SIGKILL);
  /* The sleep, orphaned, gets its signal. */
  pfd.fd = sleeper_fd;
  pfd.events = POLLIN;
  ASSERT_EQ(poll(&pfd, 1, 5000), 1);
  memset(&info, 0, sizeof(info));
  ASSERT_EQ(waitid(P_PIDFD, (id_t)sleeper_fd, &info, WEXITED | __WALL), 0);
  ASSERT_EQ(info.si_code, CLD_KILLED);
  ASSERT_EQ(info.si_status, SIGUSR1);
  close(sleeper_fd);
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
  return 0;
}

/* A new process group (the supervisor can signal the whole group) or a new
 * session (detached, which implies the group). */
HELPER_IMPL(process_group_ids) {
  (void)argc;
  (void)argv;
  printf("session %d group %d\n", getsid(0) == getpid(),
         getpgid(0) == getpid());
  return 0;
}

static void group_read(herd_child_t* child, int fd, const char* buf,
                       ssize_t nread) {
  sup_read(child, fd, buf, nread);
  if (nread > 0 && strchr(((sup_run_t*)child)->out, '\n') != NULL)
    uv_stop(child->loop);
}

TEST_IMPL(process_group) {
  const char* const* ids = test_helper_args("process_group_ids", NULL, NULL);
  const char* args[] = {"-c", "sleep 30 & echo $!; wait", NULL};
  herd_spawn_options_t o;
  uv_loop_t loop;
  sup_run_t r;
  int bg_fd;
  struct pollfd pfd;

  sup_opts(&o);
  sup_run(&r, test_exe(), ids, &o);
  ASSERT_STR_EQ(r.out, "session 0 group 0\n");
  o.flags = HERD_SPAWN_PROCESS_GROUP;
  sup_run(&r, test_exe(), ids, &o);
  ASSERT_STR_EQ(r.out, "session 0 group 1\n");
  o.flags = HERD_SPAWN_DETACHED | HERD_SPAWN_PROCESS_GROUP;
  sup_run(&r, test_exe(), ids, &o);
  ASSERT_STR_EQ(r.out, "session 1 group 1\n");
  o.flags = HERD_SPAWN_PROCESS_GROUP | HERD_SPAWN_SETGID;
  o.gid = getgid();
  sup_run(&r, test_exe(), ids, &o);
  ASSERT_STR_EQ(r.out, "session 0 group 1\n");

  /* One signal to the group ends the shell and what it started. */
  sup_opts(&o);
  o.flags = HERD_SPAWN_PROCESS_GROUP;
  ASSERT_OK(uv_loop_init(&loop));
  memset(&r, 0, sizeof(r));
  ASSERT_OK(herd_spawn(&loop, &r.child, "/bin/sh", args, &o));
  ASSERT_OK(herd_child_read_start(&r.child, 1, group_read));
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 1);
  bg_fd = pidfd_open((pid_t)atoi(r.out), 0);
  ASSERT(bg_fd >= 0);
  ASSERT_EQ(kill(-r.child.pid, SIGTERM), 0);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.sig, SIGTERM);
  pfd.fd = bg_fd;
  pfd.events = POLLIN;
  ASSERT_EQ(poll(&pfd, 1, 5000), 1);
  close(bg_fd);
  return 0;
}

/* Socket activation: the helper writes its report into the first listen fd
 * (fd 3) and one byte into each other one. */
HELPER_IMPL(process_listen_report) {
  const char* fds = getenv("LISTEN_FDS");
  const char* pid = getenv("LISTEN_PID");
  const char* names = getenv("LISTEN_FDNAMES");
  char self[32], line[512], list[256] = "", target[64];
  int n = fds ? atoi(fds) : 0;
  (void)argc;
  (void)argv;
  snprintf(self, sizeof(self), "%d", (int)getpid());
  for (int fd = 0; fd < 64; fd++) {
    if (fcntl(fd, F_GETFD) != -1) {
      char num[16];
      snprintf(num, sizeof(num), "%s%d", list[0] ? " " : "", fd);
      strcat(list, num);
    }
  }
  {
    ssize_t len = readlink("/proc/self/fd/2", target, sizeof(target) - 1);
    target[len > 0 ? len : 0] = '\0';
  }
  snprintf(line, sizeof(line), "fds=%s n=%d pid=%s names=%s fd2=%s\n", list, n,
           pid && strcmp(pid, self) == 0 ? "self"
           : pid                         ? pid
                                         : "(unset)",
           names ? names : "(unset)", target);
  if (write(3, line, strlen(line)) < 0)
    return 1;
  for (int i = 1; i < n; i++) {
    char c = (char)('0' + 3 + i);
    if (write(3 + i, &c, 1) != 1)
      return 1;
  }
  return 0;
}

static void read_all(int fd, char* buf, size_t cap) {
  size_t len = 0;
  ssize_t n;
  while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
    len += (size_t)n;
  buf[len] = '\0';
}

TEST_IMPL(process_listen_fds) {
  const char* names[] = {"web", "admin"};
  const char* bad_names[] = {"web", "a:b"};
  herd_stdio_t one[1] = {{HERD_STDIO_IGNORE, 0}};
  herd_stdio_t four[4] = {{HERD_STDIO_IGNORE, 0},
                          {HERD_STDIO_IGNORE, 0},
                          {HERD_STDIO_IGNORE, 0},
                          {HERD_STDIO_IGNORE, 0}};
  const char* const* args =
      test_helper_args("process_listen_report", NULL, NULL);
  herd_spawn_options_t o;
  herd_child_t c;
  uv_loop_t loop;
  int p[2][2], fds[2];
  char buf[512];
  sup_run_t r;

  /* The parent's own variables never reach the child. */
  ASSERT_OK(setenv("LISTEN_FDS", "9", 1));
  ASSERT_OK(setenv("LISTEN_PID", "1", 1));
  ASSERT_OK(setenv("LISTEN_FDNAMES", "stale", 1));
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(pipe2(p[i], O_CLOEXEC), 0);
    fds[i] = p[i][1];
  }
  sup_opts(&o);
  o.listen_fds = fds;
  o.listen_fds_count = 2;
  o.listen_fd_names = names;
  sup_run(&r, test_exe(), args, &o);
  ASSERT_EQ(r.status, 0);
  for (int i = 0; i < 2; i++)
    close(p[i][1]);
  read_all(p[0][0], buf, sizeof(buf));
  {
    /* fd 2 is one of herd's pipes, a socket. */
    const char* expect =
        "fds=0 1 2 3 4 n=2 pid=self names=web:admin "
        "fd2=socket:";
    if (strncmp(buf, expect, strlen(expect)) != 0)
      FATAL("report: %s", buf);
  }
  read_all(p[1][0], buf, sizeof(buf));
  ASSERT_STR_EQ(buf, "4");
  for (int i = 0; i < 2; i++)
    close(p[i][0]);

  /* Fewer stdio entries: the rest below fd 3 is /dev/null; no names. */
  ASSERT_EQ(pipe2(p[0], O_CLOEXEC), 0);
  fds[0] = p[0][1];
  sup_opts(&o);
  o.stdio = one;
  o.stdio_count = 1;
  o.listen_fds = fds;
  o.listen_fds_count = 1;
  sup_run(&r, test_exe(), args, &o);
  ASSERT_EQ(r.status, 0);
  close(p[0][1]);
  read_all(p[0][0], buf, sizeof(buf));
  close(p[0][0]);
  ASSERT_STR_EQ(buf, "fds=0 1 2 3 n=1 pid=self names=(unset) fd2=/dev/null\n");

  /* Misuse. */
  ASSERT_OK(uv_loop_init(&loop));
  sup_opts(&o);
  o.listen_fds = fds;
  o.listen_fds_count = 1;
  o.stdio = four;
  o.stdio_count = 4;
  ASSERT_EQ(herd_spawn(&loop, &c, "/bin/true", NULL, &o), UV_EINVAL);
  o.stdio = NULL;
  o.stdio_count = 0;
  o.listen_fds_count = 2;
  o.listen_fd_names = bad_names;
  ASSERT_EQ(herd_spawn(&loop, &c, "/bin/true", NULL, &o), UV_EINVAL);
  o.listen_fd_names = NULL;
  o.listen_fds = NULL;
  ASSERT_EQ(herd_spawn(&loop, &c, "/bin/true", NULL, &o), UV_EINVAL);
  o.listen_fds = fds;
  o.listen_fds_count = HERD_LISTEN_FDS_MAX + 1;
  ASSERT_EQ(herd_spawn(&loop, &c, "/bin/true", NULL, &o), UV_EINVAL);
  o.listen_fds_count = 0;
  o.parent_death_signal = 65;
  ASSERT_EQ(herd_spawn(&loop, &c, "/bin/true", NULL, &o), UV_EINVAL);
  test_loop_close(&loop);
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDNAMES");
  return 0;
}

/* The subreaper: a helper leaves 100 children behind and exits; they are
 * re-parented to this process and reaped as they exit. Meanwhile children
 * herd watches keep their own statuses. */
HELPER_IMPL(process_make_orphans) {
  int n = argc > 1 ? atoi(argv[1]) : 0;
  (void)argv;
  for (int i = 0; i < n; i++) {
    pid_t pid = fork();
    if (pid == 0) {
      /* Each lives 50 to 250 ms after the helper is gone. */
      struct timespec ts = {0, (50 + (i % 5) * 50) * 1000000L};
      nanosleep(&ts, NULL);
      _exit(i % 7);
    }
    if (pid < 0)
      return 2;
  }
  _exit(7);
}

typedef struct {
  herd_subreaper_t sr;
  uv_timer_t deadline;
  int closed;
  int statuses[8];
  int watched_left;
} orphans_t;

static void orphans_closed(herd_subreaper_t* sr) {
  orphans_t* t = sr->data;
  t->closed = 1;
}

static void orphans_done(orphans_t* t) {
  if (t->sr.reaped == 100 && t->watched_left == 0 && !t->closed &&
      !uv_is_closing((uv_handle_t*)&t->deadline)) {
    herd_subreaper_close(&t->sr, orphans_closed);
    uv_close((uv_handle_t*)&t->deadline, NULL);
  }
}

static void orphan_cb(herd_subreaper_t* sr, pid_t pid, int64_t status,
                      int sig) {
  orphans_t* t = sr->data;
  ASSERT(pid > 0);
  ASSERT_EQ(sig, 0);
  ASSERT(status >= 0 && status < 7);
  t->statuses[status]++;
  orphans_done(t);
}

static void orphans_deadline(uv_timer_t* timer) {
  orphans_t* t = timer->data;
  FATAL("%d orphans reaped after 10 s", (int)t->sr.reaped);
}

static orphans_t* orphans_of;
static void watched_close(herd_child_t* child) {
  sup_close(child);
  orphans_of->watched_left--;
  orphans_done(orphans_of);
}

TEST_IMPL(process_subreaper_orphans) {
  herd_stdio_t stdio[3] = {
      {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_INHERIT, 1}, {HERD_STDIO_INHERIT, 2}};
  const char* late[] = {"-c", "sleep 0.2; exit 9", NULL};
  herd_spawn_options_t o;
  herd_subreaper_t other;
  uv_loop_t loop;
  orphans_t t;
  sup_run_t maker, watched;

  memset(&t, 0, sizeof(t));
  orphans_of = &t;
  ASSERT_OK(uv_loop_init(&loop));
  t.sr.data = &t;
  ASSERT_OK(herd_subreaper_start(&loop, &t.sr, orphan_cb));
  ASSERT_EQ(herd_subreaper_start(&loop, &other, NULL), UV_EBUSY);
  ASSERT_OK(uv_timer_init(&loop, &t.deadline));
  t.deadline.data = &t;
  ASSERT_OK(uv_timer_start(&t.deadline, orphans_deadline, 10000, 0));
  sup_opts(&o);
  o.close_cb = watched_close;
  o.stdio = stdio;
  o.stdio_count = 3;
  t.watched_left = 2;
  memset(&maker, 0, sizeof(maker));
  ASSERT_OK(herd_spawn(&loop, &maker.child, test_exe(),
                       test_helper_args("process_make_orphans", "100", NULL),
                       &o));
  memset(&watched, 0, sizeof(watched));
  ASSERT_OK(herd_spawn(&loop, &watched.child, "/bin/sh", late, &o));
  test_loop_run_close(&loop);
  ASSERT_EQ(t.sr.reaped, 100);
  ASSERT(t.closed);
  for (int i = 0; i < 7; i++)
    ASSERT_EQ(t.statuses[i], i < 2 ? 15 : 14);
  ASSERT_EQ(maker.exit_calls, 1);
  ASSERT_EQ(maker.status, 7);
  ASSERT_EQ(watched.exit_calls, 1);
  ASSERT_EQ(watched.status, 9);
  {
    int v = -1;
    ASSERT_EQ(prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0), 0);
    ASSERT_EQ(v, 0);
  }
  return 0;
}

/* The kill-group tests: a shell in a group of its own starts `sleep 30` in
 * the background (same group, holding the stdout pipe too), prints its pid
 * and waits for its stdin to end, then exits 3. */
typedef struct {
  sup_run_t r; /* first: the callbacks cast back */
  int sleeper_fd;
  int expect_kill;    /* how long exit_cb waits: 2 s if a kill is due */
  int sleeper_killed; /* what exit_cb found: 1 SIGKILLed, 0 still alive */
} group_run_t;

static const char* const group_args[] = {
    "-c", "sleep 30 & echo $!; read x; exit 3", NULL};

static void group_pid_read(herd_child_t* child, int fd, const char* buf,
                           ssize_t nread) {
  group_run_t* g = (group_run_t*)child;
  sup_read(child, fd, buf, nread);
  if (nread > 0 && g->sleeper_fd == -1 && strchr(g->r.out, '\n') != NULL) {
    g->sleeper_fd = pidfd_open((pid_t)atoi(g->r.out), 0);
    ASSERT(g->sleeper_fd >= 0);
    /* The shell's `read` ends: it exits. */
    ASSERT_OK(herd_child_end(child, 0));
  }
}

/* Whether the sleep (a child of this process, a subreaper, once the shell
 * is gone) died of SIGKILL within `ms`; reaps it if so. */
static int sleeper_killed(int fd, int ms) {
  struct pollfd pfd;
  siginfo_t info;
  pfd.fd = fd;
  pfd.events = POLLIN;
  if (poll(&pfd, 1, ms) != 1)
    return 0;
  memset(&info, 0, sizeof(info));
  ASSERT_EQ(waitid(P_PIDFD, (id_t)fd, &info, WEXITED | __WALL), 0);
  ASSERT_EQ(info.si_code, CLD_KILLED);
  ASSERT_EQ(info.si_status, SIGKILL);
  return 1;
}

static void group_exit(herd_child_t* child, int64_t status, int sig) {
  group_run_t* g = (group_run_t*)child;
  sup_exit(child, status, sig);
  /* The group was killed before the reap, so before this callback. */
  g->sleeper_killed =
      sleeper_killed(g->sleeper_fd, g->expect_kill ? 2000 : 200);
  if (!g->sleeper_killed)
    ASSERT_EQ(kill(-child->pid, SIGKILL), 0); /* The zombie still holds it. */
}

static void group_start(uv_loop_t* loop, group_run_t* g, unsigned flags) {
  herd_spawn_options_t o;
  sup_opts(&o);
  o.exit_cb = group_exit;
  o.flags = flags;
  memset(g, 0, sizeof(*g));
  g->sleeper_fd = -1;
  g->expect_kill = (flags & HERD_SPAWN_KILL_GROUP_ON_EXIT) != 0;
  ASSERT_OK(herd_spawn(loop, &g->r.child, "/bin/sh", group_args, &o));
  ASSERT_OK(herd_child_read_start(&g->r.child, 1, group_pid_read));
}

/* HERD_SPAWN_KILL_GROUP_ON_EXIT: when the shell exits, what it left in its
 * group is SIGKILLed before herd reaps it. Without the flag the sleep
 * lives on (and keeps the stdout pipe open). */
TEST_IMPL(process_kill_group_on_exit) {
  uv_loop_t loop;
  group_run_t g;

  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  ASSERT_OK(uv_loop_init(&loop));
  group_start(&loop, &g, HERD_SPAWN_KILL_GROUP_ON_EXIT);
  test_loop_run_close(&loop);
  ASSERT_EQ(g.r.exit_calls, 1);
  ASSERT_EQ(g.r.status, 3);
  ASSERT_EQ(g.sleeper_killed, 1);
  close(g.sleeper_fd);

  /* The control: a group of its own, no kill on exit. group_exit() then
   * kills the sleep itself, or close_cb would wait 30 s for the pipe. */
  ASSERT_OK(uv_loop_init(&loop));
  group_start(&loop, &g, HERD_SPAWN_PROCESS_GROUP);
  test_loop_run_close(&loop);
  ASSERT_EQ(g.r.status, 3);
  ASSERT_EQ(g.sleeper_killed, 0);
  ASSERT_EQ(sleeper_killed(g.sleeper_fd, 5000), 1);
  close(g.sleeper_fd);

  /* Detached (a session of its own) works the same. */
  ASSERT_OK(uv_loop_init(&loop));
  group_start(&loop, &g, HERD_SPAWN_KILL_GROUP_ON_EXIT | HERD_SPAWN_DETACHED);
  test_loop_run_close(&loop);
  ASSERT_EQ(g.sleeper_killed, 1);
  close(g.sleeper_fd);
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
  return 0;
}

static void group_read_then_close(herd_child_t* child, int fd, const char* buf,
                                  ssize_t nread) {
  group_run_t* g = (group_run_t*)child;
  sup_read(child, fd, buf, nread);
  if (nread > 0 && g->sleeper_fd == -1 && strchr(g->r.out, '\n') != NULL) {
    g->sleeper_fd = pidfd_open((pid_t)atoi(g->r.out), 0);
    ASSERT(g->sleeper_fd >= 0);
    /* Closing the handle closes stdin too: the shell's `read` ends and it
     * exits, watched by the reaper thread by then. */
    herd_child_close(child);
  }
}

/* The same after herd_child_close(): the reaper thread kills the group
 * between the exit and the reap. */
TEST_IMPL(process_kill_group_after_close) {
  herd_spawn_options_t o;
  uv_loop_t loop;
  group_run_t g;

  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  ASSERT_OK(uv_loop_init(&loop));
  sup_opts(&o);
  o.flags = HERD_SPAWN_KILL_GROUP_ON_EXIT;
  memset(&g, 0, sizeof(g));
  g.sleeper_fd = -1;
  ASSERT_OK(herd_spawn(&loop, &g.r.child, "/bin/sh", group_args, &o));
  ASSERT_OK(herd_child_read_start(&g.r.child, 1, group_read_then_close));
  test_loop_run_close(&loop);
  ASSERT_EQ(g.r.close_calls, 1);
  ASSERT_EQ(g.r.exit_calls, 0);
  ASSERT(g.sleeper_fd >= 0);
  ASSERT_EQ(sleeper_killed(g.sleeper_fd, 5000), 1);
  close(g.sleeper_fd);
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0), 0);
  return 0;
}

static void group_read_then_kill(herd_child_t* child, int fd, const char* buf,
                                 ssize_t nread) {
  group_run_t* g = (group_run_t*)child;
  sup_read(child, fd, buf, nread);
  if (nread > 0 && g->sleeper_fd == -1 && strchr(g->r.out, '\n') != NULL) {
    g->sleeper_fd = pidfd_open((pid_t)atoi(g->r.out), 0);
    ASSERT(g->sleeper_fd >= 0);
    ASSERT_EQ(herd_child_kill_group(child, herd_signal_number("SIGFOO")),
              UV_EINVAL);
    ASSERT_EQ(child->killed, 0);
    ASSERT_OK(herd_child_kill_group(child, SIGTERM));
    ASSERT_EQ(child->killed, 1);
  }
}

/* herd_child_kill_group() while the child runs: one signal to the child
 * and what it started; UV_ESRCH once it is reaped, and for a child that
 * leads no group (nothing else is signalled then). */
TEST_IMPL(process_kill_group) {
  const char* sleep_args[] = {"30", NULL};
  herd_spawn_options_t o;
  struct pollfd pfd;
  uv_loop_t loop;
  group_run_t g;

  ASSERT_OK(uv_loop_init(&loop));
  sup_opts(&o);
  o.flags = HERD_SPAWN_PROCESS_GROUP;
  memset(&g, 0, sizeof(g));
  g.sleeper_fd = -1;
  ASSERT_OK(herd_spawn(&loop, &g.r.child, "/bin/sh", group_args, &o));
  ASSERT_OK(herd_child_read_start(&g.r.child, 1, group_read_then_kill));
  test_loop_run_close(&loop);
  ASSERT_EQ(g.r.sig, SIGTERM);
  ASSERT_EQ(herd_child_kill_group(&g.r.child, SIGTERM), UV_ESRCH);
  /* The sleep got it too (it is init's to reap now). */
  pfd.fd = g.sleeper_fd;
  pfd.events = POLLIN;
  ASSERT_EQ(poll(&pfd, 1, 5000), 1);
  close(g.sleeper_fd);

  /* No group of its own: nothing to signal. */
  ASSERT_OK(uv_loop_init(&loop));
  sup_opts(&o);
  memset(&g, 0, sizeof(g));
  ASSERT_OK(herd_spawn(&loop, &g.r.child, "sleep", sleep_args, &o));
  ASSERT_EQ(herd_child_kill_group(&g.r.child, SIGKILL), UV_ESRCH);
  ASSERT_EQ(g.r.child.killed, 0);
  ASSERT_OK(herd_child_kill(&g.r.child, SIGKILL));
  test_loop_run_close(&loop);
  ASSERT_EQ(g.r.sig, SIGKILL);
  return 0;
}
