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

int64_t herd__cluster_send(herd_worker_t* worker, const char* fields, int fd,
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
    r = herd_ipc_send_fd(worker->child.channel, buf, (size_t)n, fd,
                         "net.Native", cb, (void*)(intptr_t)seq);
  else
    r = herd_ipc_send(worker->child.channel, buf, (size_t)n);
  if (buf != stack)
    herd__free(buf);
  if (r < 0)
    return r;
  p->seq++;
  return seq;
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

/* "address": a string (copied to out, returns 1) or null (returns 0);
 * -1 for anything else. */
static int json_address(const char* json, size_t len, char* out, size_t cap) {
  char raw[8];
  if (json_raw(json, len, "address", raw, sizeof(raw)) == 0 &&
      strcmp(raw, "null") == 0)
    return 0;
  return herd_json_get_string(json, len, "address", out, cap) < 0 ? -1 : 1;
}

static void reply_errno(herd_worker_t* w, const char* key, int64_t ack,
                        int err) {
  char fields[600], qkey[400];
  herd_json_quote(qkey, sizeof(qkey), key, strlen(key));
  snprintf(fields, sizeof(fields),
           "\"errno\":%d,\"key\":%s,\"ack\":%lld,\"data\":null", err, qkey,
           (long long)ack);
  herd__cluster_send(w, fields, -1, NULL);
}

/* A handle found or opened for a worker's queryServer that it could not
 * join goes again if nobody else holds it. */
static void drop_if_unused(herd__cluster_handle_t* h) {
  if (h->nmembers == 0 && !h->pinned)
    herd__cluster_handle_release(h);
}

static void query_server(herd_worker_t* w, const char* json, size_t len) {
  herd_cluster_t* cluster = w->cluster;
  herd__cluster_handle_t* h;
  herd__cluster_member_t* m;
  char address[256], atype[32], fdraw[32], key[400], qkey[420];
  char fields[1024];
  const char* addr = NULL;
  int64_t seq, port, index, backlog = 511, type;
  int r, fd = -1, mapped = 0;

  if (herd_json_get_int(json, len, "seq", &seq) != 0 ||
      herd_json_get_int(json, len, "port", &port) != 0 ||
      herd_json_get_int(json, len, "index", &index) != 0 || index < 0 ||
      index > INT32_MAX ||
      json_raw(json, len, "addressType", atype, sizeof(atype)) != 0)
    return; /* Not a queryServer Node or herd would send. */
  r = json_address(json, len, address, sizeof(address));
  if (r < 0)
    return;
  if (r > 0)
    addr = address;
  if (w->exited_after_disconnect)
    return; /* Node: a disconnecting worker gets no new server. */
  herd_json_get_int(json, len, "backlog", &backlog);
  if (backlog < 0 || backlog > INT32_MAX)
    backlog = 511;
  if (json_raw(json, len, "fd", fdraw, sizeof(fdraw)) != 0)
    strcpy(fdraw, "undefined");
  snprintf(key, sizeof(key), "%s:%lld:%s:%s:%lld", addr ? addr : "null",
           (long long)port, atype[0] == '"' ? "udp" : atype, fdraw,
           (long long)index);

  type = atoi(atype);
  /* With the caller's sockets adopted, every TCP listen() is served from
   * them (cluster_adopt.c), or refused. */
  if (atype[0] != '"' && cluster->priv->nadopted > 0) {
    char asked[300];
    if (strcmp(fdraw, "undefined") != 0)
      snprintf(asked, sizeof(asked), "{fd: %s}", fdraw);
    else
      snprintf(asked, sizeof(asked), "%s%s%s:%lld",
               addr != NULL && type == 6 ? "[" : "", addr ? addr : "",
               addr != NULL && type == 6 ? "]" : "", (long long)port);
    h = herd__cluster_adopted_for(cluster, addr, (int)port, (int)type, fdraw,
                                  &r);
    if (cluster->priv->map_cb != NULL)
      cluster->priv->map_cb(cluster, w, asked, h);
    if (h == NULL) {
      reply_errno(w, key, seq, r);
      return;
    }
    mapped = 1;
  }

  /* UDP, pipe paths and listen({fd}) are not shared by herd's primary. */
  if (!mapped &&
      (atype[0] == '"' || port < 0 || port > 65535 ||
       (type != 4 && type != 6) || strcmp(fdraw, "undefined") != 0)) {
    reply_errno(w, key, seq, UV_ENOTSUP);
    return;
  }

  if (!mapped)
    h = herd__cluster_handle_find(cluster, key);
  if (h == NULL) {
    h = herd__cluster_handle_new(cluster, key, addr, (int)type, (int)port,
                                 (int)backlog, (int)index);
    if (h == NULL) {
      reply_errno(w, key, seq, UV_ENOMEM);
      return;
    }
    r = herd__cluster_handle_open(h, w->slot);
    if (r != 0) {
      herd__cluster_handle_discard(h);
      reply_errno(w, key, seq, r);
      return;
    }
    h->next = cluster->priv->handles;
    cluster->priv->handles = h;
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
  /* A mapped listen() is answered under the handle's key: the worker files
   * its server under the answer's key, which later newconn and close
   * messages name. */
  if (mapped)
    snprintf(key, sizeof(key), "%s", h->key);
  herd_json_quote(qkey, sizeof(qkey), key, strlen(key));
  if (h->kind == HERD_SCHED_RR) {
    char host[64] = "0.0.0.0";
    int family = AF_INET, bport = h->bound_port;
    herd__cluster_sockname(h->fd, host, sizeof(host), &family, &bport);
    /* Node's worker takes an rr answer for a failed bind when its port is
     * not the one asked for (checkBindError): a mapped listen() is told
     * the port it asked for, and is served on the real one. */
    if (mapped && port > 0)
      bport = (int)port;
    snprintf(fields, sizeof(fields),
             "\"errno\":null,\"key\":%s,\"ack\":%lld,\"data\":null,"
             "\"sockname\":{\"address\":\"%s\",\"family\":\"%s\","
             "\"port\":%d}",
             qkey, (long long)seq, host, family == AF_INET6 ? "IPv6" : "IPv4",
             bport);
    herd__cluster_send(w, fields, -1, NULL);
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
  herd__cluster_send(w, fields, fd, NULL);
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
  char address[256], raw[32];
  int64_t port, index;
  int type, has_address, matched = 0;

  if (herd_json_get_int(json, len, "port", &port) != 0 ||
      herd_json_get_int(json, len, "index", &index) != 0 ||
      json_raw(json, len, "addressType", raw, sizeof(raw)) != 0)
    return;
  type = atoi(raw);
  has_address = json_address(json, len, address, sizeof(address));
  if (has_address < 0)
    return;
  for (h = cluster->priv->handles; h != NULL; h = h->next) {
    herd__cluster_member_t* m = herd__cluster_member(h, w);
    /* A mapped listen() names what the worker asked for, not the handle
     * (under rr even the port). */
    if (m == NULL || m->leaving ||
        (!m->mapped &&
         (h->address_type != type || h->index != index ||
          (port != h->port && port != h->bound_port) ||
          (h->address == NULL) != (has_address == 0) ||
          (h->address != NULL && strcmp(h->address, address) != 0))))
      continue;
    m->listening = 1;
    matched = 1;
    if (h->kind == HERD_SCHED_REUSEPORT)
      herd__reuseport_update(h);
  }
  if (!matched)
    return;
  memset(&info, 0, sizeof(info));
  info.port = (int)port;
  info.address_type = type;
  info.address = has_address ? address : NULL;
  w->state = HERD_WORKER_LISTENING;
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
    herd__cluster_send(w, fields, -1, NULL);
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
