/*
 * deadline.c: the runtime's one deadline heap and its firing. Sleeps and
 * cancel-scope deadlines are entries of a 4-ary min-heap ordered by
 * (when, seq), so a hundred thousand sleepers cost one libuv timer, armed by
 * sched.c for the earliest entry. A due timer leaves the heap and runs the
 * fire function its owner stored in it: the heap knows no kinds of timer.
 *
 * Layout: an entry is {when, tm} (16 bytes), so a comparison reads the heap
 * array only; the timer (inside a task or a scope, elsewhere in memory) is
 * read for its seq only when two deadlines are equal, and written only for
 * its index (which keeps removal O(log n)). Node i's children are
 * 4i+1 .. 4i+4; the array starts HEAP_PAD entries into a 64-byte aligned
 * block, so that every group of four siblings fills one cache line.
 */
#include <stdint.h>
#include <stdlib.h>
#ifdef _WIN32
#include <malloc.h> /* _aligned_malloc */
#endif
#include <string.h>

#include "loom_internal.h"

#define HEAP_ALIGN 64
#define HEAP_PAD 3 /* (4i + 1 + HEAP_PAD) * 16 is a multiple of 64 */

void loom__timer_init(loom_timer *tm, loom_timer_fn fire) {
  tm->when = 0;
  tm->seq = 0;
  tm->index = LOOM_NOT_IN_HEAP;
  tm->fire = fire;
}

/* Does entry a fire before entry b? Equal deadlines: insertion order. */
static inline int before(const loom_heap_entry *a, const loom_heap_entry *b) {
  return a->when < b->when || (a->when == b->when && a->tm->seq < b->tm->seq);
}

static inline void place(loom_heap_entry *h, size_t i, loom_heap_entry e) {
  h[i] = e;
  e.tm->index = i;
}

/* Debug builds: the whole heap's invariants, checked after every change
 * while the heap is small (O(n) each), so that the specs' short heaps are
 * checked fully and long benchmarks stay O(log n). */
#ifdef LOOM_DEBUG
static void heap_check(const loom_rt *rt) {
  size_t i;
  if (rt->heap_len > 256) return;
  LOOM_ASSERT(rt->heap_len <= rt->heap_cap);
  /* (16-byte entries: 64-bit targets) */
  LOOM_ASSERT(rt->heap == NULL || sizeof *rt->heap != 16 ||
              (uintptr_t)(rt->heap + 1) % HEAP_ALIGN == 0);
  for (i = 0; i < rt->heap_len; i++) {
    const loom_heap_entry *e = &rt->heap[i];
    LOOM_ASSERT(e->tm->index == i);
    LOOM_ASSERT(e->tm->when == e->when);
    LOOM_ASSERT(e->tm->fire != NULL);
    LOOM_ASSERT(i == 0 || !before(e, &rt->heap[(i - 1) / 4]));
  }
}
#else
#define heap_check(rt) ((void)0)
#endif

static void sift_up(loom_heap_entry *h, size_t i, loom_heap_entry e) {
  while (i > 0) {
    size_t p = (i - 1) / 4;
    if (!before(&e, &h[p])) break;
    place(h, i, h[p]);
    i = p;
  }
  place(h, i, e);
}

/* The smallest of the four siblings from c (all present): a tournament,
 * correct for any order since (when, seq) never ties. */
static inline size_t min4(const loom_heap_entry *h, size_t c) {
  size_t a = before(&h[c + 1], &h[c]) ? c + 1 : c;
  size_t b = before(&h[c + 3], &h[c + 2]) ? c + 3 : c + 2;
  return before(&h[b], &h[a]) ? b : a;
}

/* Fill the hole at i with e, e no earlier than i's parent: e sinks along
 * the smallest children while one is earlier. */
static void sift_down(loom_heap_entry *h, size_t n, size_t i,
                      loom_heap_entry e) {
  size_t c;
  while ((c = 4 * i + 1) + 3 < n) {
    c = min4(h, c);
    if (!before(&h[c], &e)) goto done;
    place(h, i, h[c]);
    i = c;
  }
  if (c < n) { /* one to three children, the last of the heap */
    size_t m = c;
    for (c++; c < n; c++)
      if (before(&h[c], &h[m])) m = c;
    if (before(&h[m], &e)) {
      place(h, i, h[m]);
      i = m;
    }
  }
done:
  place(h, i, e);
}

/* The heap's block, HEAP_ALIGN-aligned (realloc would lose that). */
static void *block_alloc(size_t size) {
#ifdef _WIN32
  return _aligned_malloc(size, HEAP_ALIGN);
#else
  void *p;
  return posix_memalign(&p, HEAP_ALIGN, size) == 0 ? p : NULL;
#endif
}

static void block_free(loom_heap_entry *h) {
#ifdef _WIN32
  _aligned_free(h - HEAP_PAD);
#else
  free(h - HEAP_PAD);
#endif
}

/* Grow to hold at least one more entry: allocate, copy, free. Returns 0 on
 * allocation failure (the heap unchanged). */
static int grow(loom_rt *rt) {
  size_t cap = rt->heap_cap ? rt->heap_cap * 2 : 64;
  loom_heap_entry *h;
  if (cap > ((size_t)-1) / sizeof *h - HEAP_PAD) return 0;
  h = block_alloc((cap + HEAP_PAD) * sizeof *h);
  if (h == NULL) return 0;
  h += HEAP_PAD;
  if (rt->heap_len > 0) memcpy(h, rt->heap, rt->heap_len * sizeof *h);
  if (rt->heap != NULL) block_free(rt->heap);
  rt->heap = h;
  rt->heap_cap = cap;
  return 1;
}

/* Make room for one more entry, so that the next insert cannot fail.
 * Returns 0 on allocation failure. */
int loom__heap_reserve(loom_rt *rt) {
  return rt->heap_len < rt->heap_cap || grow(rt);
}

/* Insert (or move) tm to fire at `when`. Returns 0 on allocation failure
 * (tm then out of the heap). */
int loom__heap_insert(loom_rt *rt, loom_timer *tm, double when) {
  loom_heap_entry e;
  LOOM_ASSERT(tm->fire != NULL);
  if (tm->index != LOOM_NOT_IN_HEAP) loom__heap_remove(rt, tm);
  if (!loom__heap_reserve(rt)) return 0;
  tm->when = when;
  tm->seq = rt->timer_seq++;
  e.when = when;
  e.tm = tm;
  sift_up(rt->heap, rt->heap_len++, e);
  heap_check(rt);
  return 1;
}

void loom__heap_remove(loom_rt *rt, loom_timer *tm) {
  loom_heap_entry *h = rt->heap, last;
  size_t i = tm->index;
  if (i == LOOM_NOT_IN_HEAP) return;
  LOOM_ASSERT(i < rt->heap_len && h[i].tm == tm);
  tm->index = LOOM_NOT_IN_HEAP;
  last = h[--rt->heap_len];
  if (i < rt->heap_len) {
    if (i > 0 && before(&last, &h[(i - 1) / 4])) sift_up(h, i, last);
    else sift_down(h, rt->heap_len, i, last);
  }
  heap_check(rt);
}

loom_timer *loom__heap_min(loom_rt *rt) {
  return rt->heap_len ? rt->heap[0].tm : NULL;
}

/* Take every timer out of the heap (their index says so) and free it. The
 * runtime's teardown; a later insert makes a new heap. */
void loom__heap_free(loom_rt *rt) {
  size_t i;
  for (i = 0; i < rt->heap_len; i++) rt->heap[i].tm->index = LOOM_NOT_IN_HEAP;
  if (rt->heap != NULL) block_free(rt->heap);
  rt->heap = NULL;
  rt->heap_len = rt->heap_cap = 0;
}

/* The due minimum leaves by the root's hole: the last entry sinks from the
 * root. A fire function may insert and remove timers (a scope's cancel
 * aborts sleeps), so the heap is re-read on every turn. */
void loom__fire_timers_at(loom_rt *rt, lua_State *S, double now) {
  while (rt->heap_len > 0 && rt->heap[0].when <= now) {
    loom_timer *tm = rt->heap[0].tm;
    loom_heap_entry last;
    tm->index = LOOM_NOT_IN_HEAP;
    last = rt->heap[--rt->heap_len];
    if (rt->heap_len > 0) sift_down(rt->heap, rt->heap_len, 0, last);
    heap_check(rt);
    tm->fire(S, rt, tm);
  }
}

void loom__fire_timers(loom_rt *rt, lua_State *S) {
  if (rt->heap_len > 0) loom__fire_timers_at(rt, S, loom__time(rt));
}
