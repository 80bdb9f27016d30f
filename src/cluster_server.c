/* herd_server_t: one listen call for any process. Standalone (or with
 * HERD_SERVER_EXCLUSIVE) it binds and listens itself; in a cluster worker it
 * sends queryServer and serves what the primary answers: under rr,
 * connections arrive one by one as newconn messages (cluster_worker.c);
 * under shared and reuseport the answer carries a socket to accept from.
 * Either way the user sees the same connection callback and takes the
 * connection with herd_server_accept*(). A server listens on a TCP address,
 * a Unix socket path, or an fd given by number, as Node's server.listen()
 * does. */
#include "internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connections accepted per wakeup from a listening socket. */
#define SERVER_ACCEPT_BATCH 64
/* After an accept error that leaves the connection queued (out of fds or
 * memory), accepting pauses this long before it is tried again. */
#define SERVER_ACCEPT_RETRY_MS 100

enum { S_INIT, S_QUERY, S_LISTENING, S_CLOSED };

struct herd_server_private_s {
  herd__listener_t l; /* first: the listener is the server's */
  herd_server_t* server;
  int state;
  int kind; /* herd__sock_kind_t */
  int fd;   /* the listening socket, -1 under rr */
  int pending_fd;
  uv_poll_t poll;
  int poll_init;
  uv_timer_t timer; /* runs listen_cb from the loop, then retries accept */
  int accept_paused;
  int closes;
  int listen_status;
  char* unlink_path; /* a Unix socket this server bound itself */
  int backlog;
  herd_server_connection_cb connection_cb;
  herd_server_listen_cb listen_cb;
  herd_server_close_cb close_cb;
};

uv_poll_t* herd__server_poll(herd_server_t* server) {
  return server->priv->poll_init ? &server->priv->poll : NULL;
}

int herd_server_init(uv_loop_t* loop, herd_server_t* server) {
  struct herd_server_private_s* p;
  memset(server, 0, sizeof(*server));
  p = herd__calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  p->server = server;
  p->fd = -1;
  p->pending_fd = -1;
  p->l.query_seq = -1;
  uv_timer_init(loop, &p->timer);
  p->timer.data = server;
  server->loop = loop;
  server->priv = p;
  return 0;
}

/* Hands one connection to the user; closes it if the user did not take it. */
static void deliver(herd_server_t* server, int fd) {
  struct herd_server_private_s* p = server->priv;
  p->pending_fd = fd;
  server->connections++;
  if (p->connection_cb != NULL)
    p->connection_cb(server, 0);
  /* The callback may have closed the server, which leaves priv alone until
   * the close callbacks run. */
  if (p->pending_fd >= 0) {
    close(p->pending_fd);
    p->pending_fd = -1;
  }
}

static void timer_cb(uv_timer_t* timer);

/* Whether accept() failed for that one connection only, having taken it off
 * the queue: a connection reset before it was accepted, or a network error
 * Linux passes on from the new socket (see accept(2)). Anything else (out of
 * fds or memory, a broken socket) leaves the socket readable as it was. */
static int accept_error_consumed(int err) {
  switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPERM:
    case EPROTO:
    case ENOPROTOOPT:
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENONET:
    case EOPNOTSUPP:
      return 1;
    default:
      return 0;
  }
}

/* Stops accepting for SERVER_ACCEPT_RETRY_MS. The timer is free for it:
 * polling starts only once the listen callback has run (timer_cb). */
static void pause_accepting(herd_server_t* server) {
  struct herd_server_private_s* p = server->priv;
  uv_poll_stop(&p->poll);
  p->accept_paused = 1;
  uv_timer_start(&p->timer, timer_cb, SERVER_ACCEPT_RETRY_MS, 0);
}

static void poll_cb(uv_poll_t* poll, int status, int events) {
  herd_server_t* server = poll->data;
  struct herd_server_private_s* p = server->priv;
  (void)events;
  if (status < 0) {
    /* libuv stopped the poll (POLLERR on the socket): try again after a
     * pause rather than stop accepting for good, as the primary's
     * round-robin does. */
    pause_accepting(server);
    if (p->connection_cb != NULL)
      p->connection_cb(server, status);
    return;
  }
  for (int i = 0; i < SERVER_ACCEPT_BATCH && p->state == S_LISTENING; i++) {
    int fd = accept4(p->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK)
        break; /* Another worker took it, or the backlog is empty. */
      if (accept_error_consumed(err))
        continue;
      /* The connection stays in the backlog and the socket readable:
       * polling on would spin, so every such failure pauses accepting. */
      pause_accepting(server);
      if (p->connection_cb != NULL)
        p->connection_cb(server, -err);
      break;
    }
    deliver(server, fd);
  }
}

/* Makes the poll for the listening socket; it starts once the listen
 * callback has run, so that no connection (and no accept error) reaches the
 * user before it. */
static int init_polling(herd_server_t* server) {
  struct herd_server_private_s* p = server->priv;
  int r = uv_poll_init(server->loop, &p->poll, p->fd);
  if (r != 0)
    return r;
  p->poll.data = server;
  p->poll_init = 1;
  return 0;
}

/* One timer, two jobs that never overlap: first it runs listen_cb from the
 * loop (and then starts polling), later it ends each pause of accepting. */
static void timer_cb(uv_timer_t* timer) {
  herd_server_t* server = timer->data;
  struct herd_server_private_s* p = server->priv;
  int status = p->listen_status;
  if (p->accept_paused) {
    p->accept_paused = 0;
    if (p->state == S_LISTENING)
      uv_poll_start(&p->poll, UV_READABLE, poll_cb);
    return;
  }
  if (p->listen_cb != NULL)
    p->listen_cb(server, status);
  if (status != 0) {
    herd_server_close(server, NULL);
    return;
  }
  /* listen_cb may have closed the server. */
  if (p->state == S_LISTENING && p->poll_init) {
    int r = uv_poll_start(&p->poll, UV_READABLE, poll_cb);
    if (r != 0 && p->connection_cb != NULL)
      p->connection_cb(server, r);
  }
}

static void finish_listen(herd_server_t* server, int status) {
  server->priv->state = S_LISTENING; /* closed by the timer on failure */
  server->priv->listen_status = status;
  uv_timer_start(&server->priv->timer, timer_cb, 0, 0);
}

/* Node's worker resolves a relative socket path against its working
 * directory (path.resolve()), so that workers in other directories name
 * the same socket. Returns 0 or UV_ENAMETOOLONG. */
static int resolve_path(const char* path, char* out, size_t cap) {
  char joined[PATH_MAX * 2];
  size_t n = 0;
  const char* s;

  if (path[0] == '/') {
    snprintf(joined, sizeof(joined), "%s", path);
  } else {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
      return -errno;
    snprintf(joined, sizeof(joined), "%s/%s", cwd, path);
  }
  /* Drops empty and "." components, and ".." with the one before it. */
  for (s = joined; *s != '\0';) {
    const char* e;
    size_t len;
    while (*s == '/')
      s++;
    e = strchr(s, '/');
    len = e != NULL ? (size_t)(e - s) : strlen(s);
    if (len == 0 || (len == 1 && s[0] == '.')) {
      /* nothing */
    } else if (len == 2 && s[0] == '.' && s[1] == '.') {
      while (n > 0 && out[n - 1] != '/')
        n--;
      if (n > 0)
        n--;
    } else {
      if (n + 1 + len + 1 > cap)
        return UV_ENAMETOOLONG;
      out[n++] = '/';
      memcpy(out + n, s, len);
      n += len;
    }
    s += len;
  }
  if (n == 0)
    out[n++] = '/';
  out[n] = '\0';
  return 0;
}

/* A server that binds and listens itself: standalone, or exclusive. */
static int listen_alone(herd_server_t* server, const herd__sock_t* sock) {
  struct herd_server_private_s* p = server->priv;
  int r;
  if (sock->kind == HERD__SOCK_PIPE) {
    p->unlink_path = herd__strdup(sock->address);
    if (p->unlink_path == NULL)
      return UV_ENOMEM;
  }
  r = herd__sock_open(sock, &p->fd, &server->port);
  if (r == 0) {
    r = init_polling(server);
    if (r != 0) {
      close(p->fd);
      p->fd = -1;
      if (p->unlink_path != NULL)
        unlink(p->unlink_path);
    }
  }
  if (r != 0) {
    herd__free(p->unlink_path);
    p->unlink_path = NULL;
    return r;
  }
  finish_listen(server, 0);
  return 0;
}

static void server_reply(herd__listener_t* l, const char* json, size_t len,
                         herd_handle_t* handle);
static int server_newconn(herd__listener_t* l, int fd);
static void server_close_listener(herd__listener_t* l);

int herd_server_listen_ex(herd_server_t* server,
                          const herd_server_options_t* options,
                          herd_server_connection_cb connection_cb,
                          herd_server_listen_cb listen_cb) {
  struct herd_server_private_s* p = server->priv;
  herd__listener_t* l = &p->l;
  herd__sock_t sock;
  struct sockaddr_storage ss;
  char path[PATH_MAX];
  int type = 4, r;

  if (options == NULL)
    return UV_EINVAL;
  if (p->state != S_INIT)
    return UV_EALREADY;
  memset(&sock, 0, sizeof(sock));
  sock.backlog = options->backlog > 0 ? options->backlog : 511;
  sock.ipv6only = !!(options->flags & HERD_SERVER_IPV6ONLY);
  if (options->flags & HERD_SERVER_FD) {
    if (options->fd < 0 || options->path != NULL)
      return UV_EINVAL;
    sock.kind = HERD__SOCK_FD;
    sock.fd = options->fd;
  } else if (options->path != NULL) {
    if (options->path[0] == '\0')
      return UV_EINVAL;
    r = resolve_path(options->path, path, sizeof(path));
    if (r != 0)
      return r;
    sock.kind = HERD__SOCK_PIPE;
    sock.address = path;
    sock.port = -1;
  } else {
    r = herd__cluster_sockaddr(options->host, options->port, &type, &ss);
    if (r != 0)
      return r;
    sock.kind = HERD__SOCK_TCP;
    sock.address = options->host;
    sock.port = options->port;
  }
  p->kind = sock.kind;
  p->backlog = sock.backlog;
  p->connection_cb = connection_cb;
  p->listen_cb = listen_cb;

  if ((options->flags & HERD_SERVER_EXCLUSIVE) || !herd__worker_connected()) {
    if (!(options->flags & HERD_SERVER_EXCLUSIVE) && herd__worker_orphan())
      return HERD_ECHANNELCLOSED; /* a worker whose primary is gone */
    return listen_alone(server, &sock);
  }

  /* A worker: ask the primary, with the fields Node's workers send. */
  memset(l, 0, sizeof(*l));
  l->query_seq = -1;
  l->backlog = sock.backlog;
  l->reply = server_reply;
  l->newconn = server_newconn;
  l->close = server_close_listener;
  switch (sock.kind) {
    case HERD__SOCK_FD:
      strcpy(l->address, "null");
      strcpy(l->port, "null");
      strcpy(l->address_type, "null");
      snprintf(l->fd, sizeof(l->fd), "%d", sock.fd);
      break;
    case HERD__SOCK_PIPE:
      if (herd_json_quote(l->address, sizeof(l->address), path, strlen(path)) >=
          sizeof(l->address))
        return UV_ENAMETOOLONG;
      strcpy(l->port, "-1");
      strcpy(l->address_type, "-1");
      break;
    default:
      if (options->host != NULL)
        herd_json_quote(l->address, sizeof(l->address), options->host,
                        strlen(options->host));
      else
        strcpy(l->address, "null");
      snprintf(l->port, sizeof(l->port), "%d", sock.port);
      snprintf(l->address_type, sizeof(l->address_type), "%d", type);
      if (sock.ipv6only)
        strcpy(l->flags, "1"); /* UV_TCP_IPV6ONLY */
      break;
  }
  r = herd__worker_query(l);
  if (r != 0)
    return r;
  p->state = S_QUERY;
  return 0;
}

int herd_server_listen(herd_server_t* server, const char* host, int port,
                       int backlog, herd_server_connection_cb connection_cb,
                       herd_server_listen_cb listen_cb) {
  herd_server_options_t o;
  memset(&o, 0, sizeof(o));
  o.host = host;
  o.port = port;
  o.backlog = backlog;
  return herd_server_listen_ex(server, &o, connection_cb, listen_cb);
}

/* The primary's answer to our queryServer. */
static void server_reply(herd__listener_t* l, const char* json, size_t len,
                         herd_handle_t* handle) {
  struct herd_server_private_s* p = (struct herd_server_private_s*)l;
  herd_server_t* server = p->server;
  char key[400], port[24];
  const char* v;
  size_t vlen;
  int64_t err = 0;
  int r;

  if (herd_json_get(json, len, "errno", &v, &vlen) == 0 &&
      !(vlen == 4 && memcmp(v, "null", 4) == 0))
    herd_json_get_int(json, len, "errno", &err);
  if (err != 0) {
    finish_listen(server, (int)err);
    return;
  }
  if (herd_json_get_string(json, len, "key", key, sizeof(key)) < 0 ||
      (l->key = herd__strdup(key)) == NULL) {
    finish_listen(server, HERD_EBADPROTO);
    return;
  }
  if (handle != NULL) {
    /* shared or reuseport: accept from the socket that came along. */
    int listening = handle->listening;
    p->fd = herd_handle_take(handle);
    server->policy = listening && p->kind == HERD__SOCK_TCP
                         ? HERD_SCHED_REUSEPORT
                         : HERD_SCHED_SHARED;
    r = p->fd < 0 ? UV_EBADF : 0;
    if (r == 0 && handle->socktype != SOCK_STREAM)
      r = HERD_EBADPROTO;
    if (r == 0 && listen(p->fd, p->backlog) != 0)
      r = -errno;
    if (r == 0)
      r = herd__nonblock(p->fd, 1);
    if (r == 0) {
      server->port = herd__sock_port(p->fd);
      if (server->port < -1)
        r = server->port;
    }
    if (r == 0)
      r = init_polling(server);
    if (r != 0) {
      finish_listen(server, r);
      return;
    }
  } else {
    /* rr: connections come as newconn messages. A Unix socket has no
     * sockname in the answer. */
    const char* sn;
    size_t snlen;
    int64_t n = -1;
    server->policy = HERD_SCHED_RR;
    if (herd_json_get(json, len, "sockname", &sn, &snlen) == 0 &&
        herd_json_get_int(sn, snlen, "port", &n) == 0 && n >= 0 && n <= 65535)
      server->port = (int)n;
    else
      server->port = -1;
  }
  /* Node's worker says where it listens: the actual port, or for a Unix
   * socket the port it asked (-1 for a path, null for an fd). */
  if (server->port >= 0)
    snprintf(port, sizeof(port), "%d", server->port);
  else
    snprintf(port, sizeof(port), "%s", l->port);
  herd__worker_listening(l, port);
  finish_listen(server, 0);
}

static int server_newconn(herd__listener_t* l, int fd) {
  struct herd_server_private_s* p = (struct herd_server_private_s*)l;
  if (p->state != S_LISTENING || p->listen_status != 0) {
    close(fd);
    return UV_ECANCELED;
  }
  herd__nonblock(fd, 1);
  deliver(p->server, fd);
  return 0;
}

static void server_close_listener(herd__listener_t* l) {
  herd_server_close(((struct herd_server_private_s*)l)->server, NULL);
}

int herd_server_accept(herd_server_t* server, uv_stream_t* client) {
  struct herd_server_private_s* p = server->priv;
  int domain = AF_UNSPEC, r;
  socklen_t dl = sizeof(domain);
  if (p == NULL || p->pending_fd < 0)
    return UV_EAGAIN;
  if (getsockopt(p->pending_fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) != 0)
    return -errno;
  /* A Unix socket's connection goes into a uv_pipe_t, any other into a
   * uv_tcp_t. */
  if (client->type == UV_NAMED_PIPE && domain == AF_UNIX)
    r = uv_pipe_open((uv_pipe_t*)client, p->pending_fd);
  else if (client->type == UV_TCP && domain != AF_UNIX)
    r = uv_tcp_open((uv_tcp_t*)client, p->pending_fd);
  else
    r = UV_EINVAL;
  if (r == 0)
    p->pending_fd = -1;
  return r;
}

int herd_server_accept_fd(herd_server_t* server, int* fd) {
  struct herd_server_private_s* p = server->priv;
  if (p == NULL || p->pending_fd < 0)
    return UV_EAGAIN;
  *fd = p->pending_fd;
  p->pending_fd = -1;
  return 0;
}

static void closed_cb(uv_handle_t* handle) {
  herd_server_t* server = handle->data;
  struct herd_server_private_s* p = server->priv;
  herd_server_close_cb cb;
  if (--p->closes > 0)
    return;
  cb = p->close_cb;
  herd__free(p->l.key);
  herd__free(p);
  server->priv = NULL;
  if (cb != NULL)
    cb(server);
}

void herd_server_close(herd_server_t* server, herd_server_close_cb close_cb) {
  struct herd_server_private_s* p = server->priv;

  if (p == NULL || p->state == S_CLOSED)
    return;
  herd__worker_unlisten(&p->l);
  p->state = S_CLOSED;
  p->close_cb = close_cb;
  if (p->pending_fd >= 0) {
    close(p->pending_fd);
    p->pending_fd = -1;
  }
  p->closes = 1;
  uv_close((uv_handle_t*)&p->timer, closed_cb);
  if (p->poll_init) {
    p->closes++;
    uv_close((uv_handle_t*)&p->poll, closed_cb);
  }
  if (p->fd >= 0)
    close(p->fd);
  p->fd = -1;
  if (p->unlink_path != NULL) {
    /* libuv's rule for a pipe server: the path goes with the socket. */
    unlink(p->unlink_path);
    herd__free(p->unlink_path);
    p->unlink_path = NULL;
  }
}
