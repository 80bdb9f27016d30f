/* The sd_notify(3) client and its watchdog keep-alive. See
 * include/herd/systemd.h. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* How long one send may wait for a manager whose queue is full. */
#define SEND_TIMEOUT_MS 1000

/* Parses a decimal number without sign or spaces into *v; 0 or
 * UV_EINVAL. */
static int parse_u64(const char* s, uint64_t* v) {
  uint64_t n = 0;
  if (s == NULL || *s == '\0')
    return UV_EINVAL;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9' || n > (UINT64_MAX - 9) / 10)
      return UV_EINVAL;
    n = n * 10 + (uint64_t)(*s - '0');
  }
  *v = n;
  return 0;
}

/* NOTIFY_SOCKET's value as a unix address: "/path" or "@name". */
static int notify_address(const char* e, struct sockaddr_storage* ss,
                          socklen_t* len) {
  struct sockaddr_un* sun = (struct sockaddr_un*)ss;
  size_t n = strlen(e);
  memset(ss, 0, sizeof(*ss));
  sun->sun_family = AF_UNIX;
  if (strncmp(e, "vsock:", 6) == 0 || strncmp(e, "vsock-", 6) == 0)
    return UV_EAFNOSUPPORT;
  if (e[0] == '@') {
    if (n < 2)
      return UV_EINVAL;
    if (n - 1 > sizeof(sun->sun_path) - 1)
      return UV_ENAMETOOLONG;
    memcpy(sun->sun_path + 1, e + 1, n - 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
  }
  if (e[0] != '/')
    return UV_EINVAL;
  if (n > sizeof(sun->sun_path) - 1)
    return UV_ENAMETOOLONG;
  memcpy(sun->sun_path, e, n + 1);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 0;
}

/* WATCHDOG_USEC for this process: 0 and *usec set, 0 and *usec 0 when
 * not for us, or UV_EINVAL. */
static int watchdog_env(uint64_t* usec) {
  const char* s = getenv("WATCHDOG_USEC");
  const char* p = getenv("WATCHDOG_PID");
  uint64_t u, pid;
  *usec = 0;
  if (s == NULL)
    return 0;
  if (parse_u64(s, &u) != 0 || u == 0 || u == UINT64_MAX)
    return UV_EINVAL;
  if (p != NULL) {
    if (parse_u64(p, &pid) != 0 || pid == 0)
      return UV_EINVAL;
    if (pid != (uint64_t)getpid())
      return 0;
  }
  *usec = u;
  return 0;
}

static void unset_notify_env(void) {
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
}

static void on_watchdog(uv_timer_t* timer) {
  herd_sd_notifier_t* n =
      HERD_CONTAINER_OF(timer, herd_sd_notifier_t, watchdog);
  herd_sd_notify(n, "WATCHDOG=1");
}

int herd_sd_notifier_init(uv_loop_t* loop, herd_sd_notifier_t* n,
                          unsigned flags) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  uint64_t usec = 0;
  const char* e;
  int fd = -1, r;

  if (loop == NULL || n == NULL)
    return UV_EINVAL;
  memset(&ss, 0, sizeof(ss));
  e = getenv("NOTIFY_SOCKET");
  r = e != NULL ? notify_address(e, &ss, &len) : 0;
  if (r == 0 && !(flags & HERD_SD_NO_WATCHDOG))
    r = watchdog_env(&usec);
  if (r == 0 && e != NULL) {
    struct timeval tv = {SEND_TIMEOUT_MS / 1000,
                         (SEND_TIMEOUT_MS % 1000) * 1000};
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      r = -errno;
    else if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
      r = -errno;
  }
  if (r == 0)
    r = uv_timer_init(loop, &n->watchdog);
  if (flags & HERD_SD_UNSET_ENV)
    unset_notify_env();
  if (r != 0) {
    if (fd >= 0)
      close(fd);
    return r;
  }
  n->loop = loop;
  n->enabled = fd >= 0;
  n->watchdog_usec = n->enabled ? usec : 0;
  n->sent = 0;
  n->last_error = 0;
  n->fd = fd;
  n->addr = ss;
  n->addrlen = len;
  n->close_cb = NULL;
  uv_unref((uv_handle_t*)&n->watchdog);
  if (n->watchdog_usec > 0) {
    uint64_t ms = n->watchdog_usec / 2000;
    if (ms == 0)
      ms = 1;
    uv_timer_start(&n->watchdog, on_watchdog, ms, ms);
  }
  return 0;
}

int herd_sd_notify(herd_sd_notifier_t* n, const char* state) {
  size_t len;
  ssize_t r;
  if (n == NULL || state == NULL || state[0] == '\0')
    return UV_EINVAL;
  if (!n->enabled)
    return 0;
  len = strlen(state);
  if (len > HERD_SD_MESSAGE_MAX)
    return UV_EMSGSIZE;
  do
    r = sendto(n->fd, state, len, MSG_NOSIGNAL,
               (const struct sockaddr*)&n->addr, n->addrlen);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    /* A timed-out blocking send says EAGAIN (or EWOULDBLOCK). */
    n->last_error = errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
    return n->last_error;
  }
  n->sent++;
  return 1;
}

int herd_sd_notifyf(herd_sd_notifier_t* n, const char* format, ...) {
  char buf[HERD_SD_MESSAGE_MAX + 1];
  va_list ap;
  int len;
  if (format == NULL)
    return UV_EINVAL;
  va_start(ap, format);
  len = vsnprintf(buf, sizeof(buf), format, ap);
  va_end(ap);
  if (len < 0)
    return UV_EINVAL;
  if ((size_t)len > HERD_SD_MESSAGE_MAX)
    return UV_EMSGSIZE;
  return herd_sd_notify(n, buf);
}

int herd_sd_notify_reloading(herd_sd_notifier_t* n, const char* status) {
  struct timespec ts;
  unsigned long long usec;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  usec = (unsigned long long)ts.tv_sec * 1000000ULL +
         (unsigned long long)ts.tv_nsec / 1000ULL;
  if (status != NULL)
    return herd_sd_notifyf(n, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
                           usec, status);
  return herd_sd_notifyf(n, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

static void on_notifier_closed(uv_handle_t* handle) {
  herd_sd_notifier_t* n =
      HERD_CONTAINER_OF((uv_timer_t*)handle, herd_sd_notifier_t, watchdog);
  if (n->close_cb != NULL)
    n->close_cb(n);
}

void herd_sd_notifier_close(herd_sd_notifier_t* n,
                            herd_sd_notifier_close_cb close_cb) {
  if (n->fd >= 0) {
    close(n->fd);
    n->fd = -1;
  }
  n->enabled = 0;
  n->close_cb = close_cb;
  uv_close((uv_handle_t*)&n->watchdog, on_notifier_closed);
}
