/* Blocking work on libuv's thread pool, in a cluster: Node runs zlib, crypto
 * and file I/O on its pool, so that a request that compresses a large body
 * does not hold up the event loop. This program does the same in C.
 *
 *   POST /deflate  compresses the request body with zlib on the pool
 *                  (Node: zlib.deflate(body, cb)) and answers with the
 *                  compressed bytes (zlib format, level 6 as Node's default)
 *   anything else  answered at once from the loop: "ok <worker id>\n"
 *
 * The primary forks the workers; each serves HTTP on the shared port with
 * its own loop and its own pool. Processes give the cores; the pool keeps
 * one process's loop free while its blocking work runs (docs/threadpool.md).
 *
 *   threadpool-deflate [-p PORT] [-w WORKERS] [-t THREADS] [--on-loop]
 *
 *   -p PORT      port on every address (default 8000; 0 picks one)
 *   -w WORKERS   worker processes (default: one per CPU)
 *   -t THREADS   pool threads per worker: sets UV_THREADPOOL_SIZE in the
 *                workers' environment (default: inherited, else libuv's 4)
 *   --on-loop    compress on the loop instead (Node: zlib.deflateSync()),
 *                to compare
 *
 * The primary prints "listening on port N" once the port is open. SIGINT or
 * SIGTERM stops it gracefully: workers finish the requests they hold (pool
 * jobs included), then exit, then the primary. */
#include <herd.h>
#include <zlib.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int on_loop;

/* One compression job: the request, and the answer the pool thread made. */
typedef struct {
  uv_work_t work;
  herd_http_req_t* req;
  unsigned char* out;
  uLongf out_len;
  int status; /* HTTP status to answer with */
} job_t;

/* Runs on a pool thread. It may read req->body: herd keeps a request's
 * strings in place until it is answered, and the loop thread touches no
 * other part of this request meanwhile. */
static void deflate_body(job_t* job) {
  const herd_http_req_t* req = job->req;
  job->out_len = compressBound((uLong)req->body_len);
  job->out = malloc(job->out_len);
  if (job->out == NULL) {
    job->status = 503;
    return;
  }
  if (compress2(job->out, &job->out_len, (const Bytef*)req->body,
                (uLong)req->body_len, Z_DEFAULT_COMPRESSION) != Z_OK) {
    job->status = 500;
    return;
  }
  job->status = 200;
}

static void work_cb(uv_work_t* work) {
  deflate_body((job_t*)work);
}

static void answer(job_t* job) {
  static const herd_http_header_t type = {"Content-Type", 12,
                                          "application/octet-stream", 24};
  if (job->status == 200)
    herd_http_respond_ex(job->req, 200, &type, 1, job->out, job->out_len);
  else
    herd_http_respond(job->req, job->status, "text/plain", "error\n", 6);
  free(job->out);
  free(job);
}

/* Back on the loop thread: answering a request later, from here, is part
 * of herd_http_handler_cb's contract. */
static void after_work_cb(uv_work_t* work, int status) {
  job_t* job = (job_t*)work;
  if (status != 0)
    job->status = 503; /* cancelled */
  answer(job);
}

static void on_request(herd_http_req_t* req) {
  char body[32];
  int n;
  if (strcmp(req->method, "POST") == 0 && req->url_len == 8 &&
      memcmp(req->url, "/deflate", 8) == 0) {
    job_t* job = calloc(1, sizeof(*job));
    if (job == NULL) {
      herd_http_respond(req, 503, "text/plain", "busy\n", 5);
      return;
    }
    job->req = req;
    if (on_loop) {
      deflate_body(job);
      answer(job);
      return;
    }
    if (uv_queue_work(req->server->loop, &job->work, work_cb, after_work_cb) !=
        0) {
      free(job);
      herd_http_respond(req, 503, "text/plain", "busy\n", 5);
    }
    return;
  }
  n = snprintf(body, sizeof(body), "ok %d\n", herd_cluster_worker_id());
  herd_http_respond(req, 200, "text/plain", body, (size_t)n);
}

static herd_http_server_t http;
static herd_server_t server;

static void on_connection(herd_server_t* s, int status) {
  int fd;
  if (status == 0 && herd_server_accept_fd(s, &fd) == 0)
    herd_http_server_adopt(&http, fd);
}

/* The primary asked this worker to go: herd has closed the listener; the
 * HTTP server closes once every request it holds (on the pool too) has
 * been answered, and then the channel. */
static void http_closed(herd_http_server_t* s) {
  (void)s;
  herd_cluster_worker_disconnect();
}

static void worker_disconnect(void) {
  herd_http_server_close(&http, http_closed);
}

/* A worker listens on the port the primary was asked for (0 included: the
 * key of a shared server is the requested address, as in Node, so every
 * worker gets the one port the primary picked). */
static int worker_main(uv_loop_t* loop, int port) {
  herd_cluster_worker_options_t wo = {.disconnect = worker_disconnect};
  int r = herd_cluster_worker_setup(loop, &wo);
  if (r == 0)
    r = herd_http_server_init(loop, &http, on_request, NULL);
  if (r == 0)
    r = herd_server_init(loop, &server);
  if (r == 0)
    r = herd_server_listen(&server, NULL, port, 511, on_connection, NULL);
  if (r != 0) {
    fprintf(stderr, "worker: %s\n", herd_strerror(r));
    return 1;
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}

static herd_cluster_t cluster;
static uv_signal_t sigint, sigterm;

static void cluster_closed(herd_cluster_t* c) {
  (void)c;
  uv_close((uv_handle_t*)&sigint, NULL);
  uv_close((uv_handle_t*)&sigterm, NULL);
}

static void on_signal(uv_signal_t* handle, int signum) {
  (void)signum;
  uv_signal_stop(&sigint);
  uv_signal_stop(&sigterm);
  (void)handle;
  herd_cluster_close(&cluster, cluster_closed);
}

static void on_exit_worker(herd_cluster_t* c, herd_worker_t* w, int64_t code,
                           int sig) {
  (void)c;
  if (code != 0 || sig != 0)
    fprintf(stderr, "worker %d exited: code %lld signal %d\n", w->id,
            (long long)code, sig);
}

static void usage(const char* argv0) {
  fprintf(stderr, "usage: %s [-p PORT] [-w WORKERS] [-t THREADS] [--on-loop]\n",
          argv0);
}

int main(int argc, char** argv) {
  static const struct option longopts[] = {
      {"port", required_argument, NULL, 'p'},
      {"workers", required_argument, NULL, 'w'},
      {"threads", required_argument, NULL, 't'},
      {"on-loop", no_argument, NULL, 'l'},
      {NULL, 0, NULL, 0}};
  uv_loop_t* loop = uv_default_loop();
  herd_cluster_callbacks_t cbs = {.exit = on_exit_worker};
  int port = 8000, workers = (int)uv_available_parallelism(), threads = 0;
  int c, r, bound;
  char threads_env[64];
  const char* env[2] = {NULL, NULL};

  while ((c = getopt_long(argc, argv, "p:w:t:", longopts, NULL)) != -1) {
    switch (c) {
      case 'p':
        port = atoi(optarg);
        break;
      case 'w':
        workers = atoi(optarg);
        break;
      case 't':
        threads = atoi(optarg);
        break;
      case 'l':
        on_loop = 1;
        break;
      default:
        usage(argv[0]);
        return 2;
    }
  }
  if (port < 0 || port > 65535 || workers < 1 || threads < 0 ||
      threads > 1024) {
    usage(argv[0]);
    return 2;
  }
  if (herd_cluster_is_worker())
    return worker_main(loop, port);

  /* The primary opens the port before forking, so that an error shows at
   * once and port 0 can be printed. The workers get the same arguments. */
  herd_cluster_settings_t settings = {.args = (const char* const*)argv + 1};
  herd_cluster_init(loop, &cluster, &cbs);
  herd_cluster_setup_primary(&cluster, &settings);
  r = herd_cluster_listen(&cluster, NULL, port, 511, &bound);
  if (r != 0) {
    fprintf(stderr, "listen: %s\n", herd_strerror(r));
    herd_cluster_close(&cluster, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return 1;
  }
  /* libuv reads UV_THREADPOOL_SIZE once, when a process first uses its
   * pool: it must be in a worker's environment from the start. */
  if (threads > 0) {
    snprintf(threads_env, sizeof(threads_env), "UV_THREADPOOL_SIZE=%d",
             threads);
    env[0] = threads_env;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  for (int i = 0; i < workers; i++)
    herd_cluster_fork(&cluster, env, NULL);
  printf("listening on port %d: %d workers, %s\n", bound, workers,
         on_loop ? "compressing on the loop" : "compressing on the pool");
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
