/* The seed program with herd: a primary forks one worker per CPU, every
 * worker serves HTTP on port 8000 and reports each request with
 * {"cmd":"notifyRequest"}, and the primary prints the count every second.
 *
 *   cluster.isPrimary  -> herd_cluster_is_primary()
 *   cluster.fork()     -> herd_cluster_fork()
 *   worker.on('message') / cluster.on('message') -> callbacks.message
 *   process.send()     -> herd_cluster_worker_send()
 *   http.Server(...).listen(8000) -> herd_server_listen() + herd_http_server
 *
 * Ctrl-C ends it, as it ends the Node version. */
#include <herd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static uint64_t num_reqs;

static void message_handler(herd_cluster_t* cluster, herd_worker_t* worker,
                            const char* json, size_t len,
                            herd_handle_t* handle) {
  char cmd[32];
  (void)cluster;
  (void)worker;
  (void)handle;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0 &&
      strcmp(cmd, "notifyRequest") == 0)
    num_reqs++;
}

static void print_count(uv_timer_t* timer) {
  (void)timer;
  printf("requests = %llu\n", (unsigned long long)num_reqs);
  fflush(stdout);
}

static herd_http_server_t http;

static void on_request(herd_http_req_t* req) {
  static const char notify[] = "{\"cmd\":\"notifyRequest\"}";
  herd_http_respond(req, 200, NULL, "123123\n", 7);
  herd_cluster_worker_send(notify, sizeof(notify) - 1);
}

static void on_connection(herd_server_t* server, int status) {
  int fd;
  if (status == 0 && herd_server_accept_fd(server, &fd) == 0)
    herd_http_server_adopt(&http, fd);
}

int main(void) {
  uv_loop_t* loop = uv_default_loop();

  if (herd_cluster_is_primary()) {
    static herd_cluster_t cluster;
    herd_cluster_callbacks_t cbs = {.message = message_handler};
    static uv_timer_t timer;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    herd_cluster_init(loop, &cluster, &cbs);
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, print_count, 1000, 1000);
    printf("%ld\n", cpus);
    for (long i = 0; i < cpus; i++)
      herd_cluster_fork(&cluster, NULL, NULL);
  } else {
    static herd_server_t server;
    printf("worker %d\n", (int)getpid());
    fflush(stdout);
    herd_cluster_worker_setup(loop, NULL);
    herd_http_server_init(loop, &http, on_request, NULL);
    herd_server_init(loop, &server);
    if (herd_server_listen(&server, NULL, 8000, 511, on_connection, NULL) != 0)
      return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}
