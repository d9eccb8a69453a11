/*
 * thread_close.c: a C host for spec/thread_close_spec.lua. It closes Lua
 * states (lua_close) while their loom worker threads still run, then keeps
 * the process alive while those workers finish, so that memory checkers see
 * a worker touching nothing of the closed state. Usage:
 *   thread_close <lua_path> <lua_cpath> <report_file>
 * Prints one line per scenario and "all closed" at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

static const char *lua_path, *lua_cpath;

/* A worker still running its call (abandoned) when the state closes; no
 * grace: it is detached at once. */
static const char busy[] =
  "local loom = require('loom')\n"
  "local core = require('loom.core')\n"
  "core.thread_configure{close_grace = 0}\n"
  "loom.run(function()\n"
  "  loom.task_group(function(tg)\n"
  "    tg:start_soon(loom.to_thread_with, {abandon_on_cancel = true},\n"
  "      'thread_work.spin', 0.3)\n"
  "    repeat loom.sleep(0.001) until core.thread_stats().calls_in_flight == 1\n"
  "    tg:cancel()\n"
  "  end)\n"
  "end)\n"
  "return 'busy worker left running'\n";

/* A worker blocked in run_sync whose request nobody will serve: the close
 * answers it; the worker writes what it got to the report file and ends
 * within lua_close's grace period (joined). */
static const char blocked[] =
  "local report = ...\n"
  "local loom = require('loom')\n"
  "local core = require('loom.core')\n"
  "loom.run(function()\n"
  "  loom.task_group(function(tg)\n"
  "    tg:start_soon(loom.to_thread_with, {abandon_on_cancel = true},\n"
  "      function(path)\n"
  "        local l = require('loom')\n"
  "        require('thread_work').spin(0.1)\n"
  "        local ok, e = pcall(l.thread.run_sync, 'thread_work.double', 1)\n"
  "        local f = io.open(path, 'w')\n"
  "        f:write(tostring(ok), ' ', tostring(e))\n"
  "        f:close()\n"
  "      end, report)\n"
  "    repeat loom.sleep(0.001) until core.thread_stats().calls_in_flight == 1\n"
  "    tg:cancel()\n"
  "  end)\n"
  "end)\n"
  "return 'blocked worker left running'\n";

/* Idle workers are joined by lua_close. */
static const char idle[] =
  "local loom = require('loom')\n"
  "return loom.run(function()\n"
  "  loom.task_group(function(tg)\n"
  "    for i = 1, 4 do tg:start_soon(loom.to_thread, 'thread_work.spin',"
  "      0.01) end\n"
  "  end)\n"
  "  local n = require('loom.core').thread_stats().workers\n"
  "  return 'idle workers: ' .. (n > 0 and 'some' or 'none')\n"
  "end)\n";

static void pause_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static int scenario(const char *script, const char *arg, long sleep_before) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, lua_path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, lua_cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  if (luaL_loadstring(L, script) != LUA_OK) goto fail;
  lua_pushstring(L, arg);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) goto fail;
  printf("%s\n", lua_tostring(L, -1));
  fflush(stdout);
  pause_ms(sleep_before);
  lua_close(L);
  return 0;
fail:
  fprintf(stderr, "error: %s\n", lua_tostring(L, -1));
  lua_close(L);
  return 1;
}

int main(int argc, char **argv) {
  char buf[256] = "";
  FILE *f;
  int i;
  if (argc != 4) {
    fprintf(stderr, "usage: thread_close <lua_path> <lua_cpath> <report>\n");
    return 2;
  }
  lua_path = argv[1];
  lua_cpath = argv[2];
  remove(argv[3]);
  if (scenario(busy, "", 0)) return 1;
  if (scenario(blocked, argv[3], 250)) return 1;
  if (scenario(idle, "", 0)) return 1;
  /* The workers of the closed states finish meanwhile (slowly under a
   * memory checker): wait for the blocked one's report, then some more. */
  for (i = 0; i < 200 && buf[0] == '\0'; i++) {
    pause_ms(50);
    f = fopen(argv[3], "r");
    if (f != NULL) {
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      buf[n] = '\0';
      fclose(f);
    }
  }
  pause_ms(500);
  printf("run_sync after close: %s\n", buf);
  printf("all closed\n");
  return 0;
}
