/* Shared helpers for the plain C (libuv) bench programs. Each prints one line:
 *   workload impl N seconds ops_per_sec peak_rss_kb [extra=k=v] */
#ifndef BENCH_H
#define BENCH_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline long bench_status_kb(const char *field) {
  char line[256];
  size_t len = strlen(field);
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, len) == 0 && line[len] == ':') {
      kb = strtol(line + len + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kb;
}

static inline long bench_arg(int argc, char **argv, int i, long d) {
  return argc > i ? (long)strtod(argv[i], NULL) : d;
}

/* W4 delays in whole ms, 0..100: minstd (Park-Miller), seed 42. */
static inline int *bench_delays_ms(long n, int *max) {
  int *out = malloc(sizeof *out * (size_t)n);
  unsigned long long x = 42;
  *max = 0;
  for (long i = 0; i < n; i++) {
    x = x * 48271ULL % 2147483647ULL;
    out[i] = (int)(x % 101);
    if (out[i] > *max) *max = out[i];
  }
  return out;
}

static inline void bench_report(const char *workload, const char *impl, long n,
                         double seconds, const char *extra) {
  printf("%s %s %ld %.6f %.1f %ld", workload, impl, n, seconds, (double)n / seconds,
         bench_status_kb("VmHWM"));
  if (extra && *extra) printf(" extra=%s", extra);
  printf("\n");
}
#endif
