/* Private declarations shared by src/ files. Not installed. */
#ifndef HERD_INTERNAL_H
#define HERD_INTERNAL_H

#include "herd.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define HERD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HERD_CONTAINER_OF(ptr, type, field) \
  ((type*)((char*)(ptr)-offsetof(type, field)))

/* util.c */
int herd__cloexec(int fd, int set);
int herd__nonblock(int fd, int set);
/* Every allocation goes through these, so herd_replace_allocator() (and the
 * allocation-failure tests) see all of them. */
void* herd__malloc(size_t size);
void* herd__calloc(size_t n, size_t size);
void* herd__realloc(void* p, size_t size);
char* herd__strdup(const char* s);
void herd__free(void* p);
/* Writes code point `cp` (at most 0x10ffff; a lone surrogate is written as
 * its three bytes, WTF-8) as 1 to 4 bytes at `out`; returns how many. */
size_t herd__utf8_put(char* out, uint32_t cp);
/* Steers new connections of the SO_REUSEPORT group of `fd`: attaches a
 * classic BPF program (SO_ATTACH_REUSEPORT_CBPF) that picks one of the group
 * indices index[0..n-1] at random, or with n == 0 detaches it, so that the
 * kernel's hash picks from the whole group again. Returns 0, UV_ENOMEM or
 * the setsockopt() error. */
int herd__reuseport_steer(int fd, const int* index, int n);

/* The contract between the process module (spawn.c) and the IPC module
 * (ipc.c) for a parent-side channel.
 *
 * spawn.c, for a HERD_STDIO_IPC entry: creates a socketpair (CLOEXEC), gives
 * one end to the child as that fd, adds NODE_CHANNEL_FD=<n> and
 * NODE_CHANNEL_SERIALIZATION_MODE=json (or advanced) to the child's
 * environment, and calls herd__ipc_attach() with its own end and that mode
 * before the process is started. On a failed spawn it closes its end
 * itself.
 *
 * ipc.c: herd__ipc_attach() sets child->channel to a herd-allocated channel
 * that starts reading at once (buffering until herd_ipc_start()). When that
 * channel has fully closed (after the disconnect callback), ipc.c calls
 * herd__child_channel_closed(child) and frees the channel; close_cb of the
 * child waits for that. herd_child_close() calls herd__ipc_detach(). */
int herd__ipc_attach(herd_child_t* child, int fd, herd_serialization_t mode);
void herd__ipc_detach(herd_ipc_t* ipc);
void herd__child_channel_closed(herd_child_t* child);

/* The hook for the cluster module: internal messages (cmd NODE_*) other than
 * the NODE_HANDLE* family, and NODE_HANDLE messages whose inner message is
 * internal, go to this callback instead of being dropped. */
typedef void (*herd__ipc_internal_cb)(herd_ipc_t* ipc, const char* json,
                                      size_t len, herd_handle_t* handle);
void herd__ipc_set_internal_cb(herd_ipc_t* ipc, herd__ipc_internal_cb cb);

/* ipc module (json.c, ipc.c, fork.c)
 *
 * Notes for users of the hooks above: a channel parses nothing, internal
 * messages included, until herd_ipc_start() (NULL callbacks are fine), so
 * the cluster module must start every channel it uses. The internal callback
 * gets the whole line for a plain internal message and the inner `msg` for
 * a NODE_HANDLE (with the handle, after herd has sent the ACK); an fd not
 * taken with herd_handle_take()/herd_handle_open() is closed afterwards.
 * herd__ipc_attach() closes the fd itself when it fails.
 *
 * Out of memory: a channel just opened has room for 4 KiB of messages, so
 * its first ones (a worker's "online") queue without allocating and cannot
 * fail. A send made from the internal hook is an answer the peer waits for:
 * when it fails for want of memory (the send returns UV_ENOMEM) the channel
 * ends with that error from the loop, so the hook must not act as if the
 * answer went (e.g. serve a connection it could not acknowledge). */

/* What herd__json_scan() learns about a message in the same pass that
 * validates it: the raw text of a top-level string member "cmd" (without
 * quotes, escapes not decoded), and whether a raw newline appeared between
 * tokens (a sender must turn it into a space). */
typedef struct {
  const char* cmd;
  size_t cmd_len;
  int newline;
} herd__json_info_t;

/* Validates `json` (grammar and UTF-8): 0, HERD_EBADJSON or HERD_EBADUTF8. */
int herd__json_scan(const char* json, size_t len, herd__json_info_t* info);
/* Node's isInternal(): cmd is a string longer than 5 starting with NODE_. */
int herd__json_is_internal(const herd__json_info_t* info);

/* cluster: the socket helpers (cluster_net.c), shared by the primary and
 * herd_server_t, and the worker side (cluster_worker.c, cluster_server.c).
 * The primary's own declarations are in cluster-int.h. */
/* cluster_net.c */
struct sockaddr_storage;
int herd__cluster_sockaddr(const char* host, int port, int* address_type,
                           struct sockaddr_storage* ss);
int herd__cluster_bind(const char* host, int port, int reuseport, int backlog,
                       int* fd, int* bound_port);
int herd__cluster_sockname(int fd, char* address, size_t cap, int* family,
                           int* port);

/* What a server or datagram socket is opened on: the targets of Node's
 * server.listen() and socket.bind(). */
typedef enum {
  HERD__SOCK_TCP = 0, /* address (numeric, NULL: any IPv4) and port */
  HERD__SOCK_PIPE,    /* a Unix socket path (address) */
  HERD__SOCK_FD,      /* an fd of this process: a stream socket */
  HERD__SOCK_UDP      /* address and port, or an fd of this process */
} herd__sock_kind_t;

typedef struct {
  herd__sock_kind_t kind;
  const char* address; /* TCP and UDP: numeric or NULL; PIPE: the path */
  int port;
  int fd;   /* FD; UDP: >= 0 to use that fd rather than bind */
  int udp6; /* UDP: an IPv6 socket */
  int ipv6only;
  int reuseaddr; /* UDP: SO_REUSEADDR (Node's reuseAddr) */
  int backlog;   /* stream sockets: > 0 listens, 0 only binds */
} herd__sock_t;

/* Opens what `s` describes: a new close-on-exec, non-blocking socket bound
 * (and listening with a backlog), or for an fd a close-on-exec duplicate,
 * checked to be a socket of the right kind that is not connected (never a
 * channel or a connection). *bound_port gets the port, -1 for a Unix
 * socket. Errors: UV_EINVAL (bad address, not such a socket), bind and
 * listen errors. */
int herd__sock_open(const herd__sock_t* s, int* fd, int* bound_port);
/* The port `fd` is bound to, or -1 for a Unix socket. */
int herd__sock_port(int fd);

/* cluster_worker.c <-> cluster_server.c, cluster_dgram.c: a worker's
 * server or datagram socket as the worker's side of the protocol sees it,
 * embedded in the private part of herd_server_t and herd_dgram_t. */
typedef struct herd__listener_s herd__listener_t;
struct herd__listener_s {
  herd__listener_t* next; /* in the worker's list while registered */
  /* Node's queryServer fields, as JSON values; an empty string leaves the
   * field out (undefined in Node). */
  char address[300];
  char port[24];
  char address_type[16];
  char fd[24];
  char flags[24];
  int backlog;
  int index;
  int64_t query_seq; /* the queryServer not answered yet, or -1 */
  char* key;         /* the primary's key once it answered */
  /* The primary's answer to the query. */
  void (*reply)(herd__listener_t* l, const char* json, size_t len,
                herd_handle_t* handle);
  /* A connection handed over with newconn; returns 0 when it was taken
   * (the fd is then the listener's). NULL: declines every one. */
  int (*newconn)(herd__listener_t* l, int fd);
  /* The worker disconnects: close it as the user would. */
  void (*close)(herd__listener_t* l);
};

/* Sends queryServer for `l` (its index counted as Node's worker does) and
 * registers it; the answer goes to l->reply. Returns 0, or
 * HERD_ECHANNELCLOSED, UV_ENOMEM (then nothing is registered). */
int herd__worker_query(herd__listener_t* l);
/* Sends {"act":"listening"} for `l` with the port it got (JSON). Returns
 * 0, or the send's error (then the channel ends: the listen failed). */
int herd__worker_listening(herd__listener_t* l, const char* port);
/* Tells the primary to forget the key of its answer `json` to a query
 * ({"act":"close"}): for an answer that could not be taken. */
void herd__worker_forget(const char* json, size_t len);
/* Takes `l` out: forgets its index, tells the primary to forget its key
 * ({"act":"close"}), or does so when the answer to its query comes. */
void herd__worker_unlisten(herd__listener_t* l);
/* Whether this process is a worker whose channel is open. */
int herd__worker_connected(void);
/* A worker whose primary is gone (the channel closed). */
int herd__worker_orphan(void);
/* The poll of a server's listening socket, NULL under rr (for tests). */
uv_poll_t* herd__server_poll(herd_server_t* server);

#endif /* HERD_INTERNAL_H */
