/* The smallest herd HTTP server: answers every request with 200 "123123\n",
 * like the worker of the cluster demo, in a single process.
 * Usage: http-hello [PORT] (default 8000; 0 picks a free port). The port is
 * printed on stdout once the server listens. */
#include <herd.h>

#include <stdio.h>
#include <stdlib.h>

static void on_request(herd_http_req_t* req) {
  herd_http_respond(req, 200, "text/plain", "123123\n", 7);
}

int main(int argc, char** argv) {
  uv_loop_t* loop = uv_default_loop();
  herd_http_server_t server;
  int port = argc > 1 ? atoi(argv[1]) : 8000;
  int err;

  err = herd_http_server_init(loop, &server, on_request, NULL);
  if (err == 0)
    err = herd_http_server_listen(&server, "127.0.0.1", port, 511);
  if (err != 0) {
    fprintf(stderr, "http-hello: %s\n", herd_strerror(err));
    return 1;
  }
  printf("%d\n", herd_http_server_port(&server));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
