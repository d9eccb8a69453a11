/*
 * class.c: the glue every C class shares, written once. A class is a
 * loom_class description (metatable name, metamethods, methods, optional
 * property getter, the module field its methods table is exported as);
 * loom__class_register builds its metatable from it with luaL_setfuncs.
 * Method look-up is a plain table hit: a class without computed
 * properties gets its methods table as __index, and that table's own
 * metatable raises the "has no method 'x' (did you mean 'y'?)" error for
 * a name it lacks (members.c's hook). A class with properties keeps a C
 * __index that looks in the methods table first (upvalue nup + 1).
 * Also here: the one builder of OSError values from libuv codes, and the
 * one check for "any callable" arguments.
 */
#include <string.h>

#include "loom_internal.h"

/* Default __tostring: "loom.Xxx: 0x...". */
static int l_class_tostring(lua_State *L) {
  const char *name = "loom.object";
  if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING)
    name = lua_tostring(L, -1);
  lua_pushfstring(L, "%s: %p", name, lua_topointer(L, 1));
  return 1;
}

/* __index of a methods table (upvalues: rt, proxy): a name the class lacks.
 * The proxy is a table whose metatable has the class's __name and the
 * methods table as __index, so the no_member hook sees the same members
 * as it would for an object of the class. Keys that are not method names
 * (non-strings, "__xxx") give nil, as a plain table would. */
static int l_class_no_method(lua_State *L) {
  const char *k;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  k = lua_tostring(L, 2);
  if (k[0] == '_' && k[1] == '_') return 0;
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_replace(L, 1);
  return loom__no_member(L);
}

/* Register funcs into the table on top; each closes over the nup values
 * at up..up+nup-1, then (LOOM_CLASS_UP_NAME) its own name. */
static void class_setfuncs(lua_State *L, const luaL_Reg *f, int up, int nup,
                           unsigned flags) {
  int i;
  if (f == NULL) return;
  if (!(flags & LOOM_CLASS_UP_NAME)) {
    for (i = 0; i < nup; i++) lua_pushvalue(L, up + i);
    luaL_setfuncs(L, f, nup);
    return;
  }
  for (; f->name != NULL; f++) {
    for (i = 0; i < nup; i++) lua_pushvalue(L, up + i);
    lua_pushstring(L, f->name);
    lua_pushcclosure(L, f->func, nup + 1);
    lua_setfield(L, -2, f->name);
  }
}

int loom__class_register(lua_State *L, int mod, const loom_class *cls, int up,
                         int nup) {
  int mt;
  mod = mod != 0 ? lua_absindex(L, mod) : 0;
  up = nup > 0 ? lua_absindex(L, up) : 0;
  /* An existing metatable is filled again: a require that failed half-way
   * (out of memory) may be retried in the same state. */
  luaL_newmetatable(L, cls->name);
  mt = lua_gettop(L);
  if (cls->flags & LOOM_CLASS_UP_MT) {
    /* the metatable joins the upvalues: copy the range next to it */
    int i, base = lua_gettop(L);
    for (i = 0; i < nup; i++) lua_pushvalue(L, up + i);
    lua_pushvalue(L, mt);
    up = base + 1;
    nup++;
  }
  lua_pushvalue(L, mt);
  class_setfuncs(L, cls->meta, up, nup, 0);
  lua_pop(L, 1);
  if (lua_getfield(L, mt, "__tostring") == LUA_TNIL) {
    lua_pushcfunction(L, l_class_tostring);
    lua_setfield(L, mt, "__tostring");
  }
  lua_pop(L, 1);
  if (cls->methods != NULL) {
    int methods;
    lua_newtable(L);
    methods = lua_gettop(L);
    class_setfuncs(L, cls->methods, up, nup, cls->flags);
    class_setfuncs(L, cls->more_methods, up, nup, cls->flags);
    if (cls->index != NULL) {
      int i;
      for (i = 0; i < nup; i++) lua_pushvalue(L, up + i);
      lua_pushvalue(L, methods);
      lua_pushcclosure(L, cls->index, nup + 1);
    } else {
      /* methods' metatable: { __index = no_method(rt, proxy) } where
       * proxy = setmetatable({}, { __name = name, __index = methods }) */
      lua_createtable(L, 0, 1);
      if (nup > 0) lua_pushvalue(L, up);
      else lua_pushnil(L);
      lua_newtable(L);
      lua_createtable(L, 0, 2);
      lua_pushstring(L, cls->name);
      lua_setfield(L, -2, "__name");
      lua_pushvalue(L, methods);
      lua_setfield(L, -2, "__index");
      lua_setmetatable(L, -2);
      lua_pushcclosure(L, l_class_no_method, 2);
      lua_setfield(L, -2, "__index");
      lua_setmetatable(L, methods);
      lua_pushvalue(L, methods);
    }
    lua_setfield(L, mt, "__index");
    if (cls->export != NULL && mod != 0) lua_setfield(L, mod, cls->export);
    else lua_pop(L, 1);
  }
  lua_settop(L, mt);
  return mt;
}

void loom__push_oserror(lua_State *L, const char *cls, const char *op, int err,
                        const char *where) {
  loom_rt *rt = loom__rt(L);
  if (cls == NULL)
    cls = (err == UV_EPIPE || err == UV_ECONNRESET) ? "BrokenResourceError"
                                                    : "OSError";
  if (where != NULL && where[0] != '\0')
    lua_pushfstring(L, "%s: %s (%s)", op, uv_strerror(err), where);
  else lua_pushfstring(L, "%s: %s", op, uv_strerror(err));
  if (rt == NULL || rt->magic != LOOM_MAGIC_RT) {
    lua_pushfstring(L, "%s: %s", cls, lua_tostring(L, -1));
    lua_remove(L, -2);
    return;
  }
  loom__push_hook(L, rt, "new_error");
  lua_pushstring(L, cls);
  lua_pushvalue(L, -3);
  lua_pushstring(L, uv_err_name(err));
  lua_call(L, 3, 1);
  lua_remove(L, -2);
}

int loom__raise_oserror(lua_State *L, const char *op, int err,
                        const char *where) {
  loom__push_oserror(L, "OSError", op, err, where);
  return lua_error(L);
}

int loom__raise_uv(lua_State *L, const char *op, int err, const char *where) {
  loom__push_oserror(L, NULL, op, err, where);
  return lua_error(L);
}

int loom__is_callable(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
  if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;
  lua_pop(L, 1);
  return 1;
}

void loom__check_callable(lua_State *L, int idx, const char *fname) {
  if (loom__is_callable(L, idx)) return;
  if (fname == NULL) {
    loom__typeerror(L, idx, "function");
    return;
  }
  loom__errorf(L, "bad argument #%d to '%s' (function expected, got %s)", idx,
               fname, luaL_typename(L, idx));
}
