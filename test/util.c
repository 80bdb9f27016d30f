#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char* const* test_helper_args(const char* name, const char* extra1,
                                    const char* extra2) {
  static const char* args[5];
  args[0] = "--helper";
  args[1] = name;
  args[2] = extra1;
  args[3] = extra1 ? extra2 : NULL;
  args[4] = NULL;
  return args;
}

const char* test_source_dir(void) {
  return HERD_SOURCE_DIR;
}

const char* test_binary_dir(void) {
  return HERD_BINARY_DIR;
}

static void walk_cb(uv_handle_t* handle, void* arg) {
  (void)arg;
  fprintf(stderr, "handle left open: %s %p%s\n",
          uv_handle_type_name(uv_handle_get_type(handle)), (void*)handle,
          uv_is_closing(handle) ? " (closing)" : "");
}

void test_loop_close(uv_loop_t* loop) {
  int r;
  /* Let pending close callbacks run. */
  uv_run(loop, UV_RUN_NOWAIT);
  r = uv_loop_close(loop);
  if (r != 0) {
    uv_walk(loop, walk_cb, NULL);
    FATAL("uv_loop_close: %s", uv_err_name(r));
  }
}

void test_loop_run_close(uv_loop_t* loop) {
  ASSERT_EQ(uv_run(loop, UV_RUN_DEFAULT), 0);
  test_loop_close(loop);
}

int test_count_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent* de;
  ASSERT(d != NULL);
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own fd */
}

void test_assert_no_children(int ms) {
  for (int waited = 0;; waited += 10) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    /* WNOWAIT: look, do not reap; reaping is herd's job. __WALL: a child
     * of herd's has no exit signal until it execs, which hides it from a
     * wait without that flag. */
    int r = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL);
    if (r == -1 && errno == ECHILD)
      return;
    if (waited >= ms) {
      if (r == 0 && info.si_pid != 0)
        FATAL("zombie child %d left unreaped", (int)info.si_pid);
      FATAL("a child process is still running at the end of the test");
    }
    test_sleep_ms(10);
  }
}

void test_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

char* test_read_file(const char* path, size_t* len) {
  FILE* f = fopen(path, "rb");
  char* buf = NULL;
  size_t n = 0, cap = 0;
  if (f == NULL)
    return NULL;
  for (;;) {
    if (cap - n < 4096) {
      cap = cap ? cap * 2 : 8192;
      char* nb = realloc(buf, cap);
      ASSERT(nb != NULL);
      buf = nb;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    if (r == 0)
      break;
    n += r;
  }
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}
