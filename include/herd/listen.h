/* Listening sockets from text addresses, as `herd run --listen` takes them:
 * parse an address once, bind it before any worker starts (so a bad or busy
 * address is reported at once), bind it again for each slot under
 * SO_REUSEPORT, describe a socket inherited from a service manager, and
 * remove a unix socket file at a clean exit. Included by <herd.h>; do not
 * include directly. docs/listen.md is the reference.
 *
 * Nothing here runs on a loop: every call is synchronous and made before
 * (or after) the sockets are in use. */
#ifndef HERD_LISTEN_H
#define HERD_LISTEN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Room for the longest address text: "unix:" + a 107-byte path + NUL. */
#define HERD_LISTEN_TEXT_MAX 128
/* The backlog herd_listen_bind() uses when none is given: 511, as Node's
 * net.Server and nginx (a power of two minus one, so the kernel's rounding
 * up keeps it below somaxconn's default of 4096). */
#define HERD_LISTEN_BACKLOG 511

/* herd_listen_addr_t.flags. */
typedef enum {
  /* ":PORT": every local address. Bound as "[::]" with IPV6_V6ONLY off, so
   * one socket takes IPv4 and IPv6 clients (as Node's listen(port) and Go's
   * net.Listen(":port")); as "0.0.0.0" where the kernel has no IPv6. */
  HERD_LISTEN_ANY = (1 << 0),
  /* unix:@NAME: a Linux abstract socket (no file). */
  HERD_LISTEN_ABSTRACT = (1 << 1),
  /* A unix socket file that herd_listen_bind() created: `dev` and `ino`
   * identify it for herd_listen_cleanup(). */
  HERD_LISTEN_OWNED = (1 << 2),
  /* Described by herd_listen_addr_from_fd(): an inherited socket. */
  HERD_LISTEN_INHERITED = (1 << 3)
} herd_listen_flags_t;

/* One listening address. Plain data: copy it freely. */
typedef struct herd_listen_addr_s {
  int family; /* AF_INET, AF_INET6 or AF_UNIX */
  int port;   /* TCP: the port (0: any free one, until bound); unix: 0 */
  unsigned flags;
  socklen_t len;                   /* the used part of `sa` */
  struct sockaddr_storage sa;      /* what bind() gets */
  char text[HERD_LISTEN_TEXT_MAX]; /* canonical text, see below */
  dev_t dev;                       /* with HERD_LISTEN_OWNED */
  ino_t ino;
} herd_listen_addr_t;

/* Parses one address:
 *   HOST:PORT    a numeric IPv4 address or a host name, e.g. 127.0.0.1:8000
 *                or localhost:8000. A name is resolved here (getaddrinfo,
 *                so it may block on DNS) and its first IPv4 address is
 *                used, else its first IPv6 one: like Go's net.Listen, one
 *                socket per name; give each address its own --listen to
 *                listen on several.
 *   [V6]:PORT    a numeric IPv6 address, optionally with a %zone, e.g.
 *                [::1]:8000. Bound with IPV6_V6ONLY on (nginx's default),
 *                so [::]:80 and 0.0.0.0:80 can both be listened on.
 *   :PORT        every local address (HERD_LISTEN_ANY).
 *   unix:PATH    a unix stream socket file (at most 107 bytes).
 *   unix:@NAME   a Linux abstract unix socket.
 * PORT is decimal, 0 to 65535; 0 asks the kernel for a free port when the
 * address is bound. `text` becomes the canonical form: the numeric address
 * ("127.0.0.1:8000" for "localhost:8000", "[::1]:8000", ":8000",
 * "unix:/run/app.sock", "unix:@app").
 * Errors: UV_EINVAL (no such form, a bad port, an IPv6 address without
 * brackets, an empty path), UV_ENAMETOOLONG (a unix path or name longer
 * than 107 bytes), and for a host name the resolver's UV_EAI_NONAME,
 * UV_EAI_AGAIN, UV_EAI_FAIL or UV_ENOMEM. `addr` is filled only on
 * success. */
int herd_listen_parse(const char* text, herd_listen_addr_t* addr);

/* herd_listen_options_t.flags. */
typedef enum {
  /* Set SO_REUSEPORT (TCP only; ignored for unix sockets, where Linux does
   * not spread connections): every socket of one reuseport group needs
   * it, the first one included. */
  HERD_LISTEN_REUSEPORT = (1 << 0)
} herd_listen_option_flags_t;

/* Options of herd_listen_bind(); all-zero means the defaults. */
typedef struct herd_listen_options_s {
  int backlog;        /* 0: HERD_LISTEN_BACKLOG */
  unsigned flags;     /* herd_listen_option_flags_t */
  unsigned unix_mode; /* a unix socket file's mode; 0: 0666, as systemd's
                         SocketMode= default and nginx */
} herd_listen_options_t;

/* Creates a stream socket for `addr`, binds it, listens, and returns it in
 * *fd: close-on-exec and non-blocking, as systemd hands listening sockets
 * to services (a child that gets it as fd 3, 4, ... through dup2() has it
 * without close-on-exec). TCP sockets get SO_REUSEADDR, as libuv and
 * nginx set it, so a restarted herd binds at once even with connections
 * of the previous run in TIME_WAIT.
 *
 * A TCP port 0 in `addr` is replaced, on success, by the port the kernel
 * chose (and `text` updated): binding the same `addr` again, e.g. for the
 * next reuseport slot, binds the same port. A HERD_LISTEN_ANY address on
 * a kernel without IPv6 becomes 0.0.0.0 the same way.
 *
 * Unix socket files. The file is created with `unix_mode` (through the
 * umask, so it never exists with other permissions); the directory must
 * exist (systemd would create it; herd does not guess its owner and mode).
 * When the path already exists:
 * - a socket that accepts connections: UV_EADDRINUSE, as for a TCP port;
 * - a socket nobody listens on any more (connect() is refused: a process
 *   that bound it died without removing it): the file is removed and the
 *   bind retried once. systemd removes whatever is there unconditionally
 *   (the path belongs to the unit); nginx removes nothing and fails until
 *   someone does. herd sits between: it removes a stale socket only, so
 *   a crashed herd can be restarted and a running one is never robbed of
 *   its address;
 * - anything else (a regular file, a directory): UV_EEXIST, untouched.
 * On success `addr` gets HERD_LISTEN_OWNED with the file's identity, for
 * herd_listen_cleanup().
 *
 * Errors: UV_EADDRINUSE, UV_EACCES (a privileged port, a directory herd
 * may not write), UV_EADDRNOTAVAIL (not a local address), UV_EEXIST,
 * UV_ENOENT (no such directory), UV_EMFILE, UV_EINVAL (addr is not a
 * parsed address), and what socket(), bind() and listen() return. No fd
 * is left open on error. */
int herd_listen_bind(herd_listen_addr_t* addr,
                     const herd_listen_options_t* options, int* fd);

/* Describes an open socket, e.g. one inherited through LISTEN_FDS: fills
 * `addr` from getsockname() with HERD_LISTEN_INHERITED (never
 * HERD_LISTEN_OWNED: herd did not create its file). Errors: UV_ENOTSOCK
 * (not a socket), UV_EINVAL (not a listening stream socket),
 * UV_EAFNOSUPPORT (not IPv4, IPv6 or unix), UV_EBADF. */
int herd_listen_addr_from_fd(int fd, herd_listen_addr_t* addr);

/* Removes the unix socket file herd_listen_bind() created for `addr`, if
 * that path still names the same file (another process may have replaced
 * it since, e.g. a systemd socket unit that removes whatever is there), as
 * nginx does at a clean exit. Call it before closing this process's fd of
 * the socket: an open socket keeps the file's inode from being freed and
 * reused, which makes the identity check exact. Does nothing (returns 0)
 * for other addresses. Returns 0, or the error of unlink() (UV_EACCES
 * when privileges were dropped after the bind and the directory is not
 * writable any more: a later herd then finds the file stale and removes
 * it, see herd_listen_bind()). */
int herd_listen_cleanup(const herd_listen_addr_t* addr);

#ifdef __cplusplus
}
#endif
#endif /* HERD_LISTEN_H */
