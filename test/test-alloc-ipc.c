/* Allocation failures in the IPC channel: each public call on its own
 * (herd_ipc_open*(), herd_ipc_open_parent(), the sends, herd_ipc_disconnect())
 * and a whole exchange in both serializations, with messages large enough
 * to grow the read and write buffers, values, handles of every kind and
 * herd's own replies. alloc_sweep() fails each herd allocation in turn. */
#include "alloc.h"
#include "task.h"
#include "value-cases.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

/* What a channel's callbacks saw in one run. */
typedef struct {
  int disconnects;
  int errors;
  int err;
  int bad_proto;
  int messages;
  int sent[8];     /* send callbacks, by the index passed as arg */
  int accepted[8]; /* whether that send returned >= 0 */
} seen_t;

static seen_t seen_a, seen_b;

static seen_t* seen_of(herd_ipc_t* ipc) {
  return ipc->data;
}

static void on_error(herd_ipc_t* ipc, int err) {
  seen_t* s = seen_of(ipc);
  if (err == HERD_EBADPROTO) {
    /* The answer to a question herd never asks (see exchange_case()). */
    s->bad_proto++;
    return;
  }
  s->errors++;
  s->err = err;
  /* Nothing else can go wrong than a failed allocation. */
  ASSERT_EQ(err, UV_ENOMEM);
  ASSERT(alloc_failed());
}

static void on_disconnect_free(herd_ipc_t* ipc) {
  seen_of(ipc)->disconnects++;
  free(ipc);
}

static void on_sent(herd_ipc_t* ipc, int status, void* arg) {
  seen_t* s = seen_of(ipc);
  intptr_t i = (intptr_t)arg;
  ASSERT(s->accepted[i]);
  s->sent[i]++;
  if (status != 0)
    ASSERT(status == HERD_ECHANNELCLOSED || alloc_failed());
}

static void check_sends(const seen_t* s) {
  for (int i = 0; i < 8; i++)
    ASSERT_EQ(s->sent[i], s->accepted[i]);
}

/* A send's result: accepted (0 or 1), or refused for want of memory. */
static int accepted(int r) {
  if (r < 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
  }
  return r >= 0;
}

/* Messages in what one end wrote: lines, or length-prefixed frames. */
static int count_messages(int fd, herd_serialization_t mode) {
  static char buf[1 << 16];
  size_t len = 0;
  ssize_t n;
  int count = 0;
  while ((n = read(fd, buf + len, sizeof(buf) - len)) > 0)
    len += (size_t)n;
  ASSERT(len < sizeof(buf));
  if (mode == HERD_SERIALIZATION_JSON) {
    for (size_t i = 0; i < len; i++)
      count += buf[i] == '\n';
    return count;
  }
  for (size_t at = 0; at + 4 <= len; count++) {
    const unsigned char* b = (const unsigned char*)buf + at;
    at += 4 + ((size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 |
               (size_t)b[3]);
    ASSERT(at <= len);
  }
  return count;
}

/* One channel and its calls: open, start, each kind of plain send,
 * disconnect. What the peer reads afterwards is exactly the messages the
 * sends accepted. */
static void calls_case(void* arg) {
  herd_serialization_t mode = *(herd_serialization_t*)arg;
  herd_ipc_callbacks_t cbs = {.error = on_error,
                              .disconnect = on_disconnect_free};
  herd_ipc_t* ipc = malloc(sizeof(*ipc));
  herd_value_heap_t heap;
  herd_value_t* v;
  uv_loop_t loop;
  int sv[2], r, want = 0;

  ASSERT(ipc != NULL);
  memset(&seen_a, 0, sizeof(seen_a));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  r = herd_ipc_open_ex(&loop, ipc, sv[0], mode);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(ipc);
    /* The fd stays the caller's. */
    ASSERT(fcntl(sv[0], F_GETFD) != -1);
    close(sv[0]);
    close(sv[1]);
    test_loop_run_close(&loop);
    return;
  }
  ipc->data = &seen_a;
  ASSERT_OK(herd_ipc_start(ipc, &cbs));
  want += accepted(herd_ipc_send(ipc, "{\"a\":[1,2,3]}", 13));
  seen_a.accepted[1] = accepted(herd_ipc_send_ex(
      ipc, "\"text\"", 6, NULL, 0, NULL, on_sent, (void*)(intptr_t)1));
  want += seen_a.accepted[1];
  herd_value_heap_init(&heap);
  v = herd_value_new_object(&heap);
  if (v != NULL &&
      herd_value_object_set(v, "n", herd_value_new_number(&heap, 1.5)) == 0) {
    want += accepted(herd_ipc_send_value(ipc, v));
    seen_a.accepted[2] = accepted(herd_ipc_send_value_ex(
        ipc, v, NULL, 0, NULL, on_sent, (void*)(intptr_t)2));
    want += seen_a.accepted[2];
  } else {
    ASSERT_EQ(herd_value_heap_error(&heap), UV_ENOMEM);
  }
  herd_value_heap_free(&heap);
  herd_ipc_disconnect(ipc);
  ASSERT_EQ(herd_ipc_send(ipc, "1", 1), HERD_ECHANNELCLOSED);
  test_loop_run_close(&loop);
  ASSERT_EQ(seen_a.disconnects, 1);
  check_sends(&seen_a);
  ASSERT_EQ(seen_a.errors + seen_a.bad_proto, 0);
  /* The channel closed its end: the peer reads everything, then EOF. */
  ASSERT_EQ(count_messages(sv[1], mode), want);
  close(sv[1]);
}

TEST_IMPL(alloc_ipc_calls) {
  herd_serialization_t mode = HERD_SERIALIZATION_JSON;
  ASSERT_GE(alloc_sweep("json channel calls", calls_case, &mode), 2);
  mode = HERD_SERIALIZATION_ADVANCED;
  ASSERT_GE(alloc_sweep("advanced channel calls", calls_case, &mode), 3);
  return 0;
}

/* herd_ipc_open_parent(): a failure to allocate changes nothing, so the
 * call can be made again (the variables and the fd stay); success removes
 * the variables. */
static void parent_case(void* arg) {
  herd_serialization_t mode = *(herd_serialization_t*)arg;
  herd_ipc_callbacks_t cbs = {.error = on_error,
                              .disconnect = on_disconnect_free};
  herd_ipc_t* ipc = malloc(sizeof(*ipc));
  uv_loop_t loop;
  char fdtext[16];
  int sv[2], r;

  ASSERT(ipc != NULL);
  memset(&seen_a, 0, sizeof(seen_a));
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  snprintf(fdtext, sizeof(fdtext), "%d", sv[0]);
  setenv("NODE_CHANNEL_FD", fdtext, 1);
  setenv("NODE_CHANNEL_SERIALIZATION_MODE",
         mode == HERD_SERIALIZATION_JSON ? "json" : "advanced", 1);
  r = herd_ipc_open_parent(&loop, ipc);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
    free(ipc);
    ASSERT_STR_EQ(getenv("NODE_CHANNEL_FD"), fdtext);
    ASSERT(getenv("NODE_CHANNEL_SERIALIZATION_MODE") != NULL);
    ASSERT(fcntl(sv[0], F_GETFD) != -1);
    unsetenv("NODE_CHANNEL_FD");
    unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
    close(sv[0]);
    close(sv[1]);
    test_loop_run_close(&loop);
    return;
  }
  ASSERT(getenv("NODE_CHANNEL_FD") == NULL);
  ASSERT(getenv("NODE_CHANNEL_SERIALIZATION_MODE") == NULL);
  ASSERT_EQ(ipc->serialization, mode);
  ipc->data = &seen_a;
  ASSERT_OK(herd_ipc_start(ipc, &cbs));
  r = herd_ipc_send(ipc, "{\"hello\":1}", 11);
  herd_ipc_disconnect(ipc);
  test_loop_run_close(&loop);
  ASSERT_EQ(seen_a.disconnects, 1);
  ASSERT_EQ(count_messages(sv[1], mode), accepted(r));
  close(sv[1]);
}

TEST_IMPL(alloc_ipc_open_parent) {
  herd_serialization_t mode = HERD_SERIALIZATION_JSON;
  ASSERT_GE(alloc_sweep("open_parent, json", parent_case, &mode), 1);
  mode = HERD_SERIALIZATION_ADVANCED;
  ASSERT_GE(alloc_sweep("open_parent, advanced", parent_case, &mode), 1);
  return 0;
}

/* A whole exchange between two herd channels on one loop. `a` sends
 * messages, values, a listening TCP server (stays open), a connected pipe
 * without KEEP_OPEN (herd closes it once acknowledged), a raw fd, and a
 * question Node's net.Server asks (herd answers by itself); `b` echoes
 * every message from its callback, opens every handle as a libuv handle,
 * and disconnects at "bye". Or (`big`) only one message over the 256 KiB
 * first read buffer, so that both ends grow their buffers, and "bye".
 * Whatever allocation fails, every accepted send gets its callback once,
 * each end its disconnect once, a handle refused at the call stays the
 * caller's (closed here at once), and nothing leaks. */
enum { BIG = 300 * 1024 };
static char* big_text;

typedef struct {
  herd_serialization_t mode;
  int big;
} exchange_t;
static int ex_got_big, ex_got_bye;

static void free_handle(uv_handle_t* handle) {
  free(handle);
}

static void b_handle(herd_ipc_t* ipc, herd_handle_t* handle) {
  herd_uv_any_t* h;
  if (handle == NULL)
    return;
  h = malloc(sizeof(*h));
  ASSERT(h != NULL);
  if (herd_handle_open(handle, ipc->loop, h) == 0)
    uv_close(&h->handle, free_handle);
  else
    free(h); /* a socketpair end of a raw fd: not made a libuv handle */
}

static void b_bye(herd_ipc_t* ipc) {
  ex_got_bye = 1;
  herd_ipc_disconnect(ipc);
}

static void b_message(herd_ipc_t* ipc, const char* json, size_t len,
                      herd_handle_t* handle) {
  seen_of(ipc)->messages++;
  b_handle(ipc, handle);
  if (len == 5 && memcmp(json, "\"bye\"", 5) == 0) {
    b_bye(ipc);
    return;
  }
  if (len > BIG)
    ex_got_big++;
  accepted(herd_ipc_send(ipc, json, len));
}

static void b_value(herd_ipc_t* ipc, herd_value_t* value,
                    herd_handle_t* handle) {
  size_t len;
  const char* s;
  seen_of(ipc)->messages++;
  b_handle(ipc, handle);
  s = herd_value_type(value) == HERD_VALUE_STRING
          ? herd_value_get_string(value, &len)
          : NULL;
  if (s != NULL && len == 3 && memcmp(s, "bye", 3) == 0) {
    b_bye(ipc);
    return;
  }
  if (s != NULL && len >= BIG)
    ex_got_big++;
  accepted(herd_ipc_send_value(ipc, value));
}

static void a_message(herd_ipc_t* ipc, const char* json, size_t len,
                      herd_handle_t* handle) {
  (void)json;
  (void)len;
  ASSERT(handle == NULL);
  seen_of(ipc)->messages++;
}

/* The pipe sent without KEEP_OPEN: herd closes it after the ACK (with
 * this callback); after a refusal it is still the caller's. */
static void pipe_sent(herd_ipc_t* ipc, int status, void* arg) {
  uv_pipe_t** pipe = arg;
  seen_of(ipc)->sent[3]++;
  ASSERT(seen_of(ipc)->accepted[3]);
  if (status != 0)
    uv_close((uv_handle_t*)*pipe, free_handle);
  *pipe = NULL;
}

static void exchange_case(void* arg) {
  static const char question[] =
      "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"4:127.0.0.1:1\"}";
  exchange_t* ex = arg;
  herd_serialization_t mode = ex->mode;
  herd_ipc_callbacks_t cba = {.message = a_message,
                              .error = on_error,
                              .disconnect = on_disconnect_free};
  herd_ipc_callbacks_t cbb = {.error = on_error,
                              .disconnect = on_disconnect_free};
  herd_ipc_t* a = malloc(sizeof(*a));
  herd_ipc_t* b = malloc(sizeof(*b));
  uv_tcp_t* server = malloc(sizeof(*server));
  uv_pipe_t* pipe = malloc(sizeof(*pipe));
  uv_pipe_t* pipe_ref = pipe;
  struct sockaddr_in addr;
  herd_value_heap_t heap;
  herd_value_t* v;
  uv_loop_t loop;
  int sv[2], pv[2], r;

  ASSERT(a != NULL && b != NULL && server != NULL && pipe != NULL);
  ex_got_big = ex_got_bye = 0;
  memset(&seen_a, 0, sizeof(seen_a));
  memset(&seen_b, 0, sizeof(seen_b));
  if (mode == HERD_SERIALIZATION_ADVANCED)
    cbb.value = b_value;
  else
    cbb.message = b_message;
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  r = herd_ipc_open_ex(&loop, a, sv[0], mode);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    free(a);
    free(b);
    free(server);
    free(pipe);
    close(sv[0]);
    close(sv[1]);
    test_loop_run_close(&loop);
    return;
  }
  a->data = &seen_a;
  ASSERT_OK(herd_ipc_start(a, &cba));
  r = herd_ipc_open_ex(&loop, b, sv[1], mode);
  if (r != 0) {
    ASSERT_EQ(r, UV_ENOMEM);
    free(b);
    free(server);
    free(pipe);
    close(sv[1]);
    herd_ipc_disconnect(a);
    test_loop_run_close(&loop);
    ASSERT_EQ(seen_a.disconnects, 1);
    return;
  }
  b->data = &seen_b;

  /* Sent before b starts: held for it. */
  accepted(herd_ipc_send(a, "{\"early\":true}", 14));
  ASSERT_OK(herd_ipc_start(b, &cbb));
  if (ex->big) {
    accepted(herd_ipc_send(a, big_text, BIG + 2));
    free(server);
    free(pipe);
    pipe_ref = NULL;
    goto bye;
  }
  herd_value_heap_init(&heap);
  v = herd_value_new_array(&heap);
  if (v != NULL &&
      herd_value_array_push(v, herd_value_new_string(&heap, "x", 1)) == 0 &&
      herd_value_array_push(v, herd_value_new_buffer(&heap, "ab", 2)) == 0) {
    seen_a.accepted[1] = accepted(herd_ipc_send_value_ex(
        a, v, NULL, 0, NULL, on_sent, (void*)(intptr_t)1));
  }
  herd_value_heap_free(&heap);

  ASSERT_OK(uv_tcp_init(&loop, server));
  ASSERT_OK(uv_ip4_addr("127.0.0.1", 0, &addr));
  ASSERT_OK(uv_tcp_bind(server, (const struct sockaddr*)&addr, 0));
  ASSERT_OK(uv_listen((uv_stream_t*)server, 8, NULL));
  seen_a.accepted[2] =
      accepted(herd_ipc_send_ex(a, "{\"server\":1}", 12, (uv_handle_t*)server,
                                0, NULL, on_sent, (void*)(intptr_t)2));
  /* A server stays open after it was sent. */
  uv_close((uv_handle_t*)server, free_handle);

  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pv), 0);
  ASSERT_OK(uv_pipe_init(&loop, pipe, 0));
  ASSERT_OK(uv_pipe_open(pipe, pv[0]));
  close(pv[1]);
  seen_a.accepted[3] =
      accepted(herd_ipc_send_ex(a, "{\"socket\":1}", 12, (uv_handle_t*)pipe, 0,
                                free_handle, pipe_sent, &pipe_ref));
  if (!seen_a.accepted[3]) {
    /* Refused: the caller's, and herd touches it no more. */
    uv_close((uv_handle_t*)pipe, free_handle);
    pipe_ref = NULL;
  }
  {
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    seen_a.accepted[4] =
        accepted(herd_ipc_send_fd(a, "{\"fd\":1}", 8, devnull, "net.Native",
                                  on_sent, (void*)(intptr_t)4));
    close(devnull);
  }
  accepted(herd_ipc_send(a, question, sizeof(question) - 1));
bye:
  if (!accepted(herd_ipc_send(a, "\"bye\"", 5)))
    herd_ipc_disconnect(a); /* b would wait for it: end from this side */
  test_loop_run_close(&loop);
  ASSERT(pipe_ref == NULL);
  ASSERT_EQ(seen_a.disconnects, 1);
  ASSERT_EQ(seen_b.disconnects, 1);
  check_sends(&seen_a);
  if (!alloc_failed()) {
    ASSERT_EQ(seen_a.errors + seen_b.errors, 0);
    ASSERT(ex_got_bye);
    ASSERT_EQ(ex_got_big, ex->big);
    if (ex->big) {
      ASSERT_EQ(seen_b.messages, 3); /* early, big, bye */
      ASSERT_EQ(seen_a.messages, 2);
    } else {
      /* a hears b answer the question it forwarded: answers nothing a
       * asked. */
      ASSERT_EQ(seen_a.bad_proto, 1);
      /* early, value, server, socket, fd, bye */
      ASSERT_EQ(seen_b.messages, 6);
    }
  }
}

TEST_IMPL(alloc_ipc_exchange) {
  exchange_t ex = {HERD_SERIALIZATION_JSON, 0};
  ASSERT_GE(alloc_sweep("json exchange", exchange_case, &ex), 10);
  ex.mode = HERD_SERIALIZATION_ADVANCED;
  ASSERT_GE(alloc_sweep("advanced exchange", exchange_case, &ex), 10);
  return 0;
}

TEST_IMPL(alloc_ipc_big_message) {
  exchange_t ex = {HERD_SERIALIZATION_JSON, 1};
  big_text = malloc(BIG + 2);
  ASSERT(big_text != NULL);
  memset(big_text, 'x', BIG + 2);
  big_text[0] = big_text[BIG + 1] = '"';
  ASSERT_GE(alloc_sweep("json big message", exchange_case, &ex), 4);
  ex.mode = HERD_SERIALIZATION_ADVANCED;
  ASSERT_GE(alloc_sweep("advanced big message", exchange_case, &ex), 4);
  free(big_text);
  return 0;
}

/* herd_value_to_json() and herd_value_from_json(), which the channel uses
 * in both modes, for each value of the shared cases: each fails with
 * UV_ENOMEM (or succeeds) and gives back what it took. */
static void value_json_case(void* arg) {
  int i = *(int*)arg;
  herd_value_heap_t heap;
  herd_value_t *v, *back;
  uv_buf_t text;
  size_t before;
  int r;
  herd_value_heap_init(&heap);
  v = test_value_case_build(&heap, i);
  if (v == NULL) {
    ASSERT_EQ(herd_value_heap_error(&heap), UV_ENOMEM);
    herd_value_heap_free(&heap);
    return;
  }
  r = herd_value_to_json(v, NULL, &text);
  if (r == 0) {
    before = herd_value_heap_size(&heap);
    r = herd_value_from_json(&heap, text.base, text.len, NULL, &back);
    if (r != 0)
      ASSERT_EQ(herd_value_heap_size(&heap), before);
    alloc_free(text.base);
  }
  /* JSON.stringify() throws for some (a BigInt, a cycle): UV_EINVAL. */
  if (r != 0 && r != UV_EINVAL && r != HERD_EVALUELIMIT) {
    ASSERT_EQ(r, UV_ENOMEM);
    ASSERT(alloc_failed());
  }
  herd_value_heap_free(&heap);
}

TEST_IMPL(alloc_value_json) {
  for (int i = 0; i < test_value_case_count(); i++) {
    if (strcmp(test_value_case_name(i), "string-long") == 0)
      continue; /* the steps of string-ascii, 100000 times slower */
    alloc_sweep(test_value_case_name(i), value_json_case, &i);
  }
  return 0;
}
