/* The herd command: flags, errors, and `herd demo` under load, at shutdown,
 * with a crashing worker and with a killed primary. */
#include "test-cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static char herd_path[1024];

static const char* herd_exe(void) {
  snprintf(herd_path, sizeof(herd_path), "%s/herd", test_binary_dir());
  ASSERT(access(herd_path, X_OK) == 0);
  return herd_path;
}

/* Runs herd with `args` to completion (10 s at most). */
static void run_herd(const char* const* args, herd_sync_result_t* r) {
  herd_spawn_sync_options_t o;
  memset(&o, 0, sizeof(o));
  o.timeout = 10000;
  o.kill_signal = SIGKILL;
  herd_spawn_sync(herd_exe(), args, &o, r);
  ASSERT(r->error == 0 || r->error == HERD_ECMDFAILED);
}

TEST_IMPL(cli_help_version) {
  herd_sync_result_t r;
  const char* help[] = {"--help", NULL};
  const char* version[] = {"--version", NULL};
  const char* none[] = {NULL};
  const char* bogus[] = {"serve", NULL};

  run_herd(help, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT(strstr(r.out, "usage: herd demo") != NULL);
  herd_sync_result_free(&r);
  run_herd(version, &r);
  ASSERT_EQ(r.status, 0);
  ASSERT_STR_EQ(r.out, "herd " HERD_VERSION_STRING "\n");
  herd_sync_result_free(&r);
  run_herd(none, &r);
  ASSERT_EQ(r.status, 2);
  ASSERT(strstr(r.err, "usage:") != NULL);
  herd_sync_result_free(&r);
  run_herd(bogus, &r);
  ASSERT_EQ(r.status, 2);
  ASSERT(strstr(r.err, "'serve'") != NULL);
  herd_sync_result_free(&r);
  return 0;
}

TEST_IMPL(cli_demo_bad_flags) {
  static const char* cases[][4] = {
      {"demo", "--workers", "0", NULL},   {"demo", "--workers", "x", NULL},
      {"demo", "--policy", "fair", NULL}, {"demo", "--policy", "none", NULL},
      {"demo", "--port", "70000", NULL},  {"demo", "--port", "80a", NULL},
      {"demo", "--bogus", "1", NULL},     {"demo", "--port", NULL, NULL},
      {"demo", "extra", NULL, NULL},      {"demo", "--port=-1", NULL, NULL},
  };
  for (size_t i = 0; i < (sizeof(cases) / sizeof(cases[0])); i++) {
    herd_sync_result_t r;
    run_herd(cases[i], &r);
    if (r.status != 2)
      FATAL("case %zu: status %lld, stderr: %s", i, (long long)r.status, r.err);
    ASSERT(strstr(r.err, "herd: ") != NULL);
    ASSERT(strstr(r.err, "usage: herd demo") != NULL);
    ASSERT_EQ(r.out_len, 0);
    herd_sync_result_free(&r);
  }
  return 0;
}

static int listen_on(int port) {
  struct sockaddr_in sin;
  int on = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)), 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr*)&sin, sizeof(sin)) != 0 ||
      listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST_IMPL(cli_demo_port_in_use) {
  const char* policies[] = {"rr", "shared", "reuseport"};
  int fd = listen_on(0);
  int port;
  char want[128], sport[16];
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  ASSERT(fd >= 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr*)&sin, &len), 0);
  port = ntohs(sin.sin_port);
  snprintf(sport, sizeof(sport), "%d", port);
  snprintf(want, sizeof(want),
           "herd: cannot listen on 127.0.0.1:%d: address already in use", port);
  for (size_t i = 0; i < (sizeof(policies) / sizeof(policies[0])); i++) {
    const char* args[] = {"demo", "--port",   sport,       "--workers",
                          "1",    "--policy", policies[i], NULL};
    herd_sync_result_t r;
    run_herd(args, &r);
    ASSERT_EQ(r.status, 1);
    if (strstr(r.err, want) == NULL)
      FATAL("stderr: %s", r.err);
    herd_sync_result_free(&r);
  }
  close(fd);
  return 0;
}

/* A running `herd demo`. */
typedef struct {
  uv_loop_t loop;
  herd_child_t child;
  char out_path[64];
  char err_path[64];
  int port;
  int closed;
  int got; /* responses this test received outside ab */
} demo_t;

static void demo_closed(herd_child_t* child) {
  demo_t* d = child->data;
  d->closed = 1;
}

/* Waits up to ms for the demo's stdout to contain `text`; returns a copy
 * of the output (free it), or NULL. */
static char* demo_wait_output(demo_t* d, const char* text, int ms) {
  uint64_t deadline = tc_now_ms() + (uint64_t)ms;
  for (;;) {
    char* out;
    uv_run(&d->loop, UV_RUN_NOWAIT);
    out = test_read_file(d->out_path, NULL);
    if (out != NULL && strstr(out, text) != NULL)
      return out;
    free(out);
    if (d->closed || tc_now_ms() > deadline)
      return NULL;
    test_sleep_ms(10);
  }
}

static void demo_start(demo_t* d, const char* policy, const char* workers) {
  herd_spawn_options_t o;
  herd_stdio_t stdio[3];
  int out, err;
  char* text;
  const char* url;
  /* Port 0: the demo prints the port it got. */
  const char* args[] = {"demo",  "--port",   "0",    "--workers",
                        workers, "--policy", policy, NULL};

  memset(d, 0, sizeof(*d));
  ASSERT_OK(uv_loop_init(&d->loop));
  strcpy(d->out_path, "/tmp/herd-demo-out-XXXXXX");
  strcpy(d->err_path, "/tmp/herd-demo-err-XXXXXX");
  out = mkostemp(d->out_path, O_CLOEXEC);
  err = mkostemp(d->err_path, O_CLOEXEC);
  ASSERT(out >= 0 && err >= 0);
  memset(&o, 0, sizeof(o));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_FD;
  stdio[1].fd = out;
  stdio[2].kind = HERD_STDIO_FD;
  stdio[2].fd = err;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.close_cb = demo_closed;
  d->child.data = d;
  ASSERT_OK(herd_spawn(&d->loop, &d->child, herd_exe(), args, &o));
  close(out);
  close(err);
  ASSERT(d->child.pid > 0);

  text = demo_wait_output(d, "/ ", 10000);
  if (text == NULL)
    FATAL("the demo did not say where it listens");
  url = strstr(text, "http://127.0.0.1:");
  ASSERT(url != NULL);
  d->port = atoi(url + strlen("http://127.0.0.1:"));
  ASSERT(d->port > 0);
  free(text);

  /* Ready once a worker answers (that answer counts as a request). Under
   * shared the port accepts connections only once a worker listens, so
   * connecting is retried until then; a request that was sent is never
   * sent again (it could be served and counted twice), it gets one
   * generous deadline instead. */
  {
    uint64_t deadline = tc_now_ms() + 20000;
    char body[32];
    int fd;
    while ((fd = tc_http_send(d->port)) < 0) {
      uv_run(&d->loop, UV_RUN_NOWAIT);
      ASSERT(!d->closed);
      ASSERT(tc_now_ms() < deadline);
      poll(NULL, 0, 10);
    }
    ASSERT_EQ(tc_http_recv(fd, body, sizeof(body), 20000), 200);
    ASSERT_STR_EQ(body, "123123\n");
    d->got++;
  }
}

/* The workers of the demo, once `n` are up. */
static int demo_workers(demo_t* d, int* pids, int n) {
  uint64_t deadline = tc_now_ms() + 10000;
  while (tc_now_ms() < deadline) {
    if (tc_children(d->child.pid, pids, n) == n)
      return n;
    test_sleep_ms(10);
  }
  FATAL("the demo does not have %d workers", n);
  return 0;
}

/* SIGINT, then waits for the demo to exit; returns the printed total. */
static long long demo_stop(demo_t* d, int sig) {
  char* out;
  char* err;
  const char* t;
  long long total = -1;

  ASSERT_OK(herd_child_kill(&d->child, sig));
  uv_run(&d->loop, UV_RUN_DEFAULT);
  ASSERT(d->closed);
  test_loop_close(&d->loop);
  out = test_read_file(d->out_path, NULL);
  err = test_read_file(d->err_path, NULL);
  ASSERT(out != NULL && err != NULL);
  unlink(d->out_path);
  unlink(d->err_path);
  if (d->child.term_signal != 0 || d->child.exit_status != 0)
    FATAL("demo: status %lld signal %d\nstdout: %s\nstderr: %s",
          (long long)d->child.exit_status, d->child.term_signal, out, err);
  t = strstr(out, "total requests = ");
  if (t == NULL || sscanf(t, "total requests = %lld", &total) != 1)
    FATAL("no total in: %s", out);
  free(out);
  free(err);
  return total;
}

static long long ab_field(const char* out, const char* name) {
  const char* p = strstr(out, name);
  long long v;
  if (p == NULL || sscanf(p + strlen(name), " %lld", &v) != 1)
    FATAL("ab output without '%s': %s", name, out);
  return v;
}

/* ab -n 20000 -c 32 -k, then SIGINT: the demo's total must be exactly the
 * responses ab (and the readiness probe) received. */
static void run_demo_ab(const char* policy) {
  demo_t d;
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  char url[64];
  int pids[2];
  long long complete, total;
  const char* args[] = {"-q", "-n", "20000", "-c", "32", "-k", url, NULL};

  demo_start(&d, policy, "2");
  demo_workers(&d, pids, 2);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", d.port);
  memset(&o, 0, sizeof(o));
  o.timeout = 60000;
  ASSERT_OK(herd_spawn_sync("ab", args, &o, &r));
  ASSERT_EQ(r.status, 0);
  complete = ab_field(r.out, "Complete requests:");
  ASSERT_EQ(complete, 20000);
  ASSERT_EQ(ab_field(r.out, "Failed requests:"), 0);
  herd_sync_result_free(&r);

  total = demo_stop(&d, SIGINT);
  ASSERT_EQ(total, complete + d.got);
  /* Nothing left behind: the workers were reaped by the demo. */
  for (int i = 0; i < 2; i++)
    ASSERT_EQ(tc_proc_state(pids[i]), 0);
}

TEST_IMPL(cli_demo_ab_rr) {
  run_demo_ab("rr");
  return 0;
}

TEST_IMPL(cli_demo_ab_shared) {
  run_demo_ab("shared");
  return 0;
}

TEST_IMPL(cli_demo_ab_reuseport) {
  run_demo_ab("reuseport");
  return 0;
}

/* A primary that falls behind must not lose counts: with the primary
 * stopped, a worker serving 250,000 keep-alive requests queues far more
 * notifies than the channel's socket buffer and high-water mark hold
 * (herd_ipc_send() then returns 1: queued, above the mark). After SIGCONT
 * every one of them must arrive. */
TEST_IMPL(cli_demo_primary_stalled) {
  demo_t d;
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  char url[64];
  long long complete, total;
  const char* args[] = {"-q", "-n", "250000", "-c", "8", "-k", url, NULL};

  demo_start(&d, "reuseport", "1");
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", d.port);
  ASSERT_EQ(kill(d.child.pid, SIGSTOP), 0);
  memset(&o, 0, sizeof(o));
  o.timeout = 60000;
  ASSERT_OK(herd_spawn_sync("ab", args, &o, &r));
  ASSERT_EQ(kill(d.child.pid, SIGCONT), 0);
  ASSERT_EQ(r.status, 0);
  complete = ab_field(r.out, "Complete requests:");
  ASSERT_EQ(complete, 250000);
  ASSERT_EQ(ab_field(r.out, "Failed requests:"), 0);
  herd_sync_result_free(&r);
  total = demo_stop(&d, SIGINT);
  ASSERT_EQ(total, complete + d.got);
  return 0;
}

/* SIGTERM stops the demo as SIGINT does; "requests = N" comes every
 * second. */
TEST_IMPL(cli_demo_sigterm) {
  demo_t d;
  char* out;
  demo_start(&d, "rr", "1");
  /* The count comes every second: wait for it, with a deadline. */
  out = demo_wait_output(&d, "requests = 1\n", 5000);
  ASSERT(out != NULL);
  free(out);
  ASSERT_EQ(demo_stop(&d, SIGTERM), 1);
  return 0;
}

/* A worker killed under load is replaced, and serving goes on. The client
 * makes one request at a time and is held between two while the worker is
 * killed, so that no request of its is in the victim's hands: under rr not
 * one may fail (a connection the primary handed the victim goes to the
 * other worker). */
typedef struct {
  demo_t* d;
  int ok;
  int failed;
  volatile int stop;
  volatile int hold;
  volatile int held;
} load_t;

static void load_thread(void* arg) {
  load_t* l = arg;
  char body[32];
  while (!l->stop) {
    if (l->hold) {
      l->held = 1;
      test_sleep_ms(1);
      continue;
    }
    l->held = 0;
    if (tc_http_get(l->d->port, body, sizeof(body), 3000) == 200)
      __atomic_add_fetch(&l->ok, 1, __ATOMIC_SEQ_CST);
    else
      __atomic_add_fetch(&l->failed, 1, __ATOMIC_SEQ_CST);
  }
}

/* Runs the demo's loop until `*counter` reaches `n` (10 s at most). */
static void wait_count(demo_t* d, int* counter, int n) {
  uint64_t deadline = tc_now_ms() + 10000;
  while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < n) {
    uv_run(&d->loop, UV_RUN_NOWAIT);
    if (tc_now_ms() > deadline)
      FATAL("%d of %d requests answered in 10 s", *counter, n);
    test_sleep_ms(5);
  }
}

TEST_IMPL(cli_demo_worker_respawn) {
  demo_t d;
  load_t l;
  uv_thread_t thread;
  int pids[2], now[2], replaced = 0;
  char body[32];
  long long total;
  uint64_t deadline;

  demo_start(&d, "rr", "2");
  demo_workers(&d, pids, 2);
  memset(&l, 0, sizeof(l));
  l.d = &d;
  ASSERT_OK(uv_thread_create(&thread, load_thread, &l));
  wait_count(&d, &l.ok, 20);
  l.hold = 1;
  deadline = tc_now_ms() + 5000;
  while (!l.held) {
    ASSERT(tc_now_ms() < deadline);
    test_sleep_ms(1);
  }
  ASSERT_EQ(kill(pids[0], SIGKILL), 0);
  /* Gone for good before the client goes on. */
  deadline = tc_now_ms() + 5000;
  while (tc_proc_state(pids[0]) != 0 && tc_proc_state(pids[0]) != 'Z') {
    ASSERT(tc_now_ms() < deadline);
    test_sleep_ms(1);
  }
  l.hold = 0;
  /* The primary sees the exit and forks a replacement (after a backoff). */
  deadline = tc_now_ms() + 5000;
  while (!replaced) {
    uv_run(&d.loop, UV_RUN_NOWAIT);
    test_sleep_ms(10);
    if (tc_children(d.child.pid, now, 2) == 2 && now[0] != pids[0] &&
        now[1] != pids[0])
      replaced = 1;
    ASSERT(tc_now_ms() < deadline);
  }
  wait_count(&d, &l.ok, l.ok + 20);
  l.stop = 1;
  uv_thread_join(&thread);
  fprintf(stderr, "during the kill: %d answered, %d failed\n", l.ok, l.failed);
  ASSERT_EQ(l.failed, 0);
  for (int i = 0; i < 20; i++) {
    ASSERT_EQ(tc_http_get(d.port, body, sizeof(body), 3000), 200);
    d.got++;
  }
  total = demo_stop(&d, SIGINT);
  ASSERT_EQ(total, d.got + l.ok);
  return 0;
}

/* SIGKILL of the primary: every worker exits within 1 s and the port can be
 * bound again at once. Under reuseport and shared the workers hold the
 * listening sockets too, so a surviving worker would keep the port busy. */
TEST_IMPL(cli_demo_primary_sigkill) {
  const char* policies[] = {"reuseport", "shared", "rr"};
  for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
    demo_t d;
    int pids[2], fd;
    uint64_t start;

    demo_start(&d, policies[p], "2");
    demo_workers(&d, pids, 2);
    ASSERT_OK(herd_child_kill(&d.child, SIGKILL));
    start = tc_now_ms();
    for (int i = 0; i < 2; i++) {
      while (tc_proc_state(pids[i]) != 0 && tc_proc_state(pids[i]) != 'Z') {
        if (tc_now_ms() - start > 1000)
          FATAL("%s: worker %d still alive 1 s after the primary died",
                policies[p], pids[i]);
        test_sleep_ms(5);
      }
    }
    fd = listen_on(d.port);
    ASSERT(fd >= 0);
    close(fd);
    uv_run(&d.loop, UV_RUN_DEFAULT);
    ASSERT(d.closed);
    ASSERT_EQ(d.child.term_signal, SIGKILL);
    test_loop_close(&d.loop);
    unlink(d.out_path);
    unlink(d.err_path);
  }
  return 0;
}

/* SIGINT while clients are busy: every response a client received was
 * counted, and nothing else was. */
static void busy_thread(void* arg) {
  load_t* l = arg;
  char body[32];
  int failures = 0;
  while (!l->stop && failures < 20) {
    int r = tc_http_get(l->d->port, body, sizeof(body), 3000);
    if (r == 200) {
      ASSERT_STR_EQ(body, "123123\n");
      __atomic_add_fetch(&l->ok, 1, __ATOMIC_SEQ_CST);
    } else {
      __atomic_add_fetch(&l->failed, 1, __ATOMIC_SEQ_CST);
      failures++; /* after the demo is gone, connects fail */
    }
  }
}

TEST_IMPL(cli_demo_shutdown_under_load) {
  const char* policies[] = {"rr", "shared", "reuseport"};
  for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
    demo_t d;
    load_t l;
    uv_thread_t threads[3];
    long long total;

    demo_start(&d, policies[i], "2");
    memset(&l, 0, sizeof(l));
    l.d = &d;
    for (int t = 0; t < 3; t++)
      ASSERT_OK(uv_thread_create(&threads[t], busy_thread, &l));
    wait_count(&d, &l.ok, 30);
    total = demo_stop(&d, SIGINT);
    l.stop = 1;
    for (int t = 0; t < 3; t++)
      uv_thread_join(&threads[t]);
    fprintf(stderr, "%s: %d answered during the shutdown run, total %lld\n",
            policies[i], l.ok, total);
    ASSERT(l.ok > 0);
    ASSERT_EQ(total, l.ok + d.got);
  }
  return 0;
}
