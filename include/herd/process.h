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

#include <limits.h>
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

/* What one of the child's file descriptors is connected to: Node's stdio
 * entries. The zero value is HERD_STDIO_PIPE, Node's default for fds 0-2. */
typedef enum {
  HERD_STDIO_PIPE = 0,   /* 'pipe': a new pipe, readable/writable by the
                            parent (an AF_UNIX socketpair, as libuv makes) */
  HERD_STDIO_IGNORE,     /* 'ignore': /dev/null for fds 0-2; a higher fd is
                            left closed in the child, as in Node (libuv opens
                            /dev/null only for fds 0-2) */
  HERD_STDIO_INHERIT,    /* 'inherit': the parent's fd with the same number */
  HERD_STDIO_FD,         /* a number: an existing fd of the parent (`fd`) */
  HERD_STDIO_IPC,        /* 'ipc': an IPC channel (at most one entry) */
  HERD_STDIO_OVERLAPPED, /* 'overlapped': a pipe; the difference from
                            'pipe' exists only on Windows */
  HERD_STDIO_DEFAULT     /* null/undefined: 'pipe' for fds 0-2, 'ignore'
                            (closed) from fd 3 on */
} herd_stdio_kind_t;

typedef struct {
  herd_stdio_kind_t kind;
  int fd; /* with HERD_STDIO_FD */
} herd_stdio_t;

/* How messages are written on an IPC channel: Node's `serialization`
 * option of spawn() and fork(). JSON: one JSON text and '\n' a message
 * (JSON.stringify() of what is sent). ADVANCED: a 4-byte big-endian length,
 * then V8's serializer bytes (what v8.serialize() writes, with Node's own
 * tag before typed arrays), so Buffers, Maps, Sets, Dates, BigInts,
 * undefined, NaN and cycles cross intact. docs/ipc.md and
 * docs/serialization.md. */
typedef enum {
  HERD_SERIALIZATION_JSON = 0,
  HERD_SERIALIZATION_ADVANCED
} herd_serialization_t;

/* There is no limit on stdio entries other than the process's fd limit
 * (Node has none either); the macro stays for code that checks against it.
 */
#define HERD_STDIO_MAX INT_MAX
/* The most fds herd_spawn_options_t.listen_fds may hold. */
#define HERD_LISTEN_FDS_MAX 64

/* Node's stdio option written as in JavaScript, for porting and for
 * configuration: one of the shorthands 'pipe', 'overlapped', 'ignore' or
 * 'inherit' for all of fds 0-2, or an array such as
 * "['pipe', 'inherit', null, 'ipc', 4]": items 'pipe', 'overlapped',
 * 'ignore', 'inherit', 'ipc', null or undefined (or nothing between two
 * commas: HERD_STDIO_DEFAULT), a number >= 0 (HERD_STDIO_FD) or a negative
 * number (a pipe, as Node's getValidStdio() reads it). Quotes (' or ") and
 * the brackets of an array are optional, whitespace is ignored; a single
 * word without brackets must be one of the four shorthands (as in Node,
 * where stdio: 'ipc' is an error). Writes at most `max` entries to `stdio`
 * (which may be NULL when max is 0) and returns how many the spec holds,
 * so a return above `max` asks for a larger array, or UV_EINVAL (NULL or
 * malformed spec, an unknown word, a number out of range). Allocates
 * nothing. As in Node, an array shorter than three entries is completed
 * with defaults by herd_spawn(), and "[]" means three pipes. */
int herd_stdio_parse(const char* spec, herd_stdio_t* stdio, int max);

/* Signal names as Node spells them (os.constants.signals on Linux):
 * "SIGTERM", "SIGKILL", ..., with the aliases SIGIOT (SIGABRT) and SIGPOLL
 * (SIGIO). herd_signal_number() accepts any case, as Node's child_process
 * does for kill() and killSignal (it upper-cases the name), and returns the
 * number, or UV_EINVAL for a name Node does not know (Node's
 * ERR_UNKNOWN_SIGNAL), NULL included. Every call that takes a signal
 * (kill_signal, herd_child_kill(), herd_child_kill_group()) refuses that
 * negative value with UV_EINVAL, so `.kill_signal =
 * herd_signal_number("SIGINT")` needs no check of its own.
 * herd_signal_name() gives the name Node reports for a signal number (its
 * signo_string(): "SIGABRT" for 6, "SIGIO" for 29), or NULL for a number
 * without one (0, and the real-time signals, for which Node reports ""). The
 * strings are static. */
int herd_signal_number(const char* name);
const char* herd_signal_name(int signum);

/* herd_spawn_options_t.flags. */
typedef enum {
  HERD_SPAWN_DETACHED = (1 << 0),   /* child leads a new session (setsid),
                                       Node's `detached` */
  HERD_SPAWN_SETUID = (1 << 1),     /* use `uid` */
  HERD_SPAWN_SETGID = (1 << 2),     /* use `gid` */
  HERD_SPAWN_SHELL = (1 << 3),      /* run through `shell` (default /bin/sh) */
  HERD_SPAWN_ENV_EXTEND = (1 << 4), /* `env` adds to the parent's environment */
  HERD_SPAWN_PROCESS_GROUP = (1 << 5), /* child leads a new process group in
                                          the parent's session (setpgid(0,
                                          0)), so kill(-pid, sig) reaches it
                                          and everything it starts; implied
                                          by HERD_SPAWN_DETACHED */
  /* For supervisors: when the child exits, SIGKILL its process group before
   * herd reaps it, so processes it started and left behind die with it. The
   * kill is made between seeing the exit and the reap, while the child's
   * zombie still holds its pid and so keeps its group id from being reused:
   * it can never hit an unrelated group. Implies HERD_SPAWN_PROCESS_GROUP.
   * Also applies after herd_child_close() (the reaper thread does it). A
   * process that left the group (setsid(), setpgid()) is not reached. */
  HERD_SPAWN_KILL_GROUP_ON_EXIT = (1 << 6)
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
/* spawn_cb: Node's 'spawn' event: the program is running (exec succeeded).
 * Comes from the loop after herd_spawn() returned, before any read callback
 * and before exit_cb; not at all when the spawn failed (error_cb comes
 * instead, as Node emits 'error' instead of 'spawn') or when
 * herd_child_close() was called first. */
typedef void (*herd_child_spawn_cb)(herd_child_t* child);

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
  /* The IPC channel's serialization (with a HERD_STDIO_IPC entry; ignored
   * otherwise): the child's environment gets
   * NODE_CHANNEL_SERIALIZATION_MODE=json or =advanced, and child->channel
   * speaks it. Node's `serialization` option. */
  herd_serialization_t serialization;
  unsigned flags; /* herd_spawn_flags_t */
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
  herd_child_spawn_cb spawn_cb; /* NULL: not told */
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
  /* Node's child.signalCode: the name of term_signal once the child was
   * ended by a signal (herd_signal_name()), else NULL. */
  const char* signal_code;
  /* Node's child.spawnfile and child.spawnargs: the program run (`file`, or
   * the shell with HERD_SPAWN_SHELL) and its whole argv, NULL-terminated,
   * argv0 first (with the shell: {shell or argv0, "-c", command}). herd's
   * own copies, set by herd_spawn() whether or not the start succeeds, and
   * valid until close_cb returns. */
  const char* spawnfile;
  const char* const* spawnargs;
  herd_ipc_t* channel; /* the IPC channel, or NULL */
  /* private */
  struct herd_child_private_s* priv;
};

/* Spawns `file` with `args` (a NULL-terminated argv without argv[0]; NULL for
 * none). `file` is looked up in the child's PATH when it has no slash, as
 * execvp() does under Node: the PATH of `env` (or of the parent's
 * environment when env is NULL), and /bin:/usr/bin when that environment
 * has none, never the parent's PATH for an `env` without one (Node gives
 * ENOENT there too). With HERD_SPAWN_SHELL it runs `<shell> -c "<file>
 * <args joined by spaces>"` instead. The child starts with every signal at
 * its default and none blocked, and with exactly the fds its options give
 * it. stdio follows Node: entries missing below fd 3 (fewer than three)
 * are HERD_STDIO_DEFAULT, so fds 0-2 always exist in the child, and there
 * is no limit on the number of entries. Returns 0 and fills child->pid, or
 * a negative error for misuse (UV_EINVAL: NULL loop/child/file, a negative
 * stdio_count, two IPC entries, a negative HERD_STDIO_FD fd, an unknown
 * stdio kind, listen_fds with stdio_count above 3, a bad fd name, a
 * kill_signal or parent_death_signal that is no signal, an unknown
 * serialization) and out-of-memory (UV_ENOMEM). With an error no callback runs,
 * no process, fd or memory is left, and herd does not touch `child` again: it
 * may be freed at once. Failures to start the program (UV_ENOENT, UV_EACCES,
 * UV_EMFILE, a bad cwd, ...) are NOT returned: they arrive through error_cb,
 * followed by close_cb, as in Node. child->data is preserved; the child handle
 * is alive until close_cb runs. */
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
 * -> false), or another negative errno (UV_EINVAL for a bad signal, such as
 * herd_signal_number()'s error for an unknown name: Node's kill('SIGFOO')
 * throws ERR_UNKNOWN_SIGNAL). No escalation: only timeout and abort follow
 * up with SIGKILL. */
int herd_child_kill(herd_child_t* child, int signum);

/* For supervisors (Node has no such call): sends `signum` (0: SIGTERM) to
 * the process group the child leads (spawned with HERD_SPAWN_PROCESS_GROUP
 * or HERD_SPAWN_DETACHED), the child and every process of that group
 * together. Safe against pid reuse: the group id is the child's pid, which
 * cannot be reused while herd has not reaped the child, and herd checks
 * through the pidfd that nobody else has. Returns 0 and sets child->killed,
 * UV_ESRCH when the child has been reaped, never started or was closed, or
 * leads no group (it was spawned without a group of its own), or
 * UV_EINVAL for a bad signal. Between the child's exit and its reap (its
 * zombie still holds the group id) it still reaches what is left of the
 * group. See also HERD_SPAWN_KILL_GROUP_ON_EXIT. */
int herd_child_kill_group(herd_child_t* child, int signum);

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
 * no exit_cb (nor pending spawn_cb or error_cb) will come, close_cb runs
 * from the loop. The child keeps running and is still reaped (no zombie)
 * when it exits, by a small process-wide thread that holds its pidfd (which
 * also kills its process group first with HERD_SPAWN_KILL_GROUP_ON_EXIT), so
 * the loop itself can be closed right after close_cb. Allocates nothing; should
 * no thread be available (pthread_create() failing), the child is killed with
 * SIGKILL and reaped at once rather than left behind. Safe to call more than
 * once, and after exit (then it only closes the pipes). */
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
                     KILL_GROUP_ON_EXIT, SETUID/SETGID (and SHELL for
                     exec_file) */
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
  int error;    /* 0, or: a spawn error (UV_ENOENT, ...),
                   HERD_EMAXBUFFER, UV_ETIMEDOUT, UV_ECANCELED,
                   UV_ENOMEM (output could not be stored), or
                   HERD_ECMDFAILED (non-zero exit or killed by a signal) */
  int64_t code; /* exit code, -1 when a signal ended it or no start */
  int signal;   /* the signal that ended it, 0 if none */
  const char* signal_name; /* its name as Node's error.signal gives it
                              ("SIGTERM"; herd_signal_name()), or NULL */
  int killed;              /* herd sent it a signal (timeout, max_buffer, abort,
                              herd_child_kill()) */
  int max_buffer_fd;       /* with HERD_EMAXBUFFER: 1 (stdout) or 2 (stderr) */
  const char* cmd;         /* the command line, for messages */
  char* out;               /* stdout bytes, NUL-terminated for convenience */
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

/* One entry of herd_sync_result_t.output. */
typedef struct {
  char* data; /* NUL-terminated, or NULL: not a pipe the child writes to */
  size_t len;
} herd_sync_output_t;

typedef struct herd_sync_result_s {
  int error; /* 0, spawn error, UV_ETIMEDOUT, UV_ENOBUFS, or for
                exec_sync/exec_file_sync HERD_ECMDFAILED */
  pid_t pid;
  int64_t status; /* exit code; -1 when a signal ended it */
  int signal;
  const char* signal_name; /* Node's result.signal: the name of `signal`
                              (herd_signal_name()), or NULL */
  char* out; /* NUL-terminated; free with herd_sync_result_free() */
  size_t out_len;
  char* err;
  size_t err_len;
  /* Node's result.output: one entry per child fd (output_count: the stdio
   * entries, at least 3), what a pipe the child wrote to produced, data
   * NULL for the others (Node's null: fd 0 and fds that are not pipes).
   * output[1] and output[2] are out and err themselves (the same memory).
   * NULL (count 0) when the child could not be run. */
  herd_sync_output_t* output;
  int output_count;
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
 * empty), NULL otherwise; output[] has every fd's output, fds 3 and up
 * included, as Node's result.output. An HERD_STDIO_IPC entry is UV_EINVAL
 * (Node's ERR_IPC_SYNC_FORK). Always free the result with
 * herd_sync_result_free(), whatever the return. */
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
/* Frees out, err and output and sets them NULL; safe to call twice. */
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
