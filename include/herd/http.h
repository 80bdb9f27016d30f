/* A small HTTP/1.1 server on llhttp (Node's parser): keep-alive, pipelining,
 * `Connection: close`, 400 on a malformed request, 431 on oversized headers,
 * an idle timeout. Made to serve herd's demo fast, not to be a framework.
 * Included by <herd.h>; do not include directly. */
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

typedef struct {
  const char* name;
  size_t name_len;
  const char* value;
  size_t value_len;
} herd_http_header_t;

/* One parsed request. Its pointers stay valid until the request has been
 * answered. */
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
 * connection are sent in request order (pipelining). */
typedef void (*herd_http_handler_cb)(herd_http_req_t* req);
typedef void (*herd_http_close_cb)(herd_http_server_t* server);

typedef struct herd_http_options_s {
  uint64_t idle_timeout;  /* ms without a request on a keep-alive
                             connection before it is closed; 0: 5000 */
  size_t max_header_size; /* bytes of request head; 0: 16 KiB -> 431 */
  size_t max_body_size;   /* 0: 1 MiB -> 413 */
} herd_http_options_t;

struct herd_http_server_s {
  void* data;
  uv_loop_t* loop;
  uint64_t requests;    /* requests answered so far */
  uint64_t connections; /* connections currently open */
  /* private */
  struct herd_http_private_s* priv;
};

/* Initialises a server; no socket yet. Errors: UV_EINVAL, UV_ENOMEM. */
int herd_http_server_init(uv_loop_t* loop, herd_http_server_t* server,
                          herd_http_handler_cb handler,
                          const herd_http_options_t* options);
/* Binds and listens on host:port itself (standalone use). port 0 picks
 * one; herd_http_server_port() tells which. */
int herd_http_server_listen(herd_http_server_t* server, const char* host,
                            int port, int backlog);
int herd_http_server_port(const herd_http_server_t* server);
/* Serves connections accepted from a listening stream owned by the
 * caller: call it from that stream's uv_connection_cb. */
int herd_http_server_accept(herd_http_server_t* server, uv_stream_t* listener);
/* Serves an already accepted, connected TCP socket; herd owns `fd` (also on
 * error). */
int herd_http_server_adopt(herd_http_server_t* server, int fd);

/* Answers `req` with `status`, an optional Content-Type and body (copied).
 * Returns 0, or UV_EINVAL if the request was already answered. */
int herd_http_respond(herd_http_req_t* req, int status,
                      const char* content_type, const void* body,
                      size_t body_len);
/* The same with extra headers. */
int herd_http_respond_ex(herd_http_req_t* req, int status,
                         const herd_http_header_t* headers, size_t header_count,
                         const void* body, size_t body_len);

/* Stops accepting (its own listener only), then closes every connection once
 * its in-flight responses are written ("graceful"); close_cb runs when the
 * last one has closed. */
void herd_http_server_close(herd_http_server_t* server,
                            herd_http_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_HTTP_H */
