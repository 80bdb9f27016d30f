/* The primary's side of the NODE_CLUSTER protocol: the messages it sends
 * (with Node's per-process seq) and its dispatch of the workers' messages
 * (online, queryServer, listening, close, exitedAfterDisconnect and the
 * answers to newconn).
 *
 * A worker's word is checked against what the primary itself sent or
 * knows, as nginx's master checks its channel: an answer counts only for
 * the newconn in flight to that worker, once its fd has reached it;
 * "listening" only for a server the worker was given; "close" only for one
 * it holds; "online" once. A message that matches nothing is ignored. */
#include "cluster-int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t herd__cluster_send(herd_worker_t* worker, const char* fields, int fd,
                           herd_ipc_send_cb cb) {
  return herd__cluster_send_typed(worker, fields, fd, "net.Native", cb);
}

int64_t herd__cluster_send_typed(herd_worker_t* worker, const char* fields,
                                 int fd, const char* type,
                                 herd_ipc_send_cb cb) {
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
    r = herd_ipc_send_fd(worker->child.channel, buf, (size_t)n, fd, type, cb,
                         (void*)(intptr_t)seq);
  else
    r = herd_ipc_send(worker->child.channel, buf, (size_t)n);
  if (buf != stack)
    herd__free(buf);
  if (r < 0)
    return r;
  p->seq++;
  return seq;
}

/* A queryServer or listening message: Node's fields, each also as
 * JavaScript prints it in the key (`${message.address}:${message.port}:...`:
 * "null" for null, "undefined" for a field left out). */
typedef struct {
  char address[256]; /* the string, when has_address */
  int has_address;
  char address_text[256];
  char port_text[24];
  char atype_text[16];
  char fd_text[24];
  int64_t index;
  int64_t port, atype, fd, flags;
  int port_int, atype_int, fd_int;
  int udp; /* 4 or 6: addressType "udp4" or "udp6" */
} query_msg_t;

/* Member `key` as JavaScript prints it: a string's text (*is_string set),
 * the raw text of a number, null, true or false, or "undefined" when it is
 * missing. -1 for an object, an array, or what does not fit. */
static int js_text(const char* json, size_t len, const char* key, char* out,
                   size_t cap, int* is_string) {
  const char* v;
  size_t vlen;
  *is_string = 0;
  if (herd_json_get(json, len, key, &v, &vlen) != 0) {
    snprintf(out, cap, "undefined");
    return 0;
  }
  if (v[0] == '"') {
    *is_string = 1;
    return herd_json_get_string(json, len, key, out, cap) < 0 ? -1 : 0;
  }
  if (v[0] == '{' || v[0] == '[' || vlen >= cap)
    return -1;
  memcpy(out, v, vlen);
  out[vlen] = '\0';
  return 0;
}

static int parse_query(const char* json, size_t len, query_msg_t* q) {
  int str;
  memset(q, 0, sizeof(*q));
  if (herd_json_get_int(json, len, "index", &q->index) != 0 || q->index < 0 ||
      q->index > INT32_MAX)
    return -1;
  if (js_text(json, len, "address", q->address_text, sizeof(q->address_text),
              &q->has_address) != 0 ||
      js_text(json, len, "port", q->port_text, sizeof(q->port_text), &str) !=
          0 ||
      js_text(json, len, "addressType", q->atype_text, sizeof(q->atype_text),
              &str) != 0)
    return -1;
  if (str && strcmp(q->atype_text, "udp4") == 0)
    q->udp = 4;
  else if (str && strcmp(q->atype_text, "udp6") == 0)
    q->udp = 6;
  if (js_text(json, len, "fd", q->fd_text, sizeof(q->fd_text), &str) != 0)
    return -1;
  if (q->has_address)
    memcpy(q->address, q->address_text, sizeof(q->address));
  q->port_int = herd_json_get_int(json, len, "port", &q->port) == 0;
  q->atype_int = herd_json_get_int(json, len, "addressType", &q->atype) == 0;
  q->fd_int = herd_json_get_int(json, len, "fd", &q->fd) == 0;
  if (herd_json_get_int(json, len, "flags", &q->flags) != 0)
    q->flags = 0;
  return 0;
}

static void query_key(const query_msg_t* q, const char* port_text, char* out,
                      size_t cap) {
  snprintf(out, cap, "%s:%s:%s:%s:%lld", q->address_text, port_text,
           q->atype_text, q->fd_text, (long long)q->index);
}

/* What the primary opens for a query, as Node's queryServer and its
 * handles decide: UDP (addressType "udp4"/"udp6"; from an fd > 0, else
 * bound to the address and port), an fd of the primary (a number >= 0),
 * a Unix socket path (port and addressType -1), or a TCP address. */
static int query_sock(const query_msg_t* q, herd__sock_t* sock) {
  memset(sock, 0, sizeof(*sock));
  sock->fd = -1;
  if (q->udp != 0) {
    sock->kind = HERD__SOCK_UDP;
    sock->udp6 = q->udp == 6;
    sock->reuseaddr = (q->flags & UV_UDP_REUSEADDR) != 0;
    sock->ipv6only = (q->flags & UV_UDP_IPV6ONLY) != 0;
    if (q->fd_int && q->fd > 0 && q->fd <= INT32_MAX) {
      sock->fd = (int)q->fd;
      return 0;
    }
    if (q->port_int && (q->port < 0 || q->port > 65535))
      return UV_EINVAL;
    sock->port = q->port_int ? (int)q->port : 0;
    sock->address = q->has_address ? q->address : NULL;
    return 0;
  }
  if (q->fd_int && q->fd >= 0) {
    if (q->fd > INT32_MAX)
      return UV_EINVAL;
    sock->kind = HERD__SOCK_FD;
    sock->fd = (int)q->fd;
    return 0;
  }
  if (q->port_int && q->port == -1 && q->atype_int && q->atype == -1) {
    if (!q->has_address || q->address[0] == '\0')
      return UV_EINVAL;
    sock->kind = HERD__SOCK_PIPE;
    sock->address = q->address;
    sock->port = -1;
    return 0;
  }
  if (!q->atype_int || (q->atype != 4 && q->atype != 6) || !q->port_int ||
      q->port < 0 || q->port > 65535)
    return UV_EINVAL;
  sock->kind = HERD__SOCK_TCP;
  sock->address = q->has_address ? q->address : NULL;
  sock->port = (int)q->port;
  sock->ipv6only = (q->flags & 1) != 0; /* UV_TCP_IPV6ONLY */
  return 0;
}

/* TCP follows the cluster's policy. UDP is always shared, as in Node.
 * Unix sockets and fds have no per-slot sockets: round-robin under rr,
 * shared otherwise. */
static herd_sched_policy_t sock_policy(herd_cluster_t* cluster,
                                       herd__sock_kind_t kind) {
  if (kind == HERD__SOCK_TCP)
    return cluster->policy;
  if (kind == HERD__SOCK_UDP || cluster->policy != HERD_SCHED_RR)
    return HERD_SCHED_SHARED;
  return HERD_SCHED_RR;
}

/* Node's primary binds a socket path relative to its working directory
 * when that is shorter (sun_path holds 107 bytes). */
static const char* short_path(const char* path, char* cwd, size_t cap) {
  size_t n;
  if (getcwd(cwd, cap) == NULL)
    return path;
  n = strlen(cwd);
  if (n > 1 && strncmp(path, cwd, n) == 0 && path[n] == '/' && path[n + 1])
    return path + n + 1;
  return path;
}

/* An answer the worker waits for could not be queued (out of memory): it
 * would wait for ever. Its error event says why, and it is let go (a
 * disconnect, SIGKILL after kill_timeout). Returns 1 then. */
static int answer_failed(herd_worker_t* w, int64_t r) {
  if (r >= 0 || r == HERD_ECHANNELCLOSED)
    return 0;
  herd__worker_emit_error(w, (int)r);
  herd__cluster_stop_worker(w);
  return 1;
}

static void reply_errno(herd_worker_t* w, const char* key, int64_t ack,
                        int err) {
  char fields[600], qkey[400];
  herd_json_quote(qkey, sizeof(qkey), key, strlen(key));
  snprintf(fields, sizeof(fields),
           "\"errno\":%d,\"key\":%s,\"ack\":%lld,\"data\":null", err, qkey,
           (long long)ack);
  answer_failed(w, herd__cluster_send(w, fields, -1, NULL));
}

/* A handle found or opened for a worker's queryServer that it could not
 * join goes again if nobody else holds it. */
static void drop_if_unused(herd__cluster_handle_t* h) {
  if (h->nmembers == 0 && !h->pinned)
    herd__cluster_handle_release(h);
}

/* Opens the handle a query asks for. */
static herd__cluster_handle_t* open_handle(herd_worker_t* w,
                                           const query_msg_t* q,
                                           const herd__sock_t* sock,
                                           const char* key, int64_t backlog,
                                           int* err) {
  herd_cluster_t* cluster = w->cluster;
  herd__cluster_handle_t* h;
  const char* address = sock->address;
  char cwd[4096];
  int r;

  if (sock->kind == HERD__SOCK_PIPE)
    address = short_path(address, cwd, sizeof(cwd));
  h = herd__cluster_handle_new(cluster, key, address,
                               q->udp         ? q->udp
                               : q->atype_int ? (int)q->atype
                                              : 0,
                               sock->port, (int)backlog, (int)q->index);
  if (h != NULL) {
    h->port_text = herd__strdup(q->port_text);
    if (h->port_text == NULL) {
      herd__cluster_handle_discard(h);
      h = NULL;
    }
  }
  if (h == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  h->kind = sock_policy(cluster, sock->kind);
  h->sock_kind = sock->kind;
  h->sock_fd = sock->fd;
  h->udp6 = sock->udp6;
  h->ipv6only = sock->ipv6only;
  h->reuseaddr = sock->reuseaddr;
  r = herd__cluster_handle_open(h, w->slot);
  if (r != 0) {
    herd__cluster_handle_discard(h);
    *err = r;
    return NULL;
  }
  h->next = cluster->priv->handles;
  cluster->priv->handles = h;
  return h;
}

static void query_server(herd_worker_t* w, const char* json, size_t len) {
  herd_cluster_t* cluster = w->cluster;
  herd__cluster_handle_t* h;
  herd__cluster_member_t* m;
  herd__sock_t sock;
  query_msg_t q;
  char key[400], qkey[420];
  char fields[1024];
  int64_t seq, backlog = 511;
  int r, fd = -1, mapped = 0;

  if (herd_json_get_int(json, len, "seq", &seq) != 0 ||
      parse_query(json, len, &q) != 0)
    return; /* Not a queryServer Node or herd would send. */
  if (w->exited_after_disconnect)
    return; /* Node: a disconnecting worker gets no new server. */
  herd_json_get_int(json, len, "backlog", &backlog);
  if (backlog < 0 || backlog > INT32_MAX)
    backlog = 511;
  query_key(&q, q.port_text, key, sizeof(key));

  /* With the caller's sockets adopted, every TCP listen() (and
   * listen({fd})) is served from them (cluster_adopt.c), or refused; so
   * is every one when the caller said where to listen but gave no TCP
   * address (adopt_only). */
  if (q.udp == 0 &&
      (cluster->priv->nadopted > 0 || cluster->priv->adopt_only)) {
    int type = q.atype_int ? (int)q.atype : 0;
    char asked[320];
    if (strcmp(q.fd_text, "undefined") != 0 && strcmp(q.fd_text, "null") != 0)
      snprintf(asked, sizeof(asked), "{fd: %s}", q.fd_text);
    else
      snprintf(asked, sizeof(asked), "%s%s%s:%s",
               q.has_address && type == 6 ? "[" : "",
               q.has_address ? q.address : "",
               q.has_address && type == 6 ? "]" : "", q.port_text);
    h = herd__cluster_adopted_for(cluster, q.has_address ? q.address : NULL,
                                  q.port_int ? (int)q.port : -1, type,
                                  q.fd_text, &r);
    if (cluster->priv->map_cb != NULL)
      cluster->priv->map_cb(cluster, w, asked, h);
    if (h == NULL) {
      reply_errno(w, key, seq, r);
      return;
    }
    mapped = 1;
  }

  if (!mapped)
    h = herd__cluster_handle_find(cluster, key);
  if (h == NULL) {
    r = query_sock(&q, &sock);
    if (r == 0)
      h = open_handle(w, &q, &sock, key, backlog, &r);
    if (h == NULL) {
      reply_errno(w, key, seq, r);
      return;
    }
  }
  m = herd__cluster_member(h, w);
  if (m != NULL && m->leaving) {
    /* It closed this server and listens again before answering for the
     * connection in flight (or, under reuseport, before the primary heard
     * that it closed its socket): it stays a member. */
    m->leaving = 0;
  } else if (m != NULL) {
    reply_errno(w, key, seq, UV_EADDRINUSE);
    return;
  } else if (herd__cluster_member_add(h, w) != 0) {
    reply_errno(w, key, seq, UV_ENOMEM);
    drop_if_unused(h);
    return;
  }
  m = herd__cluster_member(h, w);
  m->listening = 0;
  m->slot = w->slot;
  m->mapped = mapped;

  /* A mapped listen() is answered under the handle's key: the worker files
   * its server under the answer's key, which later newconn and close
   * messages name. */
  if (mapped)
    snprintf(key, sizeof(key), "%s", h->key);
  herd_json_quote(qkey, sizeof(qkey), key, strlen(key));
  if (h->kind == HERD_SCHED_RR) {
    char host[64];
    int family, bport;
    /* Node's round-robin handle gives TCP servers their sockname; a Unix
     * socket has none. Node's worker takes an answer whose port is not the
     * one asked for as a failed bind (checkBindError): a mapped listen()
     * is told the port it asked for, and is served on the real one. */
    if (herd__cluster_sockname(h->fd, host, sizeof(host), &family, &bport) ==
        0) {
      if (mapped && q.port_int && q.port > 0 && q.port <= 65535)
        bport = (int)q.port;
      snprintf(fields, sizeof(fields),
               "\"errno\":null,\"key\":%s,\"ack\":%lld,\"data\":null,"
               "\"sockname\":{\"address\":\"%s\",\"family\":\"%s\","
               "\"port\":%d}",
               qkey, (long long)seq, host, family == AF_INET6 ? "IPv6" : "IPv4",
               bport);
    } else {
      snprintf(fields, sizeof(fields),
               "\"errno\":null,\"key\":%s,\"ack\":%lld,\"data\":null", qkey,
               (long long)seq);
    }
    if (answer_failed(w, herd__cluster_send(w, fields, -1, NULL)))
      return; /* it left the handle */
    herd__dispatch_join(h, w);
    return;
  }
  if (h->kind == HERD_SCHED_REUSEPORT) {
    fd = herd__reuseport_socket(h, m);
    if (fd < 0) {
      /* The slot socket could not be opened: refuse like a failed bind. */
      if (herd__cluster_member_leave(h, w, HERD__LEAVE_GONE))
        herd__cluster_handle_release(h);
      reply_errno(w, key, seq, fd);
      return;
    }
    m->holds_socket = 1;
  } else {
    fd = h->fd;
  }
  snprintf(fields, sizeof(fields),
           "\"errno\":null,\"key\":%s,\"ack\":%lld,\"data\":null", qkey,
           (long long)seq);
  r = (int)herd__cluster_send_typed(
      w, fields, fd,
      h->sock_kind == HERD__SOCK_UDP ? "dgram.Native" : "net.Native", NULL);
  if (r < 0 && r != HERD_ECHANNELCLOSED) {
    m->holds_socket = 0; /* it never got it */
    answer_failed(w, r);
    return;
  }
  if (h->kind == HERD_SCHED_REUSEPORT) {
    /* One more worker to hand drained connections to. */
    herd__dispatch_join(h, w);
    herd__reuseport_update(h);
  }
}

/* {"act":"listening"} repeats the worker's queryServer with the actual
 * port: it counts for the handle it names if the worker is a member. */
static void on_listening(herd_worker_t* w, const char* json, size_t len) {
  herd_cluster_t* cluster = w->cluster;
  herd_cluster_address_t info;
  herd__cluster_handle_t* h;
  query_msg_t q;
  char key[400], port_text[24];
  int matched = 0;

  if (parse_query(json, len, &q) != 0)
    return;
  for (h = cluster->priv->handles; h != NULL; h = h->next) {
    herd__cluster_member_t* m = herd__cluster_member(h, w);
    if (m == NULL || m->leaving)
      continue;
    /* The key it asked for had the port it asked for. A mapped listen()
     * names what the worker asked for, not the handle (under rr even the
     * port): its membership is enough. */
    if (h->port_text != NULL)
      snprintf(port_text, sizeof(port_text), "%s", h->port_text);
    else
      snprintf(port_text, sizeof(port_text), "%d", h->port);
    query_key(&q, port_text, key, sizeof(key));
    if (!m->mapped && (strcmp(key, h->key) != 0 ||
                       (strcmp(q.port_text, port_text) != 0 &&
                        !(q.port_int && q.port == h->bound_port))))
      continue;
    m->listening = 1;
    matched = 1;
    if (h->kind == HERD_SCHED_REUSEPORT)
      herd__reuseport_update(h);
  }
  /* A worker the primary let go may still say it listens (its listen
   * raced with the disconnect): Node reports that too. It counts for
   * nothing: the worker gets no connection and steers nothing. */
  if (!matched && !w->exited_after_disconnect)
    return;
  memset(&info, 0, sizeof(info));
  info.port = q.port_int && q.port >= 0 && q.port <= 65535 ? (int)q.port : -1;
  info.address_type = q.udp ? q.udp : q.atype_int ? (int)q.atype : 0;
  info.address = q.has_address ? q.address : NULL;
  info.udp = q.udp != 0;
  info.fd = q.fd_int && q.fd >= 0 && q.fd <= INT32_MAX ? (int)q.fd : -1;
  w->state = HERD_WORKER_LISTENING;
  if (w->priv->cb.listening != NULL)
    w->priv->cb.listening(w, &info);
  if (cluster->cb.listening != NULL)
    cluster->cb.listening(cluster, w, &info);
}

static void on_close(herd_worker_t* w, const char* json, size_t len) {
  herd__cluster_handle_t* h;
  char key[400];
  if (herd_json_get_string(json, len, "key", key, sizeof(key)) < 0)
    return;
  h = herd__cluster_handle_find(w->cluster, key);
  if (h != NULL && herd__cluster_member_leave(h, w, HERD__LEAVE_CLOSED))
    herd__cluster_handle_release(h);
}

/* The answer to a newconn: it counts for the connection in flight to this
 * worker with that seq, once the fd reached the worker. */
static void on_ack(herd_worker_t* w, int64_t ack, const char* json,
                   size_t len) {
  herd__cluster_handle_t* h;
  const char* v;
  size_t vlen;
  int accepted = herd_json_get(json, len, "accepted", &v, &vlen) == 0 &&
                 vlen == 4 && memcmp(v, "true", 4) == 0;
  for (h = w->cluster->priv->handles; h != NULL; h = h->next) {
    herd__cluster_member_t* m = herd__cluster_member(h, w);
    if (m == NULL || m->fd < 0 || m->seq != ack)
      continue;
    if (m->delivered && herd__dispatch_ack(h, m, accepted))
      herd__cluster_handle_release(h);
    return;
  }
}

static void dispatch(herd_worker_t* w, const char* json, size_t len) {
  herd_cluster_t* cluster = w->cluster;
  char cmd[16], act[32];
  int64_t ack, seq;

  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) < 0 ||
      strcmp(cmd, "NODE_CLUSTER") != 0)
    return;
  if (herd_json_get_int(json, len, "ack", &ack) == 0) {
    on_ack(w, ack, json, len);
    return;
  }
  if (herd_json_get_string(json, len, "act", act, sizeof(act)) < 0)
    return;
  if (strcmp(act, "online") == 0) {
    if (w->state != HERD_WORKER_NONE)
      return; /* once */
    w->state = HERD_WORKER_ONLINE;
    if (w->priv->cb.online != NULL)
      w->priv->cb.online(w);
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
    if (herd_json_get_int(json, len, "seq", &seq) != 0)
      return;
    w->exited_after_disconnect = 1;
    snprintf(fields, sizeof(fields), "\"ack\":%lld", (long long)seq);
    answer_failed(w, herd__cluster_send(w, fields, -1, NULL));
  }
}

void herd__cluster_on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                               herd_handle_t* handle) {
  herd_worker_t* w = ipc->data;
  (void)handle; /* a worker sends the primary no fds: closed by the IPC */
  if (w->cluster->priv->closing >= 2)
    return;
  /* A worker forked from the idle phase can be heard from in the same loop
   * iteration: its fork event goes first all the same. */
  herd__cluster_fork_event(w);
  dispatch(w, json, len);
  if (w->cluster->priv->replacing > 0)
    herd__cluster_replace_check(w->cluster);
}
