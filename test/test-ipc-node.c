/* The channel across processes: herd_fork() of a herd child and of a Node
 * script, a Node parent with a herd child, and handle passing. */
#include "internal.h"
#include "task.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* The same list as test/fixtures/ipc-values.js, as JSON.stringify writes it. */
static const char* const values[] = {
    "\"plain\"",
    "\"\xc3\xbc"
    "n"
    "\xc3\xaf"
    "c"
    "\xc3\xb6"
    "d"
    "\xc3\xa9 \xe2\x9c\x93 "
    "\xf0\x9f\x98\x80 \xf0\x9d\x84\x9e\"",
    "{\"a\":{\"b\":{\"c\":[1,2,{\"d\":\"e\"}]}},\"u\":"
    "\"\xe6\x97\xa5\xe6\x9c\xac"
    "\xe8\xaa\x9e\"}",
    "42",
    "-1.5e-7",
    "true",
    "false",
    "[]",
    "{}",
    "\"\"",
    "\"quote \\\" backslash \\\\ newline \\n tab \\t\"",
    "{\"cmd\":\"notNODE\",\"list\":[null,0,-0.5]}",
    "\"\xe2\x80\xa8\xe2\x80\xa9\"",
};
#define NVALUES   ((int)HERD_ARRAY_SIZE(values))
#define BIG_LEN   (1024 * 1024)
#define BURST     100000
#define NMESSAGES (NVALUES + 1 + BURST)

static char* big_message(void) {
  static const char pre[] = "{\"big\":\"";
  size_t n = sizeof(pre) - 1 + BIG_LEN + 2;
  char* s = malloc(n + 1);
  ASSERT(s != NULL);
  memcpy(s, pre, sizeof(pre) - 1);
  memset(s + sizeof(pre) - 1, 'x', BIG_LEN);
  memcpy(s + n - 2, "\"}", 3);
  return s;
}

static int burst_message(char* out, size_t cap, int i) {
  return snprintf(out, cap, "{\"cmd\":\"notifyRequest\",\"i\":%d}", i);
}

/* Sends the whole list, the big message and the burst. */
static void send_all(herd_ipc_t* ipc) {
  char msg[64];
  char* big = big_message();
  for (int i = 0; i < NVALUES; i++)
    ASSERT(herd_ipc_send(ipc, values[i], strlen(values[i])) >= 0);
  ASSERT(herd_ipc_send(ipc, big, strlen(big)) >= 0);
  free(big);
  for (int i = 0; i < BURST; i++) {
    int n = burst_message(msg, sizeof(msg), i);
    ASSERT(herd_ipc_send(ipc, msg, (size_t)n) >= 0);
  }
}

/* Checks message number `k` of the list. */
static void check_message(int k, const char* json, size_t len) {
  char msg[64];
  if (k < NVALUES) {
    ASSERT_STR_EQ(json, values[k]);
  } else if (k == NVALUES) {
    char* big = big_message();
    ASSERT_EQ(len, strlen(big));
    ASSERT(memcmp(json, big, len) == 0);
    free(big);
  } else {
    burst_message(msg, sizeof(msg), k - NVALUES - 1);
    ASSERT_STR_EQ(json, msg);
  }
}

static int tcp_listen(int* port) {
  struct sockaddr_in sa;
  socklen_t sl = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, (struct sockaddr*)&sa, sizeof(sa)), 0);
  ASSERT_EQ(listen(fd, 16), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr*)&sa, &sl), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

static int tcp_connect(int port) {
  struct sockaddr_in sa;
  struct timeval tv = {10, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)port);
  ASSERT_EQ(connect(fd, (struct sockaddr*)&sa, sizeof(sa)), 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

/* Reads until EOF (bounded by the socket's receive timeout). */
static void read_to_end(int fd, char* buf, size_t cap) {
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, cap - 1 - n);
    ASSERT(r >= 0);
    if (r == 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
}

typedef struct {
  herd_child_t child;
  const char* server_greeting;
  const char* socket_greeting;
  int received;
  int phase;
  int client_fd;
  uv_tcp_t server;
  uv_tcp_t socket;
  int socket_closed;
  int server_sent;
  int udp;    /* also pass a UDP socket (the Node child answers on it) */
  int udp_fd; /* where the datagram should arrive */
  uv_udp_t udp_handle;
  int disconnected;
  int closed;
} drive_t;

static void on_handle_closed(uv_handle_t* handle) {
  drive_t* d = handle->data;
  d->socket_closed++;
}

static void on_server_sent(herd_ipc_t* ipc, int status, void* arg) {
  drive_t* d = arg;
  (void)ipc;
  ASSERT_OK(status);
  d->server_sent = 1;
  /* The child holds its own copy of the listening socket. */
  uv_close((uv_handle_t*)&d->server, on_handle_closed);
}

static void drive_message(herd_ipc_t* ipc, const char* json, size_t len,
                          herd_handle_t* handle) {
  drive_t* d = ipc->data;
  char buf[256];
  ASSERT(handle == NULL);
  if (d->phase == 0) {
    check_message(d->received, json, len);
    if (++d->received == NMESSAGES) {
      int port, fd = tcp_listen(&port);
      int n;
      d->phase = 1;
      ASSERT_OK(uv_tcp_init(ipc->loop, &d->server));
      ASSERT_OK(uv_tcp_open(&d->server, fd));
      d->server.data = d;
      n = snprintf(buf, sizeof(buf), "{\"what\":\"server\",\"port\":%d}", port);
      ASSERT_OK(herd_ipc_send_ex(ipc, buf, (size_t)n, (uv_handle_t*)&d->server,
                                 0, NULL, on_server_sent, d));
    }
    return;
  }
  if (d->phase == 1) {
    int64_t port;
    int fd, lfd, lport, afd;
    ASSERT_OK(herd_json_get_int(json, len, "port", &port));
    fd = tcp_connect((int)port);
    read_to_end(fd, buf, sizeof(buf));
    close(fd);
    ASSERT_STR_EQ(buf, d->server_greeting);
    ASSERT(d->server_sent);
    d->phase = 2;
    lfd = tcp_listen(&lport);
    d->client_fd = tcp_connect(lport);
    afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(afd >= 0);
    close(lfd);
    ASSERT_OK(uv_tcp_init(ipc->loop, &d->socket));
    ASSERT_OK(uv_tcp_open(&d->socket, afd));
    d->socket.data = d;
    /* Without keep_open herd closes the socket once the child has it. */
    ASSERT_OK(herd_ipc_send_ex(ipc, "{\"what\":\"socket\"}", 17,
                               (uv_handle_t*)&d->socket, 0, on_handle_closed,
                               NULL, NULL));
    return;
  }
  if (d->phase == 2) {
    ASSERT_STR_EQ(json, "{\"what\":\"socket\"}");
    read_to_end(d->client_fd, buf, sizeof(buf));
    close(d->client_fd);
    ASSERT_STR_EQ(buf, d->socket_greeting);
    /* The ACK came before this echo: herd has closed the sent socket. */
    ASSERT(uv_is_closing((uv_handle_t*)&d->socket));
    d->phase = 3;
    if (!d->udp) {
      herd_ipc_disconnect(ipc);
      return;
    }
    {
      struct sockaddr_in sa;
      socklen_t sl = sizeof(sa);
      struct timeval tv = {10, 0};
      int n;
      d->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      ASSERT(d->udp_fd >= 0);
      memset(&sa, 0, sizeof(sa));
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(bind(d->udp_fd, (struct sockaddr*)&sa, sizeof(sa)), 0);
      ASSERT_EQ(getsockname(d->udp_fd, (struct sockaddr*)&sa, &sl), 0);
      setsockopt(d->udp_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ASSERT_OK(uv_udp_init(ipc->loop, &d->udp_handle));
      sa.sin_port = 0;
      ASSERT_OK(uv_udp_bind(&d->udp_handle, (struct sockaddr*)&sa, 0));
      ASSERT_EQ(getsockname(d->udp_fd, (struct sockaddr*)&sa, &sl), 0);
      n = snprintf(buf, sizeof(buf), "{\"what\":\"udp\",\"port\":%d}",
                   ntohs(sa.sin_port));
      ASSERT_OK(herd_ipc_send_ex(ipc, buf, (size_t)n,
                                 (uv_handle_t*)&d->udp_handle, 0, NULL, NULL,
                                 NULL));
    }
    return;
  }
  ASSERT_EQ(d->phase, 3);
  ASSERT(d->udp);
  {
    ssize_t n = recv(d->udp_fd, buf, sizeof(buf) - 1, 0);
    ASSERT(n > 0);
    buf[n] = '\0';
    ASSERT_STR_EQ(buf, "udp from node");
    close(d->udp_fd);
    /* UDP sockets stay open on the sender, as in Node. */
    ASSERT(!uv_is_closing((uv_handle_t*)&d->udp_handle));
    uv_close((uv_handle_t*)&d->udp_handle, NULL);
  }
  d->phase = 4;
  herd_ipc_disconnect(ipc);
}

static void drive_disconnect(herd_ipc_t* ipc) {
  drive_t* d = ipc->data;
  d->disconnected = 1;
}

static void drive_close(herd_child_t* child) {
  drive_t* d = HERD_CONTAINER_OF(child, drive_t, child);
  d->closed = 1;
}

static void drive_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  FATAL("channel error %s", herd_err_name(err));
}

static void drive_fork(const char* program, const char* const* args,
                       const char* exec_path, const char* server_greeting,
                       const char* socket_greeting, int udp) {
  static drive_t d;
  uv_loop_t loop;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.message = drive_message,
                              .error = drive_error,
                              .disconnect = drive_disconnect};

  memset(&d, 0, sizeof(d));
  memset(&opts, 0, sizeof(opts));
  d.server_greeting = server_greeting;
  d.socket_greeting = socket_greeting;
  d.udp = udp;
  opts.exec_path = exec_path;
  opts.spawn.close_cb = drive_close;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_fork(&loop, &d.child, program, args, &opts));
  ASSERT(d.child.channel != NULL);
  d.child.channel->data = &d;
  ASSERT_OK(herd_ipc_start(d.child.channel, &cbs));
  send_all(d.child.channel);
  test_loop_run_close(&loop);
  ASSERT_EQ(d.phase, udp ? 4 : 3);
  ASSERT_EQ(d.socket_closed, 2);
  ASSERT(d.disconnected);
  ASSERT(d.closed);
  ASSERT(d.child.exited);
  ASSERT_EQ(d.child.exit_status, 0);
  ASSERT_EQ(d.child.term_signal, 0);
}

/* The C child for both parents: echoes every message, listens on a passed
 * net.Server and answers one connection, answers on a passed net.Socket. */
typedef struct {
  uv_tcp_t server;
  uv_tcp_t conn;
  uv_tcp_t socket;
} peer_t;

static void peer_closed(uv_handle_t* handle) {
  (void)handle;
}

static void peer_conn(uv_stream_t* server, int status) {
  peer_t* p = server->data;
  uv_buf_t b = uv_buf_init("hello from C\n", 13);
  ASSERT_OK(status);
  ASSERT_OK(uv_tcp_init(server->loop, &p->conn));
  ASSERT_OK(uv_accept(server, (uv_stream_t*)&p->conn));
  ASSERT_EQ(uv_try_write((uv_stream_t*)&p->conn, &b, 1), 13);
  uv_close((uv_handle_t*)&p->conn, peer_closed);
  uv_close((uv_handle_t*)server, peer_closed);
}

static void peer_message(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  static peer_t p;
  if (handle != NULL) {
    if (strcmp(handle->type, "net.Server") == 0) {
      ASSERT(handle->listening);
      ASSERT_EQ(handle->socktype, SOCK_STREAM);
      ASSERT_OK(herd_handle_open(handle, ipc->loop, (herd_uv_any_t*)&p.server));
      p.server.data = &p;
      ASSERT_OK(uv_listen((uv_stream_t*)&p.server, 16, peer_conn));
    } else {
      uv_buf_t b = uv_buf_init("answer from C\n", 14);
      ASSERT_STR_EQ(handle->type, "net.Socket");
      ASSERT(!handle->listening);
      ASSERT_OK(herd_handle_open(handle, ipc->loop, (herd_uv_any_t*)&p.socket));
      ASSERT_EQ(uv_try_write((uv_stream_t*)&p.socket, &b, 1), 14);
      uv_close((uv_handle_t*)&p.socket, peer_closed);
    }
  }
  ASSERT(herd_ipc_send(ipc, json, len) >= 0);
}

/* Channel errors go to the parent as {"error":"ELINETOOLONG"} etc. */
static void peer_error(herd_ipc_t* ipc, int err) {
  const char* name = herd_err_name(err);
  char buf[64];
  int n;
  if (strncmp(name, "HERD_", 5) == 0)
    name += 5;
  n = snprintf(buf, sizeof(buf), "{\"error\":\"%s\"}", name);
  herd_ipc_send(ipc, buf, (size_t)n);
}

/* argv: ipc_peer [MAX_LINE] */
HELPER_IMPL(ipc_peer) {
  uv_loop_t loop;
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.message = peer_message, .error = peer_error};
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_ipc_open_parent(&loop, &ipc));
  ASSERT(getenv("NODE_CHANNEL_FD") == NULL);
  if (argc >= 2)
    herd_ipc_set_max_line(&ipc, (size_t)atol(argv[1]));
  ASSERT_OK(herd_ipc_start(&ipc, &cbs));
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  return 0;
}

TEST_IMPL(ipc_fork_herd_child) {
  drive_fork(test_exe(), test_helper_args("ipc_peer", NULL, NULL), NULL,
             "hello from C\n", "answer from C\n", 0);
  return 0;
}

TEST_IMPL(ipc_fork_node_child) {
  char script[1024];
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-child.js",
           test_source_dir());
  drive_fork(script, NULL, "node", "hello from node\n", "answer from node\n",
             1);
  return 0;
}

/* Runs `node argv...` to completion (30 s at most) and returns its status. */
static int run_node(const char* const* argv) {
  pid_t pid = fork();
  int status;
  ASSERT(pid >= 0);
  if (pid == 0) {
    execvp("node", (char* const*)argv);
    _exit(127);
  }
  for (int i = 0; i < 3000; i++) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    test_sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  FATAL("node did not finish");
}

TEST_IMPL(ipc_node_parent) {
  char script[1024];
  const char* argv[] = {"node",     script,     "serve", test_exe(),
                        "--helper", "ipc_peer", NULL};
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-parent.js",
           test_source_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

TEST_IMPL(ipc_node_parent_echo_example) {
  char script[1024], exe[1024];
  const char* argv[] = {"node", script, "echo", exe, NULL};
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-parent.js",
           test_source_dir());
  snprintf(exe, sizeof(exe), "%s/examples/ipc-echo", test_binary_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* Every kind of handle between two herd ends of one process. */
typedef struct {
  int got;
  char types[4][16];
  int families[4];
  int socktypes[4];
  int listening[4];
  int fds_ok;
} pass_t;

static pass_t pass;
static int pass_acks;

static void pass_message(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  herd_uv_any_t* h;
  (void)json;
  (void)len;
  ASSERT(handle != NULL);
  ASSERT(pass.got < 4);
  snprintf(pass.types[pass.got], 16, "%s", handle->type);
  pass.families[pass.got] = handle->family;
  pass.socktypes[pass.got] = handle->socktype;
  pass.listening[pass.got] = handle->listening;
  /* The first is opened as a libuv handle, the rest closed by herd. */
  if (pass.got == 0) {
    h = malloc(sizeof(*h));
    ASSERT_OK(herd_handle_open(handle, ipc->loop, h));
    ASSERT_EQ(handle->fd, -1);
    ASSERT_EQ(herd_handle_open(handle, ipc->loop, h), UV_EINVAL);
    uv_close(&h->handle, (uv_close_cb)free);
  }
  if (++pass.got == 4)
    herd_ipc_disconnect(ipc);
}

static void pass_sent(herd_ipc_t* ipc, int status, void* arg) {
  (void)ipc;
  (void)arg;
  ASSERT_OK(status);
  pass_acks++;
}

TEST_IMPL(ipc_handle_pass) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t cbs = {.message = pass_message};
  uv_tcp_t server, sock;
  uv_pipe_t pipe;
  uv_udp_t udp;
  struct sockaddr_in sa;
  int sv[2], port, lfd, cfd, afd, pv[2];

  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_OK(herd_ipc_open(&loop, &a, sv[0]));
  ASSERT_OK(herd_ipc_open(&loop, &b, sv[1]));
  ASSERT_OK(herd_ipc_start(&a, NULL));
  ASSERT_OK(herd_ipc_start(&b, &cbs));

  lfd = tcp_listen(&port);
  ASSERT_OK(uv_tcp_init(&loop, &server));
  ASSERT_OK(uv_tcp_open(&server, lfd));
  cfd = tcp_connect(port);
  afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  ASSERT(afd >= 0);
  ASSERT_OK(uv_tcp_init(&loop, &sock));
  ASSERT_OK(uv_tcp_open(&sock, afd));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pv), 0);
  ASSERT_OK(uv_pipe_init(&loop, &pipe, 0));
  ASSERT_OK(uv_pipe_open(&pipe, pv[0]));
  ASSERT_OK(uv_udp_init(&loop, &udp));
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &sa));
  ASSERT_OK(uv_udp_bind(&udp, (struct sockaddr*)&sa, 0));

  ASSERT_OK(herd_ipc_send_ex(&a, "1", 1, (uv_handle_t*)&server, 0, NULL,
                             pass_sent, NULL));
  ASSERT_OK(herd_ipc_send_ex(&a, "2", 1, (uv_handle_t*)&sock, 0, NULL,
                             pass_sent, NULL));
  ASSERT_OK(herd_ipc_send_ex(&a, "3", 1, (uv_handle_t*)&pipe,
                             HERD_SEND_KEEP_OPEN, NULL, pass_sent, NULL));
  ASSERT_OK(herd_ipc_send_ex(&a, "4", 1, (uv_handle_t*)&udp, 0, NULL, pass_sent,
                             NULL));
  ASSERT_EQ(herd_ipc_send_ex(&a, "5", 1, (uv_handle_t*)&loop.wq_async, 0, NULL,
                             NULL, NULL),
            HERD_EBADHANDLE);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(pass.got, 4);
  ASSERT_EQ(pass_acks, 4);
  ASSERT_STR_EQ(pass.types[0], "net.Server");
  ASSERT(pass.listening[0]);
  ASSERT_EQ(pass.families[0], AF_INET);
  ASSERT_STR_EQ(pass.types[1], "net.Socket");
  ASSERT(!pass.listening[1]);
  ASSERT_STR_EQ(pass.types[2], "net.Socket");
  ASSERT_EQ(pass.families[2], AF_UNIX);
  ASSERT_STR_EQ(pass.types[3], "dgram.Socket");
  ASSERT_EQ(pass.socktypes[3], SOCK_DGRAM);
  /* The socket went without keep_open: herd closed it on ACK. */
  ASSERT(uv_is_closing((uv_handle_t*)&sock));
  ASSERT(!uv_is_closing((uv_handle_t*)&pipe));
  uv_close((uv_handle_t*)&server, NULL);
  uv_close((uv_handle_t*)&pipe, NULL);
  uv_close((uv_handle_t*)&udp, NULL);
  close(cfd);
  close(pv[1]);
  test_loop_run_close(&loop);
  return 0;
}

/* examples/fork-count: one child per CPU, each sending N notifications. */
TEST_IMPL(ipc_example_fork_count) {
  char cmd[1200];
  char line[256] = "";
  unsigned ncpu = uv_available_parallelism();
  char want[64];
  FILE* f;
  snprintf(cmd, sizeof(cmd), "%s/examples/fork-count 20000", test_binary_dir());
  f = popen(cmd, "r");
  ASSERT(f != NULL);
  ASSERT(fgets(line, sizeof(line), f) != NULL);
  ASSERT_EQ(pclose(f), 0);
  snprintf(want, sizeof(want), "%u workers, total %ld\n", ncpu,
           (long)ncpu * 20000);
  ASSERT_STR_EQ(line, want);
  return 0;
}

typedef struct {
  herd_child_t child;
  char message[512];
  char out[256];
  size_t out_len;
  int closed;
} hello_t;

static void hello_message(herd_ipc_t* ipc, const char* json, size_t len,
                          herd_handle_t* handle) {
  hello_t* h = ipc->data;
  (void)handle;
  ASSERT(len < sizeof(h->message));
  memcpy(h->message, json, len + 1);
}

static void hello_read(herd_child_t* child, int fd, const char* buf,
                       ssize_t nread) {
  hello_t* h = HERD_CONTAINER_OF(child, hello_t, child);
  ASSERT_EQ(fd, 1);
  if (nread > 0 && h->out_len + (size_t)nread < sizeof(h->out)) {
    memcpy(h->out + h->out_len, buf, (size_t)nread);
    h->out_len += (size_t)nread;
  }
}

static void hello_close(herd_child_t* child) {
  hello_t* h = HERD_CONTAINER_OF(child, hello_t, child);
  h->closed = 1;
}

/* fork() with exec_argv and silent: the arguments land where Node puts
 * them, stdout is a pipe, and the child no longer sees NODE_CHANNEL_FD. */
TEST_IMPL(ipc_fork_silent_exec_argv) {
  static hello_t h;
  uv_loop_t loop;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.message = hello_message};
  const char* exec_argv[] = {"--no-warnings", NULL};
  const char* args[] = {"a b", "\xc3\xa9", NULL};
  char script[1024];

  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-hello.js",
           test_source_dir());
  memset(&opts, 0, sizeof(opts));
  opts.exec_path = "node";
  opts.exec_argv = exec_argv;
  opts.silent = 1;
  opts.spawn.close_cb = hello_close;
  ASSERT_OK(uv_loop_init(&loop));
  {
    /* fork() needs a channel: a stdio list without one is refused. */
    herd_fork_options_t bad = opts;
    herd_stdio_t pipes[3] = {
        {HERD_STDIO_PIPE, 0}, {HERD_STDIO_PIPE, 0}, {HERD_STDIO_PIPE, 0}};
    bad.spawn.stdio = pipes;
    bad.spawn.stdio_count = 3;
    ASSERT_EQ(herd_fork(&loop, &h.child, script, args, &bad), UV_EINVAL);
  }
  ASSERT_OK(herd_fork(&loop, &h.child, script, args, &opts));
  h.child.channel->data = &h;
  ASSERT_OK(herd_ipc_start(h.child.channel, &cbs));
  ASSERT_OK(herd_child_read_start(&h.child, 1, hello_read));
  test_loop_run_close(&loop);
  ASSERT(h.closed);
  ASSERT_EQ(h.child.exit_status, 0);
  ASSERT_STR_EQ(h.message,
                "{\"argv\":[\"a b\",\"\xc3\xa9\"],\"execArgv\":[\"--no-"
                "warnings\"],\"channelFd\":null}");
  h.out[h.out_len] = '\0';
  ASSERT_STR_EQ(h.out, "stdout from node\n");
  return 0;
}

static int detach_closed;
static int detach_disconnects;
static void detach_close(herd_child_t* child) {
  (void)child;
  detach_closed = 1;
}
static void detach_disconnect(herd_ipc_t* ipc) {
  (void)ipc;
  detach_disconnects++;
}

/* herd_child_close() with the channel open: the channel closes (its
 * disconnect callback runs), close_cb follows, and the child, which exits
 * once its channel ends, is still reaped. */
TEST_IMPL(ipc_fork_child_close) {
  static herd_child_t child;
  uv_loop_t loop;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.disconnect = detach_disconnect};

  memset(&opts, 0, sizeof(opts));
  opts.spawn.close_cb = detach_close;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_fork(&loop, &child, test_exe(),
                      test_helper_args("ipc_peer", NULL, NULL), &opts));
  ASSERT_OK(herd_ipc_start(child.channel, &cbs));
  ASSERT_OK(herd_ipc_send(child.channel, "[1]", 3));
  herd_child_close(&child);
  test_loop_run_close(&loop);
  ASSERT(detach_closed);
  ASSERT_EQ(detach_disconnects, 1);
  ASSERT(child.channel == NULL);
  return 0;
}

/* A Node parent with serialization 'advanced' (once refused): the echo
 * example sends every value of value-cases.js back as it came. */
TEST_IMPL(ipc_node_parent_advanced) {
  char script[1024], exe[1024];
  const char* argv[] = {"node", script, "channel", exe, NULL};
  snprintf(script, sizeof(script), "%s/test/fixtures/value-peer.js",
           test_source_dir());
  snprintf(exe, sizeof(exe), "%s/examples/ipc-echo", test_binary_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* A Node parent sends a 10 MiB message (Node to Node works): it fits
 * herd's default limit and comes back whole. */
TEST_IMPL(ipc_node_parent_big) {
  char script[1024];
  const char* argv[] = {"node",     script,     "fits", test_exe(),
                        "--helper", "ipc_peer", NULL};
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-big.js",
           test_source_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* Over the child's limit, the message is reported and skipped, and the
 * channel goes on. */
TEST_IMPL(ipc_node_parent_over_limit) {
  char script[1024];
  const char* argv[] = {"node",     script,     "over",    test_exe(),
                        "--helper", "ipc_peer", "1048576", NULL};
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-big.js",
           test_source_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* A Node parent whose net.Server sent a socket to the herd child can ask
 * for its connection count and close: the child answers both questions. */
TEST_IMPL(ipc_node_parent_socket_list) {
  char script[1024];
  const char* argv[] = {"node",     script,     test_exe(),
                        "--helper", "ipc_peer", NULL};
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-socket-list.js",
           test_source_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

typedef struct {
  herd_child_t child;
  int errors;
  int disconnects;
  int closed;
} gone_t;

static void gone_error(herd_ipc_t* ipc, int err) {
  gone_t* g = ipc->data;
  fprintf(stderr, "channel error %s\n", herd_err_name(err));
  g->errors++;
}

static void gone_disconnect(herd_ipc_t* ipc) {
  gone_t* g = ipc->data;
  g->disconnects++;
}

static void gone_close(herd_child_t* child) {
  gone_t* g = HERD_CONTAINER_OF(child, gone_t, child);
  g->closed = 1;
}

/* A C parent sends 8 x 1 MiB to a Node child that exits on the first: the
 * channel ends in a disconnect, with no error, as under Node. */
TEST_IMPL(ipc_node_child_exits) {
  static gone_t g;
  uv_loop_t loop;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.error = gone_error,
                              .disconnect = gone_disconnect};
  char script[1024];
  char* big = malloc(1 << 20);

  memset(big, 'z', 1 << 20);
  big[0] = '"';
  big[(1 << 20) - 1] = '"';
  snprintf(script, sizeof(script), "%s/test/fixtures/ipc-exit-first.js",
           test_source_dir());
  memset(&opts, 0, sizeof(opts));
  opts.exec_path = "node";
  opts.spawn.close_cb = gone_close;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_fork(&loop, &g.child, script, NULL, &opts));
  g.child.channel->data = &g;
  ASSERT_OK(herd_ipc_start(g.child.channel, &cbs));
  for (int i = 0; i < 8; i++)
    ASSERT(herd_ipc_send(g.child.channel, big, 1 << 20) >= 0);
  free(big);
  test_loop_run_close(&loop);
  ASSERT(g.closed);
  ASSERT_EQ(g.child.exit_status, 0);
  ASSERT_EQ(g.errors, 0);
  ASSERT_EQ(g.disconnects, 1);
  return 0;
}
