/* The test runner. With no argument it runs every test, each in its own
 * process (its own process group) with a timeout, a few at a time, and ends
 * with "N passed, N failed". With a test name it runs that one test in this
 * process (handy under gdb or valgrind). `--helper NAME args...` runs a
 * helper: tests start helpers by re-executing this binary.
 *
 * Every test process, after the test returns, checks that no child process
 * is left (running or zombie) and that no fd leaked. */
#include "list.h"
#include "task.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DECLARE_TEST(name, timeout) int run_test_##name(void);
#define DECLARE_HELPER(name)        int run_helper_##name(int argc, char** argv);
HERD_ALL_TESTS(DECLARE_TEST, DECLARE_HELPER)

typedef struct {
  const char* name;
  int (*test)(void);
  int (*helper)(int argc, char** argv);
  int timeout_ms;
} entry_t;

#define TEST_ENTRY(name, timeout) {#name, run_test_##name, NULL, timeout},
#define HELPER_ENTRY(name)        {#name, NULL, run_helper_##name, 0},
static const entry_t entries[] = {
    HERD_ALL_TESTS(TEST_ENTRY, HELPER_ENTRY){NULL, NULL, NULL, 0}};

static char exe_path[4096];

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const entry_t* find(const char* name, int helper) {
  for (const entry_t* e = entries; e->name != NULL; e++)
    if (strcmp(e->name, name) == 0 &&
        (helper ? e->helper != NULL : e->test != NULL))
      return e;
  return NULL;
}

/* The open fds of this process, sorted, as a bitmap over the first
 * MAX_FDS numbers (a test never legitimately holds more). */
#define MAX_FDS 4096
typedef struct {
  unsigned char open[MAX_FDS / 8];
} fdset_t;

static void list_fds(fdset_t* set) {
  DIR* d = opendir("/proc/self/fd");
  struct dirent* de;
  memset(set, 0, sizeof(*set));
  if (d == NULL)
    return;
  while ((de = readdir(d)) != NULL) {
    int fd = atoi(de->d_name);
    if (de->d_name[0] == '.' || fd == dirfd(d) || fd < 0 || fd >= MAX_FDS)
      continue;
    set->open[fd / 8] |= (unsigned char)(1u << (fd % 8));
  }
  closedir(d);
}

/* Prints the fds open in `after` but not in `before`; returns their count. */
static int report_new_fds(const fdset_t* before, const fdset_t* after) {
  int n = 0;
  for (int fd = 0; fd < MAX_FDS; fd++) {
    int was = before->open[fd / 8] & (1u << (fd % 8));
    int is = after->open[fd / 8] & (1u << (fd % 8));
    if (was != is) {
      char path[64], target[256];
      ssize_t len;
      snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
      len = readlink(path, target, sizeof(target) - 1);
      target[len > 0 ? len : 0] = '\0';
      fprintf(stderr, "fd %d %s during the test (%s)\n", fd,
              is ? "leaked" : "was closed", target);
      n++;
    }
  }
  return n;
}

/* Runs one test in this process, with the end-of-test checks. */
static int run_one(const entry_t* e) {
  fdset_t before, after;
  uv_loop_t warm;
  int r;

  /* libuv opens process-wide fds (its signal lock pipe) on the first loop;
   * open them before taking the snapshot. */
  uv_loop_init(&warm);
  uv_loop_close(&warm);
  signal(SIGPIPE, SIG_IGN);

  list_fds(&before);
  r = e->test();
  if (r != 0) {
    fprintf(stderr, "test %s returned %d\n", e->name, r);
    return r;
  }
  test_assert_no_children(5000);
  /* herd's reaper thread closes a child's pidfd just after reaping it: fds
   * get a short deadline too. */
  for (int waited = 0;; waited += 10) {
    list_fds(&after);
    if (memcmp(&before, &after, sizeof(before)) == 0 || waited >= 1000)
      break;
    test_sleep_ms(10);
  }
  if (report_new_fds(&before, &after) != 0) {
    fprintf(stderr, "fd leak in %s\n", e->name);
    return 1;
  }
  return 0;
}

typedef struct {
  const entry_t* e;
  pid_t pid;
  uint64_t start;
  int out_fd; /* the test's combined stdout+stderr, in a temp file */
} slot_t;

static void print_output(int fd) {
  char buf[4096];
  ssize_t n;
  lseek(fd, 0, SEEK_SET);
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    fwrite(buf, 1, (size_t)n, stdout);
  }
}

static int start_test(slot_t* s, const entry_t* e) {
  char tmpl[] = "/tmp/herd-test-XXXXXX";
  int fd = mkostemp(tmpl, O_CLOEXEC);
  pid_t pid;
  if (fd < 0)
    return -1;
  unlink(tmpl);
  pid = fork();
  if (pid < 0) {
    close(fd);
    return -1;
  }
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(exe_path, exe_path, e->name, (char*)NULL);
    _exit(127);
  }
  setpgid(pid, pid);
  s->e = e;
  s->pid = pid;
  s->start = now_ms();
  s->out_fd = fd;
  return 0;
}

static int run_all(int jobs, const char* filter) {
  slot_t slots[16];
  const entry_t* next = entries;
  int running = 0, passed = 0, failed = 0, total = 0;
  char failures[8192] = "";

  if (jobs < 1)
    jobs = 1;
  if (jobs > 16)
    jobs = 16;
  memset(slots, 0, sizeof(slots));
  for (const entry_t* e = entries; e->name; e++)
    if (e->test && (!filter || strstr(e->name, filter)))
      total++;
  printf("1..%d\n", total);
  fflush(stdout);

  for (;;) {
    while (running < jobs && next->name != NULL) {
      const entry_t* e = next++;
      if (e->test == NULL || (filter && !strstr(e->name, filter)))
        continue;
      for (int i = 0; i < jobs; i++) {
        if (slots[i].e == NULL) {
          if (start_test(&slots[i], e) != 0) {
            printf("not ok - %s (could not start: %s)\n", e->name,
                   strerror(errno));
            failed++;
          } else {
            running++;
          }
          break;
        }
      }
    }
    if (running == 0)
      break;

    for (int i = 0; i < jobs; i++) {
      slot_t* s = &slots[i];
      int status;
      pid_t r;
      if (s->e == NULL)
        continue;
      r = waitpid(s->pid, &status, WNOHANG);
      uint64_t elapsed = now_ms() - s->start;
      if (r == 0 && elapsed > (uint64_t)s->e->timeout_ms) {
        kill(-s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        kill(-s->pid, SIGKILL);
        print_output(s->out_fd);
        printf("not ok - %s (timeout after %d ms)\n", s->e->name,
               s->e->timeout_ms);
        failed++;
        strncat(failures, s->e->name, sizeof(failures) - strlen(failures) - 2);
        strcat(failures, " ");
      } else if (r == s->pid) {
        /* Whatever the test left in its process group goes too. */
        kill(-s->pid, SIGKILL);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
          printf("ok - %s (%llu ms)\n", s->e->name,
                 (unsigned long long)elapsed);
          passed++;
        } else {
          print_output(s->out_fd);
          if (WIFSIGNALED(status))
            printf("not ok - %s (signal %d)\n", s->e->name, WTERMSIG(status));
          else
            printf("not ok - %s (exit %d)\n", s->e->name, WEXITSTATUS(status));
          failed++;
          strncat(failures, s->e->name,
                  sizeof(failures) - strlen(failures) - 2);
          strcat(failures, " ");
        }
      } else {
        continue;
      }
      fflush(stdout);
      close(s->out_fd);
      s->e = NULL;
      running--;
    }
    poll(NULL, 0, 5);
  }
  if (failed)
    printf("failed: %s\n", failures);
  printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  return failed ? 1 : 0;
}

int main(int argc, char** argv) {
  ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
  if (n < 0)
    return 2;
  exe_path[n] = '\0';
  setvbuf(stdout, NULL, _IOLBF, 0);

  if (argc >= 3 && strcmp(argv[1], "--helper") == 0) {
    const entry_t* e = find(argv[2], 1);
    if (e == NULL) {
      fprintf(stderr, "no helper %s\n", argv[2]);
      return 2;
    }
    return e->helper(argc - 2, argv + 2);
  }
  if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
    for (const entry_t* e = entries; e->name; e++)
      if (e->test)
        printf("%s\n", e->name);
    return 0;
  }
  if (argc >= 2 && argv[1][0] != '-') {
    const entry_t* e = find(argv[1], 0);
    if (e == NULL) {
      fprintf(stderr, "no test %s\n", argv[1]);
      return 2;
    }
    return run_one(e);
  }
  {
    const char* j = getenv("HERD_TEST_JOBS");
    const char* filter = NULL;
    int jobs = j ? atoi(j) : 2;
    if (argc >= 3 && strcmp(argv[1], "--filter") == 0)
      filter = argv[2];
    return run_all(jobs, filter);
  }
}

const char* test_exe(void) {
  return exe_path;
}
