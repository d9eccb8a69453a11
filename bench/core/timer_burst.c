/* timer_burst.c: what libuv's timer heap costs when a burst of timers is
 * due at once (the W4 floor's firing phase after a long park): N one-shot
 * uv timers with the W4 delays (0..100 ms) are started, the process sleeps
 * past the longest, then one uv_run fires them all. Timed: that uv_run.
 * Built and run by bench/core/floors.sh. */
#include <unistd.h>
#include <uv.h>
#include "bench.h"

static long fired;
static void on_timer(uv_timer_t *t) { (void)t; fired++; }

int main(int argc, char **argv) {
  long n = bench_arg(argc, argv, 1, 100000);
  int max;
  int *delay = bench_delays_ms(n, &max);
  uv_timer_t *timers = malloc(sizeof *timers * (size_t)n);
  uv_loop_t *loop = uv_default_loop();
  uv_update_time(loop);
  for (long i = 0; i < n; i++) {
    uv_timer_init(loop, &timers[i]);
    uv_timer_start(&timers[i], on_timer, (uint64_t)delay[i], 0);
  }
  usleep((useconds_t)(max + 10) * 1000);
  double t0 = bench_now();
  uv_run(loop, UV_RUN_DEFAULT);
  double secs = bench_now() - t0;
  if (fired != n) return 1;
  char extra[64];
  snprintf(extra, sizeof extra, "ns_per_timer=%.1f", secs * 1e9 / n);
  bench_report("W4", "c-libuv-burst", n, secs, extra);
  return 0;
}
