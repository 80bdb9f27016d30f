/* `herd run`: what docs/run.md promises beyond reloads and load. A
 * second stop signal stops at once; a Node server that never mentions
 * cluster is clustered; --user really runs the workers as that user on
 * sockets bound as root; HERD_WORKER_ID is the slot, across restarts and
 * reloads; what systemd sees (STATUS=, MONOTONIC_USEC=, WATCHDOG=1);
 * Node's listen({fd: 3}) under both worker kinds. Loopback only; every
 * wait has a deadline. */
#include "run-util.h"
#include "test-cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char* fixture(const char* name) {
  static char path[2][1024];
  static int turn;
  char* p = path[turn++ & 1];
  snprintf(p, sizeof(path[0]), "%s/test/fixtures/%s", test_source_dir(), name);
  return p;
}

/* The Uid: line of /proc/PID/status: real, effective, saved, fs. */
static int proc_uids(int pid, unsigned uids[4]) {
  char path[64], line[256];
  FILE* f;
  int found = 0;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  f = fopen(path, "re");
  if (f == NULL)
    return 0;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "Uid: %u %u %u %u", &uids[0], &uids[1], &uids[2],
               &uids[3]) == 4)
      found = 1;
  fclose(f);
  return found;
}

/* Whether `pid` is gone (or a zombie its parent has yet to reap) within
 * ms. */
static int gone(int pid, int ms) {
  return kill(pid, 0) != 0 || tc_wait_state(pid, 0, ms) ||
         tc_proc_state(pid) == 'Z';
}

/* A second SIGTERM or SIGINT during a graceful stop stops at once: the
 * workers ignore SIGTERM and the graceful timeout is 30 s, yet herd exits
 * within a few seconds of the second signal with 128 + the first, and
 * nothing of the workers is left. */
static void second_signal(int first, int second) {
  const char* args[] = {"run",
                        "-w",
                        "2",
                        "--graceful-timeout",
                        "30s",
                        "--ready",
                        "delay:100ms",
                        "--name",
                        "hang",
                        "--",
                        hr_script("hang"),
                        NULL};
  int pids[64], n = 0, workers[4];
  uint64_t t0;
  hr_t h;

  hr_start(&h, args, NULL);
  ASSERT(hr_wait_ready(&h, 1, 15000));
  ASSERT_EQ(hr_workers(&h, workers, 4), 2);
  /* Each worker's `sleep 1000` and the loop's `sleep 1`. */
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
  hr_kill(&h, first);
  if (!hr_wait_err(&h, "stopping 2 workers\n", 5000))
    FATAL("no graceful stop; stderr:\n%s", h.err);
  /* The graceful stop is under way: the workers ignored their SIGTERM. */
  ASSERT(!h.exited);
  ASSERT_EQ(kill(workers[0], 0), 0);
  t0 = tc_now_ms();
  hr_kill(&h, second);
  if (!hr_wait_exit(&h, 5000))
    FATAL("herd still runs 5 s after a second signal; stderr:\n%s", h.err);
  ASSERT_LE(tc_now_ms() - t0, 3000);
  ASSERT_EQ(h.term_signal, 0);
  if (h.status != 128 + first)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  /* Not the deadline's SIGKILL: the second signal's. */
  ASSERT(strstr(h.err, "did not stop within") == NULL);
  for (int i = 0; i < n; i++)
    if (!gone(pids[i], 2000))
      FATAL("process %d is still there after herd exited", pids[i]);
  hr_finish(&h);
  hr_script_remove();
}

TEST_IMPL(run_stop_second_signal) {
  second_signal(SIGTERM, SIGTERM);
  second_signal(SIGINT, SIGINT);
  second_signal(SIGINT, SIGTERM);
  return 0;
}

/* One line "NAME.SLOT[PID] id=ID pid=PID uid=UID" of the `id` script
 * for `pid` on herd's stdout: 1 and slot, id, uid filled, or 0. */
static int id_line(hr_t* h, int pid, int* slot, int* id, unsigned* uid) {
  for (const char* p = h->out; p != NULL && *p != '\0';) {
    const char* end = strchr(p, '\n');
    const char* b = strchr(p, '.');
    int s, ppid, i, spid;
    unsigned u;
    if (end == NULL)
      break;
    if (b != NULL && b < end &&
        sscanf(b, ".%d[%d] id=%d pid=%d uid=%u", &s, &ppid, &i, &spid, &u) ==
            5 &&
        ppid == pid) {
      ASSERT_EQ(spid, pid); /* the script execs fd3-http: one process */
      *slot = s;
      *id = i;
      *uid = u;
      return 1;
    }
    p = end + 1;
  }
  return 0;
}

typedef struct {
  const int* pids;
  int n;
} pids_t;

static int id_lines_cond(hr_t* h, void* arg) {
  pids_t* w = arg;
  int slot, id;
  unsigned uid;
  for (int i = 0; i < w->n; i++)
    if (!id_line(h, w->pids[i], &slot, &id, &uid))
      return h->exited;
  return 1;
}

/* The slot and HERD_WORKER_ID of each of pids[0..n), which must agree;
 * ids[] gets the ids. */
static void worker_ids(hr_t* h, const int* pids, int n, int* ids) {
  pids_t w = {pids, n};
  if (!hr_wait(h, id_lines_cond, &w, 10000))
    FATAL("not every worker said its id; stdout:\n%s", h->out ? h->out : "");
  for (int i = 0; i < n; i++) {
    int slot;
    unsigned uid;
    ASSERT(id_line(h, pids[i], &slot, &ids[i], &uid));
    ASSERT_EQ(ids[i], slot);
  }
}

static int contains(const int* a, int n, int v) {
  for (int i = 0; i < n; i++)
    if (a[i] == v)
      return 1;
  return 0;
}

/* HERD_WORKER_ID is the slot: 0 to N-1, and the same for the process
 * that replaces a worker killed in that slot and for each slot's new
 * process after a reload. */
TEST_IMPL(run_worker_id_stable) {
  const char* args[] = {"run",           "-w",     "3",   "-l",
                        "127.0.0.1:0",   "--name", "wid", "--",
                        hr_script("id"), NULL};
  int old[8], cur[8], ids[8], fresh = 0, victim = -1;
  hr_t h;

  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  ASSERT_EQ(hr_workers(&h, old, 8), 3);
  worker_ids(&h, old, 3, ids);
  for (int i = 0; i < 3; i++) {
    ASSERT(contains(ids, 3, i));
    if (ids[i] == 1)
      victim = old[i];
  }
  ASSERT(victim > 0);

  /* A crash: the slot's new process has the same id. */
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  if (!hr_wait_new_workers(&h, &victim, 1, 3, cur, 10000))
    FATAL("worker %d was not replaced; stderr:\n%s", victim, h.err);
  for (int i = 0; i < 3; i++)
    if (!contains(old, 3, cur[i]))
      fresh = cur[i];
  ASSERT(fresh > 0);
  worker_ids(&h, &fresh, 1, ids);
  ASSERT_EQ(ids[0], 1);

  /* A reload: every slot's new process has its slot's id. */
  memcpy(old, cur, sizeof(cur));
  hr_kill(&h, SIGHUP);
  ASSERT(hr_wait_ready(&h, 2, 20000));
  if (!hr_wait_new_workers(&h, old, 3, 3, cur, 10000))
    FATAL("the old workers did not go; stderr:\n%s", h.err);
  worker_ids(&h, cur, 3, ids);
  for (int i = 0; i < 3; i++)
    ASSERT(contains(ids, 3, i));

  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  hr_finish(&h);
  hr_script_remove();
  return 0;
}

/* The message of herd's that begins with `prefix`, or NULL. */
static const char* message(hr_t* h, const char* prefix) {
  size_t n = strlen(prefix);
  for (const char* p = h->msgs; p != NULL && *p != '\0';) {
    const char* end = strstr(p, "\n\n");
    if (strncmp(p, prefix, n) == 0)
      return p;
    if (end == NULL)
      break;
    p = end + 2;
  }
  return NULL;
}

static int watchdogs_cond(hr_t* h, void* arg) {
  return h->watchdogs >= *(int*)arg || h->exited;
}

/* Whether /proc/PID/environ holds an entry starting with `prefix`. */
static int environ_has(int pid, const char* prefix) {
  char path[64], buf[65536];
  size_t n, len = strlen(prefix);
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/environ", pid);
  f = fopen(path, "re");
  ASSERT(f != NULL);
  n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  for (size_t i = 0; i < n; i += strlen(buf + i) + 1)
    if (strncmp(buf + i, prefix, len) == 0)
      return 1;
  return 0;
}

/* What systemd sees of herd under Type=notify and WatchdogSec=: STATUS=
 * with the counts of ready workers, READY=1 with "2 of 2", RELOADING=1
 * with MONOTONIC_USEC= (CLOCK_MONOTONIC, now), ", stopping" at the stop;
 * with WATCHDOG_USEC for herd (WATCHDOG_PID unset, or herd's own pid),
 * WATCHDOG=1 every half period; with WATCHDOG_PID another process's, none.
 * The workers inherit neither the watchdog nor systemd's socket. */
static void notify_run(const char* watchdog_pid) {
  char pidvar[64];
  const char* env[] = {"WATCHDOG_USEC=200000", NULL, NULL};
  const char* args[] = {"-c", NULL,          NULL, "run",         "-w", "2",
                        "-l", "127.0.0.1:0", "--", hr_fd3_http(), NULL};
  const char* m;
  int workers[4], want;
  unsigned long long usec;
  struct timespec ts;
  uint64_t t0;
  hr_t h;

  /* LISTEN_PID's trick: the shell's $$ is herd's pid once it execs. */
  if (watchdog_pid == NULL)
    args[1] = "exec \"$0\" \"$@\"";
  else if (strcmp(watchdog_pid, "$$") == 0)
    args[1] = "WATCHDOG_PID=$$ exec \"$0\" \"$@\"";
  else {
    snprintf(pidvar, sizeof(pidvar), "WATCHDOG_PID=%s", watchdog_pid);
    env[1] = pidvar;
    args[1] = "exec \"$0\" \"$@\"";
  }
  args[2] = hr_herd();
  t0 = tc_now_ms();
  hr_start_file(&h, "/bin/sh", args, env);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  ASSERT(message(&h, "READY=1\nSTATUS=2 of 2 workers ready\n") != NULL);
  ASSERT_EQ(hr_workers(&h, workers, 4), 2);
  for (int i = 0; i < 2; i++) {
    ASSERT(!environ_has(workers[i], "WATCHDOG_USEC="));
    ASSERT(!environ_has(workers[i], "WATCHDOG_PID="));
    ASSERT(environ_has(workers[i], "NOTIFY_SOCKET="));
  }

  hr_kill(&h, SIGHUP);
  ASSERT(hr_wait_ready(&h, 2, 20000));
  m = message(&h, "RELOADING=1\nMONOTONIC_USEC=");
  if (m == NULL)
    FATAL("no RELOADING=1 with MONOTONIC_USEC=; messages:\n%s", h.msgs);
  usec = strtoull(m + strlen("RELOADING=1\nMONOTONIC_USEC="), NULL, 10);
  ASSERT_EQ(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
  /* Taken in the last minute, on the clock systemd reads. */
  ASSERT(usec <= (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000ULL);
  ASSERT(usec + 60000000ULL >= (unsigned long long)ts.tv_sec * 1000000ULL);
  ASSERT(strstr(m, "\nSTATUS=reloading\n\n") != NULL);

  if (watchdog_pid == NULL || strcmp(watchdog_pid, "$$") == 0) {
    /* Every 100 ms: 5 more within 2 s. */
    want = h.watchdogs + 5;
    if (!hr_wait(&h, watchdogs_cond, &want, 2000))
      FATAL("%d WATCHDOG=1 in %llu ms", h.watchdogs,
            (unsigned long long)(tc_now_ms() - t0));
    /* The first within the first period. */
    ASSERT_LE(h.watchdog_ms[0] - t0, 1000);
  } else {
    /* Not herd's watchdog: none in 5 periods. */
    want = 1;
    if (hr_wait(&h, watchdogs_cond, &want, 500))
      FATAL("WATCHDOG=1 for another process's watchdog; messages:\n%s", h.msgs);
  }
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  ASSERT_EQ(h.status, 0);
  ASSERT(message(&h, "STOPPING=1") != NULL);
  ASSERT(strstr(h.msgs, "STATUS=0 of 2 workers ready, stopping\n") != NULL);
  if (watchdog_pid != NULL && strcmp(watchdog_pid, "$$") != 0)
    ASSERT_EQ(h.watchdogs, 0);
  hr_finish(&h);
}

TEST_IMPL(run_sd_notify_watchdog) {
  notify_run(NULL);
  notify_run("$$");
  notify_run("1");
  return 0;
}

static int closed_cond(hr_t* h, void* arg) {
  (void)arg;
  return h->closed;
}

/* GET / on a unix socket, Connection: close: the status or -1. */
static int unix_get(const char* path, char* body, size_t cap) {
  static const char req[] =
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  struct sockaddr_un sun;
  struct timeval tv = {5, 0};
  char buf[1024];
  size_t len = 0;
  ssize_t n;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), status = -1;
  const char* b;
  ASSERT(fd >= 0);
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
  ASSERT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
  if (connect(fd, (struct sockaddr*)&sun, sizeof(sun)) != 0 ||
      write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
    close(fd);
    return -1;
  }
  while (len < sizeof(buf) - 1 &&
         (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
    len += (size_t)n;
  close(fd);
  buf[len] = '\0';
  if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
    return -1;
  b = strstr(buf, "\r\n\r\n");
  snprintf(body, cap, "%s", b != NULL ? b + 4 : "");
  return status;
}

/* A port below 1024 that is free now (only root may bind it). */
static int low_port(void) {
  srand((unsigned)getpid());
  for (int attempt = 0; attempt < 50; attempt++) {
    char addr[32];
    herd_listen_addr_t a;
    int fd, port = 600 + rand() % 400;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ASSERT_OK(herd_listen_parse(addr, &a));
    if (herd_listen_bind(&a, NULL, &fd) == 0) {
      close(fd);
      return port;
    }
  }
  FATAL("no free port below 1024");
  return -1;
}

/* --user nobody: herd binds as root (a port below 1024, a unix socket in
 * a directory only root may write), then herd and every worker run as
 * nobody, real, effective and saved uid alike (the worker says its
 * `id -u` too), and serve both sockets; the stop is clean, and herd says
 * that it could not remove the socket file as nobody. */
TEST_IMPL(run_user_workers) {
  char dir[64], sock[96], lsock[104], tcp[32], body[64], want[192];
  const char* args[] = {"run", "--user", "nobody", "-w",  "2",  "-l", tcp,
                        "-l",  lsock,    "--name", "usr", "--", NULL, NULL};
  int workers[4], served[2] = {0, 0};
  unsigned uids[4];
  struct passwd* pw;
  struct stat st;
  hr_t h;

  if (geteuid() != 0) {
    fprintf(stderr, "not root: --user cannot be tried, skipped\n");
    return 0;
  }
  pw = getpwnam("nobody");
  if (pw == NULL || pw->pw_uid == 0) {
    fprintf(stderr, "no user nobody: skipped\n");
    return 0;
  }
  snprintf(dir, sizeof(dir), "/tmp/herd-run-root-%d", (int)getpid());
  ASSERT_EQ(mkdir(dir, 0700), 0);
  snprintf(sock, sizeof(sock), "%s/s.sock", dir);
  snprintf(lsock, sizeof(lsock), "unix:%s", sock);
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", low_port());
  args[12] = hr_script("id");
  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  ASSERT(proc_uids(h.pid, uids));
  for (int k = 0; k < 4; k++)
    ASSERT_EQ(uids[k], pw->pw_uid);
  ASSERT_EQ(hr_workers(&h, workers, 4), 2);
  for (int i = 0; i < 2; i++) {
    int ids[1];
    int slot, id;
    unsigned uid;
    ASSERT(proc_uids(workers[i], uids));
    for (int k = 0; k < 4; k++)
      ASSERT_EQ(uids[k], pw->pw_uid);
    worker_ids(&h, &workers[i], 1, ids);
    ASSERT(id_line(&h, workers[i], &slot, &id, &uid));
    ASSERT_EQ(uid, pw->pw_uid);
  }
  /* Both sockets, bound as root, are served by the workers. */
  ASSERT_EQ(tc_http_get(hr_port(&h, 1000), body, sizeof(body), 10000), 200);
  served[0] = atoi(body);
  ASSERT(contains(workers, 2, served[0]));
  ASSERT_EQ(unix_get(sock, body, sizeof(body)), 200);
  served[1] = atoi(body);
  ASSERT(contains(workers, 2, served[1]));

  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 10000));
  if (h.status != 0)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  for (int i = 0; i < 2; i++)
    ASSERT(gone(workers[i], 2000));
  /* nobody may not remove the socket file from root's directory: herd
   * says so (the file stays, for the next herd to take over). */
  ASSERT(hr_wait(&h, closed_cond, NULL, 5000));
  snprintf(want, sizeof(want),
           "herd: cannot remove %s: permission denied (as nobody)\n", lsock);
  if (strstr(h.err, want) == NULL)
    FATAL("stderr:\n%s", h.err);
  ASSERT_EQ(lstat(sock, &st), 0);
  hr_finish(&h);
  hr_script_remove();
  unlink(sock);
  ASSERT_EQ(rmdir(dir), 0);
  return 0;
}

/* A free port on 127.0.0.1 now. */
static int free_port(void) {
  herd_listen_addr_t a;
  int fd, port;
  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &a));
  ASSERT_OK(herd_listen_bind(&a, NULL, &fd));
  port = a.port;
  close(fd);
  return port;
}

static void ab_done(tc_ab_t* ab) {
  *(int*)ab->data = 1;
}

static int flag_cond(hr_t* h, void* arg) {
  (void)h;
  return *(int*)arg;
}

/* Until both workers have answered (at most 200 requests on new
 * connections); `h`'s workers must be w[0], w[1]. */
static void both_serve(hr_t* h, const int* w) {
  int seen[2] = {0, 0};
  for (int i = 0; i < 200 && !(seen[0] && seen[1]); i++) {
    char body[64];
    int pid;
    ASSERT_EQ(tc_http_get(h->port, body, sizeof(body), 10000), 200);
    pid = atoi(body);
    if (pid != w[0] && pid != w[1])
      FATAL("answered by %d, not a worker (%d, %d)", pid, w[0], w[1]);
    seen[pid == w[1]] = 1;
  }
  if (!(seen[0] && seen[1]))
    FATAL("200 requests, all answered by one worker");
}

/* A Node HTTP server that never mentions cluster (plain-http.js), started
 * as `herd run -w 2 -l 127.0.0.1:PORT -- node plain-http.js` with PORT in
 * its environment, is clustered: both workers serve herd's socket (were
 * it not, each would bind PORT itself and fail, herd having it), a
 * bounded ab has no failure, SIGTERM exits 0 and leaves nothing. */
TEST_IMPL(run_node_plain_server) {
  char addr[32], env[32], src[4096];
  const char* js = fixture("plain-http.js");
  const char* args[] = {"run",    "-w",    "2",  "-l",   addr, "--env", env,
                        "--name", "plain", "--", "node", js,   NULL};
  int workers[4], port = free_port(), done = 0;
  FILE* f;
  size_t n;
  tc_ab_t ab;
  hr_t h;

  /* The fixture really knows nothing of cluster. */
  f = fopen(js, "re");
  ASSERT(f != NULL);
  n = fread(src, 1, sizeof(src) - 1, f);
  fclose(f);
  src[n] = '\0';
  ASSERT(strstr(src, "cluster") == NULL ||
         strstr(src, "require('cluster')") == NULL);
  ASSERT(strstr(src, "cluster") == NULL);

  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(env, sizeof(env), "PORT=%d", port);
  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 30000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  ASSERT_EQ(hr_port(&h, 1000), port);
  ASSERT_EQ(hr_workers(&h, workers, 4), 2);
  both_serve(&h, workers);
  memset(&ab, 0, sizeof(ab));
  ab.done = ab_done;
  ab.data = &done;
  tc_ab_start(&h.loop, &ab, port, 2000, 8, 1);
  if (!hr_wait(&h, flag_cond, &done, 30000))
    FATAL("ab did not finish");
  if (ab.status != 0 || ab.complete != 2000 || ab.failed != 0 || ab.non2xx != 0)
    FATAL("ab exit %lld, %lld complete, %lld failed, %lld non-2xx:\n%s",
          (long long)ab.status, ab.complete, ab.failed, ab.non2xx,
          ab.out ? ab.out : "");
  tc_ab_free(&ab);
  ASSERT(strstr(h.err, "EADDR") == NULL);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 15000));
  if (h.status != 0)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  for (int i = 0; i < 2; i++)
    ASSERT(gone(workers[i], 2000));
  hr_finish(&h);
  return 0;
}

/* Node's server.listen({fd: 3}) (fd3-listen.js) under herd run. As a Node
 * worker (`node fd3-listen.js`: the program decides the kind, no option
 * does) the listen is served through the cluster with herd's first
 * address. Started through another program (`env node fd3-listen.js`),
 * it is a worker of systemd's kind and takes the fd 3 herd passes. Both
 * serve with both workers, and stop cleanly. */
static void node_fd3(int through_env) {
  const char* js = fixture("fd3-listen.js");
  /* Two addresses: fd 3 is the first, not "the only TCP address". */
  const char* node_args[] = {"run",         "-w", "2",           "-l",
                             "127.0.0.1:0", "-l", "127.0.0.1:0", "--",
                             "node",        js,   NULL};
  const char* env_args[] = {
      "run",     "-w",          "2",  "-l",  "127.0.0.1:0", "-l", "127.0.0.1:0",
      "--ready", "delay:200ms", "--", "env", "node",        js,   NULL};
  int workers[4];
  hr_t h;

  hr_start(&h, through_env ? env_args : node_args, NULL);
  if (!hr_wait_ready(&h, 1, 30000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  hr_port(&h, 1000);
  ASSERT_EQ(hr_workers(&h, workers, 4), 2);
  for (int i = 0; i < 2; i++) {
    /* The kind: Node's cluster protocol, or systemd's fds. */
    ASSERT_EQ(environ_has(workers[i], "NODE_UNIQUE_ID="), !through_env);
    ASSERT_EQ(environ_has(workers[i], "LISTEN_FDS=2"), through_env);
  }
  both_serve(&h, workers);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 15000));
  if (h.status != 0)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  for (int i = 0; i < 2; i++)
    ASSERT(gone(workers[i], 2000));
  hr_finish(&h);
}

TEST_IMPL(run_node_listen_fd3) {
  node_fd3(0);
  node_fd3(1);
  return 0;
}
