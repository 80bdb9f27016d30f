/* HTTP benchmark: wrk against `herd demo` in each cluster policy, Node's
 * cluster running the seed's program (bench/http-seed.js, rr and none), and
 * nginx answering the same 200 "123123\n" with as many workers (the limit).
 * Then herd's server alone (examples/http-hello) against a one-worker nginx.
 * Targets alternate within each round; every figure is a median over rounds.
 *
 * Usage: http [SRC_DIR] [--rounds N] [--duration S] [--conns C]
 *             [--workers W] [--herd-cmd CMD] [--only NAME,...]
 *
 * --herd-cmd replaces `herd demo` by any program that serves the demo's
 * answer; "{port}", "{workers}" and "{policy}" in it are substituted and it
 * runs under /bin/sh. Targets whose programs are missing are skipped with a
 * note.
 *
 * Per run: req/s and p99 latency (wrk --latency), RSS per worker (VmRSS of
 * the primary's children, summed and divided by their count; the process
 * itself when it has no children), the primary's CPU share (its own
 * utime+stime during the wrk run over the run's wall time), and the spread
 * of work over workers, measured as the share of the workers' CPU time
 * spent by the busiest worker (1/W is a perfect spread, 1 means one worker
 * did everything). */
#include "bench.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ROUNDS  16
#define MAX_WORKERS 64

enum { MODE_KEEPALIVE, MODE_CLOSE, MODE_COUNT };
static const char* mode_names[MODE_COUNT] = {"keepalive", "close"};

typedef struct {
  const char* name;
  int kind; /* KIND_* */
  const char* policy;
  int workers;
  int skip;
  const char* why;
  /* Per mode, per round. */
  double rps[MODE_COUNT][MAX_ROUNDS];
  double p99[MODE_COUNT][MAX_ROUNDS];
  double primary_cpu[MODE_COUNT][MAX_ROUNDS];
  double spread[MODE_COUNT][MAX_ROUNDS];
  double rss[MAX_ROUNDS];
  double rss_anon[MAX_ROUNDS];
  int n[MODE_COUNT];
  int nrss;
} target_t;

enum { KIND_HERD, KIND_NODE, KIND_NGINX, KIND_HELLO };

static const char* src_dir = ".";
static char build_dir[PATH_MAX];
static const char* herd_cmd;
static int rounds = 5;
static int duration = 3;
static int conns = 64;
static int workers = 2;
static const char* only;

/* The running target, so that a signal or an early exit can still stop it. */
static pid_t running_pgid;
static char nginx_dir[PATH_MAX];

/* Asks the primary to stop (so that it can take its workers down in order),
 * then kills whatever is left of its process group. */
static void stop_group(pid_t pid) {
  int status;
  int reaped = 0;
  if (pid <= 0)
    return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 150 && !reaped; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid)
      reaped = 1;
    else
      usleep(20000);
  }
  kill(-pid, SIGKILL);
  if (!reaped)
    waitpid(pid, &status, 0);
}

static void cleanup(void) {
  stop_group(running_pgid);
  running_pgid = 0;
  if (nginx_dir[0] != '\0') {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", nginx_dir);
    if (system(cmd) != 0)
      fprintf(stderr, "http bench: could not remove %s\n", nginx_dir);
    nginx_dir[0] = '\0';
  }
}

static void on_signal(int sig) {
  if (running_pgid > 0)
    kill(-running_pgid, SIGKILL);
  signal(sig, SIG_DFL);
  raise(sig);
}

static int free_port(void) {
  struct sockaddr_in addr;
  socklen_t len = sizeof(addr);
  int port;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0 ||
      getsockname(fd, (struct sockaddr*)&addr, &len) != 0) {
    close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

/* One GET with a fresh connection; 0 if a 200 came back. */
static int probe(int port) {
  struct sockaddr_in addr;
  struct timeval tv = {0, 300000};
  char buf[512];
  const char* req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ssize_t n;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ok = -1;
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) == 0 &&
      send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
    n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n > 12) {
      buf[n] = '\0';
      if (strncmp(buf, "HTTP/1.1 200", 12) == 0 && strstr(buf, "123123\n"))
        ok = 0;
    }
  }
  close(fd);
  return ok;
}

static int exists(const char* path) {
  return access(path, X_OK) == 0;
}

/* Replaces every `key` in `in` by `val`. */
static void subst(char* out, size_t cap, const char* in, const char* key,
                  const char* val) {
  size_t klen = strlen(key);
  size_t len = 0;
  while (*in != '\0' && len + 1 < cap) {
    if (strncmp(in, key, klen) == 0) {
      len += (size_t)snprintf(out + len, cap - len, "%s", val);
      if (len >= cap)
        len = cap - 1;
      in += klen;
    } else {
      out[len++] = *in++;
    }
  }
  out[len] = '\0';
}

static int write_nginx_conf(int port, int nworkers) {
  char tmpl_path[PATH_MAX];
  char conf_path[PATH_MAX + 16];
  char* tmpl;
  char* a;
  char* b;
  char num[32];
  size_t cap;
  FILE* f;
  long len;
  snprintf(tmpl_path, sizeof(tmpl_path), "%s/bench/nginx.conf", src_dir);
  f = fopen(tmpl_path, "rb");
  if (f == NULL)
    return -1;
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  fseek(f, 0, SEEK_SET);
  tmpl = malloc((size_t)len + 1);
  if (tmpl == NULL || fread(tmpl, 1, (size_t)len, f) != (size_t)len) {
    fclose(f);
    free(tmpl);
    return -1;
  }
  fclose(f);
  tmpl[len] = '\0';
  cap = (size_t)len + 4096;
  a = malloc(cap);
  b = malloc(cap);
  snprintf(num, sizeof(num), "%d", nworkers);
  subst(a, cap, tmpl, "@WORKERS@", num);
  snprintf(num, sizeof(num), "%d", port);
  subst(b, cap, a, "@PORT@", num);
  subst(a, cap, b, "@DIR@", nginx_dir);
  snprintf(conf_path, sizeof(conf_path), "%s/nginx.conf", nginx_dir);
  f = fopen(conf_path, "w");
  if (f != NULL) {
    fputs(a, f);
    fclose(f);
  }
  free(tmpl);
  free(a);
  free(b);
  return f != NULL ? 0 : -1;
}

/* Starts the target in its own process group; returns the primary's pid. */
static pid_t start_target(target_t* t, int port) {
  char portbuf[16];
  char wbuf[16];
  char cmd[4200];
  char tmp[4096];
  char path[PATH_MAX + 64];
  pid_t pid;
  snprintf(portbuf, sizeof(portbuf), "%d", port);
  snprintf(wbuf, sizeof(wbuf), "%d", t->workers);
  if (t->kind == KIND_NGINX) {
    char tmpl[] = "/tmp/herd-bench-nginx-XXXXXX";
    if (mkdtemp(tmpl) == NULL)
      return -1;
    snprintf(nginx_dir, sizeof(nginx_dir), "%s", tmpl);
    if (write_nginx_conf(port, t->workers) != 0)
      return -1;
  }
  pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    setpgid(0, 0);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
    }
    switch (t->kind) {
      case KIND_HERD:
        if (herd_cmd != NULL) {
          subst(tmp, sizeof(tmp), herd_cmd, "{port}", portbuf);
          subst(cmd, sizeof(cmd), tmp, "{workers}", wbuf);
          subst(tmp, sizeof(tmp), cmd, "{policy}", t->policy);
          snprintf(cmd, sizeof(cmd), "exec %s", tmp);
          execl("/bin/sh", "sh", "-c", cmd, (char*)NULL);
        } else {
          snprintf(path, sizeof(path), "%s/herd", build_dir);
          execl(path, "herd", "demo", "--port", portbuf, "--workers", wbuf,
                "--policy", t->policy, (char*)NULL);
        }
        break;
      case KIND_NODE:
        snprintf(path, sizeof(path), "%s/bench/http-seed.js", src_dir);
        setenv("NODE_CLUSTER_SCHED_POLICY", t->policy, 1);
        execl("/usr/bin/node", "node", path, portbuf, wbuf, (char*)NULL);
        break;
      case KIND_NGINX:
        snprintf(path, sizeof(path), "%s/nginx.conf", nginx_dir);
        execl("/usr/sbin/nginx", "nginx", "-p", nginx_dir, "-c", path,
              (char*)NULL);
        break;
      case KIND_HELLO:
        snprintf(path, sizeof(path), "%s/examples/http-hello", build_dir);
        execl(path, "http-hello", portbuf, (char*)NULL);
        break;
    }
    _exit(127);
  }
  setpgid(pid, pid);
  running_pgid = pid;
  return pid;
}

/* Reads /proc/PID/stat into buf and returns the fields after the command
 * name (which may hold spaces and parentheses), starting at the state; NULL
 * if the process is gone. */
static const char* proc_stat_fields(pid_t pid, char* buf, size_t cap) {
  char path[64];
  char* p;
  FILE* f;
  size_t n;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  f = fopen(path, "r");
  if (f == NULL)
    return NULL;
  n = fread(buf, 1, cap - 1, f);
  fclose(f);
  buf[n] = '\0';
  p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' ? p + 2 : NULL;
}

/* utime + stime of `pid` in seconds, or -1. */
static double proc_cpu(pid_t pid) {
  char buf[1024];
  const char* p = proc_stat_fields(pid, buf, sizeof(buf));
  unsigned long ut, st;
  if (p == NULL ||
      sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int proc_ppid(pid_t pid) {
  char buf[1024];
  const char* p = proc_stat_fields(pid, buf, sizeof(buf));
  int ppid;
  if (p == NULL || sscanf(p, "%*c %d", &ppid) != 1)
    return -1;
  return ppid;
}

/* A /proc/PID/status field in kB: VmRSS counts the shared libraries' pages
 * too, RssAnon only the process's own memory. */
static double proc_rss_kb(pid_t pid, const char* field) {
  char path[64];
  char line[256];
  size_t flen = strlen(field);
  double kb = -1;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  f = fopen(path, "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, field, flen) == 0)
      kb = atof(line + flen);
  fclose(f);
  return kb;
}

/* The workers: the primary's children, or the primary when it has none. */
static int find_workers(pid_t primary, pid_t* out, int cap) {
  DIR* d = opendir("/proc");
  struct dirent* de;
  int n = 0;
  if (d == NULL)
    return 0;
  while ((de = readdir(d)) != NULL && n < cap) {
    int pid = atoi(de->d_name);
    if (pid > 0 && proc_ppid(pid) == primary)
      out[n++] = pid;
  }
  closedir(d);
  if (n == 0)
    out[n++] = primary;
  return n;
}

/* Parses "12.34ms" style wrk durations into milliseconds. */
static double wrk_ms(const char* s) {
  char* end;
  double v = strtod(s, &end);
  if (strncmp(end, "us", 2) == 0)
    return v / 1000;
  if (strncmp(end, "ms", 2) == 0)
    return v;
  if (strncmp(end, "s", 1) == 0)
    return v * 1000;
  if (strncmp(end, "m", 1) == 0)
    return v * 60000;
  return v;
}

/* Runs wrk against `port`; fills req/s and p99 (ms). 0 on success. */
static int run_wrk(int port, int mode, double* rps, double* p99) {
  char url[64];
  char out[16384];
  char dur[16];
  char conn[16];
  size_t len = 0;
  int fds[2];
  pid_t pid;
  int status;
  double deadline;
  char* p;
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
  snprintf(dur, sizeof(dur), "%ds", duration);
  snprintf(conn, sizeof(conn), "%d", conns);
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -1;
  pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fds[1], 1);
    if (mode == MODE_CLOSE)
      execl("/usr/bin/wrk", "wrk", "-t", "2", "-c", conn, "-d", dur,
            "--latency", "-H", "Connection: close", url, (char*)NULL);
    else
      execl("/usr/bin/wrk", "wrk", "-t", "2", "-c", conn, "-d", dur,
            "--latency", url, (char*)NULL);
    _exit(127);
  }
  close(fds[1]);
  deadline = bench_now() + duration + 15;
  for (;;) {
    struct pollfd pfd = {fds[0], POLLIN, 0};
    ssize_t n;
    double left = deadline - bench_now();
    if (left <= 0) {
      kill(-pid, SIGKILL);
      break;
    }
    if (poll(&pfd, 1, (int)(left * 1000)) <= 0)
      continue;
    n = read(fds[0], out + len, sizeof(out) - 1 - len);
    if (n <= 0)
      break;
    len += (size_t)n;
    if (len == sizeof(out) - 1)
      break;
  }
  close(fds[0]);
  waitpid(pid, &status, 0);
  out[len] = '\0';
  p = strstr(out, "Requests/sec:");
  if (p == NULL) {
    fprintf(stderr, "http bench: wrk failed:\n%s\n", out);
    return -1;
  }
  *rps = atof(p + 13);
  *p99 = -1;
  p = strstr(out, "Latency Distribution");
  if (p != NULL && (p = strstr(p, "99%")) != NULL) {
    p += 3;
    while (*p == ' ')
      p++;
    *p99 = wrk_ms(p);
  }
  /* Socket errors (connect/read/write/timeout) are normal with
   * `Connection: close` at these rates; non-2xx answers are not. */
  if (strstr(out, "Non-2xx") != NULL)
    fprintf(stderr, "http bench: non-2xx answers on port %d\n", port);
  return 0;
}

static void run_target(target_t* t, int round) {
  int port = free_port();
  pid_t primary;
  pid_t wpids[MAX_WORKERS];
  int nw;
  int up = 0;
  double start;
  if (port < 0)
    return;
  primary = start_target(t, port);
  if (primary < 0) {
    fprintf(stderr, "http bench: %s: could not start\n", t->name);
    cleanup();
    return;
  }
  start = bench_now();
  while (bench_now() - start < 10) {
    int status;
    if (waitpid(primary, &status, WNOHANG) == primary) {
      running_pgid = 0;
      break;
    }
    if (probe(port) == 0) {
      up = 1;
      break;
    }
    usleep(50000);
  }
  if (!up) {
    fprintf(stderr, "http bench: %s did not answer on port %d, skipped\n",
            t->name, port);
    t->skip = 1;
    t->why = "did not start";
    cleanup();
    return;
  }
  /* Let every worker come up before measuring. */
  usleep(300000);
  for (int i = 0; i < 20; i++)
    probe(port);
  nw = find_workers(primary, wpids, MAX_WORKERS);
  for (int mode = 0; mode < MODE_COUNT; mode++) {
    double cpu0 = proc_cpu(primary);
    double wcpu0[MAX_WORKERS];
    double wsum = 0;
    double wmax = 0;
    double rps;
    double p99;
    double t0;
    double wall;
    double cpu1;
    for (int i = 0; i < nw; i++)
      wcpu0[i] = proc_cpu(wpids[i]);
    t0 = bench_now();
    if (run_wrk(port, mode, &rps, &p99) != 0)
      continue;
    wall = bench_now() - t0;
    cpu1 = proc_cpu(primary);
    for (int i = 0; i < nw; i++) {
      double d = proc_cpu(wpids[i]) - wcpu0[i];
      wsum += d;
      if (d > wmax)
        wmax = d;
    }
    t->rps[mode][t->n[mode]] = rps;
    t->p99[mode][t->n[mode]] = p99;
    /* A lone process is its own primary and worker: no primary share. */
    t->primary_cpu[mode][t->n[mode]] =
        (nw == 1 && wpids[0] == primary) ? -1 : (cpu1 - cpu0) / wall;
    t->spread[mode][t->n[mode]] = wsum > 0 ? wmax / wsum : -1;
    t->n[mode]++;
    if (mode == MODE_KEEPALIVE) {
      double rss = 0;
      double anon = 0;
      int counted = 0;
      for (int i = 0; i < nw; i++) {
        double kb = proc_rss_kb(wpids[i], "VmRSS:");
        if (kb > 0) {
          rss += kb;
          anon += proc_rss_kb(wpids[i], "RssAnon:");
          counted++;
        }
      }
      if (counted > 0) {
        t->rss_anon[t->nrss] = anon / counted / 1024;
        t->rss[t->nrss++] = rss / counted / 1024;
      }
    }
    fprintf(stderr,
            "round %d %-16s %-9s %9.0f req/s  p99 %7.2f ms  workers %d "
            "primary cpu %.2f  busiest worker %.2f\n",
            round, t->name, mode_names[mode], rps, p99, nw,
            t->primary_cpu[mode][t->n[mode] - 1],
            t->spread[mode][t->n[mode] - 1]);
  }
  cleanup();
}

/* Median of the first n values; -1 when there are none. */
static double med(const double* v, int n) {
  double tmp[MAX_ROUNDS];
  int m = 0;
  for (int i = 0; i < n; i++)
    if (v[i] >= 0)
      tmp[m++] = v[i];
  return m > 0 ? bench_median(tmp, m) : -1;
}

static int wanted(const char* name) {
  const char* p;
  size_t len = strlen(name);
  if (only == NULL)
    return 1;
  for (p = only; (p = strstr(p, name)) != NULL; p += len)
    if ((p == only || p[-1] == ',') && (p[len] == '\0' || p[len] == ','))
      return 1;
  return 0;
}

static void goal(const char* what, double ratio, double want) {
  if (ratio <= 0)
    printf("goal %-46s not measured\n", what);
  else
    printf("goal %-46s %.2fx (want >= %.2fx) %s\n", what, ratio, want,
           ratio >= want ? "met" : "MISSED");
}

int main(int argc, char** argv) {
  static target_t cluster[] = {
      {.name = "herd-rr", .kind = KIND_HERD, .policy = "rr", .workers = 0},
      {.name = "herd-shared",
       .kind = KIND_HERD,
       .policy = "shared",
       .workers = 0},
      {.name = "herd-reuseport",
       .kind = KIND_HERD,
       .policy = "reuseport",
       .workers = 0},
      {.name = "node-rr", .kind = KIND_NODE, .policy = "rr", .workers = 0},
      {.name = "node-none", .kind = KIND_NODE, .policy = "none", .workers = 0},
      {.name = "nginx", .kind = KIND_NGINX, .policy = "", .workers = 0},
      {.name = "herd-standalone",
       .kind = KIND_HELLO,
       .policy = "",
       .workers = 1},
      {.name = "nginx-1worker", .kind = KIND_NGINX, .policy = "", .workers = 1},
  };
  enum { HRR, HSH, HRP, NRR, NNO, NGX, HELLO, NGX1, NT };
  char exe[PATH_MAX];
  ssize_t n;
  char* slash;
  char path[PATH_MAX + 64];

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
      rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
      duration = atoi(argv[++i]);
    else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
      conns = atoi(argv[++i]);
    else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
      workers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--herd-cmd") == 0 && i + 1 < argc)
      herd_cmd = argv[++i];
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      only = argv[++i];
    else if (argv[i][0] != '-')
      src_dir = argv[i];
    else {
      fprintf(stderr,
              "usage: %s [SRC_DIR] [--rounds N] [--duration S] [--conns C] "
              "[--workers W] [--herd-cmd CMD] [--only NAME,...]\n",
              argv[0]);
      return 2;
    }
  }
  if (rounds < 1 || rounds > MAX_ROUNDS || duration < 1 || duration > 60 ||
      conns < 1 || workers < 1 || workers > MAX_WORKERS) {
    fprintf(stderr, "http bench: bad --rounds/--duration/--conns/--workers\n");
    return 2;
  }
  /* The build directory is the one this binary sits in (BUILD/bench/). */
  n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    return 1;
  exe[n] = '\0';
  slash = strrchr(exe, '/');
  *slash = '\0';
  slash = strrchr(exe, '/');
  *slash = '\0';
  snprintf(build_dir, sizeof(build_dir), "%s", exe);

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);
  atexit(cleanup);

  for (int i = 0; i < NT; i++) {
    target_t* t = &cluster[i];
    if (t->workers == 0)
      t->workers = workers;
    if (!wanted(t->name)) {
      t->skip = 1;
      t->why = "not selected";
      continue;
    }
    switch (t->kind) {
      case KIND_HERD:
        snprintf(path, sizeof(path), "%s/herd", build_dir);
        if (herd_cmd == NULL && !exists(path)) {
          t->skip = 1;
          t->why = "no herd binary (build it, or pass --herd-cmd)";
        }
        break;
      case KIND_NODE:
        if (!exists("/usr/bin/node")) {
          t->skip = 1;
          t->why = "no /usr/bin/node";
        }
        break;
      case KIND_NGINX:
        if (!exists("/usr/sbin/nginx")) {
          t->skip = 1;
          t->why = "no /usr/sbin/nginx (Debian nginx-light)";
        }
        break;
      case KIND_HELLO:
        snprintf(path, sizeof(path), "%s/examples/http-hello", build_dir);
        if (!exists(path)) {
          t->skip = 1;
          t->why = "examples/http-hello not built";
        }
        break;
    }
  }
  if (!exists("/usr/bin/wrk")) {
    printf("http bench: skipped: no /usr/bin/wrk (Debian package wrk)\n");
    return 0;
  }
  printf("http bench: wrk -t 2 -c %d -d %ds, %d workers, %d rounds\n", conns,
         duration, workers, rounds);
  for (int i = 0; i < NT; i++)
    if (cluster[i].skip && strcmp(cluster[i].why, "not selected") != 0)
      printf("http bench: %s skipped: %s\n", cluster[i].name, cluster[i].why);
  fflush(stdout);

  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < NT; i++)
      if (!cluster[i].skip)
        run_target(&cluster[i], r);

  /* Figures: herd per policy against Node rr (the seed's default), Node
   * none, and nginx (reported as "nginx", the practical limit). */
  {
    double nrr[MODE_COUNT], nno[MODE_COUNT], ngx[MODE_COUNT];
    double best_close = -1;
    char metric[64];
    for (int m = 0; m < MODE_COUNT; m++) {
      nrr[m] = med(cluster[NRR].rps[m], cluster[NRR].n[m]);
      nno[m] = med(cluster[NNO].rps[m], cluster[NNO].n[m]);
      ngx[m] = med(cluster[NGX].rps[m], cluster[NGX].n[m]);
    }
    for (int i = HRR; i <= HRP; i++) {
      target_t* t = &cluster[i];
      for (int m = 0; m < MODE_COUNT; m++) {
        double v = med(t->rps[m], t->n[m]);
        if (v < 0)
          continue;
        snprintf(metric, sizeof(metric), "%s_rps_%s", mode_names[m], t->policy);
        bench_result("http", metric, "req/s", "higher", v, 3, "node", nrr[m],
                     "node_none", nno[m], "nginx", ngx[m]);
        snprintf(metric, sizeof(metric), "%s_p99_%s", mode_names[m], t->policy);
        bench_result("http", metric, "ms", "lower", med(t->p99[m], t->n[m]), 3,
                     "node", med(cluster[NRR].p99[m], cluster[NRR].n[m]),
                     "node_none", med(cluster[NNO].p99[m], cluster[NNO].n[m]),
                     "nginx", med(cluster[NGX].p99[m], cluster[NGX].n[m]));
        snprintf(metric, sizeof(metric), "%s_primary_cpu_%s", mode_names[m],
                 t->policy);
        if (med(t->primary_cpu[m], t->n[m]) >= 0)
          bench_result("http", metric, "cpu share", "lower",
                       med(t->primary_cpu[m], t->n[m]), 2, "node",
                       med(cluster[NRR].primary_cpu[m], cluster[NRR].n[m]),
                       "node_none",
                       med(cluster[NNO].primary_cpu[m], cluster[NNO].n[m]));
        snprintf(metric, sizeof(metric), "%s_busiest_worker_%s", mode_names[m],
                 t->policy);
        bench_result("http", metric, "share of worker cpu", "lower",
                     med(t->spread[m], t->n[m]), 3, "node",
                     med(cluster[NRR].spread[m], cluster[NRR].n[m]),
                     "node_none",
                     med(cluster[NNO].spread[m], cluster[NNO].n[m]), "nginx",
                     med(cluster[NGX].spread[m], cluster[NGX].n[m]));
        if (m == MODE_CLOSE && v > best_close)
          best_close = v;
      }
      if (t->nrss > 0) {
        snprintf(metric, sizeof(metric), "rss_per_worker_%s", t->policy);
        bench_result("http", metric, "MB", "lower", med(t->rss, t->nrss), 3,
                     "node", med(cluster[NRR].rss, cluster[NRR].nrss),
                     "node_none", med(cluster[NNO].rss, cluster[NNO].nrss),
                     "nginx", med(cluster[NGX].rss, cluster[NGX].nrss));
        snprintf(metric, sizeof(metric), "rss_anon_per_worker_%s", t->policy);
        bench_result("http", metric, "MB", "lower", med(t->rss_anon, t->nrss),
                     3, "node", med(cluster[NRR].rss_anon, cluster[NRR].nrss),
                     "node_none", med(cluster[NNO].rss_anon, cluster[NNO].nrss),
                     "nginx", med(cluster[NGX].rss_anon, cluster[NGX].nrss));
      }
    }
    for (int m = 0; m < MODE_COUNT; m++) {
      double v = med(cluster[HELLO].rps[m], cluster[HELLO].n[m]);
      if (v < 0)
        continue;
      snprintf(metric, sizeof(metric), "standalone_%s_rps", mode_names[m]);
      bench_result("http", metric, "req/s", "higher", v, 1, "nginx",
                   med(cluster[NGX1].rps[m], cluster[NGX1].n[m]));
      snprintf(metric, sizeof(metric), "standalone_%s_p99", mode_names[m]);
      bench_result("http", metric, "ms", "lower",
                   med(cluster[HELLO].p99[m], cluster[HELLO].n[m]), 1, "nginx",
                   med(cluster[NGX1].p99[m], cluster[NGX1].n[m]));
    }
    if (cluster[HELLO].nrss > 0) {
      bench_result("http", "standalone_rss", "MB", "lower",
                   med(cluster[HELLO].rss, cluster[HELLO].nrss), 1, "nginx",
                   med(cluster[NGX1].rss, cluster[NGX1].nrss));
      bench_result("http", "standalone_rss_anon", "MB", "lower",
                   med(cluster[HELLO].rss_anon, cluster[HELLO].nrss), 1,
                   "nginx", med(cluster[NGX1].rss_anon, cluster[NGX1].nrss));
    }

    for (int i = HRR; i <= HRP; i++) {
      double v = med(cluster[i].rps[MODE_KEEPALIVE], cluster[i].n[0]);
      char what[64];
      snprintf(what, sizeof(what), "keep-alive %s vs nginx", cluster[i].policy);
      goal(what, v > 0 && ngx[0] > 0 ? v / ngx[0] : -1, 1.0);
      snprintf(what, sizeof(what), "keep-alive %s vs node rr",
               cluster[i].policy);
      goal(what, v > 0 && nrr[0] > 0 ? v / nrr[0] : -1, 3.5);
    }
    goal("close, best herd policy vs nginx",
         best_close > 0 && ngx[1] > 0 ? best_close / ngx[1] : -1, 0.95);
    {
      double v = med(cluster[HRR].rps[MODE_CLOSE], cluster[HRR].n[1]);
      goal("close rr vs node rr", v > 0 && nrr[1] > 0 ? v / nrr[1] : -1, 3.0);
    }
    {
      double v = med(cluster[HELLO].rps[0], cluster[HELLO].n[0]);
      double l = med(cluster[NGX1].rps[0], cluster[NGX1].n[0]);
      goal("standalone keep-alive vs nginx 1 worker",
           v > 0 && l > 0 ? v / l : -1, 1.0);
    }
    for (int i = HRR; i <= HRP; i++) {
      double v = med(cluster[i].rss, cluster[i].nrss);
      if (v > 0)
        printf("goal rss per worker %-28s %.2f MB (want <= 2 MB) %s\n",
               cluster[i].policy, v, v <= 2 ? "met" : "MISSED");
    }
  }
  return 0;
}
