/*
 * capi.c: a C host driving loom through loom.h, for spec/embed_capi_spec.lua.
 * Each scenario makes its own lua_State(s) and prints one line per check;
 * the spec compares the transcript. Usage: capi <scenario> <lua_path>
 * Linked against the built loom/core.so (which exports loom.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "loom.h"

static const char *lua_path;

/* ---- a counting allocator that can be told to fail ------------------- */

typedef struct counting {
  size_t bytes;     /* live bytes */
  long fail_after;  /* allocations left before failing; -1: never */
  long failures;
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
  if (nsize > old && c->fail_after >= 0) {
    if (c->fail_after == 0) {
      c->failures++;
      return NULL;
    }
    c->fail_after--;
  }
  p = realloc(ptr, nsize);
  if (p != NULL) c->bytes = c->bytes - old + nsize;
  return p;
}

static lua_State *new_state(counting *c) {
  lua_State *L = c ? lua_newstate(count_alloc, c) : luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, lua_path);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  luaL_requiref(L, "loom.core", luaopen_loom_core, 0);
  lua_pop(L, 1);
  return L;
}

static void run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    printf("FAIL lua: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

static const char *status_name(int s) {
  static const char *const names[] = {"OK", "ERRRUN", "ERRMEM", "ERRSTATE",
                                      "ERRARG", "ECLOSED"};
  return s >= 0 && s <= 5 ? names[s] : "?";
}

#define CHECK(what, expr, want)                                         \
  do {                                                                  \
    int got_ = (expr);                                                  \
    printf("%s %s\n", what, status_name(got_));                         \
    if (got_ != (want)) printf("FAIL %s: want %s\n", what,              \
                               status_name(want));                      \
  } while (0)

/* ---- scenario: manual clock, C error hook, per-frame driving ---------- */

static void on_error(void *ud, lua_State *L, int err_idx, const char *name) {
  const char *tb = lua_tostring(L, err_idx + 1);
  printf("hook(%s): task '%s': %s; traceback %s\n", (const char *)ud, name,
         lua_tostring(L, err_idx),
         tb && strstr(tb, "stack traceback:") ? "yes" : "no");
}

static void scenario_frames(void) {
  lua_State *L = new_state(NULL);
  loom_config cfg;
  int ready, i;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = LOOM_CLOCK_MANUAL;
  cfg.on_error = on_error;
  cfg.error_ud = (void *)"ud";
  CHECK("open", loom_open(L, &cfg), LOOM_OK);
  CHECK("open again", loom_open(L, &cfg), LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('level')\n"
         "hg:start_soon(function()\n"
         "  for i = 1, 3 do print('npc frame', loom.frame()); "
         "loom.next_frame() end\n"
         "  loom.sleep(0.5)\n"
         "  print('npc woke at', loom.now())\n"
         "end)\n"
         "local h = hg:create_task(function() loom.next_frame(2); "
         "error('npc crashed', 0) end)\n"
         "h.name = 'bad npc'\n");
  printf("timeout ready %d\n", loom_timeout_ms(L));
  for (i = 0; i < 6; i++) {
    CHECK("step", loom_step(L, 0, 0, &ready), LOOM_OK);
    printf("ready %d next %g timeout %d\n", ready, loom_next_deadline(L),
           loom_timeout_ms(L));
  }
  CHECK("advance", loom_advance(L, 0.5), LOOM_OK);
  printf("now %g timeout %d\n", loom_now(L), loom_timeout_ms(L));
  CHECK("step", loom_step(L, 0, 0, NULL), LOOM_OK);
  printf("backend fd %s\n", loom_backend_fd(L) >= 0 ? "yes" : "no");
  CHECK("close", loom_close(L, 0), LOOM_OK);
  lua_close(L);
}

/* ---- scenario: statuses for bad input and the wrong time -------------- */

static int l_try_step(lua_State *L) {
  lua_pushstring(L, status_name(loom_step(L, 0, 0, NULL)));
  lua_pushstring(L, status_name(loom_close(L, 0)));
  lua_pushstring(L, status_name(loom_advance(L, 1)));
  return 3;
}

static void scenario_bad_input(void) {
  lua_State *L = new_state(NULL);
  loom_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg + 8;
  CHECK("open size too big", loom_open(L, &cfg), LOOM_ERRARG);
  cfg.size = sizeof cfg;
  cfg.clock = 42;
  CHECK("open unknown clock", loom_open(L, &cfg), LOOM_ERRARG);
  cfg.clock = LOOM_CLOCK_HOST;
  CHECK("open host clock without fn", loom_open(L, &cfg), LOOM_ERRARG);
  cfg.clock = LOOM_CLOCK_MANUAL;
  cfg.size = offsetof(loom_config, clock_fn); /* an older, smaller header */
  CHECK("open small size", loom_open(L, &cfg), LOOM_OK);
  CHECK("open NULL cfg", loom_open(L, NULL), LOOM_OK);
  CHECK("advance real clock", loom_advance(L, 1), LOOM_ERRSTATE);
  cfg.size = sizeof cfg;
  CHECK("open manual", loom_open(L, &cfg), LOOM_OK);
  CHECK("step budget -1", loom_step(L, -1, 0, NULL), LOOM_ERRARG);
  CHECK("step budget NaN", loom_step(L, NAN, 0, NULL), LOOM_ERRARG);
  CHECK("step max_resumes -1", loom_step(L, 0, -1, NULL), LOOM_ERRARG);
  CHECK("advance -1", loom_advance(L, -1), LOOM_ERRARG);
  CHECK("advance NaN", loom_advance(L, NAN), LOOM_ERRARG);
  CHECK("advance inf", loom_advance(L, INFINITY), LOOM_ERRARG);
  CHECK("close grace NaN", loom_close(L, NAN), LOOM_ERRARG);
  CHECK("step huge budget", loom_step(L, HUGE_VAL, 0, NULL), LOOM_OK);
  lua_register(L, "try_step", l_try_step);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('g')\n"
         "hg:start_soon(function() print('in a task:', try_step()) end)\n");
  CHECK("step", loom_step(L, 0, 0, NULL), LOOM_OK);
  CHECK("open after tasks ran", loom_open(L, &cfg), LOOM_ERRSTATE);
  run(L, "hg:close()\n"
         "loom.run(function() print('in loom.run:', try_step()) end)\n");
  printf("frames %d\n", (int)(loom_now(L) * 0) + 1);
  CHECK("close", loom_close(L, 0), LOOM_OK);
  CHECK("close again", loom_close(L, 0), LOOM_OK);
  CHECK("step after close", loom_step(L, 0, 0, NULL), LOOM_ECLOSED);
  CHECK("advance after close", loom_advance(L, 1), LOOM_ECLOSED);
  CHECK("open after close", loom_open(L, NULL), LOOM_ECLOSED);
  printf("after close: timeout %d next %g fd %d remote %s\n",
         loom_timeout_ms(L), loom_next_deadline(L), loom_backend_fd(L),
         loom_remote_open(L) == NULL ? "NULL" : "?");
  run(L, "print(pcall(loom.step))\n"
         "print(pcall(loom.run, print))\n"
         "print(pcall(loom.host_group, 'x'))\n"
         "print(pcall(hg.start_soon, hg, print))\n");
  lua_close(L);
  CHECK("step NULL state", loom_step(NULL, 0, 0, NULL), LOOM_ERRARG);
}

/* ---- scenario: files, UDP and fd waits across loom_close ------------- */

/* Objects of the I/O area alive at loom_close: a file with buffered
 * writes, a UDP socket, a task stuck (shielded) in wait_readable. After
 * the close, creating or waiting raises a clear error instead of touching
 * the closed loop; lua_close then finalises everything (valgrind checks
 * that nothing leaks or touches freed memory). */
static void scenario_io_closed(void) {
  lua_State *L = new_state(NULL);
  int fds[2], i;
  if (pipe(fds) != 0) {
    printf("FAIL pipe\n");
    exit(1);
  }
  lua_pushinteger(L, fds[0]);
  lua_setglobal(L, "rfd");
  run(L, "loom = require 'loom'\n"
         "path = os.tmpname()\n"
         "hg = loom.host_group('io')\n"
         "hg:start_soon(function()\n"
         "  f = loom.open_file(path, 'w')\n"
         "  f:write('buffered')\n"
         "  u = loom.create_udp_socket{local_host = '127.0.0.1'}\n"
         "  l = loom.create_tcp_listener{local_host = '127.0.0.1'}\n"
         "  ready = true\n"
         "end)\n"
         "stuck = loom.host_group('stuck')\n"
         "shield = loom.cancel_scope{shield = true}\n"
         "stuck:start_soon(function()\n"
         "  shield:run(function() loom.wait_readable(rfd) end)\n"
         "end)\n");
  for (i = 0; i < 5000; i++) {   /* the open runs on the thread pool */
    int ready;
    if (loom_step(L, 0, 0, NULL) != LOOM_OK) printf("FAIL step\n");
    lua_getglobal(L, "ready");
    ready = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ready) break;
    usleep(1000);
  }
  printf("opened %s\n", i < 5000 ? "yes" : "no");
  CHECK("close", loom_close(L, 0), LOOM_OK);
  run(L, "local function try(...)\n"
         "  local ok, e = pcall(...)\n"
         "  print(ok, (tostring(e):gsub('^[^:]*:%d+: ', '')))\n"
         "end\n"
         "try(loom.create_udp_socket, {local_host = '127.0.0.1'})\n"
         "try(loom.create_connected_udp_socket, {remote_host = '127.0.0.1',"
         " remote_port = 9})\n"
         "try(loom.fs.stat, path)\n"
         "try(loom.open_file, path)\n"
         "try(loom.wait_readable, rfd)\n"
         "try(f.close, f)\n"
         "try(u.close, u)\n"
         "try(l.close, l)\n"
         "os.remove(path)\n");
  lua_close(L);
  close(fds[0]);
  close(fds[1]);
  printf("lua_close OK\n");
}

/* ---- scenario: on_error = "raise" through the C API -------------------- */

static void scenario_raise(void) {
  lua_State *L = new_state(NULL);
  int i, s;
  run(L, "loom = require 'loom'\n"
         "loom.configure{on_error = 'raise'}\n"
         "hg = loom.host_group('g')\n"
         "for i = 1, 2 do hg:start_soon(function() error('e' .. i, 0) end) "
         "end\n");
  for (i = 0; i < 3; i++) {
    s = loom_step(L, 0, 0, NULL);
    printf("step %s %s\n", status_name(s),
           s == LOOM_OK ? "" : lua_tostring(L, -1));
    if (s != LOOM_OK) lua_pop(L, 1);
  }
  printf("stack %d\n", lua_gettop(L));
  CHECK("close", loom_close(L, 0), LOOM_OK);
  lua_close(L);
}

/* ---- scenario: a host clock in C ---------------------------------------- */

static double host_time;
static double host_clock(void *ud) {
  (void)ud;
  return host_time;
}

static void scenario_host_clock(void) {
  lua_State *L = new_state(NULL);
  loom_config cfg;
  int s;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = LOOM_CLOCK_HOST;
  cfg.clock_fn = host_clock;
  host_time = 50;
  CHECK("open", loom_open(L, &cfg), LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('g')\n"
         "hg:start_soon(function() loom.sleep(2); print('woke', loom.now()) "
         "end)\n");
  CHECK("step", loom_step(L, 0, 0, NULL), LOOM_OK);
  printf("timeout %d\n", loom_timeout_ms(L));
  host_time = 52;
  CHECK("step", loom_step(L, 0, 0, NULL), LOOM_OK);
  host_time = 51;
  s = loom_step(L, 0, 0, NULL);
  printf("backwards: %s %s\n", status_name(s),
         strstr(lua_tostring(L, -1), "backwards") ? "backwards" : "?");
  lua_pop(L, 1);
  CHECK("close", loom_close(L, 0), LOOM_OK);
  lua_close(L);
}

/* ---- scenario: loom_close cancels and settles, then frees all ---------- */

static void scenario_close(void) {
  counting c = {0, -1, 0};
  lua_State *L = new_state(&c);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('level')\n"
         "for i = 1, 3 do hg:start_soon(function()\n"
         "  local _ <close> = setmetatable({}, {__close = function(_, e)\n"
         "    print('cleanup', i, loom.is_cancelled(e)) end})\n"
         "  loom.sleep_forever()\n"
         "end) end\n"
         "slow = loom.host_group('slow')\n"
         "slow:start_soon(function()\n"
         "  pcall(loom.sleep_forever)\n"
         "  loom.cancel_scope{shield = true}:run(function() loom.sleep(0.02) "
         "end)\n"
         "  print('slow cleanup done')\n"
         "end)\n");
  run(L, "stuck = loom.host_group('stuck')\n"
         "shield = loom.cancel_scope{shield = true}\n"
         "stuck:start_soon(function()\n"
         "  shield:run(function() loom.sleep(1e6) end)\n"
         "end)\n");
  CHECK("step", loom_step(L, 0, 0, NULL), LOOM_OK);
  CHECK("close", loom_close(L, 0.5), LOOM_OK);
  run(L, "print('alive', hg:alive(), slow:alive(), stuck:alive())\n"
         "stuck:cancel(); shield:cancel()\n"
         "print('stuck', stuck:close())");
  lua_close(L);
  printf("bytes after lua_close %zu\n", c.bytes);
}

/* ---- scenario: out of memory during loom_step --------------------------- */

static const char oom_script[] =
  "loom = require 'loom'\n"
  "hg = loom.host_group('g')\n"
  "local send, recv = loom.channel(4)\n"
  "for i = 1, 4 do hg:start_soon(function()\n"
  "  local t = {}\n"
  "  while true do\n"
  "    t[#t % 50 + 1] = string.rep('x', 100) .. i\n"
  "    send:send(#t)\n"
  "    loom.next_frame()\n"
  "  end\n"
  "end) end\n"
  "hg:start_soon(function() while true do recv:receive() end end)\n"
  "hg:start_soon(function() while true do loom.sleep(0); error('e') end "
  "end)\n";

static void scenario_oom(void) {
  long n;
  int errmem = 0, ok = 0, other = 0, leaks = 0;
  for (n = 0; n < 300; n++) {
    counting c = {0, -1, 0};
    lua_State *L = new_state(&c);
    loom_config cfg;
    int i, s;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.on_error = NULL;
    loom_open(L, &cfg);
    run(L, "loom = require 'loom'; loom.configure{on_error = function() end}");
    run(L, oom_script);
    for (i = 0; i < 3; i++) loom_step(L, 0, 0, NULL);
    c.fail_after = n;
    s = loom_step(L, 0, 0, NULL);
    if (s == LOOM_ERRMEM) {
      errmem++;
      lua_pop(L, 1);
    } else if (s == LOOM_OK)
      ok++;
    else {
      other++;
      lua_pop(L, 1);
    }
    c.fail_after = -1;
    /* Still usable, then closable. */
    for (i = 0; i < 3; i++) {
      s = loom_step(L, 0, 0, NULL);
      if (s != LOOM_OK && s != LOOM_ERRRUN) printf("FAIL after oom %ld: %s\n",
                                                  n, status_name(s));
      if (s != LOOM_OK) lua_pop(L, 1);
    }
    s = loom_close(L, 0);
    if (s != LOOM_OK) {
      printf("FAIL close after oom %ld: %s\n", n, status_name(s));
      lua_pop(L, 1);
    }
    lua_close(L);
    if (c.bytes != 0) leaks++;
  }
  printf("oom: some ERRMEM %s, some OK %s, leaks %d, other %d\n",
         errmem > 0 ? "yes" : "no", ok > 0 ? "yes" : "no", leaks, other);
}

/* ---- scenario: two runtimes in one process ------------------------------ */

static void scenario_two(void) {
  lua_State *a = new_state(NULL), *b = new_state(NULL);
  loom_config cfg;
  int i;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = LOOM_CLOCK_MANUAL;
  loom_open(a, &cfg);
  cfg.clock = LOOM_CLOCK_REAL;
  loom_open(b, &cfg);
  run(a, "loom = require 'loom'; hg = loom.host_group('a')\n"
         "hg:start_soon(function() loom.sleep(1); print('a woke', "
         "loom.now(), loom.frame()) end)");
  run(b, "loom = require 'loom'; hg = loom.host_group('b')\n"
         "hg:start_soon(function() loom.next_frame(3); print('b frame', "
         "loom.frame()) end)");
  for (i = 0; i < 4; i++) {
    loom_step(a, 0, 0, NULL);
    loom_step(b, 0, 0, NULL);
    loom_advance(a, 0.5);
  }
  printf("a now %g, b clock real %s\n", loom_now(a),
         loom_now(b) > 1000 || loom_now(b) > 0 ? "yes" : "no");
  CHECK("advance b (real)", loom_advance(b, 1), LOOM_ERRSTATE);
  CHECK("close a", loom_close(a, 0), LOOM_OK);
  CHECK("step b after a closed", loom_step(b, 0, 0, NULL), LOOM_OK);
  lua_close(a);
  lua_close(b);
}

/* ---- scenario: loom_timeout_ms on each clock ----------------------------- */

static void timeouts_on(int clock, const char *name) {
  lua_State *L = new_state(NULL);
  loom_config cfg;
  int t;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = clock;
  loom_open(L, &cfg);
  printf("%s: idle %d", name, loom_timeout_ms(L));
  run(L, "loom = require 'loom'; hg = loom.host_group('t')\n"
         "hg:start_soon(function() loom.sleep(5) end)\n"
         "hg:start_soon(function() while true do loom.next_frame() end end)");
  printf(", spawned %d", loom_timeout_ms(L));
  loom_step(L, 0, 0, NULL);
  t = loom_timeout_ms(L);
  if (clock == LOOM_CLOCK_REAL)
    printf(", sleeping %s", t > 4000 && t <= 5000 ? "4000..5000" : "?");
  else
    printf(", sleeping %d", t);
  printf(", next deadline %s\n",
         fabs(loom_next_deadline(L) - loom_now(L) - 5) < 0.5 ? "now+5" : "?");
  loom_close(L, 0);
  lua_close(L);
}

static void scenario_timeouts(void) {
  timeouts_on(LOOM_CLOCK_REAL, "real");
  timeouts_on(LOOM_CLOCK_MANUAL, "manual");
  timeouts_on(LOOM_CLOCK_AUTOJUMP, "autojump");
}

/* ---- scenario: a borrowed libuv loop the host runs ----------------------- */

static int host_timer_fired;
static void host_timer_cb(uv_timer_t *t) {
  host_timer_fired++;
  uv_close((uv_handle_t *)t, NULL);
}

static void scenario_uv(void) {
  uv_loop_t loop;
  uv_timer_t t;
  lua_State *L = new_state(NULL);
  loom_config cfg;
  uv_loop_init(&loop);
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, host_timer_cb, 30, 0);
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.uv_loop = &loop;
  CHECK("open borrowed", loom_open(L, &cfg), LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('uv')\n"
         "hg:start_soon(function()\n"
         "  for i = 1, 3 do loom.sleep(0.01); print('loom tick', i) end\n"
         "  local l = loom.create_tcp_listener{local_host = '127.0.0.1'}\n"
         "  local _, port = l:local_address()\n"
         "  hg:start_soon(function() local s <close> = l:accept(); "
         "s:send(s:receive()) end)\n"
         "  local c <close> = loom.connect_tcp('127.0.0.1', port)\n"
         "  c:send('echo')\n"
         "  print('tcp', c:receive())\n"
         "  l:close()\n"
         "end)\n"
         "print(pcall(loom.run, print))\n");
  uv_run(&loop, UV_RUN_DEFAULT);
  printf("host timer fired %d\n", host_timer_fired);
  run(L, "print('alive', hg:alive())");
  CHECK("close", loom_close(L, 0), LOOM_OK);
  printf("uv_loop_close %d\n", uv_loop_close(&loop));
  lua_close(L);
}

/* Work spawned by host code before the host runs its loop, with no handle
 * of the host's keeping the loop alive: uv_run must still run it. */
static void scenario_uv_idle(void) {
  uv_loop_t loop;
  lua_State *L = new_state(NULL);
  loom_config cfg;
  uv_loop_init(&loop);
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.uv_loop = &loop;
  CHECK("open borrowed", loom_open(L, &cfg), LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('idle')\n"
         "hg:start_soon(function() print('ran'); loom.sleep(0.01); "
         "print('slept') end)\n");
  uv_run(&loop, UV_RUN_DEFAULT);
  run(L, "print('alive', hg:alive())");
  CHECK("close", loom_close(L, 0), LOOM_OK);
  printf("uv_loop_close %d\n", uv_loop_close(&loop));
  lua_close(L);
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  lua_path = argc > 2 ? argv[2] : "./lua/?.lua;./lua/?/init.lua";
  setvbuf(stdout, NULL, _IONBF, 0);
  if (strcmp(which, "frames") == 0) scenario_frames();
  else if (strcmp(which, "bad_input") == 0) scenario_bad_input();
  else if (strcmp(which, "raise") == 0) scenario_raise();
  else if (strcmp(which, "io_closed") == 0) scenario_io_closed();
  else if (strcmp(which, "host_clock") == 0) scenario_host_clock();
  else if (strcmp(which, "close") == 0) scenario_close();
  else if (strcmp(which, "oom") == 0) scenario_oom();
  else if (strcmp(which, "two") == 0) scenario_two();
  else if (strcmp(which, "uv") == 0) scenario_uv();
  else if (strcmp(which, "uv_idle") == 0) scenario_uv_idle();
  else if (strcmp(which, "timeouts") == 0) scenario_timeouts();
  else {
    fprintf(stderr, "unknown scenario %s\n", which);
    return 2;
  }
  return 0;
}
