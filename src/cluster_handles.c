/* The primary's registry of server handles: one per key
 * "<address>:<port>:<addressType>:<fd>:<index>" (Node's RoundRobinHandle or
 * SharedHandle, or a reuseport group), found, opened, joined and left by
 * workers, and freed. The scheduling of each kind lives in cluster_rr.c,
 * cluster_shared.c and cluster_reuseport.c. */
#include "cluster-int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

herd__cluster_member_t* herd__cluster_member(herd__cluster_handle_t* handle,
                                             herd_worker_t* worker) {
  for (int i = 0; i < handle->nmembers; i++)
    if (handle->members[i].worker == worker)
      return &handle->members[i];
  return NULL;
}

int herd__cluster_member_active(const herd__cluster_member_t* m) {
  return !m->leaving && herd_worker_is_connected(m->worker);
}

int herd__cluster_member_add(herd__cluster_handle_t* h, herd_worker_t* w) {
  herd__cluster_member_t* m;
  if (herd__cluster_member(h, w) != NULL)
    return UV_EALREADY;
  if (h->nmembers == h->cap_members) {
    int ncap = h->cap_members ? h->cap_members * 2 : 8;
    herd__cluster_member_t* nm =
        herd__realloc(h->members, (size_t)ncap * sizeof(*nm));
    herd_worker_t** nf;
    if (nm == NULL)
      return UV_ENOMEM;
    h->members = nm;
    /* The free list holds members only: it is sized with them, so that
     * putting a worker there never fails. */
    nf = herd__realloc(h->free, (size_t)ncap * sizeof(*nf));
    if (nf == NULL)
      return UV_ENOMEM;
    h->free = nf;
    h->cap_members = ncap;
  }
  m = &h->members[h->nmembers++];
  memset(m, 0, sizeof(*m));
  m->worker = w;
  m->slot = w->slot;
  m->fd = -1;
  m->seq = -1;
  return 0;
}

static int gone_if_empty(herd__cluster_handle_t* h) {
  if (h->kind == HERD_SCHED_REUSEPORT)
    herd__reuseport_update(h);
  return h->nmembers == 0 && !h->pinned;
}

int herd__cluster_member_settle(herd__cluster_handle_t* h,
                                herd__cluster_member_t* m) {
  if (m->leaving && m->fd < 0 && !m->holds_socket) {
    *m = h->members[h->nmembers - 1];
    h->nmembers--;
  }
  return gone_if_empty(h);
}

int herd__cluster_member_leave(herd__cluster_handle_t* h, herd_worker_t* w,
                               herd__leave_t how) {
  herd__cluster_member_t* m = herd__cluster_member(h, w);
  if (m == NULL)
    return 0;
  m->leaving = 1;
  herd__dispatch_forget(h, w);
  if (how != HERD__LEAVE_ASKED)
    m->holds_socket = 0;
  if (how == HERD__LEAVE_GONE && m->fd >= 0) {
    /* In flight to a worker that is gone: the next worker gets it. The
     * channel dropped its own copy. */
    int fd = m->fd;
    m->fd = -1;
    h->inflight--;
    herd__dispatch_requeue(h, fd);
  }
  /* A connection in flight stays the leaving worker's until it answers,
   * as in Node: it may be serving it already. */
  return herd__cluster_member_settle(h, m);
}

herd__cluster_handle_t* herd__cluster_handle_find(herd_cluster_t* cluster,
                                                  const char* key) {
  herd__cluster_handle_t* h;
  for (h = cluster->priv->handles; h != NULL; h = h->next)
    if (strcmp(h->key, key) == 0)
      return h;
  return NULL;
}

herd__cluster_handle_t* herd__cluster_handle_new(herd_cluster_t* cluster,
                                                 const char* key,
                                                 const char* address,
                                                 int address_type, int port,
                                                 int backlog, int index) {
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
  h->index = index;
  h->fd = -1;
  h->sock_fd = -1;
  return h;
}

/* The memory of a handle; everything it opened is closed already. */
void herd__cluster_handle_discard(herd__cluster_handle_t* h) {
  herd__free(h->key);
  herd__free(h->address);
  herd__free(h->members);
  herd__free(h->free);
  herd__free(h->pending);
  herd__free(h->slots);
  herd__free(h->group);
  herd__free(h->steer);
  herd__free(h->port_text);
  herd__free(h);
}

void herd__cluster_handle_sock(const herd__cluster_handle_t* h,
                               herd__sock_t* sock, int backlog) {
  memset(sock, 0, sizeof(*sock));
  sock->kind = h->sock_kind;
  sock->address = h->address;
  sock->port = h->port;
  sock->fd = h->sock_fd;
  sock->udp6 = h->udp6;
  sock->ipv6only = h->ipv6only;
  sock->reuseaddr = h->reuseaddr;
  sock->backlog = backlog;
}

int herd__cluster_handle_open(herd__cluster_handle_t* h, int slot) {
  int r;
  switch (h->kind) {
    case HERD_SCHED_RR:
      r = herd__rr_open(h);
      break;
    case HERD_SCHED_REUSEPORT:
      return herd__reuseport_open(h, slot);
    default:
      r = herd__shared_open(h);
      break;
  }
  /* The socket file is the primary's once it bound it; libuv removes a
   * pipe server's path when it closes, and so does the primary. */
  if (r == 0 && h->sock_kind == HERD__SOCK_PIPE)
    h->unlink_path = 1;
  return r;
}

void herd__cluster_handle_close_uv(herd__cluster_handle_t* h, uv_handle_t* uvh,
                                   uv_close_cb cb) {
  h->closes++;
  uv_close(uvh, cb);
}

void herd__cluster_handle_uv_closed(herd__cluster_handle_t* h) {
  herd_cluster_t* cluster = h->cluster;
  if (--h->closes > 0 || !h->freeing)
    return;
  herd__cluster_handle_discard(h);
  herd__cluster_handle_gone(cluster);
}

void herd__cluster_handle_free(herd__cluster_handle_t* h) {
  h->freeing = 1;
  /* Connections waiting for a worker, or in flight to one that has not
   * answered, have nobody left to serve them. */
  herd__dispatch_close(h);
  for (int i = 0; i < h->nmembers; i++)
    if (h->members[i].fd >= 0)
      close(h->members[i].fd);
  h->nmembers = 0;
  switch (h->kind) {
    case HERD_SCHED_RR:
      herd__rr_close(h);
      break;
    case HERD_SCHED_REUSEPORT:
      herd__reuseport_close(h);
      break;
    default:
      herd__shared_close(h);
      break;
  }
  if (h->unlink_path) {
    h->unlink_path = 0;
    unlink(h->address);
  }
  if (h->closes == 0) {
    herd__cluster_handle_discard(h);
    return;
  }
  /* Its libuv handles close from the loop; the cluster's close waits. */
  h->cluster->priv->closes_pending++;
}

void herd__cluster_handle_release(herd__cluster_handle_t* h) {
  herd__cluster_handle_t** hp = &h->cluster->priv->handles;
  while (*hp != NULL && *hp != h)
    hp = &(*hp)->next;
  if (*hp == h)
    *hp = h->next;
  herd__cluster_handle_free(h);
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
  herd__cluster_freeze_policy(cluster);
  /* The key a worker's first listen(port, host) asks for: index 0. */
  snprintf(key, sizeof(key), "%s:%d:%d:undefined:0", host ? host : "null", port,
           type);
  if (herd__cluster_handle_find(cluster, key) != NULL)
    return UV_EADDRINUSE;
  h = herd__cluster_handle_new(cluster, key, host, type, port, backlog, 0);
  if (h == NULL)
    return UV_ENOMEM;
  h->pinned = 1;
  r = herd__cluster_handle_open(h, 0);
  if (r != 0) {
    herd__cluster_handle_discard(h);
    return r;
  }
  h->next = cluster->priv->handles;
  cluster->priv->handles = h;
  if (bound_port != NULL)
    *bound_port = h->bound_port;
  return 0;
}

void herd__cluster_handles_leave(herd_worker_t* worker, herd__leave_t how) {
  herd__cluster_handle_t* h = worker->cluster->priv->handles;
  while (h != NULL) {
    herd__cluster_handle_t* next = h->next;
    if (herd__cluster_member_leave(h, worker, how))
      herd__cluster_handle_release(h);
    h = next;
  }
}
