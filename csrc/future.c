/*
 * future.c: loom.future(), a one-shot value that host code (an engine
 * callback, a remote post) or a task resolves once, with f:set(...) or
 * f:fail(err), and tasks wait for with f:wait(). Waiters park in a FIFO
 * wait queue and all wake, in order, at the resolution; a cancelled waiter
 * leaves the future unresolved.
 */
#include <string.h>

#include "loom_internal.h"

#define FUTURE_MT "loom.Future"

enum { F_PENDING = 0, F_SET = 1, F_FAILED = 2 };

/* User value 1: the values (a packed table) or the error. */
typedef struct loom_future {
  loom_waitq waiters;
  int state;
  int nvalues;
} loom_future;

static loom_future *check_future(lua_State *L, int idx) {
  return (loom_future *)luaL_checkudata(L, idx, FUTURE_MT);
}

static int l_future(lua_State *L) {
  loom_future *f;
  loom__check_open(L, loom__rt(L), "future");
  f = (loom_future *)lua_newuserdatauv(L, sizeof *f, 1);
  memset(f, 0, sizeof *f);
  loom__waitq_init(&f->waiters);
  luaL_setmetatable(L, FUTURE_MT);
  return 1;
}

static void resolve(lua_State *L, loom_future *f, const char *fn, int state) {
  loom_task *t;
  if (f->state != F_PENDING)
    luaL_error(L, "loom.Future:%s: the future is already %s", fn,
               f->state == F_SET ? "set" : "failed");
  f->state = state;
  while ((t = loom__waitq_shift(&f->waiters)) != NULL)
    loom__wake(t, LOOM_WAKE_OK);
}

/* f:set(...) */
static int l_future_set(lua_State *L) {
  loom_future *f = check_future(L, 1);
  int n = lua_gettop(L) - 1, i;
  if (f->state != F_PENDING) resolve(L, f, "set", F_SET); /* raises */
  lua_createtable(L, n, 0);
  for (i = 1; i <= n; i++) {
    lua_pushvalue(L, i + 1);
    lua_rawseti(L, -2, i);
  }
  lua_setiuservalue(L, 1, 1);
  f->nvalues = n;
  resolve(L, f, "set", F_SET);
  return 0;
}

/* f:fail(err) */
static int l_future_fail(lua_State *L) {
  loom_future *f = check_future(L, 1);
  if (f->state != F_PENDING) resolve(L, f, "fail", F_FAILED); /* raises */
  if (lua_gettop(L) < 2) return luaL_argerror(L, 2, "error value expected");
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) lua_pushliteral(L, "(error object is a nil value)");
  lua_setiuservalue(L, 1, 1);
  resolve(L, f, "fail", F_FAILED);
  return 0;
}

static int deliver(lua_State *L, loom_future *f) {
  int i;
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 1);
  if (f->state == F_FAILED) return lua_error(L);
  luaL_checkstack(L, f->nvalues, "loom.Future:wait: too many values");
  for (i = 1; i <= f->nvalues; i++) lua_rawgeti(L, 2, i);
  return f->nvalues;
}

static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  (void)status;
  (void)ctx;
  loom__wake_outcome(L, t, 1);
  return deliver(L, check_future(L, 1));
}

/* f:wait() -> the values, or raises the error; a checkpoint. */
static int l_future_wait(lua_State *L) {
  loom_future *f = check_future(L, 1);
  loom_task *t = loom__check_blocking(L, "Future:wait", 1);
  lua_settop(L, 1);
  loom__cancel_point(L, t);
  if (f->state != F_PENDING) return loom__schedule_point(L, t, 0, k_wait);
  loom__waitq_park(&f->waiters, t, "future", f);
  return loom__suspend(L, 0, k_wait);
}

static int l_future_done(lua_State *L) {
  lua_pushboolean(L, check_future(L, 1)->state != F_PENDING);
  return 1;
}

static int l_future_tostring(lua_State *L) {
  loom_future *f = check_future(L, 1);
  static const char *const states[] = {"pending", "set", "failed"};
  lua_pushfstring(L, FUTURE_MT ": %p (%s, %d waiting)", (void *)f,
                  states[f->state], f->waiters.n);
  return 1;
}

static const luaL_Reg future_methods[] = {
  {"set", l_future_set},
  {"fail", l_future_fail},
  {"wait", l_future_wait},
  {"done", l_future_done},
  {NULL, NULL},
};

static const luaL_Reg future_meta[] = {
  {"__tostring", l_future_tostring},
  {NULL, NULL},
};

static const loom_class future_class = {
  FUTURE_MT, future_meta, future_methods, NULL, NULL, NULL, 0};

static const luaL_Reg future_funcs[] = {
  {"future", l_future},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_future(lua_State *L) {
  loom__class_register(L, 0, &future_class, 1, 1);
  lua_pop(L, 1);
  loom__setfuncs(L, 1, future_funcs);
  return 0;
}
