/* A small HTTP/1.1 server on llhttp (Node's parser): keep-alive, pipelining,
 * `Connection: close`, 400 on a malformed request, 431 on an oversized
 * request head, 413 on an oversized body, an idle timeout, 408 on a request
 * head that takes too long. Made to serve
 * herd's demo fast, not to be a framework: no request streaming, no chunked
 * responses, no TLS, no upgrades (an Upgrade or CONNECT request is answered
 * like any other, then the connection closes). `Expect: 100-continue` gets
 * its interim 100 response (HTTP/1.1 requests only: RFC 9110 10.1.1).
 * Included by <herd.h>; do not include directly. See docs/http.md. */
#ifndef HERD_HTTP_H
#define HERD_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct herd_http_server_s herd_http_server_t;
typedef struct herd_http_req_s herd_http_req_t;

/* One request header; name and value are not NUL-terminated. Also used for
 * extra response headers in herd_http_respond_ex(). */
typedef struct {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
} herd_http_header_t;

/* One parsed request, owned by herd. Every pointer in it (url, headers,
 * body) stays valid until the request has been answered, and not after.
 * url is the raw request target ("/path?query"), not NUL-terminated; body
 * is the whole body (dechunked), "" with body_len 0 when there is none.
 * keep_alive is HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
 * `Connection: keep-alive`, and 0 once the server is closing. */
struct herd_http_req_s {
  void* data;
  herd_http_server_t* server;
  const char* method; /* "GET", ... (NUL-terminated) */
  const char* url;
  size_t url_len;
  const herd_http_header_t* headers;
  size_t header_count;
  const char* body;
  size_t body_len;
  int http_minor; /* 0 or 1 (HTTP/1.x) */
  int keep_alive; /* the connection stays open after the response */
  /* private */
  void* conn;
};

/* Called once per complete request, in order on each connection. The
 * handler must answer exactly once with herd_http_respond() or
 * herd_http_respond_ex(), during the call or later; responses on one
 * connection are sent in request order (pipelining). The next pipelined
 * request of the same connection is parsed and handed over only once the
 * current one is answered (an answer given later may run the handler again
 * from inside herd_http_respond()). Other connections are not held up. */
typedef void (*herd_http_handler_cb)(herd_http_req_t* req);
/* Called when a closed server is completely gone; `server` may be freed or
 * reused from here on. */
typedef void (*herd_http_close_cb)(herd_http_server_t* server);

/* All-zero means the defaults. */

typedef struct herd_http_options_s {
  /* ms without any traffic on a connection (between keep-alive requests,
   * or in the middle of a stalled one) before it is closed without an
   * answer; a connection whose request the handler still holds is never
   * closed for idleness. 0: 5000. Checked by one coarse timer per server
   * (every idle_timeout / 4, clamped to 10..1000 ms). */
  uint64_t idle_timeout;
  /* Bytes of request head (request target, header names and values) over
   * which the request is answered 431 and the connection closed; also more
   * than 64 header lines give 431. 0: 16 KiB; at most 1 MiB. Each
   * connection's read buffer is this plus 1 KiB. */
  size_t max_header_size;
  /* Body bytes (Content-Length or dechunked) over which the request is
   * answered 413 and the connection closed. 0: 1 MiB. */
  size_t max_body_size;
  /* ms a closing server (herd_http_server_close()) waits on a silent
   * connection: one waiting for its first or next request, from the close
   * or its last traffic after it, and one answered for the last time, for
   * the client to close its end. Never more than idle_timeout. 0: 1000,
   * which covers a request already on its way over any network path and
   * keeps a reload short; checked every close_grace / 4 (10..1000 ms). */
  uint64_t close_grace;
  /* ms from the first byte of a request head (on a keep-alive connection,
   * of each request) to the end of its headers; a head still incomplete
   * then is answered 408 Request Timeout and the connection closed, however
   * steadily its bytes trickle in (the idle timeout alone would let a client
   * that sends a byte every few seconds hold a connection for hours). 0:
   * 60000, as Node.js's server.headersTimeout and nginx's
   * client_header_timeout. Checked by the idle timer (every
   * headers_timeout / 4 at most, 10..1000 ms), also while closing. */
  uint64_t headers_timeout;
} herd_http_options_t;

struct herd_http_server_s {
  void* data;
  uv_loop_t* loop;
  uint64_t requests;    /* requests answered by the handler so far */
  uint64_t connections; /* connections currently open */
  /* private */
  struct herd_http_private_s* priv;
};

/* Initialises a server on `loop`; no socket yet. `options` may be NULL. The
 * server must be closed with herd_http_server_close() (it owns a timer).
 * Like Node.js, this ignores SIGPIPE in the process unless the program has
 * its own handler for it. Errors: UV_EINVAL (NULL loop/server/handler,
 * max_header_size over 1 MiB), UV_ENOMEM. */
int herd_http_server_init(uv_loop_t* loop, herd_http_server_t* server,
                          herd_http_handler_cb handler,
                          const herd_http_options_t* options);
/* Binds and listens on host:port itself (standalone use). `host` is a
 * numeric IPv4 or IPv6 address (NULL: "0.0.0.0"); port 0 picks one,
 * herd_http_server_port() tells which; backlog <= 0 means 511. At most one
 * listener per server. At most 64 connections are accepted per loop
 * iteration, as nginx takes a bounded batch: libuv's own accept loop runs
 * until the queue is empty, which under `Connection: close` load keeps
 * connections already open from being read. A connection herd has no
 * memory for waits in the listen queue, and accepting pauses for 100 ms
 * before it is tried again. Errors: UV_EINVAL (bad address or port, already
 * listening, closing), the errors of uv_tcp_bind() and uv_listen()
 * (UV_EADDRINUSE, UV_EACCES, ...). */
int herd_http_server_listen(herd_http_server_t* server, const char* host,
                            int port, int backlog);
/* The port of the server's own listener, or UV_EINVAL without one. */
int herd_http_server_port(const herd_http_server_t* server);
/* Accepts one connection from a listening TCP stream (a uv_tcp_t) owned by
 * the caller and serves it: call it from that stream's uv_connection_cb
 * (once per call of the callback). Errors: UV_EINVAL (NULL arguments,
 * server closing), UV_ENOMEM, the errors of uv_accept() (UV_EAGAIN when
 * nothing is pending). After UV_EINVAL or UV_ENOMEM the connection is
 * still pending, and libuv reads the listener no more until it is taken:
 * call again later, or take it with uv_accept() and close it. The
 * connection is read at once, so the handler may
 * run (and the connection may be answered and closed) before this returns;
 * the same holds for herd_http_server_adopt(). libuv calls the callback for
 * every queued connection before it reads any other socket: a caller under
 * heavy connection churn should leave one pending after a batch and take
 * it on the next loop iteration, as herd_http_server_listen() does. */
int herd_http_server_accept(herd_http_server_t* server, uv_stream_t* listener);
/* Serves an already accepted, connected TCP socket; herd owns `fd` (also on
 * error: it is closed then) and makes it non-blocking and close-on-exec.
 * Errors: UV_EINVAL (fd < 0, server closing), UV_ENOMEM, the errors of
 * uv_tcp_open(). */
int herd_http_server_adopt(herd_http_server_t* server, int fd);

/* Answers `req` with `status` (100..999), an optional Content-Type
 * (content_type may be NULL) and body (copied before the call returns).
 * herd adds Content-Length, Date and, when the connection closes after the
 * response or the client speaks HTTP/1.0 with keep-alive, Connection. HEAD
 * requests get the head only; 1xx, 204 and 304 get neither body nor
 * Content-Length. When the client has gone meanwhile the answer is dropped
 * and 0 returned. Errors: UV_EINVAL (already answered, bad status, NULL
 * body with body_len > 0), UV_ENOMEM (no memory for the answer: the
 * connection is closed without it, and the request counts as answered). */
int herd_http_respond(herd_http_req_t* req, int status,
                      const char* content_type, const void* body,
                      size_t body_len);
/* The same with extra headers (copied; include Content-Type here if
 * wanted, never Content-Length, Date, Connection or Transfer-Encoding). */
int herd_http_respond_ex(herd_http_req_t* req, int status,
                         const herd_http_header_t* headers, size_t header_count,
                         const void* body, size_t body_len);

/* Graceful close: stops accepting (its own listener only; accept and adopt
 * fail from now on) and serves every connection it has until its next
 * answer, without closing any while the client may be sending on it. Each
 * connection's next request (the one the handler holds, or the next to
 * arrive: first request of a new connection, rest of a partial one, next
 * of an idle keep-alive one) is answered with `Connection: close`;
 * requests pipelined behind it are dropped. When the client may still be
 * sending (it asked for keep-alive, or pipelined), herd then shuts down its
 * sending side and waits for the client's end of stream before it closes
 * (a lingering close: what the client still sends cannot reset the answer
 * away). A connection silent for close_grace ms (see
 * herd_http_options_t) is closed without an answer. nginx and Node.js
 * close idle keep-alive connections at once, losing a request on its way;
 * herd gives them the grace (see docs/http.md). close_cb (may be NULL) runs
 * when the last connection has closed and every request the handler holds
 * has been answered. Call once. */
void herd_http_server_close(herd_http_server_t* server,
                            herd_http_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_HTTP_H */
