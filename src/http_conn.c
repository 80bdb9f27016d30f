/* Connection lifecycle: creation and reuse, herd_http_server_accept() and
 * the start of a connection libuv reads, reading into the buffer, writing
 * the answers, closing and freeing. (A connection accepted here and the
 * code that starts it share this file so that the compiler can inline the
 * start, which a `Connection: close` exchange pays for every request.) */
#include "http-int.h"

#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Connections come and go at the rate of requests under `Connection:
 * close`; a few freed ones are kept for reuse (their buffers' pages stay
 * resident, which a new connection would touch anyway). */
void herd__http_conn_free(http_conn_t* conn) {
  struct herd_http_private_s* priv = conn->priv;
  if (conn->prev != NULL)
    conn->prev->next = conn->next;
  else
    priv->conns = conn->next;
  if (conn->next != NULL)
    conn->next->prev = conn->prev;
  if (conn->out != conn->out_inline)
    herd__free(conn->out);
  herd__free(conn->heap);
  herd__free(conn->body);
  if (priv->nspare < HTTP_SPARE_CONNS && !priv->closing) {
    conn->next = priv->spare;
    priv->spare = conn;
    priv->nspare++;
  } else {
    herd__free(conn);
  }
  priv->live--;
  herd__http_server_maybe_done(priv);
}

/* The socket is closed: the connection goes unless the handler still owes
 * an answer (herd_http_respond() frees it then). */
void herd__http_conn_closed(http_conn_t* conn) {
  conn->priv->server->connections--;
  if (conn->awaiting) {
    conn->dead = 1;
    return;
  }
  herd__http_conn_free(conn);
}

void herd__http_on_close(uv_handle_t* handle) {
  herd__http_conn_closed((http_conn_t*)handle);
}

/* A raw connection's socket closes at once; conn_start_raw() finishes the
 * rest once the call that closed it has returned. */
void herd__http_conn_close(http_conn_t* conn) {
  if (conn->closing)
    return;
  conn->closing = 1;
  conn->stop_parsing = 1;
  if (conn->raw) {
    if (conn->armed) {
      /* Waiting, so no call is serving it: it goes at once, and out of the
       * epoll set, which a socket still open in another process (the
       * primary's copy under rr) would otherwise keep it in. */
      epoll_ctl(conn->priv->wait_fd, EPOLL_CTL_DEL, conn->fd, NULL);
      conn->armed = 0;
      close(conn->fd);
      conn->fd = -1;
      herd__http_conn_closed(conn);
      return;
    }
    close(conn->fd);
    conn->fd = -1;
    return;
  }
  uv_close((uv_handle_t*)&conn->tcp, herd__http_on_close);
}

static void on_write(uv_write_t* req, int status) {
  http_write_t* w = (http_write_t*)req;
  http_conn_t* conn = w->conn;
  herd__free(w);
  conn->write_pending = 0;
  if (conn->closing)
    return;
  if (status < 0) {
    herd__http_conn_close(conn);
    return;
  }
  conn->last_active = uv_now(conn->tcp.loop);
  herd__http_conn_flush(conn);
  herd__http_conn_update_reading(conn);
}

static void on_shutdown(uv_shutdown_t* req, int status) {
  (void)status;
  herd__free(req);
}

void herd__http_conn_flush(http_conn_t* conn) {
  uv_buf_t buf;
  http_write_t* w;
  size_t rest;
  int n;
  if (conn->raw) {
    herd__http_conn_flush_raw(conn);
    return;
  }
  if (conn->write_pending || conn->closing)
    return;
  if (conn->out_len > 0) {
    buf = uv_buf_init(conn->out, (unsigned)conn->out_len);
    n = uv_try_write((uv_stream_t*)&conn->tcp, &buf, 1);
    if (n == UV_EAGAIN)
      n = 0;
    if (n < 0) {
      herd__http_conn_close(conn);
      return;
    }
    rest = conn->out_len - (size_t)n;
    if (rest > 0) {
      /* The socket is full: the rest goes out on its own copy so that more
       * responses can be queued meanwhile. */
      w = herd__malloc(sizeof(*w) + rest);
      if (w == NULL) {
        herd__http_conn_close(conn);
        return;
      }
      w->conn = conn;
      memcpy(w->data, conn->out + n, rest);
      buf = uv_buf_init(w->data, (unsigned)rest);
      if (uv_write(&w->req, (uv_stream_t*)&conn->tcp, &buf, 1, on_write) != 0) {
        herd__free(w);
        herd__http_conn_close(conn);
        return;
      }
      conn->write_pending = 1;
    }
    conn->out_len = 0;
    if (conn->out != conn->out_inline && conn->out_cap > 4 * HTTP_OUT_INLINE) {
      herd__free(conn->out);
      conn->out = conn->out_inline;
      conn->out_cap = HTTP_OUT_INLINE;
    }
    if (conn->write_pending)
      return;
  }
  if (conn->close_after_write && !conn->awaiting) {
    if (conn->shut)
      return;
    if (conn->linger && !conn->eof) {
      uv_shutdown_t* sreq = herd__malloc(sizeof(*sreq));
      conn->shut = 1;
      if (sreq != NULL &&
          uv_shutdown(sreq, (uv_stream_t*)&conn->tcp, on_shutdown) == 0)
        return;
      herd__free(sreq);
    }
    herd__http_conn_close(conn);
  }
}

static void on_alloc(uv_handle_t* handle, size_t size, uv_buf_t* buf) {
  http_conn_t* conn = (http_conn_t*)handle;
  size_t keep;
  (void)size;
  /* Whatever the parser is done with and no request points into is dropped
   * by moving the unparsed rest to the front. */
  if (!conn->awaiting) {
    keep = conn->in_spans ? conn->span_base : conn->parsed;
    if (keep > 0) {
      size_t delta = keep;
      size_t i;
      memmove(conn->buf, conn->buf + keep, conn->end - keep);
      conn->end -= delta;
      conn->parsed -= delta;
      if (conn->in_spans) {
        conn->span_base -= delta;
        if (conn->req.url != NULL && conn->req.url_len > 0)
          conn->req.url -= delta;
        for (i = 0; i < conn->req.header_count; i++) {
          conn->headers[i].name -= delta;
          if (conn->headers[i].value != NULL)
            conn->headers[i].value -= delta;
        }
      }
    }
  }
  buf->base = conn->buf + conn->end;
  buf->len = conn->priv->buf_size - conn->end;
}

void herd__http_on_read(uv_stream_t* stream, ssize_t nread,
                        const uv_buf_t* buf) {
  http_conn_t* conn = (http_conn_t*)stream;
  (void)buf;
  if (nread == 0 || conn->closing)
    return;
  if (nread == UV_ENOBUFS && !conn->awaiting) {
    /* The head filled the whole buffer without tripping the count. The
     * buffer is emptied so that reading (and dropping) can go on until the
     * client has seen the answer and closes. */
    conn->end = 0;
    conn->parsed = 0;
    conn->in_spans = 0;
    herd__http_conn_fail(conn, 431);
    herd__http_conn_flush(conn);
    return;
  }
  if (nread < 0) {
    conn->reading = 0;
    /* An end of stream after herd shut down its side is what a lingering
     * close waits for; before, the answers still owed go out first. */
    if (nread != UV_EOF || conn->shut) {
      herd__http_conn_close(conn);
      return;
    }
    conn->eof = 1;
    if (!conn->awaiting) {
      /* Complete requests still in the buffer are answered first. */
      herd__http_conn_process(conn);
      conn->stop_parsing = 1;
      conn->close_after_write = 1;
      herd__http_conn_flush(conn);
    }
    return;
  }
  conn->end += (size_t)nread;
  if (conn->stop_parsing) {
    /* After a refused request or a final response the rest is dropped, and
     * does not count as traffic: a client sending on cannot keep the
     * connection open. Closing at once could reset what it still sends,
     * which may destroy the answer before it has read it: the close
     * lingers. */
    conn->end = conn->parsed;
    conn->linger = 1;
    return;
  }
  conn->last_active = uv_now(conn->priv->server->loop);
  /* Bytes that come between requests start the headers timeout, also when
   * they are only the empty lines llhttp skips before a request line
   * without beginning a message: else a client sending "\r\n" now and then
   * would hold the connection for ever (nginx's client_header_timeout runs
   * from such bytes too). */
  if (!conn->in_message && !conn->in_head && !conn->awaiting) {
    conn->in_head = 1;
    conn->head_start = conn->last_active;
  }
  herd__http_conn_process(conn);
  herd__http_conn_flush(conn);
  herd__http_conn_update_reading(conn);
}

/* Reading pauses while a response is being written the slow way (the client
 * does not read) and while the buffer is full behind an unanswered request. */
void herd__http_conn_update_reading(http_conn_t* conn) {
  int want;
  if (conn->closing || conn->eof || conn->raw)
    return;
  want = !conn->write_pending &&
         !(conn->awaiting && conn->end == conn->priv->buf_size);
  if (want && !conn->reading) {
    if (uv_read_start((uv_stream_t*)&conn->tcp, on_alloc, herd__http_on_read) ==
        0)
      conn->reading = 1;
  } else if (!want && conn->reading) {
    uv_read_stop((uv_stream_t*)&conn->tcp);
    conn->reading = 0;
  }
}

/* Links a new connection into the server's list (raw or not). */
void herd__http_conn_register(struct herd_http_private_s* priv,
                              http_conn_t* conn) {
  conn->last_active = uv_now(priv->server->loop);
  conn->next = priv->conns;
  if (priv->conns != NULL)
    priv->conns->prev = conn;
  priv->conns = conn;
  priv->live++;
  priv->server->connections++;
  herd__http_sweep_update(priv, 0);
}

/* Takes a freshly initialised, connected handle into service. On error the
 * connection is closed (and freed) here.
 *
 * A new connection usually has its request waiting already: the client
 * wrote it right after connecting, and under round-robin the primary passed
 * the socket on only after accepting it. Reading it at once answers a
 * `Connection: close` request without the socket ever being added to epoll;
 * only when nothing is there yet does libuv's reading take over, at the
 * cost of one read() that finds nothing. */
static int conn_start(struct herd_http_private_s* priv, http_conn_t* conn) {
  uv_stream_t* stream = (uv_stream_t*)&conn->tcp;
  uv_os_fd_t fd;
  ssize_t n;
  int err;
  herd__http_conn_register(priv, conn);
  err = uv_fileno((uv_handle_t*)&conn->tcp, &fd);
  if (err == 0) {
    do
      n = read(fd, conn->buf, priv->buf_size);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      herd__http_on_read(stream, n, NULL);
      return 0;
    }
    if (n == 0) {
      herd__http_on_read(stream, UV_EOF, NULL);
      return 0;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      err = -errno;
  }
  if (err == 0)
    err = uv_read_start(stream, on_alloc, herd__http_on_read);
  if (err != 0) {
    herd__http_conn_close(conn);
    return err;
  }
  conn->reading = 1;
  return 0;
}

http_conn_t* herd__http_conn_new(struct herd_http_private_s* priv) {
  http_conn_t* conn = priv->spare;
  if (conn != NULL) {
    priv->spare = conn->next;
    priv->nspare--;
  } else {
    conn = herd__malloc(sizeof(*conn) + priv->buf_size);
    if (conn == NULL)
      return NULL;
  }
  memset(conn, 0, offsetof(http_conn_t, headers));
  conn->priv = priv;
  conn->req.server = priv->server;
  conn->req.conn = conn;
  conn->out = conn->out_inline;
  conn->out_cap = HTTP_OUT_INLINE;
  llhttp_init(&conn->parser, HTTP_REQUEST, &priv->settings);
  return conn;
}

/* A handle that never started serving is closed with this and freed. */
static void on_close_unstarted(uv_handle_t* handle) {
  herd__free(handle);
}

int herd_http_server_accept(herd_http_server_t* server, uv_stream_t* listener) {
  struct herd_http_private_s* priv;
  http_conn_t* conn;
  int err;
  if (server == NULL || server->priv == NULL || listener == NULL)
    return UV_EINVAL;
  priv = server->priv;
  if (priv->closing)
    return UV_EINVAL;
  conn = herd__http_conn_new(priv);
  if (conn == NULL)
    return UV_ENOMEM;
  err = uv_tcp_init(server->loop, &conn->tcp);
  if (err != 0) {
    herd__free(conn);
    return err;
  }
  err = uv_accept(listener, (uv_stream_t*)&conn->tcp);
  if (err != 0) {
    uv_close((uv_handle_t*)&conn->tcp, on_close_unstarted);
    return err;
  }
  return conn_start(priv, conn);
}
