/* The tests' HTTP load client (see load.h). Blocking sockets with
 * timeouts, one thread per connection. */
#include "load.h"

#include "task.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TL_MAX_THREADS 64
#define TL_TIMEOUT_MS  10000

typedef struct {
  struct tl_load_s* l;
  int keepalive;
} tl_thread_t;

struct tl_load_s {
  tl_options_t o;
  tl_thread_t args[TL_MAX_THREADS];
  pthread_t threads[TL_MAX_THREADS];
  int nthreads;
  atomic_int stop;
  atomic_ullong ok;
  atomic_ullong failed;
  atomic_ullong reopened;
  atomic_ullong issued;
  pthread_mutex_t mutex;
  tl_stats_t stats; /* pids, first_error: under mutex */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void fail(tl_load_t* l, const char* what, int err) {
  atomic_fetch_add(&l->failed, 1);
  pthread_mutex_lock(&l->mutex);
  if (l->stats.first_error[0] == '\0')
    snprintf(l->stats.first_error, sizeof(l->stats.first_error), "%s: %s", what,
             err ? strerror(err) : "-");
  pthread_mutex_unlock(&l->mutex);
}

static void count_pid(tl_load_t* l, int pid) {
  pthread_mutex_lock(&l->mutex);
  for (int i = 0; i < l->stats.npids; i++) {
    if (l->stats.pids[i] == pid) {
      l->stats.per_pid[i]++;
      pthread_mutex_unlock(&l->mutex);
      return;
    }
  }
  if (l->stats.npids < TL_MAX_PIDS) {
    l->stats.pids[l->stats.npids] = pid;
    l->stats.per_pid[l->stats.npids++] = 1;
  }
  pthread_mutex_unlock(&l->mutex);
}

static int tl_connect(tl_load_t* l) {
  struct sockaddr_in sin;
  struct timeval tv = {TL_TIMEOUT_MS / 1000, 0};
  int one = 1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)l->o.port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr*)&sin, sizeof(sin)) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* Reads one response. Returns 1 for a whole answer (status in *status,
 * *closing when it says Connection: close), 0 for a clean end of stream
 * before any byte, or a negative errno. */
static int read_response(int fd, int* status, int* closing, int* pid) {
  char buf[8192];
  size_t n = 0;
  char* end = NULL;
  size_t need = 0;
  for (;;) {
    ssize_t r;
    if (end != NULL && n >= need)
      break;
    if (n == sizeof(buf) - 1)
      return -EMSGSIZE;
    r = read(fd, buf + n, sizeof(buf) - 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return n == 0 ? 0 : -EPIPE;
    n += (size_t)r;
    buf[n] = '\0';
    if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
      const char* cl = strcasestr(buf, "\r\nContent-Length:");
      size_t len = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
      need = (size_t)(end - buf) + 4 + len;
      *closing = strcasestr(buf, "\r\nConnection: close") != NULL &&
                 strcasestr(buf, "\r\nConnection: close") < end;
      if (sscanf(buf, "HTTP/1.%*d %d", status) != 1)
        return -EPROTO;
    }
  }
  *pid = atoi(end + 4);
  return 1;
}

static void* tl_thread(void* arg) {
  tl_thread_t* ta = arg;
  tl_load_t* l = ta->l;
  char req[256];
  int reqlen, fd = -1;

  reqlen =
      snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n",
               l->o.path ? l->o.path : "/",
               ta->keepalive ? "" : "Connection: close\r\n");
  while (!atomic_load(&l->stop)) {
    int status = 0, closing = 0, pid = 0, r, fresh = 0;
    if (l->o.max_reqs > 0 && atomic_fetch_add(&l->issued, 1) >= l->o.max_reqs)
      break;
    if (fd < 0) {
      fd = tl_connect(l);
      if (fd < 0) {
        fail(l, "connect", -fd);
        fd = -1;
        continue;
      }
      fresh = 1;
    }
    if (write(fd, req, (size_t)reqlen) != reqlen) {
      fail(l, "write", errno);
      close(fd);
      fd = -1;
      continue;
    }
    r = read_response(fd, &status, &closing, &pid);
    if (r == 1 && status == 200) {
      atomic_fetch_add(&l->ok, 1);
      if (pid > 0)
        count_pid(l, pid);
    } else if (r == 1) {
      fail(l, "status", 0);
    } else {
      fail(l, fresh ? "read (new connection)" : "read (kept-alive connection)",
           r == 0 ? EPIPE : -r);
      closing = 1;
    }
    if (closing || !ta->keepalive) {
      if (r == 1 && ta->keepalive)
        atomic_fetch_add(&l->reopened, 1);
      close(fd);
      fd = -1;
    }
  }
  if (fd >= 0)
    close(fd);
  return NULL;
}

tl_load_t* tl_start(const tl_options_t* o) {
  tl_load_t* l = calloc(1, sizeof(*l));
  ASSERT(l != NULL);
  l->o = *o;
  l->nthreads = o->threads > 0 ? o->threads : 4;
  ASSERT(l->nthreads <= TL_MAX_THREADS);
  pthread_mutex_init(&l->mutex, NULL);
  for (int i = 0; i < l->nthreads; i++) {
    l->args[i].l = l;
    l->args[i].keepalive = o->keepalive == 2 ? (i & 1) : o->keepalive;
    ASSERT_EQ(pthread_create(&l->threads[i], NULL, tl_thread, &l->args[i]), 0);
  }
  return l;
}

uint64_t tl_done(tl_load_t* l) {
  return atomic_load(&l->ok) + atomic_load(&l->failed);
}

uint64_t tl_failed(tl_load_t* l) {
  return atomic_load(&l->failed);
}

int tl_wait_more(tl_load_t* l, uint64_t n, int ms) {
  uint64_t want = tl_done(l) + n, deadline = now_ms() + (uint64_t)ms;
  while (tl_done(l) < want) {
    if (now_ms() >= deadline)
      return 0;
    poll(NULL, 0, 2);
  }
  return 1;
}

void tl_stop(tl_load_t* l, tl_stats_t* stats) {
  atomic_store(&l->stop, 1);
  for (int i = 0; i < l->nthreads; i++)
    pthread_join(l->threads[i], NULL);
  if (stats != NULL) {
    *stats = l->stats;
    stats->ok = atomic_load(&l->ok);
    stats->failed = atomic_load(&l->failed);
    stats->reopened = atomic_load(&l->reopened);
  }
  pthread_mutex_destroy(&l->mutex);
  free(l);
}
