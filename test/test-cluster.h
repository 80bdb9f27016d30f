/* Shared pieces of the cluster and cli tests: a blocking HTTP client, a
 * way to run client code on a thread while the loop runs, process probes. */
#ifndef HERD_TEST_CLUSTER_H
#define HERD_TEST_CLUSTER_H

#include "task.h"

/* One GET / on a new connection with `Connection: close`, waiting up to
 * `ms` in total. Returns the status code and the body (NUL-terminated, cut
 * to cap) or -1 on a connect/read failure or timeout. */
int tc_http_get(int port, char* body, size_t cap, int ms);
/* Opens a connection and sends one GET / (Connection: close); -1 on error. */
int tc_http_send(int port);
/* Reads the answer to tc_http_send() (closes fd). As tc_http_get(). */
int tc_http_recv(int fd, char* body, size_t cap, int ms);

/* ab (apache2-utils) running on a loop, its output in a temporary file. */
typedef struct tc_ab_s {
  herd_child_t child;
  char out_path[64];
  void (*done)(struct tc_ab_s* ab); /* after it exited (may be NULL) */
  void* data;
  int closed;
  int64_t status; /* its exit status */
  long long complete, failed, non2xx;
  char* out; /* its stdout, once closed */
} tc_ab_t;
/* Starts `ab -q -r -s 10 -n n -c c [-k] http://127.0.0.1:port/`. The
 * results are filled in before done runs. */
void tc_ab_start(uv_loop_t* loop, tc_ab_t* ab, int port, int n, int c,
                 int keepalive);
/* Frees what tc_ab_start kept. */
void tc_ab_free(tc_ab_t* ab);

/* Runs fn(arg) on a thread; done(arg) runs on the loop's thread afterwards.
 * The job keeps the loop alive until done has run. */
typedef struct tc_job_s tc_job_t;
void tc_job_start(uv_loop_t* loop, void (*fn)(void* arg),
                  void (*done)(void* arg), void* arg);

/* The state letter of process `pid` from /proc ('R', 'S', 'T', 'Z', ...),
 * or 0 when it no longer exists. */
char tc_proc_state(int pid);
/* Waits up to ms for `pid` to reach state `state`; returns 1 if it did. */
int tc_wait_state(int pid, char state, int ms);
/* The pids of the children of `pid` (up to cap); returns how many. */
int tc_children(int pid, int* out, int cap);
/* Milliseconds on a monotonic clock. */
uint64_t tc_now_ms(void);
/* The "w<id>" a test worker answers with, parsed: the id, or -1. */
int tc_body_id(const char* body);

#endif

/* A primary for tests: counts every event, per worker id (< TC_MAX_IDS). */
#define TC_MAX_IDS 128
typedef struct tc_cluster_s tc_cluster_t;
struct tc_cluster_s {
  uv_loop_t loop;
  herd_cluster_t cluster;
  herd_cluster_settings_t settings;
  int want_listening; /* on_ready runs once this many have listened */
  void (*on_ready)(tc_cluster_t* t);
  void (*on_exit)(tc_cluster_t* t, herd_worker_t* w, int64_t code, int sig);
  void (*on_message)(tc_cluster_t* t, herd_worker_t* w, const char* json,
                     size_t len);
  void (*on_listening)(tc_cluster_t* t, herd_worker_t* w,
                       const herd_cluster_address_t* a);
  int ready;
  int forks, onlines, listenings, disconnects, exits, closed;
  int errors, last_error; /* error events */
  int port;               /* from the last listening event */
  int pid[TC_MAX_IDS];
  int state_seen[TC_MAX_IDS]; /* bit 0 fork, 1 online, 2 listening, 3 exit */
  int exited[TC_MAX_IDS];
  int64_t exit_code[TC_MAX_IDS];
  int exit_signal[TC_MAX_IDS];
  int exit_ead[TC_MAX_IDS]; /* exited_after_disconnect */
  int notifies[TC_MAX_IDS]; /* {"cmd":"notifyRequest"} messages */
  int served[TC_MAX_IDS];   /* responses the clients saw, by worker id */
  void* data;
};
/* Sets up t->loop and the cluster; the worker is `exec` with `args` (NULL:
 * the runner's helper cluster_worker on port 0). */
void tc_cluster_init(tc_cluster_t* t, herd_sched_policy_t policy,
                     const char* exec_path, const char* exec,
                     const char* const* args);
void tc_cluster_fork(tc_cluster_t* t, int n);
/* herd_cluster_close(); the loop then ends. */
void tc_cluster_finish(tc_cluster_t* t);
/* An on_exit that ends the test's cluster at the first exit. */
void tc_finish_on_exit(tc_cluster_t* t, herd_worker_t* w, int64_t code,
                       int sig);
/* Runs the loop to its end and checks the cluster closed. */
void tc_cluster_run(tc_cluster_t* t);
/* The worker id of a response body "w<id>" or "node<id>", counted in
 * t->served; -1 if none. */
int tc_count_body(tc_cluster_t* t, const char* body);
