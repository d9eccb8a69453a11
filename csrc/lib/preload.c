/*
 * preload.c: loom_preload() for libloom. Puts loom.core (the C core linked
 * into the library) and every embedded Lua module of the front into
 * package.preload, so that require "loom" in a host needs no file on disk.
 * Only built into libloom: the Lua module loom/core.so has no front inside.
 */
#include "../loom_internal.h"
#include "preload.h"

/* package.preload loader of an embedded module: upvalue 1 is its index in
 * loom__lua_chunks. require calls it as loader(name, ":preload:"). */
static int l_load_chunk(lua_State *L) {
  const loom_lua_chunk *c =
    &loom__lua_chunks[lua_tointeger(L, lua_upvalueindex(1))];
  if (luaL_loadbufferx(L, (const char *)c->data, c->len, c->chunkname,
                       "t") != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, c->module);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

static int preload_protected(lua_State *L) {
  lua_Integer i;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_loom_core);
  lua_setfield(L, -2, "loom.core");
  for (i = 0; loom__lua_chunks[i].module != NULL; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, l_load_chunk, 1);
    lua_setfield(L, -2, loom__lua_chunks[i].module);
  }
  return 0;
}

LOOM_API int loom_preload(lua_State *L) {
  loom_rt *rt;
  int status;
  if (L == NULL) return LOOM_ERRARG;
  rt = loom__state_rt(L, 0);
  if (rt != NULL && rt->closed) return LOOM_ECLOSED;
  if (!lua_checkstack(L, 2)) return LOOM_ERRMEM;
  lua_pushcfunction(L, preload_protected);
  status = lua_pcall(L, 0, 0, 0);
  if (status == LUA_OK) return LOOM_OK;
  return status == LUA_ERRMEM ? LOOM_ERRMEM : LOOM_ERRRUN;
}
