/* Private declarations of the cluster primary, shared by cluster_primary.c,
 * cluster_env.c, cluster_protocol.c, cluster_handles.c, cluster_close.c and
 * the schedulers (cluster_rr.c, cluster_shared.c). Not installed. */
#ifndef HERD_CLUSTER_INT_H
#define HERD_CLUSTER_INT_H

#include "internal.h"

/* A handle is Node's RoundRobinHandle / SharedHandle: one per key
 * "<address>:<port>:<addressType>:<fd>:<index>", shared by the workers that
 * listen on it. */
typedef struct herd__cluster_handle_s herd__cluster_handle_t;

typedef struct {
  herd_worker_t* worker;
  int fd;      /* rr: the connection in flight to this worker, or -1 */
  int64_t seq; /* rr: the seq of the newconn carrying it */
  int leaving; /* rr: left the server, waits for the answer about `fd` */
} herd__cluster_member_t;

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
  int pinned; /* from herd_cluster_listen(): lives as long as the cluster */
  herd__cluster_member_t* members;
  int nmembers;
  int cap_members;
  int fd; /* rr: the listening socket; shared: the bound socket */
  /* rr */
  uv_poll_t poll;
  int polling;
  int poll_init;    /* poll and retry are initialised */
  uv_timer_t retry; /* resumes accepting after running out of fds */
  int closes;       /* handles still closing */
  int* pending;     /* accepted fds waiting for a free worker (a ring) */
  int pending_head;
  int pending_count;
  int pending_cap;
  herd_worker_t** free; /* workers ready for a connection, FIFO */
  int nfree;
  /* reuseport: one listening socket per worker slot, or -1 */
  int* slot_fds;
  int nslots;
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
  char* slots; /* slots[i] != 0: slot i is taken */
  int nslots;
  herd_cluster_cb disconnect_cb;
  int disconnecting;
  herd_cluster_cb close_cb;
  int closing;
  int closes_pending;
  char self_exe[4096];
};

struct herd_worker_private_s {
  int in_table;
  int fork_pending;
  int exited;
  int channel_closed;
  int64_t exit_code;
  int term_signal;
  char** envp;
};

/* cluster_primary.c */
void herd__cluster_freeze_policy(herd_cluster_t* cluster);
void herd__cluster_table_remove(herd_worker_t* worker);
void herd__cluster_idle_cb(uv_idle_t* idle);

/* cluster_env.c */
char** herd__cluster_env_build(herd_cluster_t* cluster, int id,
                               const char* const* extra);
void herd__cluster_env_free(char** envp);

/* cluster_handles.c */
herd__cluster_member_t* herd__cluster_member(herd__cluster_handle_t* handle,
                                             herd_worker_t* worker);
int herd__cluster_member_add(herd__cluster_handle_t* handle,
                             herd_worker_t* worker);
void herd__cluster_handle_free(herd__cluster_handle_t* handle);
herd__cluster_handle_t* herd__cluster_handle_find(herd_cluster_t* cluster,
                                                  const char* key);
herd__cluster_handle_t* herd__cluster_handle_new(herd_cluster_t* cluster,
                                                 const char* key,
                                                 const char* address,
                                                 int address_type, int port,
                                                 int backlog);
void herd__cluster_handle_discard(herd__cluster_handle_t* handle);
int herd__cluster_handle_open(herd__cluster_handle_t* handle);
void herd__cluster_handles_leave(herd_worker_t* worker, int graceful);

/* cluster_protocol.c */
int64_t herd__cluster_send(herd_worker_t* worker, const char* fields, int fd);
void herd__cluster_on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                               herd_handle_t* handle);

/* cluster_close.c */
/* cluster_rr.c reports that a closed handle's memory is gone. */
void herd__cluster_handle_gone(herd_cluster_t* cluster);
void herd__cluster_maybe_finish(herd_cluster_t* cluster);

/* cluster_rr.c */
int herd__rr_open(herd__cluster_handle_t* handle);
void herd__rr_add(herd__cluster_handle_t* handle, herd_worker_t* worker);
int herd__rr_ack(herd__cluster_handle_t* handle, herd_worker_t* worker,
                 int64_t ack, int accepted);
int herd__rr_remove(herd__cluster_handle_t* handle, herd_worker_t* worker,
                    int graceful);
void herd__rr_close(herd__cluster_handle_t* handle);

/* cluster_shared.c (shared and reuseport) */
int herd__shared_open(herd__cluster_handle_t* handle);
int herd__shared_add(herd__cluster_handle_t* handle, herd_worker_t* worker);
int herd__shared_remove(herd__cluster_handle_t* handle, herd_worker_t* worker);
void herd__shared_close(herd__cluster_handle_t* handle);

#endif /* HERD_CLUSTER_INT_H */
