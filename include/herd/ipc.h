/* The IPC channel (Node's `process.send()` / `'message'`), fork(), and the
 * small JSON helpers messages need. Wire format: either of Node's
 * serializations (herd_serialization_t): `json`, one JSON text + '\n' per
 * message, or `advanced`, a 4-byte big-endian length + V8 serializer bytes
 * per message; fds as SCM_RIGHTS. Both kinds of callback and send work in
 * both: messages are JSON text or herd_value_t values as the program
 * prefers, converted the way Node converts (JSON.stringify() and
 * JSON.parse()). Included by <herd.h>; do not include directly.
 *
 * A channel is either opened by the caller (herd_ipc_open(),
 * herd_ipc_open_parent(); the caller owns the herd_ipc_t) or created by
 * herd_spawn()/herd_fork() for a HERD_STDIO_IPC entry (child->channel; herd
 * owns it and frees it after its disconnect callback, setting child->channel
 * to NULL). Every callback runs on the channel's loop. */
#ifndef HERD_IPC_H
#define HERD_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The default limit for one incoming message: a line (bytes, without '\n')
 * or, in advanced mode, a frame (bytes after the 4-byte length). A longer
 * one is reported (HERD_ELINETOOLONG) and skipped as it streams in, and the
 * channel goes on; herd never buffers much more than the limit for one
 * message. 64 MiB holds what Node programs send in practice (a 10 MiB
 * message goes Node to Node), while one channel's read buffer stays
 * bounded. */
#define HERD_IPC_DEFAULT_MAX_LINE (64u * 1024 * 1024)
/* send() reports "full" once this many bytes wait to be written (Node's
 * 65536 * 2). */
#define HERD_IPC_HIGH_WATER (128u * 1024)

/* A handle that arrived with a message (NODE_HANDLE). `fd` belongs to herd
 * and is closed after the message (or value) callback returns unless the
 * callback took it with herd_handle_take() or herd_handle_open(). */
typedef struct herd_handle_s {
  const char* type; /* "net.Server", "net.Socket", "net.Native",
                       "dgram.Socket" or "dgram.Native" */
  int fd;
  int family;    /* AF_INET, AF_INET6 or AF_UNIX */
  int socktype;  /* SOCK_STREAM or SOCK_DGRAM */
  int listening; /* SO_ACCEPTCONN */
} herd_handle_t;

/* Any libuv handle herd_handle_open() may produce. */
typedef union {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
  uv_udp_t udp;
} herd_uv_any_t;

/* Takes ownership of the fd (the caller must close it); handle->fd becomes
 * -1. Returns the fd, or UV_EINVAL when it was already taken. */
int herd_handle_take(herd_handle_t* handle);
/* Wraps the fd in a ready libuv handle on `loop`: uv_tcp_t for TCP, uv_pipe_t
 * for Unix stream sockets, uv_udp_t for datagram sockets. A listening socket
 * needs only uv_listen(). The caller owns the result and closes it with
 * uv_close(). Errors: UV_EINVAL (fd already taken, or an unknown socket
 * kind), or what uv_*_open returns; in the latter case `out` was initialised
 * and is being closed, so its memory must stay valid until the loop has run
 * once more, and the fd is still herd's. */
int herd_handle_open(herd_handle_t* handle, uv_loop_t* loop,
                     herd_uv_any_t* out);

typedef struct herd_ipc_s herd_ipc_t;

/* A message arrived: `json` is one complete, validated JSON text of `len`
 * bytes, NUL-terminated, valid only during the call (in json mode it points
 * into herd's read buffer; in advanced mode it is JSON.stringify() of the
 * value that came, and a value with no JSON form, such as a BigInt or a
 * cycle, is reported as HERD_ENOJSON instead: set the value callback to
 * get such messages). `handle` is NULL unless a handle came with the message
 * (then `json` is the inner `msg` of Node's NODE_HANDLE envelope, and the
 * peer has already been sent NODE_HANDLE_ACK). Internal messages (an object
 * whose "cmd" is a string starting with "NODE_" and longer than 5) never
 * arrive here: herd answers NODE_HANDLE* and NODE_SOCKET_NOTIFY_CLOSE /
 * NODE_SOCKET_GET_COUNT itself (the latter as a receiver that keeps no
 * count of the sockets it handed over: all closed, count 0), and drops the
 * others unless the cluster module takes them. The callback may send,
 * disconnect, or take the handle. */
typedef void (*herd_ipc_message_cb)(herd_ipc_t* ipc, const char* json,
                                    size_t len, herd_handle_t* handle);
/* A message arrived, as a value: what the peer sent (advanced mode), or
 * JSON.parse() of its line (json mode). When set, it replaces the message
 * callback. `value` and everything it reaches belong to herd and are valid
 * only during the call (herd_value_copy() keeps one); `handle` as for the
 * message callback (the value is then the inner `msg` of the NODE_HANDLE
 * envelope). Internal messages never arrive here either. */
typedef void (*herd_ipc_value_cb)(herd_ipc_t* ipc, herd_value_t* value,
                                  herd_handle_t* handle);
/* A problem with what the peer sent. Recoverable (the channel goes on):
 * HERD_EBADJSON / HERD_EBADUTF8 (that line was dropped), HERD_ELINETOOLONG
 * (a line or frame over the limit was skipped; a NODE_HANDLE among them was
 * refused with a NACK), HERD_EBADPROTO (an internal message that answers
 * nothing this end sent, e.g. a NODE_HANDLE_ACK with no handle written and
 * unanswered: ignored), and in advanced mode HERD_EBADVALUE /
 * HERD_EVALUETYPE / HERD_EVALUELIMIT (a frame that does not decode, holds
 * a type herd cannot represent, or decodes into more than
 * HERD_VALUE_DEFAULT_MAX_BYTES or deeper than HERD_VALUE_DEFAULT_MAX_DEPTH:
 * dropped, and a NODE_HANDLE refused with a NACK) and HERD_ENOJSON (a
 * message with no JSON form for a message callback, or an internal message
 * with none: dropped). Fatal: a read or write error other than the peer
 * going away (or UV_ENOMEM), after which the channel closes and
 * disconnect_cb follows. The peer exiting or closing its end is never an
 * error, only a disconnect (as in Node). */
typedef void (*herd_ipc_error_cb)(herd_ipc_t* ipc, int err);
/* The channel closed: herd_ipc_disconnect() was called, the peer closed its
 * end (exited; what it wrote before is delivered first), or a fatal error.
 * Last callback of a channel: a herd_ipc_t the caller owns may be reused or
 * freed from here on; a child's channel is freed by herd right after this
 * returns. */
typedef void (*herd_ipc_disconnect_cb)(herd_ipc_t* ipc);
/* The write queue went back under the high-water mark after a send()
 * returned 1. */
typedef void (*herd_ipc_drain_cb)(herd_ipc_t* ipc);
/* A message sent with herd_ipc_send_ex() was written (status 0), or failed
 * (negative: HERD_ECHANNELCLOSED, HERD_EHANDLENACK, a write error). */
typedef void (*herd_ipc_send_cb)(herd_ipc_t* ipc, int status, void* arg);

typedef struct herd_ipc_callbacks_s {
  herd_ipc_message_cb message;
  herd_ipc_error_cb error;
  herd_ipc_disconnect_cb disconnect;
  herd_ipc_drain_cb drain;
  herd_ipc_value_cb value; /* when set, messages come here, not to message */
} herd_ipc_callbacks_t;

/* Public fields are read-only; `priv` is herd's. */
struct herd_ipc_s {
  void* data;
  uv_loop_t* loop;
  int connected;
  herd_serialization_t serialization;
  struct herd_ipc_private_s* priv;
};

/* Child side: opens the channel to the parent named by NODE_CHANNEL_FD, in
 * the serialization NODE_CHANNEL_SERIALIZATION_MODE names ("json", or unset
 * or empty: json; "advanced"), and removes both variables from the
 * environment (so grandchildren do not inherit them), as Node does. Works
 * under a Node parent (spawn with stdio [0, 1, 2, 'ipc'] or fork, either
 * serialization) and under herd_fork(). ipc->serialization tells which
 * mode the parent chose. Errors: HERD_ENOCHANNEL (no variable, or not a
 * number), HERD_EBADPROTO (a serialization mode Node does not have; the fd
 * is closed so the parent sees the channel end), UV_EBADF (fd not open),
 * UV_EINVAL (not an AF_UNIX stream socket). */
int herd_ipc_open_parent(uv_loop_t* loop, herd_ipc_t* ipc);
/* Opens a channel on any connected AF_UNIX stream socket; herd owns `fd`
 * from then on (made non-blocking and close-on-exec, with large socket
 * buffers). Reading starts at once; messages are held until
 * herd_ipc_start(). On error (UV_EINVAL: not an AF_UNIX stream socket, or
 * an unknown mode; UV_ENOMEM, a libuv error) the fd stays the caller's.
 * `ipc->data` is left alone. herd_ipc_open() is herd_ipc_open_ex() in
 * json mode; both ends of a channel must use the same mode. */
int herd_ipc_open(uv_loop_t* loop, herd_ipc_t* ipc, int fd);
int herd_ipc_open_ex(uv_loop_t* loop, herd_ipc_t* ipc, int fd,
                     herd_serialization_t mode);

/* Starts delivering messages; ones that arrived earlier were buffered and
 * are delivered first, from the loop (never from inside this call). Nothing
 * is parsed before this call, internal messages (ACKs, cluster messages)
 * included, so every channel must be started, even with NULL callbacks.
 * Calling it again replaces the callbacks. Any callback may be NULL.
 * Errors: HERD_ECHANNELCLOSED. */
int herd_ipc_start(herd_ipc_t* ipc, const herd_ipc_callbacks_t* callbacks);
/* Limit for one incoming line (or advanced frame) in bytes; 0 restores the
 * default (HERD_IPC_DEFAULT_MAX_LINE). A longer one is skipped without
 * being buffered and reported as HERD_ELINETOOLONG; the channel goes on.
 * In advanced mode it also bounds the JSON text a message callback or the
 * cluster module gets (longer: HERD_EVALUELIMIT, dropped). */
void herd_ipc_set_max_line(herd_ipc_t* ipc, size_t max_line);

/* Sends one JSON text (copied; newlines between tokens are turned into
 * spaces; on an advanced channel it is sent as the value JSON.parse()
 * makes of it, so a Node peer gets the same message in either mode).
 * Returns 0, or 1 when the message was queued but the queue is
 * above the high-water mark (Node's send() === false; wait for drain), or
 * HERD_EBADJSON / HERD_EBADUTF8 / HERD_ECHANNELCLOSED / UV_ENOMEM. Nothing
 * accepted is ever dropped. Many sends in one loop iteration are written
 * together (or at once when 256 KiB are waiting): replies sent by message
 * callbacks as soon as the read that delivered the messages has been
 * processed, other sends from the channel's uv_idle_t before the loop next
 * waits for events. While a handle is in
 * flight (sent, not yet acknowledged) later messages wait behind it, as in
 * Node. A message whose top-level "cmd" starts with "NODE_" is internal to
 * the peer (a Node peer will not emit it as 'message').
 *
 * Flow control: what the caller sends is bounded by the caller, who sees
 * the queue above HERD_IPC_HIGH_WATER as a return of 1 and waits for
 * drain. What herd sends by itself in answer to the peer (NODE_HANDLE_ACK
 * and NACK, NODE_SOCKET_* answers, the cluster module's replies) is bounded
 * by herd: while more than 64 KiB of those wait unwritten, the channel
 * stops reading, and it reads again once they are written. A peer that
 * reads never sees this; one that keeps asking without reading is held
 * back by its own socket instead of growing herd's memory. Reading never
 * pauses because of the caller's own sends, so two ends that both send a
 * lot (each respecting the return value) cannot stop each other. */
int herd_ipc_send(herd_ipc_t* ipc, const char* json, size_t len);

typedef enum {
  HERD_SEND_KEEP_OPEN = (1 << 0) /* Node's keepOpen: keep a sent socket open */
} herd_send_flags_t;

/* Sends a message with a libuv handle (uv_tcp_t server or socket, uv_pipe_t,
 * uv_udp_t); `handle` may be NULL. The fd is duplicated at call time. A
 * connected TCP socket or pipe sent without HERD_SEND_KEEP_OPEN is closed by
 * herd (uv_close(handle, handle_close_cb)) once the peer acknowledged it, as
 * Node does; servers stay open. cb (may be NULL) runs exactly once: when the
 * message is written and, for a handle, acknowledged (0); with
 * HERD_EHANDLENACK when the peer refused the handle four times (three
 * resends, as Node); with HERD_ECHANNELCLOSED when the channel closed
 * first. An ACK or NACK counts only once the handle's line (or frame) and
 * fd have been written (the peer cannot have seen it before); one that comes
 * earlier, or with no handle in flight, is reported as HERD_EBADPROTO and
 * ignored, so herd's copy of the fd is never closed or sent again before it
 * went out. The type on the wire is "net.Server" (listening TCP/pipe),
 * "net.Socket" (connected TCP/pipe) or "dgram.Socket" (UDP, with "dgramType").
 * Returns as herd_ipc_send(), plus HERD_EBADHANDLE for an unsupported or
 * closing handle. */
int herd_ipc_send_ex(herd_ipc_t* ipc, const char* json, size_t len,
                     uv_handle_t* handle, unsigned flags,
                     uv_close_cb handle_close_cb, herd_ipc_send_cb cb,
                     void* arg);
/* Sends a message with a raw fd (duplicated at call time; the caller keeps
 * its own) announced as `type` ("net.Native", "net.Socket", ...), in the
 * NODE_HANDLE envelope. cb runs once: the peer acknowledged it (0) or
 * refused it four times (HERD_EHANDLENACK), or HERD_ECHANNELCLOSED; answers
 * are trusted as for herd_ipc_send_ex(). Errors as herd_ipc_send(), plus
 * UV_EINVAL (no type or fd < 0) and dup errors. */
int herd_ipc_send_fd(herd_ipc_t* ipc, const char* json, size_t len, int fd,
                     const char* type, herd_ipc_send_cb cb, void* arg);

/* Sending values: the same three calls with a herd_value_t (from any heap)
 * instead of JSON text. The value is serialized at call time, so its heap
 * may change or be freed as soon as the call returns. On an advanced
 * channel it goes as it is (herd_value_serialize()); on a json channel as
 * JSON.stringify() of it (herd_value_to_json()), as Node's send() does in
 * either mode. Returns and callbacks as herd_ipc_send(), herd_ipc_send_ex()
 * and herd_ipc_send_fd(), plus: UV_EINVAL for NULL, or an undefined or
 * BigInt message (Node's send() refuses those: ERR_MISSING_ARGS,
 * ERR_INVALID_ARG_TYPE), HERD_ENOJSON on a json channel for a value with
 * no JSON form (a BigInt inside, a cycle: JSON.stringify() throws),
 * HERD_EVALUELIMIT (nested deeper than HERD_VALUE_DEFAULT_MAX_DEPTH, or
 * longer than a frame or V8 string can be). */
int herd_ipc_send_value(herd_ipc_t* ipc, const herd_value_t* value);
int herd_ipc_send_value_ex(herd_ipc_t* ipc, const herd_value_t* value,
                           uv_handle_t* handle, unsigned flags,
                           uv_close_cb handle_close_cb, herd_ipc_send_cb cb,
                           void* arg);
int herd_ipc_send_value_fd(herd_ipc_t* ipc, const herd_value_t* value, int fd,
                           const char* type, herd_ipc_send_cb cb, void* arg);

/* Bytes waiting to be written, including messages queued behind a handle
 * in flight. */
size_t herd_ipc_queued_bytes(const herd_ipc_t* ipc);

/* Closes the channel once queued messages are written (and a handle in
 * flight is acknowledged); disconnect_cb follows from the loop. `connected`
 * becomes 0 at once, later sends fail with HERD_ECHANNELCLOSED, and no more
 * messages are delivered. Safe to call more than once. */
void herd_ipc_disconnect(herd_ipc_t* ipc);
/* Whether the channel keeps the loop alive (it does by default), like
 * Node's channel ref()/unref(). */
void herd_ipc_ref(herd_ipc_t* ipc);
void herd_ipc_unref(herd_ipc_t* ipc);

/* fork(): spawn `program` with an IPC channel as fd 3. */
typedef struct herd_fork_options_s {
  herd_spawn_options_t spawn; /* stdio: 0 entries -> [inherit x3, ipc],
                                 or [pipe x3, ipc] when `silent`;
                                 spawn.serialization: the channel's */
  int silent;
  const char* exec_path; /* e.g. "node": runs exec_path exec_argv program
                            args; NULL runs `program` itself */
  const char* const* exec_argv;
} herd_fork_options_t;

/* Node's child_process.fork(): herd_spawn() with an IPC channel, which is
 * then child->channel (start it with herd_ipc_start()). `args` is a
 * NULL-terminated list without argv[0] (NULL for none). With exec_path the
 * command is `exec_path exec_argv... program args...` (fork a Node script
 * with exec_path "node"); otherwise `program args...`, which should call
 * herd_ipc_open_parent(). options may be NULL. Callbacks (exit, close,
 * error) and every other spawn option come from options->spawn. Errors as
 * herd_spawn(), plus UV_EINVAL when a given stdio array has no
 * HERD_STDIO_IPC entry (Node's ERR_CHILD_PROCESS_IPC_REQUIRED) and
 * UV_ENOMEM. */
int herd_fork(uv_loop_t* loop, herd_child_t* child, const char* program,
              const char* const* args, const herd_fork_options_t* options);

/* JSON helpers for reading messages without a JSON library. They look at
 * the top level of an object only and never allocate. Keys are compared as
 * raw bytes (a key spelled with escapes is not matched); with duplicate keys
 * the last wins, as in JSON.parse(). */

/* Validates a whole JSON text (RFC 8259 grammar, UTF-8 per RFC 3629, depth
 * up to 4096): 0, HERD_EBADJSON or HERD_EBADUTF8. */
int herd_json_validate(const char* json, size_t len);
/* Finds member `key` of the top-level object: *value points at its raw JSON
 * text. Returns 0, UV_ENOENT, or HERD_EBADJSON. */
int herd_json_get(const char* json, size_t len, const char* key,
                  const char** value, size_t* value_len);
/* Decodes string member `key` into out (NUL-terminated UTF-8; a lone
 * surrogate escape becomes U+FFFD). Returns its length, UV_ENOENT,
 * UV_EINVAL (not a string), UV_ENOBUFS (cap too small), HERD_EBADJSON. */
int herd_json_get_string(const char* json, size_t len, const char* key,
                         char* out, size_t cap);
/* Reads integer member `key` (plain integer text, within int64_t). Returns
 * 0, UV_ENOENT, UV_EINVAL (not an integer or out of range), HERD_EBADJSON. */
int herd_json_get_int(const char* json, size_t len, const char* key,
                      int64_t* out);
/* Writes `s` (UTF-8) as a JSON string literal (with quotes, escaping '"',
 * '\\' and control characters) into out; returns the length it needs
 * without the NUL (like snprintf), writing at most cap bytes including a
 * terminating NUL. out may be NULL when cap is 0. */
size_t herd_json_quote(char* out, size_t cap, const char* s, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* HERD_IPC_H */
