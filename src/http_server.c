/* The HTTP server object: init, its own listener and the graceful close.
 * The connections live in http_conn.c (accepted through libuv) and
 * http_adopt.c (adopted fds); parsing in http_parse.c; answers in
 * http_response.c; the idle sweep in http_idle.c. */
#include "http-int.h"

#include <assert.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The listener, its retry timer and its check close together. */
static void on_listener_close(uv_handle_t* handle) {
  struct herd_http_private_s* priv = handle->data;
  if (--priv->listener_open == 0)
    herd__http_server_maybe_done(priv);
}

static void close_listener(struct herd_http_private_s* priv) {
  uv_close((uv_handle_t*)&priv->listener, on_listener_close);
  uv_close((uv_handle_t*)&priv->accept_retry, on_listener_close);
  uv_close((uv_handle_t*)&priv->accept_turn, on_listener_close);
}

static void on_sweep_close(uv_handle_t* handle) {
  struct herd_http_private_s* priv = handle->data;
  priv->sweep_open = 0;
  herd__http_server_maybe_done(priv);
}

static void on_wait_close(uv_handle_t* handle) {
  struct herd_http_private_s* priv = handle->data;
  close(priv->wait_fd);
  priv->wait_fd = -1;
  priv->wait_open = 0;
  herd__http_server_maybe_done(priv);
}

void herd__http_server_maybe_done(struct herd_http_private_s* priv) {
  herd_http_server_t* server = priv->server;
  herd_http_close_cb cb;
  if (!priv->closing) {
    herd__http_sweep_update(priv, 0);
    return;
  }
  if (priv->live > 0 || priv->listener_open)
    return;
  if (priv->wait_open) {
    if (!uv_is_closing((uv_handle_t*)&priv->wait_poll))
      uv_close((uv_handle_t*)&priv->wait_poll, on_wait_close);
    return;
  }
  if (priv->sweep_open) {
    if (!uv_is_closing((uv_handle_t*)&priv->sweep))
      uv_close((uv_handle_t*)&priv->sweep, on_sweep_close);
    return;
  }
  while (priv->spare != NULL) {
    http_conn_t* conn = priv->spare;
    priv->spare = conn->next;
    herd__free(conn);
  }
  cb = priv->close_cb;
  server->priv = NULL;
  herd__free(priv);
  if (cb != NULL)
    cb(server);
}

/* A client that resets its connection must not kill the server on the next
 * write: like Node.js, herd ignores SIGPIPE unless the program handles it. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
    return;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

int herd_http_server_init(uv_loop_t* loop, herd_http_server_t* server,
                          herd_http_handler_cb handler,
                          const herd_http_options_t* options) {
  struct herd_http_private_s* priv;
  int err;
  if (loop == NULL || server == NULL || handler == NULL)
    return UV_EINVAL;
  priv = herd__malloc(sizeof(*priv));
  if (priv == NULL)
    return UV_ENOMEM;
  memset(priv, 0, sizeof(*priv));
  priv->server = server;
  priv->wait_fd = -1;
  priv->handler = handler;
  priv->idle_timeout = 5000;
  priv->close_grace = HERD__HTTP_CLOSE_GRACE_DEFAULT;
  priv->headers_timeout = HTTP_HEADERS_TIMEOUT_DEFAULT;
  priv->max_header_size = 16 * 1024;
  priv->max_body_size = 1024 * 1024;
  if (options != NULL) {
    if (options->idle_timeout != 0)
      priv->idle_timeout = options->idle_timeout;
    if (options->close_grace != 0)
      priv->close_grace = options->close_grace;
    if (options->headers_timeout != 0)
      priv->headers_timeout = options->headers_timeout;
    if (options->max_header_size != 0)
      priv->max_header_size = options->max_header_size;
    if (options->max_body_size != 0)
      priv->max_body_size = options->max_body_size;
  }
  if (priv->max_header_size > 1024 * 1024) {
    herd__free(priv);
    return UV_EINVAL;
  }
  priv->buf_size = priv->max_header_size + HTTP_BUF_SLACK;
  ignore_sigpipe();
  priv->settings = *herd__http_settings();
  err = uv_timer_init(loop, &priv->sweep);
  if (err != 0) {
    herd__free(priv);
    return err;
  }
  priv->sweep.data = priv;
  priv->sweep_open = 1;
  memset(server, 0, sizeof(*server));
  server->loop = loop;
  server->priv = priv;
  return 0;
}

static void on_connection(uv_stream_t* listener, int status);

static void on_accept_retry(uv_timer_t* timer) {
  struct herd_http_private_s* priv = timer->data;
  on_connection((uv_stream_t*)&priv->listener, 0);
}

/* After the poll phase: the next iteration may accept a batch again. */
static void on_accept_turn(uv_check_t* check) {
  struct herd_http_private_s* priv = check->data;
  priv->turn_accepts = 0;
}

static void on_connection(uv_stream_t* listener, int status) {
  struct herd_http_private_s* priv = listener->data;
  /* A failed accept (EMFILE, ...) costs that one connection only. */
  if (status < 0 || priv->closing)
    return;
  if (priv->turn_accepts >= HTTP_ACCEPT_BATCH) {
    /* Left pending, libuv stops reading the listener: the connection is
     * taken at the start of the next iteration, after the connections
     * whose requests have come meanwhile were read. */
    uv_timer_start(&priv->accept_retry, on_accept_retry, 0, 0);
    return;
  }
  priv->turn_accepts++;
  /* A connection herd has no memory for stays pending, and libuv reads the
   * listener no more until it is taken: it is taken after a pause, as
   * herd_server_t does after an accept that fails for want of memory. */
  if (herd_http_server_accept(priv->server, listener) == UV_ENOMEM)
    uv_timer_start(&priv->accept_retry, on_accept_retry, HTTP_ACCEPT_RETRY_MS,
                   0);
}

int herd_http_server_listen(herd_http_server_t* server, const char* host,
                            int port, int backlog) {
  struct herd_http_private_s* priv;
  struct sockaddr_storage addr;
  int err;
  if (server == NULL || server->priv == NULL || port < 0 || port > 65535)
    return UV_EINVAL;
  priv = server->priv;
  if (priv->listening || priv->listener_open || priv->closing)
    return UV_EINVAL;
  if (host == NULL)
    host = "0.0.0.0";
  if (uv_ip4_addr(host, port, (struct sockaddr_in*)&addr) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6*)&addr) != 0)
    return UV_EINVAL;
  if (backlog <= 0)
    backlog = 511;
  err = uv_tcp_init(server->loop, &priv->listener);
  if (err != 0)
    return err;
  uv_timer_init(server->loop, &priv->accept_retry);
  uv_check_init(server->loop, &priv->accept_turn);
  priv->listener.data = priv;
  priv->accept_retry.data = priv;
  priv->accept_turn.data = priv;
  priv->turn_accepts = 0;
  priv->listener_open = 3;
  uv_check_start(&priv->accept_turn, on_accept_turn);
  uv_unref((uv_handle_t*)&priv->accept_turn);
  err = uv_tcp_bind(&priv->listener, (const struct sockaddr*)&addr, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t*)&priv->listener, backlog, on_connection);
  if (err != 0)
    goto fail;
  priv->listening = 1;
  return 0;

fail:
  close_listener(priv);
  return err;
}

int herd_http_server_port(const herd_http_server_t* server) {
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  if (server == NULL || server->priv == NULL || !server->priv->listening)
    return UV_EINVAL;
  if (uv_tcp_getsockname(&server->priv->listener, (struct sockaddr*)&addr,
                         &len) != 0)
    return UV_EINVAL;
  if (addr.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6*)&addr)->sin6_port);
  return ntohs(((struct sockaddr_in*)&addr)->sin_port);
}

void herd_http_server_close(herd_http_server_t* server,
                            herd_http_close_cb close_cb) {
  struct herd_http_private_s* priv;
  if (server == NULL || server->priv == NULL)
    return;
  priv = server->priv;
  assert(!priv->closing);
  priv->closing = 1;
  priv->close_cb = close_cb;
  priv->close_start = uv_now(server->loop);
  if (priv->listener_open && !uv_is_closing((uv_handle_t*)&priv->listener))
    close_listener(priv);
  /* No connection closes here: a client may be sending on any of them, and
   * closing one with a request on its way resets it unanswered. Each goes
   * after its next answer, which says `Connection: close` (parsing,
   * respond), or once it has stayed silent through the close grace (the
   * sweep, from now on at the grace's pace). */
  herd__http_sweep_update(priv, 1);
  herd__http_server_maybe_done(priv);
}
