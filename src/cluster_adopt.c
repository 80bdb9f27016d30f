/* Sockets the caller bound (the supervisor's --listen addresses), adopted
 * as the cluster's servers, and the mapping of a worker's listen() onto
 * them. An adopted handle is pinned (it lives as long as the cluster) and
 * keeps copies (dup) of the caller's sockets, which stay the caller's:
 * under reuseport the adopted slot sockets never leave their group before
 * the cluster closes.
 *
 * Once anything is adopted, every TCP listen() of a worker is served from
 * an adopted socket, in this order:
 *   1. one with the port asked for (and the same host, or any);
 *   2. the only TCP one, whatever the port asked for: a program's
 *      hard-coded listen(8000) is served where the caller said, and its
 *      `listening` event and server.address() tell the real port (the
 *      primary's answer carries the real address, as Node's does);
 *   3. listen({fd: 3 + i}), systemd-style code: the i-th socket;
 * and otherwise it fails with EADDRNOTAVAIL: the caller said where to
 * listen, and a guess would open a port nobody asked for. The same holds
 * when the caller gave addresses none of which is TCP (adopt_only, set
 * with no socket adopted): every listen() is refused. */
#include "cluster-int.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int herd__cluster_adopt(herd_cluster_t* cluster, const herd_listen_addr_t* a,
                        const int* fds, int nfds, int index) {
  struct herd_cluster_private_s* p = cluster->priv;
  herd__cluster_handle_t* h;
  char host[INET6_ADDRSTRLEN] = "", key[300];
  const void* in;
  int type, r = 0, nopen = 0;

  if (p->closing)
    return UV_ECANCELED;
  if ((a->family != AF_INET && a->family != AF_INET6) || nfds < 1)
    return UV_EINVAL;
  herd__cluster_freeze_policy(cluster);
  type = a->family == AF_INET ? 4 : 6;
  in = a->family == AF_INET
           ? (const void*)&((const struct sockaddr_in*)&a->sa)->sin_addr
           : (const void*)&((const struct sockaddr_in6*)&a->sa)->sin6_addr;
  if (!(a->flags & HERD_LISTEN_ANY))
    inet_ntop(a->family, in, host, sizeof(host));
  snprintf(key, sizeof(key), "%s:%d:%d:undefined:0", host[0] ? host : "null",
           a->port, type);
  if (herd__cluster_handle_find(cluster, key) != NULL)
    return UV_EADDRINUSE;
  h = herd__cluster_handle_new(cluster, key, host[0] ? host : NULL, type,
                               a->port, 0, 0);
  if (h == NULL)
    return UV_ENOMEM;
  h->pinned = 1;
  h->adopted = 1;
  h->adopt_index = index;
  h->adopt_addr = *a;
  h->bound_port = a->port;
  if (h->kind == HERD_SCHED_REUSEPORT) {
    r = herd__reuseport_adopt(h, fds, nfds);
  } else {
    h->fd = fcntl(fds[0], F_DUPFD_CLOEXEC, 3);
    if (h->fd < 0)
      r = -errno;
    else
      nopen = 1;
    if (r == 0 && h->kind == HERD_SCHED_RR)
      r = herd__rr_open(h);
  }
  if (r != 0) {
    if (nopen && h->kind != HERD_SCHED_RR)
      close(h->fd);
    if (h->closes > 0)
      p->closes_pending++; /* its polls close from the loop, then it goes */
    else
      herd__cluster_handle_discard(h);
    return r;
  }
  h->next = p->handles;
  p->handles = h;
  p->nadopted++;
  return 0;
}

herd__cluster_handle_t* herd__cluster_adopted_for(herd_cluster_t* cluster,
                                                  const char* address, int port,
                                                  int type, const char* fd,
                                                  int* err) {
  herd__cluster_handle_t *h, *only = NULL;
  int ntcp = 0;
  *err = 0;
  if (cluster->priv->nadopted == 0 && !cluster->priv->adopt_only)
    return NULL;
  *err = UV_EADDRNOTAVAIL;
  if (strcmp(fd, "undefined") != 0 && strcmp(fd, "null") != 0) {
    int i = atoi(fd) - 3;
    for (h = cluster->priv->handles; h != NULL; h = h->next)
      if (h->adopted && h->adopt_index == i)
        return h;
    return NULL;
  }
  if (type != 4 && type != 6)
    return NULL; /* a pipe path: no adopted socket is one */
  for (h = cluster->priv->handles; h != NULL; h = h->next) {
    if (!h->adopted)
      continue;
    ntcp++;
    only = h;
    if (h->bound_port == port && (h->address == NULL || address == NULL ||
                                  strcmp(h->address, address) == 0))
      return h;
  }
  return ntcp == 1 ? only : NULL;
}

uint32_t herd__cluster_key_hash(const char* key) {
  uint32_t hash = 2166136261u; /* FNV-1a */
  for (; *key != '\0'; key++)
    hash = (hash ^ (unsigned char)*key) * 16777619u;
  return hash;
}
