/* Processes x pool threads: examples/threadpool-deflate (herd) and
 * bench/threadpool.js (Node's cluster with zlib.deflate, the same program)
 * under the same load, for N workers x M pool threads, and with the
 * compression on the loop (M = "loop": zlib.deflateSync in Node).
 *
 * Load, for each configuration and each server, from this process (one
 * libuv loop): HEAVY keep-alive connections that POST /deflate a 64 KiB
 * text body back to back, and one keep-alive connection that GETs / every
 * PROBE_MS (after the previous answer) and times each answer. After a warm-up,
 * RUN_S seconds are measured: heavy answers per second, and the light answers'
 * latency (median, 99th percentile). The servers are started fresh for every
 * run and stopped with SIGTERM.
 *
 *   threadpool [seconds [rounds]]   run the table, medians of `rounds`
 *                          (default 3 s, 3 rounds; needs `node` in PATH
 *                          and the example built next to this program)
 *
 * A RESULT line per figure; a Markdown table on stdout at the end. */
#include "bench.h"

#include <herd.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define HEAVY     8
#define BODY_LEN  (64 * 1024)
#define WARMUP_MS 500
#define PROBE_MS  5 /* pause between light requests */
#define MAX_LAT   200000

/* The same body as the test's: words from a small list. */
static char* make_body(size_t len) {
  static const char* const words[] = {"herd ", "node ",   "cluster ", "pool ",
                                      "loop ", "worker ", "deflate ", "uv "};
  char* b = malloc(len);
  uint32_t x = 12345;
  size_t n = 0;
  if (b == NULL)
    return NULL;
  while (n < len) {
    const char* w;
    x = x * 1103515245u + 12345u;
    w = words[(x >> 16) % 8];
    for (size_t i = 0; w[i] != '\0' && n < len; i++)
      b[n++] = w[i];
  }
  return b;
}

typedef struct load_s load_t;

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  load_t* load;
  int heavy;
  char* buf;
  size_t len, cap;
  uint64_t sent_at;
} conn_t;

struct load_s {
  uv_loop_t loop;
  uv_timer_t timer;
  uv_timer_t probe; /* paces the light requests */
  conn_t conns[HEAVY + 1];
  char heavy_head[128];
  size_t heavy_head_len;
  char* body;
  int phase; /* 0 warm-up, 1 measuring, 2 stopping */
  uint64_t t0, t1;
  long heavy_done;
  double* lat; /* ms */
  long nlat;
  int errors;
};

static void conn_send(conn_t* c);

static void on_close(uv_handle_t* h) {
  (void)h;
}

static void stop_all(load_t* l) {
  for (int i = 0; i <= HEAVY; i++)
    if (!uv_is_closing((uv_handle_t*)&l->conns[i].tcp))
      uv_close((uv_handle_t*)&l->conns[i].tcp, on_close);
  if (!uv_is_closing((uv_handle_t*)&l->timer))
    uv_close((uv_handle_t*)&l->timer, on_close);
  if (!uv_is_closing((uv_handle_t*)&l->probe))
    uv_close((uv_handle_t*)&l->probe, on_close);
}

static void on_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  conn_t* c = h->data;
  (void)size;
  if (c->cap - c->len < 65536) {
    c->cap = c->cap ? c->cap * 2 : 131072;
    c->buf = realloc(c->buf, c->cap);
  }
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len - 1));
}

/* A whole response in c->buf: its length, or 0 while incomplete. */
static size_t response_len(conn_t* c) {
  char* end;
  char* cl;
  c->buf[c->len] = '\0';
  end = strstr(c->buf, "\r\n\r\n");
  if (end == NULL)
    return 0;
  *end = '\0';
  cl = strcasestr(c->buf, "\r\ncontent-length:");
  *end = '\r';
  if (cl == NULL)
    return (size_t)-1;
  {
    size_t need = (size_t)(end + 4 - c->buf) + (size_t)atol(cl + 17);
    return c->len >= need ? need : 0;
  }
}

/* The light requests are a probe, not load: one every PROBE_MS after the
 * previous answer, so that the light connection measures how long a
 * request waits without keeping a loop (and a core) busy itself. */
static void on_probe(uv_timer_t* t) {
  load_t* l = t->data;
  conn_send(&l->conns[HEAVY]);
}

static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  conn_t* c = s->data;
  load_t* l = c->load;
  size_t n;
  (void)buf;
  if (nread < 0) {
    if (l->phase < 2)
      l->errors++;
    uv_close((uv_handle_t*)s, on_close);
    return;
  }
  c->len += (size_t)nread;
  n = response_len(c);
  if (n == 0)
    return;
  if (n == (size_t)-1 || strncmp(c->buf, "HTTP/1.1 200", 12) != 0) {
    l->errors++;
    uv_close((uv_handle_t*)s, on_close);
    return;
  }
  c->len = 0; /* one request at a time: nothing follows the response */
  if (l->phase == 1) {
    if (c->heavy)
      l->heavy_done++;
    else if (l->nlat < MAX_LAT)
      l->lat[l->nlat++] = (double)(uv_hrtime() - c->sent_at) / 1e6;
  }
  if (l->phase < 2 && c->heavy)
    conn_send(c);
  else if (l->phase < 2)
    uv_timer_start(&l->probe, on_probe, PROBE_MS, 0);
}

static void on_write(uv_write_t* w, int status) {
  conn_t* c = w->data;
  if (status != 0 && c->load->phase < 2)
    c->load->errors++;
}

static void conn_send(conn_t* c) {
  static char light[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  load_t* l = c->load;
  uv_buf_t bufs[2];
  c->sent_at = uv_hrtime();
  c->write.data = c;
  if (c->heavy) {
    bufs[0] = uv_buf_init(l->heavy_head, (unsigned)l->heavy_head_len);
    bufs[1] = uv_buf_init(l->body, BODY_LEN);
    uv_write(&c->write, (uv_stream_t*)&c->tcp, bufs, 2, on_write);
  } else {
    bufs[0] = uv_buf_init(light, sizeof(light) - 1);
    uv_write(&c->write, (uv_stream_t*)&c->tcp, bufs, 1, on_write);
  }
}

static void on_connect(uv_connect_t* req, int status) {
  conn_t* c = req->data;
  if (status != 0) {
    c->load->errors++;
    return;
  }
  uv_read_start((uv_stream_t*)&c->tcp, on_alloc, on_read);
  conn_send(c);
}

static void on_timer(uv_timer_t* t) {
  load_t* l = t->data;
  if (l->phase == 0) {
    l->phase = 1;
    l->t0 = uv_hrtime();
    return;
  }
  l->phase = 2;
  l->t1 = uv_hrtime();
  stop_all(l);
}

typedef struct {
  double heavy_rps;
  double p50, p99;
  int ok;
} figures_t;

static figures_t run_load(int port, char* body, int run_s) {
  load_t* l = calloc(1, sizeof(*l));
  struct sockaddr_in sa;
  figures_t f = {-1, -1, -1, 0};
  if (l == NULL)
    return f;
  l->body = body;
  l->lat = malloc(sizeof(double) * MAX_LAT);
  l->heavy_head_len = (size_t)snprintf(
      l->heavy_head, sizeof(l->heavy_head),
      "POST /deflate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n",
      BODY_LEN);
  uv_loop_init(&l->loop);
  uv_ip4_addr("127.0.0.1", port, &sa);
  for (int i = 0; i <= HEAVY; i++) {
    conn_t* c = &l->conns[i];
    c->load = l;
    c->heavy = i < HEAVY;
    uv_tcp_init(&l->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->connect.data = c;
    uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr*)&sa, on_connect);
  }
  uv_timer_init(&l->loop, &l->timer);
  l->timer.data = l;
  uv_timer_init(&l->loop, &l->probe);
  l->probe.data = l;
  uv_timer_start(&l->timer, on_timer, WARMUP_MS, (uint64_t)run_s * 1000);
  uv_run(&l->loop, UV_RUN_DEFAULT);
  uv_loop_close(&l->loop);
  if (l->errors == 0 && l->t1 > l->t0 && l->nlat > 0) {
    f.heavy_rps = (double)l->heavy_done / ((double)(l->t1 - l->t0) / 1e9);
    qsort(l->lat, (size_t)l->nlat, sizeof(double), bench__cmp);
    f.p50 = l->lat[l->nlat / 2];
    f.p99 = l->lat[(l->nlat * 99) / 100];
    f.ok = 1;
  } else {
    fprintf(stderr, "threadpool bench: %d errors, %ld light answers\n",
            l->errors, l->nlat);
  }
  for (int i = 0; i <= HEAVY; i++)
    free(l->conns[i].buf);
  free(l->lat);
  free(l);
  return f;
}

/* Starts a server (argv[0] is the program), reads "listening on port N"
 * from its stdout; returns its pid, or -1. */
static pid_t start_server(const char* const* argv, int* port) {
  int p[2];
  pid_t pid;
  char line[256];
  FILE* f;
  if (pipe(p) != 0)
    return -1;
  pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    execvp(argv[0], (char* const*)argv);
    _exit(127);
  }
  close(p[1]);
  f = fdopen(p[0], "r");
  *port = 0;
  alarm(20);
  if (f != NULL && fgets(line, sizeof(line), f) != NULL)
    sscanf(line, "listening on port %d", port);
  alarm(0);
  if (f != NULL)
    fclose(f);
  if (*port <= 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
  }
  return pid;
}

static void stop_server(pid_t pid) {
  int status;
  kill(pid, SIGTERM);
  for (int i = 0; i < 1000; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid)
      return;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
}

static void on_alarm(int signum) {
  (void)signum;
}

static figures_t measure(const char* prog, const char* script, int workers,
                         int threads, char* body, int run_s) {
  char w[16], t[16];
  const char* argv[12];
  int n = 0, port;
  pid_t pid;
  figures_t f = {-1, -1, -1, 0};
  snprintf(w, sizeof(w), "%d", workers);
  snprintf(t, sizeof(t), "%d", threads);
  argv[n++] = prog;
  if (script != NULL)
    argv[n++] = script;
  argv[n++] = "-p";
  argv[n++] = "0";
  argv[n++] = "-w";
  argv[n++] = w;
  if (threads > 0) {
    argv[n++] = "-t";
    argv[n++] = t;
  } else {
    argv[n++] = "--on-loop";
  }
  argv[n] = NULL;
  pid = start_server(argv, &port);
  if (pid < 0)
    return f;
  f = run_load(port, body, run_s);
  stop_server(pid);
  return f;
}

#define MAX_ROUNDS 9

static double median_of(figures_t* f, int n, int which) {
  double v[MAX_ROUNDS];
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (!f[i].ok)
      continue;
    v[k++] = which == 0 ? f[i].heavy_rps : which == 1 ? f[i].p50 : f[i].p99;
  }
  return k > 0 ? bench_median(v, k) : -1;
}

int main(int argc, char** argv) {
  static const int workers[] = {1, 2};
  static const int threads[] = {0, 1, 2, 4};
  char self[4096], example[4200], js[4200];
  int run_s = argc > 1 ? atoi(argv[1]) : 3;
  int rounds = argc > 2 ? atoi(argv[2]) : 3;
  static figures_t h[2][4][MAX_ROUNDS], nd[2][4][MAX_ROUNDS];
  static double table[2][4][6];
  char* body = make_body(BODY_LEN);
  ssize_t len;

  if (run_s < 1 || run_s > 30)
    run_s = 3;
  if (rounds < 1 || rounds > MAX_ROUNDS)
    rounds = 3;
  signal(SIGPIPE, SIG_IGN);
  {
    /* No SA_RESTART: the alarm must interrupt a read that waits for a
     * server that never starts. */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
  }
  len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len < 0 || body == NULL)
    return 1;
  self[len] = '\0';
  /* The example sits in ../examples of the build directory, the Node
   * program next to this source file. */
  snprintf(example, sizeof(example), "%s", self);
  {
    char* slash = strrchr(example, '/');
    if (slash != NULL)
      strcpy(slash, "/../examples/threadpool-deflate");
  }
  snprintf(js, sizeof(js), "%s", __FILE__);
  {
    char* slash = strrchr(js, '/');
    if (slash != NULL)
      strcpy(slash + 1, "threadpool.js");
  }
  if (access(example, X_OK) != 0) {
    fprintf(stderr, "threadpool bench: %s not built\n", example);
    return 1;
  }

  /* Rounds outermost, so that every configuration meets the machine's
   * background load at several moments; herd and Node back to back. */
  for (int r = 0; r < rounds; r++)
    for (int wi = 0; wi < 2; wi++)
      for (int ti = 0; ti < 4; ti++) {
        figures_t* a = &h[wi][ti][r];
        figures_t* b = &nd[wi][ti][r];
        *a = measure(example, NULL, workers[wi], threads[ti], body, run_s);
        *b = measure("node", js, workers[wi], threads[ti], body, run_s);
        fprintf(stderr,
                "round %d w%d t%d: deflate herd %.0f node %.0f req/s; light "
                "p50 herd %.2f node %.2f, p99 herd %.2f node %.2f ms\n",
                r + 1, workers[wi], threads[ti], a->heavy_rps, b->heavy_rps,
                a->p50, b->p50, a->p99, b->p99);
      }
  for (int wi = 0; wi < 2; wi++)
    for (int ti = 0; ti < 4; ti++) {
      static const char* const what[] = {"deflate", "light_p50", "light_p99"};
      char metric[64], pool[16];
      if (threads[ti] == 0)
        snprintf(pool, sizeof(pool), "loop");
      else
        snprintf(pool, sizeof(pool), "t%d", threads[ti]);
      for (int k = 0; k < 3; k++) {
        double hv = median_of(h[wi][ti], rounds, k);
        double nv = median_of(nd[wi][ti], rounds, k);
        table[wi][ti][2 * k] = hv;
        table[wi][ti][2 * k + 1] = nv;
        snprintf(metric, sizeof(metric), "%s_w%d_%s", what[k], workers[wi],
                 pool);
        bench_result("threadpool", metric, k == 0 ? "req/s" : "ms",
                     k == 0 ? "higher" : "lower", hv, 1, "node", nv);
      }
    }
  printf(
      "\n| workers | pool threads | deflate req/s herd | Node | light p50 ms "
      "herd | Node | light p99 ms herd | Node |\n"
      "|---:|---|---:|---:|---:|---:|---:|---:|\n");
  for (int wi = 0; wi < 2; wi++)
    for (int ti = 0; ti < 4; ti++) {
      double* t = table[wi][ti];
      char pool[32];
      if (threads[ti] == 0)
        snprintf(pool, sizeof(pool), "none (on the loop)");
      else
        snprintf(pool, sizeof(pool), "%d", threads[ti]);
      printf("| %d | %s | %.0f | %.0f | %.2f | %.2f | %.1f | %.1f |\n",
             workers[wi], pool, t[0], t[1], t[2], t[3], t[4], t[5]);
    }
  free(body);
  return 0;
}
