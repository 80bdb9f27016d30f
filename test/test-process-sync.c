/* Tests of herd_spawn_sync(), herd_exec_sync() and herd_exec_file_sync(). */
#include "task.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <unistd.h>

TEST_IMPL(spawn_sync_input) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  memset(&o, 0, sizeof(o));
  o.input = "fed to stdin";
  o.input_len = 12;
  ASSERT_OK(herd_spawn_sync("cat", NULL, &o, &r));
  ASSERT_EQ(r.status, 0);
  ASSERT_EQ(r.signal, 0);
  ASSERT(r.pid > 0);
  ASSERT_STR_EQ(r.out, "fed to stdin");
  ASSERT_EQ(r.out_len, 12);
  ASSERT_STR_EQ(r.err, "");
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(spawn_sync_status) {
  const char* args[] = {"-c", "echo o; echo e >&2; exit 5", NULL};
  const char* kill_args[] = {"-c", "kill -USR1 $$", NULL};
  herd_sync_result_t r;
  /* A non-zero status is not an error for spawn_sync. */
  ASSERT_OK(herd_spawn_sync("/bin/sh", args, NULL, &r));
  ASSERT_EQ(r.status, 5);
  ASSERT_STR_EQ(r.out, "o\n");
  ASSERT_STR_EQ(r.err, "e\n");
  herd_sync_result_free(&r);
  ASSERT_OK(herd_spawn_sync("/bin/sh", kill_args, NULL, &r));
  ASSERT_EQ(r.status, -1);
  ASSERT_EQ(r.signal, SIGUSR1);
  herd_sync_result_free(&r);
  ASSERT_EQ(herd_spawn_sync("/nonexistent/x", NULL, NULL, &r), UV_ENOENT);
  ASSERT_EQ(r.error, UV_ENOENT);
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(spawn_sync_timeout) {
  const char* args[] = {"10", NULL};
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  memset(&o, 0, sizeof(o));
  o.timeout = 100;
  ASSERT_EQ(herd_spawn_sync("sleep", args, &o, &r), UV_ETIMEDOUT);
  ASSERT_EQ(r.error, UV_ETIMEDOUT);
  ASSERT_EQ(r.status, -1);
  ASSERT_EQ(r.signal, SIGTERM);
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(spawn_sync_enobufs) {
  const char* args[] = {"-c", "head -c 600 /dev/zero; exec cat /dev/zero >&2",
                        NULL};
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  memset(&o, 0, sizeof(o));
  o.max_buffer = 1000;
  /* Both pipes count together: 600 on stdout + 400 on stderr. */
  ASSERT_EQ(herd_spawn_sync("/bin/sh", args, &o, &r), UV_ENOBUFS);
  ASSERT_EQ(r.out_len + r.err_len, 1000);
  ASSERT_EQ(r.out_len, 600);
  ASSERT_EQ(r.signal, SIGTERM);
  herd_sync_result_free(&r);
  return 0;
}

/* The caller's loop is untouched: a timer due during the call does not run
 * inside it. */
static int timer_ran;
static void sync_timer_cb(uv_timer_t* t) {
  timer_ran++;
  uv_close((uv_handle_t*)t, NULL);
}

TEST_IMPL(spawn_sync_private_loop) {
  const char* args[] = {"0.1", NULL};
  uv_loop_t loop;
  uv_timer_t t;
  herd_sync_result_t r;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(uv_timer_init(&loop, &t));
  ASSERT_OK(uv_timer_start(&t, sync_timer_cb, 1, 0));
  ASSERT_OK(herd_spawn_sync("sleep", args, NULL, &r));
  herd_sync_result_free(&r);
  ASSERT_EQ(timer_ran, 0);
  test_loop_run_close(&loop);
  ASSERT_EQ(timer_ran, 1);
  return 0;
}

/* exec_sync: stdout captured, stderr straight to the parent's stderr. */
TEST_IMPL(exec_sync_stderr_inherit) {
  char path[] = "/tmp/herd-stderr-XXXXXX";
  int fd = mkstemp(path);
  int saved;
  herd_sync_result_t r;
  char* text;
  ASSERT(fd >= 0);
  unlink(path);
  saved = fcntl(2, F_DUPFD_CLOEXEC, 10);
  ASSERT_EQ(dup2(fd, 2), 2);
  ASSERT_OK(herd_exec_sync("echo to-out; echo to-err >&2", NULL, &r));
  ASSERT_EQ(dup2(saved, 2), 2);
  close(saved);
  ASSERT_STR_EQ(r.out, "to-out\n");
  ASSERT(r.err == NULL);
  herd_sync_result_free(&r);
  {
    char procpath[64];
    snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d", fd);
    text = test_read_file(procpath, NULL);
  }
  close(fd);
  ASSERT(text != NULL);
  ASSERT_STR_EQ(text, "to-err\n");
  free(text);
  return 0;
}

TEST_IMPL(exec_sync_failed) {
  const char* args[] = {"-c", "echo out; exit 2", NULL};
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  memset(&o, 0, sizeof(o));
  ASSERT_EQ(herd_exec_sync("echo out; exit 2", NULL, &r), HERD_ECMDFAILED);
  ASSERT_EQ(r.status, 2);
  ASSERT_STR_EQ(r.out, "out\n");
  herd_sync_result_free(&r);
  ASSERT_EQ(herd_exec_file_sync("/bin/sh", args, NULL, &r), HERD_ECMDFAILED);
  ASSERT_EQ(r.status, 2);
  herd_sync_result_free(&r);
  ASSERT_OK(herd_exec_file_sync("/bin/echo", args, NULL, &r));
  ASSERT_STR_EQ(r.out, "-c echo out; exit 2\n");
  herd_sync_result_free(&r);
  o.timeout = 100;
  ASSERT_EQ(herd_exec_sync("exec sleep 10", &o, &r), UV_ETIMEDOUT);
  ASSERT_EQ(r.signal, SIGTERM);
  herd_sync_result_free(&r);
  return 0;
}

/* Input the child never reads: the write fails with EPIPE inside the call,
 * and the caller is not killed by SIGPIPE even without ignoring it. */
TEST_IMPL(spawn_sync_input_unread) {
  static char big[1 << 20];
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  memset(&o, 0, sizeof(o));
  o.input = big;
  o.input_len = sizeof(big);
  signal(SIGPIPE, SIG_DFL);
  ASSERT_OK(herd_spawn_sync("/bin/true", NULL, &o, &r));
  signal(SIGPIPE, SIG_IGN);
  ASSERT_EQ(r.status, 0);
  herd_sync_result_free(&r);
  return 0;
}

/* uv_write() takes an unsigned length: input beyond that is refused rather
 * than silently cut (the bytes are never read, so the buffer can be small). */
TEST_IMPL(spawn_sync_input_too_large) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  memset(&o, 0, sizeof(o));
  o.input = "x";
  o.input_len = (size_t)UINT_MAX + 2;
  ASSERT_EQ(herd_spawn_sync("cat", NULL, &o, &r), UV_EINVAL);
  ASSERT_EQ(r.error, UV_EINVAL);
  ASSERT_EQ(r.pid, 0);
  herd_sync_result_free(&r);
  return 0;
}

/* As Node's spawnSync: a kill by timeout or max_buffer closes every pipe,
 * so the call returns when the child exits, whatever still holds them (see
 * test-process-exec.c for `setsid`). The grandchild sleeps 60 s and prints
 * its pid; the call must return within GC_MARGIN_MS of the kill (room for a
 * loaded machine under sanitizers, far below the grandchild's life), with
 * the grandchild still alive; the test then kills it. */
#define GC_SCRIPT  "echo hi; sleep 60 & echo $!; sleep 60"
#define GC_COMMAND "exec setsid sh -c '" GC_SCRIPT "'"
enum { GC_KILL_AFTER_MS = 500, GC_MARGIN_MS = 10000 };

static uint64_t ms_since(uint64_t t0) {
  return (uv_hrtime() - t0) / 1000000;
}

static char proc_state(pid_t pid) {
  char path[64], buf[512];
  char* p;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  f = fopen(path, "re");
  if (f == NULL)
    return 0;
  p = fgets(buf, sizeof(buf), f);
  fclose(f);
  if (p == NULL || (p = strrchr(buf, ')')) == NULL || p[1] != ' ')
    return 0;
  return p[2];
}

static int proc_gone(pid_t pid) {
  char st = proc_state(pid);
  return st == 0 || st == 'Z' || st == 'X';
}

/* Checks the time since the kill and that the grandchild (whose pid follows
 * "hi\n" in `out`, or 0) outlived the call; then kills the child's group
 * and waits, with a deadline, for the grandchild to be gone. */
static void check_sync_grandchild(const char* what, uint64_t t0,
                                  uint64_t kill_in, const char* out,
                                  pid_t pgid) {
  uint64_t ms = ms_since(t0), t1;
  int gc = 0;
  ms = ms > kill_in ? ms - kill_in : 0;
  if (out != NULL)
    ASSERT_EQ(sscanf(out, "hi\n%d\n", &gc), 1);
  fprintf(stderr, "%s: returned %d ms after the kill\n", what, (int)ms);
  if (ms > GC_MARGIN_MS)
    FATAL("%s: returned %d ms after the kill", what, (int)ms);
  if (gc > 0 && proc_gone(gc))
    FATAL("%s: the grandchild was gone before the call returned", what);
  ASSERT(pgid > 0);
  kill(-pgid, SIGKILL);
  if (gc <= 0)
    return;
  kill(gc, SIGKILL);
  for (t1 = uv_hrtime(); !proc_gone(gc);) {
    if (ms_since(t1) > 5000)
      FATAL("%s: grandchild %d still there", what, gc);
    uv_sleep(5);
  }
}

TEST_IMPL(exec_sync_timeout_grandchild) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  uint64_t t0 = uv_hrtime();
  memset(&o, 0, sizeof(o));
  o.timeout = GC_KILL_AFTER_MS;
  ASSERT_EQ(herd_exec_sync(GC_COMMAND, &o, &r), UV_ETIMEDOUT);
  check_sync_grandchild("exec_sync timeout", t0, o.timeout, r.out, r.pid);
  ASSERT_EQ(r.signal, SIGTERM);
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(exec_file_sync_timeout_grandchild) {
  const char* args[] = {"-c", GC_COMMAND, NULL};
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  uint64_t t0 = uv_hrtime();
  memset(&o, 0, sizeof(o));
  o.timeout = GC_KILL_AFTER_MS;
  ASSERT_EQ(herd_exec_file_sync("/bin/sh", args, &o, &r), UV_ETIMEDOUT);
  check_sync_grandchild("exec_file_sync timeout", t0, o.timeout, r.out, r.pid);
  ASSERT_EQ(r.signal, SIGTERM);
  ASSERT_EQ(r.status, -1);
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(spawn_sync_timeout_grandchild) {
  const char* args[] = {"-c", GC_COMMAND, NULL};
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  uint64_t t0 = uv_hrtime();
  memset(&o, 0, sizeof(o));
  o.timeout = GC_KILL_AFTER_MS;
  ASSERT_EQ(herd_spawn_sync("/bin/sh", args, &o, &r), UV_ETIMEDOUT);
  check_sync_grandchild("spawn_sync timeout", t0, o.timeout, r.out, r.pid);
  ASSERT_EQ(r.signal, SIGTERM);
  herd_sync_result_free(&r);
  /* Exited at once, output held open: ends at the timeout too. */
  args[1] = "exec setsid sh -c 'echo hi; sleep 60 & echo $!'";
  t0 = uv_hrtime();
  ASSERT_EQ(herd_spawn_sync("/bin/sh", args, &o, &r), UV_ETIMEDOUT);
  check_sync_grandchild("spawn_sync timeout after exit", t0, o.timeout, r.out,
                        r.pid);
  ASSERT_EQ(r.status, 0);
  herd_sync_result_free(&r);
  return 0;
}

/* `yes` keeps writing after its shell is killed; herd used to read and
 * drop its output forever. The kill comes at once. */
TEST_IMPL(exec_sync_max_buffer_grandchild) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  uint64_t t0 = uv_hrtime();
  memset(&o, 0, sizeof(o));
  o.max_buffer = 10;
  ASSERT_EQ(herd_exec_sync("exec setsid sh -c yes", &o, &r), UV_ENOBUFS);
  check_sync_grandchild("exec_sync max_buffer", t0, 0, NULL, r.pid);
  ASSERT_EQ(r.out_len, 10);
  herd_sync_result_free(&r);
  return 0;
}
