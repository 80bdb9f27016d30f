/* Creating a child process: clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) and
 * herd's own code for the child, from clone() to exec.
 *
 * Why not posix_spawn() (or fork()):
 * - CLONE_PIDFD hands over the pidfd atomically with the process, so no
 *   other code of the program can reap the child (and free its pid for
 *   reuse) before herd holds it, as could happen between posix_spawn() and
 *   pidfd_open();
 * - until exec the child has no exit signal, so a child that fails to exec
 *   is seen by no other wait and sends no SIGCHLD (exec resets the exit
 *   signal to SIGCHLD; reaper.c deals with what follows);
 * - the child does exactly what herd asks: every signal at its default
 *   (glibc's posix_spawn() leaves its own two internal signals ignored),
 *   uid/gid, a process group, the parent-death signal and LISTEN_PID, which
 *   only the child can know, all without a second, fork()-based path.
 * CLONE_VM | CLONE_VFORK is what posix_spawn() does inside: the child shares
 * the parent's memory, so nothing is copied, and the parent thread sleeps
 * until the child has called exec or exited.
 *
 * Rules for the child code below, which runs on a stack borrowed from the
 * parent's frame, in the parent's memory, with the parent thread's TLS:
 * no allocation, no lock, no libc function that keeps state (so raw
 * syscall()s only: glibc's setuid() would change the ids of the parent's
 * threads, its sigaction() refuses glibc's internal signals), no write to
 * memory the parent reads except the plan's `err` and LISTEN_PID digits,
 * and no sanitizer instrumentation (it would write shadow memory for the
 * borrowed stack). Signals are blocked in the parent thread around clone(),
 * so none of the parent's handlers can run in the child before they are
 * reset. */
#include "process-int.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHILD_CODE __attribute__((no_sanitize_address, noinline))

/* The child's stack. Its deepest frame holds a PATH_MAX buffer. */
#define CHILD_STACK_SIZE (32 * 1024)

/* The kernel's struct sigaction, for rt_sigaction() without glibc. */
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/* Closes every fd from `low` up, reading /proc/self/fd: for kernels before
 * close_range() (5.9). Returns 0 or -1 with errno set. */
CHILD_CODE static int child_close_from_slow(int low) {
  char buf[1024] __attribute__((aligned(8)));
  long dfd = syscall(SYS_openat, AT_FDCWD, "/proc/self/fd",
                     O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd == -1)
    return -1;
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, buf, sizeof(buf));
    int closed = 0;
    if (n == -1) {
      syscall(SYS_close, dfd);
      return -1;
    }
    if (n == 0)
      break;
    for (long off = 0; off < n;) {
      struct linux_dirent64* d = (struct linux_dirent64*)(buf + off);
      long fd = 0;
      const char* c = d->d_name;
      off += d->d_reclen;
      if (*c < '0' || *c > '9')
        continue;
      while (*c >= '0' && *c <= '9')
        fd = fd * 10 + (*c++ - '0');
      if (fd >= low && fd != dfd) {
        syscall(SYS_close, fd);
        closed = 1;
      }
    }
    /* The listing changed under the reader: start over until a pass
     * finds nothing left to close. */
    if (closed && syscall(SYS_lseek, dfd, 0, SEEK_SET) == -1) {
      syscall(SYS_close, dfd);
      return -1;
    }
  }
  syscall(SYS_close, dfd);
  return 0;
}

/* Puts the plan's fds in place: fd i gets src[i] (dup3()), /dev/null, or
 * keeps the parent's fd i without its close-on-exec flag (src[i] == i), or
 * is closed; then every fd from nfds up is closed. Returns 0 or -1 with
 * errno set. */
CHILD_CODE static int child_fds(const herd__child_plan_t* p) {
  int* src = p->src;
  int n = p->nfds;

  /* A source inside 0..n-1 (other than the fd itself) is moved above n
   * first, so that no dup3() overwrites a source still to be used. The
   * copies are this process's own: its fd table is not the parent's. */
  for (int i = 0; i < n; i++) {
    if (src[i] >= 0 && src[i] < n && src[i] != i) {
      long d = syscall(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, n);
      if (d == -1)
        return -1;
      src[i] = (int)d;
    }
  }
  for (int i = 0; i < n; i++) {
    if (src[i] == HERD__FD_DEVNULL) {
      /* The lowest free fd: i, or one above it that is set up later. */
      long fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR);
      if (fd == -1)
        return -1;
      if (fd != i) {
        if (syscall(SYS_dup3, fd, i, 0) == -1)
          return -1;
        syscall(SYS_close, fd);
      }
    } else if (src[i] == HERD__FD_CLOSED) {
      /* Only fds from 3 on are left closed: the /dev/null opens above, for
       * fds 0-2, are all done by now, so nothing reuses this one. */
      syscall(SYS_close, i);
    } else if (src[i] == i) {
      if (syscall(SYS_fcntl, i, F_SETFD, 0) == -1)
        return -1;
    } else if (syscall(SYS_dup3, src[i], i, 0) == -1) {
      return -1;
    }
  }
  if (syscall(SYS_close_range, (unsigned)n, ~0u, 0u) == -1) {
    if (errno != ENOSYS && errno != EINVAL)
      return -1;
    if (child_close_from_slow(n) != 0)
      return -1;
  }
  return 0;
}

/* execve(), and for a file the kernel does not know how to run (no #! and
 * no ELF header) /bin/sh with it, as execvp() does. Returns errno. */
CHILD_CODE static int child_exec_one(const herd__child_plan_t* p,
                                     const char* path) {
  char* argv0;
  int err;
  syscall(SYS_execve, path, p->argv, p->envp);
  if (errno != ENOEXEC)
    return errno;
  argv0 = p->argv[0];
  p->argv[-1] = "/bin/sh";
  p->argv[0] = (char*)path;
  syscall(SYS_execve, "/bin/sh", p->argv - 1, p->envp);
  err = errno;
  p->argv[0] = argv0;
  return err;
}

/* Runs the program, looking a name without '/' up in PATH as execvp()
 * does: an empty entry is the current directory; EACCES from one entry is
 * remembered and reported if no later entry works; ENOENT, ENOTDIR and
 * the like move on; any other error ends the search. Returns errno. */
CHILD_CODE static int child_exec(const herd__child_plan_t* p) {
  char buf[PATH_MAX];
  const char* dir = p->path;
  size_t flen = 0;
  int eacces = 0, err = ENOENT;

  while (p->file[flen] != '\0')
    flen++;
  if (p->path == NULL)
    return child_exec_one(p, p->file);
  for (;;) {
    const char* end = dir;
    size_t dlen;
    while (*end != '\0' && *end != ':')
      end++;
    dlen = (size_t)(end - dir);
    if (dlen == 0) {
      buf[0] = '.';
      dlen = 1;
    } else if (dlen + flen + 2 <= sizeof(buf)) {
      for (size_t i = 0; i < dlen; i++)
        buf[i] = dir[i];
    }
    if (dlen + flen + 2 <= sizeof(buf)) {
      buf[dlen] = '/';
      for (size_t i = 0; i <= flen; i++)
        buf[dlen + 1 + i] = p->file[i];
      err = child_exec_one(p, buf);
      switch (err) {
        case EACCES:
          eacces = 1;
          break;
        case ENOENT:
        case ESTALE:
        case ENOTDIR:
        case ENODEV:
        case ETIMEDOUT:
          break;
        default:
          return err;
      }
    }
    if (*end == '\0')
      break;
    dir = end + 1;
  }
  return eacces ? EACCES : err;
}

CHILD_CODE static int child_main(void* arg) {
  herd__child_plan_t* p = arg;
  struct kernel_sigaction dfl;
  uint64_t none = 0;
  int err;

  /* Every signal to its default, glibc's internal ones included (the
   * kernel's numbering, 1 to 64). The mask stays full until the end. */
  dfl.handler = SIG_DFL;
  dfl.flags = 0;
  dfl.restorer = NULL;
  dfl.mask = 0;
  for (int sig = 1; sig <= 64; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(uint64_t));

  if (p->flags & HERD_SPAWN_DETACHED) {
    if (syscall(SYS_setsid) == -1)
      goto fail;
  } else if (p->flags & HERD_SPAWN_PROCESS_GROUP) {
    if (syscall(SYS_setpgid, 0, 0) == -1)
      goto fail;
  }
  /* cwd is entered before the ids change, as libuv does. */
  if (p->cwd != NULL && syscall(SYS_chdir, p->cwd) == -1)
    goto fail;
  if (p->flags & (HERD_SPAWN_SETUID | HERD_SPAWN_SETGID))
    syscall(SYS_setgroups, 0, NULL); /* Only permitted as root. */
  if ((p->flags & HERD_SPAWN_SETGID) && syscall(SYS_setgid, p->gid) == -1)
    goto fail;
  if ((p->flags & HERD_SPAWN_SETUID) && syscall(SYS_setuid, p->uid) == -1)
    goto fail;
  /* After the ids: changing credentials clears the parent-death signal.
   * If the parent already died, nothing will send it: the child sends it
   * to itself (delivered when the mask is emptied below), as systemd's
   * children do. */
  if (p->pdeath_signal != 0) {
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, p->pdeath_signal, 0, 0, 0) == -1)
      goto fail;
    if (syscall(SYS_getppid) != p->parent_pid)
      syscall(SYS_kill, syscall(SYS_getpid), p->pdeath_signal);
  }
  if (child_fds(p) != 0)
    goto fail;
  if (p->listen_pid != NULL) {
    char digits[24];
    long pid = syscall(SYS_getpid);
    int n = 0;
    do
      digits[n++] = (char)('0' + pid % 10);
    while ((pid /= 10) > 0);
    for (int i = 0; i < n; i++)
      p->listen_pid[i] = digits[n - 1 - i];
    p->listen_pid[n] = '\0';
  }
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
  err = child_exec(p);
  /* Blocked again so that no signal interrupts the report. */
  none = ~(uint64_t)0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
  p->err = err;
  syscall(SYS_exit, 127);
  return 127;
fail:
  p->err = errno;
  syscall(SYS_exit, 127);
  return 127;
}

int herd__spawn_process(herd__child_plan_t* plan, pid_t* pid, int* pidfd) {
  char stack[CHILD_STACK_SIZE] __attribute__((aligned(16)));
  uint64_t all = ~(uint64_t)0, old;
  int fd = -1;
  int err;
  pid_t p;

  plan->err = 0;
  if (plan->pdeath_signal != 0)
    plan->parent_pid = getpid();
  /* Every signal, glibc's internal ones included, so no handler of the
   * parent runs in the child (it shares the parent's memory). */
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof(all));
  p = clone(child_main, stack + sizeof(stack),
            CLONE_VM | CLONE_VFORK | CLONE_PIDFD, plan, &fd);
  err = errno;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, sizeof(old));
  if (p == -1)
    return -err;
  if (plan->err != 0) {
    /* The child exits (or has exited) without running the program. */
    herd__reap_wait(fd);
    close(fd);
    return -plan->err;
  }
  *pid = p;
  *pidfd = fd;
  return 0;
}
