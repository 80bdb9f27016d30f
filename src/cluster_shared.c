/* Shared sockets (Node's SharedHandle, SCHED_NONE, and UDP under every
 * policy): the primary binds one socket without listening (or opens the fd
 * a worker named) and sends it with every queryServer reply;
 * every worker listens on it and accepts by itself. The primary keeps its
 * copy while the handle lives, so the connections waiting in the socket's
 * backlog outlive any one worker: a successor, or any other worker, accepts
 * them. */
#include "cluster-int.h"

#include <unistd.h>

int herd__shared_open(herd__cluster_handle_t* h) {
  herd__sock_t sock;
  herd__cluster_handle_sock(h, &sock, 0);
  return herd__sock_open(&sock, &h->fd, &h->bound_port);
}

void herd__shared_close(herd__cluster_handle_t* h) {
  if (h->fd >= 0)
    close(h->fd);
  h->fd = -1;
}
