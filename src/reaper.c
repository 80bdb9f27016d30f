/* The process-wide reaper: children whose herd_child_t was closed before they
 * exited are handed here with their pidfd. A small thread poll()s those
 * pidfds and reaps each child when it exits, so the caller's loop can close
 * and no zombie remains. The thread starts on first use and ends, closing
 * its eventfd, when it has nothing left to watch: a process that stops
 * using herd keeps no thread and no fd. */
#include "process-int.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
  pid_t pid;
  int fd;
} reaper_entry_t;

static pthread_mutex_t reaper_mutex = PTHREAD_MUTEX_INITIALIZER;
static reaper_entry_t* reaper_entries;
static size_t reaper_count;
static size_t reaper_cap;
static int reaper_running;
static int reaper_efd = -1;

static void* reaper_main(void* arg) {
  struct pollfd* pfds = NULL;
  reaper_entry_t* seen = NULL;
  size_t cap = 0;
  int efd = *(int*)arg;
  herd__free(arg);

  for (;;) {
    size_t n;
    pthread_mutex_lock(&reaper_mutex);
    n = reaper_count;
    if (n + 1 > cap) {
      size_t ncap = (n + 1) * 2;
      struct pollfd* np = herd__realloc(pfds, ncap * sizeof(*pfds));
      reaper_entry_t* ns;
      if (np != NULL)
        pfds = np;
      ns = np ? herd__realloc(seen, ncap * sizeof(*seen)) : NULL;
      if (ns != NULL) {
        seen = ns;
        cap = ncap;
      }
    }
    if (n + 1 > cap)
      n = cap ? cap - 1 : 0; /* Out of memory: watch what fits. */
    for (size_t i = 0; i < n; i++) {
      seen[i] = reaper_entries[i];
      pfds[i].fd = seen[i].fd;
      pfds[i].events = POLLIN;
      pfds[i].revents = 0;
    }
    pthread_mutex_unlock(&reaper_mutex);
    if (cap == 0) {
      /* Not even one pollfd: wait on the eventfd alone. */
      struct pollfd one = {efd, POLLIN, 0};
      poll(&one, 1, 100);
      continue;
    }
    pfds[n].fd = efd;
    pfds[n].events = POLLIN;
    pfds[n].revents = 0;
    if (poll(pfds, n + 1, -1) <= 0)
      continue;
    if (pfds[n].revents) {
      uint64_t v;
      while (read(efd, &v, sizeof(v)) == -1 && errno == EINTR) {
      }
    }
    for (size_t i = 0; i < n; i++) {
      siginfo_t info;
      int last = 0;
      int ours;
      if (pfds[i].revents == 0)
        continue;
      /* Asked through the pidfd, which cannot name another process: if
       * someone else reaped the child already, its pid may belong to a new
       * process by now, which the wait by pid below must not take. */
      memset(&info, 0, sizeof(info));
      ours = waitid(P_PIDFD, (id_t)seen[i].fd, &info,
                    WEXITED | WNOHANG | WNOWAIT) == 0 &&
             info.si_pid != 0;
      pthread_mutex_lock(&reaper_mutex);
      for (size_t j = 0; j < reaper_count; j++) {
        if (reaper_entries[j].fd == seen[i].fd) {
          reaper_entries[j] = reaper_entries[--reaper_count];
          break;
        }
      }
      close(seen[i].fd);
      if (reaper_count == 0) {
        /* Decided under the lock, so a concurrent adopt starts a new
         * thread. Everything is released before the child is reaped:
         * whoever waits for the child sees no fd left behind. */
        last = 1;
        reaper_running = 0;
        close(reaper_efd);
        reaper_efd = -1;
        herd__free(reaper_entries);
        reaper_entries = NULL;
        reaper_cap = 0;
      }
      pthread_mutex_unlock(&reaper_mutex);
      /* The zombie keeps its pid until this wait, so the pid is still the
       * child's. */
      while (ours &&
             waitid(P_PID, (id_t)seen[i].pid, &(siginfo_t){0}, WEXITED) == -1 &&
             errno == EINTR) {
      }
      if (last) {
        herd__free(pfds);
        herd__free(seen);
        return NULL;
      }
    }
  }
}

int herd__reaper_adopt(pid_t pid, int pidfd) {
  uint64_t one = 1;
  int err = 0;

  pthread_mutex_lock(&reaper_mutex);
  if (reaper_count == reaper_cap) {
    size_t ncap = reaper_cap ? reaper_cap * 2 : 8;
    reaper_entry_t* ne = herd__realloc(reaper_entries, ncap * sizeof(*ne));
    if (ne == NULL) {
      err = UV_ENOMEM;
      goto out;
    }
    reaper_entries = ne;
    reaper_cap = ncap;
  }
  if (!reaper_running) {
    pthread_t tid;
    pthread_attr_t attr;
    sigset_t all, old;
    int* arg = herd__malloc(sizeof(*arg));
    if (arg == NULL) {
      err = UV_ENOMEM;
      goto out;
    }
    reaper_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (reaper_efd == -1) {
      err = -errno;
      herd__free(arg);
      goto out;
    }
    *arg = reaper_efd;
    /* The thread must never take the process's signals. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    err = -pthread_create(&tid, &attr, reaper_main, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
      herd__free(arg);
      close(reaper_efd);
      reaper_efd = -1;
      goto out;
    }
    reaper_running = 1;
  }
  reaper_entries[reaper_count].pid = pid;
  reaper_entries[reaper_count].fd = pidfd;
  reaper_count++;
  while (write(reaper_efd, &one, sizeof(one)) == -1 && errno == EINTR) {
  }
out:
  pthread_mutex_unlock(&reaper_mutex);
  return err;
}
