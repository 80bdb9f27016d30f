/* The worker side of the cluster protocol against a primary played by hand:
 * the test holds the primary's end of the channel as a raw socket, and the
 * worker is the runner re-executed as helper ipc_worker, a real
 * herd_cluster_worker_setup() worker that takes orders as user messages.
 * The primary lies: answers to questions never asked, answers twice, asks
 * about servers the worker does not have, sends fds where none belong,
 * floods without reading. */
#include "internal.h"
#include "task.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* The worker: user messages {"listen":N}, {"close":1}, {"disconnect":1},
 * {"ping":1}; it answers {"listened":I,"status":S}, {"conn":I},
 * {"pong":1}. A primary that goes away makes it exit 3. */
#define WORKER_SERVERS 64
static herd_server_t wservers[WORKER_SERVERS];
static int nwservers;

static void worker_report(const char* json) {
  ASSERT(herd_cluster_worker_send(json, strlen(json)) >= 0);
}

static void worker_listened(herd_server_t* server, int status) {
  char buf[64];
  snprintf(buf, sizeof(buf), "{\"listened\":%d,\"status\":%d}",
           (int)(server - wservers), status);
  worker_report(buf);
}

static void worker_conn(herd_server_t* server, int status) {
  int fd;
  ASSERT_OK(status);
  ASSERT_OK(herd_server_accept_fd(server, &fd));
  ASSERT_EQ(write(fd, "hi", 2), 2);
  close(fd);
  {
    char buf[64];
    snprintf(buf, sizeof(buf), "{\"conn\":%d}", (int)(server - wservers));
    worker_report(buf);
  }
}

static void worker_message(herd_ipc_t* ipc, const char* json, size_t len,
                           herd_handle_t* handle) {
  int64_t n;
  (void)ipc;
  ASSERT(handle == NULL);
  if (herd_json_get_int(json, len, "listen", &n) == 0) {
    ASSERT(nwservers + n <= WORKER_SERVERS);
    for (int64_t i = 0; i < n; i++) {
      herd_server_t* s = &wservers[nwservers++];
      ASSERT_OK(herd_server_init(ipc->loop, s));
      ASSERT_OK(herd_server_listen(s, "127.0.0.1", 0, 0, worker_conn,
                                   worker_listened));
    }
  } else if (herd_json_get_int(json, len, "close", &n) == 0) {
    for (int i = 0; i < nwservers; i++)
      herd_server_close(&wservers[i], NULL);
  } else if (herd_json_get_int(json, len, "disconnect", &n) == 0) {
    herd_cluster_worker_disconnect();
  } else {
    ASSERT(herd_json_get_int(json, len, "ping", &n) == 0);
    worker_report("{\"pong\":1}");
  }
}

static void worker_orphaned(void) {
  exit(3);
}

HELPER_IMPL(ipc_worker) {
  uv_loop_t loop;
  herd_cluster_worker_options_t opts;
  (void)argc;
  (void)argv;
  memset(&opts, 0, sizeof(opts));
  opts.message = worker_message;
  opts.orphaned = worker_orphaned;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_cluster_worker_setup(&loop, &opts));
  uv_run(&loop, UV_RUN_DEFAULT);
  /* Servers closed from the last callbacks finish here. */
  uv_run(&loop, UV_RUN_DEFAULT);
  test_loop_close(&loop);
  return 0;
}

/* The primary's side. */
typedef struct {
  uv_loop_t loop;
  herd_child_t child;
  int raw;
  char in[1 << 16]; /* what the worker wrote, not yet taken as lines */
  size_t in_len;
  int64_t seq; /* the primary's next seq */
  int closed;
} primary_t;

static void primary_closed(herd_child_t* child) {
  primary_t* p = HERD_CONTAINER_OF(child, primary_t, child);
  p->closed = 1;
}

static void primary_start(primary_t* p) {
  static const char* env[] = {"NODE_CHANNEL_FD=3", "NODE_UNIQUE_ID=1",
                              "NODE_CHANNEL_SERIALIZATION_MODE=json", NULL};
  herd_spawn_options_t o;
  herd_stdio_t stdio[4] = {{HERD_STDIO_INHERIT, 0},
                           {HERD_STDIO_INHERIT, 0},
                           {HERD_STDIO_INHERIT, 0},
                           {HERD_STDIO_FD, 0}};
  int sv[2];
  memset(p, 0, sizeof(*p));
  ASSERT_OK(uv_loop_init(&p->loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  stdio[3].fd = sv[1];
  memset(&o, 0, sizeof(o));
  o.env = env;
  o.stdio = stdio;
  o.stdio_count = 4;
  o.close_cb = primary_closed;
  ASSERT_OK(herd_spawn(&p->loop, &p->child, test_exe(),
                       test_helper_args("ipc_worker", NULL, NULL), &o));
  close(sv[1]);
  p->raw = sv[0];
  herd__nonblock(p->raw, 1);
}

/* Reads until a whole line holding `want` arrived (5 s at most) and copies
 * it to out; lines before it are dropped, lines after it kept. */
static void primary_expect(primary_t* p, const char* want, char* out,
                           size_t cap) {
  uint64_t start = uv_hrtime();
  for (;;) {
    char* line = p->in;
    char* nl;
    while ((nl = memchr(line, '\n', p->in_len - (size_t)(line - p->in)))) {
      *nl = '\0';
      if (strstr(line, want) != NULL) {
        if (out != NULL && cap > 0) { /* cut to cap, as meant */
          size_t n = strlen(line) < cap ? strlen(line) : cap - 1;
          memcpy(out, line, n);
          out[n] = '\0';
        }
        p->in_len -= (size_t)(nl + 1 - p->in);
        memmove(p->in, nl + 1, p->in_len);
        return;
      }
      line = nl + 1;
    }
    p->in_len -= (size_t)(line - p->in);
    memmove(p->in, line, p->in_len);
    if (uv_hrtime() - start > 5000000000ull)
      FATAL("no line with %s (buffered: %.*s)", want, (int)p->in_len, p->in);
    {
      ssize_t r = recv(p->raw, p->in + p->in_len, sizeof(p->in) - p->in_len, 0);
      if (r > 0)
        p->in_len += (size_t)r;
      else
        test_sleep_ms(1);
      ASSERT(r != 0);
    }
    uv_run(&p->loop, UV_RUN_NOWAIT);
  }
}

/* Whether the worker wrote a line holding `what` within `ms` (lines read
 * meanwhile are kept). */
static int primary_sees(primary_t* p, const char* what, int ms) {
  uint64_t start = uv_hrtime();
  while (uv_hrtime() - start < (uint64_t)ms * 1000000) {
    ssize_t r =
        recv(p->raw, p->in + p->in_len, sizeof(p->in) - 1 - p->in_len, 0);
    if (r > 0)
      p->in_len += (size_t)r;
    p->in[p->in_len] = '\0';
    if (strstr(p->in, what) != NULL)
      return 1;
    if (r <= 0)
      test_sleep_ms(1);
    uv_run(&p->loop, UV_RUN_NOWAIT);
  }
  return 0;
}

static void primary_write(primary_t* p, const char* s, int fd) {
  struct msghdr msg;
  struct iovec iov;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  size_t n = strlen(s);
  memset(&msg, 0, sizeof(msg));
  iov.iov_base = (void*)s;
  iov.iov_len = n;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    struct cmsghdr* cm;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  ASSERT_EQ(sendmsg(p->raw, &msg, MSG_NOSIGNAL), (ssize_t)n);
}

/* Sends {"cmd":"NODE_CLUSTER",<fields>,"seq":N}, or, with fd >= 0, that
 * message inside a NODE_HANDLE envelope with the fd. */
static void primary_cluster(primary_t* p, const char* fields, int fd) {
  char buf[512];
  if (fd >= 0)
    snprintf(buf, sizeof(buf),
             "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":"
             "{\"cmd\":\"NODE_CLUSTER\",%s,\"seq\":%lld}}\n",
             fields, (long long)p->seq++);
  else
    snprintf(buf, sizeof(buf), "{\"cmd\":\"NODE_CLUSTER\",%s,\"seq\":%lld}\n",
             fields, (long long)p->seq++);
  primary_write(p, buf, fd);
}

/* A socketpair whose first end is sent; returns the end kept, which reads
 * EOF once every copy of the sent end is closed. */
static int sent_pair(int* send_end) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  *send_end = sv[0];
  return sv[1];
}

/* The fd sent from `kept`'s pair has been closed by the worker. */
static void assert_closed_by_worker(primary_t* p, int kept) {
  char c;
  struct timeval tv = {0, 20000};
  setsockopt(kept, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  for (int i = 0; i < 250; i++) {
    ssize_t r = recv(kept, &c, 1, 0);
    if (r == 0) {
      close(kept);
      return;
    }
    uv_run(&p->loop, UV_RUN_NOWAIT);
  }
  FATAL("the worker kept an fd that came with the wrong message");
}

/* Reads until the worker closes the channel and checks how it ended. */
static void primary_wait_end(primary_t* p, int want_exit) {
  char line[512];
  herd__nonblock(p->raw, 0);
  {
    struct timeval tv = {5, 0};
    setsockopt(p->raw, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  for (;;) {
    ssize_t r = recv(p->raw, line, sizeof(line), 0);
    ASSERT(r >= 0);
    if (r == 0)
      break;
  }
  close(p->raw);
  test_loop_run_close(&p->loop);
  ASSERT(p->closed);
  ASSERT_EQ(p->child.exit_status, want_exit);
  ASSERT_EQ(p->child.term_signal, 0);
}

/* Lets the worker go with act:disconnect. */
static void primary_finish(primary_t* p, int want_exit) {
  primary_cluster(p, "\"act\":\"disconnect\"", -1);
  primary_wait_end(p, want_exit);
}

static int64_t seq_of(const char* line) {
  int64_t seq;
  ASSERT_OK(herd_json_get_int(line, strlen(line), "seq", &seq));
  return seq;
}

/* Answers to queries the worker never sent, or already had answered, are
 * ignored (and fds that come with them closed); the real answer still
 * counts. Once, an ack of -1 disconnected the worker. */
TEST_IMPL(ipc_worker_stray_replies) {
  static primary_t p;
  char line[512], fields[256];
  int64_t query;
  int kept, send_end;

  primary_start(&p);
  primary_expect(&p, "\"act\":\"online\"", line, sizeof(line));
  ASSERT_EQ(seq_of(line), 0);
  primary_write(&p, "{\"listen\":1}\n", -1);
  primary_expect(&p, "\"act\":\"queryServer\"", line, sizeof(line));
  query = seq_of(line);
  ASSERT_EQ(query, 1);

  primary_cluster(&p, "\"ack\":-1,\"key\":\"x\",\"errno\":null", -1);
  primary_cluster(&p, "\"ack\":0,\"key\":\"x\",\"errno\":null", -1);
  primary_cluster(&p, "\"ack\":999,\"key\":\"x\",\"errno\":null", -1);
  primary_cluster(&p, "\"ack\":\"1\",\"key\":\"x\",\"errno\":null", -1);
  kept = sent_pair(&send_end);
  primary_cluster(&p, "\"ack\":77,\"key\":\"x\",\"errno\":null", send_end);
  close(send_end);
  assert_closed_by_worker(&p, kept);
  primary_write(&p, "{\"ping\":1}\n", -1);
  primary_expect(&p, "{\"pong\":1}", NULL, 0);

  snprintf(fields, sizeof(fields),
           "\"ack\":%lld,\"key\":\"127.0.0.1:0:4:undefined:0\","
           "\"sockname\":{\"address\":\"127.0.0.1\",\"family\":\"IPv4\","
           "\"port\":5555},\"errno\":null",
           (long long)query);
  primary_cluster(&p, fields, -1);
  primary_expect(&p, "\"act\":\"listening\"", line, sizeof(line));
  ASSERT(strstr(line, "\"port\":5555") != NULL);
  primary_expect(&p, "{\"listened\":0,\"status\":0}", NULL, 0);

  /* The same answer again, now with a listening socket: not a query. */
  kept = sent_pair(&send_end);
  primary_cluster(&p, fields, send_end);
  close(send_end);
  assert_closed_by_worker(&p, kept);
  primary_write(&p, "{\"ping\":1}\n", -1);
  primary_expect(&p, "{\"pong\":1}", NULL, 0);
  ASSERT(!primary_sees(&p, "listened", 50));
  primary_finish(&p, 0);
  return 0;
}

/* Servers closed before their queryServer was answered: however many, the
 * worker tells the primary to forget each one when its answer comes. */
TEST_IMPL(ipc_worker_many_orphans) {
  enum { N = 40 };
  static primary_t p;
  char line[512], fields[256];
  int64_t seqs[N];

  primary_start(&p);
  primary_expect(&p, "\"act\":\"online\"", NULL, 0);
  primary_write(&p, "{\"listen\":40}\n", -1);
  for (int i = 0; i < N; i++) {
    primary_expect(&p, "\"act\":\"queryServer\"", line, sizeof(line));
    seqs[i] = seq_of(line);
  }
  primary_write(&p, "{\"close\":1}\n{\"ping\":1}\n", -1);
  primary_expect(&p, "{\"pong\":1}", NULL, 0);
  for (int i = 0; i < N; i++) {
    snprintf(fields, sizeof(fields),
             "\"ack\":%lld,\"key\":\"k%d\",\"sockname\":{\"port\":1},"
             "\"errno\":null",
             (long long)seqs[i], i);
    primary_cluster(&p, fields, -1);
  }
  for (int i = 0; i < N; i++) {
    snprintf(fields, sizeof(fields), "\"act\":\"close\",\"key\":\"k%d\"", i);
    primary_expect(&p, fields, NULL, 0);
  }
  /* A second answer to an orphan is not another orphan. */
  snprintf(fields, sizeof(fields),
           "\"ack\":%lld,\"key\":\"k0\",\"sockname\":{\"port\":1},"
           "\"errno\":null",
           (long long)seqs[0]);
  primary_cluster(&p, fields, -1);
  primary_write(&p, "{\"ping\":1}\n", -1);
  primary_expect(&p, "{\"pong\":1}", NULL, 0);
  ASSERT(!primary_sees(&p, "\"act\":\"close\"", 50));
  primary_finish(&p, 0);
  return 0;
}

/* newconn: for a key the worker does not serve, or without a connection,
 * the answer is accepted:false (as Node's worker answers) and the fd is
 * closed; for its own key the connection is served. Messages that carry
 * no connection in the protocol (disconnect) have a stray fd closed. */
TEST_IMPL(ipc_worker_newconn) {
  static primary_t p;
  char line[512], fields[256];
  const char* key = "127.0.0.1:0:4:undefined:0";
  int kept, send_end;
  int64_t seq;

  primary_start(&p);
  primary_expect(&p, "\"act\":\"online\"", NULL, 0);
  primary_write(&p, "{\"listen\":1}\n", -1);
  primary_expect(&p, "\"act\":\"queryServer\"", line, sizeof(line));
  snprintf(fields, sizeof(fields),
           "\"ack\":%lld,\"key\":\"%s\",\"sockname\":{\"port\":5555},"
           "\"errno\":null",
           (long long)seq_of(line), key);
  primary_cluster(&p, fields, -1);
  primary_expect(&p, "{\"listened\":0,\"status\":0}", NULL, 0);

  kept = sent_pair(&send_end);
  seq = p.seq;
  primary_cluster(&p, "\"act\":\"newconn\",\"key\":\"other\"", send_end);
  close(send_end);
  snprintf(fields, sizeof(fields), "\"ack\":%lld,\"accepted\":false",
           (long long)seq);
  primary_expect(&p, fields, NULL, 0);
  assert_closed_by_worker(&p, kept);

  seq = p.seq;
  snprintf(fields, sizeof(fields), "\"act\":\"newconn\",\"key\":\"%s\"", key);
  primary_cluster(&p, fields, -1);
  snprintf(fields, sizeof(fields), "\"ack\":%lld,\"accepted\":false",
           (long long)seq);
  primary_expect(&p, fields, NULL, 0);

  kept = sent_pair(&send_end);
  seq = p.seq;
  snprintf(fields, sizeof(fields), "\"act\":\"newconn\",\"key\":\"%s\"", key);
  primary_cluster(&p, fields, send_end);
  close(send_end);
  snprintf(fields, sizeof(fields), "\"ack\":%lld,\"accepted\":true",
           (long long)seq);
  primary_expect(&p, fields, NULL, 0);
  primary_expect(&p, "{\"conn\":0}", NULL, 0);
  {
    char hi[3] = {0};
    ASSERT_EQ(recv(kept, hi, 2, 0), 2);
    ASSERT_STR_EQ(hi, "hi");
    close(kept);
  }

  /* disconnect with an fd: the fd is closed, the disconnect done. */
  kept = sent_pair(&send_end);
  primary_cluster(&p, "\"act\":\"disconnect\"", send_end);
  close(send_end);
  assert_closed_by_worker(&p, kept);
  primary_expect(&p, "\"act\":\"close\"", NULL, 0);
  primary_wait_end(&p, 0);
  return 0;
}

/* The worker's own disconnect waits for the ack of its exitedAfterDisconnect
 * message, and only that ack ends it. */
TEST_IMPL(ipc_worker_disconnect_ack) {
  static primary_t p;
  char line[512], fields[128];
  int64_t seq;
  int kept, send_end;

  primary_start(&p);
  primary_expect(&p, "\"act\":\"online\"", NULL, 0);
  primary_write(&p, "{\"disconnect\":1}\n", -1);
  primary_expect(&p, "\"act\":\"exitedAfterDisconnect\"", line, sizeof(line));
  seq = seq_of(line);
  primary_cluster(&p, "\"ack\":-1", -1);
  snprintf(fields, sizeof(fields), "\"ack\":%lld", (long long)seq + 1);
  primary_cluster(&p, fields, -1);
  snprintf(fields, sizeof(fields), "\"ack\":%lld", (long long)seq - 1);
  primary_cluster(&p, fields, -1);
  /* Still connected: the channel has not closed. */
  ASSERT(!primary_sees(&p, "never", 100));
  ASSERT(!p.closed);
  {
    char c;
    ASSERT_EQ(recv(p.raw, &c, 1, MSG_DONTWAIT), -1);
    ASSERT_EQ(errno, EAGAIN);
  }
  /* The real ack, with a stray fd. */
  kept = sent_pair(&send_end);
  snprintf(fields, sizeof(fields), "\"ack\":%lld", (long long)seq);
  primary_cluster(&p, fields, send_end);
  close(send_end);
  assert_closed_by_worker(&p, kept);
  primary_wait_end(&p, 0);
  return 0;
}

static size_t child_rss(pid_t pid) {
  char path[64], buf[128];
  long pages, resident;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
  f = fopen(path, "r");
  ASSERT(f != NULL);
  ASSERT(fgets(buf, sizeof(buf), f) != NULL);
  fclose(f);
  ASSERT_EQ(sscanf(buf, "%ld %ld", &pages, &resident), 2);
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A primary floods newconn messages and never reads the worker's acks: the
 * worker stops reading once its unread replies pass a bound, and answers
 * every one of them when the primary reads again. */
TEST_IMPL(ipc_worker_reply_flood) {
  enum { MAX_SENT = 32 << 20 };
  static primary_t p;
  static char batch[1 << 16];
  size_t blen = 0, sent = 0, off = 0, lines = 0, acks = 0, rss0, rss1;
  uint64_t start, blocked_since = 0;

  primary_start(&p);
  primary_expect(&p, "\"act\":\"online\"", NULL, 0);
  primary_write(&p, "{\"ping\":1}\n", -1);
  primary_expect(&p, "{\"pong\":1}", NULL, 0);
  rss0 = child_rss(p.child.pid);
  /* One batch of newconns for a key the worker does not have; every line
   * has its own seq, so each batch is rewritten as it goes. */
  start = uv_hrtime();
  while (sent < MAX_SENT && uv_hrtime() - start < 3000000000ull) {
    ssize_t w;
    if (off == blen) {
      blen = 0;
      while (blen + 100 < sizeof(batch)) {
        blen +=
            (size_t)snprintf(batch + blen, sizeof(batch) - blen,
                             "{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\","
                             "\"key\":\"nope\",\"seq\":%lld}\n",
                             (long long)p.seq++);
        lines++;
      }
      off = 0;
    }
    w = send(p.raw, batch + off, blen - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
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
    uv_run(&p.loop, UV_RUN_NOWAIT);
  }
  rss1 = child_rss(p.child.pid);
  fprintf(stderr, "worker flood: sent %zu bytes, worker rss %+zd\n", sent,
          (ssize_t)(rss1 - rss0));
  ASSERT(blocked_since != 0);
  ASSERT_LE(rss1, rss0 + 8 * 1024 * 1024);

  /* Read again: the rest of the batch goes, and every newconn is
   * answered. */
  start = uv_hrtime();
  for (;;) {
    ssize_t r;
    if (off < blen) {
      ssize_t w = send(p.raw, batch + off, blen - off, MSG_NOSIGNAL);
      if (w > 0)
        off += (size_t)w;
    }
    r = recv(p.raw, p.in, sizeof(p.in), 0);
    for (ssize_t k = 0; k < r; k++)
      acks += p.in[k] == '\n';
    if (off == blen && acks == lines)
      break;
    ASSERT(uv_hrtime() - start < 10000000000ull);
    uv_run(&p.loop, UV_RUN_NOWAIT);
    if (r <= 0)
      test_sleep_ms(1);
  }
  p.in_len = 0;
  primary_finish(&p, 0);
  return 0;
}
