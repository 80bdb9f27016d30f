/* The IPC channel between two herd ends in one process (a socketpair), and
 * against a raw socket that plays a misbehaving peer. */
#include "internal.h"
#include "task.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  int messages;
  int errors[8];
  int nerrors;
  int disconnects;
  int drains;
  int handles;
  char last[256];
  int64_t next_i; /* burst order check */
} counts_t;

static counts_t ca, cb_;

static void count_message(herd_ipc_t* ipc, const char* json, size_t len,
                          herd_handle_t* handle) {
  counts_t* c = ipc->data;
  int64_t i;
  (void)handle;
  ASSERT_EQ(json[len], '\0');
  ASSERT_EQ(strlen(json), len);
  c->messages++;
  snprintf(c->last, sizeof(c->last), "%s", json);
  if (herd_json_get_int(json, len, "i", &i) == 0) {
    ASSERT_EQ(i, c->next_i);
    c->next_i++;
  }
}

static void count_error(herd_ipc_t* ipc, int err) {
  counts_t* c = ipc->data;
  if (c->nerrors < 8)
    c->errors[c->nerrors++] = err;
}

static void count_disconnect(herd_ipc_t* ipc) {
  counts_t* c = ipc->data;
  c->disconnects++;
}

static void count_drain(herd_ipc_t* ipc) {
  counts_t* c = ipc->data;
  c->drains++;
}

static const herd_ipc_callbacks_t counting = {.message = count_message,
                                              .error = count_error,
                                              .disconnect = count_disconnect,
                                              .drain = count_drain};

static void pair(uv_loop_t* loop, herd_ipc_t* a, herd_ipc_t* b) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  memset(&ca, 0, sizeof(ca));
  memset(&cb_, 0, sizeof(cb_));
  ASSERT_OK(herd_ipc_open(loop, a, sv[0]));
  ASSERT_OK(herd_ipc_open(loop, b, sv[1]));
  a->data = &ca;
  b->data = &cb_;
}

/* One herd end and one raw socket for writing bad input by hand. */
static int half_pair(uv_loop_t* loop, herd_ipc_t* a) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  memset(&ca, 0, sizeof(ca));
  ASSERT_OK(herd_ipc_open(loop, a, sv[0]));
  a->data = &ca;
  return sv[1];
}

static void write_all(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    ASSERT(w > 0);
    s += w;
    n -= (size_t)w;
  }
}

/* Reads from a raw socket until `want` appears or 2 s pass. */
static void read_until(uv_loop_t* loop, int fd, const char* want, char* buf,
                       size_t cap) {
  size_t n = 0;
  for (int i = 0; i < 200; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    ssize_t r = recv(fd, buf + n, cap - 1 - n, MSG_DONTWAIT);
    if (r > 0) {
      n += (size_t)r;
      buf[n] = '\0';
      if (strstr(buf, want) != NULL)
        return;
    }
    test_sleep_ms(10);
  }
  buf[n] = '\0';
  FATAL("did not read %s (got \"%s\")", want, buf);
}

static void run_for(uv_loop_t* loop, int ms, int* flag) {
  for (int i = 0; i < ms && !*flag; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    if (!*flag)
      test_sleep_ms(1);
  }
}

TEST_IMPL(ipc_json) {
  const char* v;
  size_t vl;
  char out[64];
  int64_t n;
  const char* obj =
      "{\"cmd\":\"NODE_X\",\"s\":\"a\\u00e9\\ud83d\\ude00\\n\",\"n\":-42,"
      "\"o\":{\"s\":1},\"f\":1.5}";

  ASSERT_OK(herd_json_validate("{}", 2));
  ASSERT_OK(herd_json_validate(" [1, 2.5e3, true, false, null, \"x\"] ", 36));
  ASSERT_OK(herd_json_validate("\"\xf0\x9f\x98\x80\"", 6));
  ASSERT_EQ(herd_json_validate("{", 1), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("[1,]", 4), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("01", 2), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("{\"a\" 1}", 7), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("[}", 2), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("", 0), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("\"\x01\"", 3), HERD_EBADJSON);
  ASSERT_EQ(herd_json_validate("\"\xff\"", 3), HERD_EBADUTF8);
  ASSERT_EQ(herd_json_validate("\"\xc0\xaf\"", 4),
            HERD_EBADUTF8); /* overlong */
  ASSERT_EQ(herd_json_validate("\"\xed\xa0\x80\"", 5),
            HERD_EBADUTF8); /* surr */
  ASSERT_EQ(herd_json_validate("\"\xe2\x82\"", 4), HERD_EBADUTF8);

  ASSERT_OK(herd_json_get(obj, strlen(obj), "n", &v, &vl));
  ASSERT_EQ(vl, 3);
  ASSERT_EQ(herd_json_get(obj, strlen(obj), "missing", &v, &vl), UV_ENOENT);
  ASSERT_EQ(herd_json_get_string(obj, strlen(obj), "s", out, sizeof(out)), 8);
  ASSERT_STR_EQ(out, "a\xc3\xa9\xf0\x9f\x98\x80\n");
  ASSERT_EQ(herd_json_get_string(obj, strlen(obj), "s", out, 4), UV_ENOBUFS);
  ASSERT_EQ(herd_json_get_string(obj, strlen(obj), "n", out, 4), UV_EINVAL);
  ASSERT_OK(herd_json_get_int(obj, strlen(obj), "n", &n));
  ASSERT_EQ(n, -42);
  ASSERT_EQ(herd_json_get_int(obj, strlen(obj), "f", &n), UV_EINVAL);
  ASSERT_EQ(herd_json_get_int(obj, strlen(obj), "o", &n), UV_EINVAL);
  ASSERT_EQ(herd_json_quote(out, sizeof(out), "a\"b\\\n\x01", 6), 16);
  ASSERT_STR_EQ(out, "\"a\\\"b\\\\\\n\\u0001\"");
  ASSERT_EQ(herd_json_quote(out, 4, "abcdef", 6), 8);
  ASSERT_STR_EQ(out, "\"ab");
  return 0;
}

static void echo_message(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  (void)handle;
  count_message(ipc, json, len, NULL);
  ASSERT(herd_ipc_send(ipc, json, len) >= 0);
}

static void close_on_count(herd_ipc_t* ipc, const char* json, size_t len,
                           herd_handle_t* handle);
static int burst_total;
static int big_len;

static void close_on_count(herd_ipc_t* ipc, const char* json, size_t len,
                           herd_handle_t* handle) {
  counts_t* c = ipc->data;
  if (len > 1000)
    ASSERT_EQ(len, big_len);
  count_message(ipc, json, len, handle);
  if (c->messages == burst_total)
    herd_ipc_disconnect(ipc);
}

/* Messages both ways, a 1 MiB one, and a burst that must arrive complete and
 * in order; then a disconnect that reaches both ends. */
TEST_IMPL(ipc_roundtrip) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t ea = counting, eb = counting;
  char* big;
  char msg[64];
  const int burst = 100000;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  eb.message = echo_message;
  ea.message = close_on_count;
  ASSERT_OK(herd_ipc_start(&a, &ea));
  ASSERT_OK(herd_ipc_start(&b, &eb));

  ASSERT_OK(herd_ipc_send(&a, "\"\xf0\x9d\x84\x9e \xc3\xbc\"", 9));
  ASSERT_OK(herd_ipc_send(&a, "{\"a\":\n[1,{\"b\":null}]}", 21));
  big_len = 1024 * 1024;
  big = malloc((size_t)big_len);
  memset(big, 'x', (size_t)big_len);
  big[0] = '"';
  big[big_len - 1] = '"';
  ASSERT(herd_ipc_send(&a, big, (size_t)big_len) >= 0);
  free(big);
  for (int i = 0; i < burst; i++) {
    int n =
        snprintf(msg, sizeof(msg), "{\"cmd\":\"notifyRequest\",\"i\":%d}", i);
    ASSERT(herd_ipc_send(&a, msg, (size_t)n) >= 0);
  }
  burst_total = burst + 3;
  ASSERT(herd_ipc_queued_bytes(&a) > 0);
  ASSERT_EQ(herd_ipc_send(&a, "{", 1), HERD_EBADJSON);
  ASSERT_EQ(herd_ipc_send(&a, "\"\xff\"", 3), HERD_EBADUTF8);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.messages, burst + 3);
  ASSERT_EQ(cb_.messages, burst + 3);
  ASSERT_EQ(ca.next_i, burst);
  ASSERT_EQ(ca.disconnects, 1);
  ASSERT_EQ(cb_.disconnects, 1);
  ASSERT_EQ(ca.nerrors, 0);
  ASSERT_EQ(cb_.nerrors, 0);
  ASSERT_EQ(a.connected, 0);
  ASSERT_EQ(b.connected, 0);
  ASSERT_EQ(herd_ipc_send(&a, "1", 1), HERD_ECHANNELCLOSED);
  return 0;
}

/* Bad lines are reported and dropped; the channel goes on. */
TEST_IMPL(ipc_bad_input) {
  uv_loop_t loop;
  herd_ipc_t a;
  int raw;
  static const char input[] =
      "{\"ok\":1}\n"
      "{\"broken\":\n"
      "\"\xff\xfe\"\n"
      "\n"
      "{\"ok\":2}\n";

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  write_all(raw, input, sizeof(input) - 1);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.messages, 2);
  ASSERT_STR_EQ(ca.last, "{\"ok\":2}");
  ASSERT_EQ(ca.nerrors, 3);
  ASSERT_EQ(ca.errors[0], HERD_EBADJSON);
  ASSERT_EQ(ca.errors[1], HERD_EBADUTF8);
  ASSERT_EQ(ca.errors[2], HERD_EBADJSON);
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static void send_raw_fd(int sock, const char* data, int fd) {
  struct msghdr msg;
  struct iovec iov;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct cmsghdr* cm;
  memset(&msg, 0, sizeof(msg));
  iov.iov_base = (void*)data;
  iov.iov_len = strlen(data);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof(ctl.buf);
  cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  ASSERT_EQ(sendmsg(sock, &msg, 0), (ssize_t)strlen(data));
}

/* Writes all of it from the raw socket while the loop runs, so herd reads
 * as the peer writes (bounded to 10 s). */
static void write_running(uv_loop_t* loop, int raw, const char* s, size_t n) {
  uint64_t start = uv_hrtime();
  while (n > 0) {
    ssize_t w = send(raw, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      s += w;
      n -= (size_t)w;
    } else {
      ASSERT(errno == EAGAIN);
      ASSERT(uv_hrtime() - start < 10000000000ull);
    }
    uv_run(loop, UV_RUN_NOWAIT);
  }
}

/* What a raw peer reads from herd: the bytes, and the fds that came with
 * them in order. */
typedef struct {
  char buf[65536];
  size_t len;
  int fds[16];
  int nfds;
} peer_in_t;

/* Reads from the raw socket, running the loop, until `want` has been read
 * (counting from the start of in->buf) or 2 s pass. */
static void peer_read_until(uv_loop_t* loop, int raw, peer_in_t* in,
                            const char* want) {
  for (int i = 0; i < 2000; i++) {
    union {
      char buf[CMSG_SPACE(4 * sizeof(int))];
      struct cmsghdr align;
    } ctl;
    struct msghdr msg;
    struct iovec iov;
    ssize_t n;
    uv_run(loop, UV_RUN_NOWAIT);
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = in->buf + in->len;
    iov.iov_len = sizeof(in->buf) - 1 - in->len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    n = recvmsg(raw, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n > 0) {
      for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != NULL;
           cm = CMSG_NXTHDR(&msg, cm)) {
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t j = 0; j < k; j++) {
          ASSERT(in->nfds < 16);
          memcpy(&in->fds[in->nfds++], CMSG_DATA(cm) + j * sizeof(int),
                 sizeof(int));
        }
      }
      in->len += (size_t)n;
      in->buf[in->len] = '\0';
    }
    if (strstr(in->buf, want) != NULL)
      return;
    if (n <= 0)
      test_sleep_ms(1);
  }
  FATAL("did not read %s (got \"%s\")", want, in->buf);
}

static int count_in(const char* s, const char* what) {
  int n = 0;
  while ((s = strstr(s, what)) != NULL) {
    n++;
    s++;
  }
  return n;
}

static ino_t fd_inode(int fd) {
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

/* A line over the limit is reported and dropped as it streams by, without
 * being buffered, and the channel goes on: the next line arrives. A
 * NODE_HANDLE over the limit gets its NACK and its fd is closed. */
TEST_IMPL(ipc_line_too_long) {
  static const char handle_head[] =
      "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":\"";
  uv_loop_t loop;
  herd_ipc_t a;
  peer_in_t* in = calloc(1, sizeof(*in));
  char chunk[4096];
  size_t streamed = 0;
  int raw, fds_before, devnull;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  herd_ipc_set_max_line(&a, 100000);
  fds_before = test_count_fds();
  write_all(raw, "{\"fine\":true}\n\"", 15);
  memset(chunk, 'a', sizeof(chunk));
  herd__nonblock(raw, 1);
  /* 16 MB of one line: herd reports it once and holds about the limit. */
  for (int i = 0; i < 100000 && streamed < 16u << 20; i++) {
    ssize_t w = send(raw, chunk, sizeof(chunk), MSG_NOSIGNAL);
    if (w > 0)
      streamed += (size_t)w;
    else
      ASSERT(errno == EAGAIN);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  ASSERT_EQ(streamed, 16u << 20);
  ASSERT_EQ(ca.nerrors, 1);
  ASSERT_EQ(ca.errors[0], HERD_ELINETOOLONG);
  ASSERT_EQ(ca.messages, 1);
  ASSERT(a.connected);
  herd__nonblock(raw, 0);
  write_all(raw, "\"\n{\"next\":1}\n", 13);
  for (int i = 0; i < 200 && ca.messages < 2; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(ca.messages, 2);
  ASSERT_STR_EQ(ca.last, "{\"next\":1}");
  ASSERT_EQ(ca.nerrors, 1);

  /* Over the limit in one piece, with an fd: NACK, fd closed. */
  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  send_raw_fd(raw, handle_head, devnull);
  close(devnull);
  for (size_t n = 0; n < 200000; n += sizeof(chunk))
    write_running(&loop, raw, chunk, sizeof(chunk));
  write_running(&loop, raw, "\"}\n{\"next\":2}\n", 14);
  peer_read_until(&loop, raw, in, "{\"cmd\":\"NODE_HANDLE_NACK\"}\n");
  for (int i = 0; i < 200 && ca.messages < 3; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(ca.messages, 3);
  ASSERT_STR_EQ(ca.last, "{\"next\":2}");
  ASSERT_EQ(ca.nerrors, 2);
  ASSERT_EQ(ca.errors[1], HERD_ELINETOOLONG);
  ASSERT_EQ(test_count_fds(), fds_before);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.disconnects, 1);
  free(in);
  return 0;
}

/* The peer goes away in the middle of a line: a disconnect, not an error,
 * and the partial line is dropped. */
TEST_IMPL(ipc_peer_close_mid_message) {
  uv_loop_t loop;
  herd_ipc_t a;
  int raw;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  write_all(raw, "[1]\n{\"half\":", 12);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.messages, 1);
  ASSERT_EQ(ca.nerrors, 0);
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static int internal_seen;
static void on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  (void)ipc;
  (void)handle;
  ASSERT_EQ(json[len], '\0');
  internal_seen++;
}

/* An fd without NODE_HANDLE is closed; NODE_HANDLE without an fd is NACKed;
 * internal messages never reach the message callback. */
TEST_IMPL(ipc_stray_fds_and_internal) {
  uv_loop_t loop;
  herd_ipc_t a;
  int raw, fds_before, devnull;
  char buf[512];
  static const char lines[] =
      "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"x\":1}}\n"
      "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n"
      "{\"cmd\":\"NODE_\"}\n";

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  herd__ipc_set_internal_cb(&a, on_internal);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  fds_before = test_count_fds();
  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  send_raw_fd(raw, "{\"plain\":1}\n", devnull);
  close(devnull);
  write_all(raw, lines, strlen(lines));
  read_until(&loop, raw, "{\"cmd\":\"NODE_HANDLE_NACK\"}\n", buf, sizeof(buf));
  for (int i = 0; i < 100 && ca.messages < 2; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(ca.messages, 2); /* {"plain":1} and {"cmd":"NODE_"} */
  ASSERT_EQ(internal_seen, 1);
  ASSERT_EQ(test_count_fds(), fds_before);
  close(raw);
  test_loop_run_close(&loop);
  return 0;
}

static int nack_status = 1;
static void on_nack_done(herd_ipc_t* ipc, int status, void* arg) {
  (void)ipc;
  (void)arg;
  nack_status = status;
}

/* A peer that keeps refusing a handle: herd resends it three times, then
 * fails the send with HERD_EHANDLENACK; messages queued behind it go on. */
TEST_IMPL(ipc_handle_nack) {
  uv_loop_t loop;
  herd_ipc_t a;
  int raw, sent = 0, after = 0;
  char buf[8192];
  size_t n = 0;
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_OK(herd_ipc_send_fd(&a, "{\"h\":1}", 7, fd, "net.Native", on_nack_done,
                             NULL));
  close(fd);
  ASSERT_OK(herd_ipc_send(&a, "\"after\"", 7));
  herd__nonblock(raw, 1);
  for (int i = 0; i < 2000 && nack_status == 1; i++) {
    ssize_t r;
    uv_run(&loop, UV_RUN_NOWAIT);
    r = recv(raw, buf + n, sizeof(buf) - 1 - n, 0);
    if (r > 0) {
      /* Received fds were closed by the kernel: no cmsg buffer given. */
      n += (size_t)r;
      buf[n] = '\0';
      for (char* p = buf; (p = strstr(p, "NODE_HANDLE\"")) != NULL; p++) {
        sent++;
        write_all(raw, "{\"cmd\":\"NODE_HANDLE_NACK\"}\n", 27);
      }
      /* The queued message follows the last NACK in the same loop turn. */
      if (strstr(buf, "\"after\"\n") != NULL) {
        ASSERT_EQ(sent, 4);
        after = 1;
      }
      n = 0;
    }
    test_sleep_ms(1);
  }
  ASSERT_EQ(nack_status, HERD_EHANDLENACK);
  ASSERT_EQ(sent, 4);
  if (!after)
    read_until(&loop, raw, "\"after\"\n", buf, sizeof(buf));
  close(raw);
  test_loop_run_close(&loop);
  return 0;
}

static void drain_sender(herd_ipc_t* ipc);
static int drain_sent;
static const int drain_total = 100000;

static void drain_sender(herd_ipc_t* ipc) {
  char msg[64];
  while (drain_sent < drain_total) {
    int n = snprintf(msg, sizeof(msg), "{\"i\":%d,\"pad\":\"%032d\"}",
                     drain_sent, 0);
    int r = herd_ipc_send(ipc, msg, (size_t)n);
    ASSERT(r == 0 || r == 1);
    drain_sent++;
    if (r == 1)
      return; /* wait for drain */
  }
  herd_ipc_disconnect(ipc);
}

static void on_drain(herd_ipc_t* ipc) {
  count_drain(ipc);
  drain_sender(ipc);
}

/* send() says "full" above the high-water mark, nothing is dropped, and the
 * drain callback says when to go on. */
TEST_IMPL(ipc_backpressure) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t ea = counting;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  ea.drain = on_drain;
  ASSERT_OK(herd_ipc_start(&a, &ea));
  ASSERT_OK(herd_ipc_start(&b, &counting));
  drain_sender(&a);
  ASSERT(herd_ipc_queued_bytes(&a) > HERD_IPC_HIGH_WATER);
  test_loop_run_close(&loop);
  ASSERT_GE(ca.drains, 1);
  ASSERT_EQ(cb_.messages, drain_total);
  ASSERT_EQ(cb_.next_i, drain_total);
  ASSERT_EQ(cb_.disconnects, 1);
  return 0;
}

/* Messages sent before herd_ipc_start() on the other end wait for it. */
TEST_IMPL(ipc_buffer_until_start) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  int done = 0;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_OK(herd_ipc_send(&a, "{\"i\":0}", 7));
  ASSERT_OK(herd_ipc_send(&a, "{\"i\":1}", 7));
  run_for(&loop, 50, &done);
  ASSERT_EQ(cb_.messages, 0);
  ASSERT_OK(herd_ipc_start(&b, &counting));
  for (int i = 0; i < 100 && cb_.messages < 2; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(cb_.messages, 2);
  herd_ipc_disconnect(&a);
  test_loop_run_close(&loop);
  ASSERT_EQ(cb_.disconnects, 1);
  return 0;
}

TEST_IMPL(ipc_open_parent_env) {
  uv_loop_t loop;
  herd_ipc_t a;
  int sv[2];

  ASSERT_OK(uv_loop_init(&loop));
  unsetenv("NODE_CHANNEL_FD");
  ASSERT_EQ(herd_ipc_open_parent(&loop, &a), HERD_ENOCHANNEL);

  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  {
    char num[16];
    snprintf(num, sizeof(num), "%d", sv[0]);
    setenv("NODE_CHANNEL_FD", num, 1);
    /* A mode Node does not have (advanced: test-ipc-advanced.c). */
    setenv("NODE_CHANNEL_SERIALIZATION_MODE", "binary", 1);
    ASSERT_EQ(herd_ipc_open_parent(&loop, &a), HERD_EBADPROTO);
    ASSERT(getenv("NODE_CHANNEL_FD") == NULL);
    ASSERT(getenv("NODE_CHANNEL_SERIALIZATION_MODE") == NULL);
    /* The refused fd is closed so the parent sees the channel end. */
    ASSERT_EQ(recv(sv[1], num, 1, 0), 0);
    close(sv[1]);

    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv + 0), 0);
    close(sv[1]);
    snprintf(num, sizeof(num), "%d", sv[0]);
    setenv("NODE_CHANNEL_FD", num, 1);
    setenv("NODE_CHANNEL_SERIALIZATION_MODE", "json", 1);
    ASSERT_OK(herd_ipc_open_parent(&loop, &a));
    ASSERT(getenv("NODE_CHANNEL_FD") == NULL);
    ASSERT(getenv("NODE_CHANNEL_SERIALIZATION_MODE") == NULL);
    memset(&ca, 0, sizeof(ca));
    a.data = &ca;
    ASSERT_OK(herd_ipc_start(&a, &counting));
  }
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static int internal_handle_fd = -1;
static void on_internal_handle(herd_ipc_t* ipc, const char* json, size_t len,
                               herd_handle_t* handle) {
  (void)ipc;
  ASSERT_STR_EQ(json,
                "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"k\","
                "\"seq\":7}");
  ASSERT_EQ(strlen(json), len);
  ASSERT(handle != NULL);
  ASSERT_STR_EQ(handle->type, "net.Native");
  ASSERT_EQ(handle->family, AF_UNIX);
  internal_handle_fd = herd_handle_take(handle);
  ASSERT(internal_handle_fd >= 0);
  ASSERT_EQ(herd_handle_take(handle), UV_EINVAL);
}

/* A NODE_HANDLE whose inner message is internal (the cluster's newconn) goes
 * to the internal hook with its fd, after an ACK; user callbacks see
 * nothing. */
TEST_IMPL(ipc_internal_handle) {
  uv_loop_t loop;
  herd_ipc_t a;
  int raw, sv[2];
  char buf[256];

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  herd__ipc_set_internal_cb(&a, on_internal_handle);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  send_raw_fd(
      raw,
      "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"cmd\":"
      "\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":\"k\",\"seq\":7}}\n",
      sv[0]);
  close(sv[0]);
  read_until(&loop, raw, "{\"cmd\":\"NODE_HANDLE_ACK\"}\n", buf, sizeof(buf));
  for (int i = 0; i < 100 && internal_handle_fd < 0; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT(internal_handle_fd >= 0);
  /* The fd taken is the socket that was sent. */
  ASSERT_EQ(write(internal_handle_fd, "x", 1), 1);
  ASSERT_EQ(read(sv[1], buf, 1), 1);
  close(internal_handle_fd);
  close(sv[1]);
  ASSERT_EQ(ca.messages, 0);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

/* An unref'd channel does not keep the loop alive; ref() brings it back. */
TEST_IMPL(ipc_ref_unref) {
  uv_loop_t loop;
  herd_ipc_t a, b;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_OK(herd_ipc_start(&b, &counting));
  herd_ipc_unref(&a);
  herd_ipc_unref(&b);
  ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  herd_ipc_ref(&a);
  ASSERT_NE(uv_run(&loop, UV_RUN_NOWAIT), 0);
  herd_ipc_disconnect(&a);
  herd_ipc_disconnect(&b);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.disconnects, 1);
  ASSERT_EQ(cb_.disconnects, 1);
  return 0;
}

/* herd's scanner agrees with Node's JSON.parse() on thousands of small
 * texts built from JSON's alphabet (ASCII only, where the two must agree
 * exactly; invalid UTF-8 is where herd is stricter on purpose). */
TEST_IMPL(ipc_json_vs_node) {
  static const char alphabet[] = "{}[],:\"\\ 0123456789.eE+-truefalsnu\tx/bA";
  static const char* const seeds[] = {"{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}",
                                      "[true,false,null]",
                                      "\"\\u00e9\\n\\\"\"",
                                      "-0.5e+10",
                                      "{\"\":{}}",
                                      "[[[]]]",
                                      "0",
                                      "\"x\"",
                                      "[1.0,-0,2e5,3E-2]",
                                      "{\"a\" : 1 , \"b\" :\t[ ]}"};
  const int ncases = 4000;
  char path[] = "/tmp/herd-json-XXXXXX";
  char cmd[1200];
  char* expect;
  char** cases;
  FILE* f;
  int fd, mismatches = 0, valid = 0;
  uint32_t rnd = 12345;

  cases = calloc((size_t)ncases, sizeof(*cases));
  expect = malloc((size_t)ncases + 16);
  ASSERT(cases != NULL && expect != NULL);
  fd = mkstemp(path);
  ASSERT(fd >= 0);
  f = fdopen(fd, "w");
  for (int i = 0; i < ncases; i++) {
    char buf[64];
    size_t n;
#define RND() (rnd = rnd * 1103515245u + 12345u, (rnd >> 16) & 0x7fff)
    if (i % 2 == 0) {
      /* A seed with a few random edits. */
      snprintf(buf, sizeof(buf), "%s", seeds[RND() % HERD_ARRAY_SIZE(seeds)]);
      n = strlen(buf);
      for (int k = (int)(RND() % 3); k >= 0 && n > 0; k--) {
        size_t at = RND() % n;
        int op = (int)(RND() % 3);
        if (op == 0) {
          buf[at] = alphabet[RND() % (sizeof(alphabet) - 1)];
        } else if (op == 1) {
          memmove(buf + at, buf + at + 1, n - at);
          n--;
        } else if (n + 1 < sizeof(buf)) {
          memmove(buf + at + 1, buf + at, n - at + 1);
          buf[at] = alphabet[RND() % (sizeof(alphabet) - 1)];
          n++;
        }
      }
    } else {
      /* Pure noise from the alphabet. */
      n = 1 + RND() % 10;
      for (size_t k = 0; k < n; k++)
        buf[k] = alphabet[RND() % (sizeof(alphabet) - 1)];
      buf[n] = '\0';
    }
#undef RND
    cases[i] = strdup(buf);
    fprintf(f, "%s\n", buf);
  }
  fclose(f);
  snprintf(cmd, sizeof(cmd), "node %s/test/fixtures/json-parse.js %s",
           test_source_dir(), path);
  f = popen(cmd, "r");
  ASSERT(f != NULL);
  ASSERT(fgets(expect, ncases + 16, f) != NULL);
  ASSERT_EQ(pclose(f), 0);
  unlink(path);
  ASSERT_EQ(strlen(expect), ncases + 1);
  for (int i = 0; i < ncases; i++) {
    int ours = herd_json_validate(cases[i], strlen(cases[i])) == 0;
    valid += ours;
    if (ours != (expect[i] == '1')) {
      fprintf(stderr, "mismatch on [%s]: herd %d, JSON.parse %c\n", cases[i],
              ours, expect[i]);
      mismatches++;
    }
    free(cases[i]);
  }
  free(cases);
  free(expect);
  ASSERT_EQ(mismatches, 0);
  /* The mix must hold enough valid texts to mean something. */
  ASSERT_GE(valid, ncases / 20);
  return 0;
}

static herd_ipc_t* prep_ipc;
static void send_from_prepare(uv_prepare_t* prep) {
  ASSERT_OK(herd_ipc_send(prep_ipc, "\"from prepare\"", 14));
  uv_close((uv_handle_t*)prep, NULL);
}

static void stop_on_message(herd_ipc_t* ipc, const char* json, size_t len,
                            herd_handle_t* handle) {
  count_message(ipc, json, len, handle);
  herd_ipc_disconnect(ipc);
}

/* A send made from a prepare callback (after the channel's own flush point
 * in some loop designs) still leaves before the loop sleeps. */
TEST_IMPL(ipc_send_from_prepare) {
  uv_loop_t loop;
  uv_prepare_t prep;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t eb = counting;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  eb.message = stop_on_message;
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_OK(herd_ipc_start(&b, &eb));
  prep_ipc = &a;
  /* Let both channels settle first, so nothing else wakes the loop. */
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_prepare_init(&loop, &prep);
  uv_prepare_start(&prep, send_from_prepare);
  test_loop_run_close(&loop);
  ASSERT_EQ(cb_.messages, 1);
  ASSERT_STR_EQ(cb_.last, "\"from prepare\"");
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static void send_from_timer(uv_timer_t* timer) {
  ASSERT_OK(herd_ipc_send(prep_ipc, "\"from timer\"", 12));
  uv_close((uv_handle_t*)timer, NULL);
}

/* A send made from a timer callback, outside any read of the channel, leaves
 * before the loop sleeps: nothing else would wake this loop. */
TEST_IMPL(ipc_send_from_timer) {
  uv_loop_t loop;
  uv_timer_t timer;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t eb = counting;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  eb.message = stop_on_message;
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_OK(herd_ipc_start(&b, &eb));
  prep_ipc = &a;
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, send_from_timer, 1, 0);
  test_loop_run_close(&loop);
  ASSERT_EQ(cb_.messages, 1);
  ASSERT_STR_EQ(cb_.last, "\"from timer\"");
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static void reply_twice(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  char out[64];
  int n;
  count_message(ipc, json, len, handle);
  n = snprintf(out, sizeof(out), "{\"re\":%s}", json);
  ASSERT_OK(herd_ipc_send(ipc, out, (size_t)n));
  ASSERT_OK(herd_ipc_send(ipc, "0", 1));
}

/* Replies made by message callbacks leave in the loop turn that read the
 * messages, all of them together and in order, not a turn later. */
TEST_IMPL(ipc_reply_same_turn) {
  static const char want[] =
      "{\"re\":{\"i\":0}}\n0\n{\"re\":{\"i\":1}}\n0\n"
      "{\"re\":{\"i\":2}}\n0\n";
  uv_loop_t loop;
  herd_ipc_t a;
  herd_ipc_callbacks_t cbs = counting;
  char buf[256];
  ssize_t r;
  int raw;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  cbs.message = reply_twice;
  ASSERT_OK(herd_ipc_start(&a, &cbs));
  /* Past the start-up turn, which delivers what came before start(). */
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
  write_all(raw, "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n", 24);
  /* One turn: it reads the three lines and must also write the replies. */
  uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(ca.messages, 3);
  r = recv(raw, buf, sizeof(buf) - 1, MSG_DONTWAIT);
  ASSERT_EQ(r, (ssize_t)(sizeof(want) - 1));
  buf[r] = '\0';
  ASSERT_STR_EQ(buf, want);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static void forward_back(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  count_message(ipc, json, len, handle);
  /* Only the delivered text itself skips validation, not a part of it. */
  ASSERT_EQ(herd_ipc_send(ipc, json, len - 1), HERD_EBADJSON);
  ASSERT_EQ(herd_ipc_send(ipc, json + 1, len - 1), HERD_EBADJSON);
  ASSERT_OK(herd_ipc_send(ipc, json, len));
}

static void forward_done(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  count_message(ipc, json, len, handle);
  if (((counts_t*)ipc->data)->messages == 2)
    herd_ipc_disconnect(ipc);
}

/* A message sent on exactly as it was received arrives unchanged. */
TEST_IMPL(ipc_forward_as_received) {
  static const char first[] = "{\"i\":0,\"s\":\"\\u00e9\\n\\\"\"}";
  static const char second[] = "{ \"i\" :\n1 }";
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t ea = counting, eb = counting;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  ea.message = forward_done;
  eb.message = forward_back;
  ASSERT_OK(herd_ipc_start(&a, &ea));
  ASSERT_OK(herd_ipc_start(&b, &eb));
  ASSERT_OK(herd_ipc_send(&a, first, sizeof(first) - 1));
  ASSERT_OK(herd_ipc_send(&a, second, sizeof(second) - 1));
  test_loop_run_close(&loop);
  ASSERT_EQ(cb_.messages, 2);
  ASSERT_EQ(ca.messages, 2);
  ASSERT_STR_EQ(ca.last, "{ \"i\" : 1 }");
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static size_t huge_len;
static void huge_message(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  counts_t* c = ipc->data;
  (void)handle;
  c->messages++;
  if (c->messages == 1) {
    ASSERT_EQ(len, huge_len);
    ASSERT_EQ(json[0], '"');
    ASSERT_EQ(json[len / 2], 'y');
  } else {
    ASSERT_STR_EQ(json, "{\"after\":true}");
    herd_ipc_disconnect(ipc);
  }
}

/* A message bigger than the buffers' shrink threshold, then a small one on
 * the same channel: both arrive whole. */
TEST_IMPL(ipc_huge_message) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t eb = counting;
  char* huge;

  ASSERT_OK(uv_loop_init(&loop));
  pair(&loop, &a, &b);
  eb.message = huge_message;
  ASSERT_OK(herd_ipc_start(&a, &counting));
  ASSERT_OK(herd_ipc_start(&b, &eb));
  huge_len = 6 * 1024 * 1024;
  huge = malloc(huge_len);
  memset(huge, 'y', huge_len);
  huge[0] = '"';
  huge[huge_len - 1] = '"';
  ASSERT_EQ(herd_ipc_send(&a, huge, huge_len), 1);
  free(huge);
  ASSERT_EQ(herd_ipc_send(&a, "{\"after\":true}", 14), 1);
  test_loop_run_close(&loop);
  ASSERT_EQ(cb_.messages, 2);
  ASSERT_EQ(ca.disconnects, 1);
  return 0;
}

static ino_t pair_inodes[2];
static int paired;
static void pairing_message(herd_ipc_t* ipc, const char* json, size_t len,
                            herd_handle_t* handle) {
  struct stat st;
  int64_t which;
  count_message(ipc, json, len, NULL);
  if (handle == NULL)
    return;
  ASSERT_OK(herd_json_get_int(json, len, "n", &which));
  ASSERT(which == 0 || which == 1);
  ASSERT_EQ(fstat(handle->fd, &st), 0);
  ASSERT_EQ(st.st_ino, pair_inodes[which]);
  paired++;
}

/* Each fd goes with the NODE_HANDLE line that starts in the chunk it came
 * with, also when lines and fds arrive back to back or a line is split
 * across writes. */
TEST_IMPL(ipc_fd_pairing) {
  uv_loop_t loop;
  herd_ipc_t a;
  herd_ipc_callbacks_t cbs = counting;
  int raw, s1[2], s2[2];
  struct stat st;
  char buf[512];
  static const char h0[] =
      "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":{\"n\":0}}\n";
  static const char h1a[] = "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.S";
  static const char h1b[] = "ocket\",\"msg\":{\"n\":1}}\n[\"tail\"]\n";

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  cbs.message = pairing_message;
  ASSERT_OK(herd_ipc_start(&a, &cbs));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s1), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s2), 0);
  ASSERT_EQ(fstat(s1[0], &st), 0);
  pair_inodes[0] = st.st_ino;
  ASSERT_EQ(fstat(s2[0], &st), 0);
  pair_inodes[1] = st.st_ino;
  write_all(raw, "[\"head\"]\n", 9);
  send_raw_fd(raw, h0, s1[0]);
  send_raw_fd(raw, h1a, s2[0]);
  for (int i = 0; i < 5; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  write_all(raw, h1b, strlen(h1b));
  close(s1[0]);
  close(s2[0]);
  read_until(&loop, raw,
             "{\"cmd\":\"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_HANDLE_ACK\"}\n",
             buf, sizeof(buf));
  for (int i = 0; i < 100 && ca.messages < 4; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(paired, 2);
  ASSERT_EQ(ca.messages, 4);
  ASSERT_STR_EQ(ca.last, "[\"tail\"]");
  close(s1[1]);
  close(s2[1]);
  close(raw);
  test_loop_run_close(&loop);
  return 0;
}

/* A handle sent from a message callback while the same read still holds
 * more lines, the peer's answer among them: an answer that arrives before
 * the handle went out answers nothing. */
static struct {
  ino_t sent_ino;
  int calls;
  int status;
  int opened;
} early;

static void early_sent(herd_ipc_t* ipc, int status, void* arg) {
  (void)ipc;
  (void)arg;
  early.calls++;
  early.status = status;
}

static void early_message(herd_ipc_t* ipc, const char* json, size_t len,
                          herd_handle_t* handle) {
  count_message(ipc, json, len, handle);
  if (strcmp(json, "\"send\"") == 0) {
    int fd = memfd_create("herd-test-early", MFD_CLOEXEC);
    ASSERT(fd >= 0);
    early.sent_ino = fd_inode(fd);
    ASSERT_OK(herd_ipc_send_fd(ipc, "{\"h\":1}", 7, fd, "net.Native",
                               early_sent, NULL));
    close(fd);
  } else if (strcmp(json, "\"open\"") == 0) {
    /* A file opened next gets the lowest free number: the one herd's copy
     * of the handle had, were that copy closed too early. */
    early.opened = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT(early.opened >= 0);
  }
}

static void run_early_answer(const char* answer) {
  uv_loop_t loop;
  herd_ipc_t a;
  herd_ipc_callbacks_t cbs = counting;
  peer_in_t* in = calloc(1, sizeof(*in));
  char input[128];
  int raw, fds_before;
  int nack = strstr(answer, "NACK") != NULL;

  memset(&early, 0, sizeof(early));
  early.status = 1;
  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  cbs.message = early_message;
  ASSERT_OK(herd_ipc_start(&a, &cbs));
  fds_before = test_count_fds();
  snprintf(input, sizeof(input), "\"send\"\n%s\n\"open\"\n", answer);
  write_all(raw, input, strlen(input));
  for (int i = 0; i < 200 && ca.messages < 2; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(ca.messages, 2);
  /* The answer came before the handle was written: reported, ignored. */
  ASSERT_EQ(ca.nerrors, 1);
  ASSERT_EQ(ca.errors[0], HERD_EBADPROTO);
  ASSERT_EQ(early.calls, 0);

  /* The peer gets the fd herd was asked to send, once. */
  peer_read_until(&loop, raw, in, "{\"h\":1}}\n");
  ASSERT_EQ(count_in(in->buf, "NODE_HANDLE"), 1);
  ASSERT_EQ(in->nfds, 1);
  ASSERT_EQ(fd_inode(in->fds[0]), early.sent_ino);
  ASSERT_NE(fd_inode(in->fds[0]), fd_inode(early.opened));
  close(in->fds[0]);
  in->nfds = 0;

  if (nack) {
    /* A real NACK now: the same fd goes again. */
    write_all(raw, "{\"cmd\":\"NODE_HANDLE_NACK\"}\n", 27);
    peer_read_until(&loop, raw, in, "{\"h\":1}}\n{\"cmd\":\"NODE_HANDLE\"");
    peer_read_until(&loop, raw, in,
                    "{\"h\":1}}\n{\"cmd\":\"NODE_HANDLE\",\"type\":"
                    "\"net.Native\",\"msg\":{\"h\":1}}\n");
    ASSERT_EQ(in->nfds, 1);
    ASSERT_EQ(fd_inode(in->fds[0]), early.sent_ino);
    close(in->fds[0]);
    ASSERT_EQ(early.calls, 0);
  }
  write_all(raw, "{\"cmd\":\"NODE_HANDLE_ACK\"}\n", 26);
  for (int i = 0; i < 200 && early.calls == 0; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_EQ(early.calls, 1);
  ASSERT_OK(early.status);
  ASSERT_EQ(ca.nerrors, 1);
  close(early.opened);
  ASSERT_EQ(test_count_fds(), fds_before);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(early.calls, 1);
  ASSERT_EQ(ca.disconnects, 1);
  free(in);
}

TEST_IMPL(ipc_ack_before_written) {
  run_early_answer("{\"cmd\":\"NODE_HANDLE_ACK\"}");
  return 0;
}

TEST_IMPL(ipc_nack_before_written) {
  run_early_answer("{\"cmd\":\"NODE_HANDLE_NACK\"}");
  return 0;
}

/* ACK and NACK with no handle in flight, and the answers to socket-list
 * questions herd never asks, are reported and ignored; the questions a
 * Node sender asks about sockets it sent are answered. */
TEST_IMPL(ipc_stray_internal_replies) {
  static const char lines[] =
      "{\"cmd\":\"NODE_HANDLE_ACK\"}\n"
      "{\"cmd\":\"NODE_HANDLE_NACK\"}\n"
      "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"4:127.0.0.1:1\"}\n"
      "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"4:127.0.0.1:1\",\"count\":3}\n"
      "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\"}\n"
      "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"4:127.0.0.1:1\"}\n"
      "{\"cmd\":\"NODE_SOCKET_GET_COUNT\",\"key\":\"6:::1:2\"}\n"
      "{\"after\":1}\n";
  static const char want[] =
      "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"4:127.0.0.1:1\"}\n"
      "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"6:::1:2\",\"count\":0}\n";
  uv_loop_t loop;
  herd_ipc_t a;
  peer_in_t* in = calloc(1, sizeof(*in));
  int raw;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  herd__ipc_set_internal_cb(&a, on_internal);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  internal_seen = 0;
  write_all(raw, lines, sizeof(lines) - 1);
  peer_read_until(&loop, raw, in, want);
  for (int i = 0; i < 100 && ca.messages < 1; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  ASSERT_STR_EQ(in->buf, want);
  ASSERT_EQ(ca.messages, 1);
  ASSERT_STR_EQ(ca.last, "{\"after\":1}");
  ASSERT_EQ(ca.nerrors, 5);
  for (int i = 0; i < 5; i++)
    ASSERT_EQ(ca.errors[i], HERD_EBADPROTO);
  ASSERT_EQ(internal_seen, 0);
  close(raw);
  test_loop_run_close(&loop);
  free(in);
  return 0;
}

static size_t rss_bytes(void) {
  char buf[128];
  long pages = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  ASSERT(f != NULL);
  ASSERT(fgets(buf, sizeof(buf), f) != NULL);
  fclose(f);
  ASSERT_EQ(sscanf(buf, "%ld %ld", &pages, &resident), 2);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A peer floods fd-less NODE_HANDLE messages, each answered with a NACK,
 * and never reads: herd stops reading once its unwritten replies pass a
 * bound, so its memory stays flat however long the peer goes on. When the
 * peer reads again, every message is answered. */
TEST_IMPL(ipc_reply_flood) {
  static const char line[] = "{\"cmd\":\"NODE_HANDLE\"}\n";
  enum { L = sizeof(line) - 1, BATCH = 512, MAX_SENT = 64 << 20 };
  char* batch = malloc(BATCH * L);
  char* rbuf = malloc(1 << 16);
  uv_loop_t loop;
  herd_ipc_t a;
  uint64_t start, blocked_since = 0;
  size_t sent = 0, nacks = 0, rss0, rss1;
  int raw;

  for (int i = 0; i < BATCH; i++)
    memcpy(batch + i * L, line, L);
  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &counting));
  herd__nonblock(raw, 1);
  uv_run(&loop, UV_RUN_NOWAIT);
  rss0 = rss_bytes();
  start = uv_hrtime();
  /* Flood until the peer's writes have been blocked for 300 ms (herd no
   * longer reads), 64 MiB went, or 3 s passed. The stream stays a sequence
   * of whole lines: each send starts where the last one stopped. */
  while (sent < MAX_SENT && uv_hrtime() - start < 3000000000ull) {
    size_t off = sent % L;
    ssize_t w = send(raw, batch + off, BATCH * L - off, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      blocked_since = 0;
    } else {
      ASSERT(errno == EAGAIN);
      if (blocked_since == 0)
        blocked_since = uv_hrtime();
      else if (uv_hrtime() - blocked_since > 300000000ull)
        break;
      test_sleep_ms(1);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  rss1 = rss_bytes();
  fprintf(stderr, "flood: peer sent %zu bytes, herd queued %zu, rss %+zd\n",
          sent, herd_ipc_queued_bytes(&a), (ssize_t)(rss1 - rss0));
  ASSERT(blocked_since != 0);
  ASSERT_LE(herd_ipc_queued_bytes(&a), 128 * 1024);
  ASSERT_LE(rss1, rss0 + 8 * 1024 * 1024);

  /* Now the peer reads (and finishes its last line): herd resumes, and
   * every line gets its NACK. */
  start = uv_hrtime();
  while (uv_hrtime() - start < 10000000000ull) {
    ssize_t r;
    if (sent % L != 0) {
      ssize_t w = send(raw, batch + sent % L, L - sent % L, MSG_NOSIGNAL);
      if (w > 0)
        sent += (size_t)w;
    }
    r = recv(raw, rbuf, 1 << 16, MSG_DONTWAIT);
    for (ssize_t k = 0; k < r; k++)
      nacks += rbuf[k] == '\n';
    if (sent % L == 0 && nacks == sent / L)
      break;
    uv_run(&loop, UV_RUN_NOWAIT);
    if (r <= 0)
      test_sleep_ms(1);
  }
  ASSERT_EQ(sent % L, 0);
  ASSERT_EQ(nacks, sent / L);
  ASSERT_EQ(ca.messages, 0);
  ASSERT_EQ(ca.nerrors, 0);
  close(raw);
  test_loop_run_close(&loop);
  free(batch);
  free(rbuf);
  return 0;
}

/* Two herd ends that both send a lot at once, each respecting send()'s
 * return value, with handles in flight both ways (each answered with an
 * ACK, a reply herd makes by itself): neither end's pause on unwritten
 * replies can stop the other, so both finish. */
typedef struct {
  herd_ipc_t ipc;
  int sent, received, handles_sent, handles_acked, handles_got;
  int waiting; /* send() said full: wait for drain */
  int done;
} duplex_t;

enum { DUPLEX_N = 4000, DUPLEX_EVERY = 40 };
static duplex_t duplex[2];
static char duplex_pad[2048];

static void duplex_acked(herd_ipc_t* ipc, int status, void* arg) {
  duplex_t* d = arg;
  (void)ipc;
  ASSERT_OK(status);
  d->handles_acked++;
}

static void duplex_pump(duplex_t* d) {
  char msg[2200];
  d->waiting = 0;
  while (d->sent < DUPLEX_N) {
    int n = snprintf(msg, sizeof(msg), "{\"i\":%d,\"pad\":\"%s\"}", d->sent,
                     duplex_pad);
    int r;
    if (d->sent % DUPLEX_EVERY == 0) {
      int pv[2];
      ASSERT_EQ(pipe2(pv, O_CLOEXEC), 0);
      r = herd_ipc_send_fd(&d->ipc, msg, (size_t)n, pv[0], "net.Native",
                           duplex_acked, d);
      close(pv[0]);
      close(pv[1]);
      d->handles_sent++;
    } else {
      r = herd_ipc_send(&d->ipc, msg, (size_t)n);
    }
    ASSERT(r == 0 || r == 1);
    d->sent++;
    if (r == 1) {
      d->waiting = 1;
      return;
    }
  }
}

static void duplex_maybe_done(void) {
  for (int k = 0; k < 2; k++)
    if (duplex[k].received < DUPLEX_N ||
        duplex[k].handles_acked < duplex[k].handles_sent)
      return;
  for (int k = 0; k < 2; k++)
    if (!duplex[k].done) {
      duplex[k].done = 1;
      herd_ipc_disconnect(&duplex[k].ipc);
    }
}

static void duplex_message(herd_ipc_t* ipc, const char* json, size_t len,
                           herd_handle_t* handle) {
  duplex_t* d = ipc->data;
  int64_t i;
  ASSERT_OK(herd_json_get_int(json, len, "i", &i));
  ASSERT_EQ(i, d->received);
  ASSERT_EQ(handle != NULL, i % DUPLEX_EVERY == 0);
  d->handles_got += handle != NULL;
  d->received++;
  duplex_maybe_done();
}

static void duplex_drain(herd_ipc_t* ipc) {
  duplex_pump(ipc->data);
  duplex_maybe_done();
}

static void duplex_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  FATAL("channel error %s", herd_err_name(err));
}

static void duplex_ack_done(uv_timer_t* t) {
  (void)t;
  duplex_maybe_done();
}

TEST_IMPL(ipc_both_ways_bulk) {
  uv_loop_t loop;
  uv_timer_t check;
  herd_ipc_callbacks_t cbs = {
      .message = duplex_message, .error = duplex_error, .drain = duplex_drain};
  int sv[2];

  memset(duplex_pad, 'p', sizeof(duplex_pad) - 1);
  memset(duplex, 0, sizeof(duplex));
  memset(&ca, 0, sizeof(ca));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  for (int k = 0; k < 2; k++) {
    ASSERT_OK(herd_ipc_open(&loop, &duplex[k].ipc, sv[k]));
    duplex[k].ipc.data = &duplex[k];
    ASSERT_OK(herd_ipc_start(&duplex[k].ipc, &cbs));
  }
  duplex_pump(&duplex[0]);
  duplex_pump(&duplex[1]);
  /* The last ACKs can come after the last message: look again now and
   * then until both ends are through. */
  uv_timer_init(&loop, &check);
  uv_timer_start(&check, duplex_ack_done, 10, 10);
  for (int i = 0; i < 20000 && !(duplex[0].done && duplex[1].done); i++)
    uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t*)&check, NULL);
  test_loop_run_close(&loop);
  for (int k = 0; k < 2; k++) {
    ASSERT(duplex[k].done);
    ASSERT_EQ(duplex[k].received, DUPLEX_N);
    ASSERT_EQ(duplex[k].handles_got, DUPLEX_N / DUPLEX_EVERY);
    ASSERT_EQ(duplex[k].handles_acked, DUPLEX_N / DUPLEX_EVERY);
  }
  return 0;
}

/* Allocation failures anywhere in a busy exchange (messages with and
 * without callbacks, a handle, messages queued behind it, replies from the
 * receiving end): whatever fails, a send either fails at once without its
 * callback, or its callback runs exactly once; nothing leaks and both
 * channels close. Each run fails one more allocation, until a run goes
 * through without meeting the failure. */
static int alloc_count, alloc_fail_at;

static int alloc_should_fail(void) {
  return ++alloc_count == alloc_fail_at;
}
static void* failing_malloc(size_t n) {
  return alloc_should_fail() ? NULL : malloc(n);
}
static void* failing_realloc(void* p, size_t n) {
  return alloc_should_fail() ? NULL : realloc(p, n);
}
static void* failing_calloc(size_t c, size_t n) {
  return alloc_should_fail() ? NULL : calloc(c, n);
}

enum { AF_SENDS = 6 };
static struct {
  int accepted[AF_SENDS];
  int calls[AF_SENDS];
  int replies_accepted, replies_done;
} af;

static void af_sent(herd_ipc_t* ipc, int status, void* arg) {
  intptr_t i = (intptr_t)arg;
  (void)ipc;
  (void)status;
  ASSERT(af.accepted[i]);
  af.calls[i]++;
}

static void af_reply_sent(herd_ipc_t* ipc, int status, void* arg) {
  (void)ipc;
  (void)status;
  (void)arg;
  af.replies_done++;
}

/* The receiving end answers every message, with a callback. */
static void af_reply(herd_ipc_t* ipc, const char* json, size_t len,
                     herd_handle_t* handle) {
  (void)handle;
  if (herd_ipc_send_ex(ipc, json, len, NULL, 0, NULL, af_reply_sent, NULL) >= 0)
    af.replies_accepted++;
}

TEST_IMPL(ipc_alloc_failures) {
  char big[3000];
  int runs = 0, fds_before = test_count_fds();

  memset(big, 'b', sizeof(big));
  big[0] = big[sizeof(big) - 1] = '"';
  ASSERT_OK(herd_replace_allocator(failing_malloc, failing_realloc,
                                   failing_calloc, free));
  for (alloc_fail_at = 1;; alloc_fail_at++) {
    uv_loop_t loop;
    herd_ipc_t a, b;
    herd_ipc_callbacks_t cbs_b = {.message = af_reply};
    int sv[2], devnull, r;

    memset(&af, 0, sizeof(af));
    alloc_count = 0;
    ASSERT_OK(uv_loop_init(&loop));
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    if (herd_ipc_open(&loop, &a, sv[0]) != 0) {
      close(sv[0]);
      close(sv[1]);
      test_loop_close(&loop);
      continue;
    }
    if (herd_ipc_open(&loop, &b, sv[1]) != 0) {
      close(sv[1]);
      herd_ipc_disconnect(&a);
      ASSERT_OK(herd_ipc_start(&a, NULL));
      test_loop_run_close(&loop);
      continue;
    }
    ASSERT_OK(herd_ipc_start(&a, NULL));
    ASSERT_OK(herd_ipc_start(&b, &cbs_b));
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    r = herd_ipc_send(&a, "{\"i\":0}", 7);
    r = herd_ipc_send_ex(&a, "{\"i\":1}", 7, NULL, 0, NULL, af_sent,
                         (void*)(intptr_t)1);
    af.accepted[1] = r >= 0;
    r = herd_ipc_send_fd(&a, "{\"i\":2}", 7, devnull, "net.Native", af_sent,
                         (void*)(intptr_t)2);
    af.accepted[2] = r >= 0;
    r = herd_ipc_send_ex(&a, "{\"i\":3}", 7, NULL, 0, NULL, af_sent,
                         (void*)(intptr_t)3);
    af.accepted[3] = r >= 0;
    r = herd_ipc_send_fd(&a, "{\"i\":4}", 7, devnull, "net.Socket", af_sent,
                         (void*)(intptr_t)4);
    af.accepted[4] = r >= 0;
    r = herd_ipc_send_ex(&a, big, sizeof(big), NULL, 0, NULL, af_sent,
                         (void*)(intptr_t)5);
    af.accepted[5] = r >= 0;
    close(devnull);
    herd_ipc_disconnect(&a);
    /* b closes once a's end is gone. */
    test_loop_run_close(&loop);
    for (int i = 1; i < AF_SENDS; i++)
      ASSERT_EQ(af.calls[i], af.accepted[i]);
    ASSERT_EQ(af.replies_done, af.replies_accepted);
    ASSERT_EQ(test_count_fds(), fds_before);
    runs++;
    if (alloc_count < alloc_fail_at)
      break; /* this run met no failure: every allocation was tried */
  }
  ASSERT_OK(herd_replace_allocator(malloc, realloc, calloc, free));
  fprintf(stderr, "alloc failures: %d runs, one per allocation\n", runs);
  ASSERT_GE(runs, 10);
  return 0;
}
