/* The deserializer: V8's ValueSerializer format (v8/src/objects/
 * value-serializer.cc, ValueDeserializer) with Node's host objects for
 * typed arrays (lib/v8.js DefaultDeserializer, and the extra tag of
 * lib/internal/child_process/serialization.js ChildProcessDeserializer).
 *
 * Every read is bounds-checked against `end`; every count the input states
 * is checked against what it holds before anything is allocated for it.
 * Object ids are given out in the order V8 gives them (an object gets its
 * id when its tag is read, before its members), so references and cycles
 * resolve the same way. On any failure the values made so far are freed
 * (herd__value_rollback). */
#include "value-int.h"

#include <math.h>
#include <string.h>

typedef struct {
  herd_value_heap_t* heap;
  const uint8_t* pos;
  const uint8_t* end;
  uint32_t version;
  herd_value_format_t format;
  unsigned depth;
  unsigned max_depth;
  herd_value_t** ids; /* id -> value; NULL while the value is being read */
  size_t nids;
  size_t cap_ids;
  char* scratch; /* a decoded key or RegExp source */
  size_t cap_scratch;
  char number_key[40];
} reader_t;

/* A string's bytes as the input holds them. */
typedef struct {
  uint8_t tag;
  const uint8_t* bytes;
  size_t len; /* bytes */
} raw_string_t;

static int read_value(reader_t* r, herd_value_t** out);

static int oom(reader_t* r) {
  return r->heap->error_ != 0 ? r->heap->error_ : UV_ENOMEM;
}

static size_t left(const reader_t* r) {
  return (size_t)(r->end - r->pos);
}

/* A varint of at most 32 bits. V8 reads longer ones by dropping bits; no
 * V8 writes them, so herd refuses them. */
static int read_varint(reader_t* r, uint32_t* out) {
  uint32_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    uint8_t b;
    if (r->pos >= r->end)
      return HERD_EBADVALUE;
    b = *r->pos++;
    if (shift == 28 && b > 0x0f)
      return HERD_EBADVALUE;
    v |= (uint32_t)(b & 0x7f) << shift;
    if (b < 0x80) {
      *out = v;
      return 0;
    }
  }
  return HERD_EBADVALUE;
}

static int read_varint8(reader_t* r, uint8_t* out) {
  uint32_t v;
  int err = read_varint(r, &v);
  if (err == 0 && v > 0xff)
    err = HERD_EBADVALUE;
  if (err == 0)
    *out = (uint8_t)v;
  return err;
}

/* The next tag, after any padding bytes. */
static int read_tag(reader_t* r, uint8_t* tag) {
  while (r->pos < r->end && *r->pos == '\0')
    r->pos++;
  if (r->pos >= r->end)
    return HERD_EBADVALUE;
  *tag = *r->pos++;
  return 0;
}

/* Looks at the next tag; padding before it is skipped for good. */
static int peek_tag(reader_t* r, uint8_t* tag) {
  while (r->pos < r->end && *r->pos == '\0')
    r->pos++;
  if (r->pos >= r->end)
    return HERD_EBADVALUE;
  *tag = *r->pos;
  return 0;
}

static int read_double(reader_t* r, double* d) {
  if (left(r) < sizeof(double))
    return HERD_EBADVALUE;
  memcpy(d, r->pos, sizeof(double));
  r->pos += sizeof(double);
  if (isnan(*d))
    *d = NAN; /* V8 keeps one NaN */
  return 0;
}

static int reserve_id(reader_t* r, uint32_t* id) {
  if (r->nids == r->cap_ids) {
    size_t cap = r->cap_ids == 0 ? 16 : r->cap_ids * 2;
    herd_value_t** ids;
    if (cap > UINT32_MAX)
      return HERD_EBADVALUE;
    ids = herd__realloc(r->ids, cap * sizeof(*ids));
    if (ids == NULL)
      return UV_ENOMEM;
    r->ids = ids;
    r->cap_ids = cap;
  }
  r->ids[r->nids] = NULL;
  *id = (uint32_t)r->nids++;
  return 0;
}

static int read_raw_string(reader_t* r, uint8_t tag, raw_string_t* s) {
  uint32_t n;
  int err = read_varint(r, &n);
  if (err != 0)
    return err;
  if (n > left(r) || (tag == 'c' && n % 2 != 0))
    return HERD_EBADVALUE;
  s->tag = tag;
  s->bytes = r->pos;
  s->len = n;
  r->pos += n;
  return 0;
}

static int is_string_tag(uint8_t tag) {
  return tag == '"' || tag == 'c' || tag == 'S';
}

static size_t raw_wtf8_len(const raw_string_t* s) {
  if (s->tag == '"')
    return herd__latin1_wtf8_len(s->bytes, s->len);
  if (s->tag == 'c')
    return herd__utf16_wtf8_len(s->bytes, s->len / 2);
  return herd__utf8_lossy_len(s->bytes, s->len);
}

static void raw_to_wtf8(const raw_string_t* s, char* out) {
  if (s->tag == '"')
    herd__latin1_to_wtf8(s->bytes, s->len, out);
  else if (s->tag == 'c')
    herd__utf16_to_wtf8(s->bytes, s->len / 2, out);
  else
    herd__utf8_lossy_to_wtf8(s->bytes, s->len, out);
}

static int string_value(reader_t* r, const raw_string_t* s,
                        herd_value_t** out) {
  char* bytes;
  size_t n = raw_wtf8_len(s);
  herd_value_t* v = herd__value_string_raw(r->heap, n, &bytes);
  if (v == NULL)
    return oom(r);
  raw_to_wtf8(s, bytes);
  *out = v;
  return 0;
}

/* Decodes a string into r->scratch (NUL-terminated). */
static int string_scratch(reader_t* r, const raw_string_t* s, size_t* len) {
  size_t n = raw_wtf8_len(s);
  if (n + 1 > r->cap_scratch) {
    char* p = herd__realloc(r->scratch, n + 1);
    if (p == NULL)
      return UV_ENOMEM;
    r->scratch = p;
    r->cap_scratch = n + 1;
  }
  raw_to_wtf8(s, r->scratch);
  r->scratch[n] = '\0';
  *len = n;
  return 0;
}

/* V8's ReadString(): the next value, which must be a string. */
static int read_string(reader_t* r, raw_string_t* s) {
  uint8_t tag;
  int err = read_tag(r, &tag);
  if (err != 0)
    return err;
  if (!is_string_tag(tag))
    return HERD_EBADVALUE;
  return read_raw_string(r, tag, s);
}

static int read_string_value(reader_t* r, herd_value_t** out) {
  raw_string_t s;
  int err = read_string(r, &s);
  if (err == 0)
    err = string_value(r, &s, out);
  return err;
}

static int read_bigint(reader_t* r, herd_value_t** out) {
  uint32_t bitfield;
  size_t n;
  herd_value_t* v;
  int err = read_varint(r, &bitfield);
  if (err != 0)
    return err;
  /* Bit 0 is the sign, bits 1..30 the length of the digits in bytes. */
  n = (bitfield >> 1) & 0x3fffffffu;
  if (n > HERD__BIGINT_MAX_BYTES || n > left(r))
    return HERD_EBADVALUE;
  v = herd_value_new_bigint(r->heap, bitfield & 1, r->pos, n);
  if (v == NULL)
    return oom(r);
  r->pos += n;
  *out = v;
  return 0;
}

/* The number key `d` as a property key: an array index, or its string. */
static void number_key(reader_t* r, double d, int* is_index, uint32_t* index,
                       const char** key, size_t* len) {
  if (d >= 0 && d <= HERD__MAX_ARRAY_INDEX && d == (double)(uint32_t)d) {
    *is_index = 1;
    *index = (uint32_t)d;
    *len = (size_t)snprintf(r->number_key, sizeof(r->number_key), "%u",
                            (unsigned)*index);
  } else {
    *is_index = 0;
    *len = herd__js_number_to_string(d, r->number_key);
  }
  *key = r->number_key;
}

/* Reads a property key: a string or a number, as V8's IsValidObjectKey().
 * *key points into r->scratch or r->number_key until the next key. */
static int read_key(reader_t* r, int* is_index, uint32_t* index,
                    const char** key, size_t* len) {
  uint8_t tag;
  uint32_t u;
  double d;
  raw_string_t s;
  int err = read_tag(r, &tag);
  if (err != 0)
    return err;
  switch (tag) {
    case '"':
    case 'c':
    case 'S':
      if ((err = read_raw_string(r, tag, &s)) != 0 ||
          (err = string_scratch(r, &s, len)) != 0)
        return err;
      *key = r->scratch;
      *is_index = herd__value_array_index(*key, *len, index);
      return 0;
    case 'I':
      if ((err = read_varint(r, &u)) != 0)
        return err;
      d = (double)(int32_t)((u >> 1) ^ (0u - (u & 1)));
      break;
    case 'U':
      if ((err = read_varint(r, &u)) != 0)
        return err;
      d = (double)u;
      break;
    case 'N':
      if ((err = read_double(r, &d)) != 0)
        return err;
      break;
    default:
      return HERD_EBADVALUE;
  }
  number_key(r, d, is_index, index, key, len);
  return 0;
}

/* Reads key/value pairs into `o` up to `end_tag`; *count gets how many.
 * As V8, a key the object already has is an error, and so is "length" on
 * an array (its own property). */
static int read_properties(reader_t* r, herd_value_t* o, uint8_t end_tag,
                           uint32_t* count) {
  uint32_t n = 0;
  for (;;) {
    uint8_t tag;
    int is_index, err;
    uint32_t index;
    const char* key;
    size_t len;
    herd_value_t* value;
    if ((err = peek_tag(r, &tag)) != 0)
      return err;
    if (tag == end_tag) {
      r->pos++;
      *count = n;
      return 0;
    }
    if ((err = read_key(r, &is_index, &index, &key, &len)) != 0)
      return err;
    if (o->type == HERD_VALUE_ARRAY && is_index) {
      if ((err = read_value(r, &value)) != 0)
        return err;
      if (herd__value_elem_append(o, index, value) != 0)
        return oom(r);
    } else {
      size_t at = o->u.obj.nprops;
      if (o->type == HERD_VALUE_ARRAY && len == 6 &&
          memcmp(key, "length", 6) == 0)
        return HERD_EBADVALUE;
      if (herd__value_prop_find(o, key, len) >= 0)
        return HERD_EBADVALUE;
      /* The key goes in first: reading the value reuses the scratch. */
      if (herd__value_prop_append(o, key, len, herd_value_undefined()) != 0)
        return oom(r);
      if ((err = read_value(r, &value)) != 0)
        return err;
      o->u.obj.props[at].value = value;
    }
    if (n == UINT32_MAX)
      return HERD_EBADVALUE;
    n++;
  }
}

static int read_object(reader_t* r, herd_value_t** out) {
  uint32_t id, n, expected;
  herd_value_t* o;
  int err = reserve_id(r, &id);
  if (err != 0)
    return err;
  o = herd_value_new_object(r->heap);
  if (o == NULL)
    return oom(r);
  r->ids[id] = o;
  if ((err = read_properties(r, o, '{', &n)) != 0 ||
      (err = read_varint(r, &expected)) != 0)
    return err;
  if (n != expected)
    return HERD_EBADVALUE;
  *out = o;
  return 0;
}

static int finish_array(reader_t* r, herd_value_t* a, uint32_t length,
                        uint8_t end_tag) {
  uint32_t n, expected_n, expected_length;
  int err;
  if ((err = read_properties(r, a, end_tag, &n)) != 0 ||
      (err = read_varint(r, &expected_n)) != 0 ||
      (err = read_varint(r, &expected_length)) != 0)
    return err;
  if (n != expected_n || length != expected_length)
    return HERD_EBADVALUE;
  return herd__value_elems_sort(a);
}

static int read_sparse_array(reader_t* r, herd_value_t** out) {
  uint32_t id, length;
  herd_value_t* a;
  int err = read_varint(r, &length);
  if (err != 0 || (err = reserve_id(r, &id)) != 0)
    return err;
  a = herd_value_new_array(r->heap);
  if (a == NULL)
    return oom(r);
  a->u.obj.length = length;
  r->ids[id] = a;
  if ((err = finish_array(r, a, length, '@')) != 0)
    return err;
  *out = a;
  return 0;
}

static int read_dense_array(reader_t* r, herd_value_t** out) {
  uint32_t id, length;
  herd_value_t* a;
  int err = read_varint(r, &length);
  if (err != 0)
    return err;
  /* Every element takes at least one byte (as V8 checks). */
  if (length > left(r))
    return HERD_EBADVALUE;
  if ((err = reserve_id(r, &id)) != 0)
    return err;
  a = herd_value_new_array(r->heap);
  if (a == NULL)
    return oom(r);
  a->u.obj.length = length;
  r->ids[id] = a;
  for (uint32_t i = 0; i < length; i++) {
    uint8_t tag;
    herd_value_t* value;
    if ((err = peek_tag(r, &tag)) != 0)
      return err;
    if (tag == '-') { /* the hole */
      r->pos++;
      continue;
    }
    if ((err = read_value(r, &value)) != 0)
      return err;
    if (herd__value_elem_append(a, i, value) != 0)
      return oom(r);
  }
  if ((err = finish_array(r, a, length, '$')) != 0)
    return err;
  *out = a;
  return 0;
}

static int read_date(reader_t* r, herd_value_t** out) {
  double ms;
  uint32_t id;
  herd_value_t* v;
  int err = read_double(r, &ms);
  if (err != 0 || (err = reserve_id(r, &id)) != 0)
    return err;
  v = herd_value_new_date(r->heap, ms);
  if (v == NULL)
    return oom(r);
  r->ids[id] = v;
  *out = v;
  return 0;
}

static int read_boxed(reader_t* r, uint8_t tag, herd_value_t** out) {
  uint32_t id;
  herd_value_t* inner = NULL;
  herd_value_t* v;
  double d;
  int err = reserve_id(r, &id);
  if (err != 0)
    return err;
  switch (tag) {
    case 'y':
    case 'x':
      inner = herd_value_boolean(tag == 'y');
      break;
    case 'n':
      if ((err = read_double(r, &d)) != 0)
        return err;
      if ((inner = herd_value_new_number(r->heap, d)) == NULL)
        return oom(r);
      break;
    case 'z':
      err = read_bigint(r, &inner);
      break;
    default: /* 's' */
      err = read_string_value(r, &inner);
      break;
  }
  if (err != 0)
    return err;
  v = herd_value_new_boxed(r->heap, inner);
  if (v == NULL)
    return oom(r);
  r->ids[id] = v;
  *out = v;
  return 0;
}

static int read_regexp(reader_t* r, herd_value_t** out) {
  uint32_t id, flags;
  raw_string_t s;
  size_t len;
  herd_value_t* v;
  int err = reserve_id(r, &id);
  if (err != 0 || (err = read_string(r, &s)) != 0 ||
      (err = read_varint(r, &flags)) != 0)
    return err;
  /* V8 refuses unknown flags, kLinear (without its command-line flag),
   * and 'u' together with 'v'. */
  if ((flags & ~HERD__RE_VALID_FLAGS) != 0 ||
      ((flags & HERD__RE_UNICODE) && (flags & HERD__RE_UNICODE_SETS)))
    return HERD_EBADVALUE;
  if ((err = string_scratch(r, &s, &len)) != 0)
    return err;
  v = herd__value_regexp_raw(r->heap, r->scratch, len, flags);
  if (v == NULL)
    return oom(r);
  r->ids[id] = v;
  *out = v;
  return 0;
}

/* A Map (members 2 per entry) or a Set, up to `end_tag` and its count. */
static int read_collection(reader_t* r, int map, herd_value_t** out) {
  uint32_t id, expected, n = 0;
  uint8_t end_tag = map ? ':' : ',';
  herd_value_t* c;
  int err = reserve_id(r, &id);
  if (err != 0)
    return err;
  c = map ? herd_value_new_map(r->heap) : herd_value_new_set(r->heap);
  if (c == NULL)
    return oom(r);
  r->ids[id] = c;
  for (;;) {
    uint8_t tag;
    herd_value_t* member;
    if ((err = peek_tag(r, &tag)) != 0)
      return err;
    if (tag == end_tag) {
      r->pos++;
      break;
    }
    for (int k = 0; k < (map ? 2 : 1); k++) {
      if ((err = read_value(r, &member)) != 0)
        return err;
      if (herd__value_list_append(c, member) != 0)
        return oom(r);
      if (n == UINT32_MAX)
        return HERD_EBADVALUE;
      n++;
    }
  }
  if ((err = read_varint(r, &expected)) != 0)
    return err;
  if (n != expected)
    return HERD_EBADVALUE;
  *out = c;
  return 0;
}

static int read_array_buffer(reader_t* r, int resizable, herd_value_t** out) {
  uint32_t id, len, max_len;
  herd_value_t* v;
  int err = reserve_id(r, &id);
  if (err != 0 || (err = read_varint(r, &len)) != 0)
    return err;
  max_len = len;
  if (resizable && (err = read_varint(r, &max_len)) != 0)
    return err;
  if (len > max_len || len > left(r))
    return HERD_EBADVALUE;
  if (resizable)
    v = herd_value_new_array_buffer_resizable(r->heap, r->pos, len, max_len);
  else
    v = herd_value_new_array_buffer(r->heap, r->pos, len);
  if (v == NULL)
    return oom(r);
  r->pos += len;
  r->ids[id] = v;
  *out = v;
  return 0;
}

/* V8's own ArrayBufferView ('V' after an ArrayBuffer, which Node never
 * writes: it sends views as host objects). herd's views own their bytes,
 * so the view gets a copy of its part of the buffer. */
static int read_v8_view(reader_t* r, herd_value_t* buffer, herd_value_t** out) {
  static const char subtags[] = "bBCwWdDfFq?Qh";
  static const herd_view_kind_t kinds[] = {
      HERD_VIEW_INT8,     HERD_VIEW_UINT8,     HERD_VIEW_UINT8_CLAMPED,
      HERD_VIEW_INT16,    HERD_VIEW_UINT16,    HERD_VIEW_INT32,
      HERD_VIEW_UINT32,   HERD_VIEW_FLOAT32,   HERD_VIEW_FLOAT64,
      HERD_VIEW_BIGINT64, HERD_VIEW_DATA_VIEW, HERD_VIEW_BIGUINT64,
      HERD_VIEW_FLOAT16};
  uint8_t subtag;
  uint32_t offset, len, flags = 0, id;
  size_t es, buffer_len = buffer->u.buf.len;
  const char* at;
  herd_view_kind_t kind;
  herd_value_t* v;
  int tracking, rab, err;
  if ((err = read_varint8(r, &subtag)) != 0 ||
      (err = read_varint(r, &offset)) != 0 || (err = read_varint(r, &len)) != 0)
    return err;
  if (offset > buffer_len || len > buffer_len - offset)
    return HERD_EBADVALUE;
  if (r->version >= 14 && (err = read_varint(r, &flags)) != 0)
    return err;
  at = subtag != '\0' ? strchr(subtags, subtag) : NULL;
  if (at == NULL)
    return HERD_EBADVALUE;
  kind = kinds[at - subtags];
  es = herd_view_element_size(kind);
  if (offset % es != 0 || len % es != 0)
    return HERD_EBADVALUE;
  /* ValidateJSArrayBufferViewFlags(): a length-tracking or RAB-backed
   * view needs a resizable buffer, and a view of one is RAB-backed. */
  tracking = flags & 1;
  rab = (flags >> 1) & 1;
  if (((tracking || rab) && !buffer->flag) || (buffer->flag && !rab))
    return HERD_EBADVALUE;
  if (tracking)
    len = (uint32_t)(buffer_len - offset) / (uint32_t)es * (uint32_t)es;
  if ((err = reserve_id(r, &id)) != 0)
    return err;
  v = herd_value_new_view(r->heap, kind, buffer->u.buf.bytes + offset, len);
  if (v == NULL)
    return oom(r);
  r->ids[id] = v;
  *out = v;
  return 0;
}

static int read_error(reader_t* r, herd_value_t** out) {
  static const char protos[] = "ERFSTU";
  uint32_t id;
  herd_value_t* e;
  int err = reserve_id(r, &id);
  if (err != 0)
    return err;
  e = herd_value_new_error(r->heap, HERD_JS_ERROR, NULL, NULL);
  if (e == NULL)
    return oom(r);
  /* Known from the start, so a cause may refer back to its error (newer
   * V8 allows that; Node 20's V8 does not). */
  r->ids[id] = e;
  /* Node 20's V8 takes the sub-tags in any order, the last of a kind
   * winning; newer ones want prototype, message, stack, cause. */
  for (;;) {
    uint8_t tag;
    const char* at;
    if ((err = read_varint8(r, &tag)) != 0)
      return err;
    if (tag == '.')
      break;
    at = tag != '\0' ? strchr(protos, tag) : NULL;
    if (at != NULL)
      e->kind = (uint8_t)(HERD_JS_EVAL_ERROR + (at - protos));
    else if (tag == 'm')
      err = read_string_value(r, &e->u.err.message);
    else if (tag == 's')
      err = read_string_value(r, &e->u.err.stack);
    else if (tag == 'c')
      err = read_value(r, &e->u.err.cause);
    else
      err = HERD_EBADVALUE;
    if (err != 0)
      return err;
  }
  *out = e;
  return 0;
}

/* Node's host objects: DefaultDeserializer._readHostObject() reads a view
 * (type index, byte length, bytes); ChildProcessDeserializer first reads
 * 0 (a view) or 1 (any other host object, sent as a copy of its
 * properties: the value that follows). */
static int read_host_object(reader_t* r, herd_value_t** out) {
  uint32_t id, tag = 0, kind, len;
  herd_value_t* v;
  size_t es;
  int err = reserve_id(r, &id);
  if (err != 0)
    return err;
  if (r->format == HERD_VALUE_FORMAT_IPC && (err = read_varint(r, &tag)) != 0)
    return err;
  if (tag == 1) {
    if ((err = read_value(r, &v)) != 0)
      return err;
    /* V8 takes what the host returns for an object. */
    if (v->type <= HERD_VALUE_STRING)
      return HERD_EBADVALUE;
    r->ids[id] = v;
    *out = v;
    return 0;
  }
  if (tag != 0)
    return HERD_EVALUETYPE;
  if ((err = read_varint(r, &kind)) != 0 || (err = read_varint(r, &len)) != 0)
    return err;
  if (kind > HERD_VIEW_FLOAT16)
    return HERD_EVALUETYPE;
  if (len > left(r))
    return HERD_EBADVALUE;
  es = herd_view_element_size((herd_view_kind_t)kind);
  if (len % es != 0)
    return HERD_EBADVALUE;
  v = herd_value_new_view(r->heap, (herd_view_kind_t)kind, r->pos, len);
  if (v == NULL)
    return oom(r);
  r->pos += len;
  r->ids[id] = v;
  *out = v;
  return 0;
}

static herd_value_t* number(reader_t* r, double d) {
  return herd_value_new_number(r->heap, d);
}

static int read_internal(reader_t* r, herd_value_t** out) {
  uint8_t tag;
  uint32_t u;
  double d;
  raw_string_t s;
  int err;
again:
  if ((err = read_tag(r, &tag)) != 0)
    return err;
  switch (tag) {
    case '?': /* kVerifyObjectCount: a count to ignore */
      if ((err = read_varint(r, &u)) != 0)
        return err;
      goto again;
    case '_':
      *out = herd_value_undefined();
      return 0;
    case '0':
      *out = herd_value_null();
      return 0;
    case 'T':
      *out = herd_value_boolean(1);
      return 0;
    case 'F':
      *out = herd_value_boolean(0);
      return 0;
    case 'I':
      if ((err = read_varint(r, &u)) != 0)
        return err;
      d = (double)(int32_t)((u >> 1) ^ (0u - (u & 1)));
      goto num;
    case 'U':
      if ((err = read_varint(r, &u)) != 0)
        return err;
      d = (double)u;
      goto num;
    case 'N':
      if ((err = read_double(r, &d)) != 0)
        return err;
    num:
      *out = number(r, d);
      return *out != NULL ? 0 : oom(r);
    case 'Z':
      return read_bigint(r, out);
    case '"':
    case 'c':
    case 'S':
      if ((err = read_raw_string(r, tag, &s)) != 0)
        return err;
      return string_value(r, &s, out);
    case '^':
      if ((err = read_varint(r, &u)) != 0)
        return err;
      if (u >= r->nids || r->ids[u] == NULL)
        return HERD_EBADVALUE;
      *out = r->ids[u];
      return 0;
    case 'o':
      return read_object(r, out);
    case 'a':
      return read_sparse_array(r, out);
    case 'A':
      return read_dense_array(r, out);
    case 'D':
      return read_date(r, out);
    case 'y':
    case 'x':
    case 'n':
    case 'z':
    case 's':
      return read_boxed(r, tag, out);
    case 'R':
      return read_regexp(r, out);
    case ';':
      return read_collection(r, 1, out);
    case '\'':
      return read_collection(r, 0, out);
    case 'B':
      return read_array_buffer(r, 0, out);
    case '~':
      return read_array_buffer(r, 1, out);
    case 'r':
      return read_error(r, out);
    case '\\':
      return read_host_object(r, out);
    case 't': /* a transferred ArrayBuffer */
    case 'u': /* a SharedArrayBuffer */
    case 'w': /* a WebAssembly module */
    case 'm': /* a WebAssembly memory */
      return HERD_EVALUETYPE;
    case 'p': /* a shared object (version 15) */
      return r->version >= 15 ? HERD_EVALUETYPE : HERD_EBADVALUE;
    default:
      return HERD_EBADVALUE;
  }
}

static int read_value(reader_t* r, herd_value_t** out) {
  uint8_t tag;
  int err;
  if (r->depth >= r->max_depth)
    return HERD_EVALUELIMIT;
  r->depth++;
  err = read_internal(r, out);
  /* As V8's ReadObject(): an ArrayBuffer (or a reference to one) followed
   * by a view tag is that view's buffer. */
  if (err == 0 && (*out)->type == HERD_VALUE_ARRAY_BUFFER &&
      peek_tag(r, &tag) == 0 && tag == 'V') {
    r->pos++;
    err = read_v8_view(r, *out, out);
  }
  r->depth--;
  return err;
}

int herd_value_deserialize(herd_value_heap_t* heap, const void* bytes,
                           size_t len, const herd_value_options_t* options,
                           herd_value_t** out) {
  reader_t r;
  herd_value_t* mark;
  herd_value_t* v = NULL;
  size_t max_bytes, saved_limit;
  int saved_error, err;
  if (heap == NULL || out == NULL || (bytes == NULL && len > 0))
    return UV_EINVAL;
  memset(&r, 0, sizeof(r));
  r.heap = heap;
  r.pos = bytes;
  r.end = r.pos + len;
  r.format = options != NULL ? options->format : HERD_VALUE_FORMAT_IPC;
  r.max_depth = options != NULL && options->max_depth != 0
                    ? options->max_depth
                    : HERD_VALUE_DEFAULT_MAX_DEPTH;
  max_bytes = options != NULL && options->max_bytes != 0
                  ? options->max_bytes
                  : HERD_VALUE_DEFAULT_MAX_BYTES;
  if (r.format != HERD_VALUE_FORMAT_IPC && r.format != HERD_VALUE_FORMAT_V8)
    return UV_EINVAL;
  /* The header: kVersion (0xFF) and the version. Without it V8 falls back
   * to a pre-2016 format that Node never writes. */
  if (len < 2 || r.pos[0] != 0xff)
    return HERD_EBADVALUE;
  r.pos++;
  if ((err = read_varint(&r, &r.version)) != 0)
    return err;
  if (r.version < HERD__V8_MIN_VERSION || r.version > HERD__V8_VERSION)
    return HERD_EVALUETYPE;

  mark = heap->newest_;
  saved_limit = heap->limit_;
  saved_error = heap->error_;
  heap->limit_ =
      heap->bytes_ > SIZE_MAX - max_bytes ? SIZE_MAX : heap->bytes_ + max_bytes;
  heap->error_ = 0;
  err = read_value(&r, &v);
  heap->limit_ = saved_limit;
  heap->error_ = saved_error;
  herd__free(r.ids);
  herd__free(r.scratch);
  if (err != 0) {
    herd__value_rollback(heap, mark);
    return err;
  }
  *out = v;
  return 0;
}
