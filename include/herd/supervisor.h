/* Supervision: a pool of worker processes running one program. The
 * supervisor starts them, gates them on readiness, restarts them when they
 * crash (with backoff, and gives up on a crash loop), replaces them one by
 * one on reload without dropping a connection, grows and shrinks the pool,
 * and stops them gracefully with escalation. `herd run` and `herd demo`
 * are built on it; a C primary can use it directly. Included by
 * <herd.h>; do not include directly. docs/supervisor.md is the reference.
 *
 * Two kinds of worker, one state machine
 * --------------------------------------
 * HERD_WORKER_SYSTEMD: any program. Plain herd_spawn(); the listening
 *   sockets are passed as systemd passes them (fds 3, 4, ..., LISTEN_FDS,
 *   LISTEN_PID = the worker's own pid, LISTEN_FDNAMES), with NOTIFY_SOCKET
 *   naming a herd_sd_notify_socket_t of the worker's own.
 * HERD_WORKER_CLUSTER: programs that speak Node's cluster protocol (node,
 *   and herd itself in `herd demo`). A herd_cluster_t is underneath; each
 *   worker is a cluster worker (NODE_UNIQUE_ID, the IPC channel), so a Node
 *   program's listen() goes through herd as through Node's primary, and
 *   its process.send() messages reach the `message` callback.
 * Both go through the same slot table and the same decisions below; only
 * "start a process", "it is ready" and "ask it to stop" differ.
 *
 * Slots
 * -----
 * The pool has `workers` slots, 0 .. workers - 1 (nginx's slot table). A
 * slot's identity survives its processes: HERD_WORKER_ID=<slot> is in
 * every worker's environment (and NODE_APP_INSTANCE=<slot> for cluster
 * workers, PM2's name for it); a restart or a reload starts the new
 * process in the same slot; under reuseport the slot owns its listening
 * sockets. A slot holds at most two processes: the one serving and,
 * during a replacement, its successor. herd_supervisor_scale() adds slots
 * at the end and retires the highest ones.
 *
 * Sockets
 * -------
 * The caller binds every address once, before any worker starts
 * (herd_listen_bind(): a busy port fails at once), or adopts the ones a
 * service manager passed (herd_sd_listen_fds()), and gives the fds to the
 * supervisor, which never closes them.
 * - shared: every worker gets the same socket for each address.
 * - reuseport: each slot gets a socket of its own per TCP address, bound
 *   with SO_REUSEPORT to the same port: slot 0's is the caller's, the
 *   others of the initial pool are bound by herd_supervisor_init() (so a
 *   caller that drops privileges after init keeps them), those of slots
 *   added later when the slot first starts. A socket that cannot join the
 *   group (the caller's was not bound with SO_REUSEPORT, or Linux refuses
 *   a port bound by another user) is replaced by the caller's socket,
 *   shared. A slot's socket stays with the slot across restarts and
 *   reloads: connections queued in it while the slot's process is being
 *   replaced are accepted by the next one, never reset. While a slot has
 *   no process (a crash, waiting for its restart) new connections are
 *   steered to the other slots' sockets with a reuseport BPF program; a
 *   retired slot is steered around first, its worker keeps accepting
 *   until the socket's queue is empty, and only then gets its stop
 *   signal. Unix addresses have no reuseport on Linux: they are shared.
 * - rr: cluster workers only. herd accepts and hands connections out.
 *
 * Readiness
 * ---------
 * A worker is "starting" until ready, then "ready". Ready means:
 * - HERD_READY_LISTENING (cluster): Node's `listening` (for a successor:
 *   listening on every server its predecessor listened on).
 * - HERD_READY_NOTIFY: READY=1 on the worker's NOTIFY_SOCKET, from the
 *   worker's pid or from a process of its process group (a wrapper script
 *   that forks the real server stays in the group). A datagram from any
 *   other pid is ignored whatever it says.
 * - HERD_READY_DELAY: the worker stayed alive `ready_delay` ms (einhorn's
 *   timer mode), for programs that signal nothing.
 * - HERD_READY_AUTO: LISTENING for cluster workers; for others READY=1 or
 *   the delay, whichever comes first, except that a worker that sends any
 *   notify datagram before the delay has shown that it speaks sd_notify
 *   and must then send READY=1.
 * Not ready within `ready_timeout` is a failure, never "ready" (PM2 marks
 * such an app online, pm2#5716): the process is stopped (stop signal,
 * then SIGKILL of its group) and the failure counts as a crash, or fails
 * the reload (a successor). EXTEND_TIMEOUT_USEC= from a starting worker
 * extends its timeout, as systemd allows.
 *
 * Restart policy
 * --------------
 * A worker that exits when the supervisor did not ask it to (any status,
 * 0 included: a server that returns has stopped serving) crashed. Its
 * slot restarts after a delay: 0 when the worker had been ready for at
 * least `min_uptime`, otherwise the slot's backoff, which starts at
 * `backoff_min`, doubles with each crash of a younger worker, stops at
 * `backoff_max`, and is drawn with equal jitter (half fixed, half uniform
 * random: slots that crashed together do not restart in lockstep). A
 * crash after min_uptime resets the slot's backoff. Whatever the delays,
 * more than `max_restarts` crashes of the pool within `restart_window` is
 * a crash loop: the supervisor gives up (HERD_SUPERVISOR_GAVE_UP with
 * HERD_ECRASHLOOP) and stops the remaining workers gracefully. Fail fast:
 * when no worker of the first generation ever became ready and each
 * failed once, the supervisor gives up at once (HERD_ENEVERREADY),
 * whatever the budget: a program that cannot start at all is reported in
 * a second, not after a minute of restarts.
 *
 * Rolling reload
 * --------------
 * herd_supervisor_reload() replaces every worker by a fresh process of
 * the program (its file is executed again: a deploy that replaced it
 * runs), slot by slot, `reload_batch` at a time: the successor starts
 * while the old worker keeps serving, shares the slot's sockets, and only
 * when it is ready does the old one get its stop signal. Old workers
 * drain while the next slot is being replaced; the pool never has fewer
 * ready workers than before. A successor that exits, or is not ready
 * within ready_timeout, stops the reload: it is stopped, every slot not
 * replaced yet keeps its old worker (never touched), the slots replaced
 * before keep their new, ready workers, and the reload is reported failed
 * (HERD_SUPERVISOR_RELOAD_FAILED). A bad deploy found in slot 0 thus
 * leaves the pool exactly as it was. A reload asked for during a reload
 * runs after it (several are coalesced into one).
 *
 * Stop
 * ----
 * herd_supervisor_stop(): every worker is asked to stop (the stop signal;
 * cluster workers: Node's disconnect, plus the stop signal when one was
 * set, or SIGTERM for one never ready: without a server it may have no
 * reason to end on a disconnect), restarts end, and `graceful_timeout` later
 * whatever is left gets SIGKILL, sent to each worker's process group so its
 * children go too. A second stop with `now` skips the wait. The supervisor owns
 * escalation; its callers only choose the timeouts.
 *
 * No orphans
 * ----------
 * - Every worker leads its own process group; when a worker exits, what
 *   is left of its group gets SIGKILL before the worker is reaped (its
 *   zombie keeps the group's id from being reused meanwhile).
 * - Workers get a parent-death signal (SIGKILL): a supervisor killed with
 *   SIGKILL takes its workers with it.
 * - HERD_SUPERVISOR_SENTINEL: their children, which no parent-death
 *   signal covers, are taken by a sentinel, a small process forked at
 *   herd_supervisor_start() that holds the read end of a pipe and the list
 *   of worker process groups. When the supervisor's process dies, by any
 *   signal, the pipe reads end-of-file and the sentinel SIGKILLs every
 *   group it knows. (A process that left its worker's group with setsid()
 *   escapes.)
 * - HERD_SUPERVISOR_SUBREAPER: the process becomes a child subreaper
 *   (herd_subreaper_start()): an orphan among the workers' descendants is
 *   re-parented to it and reaped, never left as a zombie. As PID 1 this
 *   reaps every orphan the kernel hands it.
 *
 * Callbacks
 * ---------
 * Every event comes from the loop, never from inside a call: the workers
 * of herd_supervisor_start() and herd_supervisor_scale() start, a
 * reload begins, SCALED and STOPPING are reported, on the loop's next
 * turn. A callback may call any function of the supervisor, close
 * included.
 *
 * Output
 * ------
 * With `out` and `err` set, workers' stdout and stderr go through those
 * herd_log_t, each line prefixed "<name>.<slot>[<pid>] " (a cut piece of
 * an over-long line: "<name>.<slot>[<pid>]+ "). The supervisor prints
 * nothing itself: its events carry a sentence (`text`) for the caller to
 * log. */
#ifndef HERD_SUPERVISOR_H
#define HERD_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defaults of herd_supervisor_options_t, in ms where a time. */
#define HERD_SUPERVISOR_READY_DELAY      1000  /* einhorn's timer ACK */
#define HERD_SUPERVISOR_READY_TIMEOUT    30000 /* PM2's listen_timeout x 10 */
#define HERD_SUPERVISOR_GRACEFUL_TIMEOUT 10000
#define HERD_SUPERVISOR_MIN_UPTIME       1000 /* PM2's min_uptime */
#define HERD_SUPERVISOR_BACKOFF_MIN      100
#define HERD_SUPERVISOR_BACKOFF_MAX      10000
#define HERD_SUPERVISOR_MAX_RESTARTS     10
#define HERD_SUPERVISOR_RESTART_WINDOW   60000
#define HERD_SUPERVISOR_MAX_WORKERS      1024

/* herd_supervisor_options_t.max_restarts values besides a count. */
#define HERD_RESTARTS_UNLIMITED (-1) /* never give up */
#define HERD_RESTARTS_NONE      (-2) /* give up at the first crash */
/* graceful_timeout: SIGKILL at once, no grace (0 means the default). */
#define HERD_SUPERVISOR_NO_GRACE UINT64_MAX

typedef struct herd_supervisor_s herd_supervisor_t;

/* How workers get their sockets and say they are ready. */
typedef enum {
  HERD_WORKER_SYSTEMD = 0, /* fds 3.., LISTEN_FDS, NOTIFY_SOCKET */
  HERD_WORKER_CLUSTER      /* Node's cluster protocol */
} herd_worker_protocol_t;

typedef enum {
  HERD_READY_AUTO = 0,
  HERD_READY_LISTENING, /* cluster workers only */
  HERD_READY_NOTIFY,
  HERD_READY_DELAY
} herd_ready_mode_t;

/* One socket the caller bound (or adopted) for the pool. The supervisor
 * never closes `fd`; it must stay open until herd_supervisor_close() has
 * called back. */
typedef struct herd_supervisor_socket_s {
  int fd;
  /* Its address (copied), e.g. from herd_listen_bind(); NULL: read from
   * the socket (herd_listen_addr_from_fd()). Under reuseport the other
   * slots' sockets are bound to it. */
  const herd_listen_addr_t* addr;
  /* Its LISTEN_FDNAMES entry (systemd's rule: printable ASCII without ':',
   * at most 255 characters); NULL: the supervisor's name, each character
   * outside that rule as '_'. */
  const char* name;
} herd_supervisor_socket_t;

typedef enum {
  /* Become a child subreaper and reap orphans (herd_subreaper_start()). */
  HERD_SUPERVISOR_SUBREAPER = (1 << 0),
  /* Start the sentinel that kills the workers' groups if the supervisor's
   * process dies (see "No orphans"). */
  HERD_SUPERVISOR_SENTINEL = (1 << 1)
} herd_supervisor_flags_t;

/* Options of herd_supervisor_init(); all-zero means the defaults above.
 * Strings and arrays are copied. */
typedef struct herd_supervisor_options_s {
  herd_worker_protocol_t protocol;
  const char* name;           /* for logs and status; NULL: file's base name */
  const char* file;           /* the program; a name without '/' is looked up
                                 in PATH at each start, as herd_spawn() does */
  const char* const* args;    /* NULL-terminated, without argv[0] */
  const char* const* env;     /* "K=V" added to the workers' environment */
  const char* cwd;            /* NULL: the supervisor's */
  int workers;                /* 0: uv_available_parallelism() */
  int max_workers;            /* the most herd_supervisor_scale() allows;
                                 0: HERD_SUPERVISOR_MAX_WORKERS */
  herd_sched_policy_t policy; /* DEFAULT: herd_cluster_default_policy(), rr
                                 then meaning reuseport for SYSTEMD workers;
                                 an explicit rr needs CLUSTER */
  const herd_supervisor_socket_t* sockets;
  int socket_count; /* at most HERD_LISTEN_FDS_MAX */
  herd_ready_mode_t ready;
  uint64_t ready_delay;         /* ms a worker must live (DELAY, AUTO) */
  uint64_t ready_timeout;       /* ms from start to ready */
  uint64_t graceful_timeout;    /* ms from the stop signal to SIGKILL of the
                                   group; HERD_SUPERVISOR_NO_GRACE: none */
  int stop_signal;              /* 0: SIGTERM for SYSTEMD workers, none (only
                                   Node's disconnect) for CLUSTER workers
                                   once ready (SIGTERM before) */
  uint64_t min_uptime;          /* ms ready before a crash restarts at once */
  uint64_t backoff_min;         /* ms */
  uint64_t backoff_max;         /* ms */
  int max_restarts;             /* crashes tolerated in restart_window; 0: 10;
                                   or HERD_RESTARTS_NONE, _UNLIMITED */
  uint64_t restart_window;      /* ms */
  int reload_batch;             /* slots replaced at once; 0: 1 */
  herd_log_t* out;              /* workers' stdout lines; NULL: inherited */
  herd_log_t* err;              /* workers' stderr lines; NULL: inherited */
  herd_sd_notifier_t* notifier; /* READY/RELOADING/STOPPING/STATUS; NULL */
  unsigned flags;               /* herd_supervisor_flags_t */
} herd_supervisor_options_t;

/* What a slot's process is doing. */
typedef enum {
  HERD_SLOT_EMPTY = 0, /* no process: waiting for a restart (backoff) */
  HERD_SLOT_STARTING,
  HERD_SLOT_READY,
  HERD_SLOT_STOPPING /* asked to stop; SIGKILL at the deadline */
} herd_slot_state_t;

/* A slot, as herd_supervisor_slot() shows it. */
typedef struct herd_slot_info_s {
  int slot;
  herd_slot_state_t state;
  pid_t pid;           /* the serving (or starting) process, 0: none */
  pid_t successor_pid; /* during a replacement, else 0 */
  uint64_t started;    /* uv_now() at its start */
  uint64_t ready;      /* uv_now() when it became ready, 0: not yet */
  unsigned restarts;   /* crashes of this slot so far */
  uint64_t backoff;    /* ms: the delay of the slot's next young crash,
                          before jitter */
  /* Its last STATUS= (SYSTEMD workers), NULL: none. Valid until the next
   * callback. */
  const char* status;
} herd_slot_info_t;

/* Events, for logs, status and tests. */
typedef enum {
  HERD_SUPERVISOR_STARTED,   /* a process started in `slot` (pid) */
  HERD_SUPERVISOR_READY,     /* it became ready */
  HERD_SUPERVISOR_ALL_READY, /* every slot ready for the first time */
  HERD_SUPERVISOR_EXITED,    /* a process ended (exit_status, term_signal;
                                error: its start error) */
  HERD_SUPERVISOR_CRASHED,   /* ... when not asked to: restart in `delay`
                                ms */
  HERD_SUPERVISOR_NOT_READY, /* ready_timeout passed: it is stopped */
  HERD_SUPERVISOR_KILLED,    /* SIGKILL sent to a group at its deadline */
  HERD_SUPERVISOR_RELOAD_STARTED,
  HERD_SUPERVISOR_RELOAD_DONE,
  HERD_SUPERVISOR_RELOAD_FAILED, /* `error`; the successor's pid, status */
  HERD_SUPERVISOR_SCALED,        /* the pool has `workers` slots now */
  HERD_SUPERVISOR_GAVE_UP,       /* crash loop or fail fast: stopping */
  HERD_SUPERVISOR_STOPPING,      /* a stop began */
  HERD_SUPERVISOR_STOPPED,       /* every worker is gone */
  HERD_SUPERVISOR_ORPHAN,        /* the subreaper reaped an orphan (pid) */
  HERD_SUPERVISOR_NOTICE,        /* something to tell, e.g. how a cluster
                                    worker's listen() was served (error:
                                    UV_EADDRNOTAVAIL when refused) */
  HERD_SUPERVISOR_SCALE_FAILED   /* a slot added by scale-up failed before
                                    ready: `slot` and those above it were
                                    removed; `workers` is the new count */
} herd_supervisor_event_type_t;

typedef struct herd_supervisor_event_s {
  herd_supervisor_event_type_t type;
  int slot; /* -1 for pool events */
  pid_t pid;
  int64_t exit_status; /* EXITED, CRASHED, RELOAD_FAILED: -1 for a signal
                          or when it never ran */
  int term_signal;
  uint64_t delay; /* CRASHED: ms until the restart */
  int error;      /* EXITED, CRASHED: a start error (UV_ENOENT, ...);
                     RELOAD_FAILED: UV_ETIMEDOUT, HERD_EWORKERDIED or a
                     start error; GAVE_UP: HERD_ECRASHLOOP or
                     HERD_ENEVERREADY */
  int workers;    /* the pool's slot count */
  /* A sentence for a log, without "herd: " or a newline, e.g. "giving up:
   * 11 crashes within 60 s (app.0[4242] exited with status 1)". */
  const char* text;
} herd_supervisor_event_t;

typedef void (*herd_supervisor_event_cb)(herd_supervisor_t* s,
                                         const herd_supervisor_event_t* e);
/* A cluster worker's process.send() message (json valid during the call). */
typedef void (*herd_supervisor_message_cb)(herd_supervisor_t* s, int slot,
                                           const char* json, size_t len);
typedef void (*herd_supervisor_cb)(herd_supervisor_t* s);

/* Public fields are read-only. */
struct herd_supervisor_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  int workers;       /* slots */
  int ready;         /* slots whose process is ready */
  int reloading;     /* a reload is running */
  int stopping;      /* a stop began (asked for, or after giving up) */
  uint64_t restarts; /* crashes so far */
  uint64_t reloads;  /* reloads finished (failed ones included) */
  uint64_t reload_failures;
  uint64_t kills;   /* processes SIGKILLed at a deadline or by a stop with
                       `now` */
  uint64_t orphans; /* orphans reaped (HERD_SUPERVISOR_SUBREAPER) */
  int gave_up;      /* the supervisor gave up; its reason in `error` */
  int error;
  /* private */
  struct herd_supervisor_private_s* priv;
};

/* Sets the supervisor up on `loop`; nothing starts yet. Under reuseport
 * it binds the sockets of slots 1 .. workers - 1 here. event_cb (may be
 * NULL) gets every event; message_cb (may be NULL) cluster workers'
 * messages. Errors: UV_EINVAL (no file, rr or HERD_READY_LISTENING
 * without CLUSTER, an fd that is not a listening socket, a bad fd name,
 * too many sockets, workers above max_workers), UV_ENOMEM, and the errors
 * of binding a reuseport socket other than those that make it shared (see
 * Sockets). With an error nothing is left and `s` may be reused. */
int herd_supervisor_init(uv_loop_t* loop, herd_supervisor_t* s,
                         const herd_supervisor_options_t* options,
                         herd_supervisor_event_cb event_cb,
                         herd_supervisor_message_cb message_cb);
/* Starts the pool (and the sentinel, the subreaper, here): the workers
 * start from the loop; one that cannot be started counts as a crash. Errors:
 * UV_EALREADY (started before), UV_ECANCELED (closing), UV_EBUSY (another
 * subreaper runs in this process), and the errors of fork(), pipe() and
 * prctl() for the sentinel and the subreaper. After an error nothing was
 * started; herd_supervisor_close() is still due. */
int herd_supervisor_start(herd_supervisor_t* s);
/* Rolling reload (see above). Returns 0 (started, or queued behind the
 * running one), UV_EINVAL (not started), UV_ECANCELED (stopping). */
int herd_supervisor_reload(herd_supervisor_t* s);
/* Adds (delta > 0) or retires (delta < 0) slots, keeping 1 .. max_workers.
 * Returns the new count (fewer slots than asked when memory ran out after
 * the first), or UV_EINVAL (out of range, not started), UV_ECANCELED
 * (stopping), UV_ENOMEM (no slot could be added). A scale-up is a request
 * that may not hold: a new slot whose first worker cannot be started, or
 * exits or is not ready within ready_timeout before it was ever ready, is
 * removed again with the added slots above it
 * (HERD_SUPERVISOR_SCALE_FAILED); that is no crash, so a scale-up the
 * system cannot satisfy (no fds, no memory) never makes the supervisor
 * give up and stop the serving pool. Once a slot's worker was ready, its
 * crashes are crashes. HERD_SUPERVISOR_SCALED comes once the count is
 * known: at once for a retirement, once every added slot is ready or
 * removed for a scale-up (calls in between give one event). */
int herd_supervisor_scale(herd_supervisor_t* s, int delta);
/* Sends `signum` to every worker process that has been ready (e.g. USR1
 * and USR2, passed on), those stopping after being ready included. A
 * worker still starting is skipped: it may not have installed its handler
 * yet, and most signals' default action ends a process (einhorn and
 * unicorn likewise signal acknowledged workers only). Returns how many
 * were signalled, or UV_EINVAL for a bad signal. */
int herd_supervisor_signal(herd_supervisor_t* s, int signum);
/* Graceful stop; `now` skips the grace (SIGKILL to every group at once).
 * cb (may be NULL) runs from the loop once every worker is gone, after
 * the HERD_SUPERVISOR_STOPPED event; a second call may shorten the wait
 * (`now`) and sets cb if none was set. Returns 0, or UV_EINVAL (not
 * started: nothing to stop). */
int herd_supervisor_stop(herd_supervisor_t* s, int now, herd_supervisor_cb cb);
/* Fills `info` about a slot; UV_EINVAL for a slot out of range. */
int herd_supervisor_slot(herd_supervisor_t* s, int slot,
                         herd_slot_info_t* info);
/* Releases everything (stopping first, at once, if workers are still
 * alive; a stop under way keeps its grace); close_cb (may be NULL) runs
 * from the loop, after which `s` may be freed. No callback but close_cb
 * runs after this call. */
void herd_supervisor_close(herd_supervisor_t* s, herd_supervisor_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_SUPERVISOR_H */
