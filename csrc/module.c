/*
 * module.c: luaopen_loom_core. Creates the one runtime of this Lua state
 * (its libuv loop, timer and scheduler state, anchored in the registry and
 * finalised by __gc at lua_close; loom_open may make it earlier) and
 * registers every file's functions with the runtime as upvalue 1.
 */
#include <string.h>

#include "loom_internal.h"

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

static loom_rt *new_runtime(lua_State *L) {
  loom_rt *rt;
  int err;
  if (luaL_newmetatable(L, LOOM_RT_MT)) {
    lua_pushcfunction(L, loom__rt_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  rt = (loom_rt *)lua_newuserdatauv(L, sizeof *rt, 0);
  memset(rt, 0, sizeof *rt);
  rt->hooks_ref = LUA_NOREF;
  rt->task_mt_ref = LUA_NOREF;
  rt->task_main_ref = LUA_NOREF;
  rt->own_dir_ref = LUA_NOREF;
  rt->cancelled_ref = LUA_NOREF;
  rt->issued_ref = LUA_NOREF;
  rt->anchor_ref = LUA_NOREF;
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
  rt->magic = LOOM_MAGIC_RT;  /* from here on __gc finalises it */
  luaL_setmetatable(L, LOOM_RT_MT);
  /* The coroutine pool: every slot allocated now, so that returning a
   * coroutine to it never allocates. */
  lua_createtable(L, LOOM_POOL_MAX, 0);
  rt->pool_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* The anchor table of live tasks (task.c), made now so that the first
   * run takes no registry slot. */
  lua_newtable(L);
  rt->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
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

LOOM_API int luaopen_loom_core(lua_State *L) {
  lua_settop(L, 0);
  lua_newtable(L);  /* placeholder for the runtime at index 1 */
  lua_newtable(L);  /* the module */
  loom__state_rt(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &rt_key);
  lua_replace(L, 1);
  loom__open_sched(L);
  loom__open_scope(L);
  loom__open_task(L);
  loom__open_handle(L);
  loom__open_group(L);
  loom__open_sync(L);
  loom__open_channel(L);
  loom__open_tcp(L);
  loom__open_dns(L);
  loom__open_embed(L);
  loom__open_hostgroup(L);
  loom__open_future(L);
  loom__open_pipe(L);
  loom__open_process(L);
  loom__open_signal(L);
  loom__open_thread(L);
  loom__open_fs(L);
  loom__open_poll(L);
  loom__open_udp(L);
  loom__open_tls(L);
  loom__open_remote(L);
  {
    static const luaL_Reg funcs[] = {{"set_hooks", l_set_hooks}, {NULL, NULL}};
    loom__setfuncs(L, 1, funcs);
  }
  lua_pushliteral(L, LOOM_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
