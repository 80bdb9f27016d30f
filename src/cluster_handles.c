/* The primary's registry of server handles: one per key
 * "<address>:<port>:<addressType>:<fd>:<index>" (Node's RoundRobinHandle or
 * SharedHandle), found, opened, joined and left by workers, and freed. The
 * scheduling of each kind lives in cluster_rr.c and cluster_shared.c. */
#include "cluster-int.h"

#include <stdio.h>
#include <string.h>

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

void herd__cluster_handle_discard(herd__cluster_handle_t* h) {
  herd__free(h->key);
  herd__free(h->address);
  herd__free(h->members);
  herd__free(h);
}

int herd__cluster_handle_open(herd__cluster_handle_t* h) {
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
  herd__cluster_freeze_policy(cluster);
  /* The key a worker's first listen(port, host) asks for: index 0. */
  snprintf(key, sizeof(key), "%s:%d:%d:undefined:0", host ? host : "null", port,
           type);
  if (herd__cluster_handle_find(cluster, key) != NULL)
    return UV_EADDRINUSE;
  h = herd__cluster_handle_new(cluster, key, host, type, port, backlog);
  if (h == NULL)
    return UV_ENOMEM;
  h->pinned = 1;
  r = herd__cluster_handle_open(h);
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

/* Takes the worker out of every server handle; rr hands its in-flight
 * connections to other workers. */
void herd__cluster_handles_leave(herd_worker_t* worker, int graceful) {
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
