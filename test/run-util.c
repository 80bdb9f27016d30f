/* Running `herd run` in tests (see run-util.h). */
#include "run-util.h"

#include "test-cluster.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

const char* hr_herd(void) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/herd", test_binary_dir());
  ASSERT(access(path, X_OK) == 0);
  return path;
}

const char* hr_fd3_http(void) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/examples/fd3-http", test_binary_dir());
  ASSERT(access(path, X_OK) == 0);
  return path;
}

/* Grows by doubling: a test may collect megabytes. The capacity is kept
 * just before the buffer. */
static void append(char** buf, size_t* len, const char* data, size_t n) {
  size_t* base = *buf != NULL ? (size_t*)*buf - 1 : NULL;
  size_t cap = base != NULL ? *base : 0;
  if (*len + n + 1 > cap) {
    size_t ncap = cap ? cap : 4096;
    while (ncap < *len + n + 1)
      ncap *= 2;
    base = realloc(base, sizeof(size_t) + ncap);
    ASSERT(base != NULL);
    *base = ncap;
    *buf = (char*)(base + 1);
  }
  memcpy(*buf + *len, data, n);
  *len += n;
  (*buf)[*len] = '\0';
}

static void buf_free(char* buf) {
  if (buf != NULL)
    free((size_t*)buf - 1);
}

static void on_read(herd_child_t* child, int fd, const char* buf,
                    ssize_t nread) {
  hr_t* h = child->data;
  if (nread <= 0)
    return;
  if (fd == 1)
    append(&h->out, &h->out_len, buf, (size_t)nread);
  else
    append(&h->err, &h->err_len, buf, (size_t)nread);
  if (getenv("HERD_TEST_VERBOSE") != NULL)
    fwrite(buf, 1, (size_t)nread, stderr);
}

static void on_exit_cb(herd_child_t* child, int64_t status, int sig) {
  hr_t* h = child->data;
  h->exited = 1;
  h->status = status;
  h->term_signal = sig;
}

static void on_close(herd_child_t* child) {
  hr_t* h = child->data;
  h->closed = 1;
}

static void note(hr_t* h, char c) {
  if (h->nnotes < HR_MAX_NOTES - 1)
    h->notes[h->nnotes++] = c;
}

static void on_notify(herd_sd_notify_socket_t* ns,
                      const herd_sd_notify_msg_t* msg) {
  hr_t* h = ns->data;
  append(&h->msgs, &h->msgs_len, msg->text, msg->len);
  append(&h->msgs, &h->msgs_len, "\n\n", 2);
  /* In the order the assignments appear in the message. */
  const char* p = msg->text;
  const char* end = msg->text + msg->len;
  while (p < end) {
    size_t n = strcspn(p, "\n");
    if ((size_t)(end - p) < n)
      n = (size_t)(end - p);
    if (n == 7 && memcmp(p, "READY=1", 7) == 0) {
      note(h, 'R');
      h->ready++;
    } else if (n == 11 && memcmp(p, "RELOADING=1", 11) == 0) {
      note(h, 'L');
      h->reloading++;
    } else if (n == 10 && memcmp(p, "STOPPING=1", 10) == 0) {
      note(h, 'S');
    } else if (n == 10 && memcmp(p, "WATCHDOG=1", 10) == 0) {
      if (h->watchdogs < HR_MAX_NOTES)
        h->watchdog_ms[h->watchdogs] = tc_now_ms();
      h->watchdogs++;
    }
    p += n + 1;
  }
}

static void on_tick(uv_timer_t* t) {
  (void)t;
}

void hr_start(hr_t* h, const char* const* args, const char* const* env) {
  hr_start_file(h, hr_herd(), args, env);
}

void hr_start_file(hr_t* h, const char* file, const char* const* args,
                   const char* const* env) {
  herd_spawn_options_t o;
  herd_stdio_t stdio[3];
  const char* envp[32];
  char ns[64 + HERD_SD_ADDRESS_MAX];
  int n = 0;

  memset(h, 0, sizeof(*h));
  ASSERT_OK(uv_loop_init(&h->loop));
  ASSERT_OK(herd_sd_notify_socket_init(&h->loop, &h->notify, NULL, on_notify));
  h->notify.data = h;
  ASSERT_OK(uv_timer_init(&h->loop, &h->tick));
  ASSERT_OK(uv_timer_start(&h->tick, on_tick, 10, 10));
  snprintf(ns, sizeof(ns), "NOTIFY_SOCKET=%s", h->notify.address);
  envp[n++] = ns;
  for (int i = 0; env != NULL && env[i] != NULL && n < 31; i++)
    envp[n++] = env[i];
  envp[n] = NULL;
  memset(stdio, 0, sizeof(stdio));
  stdio[0].kind = HERD_STDIO_IGNORE;
  stdio[1].kind = HERD_STDIO_PIPE;
  stdio[2].kind = HERD_STDIO_PIPE;
  memset(&o, 0, sizeof(o));
  o.stdio = stdio;
  o.stdio_count = 3;
  o.env = envp;
  o.flags = HERD_SPAWN_ENV_EXTEND;
  o.exit_cb = on_exit_cb;
  o.close_cb = on_close;
  h->child.data = h;
  ASSERT_OK(herd_spawn(&h->loop, &h->child, file, args, &o));
  ASSERT(h->child.pid > 0);
  h->pid = h->child.pid;
  ASSERT_OK(herd_child_read_start(&h->child, 1, on_read));
  ASSERT_OK(herd_child_read_start(&h->child, 2, on_read));
}

int hr_wait(hr_t* h, int (*cond)(hr_t* h, void* arg), void* arg, int ms) {
  uint64_t deadline = tc_now_ms() + (uint64_t)ms;
  while (!cond(h, arg)) {
    if (tc_now_ms() >= deadline)
      return 0;
    uv_run(&h->loop, UV_RUN_ONCE);
  }
  return 1;
}

static int ready_cond(hr_t* h, void* arg) {
  return h->ready >= *(int*)arg || h->exited;
}

int hr_wait_ready(hr_t* h, int n, int ms) {
  return hr_wait(h, ready_cond, &n, ms) && h->ready >= n;
}

static int err_cond(hr_t* h, void* arg) {
  return (h->err != NULL && strstr(h->err, arg) != NULL) || h->closed;
}

int hr_wait_err(hr_t* h, const char* text, int ms) {
  return hr_wait(h, err_cond, (void*)text, ms) && h->err != NULL &&
         strstr(h->err, text) != NULL;
}

int hr_port(hr_t* h, int ms) {
  const char* p;
  if (!hr_wait_err(h, "listening on 127.0.0.1:", ms))
    FATAL("herd did not say where it listens; stderr:\n%s",
          h->err ? h->err : "");
  p = strstr(h->err, "listening on 127.0.0.1:");
  h->port = atoi(p + strlen("listening on 127.0.0.1:"));
  ASSERT(h->port > 0);
  return h->port;
}

static int exit_cond(hr_t* h, void* arg) {
  (void)arg;
  return h->exited;
}

int hr_wait_exit(hr_t* h, int ms) {
  return hr_wait(h, exit_cond, NULL, ms);
}

void hr_kill(hr_t* h, int sig) {
  ASSERT_OK(herd_child_kill(&h->child, sig));
}

static int is_sentinel(int pid) {
  char path[64], comm[32] = "";
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%d/comm", pid);
  f = fopen(path, "re");
  if (f == NULL)
    return 0;
  if (fgets(comm, sizeof(comm), f) == NULL)
    comm[0] = '\0';
  fclose(f);
  return strncmp(comm, "herd-sentinel", 13) == 0;
}

static int cmp_int(const void* a, const void* b) {
  return *(const int*)a - *(const int*)b;
}

int hr_workers(hr_t* h, int* pids, int cap) {
  int all[256], n = tc_children(h->pid, all, 256), k = 0;
  for (int i = 0; i < n && k < cap; i++)
    if (!is_sentinel(all[i]))
      pids[k++] = all[i];
  qsort(pids, (size_t)k, sizeof(int), cmp_int);
  return k;
}

typedef struct {
  const int* old;
  int nold;
  int n;
  int* pids;
} new_workers_t;

static int new_workers_cond(hr_t* h, void* arg) {
  new_workers_t* w = arg;
  int pids[256], n = hr_workers(h, pids, 256);
  if (n != w->n)
    return 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < w->nold; j++)
      if (pids[i] == w->old[j])
        return 0;
  memcpy(w->pids, pids, (size_t)n * sizeof(int));
  return 1;
}

int hr_wait_new_workers(hr_t* h, const int* old, int nold, int n, int* pids,
                        int ms) {
  new_workers_t w = {old, nold, n, pids};
  return hr_wait(h, new_workers_cond, &w, ms);
}

static int closed_cond(hr_t* h, void* arg) {
  (void)arg;
  return h->closed;
}

void hr_finish(hr_t* h) {
  if (!h->exited)
    herd_child_kill(&h->child, SIGKILL);
  if (!hr_wait(h, closed_cond, NULL, 10000))
    FATAL("herd's pipes did not close");
  herd_sd_notify_socket_close(&h->notify, NULL);
  uv_close((uv_handle_t*)&h->tick, NULL);
  test_loop_run_close(&h->loop);
  buf_free(h->out);
  buf_free(h->err);
  buf_free(h->msgs);
}

static char script_path[128];
static char mode_path[128];

void hr_deploy(const char* mode) {
  char tmp[160];
  FILE* f;
  /* Replaced whole, as a deploy would: a start never reads half a file. */
  snprintf(tmp, sizeof(tmp), "%s.new", mode_path);
  f = fopen(tmp, "we");
  ASSERT(f != NULL);
  fprintf(f, "%s\n", mode);
  fclose(f);
  ASSERT_EQ(chmod(tmp, 0644), 0); /* a worker run as --user reads it */
  ASSERT_EQ(rename(tmp, mode_path), 0);
}

const char* hr_mode_path(void) {
  return mode_path;
}

const char* hr_script(const char* mode) {
  const char* fd3 = hr_fd3_http();
  FILE* f;
  snprintf(script_path, sizeof(script_path), "/tmp/herd-run-%d.sh",
           (int)getpid());
  snprintf(mode_path, sizeof(mode_path), "/tmp/herd-run-%d.mode",
           (int)getpid());
  f = fopen(script_path, "we");
  ASSERT(f != NULL);
  fprintf(
      f,
      "#!/bin/sh\n"
      "read mode arg < %s\n"
      "case $mode in\n"
      "serve) exec %s ;;\n"
      "exit) exit $arg ;;\n"
      "slow) sleep $arg; exec %s ;;\n"
      "never) exec sleep 1000 ;;\n"
      "hang) trap '' TERM; sleep 1000 & while :; do sleep 1; done ;;\n"
      "crash) sleep $(($arg / 1000)).$(printf %%03d $(($arg %% 1000))); "
      "exit 1 ;;\n"
      "split) [ \"$HERD_WORKER_ID\" = 1 ] && exit 2; exec %s ;;\n"
      "leave) sleep 1000 & echo $! > %s.child; exit 3 ;;\n"
      "id) echo \"id=$HERD_WORKER_ID pid=$$ uid=$(id -u)\"; exec %s ;;\n"
      "usr1) trap 'echo got USR1' USR1; while :; do sleep 0.05; done ;;\n"
      "orphans) i=0; while [ $i -lt $arg ]; do ( sleep 0.1 & ); i=$((i+1)); "
      "done; exec %s ;;\n"
      "esac\n"
      "exit 99\n",
      mode_path, fd3, fd3, fd3, mode_path, fd3, fd3);
  fclose(f);
  ASSERT_EQ(chmod(script_path, 0755), 0);
  hr_deploy(mode);
  return script_path;
}

void hr_script_remove(void) {
  char child[160];
  snprintf(child, sizeof(child), "%s.child", mode_path);
  unlink(child);
  unlink(script_path);
  unlink(mode_path);
}
