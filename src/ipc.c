/* The IPC channel: Node's `json` serialization over an AF_UNIX stream
 * socket, with fds passed as SCM_RIGHTS; ipc_advanced.c adds Node's
 * `advanced` framing on the same machinery.
 *
 * The channel does its own I/O on a uv_poll_t instead of a uv_pipe_t so it
 * controls every syscall: reads go into one growable buffer with recvmsg()
 * (64 KiB or more at a time), lines are split with memchr() and validated in
 * place, and messages are handed out as pointers into that buffer. Sends
 * append to one contiguous output buffer, so a burst of small messages
 * leaves in one write. What message callbacks send is written once the read
 * that delivered them has been processed; any other send arms a uv_idle_t
 * that writes it in this loop iteration. An idle handle rather than a
 * prepare handle, because an active idle handle keeps the loop from
 * blocking: a send made from any callback, a prepare callback included, is
 * written before the loop sleeps.
 *
 * Where things are:
 * - framing (input): read_some() reads, parse_lines() splits and validates,
 *   skip_line() drops a line over the limit without buffering it (frames:
 *   herd__ipc_parse_frames() in ipc_advanced.c);
 * - output: out_*(), flush_io(), write_out();
 * - handle passing: send_handle(), start_handle() (one handle in flight),
 *   on_ack() (ACK/NACK, trusted only once the handle went out),
 *   on_handle_message() (receiving);
 * - flow control: update_poll() and note_reply() (reading pauses while
 *   herd's own replies pile up unread), need_drain (send() returning 1);
 * - the peer's protocol state: every internal message is checked against
 *   what this end sent (on_ack(), on_socket_list()). */
#include "ipc-int.h"

#include <assert.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_MIN       (64 * 1024)
#define READ_INITIAL   (256 * 1024)
#define FLUSH_AT       (256 * 1024)
#define SOCKET_BUFSIZE (2 * 1024 * 1024)
#define SHRINK_ABOVE   (4 * 1024 * 1024)
#define MAX_NACKS      3
/* Reading pauses while more than this many bytes of replies herd made by
 * itself (ACK/NACK, answers from the internal hooks) wait to be written:
 * a peer that keeps asking and never reads cannot grow the output queue. A
 * well-behaved peer has a handful of such requests outstanding at most. */
#define REPLY_LIMIT (64 * 1024)

static const char ack_line[] = "{\"cmd\":\"NODE_HANDLE_ACK\"}\n";
static const char nack_line[] = "{\"cmd\":\"NODE_HANDLE_NACK\"}\n";

static const char* const handle_types[] = {
    "net.Server", "net.Socket", "net.Native", "dgram.Socket", "dgram.Native"};

static void ipc_close(ipc_priv_t* p, int err);
static void flush_and_notify(ipc_priv_t* p);
static void parse_lines(ipc_priv_t* p);
static void on_hangup(ipc_priv_t* p);

/* Splits what was read into messages: lines or frames. */
static void parse_input(ipc_priv_t* p) {
  if (p->advanced)
    herd__ipc_parse_frames(p);
  else
    parse_lines(p);
}

static int set_poll(ipc_priv_t* p, int events);

/* What the poll handle waits for. Reading stops before herd_ipc_start()
 * once enough is buffered (`paused`) and while herd's own replies wait
 * unwritten (`throttled`); then only the peer hanging up is watched for, so
 * a peer that goes away is still noticed. After a hang-up the rest is read
 * whatever the throttle says: nothing more can come. */
static void update_poll(ipc_priv_t* p) {
  int events = 0;
  if (p->closing)
    return;
  if (!p->eof) {
    if (!p->paused && (!p->throttled || p->hangup))
      events |= UV_READABLE;
    else if (!p->hangup)
      events |= UV_DISCONNECT;
  }
  if (p->want_write)
    events |= UV_WRITABLE;
  if (events != p->poll_events)
    set_poll(p, events);
}

static void on_flush(uv_idle_t* handle);

static void report(ipc_priv_t* p, int err) {
  if (p->cb.error != NULL)
    p->cb.error(p->ipc, err);
}

void herd__ipc_report(ipc_priv_t* p, int err) {
  report(p, err);
}

/* Lines already read wait to be parsed: parse them from the idle callback. */
static void arm_parse(ipc_priv_t* p) {
  p->parse_pending = 1;
  if (!p->closing && !uv_is_active((uv_handle_t*)&p->flusher))
    uv_idle_start(&p->flusher, on_flush);
}

/* Pauses reading while more than REPLY_LIMIT bytes of herd's own replies
 * are unwritten, and resumes once they are written (the bytes in front of
 * them included): the output queue cannot grow because a peer keeps asking
 * without reading the answers. A peer that reads never sees a pause. */
static void check_throttle(ipc_priv_t* p) {
  unsigned over;
  if (p->reply_bytes > 0 && p->obase + p->ohead >= p->reply_end)
    p->reply_bytes = 0;
  over = p->reply_bytes + p->reply_wait > REPLY_LIMIT;
  if (over == p->throttled)
    return;
  p->throttled = over;
  if (!over)
    arm_parse(p);
  update_poll(p);
}

/* `len` bytes just put at the end of obuf are a reply herd made itself. */
static void note_reply(ipc_priv_t* p, size_t len) {
  p->reply_bytes += len;
  p->reply_end = p->obase + p->olen;
  check_throttle(p);
}

void herd__ipc_note_reply(ipc_priv_t* p, size_t len) {
  note_reply(p, len);
}

/* Makes sure what was just queued gets written before the loop sleeps. While
 * the messages of one read are being delivered that is the end of the read;
 * anywhere else it is the idle callback of this loop iteration. */
static void arm(ipc_priv_t* p) {
  if (p->closing)
    return;
  if (p->in_read) {
    p->flush_due = 1;
    return;
  }
  if (!uv_is_active((uv_handle_t*)&p->flusher))
    uv_idle_start(&p->flusher, on_flush);
}

static size_t queued(const ipc_priv_t* p) {
  return (p->olen - p->ohead) + p->wait_bytes;
}

/* Makes room for `need` more bytes at the end of the output buffer. */
static int out_reserve(ipc_priv_t* p, size_t need) {
  size_t cap;
  char* nb;
  if (p->ocap - p->olen >= need)
    return 0;
  if (p->ohead > 0) {
    memmove(p->obuf, p->obuf + p->ohead, p->olen - p->ohead);
    p->obase += p->ohead;
    p->olen -= p->ohead;
    p->ohead = 0;
    if (p->ocap - p->olen >= need)
      return 0;
  }
  cap = p->ocap ? p->ocap * 2 : 64 * 1024;
  while (cap - p->olen < need)
    cap *= 2;
  nb = herd__realloc(p->obuf, cap);
  if (nb == NULL)
    return UV_ENOMEM;
  p->obuf = nb;
  p->ocap = cap;
  return 0;
}

int herd__ipc_out_reserve(ipc_priv_t* p, size_t need) {
  return out_reserve(p, need);
}

/* Copies a validated JSON text, turning raw newlines (whitespace between
 * tokens, the only place valid JSON can hold one) into spaces. */
static void copy_json(char* dst, const char* json, size_t len, int newline) {
  memcpy(dst, json, len);
  if (newline) {
    char* q = dst;
    char* end = dst + len;
    while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL)
      *q++ = ' ';
  }
}

static int out_append(ipc_priv_t* p, const char* data, size_t len) {
  int r = out_reserve(p, len);
  if (r != 0)
    return r;
  memcpy(p->obuf + p->olen, data, len);
  p->olen += len;
  return 0;
}

/* Writes what the output buffer holds, without running any callback (it is
 * called from inside send()). Returns 0 when everything went, 1 when the
 * socket is full, or a negative errno. */
static int flush_io(ipc_priv_t* p) {
  while (p->ohead < p->olen) {
    uint64_t at = p->obase + p->ohead;
    size_t n = p->olen - p->ohead;
    ssize_t w;
    int sent_fd = 0;
    if (p->ofd >= 0 && p->ofd_at == at) {
      struct msghdr msg;
      struct iovec iov;
      union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
      } ctl;
      struct cmsghdr* cm;
      memset(&msg, 0, sizeof(msg));
      memset(&ctl, 0, sizeof(ctl));
      iov.iov_base = p->obuf + p->ohead;
      iov.iov_len = n;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = ctl.buf;
      msg.msg_controllen = sizeof(ctl.buf);
      cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &p->ofd, sizeof(int));
      w = sendmsg(p->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      sent_fd = 1;
    } else {
      if (p->ofd >= 0 && p->ofd_at > at && p->ofd_at - at < n)
        n = (size_t)(p->ofd_at - at);
      w = send(p->fd, p->obuf + p->ohead, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 1;
      return -errno;
    }
    if (sent_fd)
      p->ofd = -1;
    p->ohead += (size_t)w;
  }
  p->obase += p->olen;
  p->ohead = p->olen = 0;
  if (p->ocap > SHRINK_ABOVE) {
    herd__free(p->obuf);
    p->obuf = NULL;
    p->ocap = 0;
  }
  return 0;
}

static void req_free(ipc_req_t* req) {
  if (req->fd >= 0)
    close(req->fd);
  herd__free(req);
}

/* Puts a handle message into the output buffer and makes it the one in
 * flight. Its fd rides on the sendmsg() that starts with the line; `end`
 * tells when the whole line (so the fd too) has been written. ofd only
 * borrows req->fd, which the request keeps until it is answered. */
static int start_handle(ipc_priv_t* p, ipc_req_t* req) {
  uint64_t at;
  int r;
  assert(p->ofd < 0 && p->inflight == NULL);
  r = out_reserve(p, req->len);
  if (r != 0)
    return r;
  at = p->obase + p->olen;
  memcpy(p->obuf + p->olen, req->line, req->len);
  p->olen += req->len;
  p->ofd = req->fd;
  p->ofd_at = at;
  req->end = at + req->len;
  p->inflight = req;
  return 0;
}

/* Whether the handle in flight has gone out, fd and all: only then can the
 * peer have seen it, and only then may an ACK or NACK be about it. */
static int inflight_written(const ipc_priv_t* p) {
  return p->inflight != NULL && p->ofd < 0 &&
         p->obase + p->ohead >= p->inflight->end;
}

static void push_written(ipc_priv_t* p, ipc_req_t* req) {
  req->end = p->obase + p->olen;
  req->next = NULL;
  if (p->written_tail)
    p->written_tail->next = req;
  else
    p->written_head = req;
  p->written_tail = req;
}

void herd__ipc_push_written(ipc_priv_t* p, ipc_req_t* req) {
  push_written(p, req);
}

/* Moves queued messages into the output buffer until the next handle. One
 * that cannot be moved (no memory) stays queued: the channel closes on the
 * error and fails it there, so its callback still runs exactly once. */
static void release_waiting(ipc_priv_t* p) {
  while (p->wait_head != NULL && p->inflight == NULL && p->werr == 0) {
    ipc_req_t* req = p->wait_head;
    int r = req->fd >= 0 ? start_handle(p, req)
                         : out_append(p, req->line, req->len);
    if (r != 0) {
      p->werr = r;
      break;
    }
    p->wait_head = req->next;
    if (p->wait_head == NULL)
      p->wait_tail = NULL;
    p->wait_bytes -= req->len;
    if (req->reply) {
      p->reply_wait -= req->len;
      note_reply(p, req->len);
    }
    if (req->fd < 0) {
      if (req->cb != NULL)
        push_written(p, req);
      else
        herd__free(req);
    }
  }
  arm(p);
}

static void push_waiting(ipc_priv_t* p, ipc_req_t* req) {
  req->next = NULL;
  if (p->wait_tail)
    p->wait_tail->next = req;
  else
    p->wait_head = req;
  p->wait_tail = req;
  p->wait_bytes += req->len;
  if (req->reply) {
    p->reply_wait += req->len;
    check_throttle(p);
  }
}

void herd__ipc_push_waiting(ipc_priv_t* p, ipc_req_t* req) {
  push_waiting(p, req);
}

/* A request that could not be put into the output buffer (no memory) goes
 * back to the front of the queue; the channel closes on the error. */
static void requeue_front(ipc_priv_t* p, ipc_req_t* req, int err) {
  req->next = p->wait_head;
  p->wait_head = req;
  if (p->wait_tail == NULL)
    p->wait_tail = req;
  p->wait_bytes += req->len;
  if (req->reply)
    p->reply_wait += req->len;
  p->werr = err;
}

/* Runs the callbacks of messages whose bytes have all been written. */
static void complete_written(ipc_priv_t* p) {
  uint64_t done = p->obase + p->ohead;
  while (p->written_head != NULL && p->written_head->end <= done) {
    ipc_req_t* req = p->written_head;
    p->written_head = req->next;
    if (p->written_head == NULL)
      p->written_tail = NULL;
    req->cb(p->ipc, 0, req->arg);
    req_free(req);
    if (p->closing)
      return;
  }
}

static int nothing_pending(const ipc_priv_t* p) {
  return p->olen == p->ohead && p->inflight == NULL && p->wait_head == NULL;
}

/* A write failed. EPIPE and ECONNRESET mean the peer closed its end: a
 * disconnect, after what it wrote before going has been read. */
static void on_write_error(ipc_priv_t* p, int err) {
  if (err != UV_EPIPE && err != UV_ECONNRESET) {
    ipc_close(p, err);
    return;
  }
  if (!p->hangup)
    on_hangup(p);
  ipc_close(p, 0);
}

static void flush_and_notify(ipc_priv_t* p) {
  int r;
  if (p->closing)
    return;
  if (p->werr != 0) {
    r = p->werr;
    p->werr = 0;
    on_write_error(p, r);
    return;
  }
  r = flush_io(p);
  if (r < 0) {
    on_write_error(p, r);
    return;
  }
  if ((r == 1) != p->want_write) {
    p->want_write = (r == 1);
    update_poll(p);
  }
  if (p->reply_bytes != 0 || p->throttled)
    check_throttle(p);
  complete_written(p);
  if (p->closing)
    return;
  if (p->need_drain && queued(p) < HERD_IPC_HIGH_WATER) {
    p->need_drain = 0;
    if (p->cb.drain != NULL)
      p->cb.drain(p->ipc);
    if (p->closing)
      return;
  }
  if (p->disconnecting && nothing_pending(p))
    ipc_close(p, 0);
}

/* Writes what is buffered, running what that completes (send callbacks,
 * drain, a pending disconnect). */
static void write_out(ipc_priv_t* p) {
  flush_and_notify(p);
  /* Callbacks run from here (drain, send callbacks, buffered messages) may
   * have sent more: write that now too rather than a loop iteration later,
   * and if bytes still remain let the writable event pick them up. */
  for (int i = 0; i < 4 && !p->closing && p->olen > p->ohead && !p->want_write;
       i++)
    flush_and_notify(p);
  if (p->closing)
    return;
  if (p->olen > p->ohead && !p->want_write) {
    p->want_write = 1;
    update_poll(p);
  }
  /* With everything written an idle callback armed earlier in this
   * iteration has nothing left to do, and would only cost the loop a turn. */
  if (!p->parse_pending && p->werr == 0 &&
      (p->olen == p->ohead || p->want_write) &&
      uv_is_active((uv_handle_t*)&p->flusher))
    uv_idle_stop(&p->flusher);
}

static void on_flush(uv_idle_t* handle) {
  ipc_priv_t* p = handle->data;
  uv_idle_stop(handle);
  if (p->parse_pending) {
    p->parse_pending = 0;
    parse_input(p);
    if (p->closing)
      return;
    if (p->eof) {
      ipc_close(p, 0);
      return;
    }
  }
  write_out(p);
}

static void close_recv_fds(ipc_priv_t* p) {
  for (size_t i = 0; i < p->nrfds; i++)
    close(p->rfds[i].fd);
  p->nrfds = 0;
}

static void pop_recv_fd(ipc_priv_t* p) {
  p->nrfds--;
  memmove(p->rfds, p->rfds + 1, p->nrfds * sizeof(p->rfds[0]));
}

/* Closes fds whose chunk has been parsed without a NODE_HANDLE taking them:
 * an fd without its message must not leak. */
static void drop_stray_fds(ipc_priv_t* p, uint64_t parsed) {
  while (p->nrfds > 0 && p->rfds[0].to <= parsed) {
    close(p->rfds[0].fd);
    pop_recv_fd(p);
  }
}

static void fail_reqs(ipc_priv_t* p, ipc_req_t* head) {
  while (head != NULL) {
    ipc_req_t* next = head->next;
    if (head->cb != NULL)
      head->cb(p->ipc, HERD_ECHANNELCLOSED, head->arg);
    req_free(head);
    head = next;
  }
}

static void on_close(uv_handle_t* handle) {
  ipc_priv_t* p = handle->data;
  herd_ipc_t* ipc = p->ipc;
  herd_ipc_disconnect_cb disconnect_cb = p->cb.disconnect;
  herd_child_t* child = p->child;
  ipc_req_t* inflight;

  if (--p->closes_pending > 0)
    return;

  /* Every outstanding send learns that it failed before the channel's last
   * callback. */
  inflight = p->inflight;
  p->inflight = NULL;
  if (inflight != NULL)
    inflight->next = p->written_head;
  else
    inflight = p->written_head;
  p->written_head = p->written_tail = NULL;
  fail_reqs(p, inflight);
  inflight = p->wait_head;
  p->wait_head = p->wait_tail = NULL;
  fail_reqs(p, inflight);
  close_recv_fds(p);
  herd_value_heap_free(&p->rheap);
  herd_value_heap_free(&p->sheap);
  herd__free(p->rbuf);
  herd__free(p->obuf);
  herd__free(p);
  ipc->priv = NULL;

  if (disconnect_cb != NULL)
    disconnect_cb(ipc);
  if (child != NULL) {
    child->channel = NULL;
    herd__free(ipc);
    herd__child_channel_closed(child);
  }
}

static void ipc_close(ipc_priv_t* p, int err) {
  if (p->closing)
    return;
  p->closing = 1;
  p->ipc->connected = 0;
  if (err != 0 && p->cb.error != NULL)
    p->cb.error(p->ipc, err);
  p->closes_pending = 2;
  uv_close((uv_handle_t*)&p->poll, on_close);
  uv_close((uv_handle_t*)&p->flusher, on_close);
  /* uv_close() took the fd out of epoll already. */
  close(p->fd);
  p->fd = -1;
  /* ofd borrowed the fd of the handle in flight; failing that request in
   * on_close() closes it. */
  p->ofd = -1;
}

void herd__ipc_close(ipc_priv_t* p, int err) {
  ipc_close(p, err);
}

const char* herd__ipc_handle_type(const char* name, size_t len) {
  for (size_t i = 0; i < HERD_ARRAY_SIZE(handle_types); i++)
    if (strlen(handle_types[i]) == len &&
        memcmp(handle_types[i], name, len) == 0)
      return handle_types[i];
  return NULL;
}

/* The type of a NODE_HANDLE line: its raw JSON string value. */
static const char* handle_type(const char* raw, size_t len) {
  if (len < 2 || raw[0] != '"')
    return NULL;
  return herd__ipc_handle_type(raw + 1, len - 2);
}

static int cmd_is(const herd__json_info_t* info, const char* s, size_t n) {
  return info->cmd_len == n && memcmp(info->cmd, s, n) == 0;
}

/* Queues a reply herd makes by itself (ACK, NACK, socket-list answers). */
static void reply(ipc_priv_t* p, const char* line, size_t len) {
  if (out_append(p, line, len) != 0) {
    p->werr = UV_ENOMEM;
  } else {
    note_reply(p, len);
  }
  arm(p);
}

void herd__ipc_reply(ipc_priv_t* p, const char* bytes, size_t len) {
  reply(p, bytes, len);
}

/* The internal hook (the cluster module) runs; what it sends from here are
 * answers to the peer and count as herd's own replies. */
static void call_internal(ipc_priv_t* p, const char* json, size_t len,
                          herd_handle_t* handle) {
  if (p->internal_cb == NULL)
    return;
  p->in_internal = 1;
  p->internal_cb(p->ipc, json, len, handle);
  p->in_internal = 0;
}

void herd__ipc_call_internal(ipc_priv_t* p, const char* json, size_t len,
                             herd_handle_t* handle) {
  call_internal(p, json, len, handle);
}

void herd__ipc_describe_fd(herd_handle_t* h) {
  int v;
  socklen_t sl = sizeof(v);
  h->family = 0;
  h->socktype = 0;
  h->listening = 0;
  if (getsockopt(h->fd, SOL_SOCKET, SO_DOMAIN, &v, &sl) == 0)
    h->family = v;
  sl = sizeof(v);
  if (getsockopt(h->fd, SOL_SOCKET, SO_TYPE, &v, &sl) == 0)
    h->socktype = v;
  sl = sizeof(v);
  if (getsockopt(h->fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &sl) == 0)
    h->listening = v != 0;
}

/* The fd that came with the chunk in which the line at stream offset `at`
 * starts, or -1. Fds of earlier chunks had no line to go with: closed. */
static int take_recv_fd(ipc_priv_t* p, uint64_t at) {
  int fd;
  drop_stray_fds(p, at);
  if (p->nrfds == 0 || p->rfds[0].from > at)
    return -1;
  fd = p->rfds[0].fd;
  pop_recv_fd(p);
  return fd;
}

int herd__ipc_take_recv_fd(ipc_priv_t* p, uint64_t at) {
  return take_recv_fd(p, at);
}

/* Hands a user message (validated JSON text, NUL-terminated) to the value
 * callback, or else to the message callback. */
static void deliver_line(ipc_priv_t* p, const char* json, size_t len,
                         herd_handle_t* handle) {
  if (p->disconnecting)
    return;
  if (p->cb.value != NULL) {
    herd__ipc_deliver_json(p, json, len, handle);
  } else if (p->cb.message != NULL) {
    p->deliv = json;
    p->deliv_len = len;
    p->cb.message(p->ipc, json, len, handle);
    p->deliv = NULL;
  }
}

static void on_handle_message(ipc_priv_t* p, char* line, size_t len,
                              uint64_t at) {
  herd_handle_t h;
  herd__json_info_t inner;
  const char *type_raw, *msg;
  size_t type_len, msg_len;
  int fd = take_recv_fd(p, at);

  if (fd < 0) {
    reply(p, nack_line, sizeof(nack_line) - 1);
    return;
  }
  if (herd_json_get(line, len, "type", &type_raw, &type_len) != 0 ||
      (h.type = handle_type(type_raw, type_len)) == NULL) {
    close(fd);
    reply(p, nack_line, sizeof(nack_line) - 1);
    return;
  }
  reply(p, ack_line, sizeof(ack_line) - 1);
  if (herd_json_get(line, len, "msg", &msg, &msg_len) != 0) {
    msg = "null";
    msg_len = 4;
  } else {
    /* The line is consumed: end the inner text in place for the callback. */
    ((char*)msg)[msg_len] = '\0';
  }
  h.fd = fd;
  herd__ipc_describe_fd(&h);
  herd__json_scan(msg, msg_len, &inner);
  if (herd__json_is_internal(&inner))
    call_internal(p, msg, msg_len, &h);
  else
    deliver_line(p, msg, msg_len, &h);
  if (h.fd >= 0)
    close(h.fd);
}

/* NODE_HANDLE_ACK / NODE_HANDLE_NACK answer the handle in flight, and can
 * only do so once it went out with its fd. Any other one (no handle in
 * flight, or one still in the output buffer) claims what did not happen:
 * it is reported as HERD_EBADPROTO and ignored, so no fd is released or
 * sent again because of it. */
static void on_ack(ipc_priv_t* p, int ok) {
  ipc_req_t* req = p->inflight;
  if (!inflight_written(p)) {
    report(p, HERD_EBADPROTO);
    return;
  }
  p->inflight = NULL;
  if (!ok && ++req->nacks <= MAX_NACKS) {
    /* The peer could not take the fd; send the same message and fd again. */
    int r = start_handle(p, req);
    if (r != 0)
      requeue_front(p, req, r);
    arm(p);
    return;
  }
  if (ok && req->close_on_ack && req->handle != NULL &&
      !uv_is_closing(req->handle))
    uv_close(req->handle, req->close_cb);
  release_waiting(p);
  if (req->cb != NULL)
    req->cb(p->ipc, ok ? 0 : HERD_EHANDLENACK, req->arg);
  req_free(req);
}

/* Node's net.Server keeps count of the sockets it sent to a child (those
 * carry a "key") and, on close() or getConnections(), asks that child with
 * NODE_SOCKET_NOTIFY_CLOSE or NODE_SOCKET_GET_COUNT; its close() waits for
 * the answer. herd hands a received socket to its user and keeps no count,
 * so it answers as a receiver holding none: NODE_SOCKET_ALL_CLOSED at once,
 * NODE_SOCKET_COUNT 0. herd never asks, so NODE_SOCKET_ALL_CLOSED and
 * NODE_SOCKET_COUNT arriving here answer nothing: reported and ignored. */
static void on_socket_list(ipc_priv_t* p, const herd__json_info_t* info,
                           const char* line, size_t len) {
  static const char pre_closed[] =
      "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":";
  static const char pre_count[] = "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":";
  static const char post_count[] = ",\"count\":0}\n";
  char out[1024];
  const char *key, *pre, *post;
  size_t key_len, pre_len, post_len, n;
  int count = cmd_is(info, "NODE_SOCKET_GET_COUNT", 21);

  if (!count && !cmd_is(info, "NODE_SOCKET_NOTIFY_CLOSE", 24)) {
    report(p, HERD_EBADPROTO);
    return;
  }
  pre = count ? pre_count : pre_closed;
  pre_len = count ? sizeof(pre_count) - 1 : sizeof(pre_closed) - 1;
  post = count ? post_count : "}\n";
  post_len = count ? sizeof(post_count) - 1 : 2;
  /* Node's keys are short ("4:127.0.0.1:8000", or a pipe's path). */
  if (herd_json_get(line, len, "key", &key, &key_len) != 0 || key[0] != '"' ||
      pre_len + key_len + post_len > sizeof(out)) {
    report(p, HERD_EBADPROTO);
    return;
  }
  memcpy(out, pre, pre_len);
  n = pre_len;
  memcpy(out + n, key, key_len);
  n += key_len;
  memcpy(out + n, post, post_len);
  n += post_len;
  if (p->advanced)
    herd__ipc_reply_json(p, out, n - 1);
  else
    reply(p, out, n);
}

/* An internal message other than NODE_HANDLE. */
static void on_internal(ipc_priv_t* p, const herd__json_info_t* info,
                        const char* json, size_t len) {
  if (cmd_is(info, "NODE_HANDLE_ACK", 15))
    on_ack(p, 1);
  else if (cmd_is(info, "NODE_HANDLE_NACK", 16))
    on_ack(p, 0);
  else if (info->cmd_len > 12 && memcmp(info->cmd, "NODE_SOCKET_", 12) == 0)
    on_socket_list(p, info, json, len);
  else
    call_internal(p, json, len, NULL);
}

void herd__ipc_internal_json(ipc_priv_t* p, const char* json, size_t len) {
  herd__json_info_t info;
  /* herd wrote the text itself: it is valid. */
  if (herd__json_scan(json, len, &info) != 0)
    return;
  on_internal(p, &info, json, len);
}

static void process_line(ipc_priv_t* p, char* line, size_t len, uint64_t at) {
  herd__json_info_t info;
  int r = herd__json_scan(line, len, &info);
  if (r != 0) {
    report(p, r);
    return;
  }
  if (!herd__json_is_internal(&info)) {
    deliver_line(p, line, len, NULL);
    return;
  }
  if (cmd_is(&info, "NODE_HANDLE", 11))
    on_handle_message(p, line, len, at);
  else
    on_internal(p, &info, line, len);
}

/* A line longer than max_line: reported (HERD_ELINETOOLONG) and dropped
 * without being buffered, and the channel goes on. `line` holds its first
 * `avail` bytes. A NODE_HANDLE among them gets the NACK its sender waits
 * for, and the fd that came with it is closed. */
static void skip_line(ipc_priv_t* p, const char* line, size_t avail,
                      uint64_t at) {
  static const char handle_prefix[] = "{\"cmd\":\"NODE_HANDLE\",";
  report(p, HERD_ELINETOOLONG);
  if (p->closing)
    return;
  if (avail >= sizeof(handle_prefix) - 1 &&
      memcmp(line, handle_prefix, sizeof(handle_prefix) - 1) == 0) {
    int fd = take_recv_fd(p, at);
    if (fd >= 0)
      close(fd);
    reply(p, nack_line, sizeof(nack_line) - 1);
  }
}

static void parse_lines(ipc_priv_t* p) {
  if (p->rbuf == NULL)
    return;
  while (!p->closing && p->started && (!p->throttled || p->hangup)) {
    char* nl = memchr(p->rbuf + p->scan, '\n', p->rlen - p->scan);
    size_t start, len;
    if (nl == NULL) {
      p->scan = p->rlen;
      if (p->skipping) {
        p->rstart = p->rlen; /* still inside the line being dropped */
      } else if (p->rlen - p->rstart > p->max_line) {
        p->skipping = 1;
        skip_line(p, p->rbuf + p->rstart, p->rlen - p->rstart,
                  p->rbase + p->rstart);
        p->rstart = p->rlen;
      }
      break;
    }
    start = p->rstart;
    len = (size_t)(nl - (p->rbuf + start));
    p->rstart = p->scan = (size_t)(nl - p->rbuf) + 1;
    if (p->skipping) {
      p->skipping = 0; /* the end of the line being dropped */
      continue;
    }
    if (len > p->max_line) {
      skip_line(p, p->rbuf + start, len, p->rbase + start);
      continue;
    }
    *nl = '\0';
    process_line(p, p->rbuf + start, len, p->rbase + start);
  }
  herd__ipc_parse_done(p);
}

void herd__ipc_parse_done(ipc_priv_t* p) {
  if (p->closing || !p->started)
    return;
  drop_stray_fds(p, p->rbase + p->rstart);
  if (p->rstart == p->rlen) {
    p->rbase += p->rlen;
    p->rstart = p->rlen = p->scan = 0;
    /* One huge message must not pin its buffer for the channel's life. */
    if (p->rcap > SHRINK_ABOVE) {
      herd__free(p->rbuf);
      p->rbuf = NULL;
      p->rcap = 0;
    }
  }
}

/* Makes room for one read: compacts once, grows when a long line needs it.
 * Returns 0, 1 when reading should pause (nothing is parsed yet and enough is
 * buffered), or UV_ENOMEM. */
static int read_reserve(ipc_priv_t* p) {
  size_t cap;
  char* nb;
  if (p->rcap - p->rlen >= READ_MIN)
    return 0;
  if (p->rstart > 0) {
    memmove(p->rbuf, p->rbuf + p->rstart, p->rlen - p->rstart);
    p->rbase += p->rstart;
    p->rlen -= p->rstart;
    p->scan -= p->rstart;
    p->rstart = 0;
    if (p->rcap - p->rlen >= READ_MIN)
      return 0;
  }
  if (!p->started && p->rlen >= READ_INITIAL)
    return 1;
  cap = p->rcap ? p->rcap * 2 : READ_INITIAL;
  /* A line may not exceed max_line, so the buffer never needs more than
   * that plus one read. */
  if (cap > p->max_line + 2 * READ_MIN &&
      p->rlen + READ_MIN <= p->max_line + 2 * READ_MIN)
    cap = p->max_line + 2 * READ_MIN;
  if (cap < p->rlen + READ_MIN)
    cap = p->rlen + READ_MIN;
  nb = herd__realloc(p->rbuf, cap);
  if (nb == NULL)
    return UV_ENOMEM;
  p->rbuf = nb;
  p->rcap = cap;
  return 0;
}

static void read_some(ipc_priv_t* p) {
  for (int i = 0; i < 32 && !p->closing && (!p->throttled || p->hangup); i++) {
    union {
      char buf[CMSG_SPACE(MAX_RECV_FDS * sizeof(int))];
      struct cmsghdr align;
    } ctl;
    struct msghdr msg;
    struct iovec iov;
    struct cmsghdr* cm;
    size_t space;
    ssize_t n;
    int r = read_reserve(p);
    if (r < 0) {
      ipc_close(p, r);
      return;
    }
    if (r == 1) {
      p->paused = 1;
      update_poll(p);
      return;
    }
    space = p->rcap - p->rlen;
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = p->rbuf + p->rlen;
    iov.iov_len = space;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    n = recvmsg(p->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == ECONNRESET) {
        n = 0;
      } else {
        ipc_close(p, -errno);
        return;
      }
    }
    for (cm = CMSG_FIRSTHDR(&msg); n >= 0 && cm != NULL;
         cm = CMSG_NXTHDR(&msg, cm)) {
      size_t nfd;
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        continue;
      nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < nfd; k++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
        if (p->nrfds == HERD_ARRAY_SIZE(p->rfds)) {
          /* A peer that sends fds and never a message for them. */
          close(fd);
          continue;
        }
        p->rfds[p->nrfds].fd = fd;
        p->rfds[p->nrfds].from = p->rbase + p->rlen;
        p->rfds[p->nrfds].to = p->rbase + p->rlen + (size_t)n;
        p->nrfds++;
      }
    }
    if (n == 0) {
      p->eof = 1;
      /* The partial line a closing peer leaves behind is dropped. */
      if (p->started || p->child != NULL)
        ipc_close(p, 0);
      else
        update_poll(p);
      return;
    }
    p->rlen += (size_t)n;
    /* Before herd_ipc_start() nothing is parsed; reading pauses once
     * READ_INITIAL bytes wait (read_reserve()). */
    if (p->started)
      parse_input(p);
    if ((size_t)n < space)
      return;
  }
}

/* Reads and delivers what arrived. Whatever the message callbacks send goes
 * out in one write once the read has been processed, rather than from the idle
 * callback a loop iteration later: a reply leaves as soon as it exists, and
 * the loop goes straight back to waiting. */
static void on_readable(ipc_priv_t* p) {
  p->in_read = 1;
  read_some(p);
  p->in_read = 0;
  if (p->flush_due) {
    p->flush_due = 0;
    if (!p->closing)
      write_out(p);
  }
}

/* The peer hung up (POLLERR, or a write that met EPIPE/ECONNRESET, or the
 * hang-up watched for while reading was paused). That is a disconnect, never
 * an error: what the peer wrote before going is read and delivered, then
 * the channel closes. Before herd_ipc_start() what was read stays buffered
 * for it. */
static void on_hangup(ipc_priv_t* p) {
  p->hangup = 1;
  /* Nothing written from now on can arrive. */
  p->want_write = 0;
  if (!p->eof)
    on_readable(p);
  if (p->closing)
    return;
  if (p->started || p->child != NULL)
    ipc_close(p, 0);
  else
    update_poll(p);
}

static void on_poll(uv_poll_t* handle, int status, int events) {
  ipc_priv_t* p = handle->data;
  if (status < 0) {
    /* libuv reports POLLERR as UV_EBADF and stops the handle. On this
     * socket POLLERR means the peer closed its end with our bytes unread. */
    p->poll_events = 0;
    on_hangup(p);
    return;
  }
  if ((events & UV_DISCONNECT) && !(p->poll_events & UV_READABLE)) {
    /* Reading was paused; see update_poll(). */
    p->hangup = 1;
    update_poll(p);
    if (p->poll_events & UV_READABLE)
      on_readable(p);
    return;
  }
  if (events & UV_WRITABLE)
    flush_and_notify(p);
  if (!p->closing && (events & (UV_READABLE | UV_DISCONNECT)))
    on_readable(p);
}

static int set_poll(ipc_priv_t* p, int events) {
  p->poll_events = events;
  if (events == 0)
    return uv_poll_stop(&p->poll);
  return uv_poll_start(&p->poll, events, on_poll);
}

/* Frees a channel whose opening failed after its handles were set up. */
static void free_on_close(uv_handle_t* handle) {
  ipc_priv_t* p = handle->data;
  if (--p->closes_pending == 0)
    herd__free(p);
}

int herd_ipc_open_ex(uv_loop_t* loop, herd_ipc_t* ipc, int fd,
                     herd_serialization_t mode) {
  ipc_priv_t* p;
  int v, r;
  socklen_t sl = sizeof(v);

  if (mode != HERD_SERIALIZATION_JSON && mode != HERD_SERIALIZATION_ADVANCED)
    return UV_EINVAL;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &sl) != 0)
    return -errno;
  if (v != SOCK_STREAM)
    return UV_EINVAL;
  sl = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &sl) != 0)
    return -errno;
  if (v != AF_UNIX)
    return UV_EINVAL;
  p = herd__calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  r = herd__nonblock(fd, 1);
  if (r != 0)
    goto fail;
  r = herd__cloexec(fd, 1);
  if (r != 0)
    goto fail;
  /* Bigger socket buffers let a burst go out in fewer, larger writes. The
   * kernel caps the value at net.core.wmem_max / rmem_max. */
  v = SOCKET_BUFSIZE;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  r = uv_poll_init(loop, &p->poll, fd);
  if (r != 0)
    goto fail;
  uv_idle_init(loop, &p->flusher);
  p->ipc = ipc;
  p->fd = fd;
  p->ofd = -1;
  p->max_line = HERD_IPC_DEFAULT_MAX_LINE;
  p->advanced = mode == HERD_SERIALIZATION_ADVANCED;
  herd_value_heap_init(&p->rheap);
  herd_value_heap_init(&p->sheap);
  p->poll.data = p;
  p->flusher.data = p;
  r = set_poll(p, UV_READABLE);
  if (r != 0) {
    p->closes_pending = 2;
    uv_close((uv_handle_t*)&p->poll, free_on_close);
    uv_close((uv_handle_t*)&p->flusher, free_on_close);
    return r;
  }
  ipc->loop = loop;
  ipc->connected = 1;
  ipc->serialization = mode;
  ipc->priv = p;
  return 0;

fail:
  herd__free(p);
  return r;
}

int herd_ipc_open(uv_loop_t* loop, herd_ipc_t* ipc, int fd) {
  return herd_ipc_open_ex(loop, ipc, fd, HERD_SERIALIZATION_JSON);
}

int herd_ipc_open_parent(uv_loop_t* loop, herd_ipc_t* ipc) {
  const char* s = getenv("NODE_CHANNEL_FD");
  const char* mode = getenv("NODE_CHANNEL_SERIALIZATION_MODE");
  char* end;
  long fd;
  int known = 1;
  herd_serialization_t ser = HERD_SERIALIZATION_JSON;

  if (s == NULL)
    return HERD_ENOCHANNEL;
  errno = 0;
  fd = strtol(s, &end, 10);
  /* Node reads the mode as `env.NODE_CHANNEL_SERIALIZATION_MODE || 'json'`
   * (lib/internal/process/pre_execution.js). */
  if (mode != NULL && strcmp(mode, "advanced") == 0)
    ser = HERD_SERIALIZATION_ADVANCED;
  else if (mode != NULL && mode[0] != '\0' && strcmp(mode, "json") != 0)
    known = 0;
  /* Grandchildren must not inherit the channel, as in Node. */
  unsetenv("NODE_CHANNEL_FD");
  unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
  if (end == s || *end != '\0' || errno != 0 || fd < 0 || fd > INT32_MAX)
    return HERD_ENOCHANNEL;
  if (!known) {
    /* The parent would wait forever for a peer speaking a format that does
     * not exist; closing the fd tells it at once that this child will not
     * talk. */
    close((int)fd);
    return HERD_EBADPROTO;
  }
  if (fcntl((int)fd, F_GETFD) == -1)
    return UV_EBADF;
  return herd_ipc_open_ex(loop, ipc, (int)fd, ser);
}

int herd_ipc_start(herd_ipc_t* ipc, const herd_ipc_callbacks_t* callbacks) {
  ipc_priv_t* p = ipc->priv;
  if (p == NULL || p->closing)
    return HERD_ECHANNELCLOSED;
  if (callbacks != NULL)
    p->cb = *callbacks;
  else
    memset(&p->cb, 0, sizeof(p->cb));
  if (!p->started) {
    p->started = 1;
    p->scan = p->rstart;
    p->parse_pending = 1;
    if (p->paused) {
      p->paused = 0;
      update_poll(p);
    }
    arm(p);
  }
  return 0;
}

void herd_ipc_set_max_line(herd_ipc_t* ipc, size_t max_line) {
  ipc_priv_t* p = ipc->priv;
  if (p != NULL)
    p->max_line = max_line ? max_line : HERD_IPC_DEFAULT_MAX_LINE;
}

void herd__ipc_set_internal_cb(herd_ipc_t* ipc, herd__ipc_internal_cb cb) {
  ipc_priv_t* p = ipc->priv;
  if (p != NULL)
    p->internal_cb = cb;
}

/* After a message went into the output buffer: flush early when a lot is
 * buffered (fewer, larger writes and bounded memory), else leave it to the
 * end of the read being processed or to the idle callback (see arm()). */
static int after_queue(ipc_priv_t* p) {
  if (p->olen - p->ohead >= FLUSH_AT && !p->want_write && p->werr == 0) {
    int r = flush_io(p);
    if (r < 0)
      p->werr = r;
  }
  arm(p);
  if (queued(p) > HERD_IPC_HIGH_WATER) {
    p->need_drain = 1;
    return 1;
  }
  return 0;
}

int herd__ipc_after_queue(ipc_priv_t* p) {
  return after_queue(p);
}

/* Validates an outgoing text; one the channel is delivering right now has
 * been validated already (a message forwarded as received). */
static int scan_outgoing(const ipc_priv_t* p, const char* json, size_t len,
                         herd__json_info_t* info) {
  if (json == p->deliv && len == p->deliv_len && json != NULL) {
    info->newline = 0;
    return 0;
  }
  return herd__json_scan(json, len, info);
}

/* Puts one JSON text and its '\n' into the output buffer, or behind the
 * handle in flight. `newline`: the text holds raw newlines to turn into
 * spaces. */
static int queue_line(ipc_priv_t* p, const char* json, size_t len, int newline,
                      herd_ipc_send_cb cb, void* arg) {
  ipc_req_t* req = NULL;
  int r;
  if (p->inflight == NULL && p->wait_head == NULL) {
    r = out_reserve(p, len + 1);
    if (r != 0)
      return r;
    if (cb != NULL) {
      req = herd__calloc(1, sizeof(*req));
      if (req == NULL)
        return UV_ENOMEM;
      req->fd = -1;
      req->cb = cb;
      req->arg = arg;
    }
    copy_json(p->obuf + p->olen, json, len, newline);
    p->olen += len;
    p->obuf[p->olen++] = '\n';
    if (cb != NULL)
      push_written(p, req);
    if (p->in_internal)
      note_reply(p, len + 1);
    return after_queue(p);
  }
  req = herd__malloc(sizeof(*req) + len + 1);
  if (req == NULL)
    return UV_ENOMEM;
  memset(req, 0, sizeof(*req));
  req->fd = -1;
  req->cb = cb;
  req->arg = arg;
  req->reply = p->in_internal;
  req->len = len + 1;
  copy_json(req->line, json, len, newline);
  req->line[len] = '\n';
  push_waiting(p, req);
  return after_queue(p);
}

static int send_plain(ipc_priv_t* p, const char* json, size_t len,
                      herd_ipc_send_cb cb, void* arg) {
  herd__json_info_t info;
  int r;
  if (p->advanced)
    return herd__ipc_send_frame(p, NULL, json, len, cb, arg);
  r = scan_outgoing(p, json, len, &info);
  if (r != 0)
    return r;
  return queue_line(p, json, len, info.newline, cb, arg);
}

int herd_ipc_send(herd_ipc_t* ipc, const char* json, size_t len) {
  ipc_priv_t* p = ipc->priv;
  if (p == NULL || !ipc->connected)
    return HERD_ECHANNELCLOSED;
  return send_plain(p, json, len, NULL, NULL);
}

int herd__ipc_queue_handle(ipc_priv_t* p, ipc_req_t* req) {
  int r;
  req->reply = p->in_internal;
  if (p->inflight == NULL && p->wait_head == NULL) {
    r = start_handle(p, req);
    if (r != 0) {
      req_free(req);
      return r;
    }
    if (req->reply)
      note_reply(p, req->len);
  } else {
    push_waiting(p, req);
  }
  return after_queue(p);
}

/* Builds {"cmd":"NODE_HANDLE","type":T,"msg":<json>[,"dgramType":D]}\n
 * around a message carrying `fd` (which the request now owns). */
static int handle_line(ipc_priv_t* p, const char* json, size_t len, int newline,
                       int fd, const char* type, const char* dgram_type,
                       uv_handle_t* handle, uv_close_cb close_cb,
                       int close_on_ack, herd_ipc_send_cb cb, void* arg) {
  static const char pre[] = "{\"cmd\":\"NODE_HANDLE\",\"type\":";
  ipc_req_t* req;
  size_t tlen = strlen(type);
  size_t qlen = herd_json_quote(NULL, 0, type, tlen);
  size_t dlen = dgram_type ? 15 + strlen(dgram_type) : 0;
  size_t total, n = 0;
  total = sizeof(pre) - 1 + qlen + 7 + len + dlen + 2;
  req = herd__malloc(sizeof(*req) + total + 1);
  if (req == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  memset(req, 0, sizeof(*req));
  memcpy(req->line, pre, sizeof(pre) - 1);
  n = sizeof(pre) - 1;
  herd_json_quote(req->line + n, qlen + 1, type, tlen);
  n += qlen;
  memcpy(req->line + n, ",\"msg\":", 7);
  n += 7;
  copy_json(req->line + n, json, len, newline);
  n += len;
  if (dgram_type != NULL)
    n += (size_t)sprintf(req->line + n, ",\"dgramType\":\"%s\"", dgram_type);
  req->line[n++] = '}';
  req->line[n++] = '\n';
  req->len = n;
  req->fd = fd;
  req->handle = handle;
  req->close_cb = close_cb;
  req->close_on_ack = close_on_ack;
  req->cb = cb;
  req->arg = arg;
  return herd__ipc_queue_handle(p, req);
}

static int send_handle(ipc_priv_t* p, const char* json, size_t len, int fd,
                       const char* type, const char* dgram_type,
                       uv_handle_t* handle, uv_close_cb close_cb,
                       int close_on_ack, herd_ipc_send_cb cb, void* arg) {
  herd__json_info_t info;
  int r;
  if (p->advanced)
    return herd__ipc_send_frame_handle(p, NULL, json, len, fd, type, dgram_type,
                                       handle, close_cb, close_on_ack, cb, arg);
  r = scan_outgoing(p, json, len, &info);
  if (r != 0) {
    close(fd);
    return r;
  }
  return handle_line(p, json, len, info.newline, fd, type, dgram_type, handle,
                     close_cb, close_on_ack, cb, arg);
}

/* What Node calls a libuv handle on the wire, and a duplicate of its fd
 * (*fd, close-on-exec). */
static int handle_fd(uv_handle_t* handle, unsigned flags, const char** type,
                     const char** dgram_type, int* close_on_ack, int* fd) {
  uv_os_fd_t ufd;
  int v;
  socklen_t sl = sizeof(v);

  *dgram_type = NULL;
  *close_on_ack = 0;
  if (uv_is_closing(handle) || uv_fileno(handle, &ufd) != 0)
    return HERD_EBADHANDLE;
  switch (handle->type) {
    case UV_TCP:
    case UV_NAMED_PIPE:
      if (getsockopt(ufd, SOL_SOCKET, SO_ACCEPTCONN, &v, &sl) != 0)
        return HERD_EBADHANDLE;
      *type = v ? "net.Server" : "net.Socket";
      *close_on_ack = !v && !(flags & HERD_SEND_KEEP_OPEN);
      break;
    case UV_UDP: {
      struct sockaddr_storage ss;
      socklen_t al = sizeof(ss);
      if (getsockname(ufd, (struct sockaddr*)&ss, &al) != 0)
        return HERD_EBADHANDLE;
      *type = "dgram.Socket";
      *dgram_type = ss.ss_family == AF_INET6 ? "udp6" : "udp4";
      break;
    }
    default:
      return HERD_EBADHANDLE;
  }
  *fd = fcntl(ufd, F_DUPFD_CLOEXEC, 3);
  if (*fd < 0)
    return -errno;
  return 0;
}

int herd_ipc_send_ex(herd_ipc_t* ipc, const char* json, size_t len,
                     uv_handle_t* handle, unsigned flags,
                     uv_close_cb handle_close_cb, herd_ipc_send_cb cb,
                     void* arg) {
  ipc_priv_t* p = ipc->priv;
  const char *type, *dgram_type;
  int fd, close_on_ack, r;

  if (p == NULL || !ipc->connected)
    return HERD_ECHANNELCLOSED;
  if (handle == NULL)
    return send_plain(p, json, len, cb, arg);
  r = handle_fd(handle, flags, &type, &dgram_type, &close_on_ack, &fd);
  if (r != 0)
    return r;
  return send_handle(p, json, len, fd, type, dgram_type, handle,
                     handle_close_cb, close_on_ack, cb, arg);
}

int herd_ipc_send_fd(herd_ipc_t* ipc, const char* json, size_t len, int fd,
                     const char* type, herd_ipc_send_cb cb, void* arg) {
  ipc_priv_t* p = ipc->priv;
  int dup_fd;
  if (p == NULL || !ipc->connected)
    return HERD_ECHANNELCLOSED;
  if (type == NULL || fd < 0)
    return UV_EINVAL;
  dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup_fd < 0)
    return -errno;
  return send_handle(p, json, len, dup_fd, type, NULL, NULL, NULL, 0, cb, arg);
}

/* A value message, with an fd (taken) unless fd < 0. On a json channel it
 * goes as JSON.stringify() of it. */
static int send_value(ipc_priv_t* p, const herd_value_t* value, int fd,
                      const char* type, const char* dgram_type,
                      uv_handle_t* handle, uv_close_cb close_cb,
                      int close_on_ack, herd_ipc_send_cb cb, void* arg) {
  uv_buf_t text;
  int r;
  if (p->advanced) {
    if (fd < 0)
      return herd__ipc_send_frame(p, value, NULL, 0, cb, arg);
    return herd__ipc_send_frame_handle(p, value, NULL, 0, fd, type, dgram_type,
                                       handle, close_cb, close_on_ack, cb, arg);
  }
  r = herd_value_to_json(value, NULL, &text);
  if (r != 0) {
    if (fd >= 0)
      close(fd);
    /* JSON.stringify() throws a TypeError: a BigInt, a cycle. */
    return r == UV_EINVAL ? HERD_ENOJSON : r;
  }
  /* Text herd wrote: valid, no raw newline. */
  if (fd < 0)
    r = queue_line(p, text.base, text.len, 0, cb, arg);
  else
    r = handle_line(p, text.base, text.len, 0, fd, type, dgram_type, handle,
                    close_cb, close_on_ack, cb, arg);
  herd__free(text.base);
  return r;
}

/* Node's send() takes a string, object, number or boolean (null too): not
 * undefined (ERR_MISSING_ARGS) and not a BigInt (ERR_INVALID_ARG_TYPE). */
static int value_sendable(const herd_value_t* value) {
  herd_value_type_t t;
  if (value == NULL)
    return 0;
  t = herd_value_type(value);
  return t != HERD_VALUE_UNDEFINED && t != HERD_VALUE_BIGINT;
}

int herd_ipc_send_value(herd_ipc_t* ipc, const herd_value_t* value) {
  return herd_ipc_send_value_ex(ipc, value, NULL, 0, NULL, NULL, NULL);
}

int herd_ipc_send_value_ex(herd_ipc_t* ipc, const herd_value_t* value,
                           uv_handle_t* handle, unsigned flags,
                           uv_close_cb handle_close_cb, herd_ipc_send_cb cb,
                           void* arg) {
  ipc_priv_t* p = ipc->priv;
  const char *type = NULL, *dgram_type = NULL;
  int fd = -1, close_on_ack = 0, r;

  if (p == NULL || !ipc->connected)
    return HERD_ECHANNELCLOSED;
  if (!value_sendable(value))
    return UV_EINVAL;
  if (handle != NULL) {
    r = handle_fd(handle, flags, &type, &dgram_type, &close_on_ack, &fd);
    if (r != 0)
      return r;
  }
  return send_value(p, value, fd, type, dgram_type, handle, handle_close_cb,
                    close_on_ack, cb, arg);
}

int herd_ipc_send_value_fd(herd_ipc_t* ipc, const herd_value_t* value, int fd,
                           const char* type, herd_ipc_send_cb cb, void* arg) {
  ipc_priv_t* p = ipc->priv;
  int dup_fd;
  if (p == NULL || !ipc->connected)
    return HERD_ECHANNELCLOSED;
  if (!value_sendable(value) || type == NULL || fd < 0)
    return UV_EINVAL;
  dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup_fd < 0)
    return -errno;
  return send_value(p, value, dup_fd, type, NULL, NULL, NULL, 0, cb, arg);
}

size_t herd_ipc_queued_bytes(const herd_ipc_t* ipc) {
  const ipc_priv_t* p = ipc->priv;
  return p == NULL ? 0 : queued(p);
}

void herd_ipc_disconnect(herd_ipc_t* ipc) {
  ipc_priv_t* p = ipc->priv;
  if (p == NULL || p->closing || p->disconnecting)
    return;
  p->disconnecting = 1;
  ipc->connected = 0;
  arm(p);
}

void herd__ipc_detach(herd_ipc_t* ipc) {
  ipc_priv_t* p = ipc->priv;
  if (p != NULL)
    ipc_close(p, 0);
}

void herd_ipc_ref(herd_ipc_t* ipc) {
  ipc_priv_t* p = ipc->priv;
  if (p != NULL && !p->closing) {
    uv_ref((uv_handle_t*)&p->poll);
    uv_ref((uv_handle_t*)&p->flusher);
  }
}

void herd_ipc_unref(herd_ipc_t* ipc) {
  ipc_priv_t* p = ipc->priv;
  if (p != NULL && !p->closing) {
    uv_unref((uv_handle_t*)&p->poll);
    uv_unref((uv_handle_t*)&p->flusher);
  }
}

int herd__ipc_attach(herd_child_t* child, int fd, herd_serialization_t mode) {
  herd_ipc_t* ipc = herd__calloc(1, sizeof(*ipc));
  int r;
  /* spawn.c hands the fd over for good: a failure closes it here. */
  if (ipc == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  r = herd_ipc_open_ex(child->loop, ipc, fd, mode);
  if (r != 0) {
    close(fd);
    herd__free(ipc);
    return r;
  }
  ipc->priv->child = child;
  child->channel = ipc;
  return 0;
}

int herd_handle_take(herd_handle_t* handle) {
  int fd = handle->fd;
  if (fd < 0)
    return UV_EINVAL;
  handle->fd = -1;
  return fd;
}

int herd_handle_open(herd_handle_t* handle, uv_loop_t* loop,
                     herd_uv_any_t* out) {
  int r, inited = 0;
  if (handle->fd < 0)
    return UV_EINVAL;
  /* What uv_*_open() could fail on is checked before a handle exists. */
  r = herd__nonblock(handle->fd, 1);
  if (r != 0)
    return r;
  if (handle->socktype == SOCK_STREAM && handle->family == AF_UNIX) {
    r = uv_pipe_init(loop, &out->pipe, 0);
    if (r == 0 && (inited = 1))
      r = uv_pipe_open(&out->pipe, handle->fd);
  } else if (handle->socktype == SOCK_STREAM &&
             (handle->family == AF_INET || handle->family == AF_INET6)) {
    r = uv_tcp_init(loop, &out->tcp);
    if (r == 0 && (inited = 1))
      r = uv_tcp_open(&out->tcp, handle->fd);
  } else if (handle->socktype == SOCK_DGRAM) {
    r = uv_udp_init(loop, &out->udp);
    if (r == 0 && (inited = 1))
      r = uv_udp_open(&out->udp, handle->fd);
  } else {
    return UV_EINVAL;
  }
  if (r != 0) {
    /* The fd stays with `handle`; the half-made libuv handle is closed, so
     * `out` must stay valid until the loop has run once more. */
    if (inited)
      uv_close(&out->handle, NULL);
    return r;
  }
  handle->fd = -1;
  return 0;
}
