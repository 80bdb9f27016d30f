/* Reaping: every wait for a process herd started, the registry of the
 * children herd watches, and the subreaper.
 *
 * Each child herd starts is reaped exactly once, through its pidfd, which
 * (unlike a pid) can never name another process:
 * - by the loop that watches it (herd__watch_reap(), from spawn.c's pidfd
 *   watcher, for herd_spawn(), exec, fork and the sync forms);
 * - at once, when it failed to start or cannot be watched
 *   (herd__reap_wait(), herd__reap_kill());
 * - by a process-wide thread, once its handle was closed before it exited
 *   (herd__reap_later()).
 *
 * Two things can take a child's status before herd does:
 * - SIGCHLD set to SIG_IGN, or SA_NOCLDWAIT, whether set by the program or
 *   inherited across exec, makes the kernel reap every child at exit and
 *   drop its status. herd__reap_prepare() puts the default disposition back
 *   before each spawn, as Node does in effect (libuv installs its own
 *   SIGCHLD handler when it spawns, which replaces SIG_IGN).
 * - Code of the program that waits for "any" child (waitpid(-1), or a
 *   subreaper of its own). From Linux 6.15 the kernel keeps the status for
 *   the pidfd (PIDFD_GET_INFO with PIDFD_INFO_EXIT), where herd reads it;
 *   before, that status is lost and herd reports -1.
 * A child also has no exit signal between clone() and exec (spawn_child.c),
 * so one that fails to exec is seen by no other wait and sends no SIGCHLD;
 * exec itself resets the exit signal to SIGCHLD.
 *
 * The subreaper (herd_subreaper_start()) reaps the other kind of child:
 * orphans re-parented to this process. It takes every zombie child except
 * those in the registry of watched children, which their watchers reap. */
#include "process-int.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* linux/pidfd.h of Linux 6.15, newer than the C library's headers: the
 * first version of struct pidfd_info (64 bytes) and what herd asks of it. */
struct herd__pidfd_info {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code; /* a wait status, as waitpid() gives */
};
#define HERD__PIDFD_GET_INFO  _IOWR(0xFF, 11, struct herd__pidfd_info)
#define HERD__PIDFD_INFO_EXIT (1ull << 3)

static void status_from_info(const siginfo_t* info, int64_t* status, int* sig) {
  if (status != NULL)
    *status = info->si_code == CLD_EXITED ? info->si_status : -1;
  if (sig != NULL)
    *sig = info->si_code == CLD_EXITED ? 0 : info->si_status;
}

int herd__reap(int pidfd, int64_t* status, int* sig) {
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  /* __WALL: before exec a child has no exit signal, which hides it from a
   * wait without that flag. */
  if (waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG | __WALL) == -1)
    return errno == EINTR ? UV_EAGAIN : -errno;
  if (info.si_pid == 0)
    return UV_EAGAIN;
  status_from_info(&info, status, sig);
  return 0;
}

/* The status of a child that someone else reaped, as the kernel keeps it
 * for its pidfd (Linux 6.15 and later). */
static int reap_lost(int pidfd, int64_t* status, int* sig) {
  struct herd__pidfd_info pi;
  memset(&pi, 0, sizeof(pi));
  pi.mask = HERD__PIDFD_INFO_EXIT;
  if (ioctl(pidfd, HERD__PIDFD_GET_INFO, &pi) == -1 ||
      !(pi.mask & HERD__PIDFD_INFO_EXIT))
    return -ECHILD;
  if (WIFEXITED(pi.exit_code)) {
    *status = WEXITSTATUS(pi.exit_code);
    *sig = 0;
  } else {
    *status = -1;
    *sig = WTERMSIG(pi.exit_code);
  }
  return 0;
}

void herd__reap_wait(int pidfd) {
  siginfo_t info;
  while (waitid(P_PIDFD, (id_t)pidfd, &info, WEXITED | __WALL) == -1 &&
         errno == EINTR) {
  }
}

int herd__reap_peek(int pidfd) {
  siginfo_t info;
  memset(&info, 0, sizeof(info));
  if (waitid(P_PIDFD, (id_t)pidfd, &info,
             WEXITED | WNOHANG | WNOWAIT | __WALL) == -1)
    return errno == EINTR ? UV_EAGAIN : -errno;
  return info.si_pid == 0 ? UV_EAGAIN : 0;
}

int herd__reap_kill_group(int pidfd, pid_t pgid) {
  int r = herd__reap_peek(pidfd);
  /* Only a zombie pins the id: once reaped (here or by other code), a
   * group of that id may be someone else's. */
  if (r == 0)
    kill(-pgid, SIGKILL);
  return r;
}

void herd__reap_kill(int pidfd, pid_t pgid) {
  pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
  /* Not reaped yet, so the group id is still the child's. */
  if (pgid != 0)
    kill(-pgid, SIGKILL);
  herd__reap_wait(pidfd);
  close(pidfd);
}

void herd__reap_prepare(void) {
  struct sigaction sa;
  if (sigaction(SIGCHLD, NULL, &sa) != 0)
    return;
  if (sa.sa_handler != SIG_IGN && !(sa.sa_flags & SA_NOCLDWAIT))
    return;
  if (sa.sa_handler == SIG_IGN)
    sa.sa_handler = SIG_DFL;
  sa.sa_flags &= ~SA_NOCLDWAIT;
  sigaction(SIGCHLD, &sa, NULL);
}

/* The registry of watched children, and whether the subreaper's last sweep
 * stopped at one of them (it then waits to be told that the child is gone:
 * a wait for any child cannot look past the first zombie it finds). */
static pthread_rwlock_t watch_gate = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t watch_mutex = PTHREAD_MUTEX_INITIALIZER;
static herd__watch_t* watch_head;
static int subreaper_blocked;

void herd__watch_gate_enter(void) {
  pthread_rwlock_rdlock(&watch_gate);
}

void herd__watch_gate_leave(void) {
  pthread_rwlock_unlock(&watch_gate);
}

void herd__watch_add(herd__watch_t* w, pid_t pid, int pidfd) {
  w->pid = pid;
  w->pidfd = pidfd;
  pthread_mutex_lock(&watch_mutex);
  w->prev = NULL;
  w->next = watch_head;
  if (watch_head != NULL)
    watch_head->prev = w;
  watch_head = w;
  w->linked = 1;
  pthread_mutex_unlock(&watch_mutex);
}

/* Called with watch_mutex held. */
static void watch_unlink(herd__watch_t* w) {
  if (!w->linked)
    return;
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    watch_head = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  w->linked = 0;
  if (subreaper_blocked) {
    /* The subreaper's signal watcher sweeps again. */
    subreaper_blocked = 0;
    kill(getpid(), SIGCHLD);
  }
}

int herd__watch_reap(herd__watch_t* w, int64_t* status, int* sig) {
  int r;
  /* The reap and the unregistering happen together, so the subreaper never
   * finds a zombie of herd's unregistered. */
  pthread_mutex_lock(&watch_mutex);
  r = herd__reap(w->pidfd, status, sig);
  if (r != UV_EAGAIN)
    watch_unlink(w);
  pthread_mutex_unlock(&watch_mutex);
  if (r != 0 && r != UV_EAGAIN)
    r = reap_lost(w->pidfd, status, sig);
  return r;
}

void herd__watch_drop(herd__watch_t* w) {
  pthread_mutex_lock(&watch_mutex);
  watch_unlink(w);
  pthread_mutex_unlock(&watch_mutex);
}

/* The reaper thread: an epoll set of the pidfds handed over, and how many
 * it holds. The thread starts with the first pidfd and ends, closing the
 * epoll fd, when the last child is reaped: a process that stops using herd
 * keeps no thread and no fd. New pidfds join the set while the thread
 * waits in epoll_wait(), so nothing needs to wake it. Each entry's data is
 * the pidfd and, above it, the process group to kill before the reap (0:
 * none). */
static pthread_mutex_t reaper_mutex = PTHREAD_MUTEX_INITIALIZER;
static int reaper_epfd = -1;
static size_t reaper_count;

static void* reaper_main(void* arg) {
  int epfd = (int)(intptr_t)arg;
  for (;;) {
    struct epoll_event ev[16];
    int n = epoll_wait(epfd, ev, (int)HERD_ARRAY_SIZE(ev), -1);
    for (int i = 0; i < n; i++) {
      int fd = (int)(ev[i].data.u64 & 0xffffffffu);
      pid_t pgid = (pid_t)(ev[i].data.u64 >> 32);
      int last;
      /* Looked at first, reaped last: everything else is released before
       * the child disappears, so whoever waits for it finds only the
       * pidfd still open, for the two calls that reap it and close it. */
      if ((pgid != 0 ? herd__reap_kill_group(fd, pgid) : herd__reap_peek(fd)) ==
          UV_EAGAIN)
        continue;
      epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
      /* Decided under the lock, so that an adoption from now on starts a
       * new thread. */
      pthread_mutex_lock(&reaper_mutex);
      last = --reaper_count == 0;
      if (last)
        reaper_epfd = -1;
      pthread_mutex_unlock(&reaper_mutex);
      if (last)
        close(epfd);
      herd__reap(fd, NULL, NULL);
      close(fd);
      if (last)
        return NULL;
    }
  }
}

/* Adds `pidfd` to the reaper's set, starting the thread if need be.
 * Returns 0 or a negative errno. Called with reaper_mutex held. */
static int reaper_add(int pidfd, pid_t pgid) {
  struct epoll_event ev;
  int epfd = reaper_epfd;
  int err;

  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u64 = (uint64_t)(uint32_t)pidfd | (uint64_t)(uint32_t)pgid << 32;
  if (epfd == -1) {
    pthread_t tid;
    pthread_attr_t attr;
    sigset_t all, old;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1)
      return -errno;
    /* Registered before the thread exists, so it never sees an empty set. */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, pidfd, &ev) == -1) {
      err = -errno;
      close(epfd);
      return err;
    }
    /* The thread must never take the process's signals. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    err = -pthread_create(&tid, &attr, reaper_main, (void*)(intptr_t)epfd);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
      close(epfd);
      return err;
    }
    reaper_epfd = epfd;
  } else if (epoll_ctl(epfd, EPOLL_CTL_ADD, pidfd, &ev) == -1) {
    return -errno;
  }
  reaper_count++;
  return 0;
}

void herd__reap_later(int pidfd, pid_t pgid) {
  int err;
  pthread_mutex_lock(&reaper_mutex);
  err = reaper_add(pidfd, pgid);
  pthread_mutex_unlock(&reaper_mutex);
  if (err != 0) {
    /* No thread or no epoll: end the child now rather than leave a zombie
     * nobody reaps. */
    herd__reap_kill(pidfd, pgid);
  }
}

/* The subreaper. One per process: the attribute it sets is the process's. */
static pthread_mutex_t subreaper_mutex = PTHREAD_MUTEX_INITIALIZER;
static herd_subreaper_t* subreaper_current;

static int watch_has(pid_t pid) {
  for (herd__watch_t* w = watch_head; w != NULL; w = w->next)
    if (w->pid == pid)
      return 1;
  return 0;
}

/* Reaps every orphan that has exited. The first zombie child is looked at
 * without reaping it; if herd watches it, the sweep stops there until its
 * watcher has reaped it (watch_unlink() then raises SIGCHLD again);
 * otherwise it is reaped by pid, which is safe: a zombie's pid cannot be
 * reused, and no new child of herd's can appear meanwhile (the gate). The
 * callbacks run after the locks are released, since they may spawn. */
static void subreaper_sweep(herd_subreaper_t* sr) {
  while (!sr->closing_) {
    struct {
      pid_t pid;
      int64_t status;
      int sig;
    } done[32];
    int n = 0, more = 1;
    pthread_rwlock_wrlock(&watch_gate);
    pthread_mutex_lock(&watch_mutex);
    while (n < (int)HERD_ARRAY_SIZE(done)) {
      siginfo_t info;
      memset(&info, 0, sizeof(info));
      if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1) {
        if (errno == EINTR)
          continue;
        more = 0; /* ECHILD: no child at all. */
        break;
      }
      if (info.si_pid == 0) {
        more = 0;
        break;
      }
      if (watch_has(info.si_pid)) {
        subreaper_blocked = 1;
        more = 0;
        break;
      }
      {
        pid_t pid = info.si_pid;
        memset(&info, 0, sizeof(info));
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG) == -1 ||
            info.si_pid == 0)
          continue;
      }
      done[n].pid = info.si_pid;
      status_from_info(&info, &done[n].status, &done[n].sig);
      n++;
    }
    pthread_mutex_unlock(&watch_mutex);
    pthread_rwlock_unlock(&watch_gate);
    for (int i = 0; i < n && !sr->closing_; i++) {
      sr->reaped++;
      if (sr->orphan_cb_ != NULL)
        sr->orphan_cb_(sr, done[i].pid, done[i].status, done[i].sig);
    }
    if (!more)
      return;
  }
}

static void subreaper_signal_cb(uv_signal_t* h, int signum) {
  (void)signum;
  subreaper_sweep(HERD_CONTAINER_OF(h, herd_subreaper_t, signal_));
}

int herd_subreaper_start(uv_loop_t* loop, herd_subreaper_t* sr,
                         herd_orphan_cb orphan_cb) {
  int err = 0;
  if (loop == NULL || sr == NULL)
    return UV_EINVAL;
  pthread_mutex_lock(&subreaper_mutex);
  if (subreaper_current != NULL) {
    err = UV_EBUSY;
    goto out;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == -1) {
    err = -errno;
    goto out;
  }
  /* uv_signal_init() is the only step that can fail (it may create libuv's
   * signal pipe), and it leaves no handle when it does. */
  err = uv_signal_init(loop, &sr->signal_);
  if (err != 0) {
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
    goto out;
  }
  sr->loop = loop;
  sr->reaped = 0;
  sr->orphan_cb_ = orphan_cb;
  sr->close_cb_ = NULL;
  sr->closing_ = 0;
  uv_signal_start(&sr->signal_, subreaper_signal_cb, SIGCHLD);
  subreaper_current = sr;
  /* The first sweep, from the loop, for orphans already gone. */
  kill(getpid(), SIGCHLD);
out:
  pthread_mutex_unlock(&subreaper_mutex);
  return err;
}

static void subreaper_closed_cb(uv_handle_t* h) {
  herd_subreaper_t* sr = HERD_CONTAINER_OF(h, herd_subreaper_t, signal_);
  if (sr->close_cb_ != NULL)
    sr->close_cb_(sr);
}

void herd_subreaper_close(herd_subreaper_t* sr,
                          herd_subreaper_close_cb close_cb) {
  if (sr->closing_)
    return;
  sr->closing_ = 1;
  sr->close_cb_ = close_cb;
  pthread_mutex_lock(&subreaper_mutex);
  if (subreaper_current == sr) {
    subreaper_current = NULL;
    prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  }
  pthread_mutex_unlock(&subreaper_mutex);
  uv_close((uv_handle_t*)&sr->signal_, subreaper_closed_cb);
}
