/* Rolling reload: each slot's worker is replaced by a fresh process of the
 * program, started first; the old one gets its stop signal only when the
 * new one is ready. A successor that fails ends the reload and leaves the
 * slots not replaced yet untouched. */
#include "supervisor-int.h"

#include <stdio.h>

static void reload_end(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  s->reloading = 0;
  s->reloads++;
  p->reload_inflight = 0;
  if (p->notifier != NULL && p->notifier->enabled)
    herd__sup_status(p, 1);
}

static void reload_again(herd__sup_t* p) {
  if (p->reload_pending && !p->closing && !p->pub->stopping) {
    p->reload_pending = 0;
    herd__reload_begin(p);
  }
}

void herd__reload_begin(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  s->reloading = 1;
  p->gen++;
  p->reload_next = 0;
  p->reload_inflight = 0;
  if (p->notifier != NULL && p->notifier->enabled)
    herd_sd_notify_reloading(p->notifier, "reloading");
  herd__sup_emit(p, HERD_SUPERVISOR_RELOAD_STARTED, -1, NULL, 0, 0,
                 "reloading: replacing %d worker%s, %d at a time", s->workers,
                 s->workers == 1 ? "" : "s", p->reload_batch);
  if (!p->closing)
    herd__reload_step(p);
}

void herd__reload_step(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  while (s->reloading && !s->stopping && !p->closing &&
         p->reload_inflight < p->reload_batch && p->reload_next < s->workers) {
    herd__sup_slot_t* slot = p->slots[p->reload_next++];
    int r;
    /* An empty slot restarts with the new program anyway; a slot whose
     * process was started since the reload began runs it already. */
    if (slot->cur == NULL || slot->cur->gen == p->gen || slot->next != NULL)
      continue;
    r = herd__proc_start(p, slot, 1);
    if (r != 0) {
      herd__reload_failed(p, NULL, r);
      return;
    }
    p->reload_inflight++;
  }
  if (s->reloading && !s->stopping && !p->closing && p->reload_inflight == 0 &&
      p->reload_next >= s->workers) {
    reload_end(p);
    herd__sup_emit(p, HERD_SUPERVISOR_RELOAD_DONE, -1, NULL, 0, 0,
                   "reload done: %d worker%s", s->workers,
                   s->workers == 1 ? "" : "s");
    reload_again(p);
  }
}

void herd__reload_took_over(herd__sup_t* p, herd__sup_proc_t* proc) {
  herd__sup_slot_t* slot = proc->slot;
  herd__sup_proc_t* old = slot->cur;
  slot->next = NULL;
  slot->cur = proc;
  /* A crash restart of the slot was made moot by the successor. */
  slot->restart_due = 0;
  if (old != NULL)
    herd__proc_stop(old, 0);
  if (p->reload_inflight > 0)
    p->reload_inflight--;
  herd__reload_step(p);
}

void herd__reload_failed(herd__sup_t* p, const herd__sup_proc_t* proc,
                         int error) {
  herd_supervisor_t* s = p->pub;
  char who[160];
  if (!s->reloading)
    return;
  /* The other successors still starting go too: their slots keep their
   * old workers. */
  for (int i = 0; i < s->workers; i++) {
    herd__sup_slot_t* slot = p->slots[i];
    herd__sup_proc_t* succ = slot->next;
    if (succ != NULL && succ != proc) {
      herd__proc_detach(succ);
      herd__proc_stop(succ, 0);
    }
  }
  reload_end(p);
  s->reload_failures++;
  if (proc != NULL)
    snprintf(who, sizeof(who), "%s %s", herd__sup_who(p, proc),
             proc->state == HERD__PROC_EXITED
                 ? herd__sup_how(proc)
                 : (error == UV_ETIMEDOUT ? "was not ready in time"
                                          : herd_strerror(error)));
  else
    snprintf(who, sizeof(who), "a new worker could not start: %s",
             herd_strerror(error));
  if (p->notifier != NULL && p->notifier->enabled)
    herd_sd_notifyf(p->notifier, "STATUS=reload failed: %s", who);
  herd__sup_emit(p, HERD_SUPERVISOR_RELOAD_FAILED, -1, proc, error, 0,
                 "reload failed: %s; the old workers keep serving", who);
  reload_again(p);
}

void herd__reload_abandon(herd__sup_t* p) {
  p->pub->reloading = 0;
  p->reload_due = 0;
  p->reload_pending = 0;
  p->reload_inflight = 0;
}
