/* The IPC channel in Node's `advanced` serialization: two herd ends, herd
 * against a raw socket that writes frames by hand (malformed, over the
 * limit, internal messages that answer nothing), herd against real Node
 * both ways (every value of test/fixtures/value-cases.js, handles, big
 * messages, socket lists), the json <-> value bridge in both modes, and
 * allocation failures. */
#include "alloc.h"
#include "ipc-int.h"
#include "task.h"
#include "value-cases.h"
#include "value-int.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_EVENTS 256

/* What one herd end saw, in order: messages (as values copied into `heap`,
 * or as JSON text), errors, handles. */
typedef struct {
  herd_value_heap_t heap;
  herd_value_t* values[MAX_EVENTS];
  char* texts[MAX_EVENTS];
  int errs[MAX_EVENTS];       /* 0 for a message */
  char types[MAX_EVENTS][16]; /* the handle's type, "" for none */
  int fds[MAX_EVENTS];        /* the handle's fd, taken, or -1 */
  int n;                      /* events */
  int messages;
  int nerrors;
  int disconnects;
  int sent[MAX_EVENTS]; /* send callbacks: how many times, per arg */
  int sent_status[MAX_EVENTS];
} seen_t;

static seen_t sa, sb;

static void seen_init(seen_t* s) {
  memset(s, 0, sizeof(*s));
  herd_value_heap_init(&s->heap);
}

static void seen_free(seen_t* s) {
  for (int i = 0; i < s->n; i++) {
    free(s->texts[i]);
    if (s->fds[i] >= 0)
      close(s->fds[i]);
  }
  herd_value_heap_free(&s->heap);
  memset(s, 0, sizeof(*s));
}

static int seen_event(seen_t* s, herd_handle_t* handle) {
  int i = s->n++;
  ASSERT(i < MAX_EVENTS);
  s->fds[i] = -1;
  if (handle != NULL) {
    snprintf(s->types[i], sizeof(s->types[i]), "%s", handle->type);
    s->fds[i] = herd_handle_take(handle);
    ASSERT(s->fds[i] >= 0);
  }
  return i;
}

static void on_value(herd_ipc_t* ipc, herd_value_t* v, herd_handle_t* handle) {
  seen_t* s = ipc->data;
  int i = seen_event(s, handle);
  ASSERT_OK(herd_value_copy(&s->heap, v, &s->values[i]));
  s->messages++;
}

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  seen_t* s = ipc->data;
  int i = seen_event(s, handle);
  ASSERT_EQ(json[len], '\0');
  ASSERT_EQ(strlen(json), len);
  ASSERT_OK(herd_json_validate(json, len));
  s->texts[i] = strdup(json);
  s->messages++;
}

static void on_error(herd_ipc_t* ipc, int err) {
  seen_t* s = ipc->data;
  int i = seen_event(s, NULL);
  s->errs[i] = err;
  s->nerrors++;
}

static void on_disconnect(herd_ipc_t* ipc) {
  seen_t* s = ipc->data;
  s->disconnects++;
}

static void on_sent(herd_ipc_t* ipc, int status, void* arg) {
  seen_t* s = ipc->data;
  intptr_t i = (intptr_t)arg;
  s->sent[i]++;
  s->sent_status[i] = status;
}

static const herd_ipc_callbacks_t by_value = {
    .error = on_error, .disconnect = on_disconnect, .value = on_value};
static const herd_ipc_callbacks_t by_text = {
    .message = on_message, .error = on_error, .disconnect = on_disconnect};

static void pair_mode(uv_loop_t* loop, herd_ipc_t* a, herd_ipc_t* b,
                      herd_serialization_t mode) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  seen_init(&sa);
  seen_init(&sb);
  ASSERT_OK(herd_ipc_open_ex(loop, a, sv[0], mode));
  ASSERT_OK(herd_ipc_open_ex(loop, b, sv[1], mode));
  ASSERT_EQ(a->serialization, mode);
  a->data = &sa;
  b->data = &sb;
}

/* One herd end (advanced) and a raw socket that writes frames by hand. */
static int half_pair(uv_loop_t* loop, herd_ipc_t* a) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  seen_init(&sa);
  ASSERT_OK(herd_ipc_open_ex(loop, a, sv[0], HERD_SERIALIZATION_ADVANCED));
  a->data = &sa;
  return sv[1];
}

/* Runs the loop until *count reaches want (5 s at most). */
static void run_until(uv_loop_t* loop, const int* count, int want) {
  for (int i = 0; i < 5000 && *count < want; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    if (*count < want)
      test_sleep_ms(1);
  }
  if (*count < want)
    FATAL("waited for %d events, saw %d", want, *count);
}

static herd_value_t* from_json(herd_value_heap_t* h, const char* json) {
  herd_value_t* v;
  ASSERT_OK(herd_value_from_json(h, json, strlen(json), NULL, &v));
  return v;
}

/* JSON.stringify() of a value (malloc'd, NUL-terminated). */
static char* json_of(const herd_value_t* v) {
  uv_buf_t b;
  char* s;
  ASSERT_OK(herd_value_to_json(v, NULL, &b));
  s = strdup(b.base);
  free(b.base);
  return s;
}

/* Case i as the one-element array value-peer.js sends (send() refuses a
 * bare undefined). */
static herd_value_t* wrapped(herd_value_heap_t* h, int i) {
  herd_value_t* a = herd_value_new_array(h);
  ASSERT(a != NULL);
  ASSERT_OK(herd_value_array_push(a, test_value_case_build(h, i)));
  return a;
}

/* A frame (length and V8 bytes) of a value, malloc'd. */
static uv_buf_t frame_of(const herd_value_t* v) {
  uv_buf_t b;
  size_t n;
  ASSERT_OK(herd__value_write(v, NULL, 4, &b));
  n = b.len - 4;
  b.base[0] = (char)(n >> 24);
  b.base[1] = (char)(n >> 16);
  b.base[2] = (char)(n >> 8);
  b.base[3] = (char)n;
  return b;
}

static uv_buf_t frame_json(const char* json) {
  herd_value_heap_t h;
  uv_buf_t b;
  herd_value_heap_init(&h);
  b = frame_of(from_json(&h, json));
  herd_value_heap_free(&h);
  return b;
}

/* Writes bytes on the raw end, with one fd attached when fd >= 0. */
static void raw_write(int raw, const void* bytes, size_t n, int fd) {
  struct msghdr msg;
  struct iovec iov;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  size_t done = 0;
  while (done < n) {
    ssize_t w;
    memset(&msg, 0, sizeof(msg));
    iov.iov_base = (char*)bytes + done;
    iov.iov_len = n - done;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0 && done == 0) {
      struct cmsghdr* cm;
      memset(&ctl, 0, sizeof(ctl));
      msg.msg_control = ctl.buf;
      msg.msg_controllen = sizeof(ctl.buf);
      cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    w = sendmsg(raw, &msg, MSG_NOSIGNAL);
    ASSERT(w > 0);
    done += (size_t)w;
  }
}

static void raw_frame(int raw, const char* json, int fd) {
  uv_buf_t b = frame_json(json);
  raw_write(raw, b.base, b.len, fd);
  free(b.base);
}

/* What the raw end read: bytes not yet taken as frames. */
typedef struct {
  char buf[1 << 20];
  size_t len;
} raw_in_t;

/* Runs the loop and reads the raw end until a whole frame is there (5 s at
 * most); returns its bytes (length included) in a malloc'd buffer. */
static uv_buf_t raw_read_frame(uv_loop_t* loop, int raw, raw_in_t* in) {
  for (int i = 0; i < 5000; i++) {
    ssize_t r;
    if (in->len >= 4) {
      size_t n = (size_t)(uint8_t)in->buf[0] << 24 |
                 (size_t)(uint8_t)in->buf[1] << 16 |
                 (size_t)(uint8_t)in->buf[2] << 8 | (uint8_t)in->buf[3];
      if (in->len >= n + 4) {
        uv_buf_t b = uv_buf_init(malloc(n + 4), (unsigned)(n + 4));
        memcpy(b.base, in->buf, n + 4);
        memmove(in->buf, in->buf + n + 4, in->len - n - 4);
        in->len -= n + 4;
        return b;
      }
    }
    uv_run(loop, UV_RUN_NOWAIT);
    r = recv(raw, in->buf + in->len, sizeof(in->buf) - in->len, MSG_DONTWAIT);
    if (r > 0)
      in->len += (size_t)r;
    else
      test_sleep_ms(1);
  }
  FATAL("no frame came");
}

/* Reads one frame and checks that it is `json` (JSON.stringify() of the
 * value it holds). */
static void raw_expect(uv_loop_t* loop, int raw, raw_in_t* in,
                       const char* json) {
  herd_value_heap_t h;
  herd_value_t* v;
  uv_buf_t b = raw_read_frame(loop, raw, in);
  char* text;
  herd_value_heap_init(&h);
  ASSERT_OK(herd_value_deserialize(&h, b.base + 4, b.len - 4, NULL, &v));
  text = json_of(v);
  ASSERT_STR_EQ(text, json);
  free(text);
  free(b.base);
  herd_value_heap_free(&h);
}

/* Every case of value-cases.js between two herd ends, both ways, as values;
 * then as JSON text to an end with only a message callback, where the
 * values with no JSON form are reported as HERD_ENOJSON. */
TEST_IMPL(ipc_advanced_values) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_value_heap_t h;
  int n = test_value_case_count();

  ASSERT_OK(uv_loop_init(&loop));
  pair_mode(&loop, &a, &b, HERD_SERIALIZATION_ADVANCED);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  ASSERT_OK(herd_ipc_start(&b, &by_value));
  herd_value_heap_init(&h);
  for (int i = 0; i < n; i++)
    ASSERT(herd_ipc_send_value(&a, wrapped(&h, i)) >= 0);
  run_until(&loop, &sb.messages, n);
  ASSERT_EQ(sb.nerrors, 0);
  for (int i = 0; i < n; i++) {
    if (herd__value_equal(sb.values[i], wrapped(&h, i)) != 1)
      FATAL("a -> b: %s differs", test_value_case_name(i));
    ASSERT(herd_ipc_send_value(&b, sb.values[i]) >= 0);
  }
  run_until(&loop, &sa.messages, n);
  for (int i = 0; i < n; i++)
    if (herd__value_equal(sa.values[i], wrapped(&h, i)) != 1)
      FATAL("b -> a: %s differs", test_value_case_name(i));

  /* The same to a message callback: JSON.stringify() of each. */
  seen_free(&sb);
  seen_init(&sb);
  ASSERT_OK(herd_ipc_start(&b, &by_text));
  for (int i = 0; i < n; i++)
    ASSERT(herd_ipc_send_value(&a, wrapped(&h, i)) >= 0);
  run_until(&loop, &sb.n, n);
  for (int i = 0; i < n; i++) {
    uv_buf_t text;
    int r = herd_value_to_json(wrapped(&h, i), NULL, &text);
    if (r == 0) {
      ASSERT_EQ(sb.errs[i], 0);
      ASSERT_STR_EQ(sb.texts[i], text.base);
      free(text.base);
    } else {
      /* No JSON form (a BigInt, a cycle), or too long a text for a line
       * (a sparse array of length 2^32 - 1). */
      ASSERT(r == UV_EINVAL || r == HERD_EVALUELIMIT);
      ASSERT_EQ(sb.errs[i], r == UV_EINVAL ? HERD_ENOJSON : r);
    }
  }
  ASSERT(sb.nerrors >= 3); /* BigInts and cycles */
  herd_value_heap_free(&h);
  herd_ipc_disconnect(&a);
  test_loop_run_close(&loop);
  ASSERT_EQ(sa.disconnects, 1);
  ASSERT_EQ(sb.disconnects, 1);
  seen_free(&sa);
  seen_free(&sb);
  return 0;
}

/* JSON text on an advanced channel is sent as JSON.parse() of it, and
 * values on a json channel as JSON.stringify() of them: a message reads the
 * same in either mode, as between Node processes. */
TEST_IMPL(ipc_advanced_json_bridge) {
  static const char text[] =
      "{\"a\":[1,2.5,\"x\",null,true],\"u\":\"\\ud800\xc3\xa9\",\"o\":{}}";
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_value_heap_t h;
  herd_value_t *v, *m;

  ASSERT_OK(uv_loop_init(&loop));
  herd_value_heap_init(&h);

  /* advanced: text in, value out, and back as text. */
  pair_mode(&loop, &a, &b, HERD_SERIALIZATION_ADVANCED);
  ASSERT_OK(herd_ipc_start(&a, &by_text));
  ASSERT_OK(herd_ipc_start(&b, &by_value));
  ASSERT_OK(herd_ipc_send(&a, text, sizeof(text) - 1));
  ASSERT_OK(herd_ipc_send(&a, " [ 1 ,\n 2 ] ", 12));
  ASSERT_EQ(herd_ipc_send(&a, "{\"a\":", 5), HERD_EBADJSON);
  ASSERT_EQ(herd_ipc_send(&a, "\"\xff\"", 3), HERD_EBADUTF8);
  ASSERT_EQ(herd_ipc_send_value(&a, NULL), UV_EINVAL);
  ASSERT_EQ(herd_ipc_send_value(&a, herd_value_undefined()), UV_EINVAL);
  ASSERT_EQ(herd_ipc_send_value(&a, herd_value_new_bigint_int64(&h, 1)),
            UV_EINVAL);
  run_until(&loop, &sb.messages, 2);
  ASSERT_EQ(herd__value_equal(sb.values[0], from_json(&h, text)), 1);
  ASSERT_EQ(herd__value_equal(sb.values[1], from_json(&h, "[1,2]")), 1);
  ASSERT_OK(herd_ipc_send_value(&b, sb.values[0]));
  run_until(&loop, &sa.messages, 1);
  ASSERT_STR_EQ(sa.texts[0], text);
  herd_ipc_disconnect(&a);
  test_loop_run_close(&loop);
  seen_free(&sa);
  seen_free(&sb);

  /* json: values go as JSON.stringify(), lines arrive as JSON.parse() to a
   * value callback. */
  ASSERT_OK(uv_loop_init(&loop));
  pair_mode(&loop, &a, &b, HERD_SERIALIZATION_JSON);
  ASSERT_OK(herd_ipc_start(&a, &by_text));
  ASSERT_OK(herd_ipc_start(&b, &by_value));
  m = herd_value_new_map(&h);
  ASSERT_OK(herd_value_map_set(m, herd_value_null(), herd_value_null()));
  v = from_json(&h, "{\"d\":1}");
  ASSERT_OK(herd_value_object_set(v, "map", m));
  ASSERT_OK(herd_value_object_set(v, "date", herd_value_new_date(&h, 0)));
  ASSERT_OK(herd_value_object_set(v, "u", herd_value_undefined()));
  ASSERT_OK(herd_ipc_send_value(&a, v));
  ASSERT_OK(herd_ipc_send(&a, text, sizeof(text) - 1));
  ASSERT_OK(
      herd_value_object_set(v, "big", herd_value_new_bigint_int64(&h, 1)));
  ASSERT_EQ(herd_ipc_send_value(&a, v), HERD_ENOJSON);
  ASSERT_OK(herd_value_object_set(v, "big", v));
  ASSERT_EQ(herd_ipc_send_value(&a, v), HERD_ENOJSON); /* a cycle */
  ASSERT_EQ(herd_ipc_send_value(&a, herd_value_undefined()), UV_EINVAL);
  run_until(&loop, &sb.messages, 2);
  ASSERT_EQ(herd__value_equal(sb.values[0],
                              from_json(&h,
                                        "{\"d\":1,\"map\":{},\"date\":"
                                        "\"1970-01-01T00:00:00.000Z\"}")),
            1);
  ASSERT_EQ(herd__value_equal(sb.values[1], from_json(&h, text)), 1);
  ASSERT_OK(herd_ipc_send_value(&b, sb.values[1]));
  run_until(&loop, &sa.messages, 1);
  ASSERT_STR_EQ(sa.texts[0], text);
  ASSERT_EQ(sb.nerrors, 0);
  herd_ipc_disconnect(&a);
  test_loop_run_close(&loop);
  seen_free(&sa);
  seen_free(&sb);
  herd_value_heap_free(&h);
  return 0;
}

/* Runs `node value-peer.js hex JSON...` and returns its stdout. */
static char* node_hex(const char* const* values) {
  herd_spawn_sync_options_t o;
  herd_sync_result_t r;
  char script[1024];
  const char* args[8] = {script, "hex"};
  char* out;
  int n = 2;
  snprintf(script, sizeof(script), "%s/test/fixtures/value-peer.js",
           test_source_dir());
  while (*values != NULL && n < 7)
    args[n++] = *values++;
  args[n] = NULL;
  memset(&o, 0, sizeof(o));
  o.timeout = 20000;
  ASSERT_OK(herd_spawn_sync("node", args, &o, &r));
  ASSERT_EQ(r.status, 0);
  out = strdup(r.out);
  herd_sync_result_free(&r);
  return out;
}

static void append_hex(char* out, const char* bytes, size_t n) {
  out += strlen(out);
  for (size_t i = 0; i < n; i++)
    out += sprintf(out, "%02x", (uint8_t)bytes[i]);
  strcpy(out, "\n");
}

/* What herd writes on the wire, byte for byte: a 4-byte big-endian length
 * and V8's bytes, the same bytes Node writes for the same messages
 * (v8.serialize() of them, which is what ChildProcessSerializer writes for
 * values without typed arrays): a plain message, the ACK and NACK, the
 * NODE_HANDLE envelope. */
TEST_IMPL(ipc_advanced_wire) {
  static const char* const node_values[] = {
      "{\"hello\":[1,\"x\"]}", "{\"cmd\":\"NODE_HANDLE_ACK\"}",
      "{\"cmd\":\"NODE_HANDLE_NACK\"}",
      "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{\"a\":1}}",
      NULL};
  static raw_in_t in;
  char* want = node_hex(node_values);
  char got[4096] = "";
  uv_loop_t loop;
  herd_ipc_t a;
  herd_value_heap_t h;
  int raw, devnull;
  uv_buf_t f;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  herd_value_heap_init(&h);
  ASSERT_OK(herd_ipc_send_value(&a, from_json(&h, node_values[0])));
  f = raw_read_frame(&loop, raw, &in);
  append_hex(got, f.base + 4, f.len - 4);
  free(f.base);

  /* A handle with an fd gets the ACK, one without the NACK. */
  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  raw_frame(raw, node_values[3], devnull);
  f = raw_read_frame(&loop, raw, &in);
  append_hex(got, f.base + 4, f.len - 4);
  free(f.base);
  raw_frame(raw, node_values[3], -1);
  f = raw_read_frame(&loop, raw, &in);
  append_hex(got, f.base + 4, f.len - 4);
  free(f.base);
  run_until(&loop, &sa.messages, 1);
  ASSERT_STR_EQ(sa.types[0], "net.Native");
  ASSERT_EQ(herd__value_equal(sa.values[0], from_json(&h, "{\"a\":1}")), 1);

  /* herd's own envelope. */
  ASSERT_OK(herd_ipc_send_value_fd(&a, from_json(&h, "{\"a\":1}"), devnull,
                                   "net.Native", on_sent, (void*)1));
  f = raw_read_frame(&loop, raw, &in);
  append_hex(got, f.base + 4, f.len - 4);
  free(f.base);
  ASSERT_STR_EQ(got, want);
  raw_frame(raw, "{\"cmd\":\"NODE_HANDLE_ACK\"}", -1);
  run_until(&loop, &sa.sent[1], 1);
  ASSERT_EQ(sa.sent_status[1], 0);
  ASSERT_EQ(sa.nerrors, 0);

  close(devnull);
  close(raw);
  test_loop_run_close(&loop);
  herd_value_heap_free(&h);
  seen_free(&sa);
  free(want);
  return 0;
}

static int tcp_listener(int* port) {
  struct sockaddr_in sa_;
  socklen_t sl = sizeof(sa_);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&sa_, 0, sizeof(sa_));
  sa_.sin_family = AF_INET;
  sa_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, (struct sockaddr*)&sa_, sizeof(sa_)), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  ASSERT_EQ(getsockname(fd, (struct sockaddr*)&sa_, &sl), 0);
  *port = ntohs(sa_.sin_port);
  return fd;
}

static int local_port(int fd) {
  struct sockaddr_in sa_;
  socklen_t sl = sizeof(sa_);
  ASSERT_EQ(getsockname(fd, (struct sockaddr*)&sa_, &sl), 0);
  return ntohs(sa_.sin_port);
}

static void closed_cb(uv_handle_t* handle) {
  *(int*)handle->data = 1;
}

/* Handles with values between two herd ends: a listening uv_tcp_t, a
 * connected one (closed by herd once acknowledged, as Node does), a raw fd;
 * each arrives with its message as a value, and every send callback runs
 * once. */
TEST_IMPL(ipc_advanced_handles) {
  uv_loop_t loop;
  herd_ipc_t a, b;
  herd_value_heap_t h;
  uv_tcp_t server, conn;
  int port, lfd, cfd, sock_closed = 0;

  ASSERT_OK(uv_loop_init(&loop));
  pair_mode(&loop, &a, &b, HERD_SERIALIZATION_ADVANCED);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  ASSERT_OK(herd_ipc_start(&b, &by_value));
  herd_value_heap_init(&h);
  lfd = tcp_listener(&port);
  ASSERT_OK(uv_tcp_init(&loop, &server));
  ASSERT_OK(uv_tcp_open(&server, lfd));
  cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  {
    struct sockaddr_in to;
    memset(&to, 0, sizeof(to));
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons((uint16_t)port);
    ASSERT_EQ(connect(cfd, (struct sockaddr*)&to, sizeof(to)), 0);
  }
  ASSERT_OK(uv_tcp_init(&loop, &conn));
  ASSERT_OK(uv_tcp_open(&conn, cfd));
  conn.data = &sock_closed;

  ASSERT_OK(herd_ipc_send_value_ex(&a, herd_value_new_buffer(&h, "srv", 3),
                                   (uv_handle_t*)&server, 0, NULL, on_sent,
                                   (void*)1));
  ASSERT_OK(herd_ipc_send_value_ex(&a, from_json(&h, "{\"s\":1}"),
                                   (uv_handle_t*)&conn, 0, closed_cb, on_sent,
                                   (void*)2));
  ASSERT_OK(herd_ipc_send_value_fd(&a, herd_value_new_date(&h, 5), lfd,
                                   "net.Native", on_sent, (void*)3));
  ASSERT_OK(herd_ipc_send_value_ex(&a, from_json(&h, "\"plain\""), NULL, 0,
                                   NULL, on_sent, (void*)4));
  run_until(&loop, &sb.messages, 4);
  run_until(&loop, &sa.sent[4], 1);
  for (int i = 1; i <= 4; i++) {
    ASSERT_EQ(sa.sent[i], 1);
    ASSERT_EQ(sa.sent_status[i], 0);
  }
  ASSERT_STR_EQ(sb.types[0], "net.Server");
  ASSERT_EQ(local_port(sb.fds[0]), port);
  ASSERT_EQ(herd_value_view_kind(sb.values[0]), HERD_VIEW_BUFFER);
  ASSERT_STR_EQ(sb.types[1], "net.Socket");
  ASSERT_EQ(herd__value_equal(sb.values[1], from_json(&h, "{\"s\":1}")), 1);
  ASSERT_STR_EQ(sb.types[2], "net.Native");
  ASSERT_EQ(herd_value_type(sb.values[2]), HERD_VALUE_DATE);
  ASSERT_STR_EQ(sb.types[3], "");
  run_until(&loop, &sock_closed, 1);
  ASSERT_EQ(sb.nerrors + sa.nerrors, 0);

  uv_close((uv_handle_t*)&server, NULL);
  herd_ipc_disconnect(&a);
  test_loop_run_close(&loop);
  herd_value_heap_free(&h);
  seen_free(&sa);
  seen_free(&sb);
  return 0;
}

/* A peer that writes frames herd cannot read, or messages that answer
 * nothing: each is reported and dropped, a NODE_HANDLE among them gets its
 * NACK and its fd is closed, a stray fd is closed, and the channel goes on
 * to deliver what follows. */
TEST_IMPL(ipc_advanced_malformed) {
  static raw_in_t in;
  static const char deep_open[] = "\x41\x01"; /* A, length 1 */
  uv_loop_t loop;
  herd_ipc_t a;
  char bytes[64 * 1024];
  int raw, fd, fds_before;
  size_t n;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  fds_before = test_count_fds();
  ASSERT_OK(herd_ipc_start(&a, &by_text));

  /* Not a V8 value: no header. */
  raw_write(raw, "\0\0\0\x03xyz", 7, -1);
  /* An empty frame. */
  raw_write(raw, "\0\0\0\0", 4, -1);
  /* A SharedArrayBuffer: valid, but not something herd represents. */
  raw_write(raw, "\0\0\0\x04\xff\x0fu\x00", 8, -1);
  /* Deeper than the nesting limit: 5000 arrays. */
  n = 0;
  memcpy(bytes + 4, "\xff\x0f", 2);
  n = 6;
  for (int i = 0; i < 5000; i++) {
    memcpy(bytes + n, deep_open, 2);
    n += 2;
  }
  bytes[n++] = '_';
  for (int i = 0; i < 5000; i++) {
    memcpy(bytes + n, "$\x00\x01", 3);
    n += 3;
  }
  bytes[0] = (char)((n - 4) >> 24);
  bytes[1] = (char)((n - 4) >> 16);
  bytes[2] = (char)((n - 4) >> 8);
  bytes[3] = (char)(n - 4);
  raw_write(raw, bytes, n, -1);
  /* A NODE_HANDLE envelope cut short, with an fd: NACK, fd closed. */
  {
    uv_buf_t f = frame_json(
        "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":1}");
    f.base[3] = (char)(f.len - 4 - 5);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    raw_write(raw, f.base, f.len - 5, fd);
    close(fd);
    free(f.base);
  }
  /* A handle of an unknown type: NACK, fd closed. */
  fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  raw_frame(raw, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"fs.File\",\"msg\":2}",
            fd);
  close(fd);
  /* A plain message with an fd: the fd is closed. */
  fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  raw_frame(raw, "{\"plain\":3}", fd);
  close(fd);
  /* Answers to nothing herd asked. */
  raw_frame(raw, "{\"cmd\":\"NODE_HANDLE_ACK\"}", -1);
  raw_frame(raw, "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"k\",\"count\":1}",
            -1);
  /* A BigInt for a message callback: no JSON form. */
  {
    herd_value_heap_t h;
    uv_buf_t f;
    herd_value_t* o;
    herd_value_heap_init(&h);
    o = from_json(&h, "{}");
    ASSERT_OK(
        herd_value_object_set(o, "n", herd_value_new_bigint_int64(&h, 7)));
    f = frame_of(o);
    raw_write(raw, f.base, f.len, -1);
    free(f.base);
    herd_value_heap_free(&h);
  }
  raw_frame(raw, "{\"after\":1}", -1);

  run_until(&loop, &sa.messages, 2);
  ASSERT_STR_EQ(sa.texts[sa.n - 1], "{\"after\":1}");
  {
    static const int want[] = {HERD_EBADVALUE,  HERD_EBADVALUE,
                               HERD_EVALUETYPE, HERD_EVALUELIMIT,
                               HERD_EBADVALUE,  0 /* plain:3 */,
                               HERD_EBADPROTO,  HERD_EBADPROTO,
                               HERD_ENOJSON,    0};
    ASSERT_EQ(sa.n, (int)HERD_ARRAY_SIZE(want));
    for (int i = 0; i < sa.n; i++)
      if (sa.errs[i] != want[i])
        FATAL("event %d: %s, want %s", i, herd_err_name(sa.errs[i]),
              herd_err_name(want[i]));
  }
  ASSERT_STR_EQ(sa.texts[5], "{\"plain\":3}");
  raw_expect(&loop, raw, &in, "{\"cmd\":\"NODE_HANDLE_NACK\"}");
  raw_expect(&loop, raw, &in, "{\"cmd\":\"NODE_HANDLE_NACK\"}");
  ASSERT_EQ(test_count_fds(), fds_before);
  close(raw);
  test_loop_run_close(&loop);
  seen_free(&sa);
  return 0;
}

/* A frame longer than the limit is reported and skipped as it streams in,
 * never buffered; a NODE_HANDLE over the limit gets its NACK and its fd is
 * closed; the next frame arrives whole. */
TEST_IMPL(ipc_advanced_over_limit) {
  static raw_in_t in;
  enum { LIMIT = 64 * 1024, BIG = 8 * 1024 * 1024 };
  uv_loop_t loop;
  herd_ipc_t a;
  herd_value_heap_t h;
  herd_value_t* v;
  uv_buf_t f;
  char* s = malloc(BIG);
  int raw, fd, fds_before;
  size_t sent = 0;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  fds_before = test_count_fds();
  herd_ipc_set_max_line(&a, LIMIT);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  herd__nonblock(raw, 1);
  herd_value_heap_init(&h);
  memset(s, 's', BIG);
  v = herd_value_new_string(&h, s, BIG);
  f = frame_of(v);
  /* The peer writes 8 MiB; herd keeps its read buffer small. */
  while (sent < f.len) {
    ssize_t w = send(raw, f.base + sent, f.len - sent, MSG_NOSIGNAL);
    if (w > 0)
      sent += (size_t)w;
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_LE(a.priv->rcap, LIMIT + 256 * 1024);
  }
  free(f.base);
  herd__nonblock(raw, 0);
  /* Just over the limit, a handle with an fd. */
  v = from_json(&h, "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\"}");
  ASSERT_OK(herd_value_object_set(v, "msg",
                                  herd_value_new_string(&h, s, LIMIT + 100)));
  f = frame_of(v);
  ASSERT(f.len - 4 > LIMIT);
  fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  raw_write(raw, f.base, f.len, fd);
  close(fd);
  free(f.base);
  raw_frame(raw, "{\"after\":1}", -1);
  /* Exactly at the limit: delivered. */
  v = herd_value_new_string(&h, s, LIMIT - 6);
  f = frame_of(v);
  ASSERT_EQ(f.len - 4, LIMIT);
  raw_write(raw, f.base, f.len, -1);
  free(f.base);
  run_until(&loop, &sa.messages, 2);
  raw_expect(&loop, raw, &in, "{\"cmd\":\"NODE_HANDLE_NACK\"}");
  ASSERT_EQ(sa.n, 4);
  ASSERT_EQ(sa.errs[0], HERD_ELINETOOLONG);
  ASSERT_EQ(sa.errs[1], HERD_ELINETOOLONG);
  ASSERT_EQ(herd__value_equal(sa.values[2], from_json(&h, "{\"after\":1}")), 1);
  ASSERT_EQ(herd_value_type(sa.values[3]), HERD_VALUE_STRING);
  ASSERT_EQ(test_count_fds(), fds_before);
  close(raw);
  test_loop_run_close(&loop);
  herd_value_heap_free(&h);
  seen_free(&sa);
  free(s);
  return 0;
}

/* A Node sender's questions about the sockets it sent, in frames, get
 * their answers in frames. */
TEST_IMPL(ipc_advanced_socket_list) {
  static raw_in_t in;
  uv_loop_t loop;
  herd_ipc_t a;
  int raw;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  raw_frame(raw,
            "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"4:127.0.0.1:1\"}",
            -1);
  raw_frame(raw, "{\"cmd\":\"NODE_SOCKET_GET_COUNT\",\"key\":\"6:::1:2\"}", -1);
  raw_expect(&loop, raw, &in,
             "{\"cmd\":\"NODE_SOCKET_ALL_CLOSED\",\"key\":\"4:127.0.0.1:1\"}");
  raw_expect(&loop, raw, &in,
             "{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"6:::1:2\",\"count\":0}");
  ASSERT_EQ(sa.n, 0);
  close(raw);
  test_loop_run_close(&loop);
  seen_free(&sa);
  return 0;
}

/* A peer floods fd-less NODE_HANDLE frames (each answered with a NACK) and
 * never reads: herd stops reading once its unwritten replies pass their
 * bound. When the peer reads, every frame is answered. */
TEST_IMPL(ipc_advanced_reply_flood) {
  enum { BATCH = 512, MAX_SENT = 64 << 20 };
  uv_buf_t one = frame_json("{\"cmd\":\"NODE_HANDLE\"}");
  size_t L = one.len, nack_len = 4 + 28;
  char* batch = malloc(BATCH * L);
  char* rbuf = malloc(1 << 16);
  uv_loop_t loop;
  herd_ipc_t a;
  uint64_t start, blocked_since = 0;
  size_t sent = 0, got = 0;
  int raw;

  for (int i = 0; i < BATCH; i++)
    memcpy(batch + i * L, one.base, L);
  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  herd__nonblock(raw, 1);
  start = uv_hrtime();
  /* Decoding a frame costs more than scanning a line: a longer bound than
   * the json flood's, for a loaded machine under the sanitizers. */
  while (sent < MAX_SENT && uv_hrtime() - start < 10000000000ull) {
    size_t off = sent % L;
    ssize_t w = send(raw, batch + off, BATCH * L - off, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      blocked_since = 0;
    } else {
      ASSERT(errno == EAGAIN);
      if (blocked_since == 0)
        blocked_since = uv_hrtime();
      else if (uv_hrtime() - blocked_since > 300000000ull)
        break;
      test_sleep_ms(1);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  fprintf(stderr, "flood: peer sent %zu bytes, herd queued %zu\n", sent,
          herd_ipc_queued_bytes(&a));
  ASSERT(blocked_since != 0);
  ASSERT_LE(herd_ipc_queued_bytes(&a), 128 * 1024);
  start = uv_hrtime();
  while (uv_hrtime() - start < 10000000000ull) {
    ssize_t r;
    if (sent % L != 0) {
      ssize_t w = send(raw, batch + sent % L, L - sent % L, MSG_NOSIGNAL);
      if (w > 0)
        sent += (size_t)w;
    }
    r = recv(raw, rbuf, 1 << 16, MSG_DONTWAIT);
    if (r > 0)
      got += (size_t)r;
    if (sent % L == 0 && got == sent / L * nack_len)
      break;
    uv_run(&loop, UV_RUN_NOWAIT);
    if (r <= 0)
      test_sleep_ms(1);
  }
  ASSERT_EQ(got, sent / L * nack_len);
  ASSERT_EQ(sa.n, 0);
  close(raw);
  test_loop_run_close(&loop);
  free(batch);
  free(rbuf);
  free(one.base);
  seen_free(&sa);
  return 0;
}

/* The peer hanging up is a disconnect, never an error: what it wrote
 * before is delivered, a frame it left half-written is dropped. */
TEST_IMPL(ipc_advanced_hangup) {
  uv_loop_t loop;
  herd_ipc_t a;
  uv_buf_t f = frame_json("{\"x\":[1,2,3]}");
  int raw;

  ASSERT_OK(uv_loop_init(&loop));
  raw = half_pair(&loop, &a);
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  raw_write(raw, f.base, f.len, -1);
  raw_write(raw, f.base, f.len - 3, -1);
  close(raw);
  test_loop_run_close(&loop);
  ASSERT_EQ(sa.messages, 1);
  ASSERT_EQ(sa.nerrors, 0);
  ASSERT_EQ(sa.disconnects, 1);
  free(f.base);
  seen_free(&sa);
  return 0;
}

/* NODE_CHANNEL_SERIALIZATION_MODE=advanced opens an advanced channel (it
 * used to be refused with HERD_EADVANCED); empty means json, as in Node;
 * a mode Node does not have is refused and the fd closed. */
TEST_IMPL(ipc_advanced_open_parent) {
  static raw_in_t in;
  uv_loop_t loop;
  herd_ipc_t a;
  int sv[2];
  char num[16];

  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  snprintf(num, sizeof(num), "%d", sv[0]);
  setenv("NODE_CHANNEL_FD", num, 1);
  setenv("NODE_CHANNEL_SERIALIZATION_MODE", "yaml", 1);
  ASSERT_EQ(herd_ipc_open_parent(&loop, &a), HERD_EBADPROTO);
  ASSERT(getenv("NODE_CHANNEL_FD") == NULL);
  ASSERT(getenv("NODE_CHANNEL_SERIALIZATION_MODE") == NULL);
  ASSERT_EQ(recv(sv[1], num, 1, 0), 0);
  close(sv[1]);

  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  snprintf(num, sizeof(num), "%d", sv[0]);
  setenv("NODE_CHANNEL_FD", num, 1);
  setenv("NODE_CHANNEL_SERIALIZATION_MODE", "", 1);
  ASSERT_OK(herd_ipc_open_parent(&loop, &a));
  ASSERT_EQ(a.serialization, HERD_SERIALIZATION_JSON);
  herd_ipc_disconnect(&a);
  ASSERT_OK(herd_ipc_start(&a, NULL));
  uv_run(&loop, UV_RUN_DEFAULT);
  close(sv[1]);

  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  snprintf(num, sizeof(num), "%d", sv[0]);
  setenv("NODE_CHANNEL_FD", num, 1);
  setenv("NODE_CHANNEL_SERIALIZATION_MODE", "advanced", 1);
  ASSERT_OK(herd_ipc_open_parent(&loop, &a));
  ASSERT_EQ(a.serialization, HERD_SERIALIZATION_ADVANCED);
  seen_init(&sa);
  a.data = &sa;
  ASSERT_OK(herd_ipc_start(&a, &by_value));
  raw_frame(sv[1], "{\"ping\":1}", -1);
  run_until(&loop, &sa.messages, 1);
  ASSERT_OK(herd_ipc_send_value(&a, sa.values[0]));
  raw_expect(&loop, sv[1], &in, "{\"ping\":1}");
  close(sv[1]);
  test_loop_run_close(&loop);
  ASSERT_EQ(sa.disconnects, 1);
  seen_free(&sa);
  return 0;
}

/* Runs `node argv...` to completion (25 s at most) and returns its status. */
static int run_node(const char* const* argv) {
  pid_t pid = fork();
  int status;
  ASSERT(pid >= 0);
  if (pid == 0) {
    execvp("node", (char* const*)argv);
    _exit(127);
  }
  for (int i = 0; i < 2500; i++) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    test_sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  FATAL("node did not finish");
}

static const char* fixture(char* buf, size_t cap, const char* name) {
  snprintf(buf, cap, "%s/test/fixtures/%s", test_source_dir(), name);
  return buf;
}

/* The child of value-peer.js `channel`, through the channel API: takes
 * every case from its Node parent as a value, checks it against the case
 * built in C, then sends every case back. */
static struct {
  herd_value_heap_t heap;
  int got;
  int failed;
} peer;

static void peer_value(herd_ipc_t* ipc, herd_value_t* v, herd_handle_t* h) {
  int n = test_value_case_count();
  ASSERT(h == NULL);
  ASSERT(peer.got < n);
  if (herd__value_equal(v, wrapped(&peer.heap, peer.got)) != 1) {
    fprintf(stderr, "ipc_advanced_peer: node -> herd %s differs\n",
            test_value_case_name(peer.got));
    peer.failed++;
  }
  if (++peer.got < n)
    return;
  for (int i = 0; i < n; i++)
    ASSERT(herd_ipc_send_value(ipc, wrapped(&peer.heap, i)) >= 0);
}

static void peer_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  fprintf(stderr, "ipc_advanced_peer: %s\n", herd_err_name(err));
  peer.failed++;
}

HELPER_IMPL(ipc_advanced_peer) {
  uv_loop_t loop;
  herd_ipc_t ipc;
  herd_ipc_callbacks_t cbs = {.error = peer_error, .value = peer_value};
  (void)argc;
  (void)argv;
  herd_value_heap_init(&peer.heap);
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_OK(herd_ipc_open_parent(&loop, &ipc));
  ASSERT_EQ(ipc.serialization, HERD_SERIALIZATION_ADVANCED);
  ASSERT_OK(herd_ipc_start(&ipc, &cbs));
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  herd_value_heap_free(&peer.heap);
  ASSERT_EQ(peer.got, test_value_case_count());
  return peer.failed ? 1 : 0;
}

/* A Node parent with serialization: 'advanced' and a herd child: every case
 * of value-cases.js both ways, checked on both sides. */
TEST_IMPL(ipc_advanced_node_parent) {
  char script[1024];
  const char* argv[] = {
      "node",     fixture(script, sizeof(script), "value-peer.js"),
      "channel",  test_exe(),
      "--helper", "ipc_advanced_peer",
      NULL};
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* The same parent sending test/fixtures/ipc-values.js (JSON values, a
 * 1 MiB one, a burst of 100000), then a net.Server and a net.Socket: the
 * herd child uses them (ipc_peer, which speaks JSON through the bridge), or
 * sends them back with their messages (examples/ipc-echo, which speaks
 * values). */
TEST_IMPL(ipc_advanced_node_parent_handles) {
  char script[1024];
  const char* argv[] = {"node",
                        fixture(script, sizeof(script), "ipc-parent.js"),
                        "serve:advanced",
                        test_exe(),
                        "--helper",
                        "ipc_peer",
                        NULL};
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

TEST_IMPL(ipc_advanced_node_parent_echo_handles) {
  char script[1024], exe[1024];
  const char* argv[] = {"node",
                        fixture(script, sizeof(script), "ipc-parent.js"),
                        "echo:advanced", exe, NULL};
  snprintf(exe, sizeof(exe), "%s/examples/ipc-echo", test_binary_dir());
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* A 10 MiB message in a frame comes back whole; over the child's limit a
 * frame is reported and skipped, and the next one arrives. */
TEST_IMPL(ipc_advanced_node_parent_big) {
  char script[1024];
  const char* fits[] = {"node",
                        fixture(script, sizeof(script), "ipc-big.js"),
                        "fits:advanced",
                        test_exe(),
                        "--helper",
                        "ipc_peer",
                        NULL};
  const char* over[] = {"node",     script,     "over:advanced", test_exe(),
                        "--helper", "ipc_peer", "1048576",       NULL};
  ASSERT_EQ(run_node(fits), 0);
  ASSERT_EQ(run_node(over), 0);
  return 0;
}

/* Node's net.Server asks the herd child about a socket it sent, in frames,
 * and its close() completes. */
TEST_IMPL(ipc_advanced_node_parent_socket_list) {
  char script[1024];
  const char* argv[] = {
      "node",       fixture(script, sizeof(script), "ipc-socket-list.js"),
      "--advanced", test_exe(),
      "--helper",   "ipc_peer",
      NULL};
  ASSERT_EQ(run_node(argv), 0);
  return 0;
}

/* herd forks an echoing child in advanced mode (a Node script, or
 * examples/ipc-echo), sends every case and two handles with values, and
 * checks what comes back. */
typedef struct {
  herd_child_t child;
  herd_value_heap_t heap;
  uv_tcp_t server;
  int port;
  int lfd;
  int got;
  int handles_back;
  int closed;
} fork_t;

static void fork_close(herd_child_t* child) {
  fork_t* f = HERD_CONTAINER_OF(child, fork_t, child);
  f->closed = 1;
}

static void fork_error(herd_ipc_t* ipc, int err) {
  (void)ipc;
  FATAL("channel error %s", herd_err_name(err));
}

static void fork_value(herd_ipc_t* ipc, herd_value_t* v, herd_handle_t* h) {
  fork_t* f = ipc->data;
  int n = test_value_case_count();
  if (f->got < n) {
    ASSERT(h == NULL);
    if (herd__value_equal(v, wrapped(&f->heap, f->got)) != 1)
      FATAL("echo of %s differs", test_value_case_name(f->got));
    if (++f->got == n) {
      /* Now the handles: a listening socket, and a raw fd as a socket. */
      ASSERT_OK(herd_ipc_send_value_ex(
          ipc, herd_value_new_buffer(&f->heap, "srv", 3),
          (uv_handle_t*)&f->server, 0, NULL, NULL, NULL));
    }
    return;
  }
  ASSERT(h != NULL);
  ASSERT_STR_EQ(h->type, "net.Server");
  ASSERT(h->listening);
  ASSERT_EQ(local_port(h->fd), f->port);
  ASSERT_EQ(herd_value_view_kind(v), HERD_VIEW_BUFFER);
  f->handles_back++;
  herd_ipc_disconnect(ipc);
}

static void fork_echo(const char* program, const char* const* args,
                      const char* exec_path) {
  static fork_t f;
  uv_loop_t loop;
  herd_fork_options_t opts;
  herd_ipc_callbacks_t cbs = {.error = fork_error, .value = fork_value};
  int n = test_value_case_count();

  memset(&f, 0, sizeof(f));
  herd_value_heap_init(&f.heap);
  ASSERT_OK(uv_loop_init(&loop));
  f.lfd = tcp_listener(&f.port);
  ASSERT_OK(uv_tcp_init(&loop, &f.server));
  ASSERT_OK(uv_tcp_open(&f.server, f.lfd));
  memset(&opts, 0, sizeof(opts));
  opts.exec_path = exec_path;
  opts.spawn.serialization = HERD_SERIALIZATION_ADVANCED;
  opts.spawn.close_cb = fork_close;
  ASSERT_OK(herd_fork(&loop, &f.child, program, args, &opts));
  ASSERT_EQ(f.child.channel->serialization, HERD_SERIALIZATION_ADVANCED);
  f.child.channel->data = &f;
  ASSERT_OK(herd_ipc_start(f.child.channel, &cbs));
  for (int i = 0; i < n; i++)
    ASSERT(herd_ipc_send_value(f.child.channel, wrapped(&f.heap, i)) >= 0);
  while (!f.closed && uv_run(&loop, UV_RUN_ONCE) != 0)
    ;
  uv_close((uv_handle_t*)&f.server, NULL);
  test_loop_run_close(&loop);
  ASSERT(f.closed);
  ASSERT_EQ(f.got, n);
  ASSERT_EQ(f.handles_back, 1);
  ASSERT_EQ(f.child.exit_status, 0);
  ASSERT_EQ(f.child.term_signal, 0);
  herd_value_heap_free(&f.heap);
}

TEST_IMPL(ipc_advanced_fork_node_child) {
  char script[1024];
  const char* args[] = {"echo", NULL};
  fork_echo(fixture(script, sizeof(script), "value-peer.js"), args, "node");
  return 0;
}

TEST_IMPL(ipc_advanced_fork_herd_child) {
  char exe[1024];
  snprintf(exe, sizeof(exe), "%s/examples/ipc-echo", test_binary_dir());
  fork_echo(exe, NULL, NULL);
  return 0;
}

/* herd_spawn() refuses a serialization it does not know. */
TEST_IMPL(ipc_advanced_spawn_options) {
  herd_child_t child;
  herd_spawn_options_t o;
  herd_stdio_t stdio[4] = {{HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_IGNORE, 0},
                           {HERD_STDIO_IPC, 0}};
  uv_loop_t loop;
  ASSERT_OK(uv_loop_init(&loop));
  memset(&o, 0, sizeof(o));
  o.stdio = stdio;
  o.stdio_count = 4;
  o.serialization = (herd_serialization_t)7;
  ASSERT_EQ(herd_spawn(&loop, &child, "true", NULL, &o), UV_EINVAL);
  ASSERT_EQ(
      herd_ipc_open_ex(&loop, &(herd_ipc_t){0}, 0, (herd_serialization_t)7),
      UV_EINVAL);
  test_loop_close(&loop);
  return 0;
}

/* Allocation failures through a whole exchange between two herd ends, in
 * each mode: values and JSON through the bridge both ways, handles (a raw
 * fd and a uv_pipe_t with values, a raw fd with JSON), an internal question
 * and its answer; every allocation fails in turn. Each send the channel
 * accepted gets its callback once, nothing leaks. */
static int alloc_calls_cb[8];
static int alloc_accepted[8];

static void alloc_sent(herd_ipc_t* ipc, int status, void* arg) {
  (void)ipc;
  (void)status;
  alloc_calls_cb[(intptr_t)arg]++;
}

static void alloc_echo(herd_ipc_t* ipc, herd_value_t* v, herd_handle_t* h) {
  (void)h;
  herd_ipc_send_value(ipc, v);
}

static void alloc_text(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* h) {
  (void)ipc;
  (void)json;
  (void)len;
  (void)h;
}

static void alloc_case(void* arg) {
  static const char question[] =
      "{\"cmd\":\"NODE_SOCKET_GET_COUNT\",\"key\":\"k\"}";
  herd_serialization_t mode = *(herd_serialization_t*)arg;
  uv_loop_t loop;
  herd_ipc_t* a = malloc(sizeof(*a));
  herd_ipc_t* b = malloc(sizeof(*b));
  uv_pipe_t* pipe = malloc(sizeof(*pipe));
  herd_ipc_callbacks_t cba = {.message = alloc_text};
  herd_ipc_callbacks_t cbb = {.value = alloc_echo};
  herd_value_heap_t h;
  herd_value_t* v;
  int sv[2], pv[2], devnull, r;

  memset(alloc_calls_cb, 0, sizeof(alloc_calls_cb));
  memset(alloc_accepted, 0, sizeof(alloc_accepted));
  herd_value_heap_init(&h);
  ASSERT_OK(uv_loop_init(&loop));
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  if (herd_ipc_open_ex(&loop, a, sv[0], mode) != 0) {
    free(a);
    close(sv[0]);
    free(b);
    close(sv[1]);
    free(pipe);
    test_loop_close(&loop);
    return;
  }
  if (herd_ipc_open_ex(&loop, b, sv[1], mode) != 0) {
    free(b);
    close(sv[1]);
    free(pipe);
    herd_ipc_disconnect(a);
    ASSERT_OK(herd_ipc_start(a, NULL));
    test_loop_run_close(&loop);
    free(a);
    return;
  }
  ASSERT_OK(herd_ipc_start(a, &cba));
  ASSERT_OK(herd_ipc_start(b, &cbb));
  devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  v = herd_value_new_object(&h);
  if (v != NULL &&
      herd_value_object_set(v, "b", herd_value_new_buffer(&h, "xy", 2)) == 0) {
    r = herd_ipc_send_value_ex(a, v, NULL, 0, NULL, alloc_sent, (void*)1);
    alloc_accepted[1] = r >= 0;
    r = herd_ipc_send_value_fd(a, v, devnull, "net.Native", alloc_sent,
                               (void*)2);
    alloc_accepted[2] = r >= 0;
  }
  /* A connected pipe, kept open (the peer's copy is closed by b). */
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pv), 0);
  ASSERT_OK(uv_pipe_init(&loop, pipe, 0));
  ASSERT_OK(uv_pipe_open(pipe, pv[0]));
  close(pv[1]);
  r = herd_ipc_send_value_ex(a, herd_value_boolean(1), (uv_handle_t*)pipe,
                             HERD_SEND_KEEP_OPEN, NULL, alloc_sent, (void*)5);
  alloc_accepted[5] = r >= 0;
  r = herd_ipc_send_ex(a, "{\"j\":[1,2]}", 11, NULL, 0, NULL, alloc_sent,
                       (void*)3);
  alloc_accepted[3] = r >= 0;
  r = herd_ipc_send_fd(a, "{\"j\":3}", 7, devnull, "net.Socket", alloc_sent,
                       (void*)4);
  alloc_accepted[4] = r >= 0;
  /* b answers a question of a Node sender. */
  r = herd_ipc_send(a, question, sizeof(question) - 1);
  close(devnull);
  herd_value_heap_free(&h);
  herd_ipc_disconnect(a);
  uv_close((uv_handle_t*)pipe, NULL);
  test_loop_run_close(&loop);
  for (int i = 1; i <= 5; i++)
    ASSERT_EQ(alloc_calls_cb[i], alloc_accepted[i]);
  free(a);
  free(b);
  free(pipe);
}

TEST_IMPL(ipc_advanced_alloc) {
  herd_serialization_t mode = HERD_SERIALIZATION_ADVANCED;
  ASSERT_GE(alloc_sweep("advanced channel", alloc_case, &mode), 10);
  mode = HERD_SERIALIZATION_JSON;
  ASSERT_GE(alloc_sweep("json channel with values", alloc_case, &mode), 10);
  return 0;
}
