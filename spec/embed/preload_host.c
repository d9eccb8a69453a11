/*
 * preload_host.c: a C host built against an installed libloom with
 * `cc preload_host.c $(pkg-config --cflags --libs loom lua5.4)`, run with
 * no Lua file on disk (spec/libloom_spec.lua). argv[1..] are the module
 * names the front has on disk in the source tree: each must be preloaded.
 * Prints one line per check; exits 0 when all passed.
 */
#include <stdio.h>

#include <lauxlib.h>
#include <lualib.h>

#include <loom.h>

/* Runs as chunk "=host": positions in messages read "host:N:". */
static const char script[] =
  "local names = ...\n"                                              /* 1 */
  "for _, n in ipairs(names) do\n"                                   /* 2 */
  "  assert(type(package.preload[n]) == 'function', n)\n"            /* 3 */
  "  assert(require(n) ~= nil, n)\n"                                 /* 4 */
  "end\n"                                                            /* 5 */
  "print('preloaded ' .. #names .. ' modules and loom.core')\n"      /* 6 */
  "local loom = require 'loom'\n"                                    /* 7 */
  "assert(package.loaded['loom.core'] ~= nil)\n"                     /* 8 */
  "print('version ' .. loom.version)\n"                              /* 9 */
  "local where\n"                                                    /* 10 */
  "loom.run(function()\n"                                            /* 11 */
  "  loom.task_group(function(tg)\n"                                 /* 12 */
  "    local host = tg:start_soon(function()\n"                      /* 13 */
  "      loom.task_group(function(inner)\n"                          /* 14 */
  "        inner:start_soon(loom.sleep_forever) end)\n"              /* 15 */
  "    end)\n"                                                       /* 16 */
  "    loom.wait_all_tasks_blocked()\n"                              /* 17 */
  "    local function find(node)\n"                                  /* 18 */
  "      if node.handle == host then return node end\n"              /* 19 */
  "      for _, g in ipairs(node.groups) do\n"                       /* 20 */
  "        for _, c in ipairs(g.children) do\n"                      /* 21 */
  "          local hit = find(c) if hit then return hit end\n"       /* 22 */
  "        end\n"                                                    /* 23 */
  "      end\n"                                                      /* 24 */
  "    end\n"                                                        /* 25 */
  "    where = find(loom.task_tree().root).where\n"                  /* 26 */
  "    tg:cancel()\n"                                                /* 27 */
  "  end)\n"                                                         /* 28 */
  "end)\n"                                                           /* 29 */
  "print('task_tree where ' .. tostring(where))\n"                   /* 30 */
  "local ok, err = pcall(loom.run, function()\n"                     /* 31 */
  "  loom.task_group(function(tg)\n"                                 /* 32 */
  "    tg:start_soon(function() error('first') end)\n"               /* 33 */
  "  end)\n"                                                         /* 34 */
  "end)\n"                                                           /* 35 */
  "assert(not ok)\n"                                                 /* 36 */
  "print('error ' .. tostring(err.errors[1]))\n"                     /* 37 */
  "local tb = err.tracebacks[1]\n"                                   /* 38 */
  "print('traceback from host:33 ' .. tostring(tb:find('host:33: in', 1, "
  "true) ~= nil))\n";                                                /* 39 */

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int i, status;
  luaL_openlibs(L);
  status = loom_preload(L);
  if (status != LOOM_OK) {
    fprintf(stderr, "loom_preload: %d\n", status);
    return 1;
  }
  if (luaL_loadbuffer(L, script, sizeof script - 1, "=host") != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_createtable(L, argc, 0);
  for (i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", luaL_tolstring(L, -1, NULL));
    return 1;
  }
  lua_close(L);
  return 0;
}
