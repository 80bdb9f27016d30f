/* Shared sockets (Node's SharedHandle, SCHED_NONE) and SO_REUSEPORT slots.
 *
 * shared: the primary binds one socket without listening and sends it with
 * the queryServer reply; every worker listens on it and accepts by itself.
 *
 * reuseport: the primary opens one SO_REUSEPORT listening socket per worker
 * slot and sends slot i's socket to the worker in slot i. The primary keeps
 * its copy, so when a worker dies, the connections the kernel already put in
 * that socket's backlog wait there for the worker that takes the slot next,
 * instead of being reset with the dead worker's last reference. */
#include "cluster-int.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int herd__shared_open(herd__cluster_handle_t* h) {
  int fd, r;
  if (h->kind == HERD_SCHED_SHARED)
    return herd__cluster_bind(h->address, h->port, 0, 0, &h->fd,
                              &h->bound_port);
  /* reuseport: open slot 0 now so that errors (a port in use) surface here
   * and so that port 0 becomes a real port for the other slots. */
  r = herd__cluster_bind(h->address, h->port, 1, h->backlog, &fd,
                         &h->bound_port);
  if (r != 0)
    return r;
  h->slot_fds = herd__malloc(8 * sizeof(int));
  if (h->slot_fds == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  h->nslots = 8;
  for (int i = 0; i < h->nslots; i++)
    h->slot_fds[i] = -1;
  h->slot_fds[0] = fd;
  return 0;
}

static int slot_fd(herd__cluster_handle_t* h, int slot) {
  int r;
  if (slot < 0)
    return UV_EINVAL;
  if (slot >= h->nslots) {
    int n = slot + 8;
    int* ns = herd__realloc(h->slot_fds, (size_t)n * sizeof(int));
    if (ns == NULL)
      return UV_ENOMEM;
    for (int i = h->nslots; i < n; i++)
      ns[i] = -1;
    h->slot_fds = ns;
    h->nslots = n;
  }
  if (h->slot_fds[slot] < 0) {
    r = herd__cluster_bind(h->address, h->bound_port, 1, h->backlog,
                           &h->slot_fds[slot], NULL);
    if (r != 0)
      return r;
  }
  return h->slot_fds[slot];
}

int herd__shared_add(herd__cluster_handle_t* h, herd_worker_t* w) {
  if (h->kind == HERD_SCHED_SHARED)
    return h->fd;
  return slot_fd(h, w->slot);
}

int herd__shared_remove(herd__cluster_handle_t* h, herd_worker_t* w) {
  herd__cluster_member_t* m = herd__cluster_member(h, w);
  if (m == NULL)
    return 0;
  *m = h->members[h->nmembers - 1];
  h->nmembers--;
  /* A slot socket stays for the next worker in that slot when its worker
   * died; a worker that left on purpose takes its slot's socket away (the
   * cluster is shrinking, nobody would serve that backlog). */
  if (h->kind == HERD_SCHED_REUSEPORT && w->exited_after_disconnect &&
      w->slot >= 0 && w->slot < h->nslots && w->slot != 0 &&
      h->slot_fds[w->slot] >= 0) {
    close(h->slot_fds[w->slot]);
    h->slot_fds[w->slot] = -1;
  }
  return h->nmembers == 0 && !h->pinned;
}

void herd__shared_close(herd__cluster_handle_t* h) {
  if (h->fd >= 0)
    close(h->fd);
  for (int i = 0; i < h->nslots; i++)
    if (h->slot_fds[i] >= 0)
      close(h->slot_fds[i]);
  herd__free(h->slot_fds);
  herd__free(h->key);
  herd__free(h->address);
  herd__free(h->members);
  herd__free(h);
}
