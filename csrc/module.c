/*
 * module.c: luaopen_loom_core. Gets the one runtime of this Lua state
 * (runtime.c makes it on first use; loom_open may make it earlier) and
 * registers every file's functions with the runtime as upvalue 1.
 */
#include "loom_internal.h"

LOOM_API int luaopen_loom_core(lua_State *L) {
  lua_settop(L, 0);
  lua_newtable(L); /* placeholder for the runtime at index 1 */
  lua_newtable(L); /* the module */
  loom__push_rt(L);
  lua_replace(L, 1);
  loom__open_runtime(L);
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
  lua_pushliteral(L, LOOM_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
