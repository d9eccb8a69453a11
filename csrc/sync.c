/*
 * sync.c: events, locks, semaphores, conditions and capacity limiters. Each
 * object is a userdata holding a FIFO wait queue of parked tasks (linked
 * through their wait_link, so waiting allocates nothing). Releasing
 * hands the resource directly to the longest waiter (no barging), skipping a
 * waiter whose cancellation is pending. A waiter woken with the resource owns
 * it even if a cancellation arrives before it runs: the wake made it READY,
 * which cancel cannot abort, and the Cancelled comes at its next checkpoint.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

#define EVENT_MT "loom.Event"
#define LOCK_MT "loom.Lock"
#define SEM_MT "loom.Semaphore"
#define COND_MT "loom.Condition"
#define LIMITER_MT "loom.CapacityLimiter"

/* ---- shared helpers ---------------------------------------------------- */

/* The running task, or NULL when L is not a task's own coroutine. */
static loom_task *running_task(lua_State *L) {
  loom_task *t = loom__task_of(L);
  return (t != NULL && t->L == L) ? t : NULL;
}

/* Hot-path type checks (loom__test_ud): every object here starts with its
 * class's magic (enum loom_magic in loom_internal.h).
 * The object of type `type` at idx, or the standard lauxlib error ("calling
 * 'x' on bad self", "loom.Lock expected, got table"). */
#define CHECK(L, idx, type, magic, tname) \
  ((type *)check_obj((L), (idx), sizeof(type), (magic), (tname)))

static void *check_obj(lua_State *L, int idx, size_t size, uint32_t magic,
                       const char *tname) {
  void *p = loom__test_ud(L, idx, size, magic);
  return p != NULL ? p : luaL_checkudata(L, idx, tname);
}

/* [-0, +1] a new object of the class whose metatable is upvalue 2. */
static void *new_obj(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdatauv(L, size, nuv);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  return p;
}

/* Continuations get the waiting task as their context: it is the one that
 * resumes them, and this saves looking it up on every wake. */
#define TASK_CTX(t) ((lua_KContext)(t))
#define CTX_TASK(ctx) ((loom_task *)(ctx))

static int k_return_nothing(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  loom__wake_outcome(L, CTX_TASK(ctx), 1);
  return 0;
}

/* Continuation of acquire(): the guard is the object itself, at index 1. */
static int k_return_self(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  loom__wake_outcome(L, CTX_TASK(ctx), 1);
  lua_settop(L, 1);
  return 1;
}

/* The schedule point of a wait that did not need to wait (a fast-path
 * acquisition, an event already set); see loom__schedule_point. */
static int schedule_point(lua_State *L, loom_task *t, lua_KFunction k) {
  return loom__schedule_point(L, t, TASK_CTX(t), k);
}

static int would_block(lua_State *L, const char *msg) {
  return loom__raise_error(L, "WouldBlock", msg, NULL);
}

/* Store the integer value of the number at idx in *out; 0 when it is not a
 * number with an integer value (strings are not converted). */
static int get_integer(lua_State *L, int idx, lua_Integer *out) {
  int isnum;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  *out = lua_tointegerx(L, idx, &isnum);
  return isnum;
}

/* opts.fast_acquire of an optional options table at idx. */
static int opt_fast_acquire(lua_State *L, int idx) {
  int fast;
  static const char *const names[] = {"fast_acquire", NULL};
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  loom__check_options(L, idx, names);
  lua_getfield(L, idx, "fast_acquire");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_argerror(L, idx,
                  lua_pushfstring(L,
                                  "fast_acquire must be a boolean, "
                                  "got %s",
                                  luaL_typename(L, -1)));
  fast = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return fast;
}

/* [-0, +1] a table {tasks_waiting = n}. */
static void push_waiting_stats(lua_State *L, int n, int extra) {
  lua_createtable(L, 0, 1 + extra);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "tasks_waiting");
}

/* ---- Event -------------------------------------------------------------- */

typedef struct sync_event {
  uint32_t magic; /* LOOM_MAGIC_EVENT */
  int is_set;
  loom_waitq q;
} sync_event;

/* loom.event() -> Event */
static int l_event_new(lua_State *L) {
  sync_event *e = (sync_event *)new_obj(L, sizeof *e, 0);
  e->magic = LOOM_MAGIC_EVENT;
  loom__waitq_init(&e->q);
  e->is_set = 0;
  return 1;
}

/* event:set(): idempotent; wakes every waiter, oldest first. */
static int l_event_set(lua_State *L) {
  sync_event *e = CHECK(L, 1, sync_event, LOOM_MAGIC_EVENT, EVENT_MT);
  loom_task *w;
  if (e->is_set) return 0;
  e->is_set = 1;
  while ((w = loom__waitq_shift(&e->q)) != NULL) loom__wake(w, LOOM_WAKE_OK);
  return 0;
}

static int l_event_is_set(lua_State *L) {
  sync_event *e = CHECK(L, 1, sync_event, LOOM_MAGIC_EVENT, EVENT_MT);
  lua_pushboolean(L, e->is_set);
  return 1;
}

/* event:wait(): a checkpoint even when the event is already set. */
static int l_event_wait(lua_State *L) {
  sync_event *e = CHECK(L, 1, sync_event, LOOM_MAGIC_EVENT, EVENT_MT);
  loom_task *t = loom__check_blocking(L, "Event:wait", 1);
  loom__cancel_point(L, t);
  if (e->is_set) return schedule_point(L, t, k_return_nothing);
  loom__waitq_park(&e->q, t, "event", &e->q);
  return loom__suspend_task(L, t, TASK_CTX(t), k_return_nothing);
}

static int l_event_statistics(lua_State *L) {
  sync_event *e = CHECK(L, 1, sync_event, LOOM_MAGIC_EVENT, EVENT_MT);
  push_waiting_stats(L, e->q.n, 0);
  return 1;
}

static int l_event_tostring(lua_State *L) {
  sync_event *e = CHECK(L, 1, sync_event, LOOM_MAGIC_EVENT, EVENT_MT);
  lua_pushfstring(L, "loom.Event: %p (%s, %d waiting)", (void *)e,
                  e->is_set ? "set" : "not set", e->q.n);
  return 1;
}

/* ---- Lock --------------------------------------------------------------- */

/* User value 1 anchors the owner's task handle: the owner may finish while
 * holding the lock, and statistics() still reports it. */
typedef struct sync_lock {
  uint32_t magic; /* LOOM_MAGIC_LOCK */
  int fast;       /* fast_acquire: no schedule point when uncontended */
  loom_waitq q;
  loom_handle *owner; /* the owner's handle (user value 1), NULL: unlocked */
} sync_lock;

/* Does task t own the lock? (The owner's handle outlives it; a finished
 * owner's task struct is reused, so compare through the handle.) */
static int owned_by(const sync_lock *lk, const loom_task *t) {
  return t != NULL && lk->owner != NULL && lk->owner->t == t;
}

static void lock_init(sync_lock *lk, int fast) {
  lk->magic = LOOM_MAGIC_LOCK;
  loom__waitq_init(&lk->q);
  lk->owner = NULL;
  lk->fast = fast;
}

/* [-0, +0] make t (or nobody) the owner; lock userdata at lock_idx. */
static void lock_set_owner(lua_State *L, sync_lock *lk, int lock_idx,
                           loom_task *t) {
  lk->owner = t != NULL ? t->h : NULL;
  if (t != NULL) loom__push_task(L, t);
  else lua_pushnil(L);
  lua_setiuservalue(L, lock_idx, 1);
}

/* Hand the lock to the longest waiter, or unlock it. */
static void lock_pass_on(lua_State *L, sync_lock *lk, int lock_idx) {
  loom_task *w = loom__waitq_pop(&lk->q);
  lock_set_owner(L, lk, lock_idx, w);
  if (w != NULL) loom__wake(w, LOOM_WAKE_OK);
}

/* acquire() for a Lock or a Condition (the object at 1, the lock userdata at
 * lock_idx). Returns the object at 1 as the guard. */
static int lock_acquire(lua_State *L, sync_lock *lk, int lock_idx,
                        const char *fn) {
  loom_task *t = loom__check_blocking(L, fn, 1);
  loom__cancel_point(L, t);
  if (owned_by(lk, t))
    return luaL_error(L, "Attempted to acquire an already held Lock");
  if (lk->owner == NULL && lk->q.n == 0) {
    lock_set_owner(L, lk, lock_idx, t);
    if (lk->fast) {
      lua_settop(L, 1);
      return 1;
    }
    return schedule_point(L, t, k_return_self);
  }
  loom__waitq_park(&lk->q, t, "lock", &lk->q);
  return loom__suspend(L, TASK_CTX(t), k_return_self);
}

static int lock_acquire_nowait(lua_State *L, sync_lock *lk, int lock_idx,
                               const char *fn) {
  loom_task *t = loom__check_blocking(L, fn, 0);
  if (owned_by(lk, t))
    return luaL_error(L, "Attempted to acquire an already held Lock");
  if (lk->owner != NULL || lk->q.n > 0)
    return would_block(L, "the lock is held by another task");
  lock_set_owner(L, lk, lock_idx, t);
  lua_settop(L, 1);
  return 1;
}

static int lock_release(lua_State *L, sync_lock *lk, int lock_idx) {
  if (!owned_by(lk, running_task(L)))
    return luaL_error(L, "The current task is not holding this lock");
  lock_pass_on(L, lk, lock_idx);
  return 0;
}

/* [-0, +1] {locked, owner, tasks_waiting}; lock userdata at lock_idx. */
static void push_lock_stats(lua_State *L, sync_lock *lk, int lock_idx) {
  push_waiting_stats(L, lk->q.n, 2);
  lua_pushboolean(L, lk->owner != NULL);
  lua_setfield(L, -2, "locked");
  lua_getiuservalue(L, lock_idx, 1);
  lua_setfield(L, -2, "owner");
}

/* loom.lock([{fast_acquire = bool}]) -> Lock */
static int l_lock_new(lua_State *L) {
  int fast = opt_fast_acquire(L, 1);
  sync_lock *lk = (sync_lock *)new_obj(L, sizeof *lk, 1);
  lock_init(lk, fast);
  return 1;
}

static int l_lock_acquire(lua_State *L) {
  sync_lock *lk = CHECK(L, 1, sync_lock, LOOM_MAGIC_LOCK, LOCK_MT);
  lua_settop(L, 1);
  return lock_acquire(L, lk, 1, "Lock:acquire");
}

static int l_lock_acquire_nowait(lua_State *L) {
  sync_lock *lk = CHECK(L, 1, sync_lock, LOOM_MAGIC_LOCK, LOCK_MT);
  lua_settop(L, 1);
  return lock_acquire_nowait(L, lk, 1, "Lock:acquire_nowait");
}

/* lock:release(), also the guard's __close */
static int l_lock_release(lua_State *L) {
  sync_lock *lk = CHECK(L, 1, sync_lock, LOOM_MAGIC_LOCK, LOCK_MT);
  return lock_release(L, lk, 1);
}

static int l_lock_locked(lua_State *L) {
  sync_lock *lk = CHECK(L, 1, sync_lock, LOOM_MAGIC_LOCK, LOCK_MT);
  lua_pushboolean(L, lk->owner != NULL);
  return 1;
}

static int l_lock_statistics(lua_State *L) {
  sync_lock *lk = CHECK(L, 1, sync_lock, LOOM_MAGIC_LOCK, LOCK_MT);
  push_lock_stats(L, lk, 1);
  return 1;
}

static int l_lock_tostring(lua_State *L) {
  sync_lock *lk = CHECK(L, 1, sync_lock, LOOM_MAGIC_LOCK, LOCK_MT);
  if (lk->owner != NULL)
    lua_pushfstring(L, "loom.Lock: %p (locked by task %I, %d waiting)",
                    (void *)lk, lk->owner->id, lk->q.n);
  else lua_pushfstring(L, "loom.Lock: %p (unlocked)", (void *)lk);
  return 1;
}

/* ---- Semaphore ---------------------------------------------------------- */

typedef struct sync_sem {
  uint32_t magic; /* LOOM_MAGIC_SEM */
  loom_waitq q;
  lua_Integer value, max;
  int has_max, fast;
} sync_sem;

/* loom.semaphore(initial[, max_value[, {fast_acquire = bool}]]) */
static int l_sem_new(lua_State *L) {
  lua_Integer initial, max = 0;
  int has_max = 0, fast;
  sync_sem *s;
  if (!get_integer(L, 1, &initial))
    return luaL_argerror(L, 1, "initial_value must be an integer");
  if (initial < 0) return luaL_argerror(L, 1, "initial_value must be >= 0");
  if (!lua_isnoneornil(L, 2)) {
    if (!get_integer(L, 2, &max))
      return luaL_argerror(L, 2, "max_value must be an integer or nil");
    if (max < initial)
      return luaL_argerror(L, 2,
                           "max_value must be equal to or higher than "
                           "initial_value");
    has_max = 1;
  }
  fast = opt_fast_acquire(L, 3);
  s = (sync_sem *)new_obj(L, sizeof *s, 0);
  s->magic = LOOM_MAGIC_SEM;
  loom__waitq_init(&s->q);
  s->value = initial;
  s->max = max;
  s->has_max = has_max;
  s->fast = fast;
  return 1;
}

static int l_sem_acquire(lua_State *L) {
  sync_sem *s = CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  loom_task *t = loom__check_blocking(L, "Semaphore:acquire", 1);
  lua_settop(L, 1);
  loom__cancel_point(L, t);
  if (s->value > 0 && s->q.n == 0) {
    s->value--;
    if (s->fast) return 1;
    return schedule_point(L, t, k_return_self);
  }
  loom__waitq_park(&s->q, t, "semaphore", &s->q);
  return loom__suspend(L, TASK_CTX(t), k_return_self);
}

static int l_sem_acquire_nowait(lua_State *L) {
  sync_sem *s = CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  lua_settop(L, 1);
  if (s->value == 0 || s->q.n > 0)
    return would_block(L, "the semaphore's value is zero");
  s->value--;
  return 1;
}

/* sem:release(), also the guard's __close. A slot freed while tasks wait
 * goes to the longest waiter; the value stays 0. */
static int l_sem_release(lua_State *L) {
  sync_sem *s = CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  loom_task *w;
  if (s->has_max && s->value == s->max)
    return luaL_error(L, "semaphore released too many times");
  if ((w = loom__waitq_pop(&s->q)) != NULL) loom__wake(w, LOOM_WAKE_OK);
  else s->value++;
  return 0;
}

static int l_sem_statistics(lua_State *L) {
  sync_sem *s = CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  push_waiting_stats(L, s->q.n, 0);
  return 1;
}

static int l_sem_index(lua_State *L) {
  sync_sem *s = CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  const char *k;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(3)) != LUA_TNIL) return 1;
  if (lua_type(L, 2) != LUA_TSTRING) return 1;
  k = lua_tostring(L, 2);
  if (strcmp(k, "value") == 0) lua_pushinteger(L, s->value);
  else if (strcmp(k, "max_value") == 0) {
    if (s->has_max) lua_pushinteger(L, s->max);
    else lua_pushnil(L);
  } else return loom__no_member(L);
  return 1;
}

static int l_sem_newindex(lua_State *L) {
  CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  return luaL_error(L,
                    "loom.Semaphore: cannot set field '%s' (value and "
                    "max_value are read-only)",
                    luaL_tolstring(L, 2, NULL));
}

static int l_sem_tostring(lua_State *L) {
  sync_sem *s = CHECK(L, 1, sync_sem, LOOM_MAGIC_SEM, SEM_MT);
  if (s->has_max)
    lua_pushfstring(L, "loom.Semaphore: %p (value %I of %I, %d waiting)",
                    (void *)s, s->value, s->max, s->q.n);
  else
    lua_pushfstring(L, "loom.Semaphore: %p (value %I, %d waiting)", (void *)s,
                    s->value, s->q.n);
  return 1;
}

/* ---- Condition ---------------------------------------------------------- */

/* User value 1 is the Lock userdata. notify() moves waiters straight from
 * the condition's queue to the lock's (the notifier holds the lock, so they
 * would only wake to queue there), where they wait shielded; the lock's
 * release then wakes them as owners. */
typedef struct sync_cond {
  uint32_t magic; /* LOOM_MAGIC_COND */
  loom_waitq q;
  sync_lock *lock;
} sync_cond;

enum { COND_WAITING = 0, COND_RELOCK = 1, COND_RELOCK_CANCELLED = 2 };

/* loom.condition([lock]) -> Condition */
static int l_cond_new(lua_State *L) {
  sync_cond *c;
  sync_lock *lk;
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lk = (sync_lock *)lua_newuserdatauv(L, sizeof *lk, 1);
    lock_init(lk, 0);
    luaL_setmetatable(L, LOCK_MT);
  } else {
    lk = (sync_lock *)luaL_checkudata(L, 1, LOCK_MT);
    lua_settop(L, 1);
  }
  c = (sync_cond *)new_obj(L, sizeof *c, 1);
  c->magic = LOOM_MAGIC_COND;
  loom__waitq_init(&c->q);
  c->lock = lk;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

/* [-0, +0] stack becomes [cond, lock]; returns the condition. */
static sync_cond *cond_args(lua_State *L) {
  sync_cond *c = CHECK(L, 1, sync_cond, LOOM_MAGIC_COND, COND_MT);
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 1);
  return c;
}

static int l_cond_acquire(lua_State *L) {
  sync_cond *c = cond_args(L);
  return lock_acquire(L, c->lock, 2, "Condition:acquire");
}

static int l_cond_acquire_nowait(lua_State *L) {
  sync_cond *c = cond_args(L);
  return lock_acquire_nowait(L, c->lock, 2, "Condition:acquire_nowait");
}

static int l_cond_release(lua_State *L) {
  sync_cond *c = cond_args(L);
  return lock_release(L, c->lock, 2);
}

static int l_cond_locked(lua_State *L) {
  sync_cond *c = CHECK(L, 1, sync_cond, LOOM_MAGIC_COND, COND_MT);
  lua_pushboolean(L, c->lock->owner != NULL);
  return 1;
}

static void cond_check_holding(lua_State *L, sync_cond *c) {
  if (!owned_by(c->lock, running_task(L)))
    /* loom__errorf: cond:wait_for (sync.lua) calls this too */
    loom__errorf(L, "The current task is not holding the underlying lock");
}

/* After the wait: [cond, lock]. Notified waiters come back owning the lock.
 * A waiter cancelled out of the condition's queue re-acquires the lock
 * shielded (parked without an abort) and then raises Cancelled. */
static int k_cond_wait(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  sync_cond *c = (sync_cond *)lua_touserdata(L, 1);
  sync_lock *lk = c->lock;
  int cancelled = ctx == COND_RELOCK_CANCELLED;
  int how = loom__wake_outcome(L, t, 0);
  (void)status;
  if (ctx == COND_WAITING) {
    cancelled = how == LOOM_WAKE_CANCELLED;
    if (!owned_by(lk, t)) {
      if (lk->owner == NULL && lk->q.n == 0) lock_set_owner(L, lk, 2, t);
      else {
        loom__park(t, NULL, "lock", &lk->q);
        loom__waitq_push(&lk->q, t);
        return loom__suspend(L, cancelled ? COND_RELOCK_CANCELLED : COND_RELOCK,
                             k_cond_wait);
      }
    }
  }
  if (cancelled) loom__cancel_point(L, t);
  return 0;
}

/* cond:wait(): release the lock, wait for notify(), re-acquire the lock. */
static int l_cond_wait(lua_State *L) {
  sync_cond *c = cond_args(L);
  loom_task *t = loom__check_blocking(L, "Condition:wait", 1);
  loom__cancel_point(L, t);
  cond_check_holding(L, c);
  loom__waitq_park(&c->q, t, "condition", &c->q);
  lock_pass_on(L, c->lock, 2);
  return loom__suspend(L, COND_WAITING, k_cond_wait);
}

/* Move up to n waiters to the lock's queue (they are woken as owners). */
static void cond_notify(lua_State *L, sync_cond *c, lua_Integer n) {
  loom_task *w;
  cond_check_holding(L, c);
  while (n-- > 0 && (w = loom__waitq_pop(&c->q)) != NULL) {
    loom__park(w, NULL, "lock", &c->lock->q);
    loom__waitq_push(&c->lock->q, w);
  }
}

static int l_cond_notify(lua_State *L) {
  sync_cond *c = CHECK(L, 1, sync_cond, LOOM_MAGIC_COND, COND_MT);
  lua_Integer n = luaL_optinteger(L, 2, 1);
  if (n < 0) return luaL_argerror(L, 2, "n must be >= 0");
  cond_notify(L, c, n);
  return 0;
}

static int l_cond_notify_all(lua_State *L) {
  sync_cond *c = CHECK(L, 1, sync_cond, LOOM_MAGIC_COND, COND_MT);
  cond_notify(L, c, c->q.n);
  return 0;
}

static int l_cond_statistics(lua_State *L) {
  sync_cond *c = cond_args(L);
  push_waiting_stats(L, c->q.n, 1);
  push_lock_stats(L, c->lock, 2);
  lua_setfield(L, -2, "lock_statistics");
  return 1;
}

static int l_cond_tostring(lua_State *L) {
  sync_cond *c = CHECK(L, 1, sync_cond, LOOM_MAGIC_COND, COND_MT);
  lua_pushfstring(L, "loom.Condition: %p (%s, %d waiting)", (void *)c,
                  c->lock->owner ? "locked" : "unlocked", c->q.n);
  return 1;
}

/* ---- CapacityLimiter ----------------------------------------------------- */

/* User value 1 is the borrowers table {borrower = acquisition number}. A
 * parked acquirer keeps its borrower at index 2 of its own stack, where a
 * release reads it when it grants the token. */
typedef struct sync_limiter {
  uint32_t magic; /* LOOM_MAGIC_LIMITER */
  loom_waitq q;
  double total; /* an integer or HUGE_VAL */
  lua_Integer borrowed;
  lua_Integer seq; /* acquisition counter, orders statistics() */
} sync_limiter;

static const char already_holding[] =
  "this borrower is already holding one of this CapacityLimiter's tokens";

/* The total_tokens at idx as a double (HUGE_VAL: math.huge), or NULL with
 * *msg set to AnyIO's words for what is wrong. */
static int get_total_tokens(lua_State *L, int idx, double *out,
                            const char **msg) {
  lua_Integer n;
  double d;
  if (get_integer(L, idx, &n)) {
    *out = (double)n;
  } else {
    d = lua_type(L, idx) == LUA_TNUMBER ? lua_tonumber(L, idx) : 0;
    if (!isinf(d)) {
      *msg = "total_tokens must be an int or math.inf";
      return 0;
    }
    *out = d;
  }
  if (*out < 0) {
    *msg = "total_tokens must be >= 0";
    return 0;
  }
  return 1;
}

static void push_tokens(lua_State *L, double d) {
  if (isinf(d)) lua_pushnumber(L, d);
  else lua_pushinteger(L, (lua_Integer)d);
}

/* Grant free tokens to the longest waiters. Limiter userdata at 1. */
static void limiter_grant(lua_State *L, sync_limiter *lim) {
  loom_task *w;
  luaL_checkstack(L, 4, "loom: capacity limiter");
  lua_getiuservalue(L, 1, 1);
  while ((double)lim->borrowed < lim->total &&
         (w = loom__waitq_pop(&lim->q)) != NULL) {
    lua_pushvalue(w->L, 2);
    lua_xmove(w->L, L, 1);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) != LUA_TNIL) {
      /* The same borrower waited twice and got a token meanwhile. */
      lua_pop(L, 2);
      loom__wake(w, LOOM_WAKE_ERROR);
      continue;
    }
    lua_pop(L, 1);
    lua_pushinteger(L, ++lim->seq);
    lua_rawset(L, -3);
    lim->borrowed++;
    loom__wake(w, LOOM_WAKE_OK);
  }
  lua_pop(L, 1);
}

/* Borrow for the borrower at 2 if a token is free and nobody waits. Raises
 * if the borrower already holds one. Limiter userdata at 1. */
static int limiter_try(lua_State *L, sync_limiter *lim) {
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL) luaL_error(L, "%s", already_holding);
  lua_pop(L, 1);
  if (lim->q.n > 0 || (double)lim->borrowed >= lim->total) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushvalue(L, 2);
  lua_pushinteger(L, ++lim->seq);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lim->borrowed++;
  return 1;
}

/* After a wait for a token; the guard (the limiter) is returned by acquire()
 * and nothing by acquire_on_behalf_of(). */
static int limiter_woken(lua_State *L, loom_task *t, int guard) {
  if (loom__wake_outcome(L, t, 1) == LOOM_WAKE_ERROR)
    return luaL_error(L, "%s", already_holding);
  if (!guard) return 0;
  lua_settop(L, 1);
  return 1;
}

static int k_limiter_guard(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return limiter_woken(L, CTX_TASK(ctx), 1);
}

static int k_limiter_nothing(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return limiter_woken(L, CTX_TASK(ctx), 0);
}

/* Stack: [limiter, borrower]. */
static int limiter_acquire(lua_State *L, sync_limiter *lim, loom_task *t,
                           int guard) {
  loom__cancel_point(L, t);
  if (limiter_try(L, lim)) {
    if (!guard) return schedule_point(L, t, k_return_nothing);
    return schedule_point(L, t, k_return_self);
  }
  loom__waitq_park(&lim->q, t, "capacity limiter", &lim->q);
  return loom__suspend(L, TASK_CTX(t),
                       guard ? k_limiter_guard : k_limiter_nothing);
}

/* [-0, +0] stack becomes [limiter, borrower]: the given one (checked) or the
 * running task's handle. */
static sync_limiter *limiter_args(lua_State *L, int explicit_borrower,
                                  const char *fn, loom_task **tp,
                                  int must_yield) {
  sync_limiter *lim = CHECK(L, 1, sync_limiter, LOOM_MAGIC_LIMITER, LIMITER_MT);
  if (explicit_borrower) {
    luaL_checkany(L, 2);
    if (lua_isnil(L, 2)) luaL_argerror(L, 2, "borrower must not be nil");
    if (lua_type(L, 2) == LUA_TNUMBER &&
        lua_tonumber(L, 2) != lua_tonumber(L, 2))
      luaL_argerror(L, 2, "borrower must not be NaN");
    lua_settop(L, 2);
    if (tp) *tp = loom__check_blocking(L, fn, must_yield);
  } else {
    loom_task *t = loom__check_blocking(L, fn, must_yield);
    lua_settop(L, 1);
    loom__push_task(L, t);
    if (tp) *tp = t;
  }
  return lim;
}

/* loom.capacity_limiter(total_tokens) -> CapacityLimiter */
static int l_limiter_new(lua_State *L) {
  double total;
  const char *msg;
  sync_limiter *lim;
  if (!get_total_tokens(L, 1, &total, &msg)) return luaL_argerror(L, 1, msg);
  lim = (sync_limiter *)new_obj(L, sizeof *lim, 1);
  lim->magic = LOOM_MAGIC_LIMITER;
  loom__waitq_init(&lim->q);
  lim->total = total;
  lim->borrowed = 0;
  lim->seq = 0;
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int l_limiter_acquire(lua_State *L) {
  loom_task *t;
  sync_limiter *lim = limiter_args(L, 0, "CapacityLimiter:acquire", &t, 1);
  return limiter_acquire(L, lim, t, 1);
}

static int l_limiter_acquire_on_behalf_of(lua_State *L) {
  loom_task *t;
  sync_limiter *lim = limiter_args(L, 1, "CapacityLimiter:acquire_on_behalf_of",
                                   &t, 1);
  return limiter_acquire(L, lim, t, 0);
}

static int l_limiter_acquire_nowait(lua_State *L) {
  sync_limiter *lim = limiter_args(L, 0, "CapacityLimiter:acquire_nowait", NULL,
                                   0);
  if (!limiter_try(L, lim))
    return would_block(L, "no token of the capacity limiter is available");
  lua_settop(L, 1);
  return 1;
}

static int l_limiter_acquire_on_behalf_of_nowait(lua_State *L) {
  sync_limiter *lim = limiter_args(L, 1, NULL, NULL, 0);
  if (!limiter_try(L, lim))
    return would_block(L, "no token of the capacity limiter is available");
  return 0;
}

/* Stack: [limiter, borrower]. */
static int limiter_release(lua_State *L, sync_limiter *lim) {
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) == LUA_TNIL)
    return luaL_error(L, "this borrower isn't holding any of this "
                         "CapacityLimiter's tokens");
  lua_pop(L, 1);
  lua_pushvalue(L, 2);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lim->borrowed--;
  limiter_grant(L, lim);
  return 0;
}

/* limiter:release(), also the guard's __close */
static int l_limiter_release(lua_State *L) {
  sync_limiter *lim = CHECK(L, 1, sync_limiter, LOOM_MAGIC_LIMITER, LIMITER_MT);
  loom_task *t = running_task(L);
  lua_settop(L, 1);
  loom__push_task(L, t);
  return limiter_release(L, lim);
}

static int l_limiter_release_on_behalf_of(lua_State *L) {
  sync_limiter *lim = limiter_args(L, 1, NULL, NULL, 0);
  return limiter_release(L, lim);
}

static int cmp_seq(const void *a, const void *b) {
  lua_Integer x = *(const lua_Integer *)a, y = *(const lua_Integer *)b;
  return (x > y) - (x < y);
}

/* [-0, +1] the borrowers in acquisition order. Limiter userdata at 1. */
static void push_borrowers(lua_State *L, sync_limiter *lim) {
  lua_Integer *seqs, i, n = 0;
  int tbl, byseq;
  lua_createtable(L, (int)lim->borrowed, 0);
  if (lim->borrowed == 0) return;
  seqs = (lua_Integer *)lua_newuserdatauv(
    L, (size_t)lim->borrowed * sizeof *seqs, 0);
  lua_getiuservalue(L, 1, 1);
  tbl = lua_gettop(L);
  lua_createtable(L, 0, (int)lim->borrowed); /* seq -> borrower */
  byseq = tbl + 1;
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    lua_Integer s = lua_tointeger(L, -1);
    if (n < lim->borrowed) seqs[n++] = s;
    lua_pushvalue(L, -2);
    lua_rawseti(L, byseq, s);
    lua_pop(L, 1);
  }
  qsort(seqs, (size_t)n, sizeof *seqs, cmp_seq);
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, byseq, seqs[i]);
    lua_rawseti(L, tbl - 2, i + 1);
  }
  lua_settop(L, tbl - 2);
}

static int l_limiter_statistics(lua_State *L) {
  sync_limiter *lim = CHECK(L, 1, sync_limiter, LOOM_MAGIC_LIMITER, LIMITER_MT);
  lua_settop(L, 1);
  push_waiting_stats(L, lim->q.n, 4);
  lua_pushinteger(L, lim->borrowed);
  lua_setfield(L, -2, "borrowed_tokens");
  push_tokens(L, lim->total);
  lua_setfield(L, -2, "total_tokens");
  push_tokens(L, lim->total - (double)lim->borrowed);
  lua_setfield(L, -2, "available_tokens");
  push_borrowers(L, lim);
  lua_setfield(L, -2, "borrowers");
  return 1;
}

static int l_limiter_index(lua_State *L) {
  sync_limiter *lim = CHECK(L, 1, sync_limiter, LOOM_MAGIC_LIMITER, LIMITER_MT);
  const char *k;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(3)) != LUA_TNIL) return 1;
  if (lua_type(L, 2) != LUA_TSTRING) return 1;
  k = lua_tostring(L, 2);
  if (strcmp(k, "total_tokens") == 0) push_tokens(L, lim->total);
  else if (strcmp(k, "borrowed_tokens") == 0) lua_pushinteger(L, lim->borrowed);
  else if (strcmp(k, "available_tokens") == 0)
    push_tokens(L, lim->total - (double)lim->borrowed);
  else return loom__no_member(L);
  return 1;
}

/* limiter.total_tokens = n: raising it wakes that many waiters at once. */
static int l_limiter_newindex(lua_State *L) {
  sync_limiter *lim = CHECK(L, 1, sync_limiter, LOOM_MAGIC_LIMITER, LIMITER_MT);
  double total;
  const char *msg;
  if (lua_type(L, 2) != LUA_TSTRING ||
      strcmp(lua_tostring(L, 2), "total_tokens") != 0)
    return luaL_error(L,
                      "loom.CapacityLimiter: cannot set field '%s' (only "
                      "'total_tokens' is writable)",
                      luaL_tolstring(L, 2, NULL));
  if (!get_total_tokens(L, 3, &total, &msg))
    return luaL_error(L, "loom.CapacityLimiter: %s", msg);
  lim->total = total;
  lua_settop(L, 1);
  limiter_grant(L, lim);
  return 0;
}

static int l_limiter_tostring(lua_State *L) {
  sync_limiter *lim = CHECK(L, 1, sync_limiter, LOOM_MAGIC_LIMITER, LIMITER_MT);
  push_tokens(L, lim->total);
  lua_pushfstring(L,
                  "loom.CapacityLimiter: %p (%I of %s tokens borrowed, "
                  "%d waiting)",
                  (void *)lim, lim->borrowed, lua_tostring(L, -1), lim->q.n);
  return 1;
}

/* ---- registration ------------------------------------------------------- */

/* Stack: rt(1) ... module(top). Registers the class (methods and
 * metamethods close over rt and the metatable) and its constructor ctor as
 * module[ctor_name], over the same two. */
static void new_class(lua_State *L, const loom_class *cls,
                      const char *ctor_name, lua_CFunction ctor) {
  int mod = lua_gettop(L);
  loom__class_register(L, mod, cls, 1, 1);
  lua_pushvalue(L, 1);
  lua_insert(L, -2);
  lua_pushcclosure(L, ctor, 2);
  lua_setfield(L, mod, ctor_name);
}

static const luaL_Reg event_meta[] = {
  {"__tostring", l_event_tostring},
  {NULL, NULL},
};

static const luaL_Reg event_methods[] = {
  {"set", l_event_set},   {"is_set", l_event_is_set},
  {"wait", l_event_wait}, {"statistics", l_event_statistics},
  {NULL, NULL},
};

static const luaL_Reg lock_meta[] = {
  {"__close", l_lock_release},
  {"__tostring", l_lock_tostring},
  {NULL, NULL},
};

static const luaL_Reg lock_methods[] = {
  {"acquire", l_lock_acquire},       {"acquire_nowait", l_lock_acquire_nowait},
  {"release", l_lock_release},       {"locked", l_lock_locked},
  {"statistics", l_lock_statistics}, {NULL, NULL},
};

static const luaL_Reg sem_meta[] = {
  {"__close", l_sem_release},
  {"__newindex", l_sem_newindex},
  {"__tostring", l_sem_tostring},
  {NULL, NULL},
};

static const luaL_Reg sem_methods[] = {
  {"acquire", l_sem_acquire},
  {"acquire_nowait", l_sem_acquire_nowait},
  {"release", l_sem_release},
  {"statistics", l_sem_statistics},
  {NULL, NULL},
};

static const luaL_Reg cond_meta[] = {
  {"__close", l_cond_release},
  {"__tostring", l_cond_tostring},
  {NULL, NULL},
};

static const luaL_Reg cond_methods[] = {
  {"acquire", l_cond_acquire},
  {"acquire_nowait", l_cond_acquire_nowait},
  {"release", l_cond_release},
  {"locked", l_cond_locked},
  {"wait", l_cond_wait},
  {"notify", l_cond_notify},
  {"notify_all", l_cond_notify_all},
  {"statistics", l_cond_statistics},
  {NULL, NULL},
};

static const luaL_Reg limiter_meta[] = {
  {"__close", l_limiter_release},
  {"__newindex", l_limiter_newindex},
  {"__tostring", l_limiter_tostring},
  {NULL, NULL},
};

static const luaL_Reg limiter_methods[] = {
  {"acquire", l_limiter_acquire},
  {"acquire_nowait", l_limiter_acquire_nowait},
  {"acquire_on_behalf_of", l_limiter_acquire_on_behalf_of},
  {"acquire_on_behalf_of_nowait", l_limiter_acquire_on_behalf_of_nowait},
  {"release", l_limiter_release},
  {"release_on_behalf_of", l_limiter_release_on_behalf_of},
  {"statistics", l_limiter_statistics},
  {NULL, NULL},
};

#define CLASS(name, meta, methods, index, export) \
  { name, meta, methods, NULL, index, export, LOOM_CLASS_UP_MT }
static const loom_class event_class = CLASS(EVENT_MT, event_meta, event_methods,
                                            NULL, "event_methods");
static const loom_class lock_class = CLASS(LOCK_MT, lock_meta, lock_methods,
                                           NULL, "lock_methods");
static const loom_class sem_class = CLASS(SEM_MT, sem_meta, sem_methods,
                                          l_sem_index, "semaphore_methods");
static const loom_class cond_class = CLASS(COND_MT, cond_meta, cond_methods,
                                           NULL, "condition_methods");
static const loom_class limiter_class = CLASS(LIMITER_MT, limiter_meta,
                                              limiter_methods, l_limiter_index,
                                              "capacity_limiter_methods");
#undef CLASS

/* Stack: rt(1) module(top). Adds core.event, core.lock, core.semaphore,
 * core.condition, core.capacity_limiter and their methods tables
 * (core.<class>_methods) for the Lua front. */
int loom__open_sync(lua_State *L) {
  new_class(L, &event_class, "event", l_event_new);
  new_class(L, &lock_class, "lock", l_lock_new);
  new_class(L, &sem_class, "semaphore", l_sem_new);
  new_class(L, &cond_class, "condition", l_cond_new);
  new_class(L, &limiter_class, "capacity_limiter", l_limiter_new);
  return 0;
}
