/* Replacing, adding and removing workers loses no connection, under every
 * policy: herd_worker_replace() of every worker, again and again, under
 * ab; scaling down while the workers are stopped and connections wait; a
 * disconnect followed at once by a fork; the ways a replacement fails; and
 * the kill timeout of a worker that ignores its disconnect. */
#include "test-cluster.h"

#include "cluster-int.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>

/* Each of ROLL_WORKERS workers is replaced ROLL_ROUNDS times in a row (the
 * successor of each replacement is the next one replaced), both chains at
 * once, while ab makes ROLL_REQUESTS requests, 8 at a time; should the
 * replacements outlast that, ab goes on with batches of ROLL_MORE until
 * they are done. Not one request may fail or hang. */
#define ROLL_WORKERS  2
#define ROLL_ROUNDS   25
#define ROLL_REQUESTS 100000
#define ROLL_MORE     5000

typedef struct {
  tc_cluster_t t; /* first: the cluster's data points here */
  tc_ab_t ab;
  int port;
  int keepalive;
  int max_rounds; /* replacements in each chain */
  int more;       /* requests of each further ab batch */
  int requests_first;
  int rounds[ROLL_WORKERS]; /* replacements done in each chain */
  int chains_done;
  int batches;
  long long complete; /* over every ab batch */
  long long requests; /* notifies seen */
} roll_t;

static void roll_replaced(herd_worker_t* successor, int status);

static void roll_replace(herd_worker_t* w, int chain) {
  herd_worker_t* s = NULL;
  ASSERT_OK(herd_worker_replace(w, roll_replaced, &s));
  s->data = (void*)(intptr_t)chain;
}

static void roll_replaced(herd_worker_t* successor, int status) {
  roll_t* r = successor->cluster->data;
  int chain = (int)(intptr_t)successor->data;
  ASSERT_OK(status);
  ASSERT(herd_worker_is_connected(successor));
  if (++r->rounds[chain] < r->max_rounds)
    roll_replace(successor, chain);
  else
    r->chains_done++;
}

static void roll_message(tc_cluster_t* t, herd_worker_t* w, const char* json,
                         size_t len) {
  roll_t* r = (roll_t*)t;
  (void)w;
  (void)len;
  if (strcmp(json, "{\"cmd\":\"notifyRequest\"}") == 0)
    r->requests++;
}

static void roll_ab_done(tc_ab_t* ab) {
  roll_t* r = ab->data;
  if (ab->status != 0 || ab->failed != 0 || ab->non2xx != 0)
    FATAL("ab (batch %d, %d + %d replacements done):\n%s", r->batches,
          r->rounds[0], r->rounds[1], ab->out);
  r->complete += ab->complete;
  tc_ab_free(ab);
  if (r->chains_done < ROLL_WORKERS) {
    /* Load on until the last replacement is done. */
    r->batches++;
    tc_ab_start(&r->t.loop, ab, r->port, r->more, 8, r->keepalive);
    return;
  }
  tc_cluster_finish(&r->t);
}

static void roll_ready(tc_cluster_t* t) {
  roll_t* r = (roll_t*)t;
  int chain = 0;
  r->ab.done = roll_ab_done;
  r->ab.data = r;
  r->batches = 1;
  tc_ab_start(&t->loop, &r->ab, r->port, r->requests_first, 8, r->keepalive);
  herd_worker_t* first[ROLL_WORKERS];
  /* The successors join the table: take the workers first. */
  for (herd_worker_t* w = herd_cluster_first(&t->cluster); w != NULL;
       w = herd_cluster_next(w))
    first[chain++] = w;
  ASSERT_EQ(chain, ROLL_WORKERS);
  for (chain = 0; chain < ROLL_WORKERS; chain++)
    roll_replace(first[chain], chain);
}

/* `node`: the workers are test/fixtures/cluster-worker.js. */
static void run_roll_ex(herd_sched_policy_t policy, int keepalive, int node,
                        int rounds, int requests, int more) {
  static char script[1024];
  static const char* node_args[] = {"0", NULL};
  roll_t r;
  long long notifies = 0;
  uint64_t start = tc_now_ms();
  int total = ROLL_WORKERS * (rounds + 1);

  memset(&r, 0, sizeof(r));
  r.keepalive = keepalive;
  r.max_rounds = rounds;
  r.requests_first = requests;
  r.more = more;
  if (node) {
    snprintf(script, sizeof(script), "%s/test/fixtures/cluster-worker.js",
             test_source_dir());
    tc_cluster_init(&r.t, policy, "node", script, node_args);
  } else {
    tc_cluster_init(&r.t, policy, NULL, NULL, NULL);
  }
  ASSERT_OK(herd_cluster_listen(&r.t.cluster, "127.0.0.1", 0, 511, &r.port));
  r.t.want_listening = ROLL_WORKERS;
  r.t.on_ready = roll_ready;
  r.t.on_message = roll_message;
  tc_cluster_fork(&r.t, ROLL_WORKERS);
  tc_cluster_run(&r.t);

  for (int id = 1; id < TC_MAX_IDS; id++)
    notifies += r.t.notifies[id];
  fprintf(stderr,
          "%s%s %s: %d replacements, %lld requests in %d ab run(s), %llu ms\n",
          node ? "node workers, " : "", herd_sched_policy_name(policy),
          keepalive ? "keep-alive" : "close", r.rounds[0] + r.rounds[1],
          r.complete, r.batches, (unsigned long long)(tc_now_ms() - start));
  ASSERT_EQ(r.chains_done, ROLL_WORKERS);
  ASSERT_EQ(r.complete, requests + (r.batches - 1) * more);
  /* Every answer was counted by the worker that gave it. */
  ASSERT_EQ(notifies, r.complete);
  /* Every worker left gracefully. */
  ASSERT_EQ(r.t.exits, total);
  for (int id = 1; id <= total; id++) {
    ASSERT_EQ(r.t.exit_code[id], 0);
    ASSERT_EQ(r.t.exit_ead[id], 1);
  }
}

static void run_roll(herd_sched_policy_t policy, int keepalive) {
  run_roll_ex(policy, keepalive, 0, ROLL_ROUNDS, ROLL_REQUESTS, ROLL_MORE);
}

/* Real Node workers (test/fixtures/cluster-worker.js) replaced under load:
 * each disconnected Node worker closes its server and finishes what it
 * accepted, and its successor serves on. With a new connection per
 * request: Node's server.close() also closes keep-alive connections it
 * sees idle, which races with a client sending its next request on them
 * (a Node matter, not the cluster's). */
TEST_IMPL(cluster_node_replace) {
  run_roll_ex(HERD_SCHED_RR, 0, 1, 4, 2000, 500);
  run_roll_ex(HERD_SCHED_REUSEPORT, 0, 1, 4, 2000, 500);
  return 0;
}

TEST_IMPL(cluster_replace_rr_keepalive) {
  run_roll(HERD_SCHED_RR, 1);
  return 0;
}

TEST_IMPL(cluster_replace_rr_close) {
  run_roll(HERD_SCHED_RR, 0);
  return 0;
}

TEST_IMPL(cluster_replace_shared_keepalive) {
  run_roll(HERD_SCHED_SHARED, 1);
  return 0;
}

TEST_IMPL(cluster_replace_shared_close) {
  run_roll(HERD_SCHED_SHARED, 0);
  return 0;
}

TEST_IMPL(cluster_replace_reuseport_keepalive) {
  run_roll(HERD_SCHED_REUSEPORT, 1);
  return 0;
}

TEST_IMPL(cluster_replace_reuseport_close) {
  run_roll(HERD_SCHED_REUSEPORT, 0);
  return 0;
}

/* Four workers, all stopped; workers 3 and 4 are disconnected, then
 * SCALE_CLIENTS connections come (and wait: in the primary, the shared
 * socket or the slot sockets), and then all four continue. The two that
 * leave find their disconnect before any connection and close their
 * servers first. Every connection must be answered. */
#define SCALE_CLIENTS 40

typedef struct {
  tc_cluster_t t;
  int port;
  int fds[SCALE_CLIENTS];
} scale_t;

static void scale_stop(void* arg) {
  scale_t* s = arg;
  for (int id = 1; id <= 4; id++) {
    ASSERT_EQ(kill(s->t.pid[id], SIGSTOP), 0);
    ASSERT(tc_wait_state(s->t.pid[id], 'T', 2000));
  }
}

static void scale_client(void* arg) {
  scale_t* s = arg;
  char body[64];
  for (int i = 0; i < SCALE_CLIENTS; i++) {
    s->fds[i] = tc_http_send(s->port);
    ASSERT(s->fds[i] >= 0);
  }
  for (int id = 1; id <= 4; id++)
    ASSERT_EQ(kill(s->t.pid[id], SIGCONT), 0);
  for (int i = 0; i < SCALE_CLIENTS; i++) {
    ASSERT_EQ(tc_http_recv(s->fds[i], body, sizeof(body), 8000), 200);
    ASSERT(tc_count_body(&s->t, body) > 0);
  }
}

static void scale_client_done(void* arg) {
  scale_t* s = arg;
  tc_cluster_finish(&s->t);
}

static void scale_stopped(void* arg) {
  scale_t* s = arg;
  /* 4 -> 2 while they cannot run. */
  ASSERT_OK(herd_worker_disconnect(herd_cluster_worker(&s->t.cluster, 3)));
  ASSERT_OK(herd_worker_disconnect(herd_cluster_worker(&s->t.cluster, 4)));
  ASSERT_EQ(s->t.cluster.workers, 2);
  tc_job_start(&s->t.loop, scale_client, scale_client_done, s);
}

static void scale_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, scale_stop, scale_stopped, t);
}

static void run_scale(herd_sched_policy_t policy) {
  scale_t s;
  memset(&s, 0, sizeof(s));
  tc_cluster_init(&s.t, policy, NULL, NULL, NULL);
  ASSERT_OK(herd_cluster_listen(&s.t.cluster, "127.0.0.1", 0, 511, &s.port));
  s.t.want_listening = 4;
  s.t.on_ready = scale_ready;
  tc_cluster_fork(&s.t, 4);
  tc_cluster_run(&s.t);
  fprintf(stderr, "%s: served by worker 1..4: %d %d %d %d\n",
          herd_sched_policy_name(policy), s.t.served[1], s.t.served[2],
          s.t.served[3], s.t.served[4]);
  ASSERT_EQ(s.t.served[1] + s.t.served[2] + s.t.served[3] + s.t.served[4],
            SCALE_CLIENTS);
  for (int id = 3; id <= 4; id++) {
    ASSERT_EQ(s.t.exit_ead[id], 1);
    ASSERT_EQ(s.t.exit_code[id], 0);
  }
}

TEST_IMPL(cluster_scale_down_rr) {
  run_scale(HERD_SCHED_RR);
  return 0;
}

TEST_IMPL(cluster_scale_down_shared) {
  run_scale(HERD_SCHED_SHARED);
  return 0;
}

TEST_IMPL(cluster_scale_down_reuseport) {
  run_scale(HERD_SCHED_REUSEPORT);
  return 0;
}

/* reuseport, the old way to replace a worker: disconnect it and fork
 * another while it is still alive; then the other order, fork first and
 * disconnect once the new one listens; then, once the primary has closed
 * the socket of the slot nobody took (the group's order changes), once
 * more. Each time 60 requests in a row must all be answered: no slot socket
 * may be left where nobody accepts. */
#define DF_REQUESTS 60

typedef struct {
  tc_cluster_t t;
  int port;
  int stage;
  uv_timer_t check;
  uint64_t deadline;
} df_t;

static int df_sockets(df_t* d) {
  herd__cluster_handle_t* h = d->t.cluster.priv->handles;
  int n = 0;
  for (int s = 0; s < h->nslots; s++)
    n += h->slots[s] != NULL;
  return n;
}

static void df_client(void* arg);
static void df_client_done(void* arg);

static void df_check(uv_timer_t* timer) {
  df_t* d = timer->data;
  if (df_sockets(d) > 2) {
    ASSERT(tc_now_ms() < d->deadline);
    return;
  }
  /* Slot 1's socket is gone: slots 0 and 2 are left. */
  uv_close((uv_handle_t*)timer, NULL);
  d->stage = 5;
  tc_job_start(&d->t.loop, df_client, df_client_done, d);
}

static void df_client(void* arg) {
  df_t* d = arg;
  char body[64];
  for (int i = 0; i < DF_REQUESTS; i++) {
    ASSERT_EQ(tc_http_get(d->port, body, sizeof(body), 3000), 200);
    ASSERT(tc_count_body(&d->t, body) > 0);
  }
}

static void df_listening(tc_cluster_t* t) {
  df_t* d = (df_t*)t;
  t->ready = 0;
  if (d->stage == 0) {
    /* Disconnect worker 1 (slot 0), fork at once: the new one takes slot
     * 0 and its socket. */
    d->stage = 1;
    ASSERT_OK(herd_worker_disconnect(herd_cluster_worker(&t->cluster, 1)));
    tc_cluster_fork(t, 1);
    t->want_listening = 3;
    return;
  }
  if (d->stage == 1 || d->stage == 3) {
    d->stage++;
    tc_job_start(&t->loop, df_client, df_client_done, d);
    return;
  }
  /* stage 2 done: worker 3 took the slot worker 1 left. Fork worker 4 (a
   * new slot), then let worker 2 go. */
  ASSERT_EQ(herd_cluster_worker(&t->cluster, 3)->slot, 0);
  ASSERT_EQ(herd_cluster_worker(&t->cluster, 4)->slot, 2);
  ASSERT_OK(herd_worker_disconnect(herd_cluster_worker(&t->cluster, 2)));
  d->stage = 3;
  df_listening(t);
}

static void df_client_done(void* arg) {
  df_t* d = arg;
  if (d->stage == 2) {
    d->t.ready = 0;
    d->t.want_listening = 4;
    tc_cluster_fork(&d->t, 1);
    return;
  }
  if (d->stage == 4) {
    /* Worker 2 has gone and nobody takes slot 1: its socket closes, a
     * linger after it stopped being served. */
    ASSERT_OK(uv_timer_init(&d->t.loop, &d->check));
    d->check.data = d;
    d->deadline = tc_now_ms() + 10000;
    ASSERT_OK(uv_timer_start(&d->check, df_check, 10, 10));
    return;
  }
  tc_cluster_finish(&d->t);
}

TEST_IMPL(cluster_reuseport_disconnect_fork) {
  df_t d;
  memset(&d, 0, sizeof(d));
  tc_cluster_init(&d.t, HERD_SCHED_REUSEPORT, NULL, NULL, NULL);
  ASSERT_OK(herd_cluster_listen(&d.t.cluster, "127.0.0.1", 0, 511, &d.port));
  d.t.want_listening = 2;
  d.t.on_ready = df_listening;
  tc_cluster_fork(&d.t, 2);
  tc_cluster_run(&d.t);
  ASSERT_EQ(d.stage, 5);
  ASSERT_EQ(d.t.served[1] + d.t.served[2] + d.t.served[3] + d.t.served[4],
            3 * DF_REQUESTS);
  ASSERT_EQ(d.t.exit_ead[1], 1);
  ASSERT_EQ(d.t.exit_ead[2], 1);
  return 0;
}

/* The ways a replacement fails, each leaving worker 1 serving: a program
 * that cannot start, a successor that exits before it listens, one that
 * never listens (listen_timeout), one disconnected before it is ready; a
 * replacement already under way. Then one that succeeds. */
typedef struct {
  tc_cluster_t t;
  int port;
  int stage;
  int status[8];
  herd_worker_t* successor;
} fail_t;

static const char* const* fail_args(const char* mode) {
  return test_helper_args("cluster_worker", "0", mode);
}

static void fail_step(fail_t* f);

static void fail_check(void* arg) {
  fail_t* f = arg;
  char body[64];
  ASSERT_EQ(tc_http_get(f->port, body, sizeof(body), 3000), 200);
  ASSERT_EQ(tc_body_id(body), f->stage < 5 ? 1 : f->successor->id);
}

static void fail_check_done(void* arg) {
  fail_step(arg);
}

static void fail_replaced(herd_worker_t* successor, int status) {
  fail_t* f = successor->cluster->data;
  ASSERT(successor == f->successor);
  f->status[f->stage] = status;
  if (status == 0)
    ASSERT(herd_cluster_worker(&f->t.cluster, 1) == NULL);
  else
    ASSERT(herd_cluster_worker(&f->t.cluster, 1) != NULL);
  f->stage++;
  tc_job_start(&f->t.loop, fail_check, fail_check_done, f);
}

static void fail_step(fail_t* f) {
  herd_worker_t* one = herd_cluster_worker(&f->t.cluster, 1);
  herd_cluster_settings_t* s = &f->t.settings;

  s->exec = test_exe();
  s->args = fail_args(NULL);
  switch (f->stage) {
    case 0:
      s->exec = "/nonexistent/herd-worker";
      break;
    case 1:
      s->args = fail_args("exit");
      break;
    case 2:
      s->args = fail_args("nolisten");
      s->listen_timeout = 300;
      break;
    case 3:
      s->args = fail_args("nolisten");
      s->listen_timeout = 0;
      break;
    case 4:
      break;
    default:
      tc_cluster_finish(&f->t);
      return;
  }
  herd_cluster_setup_primary(&f->t.cluster, s);
  ASSERT(one != NULL);
  ASSERT_OK(herd_worker_replace(one, fail_replaced, &f->successor));
  ASSERT_EQ(f->successor->slot, one->slot);
  ASSERT_EQ(herd_worker_replace(one, fail_replaced, NULL), UV_EBUSY);
  ASSERT_EQ(herd_worker_replace(f->successor, fail_replaced, NULL), UV_EBUSY);
  if (f->stage == 3)
    ASSERT_OK(herd_worker_disconnect(f->successor));
}

static void fail_ready(tc_cluster_t* t) {
  fail_step((fail_t*)t);
}

TEST_IMPL(cluster_replace_failures) {
  fail_t f;
  memset(&f, 0, sizeof(f));
  tc_cluster_init(&f.t, HERD_SCHED_REUSEPORT, NULL, NULL, NULL);
  ASSERT_OK(herd_cluster_listen(&f.t.cluster, "127.0.0.1", 0, 511, &f.port));
  f.t.want_listening = 1;
  f.t.on_ready = fail_ready;
  tc_cluster_fork(&f.t, 1);
  tc_cluster_run(&f.t);
  ASSERT_EQ(f.stage, 5);
  ASSERT_EQ(f.status[0], UV_ENOENT);
  ASSERT_EQ(f.status[1], HERD_EWORKERDIED);
  ASSERT_EQ(f.status[2], UV_ETIMEDOUT);
  ASSERT_EQ(f.status[3], UV_ECANCELED);
  ASSERT_EQ(f.status[4], 0);
  ASSERT_EQ(f.t.exit_code[3], 3); /* "exit" */
  ASSERT_EQ(f.t.exit_ead[4], 1);  /* stopped after its listen timeout */
  ASSERT_EQ(f.t.exit_code[4], 0);
  ASSERT_EQ(f.t.exit_ead[1], 1); /* handed over */
  ASSERT_EQ(f.t.exit_code[1], 0);
  return 0;
}

/* A worker that ignores its disconnect: herd_cluster_close() ends all the
 * same, kill_timeout after it was called, with SIGKILL. */
static uint64_t kill_closed_at;

static void kill_ready(tc_cluster_t* t) {
  kill_closed_at = tc_now_ms();
  tc_cluster_finish(t);
}

TEST_IMPL(cluster_close_kill_timeout) {
  tc_cluster_t t;
  uint64_t took;
  tc_cluster_init(&t, HERD_SCHED_RR, NULL, NULL,
                  test_helper_args("cluster_worker", "0", "deaf"));
  t.settings.kill_timeout = 300;
  herd_cluster_setup_primary(&t.cluster, &t.settings);
  t.want_listening = 1;
  t.on_ready = kill_ready;
  tc_cluster_fork(&t, 1);
  tc_cluster_run(&t);
  took = tc_now_ms() - kill_closed_at;
  fprintf(stderr, "closed %llu ms after herd_cluster_close()\n",
          (unsigned long long)took);
  ASSERT_EQ(t.exit_signal[1], SIGKILL);
  ASSERT_EQ(t.exit_ead[1], 1);
  ASSERT_GE(took, 290); /* libuv's timers round to the millisecond */
  ASSERT_LE(took, 5000);
  return 0;
}

/* Every allocation of herd_cluster_init(), herd_cluster_listen() and
 * herd_cluster_fork() fails in turn: each call returns UV_ENOMEM or
 * succeeds, and the cluster then closes with nothing left behind (the leak
 * checker and the end-of-test checks see to that). */
static long alloc_count;
static long alloc_fail_at = -1;

static int alloc_fails(void) {
  return alloc_count++ == alloc_fail_at;
}

static void* failing_malloc(size_t n) {
  return alloc_fails() ? NULL : malloc(n);
}

static void* failing_realloc(void* p, size_t n) {
  return alloc_fails() ? NULL : realloc(p, n);
}

static void* failing_calloc(size_t n, size_t size) {
  return alloc_fails() ? NULL : calloc(n, size);
}

TEST_IMPL(cluster_alloc_failures) {
  const char* env[] = {"HERD_TEST_EXTRA=1", NULL};
  int failed = 0;
  ASSERT_OK(herd_replace_allocator(failing_malloc, failing_realloc,
                                   failing_calloc, free));
  for (long k = 0;; k++) {
    uv_loop_t loop;
    herd_cluster_t cluster;
    herd_cluster_settings_t s;
    herd_worker_t* w = NULL;
    int port, r;

    ASSERT_OK(uv_loop_init(&loop));
    alloc_count = 0;
    alloc_fail_at = k;
    r = herd_cluster_init(&loop, &cluster, NULL);
    if (r != 0) {
      ASSERT_EQ(r, UV_ENOMEM);
      alloc_fail_at = -1;
      test_loop_close(&loop);
      failed++;
      continue;
    }
    memset(&s, 0, sizeof(s));
    s.exec = test_exe();
    s.args = test_helper_args("cluster_worker", "0", NULL);
    s.policy = HERD_SCHED_REUSEPORT;
    herd_cluster_setup_primary(&cluster, &s);
    r = herd_cluster_listen(&cluster, "127.0.0.1", 0, 64, &port);
    ASSERT(r == 0 || r == UV_ENOMEM);
    r = herd_cluster_fork(&cluster, env, &w);
    ASSERT(r == 0 || r == UV_ENOMEM);
    if (alloc_count <= k) {
      /* Nothing failed: every allocation has had its turn. */
      alloc_fail_at = -1;
      herd_cluster_close(&cluster, NULL);
      test_loop_run_close(&loop);
      break;
    }
    failed++;
    alloc_fail_at = -1;
    herd_cluster_close(&cluster, NULL);
    test_loop_run_close(&loop);
  }
  fprintf(stderr, "%d allocations failed in turn\n", failed);
  ASSERT(failed > 5);
  return 0;
}
