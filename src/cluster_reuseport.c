/* SO_REUSEPORT groups: one listening socket per worker slot, all kept by
 * the primary, each sent to the worker(s) in its slot. The kernel spreads
 * new connections over the group's sockets.
 *
 * No socket is left without someone accepting from it. A socket is
 * "served" while a worker in its slot listens on it. While one is not
 * (its worker died or left and no other took the slot yet, or one just
 * joined and is not listening yet), the primary
 * - steers new connections away from it: a classic BPF program
 *   (SO_ATTACH_REUSEPORT_CBPF, allowed unprivileged) picks, at random, one
 *   of the group indices of the served sockets. The kernel numbers a
 *   group's sockets in the order they started listening and fills the gap
 *   a socket leaves with the last one, so the primary, which opens and
 *   closes every socket of the group, knows each index (`group`). With
 *   every socket served no program is attached and the kernel's own hash
 *   decides, as without herd;
 * - drains it: accepts what is already queued there and hands those
 *   connections to the workers with newconn messages, as under rr;
 * - and once nobody will take its slot (no worker in the table holds it, no
 *   member holds the socket any more), it has been out of the program's
 *   choice for RP_LINGER_MS and its queue is empty, closes it. It leaves
 *   the group at once with shutdown(): a worker that still has a copy open
 *   does not keep it there. Handshakes that started before the program
 *   excluded the socket have finished long before, unless the client's
 *   ACK was lost for that long; with net.ipv4.tcp_migrate_req=1 the
 *   kernel moves even those to another socket.
 * A successor (herd_worker_replace()) takes its predecessor's slot and so
 * its socket: the socket stays served across the replacement. */
#include "cluster-int.h"

#include <fcntl.h>
#include <linux/filter.h>
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

/* How long a socket nobody serves stays open after the program stopped
 * sending it connections, so that handshakes under way finish there. */
#define RP_LINGER_MS 1000
/* The program is 2n + 1 instructions for n sockets; the kernel takes up to
 * BPF_MAXINSNS (4096). */
#define RP_MAX_STEER 2000

static herd__cluster_slot_t* slot_at(herd__cluster_handle_t* h, int s) {
  return s >= 0 && s < h->nslots ? h->slots[s] : NULL;
}

/* Room for slot `s`, and for as many group entries as slots. */
static int slots_reserve(herd__cluster_handle_t* h, int s) {
  int n = s + 8;
  herd__cluster_slot_t** ns;
  int *ng, *nst;
  if (s < h->nslots)
    return 0;
  ns = herd__realloc(h->slots, (size_t)n * sizeof(*ns));
  if (ns == NULL)
    return UV_ENOMEM;
  for (int i = h->nslots; i < n; i++)
    ns[i] = NULL;
  h->slots = ns;
  /* `steer` holds the attached choice and, behind it, room to build the
   * next one. */
  ng = herd__realloc(h->group, (size_t)n * sizeof(int));
  if (ng == NULL)
    return UV_ENOMEM;
  h->group = ng;
  nst = herd__realloc(h->steer, (size_t)n * 2 * sizeof(int));
  if (nst == NULL)
    return UV_ENOMEM;
  h->steer = nst;
  h->nslots = n;
  return 0;
}

static void slot_poll_cb(uv_poll_t* poll, int status, int events);

/* Opens slot s's socket on `port`; it joins the end of the group. */
static int slot_open(herd__cluster_handle_t* h, int s, int port,
                     int* bound_port) {
  herd__cluster_slot_t* sl;
  int r;
  if (s < 0)
    return UV_EINVAL;
  /* Everything that can fail comes before listen(), so that the group
   * never holds a socket herd does not know of. */
  r = slots_reserve(h, s);
  if (r != 0)
    return r;
  sl = herd__calloc(1, sizeof(*sl));
  if (sl == NULL)
    return UV_ENOMEM;
  if (h->adopted) {
    /* Bound like the caller's, which may be [::] for IPv4 and IPv6. */
    herd_listen_options_t lo;
    herd_listen_addr_t a = h->adopt_addr;
    memset(&lo, 0, sizeof(lo));
    lo.flags = HERD_LISTEN_REUSEPORT;
    lo.backlog = h->backlog;
    a.flags &= ~(unsigned)(HERD_LISTEN_OWNED | HERD_LISTEN_INHERITED);
    r = herd_listen_bind(&a, &lo, &sl->fd);
  } else {
    r = herd__cluster_bind(h->address, port, 1, h->backlog, &sl->fd,
                           bound_port);
  }
  if (r == 0) {
    r = uv_poll_init(h->cluster->loop, &sl->poll, sl->fd);
    if (r != 0) {
      /* shutdown() takes it out of the group at once; it was last, so the
       * other sockets keep their indices. */
      shutdown(sl->fd, SHUT_RD);
      close(sl->fd);
    }
  }
  if (r != 0) {
    herd__free(sl);
    return r;
  }
  sl->handle = h;
  sl->slot = s;
  sl->poll.data = sl;
  sl->unserved_since = uv_now(h->cluster->loop);
  h->slots[s] = sl;
  h->group[h->ngroup++] = s;
  return 0;
}

static void slot_uv_closed(uv_handle_t* handle) {
  herd__cluster_slot_t* sl = handle->data;
  herd__cluster_handle_t* h = sl->handle;
  herd__free(sl);
  herd__cluster_handle_uv_closed(h);
}

/* Closes slot s's socket. `leave`: take it out of the group now
 * (shutdown), whoever else holds a copy, and fill its place in `group` as
 * the kernel does. */
static void slot_close(herd__cluster_handle_t* h, int s, int leave) {
  herd__cluster_slot_t* sl = h->slots[s];
  h->slots[s] = NULL;
  if (leave) {
    shutdown(sl->fd, SHUT_RD);
    for (int i = 0; i < h->ngroup; i++) {
      if (h->group[i] == s) {
        h->group[i] = h->group[--h->ngroup];
        break;
      }
    }
  }
  /* uv_close() stops the poll at once, so the fd can go right after. */
  herd__cluster_handle_close_uv(h, (uv_handle_t*)&sl->poll, slot_uv_closed);
  close(sl->fd);
}

static int has_active(herd__cluster_handle_t* h) {
  for (int i = 0; i < h->nmembers; i++)
    if (herd__cluster_member_active(&h->members[i]))
      return 1;
  return 0;
}

/* Points new connections at the served sockets; with none served, at the
 * socket of the lowest slot, where they wait for a worker (or for the
 * primary to drain them once one exists). */
static void steer(herd__cluster_handle_t* h) {
  int* want = h->steer + h->nslots;
  int n = 0, low = -1;

  if (h->ngroup == 0)
    return;
  for (int i = 0; i < h->ngroup; i++) {
    if (h->slots[h->group[i]]->served)
      want[n++] = i;
    if (low < 0 || h->group[i] < h->group[low])
      low = i;
  }
  if (n == 0)
    want[n++] = low;
  if (n == h->ngroup)
    n = 0; /* Every socket may get connections: the kernel's hash. */
  if (n > RP_MAX_STEER)
    n = 0; /* Too many to list: every socket, the drains do the rest. */
  if (n == h->nsteer && memcmp(want, h->steer, (size_t)n * sizeof(int)) == 0 &&
      !h->steer_failed)
    return;
  if (herd__reuseport_steer(h->slots[h->group[0]]->fd, want, n) != 0) {
    /* The previous program (stale indices) may still be there: remove
     * it. Until the next change, connections reach every socket, and the
     * drains make sure none waits where no worker accepts. */
    h->steer_failed = 1;
    herd__reuseport_steer(h->slots[h->group[0]]->fd, NULL, 0);
    h->nsteer = 0;
    return;
  }
  h->steer_failed = 0;
  memcpy(h->steer, want, (size_t)n * sizeof(int));
  h->nsteer = n;
}

static int steered_away(herd__cluster_handle_t* h, int s) {
  if (h->nsteer == 0)
    return 0;
  for (int i = 0; i < h->nsteer; i++)
    if (h->group[h->steer[i]] == s)
      return 0;
  return 1;
}

/* Whether nobody needs slot s's socket any more. An adopted one is the
 * caller's too: it stays in the group while the cluster lives. */
static int unwanted(herd__cluster_handle_t* h, herd__cluster_slot_t* sl) {
  if (sl->served || sl->adopted || !steered_away(h, sl->slot))
    return 0;
  for (int i = 0; i < h->nmembers; i++)
    if (h->members[i].slot == sl->slot)
      return 0; /* holds it, or is about to listen on it */
  return !herd__cluster_slot_taken(h->cluster, sl->slot);
}

static int queue_empty(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof(ti);
  memset(&ti, 0, sizeof(ti));
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
    return 0;
  return ti.tcpi_unacked == 0; /* a listener's accept queue length */
}

/* Closes one unwanted socket per tick: between its shutdown(), which moves
 * the last socket of the group into its place, and the program steer()
 * attaches next, the kernel picks with indices that are off for a moment.
 * What it queues then on another unserved socket is drained, and that
 * socket waits for the next tick, its handshakes done, to be closed. */
static void linger_cb(uv_timer_t* timer) {
  herd__cluster_handle_t* h = timer->data;
  uint64_t now = uv_now(h->cluster->loop);
  int waiting = 0;

  for (int s = 0; s < h->nslots; s++) {
    herd__cluster_slot_t* sl = h->slots[s];
    if (sl == NULL || sl->served)
      continue;
    waiting = 1;
    if (!unwanted(h, sl) || now < sl->unserved_since + RP_LINGER_MS ||
        !queue_empty(sl->fd))
      continue;
    slot_close(h, s, 1);
    steer(h); /* The indices moved. */
    break;
  }
  if (!waiting)
    uv_timer_stop(&h->linger);
}

void herd__reuseport_pause(herd__cluster_handle_t* h) {
  for (int s = 0; s < h->nslots; s++) {
    herd__cluster_slot_t* sl = h->slots[s];
    if (sl != NULL && sl->polling) {
      uv_poll_stop(&sl->poll);
      sl->polling = 0;
    }
  }
}

void herd__reuseport_resume(herd__cluster_handle_t* h) {
  int drain = !h->freeing && !h->accept_paused && !h->full && has_active(h);
  for (int s = 0; s < h->nslots; s++) {
    herd__cluster_slot_t* sl = h->slots[s];
    int want;
    if (sl == NULL)
      continue;
    want = drain && !sl->served;
    if (want && !sl->polling)
      uv_poll_start(&sl->poll, UV_READABLE, slot_poll_cb);
    else if (!want && sl->polling)
      uv_poll_stop(&sl->poll);
    sl->polling = want;
  }
}

void herd__reuseport_update(herd__cluster_handle_t* h) {
  uint64_t now;
  int unserved = 0;
  if (h->freeing || !h->uv_init)
    return;
  now = uv_now(h->cluster->loop);
  for (int s = 0; s < h->nslots; s++) {
    herd__cluster_slot_t* sl = h->slots[s];
    int served = 0;
    if (sl == NULL)
      continue;
    for (int i = 0; i < h->nmembers && !served; i++) {
      herd__cluster_member_t* m = &h->members[i];
      served = m->slot == s && m->listening && herd__cluster_member_active(m);
    }
    if (sl->served && !served)
      sl->unserved_since = now;
    sl->served = served;
    unserved += !served;
  }
  steer(h);
  herd__reuseport_resume(h);
  if (unserved > 0 && !uv_is_active((uv_handle_t*)&h->linger))
    uv_timer_start(&h->linger, linger_cb, RP_LINGER_MS, RP_LINGER_MS);
}

static void slot_poll_cb(uv_poll_t* poll, int status, int events) {
  herd__cluster_slot_t* sl = poll->data;
  herd__cluster_handle_t* h = sl->handle;
  (void)events;
  if (status < 0) {
    /* libuv stopped the poll (POLLERR): try again after a pause. */
    sl->polling = 0;
    herd__dispatch_pause(h);
    return;
  }
  herd__dispatch_accept(h, sl->fd);
}

int herd__reuseport_open(herd__cluster_handle_t* h, int slot) {
  int r = slot_open(h, slot, h->port, &h->bound_port);
  if (r != 0)
    return r;
  uv_timer_init(h->cluster->loop, &h->retry);
  uv_timer_init(h->cluster->loop, &h->linger);
  h->retry.data = h;
  h->linger.data = h;
  h->uv_init = 1;
  herd__reuseport_update(h);
  return 0;
}

int herd__reuseport_adopt(herd__cluster_handle_t* h, const int* fds, int nfds) {
  int r = slots_reserve(h, nfds - 1);
  if (r != 0)
    return r;
  for (int s = 0; s < nfds; s++) {
    herd__cluster_slot_t* sl = herd__calloc(1, sizeof(*sl));
    if (sl != NULL)
      sl->fd = fcntl(fds[s], F_DUPFD_CLOEXEC, 3);
    if (sl == NULL || sl->fd < 0 ||
        uv_poll_init(h->cluster->loop, &sl->poll, sl->fd) != 0) {
      r = sl == NULL ? UV_ENOMEM : sl->fd < 0 ? -errno : UV_ENOMEM;
      if (sl != NULL && sl->fd >= 0)
        close(sl->fd);
      herd__free(sl);
      goto fail;
    }
    sl->handle = h;
    sl->slot = s;
    sl->adopted = 1;
    sl->poll.data = sl;
    sl->unserved_since = uv_now(h->cluster->loop);
    h->slots[s] = sl;
    /* The caller bound them in slot order: the group's order. */
    h->group[h->ngroup++] = s;
  }
  uv_timer_init(h->cluster->loop, &h->retry);
  uv_timer_init(h->cluster->loop, &h->linger);
  h->retry.data = h;
  h->linger.data = h;
  h->uv_init = 1;
  return 0;

fail:
  /* Nothing was polled yet; their polls close from the loop. */
  h->freeing = 1;
  for (int s = 0; s < h->nslots; s++)
    if (h->slots[s] != NULL)
      slot_close(h, s, 0);
  return r;
}

int herd__reuseport_socket(herd__cluster_handle_t* h,
                           herd__cluster_member_t* m) {
  herd__cluster_slot_t* sl = slot_at(h, m->slot);
  int r;
  if (sl == NULL) {
    r = slot_open(h, m->slot, h->bound_port, NULL);
    if (r != 0)
      return r;
    herd__reuseport_update(h);
    sl = h->slots[m->slot];
  }
  return sl->fd;
}

static void rp_uv_closed(uv_handle_t* handle) {
  herd__cluster_handle_uv_closed(handle->data);
}

void herd__reuseport_close(herd__cluster_handle_t* h) {
  for (int s = 0; s < h->nslots; s++)
    if (h->slots[s] != NULL)
      slot_close(h, s, 0);
  h->ngroup = 0;
  if (h->uv_init) {
    herd__cluster_handle_close_uv(h, (uv_handle_t*)&h->retry, rp_uv_closed);
    herd__cluster_handle_close_uv(h, (uv_handle_t*)&h->linger, rp_uv_closed);
  }
}
