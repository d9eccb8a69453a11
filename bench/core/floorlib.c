/*
 * floorlib.c: the two C pieces the bare-Lua floors (bench/core/floors.lua)
 * cannot write in Lua. Built by bench/core/floors.sh into
 * bench/out/floorlib.so. For benchmarks only.
 *
 *   floorlib.handle()        a full userdata of 16 bytes with one user value,
 *                            the smallest object a runtime can hand out as a
 *                            task handle (a pointer + a generation) or an
 *                            event; its metatable's __index has `set` (a C
 *                            function doing nothing) and `wait` (yields the
 *                            handle), the calls of the W3 script.
 *   floorlib.callk(f, ...)   calls f(...) through lua_callk from a C
 *                            function, so a coroutine that yields inside f is
 *                            parked under a C frame (as a task whose body is
 *                            called by a C task_main); returns f's results.
 *   floorlib.drive(co, m)    resumes the coroutine co m times from C
 *                            (lua_resume, results dropped), as a scheduler
 *                            written in C does: the switch floor without
 *                            coroutine.resume's own call.
 *   floorlib.spawn_run(runner, fn, n, handles)
 *                            the W1 floor with the scheduler in C: n tasks
 *                            of fn queued (a FIFO: an array slot each, holding
 *                            fn, or with handles a 16-byte userdata handle
 *                            holding fn in its user value), then run in order
 *                            on one pooled coroutine running runner (which
 *                            calls each function it is resumed with and
 *                            yields after it), each slot cleared after.
 *   floorlib.spawn_yield_run(body, n, handles)
 *                            the W2 floor in C: n tasks spawned (a FIFO
 *                            slot each, with handles a 16-byte userdata per
 *                            task as well), then a FIFO scheduler: each task
 *                            gets its own coroutine running body (all n are
 *                            suspended at once, so none can come from a
 *                            pool) and is resumed; a task that yields goes
 *                            to the back of the FIFO, one that ends is
 *                            dropped. Returns the number of resumes.
 *   floorlib.timers(body, delays, fresh)
 *                            the W4 floor with the scheduler in C: for each
 *                            delay d (ms) of the array, a coroutine running
 *                            body(d) is created and resumed until it yields
 *                            (parks), and a libuv timer of d ms is started
 *                            for it (from the loop's cached time, or from a
 *                            fresh clock read when fresh is true); each timer
 *                            resumes its coroutine to its end and unanchors
 *                            it. Returns the seconds to park all, and the
 *                            total seconds until the last has finished.
 */
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

static int l_floor_handle(lua_State *L) {
  lua_newuserdatauv(L, 16, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return 1;
}

static int l_floor_set(lua_State *L) {
  (void)L;
  return 0;
}

static int l_floor_wait(lua_State *L) {
  lua_settop(L, 1);
  return lua_yield(L, 1);
}

/* Continuation of callk: f's results are on the stack above index 1. */
static int callk_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 1;
}

static int l_floor_callk(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_insert(L, 2);
  lua_callk(L, n - 1, LUA_MULTRET, 0, callk_k);
  return callk_k(L, LUA_OK, 0);
}

static int l_floor_drive(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  lua_Integer m = luaL_checkinteger(L, 2), i;
  luaL_argcheck(L, co != NULL, 1, "coroutine expected");
  for (i = 0; i < m; i++) {
    int nres, st = lua_resume(co, L, 0, &nres);
    if (st != LUA_YIELD) return luaL_error(L, "drive: coroutine did not yield");
    lua_pop(co, nres);
  }
  return 0;
}

static int l_floor_spawn_run(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 3), i;
  int handles = lua_toboolean(L, 4), nres;
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 4);
  lua_createtable(L, (int)n, 0); /* 5: the FIFO */
  co = lua_newthread(L);         /* 6: the pooled coroutine */
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  for (i = 1; i <= n; i++) { /* spawn */
    if (handles) {
      lua_newuserdatauv(L, 16, 1);
      lua_pushvalue(L, 2);
      lua_setiuservalue(L, -2, 1);
    } else {
      lua_pushvalue(L, 2);
    }
    lua_rawseti(L, 5, i);
  }
  for (i = 1; i <= n; i++) { /* run */
    lua_rawgeti(L, 5, i);
    if (handles) lua_getiuservalue(L, -1, 1);
    lua_xmove(L, co, 1);
    if (lua_resume(co, L, 1, &nres) != LUA_YIELD)
      return luaL_error(L, "spawn_run: the runner did not yield");
    lua_pop(co, nres);
    lua_settop(L, 6);
    lua_pushnil(L);
    lua_rawseti(L, 5, i);
  }
  return 0;
}

static int l_floor_spawn_yield_run(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 2), head = 1, tail = 0, resumes = 0;
  int handles = lua_toboolean(L, 3), nres;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 3);
  lua_createtable(L, (int)n, 0); /* 4: the FIFO: handle or true, then co */
  while (tail < n) { /* spawn */
    if (handles)
      lua_newuserdatauv(L, 16, 1);
    else
      lua_pushboolean(L, 1);
    lua_rawseti(L, 4, ++tail);
  }
  while (head <= tail) {
    lua_State *co;
    int st;
    lua_rawgeti(L, 4, head);
    if (lua_type(L, -1) != LUA_TTHREAD) { /* first run: its coroutine */
      lua_pop(L, 1);
      co = lua_newthread(L);
      lua_pushvalue(L, 1);
      lua_xmove(L, co, 1);
    } else {
      co = lua_tothread(L, -1);
    }
    lua_pushnil(L);
    lua_rawseti(L, 4, head++);
    st = lua_resume(co, L, 0, &nres);
    resumes++;
    if (st == LUA_YIELD) { /* to the back of the FIFO */
      lua_pop(co, nres);
      lua_rawseti(L, 4, ++tail);
    } else if (st == LUA_OK) {
      lua_pop(L, 1); /* dropped */
    } else {
      return luaL_error(L, "spawn_yield_run: task failed");
    }
  }
  lua_pushinteger(L, resumes);
  return 1;
}

typedef struct {
  uv_timer_t timer;
  lua_State *L;  /* the state holding the anchor table at index 4 */
  lua_State *co;
  lua_Integer slot;
} floor_timer;

static long timers_left;

static void floor_timer_cb(uv_timer_t *t) {
  floor_timer *ft = (floor_timer *)t;
  int nres;
  if (lua_resume(ft->co, ft->L, 0, &nres) != LUA_OK) abort();
  lua_pushnil(ft->L);
  lua_rawseti(ft->L, 4, ft->slot); /* unanchored: collectable */
  timers_left--;
}

static int l_floor_timers(lua_State *L) {
  uv_loop_t loop;
  floor_timer *ft;
  lua_Integer n, i;
  int fresh = lua_toboolean(L, 3);
  double t0, t_park, t_end;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  lua_settop(L, 3);
  lua_createtable(L, (int)n, 0); /* 4: the anchor of every live coroutine */
  ft = malloc(sizeof *ft * (size_t)(n > 0 ? n : 1));
  if (ft == NULL || uv_loop_init(&loop) != 0) return luaL_error(L, "no memory");
  t0 = (double)uv_hrtime() / 1e9;
  uv_update_time(&loop); /* delays count from t0 */
  for (i = 0; i < n; i++) {
    int nres;
    lua_State *co = lua_newthread(L);
    lua_rawseti(L, 4, i + 1);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_rawgeti(L, 2, i + 1);
    lua_xmove(L, co, 1);
    if (lua_resume(co, L, 1, &nres) != LUA_YIELD)
      return luaL_error(L, "timers: body did not park");
    lua_pop(co, nres);
    ft[i].L = L;
    ft[i].co = co;
    ft[i].slot = i + 1;
    uv_timer_init(&loop, &ft[i].timer);
    if (fresh) uv_update_time(&loop);
    lua_rawgeti(L, 2, i + 1);
    uv_timer_start(&ft[i].timer, floor_timer_cb,
                   (uint64_t)lua_tointeger(L, -1), 0);
    lua_pop(L, 1);
  }
  t_park = (double)uv_hrtime() / 1e9;
  timers_left = (long)n;
  uv_run(&loop, UV_RUN_DEFAULT); /* one-shot timers: the loop runs dry */
  t_end = (double)uv_hrtime() / 1e9;
  for (i = 0; i < n; i++) uv_close((uv_handle_t *)&ft[i].timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(ft);
  if (timers_left != 0) return luaL_error(L, "timers: not all fired");
  lua_pushnumber(L, t_park - t0);
  lua_pushnumber(L, t_end - t0);
  return 2;
}

int luaopen_floorlib(lua_State *L);
int luaopen_floorlib(lua_State *L) {
  static const luaL_Reg fns[] = {{"callk", l_floor_callk},
                                 {"drive", l_floor_drive},
                                 {"timers", l_floor_timers},
                                 {"spawn_run", l_floor_spawn_run},
                                 {"spawn_yield_run", l_floor_spawn_yield_run},
                                 {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"set", l_floor_set}, {"wait", l_floor_wait}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_createtable(L, 0, 1); /* the handles' metatable */
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcclosure(L, l_floor_handle, 1);
  lua_setfield(L, -2, "handle");
  return 1;
}
