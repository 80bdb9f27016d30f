/* Shared sockets (Node's SharedHandle, SCHED_NONE): the primary binds one
 * socket without listening and sends it with every queryServer reply;
 * every worker listens on it and accepts by itself. The primary keeps its
 * copy while the handle lives, so the connections waiting in the socket's
 * backlog outlive any one worker: a successor, or any other worker, accepts
 * them. */
#include "cluster-int.h"

#include <unistd.h>

int herd__shared_open(herd__cluster_handle_t* h) {
  return herd__cluster_bind(h->address, h->port, 0, 0, &h->fd, &h->bound_port);
}

void herd__shared_close(herd__cluster_handle_t* h) {
  if (h->fd >= 0)
    close(h->fd);
  h->fd = -1;
}
