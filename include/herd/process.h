/* child_process for C: spawn, exec, exec_file and their blocking forms.
 * Included by <herd.h>; do not include directly. docs/process.md is the
 * reference with examples; the comments here are the contract.
 *
 * A child is started with posix_spawn() (fork() + exec when uid/gid are
 * set), watched through a pidfd on the caller's loop, and reaped with
 * waitid(P_PIDFD): herd installs no SIGCHLD handler and never waits for a
 * process it did not start. */
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

/* herd_spawn_options_t.flags. */
typedef enum {
  HERD_SPAWN_DETACHED = (1 << 0),  /* child leads a new session (setsid) */
  HERD_SPAWN_SETUID = (1 << 1),    /* use `uid` */
  HERD_SPAWN_SETGID = (1 << 2),    /* use `gid` */
  HERD_SPAWN_SHELL = (1 << 3),     /* run through `shell` (default /bin/sh) */
  HERD_SPAWN_ENV_EXTEND = (1 << 4) /* `env` adds to the parent's environment */
} herd_spawn_flags_t;

/* exit_cb: the child exited. Exactly one of the two is meaningful: when the
 * child ended by a signal, term_signal is that signal and exit_status is -1;
 * otherwise term_signal is 0 and exit_status is the exit code. Runs at most
 * once, never after herd_child_close(). Pipes may still hold unread output:
 * close_cb says when everything is over. */
typedef void (*herd_exit_cb)(herd_child_t* child, int64_t exit_status,
                             int term_signal);
/* error_cb: the child could not be spawned (UV_ENOENT, UV_EACCES, UV_EMFILE,
 * UV_ENFILE, UV_EAGAIN, ...; pid stays 0 and no exit_cb comes), or it was
 * aborted with herd_abort() (UV_ECANCELED, delivered just before its exit_cb).
 * Always reported from the loop, never from inside herd_spawn(); close_cb
 * still follows. */
typedef void (*herd_child_error_cb)(herd_child_t* child, int err);
/* close_cb: the child exited (or never started, or herd_child_close() was
 * called) and every stdio pipe and the IPC channel have closed. Always
 * comes, exactly once, from the loop. Last callback; the handle may be
 * reused or freed from here on. */
typedef void (*herd_child_close_cb)(herd_child_t* child);

/* Options of herd_spawn(); all-zero is Node's defaults. Pointers need only
 * stay valid during the herd_spawn() call. */
typedef struct herd_spawn_options_s {
  const char* cwd;           /* NULL: the parent's */
  const char* const* env;    /* NULL-terminated "K=V"; NULL: the parent's */
  const char* argv0;         /* argv[0] for the child; NULL: `file` */
  const herd_stdio_t* stdio; /* the child's fds 0..stdio_count-1; any other
                                fd of the parent is closed in the child */
  int stdio_count;           /* 0: three pipes, like Node's 'pipe'; at most
                                HERD_STDIO_MAX */
  unsigned flags;            /* herd_spawn_flags_t */
  uid_t uid;
  gid_t gid;
  const char* shell;   /* with HERD_SPAWN_SHELL; NULL: /bin/sh */
  uint64_t timeout;    /* ms; 0: none. On expiry the child gets kill_signal
                          and `killed` is set */
  int kill_signal;     /* for timeout and abort; 0: SIGTERM */
  uint64_t kill_grace; /* ms after kill_signal (timeout or abort) before
                          SIGKILL, if the child is still alive; 0: 2000 */
  herd_abort_t* abort; /* Node's AbortSignal; NULL: none */
  herd_exit_cb exit_cb;
  herd_child_error_cb error_cb;
  herd_child_close_cb close_cb;
} herd_spawn_options_t;

/* A child process. Caller-allocated; public fields are read-only; the rest
 * is private. Valid from herd_spawn() until close_cb. */
struct herd_child_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  pid_t pid;  /* 0 when spawning failed */
  int killed; /* a signal was sent: herd_child_kill(), timeout, abort */
  int exited; /* the child was reaped (set just before exit_cb) */
  int64_t exit_status; /* as passed to exit_cb */
  int term_signal;
  herd_ipc_t* channel; /* the IPC channel, or NULL */
  /* private */
  struct herd_child_private_s* priv;
};

/* Spawns `file` with `args` (a NULL-terminated argv without argv[0]; NULL for
 * none). `file` is looked up in PATH (the child's environment's PATH, else the
 * parent's, else /bin:/usr/bin) when it has no slash, as execvp() does.
 * With HERD_SPAWN_SHELL it runs `<shell> -c "<file> <args joined by
 * spaces>"` instead. Returns 0 and fills child->pid, or a negative error for
 * misuse (UV_EINVAL: NULL loop/child/file, stdio_count out of range, two IPC
 * entries, a negative HERD_STDIO_FD fd, an unknown stdio kind) and
 * out-of-memory (UV_ENOMEM); with an error no callback runs. Failures to start
 * the program (UV_ENOENT, UV_EACCES, UV_EMFILE, a bad cwd, ...) are NOT
 * returned: they arrive through error_cb, followed by close_cb, as in Node.
 * child->data is preserved; the child handle is alive until close_cb runs. */
int herd_spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
               const char* const* args, const herd_spawn_options_t* options);

/* The parent's end of the child's fd `fd` when it is a HERD_STDIO_PIPE, for
 * writing with uv_write()/uv_try_write() or reading with uv_read_start();
 * NULL otherwise or once that pipe has closed. Prefer herd_child_read_start()
 * for reading: it closes the pipe at EOF, which close_cb waits for. */
uv_stream_t* herd_child_stream(herd_child_t* child, int fd);

/* read_cb gets data read from the child's fd; nread < 0 is the end
 * (UV_EOF) or an error, after which the pipe is closed (buf is NULL then).
 * `buf` belongs to herd (one 64 KiB buffer per child, so memory stays
 * bounded however much the child writes) and is valid only during the
 * call. */
typedef void (*herd_child_read_cb)(herd_child_t* child, int fd, const char* buf,
                                   ssize_t nread);
/* Starts reading the child's pipe `fd`. One callback per child: the last
 * one given is used for all its pipes. Returns 0, or UV_EINVAL when `fd` is
 * not an open pipe (or cb is NULL), or what uv_read_start() returns. */
int herd_child_read_start(herd_child_t* child, int fd, herd_child_read_cb cb);
/* Stops reading `fd` (back-pressure: the child blocks once the pipe is
 * full). Returns 0 or UV_EINVAL. As in Node, a pipe the user once read is
 * never drained by herd: while it is stopped, close_cb waits until reading
 * resumes or herd_child_end() closes it. */
int herd_child_read_stop(herd_child_t* child, int fd);

/* Ends the child's pipe `fd`. For stdin (and fds >= 3): shuts the write side
 * down once queued writes are flushed, so the child reads EOF; the pipe then
 * closes (a pipe herd is reading closes at its EOF instead). For stdout and
 * stderr, which the parent only reads: closes it now. This is also how a
 * stream read directly with uv_read_start() is closed after its EOF (never
 * uv_close() a child's stream). Returns 0, or UV_EINVAL when `fd` is not an
 * open pipe. After exit, stdin closes by itself (as Node destroys it) and
 * unread readable pipes are drained and closed. */
int herd_child_end(herd_child_t* child, int fd);

/* Sends `signum` (0: SIGTERM) to the child, through its pidfd so a recycled
 * pid can never be hit. Returns 0 and sets child->killed, or UV_ESRCH when
 * the child has already exited, never started or was closed (Node's kill()
 * -> false), or another negative errno (UV_EINVAL for a bad signal). No
 * escalation: only timeout and abort follow up with SIGKILL. */
int herd_child_kill(herd_child_t* child, int signum);

/* Node's ref()/unref(): an unref'd child does not keep uv_run() alive. As in
 * Node this covers the process itself (and its timeout timer), not its stdio
 * pipes or IPC channel: use HERD_STDIO_IGNORE/INHERIT (or uv_unref() on
 * herd_child_stream()) for a child that should not hold the loop. The child
 * is still reaped when it exits; exit_cb runs if the loop is running. */
void herd_child_ref(herd_child_t* child);
void herd_child_unref(herd_child_t* child);

/* Stops watching the child before it exits: pipes and channel are closed,
 * no exit_cb (nor pending error_cb) will come, close_cb runs from the loop.
 * The child keeps running and is still reaped (no zombie) when it exits, by
 * a small process-wide thread that holds its pidfd, so the loop itself can
 * be closed right after close_cb. Safe to call more than once, and after
 * exit (then it only closes the pipes). */
void herd_child_close(herd_child_t* child);

/* An abort controller, Node's AbortController: herd_abort() ends every child
 * and exec request registered with it (through the `abort` option): each gets
 * its kill_signal, SIGKILL kill_grace ms later if still alive, and error
 * UV_ECANCELED (error_cb just before exit_cb; exec's result.error). Spawning
 * with an already aborted controller starts nothing and reports
 * UV_ECANCELED through error_cb. A controller needs no cleanup; it must
 * outlive the children registered with it or be aborted first. */
struct herd_abort_s {
  int aborted;
  void* head; /* private: registered operations */
};
void herd_abort_init(herd_abort_t* ab);
void herd_abort(herd_abort_t* ab);

/* exec / exec_file: run to completion, capturing output. The child gets three
 * pipes: stdout and stderr are collected, stdin stays open (write to it with
 * herd_child_stream(&req->child, 0)) until the child exits. */
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
  size_t max_buffer; /* per stream; 0: 1 MiB (1024 * 1024); SIZE_MAX: no
                        limit (Node's Infinity) */
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

/* Runs `command` with the shell (`/bin/sh -c command`, or options->shell).
 * cb runs exactly once, from the loop, unless an error is returned (UV_EINVAL
 * for a NULL argument, UV_ENOMEM). Output beyond max_buffer on either stream
 * ends the command: that stream is cut at exactly max_buffer bytes, the child
 * gets kill_signal, and the result says HERD_EMAXBUFFER with max_buffer_fd.
 * A timeout kills it likewise (UV_ETIMEDOUT, killed=1, signal set, code -1);
 * a non-zero exit or a signal gives HERD_ECMDFAILED with code and signal.
 * The request's `child` is a full herd_child_t (pid, kill) while it runs;
 * the request may be reused from cb. */
int herd_exec(uv_loop_t* loop, herd_exec_t* req, const char* command,
              const herd_exec_options_t* options, herd_exec_cb cb);
/* Runs `file` with `args` directly, never through a shell unless
 * HERD_SPAWN_SHELL is set: arguments reach the program verbatim. Otherwise
 * as herd_exec(); result->cmd is `file` and `args` joined by spaces. */
int herd_exec_file(uv_loop_t* loop, herd_exec_t* req, const char* file,
                   const char* const* args, const herd_exec_options_t* options,
                   herd_exec_cb cb);

/* Blocking forms; they run a private loop and leave the caller's untouched
 * (none of its callbacks run meanwhile). */
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

/* Runs `file` (as herd_spawn() would, options NULL for defaults) to the end
 * and fills `result`; returns the same value as result->error: 0 (whatever
 * the exit status), a spawn error (UV_ENOENT, ...; status -1, pid 0),
 * UV_ETIMEDOUT (killed by the timeout), UV_ENOBUFS (the pipes together
 * produced more than max_buffer: the output is cut there and the child
 * killed), or UV_EINVAL (also for input_len above UINT_MAX, the most one
 * uv_write() takes) or UV_ENOMEM. `input` is written to stdin, which is then
 * closed (closed at once without input). out/err hold what fds 1 and 2
 * produced when they are pipes (NUL-terminated, possibly empty), NULL
 * otherwise; output of pipes >= 3 is read and dropped. Always free the
 * result with herd_sync_result_free(), whatever the return. */
int herd_spawn_sync(const char* file, const char* const* args,
                    const herd_spawn_sync_options_t* options,
                    herd_sync_result_t* result);
/* Node's execSync: `/bin/sh -c command`. With stdio unset, stdin and stdout
 * are pipes and the child's stderr is the parent's (result->err is NULL).
 * Also fails with HERD_ECMDFAILED on a non-zero status or a signal; status,
 * signal, out and err are filled in all cases. */
int herd_exec_sync(const char* command,
                   const herd_spawn_sync_options_t* options,
                   herd_sync_result_t* result);
/* Node's execFileSync: as herd_exec_sync() but runs `file` with `args`
 * directly, without a shell unless HERD_SPAWN_SHELL is set. */
int herd_exec_file_sync(const char* file, const char* const* args,
                        const herd_spawn_sync_options_t* options,
                        herd_sync_result_t* result);
/* Frees out and err and sets them NULL; safe to call twice. */
void herd_sync_result_free(herd_sync_result_t* result);

#ifdef __cplusplus
}
#endif
#endif /* HERD_PROCESS_H */
