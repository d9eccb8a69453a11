/* W7 cancellation, plain C on libuv: N timers pending "forever" stand for N
 * blocked tasks; cancelling = stop and close every one, then run the loop
 * until all close callbacks have run. Timed from the first close. */
#include <uv.h>
#include "bench.h"

static long closed;
static void on_timer(uv_timer_t *t) { (void)t; abort(); }
static void on_close(uv_handle_t *h) { (void)h; closed++; }

int main(int argc, char **argv) {
  long n = bench_arg(argc, argv, 1, 100000);
  uv_timer_t *timers = malloc(sizeof *timers * (size_t)n);
  uv_loop_t *loop = uv_default_loop();
  for (long i = 0; i < n; i++) {
    uv_timer_init(loop, &timers[i]);
    uv_timer_start(&timers[i], on_timer, (uint64_t)1 << 40, 0);
  }
  uv_run(loop, UV_RUN_NOWAIT); /* everything is now pending in the loop */
  double t0 = bench_now();
  for (long i = 0; i < n; i++) {
    uv_timer_stop(&timers[i]);
    uv_close((uv_handle_t *)&timers[i], on_close);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  double secs = bench_now() - t0;
  if (closed != n) return 1;
  bench_report("W7", "c-libuv", n, secs, NULL);
  return 0;
}
