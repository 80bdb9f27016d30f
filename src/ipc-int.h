/* Private declarations of the IPC channel, shared by ipc.c (the channel:
 * its I/O, output queue, handle passing, flow control, and the json
 * framing) and ipc_advanced.c (Node's advanced framing: length-prefixed V8
 * serializer frames, and the bridge between values and JSON text). The
 * types keep short names: only these two files see them. Not installed. */
#ifndef HERD_IPC_INT_H
#define HERD_IPC_INT_H

#include "internal.h"

#define MAX_RECV_FDS 16

/* An outgoing message that needs more than bytes in the output buffer: it
 * has a callback, carries an fd, or waits behind a handle in flight. */
typedef struct ipc_req_s ipc_req_t;
struct ipc_req_s {
  ipc_req_t* next;
  uint64_t end; /* stream offset just past its bytes, once buffered */
  int reply;    /* made by herd in answer to the peer (see note_reply()) */
  herd_ipc_send_cb cb;
  void* arg;
  int fd; /* our duplicate of the fd it carries, or -1 */
  uv_handle_t* handle;
  uv_close_cb close_cb;
  int close_on_ack;
  int nacks;
  size_t len; /* bytes in line[] (a line with its '\n', or a whole frame);
                 0 when not kept */
  char line[];
};

/* An fd that arrived with the bytes [from, to) of the input stream; it
 * belongs to the NODE_HANDLE message that starts in that range. */
typedef struct {
  int fd;
  uint64_t from;
  uint64_t to;
} recv_fd_t;

typedef struct herd_ipc_private_s {
  herd_ipc_t* ipc;
  int fd;
  uv_poll_t poll;
  uv_idle_t flusher;
  int poll_events;
  int closes_pending;
  herd_ipc_callbacks_t cb;
  herd__ipc_internal_cb internal_cb;
  herd_child_t* child; /* set when the channel belongs to a spawned child */
  size_t max_line;
  unsigned advanced : 1; /* Node's advanced serialization, else json */
  unsigned started : 1;
  unsigned closing : 1;
  unsigned disconnecting : 1;
  unsigned eof : 1;
  unsigned paused : 1;
  unsigned parse_pending : 1;
  unsigned need_drain : 1;
  unsigned want_write : 1;
  unsigned in_read : 1;     /* message callbacks of one read are running */
  unsigned flush_due : 1;   /* they sent: write at the end of that read */
  unsigned in_internal : 1; /* the internal hook runs: its sends are replies */
  unsigned throttled : 1;   /* too many replies unwritten: reading paused */
  unsigned hangup : 1;      /* the peer hung up: read what is left, then EOF */
  unsigned skipping : 1;    /* dropping the rest of a message over the limit */
  int werr; /* a write error met inside send(), handled from the loop */

  /* The message being delivered to the message callback: it has been
   * validated and holds no raw newline, so sending it on as it is needs no
   * second scan. */
  const char* deliv;
  size_t deliv_len;

  /* Input: rbuf[rstart, rlen) is unparsed; rbase is the stream offset of
   * rbuf[0]; memchr resumes at `scan` (json). skip_left: bytes of a frame
   * over the limit still to drop (advanced). */
  char* rbuf;
  size_t rcap, rstart, rlen, scan;
  uint64_t rbase;
  uint64_t skip_left;
  recv_fd_t rfds[MAX_RECV_FDS * 4];
  size_t nrfds;

  /* Output: obuf[ohead, olen) waits to be written; obase is the stream offset
   * of obuf[0]. ofd, when >= 0, must ride on the sendmsg() that starts at
   * stream offset ofd_at. */
  char* obuf;
  size_t ocap, ohead, olen;
  uint64_t obase;
  int ofd;
  uint64_t ofd_at;
  ipc_req_t *written_head, *written_tail; /* waiting for their bytes to go */
  ipc_req_t* inflight;                    /* a handle waiting for ACK/NACK */
  ipc_req_t *wait_head, *wait_tail;       /* queued behind `inflight` */
  size_t wait_bytes;

  /* Replies herd made by itself: reply_bytes were put into obuf, the last
   * of them ending at stream offset reply_end (the count restarts once
   * that offset is written); reply_wait more wait behind a handle. */
  size_t reply_bytes, reply_wait;
  uint64_t reply_end;

  /* Values: the message being delivered (emptied after each), and the
   * scratch of a send (emptied before the send returns). */
  herd_value_heap_t rheap;
  herd_value_heap_t sheap;
} ipc_priv_t;

/* ipc.c: the channel, for ipc_advanced.c. */
void herd__ipc_report(ipc_priv_t* p, int err);
void herd__ipc_close(ipc_priv_t* p, int err);
/* Room for `need` more bytes at the end of the output buffer. */
int herd__ipc_out_reserve(ipc_priv_t* p, size_t need);
/* A request whose bytes were just put into the output buffer: its
 * callback runs once they are written. */
void herd__ipc_push_written(ipc_priv_t* p, ipc_req_t* req);
/* A request that waits behind the handle in flight. */
void herd__ipc_push_waiting(ipc_priv_t* p, ipc_req_t* req);
/* `len` bytes just put at the end of the output buffer are herd's reply. */
void herd__ipc_note_reply(ipc_priv_t* p, size_t len);
/* After a message was queued: flush early if a lot waits, arm the write;
 * returns send()'s 0 or 1. */
int herd__ipc_after_queue(ipc_priv_t* p);
/* Queues a request carrying an fd (its bytes in req->line, req->fd set):
 * sends it now as the handle in flight, or queues it behind the one in
 * flight. Takes the request (freed, fd closed, on error). Returns as
 * herd__ipc_after_queue() or UV_ENOMEM. */
int herd__ipc_queue_handle(ipc_priv_t* p, ipc_req_t* req);
/* Queues bytes herd made by itself in answer to the peer. */
void herd__ipc_reply(ipc_priv_t* p, const char* bytes, size_t len);
/* The fd that came with the chunk holding stream offset `at`, or -1. */
int herd__ipc_take_recv_fd(ipc_priv_t* p, uint64_t at);
/* Fills family, socktype and listening of a received handle from its fd. */
void herd__ipc_describe_fd(herd_handle_t* h);
/* Node's name of a handle type, or NULL when `name` is none of them. */
const char* herd__ipc_handle_type(const char* name, size_t len);
/* Gives an internal message (JSON text) to the internal hook. */
void herd__ipc_call_internal(ipc_priv_t* p, const char* json, size_t len,
                             herd_handle_t* handle);
/* After a parse: closes fds whose chunk was parsed without a message
 * taking them, and restarts an emptied read buffer (freeing a large one). */
void herd__ipc_parse_done(ipc_priv_t* p);
/* Acts on an internal message other than NODE_HANDLE, given as JSON text
 * (NUL-terminated): ACK/NACK, NODE_SOCKET_* questions, the internal hook. */
void herd__ipc_internal_json(ipc_priv_t* p, const char* json, size_t len);

/* ipc_advanced.c: the advanced framing, for ipc.c. */
/* Splits and handles the frames buffered in rbuf. */
void herd__ipc_parse_frames(ipc_priv_t* p);
/* Sends a message as a frame: `value`, or JSON.parse() of `json` when value
 * is NULL. Returns as herd_ipc_send(). */
int herd__ipc_send_frame(ipc_priv_t* p, const herd_value_t* value,
                         const char* json, size_t len, herd_ipc_send_cb cb,
                         void* arg);
/* Sends a message (as for herd__ipc_send_frame()) in a NODE_HANDLE envelope
 * with `fd`, which the call takes (closed on error). */
int herd__ipc_send_frame_handle(ipc_priv_t* p, const herd_value_t* value,
                                const char* json, size_t len, int fd,
                                const char* type, const char* dgram_type,
                                uv_handle_t* handle, uv_close_cb close_cb,
                                int close_on_ack, herd_ipc_send_cb cb,
                                void* arg);
/* Queues herd's own reply, given as JSON text, as a frame. */
void herd__ipc_reply_json(ipc_priv_t* p, const char* json, size_t len);
/* NODE_HANDLE_ACK and NODE_HANDLE_NACK as frames. */
void herd__ipc_reply_ack(ipc_priv_t* p, int ok);
/* json mode with a value callback: JSON.parse() of a validated line, to
 * the value callback. */
void herd__ipc_deliver_json(ipc_priv_t* p, const char* json, size_t len,
                            herd_handle_t* handle);

#endif /* HERD_IPC_INT_H */
