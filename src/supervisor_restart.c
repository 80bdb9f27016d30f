/* Crash restarts: the slot's backoff (exponential, capped, with equal
 * jitter, reset after a worker lived min_uptime), the pool's crash window
 * (more than max_restarts crashes within restart_window: give up), and
 * fail fast (no worker of the first generation ever ready). */
#include "supervisor-int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* xorshift64*: jitter needs no more than a fast, seeded generator. */
static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t x = rng_state;
  if (x == 0) {
    struct timespec ts;
    if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != (ssize_t)sizeof(x)) {
      clock_gettime(CLOCK_MONOTONIC, &ts);
      x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    }
    x |= 1;
  }
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Equal jitter: half of `d` fixed, the other half uniform. */
static uint64_t jitter(uint64_t d) {
  uint64_t half = d / 2;
  return half + rng_next() % (d - half + 1);
}

static const char* duration(uint64_t ms) {
  static char buf[32];
  if (ms % 1000 == 0)
    snprintf(buf, sizeof(buf), "%llu s", (unsigned long long)(ms / 1000));
  else
    snprintf(buf, sizeof(buf), "%llu ms", (unsigned long long)ms);
  return buf;
}

void herd__restart_give_up(herd__sup_t* p, int error, const char* fmt, ...) {
  herd_supervisor_t* s = p->pub;
  char text[400];
  va_list ap;
  if (s->stopping || p->closing)
    return;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  s->gave_up = 1;
  s->error = error;
  if (p->notifier != NULL && p->notifier->enabled)
    herd_sd_notifyf(p->notifier, "STATUS=%s", text);
  herd__sup_emit(p, HERD_SUPERVISOR_GAVE_UP, -1, NULL, error, 0, "%s", text);
  if (!p->closing)
    herd__sup_stop(p, 0);
}

/* Records a crash at `now`; returns the crashes within the window. When
 * the ring cannot grow (no memory), the oldest entry is overwritten: the
 * count can only come out lower, never make herd give up too early. */
static size_t crash_count(herd__sup_t* p, uint64_t now) {
  size_t want = (size_t)p->max_restarts + 1;
  while (p->ncrashes > 0) {
    uint64_t t = p->crashes[p->crash_head];
    if (now - t < p->restart_window)
      break;
    p->crash_head = (p->crash_head + 1) % p->cap_crashes;
    p->ncrashes--;
  }
  if (p->ncrashes == p->cap_crashes && p->cap_crashes < want) {
    size_t cap = p->cap_crashes ? p->cap_crashes * 2 : 16;
    uint64_t* n;
    if (cap > want)
      cap = want;
    n = herd__malloc(cap * sizeof(*n));
    if (n != NULL) {
      for (size_t i = 0; i < p->ncrashes; i++)
        n[i] = p->crashes[(p->crash_head + i) % p->cap_crashes];
      herd__free(p->crashes);
      p->crashes = n;
      p->cap_crashes = cap;
      p->crash_head = 0;
    }
  }
  if (p->cap_crashes == 0)
    return 1;
  if (p->ncrashes == p->cap_crashes) {
    p->crash_head = (p->crash_head + 1) % p->cap_crashes;
    p->ncrashes--;
  }
  p->crashes[(p->crash_head + p->ncrashes) % p->cap_crashes] = now;
  p->ncrashes++;
  return p->ncrashes;
}

/* Fail fast: every initial slot's first process failed before ready, and
 * no worker was ever ready. */
static int never_ready(herd__sup_t* p) {
  int n = p->initial_workers < p->pub->workers ? p->initial_workers
                                               : p->pub->workers;
  if (p->ever_ready)
    return 0;
  for (int i = 0; i < n; i++)
    if (!p->slots[i]->first_failed)
      return 0;
  return 1;
}

/* Whether never_ready() may still give up: no worker was ever ready and
 * this slot's first process failed, but another initial slot's has not
 * failed yet. */
static int fail_fast_open(herd__sup_t* p, const herd__sup_slot_t* slot) {
  return !p->ever_ready && slot->first_failed &&
         slot->index < p->initial_workers;
}

void herd__restart_crashed(herd__sup_t* p, herd__sup_slot_t* slot,
                           const herd__sup_proc_t* proc, int error) {
  herd_supervisor_t* s = p->pub;
  uint64_t now = uv_now(s->loop), delay;
  char who[160], how[160], then[96];
  size_t n;

  if (proc != NULL) {
    snprintf(who, sizeof(who), "%s", herd__sup_who(p, proc));
    snprintf(how, sizeof(how), "%s", herd__sup_how(proc));
  } else {
    snprintf(who, sizeof(who), "%s.%d", p->name, slot->index);
    herd__sup_start_failure(p, error, how, sizeof(how));
  }
  /* A slot the operator added whose worker never got ready: the scale-up
   * did not hold, the pool did not crash. */
  if (slot->added) {
    char why[400];
    snprintf(why, sizeof(why), "cannot add a worker: %s %s", who, how);
    herd__sup_scale_back(p, slot, why);
    return;
  }
  s->restarts++;
  slot->restarts++;
  if (proc != NULL && (proc->flags & HERD__PROC_FIRST) &&
      !(proc->flags & HERD__PROC_WAS_READY))
    slot->first_failed = 1;
  if (never_ready(p)) {
    herd__restart_give_up(p, HERD_ENEVERREADY,
                          "giving up: no worker became ready (%s %s)", who,
                          how);
    return;
  }
  if (p->max_restarts == HERD_RESTARTS_NONE) {
    herd__restart_give_up(p, HERD_ECRASHLOOP,
                          "giving up: %s %s, and restarts are off", who, how);
    return;
  }
  if (p->max_restarts != HERD_RESTARTS_UNLIMITED) {
    n = crash_count(p, now);
    if (n > (size_t)p->max_restarts) {
      herd__restart_give_up(p, HERD_ECRASHLOOP,
                            "giving up: %zu crashes within %s (last: %s %s)", n,
                            duration(p->restart_window), who, how);
      return;
    }
  }
  if (proc != NULL && (proc->flags & HERD__PROC_WAS_READY) &&
      now - proc->ready_at >= p->min_uptime) {
    delay = 0;
    slot->backoff = p->backoff_min;
  } else {
    delay = jitter(slot->backoff);
    slot->backoff =
        slot->backoff * 2 < p->backoff_max ? slot->backoff * 2 : p->backoff_max;
  }
  if (slot->retiring) {
    snprintf(then, sizeof(then), "its slot is retired");
  } else if (slot->next != NULL) {
    snprintf(then, sizeof(then), "its successor takes over");
  } else {
    herd__restart_schedule(p, slot, delay);
    if (delay == 0)
      snprintf(then, sizeof(then), "restarting it now");
    else
      snprintf(then, sizeof(then), "restarting it in %llu ms%s",
               (unsigned long long)delay,
               /* The other initial workers may still fail before any is
                * ready: herd then gives up instead (never_ready()). */
               fail_fast_open(p, slot) ? " unless every worker fails" : "");
  }
  herd__sup_emit(p, HERD_SUPERVISOR_CRASHED, slot->index, proc, error, delay,
                 "%s %s; %s", who, how, then);
}

void herd__restart_schedule(herd__sup_t* p, herd__sup_slot_t* slot,
                            uint64_t delay) {
  slot->restart_due = 1;
  slot->restart_at = uv_now(p->pub->loop) + delay;
  herd__sup_arm(p);
}

void herd__restart_run(herd__sup_t* p) {
  herd_supervisor_t* s = p->pub;
  uint64_t now = uv_now(s->loop);
  for (int i = 0; i < s->workers && !s->stopping && !p->closing; i++) {
    herd__sup_slot_t* slot = p->slots[i];
    int r, first;
    if (!slot->restart_due || slot->restart_at > now)
      continue;
    slot->restart_due = 0;
    if (slot->cur != NULL || slot->next != NULL)
      continue;
    first = !slot->started_once && slot->index < p->initial_workers;
    slot->started_once = 1;
    r = herd__proc_start(p, slot, 0);
    if (r == 0 && first && slot->cur != NULL)
      slot->cur->flags |= HERD__PROC_FIRST;
    if (r != 0) {
      if (first)
        slot->first_failed = 1;
      herd__restart_crashed(p, slot, NULL, r);
    }
  }
}
