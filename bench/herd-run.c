/* `herd run` benchmark, herd and its anchors alternating in one run:
 *
 * - reload: wrk -c 64 against the seed's Node program (bench/http-seed.js,
 *   without its per-request console.log) with 2 workers, 5 reloads while
 *   it runs, one every 3 s (or as soon as the previous one ended): herd
 *   run (SIGHUP, each reload's end read from herd's sd_notify READY=1)
 *   against PM2 in cluster mode (`pm2 reload`; PM2 is installed by this
 *   benchmark into the build tree with npm, never globally, and runs with
 *   a PM2_HOME of its own). Failed requests (wrk's connect, read, write
 *   and timeout errors, and non-2xx answers) and the throughput of the run
 *   with reloads over that of a steady 15 s run after a warm-up; the same
 *   for examples/fd3-http under herd, herd's own cost without Node's
 *   start-up;
 * - primary: the same program under herd's primary against Node's own
 *   (rr, 2 workers): req/s and the primary's share of a CPU;
 * - fd3: examples/fd3-http, a socket-activated C server, under
 *   `herd run -w 1` against the same server given the same socket alone;
 * - rss: the resident memory of herd as supervisor, of Node's primary and
 *   of PM2's daemon, each with 2 workers of the seed's program: VmRSS, and
 *   the proportional set size (shared pages divided among their users).
 *
 * Goals: 0 failed requests over the reloads, throughput during them >= 0.9
 * of steady, herd's primary >= 1.2x Node's, fd3-http under herd >= 0.98x
 * alone, herd's memory <= 2 MB. docs/run.md has the figures of a run.
 *
 * Usage: herd-run [SRC_DIR] [--rounds N] [--duration S]
 * (herd and the examples are taken from the build tree it is in)
 * Prints RESULT lines (bench.h); every figure is a median over rounds. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ROUNDS 8
#define RELOADS    5

static const char* src_dir = ".";
static char build_dir[PATH_MAX] = "build";
static int rounds = 3;
static int duration = 5;
static char pm2[PATH_MAX + 64];
static char pm2_home[PATH_MAX];

/* The running targets' process groups, for a clean exit on a signal. */
static pid_t groups[4];

static void kill_groups(void) {
  for (int i = 0; i < 4; i++)
    if (groups[i] > 0)
      kill(-groups[i], SIGKILL);
}

static void on_signal(int sig) {
  kill_groups();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void track(pid_t pgid, int on) {
  for (int i = 0; i < 4; i++) {
    if (on && groups[i] == 0) {
      groups[i] = pgid;
      return;
    }
    if (!on && groups[i] == pgid) {
      groups[i] = 0;
      return;
    }
  }
}

static int free_port(void) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  int port = -1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && bind(fd, (struct sockaddr*)&a, sizeof(a)) == 0 &&
      getsockname(fd, (struct sockaddr*)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* One GET; 0 when a 200 came back. */
static int probe(int port) {
  struct sockaddr_in a;
  struct timeval tv = {0, 300000};
  const char* req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  char buf[256];
  int ok = -1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&a, sizeof(a)) == 0 &&
      send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req) &&
      recv(fd, buf, sizeof(buf), 0) > 12 &&
      strncmp(buf, "HTTP/1.1 200", 12) == 0)
    ok = 0;
  close(fd);
  return ok;
}

static int wait_port(int port, double seconds) {
  double deadline = bench_now() + seconds;
  while (bench_now() < deadline) {
    if (probe(port) == 0)
      return 0;
    usleep(20000);
  }
  return -1;
}

/* A field of /proc/PID/<file> in kB, or -1: VmRSS of "status" counts every
 * page mapped, the shared libc's included; Pss of "smaps_rollup" divides
 * each shared page among the processes that map it. */
static double proc_kb(pid_t pid, const char* file, const char* field) {
  char path[64], line[256];
  size_t len = strlen(field);
  double kb = -1;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, field, len) == 0)
      kb = atof(line + len);
  fclose(f);
  return kb;
}

static double proc_rss_kb(pid_t pid) {
  return proc_kb(pid, "status", "VmRSS:");
}

static double proc_pss_kb(pid_t pid) {
  return proc_kb(pid, "smaps_rollup", "Pss:");
}

/* utime + stime of `pid` in seconds, or -1. */
static double proc_cpu(pid_t pid) {
  char path[64], buf[1024], *p;
  unsigned long ut, st;
  size_t n;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  p = strrchr(buf, ')');
  if (p == NULL ||
      sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A program in a process group of its own, stdout and stderr to
 * /dev/null; `env` entries are added. */
static pid_t start(const char* const* argv, const char* const* env, int fd3) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int null_fd = open("/dev/null", O_RDWR);
    char lpid[32];
    setpgid(0, 0);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    for (int i = 0; env != NULL && env[i] != NULL; i++)
      putenv((char*)env[i]);
    if (fd3 >= 0) {
      /* Socket activation by hand: fd 3, LISTEN_FDS, LISTEN_PID. */
      dup2(fd3, 3);
      snprintf(lpid, sizeof(lpid), "%d", (int)getpid());
      setenv("LISTEN_FDS", "1", 1);
      setenv("LISTEN_PID", lpid, 1);
    }
    execvp(argv[0], (char* const*)argv);
    _exit(127);
  }
  setpgid(pid, pid);
  track(pid, 1);
  return pid;
}

/* Asks the program to stop, then kills what is left of its group. */
static void stop(pid_t pid) {
  int status;
  if (pid <= 0)
    return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 500; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      pid = -pid;
      break;
    }
    usleep(20000);
  }
  kill(pid > 0 ? -pid : pid, SIGKILL);
  if (pid > 0)
    waitpid(pid, &status, 0);
  track(pid > 0 ? pid : -pid, 0);
}

/* Runs a command to its end, quietly; its exit status or -1. */
static int run_quiet(const char* const* argv, const char* const* env) {
  int status;
  pid_t pid = start(argv, env, -1);
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    return -1;
  track(pid, 0);
  kill(-pid, SIGKILL);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* wrk, running while the benchmark does something else. */
typedef struct {
  pid_t pid;
  int fd;
} wrk_t;

static int wrk_start(wrk_t* w, int port, int seconds) {
  char url[64], dur[16];
  int fds[2];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
  snprintf(dur, sizeof(dur), "%ds", seconds);
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -1;
  w->pid = fork();
  if (w->pid == 0) {
    setpgid(0, 0);
    dup2(fds[1], 1);
    execl("/usr/bin/wrk", "wrk", "-t", "2", "-c", "64", "-d", dur, url,
          (char*)NULL);
    _exit(127);
  }
  close(fds[1]);
  if (w->pid < 0) {
    close(fds[0]);
    return -1;
  }
  w->fd = fds[0];
  return 0;
}

/* Stops wrk now with `early` (SIGINT: it prints what it measured) or waits
 * for its end; fills req/s and failed requests. 0 on success. */
static int wrk_finish(wrk_t* w, int early, double* rps, double* failed,
                      double* requests) {
  char out[8192];
  size_t len = 0;
  int status;
  const char* p;
  if (early)
    kill(w->pid, SIGINT);
  for (;;) {
    struct pollfd pfd = {w->fd, POLLIN, 0};
    ssize_t n;
    if (poll(&pfd, 1, 200000) <= 0)
      break;
    n = read(w->fd, out + len, sizeof(out) - 1 - len);
    if (n <= 0 || len + (size_t)n == sizeof(out) - 1)
      break;
    len += (size_t)n;
  }
  close(w->fd);
  waitpid(w->pid, &status, 0);
  out[len] = '\0';
  p = strstr(out, "Requests/sec:");
  if (p == NULL) {
    fprintf(stderr, "herd-run bench: wrk failed:\n%s\n", out);
    return -1;
  }
  *rps = atof(p + 13);
  *failed = 0;
  p = strstr(out, "Socket errors:");
  if (p != NULL) {
    int c = 0, r = 0, wr = 0, t = 0;
    sscanf(p, "Socket errors: connect %d, read %d, write %d, timeout %d", &c,
           &r, &wr, &t);
    *failed += c + r + wr + t;
  }
  p = strstr(out, "Non-2xx or 3xx responses:");
  if (p != NULL)
    *failed += atof(p + 25);
  *requests = 0;
  p = strstr(out, " requests in ");
  if (p != NULL) {
    while (p > out && p[-1] != ' ' && p[-1] != '\n')
      p--;
    *requests = atof(p);
  }
  return 0;
}

/* herd's sd_notify messages: an abstract datagram socket of ours. */
static int notify_fd = -1;
static char notify_env[160];

static int notify_open(void) {
  struct sockaddr_un a;
  socklen_t len = sizeof(sa_family_t);
  notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  if (notify_fd < 0 || bind(notify_fd, (struct sockaddr*)&a, len) != 0)
    return -1;
  len = sizeof(a);
  if (getsockname(notify_fd, (struct sockaddr*)&a, &len) != 0)
    return -1;
  snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=@%.*s",
           (int)(len - offsetof(struct sockaddr_un, sun_path) - 1),
           a.sun_path + 1);
  return 0;
}

/* Waits for a datagram with READY=1; 0 when it came. */
static int wait_ready(double seconds) {
  double deadline = bench_now() + seconds;
  for (;;) {
    struct pollfd pfd = {notify_fd, POLLIN, 0};
    char buf[4097];
    ssize_t n;
    double left = deadline - bench_now();
    if (left <= 0 || poll(&pfd, 1, (int)(left * 1000)) <= 0)
      return -1;
    n = recv(notify_fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
      continue;
    buf[n] = '\0';
    if (strstr(buf, "READY=1") != NULL)
      return 0;
  }
}

static void notify_drain(void) {
  char buf[4097];
  while (recv(notify_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
  }
}

/* The targets. */
enum { T_HERD, T_PM2, T_NODE, T_HERD_FD3 };

static char seed[PATH_MAX + 64];
static char herd[PATH_MAX + 64];

static pid_t start_seed(int kind, int port, const char* policy) {
  char sport[16], lst[48];
  snprintf(sport, sizeof(sport), "%d", port);
  snprintf(lst, sizeof(lst), "127.0.0.1:%d", port);
  if (kind == T_HERD || kind == T_HERD_FD3) {
    char fd3[PATH_MAX + 32];
    const char* argv[] = {herd, "run", "-w",   "2",  "--policy", policy, "-l",
                          lst,  "--",  "node", seed, sport,      "2",    NULL};
    if (kind == T_HERD_FD3) {
      /* The same pool of a C server: herd's own cost, without Node's
       * start-up. */
      snprintf(fd3, sizeof(fd3), "%s/examples/fd3-http", build_dir);
      argv[8] = fd3;
      argv[9] = NULL;
    }
    const char* env[] = {notify_env, NULL};
    pid_t pid;
    notify_drain();
    pid = start(argv, env, -1);
    if (pid > 0 && wait_ready(60) != 0) {
      stop(pid);
      return -1;
    }
    return pid;
  }
  if (kind == T_NODE) {
    char pol[64];
    const char* argv[] = {"node", seed, sport, "2", NULL};
    const char* env[] = {pol, NULL};
    snprintf(pol, sizeof(pol), "NODE_CLUSTER_SCHED_POLICY=%s", policy);
    return start(argv, env, -1);
  }
  {
    char home[PATH_MAX + 16];
    const char* argv[] = {pm2,    "start", seed,  "-i", "2", "--name",
                          "seed", "--",    sport, "2",  NULL};
    const char* env[] = {home, NULL};
    snprintf(home, sizeof(home), "PM2_HOME=%s", pm2_home);
    if (run_quiet(argv, env) != 0)
      return -1;
    return 0; /* the daemon runs on its own */
  }
}

static pid_t pm2_daemon(void) {
  char path[PATH_MAX + 16], buf[32] = "";
  FILE* f;
  snprintf(path, sizeof(path), "%s/pm2.pid", pm2_home);
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  if (fgets(buf, sizeof(buf), f) == NULL)
    buf[0] = '\0';
  fclose(f);
  return atoi(buf);
}

static void pm2_cmd(const char* what) {
  char home[PATH_MAX + 16];
  const char* argv[] = {pm2, what, "seed", NULL};
  const char* kill_argv[] = {pm2, "kill", NULL};
  const char* env[] = {home, NULL};
  snprintf(home, sizeof(home), "PM2_HOME=%s", pm2_home);
  run_quiet(strcmp(what, "kill") == 0 ? kill_argv : argv, env);
}

static void stop_seed(int kind, pid_t pid) {
  if (kind == T_PM2) {
    pm2_cmd("kill");
    return;
  }
  stop(pid);
}

/* One reload of the target; 0 when it ended in time. */
static int reload(int kind, pid_t pid) {
  if (kind == T_PM2) {
    pm2_cmd("reload");
    return 0;
  }
  kill(pid, SIGHUP);
  return wait_ready(60);
}

typedef struct {
  double steady[MAX_ROUNDS];
  double during[MAX_ROUNDS];
  double failed; /* over every round */
  double requests;
  double reload_s[MAX_ROUNDS];
  double rss[MAX_ROUNDS];
  double pss[MAX_ROUNDS];
  int n;
  int skip;
} reload_stats_t;

/* A warm-up run (freshly started workers are slow, PM2's more so), a
 * steady run of RELOAD_WINDOW seconds, then a run with RELOADS reloads,
 * one every RELOAD_GAP seconds or as soon as the previous one ended, that
 * lasts at least RELOAD_WINDOW seconds and half a second past the last
 * reload's end. */
#define RELOAD_GAP    3.0
#define RELOAD_WINDOW 15

static void reload_round(int kind, reload_stats_t* st) {
  int port = free_port();
  double rps, failed, reqs, t0, t;
  pid_t pid = start_seed(kind, port, "reuseport");
  pid_t primary;
  wrk_t w;
  if (pid < 0 || wait_port(port, 60) != 0) {
    fprintf(stderr, "herd-run bench: %s did not start\n",
            kind == T_PM2 ? "pm2" : "herd");
    stop_seed(kind, pid);
    st->skip = 1;
    return;
  }
  primary = kind == T_PM2 ? pm2_daemon() : pid;
  if (wrk_start(&w, port, 2) != 0 || wrk_finish(&w, 0, &rps, &failed, &reqs))
    goto out;
  if (wrk_start(&w, port, RELOAD_WINDOW) != 0)
    goto out;
  usleep(RELOAD_WINDOW * 500000);
  st->rss[st->n] = proc_rss_kb(primary);
  st->pss[st->n] = proc_pss_kb(primary);
  if (wrk_finish(&w, 0, &rps, &failed, &reqs) != 0)
    goto out;
  st->steady[st->n] = rps;
  if (wrk_start(&w, port, 600) != 0)
    goto out;
  t0 = bench_now();
  for (int i = 0; i < RELOADS; i++) {
    double at = t0 + 0.5 + i * RELOAD_GAP;
    if ((t = at - bench_now()) > 0)
      usleep((useconds_t)(t * 1e6));
    t = bench_now();
    if (reload(kind, pid) != 0)
      fprintf(stderr, "herd-run bench: a reload did not end in time\n");
    st->reload_s[st->n] += (bench_now() - t) / RELOADS;
  }
  t = t0 + RELOAD_WINDOW - bench_now();
  usleep((useconds_t)((t > 0.5 ? t : 0.5) * 1e6));
  if (wrk_finish(&w, 1, &rps, &failed, &reqs) != 0)
    goto out;
  st->during[st->n] = rps;
  st->failed += failed;
  st->requests += reqs;
  st->n++;
out:
  stop_seed(kind, pid);
}

static int install_pm2(void) {
  char prefix[PATH_MAX];
  snprintf(pm2, sizeof(pm2), "%s/node_modules/.bin/pm2", build_dir);
  if (access(pm2, X_OK) == 0)
    return 0;
  snprintf(prefix, sizeof(prefix), "%s", build_dir);
  {
    const char* argv[] = {"npm",        "install",   "--prefix", prefix,
                          "--no-audit", "--no-fund", "pm2",      NULL};
    printf("herd-run bench: installing pm2 into %s/node_modules\n", prefix);
    fflush(stdout);
    if (run_quiet(argv, NULL) != 0 || access(pm2, X_OK) != 0)
      return -1;
  }
  return 0;
}

static void bench_reload(void) {
  reload_stats_t h, p, c;
  int have_pm2 = install_pm2() == 0;
  memset(&h, 0, sizeof(h));
  memset(&p, 0, sizeof(p));
  memset(&c, 0, sizeof(c));
  if (!have_pm2)
    printf("herd-run bench: PM2 not installed (npm failed): herd alone\n");
  snprintf(pm2_home, sizeof(pm2_home), "/tmp/herd-bench-pm2-%d", (int)getpid());
  for (int r = 0; r < rounds && r < MAX_ROUNDS; r++) {
    reload_round(T_HERD, &h);
    if (have_pm2 && !p.skip)
      reload_round(T_PM2, &p);
    reload_round(T_HERD_FD3, &c);
  }
  {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pm2_home);
    if (system(cmd) != 0)
      fprintf(stderr, "herd-run bench: could not remove %s\n", pm2_home);
  }
  if (h.n == 0)
    return;
  bench_result("run", "reload_failed_requests", "requests", "lower", h.failed,
               1, "pm2", p.n ? p.failed : -1.0);
  bench_result("run", "reload_requests", "requests", "higher", h.requests, 1,
               "pm2", p.n ? p.requests : -1.0);
  {
    double hr[MAX_ROUNDS], pr[MAX_ROUNDS];
    for (int i = 0; i < h.n; i++)
      hr[i] = h.during[i] / h.steady[i];
    for (int i = 0; i < p.n; i++)
      pr[i] = p.during[i] / p.steady[i];
    bench_result("run", "reload_throughput_vs_steady", "ratio", "higher",
                 bench_median(hr, h.n), 1, "pm2",
                 p.n ? bench_median(pr, p.n) : -1.0);
    if (c.n > 0) {
      double cr[MAX_ROUNDS];
      for (int i = 0; i < c.n; i++)
        cr[i] = c.during[i] / c.steady[i];
      bench_result("run", "reload_throughput_vs_steady_fd3", "ratio", "higher",
                   bench_median(cr, c.n), 0);
      bench_result("run", "reload_failed_requests_fd3", "requests", "lower",
                   c.failed, 0);
      bench_result("run", "reload_requests_fd3", "requests", "higher",
                   c.requests, 0);
    }
    bench_result("run", "steady_rps_seed_reuseport", "req/s", "higher",
                 bench_median(h.steady, h.n), 1, "pm2",
                 p.n ? bench_median(p.steady, p.n) : -1.0);
    bench_result("run", "reload_seconds_per_reload", "s", "lower",
                 bench_median(h.reload_s, h.n), 1, "pm2",
                 p.n ? bench_median(p.reload_s, p.n) : -1.0);
    bench_result("run", "supervisor_rss_vs_pm2_daemon", "kB", "lower",
                 bench_median(h.rss, h.n), 1, "pm2",
                 p.n ? bench_median(p.rss, p.n) : -1.0);
    bench_result("run", "supervisor_pss_vs_pm2_daemon", "kB", "lower",
                 bench_median(h.pss, h.n), 1, "pm2",
                 p.n ? bench_median(p.pss, p.n) : -1.0);
  }
}

/* herd's primary against Node's own, rr: req/s and the primary's CPU. */
static void bench_primary(void) {
  double rps[2][MAX_ROUNDS], cpu[2][MAX_ROUNDS], rss[2][MAX_ROUNDS];
  double pss[2][MAX_ROUNDS];
  int n[2] = {0, 0};
  for (int r = 0; r < rounds && r < MAX_ROUNDS; r++) {
    for (int k = 0; k < 2; k++) {
      int kind = k == 0 ? T_HERD : T_NODE, port = free_port();
      double f, q, c0, t0, x;
      pid_t pid = start_seed(kind, port, "rr");
      wrk_t w;
      if (pid < 0 || wait_port(port, 60) != 0) {
        stop(pid);
        continue;
      }
      c0 = proc_cpu(pid);
      t0 = bench_now();
      if (wrk_start(&w, port, duration) == 0) {
        usleep((useconds_t)(duration * 500000));
        rss[k][n[k]] = proc_rss_kb(pid);
        pss[k][n[k]] = proc_pss_kb(pid);
        if (wrk_finish(&w, 0, &x, &f, &q) == 0) {
          cpu[k][n[k]] = (proc_cpu(pid) - c0) / (bench_now() - t0);
          rps[k][n[k]++] = x;
        }
      }
      stop(pid);
    }
  }
  if (n[0] == 0 || n[1] == 0)
    return;
  bench_result("run", "seed_rr_rps", "req/s", "higher",
               bench_median(rps[0], n[0]), 1, "node",
               bench_median(rps[1], n[1]));
  bench_result("run", "primary_cpu_share", "cpu", "lower",
               bench_median(cpu[0], n[0]), 1, "node",
               bench_median(cpu[1], n[1]));
  bench_result("run", "primary_rss", "kB", "lower", bench_median(rss[0], n[0]),
               1, "node", bench_median(rss[1], n[1]));
  bench_result("run", "primary_pss", "kB", "lower", bench_median(pss[0], n[0]),
               1, "node", bench_median(pss[1], n[1]));
}

/* fd3-http under `herd run -w 1` against fd3-http alone on a socket of
 * ours. */
static void bench_fd3(void) {
  char fd3[PATH_MAX + 32], lst[48];
  double rps[2][MAX_ROUNDS];
  int n[2] = {0, 0};
  snprintf(fd3, sizeof(fd3), "%s/examples/fd3-http", build_dir);
  for (int r = 0; r < rounds && r < MAX_ROUNDS; r++) {
    for (int k = 0; k < 2; k++) {
      int port = free_port(), lfd = -1;
      double f, q, x;
      pid_t pid;
      wrk_t w;
      snprintf(lst, sizeof(lst), "127.0.0.1:%d", port);
      if (k == 0) {
        const char* argv[] = {herd, "run", "-w", "1", "-l",
                              lst,  "--",  fd3,  NULL};
        pid = start(argv, NULL, -1);
      } else {
        const char* argv[] = {fd3, NULL};
        struct sockaddr_in a;
        int on = 1;
        lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (bind(lfd, (struct sockaddr*)&a, sizeof(a)) != 0 ||
            listen(lfd, 511) != 0) {
          close(lfd);
          continue;
        }
        pid = start(argv, NULL, lfd);
        close(lfd);
      }
      if (pid < 0 || wait_port(port, 30) != 0) {
        stop(pid);
        continue;
      }
      if (wrk_start(&w, port, duration) == 0 &&
          wrk_finish(&w, 0, &x, &f, &q) == 0)
        rps[k][n[k]++] = x;
      stop(pid);
    }
  }
  if (n[0] == 0 || n[1] == 0)
    return;
  bench_result("run", "fd3_rps", "req/s", "higher", bench_median(rps[0], n[0]),
               1, "alone", bench_median(rps[1], n[1]));
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
      duration = atoi(argv[++i]);
    else
      src_dir = argv[i];
  }
  if (rounds < 1)
    rounds = 1;
  /* The build tree is where this program lives: <build>/bench/herd-run. */
  {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char* slash;
    if (n > 0) {
      self[n] = '\0';
      if ((slash = strrchr(self, '/')) != NULL) {
        *slash = '\0';
        if ((slash = strrchr(self, '/')) != NULL) {
          *slash = '\0';
          snprintf(build_dir, sizeof(build_dir), "%s", self);
        }
      }
    }
  }
  snprintf(herd, sizeof(herd), "%s/herd", build_dir);
  snprintf(seed, sizeof(seed), "%s/bench/http-seed.js", src_dir);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  if (access("/usr/bin/wrk", X_OK) != 0 || access(herd, X_OK) != 0) {
    printf("herd-run bench: skipped: needs /usr/bin/wrk and %s\n", herd);
    return 0;
  }
  if (notify_open() != 0) {
    perror("herd-run bench: notify socket");
    return 1;
  }
  printf("herd-run bench: wrk -t 2 -c 64, %d s runs, %d rounds, 2 workers\n",
         duration, rounds);
  fflush(stdout);
  bench_primary();
  bench_fd3();
  bench_reload();
  kill_groups();
  return 0;
}
