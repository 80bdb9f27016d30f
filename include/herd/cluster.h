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

/* What a worker listens on, as reported by its `listening` message (Node's
 * `address` argument of the listening event). */
typedef struct herd_cluster_address_s {
  const char* address; /* NULL for "any address" (and an fd); the path of a
                          Unix socket */
  int port;            /* the actual port; -1 for a Unix socket */
  int address_type;    /* 4, 6, -1 (a Unix socket path), 0 (an fd: Node's
                          addressType null); 4 or 6 with `udp` */
  int udp; /* 1: a UDP socket (Node's addressType "udp4" or "udp6") */
  int fd;  /* listen({fd}): the primary's fd it names; else -1 */
} herd_cluster_address_t;

struct herd_cluster_settings_s;

/* Primary side events (Node's cluster.on(...)); every one may be NULL. A
 * worker is valid from herd_cluster_fork() until the exit callback has
 * returned. herd_worker_on() adds the events of one worker (Node's
 * worker.on(...)); a worker's own callback runs first, then the cluster's,
 * as Node emits them, except for `message`, where the cluster's runs first
 * (Node's cluster listens on the worker before the program can). */
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
  /* Node's 'setup' event: after each herd_cluster_setup_primary() and each
   * fork (Node's fork() calls setupPrimary() too), from the loop, in call
   * order (a fork's setup event comes before its fork event). `settings`
   * are those in force when the event runs. */
  void (*setup)(herd_cluster_t* cluster,
                const struct herd_cluster_settings_s* settings);
  /* Node's worker 'error', here for every worker (Node emits it on the
   * worker only): the program could not be started (`err` is start_error,
   * before the exit event), the worker's channel reported an error
   * (HERD_EBADJSON, HERD_ELINETOOLONG, HERD_EBADPROTO: the channel goes
   * on; a read or write error: it closes, the disconnect event follows),
   * or a herd_worker_send_ex() without a callback failed. Failures of a
   * call are returned by the call, not reported here. */
  void (*error)(herd_cluster_t* cluster, herd_worker_t* worker, int err);
} herd_cluster_callbacks_t;

/* Node's cluster.settings. Strings and arrays are referenced, not copied:
 * they must stay valid while the cluster forks workers. */
typedef struct herd_cluster_settings_s {
  /* The worker program: a script for exec_path, or an executable. NULL: this
   * program again (/proc/self/exe). */
  const char* exec;
  /* NULL-terminated, without argv[0]. NULL: with exec NULL (this program
   * again) the primary's own argv[1..], read from /proc/self/cmdline, as
   * Node's default is the primary script's process.argv.slice(2); with
   * another exec, none (Node passes the primary's arguments to any exec,
   * but a C program's arguments are its own: pass argv + 1 to get Node's
   * behaviour). An empty list ({NULL}) gives none in every case. */
  const char* const* args;
  const char* exec_path; /* e.g. "node"; NULL: run `exec` itself */
  /* Options for exec_path. NULL: none. Node's default is process.execArgv,
   * the options of the node binary running the primary; a C primary has
   * no interpreter options to pass on. */
  const char* const* exec_argv;
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
   * cluster.settings passes uid and gid on to child_process: flags
   * (HERD_SPAWN_SETUID/SETGID with uid/gid, which also drop the
   * supplementary groups as libuv does; DETACHED, PROCESS_GROUP, SHELL
   * with shell, ENV_EXTEND), argv0, serialization (Node's
   * settings.serialization: the cluster protocol works in both), timeout,
   * kill_signal, kill_grace, abort, parent_death_signal (kept by the
   * worker's setup, which asks for SIGTERM only when none is set).
   * spawn.env is the base environment in place of the primary's (or added
   * to it with HERD_SPAWN_ENV_EXTEND); `env` above and the cluster's
   * variables go on top. spawn.cwd and spawn.stdio serve when `cwd` and
   * `stdio` above are unset. Exceptions: listen_fds cannot be used (a
   * worker's fd 3 is its channel: herd_cluster_fork() returns UV_EINVAL),
   * and the callbacks (spawn_cb included) are the cluster's own (ignored).
   * All-zero: herd_spawn()'s defaults. */
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
 * which fix it in cluster->policy). The setup event follows, from the
 * loop. */
void herd_cluster_setup_primary(herd_cluster_t* cluster,
                                const herd_cluster_settings_t* settings);

/* Forks a new worker with `env` ("K=V", NULL-terminated, may be NULL) added
 * to its environment, and returns it in *worker (may be NULL). The setup
 * and then the fork callback run from the loop, as Node emits them. Failures to
 * start the program are reported through exit (with start_error), as in Node.
 * Errors: UV_ENOMEM, UV_EINVAL (bad settings), UV_ECANCELED (the cluster is
 * closing). */
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

/* Sends a message (one JSON text, copied) to the worker: Node's
 * worker.send(message). Returns as herd_ipc_send(): 0, 1 (queued above the
 * high-water mark), HERD_ECHANNELCLOSED, HERD_EBADJSON, ... A message the
 * channel later cannot write is not reported one by one: the channel
 * closes (disconnect event) after a write error (error event). With a
 * handle or a completion callback: herd_worker_send_ex(). */
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

/* Node's worker.on(event): callbacks for one worker, in addition to the
 * cluster-wide ones (see herd_cluster_callbacks_t for the order). Every
 * one may be NULL. In a worker process, herd_cluster_worker_self() has
 * message, disconnect and error (Node's cluster.worker emits no other). */
typedef struct herd_worker_callbacks_s {
  void (*online)(herd_worker_t* worker);
  void (*listening)(herd_worker_t* worker,
                    const herd_cluster_address_t* address);
  /* `json` valid during the call; `handle` as in herd_ipc_message_cb (the
   * cluster-wide message callback may have taken it already). */
  void (*message)(herd_worker_t* worker, const char* json, size_t len,
                  herd_handle_t* handle);
  /* The channel closed (in a worker: to the primary). */
  void (*disconnect)(herd_worker_t* worker);
  void (*exit)(herd_worker_t* worker, int64_t exit_code, int term_signal);
  /* As the cluster's error callback (in a worker: the channel to the
   * primary, and herd_worker_send_ex() without a callback). */
  void (*error)(herd_worker_t* worker, int err);
} herd_worker_callbacks_t;

/* Sets the worker's callbacks (copied; NULL clears them). To miss no event,
 * call it right after herd_cluster_fork() or in the fork callback: events
 * come from the loop. */
void herd_worker_on(herd_worker_t* worker,
                    const herd_worker_callbacks_t* callbacks);

/* The end of herd_worker_send_ex(): 0 once the message is written (and a
 * handle acknowledged by the peer), or HERD_ECHANNELCLOSED (the channel
 * closed first), HERD_EHANDLENACK (the peer refused the handle four
 * times), a write error. Runs from the loop, before the worker's
 * disconnect event. */
typedef void (*herd_worker_send_cb)(herd_worker_t* worker, int status,
                                    void* arg);

/* Node's worker.send(message, sendHandle, options, callback): sends one
 * JSON text (copied) with a libuv handle (uv_tcp_t server or socket,
 * uv_pipe_t, uv_udp_t; NULL for none), as herd_ipc_send_ex() does: the fd
 * is duplicated now; a connected socket sent without HERD_SEND_KEEP_OPEN
 * (Node's keepOpen) is closed by herd once the peer acknowledged it
 * (uv_close(handle, handle_close_cb)). cb (may be NULL) runs once, from
 * the loop; without it a failure is reported to the error callbacks, as
 * Node emits 'error' when send() has no callback. Works on
 * herd_cluster_worker_self() too (Node's process.send() from a worker).
 * Returns as herd_ipc_send_ex(): 0, 1 (queued above the high-water mark),
 * HERD_ECHANNELCLOSED, HERD_EBADJSON, HERD_EBADHANDLE, UV_ENOMEM; with an
 * error no callback runs. */
int herd_worker_send_ex(herd_worker_t* worker, const char* json, size_t len,
                        uv_handle_t* handle, unsigned flags,
                        uv_close_cb handle_close_cb, herd_worker_send_cb cb,
                        void* arg);

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
   * every herd_server_t and herd_dgram_t it got from the primary (no new
   * connection arrives; exclusive ones are the worker's to close, as in
   * Node). The worker finishes
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
/* Node's cluster.worker: this worker process's own herd_worker_t, NULL
 * before herd_cluster_worker_setup(); valid for the life of the process.
 * `id`, `pid`, `state` (online, listening once a server got its socket
 * from the primary, disconnected once the channel closed) and
 * `exited_after_disconnect` are kept up to date; `cluster` is NULL, `slot`
 * -1, child.channel the channel to the primary. The worker functions work
 * on it as Node's do in a worker: herd_worker_send() and
 * herd_worker_send_ex() (process.send()), herd_worker_is_connected(),
 * herd_worker_is_dead() (0: it runs), herd_worker_disconnect() (as
 * herd_cluster_worker_disconnect(); HERD_ECHANNELCLOSED once closed),
 * herd_worker_kill() (Node's worker.destroy(): says exitedAfterDisconnect,
 * closes the channel and exit(0)s; the signal is ignored, as in Node),
 * herd_worker_on() (message, disconnect, error; the worker's message
 * callback runs before options->message, as Node's cluster.worker listens
 * on the process first). herd_worker_replace() returns UV_EINVAL. */
herd_worker_t* herd_cluster_worker_self(void);
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
  int port; /* the actual port once listening; -1 on a Unix socket */
  herd_sched_policy_t policy; /* how connections reach it (0: it listens
                                 by itself, standalone or exclusive) */
  uint64_t connections;       /* connections delivered so far */
  /* private */
  struct herd_server_private_s* priv;
};

/* herd_server_options_t.flags. */
typedef enum {
  /* Node's listen({exclusive: true}): in a worker, bind and listen by
   * itself instead of sharing the primary's socket. The primary hears
   * nothing of it (no queryServer, no listening event), so listen(0) gets
   * a port of its own in each worker, and herd does not close it when the
   * worker disconnects (Node closes only the servers it got from the
   * primary): close it in the disconnect callback. */
  HERD_SERVER_EXCLUSIVE = (1 << 0),
  /* Listen on `fd` (Node's listen({fd})). In a worker the number names an
   * fd of the PRIMARY, which shares it as it shares a port, as Node does;
   * standalone or exclusive, one of this process. */
  HERD_SERVER_FD = (1 << 1),
  /* Node's ipv6Only: an IPv6 host accepts no IPv4 connections. */
  HERD_SERVER_IPV6ONLY = (1 << 2)
} herd_server_flags_t;

/* What a server listens on, as Node's server.listen(options): a TCP host
 * and port, a Unix socket `path`, or an `fd` (HERD_SERVER_FD). All-zero:
 * port 0 on any IPv4 address. */
typedef struct herd_server_options_s {
  const char* host; /* numeric IPv4 or IPv6 address; NULL: any (0.0.0.0) */
  int port;         /* 0: a free port (see herd_server_listen_ex) */
  /* A Unix socket path: listen there instead of host:port. A relative path
   * is resolved against the working directory, as Node's worker does. The
   * socket file is created by whoever binds it (this process standalone or
   * exclusive; the primary in a worker) and removed when that one closes
   * it, as libuv does; a path that exists already is UV_EADDRINUSE. */
  const char* path;
  int fd;         /* with HERD_SERVER_FD: a listening or bound stream socket */
  int backlog;    /* 0: 511 */
  unsigned flags; /* herd_server_flags_t */
} herd_server_options_t;

/* Initialises a caller-allocated server on `loop`. It holds a handle on the
 * loop until herd_server_close() completes, even if it never listens.
 * Errors: UV_ENOMEM. */
int herd_server_init(uv_loop_t* loop, herd_server_t* server);
/* Node's server.listen(options). Standalone (and with HERD_SERVER_EXCLUSIVE)
 * the process binds and listens itself and errors (UV_EADDRINUSE, ...) are
 * returned here; an fd is duplicated (the caller keeps its own). In a worker
 * (once herd_cluster_worker_setup() has run; before, it binds by itself)
 * the primary is asked (queryServer) and its answer arrives in listen_cb;
 * once listening the worker tells the primary ({"act":"listening"}).
 * listen_cb (may be NULL) runs from the loop, never from inside this call.
 * Node's listen(0) rules hold in a worker: the primary keys a server by
 * address, port, type, fd and the worker's count of listens on them, so
 * every worker's first listen(0) gets the same port, its second listen(0)
 * another port shared by every worker's second, and so on; exclusive
 * listen(0) gets a port of its own. Errors: UV_EINVAL (bad host, an empty
 * path, a negative fd, a path and HERD_SERVER_FD), UV_ENAMETOOLONG (the
 * path), UV_EALREADY, HERD_ECHANNELCLOSED (a worker whose primary is gone),
 * UV_ENOMEM, socket errors. */
int herd_server_listen_ex(herd_server_t* server,
                          const herd_server_options_t* options,
                          herd_server_connection_cb connection_cb,
                          herd_server_listen_cb listen_cb);
/* herd_server_listen_ex() on host:port (host NULL: any IPv4 address). */
int herd_server_listen(herd_server_t* server, const char* host, int port,
                       int backlog, herd_server_connection_cb connection_cb,
                       herd_server_listen_cb listen_cb);
/* Takes the pending connection into `client`: an initialised uv_tcp_t, or
 * a uv_pipe_t for a connection to a Unix socket. Errors: UV_EAGAIN (no
 * pending connection), UV_EINVAL (the other kind of handle; the connection
 * stays pending), what uv_tcp_open or uv_pipe_open returns. */
int herd_server_accept(herd_server_t* server, uv_stream_t* client);
/* Takes the pending connection as a raw, connected, non-blocking,
 * close-on-exec fd that the caller owns (e.g. for herd_http_server_adopt).
 * Errors: UV_EAGAIN. */
int herd_server_accept_fd(herd_server_t* server, int* fd);
/* Stops listening; in a worker the primary is told ({"act":"close"}).
 * close_cb (may be NULL) runs from the loop. Safe to call twice. */
void herd_server_close(herd_server_t* server, herd_server_close_cb close_cb);

/* A UDP socket that works in any process (Node's dgram socket.bind() as
 * seen by cluster). Standalone (and exclusive) it binds by itself; in a
 * worker the primary binds the socket and every worker that asks for the
 * same address and port gets it, as Node shares UDP sockets under every
 * scheduling policy (there are no connections to hand out): the kernel
 * gives each datagram to one of the workers reading. Once bound, `udp` is
 * an open libuv UDP handle: receive and send with uv_udp_recv_start(),
 * uv_udp_send() and the other uv_udp_* calls, but close it with
 * herd_dgram_close(), never uv_close(). */
typedef struct herd_dgram_s herd_dgram_t;
typedef void (*herd_dgram_bind_cb)(herd_dgram_t* dgram, int status);
typedef void (*herd_dgram_close_cb)(herd_dgram_t* dgram);

/* herd_dgram_options_t.flags. */
typedef enum {
  /* Node's bind({exclusive: true}): a worker binds by itself. */
  HERD_DGRAM_EXCLUSIVE = (1 << 0),
  /* bind({fd}): in a worker an fd of the PRIMARY, as in Node; standalone
   * or exclusive, one of this process. */
  HERD_DGRAM_FD = (1 << 1),
  HERD_DGRAM_REUSEADDR = (1 << 2), /* Node's reuseAddr: SO_REUSEADDR */
  HERD_DGRAM_IPV6ONLY = (1 << 3)   /* Node's ipv6Only */
} herd_dgram_flags_t;

/* Node's dgram.createSocket(type) + socket.bind(options). All-zero: udp4,
 * port 0 on 0.0.0.0. */
typedef struct herd_dgram_options_s {
  int ipv6;         /* 0: udp4; 1: udp6 */
  const char* host; /* numeric address; NULL: 0.0.0.0 or :: */
  int port;         /* 0: a free port, shared by the workers as listen(0) */
  int fd;           /* with HERD_DGRAM_FD: a UDP socket */
  unsigned flags;   /* herd_dgram_flags_t */
} herd_dgram_options_t;

struct herd_dgram_s {
  void* data; /* free for the user */
  uv_loop_t* loop;
  uv_udp_t udp;               /* bound once bind_cb ran with 0 (see above) */
  int port;                   /* the actual port once bound */
  herd_sched_policy_t policy; /* HERD_SCHED_SHARED: the primary's socket;
                                 0: bound by itself */
  /* private */
  struct herd_dgram_private_s* priv;
};

/* Initialises a caller-allocated datagram socket on `loop` (and `udp`, with
 * uv_udp_init). It holds handles on the loop until herd_dgram_close()
 * completes. Errors: UV_ENOMEM, what uv_udp_init returns. */
int herd_dgram_init(uv_loop_t* loop, herd_dgram_t* dgram);
/* Node's socket.bind(): binds (standalone, exclusive) or asks the primary
 * for the shared socket (in a worker; {"act":"listening"} follows, as
 * Node's worker sends it). bind_cb (may be NULL) runs from the loop, with 0
 * or an error (UV_EADDRINUSE, ... from the primary; the socket is then
 * closed). Errors returned: UV_EINVAL (bad host, an address of the other
 * family, a negative fd), UV_EALREADY, HERD_ECHANNELCLOSED, UV_ENOMEM, and
 * standalone the bind errors. */
int herd_dgram_bind(herd_dgram_t* dgram, const herd_dgram_options_t* options,
                    herd_dgram_bind_cb bind_cb);
/* Closes the socket; in a worker the primary is told ({"act":"close"}), as
 * Node's worker does. close_cb (may be NULL) runs from the loop; the memory
 * may be reused then. Safe to call twice. */
void herd_dgram_close(herd_dgram_t* dgram, herd_dgram_close_cb close_cb);

#ifdef __cplusplus
}
#endif
#endif /* HERD_CLUSTER_H */
