/* One process of the supervisor's pool: its start (herd_spawn() with the
 * slot's sockets, a notify socket and log pipes), its readiness, its stop
 * with escalation to its process group, and its end. What follows an end
 * (a restart, a failed reload) is decided in supervisor_restart.c and
 * supervisor_reload.c. */
#include "supervisor-int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void proc_timer_cb(uv_timer_t* t);

static herd__sup_t* priv_of(herd__sup_proc_t* proc) {
  return proc->sup->priv;
}

/* Drops one of the references the process's memory waits for. */
static void proc_release(herd__sup_proc_t* proc) {
  herd__sup_t* p = priv_of(proc);
  herd__sup_slot_t* slot = proc->slot;
  int linked = proc->linked;
  if (--proc->pending > 0)
    return;
  if (linked) {
    if (proc->prev != NULL)
      proc->prev->next = proc->next;
    else
      p->procs = proc->next;
    if (proc->next != NULL)
      proc->next->prev = proc->prev;
  }
  herd__free(proc->status);
  herd__free(proc);
  if (slot != NULL) {
    slot->procs--;
    herd__sup_slot_maybe_free(p, slot);
  }
  if (linked)
    herd__sup_close_step(p);
}

static void notify_closed(herd_sd_notify_socket_t* ns) {
  proc_release(ns->data);
}

static void pipe_closed(herd_log_pipe_t* pipe) {
  herd__sup_proc_t* proc = pipe->data;
  if (pipe == &proc->out)
    proc->out_open = 0;
  else
    proc->err_open = 0;
  proc_release(proc);
}

static void timer_closed(uv_handle_t* h) {
  proc_release(h->data);
}

static void child_closed(herd_child_t* child) {
  proc_release(child->data);
}

/* Whether the process becomes ready by staying alive ready_delay ms. */
static int uses_delay(herd__sup_t* p, const herd__sup_proc_t* proc) {
  if (p->ready == HERD_READY_DELAY)
    return 1;
  /* AUTO for cluster workers is Node's `listening`. */
  if (p->protocol == HERD_WORKER_CLUSTER)
    return 0;
  return p->ready == HERD_READY_AUTO && !(proc->flags & HERD__PROC_SPOKE);
}

/* Arms the process's timer for its next deadline. */
static void proc_arm(herd__sup_proc_t* proc) {
  herd__sup_t* p = priv_of(proc);
  uint64_t now = uv_now(proc->sup->loop), due = 0;
  if (uv_is_closing((uv_handle_t*)&proc->timer))
    return;
  if (proc->state == HERD__PROC_STARTING) {
    due = proc->ready_deadline;
    if (uses_delay(p, proc) && proc->delay_at < due)
      due = proc->delay_at;
  } else if (proc->state == HERD__PROC_STOPPING &&
             !(proc->flags & HERD__PROC_KILLED) && proc->kill_at != 0) {
    due = proc->kill_at;
  }
  if (due == 0)
    uv_timer_stop(&proc->timer);
  else
    uv_timer_start(&proc->timer, proc_timer_cb, due > now ? due - now : 0, 0);
}

void herd__proc_ready(herd__sup_proc_t* proc) {
  herd__sup_t* p = priv_of(proc);
  herd__sup_slot_t* slot = proc->slot;
  if (proc->state != HERD__PROC_STARTING)
    return;
  proc->state = HERD__PROC_READY;
  proc->ready_at = uv_now(proc->sup->loop);
  proc->flags |= HERD__PROC_WAS_READY;
  p->ever_ready = 1;
  if (slot != NULL && slot->added) {
    /* The scale-up holds for this slot. */
    slot->added = 0;
    herd__sup_arm(p);
  }
  proc_arm(proc);
  herd__sup_emit(p, HERD_SUPERVISOR_READY, -1, proc, 0, 0, "%s ready",
                 herd__sup_who(p, proc));
  if (p->closing || proc->sup->stopping)
    return;
  if (slot != NULL && slot->next == proc)
    herd__reload_took_over(p, proc);
  herd__sockets_steer(p);
  if (!p->closing)
    herd__sup_update(p);
}

/* A cluster worker said it listens: ready at its first server, unless
 * another mode decides or it is a successor (ready when it listens on
 * every server of its predecessor: herd__proc_replaced()). */
void herd__proc_listening(herd__sup_proc_t* proc) {
  herd__sup_t* p = priv_of(proc);
  if ((p->ready == HERD_READY_AUTO || p->ready == HERD_READY_LISTENING) &&
      !(proc->flags & HERD__PROC_SUCCESSOR))
    herd__proc_ready(proc);
}

/* The end of a cluster worker's replacement (herd_worker_replace()). */
void herd__proc_replaced(herd__sup_proc_t* proc, int status) {
  herd__sup_t* p = priv_of(proc);
  herd__sup_slot_t* slot = proc->slot;
  if (slot == NULL || slot->next != proc || proc->state != HERD__PROC_STARTING)
    return; /* already failed, or not ours any more */
  if (status == 0 && p->ready != HERD_READY_DELAY) {
    herd__proc_ready(proc);
    return;
  }
  if (status == 0)
    return; /* the delay decides */
  herd__proc_detach(proc);
  herd__proc_stop(proc, 0);
  herd__reload_failed(p, proc, status);
}

/* ready_timeout passed: a failure, never "ready". */
static void proc_not_ready(herd__sup_proc_t* proc) {
  herd__sup_t* p = priv_of(proc);
  herd__sup_slot_t* slot = proc->slot;
  int successor = slot != NULL && slot->next == proc;
  proc->flags |= HERD__PROC_NOT_READY;
  herd__sup_emit(p, HERD_SUPERVISOR_NOT_READY, -1, proc, UV_ETIMEDOUT, 0,
                 "%s not ready within %llu ms: stopping it",
                 herd__sup_who(p, proc),
                 (unsigned long long)(proc->ready_deadline - proc->started));
  if (successor) {
    /* The old worker keeps the slot; this one goes. */
    herd__proc_detach(proc);
    herd__proc_stop(proc, 0);
    herd__reload_failed(p, proc, UV_ETIMEDOUT);
    return;
  }
  /* It stays the slot's process while it stops; its exit counts as a
   * crash. */
  herd__proc_stop(proc, 0);
}

static void proc_timer_cb(uv_timer_t* t) {
  herd__sup_proc_t* proc = t->data;
  herd__sup_t* p = priv_of(proc);
  uint64_t now = uv_now(proc->sup->loop);
  if (proc->state == HERD__PROC_STARTING) {
    if (uses_delay(p, proc) && now >= proc->delay_at)
      herd__proc_ready(proc);
    else if (now >= proc->ready_deadline)
      proc_not_ready(proc);
  } else if (proc->state == HERD__PROC_STOPPING && now >= proc->kill_at &&
             !(proc->flags & HERD__PROC_KILLED)) {
    herd__proc_kill(proc);
    herd__sup_emit(p, HERD_SUPERVISOR_KILLED, -1, proc, 0, 0,
                   "%s did not stop within %llu ms: SIGKILL to its process "
                   "group",
                   herd__sup_who(p, proc),
                   (unsigned long long)p->graceful_timeout);
  }
  proc_arm(proc);
}

/* A datagram on the worker's NOTIFY_SOCKET. Only the kernel's word on the
 * sender counts: its pid must be the worker's or one of the worker's
 * process group. */
static void on_notify(herd_sd_notify_socket_t* ns,
                      const herd_sd_notify_msg_t* msg) {
  herd__sup_proc_t* proc = ns->data;
  herd__sup_t* p = priv_of(proc);
  if (proc->state == HERD__PROC_EXITED || proc->pid <= 0)
    return;
  if (msg->pid != proc->pid && getpgid(msg->pid) != proc->pid)
    return;
  if (msg->fields & HERD_SD_STATUS) {
    char* st = herd__malloc(msg->status_len + 1);
    if (st != NULL) {
      memcpy(st, msg->status, msg->status_len);
      st[msg->status_len] = '\0';
      herd__free(proc->status);
      proc->status = st;
    }
  }
  if (proc->state != HERD__PROC_STARTING)
    return;
  proc->flags |= HERD__PROC_SPOKE;
  if ((msg->fields & HERD_SD_EXTEND_TIMEOUT) && msg->extend_timeout_usec > 0) {
    uint64_t until =
        uv_now(proc->sup->loop) + msg->extend_timeout_usec / 1000 + 1;
    if (until > proc->ready_deadline)
      proc->ready_deadline = until;
  }
  if ((msg->fields & HERD_SD_READY) && p->ready != HERD_READY_DELAY)
    herd__proc_ready(proc);
  else
    proc_arm(proc);
}

/* The process ended (exit_cb) or never started (error_cb). */
void herd__proc_ended(herd__sup_proc_t* proc, int64_t status, int sig) {
  herd__sup_t* p = priv_of(proc);
  herd_supervisor_t* s = proc->sup;
  herd__sup_slot_t* slot = proc->slot;
  int was_cur = slot != NULL && slot->cur == proc;
  int was_next = slot != NULL && slot->next == proc;

  proc->state = HERD__PROC_EXITED;
  proc->exit_status = status;
  proc->term_signal = sig;
  p->alive--;
  uv_close((uv_handle_t*)&proc->timer, timer_closed);
  if (proc->pid > 0)
    herd__sentinel_remove(p, proc->pid);
  if (proc->has_notify) {
    proc->has_notify = 0;
    herd_sd_notify_socket_close(&proc->notify, notify_closed);
  }
  herd__proc_detach(proc);
  if (p->closing) {
    proc_release(proc);
    return;
  }
  herd__sup_emit(p, HERD_SUPERVISOR_EXITED, -1, proc, 0, 0, "%s %s",
                 herd__sup_who(p, proc), herd__sup_how(proc));
  if (!p->closing && !s->stopping) {
    if (was_next) {
      herd__reload_failed(
          p, proc, proc->start_error ? proc->start_error : HERD_EWORKERDIED);
      if (!p->closing && !s->stopping && slot->cur == NULL && !slot->retiring &&
          !slot->restart_due)
        herd__restart_schedule(p, slot, p->backoff_min);
    } else if (was_cur && (!(proc->flags & HERD__PROC_ASKED) ||
                           (proc->flags & HERD__PROC_NOT_READY))) {
      herd__restart_crashed(p, slot, proc, proc->start_error);
    }
  }
  if (!p->closing) {
    herd__sockets_steer(p);
    herd__sup_update(p);
    herd__sup_check_stopped(p);
  }
  proc_release(proc);
}

static void child_exited(herd_child_t* child, int64_t status, int sig) {
  herd__proc_ended(child->data, status, sig);
}

static void child_failed(herd_child_t* child, int err) {
  herd__sup_proc_t* proc = child->data;
  proc->start_error = err;
  herd__proc_ended(proc, -1, 0);
}

static void open_log(herd__sup_t* p, herd__sup_proc_t* proc, herd_log_t* log,
                     herd_log_pipe_t* pipe, int fd, int* open) {
  char prefix[160], cont[160];
  snprintf(prefix, sizeof(prefix), "%s.%d[%d] ", p->name, proc->slot_index,
           (int)proc->pid);
  snprintf(cont, sizeof(cont), "%s.%d[%d]+ ", p->name, proc->slot_index,
           (int)proc->pid);
  pipe->data = proc;
  /* On failure herd_log_pipe_open() closes fd: the worker's lines on it
   * are lost (it gets EPIPE), nothing else. */
  if (herd_log_pipe_open(log, pipe, fd, prefix, cont, pipe_closed) == 0) {
    *open = 1;
    proc->pending++;
  }
}

/* herd_spawn() of a worker that takes its sockets as systemd passes them;
 * out and err are the write ends of its log pipes, or -1. */
static int spawn_systemd(herd__sup_t* p, herd__sup_proc_t* proc,
                         herd__sup_slot_t* slot, int out, int err) {
  herd_spawn_options_t so;
  herd_stdio_t stdio[3];
  char id[32], notify[32 + HERD_SD_ADDRESS_MAX];
  int r;

  snprintf(id, sizeof(id), "HERD_WORKER_ID=%d", slot->index);
  snprintf(notify, sizeof(notify), "NOTIFY_SOCKET=%s", proc->notify.address);
  p->envp[0] = id;
  p->envp[1] = notify;
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = out >= 0 ? HERD_STDIO_FD : HERD_STDIO_INHERIT;
  stdio[1].fd = out >= 0 ? out : 1;
  stdio[2].kind = err >= 0 ? HERD_STDIO_FD : HERD_STDIO_INHERIT;
  stdio[2].fd = err >= 0 ? err : 2;
  memset(&so, 0, sizeof(so));
  so.cwd = p->cwd;
  so.env = (const char* const*)p->envp;
  so.stdio = stdio;
  so.stdio_count = 3;
  /* What a worker leaves of its group dies with it, before it is reaped. */
  so.flags = HERD_SPAWN_PROCESS_GROUP | HERD_SPAWN_KILL_GROUP_ON_EXIT |
             HERD_SPAWN_ENV_EXTEND;
  so.parent_death_signal = SIGKILL;
  if (p->nsockets > 0) {
    so.listen_fds = slot->fds;
    so.listen_fds_count = p->nsockets;
    so.listen_fd_names = (const char* const*)p->fdnames;
  }
  so.exit_cb = child_exited;
  so.error_cb = child_failed;
  so.close_cb = child_closed;
  proc->child.data = proc;
  r = herd_spawn(p->pub->loop, &proc->child, p->file,
                 (const char* const*)p->argv, &so);
  p->envp[0] = NULL;
  p->envp[1] = NULL;
  return r;
}

int herd__proc_start(herd__sup_t* p, herd__sup_slot_t* slot, int successor) {
  herd_supervisor_t* s = p->pub;
  herd__sup_proc_t* proc;
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  uint64_t now = uv_now(s->loop);
  int r;

  proc = herd__calloc(1, sizeof(*proc));
  if (proc == NULL)
    return UV_ENOMEM;
  proc->sup = s;
  proc->slot_index = slot->index;
  proc->gen = p->gen;
  proc->started = now;
  proc->state = HERD__PROC_STARTING;
  if (successor)
    proc->flags |= HERD__PROC_SUCCESSOR;
  if (p->protocol == HERD_WORKER_SYSTEMD) {
    r = herd_sd_notify_socket_init(s->loop, &proc->notify, NULL, on_notify);
    if (r != 0) {
      herd__free(proc);
      return r;
    }
    proc->notify.data = proc;
    proc->has_notify = 1;
    proc->pending = 1; /* the notify socket */
  }
  if ((p->out != NULL && pipe2(out, O_CLOEXEC) != 0) ||
      (p->err != NULL && pipe2(err, O_CLOEXEC) != 0)) {
    r = -errno;
    goto fail;
  }
  if (p->protocol == HERD_WORKER_CLUSTER)
    r = herd__sup_cluster_spawn(p, proc, slot, successor, out[1], err[1]);
  else
    r = spawn_systemd(p, proc, slot, out[1], err[1]);
  if (out[1] >= 0)
    close(out[1]);
  if (err[1] >= 0)
    close(err[1]);
  out[1] = err[1] = -1;
  if (r != 0)
    goto fail;

  /* From here the process exists, or its start error comes from the loop
   * (error_cb) as its end. */
  uv_timer_init(s->loop, &proc->timer);
  proc->timer.data = proc;
  /* Itself (until its end), the timer, and the child's close (the cluster
   * closes a worker's child itself). */
  proc->pending += p->protocol == HERD_WORKER_CLUSTER ? 2 : 3;
  proc->pid =
      p->protocol == HERD_WORKER_CLUSTER ? proc->worker->pid : proc->child.pid;
  proc->slot = slot;
  slot->procs++;
  proc->linked = 1;
  proc->next = p->procs;
  if (p->procs != NULL)
    p->procs->prev = proc;
  p->procs = proc;
  p->alive++;
  if (successor)
    slot->next = proc;
  else
    slot->cur = proc;
  if (proc->pid > 0) {
    if (out[0] >= 0)
      open_log(p, proc, p->out, &proc->out, out[0], &proc->out_open);
    if (err[0] >= 0)
      open_log(p, proc, p->err, &proc->err, err[0], &proc->err_open);
    out[0] = err[0] = -1;
    herd__sentinel_add(p, proc->pid);
  }
  if (out[0] >= 0)
    close(out[0]);
  if (err[0] >= 0)
    close(err[0]);
  proc->ready_deadline = now + p->ready_timeout;
  proc->delay_at = now + p->ready_delay;
  proc_arm(proc);
  if (proc->pid > 0)
    herd__sup_emit(p, HERD_SUPERVISOR_STARTED, -1, proc, 0, 0, "%s started%s",
                   herd__sup_who(p, proc), successor ? " (reload)" : "");
  return 0;

fail:
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0)
      close(out[i]);
    if (err[i] >= 0)
      close(err[i]);
  }
  /* The process is in no list. With a notify socket the memory goes with
   * its close callback. */
  if (proc->has_notify) {
    proc->has_notify = 0;
    herd_sd_notify_socket_close(&proc->notify, notify_closed);
  } else {
    herd__free(proc);
  }
  return r;
}

void herd__proc_detach(herd__sup_proc_t* proc) {
  herd__sup_slot_t* slot = proc->slot;
  if (slot == NULL)
    return;
  if (slot->cur == proc)
    slot->cur = NULL;
  if (slot->next == proc)
    slot->next = NULL;
}

herd_child_t* herd__proc_child(herd__sup_proc_t* proc) {
  herd__sup_t* p = priv_of(proc);
  if (p->protocol == HERD_WORKER_CLUSTER)
    return proc->worker != NULL ? &proc->worker->child : NULL;
  return &proc->child;
}

void herd__proc_kill(herd__sup_proc_t* proc) {
  herd_child_t* child = herd__proc_child(proc);
  if (proc->state == HERD__PROC_EXITED || proc->pid <= 0 || child == NULL ||
      (proc->flags & HERD__PROC_KILLED))
    return;
  proc->flags |= HERD__PROC_KILLED;
  proc->sup->kills++;
  /* The worker is not reaped before its exit callback, which has not run:
   * its pid is still its group's id. */
  herd_child_kill_group(child, SIGKILL);
}

void herd__proc_stop(herd__sup_proc_t* proc, int now) {
  herd__sup_t* p = priv_of(proc);
  if (proc->state == HERD__PROC_EXITED)
    return;
  if (!(proc->flags & HERD__PROC_ASKED)) {
    proc->flags |= HERD__PROC_ASKED;
    proc->state = HERD__PROC_STOPPING;
    if (!now && p->graceful_timeout != HERD_SUPERVISOR_NO_GRACE) {
      if (p->protocol == HERD_WORKER_CLUSTER)
        herd__sup_cluster_stop(p, proc);
      else if (proc->pid > 0 && p->stop_signal > 0)
        herd_child_kill(&proc->child, p->stop_signal);
      proc->kill_at = uv_now(proc->sup->loop) + p->graceful_timeout;
      proc_arm(proc);
      return;
    }
  } else if (!now) {
    return;
  }
  herd__proc_kill(proc);
  proc_arm(proc);
}

void herd__proc_abandon(herd__sup_proc_t* proc) {
  if (proc->out_open)
    herd_log_pipe_close(&proc->out);
  if (proc->err_open)
    herd_log_pipe_close(&proc->err);
}
