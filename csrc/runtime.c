/*
 * runtime.c: the runtime struct's home. Builds the one runtime of a Lua
 * state (its libuv loop and timer, the coroutine pool, the anchor and
 * error-queue tables; anchored in the registry, finalised by __gc at
 * lua_close), fills its hooks (core.set_hooks), hands it to every C
 * function as upvalue 1 (loom__setfuncs, loom__rt) and frees it: loom_close
 * (embed.c) and the runtime's __gc settle the tasks, close the runtime's
 * handles and loop, empty the coroutine pool and free the deadline heap.
 * The scheduler that runs on it is sched.c.
 */
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

/* ---- building and filling ---------------------------------------------- */

static const char rt_key = 'r';

/* core.set_hooks(t): error constructors and class tables from errors.lua. */
static int l_set_hooks(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  if (rt->hooks_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->hooks_ref);
  rt->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->hooks_ref);
  lua_getfield(L, -1, "Cancelled");
  if (rt->cancelled_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->cancelled_ref);
  /* (its address: the registry keeps it alive as long as the ref) */
  rt->cancelled_class = lua_istable(L, -1) ? lua_topointer(L, -1) : NULL;
  rt->cancelled_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 1, "issued");
  if (rt->issued_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->issued_ref);
  rt->issued_ref = lua_istable(L, -1) ? luaL_ref(L, LUA_REGISTRYINDEX)
                                      : (lua_pop(L, 1), LUA_NOREF);
  if (lua_getfield(L, -1, "own_dir") == LUA_TSTRING) {
    if (rt->own_dir_ref != LUA_NOREF)
      luaL_unref(L, LUA_REGISTRYINDEX, rt->own_dir_ref);
    rt->own_dir_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

static const luaL_Reg rt_meta[] = {
  {"__gc", loom__rt_gc},
  {NULL, NULL},
};

/* The runtime's class: a finaliser and the default __tostring. */
static const loom_class rt_class = {LOOM_RT_MT, rt_meta, NULL, NULL,
                                    NULL,       NULL,    0};

static loom_rt *new_runtime(lua_State *L) {
  loom_rt *rt;
  int err, i;
  loom__class_register(L, 0, &rt_class, 0, 0);
  lua_pop(L, 1);
  rt = (loom_rt *)lua_newuserdatauv(L, sizeof *rt, 0);
  memset(rt, 0, sizeof *rt);
  rt->hooks_ref = LUA_NOREF;
  rt->task_mt_ref = LUA_NOREF;
  rt->aux_ref = LUA_NOREF;
  rt->task_main_ref = LUA_NOREF;
  rt->own_dir_ref = LUA_NOREF;
  rt->cancelled_ref = LUA_NOREF;
  rt->issued_ref = LUA_NOREF;
  rt->anchor_ref = LUA_NOREF;
  rt->spawners_ref = LUA_NOREF;
  rt->pool_ref = LUA_NOREF;
  rt->clock_ref = rt->on_error_ref = rt->errq_ref = rt->eg_ref = LUA_NOREF;
  loom__list_init(&rt->blocked_waiters);
  loom__list_init(&rt->all_tasks);
  loom__list_init(&rt->abandoned);
  loom__list_init(&rt->host_groups);
  loom__waitq_init(&rt->frame_waiters);
  rt->loop = &rt->own_loop;
  err = uv_loop_init(rt->loop);
  if (err != 0)
    luaL_error(L, "loom: cannot create the libuv loop: %s", uv_strerror(err));
  uv_timer_init(rt->loop, &rt->timer);
  uv_unref((uv_handle_t *)&rt->timer);
  rt->timer.data = rt;
  rt->magic = LOOM_MAGIC_RT; /* from here on __gc finalises it */
  luaL_setmetatable(L, LOOM_RT_MT);
  /* The pool table (task.c, "the coroutines"): every home allocated now,
   * so that adopting a coroutine never allocates. */
  lua_createtable(L, LOOM_POOL_MAX, 0);
  for (i = 0; i < LOOM_POOL_MAX; i++) rt->home_free[i] = LOOM_POOL_MAX - i;
  rt->home_nfree = LOOM_POOL_MAX;
  rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The anchor table of live tasks (task.c), made now so that the first
   * run takes no registry slot. */
  lua_newtable(L);
  rt->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The closures that hold it (loom__register_spawner): weak keys, so that
   * those of a module loaded again and dropped can go. */
  loom__new_weak_keys(L);
  rt->spawners_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The queue of errors for the error hook (embed.c): made now too, so
   * that the first unhandled error takes no registry slot. */
  lua_newtable(L);
  rt->errq_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return rt;
}

loom_rt *loom__state_rt(lua_State *L, int create) {
  loom_rt *rt;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  rt = (loom_rt *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (rt == NULL && create) {
    rt = new_runtime(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &rt_key);
  }
  return rt;
}

/* [-0, +1] the runtime userdata of L's state, made if it does not exist. */
loom_rt *loom__push_rt(lua_State *L) {
  loom_rt *rt = loom__state_rt(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  return rt;
}

loom_rt *loom__rt(lua_State *L) {
  return (loom_rt *)lua_touserdata(L, lua_upvalueindex(1));
}

void loom__setfuncs(lua_State *L, int rt_idx, const luaL_Reg *funcs) {
  for (; funcs->name != NULL; funcs++) {
    lua_pushvalue(L, rt_idx);
    lua_pushcclosure(L, funcs->func, 1);
    lua_setfield(L, -2, funcs->name);
  }
}

void loom__new_weak_keys(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

void loom__push_hook(lua_State *L, loom_rt *rt, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->hooks_ref);
  if (lua_type(L, -1) != LUA_TTABLE)
    luaL_error(L, "loom.core: hooks not installed (require 'loom')");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* Is a task, a step or loom.run under way (the runtime cannot close)? */
int loom__rt_busy(loom_rt *rt) {
  return rt->current != NULL || rt->stepping || rt->running;
}

/* ---- teardown ----------------------------------------------------------- */

static void count_close_cb(uv_handle_t *h) {
  loom_rt *rt = (loom_rt *)h->data;
  rt->closing_handles--;
}

static void close_own(loom_rt *rt, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = rt;
  rt->closing_handles++;
  uv_close(h, count_close_cb);
}

/* Close loom's own handles on the current loop and wait for their close
 * callbacks (NOWAIT passes: a borrowed loop is never run otherwise). */
void loom__rt_close_handles(loom_rt *rt) {
  close_own(rt, (uv_handle_t *)&rt->timer);
  /* The child reaper and the Ctrl-C watcher, once process.c or signal.c
   * started them. */
  if (rt->sigchld.type == UV_SIGNAL) close_own(rt, (uv_handle_t *)&rt->sigchld);
  if (rt->sigint.type == UV_SIGNAL) close_own(rt, (uv_handle_t *)&rt->sigint);
  if (rt->borrowed) {
    close_own(rt, (uv_handle_t *)&rt->prepare);
    close_own(rt, (uv_handle_t *)&rt->check);
  }
  while (rt->closing_handles > 0) uv_run(rt->loop, UV_RUN_NOWAIT);
}

static void close_walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Cancel every host group, run passes until every task finished (at most
 * grace seconds), report what failed. */
static int close_protected(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  double grace = lua_tonumber(L, 2);
  loom__host_groups_close(L, rt);
  rt->stepping = 1;
  loom__settle(L, rt, NULL, &rt->live_tasks, grace);
  rt->stepping = 0;
  loom__deliver_errors(L, rt, 0);
  return 0;
}

/* Run the posts already queued on remote mailboxes, refuse later ones. */
static int remote_close_protected(lua_State *L) {
  loom__remote_close((loom_rt *)lua_touserdata(L, 1), L);
  return 0;
}

/* Free what the runtime holds: its handles (every handle of its own loop,
 * only its own ones on a borrowed loop), pooled coroutines, the heap. */
static void rt_shutdown(lua_State *L, loom_rt *rt) {
  if (rt->closed) return;
  rt->stepping = 0;
  if (rt->borrowed) {
    loom__rt_close_handles(rt);
  } else {
    /* Handles still open (their owners' __gc already ran, or they were
     * left open): close them all so that the loop can be closed. */
    uv_walk(rt->loop, close_walk_cb, NULL);
    uv_run(rt->loop, UV_RUN_DEFAULT);
  }
  rt->closed = 1;
  uv_loop_close(&rt->own_loop);
  /* Pooled coroutines: let go (allocates nothing), collected later. */
  if (lua_checkstack(L, 2)) loom__pool_empty(L, rt);
  /* Tasks that outlived the grace stay parked for good: a later cancel
   * must find their timers out of the (freed) heap. */
  loom__heap_free(rt);
  rt->pool_len = 0;
  loom__ready_drop(rt);
  rt->closed_time = loom__time(rt);
}

/* [-0, +0] the end of loom_close: the mailboxes are closed (even when the
 * settling failed), then everything is freed. Returns the first failure's
 * pcall status, its error left on the stack. */
static int finish_close(lua_State *L, loom_rt *rt, int status) {
  int s;
  rt->stepping = 0;
  lua_pushcfunction(L, remote_close_protected);
  lua_pushlightuserdata(L, rt);
  s = lua_pcall(L, 1, 0, 0);
  if (s != LUA_OK) {
    if (status == LUA_OK) status = s;
    else lua_pop(L, 1);
  }
  rt_shutdown(L, rt);
  return status;
}

/* [-0, +0] settle and free the runtime (not busy): the passes of
 * close_protected (at most grace seconds) under lua_pcall, then
 * finish_close. Returns the first failure's pcall status, its error on
 * the stack. */
int loom__rt_close(lua_State *L, loom_rt *rt, double grace) {
  int status = LUA_OK;
  if (!loom__rt_busy(rt)) {
    lua_pushcfunction(L, close_protected);
    lua_pushlightuserdata(L, rt);
    lua_pushnumber(L, grace);
    status = lua_pcall(L, 2, 0, 0);
  }
  return finish_close(L, rt, status);
}

int loom__rt_gc(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  int final = lua_isnone(L, 2);
  if (rt == NULL || rt->magic != LOOM_MAGIC_RT) return 0;
  if (rt->closed) {
    /* A deadline set after loom_close (on a scope that outlived it) may
     * have made a new heap. */
    loom__heap_free(rt);
    if (final) loom__tasks_free(rt);
    return 0;
  }
  if (loom__rt_close(L, rt, 0) != LUA_OK)
    loom__print_failure(L, "error while closing the runtime");
  /* The task structs go with the runtime's own finaliser, the last of
   * loom's objects: finalisers that run before it (a scope's) may still
   * walk the tasks parked for good. */
  if (final) loom__tasks_free(rt);
  return 0;
}

static const luaL_Reg runtime_funcs[] = {
  {"set_hooks", l_set_hooks},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_runtime(lua_State *L) {
  loom__setfuncs(L, 1, runtime_funcs);
  return 0;
}
