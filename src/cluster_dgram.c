/* herd_dgram_t: a UDP socket for any process, as Node's dgram socket.bind()
 * works in a cluster. Standalone (or exclusive) it binds by itself with
 * libuv; in a worker it asks the primary (queryServer with addressType
 * "udp4"/"udp6") and opens the socket that comes with the answer: Node's
 * primary shares UDP sockets under every policy, and so does herd's. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { D_INIT, D_QUERY, D_BOUND, D_CLOSED };

struct herd_dgram_private_s {
  herd__listener_t l; /* first: the listener is the socket's */
  herd_dgram_t* dgram;
  int state;
  uv_timer_t timer; /* runs bind_cb from the loop */
  int bind_status;
  int closes;
  herd_dgram_bind_cb bind_cb;
  herd_dgram_close_cb close_cb;
};

int herd_dgram_init(uv_loop_t* loop, herd_dgram_t* dgram) {
  struct herd_dgram_private_s* p;
  int r;
  memset(dgram, 0, sizeof(*dgram));
  p = herd__calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  r = uv_udp_init(loop, &dgram->udp);
  if (r != 0) {
    herd__free(p);
    return r;
  }
  p->dgram = dgram;
  p->l.query_seq = -1;
  uv_timer_init(loop, &p->timer);
  p->timer.data = dgram;
  dgram->udp.data = dgram;
  dgram->loop = loop;
  dgram->priv = p;
  return 0;
}

static void timer_cb(uv_timer_t* timer) {
  herd_dgram_t* dgram = timer->data;
  struct herd_dgram_private_s* p = dgram->priv;
  int status = p->bind_status;
  if (p->bind_cb != NULL)
    p->bind_cb(dgram, status);
  if (status != 0)
    herd_dgram_close(dgram, NULL);
}

static void finish_bind(herd_dgram_t* dgram, int status) {
  dgram->priv->state = D_BOUND; /* closed by the timer on failure */
  dgram->priv->bind_status = status;
  uv_timer_start(&dgram->priv->timer, timer_cb, 0, 0);
}

/* Opens `fd` (which herd owns) into dgram->udp. */
static int open_udp(herd_dgram_t* dgram, int fd) {
  int r = uv_udp_open(&dgram->udp, fd);
  if (r != 0) {
    close(fd);
    return r;
  }
  dgram->port = herd__sock_port(fd);
  return 0;
}

static void dgram_reply(herd__listener_t* l, const char* json, size_t len,
                        herd_handle_t* handle) {
  struct herd_dgram_private_s* p = (struct herd_dgram_private_s*)l;
  herd_dgram_t* dgram = p->dgram;
  char key[400], port[24];
  const char* v;
  size_t vlen;
  int64_t err = 0;
  int r, fd;

  if (herd_json_get(json, len, "errno", &v, &vlen) == 0 &&
      !(vlen == 4 && memcmp(v, "null", 4) == 0))
    herd_json_get_int(json, len, "errno", &err);
  if (err != 0) {
    finish_bind(dgram, (int)err);
    return;
  }
  if (herd_json_get_string(json, len, "key", key, sizeof(key)) < 0 ||
      (l->key = herd__strdup(key)) == NULL) {
    finish_bind(dgram, HERD_EBADPROTO);
    return;
  }
  /* A UDP socket always comes with the answer: there is nothing to hand
   * out one by one. */
  if (handle == NULL || handle->socktype != SOCK_DGRAM) {
    finish_bind(dgram, HERD_EBADPROTO);
    return;
  }
  fd = herd_handle_take(handle);
  r = fd < 0 ? UV_EBADF : open_udp(dgram, fd);
  if (r != 0) {
    finish_bind(dgram, r);
    return;
  }
  dgram->policy = HERD_SCHED_SHARED;
  snprintf(port, sizeof(port), "%d", dgram->port);
  herd__worker_listening(l, port);
  finish_bind(dgram, 0);
}

static void dgram_close_listener(herd__listener_t* l) {
  herd_dgram_close(((struct herd_dgram_private_s*)l)->dgram, NULL);
}

static int bind_alone(herd_dgram_t* dgram, const herd_dgram_options_t* o) {
  struct sockaddr_storage ss;
  unsigned flags = 0;
  int type, r, fd;

  if (o->flags & HERD_DGRAM_FD) {
    herd__sock_t sock;
    memset(&sock, 0, sizeof(sock));
    sock.kind = HERD__SOCK_UDP;
    sock.fd = o->fd;
    r = herd__sock_open(&sock, &fd, NULL);
    if (r == 0)
      r = open_udp(dgram, fd);
    return r;
  }
  r = herd__cluster_sockaddr(o->host != NULL ? o->host
                             : o->ipv6       ? "::"
                                             : "0.0.0.0",
                             o->port, &type, &ss);
  if (r != 0)
    return r;
  if ((type == 6) != !!o->ipv6)
    return UV_EINVAL;
  if (o->flags & HERD_DGRAM_REUSEADDR)
    flags |= UV_UDP_REUSEADDR;
  if (o->flags & HERD_DGRAM_IPV6ONLY)
    flags |= UV_UDP_IPV6ONLY;
  r = uv_udp_bind(&dgram->udp, (struct sockaddr*)&ss, flags);
  if (r != 0)
    return r;
  {
    int len = sizeof(ss);
    r = uv_udp_getsockname(&dgram->udp, (struct sockaddr*)&ss, &len);
    if (r != 0)
      return r;
    dgram->port = ntohs(type == 4 ? ((struct sockaddr_in*)&ss)->sin_port
                                  : ((struct sockaddr_in6*)&ss)->sin6_port);
  }
  return 0;
}

int herd_dgram_bind(herd_dgram_t* dgram, const herd_dgram_options_t* options,
                    herd_dgram_bind_cb bind_cb) {
  struct herd_dgram_private_s* p = dgram->priv;
  herd__listener_t* l = &p->l;
  struct sockaddr_storage ss;
  const char* host;
  int type, r;

  if (options == NULL)
    return UV_EINVAL;
  if (p->state != D_INIT)
    return UV_EALREADY;
  if ((options->flags & HERD_DGRAM_FD) && options->fd < 0)
    return UV_EINVAL;
  host = options->host != NULL ? options->host
         : options->ipv6       ? "::"
                               : "0.0.0.0";
  if (!(options->flags & HERD_DGRAM_FD)) {
    r = herd__cluster_sockaddr(host, options->port, &type, &ss);
    if (r != 0)
      return r;
    if ((type == 6) != !!options->ipv6)
      return UV_EINVAL; /* Node's lookup fails on it */
  }
  p->bind_cb = bind_cb;

  if ((options->flags & HERD_DGRAM_EXCLUSIVE) || !herd__worker_connected()) {
    if (!(options->flags & HERD_DGRAM_EXCLUSIVE) && herd__worker_orphan())
      return HERD_ECHANNELCLOSED;
    r = bind_alone(dgram, options);
    if (r != 0)
      return r;
    finish_bind(dgram, 0);
    return 0;
  }

  /* A worker: Node's dgram sends the resolved address, the port and the
   * flags (UV_UDP_REUSEADDR 4, UV_UDP_IPV6ONLY 1), or for an fd nothing but
   * the fd. */
  memset(l, 0, sizeof(*l));
  l->query_seq = -1;
  l->backlog = -1;
  l->reply = dgram_reply;
  l->close = dgram_close_listener;
  snprintf(l->address_type, sizeof(l->address_type), "\"udp%d\"",
           options->ipv6 ? 6 : 4);
  if (options->flags & HERD_DGRAM_FD) {
    strcpy(l->address, "null");
    strcpy(l->port, "null");
    snprintf(l->fd, sizeof(l->fd), "%d", options->fd);
    strcpy(l->flags, "null");
  } else {
    unsigned flags = 0;
    if (options->flags & HERD_DGRAM_REUSEADDR)
      flags |= UV_UDP_REUSEADDR;
    if (options->flags & HERD_DGRAM_IPV6ONLY)
      flags |= UV_UDP_IPV6ONLY;
    herd_json_quote(l->address, sizeof(l->address), host, strlen(host));
    snprintf(l->port, sizeof(l->port), "%d", options->port);
    strcpy(l->fd, "-1");
    snprintf(l->flags, sizeof(l->flags), "%u", flags);
  }
  r = herd__worker_query(l);
  if (r != 0)
    return r;
  p->state = D_QUERY;
  return 0;
}

static void closed_cb(uv_handle_t* handle) {
  herd_dgram_t* dgram = handle->data;
  struct herd_dgram_private_s* p = dgram->priv;
  herd_dgram_close_cb cb;
  if (--p->closes > 0)
    return;
  cb = p->close_cb;
  herd__free(p->l.key);
  herd__free(p);
  dgram->priv = NULL;
  if (cb != NULL)
    cb(dgram);
}

void herd_dgram_close(herd_dgram_t* dgram, herd_dgram_close_cb close_cb) {
  struct herd_dgram_private_s* p = dgram->priv;
  if (p == NULL || p->state == D_CLOSED)
    return;
  herd__worker_unlisten(&p->l);
  p->state = D_CLOSED;
  p->close_cb = close_cb;
  p->closes = 2;
  uv_close((uv_handle_t*)&p->timer, closed_cb);
  uv_close((uv_handle_t*)&dgram->udp, closed_cb);
}
