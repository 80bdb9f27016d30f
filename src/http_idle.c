/* The idle sweep: one coarse timer per server closes connections that have
 * been silent too long, and once the server is closing, those that stay
 * silent through the close grace; it also answers 408 to request heads that
 * take longer than the headers timeout, however steadily they trickle. */
#include "http-int.h"

static uint64_t sweep_interval(struct herd_http_private_s* priv) {
  uint64_t ms = priv->idle_timeout / 4;
  if (priv->headers_timeout / 4 < ms)
    ms = priv->headers_timeout / 4;
  if (priv->closing && priv->close_grace / 4 < ms)
    ms = priv->close_grace / 4;
  if (ms < 10)
    ms = 10;
  if (ms > 1000)
    ms = 1000;
  return ms;
}

/* Whether `conn`, silent since last_active, has had its time. A closing
 * server gives each connection close_grace from the close (or from its
 * last traffic after it) to send its next request, and a connection
 * answered for the last time as long to close its end; never more than
 * the idle timeout would. */
static int conn_expired(struct herd_http_private_s* priv, http_conn_t* conn,
                        uint64_t now) {
  uint64_t since = conn->last_active;
  if (now - since >= priv->idle_timeout)
    return 1;
  if (!priv->closing)
    return 0;
  if (since < priv->close_start)
    since = priv->close_start;
  return now - since >= priv->close_grace;
}

/* One coarse timer per server instead of one per connection or request:
 * connections that have neither sent nor received anything for their time,
 * and wait for nothing from the handler, are closed; a request head that has
 * been arriving for headers_timeout is refused with 408 (Node.js answers the
 * same), and the connection closes as after any refused request. */
static void on_sweep(uv_timer_t* timer) {
  struct herd_http_private_s* priv = timer->data;
  uint64_t now = uv_now(timer->loop);
  http_conn_t* conn;
  http_conn_t* next;
  for (conn = priv->conns; conn != NULL; conn = next) {
    next = conn->next;
    if (conn->closing || conn->awaiting)
      continue;
    if (conn->in_head && !conn->stop_parsing &&
        now - conn->head_start >= priv->headers_timeout) {
      herd__http_conn_fail(conn, 408);
      herd__http_conn_flush(conn);
      herd__http_conn_update_reading(conn);
      continue;
    }
    if (conn_expired(priv, conn, now))
      herd__http_conn_close(conn);
  }
}

/* Runs the sweep while any connection is open; `restart` makes it take a
 * new interval (the close grace may be shorter than the idle one). */
void herd__http_sweep_update(struct herd_http_private_s* priv, int restart) {
  uint64_t ms;
  if (!priv->sweep_open)
    return;
  if (priv->server->connections > 0 && (!priv->sweep_active || restart)) {
    ms = sweep_interval(priv);
    uv_timer_start(&priv->sweep, on_sweep, ms, ms);
    priv->sweep_active = 1;
  } else if (priv->server->connections == 0 && priv->sweep_active) {
    uv_timer_stop(&priv->sweep);
    priv->sweep_active = 0;
  }
}
