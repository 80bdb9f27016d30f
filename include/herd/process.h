/* child_process for C: spawn, exec, exec_file and their blocking forms.
 * Included by <herd.h>; do not include directly. docs/process.md is the
 * reference with examples; the comments here are the contract.
 *
 * A child is started with clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), the
 * way posix_spawn() works inside, with herd's own code between clone and
 * exec; it is watched through its pidfd on the caller's loop and reaped
 * with waitid(P_PIDFD). herd installs no SIGCHLD handler (except
 * herd_subreaper_start()) and never waits for a process it did not start.
 * It does put SIGCHLD back to its default before a spawn when the program
 * ignores it (SIG_IGN) or set SA_NOCLDWAIT, which would make the kernel
 * discard every exit status: libuv's own SIGCHLD handler replaces SIG_IGN
 * likewise under Node. */
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
/* The most fds herd_spawn_options_t.listen_fds may hold. */
#define HERD_LISTEN_FDS_MAX 64

/* herd_spawn_options_t.flags. */
typedef enum {
  HERD_SPAWN_DETACHED = (1 << 0),   /* child leads a new session (setsid),
                                       Node's `detached` */
  HERD_SPAWN_SETUID = (1 << 1),     /* use `uid` */
  HERD_SPAWN_SETGID = (1 << 2),     /* use `gid` */
  HERD_SPAWN_SHELL = (1 << 3),      /* run through `shell` (default /bin/sh) */
  HERD_SPAWN_ENV_EXTEND = (1 << 4), /* `env` adds to the parent's environment */
  HERD_SPAWN_PROCESS_GROUP = (1 << 5) /* child leads a new process group in
                                         the parent's session (setpgid(0,
                                         0)), so kill(-pid, sig) reaches it
                                         and everything it starts; implied
                                         by HERD_SPAWN_DETACHED */
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
  /* Linux's parent-death signal (prctl(PR_SET_PDEATHSIG)), set in the child
   * before exec: the child gets this signal when the thread that called
   * herd_spawn() ends (with the process or alone: spawn from a thread that
   * lives as long as the child). If the parent died before the child could
   * ask for it, the child sends it to itself, as systemd's children do.
   * Cleared by the kernel when the child runs a set-user-ID program. 0:
   * none. */
  int parent_death_signal;
  /* systemd's socket activation (sd_listen_fds(3)): listen_fds[i] (fds of
   * the parent, any number) becomes the child's fd 3 + i, and the child's
   * environment gets LISTEN_FDS=<listen_fds_count>, LISTEN_PID=<the
   * child's own pid> (written by the child itself before exec) and, when
   * listen_fd_names is set, LISTEN_FDNAMES=<the names joined by ':'>. Any
   * LISTEN_FDS, LISTEN_PID or LISTEN_FDNAMES of the parent's environment
   * or of `env` is left out. The stdio entries must then fit below fd 3
   * (stdio_count 0..3, 0 still meaning three pipes); entries missing below
   * fd 3 are /dev/null. Names follow systemd's rule: printable ASCII
   * without ':', at most 255 characters. 0 fds: off. */
  const int* listen_fds;
  int listen_fds_count;               /* at most HERD_LISTEN_FDS_MAX */
  const char* const* listen_fd_names; /* listen_fds_count names, or NULL */
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
 * spaces>"` instead. The child starts with every signal at its default and
 * none blocked, and with exactly the fds its options give it. Returns 0 and
 * fills child->pid, or a negative error for misuse (UV_EINVAL: NULL
 * loop/child/file, stdio_count out of range, two IPC entries, a negative
 * HERD_STDIO_FD fd, an unknown stdio kind, listen_fds with stdio_count
 * above 3, a bad fd name, a parent_death_signal that is no signal) and
 * out-of-memory (UV_ENOMEM). With an error no callback runs, no process,
 * fd or memory is left, and herd does not touch `child` again: it may be
 * freed at once. Failures to start the program (UV_ENOENT, UV_EACCES,
 * UV_EMFILE, a bad cwd, ...) are NOT returned: they arrive through
 * error_cb, followed by close_cb, as in Node. child->data is preserved; the
 * child handle is alive until close_cb runs. */
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
 * pipes or IPC channel: while the child runs, an open pipe keeps the loop
 * alive (read or not, as Node's streams do) and after exit the pipes are
 * drained and closed. Use HERD_STDIO_IGNORE/INHERIT, or uv_unref() each
 * herd_child_stream() before herd_child_unref(), for a child that should
 * not hold the loop. The child is still reaped when it exits; exit_cb runs
 * if the loop is running. */
void herd_child_ref(herd_child_t* child);
void herd_child_unref(herd_child_t* child);

/* Stops watching the child before it exits: pipes and channel are closed,
 * no exit_cb (nor pending error_cb) will come, close_cb runs from the loop.
 * The child keeps running and is still reaped (no zombie) when it exits, by
 * a small process-wide thread that holds its pidfd, so the loop itself can
 * be closed right after close_cb. Allocates nothing; should no thread be
 * available (pthread_create() failing), the child is killed with SIGKILL
 * and reaped at once rather than left behind. Safe to call more than once,
 * and after exit (then it only closes the pipes). */
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
  unsigned flags; /* HERD_SPAWN_ENV_EXTEND, DETACHED, PROCESS_GROUP,
                     SETUID/SETGID (and SHELL for exec_file) */
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
                        HERD_EMAXBUFFER, UV_ETIMEDOUT, UV_ECANCELED,
                        UV_ENOMEM (output could not be stored), or
                        HERD_ECMDFAILED (non-zero exit or killed by a signal) */
  int64_t code;      /* exit code, -1 when a signal ended it or no start */
  int signal;        /* the signal that ended it, 0 if none */
  int killed;        /* herd sent it a signal (timeout, max_buffer, abort,
                        herd_child_kill()) */
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
 * for a NULL argument, UV_ENOMEM, or another herd_spawn() error); then no
 * callback runs and `req` may be freed at once. Output beyond max_buffer on
 * either stream ends the command: that stream is cut at exactly max_buffer
 * bytes, the child gets kill_signal, and the result says HERD_EMAXBUFFER
 * with max_buffer_fd. A timeout kills it likewise (UV_ETIMEDOUT, killed=1,
 * signal set, code -1); a non-zero exit or a signal gives HERD_ECMDFAILED
 * with code and signal. As in Node, a kill by timeout, max_buffer or abort
 * closes the child's pipes at once, so cb comes as soon as the child exits,
 * even if a process it started still holds them (such a process gets EPIPE
 * if it writes on). The timeout counts until the output ends, not only
 * until exit: pipes still held open by such a process when it expires are
 * closed and the result is UV_ETIMEDOUT with the exit code. killed = 1 when
 * herd sent a signal. kill_signal is followed by SIGKILL kill_grace ms
 * later if the child is still alive (Node sends kill_signal only). The
 * request's `child` is a full herd_child_t (pid, kill) while it runs; the
 * request may be reused from cb. */
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
 * UV_ETIMEDOUT (the timeout expired: the child was killed, or its pipes
 * were still held open by a process it started), UV_ENOBUFS (the pipes
 * together produced more than max_buffer: the output is cut there and the
 * child killed), or UV_EINVAL (also for input_len above UINT_MAX, the most
 * one uv_write() takes) or UV_ENOMEM (nothing was started, or the output
 * could not be stored and the child was killed). As Node's spawnSync does,
 * a kill by timeout or max_buffer closes every pipe at once, so the call
 * returns as soon as the child exits, whatever holds its pipes (kill_signal
 * is followed by SIGKILL after kill_grace ms). `input` is written to stdin,
 * which is then closed (closed at once without input). out/err hold what
 * fds 1 and 2 produced when they are pipes (NUL-terminated, possibly
 * empty), NULL otherwise; output of pipes >= 3 is read and dropped. Always
 * free the result with herd_sync_result_free(), whatever the return. */
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

/* The subreaper: for a supervisor, or PID 1 in a container, that must reap
 * the processes its children leave behind. herd_subreaper_start() makes the
 * process a child subreaper (Linux's prctl(PR_SET_CHILD_SUBREAPER)): an
 * orphan among its descendants is re-parented to it instead of to init. On
 * `loop` it then waits for SIGCHLD (a uv_signal_t, so libuv's handler
 * replaces any other) and reaps every such orphan as it exits, starting with
 * those already gone; orphan_cb (may be NULL) gets each one's pid and status
 * (as herd_exit_cb's), from the loop. It never takes the status of a child
 * that herd_spawn() (or exec, fork, the sync forms) watches: herd keeps a
 * registry of them, and the subreaper leaves those to their watchers. It
 * does reap every other child of the process, so a program using it should
 * start its children with herd only (not uv_spawn(), system() or
 * fork()+waitpid()). One subreaper per process. Returns 0, UV_EINVAL (NULL
 * argument), UV_EBUSY (one is already started), or the error of prctl() or
 * uv_signal_init(); with an error nothing is left running and `sr` is not
 * touched again. */
typedef struct herd_subreaper_s herd_subreaper_t;
typedef void (*herd_orphan_cb)(herd_subreaper_t* sr, pid_t pid,
                               int64_t exit_status, int term_signal);
typedef void (*herd_subreaper_close_cb)(herd_subreaper_t* sr);

struct herd_subreaper_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  uint64_t reaped; /* orphans reaped so far */
  /* private */
  uv_signal_t signal_;
  herd_orphan_cb orphan_cb_;
  herd_subreaper_close_cb close_cb_;
  int closing_;
};

int herd_subreaper_start(uv_loop_t* loop, herd_subreaper_t* sr,
                         herd_orphan_cb orphan_cb);
/* Stops reaping and clears the subreaper attribute (orphans go to init
 * again; those already re-parented stay children of this process). close_cb
 * (may be NULL) runs from the loop, after which `sr` may be freed. */
void herd_subreaper_close(herd_subreaper_t* sr,
                          herd_subreaper_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_PROCESS_H */
