/*
 * compat.h: differences between the Lua 5.4 releases loom builds against.
 * Lua 5.4.4 (Debian 12) lacks lua_closethread, added in 5.4.6.
 */
#ifndef LOOM_COMPAT_H
#define LOOM_COMPAT_H

#include <lua.h>

#if LUA_VERSION_NUM != 504
#error "loom needs Lua 5.4"
#endif

#if LUA_VERSION_RELEASE_NUM >= 50406
#define loom_closethread(L, from) lua_closethread((L), (from))
#else
#define loom_closethread(L, from) ((void)(from), lua_resetthread(L))
#endif

#endif
