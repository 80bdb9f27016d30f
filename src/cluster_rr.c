/* Round-robin (Node's RoundRobinHandle), and the primary's way of handing
 * the connections it accepted to workers, which reuseport uses too for the
 * sockets it drains (cluster_reuseport.c).
 *
 * Accepted connections wait in `pending`, workers ready for one in `free`.
 * A worker is handed one connection at a time (a newconn message carrying
 * the fd) and becomes free again when it answers. The primary keeps its
 * copy of the fd until that answer: a connection the worker declines, or
 * one in flight to a worker that leaves, goes to the next worker, so none
 * is lost. An answer counts only once the worker's channel has
 * acknowledged the fd (NODE_HANDLE_ACK): before that, it cannot be about a
 * connection that reached the worker. */
#include "cluster-int.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connections accepted per wakeup: enough to drain a burst without letting
 * one busy port starve the rest of the loop. */
#define RR_ACCEPT_BATCH 128
/* Past this many waiting connections the primary stops accepting and leaves
 * the rest in the kernel's backlog until workers catch up. */
#define RR_MAX_PENDING 4096
/* Out of fds or memory, or after a poll error, accepting pauses this long
 * before it is tried again. */
#define RR_RETRY_MS 100

/* Makes room in `pending` for one more accepted connection, on top of the
 * room kept for every connection in flight: a connection that comes back
 * (declined, or its worker left) always has its place. */
static int pending_room(herd__cluster_handle_t* h) {
  int need = h->pending_count + h->inflight + 1;
  int ncap;
  int* np;
  if (h->pending_cap >= need)
    return 0;
  ncap = h->pending_cap ? h->pending_cap * 2 : 64;
  if (ncap < need)
    ncap = need;
  np = herd__malloc((size_t)ncap * sizeof(int));
  if (np == NULL)
    return UV_ENOMEM;
  for (int i = 0; i < h->pending_count; i++)
    np[i] = h->pending[(h->pending_head + i) % h->pending_cap];
  herd__free(h->pending);
  h->pending = np;
  h->pending_head = 0;
  h->pending_cap = ncap;
  return 0;
}

static void pending_push(herd__cluster_handle_t* h, int fd, int front) {
  if (h->pending_count >= h->pending_cap) {
    /* The room kept for connections in flight makes this unreachable;
     * should it happen, the connection is refused rather than leaked. */
    close(fd);
    return;
  }
  if (front) {
    h->pending_head = (h->pending_head + h->pending_cap - 1) % h->pending_cap;
    h->pending[h->pending_head] = fd;
  } else {
    h->pending[(h->pending_head + h->pending_count) % h->pending_cap] = fd;
  }
  h->pending_count++;
}

static int pending_shift(herd__cluster_handle_t* h) {
  int fd;
  if (h->pending_count == 0)
    return -1;
  fd = h->pending[h->pending_head];
  h->pending_head = (h->pending_head + 1) % h->pending_cap;
  h->pending_count--;
  return fd;
}

static void free_push(herd__cluster_handle_t* h, herd_worker_t* w) {
  for (int i = 0; i < h->nfree; i++)
    if (h->free[i] == w)
      return;
  /* `free` is sized with the members (herd__cluster_member_add). */
  h->free[h->nfree++] = w;
}

static herd_worker_t* free_shift(herd__cluster_handle_t* h) {
  herd_worker_t* w;
  if (h->nfree == 0)
    return NULL;
  w = h->free[0];
  memmove(h->free, h->free + 1, (size_t)(h->nfree - 1) * sizeof(*h->free));
  h->nfree--;
  return w;
}

void herd__dispatch_forget(herd__cluster_handle_t* h, herd_worker_t* w) {
  for (int i = 0; i < h->nfree; i++) {
    if (h->free[i] == w) {
      memmove(h->free + i, h->free + i + 1,
              (size_t)(h->nfree - i - 1) * sizeof(*h->free));
      h->nfree--;
      return;
    }
  }
}

static void stop_polls(herd__cluster_handle_t* h) {
  if (h->kind == HERD_SCHED_RR) {
    if (h->polling)
      uv_poll_stop(&h->poll);
    h->polling = 0;
  } else {
    herd__reuseport_pause(h);
  }
}

static void rr_poll_cb(uv_poll_t* poll, int status, int events);

void herd__dispatch_resume(herd__cluster_handle_t* h) {
  if (h->freeing || h->accept_paused || h->full)
    return;
  if (h->kind != HERD_SCHED_RR) {
    herd__reuseport_resume(h);
  } else if (!h->polling) {
    uv_poll_start(&h->poll, UV_READABLE, rr_poll_cb);
    h->polling = 1;
  }
}

static void wake(herd__cluster_handle_t* h);

static void retry_cb(uv_timer_t* timer) {
  herd__cluster_handle_t* h = timer->data;
  h->accept_paused = 0;
  wake(h);
  herd__dispatch_resume(h);
}

void herd__dispatch_pause(herd__cluster_handle_t* h) {
  h->accept_paused = 1;
  stop_polls(h);
  if (h->uv_init)
    uv_timer_start(&h->retry, retry_cb, RR_RETRY_MS, 0);
}

/* Node's handoff(): gives the next waiting connection to `w`, or puts `w`
 * among the free workers. Returns 0, or the error of a send that failed
 * (the connection is back first in line). */
static int handoff(herd__cluster_handle_t* h, herd_worker_t* w) {
  herd__cluster_member_t* m = herd__cluster_member(h, w);
  char fields[512], qkey[420];
  int64_t seq;
  int fd;

  if (m == NULL || m->fd >= 0 || !herd__cluster_member_active(m))
    return 0; /* It left the server, or is busy with one already. */
  fd = pending_shift(h);
  if (fd < 0) {
    free_push(h, w);
    return 0;
  }
  herd_json_quote(qkey, sizeof(qkey), h->key, strlen(h->key));
  snprintf(fields, sizeof(fields), "\"act\":\"newconn\",\"key\":%s", qkey);
  seq = herd__cluster_send(w, fields, fd, herd__dispatch_sent);
  if (seq < 0) {
    pending_push(h, fd, 1);
    return (int)seq;
  }
  m->fd = fd;
  m->seq = seq;
  m->delivered = 0;
  h->inflight++;
  if (h->full && h->pending_count < RR_MAX_PENDING / 2) {
    h->full = 0;
    herd__dispatch_resume(h);
  }
  return 0;
}

/* Hands waiting connections to free workers. A worker whose send failed
 * for want of memory goes to the back of the line and the retry timer
 * tries again; one whose channel is gone is about to leave the server. */
static void wake(herd__cluster_handle_t* h) {
  int tries = h->nfree;
  int again = 0;
  while (h->pending_count > 0 && h->nfree > 0 && tries-- > 0) {
    herd_worker_t* w = free_shift(h);
    int r = handoff(h, w);
    if (r < 0 && r != HERD_ECHANNELCLOSED) {
      free_push(h, w);
      again = 1;
    }
  }
  if (again && h->pending_count > 0 && h->uv_init &&
      !uv_is_active((uv_handle_t*)&h->retry))
    uv_timer_start(&h->retry, retry_cb, RR_RETRY_MS, 0);
}

void herd__dispatch_join(herd__cluster_handle_t* h, herd_worker_t* w) {
  int r = handoff(h, w);
  if (r < 0 && r != HERD_ECHANNELCLOSED) {
    free_push(h, w);
    wake(h);
  }
}

void herd__dispatch_requeue(herd__cluster_handle_t* h, int fd) {
  pending_push(h, fd, 1);
  wake(h);
}

void herd__dispatch_accept(herd__cluster_handle_t* h, int lfd) {
  for (int i = 0; i < RR_ACCEPT_BATCH; i++) {
    int fd;
    if (h->pending_count >= RR_MAX_PENDING) {
      h->full = 1;
      stop_polls(h);
      return;
    }
    if (pending_room(h) != 0) {
      /* The connection stays in the kernel's backlog meanwhile. */
      herd__dispatch_pause(h);
      return;
    }
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        /* Out of fds (EMFILE, ENFILE) or any other failure: polling on
         * would spin on the connection still waiting. */
        herd__dispatch_pause(h);
      return;
    }
    pending_push(h, fd, 0);
    wake(h);
  }
}

int herd__dispatch_ack(herd__cluster_handle_t* h, herd__cluster_member_t* m,
                       int accepted) {
  herd_worker_t* w = m->worker;
  int fd = m->fd;
  m->fd = -1;
  m->seq = -1;
  m->delivered = 0;
  h->inflight--;
  if (accepted) {
    close(fd); /* The worker has its own copy now. */
    if (h->accept_paused) {
      /* An fd is free again: out of fds, that is what accepting (and a
       * handoff that failed) waited for. */
      uv_timer_stop(&h->retry);
      h->accept_paused = 0;
      wake(h);
      herd__dispatch_resume(h);
    }
  } else {
    /* A worker declines only a connection for a server it no longer has
     * (Node's child.js: accepted = the key is in its handles): it is
     * closing it, or never had it. It gets no more connections of this
     * server until it listens on it again, or a connection every worker
     * declines would go round between them for ever. */
    m->leaving = 1;
    herd__dispatch_forget(h, w);
    herd__dispatch_requeue(h, fd);
  }
  if (m->leaving)
    return herd__cluster_member_settle(h, m); /* That was what it owed. */
  herd__dispatch_join(h, w);
  return 0;
}

void herd__dispatch_sent(herd_ipc_t* ipc, int status, void* arg) {
  herd_worker_t* w = ipc->data;
  int64_t seq = (int64_t)(intptr_t)arg;
  herd__cluster_handle_t* h;
  herd__cluster_member_t* m = NULL;
  int fd;

  for (h = w->cluster->priv->handles; h != NULL; h = h->next) {
    m = herd__cluster_member(h, w);
    if (m != NULL && m->fd >= 0 && m->seq == seq)
      break;
  }
  if (h == NULL)
    return; /* Answered, or its handle is gone (and the fd with it). */
  if (status == 0) {
    m->delivered = 1;
    return;
  }
  /* Refused (NACK) or the channel closed first: the fd did not reach the
   * worker. */
  fd = m->fd;
  m->fd = -1;
  m->seq = -1;
  h->inflight--;
  herd__dispatch_requeue(h, fd);
  if (m->leaving) {
    if (herd__cluster_member_settle(h, m))
      herd__cluster_handle_release(h);
  } else if (status != HERD_ECHANNELCLOSED) {
    free_push(h, w);
    wake(h);
  }
}

void herd__dispatch_close(herd__cluster_handle_t* h) {
  int fd;
  while ((fd = pending_shift(h)) >= 0)
    close(fd);
  h->nfree = 0;
}

static void rr_poll_cb(uv_poll_t* poll, int status, int events) {
  herd__cluster_handle_t* h = poll->data;
  (void)events;
  if (status < 0) {
    /* libuv stopped the poll (POLLERR): try again after a pause rather
     * than stop accepting for good. */
    h->polling = 0;
    herd__dispatch_pause(h);
    return;
  }
  herd__dispatch_accept(h, h->fd);
}

static void rr_uv_closed(uv_handle_t* handle) {
  herd__cluster_handle_uv_closed(handle->data);
}

int herd__rr_open(herd__cluster_handle_t* h) {
  herd__sock_t sock;
  int r = 0;
  /* An adopted handle listens already. */
  if (h->fd < 0) {
    herd__cluster_handle_sock(h, &sock, h->backlog);
    r = herd__sock_open(&sock, &h->fd, &h->bound_port);
  }
  if (r != 0)
    return r;
  r = uv_poll_init(h->cluster->loop, &h->poll, h->fd);
  if (r != 0) {
    close(h->fd);
    h->fd = -1;
    return r;
  }
  uv_timer_init(h->cluster->loop, &h->retry);
  h->poll.data = h;
  h->retry.data = h;
  h->uv_init = 1;
  uv_poll_start(&h->poll, UV_READABLE, rr_poll_cb);
  h->polling = 1;
  return 0;
}

void herd__rr_close(herd__cluster_handle_t* h) {
  int fd = h->fd;
  h->fd = -1;
  if (h->uv_init) {
    /* uv_close() stops the poll at once, so the fd can go right after. */
    herd__cluster_handle_close_uv(h, (uv_handle_t*)&h->poll, rr_uv_closed);
    herd__cluster_handle_close_uv(h, (uv_handle_t*)&h->retry, rr_uv_closed);
  }
  if (fd >= 0)
    close(fd);
}
