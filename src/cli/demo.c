/* `herd demo`: the seed program's cluster HTTP server. The same binary is
 * the primary and, re-executed with NODE_UNIQUE_ID set, each worker. */
#include "cli.h"

#include <herd.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A crashed worker's restart waits at most this long (the supervisor's
 * backoff, doubled while workers keep dying young). */
#define RESPAWN_MAX_MS 5000
/* After SIGINT/SIGTERM the workers get this long to finish in-flight work
 * before the library kills them (settings.kill_timeout). */
#define SHUTDOWN_GRACE_MS 10000
/* A busy worker queues its held notifies at least every this many. */
#define NOTIFY_BATCH_MAX 128
/* A worker holds its notifies at most this long (see notify_flush). */
#define NOTIFY_HOLD_MS 10

typedef struct {
  const char* host;
  int port;
  int workers;
  herd_sched_policy_t policy;
} demo_options_t;

static const char kNotify[] = "{\"cmd\":\"notifyRequest\"}";

static int usage_error(const char* fmt, const char* arg) {
  fprintf(stderr, "herd: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n");
  herd_cli_usage(stderr);
  return 2;
}

/* Parses the demo's flags (argv[0] is "demo") with getopt_long; 0, or 2
 * after a message. Options take their value as the next argument or after
 * '='. argv is not permuted ("+"): workers are started with the same argv
 * and parse it again. */
static int parse_options(int argc, char** argv, demo_options_t* o) {
  enum { OPT_HOST = 256, OPT_PORT, OPT_WORKERS, OPT_POLICY };
  static const struct option options[] = {
      {"host", required_argument, NULL, OPT_HOST},
      {"port", required_argument, NULL, OPT_PORT},
      {"workers", required_argument, NULL, OPT_WORKERS},
      {"policy", required_argument, NULL, OPT_POLICY},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;

  o->host = "127.0.0.1";
  o->port = 8000;
  o->workers = 0;
  o->policy = HERD_SCHED_DEFAULT;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
    const char* value = optarg;
    switch (c) {
      case 'h':
        herd_cli_usage(stdout);
        exit(0);
      case OPT_PORT:
        if (cli_parse_int(value, 0, 65535, &o->port) != 0)
          return usage_error("bad port '%s'", value);
        break;
      case OPT_HOST: {
        struct sockaddr_in6 sa6;
        struct sockaddr_in sa4;
        if (uv_ip4_addr(value, 0, &sa4) != 0 &&
            uv_ip6_addr(value, 0, &sa6) != 0)
          return usage_error("bad host '%s' (a numeric IPv4 or IPv6 address)",
                             value);
        o->host = value;
        break;
      }
      case OPT_WORKERS:
        if (strcmp(value, "auto") == 0)
          o->workers = 0;
        else if (cli_parse_int(value, 1, 1024, &o->workers) != 0)
          return usage_error("bad worker count '%s' (1..1024 or auto)", value);
        break;
      case OPT_POLICY: {
        int p = herd_sched_policy_parse(value);
        if (p < 0 || strcmp(value, "none") == 0)
          return usage_error("bad policy '%s' (rr, shared or reuseport)",
                             value);
        o->policy = (herd_sched_policy_t)p;
        break;
      }
      case ':':
        return usage_error("option '%s' needs a value",
                           cli_bad_option(argv, optind, optopt));
      default:
        return usage_error(cli_option_ambiguous(argv, optind, options)
                               ? "ambiguous option '%s'"
                               : "unknown option '%s'",
                           cli_bad_option(argv, optind, optopt));
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument '%s'", argv[optind]);
  if (o->workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o->workers = n > 0 ? (int)n : 1;
  }
  return 0;
}

/* The worker: an HTTP server that reports every request. */

static herd_server_t worker_server;
static herd_http_server_t worker_http;
/* Answered requests, and those whose notify is not queued on the channel
 * yet. */
static uint64_t worker_served;
static uint64_t worker_unsent;

/* Every answered request gets its own notifyRequest message, as in the seed
 * program. Written as they come, they left in about one write per two
 * requests under `Connection: close` load (a worker there blocks after
 * almost every request, so holding them per wakeup saved little), and every
 * write woke the primary: 0.4 context switches and 2.5 us of the primary's
 * CPU per request on a 2-core machine, taken from the workers and the
 * clients. Under shared and reuseport they are held for at most
 * NOTIFY_HOLD_MS (notify_timer),
 * or until NOTIFY_BATCH_MAX are held, or until the channel writes anyway
 * (then they ride along), and queued together. A graceful stop queues the
 * rest before the channel closes (on_http_closed), so the count stays
 * exact; a worker killed by a signal loses what it held, at most
 * NOTIFY_HOLD_MS worth (a busy one lost a batch before too). Under rr the
 * primary wakes for every connection it hands over anyway: there they are
 * queued after each loop iteration, and a killed worker loses at most the
 * request it was serving. */
static uv_timer_t notify_timer;

static void notify_flush(void) {
  /* herd_cluster_worker_send() returns 1 when the message was queued above
   * the channel's high-water mark: it is still sent, so keep going. Only an
   * error (the channel is gone) ends the flush; those counts cannot reach
   * the primary any more. */
  uv_timer_stop(&notify_timer);
  while (worker_unsent > 0 &&
         herd_cluster_worker_send(kNotify, sizeof(kNotify) - 1) >= 0)
    worker_unsent--;
  worker_unsent = 0;
}

static void on_request(herd_http_req_t* req) {
  herd_http_respond(req, 200, NULL, "123123\n", 7);
  worker_served++;
  worker_unsent++;
}

/* Whether the channel writes in the next iteration anyway (e.g. the answer
 * to a connection handed over under rr): held notifies then ride along. */
static int channel_busy(void) {
  herd_ipc_t* ch = herd_cluster_worker_channel();
  return ch != NULL && herd_ipc_queued_bytes(ch) > 0;
}

static void on_notify_timer(uv_timer_t* t) {
  (void)t;
  notify_flush();
}

/* uv_run(UV_RUN_DEFAULT), checking after each iteration whether the held
 * notifies should go now or start their hold. */
static void worker_run(uv_loop_t* loop) {
  for (;;) {
    uv_run(loop, UV_RUN_ONCE);
    if (worker_unsent >= NOTIFY_BATCH_MAX ||
        (worker_unsent > 0 &&
         (worker_server.policy == HERD_SCHED_RR || channel_busy())))
      notify_flush();
    else if (worker_unsent > 0 && !uv_is_active((uv_handle_t*)&notify_timer))
      uv_timer_start(&notify_timer, on_notify_timer, NOTIFY_HOLD_MS, 0);
    /* The hold timer does not keep the loop alive: what it holds when the
     * loop would end goes now. */
    if (!uv_loop_alive(loop)) {
      if (worker_unsent == 0)
        break;
      notify_flush();
    }
  }
}

static void on_connection(herd_server_t* server, int status) {
  int fd;
  if (status != 0 || herd_server_accept_fd(server, &fd) != 0)
    return;
  herd_http_server_adopt(&worker_http, fd);
}

static void on_worker_listen(herd_server_t* server, int status) {
  (void)server;
  if (status != 0) {
    fprintf(stderr, "herd: worker %d cannot listen: %s\n",
            herd_cluster_worker_id(), herd_strerror(status));
    exit(1);
  }
}

static void on_http_closed(herd_http_server_t* server) {
  (void)server;
  /* Every response is written: the last notifies are queued, then the
   * channel can flush and close, and the loop ends. */
  notify_flush();
  uv_close((uv_handle_t*)&notify_timer, NULL);
  herd_cluster_worker_disconnect();
}

static void on_worker_disconnect(void) {
  herd_http_server_close(&worker_http, on_http_closed);
}

static int worker_main(const demo_options_t* o) {
  herd_cluster_worker_options_t wo;
  uv_loop_t* loop = uv_default_loop();
  int r;

  /* Ctrl-C reaches the whole process group; the primary decides when the
   * workers stop. */
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  /* The primary handles HUP, USR1 and USR2; one sent to a worker itself
   * does not end it either. */
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGUSR2, SIG_IGN);
  memset(&wo, 0, sizeof(wo));
  wo.disconnect = on_worker_disconnect;
  uv_timer_init(loop, &notify_timer);
  uv_unref((uv_handle_t*)&notify_timer);
  r = herd_cluster_worker_setup(loop, &wo);
  if (r == 0)
    r = herd_http_server_init(loop, &worker_http, on_request, NULL);
  if (r == 0)
    r = herd_server_init(loop, &worker_server);
  if (r == 0)
    r = herd_server_listen(&worker_server, o->host, o->port, 511, on_connection,
                           on_worker_listen);
  if (r != 0) {
    fprintf(stderr, "herd: worker: %s\n", herd_strerror(r));
    return 1;
  }
  worker_run(loop);
  uv_loop_close(loop);
  return 0;
}

/* The primary: herd's supervisor with cluster workers (this program
 * again), which restarts a crashed worker with backoff, and stops them
 * gracefully. */

static struct {
  herd_supervisor_t sup;
  herd_listen_addr_t addr;
  int fd;
  uv_timer_t tick;
  uv_signal_t sigint;
  uv_signal_t sigterm;
  uv_signal_t sighup;
  uv_signal_t sigusr1;
  uv_signal_t sigusr2;
  uint64_t requests;
} P;

static void on_tick(uv_timer_t* t) {
  (void)t;
  printf("requests = %llu\n", (unsigned long long)P.requests);
  fflush(stdout);
}

static void on_message(herd_supervisor_t* s, int slot, const char* json,
                       size_t len) {
  char cmd[32];
  (void)s;
  (void)slot;
  if ((len == sizeof(kNotify) - 1 && memcmp(json, kNotify, len) == 0) ||
      (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) > 0 &&
       strcmp(cmd, "notifyRequest") == 0))
    P.requests++;
}

static void on_closed(herd_supervisor_t* s) {
  (void)s;
  uv_close((uv_handle_t*)&P.tick, NULL);
  uv_close((uv_handle_t*)&P.sigint, NULL);
  uv_close((uv_handle_t*)&P.sigterm, NULL);
  uv_close((uv_handle_t*)&P.sighup, NULL);
  uv_close((uv_handle_t*)&P.sigusr1, NULL);
  uv_close((uv_handle_t*)&P.sigusr2, NULL);
}

static void on_stopped(herd_supervisor_t* s) {
  printf("total requests = %llu\n", (unsigned long long)P.requests);
  fflush(stdout);
  herd_supervisor_close(s, on_closed);
}

static void on_event(herd_supervisor_t* s, const herd_supervisor_event_t* e) {
  (void)s;
  if (e->type == HERD_SUPERVISOR_CRASHED || e->type == HERD_SUPERVISOR_KILLED ||
      e->type == HERD_SUPERVISOR_GAVE_UP ||
      e->type == HERD_SUPERVISOR_RELOAD_STARTED ||
      e->type == HERD_SUPERVISOR_RELOAD_DONE ||
      e->type == HERD_SUPERVISOR_RELOAD_FAILED)
    fprintf(stderr, "herd: %s\n", e->text);
  if (e->type == HERD_SUPERVISOR_STOPPED && s->gave_up)
    on_stopped(s);
}

/* HUP: a rolling reload, as under `herd run` (each worker replaced by a
 * new one that takes over once it listens). USR1 and USR2 mean nothing to
 * the demo's workers (their default action would kill them): ignored
 * rather than ending the primary, whose workers would die with it. */
static void on_other_signal(uv_signal_t* s, int signum) {
  (void)s;
  if (signum == SIGHUP && !P.sup.stopping)
    herd_supervisor_reload(&P.sup);
}

static void on_signal(uv_signal_t* s, int signum) {
  (void)s;
  (void)signum;
  /* A second signal stops at once. */
  uv_timer_stop(&P.tick);
  herd_supervisor_stop(&P.sup, P.sup.stopping, on_stopped);
}

/* Binds host:port once, before any worker; under reuseport a busy port is
 * probed without SO_REUSEPORT first, which would join another process's
 * group instead of failing. */
static int demo_bind(const demo_options_t* o, herd_sched_policy_t policy) {
  char text[HERD_LISTEN_TEXT_MAX];
  herd_listen_options_t lo;
  int r;
  snprintf(text, sizeof(text), "%s%s%s:%d", strchr(o->host, ':') ? "[" : "",
           o->host, strchr(o->host, ':') ? "]" : "", o->port);
  r = herd_listen_parse(text, &P.addr);
  if (r != 0)
    return r;
  memset(&lo, 0, sizeof(lo));
  if (policy == HERD_SCHED_REUSEPORT && o->port != 0) {
    herd_listen_addr_t probe = P.addr;
    r = herd_listen_bind(&probe, NULL, &P.fd);
    if (r != 0)
      return r;
    close(P.fd);
  }
  if (policy == HERD_SCHED_REUSEPORT)
    lo.flags = HERD_LISTEN_REUSEPORT;
  return herd_listen_bind(&P.addr, &lo, &P.fd);
}

static int primary_main(int argc, char** argv, const demo_options_t* o) {
  herd_supervisor_options_t so;
  herd_supervisor_socket_t sock;
  uv_loop_t* loop = uv_default_loop();
  herd_sched_policy_t policy = o->policy;
  char self[4096];
  ssize_t n;
  int r;

  (void)argc;
  signal(SIGPIPE, SIG_IGN);
  if (policy == HERD_SCHED_DEFAULT)
    policy = cli_default_policy();
  r = demo_bind(o, policy);
  if (r != 0) {
    fprintf(stderr, "herd: cannot listen on %s:%d: %s\n", o->host, o->port,
            herd_strerror(r));
    return 1;
  }
  /* Workers are this program again, with the same flags. */
  n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  self[n > 0 ? n : 0] = '\0';
  memset(&sock, 0, sizeof(sock));
  sock.fd = P.fd;
  sock.addr = &P.addr;
  memset(&so, 0, sizeof(so));
  so.protocol = HERD_WORKER_CLUSTER;
  so.name = "demo";
  so.file = self;
  so.args = (const char* const*)argv;
  so.workers = o->workers;
  so.policy = policy;
  so.sockets = &sock;
  so.socket_count = 1;
  so.graceful_timeout = SHUTDOWN_GRACE_MS;
  so.backoff_max = RESPAWN_MAX_MS;
  so.max_restarts = HERD_RESTARTS_UNLIMITED; /* a demo keeps going */
  r = herd_supervisor_init(loop, &P.sup, &so, on_event, on_message);
  if (r == 0)
    r = herd_supervisor_start(&P.sup);
  if (r != 0) {
    fprintf(stderr, "herd: %s\n", herd_strerror(r));
    if (P.sup.priv != NULL)
      herd_supervisor_close(&P.sup, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    close(P.fd);
    return 1;
  }
  /* The signals are handled before the banner says the demo runs. */
  uv_timer_init(loop, &P.tick);
  uv_signal_init(loop, &P.sigint);
  uv_signal_init(loop, &P.sigterm);
  uv_signal_start(&P.sigint, on_signal, SIGINT);
  uv_signal_start(&P.sigterm, on_signal, SIGTERM);
  uv_signal_init(loop, &P.sighup);
  uv_signal_init(loop, &P.sigusr1);
  uv_signal_init(loop, &P.sigusr2);
  uv_signal_start(&P.sighup, on_other_signal, SIGHUP);
  uv_signal_start(&P.sigusr1, on_other_signal, SIGUSR1);
  uv_signal_start(&P.sigusr2, on_other_signal, SIGUSR2);
  uv_timer_start(&P.tick, on_tick, 1000, 1000);

  /* An IPv6 address goes in brackets in a URL. */
  printf("herd demo: http://%s%s%s:%d/ %d worker%s, policy %s\n",
         strchr(o->host, ':') ? "[" : "", o->host,
         strchr(o->host, ':') ? "]" : "", P.addr.port, o->workers,
         o->workers == 1 ? "" : "s", herd_sched_policy_name(policy));
  fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  close(P.fd);
  return 0;
}

int herd_cli_demo(int argc, char** argv) {
  demo_options_t o;
  int r = parse_options(argc, argv, &o);
  if (r != 0)
    return r;
  if (herd_cluster_is_worker())
    return worker_main(&o);
  return primary_main(argc, argv, &o);
}
