/* herd_spawn() and the child handle: what the child gets (arguments,
 * environment, fds), watching it exit through its pidfd, its stdio pipes,
 * kill(), timeouts and abort. The process itself is created in
 * spawn_child.c and reaped in reaper.c. */
#include "process-int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

static void child_maybe_finish(herd_child_private_t* priv);
static void pipe_close(herd__pipe_t* p);
static void timer_cb(uv_timer_t* t);

/* The environment variables of the socket-activation protocol
 * (sd_listen_fds(3)); inherited ones are never passed on with new fds. */
static const char* const listen_vars[] = {"LISTEN_FDS", "LISTEN_PID",
                                          "LISTEN_FDNAMES"};

static size_t env_key_len(const char* kv) {
  const char* eq = strchr(kv, '=');
  return eq ? (size_t)(eq - kv) : strlen(kv);
}

static int env_is_listen_var(const char* kv) {
  size_t klen = env_key_len(kv);
  for (size_t i = 0; i < HERD_ARRAY_SIZE(listen_vars); i++)
    if (strlen(listen_vars[i]) == klen && memcmp(kv, listen_vars[i], klen) == 0)
      return 1;
  return 0;
}

/* Puts `kv` into `env` (count *n), replacing an entry with the same key. */
static void env_set(char** env, size_t* n, char* kv) {
  size_t klen = env_key_len(kv);
  for (size_t i = 0; i < *n; i++) {
    if (env_key_len(env[i]) == klen && memcmp(env[i], kv, klen) == 0) {
      env[i] = kv;
      return;
    }
  }
  env[(*n)++] = kv;
}

static const char* env_get(char* const* envp, const char* key) {
  size_t klen = strlen(key);
  for (; *envp != NULL; envp++)
    if (strncmp(*envp, key, klen) == 0 && (*envp)[klen] == '=')
      return *envp + klen + 1;
  return NULL;
}

/* sd_listen_fds(3)'s rule for a name: printable ASCII without ':', at most
 * 255 characters (empty allowed). */
static int fd_name_valid(const char* s) {
  size_t len = 0;
  if (s == NULL)
    return 0;
  for (; *s != '\0'; s++, len++)
    if (*s < ' ' || *s >= 127 || *s == ':')
      return 0;
  return len <= 255;
}

/* The argv and environment of one spawn, built in the parent in a single
 * herd allocation (the child may not allocate) and freed after it. */
typedef struct {
  void* block;
  char** argv;       /* argv[-1] is the plan's free slot */
  char* const* envp; /* environ itself when nothing changes */
  char* listen_pid;  /* the digits of LISTEN_PID=, written by the child */
  const char* exe;   /* what to run: file, or the shell */
} spawn_exec_t;

static int spawn_exec_build(const herd_spawn_options_t* o, const char* file,
                            const char* const* args, int ipc_index,
                            spawn_exec_t* x) {
  int shell = (o->flags & HERD_SPAWN_SHELL) != 0;
  int nlisten = o->listen_fds_count;
  int custom_env = o->env != NULL || ipc_index != -1 || nlisten > 0;
  size_t nargs = 0, nparent = 0, nuser = 0, nptr, strings = 0;
  size_t cmd_len = 0, names_len = 0, n = 0;
  char** env = NULL;
  char* s;

  while (args != NULL && args[nargs] != NULL)
    nargs++;
  if (shell) {
    cmd_len = strlen(file) + 1;
    for (size_t i = 0; i < nargs; i++)
      cmd_len += strlen(args[i]) + 1;
    strings += cmd_len;
  }
  nptr = shell ? 5 : nargs + 3; /* [-1], argv0, ..., NULL */
  if (custom_env) {
    if (o->env == NULL || (o->flags & HERD_SPAWN_ENV_EXTEND))
      while (environ[nparent] != NULL)
        nparent++;
    if (o->env != NULL)
      while (o->env[nuser] != NULL)
        nuser++;
    nptr += nparent + nuser + 6; /* two IPC, three LISTEN_*, NULL */
    if (ipc_index != -1)
      strings += 32;
    if (nlisten > 0) {
      strings += 32 + 40; /* LISTEN_FDS=n, LISTEN_PID=<20 digits> */
      if (o->listen_fd_names != NULL) {
        names_len = sizeof("LISTEN_FDNAMES=");
        for (int i = 0; i < nlisten; i++)
          names_len += strlen(o->listen_fd_names[i]) + 1;
        strings += names_len;
      }
    }
  }
  x->block = herd__malloc(nptr * sizeof(char*) + strings);
  if (x->block == NULL)
    return UV_ENOMEM;
  x->argv = (char**)x->block + 1;
  s = (char*)((char**)x->block + nptr);
  x->argv[-1] = NULL;
  x->listen_pid = NULL;
  if (shell) {
    /* Node's `<shell> -c "<file> <args joined by spaces>"`. */
    char* cmd = s;
    char* p = cmd;
    s += cmd_len;
    p += strlen(strcpy(p, file));
    for (size_t i = 0; i < nargs; i++) {
      *p++ = ' ';
      p += strlen(strcpy(p, args[i]));
    }
    x->exe = o->shell ? o->shell : "/bin/sh";
    x->argv[0] = (char*)(o->argv0 ? o->argv0 : x->exe);
    x->argv[1] = "-c";
    x->argv[2] = cmd;
    x->argv[3] = NULL;
    env = x->argv + 4;
  } else {
    x->exe = file;
    x->argv[0] = (char*)(o->argv0 ? o->argv0 : file);
    for (size_t i = 0; i < nargs; i++)
      x->argv[i + 1] = (char*)args[i];
    x->argv[nargs + 1] = NULL;
    env = x->argv + nargs + 2;
  }
  if (!custom_env) {
    x->envp = environ;
    return 0;
  }
  for (size_t i = 0; i < nparent; i++)
    if (nlisten == 0 || !env_is_listen_var(environ[i]))
      env[n++] = environ[i];
  for (size_t i = 0; i < nuser; i++)
    if (nlisten == 0 || !env_is_listen_var(o->env[i]))
      env_set(env, &n, (char*)o->env[i]);
  if (ipc_index != -1) {
    snprintf(s, 32, "NODE_CHANNEL_FD=%d", ipc_index);
    env_set(env, &n, s);
    env_set(env, &n, "NODE_CHANNEL_SERIALIZATION_MODE=json");
    s += 32;
  }
  if (nlisten > 0) {
    snprintf(s, 32, "LISTEN_FDS=%d", nlisten);
    env[n++] = s;
    s += 32;
    strcpy(s, "LISTEN_PID=");
    x->listen_pid = s + strlen(s);
    x->listen_pid[0] = '\0';
    env[n++] = s;
    s += 40;
    if (o->listen_fd_names != NULL) {
      char* p = s;
      p += strlen(strcpy(p, "LISTEN_FDNAMES="));
      for (int i = 0; i < nlisten; i++) {
        if (i > 0)
          *p++ = ':';
        p += strlen(strcpy(p, o->listen_fd_names[i]));
      }
      env[n++] = s;
    }
  }
  env[n] = NULL;
  x->envp = env;
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
  herd__free(priv);
  if (cb != NULL)
    cb(child);
}

static void poll_close_cb(uv_handle_t* h) {
  herd_child_private_t* priv = HERD_CONTAINER_OF(h, herd_child_private_t, poll);
  priv->handles--;
  child_maybe_finish(priv);
}

/* Node's ChildProcess keeps the loop alive through its stdio pipes, which
 * it reads from the start, even after unref(). herd reads a pipe only when
 * asked, so an unread pipe is an inactive handle: instead the pidfd watcher
 * stays referenced while an open pipe is, and the loop runs until exit. */
static void child_update_ref(herd_child_private_t* priv) {
  int hold = !(priv->flags & HERD__CHILD_UNREF);
  if (!(priv->flags & HERD__CHILD_RUNNING))
    return;
  for (int i = 0; !hold && i < priv->npipes; i++) {
    herd__pipe_t* p = &priv->pipes[i];
    if (p->open && !p->closing && uv_has_ref((uv_handle_t*)&p->handle))
      hold = 1;
  }
  if (hold)
    uv_ref((uv_handle_t*)&priv->poll);
  else
    uv_unref((uv_handle_t*)&priv->poll);
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

/* Ends the child for timeout, abort or exec's limits: kill_signal, and the
 * timer to follow with SIGKILL. A capturing spawn (exec, sync) also closes
 * the pipes, as Node's exec destroys stdout and stderr and spawnSync closes
 * every pipe: the result then waits for the child's exit only, never for a
 * grandchild that inherited a pipe (and a grandchild still writing gets
 * EPIPE instead of being drained forever). */
static void child_terminate(herd_child_private_t* priv) {
  /* Once the child is being ended, its timeout has nothing left to do. */
  if (priv->flags & HERD__CHILD_TIMEOUT_ARMED) {
    priv->flags &= ~HERD__CHILD_TIMEOUT_ARMED;
    uv_timer_stop(&priv->timer);
  }
  if ((priv->flags & HERD__CHILD_RUNNING) &&
      !(priv->flags & HERD__CHILD_ESCALATING)) {
    if (child_signal(priv, priv->kill_signal) == 0)
      priv->child->killed = 1;
    if (priv->kill_signal != SIGKILL) {
      priv->flags |= HERD__CHILD_ESCALATING;
      uv_timer_start(&priv->timer, timer_cb, priv->kill_grace, 0);
    }
  }
  if (priv->flags & HERD__CHILD_CAPTURE)
    for (int i = 0; i < priv->npipes; i++)
      pipe_close(&priv->pipes[i]);
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
  if (priv->flags & HERD__CHILD_ESCALATING) {
    priv->flags &= ~HERD__CHILD_ESCALATING;
    if (priv->flags & HERD__CHILD_RUNNING)
      child_signal(priv, SIGKILL);
    return;
  }
  if (!(priv->flags & HERD__CHILD_TIMEOUT_ARMED))
    return;
  priv->flags &= ~HERD__CHILD_TIMEOUT_ARMED;
  priv->flags |= HERD__CHILD_TIMED_OUT;
  if (priv->timeout_cb != NULL)
    priv->timeout_cb(priv->child);
  child_terminate(priv);
}

static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  herd__pipe_t* p = HERD_CONTAINER_OF(h, herd__pipe_t, handle);
  (void)suggested;
  buf->base = p->child->priv->buf;
  buf->len = HERD__READ_BUF_SIZE;
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
  child_update_ref(p->child->priv);
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

  priv->flags &= ~HERD__CHILD_RUNNING;
  priv->flags |= HERD__CHILD_DONE;
  uv_close((uv_handle_t*)&priv->poll, poll_close_cb);
  close(priv->pidfd);
  priv->pidfd = -1;
  /* The kill escalation ends with the child; a capturing spawn's timeout
   * goes on while its pipes are open (a grandchild may hold them). */
  priv->flags &= ~HERD__CHILD_ESCALATING;
  if (!(priv->flags & HERD__CHILD_CAPTURE))
    priv->flags &= ~HERD__CHILD_TIMEOUT_ARMED;
  if (!(priv->flags & HERD__CHILD_TIMEOUT_ARMED))
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
  int64_t code;
  int sig, r;
  (void)status;
  (void)events;
  if (priv->flags & HERD__CHILD_KILL_GROUP) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    /* WNOWAIT: only look. The group goes while its leader is a zombie. */
    if (waitid(P_PIDFD, (id_t)priv->pidfd, &info,
               WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
        info.si_pid != 0) {
      priv->flags &= ~HERD__CHILD_KILL_GROUP;
      kill(-priv->child->pid, SIGKILL);
    }
  }
  r = herd__watch_reap(&priv->watch, &code, &sig);
  if (r == UV_EAGAIN)
    return;
  if (r != 0) {
    /* Reaped by other code, on a kernel that kept no status for the pidfd:
     * gone, status unknown. */
    code = -1;
    sig = 0;
  }
  child_on_exit(priv, code, sig);
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

void herd__child_kill_group_at_exit(herd_child_t* child) {
  herd_child_private_t* priv = child->priv;
  if (priv != NULL && child->pid > 0)
    priv->flags |= HERD__CHILD_KILL_GROUP;
}

void herd__child_terminate(herd_child_t* child) {
  if (child->priv != NULL)
    child_terminate(child->priv);
}

/* Reports a failure to start from the loop: error_cb, then close_cb. */
static void child_fail(herd_child_private_t* priv, int err) {
  priv->spawn_error = err;
  priv->flags |= HERD__CHILD_DONE | HERD__CHILD_ERROR_PENDING;
  uv_timer_start(&priv->timer, timer_cb, 0, 0);
}

/* Checks what herd_spawn() can refuse at once (UV_EINVAL). */
static int spawn_validate(const herd_spawn_options_t* o,
                          const herd_stdio_t* stdio, int n, int* ipc_index) {
  int nlisten = o->listen_fds_count;
  *ipc_index = -1;
  for (int i = 0; i < n; i++) {
    if (stdio[i].kind == HERD_STDIO_IPC) {
      if (*ipc_index != -1)
        return UV_EINVAL;
      *ipc_index = i;
    } else if (stdio[i].kind == HERD_STDIO_FD && stdio[i].fd < 0) {
      return UV_EINVAL;
    } else if (stdio[i].kind > HERD_STDIO_IPC) {
      return UV_EINVAL;
    }
  }
  if (nlisten < 0 || nlisten > HERD_LISTEN_FDS_MAX ||
      (nlisten > 0 && (o->listen_fds == NULL || n > 3)))
    return UV_EINVAL;
  for (int i = 0; i < nlisten; i++) {
    if (o->listen_fds[i] < 0)
      return UV_EINVAL;
    if (o->listen_fd_names != NULL && !fd_name_valid(o->listen_fd_names[i]))
      return UV_EINVAL;
  }
  if (o->parent_death_signal < 0 || o->parent_death_signal >= NSIG)
    return UV_EINVAL;
  return 0;
}

int herd__spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
                const char* const* args, const herd_spawn_options_t* options,
                int capture, herd__timeout_cb timeout_cb) {
  static const herd_spawn_options_t defaults;
  static const herd_stdio_t three_pipes[3];
  const herd_spawn_options_t* o = options ? options : &defaults;
  const herd_stdio_t* stdio = o->stdio;
  int n = o->stdio_count;
  int nlisten = o->listen_fds_count;
  herd_child_private_t* priv;
  herd__child_plan_t plan;
  spawn_exec_t x;
  int parent_end[HERD_STDIO_MAX];
  int child_end[HERD_STDIO_MAX];
  int ipc_index, has_pipe = 0, err = 0;
  size_t size;

  if (loop == NULL || child == NULL || file == NULL || n < 0 ||
      n > HERD_STDIO_MAX || (n > 0 && stdio == NULL))
    return UV_EINVAL;
  if (n == 0) {
    stdio = three_pipes;
    n = 3;
  }
  err = spawn_validate(o, stdio, n, &ipc_index);
  if (err != 0)
    return err;
  for (int i = 0; i < n; i++)
    if (stdio[i].kind == HERD_STDIO_PIPE)
      has_pipe = 1;

  /* Every allocation comes first, so that running out of memory returns
   * before anything (a handle, an fd, a process) exists: the handle's
   * private part with the pipes' read buffer, then the argv and
   * environment. */
  size = sizeof(*priv) + (size_t)n * sizeof(herd__pipe_t);
  size = (size + 15) & ~(size_t)15;
  priv = herd__malloc(size + (has_pipe ? HERD__READ_BUF_SIZE : 0));
  if (priv == NULL)
    return UV_ENOMEM;
  memset(priv, 0, size);
  memset(&x, 0, sizeof(x));
  if (o->abort == NULL || !o->abort->aborted) {
    err = spawn_exec_build(o, file, args, ipc_index, &x);
    if (err != 0) {
      herd__free(priv);
      return err;
    }
  }

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
  priv->timeout_cb = timeout_cb;
  priv->buf = has_pipe ? (char*)priv + size : NULL;
  priv->pidfd = -1;
  priv->npipes = n;
  priv->timeout = o->timeout;
  priv->kill_signal = o->kill_signal ? o->kill_signal : SIGTERM;
  priv->kill_grace = o->kill_grace ? o->kill_grace : HERD__KILL_GRACE_DEFAULT;
  if (capture)
    priv->flags |= HERD__CHILD_CAPTURE;
  for (int i = 0; i < n; i++) {
    priv->pipes[i].child = child;
    priv->pipes[i].fd = i;
    parent_end[i] = child_end[i] = -1;
  }

  /* The child's fds: its stdio entries, then (with socket activation)
   * /dev/null up to fd 2 and the listening fds from fd 3 on. */
  memset(&plan, 0, sizeof(plan));
  plan.nfds = nlisten > 0 ? 3 + nlisten : n;
  for (int i = 0; i < plan.nfds; i++)
    plan.src[i] = i < n ? -1 : i < 3 ? -1 : o->listen_fds[i - 3];
  for (int i = 0; x.block != NULL && err == 0 && i < n; i++) {
    int sv[2];
    switch (stdio[i].kind) {
      case HERD_STDIO_PIPE:
      case HERD_STDIO_IPC:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
          err = -errno;
          break;
        }
        parent_end[i] = sv[0];
        child_end[i] = sv[1];
        plan.src[i] = sv[1];
        break;
      case HERD_STDIO_IGNORE:
        plan.src[i] = -1;
        break;
      case HERD_STDIO_INHERIT:
        plan.src[i] = i;
        break;
      case HERD_STDIO_FD:
        plan.src[i] = stdio[i].fd;
        break;
    }
  }
  /* The channel takes its end before the process exists, because that can
   * run out of memory too (ipc.c closes the fd itself when it fails). */
  if (err == 0 && ipc_index != -1 && x.block != NULL) {
    int r = herd__ipc_attach(child, parent_end[ipc_index]);
    parent_end[ipc_index] = -1;
    if (r != 0) {
      for (int i = 0; i < n; i++) {
        if (parent_end[i] != -1)
          close(parent_end[i]);
        if (child_end[i] != -1)
          close(child_end[i]);
      }
      herd__free(x.block);
      herd__free(priv);
      child->priv = NULL;
      return r;
    }
    if (child->channel != NULL)
      priv->flags |= HERD__CHILD_CHANNEL;
  }

  /* From here on the call succeeds: a failure to start the program is
   * reported through error_cb, from the loop. */
  uv_timer_init(loop, &priv->timer);
  if (x.block == NULL) {
    child_fail(priv, UV_ECANCELED);
    return 0;
  }
  if (err == 0 && file[0] == '\0')
    err = UV_ENOENT;
  if (err == 0) {
    plan.file = x.exe;
    plan.path = NULL;
    if (strchr(x.exe, '/') == NULL) {
      plan.path = env_get(x.envp, "PATH");
      if (plan.path == NULL)
        plan.path = getenv("PATH");
      if (plan.path == NULL)
        plan.path = "/bin:/usr/bin";
    }
    plan.argv = x.argv;
    plan.envp = x.envp;
    plan.listen_pid = x.listen_pid;
    plan.cwd = o->cwd;
    plan.flags = o->flags;
    plan.uid = o->uid;
    plan.gid = o->gid;
    plan.pdeath_signal = o->parent_death_signal;
    herd__reap_prepare();
    herd__watch_gate_enter();
    err = herd__spawn_process(&plan, &child->pid, &priv->pidfd);
    if (err == 0)
      herd__watch_add(&priv->watch, child->pid, priv->pidfd);
    herd__watch_gate_leave();
    if (err != 0)
      child->pid = 0;
  }
  herd__free(x.block);
  for (int i = 0; i < n; i++)
    if (child_end[i] != -1)
      close(child_end[i]);
  /* The pidfd is the only way to learn of the exit: a child that cannot be
   * watched is ended now rather than left for nobody to reap. */
  if (err == 0) {
    err = uv_poll_init(loop, &priv->poll, priv->pidfd);
    if (err != 0) {
      herd__watch_drop(&priv->watch);
      herd__reap_kill(priv->pidfd);
      priv->pidfd = -1;
      child->pid = 0;
    }
  }
  if (err != 0) {
    for (int i = 0; i < n; i++)
      if (parent_end[i] != -1)
        close(parent_end[i]);
    if (child->channel != NULL)
      herd__ipc_detach(child->channel);
    child_fail(priv, err);
    return 0;
  }

  priv->flags |= HERD__CHILD_RUNNING;
  uv_poll_start(&priv->poll, UV_READABLE, poll_cb);
  priv->handles++;
  if (priv->timeout > 0) {
    priv->flags |= HERD__CHILD_TIMEOUT_ARMED;
    uv_timer_start(&priv->timer, timer_cb, priv->timeout, 0);
  }
  for (int i = 0; i < n; i++) {
    herd__pipe_t* p = &priv->pipes[i];
    if (parent_end[i] == -1)
      continue;
    uv_pipe_init(loop, &p->handle, 0);
    p->open = 1;
    priv->handles++;
    if (uv_pipe_open(&p->handle, parent_end[i]) != 0) {
      close(parent_end[i]);
      pipe_close(p);
    }
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
}

int herd_spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
               const char* const* args, const herd_spawn_options_t* options) {
  return herd__spawn(loop, child, file, args, options, 0, NULL);
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
  child_update_ref(child->priv);
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
  child_update_ref(priv);
}

void herd_child_unref(herd_child_t* child) {
  herd_child_private_t* priv = child->priv;
  if (priv == NULL)
    return;
  priv->flags |= HERD__CHILD_UNREF;
  uv_unref((uv_handle_t*)&priv->timer);
  child_update_ref(priv);
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
    herd__watch_drop(&priv->watch);
    herd__reap_later(priv->pidfd);
    priv->pidfd = -1;
  }
  priv->flags &= ~HERD__CHILD_TIMEOUT_ARMED;
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
    child_terminate(p);
    p = next;
  }
}
