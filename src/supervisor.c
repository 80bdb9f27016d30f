/* The supervisor's public calls, its slot table, events, status and the
 * end of its life (stop, close). See include/herd/supervisor.h; the jobs
 * are split over supervisor_*.c as supervisor-int.h lists. */
#include "supervisor-int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* How often a retiring slot's queue is looked at while it drains, and how
 * long it drains at least. */
#define DRAIN_POLL_MS   50
#define DRAIN_SETTLE_MS 200

static void sup_timer_cb(uv_timer_t* t);
static void close_step(herd__sup_t* p);
static void report_stopped(herd__sup_t* p);

void herd__sup_emit(herd__sup_t* p, herd_supervisor_event_type_t type, int slot,
                    const herd__sup_proc_t* proc, int error, uint64_t delay,
                    const char* fmt, ...) {
  herd_supervisor_event_t e;
  va_list ap;
  if (p->closing || p->event_cb == NULL)
    return;
  memset(&e, 0, sizeof(e));
  e.type = type;
  e.slot = slot;
  e.error = error;
  e.delay = delay;
  e.workers = p->pub->workers;
  e.exit_status = -1;
  if (proc != NULL) {
    e.slot = proc->slot_index;
    e.pid = proc->pid;
    if (proc->state == HERD__PROC_EXITED) {
      e.exit_status = proc->exit_status;
      e.term_signal = proc->term_signal;
      if (e.error == 0)
        e.error = proc->start_error;
    }
  }
  if (type == HERD_SUPERVISOR_ORPHAN)
    e.pid = p->orphan_pid;
  va_start(ap, fmt);
  vsnprintf(p->text, sizeof(p->text), fmt, ap);
  va_end(ap);
  e.text = p->text;
  p->event_cb(p->pub, &e);
}

const char* herd__sup_who(herd__sup_t* p, const herd__sup_proc_t* proc) {
  static char buf[2][160];
  static int turn;
  char* b = buf[turn++ & 1];
  /* A process that never started has no pid to show. */
  if (proc->pid > 0)
    snprintf(b, sizeof(buf[0]), "%s.%d[%d]", p->name, proc->slot_index,
             (int)proc->pid);
  else
    snprintf(b, sizeof(buf[0]), "%s.%d", p->name, proc->slot_index);
  return b;
}

/* The interpreter named by the file's "#!" line, into buf; 0 when the file
 * is no script (or cannot be read). */
static int interpreter(const char* file, char* buf, size_t size) {
  char line[256];
  ssize_t n;
  size_t len;
  int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return 0;
  n = read(fd, line, sizeof(line) - 1);
  close(fd);
  if (n < 3 || line[0] != '#' || line[1] != '!')
    return 0;
  line[n] = '\0';
  /* The kernel's rule: blanks after "#!", then the path up to a blank. */
  len = strspn(line + 2, " \t");
  file = line + 2 + len;
  len = strcspn(file, " \t\n");
  if (len == 0 || len >= size)
    return 0;
  memcpy(buf, file, len);
  buf[len] = '\0';
  return 1;
}

void herd__sup_start_failure(herd__sup_t* p, int error, char* buf,
                             size_t size) {
  char interp[256];
  /* execve() says ENOENT (or EACCES) for a script's missing interpreter as
   * for a missing file: a shell says "bad interpreter", so does herd. */
  if ((error == UV_ENOENT || error == UV_EACCES) && strchr(p->file, '/') &&
      access(p->file, X_OK) == 0 &&
      interpreter(p->file, interp, sizeof(interp)) &&
      access(interp, X_OK) != 0) {
    snprintf(buf, size, "could not start: %s: bad interpreter: %s", interp,
             herd_strerror(-errno));
    return;
  }
  snprintf(buf, size, "could not start: %s", herd_strerror(error));
}

const char* herd__sup_how(const herd__sup_proc_t* proc) {
  static char buf[2][160];
  static int turn;
  char* b = buf[turn++ & 1];
  if (proc->start_error != 0)
    herd__sup_start_failure(proc->sup->priv, proc->start_error, b,
                            sizeof(buf[0]));
  else if (proc->flags & HERD__PROC_NOT_READY)
    /* herd stopped it, so the signal or status says nothing of it. */
    snprintf(b, sizeof(buf[0]), "not ready within %llu ms",
             (unsigned long long)(proc->ready_deadline - proc->started));
  else if (proc->term_signal != 0)
    snprintf(b, sizeof(buf[0]), "killed by signal %d (%s)", proc->term_signal,
             strsignal(proc->term_signal));
  else
    snprintf(b, sizeof(buf[0]), "exited with status %lld",
             (long long)proc->exit_status);
  return b;
}

void herd__sup_status(herd__sup_t* p, int ready) {
  herd_supervisor_t* s = p->pub;
  if (p->notifier == NULL || !p->notifier->enabled || p->closing)
    return;
  herd_sd_notifyf(p->notifier, "%sSTATUS=%s%d of %d workers ready%s",
                  ready ? "READY=1\n" : "", s->gave_up ? "giving up; " : "",
                  s->ready, s->workers,
                  s->stopping    ? ", stopping"
                  : s->reloading ? ", reloading"
                                 : "");
}

void herd__sup_update(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  int n = 0;
  for (int i = 0; i < s->workers; i++) {
    herd__sup_slot_t* slot = p->slots[i];
    if (slot->cur != NULL && slot->cur->state == HERD__PROC_READY)
      n++;
  }
  s->ready = n;
  if (!p->all_ready_sent && p->started && !s->stopping && n == s->workers) {
    p->all_ready_sent = 1;
    p->last_ready_reported = n;
    herd__sup_status(p, 1);
    herd__sup_emit(p, HERD_SUPERVISOR_ALL_READY, -1, NULL, 0, 0,
                   "%d worker%s ready", n, n == 1 ? "" : "s");
    return;
  }
  if (n != p->last_ready_reported) {
    p->last_ready_reported = n;
    herd__sup_status(p, 0);
  }
}

/* Whether a slot added by scale-up has no ready process yet. */
static int added_pending(herd__sup_t* p) {
  for (int i = 0; i < p->pub->workers; i++)
    if (p->slots[i]->added)
      return 1;
  return 0;
}

void herd__sup_arm(herd__sup_t* p) {
  uint64_t now, due = 0;
  if (!p->timer_init || uv_is_closing((uv_handle_t*)&p->timer))
    return;
  now = uv_now(p->pub->loop);
  if (p->stop_deferred || p->stopping_due || p->scaled_due || p->reload_due ||
      (p->scaled_report && !added_pending(p)))
    due = now;
  for (int i = 0; i < p->pub->workers; i++) {
    herd__sup_slot_t* slot = p->slots[i];
    if (slot->restart_due && (due == 0 || slot->restart_at < due))
      due = slot->restart_at;
  }
  for (herd__sup_proc_t* proc = p->procs; proc != NULL; proc = proc->next) {
    herd__sup_slot_t* slot = proc->slot;
    if (slot != NULL && slot->draining && slot->cur == proc &&
        (due == 0 || now + DRAIN_POLL_MS < due))
      due = now + DRAIN_POLL_MS;
  }
  if (due == 0) {
    uv_timer_stop(&p->timer);
    return;
  }
  uv_timer_start(&p->timer, sup_timer_cb, due > now ? due - now : 0, 0);
}

/* A retiring slot under reuseport: its socket is steered around; once its
 * queue is empty, and handshakes that began before the steering have had
 * DRAIN_SETTLE_MS to land in it, or at the graceful deadline, its worker
 * gets its stop signal. */
static void drain_check(herd__sup_t* p, herd__sup_slot_t* slot, uint64_t now) {
  herd__sup_proc_t* proc = slot->cur;
  if (now < slot->drain_deadline) {
    if (now < slot->drain_started + DRAIN_SETTLE_MS ||
        herd__sockets_queued(p, slot) > 0)
      return;
  }
  slot->draining = 0;
  herd__proc_detach(proc);
  herd__proc_stop(proc, 0);
}

static void sup_timer_cb(uv_timer_t* t) {
  herd__sup_t* p = t->data;
  herd_supervisor_t* s = p->pub;
  uint64_t now = uv_now(p->pub->loop);
  /* What the public calls left for the loop, in the order they asked. */
  if (p->stopping_due) {
    p->stopping_due = 0;
    herd__sup_emit(p, HERD_SUPERVISOR_STOPPING, -1, NULL, s->error, 0,
                   "stopping %d worker%s%s", p->stopping_count,
                   p->stopping_count == 1 ? "" : "s",
                   p->stopping_now ? " now" : "");
    if (p->closing)
      return;
  }
  if (p->scaled_due) {
    p->scaled_due = 0;
    herd__sup_update(p);
    if (s->reloading && !p->reload_due)
      herd__reload_step(p);
    if (p->closing)
      return;
  }
  /* The count is said once it is known: every slot added is ready, or
   * was removed again. */
  if (p->scaled_report && !added_pending(p) && !s->stopping) {
    p->scaled_report = 0;
    herd__sup_emit(p, HERD_SUPERVISOR_SCALED, -1, NULL, 0, 0,
                   "scaled to %d worker%s", s->workers,
                   s->workers == 1 ? "" : "s");
    if (p->closing)
      return;
  }
  if (p->reload_due) {
    p->reload_due = 0;
    if (s->reloading && !s->stopping)
      herd__reload_begin(p);
    if (p->closing)
      return;
  }
  if (p->stop_deferred) {
    p->stop_deferred = 0;
    report_stopped(p);
    if (p->closing)
      return;
  }
  herd__restart_run(p);
  for (herd__sup_proc_t* proc = p->procs; proc != NULL;) {
    herd__sup_proc_t* next = proc->next;
    herd__sup_slot_t* slot = proc->slot;
    if (slot != NULL && slot->draining && slot->cur == proc)
      drain_check(p, slot, now);
    proc = next;
  }
  herd__sup_arm(p);
}

void herd__sup_check_stopped(herd__sup_t* p) {
  /* STOPPED always comes from the timer: never from inside a call or
   * another callback. */
  if (p->pub->stopping && p->alive == 0 && !p->stopped_reported) {
    p->stop_deferred = 1;
    herd__sup_arm(p);
  }
}

static void report_stopped(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  herd_supervisor_cb cb;
  if (!s->stopping || p->alive > 0 || p->stopped_reported)
    return;
  p->stopped_reported = 1;
  herd__sup_emit(p, HERD_SUPERVISOR_STOPPED, -1, NULL, s->error, 0, "%s",
                 s->gave_up ? "stopped after giving up" : "stopped");
  cb = p->stop_cb;
  p->stop_cb = NULL;
  if (cb != NULL && !p->closing)
    cb(s);
}

static void sup_stop(herd__sup_t* p, int now) {
  herd_supervisor_t* s = p->pub;
  if (!s->stopping) {
    s->stopping = 1;
    if (p->notifier != NULL && p->notifier->enabled)
      herd_sd_notify(p->notifier, "STOPPING=1");
    herd__sup_status(p, 0);
    herd__reload_abandon(p);
    for (int i = 0; i < s->workers; i++) {
      p->slots[i]->restart_due = 0;
      p->slots[i]->draining = 0;
    }
    herd__sup_emit(
        p, HERD_SUPERVISOR_STOPPING, -1, NULL, s->error, 0,
        "stopping %d worker%s%s", p->alive, p->alive == 1 ? "" : "s",
        now || p->graceful_timeout == HERD_SUPERVISOR_NO_GRACE ? " now" : "");
  }
  for (herd__sup_proc_t* proc = p->procs; proc != NULL; proc = proc->next)
    if (proc->state != HERD__PROC_EXITED)
      herd__proc_stop(proc, now);
  herd__sup_check_stopped(p);
  herd__sup_arm(p);
}

void herd__sup_stop(herd__sup_t* p, int now) {
  sup_stop(p, now);
}

static herd__sup_slot_t* slot_new(herd__sup_t* p, int index) {
  herd__sup_slot_t* slot = herd__calloc(1, sizeof(*slot));
  if (slot == NULL)
    return NULL;
  slot->index = index;
  slot->backoff = p->backoff_min;
  if (p->nsockets > 0) {
    slot->fds = herd__calloc((size_t)p->nsockets, sizeof(int));
    slot->own = herd__calloc((size_t)p->nsockets, sizeof(int));
    if (slot->fds == NULL || slot->own == NULL) {
      herd__free(slot->fds);
      herd__free(slot->own);
      herd__free(slot);
      return NULL;
    }
  }
  herd__sockets_slot_init(p, slot);
  return slot;
}

static void slot_free(herd__sup_t* p, herd__sup_slot_t* slot) {
  herd__sockets_slot_close(p, slot);
  herd__free(slot->fds);
  herd__free(slot->own);
  herd__free(slot);
}

void herd__sup_slot_maybe_free(herd__sup_t* p, herd__sup_slot_t* slot) {
  if (slot == NULL || !slot->retiring || slot->procs > 0)
    return;
  slot_free(p, slot);
  herd__sockets_steer(p);
}

static int slots_reserve(herd__sup_t* p, int n) {
  herd__sup_slot_t** ns;
  int cap;
  if (n <= p->cap_slots)
    return 0;
  cap = p->cap_slots * 2 > n ? p->cap_slots * 2 : n;
  if (cap > p->max_workers)
    cap = p->max_workers;
  ns = herd__realloc(p->slots, (size_t)cap * sizeof(*ns));
  if (ns == NULL)
    return UV_ENOMEM;
  p->slots = ns;
  p->cap_slots = cap;
  return 0;
}

static char* dup_or_null(const char* s, int* failed) {
  char* d;
  if (s == NULL)
    return NULL;
  d = herd__strdup(s);
  if (d == NULL)
    *failed = 1;
  return d;
}

static char** dup_vector(const char* const* v, int extra_front, int* failed) {
  size_t n = 0;
  char** out;
  while (v != NULL && v[n] != NULL)
    n++;
  out = herd__calloc(n + (size_t)extra_front + 1, sizeof(*out));
  if (out == NULL) {
    *failed = 1;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    out[extra_front + i] = herd__strdup(v[i]);
    if (out[extra_front + i] == NULL) {
      *failed = 1;
      break;
    }
  }
  return out;
}

static void free_vector(char** v, int extra_front) {
  if (v == NULL)
    return;
  for (size_t i = (size_t)extra_front; v[i] != NULL; i++)
    herd__free(v[i]);
  herd__free(v);
}

/* systemd's rule for LISTEN_FDNAMES entries. */
static int fd_name_valid(const char* s) {
  size_t n = strlen(s);
  if (n == 0 || n > 255)
    return 0;
  for (; *s != '\0'; s++)
    if (*s < ' ' || *s > '~' || *s == ':')
      return 0;
  return 1;
}

/* The supervisor's name as an fd name: each character systemd's rule
 * refuses becomes '_', cut at 255; "herd" for an empty name. */
static char* fd_name_from(const char* name, int* failed) {
  size_t n = strlen(name);
  char* d;
  if (n == 0)
    return dup_or_null("herd", failed);
  if (n > 255)
    n = 255;
  d = herd__malloc(n + 1);
  if (d == NULL) {
    *failed = 1;
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    d[i] = name[i] < ' ' || name[i] > '~' || name[i] == ':' ? '_' : name[i];
  d[n] = '\0';
  return d;
}

static void priv_free(herd__sup_t* p) {
  if (p->slots != NULL) {
    for (int i = 0; i < p->pub->workers; i++)
      if (p->slots[i] != NULL)
        slot_free(p, p->slots[i]);
  }
  herd__sockets_free(p);
  herd__free(p->slots);
  herd__free(p->name);
  herd__free(p->file);
  free_vector(p->argv, 0);
  free_vector(p->envp, 2);
  if (p->fdnames != NULL) {
    for (int i = 0; i < p->nfdnames; i++)
      herd__free(p->fdnames[i]);
    herd__free(p->fdnames);
  }
  herd__free(p->cwd);
  herd__free(p->crashes);
  herd__free(p);
}

static int check_options(const herd_supervisor_options_t* o) {
  if (o->file == NULL || o->file[0] == '\0')
    return UV_EINVAL;
  if (o->protocol != HERD_WORKER_SYSTEMD && o->protocol != HERD_WORKER_CLUSTER)
    return UV_EINVAL;
  if ((int)o->ready < HERD_READY_AUTO || o->ready > HERD_READY_DELAY)
    return UV_EINVAL;
  if (o->ready == HERD_READY_LISTENING && o->protocol != HERD_WORKER_CLUSTER)
    return UV_EINVAL;
  /* Cluster workers have the IPC channel, not a NOTIFY_SOCKET. */
  if (o->ready == HERD_READY_NOTIFY && o->protocol == HERD_WORKER_CLUSTER)
    return UV_EINVAL;
  if (o->policy == HERD_SCHED_RR && o->protocol != HERD_WORKER_CLUSTER)
    return UV_EINVAL;
  if ((int)o->policy < HERD_SCHED_DEFAULT || o->policy > HERD_SCHED_REUSEPORT)
    return UV_EINVAL;
  if (o->socket_count < 0 || o->socket_count > HERD_LISTEN_FDS_MAX ||
      (o->socket_count > 0 && o->sockets == NULL))
    return UV_EINVAL;
  if (o->workers < 0 || o->max_workers < 0 || o->reload_batch < 0 ||
      o->max_restarts < HERD_RESTARTS_NONE)
    return UV_EINVAL;
  if (o->stop_signal < 0 || o->stop_signal >= NSIG)
    return UV_EINVAL;
  for (int i = 0; i < o->socket_count; i++)
    if (o->sockets[i].name != NULL && !fd_name_valid(o->sockets[i].name))
      return UV_EINVAL;
  return 0;
}

int herd_supervisor_init(uv_loop_t* loop, herd_supervisor_t* s,
                         const herd_supervisor_options_t* o,
                         herd_supervisor_event_cb event_cb,
                         herd_supervisor_message_cb message_cb) {
  herd__sup_t* p;
  const char* base;
  int failed = 0, workers, r;
  void* data;

  if (loop == NULL || s == NULL || o == NULL)
    return UV_EINVAL;
  r = check_options(o);
  if (r != 0)
    return r;
  workers = o->workers > 0 ? o->workers : (int)uv_available_parallelism();
  if (o->max_workers > 0 && o->workers > o->max_workers)
    return UV_EINVAL;
  if (o->workers == 0 && o->max_workers > 0 && workers > o->max_workers)
    workers = o->max_workers;
  if (workers > HERD_SUPERVISOR_MAX_WORKERS && o->max_workers == 0)
    return UV_EINVAL;

  p = herd__calloc(1, sizeof(*p));
  if (p == NULL)
    return UV_ENOMEM;
  data = s->data;
  memset(s, 0, sizeof(*s));
  s->data = data;
  s->loop = loop;
  s->priv = p;
  p->pub = s;
  p->event_cb = event_cb;
  p->message_cb = message_cb;
  p->protocol = o->protocol;
  p->policy = o->policy;
  if (p->policy == HERD_SCHED_DEFAULT) {
    p->policy = herd_cluster_default_policy();
    if (p->policy == HERD_SCHED_RR && o->protocol != HERD_WORKER_CLUSTER)
      p->policy = HERD_SCHED_REUSEPORT;
  }
  p->max_workers =
      o->max_workers > 0 ? o->max_workers : HERD_SUPERVISOR_MAX_WORKERS;
  p->ready = o->ready;
  p->ready_delay =
      o->ready_delay ? o->ready_delay : HERD_SUPERVISOR_READY_DELAY;
  p->ready_timeout =
      o->ready_timeout ? o->ready_timeout : HERD_SUPERVISOR_READY_TIMEOUT;
  p->graceful_timeout = o->graceful_timeout ? o->graceful_timeout
                                            : HERD_SUPERVISOR_GRACEFUL_TIMEOUT;
  p->stop_signal = o->stop_signal;
  if (p->stop_signal == 0 && o->protocol == HERD_WORKER_SYSTEMD)
    p->stop_signal = SIGTERM;
  p->min_uptime = o->min_uptime ? o->min_uptime : HERD_SUPERVISOR_MIN_UPTIME;
  p->backoff_min =
      o->backoff_min ? o->backoff_min : HERD_SUPERVISOR_BACKOFF_MIN;
  p->backoff_max =
      o->backoff_max ? o->backoff_max : HERD_SUPERVISOR_BACKOFF_MAX;
  if (p->backoff_max < p->backoff_min)
    p->backoff_max = p->backoff_min;
  p->max_restarts =
      o->max_restarts ? o->max_restarts : HERD_SUPERVISOR_MAX_RESTARTS;
  p->restart_window =
      o->restart_window ? o->restart_window : HERD_SUPERVISOR_RESTART_WINDOW;
  p->reload_batch = o->reload_batch ? o->reload_batch : 1;
  p->out = o->out;
  p->err = o->err;
  p->notifier = o->notifier;
  p->flags = o->flags;
  p->initial_workers = workers;
  p->sentinel_fd = -1;
  p->sentinel_pidfd = -1;

  base = strrchr(o->file, '/');
  base = base != NULL ? base + 1 : o->file;
  p->name = dup_or_null(o->name != NULL ? o->name : base, &failed);
  p->file = dup_or_null(o->file, &failed);
  p->cwd = dup_or_null(o->cwd, &failed);
  p->argv = dup_vector(o->args, 0, &failed);
  p->envp = dup_vector(o->env, 2, &failed);
  if (!failed && o->socket_count > 0) {
    p->fdnames = herd__calloc((size_t)o->socket_count, sizeof(char*));
    if (p->fdnames == NULL)
      failed = 1;
    else
      p->nfdnames = o->socket_count;
    for (int i = 0; !failed && i < o->socket_count; i++) {
      const char* n = o->sockets[i].name;
      p->fdnames[i] =
          n != NULL ? dup_or_null(n, &failed) : fd_name_from(p->name, &failed);
    }
  }
  if (failed) {
    r = UV_ENOMEM;
    goto fail;
  }
  r = herd__sockets_init(p, o);
  if (r != 0)
    goto fail;
  r = slots_reserve(p, workers);
  if (r != 0)
    goto fail;
  for (int i = 0; i < workers; i++) {
    p->slots[i] = slot_new(p, i);
    if (p->slots[i] == NULL) {
      r = UV_ENOMEM;
      goto fail;
    }
    s->workers = i + 1;
  }
  r = uv_timer_init(loop, &p->timer);
  if (r != 0)
    goto fail;
  p->timer.data = p;
  p->timer_init = 1;
  p->handles = 1;
  return 0;

fail:
  priv_free(p);
  memset(s, 0, sizeof(*s));
  s->data = data;
  return r;
}

static void subreaper_closed(herd_subreaper_t* sr) {
  herd__sup_handle_closed(sr->data);
}

static void on_orphan(herd_subreaper_t* sr, pid_t pid, int64_t status,
                      int sig) {
  herd__sup_t* p = sr->data;
  p->pub->orphans++;
  p->orphan_pid = pid;
  herd__sup_emit(p, HERD_SUPERVISOR_ORPHAN, -1, NULL, 0, 0,
                 "reaped orphan %d (%s %lld)", (int)pid,
                 sig ? "signal" : "status", (long long)(sig ? sig : status));
}

int herd_supervisor_start(herd_supervisor_t* s) {
  herd__sup_t* p = s->priv;
  int r;
  if (p->closing)
    return UV_ECANCELED;
  if (p->started)
    return UV_EALREADY;
  if (p->flags & HERD_SUPERVISOR_SUBREAPER) {
    p->subreaper.data = p;
    r = herd_subreaper_start(s->loop, &p->subreaper, on_orphan);
    if (r != 0)
      return r;
    p->subreaper.data = p;
    p->subreaper_on = 1;
    p->handles++;
  }
  if (p->flags & HERD_SUPERVISOR_SENTINEL) {
    r = herd__sentinel_start(p);
    if (r != 0) {
      if (p->subreaper_on) {
        /* Its handle is in our memory: the close waits for it. */
        p->subreaper_on = 0;
        herd_subreaper_close(&p->subreaper, subreaper_closed);
      }
      return r;
    }
  }
  if (p->protocol == HERD_WORKER_CLUSTER) {
    r = herd__sup_cluster_start(p);
    if (r != 0) {
      herd__sup_cluster_close(p);
      if (p->sentinel_fd >= 0)
        herd__sentinel_close(p);
      if (p->subreaper_on) {
        p->subreaper_on = 0;
        herd_subreaper_close(&p->subreaper, subreaper_closed);
      }
      return r;
    }
  }
  /* The workers start from the loop: no callback runs inside a call. */
  p->started = 1;
  for (int i = 0; i < s->workers; i++) {
    p->slots[i]->restart_due = 1;
    p->slots[i]->restart_at = uv_now(s->loop);
  }
  herd__sup_arm(p);
  return 0;
}

int herd_supervisor_reload(herd_supervisor_t* s) {
  herd__sup_t* p = s->priv;
  if (!p->started || p->closing)
    return UV_EINVAL;
  if (s->stopping)
    return UV_ECANCELED;
  if (s->reloading) {
    p->reload_pending = 1;
    return 0;
  }
  /* It begins from the loop. */
  s->reloading = 1;
  p->reload_due = 1;
  herd__sup_arm(p);
  return 0;
}

static void retire(herd__sup_t* p, herd__sup_slot_t* slot) {
  slot->retiring = 1;
  slot->restart_due = 0;
  if (slot->next != NULL) {
    herd__sup_proc_t* succ = slot->next;
    herd__proc_detach(succ);
    herd__proc_stop(succ, 0);
    /* The reload no longer waits for it. */
    if (p->pub->reloading && p->reload_inflight > 0)
      p->reload_inflight--;
  }
  if (slot->cur != NULL && herd__sockets_slot_owns(p, slot) &&
      slot->cur->state != HERD__PROC_EXITED) {
    /* Steered around first, then drained: the stop comes from the timer
     * once the queue is empty. */
    uint64_t now = uv_now(p->pub->loop);
    slot->draining = 1;
    slot->drain_started = now;
    slot->drain_deadline = p->graceful_timeout == HERD_SUPERVISOR_NO_GRACE
                               ? now
                               : now + p->graceful_timeout;
  } else if (slot->cur != NULL) {
    herd__sup_proc_t* cur = slot->cur;
    herd__proc_detach(cur);
    herd__proc_stop(cur, 0);
  }
}

int herd_supervisor_scale(herd_supervisor_t* s, int delta) {
  herd__sup_t* p = s->priv;
  int want = s->workers + delta, r;
  if (!p->started || p->closing)
    return UV_EINVAL;
  if (s->stopping)
    return UV_ECANCELED;
  if (want < 1 || want > p->max_workers)
    return UV_EINVAL;
  if (delta > 0) {
    r = slots_reserve(p, want);
    if (r != 0)
      return r;
    while (s->workers < want) {
      herd__sup_slot_t* slot = slot_new(p, s->workers);
      if (slot == NULL && s->workers == want - delta)
        return UV_ENOMEM;
      if (slot == NULL)
        break;
      p->slots[s->workers++] = slot;
      slot->added = 1;
      /* Its worker starts from the loop. */
      slot->restart_due = 1;
      slot->restart_at = uv_now(s->loop);
    }
  } else {
    while (s->workers > want) {
      herd__sup_slot_t* slot = p->slots[--s->workers];
      p->slots[s->workers] = NULL;
      retire(p, slot);
      herd__sup_slot_maybe_free(p, slot);
    }
    if (s->reloading && p->reload_next > s->workers)
      p->reload_next = s->workers;
  }
  herd__sockets_steer(p);
  p->scaled_due = 1;
  p->scaled_report = 1;
  herd__sup_arm(p);
  return s->workers;
}

void herd__sup_scale_back(herd__sup_t* p, herd__sup_slot_t* slot,
                          const char* why) {
  herd_supervisor_t* s = p->pub;
  int to = slot->index;
  /* Slots are numbered 0 .. workers - 1 (the slot is the worker's
   * HERD_WORKER_ID): the ones added above it go too. */
  while (s->workers > to) {
    herd__sup_slot_t* top = p->slots[--s->workers];
    p->slots[s->workers] = NULL;
    retire(p, top);
    herd__sup_slot_maybe_free(p, top);
  }
  if (s->reloading && p->reload_next > s->workers)
    p->reload_next = s->workers;
  herd__sockets_steer(p);
  p->scaled_due = 1;
  p->scaled_report = 1;
  herd__sup_emit(p, HERD_SUPERVISOR_SCALE_FAILED, to, NULL, 0, 0,
                 "%s; the pool keeps %d worker%s", why, s->workers,
                 s->workers == 1 ? "" : "s");
  herd__sup_arm(p);
}

int herd_supervisor_signal(herd_supervisor_t* s, int signum) {
  herd__sup_t* p = s->priv;
  int n = 0;
  if (signum <= 0 || signum >= NSIG)
    return UV_EINVAL;
  for (herd__sup_proc_t* proc = p->procs; proc != NULL; proc = proc->next) {
    herd_child_t* child = herd__proc_child(proc);
    /* Only to workers that have been ready: one still starting may not
     * have its handler yet, and the signal's default action would kill it
     * (einhorn and unicorn pass signals on to acknowledged workers only). */
    if (proc->state != HERD__PROC_EXITED &&
        (proc->flags & HERD__PROC_WAS_READY) && child != NULL &&
        herd_child_kill(child, signum) == 0)
      n++;
  }
  return n;
}

int herd_supervisor_stop(herd_supervisor_t* s, int now, herd_supervisor_cb cb) {
  herd__sup_t* p = s->priv;
  if (!p->started || p->closing)
    return UV_EINVAL;
  if (p->stop_cb == NULL && !p->stopped_reported)
    p->stop_cb = cb;
  sup_stop(p, now);
  return 0;
}

int herd_supervisor_slot(herd_supervisor_t* s, int index,
                         herd_slot_info_t* info) {
  herd__sup_t* p = s->priv;
  herd__sup_slot_t* slot;
  herd__sup_proc_t* cur;
  if (index < 0 || index >= s->workers || info == NULL)
    return UV_EINVAL;
  slot = p->slots[index];
  cur = slot->cur;
  memset(info, 0, sizeof(*info));
  info->slot = index;
  info->restarts = slot->restarts;
  info->backoff = slot->backoff;
  if (slot->next != NULL)
    info->successor_pid = slot->next->pid;
  if (cur == NULL)
    return 0;
  info->pid = cur->pid;
  info->started = cur->started;
  info->ready = cur->ready_at;
  info->status = cur->status;
  switch (cur->state) {
    case HERD__PROC_STARTING:
      info->state = HERD_SLOT_STARTING;
      break;
    case HERD__PROC_READY:
      info->state = HERD_SLOT_READY;
      break;
    default:
      info->state = HERD_SLOT_STOPPING;
      break;
  }
  return 0;
}

void herd__sup_handle_closed(herd__sup_t* p) {
  p->handles--;
  close_step(p);
}

static void timer_closed(uv_handle_t* h) {
  herd__sup_handle_closed(h->data);
}

void herd__sup_close_step(herd__sup_t* p) {
  close_step(p);
}

/* The close proceeds as things end: first every process (alive ones were
 * killed), then what each left open, then the sentinel, the subreaper and
 * the timer; the memory goes when all of them have called back. */
static void close_step(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  herd_supervisor_cb cb;
  if (!p->closing || p->alive > 0)
    return;
  for (herd__sup_proc_t* proc = p->procs; proc != NULL; proc = proc->next)
    herd__proc_abandon(proc);
  herd__sup_cluster_close(p);
  if (p->sentinel_fd >= 0 || p->sentinel_polling)
    herd__sentinel_close(p);
  if (p->subreaper_on) {
    p->subreaper_on = 0;
    herd_subreaper_close(&p->subreaper, subreaper_closed);
  }
  if (p->timer_init && !uv_is_closing((uv_handle_t*)&p->timer))
    uv_close((uv_handle_t*)&p->timer, timer_closed);
  if (p->handles > 0 || p->procs != NULL)
    return;
  cb = p->close_cb;
  priv_free(p);
  s->priv = NULL;
  if (cb != NULL)
    cb(s);
}

void herd_supervisor_close(herd_supervisor_t* s, herd_supervisor_cb close_cb) {
  herd__sup_t* p = s->priv;
  if (p == NULL || p->closing)
    return;
  p->closing = 1;
  p->close_cb = close_cb;
  s->stopping = 1;
  for (herd__sup_proc_t* proc = p->procs; proc != NULL; proc = proc->next)
    if (proc->state != HERD__PROC_EXITED &&
        !(proc->flags & HERD__PROC_ASKED && proc->state == HERD__PROC_STOPPING))
      herd__proc_stop(proc, 1);
  close_step(p);
}
