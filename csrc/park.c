/*
 * park.c: the park protocol, the one way a task waits. It owns park and
 * wake, the FIFO wait queues (loom__waitq_*), the schedule point, the
 * cancel point, the suspension (loom__suspend and its guard) and the one
 * helper a continuation reads its wake-up outcome with.
 *
 * The contract:
 * - Who may park: only the running task parks itself (rt->current, on its
 *   own coroutine), right before it suspends with loom__suspend; a task
 *   already parked may be moved to another wait (a condition's waiter to
 *   its lock's queue). Parking allocates nothing and calls no Lua.
 * - Abort: a wait is abortable when it parks with an abort function. A
 *   cancel (scope.c) calls it synchronously, from anywhere, without Lua:
 *   abort must unlink the task from whatever holds it (its wait queue, its
 *   deadline, the record it waits on) and nothing else; the canceller then
 *   wakes it with LOOM_WAKE_CANCELLED and the scope that cancelled it in
 *   t->wake_scope. A wait parked with no abort is not cancellable (a
 *   shielded re-acquire, a hand-off already made); its owner wakes it.
 * - Delivery: whoever wakes a parked task (a libuv callback, another
 *   task's hand-off, the deadline heap) first unlinks it from its wait and
 *   stores what it hands over in C (or pushes it on t->L, counted in
 *   t->wake_nargs), then calls loom__wake(t, how); how is LOOM_WAKE_* or an
 *   owner's code with the same values. The task runs again in FIFO order of
 *   its wake, and its continuation calls loom__wake_outcome first: the
 *   outcome is read once, there, and nowhere else.
 * - Hand-off against cancel: whatever unlinks the task first wins. A
 *   hand-off (loom__waitq_pop) to an abortable waiter whose cancellation
 *   is already pending is not made: that waiter is woken with its Cancelled
 *   and the next one takes the item, so nothing is handed to a task that
 *   could not keep it. Once a task was handed something and woken, a later
 *   cancel finds it not parked and does nothing: the hand-off stands and
 *   the Cancelled comes at its next checkpoint.
 */
#include "loom_internal.h"

/* ---- park and wake ------------------------------------------------------ */

void loom__park(loom_task *t, loom_abort_fn abort, const char *what,
                void *data) {
  /* The running task parks itself; a parked one may be moved to another
   * wait (a condition's waiter to its lock's queue). */
  LOOM_ASSERT((t->state == LOOM_TASK_RUNNING && t->rt->current == t) ||
              t->state == LOOM_TASK_PARKED);
  if (t->state != LOOM_TASK_PARKED) t->rt->parked++;
  t->state = LOOM_TASK_PARKED;
  t->abort = abort;
  t->wait_what = what;
  t->wait_data = data;
  t->wake = LOOM_WAKE_OK;
  t->wake_scope = NULL;
}

void loom__wake(loom_task *t, int how) {
  if (t->state != LOOM_TASK_PARKED) return;
  /* Whoever wakes it has unlinked it from its wait and its deadline. */
  LOOM_ASSERT(t->waitq == NULL && loom__list_empty(&t->wait_link));
  LOOM_ASSERT(t->sleep_timer.index == LOOM_NOT_IN_HEAP);
  LOOM_ASSERT(t->rt->parked > 0);
  t->rt->parked--;
  t->state = LOOM_TASK_READY;
  t->abort = NULL;
  t->wake = (unsigned char)how;
  loom__enqueue(t->rt, t);
}

/* ---- the outcome of a wait ---------------------------------------------- */

int loom__wake_outcome(lua_State *L, loom_task *t, int raise_cancel) {
  int how = t->wake;
  /* Read by the task itself, resumed by the scheduler, out of every wait. */
  LOOM_ASSERT(t->state == LOOM_TASK_RUNNING && t->rt->current == t);
  LOOM_ASSERT(t->waitq == NULL && t->abort == NULL);
  t->wait_what = NULL;
  t->wait_data = NULL;
  t->wake = LOOM_WAKE_OK;
  if (how == LOOM_WAKE_CANCELLED) {
    loom_scope *hit = t->wake_scope;
    t->wake_scope = NULL;
    if (!raise_cancel) return how;
    if (hit == NULL) hit = loom__effective_cancel(t->cur);
    if (hit != NULL) {
      loom__push_cancelled(L, t->rt, hit);
      lua_error(L);
    }
    return LOOM_WAKE_OK;
  }
  return how;
}

/* ---- suspension, schedule point, cancel point -------------------------- */

void loom__cancel_point(lua_State *L, loom_task *t) {
  loom_scope *hit;
  loom_timer *tm = loom__heap_min(t->rt);
  /* A deadline that passed while this task ran counts now, not only when
   * the scheduler next looks at the heap. */
  if (tm != NULL && tm->when <= loom__time(t->rt)) loom__fire_timers(t->rt, L);
  hit = loom__cancel_hit(t);
  if (hit != NULL) {
    loom__push_cancelled(L, t->rt, hit);
    lua_error(L);
  }
}

/* Every suspension continues here. Only the scheduler may resume a task:
 * it is then rt->current and its coroutine is L. Anyone else (a
 * coroutine.resume the guard of init.lua did not see, such as a function
 * captured before require "loom") gets nothing: what it passed is dropped
 * and the task stays suspended exactly as it was. */
static int k_guard(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = (loom_task *)ctx;
  if (t->rt->current != t || t->L != L) {
    lua_settop(L, t->park_top + t->wake_nargs);
    return lua_yieldk(L, 0, ctx, k_guard);
  }
  return t->k(L, status, t->kctx);
}

int loom__suspend_task(lua_State *L, loom_task *t, lua_KContext ctx,
                       lua_KFunction k) {
  LOOM_ASSERT(t == loom__task_of(L));
  t->k = k;
  t->kctx = ctx;
  t->park_top = lua_gettop(L);
  return lua_yieldk(L, 0, (lua_KContext)t, k_guard);
}

int loom__suspend(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  return loom__suspend_task(L, loom__task_of(L), ctx, k);
}

int loom__k_return0(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  (void)status;
  (void)ctx;
  loom__wake_outcome(L, t, 1);
  return 0;
}

int loom__schedule_point(lua_State *L, loom_task *t, lua_KContext ctx,
                         lua_KFunction k) {
  LOOM_ASSERT(t->state == LOOM_TASK_RUNNING && t->rt->current == t);
  t->state = LOOM_TASK_READY;
  t->wake = LOOM_WAKE_OK;
  loom__enqueue(t->rt, t);
  return loom__suspend_task(L, t, ctx, k);
}

/* ---- wait queues -------------------------------------------------------- */

void loom__waitq_init(loom_waitq *q) {
  loom__list_init(&q->head);
  q->n = 0;
}

void loom__waitq_push(loom_waitq *q, loom_task *t) {
  LOOM_ASSERT(t->waitq == NULL && loom__list_empty(&t->wait_link));
  loom__list_push(&q->head, &t->wait_link);
  t->waitq = q;
  q->n++;
  t->rt->queued++;
}

void loom__waitq_remove(loom_task *t) {
  loom__list_remove(&t->wait_link);
  if (t->waitq != NULL) {
    t->waitq->n--;
    t->rt->queued--;
  }
  t->waitq = NULL;
}

static void waitq_abort(loom_task *t) { loom__waitq_remove(t); }

void loom__waitq_park(loom_waitq *q, loom_task *t, const char *what,
                      void *data) {
  loom__park(t, waitq_abort, what, data);
  loom__waitq_push(q, t);
}

loom_task *loom__waitq_pop(loom_waitq *q) {
  while (q->n > 0) {
    loom_task *t = loom__container_of(q->head.next, loom_task, wait_link);
    loom__waitq_remove(t);
    if (t->abort != NULL) {
      loom_scope *hit = loom__effective_cancel(t->cur);
      if (hit != NULL) {
        t->wake_scope = hit;
        loom__wake(t, LOOM_WAKE_CANCELLED);
        continue;
      }
    }
    return t;
  }
  return NULL;
}

loom_task *loom__waitq_shift(loom_waitq *q) {
  loom_task *t;
  if (q->n == 0) return NULL;
  t = loom__container_of(q->head.next, loom_task, wait_link);
  loom__waitq_remove(t);
  return t;
}
