/* herd_server_t: one listen call for any process. Standalone it binds and
 * listens itself; in a cluster worker it sends queryServer and serves what
 * the primary answers: under rr, connections arrive one by one as newconn
 * messages (cluster_worker.c); under shared and reuseport the answer carries
 * a socket to accept from. Either way the user sees the same connection
 * callback and takes the connection with herd_server_accept*(). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connections accepted per wakeup from a listening socket. */
#define SERVER_ACCEPT_BATCH 64
/* After an accept error that leaves the connection queued (out of fds or
 * memory), accepting pauses this long before it is tried again. */
#define SERVER_ACCEPT_RETRY_MS 100

enum { S_INIT, S_QUERY, S_LISTENING, S_CLOSED };

struct herd_server_private_s {
  herd_server_t* next; /* in the worker's list */
  int state;
  int in_worker;
  int fd; /* the listening socket, -1 under rr */
  int pending_fd;
  uv_poll_t poll;
  int poll_init;
  uv_timer_t timer; /* runs listen_cb from the loop, then retries accept */
  int accept_paused;
  int closes;
  int listen_status;
  int64_t query_seq;
  char* key;       /* the primary's key for this server */
  char* query;     /* the queryServer fields, reused for "listening" */
  char* index_key; /* address:port:type:fd */
  int backlog;
  herd_server_connection_cb connection_cb;
  herd_server_listen_cb listen_cb;
  herd_server_close_cb close_cb;
};

herd_server_t* herd__server_next(const herd_server_t* server) {
  return server->priv->next;
}

herd_server_t** herd__server_next_ref(herd_server_t* server) {
  return &server->priv->next;
}

int64_t herd__server_query_seq(const herd_server_t* server) {
  return server->priv->state == S_QUERY ? server->priv->query_seq : -1;
}

const char* herd__server_key(const herd_server_t* server) {
  return server->priv->state == S_LISTENING ? server->priv->key : NULL;
}

int herd_server_init(uv_loop_t* loop, herd_server_t* server) {
  struct herd_server_private_s* p;
  memset(server, 0, sizeof(*server));
  p = herd__calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  p->fd = -1;
  p->pending_fd = -1;
  p->query_seq = -1;
  uv_timer_init(loop, &p->timer);
  p->timer.data = server;
  server->loop = loop;
  server->priv = p;
  return 0;
}

/* Hands one connection to the user; closes it if the user did not take it. */
static void deliver(herd_server_t* server, int fd) {
  struct herd_server_private_s* p = server->priv;
  p->pending_fd = fd;
  server->connections++;
  if (p->connection_cb != NULL)
    p->connection_cb(server, 0);
  /* The callback may have closed the server, which leaves priv alone until
   * the close callbacks run. */
  if (p->pending_fd >= 0) {
    close(p->pending_fd);
    p->pending_fd = -1;
  }
}

static void timer_cb(uv_timer_t* timer);

/* Whether accept() failed for that one connection only, having taken it off
 * the queue: a connection reset before it was accepted, or a network error
 * Linux passes on from the new socket (see accept(2)). Anything else (out of
 * fds or memory, a broken socket) leaves the socket readable as it was. */
static int accept_error_consumed(int err) {
  switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPERM:
    case EPROTO:
    case ENOPROTOOPT:
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENONET:
    case EOPNOTSUPP:
      return 1;
    default:
      return 0;
  }
}

static void poll_cb(uv_poll_t* poll, int status, int events) {
  herd_server_t* server = poll->data;
  struct herd_server_private_s* p = server->priv;
  (void)events;
  if (status < 0) {
    if (p->connection_cb != NULL)
      p->connection_cb(server, status);
    return;
  }
  for (int i = 0; i < SERVER_ACCEPT_BATCH && p->state == S_LISTENING; i++) {
    int fd = accept4(p->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK)
        break; /* Another worker took it, or the backlog is empty. */
      if (accept_error_consumed(err))
        continue;
      /* The connection stays in the backlog and the socket readable:
       * polling on would spin, so every such failure pauses accepting. The
       * timer is free for it: polling starts only once the listen callback
       * has run (timer_cb). */
      uv_poll_stop(&p->poll);
      p->accept_paused = 1;
      uv_timer_start(&p->timer, timer_cb, SERVER_ACCEPT_RETRY_MS, 0);
      if (p->connection_cb != NULL)
        p->connection_cb(server, -err);
      break;
    }
    deliver(server, fd);
  }
}

/* Makes the poll for the listening socket; it starts once the listen
 * callback has run, so that no connection (and no accept error) reaches the
 * user before it. */
static int init_polling(herd_server_t* server) {
  struct herd_server_private_s* p = server->priv;
  int r = uv_poll_init(server->loop, &p->poll, p->fd);
  if (r != 0)
    return r;
  p->poll.data = server;
  p->poll_init = 1;
  return 0;
}

/* One timer, two jobs that never overlap: first it runs listen_cb from the
 * loop (and then starts polling), later it ends each pause of accepting. */
static void timer_cb(uv_timer_t* timer) {
  herd_server_t* server = timer->data;
  struct herd_server_private_s* p = server->priv;
  int status = p->listen_status;
  if (p->accept_paused) {
    p->accept_paused = 0;
    if (p->state == S_LISTENING)
      uv_poll_start(&p->poll, UV_READABLE, poll_cb);
    return;
  }
  if (p->listen_cb != NULL)
    p->listen_cb(server, status);
  if (status != 0) {
    herd_server_close(server, NULL);
    return;
  }
  /* listen_cb may have closed the server. */
  if (p->state == S_LISTENING && p->poll_init) {
    int r = uv_poll_start(&p->poll, UV_READABLE, poll_cb);
    if (r != 0 && p->connection_cb != NULL)
      p->connection_cb(server, r);
  }
}

static void finish_listen(herd_server_t* server, int status) {
  server->priv->listen_status = status;
  uv_timer_start(&server->priv->timer, timer_cb, 0, 0);
}

int herd_server_listen(herd_server_t* server, const char* host, int port,
                       int backlog, herd_server_connection_cb connection_cb,
                       herd_server_listen_cb listen_cb) {
  struct herd_server_private_s* p = server->priv;
  struct sockaddr_storage ss;
  char fields[400], qhost[300], index_key[300];
  int type, index, r;

  if (p->state != S_INIT)
    return UV_EALREADY;
  r = herd__cluster_sockaddr(host, port, &type, &ss);
  if (r != 0)
    return r;
  p->connection_cb = connection_cb;
  p->listen_cb = listen_cb;
  p->backlog = backlog > 0 ? backlog : 511;

  if (herd_cluster_worker_channel() == NULL) {
    if (herd_cluster_is_worker() && herd_cluster_worker_id() > 0 &&
        getenv("NODE_UNIQUE_ID") == NULL)
      return HERD_ECHANNELCLOSED; /* a worker whose primary is gone */
    r = herd__cluster_bind(host, port, 0, p->backlog, &p->fd, &server->port);
    if (r != 0)
      return r;
    r = init_polling(server);
    if (r != 0) {
      close(p->fd);
      p->fd = -1;
      return r;
    }
    p->state = S_LISTENING;
    finish_listen(server, 0);
    return 0;
  }

  /* A worker: ask the primary, with the fields Node's workers send. */
  if (host != NULL)
    herd_json_quote(qhost, sizeof(qhost), host, strlen(host));
  else
    strcpy(qhost, "null");
  snprintf(index_key, sizeof(index_key), "%s:%d:%d:undefined",
           host ? host : "null", port, type);
  index = herd__worker_index(index_key, 1);
  if (index < 0)
    return index;
  snprintf(fields, sizeof(fields),
           "\"index\":%d,\"data\":null,\"address\":%s,\"port\":%d,"
           "\"addressType\":%d,\"backlog\":%d",
           index, qhost, port, type, p->backlog);
  /* A listen that failed before may have left copies behind. */
  herd__free(p->query);
  herd__free(p->index_key);
  p->query = herd__strdup(fields);
  p->index_key = herd__strdup(index_key);
  if (p->query == NULL || p->index_key == NULL) {
    herd__worker_index(index_key, -1);
    return UV_ENOMEM;
  }
  {
    char msg[480];
    int n = snprintf(msg, sizeof(msg), "\"act\":\"queryServer\",%s", fields);
    int64_t seq = herd__worker_send(msg, (size_t)n);
    if (seq < 0) {
      herd__worker_index(index_key, -1);
      return (int)seq;
    }
    p->query_seq = seq;
  }
  p->in_worker = 1;
  p->state = S_QUERY;
  herd__worker_server_add(server);
  return 0;
}

/* The primary's answer to our queryServer. */
void herd__server_reply(herd_server_t* server, const char* json, size_t len,
                        herd_handle_t* handle) {
  struct herd_server_private_s* p = server->priv;
  char key[400], msg[480];
  const char* v;
  size_t vlen;
  int64_t err = 0;
  int r, n;

  if (herd_json_get(json, len, "errno", &v, &vlen) == 0 &&
      !(vlen == 4 && memcmp(v, "null", 4) == 0))
    herd_json_get_int(json, len, "errno", &err);
  if (err != 0) {
    p->state = S_LISTENING; /* closed by finish_listen's timer */
    finish_listen(server, (int)err);
    return;
  }
  if (herd_json_get_string(json, len, "key", key, sizeof(key)) < 0 ||
      (p->key = herd__strdup(key)) == NULL) {
    p->state = S_LISTENING;
    finish_listen(server, HERD_EBADPROTO);
    return;
  }
  if (handle != NULL) {
    /* shared or reuseport: accept from the socket that came along. */
    int listening = handle->listening;
    p->fd = herd_handle_take(handle);
    server->policy = listening ? HERD_SCHED_REUSEPORT : HERD_SCHED_SHARED;
    r = p->fd < 0 ? UV_EBADF : 0;
    if (r == 0 && listen(p->fd, p->backlog) != 0)
      r = -errno;
    if (r == 0)
      r = herd__nonblock(p->fd, 1);
    if (r == 0)
      r = herd__cluster_sockname(p->fd, NULL, 0, NULL, &server->port);
    if (r == 0)
      r = init_polling(server);
    if (r != 0) {
      p->state = S_LISTENING;
      finish_listen(server, r);
      return;
    }
  } else {
    /* rr: connections come as newconn messages. */
    const char* sn;
    size_t snlen;
    int64_t port = 0;
    server->policy = HERD_SCHED_RR;
    if (herd_json_get(json, len, "sockname", &sn, &snlen) == 0 &&
        herd_json_get_int(sn, snlen, "port", &port) == 0)
      server->port = (int)port;
  }
  p->state = S_LISTENING;
  /* Node's worker says where it listens, with the actual port. */
  {
    char* port_at = strstr(p->query, "\"port\":");
    char fixed[400];
    if (port_at != NULL) {
      const char* rest = strchr(port_at, ',');
      snprintf(fixed, sizeof(fixed), "%.*s\"port\":%d%s",
               (int)(port_at - p->query), p->query, server->port,
               rest ? rest : "");
    } else {
      snprintf(fixed, sizeof(fixed), "%s", p->query);
    }
    n = snprintf(msg, sizeof(msg), "\"act\":\"listening\",%s", fixed);
    herd__worker_send(msg, (size_t)n);
  }
  finish_listen(server, 0);
}

int herd__server_newconn(herd_server_t* server, int fd) {
  if (server->priv->state != S_LISTENING) {
    close(fd);
    return UV_ECANCELED;
  }
  herd__nonblock(fd, 1);
  deliver(server, fd);
  return 0;
}

int herd_server_accept(herd_server_t* server, uv_stream_t* client) {
  struct herd_server_private_s* p = server->priv;
  int r;
  if (p == NULL || p->pending_fd < 0)
    return UV_EAGAIN;
  r = uv_tcp_open((uv_tcp_t*)client, p->pending_fd);
  if (r == 0)
    p->pending_fd = -1;
  return r;
}

int herd_server_accept_fd(herd_server_t* server, int* fd) {
  struct herd_server_private_s* p = server->priv;
  if (p == NULL || p->pending_fd < 0)
    return UV_EAGAIN;
  *fd = p->pending_fd;
  p->pending_fd = -1;
  return 0;
}

static void closed_cb(uv_handle_t* handle) {
  herd_server_t* server = handle->data;
  struct herd_server_private_s* p = server->priv;
  herd_server_close_cb cb;
  if (--p->closes > 0)
    return;
  cb = p->close_cb;
  herd__free(p->key);
  herd__free(p->query);
  herd__free(p->index_key);
  herd__free(p);
  server->priv = NULL;
  if (cb != NULL)
    cb(server);
}

void herd_server_close(herd_server_t* server, herd_server_close_cb close_cb) {
  struct herd_server_private_s* p = server->priv;
  char fields[480], qkey[420];

  if (p == NULL || p->state == S_CLOSED) {
    return;
  }
  if (p->in_worker) {
    herd__worker_server_remove(server);
    herd__worker_index(p->index_key, -1);
    if (p->state == S_QUERY)
      herd__worker_query_orphaned(p->query_seq);
    if (p->key != NULL && p->state == S_LISTENING) {
      /* Node's worker tells the primary for rr and shared servers alike. */
      herd_json_quote(qkey, sizeof(qkey), p->key, strlen(p->key));
      snprintf(fields, sizeof(fields), "\"act\":\"close\",\"key\":%s", qkey);
      herd__worker_send(fields, strlen(fields));
    }
  }
  p->state = S_CLOSED;
  p->close_cb = close_cb;
  if (p->pending_fd >= 0) {
    close(p->pending_fd);
    p->pending_fd = -1;
  }
  p->closes = 1;
  uv_close((uv_handle_t*)&p->timer, closed_cb);
  if (p->poll_init) {
    p->closes++;
    uv_close((uv_handle_t*)&p->poll, closed_cb);
  }
  if (p->fd >= 0)
    close(p->fd);
  p->fd = -1;
}
