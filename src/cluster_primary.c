/* The cluster primary: forks workers and keeps Node's worker table, with
 * each worker's slot and the events of its process and channel. The other
 * jobs of the primary live in cluster_env.c (the workers' environment),
 * cluster_protocol.c (the NODE_CLUSTER messages), cluster_handles.c (the
 * server handles) and cluster_close.c (disconnect and close). */
#include "cluster-int.h"

#include <fcntl.h>
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

/* Node emits 'setup' on the next tick of each setupPrimary(), and fork()
 * calls setupPrimary() too: the events are counted and run from the idle
 * handle, each fork's after the setup events asked before it. */
static void ask_setup_event(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;
  p->setups_asked++;
  if (!p->closing)
    uv_idle_start(&p->idle, herd__cluster_idle_cb);
}

void herd__cluster_setup_events(herd_cluster_t* cluster, uint64_t upto) {
  struct herd_cluster_private_s* p = cluster->priv;
  while (p->setups_run < upto && p->setups_run < p->setups_asked) {
    p->setups_run++;
    if (cluster->cb.setup != NULL)
      cluster->cb.setup(cluster, &cluster->settings);
    if (cluster->priv == NULL)
      return;
  }
}

void herd_cluster_setup_primary(herd_cluster_t* cluster,
                                const herd_cluster_settings_t* settings) {
  herd_sched_policy_t policy = cluster->settings.policy;
  cluster->settings = *settings;
  if (cluster->priv->policy_frozen)
    cluster->settings.policy = policy;
  ask_setup_event(cluster);
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
  herd__cluster_setup_events(cluster, w->priv->setup_seq);
  w->priv->fork_pending = 0;
  cluster->priv->forks_pending--;
  if (cluster->cb.fork != NULL)
    cluster->cb.fork(cluster, w);
}

void herd_worker_on(herd_worker_t* worker,
                    const herd_worker_callbacks_t* callbacks) {
  if (callbacks != NULL)
    worker->priv->cb = *callbacks;
  else
    memset(&worker->priv->cb, 0, sizeof(worker->priv->cb));
}

void herd__worker_emit_error(herd_worker_t* w, int err) {
  herd_cluster_t* cluster = w->cluster;
  if (w->priv->cb.error != NULL)
    w->priv->cb.error(w, err);
  if (cluster != NULL && cluster->cb.error != NULL)
    cluster->cb.error(cluster, w, err);
}

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  herd_worker_t* w = ipc->data;
  herd__cluster_fork_event(w);
  if (w->cluster->cb.message != NULL)
    w->cluster->cb.message(w->cluster, w, json, len, handle);
  if (w->priv->cb.message != NULL)
    w->priv->cb.message(w, json, len, handle);
}

static void on_channel_error(herd_ipc_t* ipc, int err) {
  herd_worker_t* w = ipc->data;
  herd__cluster_fork_event(w);
  herd__worker_emit_error(w, err);
}

static void on_channel_closed(herd_ipc_t* ipc) {
  herd_worker_t* w = ipc->data;
  herd_cluster_t* cluster = w->cluster;
  herd__cluster_fork_event(w);
  w->priv->channel_closed = 1;
  herd__cluster_handles_leave(w, HERD__LEAVE_GONE);
  if (w->state != HERD_WORKER_DEAD)
    w->state = HERD_WORKER_DISCONNECTED;
  if (w->priv->cb.disconnect != NULL)
    w->priv->cb.disconnect(w);
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
  /* Node's worker 'error' for a program that could not start. */
  if (w->start_error != 0)
    herd__worker_emit_error(w, w->start_error);
  if (w->priv->cb.exit != NULL)
    w->priv->cb.exit(w, code, sig);
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

/* Node's settings.args defaults to process.argv.slice(2), the arguments of
 * the script that `exec` defaults to. A C primary's equivalent is its own
 * argv[1..], read from /proc/self/cmdline once; none when it cannot be
 * read. */
static int self_args(struct herd_cluster_private_s* p,
                     const char* const** args) {
  size_t len = 0, cap = 0, n = 0;
  char* buf = NULL;
  ssize_t r;
  int fd;

  if (p->self_args != NULL) {
    *args = (const char* const*)p->self_args;
    return 0;
  }
  fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  for (;;) {
    if (len + 1 >= cap) {
      char* nb = herd__realloc(buf, cap ? cap * 2 : 1024);
      if (nb == NULL) {
        herd__free(buf);
        if (fd >= 0)
          close(fd);
        return UV_ENOMEM;
      }
      buf = nb;
      cap = cap ? cap * 2 : 1024;
    }
    r = fd >= 0 ? read(fd, buf + len, cap - len - 1) : 0;
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  if (fd >= 0)
    close(fd);
  buf[len] = '\0';
  for (size_t i = 0; i < len; i++)
    if (buf[i] == '\0')
      n++;
  p->self_args = herd__calloc(n + 1, sizeof(char*));
  if (p->self_args == NULL) {
    herd__free(buf);
    return UV_ENOMEM;
  }
  p->self_cmdline = buf;
  /* argv[0] is the program itself; the rest are its arguments. */
  n = 0;
  for (size_t i = strlen(buf) + 1; i < len; i += strlen(buf + i) + 1)
    p->self_args[n++] = buf + i;
  *args = (const char* const*)p->self_args;
  return 0;
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
  const char* const* args;
  int r;

  if (p->closing)
    return UV_ECANCELED;
  if (s->stdio_count < 0 || s->stdio_count > HERD_STDIO_MAX)
    return UV_EINVAL;
  herd__cluster_freeze_policy(cluster);
  program = s->exec != NULL ? s->exec : p->self_exe;
  if (program[0] == '\0')
    return UV_EINVAL;
  args = s->args;
  if (args == NULL && s->exec == NULL) {
    r = self_args(p, &args);
    if (r != 0)
      return r;
  }

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
  if (s->stdio_count > 0 || s->spawn.stdio_count == 0) {
    fo.spawn.stdio = s->stdio;
    fo.spawn.stdio_count = s->stdio_count;
  }
  fo.spawn.spawn_cb = NULL;
  fo.spawn.exit_cb = on_child_exit;
  fo.spawn.error_cb = on_child_error;
  fo.spawn.close_cb = on_child_close;
  fo.silent = s->silent;
  fo.exec_path = s->exec_path;
  fo.exec_argv = s->exec_argv;
  w->child.data = w;
  r = herd_fork(cluster->loop, &w->child, program, args, &fo);
  if (r != 0)
    goto fail;

  p->next_id++;
  /* Node's fork() is a setupPrimary() too: its setup event comes first. */
  ask_setup_event(cluster);
  w->priv->setup_seq = p->setups_asked;
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
    cbs.error = on_channel_error;
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
  herd__cluster_setup_events(cluster, p->setups_asked);
  if (cluster->priv == NULL)
    return;
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

/* What herd_worker_send_ex() needs back: the channel's data is not the
 * worker's on the worker side. */
typedef struct {
  herd_worker_t* worker;
  herd_worker_send_cb cb;
  void* arg;
} send_req_t;

static void on_sent(herd_ipc_t* ipc, int status, void* arg) {
  send_req_t* req = arg;
  send_req_t r = *req;
  (void)ipc;
  herd__free(req);
  if (r.cb != NULL)
    r.cb(r.worker, status, r.arg);
  else if (status != 0)
    herd__worker_emit_error(r.worker, status);
}

int herd_worker_send_ex(herd_worker_t* worker, const char* json, size_t len,
                        uv_handle_t* handle, unsigned flags,
                        uv_close_cb handle_close_cb, herd_worker_send_cb cb,
                        void* arg) {
  send_req_t* req;
  int r;
  if (!herd_worker_is_connected(worker))
    return HERD_ECHANNELCLOSED;
  req = herd__malloc(sizeof(*req));
  if (req == NULL)
    return UV_ENOMEM;
  req->worker = worker;
  req->cb = cb;
  req->arg = arg;
  r = herd_ipc_send_ex(worker->child.channel, json, len, handle, flags,
                       handle_close_cb, on_sent, req);
  if (r < 0)
    herd__free(req);
  return r;
}

int herd_worker_kill(herd_worker_t* worker, int signum) {
  if (worker->cluster == NULL)
    return herd__worker_self_kill();
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
