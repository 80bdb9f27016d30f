/* sd_listen_fds(3) for herd itself: the sockets of socket activation. See
 * include/herd/systemd.h. */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* pidfs, where each process's pidfd has an inode number of its own. */
#define PIDFS_MAGIC 0x50494446

static int parse_int(const char* s, long long max, long long* v) {
  long long n = 0;
  if (s == NULL || *s == '\0')
    return UV_EINVAL;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return UV_EINVAL;
    n = n * 10 + (*s - '0');
    if (n > max)
      return UV_EINVAL;
  }
  *v = n;
  return 0;
}

/* Whether LISTEN_PIDFDID, when set, names this process: systemd sets it
 * next to LISTEN_PID so that a pid recycled by another process cannot
 * take the sockets. Without pidfs (older kernels) it cannot be checked
 * and, as in systemd, LISTEN_PID alone decides. */
static int pidfdid_is_ours(const char* e) {
  long long want;
  struct statfs sfs;
  struct stat st;
  int fd, ours = 1;
  if (e == NULL)
    return 1;
  if (parse_int(e, LLONG_MAX, &want) != 0)
    return UV_EINVAL;
#ifdef SYS_pidfd_open
  fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (fd < 0)
    return 1;
  if (fstatfs(fd, &sfs) == 0 && sfs.f_type == PIDFS_MAGIC &&
      fstat(fd, &st) == 0)
    ours = (unsigned long long)st.st_ino == (unsigned long long)want;
  close(fd);
#endif
  return ours;
}

static void unset_listen_env(void) {
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_PIDFDID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

/* The names of LISTEN_FDNAMES (or "unknown" n times) as one allocation: n+1
 * pointers followed by the strings. */
static int split_names(const char* e, int n, char*** out) {
  size_t len = e != NULL ? strlen(e) + 1 : (size_t)n * sizeof("unknown");
  size_t count = 1;
  char** v;
  char* s;
  if (e != NULL)
    for (const char* p = e; *p != '\0'; p++)
      count += *p == ':';
  if (e != NULL && count != (size_t)n)
    return UV_EINVAL;
  v = herd__malloc(((size_t)n + 1) * sizeof(char*) + len);
  if (v == NULL)
    return UV_ENOMEM;
  s = (char*)(v + n + 1);
  for (int i = 0; i < n; i++) {
    if (e == NULL) {
      memcpy(s, "unknown", sizeof("unknown"));
      v[i] = s;
      s += sizeof("unknown");
    } else {
      const char* end = strchr(e, ':');
      size_t k = end != NULL ? (size_t)(end - e) : strlen(e);
      memcpy(s, e, k);
      s[k] = '\0';
      v[i] = s;
      s += k + 1;
      e += k + (end != NULL);
    }
  }
  v[n] = NULL;
  *out = v;
  return 0;
}

int herd_sd_listen_fds(unsigned flags, char*** names) {
  const char* e = getenv("LISTEN_PID");
  long long pid, n = 0;
  int r = 0;

  if (names != NULL)
    *names = NULL;
  if (e == NULL)
    goto done;
  if (parse_int(e, INT_MAX, &pid) != 0 || pid == 0) {
    r = UV_EINVAL;
    goto done;
  }
  if (pid != getpid())
    goto done;
  r = pidfdid_is_ours(getenv("LISTEN_PIDFDID"));
  if (r <= 0)
    goto done;
  r = 0;
  e = getenv("LISTEN_FDS");
  if (e == NULL)
    goto done;
  if (parse_int(e, INT_MAX - HERD_SD_LISTEN_FDS_START, &n) != 0 || n == 0) {
    r = UV_EINVAL;
    goto done;
  }
  for (int fd = HERD_SD_LISTEN_FDS_START;
       fd < HERD_SD_LISTEN_FDS_START + (int)n; fd++) {
    r = herd__cloexec(fd, 1);
    if (r != 0)
      goto done;
  }
  if (names != NULL) {
    r = split_names(getenv("LISTEN_FDNAMES"), (int)n, names);
    if (r != 0)
      goto done;
  }
  r = (int)n;

done:
  if (flags & HERD_SD_UNSET_ENV)
    unset_listen_env();
  return r;
}

void herd_sd_names_free(char** names) {
  herd__free(names);
}
