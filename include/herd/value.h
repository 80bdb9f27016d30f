/* JavaScript values and Node's `advanced` serialization (the V8
 * ValueSerializer wire format, with Node's own encoding of Buffers and typed
 * arrays). Included by <herd.h>; do not include directly. docs/serialization.md
 * is the reference; the comments here are the contract. The IPC channel
 * sends and delivers these values (herd_ipc_send_value(), the value
 * callback: ipc.h).
 *
 * Values live in a heap (herd_value_heap_t) that the caller allocates. Every
 * value made in a heap, by a constructor or by herd_value_deserialize(),
 * belongs to it and is freed with it by herd_value_heap_free(); there is no
 * way, and no need, to free one value. A container (object, array, Map, Set,
 * boxed primitive, error) holds pointers to its members, so one value may be
 * a member of many containers, or of itself: that is how object identity and
 * cycles are expressed, and herd_value_serialize() writes them as V8 object
 * references, as Node does. Members must belong to the container's heap (or
 * be one of the shared constants: undefined, null, true, false).
 *
 * Strings are WTF-8 everywhere in this API: UTF-8, except that a lone
 * surrogate (which a JavaScript string may hold) is encoded as its own
 * 3-byte sequence (ED A0..BF xx). A string without lone surrogates is plain
 * UTF-8. Strings are converted exactly to and from V8's Latin-1 and UTF-16
 * strings.
 *
 * A heap is not thread-safe. Reading functions never change a value. Given
 * a value of another type, an accessor returns 0 or NULL, never crashes. */
#ifndef HERD_VALUE_H
#define HERD_VALUE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  HERD_VALUE_UNDEFINED = 0,
  HERD_VALUE_NULL,
  HERD_VALUE_BOOLEAN,
  HERD_VALUE_NUMBER, /* a double: integers, NaN, +-Infinity and -0 too */
  HERD_VALUE_BIGINT,
  HERD_VALUE_STRING,
  HERD_VALUE_OBJECT, /* a plain object: its own enumerable string keys */
  HERD_VALUE_ARRAY,
  HERD_VALUE_DATE,
  HERD_VALUE_REGEXP,
  HERD_VALUE_MAP,
  HERD_VALUE_SET,
  HERD_VALUE_ARRAY_BUFFER,
  HERD_VALUE_VIEW,  /* a typed array, a Buffer or a DataView */
  HERD_VALUE_BOXED, /* new Number(1), new String('s'), Object(true), ... */
  HERD_VALUE_ERROR  /* Error and its standard subclasses */
} herd_value_type_t;

/* The kind of a HERD_VALUE_VIEW. The numbers are the indexes Node writes for
 * them (arrayBufferViewTypes in Node's lib/v8.js); HERD_VIEW_FLOAT16 is
 * newer than Node 20, which cannot read it. */
typedef enum {
  HERD_VIEW_INT8 = 0,
  HERD_VIEW_UINT8 = 1,
  HERD_VIEW_UINT8_CLAMPED = 2,
  HERD_VIEW_INT16 = 3,
  HERD_VIEW_UINT16 = 4,
  HERD_VIEW_INT32 = 5,
  HERD_VIEW_UINT32 = 6,
  HERD_VIEW_FLOAT32 = 7,
  HERD_VIEW_FLOAT64 = 8,
  HERD_VIEW_DATA_VIEW = 9,
  HERD_VIEW_BUFFER = 10, /* Node's Buffer (a Uint8Array subclass) */
  HERD_VIEW_BIGINT64 = 11,
  HERD_VIEW_BIGUINT64 = 12,
  HERD_VIEW_FLOAT16 = 13
} herd_view_kind_t;

/* The constructor of a HERD_VALUE_ERROR. V8 keeps only these: an error
 * whose `name` is anything else arrives as a plain Error. */
typedef enum {
  HERD_JS_ERROR = 0,
  HERD_JS_EVAL_ERROR,
  HERD_JS_RANGE_ERROR,
  HERD_JS_REFERENCE_ERROR,
  HERD_JS_SYNTAX_ERROR,
  HERD_JS_TYPE_ERROR,
  HERD_JS_URI_ERROR
} herd_js_error_kind_t;

typedef struct herd_value_s herd_value_t;

/* A set of values that live and die together. Caller-allocated; `data` is
 * the caller's, the other fields are herd's. */
typedef struct herd_value_heap_s {
  void* data;
  herd_value_t* newest_; /* every value of the heap, newest first */
  size_t bytes_;         /* memory the values take */
  size_t limit_;         /* while deserializing: the most `bytes_` may be */
  int error_;            /* why the last constructor returned NULL */
} herd_value_heap_t;

/* Makes `heap` empty. Allocates nothing and cannot fail. */
void herd_value_heap_init(herd_value_heap_t* heap);
/* Frees every value of the heap; the heap is empty again and may be reused.
 * Every herd_value_t* of the heap is invalid afterwards. */
void herd_value_heap_free(herd_value_heap_t* heap);
/* The memory the heap's values take, in bytes (herd's own bookkeeping
 * included). */
size_t herd_value_heap_size(const herd_value_heap_t* heap);
/* Why the last constructor on this heap returned NULL: UV_ENOMEM,
 * HERD_EBADUTF8 (a string that is not WTF-8) or UV_EINVAL (an argument out
 * of its range); 0 when none failed. */
int herd_value_heap_error(const herd_value_heap_t* heap);

/* Constructors. The four constants are shared by every heap, allocate
 * nothing and never fail. The others return a new value of `heap`, or NULL
 * with the reason in herd_value_heap_error(); every function below that
 * takes a member value accepts such a NULL and then fails with that reason,
 * so a nested value can be built in one expression and checked once. */
herd_value_t* herd_value_undefined(void);
herd_value_t* herd_value_null(void);
herd_value_t* herd_value_boolean(int b);
herd_value_t* herd_value_new_number(herd_value_heap_t* heap, double d);
/* A BigInt from its sign and magnitude, `len` bytes, least significant
 * first (V8's own digit order; high zero bytes are allowed and dropped).
 * The magnitude is copied. 0n is len 0 (negative is then ignored). */
herd_value_t* herd_value_new_bigint(herd_value_heap_t* heap, int negative,
                                    const uint8_t* magnitude, size_t len);
herd_value_t* herd_value_new_bigint_int64(herd_value_heap_t* heap, int64_t i);
/* A string from `len` bytes of WTF-8 (copied); HERD_EBADUTF8 when they are
 * not WTF-8 (this includes a surrogate pair spelled as two 3-byte
 * sequences, which must be one 4-byte sequence). */
herd_value_t* herd_value_new_string(herd_value_heap_t* heap, const char* s,
                                    size_t len);
/* A string from `len` UTF-16 code units (any, lone surrogates included). */
herd_value_t* herd_value_new_string_utf16(herd_value_heap_t* heap,
                                          const uint16_t* units, size_t len);
herd_value_t* herd_value_new_object(herd_value_heap_t* heap);
/* An empty array (length 0). */
herd_value_t* herd_value_new_array(herd_value_heap_t* heap);
/* A Date: milliseconds since the epoch (NaN: an Invalid Date). */
herd_value_t* herd_value_new_date(herd_value_heap_t* heap, double ms);
/* A RegExp: `source` (WTF-8, copied) and `flags`, a string of distinct
 * letters from "dgimsuvy" (NULL: none). herd does not check the pattern:
 * Node fails to read a message whose pattern is not valid JavaScript.
 * UV_EINVAL for an unknown or repeated flag, or both 'u' and 'v'. */
herd_value_t* herd_value_new_regexp(herd_value_heap_t* heap, const char* source,
                                    size_t len, const char* flags);
herd_value_t* herd_value_new_map(herd_value_heap_t* heap);
herd_value_t* herd_value_new_set(herd_value_heap_t* heap);
/* An ArrayBuffer of `len` bytes copied from `bytes` (NULL: zeros).
 * UV_EINVAL when len exceeds 2^32 - 1 (V8 writes lengths as uint32). */
herd_value_t* herd_value_new_array_buffer(herd_value_heap_t* heap,
                                          const void* bytes, size_t len);
/* A resizable ArrayBuffer (new ArrayBuffer(len, {maxByteLength})). UV_EINVAL
 * when len > max_len or max_len exceeds 2^32 - 1. */
herd_value_t* herd_value_new_array_buffer_resizable(herd_value_heap_t* heap,
                                                    const void* bytes,
                                                    size_t len, size_t max_len);
/* A typed array, Buffer or DataView holding `len` bytes copied from `bytes`
 * (NULL: zeros), in the host's byte order as V8 keeps them. UV_EINVAL for
 * an unknown kind, a len that is not a multiple of the element size, or a
 * len over 2^32 - 1. */
herd_value_t* herd_value_new_view(herd_value_heap_t* heap,
                                  herd_view_kind_t kind, const void* bytes,
                                  size_t len);
/* Node's Buffer: herd_value_new_view(heap, HERD_VIEW_BUFFER, ...). */
herd_value_t* herd_value_new_buffer(herd_value_heap_t* heap, const void* bytes,
                                    size_t len);
/* A primitive wrapper object around `primitive`, a boolean, number, BigInt
 * or string (UV_EINVAL otherwise). */
herd_value_t* herd_value_new_boxed(herd_value_heap_t* heap,
                                   herd_value_t* primitive);
/* An error of `kind` with an optional `message` and `stack` (strings, or
 * NULL for none: a NULL here is "absent", not a failed constructor). Add a
 * cause with herd_value_error_set_cause(). UV_EINVAL when message or stack
 * is not a string. */
herd_value_t* herd_value_new_error(herd_value_heap_t* heap,
                                   herd_js_error_kind_t kind,
                                   herd_value_t* message, herd_value_t* stack);

/* Copies `value` and everything it reaches into `heap` (another heap, or
 * the same), keeping identity: what is shared or cyclic in the source is
 * shared or cyclic in the copy, which no longer depends on the source's
 * heap. The shared constants are not copied. Errors: UV_ENOMEM,
 * HERD_EVALUELIMIT (nested deeper than HERD_VALUE_DEFAULT_MAX_DEPTH),
 * UV_EINVAL (NULL arguments); on error nothing is added to the heap. */
int herd_value_copy(herd_value_heap_t* heap, const herd_value_t* value,
                    herd_value_t** out);

/* Building containers. Each returns 0 or an error: UV_ENOMEM (the container
 * is unchanged), UV_EINVAL (wrong container type, or a member from another
 * heap), or the reason a NULL member came from a failed constructor. */

/* Sets property `key` (NUL-terminated WTF-8) of an object or an array: a key
 * the object already has keeps its place and gets the new value, a new key
 * goes last. On an array, a key that is an array index ("0" ..
 * "4294967294", no leading zeros) sets that element, as in JavaScript, and
 * "length" is UV_EINVAL. JavaScript lists integer keys first in ascending
 * order; herd keeps the order they were set in. HERD_EBADUTF8 for a key
 * that is not WTF-8. */
int herd_value_object_set(herd_value_t* object, const char* key,
                          herd_value_t* value);
/* The same with a key of `key_len` bytes (it may hold NUL bytes). */
int herd_value_object_setn(herd_value_t* object, const char* key,
                           size_t key_len, herd_value_t* value);
/* Appends an element: index `length`, and the length grows by one. */
int herd_value_array_push(herd_value_t* array, herd_value_t* value);
/* Sets element `index` (at most 4294967294); the length grows to index + 1
 * when it is shorter, leaving holes. Setting elements out of order costs a
 * memmove per call. */
int herd_value_array_set(herd_value_t* array, uint32_t index,
                         herd_value_t* value);
/* Sets the length: elements at or past it are removed, a longer length
 * adds holes (new Array(n) is an empty array with length n). */
int herd_value_array_set_length(herd_value_t* array, uint32_t length);
/* Appends an entry. herd does not look for an equal key already there: a
 * Node peer keeps the last value of equal keys, at the first one's place. */
int herd_value_map_set(herd_value_t* map, herd_value_t* key,
                       herd_value_t* value);
/* Appends a member (no check for an equal one, as herd_value_map_set()). */
int herd_value_set_add(herd_value_t* set, herd_value_t* value);
/* Sets the error's cause (any value, the error itself included; Node 20
 * cannot read an error that is its own cause). */
int herd_value_error_set_cause(herd_value_t* error, herd_value_t* cause);

/* Reading. */
herd_value_type_t herd_value_type(const herd_value_t* value);
/* "undefined", "null", "boolean", "number", "bigint", "string", "object",
 * "array", "date", "regexp", "map", "set", "arraybuffer", "view", "boxed",
 * "error"; "unknown" for anything else. */
const char* herd_value_type_name(herd_value_type_t type);
/* The value of a boolean (0 or 1). */
int herd_value_get_boolean(const herd_value_t* value);
/* The value of a number, or the time of a Date; 0 for other types. */
double herd_value_get_number(const herd_value_t* value);
/* A string's WTF-8 bytes, NUL-terminated (the string itself may contain
 * NUL); *len gets the length without the terminator (len may be NULL).
 * Valid as long as the heap. NULL for other types. */
const char* herd_value_get_string(const herd_value_t* value, size_t* len);
/* A BigInt's magnitude, least significant byte first, with no high zero
 * bytes (*len is 0 for 0n), and its sign in *negative (may be NULL). */
const uint8_t* herd_value_get_bigint(const herd_value_t* value, int* negative,
                                     size_t* len);
/* A BigInt as an int64_t: 0, or UV_ERANGE when it does not fit, UV_EINVAL
 * when `value` is not a BigInt. */
int herd_value_get_bigint_int64(const herd_value_t* value, int64_t* out);

/* Properties of an object, or the named (non-index) properties of an
 * array: how many, and the i-th key (with *key_len, may be NULL) and value,
 * in order. NULL when i is out of range. */
size_t herd_value_object_count(const herd_value_t* object);
const char* herd_value_object_key(const herd_value_t* object, size_t i,
                                  size_t* key_len);
herd_value_t* herd_value_object_value(const herd_value_t* object, size_t i);
/* The value of property `key` (NUL-terminated), or NULL when there is none.
 * On an array an index key reads the element. */
herd_value_t* herd_value_object_get(const herd_value_t* object,
                                    const char* key);
herd_value_t* herd_value_object_getn(const herd_value_t* object,
                                     const char* key, size_t key_len);

/* An array's length (holes included). */
uint32_t herd_value_array_length(const herd_value_t* array);
/* Element `index`, or NULL for a hole or an index past the length. */
herd_value_t* herd_value_array_get(const herd_value_t* array, uint32_t index);
/* The elements that exist (holes skipped), in index order: how many, and
 * the i-th with its index in *index (may be NULL). For a sparse array this
 * visits only what is there. */
size_t herd_value_array_count(const herd_value_t* array);
herd_value_t* herd_value_array_element(const herd_value_t* array, size_t i,
                                       uint32_t* index);

/* Entries of a Map and members of a Set, in insertion order. */
size_t herd_value_map_count(const herd_value_t* map);
herd_value_t* herd_value_map_key(const herd_value_t* map, size_t i);
herd_value_t* herd_value_map_value(const herd_value_t* map, size_t i);
size_t herd_value_set_count(const herd_value_t* set);
herd_value_t* herd_value_set_get(const herd_value_t* set, size_t i);

/* A RegExp's source (WTF-8, NUL-terminated, *len may be NULL) and its
 * flags in JavaScript's order ("dgimsuvy" order, like RegExp's `flags`). */
const char* herd_value_regexp_source(const herd_value_t* regexp, size_t* len);
const char* herd_value_regexp_flags(const herd_value_t* regexp);

/* The bytes of an ArrayBuffer or a view (host byte order, aligned for any
 * element type), writable in place; *len (may be NULL) gets their number.
 * NULL for other types (and possibly for 0 bytes). */
uint8_t* herd_value_bytes(const herd_value_t* value, size_t* len);
/* The kind of a view; -1 for other types. */
int herd_value_view_kind(const herd_value_t* view);
/* The size of one element of a view kind in bytes (1 for Buffer and
 * DataView), 0 for an unknown kind. */
size_t herd_view_element_size(herd_view_kind_t kind);
/* Whether an ArrayBuffer is resizable, and then its maxByteLength. */
int herd_value_array_buffer_resizable(const herd_value_t* buffer,
                                      size_t* max_len);

/* The primitive inside a boxed value. */
herd_value_t* herd_value_boxed_get(const herd_value_t* boxed);

/* An error's kind, and its message, stack and cause, NULL when absent. */
herd_js_error_kind_t herd_value_error_kind(const herd_value_t* error);
herd_value_t* herd_value_error_message(const herd_value_t* error);
herd_value_t* herd_value_error_stack(const herd_value_t* error);
herd_value_t* herd_value_error_cause(const herd_value_t* error);

/* Serialization.
 *
 * Bytes are V8's ValueSerializer format version 15 (the header 0xFF 0x0F,
 * then one value), as Node 20 and later write it. herd writes what V8
 * writes for the same JavaScript value, byte for byte, with two choices of
 * its own where V8's choice depends on its internal representation: a
 * string whose characters all fit in Latin-1 is written one-byte, and a
 * number is written as an Int32 when it is an integer in int32 range other
 * than -0 (a double otherwise). Reading accepts versions 13 to 15. */
typedef enum {
  /* What process.send() writes in `advanced` mode (Node's
   * ChildProcessSerializer): typed arrays, Buffers and DataViews as host
   * objects preceded by the tag 0. */
  HERD_VALUE_FORMAT_IPC = 0,
  /* What v8.serialize() writes (Node's DefaultSerializer): the same without
   * the tag. */
  HERD_VALUE_FORMAT_V8 = 1
} herd_value_format_t;

#define HERD_VALUE_DEFAULT_MAX_DEPTH 4096
#define HERD_VALUE_DEFAULT_MAX_BYTES (256u * 1024 * 1024)

/* All-zero means the IPC format and the default limits. */
typedef struct herd_value_options_s {
  herd_value_format_t format;
  /* Nesting limit for both directions: a value inside a container is one
   * level deeper. 0: HERD_VALUE_DEFAULT_MAX_DEPTH. */
  unsigned max_depth;
  /* Deserializing: the most memory the new values may take (bytes, as
   * herd_value_heap_size() counts them). 0: HERD_VALUE_DEFAULT_MAX_BYTES. */
  size_t max_bytes;
} herd_value_options_t;

/* Serializes `value` (with everything it reaches) into out->base, a buffer
 * of out->len bytes from herd's allocator that the caller frees with the
 * allocator's free (free() unless herd_replace_allocator() was used).
 * Every container reached twice is written once and then as a reference,
 * so cycles are fine. options may be NULL. Errors: UV_ENOMEM,
 * HERD_EVALUELIMIT (deeper than max_depth, longer than 2^32 - 1 bytes,
 * Node's frame limit, or a BigInt over V8's 2^30 bits), UV_EINVAL (value
 * NULL, or an unknown format). On error out is untouched. */
int herd_value_serialize(const herd_value_t* value,
                         const herd_value_options_t* options, uv_buf_t* out);

/* Reads one value from `len` bytes into `heap` (*out). Bytes after the
 * value are ignored, as Node does. Never reads outside the bytes, whatever
 * they hold. On error nothing is added to the heap and *out is untouched.
 * Errors:
 * - HERD_EBADVALUE: the bytes are not a valid serialized value (truncated,
 *   an unknown tag, a count that does not match, a reference to an object
 *   not read yet, a duplicate property, ...): what Node's deserializer
 *   rejects, and a few things it accepts that no V8 writes (varints longer
 *   than their type allows, a typed array whose length is not a multiple
 *   of its element size).
 * - HERD_EVALUETYPE: a valid value herd cannot represent: a
 *   SharedArrayBuffer, a WebAssembly module or memory, a transferred
 *   ArrayBuffer, a shared object, a host object other than Node's typed
 *   arrays, or a format version outside 13..15.
 * - HERD_EVALUELIMIT: nested deeper than max_depth, or needing more than
 *   max_bytes of memory.
 * - UV_ENOMEM; UV_EINVAL for NULL arguments. */
int herd_value_deserialize(herd_value_heap_t* heap, const void* bytes,
                           size_t len, const herd_value_options_t* options,
                           herd_value_t** out);

/* JSON. A message crosses between Node's `json` and `advanced`
 * serializations the way Node carries it: these are JSON.parse() and
 * JSON.stringify() (ECMA-262 25.5) on herd values. */

/* JSON.parse(): one JSON text (RFC 8259, UTF-8, whitespace around it
 * allowed) into `heap`. Numbers become doubles; escapes are decoded exactly
 * (\uD83D\uDE00 is one character; a lone surrogate escape stays a lone
 * surrogate, in WTF-8); a key given twice keeps its first place and its
 * last value. options may be NULL; only max_depth is used. On error nothing
 * is added to the heap (the text is not limited by max_bytes: the caller
 * has it in memory already): HERD_EBADJSON, HERD_EBADUTF8, HERD_EVALUELIMIT
 * (nesting), UV_ENOMEM, UV_EINVAL (NULL arguments). */
int herd_value_from_json(herd_value_heap_t* heap, const char* json, size_t len,
                         const herd_value_options_t* options,
                         herd_value_t** out);

/* JSON.stringify() without whitespace, into out->base (NUL-terminated,
 * out->len without the NUL; free it as herd_value_serialize()'s buffer).
 * As in JavaScript: undefined members of objects are left out and undefined
 * elements (and holes) are null; NaN and +-Infinity are null; -0 is 0; a
 * Date is its toISOString() (null when invalid); a Buffer is
 * {"type":"Buffer","data":[...]} and another typed array an object of its
 * elements by index; Map, Set, RegExp, ArrayBuffer, DataView and errors are
 * {} (they have no enumerable own properties); a boxed primitive is its
 * primitive; a value met twice is written twice; array-index keys come
 * first in ascending order. Errors where JavaScript throws a TypeError:
 * UV_EINVAL for a BigInt (or a BigInt typed array with elements), a cycle,
 * or undefined at the top (JSON.stringify returns undefined);
 * HERD_EVALUELIMIT for nesting past max_depth or text longer than
 * options->max_bytes or V8's longest string, 2^29 - 24 (a RangeError in
 * JavaScript; a value that repeats a shared member at every level doubles
 * at every level, as in JavaScript); UV_ENOMEM. */
int herd_value_to_json(const herd_value_t* value,
                       const herd_value_options_t* options, uv_buf_t* out);

#ifdef __cplusplus
}
#endif
#endif /* HERD_VALUE_H */
