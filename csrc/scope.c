/*
 * scope.c: cancel scopes. Scopes form a tree (a task's innermost scope points
 * up to the scope it was entered in; a group's children hang below the
 * group's scope). Cancelling a scope walks its subtree, stopping at shields,
 * and aborts every abortable parked wait synchronously, so the woken task
 * raises Cancelled at once. Cancellation is level-triggered: checkpoints
 * compute it from the tree (loom__effective_cancel), nothing polls.
 */
#include <math.h>
#include <string.h>

#include "loom_internal.h"

#define SCOPE_MT "loom.CancelScope"

/* The CancelScope around a scope that is not a task's own (only those can
 * have a deadline). */
#define CS(sc) loom__container_of(sc, loom_cscope, base)

static void fire_deadline(lua_State *L, loom_rt *rt, loom_timer *tm);

void loom__scope_init(loom_scope *s, int is_task_scope) {
  s->magic = LOOM_MAGIC_SCOPE;
  s->parent = NULL;
  loom__list_init(&s->children);
  loom__list_init(&s->link);
  loom__list_init(&s->tasks);
  s->owner = NULL;
  s->exc_ref = LUA_NOREF;
  s->state = LOOM_SCOPE_NEW;
  s->cancel_called = s->shield = s->caught = s->by_deadline = 0;
  s->counted = 0;
  s->is_task_scope = (unsigned char)is_task_scope;
  if (!is_task_scope) {
    loom__timer_init(&CS(s)->timer, fire_deadline);
    CS(s)->deadline = HUGE_VAL;
  }
}

void loom__scope_attach(loom_scope *s, loom_scope *parent) {
  s->parent = parent;
  if (parent) loom__list_push(&parent->children, &s->link);
  s->state = LOOM_SCOPE_ACTIVE;
}

/* ---- a scope's Cancelled object ------------------------------------------ *
 * A cancelled scope holds the Cancelled object it raises (s->exc_ref). The
 * runtime remembers the address of the one set last while its scope holds
 * it (rt->exc_scope, rt->exc_ptr): an object at that address is then alive
 * and was issued by loom, so loom__is_cancelled recognises it without the
 * weak-table look-up (cancelling a group wakes every task with the same
 * object). The address is forgotten before the reference is dropped. */

static void drop_exc(lua_State *L, loom_rt *rt, loom_scope *s) {
  if (rt->exc_scope == s) {
    rt->exc_scope = NULL;
    rt->exc_ptr = NULL;
  }
  if (s->exc_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->exc_ref);
    s->exc_ref = LUA_NOREF;
  }
}

/* [-1, +0] the object on top (built by make_cancelled) becomes s's. */
static void set_exc(lua_State *L, loom_rt *rt, loom_scope *s) {
  const void *p = lua_type(L, -1) == LUA_TTABLE ? lua_topointer(L, -1) : NULL;
  drop_exc(L, rt, s);
  s->exc_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (p != NULL) {
    rt->exc_scope = s;
    rt->exc_ptr = p;
  }
}

/* rt->ncancelled counts the attached scopes with cancel_called set: a
 * scope is counted when it is marked while attached, or attached (entered)
 * already marked, and uncounted when it is left or spliced out. A scope is
 * marked once and entered at most once. While the count is 0 no attached
 * scope is cancelled, and a checkpoint skips the walk up its scopes. */
static void count_cancelled(loom_rt *rt, loom_scope *s) {
  if (!s->counted) {
    s->counted = 1;
    rt->ncancelled++;
  }
}

static void uncount_cancelled(loom_rt *rt, loom_scope *s) {
  if (s->counted) {
    s->counted = 0;
    LOOM_ASSERT(rt->ncancelled > 0);
    rt->ncancelled--;
  }
}

/* Undo attach: the scope is left and can no longer cancel anything. Its
 * Cancelled object is released; errors that escaped keep their own copy. */
void loom__scope_detach(lua_State *L, loom_rt *rt, loom_scope *s) {
  if (!s->is_task_scope) loom__heap_remove(rt, &CS(s)->timer);
  loom__list_remove(&s->link);
  s->parent = NULL; /* it may be collected before s */
  s->state = LOOM_SCOPE_EXITED;
  uncount_cancelled(rt, s);
  drop_exc(L, rt, s);
}

loom_scope *loom__effective_cancel(loom_scope *s) {
  loom_scope *hit = NULL;
  for (; s != NULL; s = s->parent) {
    if (s->cancel_called) hit = s;
    if (s->shield) break;
  }
  return hit;
}

void loom__scope_abort_subtree(loom_rt *rt, loom_scope *s) {
  loom_list *n, *next;
  for (n = s->tasks.next; n != &s->tasks; n = next) {
    loom_task *t = loom__container_of(n, loom_task, scope_link);
    next = n->next;
    if (t->state == LOOM_TASK_PARKED && t->abort != NULL) {
      loom_scope *hit = loom__effective_cancel(t->cur);
      loom_abort_fn abort = t->abort;
      if (hit == NULL) continue;
      t->abort = NULL;
      abort(t);
      t->wake_scope = hit;
      loom__wake(t, LOOM_WAKE_CANCELLED);
    }
  }
  for (n = s->children.next; n != &s->children; n = next) {
    loom_scope *c = loom__container_of(n, loom_scope, link);
    next = n->next;
    if (!c->shield) loom__scope_abort_subtree(rt, c);
  }
  (void)rt;
}

void loom__scope_mark_cancelled(loom_rt *rt, loom_scope *s, int by_deadline) {
  if (s->cancel_called) return;
  s->cancel_called = 1;
  if (s->state == LOOM_SCOPE_ACTIVE) count_cancelled(rt, s);
  s->by_deadline = (unsigned char)by_deadline;
  if (!s->is_task_scope) loom__heap_remove(rt, &CS(s)->timer);
  if (s->state == LOOM_SCOPE_ACTIVE) loom__scope_abort_subtree(rt, s);
}

/* [-0, +1] build s's Cancelled through hooks.cancelled (allocates, may
 * raise). */
static void make_cancelled(lua_State *L, loom_rt *rt, loom_scope *s,
                           int reason_idx, loom_task *by) {
  luaL_checkstack(L, 6, "loom: cancel");
  loom__push_hook(L, rt, "cancelled");
  if (reason_idx) lua_pushvalue(L, reason_idx);
  else if (s->by_deadline) lua_pushliteral(L, "deadline exceeded");
  else lua_pushnil(L);
  lua_pushboolean(L, s->by_deadline);
  loom__push_task(L, by);
  lua_pushlightuserdata(L, s);
  lua_call(L, 4, 1);
}

/* The tree is updated first (marking and aborting allocate nothing), so an
 * error while building the Cancelled object (out of memory) leaves the
 * scope cancelled and its waiters woken; the object is then built when it
 * is first delivered (loom__push_cancelled). */
void loom__scope_cancel(lua_State *L, loom_rt *rt, loom_scope *s,
                        int reason_idx, int by_deadline) {
  if (s->cancel_called) return;
  if (reason_idx) reason_idx = lua_absindex(L, reason_idx);
  loom__scope_mark_cancelled(rt, s, by_deadline);
  make_cancelled(L, rt, s, reason_idx, rt->current);
  set_exc(L, rt, s);
}

void loom__scope_cancel_object(lua_State *L, loom_rt *rt, loom_scope *s) {
  if (s->exc_ref != LUA_NOREF) return;
  make_cancelled(L, rt, s, 0, rt->current);
  set_exc(L, rt, s);
}

void loom__push_cancelled(lua_State *L, loom_rt *rt, loom_scope *s) {
  if (s->exc_ref == LUA_NOREF) {
    /* Marked without an object yet (see loom__scope_cancel): make one. */
    make_cancelled(L, rt, s, 0, NULL);
    set_exc(L, rt, s);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->exc_ref);
}

/* The scope's deadline passed: cancel it (its timer's fire function). */
static void fire_deadline(lua_State *L, loom_rt *rt, loom_timer *tm) {
  loom_scope *s = &loom__container_of(tm, loom_cscope, timer)->base;
  loom__scope_cancel(L, rt, s, 0, 1);
}

/* A deadline that is already due cancels at once; else it goes in the heap. */
static void arm_deadline(lua_State *L, loom_rt *rt, loom_scope *s) {
  if (s->state != LOOM_SCOPE_ACTIVE || s->cancel_called) return;
  if (CS(s)->deadline <= loom__time(rt)) loom__scope_cancel(L, rt, s, 0, 1);
  else if (CS(s)->deadline < HUGE_VAL) {
    if (!loom__heap_insert(rt, &CS(s)->timer, CS(s)->deadline))
      luaL_error(L, "loom: out of memory");
  } else loom__heap_remove(rt, &CS(s)->timer);
}

/* Make s (never entered) t's innermost scope. Allocates nothing and cannot
 * fail: the caller has reserved a heap slot (loom__heap_reserve) when s has
 * a finite deadline. A deadline already due only marks the scope; its
 * Cancelled object is built at the first checkpoint inside. */
void loom__scope_link(loom_task *t, loom_scope *s) {
  loom_rt *rt = t->rt;
  loom__scope_attach(s, t->cur);
  s->owner = t;
  loom__list_remove(&t->scope_link);
  loom__list_push(&s->tasks, &t->scope_link);
  t->cur = s;
  if (s->cancel_called) {
    count_cancelled(rt, s);
    return;
  }
  LOOM_ASSERT(!s->is_task_scope);
  if (CS(s)->deadline <= loom__time(rt)) loom__scope_mark_cancelled(rt, s, 1);
  else if (CS(s)->deadline < HUGE_VAL)
    (void)loom__heap_insert(rt, &CS(s)->timer, CS(s)->deadline);
}

/* Leave s, entered by t with loom__scope_link; any scope t left entered
 * inside s is left too. Allocates nothing and cannot fail. Returns whether
 * s catches a Cancelled. */
int loom__scope_unlink(lua_State *L, loom_task *t, loom_scope *s) {
  loom_rt *rt = t->rt;
  int catches;
  if (s->state != LOOM_SCOPE_ACTIVE) return 0;
  while (t->cur != s && t->cur != NULL && t->cur != &t->scope) {
    loom_scope *inner = t->cur;
    t->cur = inner->parent;
    loom__scope_detach(L, rt, inner);
  }
  catches = s->cancel_called &&
            (s->shield || loom__effective_cancel(s->parent) == NULL);
  if (t->cur == s) {
    t->cur = s->parent;
    loom__list_remove(&t->scope_link);
    loom__list_push(&t->cur->tasks, &t->scope_link);
  }
  loom__scope_detach(L, rt, s);
  return catches;
}

/* ---- Lua side ---------------------------------------------------------- */

static loom_scope *check_scope(lua_State *L, int idx) {
  loom_scope *s = (loom_scope *)loom__test_ud(L, idx, sizeof(loom_cscope),
                                              LOOM_MAGIC_SCOPE);
  if (s == NULL) s = (loom_scope *)luaL_checkudata(L, idx, SCOPE_MT);
  return s;
}

static double check_deadline(lua_State *L, int idx, const char *what) {
  double d = luaL_checknumber(L, idx);
  if (isnan(d)) luaL_argerror(L, idx, lua_pushfstring(L, "%s is NaN", what));
  return d;
}

loom_scope *loom__scope_new(lua_State *L) {
  loom_scope *s = &((loom_cscope *)lua_newuserdatauv(L, sizeof(loom_cscope), 0))
                     ->base;
  loom__scope_init(s, 0);
  luaL_setmetatable(L, SCOPE_MT);
  return s;
}

/* core.scope_new([deadline [, shield]]) -> CancelScope */
static int l_scope_new(lua_State *L) {
  double deadline = HUGE_VAL;
  int shield = 0;
  loom_scope *s;
  if (!lua_isnoneornil(L, 1)) deadline = check_deadline(L, 1, "deadline");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    shield = lua_toboolean(L, 2);
  }
  s = loom__scope_new(L);
  CS(s)->deadline = deadline;
  s->shield = (unsigned char)shield;
  return 1;
}

static int l_scope_cancel(lua_State *L) {
  loom_scope *s = check_scope(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  loom__scope_cancel(L, loom__rt(L), s, lua_isnil(L, 2) ? 0 : 2, 0);
  return 0;
}

/* The run continuation: fn returned or raised (status), under the
 * protection set up by l_scope_run. Leaves the scope first (nothing before
 * that can fail), then returns catches, ok, results... | error. */
static int k_scope_run(lua_State *L, int status, lua_KContext ctx) {
  loom_scope *s = (loom_scope *)ctx;
  int catches = loom__scope_unlink(L, s->owner, s);
  /* [scope, msgh, results... | error]; left: raising is safe now. */
  luaL_checkstack(L, 2, "loom: CancelScope:run");
  lua_pushboolean(L, catches);
  lua_replace(L, 1);
  lua_pushboolean(L, status == LUA_OK || status == LUA_YIELD);
  lua_replace(L, 2);
  return lua_gettop(L);
}

/* core.scope_run(scope, fn, ...) -> catches, ok, results... | error.
 * Entering and leaving are this one C call around a protected call of fn:
 * everything that can fail (argument checks, the heap slot for the
 * deadline, stack space) happens before the scope becomes current, and the
 * continuation leaves it before anything else, whether fn returned, raised
 * or was unwound after yielding. Nothing can leave the scope entered. */
static int l_scope_run(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "CancelScope:run", 0);
  loom_scope *s = check_scope(L, 1);
  int nargs = lua_gettop(L) - 2;
  if (nargs < 0) luaL_checkany(L, 2);
  if (s->state != LOOM_SCOPE_NEW)
    return loom__errorf(L,
                        "loom.CancelScope:run: a cancel scope can be "
                        "run only once (this one is %s)",
                        s->state == LOOM_SCOPE_ACTIVE ? "active"
                                                      : "already exited");
  luaL_checkstack(L, 4, "loom: CancelScope:run");
  if (CS(s)->deadline < HUGE_VAL && !loom__heap_reserve(t->rt))
    return luaL_error(L, "not enough memory");
  lua_pushvalue(L, lua_upvalueindex(2)); /* the message handler */
  lua_insert(L, 2);
  loom__scope_link(t, s);
  return k_scope_run(
    L, lua_pcallk(L, nargs, LUA_MULTRET, 2, (lua_KContext)s, k_scope_run),
    (lua_KContext)s);
}

static int l_is_scope(lua_State *L) {
  lua_pushboolean(
    L, loom__test_ud(L, 1, sizeof(loom_cscope), LOOM_MAGIC_SCOPE) != NULL ||
         luaL_testudata(L, 1, SCOPE_MT) != NULL);
  return 1;
}

/* Once a deadline has passed, cancel_called is true for good, even
 * if nothing noticed yet and the deadline is moved afterwards. */
static void settle_deadline(lua_State *L, loom_rt *rt, loom_scope *s) {
  if (!s->cancel_called && s->state != LOOM_SCOPE_EXITED &&
      CS(s)->deadline <= loom__time(rt))
    loom__scope_cancel(L, rt, s, 0, 1);
}

static int l_scope_set_caught(lua_State *L) {
  check_scope(L, 1)->caught = 1;
  return 0;
}

static int l_scope_index(lua_State *L) {
  loom_scope *s = check_scope(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if (strcmp(k, "deadline") == 0) lua_pushnumber(L, CS(s)->deadline);
  else if (strcmp(k, "shield") == 0) lua_pushboolean(L, s->shield);
  else if (strcmp(k, "cancel_called") == 0) {
    settle_deadline(L, loom__rt(L), s);
    lua_pushboolean(L, s->cancel_called);
  } else if (strcmp(k, "cancelled_caught") == 0) lua_pushboolean(L, s->caught);
  else if (strcmp(k, "active") == 0)
    lua_pushboolean(L, s->state == LOOM_SCOPE_ACTIVE);
  else {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(2)) == LUA_TNIL)
      return loom__no_member(L);
  }
  return 1;
}

static int l_scope_newindex(lua_State *L) {
  loom_scope *s = check_scope(L, 1);
  loom_rt *rt = loom__rt(L);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "deadline") == 0) {
    settle_deadline(L, rt, s);
    if (lua_isnil(L, 3)) CS(s)->deadline = HUGE_VAL;
    else CS(s)->deadline = check_deadline(L, 3, "deadline");
    arm_deadline(L, rt, s);
  } else if (k && strcmp(k, "shield") == 0) {
    int was = s->shield;
    luaL_checktype(L, 3, LUA_TBOOLEAN);
    s->shield = (unsigned char)lua_toboolean(L, 3);
    /* Dropping a shield exposes a pending outer cancellation at once. */
    if (was && !s->shield && s->state == LOOM_SCOPE_ACTIVE &&
        loom__effective_cancel(s->parent) != NULL)
      loom__scope_abort_subtree(rt, s);
  } else
    return luaL_error(L,
                      "loom.CancelScope: cannot set field '%s' (only "
                      "'deadline' and 'shield' are writable)",
                      k ? k : luaL_typename(L, 2));
  return 0;
}

static int l_scope_tostring(lua_State *L) {
  loom_scope *s = check_scope(L, 1);
  static const char *const states[] = {"new", "active", "exited"};
  lua_pushfstring(L, "loom.CancelScope: %p (%s%s%s)", (void *)s,
                  states[s->state], s->cancel_called ? ", cancel called" : "",
                  s->shield ? ", shielded" : "");
  return 1;
}

/* s is being collected: nothing may point to it afterwards. Normally
 * nothing does (a scope is left before its run returns, and its run's
 * stack anchors it); a scope entered by a task whose coroutine was killed
 * behind the scheduler's back, or still entered at lua_close, is spliced
 * out: its children and tasks move up to its parent. */
static void splice_out(loom_scope *s) {
  loom_scope *p = s->parent;
  while (!loom__list_empty(&s->children)) {
    loom_scope *c = loom__container_of(s->children.next, loom_scope, link);
    loom__list_remove(&c->link);
    c->parent = p;
    if (p != NULL) loom__list_push(&p->children, &c->link);
  }
  while (!loom__list_empty(&s->tasks)) {
    loom_task *t = loom__container_of(s->tasks.next, loom_task, scope_link);
    loom__list_remove(&t->scope_link);
    if (t->cur == s) t->cur = p;
    if (p != NULL) loom__list_push(&p->tasks, &t->scope_link);
  }
  loom__list_remove(&s->link);
  s->parent = NULL;
  s->state = LOOM_SCOPE_EXITED;
}

static int l_scope_gc(lua_State *L) {
  loom_scope *s = check_scope(L, 1);
  loom_rt *rt = loom__rt(L);
  if (s->parent == NULL && !rt->closed && !rt->running && !rt->stepping &&
      rt->current == NULL &&
      (!loom__list_empty(&s->children) || !loom__list_empty(&s->tasks))) {
    /* A root scope with tasks below it is a host group's, finalised by
     * lua_close before the runtime (it was made later): close the runtime
     * first, as its own __gc would, so that the group's tasks are
     * cancelled through this scope and finish. */
    lua_pushcfunction(L, loom__rt_gc);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushboolean(L, 1); /* not the runtime's own finaliser */
    lua_call(L, 2, 0);
  }
  /* Only an abandoned scope can still be in the heap here. */
  if (!rt->closed) loom__heap_remove(rt, &CS(s)->timer);
  splice_out(s);
  uncount_cancelled(rt, s);
  drop_exc(L, rt, s);
  return 0;
}

/* core.effective_deadline() -> number */
static int l_effective_deadline(lua_State *L) {
  loom_task *t = loom__check_blocking(L, "current_effective_deadline", 0);
  loom_scope *s;
  double d = HUGE_VAL;
  for (s = t->cur; s != NULL; s = s->parent) {
    if (s->cancel_called) {
      d = -HUGE_VAL;
      break;
    }
    if (!s->is_task_scope && CS(s)->deadline < d) d = CS(s)->deadline;
    if (s->shield) break;
  }
  lua_pushnumber(L, d);
  return 1;
}

static const luaL_Reg scope_meta[] = {
  {"__newindex", l_scope_newindex},
  {"__tostring", l_scope_tostring},
  {"__gc", l_scope_gc},
  {NULL, NULL},
};

static const luaL_Reg scope_methods[] = {
  {"cancel", l_scope_cancel},
  {NULL, NULL},
};

static const luaL_Reg scope_funcs[] = {
  {"scope_new", l_scope_new},
  {"scope_set_caught", l_scope_set_caught},
  {"is_scope", l_is_scope},
  {"effective_deadline", l_effective_deadline},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). Adds core.scope_methods for the Lua front. */
int loom__open_scope(lua_State *L) {
  /* properties (deadline, shield, ...): a C __index, upvalues rt, methods */
  static const loom_class scope_class = {
    SCOPE_MT,        scope_meta, scope_methods, NULL, l_scope_index,
    "scope_methods", 0};
  loom__class_register(L, -1, &scope_class, 1, 1);
  lua_pop(L, 1);
  loom__setfuncs(L, 1, scope_funcs);
  /* core.scope_run: upvalues runtime, message handler. */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, loom__msgh, 1);
  lua_pushcclosure(L, l_scope_run, 2);
  lua_setfield(L, -2, "scope_run");
  return 0;
}
