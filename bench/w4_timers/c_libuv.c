/* W4 timers, plain C on libuv: N one-shot uv timers, each with a delay of
 * 0..100 ms from the shared minstd sequence; time until the loop runs dry. */
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
  double t0 = bench_now();
  uv_update_time(loop); /* delays count from t0 */
  for (long i = 0; i < n; i++) {
    uv_timer_init(loop, &timers[i]);
    uv_timer_start(&timers[i], on_timer, (uint64_t)delay[i], 0);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  double secs = bench_now() - t0;
  if (fired != n) return 1;
  char extra[64];
  snprintf(extra, sizeof extra, "overhead_ms=%.1f", (secs - max / 1000.0) * 1000);
  bench_report("W4", "c-libuv", n, secs, extra);
  return 0;
}
