/*
 * uv_host.c: a host that runs its own libuv loop (the shape of Luvit or
 * Neovim) and lends it to loom. The host never calls loom_step: loom puts
 * a prepare/check pair and its timer on the borrowed loop, so the host's
 * uv_run drives loom's tasks. The host has a timer of its own, feeds its
 * ticks to a loom task through a channel, and a worker thread resolves a
 * loom.future through loom_remote_post (which wakes the host's loop). At
 * the end loom_close takes every loom handle off the loop, and the host's
 * uv_loop_close succeeds.
 *
 * Build: cc uv_host.c $(pkg-config --cflags --libs loom lua5.4) -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include <loom.h>

static const char script[] =
  "local loom = require 'loom'\n"
  "local send, recv = loom.channel(8)\n"
  "local jobs = loom.host_group('jobs')\n"
  "local host = {}\n"
  "-- Called by the host's own timer callback (host code, not a task).\n"
  "function host.on_tick(n)\n"
  "  send:send_nowait(n)\n"
  "  if n == 3 then send:close() end\n"
  "end\n"
  "jobs:start_soon(function()\n"
  "  for n in recv do\n"
  "    print(('task: host tick %d'):format(n))\n"
  "  end\n"
  "  local f = loom.future()\n"
  "  host.start_worker(f, 20)\n"
  "  print('task: waiting for the worker thread')\n"
  "  print('task: the worker says fib(20) = ' .. f:wait())\n"
  "  loom.sleep(0.01)\n"
  "  print('task: done')\n"
  "end)\n"
  "host.jobs = jobs\n"
  "return host\n";

typedef struct worker {
  loom_remote *remote;
  pthread_t thread;
  int future_ref;
  long n, result;
} worker;

static lua_State *L;
static int host_ref;
static worker job;
static uv_timer_t host_timer;
static int ticks;

static void check(int status, const char *what) {
  if (status != LOOM_OK && status != 0) {
    fprintf(stderr, "uv_host: %s failed (%d): %s\n", what, status,
            lua_gettop(L) > 0 ? lua_tostring(L, -1) : "");
    exit(1);
  }
}

/* Owner thread, inside loom's step (run by the check handle). */
static void resolve(lua_State *S, void *ud) {
  worker *w = (worker *)ud;
  lua_rawgeti(S, LUA_REGISTRYINDEX, w->future_ref);
  luaL_unref(S, LUA_REGISTRYINDEX, w->future_ref);
  lua_getfield(S, -1, "set");
  lua_insert(S, -2);
  lua_pushinteger(S, (lua_Integer)w->result);
  lua_call(S, 2, 0);
}

static long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

static void *worker_main(void *arg) {
  worker *w = (worker *)arg;
  w->result = fib(w->n);
  check(loom_remote_post(w->remote, resolve, w), "loom_remote_post");
  loom_remote_release(w->remote);
  return NULL;
}

/* host.start_worker(future, n) */
static int l_start_worker(lua_State *S) {
  luaL_checkudata(S, 1, "loom.Future");
  job.n = (long)luaL_checkinteger(S, 2);
  lua_pushvalue(S, 1);
  job.future_ref = luaL_ref(S, LUA_REGISTRYINDEX);
  job.remote = loom_remote_open(S);
  if (job.remote == NULL) return luaL_error(S, "cannot open a remote");
  pthread_create(&job.thread, NULL, worker_main, &job);
  return 0;
}

/* The host's own timer: three ticks, 20 ms apart, handed to Lua. */
static void host_tick_cb(uv_timer_t *t) {
  int top = lua_gettop(L);
  ticks++;
  printf("host: tick %d\n", ticks);
  lua_rawgeti(L, LUA_REGISTRYINDEX, host_ref);
  lua_getfield(L, -1, "on_tick");
  lua_pushinteger(L, ticks);
  check(lua_pcall(L, 1, 0, 0), "on_tick");
  lua_settop(L, top);
  if (ticks == 3) uv_close((uv_handle_t *)t, NULL);
}

int main(void) {
  uv_loop_t loop;
  loom_config cfg;
  int rc;
  setvbuf(stdout, NULL, _IOLBF, 0);
  check(uv_loop_init(&loop), "uv_loop_init");
  L = luaL_newstate();
  luaL_openlibs(L);
  check(loom_preload(L), "loom_preload");
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.uv_loop = &loop;  /* borrowed: loom never runs or closes it */
  check(loom_open(L, &cfg), "loom_open");
  check(luaL_loadbuffer(L, script, sizeof script - 1, "=uv_host"),
        "loading the script");
  check(lua_pcall(L, 0, 1, 0), "running the script");
  lua_pushcfunction(L, l_start_worker);
  lua_setfield(L, -2, "start_worker");
  host_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  uv_timer_init(&loop, &host_timer);
  uv_timer_start(&host_timer, host_tick_cb, 20, 20);

  /* The host's loop: returns once nothing is left to do, the host's timer
   * closed, loom's tasks finished and the worker's remote released. */
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(job.thread, NULL);

  lua_rawgeti(L, LUA_REGISTRYINDEX, host_ref);
  lua_getfield(L, -1, "jobs");
  lua_getfield(L, -1, "alive");
  lua_insert(L, -2);
  check(lua_pcall(L, 1, 1, 0), "jobs:alive()");
  printf("host: uv_run returned, %d loom tasks alive\n",
         (int)lua_tointeger(L, -1));
  lua_settop(L, 0);

  check(loom_close(L, 0), "loom_close");
  rc = uv_loop_close(&loop);
  printf("host: uv_loop_close after loom_close: %s\n",
         rc == 0 ? "ok" : uv_strerror(rc));
  lua_close(L);
  return rc == 0 ? 0 : 1;
}
