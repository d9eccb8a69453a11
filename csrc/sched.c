/*
 * sched.c: the runtime's scheduler. It owns the FIFO ready queue, the
 * runtime clock (real, manual, autojump or a host function), frames, and
 * the one scheduler core that both ways of running loom share: a *pass*
 * polls libuv, fires the deadlines due on the runtime clock and resumes
 * ready tasks in FIFO batches (a batch = the tasks ready when it begins),
 * one at a time, never nested (task.c's loom__task_step resumes one).
 * loom.run is "root task + drain" (passes until the root is done, waiting
 * for events in between); loom.step is one bounded slice of passes for a
 * host that owns the frame loop. Also the checkpoints and sleeps every task
 * uses, and next_frame.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

#define IO_BUDGET 512 /* resumes between two polls of libuv */

double loom__now(void) { return (double)uv_hrtime() / 1e9; }

#ifdef LOOM_DEBUG
void loom__assert_fail(const char *cond, const char *file, int line) {
  fprintf(stderr, "loom: assertion failed: %s (%s:%d)\n", cond, file, line);
  abort();
}
#endif

double loom__time(loom_rt *rt) {
  switch (rt->clock) {
  case LOOM_CLOCK_MANUAL:
  case LOOM_CLOCK_HOST: return rt->clock_now;
  case LOOM_CLOCK_AUTOJUMP: return loom__now() + rt->clock_now;
  default: return loom__now();
  }
}

/* Read the host clock into rt->clock_now; raises (naming fn) when it
 * returns a non-number or goes backwards. Other clocks: nothing to do. */
void loom__sample_clock(lua_State *L, loom_rt *rt, const char *fn) {
  double v;
  if (rt->clock != LOOM_CLOCK_HOST) return;
  if (rt->clock_fn != NULL) {
    v = rt->clock_fn(rt->clock_ud);
    if (isnan(v)) luaL_error(L, "%s: the host clock returned NaN", fn);
  } else {
    int isnum;
    luaL_checkstack(L, 2, "loom: clock");
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->clock_ref);
    lua_call(L, 0, 1);
    v = lua_tonumberx(L, -1, &isnum);
    if (!isnum || isnan(v))
      luaL_error(L,
                 "%s: the host clock function returned %s, not a number "
                 "of seconds",
                 fn, isnum ? "NaN" : luaL_typename(L, -1));
    lua_pop(L, 1);
  }
  if (v < rt->clock_now && rt->clock_sampled)
    luaL_error(L, "%s: the host clock went backwards (from %f to %f)", fn,
               rt->clock_now, v);
  rt->clock_now = v;
  rt->clock_sampled = 1;
}

int loom__raise_error(lua_State *L, const char *cls, const char *msg,
                      const char *code) {
  loom_rt *rt = loom__rt(L);
  if (rt == NULL || rt->magic != LOOM_MAGIC_RT)
    return luaL_error(L, "%s: %s", cls, msg);
  loom__push_hook(L, rt, "new_error");
  lua_pushstring(L, cls);
  lua_pushstring(L, msg);
  if (code) lua_pushstring(L, code);
  else lua_pushnil(L);
  lua_call(L, 3, 1);
  return lua_error(L);
}

/* [-0, +1] "source:line: " of the innermost caller outside loom's own Lua
 * files (a Lua wrapper such as loom.task_group calls the C function: the
 * error must blame the user's line, as lauxlib's level does). */
static void push_where(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  lua_Debug ar;
  int level;
  const char *dir = NULL;
  size_t n = 0;
  if (rt != NULL && rt->magic == LOOM_MAGIC_RT &&
      rt->own_dir_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->own_dir_ref);
    dir = lua_tolstring(L, -1, &n);
    lua_pop(L, 1); /* still referenced by the registry */
  }
  for (level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (dir != NULL && n > 0 && strncmp(ar.source, dir, n) == 0) continue;
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      return;
    }
    break;
  }
  lua_pushliteral(L, "");
}

int loom__errorf(lua_State *L, const char *fmt, ...) {
  va_list ap;
  push_where(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

int loom__argerror(lua_State *L, int arg, const char *msg) {
  lua_Debug ar;
  const char *name = "?";
  if (lua_getstack(L, 0, &ar)) {
    lua_getinfo(L, "n", &ar);
    if (ar.namewhat != NULL && strcmp(ar.namewhat, "method") == 0) {
      arg--;
      if (arg == 0)
        return loom__errorf(L, "calling '%s' on bad self (%s)",
                            ar.name ? ar.name : "?", msg);
    }
    if (ar.name != NULL) name = ar.name;
  }
  return loom__errorf(L, "bad argument #%d to '%s' (%s)", arg, name, msg);
}

int loom__typeerror(lua_State *L, int arg, const char *tname) {
  const char *got;
  if (luaL_getmetafield(L, arg, "__name") == LUA_TSTRING)
    got = lua_tostring(L, -1);
  else if (lua_type(L, arg) == LUA_TLIGHTUSERDATA) got = "light userdata";
  else got = luaL_typename(L, arg);
  return loom__argerror(L, arg,
                        lua_pushfstring(L, "%s expected, got %s", tname, got));
}

void loom__check_open(lua_State *L, loom_rt *rt, const char *fn) {
  if (rt != NULL && rt->magic == LOOM_MAGIC_RT && rt->closed)
    loom__errorf(L, "loom.%s: the runtime is closed", fn);
}

const char *loom__not_in_task(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  /* A task is being resumed, but L is not its coroutine: a coroutine the
   * task created itself. Only tasks can wait (their scheduler resumes
   * them); a plain coroutine would be resumed by its creator instead. */
  if (rt != NULL && rt->magic == LOOM_MAGIC_RT && rt->current != NULL &&
      rt->current->L != L)
    return "called from a plain coroutine, not a loom task (a coroutine "
           "created inside a task is not a task: call this from the task "
           "itself, or start a task for it with tg:start_soon)";
  return "must be called from inside a loom task (start one with loom.run)";
}

loom_task *loom__check_blocking(lua_State *L, const char *fn, int must_yield) {
  return loom__check_blocking_rt(
    L, (loom_rt *)lua_touserdata(L, lua_upvalueindex(1)), fn, must_yield);
}

loom_task *loom__check_blocking_rt(lua_State *L, loom_rt *rt, const char *fn,
                                   int must_yield) {
  loom_task *t = NULL;
  if (rt != NULL && rt->magic == LOOM_MAGIC_RT) {
    if (rt->closed) loom__check_open(L, rt, fn);
    t = rt->current;
  }
  if (t == NULL || t->L != L)
    loom__errorf(L, "loom.%s: %s", fn, loom__not_in_task(L));
  if (must_yield && !lua_isyieldable(L))
    loom__errorf(L,
                 "loom.%s: cannot suspend here (called where Lua cannot "
                 "yield, such as a table.sort comparator, a gsub callback "
                 "or a metamethod called from C)",
                 fn);
  return t;
}

/* ---- ready queue, park and wake ---------------------------------------- */

void loom__enqueue(loom_rt *rt, loom_task *t) {
  LOOM_ASSERT(t->state == LOOM_TASK_NEW || t->state == LOOM_TASK_READY ||
              t->state == LOOM_TASK_PENDING);
  LOOM_ASSERT(t->next_ready == NULL && rt->ready_tail != t);
  t->next_ready = NULL;
  rt->nready++;
  if (rt->ready_tail) rt->ready_tail->next_ready = t;
  else rt->ready_head = t;
  rt->ready_tail = t;
  /* Host code made work ready on a borrowed loop (hg:start_soon before the
   * host's uv_run): the loop must not find itself idle and return. */
  if (rt->borrowed && rt->nready == 1 && rt->current == NULL && !rt->stepping)
    loom__borrowed_kick(rt);
}

loom_task *loom__task_of_thread(lua_State *L, loom_rt *rt, lua_State *co) {
  lua_Debug ar;
  int lo = 0, hi = 1, is_main;
  loom_task *t;
  if (co == NULL || co == L || lua_status(co) != LUA_YIELD ||
      rt->task_main_ref == LUA_NOREF || !lua_getstack(co, 0, &ar))
    return NULL;
  /* The outermost frame of a task's coroutine is task_main. */
  while (lua_getstack(co, hi, &ar)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    if (lua_getstack(co, mid, &ar)) lo = mid;
    else hi = mid;
  }
  lua_getstack(co, lo, &ar);
  /* Cheap first (a generator's outermost frame is a Lua function): task_main
   * is a C closure with two upvalues. */
  lua_getinfo(co, "u", &ar);
  if (ar.nups != 2 || !ar.isvararg || ar.nparams != 0) return NULL;
  if (!lua_checkstack(L, 3) || !lua_checkstack(co, 3)) return NULL;
  lua_getinfo(co, "f", &ar);
  lua_xmove(co, L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->task_main_ref);
  is_main = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!is_main || lua_getlocal(co, &ar, 1) == NULL) return NULL;
  /* Its first slot is the task (a light userdata, see loom__task_new):
   * a coroutine suspended inside task_main belongs to a live (or
   * abandoned) task, whose struct is not freed. */
  t = (loom_task *)lua_touserdata(co, -1);
  lua_pop(co, 1);
  return (t != NULL && t->L == co) ? t : NULL;
}

/* ---- the drain --------------------------------------------------------- */

/* The deadline timer only has to end uv_run: libuv 1.44 runs due timers
 * *before* it polls, and with no timer left it then polls with no timeout.
 * Without uv_stop, a deadline due on entry would block behind any open
 * socket until it had traffic. On a borrowed loop the timer only bounds the
 * host's poll (loom must never stop the host's loop). */
static void timer_cb(uv_timer_t *h) {
  loom_rt *rt = (loom_rt *)h->data;
  if (!rt->borrowed) uv_stop(h->loop);
}

/* Is anything on libuv (a handle, a request, a remote mailbox) that can
 * still wake a task? loom's own timer and prepare/check are unref'd. */
static int io_pending(loom_rt *rt) {
  return uv_loop_alive(rt->loop) || loom__remote_open_count(rt) > 0;
}

/* Manual clock: is the earliest deadline already due? A task moved the
 * clock with loom.advance and blocked before a checkpoint fired it: the
 * next pass fires it, nothing is stuck. (Other clocks: wait_for_events
 * polls and returns at once for a due deadline.) */
static int manual_deadline_due(loom_rt *rt) {
  loom_timer *tm = loom__heap_min(rt);
  return rt->clock == LOOM_CLOCK_MANUAL && tm != NULL &&
         tm->when <= loom__time(rt);
}

/* Autojump clock: nothing ready and no I/O pending, so jump time to the
 * next deadline and fire it. Returns whether it jumped. */
static int autojump(loom_rt *rt, lua_State *S) {
  loom_timer *tm = loom__heap_min(rt);
  double now;
  if (rt->clock != LOOM_CLOCK_AUTOJUMP || tm == NULL ||
      rt->ready_head != NULL || io_pending(rt))
    return 0;
  now = loom__time(rt);
  if (tm->when > now && tm->when < HUGE_VAL) {
    rt->clock_now += tm->when - now;
    /* Rounding must not leave loom.now() a hair before the deadline (a
     * fail_after compares them); the wall clock only moves forward. */
    while (loom__time(rt) < tm->when)
      rt->clock_now = nextafter(rt->clock_now, HUGE_VAL);
  }
  loom__fire_timers_at(rt, S, tm->when);
  return 1;
}

/* A frame begins: count it and wake the next_frame waiters it was due
 * for, in the order they parked. */
static void begin_frame(loom_rt *rt) {
  loom_list *n, *next;
  double frame = (double)++rt->frame;
  if (rt->frame_waiters.n == 0) return;
  for (n = rt->frame_waiters.head.next; n != &rt->frame_waiters.head;
       n = next) {
    loom_task *t = loom__container_of(n, loom_task, wait_link);
    next = n->next;
    /* A task parked in next_frame is not in the deadline heap: its sleep
     * timer's `when` holds the frame it waits for. */
    if (t->sleep_timer.when <= frame) {
      loom__waitq_remove(t);
      loom__wake(t, LOOM_WAKE_OK);
    }
  }
}

/* The drain resumes t next (it is second in the ready queue, and more
 * tasks wait behind it): start loading what that resume touches while the
 * current one runs. A task that waited long, or one of thousands woken at
 * once (a cancelled group, a broadcast), is cold, and its resume is
 * otherwise a chain of cache misses: the coroutine's state, its CallInfo
 * list (Lua walks it to find the pcall an error unwinds to) and its stack.
 * Two tasks handing work back and forth (a queue of two) are hot: they
 * are left alone (the hint costs ~45 instructions per resume: a
 * channel(0) ping-pong was 4 % slower with it). Lua allocates a new
 * coroutine's state (~210 bytes) and first stack (~720 bytes), then the
 * CallInfos of its first calls (64 bytes each), one after the other, so
 * they lie in the PREFETCH_BYTES that follow the state (a pooled coroutine
 * keeps them across tasks). A hint only: nothing there is read, and a
 * wrong guess (a coroutine whose stack grew elsewhere) costs bandwidth,
 * never correctness. A cancellation of 1e5 sleeping tasks: -60 % here
 * (bench/results/core-redesign.md, "Round 8"). The record of a pending
 * task has no coroutine (nothing past its 64 bytes is read). */
#define PREFETCH_BYTES 1280
static inline void prefetch_next(const loom_task *t) {
  __builtin_prefetch(t->h);
  if (t->next_ready != NULL) __builtin_prefetch(t->next_ready);
  if (!t->record && t->L != NULL) {
    const char *p = (const char *)(void *)t->L;
    size_t off;
    for (off = 0; off < PREFETCH_BYTES; off += 64) __builtin_prefetch(p + off);
  }
}

/* Resume ready tasks in FIFO batches: a batch is the tasks ready when it
 * begins; tasks woken during it run in the next one. Stops after *batches
 * batches (decremented as they begin), max_resumes resumes (0: no limit)
 * or once the wall clock reaches `until` (0: no limit; checked between
 * resumes). Returns the number of resumes. */
static inline __attribute__((always_inline)) long run_batches(
  loom_rt *rt, lua_State *S, int *batches, long max_resumes, double until) {
  long n = 0;
  /* The steps may push task.c's batch cache on S (rt->batch_base); popped
   * below. Runs do not nest (loom.run and the steps refuse it); should
   * one, it keeps its own cache. An error out of a step leaves a stale
   * value, harmless: only steps read it, and every run starts from 0. */
  int outer = rt->batch_base;
  rt->batch_base = 0;
  while (*batches > 0 && rt->ready_head != NULL) {
    loom_task *last = rt->ready_tail, *t;
    --*batches;
    do {
      /* step takes t off the queue once nothing can fail any more */
      t = rt->ready_head;
      if (t->next_ready != NULL && t->next_ready->next_ready != NULL)
        prefetch_next(t->next_ready);
      loom__task_step(rt, S, t);
      n++;
      if ((max_resumes > 0 && n >= max_resumes) ||
          (until > 0 && loom__now() >= until))
        goto done;
    } while (t != last);
  }
done:
  if (rt->batch_base > 0) lua_settop(S, rt->batch_base - 1);
  rt->batch_base = outer;
  return n;
}

static void poll_nowait(loom_rt *rt) {
  if (!rt->borrowed) uv_run(rt->loop, UV_RUN_NOWAIT);
}

/* Block in libuv until I/O arrives or the earliest deadline is due (at most
 * until `limit` on the wall clock when limit > 0). Own loop only. */
static void wait_for_events(loom_rt *rt, double limit) {
  loom_timer *tm = loom__heap_min(rt);
  double ms = -1;
  if (tm != NULL && rt->clock != LOOM_CLOCK_MANUAL) {
    ms = ceil((tm->when - loom__time(rt)) * 1000.0);
    if (!(ms > 0)) {
      /* Already due (time passed while tasks ran): just poll. */
      uv_run(rt->loop, UV_RUN_NOWAIT);
      return;
    }
  }
  if (limit > 0) {
    double lms = ceil((limit - loom__now()) * 1000.0);
    if (!(lms > 0)) {
      uv_run(rt->loop, UV_RUN_NOWAIT);
      return;
    }
    if (ms < 0 || lms < ms) ms = lms;
  }
  if (ms >= 0) {
    /* Clamp before converting: a far deadline (1e20 s) would overflow the
     * integer and spin. Waking once a day is harmless. */
    if (ms > 86400000.0) ms = 86400000.0;
    uv_update_time(rt->loop);
    uv_timer_start(&rt->timer, timer_cb, (uint64_t)ms, 0);
    uv_ref((uv_handle_t *)&rt->timer);
  }
  uv_run(rt->loop, UV_RUN_ONCE);
  uv_timer_stop(&rt->timer);
  uv_unref((uv_handle_t *)&rt->timer);
}

/* Nothing is ready, no deadline pending, no libuv handle or request alive:
 * no task can ever be woken. Cancel the root so everything unwinds. */
static void break_deadlock(loom_rt *rt, lua_State *S) {
  rt->deadlock = 1;
  /* Let errors.lua note each stuck task and where it waits, for the error
   * loom.run raises once everything has unwound. */
  loom__push_hook(S, rt, "deadlocked");
  if (lua_type(S, -1) == LUA_TFUNCTION) lua_call(S, 0, 0);
  else lua_pop(S, 1);
  lua_pushliteral(S, "deadlock: every task is blocked and nothing can "
                     "wake them");
  loom__scope_cancel(S, rt, &rt->root->scope, lua_gettop(S), 0);
  lua_pop(S, 1);
}

/* The beginning of a pass: a frame begins (frames only), posts from other
 * threads run, the clock is read and due deadlines fire. */
static void pass_begin(loom_rt *rt, lua_State *S, int frame, const char *fn) {
  if (frame) {
    if (rt->frame_waiters.n > 0) begin_frame(rt);
    else rt->frame++;
  }
  /* rt->remote stays NULL until remote.c opens a mailbox. */
  if (rt->remote != NULL) loom__remote_drain(rt, S);
  if (rt->clock == LOOM_CLOCK_HOST) loom__sample_clock(S, rt, fn);
  loom__fire_timers(rt, S);
}

/* Tasks of the current loom.run: the root and its descendants, not the
 * tasks of host groups (stragglers of a closed one may still be live). A
 * child of an orphaned group (its host's coroutine was killed) counts. */
static int in_run(loom_rt *rt, loom_task *t) {
  while (t != rt->root) {
    loom_group *g = t->group != NULL ? t->group
                    : t->ext != NULL ? t->ext->start_group
                                     : NULL;
    if (g == NULL || g->is_host) return 0;
    if (g->host == NULL) return 1;
    t = g->host;
  }
  return 1;
}

/* A pending record of this run? (they are in the ready queue only) */
static int pending_in_run(loom_rt *rt, loom_task *p) {
  return loom__is_pending_record(p) && in_run(rt, p);
}

/* Is a task of this run live? Only walks when some task is. */
static int run_tasks_live(loom_rt *rt) {
  loom_list *n;
  loom_task *p;
  for (n = rt->all_tasks.next; n != &rt->all_tasks; n = n->next)
    if (in_run(rt, loom__container_of(n, loom_task, all_link))) return 1;
  if (rt->rec_live > 0)
    for (p = rt->ready_head; p != NULL; p = p->next_ready)
      if (pending_in_run(rt, p)) return 1;
  return 0;
}

/* Until the root finished (all_tasks: until no task of the run is live). */
static int drain_done(loom_rt *rt, int all_tasks) {
  if (all_tasks) return !run_tasks_live(rt);
  return rt->root == NULL; /* (task_finish clears it) */
}

/* loom.run's drain: one pass (one batch) per frame until the root is done
 * (all_tasks: until every task of the run is); libuv is polled every
 * IO_BUDGET resumes while work is ready, and waited on when nothing is. */
static void drain(loom_rt *rt, lua_State *S, int all_tasks) {
  long since_poll = 0;
  while (!drain_done(rt, all_tasks)) {
    int one = 1;
    pass_begin(rt, S, 1, "loom.run");
    since_poll += run_batches(rt, S, &one, 0, 0);
    if (rt->errq_len > 0) loom__deliver_errors(S, rt, 0);
    if (drain_done(rt, all_tasks)) break;
    if (rt->ready_head != NULL || rt->frame_waiters.n > 0) {
      if (since_poll >= IO_BUDGET) {
        uv_run(rt->loop, UV_RUN_NOWAIT);
        since_poll = 0;
      }
      continue;
    }
    since_poll = 0;
    if (!loom__list_empty(&rt->blocked_waiters)) {
      /* Let pending I/O land first: a task woken by it is not blocked. */
      uv_run(rt->loop, UV_RUN_NOWAIT);
      loom__fire_timers(rt, S);
      if (rt->ready_head == NULL) {
        loom_task *w = loom__container_of(rt->blocked_waiters.next, loom_task,
                                          wait_link);
        loom__list_remove(&w->wait_link);
        loom__wake(w, LOOM_WAKE_OK);
      }
      continue;
    }
    if (autojump(rt, S) || manual_deadline_due(rt)) continue;
    if ((loom__heap_min(rt) == NULL || rt->clock == LOOM_CLOCK_MANUAL) &&
        !io_pending(rt)) {
      if (rt->deadlock) {
        /* Even the cancellation could not make progress (shielded waits):
         * say which tasks are stuck where. */
        lua_pushfstring(S,
                        "loom.run: deadlock: tasks stay blocked after "
                        "being cancelled%s",
                        rt->clock == LOOM_CLOCK_MANUAL
                          ? " (the clock is manual: only loom.advance moves it)"
                          : "");
        loom__push_hook(S, rt, "deadlocked");
        if (lua_type(S, -1) == LUA_TFUNCTION) lua_call(S, 0, 1);
        if (lua_type(S, -1) == LUA_TSTRING) {
          lua_pushliteral(S, "\nthe stuck tasks:\n");
          lua_insert(S, -2);
          lua_concat(S, 3);
        } else {
          lua_pop(S, 1);
        }
        lua_error(S);
      }
      break_deadlock(rt, S);
      continue;
    }
    loom__tasks_trim(S, rt); /* idle: a burst's memory goes back */
    wait_for_events(rt, 0);
  }
}

/* Run in protected mode so that loom.run can restore its state. */
static int run_protected(lua_State *S) {
  loom_rt *rt = (loom_rt *)lua_touserdata(S, 1);
  drain(rt, S, lua_toboolean(S, 2));
  return 0;
}

static int drain_protected(lua_State *L, loom_rt *rt, int all_tasks) {
  if (!lua_checkstack(L, 3)) return LUA_ERRMEM;
  lua_pushcfunction(L, run_protected);
  lua_pushlightuserdata(L, rt);
  lua_pushboolean(L, all_tasks);
  return lua_pcall(L, 2, 0, 0);
}

/* Tasks still live when a run ends (its drain failed, out of memory; or
 * their host's coroutine was killed): cancel every one and let them finish,
 * so that none of them runs inside the next loom.run. What still cannot
 * finish (memory stays exhausted) is abandoned: unlinked from every queue
 * and the deadline heap, so that nothing resumes it, and freed by
 * lua_close. */
static void finish_stranded(loom_rt *rt, lua_State *L) {
  int attempt, pending_kept = 0;
  loom_list *n, *next;
  loom_task *t, *keep_head = NULL, *keep_tail = NULL;
  for (attempt = 0; attempt < 4 && run_tasks_live(rt); attempt++) {
    for (n = rt->all_tasks.next; n != &rt->all_tasks; n = n->next) {
      t = loom__container_of(n, loom_task, all_link);
      if (in_run(rt, t)) loom__scope_mark_cancelled(rt, &t->scope, 0);
    }
    /* (a pending record marks its scope when it takes its struct) */
    for (t = rt->ready_head; t != NULL; t = t->next_ready)
      if (pending_in_run(rt, t)) t->record |= LOOM_REC_MARKED;
    rt->deadlock = 0;
    if (drain_protected(L, rt, 1) != LUA_OK) lua_pop(L, 1);
  }
  for (n = rt->all_tasks.next; n != &rt->all_tasks; n = next) {
    t = loom__container_of(n, loom_task, all_link);
    next = n->next;
    if (!in_run(rt, t)) continue;
    if (t->state == LOOM_TASK_PARKED) {
      if (t->abort != NULL) t->abort(t);
      rt->parked--;
    }
    loom__heap_remove(rt, &t->sleep_timer);
    t->abort = NULL;
    t->state = LOOM_TASK_ABANDONED;
    loom__list_remove(&t->all_link);
    loom__list_push(&rt->abandoned, &t->all_link); /* freed at the end */
    rt->live_tasks--;
  }
  for (t = rt->ready_head; t != NULL; t = t->next_ready)
    if (pending_in_run(rt, t)) {
      t->state = LOOM_TASK_ABANDONED; /* (put on abandoned_recs below) */
      rt->live_tasks--;
    }
  /* The ready queue keeps only the tasks of host groups. */
  rt->nready = 0;
  while ((t = rt->ready_head) != NULL) {
    rt->ready_head = t->next_ready;
    t->next_ready = NULL;
    if (t->state == LOOM_TASK_ABANDONED) {
      if (t->record) { /* kept until the end, as abandoned structs are */
        t->next_ready = rt->abandoned_recs;
        rt->abandoned_recs = t;
      }
      continue;
    }
    if (loom__is_pending_record(t)) pending_kept = 1;
    if (t->state == LOOM_TASK_FORWARD &&
        t->h->t->state == LOOM_TASK_ABANDONED) {
      loom__record_free(rt, t); /* its task is abandoned */
      continue;
    }
    if (keep_tail != NULL) keep_tail->next_ready = t;
    else keep_head = t;
    keep_tail = t;
    rt->nready++;
  }
  rt->ready_head = keep_head;
  rt->ready_tail = keep_tail;
  /* Deadlines of scopes that no live task is in any more. */
  if (loom__list_empty(&rt->all_tasks) && !pending_kept) loom__heap_free(rt);
}

/* loom.run(fn, ...) -> fn's results, or raises its error. */
static int l_run(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  int nargs = lua_gettop(L) - 1, status, ud;
  loom_task *root;
  loom_handle *rh;
  loom__check_open(L, rt, "run");
  if (loom__task_of(L) != NULL || rt->running)
    return luaL_error(L, "loom.run: cannot be called from inside a loom "
                         "task (loom is already running on this Lua state)");
  if (rt->stepping || rt->current != NULL)
    return luaL_error(L, "loom.run: cannot be called during loom.step");
  if (rt->nhost_open > 0)
    return luaL_error(L, "loom.run: the runtime is driven by the host (a "
                         "host group is open); use loom.step");
  if (rt->borrowed)
    return luaL_error(L, "loom.run: the runtime runs on the host's libuv "
                         "loop; run that loop (uv_run) instead");
  if (!loom__is_callable(L, 1)) return luaL_typeerror(L, 1, "function");
  root = loom__task_new(L, rt, 1, nargs, NULL, 0, 0);
  ud = lua_gettop(L); /* keeps the root's handle for its outcome */
  rh = root->h;
  root->cur = &root->scope;
  loom__scope_attach(&root->scope, NULL);
  loom__list_push(&root->scope.tasks, &root->scope_link);
  rt->root = root;
  rt->running = 1;
  rt->deadlock = 0;
  rt->S = L;
  loom__enqueue(rt, root);
  status = drain_protected(L, rt, 0);
  if (status != LUA_OK || run_tasks_live(rt)) finish_stranded(rt, L);
  rt->running = 0;
  rt->S = NULL;
  rt->root = NULL;
  loom__tasks_trim(L, rt);
  if (rt->lost_reports > 0) {
    rt->lost_reports = 0;
    fputs("loom: out of memory: the errors of host groups' tasks could not "
          "be reported (they stay in their handles)\n",
          stderr);
  }
  if (status != LUA_OK) {
    /* The drain itself failed (out of memory, a broken hook): its error,
     * once every task of this run was cancelled and finished. */
    return lua_error(L);
  }
  if (rh->outcome == LOOM_OUT_FINISHED)
    return loom__task_push_results(L, rh, ud);
  /* Raise the root's error with its traceback kept (hooks.root_error). */
  loom__push_hook(L, rt, "root_error");
  lua_getiuservalue(L, ud, LOOM_HV_RESULT);
  loom__aux_get(L, rt, ud); /* its traceback */
  lua_pushboolean(L, rt->deadlock);
  lua_pushboolean(L, rt->clock == LOOM_CLOCK_MANUAL);
  lua_call(L, 4, 1);
  return lua_error(L);
}

/* ---- host-driven steps ------------------------------------------------- */

#define STEP_BATCHES 100 /* batches per step: a checkpoint loop can't hang */

void loom__step_slice(lua_State *L, loom_rt *rt, double budget,
                      double max_resumes) {
  double until = budget > 0 && budget < HUGE_VAL ? loom__now() + budget : 0;
  long maxr = max_resumes > 0 && max_resumes < 2147483647.0 ? (long)max_resumes
                                                            : 0;
  int batches = STEP_BATCHES;
  long n = 0;
  begin_frame(rt);
  poll_nowait(rt);
  pass_begin(rt, L, 0, "loom.step");
  if (rt->ready_head == NULL) autojump(rt, L);
  for (;;) {
    n += run_batches(rt, L, &batches, maxr > 0 ? maxr - n : 0, until);
    if (rt->ready_head != NULL || batches == 0 || (maxr > 0 && n >= maxr) ||
        (until > 0 && loom__now() >= until) ||
        loom__list_empty(&rt->blocked_waiters))
      break;
    /* Every task is blocked: wake one wait_all_tasks_blocked() caller, as
     * loom.run does (after letting pending I/O land). */
    poll_nowait(rt);
    loom__fire_timers(rt, L);
    if (rt->ready_head == NULL) {
      loom_task *w = loom__container_of(rt->blocked_waiters.next, loom_task,
                                        wait_link);
      loom__list_remove(&w->wait_link);
      loom__wake(w, LOOM_WAKE_OK);
    }
  }
  loom__tasks_trim(L, rt);
}

/* Passes that are not frames (hg:close and loom_close): poll, deadlines,
 * batches until nothing is ready, repeated until *nlive is 0 or the wall
 * clock reaches now + grace (at least one pass). Returns whether *nlive
 * reached 0. The clock is not sampled: a manual clock does not move. */
int loom__settle(lua_State *L, loom_rt *rt, const int *nlive_i,
                 const size_t *nlive_z, double grace) {
  double until = loom__now() + grace;
#define LIVE() (nlive_i ? *nlive_i > 0 : *nlive_z > 0)
  for (;;) {
    int batches = STEP_BATCHES;
    poll_nowait(rt);
    if (rt->remote != NULL) loom__remote_drain(rt, L);
    loom__fire_timers(rt, L);
    run_batches(rt, L, &batches, 0, grace > 0 ? until : 0);
    if (!LIVE()) return 1;
    if (!(grace > 0) || loom__now() >= until) return 0;
    if (rt->ready_head == NULL && !manual_deadline_due(rt)) {
      /* Nothing can wake them, or only the host's loop can. */
      if (rt->borrowed) return 0;
      if (!io_pending(rt) &&
          (loom__heap_min(rt) == NULL || rt->clock == LOOM_CLOCK_MANUAL))
        return 0;
      wait_for_events(rt, until);
    }
  }
#undef LIVE
}

static double opt_limit(lua_State *L, int idx, const char *what) {
  double v;
  if (lua_isnoneornil(L, idx)) return 0;
  v = luaL_checknumber(L, idx);
  if (isnan(v)) luaL_argerror(L, idx, lua_pushfstring(L, "%s is NaN", what));
  if (v < 0)
    luaL_argerror(L, idx, lua_pushfstring(L, "%s must not be negative", what));
  return v;
}

/* Raises unless host code may step now. */
void loom__check_can_step(lua_State *L, loom_rt *rt, const char *fn) {
  if (rt->current != NULL || rt->stepping || rt->running)
    luaL_error(L,
               "%s: cannot be called from inside a task or while "
               "loom.run is running",
               fn);
  if (rt->closed) loom__errorf(L, "%s: the runtime is closed", fn);
}

static int step_protected(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  loom__step_slice(L, rt, lua_tonumber(L, 2), lua_tonumber(L, 3));
  return 0;
}

/* [-0, +0] one host step under lua_pcall; returns the pcall status with
 * the error on top when not LUA_OK. */
int loom__step_pcall(lua_State *L, loom_rt *rt, double budget,
                     double max_resumes) {
  int status;
  lua_pushcfunction(L, step_protected);
  lua_pushlightuserdata(L, rt);
  lua_pushnumber(L, budget);
  lua_pushnumber(L, max_resumes);
  rt->stepping = 1;
  status = lua_pcall(L, 3, 0, 0);
  rt->stepping = 0;
  if (status == LUA_OK && rt->lost_reports > 0) {
    /* An error could not be queued for the hook: say so the way a step
     * that ran out of memory itself does. */
    rt->lost_reports = 0;
    lua_pushliteral(L, "not enough memory");
    status = LUA_ERRMEM;
  }
  return status;
}

/* loom.step([budget[, max_resumes]]) -> ready_left, next_deadline|nil */
static int l_step(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  double budget = opt_limit(L, 1, "budget");
  double maxr = opt_limit(L, 2, "max_resumes");
  if (maxr != floor(maxr) && !isinf(maxr))
    return luaL_argerror(L, 2, "max_resumes must be an integer");
  loom_timer *tm;
  loom__check_can_step(L, rt, "loom.step");
  lua_settop(L, 0);
  if (loom__step_pcall(L, rt, budget, maxr) != LUA_OK) return lua_error(L);
  if (loom__deliver_pcall(L, rt, 1) != LUA_OK) return lua_error(L);
  lua_pushinteger(L, (lua_Integer)rt->nready);
  tm = loom__heap_min(rt);
  if (tm != NULL) lua_pushnumber(L, tm->when);
  else lua_pushnil(L);
  return 2;
}

static int l_frame(lua_State *L) {
  lua_pushinteger(L, loom__rt(L)->frame);
  return 1;
}

static int l_next_frame(lua_State *L) {
  loom_task *t;
  lua_Integer n = 1;
  if (!lua_isnoneornil(L, 1)) {
    int isint;
    n = lua_tointegerx(L, 1, &isint);
    if (!isint) {
      if (lua_type(L, 1) == LUA_TNUMBER)
        return luaL_argerror(L, 1, "number has no integer representation");
      return luaL_typeerror(L, 1, "integer");
    }
    if (n < 1) return luaL_argerror(L, 1, "frame count must be at least 1");
  }
  t = loom__check_blocking(L, "next_frame", 1);
  loom__cancel_point(L, t);
  loom__waitq_park(&t->rt->frame_waiters, t, "next_frame", NULL);
  t->sleep_timer.when = (double)(t->rt->frame + n);
  return loom__suspend(L, 0, loom__k_return0);
}

static int l_advance(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  double dt = luaL_checknumber(L, 1);
  if (isnan(dt)) return luaL_argerror(L, 1, "dt is NaN");
  if (dt < 0) return luaL_argerror(L, 1, "dt must not be negative");
  if (isinf(dt)) return luaL_argerror(L, 1, "dt must be finite");
  if (rt->clock != LOOM_CLOCK_MANUAL)
    return luaL_error(L, "loom.advance: the clock is not manual (use "
                         "loom.configure{clock = \"manual\"})");
  if (rt->stepping)
    return luaL_error(L, "loom.advance: cannot move the clock during a step");
  rt->clock_now += dt;
  return 0;
}

/* ---- checkpoints and sleeping ----------------------------------------- */

/* The continuation of a sleep or a schedule point: ctx is the task. */
static int k_sleep(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  loom__wake_outcome(L, (loom_task *)ctx, 1);
  return 0;
}

static int schedule_point(lua_State *L, loom_task *t) {
  return loom__schedule_point(L, t, (lua_KContext)t, k_sleep);
}

static void sleep_abort(loom_task *t) {
  loom__heap_remove(t->rt, &t->sleep_timer);
}

/* sleep_forever has no deadline to take back (and a cancellation of many
 * such sleepers reads one cache line less of each). */
static void forever_abort(loom_task *t) {
  LOOM_ASSERT(t->sleep_timer.index == LOOM_NOT_IN_HEAP);
  (void)t;
}

/* A sleep's deadline passed: the sleeper wakes. */
static void sleep_fire(lua_State *S, loom_rt *rt, loom_timer *tm) {
  (void)S;
  (void)rt;
  loom__wake(loom__container_of(tm, loom_task, sleep_timer), LOOM_WAKE_OK);
}

static int sleep_until(lua_State *L, loom_task *t, double when) {
  t->sleep_timer.fire = sleep_fire;
  if (!loom__heap_insert(t->rt, &t->sleep_timer, when))
    return luaL_error(L, "loom.sleep: out of memory");
  loom__park(t, sleep_abort, "sleep", NULL);
  return loom__suspend_task(L, t, (lua_KContext)t, k_sleep);
}

static double check_delay(lua_State *L, int idx) {
  double d = luaL_checknumber(L, idx);
  if (isnan(d)) luaL_argerror(L, idx, "delay is NaN");
  if (d < 0) luaL_argerror(L, idx, "delay must not be negative");
  return d;
}

static int l_sleep(lua_State *L) {
  double d = check_delay(L, 1);
  loom_task *t = loom__check_blocking(L, "sleep", 1);
  loom__cancel_point(L, t);
  if (d == 0) return schedule_point(L, t);
  if (isinf(d)) {
    loom__park(t, forever_abort, "sleep_forever", NULL);
    return loom__suspend(L, 0, loom__k_return0);
  }
  return sleep_until(L, t, loom__time(t->rt) + d);
}

static int l_sleep_until(lua_State *L) {
  double when = luaL_checknumber(L, 1);
  loom_task *t;
  if (isnan(when)) luaL_argerror(L, 1, "deadline is NaN");
  t = loom__check_blocking(L, "sleep_until", 1);
  loom__cancel_point(L, t);
  if (when <= loom__time(t->rt)) return schedule_point(L, t);
  if (isinf(when)) {
    loom__park(t, forever_abort, "sleep_forever", NULL);
    return loom__suspend(L, 0, loom__k_return0);
  }
  return sleep_until(L, t, when);
}

static int l_sleep_forever(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "sleep_forever", 1);
  loom__cancel_point(L, t);
  loom__park(t, forever_abort, "sleep_forever", NULL);
  return loom__suspend(L, 0, loom__k_return0);
}

static int l_checkpoint(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "checkpoint", 1);
  loom__cancel_point(L, t);
  return schedule_point(L, t);
}

static int l_checkpoint_if_cancelled(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "checkpoint_if_cancelled", 0);
  loom__cancel_point(L, t);
  return 0;
}

static int l_cancel_shielded_checkpoint(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "cancel_shielded_checkpoint", 1);
  return schedule_point(L, t);
}

static void blocked_abort(loom_task *t) { loom__list_remove(&t->wait_link); }

static int l_wait_all_tasks_blocked(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "wait_all_tasks_blocked", 1);
  loom__cancel_point(L, t);
  loom__park(t, blocked_abort, "wait_all_tasks_blocked", NULL);
  loom__list_push(&t->rt->blocked_waiters, &t->wait_link);
  return loom__suspend(L, 0, loom__k_return0);
}

static int l_now(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  /* Host code between steps reads the host clock afresh; tasks see the
   * time their step or pass read. */
  if (rt->clock == LOOM_CLOCK_HOST && !rt->stepping && !rt->running &&
      !rt->closed)
    loom__sample_clock(L, rt, "loom.now");
  lua_pushnumber(L, loom__time(rt));
  return 1;
}

/* Live libuv handles, not counting the runtime's own (those embedded in the
 * loom_rt struct, such as its deadline timer, which live as long as it). */
typedef struct uv_counts {
  const char *own_lo, *own_hi;
  lua_Integer handles, closing;
} uv_counts;

static void uv_count_cb(uv_handle_t *h, void *arg) {
  uv_counts *c = (uv_counts *)arg;
  const char *p = (const char *)h;
  if (p >= c->own_lo && p < c->own_hi) return;
  if (uv_is_closing(h)) c->closing++;
  else c->handles++;
}

/* Registry references alive (luaL_ref slots in use, every library's): the
 * array part minus the reserved slots and the free list. lauxlib keeps the
 * free list head at LUA_RIDX_LAST + 1 since 5.4.3, at key 0 before. */
static lua_Integer registry_refs(lua_State *L) {
#if LUA_VERSION_RELEASE_NUM >= 50403
  const lua_Integer head = LUA_RIDX_LAST + 1, reserved = LUA_RIDX_LAST + 1;
#else
  const lua_Integer head = 0, reserved = LUA_RIDX_LAST;
#endif
  lua_Integer n, nfree = 0, ref;
  n = (lua_Integer)lua_rawlen(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, head);
  ref = lua_tointeger(L, -1);
  lua_pop(L, 1);
  while (ref > 0 && nfree < n) {
    nfree++;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    ref = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  return n > reserved ? n - reserved - nfree : 0;
}

static void set_count(lua_State *L, const char *name, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, name);
}

/* core.stats() -> table: counters for tests and benchmarks. Every number
 * but pooled_coroutines and registry_refs is a count of live things that a
 * finished loom.run must not leave behind. */
static int l_stats(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  uv_counts uc;
  lua_Integer ready = 0, blocked = 0;
  loom_task *t;
  const loom_list *n;
  for (t = rt->ready_head; t != NULL; t = t->next_ready) ready++;
  for (n = rt->blocked_waiters.next; n != &rt->blocked_waiters; n = n->next)
    blocked++;
  memset(&uc, 0, sizeof uc);
  uc.own_lo = (const char *)rt;
  uc.own_hi = (const char *)(rt + 1);
  /* After loom_close the loop is closed (or is the host's, gone). */
  if (!rt->closed) uv_walk(rt->loop, uv_count_cb, &uc);
  lua_createtable(L, 0, 16);
  set_count(L, "live_tasks", (lua_Integer)rt->live_tasks);
  set_count(L, "pooled_coroutines", rt->pool_len);
  /* coroutines tasks run on: a live count */
  set_count(L, "task_coroutines", rt->task_coroutines);
  set_count(L, "anchor_slots", (lua_Integer)rt->anchor_top);
  set_count(L, "cancelled_scopes", (lua_Integer)rt->ncancelled);
  set_count(L, "task_extensions", (lua_Integer)rt->ext_live);
  set_count(L, "pending_records", (lua_Integer)rt->rec_live);
  set_count(L, "deadlines", (lua_Integer)rt->heap_len);
  set_count(L, "ready", ready);
  set_count(L, "parked", (lua_Integer)rt->parked);
  set_count(L, "queued", (lua_Integer)rt->queued);
  set_count(L, "blocked_waiters", blocked);
  set_count(L, "uv_handles", uc.handles);
  set_count(L, "uv_closing", uc.closing);
  set_count(L, "uv_reqs",
            rt->closed ? 0 : (lua_Integer)rt->loop->active_reqs.count);
  set_count(L, "registry_refs", registry_refs(L));
  lua_pushboolean(L, rt->running);
  lua_setfield(L, -2, "running");
  return 1;
}

/* The guarded coroutine.resume / coroutine.close: upvalues runtime, the
 * function they replace. A loom task's coroutine belongs to the scheduler:
 * resuming or closing it from elsewhere raises here, in the caller, and
 * the task is left intact. */
static int l_co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co != NULL && loom__task_of_thread(L, loom__rt(L), co) != NULL)
    return luaL_error(L, "cannot resume a loom task's coroutine directly; "
                         "use an event");
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int l_co_close(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co != NULL && loom__task_of_thread(L, loom__rt(L), co) != NULL)
    return luaL_error(L, "cannot close a loom task's coroutine directly; "
                         "cancel the task instead");
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* core.guard_coroutines(coroutine): replace coroutine.resume and
 * coroutine.close of that table with the guarded versions (once). */
static int l_guard_coroutines(lua_State *L) {
  static const char *const names[] = {"resume", "close"};
  static const lua_CFunction fns[] = {l_co_resume, l_co_close};
  int i;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (i = 0; i < 2; i++) {
    lua_getfield(L, 1, names[i]);
    if (lua_tocfunction(L, -1) == fns[i] || !lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, -2);
    lua_pushcclosure(L, fns[i], 2);
    lua_setfield(L, 1, names[i]);
  }
  return 0;
}

static const luaL_Reg sched_funcs[] = {
  {"guard_coroutines", l_guard_coroutines},
  {"run", l_run},
  {"now", l_now},
  {"sleep", l_sleep},
  {"sleep_until", l_sleep_until},
  {"sleep_forever", l_sleep_forever},
  {"checkpoint", l_checkpoint},
  {"checkpoint_if_cancelled", l_checkpoint_if_cancelled},
  {"cancel_shielded_checkpoint", l_cancel_shielded_checkpoint},
  {"wait_all_tasks_blocked", l_wait_all_tasks_blocked},
  {"stats", l_stats},
  {"step", l_step},
  {"frame", l_frame},
  {"next_frame", l_next_frame},
  {"advance", l_advance},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_sched(lua_State *L) {
  loom__setfuncs(L, 1, sched_funcs);
  return 0;
}
