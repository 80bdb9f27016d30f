/* The worker side of cluster: the channel to the primary, the NODE_CLUSTER
 * messages it sends and answers (online, newconn, disconnect, the replies to
 * queryServer), and the guarantee that a worker does not outlive its
 * primary. One worker per process, as in Node.
 *
 * The primary's answers are matched against what this worker asked: a
 * reply ({"ack":N}) counts only when N is the seq of a queryServer still
 * unanswered or of the exitedAfterDisconnect sent; anything else is
 * ignored, and an fd that came with it is closed by the channel. */
#include "internal.h"

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

/* A queryServer sent and not yet answered. `server` is NULL until
 * herd__worker_server_add() names it, and again once that server closed
 * (`orphan`): the primary must then be told to forget the key it answers
 * with, or it would keep handing this worker connections. */
typedef struct query_s {
  struct query_s* next;
  int64_t seq;
  herd_server_t* server;
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
  int64_t disconnect_seq; /* exitedAfterDisconnect waiting for its ack */
  herd_server_t* servers;
  index_t* indexes;
  query_t* queries;
} W = {.disconnect_seq = -1};

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

int64_t herd__worker_send(const char* fields, size_t len) {
  static const char query_act[] = "\"act\":\"queryServer\"";
  char stack[1024];
  char* buf = stack;
  size_t need = len + 64;
  int64_t seq = W.seq;
  query_t* q = NULL;
  int n, r;

  if (!W.connected)
    return HERD_ECHANNELCLOSED;
  /* A queryServer is remembered from the moment it is sent, so its answer
   * can be told from a made-up one; the record is made first so that
   * remembering cannot fail afterwards. */
  if (len >= sizeof(query_act) - 1 &&
      memcmp(fields, query_act, sizeof(query_act) - 1) == 0) {
    q = herd__calloc(1, sizeof(*q));
    if (q == NULL)
      return UV_ENOMEM;
  }
  if (need > sizeof(stack)) {
    buf = herd__malloc(need);
    if (buf == NULL) {
      herd__free(q);
      return UV_ENOMEM;
    }
  }
  n = snprintf(buf, need, "{\"cmd\":\"NODE_CLUSTER\",%.*s%s\"seq\":%lld}",
               (int)len, fields, len ? "," : "", (long long)seq);
  r = herd_ipc_send(&W.ipc, buf, (size_t)n);
  if (buf != stack)
    herd__free(buf);
  if (r < 0) {
    herd__free(q);
    return r;
  }
  if (q != NULL) {
    q->seq = seq;
    q->next = W.queries;
    W.queries = q;
  }
  W.seq++;
  return seq;
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

void herd__worker_server_add(herd_server_t* server) {
  herd_server_t** sp = &W.servers;
  query_t* q = find_query(herd__server_query_seq(server));
  if (q != NULL && q->server == NULL && !q->orphan)
    q->server = server;
  while (*sp != NULL)
    sp = (herd_server_t**)herd__server_next_ref(*sp);
  *sp = server;
}

void herd__worker_server_remove(herd_server_t* server) {
  herd_server_t** sp = &W.servers;
  while (*sp != NULL && *sp != server)
    sp = (herd_server_t**)herd__server_next_ref(*sp);
  if (*sp == server)
    *sp = herd__server_next(server);
}

void herd__worker_query_orphaned(int64_t seq) {
  query_t* q = find_query(seq);
  if (q != NULL) {
    q->server = NULL;
    q->orphan = 1;
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
    herd_server_t* server = q->server;
    int orphan = q->orphan;
    drop_query(q);
    if (server != NULL && herd__server_query_seq(server) == ack)
      herd__server_reply(server, json, len, handle);
    else if (orphan)
      forget_orphan(json, len);
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
  /* herd_server_close() takes each server out of the list. */
  while (W.servers != NULL)
    herd_server_close(W.servers, NULL);
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
  W.exited_after_disconnect = 1;
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
  W.exited_after_disconnect = 1;
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
  herd_server_t* s;

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
      for (s = W.servers; s != NULL; s = herd__server_next(s)) {
        const char* k = herd__server_key(s);
        if (k != NULL && strcmp(k, key) == 0) {
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
        herd__server_newconn(s, fd);
    }
  } else if (strcmp(act, "disconnect") == 0) {
    on_primary_disconnect();
  }
}

/* PR_SET_PDEATHSIG asks for SIGTERM when the primary dies. A primary that
 * died before the call leaves us with another parent: check for that. */
static void watch_primary(void) {
  const char* ppid = getenv("HERD_PRIMARY_PID");
  pid_t want = ppid != NULL ? (pid_t)atoi(ppid) : 0;
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (want > 0 && getppid() != want)
    kill(getpid(), SIGTERM);
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
  memset(&cbs, 0, sizeof(cbs));
  cbs.message = W.opts.message;
  cbs.disconnect = on_channel_closed;
  herd__ipc_set_internal_cb(&W.ipc, on_internal);
  herd_ipc_start(&W.ipc, &cbs);
  herd__worker_send("\"act\":\"online\"", 14);
  return 0;
}
