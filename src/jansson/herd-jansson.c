/* herd-jansson: IPC messages as jansson values (see include/herd-jansson.h).
 * A library of its own on top of libherd's public API; libherd does not
 * link jansson. */
#include "herd-jansson.h"

#include <stdio.h>
#include <string.h>

/* Messages up to this size are written on the stack; larger ones into a
 * buffer from jansson's allocator. Most messages are far smaller. */
#define STACK_TEXT 4096

/* How a message goes out: one of libherd's three plain sends. */
typedef int (*send_fn)(void* target, const char* json, size_t len);

static int send_ipc(void* target, const char* json, size_t len) {
  return herd_ipc_send(target, json, len);
}

static int send_worker(void* target, const char* json, size_t len) {
  return herd_worker_send(target, json, len);
}

static int send_primary(void* target, const char* json, size_t len) {
  (void)target;
  return herd_cluster_worker_send(json, len);
}

/* JSON_COMPACT drops the spaces, JSON_ENCODE_ANY allows a scalar at the top
 * level (process.send('text') is a message too). Without
 * JSON_REAL_PRECISION jansson writes 17 significant digits, enough for
 * every double to read back as itself. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

static int send_value(send_fn fn, void* target, const json_t* value) {
  char stack[STACK_TEXT];
  json_malloc_t jmalloc;
  json_free_t jfree;
  char* text;
  size_t n, again;
  int r;

  if (value == NULL)
    return UV_EINVAL;
  /* A JSON text is never empty, so 0 is jansson's error: a cycle, or its own
   * allocation failed. */
  n = json_dumpb(value, stack, sizeof(stack), DUMP_FLAGS);
  if (n == 0)
    return UV_EINVAL;
  if (n <= sizeof(stack))
    return fn(target, stack, n);

  json_get_alloc_funcs(&jmalloc, &jfree);
  text = jmalloc(n);
  if (text == NULL)
    return UV_ENOMEM;
  again = json_dumpb(value, text, n, DUMP_FLAGS);
  if (again != n) {
    /* Only a failed allocation inside jansson can change the answer. */
    jfree(text);
    return UV_EINVAL;
  }
  r = fn(target, text, n);
  jfree(text);
  return r;
}

int herd_jansson_ipc_send(herd_ipc_t* ipc, const json_t* value) {
  return send_value(send_ipc, ipc, value);
}

int herd_jansson_worker_send(herd_worker_t* worker, const json_t* value) {
  return send_value(send_worker, worker, value);
}

int herd_jansson_cluster_worker_send(const json_t* value) {
  return send_value(send_primary, NULL, value);
}

int herd_jansson_ipc_send_new(herd_ipc_t* ipc, json_t* value) {
  int r = herd_jansson_ipc_send(ipc, value);
  json_decref(value);
  return r;
}

int herd_jansson_worker_send_new(herd_worker_t* worker, json_t* value) {
  int r = herd_jansson_worker_send(worker, value);
  json_decref(value);
  return r;
}

int herd_jansson_cluster_worker_send_new(json_t* value) {
  int r = herd_jansson_cluster_worker_send(value);
  json_decref(value);
  return r;
}

/* JSON_DECODE_ANY: any value at the top level. JSON_ALLOW_NUL: "\u0000"
 * inside a string, which JSON.parse() accepts. The end-of-input check stays
 * on: trailing bytes after the value are an error. */
#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)

/* The herd error for a text jansson refused. jansson reports most of its
 * own allocation failures as syntax errors (or with no text at all), so the
 * text is checked again with herd's own scanner: what herd finds invalid is
 * HERD_EBADJSON or HERD_EBADUTF8; valid JSON that jansson refuses is one of
 * jansson's known limits, or else jansson ran out of memory. */
static int parse_error(const char* json, size_t len, json_error_t* e) {
  int r;
  if (json_error_code(e) == json_error_out_of_memory)
    return UV_ENOMEM;
  r = herd_json_validate(json, len);
  if (r != 0)
    return r;
  switch (json_error_code(e)) {
    case json_error_stack_overflow:   /* deeper than 2048 */
    case json_error_null_byte_in_key: /* "\u0000" in a key */
      return HERD_EBADJSON;
    default:
      break;
  }
  if (strncmp(e->text, "invalid Unicode", 15) == 0) /* a lone surrogate */
    return HERD_EBADJSON;
  snprintf(e->text, sizeof(e->text), "%s", "out of memory");
  return UV_ENOMEM;
}

int herd_jansson_parse(const char* json, size_t len, json_t** out,
                       json_error_t* error) {
  json_error_t local;
  json_error_t* e = error != NULL ? error : &local;
  json_t* v;

  if (out != NULL)
    *out = NULL;
  if (json == NULL || out == NULL) {
    if (error != NULL) {
      memset(error, 0, sizeof(*error));
      snprintf(error->text, sizeof(error->text), "%s",
               json == NULL ? "json is NULL" : "out is NULL");
    }
    return UV_EINVAL;
  }
  v = json_loadb(json, len, LOAD_FLAGS, e);
  if (v == NULL && json_error_code(e) == json_error_numeric_overflow) {
    /* JavaScript has only doubles: Node writes 2**64 as an integer that
     * int64_t cannot hold. Read the message as JavaScript would. */
    v = json_loadb(json, len, LOAD_FLAGS | JSON_DECODE_INT_AS_REAL, e);
  }
  if (v == NULL)
    return parse_error(json, len, e);
  *out = v;
  return 0;
}

json_t* herd_jansson_buffer(const void* data, size_t len) {
  const unsigned char* p = data;
  json_t* obj;
  json_t* arr;

  if (data == NULL && len > 0)
    return NULL;
  obj = json_object();
  arr = json_array();
  if (obj == NULL || arr == NULL)
    goto fail;
  for (size_t i = 0; i < len; i++)
    if (json_array_append_new(arr, json_integer(p[i])) != 0)
      goto fail;
  /* Node's order: type first, then data. */
  if (json_object_set_new(obj, "type", json_string("Buffer")) != 0)
    goto fail;
  if (json_object_set(obj, "data", arr) != 0)
    goto fail;
  json_decref(arr);
  return obj;

fail:
  json_decref(arr);
  json_decref(obj);
  return NULL;
}

int herd_jansson_buffer_read(const json_t* value, void* out, size_t cap,
                             size_t* len) {
  const json_t* type;
  const json_t* data;
  unsigned char* o = out;
  size_t n;

  if (value == NULL || len == NULL || !json_is_object(value))
    return UV_EINVAL;
  type = json_object_get(value, "type");
  data = json_object_get(value, "data");
  if (!json_is_string(type) || json_string_length(type) != 6 ||
      memcmp(json_string_value(type), "Buffer", 6) != 0 || !json_is_array(data))
    return UV_EINVAL;
  n = json_array_size(data);
  for (size_t i = 0; i < n; i++) {
    const json_t* b = json_array_get(data, i);
    if (!json_is_integer(b) || json_integer_value(b) < 0 ||
        json_integer_value(b) > 255)
      return UV_EINVAL;
  }
  *len = n;
  if (out == NULL)
    return 0;
  if (cap < n)
    return UV_ENOBUFS;
  for (size_t i = 0; i < n; i++)
    o[i] = (unsigned char)json_integer_value(json_array_get(data, i));
  return 0;
}
