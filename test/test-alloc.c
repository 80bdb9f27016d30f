/* Allocation failures: the injection framework (alloc.h) and one sweep per
 * public call of the process module that allocates. Each case runs a whole
 * operation; alloc_sweep() makes each of its allocations fail in turn. */
#include "alloc.h"
#include "task.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_long alloc_calls;   /* allocations attempted in this run */
static atomic_long alloc_fail_at; /* the one that fails; 0: none */
static atomic_long alloc_live_n;
static atomic_int alloc_fired;
static int alloc_installed;

static int fail_now(void) {
  long n = atomic_fetch_add(&alloc_calls, 1) + 1;
  if (n == atomic_load(&alloc_fail_at)) {
    atomic_store(&alloc_fired, 1);
    return 1;
  }
  return 0;
}

static void* inject_malloc(size_t size) {
  void* p = fail_now() ? NULL : malloc(size);
  if (p != NULL)
    atomic_fetch_add(&alloc_live_n, 1);
  return p;
}

static void* inject_calloc(size_t n, size_t size) {
  void* p = fail_now() ? NULL : calloc(n, size);
  if (p != NULL)
    atomic_fetch_add(&alloc_live_n, 1);
  return p;
}

static void* inject_realloc(void* old, size_t size) {
  void* p = fail_now() ? NULL : realloc(old, size);
  if (p != NULL && old == NULL)
    atomic_fetch_add(&alloc_live_n, 1);
  return p;
}

static void inject_free(void* p) {
  if (p != NULL)
    atomic_fetch_sub(&alloc_live_n, 1);
  free(p);
}

void alloc_free(void* p) {
  inject_free(p);
}

int alloc_failed(void) {
  return atomic_load(&alloc_fired);
}

long alloc_live(void) {
  return atomic_load(&alloc_live_n);
}

/* After a run: the reaper thread may still be closing a pidfd (and its
 * epoll fd) right after it reaped the last child, so fds get a deadline. */
static void alloc_check_clean(const char* name, long n, long live0, int fds0) {
  if (alloc_live() != live0)
    FATAL("%s, allocation %ld failing: %ld herd allocations leaked", name, n,
          alloc_live() - live0);
  test_assert_no_children(5000);
  for (int waited = 0; test_count_fds() != fds0; waited += 10) {
    if (waited >= 2000)
      FATAL("%s, allocation %ld failing: %d fds leaked", name, n,
            test_count_fds() - fds0);
    test_sleep_ms(10);
  }
}

static void alloc_install(void) {
  if (!alloc_installed) {
    /* Before herd allocates anything in this process. */
    ASSERT_OK(herd_replace_allocator(inject_malloc, inject_realloc,
                                     inject_calloc, inject_free));
    alloc_installed = 1;
  }
}

long alloc_sweep(const char* name, void (*run)(void* arg), void* arg) {
  alloc_install();
  for (long n = 1;; n++) {
    long live0 = alloc_live();
    int fds0 = test_count_fds();
    atomic_store(&alloc_calls, 0);
    atomic_store(&alloc_fired, 0);
    atomic_store(&alloc_fail_at, n);
    run(arg);
    atomic_store(&alloc_fail_at, 0);
    alloc_check_clean(name, n, live0, fds0);
    if (!alloc_failed()) {
      printf("%s: %ld allocations, each failed in turn\n", name,
             atomic_load(&alloc_calls));
      return atomic_load(&alloc_calls);
    }
    if (n >= 1000)
      FATAL("%s: more than 1000 allocations", name);
  }
}

long alloc_sweep_forked(const char* name, void (*run)(void* arg), void* arg) {
  alloc_install();
  for (long n = 1;; n++) {
    int status;
    pid_t pid;
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
      long live0 = alloc_live();
      int fds0 = test_count_fds();
      atomic_store(&alloc_calls, 0);
      atomic_store(&alloc_fired, 0);
      atomic_store(&alloc_fail_at, n);
      run(arg);
      atomic_store(&alloc_fail_at, 0);
      alloc_check_clean(name, n, live0, fds0);
      fflush(stdout);
      fflush(stderr);
      /* Not exit(): the caller's atexit handlers are the caller's. */
      _exit(alloc_failed() ? 0 : 1);
    }
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 1)
      FATAL("%s, allocation %ld failing: the run ended with status 0x%x", name,
            n, status);
    if (WEXITSTATUS(status) == 1) {
      printf("%s: %ld allocations, each failed in turn\n", name, n - 1);
      return n - 1;
    }
    if (n >= 1000)
      FATAL("%s: more than 1000 allocations", name);
  }
}

/* What the callbacks of one run saw. */
static struct {
  int exits, errors, closes, spawns;
  int err;
  int64_t status;
  char out[64];
  size_t out_len;
} seen;

static void seen_exit(herd_child_t* child, int64_t status, int sig) {
  (void)child;
  (void)sig;
  seen.exits++;
  seen.status = status;
}

static void seen_error(herd_child_t* child, int err) {
  (void)child;
  seen.errors++;
  seen.err = err;
}

static void seen_spawn(herd_child_t* child) {
  (void)child;
  seen.spawns++;
}

static void seen_close(herd_child_t* child) {
  seen.closes++;
  free(child);
}

static void seen_read(herd_child_t* child, int fd, const char* buf,
                      ssize_t nread) {
  size_t len = strlen(seen.out);
  (void)child;
  (void)fd;
  if (nread > 0 && len + (size_t)nread < sizeof(seen.out))
    memcpy(seen.out + len, buf, (size_t)nread);
}

/* One herd_spawn() on a fresh loop with a malloc'd handle: an error return
 * must be UV_ENOMEM from the injected failure, with no callback then or
 * later, and the handle is freed at once; otherwise close_cb (which frees
 * the handle) comes exactly once, and a run without failure succeeds. */
typedef struct {
  const char* file;
  const char* const* args;
  herd_spawn_options_t opts;
  void (*started)(herd_child_t* child);
  const char* out;  /* expected stdout, or NULL */
  int expect_error; /* a run without failure ends with this error_cb */
  int channel;      /* the IPC channel allocates on the loop (its read
                       buffer), failing through its own callbacks */
  int spawn_event;  /* with a spawn_cb, which must come exactly once */
} spawn_case_t;

static void spawn_case(void* arg) {
  spawn_case_t* sc = arg;
  herd_spawn_options_t o = sc->opts;
  herd_child_t* child = malloc(sizeof(*child));
  uv_loop_t loop;
  int r;

  ASSERT(child != NULL);
  memset(&seen, 0, sizeof(seen));
  memset(child, 0, sizeof(*child));
  ASSERT_OK(uv_loop_init(&loop));
  o.exit_cb = seen_exit;
  o.error_cb = seen_error;
  o.close_cb = seen_close;
  if (sc->spawn_event)
    o.spawn_cb = seen_spawn;
  r = herd_spawn(&loop, child, sc->file, sc->args, &o);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(child);
    test_loop_run_close(&loop);
    ASSERT_EQ(seen.exits + seen.errors + seen.closes + seen.spawns, 0);
    return;
  }
  if (sc->started != NULL)
    sc->started(child);
  test_loop_run_close(&loop);
  ASSERT_EQ(seen.closes, 1);
  /* herd_spawn() allocates only before it returns. */
  if (alloc_failed() && !sc->channel)
    FATAL("an allocation failed after herd_spawn() returned 0");
  if (alloc_failed()) {
    ASSERT_EQ(seen.exits, 1);
    return;
  }
  if (sc->expect_error != 0) {
    ASSERT_EQ(seen.errors, 1);
    ASSERT_EQ(seen.err, sc->expect_error);
    ASSERT_EQ(seen.spawns, 0);
    return;
  }
  ASSERT_EQ(seen.errors, 0);
  ASSERT_EQ(seen.exits, 1);
  ASSERT_EQ(seen.spawns, sc->spawn_event ? 1 : 0);
  ASSERT_EQ(seen.status, 0);
  if (sc->out != NULL)
    ASSERT_STR_EQ(seen.out, sc->out);
}

static void read_stdout(herd_child_t* child) {
  ASSERT_OK(herd_child_read_start(child, 1, seen_read));
}

TEST_IMPL(alloc_spawn_pipes) {
  const char* args[] = {"-c", "echo hi; echo oops >&2", NULL};
  spawn_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.file = "/bin/sh";
  sc.args = args;
  sc.started = read_stdout;
  sc.out = "hi\n";
  ASSERT_GE(alloc_sweep("spawn with pipes", spawn_case, &sc), 1);
  return 0;
}

TEST_IMPL(alloc_spawn_shell_env) {
  const char* args[] = {"$HERD_ALLOC_VAR", NULL};
  const char* env[] = {"HERD_ALLOC_VAR=from-env", NULL};
  spawn_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.file = "echo";
  sc.args = args;
  sc.opts.flags = HERD_SPAWN_SHELL | HERD_SPAWN_ENV_EXTEND;
  sc.opts.env = env;
  sc.opts.argv0 = "herd-shell";
  sc.opts.cwd = "/";
  sc.started = read_stdout;
  sc.out = "from-env\n";
  ASSERT_GE(alloc_sweep("spawn with shell and env", spawn_case, &sc), 2);
  /* A replaced environment, and PATH looked up in it. */
  {
    const char* env2[] = {"PATH=/nonexistent:/usr/bin:/bin", NULL};
    const char* args2[] = {"replaced", NULL};
    memset(&sc, 0, sizeof(sc));
    sc.file = "echo";
    sc.args = args2;
    sc.opts.env = env2;
    sc.started = read_stdout;
    sc.out = "replaced\n";
    ASSERT_GE(alloc_sweep("spawn with env", spawn_case, &sc), 2);
  }
  return 0;
}

TEST_IMPL(alloc_spawn_ipc) {
  herd_stdio_t stdio[4] = {{HERD_STDIO_PIPE, 0},
                           {HERD_STDIO_PIPE, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_IPC, 0}};
  spawn_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.file = "/bin/true";
  sc.opts.stdio = stdio;
  sc.opts.stdio_count = 4;
  sc.channel = 1;
  ASSERT_GE(alloc_sweep("spawn with an IPC channel", spawn_case, &sc), 3);
  return 0;
}

TEST_IMPL(alloc_spawn_listen_fds) {
  const char* names[] = {"one", "two"};
  const char* args[] = {"-c", "echo $LISTEN_FDS $LISTEN_FDNAMES", NULL};
  spawn_case_t sc;
  int fds[2];
  fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fds[1] = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT(fds[0] >= 0 && fds[1] >= 0);
  memset(&sc, 0, sizeof(sc));
  sc.file = "/bin/sh";
  sc.args = args;
  sc.opts.listen_fds = fds;
  sc.opts.listen_fds_count = 2;
  sc.opts.listen_fd_names = names;
  sc.started = read_stdout;
  sc.out = "2 one:two\n";
  ASSERT_GE(alloc_sweep("spawn with listen fds", spawn_case, &sc), 2);
  close(fds[0]);
  close(fds[1]);
  return 0;
}

/* Failures to start come through error_cb even when allocations fail
 * around them, and an aborted controller starts nothing. */
TEST_IMPL(alloc_spawn_failure) {
  spawn_case_t sc;
  herd_abort_t ab;
  memset(&sc, 0, sizeof(sc));
  sc.file = "/nonexistent/program";
  sc.expect_error = UV_ENOENT;
  ASSERT_GE(alloc_sweep("spawn of a missing program", spawn_case, &sc), 1);
  herd_abort_init(&ab);
  herd_abort(&ab);
  memset(&sc, 0, sizeof(sc));
  sc.file = "/bin/true";
  sc.opts.abort = &ab;
  sc.expect_error = UV_ECANCELED;
  ASSERT_GE(alloc_sweep("spawn with an aborted controller", spawn_case, &sc),
            1);
  return 0;
}

static void read_fd39(herd_child_t* child) {
  ASSERT_OK(herd_child_read_start(child, 39, seen_read));
}

/* A spawn of more fds than fit on the stack (their arrays go with the
 * environment), with the 'spawn' event and a group killed on exit. */
TEST_IMPL(alloc_spawn_many_fds) {
  static herd_stdio_t stdio[40];
  spawn_case_t sc;
  for (int i = 0; i < 40; i++)
    stdio[i].kind = i < 3 || i == 39 ? HERD_STDIO_PIPE : HERD_STDIO_DEFAULT;
  memset(&sc, 0, sizeof(sc));
  sc.file = test_exe();
  sc.args = test_helper_args("process_fd_write", "39", NULL);
  sc.opts.stdio = stdio;
  sc.opts.stdio_count = 40;
  sc.opts.flags = HERD_SPAWN_KILL_GROUP_ON_EXIT;
  sc.spawn_event = 1;
  sc.started = read_fd39;
  sc.out = "fd 39\n";
  ASSERT_GE(alloc_sweep("spawn with 40 fds", spawn_case, &sc), 2);
  return 0;
}

/* herd_child_close() of a running child hands it to the reaper thread; the
 * sweep's end checks see it reaped and its pidfd closed. */
static void close_at_once(herd_child_t* child) {
  herd_child_close(child);
}

static void spawn_close_case(void* arg) {
  spawn_case_t* sc = arg;
  herd_spawn_options_t o = sc->opts;
  herd_child_t* child = malloc(sizeof(*child));
  uv_loop_t loop;
  int r;
  ASSERT(child != NULL);
  memset(&seen, 0, sizeof(seen));
  ASSERT_OK(uv_loop_init(&loop));
  o.exit_cb = seen_exit;
  o.error_cb = seen_error;
  o.close_cb = seen_close;
  r = herd_spawn(&loop, child, sc->file, sc->args, &o);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    free(child);
    test_loop_run_close(&loop);
    ASSERT_EQ(seen.closes, 0);
    return;
  }
  close_at_once(child);
  test_loop_run_close(&loop);
  ASSERT_EQ(seen.closes, 1);
  ASSERT_EQ(seen.exits, 0);
}

TEST_IMPL(alloc_child_close_reaper) {
  const char* args[] = {"0.1", NULL};
  spawn_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.file = "sleep";
  sc.args = args;
  ASSERT_GE(
      alloc_sweep("herd_child_close to the reaper", spawn_close_case, &sc), 1);
  /* The reaper thread also kills the group of a KILL_GROUP_ON_EXIT child. */
  sc.opts.flags = HERD_SPAWN_KILL_GROUP_ON_EXIT;
  ASSERT_GE(alloc_sweep("herd_child_close of a group to the reaper",
                        spawn_close_case, &sc),
            1);
  return 0;
}

/* herd_fork(): its own argv, then herd_spawn() with a channel. */
typedef struct {
  const char* program;
  const char* const* args;
  herd_fork_options_t opts;
} fork_case_t;

static void fork_case(void* arg) {
  fork_case_t* fc = arg;
  herd_fork_options_t o = fc->opts;
  herd_child_t* child = malloc(sizeof(*child));
  uv_loop_t loop;
  int r;
  ASSERT(child != NULL);
  memset(&seen, 0, sizeof(seen));
  ASSERT_OK(uv_loop_init(&loop));
  o.spawn.exit_cb = seen_exit;
  o.spawn.error_cb = seen_error;
  o.spawn.close_cb = seen_close;
  r = herd_fork(&loop, child, fc->program, fc->args, &o);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(child);
    test_loop_run_close(&loop);
    ASSERT_EQ(seen.exits + seen.errors + seen.closes, 0);
    return;
  }
  test_loop_run_close(&loop);
  ASSERT_EQ(seen.closes, 1);
  if (!alloc_failed()) {
    ASSERT_EQ(seen.errors, 0);
    ASSERT_EQ(seen.exits, 1);
    ASSERT_EQ(seen.status, 0);
  }
}

TEST_IMPL(alloc_fork) {
  fork_case_t fc;
  memset(&fc, 0, sizeof(fc));
  fc.program = test_exe();
  fc.args = test_helper_args("hello", NULL, NULL);
  fc.opts.silent = 1;
  ASSERT_GE(alloc_sweep("fork", fork_case, &fc), 3);
  {
    /* exec_path and exec_argv: `/bin/sh -c true <program>`. */
    const char* exec_argv[] = {"-c", "true", NULL};
    memset(&fc, 0, sizeof(fc));
    fc.program = "program-name";
    fc.opts.exec_path = "/bin/sh";
    fc.opts.exec_argv = exec_argv;
    fc.opts.silent = 1;
    ASSERT_GE(alloc_sweep("fork with exec_path", fork_case, &fc), 4);
  }
  memset(&fc, 0, sizeof(fc));
  fc.program = test_exe();
  fc.args = test_helper_args("hello", NULL, NULL);
  fc.opts.silent = 1;
  fc.opts.spawn.serialization = HERD_SERIALIZATION_ADVANCED;
  ASSERT_GE(alloc_sweep("fork in advanced mode", fork_case, &fc), 3);
  return 0;
}

/* herd_exec() and herd_exec_file(): a failure inside the call is returned;
 * one while the output grows reaches the callback as UV_ENOMEM. */
typedef struct {
  const char* command; /* herd_exec(), or NULL for herd_exec_file() */
  const char* file;
  const char* const* args;
  const char* out; /* expected stdout of a run without failure */
  size_t out_len;  /* or its length, when out is NULL */
  int grows;       /* output large enough to grow the buffer */
} exec_case_t;

static void seen_exec(herd_exec_t* req, herd_exec_result_t* result) {
  seen.closes++;
  seen.err = result->error;
  seen.status = result->code;
  ASSERT(result->out != NULL && result->err != NULL);
  snprintf(seen.out, sizeof(seen.out), "%s", result->out);
  seen.out_len = result->out_len;
  free(req);
}

static void exec_case(void* arg) {
  exec_case_t* ec = arg;
  herd_exec_t* req = malloc(sizeof(*req));
  uv_loop_t loop;
  int r;
  ASSERT(req != NULL);
  memset(&seen, 0, sizeof(seen));
  ASSERT_OK(uv_loop_init(&loop));
  if (ec->command != NULL)
    r = herd_exec(&loop, req, ec->command, NULL, seen_exec);
  else
    r = herd_exec_file(&loop, req, ec->file, ec->args, NULL, seen_exec);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(req);
    test_loop_run_close(&loop);
    ASSERT_EQ(seen.closes, 0);
    return;
  }
  test_loop_run_close(&loop);
  ASSERT_EQ(seen.closes, 1);
  if (alloc_failed()) {
    ASSERT(ec->grows);
    ASSERT_EQ(seen.err, UV_ENOMEM);
    return;
  }
  ASSERT_EQ(seen.err, 0);
  ASSERT_EQ(seen.status, 0);
  if (ec->out != NULL)
    ASSERT_STR_EQ(seen.out, ec->out);
  else
    ASSERT_EQ(seen.out_len, ec->out_len);
}

TEST_IMPL(alloc_exec) {
  exec_case_t ec;
  memset(&ec, 0, sizeof(ec));
  ec.command = "echo hi; echo oops >&2";
  ec.out = "hi\n";
  ASSERT_GE(alloc_sweep("exec", exec_case, &ec), 3);
  return 0;
}

TEST_IMPL(alloc_exec_file) {
  const char* args[] = {"hello", "world", NULL};
  exec_case_t ec;
  memset(&ec, 0, sizeof(ec));
  ec.file = "/bin/echo";
  ec.args = args;
  ec.out = "hello world\n";
  ASSERT_GE(alloc_sweep("exec_file", exec_case, &ec), 3);
  return 0;
}

TEST_IMPL(alloc_exec_large_output) {
  exec_case_t ec;
  memset(&ec, 0, sizeof(ec));
  ec.command = "head -c 200000 /dev/zero";
  ec.out_len = 200000;
  ec.grows = 1;
  ASSERT_GE(alloc_sweep("exec with growing output", exec_case, &ec), 4);
  return 0;
}

/* The blocking forms: an injected failure gives UV_ENOMEM, whether inside
 * the call before the start or while the output grows. */
typedef struct {
  int kind; /* 0 spawn_sync, 1 exec_sync, 2 exec_file_sync */
  const char* file;
  const char* const* args;
  const char* input;
  const char* out;   /* expected stdout of a run without failure */
  size_t out_len;    /* or its length, when out is NULL */
  const char* stdio; /* Node's spec (herd_stdio_parse()), or NULL */
  int output_fd;     /* and an fd >= 3 whose output[] is checked */
  const char* output_fd_data;
} sync_case_t;

static void sync_case(void* arg) {
  sync_case_t* sc = arg;
  herd_spawn_sync_options_t o;
  herd_sync_result_t res;
  herd_stdio_t stdio[16];
  int r;
  memset(&o, 0, sizeof(o));
  if (sc->stdio != NULL) {
    o.stdio_count = herd_stdio_parse(sc->stdio, stdio, 16);
    ASSERT(o.stdio_count >= 0 && o.stdio_count <= 16);
    o.stdio = stdio;
  }
  if (sc->input != NULL) {
    o.input = sc->input;
    o.input_len = strlen(sc->input);
  }
  if (sc->kind == 0)
    r = herd_spawn_sync(sc->file, sc->args, &o, &res);
  else if (sc->kind == 1)
    r = herd_exec_sync(sc->file, &o, &res);
  else
    r = herd_exec_file_sync(sc->file, sc->args, &o, &res);
  ASSERT_EQ(r, res.error);
  if (alloc_failed()) {
    ASSERT_EQ(r, UV_ENOMEM);
  } else {
    ASSERT_OK(r);
    ASSERT_EQ(res.status, 0);
    if (sc->out != NULL)
      ASSERT_STR_EQ(res.out, sc->out);
    else
      ASSERT_EQ(res.out_len, sc->out_len);
    if (sc->output_fd != 0) {
      ASSERT(sc->output_fd < res.output_count);
      ASSERT_STR_EQ(res.output[sc->output_fd].data, sc->output_fd_data);
    }
  }
  herd_sync_result_free(&res);
}

TEST_IMPL(alloc_spawn_sync) {
  sync_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.kind = 0;
  sc.file = "cat";
  sc.input = "fed to stdin";
  sc.out = "fed to stdin";
  ASSERT_GE(alloc_sweep("spawn_sync", sync_case, &sc), 3);
  {
    /* Output that grows its buffer. */
    const char* args[] = {"-c", "200000", "/dev/zero", NULL};
    memset(&sc, 0, sizeof(sc));
    sc.kind = 0;
    sc.file = "head";
    sc.args = args;
    sc.out_len = 200000;
    ASSERT_GE(alloc_sweep("spawn_sync with growing output", sync_case, &sc), 4);
  }
  return 0;
}

/* output[] for fds 3 and up: an array and a buffer per pipe, all made
 * before the start. */
TEST_IMPL(alloc_spawn_sync_output) {
  const char* args[] = {"-c", "echo three >&3; echo five >&5; printf out",
                        NULL};
  sync_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.kind = 0;
  sc.file = "/bin/sh";
  sc.args = args;
  sc.stdio = "['pipe', 'pipe', 'pipe', 'pipe', null, 'pipe']";
  sc.out = "out";
  sc.output_fd = 5;
  sc.output_fd_data = "five\n";
  ASSERT_GE(alloc_sweep("spawn_sync with output[]", sync_case, &sc), 6);
  return 0;
}

TEST_IMPL(alloc_exec_sync) {
  sync_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.kind = 1;
  sc.file = "echo hi";
  sc.out = "hi\n";
  ASSERT_GE(alloc_sweep("exec_sync", sync_case, &sc), 2);
  return 0;
}

TEST_IMPL(alloc_exec_file_sync) {
  const char* args[] = {"hi", NULL};
  sync_case_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.kind = 2;
  sc.file = "/bin/echo";
  sc.args = args;
  sc.out = "hi\n";
  ASSERT_GE(alloc_sweep("exec_file_sync", sync_case, &sc), 2);
  return 0;
}

/* The cluster's listen targets in a process of their own: a server on a
 * Unix socket path (whose file goes with the server) or on an fd, and a
 * UDP socket. An error return leaves the handle initialised (it is closed
 * as usual) and calls no callback. */
typedef struct {
  const char* path; /* a pipe, or NULL: an fd (server) / UDP (dgram) */
  int fd;
  int dgram;
} listen_case_t;

static void seen_server_listen(herd_server_t* s, int status) {
  ASSERT_OK(status);
  seen.exits++;
  herd_server_close(s, NULL);
}

static void seen_server_close(herd_server_t* s) {
  seen.closes++;
  free(s);
}

static void seen_dgram_close(herd_dgram_t* d);

static void seen_dgram_bind(herd_dgram_t* d, int status) {
  ASSERT_OK(status);
  seen.exits++;
  herd_dgram_close(d, seen_dgram_close);
}

static void seen_dgram_close(herd_dgram_t* d) {
  seen.closes++;
  free(d);
}

static void listen_case(void* arg) {
  listen_case_t* lc = arg;
  uv_loop_t loop;
  int r;
  memset(&seen, 0, sizeof(seen));
  ASSERT_OK(uv_loop_init(&loop));
  if (lc->dgram) {
    herd_dgram_t* d = malloc(sizeof(*d));
    herd_dgram_options_t o;
    ASSERT(d != NULL);
    r = herd_dgram_init(&loop, d);
    if (r != 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      free(d);
      test_loop_run_close(&loop);
      return;
    }
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    ASSERT_OK(herd_dgram_bind(d, &o, seen_dgram_bind));
    /* The callback closes it; close_cb frees it. */
    test_loop_run_close(&loop);
    ASSERT_EQ(seen.closes, 1);
    return;
  } else {
    herd_server_t* s = malloc(sizeof(*s));
    herd_server_options_t o;
    ASSERT(s != NULL);
    r = herd_server_init(&loop, s);
    if (r != 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      free(s);
      test_loop_run_close(&loop);
      return;
    }
    memset(&o, 0, sizeof(o));
    o.path = lc->path;
    if (lc->path == NULL) {
      o.flags = HERD_SERVER_FD;
      o.fd = lc->fd;
    }
    r = herd_server_listen_ex(s, &o, NULL, seen_server_listen);
    if (r != 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      ASSERT(alloc_failed());
      herd_server_close(s, seen_server_close);
      test_loop_run_close(&loop);
      ASSERT_EQ(seen.exits, 0);
      ASSERT_EQ(seen.closes, 1);
    } else {
      test_loop_run_close(&loop);
      ASSERT_EQ(seen.exits, 1);
      free(s);
    }
  }
  if (lc->path != NULL)
    ASSERT(access(lc->path, F_OK) != 0); /* the socket file went too */
}

TEST_IMPL(alloc_cluster_listen) {
  listen_case_t lc;
  char path[108];
  int fd;
  struct sockaddr_in sin;
  memset(&lc, 0, sizeof(lc));
  snprintf(path, sizeof(path), "/tmp/herd-alloc-%d.sock", (int)getpid());
  lc.path = path;
  ASSERT_GE(alloc_sweep("server_listen_ex on a path", listen_case, &lc), 2);
  memset(&lc, 0, sizeof(lc));
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr*)&sin, sizeof(sin)));
  lc.fd = fd;
  ASSERT_GE(alloc_sweep("server_listen_ex on an fd", listen_case, &lc), 1);
  close(fd);
  memset(&lc, 0, sizeof(lc));
  lc.dgram = 1;
  ASSERT_GE(alloc_sweep("dgram_bind", listen_case, &lc), 1);
  return 0;
}

/* A primary whose worker listens on a Unix socket path (the primary opens
 * and keys it), then gets a socket with herd_worker_send_ex(); and a
 * primary that forks itself with its own arguments (the default), into a
 * directory that does not exist. Any failing allocation ends in an error
 * return, an error in a callback, or a worker that goes; the cluster
 * closes in every case. */
typedef struct {
  uv_loop_t loop;
  herd_cluster_t cluster;
  herd_cluster_settings_t settings;
  int pair[2];
  uv_pipe_t* handed;
  int finishing, sent, closed;
  char path[108];
} cluster_case_t;

static void cc_closed(herd_cluster_t* c);

static void cc_finish(cluster_case_t* cc) {
  if (cc->finishing++ == 0)
    herd_cluster_close(&cc->cluster, cc_closed);
}

static void cc_handed_closed(uv_handle_t* h) {
  free(h);
}

static void cc_sent(herd_worker_t* w, int status, void* arg) {
  cluster_case_t* cc = arg;
  (void)w;
  cc->sent++;
  if (status != 0) /* not acknowledged: the handle is still ours */
    uv_close((uv_handle_t*)cc->handed, cc_handed_closed);
  cc_finish(cc);
}

static void cc_message(herd_cluster_t* c, herd_worker_t* w, const char* json,
                       size_t len, herd_handle_t* handle) {
  static const char msg[] = "{\"cmd\":\"socket\"}";
  cluster_case_t* cc = c->data;
  int64_t status;
  int r;
  (void)handle;
  if (herd_json_get_int(json, len, "status", &status) != 0)
    return;
  if (status != 0 || cc->finishing) {
    cc_finish(cc);
    return;
  }
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cc->pair));
  cc->handed = malloc(sizeof(*cc->handed));
  ASSERT(cc->handed != NULL);
  ASSERT_OK(uv_pipe_init(&cc->loop, cc->handed, 0));
  ASSERT_OK(uv_pipe_open(cc->handed, cc->pair[0]));
  r = herd_worker_send_ex(w, msg, sizeof(msg) - 1, (uv_handle_t*)cc->handed, 0,
                          cc_handed_closed, cc_sent, cc);
  if (r < 0) {
    ASSERT(r == UV_ENOMEM || r == HERD_ECHANNELCLOSED);
    uv_close((uv_handle_t*)cc->handed, cc_handed_closed);
    cc_finish(cc);
  }
}

static void cc_exit(herd_cluster_t* c, herd_worker_t* w, int64_t code,
                    int sig) {
  (void)w;
  (void)code;
  (void)sig;
  cc_finish(c->data);
}

static void cc_closed(herd_cluster_t* c) {
  ((cluster_case_t*)c->data)->closed = 1;
}

static void cluster_case(void* arg) {
  static const char* const env[] = {"PATH=/usr/bin:/bin", NULL};
  cluster_case_t* cc = arg;
  herd_cluster_callbacks_t cbs;
  int r;
  cc->finishing = cc->sent = cc->closed = 0;
  cc->pair[1] = -1;
  ASSERT_OK(uv_loop_init(&cc->loop));
  memset(&cbs, 0, sizeof(cbs));
  cbs.message = cc_message;
  cbs.exit = cc_exit;
  r = herd_cluster_init(&cc->loop, &cc->cluster, &cbs);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    test_loop_close(&cc->loop);
    return;
  }
  cc->cluster.data = cc;
  memset(&cc->settings, 0, sizeof(cc->settings));
  cc->settings.policy = HERD_SCHED_RR;
  cc->settings.spawn.env = env;
  if (cc->path[0] != '\0') {
    cc->settings.exec = test_exe();
    cc->settings.args =
        test_helper_args("cluster_kind_worker", "pipe", cc->path);
  } else {
    cc->settings.cwd = "/nonexistent/herd";
  }
  herd_cluster_setup_primary(&cc->cluster, &cc->settings);
  r = herd_cluster_fork(&cc->cluster, NULL, NULL);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    cc_finish(cc);
  }
  uv_run(&cc->loop, UV_RUN_DEFAULT);
  ASSERT(cc->closed);
  test_loop_close(&cc->loop);
  if (cc->pair[1] >= 0)
    close(cc->pair[1]);
  if (cc->path[0] != '\0')
    ASSERT(access(cc->path, F_OK) != 0);
}

TEST_IMPL(alloc_cluster) {
  cluster_case_t cc;
  memset(&cc, 0, sizeof(cc));
  snprintf(cc.path, sizeof(cc.path), "/tmp/herd-alloc-%d.sock", (int)getpid());
  ASSERT_GE(
      alloc_sweep("cluster: a pipe server and send_ex", cluster_case, &cc), 10);
  memset(&cc, 0, sizeof(cc));
  ASSERT_GE(alloc_sweep("cluster: fork with the primary's arguments",
                        cluster_case, &cc),
            3);
  return 0;
}

/* The supervisor: a whole life (init, start, readiness, optionally a
 * reload and a scale up and down, stop, close) with each herd allocation
 * failing in turn. init returns UV_ENOMEM and leaves nothing, start
 * returns it and only close is due; a failure later is a worker that
 * could not start (a crash, perhaps giving up), a failed reload, a lost
 * log line or status: every run ends closed, with nothing left. */
typedef struct {
  int logs;
  int reload;
  int scale;
  int cluster; /* Node's protocol: the runner's cluster_worker helper */
} sup_case_t;

typedef struct {
  const sup_case_t* c;
  herd_supervisor_t* sup;
  int closed;
  int stopped;
  int scaled;
} sup_run_t;

static void sup_case_closed(herd_supervisor_t* s) {
  sup_run_t* r = s->data;
  r->closed = 1;
}

static void sup_case_stop(sup_run_t* r) {
  if (!r->sup->stopping)
    ASSERT_OK(herd_supervisor_stop(r->sup, 0, NULL));
}

/* A scale that could not allocate its slot fails alone; the run goes on
 * to its stop. */
static void sup_case_scale(sup_run_t* r, int delta) {
  int n = herd_supervisor_scale(r->sup, delta);
  if (n == UV_ENOMEM && alloc_failed())
    sup_case_stop(r);
  else
    ASSERT_EQ(n, delta > 0 ? 2 : 1);
}

static void sup_case_event(herd_supervisor_t* s,
                           const herd_supervisor_event_t* e) {
  sup_run_t* r = s->data;
  if (getenv("HERD_TEST_VERBOSE") != NULL)
    fprintf(stderr, "event %d: %s\n", e->type, e->text);
  switch (e->type) {
    case HERD_SUPERVISOR_ALL_READY:
      if (r->c->reload)
        ASSERT_OK(herd_supervisor_reload(s));
      else if (r->c->scale)
        sup_case_scale(r, 1);
      else
        sup_case_stop(r);
      break;
    case HERD_SUPERVISOR_RELOAD_DONE:
    case HERD_SUPERVISOR_RELOAD_FAILED:
      if (r->c->scale)
        sup_case_scale(r, 1);
      else
        sup_case_stop(r);
      break;
    case HERD_SUPERVISOR_SCALED:
      /* A scale-up whose worker could not start (an injected failure) was
       * taken back: nothing to retire. */
      if (++r->scaled == 1 && e->workers == 2)
        sup_case_scale(r, -1);
      else
        sup_case_stop(r);
      break;
    case HERD_SUPERVISOR_STOPPED:
      r->stopped = 1;
      herd_supervisor_close(s, sup_case_closed);
      break;
    default:
      break;
  }
}

static void sup_deadline(uv_timer_t* t) {
  (void)t;
  FATAL("the supervisor's run did not end");
}

static void sup_case(void* arg) {
  const sup_case_t* c = arg;
  char fd3[1024];
  herd_supervisor_options_t o;
  herd_supervisor_socket_t sock;
  herd_listen_options_t lo;
  herd_listen_addr_t addr;
  herd_log_t out, err;
  sup_run_t run;
  uv_timer_t deadline;
  uv_loop_t loop;
  int lfd, null_fd = -1, r;

  snprintf(fd3, sizeof(fd3), "%s/examples/fd3-http", test_binary_dir());
  memset(&run, 0, sizeof(run));
  run.c = c;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &addr));
  memset(&lo, 0, sizeof(lo));
  lo.flags = HERD_LISTEN_REUSEPORT;
  ASSERT_OK(herd_listen_bind(&addr, &lo, &lfd));
  memset(&sock, 0, sizeof(sock));
  sock.fd = lfd;
  sock.addr = &addr;
  memset(&o, 0, sizeof(o));
  o.file = fd3;
  o.workers = 1;
  o.policy = HERD_SCHED_REUSEPORT;
  o.sockets = &sock;
  o.socket_count = 1;
  o.ready = HERD_READY_NOTIFY;
  if (c->cluster) {
    o.protocol = HERD_WORKER_CLUSTER;
    o.file = test_exe();
    o.args = test_helper_args("cluster_worker", NULL, NULL);
    o.ready = HERD_READY_LISTENING;
    /* A reply the primary could not allocate leaves the worker waiting:
     * the ready timeout ends that. */
    o.ready_timeout = 2000;
    o.graceful_timeout = 2000;
  }
  o.graceful_timeout = 5000;
  o.flags = HERD_SUPERVISOR_SENTINEL | HERD_SUPERVISOR_SUBREAPER;
  if (c->logs) {
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ASSERT(null_fd >= 0);
    /* The logs themselves may fail to start: then workers inherit. */
    if (herd_log_init(&loop, &out, null_fd, NULL) == 0)
      o.out = &out;
    if (herd_log_init(&loop, &err, null_fd, NULL) == 0)
      o.err = &err;
  }
  run.sup = malloc(sizeof(*run.sup));
  ASSERT(run.sup != NULL);
  memset(run.sup, 0, sizeof(*run.sup));
  run.sup->data = &run;
  r = herd_supervisor_init(&loop, run.sup, &o, sup_case_event, NULL);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(run.sup);
    run.sup = NULL;
  } else {
    r = herd_supervisor_start(run.sup);
    if (r != 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      herd_supervisor_close(run.sup, sup_case_closed);
    }
    ASSERT_OK(uv_timer_init(&loop, &deadline));
    ASSERT_OK(uv_timer_start(&deadline, sup_deadline, 20000, 0));
    uv_unref((uv_handle_t*)&deadline);
    while (!run.closed)
      uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t*)&deadline, NULL);
    free(run.sup);
  }
  if (o.out != NULL)
    herd_log_close(&out, NULL);
  if (o.err != NULL)
    herd_log_close(&err, NULL);
  test_loop_run_close(&loop);
  if (null_fd >= 0)
    close(null_fd);
  close(lfd);
  if (!alloc_failed())
    ASSERT(run.stopped);
}

TEST_IMPL(alloc_supervisor) {
  sup_case_t c;
  memset(&c, 0, sizeof(c));
  c.logs = 1;
  ASSERT_GE(alloc_sweep("supervisor with logs", sup_case, &c), 8);
  return 0;
}

TEST_IMPL(alloc_supervisor_cluster) {
  sup_case_t c;
  memset(&c, 0, sizeof(c));
  /* Start, ready, stop. With a reload (herd_worker_replace()) the sweep
   * takes 40 s under ASan, the IPC channel allocating per message: too
   * long for the suite. */
  c.cluster = 1;
  ASSERT_GE(alloc_sweep("supervisor of cluster workers", sup_case, &c), 10);
  return 0;
}

TEST_IMPL(alloc_supervisor_reload_scale) {
  sup_case_t c;
  memset(&c, 0, sizeof(c));
  c.reload = 1;
  c.scale = 1;
  ASSERT_GE(alloc_sweep("supervisor reload and scale", sup_case, &c), 10);
  return 0;
}
