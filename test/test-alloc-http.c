/* Allocation failures in the HTTP server: a whole exchange on each way a
 * connection comes in (herd's own listener, herd_http_server_accept() from
 * the caller's listener, herd_http_server_adopt() of an fd), with
 * keep-alive, pipelining, a request body with headers (copied out of the
 * read buffer), a response bigger than the inline buffer, an answer given
 * later from a timer, herd_http_respond_ex(), a refused request (a
 * lingering close) and the graceful close; and a response too big for the
 * socket to a client that does not read yet (its rest is copied for a later
 * write). alloc_sweep() fails each herd allocation in turn: a request may
 * then go unanswered, but its connection is closed (the client never waits
 * in vain), close_cb runs once, and nothing leaks. */
#include "alloc.h"
#include "task.h"
#include "test-cluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* HUGE is more than a loopback socket takes at once (up to 4 MiB). */
enum { BODY = 5000, BIG = 64 << 10, HUGE = 8 << 20, CLIENT_MS = 5000 };

typedef struct {
  uv_loop_t loop;
  herd_http_server_t* server;
  uv_tcp_t* listener;  /* the caller's, for herd_http_server_accept() */
  uv_poll_t* adopting; /* accepts by hand for herd_http_server_adopt() */
  int adopt_fd;
  int ports[3];
  int closed;
  int answers[3];   /* responses the client read, per connection */
  int ended[3];     /* the connection ended (EOF or reset), not timed out */
  int slow;         /* one request for HUGE, read once it was written */
  uv_sem_t written; /* the loop wrote what the socket took of it */
} http_case_t;

static char* big_body;

/* The client's side, on a thread: blocking sockets with a deadline. */
static int client_connect(int port, int small_rcvbuf) {
  struct sockaddr_in addr;
  struct timeval tv = {CLIENT_MS / 1000, 0};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  if (small_rcvbuf) {
    /* The big response cannot be written at once. */
    int v = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  }
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, (struct sockaddr*)&addr, sizeof(addr)), 0);
  return fd;
}

static void client_write(int fd, const char* s, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return; /* the server closed it: what it answered is still read */
    s += n;
    len -= (size_t)n;
  }
}

/* Reads to the end of the connection and counts the status lines. Returns
 * 0 when the server closed it, -1 when it stayed silent past the deadline. */
static int client_read_all(int fd, int* answers) {
  static const char status[] = "HTTP/1.1 ";
  char buf[65536 + sizeof(status)];
  size_t keep = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + keep, sizeof(buf) - keep - 1, 0);
    char* p;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return -1;
    if (n <= 0)
      return 0; /* EOF, or reset */
    n += (ssize_t)keep;
    buf[n] = '\0';
    for (p = buf; (p = memmem(p, (size_t)n - (size_t)(p - buf), status,
                              sizeof(status) - 1)) != NULL;
         p++)
      (*answers)++;
    /* A status line cut in two is counted with the next read. */
    keep = (size_t)n < sizeof(status) - 1 ? (size_t)n : sizeof(status) - 2;
    memmove(buf, buf + n - (ssize_t)keep, keep);
  }
}

static void slow_client(http_case_t* c) {
  static const char req[] = "GET /huge HTTP/1.1\r\nConnection: close\r\n\r\n";
  int fd = client_connect(c->ports[0], 1);
  client_write(fd, req, sizeof(req) - 1);
  uv_sem_wait(&c->written);
  c->ended[0] = client_read_all(fd, &c->answers[0]) == 0;
  close(fd);
  c->ended[1] = c->ended[2] = 1;
}

static void client(void* arg) {
  static const char post_head[] =
      "POST /body HTTP/1.1\r\nHost: x\r\nX-One: 1\r\nX-Two: 2\r\n"
      "Content-Length: 5000\r\n\r\n";
  static const char pipelined[] =
      "GET /ex HTTP/1.1\r\n\r\nGET /later HTTP/1.1\r\n\r\n"
      "GET /small HTTP/1.1\r\nConnection: close\r\n\r\n";
  static const char close_req[] =
      "GET /small HTTP/1.1\r\nConnection: close\r\n\r\n";
  http_case_t* c = arg;
  char* body = malloc(BODY);
  int fd;
  ASSERT(body != NULL);
  memset(body, 'p', BODY);
  if (c->slow) {
    free(body);
    slow_client(c);
    return;
  }

  fd = client_connect(c->ports[0], 1);
  client_write(fd, "GET /small HTTP/1.1\r\n\r\n", 23);
  client_write(fd, post_head, sizeof(post_head) - 1);
  client_write(fd, body, BODY);
  /* Two at once: the second grows the response buffer the first made. */
  client_write(fd, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n", 42);
  /* Pipelined: the second is answered later, from a timer. */
  client_write(fd, pipelined, sizeof(pipelined) - 1);
  c->ended[0] = client_read_all(fd, &c->answers[0]) == 0;
  close(fd);
  free(body);

  fd = client_connect(c->ports[1], 0);
  client_write(fd, close_req, sizeof(close_req) - 1);
  c->ended[1] = client_read_all(fd, &c->answers[1]) == 0;
  close(fd);

  /* Refused with 400; herd shuts down its side and waits for the client
   * to close its own (a lingering close). */
  fd = client_connect(c->ports[2], 0);
  client_write(fd, "NOT HTTP\r\n\r\n", 12);
  c->ended[2] = client_read_all(fd, &c->answers[2]) == 0;
  close(fd);
}

static void on_closed(herd_http_server_t* server) {
  http_case_t* c = server->data;
  c->closed++;
  free(server);
}

static void client_done(void* arg) {
  http_case_t* c = arg;
  herd_http_server_close(c->server, on_closed);
  uv_close((uv_handle_t*)c->listener, (uv_close_cb)free);
  uv_close((uv_handle_t*)c->adopting, (uv_close_cb)free);
  close(c->adopt_fd);
}

typedef struct {
  uv_timer_t timer;
  herd_http_req_t* req;
} later_t;

/* An answer herd has no memory for closes the connection instead. */
static void answered(int r) {
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
  }
}

static void answer_later(uv_timer_t* timer) {
  later_t* l = (later_t*)timer;
  answered(herd_http_respond(l->req, 200, "text/plain", "later\n", 6));
  uv_close((uv_handle_t*)timer, (uv_close_cb)free);
}

/* After the loop ran what the handler queued: the part of HUGE the
 * socket took has been written, and the rest waits in herd. */
static void huge_written(uv_check_t* check) {
  http_case_t* c = check->data;
  uv_sem_post(&c->written);
  uv_close((uv_handle_t*)check, (uv_close_cb)free);
}

static void handler(herd_http_req_t* req) {
  static const herd_http_header_t headers[] = {
      {"Content-Type", 12, "text/plain", 10}, {"X-Herd", 6, "yes", 3}};
  if (req->url_len == 6 && memcmp(req->url, "/later", 6) == 0) {
    later_t* l = malloc(sizeof(*l));
    ASSERT(l != NULL);
    l->req = req;
    ASSERT_OK(uv_timer_init(req->server->loop, &l->timer));
    ASSERT_OK(uv_timer_start(&l->timer, answer_later, 0, 0));
  } else if (req->url_len == 4 && memcmp(req->url, "/big", 4) == 0) {
    answered(herd_http_respond(req, 200, NULL, big_body, BIG));
  } else if (req->url_len == 5 && memcmp(req->url, "/huge", 5) == 0) {
    uv_check_t* check = malloc(sizeof(*check));
    ASSERT(check != NULL);
    check->data = req->server->data;
    ASSERT_OK(uv_check_init(req->server->loop, check));
    ASSERT_OK(uv_check_start(check, huge_written));
    answered(herd_http_respond(req, 200, NULL, big_body, HUGE));
  } else if (req->url_len == 3 && memcmp(req->url, "/ex", 3) == 0) {
    answered(herd_http_respond_ex(req, 201, headers, 2, "ex\n", 3));
  } else if (req->url_len == 5 && memcmp(req->url, "/body", 5) == 0) {
    ASSERT_EQ(req->body_len, BODY);
    ASSERT_EQ(req->header_count, 4);
    ASSERT(memcmp(req->headers[2].value, "2", 1) == 0);
    answered(herd_http_respond(req, 200, "text/plain", "body\n", 5));
  } else {
    answered(herd_http_respond(req, 200, "text/plain", "hi\n", 3));
  }
}

/* The caller's listener: a connection herd could not take stays pending
 * (libuv reads the listener no more until it is taken), so it is taken
 * and closed here. */
static void on_connection(uv_stream_t* listener, int status) {
  http_case_t* c = listener->data;
  int r;
  ASSERT_OK(status);
  r = herd_http_server_accept(c->server, listener);
  if (r != 0) {
    uv_tcp_t* tcp = malloc(sizeof(*tcp));
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    ASSERT(tcp != NULL);
    ASSERT_OK(uv_tcp_init(listener->loop, tcp));
    ASSERT_OK(uv_accept(listener, (uv_stream_t*)tcp));
    uv_close((uv_handle_t*)tcp, (uv_close_cb)free);
  }
}

/* A socket accepted by hand and adopted: herd owns it even on error. */
static void on_adopt_ready(uv_poll_t* poll, int status, int events) {
  http_case_t* c = poll->data;
  int fd, r;
  (void)events;
  ASSERT_OK(status);
  fd = accept4(c->adopt_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0)
    return;
  r = herd_http_server_adopt(c->server, fd);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
  }
}

static int tcp_port(uv_tcp_t* tcp) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  ASSERT_OK(uv_tcp_getsockname(tcp, (struct sockaddr*)&ss, &len));
  return ntohs(((struct sockaddr_in*)&ss)->sin_port);
}

static void http_case(void* arg) {
  http_case_t* c = arg;
  struct sockaddr_in addr;
  socklen_t alen = sizeof(addr);
  int slow = c->slow;
  int r;

  memset(c, 0, sizeof(*c));
  c->slow = slow;
  ASSERT_OK(uv_sem_init(&c->written, 0));
  ASSERT_OK(uv_loop_init(&c->loop));
  c->server = malloc(sizeof(*c->server));
  ASSERT(c->server != NULL);
  r = herd_http_server_init(&c->loop, c->server, handler, NULL);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(c->server);
    test_loop_run_close(&c->loop);
    uv_sem_destroy(&c->written);
    return;
  }
  c->server->data = c;
  ASSERT_OK(herd_http_server_listen(c->server, "127.0.0.1", 0, 0));
  c->ports[0] = herd_http_server_port(c->server);

  c->listener = malloc(sizeof(*c->listener));
  ASSERT(c->listener != NULL);
  ASSERT_OK(uv_tcp_init(&c->loop, c->listener));
  c->listener->data = c;
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &addr));
  ASSERT_OK(uv_tcp_bind(c->listener, (const struct sockaddr*)&addr, 0));
  ASSERT_OK(uv_listen((uv_stream_t*)c->listener, 8, on_connection));
  c->ports[1] = tcp_port(c->listener);

  c->adopt_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT(c->adopt_fd >= 0);
  ASSERT_EQ(bind(c->adopt_fd, (struct sockaddr*)&addr, sizeof(addr)), 0);
  ASSERT_EQ(listen(c->adopt_fd, 8), 0);
  ASSERT_EQ(getsockname(c->adopt_fd, (struct sockaddr*)&addr, &alen), 0);
  c->ports[2] = ntohs(addr.sin_port);
  c->adopting = malloc(sizeof(*c->adopting));
  ASSERT(c->adopting != NULL);
  ASSERT_OK(uv_poll_init(&c->loop, c->adopting, c->adopt_fd));
  c->adopting->data = c;
  ASSERT_OK(uv_poll_start(c->adopting, UV_READABLE, on_adopt_ready));

  tc_job_start(&c->loop, client, client_done, c);
  test_loop_run_close(&c->loop);
  uv_sem_destroy(&c->written);
  ASSERT_EQ(c->closed, 1);
  for (int i = 0; i < 3; i++)
    if (!c->ended[i])
      FATAL("connection %d left waiting (answers %d %d %d)", i, c->answers[0],
            c->answers[1], c->answers[2]);
  if (!alloc_failed()) {
    ASSERT_EQ(c->answers[0], slow ? 1 : 7);
    ASSERT_EQ(c->answers[1], slow ? 0 : 1);
    ASSERT_EQ(c->answers[2], slow ? 0 : 1);
  }
}

TEST_IMPL(alloc_http_exchange) {
  http_case_t c;
  big_body = malloc(HUGE);
  ASSERT(big_body != NULL);
  memset(big_body, 'b', HUGE);
  c.slow = 0;
  ASSERT_GE(alloc_sweep("http exchange", http_case, &c), 5);
  c.slow = 1;
  ASSERT_GE(alloc_sweep("http response to a slow reader", http_case, &c), 3);
  free(big_body);
  return 0;
}
