/* The CLUSTER kind: workers that speak Node's cluster protocol, forked by a
 * herd_cluster_t the supervisor owns. A slot's worker is the cluster
 * worker of the same slot (herd__cluster_fork()), so under reuseport it
 * takes the slot's socket; a reload replaces it with herd_worker_replace(),
 * which hands over only once the successor listens on every server its
 * predecessor did. The caller's sockets are adopted as the cluster's
 * servers and workers' listen() calls are mapped onto them
 * (cluster_adopt.c). Escalation stays the supervisor's: the cluster never
 * kills on its own (kill_timeout -1); the supervisor's deadline kills the
 * worker's whole group. */
#include "supervisor-int.h"

#include "cluster-int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static herd__sup_t* sup_of(herd_cluster_t* cluster) {
  return cluster->data;
}

static void on_listening(herd_cluster_t* cluster, herd_worker_t* w,
                         const herd_cluster_address_t* address) {
  (void)cluster;
  (void)address;
  if (w->data != NULL)
    herd__proc_listening(w->data);
}

static void on_message(herd_cluster_t* cluster, herd_worker_t* w,
                       const char* json, size_t len, herd_handle_t* handle) {
  herd__sup_t* p = sup_of(cluster);
  herd__sup_proc_t* proc = w->data;
  (void)handle;
  if (proc != NULL && p->message_cb != NULL && !p->closing)
    p->message_cb(p->pub, proc->slot_index, json, len);
}

static void on_exit_worker(herd_cluster_t* cluster, herd_worker_t* w,
                           int64_t code, int sig) {
  herd__sup_proc_t* proc = w->data;
  (void)cluster;
  if (proc == NULL)
    return;
  /* The worker's memory goes when this returns. */
  w->data = NULL;
  proc->worker = NULL;
  proc->start_error = w->start_error;
  herd__proc_ended(proc, code, sig);
}

static void on_replaced(herd_worker_t* successor, int status) {
  if (successor->data != NULL)
    herd__proc_replaced(successor->data, status);
}

/* A worker's listen() served on one of herd's addresses, or refused: said
 * once per address asked for. */
static void on_mapped(herd_cluster_t* cluster, herd_worker_t* w,
                      const char* asked, const herd__cluster_handle_t* h) {
  herd__sup_t* p = sup_of(cluster);
  herd__sup_proc_t* proc = w->data;
  uint32_t hash = herd__cluster_key_hash(asked) ^ (h != NULL);
  char have[512];
  size_t n = 0;
  for (int i = 0; i < p->nmapped; i++)
    if (p->mapped[i] == hash)
      return;
  if (p->nmapped < (int)HERD_ARRAY_SIZE(p->mapped))
    p->mapped[p->nmapped++] = hash;
  if (h != NULL) {
    if (strcmp(asked, h->adopt_addr.text) != 0)
      herd__sup_emit(p, HERD_SUPERVISOR_NOTICE, -1, proc, 0, 0,
                     "listen(%s) served on %s", asked, h->adopt_addr.text);
    return;
  }
  have[0] = '\0';
  for (int i = 0; i < p->nsockets && n < sizeof(have) - 1; i++)
    n += (size_t)snprintf(have + n, sizeof(have) - n, "%s%s", i ? ", " : "",
                          p->sockets[i].addr.text);
  herd__sup_emit(p, HERD_SUPERVISOR_NOTICE, -1, proc, UV_EADDRNOTAVAIL, 0,
                 "listen(%s) refused: herd listens on %s", asked, have);
}

int herd__sup_cluster_start(herd__sup_t* p) {
  herd_cluster_callbacks_t cbs;
  herd_cluster_settings_t* st = &p->settings;
  int r;

  memset(&cbs, 0, sizeof(cbs));
  cbs.listening = on_listening;
  cbs.message = on_message;
  cbs.exit = on_exit_worker;
  r = herd_cluster_init(p->pub->loop, &p->cluster, &cbs);
  if (r != 0)
    return r;
  p->cluster.data = p;
  p->cluster.priv->map_cb = on_mapped;
  p->cluster_on = 1;
  p->handles++;
  memset(st, 0, sizeof(*st));
  st->exec = p->file;
  st->args = (const char* const*)p->argv;
  st->cwd = p->cwd;
  st->env = (const char* const*)(p->envp + 2);
  st->policy = p->policy;
  st->kill_timeout = -1;
  st->listen_timeout =
      p->ready_timeout > INT32_MAX ? INT32_MAX : (int)p->ready_timeout;
  st->spawn.flags = HERD_SPAWN_PROCESS_GROUP | HERD_SPAWN_KILL_GROUP_ON_EXIT;
  st->spawn.parent_death_signal = SIGKILL;
  herd_cluster_setup_primary(&p->cluster, st);
  /* Addresses given: a listen() that none serves is refused, even when
   * none is TCP (only unix ones), never bound where nobody asked. */
  p->cluster.priv->adopt_only = p->nsockets > 0;
  for (int i = 0; i < p->nsockets; i++) {
    herd__sup_socket_t* sk = &p->sockets[i];
    int fds[HERD_SUPERVISOR_MAX_WORKERS];
    int n = 0;
    if (sk->addr.family == AF_UNIX) {
      herd__sup_emit(p, HERD_SUPERVISOR_NOTICE, -1, NULL, UV_ENOTSUP, 0,
                     "%s is not served to Node workers (TCP only): "
                     "their listen() calls are refused",
                     sk->addr.text);
      continue;
    }
    /* Under reuseport the slots' sockets, bound at init in slot order. */
    fds[n++] = sk->fd;
    if (sk->reuseport)
      for (int s = 1; s < p->pub->workers && p->slots[s]->own[i]; s++)
        fds[n++] = p->slots[s]->fds[i];
    r = herd__cluster_adopt(&p->cluster, &sk->addr, fds, n, i);
    if (r != 0)
      return r;
  }
  return 0;
}

int herd__sup_cluster_spawn(herd__sup_t* p, herd__sup_proc_t* proc,
                            herd__sup_slot_t* slot, int successor, int out,
                            int err) {
  char id[32], app[40];
  const char* env[] = {id, app, NULL};
  herd_worker_t* w = NULL;
  int r;

  /* Each fork gets its own log pipes: the settings name them for this
   * fork only. */
  memset(p->stdio, 0, sizeof(p->stdio));
  p->stdio[0].kind = HERD_STDIO_IGNORE;
  p->stdio[1].kind = out >= 0 ? HERD_STDIO_FD : HERD_STDIO_INHERIT;
  p->stdio[1].fd = out >= 0 ? out : 1;
  p->stdio[2].kind = err >= 0 ? HERD_STDIO_FD : HERD_STDIO_INHERIT;
  p->stdio[2].fd = err >= 0 ? err : 2;
  p->stdio[3].kind = HERD_STDIO_IPC;
  p->settings.stdio = p->stdio;
  p->settings.stdio_count = 4;
  herd_cluster_setup_primary(&p->cluster, &p->settings);
  /* PM2's NODE_APP_INSTANCE: the slot, for code that runs a job in one
   * worker only. */
  snprintf(id, sizeof(id), "HERD_WORKER_ID=%d", slot->index);
  snprintf(app, sizeof(app), "NODE_APP_INSTANCE=%d", slot->index);
  if (successor) {
    herd__sup_proc_t* cur = slot->cur;
    if (cur == NULL || cur->worker == NULL)
      r = UV_EINVAL;
    else
      r = herd_worker_replace(cur->worker, on_replaced, &w);
  } else {
    r = herd__cluster_fork(&p->cluster, env, slot->index, &w);
  }
  p->settings.stdio = NULL;
  p->settings.stdio_count = 0;
  herd_cluster_setup_primary(&p->cluster, &p->settings);
  if (r != 0)
    return r;
  w->data = proc;
  proc->worker = w;
  return 0;
}

void herd__sup_cluster_stop(herd__sup_t* p, herd__sup_proc_t* proc) {
  herd_worker_t* w = proc->worker;
  if (w == NULL)
    return;
  if (!w->exited_after_disconnect && herd_worker_is_connected(w))
    herd_worker_disconnect(w);
  if (p->stop_signal > 0)
    herd_worker_kill(w, p->stop_signal);
  else if (!(proc->flags & HERD__PROC_WAS_READY))
    /* Never ready: it may have no server for the disconnect to close, and
     * a timer or a pending connect would keep it alive to the deadline. */
    herd_worker_kill(w, SIGTERM);
}

static void cluster_closed(herd_cluster_t* cluster) {
  herd__sup_handle_closed(sup_of(cluster));
}

void herd__sup_cluster_close(herd__sup_t* p) {
  if (!p->cluster_on)
    return;
  p->cluster_on = 0;
  herd_cluster_close(&p->cluster, cluster_closed);
}
