/* Workers' output line by line: pipes split into lines, lines queued with
 * their prefix and written whole to one output. See include/herd/log.h. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* One read from a pipe: what a Linux pipe holds by default. Shared by all
 * the pipes of a log (libuv runs each read's alloc, read and callback
 * before the next). */
#define SCRATCH_SIZE 65536
/* A partial line buffer that grew beyond this is freed once the line is
 * out, so one long line does not keep memory for the worker's lifetime. */
#define PARTIAL_KEEP 16384
/* Likewise for the output queue once empty. */
#define QUEUE_KEEP   65536
#define MIN_MAX_LINE 64

static void log_flush(herd_log_t* log);
static void log_maybe_finish(herd_log_t* log);

/* The queue. */

static int queue_reserve(herd_log_t* log, size_t n) {
  size_t cap;
  char* q;
  if (log->qoff > 0 &&
      (log->qcap - log->qlen < n || log->qoff >= log->qlen / 2)) {
    memmove(log->queue, log->queue + log->qoff, log->qlen - log->qoff);
    log->qlen -= log->qoff;
    log->qoff = 0;
  }
  if (log->qcap - log->qlen >= n)
    return 0;
  cap = log->qcap ? log->qcap : 4096;
  while (cap - log->qlen < n) {
    if (cap > SIZE_MAX / 2)
      return UV_ENOMEM;
    cap *= 2;
  }
  q = herd__realloc(log->queue, cap);
  if (q == NULL)
    return UV_ENOMEM;
  log->queue = q;
  log->qcap = cap;
  return 0;
}

/* Queues prefix + s[0..n) + "\n". */
static int queue_line(herd_log_t* log, const char* prefix, size_t plen,
                      const char* s, size_t n) {
  int r;
  if (log->error != 0) {
    log->dropped++;
    return log->error;
  }
  r = queue_reserve(log, plen + n + 1);
  if (r != 0) {
    log->dropped++;
    return r;
  }
  memcpy(log->queue + log->qlen, prefix, plen);
  memcpy(log->queue + log->qlen + plen, s, n);
  log->queue[log->qlen + plen + n] = '\n';
  log->qlen += plen + n + 1;
  log->lines++;
  return 0;
}

static size_t queued(const herd_log_t* log) {
  return log->qlen - log->qoff;
}

/* Output. */

static void set_pipes_reading(herd_log_t* log, int on);

static void on_writable(uv_poll_t* poll, int status, int events) {
  herd_log_t* log = HERD_CONTAINER_OF(poll, herd_log_t, poll);
  struct epoll_event ev;
  (void)status;
  (void)events;
  /* Reap the readiness; the set is level-triggered, so nothing is lost. */
  epoll_wait(log->epfd, &ev, 1, 0);
  uv_poll_stop(&log->poll);
  log->waiting = 0;
  log_flush(log);
}

/* The output took nothing: wait until it can take more. */
static int wait_writable(herd_log_t* log) {
  int r;
  if (log->epfd < 0) {
    struct epoll_event ev;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
      return -errno;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLOUT;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, log->fd, &ev) != 0) {
      r = -errno;
      close(epfd);
      return r;
    }
    r = uv_poll_init(log->loop, &log->poll, epfd);
    if (r != 0) {
      close(epfd);
      return r;
    }
    log->poll.data = log;
    log->epfd = epfd;
    log->handles++;
  }
  r = uv_poll_start(&log->poll, UV_READABLE, on_writable);
  if (r == 0)
    log->waiting = 1;
  return r;
}

static void drop_queue(herd_log_t* log) {
  for (size_t i = log->qoff; i < log->qlen; i++)
    log->dropped += log->queue[i] == '\n';
  log->qoff = log->qlen = 0;
}

/* The next write: whole lines up to PIPE_BUF bytes, or the rest of one
 * longer line. The queue always ends with a newline. */
static size_t next_chunk(const herd_log_t* log) {
  const char* p = log->queue + log->qoff;
  size_t avail = queued(log);
  const char* nl = memchr(p, '\n', avail);
  size_t chunk = (size_t)(nl - p) + 1;
  while (chunk < avail && chunk < PIPE_BUF) {
    const char* next = memchr(p + chunk, '\n', avail - chunk);
    size_t end = (size_t)(next - p) + 1;
    if (end > PIPE_BUF)
      break;
    chunk = end;
  }
  return chunk;
}

static void log_flush(herd_log_t* log) {
  while (!log->waiting && log->error == 0 && queued(log) > 0) {
    size_t chunk = next_chunk(log);
    const char* p = log->queue + log->qoff;
    ssize_t n;
    do
      n = log->use_send ? send(log->fd, p, chunk, MSG_DONTWAIT | MSG_NOSIGNAL)
                        : write(log->fd, p, chunk);
    while (n < 0 && errno == EINTR);
    if (n >= 0) {
      log->qoff += (size_t)n;
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int r = wait_writable(log);
      if (r == 0)
        break;
      log->error = r;
    } else {
      log->error = -errno;
    }
    drop_queue(log);
  }
  if (queued(log) == 0) {
    log->qoff = log->qlen = 0;
    if (log->qcap > QUEUE_KEEP) {
      herd__free(log->queue);
      log->queue = NULL;
      log->qcap = 0;
    }
  }
  if (log->paused && queued(log) <= log->high_water / 2)
    set_pipes_reading(log, 1);
  log_maybe_finish(log);
}

/* Pipes. */

static void emit_piece(herd_log_pipe_t* p, const char* s, size_t n, int final) {
  herd_log_t* log = p->log;
  if (p->cutting)
    queue_line(log, p->cont_prefix, p->cont_prefix_len, s, n);
  else
    queue_line(log, p->prefix, p->prefix_len, s, n);
  if (!final) {
    if (!p->cutting)
      log->cut++;
    p->cutting = 1;
  } else {
    p->cutting = 0;
    p->lines++;
  }
}

/* A whole line (its newline seen) of n bytes at s. */
static void emit_line(herd_log_pipe_t* p, const char* s, size_t n) {
  size_t max = p->log->max_line;
  while (n > max) {
    emit_piece(p, s, max, 0);
    s += max;
    n -= max;
  }
  emit_piece(p, s, n, 1);
}

static void partial_reset(herd_log_pipe_t* p) {
  p->plen = 0;
  if (p->pcap > PARTIAL_KEEP) {
    herd__free(p->partial);
    p->partial = NULL;
    p->pcap = 0;
  }
}

/* Adds n bytes of a line whose newline has not come yet. */
static void partial_add(herd_log_pipe_t* p, const char* s, size_t n) {
  size_t max = p->log->max_line;
  while (n > 0) {
    size_t take = max - p->plen;
    if (take == 0) {
      /* More than max_line bytes without a newline: out goes a piece. */
      emit_piece(p, p->partial, p->plen, 0);
      p->plen = 0;
      take = max;
    }
    if (take > n)
      take = n;
    if (p->pcap - p->plen < take) {
      size_t cap = p->pcap ? p->pcap : 256;
      char* np;
      while (cap - p->plen < take)
        cap *= 2;
      if (cap > max)
        cap = max;
      np = herd__realloc(p->partial, cap);
      if (np == NULL) {
        /* No memory to keep the line whole: cut it here rather than lose
         * any of it. */
        if (p->plen > 0)
          emit_piece(p, p->partial, p->plen, 0);
        p->plen = 0;
        emit_piece(p, s, take, 0);
        s += take;
        n -= take;
        continue;
      }
      p->partial = np;
      p->pcap = cap;
    }
    memcpy(p->partial + p->plen, s, take);
    p->plen += take;
    s += take;
    n -= take;
  }
}

static void split(herd_log_pipe_t* p, const char* s, size_t n) {
  while (n > 0) {
    const char* nl = memchr(s, '\n', n);
    size_t k = nl != NULL ? (size_t)(nl - s) : n;
    if (nl == NULL) {
      partial_add(p, s, k);
      break;
    }
    if (p->plen == 0) {
      emit_line(p, s, k);
    } else {
      partial_add(p, s, k);
      emit_piece(p, p->partial, p->plen, 1);
      partial_reset(p);
    }
    s += k + 1;
    n -= k + 1;
  }
}

/* The end of a pipe's data: a last line without newline goes out. */
static void pipe_end_line(herd_log_pipe_t* p) {
  if (p->plen > 0) {
    emit_piece(p, p->partial, p->plen, 1);
  } else if (p->cutting) {
    p->cutting = 0;
    p->lines++;
  }
  partial_reset(p);
}

static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) {
  herd_log_pipe_t* p = handle->data;
  (void)suggested;
  buf->base = p->log->scratch;
  buf->len = SCRATCH_SIZE;
}

static void on_pipe_closed(uv_handle_t* handle) {
  herd_log_pipe_t* p = handle->data;
  herd_log_t* log = p->log;
  herd_log_pipe_close_cb cb = p->close_cb;
  herd__free(handle);
  herd__free(p->prefix);
  herd__free(p->partial);
  p->handle = NULL;
  p->prefix = p->cont_prefix = p->partial = NULL;
  p->plen = p->pcap = 0;
  if (p->prev != NULL)
    p->prev->next = p->next;
  else
    log->pipes = p->next;
  if (p->next != NULL)
    p->next->prev = p->prev;
  p->next = p->prev = NULL;
  log->handles--;
  if (cb != NULL)
    cb(p);
  log_maybe_finish(log);
}

static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  herd_log_pipe_t* p = stream->data;
  herd_log_t* log = p->log;
  if (nread > 0) {
    p->bytes += (uint64_t)nread;
    split(p, buf->base, (size_t)nread);
    if (!log->paused && queued(log) > log->high_water) {
      log->pauses++;
      set_pipes_reading(log, 0);
    }
    log_flush(log);
  } else if (nread < 0) {
    herd_log_pipe_close(p);
  }
}

static void set_pipes_reading(herd_log_t* log, int on) {
  log->paused = !on;
  for (herd_log_pipe_t* p = log->pipes; p != NULL; p = p->next) {
    if (p->closing)
      continue;
    if (on)
      uv_read_start((uv_stream_t*)p->handle, on_alloc, on_read);
    else
      uv_read_stop((uv_stream_t*)p->handle);
  }
}

static void on_handle_closed(uv_handle_t* handle) {
  herd_log_t* log = handle->data;
  if (--log->handles == 0 && log->close_cb != NULL)
    log->close_cb(log);
}

/* The log's last step, once it is closing, its pipes are gone and its queue
 * is written (or given up on). */
static void log_maybe_finish(herd_log_t* log) {
  if (log->closing != 1 || log->pipes != NULL)
    return;
  if (queued(log) > 0 && log->error == 0)
    return; /* the output or the linger timer brings us back */
  log->closing = 2;
  if (log->epfd >= 0) {
    uv_close((uv_handle_t*)&log->poll, on_handle_closed);
    close(log->epfd);
    log->epfd = -1;
  }
  uv_close((uv_handle_t*)&log->linger, on_handle_closed);
  if (log->own_fd)
    close(log->fd);
  log->fd = -1;
  herd__free(log->queue);
  herd__free(log->scratch);
  log->queue = log->scratch = NULL;
  log->qoff = log->qlen = log->qcap = 0;
}

static void on_linger(uv_timer_t* timer) {
  herd_log_t* log = timer->data;
  drop_queue(log);
  log_maybe_finish(log);
}

/* Public API. */

/* The fd herd writes to for `fd`, and how (see herd_log_init()). */
static int open_output(herd_log_t* log, int fd) {
  struct stat st;
  int flags;
  log->fd = fd;
  log->own_fd = 0;
  log->use_send = 0;
  if (fstat(fd, &st) != 0)
    return -errno;
  flags = fcntl(fd, F_GETFL);
  if (flags == -1)
    return -errno;
  if (S_ISSOCK(st.st_mode)) {
    log->use_send = 1;
  } else if (!(flags & O_NONBLOCK) &&
             (S_ISFIFO(st.st_mode) || (S_ISCHR(st.st_mode) && isatty(fd)))) {
    char path[64];
    int nfd;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (nfd >= 0) {
      log->fd = nfd;
      log->own_fd = 1;
    } else if (errno == EMFILE || errno == ENFILE) {
      return -errno;
    }
  }
  return 0;
}

int herd_log_init(uv_loop_t* loop, herd_log_t* log, int fd,
                  const herd_log_options_t* options) {
  herd_log_options_t o;
  int r;
  if (loop == NULL || log == NULL || fd < 0)
    return UV_EINVAL;
  memset(&o, 0, sizeof(o));
  if (options != NULL)
    o = *options;
  if (o.max_line != 0 && o.max_line < MIN_MAX_LINE)
    return UV_EINVAL;
  memset(log, 0, sizeof(*log));
  log->epfd = -1;
  log->max_line = o.max_line ? o.max_line : HERD_LOG_MAX_LINE;
  log->high_water = o.high_water ? o.high_water : HERD_LOG_HIGH_WATER;
  log->linger_ms = o.linger_ms ? o.linger_ms : HERD_LOG_LINGER_MS;
  log->scratch = herd__malloc(SCRATCH_SIZE);
  if (log->scratch == NULL)
    return UV_ENOMEM;
  r = open_output(log, fd);
  if (r != 0) {
    herd__free(log->scratch);
    return r;
  }
  log->loop = loop;
  uv_timer_init(loop, &log->linger);
  log->linger.data = log;
  log->handles = 1;
  return 0;
}

int herd_log_write(herd_log_t* log, const char* prefix, const char* text,
                   size_t len) {
  size_t plen = prefix != NULL ? strlen(prefix) : 0;
  int r = 0;
  if (log == NULL || (text == NULL && len > 0) || log->closing == 2)
    return UV_EINVAL;
  while (len > 0 && r == 0) {
    const char* nl = memchr(text, '\n', len);
    size_t k = nl != NULL ? (size_t)(nl - text) : len;
    r = queue_line(log, prefix ? prefix : "", plen, text, k);
    text += k + (nl != NULL);
    len -= k + (nl != NULL);
  }
  log_flush(log);
  return r;
}

void herd_log_close(herd_log_t* log, herd_log_close_cb close_cb) {
  herd_log_pipe_t* p;
  herd_log_pipe_t* next;
  if (log->closing)
    return;
  log->closing = 1;
  log->close_cb = close_cb;
  for (p = log->pipes; p != NULL; p = next) {
    next = p->next;
    herd_log_pipe_close(p);
  }
  uv_timer_start(&log->linger, on_linger, log->linger_ms, 0);
  log_flush(log);
}

static void free_handle(uv_handle_t* handle) {
  herd__free(handle);
}

int herd_log_pipe_open(herd_log_t* log, herd_log_pipe_t* p, int fd,
                       const char* prefix, const char* cont_prefix,
                       herd_log_pipe_close_cb close_cb) {
  size_t plen, clen;
  uv_pipe_t* handle = NULL;
  char* prefixes = NULL;
  struct stat st;
  void* data;
  int r;

  if (log == NULL || p == NULL || fd < 0) {
    r = UV_EINVAL;
    goto fail;
  }
  if (log->closing) {
    r = UV_ECANCELED;
    goto fail;
  }
  if (fstat(fd, &st) != 0) {
    r = -errno;
    goto fail;
  }
  if (prefix == NULL)
    prefix = "";
  if (cont_prefix == NULL)
    cont_prefix = prefix;
  plen = strlen(prefix);
  clen = strlen(cont_prefix);
  prefixes = herd__malloc(plen + clen + 2);
  handle = herd__malloc(sizeof(*handle));
  if (prefixes == NULL || handle == NULL) {
    r = UV_ENOMEM;
    goto fail;
  }
  r = uv_pipe_init(log->loop, handle, 0);
  if (r != 0)
    goto fail;
  handle->data = p;
  r = uv_pipe_open(handle, fd);
  if (r == 0) {
    /* From here the handle owns fd. */
    fd = -1;
    r = uv_read_start((uv_stream_t*)handle, on_alloc, on_read);
  }
  if (r != 0) {
    /* The handle is the library's: it closes on its own, and the caller's
     * memory is not touched again. */
    uv_close((uv_handle_t*)handle, free_handle);
    herd__free(prefixes);
    if (fd >= 0)
      close(fd);
    return r;
  }
  memcpy(prefixes, prefix, plen + 1);
  memcpy(prefixes + plen + 1, cont_prefix, clen + 1);
  data = p->data;
  memset(p, 0, sizeof(*p));
  p->data = data;
  p->log = log;
  p->handle = handle;
  p->prefix = prefixes;
  p->prefix_len = plen;
  p->cont_prefix = prefixes + plen + 1;
  p->cont_prefix_len = clen;
  p->close_cb = close_cb;
  p->next = log->pipes;
  if (log->pipes != NULL)
    log->pipes->prev = p;
  log->pipes = p;
  log->handles++;
  if (log->paused)
    uv_read_stop((uv_stream_t*)handle);
  return 0;

fail:
  herd__free(prefixes);
  herd__free(handle);
  if (fd >= 0)
    close(fd);
  return r;
}

void herd_log_pipe_close(herd_log_pipe_t* p) {
  if (p->handle == NULL || p->closing)
    return;
  p->closing = 1;
  pipe_end_line(p);
  uv_read_stop((uv_stream_t*)p->handle);
  uv_close((uv_handle_t*)p->handle, on_pipe_closed);
  log_flush(p->log);
}
