/* The cluster primary: forks workers and keeps Node's worker table, with
 * each worker's slot and the events of its process and channel. The other
 * jobs of the primary live in cluster_env.c (the workers' environment),
 * cluster_protocol.c (the NODE_CLUSTER messages), cluster_handles.c (the
 * server handles) and cluster_close.c (disconnect and close). */
#include "cluster-int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char kPolicyNames[][10] = {"default", "rr", "shared", "reuseport"};

const char* herd_sched_policy_name(herd_sched_policy_t policy) {
  if ((int)policy < 0 || (int)policy > HERD_SCHED_REUSEPORT)
    return "unknown";
  return kPolicyNames[policy];
}

int herd_sched_policy_parse(const char* name) {
  if (name == NULL)
    return -1;
  if (strcmp(name, "rr") == 0)
    return HERD_SCHED_RR;
  if (strcmp(name, "shared") == 0 || strcmp(name, "none") == 0)
    return HERD_SCHED_SHARED;
  if (strcmp(name, "reuseport") == 0)
    return HERD_SCHED_REUSEPORT;
  return -1;
}

herd_sched_policy_t herd_cluster_default_policy(void) {
  int p = herd_sched_policy_parse(getenv("HERD_SCHED_POLICY"));
  if (p > 0)
    return (herd_sched_policy_t)p;
  p = herd_sched_policy_parse(getenv("NODE_CLUSTER_SCHED_POLICY"));
  if (p == HERD_SCHED_RR || p == HERD_SCHED_SHARED)
    return (herd_sched_policy_t)p;
  /* Measured with bench/http (docs/cluster.md): as fair as rr, as fast as
   * shared or faster, and the primary stays out of the data path. */
  return HERD_SCHED_REUSEPORT;
}

int herd_cluster_is_primary(void) {
  return !herd_cluster_is_worker();
}

const char* herd_worker_state_name(herd_worker_state_t state) {
  switch (state) {
    case HERD_WORKER_NONE:
      return "none";
    case HERD_WORKER_ONLINE:
      return "online";
    case HERD_WORKER_LISTENING:
      return "listening";
    case HERD_WORKER_DISCONNECTED:
      return "disconnected";
    case HERD_WORKER_DEAD:
      return "dead";
  }
  return "unknown";
}

int herd_cluster_init(uv_loop_t* loop, herd_cluster_t* cluster,
                      const herd_cluster_callbacks_t* callbacks) {
  struct herd_cluster_private_s* p;
  ssize_t n;

  memset(cluster, 0, sizeof(*cluster));
  p = herd__calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  n = readlink("/proc/self/exe", p->self_exe, sizeof(p->self_exe) - 1);
  p->self_exe[n > 0 ? n : 0] = '\0';
  uv_idle_init(loop, &p->idle);
  p->idle.data = cluster;
  uv_timer_init(loop, &p->timer);
  p->timer.data = cluster;
  /* It only ever waits for workers, which keep the loop alive anyway. */
  uv_unref((uv_handle_t*)&p->timer);
  cluster->loop = loop;
  cluster->priv = p;
  if (callbacks != NULL)
    cluster->cb = *callbacks;
  return 0;
}

void herd_cluster_setup_primary(herd_cluster_t* cluster,
                                const herd_cluster_settings_t* settings) {
  herd_sched_policy_t policy = cluster->settings.policy;
  cluster->settings = *settings;
  if (cluster->priv->policy_frozen)
    cluster->settings.policy = policy;
}

void herd__cluster_freeze_policy(herd_cluster_t* cluster) {
  if (cluster->priv->policy_frozen)
    return;
  cluster->priv->policy_frozen = 1;
  cluster->policy = cluster->settings.policy;
  if (cluster->policy == HERD_SCHED_DEFAULT)
    cluster->policy = herd_cluster_default_policy();
}

herd_worker_t* herd_cluster_first(herd_cluster_t* cluster) {
  herd_worker_t* w = cluster->priv->head;
  while (w != NULL && !w->priv->in_table)
    w = w->next;
  return w;
}

herd_worker_t* herd_cluster_next(herd_worker_t* worker) {
  herd_worker_t* w = worker->next;
  while (w != NULL && !w->priv->in_table)
    w = w->next;
  return w;
}

herd_worker_t* herd_cluster_worker(herd_cluster_t* cluster, int id) {
  herd_worker_t* w;
  for (w = herd_cluster_first(cluster); w != NULL; w = herd_cluster_next(w))
    if (w->id == id)
      return w;
  return NULL;
}

int herd_worker_is_dead(const herd_worker_t* worker) {
  return worker->priv->exited || worker->state == HERD_WORKER_DEAD;
}

int herd_worker_is_connected(const herd_worker_t* worker) {
  return worker->child.channel != NULL && worker->child.channel->connected &&
         !worker->priv->channel_closed;
}

/* Slots: a worker takes the lowest slot no worker in the table holds, or
 * its predecessor's (herd_worker_replace()), and gives it back when it
 * leaves the table or exits. */
static int slot_hold(herd_cluster_t* cluster, int slot) {
  struct herd_cluster_private_s* p = cluster->priv;
  int i = slot;
  if (i < 0)
    for (i = 0; i < p->nslots && p->slots[i] > 0; i++)
      ;
  if (i >= p->nslots) {
    int n = i + 8;
    int* ns = herd__realloc(p->slots, (size_t)n * sizeof(int));
    if (ns == NULL)
      return UV_ENOMEM;
    memset(ns + p->nslots, 0, (size_t)(n - p->nslots) * sizeof(int));
    p->slots = ns;
    p->nslots = n;
  }
  p->slots[i]++;
  return i;
}

static void slot_release(herd_worker_t* worker) {
  struct herd_cluster_private_s* p = worker->cluster->priv;
  if (!worker->priv->slot_held)
    return;
  worker->priv->slot_held = 0;
  p->slots[worker->slot]--;
}

int herd__cluster_slot_taken(herd_cluster_t* cluster, int slot) {
  struct herd_cluster_private_s* p = cluster->priv;
  return slot >= 0 && slot < p->nslots && p->slots[slot] > 0;
}

void herd__cluster_table_remove(herd_worker_t* worker) {
  if (worker->priv->in_table) {
    worker->priv->in_table = 0;
    worker->cluster->workers--;
  }
  slot_release(worker);
}

void herd__cluster_fork_event(herd_worker_t* w) {
  herd_cluster_t* cluster = w->cluster;
  if (!w->priv->fork_pending)
    return;
  w->priv->fork_pending = 0;
  cluster->priv->forks_pending--;
  if (cluster->cb.fork != NULL)
    cluster->cb.fork(cluster, w);
}

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  herd_worker_t* w = ipc->data;
  herd__cluster_fork_event(w);
  if (w->cluster->cb.message != NULL)
    w->cluster->cb.message(w->cluster, w, json, len, handle);
}

static void on_channel_closed(herd_ipc_t* ipc) {
  herd_worker_t* w = ipc->data;
  herd_cluster_t* cluster = w->cluster;
  herd__cluster_fork_event(w);
  w->priv->channel_closed = 1;
  herd__cluster_handles_leave(w, HERD__LEAVE_GONE);
  if (w->state != HERD_WORKER_DEAD)
    w->state = HERD_WORKER_DISCONNECTED;
  if (cluster->cb.disconnect != NULL)
    cluster->cb.disconnect(cluster, w);
  if (cluster->priv != NULL && cluster->priv->replacing > 0)
    herd__cluster_replace_check(cluster);
}

static void on_child_exit(herd_child_t* child, int64_t code, int sig) {
  herd_worker_t* w = child->data;
  w->priv->exited = 1;
  w->priv->exit_code = code;
  w->priv->term_signal = sig;
  w->state = HERD_WORKER_DEAD;
  w->priv->kill_at = 0;
  herd__cluster_handles_leave(w, HERD__LEAVE_GONE);
  slot_release(w);
}

static void on_child_error(herd_child_t* child, int err) {
  herd_worker_t* w = child->data;
  if (w->pid == 0 || child->pid == 0)
    w->start_error = err;
}

static void on_child_output(herd_child_t* child, int fd, const char* buf,
                            ssize_t nread) {
  herd_worker_t* w = child->data;
  herd__cluster_fork_event(w);
  if (nread > 0 && w->cluster->cb.output != NULL)
    w->cluster->cb.output(w->cluster, w, fd, buf, (size_t)nread);
}

static void on_child_close(herd_child_t* child) {
  herd_worker_t* w = child->data;
  herd_cluster_t* cluster = w->cluster;
  struct herd_cluster_private_s* p = cluster->priv;
  int64_t code = w->priv->exited ? w->priv->exit_code : -1;
  int sig = w->priv->exited ? w->priv->term_signal : 0;

  w->state = HERD_WORKER_DEAD;
  w->exited_after_disconnect = !!w->exited_after_disconnect;
  w->priv->kill_at = 0;
  herd__cluster_handles_leave(w, HERD__LEAVE_GONE);
  herd__cluster_table_remove(w);
  /* It failed before the loop ran: Node still reports fork first. */
  herd__cluster_fork_event(w);
  /* A successor that ends before it is ready fails its replacement,
   * before its exit is reported. */
  herd__cluster_replace_end(
      w, w->start_error != 0 ? w->start_error : HERD_EWORKERDIED);
  herd__cluster_replace_flush(w);
  if (cluster->cb.exit != NULL)
    cluster->cb.exit(cluster, w, code, sig);
  herd__cluster_replace_forget(w);

  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    p->head = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    p->tail = w->prev;
  p->live--;
  herd__cluster_env_free(w->priv->envp);
  herd__cluster_env_free(w->priv->extra_env);
  herd__free(w->priv);
  herd__free(w);
  if (p->replacing > 0)
    herd__cluster_replace_check(cluster);
  herd__cluster_maybe_finish(cluster);
}

int herd_cluster_fork(herd_cluster_t* cluster, const char* const* env,
                      herd_worker_t** worker) {
  return herd__cluster_fork(cluster, env, -1, worker);
}

int herd__cluster_fork(herd_cluster_t* cluster, const char* const* env,
                       int slot, herd_worker_t** worker_out) {
  struct herd_cluster_private_s* p = cluster->priv;
  herd_cluster_settings_t* s = &cluster->settings;
  herd_fork_options_t fo;
  herd_ipc_callbacks_t cbs;
  herd_worker_t* w;
  const char* program;
  int r;

  if (p->closing)
    return UV_ECANCELED;
  if (s->stdio_count < 0 || s->stdio_count > HERD_STDIO_MAX)
    return UV_EINVAL;
  herd__cluster_freeze_policy(cluster);
  program = s->exec != NULL ? s->exec : p->self_exe;
  if (program[0] == '\0')
    return UV_EINVAL;

  w = herd__calloc(1, sizeof(*w));
  if (w == NULL)
    return UV_ENOMEM;
  w->priv = herd__calloc(1, sizeof(*w->priv));
  if (w->priv == NULL) {
    r = UV_ENOMEM;
    goto fail;
  }
  w->cluster = cluster;
  w->id = p->next_id + 1;
  w->priv->envp = herd__cluster_env_build(cluster, w->id, env);
  w->priv->extra_env = herd__cluster_env_copy(env);
  if (w->priv->envp == NULL || w->priv->extra_env == NULL) {
    r = UV_ENOMEM;
    goto fail;
  }
  w->slot = slot_hold(cluster, slot);
  if (w->slot < 0) {
    r = UV_ENOMEM;
    goto fail;
  }
  w->priv->slot_held = 1;

  memset(&fo, 0, sizeof(fo));
  fo.spawn = s->spawn;
  fo.spawn.env = (const char* const*)w->priv->envp;
  fo.spawn.flags &= ~(unsigned)HERD_SPAWN_ENV_EXTEND;
  if (s->cwd != NULL)
    fo.spawn.cwd = s->cwd;
  fo.spawn.stdio = s->stdio;
  fo.spawn.stdio_count = s->stdio_count;
  fo.spawn.spawn_cb = NULL;
  fo.spawn.exit_cb = on_child_exit;
  fo.spawn.error_cb = on_child_error;
  fo.spawn.close_cb = on_child_close;
  fo.silent = s->silent;
  fo.exec_path = s->exec_path;
  fo.exec_argv = s->exec_argv;
  w->child.data = w;
  r = herd_fork(cluster->loop, &w->child, program, s->args, &fo);
  if (r != 0)
    goto fail;

  p->next_id++;
  w->pid = w->child.pid;
  w->priv->in_table = 1;
  w->priv->fork_pending = 1;
  cluster->workers++;
  p->live++;
  p->forks_pending++;
  w->prev = p->tail;
  if (p->tail != NULL)
    p->tail->next = w;
  else
    p->head = w;
  p->tail = w;

  if (w->child.channel != NULL) {
    w->child.channel->data = w;
    memset(&cbs, 0, sizeof(cbs));
    cbs.message = on_message;
    cbs.disconnect = on_channel_closed;
    herd__ipc_set_internal_cb(w->child.channel, herd__cluster_on_internal);
    herd_ipc_start(w->child.channel, &cbs);
  } else {
    w->priv->channel_closed = 1;
  }
  if (s->silent && s->stdio_count == 0 && w->pid != 0) {
    herd_child_read_start(&w->child, 1, on_child_output);
    herd_child_read_start(&w->child, 2, on_child_output);
  }
  uv_idle_start(&p->idle, herd__cluster_idle_cb);
  if (worker_out != NULL)
    *worker_out = w;
  return 0;

fail:
  if (w->priv != NULL) {
    herd__cluster_env_free(w->priv->envp);
    herd__cluster_env_free(w->priv->extra_env);
    slot_release(w);
    herd__free(w->priv);
  }
  herd__free(w);
  return r;
}

void herd__cluster_idle_cb(uv_idle_t* idle) {
  herd_cluster_t* cluster = idle->data;
  struct herd_cluster_private_s* p = cluster->priv;
  herd_worker_t* w;

  uv_idle_stop(idle);
  for (w = p->head; w != NULL && p->forks_pending > 0; w = w->next)
    herd__cluster_fork_event(w);
  /* The ends of replacements, from the loop; no worker is freed here. */
  for (w = p->head; w != NULL; w = w->next)
    herd__cluster_replace_flush(w);
  /* A disconnect with no worker left finishes here, from the loop. */
  herd__cluster_maybe_finish(cluster);
}

int herd_worker_send(herd_worker_t* worker, const char* json, size_t len) {
  if (!herd_worker_is_connected(worker))
    return HERD_ECHANNELCLOSED;
  return herd_ipc_send(worker->child.channel, json, len);
}

int herd_worker_kill(herd_worker_t* worker, int signum) {
  if (worker->priv->exited || worker->pid == 0)
    return UV_ESRCH;
  return herd_child_kill(&worker->child, signum ? signum : SIGTERM);
}

int herd_cluster_kill(herd_cluster_t* cluster, int signum) {
  int n = 0;
  for (herd_worker_t* w = cluster->priv->head; w != NULL; w = w->next)
    if (herd_worker_kill(w, signum) == 0)
      n++;
  return n;
}
