/* Private declarations of the process module, shared by spawn.c (the child
 * handle), spawn_child.c (creating the process), reaper.c (every wait for a
 * child), exec.c, sync.c and fork.c. Not installed. */
#ifndef HERD_PROCESS_INT_H
#define HERD_PROCESS_INT_H

#include "internal.h"

#include <sys/types.h>

/* The default grace period between kill_signal and SIGKILL (ms). */
#define HERD__KILL_GRACE_DEFAULT 2000
/* The size of the buffer pipes are read into. */
#define HERD__READ_BUF_SIZE (64 * 1024)
/* Node's maxBuffer default, for exec (per stream) and spawn_sync (total). */
#define HERD__MAX_BUFFER_DEFAULT (1024 * 1024)
/* Where the child's fds come from (herd__child_plan_t.src), besides a
 * parent fd: /dev/null, or nothing (the fd stays closed). */
#define HERD__FD_DEVNULL (-1)
#define HERD__FD_CLOSED  (-2)

/* Fills in the fields that exec's and spawn_sync's options share, by name,
 * with herd_spawn_options_t. */
#define HERD__SPAWN_OPTIONS_COPY(so, o)   \
  do {                                    \
    (so)->cwd = (o)->cwd;                 \
    (so)->env = (o)->env;                 \
    (so)->uid = (o)->uid;                 \
    (so)->gid = (o)->gid;                 \
    (so)->shell = (o)->shell;             \
    (so)->timeout = (o)->timeout;         \
    (so)->kill_signal = (o)->kill_signal; \
    (so)->kill_grace = (o)->kill_grace;   \
  } while (0)

/* Output collected by exec and spawn_sync: `len` bytes and a NUL. */
typedef struct {
  char* data;
  size_t len;
  size_t cap;
} herd__buf_t;

/* The parent's end of one HERD_STDIO_PIPE entry. */
typedef struct herd__pipe_s {
  uv_pipe_t handle;
  uv_shutdown_t shutdown_req;
  herd_child_t* child;
  int fd;               /* the child's fd number */
  unsigned open : 1;    /* uv_pipe_init'd and not yet closed */
  unsigned closing : 1; /* uv_close() or a shutdown is under way */
  unsigned reading : 1; /* herd reads it (for the user or to discard) */
  unsigned discard : 1; /* what is read is thrown away */
  unsigned user : 1;    /* the user reads it: never drained by herd */
} herd__pipe_t;

enum {
  HERD__CHILD_RUNNING = (1 << 0),       /* spawned, not yet reaped */
  HERD__CHILD_DONE = (1 << 1),          /* exited, failed or closed early */
  HERD__CHILD_CLOSED = (1 << 2),        /* herd_child_close() was called */
  HERD__CHILD_CHANNEL = (1 << 3),       /* the IPC channel is still open */
  HERD__CHILD_TIMED_OUT = (1 << 4),     /* the timeout expired */
  HERD__CHILD_ABORTED = (1 << 5),       /* herd_abort() ended it */
  HERD__CHILD_ESCALATING = (1 << 6),    /* the timer waits to send SIGKILL */
  HERD__CHILD_UNREF = (1 << 7),         /* herd_child_unref() */
  HERD__CHILD_ERROR_PENDING = (1 << 8), /* spawn_error waits for the loop */
  HERD__CHILD_TIMEOUT_ARMED = (1 << 9), /* the timer runs the timeout */
  HERD__CHILD_CAPTURE = (1 << 10),      /* exec/sync: see herd__spawn() */
  HERD__CHILD_KILL_GROUP = (1 << 11),   /* HERD_SPAWN_KILL_GROUP_ON_EXIT */
  HERD__CHILD_SPAWN_PENDING = (1 << 12) /* spawn_cb waits for the loop */
};

/* Told that the timeout of a capturing spawn expired. */
typedef void (*herd__timeout_cb)(herd_child_t* child);

/* A child herd watches, in reaper.c's registry from its start until it is
 * reaped or handed to the reaper thread. */
typedef struct herd__watch_s {
  struct herd__watch_s* next;
  struct herd__watch_s* prev;
  pid_t pid;
  int pidfd;
  int linked;
} herd__watch_t;

typedef struct herd_child_private_s herd_child_private_t;

struct herd_child_private_s {
  herd_exit_cb exit_cb;
  herd_child_error_cb error_cb;
  herd_child_close_cb close_cb;
  herd_child_spawn_cb spawn_cb;
  herd_child_read_cb read_cb;
  herd__timeout_cb timeout_cb;
  unsigned flags;
  int spawn_error;
  int pidfd;
  herd__watch_t watch;
  int handles; /* libuv handles not yet closed, besides the timer */
  uv_poll_t poll;
  uv_timer_t timer;
  uv_timer_t spawn_timer; /* delivers spawn_cb; initialised only with one */
  uint64_t timeout;
  uint64_t kill_grace;
  int kill_signal;
  herd_abort_t* abort;
  struct herd_child_private_s* abort_next;
  struct herd_child_private_s* abort_prev;
  herd_child_t* child;
  char* buf;   /* HERD__READ_BUF_SIZE bytes in this same block, or NULL
                  without pipes */
  char** argv; /* child->spawnargs, in this same block; argv[-1] is a free
                  slot for the child (herd__child_plan_t.argv) */
  int npipes;
  herd__pipe_t pipes[]; /* one per child fd, fd-indexed; open=0 if unused */
};

/* spawn.c: herd_spawn() for exec and the sync forms, which capture the
 * child's output. With `capture`, as Node's exec and spawnSync do, a kill
 * by timeout, abort or herd__child_terminate() also closes the child's
 * pipes, so a grandchild that holds them open cannot delay the result; and
 * the timeout runs until the pipes have closed, not only until exit.
 * timeout_cb (may be NULL) learns that the timeout expired. */
int herd__spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
                const char* const* args, const herd_spawn_options_t* options,
                int capture, herd__timeout_cb timeout_cb);

/* spawn.c: kill_signal now, SIGKILL after kill_grace if still alive (sets
 * child->killed); with capture, the pipes are closed as well, even after
 * exit. */
void herd__child_terminate(herd_child_t* child);

/* exec.c: an empty buffer with room for `cap` bytes and the NUL. Returns 0
 * or UV_ENOMEM. */
int herd__buf_init(herd__buf_t* b, size_t cap);
/* exec.c: appends `len` bytes and keeps the NUL after them. The buffer is
 * never grown beyond what `max` bytes of content need (max may be SIZE_MAX).
 * Returns 0 or UV_ENOMEM, which leaves the buffer as it was. */
int herd__buf_append(herd__buf_t* b, const char* data, size_t len, size_t max);

/* What the new process does between clone() and exec, decided by the
 * parent beforehand: the child runs on a borrowed stack in the parent's
 * memory and may not allocate. */
typedef struct {
  const char* file;  /* a path, or (no '/') a name looked up in `path` */
  const char* path;  /* the PATH searched for `file` */
  char** argv;       /* argv[-1] is a free slot, for running a script
                        without #! through /bin/sh as execvp() does; that
                        also points argv[0] into the child's stack, which
                        the parent must put back after the spawn */
  char* const* envp; /* the child's environment */
  char* listen_pid;  /* room for 20 digits: the child writes its pid here
                        (the value of LISTEN_PID=); NULL: none */
  const char* cwd;   /* NULL: the parent's */
  unsigned flags;    /* herd_spawn_flags_t */
  uid_t uid;         /* with HERD_SPAWN_SETUID */
  gid_t gid;         /* with HERD_SPAWN_SETGID */
  int pdeath_signal; /* 0: none */
  pid_t parent_pid;  /* for the parent-death check */
  int nfds;          /* the child gets fds 0..nfds-1 and no other */
  int* src;          /* nfds entries: the parent fd that becomes fd i (i itself:
                        inherited), HERD__FD_DEVNULL or HERD__FD_CLOSED. The child
                        rewrites it (sources it moves out of its way): the parent
                        must not read it after the spawn */
  int err;           /* out: errno of the step that failed, 0 after exec */
} herd__child_plan_t;

/* spawn_child.c: starts the process `plan` describes, with
 * clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) and no exit signal until
 * exec. Returns once the child has called exec (0, *pid and *pidfd set) or
 * failed (a negative errno; the failed child is reaped). Call it between
 * herd__watch_gate_enter() and herd__watch_gate_leave(). */
int herd__spawn_process(herd__child_plan_t* plan, pid_t* pid, int* pidfd);

/* reaper.c: called before every spawn. A SIGCHLD set to SIG_IGN, or with
 * SA_NOCLDWAIT, makes the kernel discard the exit status of every child at
 * once; herd puts the default back (keeping a handler, if any), as libuv's
 * own SIGCHLD handler does under Node. */
void herd__reap_prepare(void);
/* reaper.c: the registry of watched children. A spawn holds the gate (a
 * read lock: spawns run in parallel) from before clone() until the child
 * is registered, so the subreaper, which holds it exclusively, never sees
 * a child of herd's that it cannot recognise. */
void herd__watch_gate_enter(void);
void herd__watch_gate_leave(void);
void herd__watch_add(herd__watch_t* w, pid_t pid, int pidfd);
/* Reaps the watched child if it has exited, and unregisters it. Returns 0
 * and fills *status and *sig as herd_exit_cb receives them, UV_EAGAIN
 * while it runs, or another negative errno when its status is lost (some
 * other code reaped it, and the kernel is older than 6.15, which keeps the
 * status for the pidfd: PIDFD_INFO_EXIT). */
int herd__watch_reap(herd__watch_t* w, int64_t* status, int* sig);
/* Unregisters a child that will not be reaped through `w`. */
void herd__watch_drop(herd__watch_t* w);

/* reaper.c: reaps the child behind `pidfd` if it has exited. Returns 0 and
 * fills *status and *sig (either may be NULL), UV_EAGAIN while it runs, or
 * another negative errno (-ECHILD: it was reaped elsewhere). */
int herd__reap(int pidfd, int64_t* status, int* sig);
/* reaper.c: waits for the child behind `pidfd`, which is exiting or about
 * to, and reaps it. The pidfd stays open. */
void herd__reap_wait(int pidfd);
/* reaper.c: whether the child behind `pidfd` has exited and not been
 * reaped (0), still runs (UV_EAGAIN), or was reaped (-ECHILD), without
 * reaping it. */
int herd__reap_peek(int pidfd);
/* reaper.c: for HERD_SPAWN_KILL_GROUP_ON_EXIT: if the child behind `pidfd`
 * has exited and is not reaped yet (its zombie holds `pgid`, its pid, so
 * that no other group can take that id), SIGKILLs process group `pgid`.
 * Returns herd__reap_peek()'s answer. */
int herd__reap_kill_group(int pidfd, pid_t pgid);
/* reaper.c: SIGKILLs the child (and with `pgid` non-zero its process
 * group), reaps it and closes `pidfd`: for a child that cannot be watched. */
void herd__reap_kill(int pidfd, pid_t pgid);
/* reaper.c: takes `pidfd` of a child nobody watches any more; a process-wide
 * thread reaps the child when it exits and closes the pidfd (with `pgid`
 * non-zero, SIGKILLing that process group between the exit and the reap, as
 * herd__reap_kill_group()). When no thread can be had, the child is killed
 * and reaped at once instead (no zombie is ever left). Allocates nothing. */
void herd__reap_later(int pidfd, pid_t pgid);

/* spawn_names.c: whether `signum` names a signal (1 .. NSIG-1). */
int herd__signal_valid(int signum);
/* spawn.c: what stdio entry `fd` of a spawn with `stdio`/`count` (as given
 * to herd_spawn(), 0 entries meaning three pipes) really is, Node's
 * defaults applied: HERD_STDIO_PIPE (for OVERLAPPED too, and DEFAULT below
 * fd 3), IGNORE (for DEFAULT from fd 3 on, and fds beyond the entries),
 * INHERIT, FD or IPC. */
herd_stdio_kind_t herd__stdio_kind(const herd_stdio_t* stdio, int count,
                                   int fd);
/* spawn.c: how many fds a spawn with `count` stdio entries gives the child
 * from its entries (Node completes them to three). */
int herd__stdio_count(int count);

#endif /* HERD_PROCESS_INT_H */
