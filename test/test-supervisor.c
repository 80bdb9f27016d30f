/* The supervisor module through its C API: a pool of real processes (the
 * fd3-http example, shell scripts that misbehave on purpose) on
 * loopback sockets, driven by events and checked with an HTTP client on a
 * thread. Each test is bounded by deadlines on the loop, not sleeps. */
#include "run-util.h"
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

/* For tests where the supervisor stops by itself (giving up). */
static void close_on_stopped(sup_test_t* t, const herd_supervisor_event_t* e) {
  if (e->type == HERD_SUPERVISOR_STOPPED)
    herd_supervisor_close(&t->sup, sup_closed);
}

/* Runs the loop to its end and checks everything was released. */
static void sup_finish(sup_test_t* t) {
  ASSERT_EQ(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
  ASSERT(t->closed);
  test_loop_close(&t->loop);
  close(t->fd);
}

/* The pid a fd3-http worker answered with, or -1. */
static int get_pid(int port) {
  char body[64];
  int status = tc_http_get(port, body, sizeof(body), 3000);
  return status == 200 ? atoi(body) : -1;
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
  /* After the reload, once the old workers are gone: until they have
   * exited they may still take a connection. */
  if (e->type == HERD_SUPERVISOR_ALL_READY ||
      (e->type == HERD_SUPERVISOR_EXITED &&
       t->count[HERD_SUPERVISOR_EXITED] == 2 && !t->sup.stopping)) {
    ASSERT(e->type != HERD_SUPERVISOR_EXITED ||
           t->count[HERD_SUPERVISOR_RELOAD_DONE] == 1);
    tc_job_start(&t->loop, srs_collect, srs_collected, t);
  }
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
  /* Workers start from the loop, not inside the call. */
  ASSERT_OK(herd_supervisor_slot(&t.sup, 1, &info));
  ASSERT_EQ(info.state, HERD_SLOT_EMPTY);
  ASSERT_EQ(info.pid, 0);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_STARTED], 0);
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

/* Readiness: READY=1 (NOTIFY, and AUTO before the delay), the delay
 * (DELAY, and AUTO for a silent worker), and a worker never ready within
 * ready_timeout is a failure, never ready. */
static void ready_case(herd_ready_mode_t mode, const char* file, uint64_t delay,
                       uint64_t min_ms, uint64_t max_ms) {
  sup_test_t t;
  uint64_t t0;
  sup_setup(&t, file, 1, HERD_SCHED_SHARED, 20000);
  t.opts.ready = mode;
  t.opts.ready_delay = delay;
  t0 = uv_now(&t.loop);
  sup_start(&t);
  while (t.count[HERD_SUPERVISOR_ALL_READY] == 0)
    ASSERT(uv_run(&t.loop, UV_RUN_ONCE) != 0);
  uv_update_time(&t.loop);
  ASSERT_GE(uv_now(&t.loop) - t0, min_ms);
  ASSERT_LE(uv_now(&t.loop) - t0, max_ms);
  ASSERT_OK(herd_supervisor_stop(&t.sup, 0, sup_stopped));
  sup_finish(&t);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_NOT_READY], 0);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_CRASHED], 0);
}

TEST_IMPL(supervisor_ready_modes) {
  const char* silent = hr_script("never");
  ready_case(HERD_READY_NOTIFY, fd3_http(), 0, 0, 5000);
  /* AUTO: READY=1 long before a 10 s delay. */
  ready_case(HERD_READY_AUTO, fd3_http(), 10000, 0, 5000);
  /* A silent worker: the delay. */
  ready_case(HERD_READY_DELAY, silent, 300, 290, 5000);
  ready_case(HERD_READY_AUTO, silent, 300, 290, 5000);
  /* A silent worker under NOTIFY is never ready: stopped at the timeout,
   * and, as no worker ever was ready, herd gives up at once. */
  {
    sup_test_t t;
    sup_setup(&t, silent, 1, HERD_SCHED_SHARED, 20000);
    t.opts.ready = HERD_READY_NOTIFY;
    t.opts.ready_timeout = 300;
    t.opts.graceful_timeout = 200;
    t.on_event = close_on_stopped;
    sup_start(&t);
    sup_finish(&t);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_STOPPED], 1);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_NOT_READY], 1);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_READY], 0);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_ALL_READY], 0);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_GAVE_UP], 1);
    ASSERT_EQ(t.last[HERD_SUPERVISOR_GAVE_UP].error, HERD_ENEVERREADY);
    ASSERT(t.sup.gave_up);
  }
  hr_script_remove();
  return 0;
}

/* Crash restarts: the slot's backoff doubles from backoff_min up to
 * backoff_max, each delay drawn within [b/2, b] (equal jitter), and more
 * than max_restarts crashes within the window make it give up. Slot 0
 * serves all along, so this is no fail-fast case. */
typedef struct {
  uint64_t delays[16];
  int n;
} backoff_t;

static void backoff_event(sup_test_t* t, const herd_supervisor_event_t* e) {
  backoff_t* b = t->data;
  if (e->type == HERD_SUPERVISOR_CRASHED) {
    ASSERT_EQ(e->slot, 1);
    ASSERT_EQ(e->exit_status, 2);
    if (b->n < 16)
      b->delays[b->n++] = e->delay;
  }
  close_on_stopped(t, e);
}

TEST_IMPL(supervisor_backoff_gives_up) {
  sup_test_t t;
  backoff_t b;
  uint64_t expect = 40;
  memset(&b, 0, sizeof(b));
  sup_setup(&t, hr_script("split"), 2, HERD_SCHED_SHARED, 20000);
  t.opts.ready = HERD_READY_NOTIFY;
  t.opts.backoff_min = 40;
  t.opts.backoff_max = 200;
  t.opts.max_restarts = 5;
  t.data = &b;
  t.on_event = backoff_event;
  sup_start(&t);
  sup_finish(&t);
  /* Five restarts, the sixth crash gives up. */
  ASSERT_EQ(b.n, 5);
  for (int i = 0; i < b.n; i++) {
    ASSERT_GE(b.delays[i], expect / 2);
    ASSERT_LE(b.delays[i], expect);
    expect = expect * 2 > 200 ? 200 : expect * 2;
  }
  ASSERT_EQ(t.count[HERD_SUPERVISOR_GAVE_UP], 1);
  ASSERT_EQ(t.last[HERD_SUPERVISOR_GAVE_UP].error, HERD_ECRASHLOOP);
  ASSERT_EQ(t.sup.error, HERD_ECRASHLOOP);
  ASSERT_EQ(t.sup.restarts, 6);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_STOPPED], 1);
  hr_script_remove();
  return 0;
}

/* Fail fast: every worker of the first generation failed before ready. */
TEST_IMPL(supervisor_fail_fast) {
  sup_test_t t;
  sup_setup(&t, "/bin/false", 3, HERD_SCHED_SHARED, 20000);
  t.on_event = close_on_stopped;
  sup_start(&t);
  sup_finish(&t);
  /* Two crashes restart; the third is the last of the first generation. */
  ASSERT_EQ(t.count[HERD_SUPERVISOR_CRASHED], 2);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_GAVE_UP], 1);
  ASSERT_EQ(t.last[HERD_SUPERVISOR_GAVE_UP].error, HERD_ENEVERREADY);
  /* A program that does not exist fails the same way. */
  sup_setup(&t, "/no/such/program", 2, HERD_SCHED_SHARED, 20000);
  t.on_event = close_on_stopped;
  sup_start(&t);
  sup_finish(&t);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_GAVE_UP], 1);
  ASSERT_EQ(t.last[HERD_SUPERVISOR_EXITED].error, UV_ENOENT);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_STARTED], 0);
  return 0;
}

/* A crash after min_uptime of readiness restarts at once and resets the
 * slot's backoff. */
static void uptime_event(sup_test_t* t, const herd_supervisor_event_t* e) {
  if (e->type == HERD_SUPERVISOR_CRASHED) {
    herd_slot_info_t info;
    ASSERT_EQ(e->delay, 0);
    ASSERT_OK(herd_supervisor_slot(&t->sup, 0, &info));
    ASSERT_EQ(info.backoff, 40);
    ASSERT_EQ(info.restarts, 1);
  }
  if (e->type == HERD_SUPERVISOR_STARTED &&
      t->count[HERD_SUPERVISOR_STARTED] == 2)
    ASSERT_OK(herd_supervisor_stop(&t->sup, 1, sup_stopped));
}

TEST_IMPL(supervisor_restart_after_uptime) {
  sup_test_t t;
  sup_setup(&t, hr_script("crash 500"), 1, HERD_SCHED_SHARED, 20000);
  t.opts.ready = HERD_READY_DELAY;
  t.opts.ready_delay = 50;
  t.opts.min_uptime = 300;
  t.opts.backoff_min = 40;
  t.on_event = uptime_event;
  sup_start(&t);
  sup_finish(&t);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_CRASHED], 1);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_STARTED], 2);
  hr_script_remove();
  return 0;
}

/* Stop: a worker that ignores its stop signal is killed, with its whole
 * process group, at graceful_timeout. */
static void hang_event(sup_test_t* t, const herd_supervisor_event_t* e) {
  if (e->type == HERD_SUPERVISOR_ALL_READY) {
    int* kids = t->data;
    herd_slot_info_t info;
    uint64_t deadline = tc_now_ms() + 5000;
    ASSERT_OK(herd_supervisor_slot(&t->sup, 0, &info));
    while (tc_children(info.pid, kids, 8) < 2 && tc_now_ms() < deadline)
      test_sleep_ms(5);
    ASSERT_OK(herd_supervisor_stop(&t->sup, 0, sup_stopped));
  }
}

TEST_IMPL(supervisor_stop_escalates) {
  sup_test_t t;
  int kids[8] = {0};
  uint64_t t0;
  sup_setup(&t, hr_script("hang"), 1, HERD_SCHED_SHARED, 20000);
  t.opts.ready = HERD_READY_DELAY;
  t.opts.ready_delay = 50;
  t.opts.graceful_timeout = 400;
  t.data = kids;
  t.on_event = hang_event;
  sup_start(&t);
  t0 = tc_now_ms();
  sup_finish(&t);
  ASSERT_GE(tc_now_ms() - t0, 400);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_KILLED], 1);
  ASSERT_EQ(t.sup.kills, 1);
  ASSERT_EQ(t.last[HERD_SUPERVISOR_EXITED].term_signal, SIGKILL);
  /* The worker's children went with its group. */
  ASSERT(kids[0] > 0 && kids[1] > 0);
  ASSERT(tc_wait_state(kids[0], 0, 2000) || tc_proc_state(kids[0]) == 'Z');
  ASSERT(tc_wait_state(kids[1], 0, 2000) || tc_proc_state(kids[1]) == 'Z');
  hr_script_remove();
  return 0;
}

/* A worker that exits leaves nothing of its process group behind: what it
 * started is killed before it is reaped. (It never was ready: herd gives
 * up at once.) */
TEST_IMPL(supervisor_exit_kills_group) {
  sup_test_t t;
  char path[160], buf[32] = "";
  int child;
  FILE* f;
  sup_setup(&t, hr_script("leave"), 1, HERD_SCHED_SHARED, 20000);
  t.on_event = close_on_stopped;
  sup_start(&t);
  sup_finish(&t);
  snprintf(path, sizeof(path), "%s.child", hr_mode_path());
  f = fopen(path, "re");
  ASSERT(f != NULL);
  ASSERT(fgets(buf, sizeof(buf), f) != NULL);
  fclose(f);
  child = atoi(buf);
  ASSERT(child > 0);
  if (!tc_wait_state(child, 0, 2000) && tc_proc_state(child) != 'Z')
    FATAL("the worker's child %d outlived it", child);
  hr_script_remove();
  return 0;
}

/* A deploy that removed the program: the successor cannot start
 * (UV_ENOENT), the reload fails, the old workers keep serving. */
static void gone_event(sup_test_t* t, const herd_supervisor_event_t* e) {
  if (e->type == HERD_SUPERVISOR_ALL_READY) {
    unlink((const char*)t->data);
    ASSERT_OK(herd_supervisor_reload(&t->sup));
    /* A second one is queued behind it. */
    ASSERT_OK(herd_supervisor_reload(&t->sup));
  }
  if (e->type == HERD_SUPERVISOR_RELOAD_FAILED &&
      t->count[HERD_SUPERVISOR_RELOAD_FAILED] == 2) {
    herd_slot_info_t info;
    ASSERT_OK(herd_supervisor_slot(&t->sup, 0, &info));
    ASSERT_EQ(info.state, HERD_SLOT_READY);
    ASSERT_OK(herd_supervisor_stop(&t->sup, 0, sup_stopped));
  }
}

TEST_IMPL(supervisor_reload_program_gone) {
  sup_test_t t;
  char copy[64];
  herd_sync_result_t r;
  const char* cp_args[2 + 1];
  snprintf(copy, sizeof(copy), "/tmp/herd-sup-gone-%d", (int)getpid());
  cp_args[0] = fd3_http();
  cp_args[1] = copy;
  cp_args[2] = NULL;
  ASSERT_OK(herd_spawn_sync("cp", cp_args, NULL, &r));
  ASSERT_EQ(r.status, 0);
  herd_sync_result_free(&r);
  sup_setup(&t, copy, 2, HERD_SCHED_REUSEPORT, 20000);
  t.opts.ready = HERD_READY_NOTIFY;
  t.data = copy;
  t.on_event = gone_event;
  sup_start(&t);
  sup_finish(&t);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_RELOAD_FAILED], 2);
  ASSERT_EQ(t.last[HERD_SUPERVISOR_RELOAD_FAILED].error, UV_ENOENT);
  ASSERT_EQ(t.sup.reload_failures, 2);
  ASSERT_EQ(t.count[HERD_SUPERVISOR_RELOAD_DONE], 0);
  /* The old workers were never touched. */
  ASSERT_EQ(t.count[HERD_SUPERVISOR_CRASHED], 0);
  return 0;
}

/* Readiness is believed only from the worker's process group: READY=1
 * from another process (its own group) does not count. */
TEST_IMPL(supervisor_notify_from_group_only) {
  static const char foreign[] =
      "#!/bin/sh\n"
      "send='import os,socket; a=os.environ[\"NOTIFY_SOCKET\"]; "
      "a=\"\\0\"+a[1:] if a[0]==\"@\" else a; "
      "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b\"READY=1\", "
      "a)'\n"
      "py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3\n"
      "case $1 in\n"
      "foreign) setsid $py -c \"$send\" ;;\n"
      "group) $py -c \"$send\" ;;\n"
      "esac\n"
      "exec sleep 1000\n";
  char path[64];
  FILE* f;
  for (int c = 0; c < 2; c++) {
    const char* args[] = {c == 0 ? "foreign" : "group", NULL};
    sup_test_t t;
    snprintf(path, sizeof(path), "/tmp/herd-sup-notify-%d", (int)getpid());
    f = fopen(path, "we");
    ASSERT(f != NULL);
    fputs(foreign, f);
    fclose(f);
    ASSERT_EQ(chmod(path, 0755), 0);
    sup_setup(&t, path, 1, HERD_SCHED_SHARED, 20000);
    t.opts.args = args;
    t.opts.ready = HERD_READY_NOTIFY;
    t.opts.ready_timeout = 3000;
    t.opts.graceful_timeout = 100;
    t.opts.max_restarts = HERD_RESTARTS_NONE;
    t.on_event = close_on_stopped;
    sup_start(&t);
    if (c == 1) {
      while (t.count[HERD_SUPERVISOR_READY] == 0)
        ASSERT(uv_run(&t.loop, UV_RUN_ONCE) != 0);
      ASSERT_OK(herd_supervisor_stop(&t.sup, 0, NULL));
    }
    sup_finish(&t);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_READY], c);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_NOT_READY], 1 - c);
    unlink(path);
  }
  return 0;
}

/* Options herd_supervisor_init() refuses, leaving nothing behind. */
TEST_IMPL(supervisor_bad_options) {
  sup_test_t t;
  herd_supervisor_socket_t bad;
  int p[2];
  sup_setup(&t, fd3_http(), 1, HERD_SCHED_SHARED, 20000);
  t.opts.file = NULL;
  ASSERT_EQ(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL),
            UV_EINVAL);
  t.opts.file = fd3_http();
  t.opts.policy = HERD_SCHED_RR;
  ASSERT_EQ(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL),
            UV_EINVAL);
  t.opts.policy = HERD_SCHED_SHARED;
  t.opts.ready = HERD_READY_LISTENING;
  ASSERT_EQ(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL),
            UV_EINVAL);
  t.opts.ready = HERD_READY_AUTO;
  t.opts.workers = 5;
  t.opts.max_workers = 4;
  ASSERT_EQ(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL),
            UV_EINVAL);
  t.opts.workers = 1;
  t.opts.max_workers = 0;
  bad = t.sock;
  bad.name = "a:b";
  t.opts.sockets = &bad;
  ASSERT_EQ(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL),
            UV_EINVAL);
  /* Not a listening socket. */
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  bad.name = NULL;
  bad.fd = p[0];
  bad.addr = NULL;
  ASSERT_EQ(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL),
            UV_EINVAL);
  close(p[0]);
  close(p[1]);
  /* A usable one, closed before it starts. */
  t.opts.sockets = &t.sock;
  ASSERT_OK(herd_supervisor_init(&t.loop, &t.sup, &t.opts, NULL, NULL));
  ASSERT_EQ(herd_supervisor_reload(&t.sup), UV_EINVAL);
  ASSERT_EQ(herd_supervisor_stop(&t.sup, 0, NULL), UV_EINVAL);
  herd_supervisor_close(&t.sup, sup_closed);
  sup_finish(&t);
  return 0;
}

/* Cluster workers (the runner's cluster_worker helper, which listens on
 * 127.0.0.1:0 through the cluster protocol): their listen() is served on
 * the supervisor's socket, a reload replaces each with a successor that
 * listens first, every policy. */
typedef struct {
  int bodies;
  int phase;
} ck_t;

static void ck_get(void* arg) {
  sup_test_t* t = arg;
  ck_t* d = t->data;
  for (int i = 0; i < 10; i++) {
    char body[64];
    ASSERT_EQ(tc_http_get(t->port, body, sizeof(body), 5000), 200);
    ASSERT(body[0] == 'w');
    d->bodies++;
  }
}

static void ck_got(void* arg) {
  sup_test_t* t = arg;
  ck_t* d = t->data;
  if (d->phase++ == 0)
    ASSERT_OK(herd_supervisor_reload(&t->sup));
  else
    ASSERT_OK(herd_supervisor_stop(&t->sup, 0, sup_stopped));
}

static void ck_event(sup_test_t* t, const herd_supervisor_event_t* e) {
  if (e->type == HERD_SUPERVISOR_ALL_READY ||
      e->type == HERD_SUPERVISOR_RELOAD_DONE)
    tc_job_start(&t->loop, ck_get, ck_got, t);
  ASSERT(e->type != HERD_SUPERVISOR_RELOAD_FAILED);
  ASSERT(e->type != HERD_SUPERVISOR_CRASHED);
}

TEST_IMPL(supervisor_cluster_kind) {
  herd_sched_policy_t policies[] = {HERD_SCHED_RR, HERD_SCHED_SHARED,
                                    HERD_SCHED_REUSEPORT};
  for (int i = 0; i < 3; i++) {
    sup_test_t t;
    ck_t d;
    memset(&d, 0, sizeof(d));
    sup_setup(&t, test_exe(), 2, policies[i], 30000);
    t.opts.protocol = HERD_WORKER_CLUSTER;
    t.opts.args = test_helper_args("cluster_worker", NULL, NULL);
    t.data = &d;
    t.on_event = ck_event;
    sup_start(&t);
    sup_finish(&t);
    ASSERT_EQ(d.bodies, 20);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_RELOAD_DONE], 1);
    ASSERT_EQ(t.count[HERD_SUPERVISOR_STARTED], 4);
    /* Its listen(127.0.0.1:0) was served on the supervisor's socket. */
    ASSERT_GE(t.count[HERD_SUPERVISOR_NOTICE], 1);
  }
  return 0;
}
