/* The seed's counting demo: the parent forks one child per CPU; each child
 * sends {"cmd":"notifyRequest"} N times; the parent counts them and prints
 * the total. The child is this same program re-run with "child N".
 *
 *   fork-count [N]      (default N = 1000) */
#include <herd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char notify[] = "{\"cmd\":\"notifyRequest\"}";

typedef struct {
  long to_send;
  long sent;
} sender_t;

/* Sends until the channel says "full", then waits for drain. */
static void send_some(herd_ipc_t* ipc) {
  sender_t* s = ipc->data;
  while (s->sent < s->to_send) {
    int r = herd_ipc_send(ipc, notify, sizeof(notify) - 1);
    if (r < 0) {
      fprintf(stderr, "fork-count child: %s\n", herd_strerror(r));
      herd_ipc_disconnect(ipc);
      return;
    }
    s->sent++;
    if (r == 1)
      return;
  }
  /* Everything is queued: leave once it is written. */
  herd_ipc_disconnect(ipc);
}

static int child_main(long n) {
  uv_loop_t* loop = uv_default_loop();
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.drain = send_some};
  sender_t s = {n, 0};
  int r = herd_ipc_open_parent(loop, &ipc);
  if (r != 0) {
    fprintf(stderr, "fork-count child: %s\n", herd_strerror(r));
    return 1;
  }
  ipc.data = &s;
  herd_ipc_start(&ipc, &cbs);
  send_some(&ipc);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return s.sent == n ? 0 : 1;
}

static long total;
static int failed;

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  char cmd[32];
  (void)ipc;
  (void)handle;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0 &&
      strcmp(cmd, "notifyRequest") == 0)
    total++;
}

static void on_exit_cb(herd_child_t* child, int64_t status, int signal) {
  (void)child;
  if (status != 0 || signal != 0)
    failed = 1;
}

static void on_close(herd_child_t* child) {
  (void)child;
}

int main(int argc, char** argv) {
  uv_loop_t* loop = uv_default_loop();
  herd_fork_options_t opts;
  herd_child_t* children;
  const char* n_arg = "1000";
  char self[4096];
  unsigned ncpu;
  ssize_t len;

  if (argc >= 3 && strcmp(argv[1], "child") == 0)
    return child_main(atol(argv[2]));
  if (argc >= 2)
    n_arg = argv[1];
  len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len < 0)
    return 1;
  self[len] = '\0';
  ncpu = uv_available_parallelism();
  children = calloc(ncpu, sizeof(*children));
  if (children == NULL)
    return 1;
  memset(&opts, 0, sizeof(opts));
  opts.spawn.exit_cb = on_exit_cb;
  opts.spawn.close_cb = on_close;
  for (unsigned i = 0; i < ncpu; i++) {
    const char* args[] = {"child", n_arg, NULL};
    herd_ipc_callbacks_t cbs = {.message = on_message};
    int r = herd_fork(loop, &children[i], self, args, &opts);
    if (r != 0) {
      /* The children already started still run to the end and are reaped
       * by the loop below; only the total is incomplete. */
      fprintf(stderr, "fork-count: %s\n", herd_strerror(r));
      failed = 1;
      ncpu = i;
      break;
    }
    if (children[i].channel != NULL)
      herd_ipc_start(children[i].channel, &cbs);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  free(children);
  printf("%u workers, total %ld\n", ncpu, total);
  return failed;
}
