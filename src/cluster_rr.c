/* Round-robin scheduling (Node's RoundRobinHandle): the primary listens and
 * accepts, accepted connections wait in `pending`, and workers wait in
 * `free`. A worker is handed one connection at a time (a newconn message
 * carrying the fd) and becomes free again when it answers with `accepted`.
 * The primary keeps its copy of the fd until that answer: a connection the
 * worker declines, or one in flight to a worker that dies, is handed to the
 * next worker, so none is lost. */
#include "cluster-int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connections accepted per wakeup: enough to drain a burst without letting
 * one busy port starve the rest of the loop. */
#define RR_ACCEPT_BATCH 128
/* Past this many waiting connections the primary stops accepting and leaves
 * the rest in the kernel's backlog until workers catch up. */
#define RR_MAX_PENDING 4096
/* Out of fds, accepting pauses this long before it is tried again. */
#define RR_EMFILE_RETRY_MS 100

static void poll_cb(uv_poll_t* poll, int status, int events);

static int pending_push(herd__cluster_handle_t* h, int fd, int front) {
  if (h->pending_count == h->pending_cap) {
    int ncap = h->pending_cap ? h->pending_cap * 2 : 64;
    int* np = herd__malloc((size_t)ncap * sizeof(int));
    if (np == NULL)
      return UV_ENOMEM;
    for (int i = 0; i < h->pending_count; i++)
      np[i] = h->pending[(h->pending_head + i) % h->pending_cap];
    herd__free(h->pending);
    h->pending = np;
    h->pending_head = 0;
    h->pending_cap = ncap;
  }
  if (front) {
    h->pending_head = (h->pending_head + h->pending_cap - 1) % h->pending_cap;
    h->pending[h->pending_head] = fd;
  } else {
    h->pending[(h->pending_head + h->pending_count) % h->pending_cap] = fd;
  }
  h->pending_count++;
  return 0;
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
  /* `free` never holds more than the members, whose array bounds it. */
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

static void free_remove(herd__cluster_handle_t* h, herd_worker_t* w) {
  for (int i = 0; i < h->nfree; i++) {
    if (h->free[i] == w) {
      memmove(h->free + i, h->free + i + 1,
              (size_t)(h->nfree - i - 1) * sizeof(*h->free));
      h->nfree--;
      return;
    }
  }
}

static void resume_accepting(herd__cluster_handle_t* h) {
  if (!h->polling && h->poll_init && h->pending_count < RR_MAX_PENDING) {
    uv_poll_start(&h->poll, UV_READABLE, poll_cb);
    h->polling = 1;
  }
}

static void retry_cb(uv_timer_t* timer) {
  resume_accepting(timer->data);
}

/* Node's handoff(): gives the next waiting connection to `w`, or puts `w`
 * back among the free workers. */
static void handoff(herd__cluster_handle_t* h, herd_worker_t* w) {
  herd__cluster_member_t* m = herd__cluster_member(h, w);
  char fields[512], qkey[420];
  int64_t seq;
  int fd;

  if (m == NULL || m->fd >= 0 || m->leaving)
    return; /* It left the server, or is busy with one already. */
  fd = pending_shift(h);
  if (fd < 0) {
    free_push(h, w);
    return;
  }
  herd_json_quote(qkey, sizeof(qkey), h->key, strlen(h->key));
  snprintf(fields, sizeof(fields), "\"act\":\"newconn\",\"key\":%s", qkey);
  seq = herd__cluster_send(w, fields, fd);
  if (seq < 0) {
    /* Its channel is gone; it leaves the server shortly. Keep the
     * connection first in line for the next worker. */
    pending_push(h, fd, 1);
    return;
  }
  m->fd = fd;
  m->seq = seq;
  resume_accepting(h);
}

/* Node's distribute(): queues a connection and wakes one free worker. */
static void distribute(herd__cluster_handle_t* h, int fd, int front) {
  herd_worker_t* w;
  if (pending_push(h, fd, front) != 0) {
    close(fd);
    return;
  }
  w = free_shift(h);
  if (w != NULL)
    handoff(h, w);
}

static void poll_cb(uv_poll_t* poll, int status, int events) {
  herd__cluster_handle_t* h = poll->data;
  (void)events;
  if (status < 0)
    return;
  for (int i = 0; i < RR_ACCEPT_BATCH; i++) {
    int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE) {
        /* Out of fds: polling again would spin. Accepting resumes when a
         * worker takes a connection and its fd is closed here, or after a
         * pause when none is in flight to free one. */
        uv_poll_stop(&h->poll);
        h->polling = 0;
        uv_timer_start(&h->retry, retry_cb, RR_EMFILE_RETRY_MS, 0);
      }
      break;
    }
    distribute(h, fd, 0);
    if (h->pending_count >= RR_MAX_PENDING) {
      uv_poll_stop(&h->poll);
      h->polling = 0;
      break;
    }
  }
}

int herd__rr_open(herd__cluster_handle_t* h) {
  int r = herd__cluster_bind(h->address, h->port, 0, h->backlog, &h->fd,
                             &h->bound_port);
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
  h->poll_init = 1;
  uv_poll_start(&h->poll, UV_READABLE, poll_cb);
  h->polling = 1;
  return 0;
}

void herd__rr_add(herd__cluster_handle_t* h, herd_worker_t* w) {
  /* The free list may hold every member: size it with the members. */
  herd_worker_t** nf =
      herd__realloc(h->free, (size_t)h->cap_members * sizeof(*nf));
  if (nf == NULL) {
    herd__rr_remove(h, w, 0);
    return;
  }
  h->free = nf;
  handoff(h, w);
}

static void member_drop(herd__cluster_handle_t* h, herd__cluster_member_t* m) {
  free_remove(h, m->worker);
  *m = h->members[h->nmembers - 1];
  h->nmembers--;
}

int herd__rr_ack(herd__cluster_handle_t* h, herd_worker_t* w, int64_t ack,
                 int accepted) {
  herd__cluster_member_t* m = herd__cluster_member(h, w);
  int fd;
  if (m == NULL || m->fd < 0 || m->seq != ack)
    return 0;
  fd = m->fd;
  m->fd = -1;
  m->seq = -1;
  if (accepted) {
    close(fd); /* The worker has its own copy now. */
    resume_accepting(h);
  } else {
    distribute(h, fd, 1); /* It is shutting down: send to another. */
  }
  if (m->leaving) {
    /* That was the answer it still owed: now it is out. */
    member_drop(h, m);
    return h->nmembers == 0 && !h->pinned;
  }
  handoff(h, w);
  return 0;
}

/* graceful (the worker was asked to leave, or closed its server): a
 * connection in flight to it stays its until it answers, as in Node, since
 * it may already be serving it. Otherwise (its channel is gone) that
 * connection goes to the next worker at once. */
int herd__rr_remove(herd__cluster_handle_t* h, herd_worker_t* w, int graceful) {
  herd__cluster_member_t* m = herd__cluster_member(h, w);
  int fd;

  if (m == NULL)
    return 0;
  if (graceful && m->fd >= 0) {
    m->leaving = 1;
    free_remove(h, w);
    return 0;
  }
  fd = m->fd;
  member_drop(h, m);
  if (fd >= 0)
    distribute(h, fd, 1); /* In flight to a worker that left: requeue. */
  return h->nmembers == 0 && !h->pinned;
}

static void rr_handle_closed(uv_handle_t* handle) {
  herd__cluster_handle_t* h = handle->data;
  herd_cluster_t* cluster = h->cluster;
  if (--h->closes > 0)
    return;
  herd__free(h->key);
  herd__free(h->address);
  herd__free(h->members);
  herd__free(h->pending);
  herd__free(h->free);
  herd__free(h);
  herd__cluster_handle_gone(cluster);
}

void herd__rr_close(herd__cluster_handle_t* h) {
  int fd;
  while ((fd = pending_shift(h)) >= 0)
    close(fd);
  for (int i = 0; i < h->nmembers; i++)
    if (h->members[i].fd >= 0)
      close(h->members[i].fd);
  h->nmembers = 0;
  fd = h->fd;
  h->fd = -1;
  if (h->poll_init) {
    /* uv_close() stops the poll at once, so the fd can go right after. */
    h->closes = 2;
    uv_close((uv_handle_t*)&h->poll, rr_handle_closed);
    uv_close((uv_handle_t*)&h->retry, rr_handle_closed);
  } else {
    h->closes = 1;
    h->poll.data = h;
    rr_handle_closed((uv_handle_t*)&h->poll);
  }
  if (fd >= 0)
    close(fd);
}
