/* What messages built and read with the jansson companion (herd-jansson)
 * cost, against herd_ipc_send() of ready text and against Node.
 *
 * The message is a typical nested one:
 *   {"cmd":"notifyRequest","i":N,"worker":{"id":2,"pid":4242},
 *    "path":"/api/items?page=3","ok":true,"ms":0.25,"tags":["a","b"]}
 *
 * One-way over a channel (a herd child sends, this process receives), in
 * several rounds, the median of each reported:
 * - ready: the child sends the ready text with herd_ipc_send(), the parent
 *   counts messages (what herd alone costs);
 * - build: the child builds each message with json_pack() and sends it with
 *   herd_jansson_ipc_send_new(), the parent counts;
 * - parse: the child sends ready text, the parent parses each message with
 *   herd_jansson_parse() and reads i and worker.id from it;
 * - both: build and parse, which is what Node does on both sides
 *   (process.send() of a fresh object, JSON.parse() before 'message');
 * - node: bench/json.js, node<->node, the same object.
 * And the CPU cost of one message in this process, without a channel:
 * json_pack() + json_dumpb(), herd_jansson_parse() + reading two fields,
 * and, for scale, herd's own scanner reading "i" (herd_json_get_int()).
 *
 *   json [rounds]            run the benchmark (needs `node` in PATH)
 *   json child MODE N        the herd child (ready or build) */
#include "bench.h"

#include <herd-jansson.h>

#include <signal.h>
#include <unistd.h>

#define CHANNEL_N 200000
#define NODE_N    100000
#define CPU_N     200000

static const char ready_text[] =
    "{\"cmd\":\"notifyRequest\",\"i\":123456,\"worker\":{\"id\":2,\"pid\":4242}"
    ","
    "\"path\":\"/api/items?page=3\",\"ok\":true,\"ms\":0.25,\"tags\":[\"a\","
    "\"b\"]}";

static json_t* build(long i) {
  return json_pack("{s:s, s:I, s:{s:i, s:i}, s:s, s:b, s:f, s:[s, s]}", "cmd",
                   "notifyRequest", "i", (json_int_t)i, "worker", "id", 2,
                   "pid", 4242, "path", "/api/items?page=3", "ok", 1, "ms",
                   0.25, "tags", "a", "b");
}

/* Reads what a receiver would: two numbers, one of them nested. */
static int read_fields(const char* json, size_t len, long* sum) {
  json_t* v;
  if (herd_jansson_parse(json, len, &v, NULL) != 0)
    return -1;
  *sum += (long)json_integer_value(json_object_get(v, "i"));
  *sum += (long)json_integer_value(
      json_object_get(json_object_get(v, "worker"), "id"));
  json_decref(v);
  return 0;
}

/* Every run is bounded in time (see bench/ipc.c). */
#define RUN_TIMEOUT_S 60
static volatile sig_atomic_t watched_pid;
static volatile sig_atomic_t timed_out;

static void on_alarm(int signum) {
  static const char msg[] = "json bench: a run took too long, stopping it\n";
  pid_t pid = watched_pid;
  (void)signum;
  timed_out = 1;
  if (pid > 0)
    kill(pid, SIGKILL);
  if (write(2, msg, sizeof(msg) - 1) < 0)
    return;
}

/* The herd child: sends n messages, ready or built, honouring the
 * high-water mark. */
typedef struct {
  long n;
  long sent;
  int build;
} child_t;

static void child_send(herd_ipc_t* ipc) {
  child_t* c = ipc->data;
  while (c->sent < c->n) {
    int r = c->build ? herd_jansson_ipc_send_new(ipc, build(c->sent))
                     : herd_ipc_send(ipc, ready_text, sizeof(ready_text) - 1);
    if (r < 0) {
      herd_ipc_disconnect(ipc);
      return;
    }
    c->sent++;
    if (r == 1)
      return;
  }
}

static int child_main(const char* mode, long n) {
  uv_loop_t loop;
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.drain = child_send};
  child_t c = {n, 0, strcmp(mode, "build") == 0};
  uv_loop_init(&loop);
  if (herd_ipc_open_parent(&loop, &ipc) != 0)
    return 1;
  ipc.data = &c;
  herd_ipc_start(&ipc, &cbs);
  child_send(&ipc);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}

/* The parent: receives n messages, counting or parsing each. */
typedef struct {
  herd_child_t child;
  long n;
  long got;
  long sum;
  int parse;
  int bad;
  double t0, t1;
} run_t;

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  run_t* r = ipc->data;
  (void)handle;
  if (r->got == 0)
    r->t0 = bench_now();
  if (r->parse && read_fields(json, len, &r->sum) != 0)
    r->bad++;
  if (++r->got == r->n) {
    r->t1 = bench_now();
    herd_ipc_disconnect(ipc);
  }
}

static void child_closed(herd_child_t* child) {
  (void)child;
  watched_pid = 0;
}

static char self_path[4096];
static char js_path[4200];

/* One channel run: `send` is the child's mode (ready or build). */
static double run_herd(const char* send, int parse, long n) {
  uv_loop_t loop;
  run_t r;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.message = on_message};
  char nbuf[32];
  const char* args[] = {"child", send, nbuf, NULL};

  memset(&r, 0, sizeof(r));
  memset(&opts, 0, sizeof(opts));
  r.n = n;
  r.parse = parse;
  snprintf(nbuf, sizeof(nbuf), "%ld", n);
  opts.spawn.close_cb = child_closed;
  uv_loop_init(&loop);
  if (herd_fork(&loop, &r.child, self_path, args, &opts) != 0)
    return -1;
  timed_out = 0;
  watched_pid = r.child.pid;
  alarm(RUN_TIMEOUT_S);
  r.child.channel->data = &r;
  herd_ipc_start(r.child.channel, &cbs);
  uv_run(&loop, UV_RUN_DEFAULT);
  alarm(0);
  watched_pid = 0;
  uv_loop_close(&loop);
  if (r.got != n || r.bad != 0 || timed_out || r.t1 <= r.t0)
    return -1;
  return (double)(n - 1) / (r.t1 - r.t0);
}

/* node bench/json.js N prints "value X" (msg/s). */
static double run_node(long n) {
  char cmd[8400];
  char line[256];
  double v = -1;
  FILE* f;
  snprintf(cmd, sizeof(cmd), "timeout 60 node %s %ld", js_path, n);
  f = popen(cmd, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "value ", 6) == 0)
      v = atof(line + 6);
  if (pclose(f) != 0)
    return -1;
  return v;
}

/* Nanoseconds per message for one CPU-only step. */
static double cpu_build(long n) {
  char buf[512];
  size_t total = 0;
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    json_t* v = build(i);
    total += json_dumpb(v, buf, sizeof(buf), JSON_COMPACT);
    json_decref(v);
  }
  return total > 0 ? (bench_now() - t0) / (double)n * 1e9 : -1;
}

static double cpu_parse(long n) {
  long sum = 0;
  double t0 = bench_now();
  for (long i = 0; i < n; i++)
    if (read_fields(ready_text, sizeof(ready_text) - 1, &sum) != 0)
      return -1;
  return sum > 0 ? (bench_now() - t0) / (double)n * 1e9 : -1;
}

static double cpu_scanner(long n) {
  int64_t v, sum = 0;
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    if (herd_json_get_int(ready_text, sizeof(ready_text) - 1, "i", &v) != 0)
      return -1;
    sum += v;
  }
  return sum > 0 ? (bench_now() - t0) / (double)n * 1e9 : -1;
}

int main(int argc, char** argv) {
  int rounds = 5;
  ssize_t len;
  double ready[16], built[16], parsed[16], both[16], node[16];
  double cb[16], cp[16], cs[16];

  if (argc >= 4 && strcmp(argv[1], "child") == 0)
    return child_main(argv[2], atol(argv[3]));
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  if (argc >= 2)
    rounds = atoi(argv[1]);
  if (rounds < 1 || rounds > 16)
    rounds = 5;
  len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
  if (len < 0)
    return 1;
  self_path[len] = '\0';
  /* bench/json.js sits next to this source file. */
  snprintf(js_path, sizeof(js_path), "%s", __FILE__);
  {
    char* slash = strrchr(js_path, '/');
    if (slash != NULL)
      strcpy(slash + 1, "json.js");
  }

  for (int i = 0; i < rounds; i++) {
    ready[i] = run_herd("ready", 0, CHANNEL_N);
    built[i] = run_herd("build", 0, CHANNEL_N);
    parsed[i] = run_herd("ready", 1, CHANNEL_N);
    both[i] = run_herd("build", 1, CHANNEL_N);
    node[i] = run_node(NODE_N);
    cb[i] = cpu_build(CPU_N);
    cp[i] = cpu_parse(CPU_N);
    cs[i] = cpu_scanner(CPU_N);
    fprintf(stderr,
            "round %d: ready %.0f build %.0f parse %.0f both %.0f node %.0f "
            "msg/s; build %.0f parse %.0f scanner %.0f ns\n",
            i + 1, ready[i], built[i], parsed[i], both[i], node[i], cb[i],
            cp[i], cs[i]);
  }
  bench_result("json", "oneway_build_send", "msg/s", "higher",
               bench_median(built, rounds), 2, "ready",
               bench_median(ready, rounds), "node", bench_median(node, rounds));
  bench_result("json", "oneway_parse", "msg/s", "higher",
               bench_median(parsed, rounds), 2, "ready",
               bench_median(ready, rounds), "node", bench_median(node, rounds));
  bench_result("json", "oneway_build_parse", "msg/s", "higher",
               bench_median(both, rounds), 2, "ready",
               bench_median(ready, rounds), "node", bench_median(node, rounds));
  bench_result("json", "build_dump_cpu", "ns/msg", "lower",
               bench_median(cb, rounds), 0);
  bench_result("json", "parse_read_cpu", "ns/msg", "lower",
               bench_median(cp, rounds), 1, "scanner_get_int",
               bench_median(cs, rounds));
  return 0;
}
