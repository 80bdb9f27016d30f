/* The pool's listening sockets: the caller's, and under reuseport the
 * slots' own, bound to the same addresses with SO_REUSEPORT; steering new
 * connections away from slots that have no process accepting; the queue
 * length a retiring slot drains to zero.
 *
 * Steering. The kernel numbers the sockets of a reuseport group in the
 * order they started listening and fills the place a leaving socket
 * leaves with the last one. The supervisor opens and closes every socket
 * of the group but the caller's, which was bound first (herd_listen_bind()
 * before herd_supervisor_init()), so it knows each socket's index
 * (`group`). While a slot has no ready process, a classic BPF program
 * (SO_ATTACH_REUSEPORT_CBPF, allowed without privileges) sends each new
 * connection to one of the other sockets, picked at random; with every
 * socket served no program is attached and the kernel's hash decides. A
 * connection already queued in an unserved socket waits there for the
 * slot's next process (a crash restart) or is accepted by the retiring
 * worker before it stops (draining): it is never reset. */
#include "supervisor-int.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

int herd__sockets_init(herd__sup_t* p, const herd_supervisor_options_t* o) {
  if (o->socket_count == 0)
    return 0;
  p->sockets = herd__calloc((size_t)o->socket_count, sizeof(*p->sockets));
  if (p->sockets == NULL)
    return UV_ENOMEM;
  p->nsockets = o->socket_count;
  for (int i = 0; i < o->socket_count; i++) {
    herd__sup_socket_t* sk = &p->sockets[i];
    herd_listen_addr_t found;
    int r = herd_listen_addr_from_fd(o->sockets[i].fd, &found);
    if (r != 0)
      return r == UV_ENOTSOCK || r == UV_EBADF ? UV_EINVAL : r;
    sk->fd = o->sockets[i].fd;
    sk->addr = o->sockets[i].addr != NULL ? *o->sockets[i].addr : found;
    if (o->sockets[i].addr == NULL && found.family == AF_INET6) {
      /* An inherited [::] that takes IPv4 too is bound again as such. */
      int v6only = 1;
      socklen_t len = sizeof(v6only);
      if (getsockopt(sk->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0 &&
          !v6only)
        sk->addr.flags |= HERD_LISTEN_ANY;
    }
    if (p->policy == HERD_SCHED_REUSEPORT && found.family != AF_UNIX) {
      int on = 0;
      socklen_t len = sizeof(on);
      /* A socket bound without SO_REUSEPORT cannot have companions. */
      if (getsockopt(sk->fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on)
        sk->reuseport = 1;
    }
    if (sk->reuseport) {
      sk->group = herd__malloc(8 * sizeof(int));
      if (sk->group == NULL)
        return UV_ENOMEM;
      sk->cap_group = 8;
      sk->group[0] = 0;
      sk->ngroup = 1;
    }
  }
  return 0;
}

static int group_add(herd__sup_socket_t* sk, int slot) {
  if (sk->ngroup == sk->cap_group) {
    int* n = herd__realloc(sk->group, (size_t)sk->cap_group * 2 * sizeof(int));
    if (n == NULL)
      return UV_ENOMEM;
    sk->group = n;
    sk->cap_group *= 2;
  }
  sk->group[sk->ngroup++] = slot;
  return 0;
}

int herd__sockets_slot_init(herd__sup_t* p, herd__sup_slot_t* slot) {
  for (int i = 0; i < p->nsockets; i++) {
    herd__sup_socket_t* sk = &p->sockets[i];
    herd_listen_options_t lo;
    herd_listen_addr_t a;
    int fd;
    slot->fds[i] = sk->fd;
    slot->own[i] = 0;
    if (!sk->reuseport || slot->index == 0)
      continue;
    /* Cluster workers: the initial slots' sockets go to the cluster at
     * start; it binds those of later slots itself. */
    if (p->protocol == HERD_WORKER_CLUSTER && p->started)
      continue;
    /* Room in the group first, so that no socket herd does not track ever
     * joins it. */
    if (sk->ngroup == sk->cap_group && group_add(sk, -1) == 0)
      sk->ngroup--;
    if (sk->ngroup == sk->cap_group)
      continue;
    memset(&lo, 0, sizeof(lo));
    lo.flags = HERD_LISTEN_REUSEPORT;
    a = sk->addr;
    a.flags &= ~(unsigned)(HERD_LISTEN_OWNED | HERD_LISTEN_INHERITED);
    /* A socket that cannot join (another user's port, no fds left) leaves
     * the slot sharing the caller's socket. */
    if (herd_listen_bind(&a, &lo, &fd) != 0)
      continue;
    slot->fds[i] = fd;
    slot->own[i] = 1;
    group_add(sk, slot->index);
  }
  return 0;
}

void herd__sockets_slot_close(herd__sup_t* p, herd__sup_slot_t* slot) {
  for (int i = 0; i < p->nsockets; i++) {
    herd__sup_socket_t* sk = &p->sockets[i];
    if (slot->own == NULL || !slot->own[i])
      continue;
    /* shutdown() takes it out of the group at once, even if a process
     * that escaped its group still holds a copy; but a cluster's copy
     * stays in use until the cluster closes. */
    if (p->protocol == HERD_WORKER_SYSTEMD)
      shutdown(slot->fds[i], SHUT_RD);
    close(slot->fds[i]);
    slot->own[i] = 0;
    slot->fds[i] = sk->fd;
    for (int j = 0; j < sk->ngroup; j++) {
      if (sk->group[j] == slot->index) {
        sk->group[j] = sk->group[--sk->ngroup];
        break;
      }
    }
  }
}

int herd__sockets_slot_owns(herd__sup_t* p, const herd__sup_slot_t* slot) {
  /* Cluster workers: the cluster steers and drains. */
  if (p->protocol == HERD_WORKER_CLUSTER)
    return 0;
  for (int i = 0; i < p->nsockets; i++)
    if (slot->own != NULL && slot->own[i])
      return 1;
  return 0;
}

/* The slot behind a group member (slot numbers are stable while a slot is
 * in the table; a retiring slot is found among the processes). */
static const herd__sup_slot_t* find_slot(herd__sup_t* p, int index,
                                         int* retired) {
  *retired = 0;
  if (index >= 0 && index < p->pub->workers)
    return p->slots[index];
  for (herd__sup_proc_t* proc = p->procs; proc != NULL; proc = proc->next)
    if (proc->slot != NULL && proc->slot->index == index &&
        proc->slot->retiring) {
      *retired = 1;
      return proc->slot;
    }
  return NULL;
}

/* Whether the group's socket at `member` (a slot number) has a ready
 * process accepting on it that is not draining. Slot 0's socket is the
 * caller's, shared by every slot without a socket of its own. */
static int served(herd__sup_t* p, int si, int member) {
  int retired;
  const herd__sup_slot_t* slot = find_slot(p, member, &retired);
  if (slot == NULL || retired || slot->draining)
    return 0;
  if ((slot->cur != NULL && slot->cur->state == HERD__PROC_READY) ||
      (slot->next != NULL && slot->next->state == HERD__PROC_READY))
    return 1;
  if (member == 0) {
    for (int i = 1; i < p->pub->workers; i++) {
      const herd__sup_slot_t* o = p->slots[i];
      if (!o->own[si] && o->cur != NULL && o->cur->state == HERD__PROC_READY)
        return 1;
    }
  }
  return 0;
}

static void steer_one(herd__sup_t* p, int si) {
  herd__sup_socket_t* sk = &p->sockets[si];
  int stack[32];
  int* list = stack;
  int n = 0;

  if (sk->ngroup > 1) {
    if ((size_t)sk->ngroup > HERD_ARRAY_SIZE(stack)) {
      list = herd__malloc((size_t)sk->ngroup * sizeof(int));
      if (list == NULL)
        return; /* keep the program attached before */
    }
    for (int i = 0; i < sk->ngroup; i++)
      if (served(p, si, sk->group[i]))
        list[n++] = i;
    if (n == sk->ngroup)
      n = 0; /* every one: the kernel's hash */
  }
  if (n > 0) {
    if (herd__reuseport_steer(sk->fd, list, n) == 0)
      sk->steering = 1;
  } else if (sk->steering) {
    herd__reuseport_steer(sk->fd, NULL, 0);
    sk->steering = 0;
  }
  if (list != stack)
    herd__free(list);
}

void herd__sockets_steer(herd__sup_t* p) {
  if (p->protocol == HERD_WORKER_CLUSTER)
    return;
  for (int i = 0; i < p->nsockets; i++)
    if (p->sockets[i].reuseport)
      steer_one(p, i);
}

int herd__sockets_queued(herd__sup_t* p, const herd__sup_slot_t* slot) {
  int total = 0;
  for (int i = 0; i < p->nsockets; i++) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    if (!slot->own[i])
      continue;
    memset(&ti, 0, sizeof(ti));
    /* For a listening socket, tcpi_unacked is its accept queue's length. */
    if (getsockopt(slot->fds[i], IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
      return -errno;
    total += (int)ti.tcpi_unacked;
  }
  return total;
}

void herd__sockets_free(herd__sup_t* p) {
  for (int i = 0; i < p->nsockets; i++)
    herd__free(p->sockets[i].group);
  herd__free(p->sockets);
  p->sockets = NULL;
  p->nsockets = 0;
}
