/* The manager's side of sd_notify: a worker's NOTIFY_SOCKET, its messages
 * parsed and attributed by their kernel credentials. See
 * include/herd/systemd.h. */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* Datagrams read per wakeup, so one chatty sender cannot hold the loop. */
#define RECV_BATCH 32
/* Room for the fds a sender may attach (they are closed): the kernel's
 * SCM_MAX_FD. */
#define MAX_FDS 253

/* Valid UTF-8 (no overlongs, no surrogates, at most U+10FFFF), as systemd
 * demands of STATUS=. */
static int utf8_valid(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k;
    unsigned cp, min;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      k = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    for (size_t j = 1; j <= k; j++) {
      if (i + j >= n || (s[i + j] & 0xc0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += k + 1;
  }
  return 1;
}

static int parse_u64(const char* s, size_t n, uint64_t* v) {
  uint64_t x = 0;
  if (n == 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9' || x > (UINT64_MAX - 9) / 10)
      return -1;
    x = x * 10 + (uint64_t)(s[i] - '0');
  }
  *v = x;
  return 0;
}

/* Whether line [s, s+n) is KEY=... with this key; *value gets the rest. */
static int is_key(const char* s, size_t n, const char* key, const char** value,
                  size_t* vlen) {
  size_t k = strlen(key);
  if (n <= k || memcmp(s, key, k) != 0 || s[k] != '=')
    return 0;
  *value = s + k + 1;
  *vlen = n - k - 1;
  return 1;
}

static int is_value(const char* v, size_t n, const char* want) {
  return n == strlen(want) && memcmp(v, want, n) == 0;
}

int herd_sd_notify_parse(const char* text, size_t len,
                         herd_sd_notify_msg_t* msg) {
  const char* p = text;
  const char* end;
  if (text == NULL || msg == NULL)
    return UV_EINVAL;
  memset(msg, 0, sizeof(*msg));
  /* One trailing NUL is tolerated (some senders count it), as in systemd. */
  if (len > 0 && text[len - 1] == '\0')
    len--;
  if (len == 0 || len > HERD_SD_MESSAGE_MAX || memchr(text, '\0', len))
    return UV_EINVAL;
  msg->text = text;
  msg->len = len;
  end = text + len;
  while (p < end) {
    const char* nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl != NULL ? nl : end) - p);
    const char* v;
    size_t vn;
    uint64_t x;
    if (is_key(p, n, "READY", &v, &vn)) {
      if (is_value(v, vn, "1"))
        msg->fields |= HERD_SD_READY;
    } else if (is_key(p, n, "RELOADING", &v, &vn)) {
      if (is_value(v, vn, "1"))
        msg->fields |= HERD_SD_RELOADING;
    } else if (is_key(p, n, "STOPPING", &v, &vn)) {
      if (is_value(v, vn, "1"))
        msg->fields |= HERD_SD_STOPPING;
    } else if (is_key(p, n, "WATCHDOG", &v, &vn)) {
      if (is_value(v, vn, "1"))
        msg->fields |= HERD_SD_WATCHDOG;
      else if (is_value(v, vn, "trigger"))
        msg->fields |= HERD_SD_WATCHDOG_TRIGGER;
    } else if (is_key(p, n, "STATUS", &v, &vn)) {
      if (utf8_valid((const unsigned char*)v, vn)) {
        msg->fields |= HERD_SD_STATUS;
        msg->status = v;
        msg->status_len = vn;
      }
    } else if (is_key(p, n, "MAINPID", &v, &vn)) {
      if (parse_u64(v, vn, &x) == 0 && x > 0 && x <= INT32_MAX) {
        msg->fields |= HERD_SD_MAINPID;
        msg->main_pid = (pid_t)x;
      }
    } else if (is_key(p, n, "MONOTONIC_USEC", &v, &vn)) {
      if (parse_u64(v, vn, &x) == 0) {
        msg->fields |= HERD_SD_MONOTONIC;
        msg->monotonic_usec = x;
      }
    } else if (is_key(p, n, "EXTEND_TIMEOUT_USEC", &v, &vn)) {
      if (parse_u64(v, vn, &x) == 0) {
        msg->fields |= HERD_SD_EXTEND_TIMEOUT;
        msg->extend_timeout_usec = x;
      }
    } else if (is_key(p, n, "ERRNO", &v, &vn)) {
      if (parse_u64(v, vn, &x) == 0 && x <= INT32_MAX) {
        msg->fields |= HERD_SD_ERRNO;
        msg->errno_value = (int)x;
      }
    }
    p += n + 1;
  }
  return 0;
}

/* Reads one datagram. Returns 1 when one was handled (passed on or
 * dropped), 0 when none is waiting, or a negative error. */
static int recv_one(herd_sd_notify_socket_t* s) {
  char buf[HERD_SD_MESSAGE_MAX + 1];
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(struct ucred)) +
             CMSG_SPACE(sizeof(int) * MAX_FDS)];
  } control;
  struct iovec iov = {buf, sizeof(buf)};
  struct msghdr mh;
  struct cmsghdr* cmsg;
  const struct ucred* cred = NULL;
  herd_sd_notify_msg_t msg;
  ssize_t n;

  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.buf;
  mh.msg_controllen = sizeof(control.buf);
  do
    n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;

  for (cmsg = CMSG_FIRSTHDR(&mh); cmsg != NULL; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET)
      continue;
    if (cmsg->cmsg_type == SCM_RIGHTS) {
      size_t k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        close(fd);
      }
    } else if (cmsg->cmsg_type == SCM_CREDENTIALS &&
               cmsg->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
      cred = (const struct ucred*)CMSG_DATA(cmsg);
    }
  }
  /* MSG_TRUNC makes n the datagram's real length. */
  if ((size_t)n > HERD_SD_MESSAGE_MAX || (mh.msg_flags & MSG_CTRUNC) ||
      cred == NULL || cred->pid <= 0 ||
      herd_sd_notify_parse(buf, (size_t)n, &msg) != 0) {
    s->dropped++;
    return 1;
  }
  msg.pid = cred->pid;
  msg.uid = cred->uid;
  msg.gid = cred->gid;
  s->received++;
  s->cb(s, &msg);
  return 1;
}

static void on_readable(uv_poll_t* poll, int status, int events) {
  herd_sd_notify_socket_t* s =
      HERD_CONTAINER_OF(poll, herd_sd_notify_socket_t, poll);
  (void)events;
  if (status != 0)
    return;
  /* The callback may close the socket: stop reading then. */
  for (int i = 0; i < RECV_BATCH && !uv_is_closing((uv_handle_t*)poll); i++)
    if (recv_one(s) <= 0)
      break;
}

int herd_sd_notify_socket_init(uv_loop_t* loop, herd_sd_notify_socket_t* s,
                               const char* path, herd_sd_notify_cb cb) {
  struct sockaddr_un sun;
  socklen_t len;
  int fd, on = 1, r;

  if (loop == NULL || s == NULL || cb == NULL ||
      (path != NULL && path[0] != '/'))
    return UV_EINVAL;
  if (path != NULL && strlen(path) > sizeof(sun.sun_path) - 1)
    return UV_ENAMETOOLONG;
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0)
    goto fail_errno;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (path != NULL) {
    strcpy(sun.sun_path, path);
    len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
  } else {
    /* Autobind: the kernel picks a free abstract name. */
    len = sizeof(sa_family_t);
  }
  if (bind(fd, (struct sockaddr*)&sun, len) != 0)
    goto fail_errno;
  if (path == NULL) {
    len = sizeof(sun);
    if (getsockname(fd, (struct sockaddr*)&sun, &len) != 0)
      goto fail_errno;
    /* An abstract name: the bytes after the leading NUL. */
    snprintf(s->address, sizeof(s->address), "@%.*s",
             (int)(len - offsetof(struct sockaddr_un, sun_path) - 1),
             sun.sun_path + 1);
  } else {
    snprintf(s->address, sizeof(s->address), "%s", path);
  }
  r = uv_poll_init(loop, &s->poll, fd);
  if (r != 0) {
    if (path != NULL)
      unlink(path);
    close(fd);
    return r;
  }
  s->loop = loop;
  s->fd = fd;
  s->owned_path = path != NULL;
  s->received = 0;
  s->dropped = 0;
  s->cb = cb;
  s->close_cb = NULL;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  return 0;

fail_errno:
  r = -errno;
  close(fd);
  return r;
}

static void on_socket_closed(uv_handle_t* handle) {
  herd_sd_notify_socket_t* s =
      HERD_CONTAINER_OF((uv_poll_t*)handle, herd_sd_notify_socket_t, poll);
  close(s->fd);
  s->fd = -1;
  if (s->close_cb != NULL)
    s->close_cb(s);
}

void herd_sd_notify_socket_close(herd_sd_notify_socket_t* s,
                                 herd_sd_notify_socket_close_cb close_cb) {
  if (uv_is_closing((uv_handle_t*)&s->poll))
    return;
  if (s->owned_path)
    unlink(s->address);
  s->close_cb = close_cb;
  uv_close((uv_handle_t*)&s->poll, on_socket_closed);
}
