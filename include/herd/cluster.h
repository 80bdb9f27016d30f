/* cluster for C: a primary forks workers that share server ports, as Node's
 * `cluster` module does, and speaks its wire protocol (NODE_CLUSTER messages)
 * so a herd primary can run Node worker scripts and the other way round.
 * Included by <herd.h>; do not include directly.
 *
 * Two halves:
 * - the primary: a herd_cluster_t on a loop forks workers (herd_fork with
 *   NODE_UNIQUE_ID=<id>) and owns the listening sockets;
 * - any process: herd_server_t, one listen call that binds by itself in a
 *   standalone process and asks the primary in a worker.
 * A worker process first calls herd_cluster_worker_setup(). */
#ifndef HERD_CLUSTER_H
#define HERD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the connections of one port are spread over the workers. */
typedef enum {
  /* HERD_SCHED_POLICY (rr, shared, reuseport), else NODE_CLUSTER_SCHED_POLICY
   * (rr, none), else HERD_SCHED_REUSEPORT (see docs/cluster.md for why). */
  HERD_SCHED_DEFAULT = 0,
  /* Node's SCHED_RR: the primary listens and accepts, and hands each
   * connection to the next free worker. Fair; no connection is lost when a
   * worker declines one or dies with one in flight. */
  HERD_SCHED_RR,
  /* Node's SCHED_NONE: the primary binds, every worker listens on the same
   * socket and accepts by itself. The kernel picks the worker. */
  HERD_SCHED_SHARED,
  /* One SO_REUSEPORT listening socket per worker slot, kept by the primary:
   * the kernel spreads connections by hash. While no worker listens on a
   * slot's socket, the primary steers new connections away from it (a BPF
   * program) and hands those queued there to the other workers; a worker
   * that takes the slot gets the same socket (docs/cluster.md). */
  HERD_SCHED_REUSEPORT
} herd_sched_policy_t;

/* The policy HERD_SCHED_DEFAULT stands for in this process (reads the
 * environment). */
herd_sched_policy_t herd_cluster_default_policy(void);
/* "default", "rr", "shared" or "reuseport"; "unknown" for any other value. */
const char* herd_sched_policy_name(herd_sched_policy_t policy);
/* Parses "rr", "shared", "none" (= shared) or "reuseport"; -1 if unknown. */
int herd_sched_policy_parse(const char* name);

/* 1 in a process started by a cluster primary (NODE_UNIQUE_ID was set at
 * start-up; herd_cluster_worker_setup() removes it, the answer stays 1). */
int herd_cluster_is_worker(void);
int herd_cluster_is_primary(void);

/* Node's worker.state. */
typedef enum {
  HERD_WORKER_NONE = 0, /* forked, not online yet */
  HERD_WORKER_ONLINE,
  HERD_WORKER_LISTENING,
  HERD_WORKER_DISCONNECTED, /* the channel closed, the process may live */
  HERD_WORKER_DEAD          /* the process exited */
} herd_worker_state_t;

typedef struct herd_cluster_s herd_cluster_t;
typedef struct herd_worker_s herd_worker_t;

/* What a worker listens on, as reported by its `listening` message. */
typedef struct herd_cluster_address_s {
  const char* address; /* NULL for "any address" */
  int port;            /* the actual port */
  int address_type;    /* 4, 6, or -1 (a pipe path) */
} herd_cluster_address_t;

/* Primary side events; every one may be NULL. A worker is valid from
 * herd_cluster_fork() until the exit callback has returned. */
typedef struct herd_cluster_callbacks_s {
  void (*fork)(herd_cluster_t* cluster, herd_worker_t* worker);
  /* The worker sent {"act":"online"}. */
  void (*online)(herd_cluster_t* cluster, herd_worker_t* worker);
  void (*listening)(herd_cluster_t* cluster, herd_worker_t* worker,
                    const herd_cluster_address_t* address);
  /* A user message (process.send() in the worker). `json` is valid during
   * the call only; `handle` as in herd_ipc_message_cb. */
  void (*message)(herd_cluster_t* cluster, herd_worker_t* worker,
                  const char* json, size_t len, herd_handle_t* handle);
  /* The worker's channel closed. */
  void (*disconnect)(herd_cluster_t* cluster, herd_worker_t* worker);
  /* The worker exited and its channel is closed: the last event of a worker,
   * whose memory is freed when this returns. exit_code is -1 when a signal
   * ended it (term_signal != 0). A worker that could not be started at all
   * ends here too, with exit_code -1, term_signal 0 and start_error set. */
  void (*exit)(herd_cluster_t* cluster, herd_worker_t* worker,
               int64_t exit_code, int term_signal);
  /* A worker's stdout (fd 1) or stderr (fd 2) output with `silent`; without
   * this callback that output is discarded. */
  void (*output)(herd_cluster_t* cluster, herd_worker_t* worker, int fd,
                 const char* buf, size_t len);
} herd_cluster_callbacks_t;

/* Node's cluster.settings. Strings and arrays are referenced, not copied:
 * they must stay valid while the cluster forks workers. */
typedef struct herd_cluster_settings_s {
  /* The worker program: a script for exec_path, or an executable. NULL: this
   * program again (/proc/self/exe). */
  const char* exec;
  const char* const* args;      /* NULL-terminated, without argv[0] */
  const char* exec_path;        /* e.g. "node"; NULL: run `exec` itself */
  const char* const* exec_argv; /* options for exec_path */
  int silent; /* workers' stdout/stderr are pipes (see `output`) */
  /* Explicit stdio for the workers (must contain one HERD_STDIO_IPC
   * entry); 0 entries: inherit x3 + ipc, or pipes with `silent`. */
  const herd_stdio_t* stdio;
  int stdio_count;
  const char* cwd;
  /* "K=V" entries added to every worker's environment (which is otherwise
   * the primary's); NULL-terminated, may be NULL. */
  const char* const* env;
  herd_sched_policy_t policy; /* fixed at the first fork */
  /* Milliseconds a worker the primary let go (herd_worker_disconnect(),
   * herd_cluster_disconnect(), herd_cluster_close(), the predecessor or a
   * failed successor of herd_worker_replace()) has to exit before herd
   * sends it SIGKILL, as nginx's master does after worker_shutdown_timeout.
   * 0: 30000. Negative: wait as long as it takes (Node's behaviour). */
  int kill_timeout;
  /* Milliseconds a successor of herd_worker_replace() has to listen on its
   * predecessor's servers. 0: 30000. */
  int listen_timeout;
  /* Every other spawn option of herd_spawn() for the workers, as Node's
   * cluster.settings passes uid, gid and the like on to child_process:
   * flags (HERD_SPAWN_SETUID/SETGID with uid/gid, DETACHED,
   * PROCESS_GROUP), parent_death_signal, kill_signal, listen_fds,
   * serialization (Node's settings.serialization: the cluster protocol
   * works in both), ... The
   * cluster's own fields above win over spawn.cwd, and herd sets env,
   * stdio and the callbacks itself (spawn.env, spawn.stdio and the
   * callbacks are ignored). All-zero: herd_spawn()'s defaults. */
  herd_spawn_options_t spawn;
} herd_cluster_settings_t;

/* Public fields are read-only. */
struct herd_worker_s {
  void* data; /* free for the user */
  herd_cluster_t* cluster;
  int id; /* 1, 2, ... in fork order, never reused */
  /* The lowest slot no worker in the table held at fork (0 .. workers - 1
   * while none is leaving), or its predecessor's (herd_worker_replace()).
   * Under reuseport each slot has its own listening socket. */
  int slot;
  pid_t pid; /* 0 if the program could not be started */
  herd_worker_state_t state;
  int exited_after_disconnect; /* exited after disconnect()/kill() by us */
  int start_error;             /* spawn error (UV_ENOENT, ...), else 0 */
  herd_child_t child;          /* the process; child.channel is the IPC */
  /* private */
  herd_worker_t* next;
  herd_worker_t* prev;
  struct herd_worker_private_s* priv;
};

typedef void (*herd_cluster_cb)(herd_cluster_t* cluster);

struct herd_cluster_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  herd_cluster_callbacks_t cb;
  herd_cluster_settings_t settings;
  herd_sched_policy_t policy; /* the effective one, fixed at first fork */
  int workers;                /* workers in the table */
  /* private */
  struct herd_cluster_private_s* priv;
};

/* Initialises a primary on `loop` with its callbacks (copied; may be NULL).
 * Settings start as zero (this program again, policy from the environment).
 * The primary holds a handle on the loop until herd_cluster_close() has
 * completed. Errors: UV_ENOMEM. */
int herd_cluster_init(uv_loop_t* loop, herd_cluster_t* cluster,
                      const herd_cluster_callbacks_t* callbacks);
/* Node's setupPrimary(): replaces the settings for later forks (the
 * scheduling policy only until the first fork or herd_cluster_listen(),
 * which fix it in cluster->policy). */
void herd_cluster_setup_primary(herd_cluster_t* cluster,
                                const herd_cluster_settings_t* settings);

/* Forks a new worker with `env` ("K=V", NULL-terminated, may be NULL) added
 * to its environment, and returns it in *worker (may be NULL). The fork
 * callback runs from the loop. Failures to start the program are reported
 * through exit (with start_error), as in Node. Errors: UV_ENOMEM,
 * UV_EINVAL (bad settings), UV_ECANCELED (the cluster is closing). */
int herd_cluster_fork(herd_cluster_t* cluster, const char* const* env,
                      herd_worker_t** worker);

/* The table of workers (Node's cluster.workers): every worker that has not
 * left it yet, in id order. A worker leaves the table when it has both
 * disconnected and exited, or when herd_worker_disconnect() is called. */
herd_worker_t* herd_cluster_first(herd_cluster_t* cluster);
herd_worker_t* herd_cluster_next(herd_worker_t* worker);
/* The worker with id `id`, or NULL. */
herd_worker_t* herd_cluster_worker(herd_cluster_t* cluster, int id);

/* Opens, in the primary and before any worker asks, the server that workers
 * listening on host:port will share, so that a bad address or a port in use
 * is reported here, synchronously, and the port stays open while workers
 * come and go (connections wait, under rr in the primary, under reuseport
 * in the slot sockets). Workers must listen with the same host and port.
 * host NULL: any address (0.0.0.0). port 0 picks a free port, returned in
 * *bound_port (may be NULL). Errors: UV_EADDRINUSE, UV_EACCES, UV_EINVAL
 * (host is not a numeric address), UV_ENOMEM. */
int herd_cluster_listen(herd_cluster_t* cluster, const char* host, int port,
                        int backlog, int* bound_port);

/* Disconnects every worker (herd_worker_disconnect()); cb (may be NULL) runs
 * from the loop once every worker has exited and its channel closed (a
 * worker still alive kill_timeout later gets SIGKILL). Returns UV_EALREADY
 * if a disconnect is already running. */
int herd_cluster_disconnect(herd_cluster_t* cluster, herd_cluster_cb cb);

/* Sends `signum` (0: SIGTERM) to every worker process still alive, in the
 * table or not (a disconnecting worker has left the table). Returns how
 * many were signalled. */
int herd_cluster_kill(herd_cluster_t* cluster, int signum);

/* Closes the primary: disconnects the workers still alive, waits for them
 * to exit (one still alive kill_timeout after this call gets SIGKILL),
 * closes every server socket, and then calls close_cb (may be NULL) from
 * the loop. No fork after this call. The cluster memory may be reused after
 * close_cb. */
void herd_cluster_close(herd_cluster_t* cluster, herd_cluster_cb close_cb);

/* Sends a message (one JSON text, copied) to the worker. Returns as
 * herd_ipc_send(): 0, 1 (queued above the high-water mark),
 * HERD_ECHANNELCLOSED, HERD_EBADJSON, ... */
int herd_worker_send(herd_worker_t* worker, const char* json, size_t len);

/* Node's worker.kill(): sends `signum` (0: SIGTERM) to the worker.
 * Returns 0, UV_ESRCH if it has exited, or another negative errno. */
int herd_worker_kill(herd_worker_t* worker, int signum);

/* Node's worker.disconnect() in the primary: asks the worker to close its
 * servers and, once its in-flight work is done, to close the channel; it
 * then exits by itself, or is sent SIGKILL kill_timeout ms later. Sets
 * exited_after_disconnect and takes the worker out of the table and of
 * every server at once: it gets no new connection (a connection the primary
 * handed it stays its until it answers, and goes to another worker if it
 * declines or dies; under reuseport the connections waiting in its slot's
 * socket go to the other workers unless a worker takes the slot). Returns
 * 0 or HERD_ECHANNELCLOSED (the worker is let go all the same). */
int herd_worker_disconnect(herd_worker_t* worker);

/* The end of herd_worker_replace(), from the loop. status 0: the successor
 * listens on every server its predecessor listened on, and the predecessor
 * has been asked to disconnect (herd_worker_disconnect()). Otherwise the
 * successor failed and is being stopped (disconnect, then SIGKILL after
 * kill_timeout) while the predecessor keeps serving: its start error
 * (UV_ENOENT, ...), HERD_EWORKERDIED (it exited or its channel closed
 * first), UV_ETIMEDOUT (it did not listen within listen_timeout), or
 * UV_ECANCELED (herd_worker_disconnect() of the successor, or
 * herd_cluster_close()). `successor` is valid during the call; a failed one
 * still gets its exit event. */
typedef void (*herd_worker_replace_cb)(herd_worker_t* successor, int status);

/* Replaces a worker without losing a connection: forks a successor with
 * the cluster's current settings and the env the worker was forked with,
 * in the worker's slot (under reuseport it gets the same listening socket),
 * waits until it listens on every server the worker listens on, then
 * disconnects the worker gracefully (it serves what it has accepted, and is
 * killed if it has not exited after kill_timeout). Until then both serve.
 * The successor is a worker like any other (fork, online, listening
 * events), returned in *successor (may be NULL). A building block for
 * rolling restarts: setup_primary() a new `exec` first and every
 * replacement runs it. Errors: UV_EINVAL (the worker has left the table or
 * exited), UV_EBUSY (it is being replaced, or is a successor not ready
 * yet), UV_ECANCELED (the cluster is closing), and herd_cluster_fork()'s.
 * Not a Node API. */
int herd_worker_replace(herd_worker_t* worker, herd_worker_replace_cb cb,
                        herd_worker_t** successor);

/* Node's worker.isDead(): the process has exited. */
int herd_worker_is_dead(const herd_worker_t* worker);
/* Node's worker.isConnected(): its channel is open. */
int herd_worker_is_connected(const herd_worker_t* worker);
/* "none", "online", "listening", "disconnected", "dead". */
const char* herd_worker_state_name(herd_worker_state_t state);

/* Worker side. */

typedef struct herd_cluster_worker_options_s {
  /* User messages from the primary (process.on('message')). */
  herd_ipc_message_cb message;
  /* The primary asked this worker to disconnect. herd has already closed
   * every herd_server_t (no new connection arrives). The worker finishes
   * its in-flight work (e.g. herd_http_server_close()) and then calls
   * herd_cluster_worker_disconnect(), which flushes and closes the channel.
   * NULL: herd closes the channel at once. */
  void (*disconnect)(void);
  /* The channel closed while no disconnect was in progress: the primary
   * died. NULL: exit(0), as Node's workers do. */
  void (*orphaned)(void);
} herd_cluster_worker_options_t;

/* Makes this process a cluster worker: reads and removes NODE_UNIQUE_ID and
 * the channel variables, opens the channel to the primary on `loop`, asks
 * the kernel to send SIGTERM when the primary dies (PR_SET_PDEATHSIG, with a
 * check for a primary that died before), and sends {"act":"online"}. Once
 * per process. Errors: HERD_ENOTWORKER, UV_EALREADY, the channel's errors
 * (HERD_ENOCHANNEL, HERD_EBADPROTO, UV_EBADF), in either serialization
 * the primary chose. */
int herd_cluster_worker_setup(uv_loop_t* loop,
                              const herd_cluster_worker_options_t* options);
/* This worker's id (NODE_UNIQUE_ID), 0 if not a worker. */
int herd_cluster_worker_id(void);
/* The channel to the primary, NULL before setup or once it closed. */
herd_ipc_t* herd_cluster_worker_channel(void);
/* process.send(): sends a user message to the primary. Many sends in one
 * loop iteration go out in one write. Returns as herd_ipc_send(), or
 * HERD_ENOTWORKER. */
int herd_cluster_worker_send(const char* json, size_t len);
/* Node's worker.disconnect() in a worker: closes every herd_server_t, tells
 * the primary (exitedAfterDisconnect) unless the primary asked for it, and
 * closes the channel once queued messages are written. The loop then has
 * nothing of the cluster's left. */
void herd_cluster_worker_disconnect(void);

/* A listening server that works in any process (Node's net.Server.listen
 * as seen by cluster). */
typedef struct herd_server_s herd_server_t;

/* A connection is ready: call herd_server_accept() or
 * herd_server_accept_fd() during the callback, else herd closes it.
 * status < 0: accept failed and the server keeps listening. After a failure
 * that leaves the connection waiting (out of fds, UV_EMFILE or UV_ENFILE; out
 * of memory, UV_ENOBUFS or UV_ENOMEM) it pauses accepting for 100 ms rather
 * than spin on it; a connection reset before it was accepted is skipped
 * without a report. Never called before listen_cb. */
typedef void (*herd_server_connection_cb)(herd_server_t* server, int status);
/* The server listens (status 0) or could not (a negative error, e.g.
 * UV_EADDRINUSE from the primary; the server is then closed). */
typedef void (*herd_server_listen_cb)(herd_server_t* server, int status);
typedef void (*herd_server_close_cb)(herd_server_t* server);

struct herd_server_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  int port;                   /* the actual port once listening */
  herd_sched_policy_t policy; /* how connections reach it (0 standalone) */
  uint64_t connections;       /* connections delivered so far */
  /* private */
  struct herd_server_private_s* priv;
};

/* Initialises a caller-allocated server on `loop`. It holds a handle on the
 * loop until herd_server_close() completes, even if it never listens.
 * Errors: UV_ENOMEM. */
int herd_server_init(uv_loop_t* loop, herd_server_t* server);
/* Listens on host:port (host NULL: any address; a numeric IPv4 or IPv6
 * address otherwise). Standalone, the process binds and listens itself and
 * errors (UV_EADDRINUSE, ...) are returned here; in a worker (once
 * herd_cluster_worker_setup() has run; before, it binds by itself), the
 * primary is asked (queryServer) and its answer arrives in listen_cb. listen_cb
 * (may be NULL) runs from the loop, never from inside this call. In a worker
 * the primary learns of it ({"act":"listening"}). Errors: UV_EINVAL (bad host),
 * UV_EALREADY, HERD_ECHANNELCLOSED, socket errors. */
int herd_server_listen(herd_server_t* server, const char* host, int port,
                       int backlog, herd_server_connection_cb connection_cb,
                       herd_server_listen_cb listen_cb);
/* Takes the pending connection into `client`, an initialised uv_tcp_t.
 * Errors: UV_EAGAIN (no pending connection), what uv_tcp_open returns. */
int herd_server_accept(herd_server_t* server, uv_stream_t* client);
/* Takes the pending connection as a raw, connected, non-blocking,
 * close-on-exec fd that the caller owns (e.g. for herd_http_server_adopt).
 * Errors: UV_EAGAIN. */
int herd_server_accept_fd(herd_server_t* server, int* fd);
/* Stops listening; in a worker the primary is told ({"act":"close"}).
 * close_cb (may be NULL) runs from the loop. Safe to call twice. */
void herd_server_close(herd_server_t* server, herd_server_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_CLUSTER_H */
