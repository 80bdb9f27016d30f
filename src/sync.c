/* herd_spawn_sync(), herd_exec_sync(), herd_exec_file_sync(): a spawn run to
 * completion on a private loop, so the caller's loop (if any) is untouched
 * and nothing else runs meanwhile. The spawn is a capturing one
 * (herd__spawn()): as in Node's spawnSync, a kill by timeout or max_buffer
 * closes every pipe, so the call returns when the child exits. */
#include "process-int.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  herd_sync_result_t* res;
  size_t max_buffer;
  size_t total;
  int nbufs;
  herd__buf_t* bufs; /* one per child fd; data NULL unless a pipe the child
                        writes to; moved into res->output at the end */
  int error;
  int timed_out;
  uv_write_t write_req;
} sync_state_t;

static void sync_read_cb(herd_child_t* child, int fd, const char* buf,
                         ssize_t nread) {
  sync_state_t* st = child->data;
  size_t take;
  if (nread < 0 && nread != UV_EOF && st->error == 0)
    st->error = (int)nread; /* Output lost: the result must say so. */
  if (nread <= 0 || st->error != 0)
    return;
  /* max_buffer counts every pipe together, as in Node's spawnSync. */
  take = (size_t)nread;
  if (st->total + take > st->max_buffer) {
    take = st->max_buffer - st->total;
    st->error = UV_ENOBUFS;
    herd__child_terminate(child);
  }
  st->total += take;
  if (fd < st->nbufs && st->bufs[fd].data != NULL && take > 0 &&
      st->error != UV_ENOMEM) {
    if (herd__buf_append(&st->bufs[fd], buf, take, st->max_buffer) != 0) {
      st->error = UV_ENOMEM;
      herd__child_terminate(child);
    }
  }
}

static void sync_exit_cb(herd_child_t* child, int64_t status, int sig) {
  sync_state_t* st = child->data;
  st->res->status = sig ? -1 : status;
  st->res->signal = sig;
  st->res->signal_name = child->signal_code;
}

static void sync_timeout_cb(herd_child_t* child) {
  sync_state_t* st = child->data;
  st->timed_out = 1;
}

static void sync_error_cb(herd_child_t* child, int err) {
  sync_state_t* st = child->data;
  st->error = err;
}

static void sync_write_cb(uv_write_t* req, int status) {
  herd_child_t* child = req->data;
  (void)status;
  herd_child_end(child, 0);
}

static void sync_bufs_free(sync_state_t* st) {
  for (int i = 0; i < st->nbufs; i++)
    herd__free(st->bufs[i].data);
  herd__free(st->bufs);
  st->bufs = NULL;
}

/* Hands the output over: out and err for fds 1 and 2, output[] for all
 * (Node's result.output), NULL when nothing ran (as Node's is null). */
static void sync_result_fill(sync_state_t* st, herd_sync_result_t* result) {
  result->out = st->bufs[1].data;
  result->out_len = st->bufs[1].len;
  result->err = st->bufs[2].data;
  result->err_len = st->bufs[2].len;
  if (result->pid != 0) {
    for (int i = 0; i < st->nbufs; i++) {
      result->output[i].data = st->bufs[i].data;
      result->output[i].len = st->bufs[i].len;
    }
    result->output_count = st->nbufs;
  } else {
    for (int i = 3; i < st->nbufs; i++)
      herd__free(st->bufs[i].data);
    herd__free(result->output);
    result->output = NULL;
  }
  herd__free(st->bufs);
  st->bufs = NULL;
}

static int sync_run(const char* file, const char* const* args,
                    const herd_spawn_sync_options_t* o, unsigned extra_flags,
                    int default_stderr_inherit, herd_sync_result_t* result) {
  static const herd_spawn_sync_options_t defaults;
  static const herd_stdio_t exec_stdio[3] = {
      {HERD_STDIO_PIPE, 0}, {HERD_STDIO_PIPE, 0}, {HERD_STDIO_INHERIT, 0}};
  herd_spawn_options_t so;
  herd_child_t child;
  sync_state_t st;
  uv_loop_t loop;
  sigset_t pipe_set, old_mask;
  int r;

  if (result == NULL)
    return UV_EINVAL;
  if (o == NULL)
    o = &defaults;
  memset(result, 0, sizeof(*result));
  result->status = -1;
  /* uv_write() takes an unsigned length. */
  if (o->input_len > UINT_MAX || o->stdio_count < 0 ||
      (o->stdio_count > 0 && o->stdio == NULL)) {
    result->error = UV_EINVAL;
    return UV_EINVAL;
  }
  memset(&st, 0, sizeof(st));
  st.res = result;
  st.max_buffer = o->max_buffer ? o->max_buffer : HERD__MAX_BUFFER_DEFAULT;

  memset(&so, 0, sizeof(so));
  HERD__SPAWN_OPTIONS_COPY(&so, o);
  so.argv0 = o->argv0;
  so.stdio = o->stdio;
  so.stdio_count = o->stdio_count;
  if (o->stdio_count == 0 && default_stderr_inherit) {
    so.stdio = exec_stdio;
    so.stdio_count = 3;
  }
  so.flags = o->flags | extra_flags;
  so.exit_cb = sync_exit_cb;
  so.error_cb = sync_error_cb;

  /* Node refuses an IPC channel in the blocking forms (ERR_IPC_SYNC_FORK):
   * nothing could read it while the call blocks. */
  st.nbufs = herd__stdio_count(so.stdio_count);
  for (int fd = 0; fd < st.nbufs; fd++) {
    if (herd__stdio_kind(so.stdio, so.stdio_count, fd) == HERD_STDIO_IPC) {
      result->error = UV_EINVAL;
      return UV_EINVAL;
    }
  }
  /* The buffers of every pipe the child writes to (fds 1 and up: a piped
   * stream's result is a string even when nothing came) and the output
   * array exist before anything starts. */
  st.bufs = herd__calloc((size_t)st.nbufs, sizeof(*st.bufs));
  result->output = herd__calloc((size_t)st.nbufs, sizeof(*result->output));
  r = st.bufs == NULL || result->output == NULL ? UV_ENOMEM : 0;
  for (int fd = 1; r == 0 && fd < st.nbufs; fd++)
    if (herd__stdio_kind(so.stdio, so.stdio_count, fd) == HERD_STDIO_PIPE)
      r = herd__buf_init(&st.bufs[fd], 128);
  if (r == 0)
    r = uv_loop_init(&loop);
  if (r != 0) {
    if (st.bufs != NULL)
      sync_bufs_free(&st);
    herd__free(result->output);
    result->output = NULL;
    result->error = r;
    return r;
  }
  /* Input for a child that stops reading must not kill the caller with
   * SIGPIPE: it is blocked in this thread for the call (the write then
   * fails with EPIPE) and a pending one is consumed before unblocking. */
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  memset(&child, 0, sizeof(child));
  child.data = &st;
  r = herd__spawn(&loop, &child, file, args, &so, 1, sync_timeout_cb);
  if (r != 0) {
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    uv_loop_close(&loop);
    sync_bufs_free(&st);
    herd__free(result->output);
    result->output = NULL;
    result->error = r;
    return r;
  }
  result->pid = child.pid;
  for (int fd = 1; fd < st.nbufs; fd++)
    if (herd_child_stream(&child, fd) != NULL)
      herd_child_read_start(&child, fd, sync_read_cb);
  if (herd_child_stream(&child, 0) != NULL) {
    if (o->input != NULL && o->input_len > 0) {
      uv_buf_t b = uv_buf_init((char*)o->input, (unsigned)o->input_len);
      st.write_req.data = &child;
      if (uv_write(&st.write_req, herd_child_stream(&child, 0), &b, 1,
                   sync_write_cb) != 0)
        herd_child_end(&child, 0);
    } else {
      herd_child_end(&child, 0);
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (!sigismember(&old_mask, SIGPIPE)) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) > 0) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

  sync_result_fill(&st, result);
  if (st.error == 0 && st.timed_out)
    st.error = UV_ETIMEDOUT;
  result->error = st.error;
  return st.error;
}

int herd_spawn_sync(const char* file, const char* const* args,
                    const herd_spawn_sync_options_t* options,
                    herd_sync_result_t* result) {
  return sync_run(file, args, options, 0, 0, result);
}

static int sync_check_status(herd_sync_result_t* result) {
  if (result->error == 0 && (result->status != 0 || result->signal != 0))
    result->error = HERD_ECMDFAILED;
  return result->error;
}

int herd_exec_sync(const char* command,
                   const herd_spawn_sync_options_t* options,
                   herd_sync_result_t* result) {
  sync_run(command, NULL, options, HERD_SPAWN_SHELL, 1, result);
  return sync_check_status(result);
}

int herd_exec_file_sync(const char* file, const char* const* args,
                        const herd_spawn_sync_options_t* options,
                        herd_sync_result_t* result) {
  sync_run(file, args, options, 0, 1, result);
  return sync_check_status(result);
}

void herd_sync_result_free(herd_sync_result_t* result) {
  /* output[1] and output[2] are out and err, freed through their fields. */
  for (int i = 3; result->output != NULL && i < result->output_count; i++)
    herd__free(result->output[i].data);
  herd__free(result->output);
  herd__free(result->out);
  herd__free(result->err);
  result->output = NULL;
  result->output_count = 0;
  result->out = NULL;
  result->err = NULL;
}
