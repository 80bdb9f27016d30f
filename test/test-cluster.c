/* The cluster API with herd workers: events, kill, disconnect, and each
 * scheduling policy serving requests from two workers. */
#include "test-cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

/* The test worker: answers every request with "w<id>\n" (the id padded to
 * three places with spaces), reports it with
 * {"cmd":"notifyRequest"}, answers {"cmd":"ping"} with a pong, and on
 * disconnect closes its HTTP server before letting go of the channel.
 * argv: cluster_worker PORT [MODE]; MODE "inuse" expects the primary's bind
 * to fail, "leave" disconnects by itself once listening, "deaf" ignores the
 * primary's disconnect, "nolisten" never listens, "exit" exits (3) once
 * online. */
static herd_server_t worker_server;
static herd_http_server_t worker_http;

static void worker_on_request(herd_http_req_t* req) {
  static const char notify[] = "{\"cmd\":\"notifyRequest\"}";
  char body[32];
  /* One length for every worker, as ab expects of the answers it counts. */
  int n = snprintf(body, sizeof(body), "w%-3d\n", herd_cluster_worker_id());
  ASSERT_OK(herd_http_respond(req, 200, "text/plain", body, (size_t)n));
  ASSERT(herd_cluster_worker_send(notify, sizeof(notify) - 1) >= 0);
}

static void worker_on_connection(herd_server_t* server, int status) {
  int fd;
  ASSERT_OK(status);
  ASSERT_OK(herd_server_accept_fd(server, &fd));
  ASSERT_EQ(herd_server_accept_fd(server, &fd) == UV_EAGAIN, 1);
  ASSERT_OK(herd_http_server_adopt(&worker_http, fd));
}

static const char* worker_mode = "";
static int worker_status;

static void worker_on_http_closed(herd_http_server_t* server);

static void worker_on_listen(herd_server_t* server, int status) {
  if (strcmp(worker_mode, "inuse") == 0) {
    /* The primary could not bind: the error arrives here, the server is
     * closed by herd, and the worker leaves on its own. */
    ASSERT_EQ(status, UV_EADDRINUSE);
    worker_status = 5;
    herd_http_server_close(&worker_http, worker_on_http_closed);
    return;
  }
  ASSERT_OK(status);
  ASSERT(server->port > 0);
  if (strcmp(worker_mode, "leave") == 0) {
    /* Node's worker.disconnect() from the worker's side. */
    worker_status = 6;
    herd_http_server_close(&worker_http, worker_on_http_closed);
  }
}

static void worker_on_message(herd_ipc_t* ipc, const char* json, size_t len,
                              herd_handle_t* handle) {
  char cmd[16], reply[64];
  int n;
  (void)ipc;
  (void)handle;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0 &&
      strcmp(cmd, "ping") == 0) {
    int pdeathsig = 0;
    ASSERT_OK(prctl(PR_GET_PDEATHSIG, &pdeathsig));
    n = snprintf(reply, sizeof(reply),
                 "{\"cmd\":\"pong\",\"id\":%d,\"pdeathsig\":%d}",
                 herd_cluster_worker_id(), pdeathsig);
    ASSERT(herd_cluster_worker_send(reply, (size_t)n) >= 0);
  }
}

static void worker_on_http_closed(herd_http_server_t* server) {
  (void)server;
  herd_cluster_worker_disconnect();
}

static void worker_on_disconnect(void) {
  if (strcmp(worker_mode, "deaf") == 0)
    return; /* ignores it: stays until killed */
  herd_http_server_close(&worker_http, worker_on_http_closed);
}

HELPER_IMPL(cluster_worker) {
  herd_cluster_worker_options_t wo;
  uv_loop_t loop;
  int port = argc > 1 ? atoi(argv[1]) : 0;

  if (argc > 2)
    worker_mode = argv[2];

  ASSERT(herd_cluster_is_worker());
  ASSERT(!herd_cluster_is_primary());
  ASSERT_OK(uv_loop_init(&loop));
  memset(&wo, 0, sizeof(wo));
  wo.message = worker_on_message;
  wo.disconnect = worker_on_disconnect;
  ASSERT_OK(herd_cluster_worker_setup(&loop, &wo));
  /* The variables are gone, the worker identity stays. */
  ASSERT(getenv("NODE_UNIQUE_ID") == NULL);
  ASSERT(getenv("NODE_CHANNEL_FD") == NULL);
  ASSERT(herd_cluster_is_worker());
  ASSERT(herd_cluster_worker_id() > 0);
  ASSERT_EQ(herd_cluster_worker_setup(&loop, &wo), UV_EALREADY);
  if (strcmp(worker_mode, "exit") == 0)
    _exit(3); /* online, never listening */
  ASSERT_OK(
      herd_http_server_init(&loop, &worker_http, worker_on_request, NULL));
  ASSERT_OK(herd_server_init(&loop, &worker_server));
  if (strcmp(worker_mode, "nolisten") != 0)
    ASSERT_OK(herd_server_listen(&worker_server, "127.0.0.1", port, 128,
                                 worker_on_connection, worker_on_listen));
  else
    herd_server_close(&worker_server, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  test_loop_close(&loop);
  return worker_status;
}

/* fork / online / listening / message / exit, kill and disconnect. */
static void events_on_message(tc_cluster_t* t, herd_worker_t* w,
                              const char* json, size_t len) {
  int64_t id;
  char cmd[16];
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) <= 0 ||
      strcmp(cmd, "pong") != 0)
    return;
  ASSERT_OK(herd_json_get_int(json, len, "id", &id));
  ASSERT_EQ(id, w->id);
  if (++*(int*)t->data < 2)
    return;
  /* Both answered: kill worker 1, disconnect worker 2. */
  ASSERT_OK(herd_worker_kill(herd_cluster_worker(&t->cluster, 1), SIGKILL));
  ASSERT_OK(herd_worker_disconnect(herd_cluster_worker(&t->cluster, 2)));
  /* Node: a worker disconnected by the primary leaves the table at once. */
  ASSERT(herd_cluster_worker(&t->cluster, 2) == NULL);
  ASSERT_EQ(t->cluster.workers, 1);
}

static void events_on_ready(tc_cluster_t* t) {
  static const char ping[] = "{\"cmd\":\"ping\"}";
  int n = 0;
  for (herd_worker_t* w = herd_cluster_first(&t->cluster); w != NULL;
       w = herd_cluster_next(w)) {
    ASSERT_EQ(w->id, n + 1);
    ASSERT(herd_worker_is_connected(w));
    ASSERT(!herd_worker_is_dead(w));
    ASSERT_STR_EQ(herd_worker_state_name(w->state), "listening");
    ASSERT_OK(herd_worker_send(w, ping, sizeof(ping) - 1));
    n++;
  }
  ASSERT_EQ(n, 2);
}

static void events_on_exit(tc_cluster_t* t, herd_worker_t* w, int64_t code,
                           int sig) {
  (void)w;
  (void)code;
  (void)sig;
  if (t->exits == 2)
    tc_cluster_finish(t);
}

TEST_IMPL(cluster_events) {
  tc_cluster_t t;
  int pongs = 0;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL, NULL);
  t.data = &pongs;
  t.want_listening = 2;
  t.on_ready = events_on_ready;
  t.on_message = events_on_message;
  t.on_exit = events_on_exit;
  ASSERT(herd_cluster_is_primary());
  ASSERT(herd_cluster_first(&t.cluster) == NULL);
  tc_cluster_fork(&t, 2);
  ASSERT_EQ(t.cluster.workers, 2);
  ASSERT_EQ(t.forks, 0); /* the fork event comes from the loop */
  tc_cluster_run(&t);

  ASSERT_EQ(t.forks, 2);
  ASSERT_EQ(t.onlines, 2);
  ASSERT_EQ(t.listenings, 2);
  ASSERT_EQ(t.disconnects, 2);
  ASSERT_EQ(pongs, 2);
  ASSERT_EQ(t.state_seen[1], 15);
  ASSERT_EQ(t.state_seen[2], 15);
  ASSERT_EQ(t.exit_signal[1], SIGKILL);
  ASSERT_EQ(t.exit_code[1], -1);
  ASSERT_EQ(t.exit_ead[1], 0);
  ASSERT_EQ(t.exit_signal[2], 0);
  ASSERT_EQ(t.exit_code[2], 0);
  ASSERT_EQ(t.exit_ead[2], 1);
  return 0;
}

/* herd_cluster_disconnect(): every worker stops gracefully, then the
 * callback. */
static void disc_on_done(herd_cluster_t* c) {
  tc_cluster_t* t = c->data;
  ASSERT_EQ(t->exits, 3);
  ASSERT(herd_cluster_first(c) == NULL);
  *(int*)t->data = 1;
  tc_cluster_finish(t);
}

static void disc_client(void* arg) {
  tc_cluster_t* t = arg;
  char body[64];
  ASSERT_EQ(tc_http_get(t->port, body, sizeof(body), 3000), 200);
  ASSERT(tc_count_body(t, body) > 0);
}

static void disc_client_done(void* arg) {
  tc_cluster_t* t = arg;
  ASSERT_EQ(herd_cluster_disconnect(&t->cluster, disc_on_done), 0);
  ASSERT_EQ(herd_cluster_disconnect(&t->cluster, disc_on_done), UV_EALREADY);
}

static void disc_on_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, disc_client, disc_client_done, t);
}

TEST_IMPL(cluster_disconnect_all) {
  tc_cluster_t t;
  int done = 0;
  tc_cluster_init(&t, HERD_SCHED_DEFAULT, NULL, NULL, NULL);
  t.data = &done;
  t.want_listening = 3;
  t.on_ready = disc_on_ready;
  tc_cluster_fork(&t, 3);
  tc_cluster_run(&t);
  ASSERT_EQ(done, 1);
  for (int id = 1; id <= 3; id++) {
    ASSERT_EQ(t.exit_code[id], 0);
    ASSERT_EQ(t.exit_signal[id], 0);
    ASSERT_EQ(t.exit_ead[id], 1);
  }
  return 0;
}

/* Each policy, two workers: both must serve. */
static void policy_client(void* arg) {
  tc_cluster_t* t = arg;
  char body[64];
  herd_sched_policy_t policy = t->cluster.policy;

  if (policy == HERD_SCHED_SHARED) {
    /* Both workers accept from one queue, so the kernel may favour either:
     * stop one at a time to see that each can serve. */
    for (int round = 0; round < 2; round++) {
      int stopped = t->pid[round == 0 ? 1 : 2];
      ASSERT_EQ(kill(stopped, SIGSTOP), 0);
      ASSERT(tc_wait_state(stopped, 'T', 2000));
      for (int i = 0; i < 5; i++) {
        ASSERT_EQ(tc_http_get(t->port, body, sizeof(body), 3000), 200);
        ASSERT_EQ(tc_count_body(t, body), round == 0 ? 2 : 1);
      }
      ASSERT_EQ(kill(stopped, SIGCONT), 0);
    }
    return;
  }
  /* rr hands connections out in turn; reuseport spreads them by the hash
   * of the client's port: 40 connections reach both slots (all 40 on one
   * has a chance of 2^-39). */
  for (int i = 0; i < (policy == HERD_SCHED_RR ? 10 : 40); i++) {
    ASSERT_EQ(tc_http_get(t->port, body, sizeof(body), 3000), 200);
    ASSERT(tc_count_body(t, body) > 0);
  }
}

static void policy_client_done(void* arg) {
  tc_cluster_finish(arg);
}

static void policy_on_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, policy_client, policy_client_done, t);
}

static void run_policy(herd_sched_policy_t policy) {
  tc_cluster_t t;
  int total;
  tc_cluster_init(&t, policy, NULL, NULL, NULL);
  t.want_listening = 2;
  t.on_ready = policy_on_ready;
  tc_cluster_fork(&t, 2);
  ASSERT_EQ(t.cluster.policy, policy);
  tc_cluster_run(&t);
  total = t.served[1] + t.served[2];
  fprintf(stderr, "%s: worker 1 served %d, worker 2 served %d\n",
          herd_sched_policy_name(policy), t.served[1], t.served[2]);
  ASSERT(t.served[1] >= 1);
  ASSERT(t.served[2] >= 1);
  if (policy == HERD_SCHED_RR) {
    /* In turn: sequential connections alternate. */
    ASSERT_EQ(t.served[1], 5);
    ASSERT_EQ(t.served[2], 5);
  }
  /* Every response was reported before the workers let go of the channel. */
  ASSERT_EQ(t.notifies[1] + t.notifies[2], total);
  ASSERT_EQ(t.exit_code[1], 0);
  ASSERT_EQ(t.exit_code[2], 0);
}

TEST_IMPL(cluster_policy_rr) {
  run_policy(HERD_SCHED_RR);
  return 0;
}

TEST_IMPL(cluster_policy_shared) {
  run_policy(HERD_SCHED_SHARED);
  return 0;
}

TEST_IMPL(cluster_policy_reuseport) {
  run_policy(HERD_SCHED_REUSEPORT);
  return 0;
}

/* The policy from the environment, and the names. */
TEST_IMPL(cluster_policy_env) {
  ASSERT_EQ(herd_sched_policy_parse("rr"), HERD_SCHED_RR);
  ASSERT_EQ(herd_sched_policy_parse("none"), HERD_SCHED_SHARED);
  ASSERT_EQ(herd_sched_policy_parse("shared"), HERD_SCHED_SHARED);
  ASSERT_EQ(herd_sched_policy_parse("reuseport"), HERD_SCHED_REUSEPORT);
  ASSERT_EQ(herd_sched_policy_parse("fair"), -1);
  ASSERT_EQ(herd_sched_policy_parse(NULL), -1);
  ASSERT_STR_EQ(herd_sched_policy_name(HERD_SCHED_REUSEPORT), "reuseport");

  unsetenv("HERD_SCHED_POLICY");
  unsetenv("NODE_CLUSTER_SCHED_POLICY");
  ASSERT_EQ(herd_cluster_default_policy(), HERD_SCHED_REUSEPORT);
  setenv("NODE_CLUSTER_SCHED_POLICY", "none", 1);
  ASSERT_EQ(herd_cluster_default_policy(), HERD_SCHED_SHARED);
  setenv("NODE_CLUSTER_SCHED_POLICY", "rr", 1);
  ASSERT_EQ(herd_cluster_default_policy(), HERD_SCHED_RR);
  /* Node's variable knows rr and none only. */
  setenv("NODE_CLUSTER_SCHED_POLICY", "reuseport", 1);
  ASSERT_EQ(herd_cluster_default_policy(), HERD_SCHED_REUSEPORT);
  setenv("NODE_CLUSTER_SCHED_POLICY", "rr", 1);
  setenv("HERD_SCHED_POLICY", "shared", 1);
  ASSERT_EQ(herd_cluster_default_policy(), HERD_SCHED_SHARED);
  unsetenv("HERD_SCHED_POLICY");
  unsetenv("NODE_CLUSTER_SCHED_POLICY");

  ASSERT(!herd_cluster_is_worker());
  ASSERT_EQ(herd_cluster_worker_id(), 0);
  ASSERT(herd_cluster_worker_channel() == NULL);
  ASSERT_EQ(herd_cluster_worker_send("{}", 2), HERD_ENOTWORKER);
  {
    uv_loop_t loop;
    ASSERT_OK(uv_loop_init(&loop));
    ASSERT_EQ(herd_cluster_worker_setup(&loop, NULL), HERD_ENOTWORKER);
    test_loop_close(&loop);
  }
  return 0;
}

/* herd_server_t outside a cluster binds by itself; a port in use is an
 * error returned at once. */
static void standalone_on_conn(herd_server_t* server, int status) {
  uv_tcp_t* client = server->data;
  ASSERT_OK(status);
  ASSERT_OK(uv_tcp_init(server->loop, client));
  ASSERT_OK(herd_server_accept(server, (uv_stream_t*)client));
  uv_close((uv_handle_t*)client, NULL);
  herd_server_close(server, NULL);
}

static void standalone_on_listen(herd_server_t* server, int status) {
  ASSERT_OK(status);
  ASSERT_EQ(server->policy, HERD_SCHED_DEFAULT);
  int fd = tc_http_send(server->port);
  ASSERT(fd >= 0);
  close(fd);
}

TEST_IMPL(cluster_server_standalone) {
  uv_loop_t loop;
  herd_server_t a, b;
  uv_tcp_t client;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_server_init(&loop, &a));
  a.data = &client;
  ASSERT_OK(herd_server_listen(&a, "127.0.0.1", 0, 16, standalone_on_conn,
                               standalone_on_listen));
  ASSERT(a.port > 0);
  ASSERT_EQ(herd_server_listen(&a, "127.0.0.1", 0, 16, NULL, NULL),
            UV_EALREADY);
  ASSERT_OK(herd_server_init(&loop, &b));
  ASSERT_EQ(herd_server_listen(&b, "127.0.0.1", a.port, 16, NULL, NULL),
            UV_EADDRINUSE);
  ASSERT_EQ(herd_server_listen(&b, "localhost", 0, 16, NULL, NULL), UV_EINVAL);
  herd_server_close(&b, NULL);
  test_loop_run_close(&loop);
  ASSERT_EQ(a.connections, 1);
  return 0;
}

/* A worker that disconnects by itself (exitedAfterDisconnect, acked by the
 * primary) is marked exited_after_disconnect. */
TEST_IMPL(cluster_worker_disconnect) {
  tc_cluster_t t;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL,
                  test_helper_args("cluster_worker", "0", "leave"));
  t.want_listening = 1;
  t.on_exit = tc_finish_on_exit;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.listenings, 1);
  ASSERT_EQ(t.exit_code[1], 6);
  ASSERT_EQ(t.exit_ead[1], 1);
  ASSERT_EQ(t.disconnects, 1);
  return 0;
}

/* The primary cannot bind (the port is taken): the worker's listen callback
 * gets the error, under every policy. */
TEST_IMPL(cluster_listen_error) {
  herd_server_t taken;
  uv_loop_t loop;
  char port[16];
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_server_init(&loop, &taken));
  ASSERT_OK(herd_server_listen(&taken, "127.0.0.1", 0, 8, NULL, NULL));
  snprintf(port, sizeof(port), "%d", taken.port);
  for (int policy = HERD_SCHED_RR; policy <= HERD_SCHED_REUSEPORT; policy++) {
    tc_cluster_t t;
    tc_cluster_init(&t, (herd_sched_policy_t)policy, NULL, NULL,
                    test_helper_args("cluster_worker", port, "inuse"));
    t.on_exit = tc_finish_on_exit;
    tc_cluster_fork(&t, 1);
    tc_cluster_run(&t);
    ASSERT_EQ(t.listenings, 0);
    ASSERT_EQ(t.exit_code[1], 5);
  }
  herd_server_close(&taken, NULL);
  test_loop_run_close(&loop);
  return 0;
}

/* A worker program that cannot start: fork, then exit with start_error. */
static void enoent_on_exit(tc_cluster_t* t, herd_worker_t* w, int64_t code,
                           int sig) {
  (void)code;
  (void)sig;
  *(int*)t->data = w->start_error;
  tc_cluster_finish(t);
}

TEST_IMPL(cluster_fork_enoent) {
  tc_cluster_t t;
  int start_error = 0;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, "/nonexistent/herd-worker", NULL);
  t.data = &start_error;
  t.on_exit = enoent_on_exit;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.forks, 1);
  ASSERT_EQ(t.onlines, 0);
  ASSERT_EQ(t.exits, 1);
  ASSERT_EQ(t.exit_code[1], -1);
  ASSERT_EQ(t.exit_signal[1], 0);
  ASSERT_EQ(start_error, UV_ENOENT);
  /* Node's worker 'error' for a program that cannot start, before exit. */
  ASSERT_EQ(t.errors, 1);
  ASSERT_EQ(t.last_error, UV_ENOENT);
  return 0;
}

/* silent: the worker's stdout reaches the output callback. */
static char silent_out[64];

static void silent_output(herd_cluster_t* c, herd_worker_t* w, int fd,
                          const char* buf, size_t len) {
  (void)c;
  (void)w;
  ASSERT_EQ(fd, 1);
  strncat(silent_out, buf,
          len < sizeof(silent_out) - strlen(silent_out) - 1
              ? len
              : sizeof(silent_out) - strlen(silent_out) - 1);
}

static void silent_exit(herd_cluster_t* c, herd_worker_t* w, int64_t code,
                        int sig) {
  (void)w;
  (void)sig;
  ASSERT_EQ(code, 0);
  herd_cluster_close(c, NULL);
}

TEST_IMPL(cluster_silent_output) {
  uv_loop_t loop;
  herd_cluster_t cluster;
  herd_cluster_callbacks_t cbs;
  herd_cluster_settings_t s;
  ASSERT_OK(uv_loop_init(&loop));
  memset(&cbs, 0, sizeof(cbs));
  cbs.output = silent_output;
  cbs.exit = silent_exit;
  ASSERT_OK(herd_cluster_init(&loop, &cluster, &cbs));
  memset(&s, 0, sizeof(s));
  s.exec = test_exe();
  s.args = test_helper_args("hello", NULL, NULL);
  s.silent = 1;
  herd_cluster_setup_primary(&cluster, &s);
  ASSERT_OK(herd_cluster_fork(&cluster, NULL, NULL));
  test_loop_run_close(&loop);
  ASSERT_STR_EQ(silent_out, "hello\n");
  return 0;
}

/* settings.spawn reaches every worker: a process group of its own, the
 * parent-death signal (kept by the worker's setup, which asks for SIGTERM
 * only when none is set) and, as root, another uid and gid (Node's
 * cluster.settings.uid and gid) with the supplementary groups dropped, as
 * a Node primary's workers get them (test/fixtures/cluster-uid.js). */
static char node_ids[256];

/* The Uid, Gid and Groups lines of /proc/<pid>/status. */
static void proc_ids(int pid, char* out, size_t cap) {
  char path[64];
  char* status;
  const char* keys[] = {"\nUid:", "\nGid:", "\nGroups:"};
  size_t n = 0;
  snprintf(path, sizeof(path), "/proc/%d/status", pid);
  status = test_read_file(path, NULL);
  ASSERT(status != NULL);
  out[0] = '\0';
  for (int i = 0; i < 3; i++) {
    const char* l = strstr(status, keys[i]);
    const char* e;
    ASSERT(l != NULL);
    e = strchr(l + 1, '\n');
    n += (size_t)snprintf(out + n, cap - n, "%.*s",
                          (int)(e != NULL ? e - l : (long)strlen(l)), l);
  }
  free(status);
}

static void spawn_opts_on_ready(tc_cluster_t* t) {
  static const char ping[] = "{\"cmd\":\"ping\"}";
  for (herd_worker_t* w = herd_cluster_first(&t->cluster); w != NULL;
       w = herd_cluster_next(w)) {
    char ids[256];
    ASSERT_EQ(getpgid(w->pid), w->pid);
    proc_ids(w->pid, ids, sizeof(ids));
    if (getuid() == 0) {
      ASSERT(strstr(ids, "\nUid:\t65534\t") != NULL);
      ASSERT(strstr(ids, "\nGid:\t65534\t") != NULL);
      /* The same as a Node primary's worker. */
      ASSERT_STR_EQ(ids, node_ids);
    }
    ASSERT_OK(herd_worker_send(w, ping, sizeof(ping) - 1));
  }
}

static void spawn_opts_on_message(tc_cluster_t* t, herd_worker_t* w,
                                  const char* json, size_t len) {
  int64_t sig;
  char cmd[16];
  (void)w;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) <= 0 ||
      strcmp(cmd, "pong") != 0)
    return;
  ASSERT_OK(herd_json_get_int(json, len, "pdeathsig", &sig));
  ASSERT_EQ(sig, SIGKILL);
  if (++*(int*)t->data == 2)
    tc_cluster_finish(t);
}

TEST_IMPL(cluster_settings_spawn) {
  tc_cluster_t t;
  int pongs = 0;
  if (getuid() == 0) {
    herd_spawn_sync_options_t o;
    herd_sync_result_t r;
    char script[1024];
    const char* args[] = {script, "65534", "65534", NULL};
    snprintf(script, sizeof(script), "%s/test/fixtures/cluster-uid.js",
             test_source_dir());
    memset(&o, 0, sizeof(o));
    o.timeout = 10000;
    ASSERT_OK(herd_spawn_sync("node", args, &o, &r));
    if (r.status != 0)
      FATAL("node: %s", r.err);
    snprintf(node_ids, sizeof(node_ids), "\n%s", r.out);
    /* console.log's newline */
    node_ids[strlen(node_ids) - 1] = '\0';
    fprintf(stderr, "node's worker:%s\n", node_ids);
    herd_sync_result_free(&r);
  }
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL, NULL);
  t.settings.spawn.flags = HERD_SPAWN_PROCESS_GROUP;
  if (getuid() == 0) {
    t.settings.spawn.flags |= HERD_SPAWN_SETUID | HERD_SPAWN_SETGID;
    t.settings.spawn.uid = 65534;
    t.settings.spawn.gid = 65534;
  }
  t.settings.spawn.parent_death_signal = SIGKILL;
  herd_cluster_setup_primary(&t.cluster, &t.settings);
  t.data = &pongs;
  t.want_listening = 2;
  t.on_ready = spawn_opts_on_ready;
  t.on_message = spawn_opts_on_message;
  tc_cluster_fork(&t, 2);
  tc_cluster_run(&t);
  ASSERT_EQ(t.exits, 2);
  ASSERT_EQ(pongs, 2);
  return 0;
}

/* The rest of settings.spawn: env is the base environment (or adds to the
 * primary's with HERD_SPAWN_ENV_EXTEND), stdio serves when settings.stdio
 * is empty, and listen_fds cannot be had (the workers' fd 3 is the
 * channel). The worker here is env(1), which prints its environment: it
 * gets no arguments (another program than this one), or it would run them. */
typedef struct {
  tc_cluster_t t;
  int pipes[2][2];
  char out[2][8192];
} spawn_env_t;

static void spawn_env_on_exit(tc_cluster_t* t, herd_worker_t* w, int64_t code,
                              int sig) {
  (void)w;
  (void)code;
  (void)sig;
  if (t->exits == 2)
    tc_cluster_finish(t);
}

TEST_IMPL(cluster_settings_spawn_env) {
  static const char* const base[] = {"HERD_TEST_BASE=1", NULL};
  spawn_env_t e;
  herd_stdio_t stdio[4];
  int listen_fd = 0;

  memset(&e, 0, sizeof(e));
  setenv("HERD_TEST_PRIMARY_ONLY", "1", 1);
  tc_cluster_init(&e.t, HERD_SCHED_RR, NULL, "/usr/bin/env", NULL);
  e.t.on_exit = spawn_env_on_exit;
  e.t.settings.args = NULL;
  e.t.settings.spawn.env = base;
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_FD;
  stdio[2].kind = HERD_STDIO_INHERIT;
  stdio[2].fd = 2;
  stdio[3].kind = HERD_STDIO_IPC;
  e.t.settings.spawn.stdio = stdio;
  e.t.settings.spawn.stdio_count = 4;
  for (int i = 0; i < 2; i++) {
    ASSERT_OK(pipe2(e.pipes[i], O_CLOEXEC));
    stdio[1].fd = e.pipes[i][1];
    if (i == 1)
      e.t.settings.spawn.flags = HERD_SPAWN_ENV_EXTEND;
    herd_cluster_setup_primary(&e.t.cluster, &e.t.settings);
    tc_cluster_fork(&e.t, 1);
    close(e.pipes[i][1]);
  }
  e.t.settings.spawn.listen_fds = &listen_fd;
  e.t.settings.spawn.listen_fds_count = 1;
  e.t.settings.spawn.stdio = NULL;
  e.t.settings.spawn.stdio_count = 0;
  herd_cluster_setup_primary(&e.t.cluster, &e.t.settings);
  ASSERT_EQ(herd_cluster_fork(&e.t.cluster, NULL, NULL), UV_EINVAL);
  tc_cluster_run(&e.t);
  unsetenv("HERD_TEST_PRIMARY_ONLY");
  for (int i = 0; i < 2; i++) {
    ssize_t n = read(e.pipes[i][0], e.out[i], sizeof(e.out[i]) - 1);
    ASSERT(n > 0);
    e.out[i][n] = '\0';
    close(e.pipes[i][0]);
    ASSERT_EQ(e.t.exit_code[i + 1], 0); /* no arguments to run */
    ASSERT(strstr(e.out[i], "HERD_TEST_BASE=1\n") != NULL);
    ASSERT(strstr(e.out[i], i == 0 ? "NODE_UNIQUE_ID=1\n"
                                   : "NODE_UNIQUE_ID=2\n") != NULL);
    ASSERT_EQ(strstr(e.out[i], "HERD_TEST_PRIMARY_ONLY=1\n") != NULL, i == 1);
  }
  return 0;
}

/* Node's settings.args defaults to the primary's own arguments for the
 * program that exec defaults to: a C primary that runs itself again gives
 * its workers its argv[1..]. Here the worker is this test again (the
 * runner runs it as "run-tests cluster_default_args"), which reports its
 * arguments, NUL-separated as in /proc/self/cmdline. */
static struct {
  const char* want;
  size_t want_len;
  int matched;
} default_args;

static void default_args_on_message(tc_cluster_t* t, herd_worker_t* w,
                                    const char* json, size_t len) {
  char got[4096];
  int n;
  (void)t;
  (void)w;
  n = herd_json_get_string(json, len, "args", got, sizeof(got));
  ASSERT(n >= 0);
  ASSERT_EQ((size_t)n, default_args.want_len);
  ASSERT_OK(memcmp(got, default_args.want, (size_t)n));
  default_args.matched = 1;
}

TEST_IMPL(cluster_default_args) {
  tc_cluster_t t;
  char* mine;
  size_t mine_len;
  if (herd_cluster_is_worker()) {
    uv_loop_t loop;
    char msg[4200], q[4096];
    size_t n;
    char* cmdline = test_read_file("/proc/self/cmdline", &n);
    int len;
    ASSERT(cmdline != NULL);
    ASSERT_OK(uv_loop_init(&loop));
    ASSERT_OK(herd_cluster_worker_setup(&loop, NULL));
    herd_json_quote(q, sizeof(q), cmdline + strlen(cmdline) + 1,
                    n - strlen(cmdline) - 1);
    len = snprintf(msg, sizeof(msg), "{\"cmd\":\"argv\",\"args\":%s}", q);
    ASSERT(herd_cluster_worker_send(msg, (size_t)len) >= 0);
    herd_cluster_worker_disconnect();
    uv_run(&loop, UV_RUN_DEFAULT);
    test_loop_close(&loop);
    free(cmdline);
    /* The runner's end-of-test checks are for the primary: the channel's
     * fd, inherited, is gone. */
    exit(0);
  }
  mine = test_read_file("/proc/self/cmdline", &mine_len);
  ASSERT(mine != NULL);
  default_args.want = mine + strlen(mine) + 1;
  default_args.want_len = mine_len - strlen(mine) - 1;
  ASSERT(default_args.want_len > 0); /* the test's name at least */
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL, NULL);
  t.settings.exec = NULL;
  t.settings.args = NULL;
  herd_cluster_setup_primary(&t.cluster, &t.settings);
  t.on_exit = tc_finish_on_exit;
  t.on_message = default_args_on_message;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  ASSERT_EQ(t.exit_code[1], 0);
  ASSERT(default_args.matched);
  free(mine);
  return 0;
}
