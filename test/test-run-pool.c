/* `herd run` running real programs: reloads under load, bad deploys,
 * crash loops, stops, kill -9, PID 1, socket activation, sd_notify and
 * log integrity. Loopback only; every wait has a deadline. */
#include "load.h"
#include "run-util.h"
#include "test-cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

static const char* python_server(void) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/test/fixtures/fd3-server.py",
           test_source_dir());
  return path;
}

/* The system's Python: a version manager's shim on PATH (pyenv's is a
 * shell script) can take most of a second to start one. */
static const char* python3(void) {
  return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static int contains(const int* a, int n, int v) {
  for (int i = 0; i < n; i++)
    if (a[i] == v)
      return 1;
  return 0;
}

/* 10 reloads (SIGHUP) under load, half keep-alive and half
 * Connection: close: no request fails, and after each reload every
 * worker is a new process. */
static void reload_under_load(const char* policy, const char* const* prog) {
  const char* args[16] = {"run",  "-w", "2",           "--policy",
                          policy, "-l", "127.0.0.1:0", "--"};
  int k = 8, old[8], cur[8], n;
  tl_options_t lo;
  tl_load_t* load;
  tl_stats_t st;
  hr_t h;

  for (int i = 0; prog[i] != NULL; i++)
    args[k++] = prog[i];
  args[k] = NULL;
  hr_start(&h, args, NULL);
  if (!hr_wait_ready(&h, 1, 15000))
    FATAL("not ready; stderr:\n%s", h.err ? h.err : "");
  memset(&lo, 0, sizeof(lo));
  lo.port = hr_port(&h, 1000);
  lo.threads = 8;
  lo.keepalive = 2;
  load = tl_start(&lo);
  ASSERT(tl_wait_more(load, 200, 10000));
  n = hr_workers(&h, old, 8);
  ASSERT_EQ(n, 2);
  for (int r = 0; r < 10; r++) {
    hr_kill(&h, SIGHUP);
    if (!hr_wait_ready(&h, r + 2, 20000))
      FATAL("reload %d did not end; stderr:\n%s", r + 1, h.err);
    if (!hr_wait_new_workers(&h, old, 2, 2, cur, 15000))
      FATAL("reload %d: the old workers did not go", r + 1);
    /* Load goes on through the new workers. */
    if (!tl_wait_more(load, 100, 10000))
      FATAL("reload %d: no answers after it", r + 1);
    memcpy(old, cur, sizeof(cur));
  }
  tl_stop(load, &st);
  if (st.failed != 0)
    FATAL("%llu of %llu requests failed (first: %s); stderr:\n%s",
          (unsigned long long)st.failed,
          (unsigned long long)(st.ok + st.failed), st.first_error, h.err);
  ASSERT_GE(st.ok, 1200);
  /* Every reload was one RELOADING=1 then one READY=1. */
  ASSERT_EQ(h.reloading, 10);
  ASSERT(strstr(h.err, "reload failed") == NULL);
  hr_kill(&h, SIGTERM);
  ASSERT(hr_wait_exit(&h, 15000));
  ASSERT_EQ(h.term_signal, 0);
  if (h.status != 0)
    FATAL("exit %lld; stderr:\n%s", (long long)h.status, h.err);
  for (int i = 0; i < 2; i++)
    ASSERT(!contains(old, 0, cur[i]));
  hr_finish(&h);
}

TEST_IMPL(run_reload_c_shared) {
  const char* prog[] = {hr_fd3_http(), NULL};
  reload_under_load("shared", prog);
  return 0;
}

TEST_IMPL(run_reload_c_reuseport) {
  const char* prog[] = {hr_fd3_http(), NULL};
  reload_under_load("reuseport", prog);
  return 0;
}

TEST_IMPL(run_reload_python_shared) {
  const char* prog[] = {python3(), python_server(), NULL};
  reload_under_load("shared", prog);
  return 0;
}

TEST_IMPL(run_reload_python_reuseport) {
  const char* prog[] = {python3(), python_server(), NULL};
  reload_under_load("reuseport", prog);
  return 0;
}
