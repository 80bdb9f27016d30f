/* A child that sends every message back to its parent unchanged, with the
 * same handle when one came: Node's
 *
 *   process.on('message', (m, handle) => process.send(m, handle));
 *
 * Run it from a Node parent (spawn with stdio [0, 1, 2, 'ipc'], or fork with
 * execPath set to this program) or from herd_fork(), with either
 * serialization: messages are taken as values, so in `advanced` mode a
 * Buffer, Map, Date or BigInt goes back as what it was. It exits when the
 * channel closes. */
#include <herd.h>

#include <stdio.h>
#include <stdlib.h>

static void on_handle_close(uv_handle_t* handle) {
  free(handle);
}

/* The handle went back (or could not): our copy is no longer needed. */
static void on_sent(herd_ipc_t* ipc, int status, void* arg) {
  uv_handle_t* handle = arg;
  (void)ipc;
  if (status != 0)
    fprintf(stderr, "ipc-echo: send: %s\n", herd_strerror(status));
  if (!uv_is_closing(handle))
    uv_close(handle, on_handle_close);
}

static void on_value(herd_ipc_t* ipc, herd_value_t* value,
                     herd_handle_t* handle) {
  herd_uv_any_t* h;
  int r;
  if (handle == NULL) {
    r = herd_ipc_send_value(ipc, value);
    if (r < 0)
      fprintf(stderr, "ipc-echo: send: %s\n", herd_strerror(r));
    return;
  }
  h = malloc(sizeof(*h));
  if (h == NULL)
    return;
  r = herd_handle_open(handle, ipc->loop, h);
  if (r != 0) {
    fprintf(stderr, "ipc-echo: open handle: %s\n", herd_strerror(r));
    /* A handle herd had to close again must outlive this loop iteration;
     * that cannot happen for a fresh socket, so keeping it is fine. */
    if (!uv_is_closing(&h->handle))
      free(h);
    return;
  }
  r = herd_ipc_send_value_ex(ipc, value, &h->handle, HERD_SEND_KEEP_OPEN, NULL,
                             on_sent, h);
  if (r < 0) {
    fprintf(stderr, "ipc-echo: send: %s\n", herd_strerror(r));
    uv_close(&h->handle, on_handle_close);
  }
}

static void on_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  fprintf(stderr, "ipc-echo: %s\n", herd_strerror(err));
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.error = on_error, .value = on_value};
  int r = herd_ipc_open_parent(loop, &ipc);
  if (r != 0) {
    fprintf(stderr, "ipc-echo: %s\n", herd_strerror(r));
    return 1;
  }
  herd_ipc_start(&ipc, &cbs);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
