/*
 * loom.h: the public C API of loom, for hosts that embed Lua 5.4.
 *
 * A host loads the module like any other: luaL_requiref(L, "loom.core",
 * luaopen_loom_core, 0), or package.cpath. One runtime exists per Lua state;
 * it is created on the first require and freed by lua_close().
 */
#ifndef LOOM_H
#define LOOM_H

#include <lua.h>

#define LOOM_VERSION "0.1.0"

#if defined(__GNUC__)
#define LOOM_API __attribute__((visibility("default")))
#else
#define LOOM_API
#endif

LOOM_API int luaopen_loom_core(lua_State *L);

#endif
