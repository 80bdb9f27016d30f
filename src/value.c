/* The value model: heaps, constructors, accessors, and the string, key and
 * identity helpers the serializer (value_write.c) and the deserializer
 * (value_read.c) share. */
#include "value-int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char herd__re_letters[HERD__RE_FLAG_COUNT] = {'g', 'i', 'm', 'y', 'u',
                                                    's', 'l', 'd', 'v'};

/* The order RegExp.prototype.flags lists them in. */
static const char re_flag_order[] = "dgimsuvy";

static herd_value_t const_undefined = {.type = HERD_VALUE_UNDEFINED};
static herd_value_t const_null = {.type = HERD_VALUE_NULL};
static herd_value_t const_true = {.type = HERD_VALUE_BOOLEAN, .kind = 1};
static herd_value_t const_false = {.type = HERD_VALUE_BOOLEAN, .kind = 0};

#define NODE_HEAD  offsetof(herd_value_t, u)
#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

void herd_value_heap_init(herd_value_heap_t* heap) {
  void* data = heap->data;
  memset(heap, 0, sizeof(*heap));
  heap->data = data;
}

static void node_free(herd_value_heap_t* heap, herd_value_t* v) {
  size_t i;
  switch (v->type) {
    case HERD_VALUE_OBJECT:
    case HERD_VALUE_ARRAY:
      for (i = 0; i < v->u.obj.nprops; i++)
        herd__value_mem_free(heap, v->u.obj.props[i].key,
                             v->u.obj.props[i].key_len + 1);
      herd__value_mem_free(heap, v->u.obj.props,
                           v->u.obj.cap_props * sizeof(herd__prop_t));
      herd__value_mem_free(heap, v->u.obj.index,
                           v->u.obj.index_cap * sizeof(uint32_t));
      herd__value_mem_free(heap, v->u.obj.elems,
                           v->u.obj.cap_elems * sizeof(herd__elem_t));
      break;
    case HERD_VALUE_MAP:
    case HERD_VALUE_SET:
      herd__value_mem_free(heap, v->u.list.items,
                           v->u.list.cap * sizeof(herd_value_t*));
      break;
    default:
      break;
  }
  heap->bytes_ -= v->size;
  herd__free(v);
}

void herd__value_rollback(herd_value_heap_t* heap, herd_value_t* mark) {
  while (heap->newest_ != mark) {
    herd_value_t* v = heap->newest_;
    heap->newest_ = v->next;
    node_free(heap, v);
  }
}

void herd_value_heap_free(herd_value_heap_t* heap) {
  herd__value_rollback(heap, NULL);
  herd_value_heap_init(heap);
}

size_t herd_value_heap_size(const herd_value_heap_t* heap) {
  return heap->bytes_;
}

int herd_value_heap_error(const herd_value_heap_t* heap) {
  return heap->error_;
}

/* Whether `size` more bytes fit under the heap's limit; sets the error. */
static int heap_admit(herd_value_heap_t* heap, size_t size) {
  if (heap->limit_ != 0 &&
      (size > heap->limit_ || heap->bytes_ > heap->limit_ - size)) {
    heap->error_ = HERD_EVALUELIMIT;
    return 0;
  }
  return 1;
}

herd_value_t* herd__value_alloc(herd_value_heap_t* heap, int type,
                                size_t payload, size_t extra,
                                void** extra_out) {
  size_t head = ALIGN16(NODE_HEAD + payload);
  size_t size;
  herd_value_t* v;
  if (extra > SIZE_MAX - head) {
    heap->error_ = UV_ENOMEM;
    return NULL;
  }
  size = head + extra;
  if (!heap_admit(heap, size))
    return NULL;
  v = herd__malloc(size);
  if (v == NULL) {
    heap->error_ = UV_ENOMEM;
    return NULL;
  }
  memset(v, 0, head);
  v->heap = heap;
  v->size = size;
  v->type = (uint8_t)type;
  v->next = heap->newest_;
  heap->newest_ = v;
  heap->bytes_ += size;
  if (extra_out != NULL)
    *extra_out = (char*)v + head;
  return v;
}

void* herd__value_mem_realloc(herd_value_heap_t* heap, void* p, size_t old_size,
                              size_t new_size) {
  void* q;
  if (new_size > old_size && !heap_admit(heap, new_size - old_size))
    return NULL;
  q = herd__realloc(p, new_size);
  if (q == NULL) {
    heap->error_ = UV_ENOMEM;
    return NULL;
  }
  heap->bytes_ = heap->bytes_ - old_size + new_size;
  return q;
}

void herd__value_mem_free(herd_value_heap_t* heap, void* p, size_t size) {
  if (p == NULL)
    return;
  heap->bytes_ -= size;
  herd__free(p);
}

/* Grows a vector of `elem` bytes per item to hold at least `need` items. */
static int vec_grow(herd_value_heap_t* heap, void** items, size_t* cap,
                    size_t need, size_t elem) {
  size_t ncap;
  void* p;
  if (need <= *cap)
    return 0;
  ncap = *cap < 4 ? 4 : *cap;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / elem) {
      heap->error_ = UV_ENOMEM;
      return UV_ENOMEM;
    }
    ncap *= 2;
  }
  if (ncap > SIZE_MAX / elem) {
    heap->error_ = UV_ENOMEM;
    return UV_ENOMEM;
  }
  p = herd__value_mem_realloc(heap, *items, *cap * elem, ncap * elem);
  if (p == NULL)
    return heap->error_;
  *items = p;
  *cap = ncap;
  return 0;
}

/* Constructors. */

herd_value_t* herd_value_undefined(void) {
  return &const_undefined;
}

herd_value_t* herd_value_null(void) {
  return &const_null;
}

herd_value_t* herd_value_boolean(int b) {
  return b ? &const_true : &const_false;
}

herd_value_t* herd_value_new_number(herd_value_heap_t* heap, double d) {
  herd_value_t* v =
      herd__value_alloc(heap, HERD_VALUE_NUMBER, sizeof(double), 0, NULL);
  if (v != NULL)
    v->u.number = d;
  return v;
}

herd_value_t* herd_value_new_bigint(herd_value_heap_t* heap, int negative,
                                    const uint8_t* magnitude, size_t len) {
  herd_value_t* v;
  void* digits;
  while (len > 0 && magnitude[len - 1] == 0)
    len--;
  v = herd__value_alloc(heap, HERD_VALUE_BIGINT, sizeof(v->u.bigint), len,
                        &digits);
  if (v == NULL)
    return NULL;
  if (len > 0)
    memcpy(digits, magnitude, len);
  v->u.bigint.mag = digits;
  v->u.bigint.len = len;
  v->u.bigint.negative = len > 0 && negative;
  return v;
}

herd_value_t* herd_value_new_bigint_int64(herd_value_heap_t* heap, int64_t i) {
  uint8_t mag[8];
  uint64_t u = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
  for (int k = 0; k < 8; k++)
    mag[k] = (uint8_t)(u >> (8 * k));
  return herd_value_new_bigint(heap, i < 0, mag, sizeof(mag));
}

herd_value_t* herd__value_string_raw(herd_value_heap_t* heap, size_t len,
                                     char** bytes) {
  herd_value_t* v;
  void* s;
  if (len == SIZE_MAX) {
    heap->error_ = UV_ENOMEM;
    return NULL;
  }
  v = herd__value_alloc(heap, HERD_VALUE_STRING, sizeof(v->u.str), len + 1, &s);
  if (v == NULL)
    return NULL;
  v->u.str.s = s;
  v->u.str.len = len;
  v->u.str.s[len] = '\0';
  *bytes = s;
  return v;
}

herd_value_t* herd_value_new_string(herd_value_heap_t* heap, const char* s,
                                    size_t len) {
  herd_value_t* v;
  char* out;
  int latin1;
  size_t units;
  if (s == NULL && len > 0) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  if (herd__wtf8_check(s, len, &latin1, &units) != 0) {
    heap->error_ = HERD_EBADUTF8;
    return NULL;
  }
  v = herd__value_string_raw(heap, len, &out);
  if (v != NULL && len > 0)
    memcpy(out, s, len);
  return v;
}

herd_value_t* herd_value_new_string_utf16(herd_value_heap_t* heap,
                                          const uint16_t* units, size_t len) {
  herd_value_t* v;
  char* out;
  size_t n;
  if (units == NULL && len > 0) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  if (len > SIZE_MAX / 3) {
    heap->error_ = UV_ENOMEM;
    return NULL;
  }
  n = herd__utf16_wtf8_len((const uint8_t*)units, len);
  v = herd__value_string_raw(heap, n, &out);
  if (v != NULL)
    herd__utf16_to_wtf8((const uint8_t*)units, len, out);
  return v;
}

herd_value_t* herd_value_new_object(herd_value_heap_t* heap) {
  herd_value_t dummy;
  return herd__value_alloc(heap, HERD_VALUE_OBJECT, sizeof(dummy.u.obj), 0,
                           NULL);
}

herd_value_t* herd_value_new_array(herd_value_heap_t* heap) {
  herd_value_t dummy;
  return herd__value_alloc(heap, HERD_VALUE_ARRAY, sizeof(dummy.u.obj), 0,
                           NULL);
}

herd_value_t* herd_value_new_date(herd_value_heap_t* heap, double ms) {
  herd_value_t* v =
      herd__value_alloc(heap, HERD_VALUE_DATE, sizeof(double), 0, NULL);
  if (v != NULL)
    v->u.number = ms;
  return v;
}

static void re_letters(herd_value_t* v) {
  size_t n = 0;
  for (const char* c = re_flag_order; *c != '\0'; c++)
    for (int bit = 0; bit < HERD__RE_FLAG_COUNT; bit++)
      if (herd__re_letters[bit] == *c && (v->u.re.flags & (1u << bit)))
        v->u.re.letters[n++] = *c;
  v->u.re.letters[n] = '\0';
}

herd_value_t* herd_value_new_regexp(herd_value_heap_t* heap, const char* source,
                                    size_t len, const char* flags) {
  herd_value_t* v;
  void* s;
  uint32_t bits = 0;
  int latin1;
  size_t units;
  for (const char* c = flags; c != NULL && *c != '\0'; c++) {
    const char* known = strchr(re_flag_order, *c);
    int bit;
    if (known == NULL) {
      heap->error_ = UV_EINVAL;
      return NULL;
    }
    for (bit = 0; herd__re_letters[bit] != *c; bit++)
      ;
    if (bits & (1u << bit)) {
      heap->error_ = UV_EINVAL;
      return NULL;
    }
    bits |= 1u << bit;
  }
  if ((bits & HERD__RE_UNICODE) && (bits & HERD__RE_UNICODE_SETS)) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  if ((source == NULL && len > 0) || len == SIZE_MAX) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  if (herd__wtf8_check(source, len, &latin1, &units) != 0) {
    heap->error_ = HERD_EBADUTF8;
    return NULL;
  }
  v = herd__value_alloc(heap, HERD_VALUE_REGEXP, sizeof(v->u.re), len + 1, &s);
  if (v == NULL)
    return NULL;
  v->u.re.s = s;
  v->u.re.len = len;
  if (len > 0)
    memcpy(s, source, len);
  v->u.re.s[len] = '\0';
  v->u.re.flags = bits;
  re_letters(v);
  return v;
}

herd_value_t* herd__value_regexp_raw(herd_value_heap_t* heap, const char* s,
                                     size_t len, uint32_t flags) {
  herd_value_t* v = herd_value_new_regexp(heap, s, len, NULL);
  if (v != NULL) {
    v->u.re.flags = flags;
    re_letters(v);
  }
  return v;
}

herd_value_t* herd_value_new_map(herd_value_heap_t* heap) {
  herd_value_t dummy;
  return herd__value_alloc(heap, HERD_VALUE_MAP, sizeof(dummy.u.list), 0, NULL);
}

herd_value_t* herd_value_new_set(herd_value_heap_t* heap) {
  herd_value_t dummy;
  return herd__value_alloc(heap, HERD_VALUE_SET, sizeof(dummy.u.list), 0, NULL);
}

static herd_value_t* new_bytes(herd_value_heap_t* heap, int type,
                               const void* bytes, size_t len) {
  herd_value_t* v;
  void* data;
  if (len > UINT32_MAX) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  v = herd__value_alloc(heap, type, sizeof(v->u.buf), len, &data);
  if (v == NULL)
    return NULL;
  if (len > 0) {
    if (bytes != NULL)
      memcpy(data, bytes, len);
    else
      memset(data, 0, len);
  }
  v->u.buf.bytes = data;
  v->u.buf.len = len;
  v->u.buf.max_len = len;
  return v;
}

herd_value_t* herd_value_new_array_buffer(herd_value_heap_t* heap,
                                          const void* bytes, size_t len) {
  return new_bytes(heap, HERD_VALUE_ARRAY_BUFFER, bytes, len);
}

herd_value_t* herd_value_new_array_buffer_resizable(herd_value_heap_t* heap,
                                                    const void* bytes,
                                                    size_t len,
                                                    size_t max_len) {
  herd_value_t* v;
  if (len > max_len || max_len > UINT32_MAX) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  v = new_bytes(heap, HERD_VALUE_ARRAY_BUFFER, bytes, len);
  if (v != NULL) {
    v->flag = 1;
    v->u.buf.max_len = max_len;
  }
  return v;
}

size_t herd_view_element_size(herd_view_kind_t kind) {
  switch (kind) {
    case HERD_VIEW_INT8:
    case HERD_VIEW_UINT8:
    case HERD_VIEW_UINT8_CLAMPED:
    case HERD_VIEW_DATA_VIEW:
    case HERD_VIEW_BUFFER:
      return 1;
    case HERD_VIEW_INT16:
    case HERD_VIEW_UINT16:
    case HERD_VIEW_FLOAT16:
      return 2;
    case HERD_VIEW_INT32:
    case HERD_VIEW_UINT32:
    case HERD_VIEW_FLOAT32:
      return 4;
    case HERD_VIEW_FLOAT64:
    case HERD_VIEW_BIGINT64:
    case HERD_VIEW_BIGUINT64:
      return 8;
  }
  return 0;
}

herd_value_t* herd_value_new_view(herd_value_heap_t* heap,
                                  herd_view_kind_t kind, const void* bytes,
                                  size_t len) {
  size_t es = herd_view_element_size(kind);
  herd_value_t* v;
  if (es == 0 || len % es != 0) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  v = new_bytes(heap, HERD_VALUE_VIEW, bytes, len);
  if (v != NULL)
    v->kind = (uint8_t)kind;
  return v;
}

herd_value_t* herd_value_new_buffer(herd_value_heap_t* heap, const void* bytes,
                                    size_t len) {
  return herd_value_new_view(heap, HERD_VIEW_BUFFER, bytes, len);
}

/* 0 when `member` may go into a container of `heap`, else the error. */
static int member_ok(herd_value_heap_t* heap, const herd_value_t* member) {
  if (member == NULL)
    return heap->error_ != 0 ? heap->error_ : UV_EINVAL;
  if (member->heap != NULL && member->heap != heap)
    return UV_EINVAL;
  return 0;
}

herd_value_t* herd_value_new_boxed(herd_value_heap_t* heap,
                                   herd_value_t* primitive) {
  herd_value_t* v;
  int err = member_ok(heap, primitive);
  if (err != 0) {
    heap->error_ = err;
    return NULL;
  }
  switch (primitive->type) {
    case HERD_VALUE_BOOLEAN:
    case HERD_VALUE_NUMBER:
    case HERD_VALUE_BIGINT:
    case HERD_VALUE_STRING:
      break;
    default:
      heap->error_ = UV_EINVAL;
      return NULL;
  }
  v = herd__value_alloc(heap, HERD_VALUE_BOXED, sizeof(v->u.boxed), 0, NULL);
  if (v != NULL)
    v->u.boxed = primitive;
  return v;
}

herd_value_t* herd_value_new_error(herd_value_heap_t* heap,
                                   herd_js_error_kind_t kind,
                                   herd_value_t* message, herd_value_t* stack) {
  herd_value_t* v;
  if ((unsigned)kind > HERD_JS_URI_ERROR ||
      (message != NULL &&
       (member_ok(heap, message) != 0 || message->type != HERD_VALUE_STRING)) ||
      (stack != NULL &&
       (member_ok(heap, stack) != 0 || stack->type != HERD_VALUE_STRING))) {
    heap->error_ = UV_EINVAL;
    return NULL;
  }
  v = herd__value_alloc(heap, HERD_VALUE_ERROR, sizeof(v->u.err), 0, NULL);
  if (v == NULL)
    return NULL;
  v->kind = (uint8_t)kind;
  v->u.err.message = message;
  v->u.err.stack = stack;
  return v;
}

/* Properties. */

static uint64_t hash_seed;
static uv_once_t hash_once = UV_ONCE_INIT;

/* A per-process random seed, so a peer cannot choose keys that collide. */
static void hash_seed_init(void) {
  if (uv_random(NULL, NULL, &hash_seed, sizeof(hash_seed), 0, NULL) != 0)
    hash_seed = (uint64_t)(uintptr_t)&hash_seed * 0x9e3779b97f4a7c15u;
}

static uint32_t key_hash(const char* k, size_t n) {
  uint64_t h = hash_seed ^ (n * 0x9e3779b97f4a7c15u);
  uint64_t w;
  while (n >= 8) {
    memcpy(&w, k, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9u;
    h ^= h >> 31;
    k += 8;
    n -= 8;
  }
  w = 0;
  if (n > 0)
    memcpy(&w, k, n);
  h = (h ^ w) * 0x94d049bb133111ebu;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9u;
  h ^= h >> 32;
  return (uint32_t)h;
}

static void index_insert(uint32_t* index, size_t cap, const herd__prop_t* p,
                         uint32_t slot_value) {
  size_t mask = cap - 1;
  size_t i = key_hash(p->key, p->key_len) & mask;
  while (index[i] != 0)
    i = (i + 1) & mask;
  index[i] = slot_value;
}

/* Rebuilds the hash index with room for `need` properties. */
static int index_rebuild(herd_value_t* o, size_t need) {
  herd_value_heap_t* heap = o->heap;
  size_t cap = 16;
  uint32_t* index;
  uv_once(&hash_once, hash_seed_init);
  while (cap < need * 2)
    cap *= 2;
  if (!heap_admit(heap, cap * sizeof(uint32_t)))
    return heap->error_;
  index = herd__calloc(cap, sizeof(uint32_t));
  if (index == NULL) {
    heap->error_ = UV_ENOMEM;
    return UV_ENOMEM;
  }
  heap->bytes_ += cap * sizeof(uint32_t);
  herd__value_mem_free(heap, o->u.obj.index,
                       o->u.obj.index_cap * sizeof(uint32_t));
  o->u.obj.index = index;
  o->u.obj.index_cap = cap;
  for (size_t i = 0; i < o->u.obj.nprops; i++)
    index_insert(index, cap, &o->u.obj.props[i], (uint32_t)i + 1);
  return 0;
}

ptrdiff_t herd__value_prop_find(const herd_value_t* o, const char* key,
                                size_t key_len) {
  if (o->u.obj.index != NULL) {
    size_t mask = o->u.obj.index_cap - 1;
    size_t i = key_hash(key, key_len) & mask;
    for (; o->u.obj.index[i] != 0; i = (i + 1) & mask) {
      const herd__prop_t* p = &o->u.obj.props[o->u.obj.index[i] - 1];
      if (p->key_len == key_len && memcmp(p->key, key, key_len) == 0)
        return (ptrdiff_t)o->u.obj.index[i] - 1;
    }
    return -1;
  }
  for (size_t i = 0; i < o->u.obj.nprops; i++) {
    const herd__prop_t* p = &o->u.obj.props[i];
    if (p->key_len == key_len && memcmp(p->key, key, key_len) == 0)
      return (ptrdiff_t)i;
  }
  return -1;
}

#define INDEX_FROM 8

int herd__value_prop_append(herd_value_t* o, const char* key, size_t key_len,
                            herd_value_t* value) {
  herd_value_heap_t* heap = o->heap;
  herd__prop_t* p;
  char* k;
  int err;
  size_t n = o->u.obj.nprops;
  if (n >= UINT32_MAX - 1 || key_len == SIZE_MAX) {
    heap->error_ = UV_ENOMEM;
    return UV_ENOMEM;
  }
  err = vec_grow(heap, (void**)&o->u.obj.props, &o->u.obj.cap_props, n + 1,
                 sizeof(herd__prop_t));
  if (err != 0)
    return err;
  if (n + 1 >= INDEX_FROM && (n + 1) * 2 > o->u.obj.index_cap) {
    err = index_rebuild(o, (n + 1) * 2);
    if (err != 0)
      return err;
  }
  if (!heap_admit(heap, key_len + 1))
    return heap->error_;
  k = herd__malloc(key_len + 1);
  if (k == NULL) {
    heap->error_ = UV_ENOMEM;
    return UV_ENOMEM;
  }
  heap->bytes_ += key_len + 1;
  if (key_len > 0)
    memcpy(k, key, key_len);
  k[key_len] = '\0';
  p = &o->u.obj.props[n];
  p->key = k;
  p->key_len = key_len;
  p->value = value;
  o->u.obj.nprops = n + 1;
  if (o->u.obj.index != NULL)
    index_insert(o->u.obj.index, o->u.obj.index_cap, p, (uint32_t)n + 1);
  return 0;
}

int herd__value_array_index(const char* key, size_t len, uint32_t* index) {
  uint64_t n = 0;
  if (len == 0 || len > 10 || (key[0] == '0' && len > 1))
    return 0;
  for (size_t i = 0; i < len; i++) {
    if (key[i] < '0' || key[i] > '9')
      return 0;
    n = n * 10 + (uint64_t)(key[i] - '0');
  }
  if (n > HERD__MAX_ARRAY_INDEX)
    return 0;
  *index = (uint32_t)n;
  return 1;
}

/* Elements. */

/* The first element whose index is >= `index`. */
static size_t elem_lower_bound(const herd_value_t* a, uint32_t index) {
  size_t lo = 0, hi = a->u.obj.nelems;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a->u.obj.elems[mid].index < index)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

int herd__value_elem_append(herd_value_t* a, uint32_t index,
                            herd_value_t* value) {
  int err = vec_grow(a->heap, (void**)&a->u.obj.elems, &a->u.obj.cap_elems,
                     a->u.obj.nelems + 1, sizeof(herd__elem_t));
  if (err != 0)
    return err;
  a->u.obj.elems[a->u.obj.nelems].index = index;
  a->u.obj.elems[a->u.obj.nelems].value = value;
  a->u.obj.nelems++;
  if (index >= a->u.obj.length)
    a->u.obj.length = index + 1;
  return 0;
}

static int elem_cmp(const void* x, const void* y) {
  uint32_t a = ((const herd__elem_t*)x)->index;
  uint32_t b = ((const herd__elem_t*)y)->index;
  return a < b ? -1 : a > b;
}

int herd__value_elems_sort(herd_value_t* a) {
  size_t i, n = a->u.obj.nelems;
  for (i = 1; i < n; i++)
    if (a->u.obj.elems[i - 1].index >= a->u.obj.elems[i].index)
      break;
  if (i >= n)
    return 0;
  qsort(a->u.obj.elems, n, sizeof(herd__elem_t), elem_cmp);
  for (i = 1; i < n; i++)
    if (a->u.obj.elems[i - 1].index == a->u.obj.elems[i].index)
      return HERD_EBADVALUE;
  return 0;
}

int herd_value_array_set(herd_value_t* a, uint32_t index, herd_value_t* value) {
  size_t pos;
  int err;
  if (a == NULL || a->type != HERD_VALUE_ARRAY || index > HERD__MAX_ARRAY_INDEX)
    return UV_EINVAL;
  err = member_ok(a->heap, value);
  if (err != 0)
    return err;
  pos = elem_lower_bound(a, index);
  if (pos < a->u.obj.nelems && a->u.obj.elems[pos].index == index) {
    a->u.obj.elems[pos].value = value;
    return 0;
  }
  if (pos == a->u.obj.nelems)
    return herd__value_elem_append(a, index, value);
  err = vec_grow(a->heap, (void**)&a->u.obj.elems, &a->u.obj.cap_elems,
                 a->u.obj.nelems + 1, sizeof(herd__elem_t));
  if (err != 0)
    return err;
  memmove(&a->u.obj.elems[pos + 1], &a->u.obj.elems[pos],
          (a->u.obj.nelems - pos) * sizeof(herd__elem_t));
  a->u.obj.elems[pos].index = index;
  a->u.obj.elems[pos].value = value;
  a->u.obj.nelems++;
  if (index >= a->u.obj.length)
    a->u.obj.length = index + 1;
  return 0;
}

int herd_value_array_push(herd_value_t* a, herd_value_t* value) {
  if (a == NULL || a->type != HERD_VALUE_ARRAY ||
      a->u.obj.length > HERD__MAX_ARRAY_INDEX)
    return UV_EINVAL;
  return herd_value_array_set(a, a->u.obj.length, value);
}

int herd_value_array_set_length(herd_value_t* a, uint32_t length) {
  if (a == NULL || a->type != HERD_VALUE_ARRAY)
    return UV_EINVAL;
  a->u.obj.nelems = elem_lower_bound(a, length);
  a->u.obj.length = length;
  return 0;
}

int herd_value_object_setn(herd_value_t* o, const char* key, size_t key_len,
                           herd_value_t* value) {
  ptrdiff_t i;
  uint32_t index;
  int latin1, err;
  size_t units;
  if (o == NULL ||
      (o->type != HERD_VALUE_OBJECT && o->type != HERD_VALUE_ARRAY) ||
      (key == NULL && key_len > 0))
    return UV_EINVAL;
  err = member_ok(o->heap, value);
  if (err != 0)
    return err;
  if (herd__wtf8_check(key, key_len, &latin1, &units) != 0)
    return HERD_EBADUTF8;
  if (o->type == HERD_VALUE_ARRAY) {
    if (herd__value_array_index(key, key_len, &index))
      return herd_value_array_set(o, index, value);
    if (key_len == 6 && memcmp(key, "length", 6) == 0)
      return UV_EINVAL;
  }
  i = herd__value_prop_find(o, key, key_len);
  if (i >= 0) {
    o->u.obj.props[i].value = value;
    return 0;
  }
  return herd__value_prop_append(o, key, key_len, value);
}

int herd_value_object_set(herd_value_t* o, const char* key,
                          herd_value_t* value) {
  if (key == NULL)
    return UV_EINVAL;
  return herd_value_object_setn(o, key, strlen(key), value);
}

int herd__value_list_append(herd_value_t* l, herd_value_t* value) {
  int err = vec_grow(l->heap, (void**)&l->u.list.items, &l->u.list.cap,
                     l->u.list.n + 1, sizeof(herd_value_t*));
  if (err != 0)
    return err;
  l->u.list.items[l->u.list.n++] = value;
  return 0;
}

int herd_value_map_set(herd_value_t* map, herd_value_t* key,
                       herd_value_t* value) {
  int err;
  if (map == NULL || map->type != HERD_VALUE_MAP)
    return UV_EINVAL;
  err = member_ok(map->heap, key);
  if (err == 0)
    err = member_ok(map->heap, value);
  if (err == 0)
    err = vec_grow(map->heap, (void**)&map->u.list.items, &map->u.list.cap,
                   map->u.list.n + 2, sizeof(herd_value_t*));
  if (err != 0)
    return err;
  map->u.list.items[map->u.list.n++] = key;
  map->u.list.items[map->u.list.n++] = value;
  return 0;
}

int herd_value_set_add(herd_value_t* set, herd_value_t* value) {
  int err;
  if (set == NULL || set->type != HERD_VALUE_SET)
    return UV_EINVAL;
  err = member_ok(set->heap, value);
  if (err != 0)
    return err;
  return herd__value_list_append(set, value);
}

int herd_value_error_set_cause(herd_value_t* error, herd_value_t* cause) {
  int err;
  if (error == NULL || error->type != HERD_VALUE_ERROR)
    return UV_EINVAL;
  err = member_ok(error->heap, cause);
  if (err != 0)
    return err;
  error->u.err.cause = cause;
  return 0;
}

/* Reading. */

herd_value_type_t herd_value_type(const herd_value_t* v) {
  return (herd_value_type_t)v->type;
}

const char* herd_value_type_name(herd_value_type_t type) {
  static const char* const names[] = {
      "undefined",   "null",  "boolean", "number", "bigint", "string",
      "object",      "array", "date",    "regexp", "map",    "set",
      "arraybuffer", "view",  "boxed",   "error"};
  if ((unsigned)type < HERD_ARRAY_SIZE(names))
    return names[type];
  return "unknown";
}

int herd_value_get_boolean(const herd_value_t* v) {
  return v->type == HERD_VALUE_BOOLEAN ? v->kind : 0;
}

double herd_value_get_number(const herd_value_t* v) {
  if (v->type == HERD_VALUE_NUMBER || v->type == HERD_VALUE_DATE)
    return v->u.number;
  return 0;
}

const char* herd_value_get_string(const herd_value_t* v, size_t* len) {
  if (v->type != HERD_VALUE_STRING) {
    if (len != NULL)
      *len = 0;
    return NULL;
  }
  if (len != NULL)
    *len = v->u.str.len;
  return v->u.str.s;
}

const uint8_t* herd_value_get_bigint(const herd_value_t* v, int* negative,
                                     size_t* len) {
  int neg = 0;
  size_t n = 0;
  const uint8_t* mag = NULL;
  if (v->type == HERD_VALUE_BIGINT) {
    neg = v->u.bigint.negative;
    n = v->u.bigint.len;
    mag = v->u.bigint.mag;
  }
  if (negative != NULL)
    *negative = neg;
  if (len != NULL)
    *len = n;
  return mag;
}

int herd_value_get_bigint_int64(const herd_value_t* v, int64_t* out) {
  uint64_t u = 0;
  if (v->type != HERD_VALUE_BIGINT)
    return UV_EINVAL;
  if (v->u.bigint.len > 8)
    return UV_ERANGE;
  for (size_t i = 0; i < v->u.bigint.len; i++)
    u |= (uint64_t)v->u.bigint.mag[i] << (8 * i);
  if (v->u.bigint.negative) {
    if (u > (uint64_t)INT64_MAX + 1)
      return UV_ERANGE;
    *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
  } else {
    if (u > (uint64_t)INT64_MAX)
      return UV_ERANGE;
    *out = (int64_t)u;
  }
  return 0;
}

static int has_props(const herd_value_t* o) {
  return o->type == HERD_VALUE_OBJECT || o->type == HERD_VALUE_ARRAY;
}

size_t herd_value_object_count(const herd_value_t* o) {
  return has_props(o) ? o->u.obj.nprops : 0;
}

const char* herd_value_object_key(const herd_value_t* o, size_t i,
                                  size_t* key_len) {
  if (!has_props(o) || i >= o->u.obj.nprops)
    return NULL;
  if (key_len != NULL)
    *key_len = o->u.obj.props[i].key_len;
  return o->u.obj.props[i].key;
}

herd_value_t* herd_value_object_value(const herd_value_t* o, size_t i) {
  if (!has_props(o) || i >= o->u.obj.nprops)
    return NULL;
  return o->u.obj.props[i].value;
}

herd_value_t* herd_value_object_getn(const herd_value_t* o, const char* key,
                                     size_t key_len) {
  uint32_t index;
  ptrdiff_t i;
  if (!has_props(o) || (key == NULL && key_len > 0))
    return NULL;
  if (o->type == HERD_VALUE_ARRAY &&
      herd__value_array_index(key, key_len, &index))
    return herd_value_array_get(o, index);
  i = herd__value_prop_find(o, key, key_len);
  return i >= 0 ? o->u.obj.props[i].value : NULL;
}

herd_value_t* herd_value_object_get(const herd_value_t* o, const char* key) {
  if (key == NULL)
    return NULL;
  return herd_value_object_getn(o, key, strlen(key));
}

uint32_t herd_value_array_length(const herd_value_t* a) {
  return a->type == HERD_VALUE_ARRAY ? a->u.obj.length : 0;
}

herd_value_t* herd_value_array_get(const herd_value_t* a, uint32_t index) {
  size_t pos;
  if (a->type != HERD_VALUE_ARRAY)
    return NULL;
  pos = elem_lower_bound(a, index);
  if (pos < a->u.obj.nelems && a->u.obj.elems[pos].index == index)
    return a->u.obj.elems[pos].value;
  return NULL;
}

size_t herd_value_array_count(const herd_value_t* a) {
  return a->type == HERD_VALUE_ARRAY ? a->u.obj.nelems : 0;
}

herd_value_t* herd_value_array_element(const herd_value_t* a, size_t i,
                                       uint32_t* index) {
  if (a->type != HERD_VALUE_ARRAY || i >= a->u.obj.nelems)
    return NULL;
  if (index != NULL)
    *index = a->u.obj.elems[i].index;
  return a->u.obj.elems[i].value;
}

size_t herd_value_map_count(const herd_value_t* m) {
  return m->type == HERD_VALUE_MAP ? m->u.list.n / 2 : 0;
}

herd_value_t* herd_value_map_key(const herd_value_t* m, size_t i) {
  if (m->type != HERD_VALUE_MAP || i >= m->u.list.n / 2)
    return NULL;
  return m->u.list.items[2 * i];
}

herd_value_t* herd_value_map_value(const herd_value_t* m, size_t i) {
  if (m->type != HERD_VALUE_MAP || i >= m->u.list.n / 2)
    return NULL;
  return m->u.list.items[2 * i + 1];
}

size_t herd_value_set_count(const herd_value_t* s) {
  return s->type == HERD_VALUE_SET ? s->u.list.n : 0;
}

herd_value_t* herd_value_set_get(const herd_value_t* s, size_t i) {
  if (s->type != HERD_VALUE_SET || i >= s->u.list.n)
    return NULL;
  return s->u.list.items[i];
}

const char* herd_value_regexp_source(const herd_value_t* re, size_t* len) {
  if (re->type != HERD_VALUE_REGEXP) {
    if (len != NULL)
      *len = 0;
    return NULL;
  }
  if (len != NULL)
    *len = re->u.re.len;
  return re->u.re.s;
}

const char* herd_value_regexp_flags(const herd_value_t* re) {
  return re->type == HERD_VALUE_REGEXP ? re->u.re.letters : NULL;
}

uint8_t* herd_value_bytes(const herd_value_t* v, size_t* len) {
  if (v->type != HERD_VALUE_ARRAY_BUFFER && v->type != HERD_VALUE_VIEW) {
    if (len != NULL)
      *len = 0;
    return NULL;
  }
  if (len != NULL)
    *len = v->u.buf.len;
  return v->u.buf.bytes;
}

int herd_value_view_kind(const herd_value_t* v) {
  return v->type == HERD_VALUE_VIEW ? v->kind : -1;
}

int herd_value_array_buffer_resizable(const herd_value_t* v, size_t* max_len) {
  if (v->type != HERD_VALUE_ARRAY_BUFFER || !v->flag)
    return 0;
  if (max_len != NULL)
    *max_len = v->u.buf.max_len;
  return 1;
}

herd_value_t* herd_value_boxed_get(const herd_value_t* v) {
  return v->type == HERD_VALUE_BOXED ? v->u.boxed : NULL;
}

herd_js_error_kind_t herd_value_error_kind(const herd_value_t* v) {
  return v->type == HERD_VALUE_ERROR ? (herd_js_error_kind_t)v->kind
                                     : HERD_JS_ERROR;
}

herd_value_t* herd_value_error_message(const herd_value_t* v) {
  return v->type == HERD_VALUE_ERROR ? v->u.err.message : NULL;
}

herd_value_t* herd_value_error_stack(const herd_value_t* v) {
  return v->type == HERD_VALUE_ERROR ? v->u.err.stack : NULL;
}

herd_value_t* herd_value_error_cause(const herd_value_t* v) {
  return v->type == HERD_VALUE_ERROR ? v->u.err.cause : NULL;
}

/* Whether the p digits with decimal exponent e read back as d. */
static int digits_read_back(const char* digits, int p, int e, double d) {
  char buf[48];
  snprintf(buf, sizeof(buf), "%c.%.*se%d", digits[0], p - 1, digits + 1, e);
  return strtod(buf, NULL) == d;
}

/* The fewest decimal digits that read back as d > 0 (d = 0.digits * 10^(e
 * + 1)), as ECMA-262 Number::toString picks them. printf() gives the
 * closest p-digit decimal; at a power of two the interval that reads back
 * is lopsided, so when that one misses, the next one up or down may still
 * hit (2^-24 is 5.960464477539063e-8, not ...062e-8). */
static void shortest_digits(double d, char* digits, int* k, int* e) {
  char buf[48];
  for (int p = 1; p <= 17; p++) {
    int n = 0;
    snprintf(buf, sizeof(buf), "%.*e", p - 1, d);
    for (const char* c = buf; *c != 'e'; c++)
      if (*c >= '0' && *c <= '9')
        digits[n++] = *c;
    *k = p;
    *e = atoi(strchr(buf, 'e') + 1);
    if (p == 17 || digits_read_back(digits, p, *e, d))
      return;
    for (int delta = 1; delta >= -1; delta -= 2) {
      char alt[20];
      int i = p - 1, ae = *e;
      memcpy(alt, digits, (size_t)p);
      while (i >= 0) {
        if (delta > 0 && alt[i] == '9') {
          alt[i--] = '0';
        } else if (delta < 0 && alt[i] == '0') {
          alt[i--] = '9';
        } else {
          alt[i] = (char)(alt[i] + delta);
          break;
        }
      }
      if (i < 0) { /* 99..9 + 1 */
        memmove(alt + 1, alt, (size_t)p - 1);
        alt[0] = '1';
        ae++;
      }
      if (alt[0] == '0') /* fewer digits: tried already */
        continue;
      if (digits_read_back(alt, p, ae, d)) {
        memcpy(digits, alt, (size_t)p);
        *e = ae;
        return;
      }
    }
  }
}

/* Numbers as JavaScript prints them (ECMA-262 Number::toString), for
 * number keys that are not array indexes. */
size_t herd__js_number_to_string(double d, char* out) {
  char digits[20];
  int k = 0, e, n, len = 0;
  if (isnan(d))
    return (size_t)sprintf(out, "NaN");
  if (d == 0)
    return (size_t)sprintf(out, "0");
  if (isinf(d))
    return (size_t)sprintf(out, d < 0 ? "-Infinity" : "Infinity");
  if (d < 0) {
    out[len++] = '-';
    d = -d;
  }
  shortest_digits(d, digits, &k, &e);
  while (k > 1 && digits[k - 1] == '0')
    k--;
  n = e + 1; /* d = 0.digits * 10^n */
  if (k <= n && n <= 21) {
    memcpy(out + len, digits, (size_t)k);
    len += k;
    for (int i = k; i < n; i++)
      out[len++] = '0';
  } else if (0 < n && n <= 21) {
    memcpy(out + len, digits, (size_t)n);
    len += n;
    out[len++] = '.';
    memcpy(out + len, digits + n, (size_t)(k - n));
    len += k - n;
  } else if (-6 < n && n <= 0) {
    out[len++] = '0';
    out[len++] = '.';
    for (int i = 0; i < -n; i++)
      out[len++] = '0';
    memcpy(out + len, digits, (size_t)k);
    len += k;
  } else {
    out[len++] = digits[0];
    if (k > 1) {
      out[len++] = '.';
      memcpy(out + len, digits + 1, (size_t)(k - 1));
      len += k - 1;
    }
    len += sprintf(out + len, "e%c%d", n - 1 >= 0 ? '+' : '-',
                   n - 1 >= 0 ? n - 1 : 1 - n);
  }
  out[len] = '\0';
  return (size_t)len;
}

/* WTF-8. */

/* Decodes one code point of generalized UTF-8 (surrogates allowed) at
 * s[*i]; -1 when the bytes there are not one. */
static int wtf8_next(const uint8_t* s, size_t len, size_t* i, uint32_t* cp) {
  size_t at = *i;
  uint8_t b = s[at];
  uint32_t c;
  int n;
  uint8_t lo = 0x80, hi = 0xbf;
  if (b < 0x80) {
    *cp = b;
    *i = at + 1;
    return 0;
  }
  if (b >= 0xc2 && b <= 0xdf) {
    n = 1;
    c = b & 0x1f;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 2;
    c = b & 0x0f;
    if (b == 0xe0)
      lo = 0xa0;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 3;
    c = b & 0x07;
    if (b == 0xf0)
      lo = 0x90;
    if (b == 0xf4)
      hi = 0x8f;
  } else {
    return -1;
  }
  if (len - at - 1 < (size_t)n)
    return -1;
  for (int k = 1; k <= n; k++) {
    uint8_t t = s[at + (size_t)k];
    if (t < lo || t > hi)
      return -1;
    lo = 0x80;
    hi = 0xbf;
    c = (c << 6) | (t & 0x3f);
  }
  *cp = c;
  *i = at + 1 + (size_t)n;
  return 0;
}

int herd__wtf8_check(const char* str, size_t len, int* latin1, size_t* units) {
  const uint8_t* s = (const uint8_t*)str;
  size_t i = 0, u = 0;
  int l1 = 1, prev_high = 0;
  while (i < len) {
    uint32_t cp;
    if (wtf8_next(s, len, &i, &cp) != 0)
      return HERD_EBADUTF8;
    if (cp >= 0xdc00 && cp <= 0xdfff && prev_high)
      return HERD_EBADUTF8; /* a pair must be one 4-byte sequence */
    prev_high = cp >= 0xd800 && cp <= 0xdbff;
    if (cp > 0xff)
      l1 = 0;
    u += cp > 0xffff ? 2 : 1;
  }
  *latin1 = l1;
  *units = u;
  return 0;
}

void herd__wtf8_to_latin1(const char* str, size_t len, uint8_t* out) {
  const uint8_t* s = (const uint8_t*)str;
  size_t i = 0;
  while (i < len) {
    uint32_t cp = 0;
    wtf8_next(s, len, &i, &cp);
    *out++ = (uint8_t)cp;
  }
}

void herd__wtf8_to_utf16(const char* str, size_t len, uint16_t* out) {
  const uint8_t* s = (const uint8_t*)str;
  size_t i = 0;
  while (i < len) {
    uint32_t cp = 0;
    wtf8_next(s, len, &i, &cp);
    if (cp > 0xffff) {
      cp -= 0x10000;
      *out++ = (uint16_t)(0xd800 + (cp >> 10));
      *out++ = (uint16_t)(0xdc00 + (cp & 0x3ff));
    } else {
      *out++ = (uint16_t)cp;
    }
  }
}

size_t herd__latin1_wtf8_len(const uint8_t* s, size_t len) {
  size_t n = len;
  for (size_t i = 0; i < len; i++)
    n += s[i] >= 0x80;
  return n;
}

void herd__latin1_to_wtf8(const uint8_t* s, size_t len, char* out) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] < 0x80) {
      *out++ = (char)s[i];
    } else {
      *out++ = (char)(0xc0 | (s[i] >> 6));
      *out++ = (char)(0x80 | (s[i] & 0x3f));
    }
  }
}

static uint16_t unit_at(const uint8_t* s, size_t i) {
  uint16_t u;
  memcpy(&u, s + 2 * i, 2);
  return u;
}

/* The code point of UTF-16 units at s[*i], pairs joined. */
static uint32_t utf16_next(const uint8_t* s, size_t units, size_t* i) {
  uint32_t u = unit_at(s, *i);
  (*i)++;
  if (u >= 0xd800 && u <= 0xdbff && *i < units) {
    uint32_t v = unit_at(s, *i);
    if (v >= 0xdc00 && v <= 0xdfff) {
      (*i)++;
      return 0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00);
    }
  }
  return u;
}

size_t herd__utf16_wtf8_len(const uint8_t* s, size_t units) {
  size_t i = 0, n = 0;
  while (i < units) {
    uint32_t cp = utf16_next(s, units, &i);
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
}

void herd__utf16_to_wtf8(const uint8_t* s, size_t units, char* out) {
  size_t i = 0;
  while (i < units)
    out += herd__utf8_put(out, utf16_next(s, units, &i));
}

/* One code point of strict UTF-8 at s[*i], or U+FFFD for the maximal
 * subpart of an ill-formed sequence (WHATWG "UTF-8 decode"). */
static uint32_t utf8_lossy_next(const uint8_t* s, size_t len, size_t* i) {
  size_t at = *i;
  uint8_t b = s[at];
  uint32_t c;
  int n;
  uint8_t lo = 0x80, hi = 0xbf;
  if (b < 0x80) {
    *i = at + 1;
    return b;
  }
  if (b >= 0xc2 && b <= 0xdf) {
    n = 1;
    c = b & 0x1f;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 2;
    c = b & 0x0f;
    if (b == 0xe0)
      lo = 0xa0;
    if (b == 0xed)
      hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 3;
    c = b & 0x07;
    if (b == 0xf0)
      lo = 0x90;
    if (b == 0xf4)
      hi = 0x8f;
  } else {
    *i = at + 1;
    return 0xfffd;
  }
  for (int k = 1; k <= n; k++) {
    uint8_t t;
    if (at + (size_t)k >= len) {
      *i = at + (size_t)k;
      return 0xfffd;
    }
    t = s[at + (size_t)k];
    if (t < lo || t > hi) {
      *i = at + (size_t)k;
      return 0xfffd;
    }
    lo = 0x80;
    hi = 0xbf;
    c = (c << 6) | (t & 0x3f);
  }
  *i = at + 1 + (size_t)n;
  return c;
}

size_t herd__utf8_lossy_len(const uint8_t* s, size_t len) {
  size_t i = 0, n = 0;
  while (i < len) {
    uint32_t cp = utf8_lossy_next(s, len, &i);
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return n;
}

void herd__utf8_lossy_to_wtf8(const uint8_t* s, size_t len, char* out) {
  size_t i = 0;
  while (i < len)
    out += herd__utf8_put(out, utf8_lossy_next(s, len, &i));
}

/* Pointer maps. */

static size_t ptr_hash(const void* p) {
  uint64_t h = (uint64_t)(uintptr_t)p;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  return (size_t)h;
}

void herd__ptrmap_init(herd__ptrmap_t* map) {
  memset(map, 0, sizeof(*map));
}

void herd__ptrmap_free(herd__ptrmap_t* map) {
  herd__free(map->keys);
  herd__free(map->vals);
  herd__ptrmap_init(map);
}

void* herd__ptrmap_get(const herd__ptrmap_t* map, const void* key) {
  size_t mask, i;
  if (map->cap == 0)
    return NULL;
  mask = map->cap - 1;
  for (i = ptr_hash(key) & mask; map->keys[i] != NULL; i = (i + 1) & mask)
    if (map->keys[i] == key)
      return map->vals[i];
  return NULL;
}

static void ptrmap_place(const void** keys, void** vals, size_t cap,
                         const void* key, void* val) {
  size_t mask = cap - 1, i = ptr_hash(key) & mask;
  while (keys[i] != NULL)
    i = (i + 1) & mask;
  keys[i] = key;
  vals[i] = val;
}

int herd__ptrmap_put(herd__ptrmap_t* map, const void* key, void* val) {
  if ((map->n + 1) * 2 > map->cap) {
    size_t cap = map->cap == 0 ? 64 : map->cap * 2;
    const void** keys;
    void** vals;
    if (cap > SIZE_MAX / sizeof(void*))
      return UV_ENOMEM;
    keys = herd__calloc(cap, sizeof(void*));
    vals = herd__calloc(cap, sizeof(void*));
    if (keys == NULL || vals == NULL) {
      herd__free(keys);
      herd__free(vals);
      return UV_ENOMEM;
    }
    for (size_t i = 0; i < map->cap; i++)
      if (map->keys[i] != NULL)
        ptrmap_place(keys, vals, cap, map->keys[i], map->vals[i]);
    herd__free(map->keys);
    herd__free(map->vals);
    map->keys = keys;
    map->vals = vals;
    map->cap = cap;
  }
  ptrmap_place(map->keys, map->vals, map->cap, key, val);
  map->n++;
  return 0;
}

/* Copying. */

typedef struct {
  herd_value_heap_t* heap;
  herd__ptrmap_t done; /* source object -> its copy */
  unsigned depth;
} copy_t;

static herd_value_t* copy(copy_t* c, const herd_value_t* v);

/* The copy of a member, or NULL with c->heap->error_ set. */
static int copy_members(copy_t* c, const herd_value_t* v, herd_value_t* d) {
  herd_value_t* m;
  switch (v->type) {
    case HERD_VALUE_OBJECT:
    case HERD_VALUE_ARRAY:
      for (size_t i = 0; i < v->u.obj.nelems; i++) {
        if ((m = copy(c, v->u.obj.elems[i].value)) == NULL ||
            herd__value_elem_append(d, v->u.obj.elems[i].index, m) != 0)
          return c->heap->error_;
      }
      d->u.obj.length = v->u.obj.length;
      for (size_t i = 0; i < v->u.obj.nprops; i++) {
        const herd__prop_t* p = &v->u.obj.props[i];
        if ((m = copy(c, p->value)) == NULL ||
            herd__value_prop_append(d, p->key, p->key_len, m) != 0)
          return c->heap->error_;
      }
      return 0;
    case HERD_VALUE_MAP:
    case HERD_VALUE_SET:
      for (size_t i = 0; i < v->u.list.n; i++)
        if ((m = copy(c, v->u.list.items[i])) == NULL ||
            herd__value_list_append(d, m) != 0)
          return c->heap->error_;
      return 0;
    case HERD_VALUE_ERROR:
      if (v->u.err.message != NULL &&
          (d->u.err.message = copy(c, v->u.err.message)) == NULL)
        return c->heap->error_;
      if (v->u.err.stack != NULL &&
          (d->u.err.stack = copy(c, v->u.err.stack)) == NULL)
        return c->heap->error_;
      if (v->u.err.cause != NULL &&
          (d->u.err.cause = copy(c, v->u.err.cause)) == NULL)
        return c->heap->error_;
      return 0;
    default:
      return 0;
  }
}

static herd_value_t* copy(copy_t* c, const herd_value_t* v) {
  herd_value_heap_t* h = c->heap;
  herd_value_t* d;
  char* bytes;
  if (v->heap == NULL)
    return (herd_value_t*)v; /* a shared constant */
  switch (v->type) {
    case HERD_VALUE_NUMBER:
      return herd_value_new_number(h, v->u.number);
    case HERD_VALUE_BIGINT:
      return herd_value_new_bigint(h, v->u.bigint.negative, v->u.bigint.mag,
                                   v->u.bigint.len);
    case HERD_VALUE_STRING:
      d = herd__value_string_raw(h, v->u.str.len, &bytes);
      if (d != NULL && v->u.str.len > 0)
        memcpy(bytes, v->u.str.s, v->u.str.len);
      return d;
    default:
      break;
  }
  d = herd__ptrmap_get(&c->done, v);
  if (d != NULL)
    return d;
  if (c->depth >= HERD_VALUE_DEFAULT_MAX_DEPTH) {
    h->error_ = HERD_EVALUELIMIT;
    return NULL;
  }
  switch (v->type) {
    case HERD_VALUE_OBJECT:
      d = herd_value_new_object(h);
      break;
    case HERD_VALUE_ARRAY:
      d = herd_value_new_array(h);
      break;
    case HERD_VALUE_DATE:
      d = herd_value_new_date(h, v->u.number);
      break;
    case HERD_VALUE_REGEXP:
      d = herd__value_regexp_raw(h, v->u.re.s, v->u.re.len, v->u.re.flags);
      break;
    case HERD_VALUE_MAP:
      d = herd_value_new_map(h);
      break;
    case HERD_VALUE_SET:
      d = herd_value_new_set(h);
      break;
    case HERD_VALUE_ARRAY_BUFFER:
      d = v->flag
              ? herd_value_new_array_buffer_resizable(
                    h, v->u.buf.bytes, v->u.buf.len, v->u.buf.max_len)
              : herd_value_new_array_buffer(h, v->u.buf.bytes, v->u.buf.len);
      break;
    case HERD_VALUE_VIEW:
      d = herd_value_new_view(h, (herd_view_kind_t)v->kind, v->u.buf.bytes,
                              v->u.buf.len);
      break;
    case HERD_VALUE_BOXED:
      d = copy(c, v->u.boxed);
      d = d != NULL ? herd_value_new_boxed(h, d) : NULL;
      break;
    case HERD_VALUE_ERROR:
      d = herd_value_new_error(h, (herd_js_error_kind_t)v->kind, NULL, NULL);
      break;
    default:
      h->error_ = UV_EINVAL;
      return NULL;
  }
  if (d == NULL)
    return NULL;
  /* Known before its members, so they can refer back to it. */
  if (herd__ptrmap_put(&c->done, v, d) != 0) {
    h->error_ = UV_ENOMEM;
    return NULL;
  }
  c->depth++;
  if (copy_members(c, v, d) != 0)
    d = NULL;
  c->depth--;
  return d;
}

int herd_value_copy(herd_value_heap_t* heap, const herd_value_t* value,
                    herd_value_t** out) {
  copy_t c;
  herd_value_t* mark;
  herd_value_t* d;
  int saved_error, err = 0;
  if (heap == NULL || value == NULL || out == NULL)
    return UV_EINVAL;
  memset(&c, 0, sizeof(c));
  c.heap = heap;
  herd__ptrmap_init(&c.done);
  mark = heap->newest_;
  saved_error = heap->error_;
  heap->error_ = 0;
  d = copy(&c, value);
  if (d == NULL)
    err = heap->error_ != 0 ? heap->error_ : UV_ENOMEM;
  heap->error_ = saved_error;
  herd__ptrmap_free(&c.done);
  if (err != 0) {
    herd__value_rollback(heap, mark);
    return err;
  }
  *out = d;
  return 0;
}

int herd__value_internal_cmd(const herd_value_t* v, const char** cmd,
                             size_t* len) {
  const herd_value_t* c;
  if (v->type != HERD_VALUE_OBJECT && v->type != HERD_VALUE_ARRAY)
    return 0;
  c = herd_value_object_get(v, "cmd");
  if (c == NULL || c->type != HERD_VALUE_STRING || c->u.str.len <= 5 ||
      memcmp(c->u.str.s, "NODE_", 5) != 0)
    return 0;
  if (cmd != NULL)
    *cmd = c->u.str.s;
  if (len != NULL)
    *len = c->u.str.len;
  return 1;
}

/* Equality (see value-int.h). */

typedef struct {
  herd__ptrmap_t ab;
  herd__ptrmap_t ba;
} eq_state_t;

static int eq(eq_state_t* st, const herd_value_t* a, const herd_value_t* b);

static int same_number(double x, double y) {
  if (isnan(x) || isnan(y))
    return isnan(x) && isnan(y);
  return x == y && signbit(x) == signbit(y);
}

static int eq_props(eq_state_t* st, const herd_value_t* a,
                    const herd_value_t* b) {
  if (a->u.obj.nprops != b->u.obj.nprops)
    return 0;
  for (size_t i = 0; i < a->u.obj.nprops; i++) {
    const herd__prop_t* p = &a->u.obj.props[i];
    ptrdiff_t j = herd__value_prop_find(b, p->key, p->key_len);
    int r;
    if (j < 0)
      return 0;
    r = eq(st, p->value, b->u.obj.props[j].value);
    if (r != 1)
      return r;
  }
  return 1;
}

static int eq(eq_state_t* st, const herd_value_t* a, const herd_value_t* b) {
  const herd_value_t* seen;
  int r;
  if (a->type != b->type)
    return 0;
  switch (a->type) {
    case HERD_VALUE_UNDEFINED:
    case HERD_VALUE_NULL:
      return 1;
    case HERD_VALUE_BOOLEAN:
      return a->kind == b->kind;
    case HERD_VALUE_NUMBER:
      return same_number(a->u.number, b->u.number);
    case HERD_VALUE_BIGINT:
      return a->u.bigint.negative == b->u.bigint.negative &&
             a->u.bigint.len == b->u.bigint.len &&
             (a->u.bigint.len == 0 ||
              memcmp(a->u.bigint.mag, b->u.bigint.mag, a->u.bigint.len) == 0);
    case HERD_VALUE_STRING:
      return a->u.str.len == b->u.str.len &&
             memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    default:
      break;
  }
  /* An object: the same pairing of identities on both sides. */
  seen = herd__ptrmap_get(&st->ab, a);
  if (seen != NULL)
    return seen == b;
  if (herd__ptrmap_get(&st->ba, b) != NULL)
    return 0;
  if (herd__ptrmap_put(&st->ab, a, (void*)b) != 0 ||
      herd__ptrmap_put(&st->ba, b, (void*)a) != 0)
    return UV_ENOMEM;
  switch (a->type) {
    case HERD_VALUE_OBJECT:
      return eq_props(st, a, b);
    case HERD_VALUE_ARRAY:
      if (a->u.obj.length != b->u.obj.length ||
          a->u.obj.nelems != b->u.obj.nelems)
        return 0;
      for (size_t i = 0; i < a->u.obj.nelems; i++) {
        if (a->u.obj.elems[i].index != b->u.obj.elems[i].index)
          return 0;
        r = eq(st, a->u.obj.elems[i].value, b->u.obj.elems[i].value);
        if (r != 1)
          return r;
      }
      return eq_props(st, a, b);
    case HERD_VALUE_DATE:
      return same_number(a->u.number, b->u.number);
    case HERD_VALUE_REGEXP:
      return a->u.re.flags == b->u.re.flags && a->u.re.len == b->u.re.len &&
             memcmp(a->u.re.s, b->u.re.s, a->u.re.len) == 0;
    case HERD_VALUE_MAP:
    case HERD_VALUE_SET:
      if (a->u.list.n != b->u.list.n)
        return 0;
      for (size_t i = 0; i < a->u.list.n; i++) {
        r = eq(st, a->u.list.items[i], b->u.list.items[i]);
        if (r != 1)
          return r;
      }
      return 1;
    case HERD_VALUE_ARRAY_BUFFER:
    case HERD_VALUE_VIEW:
      return a->kind == b->kind && a->flag == b->flag &&
             a->u.buf.len == b->u.buf.len &&
             a->u.buf.max_len == b->u.buf.max_len &&
             (a->u.buf.len == 0 ||
              memcmp(a->u.buf.bytes, b->u.buf.bytes, a->u.buf.len) == 0);
    case HERD_VALUE_BOXED:
      return eq(st, a->u.boxed, b->u.boxed);
    case HERD_VALUE_ERROR:
      if (a->kind != b->kind)
        return 0;
      if ((a->u.err.message == NULL) != (b->u.err.message == NULL) ||
          (a->u.err.stack == NULL) != (b->u.err.stack == NULL) ||
          (a->u.err.cause == NULL) != (b->u.err.cause == NULL))
        return 0;
      if (a->u.err.message != NULL &&
          (r = eq(st, a->u.err.message, b->u.err.message)) != 1)
        return r;
      if (a->u.err.stack != NULL &&
          (r = eq(st, a->u.err.stack, b->u.err.stack)) != 1)
        return r;
      if (a->u.err.cause != NULL)
        return eq(st, a->u.err.cause, b->u.err.cause);
      return 1;
    default:
      return 0;
  }
}

int herd__value_equal(const herd_value_t* a, const herd_value_t* b) {
  eq_state_t st;
  int r;
  herd__ptrmap_init(&st.ab);
  herd__ptrmap_init(&st.ba);
  r = eq(&st, a, b);
  herd__ptrmap_free(&st.ab);
  herd__ptrmap_free(&st.ba);
  return r;
}
