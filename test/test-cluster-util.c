/* Shared pieces of the cluster and cli tests (see test-cluster.h). */
#include "test-cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t tc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int tc_http_send(int port) {
  static const char req[] =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  struct sockaddr_in sin;
  struct timeval tv = {3, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&sin, sizeof(sin)) != 0 ||
      write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
    close(fd);
    return -1;
  }
  return fd;
}

int tc_http_recv(int fd, char* body, size_t cap, int ms) {
  char buf[4096];
  size_t n = 0;
  uint64_t deadline = tc_now_ms() + (uint64_t)ms;
  int status = -1;
  char* sep;

  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    uint64_t now = tc_now_ms();
    ssize_t r;
    if (now >= deadline || n == sizeof(buf) - 1)
      break;
    if (poll(&pfd, 1, (int)(deadline - now)) <= 0)
      break;
    r = read(fd, buf + n, sizeof(buf) - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r == 0)
        status = 0; /* EOF: the response is complete */
      break;
    }
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  if (status != 0 || sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
    return -1;
  sep = strstr(buf, "\r\n\r\n");
  if (body != NULL && cap > 0)
    snprintf(body, cap, "%s", sep ? sep + 4 : "");
  return status;
}

int tc_http_get(int port, char* body, size_t cap, int ms) {
  int fd = tc_http_send(port);
  if (fd < 0)
    return -1;
  return tc_http_recv(fd, body, cap, ms);
}

static long long ab_count(const char* out, const char* name) {
  const char* p = strstr(out, name);
  long long v = -1;
  if (p != NULL)
    sscanf(p + strlen(name), " %lld", &v);
  return v;
}

static void ab_closed(herd_child_t* child) {
  tc_ab_t* ab = child->data;
  ab->closed = 1;
  ab->status = child->exit_status;
  ab->out = test_read_file(ab->out_path, NULL);
  ASSERT(ab->out != NULL);
  unlink(ab->out_path);
  ab->complete = ab_count(ab->out, "Complete requests:");
  ab->failed = ab_count(ab->out, "Failed requests:");
  /* The line is there only when some were. */
  ab->non2xx = strstr(ab->out, "Non-2xx responses:") != NULL
                   ? ab_count(ab->out, "Non-2xx responses:")
                   : 0;
  if (ab->done != NULL)
    ab->done(ab);
}

void tc_ab_start(uv_loop_t* loop, tc_ab_t* ab, int port, int n, int c,
                 int keepalive) {
  herd_spawn_options_t o;
  herd_stdio_t stdio[3];
  char sn[16], sc[16], url[64];
  const char* args[] = {"-q", "-r", "-s", "10", "-n", sn,
                        "-c", sc,   url,  NULL, NULL};
  int out;

  snprintf(sn, sizeof(sn), "%d", n);
  snprintf(sc, sizeof(sc), "%d", c);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
  if (keepalive) {
    args[8] = "-k";
    args[9] = url;
  }
  strcpy(ab->out_path, "/tmp/herd-ab-out-XXXXXX");
  out = mkostemp(ab->out_path, O_CLOEXEC);
  ASSERT(out >= 0);
  memset(&o, 0, sizeof(o));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_FD;
  stdio[1].fd = out;
  stdio[2].kind = HERD_STDIO_INHERIT;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.close_cb = ab_closed;
  ab->child.data = ab;
  ASSERT_OK(herd_spawn(loop, &ab->child, "ab", args, &o));
  close(out);
}

void tc_ab_free(tc_ab_t* ab) {
  free(ab->out);
  ab->out = NULL;
}

struct tc_job_s {
  uv_work_t req;
  void (*fn)(void* arg);
  void (*done)(void* arg);
  void* arg;
};

static void job_work(uv_work_t* req) {
  tc_job_t* j = req->data;
  j->fn(j->arg);
}

static void job_after(uv_work_t* req, int status) {
  tc_job_t* j = req->data;
  ASSERT_EQ(status, 0);
  if (j->done != NULL)
    j->done(j->arg);
  free(j);
}

void tc_job_start(uv_loop_t* loop, void (*fn)(void* arg),
                  void (*done)(void* arg), void* arg) {
  tc_job_t* j = calloc(1, sizeof(*j));
  ASSERT(j != NULL);
  j->fn = fn;
  j->done = done;
  j->arg = arg;
  j->req.data = j;
  ASSERT_OK(uv_queue_work(loop, &j->req, job_work, job_after));
}

char tc_proc_state(int pid) {
  char path[64], buf[512];
  char* p;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  f = fopen(path, "re");
  if (f == NULL)
    return 0;
  if (fgets(buf, sizeof(buf), f) == NULL) {
    fclose(f);
    return 0;
  }
  fclose(f);
  p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' ? p[2] : 0;
}

int tc_wait_state(int pid, char state, int ms) {
  for (int waited = 0; waited <= ms; waited += 5) {
    if (tc_proc_state(pid) == state)
      return 1;
    test_sleep_ms(5);
  }
  return 0;
}

int tc_children(int pid, int* out, int cap) {
  char path[96], buf[1024];
  int n = 0;
  FILE* f;
  char* tok;
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", pid, pid);
  f = fopen(path, "re");
  if (f == NULL)
    return 0;
  if (fgets(buf, sizeof(buf), f) == NULL)
    buf[0] = '\0';
  fclose(f);
  for (tok = strtok(buf, " \n"); tok != NULL && n < cap;
       tok = strtok(NULL, " \n"))
    out[n++] = atoi(tok);
  return n;
}

int tc_body_id(const char* body) {
  int id;
  if (body[0] != 'w' || sscanf(body + 1, "%d", &id) != 1)
    return -1;
  return id;
}

static tc_cluster_t* tc_of(herd_cluster_t* c) {
  return c->data;
}

static int tc_id(herd_worker_t* w) {
  ASSERT(w->id > 0 && w->id < TC_MAX_IDS);
  return w->id;
}

static void tc_on_fork(herd_cluster_t* c, herd_worker_t* w) {
  tc_cluster_t* t = tc_of(c);
  int id = tc_id(w);
  ASSERT_EQ(t->state_seen[id], 0);
  t->state_seen[id] |= 1;
  t->pid[id] = w->pid;
  t->forks++;
}

static void tc_on_online(herd_cluster_t* c, herd_worker_t* w) {
  tc_cluster_t* t = tc_of(c);
  int id = tc_id(w);
  if (t->state_seen[id] != 1) /* fork came first */
    FATAL("online of worker %d (pid %d): events seen %d, forks %d", id,
          (int)w->pid, t->state_seen[id], t->forks);
  ASSERT_EQ(w->state, HERD_WORKER_ONLINE);
  t->state_seen[id] |= 2;
  t->onlines++;
}

static void tc_on_listening(herd_cluster_t* c, herd_worker_t* w,
                            const herd_cluster_address_t* a) {
  tc_cluster_t* t = tc_of(c);
  int id = tc_id(w);
  /* After fork and online; a worker may listen on several servers. */
  ASSERT_EQ(t->state_seen[id] & 11, 3);
  ASSERT_EQ(w->state, HERD_WORKER_LISTENING);
  /* A Unix socket has no port; an fd of a Unix socket neither. */
  ASSERT(a->port > 0 ||
         (a->port == -1 && (a->address_type == -1 || a->fd >= 0)));
  t->state_seen[id] |= 4;
  t->port = a->port;
  t->listenings++;
  if (t->on_listening != NULL)
    t->on_listening(t, w, a);
  if (!t->ready && t->listenings >= t->want_listening) {
    t->ready = 1;
    if (t->on_ready != NULL)
      t->on_ready(t);
  }
}

static void tc_on_message(herd_cluster_t* c, herd_worker_t* w, const char* json,
                          size_t len, herd_handle_t* handle) {
  tc_cluster_t* t = tc_of(c);
  char cmd[32];
  ASSERT(handle == NULL);
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0 &&
      strcmp(cmd, "notifyRequest") == 0)
    t->notifies[tc_id(w)]++;
  if (t->on_message != NULL)
    t->on_message(t, w, json, len);
}

static void tc_on_disconnect(herd_cluster_t* c, herd_worker_t* w) {
  (void)w;
  tc_of(c)->disconnects++;
}

static void tc_on_error(herd_cluster_t* c, herd_worker_t* w, int err) {
  tc_cluster_t* t = tc_of(c);
  ASSERT_EQ(t->exited[tc_id(w)], 0);
  t->errors++;
  t->last_error = err;
}

static void tc_on_exit(herd_cluster_t* c, herd_worker_t* w, int64_t code,
                       int sig) {
  tc_cluster_t* t = tc_of(c);
  int id = tc_id(w);
  ASSERT_EQ(t->exited[id], 0);
  ASSERT(herd_worker_is_dead(w));
  ASSERT(!herd_worker_is_connected(w));
  t->state_seen[id] |= 8;
  t->exited[id] = 1;
  t->exit_code[id] = code;
  t->exit_signal[id] = sig;
  t->exit_ead[id] = w->exited_after_disconnect;
  t->exits++;
  if (t->on_exit != NULL)
    t->on_exit(t, w, code, sig);
}

void tc_cluster_init(tc_cluster_t* t, herd_sched_policy_t policy,
                     const char* exec_path, const char* exec,
                     const char* const* args) {
  herd_cluster_callbacks_t cbs;
  memset(t, 0, sizeof(*t));
  ASSERT_OK(uv_loop_init(&t->loop));
  memset(&cbs, 0, sizeof(cbs));
  cbs.fork = tc_on_fork;
  cbs.online = tc_on_online;
  cbs.listening = tc_on_listening;
  cbs.message = tc_on_message;
  cbs.disconnect = tc_on_disconnect;
  cbs.exit = tc_on_exit;
  cbs.error = tc_on_error;
  ASSERT_OK(herd_cluster_init(&t->loop, &t->cluster, &cbs));
  t->cluster.data = t;
  t->settings.exec_path = exec_path;
  t->settings.exec = exec != NULL ? exec : test_exe();
  t->settings.args =
      args != NULL ? args : test_helper_args("cluster_worker", "0", NULL);
  t->settings.policy = policy;
  herd_cluster_setup_primary(&t->cluster, &t->settings);
}

void tc_cluster_fork(tc_cluster_t* t, int n) {
  for (int i = 0; i < n; i++) {
    herd_worker_t* w = NULL;
    ASSERT_OK(herd_cluster_fork(&t->cluster, NULL, &w));
    ASSERT(w != NULL);
    ASSERT(w->id > 0);
    ASSERT_EQ(w->state, HERD_WORKER_NONE);
  }
}

static void tc_on_closed(herd_cluster_t* c) {
  tc_of(c)->closed = 1;
}

void tc_cluster_finish(tc_cluster_t* t) {
  herd_cluster_close(&t->cluster, tc_on_closed);
}

void tc_finish_on_exit(tc_cluster_t* t, herd_worker_t* w, int64_t code,
                       int sig) {
  (void)w;
  (void)code;
  (void)sig;
  tc_cluster_finish(t);
}

void tc_cluster_run(tc_cluster_t* t) {
  uv_run(&t->loop, UV_RUN_DEFAULT);
  ASSERT_EQ(t->closed, 1);
  test_loop_close(&t->loop);
}

int tc_count_body(tc_cluster_t* t, const char* body) {
  int id = -1;
  if (strncmp(body, "node", 4) == 0)
    id = atoi(body + 4);
  else
    id = tc_body_id(body);
  if (id > 0 && id < TC_MAX_IDS)
    t->served[id]++;
  else
    id = -1;
  return id;
}
