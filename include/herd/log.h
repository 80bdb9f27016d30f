/* Workers' output, line by line: herd reads each worker's stdout and stderr
 * pipes and writes every whole line to its own output with a prefix that
 * says whose line it is (`herd run` uses the worker's slot and pid). Lines
 * of different workers never interleave, a line longer than a pipe buffer
 * stays whole, and a worker that writes faster than the output takes is
 * slowed down, never dropped. Included by <herd.h>; do not include
 * directly. docs/log.md is the reference.
 *
 * Two objects:
 * - herd_log_t: one output (herd's stdout, stderr, a file). It queues
 *   formatted lines and writes them without ever blocking the loop on a
 *   slow reader (see herd_log_init());
 * - herd_log_pipe_t: one source, the read end of a pipe whose write end a
 *   child has as its fd 1 or 2. It splits what it reads into lines.
 *
 * Lines. A line is the bytes up to a newline, which is not part of it; the
 * bytes are passed on as they are (no charset is assumed, NUL and CR
 * included). herd writes `prefix` + line + "\n". A line is buffered until
 * its newline arrives, up to `max_line` bytes (HERD_LOG_MAX_LINE, 1 MiB,
 * by default; sixteen times the 64 KiB a Linux pipe holds). A longer line
 * is cut: every `max_line` bytes go out as a piece of their own, followed
 * by a newline herd adds, and each piece after the first carries
 * `cont_prefix` instead of `prefix`, so a reader can join them; cut lines
 * are counted in herd_log_t.cut. At the end of the pipe a last line
 * without a newline is written with one. journald cuts long lines the same
 * way (LineMax=, 48 KiB by default). */
#ifndef HERD_LOG_H
#define HERD_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The default longest line kept whole, in bytes. */
#define HERD_LOG_MAX_LINE (1024 * 1024)
/* The default amount of output queued, in bytes, above which herd stops
 * reading the pipes until the output has taken half of it. */
#define HERD_LOG_HIGH_WATER (1024 * 1024)
/* The default time herd_log_close() waits for a blocked output, in ms. */
#define HERD_LOG_LINGER_MS 1000

typedef struct herd_log_s herd_log_t;
typedef struct herd_log_pipe_s herd_log_pipe_t;
typedef void (*herd_log_close_cb)(herd_log_t* log);
typedef void (*herd_log_pipe_close_cb)(herd_log_pipe_t* pipe);

/* Options of herd_log_init(); all-zero means the defaults. */
typedef struct herd_log_options_s {
  size_t max_line;    /* 0: HERD_LOG_MAX_LINE; at least 64 */
  size_t high_water;  /* 0: HERD_LOG_HIGH_WATER */
  uint64_t linger_ms; /* 0: HERD_LOG_LINGER_MS */
} herd_log_options_t;

/* Public fields are read-only. */
struct herd_log_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  uint64_t lines;   /* lines (and pieces of cut lines) queued */
  uint64_t cut;     /* lines longer than max_line, written in pieces */
  uint64_t dropped; /* lines lost: after an output error, out of memory,
                       or still queued when the linger time ran out */
  uint64_t pauses;  /* times the pipes were paused by the high-water mark */
  int error;        /* the first output error (UV_EPIPE, ...), or 0 */
  /* private */
  int fd;
  int own_fd;
  int use_send;
  int epfd;
  int waiting;
  int paused;
  int closing;
  int handles;
  size_t max_line;
  size_t high_water;
  uint64_t linger_ms;
  char* queue;
  size_t qoff;
  size_t qlen;
  size_t qcap;
  char* scratch;
  herd_log_pipe_t* pipes;
  uv_poll_t poll;
  uv_timer_t linger;
  herd_log_close_cb close_cb;
};

/* Starts an output on `fd`, which stays the caller's (herd never closes
 * it). Writes never block the loop:
 * - a socket (journald's stream, a container's log socket) is written with
 *   send(MSG_DONTWAIT);
 * - a terminal, a pipe or a FIFO is reopened through /proc/self/fd with
 *   O_NONBLOCK, a description of herd's own, so the mode of the one the
 *   shell shares is untouched (libuv's uv_tty_init() does the same for
 *   terminals); where the reopen fails, `fd` is used as it is;
 * - anything else (a regular file, /dev/null) is written as it is.
 * When the output takes nothing more (EAGAIN), herd waits for it in an
 * epoll set of its own and queues meanwhile; above `high_water` queued
 * bytes every pipe stops reading, so children block in write() rather than
 * lose output. Each write() carries whole lines only, as many as fit in
 * PIPE_BUF (4096 bytes, the size a pipe writes atomically), or one longer
 * line alone; a line the output takes in parts is finished before any
 * other: no two lines ever mix, even when other processes write to the
 * same pipe. A write error (EPIPE: nobody reads) is kept in `error`; later
 * lines are dropped and counted, and the pipes keep being read so that
 * children never block on a dead output. Ignore SIGPIPE (libuv programs
 * do) or a closed pipe ends the process.
 * Errors: UV_EINVAL, UV_EBADF (fd not open), UV_ENOMEM, UV_EMFILE. */
int herd_log_init(uv_loop_t* loop, herd_log_t* log, int fd,
                  const herd_log_options_t* options);

/* Queues `len` bytes of herd's own text: each line in it (a last one
 * without newline included) is written with `prefix` (may be NULL), in
 * order with the pipes' lines. The text is copied. Returns 0, or the
 * output's `error` (the lines are dropped and counted), or UV_ENOMEM. */
int herd_log_write(herd_log_t* log, const char* prefix, const char* text,
                   size_t len);

/* Closes every pipe (their last partial lines are written), writes what is
 * queued, waiting at most linger_ms for a blocked output (what is left
 * then is dropped and counted), and calls close_cb (may be NULL) from the
 * loop. The memory may be reused after close_cb. */
void herd_log_close(herd_log_t* log, herd_log_close_cb close_cb);

/* Public fields are read-only. */
struct herd_log_pipe_s {
  void* data; /* free for the user */
  herd_log_t* log;
  uint64_t lines; /* whole lines read (a cut line counts once) */
  uint64_t bytes; /* bytes read */
  /* private */
  uv_pipe_t* handle; /* herd-allocated, so a failed open leaves nothing
                        closing in the caller's memory */
  char* prefix;      /* prefix and cont_prefix, one allocation */
  size_t prefix_len;
  char* cont_prefix;
  size_t cont_prefix_len;
  char* partial; /* the line read so far */
  size_t plen;
  size_t pcap;
  int cutting; /* the line in `partial` was cut: pieces use cont_prefix */
  int closing;
  herd_log_pipe_t* next;
  herd_log_pipe_t* prev;
  herd_log_pipe_close_cb close_cb;
};

/* Starts reading `fd`, the read end of a pipe (herd takes it over and
 * closes it), into `log`, each line with `prefix` and each later piece of
 * a cut line with `cont_prefix` (NULL: `prefix`); both are copied. The
 * pipe closes by itself at its end (every holder of the write end closed
 * it: the child and whatever inherited it) or on a read error, after
 * writing a last partial line; close_cb (may be NULL) then runs from the
 * loop, and the memory may be reused after it. Errors: UV_EINVAL, UV_EBADF,
 * UV_ENOMEM, UV_ECANCELED (the log is closing); on error `fd` is closed
 * too. */
int herd_log_pipe_open(herd_log_t* log, herd_log_pipe_t* pipe, int fd,
                       const char* prefix, const char* cont_prefix,
                       herd_log_pipe_close_cb close_cb);

/* Stops reading before the end: a partial line is written, the pipe
 * closes, close_cb follows from the loop. What the child writes afterwards
 * is lost to it (EPIPE). Safe to call twice. */
void herd_log_pipe_close(herd_log_pipe_t* pipe);

#ifdef __cplusplus
}
#endif
#endif /* HERD_LOG_H */
