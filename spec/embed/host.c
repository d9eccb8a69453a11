/*
 * host.c: a C host that embeds Lua 5.4 and loom, for spec/embed_spec.lua.
 * It runs one independent Lua state per thread, each driving its own loom
 * runtime at the same time: tasks, timers, cancellation, a channel and a
 * TCP echo on loopback. loom keeps no mutable C globals, so the states must
 * not interfere. Usage: host <nthreads> <lua_path> <lua_cpath>
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static const char *lua_path, *lua_cpath;

static const char script[] =
  "local id = ...\n"
  "local loom = require('loom')\n"
  "return loom.run(function()\n"
  "  local sum = 0\n"
  "  loom.task_group(function(tg)\n"
  "    for i = 1, 200 do\n"
  "      tg:start_soon(function() loom.sleep(0.001 * (i % 7)); sum = sum + i end)\n"
  "    end\n"
  "    local send, recv = loom.channel(0)\n"
  "    tg:start_soon(function()\n"
  "      for i = 1, 100 do send:send(i) end\n"
  "      send:close()\n"
  "    end)\n"
  "    tg:start_soon(function() for v in recv do sum = sum + v end end)\n"
  "    local port = tg:start(function(ts)\n"
  "      local l = loom.create_tcp_listener{local_host = '127.0.0.1'}\n"
  "      ts:started(select(2, l:local_address()))\n"
  "      l:serve(function(s) s:send(s:receive()) end)\n"
  "    end)\n"
  "    local c <close> = loom.connect_tcp('127.0.0.1', port)\n"
  "    c:send('state ' .. id)\n"
  "    assert(c:receive() == 'state ' .. id)\n"
  "    local s = loom.move_on_after(0.01, loom.sleep_forever)\n"
  "    assert(s.cancelled_caught)\n"
  "    tg:cancel()\n"
  "  end)\n"
  "  return sum\n"
  "end)\n";

static void *run_state(void *arg) {
  long id = (long)arg;
  lua_State *L = luaL_newstate();
  long ok = 0;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, lua_path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, lua_cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  if (luaL_loadstring(L, script) != LUA_OK) {
    fprintf(stderr, "state %ld: %s\n", id, lua_tostring(L, -1));
  } else {
    lua_pushinteger(L, id);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
      fprintf(stderr, "state %ld: %s\n", id, luaL_tolstring(L, -1, NULL));
    else if (lua_tointeger(L, -1) == 20100 + 5050)
      ok = 1;
    else
      fprintf(stderr, "state %ld: wrong sum %lld\n", id,
              (long long)lua_tointeger(L, -1));
  }
  lua_close(L);  /* loom's runtime is finalised here: nothing may leak */
  return (void *)ok;
}

int main(int argc, char **argv) {
  int n, i, good = 0;
  pthread_t th[16];
  if (argc != 4) return 2;
  n = atoi(argv[1]);
  if (n < 1 || n > 16) return 2;
  lua_path = argv[2];
  lua_cpath = argv[3];
  for (i = 0; i < n; i++)
    pthread_create(&th[i], NULL, run_state, (void *)(long)i);
  for (i = 0; i < n; i++) {
    void *r;
    pthread_join(th[i], &r);
    good += r != NULL;
  }
  printf("%d of %d states ok\n", good, n);
  return good == n ? 0 : 1;
}
