/* Blocking work on libuv's thread pool behind herd's HTTP server: a handler
 * that answers later, from a uv_queue_work() after-callback, leaves the loop
 * free for other requests; and examples/threadpool-deflate as a cluster. */
#include "internal.h"
#include "task.h"
#include "test-cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define BODY_LEN (64 * 1024)
#define LIGHTS   40
#define WAIT_MS  10000

/* A body that compresses well but not trivially: words from a small list. */
static char* make_body(size_t len) {
  static const char* const words[] = {"herd ", "node ",   "cluster ", "pool ",
                                      "loop ", "worker ", "deflate ", "uv "};
  char* b = malloc(len);
  uint32_t x = 12345;
  size_t n = 0;
  ASSERT(b != NULL);
  while (n < len) {
    const char* w;
    x = x * 1103515245u + 12345u;
    w = words[(x >> 16) % 8];
    for (size_t i = 0; w[i] != '\0' && n < len; i++)
      b[n++] = w[i];
  }
  return b;
}

static int connect_to(int port) {
  struct sockaddr_in sin;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, (struct sockaddr*)&sin, sizeof(sin)), 0);
  return fd;
}

static void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    ASSERT(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

/* Sends POST /deflate with `body` (Connection: close) on a new connection;
 * returns the fd to read the answer from. */
static int post_deflate(int port, const char* body, size_t len) {
  char head[256];
  int fd = connect_to(port);
  int n = snprintf(head, sizeof(head),
                   "POST /deflate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: close\r\nContent-Length: %zu\r\n\r\n",
                   len);
  write_all(fd, head, (size_t)n);
  write_all(fd, body, len);
  return fd;
}

/* Reads the whole answer on `fd` (until EOF, `ms` at most), checks it is
 * 200 with a zlib stream of `body`, and closes fd. */
static void check_deflated(int fd, const char* body, size_t len, int ms) {
  size_t cap = compressBound(len) + 4096, n = 0;
  char* buf = malloc(cap);
  char* out = malloc(len + 1);
  uint64_t deadline = tc_now_ms() + (uint64_t)ms;
  const char* sep;
  uLongf out_len = len + 1;
  int status = 0;

  ASSERT(buf != NULL && out != NULL);
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    uint64_t now = tc_now_ms();
    ssize_t r;
    if (now >= deadline)
      FATAL("no complete answer to POST /deflate within %d ms", ms);
    if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
      continue;
    ASSERT(n < cap);
    r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    ASSERT(r >= 0);
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  ASSERT(n > 12);
  ASSERT_EQ(sscanf(buf, "HTTP/1.1 %d", &status), 1);
  ASSERT_EQ(status, 200);
  sep = memmem(buf, n, "\r\n\r\n", 4);
  ASSERT(sep != NULL);
  sep += 4;
  ASSERT_EQ(uncompress((Bytef*)out, &out_len, (const Bytef*)sep,
                       (uLong)(buf + n - sep)),
            Z_OK);
  ASSERT_EQ(out_len, len);
  ASSERT(memcmp(out, body, len) == 0);
  free(buf);
  free(out);
}

/* A flag one thread raises and another waits for, with a deadline. */
typedef struct {
  uv_mutex_t mutex;
  uv_cond_t cond;
  int raised;
} flag_t;

static void flag_init(flag_t* f) {
  ASSERT_OK(uv_mutex_init(&f->mutex));
  ASSERT_OK(uv_cond_init(&f->cond));
  f->raised = 0;
}

static void flag_destroy(flag_t* f) {
  uv_cond_destroy(&f->cond);
  uv_mutex_destroy(&f->mutex);
}

static void flag_raise(flag_t* f) {
  uv_mutex_lock(&f->mutex);
  f->raised = 1;
  uv_cond_signal(&f->cond);
  uv_mutex_unlock(&f->mutex);
}

/* 1 once raised, 0 when `ms` passed first. */
static int flag_wait(flag_t* f, int ms) {
  uint64_t deadline = uv_hrtime() + (uint64_t)ms * 1000000;
  int raised;
  uv_mutex_lock(&f->mutex);
  while (!f->raised) {
    uint64_t now = uv_hrtime();
    if (now >= deadline ||
        uv_cond_timedwait(&f->cond, &f->mutex, deadline - now) == UV_ETIMEDOUT)
      break;
  }
  raised = f->raised;
  uv_mutex_unlock(&f->mutex);
  return raised;
}

/* The order in which things happened, one letter each: S the pool job has
 * compressed the body and waits at the gate, L a light request answered, G
 * the gate opened, H the heavy request answered. */
typedef struct {
  uv_loop_t loop;
  herd_http_server_t server;
  int port;
  uv_thread_t loop_thread;
  uv_thread_t client;
  uv_async_t client_done;
  flag_t started; /* the pool job waits at the gate */
  flag_t gate;    /* the loop lets the pool job finish */
  uv_mutex_t events_mutex;
  char events[LIGHTS + 8];
  int nevents;
  int lights;
  int pool_on_loop_thread;
  char* body;
  struct {
    uv_work_t work;
    herd_http_req_t* req;
    unsigned char* out;
    uLongf out_len;
    int gate_ok;
  } job;
} pool_test_t;

static pool_test_t pt;

static void event(char what) {
  uv_mutex_lock(&pt.events_mutex);
  ASSERT((size_t)pt.nevents < sizeof(pt.events) - 1);
  pt.events[pt.nevents++] = what;
  uv_mutex_unlock(&pt.events_mutex);
}

static void heavy_work(uv_work_t* work) {
  herd_http_req_t* req = pt.job.req;
  uv_thread_t self = uv_thread_self();
  (void)work;
  pt.pool_on_loop_thread = uv_thread_equal(&self, &pt.loop_thread);
  pt.job.out_len = compressBound((uLong)req->body_len);
  pt.job.out = malloc(pt.job.out_len);
  ASSERT(pt.job.out != NULL);
  ASSERT_EQ(compress2(pt.job.out, &pt.job.out_len, (const Bytef*)req->body,
                      (uLong)req->body_len, Z_DEFAULT_COMPRESSION),
            Z_OK);
  /* Still "running" as far as the loop knows: it must serve every light
   * request before it lets this job end. */
  event('S');
  flag_raise(&pt.started);
  pt.job.gate_ok = flag_wait(&pt.gate, WAIT_MS);
}

static void heavy_done(uv_work_t* work, int status) {
  (void)work;
  ASSERT_OK(status);
  ASSERT(pt.job.gate_ok);
  event('H');
  ASSERT_OK(herd_http_respond(pt.job.req, 200, "application/octet-stream",
                              pt.job.out, pt.job.out_len));
  free(pt.job.out);
}

static void pool_handler(herd_http_req_t* req) {
  if (strcmp(req->method, "POST") == 0) {
    ASSERT(pt.job.req == NULL);
    ASSERT_EQ(req->body_len, BODY_LEN);
    pt.job.req = req;
    ASSERT_OK(uv_queue_work(&pt.loop, &pt.job.work, heavy_work, heavy_done));
    return;
  }
  event('L');
  ASSERT_OK(herd_http_respond(req, 200, "text/plain", "light", 5));
  if (++pt.lights == LIGHTS) {
    event('G');
    flag_raise(&pt.gate);
  }
}

static void pool_client(void* arg) {
  char body[64];
  int heavy_fd;
  (void)arg;
  heavy_fd = post_deflate(pt.port, pt.body, BODY_LEN);
  if (!flag_wait(&pt.started, WAIT_MS))
    FATAL("the pool job did not start within %d ms", WAIT_MS);
  for (int i = 0; i < LIGHTS; i++) {
    struct pollfd pfd = {heavy_fd, POLLIN, 0};
    /* The heavy answer cannot be there yet: its job waits at the gate. */
    ASSERT_EQ(poll(&pfd, 1, 0), 0);
    if (tc_http_get(pt.port, body, sizeof(body), WAIT_MS) != 200)
      FATAL("light request %d not answered while the pool job ran", i);
    ASSERT_STR_EQ(body, "light");
  }
  check_deflated(heavy_fd, pt.body, BODY_LEN, WAIT_MS);
  uv_async_send(&pt.client_done);
}

static void pool_server_closed(herd_http_server_t* server) {
  (void)server;
  uv_close((uv_handle_t*)&pt.client_done, NULL);
}

static void pool_client_done(uv_async_t* async) {
  (void)async;
  herd_http_server_close(&pt.server, pool_server_closed);
}

/* One process, one loop: while a request's compression runs on the pool
 * (and is held there until the loop has answered LIGHTS other requests),
 * the light requests are answered; a loop blocked by the work would never
 * open the gate and the light requests would time out. */
TEST_IMPL(threadpool_loop_responsive) {
  memset(&pt, 0, sizeof(pt));
  pt.body = make_body(BODY_LEN);
  pt.loop_thread = uv_thread_self();
  flag_init(&pt.started);
  flag_init(&pt.gate);
  ASSERT_OK(uv_mutex_init(&pt.events_mutex));
  ASSERT_OK(uv_loop_init(&pt.loop));
  ASSERT_OK(herd_http_server_init(&pt.loop, &pt.server, pool_handler, NULL));
  ASSERT_OK(herd_http_server_listen(&pt.server, "127.0.0.1", 0, 0));
  pt.port = herd_http_server_port(&pt.server);
  ASSERT(pt.port > 0);
  ASSERT_OK(uv_async_init(&pt.loop, &pt.client_done, pool_client_done));
  ASSERT_OK(uv_thread_create(&pt.client, pool_client, NULL));
  ASSERT_OK(uv_run(&pt.loop, UV_RUN_DEFAULT));
  ASSERT_OK(uv_thread_join(&pt.client));
  test_loop_close(&pt.loop);

  ASSERT(!pt.pool_on_loop_thread);
  pt.events[pt.nevents] = '\0';
  {
    char want[LIGHTS + 8];
    want[0] = 'S';
    memset(want + 1, 'L', LIGHTS);
    memcpy(want + 1 + LIGHTS, "GH", 3);
    ASSERT_STR_EQ(pt.events, want);
  }
  uv_mutex_destroy(&pt.events_mutex);
  flag_destroy(&pt.started);
  flag_destroy(&pt.gate);
  free(pt.body);
  return 0;
}

/* examples/threadpool-deflate as a cluster of 2 workers with 2 pool threads
 * each, compressing on the pool and then on the loop: concurrent POSTs are
 * answered with the right zlib streams, other requests by both workers;
 * SIGTERM ends it gracefully (exit 0). */
typedef struct {
  herd_child_t child;
  char out[512];
  size_t out_len;
  int port;
  int closed;
  char* body;
} example_t;

static example_t ex;

static void example_client(void* arg) {
  enum { HEAVY = 6 };
  int fds[HEAVY];
  char body[64];
  (void)arg;
  for (int i = 0; i < HEAVY; i++)
    fds[i] = post_deflate(ex.port, ex.body, BODY_LEN);
  for (int i = 0; i < 8; i++) {
    ASSERT_EQ(tc_http_get(ex.port, body, sizeof(body), WAIT_MS), 200);
    ASSERT(strcmp(body, "ok 1\n") == 0 || strcmp(body, "ok 2\n") == 0);
  }
  for (int i = 0; i < HEAVY; i++)
    check_deflated(fds[i], ex.body, BODY_LEN, WAIT_MS);
}

static void example_client_done(void* arg) {
  (void)arg;
  ASSERT_OK(herd_child_kill(&ex.child, SIGTERM));
}

static void example_read(herd_child_t* child, int fd, const char* buf,
                         ssize_t nread) {
  ASSERT_EQ(fd, 1);
  if (nread <= 0 || ex.port > 0)
    return;
  ASSERT(ex.out_len + (size_t)nread < sizeof(ex.out));
  memcpy(ex.out + ex.out_len, buf, (size_t)nread);
  ex.out_len += (size_t)nread;
  ex.out[ex.out_len] = '\0';
  if (strchr(ex.out, '\n') != NULL) {
    ASSERT_EQ(sscanf(ex.out, "listening on port %d", &ex.port), 1);
    ASSERT(ex.port > 0);
    tc_job_start(child->loop, example_client, example_client_done, NULL);
  }
}

static void example_closed(herd_child_t* child) {
  (void)child;
  ex.closed = 1;
}

static void run_example(int on_loop) {
  uv_loop_t loop;
  char exe[1024];
  const char* args[] = {"-p", "0", "-w", "2", "-t", "2", NULL, NULL};
  herd_stdio_t stdio[3] = {
      {HERD_STDIO_IGNORE, 0}, {HERD_STDIO_PIPE, 0}, {HERD_STDIO_INHERIT, 0}};
  herd_spawn_options_t opts;

  memset(&ex, 0, sizeof(ex));
  memset(&opts, 0, sizeof(opts));
  if (on_loop)
    args[6] = "--on-loop";
  ex.body = make_body(BODY_LEN);
  snprintf(exe, sizeof(exe), "%s/examples/threadpool-deflate",
           test_binary_dir());
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.close_cb = example_closed;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_spawn(&loop, &ex.child, exe, args, &opts));
  ASSERT_OK(herd_child_read_start(&ex.child, 1, example_read));
  test_loop_run_close(&loop);
  ASSERT(ex.port > 0);
  ASSERT(ex.closed);
  ASSERT_EQ(ex.child.exit_status, 0);
  ASSERT_EQ(ex.child.term_signal, 0);
  ASSERT(strstr(ex.out, on_loop ? "on the loop" : "on the pool") != NULL);
  free(ex.body);
}

TEST_IMPL(threadpool_example) {
  run_example(0);
  run_example(1);
  return 0;
}
