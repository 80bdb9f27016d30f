/* Feeds arbitrary bytes to the HTTP server as one client's byte stream (in
 * a few slices, then end of stream) and checks that it answers or closes
 * without crashing, leaking or hanging. Requests whose target starts with
 * "/a" are answered from a timer, to mix late answers with pipelining. */
#include "herd.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  uv_loop_t loop;
  herd_http_server_t server;
  uv_poll_t client;
  int client_fd;
  const uint8_t* data;
  size_t size;
  size_t sent;
  uv_timer_t feed;
  int server_closed;
} fuzz_t;

typedef struct {
  uv_timer_t timer;
  herd_http_req_t* req;
} later_t;

static void on_later(uv_timer_t* timer) {
  later_t* l = timer->data;
  herd_http_respond(l->req, 200, "text/plain", "late\n", 5);
  uv_close((uv_handle_t*)timer, (uv_close_cb)free);
}

static void on_request(herd_http_req_t* req) {
  fuzz_t* f = req->server->data;
  if (req->url_len >= 2 && memcmp(req->url, "/a", 2) == 0) {
    later_t* l = malloc(sizeof(*l));
    if (l == NULL)
      abort();
    l->req = req;
    uv_timer_init(&f->loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_later, 1, 0);
    return;
  }
  if (herd_http_respond(req, 200, NULL, req->body, req->body_len) != 0)
    abort();
}

static void on_server_closed(herd_http_server_t* server) {
  fuzz_t* f = server->data;
  f->server_closed = 1;
}

/* The client end drains the answers; when the server closes, so does the
 * whole test, and the client ends its stream so that a server waiting for
 * it (a lingering close) can finish. */
static void on_client(uv_poll_t* poll, int status, int events) {
  fuzz_t* f = poll->data;
  char buf[65536];
  ssize_t n;
  (void)events;
  if (status == 0) {
    n = read(f->client_fd, buf, sizeof(buf));
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
      return;
  }
  uv_close((uv_handle_t*)poll, NULL);
  uv_close((uv_handle_t*)&f->feed, NULL);
  shutdown(f->client_fd, SHUT_WR);
  herd_http_server_close(&f->server, on_server_closed);
}

static void on_feed(uv_timer_t* timer) {
  fuzz_t* f = timer->data;
  size_t slice = f->size / 3 + 1;
  size_t left = f->size - f->sent;
  ssize_t n;
  if (left == 0) {
    shutdown(f->client_fd, SHUT_WR);
    uv_timer_stop(timer);
    return;
  }
  n = write(f->client_fd, f->data + f->sent, left < slice ? left : slice);
  if (n > 0)
    f->sent += (size_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_t f;
  herd_http_options_t options;
  int sv[2];
  memset(&f, 0, sizeof(f));
  memset(&options, 0, sizeof(options));
  options.max_header_size = 2048;
  options.max_body_size = 4096;
  options.idle_timeout = 200;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv))
    abort();
  f.data = data;
  f.size = size;
  f.client_fd = sv[0];
  if (uv_loop_init(&f.loop) != 0 ||
      herd_http_server_init(&f.loop, &f.server, on_request, &options) != 0)
    abort();
  f.server.data = &f;
  if (herd_http_server_adopt(&f.server, sv[1]) != 0)
    abort();
  uv_poll_init(&f.loop, &f.client, sv[0]);
  f.client.data = &f;
  uv_poll_start(&f.client, UV_READABLE | UV_DISCONNECT, on_client);
  uv_timer_init(&f.loop, &f.feed);
  f.feed.data = &f;
  uv_timer_start(&f.feed, on_feed, 0, 1);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  if (!f.server_closed || uv_loop_close(&f.loop) != 0)
    abort();
  close(sv[0]);
  return 0;
}
