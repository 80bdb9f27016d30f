/* Deserializes arbitrary bytes as Node's advanced IPC payload, as
 * v8.serialize() output and as JSON text. Whatever they hold, the readers
 * must return an error or a value, never crash, leak or read out of
 * bounds; a value must serialize, read back equal (identity shape
 * included) and serialize to the same bytes again, and its JSON text must
 * parse back to the same text. */
#include "value-int.h"

#include <stdlib.h>
#include <string.h>

/* JSON.stringify() of v, if it has one, must parse back to a value with
 * the same text. */
static void json_fixpoint(herd_value_heap_t* h, const herd_value_t* v) {
  herd_value_options_t o = {HERD_VALUE_FORMAT_IPC, 256, 1u << 20};
  herd_value_t* back;
  uv_buf_t t1, t2;
  if (herd_value_to_json(v, &o, &t1) != 0)
    return;
  if (herd_value_from_json(h, t1.base, t1.len, &o, &back) != 0)
    __builtin_trap();
  if (herd_value_to_json(back, &o, &t2) != 0)
    __builtin_trap();
  if (t1.len != t2.len || memcmp(t1.base, t2.base, t1.len) != 0)
    __builtin_trap();
  free(t1.base);
  free(t2.base);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  herd_value_heap_t jh;
  herd_value_t* jv;
  herd_value_options_t jo = {HERD_VALUE_FORMAT_IPC, 256, 0};
  /* The bytes as JSON text. */
  herd_value_heap_init(&jh);
  if (herd_value_from_json(&jh, (const char*)data, size, &jo, &jv) == 0)
    json_fixpoint(&jh, jv);
  herd_value_heap_free(&jh);

  for (int f = 0; f < 2; f++) {
    herd_value_options_t o = {(herd_value_format_t)f, 256, 1u << 24};
    herd_value_heap_t h;
    herd_value_t *v, *back;
    uv_buf_t b1, b2;
    herd_value_heap_init(&h);
    if (herd_value_deserialize(&h, data, size, &o, &v) == 0) {
      o.max_bytes = 0;
      if (herd_value_serialize(v, &o, &b1) != 0)
        __builtin_trap();
      if (herd_value_deserialize(&h, b1.base, b1.len, &o, &back) != 0)
        __builtin_trap();
      if (herd__value_equal(v, back) != 1)
        __builtin_trap();
      if (herd_value_serialize(back, &o, &b2) != 0)
        __builtin_trap();
      if (b1.len != b2.len || memcmp(b1.base, b2.base, b1.len) != 0)
        __builtin_trap();
      free(b1.base);
      free(b2.base);
      json_fixpoint(&h, v);
    }
    herd_value_heap_free(&h);
  }
  return 0;
}
