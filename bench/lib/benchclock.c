/* benchclock: a monotonic wall clock for the Lua bench scripts (Lua 5.4 has
 * only os.clock, which is CPU time). Built by bench/setup.sh into bench/out/. */
#include <time.h>
#include <lua.h>
#include <lauxlib.h>

static int bc_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

int luaopen_benchclock(lua_State *L);
int luaopen_benchclock(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, bc_now);
  lua_setfield(L, -2, "now");
  return 1;
}
