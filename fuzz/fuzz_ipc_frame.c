/* Feeds arbitrary bytes to a channel as if a peer had written them, and runs
 * every JSON helper on whatever the channel delivers. Whatever arrives, the
 * channel must report errors, never crash, leak or read out of bounds. */
#include "internal.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  const char* v;
  size_t vl;
  char buf[64];
  int64_t n;
  (void)ipc;
  (void)handle;
  if (herd_json_validate(json, len) != 0)
    __builtin_trap(); /* delivered messages are valid */
  herd_json_get(json, len, "cmd", &v, &vl);
  herd_json_get_string(json, len, "cmd", buf, sizeof(buf));
  herd_json_get_int(json, len, "i", &n);
  herd_json_quote(buf, sizeof(buf), json, len);
  herd_ipc_send(ipc, json, len);
}

static void on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  on_message(ipc, json, len, handle);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uv_loop_t loop;
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.message = on_message};
  int sv[2];
  herd__json_info_t info;

  /* The scanner on its own, on the raw bytes. */
  herd__json_scan((const char*)data, size, &info);

  if (size > 60000)
    return 0;
  if (uv_loop_init(&loop) != 0)
    return 0;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    uv_loop_close(&loop);
    return 0;
  }
  if (herd_ipc_open(&loop, &ipc, sv[0]) != 0) {
    close(sv[0]);
    close(sv[1]);
    uv_loop_close(&loop);
    return 0;
  }
  herd_ipc_set_max_line(&ipc, 4096);
  herd__ipc_set_internal_cb(&ipc, on_internal);
  herd_ipc_start(&ipc, &cbs);
  if (size > 0 && write(sv[1], data, size) < 0)
    size = 0;
  shutdown(sv[1], SHUT_WR);
  uv_run(&loop, UV_RUN_DEFAULT);
  close(sv[1]);
  uv_loop_close(&loop);
  return 0;
}
