/* `herd run` running real programs: reloads under load, bad deploys,
 * crash loops, stops, kill -9, PID 1, socket activation, sd_notify and
 * log integrity. Loopback only; every wait has a deadline. */
#include "load.h"
#include "run-util.h"
#include "test-cluster.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static const char* python_server(void) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/test/fixtures/fd3-server.py",
           test_source_dir());
  return path;
}

/* The system's Python: a version manager's shim on PATH (pyenv's is a
 * shell script) can take most of a second to start one. */
static const char* python3(void) {
  return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* A process's start time (clock ticks since boot, /proc/PID/stat field 22),
 * or 0 when it is gone: with pid_max at 32768 and other tests spawning
 * thousands of processes, a pid alone does not name one process for the
 * length of a test. */
static unsigned long long start_time(int pid) {
  char path[64], buf[1024], *p;
  unsigned long long t = 0;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  f = fopen(path, "r");
  if (f == NULL)
    return 0;
  if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')')) != NULL) {
    /* Fields 3.. follow the command's closing parenthesis. */
    int field = 2;
    for (p++; *p != '\0' && field < 22; p++)
      if (*p == ' ')
        field++;
    t = strtoull(p, NULL, 10);
  }
  fclose(f);
  return t;
}

/* Whether (pid, start) is among the n processes seen. */
static int seen_before(const int* pids, const unsigned long long* starts, int n,
                       int pid, unsigned long long start) {
  for (int i = 0; i < n; i++)
    if (pids[i] == pid && starts[i] == start)
      return 1;
  return 0;
}

/* 10 reloads (SIGHUP) under load, half keep-alive and half
 * Connection: close: no request fails, after each reload every worker is
 * a process never seen before (no worker of any earlier generation), and
 * after the stop none is left. */
static void reload_under_load_n(const char* policy, const char* const* prog,
                                int reloads) {
  const char* args[16] = {"run",  "-w", "2",           "--policy",
                          policy, "-l", "127.0.0.1:0", "--"};
  int k = 8, old[8], cur[8], n, seen[2 * 32], nseen = 0;
  unsigned long long seen_start[2 * 32];
  tl_options_t lo;
  tl_load_t* load;
  tl_stats_t st;
  hr_t h;

  for (int i = 0; prog[i] != NULL; i++)
    args[k++] = prog[i];
  args[k] = NULL;
  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  memset(&lo, 0, sizeof(lo));
  lo.port = hr_port(&h, 1000);
  lo.threads = 8;
  lo.keepalive = 2;
  load = tl_start(&lo);
  ASSERT(tl_wait_more(load, 200, 10000));
  n = hr_workers(&h, old, 8);
  ASSERT_EQ(n, 2);
  ASSERT_LE(reloads, 31);
  for (int i = 0; i < 2; i++) {
    seen_start[nseen] = start_time(old[i]);
    seen[nseen++] = old[i];
  }
  for (int r = 0; r < reloads; r++) {
    hr_kill(&h, SIGHUP);
    if (!hr_wait_ready(&h, r + 2, 20000))
      FATAL("reload %d did not end; stderr:\n%s", r + 1, h.err);
    if (!hr_wait_new_workers(&h, old, 2, 2, cur, 15000))
      FATAL("reload %d: the old workers did not go", r + 1);
    /* Load goes on through the new workers. */
    if (!tl_wait_more(load, 100, 10000))
      FATAL("reload %d: no answers after it", r + 1);
    for (int i = 0; i < 2; i++) {
      unsigned long long t = start_time(cur[i]);
      if (seen_before(seen, seen_start, nseen, cur[i], t))
        FATAL("reload %d: worker %d is not new", r + 1, cur[i]);
      seen_start[nseen] = t;
      seen[nseen++] = cur[i];
    }
    memcpy(old, cur, sizeof(cur));
  }
  tl_stop(load, &st);
  if (st.failed != 0)
    FATAL("%llu of %llu requests failed (first: %s); stderr:\n%s",
          (unsigned long long)st.failed,
          (unsigned long long)(st.ok + st.failed), st.first_error, h.err);
  ASSERT_GE(st.ok, (uint64_t)(200 + 100 * reloads));
  /* Every reload was one RELOADING=1 then one READY=1. */
  ASSERT_EQ(h.reloading, reloads);
  ASSERT(strstr(h.err, "reload failed") == NULL);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 15000));
  ASSERT_EQ(h.term_signal, 0);
  if (h.status != 0)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  /* herd reaped every worker it had (none is left, not even a zombie). */
  for (int i = 0; i < nseen; i++)
    if (tc_proc_state(seen[i]) != 0 && start_time(seen[i]) == seen_start[i])
      FATAL("worker %d is still there after herd exited", seen[i]);
  hr_finish(&h);
}

static void reload_under_load(const char* policy, const char* const* prog) {
  reload_under_load_n(policy, prog, 10);
}

/* Node workers too (the seed's program without its per-request log):
 * herd's graceful close in them keeps keep-alive clients whole. */
TEST_IMPL(run_reload_node) {
  char seed[1024];
  const char* prog[] = {"node", seed, "0", "2", NULL};
  snprintf(seed, sizeof(seed), "%s/bench/http-seed.js", test_source_dir());
  reload_under_load_n("reuseport", prog, 5);
  return 0;
}

TEST_IMPL(run_reload_c_shared) {
  const char* prog[] = {hr_fd3_http(), NULL};
  reload_under_load("shared", prog);
  return 0;
}

TEST_IMPL(run_reload_c_reuseport) {
  const char* prog[] = {hr_fd3_http(), NULL};
  reload_under_load("reuseport", prog);
  return 0;
}

TEST_IMPL(run_reload_python_shared) {
  const char* prog[] = {python3(), python_server(), NULL};
  reload_under_load("shared", prog);
  return 0;
}

TEST_IMPL(run_reload_python_reuseport) {
  const char* prog[] = {python3(), python_server(), NULL};
  reload_under_load("reuseport", prog);
  return 0;
}

/* A bad deploy found by a reload leaves the pool as it was: the new
 * version exits at start, is never ready, or is ready only after 5 s
 * (past --ready-timeout). The old workers keep serving through each, no
 * request fails, and the failure is logged; a good deploy then goes
 * through. */
TEST_IMPL(run_bad_deploys) {
  const char* args[] = {"run",
                        "-w",
                        "2",
                        "-l",
                        "127.0.0.1:0",
                        "--ready",
                        "notify",
                        "--ready-timeout",
                        "1500ms",
                        "--graceful-timeout",
                        "2s",
                        "--",
                        hr_script("serve"),
                        NULL};
  static const struct {
    const char* mode;
    const char* says;
  } bad[] = {
      {"exit 3", "exited with status 3"},
      {"never", "not ready within 1500 ms"},
      {"slow 5", "not ready within 1500 ms"},
  };
  int old[8], cur[8], ready = 1;
  tl_options_t lo;
  tl_load_t* load;
  tl_stats_t st;
  hr_t h;

  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  memset(&lo, 0, sizeof(lo));
  lo.port = hr_port(&h, 1000);
  lo.keepalive = 2;
  load = tl_start(&lo);
  ASSERT(tl_wait_more(load, 100, 10000));
  ASSERT_EQ(hr_workers(&h, old, 8), 2);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char failed[32];
    hr_deploy(bad[i].mode);
    hr_kill(&h, SIGHUP);
    /* READY=1 ends a reload, failed or not. */
    if (!hr_wait_ready(&h, ++ready, 15000))
      FATAL("%s: the reload did not end; stderr:\n%s", bad[i].mode, h.err);
    snprintf(failed, sizeof(failed), "reload failed");
    ASSERT(hr_wait_err(&h, bad[i].says, 5000));
    ASSERT(strstr(h.err, failed) != NULL);
    /* The failed successor goes; the old workers are still the pool. */
    ASSERT(tl_wait_more(load, 100, 10000));
    {
      int n = hr_workers(&h, cur, 8);
      uint64_t deadline = tc_now_ms() + 5000;
      while (n != 2 && tc_now_ms() < deadline) {
        uv_run(&h.loop, UV_RUN_ONCE);
        n = hr_workers(&h, cur, 8);
      }
      ASSERT_EQ(n, 2);
      ASSERT_EQ(cur[0], old[0]);
      ASSERT_EQ(cur[1], old[1]);
    }
  }
  /* A good deploy replaces both. */
  hr_deploy("serve");
  hr_kill(&h, SIGHUP);
  ASSERT(hr_wait_ready(&h, ++ready, 15000));
  ASSERT(hr_wait_new_workers(&h, old, 2, 2, cur, 15000));
  ASSERT(tl_wait_more(load, 100, 10000));
  tl_stop(load, &st);
  if (st.failed != 0)
    FATAL("%llu requests failed (first: %s)", (unsigned long long)st.failed,
          st.first_error);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 15000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* A program that keeps crashing: herd gives up after more than
 * --max-restarts crashes in the window, stops, says why, exits 1. One
 * that never starts at all is reported at once (fail fast). */
TEST_IMPL(run_crash_loop) {
  const char* loop_args[] = {"run",
                             "-w",
                             "2",
                             "-l",
                             "127.0.0.1:0",
                             "--ready",
                             "delay:100ms",
                             "--max-restarts",
                             "3",
                             "--restart-window",
                             "1m",
                             "--",
                             hr_script("crash 200"),
                             NULL};
  const char* never_args[] = {"run", "-w", "2", "--", "/bin/false", NULL};
  uint64_t t0;
  hr_t h;

  hr_start(&h, loop_args, NULL);
  ASSERT(hr_wait_exit(&h, 20000));
  if (h.status != 1 ||
      strstr(h.err, "giving up: 4 crashes within 60 s (last: ") == NULL)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  ASSERT(strstr(h.err, "exited with status 1)") != NULL);
  ASSERT(strstr(h.err, "stopped after giving up") != NULL);
  hr_finish(&h);
  hr_script_remove();

  t0 = tc_now_ms();
  hr_start(&h, never_args, NULL);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 1);
  ASSERT(strstr(h.err, "giving up: no worker became ready (false.") != NULL);
  ASSERT(strstr(h.err, "exited with status 1)") != NULL);
  /* Not a minute of restarts: the first failure of each is enough. */
  ASSERT_LE(tc_now_ms() - t0, 5000);
  hr_finish(&h);
  return 0;
}

/* A worker that crashes after living longer than min_uptime (1 s) is
 * restarted at once, not after a backoff. */
TEST_IMPL(run_crash_after_long_life) {
  const char* args[] = {"run",
                        "-w",
                        "1",
                        "-l",
                        "127.0.0.1:0",
                        "--ready",
                        "delay:100ms",
                        "--name",
                        "crash",
                        "--",
                        hr_script("crash 1300"),
                        NULL};
  const char* p;
  hr_t h;
  hr_start(&h, args, NULL);
  if (!hr_wait_err(&h, "exited with status 1; restarting it now", 15000))
    FATAL("stderr:\n%s", h.err ? h.err : "");
  /* And the restart happened. */
  p = strstr(h.err, "restarting it now");
  ASSERT(hr_wait_err(&h, "started\n", 1000));
  {
    uint64_t deadline = tc_now_ms() + 2000;
    while (strstr(p, "] started") == NULL && tc_now_ms() < deadline) {
      size_t off = (size_t)(p - h.err);
      uv_run(&h.loop, UV_RUN_ONCE);
      p = h.err + off;
    }
    ASSERT(strstr(p, "crash.0[") != NULL && strstr(p, "] started") != NULL);
  }
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* Slow requests in flight when the stop comes are answered: each worker
 * gets SIGTERM, finishes what it has, and herd exits 0. */
typedef struct {
  int port;
  int fd;
  int status;
  char body[64];
} slow_req_t;

/* A keep-alive connection that has been answered once is accepted by a
 * worker; its second request (slow) is then in flight there. */
static void slow_open(slow_req_t* r) {
  static const char first[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char slow[] = "GET /sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n";
  char buf[1024];
  ssize_t n;
  {
    struct sockaddr_in sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)r->port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr*)&sin, sizeof(sin)), 0);
    ASSERT_EQ(write(fd, first, sizeof(first) - 1), (ssize_t)sizeof(first) - 1);
    n = read(fd, buf, sizeof(buf) - 1);
    ASSERT(n > 0);
    buf[n] = '\0';
    ASSERT(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    ASSERT_EQ(write(fd, slow, sizeof(slow) - 1), (ssize_t)sizeof(slow) - 1);
    r->fd = fd;
  }
}

TEST_IMPL(run_graceful_stop_inflight) {
  const char* args[] = {"run",         "-w", "2",           "-l",
                        "127.0.0.1:0", "--", hr_fd3_http(), NULL};
  slow_req_t reqs[6];
  uint64_t t0;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  hr_port(&h, 1000);
  for (int i = 0; i < 6; i++) {
    memset(&reqs[i], 0, sizeof(reqs[i]));
    reqs[i].port = h.port;
    slow_open(&reqs[i]);
  }
  t0 = tc_now_ms();
  hr_kill(&h, SIGTERM);
  for (int i = 0; i < 6; i++) {
    reqs[i].status =
        tc_http_recv(reqs[i].fd, reqs[i].body, sizeof(reqs[i].body), 10000);
    ASSERT_EQ(reqs[i].status, 200);
  }
  ASSERT(hr_wait_exit(&h, 10000));
  if (h.status != 0)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  /* It waited for them, and no longer than needed. */
  ASSERT_GE(tc_now_ms() - t0, 1000);
  ASSERT(strstr(h.err, "SIGKILL") == NULL);
  hr_finish(&h);
  return 0;
}

/* A worker that ignores SIGTERM is killed, with its process group, at the
 * graceful deadline; herd then exits 128 + SIGTERM. */
TEST_IMPL(run_stop_kills_at_deadline) {
  const char* args[] = {"run",
                        "-w",
                        "1",
                        "--graceful-timeout",
                        "1s",
                        "--ready",
                        "delay:100ms",
                        "--name",
                        "hang",
                        "--",
                        hr_script("hang"),
                        NULL};
  int workers[4], kids[16], nkids;
  uint64_t t0;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  ASSERT_EQ(hr_workers(&h, workers, 4), 1);
  /* Its children: `sleep 1000` and the loop's `sleep 1`. */
  {
    uint64_t deadline = tc_now_ms() + 5000;
    while ((nkids = tc_children(workers[0], kids, 16)) < 2 &&
           tc_now_ms() < deadline)
      uv_run(&h.loop, UV_RUN_NOWAIT);
    ASSERT_GE(nkids, 2);
  }
  t0 = tc_now_ms();
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_GE(tc_now_ms() - t0, 900);
  ASSERT_EQ(h.status, 128 + SIGTERM);
  ASSERT(strstr(h.err, "hang.0[") != NULL);
  ASSERT(strstr(h.err,
                "did not stop within 1000 ms: SIGKILL to its process "
                "group") != NULL);
  for (int i = 0; i < nkids; i++)
    ASSERT(kill(kids[i], 0) != 0 || tc_wait_state(kids[i], 0, 2000));
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* kill -9 of herd: every worker and everything they started is gone
 * within a second, and the port can be bound again. */
TEST_IMPL(run_kill9_leaves_nothing) {
  const char* args[] = {"run",         "-w",          "2",
                        "-l",          "127.0.0.1:0", "--ready",
                        "delay:100ms", "--",          hr_script("hang"),
                        NULL};
  int pids[64], n = 0, workers[4], port, fd;
  herd_listen_addr_t a;
  char addr[32];
  uint64_t t0;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  port = hr_port(&h, 1000);
  ASSERT_EQ(hr_workers(&h, workers, 4), 2);
  for (int w = 0; w < 2; w++) {
    uint64_t deadline = tc_now_ms() + 5000;
    int k;
    pids[n++] = workers[w];
    while ((k = tc_children(workers[w], pids + n, 16)) < 2 &&
           tc_now_ms() < deadline)
      uv_run(&h.loop, UV_RUN_NOWAIT);
    ASSERT_GE(k, 2);
    n += k;
  }
  t0 = tc_now_ms();
  ASSERT_EQ(kill(h.pid, SIGKILL), 0);
  for (int i = 0; i < n; i++) {
    uint64_t now = tc_now_ms();
    int left = now - t0 < 1000 ? (int)(1000 - (now - t0)) : 0;
    /* Gone: no such process, or a zombie its new parent has yet to
     * reap. */
    if (kill(pids[i], 0) == 0 && !tc_wait_state(pids[i], 0, left) &&
        tc_proc_state(pids[i]) != 'Z')
      FATAL("process %d is still there %llu ms after kill -9", pids[i],
            (unsigned long long)(tc_now_ms() - t0));
  }
  ASSERT(hr_wait_exit(&h, 5000));
  ASSERT_EQ(h.term_signal, SIGKILL);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  ASSERT_OK(herd_listen_parse(addr, &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  close(fd);
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* herd as PID 1 of a PID namespace (a container's entrypoint): it reaps
 * the orphans the kernel hands it, stops on SIGTERM and exits 0. */
static int pid1_settled(hr_t* h, void* arg) {
  int* herd = arg;
  int kids[8], n;
  if (*herd == 0 && tc_children(h->pid, herd, 1) != 1)
    return 0;
  /* The worker and the sentinel, every orphan reaped. */
  n = tc_children(*herd, kids, 8);
  if (n != 2)
    return 0;
  for (int i = 0; i < n; i++)
    if (tc_proc_state(kids[i]) == 'Z')
      return 0;
  return 1;
}

TEST_IMPL(run_pid1_reaps_orphans) {
  const char* args[] = {
      "-fp", "--mount-proc", hr_herd(),     "run", "-w",
      "1",   "-l",           "127.0.0.1:0", "--",  hr_script("orphans 100"),
      NULL};
  int herd = 0;
  hr_t h;

  if (geteuid() != 0 || access("/usr/bin/unshare", X_OK) != 0) {
    fprintf(stderr, "needs root and unshare: skipped\n");
    hr_script_remove();
    return 0;
  }
  hr_start_file(&h, "/usr/bin/unshare", args, NULL);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  if (!hr_wait(&h, pid1_settled, &herd, 10000))
    FATAL("orphans left unreaped; stderr:\n%s", h.err);
  ASSERT_EQ(kill(herd, SIGTERM), 0);
  ASSERT(hr_wait_exit(&h, 10000));
  if (h.status != 0 || strstr(h.err, "stopped; 100 orphans reaped") == NULL)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* Socket activation: started by systemd-socket-activate, herd adopts the
 * socket it passed (LISTEN_FDS) and its workers serve it.
 * systemd-socket-activate wants a port number (not 0): one below the
 * ephemeral range, which other tests' connections do not take, picked at
 * random, and another if it is in use. */
TEST_IMPL(run_socket_activation) {
  char listen[32], body[64];
  /* NOTIFY_SOCKET is passed on only when asked for. */
  const char* args[] = {"-l", listen, "-E", "NOTIFY_SOCKET", hr_herd(), "run",
                        "-w", "2",    "--", hr_fd3_http(),   NULL};
  int port = 0;
  hr_t h;
  if (access("/usr/bin/systemd-socket-activate", X_OK) != 0) {
    fprintf(stderr, "no systemd-socket-activate: skipped\n");
    return 0;
  }
  srand((unsigned)getpid());
  for (int attempt = 0;; attempt++) {
    port = 20000 + rand() % 10000;
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    hr_start_file(&h, "/usr/bin/systemd-socket-activate", args, NULL);
    ASSERT(hr_wait_err(&h, "Listening on", 10000) || h.closed);
    if (strstr(h.err, "Listening on") != NULL)
      break;
    ASSERT(attempt < 5);
    hr_finish(&h);
  }
  /* It starts herd at the first connection, which herd's workers then
   * answer. */
  ASSERT_EQ(tc_http_get(port, body, sizeof(body), 10000), 200);
  ASSERT(atoi(body) > 0);
  ASSERT(hr_wait_ready(&h, 1, 10000));
  ASSERT(strstr(h.err, "(inherited)") != NULL);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  return 0;
}

/* What systemd sees of herd (Type=notify): READY=1 once the pool is up,
 * RELOADING=1 then READY=1 around a reload, STOPPING=1, in that order. */
TEST_IMPL(run_sd_notify_order) {
  const char* args[] = {"run",         "-w", "2",           "-l",
                        "127.0.0.1:0", "--", hr_fd3_http(), NULL};
  hr_t h;
  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  hr_kill(&h, SIGHUP);
  ASSERT(hr_wait_ready(&h, 2, 15000));
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  h.notes[h.nnotes] = '\0';
  ASSERT_STR_EQ(h.notes, "RLRS");
  hr_finish(&h);
  return 0;
}

/* Log integrity: 8 workers write 10000 lines each, every 97th of 8 KiB
 * (more than a pipe writes atomically), through buffered stdio, so lines
 * reach herd in pieces and mixed: each arrives whole, once, in order, and
 * attributed to the worker that wrote it. */
#define LOG_LINES 10000

static size_t log_filler(int seq) {
  return seq % 97 == 0 ? 8192 : 40 + (size_t)(seq % 7);
}

HELPER_IMPL(run_log_lines) {
  herd_sd_notifier_t n;
  uv_loop_t loop;
  int id = atoi(getenv("HERD_WORKER_ID")), pid = (int)getpid();
  char filler[8193];
  (void)argc;
  (void)argv;
  setvbuf(stdout, NULL, _IOFBF, 16384);
  for (int seq = 0; seq < LOG_LINES; seq++) {
    size_t len = log_filler(seq);
    memset(filler, 'a' + seq % 26, len);
    filler[len] = '\0';
    printf("%d %d %d %s\n", id, pid, seq, filler);
  }
  fflush(stdout);
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_sd_notifier_init(&loop, &n, HERD_SD_UNSET_ENV));
  ASSERT_EQ(herd_sd_notify(&n, "READY=1"), 1);
  herd_sd_notifier_close(&n, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  for (;;)
    pause();
}

static int log_lines_cond(hr_t* h, void* arg) {
  size_t want = *(size_t*)arg, n = 0;
  for (const char* p = h->out; p != NULL && (p = strchr(p, '\n')) != NULL; p++)
    n++;
  return n >= want || h->exited;
}

TEST_IMPL(run_log_integrity) {
  const char* args[] = {"run",           "-w",     "8",  "--name",   "logt",
                        "--ready",       "notify", "--", test_exe(), "--helper",
                        "run_log_lines", NULL};
  size_t want = 8 * LOG_LINES;
  int next[8], pids[8];
  const char* p;
  size_t lines = 0;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 30000));
  if (!hr_wait(&h, log_lines_cond, &want, 60000))
    FATAL("not every line came");
  memset(next, 0, sizeof(next));
  memset(pids, 0, sizeof(pids));
  for (p = h.out; *p != '\0';) {
    const char* end = strchr(p, '\n');
    int slot, ppid, id, pid, seq, off = 0;
    size_t flen;
    ASSERT(end != NULL);
    if (sscanf(p, "logt.%d[%d] %d %d %d %n", &slot, &ppid, &id, &pid, &seq,
               &off) != 5 ||
        off == 0)
      FATAL("a line not whole or not attributed: %.80s", p);
    ASSERT(slot >= 0 && slot < 8);
    ASSERT_EQ(slot, id);
    ASSERT_EQ(ppid, pid);
    if (pids[slot] == 0)
      pids[slot] = pid;
    ASSERT_EQ(pids[slot], pid);
    ASSERT_EQ(seq, next[slot]);
    next[slot]++;
    flen = log_filler(seq);
    ASSERT_EQ((size_t)(end - (p + off)), flen);
    for (size_t i = 0; i < flen; i++)
      if (p[off + (int)i] != 'a' + seq % 26)
        FATAL("line %d of worker %d is mixed with another", seq, slot);
    lines++;
    p = end + 1;
  }
  ASSERT_EQ(lines, want);
  for (int i = 0; i < 8; i++)
    ASSERT_EQ(next[i], LOG_LINES);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  return 0;
}

static int workers_cond(hr_t* h, void* arg) {
  int pids[16];
  return hr_workers(h, pids, 16) == *(int*)arg;
}

/* SIGTTIN adds a worker, SIGTTOU retires one (under reuseport its socket
 * is steered around and drained first): no request fails meanwhile. */
static void scale_under_load(const char* policy) {
  const char* args[] = {"run", "-w",          "2",  "--policy",    policy,
                        "-l",  "127.0.0.1:0", "--", hr_fd3_http(), NULL};
  tl_options_t lo;
  tl_load_t* load;
  tl_stats_t st;
  int want;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  memset(&lo, 0, sizeof(lo));
  lo.port = hr_port(&h, 1000);
  lo.threads = 8;
  lo.keepalive = 2;
  load = tl_start(&lo);
  ASSERT(tl_wait_more(load, 200, 10000));
  hr_kill(&h, SIGTTIN);
  want = 3;
  ASSERT(hr_wait(&h, workers_cond, &want, 10000));
  ASSERT(hr_wait_err(&h, "scaled to 3 workers", 5000));
  ASSERT(tl_wait_more(load, 300, 10000));
  hr_kill(&h, SIGTTOU);
  ASSERT(hr_wait_err(&h, "scaled to 2 workers", 5000));
  want = 2;
  ASSERT(hr_wait(&h, workers_cond, &want, 10000));
  ASSERT(tl_wait_more(load, 300, 10000));
  hr_kill(&h, SIGTTOU);
  want = 1;
  ASSERT(hr_wait(&h, workers_cond, &want, 10000));
  ASSERT(tl_wait_more(load, 300, 10000));
  /* Not below one. */
  hr_kill(&h, SIGTTOU);
  ASSERT(hr_wait_err(&h, "SIGTTOU ignored: the pool has 1 worker", 5000));
  tl_stop(load, &st);
  if (st.failed != 0)
    FATAL("%s: %llu requests failed (first: %s)", policy,
          (unsigned long long)st.failed, st.first_error);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
}

TEST_IMPL(run_scale_ttin_ttou) {
  scale_under_load("reuseport");
  scale_under_load("shared");
  return 0;
}

/* USR1 and USR2 are passed on to every worker (to reopen logs, say). */
static int usr1_cond(hr_t* h, void* arg) {
  int n = 0;
  (void)arg;
  for (const char* p = h->out; p != NULL && (p = strstr(p, "got USR1")); p++)
    n++;
  return n >= 2;
}

TEST_IMPL(run_passes_usr1) {
  const char* args[] = {
      "run", "-w", "2", "--ready", "delay:100ms", "--", hr_script("usr1"),
      NULL};
  hr_t h;
  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  hr_kill(&h, SIGUSR1);
  ASSERT(hr_wait(&h, usr1_cond, NULL, 10000));
  /* herd itself goes on. */
  ASSERT(!h.exited);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* The seed's program, unmodified (test/fixtures/seed.js), with herd as its
 * primary: `ab -n 20000 -c 32 -k` without a failed request under each
 * policy, every process.send() counted, its hard-coded listen(8000)
 * served on herd's address; SIGTERM then stops it, exit 0, nothing left. */
static void ab_done(tc_ab_t* ab) {
  *(int*)ab->data = 1;
}

static int flag_cond(hr_t* h, void* arg) {
  (void)h;
  return *(int*)arg;
}

static void seed_under_herd(const char* policy) {
  char seed[1024], want[64];
  const char* args[] = {"run",         "-w", "2",    "--policy", policy, "-l",
                        "127.0.0.1:0", "--", "node", seed,       NULL};
  int done = 0, workers[8], n;
  unsigned long long started[8];
  tc_ab_t ab;
  hr_t h;

  snprintf(seed, sizeof(seed), "%s/test/fixtures/seed.js", test_source_dir());
  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 30000))
    FATAL("%s: not ready; stderr:\n%s", policy, h.err ? h.err : "");
  hr_port(&h, 1000);
  ASSERT(strstr(h.err, "listen(:8000) served on 127.0.0.1:") != NULL);
  n = hr_workers(&h, workers, 8);
  ASSERT_EQ(n, 2);
  for (int i = 0; i < n; i++)
    started[i] = start_time(workers[i]);
  memset(&ab, 0, sizeof(ab));
  ab.done = ab_done;
  ab.data = &done;
  tc_ab_start(&h.loop, &ab, h.port, 20000, 32, 1);
  if (!hr_wait(&h, flag_cond, &done, 110000))
    FATAL("%s: ab did not finish", policy);
  if (ab.status != 0 || ab.complete != 20000 || ab.failed != 0 ||
      ab.non2xx != 0)
    FATAL("%s: ab exit %lld, %lld complete, %lld failed, %lld non-2xx:\n%s",
          policy, (long long)ab.status, ab.complete, ab.failed, ab.non2xx,
          ab.out ? ab.out : "");
  tc_ab_free(&ab);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 20000));
  if (h.status != 0)
    FATAL("%s: exit %lld; stderr:\n%s", policy, (long long)h.status, h.err);
  /* Every request's process.send() reached herd. */
  snprintf(want, sizeof(want), "messages: notifyRequest 20000\n");
  if (strstr(h.err, want) == NULL)
    FATAL("%s: stderr:\n%s", policy, h.err);
  /* Nothing left: the workers are gone (herd reaped them; no orphan). */
  for (int i = 0; i < n; i++)
    ASSERT(tc_proc_state(workers[i]) == 0 ||
           start_time(workers[i]) != started[i]);
  hr_finish(&h);
}

TEST_IMPL(run_seed_rr) {
  seed_under_herd("rr");
  return 0;
}

TEST_IMPL(run_seed_shared) {
  seed_under_herd("shared");
  return 0;
}

TEST_IMPL(run_seed_reuseport) {
  seed_under_herd("reuseport");
  return 0;
}
