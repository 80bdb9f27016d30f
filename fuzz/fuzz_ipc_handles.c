/* A stateful fuzz target for the channel's protocol state. The input is a
 * script of what a peer does: write user messages (some make herd's message
 * callback send a handle or a message back), ACKs and NACKs whenever it
 * likes, NODE_HANDLE with and without an fd, stray fds, internal questions,
 * garbage and over-long lines; read some of what herd wrote; while herd's
 * end also sends handles of its own from outside any callback, and
 * allocations fail now and then. herd's socket buffer is small, so handles
 * are often only partly written when an answer arrives.
 *
 * Checked, besides what ASan and UBSan see (crash, abort, leak, overflow):
 * - every send callback runs exactly once, and a handle reported sent (0)
 *   before the peer closed had reached the peer;
 * - every fd the peer receives came with a NODE_HANDLE line and is the fd
 *   herd was asked to send with that message (each is a memfd of its own
 *   inode), and no such line comes without its fd;
 * - once both ends are closed, no fd is left open and the loop closes.
 *
 * Built with FUZZ_ADVANCED (fuzz_ipc_advanced.c), the same game runs in
 * Node's advanced serialization: the peer writes frames (V8 bytes after a
 * 4-byte length) instead of lines, herd's end sends values as well as JSON
 * text, and what herd writes is read back as frames. */
#include "internal.h"
#include "value-int.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef FUZZ_ADVANCED
#define MODE HERD_SERIALIZATION_ADVANCED
#else
#define MODE HERD_SERIALIZATION_JSON
#endif

#define MAX_SENDS   256
#define MAX_PEER_IN (1 << 18)
#define CHECK(x)        \
  do {                  \
    if (!(x))           \
      __builtin_trap(); \
  } while (0)

typedef struct {
  ino_t ino;    /* the memfd sent, 0 for a plain message */
  int expected; /* the send was accepted: its callback must run once */
  int calls;
  int status;
  int acked_while_open; /* status 0 came before the peer closed */
  int received;         /* the peer read its line (and fd) */
} send_t;

static struct {
  uv_loop_t loop;
  herd_ipc_t ipc;
  int raw;
  int peer_closed;
  int fail_allocs; /* the next this many allocations fail */
  int herd_sends;
  send_t sends[MAX_SENDS];
  int nsends;
  const uint8_t* data;
  size_t size, pos;
  /* What the peer read and has not parsed: in[0] is stream offset base. */
  char in[MAX_PEER_IN];
  size_t in_len;
  uint64_t in_base;
  struct {
    int fd;
    uint64_t from, to;
  } rfds[64];
  int nrfds;
} F;

static void* f_malloc(size_t n) {
  if (F.fail_allocs > 0) {
    F.fail_allocs--;
    return NULL;
  }
  return malloc(n);
}

static void* f_realloc(void* p, size_t n) {
  if (F.fail_allocs > 0) {
    F.fail_allocs--;
    return NULL;
  }
  return realloc(p, n);
}

static void* f_calloc(size_t c, size_t n) {
  if (F.fail_allocs > 0) {
    F.fail_allocs--;
    return NULL;
  }
  return calloc(c, n);
}

static int next(void) {
  return F.pos < F.size ? F.data[F.pos++] : -1;
}

static int count_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  struct dirent* de;
  int n = 0;
  CHECK(d != NULL);
  while ((de = readdir(d)) != NULL)
    n += de->d_name[0] != '.';
  closedir(d);
  return n;
}

static ino_t inode_of(int fd) {
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  return st.st_ino;
}

static void on_sent(herd_ipc_t* ipc, int status, void* arg) {
  send_t* s = &F.sends[(intptr_t)arg];
  (void)ipc;
  CHECK(s->expected);
  CHECK(s->calls == 0);
  s->calls++;
  s->status = status;
  if (status == 0 && s->ino != 0 && !F.peer_closed)
    s->acked_while_open = 1;
}

/* herd's end sends something: 0 a handle (a fresh memfd), 1 a message with
 * a callback, 2 a big message without one. Like a program that respects
 * send()'s return value, it stops while much is queued. */
static void herd_send(int kind) {
  char json[8192];
  int n, r, id = -1;
  if (F.herd_sends >= 512 || herd_ipc_queued_bytes(&F.ipc) > (1 << 20))
    return;
  F.herd_sends++;
  if (kind != 2) {
    if (F.nsends == MAX_SENDS)
      return;
    id = F.nsends++;
    memset(&F.sends[id], 0, sizeof(F.sends[id]));
  }
  if (kind == 2) {
    n = snprintf(json, sizeof(json), "{\"pad\":\"%06000d\"}", 0);
    herd_ipc_send(&F.ipc, json, (size_t)n);
    return;
  }
  n = snprintf(json, sizeof(json), "{\"id\":%d}", id);
  if (kind == 0) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    CHECK(fd >= 0);
    F.sends[id].ino = inode_of(fd);
    if (MODE == HERD_SERIALIZATION_ADVANCED && (id & 1)) {
      /* The same message as a value (which the allocations may fail to
       * build: then nothing is sent). */
      herd_value_heap_t h;
      herd_value_t* v;
      herd_value_heap_init(&h);
      v = herd_value_new_object(&h);
      r = herd_value_object_set(v, "id", herd_value_new_number(&h, id));
      if (r == 0)
        r = herd_ipc_send_value_fd(&F.ipc, v, fd, "net.Native", on_sent,
                                   (void*)(intptr_t)id);
      herd_value_heap_free(&h);
    } else {
      r = herd_ipc_send_fd(&F.ipc, json, (size_t)n, fd, "net.Native", on_sent,
                           (void*)(intptr_t)id);
    }
    close(fd);
  } else {
    r = herd_ipc_send_ex(&F.ipc, json, (size_t)n, NULL, 0, NULL, on_sent,
                         (void*)(intptr_t)id);
  }
  F.sends[id].expected = r >= 0;
}

static void on_message(herd_ipc_t* ipc, const char* json, size_t len,
                       herd_handle_t* handle) {
  int64_t m;
  (void)ipc;
  CHECK(herd_json_validate(json, len) == 0);
  if (handle != NULL && (len & 1)) {
    int fd = herd_handle_take(handle);
    CHECK(fd >= 0);
    close(fd);
  }
  if (herd_json_get_int(json, len, "m", &m) != 0)
    return;
  if (m == 15)
    herd_ipc_disconnect(&F.ipc);
  else
    herd_send((int)(m % 3));
}

/* A message as a value (advanced runs deliver half of them so). */
static void on_value(herd_ipc_t* ipc, herd_value_t* v, herd_handle_t* handle) {
  herd_value_t* m = herd_value_object_get(v, "m");
  (void)ipc;
  if (handle != NULL && herd_value_type(v) == HERD_VALUE_NUMBER) {
    int fd = herd_handle_take(handle);
    CHECK(fd >= 0);
    close(fd);
  }
  if (m == NULL || herd_value_type(m) != HERD_VALUE_NUMBER)
    return;
  if ((int)herd_value_get_number(m) == 15)
    herd_ipc_disconnect(&F.ipc);
  else
    herd_send((int)herd_value_get_number(m) % 3);
}

/* The cluster hook's place: whatever it sends counts as herd's reply. */
static void on_internal(herd_ipc_t* ipc, const char* json, size_t len,
                        herd_handle_t* handle) {
  on_message(ipc, json, len, handle);
}

static void peer_write(const char* s, size_t n, int fd) {
  struct msghdr msg;
  struct iovec iov;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  if (F.peer_closed)
    return;
  memset(&msg, 0, sizeof(msg));
  iov.iov_base = (void*)s;
  iov.iov_len = n;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    struct cmsghdr* cm;
    msg.msg_control = ctl.buf;
    msg.msg_controllen = sizeof(ctl.buf);
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  /* A full socket drops the write (or the rest of it): a peer writing
   * garbage is part of the game. */
  (void)sendmsg(F.raw, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

#ifdef FUZZ_ADVANCED
/* The peer's own use of the value module must not meet the allocation
 * failures meant for herd's end. */
static int allocs_off(void) {
  int saved = F.fail_allocs;
  F.fail_allocs = 0;
  return saved;
}

/* A message: `line` is JSON text with its '\n'; advanced runs send it as
 * a frame of the value it stands for. */
static void peer_msg(const char* line, int fd) {
  herd_value_heap_t h;
  herd_value_t* v;
  uv_buf_t b;
  size_t n = strlen(line) - 1;
  int saved = allocs_off();
  herd_value_heap_init(&h);
  CHECK(herd_value_from_json(&h, line, n, NULL, &v) == 0);
  CHECK(herd__value_write(v, NULL, 4, &b) == 0);
  herd_value_heap_free(&h);
  F.fail_allocs = saved;
  n = b.len - 4;
  b.base[0] = (char)(n >> 24);
  b.base[1] = (char)(n >> 16);
  b.base[2] = (char)(n >> 8);
  b.base[3] = (char)n;
  peer_write(b.base, b.len, fd);
  free(b.base);
}
#else
static void peer_msg(const char* line, int fd) {
  peer_write(line, strlen(line), fd);
}
#endif

static void peer_write_str(const char* s) {
  peer_msg(s, -1);
}

/* herd's fd rides on the sendmsg() that starts with its message, so it
 * came with the chunk in which the message starts: the NODE_HANDLE for
 * send `id` took it, and it is the fd herd was asked to send. */
static void peer_took_fd(uint64_t at, int64_t id) {
  int k;
  for (k = 0; k < F.nrfds; k++)
    if (F.rfds[k].from <= at && at < F.rfds[k].to)
      break;
  CHECK(k < F.nrfds);
  CHECK(id >= 0 && id < F.nsends && F.sends[id].ino != 0);
  CHECK(inode_of(F.rfds[k].fd) == F.sends[id].ino);
  F.sends[id].received = 1;
  close(F.rfds[k].fd);
  F.rfds[k] = F.rfds[--F.nrfds];
}

static void peer_plain(int64_t id) {
  CHECK(id >= 0 && id < F.nsends && F.sends[id].ino == 0);
  F.sends[id].received = 1;
}

#ifdef FUZZ_ADVANCED
/* The id of a message herd sent ({"id":N}), or -1. */
static int64_t value_id(const herd_value_t* v) {
  const herd_value_t* id = v ? herd_value_object_get(v, "id") : NULL;
  return id != NULL && herd_value_type(id) == HERD_VALUE_NUMBER
             ? (int64_t)herd_value_get_number(id)
             : -1;
}

/* Checks the frames the peer has read completely: each one decodes. */
static void peer_parse(void) {
  size_t start = 0;
  int saved = allocs_off();
  while (F.in_len - start >= 4) {
    const uint8_t* b = (const uint8_t*)F.in + start;
    size_t len =
        (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3];
    uint64_t at = F.in_base + start;
    herd_value_heap_t h;
    herd_value_t* v;
    const char* cmd;
    size_t cmd_len;
    if (F.in_len - start < 4 + len)
      break;
    herd_value_heap_init(&h);
    CHECK(herd_value_deserialize(&h, b + 4, len, NULL, &v) == 0);
    if (herd__value_internal_cmd(v, &cmd, &cmd_len) && cmd_len == 11 &&
        memcmp(cmd, "NODE_HANDLE", 11) == 0)
      peer_took_fd(at, value_id(herd_value_object_get(v, "msg")));
    else if (value_id(v) >= 0)
      peer_plain(value_id(v));
    herd_value_heap_free(&h);
    start += 4 + len;
  }
  F.fail_allocs = saved;
#else
/* Checks the lines the peer has read completely. */
static void peer_parse(void) {
  static const char handle_prefix[] = "{\"cmd\":\"NODE_HANDLE\",";
  size_t start = 0;
  char* nl;
  while ((nl = memchr(F.in + start, '\n', F.in_len - start)) != NULL) {
    size_t len = (size_t)(nl - (F.in + start));
    const char* line = F.in + start;
    uint64_t at = F.in_base + start;
    int64_t id = -1;
    const char* msg;
    size_t msg_len;
    if (len >= sizeof(handle_prefix) - 1 &&
        memcmp(line, handle_prefix, sizeof(handle_prefix) - 1) == 0) {
      CHECK(herd_json_get(line, len, "msg", &msg, &msg_len) == 0);
      CHECK(herd_json_get_int(msg, msg_len, "id", &id) == 0);
      peer_took_fd(at, id);
    } else if (herd_json_get_int(line, len, "id", &id) == 0) {
      peer_plain(id);
    }
    start += len + 1;
  }
#endif
  F.in_base += start;
  F.in_len -= start;
  memmove(F.in, F.in + start, F.in_len);
  /* An fd whose chunk is parsed and that no NODE_HANDLE took: herd sent an
   * fd without its message. */
  for (int k = 0; k < F.nrfds; k++)
    CHECK(F.rfds[k].to > F.in_base);
}

/* Reads up to `max` bytes; returns how many came. */
static size_t peer_read(size_t max) {
  union {
    char buf[CMSG_SPACE(8 * sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct msghdr msg;
  struct iovec iov;
  ssize_t n;
  if (F.peer_closed)
    return 0;
  if (max > sizeof(F.in) - F.in_len)
    max = sizeof(F.in) - F.in_len;
  CHECK(max > 0); /* herd's lines are short: the buffer never fills */
  memset(&msg, 0, sizeof(msg));
  iov.iov_base = F.in + F.in_len;
  iov.iov_len = max;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof(ctl.buf);
  n = recvmsg(F.raw, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n <= 0)
    return 0;
  CHECK(!(msg.msg_flags & MSG_CTRUNC));
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != NULL;
       cm = CMSG_NXTHDR(&msg, cm)) {
    size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t j = 0; j < k; j++) {
      CHECK(F.nrfds < 64);
      memcpy(&F.rfds[F.nrfds].fd, CMSG_DATA(cm) + j * sizeof(int), sizeof(int));
      F.rfds[F.nrfds].from = F.in_base + F.in_len;
      F.rfds[F.nrfds].to = F.in_base + F.in_len + (size_t)n;
      F.nrfds++;
    }
  }
  F.in_len += (size_t)n;
  peer_parse();
  return (size_t)n;
}

static void step(int op) {
  char buf[6000];
  int arg = next();
  int fd;
  if (arg < 0)
    arg = 0;
  switch (op % 14) {
    case 0: /* a message that makes herd send something back */
      snprintf(buf, sizeof(buf), "{\"m\":%d}\n", arg % 16);
      peer_write_str(buf);
      break;
    case 1:
      peer_write_str("{\"cmd\":\"NODE_HANDLE_ACK\"}\n");
      break;
    case 2:
      peer_write_str("{\"cmd\":\"NODE_HANDLE_NACK\"}\n");
      break;
    case 3: /* a handle, with its fd */
      fd = memfd_create("peer", MFD_CLOEXEC);
      CHECK(fd >= 0);
      snprintf(buf, sizeof(buf),
               "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{"
               "\"m\":%d}}\n",
               arg % 16);
      peer_msg(buf, fd);
      close(fd);
      break;
    case 4: /* a handle without its fd */
      peer_write_str(
          "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\","
          "\"msg\":1}\n");
      break;
    case 5: /* an fd with a plain message */
      fd = memfd_create("stray", MFD_CLOEXEC);
      CHECK(fd >= 0);
      peer_msg("[1]\n", fd);
      close(fd);
      break;
    case 6:
      peer_read((size_t)(arg + 1) * 64);
      break;
    case 7:
      uv_run(&F.loop, UV_RUN_NOWAIT);
      break;
    case 8: /* herd sends on its own, outside any callback */
      herd_send(arg % 3);
      break;
    case 9: { /* raw bytes from the input */
      size_t n = (size_t)arg % 64;
      if (n > F.size - F.pos)
        n = F.size - F.pos;
#ifdef FUZZ_ADVANCED
      /* Mostly as the payload of a frame, which keeps the stream in step;
       * now and then bare, which does not. */
      if (!(arg & 64)) {
        char head[4] = {0, 0, 0, (char)n};
        peer_write(head, 4, -1);
      }
#endif
      peer_write((const char*)F.data + F.pos, n, -1);
      F.pos += n;
      break;
    }
    case 10: /* internal questions and claims */
      switch (arg % 5) {
        case 0:
          peer_write_str(
              "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"k\"}\n");
          break;
        case 1:
          peer_write_str("{\"cmd\":\"NODE_SOCKET_COUNT\",\"key\":\"k\"}\n");
          break;
        case 2:
          snprintf(buf, sizeof(buf),
                   "{\"cmd\":\"NODE_CLUSTER\",\"m\":%d,\"seq\":1}\n", arg % 3);
          peer_write_str(buf);
          break;
        case 3:
          peer_write_str("{\"cmd\":\"NODE_SOCKET_GET_COUNT\",\"key\":7}\n");
          break;
        default:
          peer_write_str("{\"cmd\":\"NODE_\"}\n");
          break;
      }
      break;
    case 11: /* over the line limit, sometimes a NODE_HANDLE, with an fd */
#ifdef FUZZ_ADVANCED
      /* A frame that announces its 6000 bytes, which may start as an
       * envelope does. */
      memset(buf, 'a', sizeof(buf));
      buf[0] = 0;
      buf[1] = 0;
      buf[2] = (char)((sizeof(buf) - 4) >> 8);
      buf[3] = (char)(sizeof(buf) - 4);
      if (arg & 1) {
        memcpy(buf + 4,
               "\xff\x0fo\"\x03"
               "cmd\"\x0b"
               "NODE_HANDLE",
               21);
        fd = memfd_create("long", MFD_CLOEXEC);
        CHECK(fd >= 0);
        peer_write(buf, sizeof(buf), fd);
        close(fd);
      } else {
        peer_write(buf, sizeof(buf), -1);
      }
#else
      memset(buf, 'a', sizeof(buf));
      if (arg & 1) {
        memcpy(buf, "{\"cmd\":\"NODE_HANDLE\",\"msg\":\"", 28);
        fd = memfd_create("long", MFD_CLOEXEC);
        CHECK(fd >= 0);
        peer_write(buf, sizeof(buf), fd);
        close(fd);
      } else {
        peer_write(buf, sizeof(buf), -1);
      }
      peer_write_str("\"}\n");
#endif
      break;
    case 12:
      F.fail_allocs = arg % 4;
      break;
    default:
      if (arg % 32 == 0 && !F.peer_closed) {
        /* The peer goes away in the middle, after reading what is there
         * (what herd wrote before an answer it took is then read). */
        while (peer_read(1 << 16) > 0)
          ;
        close(F.raw);
        F.peer_closed = 1;
      } else {
        uv_run(&F.loop, UV_RUN_NOWAIT);
        peer_read(1 << 16);
      }
      break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int init;
  herd_ipc_callbacks_t cbs = {.message = on_message};
  int sv[2], fds_before, small = 4096, op;

  if (!init) {
    herd_replace_allocator(f_malloc, f_realloc, f_calloc, free);
    /* libuv opens a process-wide pipe with the first loop, for good. */
    CHECK(uv_loop_init(&F.loop) == 0);
    CHECK(uv_loop_close(&F.loop) == 0);
    init = 1;
  }
  memset(&F, 0, sizeof(F));
  F.data = data;
  F.size = size;
  fds_before = count_fds();
  CHECK(uv_loop_init(&F.loop) == 0);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  CHECK(herd_ipc_open_ex(&F.loop, &F.ipc, sv[0], MODE) == 0);
  /* Small buffers: herd's writes stop part way, often. */
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  F.raw = sv[1];
  herd_ipc_set_max_line(&F.ipc, 4096);
  herd__ipc_set_internal_cb(&F.ipc, on_internal);
  /* Advanced runs take half the inputs as values. */
  if (MODE == HERD_SERIALIZATION_ADVANCED && (size & 1))
    cbs.value = on_value;
  CHECK(herd_ipc_start(&F.ipc, &cbs) == 0);

  while ((op = next()) >= 0)
    step(op);
  F.fail_allocs = 0;

  /* The peer reads everything herd still has for it, then closes. */
  for (int i = 0; i < 1000 && !F.peer_closed; i++) {
    size_t got;
    uv_run(&F.loop, UV_RUN_NOWAIT);
    got = peer_read(1 << 16);
    if (got == 0 && (F.ipc.priv == NULL || herd_ipc_queued_bytes(&F.ipc) == 0))
      break;
  }
  if (!F.peer_closed) {
    close(F.raw);
    F.peer_closed = 1;
  }
  uv_run(&F.loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&F.loop) == 0);

  for (int i = 0; i < F.nsends; i++) {
    send_t* s = &F.sends[i];
    CHECK(s->calls == (s->expected ? 1 : 0));
    if (s->acked_while_open)
      CHECK(s->received);
  }
  for (int k = 0; k < F.nrfds; k++)
    close(F.rfds[k].fd);
  CHECK(count_fds() == fds_before);
  return 0;
}
