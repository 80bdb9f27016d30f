/* Tests of herd_exec() and herd_exec_file(). */
#include "task.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  int calls;
  herd_exec_result_t r;
  char* out; /* taken from the result */
  char* err;
  char cmd[256];
} exec_seen_t;

static void exec_cb(herd_exec_t* req, herd_exec_result_t* result) {
  exec_seen_t* s = req->data;
  s->calls++;
  s->r = *result;
  snprintf(s->cmd, sizeof(s->cmd), "%s", result->cmd ? result->cmd : "");
  /* Take the buffers: herd must then not free them. */
  s->out = result->out;
  s->err = result->err;
  result->out = NULL;
  result->err = NULL;
}

static void exec_run(exec_seen_t* s, const char* command, const char* file,
                     const char* const* args, const herd_exec_options_t* o) {
  uv_loop_t loop;
  herd_exec_t req;
  memset(s, 0, sizeof(*s));
  ASSERT_OK(uv_loop_init(&loop));
  req.data = s;
  if (command != NULL)
    ASSERT_OK(herd_exec(&loop, &req, command, o, exec_cb));
  else
    ASSERT_OK(herd_exec_file(&loop, &req, file, args, o, exec_cb));
  test_loop_run_close(&loop);
  ASSERT_EQ(s->calls, 1);
  ASSERT(s->out != NULL && s->err != NULL);
  ASSERT_EQ(strlen(s->out), s->r.out_len);
}

static void seen_free(exec_seen_t* s) {
  free(s->out);
  free(s->err);
}

TEST_IMPL(exec_output) {
  exec_seen_t s;
  exec_run(&s, "echo hi; echo oops >&2", NULL, NULL, NULL);
  ASSERT_EQ(s.r.error, 0);
  ASSERT_EQ(s.r.code, 0);
  ASSERT_EQ(s.r.signal, 0);
  ASSERT_STR_EQ(s.out, "hi\n");
  ASSERT_STR_EQ(s.err, "oops\n");
  ASSERT_STR_EQ(s.cmd, "echo hi; echo oops >&2");
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_file_output) {
  const char* args[] = {"hello", "world", NULL};
  exec_seen_t s;
  exec_run(&s, NULL, "/bin/echo", args, NULL);
  ASSERT_EQ(s.r.error, 0);
  ASSERT_STR_EQ(s.out, "hello world\n");
  ASSERT_STR_EQ(s.err, "");
  ASSERT_STR_EQ(s.cmd, "/bin/echo hello world");
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_file_no_shell) {
  char dir[] = "/tmp/herd-noshell-XXXXXX";
  char pwned[300];
  const char* args[] = {"; touch pwned", "$(id)", "`id`", NULL};
  herd_exec_options_t o;
  exec_seen_t s;
  struct stat st;
  ASSERT(mkdtemp(dir) != NULL);
  memset(&o, 0, sizeof(o));
  o.cwd = dir;
  exec_run(&s, NULL, "/bin/echo", args, &o);
  ASSERT_EQ(s.r.error, 0);
  ASSERT_STR_EQ(s.out, "; touch pwned $(id) `id`\n");
  snprintf(pwned, sizeof(pwned), "%s/pwned", dir);
  ASSERT_EQ(stat(pwned, &st), -1);
  seen_free(&s);
  /* The same through a shell does run the injected command, which shows the
   * check above can see it. */
  o.flags = HERD_SPAWN_SHELL;
  exec_run(&s, NULL, "/bin/echo", args, &o);
  ASSERT_EQ(stat(pwned, &st), 0);
  unlink(pwned);
  rmdir(dir);
  seen_free(&s);
  return 0;
}

static void check_max_buffer(const char* command, int fd) {
  herd_exec_options_t o;
  exec_seen_t s;
  memset(&o, 0, sizeof(o));
  o.max_buffer = 1000;
  exec_run(&s, command, NULL, NULL, &o);
  ASSERT_EQ(s.r.error, HERD_EMAXBUFFER);
  ASSERT_EQ(s.r.max_buffer_fd, fd);
  ASSERT_EQ(fd == 1 ? s.r.out_len : s.r.err_len, 1000);
  ASSERT_EQ(s.r.killed, 1);
  ASSERT_EQ(s.r.signal, SIGTERM);
  ASSERT_EQ(s.r.code, -1);
  seen_free(&s);
}

TEST_IMPL(exec_max_buffer) {
  check_max_buffer("exec yes", 1);
  check_max_buffer("exec yes >&2", 2);
  {
    /* Exactly max_buffer bytes is fine. */
    herd_exec_options_t o;
    exec_seen_t s;
    memset(&o, 0, sizeof(o));
    o.max_buffer = 1000;
    exec_run(&s, "yes | head -c 1000", NULL, NULL, &o);
    ASSERT_EQ(s.r.error, 0);
    ASSERT_EQ(s.r.out_len, 1000);
    seen_free(&s);
  }
  return 0;
}

/* Node's maxBuffer: Infinity is SIZE_MAX here; the buffer then grows with
 * the output instead of its size limit wrapping around to nothing. */
TEST_IMPL(exec_max_buffer_unlimited) {
  herd_exec_options_t o;
  exec_seen_t s;
  memset(&o, 0, sizeof(o));
  o.max_buffer = SIZE_MAX;
  exec_run(&s, "head -c 10000 /dev/zero | tr '\\0' x", NULL, NULL, &o);
  ASSERT_EQ(s.r.error, 0);
  ASSERT_EQ(s.r.out_len, 10000);
  ASSERT_EQ(strspn(s.out, "x"), 10000);
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_max_buffer_default) {
  exec_seen_t s;
  exec_run(&s, "exec yes", NULL, NULL, NULL);
  ASSERT_EQ(s.r.error, HERD_EMAXBUFFER);
  ASSERT_EQ(s.r.out_len, 1024 * 1024);
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_failed) {
  exec_seen_t s;
  exec_run(&s, "echo partial; echo why >&2; exit 3", NULL, NULL, NULL);
  ASSERT_EQ(s.r.error, HERD_ECMDFAILED);
  ASSERT_EQ(s.r.code, 3);
  ASSERT_EQ(s.r.signal, 0);
  ASSERT_EQ(s.r.killed, 0);
  ASSERT_STR_EQ(s.out, "partial\n");
  ASSERT_STR_EQ(s.err, "why\n");
  ASSERT_STR_EQ(s.cmd, "echo partial; echo why >&2; exit 3");
  seen_free(&s);
  exec_run(&s, "kill -9 $$", NULL, NULL, NULL);
  ASSERT_EQ(s.r.error, HERD_ECMDFAILED);
  ASSERT_EQ(s.r.signal, SIGKILL);
  ASSERT_EQ(s.r.code, -1);
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_timeout) {
  herd_exec_options_t o;
  exec_seen_t s;
  memset(&o, 0, sizeof(o));
  o.timeout = 100;
  exec_run(&s, "exec sleep 10", NULL, NULL, &o);
  ASSERT_EQ(s.r.error, UV_ETIMEDOUT);
  ASSERT_EQ(s.r.killed, 1);
  ASSERT_EQ(s.r.signal, SIGTERM);
  ASSERT_EQ(s.r.code, -1);
  seen_free(&s);
  o.kill_signal = SIGKILL;
  exec_run(&s, "exec sleep 10", NULL, NULL, &o);
  ASSERT_EQ(s.r.error, UV_ETIMEDOUT);
  ASSERT_EQ(s.r.signal, SIGKILL);
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_spawn_error) {
  exec_seen_t s;
  exec_run(&s, NULL, "/nonexistent/program", NULL, NULL);
  ASSERT_EQ(s.r.error, UV_ENOENT);
  ASSERT_EQ(s.r.code, -1);
  seen_free(&s);
  return 0;
}

static herd_abort_t exec_abort;
static void abort_soon(uv_timer_t* t) {
  herd_abort(&exec_abort);
  uv_close((uv_handle_t*)t, NULL);
}

TEST_IMPL(exec_abort) {
  herd_exec_options_t o;
  exec_seen_t s;
  uv_loop_t loop;
  uv_timer_t t;
  herd_exec_t req;
  memset(&o, 0, sizeof(o));
  memset(&s, 0, sizeof(s));
  herd_abort_init(&exec_abort);
  o.abort = &exec_abort;
  ASSERT_OK(uv_loop_init(&loop));
  req.data = &s;
  ASSERT_OK(herd_exec(&loop, &req, "exec sleep 10", &o, exec_cb));
  ASSERT_OK(uv_timer_init(&loop, &t));
  ASSERT_OK(uv_timer_start(&t, abort_soon, 50, 0));
  test_loop_run_close(&loop);
  ASSERT_EQ(s.calls, 1);
  ASSERT_EQ(s.r.error, UV_ECANCELED);
  ASSERT_EQ(s.r.killed, 1);
  ASSERT_EQ(s.r.signal, SIGTERM);
  seen_free(&s);
  return 0;
}

/* The request's child is a full child handle while it runs: its stdin stays
 * open, as in Node, and can be written and ended. */
TEST_IMPL(exec_stdin) {
  exec_seen_t s;
  uv_loop_t loop;
  herd_exec_t req;
  uv_write_t w;
  uv_buf_t b = uv_buf_init("piped in", 8);
  memset(&s, 0, sizeof(s));
  ASSERT_OK(uv_loop_init(&loop));
  req.data = &s;
  ASSERT_OK(herd_exec(&loop, &req, "cat", NULL, exec_cb));
  ASSERT(req.child.pid > 0);
  ASSERT_OK(uv_write(&w, herd_child_stream(&req.child, 0), &b, 1, NULL));
  ASSERT_OK(herd_child_end(&req.child, 0));
  test_loop_run_close(&loop);
  ASSERT_EQ(s.calls, 1);
  ASSERT_EQ(s.r.error, 0);
  ASSERT_STR_EQ(s.out, "piped in");
  seen_free(&s);
  return 0;
}

/* A kill by timeout, abort or max_buffer must not wait for a grandchild
 * that inherited the pipes: as in Node, the pipes are closed when herd
 * kills, and the callback comes as soon as the child exits. The commands run
 * `setsid` in place (the shell is no group leader, so it does not fork):
 * the child's pid is then the group of every process it starts, which the
 * test kills at the end. The grandchild sleeps 60 s and prints its pid; the
 * callback must come within GC_MARGIN_MS of the kill (room for a loaded
 * machine under sanitizers, far below the grandchild's life), which a
 * watchdog timer enforces, and the grandchild must still be alive then. */
#define GC_SCRIPT  "echo hi; sleep 60 & echo $!; sleep 60"
#define GC_COMMAND "exec setsid sh -c '" GC_SCRIPT "'"
enum { GC_KILL_AFTER_MS = 500, GC_MARGIN_MS = 10000 };

static uint64_t ms_since(uint64_t t0) {
  return (uv_hrtime() - t0) / 1000000;
}

/* The state letter of `pid` in /proc, or 0 once it is gone. */
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

/* The grandchild's pid, from the "hi\n<pid>\n" the commands print. */
static pid_t grandchild_pid(const char* out) {
  int pid = 0;
  ASSERT(out != NULL);
  ASSERT_EQ(sscanf(out, "hi\n%d\n", &pid), 1);
  ASSERT(pid > 0);
  return (pid_t)pid;
}

/* Kills the child's whole group, then checks that the grandchild is gone
 * (or a zombie waiting for its new parent), with a deadline: the test
 * leaves no process behind. */
static void kill_group(pid_t pgid, pid_t grandchild) {
  uint64_t t0 = uv_hrtime();
  if (pgid > 0)
    kill(-pgid, SIGKILL);
  if (grandchild <= 0)
    return;
  kill(grandchild, SIGKILL);
  for (;;) {
    char st = proc_state(grandchild);
    if (st == 0 || st == 'Z' || st == 'X')
      return;
    if (ms_since(t0) > 5000)
      FATAL("grandchild %d still there (state %c)", (int)grandchild, st);
    uv_sleep(5);
  }
}

/* Says how long the callback took after the kill, and fails when that was
 * not "at once" or when the grandchild was not alive any more. */
static void check_prompt(const char* what, uint64_t ms, pid_t grandchild) {
  char st;
  fprintf(stderr, "%s: callback %d ms after the kill\n", what, (int)ms);
  if (ms > GC_MARGIN_MS)
    FATAL("%s: the callback came %d ms after the kill", what, (int)ms);
  if (grandchild > 0) {
    st = proc_state(grandchild);
    if (st == 0 || st == 'Z' || st == 'X')
      FATAL("%s: the grandchild was gone before the callback", what);
  }
}

static herd_abort_t grandchild_abort;
static uv_timer_t grandchild_watchdog;
static uint64_t grandchild_kill_at; /* when the abort was sent */
static pid_t grandchild_pgid;

static void grandchild_abort_cb(uv_timer_t* t) {
  grandchild_kill_at = uv_hrtime();
  herd_abort(&grandchild_abort);
  uv_close((uv_handle_t*)t, NULL);
}

static void grandchild_watchdog_cb(uv_timer_t* t) {
  (void)t;
  kill(-grandchild_pgid, SIGKILL); /* leaves nothing behind */
  FATAL("no callback %d ms after the kill: it waits for the grandchild",
        (int)GC_MARGIN_MS);
}

static void grandchild_exec_cb(herd_exec_t* req, herd_exec_result_t* result) {
  exec_cb(req, result);
  uv_close((uv_handle_t*)&grandchild_watchdog, NULL);
}

/* Runs `command` (or `file` with `args`) with a watchdog due GC_MARGIN_MS
 * after the kill (the timeout, or an abort sent after GC_KILL_AFTER_MS when
 * `with_abort`); *elapsed is the time from the kill to the callback, and
 * *pgid the child's pid (its group). */
static void exec_grandchild(exec_seen_t* s, const char* command,
                            const char* file, const char* const* args,
                            herd_exec_options_t* o, int with_abort,
                            uint64_t* elapsed, pid_t* pgid) {
  uv_loop_t loop;
  uv_timer_t t;
  herd_exec_t req;
  uint64_t t0 = uv_hrtime(), kill_in;
  memset(s, 0, sizeof(*s));
  ASSERT_OK(uv_loop_init(&loop));
  req.data = s;
  grandchild_kill_at = 0;
  kill_in = o->timeout;
  if (with_abort) {
    herd_abort_init(&grandchild_abort);
    o->abort = &grandchild_abort;
    ASSERT_OK(uv_timer_init(&loop, &t));
    ASSERT_OK(uv_timer_start(&t, grandchild_abort_cb, GC_KILL_AFTER_MS, 0));
    kill_in = GC_KILL_AFTER_MS;
  }
  ASSERT_OK(uv_timer_init(&loop, &grandchild_watchdog));
  ASSERT_OK(uv_timer_start(&grandchild_watchdog, grandchild_watchdog_cb,
                           kill_in + GC_MARGIN_MS, 0));
  if (command != NULL)
    ASSERT_OK(herd_exec(&loop, &req, command, o, grandchild_exec_cb));
  else
    ASSERT_OK(herd_exec_file(&loop, &req, file, args, o, grandchild_exec_cb));
  *pgid = req.child.pid;
  ASSERT(*pgid > 0);
  grandchild_pgid = *pgid;
  test_loop_run_close(&loop);
  if (grandchild_kill_at != 0)
    *elapsed = ms_since(grandchild_kill_at);
  else
    *elapsed = ms_since(t0) > kill_in ? ms_since(t0) - kill_in : 0;
  ASSERT_EQ(s->calls, 1);
}

static void check_killed_grandchild(const char* what, exec_seen_t* s,
                                    uint64_t ms, pid_t pgid, int error) {
  pid_t gc = grandchild_pid(s->out);
  check_prompt(what, ms, gc);
  kill_group(pgid, gc);
  ASSERT_EQ(s->r.error, error);
  ASSERT_EQ(s->r.killed, 1);
  ASSERT_EQ(s->r.signal, SIGTERM);
  ASSERT_EQ(s->r.code, -1);
  seen_free(s);
}

TEST_IMPL(exec_timeout_grandchild) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  pid_t pgid;
  memset(&o, 0, sizeof(o));
  o.timeout = GC_KILL_AFTER_MS;
  exec_grandchild(&s, GC_COMMAND, NULL, NULL, &o, 0, &ms, &pgid);
  check_killed_grandchild("exec timeout", &s, ms, pgid, UV_ETIMEDOUT);
  return 0;
}

TEST_IMPL(exec_abort_grandchild) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  pid_t pgid;
  memset(&o, 0, sizeof(o));
  exec_grandchild(&s, GC_COMMAND, NULL, NULL, &o, 1, &ms, &pgid);
  check_killed_grandchild("exec abort", &s, ms, pgid, UV_ECANCELED);
  return 0;
}

TEST_IMPL(exec_file_timeout_grandchild) {
  const char* args[] = {"-c", GC_COMMAND, NULL};
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  pid_t pgid;
  memset(&o, 0, sizeof(o));
  o.timeout = GC_KILL_AFTER_MS;
  exec_grandchild(&s, NULL, "/bin/sh", args, &o, 0, &ms, &pgid);
  check_killed_grandchild("exec_file timeout", &s, ms, pgid, UV_ETIMEDOUT);
  return 0;
}

TEST_IMPL(exec_file_abort_grandchild) {
  const char* args[] = {"-c", GC_COMMAND, NULL};
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  pid_t pgid;
  memset(&o, 0, sizeof(o));
  exec_grandchild(&s, NULL, "/bin/sh", args, &o, 1, &ms, &pgid);
  check_killed_grandchild("exec_file abort", &s, ms, pgid, UV_ECANCELED);
  return 0;
}

/* `yes` is the shell's child: herd used to drain the pipe after the
 * overflow, so `yes` never got EPIPE and the callback never came. The kill
 * comes at once here, so the time counts from the start. */
TEST_IMPL(exec_max_buffer_grandchild) {
  const char* args[] = {"-c", "exec setsid sh -c yes", NULL};
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  pid_t pgid;
  memset(&o, 0, sizeof(o));
  o.max_buffer = 10;
  exec_grandchild(&s, "exec setsid sh -c yes", NULL, NULL, &o, 0, &ms, &pgid);
  check_prompt("exec max_buffer", ms, 0);
  kill_group(pgid, 0);
  ASSERT_EQ(s.r.error, HERD_EMAXBUFFER);
  ASSERT_EQ(s.r.max_buffer_fd, 1);
  ASSERT_EQ(s.r.out_len, 10);
  ASSERT_STR_EQ(s.out, "y\ny\ny\ny\ny\n");
  ASSERT_EQ(s.r.killed, 1);
  seen_free(&s);
  /* exec_file alike. */
  exec_grandchild(&s, NULL, "/bin/sh", args, &o, 0, &ms, &pgid);
  check_prompt("exec_file max_buffer", ms, 0);
  kill_group(pgid, 0);
  ASSERT_EQ(s.r.error, HERD_EMAXBUFFER);
  ASSERT_EQ(s.r.out_len, 10);
  seen_free(&s);
  return 0;
}

/* The timeout covers the output, not only the exit: a command that exits
 * at once but leaves a process holding stdout ends at the timeout. */
TEST_IMPL(exec_timeout_after_exit) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  pid_t pgid, gc;
  memset(&o, 0, sizeof(o));
  o.timeout = GC_KILL_AFTER_MS;
  exec_grandchild(&s, "exec setsid sh -c 'echo hi; sleep 60 & echo $!'", NULL,
                  NULL, &o, 0, &ms, &pgid);
  gc = grandchild_pid(s.out);
  check_prompt("exec timeout after exit", ms, gc);
  kill_group(pgid, gc);
  ASSERT_EQ(s.r.error, UV_ETIMEDOUT);
  ASSERT_EQ(s.r.code, 0);
  ASSERT_EQ(s.r.signal, 0);
  ASSERT_EQ(s.r.killed, 0);
  seen_free(&s);
  return 0;
}
