/* What a worker can listen on besides a TCP port, as Node's cluster shares
 * them: Unix socket paths, UDP sockets (always shared), fds of the primary
 * (listen({fd})), and exclusive servers (a worker binds by itself), with
 * Node's listen(0) rules. Each with herd workers, with Node workers
 * (test/fixtures/cluster-kinds-worker.js) under a herd primary, and with
 * herd workers under a Node primary (test/fixtures/cluster-kinds-primary.js).
 */
#include "test-cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The worker: serves "w<id>\n" on every connection (then closes it), or
 * answers every datagram with "w<id>\n", and tells the primary where it
 * listens: {"cmd":"listened","status":S,"port":P,"policy":"..."}.
 * argv: cluster_kind_worker MODE ARG with MODE
 *   pipe PATH    listen on a Unix socket path
 *   fd N         listen({fd: N}) (the primary's fd N)
 *   udp4 PORT    bind a UDP socket; udp6 likewise
 *   zero -       listen(0) twice, exclusive listen(0), UDP bind(0) and
 *                exclusive bind(0); reports {"cmd":"ports",...} */
#define KW_MAX 5

static struct {
  uv_loop_t loop;
  herd_server_t servers[KW_MAX];
  herd_dgram_t dgrams[KW_MAX];
  int nservers, ndgrams, open, bound;
  int ports[2 * KW_MAX];
  const char* mode;
} KW;

static void kw_report(const char* name, int status, int port,
                      herd_sched_policy_t policy) {
  char msg[160];
  int n = snprintf(msg, sizeof(msg),
                   "{\"cmd\":\"listened\",\"name\":\"%s\",\"status\":%d,"
                   "\"port\":%d,\"policy\":\"%s\"}",
                   name, status, port, herd_sched_policy_name(policy));
  ASSERT(herd_cluster_worker_send(msg, (size_t)n) >= 0);
}

static void kw_ports_maybe(void) {
  char msg[200];
  int n;
  if (strcmp(KW.mode, "zero") != 0 || ++KW.bound < 5)
    return;
  n = snprintf(msg, sizeof(msg),
               "{\"cmd\":\"ports\",\"a\":%d,\"b\":%d,\"x\":%d,\"u\":%d,"
               "\"ux\":%d}",
               KW.servers[0].port, KW.servers[1].port, KW.servers[2].port,
               KW.dgrams[0].port, KW.dgrams[1].port);
  ASSERT(herd_cluster_worker_send(msg, (size_t)n) >= 0);
}

static void kw_on_connection(herd_server_t* server, int status) {
  char line[32];
  int fd, n;
  ASSERT_OK(status);
  ASSERT_OK(herd_server_accept_fd(server, &fd));
  n = snprintf(line, sizeof(line), "w%d\n", herd_cluster_worker_id());
  ASSERT_EQ(write(fd, line, (size_t)n), n);
  close(fd);
}

static void kw_on_listen(herd_server_t* server, int status) {
  kw_report("server", status, status == 0 ? server->port : 0, server->policy);
  if (status == 0)
    kw_ports_maybe();
}

static void kw_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  static char storage[256];
  (void)h;
  (void)size;
  *buf = uv_buf_init(storage, sizeof(storage));
}

static void kw_on_datagram(uv_udp_t* udp, ssize_t nread, const uv_buf_t* buf,
                           const struct sockaddr* addr, unsigned flags) {
  char line[32];
  uv_buf_t out;
  (void)buf;
  (void)flags;
  if (nread <= 0 || addr == NULL)
    return;
  out = uv_buf_init(line, (unsigned)snprintf(line, sizeof(line), "w%d\n",
                                             herd_cluster_worker_id()));
  ASSERT_EQ(uv_udp_try_send(udp, &out, 1, addr), (int)out.len);
}

static void kw_on_bind(herd_dgram_t* d, int status) {
  kw_report("dgram", status, status == 0 ? d->port : 0, d->policy);
  if (status != 0)
    return;
  ASSERT_OK(uv_udp_recv_start(&d->udp, kw_alloc, kw_on_datagram));
  kw_ports_maybe();
}

static void kw_closed(void) {
  if (--KW.open == 0)
    herd_cluster_worker_disconnect();
}

static void kw_server_closed(herd_server_t* s) {
  (void)s;
  kw_closed();
}

static void kw_dgram_closed(herd_dgram_t* d) {
  (void)d;
  kw_closed();
}

/* herd has closed what it got from the primary; the exclusive ones are
 * this worker's to close, as in Node. */
static void kw_on_disconnect(void) {
  if (strcmp(KW.mode, "zero") != 0) {
    herd_cluster_worker_disconnect();
    return;
  }
  KW.open = 2;
  herd_server_close(&KW.servers[2], kw_server_closed);
  herd_dgram_close(&KW.dgrams[1], kw_dgram_closed);
}

static void kw_listen(const herd_server_options_t* o) {
  herd_server_t* s = &KW.servers[KW.nservers++];
  ASSERT_OK(herd_server_init(&KW.loop, s));
  ASSERT_OK(herd_server_listen_ex(s, o, kw_on_connection, kw_on_listen));
}

static void kw_bind(const herd_dgram_options_t* o) {
  herd_dgram_t* d = &KW.dgrams[KW.ndgrams++];
  ASSERT_OK(herd_dgram_init(&KW.loop, d));
  ASSERT_OK(herd_dgram_bind(d, o, kw_on_bind));
}

HELPER_IMPL(cluster_kind_worker) {
  herd_cluster_worker_options_t wo;
  herd_server_options_t so;
  herd_dgram_options_t dopt;
  const char* arg = argc > 2 ? argv[2] : "";

  ASSERT(argc > 1);
  KW.mode = argv[1];
  ASSERT_OK(uv_loop_init(&KW.loop));
  memset(&wo, 0, sizeof(wo));
  wo.disconnect = kw_on_disconnect;
  ASSERT_OK(herd_cluster_worker_setup(&KW.loop, &wo));
  memset(&so, 0, sizeof(so));
  memset(&dopt, 0, sizeof(dopt));
  if (strcmp(KW.mode, "pipe") == 0) {
    so.path = arg;
    kw_listen(&so);
  } else if (strcmp(KW.mode, "fd") == 0) {
    so.flags = HERD_SERVER_FD;
    so.fd = atoi(arg);
    kw_listen(&so);
  } else if (strcmp(KW.mode, "udp4") == 0 || strcmp(KW.mode, "udp6") == 0) {
    dopt.ipv6 = KW.mode[3] == '6';
    dopt.host = dopt.ipv6 ? "::1" : "127.0.0.1";
    dopt.port = atoi(arg);
    kw_bind(&dopt);
  } else if (strcmp(KW.mode, "zero") == 0) {
    so.host = "127.0.0.1";
    kw_listen(&so);
    kw_listen(&so);
    so.flags = HERD_SERVER_EXCLUSIVE;
    kw_listen(&so);
    dopt.host = "127.0.0.1";
    kw_bind(&dopt);
    dopt.flags = HERD_DGRAM_EXCLUSIVE;
    kw_bind(&dopt);
  } else {
    FATAL("unknown mode %s", KW.mode);
  }
  uv_run(&KW.loop, UV_RUN_DEFAULT);
  test_loop_close(&KW.loop);
  return 0;
}

/* Clients, run on a thread while the primary's loop runs. */

/* Connects to a Unix socket `path` (or 127.0.0.1:port) and reads the line
 * the worker writes; returns the worker id counted in t->served, or -1. */
static int kc_fetch(tc_cluster_t* t, const char* path, int port) {
  struct sockaddr_storage ss;
  socklen_t slen;
  char buf[64];
  size_t n = 0;
  int fd;

  memset(&ss, 0, sizeof(ss));
  if (path != NULL) {
    struct sockaddr_un* sun = (struct sockaddr_un*)&ss;
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", path);
    slen = sizeof(*sun);
  } else {
    struct sockaddr_in* sin = (struct sockaddr_in*)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    slen = sizeof(*sin);
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  if (connect(fd, (struct sockaddr*)&ss, slen) != 0) {
    close(fd);
    return -1;
  }
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    ssize_t r;
    if (poll(&pfd, 1, 5000) <= 0 || n == sizeof(buf) - 1)
      break;
    r = read(fd, buf + n, sizeof(buf) - 1 - n);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  return tc_count_body(t, buf);
}

/* One datagram to 127.0.0.1:port (or [::1]); the answering worker's id. */
static int kc_udp_ask(tc_cluster_t* t, int port, int ipv6) {
  struct sockaddr_storage ss;
  char buf[64];
  struct pollfd pfd;
  ssize_t r;
  int fd;

  memset(&ss, 0, sizeof(ss));
  if (ipv6) {
    struct sockaddr_in6* sin6 = (struct sockaddr_in6*)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    sin6->sin6_addr = in6addr_loopback;
  } else {
    struct sockaddr_in* sin = (struct sockaddr_in*)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  ASSERT_EQ(
      sendto(fd, "?", 1, 0, (struct sockaddr*)&ss,
             ipv6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in)),
      1);
  pfd.fd = fd;
  pfd.events = POLLIN;
  pfd.revents = 0;
  r = poll(&pfd, 1, 5000) == 1 ? recv(fd, buf, sizeof(buf) - 1, 0) : -1;
  close(fd);
  if (r <= 0)
    return -1;
  buf[r] = '\0';
  return tc_count_body(t, buf);
}

/* One test's setting: what the workers listen on and who they are. */
typedef struct {
  tc_cluster_t t;
  const char* mode;
  char arg[128];
  char path[108]; /* pipe */
  int port;       /* TCP (fd) or UDP */
  int ipv6;
  int node;           /* Node workers */
  int listen_fd;      /* fd: the primary's listening socket */
  int stopped;        /* the pid stopped by the client, to resume */
  int events_checked; /* listening events that passed the checks */
  const char* args[4];
  char script[1024];
} kind_t;

/* Every listening event says what the worker listens on, as Node's do. */
static void kind_on_listening(tc_cluster_t* t, herd_worker_t* w,
                              const herd_cluster_address_t* a) {
  kind_t* k = (kind_t*)t;
  (void)w;
  if (strcmp(k->mode, "pipe") == 0) {
    ASSERT_EQ(a->address_type, -1);
    ASSERT_EQ(a->port, -1);
    ASSERT_EQ(a->udp, 0);
    ASSERT(a->address != NULL);
    ASSERT_STR_EQ(a->address, k->path);
  } else if (strcmp(k->mode, "fd") == 0) {
    ASSERT_EQ(a->address_type, 0);
    ASSERT(a->address == NULL);
    ASSERT_EQ(a->fd, k->listen_fd);
    ASSERT_EQ(a->port, k->port);
  } else {
    ASSERT_EQ(a->udp, 1);
    ASSERT_EQ(a->address_type, k->ipv6 ? 6 : 4);
    ASSERT_EQ(a->fd, -1);
    /* Every worker gets the same socket, hence the same port. */
    if (k->port == 0)
      k->port = a->port;
    ASSERT_EQ(a->port, k->port);
  }
  k->events_checked++;
}

static int kind_ask(kind_t* k) {
  if (strcmp(k->mode, "pipe") == 0)
    return kc_fetch(&k->t, k->path, 0);
  if (strcmp(k->mode, "fd") == 0)
    return kc_fetch(&k->t, NULL, k->port);
  return kc_udp_ask(&k->t, k->port, k->ipv6);
}

static int kind_shared(kind_t* k) {
  return k->t.cluster.policy != HERD_SCHED_RR ||
         strncmp(k->mode, "udp", 3) == 0;
}

static void kind_client(void* arg) {
  kind_t* k = arg;
  if (!kind_shared(k)) {
    /* The primary hands connections out in turn. */
    int first = kind_ask(k);
    ASSERT(first == 1 || first == 2);
    for (int i = 1; i < 6; i++)
      ASSERT_EQ(kind_ask(k), i % 2 ? 3 - first : first);
    return;
  }
  /* One socket for both: stop one worker at a time so that each must
   * answer. */
  for (int round = 0; round < 2; round++) {
    int stopped = k->t.pid[round == 0 ? 1 : 2];
    ASSERT_EQ(kill(stopped, SIGSTOP), 0);
    ASSERT(tc_wait_state(stopped, 'T', 2000));
    for (int i = 0; i < 3; i++)
      ASSERT_EQ(kind_ask(k), round == 0 ? 2 : 1);
    ASSERT_EQ(kill(stopped, SIGCONT), 0);
  }
}

static void kind_client_done(void* arg) {
  tc_cluster_finish(arg);
}

static void kind_on_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, kind_client, kind_client_done, t);
}

/* The policy and kind the worker reports ("listened"). */
static void kind_on_message(tc_cluster_t* t, herd_worker_t* w, const char* json,
                            size_t len) {
  kind_t* k = (kind_t*)t;
  char cmd[16], policy[16];
  int64_t status;
  (void)w;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) <= 0 ||
      strcmp(cmd, "listened") != 0)
    return;
  ASSERT_OK(herd_json_get_int(json, len, "status", &status));
  ASSERT_EQ(status, 0);
  if (k->node)
    return;
  ASSERT(herd_json_get_string(json, len, "policy", policy, sizeof(policy)) > 0);
  ASSERT_STR_EQ(policy,
                herd_sched_policy_name(kind_shared(k) ? HERD_SCHED_SHARED
                                                      : HERD_SCHED_RR));
}

static void kind_run(kind_t* k, herd_sched_policy_t policy) {
  k->args[0] = k->node ? k->mode : "--helper";
  if (k->node) {
    snprintf(k->script, sizeof(k->script),
             "%s/test/fixtures/cluster-kinds-worker.js", test_source_dir());
    k->args[1] = k->arg;
    k->args[2] = NULL;
    tc_cluster_init(&k->t, policy, "node", k->script, k->args);
  } else {
    tc_cluster_init(&k->t, policy, NULL, NULL,
                    test_helper_args("cluster_kind_worker", k->mode, k->arg));
  }
  k->t.want_listening = 2;
  k->t.on_ready = kind_on_ready;
  k->t.on_listening = kind_on_listening;
  k->t.on_message = kind_on_message;
  tc_cluster_fork(&k->t, 2);
  tc_cluster_run(&k->t);
  ASSERT_EQ(k->events_checked, 2);
  ASSERT_EQ(k->t.served[1], 3);
  ASSERT_EQ(k->t.served[2], 3);
  ASSERT_EQ(k->t.exit_code[1], 0);
  ASSERT_EQ(k->t.exit_code[2], 0);
}

static void kind_init(kind_t* k, const char* mode, int node) {
  memset(k, 0, sizeof(*k));
  k->mode = mode;
  k->node = node;
  k->listen_fd = -1;
}

/* A Unix socket path under every policy: round-robin through the primary
 * under rr, one socket the workers accept from otherwise. The primary
 * binds it and removes it when the last worker has gone. */
static void run_pipe(int node) {
  static const herd_sched_policy_t policies[] = {
      HERD_SCHED_RR, HERD_SCHED_SHARED, HERD_SCHED_REUSEPORT};
  for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
    kind_t k;
    struct stat st;
    kind_init(&k, "pipe", node);
    snprintf(k.path, sizeof(k.path), "/tmp/herd-test-%d-%zu.sock",
             (int)getpid(), i);
    snprintf(k.arg, sizeof(k.arg), "%s", k.path);
    kind_run(&k, policies[i]);
    ASSERT_EQ(stat(k.path, &st), -1);
    ASSERT_EQ(errno, ENOENT);
  }
}

TEST_IMPL(cluster_pipe) {
  run_pipe(0);
  return 0;
}

TEST_IMPL(cluster_node_pipe) {
  run_pipe(1);
  return 0;
}

/* UDP: the primary binds, every worker gets the socket, under every
 * policy; port 0 is one port for all. */
static void run_udp(int node) {
  static const herd_sched_policy_t policies[] = {
      HERD_SCHED_RR, HERD_SCHED_SHARED, HERD_SCHED_REUSEPORT};
  for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
    kind_t k;
    kind_init(&k, i == 1 ? "udp6" : "udp4", node);
    k.ipv6 = i == 1;
    snprintf(k.arg, sizeof(k.arg), "0");
    kind_run(&k, policies[i]);
    ASSERT(k.port > 0);
  }
}

TEST_IMPL(cluster_udp) {
  run_udp(0);
  return 0;
}

TEST_IMPL(cluster_node_udp) {
  run_udp(1);
  return 0;
}

/* A listening TCP socket on 127.0.0.1, port 0. */
static int kc_listen_socket(int* port) {
  struct sockaddr_in sin;
  socklen_t len = sizeof(sin);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_OK(bind(fd, (struct sockaddr*)&sin, sizeof(sin)));
  ASSERT_OK(listen(fd, 16));
  ASSERT_OK(getsockname(fd, (struct sockaddr*)&sin, &len));
  *port = ntohs(sin.sin_port);
  return fd;
}

/* listen({fd}): the number names the primary's fd, which the primary
 * shares as it shares a port (rr: it accepts; otherwise each worker does),
 * and leaves open: it is the caller's. */
static void run_listen_fd(int node) {
  static const herd_sched_policy_t policies[] = {HERD_SCHED_RR,
                                                 HERD_SCHED_SHARED};
  for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
    kind_t k;
    int fd = -1;
    kind_init(&k, "fd", node);
    fd = kc_listen_socket(&k.port);
    k.listen_fd = fd;
    snprintf(k.arg, sizeof(k.arg), "%d", fd);
    kind_run(&k, policies[i]);
    ASSERT(fcntl(fd, F_GETFD) != -1);
    close(fd);
  }
}

TEST_IMPL(cluster_listen_fd) {
  run_listen_fd(0);
  return 0;
}

TEST_IMPL(cluster_node_listen_fd) {
  run_listen_fd(1);
  return 0;
}

/* Node's listen(0) rules: the primary keys a server by address, port, type,
 * fd and the worker's count of listens on them, so every worker's first
 * listen(0) shares one port and every worker's second another; exclusive
 * ones get a port each and the primary hears nothing of them. UDP alike. */
typedef struct {
  tc_cluster_t t;
  int node;
  int ports[3][5]; /* by worker id: a, b, x, u, ux */
  int reports;
  const char* args[4];
  char script[1024];
} zero_t;

static void zero_check(zero_t* z) {
  int* w1 = z->ports[1];
  int* w2 = z->ports[2];
  fprintf(stderr, "%s: a %d %d, b %d %d, x %d %d, u %d %d, ux %d %d\n",
          herd_sched_policy_name(z->t.cluster.policy), w1[0], w2[0], w1[1],
          w2[1], w1[2], w2[2], w1[3], w2[3], w1[4], w2[4]);
  for (int i = 0; i < 5; i++) {
    ASSERT(w1[i] > 0);
    ASSERT(w2[i] > 0);
  }
  ASSERT_EQ(w1[0], w2[0]); /* first listen(0): one port */
  ASSERT_EQ(w1[1], w2[1]); /* second listen(0): another one */
  ASSERT_NE(w1[0], w1[1]);
  ASSERT_NE(w1[2], w2[2]); /* exclusive: each its own */
  ASSERT_NE(w1[2], w1[0]);
  ASSERT_NE(w1[2], w1[1]);
  ASSERT_EQ(w1[3], w2[3]); /* UDP bind(0): one shared socket */
  ASSERT_NE(w1[4], w2[4]); /* exclusive UDP: each its own */
  ASSERT_NE(w1[4], w1[3]);
  /* Three servers from the primary per worker: a, b and u. */
  ASSERT_EQ(z->t.listenings, 6);
}

static void zero_on_message(tc_cluster_t* t, herd_worker_t* w, const char* json,
                            size_t len) {
  static const char* const names[] = {"a", "b", "x", "u", "ux"};
  zero_t* z = (zero_t*)t;
  char cmd[16];
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) <= 0 ||
      strcmp(cmd, "ports") != 0)
    return;
  ASSERT(w->id == 1 || w->id == 2);
  for (int i = 0; i < 5; i++) {
    int64_t port;
    ASSERT_OK(herd_json_get_int(json, len, names[i], &port));
    z->ports[w->id][i] = (int)port;
  }
  z->reports++;
  if (z->reports == 2 && t->listenings == 6)
    tc_cluster_finish(t);
}

static void zero_on_ready(tc_cluster_t* t) {
  zero_t* z = (zero_t*)t;
  if (z->reports == 2)
    tc_cluster_finish(t);
}

static void run_listen_zero(int node) {
  static const herd_sched_policy_t policies[] = {
      HERD_SCHED_RR, HERD_SCHED_SHARED, HERD_SCHED_REUSEPORT};
  for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
    zero_t z;
    memset(&z, 0, sizeof(z));
    z.node = node;
    if (node) {
      snprintf(z.script, sizeof(z.script),
               "%s/test/fixtures/cluster-kinds-worker.js", test_source_dir());
      z.args[0] = "zero";
      z.args[1] = "-";
      tc_cluster_init(&z.t, policies[i], "node", z.script, z.args);
    } else {
      tc_cluster_init(&z.t, policies[i], NULL, NULL,
                      test_helper_args("cluster_kind_worker", "zero", "-"));
    }
    z.t.want_listening = 6;
    z.t.on_ready = zero_on_ready;
    z.t.on_message = zero_on_message;
    tc_cluster_fork(&z.t, 2);
    tc_cluster_run(&z.t);
    zero_check(&z);
    ASSERT_EQ(z.t.exit_code[1], 0);
    ASSERT_EQ(z.t.exit_code[2], 0);
  }
}

TEST_IMPL(cluster_listen_zero) {
  run_listen_zero(0);
  return 0;
}

TEST_IMPL(cluster_node_listen_zero) {
  run_listen_zero(1);
  return 0;
}

/* The primary does not share just any fd a worker names: a connected
 * socket (a channel, a client connection), a file, a UDP socket for a
 * stream server are refused with UV_EINVAL. */
typedef struct {
  tc_cluster_t t;
  int refused;
} refuse_t;

static void refuse_on_message(tc_cluster_t* t, herd_worker_t* w,
                              const char* json, size_t len) {
  refuse_t* r = (refuse_t*)t;
  int64_t status;
  char cmd[16];
  (void)w;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) <= 0 ||
      strcmp(cmd, "listened") != 0)
    return;
  ASSERT_OK(herd_json_get_int(json, len, "status", &status));
  ASSERT_EQ(status, UV_EINVAL);
  if (++r->refused == 3)
    tc_cluster_finish(t);
}

TEST_IMPL(cluster_listen_fd_refused) {
  refuse_t r;
  int pair[2], file, udp;
  char a[16], b[16], c[16];
  ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair));
  file = open("/dev/null", O_RDONLY | O_CLOEXEC);
  udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT(file >= 0 && udp >= 0);
  snprintf(a, sizeof(a), "%d", pair[0]);
  snprintf(b, sizeof(b), "%d", file);
  snprintf(c, sizeof(c), "%d", udp);
  memset(&r, 0, sizeof(r));
  tc_cluster_init(&r.t, HERD_SCHED_SHARED, NULL, NULL,
                  test_helper_args("cluster_kind_worker", "fd", a));
  r.t.on_message = refuse_on_message;
  tc_cluster_fork(&r.t, 1);
  r.t.settings.args = test_helper_args("cluster_kind_worker", "fd", b);
  herd_cluster_setup_primary(&r.t.cluster, &r.t.settings);
  tc_cluster_fork(&r.t, 1);
  r.t.settings.args = test_helper_args("cluster_kind_worker", "fd", c);
  herd_cluster_setup_primary(&r.t.cluster, &r.t.settings);
  tc_cluster_fork(&r.t, 1);
  tc_cluster_run(&r.t);
  ASSERT_EQ(r.refused, 3);
  ASSERT_EQ(r.t.listenings, 0);
  close(pair[0]);
  close(pair[1]);
  close(file);
  close(udp);
  return 0;
}

/* The other way round: a Node primary (test/fixtures/cluster-kinds-primary.js)
 * with herd workers on a Unix socket, UDP, its fd 3 (a listening socket the
 * test passes it) and listen(0) servers. */
static int count_workers(const char* arr, size_t len, int lo, int hi) {
  int n = 0;
  for (int id = lo; id <= hi; id++) {
    char w[16];
    int wl = snprintf(w, sizeof(w), "\"w%d\"", id);
    if (memmem(arr, len, w, (size_t)wl) != NULL)
      n++;
  }
  return n;
}

static void node_kinds_member(const char* out, size_t out_len, const char* kind,
                              const char* key, const char** v, size_t* vlen) {
  const char* obj;
  size_t olen;
  ASSERT_OK(herd_json_get(out, out_len, kind, &obj, &olen));
  ASSERT_OK(herd_json_get(obj, olen, key, v, vlen));
}

static void run_node_primary_kinds(const char* policy) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  herd_stdio_t stdio[4];
  char script[1024], path[108], port[16];
  const char* args[6];
  const char* v;
  size_t vlen;
  int fd, fd_port;

  snprintf(script, sizeof(script), "%s/test/fixtures/cluster-kinds-primary.js",
           test_source_dir());
  snprintf(path, sizeof(path), "/tmp/herd-test-%d-node.sock", (int)getpid());
  fd = kc_listen_socket(&fd_port);
  snprintf(port, sizeof(port), "%d", fd_port);
  args[0] = script;
  args[1] = test_exe();
  args[2] = policy;
  args[3] = path;
  args[4] = port;
  args[5] = NULL;
  memset(&o, 0, sizeof(o));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_PIPE;
  stdio[2].kind = HERD_STDIO_PIPE;
  stdio[3].kind = HERD_STDIO_FD;
  stdio[3].fd = fd;
  o.stdio = stdio;
  o.stdio_count = 4;
  o.timeout = 25000;
  ASSERT_OK(herd_spawn_sync("node", args, &o, &r));
  close(fd);
  if (r.status != 0 || r.out_len == 0)
    FATAL("node: status %lld\nstdout: %s\nstderr: %s", (long long)r.status,
          r.out, r.err);
  fprintf(stderr, "%s", r.out);

  /* Both workers of each kind answered (ids 1-2 pipe, 3-4 udp, 5-6 fd). */
  node_kinds_member(r.out, r.out_len, "pipe", "bodies", &v, &vlen);
  ASSERT_EQ(count_workers(v, vlen, 1, 2), 2);
  node_kinds_member(r.out, r.out_len, "pipe", "infos", &v, &vlen);
  ASSERT(memmem(v, vlen, "\"addressType\":-1", 16) != NULL);
  ASSERT(memmem(v, vlen, "\"port\":-1", 9) != NULL);
  ASSERT(memmem(v, vlen, path, strlen(path)) != NULL);
  node_kinds_member(r.out, r.out_len, "udp4", "bodies", &v, &vlen);
  ASSERT_EQ(count_workers(v, vlen, 3, 4), 2);
  node_kinds_member(r.out, r.out_len, "udp4", "infos", &v, &vlen);
  ASSERT(memmem(v, vlen, "\"addressType\":\"udp4\"", 20) != NULL);
  node_kinds_member(r.out, r.out_len, "fd", "bodies", &v, &vlen);
  ASSERT_EQ(count_workers(v, vlen, 5, 6), 2);
  node_kinds_member(r.out, r.out_len, "fd", "infos", &v, &vlen);
  ASSERT(memmem(v, vlen, "\"addressType\":null", 18) != NULL);
  ASSERT(memmem(v, vlen, "\"fd\":3", 6) != NULL);
  ASSERT(memmem(v, vlen, port, strlen(port)) != NULL);

  /* listen(0): the ports of workers 7 and 8 follow Node's rules. */
  {
    const char* ports;
    size_t plen;
    int64_t p[2][5];
    static const char* const names[] = {"a", "b", "x", "u", "ux"};
    node_kinds_member(r.out, r.out_len, "zero", "ports", &ports, &plen);
    for (int w = 0; w < 2; w++) {
      /* The two objects of the array, one after the other. */
      const char* o1 = w == 0
                           ? memchr(ports, '{', plen)
                           : memchr(memchr(ports, '}', plen), '{',
                                    plen - (size_t)(memchr(ports, '}', plen) -
                                                    (void*)ports));
      const char* e1 = memchr(o1, '}', plen - (size_t)(o1 - ports));
      for (int i = 0; i < 5; i++)
        ASSERT_OK(
            herd_json_get_int(o1, (size_t)(e1 - o1 + 1), names[i], &p[w][i]));
    }
    ASSERT_EQ(p[0][0], p[1][0]);
    ASSERT_EQ(p[0][1], p[1][1]);
    ASSERT_NE(p[0][0], p[0][1]);
    ASSERT_NE(p[0][2], p[1][2]);
    ASSERT_EQ(p[0][3], p[1][3]);
    ASSERT_NE(p[0][4], p[1][4]);
  }
  /* Every herd worker obeyed the disconnect and exited 0. */
  ASSERT_OK(herd_json_get(r.out, r.out_len, "exits", &v, &vlen));
  ASSERT(memmem(v, vlen, "\"code\":0", 8) != NULL);
  for (const char* c = v;
       (c = memmem(c, vlen - (size_t)(c - v), "\"code\":", 7)) != NULL; c += 7)
    ASSERT(strncmp(c, "\"code\":0,", 9) == 0);
  herd_sync_result_free(&r);
}

TEST_IMPL(cluster_node_primary_kinds_rr) {
  run_node_primary_kinds("rr");
  return 0;
}

TEST_IMPL(cluster_node_primary_kinds_none) {
  run_node_primary_kinds("none");
  return 0;
}
