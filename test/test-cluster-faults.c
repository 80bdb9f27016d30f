/* Faults: under rr a connection a worker declines, or one in flight to a
 * worker that dies, is served by another worker; under reuseport the
 * connections waiting in a dead worker's slot are served by the others. */
#include "test-cluster.h"

#include "cluster-int.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* A worker speaking the NODE_CLUSTER protocol by hand, to misbehave on
 * newconn: "decline" answers accepted:false (and tells the primary with a
 * user message), "die" exits without answering.
 * argv: cluster_raw_worker PORT MODE */
static herd_ipc_t raw_ipc;
static int raw_seq;
static const char* raw_mode;

static void raw_send(const char* fields) {
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "{\"cmd\":\"NODE_CLUSTER\",%s,\"seq\":%d}",
                   fields, raw_seq++);
  ASSERT(herd_ipc_send(&raw_ipc, buf, (size_t)n) >= 0);
}

static void raw_internal(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  char act[32], fields[256];
  int64_t seq, ack;
  (void)ipc;
  if (herd_json_get_int(json, len, "ack", &ack) == 0) {
    ASSERT_EQ(ack, 1); /* the queryServer reply, without a handle (rr) */
    const char* sn;
    size_t snlen;
    int64_t port;
    ASSERT(handle == NULL);
    ASSERT_OK(herd_json_get(json, len, "sockname", &sn, &snlen));
    ASSERT_OK(herd_json_get_int(sn, snlen, "port", &port));
    snprintf(fields, sizeof(fields),
             "\"act\":\"listening\",\"index\":0,\"data\":null,"
             "\"address\":\"127.0.0.1\",\"port\":%lld,\"addressType\":4",
             (long long)port);
    raw_send(fields);
    return;
  }
  ASSERT(herd_json_get_string(json, len, "act", act, sizeof(act)) > 0);
  if (strcmp(act, "disconnect") == 0) {
    herd_ipc_disconnect(&raw_ipc);
    return;
  }
  ASSERT_STR_EQ(act, "newconn");
  ASSERT(handle != NULL);
  ASSERT_STR_EQ(handle->type, "net.Native");
  if (strcmp(raw_mode, "die") == 0)
    _exit(7); /* with the connection, unanswered */
  ASSERT_OK(herd_json_get_int(json, len, "seq", &seq));
  snprintf(fields, sizeof(fields), "\"ack\":%lld,\"accepted\":false",
           (long long)seq);
  raw_send(fields);
  ASSERT(herd_ipc_send(&raw_ipc, "{\"cmd\":\"declined\"}", 18) >= 0);
}

HELPER_IMPL(cluster_raw_worker) {
  herd_ipc_callbacks_t cbs;
  uv_loop_t loop;
  char fields[256];
  ASSERT_EQ(argc, 3);
  raw_mode = argv[2];
  ASSERT_OK(uv_loop_init(&loop));
  unsetenv("NODE_UNIQUE_ID");
  ASSERT_OK(herd_ipc_open_parent(&loop, &raw_ipc));
  herd__ipc_set_internal_cb(&raw_ipc, raw_internal);
  memset(&cbs, 0, sizeof(cbs));
  ASSERT_OK(herd_ipc_start(&raw_ipc, &cbs));
  raw_send("\"act\":\"online\"");
  snprintf(fields, sizeof(fields),
           "\"act\":\"queryServer\",\"index\":0,\"data\":null,"
           "\"address\":\"127.0.0.1\",\"port\":%s,\"addressType\":4,"
           "\"backlog\":511",
           argv[1]);
  raw_send(fields);
  uv_run(&loop, UV_RUN_DEFAULT);
  test_loop_close(&loop);
  return 0;
}

/* The primary's open fds once every connection is served: a connection
 * requeued after a failed handoff must not stay open (or be lost open) in
 * the primary. The count is awaited with a deadline, since the primary
 * closes its copy of a connection when the worker's answer arrives, which
 * may come after the client has its response; then the cluster ends. */
typedef struct {
  uv_timer_t timer;
  tc_cluster_t* t;
  int want;
  uint64_t start;
} fds_wait_t;

static fds_wait_t fds_wait;

static void fds_wait_cb(uv_timer_t* timer) {
  fds_wait_t* f = timer->data;
  int n = test_count_fds();
  if (n != f->want) {
    if ((uv_hrtime() - f->start) / 1000000 > 3000)
      FATAL("the primary has %d fds open, %d before the connection", n,
            f->want);
    return;
  }
  uv_close((uv_handle_t*)timer, NULL);
  tc_cluster_finish(f->t);
}

/* Ends the cluster once the primary has `want` fds open again. */
static void finish_at_fds(tc_cluster_t* t, int want) {
  fds_wait.t = t;
  fds_wait.want = want;
  fds_wait.start = uv_hrtime();
  ASSERT_OK(uv_timer_init(&t->loop, &fds_wait.timer));
  fds_wait.timer.data = &fds_wait;
  ASSERT_OK(uv_timer_start(&fds_wait.timer, fds_wait_cb, 0, 5));
}

typedef struct {
  const char* mode;
  int port;
  int declined;
  int stage;
  int fds0;        /* the primary's fds before any worker */
  int fds_per_run; /* ... and with the first two workers ready */
} rr_fault_t;

static void fault_client(void* arg) {
  tc_cluster_t* t = arg;
  rr_fault_t* f = t->data;
  char body[64];
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(tc_http_get(f->port, body, sizeof(body), 5000), 200);
    /* Worker 1 never serves; worker 2 gets every connection. */
    ASSERT_EQ(tc_count_body(t, body), 2);
  }
}

static void fault_client_done(void* arg) {
  tc_cluster_finish(arg);
}

static void fault_on_ready(tc_cluster_t* t) {
  rr_fault_t* f = t->data;
  if (f->stage == 0) {
    /* The raw worker listens first, so it is first in line. */
    f->stage = 1;
    t->ready = 0;
    t->want_listening = 2;
    t->settings.args = test_helper_args("cluster_worker", "0", NULL);
    herd_cluster_setup_primary(&t->cluster, &t->settings);
    tc_cluster_fork(t, 1);
    return;
  }
  tc_job_start(&t->loop, fault_client, fault_client_done, t);
}

static void fault_on_message(tc_cluster_t* t, herd_worker_t* w,
                             const char* json, size_t len) {
  rr_fault_t* f = t->data;
  (void)len;
  if (strcmp(json, "{\"cmd\":\"declined\"}") == 0) {
    ASSERT_EQ(w->id, 1);
    f->declined++;
  }
}

static void run_rr_fault(const char* mode) {
  tc_cluster_t t;
  rr_fault_t f;
  memset(&f, 0, sizeof(f));
  f.mode = mode;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL,
                  test_helper_args("cluster_raw_worker", "0", mode));
  t.data = &f;
  /* Pinned, so that the raw worker (which asks for port 0 and index 0)
   * and the real one share the primary's socket. */
  ASSERT_OK(herd_cluster_listen(&t.cluster, "127.0.0.1", 0, 64, &f.port));
  ASSERT(f.port > 0);
  ASSERT_EQ(herd_cluster_listen(&t.cluster, "127.0.0.1", 0, 64, NULL),
            UV_EADDRINUSE);
  t.want_listening = 1;
  t.on_ready = fault_on_ready;
  t.on_message = fault_on_message;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.served[2], 3);
  if (strcmp(mode, "die") == 0) {
    ASSERT_EQ(t.exit_code[1], 7);
  } else {
    ASSERT(f.declined >= 1);
    ASSERT_EQ(t.exit_code[1], 0);
  }
}

TEST_IMPL(cluster_rr_declined) {
  run_rr_fault("decline");
  return 0;
}

TEST_IMPL(cluster_rr_inflight_to_dead_worker) {
  run_rr_fault("die");
  return 0;
}

/* Every worker declines: each declines once and is then left out of the
 * server, so the connection waits for a worker that has it instead of
 * going round between the decliners (thousands of times a second before).
 * A third, real worker then serves it. */
static void all_decline_client(void* arg) {
  tc_cluster_t* t = arg;
  rr_fault_t* f = t->data;
  char body[64];
  int fd = tc_http_send(f->port);
  ASSERT(fd >= 0);
  ASSERT_EQ(tc_http_recv(fd, body, sizeof(body), 20000), 200);
  ASSERT_EQ(tc_count_body(t, body), 3);
}

/* The connection was requeued twice (once per decline): once served, the
 * primary holds what the three workers cost it and nothing more. */
static void all_decline_done(void* arg) {
  tc_cluster_t* t = arg;
  rr_fault_t* f = t->data;
  int per_worker = (f->fds_per_run - f->fds0) / 2;
  finish_at_fds(t, f->fds0 + 3 * per_worker);
}

static void all_decline_on_ready(tc_cluster_t* t) {
  rr_fault_t* f = t->data;
  f->fds_per_run = test_count_fds();
  ASSERT_EQ((f->fds_per_run - f->fds0) % 2, 0);
  tc_job_start(&t->loop, all_decline_client, all_decline_done, t);
}

static void all_decline_on_message(tc_cluster_t* t, herd_worker_t* w,
                                   const char* json, size_t len) {
  rr_fault_t* f = t->data;
  (void)len;
  if (strcmp(json, "{\"cmd\":\"declined\"}") != 0)
    return; /* the real worker's notifies */
  ASSERT(w->id == 1 || w->id == 2);
  if (++f->declined == 2) {
    /* Both have declined: now a worker that serves. */
    t->settings.args = test_helper_args("cluster_worker", "0", NULL);
    herd_cluster_setup_primary(&t->cluster, &t->settings);
    tc_cluster_fork(t, 1);
  }
}

TEST_IMPL(cluster_rr_all_decline) {
  tc_cluster_t t;
  rr_fault_t f;
  memset(&f, 0, sizeof(f));
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL,
                  test_helper_args("cluster_raw_worker", "0", "decline"));
  t.data = &f;
  ASSERT_OK(herd_cluster_listen(&t.cluster, "127.0.0.1", 0, 64, &f.port));
  t.want_listening = 2;
  t.on_ready = all_decline_on_ready;
  t.on_message = all_decline_on_message;
  f.fds0 = test_count_fds();
  tc_cluster_fork(&t, 2);
  tc_cluster_run(&t);
  ASSERT_EQ(f.declined, 2);
  ASSERT_EQ(t.served[3], 1);
  return 0;
}

/* reuseport: worker 1 (slot 0) is stopped while clients connect, so some
 * connections wait in slot 0's socket; then it is killed and nobody takes
 * its slot. Every one of them must still be answered, by worker 2: the
 * primary drains the socket nobody serves. */
#define BACKLOG_CLIENTS 16

static void backlog_client(void* arg) {
  tc_cluster_t* t = arg;
  int fds[BACKLOG_CLIENTS];
  char body[64];
  int victim = t->pid[1];

  ASSERT_EQ(kill(victim, SIGSTOP), 0);
  ASSERT(tc_wait_state(victim, 'T', 2000));
  for (int i = 0; i < BACKLOG_CLIENTS; i++) {
    fds[i] = tc_http_send(t->port);
    ASSERT(fds[i] >= 0);
  }
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  for (int i = 0; i < BACKLOG_CLIENTS; i++) {
    ASSERT_EQ(tc_http_recv(fds[i], body, sizeof(body), 8000), 200);
    ASSERT_EQ(tc_count_body(t, body), 2);
  }
}

static void backlog_client_done(void* arg) {
  tc_cluster_finish(arg);
}

static void backlog_on_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, backlog_client, backlog_client_done, t);
}

TEST_IMPL(cluster_reuseport_slot_backlog) {
  tc_cluster_t t;
  tc_cluster_init(&t, HERD_SCHED_REUSEPORT, NULL, NULL, NULL);
  t.want_listening = 2;
  t.on_ready = backlog_on_ready;
  tc_cluster_fork(&t, 2);
  ASSERT_EQ(herd_cluster_worker(&t.cluster, 1)->slot, 0);
  ASSERT_EQ(herd_cluster_worker(&t.cluster, 2)->slot, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.served[1], 0);
  ASSERT_EQ(t.served[2], BACKLOG_CLIENTS);
  ASSERT_EQ(t.exit_signal[1], SIGKILL);
  return 0;
}

/* A worker whose primary died before it could ask for PR_SET_PDEATHSIG
 * (its parent is not HERD_PRIMARY_PID any more) ends itself with SIGTERM
 * during setup. */
static int orphan_signal = -1;

static void orphan_exit(herd_child_t* child, int64_t status, int sig) {
  (void)child;
  (void)status;
  orphan_signal = sig;
}

TEST_IMPL(cluster_worker_primary_gone_at_start) {
  uv_loop_t loop;
  herd_child_t child;
  herd_fork_options_t o;
  const char* env[] = {"NODE_UNIQUE_ID=1", "HERD_PRIMARY_PID=1", NULL};
  ASSERT_OK(uv_loop_init(&loop));
  memset(&o, 0, sizeof(o));
  o.spawn.env = env;
  o.spawn.flags = HERD_SPAWN_ENV_EXTEND;
  o.spawn.exit_cb = orphan_exit;
  ASSERT_OK(herd_fork(&loop, &child, test_exe(),
                      test_helper_args("cluster_worker", "0", NULL), &o));
  test_loop_run_close(&loop);
  ASSERT_EQ(orphan_signal, SIGTERM);
  return 0;
}

/* Out of fds, a listening socket stays readable: the server must report the
 * failure and pause, not spin on it, and accept again once fds are free.
 * The fds are freed at the second report, which must come a pause after
 * the first, not on the next loop turn. */
typedef struct {
  herd_server_t server;
  uv_tcp_t client;
  int fillers[64];
  int nfillers;
  struct rlimit old;
  int errors;
  uint64_t first_error;
  int accepted;
} emfile_t;

static void fds_exhaust(int* fillers, int* n, int cap, struct rlimit* old,
                        int spare);
static void fds_release(int* fillers, int* n, const struct rlimit* old);

static void emfile_on_conn(herd_server_t* server, int status) {
  emfile_t* e = server->data;
  if (status < 0) {
    ASSERT(status == UV_EMFILE || status == UV_ENFILE);
    ASSERT_EQ(e->accepted, 0);
    if (++e->errors == 1) {
      e->first_error = uv_now(server->loop);
      return;
    }
    /* The 100 ms pause, give or take libuv's millisecond rounding. */
    ASSERT_GE(uv_now(server->loop) - e->first_error, 90);
    if (e->errors == 2)
      fds_release(e->fillers, &e->nfillers, &e->old);
    return;
  }
  ASSERT_OK(uv_tcp_init(server->loop, &e->client));
  ASSERT_OK(herd_server_accept(server, (uv_stream_t*)&e->client));
  uv_close((uv_handle_t*)&e->client, NULL);
  e->accepted++;
  herd_server_close(server, NULL);
}

TEST_IMPL(cluster_server_emfile) {
  uv_loop_t loop;
  emfile_t e;
  int client;

  memset(&e, 0, sizeof(e));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_server_init(&loop, &e.server));
  e.server.data = &e;
  ASSERT_OK(
      herd_server_listen(&e.server, "127.0.0.1", 0, 16, emfile_on_conn, NULL));
  client = tc_http_send(e.server.port);
  ASSERT(client >= 0);
  /* Every fd below a low limit taken, so accept() fails with EMFILE. */
  fds_exhaust(e.fillers, &e.nfillers, (int)HERD_ARRAY_SIZE(e.fillers), &e.old,
              0);
  test_loop_run_close(&loop);
  ASSERT_EQ(e.errors, 2);
  ASSERT_EQ(e.accepted, 1);
  close(client);
  return 0;
}

/* Out of fds before the listen callback has even run: the connection is in
 * the backlog and the listening socket readable in the very iteration that
 * listens (here from a prepare callback, which runs between the timers that
 * deliver listen_cb and the poll). No accept error may reach the user
 * before listen_cb, and each one must be followed by a pause: two reports
 * less than the retry delay apart mean the loop spun on the socket. The fds
 * are freed at the second report; the connection is then accepted. */
typedef struct {
  herd_server_t server;
  uv_prepare_t prepare;
  uv_tcp_t client;
  int fillers[64];
  int nfillers;
  struct rlimit old;
  int conn_fd;
  int listened;
  int errors;
  int accepted;
  uint64_t last_error_ns;
} emfile_listen_t;

static void emfile_listen_cb(herd_server_t* server, int status) {
  emfile_listen_t* e = server->data;
  ASSERT_OK(status);
  ASSERT_EQ(e->errors, 0);
  e->listened = 1;
}

static void emfile_listen_on_conn(herd_server_t* server, int status) {
  emfile_listen_t* e = server->data;
  uint64_t now = uv_hrtime();
  ASSERT(e->listened);
  if (status < 0) {
    ASSERT(status == UV_EMFILE || status == UV_ENFILE);
    ASSERT_EQ(e->accepted, 0);
    if (e->errors > 0)
      ASSERT_GE(now - e->last_error_ns, 90 * 1000000ull);
    e->last_error_ns = now;
    if (++e->errors == 2)
      fds_release(e->fillers, &e->nfillers, &e->old);
    return;
  }
  ASSERT_OK(uv_tcp_init(server->loop, &e->client));
  ASSERT_OK(herd_server_accept(server, (uv_stream_t*)&e->client));
  uv_close((uv_handle_t*)&e->client, NULL);
  e->accepted++;
  herd_server_close(server, NULL);
}

static void emfile_listen_prepare(uv_prepare_t* prepare) {
  emfile_listen_t* e = prepare->data;
  ASSERT_OK(herd_server_listen(&e->server, "127.0.0.1", 0, 16,
                               emfile_listen_on_conn, emfile_listen_cb));
  e->conn_fd = tc_http_send(e->server.port);
  ASSERT(e->conn_fd >= 0);
  fds_exhaust(e->fillers, &e->nfillers, (int)HERD_ARRAY_SIZE(e->fillers),
              &e->old, 0);
  uv_close((uv_handle_t*)prepare, NULL);
}

TEST_IMPL(cluster_server_emfile_listen) {
  uv_loop_t loop;
  emfile_listen_t e;

  memset(&e, 0, sizeof(e));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_server_init(&loop, &e.server));
  e.server.data = &e;
  ASSERT_OK(uv_prepare_init(&loop, &e.prepare));
  e.prepare.data = &e;
  ASSERT_OK(uv_prepare_start(&e.prepare, emfile_listen_prepare));
  test_loop_run_close(&loop);
  ASSERT_EQ(e.errors, 2);
  ASSERT_EQ(e.accepted, 1);
  close(e.conn_fd);
  return 0;
}

/* A worker's (or standalone) server whose listening socket's poll reports
 * an error: libuv stops the poll (POLLERR), and accepting must resume by
 * itself after a pause, as the primary's round-robin does, not stop for
 * good. */
typedef struct {
  herd_server_t server;
  uv_timer_t deadline;
  uv_timer_t kick;
  uv_tcp_t client;
  int conn_fd;
  int errors;
  int accepted;
} pollerr_server_t;

static void pollerr_server_on_conn(herd_server_t* server, int status) {
  pollerr_server_t* e = server->data;
  if (status < 0) {
    ASSERT_EQ(status, UV_EBADF);
    e->errors++;
    return;
  }
  ASSERT_OK(uv_tcp_init(server->loop, &e->client));
  ASSERT_OK(herd_server_accept(server, (uv_stream_t*)&e->client));
  uv_close((uv_handle_t*)&e->client, NULL);
  e->accepted++;
  herd_server_close(server, NULL);
  uv_close((uv_handle_t*)&e->deadline, NULL);
}

/* Polling has started (right after listen_cb). */
static void pollerr_server_kick(uv_timer_t* timer) {
  pollerr_server_t* e = timer->data;
  uv_poll_t* poll = herd__server_poll(&e->server);
  ASSERT(poll != NULL);
  ASSERT(uv_is_active((uv_handle_t*)poll));
  /* What libuv does on POLLERR: stop the handle, then call back. The
   * connection waits in the backlog. */
  e->conn_fd = tc_http_send(e->server.port);
  ASSERT(e->conn_fd >= 0);
  uv_poll_stop(poll);
  poll->poll_cb(poll, UV_EBADF, 0);
  uv_close((uv_handle_t*)timer, NULL);
}

static void pollerr_server_listen_cb(herd_server_t* server, int status) {
  pollerr_server_t* e = server->data;
  ASSERT_OK(status);
  ASSERT_OK(uv_timer_init(server->loop, &e->kick));
  e->kick.data = e;
  ASSERT_OK(uv_timer_start(&e->kick, pollerr_server_kick, 0, 0));
}

static void pollerr_server_deadline(uv_timer_t* timer) {
  (void)timer;
  FATAL("the connection was not accepted after a poll error");
}

TEST_IMPL(cluster_server_poll_error) {
  uv_loop_t loop;
  pollerr_server_t e;

  memset(&e, 0, sizeof(e));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_server_init(&loop, &e.server));
  e.server.data = &e;
  ASSERT_OK(uv_timer_init(&loop, &e.deadline));
  ASSERT_OK(uv_timer_start(&e.deadline, pollerr_server_deadline, 3000, 0));
  ASSERT_OK(herd_server_listen(&e.server, "127.0.0.1", 0, 16,
                               pollerr_server_on_conn,
                               pollerr_server_listen_cb));
  test_loop_run_close(&loop);
  ASSERT_EQ(e.errors, 1);
  ASSERT_EQ(e.accepted, 1);
  close(e.conn_fd);
  return 0;
}

/* rr: the primary runs out of fds while nothing waits for a worker. Once
 * fds are free again it must accept again by itself, not only when some
 * later handoff happens to wake it. */
typedef struct {
  tc_cluster_t t;
  int port;
  int fillers[64];
  int nfillers;
  struct rlimit old;
  uv_timer_t check;
  int fds_ready; /* the primary's fds before the connection */
} emfile_rr_t;

static herd__cluster_handle_t* first_handle(tc_cluster_t* t) {
  herd__cluster_handle_t* h = t->cluster.priv->handles;
  ASSERT(h != NULL);
  return h;
}

/* Takes every fd below a low limit but `spare`. */
static void fds_exhaust(int* fillers, int* n, int cap, struct rlimit* old,
                        int spare) {
  struct rlimit low;
  ASSERT_OK(getrlimit(RLIMIT_NOFILE, old));
  low = *old;
  low.rlim_cur = 64;
  ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      ASSERT_EQ(errno, EMFILE);
      break;
    }
    ASSERT(*n < cap);
    fillers[(*n)++] = fd;
  }
  while (spare-- > 0)
    close(fillers[--*n]);
}

static void fds_release(int* fillers, int* n, const struct rlimit* old) {
  while (*n > 0)
    close(fillers[--*n]);
  ASSERT_OK(setrlimit(RLIMIT_NOFILE, old));
}

static void rr_emfile_check(uv_timer_t* timer) {
  emfile_rr_t* e = timer->data;
  /* The primary tried to accept, found no fd and paused. */
  if (!first_handle(&e->t)->accept_paused)
    return;
  fds_release(e->fillers, &e->nfillers, &e->old);
  uv_close((uv_handle_t*)timer, NULL);
}

static void rr_emfile_client(void* arg) {
  emfile_rr_t* e = arg;
  char body[64];
  int fd = tc_http_send(e->port);
  ASSERT(fd >= 0);
  ASSERT_EQ(tc_http_recv(fd, body, sizeof(body), 5000), 200);
  ASSERT_EQ(tc_count_body(&e->t, body), 1);
}

static void rr_emfile_done(void* arg) {
  emfile_rr_t* e = arg;
  finish_at_fds(&e->t, e->fds_ready);
}

static void rr_emfile_on_ready(tc_cluster_t* t) {
  emfile_rr_t* e = (emfile_rr_t*)t;
  e->fds_ready = test_count_fds();
  /* The client takes the last free fd: the primary's accept() has none. */
  fds_exhaust(e->fillers, &e->nfillers, (int)HERD_ARRAY_SIZE(e->fillers),
              &e->old, 1);
  ASSERT_OK(uv_timer_init(&t->loop, &e->check));
  e->check.data = e;
  ASSERT_OK(uv_timer_start(&e->check, rr_emfile_check, 5, 5));
  tc_job_start(&t->loop, rr_emfile_client, rr_emfile_done, t);
}

TEST_IMPL(cluster_rr_emfile) {
  emfile_rr_t e;
  memset(&e, 0, sizeof(e));
  tc_cluster_init(&e.t, HERD_SCHED_RR, NULL, NULL, NULL);
  ASSERT_OK(herd_cluster_listen(&e.t.cluster, "127.0.0.1", 0, 64, &e.port));
  e.t.want_listening = 1;
  e.t.on_ready = rr_emfile_on_ready;
  tc_cluster_fork(&e.t, 1);
  tc_cluster_run(&e.t);
  ASSERT_EQ(e.t.served[1], 1);
  return 0;
}

/* A worker that lies about the protocol, speaking it by hand on its raw
 * channel (so that it can take an fd without acknowledging it): online
 * twice; listening, close and an answer for things the primary never gave
 * it; exitedAfterDisconnect without a seq; a queryServer with a negative
 * index. Then it listens for real, and answers the first newconn with
 * accepted:true without the NODE_HANDLE_ACK that says the fd arrived, and
 * exits. The primary must believe none of it.
 * argv: cluster_liar */
static int liar_fd;
static int liar_seq;

static void liar_line(const char* line) {
  size_t len = strlen(line);
  ASSERT_EQ(write(liar_fd, line, len), (ssize_t)len);
}

static void liar_send(const char* fields) {
  char buf[512];
  snprintf(buf, sizeof(buf), "{\"cmd\":\"NODE_CLUSTER\",%s,\"seq\":%d}\n",
           fields, liar_seq++);
  liar_line(buf);
}

/* One line from the channel (and the fd that came with it, closed). */
static int liar_read(char* line, size_t cap) {
  static char buf[8192];
  static size_t n;
  for (;;) {
    char* nl = memchr(buf, '\n', n);
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov;
    struct msghdr msg;
    struct cmsghdr* c;
    ssize_t r;
    if (nl != NULL) {
      size_t len = (size_t)(nl - buf);
      ASSERT(len < cap);
      memcpy(line, buf, len);
      line[len] = '\0';
      memmove(buf, nl + 1, n - len - 1);
      n -= len + 1;
      return (int)len;
    }
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = buf + n;
    iov.iov_len = sizeof(buf) - n;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    r = recvmsg(liar_fd, &msg, MSG_CMSG_CLOEXEC);
    if (r <= 0)
      return -1;
    for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
          close(((int*)CMSG_DATA(c))[i]);
    n += (size_t)r;
  }
}

HELPER_IMPL(cluster_liar) {
  char line[4096], fields[256];
  const char* v;
  size_t vlen;
  int64_t port, seq;
  (void)argc;
  (void)argv;
  liar_fd = atoi(getenv("NODE_CHANNEL_FD"));
  liar_send("\"act\":\"online\"");
  liar_send("\"act\":\"online\"");
  liar_send(
      "\"act\":\"listening\",\"index\":0,\"data\":null,"
      "\"address\":\"127.0.0.1\",\"port\":1,\"addressType\":4");
  liar_send("\"act\":\"close\",\"key\":\"127.0.0.1:0:4:undefined:0\"");
  liar_send("\"ack\":9999,\"accepted\":true");
  liar_line("{\"cmd\":\"NODE_CLUSTER\",\"act\":\"exitedAfterDisconnect\"}\n");
  liar_send(
      "\"act\":\"queryServer\",\"index\":-1,\"data\":null,"
      "\"address\":\"127.0.0.1\",\"port\":0,\"addressType\":4");
  liar_send(
      "\"act\":\"queryServer\",\"index\":0,\"data\":null,"
      "\"address\":\"127.0.0.1\",\"port\":0,\"addressType\":4,"
      "\"backlog\":511");
  for (;;) {
    int len = liar_read(line, sizeof(line));
    ASSERT(len > 0);
    if (herd_json_get_int(line, (size_t)len, "ack", &seq) == 0) {
      /* The queryServer reply (rr: no handle): listen for real. */
      ASSERT_OK(herd_json_get(line, (size_t)len, "sockname", &v, &vlen));
      ASSERT_OK(herd_json_get_int(v, vlen, "port", &port));
      snprintf(fields, sizeof(fields),
               "\"act\":\"listening\",\"index\":0,\"data\":null,"
               "\"address\":\"127.0.0.1\",\"port\":%lld,\"addressType\":4",
               (long long)port);
      liar_send(fields);
      continue;
    }
    if (strstr(line, "\"NODE_HANDLE\"") == NULL)
      continue;
    /* A newconn; its fd was closed on arrival. No NODE_HANDLE_ACK. */
    ASSERT_OK(herd_json_get(line, (size_t)len, "msg", &v, &vlen));
    ASSERT_OK(herd_json_get_int(v, vlen, "seq", &seq));
    snprintf(fields, sizeof(fields), "\"ack\":%lld,\"accepted\":true",
             (long long)seq);
    liar_send(fields);
    _exit(0);
  }
}

static void liar_client(void* arg) {
  tc_cluster_t* t = arg;
  char body[64];
  /* Handed to the liar first (it listened first), then to worker 2. */
  ASSERT_EQ(tc_http_get(*(int*)t->data, body, sizeof(body), 5000), 200);
  ASSERT_EQ(tc_count_body(t, body), 2);
}

static void liar_on_ready(tc_cluster_t* t) {
  if (t->listenings == 1) {
    /* The real worker comes second. */
    t->ready = 0;
    t->want_listening = 2;
    t->settings.args = test_helper_args("cluster_worker", "0", NULL);
    herd_cluster_setup_primary(&t->cluster, &t->settings);
    tc_cluster_fork(t, 1);
    return;
  }
  tc_job_start(&t->loop, liar_client, backlog_client_done, t);
}

TEST_IMPL(cluster_protocol_lies) {
  tc_cluster_t t;
  int port;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL,
                  test_helper_args("cluster_liar", NULL, NULL));
  ASSERT_OK(herd_cluster_listen(&t.cluster, "127.0.0.1", 0, 64, &port));
  t.data = &port;
  t.want_listening = 1;
  t.on_ready = liar_on_ready;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.onlines, 2);
  ASSERT_EQ(t.listenings, 2);
  ASSERT_EQ(t.served[2], 1);
  ASSERT_EQ(t.exit_code[1], 0);
  ASSERT_EQ(t.exit_ead[1], 0);
  return 0;
}

/* rr: the handoff of an accepted connection fails (out of fds, the channel
 * cannot take a copy of it). The connection must still reach a worker as
 * soon as fds are free again, without waiting for another connection. */
typedef struct {
  tc_cluster_t t;
  int port;
  int fillers[64];
  int nfillers;
  struct rlimit old;
  uv_timer_t check;
  int fds_ready; /* the primary's fds before the connection */
} handoff_t;

static void handoff_release(handoff_t* f) {
  fds_release(f->fillers, &f->nfillers, &f->old);
}

static void handoff_check(uv_timer_t* timer) {
  handoff_t* f = timer->data;
  /* Accepted, and its handoff failed: back in the queue. */
  if (first_handle(&f->t)->pending_count == 0)
    return;
  handoff_release(f);
  uv_close((uv_handle_t*)timer, NULL);
}

static void handoff_client(void* arg) {
  handoff_t* f = arg;
  char body[64];
  int fd = tc_http_send(f->port);
  ASSERT(fd >= 0);
  ASSERT_EQ(tc_http_recv(fd, body, sizeof(body), 5000), 200);
  ASSERT(tc_count_body(&f->t, body) > 0);
}

/* The failed handoff requeued the connection: once it is served, the
 * primary has no more fds open than before it. */
static void handoff_client_done(void* arg) {
  handoff_t* f = arg;
  finish_at_fds(&f->t, f->fds_ready);
}

static void handoff_ready(tc_cluster_t* t) {
  handoff_t* f = (handoff_t*)t;
  f->fds_ready = test_count_fds();
  /* One fd for the client, one for the primary's accept(): none for the
   * copy the channel takes of it. */
  fds_exhaust(f->fillers, &f->nfillers, (int)HERD_ARRAY_SIZE(f->fillers),
              &f->old, 2);
  ASSERT_OK(uv_timer_init(&t->loop, &f->check));
  f->check.data = f;
  ASSERT_OK(uv_timer_start(&f->check, handoff_check, 5, 5));
  tc_job_start(&t->loop, handoff_client, handoff_client_done, f);
}

TEST_IMPL(cluster_rr_handoff_fails) {
  handoff_t f;
  memset(&f, 0, sizeof(f));
  tc_cluster_init(&f.t, HERD_SCHED_RR, NULL, NULL, NULL);
  ASSERT_OK(herd_cluster_listen(&f.t.cluster, "127.0.0.1", 0, 64, &f.port));
  f.t.want_listening = 2;
  f.t.on_ready = handoff_ready;
  tc_cluster_fork(&f.t, 2);
  tc_cluster_run(&f.t);
  ASSERT_EQ(f.t.served[1] + f.t.served[2], 1);
  return 0;
}

/* rr: libuv reports an error on the listening socket's poll (POLLERR),
 * which stops it. Accepting must resume by itself. Under reuseport the
 * same holds for a socket the primary drains. */
static void pollerr_client(void* arg) {
  tc_cluster_t* t = arg;
  char body[64];
  ASSERT_EQ(tc_http_get(*(int*)t->data, body, sizeof(body), 3000), 200);
  ASSERT_EQ(tc_count_body(t, body), 1);
}

static void pollerr_ready(tc_cluster_t* t) {
  herd__cluster_handle_t* h = first_handle(t);
  /* What libuv does on POLLERR: stop the handle, then call back. */
  uv_poll_stop(&h->poll);
  h->poll.poll_cb(&h->poll, UV_EBADF, 0);
  tc_job_start(&t->loop, pollerr_client, backlog_client_done, t);
}

TEST_IMPL(cluster_rr_poll_error) {
  tc_cluster_t t;
  int port;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL, NULL);
  ASSERT_OK(herd_cluster_listen(&t.cluster, "127.0.0.1", 0, 64, &port));
  t.data = &port;
  t.want_listening = 1;
  t.on_ready = pollerr_ready;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.served[1], 1);
  return 0;
}

/* A worker that floods queryServer messages and never reads its channel.
 * Every one gets an answer (the first the server, the others EADDRINUSE);
 * the primary must stop reading while its unwritten answers pass a bound,
 * so its memory stays flat and its loop free. The worker writes for at most
 * 3 s or 64 MiB, and exits 0 once its writes have been blocked for 300 ms
 * (the primary stopped reading), 3 if they never were.
 * argv: cluster_query_flood */
HELPER_IMPL(cluster_query_flood) {
  enum { MAX_SENT = 64 << 20 };
  static char batch[1 << 16];
  size_t blen = 0, off = 0, sent = 0;
  uint64_t start = uv_hrtime(), blocked_since = 0;
  long long seq = 0;
  int fd, blocked = 0;
  (void)argc;
  (void)argv;
  fd = atoi(getenv("NODE_CHANNEL_FD"));
  ASSERT_OK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK));
  while (sent < MAX_SENT && uv_hrtime() - start < 3000000000ull) {
    ssize_t w;
    if (off == blen) {
      blen = 0;
      if (seq == 0)
        blen += (size_t)snprintf(
            batch, sizeof(batch),
            "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":%lld}\n",
            seq++);
      while (blen + 300 < sizeof(batch))
        blen += (size_t)snprintf(
            batch + blen, sizeof(batch) - blen,
            "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\",\"index\":0,"
            "\"data\":null,\"address\":\"127.0.0.1\",\"port\":0,"
            "\"addressType\":4,\"backlog\":511,\"seq\":%lld}\n",
            seq++);
      off = 0;
    }
    w = send(fd, batch + off, blen - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      sent += (size_t)w;
      blocked_since = 0;
      continue;
    }
    ASSERT(errno == EAGAIN);
    if (blocked_since == 0) {
      blocked_since = uv_hrtime();
    } else if (uv_hrtime() - blocked_since > 300000000ull) {
      blocked = 1;
      break;
    }
    uv_sleep(1);
  }
  fprintf(stderr, "query flood: sent %zu bytes, %lld messages, %s\n", sent, seq,
          blocked ? "then blocked" : "never blocked");
  return blocked ? 0 : 3;
}

typedef struct {
  tc_cluster_t t;
  uv_timer_t sampler;
  uint64_t last_tick;
  uint64_t max_gap_ms;
  size_t rss0, rss_max, queued_max;
  int samples;
} query_flood_t;

static size_t self_rss(void) {
  char buf[128];
  long pages = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "re");
  ASSERT(f != NULL);
  ASSERT(fgets(buf, sizeof(buf), f) != NULL);
  fclose(f);
  ASSERT_EQ(sscanf(buf, "%ld %ld", &pages, &resident), 2);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Every 10 ms: the primary's RSS and the worker's queued output, and the
 * longest time the loop took to come back to this timer. */
static void query_flood_sample(uv_timer_t* timer) {
  query_flood_t* q = timer->data;
  herd_worker_t* w = herd_cluster_worker(&q->t.cluster, 1);
  uint64_t now = uv_hrtime(), gap = (now - q->last_tick) / 1000000;
  size_t rss = self_rss();
  q->last_tick = now;
  if (gap > q->max_gap_ms)
    q->max_gap_ms = gap;
  if (rss > q->rss_max)
    q->rss_max = rss;
  if (w != NULL && w->child.channel != NULL) {
    size_t queued = herd_ipc_queued_bytes(w->child.channel);
    if (queued > q->queued_max)
      q->queued_max = queued;
  }
  q->samples++;
}

static void query_flood_exit(tc_cluster_t* t, herd_worker_t* w, int64_t code,
                             int sig) {
  query_flood_t* q = (query_flood_t*)t;
  (void)w;
  (void)code;
  (void)sig;
  uv_close((uv_handle_t*)&q->sampler, NULL);
  tc_cluster_finish(t);
}

TEST_IMPL(cluster_query_flood) {
  static query_flood_t q;
  memset(&q, 0, sizeof(q));
  tc_cluster_init(&q.t, HERD_SCHED_RR, NULL, NULL,
                  test_helper_args("cluster_query_flood", NULL, NULL));
  q.t.on_exit = query_flood_exit;
  ASSERT_OK(uv_timer_init(&q.t.loop, &q.sampler));
  q.sampler.data = &q;
  q.rss0 = self_rss();
  q.rss_max = q.rss0;
  q.last_tick = uv_hrtime();
  ASSERT_OK(uv_timer_start(&q.sampler, query_flood_sample, 10, 10));
  tc_cluster_fork(&q.t, 1);
  tc_cluster_run(&q.t);
  fprintf(stderr,
          "query flood: primary rss %+zd, queued at most %zu, longest loop "
          "turn %d ms over %d samples\n",
          (ssize_t)(q.rss_max - q.rss0), q.queued_max, (int)q.max_gap_ms,
          q.samples);
  /* The worker's writes were blocked: the primary stopped reading. */
  ASSERT_EQ(q.t.exit_code[1], 0);
  ASSERT_EQ(q.t.onlines, 1);
  ASSERT_LE(q.queued_max, 256 * 1024);
  ASSERT_LE(q.rss_max, q.rss0 + 8 * 1024 * 1024);
  ASSERT_LE(q.max_gap_ms, 1000);
  return 0;
}
