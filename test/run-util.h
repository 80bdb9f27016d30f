/* Running `herd run` in tests: herd as a child on a loop of the test's,
 * its stderr and stdout collected, its sd_notify messages received on a
 * NOTIFY_SOCKET of the test's, and waits with deadlines. */
#ifndef HERD_TEST_RUN_UTIL_H
#define HERD_TEST_RUN_UTIL_H

#include "task.h"

#define HR_MAX_NOTES 256

typedef struct {
  uv_loop_t loop;
  herd_child_t child;
  herd_sd_notify_socket_t notify;
  uv_timer_t tick;
  pid_t pid;
  char* out; /* what herd wrote on stdout / stderr so far, NUL-terminated */
  size_t out_len;
  char* err;
  size_t err_len;
  int exited;
  int64_t status;
  int term_signal;
  int closed;
  /* sd_notify messages from herd, in order: 'R' READY=1, 'L' RELOADING=1,
   * 'S' STOPPING=1 (one letter per assignment, in message order). */
  char notes[HR_MAX_NOTES];
  int nnotes;
  int ready;                          /* READY=1 received */
  int reloading;                      /* RELOADING=1 received */
  int watchdogs;                      /* WATCHDOG=1 received */
  uint64_t watchdog_ms[HR_MAX_NOTES]; /* when each came (tc_now_ms()) */
  /* Every message as received, each followed by an empty line. */
  char* msgs;
  size_t msgs_len;
  int port; /* from "listening on 127.0.0.1:PORT" */
} hr_t;

/* The herd binary of the build. */
const char* hr_herd(void);
/* The fd3-http example of the build. */
const char* hr_fd3_http(void);
/* Starts `herd` with args (argv without argv[0]) and env entries added;
 * stdin is /dev/null. */
void hr_start(hr_t* h, const char* const* args, const char* const* env);
/* The same with another program (e.g. unshare or systemd-socket-activate
 * running herd). */
void hr_start_file(hr_t* h, const char* file, const char* const* args,
                   const char* const* env);
/* Runs the loop until cond(h, arg) holds or `ms` pass; returns whether it
 * held. */
int hr_wait(hr_t* h, int (*cond)(hr_t* h, void* arg), void* arg, int ms);
/* Waits for the n-th READY=1 (1 at start, one more after each reload). */
int hr_wait_ready(hr_t* h, int n, int ms);
/* Waits until stderr holds `text`. */
int hr_wait_err(hr_t* h, const char* text, int ms);
/* Waits for herd's port ("listening on 127.0.0.1:PORT"); fails the test if
 * it does not come. */
int hr_port(hr_t* h, int ms);
/* Waits for herd to exit; returns 1 if it did. */
int hr_wait_exit(hr_t* h, int ms);
/* Sends a signal to herd. */
void hr_kill(hr_t* h, int sig);
/* The pids of herd's workers (its children but the sentinel), sorted;
 * returns how many. */
int hr_workers(hr_t* h, int* pids, int cap);
/* Waits until herd has exactly `n` workers none of which is in old[0..nold)
 * and every one of old[] is gone; fills pids. Returns 1 if it happened. */
int hr_wait_new_workers(hr_t* h, const int* old, int nold, int n, int* pids,
                        int ms);
/* A worker program that does what its mode file says, so that a test can
 * deploy a new version by rewriting the file (hr_deploy()). Modes, with
 * an argument:
 *   serve        exec fd3-http
 *   exit N       exit with status N at once
 *   slow S       sleep S seconds, then exec fd3-http (READY=1 late)
 *   never        never ready: sleep, silent
 *   hang         ignore SIGTERM, with children in its group
 *   crash MS     silent, exit 1 after MS ms
 *   orphans N    leave N orphans (each outlives its parent, a subshell,
 *                by 0.1 s), then exec fd3-http
 *   usr1         says "got USR1" on stdout for each SIGUSR1
 *   split        slot 1 exits with status 2 at once, the others serve
 *   leave        starts `sleep 1000` in its group (pid in <mode file>.child)
 *                and exits with status 3
 *   id           says "id=$HERD_WORKER_ID pid=$$ uid=<uid>" on stdout, then
 *                exec fd3-http (same pid)
 * Returns the script's path (static buffer). */
const char* hr_script(const char* mode);
/* The mode file's path. */
const char* hr_mode_path(void);
/* Rewrites the mode file of hr_script(). */
void hr_deploy(const char* mode);
/* Removes the script and its mode file. */
void hr_script_remove(void);
/* Kills herd if it still runs, closes everything, checks the loop. */
void hr_finish(hr_t* h);

#endif
