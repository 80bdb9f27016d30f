/* herd_exec() and herd_exec_file(): Node's exec/execFile, a spawn whose
 * stdout and stderr are collected (up to max_buffer each) and handed over
 * with the outcome in one callback. The spawn is a capturing one
 * (herd__spawn()): a kill by timeout, max_buffer or abort closes the pipes,
 * as Node's exec destroys stdout and stderr when it kills. */
#include "process-int.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct herd_exec_private_s {
  herd_exec_cb cb;
  size_t max_buffer;
  herd__buf_t bufs[2]; /* stdout, stderr */
  int error;           /* the first failure seen */
  int timed_out;
  int max_buffer_fd;
  char cmd[]; /* the command line, result->cmd */
};

/* What exec and spawn_sync buffers start with: room for a short output, so
 * the common case never grows them. */
#define BUF_INITIAL 128

int herd__buf_init(herd__buf_t* b, size_t cap) {
  b->data = herd__malloc(cap + 1);
  if (b->data == NULL)
    return UV_ENOMEM;
  b->data[0] = '\0';
  b->len = 0;
  b->cap = cap + 1;
  return 0;
}

int herd__buf_append(herd__buf_t* b, const char* data, size_t len, size_t max) {
  size_t need, ncap;
  char* nd;
  if (len > SIZE_MAX - 1 - b->len)
    return UV_ENOMEM;
  need = b->len + len + 1;
  if (b->data == NULL || need > b->cap) {
    /* Doubling from 4 KiB, but neither past what `max` needs nor into
     * overflow. */
    size_t limit = max < SIZE_MAX ? max + 1 : SIZE_MAX;
    ncap = b->cap > 4096 ? b->cap : 4096;
    while (ncap < need && ncap <= SIZE_MAX / 2)
      ncap *= 2;
    if (ncap < need)
      ncap = need;
    if (ncap > limit && limit >= need)
      ncap = limit;
    nd = herd__realloc(b->data, ncap);
    if (nd == NULL)
      return UV_ENOMEM;
    b->data = nd;
    b->cap = ncap;
  }
  memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

static void exec_read_cb(herd_child_t* child, int fd, const char* buf,
                         ssize_t nread) {
  herd_exec_t* req = HERD_CONTAINER_OF(child, herd_exec_t, child);
  struct herd_exec_private_s* priv = req->priv;
  herd__buf_t* b;
  size_t take;
  if (nread < 0 && nread != UV_EOF && priv->error == 0)
    priv->error = (int)nread; /* Output lost: the result must say so. */
  if (nread <= 0 || (fd != 1 && fd != 2))
    return;
  if (priv->error == HERD_EMAXBUFFER)
    return; /* The child is being killed; the rest is dropped. */
  b = &priv->bufs[fd - 1];
  take = (size_t)nread;
  if (take > priv->max_buffer - b->len)
    take = priv->max_buffer - b->len;
  if (herd__buf_append(b, buf, take, priv->max_buffer) != 0) {
    if (priv->error == 0)
      priv->error = UV_ENOMEM;
    herd__child_terminate(child);
  } else if (take < (size_t)nread && priv->error == 0) {
    priv->error = HERD_EMAXBUFFER;
    priv->max_buffer_fd = fd;
    herd__child_terminate(child);
  }
}

static void exec_timeout_cb(herd_child_t* child) {
  herd_exec_t* req = HERD_CONTAINER_OF(child, herd_exec_t, child);
  req->priv->timed_out = 1;
}

static void exec_error_cb(herd_child_t* child, int err) {
  herd_exec_t* req = HERD_CONTAINER_OF(child, herd_exec_t, child);
  /* A spawn failure or an abort outranks whatever else happened. */
  if (req->priv->error == 0 || req->priv->error == HERD_EMAXBUFFER)
    req->priv->error = err;
}

static void exec_close_cb(herd_child_t* child) {
  herd_exec_t* req = HERD_CONTAINER_OF(child, herd_exec_t, child);
  struct herd_exec_private_s* priv = req->priv;
  herd_exec_result_t* r;
  herd_exec_result_t result;

  memset(&result, 0, sizeof(result));
  r = &result;
  r->error = priv->error;
  if (r->error == 0 && priv->timed_out)
    r->error = UV_ETIMEDOUT;
  if (child->exited) {
    r->signal = child->term_signal;
    r->signal_name = child->signal_code;
    r->code = child->term_signal ? -1 : child->exit_status;
  } else {
    r->code = -1;
  }
  if (r->error == 0 && child->exited && (r->code != 0 || r->signal != 0))
    r->error = HERD_ECMDFAILED;
  r->killed = child->killed;
  if (r->error == HERD_EMAXBUFFER)
    r->max_buffer_fd = priv->max_buffer_fd;
  r->cmd = priv->cmd;
  r->out = priv->bufs[0].data;
  r->out_len = priv->bufs[0].len;
  r->err = priv->bufs[1].data;
  r->err_len = priv->bufs[1].len;
  /* The request may be reused from the callback. */
  req->priv = NULL;
  priv->cb(req, r);
  herd__free(r->out);
  herd__free(r->err);
  herd__free(priv);
}

static int exec_start(uv_loop_t* loop, herd_exec_t* req, const char* file,
                      const char* const* args, unsigned extra_flags,
                      const herd_exec_options_t* options, herd_exec_cb cb) {
  static const herd_exec_options_t defaults;
  const herd_exec_options_t* o = options ? options : &defaults;
  struct herd_exec_private_s* priv;
  herd_spawn_options_t so;
  size_t cmd_len;
  int r;

  if (loop == NULL || req == NULL || file == NULL || cb == NULL)
    return UV_EINVAL;
  cmd_len = strlen(file) + 1;
  for (size_t i = 0; args != NULL && args[i] != NULL; i++)
    cmd_len += strlen(args[i]) + 1;
  /* Everything the request needs is allocated before the spawn, so the
   * result's buffers exist (never NULL) whatever happens later. */
  priv = herd__malloc(sizeof(*priv) + cmd_len);
  if (priv == NULL)
    return UV_ENOMEM;
  memset(priv, 0, sizeof(*priv));
  if (herd__buf_init(&priv->bufs[0], BUF_INITIAL) != 0 ||
      herd__buf_init(&priv->bufs[1], BUF_INITIAL) != 0) {
    herd__free(priv->bufs[0].data);
    herd__free(priv);
    return UV_ENOMEM;
  }
  priv->cb = cb;
  priv->max_buffer = o->max_buffer ? o->max_buffer : HERD__MAX_BUFFER_DEFAULT;
  {
    char* p = priv->cmd;
    p += strlen(strcpy(p, file));
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
      *p++ = ' ';
      p += strlen(strcpy(p, args[i]));
    }
  }

  memset(&so, 0, sizeof(so));
  HERD__SPAWN_OPTIONS_COPY(&so, o);
  so.flags = (o->flags & (HERD_SPAWN_ENV_EXTEND | HERD_SPAWN_DETACHED |
                          HERD_SPAWN_PROCESS_GROUP | HERD_SPAWN_SETUID |
                          HERD_SPAWN_SETGID | HERD_SPAWN_SHELL |
                          HERD_SPAWN_KILL_GROUP_ON_EXIT)) |
             extra_flags;
  so.abort = o->abort;
  so.error_cb = exec_error_cb;
  so.close_cb = exec_close_cb;
  req->priv = priv;
  r = herd__spawn(loop, &req->child, file, args, &so, 1, exec_timeout_cb);
  if (r != 0) {
    req->priv = NULL;
    herd__free(priv->bufs[0].data);
    herd__free(priv->bufs[1].data);
    herd__free(priv);
    return r;
  }
  herd_child_read_start(&req->child, 1, exec_read_cb);
  herd_child_read_start(&req->child, 2, exec_read_cb);
  return 0;
}

int herd_exec(uv_loop_t* loop, herd_exec_t* req, const char* command,
              const herd_exec_options_t* options, herd_exec_cb cb) {
  return exec_start(loop, req, command, NULL, HERD_SPAWN_SHELL, options, cb);
}

int herd_exec_file(uv_loop_t* loop, herd_exec_t* req, const char* file,
                   const char* const* args, const herd_exec_options_t* options,
                   herd_exec_cb cb) {
  return exec_start(loop, req, file, args, 0, options, cb);
}
