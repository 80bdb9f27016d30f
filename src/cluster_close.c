/* How a primary lets its workers go and closes: disconnecting one worker or
 * all of them, the escalation to SIGKILL for a worker that does not leave
 * in time (as nginx's master does after worker_shutdown_timeout), and the
 * close machine that waits for every worker and every server handle before
 * the close callback runs. One timer holds every deadline of the cluster:
 * the kills, and the listen deadlines of herd_worker_replace(). */
#include "cluster-int.h"

#include <signal.h>

static void handle_closed(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;
  if (--p->closes_pending == 0)
    herd__cluster_maybe_finish(cluster);
}

void herd__cluster_handle_gone(herd_cluster_t* cluster) {
  handle_closed(cluster);
}

static void timer_cb(uv_timer_t* timer) {
  herd_cluster_t* cluster = timer->data;
  struct herd_cluster_private_s* p = cluster->priv;
  uint64_t now = uv_now(cluster->loop);
  herd_worker_t* w;

  /* Neither step frees a worker (that happens in its close callback, from
   * the loop), so the list can be walked while they run. */
  for (w = p->head; w != NULL; w = w->next) {
    if (w->priv->kill_at != 0 && now >= w->priv->kill_at) {
      w->priv->kill_at = 0;
      herd_worker_kill(w, SIGKILL);
    }
    if (w->priv->replace_pending && now >= w->priv->listen_by)
      herd__cluster_replace_end(w, UV_ETIMEDOUT);
  }
  if (cluster->priv != NULL)
    herd__cluster_arm_timer(cluster);
}

void herd__cluster_arm_timer(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;
  uint64_t now = uv_now(cluster->loop), next = 0;
  herd_worker_t* w;

  if (p->closing >= 2)
    return;
  for (w = p->head; w != NULL; w = w->next) {
    if (w->priv->kill_at != 0 && (next == 0 || w->priv->kill_at < next))
      next = w->priv->kill_at;
    if (w->priv->replace_pending && (next == 0 || w->priv->listen_by < next))
      next = w->priv->listen_by;
  }
  if (next == 0)
    uv_timer_stop(&p->timer);
  else
    uv_timer_start(&p->timer, timer_cb, next > now ? next - now : 0, 0);
}

void herd__cluster_kill_later(herd_worker_t* worker) {
  int timeout = worker->cluster->settings.kill_timeout;
  if (worker->priv->exited || worker->pid == 0 || worker->priv->kill_at != 0)
    return;
  if (timeout < 0)
    return; /* wait as long as it takes, as Node does */
  if (timeout == 0)
    timeout = HERD__KILL_TIMEOUT_DEFAULT;
  worker->priv->kill_at = uv_now(worker->cluster->loop) + (uint64_t)timeout;
  herd__cluster_arm_timer(worker->cluster);
}

void herd__cluster_stop_worker(herd_worker_t* worker) {
  if (worker->priv->in_table)
    herd_worker_disconnect(worker);
  else
    herd__cluster_kill_later(worker);
}

int herd_worker_disconnect(herd_worker_t* worker) {
  int64_t r;
  if (worker->cluster == NULL)
    return herd__worker_self_disconnect();
  worker->exited_after_disconnect = 1;
  r = herd__cluster_send(worker, "\"act\":\"disconnect\"", -1, NULL);
  /* As Node does: the worker no longer gets connections nor counts as a
   * member of the table. */
  herd__cluster_handles_leave(worker, HERD__LEAVE_ASKED);
  herd__cluster_table_remove(worker);
  herd__cluster_kill_later(worker);
  /* A successor that is let go before it was ready ends its replacement. */
  herd__cluster_replace_end(worker, UV_ECANCELED);
  return r < 0 ? (int)r : 0;
}

int herd_cluster_disconnect(herd_cluster_t* cluster, herd_cluster_cb cb) {
  struct herd_cluster_private_s* p = cluster->priv;
  herd_worker_t* w;

  if (p->disconnecting)
    return UV_EALREADY;
  p->disconnecting = 1;
  p->disconnect_cb = cb;
  for (w = p->head; w != NULL; w = w->next) {
    if (herd_worker_is_connected(w) && !w->exited_after_disconnect)
      herd_worker_disconnect(w);
    else
      herd__cluster_table_remove(w);
    herd__cluster_kill_later(w);
  }
  uv_idle_start(&p->idle, herd__cluster_idle_cb);
  return 0;
}

static void uv_closed(uv_handle_t* handle) {
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
    p->closes_pending += 2; /* the idle handle and the timer */
    while (p->handles != NULL) {
      herd__cluster_handle_t* h = p->handles;
      p->handles = h->next;
      herd__cluster_handle_free(h);
    }
    uv_close((uv_handle_t*)&p->idle, uv_closed);
    uv_close((uv_handle_t*)&p->timer, uv_closed);
    return;
  }
  if (p->closing == 2 && p->closes_pending == 0) {
    herd_cluster_cb cb = p->close_cb;
    p->closing = 3;
    herd__free(p->slots);
    herd__free(p->self_cmdline);
    herd__free(p->self_args);
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
    herd__cluster_replace_end(w, UV_ECANCELED);
  for (w = p->head; w != NULL; w = w->next) {
    if (herd_worker_is_connected(w) && !w->exited_after_disconnect)
      herd_worker_disconnect(w);
    herd__cluster_kill_later(w);
  }
  herd__cluster_maybe_finish(cluster);
}
