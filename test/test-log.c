/* Tests of the log module: children's pipes read line by line and written
 * whole, with their prefix, to one output (a file, a pipe, a socket):
 * long lines, cut lines, partial last lines, eight writers at once under
 * back-pressure, a dead output, a blocked one, out of memory. */
#include "task.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WRITERS 8

/* The writer: `lines ID N BIG`: N lines "w<ID> <j> <payload>", the payload
 * 8 KiB on every BIG-th line, else 20 to 59 bytes, through a 4 KiB buffer
 * as stdio would (lines span writes). `long MAX`: lines around MAX, the
 * max_line the test sets. `hold`: a partial line, then waits for stdin's
 * end. */
static char payload_char(int j) {
  return (char)('a' + j % 26);
}

static size_t payload_len(int j, int big) {
  return (big > 0 && j % big == 0) ? 8192 : (size_t)(20 + j % 40);
}

static char wbuf[4096];
static size_t wlen;

static void wflush(void) {
  size_t off = 0;
  while (off < wlen) {
    ssize_t n = write(1, wbuf + off, wlen - off);
    ASSERT(n > 0);
    off += (size_t)n;
  }
  wlen = 0;
}

static void wput(const char* s, size_t n) {
  while (n > 0) {
    size_t k = sizeof(wbuf) - wlen < n ? sizeof(wbuf) - wlen : n;
    memcpy(wbuf + wlen, s, k);
    wlen += k;
    s += k;
    n -= k;
    if (wlen == sizeof(wbuf))
      wflush();
  }
}

static void wrepeat(char c, size_t n) {
  char chunk[1024];
  memset(chunk, c, sizeof(chunk));
  while (n > 0) {
    size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
    wput(chunk, k);
    n -= k;
  }
}

HELPER_IMPL(log_writer) {
  ASSERT(argc >= 2);
  if (strcmp(argv[1], "lines") == 0) {
    int id = atoi(argv[2]), n = atoi(argv[3]), big = atoi(argv[4]);
    for (int j = 0; j < n; j++) {
      char head[64];
      int k = snprintf(head, sizeof(head), "w%d %d ", id, j);
      wput(head, (size_t)k);
      wrepeat(payload_char(j), payload_len(j, big));
      wput("\n", 1);
    }
  } else if (strcmp(argv[1], "long") == 0) {
    size_t max = (size_t)atol(argv[2]);
    wrepeat('x', 100 * 1024);
    wput("\n", 1);
    wput("\n", 1);
    wrepeat('m', max);
    wput("\n", 1);
    wrepeat('y', 2 * max + 10);
    wput("\n", 1);
    wput("tail", 4);
  } else if (strcmp(argv[1], "direct") == 0) {
    /* Lines of 100 bytes, each in one write() of its own. */
    int n = atoi(argv[2]);
    for (int j = 0; j < n; j++) {
      char line[100];
      memset(line, 'o', sizeof(line));
      line[0] = 'O';
      line[99] = '\n';
      ASSERT_EQ(write(1, line, sizeof(line)), (ssize_t)sizeof(line));
    }
  } else if (strcmp(argv[1], "hold") == 0) {
    char c;
    wput("partial", 7);
    wflush();
    while (read(0, &c, 1) > 0) {
    }
  }
  wflush();
  return 0;
}

/* What the log wrote, collected from a pipe or socket on the same loop. */
typedef struct {
  uv_pipe_t pipe;
  int wfd; /* the end herd_log_init() gets */
  char* buf;
  size_t len;
  size_t cap;
  int eof;
} collector_t;

static void collect_alloc(uv_handle_t* h, size_t size, uv_buf_t* buf) {
  collector_t* c = h->data;
  if (c->cap - c->len < 65536) {
    c->cap = c->cap ? c->cap * 2 : 1 << 20;
    c->buf = realloc(c->buf, c->cap);
    ASSERT(c->buf != NULL);
  }
  (void)size;
  buf->base = c->buf + c->len;
  buf->len = c->cap - c->len - 1;
}

static void collect_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  collector_t* c = s->data;
  (void)buf;
  if (n > 0) {
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
  } else if (n < 0) {
    c->eof = 1;
    uv_close((uv_handle_t*)s, NULL);
  }
}

/* A pipe (socket 0) or a socketpair (socket 1) whose write end is wfd. */
static void collector_init(uv_loop_t* loop, collector_t* c, int socket) {
  int fds[2];
  memset(c, 0, sizeof(*c));
  if (socket)
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  else
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  ASSERT_OK(uv_pipe_init(loop, &c->pipe, 0));
  ASSERT_OK(uv_pipe_open(&c->pipe, fds[0]));
  c->pipe.data = c;
  c->wfd = fds[1];
}

static void collector_start(collector_t* c) {
  ASSERT_OK(uv_read_start((uv_stream_t*)&c->pipe, collect_alloc, collect_read));
}

/* The writers. */
typedef struct {
  herd_child_t child;
  herd_log_pipe_t lp;
  int child_closed;
  int pipe_closed;
} writer_t;

static void on_writer_closed(herd_child_t* child) {
  ((writer_t*)child)->child_closed = 1;
}

static void on_log_pipe_closed(herd_log_pipe_t* p) {
  writer_t* w = p->data;
  w->pipe_closed++;
}

/* Starts the writer helper with `args` (after "log_writer"); its stdout
 * goes through `log` with `prefix`. */
static void writer_start(uv_loop_t* loop, herd_log_t* log, writer_t* w,
                         const char* prefix, const char* cont,
                         const char* const* args, int stdin_pipe) {
  const char* argv[10] = {"--helper", "log_writer"};
  herd_spawn_options_t o;
  herd_stdio_t stdio[3];
  int fds[2], i;

  for (i = 0; args[i] != NULL; i++)
    argv[2 + i] = args[i];
  argv[2 + i] = NULL;
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  memset(w, 0, sizeof(*w));
  memset(&o, 0, sizeof(o));
  stdio[0].kind = stdin_pipe ? HERD_STDIO_PIPE : HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_FD;
  stdio[1].fd = fds[1];
  stdio[2].kind = HERD_STDIO_INHERIT;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.close_cb = on_writer_closed;
  ASSERT_OK(herd_spawn(loop, &w->child, test_exe(), argv, &o));
  close(fds[1]);
  w->lp.data = w;
  ASSERT_OK(herd_log_pipe_open(log, &w->lp, fds[0], prefix, cont,
                               on_log_pipe_closed));
}

static int log_closed;
static void on_log_closed(herd_log_t* log) {
  (void)log;
  log_closed++;
}

/* Runs the loop until every writer and its pipe are done. */
static void wait_writers(uv_loop_t* loop, writer_t* w, int n) {
  for (int i = 0; i < n; i++)
    while (!w[i].child_closed || !w[i].pipe_closed)
      uv_run(loop, UV_RUN_ONCE);
}

static void close_log(uv_loop_t* loop, herd_log_t* log) {
  int before = log_closed;
  herd_log_close(log, on_log_closed);
  while (log_closed == before)
    uv_run(loop, UV_RUN_ONCE);
}

/* Checks that `out` holds exactly n lines per writer, each whole and in
 * order, each prefixed "[id] ". */
static int check_lines(const char* out, size_t len, int writers, int n,
                       int big) {
  int next[MAX_WRITERS] = {0}, others = 0;
  const char* p = out;
  const char* end = out + len;
  while (p < end) {
    const char* nl = memchr(p, '\n', (size_t)(end - p));
    int id, id2, j, k = 0;
    size_t plen;
    char head[64];
    ASSERT(nl != NULL);
    if (p[0] == 'O') {
      /* Another process's line (log_shared_output): whole too. */
      ASSERT_EQ(nl - p, 99);
      for (int i = 1; i < 99; i++)
        ASSERT_EQ(p[i], 'o');
      others++;
      p = nl + 1;
      continue;
    }
    /* sscanf() on the whole buffer would measure it each time: parse a
     * copy of the line's head. */
    snprintf(head, sizeof(head), "%.*s",
             (int)((size_t)(nl - p) < 63 ? (size_t)(nl - p) : 63), p);
    if (sscanf(head, "[%d] w%d %d %n", &id, &id2, &j, &k) != 3 || k == 0)
      FATAL("bad line: %.80s", p);
    ASSERT_EQ(id, id2);
    ASSERT(id >= 0 && id < writers);
    ASSERT_EQ(j, next[id]);
    next[id]++;
    plen = (size_t)(nl - (p + k));
    ASSERT_EQ(plen, payload_len(j, big));
    for (size_t i = 0; i < plen; i++)
      if (p[k + i] != payload_char(j))
        FATAL("writer %d line %d: byte %zu mixed up", id, j, i);
    p = nl + 1;
  }
  for (int i = 0; i < writers; i++)
    ASSERT_EQ(next[i], n);
  return others;
}

/* Eight writers, 10,000 lines each, every 50th of 8 KiB, into a pipe that
 * is not read at first: the log pauses the writers (back-pressure), then
 * every line arrives whole, in order, attributed. */
TEST_IMPL(log_eight_writers) {
  uv_loop_t loop;
  herd_log_t log;
  herd_log_options_t lo;
  collector_t c;
  writer_t w[MAX_WRITERS];
  char prefix[MAX_WRITERS][16], ids[MAX_WRITERS][8];

  ASSERT_OK(uv_loop_init(&loop));
  collector_init(&loop, &c, 0);
  memset(&lo, 0, sizeof(lo));
  lo.high_water = 64 * 1024;
  ASSERT_OK(herd_log_init(&loop, &log, c.wfd, &lo));
  for (int i = 0; i < MAX_WRITERS; i++) {
    const char* args[] = {"lines", ids[i], "10000", "50", NULL};
    snprintf(prefix[i], sizeof(prefix[i]), "[%d] ", i);
    snprintf(ids[i], sizeof(ids[i]), "%d", i);
    writer_start(&loop, &log, &w[i], prefix[i], NULL, args, 0);
  }
  /* Nobody reads the output yet: the log must pause the pipes. */
  for (int i = 0; log.pauses == 0; i++) {
    ASSERT(i < 100000);
    uv_run(&loop, UV_RUN_ONCE);
  }
  collector_start(&c);
  wait_writers(&loop, w, MAX_WRITERS);
  close_log(&loop, &log);
  close(c.wfd);
  while (!c.eof)
    uv_run(&loop, UV_RUN_ONCE);
  test_loop_run_close(&loop);
  fprintf(stderr, "%zu bytes, %llu lines, %llu pauses\n", c.len,
          (unsigned long long)log.lines, (unsigned long long)log.pauses);
  ASSERT_EQ(log.lines, MAX_WRITERS * 10000);
  ASSERT_EQ(log.dropped, 0);
  ASSERT_EQ(log.error, 0);
  for (int i = 0; i < MAX_WRITERS; i++) {
    ASSERT_EQ(w[i].lp.lines, 10000);
    ASSERT_EQ(w[i].child.exit_status, 0);
  }
  check_lines(c.buf, c.len, MAX_WRITERS, 10000, 50);
  free(c.buf);
  return 0;
}

/* Checks that *p starts with prefix, n bytes c and a newline; moves on. */
static void expect_line(const char** p, const char* prefix, char c, size_t n) {
  const char* s = *p;
  ASSERT(strncmp(s, prefix, strlen(prefix)) == 0);
  s += strlen(prefix);
  for (size_t i = 0; i < n; i++)
    if (s[i] != c)
      FATAL("byte %zu of a '%c' line is wrong", i, c);
  s += n;
  ASSERT_EQ(*s, '\n');
  *p = s + 1;
}

/* Long lines into a regular file: beyond the pipe buffer they stay whole,
 * beyond max_line they are cut into pieces marked by cont_prefix, and a
 * last line without newline gets one. */
TEST_IMPL(log_long_lines) {
  enum { MAX = 200000 };
  uv_loop_t loop;
  herd_log_t log;
  herd_log_options_t lo;
  writer_t w;
  char path[64], smax[16];
  const char* args[] = {"long", smax, NULL};
  char* out;
  const char* p;
  size_t len;
  int fd;

  snprintf(path, sizeof(path), "/tmp/herd-log-%d", (int)getpid());
  snprintf(smax, sizeof(smax), "%d", MAX);
  fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  ASSERT(fd >= 0);
  ASSERT_OK(uv_loop_init(&loop));
  memset(&lo, 0, sizeof(lo));
  lo.max_line = MAX;
  ASSERT_OK(herd_log_init(&loop, &log, fd, &lo));
  writer_start(&loop, &log, &w, "P: ", "P+ ", args, 0);
  wait_writers(&loop, &w, 1);
  ASSERT_OK(herd_log_write(&log, "herd: ", "own\nlines", 9));
  close_log(&loop, &log);
  test_loop_run_close(&loop);
  close(fd);
  out = test_read_file(path, &len);
  unlink(path);
  ASSERT(out != NULL);
  ASSERT_EQ(log.cut, 1);
  ASSERT_EQ(w.lp.lines, 5);
  ASSERT_EQ(log.lines, 7 + 2);

  p = out;
  expect_line(&p, "P: ", 'x', 100 * 1024);
  expect_line(&p, "P: ", 'x', 0);
  expect_line(&p, "P: ", 'm', MAX);
  expect_line(&p, "P: ", 'y', MAX);
  expect_line(&p, "P+ ", 'y', MAX);
  expect_line(&p, "P+ ", 'y', 10);
  ASSERT(strncmp(p, "P: tail\nherd: own\nherd: lines\n", 30) == 0);
  ASSERT_EQ((size_t)(p + 30 - out), len);
  free(out);
  return 0;
}

/* A socket as output (journald's stream): written with send(). */
TEST_IMPL(log_output_socket) {
  uv_loop_t loop;
  herd_log_t log;
  collector_t c;
  writer_t w[2];
  const char* a0[] = {"lines", "0", "2000", "7", NULL};
  const char* a1[] = {"lines", "1", "2000", "7", NULL};

  ASSERT_OK(uv_loop_init(&loop));
  collector_init(&loop, &c, 1);
  ASSERT_OK(herd_log_init(&loop, &log, c.wfd, NULL));
  ASSERT(!(fcntl(c.wfd, F_GETFL) & O_NONBLOCK)); /* the shared mode kept */
  collector_start(&c);
  writer_start(&loop, &log, &w[0], "[0] ", NULL, a0, 0);
  writer_start(&loop, &log, &w[1], "[1] ", NULL, a1, 0);
  wait_writers(&loop, w, 2);
  close_log(&loop, &log);
  close(c.wfd);
  while (!c.eof)
    uv_run(&loop, UV_RUN_ONCE);
  test_loop_run_close(&loop);
  check_lines(c.buf, c.len, 2, 2000, 7);
  free(c.buf);
  return 0;
}

/* The output pipe has another writer, writing lines of its own with one
 * write() each: as herd writes whole lines only, PIPE_BUF at most at a
 * time, no line of either side is ever split by the other's. */
TEST_IMPL(log_shared_output) {
  uv_loop_t loop;
  herd_log_t log;
  collector_t c;
  writer_t w[2];
  herd_child_t other;
  herd_spawn_options_t o;
  herd_stdio_t stdio[3];
  const char* a0[] = {"lines", "0", "20000", "0", NULL};
  const char* a1[] = {"lines", "1", "20000", "0", NULL};
  const char* ao[] = {"--helper", "log_writer", "direct", "20000", NULL};

  ASSERT_OK(uv_loop_init(&loop));
  collector_init(&loop, &c, 0);
  ASSERT_OK(herd_log_init(&loop, &log, c.wfd, NULL));
  collector_start(&c);
  memset(&o, 0, sizeof(o));
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_FD;
  stdio[1].fd = c.wfd;
  stdio[2].kind = HERD_STDIO_INHERIT;
  o.stdio = stdio;
  o.stdio_count = 3;
  ASSERT_OK(herd_spawn(&loop, &other, test_exe(), ao, &o));
  writer_start(&loop, &log, &w[0], "[0] ", NULL, a0, 0);
  writer_start(&loop, &log, &w[1], "[1] ", NULL, a1, 0);
  wait_writers(&loop, w, 2);
  while (!other.exited)
    uv_run(&loop, UV_RUN_ONCE);
  close_log(&loop, &log);
  close(c.wfd);
  while (!c.eof)
    uv_run(&loop, UV_RUN_ONCE);
  test_loop_run_close(&loop);
  ASSERT_EQ(check_lines(c.buf, c.len, 2, 20000, 0), 20000);
  free(c.buf);
  return 0;
}

/* Nobody reads the output any more: the error is kept, later lines are
 * dropped and counted, and the writers never block on it. */
TEST_IMPL(log_output_error) {
  uv_loop_t loop;
  herd_log_t log;
  writer_t w;
  const char* args[] = {"lines", "0", "20000", "10", NULL};
  int fds[2];

  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  close(fds[0]);
  ASSERT_OK(herd_log_init(&loop, &log, fds[1], NULL));
  writer_start(&loop, &log, &w, "[0] ", NULL, args, 0);
  wait_writers(&loop, &w, 1);
  ASSERT_EQ(log.error, UV_EPIPE);
  ASSERT_EQ(w.child.exit_status, 0);
  ASSERT_EQ(w.lp.lines, 20000);
  ASSERT_GE(log.dropped, 1);
  ASSERT_EQ(herd_log_write(&log, NULL, "x", 1), UV_EPIPE);
  close_log(&loop, &log);
  test_loop_run_close(&loop);
  close(fds[1]);
  return 0;
}

/* Closing while a writer still holds its pipe open: the partial line goes
 * out, close callbacks come; an output that never takes the queue is
 * given up after linger_ms. */
TEST_IMPL(log_close_early) {
  uv_loop_t loop;
  herd_log_t log;
  herd_log_options_t lo;
  collector_t c;
  writer_t w;
  const char* args[] = {"hold", NULL};
  char big[256 * 1024];
  uint64_t start;

  ASSERT_OK(uv_loop_init(&loop));
  collector_init(&loop, &c, 0);
  ASSERT_OK(herd_log_init(&loop, &log, c.wfd, NULL));
  collector_start(&c);
  writer_start(&loop, &log, &w, "H ", NULL, args, 1);
  /* Wait for the partial line to be read (it stays buffered). */
  while (w.lp.bytes < 7)
    uv_run(&loop, UV_RUN_ONCE);
  ASSERT_EQ(c.len, 0);
  herd_log_pipe_close(&w.lp);
  herd_log_pipe_close(&w.lp);
  while (w.pipe_closed == 0)
    uv_run(&loop, UV_RUN_ONCE);
  ASSERT_EQ(w.pipe_closed, 1);
  while (c.len < 10)
    uv_run(&loop, UV_RUN_ONCE);
  ASSERT_STR_EQ(c.buf, "H partial\n");
  herd_child_end(&w.child, 0);
  while (!w.child_closed)
    uv_run(&loop, UV_RUN_ONCE);
  {
    /* No new pipe once closing; the fd is closed for the caller. */
    int before = log_closed, d = dup(2);
    herd_log_close(&log, on_log_closed);
    ASSERT_EQ(herd_log_pipe_open(&log, &w.lp, d, "x", NULL, NULL),
              UV_ECANCELED);
    ASSERT_EQ(fcntl(d, F_GETFD), -1);
    while (log_closed == before)
      uv_run(&loop, UV_RUN_ONCE);
  }
  close(c.wfd);
  while (!c.eof)
    uv_run(&loop, UV_RUN_ONCE);
  free(c.buf);

  /* A blocked output: after linger_ms what is queued is dropped. */
  collector_init(&loop, &c, 0);
  memset(&lo, 0, sizeof(lo));
  lo.linger_ms = 50;
  ASSERT_OK(herd_log_init(&loop, &log, c.wfd, &lo));
  memset(big, 'b', sizeof(big));
  for (int i = 0; i < 4; i++)
    ASSERT_OK(herd_log_write(&log, "B ", big, sizeof(big)));
  ASSERT_EQ(log.lines, 4);
  start = uv_now(&loop);
  close_log(&loop, &log);
  uv_update_time(&loop);
  ASSERT_GE(uv_now(&loop) - start, 50);
  ASSERT_GE(log.dropped, 1);
  close(c.wfd);
  uv_close((uv_handle_t*)&c.pipe, NULL);
  test_loop_run_close(&loop);
  return 0;
}

/* Out of memory: every failing call returns UV_ENOMEM and leaves nothing
 * behind (the fd it was given is closed, no callback comes); a line that
 * cannot be buffered is cut, not lost. */
static int allocs_left = -1;
static void* counting_malloc(size_t n) {
  if (allocs_left == 0)
    return NULL;
  if (allocs_left > 0)
    allocs_left--;
  return malloc(n);
}
static void* counting_realloc(void* p, size_t n) {
  if (allocs_left == 0)
    return NULL;
  if (allocs_left > 0)
    allocs_left--;
  return realloc(p, n);
}
static void* counting_calloc(size_t c, size_t n) {
  if (allocs_left == 0)
    return NULL;
  if (allocs_left > 0)
    allocs_left--;
  return calloc(c, n);
}

TEST_IMPL(log_out_of_memory) {
  uv_loop_t loop;
  herd_log_t log;
  herd_log_pipe_t lp;
  collector_t c;
  int fds[2], r, opened = 0;
  char line[1000];

  ASSERT_OK(herd_replace_allocator(counting_malloc, counting_realloc,
                                   counting_calloc, free));
  ASSERT_OK(uv_loop_init(&loop));
  collector_init(&loop, &c, 0);
  collector_start(&c);
  allocs_left = 0;
  ASSERT_EQ(herd_log_init(&loop, &log, c.wfd, NULL), UV_ENOMEM);
  allocs_left = -1;
  ASSERT_OK(herd_log_init(&loop, &log, c.wfd, NULL));
  for (int k = 0; !opened; k++) {
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    allocs_left = k;
    r = herd_log_pipe_open(&log, &lp, fds[0], "M ", NULL, NULL);
    allocs_left = -1;
    if (r == 0) {
      opened = 1;
      break;
    }
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT_EQ(fcntl(fds[0], F_GETFD), -1); /* closed for the caller */
    close(fds[1]);
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  /* A 1000-byte line arriving in pieces, with no memory to keep it (the
   * output queue has room from a first line). */
  ASSERT_EQ(write(fds[1], "first\n", 6), 6);
  while (lp.bytes < 6)
    uv_run(&loop, UV_RUN_ONCE);
  memset(line, 'z', sizeof(line));
  ASSERT_EQ(write(fds[1], line, 500), 500);
  while (lp.bytes < 506)
    uv_run(&loop, UV_RUN_ONCE);
  allocs_left = 0;
  ASSERT_EQ(write(fds[1], line, 500), 500);
  ASSERT_EQ(write(fds[1], "\n", 1), 1);
  while (lp.bytes < 1007)
    uv_run(&loop, UV_RUN_ONCE);
  allocs_left = -1;
  close(fds[1]);
  close_log(&loop, &log);
  close(c.wfd);
  while (!c.eof)
    uv_run(&loop, UV_RUN_ONCE);
  test_loop_run_close(&loop);
  {
    size_t zs = 0;
    for (size_t i = 0; i < c.len; i++)
      zs += c.buf[i] == 'z';
    ASSERT_EQ(zs, 1000); /* nothing lost */
    ASSERT_GE(log.cut, 1);
  }
  free(c.buf);
  return 0;
}
