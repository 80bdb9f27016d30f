/* The jansson companion (include/herd-jansson.h): values built with jansson
 * reach real Node intact and back (a Node child, a Node cluster worker, a
 * herd cluster worker), Buffers in Node's shape both ways, and every kind of
 * bad input gives its error. */
#include "herd-jansson.h"
#include "internal.h"
#include "task.h"
#include "test-cluster.h"

#include <sys/socket.h>
#include <unistd.h>

/* test/fixtures/json-values.js, built with jansson. */
static json_t* build_values(void) {
  static const char unicode[] =
      "\xc3\xbc"
      "n"
      "\xc3\xaf"
      "c"
      "\xc3\xb6"
      "d"
      "\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80 \xf0\x9d\x84\x9e "
      "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe2\x80\xa8\xe2\x80\xa9";
  json_t* v = json_pack(
      "[{s:s, s:i, s:b, s:n, s:{s:[i, f, {s:b}], s:{}, s:[]}},"
      " [b, b, n, i, i, I, I, s],"
      " [f, f, f, f, f, f, f, f],"
      " s,"
      " {s:s, s:[s], s:s%, s:s},"
      " i, f, b, b, n, s, [], {}]",
      /* 1 */ "cmd", "job", "id", 7, "ok", 0, "none", "nested", "list", 1, 2.5,
      "deep", 1, "empty", "arr",
      /* 2 */ 1, 0, 0, -1, (json_int_t)9007199254740991LL,
      (json_int_t)-9007199254740991LL, "x",
      /* 3 */ 0.1, -1.5e-7, 1e300, 5e-324, 3.141592653589793, -2.5, 1e21,
      1.7976931348623157e308,
      /* 4 */ unicode,
      /* 5 */ "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87",
      "\xd0\xb7\xd0\xbd\xd0\xb0\xd1\x87\xd0\xb5\xd0\xbd\xd0\xb8\xd0\xb5",
      "emoji \xf0\x9f\x98\x80", "\xf0\x9d\x84\x9e", "nul", "a\0b", (size_t)3,
      "esc", "quote \" backslash \\ newline \n tab \t \x01",
      /* 6.. */ 42, -0.5, 1, 0, "");
  ASSERT(v != NULL);
  ASSERT_EQ(json_array_size(v), 13);
  return v;
}

static const unsigned char node_bytes[] = {0, 1, 127, 128, 255};
static const char named_name[] = "h\xc3\xa9llo.bin";
static const char named_text[] = "h\xc3\xa9llo";

/* What one peer sends, in order: the list, Buffer.from(node_bytes),
 * {name, content: Buffer}, {big: 2**64, small: 1}, "lone \ud800"; then the
 * echo of everything sent to it: the list, a 256-byte Buffer and
 * {file, content: Buffer}. */
#define SPECIALS   4
#define SENT_EXTRA 2

typedef struct {
  json_t* values;
  size_t nvalues;
  int got;
  int done;
} peer_check_t;

static int peer_total(const peer_check_t* p) {
  return (int)(2 * p->nvalues) + SPECIALS + SENT_EXTRA;
}

static json_t* sent_extra(int i) {
  unsigned char all[256];
  json_t* v;
  for (int b = 0; b < 256; b++)
    all[b] = (unsigned char)b;
  if (i == 0) {
    v = herd_jansson_buffer(all, sizeof(all));
  } else {
    v = json_pack("{s:s, s:o}", "name", named_name, "content",
                  herd_jansson_buffer(named_text, strlen(named_text)));
  }
  ASSERT(v != NULL);
  return v;
}

static void check_bytes(const json_t* v, const void* want, size_t want_len) {
  unsigned char buf[256];
  size_t n = 0;
  ASSERT_OK(herd_jansson_buffer_read(v, NULL, 0, &n));
  ASSERT_EQ(n, want_len);
  ASSERT_OK(herd_jansson_buffer_read(v, buf, sizeof(buf), &n));
  ASSERT_EQ(n, want_len);
  ASSERT(memcmp(buf, want, n) == 0);
}

/* Checks message number p->got of one peer. */
static void peer_check(peer_check_t* p, const char* json, size_t len) {
  json_error_t err;
  json_t* v = NULL;
  int k = p->got++;
  int n = (int)p->nvalues;
  int r = herd_jansson_parse(json, len, &v, &err);

  ASSERT(k < peer_total(p));
  if (k == n + 3) {
    /* JSON.stringify() writes a lone surrogate as an escape that jansson
     * refuses: a clear error, not a crash or a silent change. */
    ASSERT_EQ(r, HERD_EBADJSON);
    ASSERT(v == NULL);
    ASSERT(strstr(err.text, "invalid Unicode") != NULL);
    return;
  }
  if (r != 0)
    FATAL("message %d: %s (%s): %.*s", k, herd_err_name(r), err.text, (int)len,
          json);
  if (k < n) {
    ASSERT(json_equal(v, json_array_get(p->values, (size_t)k)));
  } else if (k == n) {
    check_bytes(v, node_bytes, sizeof(node_bytes));
  } else if (k == n + 1) {
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "name")), named_name);
    check_bytes(json_object_get(v, "content"), named_text, strlen(named_text));
  } else if (k == n + 2) {
    /* 2**64 does not fit int64_t: the whole message reads as JavaScript
     * reads it, every number a double. */
    json_t* big = json_object_get(v, "big");
    json_t* small = json_object_get(v, "small");
    ASSERT(json_is_real(big));
    ASSERT(json_real_value(big) == 18446744073709551616.0);
    ASSERT(json_is_real(small));
    ASSERT(json_number_value(small) == 1.0);
  } else if (k < 2 * n + SPECIALS) {
    ASSERT(
        json_equal(v, json_array_get(p->values, (size_t)(k - n - SPECIALS))));
  } else {
    json_t* want = sent_extra(k - 2 * n - SPECIALS);
    ASSERT(json_equal(v, want));
    json_decref(want);
  }
  json_decref(v);
  if (p->got == peer_total(p))
    p->done = 1;
}

/* Sends the list and the two Buffers with `send`. */
static void peer_send_all(int (*send)(void* target, json_t* v), void* target,
                          const json_t* values) {
  for (size_t i = 0; i < json_array_size(values); i++)
    ASSERT(send(target, json_array_get(values, i)) >= 0);
  for (int i = 0; i < SENT_EXTRA; i++) {
    json_t* v = sent_extra(i);
    ASSERT(send(target, v) >= 0);
    json_decref(v);
  }
}

static char peer_script[1024];

static const char* json_peer_script(void) {
  snprintf(peer_script, sizeof(peer_script), "%s/test/fixtures/json-peer.js",
           test_source_dir());
  return peer_script;
}

/* A Node child, forked by C. */
typedef struct {
  herd_child_t child;
  peer_check_t check;
  int closed;
} child_run_t;

static void child_message(herd_ipc_t* ipc, const char* json, size_t len,
                          herd_handle_t* handle) {
  child_run_t* c = ipc->data;
  ASSERT(handle == NULL);
  peer_check(&c->check, json, len);
  if (c->check.done)
    herd_ipc_disconnect(ipc);
}

static void child_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  FATAL("channel error %s", herd_err_name(err));
}

static void child_closed(herd_child_t* child) {
  child_run_t* c = HERD_CONTAINER_OF(child, child_run_t, child);
  c->closed = 1;
}

static int send_ipc(void* target, json_t* v) {
  return herd_jansson_ipc_send(target, v);
}

TEST_IMPL(jansson_node_child) {
  static child_run_t c;
  uv_loop_t loop;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.message = child_message, .error = child_error};

  memset(&c, 0, sizeof(c));
  memset(&opts, 0, sizeof(opts));
  c.check.values = build_values();
  c.check.nvalues = json_array_size(c.check.values);
  opts.exec_path = "node";
  opts.spawn.close_cb = child_closed;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_fork(&loop, &c.child, json_peer_script(), NULL, &opts));
  c.child.channel->data = &c;
  ASSERT_OK(herd_ipc_start(c.child.channel, &cbs));
  peer_send_all(send_ipc, c.child.channel, c.check.values);
  test_loop_run_close(&loop);
  ASSERT(c.check.done);
  ASSERT(c.closed);
  ASSERT_EQ(c.child.exit_status, 0);
  ASSERT_EQ(c.child.term_signal, 0);
  json_decref(c.check.values);
  return 0;
}

/* A herd primary with two workers: a Node one (the same script) and a herd
 * one (the helper below), both sent to with herd_jansson_worker_send(). */
static peer_check_t cluster_checks[TC_MAX_IDS];

static int send_worker(void* target, json_t* v) {
  return herd_jansson_worker_send(target, v);
}

static void cluster_on_message(tc_cluster_t* t, herd_worker_t* w,
                               const char* json, size_t len) {
  peer_check_t* p = &cluster_checks[w->id];
  peer_check(p, json, len);
  if (!p->done)
    return;
  for (int id = 1; id <= 2; id++)
    if (!cluster_checks[id].done)
      return;
  tc_cluster_finish(t);
}

TEST_IMPL(jansson_cluster) {
  static tc_cluster_t t;
  static const char* const node_args[] = {NULL};
  json_t* values = build_values();
  herd_worker_t* w;

  memset(cluster_checks, 0, sizeof(cluster_checks));
  for (int id = 1; id <= 2; id++) {
    cluster_checks[id].values = values;
    cluster_checks[id].nvalues = json_array_size(values);
  }
  tc_cluster_init(&t, HERD_SCHED_RR, "node", json_peer_script(), node_args);
  t.on_message = cluster_on_message;
  ASSERT_OK(herd_cluster_fork(&t.cluster, NULL, &w));
  ASSERT_EQ(w->id, 1);
  peer_send_all(send_worker, w, values);
  t.settings.exec_path = NULL;
  t.settings.exec = test_exe();
  t.settings.args = test_helper_args("jansson_worker", NULL, NULL);
  herd_cluster_setup_primary(&t.cluster, &t.settings);
  ASSERT_OK(herd_cluster_fork(&t.cluster, NULL, &w));
  ASSERT_EQ(w->id, 2);
  peer_send_all(send_worker, w, values);
  tc_cluster_run(&t);
  ASSERT(cluster_checks[1].done);
  ASSERT(cluster_checks[2].done);
  for (int id = 1; id <= 2; id++) {
    ASSERT_EQ(t.exit_code[id], 0);
    ASSERT_EQ(t.exit_signal[id], 0);
  }
  json_decref(values);
  return 0;
}

/* The herd worker: what json-peer.js does, in C. */
static void worker_message(herd_ipc_t* ipc, const char* json, size_t len,
                           herd_handle_t* handle) {
  json_t* v = NULL;
  (void)ipc;
  (void)handle;
  ASSERT_OK(herd_jansson_parse(json, len, &v, NULL));
  ASSERT(herd_jansson_cluster_worker_send_new(v) >= 0);
}

HELPER_IMPL(jansson_worker) {
  static const char lone[] = "\"lone \\ud800\"";
  herd_cluster_worker_options_t wo;
  uv_loop_t loop;
  json_t* values = build_values();
  (void)argc;
  (void)argv;

  ASSERT_OK(uv_loop_init(&loop));
  memset(&wo, 0, sizeof(wo));
  wo.message = worker_message;
  ASSERT_OK(herd_cluster_worker_setup(&loop, &wo));
  for (size_t i = 0; i < json_array_size(values); i++)
    ASSERT(herd_jansson_cluster_worker_send(json_array_get(values, i)) >= 0);
  json_decref(values);
  ASSERT(herd_jansson_cluster_worker_send_new(
             herd_jansson_buffer(node_bytes, sizeof(node_bytes))) >= 0);
  ASSERT(herd_jansson_cluster_worker_send_new(json_pack(
             "{s:s, s:o}", "name", named_name, "content",
             herd_jansson_buffer(named_text, strlen(named_text)))) >= 0);
  /* What Node writes for {big: 2 ** 64, small: 1} reads as two doubles;
   * from C the same values are two reals. */
  ASSERT(herd_jansson_cluster_worker_send_new(json_pack(
             "{s:f, s:f}", "big", 18446744073709551616.0, "small", 1.0)) >= 0);
  ASSERT(herd_cluster_worker_send(lone, sizeof(lone) - 1) >= 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  test_loop_close(&loop);
  return 0;
}

/* Parsing: every kind of bad input has its error, and JSON.parse()'s
 * choices hold for the rest. */
TEST_IMPL(jansson_parse_errors) {
  static const struct {
    const char* text;
    int err;
    const char* what; /* in jansson's error text */
  } bad[] = {
      {"", HERD_EBADJSON, "end of file"},
      {"{", HERD_EBADJSON, "end of file"},
      {"[1,]", HERD_EBADJSON, "unexpected token"},
      {"{\"a\":1,}", HERD_EBADJSON, "string or '}' expected"},
      {"{\"a\":1} x", HERD_EBADJSON, "end of file expected"},
      {"NaN", HERD_EBADJSON, "invalid token"},
      {"[01]", HERD_EBADJSON, "invalid token"},
      {"'single'", HERD_EBADJSON, "invalid token"},
      {"\"tab\there\"", HERD_EBADJSON, "control character"},
      {"\"\\ud800\"", HERD_EBADJSON, "invalid Unicode"},
      {"{\"a\\u0000b\":1}", HERD_EBADJSON, "NUL byte in object key"},
      {"\"\xff\"", HERD_EBADUTF8, "unable to decode byte"},
      {"\"\xc0\xaf\"", HERD_EBADUTF8, "unable to decode byte"},
  };
  json_error_t err;
  json_t* v;
  char* deep;

  for (size_t i = 0; i < HERD_ARRAY_SIZE(bad); i++) {
    v = (json_t*)1;
    memset(&err, 0, sizeof(err));
    if (herd_jansson_parse(bad[i].text, strlen(bad[i].text), &v, &err) !=
        bad[i].err)
      FATAL("%s: expected %s, got: %s", bad[i].text, herd_err_name(bad[i].err),
            err.text);
    ASSERT(v == NULL);
    if (strstr(err.text, bad[i].what) == NULL)
      FATAL("%s: error text \"%s\" lacks \"%s\"", bad[i].text, err.text,
            bad[i].what);
    /* The error is also optional. */
    ASSERT_EQ(herd_jansson_parse(bad[i].text, strlen(bad[i].text), &v, NULL),
              bad[i].err);
  }
  /* The length is the message's, not a C string's. */
  ASSERT_EQ(herd_jansson_parse("[1] trailing", 3, &v, NULL), 0);
  ASSERT_EQ(json_array_size(v), 1);
  json_decref(v);
  ASSERT_EQ(herd_jansson_parse("[1]\0[2]", 7, &v, &err), HERD_EBADJSON);
  ASSERT_EQ(herd_jansson_parse(NULL, 0, &v, &err), UV_EINVAL);
  ASSERT(v == NULL);
  ASSERT(err.text[0] != '\0');
  ASSERT_EQ(herd_jansson_parse("1", 1, NULL, NULL), UV_EINVAL);

  /* Scalars at the top level, "\u0000" in strings, the last duplicate. */
  ASSERT_OK(herd_jansson_parse("\"a\\u0000b\"", 10, &v, NULL));
  ASSERT_EQ(json_string_length(v), 3);
  ASSERT(memcmp(json_string_value(v), "a\0b", 3) == 0);
  json_decref(v);
  ASSERT_OK(herd_jansson_parse("{\"a\":1,\"a\":2}", 13, &v, NULL));
  ASSERT_EQ(json_integer_value(json_object_get(v, "a")), 2);
  json_decref(v);
  ASSERT_OK(herd_jansson_parse("null", 4, &v, NULL));
  ASSERT(json_is_null(v));
  json_decref(v);
  /* int64 integers stay exact; one beyond makes the message all doubles. */
  ASSERT_OK(herd_jansson_parse("[9223372036854775807,-9223372036854775808]", 42,
                               &v, NULL));
  ASSERT_EQ(json_integer_value(json_array_get(v, 0)), INT64_MAX);
  ASSERT_EQ(json_integer_value(json_array_get(v, 1)), INT64_MIN);
  json_decref(v);
  ASSERT_OK(herd_jansson_parse("[9223372036854775808,1]", 23, &v, NULL));
  ASSERT(json_is_real(json_array_get(v, 0)));
  ASSERT(json_number_value(json_array_get(v, 0)) == 9223372036854775808.0);
  ASSERT(json_is_real(json_array_get(v, 1)));
  json_decref(v);

  /* Nesting: jansson's 2048 levels parse, one more is an error. */
  deep = malloc(2 * 2049);
  ASSERT(deep != NULL);
  memset(deep, '[', 2049);
  memset(deep + 2049, ']', 2049);
  ASSERT_OK(herd_jansson_parse(deep + 1, 2 * 2048, &v, NULL));
  json_decref(v);
  ASSERT_EQ(herd_jansson_parse(deep, 2 * 2049, &v, &err), HERD_EBADJSON);
  ASSERT(strstr(err.text, "depth") != NULL);
  free(deep);
  return 0;
}

/* Buffers both ways, without a peer: the shape and its validation. */
TEST_IMPL(jansson_buffer) {
  static const char* const not_buffers[] = {
      "[1,2]",
      "\"Buffer\"",
      "{\"data\":[1]}",
      "{\"type\":\"Buffer\"}",
      "{\"type\":\"buffer\",\"data\":[1]}",
      "{\"type\":\"Buffer\\u0000\",\"data\":[1]}",
      "{\"type\":1,\"data\":[1]}",
      "{\"type\":\"Buffer\",\"data\":\"AQI=\"}",
      "{\"type\":\"Buffer\",\"data\":{\"0\":1}}",
      "{\"type\":\"Buffer\",\"data\":[256]}",
      "{\"type\":\"Buffer\",\"data\":[-1]}",
      "{\"type\":\"Buffer\",\"data\":[1.5]}",
      "{\"type\":\"Buffer\",\"data\":[1.0]}",
      "{\"type\":\"Buffer\",\"data\":[\"1\"]}",
      "{\"type\":\"Buffer\",\"data\":[null]}",
      "{\"type\":\"Buffer\",\"data\":[true]}",
      "{\"type\":\"Buffer\",\"data\":[[1]]}",
      "{\"type\":\"Buffer\",\"data\":[1,2,3,1e3]}",
      "{\"type\":\"Buffer\",\"data\":[9223372036854775807]}",
  };
  unsigned char bytes[300], out[300];
  char text[2048];
  json_t* v;
  size_t n;

  for (size_t i = 0; i < sizeof(bytes); i++)
    bytes[i] = (unsigned char)(i * 7);
  /* Built: Node's exact text, type first. */
  v = herd_jansson_buffer(bytes, 3);
  ASSERT(v != NULL);
  n = json_dumpb(v, text, sizeof(text), JSON_COMPACT);
  ASSERT_EQ(n, 33);
  text[n] = '\0';
  ASSERT_STR_EQ(text, "{\"type\":\"Buffer\",\"data\":[0,7,14]}");
  json_decref(v);
  v = herd_jansson_buffer(NULL, 0);
  n = json_dumpb(v, text, sizeof(text), JSON_COMPACT);
  text[n] = '\0';
  ASSERT_STR_EQ(text, "{\"type\":\"Buffer\",\"data\":[]}");
  n = 99;
  ASSERT_OK(herd_jansson_buffer_read(v, out, sizeof(out), &n));
  ASSERT_EQ(n, 0);
  json_decref(v);
  ASSERT(herd_jansson_buffer(NULL, 1) == NULL);

  /* And back, with the size asked first and a buffer too small. */
  v = herd_jansson_buffer(bytes, sizeof(bytes));
  ASSERT_OK(herd_jansson_buffer_read(v, NULL, 0, &n));
  ASSERT_EQ(n, sizeof(bytes));
  n = 0;
  ASSERT_EQ(herd_jansson_buffer_read(v, out, sizeof(bytes) - 1, &n),
            UV_ENOBUFS);
  ASSERT_EQ(n, sizeof(bytes));
  memset(out, 0, sizeof(out));
  ASSERT_OK(herd_jansson_buffer_read(v, out, sizeof(out), &n));
  ASSERT_EQ(n, sizeof(bytes));
  ASSERT(memcmp(out, bytes, n) == 0);
  ASSERT_EQ(herd_jansson_buffer_read(v, out, sizeof(out), NULL), UV_EINVAL);
  json_decref(v);
  ASSERT_EQ(herd_jansson_buffer_read(NULL, out, sizeof(out), &n), UV_EINVAL);

  /* Extra members are ignored, as Buffer.from() ignores them. */
  ASSERT_OK(herd_jansson_parse("{\"data\":[9],\"x\":1,\"type\":\"Buffer\"}", 34,
                               &v, NULL));
  ASSERT_OK(herd_jansson_buffer_read(v, out, sizeof(out), &n));
  ASSERT_EQ(n, 1);
  ASSERT_EQ(out[0], 9);
  json_decref(v);

  for (size_t i = 0; i < HERD_ARRAY_SIZE(not_buffers); i++) {
    ASSERT_OK(
        herd_jansson_parse(not_buffers[i], strlen(not_buffers[i]), &v, NULL));
    n = 12345;
    if (herd_jansson_buffer_read(v, out, sizeof(out), &n) != UV_EINVAL)
      FATAL("accepted as a Buffer: %s", not_buffers[i]);
    ASSERT_EQ(herd_jansson_buffer_read(v, NULL, 0, &n), UV_EINVAL);
    ASSERT_EQ(n, 12345);
    json_decref(v);
  }
  return 0;
}

/* Allocation failures inside jansson and in the companion. */
static int fail_after = -1;
static int live_allocs;

static void* counting_malloc(size_t size) {
  void* p;
  if (fail_after == 0)
    return NULL;
  if (fail_after > 0)
    fail_after--;
  p = malloc(size);
  if (p != NULL)
    live_allocs++;
  return p;
}

static void counting_free(void* p) {
  if (p != NULL)
    live_allocs--;
  free(p);
}

typedef struct {
  int got;
  size_t big_len;
  int nulls;
} pair_t;

static void pair_message(herd_ipc_t* ipc, const char* json, size_t len,
                         herd_handle_t* handle) {
  pair_t* p = ipc->data;
  json_t* v = NULL;
  (void)handle;
  ASSERT_OK(herd_jansson_parse(json, len, &v, NULL));
  if (json_is_null(v))
    p->nulls++;
  else
    p->big_len = json_string_length(json_object_get(v, "big"));
  json_decref(v);
  if (++p->got == 2)
    herd_ipc_disconnect(ipc);
}

/* Sending: the error of each kind of bad call, the path for text over the
 * stack buffer, and allocation failures. */
TEST_IMPL(jansson_send_errors) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_ipc_callbacks_t cbs = {.message = pair_message};
  pair_t p;
  int sv[2];
  json_t* big;
  json_t* self;
  json_t* other;
  char* s;
  int r;

  memset(&p, 0, sizeof(p));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  ASSERT_OK(herd_ipc_open(&loop, &a, sv[0]));
  ASSERT_OK(herd_ipc_open(&loop, &b, sv[1]));
  b.data = &p;
  ASSERT_OK(herd_ipc_start(&a, NULL));
  ASSERT_OK(herd_ipc_start(&b, &cbs));

  ASSERT_EQ(herd_jansson_ipc_send(&a, NULL), UV_EINVAL);
  ASSERT_EQ(herd_jansson_ipc_send_new(&a, NULL), UV_EINVAL);
  ASSERT_EQ(herd_jansson_ipc_send_new(&a, json_pack("{s:i}", NULL, 1)),
            UV_EINVAL);
  ASSERT_EQ(herd_jansson_cluster_worker_send(json_null()), HERD_ENOTWORKER);
  ASSERT_EQ(herd_jansson_cluster_worker_send_new(json_true()), HERD_ENOTWORKER);
  /* A value that contains itself cannot be written. */
  self = json_array();
  other = json_array();
  ASSERT_OK(json_array_append(self, other));
  ASSERT_OK(json_array_append(other, self));
  ASSERT_EQ(herd_jansson_ipc_send(&a, self), UV_EINVAL);
  json_array_clear(other);
  json_decref(other);
  json_decref(self);

  /* 100 KB of text: written through a heap buffer, read intact. */
  s = malloc(100000);
  ASSERT(s != NULL);
  memset(s, 'x', 100000);
  big = json_pack("{s:s%}", "big", s, (size_t)100000);
  free(s);
  ASSERT(big != NULL);

  /* Every allocation that can fail, one at a time: the send fails cleanly
   * with nothing left allocated, or succeeds. */
  json_set_alloc_funcs(counting_malloc, counting_free);
  for (int i = 0;; i++) {
    fail_after = i;
    r = herd_jansson_ipc_send(&a, big);
    fail_after = -1;
    ASSERT_EQ(live_allocs, 0);
    if (r == 0)
      break;
    ASSERT(r == UV_ENOMEM || r == UV_EINVAL);
    ASSERT(i < 100);
  }
  /* Parsing and building under the same failures. */
  for (int i = 0;; i++) {
    json_t* v = NULL;
    fail_after = i;
    r = herd_jansson_parse("{\"a\":[1,2,{\"b\":\"c\"}]}", 21, &v, NULL);
    fail_after = -1;
    if (r == 0) {
      json_decref(v);
      ASSERT_EQ(live_allocs, 0);
      break;
    }
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(v == NULL);
    ASSERT_EQ(live_allocs, 0);
    ASSERT(i < 100);
  }
  for (int i = 0;; i++) {
    json_t* v;
    fail_after = i;
    v = herd_jansson_buffer("abc", 3);
    fail_after = -1;
    if (v != NULL) {
      json_decref(v);
      ASSERT_EQ(live_allocs, 0);
      break;
    }
    ASSERT_EQ(live_allocs, 0);
    ASSERT(i < 100);
  }
  json_set_alloc_funcs(malloc, free);

  ASSERT_OK(herd_jansson_ipc_send_new(&a, json_null()));
  json_decref(big);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(p.got, 2);
  ASSERT_EQ(p.big_len, 100000);
  ASSERT_EQ(p.nulls, 1);

  herd_ipc_disconnect(&a);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(herd_jansson_ipc_send_new(&a, json_true()), HERD_ECHANNELCLOSED);
  test_loop_close(&loop);
  return 0;
}
