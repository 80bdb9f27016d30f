/* The IPC channel (Node's `process.send()` / `'message'`), fork(), and the
 * small JSON helpers messages need. Wire format: Node's `json`
 * serialization, one JSON text + '\n' per message, fds as SCM_RIGHTS.
 * Included by <herd.h>; do not include directly. */
#ifndef HERD_IPC_H
#define HERD_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The default limit for one incoming message line (bytes, without '\n'). */
#define HERD_IPC_DEFAULT_MAX_LINE (8u * 1024 * 1024)
/* send() reports "full" once this many bytes wait to be written (Node's
 * 65536 * 2). */
#define HERD_IPC_HIGH_WATER (128u * 1024)

/* A handle that arrived with a message (NODE_HANDLE). `fd` belongs to herd
 * and is closed after the message callback returns unless the callback took
 * it with herd_handle_take() or herd_handle_open(). */
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

/* Takes ownership of the fd (the caller must close it). */
int herd_handle_take(herd_handle_t* handle);
/* Wraps the fd in a ready libuv handle on `loop`: uv_tcp_t for TCP, uv_pipe_t
 * for Unix stream sockets, uv_udp_t for datagram sockets. The caller owns
 * the result and closes it with uv_close(). Errors: UV_EINVAL (fd already
 * taken), or what uv_*_open returns. */
int herd_handle_open(herd_handle_t* handle, uv_loop_t* loop,
                     herd_uv_any_t* out);

typedef struct herd_ipc_s herd_ipc_t;

/* A message arrived: `json` is one complete JSON text of `len` bytes,
 * NUL-terminated, valid only during the call. `handle` is NULL unless a
 * handle came with the message. Internal messages (Node's NODE_* cmds) never
 * arrive here. */
typedef void (*herd_ipc_message_cb)(herd_ipc_t* ipc, const char* json,
                                    size_t len, herd_handle_t* handle);
/* A recoverable problem: HERD_EBADJSON / HERD_EBADUTF8 (that line was
 * dropped, the channel goes on), or a fatal one (HERD_ELINETOOLONG,
 * a read error), after which the channel closes and disconnect_cb follows. */
typedef void (*herd_ipc_error_cb)(herd_ipc_t* ipc, int err);
/* The channel closed: herd_ipc_disconnect() was called, the peer closed its
 * end (exited), or a fatal error. Last callback of a channel. */
typedef void (*herd_ipc_disconnect_cb)(herd_ipc_t* ipc);
/* The write queue went back under the high-water mark. */
typedef void (*herd_ipc_drain_cb)(herd_ipc_t* ipc);
/* A message sent with herd_ipc_send_ex() was written (status 0), or failed
 * (negative: HERD_ECHANNELCLOSED, HERD_EHANDLENACK, a write error). */
typedef void (*herd_ipc_send_cb)(herd_ipc_t* ipc, int status, void* arg);

typedef struct herd_ipc_callbacks_s {
  herd_ipc_message_cb message;
  herd_ipc_error_cb error;
  herd_ipc_disconnect_cb disconnect;
  herd_ipc_drain_cb drain;
} herd_ipc_callbacks_t;

/* Public fields are read-only; `priv` is herd's. */
struct herd_ipc_s {
  void* data;
  uv_loop_t* loop;
  int connected;
  struct herd_ipc_private_s* priv;
};

/* Child side: opens the channel to the parent named by NODE_CHANNEL_FD and
 * removes NODE_CHANNEL_FD and NODE_CHANNEL_SERIALIZATION_MODE from the
 * environment. Errors: HERD_ENOCHANNEL (no variable), HERD_EADVANCED (the
 * parent asked for `advanced` serialization), UV_EBADF (fd not open). */
int herd_ipc_open_parent(uv_loop_t* loop, herd_ipc_t* ipc);
/* Opens a channel on any connected AF_UNIX stream socket; herd owns `fd`. */
int herd_ipc_open(uv_loop_t* loop, herd_ipc_t* ipc, int fd);

/* Starts delivering messages; ones that arrived earlier were buffered and
 * are delivered first. Any callback may be NULL. */
int herd_ipc_start(herd_ipc_t* ipc, const herd_ipc_callbacks_t* callbacks);
/* Limit for one incoming line; 0 restores the default. */
void herd_ipc_set_max_line(herd_ipc_t* ipc, size_t max_line);

/* Sends one JSON text (copied; newlines between tokens are turned into
 * spaces). Returns 0, or 1 when the message was queued but the queue is
 * above the high-water mark (Node's send() === false; wait for drain), or
 * HERD_EBADJSON / HERD_EBADUTF8 / HERD_ECHANNELCLOSED / UV_ENOMEM. Nothing
 * accepted is ever dropped. Many sends in one loop iteration are written
 * together. */
int herd_ipc_send(herd_ipc_t* ipc, const char* json, size_t len);

typedef enum {
  HERD_SEND_KEEP_OPEN = (1 << 0) /* Node's keepOpen: keep a sent socket open */
} herd_send_flags_t;

/* Sends a message with a libuv handle (uv_tcp_t server or socket, uv_pipe_t,
 * uv_udp_t); `handle` may be NULL. The fd is duplicated at call time. A
 * connected TCP socket or pipe sent without HERD_SEND_KEEP_OPEN is closed by
 * herd (uv_close(handle, handle_close_cb)) once the peer acknowledged it, as
 * Node does; servers stay open. cb (may be NULL) runs once the message is
 * written and, for a handle, acknowledged. Returns as herd_ipc_send(), plus
 * HERD_EBADHANDLE for an unsupported handle. */
int herd_ipc_send_ex(herd_ipc_t* ipc, const char* json, size_t len,
                     uv_handle_t* handle, unsigned flags,
                     uv_close_cb handle_close_cb, herd_ipc_send_cb cb,
                     void* arg);
/* Sends a message with a raw fd (duplicated at call time) announced as
 * `type` ("net.Native", "net.Socket", ...). */
int herd_ipc_send_fd(herd_ipc_t* ipc, const char* json, size_t len, int fd,
                     const char* type, herd_ipc_send_cb cb, void* arg);

/* Bytes waiting to be written. */
size_t herd_ipc_queued_bytes(const herd_ipc_t* ipc);

/* Closes the channel once queued messages are written; disconnect_cb follows
 * from the loop. Safe to call more than once. */
void herd_ipc_disconnect(herd_ipc_t* ipc);
void herd_ipc_ref(herd_ipc_t* ipc);
void herd_ipc_unref(herd_ipc_t* ipc);

/* fork(): spawn `program` with an IPC channel as fd 3. */
typedef struct herd_fork_options_s {
  herd_spawn_options_t spawn; /* stdio: 0 entries -> [inherit x3, ipc],
                                 or [pipe x3, ipc] when `silent` */
  int silent;
  const char* exec_path; /* e.g. "node": runs exec_path exec_argv program
                            args; NULL runs `program` itself */
  const char* const* exec_argv;
} herd_fork_options_t;

int herd_fork(uv_loop_t* loop, herd_child_t* child, const char* program,
              const char* const* args, const herd_fork_options_t* options);

/* JSON helpers for reading messages without a JSON library. They look at
 * the top level of an object only and never allocate. */

/* 0, HERD_EBADJSON or HERD_EBADUTF8. */
int herd_json_validate(const char* json, size_t len);
/* Finds member `key` of the top-level object: *value points at its raw JSON
 * text. Returns 0, UV_ENOENT, or HERD_EBADJSON. */
int herd_json_get(const char* json, size_t len, const char* key,
                  const char** value, size_t* value_len);
/* Decodes string member `key` into out (NUL-terminated). Returns its length,
 * UV_ENOENT, UV_EINVAL (not a string), UV_ENOBUFS (cap too small). */
int herd_json_get_string(const char* json, size_t len, const char* key,
                         char* out, size_t cap);
/* Reads integer member `key`. Returns 0, UV_ENOENT, UV_EINVAL. */
int herd_json_get_int(const char* json, size_t len, const char* key,
                      int64_t* out);
/* Writes `s` as a JSON string literal (with quotes) into out; returns the
 * length it needs (like snprintf), writing at most cap bytes. */
size_t herd_json_quote(char* out, size_t cap, const char* s, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* HERD_IPC_H */
