/* herd-jansson: IPC messages as jansson values.
 *
 * A companion library to libherd (its own library, libherd-jansson, and its
 * own pkg-config entry, herd-jansson), for programs that want to send and
 * read whole JSON values (nested objects, arrays, booleans, doubles) rather
 * than the top-level strings and integers that herd's own helpers
 * (herd_json_get_string(), herd_json_get_int()) read. libherd itself does
 * not depend on jansson; link this library only where it is used:
 *
 *   cc app.c $(pkg-config --cflags --libs herd-jansson)
 *
 * What Node puts on the wire and what arrives here: a message is whatever
 * JSON.stringify() made of the value given to process.send() or
 * child.send(); a message sent from here is read on the Node side with
 * JSON.parse(). See docs/json.md for how jansson's values map to
 * JavaScript's (numbers, integers beyond 2^53, strings with lone
 * surrogates) and why jansson.
 *
 * Memory: every function follows jansson's reference counting. The send
 * functions borrow `value` (the caller keeps its reference) except the
 * `_new` ones, which take it over as jansson's json_object_set_new() does.
 * Memory this library allocates for itself (the text of a message larger
 * than 4 KiB) comes from jansson's allocator (json_set_alloc_funcs()), and
 * is freed before the call returns. */
#ifndef HERD_JANSSON_H
#define HERD_JANSSON_H

#include <herd.h>
#include <jansson.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sending. Each function writes `value` as compact JSON text (no spaces,
 * UTF-8 kept as is, object members in insertion order, doubles with 17
 * significant digits so that JSON.parse() gets the same double back, any
 * value allowed at the top level, as process.send() allows) and sends it
 * like its plain counterpart, which copies the text: `value` may be changed
 * or freed as soon as the call returns.
 *
 * Returns what the plain send returns: 0, 1 (queued, but the channel is
 * above its high-water mark: Node's send() === false, wait for the drain
 * callback), HERD_ECHANNELCLOSED, UV_ENOMEM; herd_jansson_cluster_worker_send
 * also HERD_ENOTWORKER. And:
 * - UV_EINVAL: `value` is NULL, or jansson could not encode it (a value
 *   that contains itself, or jansson ran out of memory while encoding).
 * - UV_ENOMEM: the text is over 4 KiB and its buffer could not be
 *   allocated.
 * A string that is not valid UTF-8 cannot be in a jansson value (jansson's
 * constructors refuse it), so HERD_EBADUTF8 does not occur. */

/* herd_ipc_send() of `value`: Node's child.send(value) /
 * process.send(value) on a channel. */
int herd_jansson_ipc_send(herd_ipc_t* ipc, const json_t* value);
/* herd_worker_send() of `value`: Node's worker.send(value) in a primary. */
int herd_jansson_worker_send(herd_worker_t* worker, const json_t* value);
/* herd_cluster_worker_send() of `value`: Node's process.send(value) in a
 * cluster worker. */
int herd_jansson_cluster_worker_send(const json_t* value);

/* The same, taking over the caller's reference to `value` (it is released
 * whatever the result), so that a message can be built and sent in one
 * expression: herd_jansson_ipc_send_new(ipc, json_pack("{s:s}", "cmd",
 * "ping")). A NULL `value` (json_pack() failed) gives UV_EINVAL. */
int herd_jansson_ipc_send_new(herd_ipc_t* ipc, json_t* value);
int herd_jansson_worker_send_new(herd_worker_t* worker, json_t* value);
int herd_jansson_cluster_worker_send_new(json_t* value);

/* Reading. Parses one message (the `json`, `len` a message callback
 * received; any JSON text) into a new jansson value in *out, which the
 * caller releases with json_decref(). It reads what JSON.parse() reads, with
 * these choices:
 * - any value may be at the top level (a message may be a string, a number,
 *   true, false or null);
 * - "\u0000" in a string is kept (read its length with json_string_length());
 * - with duplicate keys the last wins, as in JSON.parse();
 * - integers within int64_t are jansson integers, other numbers reals; a
 *   message with an integer outside int64_t (Node sends 2**64 as
 *   18446744073709552000) is read again with every number as a real (a
 *   double, as JavaScript sees it), so read numbers of such a message with
 *   json_number_value();
 * - differences from JSON.parse() that give HERD_EBADJSON: a string with an
 *   escaped lone surrogate ("\ud800", which JSON.stringify() writes for a
 *   JavaScript string holding one), "\u0000" inside an object key, and
 *   nesting deeper than 2048 (jansson's limits).
 * Errors: HERD_EBADJSON (not one JSON text, or one of the three
 * cases above; herd's message callbacks only ever deliver valid JSON, so from
 * them only the latter), HERD_EBADUTF8 (invalid UTF-8), UV_ENOMEM (jansson ran
 * out of memory: jansson reports that as a syntax error, so a text it
 * refuses is checked again with herd_json_validate()), UV_EINVAL (json or
 * out NULL). When `error` is not NULL it receives jansson's description of
 * the failure (text, line, column, byte position; "out of memory" for
 * UV_ENOMEM). On error *out is NULL. */
int herd_jansson_parse(const char* json, size_t len, json_t** out,
                       json_error_t* error);

/* Buffers. Node turns a Buffer into {"type":"Buffer","data":[b0,b1,...]}
 * when it sends one (Buffer.prototype.toJSON(), which JSON.stringify()
 * calls), at the top level or anywhere inside a message, and a Node
 * receiver gets back a Buffer with Buffer.from(message) (Node's
 * Buffer.from() accepts any object whose type is "Buffer" and whose data is
 * an array). */

/* A new object {"type":"Buffer","data":[...]} holding `len` bytes of
 * `data`, for the caller to send, put into a message (json_object_set_new(),
 * or json_pack()'s "o") or release. NULL when out of memory, or when `data`
 * is NULL and `len` is not 0. */
json_t* herd_jansson_buffer(const void* data, size_t len);

/* Reads the bytes of a Buffer object. `value` must be an object whose
 * "type" is the string "Buffer" and whose "data" is an array of integers
 * 0..255 (other members are ignored, as Buffer.from() ignores them). On
 * success *len is the byte count and, when `out` is not NULL, the bytes are
 * copied into `out` (cap bytes at most). With `out` NULL only the shape is
 * checked, so a caller can size its buffer first.
 * Returns 0; UV_EINVAL (value or len NULL, not that shape, or an element
 * that is not an integer 0..255: a real such as 1.5 or 1.0, a string,
 * -1, 256); UV_ENOBUFS (cap is smaller than *len, which is set; nothing is
 * copied). */
int herd_jansson_buffer_read(const json_t* value, void* out, size_t cap,
                             size_t* len);

#ifdef __cplusplus
}
#endif
#endif /* HERD_JANSSON_H */
