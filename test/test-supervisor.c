/* The supervisor module through its C API: a pool of real processes (the
 * fd3-http example, shell scripts that misbehave on purpose) on
 * loopback sockets, driven by events and checked with an HTTP client on a
 * thread. Each test is bounded by deadlines on the loop, not sleeps. */
#include "test-cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct sup_test_s sup_test_t;
struct sup_test_s {
  uv_loop_t loop;
  herd_supervisor_t sup;
  herd_supervisor_options_t opts;
  herd_supervisor_socket_t sock;
  herd_listen_addr_t addr;
  int fd;
  int port;
  uv_timer_t deadline;
  int closed;
  int stopped;
  /* Events seen, by type, in order. */
  int count[32];
  herd_supervisor_event_type_t order[MAX_EVENTS];
  int norder;
  herd_supervisor_event_t last[32]; /* the last of each type */
  int last_error;
  /* What the test does next, on an event. */
  void (*on_event)(sup_test_t* t, const herd_supervisor_event_t* e);
  void* data;
  char script[128];
  char mode_file[128];
};

static void on_deadline(uv_timer_t* timer) {
  (void)timer;
  FATAL("the test's deadline passed");
}

static void on_sup_event(herd_supervisor_t* s,
                         const herd_supervisor_event_t* e) {
  sup_test_t* t = s->data;
  ASSERT((int)e->type < 32);
  t->count[e->type]++;
  t->last[e->type] = *e;
  t->last[e->type].text = NULL;
  if (t->norder < MAX_EVENTS)
    t->order[t->norder++] = e->type;
  if (getenv("HERD_TEST_VERBOSE") != NULL)
    fprintf(stderr, "event %d slot %d pid %d: %s\n", e->type, e->slot,
            (int)e->pid, e->text);
  if (t->on_event != NULL)
    t->on_event(t, e);
}

static const char* fd3_http(void) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/examples/fd3-http", test_binary_dir());
  ASSERT(access(path, X_OK) == 0);
  return path;
}

/* A loop, a listening socket on 127.0.0.1 (reuseport-capable), options for
 * `workers` processes of `file`, and a deadline for the whole test. */
static void sup_setup(sup_test_t* t, const char* file, int workers,
                      herd_sched_policy_t policy, uint64_t deadline_ms) {
  herd_listen_options_t lo;
  memset(t, 0, sizeof(*t));
  ASSERT_OK(uv_loop_init(&t->loop));
  ASSERT_OK(herd_listen_parse("127.0.0.1:0", &t->addr));
  memset(&lo, 0, sizeof(lo));
  if (policy == HERD_SCHED_REUSEPORT)
    lo.flags = HERD_LISTEN_REUSEPORT;
  ASSERT_OK(herd_listen_bind(&t->addr, &lo, &t->fd));
  t->port = t->addr.port;
  t->sock.fd = t->fd;
  t->sock.addr = &t->addr;
  t->opts.file = file;
  t->opts.workers = workers;
  t->opts.policy = policy;
  t->opts.sockets = &t->sock;
  t->opts.socket_count = 1;
  t->opts.graceful_timeout = 5000;
  t->sup.data = t;
  ASSERT_OK(uv_timer_init(&t->loop, &t->deadline));
  ASSERT_OK(uv_timer_start(&t->deadline, on_deadline, deadline_ms, 0));
  uv_unref((uv_handle_t*)&t->deadline);
}

static void sup_start(sup_test_t* t) {
  ASSERT_OK(
      herd_supervisor_init(&t->loop, &t->sup, &t->opts, on_sup_event, NULL));
  ASSERT_OK(herd_supervisor_start(&t->sup));
}

static void sup_closed(herd_supervisor_t* s) {
  sup_test_t* t = s->data;
  t->closed = 1;
  uv_close((uv_handle_t*)&t->deadline, NULL);
}

static void sup_stopped(herd_supervisor_t* s) {
  sup_test_t* t = s->data;
  t->stopped = 1;
  herd_supervisor_close(s, sup_closed);
}

/* Runs the loop to its end and checks everything was released. */
static void sup_finish(sup_test_t* t) {
  ASSERT_EQ(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
  ASSERT(t->closed);
  test_loop_close(&t->loop);
  close(t->fd);
  if (t->script[0] != '\0')
    unlink(t->script);
  if (t->mode_file[0] != '\0')
    unlink(t->mode_file);
}

/* The pid a fd3-http worker answered with, or -1. */
static int get_pid(int port) {
  char body[64];
  int status = tc_http_get(port, body, sizeof(body), 3000);
  return status == 200 ? atoi(body) : -1;
}

/* A shell script that runs the mode its mode file holds, so a test can
 * "deploy" a new version by rewriting the file:
 *   serve      exec fd3-http
 *   exit N     exit with status N at once
 *   slow MS    READY=1 only after MS (fd3-http after a sleep)
 *   hang       never ready, ignores SIGTERM (with a child in its group)
 *   crash MS   serve, exit 1 after MS */
static void write_mode(sup_test_t* t, const char* mode) {
  FILE* f = fopen(t->mode_file, "we");
  ASSERT(f != NULL);
  fprintf(f, "%s\n", mode);
  fclose(f);
}

__attribute__((unused)) static void make_script(sup_test_t* t,
                                                const char* mode) {
  FILE* f;
  snprintf(t->script, sizeof(t->script), "/tmp/herd-sup-%d.sh", (int)getpid());
  snprintf(t->mode_file, sizeof(t->mode_file), "/tmp/herd-sup-%d.mode",
           (int)getpid());
  f = fopen(t->script, "we");
  ASSERT(f != NULL);
  fprintf(f,
          "#!/bin/sh\n"
          "read mode arg < %s\n"
          "case $mode in\n"
          "serve) exec %s ;;\n"
          "exit) exit $arg ;;\n"
          "slow) sleep $arg; exec %s ;;\n"
          "hang) trap '' TERM; sleep 1000 & while :; do sleep 1; done ;;\n"
          "crash) %s & sleep $arg; exit 1 ;;\n"
          "esac\n"
          "exit 99\n",
          t->mode_file, fd3_http(), fd3_http(), fd3_http());
  fclose(f);
  ASSERT_EQ(chmod(t->script, 0755), 0);
  write_mode(t, mode);
  t->opts.file = t->script;
}

/* supervisor_serve_reload_stop: start, serve, reload (every pid new),
 * stop, close. */
typedef struct {
  int pids_before[8];
  int pids_after[8];
  int phase;
} srs_t;

static void srs_collect(void* arg) {
  sup_test_t* t = arg;
  srs_t* d = t->data;
  int* pids = d->phase == 0 ? d->pids_before : d->pids_after;
  for (int i = 0; i < 40; i++) {
    int pid = get_pid(t->port);
    ASSERT(pid > 0);
    for (int k = 0; k < 8; k++) {
      if (pids[k] == pid)
        break;
      if (pids[k] == 0) {
        pids[k] = pid;
        break;
      }
    }
  }
}

static void srs_collected(void* arg) {
  sup_test_t* t = arg;
  srs_t* d = t->data;
  if (d->phase++ == 0) {
    ASSERT_OK(herd_supervisor_reload(&t->sup));
    return;
  }
  for (int a = 0; a < 8; a++)
    for (int b = 0; b < 8; b++)
      if (d->pids_after[a] != 0)
        ASSERT_NE(d->pids_after[a], d->pids_before[b]);
  ASSERT_OK(herd_supervisor_stop(&t->sup, 0, sup_stopped));
}

static void srs_event(sup_test_t* t, const herd_supervisor_event_t* e) {
  if (e->type == HERD_SUPERVISOR_ALL_READY ||
      e->type == HERD_SUPERVISOR_RELOAD_DONE)
    tc_job_start(&t->loop, srs_collect, srs_collected, t);
}

static void serve_reload_stop(herd_sched_policy_t policy) {
  sup_test_t t;
  srs_t d;
  herd_slot_info_t info;
  memset(&d, 0, sizeof(d));
  sup_setup(&t, fd3_http(), 2, policy, 20000);
  t.opts.ready = HERD_READY_NOTIFY;
  t.data = &d;
  t.on_event = srs_event;
  sup_start(&t);
  ASSERT_EQ(t.sup.workers, 2);
  ASSERT_OK(herd_supervisor_slot(&t.sup, 1, &info));
  ASSERT_EQ(info.state, HERD_SLOT_STARTING);
  ASSERT(info.pid > 0);
  sup_finish(&t);
  ASSERT(t.stopped);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_ALL_READY], 1);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_RELOAD_DONE], 1);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_STARTED], 4);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_CRASHED], 0);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_KILLED], 0);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_STOPPED], 1);
  ASSERT_EQ(t.sup.reloads, 1);
}

TEST_IMPL(supervisor_serve_reload_stop) {
  serve_reload_stop(HERD_SCHED_REUSEPORT);
  serve_reload_stop(HERD_SCHED_SHARED);
  return 0;
}
