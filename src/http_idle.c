/* The idle sweep: one coarse timer per server closes connections that have
 * been silent too long. */
#include "http-int.h"

static uint64_t sweep_interval(struct herd_http_private_s* priv) {
  uint64_t ms = priv->idle_timeout / 4;
  if (ms < 10)
    ms = 10;
  if (ms > 1000)
    ms = 1000;
  return ms;
}

/* One coarse timer per server instead of one per connection or request:
 * connections that have neither sent nor received anything for
 * idle_timeout, and wait for nothing from the handler, are closed. */
static void on_sweep(uv_timer_t* timer) {
  struct herd_http_private_s* priv = timer->data;
  uint64_t now = uv_now(timer->loop);
  http_conn_t* conn;
  http_conn_t* next;
  for (conn = priv->conns; conn != NULL; conn = next) {
    next = conn->next;
    if (conn->closing || conn->awaiting)
      continue;
    if (now - conn->last_active >= priv->idle_timeout)
      herd__http_conn_close(conn);
  }
}

void herd__http_sweep_update(struct herd_http_private_s* priv) {
  uint64_t ms;
  if (!priv->sweep_open)
    return;
  if (priv->server->connections > 0 && !priv->sweep_active) {
    ms = sweep_interval(priv);
    uv_timer_start(&priv->sweep, on_sweep, ms, ms);
    priv->sweep_active = 1;
  } else if (priv->server->connections == 0 && priv->sweep_active) {
    uv_timer_stop(&priv->sweep);
    priv->sweep_active = 0;
  }
}
