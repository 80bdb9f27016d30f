/* DRAFT: the design of the supervision module; not implemented yet, and
 * not included by <herd.h> until it is. docs/supervisor.md will be its
 * reference.
 *
 * A supervisor keeps a pool of worker processes running one program:
 * it starts them, gates them on readiness, restarts them when they crash
 * (with backoff, and gives up on a crash loop), replaces them one by one
 * on reload without dropping a connection, grows and shrinks the pool,
 * and stops them gracefully with escalation. `herd demo` and `herd run`
 * are both built on it; a C primary can use it directly.
 *
 * Two kinds of worker, one state machine
 * --------------------------------------
 * HERD_WORKER_CLUSTER: programs that speak Node's cluster protocol (node,
 *   and herd itself in `herd demo`). A herd_cluster_t is underneath; each
 *   worker is a cluster worker (NODE_UNIQUE_ID, the IPC channel), so a Node
 *   program's listen() goes through herd as through Node's primary, and
 *   its process.send() messages reach the `message` callback. A Node
 *   server that never mentions cluster is clustered the same way (Node
 *   sets up the worker side at start-up when NODE_UNIQUE_ID is set; PM2's
 *   cluster mode relies on the same).
 * HERD_WORKER_SYSTEMD: any other program. Plain herd_spawn(); the
 *   listening sockets are passed as systemd does (fds 3, 4, ...,
 *   LISTEN_FDS, LISTEN_PID = the worker's own pid, LISTEN_FDNAMES), with
 *   NOTIFY_SOCKET naming a herd_sd_notify_socket_t of the worker's own.
 * Both go through the same slot table and the same decisions below; only
 * "start a process", "it is ready" and "ask it to stop" differ.
 *
 * Slots
 * -----
 * The pool has `workers` slots, 0 .. workers - 1 (nginx's slot table). A
 * slot's identity survives its processes: HERD_WORKER_ID=<slot> is in
 * every worker's environment (and NODE_APP_INSTANCE=<slot> for cluster
 * workers, PM2's name for it, which Node apps use to run a job in one
 * worker only); a restart or a reload starts the new process in the same
 * slot; under reuseport the slot owns its listening sockets. A slot holds
 * at most two processes: the one serving and, during a replacement, its
 * successor. SIGTTIN adds the slot `workers`; SIGTTOU retires the highest.
 *
 * Sockets
 * -------
 * The caller binds every address once, before any worker starts (see
 * herd_listen_bind(), which is why a busy port fails at once), or adopts
 * the ones a service manager passed (herd_sd_listen_fds()), and gives the
 * fds to the supervisor, which never closes them before
 * herd_supervisor_close().
 * - shared: every worker gets the same socket for each address.
 * - reuseport: each slot gets a socket of its own per TCP address, bound
 *   with SO_REUSEPORT to the same port; slot 0's is the one bound first,
 *   the others are bound when their slot first starts. As binding a port
 *   below 1024 needs privileges that `--user` drops, herd keeps exactly
 *   CAP_NET_BIND_SERVICE across the drop (not passed on to workers) when
 *   one of its ports needs it, and otherwise binds the slots' sockets of
 *   the initial pool before the drop. A socket stays with its slot across
 *   restarts and reloads: connections queued in it while the slot's
 *   process is being replaced are accepted by the next one, never reset
 *   (the reset nginx ticket 1300 describes comes from closing them). A
 *   slot without a process that accepts is steered around with a
 *   reuseport BPF program (the cluster module's reuseport code, shared),
 *   and when a slot is retired its socket is steered around first, its
 *   worker keeps accepting until the socket's queue is empty (TCP_INFO's
 *   tcpi_unacked of a listening socket is its queue length), and only
 *   then gets its stop signal. Unix addresses have no reuseport on Linux:
 *   they are shared under both policies.
 * - rr: cluster workers only. herd accepts and hands connections out.
 * Cluster workers get the sockets through the cluster module (it adopts
 * them as its servers instead of binding on demand). A Node worker's
 * listen(host, port) is matched to them in this order:
 *   1. a --listen address with the same port (and the same host, or any);
 *   2. if only one TCP address was given, that one, whatever the port the
 *      program asks for: `herd run -l 127.0.0.1:0 -- node seed.js` serves
 *      the seed's hard-coded listen(8000) on the port herd bound, and the
 *      worker's `listening` event and server.address() report that port
 *      (the primary's answer carries the real address, as Node's does);
 *      herd logs the mapping once ("listen(:8000) served on
 *      127.0.0.1:40123");
 *   3. listen({fd: 3 + i}), systemd-style code run under the cluster
 *      protocol, gets the i-th socket;
 *   4. otherwise the listen fails in the worker with EADDRNOTAVAIL and
 *      herd says which addresses it has: the user said where to listen,
 *      and a guess would put a service on a port nobody opened.
 * With no address at all, cluster workers listen where they ask, as under
 * Node's own primary (bound on demand, kept open across restarts).
 *
 * Readiness
 * ---------
 * A worker is "starting" until ready, then "ready". Ready means:
 * - HERD_READY_LISTENING (cluster): Node's `listening` for the first time
 *   at start; for a successor, listening on every server its predecessor
 *   listened on (herd_worker_replace()).
 * - HERD_READY_NOTIFY: READY=1 on the worker's NOTIFY_SOCKET, from the
 *   worker's pid or from a process of its process group (a wrapper script
 *   that forks the real server stays in the group; systemd's
 *   NotifyAccess=main would refuse it, =all would accept any process of
 *   the unit). A datagram from any other pid is ignored whatever it says;
 *   MAINPID= is recorded only from the worker's pid and only when it names
 *   a process of the group.
 * - HERD_READY_DELAY: the worker stayed alive `ready_delay` ms (einhorn's
 *   timer mode, 1 s), for programs that signal nothing.
 * - HERD_READY_AUTO: LISTENING for cluster workers; for others READY=1 or
 *   the delay, whichever comes first, except that a worker that sends any
 *   notify datagram before the delay has shown that it speaks sd_notify
 *   and must then send READY=1.
 * Not ready within `ready_timeout` is a failure, never "ready" (PM2 marks
 * such an app online, pm2#5716): the process is stopped (stop signal,
 * then SIGKILL of its group) and the failure counts as a crash (at start),
 * or fails the reload (in a replacement). EXTEND_TIMEOUT_USEC= from a
 * starting worker extends its timeout, as systemd allows.
 *
 * Restart policy
 * --------------
 * A worker that exits when the supervisor did not ask it to (any status,
 * 0 included: a server that returns has stopped serving) is a crash. Its
 * slot restarts after a delay: 0 when the worker had been ready for at
 * least `min_uptime` (1 s, PM2's min_uptime), otherwise the slot's
 * backoff, which starts at `backoff_min` (100 ms), doubles with each crash
 * of a worker younger than min_uptime, stops at `backoff_max` (10 s), and
 * is drawn with equal jitter (half fixed, half uniform random: slots that
 * crashed together do not restart in lockstep). A crash after min_uptime
 * resets the slot's backoff. Whatever the delays, more than
 * `max_restarts` crashes (10) of the pool within `restart_window` (60 s)
 * is a crash loop: the supervisor gives up (HERD_SUPERVISOR_GAVE_UP), stops
 * the remaining workers gracefully and reports why (the count, the window,
 * the last worker's exit status); herd run then exits 1. PM2's restart
 * limit counts only fast consecutive restarts and let crash loops run tens
 * of thousands of times (pm2#2584); a window over the pool cannot be
 * outrun. Fail fast: when at start no worker of the first generation ever
 * became ready and each has failed once, the supervisor gives up at once,
 * whatever the budget: a program that cannot start at all (a syntax
 * error, a missing module) is reported in a second, not after a minute of
 * restarts.
 *
 * Rolling reload
 * --------------
 * herd_supervisor_reload() (herd run: SIGHUP) replaces every worker by a
 * fresh process of the program, slot by slot, `reload_batch` (1) at a
 * time: the successor starts while the old worker keeps serving, shares
 * the slot's sockets, and only when it is ready does the old one get its
 * stop signal (cluster workers: Node's disconnect, which stops accepting
 * and finishes the requests in flight, through herd_worker_replace()).
 * Old workers drain while the next slot is being replaced; the pool never
 * has fewer ready workers than slots (gunicorn's HUP retires old workers
 * before the new ones are ready, gunicorn#1757). A successor that exits,
 * or is not ready within ready_timeout, stops the reload: it is stopped,
 * every slot not replaced yet keeps its old worker (they were never
 * touched), the slots replaced before keep their new, ready workers, and
 * the reload is reported failed with the successor's status
 * (HERD_SUPERVISOR_RELOAD_FAILED; sd_notify STATUS=). A bad deploy found
 * in slot 0 (the usual case) thus leaves the pool exactly as it was. The
 * old program cannot be started again: its files may be gone (a deploy
 * replaces them), so a failed reload never restarts old code. A reload
 * asked for during a reload runs after it (coalesced into one). A crash of
 * an old worker during a reload restarts its slot with the new program.
 * With a notifier, RELOADING=1 (with MONOTONIC_USEC) goes to systemd when
 * a reload starts and READY=1 when it ends, failed or not.
 *
 * Stop
 * ----
 * herd_supervisor_stop() (herd run: SIGTERM, SIGINT): STOPPING=1; every
 * worker is asked to stop (systemd workers: the stop signal, SIGTERM by
 * default; cluster workers: Node's disconnect, plus the stop signal when
 * one was set explicitly), restarts end, and `graceful_timeout` (10 s)
 * later whatever is left gets SIGKILL, sent to each worker's process group
 * so its children go too. A second stop (a second signal) skips the wait.
 * The stop is clean when every worker is gone; the callback then runs.
 * The supervisor owns escalation; its callers only choose the timeouts.
 *
 * No orphans
 * ----------
 * - Every worker leads its own process group (setpgid), so SIGKILL reaches
 *   what it started, and a crashed worker's leftover children are killed
 *   with the group before its exit status is taken (its zombie keeps the
 *   group's id from being reused meanwhile).
 * - Workers get a parent-death signal (PR_SET_PDEATHSIG, SIGKILL): a
 *   supervisor killed with SIGKILL takes its workers with it.
 * - Their children, which no parent-death signal covers, are taken by a
 *   sentinel: a small process forked before the first worker, which holds
 *   the read end of a pipe and the list of worker process groups (sent
 *   over the pipe as workers start and end). When the supervisor dies, by
 *   any signal, the pipe reads end-of-file and the sentinel SIGKILLs every
 *   group it knows, then exits. `kill -9` of herd leaves nothing behind
 *   within milliseconds, without privileges. (A process that left its
 *   worker's group with setsid() escapes; a PID namespace would catch
 *   those too, at the price of pid translation, and needs privileges.)
 * - The supervisor process is a child subreaper (PR_SET_CHILD_SUBREAPER):
 *   an orphan among the workers' descendants is re-parented to it and
 *   reaped (herd_subreaper_start()), never left as a zombie, without
 *   taking the exit status of a worker herd watches.
 * - As PID 1 (a container's entrypoint), herd also reaps every orphan the
 *   kernel hands it, and since PID 1 has no default signal actions, herd
 *   run handles every signal that would end a normal process: TERM, INT
 *   (stop), QUIT (stop at once), HUP (reload), TTIN/TTOU (scale), USR1 and
 *   USR2 (passed on to every worker, e.g. to reopen logs), and ignores the
 *   rest. Its exit status is meaningful: 0 after a requested stop, 1 after
 *   giving up (or any other failure), 128 + N if it has to end because of
 *   signal N without a clean stop.
 * - SIGTTIN and SIGTTOU are also the kernel's job-control signals for a
 *   background process that touches its terminal; herd reads them with
 *   their siginfo (signalfd) and scales only on those sent with kill(2)
 *   (SI_USER), never on the kernel's (SI_KERNEL): a background herd that
 *   writes to a terminal with `stty tostop` must not shrink its pool.
 *
 * Output
 * ------
 * Workers' stdout and stderr go through herd_log_t pipes, each line
 * prefixed "<name>.<slot>[<pid>] " (a cut piece of an over-long line:
 * "<name>.<slot>[<pid>]+ "); stdout lines to the supervisor's stdout,
 * stderr lines to its stderr; the supervisor's own messages go through
 * the same log objects ("herd: ...") so they never split a worker's line.
 *
 * The API below is the planned one; names and fields may still change.
 */
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
#define HERD_SUPERVISOR_READY_DELAY      1000
#define HERD_SUPERVISOR_READY_TIMEOUT    30000
#define HERD_SUPERVISOR_GRACEFUL_TIMEOUT 10000
#define HERD_SUPERVISOR_MIN_UPTIME       1000
#define HERD_SUPERVISOR_BACKOFF_MIN      100
#define HERD_SUPERVISOR_BACKOFF_MAX      10000
#define HERD_SUPERVISOR_MAX_RESTARTS     10
#define HERD_SUPERVISOR_RESTART_WINDOW   60000

/* herd_supervisor_options_t.max_restarts values beside a count. */
#define HERD_RESTARTS_UNLIMITED (-1)
#define HERD_RESTARTS_NONE      (-2)

typedef struct herd_supervisor_s herd_supervisor_t;
typedef struct herd_sd_notifier_s herd_sd_notifier_t;
typedef struct herd_log_s herd_log_t;
typedef struct herd_listen_addr_s herd_listen_addr_t;

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

/* One socket the caller bound (or adopted) for the pool; the supervisor
 * keeps `fd` open until herd_supervisor_close() and does not close it. */
typedef struct herd_supervisor_socket_s {
  int fd;
  const herd_listen_addr_t* addr; /* its address (copied); under reuseport
                                     the other slots' sockets are bound to
                                     it */
  const char* name;               /* LISTEN_FDNAMES entry; NULL: the
                                     supervisor's name */
} herd_supervisor_socket_t;

/* Options of herd_supervisor_init(); all-zero means the defaults above.
 * Strings and arrays are copied. */
typedef struct herd_supervisor_options_s {
  herd_worker_protocol_t protocol;
  const char* name;        /* for logs and status; NULL: file's name */
  const char* file;        /* the program (a path: the caller found
                              it, as herd run does) */
  const char* const* args; /* NULL-terminated, without argv[0] */
  const char* const* env;  /* "K=V" added to the workers' environment */
  const char* cwd;
  int workers;     /* 0: uv_available_parallelism() */
  int max_workers; /* scale-up limit; 0: 1024 */
  int policy;      /* herd_sched_policy_t; rr needs CLUSTER */
  const herd_supervisor_socket_t* sockets;
  int socket_count;
  herd_ready_mode_t ready;
  uint64_t ready_delay;
  uint64_t ready_timeout;
  uint64_t graceful_timeout;
  int stop_signal;     /* 0: SIGTERM */
  int stop_signal_set; /* cluster workers get it too (see Stop) */
  uint64_t min_uptime;
  uint64_t backoff_min;
  uint64_t backoff_max;
  int max_restarts; /* crashes tolerated in restart_window; 0: 10;
                       HERD_RESTARTS_NONE: give up at the first;
                       HERD_RESTARTS_UNLIMITED: never give up */
  uint64_t restart_window;
  int reload_batch;             /* slots replaced at once; 0: 1 */
  herd_log_t* out;              /* workers' stdout lines; NULL: inherit */
  herd_log_t* err;              /* workers' stderr lines; NULL: inherit */
  herd_sd_notifier_t* notifier; /* READY/RELOADING/STOPPING/STATUS; NULL */
  unsigned flags;               /* herd_supervisor_flags_t */
} herd_supervisor_options_t;

typedef enum {
  /* Become a child subreaper and reap orphans (herd_subreaper_start()). */
  HERD_SUPERVISOR_SUBREAPER = (1 << 0),
  /* Start the sentinel that kills the workers' groups if the supervisor
   * dies (see "No orphans"). */
  HERD_SUPERVISOR_SENTINEL = (1 << 1)
} herd_supervisor_flags_t;

/* What a slot's current process is doing. */
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
  uint64_t backoff;    /* the slot's next restart delay */
  const char* status;  /* its last STATUS=, NULL: none */
} herd_slot_info_t;

/* Events, for logs, status and tests. */
typedef enum {
  HERD_SUPERVISOR_STARTED,   /* a process started in `slot` (pid) */
  HERD_SUPERVISOR_READY,     /* it became ready */
  HERD_SUPERVISOR_ALL_READY, /* every slot ready for the first time */
  HERD_SUPERVISOR_EXITED,    /* a process ended (status, signal) */
  HERD_SUPERVISOR_CRASHED,   /* ... when not asked to: restart in
                                `delay` ms */
  HERD_SUPERVISOR_NOT_READY, /* ready_timeout passed */
  HERD_SUPERVISOR_KILLED,    /* SIGKILL sent to a group at a deadline */
  HERD_SUPERVISOR_RELOAD_STARTED,
  HERD_SUPERVISOR_RELOAD_DONE,
  HERD_SUPERVISOR_RELOAD_FAILED, /* `error`, the successor's exit */
  HERD_SUPERVISOR_SCALED,        /* the pool has `workers` slots now */
  HERD_SUPERVISOR_GAVE_UP,       /* crash loop or fail-fast: stopping */
  HERD_SUPERVISOR_STOPPED        /* every worker is gone */
} herd_supervisor_event_type_t;

typedef struct herd_supervisor_event_s {
  herd_supervisor_event_type_t type;
  int slot; /* -1 for pool events */
  pid_t pid;
  int64_t exit_status; /* EXITED, CRASHED, RELOAD_FAILED: -1 for a signal */
  int term_signal;
  uint64_t delay;   /* CRASHED: ms until the restart */
  int error;        /* RELOAD_FAILED, GAVE_UP: why (UV_ETIMEDOUT,
                       HERD_EWORKERDIED, a spawn error) */
  int workers;      /* the pool's slot count */
  const char* text; /* a human-readable sentence, e.g. "giving up: 11
                       crashes in 60 s" */
} herd_supervisor_event_t;

typedef void (*herd_supervisor_event_cb)(herd_supervisor_t* s,
                                         const herd_supervisor_event_t* e);
/* A cluster worker's process.send() message (json valid during the call). */
typedef void (*herd_supervisor_message_cb)(herd_supervisor_t* s, int slot,
                                           const char* json, size_t len);
typedef void (*herd_supervisor_cb)(herd_supervisor_t* s);

/* Public fields are read-only. */
struct herd_supervisor_s {
  void* data;
  uv_loop_t* loop;
  int workers;       /* slots */
  int ready;         /* slots whose process is ready */
  int reloading;     /* a reload is running */
  uint64_t restarts; /* crashes restarted so far */
  uint64_t reloads;  /* reloads done (failed ones included) */
  int gave_up;       /* the supervisor gave up (its error in `error`) */
  int error;
  /* private */
  struct herd_supervisor_private_s* priv;
};

/* Sets the supervisor up on `loop` (nothing starts yet). Errors: UV_EINVAL
 * (no file, rr without CLUSTER, HERD_READY_LISTENING without CLUSTER, a
 * socket that is not a listening socket), UV_ENOMEM. */
int herd_supervisor_init(uv_loop_t* loop, herd_supervisor_t* s,
                         const herd_supervisor_options_t* options,
                         herd_supervisor_event_cb event_cb,
                         herd_supervisor_message_cb message_cb);
/* Starts the pool (and the sentinel, the subreaper). Events follow from
 * the loop. Errors: UV_EALREADY, and what the sentinel's fork returns. */
int herd_supervisor_start(herd_supervisor_t* s);
/* Rolling reload (see above). Returns 0 (started, or queued behind the
 * running one), UV_ECANCELED (stopping). */
int herd_supervisor_reload(herd_supervisor_t* s);
/* Adds (delta > 0) or retires (delta < 0) slots, within 1 .. max_workers.
 * Returns the new count, or UV_EINVAL, UV_ECANCELED. */
int herd_supervisor_scale(herd_supervisor_t* s, int delta);
/* Sends `signum` to every worker process (USR1, USR2 passed on). */
int herd_supervisor_signal(herd_supervisor_t* s, int signum);
/* Graceful stop; `now` skips the graceful wait (SIGKILL to every group at
 * once). cb (may be NULL) runs when every worker is gone; a second call
 * only shortens the wait. */
int herd_supervisor_stop(herd_supervisor_t* s, int now, herd_supervisor_cb cb);
/* The slot's state; UV_EINVAL for a slot out of range. */
int herd_supervisor_slot(herd_supervisor_t* s, int slot,
                         herd_slot_info_t* info);
/* Releases everything (stops first if needed); close_cb from the loop. */
void herd_supervisor_close(herd_supervisor_t* s, herd_supervisor_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_SUPERVISOR_H */
