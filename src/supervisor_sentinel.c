/* The sentinel: a small process forked at herd_supervisor_start() that
 * outlives a supervisor killed by any signal, SIGKILL included, just long
 * enough to SIGKILL every worker's process group. The parent-death signal
 * takes the workers themselves; the sentinel takes what they started.
 *
 * The supervisor writes each worker's group id to a pipe when the worker
 * starts (positive) and when it ends (negative); the sentinel keeps the
 * set. When the supervisor's process dies its end of the pipe closes, the
 * sentinel reads end-of-file, kills every group it holds and exits. At a
 * clean close the set is empty and the sentinel just exits, and the
 * supervisor reaps it.
 *
 * The sentinel is fork()ed without exec: it runs only async-signal-safe
 * calls (read, kill, sigaction, dup2, close_range, _exit) and allocates
 * nothing; its table is allocated before the fork. It keeps no fd but the
 * pipe (listening sockets and herd's output included), ignores every
 * signal that can be ignored, and stays in the supervisor's process group
 * and session. */
#include "supervisor-int.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Processes a supervisor may have at once: each slot's process and a
 * successor, and as many stopping after a reload or a retirement. */
static size_t table_size(herd__sup_t* p) {
  return (size_t)p->max_workers * 4 + 16;
}

__attribute__((noreturn)) static void sentinel_main(int rfd, pid_t* table,
                                                    size_t cap) {
  struct sigaction sa;
  sigset_t all;
  size_t n = 0;
  int null_fd;

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = SIG_IGN;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &sa, NULL);
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  prctl(PR_SET_NAME, "herd-sentinel", 0, 0, 0);
  null_fd = open("/dev/null", O_RDWR);
  if (null_fd >= 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
  }
  if (rfd != 3) {
    dup2(rfd, 3);
    rfd = 3;
  }
  syscall(SYS_close_range, 4u, ~0u, 0u);
  for (;;) {
    int32_t msg[256];
    ssize_t r = read(rfd, msg, sizeof(msg));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (ssize_t i = 0; i < r / (ssize_t)sizeof(msg[0]); i++) {
      pid_t g = msg[i] > 0 ? msg[i] : -msg[i];
      size_t j = 0;
      while (j < n && table[j] != g)
        j++;
      if (msg[i] > 0 && j == n && n < cap)
        table[n++] = g;
      else if (msg[i] < 0 && j < n)
        table[j] = table[--n];
    }
  }
  for (size_t j = 0; j < n; j++)
    kill(-table[j], SIGKILL);
  _exit(0);
}

static void sentinel_reaped(herd__sup_t* p) {
  p->sentinel_pid = 0;
  if (p->sentinel_pidfd >= 0) {
    close(p->sentinel_pidfd);
    p->sentinel_pidfd = -1;
  }
}

static void poll_closed(uv_handle_t* h) {
  herd__sup_t* p = h->data;
  sentinel_reaped(p);
  herd__sup_handle_closed(p);
}

/* The sentinel ended: at close, or killed by someone. */
static void sentinel_poll_cb(uv_poll_t* h, int status, int events) {
  herd__sup_t* p = h->data;
  int64_t code;
  int sig;
  (void)status;
  (void)events;
  if (herd__watch_reap(&p->sentinel_watch, &code, &sig) == UV_EAGAIN)
    return;
  p->sentinel_polling = 0;
  if (p->sentinel_fd >= 0) {
    close(p->sentinel_fd);
    p->sentinel_fd = -1;
  }
  uv_close((uv_handle_t*)&p->sentinel_poll, poll_closed);
}

int herd__sentinel_start(herd__sup_t* p) {
  size_t cap = table_size(p);
  pid_t* table;
  int fds[2], pidfd, r;
  pid_t pid;

  table = herd__malloc(cap * sizeof(*table));
  if (table == NULL)
    return UV_ENOMEM;
  if (pipe2(fds, O_CLOEXEC) != 0) {
    r = -errno;
    herd__free(table);
    return r;
  }
  /* The gate keeps the subreaper from reaping the sentinel before it is
   * registered as a child herd watches. */
  herd__watch_gate_enter();
  pid = fork();
  if (pid == 0) {
    close(fds[1]);
    sentinel_main(fds[0], table, cap);
  }
  r = pid < 0 ? -errno : 0;
  pidfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
  if (pid > 0 && pidfd < 0) {
    /* It cannot be watched: end it now (it reads end-of-file and exits). */
    r = -errno;
    close(fds[1]);
    fds[1] = -1;
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {
    }
  }
  if (r == 0) {
    herd__watch_add(&p->sentinel_watch, pid, pidfd);
    p->sentinel_pid = pid;
    p->sentinel_pidfd = pidfd;
  }
  herd__watch_gate_leave();
  herd__free(table);
  close(fds[0]);
  if (r != 0) {
    if (fds[1] >= 0)
      close(fds[1]);
    return r;
  }
  r = uv_poll_init(p->pub->loop, &p->sentinel_poll, pidfd);
  if (r != 0) {
    /* End-of-file makes it exit at once. */
    close(fds[1]);
    herd__reap_wait(pidfd);
    herd__watch_drop(&p->sentinel_watch);
    close(pidfd);
    p->sentinel_pidfd = -1;
    p->sentinel_pid = 0;
    return r;
  }
  p->sentinel_poll.data = p;
  uv_poll_start(&p->sentinel_poll, UV_READABLE, sentinel_poll_cb);
  p->sentinel_polling = 1;
  p->handles++;
  /* Writes never block the loop: a sentinel that does not read loses
   * updates, not herd's time. */
  herd__nonblock(fds[1], 1);
  p->sentinel_fd = fds[1];
  return 0;
}

static void sentinel_write(herd__sup_t* p, int32_t v) {
  if (p->sentinel_fd < 0)
    return;
  while (write(p->sentinel_fd, &v, sizeof(v)) < 0 && errno == EINTR) {
  }
}

void herd__sentinel_add(herd__sup_t* p, pid_t pgid) {
  sentinel_write(p, (int32_t)pgid);
}

void herd__sentinel_remove(herd__sup_t* p, pid_t pgid) {
  sentinel_write(p, -(int32_t)pgid);
}

void herd__sentinel_close(herd__sup_t* p) {
  /* End-of-file: the sentinel exits, and its poll callback reaps it. */
  if (p->sentinel_fd >= 0) {
    close(p->sentinel_fd);
    p->sentinel_fd = -1;
  }
}
