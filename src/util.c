#include "internal.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Sets or clears `bit` in the flags that fcntl() reads with `get` and
 * writes with `put`. */
static int fd_flag(int fd, int get, int put, int bit, int set) {
  int flags = fcntl(fd, get);
  if (flags == -1)
    return -errno;
  flags = set ? (flags | bit) : (flags & ~bit);
  if (fcntl(fd, put, flags) == -1)
    return -errno;
  return 0;
}

int herd__cloexec(int fd, int set) {
  return fd_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, set);
}

int herd__nonblock(int fd, int set) {
  return fd_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, set);
}

/* The allocator every piece of herd uses (herd_replace_allocator()). Read
 * without a lock: it may only be replaced before herd allocates anything,
 * as with uv_replace_allocator(). */
static struct {
  herd_malloc_func malloc;
  herd_realloc_func realloc;
  herd_calloc_func calloc;
  herd_free_func free;
} allocator = {malloc, realloc, calloc, free};

int herd_replace_allocator(herd_malloc_func malloc_func,
                           herd_realloc_func realloc_func,
                           herd_calloc_func calloc_func,
                           herd_free_func free_func) {
  if (malloc_func == NULL || realloc_func == NULL || calloc_func == NULL ||
      free_func == NULL)
    return UV_EINVAL;
  allocator.malloc = malloc_func;
  allocator.realloc = realloc_func;
  allocator.calloc = calloc_func;
  allocator.free = free_func;
  return 0;
}

void* herd__malloc(size_t size) {
  return allocator.malloc(size);
}

void* herd__calloc(size_t n, size_t size) {
  return allocator.calloc(n, size);
}

void* herd__realloc(void* p, size_t size) {
  return allocator.realloc(p, size);
}

char* herd__strdup(const char* s) {
  size_t n = strlen(s) + 1;
  char* d = allocator.malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

void herd__free(void* p) {
  /* free() keeps errno; a replaced free might not, and callers report
   * errno after cleaning up. */
  int saved = errno;
  allocator.free(p);
  errno = saved;
}

size_t herd__utf8_put(char* out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xe0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (char)(0xf0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

int herd__reuseport_steer(int fd, const int* index, int n) {
  struct sock_filter stack[64];
  struct sock_filter* f = stack;
  struct sock_fprog prog;
  int len = n <= 1 ? 1 : 2 * n + 1;
  int r = 0, k = 0, zero = 0;

  if (n == 0) {
    if (setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &zero,
                   sizeof(zero)) == 0 ||
        errno == ENOENT)
      return 0;
    /* A kernel without SO_DETACH_REUSEPORT_BPF (before 5.8): an index
     * out of range makes the kernel fall back to its hash. */
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffffffffu);
  } else if (n == 1) {
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (uint32_t)index[0]);
  } else {
    if ((size_t)len > HERD_ARRAY_SIZE(stack)) {
      f = herd__malloc((size_t)len * sizeof(*f));
      if (f == NULL)
        return UV_ENOMEM;
    }
    /* A = random % n, then "A == i: return index[i]". */
    f[k++] = (struct sock_filter)BPF_STMT(
        BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM));
    f[k++] =
        (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (uint32_t)n);
    for (int i = 0; i < n - 1; i++) {
      f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                            (uint32_t)i, 0, 1);
      f[k++] =
          (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (uint32_t)index[i]);
    }
    f[k++] =
        (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (uint32_t)index[n - 1]);
  }
  prog.len = (unsigned short)k;
  prog.filter = f;
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog,
                 sizeof(prog)) != 0)
    r = -errno;
  if (f != stack)
    herd__free(f);
  return r;
}
