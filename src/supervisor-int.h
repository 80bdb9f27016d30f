/* Private declarations of the supervisor, shared by its files:
 * supervisor.c (the public calls, the slot table, events, status),
 * supervisor_proc.c (one process: start, readiness, stop, exit),
 * supervisor_restart.c (crash restarts: backoff, the crash window, giving
 * up), supervisor_reload.c (rolling reload), supervisor_sockets.c (the
 * slots' sockets, reuseport steering and draining) and
 * supervisor_sentinel.c (the process that outlives a killed supervisor).
 * Not installed. */
#ifndef HERD_SUPERVISOR_INT_H
#define HERD_SUPERVISOR_INT_H

#include "process-int.h"

typedef struct herd__sup_proc_s herd__sup_proc_t;
typedef struct herd__sup_slot_s herd__sup_slot_t;
typedef struct herd_supervisor_private_s herd__sup_t;

typedef enum {
  HERD__PROC_STARTING = 0,
  HERD__PROC_READY,
  HERD__PROC_STOPPING,
  HERD__PROC_EXITED
} herd__proc_state_t;

enum {
  HERD__PROC_SUCCESSOR = (1 << 0), /* started by a reload for its slot */
  HERD__PROC_SPOKE = (1 << 1),     /* sent a notify datagram */
  HERD__PROC_ASKED = (1 << 2),     /* asked to stop: its exit is no crash */
  HERD__PROC_KILLED = (1 << 3),    /* its group got SIGKILL */
  HERD__PROC_NOT_READY = (1 << 4), /* its ready_timeout passed */
  HERD__PROC_FIRST = (1 << 5),     /* the first process of an initial slot */
  HERD__PROC_WAS_READY = (1 << 6)
};

/* One process of a slot. Allocated by the supervisor; freed once every
 * object in it has called back (`pending`). */
struct herd__sup_proc_s {
  herd_supervisor_t* sup;
  herd__sup_proc_t* next; /* every process not yet freed */
  herd__sup_proc_t* prev;
  herd__sup_slot_t* slot; /* NULL once its slot was retired and freed */
  int slot_index;
  unsigned gen; /* the reload generation it was started in */
  pid_t pid;
  herd__proc_state_t state;
  unsigned flags;
  uint64_t started;
  uint64_t ready_at;
  uint64_t delay_at;       /* ready by delay at this time (DELAY, AUTO) */
  uint64_t ready_deadline; /* not ready by then: failed */
  uint64_t kill_at;        /* SIGKILL of the group at this time */
  int64_t exit_status;
  int term_signal;
  int start_error;
  int pending; /* callbacks awaited before the memory can go */
  int linked;  /* in the supervisor's list (it was started) */
  int has_notify;
  herd_child_t child;
  herd_sd_notify_socket_t notify;
  herd_worker_t* worker; /* CLUSTER: its cluster worker, until it exits */
  herd_log_pipe_t out;
  herd_log_pipe_t err;
  int out_open;
  int err_open;
  uv_timer_t timer; /* readiness and kill deadlines */
  char* status;     /* the last STATUS= */
};

/* One slot of the table. */
struct herd__sup_slot_s {
  int index;
  int retiring;           /* scaled away: goes once its processes have */
  herd__sup_proc_t* cur;  /* the serving (or starting) process */
  herd__sup_proc_t* next; /* its successor during a replacement */
  int procs;              /* processes that point at this slot */
  uint64_t restart_at;    /* a restart is due then (restart_due) */
  int restart_due;
  unsigned restarts;
  uint64_t backoff;
  int first_failed; /* initial slots: the first process failed unready */
  int added;        /* added by herd_supervisor_scale(), no process of it
                       ready yet: a failure removes it (no crash) */
  int started_once; /* a process was started in it */
  int* fds;         /* one per socket: what this slot's workers get */
  int* own;         /* one per socket: fds[i] is this slot's own socket */
  int draining;     /* retiring under reuseport: waiting for an empty
                       queue before the stop signal */
  uint64_t drain_started;
  uint64_t drain_deadline;
};

/* One socket of the pool. */
typedef struct {
  int fd;
  herd_listen_addr_t addr;
  int reuseport; /* TCP under reuseport: each slot binds its own */
  /* The kernel's reuseport group, as slot numbers in index order, and the
   * group indices the attached steering program picks from. */
  int* group;
  int ngroup;
  int cap_group;
  int steering; /* a program is attached */
} herd__sup_socket_t;

struct herd_supervisor_private_s {
  herd_supervisor_t* pub;
  herd_supervisor_event_cb event_cb;
  herd_supervisor_message_cb message_cb;
  /* The options, with copies of every string. */
  herd_worker_protocol_t protocol;
  herd_sched_policy_t policy;
  char* name;
  char* file;
  char** argv;    /* args, NULL-terminated */
  char** envp;    /* [0] HERD_WORKER_ID, [1] NOTIFY_SOCKET, then the
                     caller's, NULL-terminated; [0] and [1] are set per
                     start */
  char** fdnames; /* one per socket */
  int nfdnames;
  char* cwd;
  int max_workers;
  herd_ready_mode_t ready;
  uint64_t ready_delay;
  uint64_t ready_timeout;
  uint64_t graceful_timeout; /* HERD_SUPERVISOR_NO_GRACE: none */
  int stop_signal;
  uint64_t min_uptime;
  uint64_t backoff_min;
  uint64_t backoff_max;
  int max_restarts;
  uint64_t restart_window;
  int reload_batch;
  herd_log_t* out;
  herd_log_t* err;
  herd_sd_notifier_t* notifier;
  unsigned flags;
  int initial_workers;

  herd__sup_socket_t* sockets;
  int nsockets;
  herd__sup_slot_t** slots; /* [0 .. pub->workers) */
  int cap_slots;
  herd__sup_proc_t* procs; /* every process not yet freed */
  int alive;               /* processes started and not yet exited */
  uv_timer_t timer;        /* restarts, draining, deferred events */
  int timer_init;
  int started;
  unsigned gen;
  int ever_ready;
  int all_ready_sent;
  int last_ready_reported;

  /* Crashes within the window: their times, a ring. */
  uint64_t* crashes;
  size_t ncrashes;
  size_t crash_head;
  size_t cap_crashes;

  /* Reload. */
  int reload_next;
  int reload_inflight;
  int reload_pending;

  /* Stop and close. */
  int stopped_reported;
  int stop_deferred; /* STOPPED is due from the timer */
  /* Work and events the public calls leave to the timer, so that no
   * callback runs inside a call. */
  int reload_due;
  int scaled_due;
  int scaled_report; /* SCALED is owed, once no added slot is pending */
  int stopping_due;
  int stopping_count;
  int stopping_now;
  herd_supervisor_cb stop_cb;
  int closing;
  herd_supervisor_cb close_cb;
  int handles; /* the supervisor's own handles still open */

  /* Sentinel. */
  int sentinel_fd; /* the write end, -1: none */
  pid_t sentinel_pid;
  int sentinel_pidfd;
  herd__watch_t sentinel_watch;
  uv_poll_t sentinel_poll;
  int sentinel_polling;

  /* CLUSTER: the cluster under the pool. */
  herd_cluster_t cluster;
  herd_cluster_settings_t settings;
  herd_stdio_t stdio[4]; /* the next fork's, referenced by settings */
  int cluster_on;
  uint32_t mapped[16]; /* the listen() mappings told already (hashes) */
  int nmapped;

  /* Subreaper. */
  herd_subreaper_t subreaper;
  int subreaper_on;
  pid_t orphan_pid; /* for the ORPHAN event */

  char text[512]; /* the text of the event being sent */
};

/* supervisor.c */
void herd__sup_emit(herd__sup_t* p, herd_supervisor_event_type_t type, int slot,
                    const herd__sup_proc_t* proc, int error, uint64_t delay,
                    const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;
/* "<name>.<slot>[<pid>]", for texts; a static buffer per call site kind
 * (two at a time). */
const char* herd__sup_who(herd__sup_t* p, const herd__sup_proc_t* proc);
/* "exited with status 1", "killed by SIGKILL", "could not start: ...". */
const char* herd__sup_how(const herd__sup_proc_t* proc);
/* "could not start: REASON" into buf; for a script whose interpreter is
 * missing, the interpreter is named, as a shell does ("bad interpreter"). */
void herd__sup_start_failure(herd__sup_t* p, int error, char* buf, size_t size);
/* A slot added by scale-up failed before any process of it was ready:
 * the pool goes back to `slot->index` slots (that slot and those above it
 * are retired), with `why` in the event. No crash is counted. */
void herd__sup_scale_back(herd__sup_t* p, herd__sup_slot_t* slot,
                          const char* why);
/* Sends STATUS= with the counts now (and READY=1 first when `ready`). */
void herd__sup_status(herd__sup_t* p, int ready);
/* Recounts the ready slots; sends ALL_READY once. */
void herd__sup_update(herd__sup_t* p);
/* Arms the supervisor's timer for its earliest due work. */
void herd__sup_arm(herd__sup_t* p);
/* Reports STOPPED (from the timer) once nothing is alive. */
void herd__sup_check_stopped(herd__sup_t* p);
/* The slot's memory goes once it is retired and no process points at it. */
void herd__sup_slot_maybe_free(herd__sup_t* p, herd__sup_slot_t* slot);

/* supervisor_proc.c */
/* Starts a process in `slot` (as its successor with `successor`), set as
 * slot->cur or slot->next. Returns 0, or an error for a start that failed
 * at once (nothing left; the caller decides what follows). */
int herd__proc_start(herd__sup_t* p, herd__sup_slot_t* slot, int successor);
/* Asks the process to stop; with `now`, SIGKILL of its group at once. */
void herd__proc_stop(herd__sup_proc_t* proc, int now);
/* SIGKILL to its group (once). */
void herd__proc_kill(herd__sup_proc_t* proc);
/* Takes the process out of its slot (cur or next). */
void herd__proc_detach(herd__sup_proc_t* proc);
/* Closes what remains open of a process at supervisor close. */
void herd__proc_abandon(herd__sup_proc_t* proc);
/* Its readiness and its end, from either kind. */
void herd__proc_ready(herd__sup_proc_t* proc);
void herd__proc_ended(herd__sup_proc_t* proc, int64_t status, int sig);
/* The process's child handle (the cluster worker's for CLUSTER), or NULL. */
herd_child_t* herd__proc_child(herd__sup_proc_t* proc);
/* CLUSTER: the worker listens; its replacement ended with `status`. */
void herd__proc_listening(herd__sup_proc_t* proc);
void herd__proc_replaced(herd__sup_proc_t* proc, int status);

/* supervisor_cluster.c: the CLUSTER kind. */
/* The cluster under the pool, its settings, the caller's sockets adopted. */
int herd__sup_cluster_start(herd__sup_t* p);
/* Forks the worker of `proc` in `slot` (as the successor of slot->cur's
 * worker with `successor`); out and err are its log pipes, or -1. */
int herd__sup_cluster_spawn(herd__sup_t* p, herd__sup_proc_t* proc,
                            herd__sup_slot_t* slot, int successor, int out,
                            int err);
/* Asks the worker to stop: Node's disconnect, and the stop signal if set. */
void herd__sup_cluster_stop(herd__sup_t* p, herd__sup_proc_t* proc);
/* Closes the cluster once no worker is left (herd__sup_handle_closed()). */
void herd__sup_cluster_close(herd__sup_t* p);

/* supervisor_restart.c */
/* A slot's process crashed (or failed to start, with `error`): counts it,
 * gives up or schedules the restart. `proc` may be NULL for a start that
 * failed at once. */
void herd__restart_crashed(herd__sup_t* p, herd__sup_slot_t* slot,
                           const herd__sup_proc_t* proc, int error);
/* Schedules a restart of the slot after `delay` ms. */
void herd__restart_schedule(herd__sup_t* p, herd__sup_slot_t* slot,
                            uint64_t delay);
/* Starts the slots whose restart is due. */
void herd__restart_run(herd__sup_t* p);
/* Gives up: GAVE_UP, then a graceful stop. */
void herd__restart_give_up(herd__sup_t* p, int error, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* supervisor_reload.c */
void herd__reload_begin(herd__sup_t* p);
/* Starts successors while the batch allows; ends the reload when done. */
void herd__reload_step(herd__sup_t* p);
/* A successor is ready: it takes over its slot. */
void herd__reload_took_over(herd__sup_t* p, herd__sup_proc_t* proc);
/* A successor failed (exited, not ready in time, or could not start). */
void herd__reload_failed(herd__sup_t* p, const herd__sup_proc_t* proc,
                         int error);
/* Ends a reload under way without a verdict (stop). */
void herd__reload_abandon(herd__sup_t* p);

/* supervisor_sockets.c */
/* Sets up the pool's sockets from the options. */
int herd__sockets_init(herd__sup_t* p, const herd_supervisor_options_t* o);
/* Gives a slot its fds (binding its own reuseport sockets). */
int herd__sockets_slot_init(herd__sup_t* p, herd__sup_slot_t* slot);
/* Closes a slot's own sockets (it leaves the reuseport groups). */
void herd__sockets_slot_close(herd__sup_t* p, herd__sup_slot_t* slot);
/* Whether a slot has sockets of its own (reuseport). */
int herd__sockets_slot_owns(herd__sup_t* p, const herd__sup_slot_t* slot);
/* Re-steers every reuseport group to the slots that have a process
 * accepting (not empty, not draining). */
void herd__sockets_steer(herd__sup_t* p);
/* The connections waiting in the slot's own sockets' queues (0 for a slot
 * without own sockets), or a negative error. */
int herd__sockets_queued(herd__sup_t* p, const herd__sup_slot_t* slot);
void herd__sockets_free(herd__sup_t* p);

/* supervisor_sentinel.c */
int herd__sentinel_start(herd__sup_t* p);
/* Tells the sentinel about a worker's group (add) or its end. */
void herd__sentinel_add(herd__sup_t* p, pid_t pgid);
void herd__sentinel_remove(herd__sup_t* p, pid_t pgid);
/* Ends the sentinel; `done` is called from the loop once it is reaped
 * (through herd__sup_handle_closed()). */
void herd__sentinel_close(herd__sup_t* p);

/* supervisor.c: one of the supervisor's handles closed. */
void herd__sup_handle_closed(herd__sup_t* p);
/* supervisor.c: the stop (also after giving up). */
void herd__sup_stop(herd__sup_t* p, int now);
/* supervisor.c: the close goes on if it waits for nothing more. */
void herd__sup_close_step(herd__sup_t* p);

#endif /* HERD_SUPERVISOR_INT_H */
