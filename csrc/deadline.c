/*
 * deadline.c: the runtime's one deadline heap and its firing. Sleeps and
 * cancel-scope deadlines are entries of a binary min-heap ordered by
 * (when, seq), so a hundred thousand sleepers cost one libuv timer, armed by
 * sched.c for the earliest entry. A due timer leaves the heap and runs the
 * fire function its owner stored in it: the heap knows no kinds of timer.
 */
#include <stdlib.h>

#include "loom_internal.h"

void loom__timer_init(loom_timer *tm, loom_timer_fn fire) {
  tm->when = 0;
  tm->seq = 0;
  tm->index = LOOM_NOT_IN_HEAP;
  tm->fire = fire;
}

static int before(const loom_timer *a, const loom_timer *b) {
  return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void place(loom_rt *rt, size_t i, loom_timer *tm) {
  rt->heap[i] = tm;
  tm->index = i;
}

static void sift_up(loom_rt *rt, size_t i) {
  loom_timer *tm = rt->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(tm, rt->heap[p])) break;
    place(rt, i, rt->heap[p]);
    i = p;
  }
  place(rt, i, tm);
}

static void sift_down(loom_rt *rt, size_t i) {
  loom_timer *tm = rt->heap[i];
  size_t n = rt->heap_len;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && before(rt->heap[c + 1], rt->heap[c])) c++;
    if (!before(rt->heap[c], tm)) break;
    place(rt, i, rt->heap[c]);
    i = c;
  }
  place(rt, i, tm);
}

/* Make room for one more entry, so that the next insert cannot fail.
 * Returns 0 on allocation failure. */
int loom__heap_reserve(loom_rt *rt) {
  if (rt->heap_len == rt->heap_cap) {
    size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
    loom_timer **h = realloc(rt->heap, cap * sizeof *h);
    if (h == NULL) return 0;
    rt->heap = h;
    rt->heap_cap = cap;
  }
  return 1;
}

/* Insert (or move) tm to fire at `when`. Returns 0 on allocation failure. */
int loom__heap_insert(loom_rt *rt, loom_timer *tm, double when) {
  if (tm->index != LOOM_NOT_IN_HEAP) loom__heap_remove(rt, tm);
  if (rt->heap_len == rt->heap_cap) {
    size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
    loom_timer **h = realloc(rt->heap, cap * sizeof *h);
    if (h == NULL) return 0;
    rt->heap = h;
    rt->heap_cap = cap;
  }
  LOOM_ASSERT(tm->fire != NULL);
  tm->when = when;
  tm->seq = rt->timer_seq++;
  rt->heap[rt->heap_len] = tm;
  tm->index = rt->heap_len++;
  sift_up(rt, tm->index);
  return 1;
}

void loom__heap_remove(loom_rt *rt, loom_timer *tm) {
  size_t i = tm->index;
  if (i == LOOM_NOT_IN_HEAP) return;
  tm->index = LOOM_NOT_IN_HEAP;
  rt->heap_len--;
  if (i == rt->heap_len) return;
  place(rt, i, rt->heap[rt->heap_len]);
  if (i > 0 && before(rt->heap[i], rt->heap[(i - 1) / 2])) sift_up(rt, i);
  else sift_down(rt, i);
}

loom_timer *loom__heap_min(loom_rt *rt) {
  return rt->heap_len ? rt->heap[0] : NULL;
}

void loom__fire_timers_at(loom_rt *rt, lua_State *S, double now) {
  loom_timer *tm;
  while ((tm = loom__heap_min(rt)) != NULL && tm->when <= now) {
    loom__heap_remove(rt, tm);
    tm->fire(S, rt, tm);
  }
}

void loom__fire_timers(loom_rt *rt, lua_State *S) {
  if (rt->heap_len > 0) loom__fire_timers_at(rt, S, loom__time(rt));
}
