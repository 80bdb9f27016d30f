/* The value model and Node's advanced serialization: the C API, round trips
 * in C, both directions against real Node (its child_process channel in
 * `advanced` mode, and v8.serialize()), malformed input, limits and
 * allocation failures. */
#include "task.h"
#include "value-cases.h"
#include "value-int.h"

#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

typedef herd_value_heap_t heap_t;
typedef herd_value_t value_t;

/* Builders that tolerate failed constructors (the allocation-failure test
 * runs them too): any failure makes them return NULL. */
static value_t* num(heap_t* h, double d) {
  return herd_value_new_number(h, d);
}

static value_t* str(heap_t* h, const char* s) {
  return herd_value_new_string(h, s, strlen(s));
}

/* An array of the n values that follow. */
static value_t* arr(heap_t* h, int n, ...) {
  va_list ap;
  value_t* a = herd_value_new_array(h);
  int err = a == NULL;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    value_t* v = va_arg(ap, value_t*);
    if (err == 0)
      err = herd_value_array_push(a, v);
  }
  va_end(ap);
  return err == 0 ? a : NULL;
}

/* An object of the n key/value pairs that follow. */
static value_t* obj(heap_t* h, int n, ...) {
  va_list ap;
  value_t* o = herd_value_new_object(h);
  int err = o == NULL;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    const char* k = va_arg(ap, const char*);
    value_t* v = va_arg(ap, value_t*);
    if (err == 0)
      err = herd_value_object_set(o, k, v);
  }
  va_end(ap);
  return err == 0 ? o : NULL;
}

static value_t* view(heap_t* h, herd_view_kind_t kind, const void* bytes,
                     size_t len) {
  return herd_value_new_view(h, kind, bytes, len);
}

static value_t* error(heap_t* h, herd_js_error_kind_t kind, const char* msg,
                      const char* stack) {
  value_t* m = msg != NULL ? str(h, msg) : NULL;
  value_t* s = stack != NULL ? str(h, stack) : NULL;
  if ((msg != NULL && m == NULL) || (stack != NULL && s == NULL))
    return NULL;
  return herd_value_new_error(h, kind, m, s);
}

static value_t* with_cause(value_t* e, value_t* cause) {
  if (e == NULL || herd_value_error_set_cause(e, cause) != 0)
    return NULL;
  return e;
}

/* The cases of test/fixtures/value-cases.js, in the same order. */

static value_t* c_undefined(heap_t* h) {
  (void)h;
  return herd_value_undefined();
}
static value_t* c_null(heap_t* h) {
  (void)h;
  return herd_value_null();
}
static value_t* c_true(heap_t* h) {
  (void)h;
  return herd_value_boolean(1);
}
static value_t* c_false(heap_t* h) {
  (void)h;
  return herd_value_boolean(0);
}
static value_t* c_int(heap_t* h) {
  return num(h, 42);
}
static value_t* c_int_min(heap_t* h) {
  return num(h, -2147483648.0);
}
static value_t* c_int_max(heap_t* h) {
  return num(h, 2147483647);
}
static value_t* c_uint(heap_t* h) {
  return num(h, 2147483648.0);
}
static value_t* c_double(heap_t* h) {
  return num(h, -1.5e-7);
}
static value_t* c_neg_zero(heap_t* h) {
  return num(h, -0.0);
}
static value_t* c_nan(heap_t* h) {
  return num(h, NAN);
}
static value_t* c_infinity(heap_t* h) {
  return num(h, INFINITY);
}
static value_t* c_neg_infinity(heap_t* h) {
  return num(h, -INFINITY);
}
static value_t* c_min_double(heap_t* h) {
  return num(h, 5e-324);
}
static value_t* c_bigint_zero(heap_t* h) {
  return herd_value_new_bigint(h, 1, NULL, 0);
}
static value_t* c_bigint_one(heap_t* h) {
  return herd_value_new_bigint_int64(h, 1);
}
static value_t* c_bigint_minus_one(heap_t* h) {
  return herd_value_new_bigint_int64(h, -1);
}
static value_t* c_bigint_2_64(heap_t* h) {
  static const uint8_t mag[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  return herd_value_new_bigint(h, 0, mag, sizeof(mag));
}
static value_t* c_bigint_neg_big(heap_t* h) {
  uint8_t mag[25];
  memset(mag, 0xff, sizeof(mag)); /* 2^200 - 1 */
  return herd_value_new_bigint(h, 1, mag, sizeof(mag));
}
static value_t* c_string_empty(heap_t* h) {
  return str(h, "");
}
static value_t* c_string_ascii(heap_t* h) {
  return str(h, "plain ascii");
}
static value_t* c_string_latin1(heap_t* h) {
  return str(h, "caf\xc3\xa9 \xc3\xbf\xc2\x80");
}
static value_t* c_string_two_byte(heap_t* h) {
  return str(h,
             "\xc3\xbc\xf0\x9f\x98\x80 \xf0\x9d\x84\x9e \xe6\x97\xa5\xe6\x9c"
             "\xac");
}
static value_t* c_string_lone_high(heap_t* h) {
  return str(h,
             "a\xed\xa0\x80"
             "b");
}
static value_t* c_string_lone_low(heap_t* h) {
  static const uint16_t u[] = {0xdc00};
  return herd_value_new_string_utf16(h, u, 1);
}
static value_t* c_string_nul(heap_t* h) {
  return herd_value_new_string(h, "\0nul", 4);
}
static value_t* c_string_long(heap_t* h) {
  size_t n = 100000;
  char* s = malloc(n + 3);
  value_t* v;
  ASSERT(s != NULL);
  memset(s, 'x', n);
  memcpy(s + n, "\xe2\x9c\x93", 3);
  v = herd_value_new_string(h, s, n + 3);
  free(s);
  return v;
}
static value_t* c_object(heap_t* h) {
  return obj(h, 3, "a", num(h, 1), "b", str(h, "x"), "nested",
             obj(h, 1, "c", arr(h, 2, num(h, 1), num(h, 2))));
}
static value_t* c_object_empty(heap_t* h) {
  return herd_value_new_object(h);
}
static value_t* c_object_keys(heap_t* h) {
  /* In the order JavaScript lists them: integer keys first. */
  return obj(h, 9, "0", num(h, 0), "1", num(h, 1), "2147483648", num(h, 4), "a",
             num(h, 2), "4294967295", num(h, 3), "-1", num(h, 5), "", num(h, 6),
             "1.5", num(h, 7), "\xc3\xa9\xf0\x9f\x98\x80", num(h, 8));
}
static value_t* c_array_dense(heap_t* h) {
  return arr(h, 5, num(h, 1), str(h, "two"), herd_value_null(),
             herd_value_undefined(), herd_value_boolean(1));
}
static value_t* c_array_empty(heap_t* h) {
  return herd_value_new_array(h);
}
static value_t* c_array_holes(heap_t* h) {
  value_t* a = herd_value_new_array(h);
  if (a == NULL || herd_value_array_set(a, 2, num(h, 3)) != 0 ||
      herd_value_array_set(a, 0, num(h, 1)) != 0)
    return NULL;
  return a;
}
static value_t* c_array_new(heap_t* h) {
  value_t* a = herd_value_new_array(h);
  if (a == NULL || herd_value_array_set_length(a, 5) != 0)
    return NULL;
  return a;
}
static value_t* c_array_props(heap_t* h) {
  value_t* a = arr(h, 2, num(h, 1), num(h, 2));
  if (a == NULL || herd_value_object_set(a, "x", str(h, "y")) != 0)
    return NULL;
  return a;
}
static value_t* c_array_huge_sparse(heap_t* h) {
  value_t* a = herd_value_new_array(h);
  if (a == NULL || herd_value_array_set(a, 4294967294u, num(h, 1)) != 0)
    return NULL;
  return a;
}
static value_t* c_date_epoch(heap_t* h) {
  return herd_value_new_date(h, 0);
}
static value_t* c_date(heap_t* h) {
  return herd_value_new_date(h, 1700000000123.0);
}
static value_t* c_date_invalid(heap_t* h) {
  return herd_value_new_date(h, NAN);
}
static value_t* c_regexp(heap_t* h) {
  return herd_value_new_regexp(h, "a+b", 3, "gi");
}
static value_t* c_regexp_flags(heap_t* h) {
  return herd_value_new_regexp(h, "x", 1, "ysumigd");
}
static value_t* c_regexp_v(heap_t* h) {
  return herd_value_new_regexp(h, "[\\p{L}]", 7, "v");
}
static value_t* c_map(heap_t* h) {
  value_t* m = herd_value_new_map(h);
  if (m == NULL || herd_value_map_set(m, num(h, 1), str(h, "a")) != 0 ||
      herd_value_map_set(m, str(h, "k"), obj(h, 1, "x", num(h, 1))) != 0 ||
      herd_value_map_set(m, obj(h, 1, "o", num(h, 1)), arr(h, 1, num(h, 2))))
    return NULL;
  return m;
}
static value_t* c_map_empty(heap_t* h) {
  return herd_value_new_map(h);
}
static value_t* c_set(heap_t* h) {
  value_t* s = herd_value_new_set(h);
  if (s == NULL || herd_value_set_add(s, num(h, 1)) != 0 ||
      herd_value_set_add(s, str(h, "a")) != 0 ||
      herd_value_set_add(s, obj(h, 1, "s", num(h, 1))) != 0 ||
      herd_value_set_add(s, arr(h, 1, num(h, 1))) != 0)
    return NULL;
  return s;
}
static value_t* c_array_buffer(heap_t* h) {
  return herd_value_new_array_buffer(h, "\x01\x02\x03\xff", 4);
}
static value_t* c_array_buffer_empty(heap_t* h) {
  return herd_value_new_array_buffer(h, NULL, 0);
}
static value_t* c_array_buffer_resizable(heap_t* h) {
  return herd_value_new_array_buffer_resizable(h, "\x07\x08", 2, 16);
}
static value_t* c_int8(heap_t* h) {
  int8_t a[] = {-1, 2, -128};
  return view(h, HERD_VIEW_INT8, a, sizeof(a));
}
static value_t* c_uint8(heap_t* h) {
  uint8_t a[] = {0, 255};
  return view(h, HERD_VIEW_UINT8, a, sizeof(a));
}
static value_t* c_uint8_clamped(heap_t* h) {
  uint8_t a[] = {0, 255, 7};
  return view(h, HERD_VIEW_UINT8_CLAMPED, a, sizeof(a));
}
static value_t* c_int16(heap_t* h) {
  int16_t a[] = {-2, 30000};
  return view(h, HERD_VIEW_INT16, a, sizeof(a));
}
static value_t* c_uint16(heap_t* h) {
  uint16_t a[] = {65535, 1};
  return view(h, HERD_VIEW_UINT16, a, sizeof(a));
}
static value_t* c_int32(heap_t* h) {
  int32_t a[] = {-5, 2147483647};
  return view(h, HERD_VIEW_INT32, a, sizeof(a));
}
static value_t* c_uint32(heap_t* h) {
  uint32_t a[] = {4294967295u, 3};
  return view(h, HERD_VIEW_UINT32, a, sizeof(a));
}
static value_t* c_float32(heap_t* h) {
  float a[] = {1.5f, -2.0f};
  return view(h, HERD_VIEW_FLOAT32, a, sizeof(a));
}
static value_t* c_float64(heap_t* h) {
  double a[] = {3.141592653589793, -0.0};
  return view(h, HERD_VIEW_FLOAT64, a, sizeof(a));
}
static value_t* c_bigint64(heap_t* h) {
  int64_t a[] = {-1, (int64_t)1 << 62};
  return view(h, HERD_VIEW_BIGINT64, a, sizeof(a));
}
static value_t* c_biguint64(heap_t* h) {
  uint64_t a[] = {UINT64_MAX};
  return view(h, HERD_VIEW_BIGUINT64, a, sizeof(a));
}
static value_t* c_data_view(heap_t* h) {
  return view(h, HERD_VIEW_DATA_VIEW, "\x01\x02\x03", 3);
}
static value_t* c_buffer(heap_t* h) {
  return herd_value_new_buffer(h, "hello", 5);
}
static value_t* c_buffer_slice(heap_t* h) {
  return herd_value_new_buffer(h, "wor", 3);
}
static value_t* c_buffer_empty(heap_t* h) {
  return herd_value_new_buffer(h, NULL, 0);
}
static value_t* c_boxed(heap_t* h) {
  return arr(h, 5, herd_value_new_boxed(h, num(h, -0.0)),
             herd_value_new_boxed(h, str(h, "s\xf0\x9f\x98\x80")),
             herd_value_new_boxed(h, herd_value_boolean(0)),
             herd_value_new_boxed(h, herd_value_boolean(1)),
             herd_value_new_boxed(h, herd_value_new_bigint_int64(h, 12)));
}
static value_t* c_error(heap_t* h) {
  return error(h, HERD_JS_ERROR, "boom", "Error: boom\n    at here");
}
static value_t* c_error_kinds(heap_t* h) {
  return arr(h, 6, error(h, HERD_JS_EVAL_ERROR, "e", NULL),
             error(h, HERD_JS_RANGE_ERROR, "r", NULL),
             error(h, HERD_JS_REFERENCE_ERROR, "f", NULL),
             error(h, HERD_JS_SYNTAX_ERROR, "s", NULL),
             error(h, HERD_JS_TYPE_ERROR, "t", NULL),
             error(h, HERD_JS_URI_ERROR, "u", NULL));
}
static value_t* c_error_no_message(heap_t* h) {
  return error(h, HERD_JS_RANGE_ERROR, NULL, NULL);
}
static value_t* c_error_cause(heap_t* h) {
  return with_cause(error(h, HERD_JS_ERROR, "outer", NULL),
                    obj(h, 1, "a", num(h, 1)));
}
static value_t* c_error_cause_stack(heap_t* h) {
  return with_cause(error(h, HERD_JS_TYPE_ERROR, "t", "TypeError: t"),
                    num(h, 5));
}
static value_t* c_shared(heap_t* h) {
  value_t* s = obj(h, 1, "s", num(h, 1));
  return arr(h, 3, s, s, obj(h, 1, "t", s));
}
static value_t* c_cycle(heap_t* h) {
  value_t* o = obj(h, 1, "name", str(h, "o"));
  if (o == NULL || herd_value_object_set(o, "self", o) != 0)
    return NULL;
  return o;
}
static value_t* c_array_cycle(heap_t* h) {
  value_t* a = arr(h, 1, num(h, 1));
  if (a == NULL || herd_value_array_push(a, a) != 0)
    return NULL;
  return a;
}
static value_t* c_map_cycle(heap_t* h) {
  value_t* m = herd_value_new_map(h);
  if (m == NULL || herd_value_map_set(m, m, m) != 0)
    return NULL;
  return m;
}
static value_t* c_set_cycle(heap_t* h) {
  value_t* s = herd_value_new_set(h);
  if (s == NULL || herd_value_set_add(s, s) != 0)
    return NULL;
  return s;
}
static value_t* c_shared_views(heap_t* h) {
  value_t* u = view(h, HERD_VIEW_UINT8, "\x09", 1);
  value_t* d = herd_value_new_date(h, 5);
  return obj(h, 4, "u", u, "again", u, "d", d, "d2", d);
}
static value_t* c_error_in_cycle(heap_t* h) {
  value_t* o = herd_value_new_object(h);
  value_t* e = with_cause(error(h, HERD_JS_ERROR, "q", NULL), o);
  if (o == NULL || herd_value_object_set(o, "e", e) != 0)
    return NULL;
  return o;
}
static value_t* c_deep(heap_t* h) {
  value_t* v = str(h, "bottom");
  for (int i = 0; i < 100; i++)
    v = arr(h, 1, v);
  return v;
}
static value_t* c_json(heap_t* h) {
  return obj(h, 5, "str", str(h, "x"), "num", num(h, 1.5), "arr",
             arr(h, 3, herd_value_boolean(1), herd_value_boolean(0),
                 herd_value_null()),
             "obj", herd_value_new_object(h), "neg", num(h, -3));
}

typedef struct {
  const char* name;
  value_t* (*build)(heap_t* h);
  int exact; /* Node writes the same bytes */
} value_case_t;

static const value_case_t value_cases[] = {
    {"undefined", c_undefined, 1},
    {"null", c_null, 1},
    {"true", c_true, 1},
    {"false", c_false, 1},
    {"int", c_int, 1},
    {"int-min", c_int_min, 1},
    {"int-max", c_int_max, 1},
    {"uint", c_uint, 1},
    {"double", c_double, 1},
    {"neg-zero", c_neg_zero, 1},
    {"nan", c_nan, 1},
    {"infinity", c_infinity, 1},
    {"neg-infinity", c_neg_infinity, 1},
    {"min-double", c_min_double, 1},
    {"bigint-zero", c_bigint_zero, 1},
    {"bigint-one", c_bigint_one, 1},
    {"bigint-minus-one", c_bigint_minus_one, 1},
    {"bigint-2-64", c_bigint_2_64, 1},
    {"bigint-neg-big", c_bigint_neg_big, 1},
    {"string-empty", c_string_empty, 1},
    {"string-ascii", c_string_ascii, 1},
    {"string-latin1", c_string_latin1, 1},
    {"string-two-byte", c_string_two_byte, 1},
    {"string-lone-high", c_string_lone_high, 1},
    {"string-lone-low", c_string_lone_low, 1},
    {"string-nul", c_string_nul, 1},
    {"string-long", c_string_long, 1},
    {"object", c_object, 1},
    {"object-empty", c_object_empty, 1},
    {"object-keys", c_object_keys, 1},
    {"array-dense", c_array_dense, 1},
    {"array-empty", c_array_empty, 1},
    {"array-holes", c_array_holes, 1},
    {"array-new", c_array_new, 1},
    {"array-props", c_array_props, 1},
    {"array-huge-sparse", c_array_huge_sparse, 1},
    {"date-epoch", c_date_epoch, 1},
    {"date", c_date, 1},
    {"date-invalid", c_date_invalid, 1},
    {"regexp", c_regexp, 1},
    {"regexp-flags", c_regexp_flags, 1},
    {"regexp-v", c_regexp_v, 1},
    {"map", c_map, 1},
    {"map-empty", c_map_empty, 1},
    {"set", c_set, 1},
    {"array-buffer", c_array_buffer, 1},
    {"array-buffer-empty", c_array_buffer_empty, 1},
    {"array-buffer-resizable", c_array_buffer_resizable, 1},
    {"int8", c_int8, 1},
    {"uint8", c_uint8, 1},
    {"uint8-clamped", c_uint8_clamped, 1},
    {"int16", c_int16, 1},
    {"uint16", c_uint16, 1},
    {"int32", c_int32, 1},
    {"uint32", c_uint32, 1},
    {"float32", c_float32, 1},
    {"float64", c_float64, 1},
    {"bigint64", c_bigint64, 1},
    {"biguint64", c_biguint64, 1},
    {"data-view", c_data_view, 1},
    {"buffer", c_buffer, 1},
    {"buffer-slice", c_buffer_slice, 1},
    {"buffer-empty", c_buffer_empty, 1},
    {"boxed", c_boxed, 1},
    {"error", c_error, 1},
    {"error-kinds", c_error_kinds, 1},
    {"error-no-message", c_error_no_message, 1},
    {"error-cause", c_error_cause, 1},
    {"error-cause-stack", c_error_cause_stack, 0},
    {"shared", c_shared, 1},
    {"cycle", c_cycle, 1},
    {"array-cycle", c_array_cycle, 1},
    {"map-cycle", c_map_cycle, 1},
    {"set-cycle", c_set_cycle, 1},
    {"shared-views", c_shared_views, 1},
    {"error-in-cycle", c_error_in_cycle, 1},
    {"deep", c_deep, 1},
    {"json", c_json, 1},
};

#define NCASES ((int)HERD_ARRAY_SIZE(value_cases))

int test_value_case_count(void) {
  return NCASES;
}

const char* test_value_case_name(int i) {
  return value_cases[i].name;
}

herd_value_t* test_value_case_build(herd_value_heap_t* heap, int i) {
  return value_cases[i].build(heap);
}

static const herd_value_options_t ipc_format = {HERD_VALUE_FORMAT_IPC, 0, 0};
static const herd_value_options_t v8_format = {HERD_VALUE_FORMAT_V8, 0, 0};

static void print_hex(const char* label, const void* p, size_t n) {
  const uint8_t* b = p;
  fprintf(stderr, "%s (%zu):", label, n);
  for (size_t i = 0; i < n && i < 256; i++)
    fprintf(stderr, " %02x", b[i]);
  fprintf(stderr, n > 256 ? " ...\n" : "\n");
}

static uv_buf_t serialize(const value_t* v, const herd_value_options_t* o) {
  uv_buf_t buf;
  ASSERT_OK(herd_value_serialize(v, o, &buf));
  return buf;
}

static int hex_digit(int c) {
  return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Decodes `hex` into a malloc'd buffer. */
static uint8_t* unhex(const char* hex, size_t* len) {
  size_t n = strlen(hex) / 2;
  uint8_t* b = malloc(n + 1);
  ASSERT(b != NULL);
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
  *len = n;
  return b;
}

/* Decodes `hex` and returns the error (0 on success). */
static int decode_hex(const char* hex, const herd_value_options_t* o) {
  heap_t h;
  value_t* v;
  size_t len, before;
  uint8_t* b = unhex(hex, &len);
  int err;
  herd_value_heap_init(&h);
  before = herd_value_heap_size(&h);
  err = herd_value_deserialize(&h, b, len, o, &v);
  if (err != 0)
    ASSERT_EQ(herd_value_heap_size(&h), before);
  herd_value_heap_free(&h);
  free(b);
  return err;
}

TEST_IMPL(value_api) {
  heap_t h;
  value_t *v, *o, *a, *m, *s;
  size_t len;
  int neg;
  int64_t i64;
  uint32_t index;
  const uint8_t* mag;
  herd_value_heap_init(&h);

  ASSERT_EQ(herd_value_type(herd_value_undefined()), HERD_VALUE_UNDEFINED);
  ASSERT_EQ(herd_value_type(herd_value_null()), HERD_VALUE_NULL);
  ASSERT_EQ(herd_value_get_boolean(herd_value_boolean(7)), 1);
  ASSERT_STR_EQ(herd_value_type_name(HERD_VALUE_ARRAY_BUFFER), "arraybuffer");
  ASSERT_STR_EQ(herd_value_type_name((herd_value_type_t)99), "unknown");

  v = num(&h, -0.0);
  ASSERT(signbit(herd_value_get_number(v)));
  /* Wrong-type accessors answer 0 / NULL. */
  ASSERT(herd_value_get_string(v, &len) == NULL && len == 0);
  ASSERT(herd_value_bytes(v, NULL) == NULL);
  ASSERT_EQ(herd_value_view_kind(v), -1);
  ASSERT_EQ(herd_value_object_count(v), 0);
  ASSERT(herd_value_array_get(v, 0) == NULL);

  /* BigInts: sign, trimmed magnitude, int64 range. */
  v = herd_value_new_bigint_int64(&h, INT64_MIN);
  mag = herd_value_get_bigint(v, &neg, &len);
  ASSERT(neg == 1 && len == 8 && mag[7] == 0x80);
  ASSERT_OK(herd_value_get_bigint_int64(v, &i64));
  ASSERT(i64 == INT64_MIN);
  v = c_bigint_2_64(&h);
  herd_value_get_bigint(v, &neg, &len);
  ASSERT(neg == 0 && len == 9);
  ASSERT_EQ(herd_value_get_bigint_int64(v, &i64), UV_ERANGE);
  v = herd_value_new_bigint(&h, 1, (const uint8_t*)"\0\0", 2);
  herd_value_get_bigint(v, &neg, &len);
  ASSERT(neg == 0 && len == 0); /* -0n is 0n */

  /* Strings: WTF-8 in, lone surrogates kept, pairs joined. */
  v = c_string_lone_high(&h);
  ASSERT(herd_value_get_string(v, &len) != NULL && len == 5);
  {
    static const uint16_t pair[] = {0xd83d, 0xde00, 0xd800};
    v = herd_value_new_string_utf16(&h, pair, 3);
    ASSERT(memcmp(herd_value_get_string(v, &len),
                  "\xf0\x9f\x98\x80\xed\xa0\x80", 7) == 0);
    ASSERT_EQ(len, 7);
  }
  ASSERT(herd_value_new_string(&h, "\xed\xa0\xbd\xed\xb8\x80", 6) == NULL);
  ASSERT_EQ(herd_value_heap_error(&h), HERD_EBADUTF8);
  ASSERT(herd_value_new_string(&h, "\xc0\x80", 2) == NULL);
  ASSERT(herd_value_new_string(&h, "\xf4\x90\x80\x80", 4) == NULL);
  ASSERT(herd_value_new_string(&h, "\xe2\x82", 2) == NULL);

  /* Objects: replace in place, order kept, index keys on arrays. */
  o = obj(&h, 2, "b", num(&h, 1), "a", num(&h, 2));
  ASSERT(o != NULL);
  ASSERT_OK(herd_value_object_set(o, "b", num(&h, 3)));
  ASSERT_EQ(herd_value_object_count(o), 2);
  ASSERT_STR_EQ(herd_value_object_key(o, 0, &len), "b");
  ASSERT_EQ(herd_value_get_number(herd_value_object_value(o, 0)), 3);
  ASSERT(herd_value_object_get(o, "zz") == NULL);
  ASSERT_OK(herd_value_object_setn(o, "k\0k", 3, herd_value_null()));
  ASSERT(herd_value_object_getn(o, "k\0k", 3) == herd_value_null());
  /* Many keys: the hash index takes over and agrees with the list. */
  for (int i = 0; i < 200; i++) {
    char key[16];
    snprintf(key, sizeof(key), "k%d", i);
    ASSERT_OK(herd_value_object_set(o, key, num(&h, i)));
  }
  ASSERT_OK(herd_value_object_set(o, "k7", num(&h, -7)));
  ASSERT_EQ(herd_value_object_count(o), 203);
  ASSERT_EQ(herd_value_get_number(herd_value_object_get(o, "k7")), -7);
  ASSERT_EQ(herd_value_get_number(herd_value_object_get(o, "k199")), 199);

  a = herd_value_new_array(&h);
  ASSERT_OK(herd_value_array_set(a, 10, str(&h, "ten")));
  ASSERT_OK(herd_value_array_set(a, 3, str(&h, "three")));
  ASSERT_OK(herd_value_object_set(a, "5", num(&h, 5)));
  ASSERT_OK(herd_value_object_set(a, "05", num(&h, 0.5)));
  ASSERT_EQ(herd_value_object_set(a, "length", num(&h, 1)), UV_EINVAL);
  ASSERT_EQ(herd_value_array_length(a), 11);
  ASSERT_EQ(herd_value_array_count(a), 3);
  ASSERT(herd_value_array_get(a, 4) == NULL);
  ASSERT_EQ(herd_value_get_number(herd_value_object_get(a, "5")), 5);
  ASSERT(herd_value_array_element(a, 1, &index) != NULL && index == 5);
  ASSERT_EQ(herd_value_object_count(a), 1); /* "05" is a named property */
  ASSERT_OK(herd_value_array_set_length(a, 4));
  ASSERT_EQ(herd_value_array_count(a), 1);
  ASSERT_OK(herd_value_array_push(a, herd_value_null()));
  ASSERT(herd_value_array_get(a, 4) == herd_value_null());
  ASSERT_EQ(herd_value_array_set(a, 4294967295u, herd_value_null()), UV_EINVAL);

  m = c_map(&h);
  ASSERT_EQ(herd_value_map_count(m), 3);
  ASSERT_STR_EQ(herd_value_get_string(herd_value_map_key(m, 1), NULL), "k");
  ASSERT_EQ(herd_value_type(herd_value_map_value(m, 2)), HERD_VALUE_ARRAY);
  s = c_set(&h);
  ASSERT_EQ(herd_value_set_count(s), 4);
  ASSERT(herd_value_set_get(s, 4) == NULL);

  v = c_regexp_flags(&h);
  ASSERT_STR_EQ(herd_value_regexp_flags(v), "dgimsuy");
  ASSERT_STR_EQ(herd_value_regexp_source(v, &len), "x");
  ASSERT(herd_value_new_regexp(&h, "x", 1, "gg") == NULL);
  ASSERT(herd_value_new_regexp(&h, "x", 1, "uv") == NULL);
  ASSERT(herd_value_new_regexp(&h, "x", 1, "l") == NULL);
  ASSERT_EQ(herd_value_heap_error(&h), UV_EINVAL);

  v = c_array_buffer_resizable(&h);
  ASSERT(herd_value_array_buffer_resizable(v, &len) && len == 16);
  ASSERT(memcmp(herd_value_bytes(v, &len), "\x07\x08", 2) == 0 && len == 2);
  v = c_float64(&h);
  ASSERT_EQ(herd_value_view_kind(v), HERD_VIEW_FLOAT64);
  ASSERT(((uintptr_t)herd_value_bytes(v, NULL) & 7) == 0);
  ASSERT(((double*)(void*)herd_value_bytes(v, NULL))[0] == 3.141592653589793);
  ASSERT(view(&h, HERD_VIEW_INT32, "abc", 3) == NULL);
  ASSERT(view(&h, (herd_view_kind_t)14, "a", 1) == NULL);
  ASSERT_EQ(herd_view_element_size(HERD_VIEW_BIGUINT64), 8);

  v = c_error_cause_stack(&h);
  ASSERT_EQ(herd_value_error_kind(v), HERD_JS_TYPE_ERROR);
  ASSERT_STR_EQ(herd_value_get_string(herd_value_error_stack(v), NULL),
                "TypeError: t");
  ASSERT_EQ(herd_value_get_number(herd_value_error_cause(v)), 5);
  ASSERT(herd_value_error_message(c_error_no_message(&h)) == NULL);
  v = herd_value_new_boxed(&h, str(&h, "b"));
  ASSERT_EQ(herd_value_type(herd_value_boxed_get(v)), HERD_VALUE_STRING);
  ASSERT(herd_value_new_boxed(&h, herd_value_null()) == NULL);

  /* Values equal to themselves; identity shape matters. */
  ASSERT_EQ(herd__value_equal(c_shared(&h), c_shared(&h)), 1);
  {
    value_t* x = obj(&h, 1, "s", num(&h, 1));
    value_t* y = obj(&h, 1, "s", num(&h, 1));
    ASSERT_EQ(herd__value_equal(arr(&h, 2, x, x), arr(&h, 2, x, y)), 0);
  }
  /* Node's isInternal(). */
  {
    const char* cmd;
    size_t n;
    ASSERT(herd__value_internal_cmd(obj(&h, 1, "cmd", str(&h, "NODE_HANDLE")),
                                    &cmd, &n));
    ASSERT(n == 11 && strcmp(cmd, "NODE_HANDLE") == 0);
    ASSERT(!herd__value_internal_cmd(obj(&h, 1, "cmd", str(&h, "NODE_")), NULL,
                                     NULL));
    ASSERT(!herd__value_internal_cmd(obj(&h, 1, "cmd", str(&h, "NODEX_A")),
                                     NULL, NULL));
    ASSERT(!herd__value_internal_cmd(c_map(&h), NULL, NULL));
    ASSERT(
        !herd__value_internal_cmd(obj(&h, 1, "cmd", num(&h, 1)), NULL, NULL));
  }
  ASSERT(herd_value_heap_size(&h) > 0);
  herd_value_heap_free(&h);
  ASSERT_EQ(herd_value_heap_size(&h), 0);
  return 0;
}

TEST_IMPL(value_bad_arguments) {
  heap_t h, other;
  value_t *o, *foreign;
  uv_buf_t buf;
  herd_value_heap_init(&h);
  herd_value_heap_init(&other);
  o = herd_value_new_object(&h);
  foreign = num(&other, 1);
  /* A member from another heap, a wrong container, a NULL member. */
  ASSERT_EQ(herd_value_object_set(o, "a", foreign), UV_EINVAL);
  ASSERT_EQ(herd_value_array_push(o, num(&h, 1)), UV_EINVAL);
  ASSERT_EQ(herd_value_map_set(o, num(&h, 1), num(&h, 1)), UV_EINVAL);
  ASSERT_EQ(herd_value_set_add(o, num(&h, 1)), UV_EINVAL);
  ASSERT_EQ(herd_value_error_set_cause(o, num(&h, 1)), UV_EINVAL);
  ASSERT_EQ(herd_value_object_set(NULL, "a", num(&h, 1)), UV_EINVAL);
  ASSERT_EQ(herd_value_object_set(o, "\xff", num(&h, 1)), HERD_EBADUTF8);
  /* A failed constructor's reason comes back from the container. */
  ASSERT_EQ(herd_value_object_set(o, "s", str(&h, "\xff")), HERD_EBADUTF8);
  ASSERT_EQ(herd_value_object_count(o), 0);
  ASSERT_EQ(herd_value_serialize(NULL, NULL, &buf), UV_EINVAL);
  ASSERT_EQ(herd_value_deserialize(&h, NULL, 3, NULL, &o), UV_EINVAL);
  {
    herd_value_options_t bad = {(herd_value_format_t)7, 0, 0};
    ASSERT_EQ(herd_value_serialize(herd_value_null(), &bad, &buf), UV_EINVAL);
    ASSERT_EQ(herd_value_deserialize(&h, "\xff\x0f_", 3, &bad, &o), UV_EINVAL);
  }
  herd_value_heap_free(&h);
  herd_value_heap_free(&other);
  return 0;
}

/* C -> bytes -> C for every case in both formats: equal values, and the
 * second serialization gives the same bytes (a fixed point). */
TEST_IMPL(value_roundtrip) {
  for (int f = 0; f < 2; f++) {
    const herd_value_options_t* o = f ? &v8_format : &ipc_format;
    for (int i = 0; i < NCASES; i++) {
      heap_t h;
      value_t *v, *back;
      uv_buf_t b1, b2;
      herd_value_heap_init(&h);
      v = value_cases[i].build(&h);
      ASSERT(v != NULL);
      b1 = serialize(v, o);
      ASSERT_OK(herd_value_deserialize(&h, b1.base, b1.len, o, &back));
      if (herd__value_equal(v, back) != 1)
        FATAL("%s: not equal after a round trip", value_cases[i].name);
      b2 = serialize(back, o);
      ASSERT(b1.len == b2.len && memcmp(b1.base, b2.base, b1.len) == 0);
      free(b2.base);
      {
        /* A copy outlives its source's heap. */
        heap_t other;
        value_t* c;
        herd_value_heap_init(&other);
        ASSERT_OK(herd_value_copy(&other, v, &c));
        herd_value_heap_free(&h);
        b2 = serialize(c, o);
        ASSERT(b1.len == b2.len && memcmp(b1.base, b2.base, b1.len) == 0);
        free(b2.base);
        ASSERT_EQ(herd__value_equal(c, value_cases[i].build(&other)), 1);
        herd_value_heap_free(&other);
      }
      free(b1.base);
    }
  }
  return 0;
}

static const char* peer_script(char* buf, size_t cap) {
  snprintf(buf, cap, "%s/test/fixtures/value-peer.js", test_source_dir());
  return buf;
}

/* Runs `node argv...` to completion (25 s at most); its status. */
static int run_node(const char* const* argv) {
  pid_t pid = fork();
  int status;
  ASSERT(pid >= 0);
  if (pid == 0) {
    execvp("node", (char* const*)argv);
    _exit(127);
  }
  for (int i = 0; i < 2500; i++) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    test_sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  FATAL("node did not finish");
}

/* A Node parent with serialization: 'advanced' sends every case to the
 * helper below through its real child_process channel, and takes every
 * case back from it. */
TEST_IMPL(value_node_channel) {
  char script[1024];
  const char* argv[] = {"node",     peer_script(script, sizeof(script)),
                        "channel",  test_exe(),
                        "--helper", "value_peer",
                        NULL};
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

static int read_full(int fd, void* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char*)p + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    got += (size_t)r;
  }
  return 0;
}

static void write_full(int fd, const void* p, size_t n) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = write(fd, (const char*)p + put, n - put);
    if (r < 0 && errno == EINTR)
      continue;
    ASSERT(r > 0);
    put += (size_t)r;
  }
}

/* Each case as a one-element array, as value-peer.js sends them. */
static value_t* wrapped(heap_t* h, int i) {
  return arr(h, 1, value_cases[i].build(h));
}

/* Speaks Node's advanced framing by hand on NODE_CHANNEL_FD (a 32-bit
 * big-endian length, then the bytes): reads every case Node sends, checks
 * each against the C-built value (and, where Node writes the same bytes,
 * against herd's bytes), then sends every case back. */
HELPER_IMPL(value_peer) {
  const char* env = getenv("NODE_CHANNEL_FD");
  int fd, failed = 0;
  char c;
  (void)argc;
  (void)argv;
  ASSERT(env != NULL);
  ASSERT_STR_EQ(getenv("NODE_CHANNEL_SERIALIZATION_MODE"), "advanced");
  fd = atoi(env);
  ASSERT_OK(herd__nonblock(fd, 0));
  for (int i = 0; i < NCASES; i++) {
    uint8_t head[4];
    uint8_t* payload;
    size_t len;
    heap_t h;
    value_t *got, *want;
    int err;
    ASSERT_EQ(read_full(fd, head, 4), 0);
    len = (size_t)head[0] << 24 | (size_t)head[1] << 16 | (size_t)head[2] << 8 |
          head[3];
    payload = malloc(len + 1);
    ASSERT(payload != NULL);
    ASSERT_EQ(read_full(fd, payload, len), 0);
    herd_value_heap_init(&h);
    want = wrapped(&h, i);
    err = herd_value_deserialize(&h, payload, len, &ipc_format, &got);
    if (err != 0 || herd__value_equal(got, want) != 1) {
      fprintf(stderr, "value_peer: node -> herd %s: %s\n", value_cases[i].name,
              err ? herd_err_name(err) : "differs");
      print_hex("node", payload, len);
      failed++;
    } else if (value_cases[i].exact) {
      uv_buf_t mine = serialize(want, &ipc_format);
      if (mine.len != len || memcmp(mine.base, payload, len) != 0) {
        fprintf(stderr, "value_peer: %s: bytes differ\n", value_cases[i].name);
        print_hex("node", payload, len);
        print_hex("herd", mine.base, mine.len);
        failed++;
      }
      free(mine.base);
    }
    herd_value_heap_free(&h);
    free(payload);
  }
  for (int i = 0; i < NCASES; i++) {
    heap_t h;
    uv_buf_t frame;
    size_t n;
    herd_value_heap_init(&h);
    ASSERT_OK(herd__value_write(wrapped(&h, i), NULL, 4, &frame));
    n = frame.len - 4;
    frame.base[0] = (char)(n >> 24);
    frame.base[1] = (char)(n >> 16);
    frame.base[2] = (char)(n >> 8);
    frame.base[3] = (char)n;
    write_full(fd, frame.base, frame.len);
    free(frame.base);
    herd_value_heap_free(&h);
  }
  /* Node disconnects once it has every case. */
  while (read(fd, &c, 1) > 0)
    ;
  close(fd);
  return failed ? 1 : 0;
}

/* v8.serialize() / v8.deserialize() both ways, through files of hex lines:
 * herd's bytes must read back in Node as each case, and Node's bytes must
 * read back in herd as each case, byte for byte where Node writes the
 * same. */
TEST_IMPL(value_node_v8) {
  char dir[] = "/tmp/herd-value-XXXXXX";
  char in[256], out[256], script[1024];
  const char* argv[] = {
      "node", peer_script(script, sizeof(script)), "v8", in, out, NULL};
  FILE* f;
  char* text;
  char* line;
  char* save = NULL;
  size_t len;
  int i = 0;
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(in, sizeof(in), "%s/herd.hex", dir);
  snprintf(out, sizeof(out), "%s/node.hex", dir);
  f = fopen(in, "w");
  ASSERT(f != NULL);
  for (int k = 0; k < NCASES; k++) {
    heap_t h;
    uv_buf_t b;
    herd_value_heap_init(&h);
    b = serialize(value_cases[k].build(&h), &v8_format);
    for (size_t j = 0; j < b.len; j++)
      fprintf(f, "%02x", (uint8_t)b.base[j]);
    fputc('\n', f);
    free(b.base);
    herd_value_heap_free(&h);
  }
  fclose(f);
  ASSERT_EQ(run_node(argv), 0);
  text = test_read_file(out, &len);
  ASSERT(text != NULL);
  for (line = strtok_r(text, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save), i++) {
    heap_t h;
    value_t *got, *want;
    uint8_t* bytes;
    size_t n;
    ASSERT(i < NCASES);
    bytes = unhex(line, &n);
    herd_value_heap_init(&h);
    want = value_cases[i].build(&h);
    ASSERT_OK(herd_value_deserialize(&h, bytes, n, &v8_format, &got));
    if (herd__value_equal(got, want) != 1)
      FATAL("%s: node's value differs", value_cases[i].name);
    if (value_cases[i].exact) {
      uv_buf_t mine = serialize(want, &v8_format);
      if (mine.len != n || memcmp(mine.base, bytes, n) != 0) {
        print_hex("node", bytes, n);
        print_hex("herd", mine.base, mine.len);
        FATAL("%s: bytes differ", value_cases[i].name);
      }
      free(mine.base);
    }
    herd_value_heap_free(&h);
    free(bytes);
  }
  ASSERT_EQ(i, NCASES);
  free(text);
  unlink(in);
  unlink(out);
  rmdir(dir);
  return 0;
}

/* JSON.stringify() of every case as Node writes it, and JSON.parse() of
 * Node's text back to the same text. */
TEST_IMPL(value_json_vs_node) {
  char dir[] = "/tmp/herd-value-XXXXXX";
  char path[256], script[1024];
  const char* argv[] = {"node", peer_script(script, sizeof(script)), "json",
                        path, NULL};
  char* text;
  char* line;
  char* save = NULL;
  size_t len;
  int i = 0;
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/json.txt", dir);
  ASSERT_EQ(run_node(argv), 0);
  text = test_read_file(path, &len);
  ASSERT(text != NULL);
  for (line = strtok_r(text, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save), i++) {
    char* want = strchr(line, '\t');
    heap_t h;
    uv_buf_t b;
    value_t* v;
    int err;
    ASSERT(want != NULL && i < NCASES);
    *want++ = '\0';
    ASSERT_STR_EQ(line, value_cases[i].name);
    herd_value_heap_init(&h);
    err = herd_value_to_json(value_cases[i].build(&h), NULL, &b);
    if (strcmp(want, "!") == 0) {
      if (err != UV_EINVAL && err != HERD_EVALUELIMIT)
        FATAL("%s: %s where JSON.stringify throws", line, herd_err_name(err));
    } else {
      if (err != 0)
        FATAL("%s: %s", line, herd_err_name(err));
      if (strcmp(b.base, want) != 0)
        FATAL("%s: herd %.200s, node %.200s", line, b.base, want);
      free(b.base);
      ASSERT_OK(herd_value_from_json(&h, want, strlen(want), NULL, &v));
      ASSERT_OK(herd_value_to_json(v, NULL, &b));
      ASSERT_STR_EQ(b.base, want);
      free(b.base);
    }
    herd_value_heap_free(&h);
  }
  ASSERT_EQ(i, NCASES);
  free(text);
  unlink(path);
  rmdir(dir);
  return 0;
}

/* Number keys print as JavaScript prints numbers: every power of two
 * (where the shortest form is hardest) and pseudo-random doubles, against
 * node's String(). */
TEST_IMPL(value_number_strings) {
  char dir[] = "/tmp/herd-value-XXXXXX";
  char in[256], out[256], script[1024];
  const char* argv[] = {
      "node", peer_script(script, sizeof(script)), "numbers", in, out, NULL};
  double* all;
  int n = 0;
  uint64_t x = 0x9e3779b97f4a7c15u;
  FILE* f;
  char* text;
  char* line;
  char* save = NULL;
  size_t len;
  all = malloc(sizeof(double) * 6000);
  ASSERT(all != NULL);
  for (int e = -1074; e <= 1023; e++) {
    double d = 1;
    for (int i = 0; i < (e < 0 ? -e : e); i++)
      d = e < 0 ? d / 2 : d * 2;
    all[n++] = d;
    all[n++] = -d * 3;
  }
  while (n < 6000) {
    uint64_t bits;
    double d;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bits = x;
    memcpy(&d, &bits, 8);
    if (!isnan(d))
      all[n++] = d;
  }
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(in, sizeof(in), "%s/in", dir);
  snprintf(out, sizeof(out), "%s/out", dir);
  f = fopen(in, "w");
  ASSERT(f != NULL);
  for (int i = 0; i < n; i++) {
    uint64_t bits;
    memcpy(&bits, &all[i], 8);
    fprintf(f, "%016" PRIx64 "\n", bits);
  }
  fclose(f);
  ASSERT_EQ(run_node(argv), 0);
  text = test_read_file(out, &len);
  ASSERT(text != NULL);
  line = strtok_r(text, "\n", &save);
  for (int i = 0; i < n; i++, line = strtok_r(NULL, "\n", &save)) {
    char mine[40];
    ASSERT(line != NULL);
    herd__js_number_to_string(all[i], mine);
    if (strcmp(mine, line) != 0)
      FATAL("%.17g: herd %s, node %s", all[i], mine, line);
  }
  free(text);
  free(all);
  unlink(in);
  unlink(out);
  rmdir(dir);
  return 0;
}

TEST_IMPL(value_json) {
  static const struct {
    const char* json;
    int err;
  } bad[] = {
      {"", HERD_EBADJSON},
      {"  ", HERD_EBADJSON},
      {"[1,]", HERD_EBADJSON},
      {"{\"a\":1,}", HERD_EBADJSON},
      {"01", HERD_EBADJSON},
      {"1.", HERD_EBADJSON},
      {"-", HERD_EBADJSON},
      {"1e", HERD_EBADJSON},
      {"nul", HERD_EBADJSON},
      {"[1] 2", HERD_EBADJSON},
      {"\"a", HERD_EBADJSON},
      {"\"\\x\"", HERD_EBADJSON},
      {"\"\\u12g4\"", HERD_EBADJSON},
      {"\"\t\"", HERD_EBADJSON},
      {"{1:2}", HERD_EBADJSON},
      {"\"\xff\"", HERD_EBADUTF8},
      {"\"\xed\xa0\x80\"", HERD_EBADUTF8},
      {"'a'", HERD_EBADJSON},
      {"NaN", HERD_EBADJSON},
      {"[[[[[[[[[[[[1]]]]]]]]]]]]", HERD_EVALUELIMIT},
  };
  herd_value_options_t shallow = {HERD_VALUE_FORMAT_IPC, 8, 0};
  heap_t h;
  value_t* v;
  uv_buf_t b;
  size_t len, before;
  herd_value_heap_init(&h);
  for (size_t i = 0; i < HERD_ARRAY_SIZE(bad); i++) {
    int err;
    before = herd_value_heap_size(&h);
    err = herd_value_from_json(&h, bad[i].json, strlen(bad[i].json), &shallow,
                               &v);
    if (err != bad[i].err)
      FATAL("%s: %s, expected %s", bad[i].json, herd_err_name(err),
            herd_err_name(bad[i].err));
    ASSERT_EQ(herd_value_heap_size(&h), before);
  }
  /* Escapes: a pair is one character, a lone half stays one. */
  {
    const char* j = " \"\\ud83d\\ude00\\ud800\\/\\n\" ";
    ASSERT_OK(herd_value_from_json(&h, j, strlen(j), NULL, &v));
  }
  ASSERT(memcmp(herd_value_get_string(v, &len),
                "\xf0\x9f\x98\x80\xed\xa0\x80/\n", 9) == 0 &&
         len == 9);
  ASSERT_OK(herd_value_to_json(v, NULL, &b));
  ASSERT_STR_EQ(b.base, "\"\xf0\x9f\x98\x80\\ud800/\\n\"");
  free(b.base);
  /* A key twice: first place, last value; numbers as JavaScript. */
  {
    const char* j =
        "{\"a\":1,\"b\":2,\"a\":3,\"n\":[1e400,-0,0.1e1,"
        "123456789012345678901234]}";
    ASSERT_OK(herd_value_from_json(&h, j, strlen(j), NULL, &v));
  }
  ASSERT_OK(herd_value_to_json(v, NULL, &b));
  ASSERT_STR_EQ(b.base,
                "{\"a\":3,\"b\":2,\"n\":[null,0,1,1.2345678901234569e+23]}");
  free(b.base);
  /* JSON.stringify() details: index keys first, undefined members left
   * out, dates, a value met twice written twice, cycles refused. */
  v = obj(&h, 4, "b", num(&h, 1), "7", herd_value_undefined(), "2",
          herd_value_new_date(&h, -62198755200000.0), "x",
          herd_value_new_date(&h, 253402300800000.0));
  ASSERT_OK(herd_value_to_json(v, NULL, &b));
  ASSERT_STR_EQ(b.base,
                "{\"2\":\"-000001-01-01T00:00:00.000Z\",\"b\":1,"
                "\"x\":\"+010000-01-01T00:00:00.000Z\"}");
  free(b.base);
  ASSERT_EQ(herd_value_to_json(c_cycle(&h), NULL, &b), UV_EINVAL);
  ASSERT_EQ(herd_value_to_json(herd_value_undefined(), NULL, &b), UV_EINVAL);
  ASSERT_EQ(herd_value_to_json(c_array_huge_sparse(&h), NULL, &b),
            HERD_EVALUELIMIT);
  ASSERT_EQ(herd_value_to_json(c_deep(&h), &shallow, &b), HERD_EVALUELIMIT);
  {
    uint16_t half[] = {0x3c00, 0xc000, 0x0001, 0x7c00};
    v = view(&h, HERD_VIEW_FLOAT16, half, sizeof(half));
    ASSERT_OK(herd_value_to_json(v, NULL, &b));
    ASSERT_STR_EQ(b.base,
                  "{\"0\":1,\"1\":-2,\"2\":5.960464477539063e-8,\"3\":null}");
    free(b.base);
  }
  herd_value_heap_free(&h);
  return 0;
}

TEST_IMPL(value_malformed) {
  static const struct {
    const char* hex;
    int err;
  } bad[] = {
      {"", HERD_EBADVALUE},
      {"ff", HERD_EBADVALUE},
      {"ff0f", HERD_EBADVALUE},               /* no value */
      {"5f", HERD_EBADVALUE},                 /* no header */
      {"ff105f", HERD_EVALUETYPE},            /* version 16 */
      {"ff0c5f", HERD_EVALUETYPE},            /* version 12 */
      {"ff8f8f8f8f8f5f", HERD_EBADVALUE},     /* version varint too long */
      {"ff0f01", HERD_EBADVALUE},             /* unknown tag */
      {"ff0f2d", HERD_EBADVALUE},             /* the hole outside an array */
      {"ff0f0000", HERD_EBADVALUE},           /* only padding */
      {"ff0f5e00", HERD_EBADVALUE},           /* reference to nothing */
      {"ff0f41015e01240001", HERD_EBADVALUE}, /* reference ahead */
      {"ff0f6f7b01", HERD_EBADVALUE},         /* property count */
      {"ff0f6f22016149007b", HERD_EBADVALUE}, /* truncated count */
      {"ff0f6f220161490022016149027b02", HERD_EBADVALUE}, /* same key */
      {"ff0f6f4902490022013149027b02", HERD_EBADVALUE},   /* 1 and "1" */
      {"ff0f6f5f49007b01", HERD_EBADVALUE},     /* undefined as a key */
      {"ff0f6f6f7b0049007b01", HERD_EBADVALUE}, /* object as a key */
      {"ff0f610222066c656e67746849024001 02", HERD_EBADVALUE}, /* "length" */
      {"ff0f6102490249024902490440020 2", HERD_EBADVALUE},     /* index twice */
      {"ff0f410249024902240003", HERD_EBADVALUE},              /* length */
      {"ff0f4101490249004902240101", HERD_EBADVALUE}, /* element 0 twice */
      {"ff0f41ffffffff0f", HERD_EBADVALUE},     /* more elements than bytes */
      {"ff0f61024002", HERD_EBADVALUE},         /* truncated sparse end */
      {"ff0f49ffffffff7f", HERD_EBADVALUE},     /* varint over 32 bits */
      {"ff0f4980808080808000", HERD_EBADVALUE}, /* varint too long */
      {"ff0f630361620063", HERD_EBADVALUE},     /* odd two-byte length */
      {"ff0f2205616263", HERD_EBADVALUE},       /* string past the end */
      {"ff0f5a1001", HERD_EBADVALUE},           /* BigInt digits past end */
      {"ff0f4e000000", HERD_EBADVALUE},         /* short double */
      {"ff0f3b49023a02", HERD_EBADVALUE},       /* Map entry without value */
      {"ff0f3b3a02", HERD_EBADVALUE},           /* Map count */
      {"ff0f27492c02", HERD_EBADVALUE},         /* Set count */
      {"ff0f52220161c001", HERD_EBADVALUE},     /* RegExp kLinear */
      {"ff0f52220161900200", HERD_EBADVALUE},   /* RegExp 'u' and 'v' */
      {"ff0f52490200", HERD_EBADVALUE},         /* RegExp source not a string */
      {"ff0f7278", HERD_EBADVALUE},             /* error sub-tag */
      {"ff0f726d49002e", HERD_EBADVALUE},       /* error message not string */
      {"ff0f726d220161", HERD_EBADVALUE},       /* error without end */
      {"ff0f4204010203", HERD_EBADVALUE},       /* ArrayBuffer past the end */
      {"ff0f7e0201aaaa", HERD_EBADVALUE},       /* resizable: length > max */
      {"ff0f420201025642000300", HERD_EBADVALUE},   /* view past the buffer */
      {"ff0f42020102560000000200", HERD_EBADVALUE}, /* view subtag */
      {"ff0f42030102035677010200", HERD_EBADVALUE}, /* Int16 misaligned */
      {"ff0f42020102564200020100", HERD_EBADVALUE}, /* RAB flag, fixed AB */
      {"ff0f5c000303010203", HERD_EBADVALUE},       /* host: Int16 of 3 bytes */
      {"ff0f5c0001050102", HERD_EBADVALUE}, /* host: bytes past the end */
      {"ff0f5c014902", HERD_EBADVALUE},     /* host: a copy that is 1 */
      {"ff0f5a8280808001", HERD_EBADVALUE}, /* BigInt over 2^30 bits */
      {"ff0f5c02", HERD_EVALUETYPE},        /* host: unknown Node tag */
      {"ff0f5c000e0100", HERD_EVALUETYPE},  /* host: unknown view type */
      {"ff0f7501", HERD_EVALUETYPE},        /* SharedArrayBuffer */
      {"ff0f7400", HERD_EVALUETYPE},        /* transferred ArrayBuffer */
      {"ff0f7700", HERD_EVALUETYPE},        /* WebAssembly module */
      {"ff0f6d00", HERD_EVALUETYPE},        /* WebAssembly memory */
      {"ff0f7000", HERD_EVALUETYPE},        /* shared object */
      {"ff0d7000", HERD_EBADVALUE},         /* ... before version 15 */
  };
  static const struct {
    const char* hex;
    int format;
  } good[] = {
      {"ff0f3f0249 02", 0},                  /* kVerifyObjectCount is skipped */
      {"ff0f00004902", 0},                   /* padding before a tag */
      {"ff0f4902ffffff", 0},                 /* bytes after the value */
      {"ff0f5506", 0},                       /* Uint32 */
      {"ff0f5303c3a962", 0},                 /* legacy UTF-8 string */
      {"ff0f5303ff61ed", 0},                 /* ... with bad bytes: U+FFFD */
      {"ff0f6f4e000000000000f83f5f7b01", 0}, /* number key 1.5 */
      {"ff0f61024904490640010 2", 0},        /* index past the length */
      {"ff0f4202010256420001 00", 0},        /* V8's own Uint8Array view */
      {"ff0f5c010101ff", 1},                 /* v8.serialize() Uint8Array */
      {"ff0f5c016f22016149027b01", 0},       /* other host object: its copy */
      {"ff0f725254732201532e", 0},           /* error sub-tags in any order */
      {"ff0f72635e002e", 0},                 /* error that is its own cause */
      {"ff0e420201025642000100", 0},         /* version 14 view with flags */
      {"ff0d420201025642000100", 0},         /* version 13 view, no flags */
  };
  char hex[256];
  for (size_t i = 0; i < HERD_ARRAY_SIZE(bad); i++) {
    int err, j = 0;
    for (const char* c = bad[i].hex; *c != '\0'; c++)
      if (*c != ' ')
        hex[j++] = *c;
    hex[j] = '\0';
    err = decode_hex(hex, &ipc_format);
    if (err != bad[i].err)
      FATAL("%s: %s, expected %s", bad[i].hex, herd_err_name(err),
            herd_err_name(bad[i].err));
  }
  for (size_t i = 0; i < HERD_ARRAY_SIZE(good); i++) {
    int err, j = 0;
    for (const char* c = good[i].hex; *c != '\0'; c++)
      if (*c != ' ')
        hex[j++] = *c;
    hex[j] = '\0';
    err = decode_hex(hex, good[i].format ? &v8_format : &ipc_format);
    if (err != 0)
      FATAL("%s: %s", good[i].hex, herd_err_name(err));
  }
  {
    /* What the legacy UTF-8 string and the index past the length read
     * as. */
    heap_t h;
    value_t* v;
    size_t len;
    uint8_t* b;
    herd_value_heap_init(&h);
    b = unhex("ff0f5303ff61ed", &len);
    ASSERT_OK(herd_value_deserialize(&h, b, len, NULL, &v));
    ASSERT_STR_EQ(herd_value_get_string(v, NULL),
                  "\xef\xbf\xbd"
                  "a\xef\xbf\xbd");
    free(b);
    b = unhex("ff0f610249044906400102", &len);
    ASSERT_OK(herd_value_deserialize(&h, b, len, NULL, &v));
    ASSERT_EQ(herd_value_array_length(v), 3);
    free(b);
    b = unhex("ff0f6f4e000000000000f83f5f7b01", &len);
    ASSERT_OK(herd_value_deserialize(&h, b, len, NULL, &v));
    ASSERT_STR_EQ(herd_value_object_key(v, 0, NULL), "1.5");
    free(b);
    herd_value_heap_free(&h);
  }
  /* Every proper prefix of every case's bytes is refused, and leaves the
   * heap as it was. */
  for (int i = 0; i < NCASES; i++) {
    heap_t h;
    value_t* v;
    uv_buf_t b;
    herd_value_heap_init(&h);
    b = serialize(value_cases[i].build(&h), &ipc_format);
    for (size_t n = 0; n < b.len; n++) {
      size_t before = herd_value_heap_size(&h);
      int err = herd_value_deserialize(&h, b.base, n, NULL, &v);
      if (err != HERD_EBADVALUE)
        FATAL("%s: prefix %zu of %zu: %s", value_cases[i].name, n, b.len,
              herd_err_name(err));
      ASSERT_EQ(herd_value_heap_size(&h), before);
      if (n > 4096 && n + 4096 < b.len)
        n += 4096; /* long strings: sample the middle */
    }
    free(b.base);
    herd_value_heap_free(&h);
  }
  return 0;
}

/* Arrays ([[...]]) or objects ({a: {a: ...}}) nested `depth` deep, as
 * bytes. */
static uint8_t* nested_bytes(int depth, int objects, size_t* len) {
  size_t n = 3 + (size_t)depth * 7;
  uint8_t* b = malloc(n);
  size_t k = 0;
  ASSERT(b != NULL);
  b[k++] = 0xff;
  b[k++] = 0x0f;
  for (int i = 0; i < depth; i++) {
    if (objects) {
      memcpy(b + k,
             "o\"\x01"
             "a",
             4);
      k += 4;
    } else {
      b[k++] = 'A';
      b[k++] = 1;
    }
  }
  b[k++] = '_';
  for (int i = 0; i < depth; i++) {
    if (objects) {
      b[k++] = '{';
      b[k++] = 1;
    } else {
      b[k++] = '$';
      b[k++] = 0;
      b[k++] = 1;
    }
  }
  *len = k;
  return b;
}

TEST_IMPL(value_limits) {
  heap_t h;
  value_t *v, *deep;
  uv_buf_t b;
  size_t len, before;
  uint8_t* bytes;
  herd_value_options_t small = {HERD_VALUE_FORMAT_IPC, 10, 4096};
  herd_value_heap_init(&h);

  /* The default depth is reachable (the recursion fits the stack, under
   * the sanitizers too); one more level is refused. */
  for (int objects = 0; objects < 2; objects++) {
    bytes = nested_bytes(HERD_VALUE_DEFAULT_MAX_DEPTH - 1, objects, &len);
    ASSERT_OK(herd_value_deserialize(&h, bytes, len, NULL, &v));
    ASSERT_OK(herd_value_serialize(v, NULL, &b));
    ASSERT(b.len == len && memcmp(b.base, bytes, len) == 0);
    free(b.base);
    ASSERT_OK(herd_value_to_json(v, NULL, &b));
    ASSERT_OK(herd_value_from_json(&h, b.base, b.len, NULL, &v));
    free(b.base);
    ASSERT_OK(herd_value_copy(&h, v, &v));
    free(bytes);
    bytes = nested_bytes(HERD_VALUE_DEFAULT_MAX_DEPTH, objects, &len);
    before = herd_value_heap_size(&h);
    ASSERT_EQ(herd_value_deserialize(&h, bytes, len, NULL, &v),
              HERD_EVALUELIMIT);
    ASSERT_EQ(herd_value_heap_size(&h), before);
    free(bytes);
  }

  /* A smaller depth for both directions. */
  deep = c_deep(&h);
  ASSERT_EQ(herd_value_serialize(deep, &small, &b), HERD_EVALUELIMIT);
  b = serialize(deep, NULL);
  ASSERT_EQ(herd_value_deserialize(&h, b.base, b.len, &small, &v),
            HERD_EVALUELIMIT);
  free(b.base);
  /* A cycle is not deep. */
  b = serialize(c_cycle(&h), &small);
  free(b.base);

  /* Memory: a 64 KiB ArrayBuffer is over a 4 KiB budget; so is a long
   * run of small values that each cost more than their bytes. */
  v = herd_value_new_array_buffer(&h, NULL, 65536);
  b = serialize(v, NULL);
  before = herd_value_heap_size(&h);
  ASSERT_EQ(herd_value_deserialize(&h, b.base, b.len, &small, &v),
            HERD_EVALUELIMIT);
  ASSERT_EQ(herd_value_heap_size(&h), before);
  free(b.base);
  v = herd_value_new_array(&h);
  for (int i = 0; i < 1000; i++)
    ASSERT_OK(herd_value_array_push(v, num(&h, i + 0.5)));
  b = serialize(v, NULL);
  before = herd_value_heap_size(&h);
  ASSERT_EQ(herd_value_deserialize(&h, b.base, b.len, &small, &v),
            HERD_EVALUELIMIT);
  ASSERT_EQ(herd_value_heap_size(&h), before);
  free(b.base);
  /* A heap holding values does not count against a new decode's budget. */
  b = serialize(c_object(&h), NULL);
  ASSERT_OK(herd_value_deserialize(&h, b.base, b.len, &small, &v));
  free(b.base);
  herd_value_heap_free(&h);
  return 0;
}

/* An allocator that fails the n-th allocation from now on. */
static int alloc_countdown = -1;

static int alloc_fails(void) {
  if (alloc_countdown < 0)
    return 0;
  return alloc_countdown-- == 0;
}

static void* fail_malloc(size_t n) {
  return alloc_fails() ? NULL : malloc(n);
}

static void* fail_realloc(void* p, size_t n) {
  return alloc_fails() ? NULL : realloc(p, n);
}

static void* fail_calloc(size_t n, size_t m) {
  return alloc_fails() ? NULL : calloc(n, m);
}

/* Builds, copies, serializes and deserializes every case with the n-th
 * allocation failing, for every n until none fails: each step reports
 * UV_ENOMEM (or succeeds), and nothing leaks (the sanitizer's leak check
 * and the heap's own count). */
TEST_IMPL(value_alloc_failure) {
  ASSERT_OK(
      herd_replace_allocator(fail_malloc, fail_realloc, fail_calloc, free));
  for (int i = 0; i < NCASES; i++) {
    if (strcmp(value_cases[i].name, "string-long") == 0)
      continue; /* the same steps as string-ascii, 100000 times slower */
    for (int n = 0;; n++) {
      heap_t h;
      value_t *v, *back;
      uv_buf_t b;
      int err, failed;
      herd_value_heap_init(&h);
      alloc_countdown = n;
      v = value_cases[i].build(&h);
      if (v == NULL) {
        ASSERT_EQ(herd_value_heap_error(&h), UV_ENOMEM);
        err = UV_ENOMEM;
      } else {
        heap_t other;
        value_t* c;
        herd_value_heap_init(&other);
        err = herd_value_copy(&other, v, &c);
        if (err == 0)
          ASSERT_EQ(herd__value_equal(v, c) == 1 || alloc_countdown < 0, 1);
        else
          ASSERT_EQ(herd_value_heap_size(&other), 0);
        herd_value_heap_free(&other);
        if (err == 0)
          err = herd_value_serialize(v, NULL, &b);
        if (err == 0) {
          size_t before = herd_value_heap_size(&h);
          err = herd_value_deserialize(&h, b.base, b.len, NULL, &back);
          if (err != 0)
            ASSERT_EQ(herd_value_heap_size(&h), before);
          else
            ASSERT_EQ(herd__value_equal(v, back) == 1 || alloc_countdown < 0,
                      1);
          free(b.base);
        }
      }
      failed = alloc_countdown < 0;
      alloc_countdown = -1;
      herd_value_heap_free(&h);
      if (!failed) {
        ASSERT_OK(err);
        break;
      }
      if (err != 0 && err != UV_ENOMEM)
        FATAL("%s, allocation %d failing: %s", value_cases[i].name, n,
              herd_err_name(err));
    }
  }
  return 0;
}
