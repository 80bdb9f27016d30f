/* herd: Node.js's multi-process model (child_process, the IPC channel and
 * cluster) for C programs, on libuv, wire-compatible with Node.js.
 *
 * Conventions, as in libuv:
 * - The caller allocates every handle and request; herd never frees memory it
 *   did not allocate. A handle's memory may be reused once its close callback
 *   has run.
 * - Functions return 0 or a negative error code: a libuv `UV_E*` value
 *   (passed through unchanged) or one of herd's own `HERD_E*` codes below.
 *   herd_strerror() and herd_err_name() describe both kinds.
 * - A call that returns an error never calls its callback.
 * - Options structs are zero-initialisable: all-zero means "Node's defaults".
 */
#ifndef HERD_H
#define HERD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HERD_VERSION_MAJOR  0
#define HERD_VERSION_MINOR  1
#define HERD_VERSION_PATCH  0
#define HERD_VERSION_STRING "0.1.0"

/* herd's own error codes, in a block no errno or libuv code uses.
 * HERD_EADVANCED is no longer returned (herd speaks Node's `advanced`
 * serialization since 0.1); it stays defined so that code naming it builds. */
#define HERD_ERRNO_MAP(XX)                                                   \
  XX(EMAXBUFFER, -30001, "maxBuffer length exceeded")                        \
  XX(ECMDFAILED, -30002, "command failed")                                   \
  XX(EBADJSON, -30003, "invalid JSON in IPC message")                        \
  XX(EBADUTF8, -30004, "invalid UTF-8 in IPC message")                       \
  XX(ELINETOOLONG, -30005, "IPC message exceeds the line limit")             \
  XX(EADVANCED, -30006, "advanced serialization is not supported")           \
  XX(ENOCHANNEL, -30007, "no IPC channel (NODE_CHANNEL_FD is not set)")      \
  XX(ECHANNELCLOSED, -30008, "IPC channel is closed")                        \
  XX(EHANDLENACK, -30009, "peer refused the handle (NACK) too many times")   \
  XX(EBADHANDLE, -30010, "handle type cannot be sent over IPC")              \
  XX(EBADPROTO, -30011, "peer violated the IPC or cluster protocol")         \
  XX(ENOTWORKER, -30012, "not a cluster worker (NODE_UNIQUE_ID is not set)") \
  XX(EWORKERDIED, -30013, "worker died")                                     \
  XX(ENOJSON, -30014, "IPC message has no JSON form")                        \
  XX(EBADVALUE, -30101, "malformed serialized value")                        \
  XX(EVALUETYPE, -30102, "serialized value of a type herd cannot represent") \
  XX(EVALUELIMIT, -30103, "value exceeds a depth or size limit")             \
  XX(ECRASHLOOP, -30201, "workers crashed too often")                        \
  XX(ENEVERREADY, -30202, "no worker became ready")

typedef enum {
#define XX(name, value, msg) HERD_##name = (value),
  HERD_ERRNO_MAP(XX)
#undef XX
} herd_errno_t;

/* A human-readable message for `err`, which is a herd code, a libuv code or a
 * negated errno. Never NULL; unknown codes give "unknown error". */
const char* herd_strerror(int err);

/* The symbolic name of `err` ("HERD_EMAXBUFFER", "ENOENT", ...). Never NULL. */
const char* herd_err_name(int err);

/* The allocator herd uses for all its memory (default: malloc, realloc,
 * calloc and free), as libuv's uv_replace_allocator(). Call it before any
 * other herd function, or not at all: memory allocated with one allocator
 * is freed with the same one, including result buffers herd hands over
 * (herd_exec_result_t's out/err taken by the callback are freed with
 * `free_func`). It does not change libuv's allocator. Every herd call that
 * fails to allocate returns UV_ENOMEM (or reports it through its callback,
 * where the header says so) and leaves no memory, fd or callback behind.
 * Returns 0, or UV_EINVAL when a function is NULL. */
typedef void* (*herd_malloc_func)(size_t size);
typedef void* (*herd_realloc_func)(void* ptr, size_t size);
typedef void* (*herd_calloc_func)(size_t count, size_t size);
typedef void (*herd_free_func)(void* ptr);
int herd_replace_allocator(herd_malloc_func malloc_func,
                           herd_realloc_func realloc_func,
                           herd_calloc_func calloc_func,
                           herd_free_func free_func);

#ifdef __cplusplus
}
#endif

#include "herd/process.h"
#include "herd/value.h"
#include "herd/ipc.h"
#include "herd/cluster.h"
#include "herd/http.h"
#include "herd/listen.h"
#include "herd/systemd.h"
#include "herd/log.h"
#include "herd/supervisor.h"

#endif /* HERD_H */
