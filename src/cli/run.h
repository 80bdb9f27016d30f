/* `herd run`: what the command line (run.c) hands to the pool runner
 * (run_pool.c). */
#ifndef HERD_CLI_RUN_H
#define HERD_CLI_RUN_H

#include <herd.h>
#include <sys/types.h>

/* Defaults; docs/run.md gives the reasons. */
#define DEFAULT_READY_DELAY_MS      1000 /* einhorn's timer ACK */
#define DEFAULT_READY_TIMEOUT_MS    30000
#define DEFAULT_GRACEFUL_TIMEOUT_MS 10000 /* as herd demo */
#define DEFAULT_MAX_RESTARTS        10
#define DEFAULT_RESTART_WINDOW_MS   60000
#define MAX_DURATION_MS             (7ULL * 24 * 3600 * 1000)
#define MAX_WORKERS                 1024
#define MAX_NAME                    64

typedef enum {
  READY_AUTO = 0, /* listening for Node, else READY=1 or the delay */
  READY_LISTENING,
  READY_NOTIFY,
  READY_DELAY
} ready_mode_t;

typedef struct {
  const char* text; /* as given, for messages */
  herd_listen_addr_t addr;
  int fd;
  int error; /* its name did not resolve: reported where binding is */
} run_listen_t;

typedef struct {
  int workers; /* 0 until resolved: auto */
  run_listen_t* listen;
  int nlisten;
  int inherited;  /* listen[] came from LISTEN_FDS */
  char** fdnames; /* their LISTEN_FDNAMES (herd_sd_names_free()) */
  herd_sched_policy_t policy;
  int policy_set;
  const char* name;
  char default_name[MAX_NAME + 1]; /* without --name: from the program's */
  ready_mode_t ready;
  uint64_t ready_delay_ms;
  uint64_t ready_timeout_ms;
  uint64_t graceful_timeout_ms;
  int stop_signal;
  int stop_signal_set; /* --stop-signal was given */
  int max_restarts;
  uint64_t restart_window_ms;
  const char** env; /* "K=V", NULL-terminated */
  int nenv;
  const char* user; /* --user as given */
  char* user_name;  /* for initgroups(); NULL for a uid without a name */
  uid_t uid;
  gid_t gid;
  int check;
  const char* program; /* as given */
  char* path;          /* as found */
  char** args;         /* after the program */
  int node;            /* the program speaks Node's cluster protocol */
} run_options_t;

/* Sets the pool up from the checked options: herd's output as logs, the
 * sd_notify client, the supervisor (which binds the reuseport sockets of
 * the initial slots: before the privilege drop). Returns 0, or an exit
 * status after a message. */
int run_pool_prepare(run_options_t* o);
/* Starts the pool and runs it until it stops; returns herd's exit status
 * (0 after a clean stop, 1 after giving up or a failure, 128 + N after a
 * stop by signal N that had to kill). Releases what run_pool_prepare()
 * set up. */
int run_pool_run(run_options_t* o);
/* Releases what run_pool_prepare() set up, without running. */
void run_pool_abandon(void);

#endif /* HERD_CLI_RUN_H */
