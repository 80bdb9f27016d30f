/* The systemd service protocols, both ways: herd as a service of systemd
 * (or of any manager that speaks them: s6, dinit, a container runtime) and
 * herd as the manager of its own workers. Included by <herd.h>; do not
 * include directly. docs/systemd.md is the reference.
 *
 * - herd_sd_notifier_t: the sd_notify(3) client. Tells the manager named
 *   by NOTIFY_SOCKET about readiness, reloads, stopping and status, and
 *   keeps its watchdog fed (WATCHDOG_USEC, WATCHDOG_PID).
 * - herd_sd_listen_fds(): sd_listen_fds(3) for herd itself, to adopt the
 *   sockets of socket activation (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES).
 * - herd_sd_notify_socket_t: the manager's side of sd_notify, a datagram
 *   socket herd gives a worker as its NOTIFY_SOCKET. Every message comes
 *   with the sender's pid, uid and gid as the kernel saw them
 *   (SCM_CREDENTIALS), and that is all herd believes of it: a MAINPID= or
 *   READY=1 is a claim made by that pid, to be matched against the worker
 *   by the caller.
 *
 * The wire facts come from systemd's sd-daemon.c and its notify receiver
 * (src/shared/notify-recv.c): one datagram per message, newline-separated
 * KEY=VALUE assignments, at most 4096 bytes (PIPE_BUF, systemd's
 * NOTIFY_BUFFER_MAX), no embedded NUL. */
#ifndef HERD_SYSTEMD_H
#define HERD_SYSTEMD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The first fd of socket activation (SD_LISTEN_FDS_START). */
#define HERD_SD_LISTEN_FDS_START 3
/* The longest notify message either side handles (systemd's
 * NOTIFY_BUFFER_MAX, PIPE_BUF). */
#define HERD_SD_MESSAGE_MAX 4096
/* Room for a NOTIFY_SOCKET value: "@" or a path, 107 bytes, and a NUL. */
#define HERD_SD_ADDRESS_MAX 110

/* Flags of herd_sd_notifier_init() and herd_sd_listen_fds(). */
typedef enum {
  /* Remove the variables read (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID;
   * LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS, LISTEN_FDNAMES) from the
   * environment, whatever the outcome, so children do not inherit them:
   * sd_notify(3)'s unset_environment. */
  HERD_SD_UNSET_ENV = (1 << 0),
  /* herd_sd_notifier_init(): do not start the watchdog keep-alive (the
   * caller sends WATCHDOG=1 itself). */
  HERD_SD_NO_WATCHDOG = (1 << 1)
} herd_sd_flags_t;

/* The sd_notify client. */

typedef struct herd_sd_notifier_s herd_sd_notifier_t;
typedef void (*herd_sd_notifier_close_cb)(herd_sd_notifier_t* notifier);

/* Public fields are read-only. */
struct herd_sd_notifier_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  int enabled; /* NOTIFY_SOCKET named a socket: messages are sent */
  /* WATCHDOG_USEC, when it was set for this process (WATCHDOG_PID unset
   * or ours) and a manager listens; else 0. */
  uint64_t watchdog_usec;
  uint64_t sent;  /* messages sent */
  int last_error; /* the error of the last failed send, 0 if none */
  /* private */
  int fd;
  socklen_t addrlen;
  struct sockaddr_storage addr;
  uv_timer_t watchdog;
  herd_sd_notifier_close_cb close_cb;
};

/* Reads NOTIFY_SOCKET and, unless HERD_SD_NO_WATCHDOG, WATCHDOG_USEC and
 * WATCHDOG_PID, and prepares `notifier` on `loop`. NOTIFY_SOCKET is an
 * absolute path or an abstract name written "@name", as systemd sets it;
 * without it the notifier is initialised with enabled 0, and every
 * herd_sd_notify() returns 0 (what sd_notify() does). With a watchdog
 * for this process, WATCHDOG=1 is sent every WATCHDOG_USEC / 2, as
 * sd_watchdog_enabled(3) advises, from an unreferenced timer on `loop`:
 * it does not keep the loop alive, and it stops when the loop is stuck,
 * which is what a watchdog is for. flags: herd_sd_flags_t.
 * Errors (the notifier is then not initialised; with HERD_SD_UNSET_ENV
 * the variables are unset all the same): UV_EINVAL (NOTIFY_SOCKET neither
 * absolute nor "@", WATCHDOG_USEC or WATCHDOG_PID not a number or 0),
 * UV_ENAMETOOLONG, UV_EAFNOSUPPORT (a "vsock:" address: not supported),
 * and socket() errors (UV_EMFILE, ...). */
int herd_sd_notifier_init(uv_loop_t* loop, herd_sd_notifier_t* notifier,
                          unsigned flags);

/* Sends `state`, newline-separated assignments such as "READY=1",
 * "STATUS=2 workers ready", "STOPPING=1", "READY=1\nSTATUS=serving", in one
 * datagram. Returns 1 when sent, 0 when the notifier is not enabled, or a
 * negative error: UV_EINVAL (empty state), UV_EMSGSIZE (longer than
 * HERD_SD_MESSAGE_MAX), UV_ECONNREFUSED or UV_ENOENT (no manager listens
 * any more), UV_EAGAIN (the manager's queue stayed full for 1 s: the send
 * blocks at most that long, so a stuck manager cannot stall herd's loop
 * for longer). The error is also kept in last_error. */
int herd_sd_notify(herd_sd_notifier_t* notifier, const char* state);
/* herd_sd_notify() with printf formatting. */
int herd_sd_notifyf(herd_sd_notifier_t* notifier, const char* format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Sends "RELOADING=1" and "MONOTONIC_USEC=<now>" (CLOCK_MONOTONIC, in
 * microseconds), which Type=notify-reload units must send at the start of
 * a reload (systemd.service(5)); end the reload with "READY=1". `status`
 * (may be NULL) adds a STATUS= line. Returns as herd_sd_notify(). */
int herd_sd_notify_reloading(herd_sd_notifier_t* notifier, const char* status);
/* Stops the watchdog timer and closes the socket; close_cb (may be NULL)
 * runs from the loop, after which the memory may be reused. */
void herd_sd_notifier_close(herd_sd_notifier_t* notifier,
                            herd_sd_notifier_close_cb close_cb);

/* Socket activation. */

/* sd_listen_fds(3): the number of sockets passed to this process, at fds
 * HERD_SD_LISTEN_FDS_START and up, or 0 when none were (LISTEN_PID unset,
 * or not this process's pid, or LISTEN_PIDFDID not this process's pidfd
 * inode where the kernel has those). Each of the fds is made
 * close-on-exec. With `names` non-NULL and a result > 0, *names is a
 * NULL-terminated array of the LISTEN_FDNAMES entries ("unknown" for each
 * fd when the variable is unset), one herd allocation to be freed with
 * herd_sd_names_free(). flags: HERD_SD_UNSET_ENV. Errors: UV_EINVAL
 * (LISTEN_PID or LISTEN_FDS not a number, LISTEN_FDS 0 or too large, a
 * LISTEN_FDNAMES count that differs from LISTEN_FDS), UV_EBADF (one of
 * the fds is not open), UV_ENOMEM. */
int herd_sd_listen_fds(unsigned flags, char*** names);
/* Frees what herd_sd_listen_fds() returned in *names; NULL is fine. */
void herd_sd_names_free(char** names);

/* The manager's side: a notify socket for a worker. */

/* herd_sd_notify_msg_t.fields: what the message carried. */
typedef enum {
  HERD_SD_READY = (1 << 0),            /* READY=1 */
  HERD_SD_RELOADING = (1 << 1),        /* RELOADING=1 */
  HERD_SD_STOPPING = (1 << 2),         /* STOPPING=1 */
  HERD_SD_WATCHDOG = (1 << 3),         /* WATCHDOG=1 */
  HERD_SD_WATCHDOG_TRIGGER = (1 << 4), /* WATCHDOG=trigger */
  HERD_SD_STATUS = (1 << 5),           /* STATUS=, valid UTF-8 */
  HERD_SD_MAINPID = (1 << 6),          /* MAINPID=, a positive pid */
  HERD_SD_MONOTONIC = (1 << 7),        /* MONOTONIC_USEC= */
  HERD_SD_ERRNO = (1 << 8),            /* ERRNO=, a non-negative number */
  HERD_SD_EXTEND_TIMEOUT = (1 << 9)    /* EXTEND_TIMEOUT_USEC= */
} herd_sd_fields_t;

/* One message as parsed. Pointers are valid during the callback only. An
 * assignment that is malformed (READY=0, MAINPID=abc, STATUS= with bad
 * UTF-8) is ignored, as systemd ignores it; unknown assignments are
 * ignored; when one appears twice the last one counts. */
typedef struct herd_sd_notify_msg_s {
  /* The sender as the kernel saw it (SCM_CREDENTIALS), translated into
   * herd's pid namespace. Never from the message text. */
  pid_t pid;
  uid_t uid;
  gid_t gid;
  unsigned fields;    /* herd_sd_fields_t */
  const char* status; /* STATUS= value, not NUL-terminated */
  size_t status_len;
  pid_t main_pid; /* MAINPID= (a claim of `pid`, nothing more) */
  uint64_t monotonic_usec;
  uint64_t extend_timeout_usec;
  int errno_value;
  const char* text; /* the whole message */
  size_t len;
} herd_sd_notify_msg_t;

/* Parses `len` bytes of message text (sender fields left 0). Returns 0, or
 * UV_EINVAL for a message systemd would drop whole: empty, longer than
 * HERD_SD_MESSAGE_MAX, or with a NUL byte anywhere but at the end. */
int herd_sd_notify_parse(const char* text, size_t len,
                         herd_sd_notify_msg_t* msg);

typedef struct herd_sd_notify_socket_s herd_sd_notify_socket_t;
/* A message arrived. `msg` is valid during the call only. */
typedef void (*herd_sd_notify_cb)(herd_sd_notify_socket_t* socket,
                                  const herd_sd_notify_msg_t* msg);
typedef void (*herd_sd_notify_socket_close_cb)(herd_sd_notify_socket_t* s);

/* Public fields are read-only. */
struct herd_sd_notify_socket_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  /* The value to put in the child's NOTIFY_SOCKET. */
  char address[HERD_SD_ADDRESS_MAX];
  uint64_t received; /* messages passed to the callback */
  /* Datagrams dropped: without credentials, truncated (longer than
   * HERD_SD_MESSAGE_MAX), empty or with a NUL inside. fds attached to a
   * datagram (FDSTORE=1) are always closed: herd keeps no fd store. */
  uint64_t dropped;
  /* private */
  int fd;
  int owned_path;
  uv_poll_t poll;
  herd_sd_notify_cb cb;
  herd_sd_notify_socket_close_cb close_cb;
};

/* Opens a datagram socket with SO_PASSCRED, bound to `path` (a file that
 * must not exist; removed again by herd_sd_notify_socket_close()) or, with
 * path NULL, to an abstract name the kernel picks (no file to clean up,
 * whatever happens to herd). Abstract names are reachable from anywhere
 * in the network namespace: that is harmless here because a message is
 * only ever attributed to the pid the kernel vouches for, and a foreign
 * pid is not a worker. cb runs for each message from the loop; the socket
 * holds the loop until closed. Errors: UV_EINVAL (NULL cb, a relative
 * path), UV_ENAMETOOLONG, UV_EADDRINUSE, socket() and bind() errors. */
int herd_sd_notify_socket_init(uv_loop_t* loop, herd_sd_notify_socket_t* socket,
                               const char* path, herd_sd_notify_cb cb);
/* Closes the socket (messages still queued are dropped); close_cb (may be
 * NULL) runs from the loop. */
void herd_sd_notify_socket_close(herd_sd_notify_socket_t* socket,
                                 herd_sd_notify_socket_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_SYSTEMD_H */
