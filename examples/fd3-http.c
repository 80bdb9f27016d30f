/* An HTTP server for socket activation: it serves the listening sockets it
 * is given as fds 3, 4, ... (sd_listen_fds(3): LISTEN_FDS, LISTEN_PID),
 * tells its manager it is ready (sd_notify(3) READY=1 on NOTIFY_SOCKET),
 * and on SIGTERM or SIGINT stops accepting and finishes the requests it
 * has before it exits. It answers every request with its pid, so a client
 * can tell which process served it; GET /sleep/MS answers after MS
 * milliseconds (a slow request, to see a graceful stop finish it). The
 * same program runs under systemd,
 * `systemd-socket-activate`, or as the workers of `herd run`:
 *
 *   herd run -w 4 -l 127.0.0.1:8000 -- ./fd3-http
 */
#include <herd.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LISTENERS 16

static uv_loop_t* loop;
static herd_http_server_t server;
static herd_sd_notifier_t notifier;
static uv_poll_t listeners[MAX_LISTENERS];
static int nlisteners;
static uv_signal_t sigterm, sigint;
static char body[32];
static size_t body_len;

static void on_slept(uv_timer_t* timer) {
  herd_http_req_t* req = timer->data;
  herd_http_respond(req, 200, "text/plain", body, body_len);
  uv_close((uv_handle_t*)timer, (uv_close_cb)free);
}

static void on_request(herd_http_req_t* req) {
  uv_timer_t* timer;
  if (req->url_len > 7 && req->url_len < 20 &&
      memcmp(req->url, "/sleep/", 7) == 0 &&
      (timer = malloc(sizeof(*timer))) != NULL) {
    char ms[16]; /* the url is not NUL-terminated */
    memcpy(ms, req->url + 7, req->url_len - 7);
    ms[req->url_len - 7] = '\0';
    uv_timer_init(loop, timer);
    timer->data = req;
    uv_timer_start(timer, on_slept, strtoull(ms, NULL, 10), 0);
    return;
  }
  herd_http_respond(req, 200, "text/plain", body, body_len);
}

/* Accepts what is queued; the sockets are non-blocking, as systemd and
 * herd pass them. */
static void on_listener(uv_poll_t* poll, int status, int events) {
  int lfd;
  (void)events;
  if (status != 0 || uv_fileno((uv_handle_t*)poll, &lfd) != 0)
    return;
  for (int i = 0; i < 64; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
      return; /* EAGAIN, or a connection reset before it was accepted */
    herd_http_server_adopt(&server, fd);
  }
}

static void on_closed(herd_http_server_t* s) {
  (void)s;
  herd_sd_notifier_close(&notifier, NULL);
  uv_close((uv_handle_t*)&sigterm, NULL);
  uv_close((uv_handle_t*)&sigint, NULL);
}

static void on_signal(uv_signal_t* s, int signum) {
  (void)s;
  (void)signum;
  if (uv_is_closing((uv_handle_t*)&listeners[0]))
    return;
  herd_sd_notify(&notifier, "STOPPING=1");
  for (int i = 0; i < nlisteners; i++)
    uv_close((uv_handle_t*)&listeners[i], NULL);
  herd_http_server_close(&server, on_closed);
}

int main(void) {
  int n, r;

  loop = uv_default_loop();
  signal(SIGPIPE, SIG_IGN);
  n = herd_sd_listen_fds(HERD_SD_UNSET_ENV, NULL);
  if (n <= 0) {
    fprintf(stderr, "fd3-http: no sockets passed (LISTEN_FDS): %s\n",
            n < 0 ? herd_strerror(n) : "none");
    return 1;
  }
  if (n > MAX_LISTENERS)
    n = MAX_LISTENERS;
  body_len = (size_t)snprintf(body, sizeof(body), "%d\n", (int)getpid());
  r = herd_http_server_init(loop, &server, on_request, NULL);
  if (r == 0)
    r = herd_sd_notifier_init(loop, &notifier, HERD_SD_UNSET_ENV);
  for (int i = 0; r == 0 && i < n; i++) {
    r = uv_poll_init(loop, &listeners[i], HERD_SD_LISTEN_FDS_START + i);
    if (r == 0) {
      nlisteners++;
      r = uv_poll_start(&listeners[i], UV_READABLE, on_listener);
    }
  }
  if (r != 0) {
    fprintf(stderr, "fd3-http: %s\n", herd_strerror(r));
    return 1;
  }
  uv_signal_init(loop, &sigterm);
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_signal_start(&sigint, on_signal, SIGINT);
  herd_sd_notify(&notifier, "READY=1\nSTATUS=serving");
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
