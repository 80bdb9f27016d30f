/* The test framework: assertions, test and helper declarations, and the
 * checks every test ends with. One runner binary (runner.c) runs each test in
 * its own process; helper processes are the same binary re-executed. */
#ifndef HERD_TEST_TASK_H
#define HERD_TEST_TASK_H

#include "herd.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_IMPL(name)   int run_test_##name(void)
#define HELPER_IMPL(name) int run_helper_##name(int argc, char** argv)

#define FATAL(...)                                                 \
  do {                                                             \
    fprintf(stderr, "Fatal error in %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__);                                  \
    fprintf(stderr, "\n");                                         \
    fflush(stderr);                                                \
    abort();                                                       \
  } while (0)

#define ASSERT(expr)                        \
  do {                                      \
    if (!(expr))                            \
      FATAL("assertion failed: %s", #expr); \
  } while (0)

#define ASSERT_EQ(a, b)                                           \
  do {                                                            \
    int64_t a_ = (int64_t)(a);                                    \
    int64_t b_ = (int64_t)(b);                                    \
    if (a_ != b_)                                                 \
      FATAL("%s == %s: %" PRId64 " != %" PRId64, #a, #b, a_, b_); \
  } while (0)

#define ASSERT_NE(a, b)                             \
  do {                                              \
    int64_t a_ = (int64_t)(a);                      \
    int64_t b_ = (int64_t)(b);                      \
    if (a_ == b_)                                   \
      FATAL("%s != %s: both %" PRId64, #a, #b, a_); \
  } while (0)

#define ASSERT_GE(a, b)                                          \
  do {                                                           \
    int64_t a_ = (int64_t)(a);                                   \
    int64_t b_ = (int64_t)(b);                                   \
    if (!(a_ >= b_))                                             \
      FATAL("%s >= %s: %" PRId64 " < %" PRId64, #a, #b, a_, b_); \
  } while (0)

#define ASSERT_LE(a, b)                                          \
  do {                                                           \
    int64_t a_ = (int64_t)(a);                                   \
    int64_t b_ = (int64_t)(b);                                   \
    if (!(a_ <= b_))                                             \
      FATAL("%s <= %s: %" PRId64 " > %" PRId64, #a, #b, a_, b_); \
  } while (0)

/* For calls returning 0 or a negative herd/libuv error. */
#define ASSERT_OK(expr)                                     \
  do {                                                      \
    int r_ = (int)(expr);                                   \
    if (r_ != 0)                                            \
      FATAL("%s: %d %s (%s)", #expr, r_, herd_err_name(r_), \
            herd_strerror(r_));                             \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                           \
  do {                                                                \
    const char* a_ = (a);                                             \
    const char* b_ = (b);                                             \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)              \
      FATAL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", \
            b_ ? b_ : "(null)");                                      \
  } while (0)

/* The path of the runner binary, for re-executing it as a helper. */
const char* test_exe(void);
/* argv-style args for herd_spawn() to run helper `name`: {"--helper", name,
 * extra..., NULL}. Returns a static array (not reentrant). */
const char* const* test_helper_args(const char* name, const char* extra1,
                                    const char* extra2);
/* The source and build directories (for examples, node scripts, ...). */
const char* test_source_dir(void);
const char* test_binary_dir(void);

/* Asserts that every handle on `loop` is closed and closes the loop. */
void test_loop_close(uv_loop_t* loop);
/* Runs the loop (UV_RUN_DEFAULT) and then test_loop_close(). */
void test_loop_run_close(uv_loop_t* loop);
/* Number of fds open in this process, and whether fd `fd` is open. */
int test_count_fds(void);
/* Waits up to `ms` for all children of this process to be reaped by someone
 * else (herd); fails the test if any is left. */
void test_assert_no_children(int ms);
/* Sleeps `ms` milliseconds. */
void test_sleep_ms(int ms);
/* Reads a whole file into a malloc'd, NUL-terminated buffer, or NULL. */
char* test_read_file(const char* path, size_t* len);

#endif /* HERD_TEST_TASK_H */
