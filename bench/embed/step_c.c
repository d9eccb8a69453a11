/*
 * step_c.c: loom_step from a C host, with a counting allocator. Measures an
 * idle loom_step (nothing ready or due) and, for 10,000 tasks each doing
 * loom.next_frame() in a loop, the time per frame and the number of
 * allocations (and bytes) loom_step makes per frame in steady state.
 * Usage: step_c <lua_path> [npcs] [frames]; prints markdown table rows.
 * Built and run by `make bench-embed` against build/loom/core.so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "loom.h"

typedef struct counting {
  size_t bytes;
  long allocs;
} counting;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counting *c = (counting *)ud;
  size_t old = ptr ? osize : 0;
  void *p;
  if (nsize == 0) {
    free(ptr);
    c->bytes -= old;
    return NULL;
  }
  p = realloc(ptr, nsize);
  if (p != NULL) {
    c->bytes = c->bytes - old + nsize;
    if (nsize > old) c->allocs++;
  }
  return p;
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

int main(int argc, char **argv) {
  counting c = {0, 0};
  lua_State *L = lua_newstate(count_alloc, &c);
  int npcs = argc > 2 ? atoi(argv[2]) : 10000;
  int frames = argc > 3 ? atoi(argv[3]) : 600;
  int i, n = 1000000;
  double t0, idle, per_frame;
  long allocs0;
  size_t bytes0;
  char code[512];
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, argc > 1 ? argv[1] : "./lua/?.lua;./lua/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  luaL_requiref(L, "loom.core", luaopen_loom_core, 0);
  lua_pop(L, 1);
  run(L, "loom = require 'loom'\n"
         "idle = loom.host_group('idle')\n"
         "idle:start_soon(function() loom.sleep(3600) end)\n");
  loom_step(L, 0, 0, NULL);
  t0 = cpu_now();
  for (i = 0; i < n; i++) loom_step(L, 0, 0, NULL);
  idle = (cpu_now() - t0) / n;
  run(L, "idle:close()");
  snprintf(code, sizeof code,
           "hg = loom.host_group('npcs')\n"
           "for _ = 1, %d do hg:start_soon(function()\n"
           "  local next_frame = loom.next_frame\n"
           "  while true do next_frame() end\n"
           "end) end\n", npcs);
  run(L, code);
  for (i = 0; i < 10; i++) loom_step(L, 0, 0, NULL);
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCSTOP);
  allocs0 = c.allocs;
  bytes0 = c.bytes;
  t0 = cpu_now();
  for (i = 0; i < frames; i++) loom_step(L, 0, 0, NULL);
  per_frame = (cpu_now() - t0) / frames;
  printf("| idle `loom_step()` from C | %.0f ns per call | ≤ 1 µs |\n",
         idle * 1e9);
  printf("| %d NPC tasks driven by `loom_step()` from C, per frame | %.1f µs "
         "| |\n", npcs, per_frame * 1e6);
  printf("| allocations by `loom_step` per frame in steady state (counting "
         "allocator, %d frames) | %.2f (%.0f bytes) | 0 |\n", frames,
         (double)(c.allocs - allocs0) / frames,
         ((double)c.bytes - (double)bytes0) / frames);
  lua_gc(L, LUA_GCRESTART);
  loom_close(L, 0);
  lua_close(L);
  return 0;
}
