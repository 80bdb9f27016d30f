/* Parser glue: llhttp's callbacks fill in a connection's request in place
 * (spans into the read buffer; a body is copied out), and
 * herd__http_conn_process() feeds the read buffer to llhttp as far as the
 * handler answers. */
#include "http-int.h"

#include <string.h>
#include <strings.h>

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
  /* The headers timeout runs from here, or from the empty lines llhttp
   * skipped before (herd__http_on_read). */
  conn->in_message = 1;
  if (!conn->in_head) {
    conn->in_head = 1;
    conn->head_start = uv_now(conn->priv->server->loop);
  }
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
  conn->in_head = 0;
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
   * Only a head with a header of the right lengths is searched. An HTTP/1.0
   * client cannot understand a 1xx answer, so its expectation is ignored
   * (RFC 9110 10.1.1: a server MUST). */
  if (llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) == 0)
    expect = 0;
  for (i = 0; expect && i < conn->req.header_count; i++) {
    h = &conn->headers[i];
    if (h->name_len == 6 && strncasecmp(h->name, "expect", 6) == 0 &&
        h->value_len == 12 && strncasecmp(h->value, "100-continue", 12) == 0) {
      /* Without its go-ahead the client would wait for nothing. */
      if (herd__http_out_reserve(conn, 25) != 0) {
        conn->err_status = 500;
        return -1;
      }
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
  int ka;

  conn->in_message = 0;
  req->method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
  conn->head_request = llhttp_get_method(p) == HTTP_HEAD;
  req->http_minor = llhttp_get_http_minor(p);
  ka = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
  req->keep_alive = ka && !priv->closing;
  req->headers = conn->headers;
  req->body = conn->body_len ? conn->body : "";
  req->body_len = conn->body_len;
  if (!req->keep_alive) {
    conn->stop_parsing = 1;
    /* A client that meant to go on may already be sending its next
     * request: the close that herd chose lingers. */
    if (ka)
      conn->linger = 1;
  }
  conn->awaiting = 1;
  priv->handler(req);
  /* Parsing goes on in this call only when the answer is already queued;
   * otherwise herd_http_respond() resumes it, which keeps the request's
   * strings in place and the responses in order. */
  if (conn->awaiting || conn->stop_parsing)
    return HPE_PAUSED;
  return 0;
}

const llhttp_settings_t* herd__http_settings(void) {
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

void herd__http_conn_process(http_conn_t* conn) {
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
      herd__http_conn_fail(conn, conn->err_status ? conn->err_status : 400);
    }
  }
  conn->in_parser = 0;
  /* Bytes behind the last request a connection answers are dropped: the
   * client pipelined on, and may still be sending. */
  if (conn->stop_parsing && conn->parsed < conn->end)
    conn->linger = 1;
  if (!conn->in_spans && !conn->awaiting && conn->parsed == conn->end) {
    conn->parsed = 0;
    conn->end = 0;
  }
  if (conn->eof && !conn->awaiting) {
    conn->stop_parsing = 1;
    conn->close_after_write = 1;
  }
}
