/* Private declarations of the HTTP server, shared by http_server.c (the
 * server object), http_conn.c (connection lifecycle), http_parse.c (llhttp
 * glue), http_response.c (answers), http_idle.c (the idle sweep) and
 * http_adopt.c (the raw-fd path). Not installed. */
#ifndef HERD_HTTP_INT_H
#define HERD_HTTP_INT_H

#include "internal.h"

#include <llhttp.h>

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
/* ms a closing server gives a silent connection (herd_http_options_t). */
#define HERD__HTTP_CLOSE_GRACE_DEFAULT 1000
/* ms a request head may take (herd_http_options_t): Node.js's and nginx's. */
#define HTTP_HEADERS_TIMEOUT_DEFAULT 60000
/* ms herd's own listener pauses after a connection it had no memory for. */
#define HTTP_ACCEPT_RETRY_MS 100
/* Connections herd's own listener accepts per loop iteration: libuv's accept
 * loop runs until the queue is empty, and under `Connection: close` load the
 * clients it serves at once reconnect at once, so connections whose request
 * came a little later waited for their read until the queue ran dry (p99 of
 * 0.3 - 1.7 s where nginx, which takes a bounded batch, had 7 ms). */
#define HTTP_ACCEPT_BATCH 64
/* Waiting raw connections served per wakeup of their epoll set. */
#define HTTP_WAIT_BATCH 64

typedef struct http_conn_s http_conn_t;

struct herd_http_private_s {
  herd_http_server_t* server;
  herd_http_handler_cb handler;
  herd_http_close_cb close_cb;
  uint64_t idle_timeout;
  uint64_t close_grace;
  uint64_t headers_timeout;
  /* Loop time at herd_http_server_close(). */
  uint64_t close_start;
  size_t max_header_size;
  size_t max_body_size;
  size_t buf_size;
  llhttp_settings_t settings;
  uv_tcp_t listener;
  uv_timer_t accept_retry; /* opened and closed with the listener */
  uv_check_t accept_turn;  /* ends an iteration's accept batch; the same */
  unsigned turn_accepts;   /* connections accepted in this iteration */
  uv_timer_t sweep;
  /* Every connection that is not yet freed, open or waiting for its handler
   * to answer after the socket went away. */
  http_conn_t* conns;
  size_t live;
  http_conn_t* spare;
  size_t nspare;
  unsigned listening : 1;
  unsigned listener_open : 2; /* the listener, its retry timer and check */
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
  /* Loop time of the first byte of the head being parsed (while in_head). */
  uint64_t head_start;
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
  unsigned in_head : 1;    /* a request head has begun and not ended */
  unsigned in_message : 1; /* llhttp is inside a request (head or body) */
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

/* http_server.c: frees the server once closing and nothing is left. */
void herd__http_server_maybe_done(struct herd_http_private_s* priv);

/* http_conn.c */
http_conn_t* herd__http_conn_new(struct herd_http_private_s* priv);
void herd__http_conn_register(struct herd_http_private_s* priv,
                              http_conn_t* conn);
void herd__http_conn_free(http_conn_t* conn);
void herd__http_conn_closed(http_conn_t* conn);
void herd__http_on_close(uv_handle_t* handle);
void herd__http_conn_close(http_conn_t* conn);
void herd__http_conn_flush(http_conn_t* conn);
void herd__http_on_read(uv_stream_t* stream, ssize_t nread,
                        const uv_buf_t* buf);
void herd__http_conn_update_reading(http_conn_t* conn);

/* http_parse.c */
const llhttp_settings_t* herd__http_settings(void);
void herd__http_conn_process(http_conn_t* conn);

/* http_response.c */
/* Makes room for n more bytes of output. */
int herd__http_out_reserve(http_conn_t* conn, size_t n);
int herd__http_conn_append_response(http_conn_t* conn, int status,
                                    const char* content_type,
                                    const herd_http_header_t* headers,
                                    size_t header_count, const void* body,
                                    size_t body_len, int ka, int http_minor,
                                    int head_only);
void herd__http_conn_fail(http_conn_t* conn, int status);

/* http_idle.c */
void herd__http_sweep_update(struct herd_http_private_s* priv, int restart);

/* http_adopt.c */
void herd__http_conn_flush_raw(http_conn_t* conn);

#endif /* HERD_HTTP_INT_H */
