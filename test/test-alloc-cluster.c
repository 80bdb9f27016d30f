/* Allocation failures in cluster: herd_server_t standalone; the worker
 * side (herd_cluster_worker_setup(), herd_server_listen() asking the
 * primary under rr and shared, connections of both kinds,
 * herd_cluster_worker_send(), a disconnect from either side) against a
 * primary played by hand in the same process; and the primary side
 * (herd_cluster_listen(), herd_cluster_fork(), the protocol with a worker,
 * rr connections, herd_worker_send(), herd_worker_replace(),
 * herd_worker_disconnect(), herd_cluster_disconnect(), herd_cluster_close())
 * against workers played by /bin/sh, which start in a few ms. */
#include "alloc.h"
#include "internal.h"
#include "task.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

static int connect_to(int port) {
  struct sockaddr_in addr;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT(fd >= 0);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* Loopback: the listen queue takes it at once. */
  ASSERT(connect(fd, (struct sockaddr*)&addr, sizeof(addr)) == 0 ||
         errno == EINPROGRESS);
  return fd;
}

static int listen_socket(int* port) {
  struct sockaddr_in addr;
  socklen_t len = sizeof(addr);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, (struct sockaddr*)&addr, sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr*)&addr, &len), 0);
  *port = ntohs(addr.sin_port);
  return fd;
}

static int udp_socket(int* port) {
  struct sockaddr_in addr;
  socklen_t len = sizeof(addr);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, (struct sockaddr*)&addr, sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr*)&addr, &len), 0);
  *port = ntohs(addr.sin_port);
  return fd;
}

static void free_handle(uv_handle_t* handle) {
  free(handle);
}

/* herd_server_t standalone: init, listen, a connection taken with
 * herd_server_accept() (into a uv_tcp_t) and one with
 * herd_server_accept_fd(), close. */
static struct {
  int listened, conns, closed;
  int client[2];
} sa;

static void sa_closed(herd_server_t* server) {
  sa.closed++;
  free(server);
}

static void sa_connection(herd_server_t* server, int status) {
  ASSERT_OK(status);
  if (sa.conns++ == 0) {
    uv_tcp_t* tcp = malloc(sizeof(*tcp));
    ASSERT(tcp != NULL);
    ASSERT_OK(uv_tcp_init(server->loop, tcp));
    ASSERT_OK(herd_server_accept(server, (uv_stream_t*)tcp));
    uv_close((uv_handle_t*)tcp, free_handle);
    sa.client[1] = connect_to(server->port);
    return;
  }
  {
    int fd;
    ASSERT_OK(herd_server_accept_fd(server, &fd));
    close(fd);
  }
  herd_server_close(server, sa_closed);
}

static void sa_listening(herd_server_t* server, int status) {
  ASSERT_OK(status);
  sa.listened++;
  sa.client[0] = connect_to(server->port);
}

static void standalone_case(void* arg) {
  herd_server_t* server = malloc(sizeof(*server));
  uv_loop_t loop;
  int r;
  (void)arg;
  ASSERT(server != NULL);
  memset(&sa, 0, sizeof(sa));
  sa.client[0] = sa.client[1] = -1;
  ASSERT_OK(uv_loop_init(&loop));
  r = herd_server_init(&loop, server);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(server);
    test_loop_run_close(&loop);
    return;
  }
  ASSERT_OK(herd_server_listen(server, "127.0.0.1", 0, 0, sa_connection,
                               sa_listening));
  test_loop_run_close(&loop);
  ASSERT_EQ(sa.listened, 1);
  ASSERT_EQ(sa.conns, 2);
  ASSERT_EQ(sa.closed, 1);
  close(sa.client[0]);
  close(sa.client[1]);
}

TEST_IMPL(alloc_server_standalone) {
  ASSERT_GE(alloc_sweep("herd_server_t standalone", standalone_case, NULL), 1);
  return 0;
}

/* The worker side, in a fork()ed copy of the test per run (a process is a
 * worker once). The primary is played on the same loop over the other end
 * of the channel: it answers the queryServer for port 5555 as rr (and then
 * hands a connection over with newconn), the one for 6666 as shared (with
 * a listening socket, to which it then connects) and the UDP socket's (port
 * 7777) with a bound UDP socket, acknowledges the
 * handle the worker sends it a loop turn late (so that the worker's
 * answers meanwhile wait behind it, each in an allocation of its own), and
 * acks exitedAfterDisconnect. `from_primary`: the primary asks the worker
 * to disconnect once both servers were served, instead of the worker
 * leaving by itself.
 *
 * Checked, whatever fails: every call returns 0 or UV_ENOMEM, and a setup
 * that failed changed nothing; every listen that was accepted ends in
 * exactly one listen_cb (UV_ENOMEM or 0), and a successful one is known to
 * the primary ({"act":"listening"}); every newconn is answered; a setup
 * that succeeded said so ({"act":"online"}); the handle's callback runs
 * once; unless the channel ended, which the worker learns through its
 * orphaned callback. No hang (a deadline), nothing leaked. */
typedef struct {
  int from_primary;
} worker_case_t;

/* The two servers, then the UDP socket. */
enum { WS_RR, WS_SHARED, WS_DGRAM, WS_N };

static struct {
  uv_loop_t loop;
  worker_case_t* wc;
  /* the worker */
  herd_server_t* servers[WS_DGRAM];
  herd_dgram_t* dgram;
  int listen_ret[WS_N];
  int listen_cbs[WS_N];
  int listen_status[WS_N];
  int conns[WS_N];
  int closed[WS_N];
  int disconnect_asked, orphaned, left;
  /* the primary */
  int raw;
  uv_poll_t poll;
  uv_timer_t deadline;
  char in[8192];
  size_t in_len;
  int64_t seq;
  int onlines, listenings[WS_N], queries, messages, acks_owed, eof;
  int handles, handle_sent, handle_accepted;
  uv_timer_t ack_later;
  int shared_fd, shared_port, client_fd, udp_fd, udp_port;
  int64_t newconn_seq;
} W;

static void ws_maybe_leave(void);

static int ws_index(herd_server_t* server) {
  for (int i = 0; i < WS_DGRAM; i++)
    if (W.servers[i] == server)
      return i;
  FATAL("unknown server");
}

static void ws_closed(herd_server_t* server) {
  W.closed[ws_index(server)]++;
  W.servers[ws_index(server)] = NULL;
  free(server);
}

static void ws_connection(herd_server_t* server, int status) {
  int i = ws_index(server);
  ASSERT_OK(status);
  W.conns[i]++;
  if (i == WS_RR) {
    int fd;
    ASSERT_OK(herd_server_accept_fd(server, &fd));
    close(fd);
  } else {
    uv_tcp_t* tcp = malloc(sizeof(*tcp));
    ASSERT(tcp != NULL);
    ASSERT_OK(uv_tcp_init(server->loop, tcp));
    ASSERT_OK(herd_server_accept(server, (uv_stream_t*)tcp));
    uv_close((uv_handle_t*)tcp, free_handle);
  }
  ws_maybe_leave();
}

static void ws_listened(herd_server_t* server, int status) {
  int i = ws_index(server);
  W.listen_cbs[i]++;
  W.listen_status[i] = status;
  if (status != 0) {
    ASSERT_EQ(status, UV_ENOMEM);
    ASSERT(alloc_failed());
    /* herd closes a server whose listen failed; closing it here too is
     * how to learn when its memory is free. */
    herd_server_close(server, ws_closed);
  }
  ws_maybe_leave();
}

static void ws_dgram_closed(herd_dgram_t* dgram) {
  W.closed[WS_DGRAM]++;
  W.dgram = NULL;
  free(dgram);
}

/* A bound UDP socket has nothing more to wait for. */
static void ws_bound(herd_dgram_t* dgram, int status) {
  W.listen_cbs[WS_DGRAM]++;
  W.listen_status[WS_DGRAM] = status;
  if (status != 0) {
    ASSERT_EQ(status, UV_ENOMEM);
    ASSERT(alloc_failed());
    herd_dgram_close(dgram, ws_dgram_closed);
  } else {
    W.conns[WS_DGRAM]++;
  }
  ws_maybe_leave();
}

/* Once each server was served or failed, the worker leaves (or the
 * primary asks it to). */
static void ws_maybe_leave(void) {
  for (int i = 0; i < WS_N; i++)
    if (W.listen_ret[i] == 0 &&
        (W.listen_cbs[i] == 0 || (W.listen_status[i] == 0 && W.conns[i] == 0)))
      return;
  if (W.left++)
    return;
  if (W.wc->from_primary) {
    static const char msg[] =
        "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"disconnect\",\"seq\":999}\n";
    if (!W.eof)
      ASSERT(send(W.raw, msg, sizeof(msg) - 1, MSG_NOSIGNAL) > 0);
  } else {
    herd_cluster_worker_disconnect();
  }
}

static void ws_disconnect_asked(void) {
  W.disconnect_asked++;
  herd_cluster_worker_disconnect();
}

static void ws_handle_sent(herd_ipc_t* ipc, int status, void* arg) {
  (void)ipc;
  (void)arg;
  ASSERT(W.handle_accepted);
  if (status != 0)
    ASSERT(status == HERD_ECHANNELCLOSED && alloc_failed());
  W.handle_sent++;
}

static void ws_orphaned(void) {
  W.orphaned++;
}

static void ws_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  (void)ipc;
  (void)json;
  (void)len;
  (void)handle;
}

/* The primary's writes: a line, with an fd or not. */
static void wp_write(const char* s, int fd) {
  struct msghdr msg;
  struct iovec iov;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  size_t n = strlen(s);
  memset(&msg, 0, sizeof(msg));
  iov.iov_base = (void*)s;
  iov.iov_len = n;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    struct cmsghdr* cm;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  /* The worker may have closed the channel already. */
  sendmsg(W.raw, &msg, MSG_NOSIGNAL);
}

static void wp_cluster(const char* fields, int fd) {
  char buf[512];
  if (fd >= 0)
    snprintf(buf, sizeof(buf),
             "{\"cmd\":\"NODE_HANDLE\",\"type\":\"%s\",\"msg\":"
             "{\"cmd\":\"NODE_CLUSTER\",%s,\"seq\":%lld}}\n",
             fd == W.udp_fd ? "dgram.Native" : "net.Native", fields,
             (long long)W.seq++);
  else
    snprintf(buf, sizeof(buf), "{\"cmd\":\"NODE_CLUSTER\",%s,\"seq\":%lld}\n",
             fields, (long long)W.seq++);
  wp_write(buf, fd);
}

/* The worker's handle is acknowledged a loop turn after it came: what the
 * worker sends meanwhile waits behind it, in memory of its own. */
static void wp_ack_handle(uv_timer_t* timer) {
  (void)timer;
  wp_write("{\"cmd\":\"NODE_HANDLE_ACK\"}\n", -1);
}

static void wp_line(char* line, size_t len) {
  char act[32], fields[256];
  int64_t seq, ack;
  if (strstr(line, "NODE_HANDLE_ACK") != NULL)
    return;
  if (strncmp(line, "{\"cmd\":\"NODE_HANDLE\",", 21) == 0) {
    W.handles++;
    uv_timer_start(&W.ack_later, wp_ack_handle, 0, 0);
    return;
  }
  if (strstr(line, "\"cmd\":\"NODE_CLUSTER\"") == NULL) {
    W.messages++;
    return;
  }
  if (herd_json_get_int(line, len, "ack", &ack) == 0) {
    ASSERT_EQ(ack, W.newconn_seq);
    W.acks_owed--;
    return;
  }
  ASSERT(herd_json_get_string(line, len, "act", act, sizeof(act)) > 0);
  ASSERT_OK(herd_json_get_int(line, len, "seq", &seq));
  if (strcmp(act, "online") == 0) {
    W.onlines++;
  } else if (strcmp(act, "queryServer") == 0) {
    int64_t port;
    ASSERT_OK(herd_json_get_int(line, len, "port", &port));
    W.queries++;
    if (port == 5555) {
      int fds[2];
      snprintf(fields, sizeof(fields),
               "\"errno\":null,\"key\":\"rr\",\"ack\":%lld,\"data\":null,"
               "\"sockname\":{\"address\":\"127.0.0.1\",\"family\":\"IPv4\","
               "\"port\":5555}",
               (long long)seq);
      wp_cluster(fields, -1);
      ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
      W.newconn_seq = W.seq;
      W.acks_owed++;
      wp_cluster("\"act\":\"newconn\",\"key\":\"rr\"", fds[0]);
      close(fds[0]);
      close(fds[1]);
    } else if (port == 6666) {
      snprintf(fields, sizeof(fields),
               "\"errno\":null,\"key\":\"shared\",\"ack\":%lld,\"data\":null",
               (long long)seq);
      wp_cluster(fields, W.shared_fd);
      W.client_fd = connect_to(W.shared_port);
    } else {
      snprintf(fields, sizeof(fields),
               "\"errno\":null,\"key\":\"udp\",\"ack\":%lld,\"data\":null",
               (long long)seq);
      wp_cluster(fields, W.udp_fd);
    }
  } else if (strcmp(act, "listening") == 0) {
    int64_t port;
    ASSERT_OK(herd_json_get_int(line, len, "port", &port));
    W.listenings[port == 5555         ? WS_RR
                 : port == W.udp_port ? WS_DGRAM
                                      : WS_SHARED]++;
  } else if (strcmp(act, "exitedAfterDisconnect") == 0) {
    snprintf(fields, sizeof(fields), "\"ack\":%lld", (long long)seq);
    wp_cluster(fields, -1);
  }
}

static void wp_end(void) {
  W.eof = 1;
  uv_close((uv_handle_t*)&W.poll, NULL);
  uv_close((uv_handle_t*)&W.deadline, NULL);
  uv_close((uv_handle_t*)&W.ack_later, NULL);
  close(W.raw);
}

static void wp_readable(uv_poll_t* poll, int status, int events) {
  ssize_t n;
  char* nl;
  (void)poll;
  (void)events;
  n = status < 0 ? 0 : recv(W.raw, W.in + W.in_len, sizeof(W.in) - W.in_len, 0);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    wp_end();
    return;
  }
  W.in_len += (size_t)n;
  while ((nl = memchr(W.in, '\n', W.in_len)) != NULL) {
    size_t len = (size_t)(nl - W.in);
    *nl = '\0';
    wp_line(W.in, len);
    W.in_len -= len + 1;
    memmove(W.in, nl + 1, W.in_len);
  }
}

static void wp_deadline(uv_timer_t* timer) {
  (void)timer;
  FATAL("the worker hangs (listen cbs %d %d, conns %d %d, left %d)",
        W.listen_cbs[0], W.listen_cbs[1], W.conns[0], W.conns[1], W.left);
}

static void worker_case(void* arg) {
  herd_cluster_worker_options_t opts;
  char fdtext[16];
  int sv[2], r;

  memset(&W, 0, sizeof(W));
  W.wc = arg;
  W.client_fd = -1;
  ASSERT_OK(uv_loop_init(&W.loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  W.raw = sv[0];
  herd__nonblock(W.raw, 1);
  W.shared_fd = listen_socket(&W.shared_port);
  W.udp_fd = udp_socket(&W.udp_port);
  snprintf(fdtext, sizeof(fdtext), "%d", sv[1]);
  setenv("NODE_UNIQUE_ID", "1", 1);
  setenv("NODE_CHANNEL_FD", fdtext, 1);
  setenv("NODE_CHANNEL_SERIALIZATION_MODE", "json", 1);
  memset(&opts, 0, sizeof(opts));
  opts.message = ws_message;
  opts.disconnect = ws_disconnect_asked;
  opts.orphaned = ws_orphaned;
  r = herd_cluster_worker_setup(&W.loop, &opts);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    /* Nothing changed: it could be called again. */
    ASSERT(getenv("NODE_UNIQUE_ID") != NULL);
    ASSERT_STR_EQ(getenv("NODE_CHANNEL_FD"), fdtext);
    ASSERT(herd_cluster_worker_channel() == NULL);
    close(sv[0]);
    close(sv[1]);
    close(W.shared_fd);
    close(W.udp_fd);
    test_loop_run_close(&W.loop);
    return;
  }
  ASSERT_OK(uv_poll_init(&W.loop, &W.poll, W.raw));
  ASSERT_OK(uv_poll_start(&W.poll, UV_READABLE | UV_DISCONNECT, wp_readable));
  ASSERT_OK(uv_timer_init(&W.loop, &W.ack_later));
  ASSERT_OK(uv_timer_init(&W.loop, &W.deadline));
  ASSERT_OK(uv_timer_start(&W.deadline, wp_deadline, 3000, 0));
  uv_unref((uv_handle_t*)&W.deadline);

  for (int i = 0; i < WS_DGRAM; i++) {
    herd_server_t* s = malloc(sizeof(*s));
    ASSERT(s != NULL);
    W.servers[i] = s;
    r = herd_server_init(&W.loop, s);
    if (r == 0) {
      r = herd_server_listen(s, "127.0.0.1", i == WS_RR ? 5555 : 6666, 0,
                             ws_connection, ws_listened);
      if (r != 0)
        herd_server_close(s, ws_closed);
    } else {
      W.servers[i] = NULL;
      free(s);
    }
    if (r != 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      ASSERT(alloc_failed());
    }
    W.listen_ret[i] = r;
  }
  W.dgram = malloc(sizeof(*W.dgram));
  ASSERT(W.dgram != NULL);
  r = herd_dgram_init(&W.loop, W.dgram);
  if (r == 0) {
    herd_dgram_options_t o;
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = 7777;
    r = herd_dgram_bind(W.dgram, &o, ws_bound);
    if (r != 0)
      herd_dgram_close(W.dgram, ws_dgram_closed);
  } else {
    free(W.dgram);
    W.dgram = NULL;
  }
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
  }
  W.listen_ret[WS_DGRAM] = r;
  r = herd_cluster_worker_send("{\"hi\":1}", 8);
  if (r < 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
  }
  /* A handle for the primary: until it is acknowledged, everything the
   * worker sends (the protocol's messages too) waits behind it. */
  {
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    r = herd_ipc_send_fd(herd_cluster_worker_channel(), "{\"fd\":1}", 8,
                         devnull, "net.Native", ws_handle_sent, NULL);
    close(devnull);
    if (r < 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      ASSERT(alloc_failed());
    }
    W.handle_accepted = r >= 0;
  }
  ws_maybe_leave();
  uv_run(&W.loop, UV_RUN_DEFAULT);
  /* herd closed the servers when the worker left, without a callback: with
   * the loop run to its end, their memory is free. */
  for (int i = 0; i < WS_DGRAM; i++) {
    if (W.servers[i] != NULL && W.servers[i]->priv == NULL)
      free(W.servers[i]);
    else if (W.servers[i] != NULL)
      herd_server_close(W.servers[i], ws_closed);
  }
  if (W.dgram != NULL && W.dgram->priv == NULL)
    free(W.dgram);
  else if (W.dgram != NULL)
    herd_dgram_close(W.dgram, ws_dgram_closed);
  if (!W.eof)
    wp_end();
  test_loop_run_close(&W.loop);
  close(W.shared_fd);
  close(W.udp_fd);
  if (W.client_fd >= 0)
    close(W.client_fd);

  ASSERT_EQ(W.handle_sent, W.handle_accepted);
  if (W.orphaned) {
    /* The channel broke: that is the error every pending thing reports. */
    ASSERT(alloc_failed());
    return;
  }
  ASSERT_EQ(W.onlines, 1);
  ASSERT_EQ(W.acks_owed, 0);
  for (int i = 0; i < WS_N; i++) {
    if (W.listen_ret[i] != 0)
      continue;
    ASSERT_EQ(W.listen_cbs[i], 1);
    if (W.listen_status[i] == 0)
      ASSERT_EQ(W.listenings[i], 1);
  }
  if (!alloc_failed()) {
    ASSERT_EQ(W.messages, 1);
    ASSERT_EQ(W.handles, 1);
    ASSERT_EQ(W.conns[WS_RR] + W.conns[WS_SHARED] + W.conns[WS_DGRAM], 3);
    ASSERT_EQ(W.disconnect_asked, W.wc->from_primary);
  }
}

TEST_IMPL(alloc_cluster_worker) {
  worker_case_t wc = {0};
  ASSERT_GE(alloc_sweep_forked("worker leaving", worker_case, &wc), 5);
  wc.from_primary = 1;
  ASSERT_GE(alloc_sweep_forked("worker told to leave", worker_case, &wc), 5);
  return 0;
}

/* The primary side, with workers played by /bin/sh over fd 3: online, a
 * queryServer for the primary's rr server (port 0, as herd_cluster_listen()
 * was asked; PORT is the port it got), listening once answered, an ack
 * for every newconn, the echo of user messages, exit at disconnect (and
 * exit 1 when the listen was refused, as a Node worker dies of an
 * unhandled listen error). MODE=quiet: only the exit at disconnect (or at
 * the end of the channel); MODE=leave: online, then Node's
 * worker.disconnect() (exitedAfterDisconnect, and the exit once the primary
 * acknowledged it). The primary listens, forks a worker, hands it a
 * connection, sends it a message, replaces it, disconnects every worker and
 * closes; besides, it forks a quiet worker that it disconnects before it
 * has sent it anything, and a leaving one.
 *
 * Checked, whatever fails: each call returns 0 or UV_ENOMEM; every worker
 * that was forked ends in exactly one exit event; a replacement that was
 * accepted ends in exactly one callback; the disconnect and close
 * callbacks run once; a worker that was let go leaves without being
 * killed; nothing hangs (a deadline) or leaks. */
static const char sh_worker[] =
    "q() { printf '%s\\n' \"$1\" >&3; }\n"
    "if [ \"$MODE\" = quiet ]; then\n"
    "  while IFS= read -r l <&3; do\n"
    "    case $l in *'\"act\":\"disconnect\"'*) exit 0;; esac\n"
    "  done\n"
    "  exit 0\n"
    "fi\n"
    "if [ \"$MODE\" = leave ]; then\n"
    "  q '{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}'\n"
    "  q '{\"cmd\":\"NODE_CLUSTER\",\"act\":\"exitedAfterDisconnect\","
    "\"seq\":1}'\n"
    "  while IFS= read -r l <&3; do\n"
    "    case $l in *'\"ack\":1'*) exit 0;; esac\n"
    "  done\n"
    "  exit 0\n"
    "fi\n"
    "q '{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}'\n"
    "a=\"\\\"index\\\":0,\\\"data\\\":null,\\\"address\\\":\\\"127.0.0.1\\\","
    "\\\"addressType\\\":4,\\\"backlog\\\":511\"\n"
    "q \"{\\\"cmd\\\":\\\"NODE_CLUSTER\\\",\\\"act\\\":\\\"queryServer\\\","
    "$a,\\\"port\\\":0,\\\"seq\\\":1}\"\n"
    "s=2\n"
    "while IFS= read -r l <&3; do\n"
    "  case $l in\n"
    "  *'\"ack\":1,'*)\n"
    "    case $l in *'\"errno\":null'*) ;; *) exit 1;; esac\n"
    "    q \"{\\\"cmd\\\":\\\"NODE_CLUSTER\\\",\\\"act\\\":\\\"listening\\\","
    "$a,\\\"port\\\":$PORT,\\\"seq\\\":$s}\"; s=$((s+1));;\n"
    "  *'\"act\":\"newconn\"'*)\n"
    "    n=${l##*\\\"seq\\\":}; n=${n%%[!0-9]*}\n"
    "    q '{\"cmd\":\"NODE_HANDLE_ACK\"}'\n"
    "    q \"{\\\"cmd\\\":\\\"NODE_CLUSTER\\\",\\\"ack\\\":$n,"
    "\\\"accepted\\\":true,\\\"seq\\\":$s}\"; s=$((s+1));;\n"
    "  *'\"act\":\"disconnect\"'*) exit 0;;\n"
    "  *'\"cmd\":\"NODE_'*) ;;\n"
    "  *) q \"$l\";;\n"
    "  esac\n"
    "done\n";

static struct {
  uv_loop_t loop;
  herd_cluster_t* cluster;
  uv_timer_t deadline;
  int port, client;
  int forks_ok, exits, listenings, echoes;
  int replace_ret, replaced, replace_status;
  int finishing, disconnected, closed;
  herd_worker_t* first;
  herd_worker_t* quiet;
  int leavers;
} P;

static void pc_closed(herd_cluster_t* cluster) {
  P.closed++;
  free(cluster);
  if (!uv_is_closing((uv_handle_t*)&P.deadline))
    uv_close((uv_handle_t*)&P.deadline, NULL);
}

static void pc_disconnected(herd_cluster_t* cluster) {
  P.disconnected++;
  herd_cluster_close(cluster, pc_closed);
}

static void pc_finish(void) {
  int r;
  if (P.finishing++)
    return;
  r = herd_cluster_disconnect(P.cluster, pc_disconnected);
  ASSERT_OK(r);
}

static void pc_replaced(herd_worker_t* successor, int status) {
  (void)successor;
  P.replaced++;
  P.replace_status = status;
  if (status != 0)
    ASSERT(alloc_failed());
  pc_finish();
}

static void pc_listening(herd_cluster_t* cluster, herd_worker_t* w,
                         const herd_cluster_address_t* address) {
  int r;
  (void)cluster;
  (void)address;
  P.listenings++;
  if (w != P.first)
    return; /* the successor: its replacement callback follows */
  P.client = connect_to(P.port);
  r = herd_worker_send(w, "{\"hello\":1}", 11);
  if (r < 0)
    ASSERT(r == UV_ENOMEM && alloc_failed());
  P.replace_ret = herd_worker_replace(w, pc_replaced, NULL);
  if (P.replace_ret != 0) {
    ASSERT(P.replace_ret == UV_ENOMEM && alloc_failed());
    pc_finish();
  }
}

static void pc_message(herd_cluster_t* cluster, herd_worker_t* w,
                       const char* json, size_t len, herd_handle_t* handle) {
  (void)cluster;
  (void)w;
  (void)handle;
  ASSERT(len == 11 && memcmp(json, "{\"hello\":1}", 11) == 0);
  P.echoes++;
}

static void pc_exit(herd_cluster_t* cluster, herd_worker_t* w, int64_t code,
                    int sig) {
  (void)cluster;
  (void)code;
  P.exits++;
  /* The first worker, gone before its replacement began (its listen was
   * refused): nothing more to do. */
  if (w == P.first && P.replace_ret != 0)
    pc_finish();
  if (P.leavers && P.exits == P.forks_ok)
    pc_finish();
  if (w == P.first)
    P.first = NULL;
  /* Let go, it heard of it: by the message or by its channel's end. */
  if (w == P.quiet) {
    ASSERT_EQ(sig, 0);
    P.quiet = NULL;
  }
  /* A worker whose channel closed for want of memory may die writing; none
   * waits in vain until it is killed. */
  if (sig != 0)
    ASSERT(alloc_failed() && sig == SIGPIPE);
}

static void pc_deadline(uv_timer_t* timer) {
  (void)timer;
  FATAL(
      "the cluster hangs (forks %d, listenings %d, replaced %d, exits %d, "
      "disconnected %d, an allocation failed: %d)",
      P.forks_ok, P.listenings, P.replaced, P.exits, P.disconnected,
      alloc_failed());
}

/* arg: the scenario (0: the worker that listens, is replaced and so on;
 * 1: the quiet and the leaving workers). */
static void primary_case(void* arg) {
  int leavers = *(int*)arg;
  herd_cluster_callbacks_t cbs;
  herd_cluster_settings_t s;
  const char* args[] = {"-c", sh_worker, NULL};
  char env_port[32];
  const char* env[] = {env_port, NULL};
  int r;

  memset(&P, 0, sizeof(P));
  P.leavers = leavers;
  P.client = -1;
  P.replace_ret = -1;
  ASSERT_OK(uv_loop_init(&P.loop));
  memset(&cbs, 0, sizeof(cbs));
  cbs.listening = pc_listening;
  cbs.message = pc_message;
  cbs.exit = pc_exit;
  P.cluster = malloc(sizeof(*P.cluster));
  ASSERT(P.cluster != NULL);
  r = herd_cluster_init(&P.loop, P.cluster, &cbs);
  if (r != 0) {
    ASSERT(r == UV_ENOMEM && alloc_failed());
    free(P.cluster);
    test_loop_run_close(&P.loop);
    return;
  }
  memset(&s, 0, sizeof(s));
  s.exec = "/bin/sh";
  s.args = args;
  s.policy = HERD_SCHED_RR;
  s.kill_timeout = 1000;
  s.listen_timeout = 1000;
  herd_cluster_setup_primary(P.cluster, &s);
  ASSERT_OK(uv_timer_init(&P.loop, &P.deadline));
  ASSERT_OK(uv_timer_start(&P.deadline, pc_deadline, 3000, 0));
  if (leavers) {
    const char* quiet_env[] = {"MODE=quiet", NULL};
    const char* leave_env[] = {"MODE=leave", NULL};
    r = herd_cluster_fork(P.cluster, quiet_env, &P.quiet);
    if (r == 0) {
      P.forks_ok++;
      r = herd_worker_disconnect(P.quiet);
    }
    if (r != 0)
      ASSERT(r == UV_ENOMEM && alloc_failed());
    r = herd_cluster_fork(P.cluster, leave_env, NULL);
    if (r != 0)
      ASSERT(r == UV_ENOMEM && alloc_failed());
    else
      P.forks_ok++;
    /* Both go by themselves; the rest follows their exits. */
    if (P.forks_ok == 0)
      pc_finish();
  } else {
    r = herd_cluster_listen(P.cluster, "127.0.0.1", 0, 64, &P.port);
    if (r == 0) {
      snprintf(env_port, sizeof(env_port), "PORT=%d", P.port);
      r = herd_cluster_fork(P.cluster, env, &P.first);
    }
    if (r != 0) {
      ASSERT(r == UV_ENOMEM && alloc_failed());
      herd_cluster_close(P.cluster, pc_closed);
    } else {
      P.forks_ok++;
    }
  }
  test_loop_run_close(&P.loop);
  if (P.client >= 0)
    close(P.client);
  ASSERT_EQ(P.closed, 1);
  ASSERT_EQ(P.exits, P.forks_ok + (P.replace_ret == 0));
  ASSERT_EQ(P.replaced, P.replace_ret == 0);
  if (!alloc_failed()) {
    ASSERT_EQ(P.listenings, leavers ? 0 : 2);
    ASSERT_EQ(P.echoes, leavers ? 0 : 1);
    ASSERT_EQ(P.replace_status, 0);
    ASSERT_EQ(P.disconnected, 1);
  }
}

TEST_IMPL(alloc_cluster_primary) {
  int leavers = 0;
  ASSERT_GE(alloc_sweep("primary with a worker", primary_case, &leavers), 10);
  leavers = 1;
  ASSERT_GE(alloc_sweep("primary with leaving workers", primary_case, &leavers),
            10);
  return 0;
}
