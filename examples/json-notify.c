/* The seed program with whole JSON messages (the jansson companion,
 * herd-jansson): every worker serves HTTP and tells the primary about each
 * request with process.send({cmd: 'notifyRequest', url, worker}); the
 * primary parses the messages and prints the count, and the last URL, every
 * second. Usage: json-notify [port] (default 8000). Ctrl-C ends it.
 *
 *   process.send(obj)             -> herd_jansson_cluster_worker_send_new()
 *   cluster.on('message', (w, m)) -> callbacks.message + herd_jansson_parse()
 */
#include <herd-jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t num_reqs;
static char last_url[256];

static void message_handler(herd_cluster_t* cluster, herd_worker_t* worker,
                            const char* json, size_t len,
                            herd_handle_t* handle) {
  json_error_t error;
  json_t* msg;
  const char* cmd;
  (void)cluster;
  (void)handle;
  if (herd_jansson_parse(json, len, &msg, &error) != 0) {
    fprintf(stderr, "worker %d: %s\n", worker->id, error.text);
    return;
  }
  cmd = json_string_value(json_object_get(msg, "cmd"));
  if (cmd != NULL && strcmp(cmd, "notifyRequest") == 0) {
    num_reqs++;
    snprintf(last_url, sizeof(last_url), "%s",
             json_string_value(json_object_get(msg, "url")));
  }
  json_decref(msg);
}

static void print_count(uv_timer_t* timer) {
  (void)timer;
  printf("requests = %llu (last %s)\n", (unsigned long long)num_reqs, last_url);
  fflush(stdout);
}

static herd_http_server_t http;

static void on_request(herd_http_req_t* req) {
  herd_http_respond(req, 200, NULL, "123123\n", 7);
  herd_jansson_cluster_worker_send_new(
      json_pack("{s:s, s:s%, s:i}", "cmd", "notifyRequest", "url", req->url,
                req->url_len, "worker", herd_cluster_worker_id()));
}

static void on_connection(herd_server_t* server, int status) {
  int fd;
  if (status == 0 && herd_server_accept_fd(server, &fd) == 0)
    herd_http_server_adopt(&http, fd);
}

int main(int argc, char** argv) {
  uv_loop_t* loop = uv_default_loop();
  int port = argc > 1 ? atoi(argv[1]) : 8000;

  if (herd_cluster_is_primary()) {
    static herd_cluster_t cluster;
    herd_cluster_callbacks_t cbs = {.message = message_handler};
    static uv_timer_t timer;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    /* Workers run this program again: give them the port too (Node's
     * cluster passes process.argv on the same way). */
    herd_cluster_settings_t settings = {.args = (const char* const*)argv + 1};

    herd_cluster_init(loop, &cluster, &cbs);
    herd_cluster_setup_primary(&cluster, &settings);
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, print_count, 1000, 1000);
    for (long i = 0; i < cpus; i++)
      herd_cluster_fork(&cluster, NULL, NULL);
  } else {
    static herd_server_t server;
    herd_cluster_worker_setup(loop, NULL);
    herd_http_server_init(loop, &http, on_request, NULL);
    herd_server_init(loop, &server);
    if (herd_server_listen(&server, NULL, port, 511, on_connection, NULL) != 0)
      return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}
