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
  herd__buf_t bufs[2]; /* stdout, stderr; moved into res at the end */
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
  if ((fd == 1 || fd == 2) && take > 0 && st->error != UV_ENOMEM) {
    if (herd__buf_append(&st->bufs[fd - 1], buf, take, st->max_buffer) != 0) {
      st->error = UV_ENOMEM;
      herd__child_terminate(child);
    }
  }
}

static void sync_exit_cb(herd_child_t* child, int64_t status, int sig) {
  sync_state_t* st = child->data;
  st->res->status = sig ? -1 : status;
  st->res->signal = sig;
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
  if (o->input_len > UINT_MAX) {
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

  /* The buffers of the piped stdout and stderr (a piped stream's result is
   * a string even when nothing came) exist before anything starts. */
  for (int fd = 1; fd <= 2; fd++) {
    int piped = so.stdio_count == 0   ? 1
                : fd < so.stdio_count ? so.stdio[fd].kind == HERD_STDIO_PIPE
                                      : 0;
    if (piped && herd__buf_init(&st.bufs[fd - 1], 128) != 0) {
      herd__free(st.bufs[0].data);
      result->error = UV_ENOMEM;
      return UV_ENOMEM;
    }
  }
  r = uv_loop_init(&loop);
  if (r != 0) {
    herd__free(st.bufs[0].data);
    herd__free(st.bufs[1].data);
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
    herd__free(st.bufs[0].data);
    herd__free(st.bufs[1].data);
    result->error = r;
    return r;
  }
  result->pid = child.pid;
  {
    int n = so.stdio_count ? so.stdio_count : 3;
    for (int fd = 1; fd < n; fd++)
      if (herd_child_stream(&child, fd) != NULL)
        herd_child_read_start(&child, fd, sync_read_cb);
  }
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

  result->out = st.bufs[0].data;
  result->out_len = st.bufs[0].len;
  result->err = st.bufs[1].data;
  result->err_len = st.bufs[1].len;
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
  herd__free(result->out);
  herd__free(result->err);
  result->out = NULL;
  result->err = NULL;
}
