/* The serializer: what V8's ValueSerializer (v8/src/objects/
 * value-serializer.cc) writes for the same JavaScript value, with views as
 * Node's host objects (lib/v8.js DefaultSerializer._writeHostObject, and
 * the extra tag 0 of ChildProcessSerializer in
 * lib/internal/child_process/serialization.js). */
#include "value-int.h"

#include <math.h>
#include <string.h>

typedef struct {
  uint8_t* buf;
  size_t len;
  size_t cap;
  size_t base;        /* where the V8 bytes start (after the caller's prefix) */
  herd__ptrmap_t ids; /* object -> its id + 1 */
  uint32_t next_id;
  herd_value_format_t format;
  unsigned depth;
  unsigned max_depth;
  int err;
} writer_t;

/* Room for `n` more bytes; NULL once anything failed. */
static uint8_t* reserve(writer_t* w, size_t n) {
  uint8_t* p;
  if (w->err != 0)
    return NULL;
  /* Node frames a message with a uint32 length. */
  if (n > UINT32_MAX || w->len - w->base > UINT32_MAX - n) {
    w->err = HERD_EVALUELIMIT;
    return NULL;
  }
  if (w->len + n > w->cap) {
    size_t cap = w->cap < 256 ? 256 : w->cap;
    while (cap < w->len + n)
      cap *= 2;
    p = herd__realloc(w->buf, cap);
    if (p == NULL) {
      w->err = UV_ENOMEM;
      return NULL;
    }
    w->buf = p;
    w->cap = cap;
  }
  p = w->buf + w->len;
  w->len += n;
  return p;
}

static void put_bytes(writer_t* w, const void* bytes, size_t n) {
  uint8_t* p = reserve(w, n);
  if (p != NULL && n > 0)
    memcpy(p, bytes, n);
}

static void put_byte(writer_t* w, uint8_t b) {
  put_bytes(w, &b, 1);
}

static size_t varint_size(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static void put_varint(writer_t* w, uint32_t v) {
  uint8_t b[5];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  b[n++] = (uint8_t)v;
  put_bytes(w, b, n);
}

static void put_zigzag(writer_t* w, int32_t i) {
  put_varint(w, ((uint32_t)i << 1) ^ (uint32_t)(i >> 31));
}

static void put_double(writer_t* w, double d) {
  if (isnan(d))
    d = NAN; /* V8's one NaN */
  put_bytes(w, &d, sizeof(d));
}

/* A number as V8 writes a Smi (an Int32) or a HeapNumber (a double). */
static void put_number(writer_t* w, double d) {
  if (d >= INT32_MIN && d <= INT32_MAX && d == (double)(int32_t)d &&
      !(d == 0 && signbit(d))) {
    put_byte(w, 'I');
    put_zigzag(w, (int32_t)d);
  } else {
    put_byte(w, 'N');
    put_double(w, d);
  }
}

static void put_bigint_body(writer_t* w, const herd_value_t* v) {
  /* Whole 64-bit digits, the length in bytes in bits 1..30 of the
   * bitfield. */
  size_t len = (v->u.bigint.len + 7) & ~(size_t)7;
  uint8_t* p;
  if (len > HERD__BIGINT_MAX_BYTES) {
    w->err = w->err != 0 ? w->err : HERD_EVALUELIMIT;
    return;
  }
  put_varint(w, (uint32_t)(len << 1) | (v->u.bigint.negative ? 1u : 0u));
  p = reserve(w, len);
  if (p != NULL && len > 0) {
    memcpy(p, v->u.bigint.mag, v->u.bigint.len);
    memset(p + v->u.bigint.len, 0, len - v->u.bigint.len);
  }
}

/* A string: one-byte (Latin-1) when it can be, else two-byte, which V8
 * aligns on an even offset with a padding byte. */
static void put_string(writer_t* w, const char* s, size_t len) {
  int latin1;
  size_t units;
  uint8_t* p;
  if (herd__wtf8_check(s, len, &latin1, &units) != 0) {
    w->err = w->err != 0 ? w->err : HERD_EBADUTF8;
    return;
  }
  if (latin1) {
    if (units > UINT32_MAX) {
      w->err = w->err != 0 ? w->err : HERD_EVALUELIMIT;
      return;
    }
    put_byte(w, '"');
    put_varint(w, (uint32_t)units);
    p = reserve(w, units);
    if (p != NULL)
      herd__wtf8_to_latin1(s, len, p);
    return;
  }
  if (units > UINT32_MAX / 2) {
    w->err = w->err != 0 ? w->err : HERD_EVALUELIMIT;
    return;
  }
  if ((w->len - w->base + 1 + varint_size((uint32_t)units * 2)) & 1)
    put_byte(w, '\0');
  put_byte(w, 'c');
  put_varint(w, (uint32_t)units * 2);
  p = reserve(w, units * 2);
  if (p == NULL)
    return;
  if (((uintptr_t)p & 1) == 0) {
    herd__wtf8_to_utf16(s, len, (uint16_t*)(void*)p);
  } else {
    uint16_t* tmp = herd__malloc(units * 2);
    if (tmp == NULL) {
      w->err = UV_ENOMEM;
      return;
    }
    herd__wtf8_to_utf16(s, len, tmp);
    memcpy(p, tmp, units * 2);
    herd__free(tmp);
  }
}

/* A property key: an array index as a number (an Int32 while it fits, as
 * V8 keeps it a Smi, else a double), anything else as a string. */
static void put_key(writer_t* w, const char* key, size_t len) {
  uint32_t index;
  if (herd__value_array_index(key, len, &index)) {
    put_number(w, (double)index);
    return;
  }
  put_string(w, key, len);
}

static void put_index(writer_t* w, uint32_t index) {
  put_number(w, (double)index);
}

static void put_value(writer_t* w, const herd_value_t* v);

static void put_props(writer_t* w, const herd_value_t* o) {
  for (size_t i = 0; i < o->u.obj.nprops && w->err == 0; i++) {
    put_key(w, o->u.obj.props[i].key, o->u.obj.props[i].key_len);
    put_value(w, o->u.obj.props[i].value);
  }
}

/* A packed array (no holes) is written dense, any other sparse, as V8
 * decides by elements kind. */
static void put_array(writer_t* w, const herd_value_t* a) {
  uint32_t length = a->u.obj.length;
  size_t n = a->u.obj.nelems;
  if (n == length) {
    put_byte(w, 'A');
    put_varint(w, length);
    for (size_t i = 0; i < n && w->err == 0; i++)
      put_value(w, a->u.obj.elems[i].value);
    put_props(w, a);
    put_byte(w, '$');
    put_varint(w, (uint32_t)a->u.obj.nprops);
    put_varint(w, length);
    return;
  }
  put_byte(w, 'a');
  put_varint(w, length);
  for (size_t i = 0; i < n && w->err == 0; i++) {
    put_index(w, a->u.obj.elems[i].index);
    put_value(w, a->u.obj.elems[i].value);
  }
  put_props(w, a);
  put_byte(w, '@');
  put_varint(w, (uint32_t)(n + a->u.obj.nprops));
  put_varint(w, length);
}

static void put_error(writer_t* w, const herd_value_t* e) {
  static const char protos[] = "ERFSTU";
  put_byte(w, 'r');
  if (e->kind != HERD_JS_ERROR)
    put_byte(w, (uint8_t)protos[e->kind - HERD_JS_EVAL_ERROR]);
  if (e->u.err.message != NULL) {
    put_byte(w, 'm');
    put_string(w, e->u.err.message->u.str.s, e->u.err.message->u.str.len);
  }
  /* Stack before cause, as V8 writes them since 2023; Node 20's V8 wrote
   * the cause first but reads either order. */
  if (e->u.err.stack != NULL) {
    put_byte(w, 's');
    put_string(w, e->u.err.stack->u.str.s, e->u.err.stack->u.str.len);
  }
  if (e->u.err.cause != NULL) {
    put_byte(w, 'c');
    put_value(w, e->u.err.cause);
  }
  put_byte(w, '.');
}

static void put_object(writer_t* w, const herd_value_t* v) {
  switch (v->type) {
    case HERD_VALUE_OBJECT:
      put_byte(w, 'o');
      put_props(w, v);
      put_byte(w, '{');
      put_varint(w, (uint32_t)v->u.obj.nprops);
      break;
    case HERD_VALUE_ARRAY:
      put_array(w, v);
      break;
    case HERD_VALUE_DATE:
      put_byte(w, 'D');
      put_double(w, v->u.number);
      break;
    case HERD_VALUE_REGEXP:
      put_byte(w, 'R');
      put_string(w, v->u.re.s, v->u.re.len);
      put_varint(w, v->u.re.flags);
      break;
    case HERD_VALUE_MAP:
    case HERD_VALUE_SET:
      put_byte(w, v->type == HERD_VALUE_MAP ? ';' : '\'');
      for (size_t i = 0; i < v->u.list.n && w->err == 0; i++)
        put_value(w, v->u.list.items[i]);
      put_byte(w, v->type == HERD_VALUE_MAP ? ':' : ',');
      put_varint(w, (uint32_t)v->u.list.n);
      break;
    case HERD_VALUE_ARRAY_BUFFER:
      put_byte(w, v->flag ? '~' : 'B');
      put_varint(w, (uint32_t)v->u.buf.len);
      if (v->flag)
        put_varint(w, (uint32_t)v->u.buf.max_len);
      put_bytes(w, v->u.buf.bytes, v->u.buf.len);
      break;
    case HERD_VALUE_VIEW:
      put_byte(w, '\\');
      if (w->format == HERD_VALUE_FORMAT_IPC)
        put_varint(w, 0);
      put_varint(w, v->kind);
      put_varint(w, (uint32_t)v->u.buf.len);
      put_bytes(w, v->u.buf.bytes, v->u.buf.len);
      break;
    case HERD_VALUE_BOXED: {
      const herd_value_t* p = v->u.boxed;
      if (p->type == HERD_VALUE_BOOLEAN) {
        put_byte(w, p->kind ? 'y' : 'x');
      } else if (p->type == HERD_VALUE_NUMBER) {
        put_byte(w, 'n');
        put_double(w, p->u.number);
      } else if (p->type == HERD_VALUE_BIGINT) {
        put_byte(w, 'z');
        put_bigint_body(w, p);
      } else {
        put_byte(w, 's');
        put_string(w, p->u.str.s, p->u.str.len);
      }
      break;
    }
    case HERD_VALUE_ERROR:
      put_error(w, v);
      break;
    default:
      w->err = w->err != 0 ? w->err : UV_EINVAL;
      break;
  }
}

static void put_value(writer_t* w, const herd_value_t* v) {
  uintptr_t id;
  if (w->err != 0)
    return;
  if (w->depth >= w->max_depth) {
    w->err = HERD_EVALUELIMIT;
    return;
  }
  w->depth++;
  switch (v->type) {
    case HERD_VALUE_UNDEFINED:
      put_byte(w, '_');
      break;
    case HERD_VALUE_NULL:
      put_byte(w, '0');
      break;
    case HERD_VALUE_BOOLEAN:
      put_byte(w, v->kind ? 'T' : 'F');
      break;
    case HERD_VALUE_NUMBER:
      put_number(w, v->u.number);
      break;
    case HERD_VALUE_BIGINT:
      put_byte(w, 'Z');
      put_bigint_body(w, v);
      break;
    case HERD_VALUE_STRING:
      put_string(w, v->u.str.s, v->u.str.len);
      break;
    default:
      /* An object: the first time it gets the next id, later times are
       * references to it. */
      id = (uintptr_t)herd__ptrmap_get(&w->ids, v);
      if (id != 0) {
        put_byte(w, '^');
        put_varint(w, (uint32_t)(id - 1));
        break;
      }
      if (herd__ptrmap_put(&w->ids, v, (void*)(uintptr_t)(w->next_id + 1))) {
        w->err = UV_ENOMEM;
        break;
      }
      w->next_id++;
      put_object(w, v);
      break;
  }
  w->depth--;
}

int herd__value_write_buf(const herd_value_t* value,
                          const herd_value_options_t* options, char** buf,
                          size_t* cap, size_t at, size_t* end) {
  writer_t w;
  if (value == NULL || buf == NULL || cap == NULL || end == NULL)
    return UV_EINVAL;
  memset(&w, 0, sizeof(w));
  w.format = options != NULL ? options->format : HERD_VALUE_FORMAT_IPC;
  if (w.format != HERD_VALUE_FORMAT_IPC && w.format != HERD_VALUE_FORMAT_V8)
    return UV_EINVAL;
  herd__ptrmap_init(&w.ids);
  w.max_depth = options != NULL && options->max_depth != 0
                    ? options->max_depth
                    : HERD_VALUE_DEFAULT_MAX_DEPTH;
  w.buf = (uint8_t*)*buf;
  w.cap = *cap;
  w.len = at;
  w.base = at;
  put_byte(&w, 0xff);
  put_varint(&w, HERD__V8_VERSION);
  put_value(&w, value);
  herd__ptrmap_free(&w.ids);
  /* The buffer may have moved even when writing failed. */
  *buf = (char*)w.buf;
  *cap = w.cap;
  if (w.err != 0)
    return w.err;
  *end = w.len;
  return 0;
}

int herd__value_write(const herd_value_t* value,
                      const herd_value_options_t* options, size_t prefix,
                      uv_buf_t* out) {
  char* buf = NULL;
  size_t cap = 0, end;
  int err;
  if (out == NULL)
    return UV_EINVAL;
  err = herd__value_write_buf(value, options, &buf, &cap, prefix, &end);
  if (err != 0) {
    herd__free(buf);
    return err;
  }
  out->base = buf;
  out->len = end;
  return 0;
}

int herd_value_serialize(const herd_value_t* value,
                         const herd_value_options_t* options, uv_buf_t* out) {
  return herd__value_write(value, options, 0, out);
}
