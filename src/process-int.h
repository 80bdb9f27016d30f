/* Private declarations of the process module, shared by spawn.c, exec.c,
 * sync.c and reaper.c. Not installed. */
#ifndef HERD_PROCESS_INT_H
#define HERD_PROCESS_INT_H

#include "internal.h"

/* The default grace period between kill_signal and SIGKILL (ms). */
#define HERD__KILL_GRACE_DEFAULT 2000
/* The size of the buffer pipes are read into. */
#define HERD__READ_BUF_SIZE (64 * 1024)
/* Node's maxBuffer default, for exec (per stream) and spawn_sync (total). */
#define HERD__MAX_BUFFER_DEFAULT (1024 * 1024)

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
  HERD__CHILD_RUNNING = (1 << 0),      /* spawned, not yet reaped */
  HERD__CHILD_DONE = (1 << 1),         /* exited, failed or closed early */
  HERD__CHILD_CLOSED = (1 << 2),       /* herd_child_close() was called */
  HERD__CHILD_CHANNEL = (1 << 3),      /* the IPC channel is still open */
  HERD__CHILD_TIMED_OUT = (1 << 4),    /* the timeout expired */
  HERD__CHILD_ABORTED = (1 << 5),      /* herd_abort() ended it */
  HERD__CHILD_ESCALATING = (1 << 6),   /* the timer waits to send SIGKILL */
  HERD__CHILD_UNREF = (1 << 7),        /* herd_child_unref() */
  HERD__CHILD_ERROR_PENDING = (1 << 8) /* spawn_error waits for the loop */
};

typedef struct herd_child_private_s herd_child_private_t;

struct herd_child_private_s {
  herd_exit_cb exit_cb;
  herd_child_error_cb error_cb;
  herd_child_close_cb close_cb;
  herd_child_read_cb read_cb;
  unsigned flags;
  int spawn_error;
  int pidfd;
  int handles; /* libuv handles not yet closed, besides the timer */
  uv_poll_t poll;
  uv_timer_t timer;
  uint64_t timeout;
  uint64_t kill_grace;
  int kill_signal;
  herd_abort_t* abort;
  struct herd_child_private_s* abort_next;
  struct herd_child_private_s* abort_prev;
  herd_child_t* child;
  char* buf; /* HERD__READ_BUF_SIZE bytes, allocated on first read */
  int npipes;
  herd__pipe_t pipes[]; /* one per child fd, fd-indexed; open=0 if unused */
};

/* exec.c: appends `len` bytes and keeps the NUL after them. The buffer is
 * never grown beyond what `max` bytes of content need (max may be SIZE_MAX).
 * Returns 0 or UV_ENOMEM, which leaves the buffer as it was. */
int herd__buf_append(herd__buf_t* b, const char* data, size_t len, size_t max);

/* spawn.c: `file` and `args` joined by spaces (malloc'd; NULL without
 * memory): Node's shell command line and exec's result.cmd. */
char* herd__join_command(const char* file, const char* const* args);

/* spawn.c: whether the child's timeout expired (for exec and spawn_sync). */
int herd__child_timed_out(const herd_child_t* child);

/* spawn.c: kill_signal now, SIGKILL after kill_grace if still alive; sets
 * child->killed. */
void herd__child_terminate(herd_child_t* child);

/* reaper.c: takes `pidfd` of the still-running child `pid`; a background
 * thread reaps the child when it exits and closes the pidfd. */
int herd__reaper_adopt(pid_t pid, int pidfd);

#endif /* HERD_PROCESS_INT_H */
