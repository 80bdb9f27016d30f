/* Values to and from JSON text with JavaScript's JSON.parse() and
 * JSON.stringify() semantics (ECMA-262 sections 25.5.1 and 25.5.2), so a
 * message can cross between Node's `json` and `advanced` serializations
 * the way Node itself would carry it. */
#include "value-int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* JSON.parse() */

typedef struct {
  herd_value_heap_t* heap;
  const char* p;
  const char* end;
  unsigned depth;
  unsigned max_depth;
  char* buf; /* a decoded string or key */
  size_t cap;
} parser_t;

static int parse_value(parser_t* ps, herd_value_t** out);

static void skip_ws(parser_t* ps) {
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static int hex4(const char* p, uint32_t* u) {
  *u = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    *u <<= 4;
    if (c >= '0' && c <= '9')
      *u |= (uint32_t)(c - '0');
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
      *u |= (uint32_t)((c | 0x20) - 'a' + 10);
    else
      return -1;
  }
  return 0;
}

static int buf_room(parser_t* ps, size_t n) {
  if (n > ps->cap) {
    size_t cap = ps->cap < 64 ? 64 : ps->cap;
    char* b;
    while (cap < n)
      cap *= 2;
    b = herd__realloc(ps->buf, cap);
    if (b == NULL)
      return UV_ENOMEM;
    ps->buf = b;
    ps->cap = cap;
  }
  return 0;
}

/* Reads a string literal (at its opening quote) into ps->buf as WTF-8:
 * escapes decoded, \uD83D\uDE00 joined, a lone surrogate escape kept. Raw
 * text must be UTF-8 (no surrogates), as JSON is. */
static int parse_string(parser_t* ps, size_t* len) {
  const char* p = ps->p + 1;
  size_t n = 0;
  int latin1, err;
  size_t units;
  for (;;) {
    const char* run = p;
    while (p < ps->end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
      p++;
    if (p > run) {
      /* Raw text: strict UTF-8 (WTF-8 minus encoded surrogates). */
      if (herd__wtf8_check(run, (size_t)(p - run), &latin1, &units) != 0)
        return HERD_EBADUTF8;
      for (const char* q = run; q + 1 < p; q++)
        if ((unsigned char)q[0] == 0xed && (unsigned char)q[1] >= 0xa0)
          return HERD_EBADUTF8;
      if ((err = buf_room(ps, n + (size_t)(p - run) + 1)) != 0)
        return err;
      memcpy(ps->buf + n, run, (size_t)(p - run));
      n += (size_t)(p - run);
    }
    if (p >= ps->end || (unsigned char)*p < 0x20)
      return HERD_EBADJSON;
    if (*p == '"')
      break;
    /* An escape. */
    if (p + 1 >= ps->end)
      return HERD_EBADJSON;
    if ((err = buf_room(ps, n + 5)) != 0)
      return err;
    switch (p[1]) {
      case '"':
      case '\\':
      case '/':
        ps->buf[n++] = p[1];
        p += 2;
        break;
      case 'b':
        ps->buf[n++] = '\b';
        p += 2;
        break;
      case 'f':
        ps->buf[n++] = '\f';
        p += 2;
        break;
      case 'n':
        ps->buf[n++] = '\n';
        p += 2;
        break;
      case 'r':
        ps->buf[n++] = '\r';
        p += 2;
        break;
      case 't':
        ps->buf[n++] = '\t';
        p += 2;
        break;
      case 'u': {
        uint32_t u, v;
        if (ps->end - p < 6 || hex4(p + 2, &u) != 0)
          return HERD_EBADJSON;
        p += 6;
        if (u >= 0xd800 && u <= 0xdbff && ps->end - p >= 6 && p[0] == '\\' &&
            p[1] == 'u' && hex4(p + 2, &v) == 0 && v >= 0xdc00 && v <= 0xdfff) {
          u = 0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00);
          p += 6;
        }
        /* A half left alone stays a lone surrogate; it cannot pair with
         * raw text, which holds no surrogates. */
        n += herd__utf8_put(ps->buf + n, u);
        break;
      }
      default:
        return HERD_EBADJSON;
    }
  }
  ps->p = p + 1;
  if ((err = buf_room(ps, n + 1)) != 0)
    return err;
  ps->buf[n] = '\0';
  *len = n;
  return 0;
}

static int parse_number(parser_t* ps, herd_value_t** out) {
  const char* p = ps->p;
  char tmp[64];
  char* num;
  double d;
  size_t n;
  if (p < ps->end && *p == '-')
    p++;
  if (p >= ps->end)
    return HERD_EBADJSON;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < ps->end && *p >= '0' && *p <= '9')
      p++;
  } else {
    return HERD_EBADJSON;
  }
  if (p < ps->end && *p == '.') {
    p++;
    if (p >= ps->end || *p < '0' || *p > '9')
      return HERD_EBADJSON;
    while (p < ps->end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < ps->end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < ps->end && (*p == '+' || *p == '-'))
      p++;
    if (p >= ps->end || *p < '0' || *p > '9')
      return HERD_EBADJSON;
    while (p < ps->end && *p >= '0' && *p <= '9')
      p++;
  }
  n = (size_t)(p - ps->p);
  num = n < sizeof(tmp) ? tmp : herd__malloc(n + 1);
  if (num == NULL)
    return UV_ENOMEM;
  memcpy(num, ps->p, n);
  num[n] = '\0';
  d = strtod(num, NULL); /* correctly rounded, as JSON.parse */
  if (num != tmp)
    herd__free(num);
  ps->p = p;
  *out = herd_value_new_number(ps->heap, d);
  return *out != NULL ? 0 : ps->heap->error_;
}

static int literal(parser_t* ps, const char* word, herd_value_t* v,
                   herd_value_t** out) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return HERD_EBADJSON;
  ps->p += n;
  *out = v;
  return 0;
}

static int parse_container(parser_t* ps, int object, herd_value_t** out) {
  herd_value_t* c =
      object ? herd_value_new_object(ps->heap) : herd_value_new_array(ps->heap);
  char close = object ? '}' : ']';
  int err;
  if (c == NULL)
    return ps->heap->error_;
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    *out = c;
    return 0;
  }
  for (;;) {
    herd_value_t* v;
    char* key = NULL;
    size_t key_len = 0;
    skip_ws(ps);
    if (object) {
      if (ps->p >= ps->end || *ps->p != '"')
        return HERD_EBADJSON;
      if ((err = parse_string(ps, &key_len)) != 0)
        return err;
      key = herd__malloc(key_len + 1);
      if (key == NULL)
        return UV_ENOMEM;
      memcpy(key, ps->buf, key_len + 1);
      skip_ws(ps);
      if (ps->p >= ps->end || *ps->p != ':') {
        herd__free(key);
        return HERD_EBADJSON;
      }
      ps->p++;
    }
    err = parse_value(ps, &v);
    if (err == 0)
      err = object ? herd_value_object_setn(c, key, key_len, v)
                   : herd_value_array_push(c, v);
    herd__free(key);
    if (err != 0)
      return err;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      *out = c;
      return 0;
    }
    return HERD_EBADJSON;
  }
}

static int parse_value(parser_t* ps, herd_value_t** out) {
  int err;
  size_t len;
  if (ps->depth >= ps->max_depth)
    return HERD_EVALUELIMIT;
  skip_ws(ps);
  if (ps->p >= ps->end)
    return HERD_EBADJSON;
  switch (*ps->p) {
    case '{':
    case '[':
      ps->depth++;
      err = parse_container(ps, *ps->p == '{', out);
      ps->depth--;
      return err;
    case '"':
      if ((err = parse_string(ps, &len)) != 0)
        return err;
      *out = herd_value_new_string(ps->heap, ps->buf, len);
      return *out != NULL ? 0 : ps->heap->error_;
    case 't':
      return literal(ps, "true", herd_value_boolean(1), out);
    case 'f':
      return literal(ps, "false", herd_value_boolean(0), out);
    case 'n':
      return literal(ps, "null", herd_value_null(), out);
    default:
      return parse_number(ps, out);
  }
}

int herd_value_from_json(herd_value_heap_t* heap, const char* json, size_t len,
                         const herd_value_options_t* options,
                         herd_value_t** out) {
  parser_t ps;
  herd_value_t* mark;
  herd_value_t* v = NULL;
  int saved_error, err;
  if (heap == NULL || out == NULL || (json == NULL && len > 0))
    return UV_EINVAL;
  memset(&ps, 0, sizeof(ps));
  ps.heap = heap;
  ps.p = json;
  ps.end = json + len;
  ps.max_depth = options != NULL && options->max_depth != 0
                     ? options->max_depth
                     : HERD_VALUE_DEFAULT_MAX_DEPTH;
  mark = heap->newest_;
  saved_error = heap->error_;
  heap->error_ = 0;
  err = parse_value(&ps, &v);
  if (err == 0) {
    skip_ws(&ps);
    if (ps.p != ps.end)
      err = HERD_EBADJSON;
  }
  if (err == UV_EINVAL)
    err = HERD_EBADJSON; /* a rejected key: bad text inside the JSON */
  heap->error_ = saved_error;
  herd__free(ps.buf);
  if (err != 0) {
    herd__value_rollback(heap, mark);
    return err;
  }
  *out = v;
  return 0;
}

/* JSON.stringify() */

typedef struct {
  char* buf;
  size_t len;
  size_t cap;
  const herd_value_t** open; /* containers being written: meeting one
                                again is a cycle */
  size_t nopen;
  size_t cap_open;
  size_t max_len;
  unsigned depth;
  unsigned max_depth;
  int err;
} out_t;

/* V8's longest string (String::kMaxLength on 64-bit): JSON.stringify()
 * throws a RangeError past it. */
#define JSON_MAX_LEN ((1u << 29) - 24)

static void emit(out_t* o, const char* s, size_t n) {
  if (o->err != 0)
    return;
  if (n > o->max_len - o->len) {
    o->err = HERD_EVALUELIMIT;
    return;
  }
  if (o->len + n + 1 > o->cap) {
    size_t cap = o->cap < 256 ? 256 : o->cap;
    char* b;
    while (cap < o->len + n + 1)
      cap *= 2;
    b = herd__realloc(o->buf, cap);
    if (b == NULL) {
      o->err = UV_ENOMEM;
      return;
    }
    o->buf = b;
    o->cap = cap;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

static void emits(out_t* o, const char* s) {
  emit(o, s, strlen(s));
}

static void emit_number(out_t* o, double d) {
  char tmp[40];
  if (isnan(d) || isinf(d)) {
    emits(o, "null");
    return;
  }
  emit(o, tmp, herd__js_number_to_string(d, tmp));
}

/* QuoteJSONString(): the short escapes, \u00XX for other controls, and
 * \uDXXX for a lone surrogate (well-formed JSON.stringify). */
static void emit_string(out_t* o, const char* s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char* p = (const unsigned char*)s;
  size_t i = 0, run = 0;
  emit(o, "\"", 1);
  while (i < len) {
    unsigned char c = p[i];
    char esc[8];
    size_t n = 0, adv = 1;
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      n = 2;
    } else if (c < 0x20) {
      static const char short_esc[] = "btn\0fr";
      esc[0] = '\\';
      if (c >= '\b' && c <= '\r' && c != 0x0b) {
        esc[1] = short_esc[c - '\b'];
        n = 2;
      } else {
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        n = 6;
      }
    } else if (c == 0xed && i + 2 < len && p[i + 1] >= 0xa0) {
      uint32_t u =
          0xd000 | ((uint32_t)(p[i + 1] & 0x3f) << 6) | (p[i + 2] & 0x3f);
      esc[0] = '\\';
      esc[1] = 'u';
      esc[2] = hex[(u >> 12) & 15];
      esc[3] = hex[(u >> 8) & 15];
      esc[4] = hex[(u >> 4) & 15];
      esc[5] = hex[u & 15];
      n = 6;
      adv = 3;
    }
    if (n == 0) {
      i++;
      run++;
      continue;
    }
    emit(o, s + i - run, run);
    run = 0;
    emit(o, esc, n);
    i += adv;
  }
  emit(o, s + i - run, run);
  emit(o, "\"", 1);
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil(int64_t days, int64_t* y, unsigned* m, unsigned* d) {
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

/* Date.prototype.toJSON(): toISOString(), or null for an invalid date. */
static void emit_date(out_t* o, double t) {
  char tmp[48];
  int64_t ms, days, rem, y;
  unsigned mo, d;
  if (isnan(t) || isinf(t) || t > 8.64e15 || t < -8.64e15) {
    emits(o, "null");
    return;
  }
  ms = (int64_t)t;
  days = ms / 86400000;
  rem = ms % 86400000;
  if (rem < 0) {
    rem += 86400000;
    days--;
  }
  civil(days, &y, &mo, &d);
  if (y >= 0 && y <= 9999)
    snprintf(tmp, sizeof(tmp), "\"%04d", (int)y);
  else
    snprintf(tmp, sizeof(tmp), "\"%c%06d", y < 0 ? '-' : '+',
             (int)(y < 0 ? -y : y));
  emits(o, tmp);
  snprintf(tmp, sizeof(tmp), "-%02u-%02uT%02d:%02d:%02d.%03dZ\"", mo, d,
           (int)(rem / 3600000), (int)(rem / 60000 % 60),
           (int)(rem / 1000 % 60), (int)(rem % 1000));
  emits(o, tmp);
}

/* x * 2^e, exactly, for the small exponents of half floats. */
static double scale2(double x, int e) {
  for (; e > 0; e--)
    x *= 2;
  for (; e < 0; e++)
    x /= 2;
  return x;
}

static double half_to_double(uint16_t h) {
  int e = (h >> 10) & 0x1f;
  double m = h & 0x3ff;
  double v;
  if (e == 0)
    v = scale2(m, -24);
  else if (e == 31)
    v = m != 0 ? NAN : INFINITY;
  else
    v = scale2(m + 1024, e - 25);
  return (h & 0x8000) ? -v : v;
}

/* One element of a typed array as a JavaScript number; -1 for the BigInt
 * kinds, which JSON.stringify() refuses. */
static int view_element(const herd_value_t* v, size_t i, double* d) {
  const uint8_t* b = v->u.buf.bytes;
  switch ((herd_view_kind_t)v->kind) {
    case HERD_VIEW_INT8:
      *d = (int8_t)b[i];
      return 0;
    case HERD_VIEW_UINT8:
    case HERD_VIEW_UINT8_CLAMPED:
    case HERD_VIEW_BUFFER:
      *d = b[i];
      return 0;
#define ELEM(kind, type)                      \
  case kind: {                                \
    type x;                                   \
    memcpy(&x, b + i * sizeof(x), sizeof(x)); \
    *d = (double)x;                           \
    return 0;                                 \
  }
      ELEM(HERD_VIEW_INT16, int16_t)
      ELEM(HERD_VIEW_UINT16, uint16_t)
      ELEM(HERD_VIEW_INT32, int32_t)
      ELEM(HERD_VIEW_UINT32, uint32_t)
      ELEM(HERD_VIEW_FLOAT32, float)
      ELEM(HERD_VIEW_FLOAT64, double)
#undef ELEM
    case HERD_VIEW_FLOAT16: {
      uint16_t x;
      memcpy(&x, b + i * 2, 2);
      *d = half_to_double(x);
      return 0;
    }
    default:
      return -1;
  }
}

static int json_skipped(const herd_value_t* v) {
  return v->type == HERD_VALUE_UNDEFINED;
}

static void stringify(out_t* o, const herd_value_t* v);

/* An object's members in JavaScript's order: array-index keys ascending,
 * then the others as they were set. */
static int key_cmp(const void* x, const void* y) {
  uint32_t a = 0, b = 0;
  const herd__prop_t* p = *(const herd__prop_t* const*)x;
  const herd__prop_t* q = *(const herd__prop_t* const*)y;
  herd__value_array_index(p->key, p->key_len, &a);
  herd__value_array_index(q->key, q->key_len, &b);
  return a < b ? -1 : a > b;
}

static void stringify_object(out_t* o, const herd_value_t* v) {
  const herd__prop_t** order;
  size_t n = v->u.obj.nprops, nindex = 0, k = 0;
  int first = 1;
  uint32_t index;
  if (n == 0) {
    emits(o, "{}");
    return;
  }
  order = herd__malloc(n * sizeof(*order));
  if (order == NULL) {
    o->err = o->err != 0 ? o->err : UV_ENOMEM;
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (herd__value_array_index(v->u.obj.props[i].key,
                                v->u.obj.props[i].key_len, &index))
      order[nindex++] = &v->u.obj.props[i];
  qsort(order, nindex, sizeof(*order), key_cmp);
  k = nindex;
  for (size_t i = 0; i < n; i++)
    if (!herd__value_array_index(v->u.obj.props[i].key,
                                 v->u.obj.props[i].key_len, &index))
      order[k++] = &v->u.obj.props[i];
  emit(o, "{", 1);
  for (size_t i = 0; i < n && o->err == 0; i++) {
    if (json_skipped(order[i]->value))
      continue;
    if (!first)
      emit(o, ",", 1);
    first = 0;
    emit_string(o, order[i]->key, order[i]->key_len);
    emit(o, ":", 1);
    stringify(o, order[i]->value);
  }
  emit(o, "}", 1);
  herd__free(order);
}

static void stringify_view(out_t* o, const herd_value_t* v) {
  size_t es = herd_view_element_size((herd_view_kind_t)v->kind);
  size_t n = v->u.buf.len / es;
  char key[32];
  if (v->kind == HERD_VIEW_BUFFER) { /* Buffer.prototype.toJSON() */
    emits(o, "{\"type\":\"Buffer\",\"data\":[");
    for (size_t i = 0; i < n; i++) {
      snprintf(key, sizeof(key), i ? ",%u" : "%u", v->u.buf.bytes[i]);
      emits(o, key);
    }
    emits(o, "]}");
    return;
  }
  if (v->kind == HERD_VIEW_DATA_VIEW) {
    emits(o, "{}");
    return;
  }
  emit(o, "{", 1);
  for (size_t i = 0; i < n && o->err == 0; i++) {
    double d;
    if (view_element(v, i, &d) != 0) {
      o->err = UV_EINVAL; /* "Do not know how to serialize a BigInt" */
      return;
    }
    snprintf(key, sizeof(key), i ? ",\"%zu\":" : "\"%zu\":", i);
    emits(o, key);
    emit_number(o, d);
  }
  emit(o, "}", 1);
}

static void stringify(out_t* o, const herd_value_t* v) {
  if (o->err != 0)
    return;
  switch (v->type) {
    case HERD_VALUE_NULL:
    case HERD_VALUE_UNDEFINED: /* only inside an array: null */
      emits(o, "null");
      return;
    case HERD_VALUE_BOOLEAN:
      emits(o, v->kind ? "true" : "false");
      return;
    case HERD_VALUE_NUMBER:
      emit_number(o, v->u.number);
      return;
    case HERD_VALUE_STRING:
      emit_string(o, v->u.str.s, v->u.str.len);
      return;
    case HERD_VALUE_BIGINT:
      o->err = UV_EINVAL;
      return;
    case HERD_VALUE_DATE:
      emit_date(o, v->u.number);
      return;
    case HERD_VALUE_BOXED:
      if (v->u.boxed->type == HERD_VALUE_BIGINT)
        o->err = UV_EINVAL;
      else
        stringify(o, v->u.boxed);
      return;
    default:
      break;
  }
  if (o->depth >= o->max_depth) {
    o->err = HERD_EVALUELIMIT;
    return;
  }
  for (size_t i = 0; i < o->nopen; i++) {
    if (o->open[i] == v) {
      o->err = UV_EINVAL; /* "Converting circular structure to JSON" */
      return;
    }
  }
  if (o->nopen == o->cap_open) {
    size_t cap = o->cap_open == 0 ? 16 : o->cap_open * 2;
    const herd_value_t** p = herd__realloc(o->open, cap * sizeof(*p));
    if (p == NULL) {
      o->err = UV_ENOMEM;
      return;
    }
    o->open = p;
    o->cap_open = cap;
  }
  o->open[o->nopen++] = v;
  o->depth++;
  switch (v->type) {
    case HERD_VALUE_OBJECT:
      stringify_object(o, v);
      break;
    case HERD_VALUE_ARRAY: {
      size_t k = 0;
      /* Each element takes a character and a comma at least: a huge
       * sparse array fails at once, not after gigabytes of nulls. */
      if ((uint64_t)v->u.obj.length * 2 > o->max_len - o->len) {
        o->err = HERD_EVALUELIMIT;
        break;
      }
      emit(o, "[", 1);
      for (uint32_t i = 0; i < v->u.obj.length && o->err == 0; i++) {
        if (i > 0)
          emit(o, ",", 1);
        if (k < v->u.obj.nelems && v->u.obj.elems[k].index == i)
          stringify(o, v->u.obj.elems[k++].value);
        else
          emits(o, "null");
      }
      emit(o, "]", 1);
      break;
    }
    case HERD_VALUE_VIEW:
      stringify_view(o, v);
      break;
    default: /* Map, Set, RegExp, ArrayBuffer, Error: no own enumerable
                properties */
      emits(o, "{}");
      break;
  }
  o->depth--;
  o->nopen--;
}

int herd_value_to_json(const herd_value_t* value,
                       const herd_value_options_t* options, uv_buf_t* out) {
  out_t o;
  if (value == NULL || out == NULL || value->type == HERD_VALUE_UNDEFINED)
    return UV_EINVAL;
  memset(&o, 0, sizeof(o));
  o.max_depth = options != NULL && options->max_depth != 0
                    ? options->max_depth
                    : HERD_VALUE_DEFAULT_MAX_DEPTH;
  o.max_len = JSON_MAX_LEN;
  if (options != NULL && options->max_bytes != 0 &&
      options->max_bytes < o.max_len)
    o.max_len = options->max_bytes;
  stringify(&o, value);
  emit(&o, "", 0);
  herd__free(o.open);
  if (o.err != 0) {
    herd__free(o.buf);
    return o.err;
  }
  o.buf[o.len] = '\0';
  out->base = o.buf;
  out->len = o.len;
  return 0;
}
