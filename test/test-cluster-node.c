/* A herd primary with real Node.js workers (test/fixtures/cluster-worker.js):
 * their http.createServer().listen() gets its socket from herd under rr and
 * shared, they serve requests, and their process.send() messages reach the
 * primary's message callback. Under reuseport they get their slot's
 * socket as Node's shared handle. */
#include "test-cluster.h"

#include <signal.h>

static char script[1024];
static const char* node_args[3];

static int node_requests(tc_cluster_t* t) {
  return t->cluster.policy == HERD_SCHED_REUSEPORT ? 24 : 6;
}

static void node_client(void* arg) {
  tc_cluster_t* t = arg;
  char body[64];

  if (t->cluster.policy == HERD_SCHED_SHARED) {
    /* One accept queue for both: stop one worker at a time so that each
     * must serve. */
    for (int round = 0; round < 2; round++) {
      int stopped = t->pid[round == 0 ? 1 : 2];
      ASSERT_EQ(kill(stopped, SIGSTOP), 0);
      ASSERT(tc_wait_state(stopped, 'T', 2000));
      for (int i = 0; i < 3; i++) {
        ASSERT_EQ(tc_http_get(t->port, body, sizeof(body), 5000), 200);
        ASSERT_EQ(tc_count_body(t, body), round == 0 ? 2 : 1);
      }
      ASSERT_EQ(kill(stopped, SIGCONT), 0);
    }
    return;
  }
  /* rr alternates; reuseport spreads by hash (all on one slot: 2^-23). */
  for (int i = 0; i < node_requests(t); i++) {
    ASSERT_EQ(tc_http_get(t->port, body, sizeof(body), 5000), 200);
    ASSERT(tc_count_body(t, body) > 0);
  }
}

static void node_on_message(tc_cluster_t* t, herd_worker_t* w, const char* json,
                            size_t len) {
  (void)w;
  (void)json;
  (void)len;
  /* Every notification arrived: let the workers go. */
  if (t->notifies[1] + t->notifies[2] == node_requests(t) &&
      *(int*)t->data == 1) {
    *(int*)t->data = 2;
    tc_cluster_finish(t);
  }
}

static void node_client_done(void* arg) {
  tc_cluster_t* t = arg;
  *(int*)t->data = 1;
  node_on_message(t, NULL, NULL, 0);
}

static void node_on_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, node_client, node_client_done, t);
}

static void run_node_mode(herd_sched_policy_t policy,
                          herd_serialization_t serialization) {
  tc_cluster_t t;
  int phase = 0;
  snprintf(script, sizeof(script), "%s/test/fixtures/cluster-worker.js",
           test_source_dir());
  node_args[0] = "0";
  node_args[1] = NULL;
  tc_cluster_init(&t, policy, "node", script, node_args);
  t.settings.spawn.serialization = serialization;
  herd_cluster_setup_primary(&t.cluster, &t.settings);
  t.data = &phase;
  t.want_listening = 2;
  t.on_ready = node_on_ready;
  t.on_message = node_on_message;
  tc_cluster_fork(&t, 2);
  tc_cluster_run(&t);
  ASSERT_EQ(phase, 2);
  ASSERT(t.served[1] >= 1);
  ASSERT(t.served[2] >= 1);
  ASSERT_EQ(t.served[1] + t.served[2], node_requests(&t));
  ASSERT_EQ(t.notifies[1] + t.notifies[2], node_requests(&t));
  /* Node's worker closes its server on {"act":"disconnect"} and exits. */
  ASSERT_EQ(t.exit_code[1], 0);
  ASSERT_EQ(t.exit_code[2], 0);
  ASSERT_EQ(t.exit_ead[1], 1);
  ASSERT_EQ(t.exit_ead[2], 1);
}

static void run_node(herd_sched_policy_t policy) {
  run_node_mode(policy, HERD_SERIALIZATION_JSON);
}

TEST_IMPL(cluster_node_rr) {
  run_node(HERD_SCHED_RR);
  return 0;
}

TEST_IMPL(cluster_node_shared) {
  run_node(HERD_SCHED_SHARED);
  return 0;
}

/* Node's worker takes a listening SO_REUSEPORT socket as a shared handle. */
TEST_IMPL(cluster_node_reuseport) {
  run_node(HERD_SCHED_REUSEPORT);
  return 0;
}

/* Node's workers take a newconn for a shared handle too (child.js looks the
 * key up among all its handles): under reuseport the connections waiting
 * in a dead Node worker's slot are drained by the primary to the other. */
#define NODE_DRAIN_CLIENTS 8

static void node_drain_client(void* arg) {
  tc_cluster_t* t = arg;
  int fds[NODE_DRAIN_CLIENTS];
  char body[64];
  ASSERT_EQ(kill(t->pid[1], SIGSTOP), 0);
  ASSERT(tc_wait_state(t->pid[1], 'T', 2000));
  for (int i = 0; i < NODE_DRAIN_CLIENTS; i++) {
    fds[i] = tc_http_send(t->port);
    ASSERT(fds[i] >= 0);
  }
  ASSERT_EQ(kill(t->pid[1], SIGKILL), 0);
  for (int i = 0; i < NODE_DRAIN_CLIENTS; i++) {
    ASSERT_EQ(tc_http_recv(fds[i], body, sizeof(body), 8000), 200);
    ASSERT_EQ(tc_count_body(t, body), 2);
  }
}

static void node_drain_done(void* arg) {
  tc_cluster_finish(arg);
}

static void node_drain_ready(tc_cluster_t* t) {
  tc_job_start(&t->loop, node_drain_client, node_drain_done, t);
}

TEST_IMPL(cluster_node_reuseport_drain) {
  tc_cluster_t t;
  snprintf(script, sizeof(script), "%s/test/fixtures/cluster-worker.js",
           test_source_dir());
  node_args[0] = "0";
  node_args[1] = NULL;
  tc_cluster_init(&t, HERD_SCHED_REUSEPORT, "node", script, node_args);
  t.want_listening = 2;
  t.on_ready = node_drain_ready;
  tc_cluster_fork(&t, 2);
  tc_cluster_run(&t);
  ASSERT_EQ(t.served[2], NODE_DRAIN_CLIENTS);
  ASSERT_EQ(t.exit_signal[1], SIGKILL);
  ASSERT_EQ(t.exit_code[2], 0);
  return 0;
}

/* The other way round: a Node primary (test/fixtures/cluster-primary.js)
 * with herd workers (the cluster_worker helper). */
static void run_node_primary_mode(const char* policy,
                                  const char* serialization) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  char path[1024], exits[512];
  const char* args[5];
  const char* v;
  size_t vlen;
  int64_t n;

  snprintf(path, sizeof(path), "%s/test/fixtures/cluster-primary.js",
           test_source_dir());
  args[0] = path;
  args[1] = test_exe();
  args[2] = policy;
  args[3] = serialization;
  args[4] = NULL;
  memset(&o, 0, sizeof(o));
  o.timeout = 15000;
  ASSERT_OK(herd_spawn_sync("node", args, &o, &r));
  if (r.status != 0 || r.out_len == 0)
    FATAL("node: status %lld\nstdout: %s\nstderr: %s", (long long)r.status,
          r.out, r.err);
  fprintf(stderr, "%s", r.out);
  /* Six answers from herd workers 1 and 2, both of them. */
  ASSERT_OK(herd_json_get(r.out, r.out_len, "bodies", &v, &vlen));
  ASSERT(memmem(v, vlen, "\"w1\"", 4) != NULL);
  ASSERT(memmem(v, vlen, "\"w2\"", 4) != NULL);
  ASSERT_OK(herd_json_get_int(r.out, r.out_len, "notifies", &n));
  ASSERT_EQ(n, 6);
  ASSERT_OK(herd_json_get_int(r.out, r.out_len, "pongs", &n));
  ASSERT_EQ(n, 2);
  /* Node's disconnect: each herd worker closed its server and exited 0. */
  ASSERT_OK(herd_json_get(r.out, r.out_len, "exits", &v, &vlen));
  snprintf(exits, sizeof(exits), "%.*s", (int)vlen, v);
  ASSERT(strstr(exits, "\"code\":0,\"signal\":null,\"after\":true}") != NULL);
  ASSERT(strstr(exits, "\"code\":1") == NULL);
  herd_sync_result_free(&r);
}

static void run_node_primary(const char* policy) {
  run_node_primary_mode(policy, "json");
}

TEST_IMPL(cluster_node_primary_rr) {
  run_node_primary("rr");
  return 0;
}

TEST_IMPL(cluster_node_primary_none) {
  run_node_primary("none");
  return 0;
}

/* The same with serialization 'advanced' (Node's
 * cluster.settings.serialization): the cluster protocol in frames, both
 * with herd as the primary and with herd as the workers. */
TEST_IMPL(cluster_node_rr_advanced) {
  run_node_mode(HERD_SCHED_RR, HERD_SERIALIZATION_ADVANCED);
  return 0;
}

TEST_IMPL(cluster_node_shared_advanced) {
  run_node_mode(HERD_SCHED_SHARED, HERD_SERIALIZATION_ADVANCED);
  return 0;
}

TEST_IMPL(cluster_node_primary_rr_advanced) {
  run_node_primary_mode("rr", "advanced");
  return 0;
}

TEST_IMPL(cluster_node_primary_none_advanced) {
  run_node_primary_mode("none", "advanced");
  return 0;
}
