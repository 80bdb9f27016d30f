/* Node's `advanced` serialization on the IPC channel: each message is a
 * 4-byte big-endian length and that many bytes of V8 serializer output
 * (Node's lib/internal/child_process/serialization.js: `advanced`, with its
 * ChildProcessSerializer). This file splits and decodes frames
 * (herd__ipc_parse_frames()), hands values to the program (or their JSON
 * text to a message callback), turns herd's own JSON messages (ACK/NACK,
 * socket-list answers, the cluster module's, herd_ipc_send()) into frames,
 * and builds the NODE_HANDLE envelope around a value. The channel itself
 * (I/O, the output queue, handle passing and what an ACK may release, flow
 * control, fds) is ipc.c's and treats a frame as it treats a line. */
#include "ipc-int.h"
#include "value-int.h"

#include <stddef.h>
#include <string.h>
#include <unistd.h>

/* {cmd: 'NODE_HANDLE_ACK'} and {cmd: 'NODE_HANDLE_NACK'} as Node 20 frames
 * them: the length, V8's header (version 15), an object with one string
 * property, its end and property count. */
static const char ack_frame[] =
    "\0\0\0\x1b\xff\x0f"
    "o\"\x03"
    "cmd\"\x0f"
    "NODE_HANDLE_ACK{\x01";
static const char nack_frame[] =
    "\0\0\0\x1c\xff\x0f"
    "o\"\x03"
    "cmd\"\x10"
    "NODE_HANDLE_NACK{\x01";

/* How a frame holding {cmd: 'NODE_HANDLE', ...} begins after V8's header,
 * as Node and herd write it (cmd is the envelope's first property). */
static const char handle_start[] =
    "o\"\x03"
    "cmd\"\x0b"
    "NODE_HANDLE";
#define HANDLE_HEAD (2 + sizeof(handle_start) - 1)

static uint32_t get_be32(const uint8_t* b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
         (uint32_t)b[3];
}

static void put_be32(char* out, size_t n) {
  out[0] = (char)(n >> 24);
  out[1] = (char)(n >> 16);
  out[2] = (char)(n >> 8);
  out[3] = (char)n;
}

/* Whether the first `n` bytes of a frame (after its length) are those of a
 * NODE_HANDLE envelope. For frames herd cannot read (over the limit, or
 * undecodable), whose sender may be waiting for an ACK or NACK. */
static int frame_is_handle(const uint8_t* b, size_t n) {
  return n >= HANDLE_HEAD && b[0] == 0xff && b[1] >= 13 && b[1] <= 15 &&
         memcmp(b + 2, handle_start, sizeof(handle_start) - 1) == 0;
}

void herd__ipc_reply_ack(ipc_priv_t* p, int ok) {
  if (ok)
    herd__ipc_reply(p, ack_frame, sizeof(ack_frame) - 1);
  else
    herd__ipc_reply(p, nack_frame, sizeof(nack_frame) - 1);
}

/* A message that cannot be handed on: the frame was refused (over the
 * limit, undecodable), or the message has no JSON form for a JSON
 * consumer. Out of memory closes the channel, as everywhere in it (the
 * message would be lost without a trace otherwise); the rest is reported
 * and the channel goes on. */
static void fail(ipc_priv_t* p, int err) {
  if (err == UV_ENOMEM)
    herd__ipc_close(p, err);
  else
    herd__ipc_report(p, err == UV_EINVAL ? HERD_ENOJSON : err);
}

/* A frame refused whole: its sender waits for an answer if it carried a
 * handle, so a NODE_HANDLE gets its NACK and the fd that came with it is
 * closed. */
static void refuse_frame(ipc_priv_t* p, int err, const uint8_t* head, size_t n,
                         uint64_t at) {
  fail(p, err);
  if (p->closing)
    return;
  if (frame_is_handle(head, n)) {
    int fd = herd__ipc_take_recv_fd(p, at);
    if (fd >= 0)
      close(fd);
    herd__ipc_reply_ack(p, 0);
  }
}

/* JSON.stringify() of a value for a JSON consumer, bounded by the line
 * limit as a line would be. */
static int to_json(ipc_priv_t* p, const herd_value_t* v, uv_buf_t* text) {
  herd_value_options_t o;
  memset(&o, 0, sizeof(o));
  o.max_bytes = p->max_line;
  return herd_value_to_json(v, &o, text);
}

/* A user message: to the value callback, or as JSON to the message
 * callback. */
static void deliver_value(ipc_priv_t* p, herd_value_t* v, herd_handle_t* h) {
  uv_buf_t text;
  int r;
  if (p->disconnecting)
    return;
  if (p->cb.value != NULL) {
    p->cb.value(p->ipc, v, h);
    return;
  }
  if (p->cb.message == NULL)
    return;
  r = to_json(p, v, &text);
  if (r != 0) {
    fail(p, r);
    return;
  }
  p->cb.message(p->ipc, text.base, text.len, h);
  herd__free(text.base);
}

/* An internal message, as JSON text for ipc.c's dispatch (ACK, NACK,
 * NODE_SOCKET_*) or, with a handle, for the internal hook (the cluster
 * module speaks JSON in both modes). */
static void internal_value(ipc_priv_t* p, const herd_value_t* v,
                           herd_handle_t* h) {
  uv_buf_t text;
  int r = to_json(p, v, &text);
  if (r != 0) {
    fail(p, r);
    return;
  }
  if (h != NULL)
    herd__ipc_call_internal(p, text.base, text.len, h);
  else
    herd__ipc_internal_json(p, text.base, text.len);
  herd__free(text.base);
}

/* {cmd: 'NODE_HANDLE', type, msg}: ACK and deliver msg with the fd that
 * came with the frame's chunk; NACK without an fd or with an unknown type,
 * as for a line (ipc.c, on_handle_message()). */
static void on_handle_value(ipc_priv_t* p, herd_value_t* v, uint64_t at) {
  herd_handle_t h;
  herd_value_t* msg;
  const char* type;
  size_t type_len = 0;
  int fd = herd__ipc_take_recv_fd(p, at);

  if (fd < 0) {
    herd__ipc_reply_ack(p, 0);
    return;
  }
  msg = herd_value_object_get(v, "type");
  type = msg != NULL ? herd_value_get_string(msg, &type_len) : NULL;
  if (type == NULL ||
      (h.type = herd__ipc_handle_type(type, type_len)) == NULL) {
    close(fd);
    herd__ipc_reply_ack(p, 0);
    return;
  }
  herd__ipc_reply_ack(p, 1);
  msg = herd_value_object_get(v, "msg");
  if (msg == NULL)
    msg = herd_value_null();
  h.fd = fd;
  herd__ipc_describe_fd(&h);
  if (herd__value_internal_cmd(msg, NULL, NULL))
    internal_value(p, msg, &h);
  else
    deliver_value(p, msg, &h);
  if (h.fd >= 0)
    close(h.fd);
}

/* One whole frame: `len` bytes at stream offset `at` + 4. Messages are
 * classified as Node's isInternal() does (lib/internal/child_process.js). */
static void process_frame(ipc_priv_t* p, const uint8_t* bytes, size_t len,
                          uint64_t at) {
  herd_value_t* v;
  const char* cmd;
  size_t cmd_len;
  int r = herd_value_deserialize(&p->rheap, bytes, len, NULL, &v);
  if (r != 0) {
    refuse_frame(p, r, bytes, len, at);
    return;
  }
  if (!herd__value_internal_cmd(v, &cmd, &cmd_len))
    deliver_value(p, v, NULL);
  else if (cmd_len == 11 && memcmp(cmd, "NODE_HANDLE", 11) == 0)
    on_handle_value(p, v, at);
  else
    internal_value(p, v, NULL);
  herd_value_heap_free(&p->rheap);
}

void herd__ipc_parse_frames(ipc_priv_t* p) {
  if (p->rbuf == NULL)
    return;
  while (!p->closing && p->started && (!p->throttled || p->hangup)) {
    const uint8_t* b = (const uint8_t*)p->rbuf + p->rstart;
    size_t avail = p->rlen - p->rstart;
    uint64_t at = p->rbase + p->rstart;
    size_t len;
    if (p->skipping) {
      /* Inside a frame over the limit: drop what came of it. */
      size_t n = avail < p->skip_left ? avail : (size_t)p->skip_left;
      p->rstart += n;
      p->skip_left -= n;
      if (p->skip_left > 0)
        break;
      p->skipping = 0;
      continue;
    }
    if (avail < 4)
      break;
    len = get_be32(b);
    if (len > p->max_line) {
      /* Reported and skipped as it streams in, never buffered; its first
       * bytes tell whether its sender waits for a NACK. */
      size_t head = len < HANDLE_HEAD ? len : HANDLE_HEAD;
      if (avail - 4 < head)
        break;
      refuse_frame(p, HERD_ELINETOOLONG, b + 4, head, at);
      p->rstart += 4;
      p->skipping = 1;
      p->skip_left = len;
      continue;
    }
    if (avail - 4 < len)
      break;
    p->rstart += 4 + len;
    process_frame(p, b + 4, len, at);
  }
  /* read_reserve() keeps `scan` (the json reader's) in step with rstart. */
  p->scan = p->rstart;
  herd__ipc_parse_done(p);
}

/* Serializes `v` into a new request: the frame (length and bytes) in
 * req->line, the rest of the request zeroed. The serializer writes right
 * after the request's header in the same allocation, so the bytes are not
 * copied again. */
static int frame_req(const herd_value_t* v, ipc_req_t** out) {
  size_t hdr = offsetof(ipc_req_t, line);
  char* buf = NULL;
  size_t cap = 0, end;
  ipc_req_t* req;
  int r = herd__value_write_buf(v, NULL, &buf, &cap, hdr + 4, &end);
  if (r != 0) {
    herd__free(buf);
    return r;
  }
  req = (ipc_req_t*)(void*)buf;
  memset(req, 0, hdr);
  req->fd = -1;
  req->len = end - hdr;
  put_be32(req->line, req->len - 4);
  *out = req;
  return 0;
}

/* Queues `v` as a frame: serialized straight into the output buffer, or
 * into a request behind the handle in flight. */
static int queue_frame(ipc_priv_t* p, const herd_value_t* v,
                       herd_ipc_send_cb cb, void* arg) {
  ipc_req_t* req = NULL;
  size_t at, end;
  int r;
  if (p->inflight == NULL && p->wait_head == NULL) {
    if (cb != NULL) {
      req = herd__calloc(1, sizeof(*req));
      if (req == NULL)
        return UV_ENOMEM;
      req->fd = -1;
      req->cb = cb;
      req->arg = arg;
    }
    r = herd__ipc_out_reserve(p, 64);
    at = p->olen;
    if (r == 0)
      r = herd__value_write_buf(v, NULL, &p->obuf, &p->ocap, at + 4, &end);
    if (r != 0) {
      herd__free(req);
      return r;
    }
    put_be32(p->obuf + at, end - at - 4);
    p->olen = end;
    if (req != NULL)
      herd__ipc_push_written(p, req);
    if (p->in_internal)
      herd__ipc_note_reply(p, end - at);
    return herd__ipc_after_queue(p);
  }
  r = frame_req(v, &req);
  if (r != 0)
    return r;
  req->cb = cb;
  req->arg = arg;
  req->reply = p->in_internal;
  herd__ipc_push_waiting(p, req);
  return herd__ipc_after_queue(p);
}

int herd__ipc_send_frame(ipc_priv_t* p, const herd_value_t* value,
                         const char* json, size_t len, herd_ipc_send_cb cb,
                         void* arg) {
  herd_value_t* v = NULL;
  int r = 0;
  if (value == NULL)
    r = herd_value_from_json(&p->sheap, json, len, NULL, &v);
  if (r == 0)
    r = queue_frame(p, value != NULL ? value : v, cb, arg);
  herd_value_heap_free(&p->sheap);
  return r;
}

int herd__ipc_send_frame_handle(ipc_priv_t* p, const herd_value_t* value,
                                const char* json, size_t len, int fd,
                                const char* type, const char* dgram_type,
                                uv_handle_t* handle, uv_close_cb close_cb,
                                int close_on_ack, herd_ipc_send_cb cb,
                                void* arg) {
  herd_value_heap_t* heap = &p->sheap;
  herd_value_t *msg = (herd_value_t*)value, *env;
  ipc_req_t* req;
  int r = 0;

  if (msg == NULL)
    r = herd_value_from_json(heap, json, len, NULL, &msg);
  /* Node's envelope, in Node's order: {cmd, type, msg[, dgramType]}. The
   * message may belong to the caller's heap: the envelope is only
   * serialized, never kept, so it holds it without a copy. */
  env = r == 0 ? herd_value_new_object(heap) : NULL;
  if (r == 0 && env == NULL)
    r = herd_value_heap_error(heap);
  if (r == 0)
    r = herd_value_object_set(env, "cmd",
                              herd_value_new_string(heap, "NODE_HANDLE", 11));
  if (r == 0)
    r = herd_value_object_set(env, "type",
                              herd_value_new_string(heap, type, strlen(type)));
  if (r == 0)
    r = herd__value_prop_append(env, "msg", 3, msg);
  if (r == 0 && dgram_type != NULL)
    r = herd_value_object_set(
        env, "dgramType",
        herd_value_new_string(heap, dgram_type, strlen(dgram_type)));
  if (r == 0)
    r = frame_req(env, &req);
  herd_value_heap_free(heap);
  if (r != 0) {
    close(fd);
    return r;
  }
  req->fd = fd;
  req->handle = handle;
  req->close_cb = close_cb;
  req->close_on_ack = close_on_ack;
  req->cb = cb;
  req->arg = arg;
  return herd__ipc_queue_handle(p, req);
}

void herd__ipc_reply_json(ipc_priv_t* p, const char* json, size_t len) {
  herd_value_t* v;
  uv_buf_t frame;
  int r = herd_value_from_json(&p->sheap, json, len, NULL, &v);
  if (r == 0)
    r = herd__value_write(v, NULL, 4, &frame);
  herd_value_heap_free(&p->sheap);
  if (r != 0) {
    /* herd wrote the text: only memory can be missing. */
    herd__ipc_close(p, r);
    return;
  }
  put_be32(frame.base, frame.len - 4);
  herd__ipc_reply(p, frame.base, frame.len);
  herd__free(frame.base);
}

void herd__ipc_deliver_json(ipc_priv_t* p, const char* json, size_t len,
                            herd_handle_t* handle) {
  herd_value_t* v;
  /* The line was validated: only memory can be missing. */
  int r = herd_value_from_json(&p->rheap, json, len, NULL, &v);
  if (r != 0) {
    fail(p, r);
    return;
  }
  p->cb.value(p->ipc, v, handle);
  herd_value_heap_free(&p->rheap);
}
