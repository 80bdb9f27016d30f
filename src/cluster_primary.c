/* The cluster primary: forks workers, keeps Node's worker table, answers the
 * workers' NODE_CLUSTER messages (online, queryServer, listening, close,
 * exitedAfterDisconnect) and owns the per-port server handles, whose
 * scheduling lives in cluster_rr.c and cluster_shared.c. */
#include "internal.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char** environ;

struct herd_cluster_private_s {
  int64_t seq; /* Node's per-process NODE_CLUSTER seq */
  int next_id;
  int policy_frozen;
  herd_worker_t* head; /* every worker not yet freed, in id order */
  herd_worker_t* tail;
  int live;
  herd__cluster_handle_t* handles;
  uv_idle_t idle; /* runs fork callbacks from the loop */
  int forks_pending;
  char* slots; /* slots[i] != 0: slot i is taken */
  int nslots;
  herd_cluster_cb disconnect_cb;
  int disconnecting;
  herd_cluster_cb close_cb;
  int closing;
  int closes_pending;
  char self_exe[4096];
};

struct herd_worker_private_s {
  int in_table;
  int fork_pending;
  int exited;
  int channel_closed;
  int64_t exit_code;
  int term_signal;
  char** envp;
};

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

static void idle_cb(uv_idle_t* idle);
static void maybe_finish(herd_cluster_t* cluster);
static void on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle);

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

static void freeze_policy(herd_cluster_t* cluster) {
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

/* The worker's environment: the primary's (or the one given), then the
 * settings' additions, then fork()'s, then NODE_UNIQUE_ID; a later "K=" wins.
 * The channel variables of our own parent are dropped: herd_fork sets new
 * ones. */
static int env_put(char*** envp, size_t* n, size_t* cap, const char* kv) {
  const char* eq = strchr(kv, '=');
  size_t klen = eq ? (size_t)(eq - kv) : strlen(kv);
  char* copy;
  for (size_t i = 0; i < *n; i++) {
    if (strncmp((*envp)[i], kv, klen) == 0 && (*envp)[i][klen] == '=') {
      copy = herd__strdup(kv);
      if (copy == NULL)
        return UV_ENOMEM;
      herd__free((*envp)[i]);
      (*envp)[i] = copy;
      return 0;
    }
  }
  if (*n + 2 > *cap) {
    size_t ncap = *cap ? *cap * 2 : 64;
    char** ne = herd__realloc(*envp, ncap * sizeof(char*));
    if (ne == NULL)
      return UV_ENOMEM;
    *envp = ne;
    *cap = ncap;
  }
  copy = herd__strdup(kv);
  if (copy == NULL)
    return UV_ENOMEM;
  (*envp)[(*n)++] = copy;
  (*envp)[*n] = NULL;
  return 0;
}

static void env_free(char** envp) {
  if (envp == NULL)
    return;
  for (char** e = envp; *e != NULL; e++)
    herd__free(*e);
  herd__free(envp);
}

static char** build_env(herd_cluster_t* cluster, int id,
                        const char* const* extra) {
  char** envp = NULL;
  size_t n = 0, cap = 0;
  char buf[64];
  const char* const* e;

  for (char** p = environ; p != NULL && *p != NULL; p++) {
    if (strncmp(*p, "NODE_CHANNEL_FD=", 16) == 0 ||
        strncmp(*p, "NODE_CHANNEL_SERIALIZATION_MODE=", 32) == 0 ||
        strncmp(*p, "NODE_UNIQUE_ID=", 15) == 0 ||
        strncmp(*p, "HERD_PRIMARY_PID=", 17) == 0)
      continue;
    if (env_put(&envp, &n, &cap, *p) != 0)
      goto fail;
  }
  for (e = cluster->settings.env; e != NULL && *e != NULL; e++)
    if (env_put(&envp, &n, &cap, *e) != 0)
      goto fail;
  for (e = extra; e != NULL && *e != NULL; e++)
    if (env_put(&envp, &n, &cap, *e) != 0)
      goto fail;
  snprintf(buf, sizeof(buf), "NODE_UNIQUE_ID=%d", id);
  if (env_put(&envp, &n, &cap, buf) != 0)
    goto fail;
  /* Lets the worker tell whether its primary died before it could ask for
   * PR_SET_PDEATHSIG. */
  snprintf(buf, sizeof(buf), "HERD_PRIMARY_PID=%d", (int)getpid());
  if (env_put(&envp, &n, &cap, buf) != 0)
    goto fail;
  return envp;

fail:
  env_free(envp);
  return NULL;
}

static int slot_take(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;
  int i;
  for (i = 0; i < p->nslots; i++)
    if (!p->slots[i])
      break;
  if (i == p->nslots) {
    char* ns = herd__realloc(p->slots, (size_t)(p->nslots + 8));
    if (ns == NULL)
      return UV_ENOMEM;
    memset(ns + p->nslots, 0, 8);
    p->slots = ns;
    p->nslots += 8;
  }
  p->slots[i] = 1;
  return i;
}

static void slot_release(herd_worker_t* worker) {
  struct herd_cluster_private_s* p = worker->cluster->priv;
  if (worker->slot >= 0 && worker->slot < p->nslots)
    p->slots[worker->slot] = 0;
  worker->slot = -1;
}

/* Takes the worker out of every server handle; rr hands its in-flight
 * connections to other workers. */
static void remove_from_handles(herd_worker_t* worker, int graceful) {
  struct herd_cluster_private_s* p = worker->cluster->priv;
  herd__cluster_handle_t** hp = &p->handles;
  while (*hp != NULL) {
    herd__cluster_handle_t* h = *hp;
    int gone = h->kind == HERD_SCHED_RR ? herd__rr_remove(h, worker, graceful)
                                        : herd__shared_remove(h, worker);
    if (gone) {
      *hp = h->next;
      herd__cluster_handle_free(h);
    } else {
      hp = &h->next;
    }
  }
}

static void remove_from_table(herd_worker_t* worker) {
  if (worker->priv->in_table) {
    worker->priv->in_table = 0;
    worker->cluster->workers--;
  }
}

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  herd_worker_t* w = ipc->data;
  if (w->cluster->cb.message != NULL)
    w->cluster->cb.message(w->cluster, w, json, len, handle);
}

static void on_channel_closed(herd_ipc_t* ipc) {
  herd_worker_t* w = ipc->data;
  herd_cluster_t* cluster = w->cluster;
  w->priv->channel_closed = 1;
  remove_from_handles(w, 0);
  if (w->state != HERD_WORKER_DEAD)
    w->state = HERD_WORKER_DISCONNECTED;
  if (cluster->cb.disconnect != NULL)
    cluster->cb.disconnect(cluster, w);
}

static void on_child_exit(herd_child_t* child, int64_t code, int sig) {
  herd_worker_t* w = child->data;
  w->priv->exited = 1;
  w->priv->exit_code = code;
  w->priv->term_signal = sig;
  w->state = HERD_WORKER_DEAD;
  remove_from_handles(w, 0);
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
  remove_from_handles(w, 0);
  slot_release(w);
  remove_from_table(w);
  if (w->priv->fork_pending) {
    /* It failed before the loop ran: Node still reports fork first. */
    w->priv->fork_pending = 0;
    p->forks_pending--;
    if (cluster->cb.fork != NULL)
      cluster->cb.fork(cluster, w);
  }
  if (cluster->cb.exit != NULL)
    cluster->cb.exit(cluster, w, code, sig);

  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    p->head = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  else
    p->tail = w->prev;
  p->live--;
  env_free(w->priv->envp);
  herd__free(w->priv);
  herd__free(w);
  maybe_finish(cluster);
}

int herd_cluster_fork(herd_cluster_t* cluster, const char* const* env,
                      herd_worker_t** worker_out) {
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
  freeze_policy(cluster);
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
  w->slot = slot_take(cluster);
  if (w->slot < 0) {
    r = UV_ENOMEM;
    goto fail;
  }
  w->priv->envp = build_env(cluster, w->id, env);
  if (w->priv->envp == NULL) {
    r = UV_ENOMEM;
    goto fail;
  }

  memset(&fo, 0, sizeof(fo));
  fo.spawn.env = (const char* const*)w->priv->envp;
  fo.spawn.cwd = s->cwd;
  fo.spawn.stdio = s->stdio;
  fo.spawn.stdio_count = s->stdio_count;
  fo.spawn.serialization = s->serialization;
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
    herd__ipc_set_internal_cb(w->child.channel, on_internal);
    herd_ipc_start(w->child.channel, &cbs);
  } else {
    w->priv->channel_closed = 1;
  }
  if (s->silent && s->stdio_count == 0 && w->pid != 0) {
    herd_child_read_start(&w->child, 1, on_child_output);
    herd_child_read_start(&w->child, 2, on_child_output);
  }
  uv_idle_start(&p->idle, idle_cb);
  if (worker_out != NULL)
    *worker_out = w;
  return 0;

fail:
  if (w->priv != NULL) {
    env_free(w->priv->envp);
    slot_release(w);
    herd__free(w->priv);
  }
  herd__free(w);
  return r;
}

static void idle_cb(uv_idle_t* idle) {
  herd_cluster_t* cluster = idle->data;
  struct herd_cluster_private_s* p = cluster->priv;
  herd_worker_t* w;

  uv_idle_stop(idle);
  for (w = p->head; w != NULL && p->forks_pending > 0; w = w->next) {
    if (!w->priv->fork_pending)
      continue;
    w->priv->fork_pending = 0;
    p->forks_pending--;
    if (cluster->cb.fork != NULL)
      cluster->cb.fork(cluster, w);
  }
  /* A disconnect with no worker left finishes here, from the loop. */
  maybe_finish(cluster);
}

int64_t herd__cluster_send(herd_worker_t* worker, const char* fields, int fd) {
  struct herd_cluster_private_s* p = worker->cluster->priv;
  char stack[1024];
  char* buf = stack;
  size_t need = strlen(fields) + 64;
  int64_t seq = p->seq;
  int n, r;

  if (!herd_worker_is_connected(worker))
    return HERD_ECHANNELCLOSED;
  if (need > sizeof(stack)) {
    buf = herd__malloc(need);
    if (buf == NULL)
      return UV_ENOMEM;
  }
  n = snprintf(buf, need, "{\"cmd\":\"NODE_CLUSTER\",%s%s\"seq\":%lld}", fields,
               fields[0] ? "," : "", (long long)seq);
  if (fd >= 0)
    r = herd_ipc_send_fd(worker->child.channel, buf, (size_t)n, fd,
                         "net.Native", NULL, NULL);
  else
    r = herd_ipc_send(worker->child.channel, buf, (size_t)n);
  if (buf != stack)
    herd__free(buf);
  if (r < 0)
    return r;
  p->seq++;
  return seq;
}

herd__cluster_member_t* herd__cluster_member(herd__cluster_handle_t* handle,
                                             herd_worker_t* worker) {
  for (int i = 0; i < handle->nmembers; i++)
    if (handle->members[i].worker == worker)
      return &handle->members[i];
  return NULL;
}

int herd__cluster_member_add(herd__cluster_handle_t* handle,
                             herd_worker_t* worker) {
  if (herd__cluster_member(handle, worker) != NULL)
    return UV_EALREADY;
  if (handle->nmembers == handle->cap_members) {
    int ncap = handle->cap_members ? handle->cap_members * 2 : 8;
    herd__cluster_member_t* nm =
        herd__realloc(handle->members, (size_t)ncap * sizeof(*nm));
    if (nm == NULL)
      return UV_ENOMEM;
    handle->members = nm;
    handle->cap_members = ncap;
  }
  handle->members[handle->nmembers].worker = worker;
  handle->members[handle->nmembers].fd = -1;
  handle->members[handle->nmembers].seq = -1;
  handle->members[handle->nmembers].leaving = 0;
  handle->nmembers++;
  return 0;
}

static void handle_closed(herd_cluster_t* cluster) {
  struct herd_cluster_private_s* p = cluster->priv;
  if (--p->closes_pending == 0)
    maybe_finish(cluster);
}

void herd__cluster_handle_free(herd__cluster_handle_t* h) {
  herd_cluster_t* cluster = h->cluster;
  if (h->kind == HERD_SCHED_RR) {
    /* The poll handle closes asynchronously; the cluster's close waits. */
    cluster->priv->closes_pending++;
    herd__rr_close(h);
  } else {
    herd__shared_close(h);
  }
}

void herd__cluster_handle_gone(herd_cluster_t* cluster) {
  handle_closed(cluster);
}

static herd__cluster_handle_t* handle_find(herd_cluster_t* cluster,
                                           const char* key) {
  herd__cluster_handle_t* h;
  for (h = cluster->priv->handles; h != NULL; h = h->next)
    if (strcmp(h->key, key) == 0)
      return h;
  return NULL;
}

static herd__cluster_handle_t* handle_new(herd_cluster_t* cluster,
                                          const char* key, const char* address,
                                          int address_type, int port,
                                          int backlog) {
  herd__cluster_handle_t* h = herd__calloc(1, sizeof(*h));
  if (h == NULL)
    return NULL;
  h->key = herd__strdup(key);
  h->address = address ? herd__strdup(address) : NULL;
  if (h->key == NULL || (address != NULL && h->address == NULL)) {
    herd__free(h->key);
    herd__free(h->address);
    herd__free(h);
    return NULL;
  }
  h->cluster = cluster;
  h->kind = cluster->policy;
  h->address_type = address_type;
  h->port = port;
  h->backlog = backlog > 0 ? backlog : 511;
  h->fd = -1;
  return h;
}

static void handle_discard(herd__cluster_handle_t* h) {
  herd__free(h->key);
  herd__free(h->address);
  herd__free(h->members);
  herd__free(h);
}

static int handle_open(herd__cluster_handle_t* h) {
  return h->kind == HERD_SCHED_RR ? herd__rr_open(h) : herd__shared_open(h);
}

int herd_cluster_listen(herd_cluster_t* cluster, const char* host, int port,
                        int backlog, int* bound_port) {
  struct sockaddr_storage ss;
  herd__cluster_handle_t* h;
  char key[300];
  int type, r;

  if (cluster->priv->closing)
    return UV_ECANCELED;
  r = herd__cluster_sockaddr(host, port, &type, &ss);
  if (r != 0)
    return r;
  freeze_policy(cluster);
  /* The key a worker's first listen(port, host) asks for: index 0. */
  snprintf(key, sizeof(key), "%s:%d:%d:undefined:0", host ? host : "null", port,
           type);
  if (handle_find(cluster, key) != NULL)
    return UV_EADDRINUSE;
  h = handle_new(cluster, key, host, type, port, backlog);
  if (h == NULL)
    return UV_ENOMEM;
  h->pinned = 1;
  r = handle_open(h);
  if (r != 0) {
    handle_discard(h);
    return r;
  }
  h->next = cluster->priv->handles;
  cluster->priv->handles = h;
  if (bound_port != NULL)
    *bound_port = h->bound_port;
  return 0;
}

/* JSON helpers for the few shapes the protocol uses. */
static int json_raw(const char* json, size_t len, const char* key, char* out,
                    size_t cap) {
  const char* v;
  size_t vlen;
  if (herd_json_get(json, len, key, &v, &vlen) != 0)
    return -1;
  if (vlen >= cap)
    return -1;
  memcpy(out, v, vlen);
  out[vlen] = '\0';
  return 0;
}

static void reply_errno(herd_worker_t* w, const char* key, int64_t ack,
                        int err) {
  char fields[600], qkey[400];
  herd_json_quote(qkey, sizeof(qkey), key, strlen(key));
  snprintf(fields, sizeof(fields),
           "\"errno\":%d,\"key\":%s,\"ack\":%lld,\"data\":null", err, qkey,
           (long long)ack);
  herd__cluster_send(w, fields, -1);
}

static void query_server(herd_worker_t* w, const char* json, size_t len) {
  herd_cluster_t* cluster = w->cluster;
  herd__cluster_handle_t* h;
  herd__cluster_member_t* m;
  char address[256], atype[32], fdraw[32], key[400], qkey[420], raw[300];
  char fields[1024];
  const char* addr = NULL;
  int64_t seq, port, index, backlog = 511, type;
  int r;

  if (herd_json_get_int(json, len, "seq", &seq) != 0 ||
      herd_json_get_int(json, len, "port", &port) != 0 ||
      herd_json_get_int(json, len, "index", &index) != 0 ||
      json_raw(json, len, "addressType", atype, sizeof(atype)) != 0 ||
      json_raw(json, len, "address", raw, sizeof(raw)) != 0)
    return; /* Not a queryServer Node or herd would send. */
  if (w->exited_after_disconnect)
    return; /* Node: a disconnecting worker gets no new server. */
  herd_json_get_int(json, len, "backlog", &backlog);
  if (strcmp(raw, "null") != 0) {
    if (herd_json_get_string(json, len, "address", address, sizeof(address)) <
        0)
      return;
    addr = address;
  }
  if (json_raw(json, len, "fd", fdraw, sizeof(fdraw)) != 0)
    strcpy(fdraw, "undefined");
  snprintf(key, sizeof(key), "%s:%lld:%s:%s:%lld", addr ? addr : "null",
           (long long)port, atype[0] == '"' ? "udp" : atype, fdraw,
           (long long)index);

  /* UDP, pipe paths and listen({fd}) are not shared by herd's primary. */
  type = atoi(atype);
  if (atype[0] == '"' || port < 0 || port > 65535 || (type != 4 && type != 6) ||
      strcmp(fdraw, "undefined") != 0) {
    reply_errno(w, key, seq, UV_ENOTSUP);
    return;
  }

  h = handle_find(cluster, key);
  if (h == NULL) {
    h = handle_new(cluster, key, addr, (int)type, (int)port, (int)backlog);
    if (h == NULL) {
      reply_errno(w, key, seq, UV_ENOMEM);
      return;
    }
    r = handle_open(h);
    if (r != 0) {
      handle_discard(h);
      reply_errno(w, key, seq, r);
      return;
    }
    h->next = cluster->priv->handles;
    cluster->priv->handles = h;
  }
  m = herd__cluster_member(h, w);
  if (m != NULL && m->leaving) {
    /* It closed this server and listens again before answering for the
     * connection in flight: it stays a member. */
    m->leaving = 0;
  } else if (m != NULL) {
    reply_errno(w, key, seq, UV_EADDRINUSE);
    return;
  } else if (herd__cluster_member_add(h, w) != 0) {
    reply_errno(w, key, seq, UV_ENOMEM);
    return;
  }

  herd_json_quote(qkey, sizeof(qkey), key, strlen(key));
  if (h->kind == HERD_SCHED_RR) {
    char host[64] = "0.0.0.0";
    int family = AF_INET, bport = h->bound_port;
    herd__cluster_sockname(h->fd, host, sizeof(host), &family, &bport);
    snprintf(fields, sizeof(fields),
             "\"errno\":null,\"key\":%s,\"ack\":%lld,\"data\":null,"
             "\"sockname\":{\"address\":\"%s\",\"family\":\"%s\","
             "\"port\":%d}",
             qkey, (long long)seq, host, family == AF_INET6 ? "IPv6" : "IPv4",
             bport);
    herd__cluster_send(w, fields, -1);
    herd__rr_add(h, w);
  } else {
    snprintf(fields, sizeof(fields),
             "\"errno\":null,\"key\":%s,\"ack\":%lld,\"data\":null", qkey,
             (long long)seq);
    r = herd__shared_add(h, w);
    if (r < 0) {
      /* The slot socket could not be opened: refuse like a failed bind. */
      herd__shared_remove(h, w);
      reply_errno(w, key, seq, r);
      return;
    }
    herd__cluster_send(w, fields, r);
  }
}

static void on_listening(herd_worker_t* w, const char* json, size_t len) {
  herd_cluster_t* cluster = w->cluster;
  herd_cluster_address_t info;
  char address[256], raw[32];
  int64_t port = 0;

  memset(&info, 0, sizeof(info));
  herd_json_get_int(json, len, "port", &port);
  info.port = (int)port;
  info.address_type = 4;
  if (json_raw(json, len, "addressType", raw, sizeof(raw)) == 0)
    info.address_type = atoi(raw);
  if (herd_json_get_string(json, len, "address", address, sizeof(address)) >= 0)
    info.address = address;
  w->state = HERD_WORKER_LISTENING;
  if (cluster->cb.listening != NULL)
    cluster->cb.listening(cluster, w, &info);
}

static void on_close(herd_worker_t* w, const char* json, size_t len) {
  herd__cluster_handle_t** hp = &w->cluster->priv->handles;
  char key[400];
  if (herd_json_get_string(json, len, "key", key, sizeof(key)) < 0)
    return;
  for (; *hp != NULL; hp = &(*hp)->next) {
    herd__cluster_handle_t* h = *hp;
    int gone;
    if (strcmp(h->key, key) != 0)
      continue;
    gone = h->kind == HERD_SCHED_RR ? herd__rr_remove(h, w, 1)
                                    : herd__shared_remove(h, w);
    if (gone) {
      *hp = h->next;
      herd__cluster_handle_free(h);
    }
    return;
  }
}

static void on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  herd_worker_t* w = ipc->data;
  herd_cluster_t* cluster = w->cluster;
  char cmd[16], act[32];
  int64_t ack, seq;

  (void)handle;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) < 0 ||
      strcmp(cmd, "NODE_CLUSTER") != 0)
    return;
  if (herd_json_get_int(json, len, "ack", &ack) == 0) {
    /* The answer to a newconn. */
    const char* v;
    size_t vlen;
    int accepted = herd_json_get(json, len, "accepted", &v, &vlen) == 0 &&
                   vlen == 4 && memcmp(v, "true", 4) == 0;
    for (herd__cluster_handle_t** hp = &cluster->priv->handles; *hp != NULL;
         hp = &(*hp)->next) {
      herd__cluster_handle_t* h = *hp;
      herd__cluster_member_t* m;
      if (h->kind != HERD_SCHED_RR)
        continue;
      m = herd__cluster_member(h, w);
      if (m != NULL && m->fd >= 0 && m->seq == ack) {
        if (herd__rr_ack(h, w, ack, accepted)) {
          *hp = h->next;
          herd__cluster_handle_free(h);
        }
        return;
      }
    }
    return;
  }
  if (herd_json_get_string(json, len, "act", act, sizeof(act)) < 0)
    return;
  if (strcmp(act, "online") == 0) {
    w->state = HERD_WORKER_ONLINE;
    if (cluster->cb.online != NULL)
      cluster->cb.online(cluster, w);
  } else if (strcmp(act, "queryServer") == 0) {
    query_server(w, json, len);
  } else if (strcmp(act, "listening") == 0) {
    on_listening(w, json, len);
  } else if (strcmp(act, "close") == 0) {
    on_close(w, json, len);
  } else if (strcmp(act, "exitedAfterDisconnect") == 0) {
    char fields[64];
    w->exited_after_disconnect = 1;
    if (herd_json_get_int(json, len, "seq", &seq) == 0) {
      snprintf(fields, sizeof(fields), "\"ack\":%lld", (long long)seq);
      herd__cluster_send(w, fields, -1);
    }
  }
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

int herd_worker_disconnect(herd_worker_t* worker) {
  int64_t r;
  worker->exited_after_disconnect = 1;
  r = herd__cluster_send(worker, "\"act\":\"disconnect\"", -1);
  /* As Node does: the worker no longer gets connections nor counts as a
   * member of the table. */
  remove_from_handles(worker, 1);
  remove_from_table(worker);
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
      remove_from_table(w);
  uv_idle_start(&p->idle, idle_cb);
  return 0;
}

static void idle_closed(uv_handle_t* handle) {
  herd_cluster_t* cluster = handle->data;
  handle_closed(cluster);
}

/* Runs the disconnect and close callbacks once what they wait for is gone.
 * The disconnect callback runs from the loop (maybe_finish can be reached
 * from herd_cluster_disconnect() itself when no worker is left). */
static void maybe_finish(herd_cluster_t* cluster) {
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
  maybe_finish(cluster);
}
