/* The IPC channel against Node's and against a raw socketpair.
 *
 * For each figure, several rounds alternate herd<->herd (this program forks
 * itself as the child), the limit where it makes sense (the same bytes over
 * a bare socketpair with blocking write()/read() and nothing but a newline
 * count), and node<->node (bench/ipc.js forks itself). Medians over the
 * rounds are reported as RESULT lines.
 *
 * The ping-pong sends {"cmd":"ping","i":1} (21 bytes with its newline) back
 * and forth on all three sides; herd and Node echo it from their message
 * callback, as an application would. The first 100 round trips warm up.
 * Nothing is pinned to a CPU: each side runs where the scheduler puts it.
 *
 * The same one-way and ping-pong run again in Node's `advanced`
 * serialization, herd<->herd against node<->node (both forked with
 * serialization 'advanced'). herd's ends use values there, as a program
 * would: the sender builds {cmd:'notifyRequest', i} in a heap for each
 * message and sends it with herd_ipc_send_value(), the receivers take
 * values in the value callback, and the ping-pong echoes the value.
 *
 * The ping-pong has a second anchor, `epoll`: the same bytes over a bare
 * socketpair where each end waits in epoll_wait() and then recv()s, as any
 * epoll-based event loop must. It is the floor for herd (and for Node, and
 * for anything built on libuv); the gap between it and the limit is the cost
 * of waiting in epoll rather than in read(), which on this machine depends
 * mostly on whether the two processes share a CPU (`ipc placement` measures
 * that directly, see docs/ipc.md).
 *
 *   ipc [rounds]          run the benchmark (needs `node` in PATH)
 *   ipc placement [rounds]  ping-pong only, both ends pinned to one CPU and
 *                         then to two, for herd, epoll and the limit
 *   ipc herd MODE N [advanced]  one herd figure alone (for profiling)
 *   ipc limit MODE N      one limit figure alone (oneway or pingpong)
 *   ipc child MODE N [CPU]  the herd child (used by the benchmark itself;
 *                         the serialization comes with the channel) */
#include "bench.h"

#include <herd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ONEWAY_N        1000000
#define ONEWAY_NODE_N   200000
#define PINGPONG_N      50000
#define PINGPONG_NODE_N 10000
#define HANDLES_N       20000
#define HANDLES_NODE_N  5000

static char self_path[4096];
static char js_path[4200];

/* The CPU the child of the next run is pinned to, or -1 to leave it where
 * the scheduler puts it (see `ipc placement`). */
static int child_cpu = -1;

static void pin_to(int cpu) {
  cpu_set_t set;
  if (cpu < 0)
    return;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

/* Every run is bounded in time. The watchdog is an alarm rather than a timer
 * on the herd parent's loop: a pending timer would make each of its waits arm
 * and cancel a kernel timer, a cost the limit's blocking read() does not pay
 * and that has nothing to do with the channel. */
#define RUN_TIMEOUT_S 60
static volatile sig_atomic_t watched_pid;
static volatile sig_atomic_t timed_out;

static void on_alarm(int signum) {
  static const char msg[] = "ipc bench: a run took too long, stopping it\n";
  pid_t pid = watched_pid;
  (void)signum;
  timed_out = 1;
  if (pid > 0)
    kill(pid, SIGKILL);
  if (write(2, msg, sizeof(msg) - 1) < 0)
    return;
}

static void watch(pid_t pid) {
  timed_out = 0;
  watched_pid = pid;
  alarm(RUN_TIMEOUT_S);
}

static void unwatch(void) {
  alarm(0);
  watched_pid = 0;
}

static int format_notify(char* out, long i) {
  /* A hand-rolled itoa keeps the sender from being the bottleneck. */
  static const char pre[] = "{\"cmd\":\"notifyRequest\",\"i\":";
  char digits[24];
  int nd = 0, n = sizeof(pre) - 1;
  memcpy(out, pre, sizeof(pre) - 1);
  do {
    digits[nd++] = (char)('0' + i % 10);
    i /= 10;
  } while (i > 0);
  while (nd > 0)
    out[n++] = digits[--nd];
  out[n++] = '}';
  return n;
}

/* The herd child. */
typedef struct {
  long n;
  long sent;
  herd_value_heap_t heap;
} child_t;

/* {cmd: 'notifyRequest', i} as a value, in a heap emptied for each one. */
static herd_value_t* notify_value(herd_value_heap_t* heap, long i) {
  herd_value_t* v;
  herd_value_heap_free(heap);
  v = herd_value_new_object(heap);
  if (herd_value_object_set(
          v, "cmd", herd_value_new_string(heap, "notifyRequest", 13)) != 0 ||
      herd_value_object_set(v, "i", herd_value_new_number(heap, (double)i)) !=
          0)
    return NULL;
  return v;
}

static void oneway_send(herd_ipc_t* ipc) {
  child_t* c = ipc->data;
  char msg[64];
  while (c->sent < c->n) {
    int r;
    if (ipc->serialization == HERD_SERIALIZATION_ADVANCED) {
      herd_value_t* v = notify_value(&c->heap, c->sent);
      r = v != NULL ? herd_ipc_send_value(ipc, v) : UV_ENOMEM;
    } else {
      int len = format_notify(msg, c->sent);
      r = herd_ipc_send(ipc, msg, (size_t)len);
    }
    if (r < 0) {
      herd_ipc_disconnect(ipc);
      return;
    }
    c->sent++;
    if (r == 1)
      return;
  }
}

static void echo_cb(herd_ipc_t* ipc, const char* json, size_t len,
                    herd_handle_t* handle) {
  (void)handle;
  herd_ipc_send(ipc, json, len);
}

static void echo_value_cb(herd_ipc_t* ipc, herd_value_t* v,
                          herd_handle_t* handle) {
  (void)handle;
  herd_ipc_send_value(ipc, v);
}

static void handles_cb(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  (void)handle;
  if (len == 4 && memcmp(json, "true", 4) == 0)
    herd_ipc_send(ipc, "\"done\"", 6);
}

static int child_main(const char* mode, long n, int cpu) {
  uv_loop_t loop;
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.message = NULL};
  child_t c = {n, 0, {0}};
  pin_to(cpu);
  herd_value_heap_init(&c.heap);
  uv_loop_init(&loop);
  if (herd_ipc_open_parent(&loop, &ipc) != 0)
    return 1;
  ipc.data = &c;
  if (strcmp(mode, "oneway") == 0) {
    cbs.drain = oneway_send;
    herd_ipc_start(&ipc, &cbs);
    oneway_send(&ipc);
  } else if (strcmp(mode, "pingpong") == 0) {
    if (ipc.serialization == HERD_SERIALIZATION_ADVANCED)
      cbs.value = echo_value_cb;
    else
      cbs.message = echo_cb;
    herd_ipc_start(&ipc, &cbs);
  } else {
    cbs.message = handles_cb;
    herd_ipc_start(&ipc, &cbs);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  herd_value_heap_free(&c.heap);
  return 0;
}

/* The herd parent. */
typedef struct {
  herd_child_t child;
  long n;
  long got;
  double t0, t1;
  int fd; /* the socket passed around in the handles run */
} run_t;

static void oneway_msg(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  run_t* r = ipc->data;
  (void)json;
  (void)len;
  (void)handle;
  if (r->got == 0)
    r->t0 = bench_now();
  if (++r->got == r->n) {
    r->t1 = bench_now();
    herd_ipc_disconnect(ipc);
  }
}

static void pingpong_msg(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  run_t* r = ipc->data;
  (void)handle;
  /* The first 100 round trips warm up. */
  if (r->got == 100)
    r->t0 = bench_now();
  if (++r->got == r->n + 100) {
    r->t1 = bench_now();
    herd_ipc_disconnect(ipc);
    return;
  }
  herd_ipc_send(ipc, json, len);
}

static void oneway_value(herd_ipc_t* ipc, herd_value_t* v,
                         herd_handle_t* handle) {
  (void)v;
  oneway_msg(ipc, NULL, 0, handle);
}

static void pingpong_value(herd_ipc_t* ipc, herd_value_t* v,
                           herd_handle_t* handle) {
  run_t* r = ipc->data;
  (void)handle;
  if (r->got == 100)
    r->t0 = bench_now();
  if (++r->got == r->n + 100) {
    r->t1 = bench_now();
    herd_ipc_disconnect(ipc);
    return;
  }
  herd_ipc_send_value(ipc, v);
}

static void handles_msg(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  run_t* r = ipc->data;
  (void)json;
  (void)len;
  (void)handle;
  r->t1 = bench_now();
  herd_ipc_disconnect(ipc);
}

/* One handle at a time, the next once the child acknowledged the last (the
 * channel would queue them anyway, each holding a duplicated fd). */
static void send_next_handle(herd_ipc_t* ipc, int status, void* arg) {
  run_t* r = arg;
  int last;
  if (status != 0 || r->got == r->n)
    return;
  last = ++r->got == r->n;
  herd_ipc_send_fd(ipc, last ? "true" : "false", last ? 4 : 5, r->fd,
                   "net.Socket", send_next_handle, r);
}

/* The child is reaped: its pid may be reused from now on. */
static void child_closed(herd_child_t* child) {
  (void)child;
  watched_pid = 0;
}

static int tcp_pair(int sv[2]);

static double run_herd(const char* mode, long n, herd_serialization_t ser) {
  uv_loop_t loop;
  run_t r;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.message = NULL};
  char nbuf[32], cbuf[16];
  const char* args[] = {"child", mode, nbuf, NULL, NULL};

  memset(&r, 0, sizeof(r));
  memset(&opts, 0, sizeof(opts));
  r.n = n;
  snprintf(nbuf, sizeof(nbuf), "%ld", n);
  if (child_cpu >= 0) {
    snprintf(cbuf, sizeof(cbuf), "%d", child_cpu);
    args[3] = cbuf;
  }
  opts.spawn.close_cb = child_closed;
  opts.spawn.serialization = ser;
  uv_loop_init(&loop);
  if (herd_fork(&loop, &r.child, self_path, args, &opts) != 0)
    return -1;
  watch(r.child.pid);
  r.child.channel->data = &r;
  if (strcmp(mode, "oneway") == 0) {
    if (ser == HERD_SERIALIZATION_ADVANCED)
      cbs.value = oneway_value;
    else
      cbs.message = oneway_msg;
    herd_ipc_start(r.child.channel, &cbs);
  } else if (strcmp(mode, "pingpong") == 0) {
    if (ser == HERD_SERIALIZATION_ADVANCED)
      cbs.value = pingpong_value;
    else
      cbs.message = pingpong_msg;
    herd_ipc_start(r.child.channel, &cbs);
    /* On an advanced channel the text goes as the value it stands for. */
    herd_ipc_send(r.child.channel, "{\"cmd\":\"ping\",\"i\":1}", 20);
  } else {
    int sv[2];
    cbs.message = handles_msg;
    herd_ipc_start(r.child.channel, &cbs);
    /* A connected TCP socket, as Node's side passes. */
    if (tcp_pair(sv) != 0)
      return -1;
    r.fd = sv[0];
    r.t0 = bench_now();
    send_next_handle(r.child.channel, 0, &r);
    uv_run(&loop, UV_RUN_DEFAULT);
    unwatch();
    close(sv[0]);
    close(sv[1]);
    uv_loop_close(&loop);
    return r.t1 > r.t0 && !timed_out ? (double)n / (r.t1 - r.t0) : -1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  unwatch();
  uv_loop_close(&loop);
  if (r.t1 <= r.t0 || timed_out)
    return -1;
  if (strcmp(mode, "oneway") == 0)
    return (double)(n - 1) / (r.t1 - r.t0);
  if (strcmp(mode, "pingpong") == 0)
    return (r.t1 - r.t0) / (double)n * 1e6;
  return (double)n / (r.t1 - r.t0);
}

/* sv[0]: the accepted end, sv[1]: the client end, over 127.0.0.1. */
static int tcp_pair(int sv[2]) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0)
    return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&sa, sizeof(sa)) != 0 ||
      listen(lfd, 1) != 0 || getsockname(lfd, (struct sockaddr*)&sa, &sl) != 0)
    goto fail;
  sv[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sv[1] < 0)
    goto fail;
  if (connect(sv[1], (struct sockaddr*)&sa, sizeof(sa)) != 0) {
    close(sv[1]);
    goto fail;
  }
  sv[0] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  close(lfd);
  if (sv[0] < 0) {
    close(sv[1]);
    return -1;
  }
  return 0;

fail:
  close(lfd);
  return -1;
}

/* node bench/ipc.js MODE N SERIALIZATION prints one number. */
static double run_node(const char* mode, long n, const char* ser) {
  char cmd[8400];
  char line[256];
  double v = -1;
  FILE* f;
  snprintf(cmd, sizeof(cmd), "timeout 60 node %s %s %ld %s", js_path, mode, n,
           ser);
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

static int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The same bytes over a bare socketpair, read 256 KiB at a time and counted
 * with memchr: what any channel on this machine can at best do. */
static double run_limit_oneway(long n) {
  int sv[2];
  pid_t pid;
  char* buf = malloc(256 * 1024);
  long got = 0;
  double t0 = 0, t1 = 0;
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  pid = fork();
  if (pid == 0) {
    char* out = malloc(64 * 1024 + 64);
    size_t len = 0;
    close(sv[0]);
    for (long i = 0; i < n; i++) {
      len += (size_t)format_notify(out + len, i);
      out[len++] = '\n';
      if (len >= 64 * 1024) {
        if (write_all(sv[1], out, len) != 0)
          _exit(1);
        len = 0;
      }
    }
    _exit(write_all(sv[1], out, len) != 0);
  }
  close(sv[1]);
  watch(pid);
  for (;;) {
    ssize_t r = read(sv[0], buf, 256 * 1024);
    if (r <= 0)
      break;
    if (got == 0)
      t0 = bench_now();
    for (char* p = buf; (p = memchr(p, '\n', (size_t)(buf + r - p))) != NULL;
         p++)
      got++;
  }
  t1 = bench_now();
  unwatch();
  close(sv[0]);
  waitpid(pid, NULL, 0);
  free(buf);
  return got == n && t1 > t0 ? (double)(n - 1) / (t1 - t0) : -1;
}

static double run_limit_pingpong(long n) {
  int sv[2];
  pid_t pid;
  char buf[256];
  const char msg[] = "{\"cmd\":\"ping\",\"i\":1}\n";
  double t0 = 0, us;
  int ok = 1;
  socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
  pid = fork();
  if (pid == 0) {
    ssize_t r;
    pin_to(child_cpu);
    close(sv[0]);
    while ((r = read(sv[1], buf, sizeof(buf))) > 0)
      if (write_all(sv[1], buf, (size_t)r) != 0)
        break;
    _exit(0);
  }
  close(sv[1]);
  watch(pid);
  for (long i = 0; i < n + 100 && ok; i++) {
    size_t got = 0;
    if (i == 100)
      t0 = bench_now();
    ok = write_all(sv[0], msg, sizeof(msg) - 1) == 0;
    while (ok && got < sizeof(msg) - 1) {
      ssize_t r = read(sv[0], buf, sizeof(buf));
      ok = r > 0;
      got += ok ? (size_t)r : 0;
    }
  }
  us = (bench_now() - t0) / (double)n * 1e6;
  unwatch();
  close(sv[0]);
  waitpid(pid, NULL, 0);
  return ok ? us : -1;
}

/* Waits in epoll_wait() until the socket is readable, then recv()s: the
 * syscalls every epoll-based event loop makes per message. */
static ssize_t epoll_recv(int ep, int fd, char* buf, size_t len) {
  struct epoll_event ev;
  for (;;) {
    int r = epoll_wait(ep, &ev, 1, -1);
    if (r < 0 && errno != EINTR)
      return -1;
    if (r == 1)
      return recv(fd, buf, len, MSG_DONTWAIT);
  }
}

/* The limit's ping-pong with both ends waiting in epoll instead of read(). */
static double run_epoll_pingpong(long n) {
  int sv[2], ep, fd;
  pid_t pid;
  char buf[256];
  const char msg[] = "{\"cmd\":\"ping\",\"i\":1}\n";
  struct epoll_event ev;
  double t0 = 0, us;
  int ok = 1;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return -1;
  pid = fork();
  if (pid == 0)
    pin_to(child_cpu);
  fd = pid == 0 ? sv[1] : sv[0];
  close(pid == 0 ? sv[0] : sv[1]);
  ep = epoll_create1(EPOLL_CLOEXEC);
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    ok = 0;
  if (pid == 0) {
    ssize_t r;
    while (ok && (r = epoll_recv(ep, fd, buf, sizeof(buf))) > 0)
      if (write_all(fd, buf, (size_t)r) != 0)
        break;
    _exit(0);
  }
  watch(pid);
  for (long i = 0; i < n + 100 && ok; i++) {
    size_t got = 0;
    if (i == 100)
      t0 = bench_now();
    ok = write_all(fd, msg, sizeof(msg) - 1) == 0;
    while (ok && got < sizeof(msg) - 1) {
      ssize_t r = epoll_recv(ep, fd, buf, sizeof(buf));
      ok = r > 0;
      got += ok ? (size_t)r : 0;
    }
  }
  us = (bench_now() - t0) / (double)n * 1e6;
  unwatch();
  close(fd);
  if (ep >= 0)
    close(ep);
  waitpid(pid, NULL, 0);
  return ok ? us : -1;
}

/* Ping-pong with the placement fixed: both ends on one CPU, then the parent
 * on one and the child on another. On a VM the two cost very differently
 * (a wakeup across CPUs is an IPI), and an unpinned run lands in either,
 * or moves between them, with the machine's load. */
static int run_placement(int rounds) {
  cpu_set_t all;
  int cpus[2], ncpu = 0;
  double v[2][3][16];
  static const char* const names[] = {"same CPU", "two CPUs"};
  if (sched_getaffinity(0, sizeof(all), &all) != 0)
    return 1;
  for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
    if (CPU_ISSET(c, &all))
      cpus[ncpu++] = c;
  if (ncpu < 2) {
    fprintf(stderr, "ipc placement: needs two CPUs\n");
    return 1;
  }
  pin_to(cpus[0]);
  for (int i = 0; i < rounds; i++) {
    for (int pl = 0; pl < 2; pl++) {
      child_cpu = cpus[pl];
      v[pl][0][i] = run_herd("pingpong", PINGPONG_N, HERD_SERIALIZATION_JSON);
      v[pl][1][i] = run_epoll_pingpong(PINGPONG_N);
      v[pl][2][i] = run_limit_pingpong(PINGPONG_N);
      fprintf(stderr, "round %d %s: rtt herd %.1f epoll %.1f limit %.1f us\n",
              i + 1, names[pl], v[pl][0][i], v[pl][1][i], v[pl][2][i]);
    }
  }
  child_cpu = -1;
  sched_setaffinity(0, sizeof(all), &all);
  for (int pl = 0; pl < 2; pl++) {
    double h = bench_median(v[pl][0], rounds);
    double e = bench_median(v[pl][1], rounds);
    double l = bench_median(v[pl][2], rounds);
    printf(
        "%s: rtt herd %.2f epoll %.2f limit %.2f us; herd/epoll %.2f "
        "herd/limit %.2f epoll/limit %.2f\n",
        names[pl], h, e, l, h / e, h / l, e / l);
  }
  return 0;
}

int main(int argc, char** argv) {
  int rounds = 7;
  ssize_t len;
  double h[3][16], nd[3][16], lim[2][16], ep[16], ha[2][16], na[2][16];

  if (argc >= 4 && strcmp(argv[1], "child") == 0)
    return child_main(argv[2], atol(argv[3]), argc >= 5 ? atoi(argv[4]) : -1);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  if (argc >= 4 && strcmp(argv[1], "herd") == 0) {
    /* One herd figure alone, for profiling: ipc herd MODE N */
    if (readlink("/proc/self/exe", self_path, sizeof(self_path) - 1) < 0)
      return 1;
    printf("%f\n", run_herd(argv[2], atol(argv[3]),
                            argc >= 5 && strcmp(argv[4], "advanced") == 0
                                ? HERD_SERIALIZATION_ADVANCED
                                : HERD_SERIALIZATION_JSON));
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "limit") == 0) {
    /* One limit figure alone: ipc limit oneway|pingpong N */
    long n = atol(argv[3]);
    printf("%f\n", strcmp(argv[2], "oneway") == 0 ? run_limit_oneway(n)
                                                  : run_limit_pingpong(n));
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "placement") == 0) {
    rounds = argc >= 3 ? atoi(argv[2]) : 5;
    if (rounds < 1 || rounds > 16)
      rounds = 5;
    if (readlink("/proc/self/exe", self_path, sizeof(self_path) - 1) < 0)
      return 1;
    return run_placement(rounds);
  }
  if (argc >= 2)
    rounds = atoi(argv[1]);
  if (rounds < 1 || rounds > 16)
    rounds = 7;
  len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
  if (len < 0)
    return 1;
  self_path[len] = '\0';
  /* bench/ipc.js sits next to this source file. */
  snprintf(js_path, sizeof(js_path), "%s", __FILE__);
  {
    char* slash = strrchr(js_path, '/');
    if (slash != NULL)
      strcpy(slash + 1, "ipc.js");
  }

  for (int i = 0; i < rounds; i++) {
    /* herd and its limit run back to back, so that both meet the same
     * background load as far as possible on a shared machine. */
    h[0][i] = run_herd("oneway", ONEWAY_N, HERD_SERIALIZATION_JSON);
    lim[0][i] = run_limit_oneway(ONEWAY_N);
    nd[0][i] = run_node("oneway", ONEWAY_NODE_N, "json");
    h[1][i] = run_herd("pingpong", PINGPONG_N, HERD_SERIALIZATION_JSON);
    lim[1][i] = run_limit_pingpong(PINGPONG_N);
    ep[i] = run_epoll_pingpong(PINGPONG_N);
    nd[1][i] = run_node("pingpong", PINGPONG_NODE_N, "json");
    h[2][i] = run_herd("handles", HANDLES_N, HERD_SERIALIZATION_JSON);
    nd[2][i] = run_node("handles", HANDLES_NODE_N, "json");
    ha[0][i] = run_herd("oneway", ONEWAY_N, HERD_SERIALIZATION_ADVANCED);
    na[0][i] = run_node("oneway", ONEWAY_NODE_N, "advanced");
    ha[1][i] = run_herd("pingpong", PINGPONG_N, HERD_SERIALIZATION_ADVANCED);
    na[1][i] = run_node("pingpong", PINGPONG_NODE_N, "advanced");
    fprintf(
        stderr,
        "round %d: oneway herd %.0f node %.0f limit %.0f msg/s; rtt herd "
        "%.1f node %.1f limit %.1f epoll %.1f us; handles herd %.0f node %.0f "
        "/s\n",
        i + 1, h[0][i], nd[0][i], lim[0][i], h[1][i], nd[1][i], lim[1][i],
        ep[i], h[2][i], nd[2][i]);
    fprintf(stderr,
            "round %d advanced: oneway herd %.0f node %.0f msg/s; rtt herd "
            "%.1f node %.1f us\n",
            i + 1, ha[0][i], na[0][i], ha[1][i], na[1][i]);
  }
  bench_result("ipc", "oneway_throughput", "msg/s", "higher",
               bench_median(h[0], rounds), 2, "node",
               bench_median(nd[0], rounds), "limit",
               bench_median(lim[0], rounds));
  bench_result("ipc", "pingpong_rtt", "us", "lower", bench_median(h[1], rounds),
               3, "node", bench_median(nd[1], rounds), "limit",
               bench_median(lim[1], rounds), "epoll", bench_median(ep, rounds));
  bench_result("ipc", "handles_passed", "handles/s", "higher",
               bench_median(h[2], rounds), 1, "node",
               bench_median(nd[2], rounds));
  bench_result("ipc", "oneway_throughput_advanced", "msg/s", "higher",
               bench_median(ha[0], rounds), 1, "node",
               bench_median(na[0], rounds));
  bench_result("ipc", "pingpong_rtt_advanced", "us", "lower",
               bench_median(ha[1], rounds), 1, "node",
               bench_median(na[1], rounds));
  return 0;
}
