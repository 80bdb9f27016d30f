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
 * test kills at the end. */
static uint64_t ms_since(uint64_t t0) {
  return (uv_hrtime() - t0) / 1000000;
}

static void kill_group(pid_t pgid) {
  if (pgid > 0)
    kill(-pgid, SIGKILL);
}

static herd_abort_t grandchild_abort;
static void grandchild_abort_cb(uv_timer_t* t) {
  herd_abort(&grandchild_abort);
  uv_close((uv_handle_t*)t, NULL);
}

static void exec_grandchild(exec_seen_t* s, const char* command,
                            herd_exec_options_t* o, int abort_after_ms,
                            uint64_t* elapsed) {
  uv_loop_t loop;
  uv_timer_t t;
  herd_exec_t req;
  uint64_t t0 = uv_hrtime();
  pid_t pid;
  memset(s, 0, sizeof(*s));
  ASSERT_OK(uv_loop_init(&loop));
  req.data = s;
  if (abort_after_ms > 0) {
    herd_abort_init(&grandchild_abort);
    o->abort = &grandchild_abort;
    ASSERT_OK(uv_timer_init(&loop, &t));
    ASSERT_OK(uv_timer_start(&t, grandchild_abort_cb, abort_after_ms, 0));
  }
  ASSERT_OK(herd_exec(&loop, &req, command, o, exec_cb));
  pid = req.child.pid;
  test_loop_run_close(&loop);
  *elapsed = ms_since(t0);
  kill_group(pid);
  ASSERT_EQ(s->calls, 1);
}

TEST_IMPL(exec_timeout_grandchild) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  memset(&o, 0, sizeof(o));
  o.timeout = 300;
  exec_grandchild(&s, "exec setsid sh -c 'echo hi; sleep 5 & sleep 5'", &o, 0,
                  &ms);
  if (ms > 2500)
    FATAL("the callback came after %d ms", (int)ms);
  ASSERT_EQ(s.r.error, UV_ETIMEDOUT);
  ASSERT_EQ(s.r.killed, 1);
  ASSERT_EQ(s.r.signal, SIGTERM);
  ASSERT_STR_EQ(s.out, "hi\n");
  seen_free(&s);
  return 0;
}

TEST_IMPL(exec_abort_grandchild) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  memset(&o, 0, sizeof(o));
  exec_grandchild(&s, "exec setsid sh -c 'echo hi; sleep 5 & sleep 5'", &o, 300,
                  &ms);
  if (ms > 2500)
    FATAL("the callback came after %d ms", (int)ms);
  ASSERT_EQ(s.r.error, UV_ECANCELED);
  ASSERT_EQ(s.r.killed, 1);
  ASSERT_EQ(s.r.signal, SIGTERM);
  ASSERT_STR_EQ(s.out, "hi\n");
  seen_free(&s);
  return 0;
}

/* `yes` is the shell's child: herd used to drain the pipe after the
 * overflow, so `yes` never got EPIPE and the callback never came. */
TEST_IMPL(exec_max_buffer_grandchild) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  memset(&o, 0, sizeof(o));
  o.max_buffer = 10;
  exec_grandchild(&s, "exec setsid sh -c yes", &o, 0, &ms);
  if (ms > 2500)
    FATAL("the callback came after %d ms", (int)ms);
  ASSERT_EQ(s.r.error, HERD_EMAXBUFFER);
  ASSERT_EQ(s.r.max_buffer_fd, 1);
  ASSERT_EQ(s.r.out_len, 10);
  ASSERT_STR_EQ(s.out, "y\ny\ny\ny\ny\n");
  ASSERT_EQ(s.r.killed, 1);
  seen_free(&s);
  /* exec_file alike. */
  {
    const char* args[] = {"-c", "exec setsid sh -c yes", NULL};
    uv_loop_t loop;
    herd_exec_t req;
    uint64_t t0 = uv_hrtime();
    memset(&s, 0, sizeof(s));
    ASSERT_OK(uv_loop_init(&loop));
    req.data = &s;
    ASSERT_OK(herd_exec_file(&loop, &req, "/bin/sh", args, &o, exec_cb));
    {
      pid_t pid = req.child.pid;
      test_loop_run_close(&loop);
      kill_group(pid);
    }
    ms = ms_since(t0);
    if (ms > 2500)
      FATAL("exec_file: the callback came after %d ms", (int)ms);
    ASSERT_EQ(s.r.error, HERD_EMAXBUFFER);
    seen_free(&s);
  }
  return 0;
}

/* The timeout covers the output, not only the exit: a command that exits
 * at once but leaves a process holding stdout ends at the timeout. */
TEST_IMPL(exec_timeout_after_exit) {
  herd_exec_options_t o;
  exec_seen_t s;
  uint64_t ms;
  memset(&o, 0, sizeof(o));
  o.timeout = 300;
  exec_grandchild(&s, "exec setsid sh -c 'sleep 5 & echo hi'", &o, 0, &ms);
  if (ms > 2500)
    FATAL("the callback came after %d ms", (int)ms);
  ASSERT_EQ(s.r.error, UV_ETIMEDOUT);
  ASSERT_EQ(s.r.code, 0);
  ASSERT_EQ(s.r.signal, 0);
  ASSERT_EQ(s.r.killed, 0);
  ASSERT_STR_EQ(s.out, "hi\n");
  seen_free(&s);
  return 0;
}
