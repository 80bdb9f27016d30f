/* Stand-ins until the process module lands; removed when it is merged. */
#include "internal.h"

int herd_spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
               const char* const* args, const herd_spawn_options_t* options) {
  (void)loop;
  (void)child;
  (void)file;
  (void)args;
  (void)options;
  return UV_ENOSYS;
}

void herd__child_channel_closed(herd_child_t* child) {
  (void)child;
}
