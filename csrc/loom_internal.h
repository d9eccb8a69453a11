/*
 * loom_internal.h: the structures and interfaces shared by the C files of
 * loom.core. Grouped by the file that defines them. Nothing here is public;
 * the embedding API is loom.h.
 *
 * The one rule every file relies on: Lua runs only inside the scheduler's
 * drain (sched.c), one coroutine at a time. libuv callbacks store outcomes in
 * C and call loom__wake(); they never call into Lua.
 *
 * Sections, in the order of their dependencies: lists; deadline.c (timers);
 * scope.c (cancel scopes); task.c (tasks: struct, spawn, run, finish) and
 * handle.c (TaskHandles, context, task_tree); group.c (task groups); park.c
 * (the park protocol, wait queues); runtime.c (the runtime struct) and
 * sched.c (the scheduler); failure safety; members.c; the embedding files; then
 * the modules built on all of that (streams, copy, threads, files, UDP, TLS,
 * poll).
 */
#ifndef LOOM_INTERNAL_H
#define LOOM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "compat.h"
#include "loom.h"

#define LOOM_HIDDEN __attribute__((visibility("hidden")))

/* LOOM_ASSERT(cond): an invariant of the core (task state transitions,
 * queue membership). Checked when LOOM_DEBUG is defined (Debug and
 * sanitizer builds: see CMakeLists.txt), compiled out otherwise. A failure
 * prints the condition and its place, then aborts. */
#ifdef LOOM_DEBUG
void loom__assert_fail(const char *cond, const char *file, int line) LOOM_HIDDEN
  __attribute__((noreturn));
#define LOOM_ASSERT(cond) \
  ((cond) ? (void)0 : loom__assert_fail(#cond, __FILE__, __LINE__))
#else
#define LOOM_ASSERT(cond) ((void)0)
#endif

/* ---- intrusive doubly linked lists (used by every file) ---------------- */

typedef struct loom_list {
  struct loom_list *prev, *next;
} loom_list;

#define loom__container_of(p, type, member) \
  ((type *)(void *)(((char *)(p)) - offsetof(type, member)))

static inline void loom__list_init(loom_list *l) { l->prev = l->next = l; }
static inline int loom__list_empty(const loom_list *l) { return l->next == l; }
static inline void loom__list_push(loom_list *head, loom_list *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
/* Put n in old's place in its list (old is left unlinked). */
static inline void loom__list_replace(loom_list *old, loom_list *n) {
  n->next = old->next;
  n->prev = old->prev;
  n->next->prev = n;
  n->prev->next = n;
  loom__list_init(old);
}
static inline void loom__list_remove(loom_list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

typedef struct loom_rt loom_rt;

/* The one list of type magics ("lmt" + a letter, so no two classes share
 * a value): the first word of each struct below. */
enum loom_magic {
  LOOM_MAGIC_TASK = 0x6c6d7454,    /* "lmtT" task.c */
  LOOM_MAGIC_GROUP = 0x6c6d7447,   /* "lmtG" group.c, hostgroup.c */
  LOOM_MAGIC_SCOPE = 0x6c6d7453,   /* "lmtS" scope.c */
  LOOM_MAGIC_RT = 0x6c6d7452,      /* "lmtR" runtime.c */
  LOOM_MAGIC_EVENT = 0x6c6d7465,   /* "lmte" sync.c */
  LOOM_MAGIC_LOCK = 0x6c6d746c,    /* "lmtl" */
  LOOM_MAGIC_SEM = 0x6c6d7473,     /* "lmts" */
  LOOM_MAGIC_COND = 0x6c6d7463,    /* "lmtc" */
  LOOM_MAGIC_LIMITER = 0x6c6d7469, /* "lmti" */
  LOOM_MAGIC_SEND = 0x6c6d7477,    /* "lmtw" channel.c */
  LOOM_MAGIC_RECEIVE = 0x6c6d7472, /* "lmtr" */
  LOOM_MAGIC_CALL = 0x6c6d7443,    /* "lmtC" thread.c */
  LOOM_MAGIC_REQ = 0x6c6d7451,     /* "lmtQ" */
  LOOM_MAGIC_STREAM = 0x6c6d746e   /* "lmtn" stream.c */
};

/* Hot-path type checks: a full userdata of the struct's exact size whose
 * first word is the struct's magic. Anything else falls back to
 * luaL_checkudata for the standard error message. */
static inline void *loom__test_ud(lua_State *L, int idx, size_t size,
                                  uint32_t magic) {
  /* lua_touserdata gives non-NULL only for userdata, and lua_rawlen of a
   * light userdata is 0: the size check (every size is a struct's, never
   * 0) alone tells a full userdata of this size, so the magic read stays
   * inside it. */
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_rawlen(L, idx) == size && *(uint32_t *)p == magic)
    return p;
  return NULL;
}
typedef struct loom_task loom_task;
typedef struct loom_task_ext loom_task_ext;
typedef struct loom_scope loom_scope;
typedef struct loom_group loom_group;

/* ---- deadline.c: one min-heap for sleeps and scope deadlines ----------- */

typedef struct loom_timer loom_timer;

/* What a timer does when its deadline passes: called by the heap's firing
 * loop (deadline.c) after tm left the heap; S is the state running the
 * drain. Set by the timer's owner (a sleep, a scope deadline), which finds
 * its own struct with loom__container_of. May wake tasks and cancel scopes,
 * never resumes one. */
typedef void (*loom_timer_fn)(lua_State *S, loom_rt *rt, loom_timer *tm);

struct loom_timer {
  double when;        /* absolute, seconds on loom.now()'s clock */
  uint64_t seq;       /* insertion order: equal deadlines fire FIFO */
  size_t index;       /* slot in the heap, LOOM_NOT_IN_HEAP otherwise */
  loom_timer_fn fire; /* set by the owner before the timer is armed */
};

#define LOOM_NOT_IN_HEAP ((size_t)-1)

/* A heap slot: the deadline inline (comparisons read the array only), the
 * timer for its seq (read on ties only) and its index (written on moves). */
typedef struct loom_heap_entry {
  double when; /* == tm->when */
  loom_timer *tm;
} loom_heap_entry;

void loom__timer_init(loom_timer *tm, loom_timer_fn fire) LOOM_HIDDEN;
int loom__heap_insert(loom_rt *rt, loom_timer *tm, double when) LOOM_HIDDEN;
void loom__heap_remove(loom_rt *rt, loom_timer *tm) LOOM_HIDDEN;
loom_timer *loom__heap_min(loom_rt *rt) LOOM_HIDDEN;
/* Take every timer out of the heap and free it (teardown). */
void loom__heap_free(loom_rt *rt) LOOM_HIDDEN;
/* Fire, in (when, seq) order, every timer due at `now` / on the runtime
 * clock now. */
void loom__fire_timers_at(loom_rt *rt, lua_State *S, double now) LOOM_HIDDEN;
void loom__fire_timers(loom_rt *rt, lua_State *S) LOOM_HIDDEN;

/* ---- scope.c: cancel scopes ------------------------------------------- */

enum { LOOM_SCOPE_NEW = 0, LOOM_SCOPE_ACTIVE = 1, LOOM_SCOPE_EXITED = 2 };

struct loom_scope {
  uint32_t magic;      /* LOOM_MAGIC_SCOPE: fast type check */
  int exc_ref;         /* registry ref of its Cancelled object, or NOREF */
  loom_scope *parent;  /* enclosing scope while active (NULL: root) */
  loom_list children;  /* active child scopes (task scopes included) */
  loom_list link;      /* node in parent->children */
  loom_list tasks;     /* tasks whose innermost scope is this one */
  loom_task *owner;    /* task that entered it */
  unsigned char state; /* LOOM_SCOPE_* */
  unsigned char cancel_called, shield, caught, is_task_scope;
  unsigned char by_deadline; /* cancelled because its deadline passed */
  unsigned char counted;     /* in rt->ncancelled (scope.c) */
};

/* A scope that is not a task's own, in a CancelScope userdata (user
 * scopes, group scopes): only those can have a deadline, so a task's
 * private scope carries no timer. */
typedef struct loom_cscope {
  loom_scope base;
  loom_timer timer; /* in the deadline heap while active and finite */
  double deadline;  /* HUGE_VAL: none */
} loom_cscope;

/* A task scope (is_task_scope) must be embedded in its task; any other
 * in a loom_cscope (loom__scope_new). */
void loom__scope_init(loom_scope *s, int is_task_scope) LOOM_HIDDEN;
/* Link s below parent (active). */
void loom__scope_attach(loom_scope *s, loom_scope *parent) LOOM_HIDDEN;
void loom__scope_detach(lua_State *L, loom_rt *rt, loom_scope *s) LOOM_HIDDEN;
/* The outermost cancelled scope at or above s, below the nearest shield. */
loom_scope *loom__effective_cancel(loom_scope *s) LOOM_HIDDEN;
/* loom__effective_cancel(t->cur), without the walk while no scope of the
 * runtime is cancelled. */
#define loom__cancel_hit(t) \
  ((t)->rt->ncancelled > 0 ? loom__effective_cancel((t)->cur) : NULL)
/* [-0, +0] cancel s; reason_idx is a stack index of a string or 0 (none).
 * Aborts every abortable wait in the subtree synchronously. */
void loom__scope_cancel(lua_State *L, loom_rt *rt, loom_scope *s,
                        int reason_idx, int by_deadline) LOOM_HIDDEN;
/* Abort the abortable waits of every task below s (not through shields). */
void loom__scope_abort_subtree(loom_rt *rt, loom_scope *s) LOOM_HIDDEN;
/* [-0, +1] push s's Cancelled object (creating it if needed). */
void loom__push_cancelled(lua_State *L, loom_rt *rt, loom_scope *s) LOOM_HIDDEN;
/* [-0, +1] a new, unentered CancelScope userdata. */
loom_scope *loom__scope_new(lua_State *L) LOOM_HIDDEN;
int loom__open_scope(lua_State *L) LOOM_HIDDEN;

/* ---- task.c: tasks (struct, slabs, anchors, spawn, run, finish) -------- */

enum {
  LOOM_TASK_NEW = 0, /* spawned, never ran */
  LOOM_TASK_READY,   /* in the ready queue after a wake */
  LOOM_TASK_RUNNING,
  LOOM_TASK_PARKED, /* yielded, waiting for loom__wake */
  LOOM_TASK_DONE,
  LOOM_TASK_ABANDONED, /* could not finish (memory exhausted): inert */
  /* Pending records (struct loom_task, below): */
  LOOM_TASK_PENDING, /* spawned, only its record exists */
  LOOM_TASK_FORWARD  /* the record's task has its struct: h->t */
};

enum {
  LOOM_OUT_NONE = 0,
  LOOM_OUT_FINISHED,
  LOOM_OUT_FAILED,
  LOOM_OUT_CANCELLED
};

/* Outcomes a parked task is woken with. */
enum {
  LOOM_WAKE_OK = 0,
  LOOM_WAKE_CANCELLED = 1,
  LOOM_WAKE_CLOSED = 2,
  LOOM_WAKE_ERROR = 3
};

/* A task's context table (user value LOOM_UV_CTX). Copy-on-write: a table
 * no user code has seen (PRIVATE, SHARED) cannot change, so spawning shares
 * it instead of copying; loom.context() hands out only an OWNED table,
 * copying a SHARED one first. */
enum {
  LOOM_CTX_NONE = 0, /* none yet (an empty context) */
  LOOM_CTX_PRIVATE,  /* a copy taken at spawn, held by this task only */
  LOOM_CTX_SHARED,   /* never handed out, maybe held by other tasks */
  LOOM_CTX_OWNED     /* handed out by loom.context(): may change */
};

/* How the task was started with tg:start(). */
enum {
  LOOM_START_NONE = 0,
  LOOM_START_PENDING,
  LOOM_START_MOVED,
  LOOM_START_NOOP
};

/* Aborts a parked task's wait: unlink it from whatever queue holds it.
 * Called synchronously from cancel(); must not call Lua. */
typedef void (*loom_abort_fn)(loom_task *t);

/* A task lives in two pieces (docs/architecture.md, "Task layout"):
 *
 * - struct loom_task, in C memory outside the Lua heap, taken from a
 *   per-runtime free list (task.c) and given back when the task finishes.
 *   It is linked into the ready queue, wait queues, scopes and groups.
 * - struct loom_handle, the TaskHandle: a small userdata that outlives the
 *   task. While the task is live the runtime's anchor table holds the
 *   handle, and the handle its coroutine; when it finishes its outcome
 *   moves into the handle and handle->t becomes NULL.
 *
 * The task's function and arguments go onto its coroutine's stack at spawn
 * ([task_main, task, task, fn, args...]: the task a light userdata, its
 * second copy the slot task_main puts the message handler in), never into
 * user values. */

/* User value slots of a handle userdata. Three, so that a handle is a
 * 120-byte allocation, which glibc serves from its fast bins: with six
 * (168 bytes) an allocation and free cost three times as much in a burst
 * of spawns. A live task's context table and a failed task's traceback
 * are rare: they live in the runtime's aux table instead (a weak-keyed
 * table, handle -> value; loom__aux_get/set). */
enum {
  LOOM_HV_NAME = 1, /* an explicit name (string), else the function */
  /* The outcome once the task finished: one result, a packed table of
   * several, or the error (empty when it returned nothing). Before its
   * first resume, the function of a task named meanwhile. While the task
   * is live, also its coroutine if that has no home in the pool table
   * (task.c, "the coroutines"); a homed one is anchored by its home. */
  LOOM_HV_RESULT = 2,
  /* The handle of the parent task (the host of its group). A child of a
   * group that spawned many (group.c, own_metatables) has no such slot:
   * its parent is in its group's Task metatable (h->parent_in_mt). */
  LOOM_HV_PARENT = 3,
  LOOM_HV_N = 3
};
/* The user value of a handle holding argument i (1-based) of a task that
 * has not started (deferred: t->nargs >= 0): after the fixed slots. */
#define loom__hv_arg(h, i) \
  (((h)->parent_in_mt ? LOOM_HV_PARENT - 1 : LOOM_HV_N) + (i))

typedef struct loom_handle {
  uint32_t magic;                     /* LOOM_MAGIC_TASK: fast type check */
  unsigned char done : 1;             /* the task finished: outcome is set */
  unsigned char cancel_requested : 1; /* h:cancel() was called */
  unsigned char parent_in_mt : 1; /* no LOOM_HV_PARENT: see loom__push_parent */
  unsigned char outcome;          /* LOOM_OUT_* */
  unsigned char start_state;      /* LOOM_START_*: how tg:start() went */
  loom_task *t; /* the task while live (or abandoned), else NULL */
  lua_Integer id;
  int nresults;        /* results stored in LOOM_HV_RESULT */
  int start_value_ref; /* value given to a no-op started(), or NOREF */
} loom_handle;

struct loom_task {
  /* The pending record. A task spawned while no pooled coroutine is free
   * (a burst of spawns: it cannot run before the spawner yields anyway)
   * is at first only these fields (LOOM_TASK_RECORD_BYTES, from task.c's
   * chunks), record != 0 and state LOOM_TASK_PENDING: it waits in the ready
   * queue and its group's children like a task, and takes
   * its struct when the drain reaches it (or earlier, for h:cancel()), in
   * the record's place everywhere (task.c, loom__task_materialize). A
   * burst then holds 48 bytes per waiting task instead of 320, and its
   * tasks run one after another on the structs the previous ones gave
   * back. Code that walks tasks reads nothing past the record of a task
   * with `record` set; under ASan the rest of its slot is poisoned. A
   * record is in no list of the runtime's: code that visits every live
   * task finds the pending records in the ready queue (state
   * LOOM_TASK_PENDING; FORWARD ones are their structs' stand-ins) and the
   * abandoned ones on rt->abandoned_recs. */
  loom_task *next_ready;    /* ready queue; the free list when not in use */
  loom_handle *h;           /* its handle, anchored while the task is live */
  loom_group *group;        /* owning group (NULL: root, or before started) */
  loom_list group_link;     /* node in group->children */
  int ref;                  /* slot of its handle in the anchor table */
  int16_t nargs;            /* arguments kept in the handle until the first
                             * resume (-1: they are on L already; at most
                             * LOOM_DEFER_MAX_ARGS) */
  unsigned char state;      /* LOOM_TASK_* */
  unsigned char record : 2; /* LOOM_REC_*: a pending record, 0: a task */
  unsigned char ctx_state : 2; /* LOOM_CTX_*: its context table (task.c) */
  /* The rest exists only in a task's struct (the record ends here, at 48
   * bytes: task_layout_spec checks it). A pending record has no runtime
   * pointer (loom__task_rt: its group's) and no extension (h:wait() takes
   * the struct first, as h:cancel() does). */
  loom_list all_link; /* node in rt->all_tasks while live */
  loom_rt *rt;
  loom_task_ext *ext;     /* the rarely used part, or NULL (see below) */
  int wake_nargs;         /* values pushed on L for the resume */
  int co_slot;            /* L's home in the pool table, 0: none (its
                           * handle anchors it) */
  lua_State *L;           /* its coroutine (from its first resume to its end) */
  loom_scope *cur;        /* innermost active scope */
  loom_abort_fn abort;    /* NULL: the current wait cannot be aborted */
  loom_list scope_link;   /* node in cur->tasks */
  loom_scope scope;       /* private scope: h:cancel() cancels it */
  loom_scope *wake_scope; /* the cancelled scope that aborted the wait */
  /* Suspension (loom__suspend): the real continuation, and the stack top
   * at the yield, so a resume by anyone but the scheduler is refused. */
  lua_KFunction k;
  lua_KContext kctx;
  int park_top;
  unsigned char wake; /* LOOM_WAKE_*: how it was woken */
  /* Parking. */
  const char *wait_what;    /* what it waits on, for task_tree() */
  loom_list wait_link;      /* node in one wait queue (free while not parked) */
  struct loom_waitq *waitq; /* the queue wait_link is in (loom__waitq_*) */
  void *wait_data; /* the object waited on, for the owner of the queue */
  loom_timer sleep_timer;
} __attribute__((aligned(16)));

#define LOOM_TASK_RECORD_BYTES offsetof(loom_task, all_link)
/* More arguments than this are put on the task's coroutine at spawn, even
 * in a burst (nargs is 16 bits). */
#define LOOM_DEFER_MAX_ARGS 0x7fff
/* Is t a record still waiting for its struct? (Such records are found in
 * the ready queue only; see struct loom_task.) */
#define loom__is_pending_record(t) \
  ((t)->record && (t)->state == LOOM_TASK_PENDING)
/* A task's runtime, a pending record's included. */
#define loom__task_rt(t) ((t)->record ? (t)->group->rt : (t)->rt)
/* A pending record's slot: 48 bytes, 16-byte aligned as the struct type
 * asks. Under ASan, a struct's whole stride with everything past the
 * record poisoned (task.c), so that a read of a struct-only field of a
 * record fails the sanitizer run wherever the field is. */
#if defined(__SANITIZE_ADDRESS__)
#define LOOM_REC_SLOT ((sizeof(loom_task) + 63) & ~(size_t)63)
#else
#define LOOM_REC_SLOT ((LOOM_TASK_RECORD_BYTES + 15) & ~(size_t)15)
#endif
enum {
  LOOM_REC_PENDING = 1, /* a record waiting for its struct */
  LOOM_REC_MARKED = 2   /* ... whose scope is to be marked cancelled */
};

/* What few tasks use, allocated the first time one does (t->ext), freed
 * with the task: five 64-byte lines per task instead of six, and every
 * task is born and dies with fewer bytes to touch. Taken with
 * loom__task_ext, which may raise; code that must not raise calls
 * loom__task_ext_reserve first, or loom__task_ext_try. */
struct loom_task_ext {
  loom_list groups;        /* groups the task hosts, innermost last */
  loom_list waiters;       /* tasks in h:wait() / h:result() */
  loom_task *start_caller; /* tg:start(): the caller, until started() */
  loom_group *start_group; /* tg:start(): the group it goes to */
  int tb_ref, tberr_ref;   /* traceback captured by the message handler */
};

#define LOOM_TASK_MT "loom.Task"

loom_handle *loom__check_handle(lua_State *L, int idx) LOOM_HIDDEN;
/* [-0, +1] the aux value of the handle at ud: a live task's context table,
 * a failed task's traceback, or nil. */
void loom__aux_get(lua_State *L, loom_rt *rt, int ud) LOOM_HIDDEN;
/* [-1, +0] set the aux value of the handle at ud to the value on top (may
 * raise: out of memory, when the handle had none). */
void loom__aux_set(lua_State *L, loom_rt *rt, int ud) LOOM_HIDDEN;
/* loom__task_of(L): the task running on L, or NULL; defined at the end
 * of this header, after struct loom_rt. */
/* [-0, +1] a new task for fn(args...): the function at fn_idx, its nargs
 * arguments right after it (copied onto the task's coroutine); pushes the
 * handle. The caller links it into a group or start record, then enqueues
 * it. mt_idx: the Task metatable at that index (an upvalue of the
 * spawning method), or 0: read from the registry. Raises (out of memory)
 * before anything changed. */
loom_task *loom__task_new(lua_State *L, loom_rt *rt, int fn_idx, int nargs,
                          loom_task *spawner, int mt_idx,
                          int flags) LOOM_HIDDEN;
enum {
  /* The task may be a pending record (a spawn into a group's scope,
   * launched with loom__launch). */
  LOOM_SPAWN_MAY_PEND = 1,
  /* The handle gets no LOOM_HV_PARENT slot: the metatable at mt_idx (a
   * group's own Task metatable) holds the parent. */
  LOOM_SPAWN_PARENT_IN_MT = 2,
  /* The anchor table is the spawning C function's upvalue
   * LOOM_SPAWN_ANCHORS_UV (a closure registered with
   * loom__register_spawner): no registry read. */
  LOOM_SPAWN_ANCHORS_IN_UV = 4
};
#define LOOM_SPAWN_ANCHORS_UV 4
/* [-1, +0] the closure on top holds the anchor table as its upvalue
 * LOOM_SPAWN_ANCHORS_UV: keep it current (allocates: may raise). */
void loom__register_spawner(lua_State *L, loom_rt *rt) LOOM_HIDDEN;
/* Link a new task (or record) under parent and make it ready: a record
 * takes its scope only with its struct. */
void loom__launch(loom_task *t, loom_scope *parent) LOOM_HIDDEN;
/* The struct of the pending record p (p itself if it has one): taken now,
 * in p's place (may raise: out of memory, nothing changed). */
loom_task *loom__task_materialize(lua_State *L, loom_task *p) LOOM_HIDDEN;
/* Free (or keep as the spare) a record off every list. */
void loom__record_free(loom_rt *rt, loom_task *p) LOOM_HIDDEN;
/* Empty the ready queue (the runtime closes): records that only forward
 * to their task's struct are freed, they are in no other list. */
void loom__ready_drop(loom_rt *rt) LOOM_HIDDEN;
/* A new task whose function and arguments wait in its handle (nargs >= 0)
 * gets its coroutine; may raise (out of memory) with nothing changed. */
void loom__task_prepare(lua_State *S, loom_task *t) LOOM_HIDDEN;
/* [-0, +1] push the handle of a live task (or nil when finished). */
void loom__push_task(lua_State *L, loom_task *t) LOOM_HIDDEN;
/* Run the completion of t: results are on top of L (nres values after the
 * task's handle). Pops them and the handle. */
void loom__task_finish(lua_State *L, loom_task *t, int failed,
                       int nres) LOOM_HIDDEN;
int loom__task_main(lua_State *L) LOOM_HIDDEN;
/* [-0, +n] push a finished task's return values (its handle at ud). */
int loom__task_push_results(lua_State *L, loom_handle *h, int ud) LOOM_HIDDEN;
/* Free every task struct of rt (the free list, live and abandoned tasks):
 * the runtime's finaliser. */
void loom__tasks_free(loom_rt *rt) LOOM_HIDDEN;
/* Let go of every pooled coroutine (the runtime closes). */
void loom__pool_empty(lua_State *L, loom_rt *rt) LOOM_HIDDEN;
/* Free the task structs kept beyond the free list's cap, and shrink the
 * anchor table after a burst (L: a state with no batch cache on it, or
 * NULL): when the scheduler goes idle, at the end of loom.run and of every
 * step. */
void loom__tasks_trim(lua_State *L, loom_rt *rt) LOOM_HIDDEN;
int loom__msgh(lua_State *L) LOOM_HIDDEN;
/* t's extension (struct loom_task_ext), made now if it has none: raises
 * (out of memory) unless loom__task_ext_reserve ran since the last one was
 * made. loom__task_ext_try returns NULL instead of raising. */
loom_task_ext *loom__task_ext(lua_State *L, loom_task *t) LOOM_HIDDEN;
loom_task_ext *loom__task_ext_try(loom_task *t) LOOM_HIDDEN;
void loom__task_ext_reserve(lua_State *L, loom_rt *rt) LOOM_HIDDEN;
/* [-0, +1] the traceback the message handler recorded for the error at
 * (absolute) idx raised in t, or nil. */
void loom__push_traceback_for(lua_State *L, loom_task *t, int idx) LOOM_HIDDEN;
/* The groups t hosts / the tasks waiting for it, or NULL: none. */
#define loom__task_groups(t) \
  (!(t)->record && (t)->ext != NULL ? &(t)->ext->groups : NULL)
void loom__wake_waiters(loom_list *waiters) LOOM_HIDDEN;
int loom__open_task(lua_State *L) LOOM_HIDDEN;

/* ---- handle.c: TaskHandles, context, task_tree ------------------------- */

/* [-0, +(0|1)] push a shallow copy of the context table at src and return
 * 1, or push nothing and return 0 when it is empty. */
int loom__copy_context(lua_State *L, int src) LOOM_HIDDEN;
/* task_tree: [-0, +1] the node of task t and its descendants. */
void loom__push_task_node(lua_State *L, loom_task *t,
                          const char *own_dir) LOOM_HIDDEN;
int loom__open_handle(lua_State *L) LOOM_HIDDEN;

/* ---- group.c: task groups and tg:start() ------------------------------ */

enum { LOOM_GROUP_OPEN = 0, LOOM_GROUP_EXITING = 1, LOOM_GROUP_CLOSED = 2 };

struct loom_group {
  uint32_t magic; /* LOOM_MAGIC_GROUP: fast type check */
  loom_rt *rt;
  loom_task *host;
  loom_scope *scope;   /* the CancelScope in user value 1 */
  loom_list children;  /* live children (after started() for start) */
  loom_list starting;  /* children of pending start() calls */
  loom_list host_link; /* node in host->groups */
  int ref;             /* registry ref while not closed */
  int nlive;           /* live children + pending start() calls */
  int nspawned;        /* tg:start_soon calls, counted up to 8 */
  int nerrors;
  unsigned char state, host_waiting, host_cancelled;
  unsigned char body_failed, record_failed; /* see group_exit */
  /* Host groups (hostgroup.c): no host task; errors go to the hook. */
  unsigned char is_host, fail_fast;
  unsigned char children_mt; /* its children's Task metatable exists */
  loom_list hg_link;         /* node in rt->host_groups */
};

#define LOOM_GROUP_MT "loom.TaskGroup"

/* [-0, +0] record an error (err at err_idx, traceback at tb_idx or 0) and
 * cancel the group's scope. */
void loom__group_record(lua_State *L, loom_group *g, int err_idx,
                        int tb_idx) LOOM_HIDDEN;
void loom__group_child_done(lua_State *L, loom_group *g) LOOM_HIDDEN;
/* [-0, +1] the parent's handle of the handle at absolute index hi (nil
 * for the root task): in the handle's LOOM_HV_PARENT slot, or for a child
 * of a group that spawned many, in the group's Task metatable. */
void loom__push_parent(lua_State *L, int hi) LOOM_HIDDEN;
/* A task started with tg:start() finished before started() moved it. */
void loom__start_child_done(lua_State *L, loom_task *t,
                            int err_idx) LOOM_HIDDEN;
/* The upcalls of a finishing task t (loom__task_finish): the groups it
 * still hosts are orphaned (before its scopes are left); then its group or
 * tg:start() caller learns its outcome (handle at ud, error at err and
 * traceback at tb, 0 when none) and t leaves the group's lists. */
void loom__group_host_finished(lua_State *L, loom_task *t) LOOM_HIDDEN;
void loom__group_task_done(lua_State *L, loom_task *t, int ud, int err,
                           int tb) LOOM_HIDDEN;
/* task_tree: [-0, +1] the node of group g and its children; the array of
 * the groups task t hosts. */
void loom__push_group_node(lua_State *L, loom_group *g,
                           const char *own_dir) LOOM_HIDDEN;
void loom__push_hosted_groups(lua_State *L, loom_task *t,
                              const char *own_dir) LOOM_HIDDEN;
int loom__open_group(lua_State *L) LOOM_HIDDEN;

/* ---- park.c: the park protocol (its contract is at the top of park.c) -- */

/* FIFO wait queues of parked tasks (events, locks, channels ...), linked
 * through the tasks themselves: waiting allocates nothing. */
typedef struct loom_waitq {
  loom_list head;
  int n;
} loom_waitq;

/* Mark t parked; abort may be NULL (not abortable). */
void loom__park(loom_task *t, loom_abort_fn abort, const char *what,
                void *data) LOOM_HIDDEN;
/* Wake a parked task with an outcome (no-op if it is not parked). Any
 * values for it must already be pushed on t->L, counted in t->wake_nargs. */
void loom__wake(loom_task *t, int how) LOOM_HIDDEN;
/* Raise Cancelled if the running task is effectively cancelled. */
void loom__cancel_point(lua_State *L, loom_task *t) LOOM_HIDDEN;
/* Yield once and continue in k(ctx) on the next scheduler turn: the
 * schedule point of an operation that did not need to wait. Not
 * cancellable; a pending Cancelled comes at the next checkpoint, so what the
 * fast path took is never lost. */
int loom__schedule_point(lua_State *L, loom_task *t, lua_KContext ctx,
                         lua_KFunction k) LOOM_HIDDEN;
/* Yield from a C function: the continuation k runs when woken. */
int loom__suspend(lua_State *L, lua_KContext ctx, lua_KFunction k) LOOM_HIDDEN;
/* The same for the task t running on L (known to the caller: no look-up). */
int loom__suspend_task(lua_State *L, loom_task *t, lua_KContext ctx,
                       lua_KFunction k) LOOM_HIDDEN;
/* The outcome of t's wait, read once by its continuation (the first thing
 * it does): clears the wait (what, data, outcome) and returns LOOM_WAKE_OK,
 * LOOM_WAKE_CLOSED, LOOM_WAKE_ERROR or the owner's code of the same value.
 * A wait aborted by a cancel raises the Cancelled of the scope that aborted
 * it when raise_cancel (returns LOOM_WAKE_OK if no scope is cancelled any
 * more), and returns LOOM_WAKE_CANCELLED otherwise. */
int loom__wake_outcome(lua_State *L, loom_task *t,
                       int raise_cancel) LOOM_HIDDEN;
/* The continuation of a wait that returns nothing: loom__wake_outcome
 * (raising a cancel), then 0 results. */
int loom__k_return0(lua_State *L, int status, lua_KContext ctx) LOOM_HIDDEN;
void loom__waitq_init(loom_waitq *q) LOOM_HIDDEN;
/* Link t at the tail of q (t must already be parked, or be parked next). */
void loom__waitq_push(loom_waitq *q, loom_task *t) LOOM_HIDDEN;
/* Unlink t from the queue it is in. */
void loom__waitq_remove(loom_task *t) LOOM_HIDDEN;
/* Park the running task t at the tail of q, abortable (a cancel unlinks
 * it); data becomes t->wait_data. */
void loom__waitq_park(loom_waitq *q, loom_task *t, const char *what,
                      void *data) LOOM_HIDDEN;
/* Unlink and return the longest waiter that can take a hand-off, or NULL.
 * An abortable waiter whose cancellation is pending is woken with its
 * Cancelled instead, so nothing is handed to a task that could not
 * keep it; non-abortable waiters are never skipped. */
loom_task *loom__waitq_pop(loom_waitq *q) LOOM_HIDDEN;
/* Unlink and return the longest waiter, or NULL (no skipping). */
loom_task *loom__waitq_shift(loom_waitq *q) LOOM_HIDDEN;

/* ---- runtime.c: the runtime struct (built, filled and freed there); ---- *
 * ---- sched.c: the scheduler that runs on it ------------------------------ */

#define LOOM_POOL_MAX 256 /* finished coroutines kept for reuse */

struct loom_rt {
  uint32_t magic;  /* LOOM_MAGIC_RT, checked by loom__task_of */
  uv_loop_t *loop; /* &own_loop, or a host's loop (borrowed) */
  uv_loop_t own_loop;
  uv_timer_t timer;   /* armed for the heap's earliest deadline */
  lua_State *S;       /* state running the drain (loom.run's caller) */
  loom_task *current; /* task being resumed, NULL between resumes */
  loom_task *root;
  loom_task *ready_head, *ready_tail;
  /* deadline heap (deadline.c): 4-ary, entry i at heap[i] */
  loom_heap_entry *heap;
  size_t heap_len, heap_cap;
  uint64_t timer_seq;
  /* The coroutines (task.c, "the coroutines"): the pool keeps finished
   * ones, pool_co[0, pool_len), each in its home pool_slot[i], a fixed
   * slot of the pool table (registry ref pool_ref); home_free lists the
   * homes nobody has. */
  int pool_ref;
  int pool_len;
  int home_nfree;
  int task_coroutines; /* coroutines tasks run on (homed or not) */
  lua_State *pool_co[LOOM_POOL_MAX];
  int pool_slot[LOOM_POOL_MAX];
  int home_free[LOOM_POOL_MAX];
  loom_list blocked_waiters; /* tasks in wait_all_tasks_blocked() */
  lua_Integer next_id;
  size_t live_tasks;
  int running;  /* inside loom.run */
  int deadlock; /* the root was cancelled because nothing could run */
  int closed;
  int hooks_ref;     /* registry ref of the hooks table (errors.lua) */
  int task_main_ref; /* registry ref of the task body closure */
  int own_dir_ref;   /* source prefix of loom's Lua files, or NOREF:
                      * user-facing positions skip their frames */
  int cancelled_ref; /* the Cancelled class (hooks.Cancelled) */
  const void *cancelled_class; /* its address (compared with metatables) */
  /* Attached scopes with cancel_called set (scope.c): while it is 0, no
   * checkpoint has a cancellation to find (loom__cancel_hit). */
  long ncancelled;
  /* The Cancelled object a scope set last, while that scope holds it
   * (scope.c): loom__is_cancelled knows it at once. */
  loom_scope *exc_scope;
  const void *exc_ptr;
  int task_mt_ref;     /* registry ref of the loom.Task metatable */
  int aux_ref;         /* weak-keyed table: handle -> context / traceback */
  int issued_ref;      /* weak set of the Cancelled objects scopes made */
  loom_list all_tasks; /* every live task (stranded ones are found here) */
  loom_list abandoned; /* tasks that could not finish (freed at the end) */
  /* Slabs of task structs (task.c): with free structs, and full. */
  loom_list slabs_partial, slabs_full;
  loom_list regions; /* regions with room, that later slabs come from */
  struct slab_region *empty_region; /* the one empty region kept */
  int task_free_n;                  /* free structs in the slabs */
  int nslabs;                       /* slabs allocated one by one */
  int nregions;                     /* regions held (task.c) */
  loom_task_ext *ext_spare;         /* one for loom__task_ext_reserve */
  loom_list rec_partial, rec_full;  /* chunks of pending records (task.c) */
  int rec_free_n;                   /* free records in the chunks */
  int rec_chunks;                   /* chunks held */
  int rec_live;                     /* records in use (queued) */
  loom_task *abandoned_recs; /* pending records abandoned (finish_stranded),
                              * linked by next_ready */
  int ext_live;              /* extensions held by tasks */
  int region_free_slabs;     /* entirely free slabs cut from regions */
  /* The anchor table: each live task's handle in slot task->ref (the
   * handle holds the coroutine). Freed slots are reused (anchor_free: a
   * stack of their numbers, with room for every slot up to anchor_top);
   * the table is rebuilt smaller after a burst, so that its array does not
   * keep the size of the largest burst (a registry ref per task would). */
  int anchor_ref;
  /* The C closures that hold the anchor table as their upvalue
   * LOOM_SPAWN_ANCHORS_UV (tg:start_soon, one per loading of the module),
   * the keys of a weak-keyed table in the registry: a rebuild gives them
   * the new table. */
  int spawners_ref;
  int anchor_n, anchor_peak; /* slots in use; the most since the rebuild */
  int anchor_top;            /* highest slot handed out */
  int *anchor_free;
  int anchor_nfree, anchor_cap;
  /* The anchor and pool tables on the drain's stack during a run of
   * batches (task.c's batch cache): their index, 0 while not pushed. */
  int batch_base;
  /* Errors of host groups' tasks that could not be reported (out of
   * memory): the step that lost them returns LOOM_ERRMEM. */
  int lost_reports;

  /* Live counts for core.stats() (the specs' leak check). */
  size_t parked; /* tasks in LOOM_TASK_PARKED */
  size_t queued; /* tasks linked in a loom_waitq */

  /* Host-driven runtime (sched.c, embed.c, hostgroup.c). */
  size_t nready;            /* tasks in the ready queue */
  lua_Integer frame;        /* steps (or loom.run passes) begun so far */
  loom_waitq frame_waiters; /* tasks in next_frame, in parking order */
  int stepping;             /* inside loom.step, hg:close or loom_close */
  int clock;                /* LOOM_CLOCK_* */
  double clock_now;         /* manual/host: the time; autojump: the offset */
  int clock_sampled;        /* the host clock was read at least once */
  int clock_ref;            /* the Lua host clock function, or NOREF */
  loom_clock_fn clock_fn;
  void *clock_ud;
  int on_error;     /* LOOM_ONERR_* */
  int on_error_ref; /* the Lua on_error function, or NOREF */
  loom_error_fn error_fn;
  void *error_ud;
  loom_wake_fn wake;
  void *wake_ud;
  int errq_ref; /* queued unhandled errors (a table), or NOREF */
  int errq_head, errq_len;
  int eg_ref;            /* builds a host group's ErrorGroup (embed.lua) */
  loom_list host_groups; /* host groups not yet released */
  int nhost_open;        /* host groups not closed */
  int borrowed;          /* loop is the host's: never run or closed */
  uv_prepare_t prepare;  /* borrowed loop: drive loom from the host's */
  uv_check_t check;      /*   uv_run (started only when borrowed) */
  lua_State *host_L;     /* main thread, for the borrowed loop's steps */
  int closing_handles;   /* loom's handles whose close callback is due */
  double closed_time;    /* loom.now() when the runtime was closed */
  void *remote;          /* owned by remote.c */

  /* Signal watchers kept for the runtime's whole life (process.c's child
   * reaper, signal.c's Ctrl-C handler): inside the struct, so that
   * core.stats() counts them as the runtime's own, like timer. */
  uv_signal_t sigchld;
  uv_signal_t sigint;
};

#define LOOM_RT_MT "loom.Runtime"

/* runtime.c. [-0, +1] the runtime userdata of L's state (made on first
 * use, raises on failure); luaopen_loom_core puts it at index 1. */
loom_rt *loom__push_rt(lua_State *L) LOOM_HIDDEN;
/* Is a task, a step or loom.run under way (the runtime cannot close)? */
int loom__rt_busy(loom_rt *rt) LOOM_HIDDEN;
/* Close loom's own handles (timer, signal watchers, a borrowed loop's
 * prepare/check) and wait for their close callbacks. */
void loom__rt_close_handles(loom_rt *rt) LOOM_HIDDEN;
/* Close the runtime (loom_close, __gc): unless busy, cancel the host groups
 * and settle the tasks for at most grace seconds under lua_pcall; then
 * close the mailboxes and free the handles, loop, pool and heap. Returns
 * the first failure's pcall status, its error left on the stack. */
int loom__rt_close(lua_State *L, loom_rt *rt, double grace) LOOM_HIDDEN;
int loom__open_runtime(lua_State *L) LOOM_HIDDEN;

/* The wall clock (monotonic seconds): budgets, waits. */
double loom__now(void) LOOM_HIDDEN;
/* The runtime clock (loom.now()): every deadline is on it. */
double loom__time(loom_rt *rt) LOOM_HIDDEN;
loom_rt *loom__rt(lua_State *L) LOOM_HIDDEN; /* from upvalue 1 */
/* The running task; raises the documented message naming fn when L is not
 * inside a task, and (when must_yield) when L cannot yield. */
loom_task *loom__check_blocking(lua_State *L, const char *fn,
                                int must_yield) LOOM_HIDDEN;
/* The same for a method whose object knows its runtime (one upvalue
 * look-up less on a hot path: stream send and receive). */
loom_task *loom__check_blocking_rt(lua_State *L, loom_rt *rt, const char *fn,
                                   int must_yield) LOOM_HIDDEN;
void loom__enqueue(loom_rt *rt, loom_task *t) LOOM_HIDDEN;
/* Raise a loom error object: cls is a class name of loom.errors
 * ("ClosedResourceError", "OSError", ...), code (may be NULL) goes in .code.
 * Only call it where loom__rt(L) works (a C function registered by
 * loom__setfuncs) or from a task's own coroutine. */
int loom__raise_error(lua_State *L, const char *cls, const char *msg,
                      const char *code) LOOM_HIDDEN;
/* [-0, +1] push hooks[name] (a function set by errors.lua). */
void loom__push_hook(lua_State *L, loom_rt *rt, const char *name) LOOM_HIDDEN;
/* task.c: give t's finished coroutine back to the pool (or close it). */
void loom__release_thread(loom_rt *rt, lua_State *S, loom_task *t) LOOM_HIDDEN;
int loom__open_sched(lua_State *L) LOOM_HIDDEN;
int loom__open_tcp(lua_State *L) LOOM_HIDDEN;
int loom__open_dns(lua_State *L) LOOM_HIDDEN;
int loom__open_sync(lua_State *L) LOOM_HIDDEN;
int loom__open_channel(lua_State *L) LOOM_HIDDEN;

/* Register funcs in the table on top, each with the runtime as upvalue 1
 * (the runtime userdata is at rt_idx). */
void loom__setfuncs(lua_State *L, int rt_idx,
                    const luaL_Reg *funcs) LOOM_HIDDEN;
/* [-0, +1] a new table with weak keys (may raise: out of memory). */
void loom__new_weak_keys(lua_State *L) LOOM_HIDDEN;

/* The task running on L, or NULL (L is not a task's own coroutine: the
 * main thread, a coroutine the user made, or no task is running). Only the
 * running task can call into loom, so it is rt->current when its coroutine
 * is L. Must be called from a C function (or its continuation) whose
 * upvalue 1 is the runtime, as loom__setfuncs registers them; elsewhere it
 * returns NULL. loom never touches lua_getextraspace: hosts may use it. */
static inline loom_task *loom__task_of(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, lua_upvalueindex(1));
  loom_task *t;
  if (rt == NULL || rt->magic != LOOM_MAGIC_RT) return NULL;
  t = rt->current;
  return (t != NULL && t->L == L) ? t : NULL;
}

/* Take the head of the ready queue (sched.c and task.c's step). */
static inline loom_task *loom__dequeue(loom_rt *rt) {
  loom_task *t = rt->ready_head;
  if (t) {
    rt->nready--;
    rt->ready_head = t->next_ready;
    if (rt->ready_head == NULL) rt->ready_tail = NULL;
    t->next_ready = NULL;
  }
  return t;
}

/* task.c: resume t, the head of the ready queue, once (the scheduler's
 * step); finishes it when its function returned or raised. A run of steps
 * starts with rt->batch_base = 0; a step may then leave the batch cache
 * (2 values) on S, which the run pops from rt->batch_base at its end. */
void loom__task_step(loom_rt *rt, lua_State *S, loom_task *t) LOOM_HIDDEN;

/* ---- failure safety (see docs/architecture.md, "Failure points") ------- */

/* Reserve one heap slot: the next loom__heap_insert cannot fail. */
int loom__heap_reserve(loom_rt *rt) LOOM_HIDDEN;
/* Mark s cancelled and abort the waits below it; allocates nothing, calls
 * no Lua (the Cancelled object is built when first delivered). */
void loom__scope_mark_cancelled(loom_rt *rt, loom_scope *s,
                                int by_deadline) LOOM_HIDDEN;
/* Enter / leave a scope without failing (scope.c): the only way scopes
 * are entered, always around a protected call (core.scope_run,
 * core.group_run). */
void loom__scope_link(loom_task *t, loom_scope *s) LOOM_HIDDEN;
int loom__scope_unlink(lua_State *L, loom_task *t, loom_scope *s) LOOM_HIDDEN;
/* g's host finished while hosting it (its coroutine was killed): cancel g,
 * detach it from the host; it is released when its last child is done. */
void loom__group_orphan(lua_State *L, loom_group *g) LOOM_HIDDEN;
/* Build s's Cancelled object now if it has none (by: the running task). */
void loom__scope_cancel_object(lua_State *L, loom_rt *rt,
                               loom_scope *s) LOOM_HIDDEN;
/* Record a failure in g without ever raising: g is cancelled first; if
 * recording runs out of memory, g raises "not enough memory" at its exit. */
void loom__group_record_safe(lua_State *L, loom_group *g, int err_idx,
                             int tb_idx) LOOM_HIDDEN;
/* luaL_error, but the position is the innermost caller outside loom's own
 * Lua files (the user's line, not a line of a loom wrapper). */
int loom__errorf(lua_State *L, const char *fmt, ...) LOOM_HIDDEN;
/* luaL_argerror / luaL_typeerror, blaming the user's line like
 * loom__errorf (for C functions that loom's Lua wrappers call). */
int loom__argerror(lua_State *L, int arg, const char *msg) LOOM_HIDDEN;
int loom__typeerror(lua_State *L, int arg, const char *tname) LOOM_HIDDEN;
/* Raise a clear error when the runtime was finalised (lua_close). */
void loom__check_open(lua_State *L, loom_rt *rt, const char *fn) LOOM_HIDDEN;
/* If co is the suspended coroutine of a loom task, that task, else NULL. */
loom_task *loom__task_of_thread(lua_State *L, loom_rt *rt,
                                lua_State *co) LOOM_HIDDEN;
/* Is the value at idx a Cancelled issued by a cancel scope? A hand-made
 * setmetatable({}, loom.Cancelled) is not: it is an ordinary error. */
int loom__is_cancelled(lua_State *L, loom_rt *rt, int idx) LOOM_HIDDEN;

/* ---- members.c: names objects and option tables accept ---------------- */

/* The end of an object's __index when key 2 names no method or field of
 * object 1: raises "<Class> has no method '<key>' (did you mean ...?)" at
 * the caller's position (or returns nil for a non-string key). Must be
 * called from a closure whose upvalue 1 is the runtime. */
int loom__no_member(lua_State *L) LOOM_HIDDEN;
/* Raise "bad argument #idx to '<fn>' (unknown option '<key>')" when the
 * option table at idx has a key not in names (NULL-terminated). */
void loom__check_options(lua_State *L, int idx,
                         const char *const names[]) LOOM_HIDDEN;
/* Why L cannot call a blocking loom function: the words after "loom.<fn>: "
 * for outside loom.run, or for a plain coroutine created inside a task
 * (defined in sched.c). */
const char *loom__not_in_task(lua_State *L) LOOM_HIDDEN;

/* ---- embedding: host-driven runtime (sched.c, embed.c, hostgroup.c,
 * future.c, remote.c) ----------------------------------------------------- */

enum { LOOM_ONERR_PRINT = 0, LOOM_ONERR_RAISE, LOOM_ONERR_FUNC, LOOM_ONERR_C };

/* The runtime of L's state (from the registry), or NULL; with create,
 * makes it (raises on failure). */
loom_rt *loom__state_rt(lua_State *L, int create) LOOM_HIDDEN; /* runtime.c */
/* A task became ready outside a step on a borrowed loop (embed.c). */
void loom__borrowed_kick(loom_rt *rt) LOOM_HIDDEN;
/* Read the host clock (LOOM_CLOCK_HOST only); raises naming fn. */
void loom__sample_clock(lua_State *L, loom_rt *rt, const char *fn) LOOM_HIDDEN;
/* Raise unless host code may step now (not in a task, step or run). */
void loom__check_can_step(lua_State *L, loom_rt *rt,
                          const char *fn) LOOM_HIDDEN;
/* The body of one step (a frame): raises on failure. */
void loom__step_slice(lua_State *L, loom_rt *rt, double budget,
                      double max_resumes) LOOM_HIDDEN;
/* One step under lua_pcall (sets rt->stepping); returns the status. */
int loom__step_pcall(lua_State *L, loom_rt *rt, double budget,
                     double max_resumes) LOOM_HIDDEN;
/* Non-frame passes until the counter (int or size_t, one non-NULL) is 0
 * or grace seconds of wall time passed; returns whether it reached 0. */
int loom__settle(lua_State *L, loom_rt *rt, const int *nlive_i,
                 const size_t *nlive_z, double grace) LOOM_HIDDEN;
/* [-0, +0] queue an error no group can receive, for the error hook: the
 * error at err_idx, the failing task at task_idx (0: none), its traceback
 * at tb_idx (0: none); "print" says "in <kind> <name>" (kind "task" or
 * "host group"), a C hook gets name. */
void loom__report_error(lua_State *L, loom_rt *rt, int err_idx, int task_idx,
                        int tb_idx, const char *kind,
                        const char *name) LOOM_HIDDEN;
/* Deliver queued errors to the hook; with allow_raise and on_error =
 * "raise", raises the first one (the rest wait for later calls). */
void loom__deliver_errors(lua_State *L, loom_rt *rt,
                          int allow_raise) LOOM_HIDDEN;
/* The same under lua_pcall, as part of a step (rt->stepping is set while
 * the hook runs: it cannot step or nest passes); returns the status, the
 * error (or the raised one) on top when not LUA_OK. */
int loom__deliver_pcall(lua_State *L, loom_rt *rt, int allow_raise) LOOM_HIDDEN;
/* task.c: a direct child of a host group failed / finished. */
void loom__host_child_failed(lua_State *L, loom_group *g, int task_idx,
                             int err_idx, int tb_idx) LOOM_HIDDEN;
void loom__host_child_done(lua_State *L, loom_group *g) LOOM_HIDDEN;
/* Cancel and close every host group (loom_close). */
void loom__host_groups_close(lua_State *L, loom_rt *rt) LOOM_HIDDEN;
/* runtime.c: __gc of the runtime: loom_close(L, 0) unless the host closed it;
 * then frees the task structs, unless called with a second argument (a close
 * from another finaliser, before the runtime's own). */
int loom__rt_gc(lua_State *L) LOOM_HIDDEN;
/* embed.c: print "loom: <what>: <error on top>" to stderr, pop the error. */
void loom__print_failure(lua_State *L, const char *what) LOOM_HIDDEN;

int loom__open_embed(lua_State *L) LOOM_HIDDEN;
int loom__open_hostgroup(lua_State *L) LOOM_HIDDEN;
int loom__open_future(lua_State *L) LOOM_HIDDEN;
int loom__open_remote(lua_State *L) LOOM_HIDDEN;
/* remote.c (the thread-safe mailbox): run queued posts (every step and
 * every pass of loom.run); how many remotes are open (the runtime is never
 * deadlocked while one is); at loom_close, run the posts already queued
 * and refuse later ones. */
void loom__remote_drain(loom_rt *rt, lua_State *L) LOOM_HIDDEN;
int loom__remote_open_count(loom_rt *rt) LOOM_HIDDEN;
void loom__remote_close(loom_rt *rt, lua_State *L) LOOM_HIDDEN;

/* ---- stream.c: byte streams over any uv_stream_t ------------------------ *
 * TCP (tcp.c), Unix sockets and pipes (pipe.c), child pipes (process.c) and
 * stdio share one implementation of receive/send/send_eof/close and of
 * listeners. A regular file (stdio redirected to a file) has no libuv handle:
 * it is read and written synchronously at a schedule point. */

enum { LOOM_ADDR_NONE = 0, LOOM_ADDR_INET, LOOM_ADDR_UNIX };

/* What differs between stream types: the metatable, the name used in
 * messages, how addresses read. A listener class names the class of the
 * streams it accepts. */
typedef struct loom_stream_class {
  const char *mt;   /* "loom.TCPStream" */
  const char *name; /* "TCPStream": task_tree and blocking messages */
  int addr;         /* LOOM_ADDR_* */
  const struct loom_stream_class *accepts; /* listeners only */
  /* "TCPStream:receive" ...: blocking-call messages and task_tree */
  const char *op_receive, *op_send, *op_send_eof, *op_accept;
} loom_stream_class;

typedef struct loom_write_req loom_write_req;

/* A stream or a listener. The userdata is a box pointing at this malloc'd
 * struct, because libuv may call back after the userdata is finalised: it
 * is freed once the userdata is finalised (ud_alive = 0) and the handle's
 * close callback ran (handle_live = 0). */
typedef struct loom_stream {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h;                  /* h.handle.data points back here */
  uv_connect_t connect; /* a client stream's connect request */
  loom_rt *rt;
  const loom_stream_class *cls;
  struct sockaddr_storage local, remote; /* cached addresses */
  unsigned local_len, remote_len;
  int fd;             /* a file stream's descriptor, else -1 */
  lua_Integer *files; /* a file stream's live counter (pipe.c) */
  char *unlink_path;  /* Unix listener: socket file to remove */
  uint64_t unlink_dev, unlink_ino;
  unsigned char ud_alive, handle_live, closing, closed, has_local, has_remote,
    listener, readable, writable, restore_block,
    no_shutdown; /* a pipe: send_eof closes the handle */
  /* reading: one receive at a time */
  unsigned char receiving, eof;
  unsigned char reading;    /* libuv reads (uv_read_start is on) */
  unsigned char read_ahead; /* reading stays on after a read (not stdio) */
  int read_err;             /* sticky error of a failed read */
  char *rbuf;               /* data read but not yet returned */
  size_t rcap, roff, rlen, want;
  size_t rsize;      /* a read-ahead stream's read size, adapted to its reads */
  loom_task *reader; /* parked in receive */
  /* writing: one send at a time */
  unsigned char sending, eof_sent, send_broken, acceptor_ref;
  int write_err;             /* sticky error of a failed write */
  loom_task *writer;         /* parked in send */
  loom_write_req *cur_write; /* the write the parked sender waits for */
  /* connecting */
  loom_task *connecter;
  int connect_status;
  /* listening */
  unsigned char accepting, conn_ready;
  int listen_err;
  loom_task *acceptor; /* parked in accept */
} loom_stream;

/* [-0, +1] a new stream box of class cls. The caller initialises o->h
 * (uv_tcp_init, uv_pipe_init ...) and then calls loom__stream_attach, or
 * sets o->fd for a file stream. */
loom_stream *loom__stream_new(lua_State *L, loom_rt *rt,
                              const loom_stream_class *cls) LOOM_HIDDEN;
/* The handle in o->h was initialised: link it back and mark it live. */
void loom__stream_attach(loom_stream *o) LOOM_HIDDEN;
/* close(): idempotent; parked tasks wake with ClosedResourceError. */
void loom__stream_close(loom_stream *o) LOOM_HIDDEN;
loom_stream *loom__stream_check(lua_State *L, int idx,
                                const loom_stream_class *cls) LOOM_HIDDEN;
/* Cache both ends' addresses of a connected socket stream. */
void loom__stream_cache_addresses(loom_stream *o) LOOM_HIDDEN;
/* [-0, +0] create cls's metatable with the shared stream (or listener)
 * methods plus extra, exported to the module table on top as `field`. */
void loom__stream_register(lua_State *L, int rt_idx,
                           const loom_stream_class *cls, const luaL_Reg *extra,
                           const char *field) LOOM_HIDDEN;
/* A listener o was bound: start listening (connections wait in the
 * backlog until accept). Returns a libuv error or 0. */
int loom__stream_listen(loom_stream *o, int backlog) LOOM_HIDDEN;
/* Raise loom.OSError "op: <libuv message> (where)", .code the libuv name;
 * EPIPE and ECONNRESET raise loom.BrokenResourceError instead. */
int loom__raise_uv(lua_State *L, const char *op, int err,
                   const char *where) LOOM_HIDDEN;
/* "host:port", "[v6]:port" or a Unix path of an address, for messages. */
void loom__addr_where(const struct sockaddr_storage *ss, unsigned len,
                      char *buf, size_t n) LOOM_HIDDEN;
/* Live handles of type `type` made by stream.c: streams, listeners,
 * closing ones, read buffer and write queue bytes. */
typedef struct loom_stream_counts {
  lua_Integer streams, listeners, closing, rbuf_bytes, write_queue_bytes, files;
} loom_stream_counts;
void loom__stream_count(loom_rt *rt, const loom_stream_class *const *classes,
                        loom_stream_counts *c) LOOM_HIDDEN;
/* [-0, +1] push counts as a table. */
void loom__stream_push_counts(lua_State *L,
                              const loom_stream_counts *c) LOOM_HIDDEN;
int loom__open_pipe(lua_State *L) LOOM_HIDDEN;
int loom__open_process(lua_State *L) LOOM_HIDDEN;
int loom__open_signal(lua_State *L) LOOM_HIDDEN;
extern const loom_stream_class loom__pipe_stream_class LOOM_HIDDEN;
/* signal.c: a signal given as a name ("SIGTERM") or a number at idx;
 * raises a bad-argument error naming fname otherwise. */
int loom__check_signal(lua_State *L, int idx) LOOM_HIDDEN;
/* "SIGTERM" for 15; NULL for a number without a name. */
const char *loom__signal_name(int sig) LOOM_HIDDEN;

/* ---- copy.c: values copied between Lua states (worker threads) -------- */

typedef struct loom_buf {
  char *p;
  size_t len, cap;
} loom_buf;

/* Append n bytes; 0 when out of memory (b is unchanged). */
int loom__buf_put(loom_buf *b, const void *data, size_t n) LOOM_HIDDEN;
void loom__buf_free(loom_buf *b) LOOM_HIDDEN;

/* One encoder per message: tables met twice (shared, cycles) are sent
 * once. seen is the stack index of a slot the encoder may fill with its
 * table->id map (push a nil there first). */
typedef struct loom_enc {
  loom_buf *b;
  int seen;
  int ntables;
  char what[96]; /* on failure: what could not be copied ("a function") */
  char path[96]; /* on failure: where in the value (".cb[2]") */
} loom_enc;

void loom__enc_init(loom_enc *e, loom_buf *b, int seen_slot) LOOM_HIDDEN;
/* Encode the value at idx; 1, or 0 with e->what/e->path set. Raises only
 * when Lua itself runs out of memory. */
int loom__enc_value(lua_State *L, loom_enc *e, int idx) LOOM_HIDDEN;
/* [-0, +1] "cannot copy <what> (at <path>) <where>" */
const char *loom__enc_error(lua_State *L, loom_enc *e,
                            const char *where) LOOM_HIDDEN;

typedef struct loom_dec {
  const char *p;
  size_t len, pos;
  int refs; /* stack index of a slot for the id->table map */
  int ntables;
} loom_dec;

void loom__dec_init(loom_dec *d, const char *p, size_t len,
                    int refs_slot) LOOM_HIDDEN;
/* [-0, +1] decode the next value; raises on a corrupt buffer. */
void loom__dec_value(lua_State *L, loom_dec *d) LOOM_HIDDEN;
int loom__dec_more(const loom_dec *d) LOOM_HIDDEN;

/* ---- thread.c: worker threads (loom.to_thread) ------------------------- */

int loom__open_thread(lua_State *L) LOOM_HIDDEN;
/* Close the runtime's worker pool now (idempotent; its finaliser does it
 * at lua_close): refuse new calls, answer pending run_sync requests, join
 * idle workers, wait close_grace for running calls, detach the rest, close
 * the async handle. Call it before the runtime's loop is closed. */
void loom__thread_close(lua_State *L) LOOM_HIDDEN;

/* ---- fs.c, udp.c, tls.c, poll.c: files, UDP, TLS, fd readiness --------- */

int loom__open_fs(lua_State *L) LOOM_HIDDEN;
int loom__open_udp(lua_State *L) LOOM_HIDDEN;
int loom__open_tls(lua_State *L) LOOM_HIDDEN;
int loom__open_poll(lua_State *L) LOOM_HIDDEN;

/* ---- class.c: class registration, type magics, OSError, callables ----- */

/* Type magics: one list, in loom_magic (top of this file). */

/* Flags of a loom_class. */
#define LOOM_CLASS_UP_MT                                             \
  1u                          /* functions get the metatable as last \
                               * upvalue (after the caller's ones) */
#define LOOM_CLASS_UP_NAME 2u /* methods also get their own name */

/* A C class: metatable `name` ("loom.Xxx", also its __name) with the
 * metamethods `meta` (__gc, __close, __tostring, ...; a default
 * __tostring "loom.Xxx: 0x..." when none), methods `methods` (+
 * `more_methods`) in a table, and the optional property getter `index`. */
typedef struct loom_class {
  const char *name;
  const luaL_Reg *meta;         /* may be NULL */
  const luaL_Reg *methods;      /* NULL: no __index */
  const luaL_Reg *more_methods; /* may be NULL */
  lua_CFunction index;          /* NULL: __index is the methods table */
  const char *export;           /* module field for the methods table */
  unsigned flags;               /* LOOM_CLASS_* */
} loom_class;

/* [-0, +1] push cls's metatable, (re)built with luaL_setfuncs.
 * Every function closes over the nup stack values from index up (then the
 * metatable and/or its own name, per cls->flags); index also gets the
 * methods table as its last upvalue, and must look there first. Without
 * index, __index is the methods table itself, whose metatable raises
 * "<name> has no method 'x' (did you mean 'y'?)" through loom__no_member
 * for a missing name (the fallback closes over the first upvalue value,
 * which must be the runtime for that message; with nup 0 a missing name
 * gives nil). The methods table goes to module table mod[export]
 * when both are set (mod 0: none). Returns the metatable's index. */
int loom__class_register(lua_State *L, int mod, const loom_class *cls, int up,
                         int nup) LOOM_HIDDEN;
/* [-0, +1] the error value for libuv code err: loom.<cls> (NULL: OSError,
 * or BrokenResourceError for EPIPE/ECONNRESET) with the message
 * "op: <libuv message> (where)" (no parenthesis when where is NULL or
 * empty) and .code the libuv name ("ENOENT"). */
void loom__push_oserror(lua_State *L, const char *cls, const char *op, int err,
                        const char *where) LOOM_HIDDEN;
/* Raise loom__push_oserror's OSError. */
int loom__raise_oserror(lua_State *L, const char *op, int err,
                        const char *where) LOOM_HIDDEN;
/* 1 when the value at idx is callable: a function, or has __call. */
int loom__is_callable(lua_State *L, int idx) LOOM_HIDDEN;
/* Raise "bad argument #idx to 'fname' (function expected, got <type>)"
 * (fname NULL: the running function's name, as lauxlib) unless the value
 * at idx is callable. */
void loom__check_callable(lua_State *L, int idx, const char *fname) LOOM_HIDDEN;

#endif
