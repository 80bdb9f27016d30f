/* `herd run`: the pool, on the supervisor (include/herd/supervisor.h).
 * This file chooses the timeouts and maps signals and events; the library
 * does the supervising.
 *
 * Signals. TERM and INT stop gracefully, a second one at once; QUIT stops
 * at once; HUP reloads; USR1 and USR2 are passed on to every worker;
 * TTIN and TTOU add and retire a worker. TTIN and TTOU are also what the
 * kernel sends a background process that touches its terminal, so they
 * are read with their siginfo (a signalfd) and only those sent with
 * kill(2) count. herd handles every signal that ends a process by
 * default and matters here, which is also what PID 1 in a container must
 * do (the kernel delivers it no signal it does not handle); SIGPIPE is
 * ignored.
 *
 * Exit status: 0 after a stop asked for by a signal, in which every
 * worker ended within the graceful timeout; 128 + N when the stop asked
 * for by signal N had to kill workers (the deadline passed, a second
 * signal, QUIT); 1 when herd gave up or could not run. */
#include "cli.h"
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static struct {
  uv_loop_t* loop;
  herd_log_t out;
  herd_log_t err;
  int out_on;
  int err_on;
  herd_sd_notifier_t notifier;
  int notifier_on;
  herd_supervisor_t sup;
  int sup_on;
  uv_signal_t signals[6];
  int nsignals;
  int sigfd;
  uv_poll_t sigpoll;
  int sigpoll_on;
  int stop_signal; /* the signal that asked for the stop, 0: none */
  /* Node workers' process.send() messages, counted per cmd. */
  struct {
    char cmd[32];
    uint64_t n;
  } messages[16];
  int nmessages;
  uint64_t other_messages;
  uint64_t kills_at_stop;
  int status;
} R = {.sigfd = -1};

static void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line of herd's own on stderr, through the log so it never splits a
 * worker's line. */
static void say(const char* fmt, ...) {
  char line[1024];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof(line))
    n = sizeof(line) - 1;
  if (R.err_on)
    herd_log_write(&R.err, "herd: ", line, (size_t)n);
  else
    fprintf(stderr, "herd: %s\n", line);
}

static void on_stopped(herd_supervisor_t* s);

/* A Node worker's process.send(): counted per `cmd` (the seed program
 * sends {cmd: 'notifyRequest'} per request). */
static void on_message(herd_supervisor_t* s, int slot, const char* json,
                       size_t len) {
  char cmd[32];
  (void)s;
  (void)slot;
  if (herd_json_get_string(json, len, "cmd", cmd, sizeof(cmd)) <= 0) {
    R.other_messages++;
    return;
  }
  for (int i = 0; i < R.nmessages; i++) {
    if (strcmp(R.messages[i].cmd, cmd) == 0) {
      R.messages[i].n++;
      return;
    }
  }
  if (R.nmessages == (int)(sizeof(R.messages) / sizeof(R.messages[0]))) {
    R.other_messages++;
    return;
  }
  snprintf(R.messages[R.nmessages].cmd, sizeof(R.messages[0].cmd), "%s", cmd);
  R.messages[R.nmessages++].n = 1;
}

static void say_messages(void) {
  char line[768];
  size_t n = 0;
  if (R.nmessages == 0 && R.other_messages == 0)
    return;
  for (int i = 0; i < R.nmessages && n < sizeof(line); i++)
    n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s %llu",
                          i ? ", " : "", R.messages[i].cmd,
                          (unsigned long long)R.messages[i].n);
  if (R.other_messages > 0 && n < sizeof(line))
    snprintf(line + n, sizeof(line) - n, "%sother %llu", n ? ", " : "",
             (unsigned long long)R.other_messages);
  say("messages: %s", line);
}

static void on_event(herd_supervisor_t* s, const herd_supervisor_event_t* e) {
  (void)s;
  switch (e->type) {
    case HERD_SUPERVISOR_READY:
    case HERD_SUPERVISOR_EXITED:
    case HERD_SUPERVISOR_ORPHAN:
      /* READY is in ALL_READY and RELOAD_DONE; an exit that matters is
       * CRASHED, which says how it ended. */
      return;
    case HERD_SUPERVISOR_STOPPED:
      if (s->orphans > 0)
        say("%s; %llu orphan%s reaped", e->text, (unsigned long long)s->orphans,
            s->orphans == 1 ? "" : "s");
      else
        say("%s", e->text);
      say_messages();
      /* Also after giving up, where no stop was asked for. */
      on_stopped(s);
      return;
    default:
      say("%s", e->text);
  }
}

static void on_closed(herd_supervisor_t* s) {
  (void)s;
  for (int i = 0; i < R.nsignals; i++)
    uv_close((uv_handle_t*)&R.signals[i], NULL);
  if (R.sigpoll_on)
    uv_close((uv_handle_t*)&R.sigpoll, NULL);
  if (R.notifier_on)
    herd_sd_notifier_close(&R.notifier, NULL);
  if (R.out_on)
    herd_log_close(&R.out, NULL);
  if (R.err_on)
    herd_log_close(&R.err, NULL);
  R.sigpoll_on = R.notifier_on = R.out_on = R.err_on = 0;
}

static void on_stopped(herd_supervisor_t* s) {
  if (s->gave_up)
    R.status = 1;
  else if (R.stop_signal != 0 && s->kills > R.kills_at_stop)
    R.status = 128 + R.stop_signal;
  else
    R.status = 0;
  herd_supervisor_close(s, on_closed);
}

static void stop(int signum, int now) {
  herd_supervisor_t* s = &R.sup;
  if (!s->stopping) {
    R.stop_signal = signum;
    R.kills_at_stop = s->kills;
  }
  herd_supervisor_stop(s, now, NULL);
}

static void on_signal(uv_signal_t* h, int signum) {
  herd_supervisor_t* s = &R.sup;
  (void)h;
  switch (signum) {
    case SIGTERM:
    case SIGINT:
      /* A second one: at once. */
      stop(signum, s->stopping);
      break;
    case SIGQUIT:
      stop(signum, 1);
      break;
    case SIGHUP:
      herd_supervisor_reload(s);
      break;
    default:
      herd_supervisor_signal(s, signum);
  }
}

/* TTIN and TTOU, from the signalfd: only those sent by a process. */
static void on_sigfd(uv_poll_t* h, int status, int events) {
  struct signalfd_siginfo si;
  (void)h;
  (void)status;
  (void)events;
  while (read(R.sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    int r;
    if (si.ssi_code == SI_KERNEL)
      continue;
    r = herd_supervisor_scale(&R.sup, si.ssi_signo == SIGTTIN ? 1 : -1);
    if (r == UV_EINVAL)
      say("%s ignored: the pool has %d worker%s (1 to %d)",
          si.ssi_signo == SIGTTIN ? "SIGTTIN" : "SIGTTOU", R.sup.workers,
          R.sup.workers == 1 ? "" : "s", MAX_WORKERS);
  }
}

static int signals_init(void) {
  static const int sigs[] = {SIGTERM, SIGINT,  SIGQUIT,
                             SIGHUP,  SIGUSR1, SIGUSR2};
  sigset_t tt;
  int r;
  for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
    r = uv_signal_init(R.loop, &R.signals[R.nsignals]);
    if (r != 0)
      return r;
    R.nsignals++;
    r = uv_signal_start(&R.signals[R.nsignals - 1], on_signal, sigs[i]);
    if (r != 0)
      return r;
  }
  /* Blocked before any thread exists, so every thread inherits the mask
   * and the signalfd sees them all. Workers start with nothing blocked
   * (herd_spawn()). */
  sigemptyset(&tt);
  sigaddset(&tt, SIGTTIN);
  sigaddset(&tt, SIGTTOU);
  sigprocmask(SIG_BLOCK, &tt, NULL);
  R.sigfd = signalfd(-1, &tt, SFD_NONBLOCK | SFD_CLOEXEC);
  if (R.sigfd < 0)
    return -errno;
  r = uv_poll_init(R.loop, &R.sigpoll, R.sigfd);
  if (r != 0)
    return r;
  R.sigpoll_on = 1;
  return uv_poll_start(&R.sigpoll, UV_READABLE, on_sigfd);
}

/* Node workers' graceful close. On the cluster's disconnect a Node
 * worker closes its HTTP servers, and Node's close() cuts every idle
 * keep-alive connection at once: a request already on its way on one of
 * them is lost (a load of 64 keep-alive connections loses about 30 per
 * replaced worker). herd preloads into its Node workers (NODE_OPTIONS,
 * --import of a data: URL, so no file needs to be found) a close() that
 * answers each connection's next request with `Connection: close`, and
 * cuts only those still silent a second later, as herd's own HTTP server
 * does (docs/http.md). The worker's own children do not inherit it. */
static const char kNodeGraceful[] =
    "import http from 'node:http';\n"
    "import https from 'node:https';\n"
    "import net from 'node:net';\n"
    "import tls from 'node:tls';\n"
    "const env = process.env;\n"
    "if (env.HERD_NODE_OPTIONS === undefined) delete env.NODE_OPTIONS;\n"
    "else env.NODE_OPTIONS = env.HERD_NODE_OPTIONS;\n"
    "delete env.HERD_NODE_OPTIONS;\n"
    "for (const [S, base] of [[http.Server, net.Server],\n"
    "                         [https.Server, tls.Server]]) {\n"
    "  const close = S.prototype.close;\n"
    "  S.prototype.close = function (cb) {\n"
    "    if (this.herdClosing) return close.call(this, cb);\n"
    "    this.herdClosing = true;\n"
    "    this.prependListener('request', (req, res) => {\n"
    "      res.shouldKeepAlive = false;\n"
    "    });\n"
    "    base.prototype.close.call(this, cb);\n"
    "    setTimeout(() => this.closeIdleConnections(), 1000).unref();\n"
    "    return this;\n"
    "  };\n"
    "}\n";

/* "NODE_OPTIONS=<theirs> --import data:text/javascript,<percent-encoded
 * kNodeGraceful>" and "HERD_NODE_OPTIONS=<theirs>" (when they had one),
 * appended to `env`; NULL when out of memory. */
static const char** node_env(const run_options_t* o, char** opts,
                             char** saved) {
  const char* theirs = getenv("NODE_OPTIONS");
  const char** env;
  size_t n = 0, len;
  char* p;
  for (int i = 0; i < o->nenv; i++)
    if (strncmp(o->env[i], "NODE_OPTIONS=", 13) == 0)
      theirs = o->env[i] + 13;
  len = strlen("NODE_OPTIONS= --import data:text/javascript,") +
        (theirs ? strlen(theirs) : 0) + 3 * sizeof(kNodeGraceful) + 1;
  *opts = malloc(len);
  *saved = theirs ? malloc(strlen(theirs) + 20) : NULL;
  env = calloc((size_t)o->nenv + 3, sizeof(*env));
  if (*opts == NULL || env == NULL || (theirs && *saved == NULL)) {
    free(*opts);
    free(*saved);
    free(env);
    return NULL;
  }
  p = *opts + sprintf(*opts, "NODE_OPTIONS=%s%s--import data:text/javascript,",
                      theirs ? theirs : "", theirs ? " " : "");
  for (const char* c = kNodeGraceful; *c != '\0'; c++) {
    if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
        (*c >= '0' && *c <= '9') || strchr("-_.~", *c) != NULL)
      *p++ = *c;
    else
      p += sprintf(p, "%%%02X", (unsigned char)*c);
  }
  *p = '\0';
  for (int i = 0; i < o->nenv; i++)
    if (strncmp(o->env[i], "NODE_OPTIONS=", 13) != 0)
      env[n++] = o->env[i];
  env[n++] = *opts;
  if (theirs) {
    sprintf(*saved, "HERD_NODE_OPTIONS=%s", theirs);
    env[n++] = *saved;
  }
  return env;
}

int run_pool_prepare(run_options_t* o) {
  static const herd_ready_mode_t modes[] = {
      HERD_READY_AUTO, HERD_READY_LISTENING, HERD_READY_NOTIFY,
      HERD_READY_DELAY};
  herd_supervisor_socket_t socks[HERD_LISTEN_FDS_MAX];
  herd_supervisor_options_t so;
  const char** node_envp = NULL;
  char *node_opts = NULL, *node_saved = NULL;
  int r;

  R.loop = uv_default_loop();
  signal(SIGPIPE, SIG_IGN);
  if (herd_log_init(R.loop, &R.out, STDOUT_FILENO, NULL) == 0)
    R.out_on = 1;
  if (herd_log_init(R.loop, &R.err, STDERR_FILENO, NULL) == 0)
    R.err_on = 1;
  /* NOTIFY_SOCKET and the watchdog are herd's, never its workers'. */
  r = herd_sd_notifier_init(R.loop, &R.notifier, HERD_SD_UNSET_ENV);
  if (r == 0)
    R.notifier_on = 1;
  else
    say("NOTIFY_SOCKET ignored: %s", herd_strerror(r));
  if (o->nlisten > HERD_LISTEN_FDS_MAX) {
    say("at most %d addresses", HERD_LISTEN_FDS_MAX);
    run_pool_abandon();
    return 2;
  }
  memset(socks, 0, sizeof(socks));
  for (int i = 0; i < o->nlisten; i++) {
    socks[i].fd = o->listen[i].fd;
    socks[i].addr = &o->listen[i].addr;
    socks[i].name = o->fdnames != NULL ? o->fdnames[i] : NULL;
  }
  memset(&so, 0, sizeof(so));
  so.protocol = o->node ? HERD_WORKER_CLUSTER : HERD_WORKER_SYSTEMD;
  so.name = o->name;
  so.file = o->path;
  so.args = (const char* const*)o->args;
  so.env = (const char* const*)o->env;
  if (o->node) {
    /* Copied by the supervisor: freed right after. */
    node_envp = node_env(o, &node_opts, &node_saved);
    if (node_envp == NULL) {
      say("out of memory");
      run_pool_abandon();
      return 1;
    }
    so.env = node_envp;
  }
  so.workers = o->workers;
  so.max_workers = MAX_WORKERS;
  so.policy = o->policy;
  so.sockets = socks;
  so.socket_count = o->nlisten;
  so.ready = modes[o->ready];
  so.ready_delay = o->ready_delay_ms;
  so.ready_timeout = o->ready_timeout_ms;
  so.graceful_timeout = o->graceful_timeout_ms == 0 ? HERD_SUPERVISOR_NO_GRACE
                                                    : o->graceful_timeout_ms;
  so.stop_signal = o->stop_signal_set ? o->stop_signal : 0;
  so.max_restarts = o->max_restarts == 0 ? HERD_RESTARTS_NONE : o->max_restarts;
  so.restart_window = o->restart_window_ms;
  so.out = R.out_on ? &R.out : NULL;
  so.err = R.err_on ? &R.err : NULL;
  so.notifier = R.notifier_on ? &R.notifier : NULL;
  so.flags = HERD_SUPERVISOR_SUBREAPER | HERD_SUPERVISOR_SENTINEL;
  r = herd_supervisor_init(R.loop, &R.sup, &so, on_event, on_message);
  free(node_envp);
  free(node_opts);
  free(node_saved);
  if (r != 0) {
    say("cannot run %s: %s", o->program, herd_strerror(r));
    run_pool_abandon();
    return 1;
  }
  R.sup_on = 1;
  return 0;
}

int run_pool_run(run_options_t* o) {
  int r;
  R.status = 1;
  /* With port 0 this is where the port is told. */
  for (int i = 0; i < o->nlisten; i++)
    say("listening on %s%s", o->listen[i].addr.text,
        o->inherited ? " (inherited)" : "");
  r = signals_init();
  if (r == 0)
    r = herd_supervisor_start(&R.sup);
  if (r != 0) {
    say("cannot start: %s", herd_strerror(r));
    herd_supervisor_close(&R.sup, on_closed);
  }
  uv_run(R.loop, UV_RUN_DEFAULT);
  uv_loop_close(R.loop);
  if (R.sigfd >= 0)
    close(R.sigfd);
  return R.status;
}

void run_pool_abandon(void) {
  if (R.sup_on)
    herd_supervisor_close(&R.sup, on_closed);
  else
    on_closed(NULL);
  uv_run(R.loop, UV_RUN_DEFAULT);
  uv_loop_close(R.loop);
}
