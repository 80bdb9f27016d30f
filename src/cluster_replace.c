/* herd_worker_replace(): a successor forked into its predecessor's slot with
 * the same settings takes over once it listens on every server its
 * predecessor does, and only then is the predecessor asked to disconnect.
 * Under reuseport the successor gets the same slot socket, under shared the
 * same socket, under rr a place among the free workers: at no moment is
 * there a socket without a worker accepting from it. A successor that
 * exits, cannot start or does not listen in time is stopped and the
 * predecessor keeps serving. The callback runs from the loop. */
#include "cluster-int.h"

int herd_worker_replace(herd_worker_t* worker, herd_worker_replace_cb cb,
                        herd_worker_t** successor) {
  herd_cluster_t* cluster = worker->cluster;
  struct herd_cluster_private_s* p;
  int timeout;
  herd_worker_t* s;
  int r;

  if (cluster == NULL)
    return UV_EINVAL; /* a worker's own herd_cluster_worker_self() */
  p = cluster->priv;
  timeout = cluster->settings.listen_timeout;
  if (p->closing)
    return UV_ECANCELED;
  if (!worker->priv->in_table || worker->priv->exited)
    return UV_EINVAL;
  if (worker->priv->successor != NULL || worker->priv->replace_pending ||
      worker->priv->replace_done)
    return UV_EBUSY;
  r = herd__cluster_fork(cluster, (const char* const*)worker->priv->extra_env,
                         worker->slot, &s);
  if (r != 0)
    return r;
  if (timeout <= 0)
    timeout = HERD__LISTEN_TIMEOUT_DEFAULT;
  s->priv->predecessor = worker;
  s->priv->replace_cb = cb;
  s->priv->replace_pending = 1;
  s->priv->listen_by = uv_now(cluster->loop) + (uint64_t)timeout;
  worker->priv->successor = s;
  p->replacing++;
  herd__cluster_arm_timer(cluster);
  if (successor != NULL)
    *successor = s;
  return 0;
}

/* Ready: it listens on every server its predecessor is still a member of
 * (and on one at least when that is none or the predecessor is gone, but
 * it is enough to be online when the predecessor never listened). */
static int ready(herd_worker_t* s) {
  herd_worker_t* pred = s->priv->predecessor;
  herd__cluster_handle_t* h;
  int any = 0;

  if (!herd_worker_is_connected(s) || s->state == HERD_WORKER_NONE)
    return 0;
  if (pred == NULL)
    return s->state == HERD_WORKER_LISTENING;
  for (h = s->cluster->priv->handles; h != NULL; h = h->next) {
    herd__cluster_member_t* mp = herd__cluster_member(h, pred);
    herd__cluster_member_t* ms;
    if (mp == NULL || mp->leaving)
      continue;
    any = 1;
    ms = herd__cluster_member(h, s);
    if (ms == NULL || ms->leaving || !ms->listening)
      return 0;
  }
  return any || pred->state != HERD_WORKER_LISTENING ||
         s->state == HERD_WORKER_LISTENING;
}

static void unlink_pair(herd_worker_t* s) {
  herd_worker_t* pred = s->priv->predecessor;
  s->priv->predecessor = NULL;
  s->priv->replace_pending = 0;
  s->cluster->priv->replacing--;
  if (pred != NULL && pred->priv->successor == s)
    pred->priv->successor = NULL;
}

void herd__cluster_replace_end(herd_worker_t* s, int status) {
  herd_cluster_t* cluster = s->cluster;
  if (!s->priv->replace_pending)
    return;
  unlink_pair(s);
  s->priv->replace_done = 1;
  s->priv->replace_status = status;
  if (status != 0)
    herd__cluster_stop_worker(s);
  herd__cluster_arm_timer(cluster);
  uv_idle_start(&cluster->priv->idle, herd__cluster_idle_cb);
}

void herd__cluster_replace_check(herd_cluster_t* cluster) {
  herd_worker_t* w;
  /* Disconnecting a predecessor frees no worker: the list stays valid. */
  for (w = cluster->priv->head; w != NULL; w = w->next) {
    herd_worker_t* pred = w->priv->predecessor;
    if (!w->priv->replace_pending || !ready(w))
      continue;
    herd__cluster_replace_end(w, 0);
    /* The handover: the successor serves, the predecessor may go. */
    if (pred != NULL && pred->priv->in_table)
      herd_worker_disconnect(pred);
  }
}

void herd__cluster_replace_flush(herd_worker_t* s) {
  if (!s->priv->replace_done)
    return;
  s->priv->replace_done = 0;
  if (s->priv->replace_cb != NULL)
    s->priv->replace_cb(s, s->priv->replace_status);
}

void herd__cluster_replace_forget(herd_worker_t* w) {
  if (w->priv->successor != NULL)
    w->priv->successor->priv->predecessor = NULL;
  w->priv->successor = NULL;
}
