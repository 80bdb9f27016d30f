/* Responses: the status line and headers herd writes (with a Date header
 * formatted once a second), and herd_http_respond(), which queues an answer
 * and lets parsing of the connection go on. */
#include "http-int.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

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

int herd__http_out_reserve(http_conn_t* conn, size_t n) {
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
int herd__http_conn_append_response(http_conn_t* conn, int status,
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
  err = herd__http_out_reserve(conn, need);
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
void herd__http_conn_fail(http_conn_t* conn, int status) {
  conn->in_head = 0;
  conn->stop_parsing = 1;
  conn->close_after_write = 1;
  conn->linger = 1;
  if (herd__http_conn_append_response(conn, status, NULL, NULL, 0, NULL, 0, 0,
                                      1, 0) != 0)
    herd__http_conn_close(conn);
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
    herd__http_conn_free(conn);
    return 0;
  }
  if (priv->closing && req->keep_alive) {
    /* The server began closing while the handler had the request: this
     * answer is the connection's last, and the client may be sending its
     * next request already. */
    req->keep_alive = 0;
    conn->linger = 1;
  }
  head_only = conn->head_request;
  err = herd__http_conn_append_response(
      conn, status, content_type, headers, header_count, body, body_len,
      req->keep_alive, req->http_minor, head_only);
  if (err != 0) {
    /* No memory for the answer: the connection ends without it, which the
     * client sees, and the request is done all the same. */
    herd__http_conn_close(conn);
    return err;
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
  herd__http_conn_process(conn);
  herd__http_conn_flush(conn);
  herd__http_conn_update_reading(conn);
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
