/* Deserializes arbitrary bytes as Node's advanced IPC payload and as
 * v8.serialize() output. Whatever they hold, the decoder must return an
 * error or a value, never crash, leak or read out of bounds; a value it
 * returns must serialize, read back equal (identity shape included), and
 * serialize to the same bytes again. */
#include "value-int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
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
    }
    herd_value_heap_free(&h);
  }
  return 0;
}
