/* Tests of herd_spawn() and the child handle. */
#include "task.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  herd_child_t child; /* first: the callbacks cast back */
  char out[65536];
  size_t out_len;
  int events; /* gives each callback its order */
  int exit_calls, error_calls, close_calls;
  int exit_at, eof_at, close_at;
  int err;
  int64_t status;
  int sig;
  int kill_after_exit;
} run_t;

static void on_read(herd_child_t* child, int fd, const char* buf,
                    ssize_t nread) {
  run_t* r = (run_t*)child;
  (void)fd;
  if (nread < 0) {
    ASSERT_EQ(nread, UV_EOF);
    r->eof_at = ++r->events;
    return;
  }
  ASSERT(r->out_len + (size_t)nread < sizeof(r->out));
  memcpy(r->out + r->out_len, buf, (size_t)nread);
  r->out_len += (size_t)nread;
  r->out[r->out_len] = '\0';
}

static void on_child_exit(herd_child_t* child, int64_t status, int sig) {
  run_t* r = (run_t*)child;
  r->exit_calls++;
  r->exit_at = ++r->events;
  r->status = status;
  r->sig = sig;
  ASSERT(child->exited);
  r->kill_after_exit = herd_child_kill(child, SIGTERM);
}

static void on_error(herd_child_t* child, int err) {
  run_t* r = (run_t*)child;
  r->error_calls++;
  r->err = err;
}

static void on_close(herd_child_t* child) {
  run_t* r = (run_t*)child;
  r->close_calls++;
  r->close_at = ++r->events;
}

static void opts_init(herd_spawn_options_t* o) {
  memset(o, 0, sizeof(*o));
  o->exit_cb = on_child_exit;
  o->error_cb = on_error;
  o->close_cb = on_close;
}

/* Spawns on `loop` and reads stdout when it is a pipe. */
static void start(uv_loop_t* loop, run_t* r, const char* file,
                  const char* const* args, herd_spawn_options_t* o) {
  memset(r, 0, sizeof(*r));
  ASSERT_OK(herd_spawn(loop, &r->child, file, args, o));
  if (herd_child_stream(&r->child, 1) != NULL)
    ASSERT_OK(herd_child_read_start(&r->child, 1, on_read));
}

/* Runs one child to the end on a fresh loop. */
static void run(run_t* r, const char* file, const char* const* args,
                herd_spawn_options_t* o) {
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, r, file, args, o);
  test_loop_run_close(&loop);
  ASSERT_EQ(r->close_calls, 1);
}

static void run_ok(run_t* r, const char* file, const char* const* args,
                   herd_spawn_options_t* o) {
  run(r, file, args, o);
  ASSERT_EQ(r->error_calls, 0);
  ASSERT_EQ(r->exit_calls, 1);
}

static void sh(run_t* r, const char* script, herd_spawn_options_t* o) {
  const char* args[] = {"-c", script, NULL};
  run_ok(r, "/bin/sh", args, o);
}

TEST_IMPL(process_exit_code) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  sh(&r, "echo out; exit 7", &o);
  ASSERT_EQ(r.status, 7);
  ASSERT_EQ(r.sig, 0);
  ASSERT_STR_EQ(r.out, "out\n");
  ASSERT(r.child.pid > 0);
  ASSERT_EQ(r.child.exit_status, 7);
  ASSERT_EQ(r.child.killed, 0);
  /* Node's kill() after exit: false. */
  ASSERT_EQ(r.kill_after_exit, UV_ESRCH);
  return 0;
}

TEST_IMPL(process_exit_signal) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  sh(&r, "kill -9 $$", &o);
  ASSERT_EQ(r.sig, SIGKILL);
  ASSERT_EQ(r.status, -1);
  ASSERT_EQ(r.child.term_signal, SIGKILL);
  ASSERT_EQ(r.child.killed, 0);
  return 0;
}

/* A grandchild keeps stdout open after the child exits: close_cb must wait
 * for the pipe's EOF, which comes after exit_cb. */
TEST_IMPL(process_close_after_exit_and_pipes) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  sh(&r, "(sleep 0.3; echo late) & exit 0", &o);
  ASSERT_STR_EQ(r.out, "late\n");
  ASSERT(r.exit_at > 0 && r.eof_at > r.exit_at && r.close_at > r.eof_at);
  return 0;
}

/* Pipes nobody reads are drained after exit so close_cb still comes. */
TEST_IMPL(process_unread_pipes_drained) {
  herd_spawn_options_t o;
  const char* args[] = {"-c",
                        "head -c 300000 /dev/zero; head -c 300000 "
                        "/dev/zero >&2",
                        NULL};
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  memset(&r, 0, sizeof(r));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_spawn(&loop, &r.child, "/bin/sh", args, &o));
  /* Unread, the child blocks writing; kill it so it exits. */
  test_sleep_ms(100);
  ASSERT_OK(herd_child_kill(&r.child, SIGKILL));
  ASSERT_EQ(r.child.killed, 1);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.exit_calls, 1);
  ASSERT_EQ(r.close_calls, 1);
  ASSERT_EQ(r.sig, SIGKILL);
  return 0;
}

TEST_IMPL(process_argv0) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  o.argv0 = "custom-name";
  sh(&r, "echo $0", &o);
  ASSERT_STR_EQ(r.out, "custom-name\n");
  return 0;
}

TEST_IMPL(process_cwd) {
  herd_spawn_options_t o;
  const char* args[] = {NULL};
  run_t r;
  opts_init(&o);
  o.cwd = "/usr/share";
  run_ok(&r, "pwd", args, &o);
  ASSERT_STR_EQ(r.out, "/usr/share\n");
  return 0;
}

TEST_IMPL(process_env_replace) {
  herd_spawn_options_t o;
  const char* env[] = {"FOO=bar", "A=b c", NULL};
  run_t r;
  opts_init(&o);
  o.env = env;
  ASSERT_OK(setenv("HERD_PARENT_ONLY", "1", 1));
  run_ok(&r, "/usr/bin/env", NULL, &o);
  ASSERT_STR_EQ(r.out, "FOO=bar\nA=b c\n");
  return 0;
}

TEST_IMPL(process_env_extend) {
  herd_spawn_options_t o;
  const char* env[] = {"FOO=bar", "HERD_OVERRIDE=new", NULL};
  run_t r;
  opts_init(&o);
  o.env = env;
  o.flags = HERD_SPAWN_ENV_EXTEND;
  ASSERT_OK(setenv("HERD_PARENT_ONLY", "kept", 1));
  ASSERT_OK(setenv("HERD_OVERRIDE", "old", 1));
  sh(&r, "echo $FOO $HERD_PARENT_ONLY $HERD_OVERRIDE", &o);
  ASSERT_STR_EQ(r.out, "bar kept new\n");
  return 0;
}

/* PATH comes from the child's environment when it has one. */
TEST_IMPL(process_path_from_child_env) {
  char dir[] = "/tmp/herd-path-XXXXXX";
  char prog[256], envpath[300];
  const char* env[] = {envpath, NULL};
  herd_spawn_options_t o;
  run_t r;
  FILE* f;
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(prog, sizeof(prog), "%s/herd-found-me", dir);
  f = fopen(prog, "w");
  ASSERT(f != NULL);
  fputs("#!/bin/sh\necho found\n", f);
  fclose(f);
  ASSERT_EQ(chmod(prog, 0755), 0);
  snprintf(envpath, sizeof(envpath), "PATH=/nonexistent:%s", dir);
  opts_init(&o);
  o.env = env;
  run_ok(&r, "herd-found-me", NULL, &o);
  ASSERT_STR_EQ(r.out, "found\n");
  /* With the parent's PATH the program is not found. */
  opts_init(&o);
  run(&r, "herd-found-me", NULL, &o);
  ASSERT_EQ(r.error_calls, 1);
  ASSERT_EQ(r.err, UV_ENOENT);
  unlink(prog);
  rmdir(dir);
  return 0;
}

HELPER_IMPL(process_fd_targets) {
  char path[64], target[256];
  (void)argc;
  (void)argv;
  for (int fd = 0; fd < 2; fd++) {
    ssize_t n;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    target[n < 0 ? 0 : n] = '\0';
    fprintf(stderr, "%s\n", target);
  }
  return 0;
}

TEST_IMPL(process_stdio_ignore) {
  herd_stdio_t stdio[3] = {
      {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_PIPE, 0}};
  herd_spawn_options_t o;
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  o.stdio = stdio;
  o.stdio_count = 3;
  ASSERT_OK(uv_loop_init(&loop));
  /* stderr (a pipe) reports what stdin and stdout are. */
  memset(&r, 0, sizeof(r));
  ASSERT_OK(herd_spawn(&loop, &r.child, test_exe(),
                       test_helper_args("process_fd_targets", NULL, NULL), &o));
  ASSERT(herd_child_stream(&r.child, 0) == NULL);
  ASSERT(herd_child_stream(&r.child, 1) == NULL);
  ASSERT_OK(herd_child_read_start(&r.child, 2, on_read));
  test_loop_run_close(&loop);
  ASSERT_STR_EQ(r.out, "/dev/null\n/dev/null\n");
  return 0;
}

TEST_IMPL(process_stdio_fd_and_inherit) {
  int p[2], saved;
  char buf[256];
  ssize_t n;
  size_t len = 0;
  herd_stdio_t stdio[4] = {{HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_INHERIT, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_FD, 0}};
  herd_spawn_options_t o;
  run_t r;
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  /* fd 3 of the child is our pipe; fd 1 is inherited, and our fd 1 is
   * made the same pipe for the duration, so both writes arrive there. */
  stdio[3].fd = p[1];
  saved = fcntl(1, F_DUPFD_CLOEXEC, 10);
  ASSERT(saved >= 0);
  ASSERT_EQ(dup2(p[1], 1), 1);
  /* Inherited means inherited even when the parent marked it CLOEXEC. */
  ASSERT_EQ(fcntl(1, F_SETFD, FD_CLOEXEC), 0);
  opts_init(&o);
  o.stdio = stdio;
  o.stdio_count = 4;
  sh(&r, "echo inherited; echo given >&3", &o);
  ASSERT_EQ(dup2(saved, 1), 1);
  close(saved);
  close(p[1]);
  while ((n = read(p[0], buf + len, sizeof(buf) - 1 - len)) > 0)
    len += (size_t)n;
  buf[len] = '\0';
  close(p[0]);
  ASSERT_STR_EQ(buf, "inherited\ngiven\n");
  return 0;
}

/* A source fd inside the child's stdio range must not be clobbered by an
 * earlier dup2: child fd 0 gets our fd 1 and child fd 1 gets our fd 0. */
TEST_IMPL(process_stdio_fd_overlap) {
  int in[2], out[2], saved0, saved1;
  char buf[64];
  ssize_t n;
  herd_stdio_t stdio[2] = {{HERD_STDIO_FD, 1}, {HERD_STDIO_FD, 0}};
  herd_spawn_options_t o;
  run_t r;
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  saved0 = fcntl(0, F_DUPFD_CLOEXEC, 10);
  saved1 = fcntl(1, F_DUPFD_CLOEXEC, 10);
  ASSERT_EQ(dup2(in[0], 1), 1);  /* our fd 1: what the child reads */
  ASSERT_EQ(dup2(out[1], 0), 0); /* our fd 0: where the child writes */
  ASSERT_EQ(write(in[1], "swap\n", 5), 5);
  close(in[1]);
  opts_init(&o);
  o.stdio = stdio;
  o.stdio_count = 2;
  run_ok(&r, "/bin/cat", NULL, &o);
  ASSERT_EQ(dup2(saved0, 0), 0);
  ASSERT_EQ(dup2(saved1, 1), 1);
  close(saved0);
  close(saved1);
  close(in[0]);
  close(out[1]);
  n = read(out[0], buf, sizeof(buf) - 1);
  ASSERT_EQ(n, 5);
  buf[n] = '\0';
  close(out[0]);
  ASSERT_STR_EQ(buf, "swap\n");
  return 0;
}

HELPER_IMPL(process_sid) {
  (void)argc;
  (void)argv;
  printf("%d\n", getsid(0) == getpid());
  return 0;
}

TEST_IMPL(process_detached) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  run_ok(&r, test_exe(), test_helper_args("process_sid", NULL, NULL), &o);
  ASSERT_STR_EQ(r.out, "0\n");
  o.flags = HERD_SPAWN_DETACHED;
  run_ok(&r, test_exe(), test_helper_args("process_sid", NULL, NULL), &o);
  ASSERT_STR_EQ(r.out, "1\n");
  return 0;
}

TEST_IMPL(process_shell) {
  herd_spawn_options_t o;
  const char* args[] = {"$((40+2))", "a", NULL};
  run_t r;
  opts_init(&o);
  o.flags = HERD_SPAWN_SHELL;
  run_ok(&r, "echo", args, &o);
  ASSERT_STR_EQ(r.out, "42 a\n");
  /* A shell given by path; bash's own variable proves which ran. */
  o.shell = "/bin/bash";
  {
    const char* a2[] = {"${BASH_VERSION:+bash}", NULL};
    run_ok(&r, "echo", a2, &o);
  }
  ASSERT_STR_EQ(r.out, "bash\n");
  o.shell = "/bin/sh";
  {
    const char* a3[] = {"${BASH_VERSION:-notbash}", NULL};
    run_ok(&r, "echo", a3, &o);
  }
  ASSERT_STR_EQ(r.out, "notbash\n");
  return 0;
}

TEST_IMPL(process_kill) {
  herd_spawn_options_t o;
  const char* args[] = {"10", NULL};
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "sleep", args, &o);
  ASSERT_EQ(r.child.killed, 0);
  ASSERT_OK(herd_child_kill(&r.child, 0));
  ASSERT_EQ(r.child.killed, 1);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.sig, SIGTERM);
  ASSERT_EQ(r.status, -1);
  ASSERT_EQ(r.kill_after_exit, UV_ESRCH);
  return 0;
}

TEST_IMPL(process_ref_unref) {
  herd_stdio_t stdio[3] = {
      {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}};
  herd_spawn_options_t o;
  const char* args[] = {"10", NULL};
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  o.stdio = stdio;
  o.stdio_count = 3;
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "sleep", args, &o);
  herd_child_unref(&r.child);
  /* Nothing keeps the loop alive: uv_run returns while the child runs. */
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(r.exit_calls, 0);
  herd_child_ref(&r.child);
  ASSERT_EQ(uv_run(&loop, UV_RUN_NOWAIT), 1);
  ASSERT_OK(herd_child_kill(&r.child, SIGKILL));
  test_loop_run_close(&loop);
  ASSERT_EQ(r.sig, SIGKILL);
  ASSERT_EQ(r.close_calls, 1);
  return 0;
}

TEST_IMPL(process_timeout) {
  herd_spawn_options_t o;
  const char* args[] = {"10", NULL};
  run_t r;
  opts_init(&o);
  o.timeout = 100;
  run_ok(&r, "sleep", args, &o);
  ASSERT_EQ(r.sig, SIGTERM);
  ASSERT_EQ(r.child.killed, 1);
  /* kill_signal applies. */
  o.kill_signal = SIGINT;
  run_ok(&r, "sleep", args, &o);
  ASSERT_EQ(r.sig, SIGINT);
  return 0;
}

/* A child that ignores SIGTERM gets SIGKILL after kill_grace. */
TEST_IMPL(process_timeout_escalation) {
  herd_spawn_options_t o;
  uint64_t t0;
  run_t r;
  opts_init(&o);
  o.timeout = 100;
  o.kill_grace = 200;
  t0 = uv_hrtime();
  sh(&r, "trap '' TERM; exec sleep 10", &o);
  ASSERT_EQ(r.sig, SIGKILL);
  ASSERT_EQ(r.child.killed, 1);
  /* Not before timeout + grace. libuv's timers count whole milliseconds of a
   * cached loop time, so each may fire up to 1 ms early against hrtime. */
  ASSERT_GE((uv_hrtime() - t0) / 1000000, 298);
  return 0;
}

static herd_abort_t abort_ctl;
static void abort_timer_cb(uv_timer_t* t) {
  herd_abort(&abort_ctl);
  uv_close((uv_handle_t*)t, NULL);
}

TEST_IMPL(process_abort) {
  herd_spawn_options_t o;
  const char* args[] = {"10", NULL};
  uv_loop_t loop;
  uv_timer_t timer;
  run_t r[2], late;
  opts_init(&o);
  herd_abort_init(&abort_ctl);
  o.abort = &abort_ctl;
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r[0], "sleep", args, &o);
  start(&loop, &r[1], "sleep", args, &o);
  ASSERT_OK(uv_timer_init(&loop, &timer));
  ASSERT_OK(uv_timer_start(&timer, abort_timer_cb, 50, 0));
  test_loop_run_close(&loop);
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(r[i].error_calls, 1);
    ASSERT_EQ(r[i].err, UV_ECANCELED);
    ASSERT_EQ(r[i].exit_calls, 1);
    ASSERT_EQ(r[i].sig, SIGTERM);
    ASSERT_EQ(r[i].child.killed, 1);
    ASSERT_EQ(r[i].close_calls, 1);
  }
  ASSERT(abort_ctl.aborted);
  ASSERT(abort_ctl.head == NULL);
  /* Spawning with an aborted controller fails at once. */
  run(&late, "sleep", args, &o);
  ASSERT_EQ(late.error_calls, 1);
  ASSERT_EQ(late.err, UV_ECANCELED);
  ASSERT_EQ(late.exit_calls, 0);
  ASSERT_EQ(late.child.pid, 0);
  return 0;
}

static void expect_spawn_error(const char* file, const char* cwd, int err) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  o.cwd = cwd;
  run(&r, file, NULL, &o);
  if (r.err != err)
    FATAL("%s: %s, expected %s", file, herd_err_name(r.err),
          herd_err_name(err));
  ASSERT_EQ(r.error_calls, 1);
  ASSERT_EQ(r.exit_calls, 0);
  ASSERT_EQ(r.close_calls, 1);
  ASSERT_EQ(r.child.pid, 0);
  ASSERT_EQ(herd_child_kill(&r.child, SIGTERM), UV_ESRCH);
}

TEST_IMPL(process_spawn_errors) {
  char path[] = "/tmp/herd-noexec-XXXXXX";
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, "#!/bin/sh\n", 10), 10);
  close(fd);
  ASSERT_EQ(chmod(path, 0644), 0);
  expect_spawn_error("/nonexistent/program", NULL, UV_ENOENT);
  expect_spawn_error("herd-no-such-program", NULL, UV_ENOENT);
  expect_spawn_error("/tmp", NULL, UV_EACCES);
  expect_spawn_error(path, NULL, UV_EACCES);
  expect_spawn_error("/bin/true", "/nonexistent-dir", UV_ENOENT);
  unlink(path);
  return 0;
}

/* The fork path (uid/gid) reports exec errors the same way. */
TEST_IMPL(process_spawn_errors_fork_path) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  o.flags = HERD_SPAWN_SETUID | HERD_SPAWN_SETGID;
  o.uid = 65534;
  o.gid = 65534;
  run(&r, "/nonexistent/program", NULL, &o);
  ASSERT_EQ(r.err, UV_ENOENT);
  ASSERT_EQ(r.close_calls, 1);
  o.cwd = "/nonexistent-dir";
  run(&r, "/bin/true", NULL, &o);
  ASSERT_EQ(r.err, UV_ENOENT);
  return 0;
}

TEST_IMPL(process_emfile) {
  struct rlimit old, low;
  int fds[256], nfds = 0, fd;
  uv_loop_t loop;
  herd_spawn_options_t o;
  run_t r;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  while (nfds < 256 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
    fds[nfds++] = fd;
  ASSERT_EQ(errno, EMFILE);
  opts_init(&o);
  start(&loop, &r, "/bin/true", NULL, &o);
  ASSERT_EQ(r.child.pid, 0);
  while (nfds > 0)
    close(fds[--nfds]);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.error_calls, 1);
  ASSERT_EQ(r.err, UV_EMFILE);
  ASSERT_EQ(r.close_calls, 1);
  return 0;
}

HELPER_IMPL(process_list_fds) {
  char path[64], line[1024] = "";
  (void)argc;
  (void)argv;
  for (int fd = 0; fd < 1024; fd++) {
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (access(path, F_OK) == 0) {
      char num[16];
      snprintf(num, sizeof(num), "%s%d", line[0] ? " " : "", fd);
      strcat(line, num);
    }
  }
  printf("%s\n", line);
  return 0;
}

TEST_IMPL(process_no_fd_leak) {
  herd_stdio_t stdio[5] = {{HERD_STDIO_PIPE, 0},
                           {HERD_STDIO_PIPE, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_FD, 0}};
  herd_spawn_options_t o;
  run_t r;
  /* Deliberately not CLOEXEC: the child must still not see it. */
  int leaky = open("/dev/null", O_RDONLY);
  ASSERT(leaky >= 0);
  opts_init(&o);
  run_ok(&r, test_exe(), test_helper_args("process_list_fds", NULL, NULL), &o);
  ASSERT_STR_EQ(r.out, "0 1 2\n");
  stdio[4].fd = leaky;
  o.stdio = stdio;
  o.stdio_count = 5;
  run_ok(&r, test_exe(), test_helper_args("process_list_fds", NULL, NULL), &o);
  /* fd 3 is 'ignore', which leaves an fd above 2 closed, as in Node. */
  ASSERT_STR_EQ(r.out, "0 1 2 4\n");
  /* The fork path too. */
  o.stdio = NULL;
  o.stdio_count = 0;
  o.flags = HERD_SPAWN_SETGID;
  o.gid = 0;
  run_ok(&r, test_exe(), test_helper_args("process_list_fds", NULL, NULL), &o);
  ASSERT_STR_EQ(r.out, "0 1 2\n");
  close(leaky);
  return 0;
}

static void wait_no_children(int ms) {
  for (int waited = 0; waited < ms; waited += 10) {
    siginfo_t info;
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) == -1 &&
        errno == ECHILD)
      return;
    test_sleep_ms(10);
  }
  FATAL("a child is left after %d ms", ms);
}

TEST_IMPL(process_no_zombies) {
  herd_spawn_options_t o;
  uv_loop_t loop;
  run_t r[10];
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  for (int i = 0; i < 10; i++)
    start(&loop, &r[i], "/bin/true", NULL, &o);
  test_loop_run_close(&loop);
  for (int i = 0; i < 10; i++)
    ASSERT_EQ(r[i].close_calls, 1);
  wait_no_children(1);
  return 0;
}

TEST_IMPL(process_close_before_exit) {
  herd_spawn_options_t o;
  const char* args[] = {"1", NULL};
  uv_loop_t loop;
  run_t r[3];
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  for (int i = 0; i < 3; i++) {
    start(&loop, &r[i], "sleep", args, &o);
    herd_child_close(&r[i].child);
  }
  test_loop_run_close(&loop);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(r[i].close_calls, 1);
    ASSERT_EQ(r[i].exit_calls, 0);
  }
  /* The children still run, and are reaped once they exit. */
  ASSERT_EQ(kill(r[0].child.pid, 0), 0);
  wait_no_children(4000);
  return 0;
}

/* 100 MB through a pipe in bounded memory. */
static size_t flood_bytes;
static void flood_read(herd_child_t* child, int fd, const char* buf,
                       ssize_t nread) {
  (void)child;
  (void)fd;
  (void)buf;
  if (nread > 0)
    flood_bytes += (size_t)nread;
}

static long vm_hwm_kb(void) {
  char* s = test_read_file("/proc/self/status", NULL);
  char* p;
  long kb = -1;
  ASSERT(s != NULL);
  p = strstr(s, "VmHWM:");
  if (p != NULL)
    kb = strtol(p + 6, NULL, 10);
  free(s);
  return kb;
}

TEST_IMPL(process_stream_100mb) {
  herd_spawn_options_t o;
  const char* args[] = {"-c", "100000000", "/dev/zero", NULL};
  uv_loop_t loop;
  run_t r;
  long before, after;
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  before = vm_hwm_kb();
  memset(&r, 0, sizeof(r));
  ASSERT_OK(herd_spawn(&loop, &r.child, "head", args, &o));
  ASSERT_OK(herd_child_read_start(&r.child, 1, flood_read));
  test_loop_run_close(&loop);
  after = vm_hwm_kb();
  ASSERT_EQ(r.status, 0);
  ASSERT_EQ(flood_bytes, 100000000);
  /* Growth, not the total: sanitizers inflate the baseline. */
  if (after - before > 16 * 1024)
    FATAL("peak RSS grew by %ld kB", after - before);
  return 0;
}

static int ticks;
static int exits_seen;
static void tick_cb(uv_timer_t* t) {
  (void)t;
  /* Only ticks while some child still runs count. */
  if (exits_seen < 50)
    ticks++;
}

static void count_exit(herd_child_t* child, int64_t status, int sig) {
  exits_seen++;
  on_child_exit(child, status, sig);
}

static int loop_children_left;
static void count_close(herd_child_t* child) {
  run_t* r = (run_t*)child;
  r->close_calls++;
  if (--loop_children_left == 0)
    uv_close((uv_handle_t*)child->data, NULL);
}

/* 50 children run at once while a 10 ms timer keeps ticking: herd never
 * blocks the caller's loop waiting for a child. */
TEST_IMPL(process_loop_never_blocks) {
  static run_t r[50];
  herd_spawn_options_t o;
  const char* args[] = {"0.3", NULL};
  uv_loop_t loop;
  uv_timer_t timer;
  opts_init(&o);
  o.exit_cb = count_exit;
  o.close_cb = count_close;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(uv_timer_init(&loop, &timer));
  ASSERT_OK(uv_timer_start(&timer, tick_cb, 10, 10));
  loop_children_left = 50;
  for (int i = 0; i < 50; i++) {
    memset(&r[i], 0, sizeof(r[i]));
    r[i].child.data = &timer;
    ASSERT_OK(herd_spawn(&loop, &r[i].child, "sleep", args, &o));
  }
  test_loop_run_close(&loop);
  for (int i = 0; i < 50; i++) {
    ASSERT_EQ(r[i].exit_calls, 1);
    ASSERT_EQ(r[i].status, 0);
  }
  /* The last child runs at least 0.3 s after uv_run() starts: about 30
   * ticks, fewer on a loaded machine; a loop blocked waiting for children
   * would see next to none. */
  ASSERT_GE(ticks, 5);
  return 0;
}

TEST_IMPL(process_uid_gid) {
  herd_spawn_options_t o;
  run_t r;
  opts_init(&o);
  o.flags = HERD_SPAWN_SETUID | HERD_SPAWN_SETGID;
  o.uid = 65534;
  o.gid = 65534;
  sh(&r, "id -u; id -g; id -G", &o);
  ASSERT_STR_EQ(r.out, "65534\n65534\n65534\n");
  return 0;
}

/* The IPC entry: a socketpair at the requested fd, announced through
 * NODE_CHANNEL_FD, and close_cb waits for the channel. */
TEST_IMPL(process_ipc_channel) {
  herd_stdio_t stdio[4] = {{HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_PIPE, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_IPC, 0}};
  herd_spawn_options_t o;
  const char* args[] = {
      "-c",
      "echo $NODE_CHANNEL_FD $NODE_CHANNEL_SERIALIZATION_MODE; "
      "readlink /proc/self/fd/3 | cut -c1-7",
      NULL};
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  o.stdio = stdio;
  o.stdio_count = 4;
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "/bin/sh", args, &o);
  ASSERT(r.child.channel != NULL);
  test_loop_run_close(&loop);
  ASSERT_STR_EQ(r.out, "3 json\nsocket:\n");
  ASSERT(r.child.channel == NULL);
  ASSERT_EQ(r.close_calls, 1);
  /* Two IPC entries are a misuse. */
  stdio[0].kind = HERD_STDIO_IPC;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(herd_spawn(&loop, &r.child, "/bin/true", NULL, &o), UV_EINVAL);
  test_loop_close(&loop);
  return 0;
}

TEST_IMPL(process_stdin_write_end) {
  herd_spawn_options_t o;
  uv_loop_t loop;
  uv_write_t req;
  uv_buf_t buf = uv_buf_init("to cat\n", 7);
  run_t r;
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "cat", NULL, &o);
  ASSERT_OK(uv_write(&req, herd_child_stream(&r.child, 0), &buf, 1, NULL));
  ASSERT_OK(herd_child_end(&r.child, 0));
  test_loop_run_close(&loop);
  ASSERT_STR_EQ(r.out, "to cat\n");
  ASSERT_EQ(r.status, 0);
  return 0;
}

static void close_in_exit(herd_child_t* child, int64_t status, int sig) {
  run_t* r = (run_t*)child;
  r->exit_calls++;
  r->status = status;
  r->sig = sig;
  herd_child_close(child);
  herd_child_close(child);
}

/* herd_child_close() at every stage still ends with exactly one close_cb,
 * from the loop. */
TEST_IMPL(process_close_variants) {
  herd_spawn_options_t o;
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  /* Before a spawn failure was reported: the error is dropped. */
  start(&loop, &r, "/nonexistent/program", NULL, &o);
  herd_child_close(&r.child);
  ASSERT_EQ(r.close_calls, 0);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.error_calls, 0);
  ASSERT_EQ(r.close_calls, 1);
  /* From exit_cb, twice. */
  o.exit_cb = close_in_exit;
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "/bin/true", NULL, &o);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.exit_calls, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT_EQ(r.close_calls, 1);
  /* After exit, before close_cb, with an IPC channel. */
  {
    herd_stdio_t stdio[4] = {{HERD_STDIO_IGNORE, 0},
                             {HERD_STDIO_IGNORE, 0},
                             {HERD_STDIO_IGNORE, 0},
                             {HERD_STDIO_IPC, 0}};
    o.exit_cb = on_child_exit;
    o.stdio = stdio;
    o.stdio_count = 4;
    ASSERT_OK(uv_loop_init(&loop));
    start(&loop, &r, "/bin/true", NULL, &o);
    while (r.exit_calls == 0)
      ASSERT_EQ(uv_run(&loop, UV_RUN_ONCE), 1);
    herd_child_close(&r.child);
    ASSERT_EQ(r.close_calls, 0);
    test_loop_run_close(&loop);
    ASSERT_EQ(r.close_calls, 1);
  }
  return 0;
}

/* An executable file without #! runs through /bin/sh, as with execvp(). */
TEST_IMPL(process_script_without_shebang) {
  char path[] = "/tmp/herd-script-XXXXXX";
  const char* args[] = {"arg1", NULL};
  herd_spawn_options_t o;
  run_t r;
  int fd = mkstemp(path);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, "echo script $1\n", 15), 15);
  close(fd);
  ASSERT_EQ(chmod(path, 0755), 0);
  opts_init(&o);
  run_ok(&r, path, args, &o);
  ASSERT_STR_EQ(r.out, "script arg1\n");
  unlink(path);
  return 0;
}

/* A pipe the user paused is not drained at exit: its data waits until
 * reading resumes, and close_cb waits with it. */
TEST_IMPL(process_paused_pipe_kept) {
  herd_spawn_options_t o;
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  {
    const char* args[] = {"-c", "echo kept", NULL};
    start(&loop, &r, "/bin/sh", args, &o);
  }
  ASSERT_OK(herd_child_read_stop(&r.child, 1));
  while (r.exit_calls == 0)
    ASSERT_EQ(uv_run(&loop, UV_RUN_ONCE), 1);
  for (int i = 0; i < 5; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(r.close_calls, 0);
  ASSERT_EQ(r.out_len, 0);
  ASSERT_OK(herd_child_read_start(&r.child, 1, on_read));
  test_loop_run_close(&loop);
  ASSERT_STR_EQ(r.out, "kept\n");
  ASSERT_EQ(r.close_calls, 1);
  return 0;
}

/* Every signal at its default and none blocked in the child, whatever the
 * parent ignores or blocks. glibc's posix_spawn() left its two internal
 * signals (32 and 33) ignored: SigIgn 0x180000000. */
HELPER_IMPL(process_sig_status) {
  char* s = test_read_file("/proc/self/status", NULL);
  (void)argc;
  (void)argv;
  ASSERT(s != NULL);
  for (char* line = strtok(s, "\n"); line != NULL; line = strtok(NULL, "\n"))
    if (strncmp(line, "SigIgn:", 7) == 0 || strncmp(line, "SigBlk:", 7) == 0)
      printf("%s\n", line);
  free(s);
  return 0;
}

TEST_IMPL(process_signals_default) {
  const char* expect = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  signal(SIGUSR2, SIG_IGN);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &usr1, &old), 0);
  memset(&o, 0, sizeof(o));
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("process_sig_status", NULL, NULL), &o, &r));
  ASSERT_STR_EQ(r.out, expect);
  herd_sync_result_free(&r);
  /* With ids to change (once a fork()-based path). */
  o.flags = HERD_SPAWN_SETGID;
  o.gid = getgid();
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("process_sig_status", NULL, NULL), &o, &r));
  ASSERT_STR_EQ(r.out, expect);
  herd_sync_result_free(&r);
  ASSERT_EQ(sigprocmask(SIG_SETMASK, &old, NULL), 0);
  signal(SIGUSR2, SIG_DFL);
  return 0;
}

/* As in Node, unref() covers the process, not its pipes: with the default
 * pipes, read or not, the loop runs until the child exits. */
TEST_IMPL(process_unref_pipes_hold_loop) {
  herd_spawn_options_t o;
  const char* short_args[] = {"0.3", NULL};
  const char* long_args[] = {"10", NULL};
  uv_loop_t loop;
  run_t r;
  opts_init(&o);
  ASSERT_OK(uv_loop_init(&loop));
  memset(&r, 0, sizeof(r));
  ASSERT_OK(herd_spawn(&loop, &r.child, "sleep", short_args, &o));
  herd_child_unref(&r.child);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(r.exit_calls, 1);
  ASSERT_EQ(r.status, 0);
  ASSERT_EQ(r.close_calls, 1);
  test_loop_close(&loop);
  /* Streams the user unref'd first do not hold it. */
  ASSERT_OK(uv_loop_init(&loop));
  memset(&r, 0, sizeof(r));
  ASSERT_OK(herd_spawn(&loop, &r.child, "sleep", long_args, &o));
  for (int fd = 0; fd < 3; fd++)
    uv_unref((uv_handle_t*)herd_child_stream(&r.child, fd));
  herd_child_unref(&r.child);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(r.exit_calls, 0);
  for (int fd = 0; fd < 3; fd++)
    uv_ref((uv_handle_t*)herd_child_stream(&r.child, fd));
  herd_child_ref(&r.child);
  ASSERT_OK(herd_child_kill(&r.child, SIGKILL));
  test_loop_run_close(&loop);
  ASSERT_EQ(r.sig, SIGKILL);
  ASSERT_EQ(r.close_calls, 1);
  return 0;
}

/* Exit statuses must not depend on SIGCHLD's disposition: SIG_IGN and
 * SA_NOCLDWAIT make the kernel reap children that signal SIGCHLD by itself,
 * which lost herd's statuses (exec_sync("exit 3") failed with ESRCH). */
static void sigchld_checks(void) {
  const char* exit5[] = {"-c", "exit 5", NULL};
  const char* sleep_args[] = {"0.2", NULL};
  herd_spawn_options_t o;
  herd_sync_result_t sr;
  uv_loop_t loop;
  run_t r;

  ASSERT_EQ(herd_exec_sync("exit 3", NULL, &sr), HERD_ECMDFAILED);
  ASSERT_EQ(sr.status, 3);
  herd_sync_result_free(&sr);
  ASSERT_OK(herd_exec_sync("true", NULL, &sr));
  ASSERT_EQ(sr.status, 0);
  herd_sync_result_free(&sr);
  ASSERT_OK(herd_spawn_sync("/bin/sh", exit5, NULL, &sr));
  ASSERT_EQ(sr.status, 5);
  herd_sync_result_free(&sr);
  opts_init(&o);
  sh(&r, "exit 7", &o);
  ASSERT_EQ(r.status, 7);
  ASSERT_EQ(r.sig, 0);
  /* A child handed to the reaper thread is reaped too. */
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "sleep", sleep_args, &o);
  herd_child_close(&r.child);
  test_loop_run_close(&loop);
  test_assert_no_children(4000);
}

TEST_IMPL(process_sigchld_ignored) {
  struct sigaction sa;
  signal(SIGCHLD, SIG_IGN);
  sigchld_checks();
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = SA_NOCLDWAIT;
  ASSERT_EQ(sigaction(SIGCHLD, &sa, NULL), 0);
  sigchld_checks();
  signal(SIGCHLD, SIG_DFL);
  return 0;
}

/* The checks in a process that inherited SIGCHLD ignored across exec, as
 * under some wrappers. */
HELPER_IMPL(process_sigchld_checks) {
  struct sigaction sa;
  (void)argc;
  (void)argv;
  ASSERT_EQ(sigaction(SIGCHLD, NULL, &sa), 0);
  ASSERT(sa.sa_handler == SIG_IGN);
  sigchld_checks();
  printf("ok\n");
  return 0;
}

HELPER_IMPL(process_sigchld_ignored_exec) {
  const char* exe = test_exe();
  (void)argc;
  (void)argv;
  signal(SIGCHLD, SIG_IGN);
  execl(exe, exe, "--helper", "process_sigchld_checks", (char*)NULL);
  return 127;
}

TEST_IMPL(process_sigchld_ignored_inherited) {
  herd_sync_result_t r;
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("process_sigchld_ignored_exec", NULL, NULL),
      NULL, &r));
  if (r.status != 0)
    FATAL("checks failed (status %d): %s", (int)r.status, r.err);
  ASSERT_STR_EQ(r.out, "ok\n");
  herd_sync_result_free(&r);
  return 0;
}

/* Code that reaps "all" its children (waitpid(-1), as some libraries and
 * SIGCHLD handlers do) takes herd's too once they have exec'd. From Linux
 * 6.15 the kernel keeps the status for the pidfd, and herd reports it. */
static int kernel_at_least(int major, int minor) {
  struct utsname u;
  int ma = 0, mi = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
    return 0;
  return ma > major || (ma == major && mi >= minor);
}

TEST_IMPL(process_foreign_wait_all) {
  herd_stdio_t stdio[3] = {
      {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}};
  const char* args[] = {"-c", "exit 5", NULL};
  herd_spawn_options_t o;
  uv_loop_t loop;
  siginfo_t info;
  int status;
  run_t r;
  opts_init(&o);
  o.stdio = stdio;
  o.stdio_count = 3;
  ASSERT_OK(uv_loop_init(&loop));
  start(&loop, &r, "/bin/sh", args, &o);
  /* Until it has exited, looking without reaping. */
  ASSERT_EQ(waitid(P_PID, (id_t)r.child.pid, &info, WEXITED | WNOWAIT | __WALL),
            0);
  ASSERT_EQ(waitpid(-1, &status, WNOHANG), r.child.pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 5);
  test_loop_run_close(&loop);
  ASSERT_EQ(r.exit_calls, 1);
  if (kernel_at_least(6, 15)) {
    ASSERT_EQ(r.status, 5);
    ASSERT_EQ(r.sig, 0);
  } else {
    ASSERT_EQ(r.status, -1);
  }
  return 0;
}

/* On a kernel without close_range() (before 5.9) the child must still
 * close every fd it was not given. seccomp makes close_range() fail with
 * ENOSYS in a helper, which then spawns children that list their fds. */
HELPER_IMPL(process_no_close_range) {
#if defined(__x86_64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif
#ifdef TEST_AUDIT_ARCH
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TEST_AUDIT_ARCH, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_close_range, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {
      (unsigned short)(sizeof(filter) / sizeof(filter[0])), filter};
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  /* Deliberately not CLOEXEC. */
  int leaky = open("/dev/null", O_RDONLY);
  (void)argc;
  (void)argv;
  ASSERT(leaky >= 0);
  ASSERT_EQ(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
  ASSERT_EQ(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
  ASSERT_EQ(syscall(SYS_close_range, 1000u, 1000u, 0u), -1);
  ASSERT_EQ(errno, ENOSYS);
  memset(&o, 0, sizeof(o));
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("process_list_fds", NULL, NULL), &o, &r));
  printf("%s", r.out);
  herd_sync_result_free(&r);
  o.flags = HERD_SPAWN_SETGID;
  o.gid = getgid();
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("process_list_fds", NULL, NULL), &o, &r));
  printf("%s", r.out);
  herd_sync_result_free(&r);
  close(leaky);
#else
  (void)argc;
  (void)argv;
  printf("0 1 2\n0 1 2\n");
#endif
  return 0;
}

TEST_IMPL(process_close_range_missing) {
  herd_sync_result_t r;
  ASSERT_OK(herd_spawn_sync(
      test_exe(), test_helper_args("process_no_close_range", NULL, NULL), NULL,
      &r));
  ASSERT_EQ(r.status, 0);
  ASSERT_STR_EQ(r.out, "0 1 2\n0 1 2\n");
  herd_sync_result_free(&r);
  return 0;
}
