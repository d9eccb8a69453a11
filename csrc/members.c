/*
 * members.c: the names objects and option tables accept. An object's
 * __index that finds no method or field for a key calls loom__no_member,
 * which raises "loom.TaskGroup has no method 'start_son' (did you mean
 * 'start_soon'?)" instead of returning nil (the suggestion is computed by
 * the no_member hook of errors.lua, which knows every class's names).
 * loom__check_options rejects unknown keys in an option table, so that a
 * misspelt option is an argument error rather than silently ignored.
 */
#include <string.h>

#include "loom_internal.h"

int loom__no_member(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  /* Only string keys name members; rt is NULL outside loom's closures. */
  if (lua_type(L, 2) != LUA_TSTRING || rt == NULL ||
      rt->magic != LOOM_MAGIC_RT || rt->hooks_ref == LUA_NOREF) {
    lua_pushnil(L);
    return 1;
  }
  loom__push_hook(L, rt, "no_member");
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pushnil(L);
    return 1;
  }
  /* Blame the function that indexed the object, or when that is one of
   * loom's own Lua wrappers, the user's line that called it. */
  return loom__errorf(L, "%s", lua_tostring(L, -1));
}

void loom__check_options(lua_State *L, int idx, const char *const names[]) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int i, known = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (i = 0; names[i] != NULL && !known; i++)
        known = strcmp(k, names[i]) == 0;
    }
    if (!known) {
      luaL_argerror(
        L, idx,
        lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL)));
    }
  }
}
