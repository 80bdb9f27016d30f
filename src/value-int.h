/* Private declarations of the value module, shared by value.c (the model),
 * value_write.c (the serializer) and value_read.c (the deserializer). Not
 * installed. */
#ifndef HERD_VALUE_INT_H
#define HERD_VALUE_INT_H

#include "internal.h"

#include <stdint.h>

/* V8's ValueSerializer format version herd writes, and the oldest it reads
 * (13 is the first with an explicit host-object tag). */
#define HERD__V8_VERSION     15
#define HERD__V8_MIN_VERSION 13

/* The longest BigInt V8 makes: BigInt::kMaxLengthBits (2^30) bits. */
#define HERD__BIGINT_MAX_BYTES (1u << 27)

/* Array indexes are 0 .. 2^32 - 2, as in JavaScript. */
#define HERD__MAX_ARRAY_INDEX 4294967294u

/* A property of an object (or a named property of an array). */
typedef struct {
  char* key; /* WTF-8, NUL-terminated, herd__malloc'd */
  size_t key_len;
  herd_value_t* value;
} herd__prop_t;

/* An element of an array; an array keeps them sorted by index. */
typedef struct {
  uint32_t index;
  herd_value_t* value;
} herd__elem_t;

/* One value. Only the union member of its type is allocated: a number takes
 * offsetof(herd_value_t, u) + 8 bytes. Strings, BigInt digits, buffers and
 * RegExp sources sit right after the node, in the same allocation. */
struct herd_value_s {
  herd_value_t* next;      /* the heap's list, newest first */
  herd_value_heap_t* heap; /* NULL for the shared constants */
  size_t size;             /* bytes of this node's own allocation */
  uint8_t type;            /* herd_value_type_t */
  uint8_t kind;            /* view kind, error kind, boolean value */
  uint8_t flag;            /* ArrayBuffer: resizable */
  union {
    double number; /* number, Date */
    struct {
      char* s;
      size_t len;
    } str; /* string, RegExp source */
    struct {
      uint8_t* mag;
      size_t len;
      int negative;
    } bigint;
    struct {
      uint8_t* bytes;
      size_t len;
      size_t max_len;
    } buf; /* ArrayBuffer, view */
    struct {
      herd__prop_t* props;
      size_t nprops;
      size_t cap_props;
      uint32_t* index; /* hash index of props: prop number + 1, 0 = free */
      size_t index_cap;
      herd__elem_t* elems; /* arrays only */
      size_t nelems;
      size_t cap_elems;
      uint32_t length; /* arrays only */
    } obj;
    struct {
      herd_value_t** items; /* a Map's keys and values alternate */
      size_t n;
      size_t cap;
    } list;
    struct {
      char* s;
      size_t len;
      uint32_t flags; /* V8's JSRegExp::Flags bits */
      char letters[12];
    } re;
    herd_value_t* boxed;
    struct {
      herd_value_t* message;
      herd_value_t* stack;
      herd_value_t* cause; /* NULL: no cause */
    } err;
  } u;
};

/* V8's JSRegExp::Flags bits, and the letter of each. */
#define HERD__RE_FLAG_COUNT 9
extern const char herd__re_letters[HERD__RE_FLAG_COUNT];
/* Flags V8 accepts from a peer: every bit but kLinear (64), which needs a
 * V8 command-line flag. */
#define HERD__RE_VALID_FLAGS  0x1bfu
#define HERD__RE_UNICODE      16u
#define HERD__RE_UNICODE_SETS 256u

/* Allocates a node of `type` with `payload` bytes of its union member and
 * `extra` inline bytes after it (returned in *extra_out), counts it in the
 * heap and links it in. NULL with heap->error_ set (UV_ENOMEM, or
 * HERD_EVALUELIMIT past heap->limit_). */
herd_value_t* herd__value_alloc(herd_value_heap_t* heap, int type,
                                size_t payload, size_t extra, void** extra_out);
/* Memory counted against the heap (vectors, keys); same failures. */
void* herd__value_mem_realloc(herd_value_heap_t* heap, void* p, size_t old_size,
                              size_t new_size);
void herd__value_mem_free(herd_value_heap_t* heap, void* p, size_t size);
/* Frees the values made since `mark` (a former heap->newest_). */
void herd__value_rollback(herd_value_heap_t* heap, herd_value_t* mark);

/* Where the serializers put strings. */
herd_value_t* herd__value_string_raw(herd_value_heap_t* heap, size_t len,
                                     char** bytes);
/* A RegExp with flags as V8 wrote them (checked by the caller). */
herd_value_t* herd__value_regexp_raw(herd_value_heap_t* heap, const char* s,
                                     size_t len, uint32_t flags);
/* Adds a property whose key is not yet in the object (the deserializer
 * checks that first with herd__value_prop_find()); the key is copied. */
int herd__value_prop_append(herd_value_t* object, const char* key,
                            size_t key_len, herd_value_t* value);
/* The number of the property with `key`, or -1. */
ptrdiff_t herd__value_prop_find(const herd_value_t* object, const char* key,
                                size_t key_len);
/* Appends an element without keeping the order (the deserializer sorts
 * once with herd__value_elems_sort() at the end of the array). */
int herd__value_elem_append(herd_value_t* array, uint32_t index,
                            herd_value_t* value);
/* Sorts an array's elements by index: 0, or HERD_EBADVALUE when an index
 * appears twice. */
int herd__value_elems_sort(herd_value_t* array);
int herd__value_list_append(herd_value_t* list, herd_value_t* value);

/* Whether `key` is an array index ("0" .. "4294967294", no leading zero),
 * and which. */
int herd__value_array_index(const char* key, size_t len, uint32_t* index);
/* Writes JavaScript's Number::toString(d) into out (at least 32 bytes) and
 * returns its length. */
size_t herd__js_number_to_string(double d, char* out);

/* WTF-8 (see value.h). herd__wtf8_check() validates and tells whether every
 * code point fits in Latin-1 and how many UTF-16 units the string has. */
int herd__wtf8_check(const char* s, size_t len, int* latin1, size_t* units);
/* Converts valid WTF-8 to Latin-1 (every code point < 256) or to UTF-16
 * (host order); `out` has room for the count herd__wtf8_check() gave. */
void herd__wtf8_to_latin1(const char* s, size_t len, uint8_t* out);
void herd__wtf8_to_utf16(const char* s, size_t len, uint16_t* out);
/* Sizes and conversions the other way; utf16 is read bytewise (it need not
 * be aligned), two bytes per unit in host order. */
size_t herd__latin1_wtf8_len(const uint8_t* s, size_t len);
void herd__latin1_to_wtf8(const uint8_t* s, size_t len, char* out);
size_t herd__utf16_wtf8_len(const uint8_t* s, size_t units);
void herd__utf16_to_wtf8(const uint8_t* s, size_t units, char* out);
/* UTF-8 as V8 reads its legacy kUtf8String: invalid sequences become
 * U+FFFD (one per maximal subpart, as the WHATWG decoder). */
size_t herd__utf8_lossy_len(const uint8_t* s, size_t len);
void herd__utf8_lossy_to_wtf8(const uint8_t* s, size_t len, char* out);

/* Node's isInternal() (lib/internal/child_process.js) on a value: an
 * object whose "cmd" is a string longer than 5 that starts with "NODE_".
 * Gives the cmd (WTF-8, NUL-terminated) when it is. */
int herd__value_internal_cmd(const herd_value_t* v, const char** cmd,
                             size_t* len);

/* A map from pointers to pointers (open addressing), for object identity
 * in the serializer and in herd__value_equal(). Not counted in any heap. */
typedef struct {
  const void** keys;
  void** vals;
  size_t cap; /* 0 or a power of two */
  size_t n;
} herd__ptrmap_t;

void herd__ptrmap_init(herd__ptrmap_t* map);
void herd__ptrmap_free(herd__ptrmap_t* map);
/* The value stored for `key`, or NULL. */
void* herd__ptrmap_get(const herd__ptrmap_t* map, const void* key);
/* Stores `val` (not NULL) for a key not in the map: 0 or UV_ENOMEM. */
int herd__ptrmap_put(herd__ptrmap_t* map, const void* key, void* val);

/* Whether two values are equal in the sense of Node's
 * util.isDeepStrictEqual() and also share the same shape of identity (a
 * value reached twice in `a` is reached twice in `b` at the same places),
 * with NaN equal to NaN and -0 distinct from 0. For tests and the fuzz
 * target. Returns 1, 0, or UV_ENOMEM. */
int herd__value_equal(const herd_value_t* a, const herd_value_t* b);

/* The serializer with `prefix` bytes reserved (left uninitialised) before
 * the V8 header, for a frame's length. */
int herd__value_write(const herd_value_t* value,
                      const herd_value_options_t* options, size_t prefix,
                      uv_buf_t* out);
/* The serializer appending to a growable buffer from herd's allocator:
 * *buf (of *cap bytes, NULL and 0 for none; at <= *cap unless *buf is
 * NULL) gets the bytes from offset `at` on, and *end the offset past them.
 * *buf and *cap are updated even on error (the buffer may have grown and
 * moved); what lies past `at` is then garbage. Bytes before `at` are kept
 * (uninitialised when *buf was NULL). */
int herd__value_write_buf(const herd_value_t* value,
                          const herd_value_options_t* options, char** buf,
                          size_t* cap, size_t at, size_t* end);

#endif /* HERD_VALUE_INT_H */
