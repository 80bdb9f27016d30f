/* An HTTP load client for tests: a few threads, each one connection at a
 * time to 127.0.0.1:port, keep-alive or Connection: close, counting every
 * request that did not get a whole 200 answer as failed (refused, reset,
 * closed before the answer, timed out, another status). A keep-alive
 * connection the server closes after an answer that said
 * `Connection: close` is reopened without a failure, as browsers and ab
 * do; one it closes without saying so, while a request is on its way, is
 * a failure. Bodies that start with a number (fd3-http and the Python
 * server answer with their pid) are counted per pid. */
#ifndef HERD_TEST_LOAD_H
#define HERD_TEST_LOAD_H

#include <stdint.h>

#define TL_MAX_PIDS 64

typedef struct tl_load_s tl_load_t;

typedef struct {
  int port;
  int threads;       /* 0: 4 */
  int keepalive;     /* 1: keep-alive; 0: close; 2: half of each */
  const char* path;  /* NULL: "/" */
  uint64_t max_reqs; /* stop after this many in all; 0: until tl_stop */
} tl_options_t;

typedef struct {
  uint64_t ok;
  uint64_t failed;
  uint64_t reopened; /* keep-alive connections closed after an answer */
  int npids;
  int pids[TL_MAX_PIDS];
  uint64_t per_pid[TL_MAX_PIDS];
  char first_error[160];
} tl_stats_t;

/* Starts the threads. */
tl_load_t* tl_start(const tl_options_t* o);
/* Answers so far (ok + failed). */
uint64_t tl_done(tl_load_t* l);
/* Failures so far. */
uint64_t tl_failed(tl_load_t* l);
/* Waits until `n` more answers have come (or ms passed); 1 if they did. */
int tl_wait_more(tl_load_t* l, uint64_t n, int ms);
/* Stops and joins the threads, fills `stats` (may be NULL), frees. */
void tl_stop(tl_load_t* l, tl_stats_t* stats);

#endif
