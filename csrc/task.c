/*
 * task.c: tasks and their handles. A task is a C struct (struct loom_task,
 * from this file's slabs, outside the Lua heap) that runs on a pooled
 * coroutine from its first resume to its end; its TaskHandle is a small
 * userdata (struct loom_handle) that outlives it. Its completion
 * (loom__task_finish) moves the outcome into the handle, wakes the tasks
 * waiting on it and reports to its group. Also the anchor table of live
 * tasks, the coroutine pool, the message handler and core.rethrow.
 */
#define _GNU_SOURCE /* posix_memalign, MAP_ANONYMOUS, MAP_POPULATE */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "loom_internal.h"

/* ---- task structs: slabs per runtime ---------------------------------- *
 * Task structs come from slabs of SLAB_BYTES, aligned to their size so that
 * a struct finds its slab from its address. A slab with free structs is on
 * rt->slabs_partial, a full one on rt->slabs_full. Taking and giving back a
 * struct is a few pointer moves (a burst of spawns calls malloc once per
 * slab, not once per task); loom__tasks_trim frees the slabs entirely free
 * beyond TASK_POOL_MAX free structs when the scheduler goes idle, so that a
 * burst does not keep its memory after it.
 *
 * A runtime's first SMALL_SLABS slabs are allocated one by one. Beyond
 * them the slabs are cut from regions of REGION_BYTES. Slabs from
 * posix_memalign one by one lay between alignment gaps that other
 * allocations (coroutines, handles) then filled, so walking many tasks (a
 * cancellation wakes every task of a group) strode through unrelated
 * memory, and each slab cost about twice its size; from a region they are
 * contiguous (W7 -9 %, W1 -11 %). The regions are not advised as huge
 * pages: that gained another ~8 % on W1, but on a virtual machine whose
 * idle memory goes back to the host, the first burst after a pause then
 * spent up to a second in the kernel faulting them in. A region goes back
 * to the system when the trim has given back all of its slabs (one empty
 * region is kept); a slab given back before that is kept in its region
 * and handed out again first. On Linux a region's pages are populated when
 * it is mapped (see region_map). */

#define SLAB_BYTES 16384
#define TASK_POOL_MAX 1024 /* free task structs kept while idle */
#define SMALL_SLABS 8      /* slabs allocated one by one (~400 tasks) */
#define REGION_BYTES ((size_t)2 << 20)
#define REGION_SLABS ((int)(REGION_BYTES / SLAB_BYTES))

typedef struct task_slab task_slab;

/* A region's slabs: never-used ones (from `carved` on) and given-back ones
 * (on `spare`). On rt->regions while it has any (live < REGION_SLABS). */
typedef struct slab_region {
  loom_list link;   /* in rt->regions while it has a slab to give */
  char *base;       /* REGION_BYTES, SLAB_BYTES-aligned */
  task_slab *spare; /* slabs given back, linked through their free field */
  int carved;       /* slabs cut from base so far */
  int live;         /* slabs handed out and not given back */
} slab_region;

struct task_slab {
  loom_list link;      /* in rt->slabs_partial or rt->slabs_full */
  loom_task *free;     /* its free structs, linked through next_ready */
  slab_region *region; /* NULL: allocated alone */
  int nfree, n;
};

#define SLAB_OF(t) \
  ((task_slab *)(void *)((uintptr_t)(t) & ~(uintptr_t)(SLAB_BYTES - 1)))
#define SLAB_HEADER 64 /* bytes before the first struct (>= the header) */
/* Structs are 64 bytes apart at least, each on its own cache lines (the
 * type asks only for 16). */
#define TASK_STRIDE ((sizeof(loom_task) + 63) & ~(size_t)63)
#define SLAB_FIRST(sl) ((loom_task *)(void *)((char *)(sl) + SLAB_HEADER))

static void lists_init(loom_rt *rt) {
  if (rt->slabs_partial.next == NULL) {
    loom__list_init(&rt->slabs_partial);
    loom__list_init(&rt->slabs_full);
    loom__list_init(&rt->regions);
  }
}

/* REGION_BYTES aligned to SLAB_BYTES, or NULL. On Linux its pages are
 * populated by the kernel in one call (MAP_POPULATE): a burst that needs a
 * region then touches it page by page, and a first-touch fault per 4 KiB
 * page costs several times what populating does (bench/results/
 * core-redesign.md). The region is resident from then on, which is at
 * most one partly used region beyond the tasks that live. */
static char *region_map(void) {
#if defined(__linux__) && defined(MAP_POPULATE)
  size_t len = REGION_BYTES + SLAB_BYTES;
  char *p = (char *)mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  char *base;
  size_t head, tail;
  if (p == (char *)MAP_FAILED) return NULL;
  base = (char *)(((uintptr_t)p + SLAB_BYTES - 1) &
                  ~(uintptr_t)(SLAB_BYTES - 1));
  head = (size_t)(base - p);
  tail = len - head - REGION_BYTES;
  if (head > 0) munmap(p, head);
  if (tail > 0) munmap(base + REGION_BYTES, tail);
  return base;
#else
  void *p = NULL;
  return posix_memalign(&p, SLAB_BYTES, REGION_BYTES) == 0 ? (char *)p : NULL;
#endif
}

static void region_unmap(char *base) {
#if defined(__linux__) && defined(MAP_POPULATE)
  munmap(base, REGION_BYTES);
#else
  free(base);
#endif
}

/* A slab from a region with room, or from a new region; NULL: out of
 * memory. */
static task_slab *region_slab(loom_rt *rt) {
  slab_region *r;
  task_slab *sl;
  if (loom__list_empty(&rt->regions)) {
    char *p;
    r = (slab_region *)malloc(sizeof *r);
    if (r == NULL) return NULL;
    if ((p = region_map()) == NULL) {
      free(r);
      return NULL;
    }
    r->base = p;
    rt->nregions++;
    r->spare = NULL;
    r->carved = r->live = 0;
    loom__list_push(&rt->regions, &r->link);
  }
  r = loom__container_of(rt->regions.next, slab_region, link);
  if (r->spare != NULL) {
    sl = r->spare;
    r->spare = (task_slab *)(void *)sl->free;
  } else sl = (task_slab *)(void *)(r->base + (size_t)r->carved++ * SLAB_BYTES);
  sl->region = r;
  if (r == rt->empty_region) rt->empty_region = NULL;
  if (++r->live == REGION_SLABS) loom__list_remove(&r->link); /* full */
  return sl;
}

static void region_free(loom_rt *rt, slab_region *r) {
  rt->nregions--;
  loom__list_remove(&r->link);
  region_unmap(r->base);
  free(r);
}

/* Give a slab (off every slab list) back: to the system, or to its region,
 * which goes back to the system with its last slab. */
static void slab_free(loom_rt *rt, task_slab *sl) {
  slab_region *r = sl->region;
  if (r == NULL) {
    rt->nslabs--;
    free(sl);
    return;
  }
  if (r->live-- == REGION_SLABS) loom__list_push(&rt->regions, &r->link);
  sl->free = (loom_task *)(void *)r->spare;
  r->spare = sl;
  if (r->live > 0) return;
  /* Empty: one such region is kept, so that a task count going up and
   * down across a region's edge does not map and unmap it each time. */
  if (rt->empty_region == NULL) rt->empty_region = r;
  else if (rt->empty_region != r) region_free(rt, r);
}

/* Make sure a free struct exists, so that taking one later cannot fail
 * (raises: out of memory, before anything changed). */
/* A new slab, for task structs or pending records (raises: out of
 * memory). */
static task_slab *slab_alloc(lua_State *L, loom_rt *rt) {
  task_slab *sl = NULL;
  lists_init(rt);
  LOOM_ASSERT(sizeof(task_slab) <= SLAB_HEADER);
  if (rt->nslabs >= SMALL_SLABS) sl = region_slab(rt);
  if (sl == NULL) {
    void *p = NULL;
    if (posix_memalign(&p, SLAB_BYTES, SLAB_BYTES) != 0)
      luaL_error(L, "not enough memory");
    sl = (task_slab *)p;
    sl->region = NULL;
    rt->nslabs++;
  }
  return sl;
}

/* The objects of a new slab (task structs or records, `size` bytes apart),
 * on its free list. Linked last to first, so that a burst takes them in
 * address order: walking its tasks later (a cancellation, a wake-up of
 * all) is a forward stride the hardware prefetcher follows. */
static void slab_carve(task_slab *sl, size_t size) {
  char *first = (char *)sl + SLAB_HEADER, *p;
  sl->free = NULL;
  sl->n = (int)((SLAB_BYTES - SLAB_HEADER) / size);
  for (p = first + (size_t)(sl->n - 1) * size; p >= first; p -= size) {
    ((loom_task *)(void *)p)->next_ready = sl->free;
    sl->free = (loom_task *)(void *)p;
  }
  sl->nfree = sl->n;
}

/* An object of the first slab on `partial` (which has one); a slab left
 * with none moves to `full`. */
static loom_task *slab_take(loom_list *partial, loom_list *full) {
  task_slab *sl = loom__container_of(partial->next, task_slab, link);
  loom_task *t = sl->free;
  LOOM_ASSERT(!loom__list_empty(partial) && t != NULL);
  sl->free = t->next_ready;
  if (--sl->nfree == 0) {
    loom__list_remove(&sl->link);
    loom__list_push(full, &sl->link);
  }
  return t;
}

/* Give t back to its slab; a slab that was full goes first on `partial`
 * (it fills up again before the emptier slabs, which the trim can then
 * free). Returns the slab. */
static task_slab *slab_give(loom_list *partial, loom_task *t) {
  task_slab *sl = SLAB_OF(t);
  t->next_ready = sl->free;
  sl->free = t;
  if (sl->nfree++ == 0) {
    loom__list_remove(&sl->link);
    sl->link.next = partial->next;
    sl->link.prev = partial;
    partial->next->prev = &sl->link;
    partial->next = &sl->link;
  }
  return sl;
}

static void task_reserve(lua_State *L, loom_rt *rt) {
  task_slab *sl;
  lists_init(rt);
  if (!loom__list_empty(&rt->slabs_partial)) return;
  sl = slab_alloc(L, rt);
  slab_carve(sl, TASK_STRIDE);
  rt->task_free_n += sl->n;
  if (sl->region != NULL) rt->region_free_slabs++;
  loom__list_push(&rt->slabs_partial, &sl->link);
}

/* The struct the next task_take returns (after task_reserve). */
static loom_task *task_peek(loom_rt *rt) {
  return loom__container_of(rt->slabs_partial.next, task_slab, link)->free;
}

static loom_task *task_take(loom_rt *rt) {
  task_slab *sl = loom__container_of(rt->slabs_partial.next, task_slab, link);
  if (sl->nfree == sl->n && sl->region != NULL) rt->region_free_slabs--;
  rt->task_free_n--;
  return slab_take(&rt->slabs_partial, &rt->slabs_full);
}

/* Give a finished task's struct back to its slab. */
static void task_give(loom_rt *rt, loom_task *t) {
  task_slab *sl = slab_give(&rt->slabs_partial, t);
  rt->task_free_n++;
  if (sl->nfree == sl->n && sl->region != NULL) rt->region_free_slabs++;
}

/* ---- the extension: what few tasks use -------------------------------- */

static loom_task_ext *ext_new(void) {
  loom_task_ext *x = (loom_task_ext *)malloc(sizeof *x);
  if (x == NULL) return NULL;
  loom__list_init(&x->groups);
  loom__list_init(&x->waiters);
  x->start_caller = NULL;
  x->start_group = NULL;
  x->tb_ref = x->tberr_ref = LUA_NOREF;
  return x;
}

loom_task_ext *loom__task_ext_try(loom_task *t) {
  loom_rt *rt = t->rt;
  if (t->ext != NULL) return t->ext;
  if (rt->ext_spare != NULL) {
    t->ext = rt->ext_spare;
    rt->ext_spare = NULL;
  } else if ((t->ext = ext_new()) == NULL) return NULL;
  rt->ext_live++;
  return t->ext;
}

loom_task_ext *loom__task_ext(lua_State *L, loom_task *t) {
  loom_task_ext *x = loom__task_ext_try(t);
  if (x == NULL) luaL_error(L, "not enough memory");
  return x;
}

void loom__task_ext_reserve(lua_State *L, loom_rt *rt) {
  if (rt->ext_spare == NULL && (rt->ext_spare = ext_new()) == NULL)
    luaL_error(L, "not enough memory");
}

/* Free t's extension (its traceback refs were released, its lists are
 * empty); one is kept as the runtime's spare. */
static void ext_free(loom_rt *rt, loom_task *t) {
  loom_task_ext *x = t->ext;
  t->ext = NULL;
  if (x == NULL) return;
  rt->ext_live--;
  LOOM_ASSERT(loom__list_empty(&x->waiters) && loom__list_empty(&x->groups));
  LOOM_ASSERT(x->tb_ref == LUA_NOREF && x->start_caller == NULL);
  if (rt->ext_spare == NULL) rt->ext_spare = x;
  else free(x);
}

static int shrink_anchors(lua_State *L, loom_rt *rt);
static void records_trim(loom_rt *rt);
static void records_free_all(loom_rt *rt, loom_list *head);

/* Let go of every pooled coroutine (the runtime closes): their homes are
 * cleared, the collector takes them. L has 2 free slots; allocates
 * nothing. */
void loom__pool_empty(lua_State *L, loom_rt *rt) {
  if (rt->pool_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pool_ref);
  while (rt->pool_len > 0) {
    int home = rt->pool_slot[--rt->pool_len];
    lua_pushnil(L);
    lua_rawseti(L, -2, home);
    LOOM_ASSERT(rt->home_nfree < LOOM_POOL_MAX);
    rt->home_free[rt->home_nfree++] = home;
  }
  lua_pop(L, 1);
}

void loom__tasks_trim(lua_State *L, loom_rt *rt) {
  loom_list *n, *next;
  /* The anchor table shrinks here, not as tasks finish: a burst of
   * finishes (a group cancelling 100,000 tasks) would rebuild it again and
   * again, walking every live task each time. */
  if (L != NULL && rt->batch_base == 0 && lua_checkstack(L, 3))
    shrink_anchors(L, rt);
  records_trim(rt);
  if (rt->slabs_partial.next == NULL) return;
  /* Every entirely free slab of a region goes back to it (regions hold
   * bursts), and those allocated alone beyond TASK_POOL_MAX free structs. */
  for (n = rt->slabs_partial.next;
       n != &rt->slabs_partial &&
       (rt->region_free_slabs > 0 || rt->task_free_n > TASK_POOL_MAX);
       n = next) {
    task_slab *sl = loom__container_of(n, task_slab, link);
    next = n->next;
    if (sl->nfree == sl->n &&
        (sl->region != NULL || rt->task_free_n > TASK_POOL_MAX)) {
      loom__list_remove(&sl->link);
      rt->task_free_n -= sl->n;
      if (sl->region != NULL) rt->region_free_slabs--;
      slab_free(rt, sl);
    }
  }
}

static void forget_tasks(loom_list *head) {
  loom_list *n, *next;
  if (head->next == NULL) return;
  for (n = head->next; n != head; n = next) {
    loom_task *t = loom__container_of(n, loom_task, all_link);
    next = n->next;
    if (t->h != NULL) t->h->t = NULL;
    /* (a record goes with its chunk, a struct with its slab) */
    if (t->record) continue;
    if (t->ext != NULL) t->rt->ext_live--;
    free(t->ext); /* (its refs and lists go with the Lua state) */
    t->ext = NULL;
  }
  loom__list_init(head);
}

void loom__ready_drop(loom_rt *rt) {
  loom_task *t = rt->ready_head, *next;
  for (; t != NULL; t = next) {
    next = t->next_ready;
    if (t->record && t->state == LOOM_TASK_FORWARD) loom__record_free(rt, t);
  }
  rt->ready_head = rt->ready_tail = NULL;
  rt->nready = 0;
}

static void free_slabs(loom_rt *rt, loom_list *head) {
  while (!loom__list_empty(head)) {
    task_slab *sl = loom__container_of(head->next, task_slab, link);
    loom__list_remove(&sl->link);
    slab_free(rt, sl);
  }
}

void loom__tasks_free(loom_rt *rt) {
  loom_task *p;
  /* Handles that outlive the runtime (lua_close) must not reach a freed
   * struct, or record (those are only in the ready queue, or abandoned). */
  for (p = rt->ready_head; p != NULL; p = p->next_ready)
    if (loom__is_pending_record(p)) p->h->t = NULL;
  for (p = rt->abandoned_recs; p != NULL; p = p->next_ready) p->h->t = NULL;
  rt->abandoned_recs = NULL;
  loom__ready_drop(rt);
  forget_tasks(&rt->all_tasks);
  forget_tasks(&rt->abandoned);
  free(rt->anchor_free);
  rt->anchor_free = NULL;
  rt->pool_len = 0;
  free(rt->ext_spare);
  rt->ext_spare = NULL;
  rt->anchor_nfree = rt->anchor_cap = 0;
  /* Records first: their slabs may be in the regions. */
  records_free_all(rt, &rt->rec_partial);
  records_free_all(rt, &rt->rec_full);
  rt->rec_free_n = 0;
  if (rt->slabs_partial.next == NULL) return;
  free_slabs(rt, &rt->slabs_partial);
  free_slabs(rt, &rt->slabs_full);
  if (rt->empty_region != NULL) region_free(rt, rt->empty_region);
  rt->empty_region = NULL;
  LOOM_ASSERT(rt->nslabs == 0 && loom__list_empty(&rt->regions));
  rt->task_free_n = 0;
}

/* ---- the anchor table: the handle and coroutine of every live task ----- */

void loom__push_task(lua_State *L, loom_task *t) {
  if (t != NULL && t->ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, loom__task_rt(t)->anchor_ref);
    lua_rawgeti(L, -1, t->ref);
    lua_copy(L, -1, -2);
    lua_pop(L, 1);
  } else lua_pushnil(L);
}

/* [-0, +0] anchor the handle at hi in a free slot, whose number it
 * returns (may raise: out of memory; then nothing changed). Freed slots are
 * reused (rt->anchor_free, a stack of their numbers, with room for every
 * slot in use), so a finishing task touches no other task. The anchor
 * table is at index `at` (an upvalue of the spawning function), or 0: in
 * the registry. */
static int anchor(lua_State *L, loom_rt *rt, int hi, int at) {
  int n;
  if (rt->anchor_nfree > 0) n = rt->anchor_free[rt->anchor_nfree - 1];
  else {
    n = rt->anchor_top + 1;
    if (n > rt->anchor_cap) {
      int cap = rt->anchor_cap > 0 ? 2 * rt->anchor_cap : 256;
      int *p = (int *)realloc(rt->anchor_free, (size_t)cap * sizeof *p);
      if (p == NULL) luaL_error(L, "not enough memory");
      rt->anchor_free = p;
      rt->anchor_cap = cap;
    }
  }
  if (at != 0) {
    lua_pushvalue(L, hi);
    lua_rawseti(L, at, n); /* may grow the table: may raise */
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor_ref);
    lua_pushvalue(L, hi);
    lua_rawseti(L, -2, n);
    lua_pop(L, 1);
  }
  if (rt->anchor_nfree > 0) rt->anchor_nfree--;
  else rt->anchor_top = n;
  if (++rt->anchor_n > rt->anchor_peak) rt->anchor_peak = rt->anchor_n;
  return n;
}

static int rebuild_one(lua_State *L, loom_task *t, int i) {
  if (t->ref == LUA_NOREF) return i;
  lua_rawgeti(L, 2, t->ref);
  lua_rawseti(L, 3, ++i);
  t->ref = i;
  return i;
}

static int rebuild_list(lua_State *L, loom_list *head, int i) {
  loom_list *n;
  for (n = head->next; n != head; n = n->next)
    i = rebuild_one(L, loom__container_of(n, loom_task, all_link), i);
  return i;
}

/* The pending records (in the ready queue; a FORWARD one's slot is its
 * struct's) and the abandoned ones. */
static int rebuild_records(lua_State *L, loom_rt *rt, int i) {
  loom_task *p;
  for (p = rt->ready_head; p != NULL; p = p->next_ready)
    if (loom__is_pending_record(p)) i = rebuild_one(L, p, i);
  for (p = rt->abandoned_recs; p != NULL; p = p->next_ready)
    i = rebuild_one(L, p, i);
  return i;
}

void loom__register_spawner(lua_State *L, loom_rt *rt) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->spawners_ref);
  lua_insert(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Copy the live anchors into a table of their size (the old one keeps the
 * array of the largest burst): every task gets a new slot. Only the new
 * table allocates, before anything changed. */
static int rebuild_anchors(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  int n = rt->anchor_n, i;
  int *p;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor_ref);
  lua_createtable(L, n > 64 ? n : 64, 0);
  i = rebuild_list(L, &rt->all_tasks, 0);
  i = rebuild_list(L, &rt->abandoned, i);
  i = rebuild_records(L, rt, i);
  LOOM_ASSERT(i == rt->anchor_n);
  /* The spawning closures get the new table (nothing below allocates). */
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->spawners_ref);
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) { /* [..., spawners, closure, true] */
    lua_pushvalue(L, 3);
    lua_setupvalue(L, -3, LOOM_SPAWN_ANCHORS_UV);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_rawseti(L, LUA_REGISTRYINDEX, rt->anchor_ref);
  rt->anchor_top = rt->anchor_peak = i;
  rt->anchor_nfree = 0;
  if (rt->anchor_cap > 256 && rt->anchor_cap > 2 * i) {
    /* (a failed shrink keeps the larger array) */
    int cap = i > 128 ? 2 * i : 256;
    p = (int *)realloc(rt->anchor_free, (size_t)cap * sizeof *p);
    if (p != NULL) {
      rt->anchor_free = p;
      rt->anchor_cap = cap;
    }
  }
  return 0;
}

/* Release t's anchor; allocates nothing (a later rebuild may). The anchor
 * table is at index `at` of L. */
static void unanchor(lua_State *L, loom_rt *rt, loom_task *t, int at) {
  int slot = t->ref;
  t->ref = LUA_NOREF;
  lua_pushnil(L);
  lua_rawseti(L, at, slot);
  LOOM_ASSERT(rt->anchor_nfree < rt->anchor_cap);
  rt->anchor_free[rt->anchor_nfree++] = slot;
  rt->anchor_n--;
}

/* Returns whether the table was rebuilt (a new one in the registry). */
static int shrink_anchors(lua_State *L, loom_rt *rt) {
  if (rt->anchor_peak > 4096 && rt->anchor_n < rt->anchor_peak / 4) {
    /* Shrink; out of memory here only postpones it. */
    lua_pushcfunction(L, rebuild_anchors);
    lua_pushlightuserdata(L, rt);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) return 1;
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- the batch cache ---------------------------------------------------- *
 * The drain resumes tasks in runs of batches (sched.c's run_batches). The
 * first step of a run that starts or finishes a task pushes the anchor
 * table, the pool table and the task body closure on the drain's state S,
 * at rt->batch_base + C_*; the later steps of the run read them there
 * instead of from the registry. Every step leaves S's top where it found it
 * (above the cache), and the run pops the cache at its end. */

enum { C_ANCHOR = 0, C_POOL = 1, C_MAIN = 2 };

/* The cache's base on S, pushed now if needed; 0 when S has no room for
 * it (then the registry is read, as outside a run). Never raises. */
static int batch_cache(lua_State *S, loom_rt *rt) {
  if (rt->batch_base > 0) return rt->batch_base;
  if (!lua_checkstack(S, 3 + LUA_MINSTACK)) return 0;
  lua_rawgeti(S, LUA_REGISTRYINDEX, rt->anchor_ref);
  lua_rawgeti(S, LUA_REGISTRYINDEX, rt->pool_ref);
  lua_rawgeti(S, LUA_REGISTRYINDEX, rt->task_main_ref);
  return rt->batch_base = lua_gettop(S) - 2;
}

/* ---- the coroutines ----------------------------------------------------- *
 * The pool keeps up to LOOM_POOL_MAX finished coroutines for new tasks.
 * Each coroutine it has ever adopted has a home: a fixed slot of the pool
 * table (1..LOOM_POOL_MAX, all allocated when the runtime is made), which
 * anchors it while it is pooled and while a task runs on it, so that
 * taking it and giving it back touch no Lua table and write nothing into
 * the task's handle. A coroutine made because the pool was empty (a burst
 * of tasks parked at once) has no home: its task's handle anchors it (the
 * result's slot, until the outcome takes it), as many of them may be
 * alive at once and a table of them would grow with the burst. When its
 * task finishes it is adopted, if a home is free, or let go. */

/* The coroutine for task t (its struct, not taken yet): the pool's top,
 * or a new one, pushed on L, which the caller anchors in t's handle
 * (LOOM_HV_RESULT) once nothing can fail. Nothing is taken until
 * pool_take. May raise (out of memory) with nothing lost. */
static lua_State *pool_peek(lua_State *L, loom_rt *rt) {
  if (rt->pool_len > 0) return rt->pool_co[rt->pool_len - 1];
  return lua_newthread(L);
}

/* Give t the coroutine pool_peek returned: the pool's top, or (fresh) the
 * new one. Cannot fail. */
static void pool_take(loom_rt *rt, loom_task *t, lua_State *co, int fresh) {
  if (fresh) {
    t->co_slot = 0; /* anchored by its handle */
  } else {
    rt->pool_len--;
    LOOM_ASSERT(rt->pool_co[rt->pool_len] == co);
    t->co_slot = rt->pool_slot[rt->pool_len];
  }
  t->L = co;
  rt->task_coroutines++;
}

/* Clear home slot `home` of the pool table (at index pool of S, or 0: in
 * the registry). Allocates nothing; without 2 free slots on S the slot
 * keeps its coroutine until it is reused. */
static void home_clear(lua_State *S, loom_rt *rt, int pool, int home) {
  LOOM_ASSERT(rt->home_nfree < LOOM_POOL_MAX);
  rt->home_free[rt->home_nfree++] = home;
  if (!lua_checkstack(S, 2)) return;
  if (pool == 0) lua_rawgeti(S, LUA_REGISTRYINDEX, rt->pool_ref);
  lua_pushnil(S);
  lua_rawseti(S, pool > 0 ? pool : -2, home);
  if (pool == 0) lua_pop(S, 1);
}

/* Give t's finished coroutine back to the pool, adopting it if it has no
 * home and one is free; let it go otherwise, or if it died with an error
 * (it cannot be resumed again: closed). Allocates nothing (the homes are
 * array slots made with the table). A coroutine without a home stays in
 * t's handle until loom__task_finish writes the outcome there. */
void loom__release_thread(loom_rt *rt, lua_State *S, loom_task *t) {
  lua_State *co = t->L;
  int home = t->co_slot;
  int pool = rt->batch_base > 0 ? rt->batch_base + C_POOL : 0;
  if (co == NULL) return;
  t->L = NULL;
  t->co_slot = 0;
  rt->task_coroutines--;
  if (lua_status(co) != LUA_OK) {
    loom_closethread(co, S);
    if (home > 0) home_clear(S, rt, pool, home);
    return;
  }
  lua_settop(co, 0);
  if (home == 0) {
    /* adopt it: a free home (none left: let it go) */
    if (rt->home_nfree == 0 || !lua_checkstack(S, 3)) return;
    home = rt->home_free[--rt->home_nfree];
    if (pool == 0) lua_rawgeti(S, LUA_REGISTRYINDEX, rt->pool_ref);
    lua_pushthread(co);
    lua_xmove(co, S, 1);
    lua_rawseti(S, pool > 0 ? pool : -2, home); /* an array slot: no alloc */
    if (pool == 0) lua_pop(S, 1);
  }
  /* (a homed coroutine always finds room: the pool holds homed ones) */
  LOOM_ASSERT(rt->pool_len < LOOM_POOL_MAX);
  rt->pool_co[rt->pool_len] = co;
  rt->pool_slot[rt->pool_len++] = home;
}

int loom__is_cancelled(lua_State *L, loom_rt *rt, int idx) {
  int r;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 2) ||
      !lua_getmetatable(L, idx))
    return 0;
  /* The class is anchored by cancelled_ref: its address identifies it. */
  r = rt->cancelled_class != NULL &&
      lua_topointer(L, -1) == rt->cancelled_class;
  lua_pop(L, 1);
  /* The latest one a scope holds is alive and issued (see scope.c). */
  if (r && lua_topointer(L, idx) == rt->exc_ptr) return 1;
  if (r && rt->issued_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->issued_ref);
    lua_pushvalue(L, idx);
    r = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
  }
  return r;
}
#define is_cancelled loom__is_cancelled

/* ---- pending records ---------------------------------------------------- *
 * A record is the first LOOM_TASK_RECORD_BYTES of a struct loom_task (see
 * loom_internal.h). Records come from slabs like the structs' (the same
 * regions, given back the same way), in slots of REC_SIZE, on their own
 * lists: rt->rec_partial (slabs with free records), rt->rec_full. A burst
 * takes them a pointer move each and its tasks give them back as they
 * start, hot; when the scheduler goes idle, loom__tasks_trim gives back
 * the entirely free ones (those allocated alone beyond REC_KEEP free
 * records). */

/* A record is reached through a struct loom_task pointer, which is 16-byte
 * aligned: so is every record (48 bytes; LOOM_REC_SLOT). */
#define REC_SIZE LOOM_REC_SLOT
/* A record is 48 bytes: a field added before `all_link` in struct
 * loom_task must take the place of another (C99: a negative array size
 * fails the build). */
typedef char loom_record_is_48_bytes[LOOM_TASK_RECORD_BYTES == 48 ? 1 : -1];
#define REC_KEEP 1024

/* Under ASan the rest of a record's slot is poisoned: code that reads a
 * record past LOOM_TASK_RECORD_BYTES (a field only a struct has) fails
 * there. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define REC_POISON_TAIL(p)                                        \
  ASAN_POISON_MEMORY_REGION((char *)(p) + LOOM_TASK_RECORD_BYTES, \
                            REC_SIZE - LOOM_TASK_RECORD_BYTES)
#define REC_UNPOISON(sl) ASAN_UNPOISON_MEMORY_REGION((sl), SLAB_BYTES)
#else
#define REC_POISON_TAIL(p) ((void)0)
#define REC_UNPOISON(sl) ((void)0)
#endif

static void rec_lists_init(loom_rt *rt) {
  if (rt->rec_partial.next == NULL) {
    loom__list_init(&rt->rec_partial);
    loom__list_init(&rt->rec_full);
  }
}

/* Make sure a free record exists (raises: out of memory, nothing changed). */
static void record_reserve(lua_State *L, loom_rt *rt) {
  task_slab *sl;
  loom_task *p;
  rec_lists_init(rt);
  if (!loom__list_empty(&rt->rec_partial)) return;
  sl = slab_alloc(L, rt);
  slab_carve(sl, REC_SIZE);
  for (p = sl->free; p != NULL; p = p->next_ready) REC_POISON_TAIL(p);
  rt->rec_free_n += sl->n;
  rt->rec_chunks++;
  loom__list_push(&rt->rec_partial, &sl->link);
}

/* A free record (after record_reserve: cannot fail). */
static loom_task *record_take(loom_rt *rt) {
  rt->rec_free_n--;
  rt->rec_live++;
  return slab_take(&rt->rec_partial, &rt->rec_full);
}

static void record_slab_free(loom_rt *rt, task_slab *sl);

void loom__record_free(loom_rt *rt, loom_task *p) {
  task_slab *sl = slab_give(&rt->rec_partial, p);
  rt->rec_free_n++;
  rt->rec_live--;
  /* A region's slab whose records all went back (a burst that started)
   * returns to its region at once, where the structs of the tasks now
   * starting take it, unless it is the only free one. */
  if (sl->nfree == sl->n && sl->region != NULL && rt->rec_free_n > sl->n) {
    rt->rec_free_n -= sl->n;
    record_slab_free(rt, sl);
  }
}

static void record_slab_free(loom_rt *rt, task_slab *sl) {
  loom__list_remove(&sl->link);
  rt->rec_chunks--;
  REC_UNPOISON(sl);
  slab_free(rt, sl);
}

/* Give back every entirely free slab of a region (so that the region can
 * go back too), and those allocated alone beyond REC_KEEP free records. */
static void records_trim(loom_rt *rt) {
  loom_list *n, *next;
  if (rt->rec_partial.next == NULL) return;
  for (n = rt->rec_partial.next; n != &rt->rec_partial; n = next) {
    task_slab *sl = loom__container_of(n, task_slab, link);
    next = n->next;
    if (sl->nfree == sl->n &&
        (sl->region != NULL || rt->rec_free_n > REC_KEEP)) {
      rt->rec_free_n -= sl->n;
      record_slab_free(rt, sl);
    }
  }
}

static void records_free_all(loom_rt *rt, loom_list *head) {
  if (head->next == NULL) return;
  while (!loom__list_empty(head))
    record_slab_free(rt, loom__container_of(head->next, task_slab, link));
}

/* The fields of a task's struct past its record. */
static void task_init_rest(loom_task *t) {
  loom__scope_init(&t->scope, 1);
  loom__list_init(&t->scope_link);
  loom__list_init(&t->wait_link);
  loom__timer_init(&t->sleep_timer, NULL); /* owner: sched.c's sleeps */
}

static void launch_scope(loom_task *t, loom_scope *parent) {
  loom__scope_attach(&t->scope, parent);
  t->cur = &t->scope;
  loom__list_push(&t->scope.tasks, &t->scope_link);
}

void loom__launch(loom_task *t, loom_scope *parent) {
  /* A record is under its group's scope: it attaches with its struct. */
  if (t->record) LOOM_ASSERT(t->group != NULL && parent == t->group->scope);
  else launch_scope(t, parent);
  loom__enqueue(loom__task_rt(t), t);
}

/* Take p's struct (p is a pending record): may raise (out of memory)
 * before anything changed. The struct takes p's place in its group's
 * children and rt->all_tasks, and its handle; p stays in the ready queue,
 * forwarding to it (LOOM_TASK_FORWARD), until the drain reaches it. */
static loom_task *materialize(lua_State *L, loom_rt *rt, loom_task *p) {
  loom_task *t;
  LOOM_ASSERT(loom__is_pending_record(p) && p->group != NULL);
  task_reserve(L, rt);
  /* Nothing below can fail. */
  t = task_take(rt);
  memcpy(t, p, LOOM_TASK_RECORD_BYTES);
  memset((char *)t + LOOM_TASK_RECORD_BYTES, 0,
         sizeof *t - LOOM_TASK_RECORD_BYTES);
  t->rt = rt;
  t->next_ready = NULL;
  t->record = 0;
  t->state = LOOM_TASK_NEW;
  task_init_rest(t);
  loom__list_replace(&p->group_link, &t->group_link);
  loom__list_push(&rt->all_tasks, &t->all_link);
  t->h->t = t;
  launch_scope(t, t->group->scope);
  if (p->record & LOOM_REC_MARKED) loom__scope_mark_cancelled(rt, &t->scope, 0);
  p->state = LOOM_TASK_FORWARD;
  return t;
}

loom_task *loom__task_materialize(lua_State *L, loom_task *p) {
  if (!p->record) return p;
  if (p->state == LOOM_TASK_FORWARD) return p->h->t;
  return materialize(L, p->group->rt, p);
}

/* The drain reached the record p at the head of the ready queue: its
 * struct (taken now if need be) takes its place there, and p is freed.
 * May raise (out of memory) with nothing changed. */
static loom_task *record_reached(lua_State *S, loom_rt *rt, loom_task *p) {
  loom_task *t = p->state == LOOM_TASK_FORWARD ? p->h->t
                                               : materialize(S, rt, p);
  LOOM_ASSERT(rt->ready_head == p && t->state == LOOM_TASK_NEW);
  t->next_ready = p->next_ready;
  rt->ready_head = t;
  if (rt->ready_tail == p) rt->ready_tail = t;
  loom__record_free(rt, p);
  return t;
}

loom_task *loom__task_new(lua_State *L, loom_rt *rt, int fn_idx, int nargs,
                          loom_task *spawner, int mt_idx, int flags) {
  loom_handle *h;
  loom_task *t;
  lua_State *co = NULL;
  int hi, i, anchor_slot, fresh = 0, ctx_state = LOOM_CTX_NONE;
  /* With a pooled coroutine, fn and its arguments go onto it now. Without
   * one (a burst of spawns emptied the pool), they wait in the handle's
   * extra user values until the first resume, which takes the coroutine
   * a finished task has given back by then. */
  int defer = rt->pool_len == 0 && nargs <= LOOM_DEFER_MAX_ARGS;
  int rec = defer && (flags & LOOM_SPAWN_MAY_PEND);
  int in_mt = (flags & LOOM_SPAWN_PARENT_IN_MT) != 0;
  fn_idx = lua_absindex(L, fn_idx);
  /* A C function has LUA_MINSTACK free slots; callers push at most 4. */
  if (nargs + 8 > LUA_MINSTACK - 4)
    luaL_checkstack(L, nargs + 8, "loom: spawn");
  /* Everything that can fail comes first: the struct (reserved), the
   * handle, the coroutine, the anchors. */
  if (rec) record_reserve(L, rt);
  else task_reserve(L, rt);
  h = (loom_handle *)lua_newuserdatauv(L, sizeof *h,
                                       LOOM_HV_N - in_mt + (defer ? nargs : 0));
  hi = lua_gettop(L);
  h->magic = LOOM_MAGIC_TASK;
  h->done = h->cancel_requested = 0;
  h->parent_in_mt = (unsigned char)in_mt;
  h->outcome = 0;
  h->start_state = LOOM_START_NONE;
  h->t = NULL;
  h->id = 0;
  h->nresults = 0;
  h->start_value_ref = LUA_NOREF;
  /* the Task metatable: an upvalue of the spawning C function, if given */
  if (mt_idx != 0) lua_pushvalue(L, mt_idx);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, rt->task_mt_ref);
  lua_setmetatable(L, hi);
  lua_pushvalue(L, fn_idx);
  lua_setiuservalue(L, hi, LOOM_HV_NAME); /* the name is made from it */
  /* The child gets a shallow copy of the spawner's context, taken now. An
   * empty or absent context stays absent: loom.context() makes one. A
   * context no user code has seen cannot have changed since it was copied:
   * the child shares it, and whichever task first asks loom.context() for
   * it copies it then (copy-on-write, see LOOM_CTX_*). */
  if (spawner != NULL && spawner->ctx_state != LOOM_CTX_NONE) {
    loom__push_task(L, spawner);
    loom__aux_get(L, rt, -1);
    if (lua_type(L, -1) == LUA_TTABLE) {
      if (spawner->ctx_state != LOOM_CTX_OWNED) {
        loom__aux_set(L, rt, hi); /* may raise: nothing changed yet */
        spawner->ctx_state = LOOM_CTX_SHARED;
        ctx_state = LOOM_CTX_SHARED;
      } else if (loom__copy_context(L, lua_gettop(L))) {
        loom__aux_set(L, rt, hi);
        ctx_state = LOOM_CTX_PRIVATE;
      }
    }
    lua_settop(L, hi);
  }
  t = rec ? NULL : task_peek(rt); /* taken below, once nothing can fail */
  if (defer) {
    /* The function is in the name's slot already (the coroutine's slot,
     * unused until the first resume, takes it if a name is set before). */
    for (i = 1; i <= nargs; i++) {
      lua_pushvalue(L, fn_idx + i);
      lua_setiuservalue(L, hi, loom__hv_arg(h, i));
    }
  } else {
    fresh = rt->pool_len == 0;
    co = pool_peek(L, rt); /* (pushed if fresh) */
    /* A pooled coroutine has LUA_MINSTACK free slots. */
    if (nargs + 5 > LUA_MINSTACK && !lua_checkstack(co, nargs + 5))
      luaL_error(L, "not enough memory");
  }
  anchor_slot = anchor(L, rt, hi,
                       (flags & LOOM_SPAWN_ANCHORS_IN_UV)
                         ? lua_upvalueindex(LOOM_SPAWN_ANCHORS_UV)
                         : 0);
  /* Nothing below can fail. */
  if (co != NULL) {
    lua_rawgeti(co, LUA_REGISTRYINDEX, rt->task_main_ref);
    lua_pushlightuserdata(co, t);
    lua_pushlightuserdata(co, t); /* the message handler's slot */
    for (i = 0; i <= nargs; i++) lua_pushvalue(L, fn_idx + i);
    lua_xmove(L, co, nargs + 1);
    if (fresh) lua_setiuservalue(L, hi, LOOM_HV_RESULT); /* anchors it */
  }
  if (rec) {
    t = record_take(rt);
    memset(t, 0, LOOM_TASK_RECORD_BYTES);
    t->record = LOOM_REC_PENDING;
    t->state = LOOM_TASK_PENDING;
  } else {
    t = task_take(rt);
    memset(t, 0, sizeof *t);
    t->rt = rt;
    if (co != NULL) pool_take(rt, t, co, fresh);
    task_init_rest(t);
    t->state = LOOM_TASK_NEW;
  }
  t->h = h;
  t->ref = anchor_slot;
  t->nargs = (int16_t)(defer ? nargs : -1);
  t->ctx_state = (unsigned char)ctx_state;
  loom__list_init(&t->group_link);
  h->id = ++rt->next_id;
  h->t = t;
  if (!rec) loom__list_push(&rt->all_tasks, &t->all_link);
  rt->live_tasks++;
  return t;
}

void loom__task_prepare(lua_State *S, loom_task *t) {
  loom_rt *rt = t->rt;
  lua_State *co;
  int i, fresh, n = t->nargs, top = lua_gettop(S), c = rt->batch_base;
  /* (a step starts with LUA_MINSTACK free slots above the batch cache) */
  if (c == 0 || top != c + C_MAIN) luaL_checkstack(S, 8, "loom: resume");
  /* the handle, at top + 1 */
  if (c > 0) lua_rawgeti(S, c + C_ANCHOR, t->ref);
  else loom__push_task(S, t);
  fresh = rt->pool_len == 0;
  co = pool_peek(S, rt); /* (at top + 2 if fresh) */
  if (n + 5 > LUA_MINSTACK && !lua_checkstack(co, n + 5))
    luaL_error(S, "not enough memory");
  /* Nothing below can fail: co has room for everything, S for the frame
   * (task_main, t, t, fn) built on it and moved in one go. */
  if (c > 0) lua_pushvalue(S, c + C_MAIN);
  else lua_rawgeti(S, LUA_REGISTRYINDEX, rt->task_main_ref);
  lua_pushlightuserdata(S, t);
  lua_pushlightuserdata(S, t); /* the message handler's slot */
  /* the function: in the name's slot unless a name was set since, then
   * in the result's slot (emptied: it is the outcome's from now on) */
  if (lua_getiuservalue(S, top + 1, LOOM_HV_NAME) == LUA_TSTRING) {
    lua_pop(S, 1);
    lua_getiuservalue(S, top + 1, LOOM_HV_RESULT);
    lua_pushnil(S);
    lua_setiuservalue(S, top + 1, LOOM_HV_RESULT);
  }
  lua_xmove(S, co, 4);
  for (i = 1; i <= n; i++) {
    lua_getiuservalue(S, top + 1, loom__hv_arg(t->h, i));
    lua_xmove(S, co, 1);
    /* only needed once: drop the reference */
    lua_pushnil(S);
    lua_setiuservalue(S, top + 1, loom__hv_arg(t->h, i));
  }
  /* a new coroutine: the handle anchors it (see "the coroutines") */
  if (fresh) lua_setiuservalue(S, top + 1, LOOM_HV_RESULT);
  lua_settop(S, top);
  pool_take(rt, t, co, fresh);
  t->nargs = -1;
}

/* ---- running ----------------------------------------------------------- */

static int l_rethrow(lua_State *L);

/* Is the raise being handled core.rethrow's? The message handler runs on
 * top of the function that raised (level 1). */
static int raised_by_rethrow(lua_State *L) {
  lua_Debug ar;
  int r;
  if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "f", &ar)) return 0;
  r = lua_tocfunction(L, -1) == l_rethrow;
  lua_pop(L, 1);
  return r;
}

/* The message handler of every task body and group body: records the
 * traceback of a failure (in its extension: tb_ref, with the error in
 * tberr_ref). A Cancelled records nothing. An error that loom re-raises on its
 * way out of a scope, a group or loom.catch (core.rethrow) keeps the traceback
 * of where it was first raised; any other raise, even of an equal value,
 * records a new one. */
int loom__msgh(lua_State *L) {
  loom_task *t = loom__task_of(L);
  loom_task_ext *x;
  const char *msg;
  lua_settop(L, 1);
  if (t == NULL || is_cancelled(L, t->rt, 1)) return 1;
  /* Out of memory for the extension: the error goes on without one. */
  if ((x = loom__task_ext_try(t)) == NULL) return 1;
  if (x->tberr_ref != LUA_NOREF) {
    int same;
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->tberr_ref);
    same = lua_rawequal(L, -1, 1);
    lua_pop(L, 1);
    if (same && raised_by_rethrow(L)) return 1;
    luaL_unref(L, LUA_REGISTRYINDEX, x->tberr_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->tb_ref);
    x->tb_ref = x->tberr_ref = LUA_NOREF;
  }
  msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
  luaL_traceback(L, L, msg, 1);
  x->tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 1);
  x->tberr_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* core.rethrow(err): raise err again as a re-raise (error(err, 0) that
 * keeps the traceback recorded where err was first raised, see
 * loom__msgh). loom's Lua front calls it on its way out of a scope, a
 * group or loom.catch; it works wherever the front was loaded from (files,
 * or strings preloaded by an embedding host). */
static int l_rethrow(lua_State *L) {
  lua_settop(L, 1);
  return lua_error(L);
}

static int task_main_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_replace(L, 2); /* the message handler's slot */
  }
  return lua_gettop(L) - 1; /* all but the task in slot 1 */
}

/* The body of every task coroutine: [task, slot, fn, args...] ->
 * [ok, results... | error] (task: a light userdata; ok: the message
 * handler, a true value, on success, false on failure: one stack write
 * less per task). Errors are caught here, in the task's own coroutine,
 * after the message handler recorded their traceback. */
int loom__task_main(lua_State *L) {
  int nargs = lua_gettop(L) - 3;
  /* loom__msgh with the runtime, into the slot the spawn left for it (a
   * copy instead of an insert, which moves every argument) */
  lua_copy(L, lua_upvalueindex(2), 2);
  return task_main_k(L, lua_pcallk(L, nargs, LUA_MULTRET, 2, 0, task_main_k),
                     0);
}

/* ---- resuming (the scheduler's step) ---------------------------------- */

/* t's coroutine was closed, or ran to its end, outside the scheduler
 * (coroutine.close or coroutine.resume on it, by a function the guard of
 * init.lua did not see). The task fails with a clear error. */
static void step_killed(loom_rt *rt, lua_State *S, loom_task *t) {
  lua_checkstack(S, 4);
  loom__push_task(S, t);
  lua_pushliteral(S, "loom: this task's coroutine was closed or resumed "
                     "outside the scheduler (coroutine.close/coroutine.resume "
                     "on a task's coroutine); use an event, or cancel the "
                     "task");
  loom__dequeue(rt);
  t->state = LOOM_TASK_RUNNING; /* finishing, as after its last resume */
  lua_settop(t->L, 0);
  loom__task_finish(S, t, 1, 1);
}

/* Resume t, the head of the ready queue, once. Everything that can fail
 * (a coroutine for a new task, stack space) is done while t is still
 * queued, so an error (out of memory) leaves it there, intact. */
void loom__task_step(loom_rt *rt, lua_State *S, loom_task *t) {
  lua_State *co;
  int nargs, nres = 0, status;
  LOOM_ASSERT(rt->current == NULL); /* resumes never nest */
  if (t->record) t = record_reached(S, rt, t);
  LOOM_ASSERT(t->state == LOOM_TASK_NEW || t->state == LOOM_TASK_READY);
  if (t->state == LOOM_TASK_NEW) {
    /* Its coroutine holds [task_main, task, task, fn, args...] (since the
     * spawn, or from now on: everything that can fail happens while t is
     * still queued). */
    if (t->nargs >= 0) {
      batch_cache(S, rt);
      loom__task_prepare(S, t);
    }
    co = t->L;
    loom__dequeue(rt);
    nargs = lua_gettop(co) - 1;
  } else {
    co = t->L;
    if (lua_status(co) != LUA_YIELD) {
      step_killed(rt, S, t);
      return;
    }
    loom__dequeue(rt);
    nargs = t->wake_nargs;
    t->wake_nargs = 0;
  }
  t->state = LOOM_TASK_RUNNING;
  rt->current = t;
  status = lua_resume(co, S, nargs, &nres);
  rt->current = NULL;
  if (status == LUA_YIELD) {
    if (nres > 0) lua_pop(co, nres); /* (loom's own yields pass none) */
    /* cppcheck-suppress knownConditionTrueFalse ; the task's own code
     * parks it (changes t->state) inside lua_resume */
    if (t->state == LOOM_TASK_RUNNING) {
      /* A bare coroutine.yield() in a task: a plain schedule point. */
      t->state = LOOM_TASK_READY;
      t->wake = LOOM_WAKE_OK;
      loom__enqueue(rt, t);
    }
  } else if (status == LUA_OK &&
             (nres <= 8 || lua_checkstack(S, nres + LUA_MINSTACK))) {
    /* task_main returned [ok, results...]: S gets [handle, results...];
     * ok stays on co (emptied when it is released). */
    int failed = !lua_toboolean(co, -nres), c = batch_cache(S, rt);
    LOOM_ASSERT(nres >= 1);
    if (c > 0) lua_rawgeti(S, c + C_ANCHOR, t->ref);
    else loom__push_task(S, t);
    if (nres > 1) lua_xmove(co, S, nres - 1);
    loom__task_finish(S, t, failed, nres - 1);
  } else {
    /* An error escaped task_main itself (out of memory in the handler), or
     * its results do not fit (out of memory). */
    lua_checkstack(S, 4);
    loom__push_task(S, t);
    if (status == LUA_OK) {
      lua_settop(co, 0);
      lua_pushliteral(S, "not enough memory");
    } else lua_xmove(co, S, 1);
    loom__task_finish(S, t, 1, 1);
  }
}

static void release_tb(lua_State *L, loom_task *t) {
  loom_task_ext *x = t->ext;
  if (x == NULL) return;
  if (x->tb_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, x->tb_ref);
  if (x->tberr_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, x->tberr_ref);
  x->tb_ref = x->tberr_ref = LUA_NOREF;
}

void loom__push_traceback_for(lua_State *L, loom_task *t, int idx) {
  loom_task_ext *x = t->ext;
  if (x != NULL && x->tberr_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->tberr_ref);
    if (lua_rawequal(L, -1, idx)) {
      lua_pop(L, 1);
      lua_rawgeti(L, LUA_REGISTRYINDEX, x->tb_ref);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pushnil(L);
}

void loom__wake_waiters(loom_list *waiters) {
  while (!loom__list_empty(waiters)) {
    loom_list *n = waiters->next;
    loom__list_remove(n);
    loom__wake(loom__container_of(n, loom_task, wait_link), LOOM_WAKE_OK);
  }
}

/* ---- the aux table: contexts of live tasks, tracebacks of failed ones -- */

void loom__aux_get(lua_State *L, loom_rt *rt, int ud) {
  ud = lua_absindex(L, ud);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->aux_ref);
  lua_pushvalue(L, ud);
  lua_rawget(L, -2);
  lua_remove(L, -2);
}

void loom__aux_set(lua_State *L, loom_rt *rt, int ud) {
  ud = lua_absindex(L, ud);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->aux_ref);
  lua_pushvalue(L, ud);
  lua_rotate(L, -3, -1); /* [value, aux, handle] -> [aux, handle, value] */
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int aux_rawset(lua_State *L) { /* (aux, handle, value) */
  lua_rawset(L, 1);
  return 0;
}

/* A failed task's handle keeps the traceback at tb. Inserting it may run
 * out of memory: then only the handle goes without it (its group got it). */
static void keep_traceback(lua_State *L, loom_rt *rt, int ud, int tb) {
  if (!lua_checkstack(L, 4)) return;
  lua_pushcfunction(L, aux_rawset);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->aux_ref);
  lua_pushvalue(L, ud);
  lua_pushvalue(L, tb);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
}

static int pack_values(lua_State *L) {
  int i, n = lua_gettop(L);
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

static int nil_error(lua_State *L) {
  lua_pushliteral(L, "(error object is a nil value)");
  return 1;
}

/* Completion cannot fail half-way: the two steps that allocate (packing
 * several results, naming a nil error) run first, protected; when they run
 * out of memory the task fails with that error instead. */
void loom__task_finish(lua_State *L, loom_task *t, int failed, int nres) {
  loom_rt *rt = t->rt;
  loom_handle *h = t->h;
  int ud = lua_gettop(L) - nres, err = 0, tb = 0, count = nres, homeless;
  /* It just returned from its last resume: in no queue, no wait. */
  LOOM_ASSERT(t->state == LOOM_TASK_RUNNING && t->next_ready == NULL);
  LOOM_ASSERT(t->waitq == NULL && loom__list_empty(&t->wait_link));
  LOOM_ASSERT(t->sleep_timer.index == LOOM_NOT_IN_HEAP);
  LOOM_ASSERT(lua_touserdata(L, ud) == (void *)h && h->t == t);
  if (!failed && nres > 1) {
    if (!lua_checkstack(L, 2)) {
      lua_settop(L, ud);
      lua_pushliteral(L, "not enough memory");
      failed = 1;
    } else {
      lua_pushcfunction(L, pack_values);
      lua_insert(L, ud + 1);
      if (lua_pcall(L, nres, 1, 0) != LUA_OK) failed = 1;
    }
    nres = 1;
  }
  if (failed) {
    lua_settop(L, ud + 1);
    err = ud + 1;
    if (lua_isnil(L, err)) {
      /* error(nil): keep something a group and a reader can hold. */
      lua_pushcfunction(L, nil_error);
      lua_pcall(L, 0, 1, 0);
      lua_replace(L, err);
    }
    h->outcome = is_cancelled(L, rt, err) ? LOOM_OUT_CANCELLED
                                          : LOOM_OUT_FAILED;
    if (h->outcome == LOOM_OUT_FAILED) {
      loom__push_traceback_for(L, t, err);
      tb = lua_gettop(L);
    }
  } else {
    h->outcome = LOOM_OUT_FINISHED;
    h->nresults = count;
  }
  if (t->ctx_state != LOOM_CTX_NONE) {
    /* The context is the live task's: the handle does not keep it (a
     * value set to nil allocates nothing). */
    lua_pushnil(L);
    loom__aux_set(L, rt, ud);
  }
  if (tb != 0 && !lua_isnil(L, tb)) keep_traceback(L, rt, ud, tb);
  release_tb(L, t);
  /* The outcome's slot: the error, or the one result (packed if
   * several); a task that returned nothing leaves it empty, or empties it
   * if it anchored the task's coroutine (one without a home). */
  homeless = t->L != NULL && t->co_slot == 0;
  loom__release_thread(rt, L, t);
  if (err != 0 || nres == 1 || homeless) {
    if (err != 0) lua_pushvalue(L, err);
    else if (nres == 1) lua_pushvalue(L, ud + 1);
    else lua_pushnil(L);
    lua_setiuservalue(L, ud, LOOM_HV_RESULT);
  }
  t->state = LOOM_TASK_DONE;
  h->done = 1;
  if (t == rt->root) rt->root = NULL; /* (its handle keeps the outcome) */
  /* The groups it still hosts (only a killed coroutine leaves any). */
  if (t->ext != NULL && !loom__list_empty(&t->ext->groups))
    loom__group_host_finished(L, t);
  /* Leave every scope still entered (only a killed coroutine leaves any),
   * then the task's own. */
  while (t->cur != NULL && t->cur != &t->scope) {
    loom_scope *s = t->cur;
    t->cur = s->parent;
    loom__scope_detach(L, rt, s);
  }
  loom__list_remove(&t->scope_link);
  loom__scope_detach(L, rt, &t->scope);
  t->cur = NULL;
  if (t->ext != NULL) loom__wake_waiters(&t->ext->waiters);
  /* The one upcall into group.c: its group (or tg:start() caller) learns
   * the outcome; group.c unlinks it from its lists. */
  if (t->group != NULL || h->start_state != LOOM_START_NONE)
    loom__group_task_done(L, t, ud, err, tb);
  LOOM_ASSERT(rt->live_tasks > 0);
  if (!lua_checkstack(L, 4)) { /* (cannot fail: see the drain) */
  } else if (rt->batch_base > 0) {
    unanchor(L, rt, t, rt->batch_base + C_ANCHOR);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor_ref);
    unanchor(L, rt, t, lua_gettop(L));
    lua_pop(L, 1);
  }
  loom__list_remove(&t->all_link);
  rt->live_tasks--;
  h->t = NULL;
  t->h = NULL;
  ext_free(rt, t);
  task_give(rt, t);
  lua_settop(L, ud - 1);
}

int loom__task_push_results(lua_State *L, loom_handle *h, int ud) {
  int i;
  if (h->nresults == 0) return 0;
  lua_getiuservalue(L, ud, LOOM_HV_RESULT);
  if (h->nresults == 1) return 1;
  luaL_checkstack(L, h->nresults, "loom: too many results");
  for (i = 1; i <= h->nresults; i++) lua_rawgeti(L, -i, i);
  return h->nresults;
}

/* Stack: rt(1) module(top). The Task metatable (filled by handle.c), the
 * body closure of every task, the message handler and core.rethrow. */
int loom__open_task(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  static const luaL_Reg funcs[] = {
    {"msgh", loom__msgh}, {"rethrow", l_rethrow}, {NULL, NULL}};
  if (rt->aux_ref == LUA_NOREF) {
    loom__new_weak_keys(L);
    rt->aux_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  luaL_newmetatable(L, LOOM_TASK_MT);
  if (rt->task_mt_ref == LUA_NOREF) {
    lua_pushvalue(L, -1);
    rt->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  if (rt->task_main_ref == LUA_NOREF) {
    /* One closure for every task body: upvalues runtime, message handler. */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, loom__msgh, 1);
    lua_pushcclosure(L, loom__task_main, 2);
    rt->task_main_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  loom__setfuncs(L, 1, funcs);
  return 0;
}
