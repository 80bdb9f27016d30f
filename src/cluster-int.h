/* Private declarations of the cluster primary, shared by its files:
 * cluster_primary.c (fork, the worker table, slots, process events),
 * cluster_env.c, cluster_protocol.c, cluster_handles.c, cluster_replace.c,
 * cluster_close.c and the schedulers (cluster_rr.c, cluster_shared.c,
 * cluster_reuseport.c). Not installed. */
#ifndef HERD_CLUSTER_INT_H
#define HERD_CLUSTER_INT_H

#include "internal.h"

/* Defaults of herd_cluster_settings_t's kill_timeout and listen_timeout. */
#define HERD__KILL_TIMEOUT_DEFAULT   30000
#define HERD__LISTEN_TIMEOUT_DEFAULT 30000

/* A handle is Node's RoundRobinHandle / SharedHandle (or herd's reuseport
 * group): one per key "<address>:<port>:<addressType>:<fd>:<index>", shared
 * by the workers that listen on it, its members. */
typedef struct herd__cluster_handle_s herd__cluster_handle_t;

typedef struct {
  herd_worker_t* worker;
  int slot;         /* reuseport: the slot whose socket it was sent */
  int fd;           /* a connection in flight to it (newconn), or -1 */
  int64_t seq;      /* the seq of the newconn carrying fd */
  int delivered;    /* its channel acknowledged fd (NODE_HANDLE_ACK) */
  int leaving;      /* out of the server: stays for fd or its socket only */
  int holds_socket; /* reuseport: has its slot socket open */
  int listening;    /* it said so ({"act":"listening"}) */
  int mapped;       /* an adopted handle serves a listen() of another key */
} herd__cluster_member_t;

/* How a worker leaves a handle. */
typedef enum {
  /* The primary asked it to disconnect: it still answers for the
   * connection in flight and keeps its socket until it closes it. */
  HERD__LEAVE_ASKED,
  /* It closed its server ({"act":"close"}): it still answers for the
   * connection in flight. */
  HERD__LEAVE_CLOSED,
  /* Its channel closed or it exited: nothing more comes from it. */
  HERD__LEAVE_GONE
} herd__leave_t;

/* reuseport: one listening socket of the group, kept for a worker slot. */
typedef struct {
  herd__cluster_handle_t* handle;
  int slot;
  int fd;
  uv_poll_t poll; /* the primary drains the socket while nobody serves it */
  int polling;
  int served;              /* a listening member holds this slot */
  uint64_t unserved_since; /* loop time it stopped being served */
  int adopted;             /* a copy of the caller's socket: it stays */
} herd__cluster_slot_t;

struct herd__cluster_handle_s {
  herd__cluster_handle_t* next;
  herd_cluster_t* cluster;
  herd_sched_policy_t kind;
  char* key;
  char* address; /* NULL: any */
  int address_type;
  int port;       /* as asked */
  int bound_port; /* the actual one */
  int backlog;
  int index;   /* the index in the key (a worker's nth listen on the port) */
  int pinned;  /* from herd_cluster_listen(): lives as long as the cluster */
  int adopted; /* herd__cluster_adopt(): the caller's sockets */
  int adopt_index;
  herd_listen_addr_t adopt_addr; /* new reuseport slots are bound to it */
  herd__cluster_member_t* members;
  int nmembers;
  int cap_members;
  int fd;            /* rr: the listening socket; shared: the bound socket */
  int closes;        /* libuv handles of this handle still closing */
  int freeing;       /* herd__cluster_handle_free() ran */
  int uv_init;       /* retry (and linger under reuseport) are initialised */
  uv_timer_t retry;  /* resumes accepting after a pause */
  int accept_paused; /* for a while: the retry timer resumes it */
  int full;          /* until the pending queue is short again */
  /* The connections the primary accepted (rr: all; reuseport: those it
   * drains) wait in `pending` for a worker in `free`. */
  int* pending; /* a ring; room is kept for every connection in flight */
  int pending_head;
  int pending_count;
  int pending_cap;
  int inflight;         /* connections in flight to members */
  herd_worker_t** free; /* members ready for a connection, FIFO */
  int nfree;
  /* rr */
  uv_poll_t poll;
  int polling;
  /* reuseport */
  herd__cluster_slot_t** slots; /* by slot number, NULL: no socket */
  int nslots;
  int* group; /* slot numbers in the order of the kernel's group */
  int ngroup;
  int* steer; /* the group indices the attached program picks from */
  int nsteer; /* 0: no program attached */
  int steer_failed;
  uv_timer_t linger; /* closes sockets nobody serves any more */
  /* What the workers asked for, beyond a TCP address (cluster_protocol.c):
   * a Unix socket path (`address`), an fd of the primary, or UDP. */
  herd__sock_kind_t sock_kind;
  int sock_fd; /* FD, and UDP from an fd: the primary's fd (-1: none) */
  int udp6;
  int ipv6only;
  int reuseaddr;
  char* port_text; /* the port as the key has it ("0", "undefined", ...) */
  int unlink_path; /* PIPE: the primary bound `address` and removes it */
};

struct herd_cluster_private_s {
  int64_t seq; /* Node's per-process NODE_CLUSTER seq */
  int next_id;
  int policy_frozen;
  herd_worker_t* head; /* every worker not yet freed, in id order */
  herd_worker_t* tail;
  int live;
  herd__cluster_handle_t* handles;
  uv_idle_t idle; /* runs fork callbacks from the loop */
  int forks_pending;
  int* slots; /* slots[i]: workers in the table holding slot i */
  int nslots;
  int replacing;    /* successors of herd_worker_replace() not ready yet */
  uv_timer_t timer; /* kill and listen deadlines */
  herd_cluster_cb disconnect_cb;
  int disconnecting;
  herd_cluster_cb close_cb;
  int closing;
  int closes_pending;
  /* herd__cluster_adopt(): handles of the caller's sockets, and who hears
   * how a worker's listen() was mapped onto them (h NULL: refused).
   * adopt_only: the caller said where to listen (even if none of it could
   * be adopted, e.g. only unix addresses): a listen() no adopted socket
   * serves is refused, never bound afresh. */
  int nadopted;
  int adopt_only;
  void (*map_cb)(herd_cluster_t* cluster, herd_worker_t* worker,
                 const char* asked, const herd__cluster_handle_t* h);
  char self_exe[4096];
  /* The primary's own arguments (argv[1..] from /proc/self/cmdline), the
   * default args of workers running this program again; read once. */
  char* self_cmdline;
  char** self_args;
  /* Setup events asked for (setup_primary() and forks) and run so far. */
  uint64_t setups_asked;
  uint64_t setups_run;
};

struct herd_worker_private_s {
  int in_table;
  int slot_held;
  int fork_pending;
  int exited;
  int channel_closed;
  int64_t exit_code;
  int term_signal;
  char** envp;
  char** extra_env; /* the env of herd_cluster_fork(), for a successor */
  uint64_t kill_at; /* loop time of the SIGKILL after a disconnect, or 0 */
  /* herd_worker_replace(): on the successor until it is ready. */
  herd_worker_t* predecessor;
  herd_worker_replace_cb replace_cb;
  int replace_pending;
  uint64_t listen_by;
  int replace_done; /* its callback is owed, with replace_status */
  int replace_status;
  /* On the predecessor: its successor, not ready yet. */
  herd_worker_t* successor;
  herd_worker_callbacks_t cb; /* herd_worker_on() */
  uint64_t setup_seq;         /* the setup events due before its fork's */
};

/* cluster_primary.c */
void herd__cluster_freeze_policy(herd_cluster_t* cluster);
void herd__cluster_table_remove(herd_worker_t* worker);
void herd__cluster_idle_cb(uv_idle_t* idle);
/* Forks a worker in `slot` (-1: the lowest free one). */
int herd__cluster_fork(herd_cluster_t* cluster, const char* const* env,
                       int slot, herd_worker_t** worker);
/* Runs the worker's fork event if it is still owed: before any other. */
void herd__cluster_fork_event(herd_worker_t* worker);
/* Whether a worker in the table holds `slot`. */
int herd__cluster_slot_taken(herd_cluster_t* cluster, int slot);
/* Runs the setup events owed up to number `upto`. */
void herd__cluster_setup_events(herd_cluster_t* cluster, uint64_t upto);
/* A worker's error event: its own callback, then the cluster's. */
void herd__worker_emit_error(herd_worker_t* worker, int err);

/* cluster_worker.c: the worker process's own herd_worker_t
 * (herd_cluster_worker_self()), whose cluster is NULL. */
int herd__worker_self_disconnect(void);
int herd__worker_self_kill(void);

/* cluster_env.c */
char** herd__cluster_env_build(herd_cluster_t* cluster, int id,
                               const char* const* extra);
char** herd__cluster_env_copy(const char* const* env);
void herd__cluster_env_free(char** envp);

/* cluster_handles.c */
herd__cluster_member_t* herd__cluster_member(herd__cluster_handle_t* handle,
                                             herd_worker_t* worker);
int herd__cluster_member_add(herd__cluster_handle_t* handle,
                             herd_worker_t* worker);
/* Whether the member may be handed connections. */
int herd__cluster_member_active(const herd__cluster_member_t* m);
/* Takes the worker out of the handle as `how` says. Returns 1 when the
 * handle has no member left and is not pinned: the caller releases it. */
int herd__cluster_member_leave(herd__cluster_handle_t* handle,
                               herd_worker_t* worker, herd__leave_t how);
/* Drops a member that owes nothing any more (fd < 0, no socket), else
 * nothing; returns as herd__cluster_member_leave(). */
int herd__cluster_member_settle(herd__cluster_handle_t* handle,
                                herd__cluster_member_t* m);
herd__cluster_handle_t* herd__cluster_handle_find(herd_cluster_t* cluster,
                                                  const char* key);
herd__cluster_handle_t* herd__cluster_handle_new(herd_cluster_t* cluster,
                                                 const char* key,
                                                 const char* address,
                                                 int address_type, int port,
                                                 int backlog, int index);
void herd__cluster_handle_discard(herd__cluster_handle_t* handle);
/* slot: the socket to open first under reuseport. */
int herd__cluster_handle_open(herd__cluster_handle_t* handle, int slot);
/* The socket the handle opens, with `backlog` (0: bound only). */
void herd__cluster_handle_sock(const herd__cluster_handle_t* handle,
                               herd__sock_t* sock, int backlog);
/* Unlinks the handle from the cluster and frees it. */
void herd__cluster_handle_release(herd__cluster_handle_t* handle);
/* Frees an unlinked handle: its sockets close now, its memory once the
 * libuv handles it owns have closed. */
void herd__cluster_handle_free(herd__cluster_handle_t* handle);
/* Closes a libuv handle of `handle`; the handle's memory waits for it. */
void herd__cluster_handle_close_uv(herd__cluster_handle_t* handle,
                                   uv_handle_t* uvh, uv_close_cb cb);
/* The close callback's part: one libuv handle less. */
void herd__cluster_handle_uv_closed(herd__cluster_handle_t* handle);
void herd__cluster_handles_leave(herd_worker_t* worker, herd__leave_t how);

/* cluster_adopt.c: the caller's listening socket for `a` (under reuseport
 * one per slot, fds[0 .. nfds - 1] for slots 0 .. nfds - 1, in the order
 * they joined their group) becomes a pinned server handle; `index` is the
 * socket's place among the caller's (listen({fd: 3 + index})). The fds are
 * duplicated, never shut down. Errors: UV_EINVAL (not TCP), UV_EADDRINUSE
 * (the same address twice), UV_ECANCELED, UV_ENOMEM, dup() and poll
 * errors. */
int herd__cluster_adopt(herd_cluster_t* cluster, const herd_listen_addr_t* a,
                        const int* fds, int nfds, int index);
/* The adopted handle that serves a worker's listen(address, port) of
 * addressType `type` (or listen({fd}) when fd is not "undefined"), or NULL
 * with *err 0 when nothing was adopted, UV_EADDRNOTAVAIL when none fits. */
herd__cluster_handle_t* herd__cluster_adopted_for(herd_cluster_t* cluster,
                                                  const char* address, int port,
                                                  int type, const char* fd,
                                                  int* err);
uint32_t herd__cluster_key_hash(const char* key);

/* cluster_protocol.c */
/* Sends {"cmd":"NODE_CLUSTER",<fields>,"seq":N} with fd (-1: none) and
 * returns N, or a negative error. cb (may be NULL) gets N as its arg. */
int64_t herd__cluster_send(herd_worker_t* worker, const char* fields, int fd,
                           herd_ipc_send_cb cb);
/* The same with an fd of handle type `type` ("net.Native",
 * "dgram.Native"). */
int64_t herd__cluster_send_typed(herd_worker_t* worker, const char* fields,
                                 int fd, const char* type, herd_ipc_send_cb cb);
void herd__cluster_on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                               herd_handle_t* handle);

/* cluster_replace.c */
/* Hands over from predecessors whose successors are ready. */
void herd__cluster_replace_check(herd_cluster_t* cluster);
/* Ends the replacement `successor` is part of with `status`. */
void herd__cluster_replace_end(herd_worker_t* successor, int status);
/* Runs the replacement callback owed to `successor`, if any. */
void herd__cluster_replace_flush(herd_worker_t* successor);
/* The worker is freed: it is nobody's predecessor any more. */
void herd__cluster_replace_forget(herd_worker_t* worker);

/* cluster_close.c */
/* A libuv handle of the cluster (or one of its server handles) closed. */
void herd__cluster_handle_gone(herd_cluster_t* cluster);
void herd__cluster_maybe_finish(herd_cluster_t* cluster);
/* Gives a worker the kill timeout (once), and arms the cluster's timer. */
void herd__cluster_kill_later(herd_worker_t* worker);
/* Re-arms the cluster's timer for the earliest deadline. */
void herd__cluster_arm_timer(herd_cluster_t* cluster);
/* Stops a worker that must go: disconnect if it can still hear it, the kill
 * timeout in any case. */
void herd__cluster_stop_worker(herd_worker_t* worker);

/* cluster_rr.c: round-robin, and the primary's handing of the connections
 * it accepted to workers one at a time (rr, and reuseport's drains). */
int herd__rr_open(herd__cluster_handle_t* handle);
void herd__rr_close(herd__cluster_handle_t* handle);
/* A member that may be given connections: the next one, or a place in
 * the free list. */
void herd__dispatch_join(herd__cluster_handle_t* handle, herd_worker_t* worker);
/* The member leaves the free list. */
void herd__dispatch_forget(herd__cluster_handle_t* handle,
                           herd_worker_t* worker);
/* Accepts from the listening socket `fd`, up to a batch, and hands the
 * connections out; pauses accepting when it cannot go on (out of fds or
 * memory, a full queue, an error). */
void herd__dispatch_accept(herd__cluster_handle_t* handle, int fd);
/* A connection goes back first in line (its member left or declined). */
void herd__dispatch_requeue(herd__cluster_handle_t* handle, int fd);
/* The worker's answer to the newconn in flight to member m. Returns 1 when
 * the handle must be released. */
int herd__dispatch_ack(herd__cluster_handle_t* handle,
                       herd__cluster_member_t* m, int accepted);
/* The IPC callback of a newconn: arg is its seq. */
void herd__dispatch_sent(herd_ipc_t* ipc, int status, void* arg);
/* Stops accepting for a while (a poll error, out of fds). */
void herd__dispatch_pause(herd__cluster_handle_t* handle);
/* Resumes accepting (poll) if nothing holds it back. */
void herd__dispatch_resume(herd__cluster_handle_t* handle);
void herd__dispatch_close(herd__cluster_handle_t* handle);

/* cluster_shared.c */
int herd__shared_open(herd__cluster_handle_t* handle);
void herd__shared_close(herd__cluster_handle_t* handle);

/* cluster_reuseport.c */
int herd__reuseport_open(herd__cluster_handle_t* handle, int slot);
/* Takes copies of the caller's slot sockets for slots 0 .. nfds - 1. */
int herd__reuseport_adopt(herd__cluster_handle_t* handle, const int* fds,
                          int nfds);
/* The socket of member m's slot (opened if needed), or a negative error. */
int herd__reuseport_socket(herd__cluster_handle_t* handle,
                           herd__cluster_member_t* m);
/* Recomputes which sockets are served, steers new connections to them,
 * drains the others, and closes those nobody needs. */
void herd__reuseport_update(herd__cluster_handle_t* handle);
/* Starts or stops the drains as accepting allows. */
void herd__reuseport_resume(herd__cluster_handle_t* handle);
void herd__reuseport_pause(herd__cluster_handle_t* handle);
void herd__reuseport_close(herd__cluster_handle_t* handle);

#endif /* HERD_CLUSTER_INT_H */
