/* Shared helpers for the benchmarks. Each benchmark runs herd and its anchors
 * (Node.js, nginx, a raw syscall loop) alternating in one run and prints one
 * line per measured figure:
 *
 *   RESULT {"bench":..,"metric":..,"unit":..,"better":"higher"|"lower",
 *           "herd":X,"node":Y,"limit":Z,"herd_vs_node":X/Y,...}
 *
 * Ratios are always herd / anchor; `better` says which way is good. */
#ifndef HERD_BENCH_H
#define HERD_BENCH_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Prints a RESULT line. After `herd`, pass `n` pairs (const char* anchor,
 * double value); a negative value means "not measured" and is left out. */
static inline void bench_result(const char* bench, const char* metric,
                                const char* unit, const char* better,
                                double herd, int n, ...) {
  char line[2048];
  size_t len = 0;
  const char* names[8];
  double vals[8];
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n && i < 8; i++) {
    names[i] = va_arg(ap, const char*);
    vals[i] = va_arg(ap, double);
  }
  va_end(ap);
#define APPEND(...) \
  len += (size_t)snprintf(line + len, sizeof(line) - len, __VA_ARGS__)
  APPEND(
      "RESULT {\"bench\":\"%s\",\"metric\":\"%s\",\"unit\":\"%s\","
      "\"better\":\"%s\",\"herd\":%.6g",
      bench, metric, unit, better, herd);
  for (int i = 0; i < n && i < 8; i++)
    if (vals[i] >= 0)
      APPEND(",\"%s\":%.6g", names[i], vals[i]);
  for (int i = 0; i < n && i < 8; i++)
    if (vals[i] > 0)
      APPEND(",\"herd_vs_%s\":%.4f", names[i], herd / vals[i]);
  APPEND("}");
#undef APPEND
  printf("%s\n", line);
  fflush(stdout);
}

/* Median of `n` doubles (sorts in place). */
static inline int bench__cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}
static inline double bench_median(double* v, int n) {
  qsort(v, (size_t)n, sizeof(double), bench__cmp);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif /* HERD_BENCH_H */
