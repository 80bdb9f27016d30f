#include "internal.h"

#include <llhttp.h>

#include <assert.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* More header lines than this in one request head is answered with 431:
 * the slots live inline in each connection so that parsing never allocates. */
#define HTTP_MAX_HEADERS 64
/* Room for the request line and the separators the head-size count does not
 * see, on top of max_header_size, in each connection's read buffer. */
#define HTTP_BUF_SLACK 1024
/* The response buffer that lives inline in each connection; a bigger batch of
 * responses moves to the heap for as long as it is needed. */
#define HTTP_OUT_INLINE 1024
/* Freed connections kept for reuse per server. */
#define HTTP_SPARE_CONNS 32
/* Waiting raw connections served per wakeup of their epoll set. */
#define HTTP_WAIT_BATCH 64

typedef struct http_conn_s http_conn_t;

struct herd_http_private_s {
  herd_http_server_t* server;
  herd_http_handler_cb handler;
  herd_http_close_cb close_cb;
  uint64_t idle_timeout;
  size_t max_header_size;
  size_t max_body_size;
  size_t buf_size;
  llhttp_settings_t settings;
  uv_tcp_t listener;
  uv_timer_t sweep;
  /* Every connection that is not yet freed, open or waiting for its handler
   * to answer after the socket went away. */
  http_conn_t* conns;
  size_t live;
  http_conn_t* spare;
  size_t nspare;
  unsigned listening : 1;
  unsigned listener_open : 1;
  unsigned sweep_open : 1;
  unsigned sweep_active : 1;
  unsigned closing : 1;
  unsigned wait_open : 1;
  /* Raw connections whose request has not come yet wait in an epoll set of
   * their own, which the loop polls as one fd (see conn_arm). */
  int wait_fd;
  uv_poll_t wait_poll;
  /* Whether a new connection's request tends to be there at once: above
   * zero it is read straight away, below it the connection waits first
   * (with every eighth one still tried at once to notice a change). */
  int early;
  unsigned tries;
  /* "Thu, 26 Nov 2026 17:19:09 GMT", valid until loop time date_until. */
  char date[32];
  uint64_t date_until;
};

struct http_conn_s {
  uv_tcp_t tcp;
  llhttp_t parser;
  struct herd_http_private_s* priv;
  http_conn_t* next;
  http_conn_t* prev;
  herd_http_req_t req;
  uint64_t last_active;
  /* The read buffer: [0, parsed) went through llhttp, [parsed, end) waits.
   * While a request head's spans point into it, nothing from span_base on may
   * move or be overwritten. */
  size_t end;
  size_t parsed;
  size_t span_base;
  /* Strings of a request with a body are copied out of the read buffer (the
   * body may be far bigger than it); `heap` holds them, `body` the body. */
  char* heap;
  char* body;
  size_t body_len;
  size_t body_cap;
  size_t head_bytes;
  char* out;
  size_t out_len;
  size_t out_cap;
  int err_status;
  /* While `raw`, the socket is not yet a libuv handle: see conn_start_raw. */
  int fd;
  unsigned raw : 1;
  unsigned head_request : 1; /* the request awaiting its answer is a HEAD */
  unsigned in_spans : 1;
  unsigned in_parser : 1;
  unsigned awaiting : 1; /* the handler has the request, no answer yet */
  unsigned last_was_value : 1;
  unsigned stop_parsing : 1;
  unsigned close_after_write : 1;
  unsigned linger : 1;
  unsigned write_pending : 1;
  unsigned shut : 1;
  unsigned nodelay : 1;
  unsigned reading : 1;
  unsigned eof : 1;
  unsigned closing : 1;
  unsigned dead : 1;       /* handle closed, the handler still owes an answer */
  unsigned armed : 1;      /* raw, waiting in the server's wait_fd set */
  unsigned registered : 1; /* raw, in wait_fd (armed or fired) */
  /* The rest is not cleared on creation: only the few pages a small request
   * touches become resident, which keeps idle connections cheap. */
  herd_http_header_t headers[HTTP_MAX_HEADERS];
  char out_inline[HTTP_OUT_INLINE];
  char buf[];
};

typedef struct {
  uv_write_t req;
  http_conn_t* conn;
  char data[];
} http_write_t;

static void conn_process(http_conn_t* conn);
static void conn_flush(http_conn_t* conn);
static void conn_update_reading(http_conn_t* conn);
static void conn_close(http_conn_t* conn);
static void server_maybe_done(struct herd_http_private_s* priv);

static const char* status_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

/* "Thu, 26 Nov 2026 17:19:09 GMT" for `t` (seconds since the epoch, UTC),
 * 29 characters. Done by hand rather than with gmtime_r() and strftime():
 * those bring the time zone and locale code of libc along (reading
 * /etc/localtime on first use), which a statically linked worker would
 * carry in its resident set for a fixed format in UTC. */
static void format_date(char* out, int64_t t) {
  static const char days[] = "ThuFriSatSunMonTueWed";
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  int64_t day = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  int64_t sec = t - day * 86400;
  /* Civil date from a day count (proleptic Gregorian, March-based years). */
  int64_t z = day + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t mday = doy - (153 * mp + 2) / 5 + 1;
  int64_t month = mp < 10 ? mp + 3 : mp - 9;
  int64_t year = yoe + era * 400 + (month <= 2);
  int wday = (int)(((day % 7) + 7) % 7);
  int hh = (int)(sec / 3600), mm = (int)(sec / 60 % 60), ss = (int)(sec % 60);
  if (year < 0 || year > 9999)
    year = 0;
  memcpy(out, days + wday * 3, 3);
  out[3] = ',';
  out[4] = ' ';
  out[5] = (char)('0' + mday / 10);
  out[6] = (char)('0' + mday % 10);
  out[7] = ' ';
  memcpy(out + 8, months + (month - 1) * 3, 3);
  out[11] = ' ';
  out[12] = (char)('0' + year / 1000);
  out[13] = (char)('0' + year / 100 % 10);
  out[14] = (char)('0' + year / 10 % 10);
  out[15] = (char)('0' + year % 10);
  out[16] = ' ';
  out[17] = (char)('0' + hh / 10);
  out[18] = (char)('0' + hh % 10);
  out[19] = ':';
  out[20] = (char)('0' + mm / 10);
  out[21] = (char)('0' + mm % 10);
  out[22] = ':';
  out[23] = (char)('0' + ss / 10);
  out[24] = (char)('0' + ss % 10);
  memcpy(out + 25, " GMT", 5);
}

/* The Date header changes once a second; formatting it per response would
 * cost more than the rest of the response head. */
static const char* server_date(struct herd_http_private_s* priv) {
  uint64_t now = uv_now(priv->server->loop);
  if (now >= priv->date_until) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    format_date(priv->date, (int64_t)ts.tv_sec);
    priv->date_until = now + 1000 - (uint64_t)(ts.tv_nsec / 1000000);
  }
  return priv->date;
}

static int out_reserve(http_conn_t* conn, size_t n) {
  size_t cap;
  char* p;
  if (conn->out_cap - conn->out_len >= n)
    return 0;
  cap = conn->out_cap * 2;
  while (cap - conn->out_len < n)
    cap *= 2;
  if (conn->out == conn->out_inline) {
    p = herd__malloc(cap);
    if (p == NULL)
      return UV_ENOMEM;
    memcpy(p, conn->out, conn->out_len);
  } else {
    p = herd__realloc(conn->out, cap);
    if (p == NULL)
      return UV_ENOMEM;
  }
  conn->out = p;
  conn->out_cap = cap;
  return 0;
}

static char* put(char* p, const char* s, size_t n) {
  memcpy(p, s, n);
  return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char* put_uint(char* p, size_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0)
    *p++ = tmp[--n];
  return p;
}

/* Appends one whole response to the connection's output. `ka` says whether
 * the connection stays open after it; HTTP/1.0 clients need that said. */
static int conn_append_response(http_conn_t* conn, int status,
                                const char* content_type,
                                const herd_http_header_t* headers,
                                size_t header_count, const void* body,
                                size_t body_len, int ka, int http_minor,
                                int head_only) {
  const char* reason = status_reason(status);
  size_t reason_len = strlen(reason);
  size_t need;
  size_t i;
  int no_body =
      (status >= 100 && status < 200) || status == 204 || status == 304;
  char* p;
  int err;

  need = 64 + reason_len + 29 + 24 + 32;
  if (content_type != NULL)
    need += 16 + strlen(content_type);
  for (i = 0; i < header_count; i++)
    need += headers[i].name_len + headers[i].value_len + 4;
  if (!no_body && !head_only)
    need += body_len;
  err = out_reserve(conn, need);
  if (err != 0)
    return err;

  p = conn->out + conn->out_len;
  p = PUT_LIT(p, "HTTP/1.1 ");
  *p++ = (char)('0' + status / 100);
  *p++ = (char)('0' + status / 10 % 10);
  *p++ = (char)('0' + status % 10);
  *p++ = ' ';
  p = put(p, reason, reason_len);
  p = PUT_LIT(p, "\r\n");
  if (content_type != NULL) {
    p = PUT_LIT(p, "Content-Type: ");
    p = put(p, content_type, strlen(content_type));
    p = PUT_LIT(p, "\r\n");
  }
  for (i = 0; i < header_count; i++) {
    p = put(p, headers[i].name, headers[i].name_len);
    p = PUT_LIT(p, ": ");
    p = put(p, headers[i].value, headers[i].value_len);
    p = PUT_LIT(p, "\r\n");
  }
  if (!no_body) {
    p = PUT_LIT(p, "Content-Length: ");
    p = put_uint(p, body_len);
    p = PUT_LIT(p, "\r\n");
  }
  p = PUT_LIT(p, "Date: ");
  p = put(p, server_date(conn->priv), 29);
  if (!ka)
    p = PUT_LIT(p, "\r\nConnection: close\r\n\r\n");
  else if (http_minor == 0)
    p = PUT_LIT(p, "\r\nConnection: keep-alive\r\n\r\n");
  else
    p = PUT_LIT(p, "\r\n\r\n");
  if (!no_body && !head_only && body_len > 0)
    p = put(p, body, body_len);
  conn->out_len = (size_t)(p - conn->out);
  return 0;
}

/* A request the parser refused: answer with `status`, then close once the
 * client has stopped sending (so that it reads the answer instead of a
 * reset). */
static void conn_fail(http_conn_t* conn, int status) {
  conn->stop_parsing = 1;
  conn->close_after_write = 1;
  conn->linger = 1;
  if (conn_append_response(conn, status, NULL, NULL, 0, NULL, 0, 0, 1, 0) != 0)
    conn_close(conn);
}

static http_conn_t* parser_conn(llhttp_t* p) {
  return HERD_CONTAINER_OF(p, http_conn_t, parser);
}

/* Every span of a head is contiguous in the read buffer because the buffer
 * never moves while spans point into it, so a span continued in the next
 * read just grows. */
static int head_count(http_conn_t* conn, const char* at, size_t len) {
  if (!conn->in_spans) {
    conn->in_spans = 1;
    conn->span_base = (size_t)(at - conn->buf);
  }
  conn->head_bytes += len;
  if (conn->head_bytes > conn->priv->max_header_size) {
    conn->err_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(llhttp_t* p) {
  http_conn_t* conn = parser_conn(p);
  herd_http_req_t* req = &conn->req;
  req->url = NULL;
  req->url_len = 0;
  req->header_count = 0;
  req->body = NULL;
  req->body_len = 0;
  conn->head_bytes = 0;
  conn->body_len = 0;
  conn->last_was_value = 1;
  return 0;
}

static int on_url(llhttp_t* p, const char* at, size_t len) {
  http_conn_t* conn = parser_conn(p);
  if (head_count(conn, at, len) != 0)
    return -1;
  if (conn->req.url == NULL)
    conn->req.url = at;
  conn->req.url_len += len;
  return 0;
}

static int on_header_field(llhttp_t* p, const char* at, size_t len) {
  http_conn_t* conn = parser_conn(p);
  herd_http_req_t* req = &conn->req;
  herd_http_header_t* h;
  if (head_count(conn, at, len) != 0)
    return -1;
  if (conn->last_was_value) {
    if (req->header_count == HTTP_MAX_HEADERS) {
      conn->err_status = 431;
      return -1;
    }
    h = &conn->headers[req->header_count++];
    h->name = at;
    h->name_len = 0;
    h->value = NULL;
    h->value_len = 0;
    conn->last_was_value = 0;
  }
  conn->headers[req->header_count - 1].name_len += len;
  return 0;
}

static int on_header_value(llhttp_t* p, const char* at, size_t len) {
  http_conn_t* conn = parser_conn(p);
  herd_http_header_t* h;
  if (head_count(conn, at, len) != 0)
    return -1;
  h = &conn->headers[conn->req.header_count - 1];
  if (h->value == NULL)
    h->value = at;
  h->value_len += len;
  conn->last_was_value = 1;
  return 0;
}

/* A value may be empty (no value span at all); this marks the end of every
 * header line, so that the next name starts a new slot. */
static int on_header_value_complete(llhttp_t* p) {
  parser_conn(p)->last_was_value = 1;
  return 0;
}

static int on_headers_complete(llhttp_t* p) {
  http_conn_t* conn = parser_conn(p);
  herd_http_header_t* h;
  int expect = 0;
  size_t i;
  /* A header with an empty value never got a value span. */
  for (i = 0; i < conn->req.header_count; i++) {
    h = &conn->headers[i];
    if (h->value == NULL)
      h->value = h->name + h->name_len;
    else if (h->name_len == 6 && h->value_len == 12)
      expect = 1;
  }
  if (conn->req.url == NULL)
    conn->req.url = "";
  if ((p->flags & F_CONTENT_LENGTH) &&
      p->content_length > conn->priv->max_body_size) {
    conn->err_status = 413;
    return -1;
  }
  /* A client that asks first gets its go-ahead before the body; it goes out
   * with the writes of this read, after the answers to earlier requests.
   * Only a head with a header of the right lengths is searched. */
  for (i = 0; expect && i < conn->req.header_count; i++) {
    h = &conn->headers[i];
    if (h->name_len == 6 && strncasecmp(h->name, "expect", 6) == 0 &&
        h->value_len == 12 && strncasecmp(h->value, "100-continue", 12) == 0 &&
        out_reserve(conn, 25) == 0) {
      memcpy(conn->out + conn->out_len, "HTTP/1.1 100 Continue\r\n\r\n", 25);
      conn->out_len += 25;
      break;
    }
  }
  return 0;
}

/* Moves the head's strings out of the read buffer so that the buffer can be
 * reused for the body. Only requests with a body pay for this. */
static int conn_detach_head(http_conn_t* conn) {
  herd_http_req_t* req = &conn->req;
  size_t total = req->url_len + 1;
  size_t i;
  char* heap;
  char* q;
  for (i = 0; i < req->header_count; i++)
    total += conn->headers[i].name_len + conn->headers[i].value_len;
  heap = herd__malloc(total);
  if (heap == NULL)
    return UV_ENOMEM;
  q = heap;
  memcpy(q, req->url, req->url_len);
  req->url = q;
  q += req->url_len;
  for (i = 0; i < req->header_count; i++) {
    herd_http_header_t* h = &conn->headers[i];
    memcpy(q, h->name, h->name_len);
    h->name = q;
    q += h->name_len;
    memcpy(q, h->value, h->value_len);
    h->value = q;
    q += h->value_len;
  }
  herd__free(conn->heap);
  conn->heap = heap;
  conn->in_spans = 0;
  return 0;
}

static int on_body(llhttp_t* p, const char* at, size_t len) {
  http_conn_t* conn = parser_conn(p);
  size_t cap;
  char* b;
  if (conn->in_spans && conn_detach_head(conn) != 0) {
    conn->err_status = 500;
    return -1;
  }
  if (conn->body_len + len > conn->priv->max_body_size) {
    conn->err_status = 413;
    return -1;
  }
  if (conn->body_cap - conn->body_len < len) {
    cap = conn->body_cap ? conn->body_cap : 1024;
    while (cap - conn->body_len < len)
      cap *= 2;
    b = herd__realloc(conn->body, cap);
    if (b == NULL) {
      conn->err_status = 500;
      return -1;
    }
    conn->body = b;
    conn->body_cap = cap;
  }
  memcpy(conn->body + conn->body_len, at, len);
  conn->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t* p) {
  http_conn_t* conn = parser_conn(p);
  struct herd_http_private_s* priv = conn->priv;
  herd_http_req_t* req = &conn->req;

  req->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
  conn->head_request = llhttp_get_method(p) == HTTP_HEAD;
  req->http_minor = llhttp_get_http_minor(p);
  req->keep_alive =
      llhttp_should_keep_alive(p) && !priv->closing && !llhttp_get_upgrade(p);
  req->headers = conn->headers;
  req->body = conn->body_len ? conn->body : "";
  req->body_len = conn->body_len;
  if (!req->keep_alive)
    conn->stop_parsing = 1;
  conn->awaiting = 1;
  priv->handler(req);
  /* Parsing goes on in this call only when the answer is already queued;
   * otherwise herd_http_respond() resumes it, which keeps the request's
   * strings in place and the responses in order. */
  if (conn->awaiting || conn->stop_parsing)
    return HPE_PAUSED;
  return 0;
}

static const llhttp_settings_t* http_settings(void) {
  static llhttp_settings_t settings;
  static int done;
  if (!done) {
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    done = 1;
  }
  return &settings;
}

static void conn_process(http_conn_t* conn) {
  llhttp_errno_t err;
  const char* start;
  conn->in_parser = 1;
  while (!conn->awaiting && !conn->stop_parsing && !conn->closing &&
         conn->parsed < conn->end) {
    start = conn->buf + conn->parsed;
    err = llhttp_execute(&conn->parser, start, conn->end - conn->parsed);
    if (err == HPE_OK) {
      conn->parsed = conn->end;
    } else if (err == HPE_PAUSED) {
      conn->parsed = (size_t)(llhttp_get_error_pos(&conn->parser) - conn->buf);
      llhttp_resume(&conn->parser);
    } else {
      conn->parsed = conn->end;
      conn_fail(conn, conn->err_status ? conn->err_status : 400);
    }
  }
  conn->in_parser = 0;
  if (!conn->in_spans && !conn->awaiting && conn->parsed == conn->end) {
    conn->parsed = 0;
    conn->end = 0;
  }
  if (conn->eof && !conn->awaiting) {
    conn->stop_parsing = 1;
    conn->close_after_write = 1;
  }
}

/* Connections come and go at the rate of requests under `Connection:
 * close`; a few freed ones are kept for reuse (their buffers' pages stay
 * resident, which a new connection would touch anyway). */
static void conn_free(http_conn_t* conn) {
  struct herd_http_private_s* priv = conn->priv;
  if (conn->prev != NULL)
    conn->prev->next = conn->next;
  else
    priv->conns = conn->next;
  if (conn->next != NULL)
    conn->next->prev = conn->prev;
  if (conn->out != conn->out_inline)
    herd__free(conn->out);
  herd__free(conn->heap);
  herd__free(conn->body);
  if (priv->nspare < HTTP_SPARE_CONNS && !priv->closing) {
    conn->next = priv->spare;
    priv->spare = conn;
    priv->nspare++;
  } else {
    herd__free(conn);
  }
  priv->live--;
  server_maybe_done(priv);
}

/* The socket is closed: the connection goes unless the handler still owes
 * an answer (herd_http_respond() frees it then). */
static void conn_closed(http_conn_t* conn) {
  conn->priv->server->connections--;
  if (conn->awaiting) {
    conn->dead = 1;
    return;
  }
  conn_free(conn);
}

static void on_close(uv_handle_t* handle) {
  conn_closed((http_conn_t*)handle);
}

/* A raw connection's socket closes at once; conn_start_raw() finishes the
 * rest once the call that closed it has returned. */
static void conn_close(http_conn_t* conn) {
  if (conn->closing)
    return;
  conn->closing = 1;
  conn->stop_parsing = 1;
  if (conn->raw) {
    if (conn->armed) {
      /* Waiting, so no call is serving it: it goes at once, and out of the
       * epoll set, which a socket still open in another process (the
       * primary's copy under rr) would otherwise keep it in. */
      epoll_ctl(conn->priv->wait_fd, EPOLL_CTL_DEL, conn->fd, NULL);
      conn->armed = 0;
      close(conn->fd);
      conn->fd = -1;
      conn_closed(conn);
      return;
    }
    close(conn->fd);
    conn->fd = -1;
    return;
  }
  uv_close((uv_handle_t*)&conn->tcp, on_close);
}

static void on_write(uv_write_t* req, int status) {
  http_write_t* w = (http_write_t*)req;
  http_conn_t* conn = w->conn;
  herd__free(w);
  conn->write_pending = 0;
  if (conn->closing)
    return;
  if (status < 0) {
    conn_close(conn);
    return;
  }
  conn->last_active = uv_now(conn->tcp.loop);
  conn_flush(conn);
  conn_update_reading(conn);
}

static void on_shutdown(uv_shutdown_t* req, int status) {
  (void)status;
  herd__free(req);
}

/* conn_flush() of a raw connection: what the socket takes now is sent, and
 * a connection that is done closes; anything else (a full socket, a
 * lingering close) is left to libuv once conn_start_raw() hands the socket
 * over. */
static void conn_flush_raw(http_conn_t* conn) {
  ssize_t n;
  if (conn->closing)
    return;
  if (conn->out_len > 0) {
    do
      n = send(conn->fd, conn->out, conn->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      conn_close(conn);
      return;
    }
    if (n < 0)
      n = 0;
    conn->out_len -= (size_t)n;
    if (conn->out_len > 0) {
      memmove(conn->out, conn->out + n, conn->out_len);
      return;
    }
  }
  if (conn->close_after_write && !conn->awaiting && !conn->linger)
    conn_close(conn);
}

static void conn_flush(http_conn_t* conn) {
  uv_buf_t buf;
  http_write_t* w;
  size_t rest;
  int n;
  if (conn->raw) {
    conn_flush_raw(conn);
    return;
  }
  if (conn->write_pending || conn->closing)
    return;
  if (conn->out_len > 0) {
    buf = uv_buf_init(conn->out, (unsigned)conn->out_len);
    n = uv_try_write((uv_stream_t*)&conn->tcp, &buf, 1);
    if (n == UV_EAGAIN)
      n = 0;
    if (n < 0) {
      conn_close(conn);
      return;
    }
    rest = conn->out_len - (size_t)n;
    if (rest > 0) {
      /* The socket is full: the rest goes out on its own copy so that more
       * responses can be queued meanwhile. */
      w = herd__malloc(sizeof(*w) + rest);
      if (w == NULL) {
        conn_close(conn);
        return;
      }
      w->conn = conn;
      memcpy(w->data, conn->out + n, rest);
      buf = uv_buf_init(w->data, (unsigned)rest);
      if (uv_write(&w->req, (uv_stream_t*)&conn->tcp, &buf, 1, on_write) != 0) {
        herd__free(w);
        conn_close(conn);
        return;
      }
      conn->write_pending = 1;
    }
    conn->out_len = 0;
    if (conn->out != conn->out_inline && conn->out_cap > 4 * HTTP_OUT_INLINE) {
      herd__free(conn->out);
      conn->out = conn->out_inline;
      conn->out_cap = HTTP_OUT_INLINE;
    }
    if (conn->write_pending)
      return;
  }
  if (conn->close_after_write && !conn->awaiting) {
    if (conn->shut)
      return;
    if (conn->linger && !conn->eof) {
      uv_shutdown_t* sreq = herd__malloc(sizeof(*sreq));
      conn->shut = 1;
      if (sreq != NULL &&
          uv_shutdown(sreq, (uv_stream_t*)&conn->tcp, on_shutdown) == 0)
        return;
      herd__free(sreq);
    }
    conn_close(conn);
  }
}

static void on_alloc(uv_handle_t* handle, size_t size, uv_buf_t* buf) {
  http_conn_t* conn = (http_conn_t*)handle;
  size_t keep;
  (void)size;
  /* Whatever the parser is done with and no request points into is dropped
   * by moving the unparsed rest to the front. */
  if (!conn->awaiting) {
    keep = conn->in_spans ? conn->span_base : conn->parsed;
    if (keep > 0) {
      size_t delta = keep;
      size_t i;
      memmove(conn->buf, conn->buf + keep, conn->end - keep);
      conn->end -= delta;
      conn->parsed -= delta;
      if (conn->in_spans) {
        conn->span_base -= delta;
        if (conn->req.url != NULL && conn->req.url_len > 0)
          conn->req.url -= delta;
        for (i = 0; i < conn->req.header_count; i++) {
          conn->headers[i].name -= delta;
          if (conn->headers[i].value != NULL)
            conn->headers[i].value -= delta;
        }
      }
    }
  }
  buf->base = conn->buf + conn->end;
  buf->len = conn->priv->buf_size - conn->end;
}

static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  http_conn_t* conn = (http_conn_t*)stream;
  (void)buf;
  if (nread == 0 || conn->closing)
    return;
  if (nread == UV_ENOBUFS && !conn->awaiting) {
    /* The head filled the whole buffer without tripping the count. The
     * buffer is emptied so that reading (and dropping) can go on until the
     * client has seen the answer and closes. */
    conn->end = 0;
    conn->parsed = 0;
    conn->in_spans = 0;
    conn_fail(conn, 431);
    conn_flush(conn);
    return;
  }
  if (nread < 0) {
    conn->reading = 0;
    if (nread != UV_EOF || conn->linger) {
      conn_close(conn);
      return;
    }
    conn->eof = 1;
    if (!conn->awaiting) {
      /* Complete requests still in the buffer are answered first. */
      conn_process(conn);
      conn->stop_parsing = 1;
      conn->close_after_write = 1;
      conn_flush(conn);
    }
    return;
  }
  conn->end += (size_t)nread;
  conn->last_active = uv_now(conn->priv->server->loop);
  if (conn->stop_parsing) {
    /* After a refused request or a final response the rest is dropped. */
    conn->end = conn->parsed;
    return;
  }
  conn_process(conn);
  conn_flush(conn);
  conn_update_reading(conn);
}

/* Reading pauses while a response is being written the slow way (the client
 * does not read) and while the buffer is full behind an unanswered request. */
static void conn_update_reading(http_conn_t* conn) {
  int want;
  if (conn->closing || conn->eof || conn->raw)
    return;
  want = !conn->write_pending &&
         !(conn->awaiting && conn->end == conn->priv->buf_size);
  if (want && !conn->reading) {
    if (uv_read_start((uv_stream_t*)&conn->tcp, on_alloc, on_read) == 0)
      conn->reading = 1;
  } else if (!want && conn->reading) {
    uv_read_stop((uv_stream_t*)&conn->tcp);
    conn->reading = 0;
  }
}

static uint64_t sweep_interval(struct herd_http_private_s* priv) {
  uint64_t ms = priv->idle_timeout / 4;
  if (ms < 10)
    ms = 10;
  if (ms > 1000)
    ms = 1000;
  return ms;
}

/* One coarse timer per server instead of one per connection or request:
 * connections that have neither sent nor received anything for
 * idle_timeout, and wait for nothing from the handler, are closed. */
static void on_sweep(uv_timer_t* timer) {
  struct herd_http_private_s* priv = timer->data;
  uint64_t now = uv_now(timer->loop);
  http_conn_t* conn;
  http_conn_t* next;
  for (conn = priv->conns; conn != NULL; conn = next) {
    next = conn->next;
    if (conn->closing || conn->awaiting)
      continue;
    if (now - conn->last_active >= priv->idle_timeout)
      conn_close(conn);
  }
}

static void sweep_update(struct herd_http_private_s* priv) {
  uint64_t ms;
  if (!priv->sweep_open)
    return;
  if (priv->server->connections > 0 && !priv->sweep_active) {
    ms = sweep_interval(priv);
    uv_timer_start(&priv->sweep, on_sweep, ms, ms);
    priv->sweep_active = 1;
  } else if (priv->server->connections == 0 && priv->sweep_active) {
    uv_timer_stop(&priv->sweep);
    priv->sweep_active = 0;
  }
}

static void on_listener_close(uv_handle_t* handle) {
  struct herd_http_private_s* priv = handle->data;
  priv->listener_open = 0;
  server_maybe_done(priv);
}

static void on_sweep_close(uv_handle_t* handle) {
  struct herd_http_private_s* priv = handle->data;
  priv->sweep_open = 0;
  server_maybe_done(priv);
}

static void on_wait_close(uv_handle_t* handle) {
  struct herd_http_private_s* priv = handle->data;
  close(priv->wait_fd);
  priv->wait_fd = -1;
  priv->wait_open = 0;
  server_maybe_done(priv);
}

static void server_maybe_done(struct herd_http_private_s* priv) {
  herd_http_server_t* server = priv->server;
  herd_http_close_cb cb;
  if (!priv->closing) {
    sweep_update(priv);
    return;
  }
  if (priv->live > 0 || priv->listener_open)
    return;
  if (priv->wait_open) {
    if (!uv_is_closing((uv_handle_t*)&priv->wait_poll))
      uv_close((uv_handle_t*)&priv->wait_poll, on_wait_close);
    return;
  }
  if (priv->sweep_open) {
    if (!uv_is_closing((uv_handle_t*)&priv->sweep))
      uv_close((uv_handle_t*)&priv->sweep, on_sweep_close);
    return;
  }
  while (priv->spare != NULL) {
    http_conn_t* conn = priv->spare;
    priv->spare = conn->next;
    herd__free(conn);
  }
  cb = priv->close_cb;
  server->priv = NULL;
  herd__free(priv);
  if (cb != NULL)
    cb(server);
}

/* Takes a freshly initialised, connected handle into service. On error the
 * connection is closed (and freed) here.
 *
 * A new connection usually has its request waiting already: the client
 * wrote it right after connecting, and under round-robin the primary passed
 * the socket on only after accepting it. Reading it at once answers a
 * `Connection: close` request without the socket ever being added to epoll;
 * only when nothing is there yet does libuv's reading take over, at the
 * cost of one read() that finds nothing. */
static void conn_register(struct herd_http_private_s* priv, http_conn_t* conn) {
  conn->last_active = uv_now(priv->server->loop);
  conn->next = priv->conns;
  if (priv->conns != NULL)
    priv->conns->prev = conn;
  priv->conns = conn;
  priv->live++;
  priv->server->connections++;
  sweep_update(priv);
}

static int conn_start(struct herd_http_private_s* priv, http_conn_t* conn) {
  uv_stream_t* stream = (uv_stream_t*)&conn->tcp;
  uv_os_fd_t fd;
  ssize_t n;
  int err;
  conn_register(priv, conn);
  err = uv_fileno((uv_handle_t*)&conn->tcp, &fd);
  if (err == 0) {
    do
      n = read(fd, conn->buf, priv->buf_size);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
      on_read(stream, n, NULL);
      return 0;
    }
    if (n == 0) {
      on_read(stream, UV_EOF, NULL);
      return 0;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      err = -errno;
  }
  if (err == 0)
    err = uv_read_start(stream, on_alloc, on_read);
  if (err != 0) {
    conn_close(conn);
    return err;
  }
  conn->reading = 1;
  return 0;
}

static int conn_serve_raw(struct herd_http_private_s* priv, http_conn_t* conn,
                          int tried);

static void on_wait_ready(uv_poll_t* poll, int status, int events) {
  struct herd_http_private_s* priv = poll->data;
  struct epoll_event ev[HTTP_WAIT_BATCH];
  http_conn_t* conn;
  int n, i;
  (void)status;
  (void)events;
  do
    n = epoll_wait(priv->wait_fd, ev, HTTP_WAIT_BATCH, 0);
  while (n < 0 && errno == EINTR);
  for (i = 0; i < n; i++) {
    /* A handler that closed the server closed the waiting connections
     * still in `ev` with it. */
    if (priv->closing)
      break;
    conn = ev[i].data.ptr;
    conn->armed = 0;
    conn_serve_raw(priv, conn, 0);
  }
}

static int wait_open(struct herd_http_private_s* priv) {
  int fd, err;
  fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0)
    return -errno;
  err = uv_poll_init(priv->server->loop, &priv->wait_poll, fd);
  if (err != 0) {
    close(fd);
    return err;
  }
  priv->wait_poll.data = priv;
  priv->wait_fd = fd;
  priv->wait_open = 1;
  /* The sweep timer keeps the loop alive while any connection is open. */
  uv_unref((uv_handle_t*)&priv->wait_poll);
  /* Should this fail, the set stays (closed with the server) and
   * connections take libuv's way. */
  return uv_poll_start(&priv->wait_poll, UV_READABLE, on_wait_ready);
}

/* A raw connection whose request is not there yet waits for it the way
 * nginx's do: one epoll_ctl() (one-shot, so it fires once), then the read,
 * the answer and the close, which takes the socket out of the set by
 * itself. Handed to libuv instead, it cost fcntl(), ioctl(), two
 * epoll_ctl() and a read() more. The set is the server's own, polled by the
 * loop as one fd: libuv drops events of fds it does not know. */
static int conn_arm(struct herd_http_private_s* priv, http_conn_t* conn) {
  struct epoll_event ev;
  int err;
  if (priv->closing)
    return UV_ECANCELED;
  if (!priv->wait_open) {
    err = wait_open(priv);
    if (err != 0)
      return err;
  }
  if (!uv_is_active((uv_handle_t*)&priv->wait_poll))
    return UV_EINVAL;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN | EPOLLONESHOT;
  ev.data.ptr = conn;
  if (epoll_ctl(priv->wait_fd, conn->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD,
                conn->fd, &ev) != 0)
    return -errno;
  conn->registered = 1;
  conn->armed = 1;
  return 0;
}

/* Reads what a raw connection has and answers it; what cannot finish here
 * (no request yet: it waits in the set; an unanswered request, a full
 * socket, a keep-alive connection: libuv takes the socket) is set up to
 * go on later. `tried` says whether this read is the try right after the
 * accept, whose outcome steers the next connections. */
static int conn_serve_raw(struct herd_http_private_s* priv, http_conn_t* conn,
                          int tried) {
  uv_stream_t* stream = (uv_stream_t*)&conn->tcp;
  uv_loop_t* loop = priv->server->loop;
  int fd = conn->fd;
  ssize_t n;
  int flags;
  int err = 0;
  do
    n = recv(fd, conn->buf + conn->end, priv->buf_size - conn->end,
             MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (tried) {
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (priv->early > -8)
        priv->early--;
    } else if (priv->early < 8) {
      priv->early++;
    }
  }
  if (n > 0) {
    on_read(stream, n, NULL);
  } else if (n == 0) {
    on_read(stream, UV_EOF, NULL);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    err = -errno;
    conn_close(conn);
  } else if (conn_arm(priv, conn) == 0) {
    return 0;
  }
  if (conn->closing) {
    conn_closed(conn);
    return err;
  }
  /* Sockets received over IPC already are close-on-exec; only a socket that
   * is not pays for the second fcntl(). */
  flags = fcntl(fd, F_GETFD);
  if (flags >= 0 && !(flags & FD_CLOEXEC))
    fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  err = uv_tcp_init(loop, &conn->tcp);
  if (err != 0) {
    conn_close(conn);
    conn_closed(conn);
    return err;
  }
  conn->raw = 0;
  conn->fd = -1;
  err = uv_tcp_open(&conn->tcp, fd);
  if (err != 0) {
    close(fd);
    conn->closing = 1;
    conn->stop_parsing = 1;
    uv_close((uv_handle_t*)&conn->tcp, on_close);
    return err;
  }
  conn_flush(conn);
  conn_update_reading(conn);
  return 0;
}

/* conn_start() for herd_http_server_adopt(): the socket is served as a
 * plain fd first. A request that is there at once (usual under rr, where
 * the primary passes a socket on only after accepting it) is read,
 * answered and, under `Connection: close`, closed with recv(), send() and
 * close() alone: the socket never becomes a libuv handle, which spares the
 * fcntl() for close-on-exec, the ioctl() of uv_tcp_open() and the
 * epoll_ctl() calls libuv makes even for a socket it barely polled. A
 * connection accepted by the worker itself usually comes before its
 * request; when most recent ones did, the read that would find nothing is
 * skipped and the connection waits in the set at once (conn_arm). */
static int conn_start_raw(struct herd_http_private_s* priv, http_conn_t* conn,
                          int fd) {
  conn->raw = 1;
  conn->fd = fd;
  conn_register(priv, conn);
  if (priv->early < 0 && (++priv->tries & 7) != 0 && conn_arm(priv, conn) == 0)
    return 0;
  return conn_serve_raw(priv, conn, 1);
}

static http_conn_t* conn_new(struct herd_http_private_s* priv) {
  http_conn_t* conn = priv->spare;
  if (conn != NULL) {
    priv->spare = conn->next;
    priv->nspare--;
  } else {
    conn = herd__malloc(sizeof(*conn) + priv->buf_size);
    if (conn == NULL)
      return NULL;
  }
  memset(conn, 0, offsetof(http_conn_t, headers));
  conn->priv = priv;
  conn->req.server = priv->server;
  conn->req.conn = conn;
  conn->out = conn->out_inline;
  conn->out_cap = HTTP_OUT_INLINE;
  llhttp_init(&conn->parser, HTTP_REQUEST, &priv->settings);
  return conn;
}

/* A handle that never started serving is closed with this and freed. */
static void on_close_unstarted(uv_handle_t* handle) {
  herd__free(handle);
}

/* A client that resets its connection must not kill the server on the next
 * write: like Node.js, herd ignores SIGPIPE unless the program handles it. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
    return;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);
}

int herd_http_server_init(uv_loop_t* loop, herd_http_server_t* server,
                          herd_http_handler_cb handler,
                          const herd_http_options_t* options) {
  struct herd_http_private_s* priv;
  int err;
  if (loop == NULL || server == NULL || handler == NULL)
    return UV_EINVAL;
  priv = herd__malloc(sizeof(*priv));
  if (priv == NULL)
    return UV_ENOMEM;
  memset(priv, 0, sizeof(*priv));
  priv->server = server;
  priv->wait_fd = -1;
  priv->handler = handler;
  priv->idle_timeout = 5000;
  priv->max_header_size = 16 * 1024;
  priv->max_body_size = 1024 * 1024;
  if (options != NULL) {
    if (options->idle_timeout != 0)
      priv->idle_timeout = options->idle_timeout;
    if (options->max_header_size != 0)
      priv->max_header_size = options->max_header_size;
    if (options->max_body_size != 0)
      priv->max_body_size = options->max_body_size;
  }
  if (priv->max_header_size > 1024 * 1024) {
    herd__free(priv);
    return UV_EINVAL;
  }
  priv->buf_size = priv->max_header_size + HTTP_BUF_SLACK;
  ignore_sigpipe();
  priv->settings = *http_settings();
  err = uv_timer_init(loop, &priv->sweep);
  if (err != 0) {
    herd__free(priv);
    return err;
  }
  priv->sweep.data = priv;
  priv->sweep_open = 1;
  memset(server, 0, sizeof(*server));
  server->loop = loop;
  server->priv = priv;
  return 0;
}

static void on_connection(uv_stream_t* listener, int status) {
  struct herd_http_private_s* priv = listener->data;
  /* A failed accept (EMFILE, ...) costs that one connection only. */
  if (status < 0 || priv->closing)
    return;
  herd_http_server_accept(priv->server, listener);
}

int herd_http_server_listen(herd_http_server_t* server, const char* host,
                            int port, int backlog) {
  struct herd_http_private_s* priv;
  struct sockaddr_storage addr;
  int err;
  if (server == NULL || server->priv == NULL || port < 0 || port > 65535)
    return UV_EINVAL;
  priv = server->priv;
  if (priv->listening || priv->listener_open || priv->closing)
    return UV_EINVAL;
  if (host == NULL)
    host = "0.0.0.0";
  if (uv_ip4_addr(host, port, (struct sockaddr_in*)&addr) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6*)&addr) != 0)
    return UV_EINVAL;
  if (backlog <= 0)
    backlog = 511;
  err = uv_tcp_init(server->loop, &priv->listener);
  if (err != 0)
    return err;
  priv->listener.data = priv;
  priv->listener_open = 1;
  err = uv_tcp_bind(&priv->listener, (const struct sockaddr*)&addr, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t*)&priv->listener, backlog, on_connection);
  if (err != 0)
    goto fail;
  priv->listening = 1;
  return 0;

fail:
  uv_close((uv_handle_t*)&priv->listener, on_listener_close);
  return err;
}

int herd_http_server_port(const herd_http_server_t* server) {
  struct sockaddr_storage addr;
  int len = sizeof(addr);
  if (server == NULL || server->priv == NULL || !server->priv->listening)
    return UV_EINVAL;
  if (uv_tcp_getsockname(&server->priv->listener, (struct sockaddr*)&addr,
                         &len) != 0)
    return UV_EINVAL;
  if (addr.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6*)&addr)->sin6_port);
  return ntohs(((struct sockaddr_in*)&addr)->sin_port);
}

int herd_http_server_accept(herd_http_server_t* server, uv_stream_t* listener) {
  struct herd_http_private_s* priv;
  http_conn_t* conn;
  int err;
  if (server == NULL || server->priv == NULL || listener == NULL)
    return UV_EINVAL;
  priv = server->priv;
  if (priv->closing)
    return UV_EINVAL;
  conn = conn_new(priv);
  if (conn == NULL)
    return UV_ENOMEM;
  err = uv_tcp_init(server->loop, &conn->tcp);
  if (err != 0) {
    herd__free(conn);
    return err;
  }
  err = uv_accept(listener, (uv_stream_t*)&conn->tcp);
  if (err != 0) {
    uv_close((uv_handle_t*)&conn->tcp, on_close_unstarted);
    return err;
  }
  return conn_start(priv, conn);
}

int herd_http_server_adopt(herd_http_server_t* server, int fd) {
  struct herd_http_private_s* priv;
  http_conn_t* conn;
  if (server == NULL || server->priv == NULL || fd < 0 ||
      server->priv->closing) {
    if (fd >= 0)
      close(fd);
    return UV_EINVAL;
  }
  priv = server->priv;
  conn = conn_new(priv);
  if (conn == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  return conn_start_raw(priv, conn, fd);
}

static int respond(herd_http_req_t* req, int status, const char* content_type,
                   const herd_http_header_t* headers, size_t header_count,
                   const void* body, size_t body_len) {
  http_conn_t* conn;
  struct herd_http_private_s* priv;
  int err;
  int head_only;
  if (req == NULL || req->conn == NULL || status < 100 || status > 999 ||
      (body == NULL && body_len > 0) || (headers == NULL && header_count > 0))
    return UV_EINVAL;
  conn = req->conn;
  if (!conn->awaiting)
    return UV_EINVAL;
  priv = conn->priv;
  priv->server->requests++;
  conn->awaiting = 0;
  conn->in_spans = 0;
  if (conn->dead) {
    /* The client went away while the handler worked on its request. */
    conn_free(conn);
    return 0;
  }
  if (priv->closing)
    req->keep_alive = 0;
  head_only = conn->head_request;
  err = conn_append_response(conn, status, content_type, headers, header_count,
                             body, body_len, req->keep_alive, req->http_minor,
                             head_only);
  if (err != 0) {
    conn_close(conn);
    return 0;
  }
  if (conn->heap != NULL) {
    herd__free(conn->heap);
    conn->heap = NULL;
  }
  if (conn->body_cap > 64 * 1024) {
    herd__free(conn->body);
    conn->body = NULL;
    conn->body_cap = 0;
  }
  conn->body_len = 0;
  if (!req->keep_alive) {
    conn->stop_parsing = 1;
    conn->close_after_write = 1;
  } else if (!conn->nodelay) {
    /* Like nginx, only connections that stay open pay for TCP_NODELAY: the
     * first response of a connection never waits for Nagle (nothing is in
     * flight yet), later ones would wait for the client's delayed ACK. */
    if (conn->raw) {
      int on = 1;
      setsockopt(conn->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    } else {
      uv_tcp_nodelay(&conn->tcp, 1);
    }
    conn->nodelay = 1;
  }
  if (conn->in_parser)
    return 0;
  conn_process(conn);
  conn_flush(conn);
  conn_update_reading(conn);
  return 0;
}

int herd_http_respond(herd_http_req_t* req, int status,
                      const char* content_type, const void* body,
                      size_t body_len) {
  return respond(req, status, content_type, NULL, 0, body, body_len);
}

int herd_http_respond_ex(herd_http_req_t* req, int status,
                         const herd_http_header_t* headers, size_t header_count,
                         const void* body, size_t body_len) {
  return respond(req, status, NULL, headers, header_count, body, body_len);
}

void herd_http_server_close(herd_http_server_t* server,
                            herd_http_close_cb close_cb) {
  struct herd_http_private_s* priv;
  http_conn_t* conn;
  http_conn_t* next;
  if (server == NULL || server->priv == NULL)
    return;
  priv = server->priv;
  assert(!priv->closing);
  priv->closing = 1;
  priv->close_cb = close_cb;
  if (priv->listener_open && !uv_is_closing((uv_handle_t*)&priv->listener))
    uv_close((uv_handle_t*)&priv->listener, on_listener_close);
  /* Idle connections go now; busy ones once their current response is out. */
  for (conn = priv->conns; conn != NULL; conn = next) {
    next = conn->next;
    if (conn->closing)
      continue;
    if (conn->awaiting) {
      conn->stop_parsing = 1;
      conn->close_after_write = 1;
    } else if (conn->out_len > 0 || conn->write_pending) {
      conn->stop_parsing = 1;
      conn->close_after_write = 1;
    } else {
      conn_close(conn);
    }
  }
  server_maybe_done(priv);
}
