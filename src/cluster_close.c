/* How a primary lets its workers go and closes: disconnecting one worker or
 * all of them, and the close machine that waits for every worker and every
 * server handle before the close callback runs. */
#include "cluster-int.h"

static void handle_closed(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;
  if (--p->closes_pending == 0)
    herd__cluster_maybe_finish(cluster);
}

void herd__cluster_handle_gone(herd_cluster_t* cluster) {
  handle_closed(cluster);
}

int herd_worker_disconnect(herd_worker_t* worker) {
  int64_t r;
  worker->exited_after_disconnect = 1;
  r = herd__cluster_send(worker, "\"act\":\"disconnect\"", -1);
  /* As Node does: the worker no longer gets connections nor counts as a
   * member of the table. */
  herd__cluster_handles_leave(worker, 1);
  herd__cluster_table_remove(worker);
  return r < 0 ? (int)r : 0;
}

int herd_cluster_disconnect(herd_cluster_t* cluster, herd_cluster_cb cb) {
  struct herd_cluster_private_s* p = cluster->priv;
  herd_worker_t* w;

  if (p->disconnecting)
    return UV_EALREADY;
  p->disconnecting = 1;
  p->disconnect_cb = cb;
  for (w = p->head; w != NULL; w = w->next)
    if (herd_worker_is_connected(w) && !w->exited_after_disconnect)
      herd_worker_disconnect(w);
    else
      herd__cluster_table_remove(w);
  uv_idle_start(&p->idle, herd__cluster_idle_cb);
  return 0;
}

static void idle_closed(uv_handle_t* handle) {
  herd_cluster_t* cluster = handle->data;
  handle_closed(cluster);
}

/* Runs the disconnect and close callbacks once what they wait for is gone.
 * The disconnect callback runs from the loop (maybe_finish can be reached
 * from herd_cluster_disconnect() itself when no worker is left). */
void herd__cluster_maybe_finish(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;

  if (p->live > 0)
    return;
  if (p->disconnecting && p->disconnect_cb != NULL) {
    herd_cluster_cb cb = p->disconnect_cb;
    p->disconnect_cb = NULL;
    p->disconnecting = 0;
    cb(cluster);
    if (p->live > 0)
      return;
  } else if (p->disconnect_cb == NULL) {
    p->disconnecting = 0;
  }
  if (p->closing == 1) {
    /* Every worker is gone: close what the primary owns. */
    p->closing = 2;
    p->closes_pending++; /* the idle handle */
    while (p->handles != NULL) {
      herd__cluster_handle_t* h = p->handles;
      p->handles = h->next;
      herd__cluster_handle_free(h);
    }
    uv_close((uv_handle_t*)&p->idle, idle_closed);
    return;
  }
  if (p->closing == 2 && p->closes_pending == 0) {
    herd_cluster_cb cb = p->close_cb;
    p->closing = 3;
    herd__free(p->slots);
    herd__free(p);
    cluster->priv = NULL;
    if (cb != NULL)
      cb(cluster);
  }
}

void herd_cluster_close(herd_cluster_t* cluster, herd_cluster_cb close_cb) {
  struct herd_cluster_private_s* p = cluster->priv;
  herd_worker_t* w;

  if (p == NULL || p->closing)
    return;
  p->closing = 1;
  p->close_cb = close_cb;
  for (w = p->head; w != NULL; w = w->next)
    if (herd_worker_is_connected(w) && !w->exited_after_disconnect)
      herd_worker_disconnect(w);
  herd__cluster_maybe_finish(cluster);
}
