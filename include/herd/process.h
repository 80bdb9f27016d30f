/* child_process for C: spawn, exec, exec_file and their blocking forms.
 * Included by <herd.h>; do not include directly. */
#ifndef HERD_PROCESS_H
#define HERD_PROCESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct herd_child_s herd_child_t;
typedef struct herd_abort_s herd_abort_t;
typedef struct herd_ipc_s herd_ipc_t;

/* What one of the child's file descriptors is connected to. The zero value
 * is HERD_STDIO_PIPE, Node's default. */
typedef enum {
  HERD_STDIO_PIPE = 0, /* a new pipe, readable/writable by the parent */
  HERD_STDIO_IGNORE,   /* /dev/null */
  HERD_STDIO_INHERIT,  /* the parent's fd with the same number */
  HERD_STDIO_FD,       /* an existing fd of the parent (`fd` below) */
  HERD_STDIO_IPC       /* an IPC channel (at most one entry) */
} herd_stdio_kind_t;

typedef struct {
  herd_stdio_kind_t kind;
  int fd; /* with HERD_STDIO_FD */
} herd_stdio_t;

#define HERD_STDIO_MAX 16

typedef enum {
  HERD_SPAWN_DETACHED = (1 << 0),  /* child leads a new session (setsid) */
  HERD_SPAWN_SETUID = (1 << 1),    /* use `uid` */
  HERD_SPAWN_SETGID = (1 << 2),    /* use `gid` */
  HERD_SPAWN_SHELL = (1 << 3),     /* run through `shell` (default /bin/sh) */
  HERD_SPAWN_ENV_EXTEND = (1 << 4) /* `env` adds to the parent's environment */
} herd_spawn_flags_t;

/* exit_cb: the child exited. Exactly one of the two is meaningful: when the
 * child ended by a signal, term_signal is that signal and exit_status is -1;
 * otherwise term_signal is 0 and exit_status is the exit code. */
typedef void (*herd_exit_cb)(herd_child_t* child, int64_t exit_status,
                             int term_signal);
/* error_cb: the child could not be spawned (ENOENT, EACCES, EMFILE, ...), or
 * killing it failed, or it was aborted (UV_ECANCELED). Always reported from
 * the loop, never from inside herd_spawn(); close_cb still follows. */
typedef void (*herd_child_error_cb)(herd_child_t* child, int err);
/* close_cb: the child exited (or never started) and every stdio pipe and the
 * IPC channel have closed. Last callback; the handle may be reused after. */
typedef void (*herd_child_close_cb)(herd_child_t* child);

typedef struct herd_spawn_options_s {
  const char* cwd;        /* NULL: the parent's */
  const char* const* env; /* NULL-terminated "K=V"; NULL: the parent's */
  const char* argv0;      /* argv[0] for the child; NULL: `file` */
  const herd_stdio_t* stdio;
  int stdio_count; /* 0: three pipes, like Node's 'pipe' */
  unsigned flags;  /* herd_spawn_flags_t */
  uid_t uid;
  gid_t gid;
  const char* shell;   /* with HERD_SPAWN_SHELL; NULL: /bin/sh */
  uint64_t timeout;    /* ms; 0: none. On expiry the child gets kill_signal */
  int kill_signal;     /* 0: SIGTERM */
  uint64_t kill_grace; /* ms after kill_signal before SIGKILL; 0: 2000 */
  herd_abort_t* abort; /* Node's AbortSignal; NULL: none */
  herd_exit_cb exit_cb;
  herd_child_error_cb error_cb;
  herd_child_close_cb close_cb;
} herd_spawn_options_t;

/* Public fields are read-only; the rest is private. */
struct herd_child_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  pid_t pid;  /* 0 when spawning failed */
  int killed; /* herd_child_kill() succeeded */
  int exited; /* exit_cb has run */
  int64_t exit_status;
  int term_signal;
  herd_ipc_t* channel; /* the IPC channel, or NULL */
  /* private */
  struct herd_child_private_s* priv;
};

/* Spawns `file` with `args` (a NULL-terminated argv without argv[0]; NULL for
 * none). `file` is looked up in PATH (the child's environment's PATH, else the
 * parent's) when it has no slash. Returns 0 and fills child->pid, or a
 * negative error for misuse (UV_EINVAL) and out-of-memory (UV_ENOMEM).
 * Failures to start the program (ENOENT, EACCES, EMFILE, ...) are NOT
 * returned: they arrive through error_cb, followed by close_cb, as in Node.
 * The child handle is alive until close_cb runs. */
int herd_spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
               const char* const* args, const herd_spawn_options_t* options);

/* The parent's end of the child's fd `fd` when it is a HERD_STDIO_PIPE, for
 * writing with uv_write()/uv_try_write() or reading with uv_read_start();
 * NULL otherwise or once that pipe has closed. Prefer herd_child_read_start()
 * for reading: it closes the pipe at EOF, which close_cb waits for. */
uv_stream_t* herd_child_stream(herd_child_t* child, int fd);

/* read_cb gets data read from the child's fd; nread < 0 is the end
 * (UV_EOF) or an error, after which the pipe is closed. `buf` belongs to
 * herd and is valid only during the call. */
typedef void (*herd_child_read_cb)(herd_child_t* child, int fd, const char* buf,
                                   ssize_t nread);
int herd_child_read_start(herd_child_t* child, int fd, herd_child_read_cb cb);
int herd_child_read_stop(herd_child_t* child, int fd);

/* Closes the child's writable pipe `fd` (stdin: 0) once queued writes are
 * flushed, so the child reads EOF. */
int herd_child_end(herd_child_t* child, int fd);

/* Sends `signum` (0: SIGTERM) to the child. Returns 0 and sets child->killed,
 * or UV_ESRCH when the child has already exited (Node's kill() -> false),
 * or another negative errno. */
int herd_child_kill(herd_child_t* child, int signum);

void herd_child_ref(herd_child_t* child);
void herd_child_unref(herd_child_t* child);

/* Stops watching the child before it exits: pipes and channel are closed,
 * no exit_cb will come, close_cb runs from the loop. The child keeps running
 * and is still reaped (no zombie) when it exits. */
void herd_child_close(herd_child_t* child);

/* An abort controller, Node's AbortController: herd_abort() ends every child
 * and exec request registered with it (kill_signal, error UV_ECANCELED). */
struct herd_abort_s {
  int aborted;
  void* head; /* private: registered operations */
};
void herd_abort_init(herd_abort_t* ab);
void herd_abort(herd_abort_t* ab);

/* exec / exec_file: run to completion, capturing output. */
typedef struct herd_exec_s herd_exec_t;

typedef struct herd_exec_options_s {
  const char* cwd;
  const char* const* env;
  unsigned flags; /* HERD_SPAWN_ENV_EXTEND, DETACHED, SETUID/SETGID */
  uid_t uid;
  gid_t gid;
  const char*
      shell;        /* exec: NULL = /bin/sh; exec_file: with HERD_SPAWN_SHELL */
  uint64_t timeout; /* ms, 0: none */
  int kill_signal;  /* 0: SIGTERM */
  uint64_t kill_grace;
  size_t max_buffer; /* per stream; 0: 1 MiB (1024 * 1024) */
  herd_abort_t* abort;
} herd_exec_options_t;

/* What an exec produced. Buffers belong to herd and are freed after the
 * callback returns, unless the callback takes them (sets the pointer NULL). */
typedef struct herd_exec_result_s {
  int error;         /* 0, or: a spawn error (UV_ENOENT, ...),
                        HERD_EMAXBUFFER, UV_ETIMEDOUT, UV_ECANCELED, or
                        HERD_ECMDFAILED (non-zero exit or killed by a signal) */
  int64_t code;      /* exit code, -1 when a signal ended it or no start */
  int signal;        /* the signal that ended it, 0 if none */
  int killed;        /* herd killed it (timeout, max_buffer, abort) */
  int max_buffer_fd; /* with HERD_EMAXBUFFER: 1 (stdout) or 2 (stderr) */
  const char* cmd;   /* the command line, for messages */
  char* out;         /* stdout bytes, NUL-terminated for convenience */
  size_t out_len;
  char* err; /* stderr bytes, NUL-terminated */
  size_t err_len;
} herd_exec_result_t;

typedef void (*herd_exec_cb)(herd_exec_t* req, herd_exec_result_t* result);

struct herd_exec_s {
  void* data;
  herd_child_t child;
  /* private */
  struct herd_exec_private_s* priv;
};

/* Runs `command` with the shell (`/bin/sh -c command`). cb runs exactly once
 * unless an error is returned. */
int herd_exec(uv_loop_t* loop, herd_exec_t* req, const char* command,
              const herd_exec_options_t* options, herd_exec_cb cb);
/* Runs `file` with `args` directly, never through a shell unless
 * HERD_SPAWN_SHELL is set. */
int herd_exec_file(uv_loop_t* loop, herd_exec_t* req, const char* file,
                   const char* const* args, const herd_exec_options_t* options,
                   herd_exec_cb cb);

/* Blocking forms; they run a private loop and leave the caller's untouched. */
typedef struct herd_spawn_sync_options_s {
  const char* cwd;
  const char* const* env;
  const char* argv0;
  const herd_stdio_t* stdio; /* 0 entries: pipes (exec_sync: stderr inherit) */
  int stdio_count;
  unsigned flags;
  uid_t uid;
  gid_t gid;
  const char* shell;
  const void* input; /* written to stdin, then stdin is closed */
  size_t input_len;
  uint64_t timeout; /* ms -> UV_ETIMEDOUT */
  int kill_signal;
  uint64_t kill_grace;
  size_t max_buffer; /* all pipes together; 0: 1 MiB -> UV_ENOBUFS */
} herd_spawn_sync_options_t;

typedef struct herd_sync_result_s {
  int error; /* 0, spawn error, UV_ETIMEDOUT, UV_ENOBUFS, or for
                exec_sync/exec_file_sync HERD_ECMDFAILED */
  pid_t pid;
  int64_t status; /* exit code; -1 when a signal ended it */
  int signal;
  char* out; /* NUL-terminated; free with herd_sync_result_free() */
  size_t out_len;
  char* err;
  size_t err_len;
} herd_sync_result_t;

/* Return the same value as result->error. */
int herd_spawn_sync(const char* file, const char* const* args,
                    const herd_spawn_sync_options_t* options,
                    herd_sync_result_t* result);
int herd_exec_sync(const char* command,
                   const herd_spawn_sync_options_t* options,
                   herd_sync_result_t* result);
int herd_exec_file_sync(const char* file, const char* const* args,
                        const herd_spawn_sync_options_t* options,
                        herd_sync_result_t* result);
void herd_sync_result_free(herd_sync_result_t* result);

#ifdef __cplusplus
}
#endif
#endif /* HERD_PROCESS_H */
