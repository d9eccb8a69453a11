/*
 * sdl_host.c: loom inside a real engine loop, SDL2. The loop sleeps in
 * SDL_WaitEventTimeout for exactly as long as loom allows
 * (loom_timeout_ms: 0 when tasks are ready, the time to the next deadline,
 * or -1 = until an event), then steps loom with a 2 ms budget. loom's wake
 * hook (called from any thread when a remote post arrives) pushes an SDL
 * user event, so a worker thread's result ends the wait at once.
 *
 * The tasks: a blinking cursor on loom.sleep, a key handler fed with the
 * SDL key events the loop receives, and a job run on a worker thread whose
 * result comes back through loom_remote_post into a loom.future. When they
 * are done the script pushes SDL_QUIT. The test suite runs it with
 * SDL_VIDEODRIVER=dummy; MAX_FRAMES bounds the run.
 *
 * Build: cc sdl_host.c $(pkg-config --cflags --libs loom lua5.4 sdl2) -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL.h>
#include <lauxlib.h>
#include <lualib.h>

#include <loom.h>

#define MAX_FRAMES 2000

static const char script[] =
  "local loom = require 'loom'\n"
  "local game = loom.host_group('game')\n"
  "local key_send, keys = loom.channel(16)\n"
  "local host = {}\n"
  "function host.on_key(name) key_send:send_nowait(name) end\n"
  "game:start_soon(function()\n"
  "  for i = 1, 4 do\n"
  "    loom.sleep(0.02)\n"
  "    print('cursor blink ' .. i)\n"
  "  end\n"
  "  host.press('space')\n"
  "  host.press('return')\n"
  "end)\n"
  "game:start_soon(function()\n"
  "  for name in keys do\n"
  "    print('key pressed: ' .. name)\n"
  "    if name == 'Return' then break end\n"
  "  end\n"
  "  local f = loom.future()\n"
  "  host.start_job(f)\n"
  "  print('job result: ' .. f:wait())\n"
  "end)\n"
  "function host.done() return game:alive() == 0 end\n"
  "return host\n";

static lua_State *L;
static int host_ref;
static Uint32 wake_event;

typedef struct job {
  loom_remote *remote;
  pthread_t thread;
  int future_ref;
  int started;
} job;
static job the_job;

/* cfg.wake: any thread; SDL_PushEvent is thread-safe. */
static void wake(void *ud) {
  SDL_Event ev;
  (void)ud;
  memset(&ev, 0, sizeof ev);
  ev.type = wake_event;
  SDL_PushEvent(&ev);
}

static void resolve(lua_State *S, void *ud) {
  job *j = (job *)ud;
  lua_rawgeti(S, LUA_REGISTRYINDEX, j->future_ref);
  luaL_unref(S, LUA_REGISTRYINDEX, j->future_ref);
  lua_getfield(S, -1, "set");
  lua_insert(S, -2);
  lua_pushliteral(S, "computed on a worker thread");
  lua_call(S, 2, 0);
}

static void *job_main(void *arg) {
  job *j = (job *)arg;
  SDL_Delay(30);  /* the work */
  if (loom_remote_post(j->remote, resolve, j) != LOOM_OK)
    fprintf(stderr, "sdl_host: post refused\n");
  loom_remote_release(j->remote);
  return NULL;
}

/* host.start_job(future) */
static int l_start_job(lua_State *S) {
  luaL_checkudata(S, 1, "loom.Future");
  lua_pushvalue(S, 1);
  the_job.future_ref = luaL_ref(S, LUA_REGISTRYINDEX);
  the_job.remote = loom_remote_open(S);
  if (the_job.remote == NULL) return luaL_error(S, "cannot open a remote");
  pthread_create(&the_job.thread, NULL, job_main, &the_job);
  the_job.started = 1;
  return 0;
}

/* host.press(name): queue a synthetic key press, as if a player typed. */
static int l_press(lua_State *S) {
  const char *name = luaL_checkstring(S, 1);
  SDL_Event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = SDL_KEYDOWN;
  ev.key.keysym.sym = SDL_GetKeyFromName(name);
  if (ev.key.keysym.sym == SDLK_UNKNOWN)
    return luaL_error(S, "unknown key %s", name);
  SDL_PushEvent(&ev);
  return 0;
}

static int call_host(const char *fn, const char *arg) {
  int top = lua_gettop(L), r;
  lua_rawgeti(L, LUA_REGISTRYINDEX, host_ref);
  lua_getfield(L, -1, fn);
  if (arg != NULL) lua_pushstring(L, arg);
  if (lua_pcall(L, arg != NULL, 1, 0) != LUA_OK) {
    fprintf(stderr, "sdl_host: %s: %s\n", fn, lua_tostring(L, -1));
    exit(1);
  }
  r = lua_toboolean(L, -1);
  lua_settop(L, top);
  return r;
}

int main(void) {
  SDL_Window *win;
  loom_config cfg;
  int frame = 0, running = 1, st;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (SDL_Init(SDL_INIT_VIDEO | SDL_INIT_EVENTS) != 0) {
    fprintf(stderr, "SDL_Init: %s\n", SDL_GetError());
    return 1;
  }
  win = SDL_CreateWindow("loom", SDL_WINDOWPOS_UNDEFINED,
                         SDL_WINDOWPOS_UNDEFINED, 320, 200, 0);
  if (win == NULL) {
    fprintf(stderr, "SDL_CreateWindow: %s\n", SDL_GetError());
    return 1;
  }
  wake_event = SDL_RegisterEvents(1);

  L = luaL_newstate();
  luaL_openlibs(L);
  loom_preload(L);
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = LOOM_CLOCK_REAL;
  cfg.wake = wake;
  if (loom_open(L, &cfg) != LOOM_OK ||
      luaL_loadbuffer(L, script, sizeof script - 1, "=sdl_host") != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "sdl_host: %s\n", lua_tostring(L, -1));
    return 1;
  }
  lua_pushcfunction(L, l_start_job);
  lua_setfield(L, -2, "start_job");
  lua_pushcfunction(L, l_press);
  lua_setfield(L, -2, "press");
  host_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  while (running && frame < MAX_FRAMES) {
    SDL_Event ev;
    /* Sleep until an event or loom's next deadline, whichever is first. */
    int timeout = loom_timeout_ms(L);
    if (SDL_WaitEventTimeout(&ev, timeout)) {
      do {
        if (ev.type == SDL_QUIT) running = 0;
        else if (ev.type == SDL_KEYDOWN)
          call_host("on_key", SDL_GetKeyName(ev.key.keysym.sym));
      } while (SDL_PollEvent(&ev));
    }
    st = loom_step(L, 0.002, 0, NULL);  /* at most 2 ms of loom a frame */
    if (st != LOOM_OK) {
      fprintf(stderr, "sdl_host: loom_step: %s\n", lua_tostring(L, -1));
      return 1;
    }
    frame++;
    if (call_host("done", NULL)) {
      SDL_Event quit;
      memset(&quit, 0, sizeof quit);
      quit.type = SDL_QUIT;
      SDL_PushEvent(&quit);
    }
  }
  fprintf(stderr, "sdl_host: %d frames\n", frame);
  if (the_job.started) pthread_join(the_job.thread, NULL);
  printf("%s\n", running ? "stopped at the frame limit" : "quit");
  loom_close(L, 0);
  lua_close(L);
  SDL_DestroyWindow(win);
  SDL_Quit();
  return running ? 1 : 0;
}
