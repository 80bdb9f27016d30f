/* The worker objects: Node's worker.on(...) events for one worker and the
 * 'setup' event on the primary's side (in Node's order), worker.send()
 * with a handle and a completion callback, the 'error' event, and in a
 * worker process Node's cluster.worker (herd_cluster_worker_self()). With
 * herd and Node on either side. */
#include "test-cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

/* A log of events as Node's test/fixtures/cluster-events.js writes it. */
typedef struct {
  uv_loop_t loop;
  herd_cluster_t cluster;
  herd_cluster_settings_t settings;
  char log[64][32];
  int n;
  int his, exits;
  const char* args[2];
  char script[1024];
} evlog_t;

static void ev_push(evlog_t* e, const char* what, int id) {
  ASSERT(e->n < 64);
  if (id > 0)
    snprintf(e->log[e->n++], sizeof(e->log[0]), "%s %d", what, id);
  else
    snprintf(e->log[e->n++], sizeof(e->log[0]), "%s", what);
}

static evlog_t* ev_of(herd_worker_t* w) {
  return w->cluster->data;
}

static void ev_w_online(herd_worker_t* w) {
  ev_push(ev_of(w), "w-online", w->id);
}

static void ev_w_listening(herd_worker_t* w, const herd_cluster_address_t* a) {
  (void)a;
  ev_push(ev_of(w), "w-listening", w->id);
}

static void ev_w_message(herd_worker_t* w, const char* json, size_t len,
                         herd_handle_t* h) {
  (void)json;
  (void)len;
  (void)h;
  ev_push(ev_of(w), "w-message", w->id);
}

static void ev_w_disconnect(herd_worker_t* w) {
  ev_push(ev_of(w), "w-disconnect", w->id);
}

static void ev_w_exit(herd_worker_t* w, int64_t code, int sig) {
  ASSERT_EQ(code, 0);
  ASSERT_EQ(sig, 0);
  ev_push(ev_of(w), "w-exit", w->id);
}

static void ev_setup(herd_cluster_t* c, const herd_cluster_settings_t* s) {
  ASSERT(s == &c->settings);
  ev_push(c->data, "setup", 0);
}

static void ev_fork(herd_cluster_t* c, herd_worker_t* w) {
  ev_push(c->data, "fork", w->id);
}

static void ev_online(herd_cluster_t* c, herd_worker_t* w) {
  ev_push(c->data, "c-online", w->id);
}

static void ev_listening(herd_cluster_t* c, herd_worker_t* w,
                         const herd_cluster_address_t* a) {
  (void)a;
  ev_push(c->data, "c-listening", w->id);
}

static void ev_message(herd_cluster_t* c, herd_worker_t* w, const char* json,
                       size_t len, herd_handle_t* h) {
  evlog_t* e = c->data;
  (void)json;
  (void)len;
  (void)h;
  ev_push(e, "c-message", w->id);
  if (++e->his == 2)
    ASSERT_OK(herd_cluster_disconnect(c, NULL));
}

static void ev_disconnect(herd_cluster_t* c, herd_worker_t* w) {
  ev_push(c->data, "c-disconnect", w->id);
}

static void ev_exit(herd_cluster_t* c, herd_worker_t* w, int64_t code,
                    int sig) {
  evlog_t* e = c->data;
  (void)code;
  (void)sig;
  ev_push(e, "c-exit", w->id);
  if (++e->exits == 2)
    herd_cluster_close(c, NULL);
}

/* 0 for the program's own events (setup, fork), else the worker's id. */
static int ev_class(const char* ev) {
  const char* sp = strchr(ev, ' ');
  if (sp == NULL || strncmp(ev, "fork", 4) == 0)
    return 0;
  return atoi(sp + 1);
}

/* The events of the program, and of each worker, come in the same order;
 * the two workers may interleave differently. */
static void ev_compare(const evlog_t* e, const char* node_json) {
  char want[64][32];
  int nwant = 0;
  const char* s = node_json;
  while ((s = strchr(s, '"')) != NULL) {
    const char* end = strchr(s + 1, '"');
    ASSERT(end != NULL && nwant < 64);
    snprintf(want[nwant++], sizeof(want[0]), "%.*s", (int)(end - s - 1), s + 1);
    s = end + 1;
  }
  ASSERT_EQ(e->n, nwant);
  for (int c = 0; c <= 2; c++) {
    int i = 0, j = 0;
    for (;;) {
      while (i < nwant && ev_class(want[i]) != c)
        i++;
      while (j < e->n && ev_class(e->log[j]) != c)
        j++;
      if (i == nwant || j == e->n)
        break;
      if (strcmp(want[i], e->log[j]) != 0)
        FATAL("node has \"%s\" where herd has \"%s\"", want[i], e->log[j]);
      i++;
      j++;
    }
    ASSERT(i == nwant && j == e->n);
  }
}

/* herd's primary emits Node's events in Node's order: the same workers
 * (test/fixtures/cluster-events.js) under a Node primary and under herd's,
 * with worker.on() callbacks on both workers and setupPrimary() around the
 * forks. */
TEST_IMPL(cluster_worker_events) {
  herd_spawn_sync_options_t so;
  herd_sync_result_t r;
  herd_cluster_callbacks_t cbs;
  herd_worker_callbacks_t wcb;
  const char* nargs[2];
  evlog_t e;

  memset(&e, 0, sizeof(e));
  snprintf(e.script, sizeof(e.script), "%s/test/fixtures/cluster-events.js",
           test_source_dir());
  nargs[0] = e.script;
  nargs[1] = NULL;
  memset(&so, 0, sizeof(so));
  so.timeout = 10000;
  ASSERT_OK(herd_spawn_sync("node", nargs, &so, &r));
  ASSERT_EQ(r.status, 0);
  fprintf(stderr, "node: %s", r.out);

  ASSERT_OK(uv_loop_init(&e.loop));
  memset(&cbs, 0, sizeof(cbs));
  cbs.setup = ev_setup;
  cbs.fork = ev_fork;
  cbs.online = ev_online;
  cbs.listening = ev_listening;
  cbs.message = ev_message;
  cbs.disconnect = ev_disconnect;
  cbs.exit = ev_exit;
  ASSERT_OK(herd_cluster_init(&e.loop, &e.cluster, &cbs));
  e.cluster.data = &e;
  memset(&wcb, 0, sizeof(wcb));
  wcb.online = ev_w_online;
  wcb.listening = ev_w_listening;
  wcb.message = ev_w_message;
  wcb.disconnect = ev_w_disconnect;
  wcb.exit = ev_w_exit;
  e.settings.exec_path = "node";
  e.settings.exec = e.script;
  e.args[0] = NULL;
  e.settings.args = e.args;
  e.settings.policy = HERD_SCHED_RR;
  herd_cluster_setup_primary(&e.cluster, &e.settings);
  for (int i = 0; i < 2; i++) {
    herd_worker_t* w;
    ASSERT_OK(herd_cluster_fork(&e.cluster, NULL, &w));
    herd_worker_on(w, &wcb);
  }
  herd_cluster_setup_primary(&e.cluster, &e.settings);
  ASSERT_EQ(e.n, 0); /* every event comes from the loop */
  test_loop_run_close(&e.loop);
  for (int i = 0; i < e.n; i++)
    fprintf(stderr, "%s%s", i ? ", " : "herd: ", e.log[i]);
  fprintf(stderr, "\n");
  ev_compare(&e, r.out);
  herd_sync_result_free(&r);
  return 0;
}

/* The worker: its own worker object (Node's cluster.worker), driven by the
 * primary's messages:
 *   socket + a handle  writes "w<id>\n" on it and closes it, says "wrote"
 *   give-server        sends a listening TCP server with
 *                      herd_worker_send_ex(), then "server-sent" with the
 *                      completion status
 *   long-please        sends a message longer than the primary reads
 *   leave              herd_worker_disconnect(self)
 *   destroy            herd_worker_kill(self): Node's worker.destroy()
 * It reads lines of 256 bytes at most: a longer message is its error
 * event, reported as {"cmd":"error","err":E}. At start it sends "ready"
 * (id, pid) with herd_worker_send_ex() and then "sent" from the callback. */
static struct {
  uv_loop_t loop;
  herd_worker_t* self;
  uv_tcp_t server;
  herd_uv_any_t conn;
  int disconnected;
} SW;

static void sw_send(const char* json) {
  ASSERT(herd_worker_send(SW.self, json, strlen(json)) >= 0);
}

static void sw_ready_sent(herd_worker_t* w, int status, void* arg) {
  char msg[96];
  ASSERT(w == SW.self);
  ASSERT(arg == &SW);
  ASSERT_OK(status);
  snprintf(msg, sizeof(msg), "{\"cmd\":\"sent\",\"state\":\"%s\"}",
           herd_worker_state_name(w->state));
  sw_send(msg);
}

static void sw_server_sent(herd_worker_t* w, int status, void* arg) {
  char msg[96];
  (void)arg;
  snprintf(msg, sizeof(msg), "{\"cmd\":\"server-sent\",\"status\":%d}", status);
  ASSERT(herd_worker_send(w, msg, strlen(msg)) >= 0);
  uv_close((uv_handle_t*)&SW.server, NULL);
}

static void sw_conn_closed(uv_handle_t* h) {
  (void)h;
  sw_send("{\"cmd\":\"wrote\"}");
}

static void sw_written(uv_write_t* req, int status) {
  ASSERT_OK(status);
  free(req);
  uv_close(&SW.conn.handle, sw_conn_closed);
}

static void sw_message(herd_worker_t* w, const char* json, size_t len,
                       herd_handle_t* handle) {
  char cmd[32];
  ASSERT(w == SW.self);
  ASSERT(herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0);
  if (strcmp(cmd, "socket") == 0) {
    static char line[16];
    uv_write_t* req = malloc(sizeof(*req));
    uv_buf_t buf;
    ASSERT(handle != NULL && req != NULL);
    ASSERT_STR_EQ(handle->type, "net.Socket");
    ASSERT_OK(herd_handle_open(handle, &SW.loop, &SW.conn));
    buf = uv_buf_init(line,
                      (unsigned)snprintf(line, sizeof(line), "w%d\n", w->id));
    ASSERT_OK(uv_write(req, &SW.conn.stream, &buf, 1, sw_written));
  } else if (strcmp(cmd, "give-server") == 0) {
    struct sockaddr_in sin;
    int namelen = sizeof(sin);
    char msg[64];
    ASSERT_OK(uv_tcp_init(&SW.loop, &SW.server));
    ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &sin));
    ASSERT_OK(uv_tcp_bind(&SW.server, (struct sockaddr*)&sin, 0));
    ASSERT_OK(uv_listen((uv_stream_t*)&SW.server, 8, NULL));
    ASSERT_OK(uv_tcp_getsockname(&SW.server, (struct sockaddr*)&sin, &namelen));
    snprintf(msg, sizeof(msg), "{\"cmd\":\"server\",\"port\":%d}",
             ntohs(sin.sin_port));
    ASSERT(herd_worker_send_ex(w, msg, strlen(msg), (uv_handle_t*)&SW.server, 0,
                               NULL, sw_server_sent, NULL) >= 0);
  } else if (strcmp(cmd, "long-please") == 0) {
    char msg[400];
    int n =
        snprintf(msg, sizeof(msg), "{\"cmd\":\"long\",\"pad\":\"%0300d\"}", 0);
    ASSERT(herd_worker_send(w, msg, (size_t)n) >= 0);
  } else if (strcmp(cmd, "leave") == 0) {
    ASSERT_OK(herd_worker_disconnect(w));
    ASSERT(w->exited_after_disconnect);
  } else if (strcmp(cmd, "destroy") == 0) {
    ASSERT_OK(herd_worker_kill(w, SIGKILL));
  }
}

static void sw_error(herd_worker_t* w, int err) {
  char msg[64];
  ASSERT(w == SW.self);
  snprintf(msg, sizeof(msg), "{\"cmd\":\"error\",\"err\":%d}", err);
  sw_send(msg);
}

static void sw_disconnect(herd_worker_t* w) {
  ASSERT(w == SW.self);
  ASSERT_EQ(w->state, HERD_WORKER_DISCONNECTED);
  ASSERT(!herd_worker_is_connected(w));
  ASSERT(!herd_worker_is_dead(w));
  ASSERT(w->exited_after_disconnect);
  ASSERT_EQ(herd_worker_send(w, "{}", 2), HERD_ECHANNELCLOSED);
  ASSERT_EQ(herd_worker_disconnect(w), HERD_ECHANNELCLOSED);
  SW.disconnected = 1;
}

HELPER_IMPL(cluster_self_worker) {
  herd_worker_callbacks_t cbs;
  char msg[96];
  (void)argc;
  (void)argv;
  ASSERT(herd_cluster_worker_self() == NULL);
  ASSERT_OK(uv_loop_init(&SW.loop));
  ASSERT_OK(herd_cluster_worker_setup(&SW.loop, NULL));
  SW.self = herd_cluster_worker_self();
  ASSERT(SW.self != NULL);
  ASSERT(SW.self->cluster == NULL);
  ASSERT_EQ(SW.self->id, herd_cluster_worker_id());
  ASSERT_EQ(SW.self->pid, getpid());
  ASSERT_EQ(SW.self->state, HERD_WORKER_ONLINE);
  ASSERT(herd_worker_is_connected(SW.self));
  ASSERT(!herd_worker_is_dead(SW.self));
  ASSERT(!SW.self->exited_after_disconnect);
  ASSERT_EQ(herd_worker_replace(SW.self, NULL, NULL), UV_EINVAL);
  memset(&cbs, 0, sizeof(cbs));
  cbs.message = sw_message;
  cbs.error = sw_error;
  cbs.disconnect = sw_disconnect;
  herd_worker_on(SW.self, &cbs);
  herd_ipc_set_max_line(herd_cluster_worker_channel(), 256);
  snprintf(msg, sizeof(msg), "{\"cmd\":\"ready\",\"id\":%d,\"pid\":%d}",
           SW.self->id, (int)getpid());
  ASSERT(herd_worker_send_ex(SW.self, msg, strlen(msg), NULL, 0, NULL,
                             sw_ready_sent, &SW) >= 0);
  uv_run(&SW.loop, UV_RUN_DEFAULT);
  ASSERT(SW.disconnected);
  test_loop_close(&SW.loop);
  return 0;
}

/* The primary's side: each worker is walked through the commands above
 * with per-worker callbacks; worker 1 leaves by itself, worker 2 is
 * destroyed, worker 3 gets a handle without a callback and is killed
 * before it can take it (its error event says so). */
typedef struct {
  uv_loop_t loop;
  herd_cluster_t cluster;
  herd_cluster_settings_t settings;
  int node;
  int pair[4][2];      /* by worker id: the socket handed over, ours */
  uv_pipe_t handed[4]; /* the end sent to the worker */
  int step_sent[4];    /* send_ex callbacks with 0 */
  int wrote[4];        /* the worker wrote "w<id>" on the socket */
  int servers[4];      /* listening servers received from the worker */
  int errors[4];       /* its error events */
  int cluster_errors[4];
  int worker_errors[4]; /* its own error reports (herd workers) */
  int exited[4];
  int64_t exit_code[4];
  int ead[4];
  int exits;
  const char* args[3];
  char script[1024];
} self_t;

static self_t* self_of(herd_worker_t* w) {
  return w->cluster->data;
}

static void st_send(herd_worker_t* w, const char* json) {
  ASSERT(herd_worker_send(w, json, strlen(json)) >= 0);
}

static void st_handed_closed(uv_handle_t* h) {
  (void)h;
}

static void st_socket_sent(herd_worker_t* w, int status, void* arg) {
  self_t* s = self_of(w);
  ASSERT(arg == s);
  ASSERT_OK(status);
  s->step_sent[w->id]++;
}

static void st_lost(herd_worker_t* w, int status, void* arg) {
  (void)w;
  (void)status;
  (void)arg;
  FATAL("a send with no callback must not call one");
}

/* Hands one end of a socketpair to the worker (closed by herd once the
 * worker has it, as Node does with a socket sent without keepOpen). */
static void st_hand_socket(herd_worker_t* w, int with_cb) {
  self_t* s = self_of(w);
  int id = w->id;
  static const char json[] = "{\"cmd\":\"socket\"}";
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s->pair[id]));
  ASSERT_OK(uv_pipe_init(&s->loop, &s->handed[id], 0));
  ASSERT_OK(uv_pipe_open(&s->handed[id], s->pair[id][0]));
  ASSERT_OK(herd_worker_send_ex(
      w, json, sizeof(json) - 1, (uv_handle_t*)&s->handed[id], 0,
      st_handed_closed, with_cb ? st_socket_sent : NULL,
      with_cb ? (void*)s : NULL));
  (void)st_lost;
}

static void st_message(herd_cluster_t* c, herd_worker_t* w, const char* json,
                       size_t len, herd_handle_t* handle) {
  self_t* s = c->data;
  char cmd[32], line[16];
  int64_t v;
  int id = w->id;
  ASSERT(herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0);
  if (strcmp(cmd, "ready") == 0) {
    ASSERT_OK(herd_json_get_int(json, len, "id", &v));
    ASSERT_EQ(v, id);
    ASSERT_OK(herd_json_get_int(json, len, "pid", &v));
    ASSERT_EQ(v, w->pid);
    ASSERT(handle == NULL);
    if (id == 3) {
      /* No callback: the failure goes to the error events. */
      st_hand_socket(w, 0);
      ASSERT_OK(herd_worker_kill(w, SIGKILL));
    }
  } else if (strcmp(cmd, "sent") == 0) {
    /* Its send_ex() callback ran, in the online state. */
    char state[16];
    ASSERT(herd_json_get_string(json, len, "state", state, sizeof(state)) > 0);
    ASSERT_STR_EQ(state, "online");
    if (id != 3) /* killed already */
      st_hand_socket(w, 1);
  } else if (strcmp(cmd, "wrote") == 0) {
    /* It wrote and closed before saying so: the line is there. */
    ssize_t n = read(s->pair[id][1], line, sizeof(line) - 1);
    ASSERT(n > 0);
    line[n] = '\0';
    ASSERT_EQ(atoi(line + (line[0] == 'w' ? 1 : 4)), id);
    close(s->pair[id][1]);
    s->wrote[id]++;
    st_send(w, "{\"cmd\":\"give-server\"}");
  } else if (strcmp(cmd, "server") == 0) {
    int port;
    ASSERT(handle != NULL);
    ASSERT_STR_EQ(handle->type, "net.Server");
    ASSERT(handle->listening);
    ASSERT_OK(herd_json_get_int(json, len, "port", &v));
    {
      struct sockaddr_in sin;
      socklen_t sl = sizeof(sin);
      ASSERT_OK(getsockname(handle->fd, (struct sockaddr*)&sin, &sl));
      port = ntohs(sin.sin_port);
    }
    ASSERT_EQ(port, v);
    s->servers[id]++;
  } else if (strcmp(cmd, "server-sent") == 0) {
    ASSERT_OK(herd_json_get_int(json, len, "status", &v));
    ASSERT_EQ(v, 0);
    st_send(w, "{\"cmd\":\"long-please\"}");
  } else if (strcmp(cmd, "error") == 0) {
    ASSERT_OK(herd_json_get_int(json, len, "err", &v));
    ASSERT_EQ(v, HERD_ELINETOOLONG);
    s->worker_errors[id]++;
    st_send(w, id == 1 ? "{\"cmd\":\"leave\"}" : "{\"cmd\":\"destroy\"}");
  }
}

static void st_w_message(herd_worker_t* w, const char* json, size_t len,
                         herd_handle_t* handle) {
  /* After the cluster's: the handle is still there for it. */
  if (handle != NULL)
    ASSERT(handle->fd >= 0);
  (void)w;
  (void)json;
  (void)len;
}

static void st_w_error(herd_worker_t* w, int err) {
  self_t* s = self_of(w);
  ASSERT_EQ(s->errors[w->id], s->cluster_errors[w->id]);
  s->errors[w->id]++;
  if (w->id == 3) {
    /* Not acknowledged: the handle is still ours. */
    ASSERT(err < 0);
    uv_close((uv_handle_t*)&s->handed[3], NULL);
    return;
  }
  /* The message longer than this side reads. */
  ASSERT_EQ(err, HERD_ELINETOOLONG);
  if (s->node) /* Node's channel has no line limit to try */
    st_send(w, w->id == 1 ? "{\"cmd\":\"leave\"}" : "{\"cmd\":\"destroy\"}");
}

static void st_error(herd_cluster_t* c, herd_worker_t* w, int err) {
  self_t* s = c->data;
  ASSERT_EQ(s->errors[w->id], s->cluster_errors[w->id] + 1);
  s->cluster_errors[w->id]++;
  if (w->id != 3 && !s->node) {
    /* Now the other way: more than the worker reads. */
    char msg[400];
    int n =
        snprintf(msg, sizeof(msg), "{\"cmd\":\"pad\",\"pad\":\"%0300d\"}", 0);
    (void)err;
    ASSERT(herd_worker_send(w, msg, (size_t)n) >= 0);
  }
}

static void st_w_exit(herd_worker_t* w, int64_t code, int sig) {
  self_t* s = self_of(w);
  (void)sig;
  s->exited[w->id] = 1;
  s->exit_code[w->id] = code;
  s->ead[w->id] = w->exited_after_disconnect;
}

static void st_exit(herd_cluster_t* c, herd_worker_t* w, int64_t code,
                    int sig) {
  self_t* s = c->data;
  (void)code;
  (void)sig;
  ASSERT(s->exited[w->id]); /* the worker's own callback ran first */
  if (++s->exits == 3)
    herd_cluster_close(c, NULL);
}

static void run_self(int node) {
  herd_cluster_callbacks_t cbs;
  herd_worker_callbacks_t wcb;
  self_t s;

  memset(&s, 0, sizeof(s));
  s.node = node;
  ASSERT_OK(uv_loop_init(&s.loop));
  memset(&cbs, 0, sizeof(cbs));
  cbs.message = st_message;
  cbs.error = st_error;
  cbs.exit = st_exit;
  ASSERT_OK(herd_cluster_init(&s.loop, &s.cluster, &cbs));
  s.cluster.data = &s;
  if (node) {
    snprintf(s.script, sizeof(s.script),
             "%s/test/fixtures/cluster-self-worker.js", test_source_dir());
    s.settings.exec_path = "node";
    s.settings.exec = s.script;
    s.args[0] = NULL;
    s.settings.args = s.args;
  } else {
    s.settings.exec = test_exe();
    s.settings.args = test_helper_args("cluster_self_worker", NULL, NULL);
  }
  herd_cluster_setup_primary(&s.cluster, &s.settings);
  memset(&wcb, 0, sizeof(wcb));
  wcb.message = st_w_message;
  wcb.error = st_w_error;
  wcb.exit = st_w_exit;
  for (int i = 0; i < 3; i++) {
    herd_worker_t* w;
    ASSERT_OK(herd_cluster_fork(&s.cluster, NULL, &w));
    herd_worker_on(w, &wcb);
    herd_ipc_set_max_line(w->child.channel, 256);
  }
  test_loop_run_close(&s.loop);
  for (int id = 1; id <= 2; id++) {
    ASSERT_EQ(s.step_sent[id], 1);
    ASSERT_EQ(s.wrote[id], 1);
    ASSERT_EQ(s.servers[id], 1);
    ASSERT_EQ(s.errors[id], 1);
    ASSERT_EQ(s.cluster_errors[id], 1);
    ASSERT_EQ(s.worker_errors[id], node ? 0 : 1);
    /* Worker 1 left, worker 2 was destroyed: both on purpose. */
    ASSERT_EQ(s.exit_code[id], 0);
    ASSERT_EQ(s.ead[id], 1);
  }
  ASSERT_EQ(s.errors[3], 1);
  ASSERT_EQ(s.cluster_errors[3], 1);
  ASSERT_EQ(s.exit_code[3], -1);
  close(s.pair[3][1]);
}

TEST_IMPL(cluster_worker_self) {
  run_self(0);
  return 0;
}

TEST_IMPL(cluster_node_worker_object) {
  run_self(1);
  return 0;
}

/* herd workers' own worker object under a Node primary
 * (test/fixtures/cluster-self-primary.js): a socket from Node reaches the
 * worker's message callback, a server the worker sends with
 * herd_worker_send_ex() reaches Node's as a net.Server, a message longer
 * than the worker reads is its error event, and both a worker that leaves
 * and one that destroys itself are seen by Node as exitedAfterDisconnect,
 * code 0. */
TEST_IMPL(cluster_node_primary_worker_self) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  char path[1024], want[256];
  const char* args[3];

  snprintf(path, sizeof(path), "%s/test/fixtures/cluster-self-primary.js",
           test_source_dir());
  args[0] = path;
  args[1] = test_exe();
  args[2] = NULL;
  memset(&o, 0, sizeof(o));
  o.timeout = 15000;
  ASSERT_OK(herd_spawn_sync("node", args, &o, &r));
  if (r.status != 0 || r.out_len == 0)
    FATAL("node: status %lld\nstdout: %s\nstderr: %s", (long long)r.status,
          r.out, r.err);
  fprintf(stderr, "%s", r.out);
  for (int id = 1; id <= 2; id++) {
    static const char* const keys[] = {"ready", "state",  "socketSent",
                                       "line",  "server", "serverSent",
                                       "error", "exit"};
    const char* obj;
    size_t olen;
    char idk[8];
    snprintf(idk, sizeof(idk), "%d", id);
    ASSERT_OK(herd_json_get(r.out, r.out_len, idk, &obj, &olen));
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
      const char* v;
      size_t vlen;
      switch (k) {
        case 0:
        case 4:
          snprintf(want, sizeof(want), "true");
          break;
        case 1:
          snprintf(want, sizeof(want), "\"online\"");
          break;
        case 2:
        case 5:
          snprintf(want, sizeof(want), "0");
          break;
        case 3:
          snprintf(want, sizeof(want), "\"w%d\"", id);
          break;
        case 6:
          snprintf(want, sizeof(want), "%d", HERD_ELINETOOLONG);
          break;
        default:
          snprintf(want, sizeof(want),
                   "{\"code\":0,\"signal\":null,\"after\":true}");
          break;
      }
      ASSERT_OK(herd_json_get(obj, olen, keys[k], &v, &vlen));
      if (vlen != strlen(want) || memcmp(v, want, vlen) != 0)
        FATAL("worker %d, %s: %.*s, wanted %s", id, keys[k], (int)vlen, v,
              want);
    }
  }
  herd_sync_result_free(&r);
  return 0;
}
