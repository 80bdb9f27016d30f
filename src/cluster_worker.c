/* The worker side of cluster: the channel to the primary, the NODE_CLUSTER
 * messages it sends and answers (online, newconn, disconnect, the replies to
 * queryServer), and the guarantee that a worker does not outlive its
 * primary. One worker per process, as in Node.
 *
 * The primary's answers are matched against what this worker asked: a
 * reply ({"ack":N}) counts only when N is the seq of a queryServer still
 * unanswered or of the exitedAfterDisconnect sent; anything else is
 * ignored, and an fd that came with it is closed by the channel. */
#include "cluster-int.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

typedef struct index_s {
  struct index_s* next;
  int open;       /* servers listening with this address:port:type:fd */
  int next_index; /* Node's indexSet.nextIndex */
  char key[];
} index_t;

/* A queryServer sent and not yet answered. `listener` is NULL once its
 * server closed (`orphan`): the primary must then be told to forget the key
 * it answers with, or it would keep handing this worker connections. */
typedef struct query_s {
  struct query_s* next;
  int64_t seq;
  herd__listener_t* listener;
  int orphan;
} query_t;

static struct {
  int id;    /* NODE_UNIQUE_ID, once setup ran */
  int setup; /* herd_cluster_worker_setup() succeeded */
  uv_loop_t* loop;
  herd_ipc_t ipc;
  int connected;
  int64_t seq;
  herd_cluster_worker_options_t opts;
  int exited_after_disconnect;
  int primary_initiated;
  int closing_channel;
  int64_t disconnect_seq;      /* exitedAfterDisconnect waiting for its ack */
  herd__listener_t* listeners; /* servers and sockets from the primary */
  index_t* indexes;
  query_t* queries;
  int destroying; /* herd_worker_kill() on the worker's own worker */
} W = {.disconnect_seq = -1};

/* Node's cluster.worker: this process's own worker, whose cluster is NULL
 * and whose channel is the one to the primary. */
static herd_worker_t self;
static struct herd_worker_private_s self_priv;

herd_worker_t* herd_cluster_worker_self(void) {
  return W.setup ? &self : NULL;
}

static void set_exited_after_disconnect(void) {
  W.exited_after_disconnect = 1;
  self.exited_after_disconnect = 1;
}

int herd_cluster_is_worker(void) {
  return W.id > 0 || getenv("NODE_UNIQUE_ID") != NULL;
}

int herd_cluster_worker_id(void) {
  if (W.id > 0)
    return W.id;
  return herd_cluster_is_worker() ? atoi(getenv("NODE_UNIQUE_ID")) : 0;
}

herd_ipc_t* herd_cluster_worker_channel(void) {
  return W.connected ? &W.ipc : NULL;
}

int herd__worker_connected(void) {
  return W.connected;
}

int herd__worker_orphan(void) {
  return W.setup && !W.connected;
}

int64_t herd__worker_send(const char* fields, size_t len) {
  char stack[1024];
  char* buf = stack;
  size_t need = len + 64;
  int64_t seq = W.seq;
  int n, r;

  if (!W.connected)
    return HERD_ECHANNELCLOSED;
  if (need > sizeof(stack)) {
    buf = herd__malloc(need);
    if (buf == NULL)
      return UV_ENOMEM;
  }
  n = snprintf(buf, need, "{\"cmd\":\"NODE_CLUSTER\",%.*s%s\"seq\":%lld}",
               (int)len, fields, len ? "," : "", (long long)seq);
  r = herd_ipc_send(&W.ipc, buf, (size_t)n);
  if (buf != stack)
    herd__free(buf);
  if (r < 0)
    return r;
  W.seq++;
  return seq;
}

int herd_cluster_worker_send(const char* json, size_t len) {
  if (!W.setup)
    return HERD_ENOTWORKER;
  if (!W.connected)
    return HERD_ECHANNELCLOSED;
  return herd_ipc_send(&W.ipc, json, len);
}

/* Node's indexes map: servers listening on the same address:port:type:fd in
 * one worker get index 0, 1, ...; the count restarts once all are closed, so
 * a server that closes and listens again asks for the same key. delta +1
 * returns the new server's index; -1 forgets one. */
int herd__worker_index(const char* key, int delta) {
  index_t** ip;
  index_t* e;
  for (ip = &W.indexes; *ip != NULL; ip = &(*ip)->next)
    if (strcmp((*ip)->key, key) == 0)
      break;
  e = *ip;
  if (delta > 0) {
    if (e == NULL) {
      e = herd__calloc(1, sizeof(*e) + strlen(key) + 1);
      if (e == NULL)
        return UV_ENOMEM;
      strcpy(e->key, key);
      e->next = W.indexes;
      W.indexes = e;
    }
    e->open++;
    return e->next_index++;
  }
  if (e != NULL && --e->open <= 0) {
    *ip = e->next;
    herd__free(e);
  }
  return 0;
}

static query_t* find_query(int64_t seq) {
  for (query_t* q = W.queries; q != NULL; q = q->next)
    if (q->seq == seq)
      return q;
  return NULL;
}

static void drop_query(query_t* q) {
  query_t** qp = &W.queries;
  while (*qp != q)
    qp = &(*qp)->next;
  *qp = q->next;
  herd__free(q);
}

/* Node's queryServer and listening fields of `l`, with `port` (JSON). */
static int listener_fields(const herd__listener_t* l, const char* act,
                           const char* port, char* out, size_t cap) {
  int n = snprintf(out, cap,
                   "\"act\":\"%s\",\"index\":%d,\"data\":null,\"address\":%s",
                   act, l->index, l->address[0] ? l->address : "null");
  if (port[0])
    n += snprintf(out + n, cap - (size_t)n, ",\"port\":%s", port);
  if (l->address_type[0])
    n += snprintf(out + n, cap - (size_t)n, ",\"addressType\":%s",
                  l->address_type);
  if (l->fd[0])
    n += snprintf(out + n, cap - (size_t)n, ",\"fd\":%s", l->fd);
  if (l->flags[0])
    n += snprintf(out + n, cap - (size_t)n, ",\"flags\":%s", l->flags);
  if (l->backlog >= 0)
    n += snprintf(out + n, cap - (size_t)n, ",\"backlog\":%d", l->backlog);
  return n < (int)cap ? n : -1;
}

/* Node's indexesKey: address, port, addressType and fd joined by ':'. */
static void listener_index_key(const herd__listener_t* l, char* out,
                               size_t cap) {
  snprintf(out, cap, "%s:%s:%s:%s", l->address, l->port, l->address_type,
           l->fd);
}

int herd__worker_query(herd__listener_t* l) {
  char fields[512], index_key[400];
  query_t* q;
  int64_t seq;
  int n;

  if (!W.connected)
    return HERD_ECHANNELCLOSED;
  listener_index_key(l, index_key, sizeof(index_key));
  /* The record is made first so that remembering the query cannot fail
   * once it is sent: its answer must be told from a made-up one. */
  q = herd__calloc(1, sizeof(*q));
  if (q == NULL)
    return UV_ENOMEM;
  l->index = herd__worker_index(index_key, 1);
  if (l->index < 0) {
    herd__free(q);
    return l->index;
  }
  n = listener_fields(l, "queryServer", l->port, fields, sizeof(fields));
  seq = n < 0 ? UV_EINVAL : herd__worker_send(fields, (size_t)n);
  if (seq < 0) {
    herd__worker_index(index_key, -1);
    herd__free(q);
    return (int)seq;
  }
  q->seq = seq;
  q->listener = l;
  q->next = W.queries;
  W.queries = q;
  l->query_seq = seq;
  l->next = W.listeners;
  W.listeners = l;
  return 0;
}

void herd__worker_listening(herd__listener_t* l, const char* port) {
  char fields[512];
  int n = listener_fields(l, "listening", port, fields, sizeof(fields));
  self.state = HERD_WORKER_LISTENING; /* as Node's child.js sets it */
  if (n > 0)
    herd__worker_send(fields, (size_t)n);
}

void herd__worker_unlisten(herd__listener_t* l) {
  herd__listener_t** lp = &W.listeners;
  char index_key[400], fields[480], qkey[420];
  while (*lp != NULL && *lp != l)
    lp = &(*lp)->next;
  if (*lp != l)
    return; /* not registered: bound by itself, or already out */
  *lp = l->next;
  l->next = NULL;
  listener_index_key(l, index_key, sizeof(index_key));
  herd__worker_index(index_key, -1);
  if (l->query_seq >= 0) {
    query_t* q = find_query(l->query_seq);
    if (q != NULL) {
      q->listener = NULL;
      q->orphan = 1;
    }
    l->query_seq = -1;
  }
  if (l->key != NULL) {
    /* Node's worker tells the primary for rr and shared handles alike. */
    herd_json_quote(qkey, sizeof(qkey), l->key, strlen(l->key));
    snprintf(fields, sizeof(fields), "\"act\":\"close\",\"key\":%s", qkey);
    herd__worker_send(fields, strlen(fields));
  }
}

/* The answer to a query whose server closed meanwhile: tell the primary to
 * forget the key it gave, as the closed server would have. */
static void forget_orphan(const char* json, size_t len) {
  static const char pre[] = "\"act\":\"close\",\"key\":";
  char stack[512];
  char* fields = stack;
  const char* key;
  size_t key_len;
  if (herd_json_get(json, len, "key", &key, &key_len) != 0 || key[0] != '"')
    return; /* no key: nothing was registered */
  if (sizeof(pre) + key_len > sizeof(stack)) {
    fields = herd__malloc(sizeof(pre) + key_len);
    if (fields == NULL)
      return;
  }
  memcpy(fields, pre, sizeof(pre) - 1);
  memcpy(fields + sizeof(pre) - 1, key, key_len);
  herd__worker_send(fields, sizeof(pre) - 1 + key_len);
  if (fields != stack)
    herd__free(fields);
}

/* A reply from the primary ({"ack":N}). */
static void on_reply(int64_t ack, const char* json, size_t len,
                     herd_handle_t* handle) {
  query_t* q = find_query(ack);
  if (q != NULL) {
    herd__listener_t* l = q->listener;
    int orphan = q->orphan;
    drop_query(q);
    if (l != NULL && l->query_seq == ack) {
      l->query_seq = -1;
      l->reply(l, json, len, handle);
    } else if (orphan) {
      forget_orphan(json, len);
    }
    return;
  }
  if (W.disconnect_seq >= 0 && ack == W.disconnect_seq) {
    W.disconnect_seq = -1;
    W.closing_channel = 1;
    herd_ipc_disconnect(&W.ipc);
  }
  /* Anything else answers nothing this worker asked: ignored. */
}

static void free_queries(void) {
  query_t* q;
  while ((q = W.queries) != NULL) {
    W.queries = q->next;
    herd__free(q);
  }
}

static void close_servers(void) {
  /* Closing takes each one out of the list. */
  while (W.listeners != NULL) {
    herd__listener_t* l = W.listeners;
    l->close(l);
    if (W.listeners == l)
      herd__worker_unlisten(l);
  }
}

static void on_channel_closed(herd_ipc_t* ipc) {
  index_t* e;
  (void)ipc;
  W.connected = 0;
  while ((e = W.indexes) != NULL) {
    W.indexes = e->next;
    herd__free(e);
  }
  free_queries();
  self_priv.channel_closed = 1;
  self.state = HERD_WORKER_DISCONNECTED;
  if (self_priv.cb.disconnect != NULL)
    self_priv.cb.disconnect(&self);
  if (W.destroying)
    exit(0); /* Node's worker.destroy() */
  if (!W.exited_after_disconnect) {
    /* The primary is gone: serve no more, as Node's workers do. */
    close_servers();
    if (W.opts.orphaned != NULL)
      W.opts.orphaned();
    else
      exit(0);
  }
}

static void on_primary_disconnect(void) {
  if (W.exited_after_disconnect)
    return;
  set_exited_after_disconnect();
  W.primary_initiated = 1;
  close_servers();
  if (W.opts.disconnect != NULL)
    W.opts.disconnect();
  else
    herd_cluster_worker_disconnect();
}

void herd_cluster_worker_disconnect(void) {
  if (!W.setup || !W.connected || W.closing_channel)
    return;
  close_servers();
  if (W.primary_initiated) {
    W.closing_channel = 1;
    herd_ipc_disconnect(&W.ipc);
    return;
  }
  if (W.disconnect_seq >= 0)
    return; /* Already waiting for the primary's ack. */
  set_exited_after_disconnect();
  W.disconnect_seq = herd__worker_send("\"act\":\"exitedAfterDisconnect\"", 29);
  if (W.disconnect_seq < 0) {
    W.closing_channel = 1;
    herd_ipc_disconnect(&W.ipc);
  }
}

static void on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  char cmd[16], act[32], key[400], fields[64];
  int64_t ack, seq;
  herd__listener_t* l = NULL;

  (void)ipc;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) < 0 ||
      strcmp(cmd, "NODE_CLUSTER") != 0)
    return;
  if (herd_json_get_int(json, len, "ack", &ack) == 0) {
    on_reply(ack, json, len, handle);
    return;
  }
  if (herd_json_get_string(json, len, "act", act, sizeof(act)) < 0)
    return;
  if (strcmp(act, "newconn") == 0) {
    int accepted = 0, fd = -1;
    if (herd_json_get_int(json, len, "seq", &seq) != 0)
      return;
    if (handle != NULL &&
        herd_json_get_string(json, len, "key", key, sizeof(key)) >= 0) {
      for (l = W.listeners; l != NULL; l = l->next) {
        if (l->key != NULL && l->newconn != NULL && strcmp(l->key, key) == 0) {
          accepted = 1;
          break;
        }
      }
    }
    /* Answer first, as Node does, so the primary can hand this worker the
     * next connection while this one is being served. */
    snprintf(fields, sizeof(fields), "\"ack\":%lld,\"accepted\":%s",
             (long long)seq, accepted ? "true" : "false");
    herd__worker_send(fields, strlen(fields));
    if (accepted) {
      fd = herd_handle_take(handle);
      if (fd >= 0)
        l->newconn(l, fd);
    }
  } else if (strcmp(act, "disconnect") == 0) {
    on_primary_disconnect();
  }
}

int herd__worker_self_disconnect(void) {
  if (!W.connected)
    return HERD_ECHANNELCLOSED;
  herd_cluster_worker_disconnect();
  return 0;
}

/* Node's worker.destroy() in a worker: tell the primary it goes on
 * purpose (exitedAfterDisconnect), close the channel once it answered,
 * then exit(0); at once when the channel is closed already. */
int herd__worker_self_kill(void) {
  set_exited_after_disconnect();
  if (!W.connected)
    exit(0);
  W.destroying = 1;
  if (W.disconnect_seq >= 0 || W.closing_channel)
    return 0; /* the channel is about to close */
  W.disconnect_seq = herd__worker_send("\"act\":\"exitedAfterDisconnect\"", 29);
  if (W.disconnect_seq < 0) {
    W.closing_channel = 1;
    herd_ipc_disconnect(&W.ipc);
  }
  return 0;
}

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  /* Node's cluster.worker listens on the process before the program can. */
  if (self_priv.cb.message != NULL)
    self_priv.cb.message(&self, json, len, handle);
  if (W.opts.message != NULL)
    W.opts.message(ipc, json, len, handle);
}

static void on_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  herd__worker_emit_error(&self, err);
}

/* PR_SET_PDEATHSIG asks for a signal when the primary dies: SIGTERM, or
 * the one the primary's settings.spawn.parent_death_signal set already. A
 * primary that died before the call leaves us with another parent: check
 * for that. */
static void watch_primary(void) {
  const char* ppid = getenv("HERD_PRIMARY_PID");
  pid_t want = ppid != NULL ? (pid_t)atoi(ppid) : 0;
  int sig = 0;
  if (prctl(PR_GET_PDEATHSIG, &sig) != 0 || sig == 0) {
    sig = SIGTERM;
    prctl(PR_SET_PDEATHSIG, sig);
  }
  if (want > 0 && getppid() != want)
    kill(getpid(), sig);
  unsetenv("HERD_PRIMARY_PID");
}

int herd_cluster_worker_setup(uv_loop_t* loop,
                              const herd_cluster_worker_options_t* options) {
  herd_ipc_callbacks_t cbs;
  const char* id;
  int r;

  if (W.setup)
    return UV_EALREADY;
  id = getenv("NODE_UNIQUE_ID");
  if (id == NULL || atoi(id) <= 0)
    return HERD_ENOTWORKER;
  r = herd_ipc_open_parent(loop, &W.ipc);
  if (r != 0)
    return r;
  W.id = atoi(id);
  unsetenv("NODE_UNIQUE_ID");
  watch_primary();
  W.loop = loop;
  W.setup = 1;
  W.connected = 1;
  if (options != NULL)
    W.opts = *options;
  memset(&self, 0, sizeof(self));
  memset(&self_priv, 0, sizeof(self_priv));
  self.id = W.id;
  self.slot = -1;
  self.pid = getpid();
  self.state = HERD_WORKER_ONLINE;
  self.child.loop = loop;
  self.child.pid = self.pid;
  self.child.channel = &W.ipc;
  self.priv = &self_priv;
  memset(&cbs, 0, sizeof(cbs));
  cbs.message = on_message;
  cbs.error = on_error;
  cbs.disconnect = on_channel_closed;
  herd__ipc_set_internal_cb(&W.ipc, on_internal);
  herd_ipc_start(&W.ipc, &cbs);
  herd__worker_send("\"act\":\"online\"", 14);
  return 0;
}
