/* herd_spawn(): starting a child, watching it exit through a pidfd, its stdio
 * pipes, kill(), timeouts and abort. */
#include "process-int.h"

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

/* What the child gets at fd i: src[i] is dup2()ed onto i, or /dev/null is
 * opened there when src[i] is -1. Every src[i] is either i itself or >= n,
 * so applying the actions in order never clobbers a later source. */
typedef struct {
  int n;
  int src[HERD_STDIO_MAX];
} stdio_plan_t;

/* Everything one spawn needs, built in the parent before the child exists
 * because the child of a vfork-style spawn may not allocate. */
typedef struct {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;
  unsigned flags;
  uid_t uid;
  gid_t gid;
  stdio_plan_t plan;
} spawn_plan_t;

static void child_maybe_finish(herd_child_private_t* priv);
static void pipe_close(herd__pipe_t* p);
static void timer_cb(uv_timer_t* t);

static int env_key_len(const char* kv) {
  const char* eq = strchr(kv, '=');
  return eq ? (int)(eq - kv) : (int)strlen(kv);
}

/* Puts `kv` into `env` (count *n), replacing an entry with the same key. */
static void env_set(char** env, size_t* n, char* kv) {
  int klen = env_key_len(kv);
  for (size_t i = 0; i < *n; i++) {
    if (env_key_len(env[i]) == klen && memcmp(env[i], kv, (size_t)klen) == 0) {
      env[i] = kv;
      return;
    }
  }
  env[(*n)++] = kv;
}

/* Builds the child's environment, or returns environ itself when nothing
 * changes (the common case costs no allocation). */
static int build_env(const herd_spawn_options_t* o, char** ipc_vars,
                     char*** out) {
  size_t nparent = 0, nuser = 0, n = 0;
  char** env;

  if (o->env == NULL && ipc_vars == NULL) {
    *out = environ;
    return 0;
  }
  if (o->env == NULL || (o->flags & HERD_SPAWN_ENV_EXTEND))
    while (environ[nparent] != NULL)
      nparent++;
  if (o->env != NULL)
    while (o->env[nuser] != NULL)
      nuser++;
  env = herd__malloc((nparent + nuser + 3) * sizeof(*env));
  if (env == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < nparent; i++)
    env[n++] = environ[i];
  for (size_t i = 0; i < nuser; i++)
    env_set(env, &n, (char*)o->env[i]);
  for (int i = 0; ipc_vars != NULL && i < 2; i++)
    env_set(env, &n, ipc_vars[i]);
  env[n] = NULL;
  *out = env;
  return 0;
}

static const char* env_get(char* const* envp, const char* key) {
  size_t klen = strlen(key);
  for (; *envp != NULL; envp++)
    if (strncmp(*envp, key, klen) == 0 && (*envp)[klen] == '=')
      return *envp + klen + 1;
  return NULL;
}

/* Finds `file` in PATH the way execvp() does: an entry that exists but is not
 * an executable file makes the result EACCES unless a later entry works. */
static int find_in_path(const char* file, char* const* envp, char* out,
                        size_t cap) {
  const char* path = env_get(envp, "PATH");
  const char* p;
  size_t flen = strlen(file);
  int err = UV_ENOENT;

  if (path == NULL)
    path = getenv("PATH");
  if (path == NULL)
    path = "/bin:/usr/bin";
  for (p = path;; p++) {
    const char* end = strchr(p, ':');
    size_t dlen = end ? (size_t)(end - p) : strlen(p);
    struct stat st;
    if (dlen == 0) {
      out[0] = '.';
      dlen = 1;
    } else if (dlen + flen + 2 <= cap) {
      memcpy(out, p, dlen);
    }
    if (dlen + flen + 2 <= cap) {
      out[dlen] = '/';
      memcpy(out + dlen + 1, file, flen + 1);
      if (stat(out, &st) == 0) {
        if (S_ISREG(st.st_mode) && access(out, X_OK) == 0)
          return 0;
        err = UV_EACCES;
      } else if (errno == EACCES) {
        err = UV_EACCES;
      }
    }
    if (end == NULL)
      break;
    p = end;
  }
  return err;
}

/* The child side of the fork() path, used when posix_spawn() cannot do the
 * job (uid/gid). Only async-signal-safe calls from here on; every signal is
 * blocked until the handlers are back to their defaults. */
static void fork_child(const spawn_plan_t* sp, int errfd) {
  int err;
  if ((sp->flags & HERD_SPAWN_DETACHED) && setsid() == -1)
    goto fail;
  /* cwd is entered before the ids change, as libuv does. */
  if (sp->cwd != NULL && chdir(sp->cwd) == -1)
    goto fail;
  if (sp->flags & (HERD_SPAWN_SETUID | HERD_SPAWN_SETGID))
    setgroups(0, NULL); /* Only permitted as root; harmless otherwise. */
  if ((sp->flags & HERD_SPAWN_SETGID) && setgid(sp->gid) == -1)
    goto fail;
  if ((sp->flags & HERD_SPAWN_SETUID) && setuid(sp->uid) == -1)
    goto fail;
  for (int i = 0; i < sp->plan.n; i++) {
    int src = sp->plan.src[i];
    if (src == -1) {
      int fd = open("/dev/null", O_RDWR);
      if (fd == -1)
        goto fail;
      if (fd != i) {
        if (dup2(fd, i) == -1)
          goto fail;
        close(fd);
      }
    } else if (src == i) {
      if (herd__cloexec(i, 0) != 0) /* fcntl() only: signal-safe */
        goto fail;
    } else if (dup2(src, i) == -1) {
      goto fail;
    }
  }
  /* Everything above the child's stdio closes at exec, including errfd,
   * whose closing tells the parent that exec succeeded. */
  syscall(SYS_close_range, (unsigned)sp->plan.n, ~0u, 4u /* CLOEXEC */);
  {
    struct sigaction sa;
    sigset_t none;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
      if (sig != SIGKILL && sig != SIGSTOP)
        sigaction(sig, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
  }
  execve(sp->path, sp->argv, sp->envp);
fail:
  err = errno;
  while (write(errfd, &err, sizeof(err)) == -1 && errno == EINTR) {
  }
  _exit(127);
}

static int spawn_fork(const spawn_plan_t* sp, pid_t* pid) {
  sigset_t all, old;
  int fds[2];
  int err = 0;
  ssize_t r;
  pid_t p;

  if (pipe2(fds, O_CLOEXEC) == -1)
    return -errno;
  if (fds[1] < sp->plan.n) {
    /* close_range() in the child must not take the error pipe early. */
    int high = fcntl(fds[1], F_DUPFD_CLOEXEC, sp->plan.n);
    if (high == -1) {
      err = -errno;
      close(fds[0]);
      close(fds[1]);
      return err;
    }
    close(fds[1]);
    fds[1] = high;
  }
  /* The parent's signal handlers must not run in the child before it
   * resets them: they may take locks or touch state the fork copied. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  p = fork();
  if (p == 0)
    fork_child(sp, fds[1]);
  if (p == -1)
    err = -errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (p == -1) {
    close(fds[0]);
    close(fds[1]);
    return err;
  }
  close(fds[1]);
  do
    r = read(fds[0], &err, sizeof(err));
  while (r == -1 && errno == EINTR);
  close(fds[0]);
  if (r == sizeof(err)) {
    /* exec failed: the child exits at once; reap it here. */
    while (waitpid(p, NULL, 0) == -1 && errno == EINTR) {
    }
    return -err;
  }
  *pid = p;
  return 0;
}

static int spawn_posix(const spawn_plan_t* sp, pid_t* pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t all, none;
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  int r;

  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  r = 0;
  if (sp->cwd != NULL)
    r = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
  for (int i = 0; r == 0 && i < sp->plan.n; i++) {
    if (sp->plan.src[i] == -1)
      r = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
    else
      r = posix_spawn_file_actions_adddup2(&fa, sp->plan.src[i], i);
  }
  if (r == 0)
    r = posix_spawn_file_actions_addclosefrom_np(&fa, sp->plan.n);
  if (r != 0)
    goto out;
  if (sp->flags & HERD_SPAWN_DETACHED)
    flags |= POSIX_SPAWN_SETSID;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, flags);
  r = posix_spawn(pid, sp->path, &fa, &attr, sp->argv, sp->envp);
out:
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return -r;
}

/* Starts the child described by `sp`. Returns its pid and a pidfd. */
static int spawn_plan_run(const spawn_plan_t* sp, pid_t* pid, int* pidfd) {
  int r;
  if (sp->flags & (HERD_SPAWN_SETUID | HERD_SPAWN_SETGID))
    r = spawn_fork(sp, pid);
  else
    r = spawn_posix(sp, pid);
  if (r != 0)
    return r;
  *pidfd = pidfd_open(*pid, 0);
  if (*pidfd == -1) {
    /* Without a pidfd the child cannot be watched: end it now rather than
     * leave a process nobody reaps. */
    r = -errno;
    kill(*pid, SIGKILL);
    while (waitpid(*pid, NULL, 0) == -1 && errno == EINTR) {
    }
    return r;
  }
  return 0;
}

/* Moves each source fd that lies inside the child's stdio range (and is not
 * the fd itself) above it, so the dup2() sequence cannot overwrite it. The
 * copies are recorded in tmp[] for closing after the spawn. */
static int plan_fix_overlaps(stdio_plan_t* plan, int* tmp) {
  for (int i = 0; i < plan->n; i++) {
    int s = plan->src[i];
    tmp[i] = -1;
    if (s >= 0 && s < plan->n && s != i) {
      tmp[i] = fcntl(s, F_DUPFD_CLOEXEC, plan->n);
      if (tmp[i] == -1)
        return -errno;
      plan->src[i] = tmp[i];
    }
  }
  return 0;
}

static void child_deliver_error(herd_child_private_t* priv, int err) {
  if (priv->error_cb != NULL)
    priv->error_cb(priv->child, err);
}

/* The timer is the child's last handle: close_cb runs from its close
 * callback, so it always comes from the loop, whatever triggered the end. */
static void timer_final_cb(uv_handle_t* h) {
  herd_child_private_t* priv =
      HERD_CONTAINER_OF(h, herd_child_private_t, timer);
  herd_child_t* child = priv->child;
  herd_child_close_cb cb = priv->close_cb;
  child->priv = NULL;
  herd__free(priv->buf);
  herd__free(priv);
  if (cb != NULL)
    cb(child);
}

static void poll_close_cb(uv_handle_t* h) {
  herd_child_private_t* priv = HERD_CONTAINER_OF(h, herd_child_private_t, poll);
  priv->handles--;
  child_maybe_finish(priv);
}

static void abort_unlink(herd_child_private_t* priv) {
  herd_abort_t* ab = priv->abort;
  if (ab == NULL)
    return;
  if (priv->abort_prev != NULL)
    priv->abort_prev->abort_next = priv->abort_next;
  else
    ab->head = priv->abort_next;
  if (priv->abort_next != NULL)
    priv->abort_next->abort_prev = priv->abort_prev;
  priv->abort = NULL;
  priv->abort_next = priv->abort_prev = NULL;
}

static int child_signal(herd_child_private_t* priv, int sig) {
  if (pidfd_send_signal(priv->pidfd, sig, NULL, 0) == -1)
    return -errno;
  return 0;
}

/* Sends kill_signal and arms the timer to follow with SIGKILL. */
static void child_kill_escalate(herd_child_private_t* priv) {
  if (!(priv->flags & HERD__CHILD_RUNNING))
    return;
  if (child_signal(priv, priv->kill_signal) == 0)
    priv->child->killed = 1;
  if (priv->kill_signal != SIGKILL) {
    priv->flags |= HERD__CHILD_ESCALATING;
    uv_timer_start(&priv->timer, timer_cb, priv->kill_grace, 0);
  }
}

static void timer_cb(uv_timer_t* t) {
  herd_child_private_t* priv =
      HERD_CONTAINER_OF(t, herd_child_private_t, timer);
  if (priv->flags & HERD__CHILD_ERROR_PENDING) {
    priv->flags &= ~HERD__CHILD_ERROR_PENDING;
    child_deliver_error(priv, priv->spawn_error);
    child_maybe_finish(priv);
    return;
  }
  if (!(priv->flags & HERD__CHILD_RUNNING))
    return;
  if (priv->flags & HERD__CHILD_ESCALATING) {
    child_signal(priv, SIGKILL);
    return;
  }
  priv->flags |= HERD__CHILD_TIMED_OUT;
  child_kill_escalate(priv);
}

static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  herd__pipe_t* p = HERD_CONTAINER_OF(h, herd__pipe_t, handle);
  herd_child_private_t* priv = p->child->priv;
  (void)suggested;
  if (priv->buf == NULL)
    priv->buf = herd__malloc(HERD__READ_BUF_SIZE);
  buf->base = priv->buf;
  buf->len = priv->buf ? HERD__READ_BUF_SIZE : 0;
}

static void read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  herd__pipe_t* p = HERD_CONTAINER_OF(s, herd__pipe_t, handle);
  herd_child_t* child = p->child;
  herd_child_read_cb cb = p->discard ? NULL : child->priv->read_cb;
  if (nread == 0)
    return;
  if (nread > 0) {
    if (cb != NULL)
      cb(child, p->fd, buf->base, nread);
    return;
  }
  p->reading = 0;
  pipe_close(p);
  if (cb != NULL)
    cb(child, p->fd, NULL, nread);
}

static void pipe_close_cb(uv_handle_t* h) {
  herd__pipe_t* p = HERD_CONTAINER_OF(h, herd__pipe_t, handle);
  herd_child_private_t* priv = p->child->priv;
  p->open = 0;
  priv->handles--;
  child_maybe_finish(priv);
}

static void pipe_close(herd__pipe_t* p) {
  if (!p->open || uv_is_closing((uv_handle_t*)&p->handle))
    return;
  p->closing = 1;
  p->reading = 0;
  uv_close((uv_handle_t*)&p->handle, pipe_close_cb);
}

/* Reads and throws away what a pipe nobody reads still holds, so that the
 * child's close does not wait forever for it. */
static void pipe_discard(herd__pipe_t* p) {
  if (!p->open || p->closing || p->reading || p->user ||
      uv_is_active((uv_handle_t*)&p->handle))
    return;
  p->reading = 1;
  p->discard = 1;
  if (uv_read_start((uv_stream_t*)&p->handle, alloc_cb, read_cb) != 0)
    pipe_close(p);
}

static void child_on_exit(herd_child_private_t* priv, int64_t status, int sig) {
  herd_child_t* child = priv->child;

  priv->flags &= ~(HERD__CHILD_RUNNING | HERD__CHILD_ESCALATING);
  priv->flags |= HERD__CHILD_DONE;
  uv_close((uv_handle_t*)&priv->poll, poll_close_cb);
  close(priv->pidfd);
  priv->pidfd = -1;
  uv_timer_stop(&priv->timer);
  abort_unlink(priv);
  child->exited = 1;
  child->exit_status = status;
  child->term_signal = sig;
  /* Held so that callbacks closing the child cannot finish it under us. */
  priv->handles++;
  if (priv->flags & HERD__CHILD_ABORTED)
    child_deliver_error(priv, UV_ECANCELED);
  if (priv->exit_cb != NULL && !(priv->flags & HERD__CHILD_CLOSED))
    priv->exit_cb(child, status, sig);
  /* Node destroys the child's stdin at exit and drains the other pipes
   * nobody listens to. */
  for (int i = 0; i < priv->npipes; i++) {
    if (i == 0)
      pipe_close(&priv->pipes[i]);
    else
      pipe_discard(&priv->pipes[i]);
  }
  priv->handles--;
  /* poll's close is still pending, so finishing happens from its cb. */
}

static void poll_cb(uv_poll_t* h, int status, int events) {
  herd_child_private_t* priv = HERD_CONTAINER_OF(h, herd_child_private_t, poll);
  siginfo_t info;
  (void)status;
  (void)events;
  memset(&info, 0, sizeof(info));
  if (waitid(P_PIDFD, (id_t)priv->pidfd, &info, WEXITED | WNOHANG) == -1) {
    if (errno == EINTR || errno == EAGAIN)
      return;
    /* Someone else reaped it (ECHILD): it is gone, status unknown. */
    child_on_exit(priv, -1, 0);
    return;
  }
  if (info.si_pid == 0)
    return;
  if (info.si_code == CLD_EXITED)
    child_on_exit(priv, info.si_status, 0);
  else
    child_on_exit(priv, -1, info.si_status);
}

static void child_maybe_finish(herd_child_private_t* priv) {
  if (!(priv->flags & HERD__CHILD_DONE) || priv->handles > 0 ||
      (priv->flags & (HERD__CHILD_CHANNEL | HERD__CHILD_ERROR_PENDING)) ||
      uv_is_closing((uv_handle_t*)&priv->timer))
    return;
  uv_close((uv_handle_t*)&priv->timer, timer_final_cb);
}

void herd__child_channel_closed(herd_child_t* child) {
  herd_child_private_t* priv = child->priv;
  child->channel = NULL;
  if (priv == NULL)
    return;
  priv->flags &= ~HERD__CHILD_CHANNEL;
  child_maybe_finish(priv);
}

int herd__child_timed_out(const herd_child_t* child) {
  return child->priv != NULL && (child->priv->flags & HERD__CHILD_TIMED_OUT);
}

void herd__child_terminate(herd_child_t* child) {
  if (child->priv != NULL)
    child_kill_escalate(child->priv);
}

/* Fills in the spawn failure; error_cb and close_cb follow from the loop. */
static void child_fail(herd_child_private_t* priv, int err) {
  priv->spawn_error = err;
  priv->flags |= HERD__CHILD_DONE | HERD__CHILD_ERROR_PENDING;
  uv_timer_start(&priv->timer, timer_cb, 0, 0);
}

char* herd__join_command(const char* file, const char* const* args) {
  size_t len = strlen(file) + 1;
  char* cmd;
  char* p;
  for (int i = 0; args != NULL && args[i] != NULL; i++)
    len += strlen(args[i]) + 1;
  cmd = herd__malloc(len);
  if (cmd == NULL)
    return NULL;
  p = cmd;
  p += strlen(strcpy(p, file));
  for (int i = 0; args != NULL && args[i] != NULL; i++) {
    *p++ = ' ';
    p += strlen(strcpy(p, args[i]));
  }
  return cmd;
}

int herd_spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
               const char* const* args, const herd_spawn_options_t* options) {
  static const herd_spawn_options_t defaults;
  static const herd_stdio_t three_pipes[3];
  const herd_spawn_options_t* o = options ? options : &defaults;
  const herd_stdio_t* stdio = o->stdio;
  int n = o->stdio_count;
  herd_child_private_t* priv;
  spawn_plan_t sp;
  int parent_end[HERD_STDIO_MAX];
  int child_end[HERD_STDIO_MAX];
  int tmp[HERD_STDIO_MAX];
  int ipc_index = -1;
  char ipc_fd_var[32];
  char* ipc_vars[2];
  char pathbuf[4096];
  char** argv = NULL;
  char** envp = NULL;
  char* cmd = NULL;
  const char* exe;
  size_t nargs = 0;
  int async_error = 1;
  int err;

  if (loop == NULL || child == NULL || file == NULL || n < 0 ||
      n > HERD_STDIO_MAX || (n > 0 && stdio == NULL))
    return UV_EINVAL;
  if (n == 0) {
    stdio = three_pipes;
    n = 3;
  }
  for (int i = 0; i < n; i++) {
    if (stdio[i].kind == HERD_STDIO_IPC) {
      if (ipc_index != -1)
        return UV_EINVAL;
      ipc_index = i;
    } else if (stdio[i].kind == HERD_STDIO_FD && stdio[i].fd < 0) {
      return UV_EINVAL;
    } else if (stdio[i].kind > HERD_STDIO_IPC) {
      return UV_EINVAL;
    }
  }

  priv = herd__malloc(sizeof(*priv) + (size_t)n * sizeof(herd__pipe_t));
  if (priv == NULL)
    return UV_ENOMEM;
  memset(priv, 0, sizeof(*priv) + (size_t)n * sizeof(herd__pipe_t));
  {
    void* data = child->data;
    memset(child, 0, sizeof(*child));
    child->data = data;
  }
  child->loop = loop;
  child->priv = priv;
  priv->child = child;
  priv->exit_cb = o->exit_cb;
  priv->error_cb = o->error_cb;
  priv->close_cb = o->close_cb;
  priv->pidfd = -1;
  priv->npipes = n;
  priv->timeout = o->timeout;
  priv->kill_signal = o->kill_signal ? o->kill_signal : SIGTERM;
  priv->kill_grace = o->kill_grace ? o->kill_grace : HERD__KILL_GRACE_DEFAULT;
  for (int i = 0; i < n; i++) {
    priv->pipes[i].child = child;
    priv->pipes[i].fd = i;
    parent_end[i] = child_end[i] = tmp[i] = -1;
  }
  uv_timer_init(loop, &priv->timer);

  if (o->abort != NULL && o->abort->aborted) {
    child_fail(priv, UV_ECANCELED);
    return 0;
  }

  /* argv: argv0 (or the program), then the arguments; with a shell, Node's
   * `<shell> -c "<file> <args joined by spaces>"`. */
  if (o->flags & HERD_SPAWN_SHELL) {
    cmd = herd__join_command(file, args);
    if (cmd == NULL) {
      err = UV_ENOMEM;
      goto fail_nomem;
    }
    file = o->shell ? o->shell : "/bin/sh";
    argv = herd__malloc(4 * sizeof(*argv));
    if (argv == NULL) {
      err = UV_ENOMEM;
      goto fail_nomem;
    }
    argv[0] = (char*)(o->argv0 ? o->argv0 : file);
    argv[1] = "-c";
    argv[2] = cmd;
    argv[3] = NULL;
  } else {
    while (args != NULL && args[nargs] != NULL)
      nargs++;
    argv = herd__malloc((nargs + 2) * sizeof(*argv));
    if (argv == NULL) {
      err = UV_ENOMEM;
      goto fail_nomem;
    }
    argv[0] = (char*)(o->argv0 ? o->argv0 : file);
    for (size_t i = 0; i < nargs; i++)
      argv[i + 1] = (char*)args[i];
    argv[nargs + 1] = NULL;
  }

  memset(&sp, 0, sizeof(sp));
  sp.plan.n = n;
  for (int i = 0; i < n; i++) {
    switch (stdio[i].kind) {
      case HERD_STDIO_PIPE:
      case HERD_STDIO_IPC: {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
          err = -errno;
          goto fail;
        }
        parent_end[i] = sv[0];
        child_end[i] = sv[1];
        sp.plan.src[i] = sv[1];
        break;
      }
      case HERD_STDIO_IGNORE:
        sp.plan.src[i] = -1;
        break;
      case HERD_STDIO_INHERIT:
        sp.plan.src[i] = i;
        break;
      case HERD_STDIO_FD:
        sp.plan.src[i] = stdio[i].fd;
        break;
    }
  }
  err = plan_fix_overlaps(&sp.plan, tmp);
  if (err != 0)
    goto fail;

  if (ipc_index != -1) {
    snprintf(ipc_fd_var, sizeof(ipc_fd_var), "NODE_CHANNEL_FD=%d", ipc_index);
    ipc_vars[0] = ipc_fd_var;
    ipc_vars[1] = "NODE_CHANNEL_SERIALIZATION_MODE=json";
  }
  err = build_env(o, ipc_index != -1 ? ipc_vars : NULL, &envp);
  if (err != 0)
    goto fail_nomem;

  exe = file;
  if (file[0] == '\0') {
    err = UV_ENOENT;
    goto fail;
  }
  if (strchr(file, '/') == NULL) {
    err = find_in_path(file, envp, pathbuf, sizeof(pathbuf));
    if (err != 0)
      goto fail;
    exe = pathbuf;
  }
  sp.path = exe;
  sp.argv = argv;
  sp.envp = envp;
  sp.cwd = o->cwd;
  sp.flags = o->flags;
  sp.uid = o->uid;
  sp.gid = o->gid;
  err = spawn_plan_run(&sp, &child->pid, &priv->pidfd);
  if (err == -ENOEXEC) {
    /* An executable without a #! line or ELF header is a shell script to
     * execvp(), which Node's spawn relies on: run it with /bin/sh. */
    size_t argc = 0;
    char** shargv;
    while (argv[argc] != NULL)
      argc++;
    shargv = herd__malloc((argc + 2) * sizeof(*shargv));
    if (shargv == NULL) {
      err = UV_ENOMEM;
      goto fail_nomem;
    }
    shargv[0] = "/bin/sh";
    shargv[1] = (char*)exe;
    memcpy(shargv + 2, argv + 1, argc * sizeof(*shargv));
    sp.path = "/bin/sh";
    sp.argv = shargv;
    err = spawn_plan_run(&sp, &child->pid, &priv->pidfd);
    herd__free(shargv);
  }
  if (err != 0) {
    child->pid = 0;
    goto fail;
  }
  /* The pidfd is the only way to learn of the exit: a child that cannot be
   * watched is ended now rather than left for nobody to reap. */
  err = uv_poll_init(loop, &priv->poll, priv->pidfd);
  if (err != 0) {
    pidfd_send_signal(priv->pidfd, SIGKILL, NULL, 0);
    while (waitid(P_PIDFD, (id_t)priv->pidfd, &(siginfo_t){0}, WEXITED) == -1 &&
           errno == EINTR) {
    }
    close(priv->pidfd);
    priv->pidfd = -1;
    child->pid = 0;
    goto fail;
  }

  for (int i = 0; i < n; i++) {
    if (child_end[i] != -1)
      close(child_end[i]);
    if (tmp[i] != -1)
      close(tmp[i]);
  }
  if (envp != environ)
    herd__free(envp);
  herd__free(argv);
  herd__free(cmd);

  priv->flags |= HERD__CHILD_RUNNING;
  uv_poll_start(&priv->poll, UV_READABLE, poll_cb);
  priv->handles++;
  if (priv->timeout > 0)
    uv_timer_start(&priv->timer, timer_cb, priv->timeout, 0);
  for (int i = 0; i < n; i++) {
    herd__pipe_t* p = &priv->pipes[i];
    if (parent_end[i] == -1 || i == ipc_index)
      continue;
    uv_pipe_init(loop, &p->handle, 0);
    p->open = 1;
    priv->handles++;
    if (uv_pipe_open(&p->handle, parent_end[i]) != 0) {
      close(parent_end[i]);
      pipe_close(p);
    }
  }
  if (ipc_index != -1) {
    if (herd__ipc_attach(child, parent_end[ipc_index]) == 0 &&
        child->channel != NULL)
      priv->flags |= HERD__CHILD_CHANNEL;
  }
  if (o->abort != NULL) {
    herd_abort_t* ab = o->abort;
    priv->abort = ab;
    priv->abort_next = ab->head;
    if (priv->abort_next != NULL)
      priv->abort_next->abort_prev = priv;
    ab->head = priv;
  }
  return 0;

fail_nomem:
  /* Out of memory is returned, as the header promises; every other failure
   * to start is reported through error_cb. */
  async_error = 0;
fail:
  if (envp != NULL && envp != environ)
    herd__free(envp);
  herd__free(argv);
  herd__free(cmd);
  for (int i = 0; i < n; i++) {
    if (parent_end[i] != -1)
      close(parent_end[i]);
    if (child_end[i] != -1)
      close(child_end[i]);
    if (tmp[i] != -1)
      close(tmp[i]);
  }
  if (async_error) {
    child_fail(priv, err);
    return 0;
  }
  /* The timer is the only handle and closes without calling anything. */
  priv->close_cb = NULL;
  priv->error_cb = NULL;
  priv->flags |= HERD__CHILD_DONE;
  uv_close((uv_handle_t*)&priv->timer, timer_final_cb);
  return err;
}

uv_stream_t* herd_child_stream(herd_child_t* child, int fd) {
  herd_child_private_t* priv = child->priv;
  if (priv == NULL || fd < 0 || fd >= priv->npipes)
    return NULL;
  if (!priv->pipes[fd].open || priv->pipes[fd].closing)
    return NULL;
  return (uv_stream_t*)&priv->pipes[fd].handle;
}

int herd_child_read_start(herd_child_t* child, int fd, herd_child_read_cb cb) {
  uv_stream_t* s = herd_child_stream(child, fd);
  herd__pipe_t* p;
  int r;
  if (s == NULL || cb == NULL)
    return UV_EINVAL;
  p = &child->priv->pipes[fd];
  child->priv->read_cb = cb;
  p->discard = 0;
  p->user = 1;
  if (p->reading)
    return 0;
  r = uv_read_start(s, alloc_cb, read_cb);
  if (r == 0)
    p->reading = 1;
  return r;
}

int herd_child_read_stop(herd_child_t* child, int fd) {
  uv_stream_t* s = herd_child_stream(child, fd);
  if (s == NULL)
    return UV_EINVAL;
  child->priv->pipes[fd].reading = 0;
  return uv_read_stop(s);
}

static void shutdown_cb(uv_shutdown_t* req, int status) {
  herd__pipe_t* p = HERD_CONTAINER_OF(req, herd__pipe_t, shutdown_req);
  (void)status;
  /* A pipe still read by herd closes at its EOF; otherwise it is done. */
  if (!p->reading || status != 0)
    pipe_close(p);
}

int herd_child_end(herd_child_t* child, int fd) {
  uv_stream_t* s = herd_child_stream(child, fd);
  herd__pipe_t* p;
  int r;
  if (s == NULL)
    return UV_EINVAL;
  p = &child->priv->pipes[fd];
  /* The child's stdout and stderr are read-only for the parent (as in
   * Node): ending them just closes them. */
  if (fd == 1 || fd == 2 || child->exited) {
    pipe_close(p);
    return 0;
  }
  p->closing = 1;
  r = uv_shutdown(&p->shutdown_req, s, shutdown_cb);
  if (r != 0) {
    p->closing = 0;
    pipe_close(p);
  }
  return 0;
}

int herd_child_kill(herd_child_t* child, int signum) {
  herd_child_private_t* priv = child->priv;
  int r;
  if (priv == NULL || !(priv->flags & HERD__CHILD_RUNNING))
    return UV_ESRCH;
  r = child_signal(priv, signum ? signum : SIGTERM);
  if (r == 0)
    child->killed = 1;
  return r;
}

void herd_child_ref(herd_child_t* child) {
  herd_child_private_t* priv = child->priv;
  if (priv == NULL)
    return;
  priv->flags &= ~HERD__CHILD_UNREF;
  uv_ref((uv_handle_t*)&priv->timer);
  if (priv->flags & HERD__CHILD_RUNNING)
    uv_ref((uv_handle_t*)&priv->poll);
}

void herd_child_unref(herd_child_t* child) {
  herd_child_private_t* priv = child->priv;
  if (priv == NULL)
    return;
  priv->flags |= HERD__CHILD_UNREF;
  uv_unref((uv_handle_t*)&priv->timer);
  if (priv->flags & HERD__CHILD_RUNNING)
    uv_unref((uv_handle_t*)&priv->poll);
}

void herd_child_close(herd_child_t* child) {
  herd_child_private_t* priv = child->priv;
  if (priv == NULL || (priv->flags & HERD__CHILD_CLOSED))
    return;
  priv->flags |= HERD__CHILD_CLOSED | HERD__CHILD_DONE;
  priv->flags &= ~HERD__CHILD_ERROR_PENDING;
  priv->exit_cb = NULL;
  abort_unlink(priv);
  if (priv->flags & HERD__CHILD_RUNNING) {
    priv->flags &= ~(HERD__CHILD_RUNNING | HERD__CHILD_ESCALATING);
    uv_close((uv_handle_t*)&priv->poll, poll_close_cb);
    if (herd__reaper_adopt(child->pid, priv->pidfd) != 0) {
      /* No reaper: end the child here rather than leave a zombie. */
      pidfd_send_signal(priv->pidfd, SIGKILL, NULL, 0);
      while (waitid(P_PIDFD, (id_t)priv->pidfd, &(siginfo_t){0}, WEXITED) ==
                 -1 &&
             errno == EINTR) {
      }
      close(priv->pidfd);
    }
    priv->pidfd = -1;
  }
  uv_timer_stop(&priv->timer);
  for (int i = 0; i < priv->npipes; i++)
    pipe_close(&priv->pipes[i]);
  if (child->channel != NULL)
    herd__ipc_detach(child->channel);
  child_maybe_finish(priv);
}

void herd_abort_init(herd_abort_t* ab) {
  ab->aborted = 0;
  ab->head = NULL;
}

void herd_abort(herd_abort_t* ab) {
  herd_child_private_t* p;
  if (ab->aborted)
    return;
  ab->aborted = 1;
  p = ab->head;
  while (p != NULL) {
    herd_child_private_t* next = p->abort_next;
    abort_unlink(p);
    p->flags |= HERD__CHILD_ABORTED;
    child_kill_escalate(p);
    p = next;
  }
}
