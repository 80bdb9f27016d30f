/* Node's child_process API items in herd, each compared with what real node
 * does (test/fixtures/process-node.js): signal names, the 'spawn' event,
 * spawnfile and spawnargs, the stdio shorthands and defaults, more than 16
 * stdio entries, output[] of the blocking forms, and the PATH of an `env`
 * without one. */
#include "task.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Runs `node process-node.js <kind> <extra...>` and returns its stdout
 * (malloc'd). With `inherit`, node gets this process's fds 0-2. */
static char* node_run(const char* kind, const char* const* extra, int inherit) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  herd_stdio_t stdio[3];
  const char* args[64];
  char script[1024];
  char* out;
  int n = 0;

  snprintf(script, sizeof(script), "%s/test/fixtures/process-node.js",
           test_source_dir());
  args[n++] = script;
  args[n++] = kind;
  for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
    ASSERT(n < 63);
    args[n++] = extra[i];
  }
  args[n] = NULL;
  memset(&o, 0, sizeof(o));
  o.timeout = 30000;
  if (inherit) {
    ASSERT_EQ(herd_stdio_parse("inherit", stdio, 3), 3);
    o.stdio = stdio;
    o.stdio_count = 3;
  }
  ASSERT_OK(herd_spawn_sync("node", args, &o, &r));
  if (r.status != 0)
    FATAL("node %s: status %lld\nstdout: %s\nstderr: %s", kind,
          (long long)r.status, r.out ? r.out : "", r.err ? r.err : "");
  out = strdup(r.out != NULL ? r.out : "");
  ASSERT(out != NULL);
  herd_sync_result_free(&r);
  return out;
}

/* Appends to a fixed buffer. */
static void catf(char* buf, size_t size, const char* fmt, ...) {
  size_t len = strlen(buf);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, size - len, fmt, ap);
  va_end(ap);
}

/* Runs one child to its close on a fresh loop: what the callbacks saw. */
typedef struct {
  herd_child_t child; /* first: the callbacks cast back */
  char events[256];
  char out[4096];
  char spawnargs[512]; /* JSON of spawnfile and spawnargs, as Node prints */
  int spawns, exits, errors, closes;
  int err;
  int sig;
} rec_t;

static void rec_json(rec_t* r) {
  herd_child_t* c = &r->child;
  r->spawnargs[0] = '\0';
  catf(r->spawnargs, sizeof(r->spawnargs), "[\"%s\",[", c->spawnfile);
  for (int i = 0; c->spawnargs[i] != NULL; i++)
    catf(r->spawnargs, sizeof(r->spawnargs), "%s\"%s\"", i ? "," : "",
         c->spawnargs[i]);
  catf(r->spawnargs, sizeof(r->spawnargs), "]]");
}

static void rec_spawn(herd_child_t* child) {
  rec_t* r = (rec_t*)child;
  r->spawns++;
  catf(r->events, sizeof(r->events), "spawn,");
}

static void rec_read(herd_child_t* child, int fd, const char* buf,
                     ssize_t nread) {
  rec_t* r = (rec_t*)child;
  if (nread > 0) {
    if (r->out[0] == '\0')
      catf(r->events, sizeof(r->events), "data,");
    catf(r->out, sizeof(r->out), "%d:%.*s", fd, (int)nread, buf);
  }
}

static void rec_exit(herd_child_t* child, int64_t status, int sig) {
  rec_t* r = (rec_t*)child;
  (void)status;
  r->exits++;
  r->sig = sig;
  catf(r->events, sizeof(r->events), "exit,");
}

static void rec_error(herd_child_t* child, int err) {
  rec_t* r = (rec_t*)child;
  r->errors++;
  r->err = err;
  catf(r->events, sizeof(r->events), "error %s,", herd_err_name(err));
  /* Set whether or not the start succeeded, as Node's. */
  rec_json(r);
}

static void rec_close(herd_child_t* child) {
  rec_t* r = (rec_t*)child;
  r->closes++;
  catf(r->events, sizeof(r->events), "close");
  /* Still valid here. */
  ASSERT(child->spawnfile != NULL && child->spawnargs != NULL);
}

static void rec_opts(herd_spawn_options_t* o) {
  memset(o, 0, sizeof(*o));
  o->exit_cb = rec_exit;
  o->error_cb = rec_error;
  o->close_cb = rec_close;
  o->spawn_cb = rec_spawn;
}

static void rec_run(rec_t* r, const char* file, const char* const* args,
                    herd_spawn_options_t* o) {
  uv_loop_t loop;
  memset(r, 0, sizeof(*r));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_spawn(&loop, &r->child, file, args, o));
  rec_json(r);
  for (int fd = 1; fd <= 2; fd++)
    if (herd_child_stream(&r->child, fd) != NULL)
      ASSERT_OK(herd_child_read_start(&r->child, fd, rec_read));
  test_loop_run_close(&loop);
  ASSERT_EQ(r->closes, 1);
}

/* Signal names: os.constants.signals, the name spawnSync reports for each
 * signal, and the spellings kill() accepts, against herd_signal_number(),
 * herd_signal_name() and the names in herd's results. */
TEST_IMPL(process_signal_names_node) {
  static const int sigs[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,
                             10, 11, 12, 13, 14, 15, 16, 24, 25,
                             26, 27, 29, 30, 31, 34, 40, 64};
  char nums[ARRAY_LEN(sigs)][8];
  const char* extra[ARRAY_LEN(sigs) + 1];
  char *out, *line, *save;
  int consts = 0, exits = 0, kills = 0;

  for (size_t i = 0; i < ARRAY_LEN(sigs); i++) {
    snprintf(nums[i], sizeof(nums[i]), "%d", sigs[i]);
    extra[i] = nums[i];
  }
  extra[ARRAY_LEN(sigs)] = NULL;
  out = node_run("signals", extra, 0);
  for (line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save)) {
    char name[64], lower[64], word[64];
    int n;
    if (sscanf(line, "const %63s %d", name, &n) == 2) {
      consts++;
      ASSERT_EQ(herd_signal_number(name), n);
      for (size_t i = 0; i <= strlen(name); i++)
        lower[i] =
            (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
      ASSERT_EQ(herd_signal_number(lower), n);
      ASSERT_EQ(herd_signal_number(herd_signal_name(n)), n);
    } else if (sscanf(line, "exit %d %63s", &n, name) == 2) {
      const char* args[] = {"-c", NULL, NULL};
      char script[32];
      herd_sync_result_t r;
      exits++;
      if (strcmp(name, "(empty)") == 0)
        ASSERT(herd_signal_name(n) == NULL);
      else
        ASSERT_STR_EQ(herd_signal_name(n), name);
      /* herd's own result for a child ended by that signal. */
      snprintf(script, sizeof(script), "kill -%d $$", n);
      args[1] = script;
      ASSERT_OK(herd_spawn_sync("/bin/sh", args, NULL, &r));
      ASSERT_EQ(r.signal, n);
      ASSERT_EQ(r.status, -1);
      if (herd_signal_name(n) == NULL)
        ASSERT(r.signal_name == NULL);
      else
        ASSERT_STR_EQ(r.signal_name, name);
      herd_sync_result_free(&r);
    } else if (sscanf(line, "kill %63s %63s", name, word) == 2) {
      kills++;
      if (strcmp(name, "(empty)") == 0)
        name[0] = '\0';
      if (strcmp(word, "ok") == 0)
        ASSERT(herd_signal_number(name) > 0);
      else
        ASSERT_EQ(herd_signal_number(name), UV_EINVAL);
    } else {
      FATAL("unexpected line from node: %s", line);
    }
  }
  free(out);
  ASSERT_EQ(consts, 33);
  ASSERT_EQ(exits, (int)ARRAY_LEN(sigs));
  ASSERT_EQ(kills, 6);
  ASSERT_EQ(herd_signal_number(NULL), UV_EINVAL);
  ASSERT_EQ(herd_signal_number("TERM"), UV_EINVAL);
  ASSERT(herd_signal_name(0) == NULL);
  ASSERT(herd_signal_name(-1) == NULL);
  ASSERT(herd_signal_name(65) == NULL);

  /* The name in the child handle (Node's signalCode) and exec's result. */
  {
    const char* args[] = {"-c", "kill -TERM $$", NULL};
    herd_spawn_options_t o;
    rec_t r;
    rec_opts(&o);
    rec_run(&r, "/bin/sh", args, &o);
    ASSERT_EQ(r.sig, SIGTERM);
    ASSERT_STR_EQ(r.child.signal_code, "SIGTERM");
    args[1] = "exit 0";
    rec_run(&r, "/bin/sh", args, &o);
    ASSERT(r.child.signal_code == NULL);
  }
  return 0;
}

static void exec_signal_cb(herd_exec_t* req, herd_exec_result_t* result) {
  ASSERT_EQ(result->signal, SIGINT);
  ASSERT_STR_EQ(result->signal_name, "SIGINT");
  ASSERT_EQ(result->killed, 1);
  ASSERT_EQ(result->error, UV_ETIMEDOUT);
  *(int*)req->data = 1;
}

/* kill_signal and kill() by name: herd_signal_number()'s answer goes
 * straight in, and its error is refused by every consumer, as Node throws
 * ERR_UNKNOWN_SIGNAL for killSignal: 'SIGFOO' and kill('SIGFOO'). */
TEST_IMPL(process_kill_signal_names) {
  const char* sleep_args[] = {"30", NULL};
  herd_spawn_options_t o;
  herd_exec_options_t eo;
  herd_spawn_sync_options_t so;
  herd_sync_result_t sr;
  herd_exec_t req;
  uv_loop_t loop;
  rec_t r;
  int called = 0;

  ASSERT_OK(uv_loop_init(&loop));
  rec_opts(&o);
  memset(&r, 0, sizeof(r));
  o.kill_signal = herd_signal_number("SIGFOO");
  ASSERT_EQ(herd_spawn(&loop, &r.child, "sleep", sleep_args, &o), UV_EINVAL);
  memset(&eo, 0, sizeof(eo));
  eo.kill_signal = herd_signal_number("SIGFOO");
  ASSERT_EQ(herd_exec(&loop, &req, "true", &eo, exec_signal_cb), UV_EINVAL);
  memset(&so, 0, sizeof(so));
  so.kill_signal = herd_signal_number("SIGFOO");
  ASSERT_EQ(herd_spawn_sync("true", NULL, &so, &sr), UV_EINVAL);
  herd_sync_result_free(&sr);

  /* kill() by name, any case; an unknown name changes nothing. */
  o.kill_signal = herd_signal_number("sigint");
  ASSERT_EQ(o.kill_signal, SIGINT);
  ASSERT_OK(herd_spawn(&loop, &r.child, "sleep", sleep_args, &o));
  ASSERT_EQ(herd_child_kill(&r.child, herd_signal_number("SIGFOO")), UV_EINVAL);
  ASSERT_EQ(r.child.killed, 0);
  ASSERT_OK(herd_child_kill(&r.child, herd_signal_number("SigUsr1")));
  test_loop_run_close(&loop);
  ASSERT_EQ(r.sig, SIGUSR1);
  ASSERT_STR_EQ(r.child.signal_code, "SIGUSR1");

  /* A timeout's kill_signal given by name, and the name in the result. */
  ASSERT_OK(uv_loop_init(&loop));
  eo.kill_signal = herd_signal_number("SIGINT");
  eo.timeout = 100;
  req.data = &called;
  /* exec_file: a shell waiting for its command would outlive SIGINT. */
  ASSERT_OK(
      herd_exec_file(&loop, &req, "sleep", sleep_args, &eo, exec_signal_cb));
  test_loop_run_close(&loop);
  ASSERT_EQ(called, 1);
  return 0;
}

/* A kill_signal that is no signal is refused at once, in every form: the
 * old code took it and its timeout then signalled nothing. */
TEST_IMPL(process_kill_signal_invalid) {
  static const int bad[] = {-22, -1, 65, 1000};
  const char* sleep_args[] = {"30", NULL};
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    herd_spawn_options_t o;
    herd_exec_options_t eo;
    herd_spawn_sync_options_t so;
    herd_sync_result_t sr;
    herd_child_t c;
    herd_exec_t req;
    memset(&o, 0, sizeof(o));
    o.kill_signal = bad[i];
    o.timeout = 50;
    ASSERT_EQ(herd_spawn(&loop, &c, "sleep", sleep_args, &o), UV_EINVAL);
    memset(&eo, 0, sizeof(eo));
    eo.kill_signal = bad[i];
    ASSERT_EQ(herd_exec(&loop, &req, "true", &eo, exec_signal_cb), UV_EINVAL);
    memset(&so, 0, sizeof(so));
    so.kill_signal = bad[i];
    so.timeout = 50;
    ASSERT_EQ(herd_spawn_sync("sleep", sleep_args, &so, &sr), UV_EINVAL);
    herd_sync_result_free(&sr);
  }
  test_loop_run_close(&loop);
  return 0;
}

/* The 'spawn' event: first, before data and exit, once; not at all for a
 * failed start ('error' instead), as node shows. */
TEST_IMPL(process_spawn_event_node) {
  const char* args[] = {"-c", "echo out", NULL};
  char *out, expect[512];
  herd_spawn_options_t o;
  rec_t r;

  out = node_run("events", NULL, 0);
  ASSERT_STR_EQ(out, "ok spawn 1 close\nfail error ENOENT,close\n");
  free(out);

  rec_opts(&o);
  rec_run(&r, "/bin/sh", args, &o);
  ASSERT_EQ(r.spawns, 1);
  ASSERT(strncmp(r.events, "spawn,", 6) == 0);
  ASSERT(strcmp(r.events, "spawn,data,exit,close") == 0 ||
         strcmp(r.events, "spawn,exit,data,close") == 0);
  /* The same with a timeout armed, which shares the child's timer. */
  o.timeout = 5000;
  rec_run(&r, "/bin/sh", args, &o);
  ASSERT_EQ(r.spawns, 1);
  ASSERT(strncmp(r.events, "spawn,", 6) == 0);
  o.timeout = 0;

  rec_run(&r, "/nonexistent/program", args, &o);
  snprintf(expect, sizeof(expect), "error ENOENT,close");
  ASSERT_STR_EQ(r.events, expect);
  ASSERT_EQ(r.spawns, 0);

  /* Closed before the loop ran: no spawn_cb (nor exit_cb). */
  {
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    memset(&r, 0, sizeof(r));
    ASSERT_OK(herd_spawn(&loop, &r.child, "/bin/sh", args, &o));
    herd_child_close(&r.child);
    test_loop_run_close(&loop);
    ASSERT_STR_EQ(r.events, "close");
  }
  return 0;
}

static void spawn_from_timer(uv_timer_t* t) {
  rec_t* r = t->data;
  const char* args[] = {"-c", "echo out", NULL};
  herd_spawn_options_t o;
  rec_opts(&o);
  ASSERT_OK(herd_spawn(t->loop, &r->child, "/bin/sh", args, &o));
  ASSERT_OK(herd_child_read_start(&r->child, 1, rec_read));
  uv_close((uv_handle_t*)t, NULL);
}

static void close_from_spawn(herd_child_t* child) {
  rec_spawn(child);
  herd_child_close(child);
}

/* The 'spawn' event when the spawn is made from inside a loop callback,
 * and a child closed from its own spawn_cb. */
TEST_IMPL(process_spawn_event_order) {
  const char* args[] = {"-c", "echo out", NULL};
  herd_spawn_options_t o;
  uv_loop_t loop;
  uv_timer_t t;
  rec_t r;

  ASSERT_OK(uv_loop_init(&loop));
  memset(&r, 0, sizeof(r));
  ASSERT_OK(uv_timer_init(&loop, &t));
  t.data = &r;
  ASSERT_OK(uv_timer_start(&t, spawn_from_timer, 0, 0));
  test_loop_run_close(&loop);
  ASSERT_EQ(r.spawns, 1);
  ASSERT(strncmp(r.events, "spawn,", 6) == 0);
  ASSERT_EQ(r.closes, 1);

  rec_opts(&o);
  o.spawn_cb = close_from_spawn;
  rec_run(&r, "/bin/sh", args, &o);
  ASSERT_STR_EQ(r.events, "spawn,close");
  return 0;
}

/* spawnfile and spawnargs, as Node sets them, for the same options. */
TEST_IMPL(process_spawnargs_node) {
  const char* ab[] = {"a", "b", NULL};
  const char* a[] = {"a", NULL};
  const char* q[] = {"q", NULL};
  herd_stdio_t ignore[3];
  herd_spawn_options_t o;
  char *out, *line, *save;
  rec_t r;
  int i = 0;

  ASSERT_EQ(herd_stdio_parse("ignore", ignore, 3), 3);
  out = node_run("spawnargs", NULL, 0);
  for (line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save), i++) {
    rec_opts(&o);
    o.stdio = ignore;
    o.stdio_count = 3;
    switch (i) {
      case 0:
        rec_run(&r, "echo", ab, &o);
        break;
      case 1:
        o.flags = HERD_SPAWN_SHELL;
        rec_run(&r, "echo", ab, &o);
        break;
      case 2:
        o.flags = HERD_SPAWN_SHELL;
        o.shell = "/bin/bash";
        o.argv0 = "zz";
        rec_run(&r, "echo", ab, &o);
        break;
      case 3:
        o.argv0 = "zz";
        rec_run(&r, "echo", a, &o);
        break;
      case 4:
        rec_run(&r, "echo", NULL, &o);
        break;
      case 5:
        rec_run(&r, "/nonexistent/program", q, &o);
        ASSERT_EQ(r.err, UV_ENOENT);
        break;
      default:
        FATAL("unexpected line from node: %s", line);
    }
    ASSERT_STR_EQ(r.spawnargs, line);
  }
  ASSERT_EQ(i, 6);
  free(out);

  /* A script without #!, found in PATH, runs through /bin/sh (execvp()'s
   * fallback), which points argv[0] elsewhere in the child for a moment:
   * spawnargs is still what Node shows, ["name", ["name"]]. */
  {
    char dir[] = "/tmp/herd-args-XXXXXX";
    char script[256], path_var[300];
    const char* env[] = {path_var, NULL};
    int fd;
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(script, sizeof(script), "%s/herd-no-shebang", dir);
    snprintf(path_var, sizeof(path_var), "PATH=%s", dir);
    fd = open(script, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "exit 0\n", 7), 7);
    close(fd);
    rec_opts(&o);
    o.stdio = ignore;
    o.stdio_count = 3;
    o.env = env;
    rec_run(&r, "herd-no-shebang", NULL, &o);
    ASSERT_EQ(r.exits, 1);
    ASSERT_STR_EQ(r.spawnargs, "[\"herd-no-shebang\",[\"herd-no-shebang\"]]");
    unlink(script);
    ASSERT_EQ(rmdir(dir), 0);
  }
  return 0;
}

/* Writes what its fds 0-8 are into the file argv[1]: "0=null 1=socket
 * ... 8=closed" (null, socket, pipe, closed or other). */
HELPER_IMPL(process_fd_report) {
  char line[512] = "";
  FILE* f;
  ASSERT(argc == 2);
  for (int fd = 0; fd <= 8; fd++) {
    char path[64], target[256];
    const char* kind = "other";
    ssize_t n;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    target[n < 0 ? 0 : n] = '\0';
    if (n < 0)
      kind = "closed";
    else if (strcmp(target, "/dev/null") == 0)
      kind = "null";
    else if (strncmp(target, "socket:", 7) == 0)
      kind = "socket";
    else if (strncmp(target, "pipe:", 5) == 0)
      kind = "pipe";
    catf(line, sizeof(line), "%s%d=%s", fd ? " " : "", fd, kind);
  }
  /* Opened after the look, so that it is not seen. */
  f = fopen(argv[1], "we");
  ASSERT(f != NULL);
  fprintf(f, "%s\n", line);
  fclose(f);
  return 0;
}

/* Runs the fd report under herd with `stdio`, into `path`; returns it. */
static char* herd_fd_report(const herd_stdio_t* stdio, int count,
                            const char* path) {
  const char* args[] = {"--helper", "process_fd_report", path, NULL};
  herd_spawn_options_t o;
  rec_t r;
  char* report;
  size_t len;
  rec_opts(&o);
  o.stdio = stdio;
  o.stdio_count = count;
  rec_run(&r, test_exe(), args, &o);
  ASSERT_EQ(r.exits, 1);
  ASSERT_EQ(r.child.exit_status, 0);
  report = test_read_file(path, &len);
  ASSERT(report != NULL);
  while (len > 0 && (report[len - 1] == '\n' || report[len - 1] == ' '))
    report[--len] = '\0';
  unlink(path);
  return report;
}

/* Node's defaults, with herd's own entries only: an array shorter than
 * three is completed with pipes, and 'ignore' above fd 2 leaves the fd
 * closed (libuv opens /dev/null only for fds 0-2). The old code closed the
 * missing fds 1 and 2 and gave fd 3 /dev/null. */
TEST_IMPL(process_stdio_node_defaults) {
  herd_stdio_t one[1] = {{HERD_STDIO_IGNORE, 0}};
  herd_stdio_t five[5] = {{HERD_STDIO_PIPE, 0},
                          {HERD_STDIO_PIPE, 0},
                          {HERD_STDIO_IGNORE, 0},
                          {HERD_STDIO_IGNORE, 0},
                          {HERD_STDIO_PIPE, 0}};
  char path[] = "/tmp/herd-stdio-XXXXXX";
  char* rep;
  int fd = mkostemp(path, O_CLOEXEC);
  ASSERT(fd >= 0);
  close(fd);
  rep = herd_fd_report(one, 1, path);
  ASSERT_STR_EQ(rep,
                "0=null 1=socket 2=socket 3=closed 4=closed 5=closed "
                "6=closed 7=closed 8=closed");
  free(rep);
  rep = herd_fd_report(five, 5, path);
  ASSERT_STR_EQ(rep,
                "0=socket 1=socket 2=null 3=closed 4=socket 5=closed "
                "6=closed 7=closed 8=closed");
  free(rep);
  return 0;
}

/* Node's stdio option, written as in JavaScript, against node: the same
 * spec gives the child the same fds. node inherits this process's fds 0-2,
 * so 'inherit' means the same fds on both sides. */
TEST_IMPL(process_stdio_node) {
  static const char* const specs[] = {
      "'pipe'",
      "'ignore'",
      "'inherit'",
      "'overlapped'",
      "[]",
      "['ignore']",
      "[null, 'inherit']",
      "['pipe', 'ignore', 'pipe', 'ignore', 'pipe', null, 'pipe']",
      "['ignore', 2, 1]",
      "[0, 1, 2]",
      "['pipe', 'pipe', 'pipe', 'ipc']",
      "[undefined, undefined, undefined, 'pipe']",
      "['ignore', 'ignore', 'ignore', 'ignore', 'overlapped']",
      "[-1, 'ignore']",
      "['inherit', 'pipe', 'inherit', 'pipe',]",
  };
  char dir[] = "/tmp/herd-stdio-XXXXXX";
  char out_path[256], path[256];
  const char* extra[ARRAY_LEN(specs) + 4];
  char *out, *line, *save;
  size_t len;
  int n = 0, i = 0;

  ASSERT(mkdtemp(dir) != NULL);
  snprintf(out_path, sizeof(out_path), "%s/out", dir);
  extra[n++] = out_path;
  extra[n++] = test_exe();
  extra[n++] = dir;
  for (size_t k = 0; k < ARRAY_LEN(specs); k++)
    extra[n++] = specs[k];
  extra[n] = NULL;
  free(node_run("stdio", extra, 1));
  out = test_read_file(out_path, &len);
  ASSERT(out != NULL);
  for (line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save), i++) {
    herd_stdio_t stdio[16];
    char* tab = strchr(line, '\t');
    char* rep;
    int count;
    ASSERT(tab != NULL);
    *tab = '\0';
    ASSERT_STR_EQ(line, specs[i]);
    count = herd_stdio_parse(specs[i], stdio, 16);
    ASSERT(count >= 0 && count <= 16);
    snprintf(path, sizeof(path), "%s/herd-%d", dir, i);
    rep = herd_fd_report(stdio, count, path);
    if (strcmp(rep, tab + 1) != 0)
      FATAL("stdio %s: node: %s; herd: %s", specs[i], tab + 1, rep);
    free(rep);
  }
  ASSERT_EQ(i, (int)ARRAY_LEN(specs));
  free(out);
  for (int k = 0; k < i; k++) {
    snprintf(path, sizeof(path), "%s/node-%d", dir, k);
    unlink(path);
  }
  unlink(out_path);
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}

/* herd_stdio_parse() on its own: the forms it takes and what it refuses. */
TEST_IMPL(process_stdio_parse) {
  herd_stdio_t s[8];
  ASSERT_EQ(herd_stdio_parse("pipe", s, 8), 3);
  ASSERT_EQ(s[2].kind, HERD_STDIO_PIPE);
  ASSERT_EQ(herd_stdio_parse(" 'inherit' ", s, 8), 3);
  ASSERT_EQ(s[0].kind, HERD_STDIO_INHERIT);
  ASSERT_EQ(s[2].kind, HERD_STDIO_INHERIT);
  ASSERT_EQ(herd_stdio_parse("\"overlapped\"", s, 8), 3);
  ASSERT_EQ(s[1].kind, HERD_STDIO_OVERLAPPED);
  ASSERT_EQ(herd_stdio_parse("[]", s, 8), 0);
  ASSERT_EQ(herd_stdio_parse("[ ]", s, 8), 0);
  ASSERT_EQ(herd_stdio_parse("['ignore', \"inherit\", null, 'ipc', 7, -1, "
                             "undefined, 'overlapped']",
                             s, 8),
            8);
  ASSERT_EQ(s[0].kind, HERD_STDIO_IGNORE);
  ASSERT_EQ(s[1].kind, HERD_STDIO_INHERIT);
  ASSERT_EQ(s[2].kind, HERD_STDIO_DEFAULT);
  ASSERT_EQ(s[3].kind, HERD_STDIO_IPC);
  ASSERT_EQ(s[4].kind, HERD_STDIO_FD);
  ASSERT_EQ(s[4].fd, 7);
  ASSERT_EQ(s[5].kind, HERD_STDIO_PIPE);
  ASSERT_EQ(s[6].kind, HERD_STDIO_DEFAULT);
  ASSERT_EQ(s[7].kind, HERD_STDIO_OVERLAPPED);
  /* Without brackets, a list is still an array; an empty item is null. */
  ASSERT_EQ(herd_stdio_parse("pipe,,ipc", s, 8), 3);
  ASSERT_EQ(s[1].kind, HERD_STDIO_DEFAULT);
  ASSERT_EQ(s[2].kind, HERD_STDIO_IPC);
  /* A trailing comma ends the array, as in JavaScript. */
  ASSERT_EQ(herd_stdio_parse("['pipe',]", s, 8), 1);
  /* The count comes back even when the array is too small. */
  ASSERT_EQ(herd_stdio_parse("[1, 2, 3, 4]", s, 2), 4);
  ASSERT_EQ(herd_stdio_parse("[1, 2, 3, 4]", NULL, 0), 4);
  ASSERT_EQ(herd_stdio_parse("ignore", NULL, 0), 3);
  /* Refused, as Node refuses them. */
  ASSERT_EQ(herd_stdio_parse("ipc", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("null", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("3", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("-1", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("piped", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("['pipe'", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("['pipe] ", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("['pipe'] x", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("[1x]", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("[99999999999]", s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse(NULL, s, 8), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("pipe", NULL, 3), UV_EINVAL);
  ASSERT_EQ(herd_stdio_parse("pipe", s, -1), UV_EINVAL);
  return 0;
}

/* Writes "fd N" into each fd named in argv, then lists its open fds on
 * stdout. */
HELPER_IMPL(process_fd_write) {
  char line[4096] = "";
  for (int i = 1; i < argc; i++) {
    char msg[32];
    int fd = atoi(argv[i]);
    int len = snprintf(msg, sizeof(msg), "fd %d\n", fd);
    if (write(fd, msg, (size_t)len) != len)
      return 1;
    close(fd);
  }
  for (int fd = 0; fd < 1024; fd++) {
    if (fcntl(fd, F_GETFD) != -1) {
      char num[16];
      snprintf(num, sizeof(num), "%s%d", line[0] ? " " : "", fd);
      strcat(line, num);
    }
  }
  printf("%s\n", line);
  return 0;
}

static void many_read(herd_child_t* child, int fd, const char* buf,
                      ssize_t nread) {
  rec_read(child, fd, buf, nread);
}

/* More than 16 stdio entries (Node has no limit): a pipe at fd 39 and at
 * fd 299, the fds between left closed, and an fd of the parent at fd 40.
 * The old code refused more than 16 with UV_EINVAL. */
TEST_IMPL(process_stdio_many) {
  static herd_stdio_t stdio[300];
  herd_spawn_options_t o;
  uv_loop_t loop;
  rec_t r;
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT(devnull >= 0);
  for (int i = 0; i < 300; i++) {
    stdio[i].kind = i < 3 ? HERD_STDIO_PIPE : HERD_STDIO_IGNORE;
    stdio[i].fd = 0;
  }
  stdio[39].kind = HERD_STDIO_PIPE;
  stdio[40].kind = HERD_STDIO_FD;
  stdio[40].fd = devnull;
  stdio[299].kind = HERD_STDIO_PIPE;
  memset(&o, 0, sizeof(o));
  o.exit_cb = rec_exit;
  o.error_cb = rec_error;
  o.close_cb = rec_close;
  o.stdio = stdio;
  o.stdio_count = 300;
  ASSERT_OK(uv_loop_init(&loop));
  memset(&r, 0, sizeof(r));
  ASSERT_OK(herd_spawn(&loop, &r.child, test_exe(),
                       test_helper_args("process_fd_write", "39", "299"), &o));
  ASSERT_OK(herd_child_read_start(&r.child, 1, many_read));
  ASSERT_OK(herd_child_read_start(&r.child, 39, many_read));
  ASSERT_OK(herd_child_read_start(&r.child, 299, many_read));
  ASSERT(herd_child_stream(&r.child, 38) == NULL);
  test_loop_run_close(&loop);
  close(devnull);
  ASSERT_EQ(r.errors, 0);
  ASSERT_EQ(r.exits, 1);
  /* Each pipe's data arrives whole, in an order the loop decides. */
  ASSERT(strstr(r.out, "39:fd 39\n") != NULL);
  ASSERT(strstr(r.out, "299:fd 299\n") != NULL);
  ASSERT(strstr(r.out, "1:0 1 2 40\n") != NULL);
  return 0;
}

/* Renders output[] as Node's JSON.stringify(output.map(toString)). */
static void output_json(const herd_sync_result_t* r, char* buf, size_t size) {
  buf[0] = '\0';
  catf(buf, size, "[");
  for (int i = 0; i < r->output_count; i++) {
    const char* d = r->output[i].data;
    catf(buf, size, "%s", i ? "," : "");
    if (d == NULL) {
      catf(buf, size, "null");
      continue;
    }
    catf(buf, size, "\"");
    for (size_t k = 0; k < r->output[i].len; k++) {
      if (d[k] == '\n')
        catf(buf, size, "\\n");
      else
        catf(buf, size, "%c", d[k]);
    }
    catf(buf, size, "\"");
  }
  catf(buf, size, "]");
}

/* spawnSync's result.output, fds 3 and up included, against node; and an
 * IPC entry refused (Node: ERR_IPC_SYNC_FORK). */
TEST_IMPL(spawn_sync_output_node) {
  static const char script[] =
      "{ echo three >&3; } 2>/dev/null; { echo four >&4; } 2>/dev/null; "
      "{ echo five >&5; } 2>/dev/null; printf out; printf err >&2";
  static const char* const specs[] = {
      "['pipe', 'pipe', 'pipe', 'pipe', null, 'pipe']",
      "'pipe'",
      "['pipe', 'ignore', 'pipe']",
      "['ignore', 'pipe', 'pipe', 'ignore', 'pipe']",
      "[]",
      "['pipe', 'pipe', 'pipe', 'ipc']",
  };
  const char* extra[ARRAY_LEN(specs) + 2];
  char *out, *line, *save, json[1024];
  int n = 0, i = 0;

  extra[n++] = script;
  for (size_t k = 0; k < ARRAY_LEN(specs); k++)
    extra[n++] = specs[k];
  extra[n] = NULL;
  out = node_run("syncoutput", extra, 0);
  for (line = strtok_r(out, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save), i++) {
    const char* args[] = {"-c", script, NULL};
    herd_spawn_sync_options_t o;
    herd_sync_result_t r;
    herd_stdio_t stdio[16];
    int count, err;
    ASSERT(i < (int)ARRAY_LEN(specs));
    count = herd_stdio_parse(specs[i], stdio, 16);
    ASSERT(count >= 0 && count <= 16);
    memset(&o, 0, sizeof(o));
    o.stdio = stdio;
    o.stdio_count = count;
    err = herd_spawn_sync("/bin/sh", args, &o, &r);
    if (strcmp(line, "ERR_IPC_SYNC_FORK") == 0) {
      ASSERT_EQ(err, UV_EINVAL);
      ASSERT(r.output == NULL);
      ASSERT_EQ(r.pid, 0);
    } else {
      ASSERT_OK(err);
      output_json(&r, json, sizeof(json));
      if (strcmp(json, line) != 0)
        FATAL("output %s: node: %s; herd: %s", specs[i], line, json);
      /* output[1] and output[2] are out and err. */
      ASSERT(r.output[1].data == r.out && r.output[2].data == r.err);
    }
    herd_sync_result_free(&r);
    ASSERT(r.output == NULL && r.out == NULL);
  }
  ASSERT_EQ(i, (int)ARRAY_LEN(specs));
  free(out);

  /* A failed start has no output (Node's null). */
  {
    herd_sync_result_t r;
    ASSERT_EQ(herd_spawn_sync("/nonexistent/program", NULL, NULL, &r),
              UV_ENOENT);
    ASSERT(r.output == NULL);
    ASSERT_EQ(r.output_count, 0);
    herd_sync_result_free(&r);
  }
  /* Far fds in the blocking form too. */
  {
    static herd_stdio_t stdio[50];
    herd_spawn_sync_options_t o;
    herd_sync_result_t r;
    for (int k = 0; k < 50; k++)
      stdio[k].kind = k < 3 ? HERD_STDIO_PIPE : HERD_STDIO_DEFAULT;
    stdio[42].kind = HERD_STDIO_PIPE;
    memset(&o, 0, sizeof(o));
    o.stdio = stdio;
    o.stdio_count = 50;
    ASSERT_OK(herd_spawn_sync(
        test_exe(), test_helper_args("process_fd_write", "42", NULL), &o, &r));
    ASSERT_EQ(r.output_count, 50);
    ASSERT_STR_EQ(r.output[42].data, "fd 42\n");
    ASSERT_STR_EQ(r.out, "0 1 2\n");
    ASSERT(r.output[41].data == NULL && r.output[0].data == NULL);
    herd_sync_result_free(&r);
  }
  return 0;
}

/* An `env` without PATH: node does not fall back to the parent's PATH (a
 * program only there is ENOENT), but finds /bin:/usr/bin programs. The old
 * code searched the parent's PATH. */
TEST_IMPL(process_env_no_path_node) {
  static const char* const names[] = {"empty", "nopath", "inherit", "ls"};
  char dir[] = "/tmp/herd-path-XXXXXX";
  char probe[256], path[4096];
  const char* old_path = getenv("PATH");
  const char* extra[] = {"herd-path-probe", NULL};
  const char* root[] = {"/", NULL};
  const char* foo_env[] = {"FOO=1", NULL};
  const char* empty_env[] = {NULL};
  char *out, expect[512] = "";
  int fd;

  ASSERT(mkdtemp(dir) != NULL);
  snprintf(probe, sizeof(probe), "%s/herd-path-probe", dir);
  fd = open(probe, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  ASSERT(fd >= 0);
  ASSERT_EQ(write(fd, "#!/bin/sh\nexit 0\n", 17), 17);
  close(fd);
  snprintf(path, sizeof(path), "%s:%s", dir, old_path ? old_path : "/usr/bin");
  ASSERT_OK(setenv("PATH", path, 1));

  out = node_run("path", extra, 0);
  for (size_t i = 0; i < ARRAY_LEN(names); i++) {
    herd_stdio_t ignore[3];
    herd_spawn_options_t o;
    rec_t r;
    ASSERT_EQ(herd_stdio_parse("ignore", ignore, 3), 3);
    rec_opts(&o);
    o.stdio = ignore;
    o.stdio_count = 3;
    o.env = i == 0 ? empty_env : i == 1 ? foo_env : i == 2 ? NULL : empty_env;
    rec_run(&r, i == 3 ? "ls" : "herd-path-probe", root, &o);
    if (r.errors > 0)
      catf(expect, sizeof(expect), "%s %s\n", names[i], herd_err_name(r.err));
    else
      catf(expect, sizeof(expect), "%s exit 0\n", names[i]);
  }
  ASSERT_STR_EQ(expect, out);
  ASSERT_STR_EQ(out,
                "empty ENOENT\nnopath ENOENT\ninherit exit 0\nls exit 0\n");
  free(out);
  ASSERT_OK(setenv("PATH", old_path ? old_path : "/usr/bin:/bin", 1));
  unlink(probe);
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}
