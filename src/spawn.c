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

/* The argv of one spawn, which is also child->spawnargs: its size, and
 * building it into `area` (in the child's private block, so that it lives
 * as long as the handle). */
static size_t argv_size(const herd_spawn_options_t* o, const char* file,
                        const char* const* args) {
  int shell = (o->flags & HERD_SPAWN_SHELL) != 0;
  size_t nargs = 0, strings = strlen(file) + 1;
  while (args != NULL && args[nargs] != NULL)
    strings += strlen(args[nargs++]) + 1;
  if (o->argv0 != NULL)
    strings += strlen(o->argv0) + 1;
  if (shell)
    strings += strlen(o->shell ? o->shell : "/bin/sh") + 1;
  /* [-1], argv0, the arguments (with the shell: -c and the command), NULL */
  return ((shell ? 3 : nargs + 1) + 2) * sizeof(char*) + strings;
}

/* Returns the argv; *exe is what to run (file, or the shell), which is also
 * child->spawnfile. Node's normalizeSpawnArguments(): with the shell, the
 * command is `file` and the arguments joined by spaces, run as `<shell> -c
 * <command>`; argv[0] is argv0, else the program run. */
static char** argv_build(const herd_spawn_options_t* o, const char* file,
                         const char* const* args, void* area,
                         const char** exe) {
  int shell = (o->flags & HERD_SPAWN_SHELL) != 0;
  size_t nargs = 0;
  char** argv;
  char* s;

  while (args != NULL && args[nargs] != NULL)
    nargs++;
  argv = (char**)area + 1;
  s = (char*)(argv + (shell ? 3 : nargs + 1) + 1);
  argv[-1] = NULL;
  *exe = s;
  s = stpcpy(s, shell ? (o->shell ? o->shell : "/bin/sh") : file) + 1;
  argv[0] = (char*)*exe;
  if (o->argv0 != NULL) {
    argv[0] = s;
    s = stpcpy(s, o->argv0) + 1;
  }
  if (shell) {
    argv[1] = "-c";
    argv[2] = s;
    s = stpcpy(s, file);
    for (size_t i = 0; i < nargs; i++) {
      *s++ = ' ';
      s = stpcpy(s, args[i]);
    }
    argv[3] = NULL;
    return argv;
  }
  for (size_t i = 0; i < nargs; i++) {
    argv[i + 1] = s;
    s = stpcpy(s, args[i]) + 1;
  }
  argv[nargs + 1] = NULL;
  return argv;
}

/* The environment of one spawn and the fd arrays of a large one, built in
 * the parent in a single herd allocation (the child may not allocate) and
 * freed after it; no allocation at all when the parent's environment is
 * used as it is and the arrays fit on the stack. */
typedef struct {
  void* block;
  char* const* envp; /* environ itself when nothing changes */
  char* listen_pid;  /* the digits of LISTEN_PID=, written by the child */
  int* ints;         /* `nints` ints asked for, or NULL */
} spawn_env_t;

static int spawn_env_build(const herd_spawn_options_t* o, int ipc_index,
                           size_t nints, spawn_env_t* x) {
  int nlisten = o->listen_fds_count;
  int custom_env = o->env != NULL || ipc_index != -1 || nlisten > 0;
  size_t nparent = 0, nuser = 0, nptr = 0, strings = 0, names_len = 0, n = 0;
  /* The ints first, rounded up so that the pointers after them align. */
  size_t ints_size =
      (nints * sizeof(int) + sizeof(char*) - 1) & ~(sizeof(char*) - 1);
  char** env;
  char* s;

  x->block = NULL;
  x->envp = environ;
  x->listen_pid = NULL;
  x->ints = NULL;
  if (!custom_env && nints == 0)
    return 0;
  if (custom_env) {
    if (o->env == NULL || (o->flags & HERD_SPAWN_ENV_EXTEND))
      while (environ[nparent] != NULL)
        nparent++;
    if (o->env != NULL)
      while (o->env[nuser] != NULL)
        nuser++;
    nptr = nparent + nuser + 6; /* two IPC, three LISTEN_*, NULL */
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
  x->block = herd__malloc(ints_size + nptr * sizeof(char*) + strings);
  if (x->block == NULL)
    return UV_ENOMEM;
  if (nints > 0)
    x->ints = x->block;
  if (!custom_env)
    return 0;
  env = (char**)((char*)x->block + ints_size);
  s = (char*)(env + nptr);
  for (size_t i = 0; i < nparent; i++)
    if (nlisten == 0 || !env_is_listen_var(environ[i]))
      env[n++] = environ[i];
  for (size_t i = 0; i < nuser; i++)
    if (nlisten == 0 || !env_is_listen_var(o->env[i]))
      env_set(env, &n, (char*)o->env[i]);
  if (ipc_index != -1) {
    snprintf(s, 32, "NODE_CHANNEL_FD=%d", ipc_index);
    env_set(env, &n, s);
    env_set(env, &n,
            o->serialization == HERD_SERIALIZATION_ADVANCED
                ? "NODE_CHANNEL_SERIALIZATION_MODE=advanced"
                : "NODE_CHANNEL_SERIALIZATION_MODE=json");
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
  /* Freed after the callback: spawnfile and spawnargs live in the block
   * and stay valid until close_cb returns (which may reuse the handle). */
  if (cb != NULL)
    cb(child);
  herd__free(priv);
}

static void poll_close_cb(uv_handle_t* h) {
  herd_child_private_t* priv = HERD_CONTAINER_OF(h, herd_child_private_t, poll);
  priv->handles--;
  child_maybe_finish(priv);
}

static void spawn_timer_close_cb(uv_handle_t* h) {
  herd_child_private_t* priv =
      HERD_CONTAINER_OF(h, herd_child_private_t, spawn_timer);
  priv->handles--;
  child_maybe_finish(priv);
}

/* Node's 'spawn' event, emitted on the next tick after a successful spawn:
 * timers run before the loop polls for I/O, so it comes before any read
 * callback and before the exit is seen. */
static void spawn_timer_cb(uv_timer_t* t) {
  herd_child_private_t* priv =
      HERD_CONTAINER_OF(t, herd_child_private_t, spawn_timer);
  priv->flags &= ~HERD__CHILD_SPAWN_PENDING;
  /* The open timer counts as a handle, so a callback that closes the child
   * cannot finish it under us. */
  if (priv->spawn_cb != NULL && !(priv->flags & HERD__CHILD_CLOSED))
    priv->spawn_cb(priv->child);
  uv_close((uv_handle_t*)&priv->spawn_timer, spawn_timer_close_cb);
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
  child->signal_code = sig ? herd_signal_name(sig) : NULL;
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
  /* The group dies between the exit and the reap, while the zombie keeps
   * its id from being reused. */
  if ((priv->flags & HERD__CHILD_KILL_GROUP) &&
      herd__reap_kill_group(priv->pidfd, priv->child->pid) == UV_EAGAIN)
    return;
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
    } else if ((unsigned)stdio[i].kind > HERD_STDIO_DEFAULT) {
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
  if (o->parent_death_signal != 0 &&
      !herd__signal_valid(o->parent_death_signal))
    return UV_EINVAL;
  /* Node validates killSignal when spawning (ERR_UNKNOWN_SIGNAL). */
  if (o->kill_signal != 0 && !herd__signal_valid(o->kill_signal))
    return UV_EINVAL;
  if (o->serialization != HERD_SERIALIZATION_JSON &&
      o->serialization != HERD_SERIALIZATION_ADVANCED)
    return UV_EINVAL;
  return 0;
}

/* Entry `fd` of `count` entries, Node's defaults applied; entries beyond
 * `count` are `pad`. */
static herd_stdio_kind_t stdio_kind_at(const herd_stdio_t* stdio, int count,
                                       int fd, herd_stdio_kind_t pad) {
  herd_stdio_kind_t k;
  if (count == 0)
    return fd < 3 ? HERD_STDIO_PIPE : HERD_STDIO_IGNORE;
  k = fd < count ? stdio[fd].kind : pad;
  if (k == HERD_STDIO_OVERLAPPED)
    return HERD_STDIO_PIPE;
  if (k == HERD_STDIO_DEFAULT)
    return fd < 3 ? HERD_STDIO_PIPE : HERD_STDIO_IGNORE;
  return k;
}

herd_stdio_kind_t herd__stdio_kind(const herd_stdio_t* stdio, int count,
                                   int fd) {
  return stdio_kind_at(stdio, count, fd, HERD_STDIO_DEFAULT);
}

int herd__stdio_count(int count) {
  return count < 3 ? 3 : count;
}

/* The fd arrays of a spawn of up to this many fds live on the stack. */
#define SPAWN_FDS_INLINE 16

int herd__spawn(uv_loop_t* loop, herd_child_t* child, const char* file,
                const char* const* args, const herd_spawn_options_t* options,
                int capture, herd__timeout_cb timeout_cb) {
  static const herd_spawn_options_t defaults;
  const herd_spawn_options_t* o = options ? options : &defaults;
  const herd_stdio_t* stdio = o->stdio;
  int given = o->stdio_count;
  int nlisten = o->listen_fds_count;
  /* With socket activation, missing entries below fd 3 are /dev/null (the
   * fds then belong to systemd's protocol); otherwise Node's defaults. */
  herd_stdio_kind_t pad = nlisten > 0 ? HERD_STDIO_IGNORE : HERD_STDIO_DEFAULT;
  int aborted = o->abort != NULL && o->abort->aborted;
  int inline_fds[3 * SPAWN_FDS_INLINE];
  int *parent_end, *child_end;
  herd_child_private_t* priv;
  herd__child_plan_t plan;
  spawn_env_t x;
  const char *exe, *argv0;
  int n, ipc_index, has_pipe = 0, err = 0;
  size_t size, nints;

  if (loop == NULL || child == NULL || file == NULL || given < 0 ||
      (given > 0 && stdio == NULL))
    return UV_EINVAL;
  err = spawn_validate(o, stdio, given, &ipc_index);
  if (err != 0)
    return err;
  n = herd__stdio_count(given);
  for (int i = 0; i < n; i++)
    if (stdio_kind_at(stdio, given, i, pad) == HERD_STDIO_PIPE)
      has_pipe = 1;
  memset(&plan, 0, sizeof(plan));
  plan.nfds = nlisten > 0 ? 3 + nlisten : n;
  /* The child's fd sources, then the parent's and the child's ends of
   * each pipe. */
  nints = (size_t)plan.nfds + 2 * (size_t)n;

  /* Every allocation comes first, so that running out of memory returns
   * before anything (a handle, an fd, a process) exists: the handle's
   * private part with its argv (child->spawnargs) and the pipes' read
   * buffer, then, when needed, the environment and the fd arrays of a
   * large spawn. */
  size = sizeof(*priv) + (size_t)n * sizeof(herd__pipe_t);
  size = (size + 15) & ~(size_t)15;
  {
    size_t argv_at = size;
    size += argv_size(o, file, args);
    size = (size + 15) & ~(size_t)15;
    priv = herd__malloc(size + (has_pipe ? HERD__READ_BUF_SIZE : 0));
    if (priv == NULL)
      return UV_ENOMEM;
    memset(priv, 0, argv_at);
    priv->argv = argv_build(o, file, args, (char*)priv + argv_at, &exe);
  }
  memset(&x, 0, sizeof(x));
  if (!aborted) {
    err = spawn_env_build(o, ipc_index,
                          nints <= HERD_ARRAY_SIZE(inline_fds) ? 0 : nints, &x);
    if (err != 0) {
      herd__free(priv);
      return err;
    }
  }
  /* An aborted spawn starts nothing and uses no fd array. */
  plan.src = x.ints != NULL ? x.ints : aborted ? NULL : inline_fds;
  parent_end = aborted ? NULL : plan.src + plan.nfds;
  child_end = aborted ? NULL : parent_end + n;

  {
    void* data = child->data;
    memset(child, 0, sizeof(*child));
    child->data = data;
  }
  child->loop = loop;
  child->priv = priv;
  child->spawnfile = exe;
  child->spawnargs = (const char* const*)priv->argv;
  priv->child = child;
  priv->exit_cb = o->exit_cb;
  priv->error_cb = o->error_cb;
  priv->close_cb = o->close_cb;
  priv->spawn_cb = o->spawn_cb;
  priv->timeout_cb = timeout_cb;
  priv->buf = has_pipe ? (char*)priv + size : NULL;
  priv->pidfd = -1;
  priv->npipes = n;
  priv->timeout = o->timeout;
  priv->kill_signal = o->kill_signal ? o->kill_signal : SIGTERM;
  priv->kill_grace = o->kill_grace ? o->kill_grace : HERD__KILL_GRACE_DEFAULT;
  if (capture)
    priv->flags |= HERD__CHILD_CAPTURE;
  if (o->flags & HERD_SPAWN_KILL_GROUP_ON_EXIT)
    priv->flags |= HERD__CHILD_KILL_GROUP;
  for (int i = 0; i < n; i++) {
    priv->pipes[i].child = child;
    priv->pipes[i].fd = i;
  }

  /* The child's fds: its stdio entries, then (with socket activation) the
   * listening fds from fd 3 on. */
  for (int i = n; !aborted && i < plan.nfds; i++)
    plan.src[i] = o->listen_fds[i - 3];
  for (int i = 0; !aborted && i < n; i++) {
    int sv[2];
    parent_end[i] = child_end[i] = -1;
    plan.src[i] = HERD__FD_DEVNULL;
    if (err != 0)
      continue;
    switch (stdio_kind_at(stdio, given, i, pad)) {
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
        /* As libuv under Node: /dev/null for fds 0-2, nothing above. */
        plan.src[i] = i < 3 ? HERD__FD_DEVNULL : HERD__FD_CLOSED;
        break;
      case HERD_STDIO_INHERIT:
        plan.src[i] = i;
        break;
      case HERD_STDIO_FD:
        plan.src[i] = stdio[i].fd;
        break;
      default:
        break;
    }
  }
  /* The channel takes its end before the process exists, because that can
   * run out of memory too (ipc.c closes the fd itself when it fails). */
  if (err == 0 && ipc_index != -1 && !aborted) {
    int r = herd__ipc_attach(child, parent_end[ipc_index], o->serialization);
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
      child->spawnfile = NULL;
      child->spawnargs = NULL;
      return r;
    }
    if (child->channel != NULL)
      priv->flags |= HERD__CHILD_CHANNEL;
  }

  /* From here on the call succeeds: a failure to start the program is
   * reported through error_cb, from the loop. */
  uv_timer_init(loop, &priv->timer);
  if (aborted) {
    child_fail(priv, UV_ECANCELED);
    return 0;
  }
  if (err == 0 && file[0] == '\0')
    err = UV_ENOENT;
  if (err == 0) {
    plan.file = exe;
    plan.path = NULL;
    /* The child's own PATH, else /bin:/usr/bin, never the parent's: what
     * glibc's execvp() does under Node, which runs it after replacing
     * environ with the child's environment. */
    if (strchr(exe, '/') == NULL) {
      plan.path = env_get(x.envp, "PATH");
      if (plan.path == NULL)
        plan.path = "/bin:/usr/bin";
    }
    argv0 = priv->argv[0];
    plan.argv = priv->argv;
    plan.envp = x.envp;
    plan.listen_pid = x.listen_pid;
    plan.cwd = o->cwd;
    plan.flags = o->flags;
    if ((o->flags & HERD_SPAWN_KILL_GROUP_ON_EXIT) &&
        !(o->flags & HERD_SPAWN_DETACHED))
      plan.flags |= HERD_SPAWN_PROCESS_GROUP;
    plan.uid = o->uid;
    plan.gid = o->gid;
    plan.pdeath_signal = o->parent_death_signal;
    herd__reap_prepare();
    herd__watch_gate_enter();
    err = herd__spawn_process(&plan, &child->pid, &priv->pidfd);
    /* A file run through /bin/sh for want of #! had the child point argv[0]
     * into its own stack, which exec left behind: spawnargs keeps argv. */
    priv->argv[-1] = NULL;
    priv->argv[0] = (char*)argv0;
    if (err == 0)
      herd__watch_add(&priv->watch, child->pid, priv->pidfd);
    herd__watch_gate_leave();
    if (err != 0)
      child->pid = 0;
  }
  for (int i = 0; i < n; i++)
    if (child_end[i] != -1)
      close(child_end[i]);
  /* The pidfd is the only way to learn of the exit: a child that cannot be
   * watched is ended now rather than left for nobody to reap. */
  if (err == 0) {
    err = uv_poll_init(loop, &priv->poll, priv->pidfd);
    if (err != 0) {
      herd__watch_drop(&priv->watch);
      herd__reap_kill(priv->pidfd,
                      (priv->flags & HERD__CHILD_KILL_GROUP) ? child->pid : 0);
      priv->pidfd = -1;
      child->pid = 0;
    }
  }
  if (err != 0) {
    for (int i = 0; i < n; i++)
      if (parent_end[i] != -1)
        close(parent_end[i]);
    herd__free(x.block);
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
  herd__free(x.block);
  if (o->abort != NULL) {
    herd_abort_t* ab = o->abort;
    priv->abort = ab;
    priv->abort_next = ab->head;
    if (priv->abort_next != NULL)
      priv->abort_next->abort_prev = priv;
    ab->head = priv;
  }
  if (priv->spawn_cb != NULL) {
    uv_timer_init(loop, &priv->spawn_timer);
    priv->handles++;
    priv->flags |= HERD__CHILD_SPAWN_PENDING;
    uv_timer_start(&priv->spawn_timer, spawn_timer_cb, 0, 0);
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

int herd_child_kill_group(herd_child_t* child, int signum) {
  herd_child_private_t* priv = child->priv;
  int r;
  if (signum == 0)
    signum = SIGTERM;
  if (!herd__signal_valid(signum))
    return UV_EINVAL;
  if (priv == NULL || !(priv->flags & HERD__CHILD_RUNNING))
    return UV_ESRCH;
  /* Unreaped, the child's pid (its group's id) cannot be reused. Code that
   * waits for any child could have reaped it behind herd's back: the pidfd
   * tells. */
  r = herd__reap_peek(priv->pidfd);
  if (r != 0 && r != UV_EAGAIN)
    return UV_ESRCH;
  if (kill(-child->pid, signum) == -1)
    return -errno;
  child->killed = 1;
  return 0;
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
    herd__reap_later(priv->pidfd,
                     (priv->flags & HERD__CHILD_KILL_GROUP) ? child->pid : 0);
    priv->pidfd = -1;
  }
  if (priv->flags & HERD__CHILD_SPAWN_PENDING) {
    priv->flags &= ~HERD__CHILD_SPAWN_PENDING;
    uv_close((uv_handle_t*)&priv->spawn_timer, spawn_timer_close_cb);
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
