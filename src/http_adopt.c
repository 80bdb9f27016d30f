/* The raw-fd path of herd_http_server_adopt(): an adopted socket is served
 * with plain recv()/send()/close() until it has to stay open, and waits for
 * its request in the server's own epoll set; only then does it become a
 * libuv handle. */
#include "http-int.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* herd__http_conn_flush() of a raw connection: what the socket takes now is
 * sent, and a connection that is done closes; anything else (a full socket, a
 * lingering close) is left to libuv once conn_start_raw() hands the socket
 * over. */
void herd__http_conn_flush_raw(http_conn_t* conn) {
  ssize_t n;
  if (conn->closing)
    return;
  if (conn->out_len > 0) {
    do
      n = send(conn->fd, conn->out, conn->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      herd__http_conn_close(conn);
      return;
    }
    if (n < 0)
      n = 0;
    conn->out_len -= (size_t)n;
    if (conn->out_len > 0) {
      memmove(conn->out, conn->out + n, conn->out_len);
      return;
    }
  }
  if (conn->close_after_write && !conn->awaiting &&
      (!conn->linger || conn->eof))
    herd__http_conn_close(conn);
}

static int conn_serve_raw(struct herd_http_private_s* priv, http_conn_t* conn,
                          int tried);

static void on_wait_ready(uv_poll_t* poll, int status, int events) {
  struct herd_http_private_s* priv = poll->data;
  struct epoll_event ev[HTTP_WAIT_BATCH];
  http_conn_t* conn;
  int n, i;
  (void)status;
  (void)events;
  do
    n = epoll_wait(priv->wait_fd, ev, HTTP_WAIT_BATCH, 0);
  while (n < 0 && errno == EINTR);
  /* Nothing a handler does closes another connection at once (the server's
   * close lets waiting ones wait on), so every one in `ev` is still there. */
  for (i = 0; i < n; i++) {
    conn = ev[i].data.ptr;
    conn->armed = 0;
    conn_serve_raw(priv, conn, 0);
  }
}

static int wait_open(struct herd_http_private_s* priv) {
  int fd, err;
  fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0)
    return -errno;
  err = uv_poll_init(priv->server->loop, &priv->wait_poll, fd);
  if (err != 0) {
    close(fd);
    return err;
  }
  priv->wait_poll.data = priv;
  priv->wait_fd = fd;
  priv->wait_open = 1;
  /* The sweep timer keeps the loop alive while any connection is open. */
  uv_unref((uv_handle_t*)&priv->wait_poll);
  /* Should this fail, the set stays (closed with the server) and
   * connections take libuv's way. */
  return uv_poll_start(&priv->wait_poll, UV_READABLE, on_wait_ready);
}

/* A raw connection whose request is not there yet waits for it the way
 * nginx's do: one epoll_ctl() (one-shot, so it fires once), then the read,
 * the answer and the close, which takes the socket out of the set by
 * itself. Handed to libuv instead, it cost fcntl(), ioctl(), two
 * epoll_ctl() and a read() more. The set is the server's own, polled by the
 * loop as one fd: libuv drops events of fds it does not know. */
static int conn_arm(struct herd_http_private_s* priv, http_conn_t* conn) {
  struct epoll_event ev;
  int err;
  if (!priv->wait_open) {
    err = wait_open(priv);
    if (err != 0)
      return err;
  }
  if (!uv_is_active((uv_handle_t*)&priv->wait_poll))
    return UV_EINVAL;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.ptr = conn;
  if (epoll_ctl(priv->wait_fd, conn->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
                conn->fd, &ev) != 0)
    return -errno;
  conn->registered = 1;
  conn->armed = 1;
  return 0;
}

/* Reads what a raw connection has and answers it; what cannot finish here
 * (no request yet: it waits in the set; an unanswered request, a full
 * socket, a keep-alive connection: libuv takes the socket) is set up to
 * go on later. `tried` says whether this read is the try right after the
 * accept, whose outcome steers the next connections. */
static int conn_serve_raw(struct herd_http_private_s* priv, http_conn_t* conn,
                          int tried) {
  uv_stream_t* stream = (uv_stream_t*)&conn->tcp;
  uv_loop_t* loop = priv->server->loop;
  int fd = conn->fd;
  ssize_t n;
  int flags;
  int err = 0;
  do
    n = recv(fd, conn->buf + conn->end, priv->buf_size - conn->end,
             MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (tried) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (priv->early > -8)
        priv->early--;
    } else if (priv->early < 8) {
      priv->early++;
    }
  }
  if (n > 0) {
    herd__http_on_read(stream, n, NULL);
  } else if (n == 0) {
    herd__http_on_read(stream, UV_EOF, NULL);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    err = -errno;
    herd__http_conn_close(conn);
  } else if (conn_arm(priv, conn) == 0) {
    return 0;
  }
  if (conn->closing) {
    herd__http_conn_closed(conn);
    return err;
  }
  /* Sockets received over IPC already are close-on-exec; only a socket that
   * is not pays for the second fcntl(). */
  flags = fcntl(fd, F_GETFD);
  if (flags >= 0 && !(flags & FD_CLOEXEC))
    fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  err = uv_tcp_init(loop, &conn->tcp);
  if (err != 0) {
    herd__http_conn_close(conn);
    herd__http_conn_closed(conn);
    return err;
  }
  conn->raw = 0;
  conn->fd = -1;
  err = uv_tcp_open(&conn->tcp, fd);
  if (err != 0) {
    close(fd);
    conn->closing = 1;
    conn->stop_parsing = 1;
    uv_close((uv_handle_t*)&conn->tcp, herd__http_on_close);
    return err;
  }
  herd__http_conn_flush(conn);
  herd__http_conn_update_reading(conn);
  return 0;
}

/* conn_start() (http_conn.c) for herd_http_server_adopt(): the socket is served
 * as a plain fd first. A request that is there at once (usual under rr, where
 * the primary passes a socket on only after accepting it) is read, answered
 * and, under `Connection: close`, closed with recv(), send() and close() alone:
 * the socket never becomes a libuv handle, which spares the fcntl() for
 * close-on-exec, the ioctl() of uv_tcp_open() and the epoll_ctl() calls libuv
 * makes even for a socket it barely polled. A connection accepted by the worker
 * itself usually comes before its request; when most recent ones did, the read
 * that would find nothing is skipped and the connection waits in the set at
 * once (conn_arm). */
static int conn_start_raw(struct herd_http_private_s* priv, http_conn_t* conn,
                          int fd) {
  conn->raw = 1;
  conn->fd = fd;
  herd__http_conn_register(priv, conn);
  if (priv->early < 0 && (++priv->tries & 7) != 0 && conn_arm(priv, conn) == 0)
    return 0;
  return conn_serve_raw(priv, conn, 1);
}

int herd_http_server_adopt(herd_http_server_t* server, int fd) {
  struct herd_http_private_s* priv;
  http_conn_t* conn;
  if (server == NULL || server->priv == NULL || fd < 0 ||
      server->priv->closing) {
    if (fd >= 0)
      close(fd);
    return UV_EINVAL;
  }
  priv = server->priv;
  conn = herd__http_conn_new(priv);
  if (conn == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  return conn_start_raw(priv, conn, fd);
}
