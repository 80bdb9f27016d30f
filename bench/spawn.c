/* Spawn throughput: sequential spawn-and-wait of /bin/true, exec_file of
 * `/bin/echo hi`, exec of `echo hi` and spawn_sync of /bin/true, for herd,
 * for Node's child_process (bench/spawn.js, run as a subprocess) and for a
 * raw posix_spawn + waitpid loop (the limit). The three alternate in rounds
 * within one run; medians are reported.
 *
 * usage: spawn [path/to/bench/spawn.js | source dir] [N per loop] [rounds] */
#include "bench.h"
#include "herd.h"

#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#define MAX_ROUNDS 20

static int n_per_loop = 200;
static double max_seconds = 1.0;
/* How many spawns the last measured loop made. */
static int last_count;
static double node_startup_cpu;

/* CPU seconds used by this process and its reaped descendants: the cost of
 * a spawn, which the machine's load barely changes. */
static double cpu_seconds(void) {
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec +
                  kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
         (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec +
                  kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) /
             1e6;
}

/* spawn: Node's default stdio (three pipes, drained); spawn_ignore: stdio
 * 'ignore', the same work as the raw loop. */
enum { M_SPAWN, M_SPAWN_IGNORE, M_EXEC_FILE, M_EXEC, M_SYNC, M_COUNT };
static const char* metric_names[M_COUNT] = {"spawn", "spawn_ignore",
                                            "exec_file", "exec", "spawn_sync"};

/* herd: one child at a time, the next started from the previous close. */
typedef struct {
  uv_loop_t* loop;
  int done;
  double t0;
  int failed;
  herd_child_t child;
  herd_exec_t req;
  int kind;
} herd_seq_t;

static void herd_next(herd_seq_t* s);

static void seq_close_cb(herd_child_t* child) {
  herd_seq_t* s = child->data;
  if (!child->exited || child->exit_status != 0)
    s->failed = 1;
  s->done++;
  herd_next(s);
}

static void seq_exec_cb(herd_exec_t* req, herd_exec_result_t* r) {
  herd_seq_t* s = req->data;
  if (r->error != 0 || strcmp(r->out, "hi\n") != 0)
    s->failed = 1;
  s->done++;
  herd_next(s);
}

static void herd_next(herd_seq_t* s) {
  static const char* echo_args[] = {"hi", NULL};
  herd_spawn_options_t so;
  if (s->failed || s->done >= n_per_loop || bench_now() - s->t0 >= max_seconds)
    return;
  if (s->kind == M_SPAWN || s->kind == M_SPAWN_IGNORE) {
    static const herd_stdio_t ignore[3] = {
        {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_IGNORE, 0}};
    memset(&so, 0, sizeof(so));
    so.close_cb = seq_close_cb;
    if (s->kind == M_SPAWN_IGNORE) {
      so.stdio = ignore;
      so.stdio_count = 3;
    }
    s->child.data = s;
    if (herd_spawn(s->loop, &s->child, "/bin/true", NULL, &so) != 0)
      s->failed = 1;
  } else if (s->kind == M_EXEC_FILE) {
    s->req.data = s;
    if (herd_exec_file(s->loop, &s->req, "/bin/echo", echo_args, NULL,
                       seq_exec_cb) != 0)
      s->failed = 1;
  } else {
    s->req.data = s;
    if (herd_exec(s->loop, &s->req, "echo hi", NULL, seq_exec_cb) != 0)
      s->failed = 1;
  }
}

static double herd_rate(int kind) {
  herd_seq_t s;
  uv_loop_t loop;
  double t;
  memset(&s, 0, sizeof(s));
  if (kind == M_SYNC) {
    double t0 = bench_now();
    int i;
    for (i = 0; i < n_per_loop && bench_now() - t0 < max_seconds; i++) {
      herd_sync_result_t r;
      if (herd_spawn_sync("/bin/true", NULL, NULL, &r) != 0 || r.status != 0)
        return -1;
      herd_sync_result_free(&r);
    }
    last_count = i;
    return i / (bench_now() - t0);
  }
  uv_loop_init(&loop);
  s.loop = &loop;
  s.kind = kind;
  s.t0 = bench_now();
  herd_next(&s);
  uv_run(&loop, UV_RUN_DEFAULT);
  t = bench_now() - s.t0;
  uv_loop_close(&loop);
  if (s.failed) {
    fprintf(stderr, "herd %s failed\n", metric_names[kind]);
    return -1;
  }
  last_count = s.done;
  return s.done / t;
}

/* The limit: posix_spawn + waitpid, plus a pipe read for the output-
 * capturing forms, with nothing else around it. */
static int raw_once(const char* path, char* const* argv, int capture) {
  posix_spawn_file_actions_t fa;
  pid_t pid;
  int p[2] = {-1, -1};
  int status, r;
  char buf[256];
  posix_spawn_file_actions_init(&fa);
  if (capture) {
    if (pipe2(p, O_CLOEXEC) != 0)
      return -1;
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  }
  r = posix_spawn(&pid, path, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (capture) {
    close(p[1]);
    while (r == 0 && read(p[0], buf, sizeof(buf)) > 0) {
    }
    close(p[0]);
  }
  if (r != 0)
    return -1;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    return -1;
  return 0;
}

static double raw_rate(int kind) {
  static char* true_argv[] = {"/bin/true", NULL};
  static char* echo_argv[] = {"/bin/echo", "hi", NULL};
  static char* sh_argv[] = {"/bin/sh", "-c", "echo hi", NULL};
  double t0 = bench_now();
  int i;
  for (i = 0; i < n_per_loop && bench_now() - t0 < max_seconds; i++) {
    int r;
    if (kind == M_EXEC_FILE)
      r = raw_once("/bin/echo", echo_argv, 1);
    else if (kind == M_EXEC)
      r = raw_once("/bin/sh", sh_argv, 1);
    else
      r = raw_once("/bin/true", true_argv, 0);
    if (r != 0)
      return -1;
  }
  last_count = i;
  return i / (bench_now() - t0);
}

/* Runs `node spawn.js N MAX_MS metric` and parses its rate. */
static int node_rate(const char* script, int m, double* out) {
  char cmd[PATH_MAX + 96];
  char line[256];
  FILE* f;
  int got = 0;
  snprintf(cmd, sizeof(cmd), "node '%s' %d %d %s", script, n_per_loop,
           (int)(max_seconds * 1000), metric_names[m]);
  f = popen(cmd, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL) {
    char name[64];
    double v;
    int count;
    if (sscanf(line, "%63s %lf %d", name, &v, &count) == 3 &&
        strcmp(name, metric_names[m]) == 0) {
      *out = v;
      last_count = count;
      got = 1;
    }
  }
  if (pclose(f) != 0 || !got)
    return -1;
  return 0;
}

static int file_exists(const char* p) {
  return access(p, R_OK) == 0;
}

/* bench/spawn.js: from argv (the file or the source dir), next to the
 * binary's source tree (build/bench/spawn -> ../../bench/spawn.js), or from
 * the current directory. */
static int find_script(const char* arg, char* out, int cap) {
  char exe[PATH_MAX - 32];
  ssize_t n;
  if (arg != NULL) {
    if (snprintf(out, (size_t)cap, "%s", arg) < cap && file_exists(out) &&
        strstr(arg, ".js") != NULL)
      return 0;
    if (snprintf(out, (size_t)cap, "%s/bench/spawn.js", arg) < cap &&
        file_exists(out))
      return 0;
  }
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    char* slash;
    exe[n] = '\0';
    slash = strrchr(exe, '/');
    if (slash != NULL) {
      *slash = '\0';
      if (snprintf(out, (size_t)cap, "%s/../../bench/spawn.js", exe) < cap &&
          file_exists(out))
        return 0;
    }
  }
  snprintf(out, (size_t)cap, "bench/spawn.js");
  return file_exists(out) ? 0 : -1;
}

int main(int argc, char** argv) {
  char script[PATH_MAX];
  double herd_v[M_COUNT][MAX_ROUNDS], node_v[M_COUNT][MAX_ROUNDS],
      limit_v[M_COUNT][MAX_ROUNDS];
  /* CPU microseconds per spawn, parent and children together. */
  double herd_c[M_COUNT][MAX_ROUNDS], node_c[M_COUNT][MAX_ROUNDS],
      limit_c[M_COUNT][MAX_ROUNDS];
  int rounds = 7, node_ok = 1;

  if (argc > 2 && atoi(argv[2]) > 0)
    n_per_loop = atoi(argv[2]);
  if (argc > 3 && atoi(argv[3]) > 0)
    rounds = atoi(argv[3]) < MAX_ROUNDS ? atoi(argv[3]) : MAX_ROUNDS;
  if (find_script(argc > 1 ? argv[1] : NULL, script, (int)sizeof(script)) !=
      0) {
    fprintf(stderr, "spawn: cannot find bench/spawn.js; pass it as argv[1]\n");
    node_ok = 0;
  }

  if (node_ok) {
    /* The CPU one bare Node process costs, subtracted from Node's figures. */
    double v[3];
    for (int i = 0; i < 3; i++) {
      double c0 = cpu_seconds();
      if (system("node -e 0") != 0)
        node_ok = 0;
      v[i] = cpu_seconds() - c0;
    }
    node_startup_cpu = bench_median(v, 3);
  }

  /* Metric by metric, herd, Node and the limit take turns within a round
   * (each going first in turn), so the three figures of one metric are
   * measured close together on this shared, noisy machine. */
  for (int r = 0; r < rounds; r++) {
    for (int m = 0; m < M_COUNT; m++) {
      for (int k = 0; k < 3; k++) {
        int side = (r + m + k) % 3;
        double c0 = cpu_seconds(), c;
        last_count = 0;
        if (side == 0) {
          herd_v[m][r] = herd_rate(m);
        } else if (side == 1) {
          node_v[m][r] = -1;
          if (node_ok && node_rate(script, m, &node_v[m][r]) != 0) {
            fprintf(stderr, "spawn: node run failed; node left out\n");
            node_ok = 0;
          }
        } else {
          limit_v[m][r] = raw_rate(m);
        }
        c = cpu_seconds() - c0;
        if (side == 1)
          c -= node_startup_cpu; /* Node's own start is not a spawn. */
        c = last_count > 0 ? c * 1e6 / last_count : -1;
        if (side == 0)
          herd_c[m][r] = c;
        else if (side == 1)
          node_c[m][r] = node_ok ? c : -1;
        else
          limit_c[m][r] = c;
      }
    }
    fprintf(stderr, "round %d:", r + 1);
    for (int m = 0; m < M_COUNT; m++)
      fprintf(stderr, " %s herd %.0f node %.0f limit %.0f;", metric_names[m],
              herd_v[m][r], node_v[m][r], limit_v[m][r]);
    fprintf(stderr, "\n");
  }
  /* Per-round ratios are steadier than ratios of medians when the load
   * changes between rounds; printed for reading, not as RESULT. */
  for (int m = 0; m < M_COUNT; m++) {
    double rl[MAX_ROUNDS], rn[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
      rl[r] = limit_v[m][r] > 0 ? herd_v[m][r] / limit_v[m][r] : 0;
      rn[r] = node_v[m][r] > 0 ? herd_v[m][r] / node_v[m][r] : 0;
    }
    fprintf(stderr, "%s: median per-round herd/limit %.3f herd/node %.3f\n",
            metric_names[m], bench_median(rl, rounds),
            bench_median(rn, rounds));
  }
  for (int m = 0; m < M_COUNT; m++) {
    double h = bench_median(herd_v[m], rounds);
    double nd = node_ok ? bench_median(node_v[m], rounds) : -1;
    double l = bench_median(limit_v[m], rounds);
    bench_result("spawn", metric_names[m], "spawns/s", "higher", h, 2, "node",
                 nd, "limit", l);
  }
  for (int m = 0; m < M_COUNT; m++) {
    char name[64];
    double h = bench_median(herd_c[m], rounds);
    double nd = node_ok ? bench_median(node_c[m], rounds) : -1;
    double l = bench_median(limit_c[m], rounds);
    snprintf(name, sizeof(name), "%s_cpu", metric_names[m]);
    bench_result("spawn", name, "us/spawn", "lower", h, 2, "node", nd, "limit",
                 l);
  }
  return 0;
}
