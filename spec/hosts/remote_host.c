/*
 * remote_host.c: the loom_remote_* mailbox under test (spec/remote_spec.lua,
 * also run by `make tsan`). Linked with the static libloom; the Lua front
 * comes from loom_preload. Usage: remote_host <scenario>; prints what it
 * saw, one line per fact, and exits 0 when every check held.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "loom.h"

static int failures;

#define CHECK(cond)                                                      \
  do {                                                                   \
    if (!(cond)) {                                                       \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
              #cond);                                                    \
      failures++;                                                        \
    }                                                                    \
  } while (0)

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (loom_preload(L) != LOOM_OK) {
    fprintf(stderr, "loom_preload failed\n");
    exit(2);
  }
  return L;
}

/* Run a chunk; on error print it and count a failure. */
static void run(lua_State *L, const char *code) {
  if (luaL_loadbuffer(L, code, strlen(code), "=script") != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", luaL_tolstring(L, -1, NULL));
    lua_pop(L, 2);
    failures++;
  }
}

/* Call global function `name` with one integer and one optional string. */
static void call_global(lua_State *L, const char *name, lua_Integer a,
                        const char *s) {
  lua_getglobal(L, name);
  lua_pushinteger(L, a);
  if (s != NULL) lua_pushstring(L, s); else lua_pushnil(L);
  lua_call(L, 2, 0);
}

/* ---- order: several threads, each with its own remote --------------- */

#define NTHREADS 4

typedef struct worker {
  loom_remote *r;
  int id, n;
  pthread_t th;
} worker;

typedef struct order_post {
  int id, seq;
} order_post;

static void order_post_fn(lua_State *L, void *ud) {
  order_post *p = (order_post *)ud;
  lua_getglobal(L, "on_post");
  lua_pushinteger(L, p->id);
  lua_pushinteger(L, p->seq);
  free(p);
  lua_call(L, 2, 0);
}

static void *order_worker(void *arg) {
  worker *w = (worker *)arg;
  int i;
  for (i = 1; i <= w->n; i++) {
    order_post *p = (order_post *)malloc(sizeof *p);
    p->id = w->id;
    p->seq = i;
    if (loom_remote_post(w->r, order_post_fn, p) != LOOM_OK) {
      free(p);
      failures++;
    }
    if (i % 64 == 0) sleep_ms(1);
  }
  loom_remote_release(w->r);
  return NULL;
}

static void scenario_order(int n) {
  lua_State *L = new_state();
  worker w[NTHREADS];
  int i;
  char code[1024];
  run(L, "loom = require 'loom'\n"
         "seen, total, ok = {}, 0, true\n"
         "done = loom.event()\n"
         "function on_post(id, seq)\n"
         "  if seq ~= (seen[id] or 0) + 1 then ok = false end\n"
         "  seen[id] = seq\n"
         "  total = total + 1\n"
         "  if total == N then done:set() end\n"
         "end\n");
  lua_pushinteger(L, (lua_Integer)n * NTHREADS);
  lua_setglobal(L, "N");
  for (i = 0; i < NTHREADS; i++) {
    w[i].r = loom_remote_open(L);
    CHECK(w[i].r != NULL);
    w[i].id = i + 1;
    w[i].n = n;
  }
  for (i = 0; i < NTHREADS; i++)
    pthread_create(&w[i].th, NULL, order_worker, &w[i]);
  /* The root waits on an event only a post can set, while tasks keep the
   * scheduler busy: posts interleave with task resumes. */
  snprintf(code, sizeof code,
           "loom.run(function()\n"
           "  loom.task_group(function(tg)\n"
           "    tg:start_soon(function()\n"
           "      while not done:is_set() do loom.checkpoint() end\n"
           "    end)\n"
           "    done:wait()\n"
           "  end)\n"
           "end)\n"
           "print(('order: %%d posts from %d remotes, each in order: %%s')"
           ":format(total, ok))\n", NTHREADS);
  run(L, code);
  for (i = 0; i < NTHREADS; i++) pthread_join(w[i].th, NULL);
  lua_close(L);
}

/* ---- wake: a blocking loom.run sleeps in the poll until a post ------ */

static void set_done_fn(lua_State *L, void *ud) {
  call_global(L, "on_wake", (lua_Integer)(size_t)ud, NULL);
}

static void *wake_worker(void *arg) {
  loom_remote *r = (loom_remote *)arg;
  sleep_ms(300);
  CHECK(loom_remote_post(r, set_done_fn, (void *)(size_t)7) == LOOM_OK);
  loom_remote_release(r);
  return NULL;
}

static void scenario_wake(void) {
  lua_State *L = new_state();
  pthread_t th;
  loom_remote *r;
  run(L, "loom = require 'loom'\n"
         "done = loom.event()\n"
         "function on_wake(v)\n"
         "  got = v\n"
         "  done:set()\n"
         "end\n");
  r = loom_remote_open(L);
  CHECK(r != NULL);
  pthread_create(&th, NULL, wake_worker, r);
  /* CPU time shows that loom.run slept in its poll rather than spun: a
   * spinning run burns about as much CPU as the 300 ms it waits; a sleeping
   * one a small part of it, even under valgrind. */
  run(L, "local t0, c0 = loom.now(), os.clock()\n"
         "loom.run(function() done:wait() end)\n"
         "local wall, cpu = loom.now() - t0, os.clock() - c0\n"
         "print(('wake: loom.run woke for the post (%d), waited %s, %s')"
         ":format(got, wall >= 0.25 and 'for it' or 'too little',"
         " cpu < 0.5 * wall and 'asleep' or 'spinning'))\n");
  pthread_join(th, NULL);
  lua_close(L);
}

/* ---- release: the last remote released lets a deadlock be seen ------ */

static void *release_worker(void *arg) {
  sleep_ms(50);
  loom_remote_release((loom_remote *)arg);
  return NULL;
}

static void scenario_release(void) {
  lua_State *L = new_state();
  pthread_t th;
  loom_remote *r;
  run(L, "loom = require 'loom'\n");
  r = loom_remote_open(L);
  CHECK(r != NULL);
  pthread_create(&th, NULL, release_worker, r);
  /* While the remote is open a post may come: no deadlock. Once it is
   * released nothing can wake the task: loom.run reports the deadlock. */
  run(L, "local ok, err = pcall(loom.run, function()\n"
         "  loom.event():wait()\n"
         "end)\n"
         "print('release: ' .. (ok and 'returned' or (tostring(err):match("
         "'deadlock') and 'deadlock reported' or tostring(err))))\n");
  pthread_join(th, NULL);
  /* A remote opened and released before loom.run keeps nothing alive. */
  loom_remote_release(loom_remote_open(L));
  run(L, "local ok, err = pcall(loom.run, function()\n"
         "  loom.event():wait()\n"
         "end)\n"
         "print('released before run: ' .. (ok and 'returned' or "
         "(tostring(err):match('deadlock') and 'deadlock reported' or "
         "tostring(err))))\n");
  lua_close(L);
}

/* ---- close: queued posts run at close, later ones get ECLOSED -------- */

static int ran_at_close;

static void count_fn(lua_State *L, void *ud) {
  (void)ud;
  lua_pushliteral(L, "a post may use L during the close");
  lua_pop(L, 1);
  ran_at_close++;
}

static void *closed_worker(void *arg) {
  loom_remote *r = (loom_remote *)arg;
  int st = loom_remote_post(r, count_fn, NULL);
  printf("close: post from a thread after close -> %s\n",
         st == LOOM_ECLOSED ? "LOOM_ECLOSED" : "other");
  loom_remote_release(r);
  return NULL;
}

static void scenario_close(void) {
  lua_State *L = new_state();
  loom_remote *a, *b;
  pthread_t th;
  int i;
  run(L, "loom = require 'loom'\n"
         "loom.run(function() loom.sleep(0) end)\n");
  a = loom_remote_open(L);
  b = loom_remote_open(L);
  CHECK(a != NULL && b != NULL);
  for (i = 0; i < 3; i++) CHECK(loom_remote_post(a, count_fn, NULL) == 0);
  lua_close(L);  /* closes the runtime: the 3 queued posts run first */
  printf("close: %d queued posts ran at close\n", ran_at_close);
  printf("close: post after close -> %s\n",
         loom_remote_post(a, count_fn, NULL) == LOOM_ECLOSED ?
         "LOOM_ECLOSED" : "other");
  loom_remote_release(a);
  pthread_create(&th, NULL, closed_worker, b);  /* released there */
  pthread_join(th, NULL);
  printf("close: %d posts ran in all\n", ran_at_close);
}

/* ---- loom_close: the C API's close, then lua_close ------------------- */

static void *post_after_close_worker(void *arg) {
  loom_remote *r = (loom_remote *)arg;
  printf("loom_close: post from a thread -> %s\n",
         loom_remote_post(r, count_fn, NULL) == LOOM_ECLOSED ?
         "LOOM_ECLOSED" : "other");
  loom_remote_release(r);
  return NULL;
}

static void note_fn(lua_State *L, void *ud);

static void scenario_loom_close(void) {
  lua_State *L = new_state();
  loom_remote *r, *early;
  pthread_t th;
  /* A remote may be opened before require "loom": it makes the runtime. */
  early = loom_remote_open(L);
  printf("loom_close: open before require -> %s\n",
         early == NULL ? "NULL" : "a remote");
  run(L, "notes = {}\n"
         "function note(_, s) notes[#notes + 1] = s end\n");
  CHECK(loom_remote_post(early, note_fn, "early") == LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "loom.run(function() loom.sleep(0) end)\n"
         "print('loom_close: before close ran: ' .. table.concat(notes, ' '))"
         "\n");
  r = loom_remote_open(L);
  CHECK(loom_remote_post(r, note_fn, "queued1") == LOOM_OK);
  CHECK(loom_remote_post(early, note_fn, "queued2") == LOOM_OK);
  CHECK(loom_close(L, 0) == LOOM_OK);
  run(L, "print('loom_close: queued posts ran: ' .. "
         "table.concat(notes, ' '))\n");
  printf("loom_close: loom_preload after -> %s\n",
         loom_preload(L) == LOOM_ECLOSED ? "LOOM_ECLOSED" : "other");
  printf("loom_close: post after -> %s, open after -> %s, "
         "second close -> %d\n",
         loom_remote_post(r, note_fn, "late") == LOOM_ECLOSED ?
         "LOOM_ECLOSED" : "other",
         loom_remote_open(L) == NULL ? "NULL" : "a remote",
         loom_close(L, 0));
  loom_remote_release(early);
  lua_close(L);
  /* The remote outlives the state; it is released from another thread. */
  pthread_create(&th, NULL, post_after_close_worker, r);
  pthread_join(th, NULL);
}

/* ---- future: worker threads resolve loom.futures through posts ------- */

typedef struct future_job {
  loom_remote *r;
  int ref;         /* registry ref of the future (owner thread only) */
  int value;       /* computed by the worker */
  pthread_t th;
} future_job;

static void resolve_fn(lua_State *L, void *ud) {
  future_job *j = (future_job *)ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
  luaL_unref(L, LUA_REGISTRYINDEX, j->ref);
  if (j->value < 0) {
    lua_getfield(L, -1, "fail");
    lua_insert(L, -2);
    lua_pushliteral(L, "worker failed");
    lua_call(L, 2, 0);
  } else {
    lua_getfield(L, -1, "set");
    lua_insert(L, -2);
    lua_pushinteger(L, j->value);
    lua_pushliteral(L, "from a thread");
    lua_call(L, 3, 0);
  }
}

static void *future_worker(void *arg) {
  future_job *j = (future_job *)arg;
  int i, v = 0;
  for (i = 1; i <= j->value; i++) v += i;  /* the "work" */
  sleep_ms(10 + j->value % 7);
  j->value = j->value == 13 ? -1 : v;
  CHECK(loom_remote_post(j->r, resolve_fn, j) == LOOM_OK);
  loom_remote_release(j->r);
  return NULL;
}

/* Called from Lua: start(n, future) hands the future to a new thread. */
static int l_start_job(lua_State *L) {
  future_job *j = (future_job *)lua_newuserdatauv(L, sizeof *j, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, lua_tostring(L, 3));  /* anchor */
  j->value = (int)luaL_checkinteger(L, 1);
  lua_pushvalue(L, 2);
  j->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  j->r = loom_remote_open(L);
  pthread_create(&j->th, NULL, future_worker, j);
  return 0;
}

static int l_join_job(lua_State *L) {
  future_job *j;
  lua_getfield(L, LUA_REGISTRYINDEX, luaL_checkstring(L, 1));
  j = (future_job *)lua_touserdata(L, -1);
  pthread_join(j->th, NULL);
  return 0;
}

static void scenario_future(void) {
  lua_State *L = new_state();
  lua_register(L, "start_job", l_start_job);
  lua_register(L, "join_job", l_join_job);
  run(L, "local loom = require 'loom'\n"
         "local results = {}\n"
         "loom.run(function()\n"
         "  loom.task_group(function(tg)\n"
         "    for i, n in ipairs({10, 13, 100, 1000}) do\n"
         "      local f = loom.future()\n"
         "      start_job(n, f, 'job' .. i)\n"
         "      tg:start_soon(function()\n"
         "        local ok, a, b = pcall(f.wait, f)\n"
         "        results[i] = ok and (a .. ' ' .. b) or tostring(a)\n"
         "      end)\n"
         "    end\n"
         "  end)\n"
         "end)\n"
         "for i = 1, 4 do join_job('job' .. i) end\n"
         "for i = 1, 4 do print('future: ' .. results[i]) end\n");
  lua_close(L);
}

/* ---- step: a host-driven runtime is woken through cfg.wake ----------- */

static pthread_mutex_t wake_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER;
static int wakes;

static void host_wake(void *ud) {
  (void)ud;
  pthread_mutex_lock(&wake_mu);
  wakes++;
  pthread_cond_signal(&wake_cv);
  pthread_mutex_unlock(&wake_mu);
}

static void *step_worker(void *arg) {
  loom_remote *r = (loom_remote *)arg;
  int i;
  for (i = 1; i <= 3; i++) {
    sleep_ms(20);
    CHECK(loom_remote_post(r, set_done_fn, (void *)(size_t)i) == LOOM_OK);
  }
  loom_remote_release(r);
  return NULL;
}

static void scenario_step(void) {
  lua_State *L = new_state();
  loom_config cfg;
  loom_remote *r;
  pthread_t th;
  int got = 0, frames = 0;
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = LOOM_CLOCK_MANUAL;
  cfg.wake = host_wake;
  CHECK(loom_open(L, &cfg) == LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('level')\n"
         "local send, recv = loom.channel(10)\n"
         "function on_wake(v) send:send_nowait(v) end\n"
         "hg:start_soon(function()\n"
         "  for v in recv do print('step: task got post ' .. v) end\n"
         "end)\n");
  r = loom_remote_open(L);
  pthread_create(&th, NULL, step_worker, r);
  /* The host sleeps until woken (an engine would wait for its events),
   * then steps once. */
  while (got < 3) {
    int ready;
    pthread_mutex_lock(&wake_mu);
    while (wakes == got) pthread_cond_wait(&wake_cv, &wake_mu);
    got = wakes;
    pthread_mutex_unlock(&wake_mu);
    CHECK(loom_step(L, 0, 0, &ready) == LOOM_OK);
    frames++;
    CHECK(ready == 0);
  }
  pthread_join(th, NULL);
  printf("step: %d wakes, %s\n", got, frames <= 3 ? "one step each" :
         "more steps");
  run(L, "print('step: level closed: ' .. tostring(hg:close()))\n");
  CHECK(loom_close(L, 0) == LOOM_OK);
  lua_close(L);
}

/* ---- error: a failing post is reported, the next ones still run ----- */

static void raise_fn(lua_State *L, void *ud) {
  (void)ud;
  luaL_error(L, "post exploded");
}

static void note_fn(lua_State *L, void *ud) {
  call_global(L, "note", 0, (const char *)ud);
}

static void scenario_error(void) {
  lua_State *L = new_state();
  loom_remote *r;
  run(L, "loom = require 'loom'\n"
         "notes = {}\n"
         "function note(_, s) notes[#notes + 1] = s end\n");
  r = loom_remote_open(L);
  loom_remote_post(r, note_fn, "before");
  loom_remote_post(r, raise_fn, NULL);
  loom_remote_post(r, note_fn, "after");
  loom_remote_release(r);
  run(L, "loom.run(function() loom.sleep(0) end)\n"
         "print('error: posts that ran: ' .. table.concat(notes, ' '))\n");
  lua_close(L);
}

/* ---- repost: a post that posts again runs the new one next drain ----- */

static loom_remote *repost_r;
static int repost_left = 3;

static void repost_fn(lua_State *L, void *ud) {
  call_global(L, "note", repost_left, (const char *)ud);
  if (--repost_left > 0) {
    int st = loom_remote_post(repost_r, repost_fn, ud);
    CHECK(st == LOOM_OK || st == LOOM_ECLOSED);
  }
}

static void scenario_repost(void) {
  lua_State *L = new_state();
  run(L, "loom = require 'loom'\n"
         "log = {}\n"
         "function note(n) log[#log + 1] = 'post' .. n end\n");
  repost_r = loom_remote_open(L);
  CHECK(loom_remote_post(repost_r, repost_fn, NULL) == LOOM_OK);
  run(L, "loom.run(function()\n"
         "  for i = 1, 4 do log[#log + 1] = 'pass' .. i; loom.sleep(0) end\n"
         "end)\n"
         "print('repost: ' .. table.concat(log, ' '))\n");
  lua_close(L);
  loom_remote_release(repost_r);
}

/* ---- bench: posts per second into a blocking loom.run (not a test) --- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_count, bench_total;

static void bench_fn(lua_State *L, void *ud) {
  (void)ud;
  if (++bench_count == bench_total) call_global(L, "on_wake", 0, NULL);
}

static void *bench_worker(void *arg) {
  worker *w = (worker *)arg;
  int i;
  for (i = 0; i < w->n; i++)
    while (loom_remote_post(w->r, bench_fn, NULL) != LOOM_OK) {}
  loom_remote_release(w->r);
  return NULL;
}

static void scenario_bench(int n, int nthreads) {
  lua_State *L = new_state();
  worker w[NTHREADS];
  double t0, t;
  int i;
  bench_total = n * nthreads;
  run(L, "loom = require 'loom'\n"
         "done = loom.event()\n"
         "function on_wake() done:set() end\n");
  for (i = 0; i < nthreads; i++) {
    w[i].r = loom_remote_open(L);
    w[i].n = n;
  }
  t0 = now_s();
  for (i = 0; i < nthreads; i++)
    pthread_create(&w[i].th, NULL, bench_worker, &w[i]);
  run(L, "loom.run(function() done:wait() end)\n");
  t = now_s() - t0;
  for (i = 0; i < nthreads; i++) pthread_join(w[i].th, NULL);
  printf("| %d | %d | %.3f | %.2f M/s | %.0f ns |\n", nthreads,
         bench_total, t, bench_total / t / 1e6, t / bench_total * 1e9);
  lua_close(L);
}

/* Wake-up latency: one post at a time into a loom.run blocked in its
 * poll; the time from loom_remote_post to the post running. */
static double lat_posted;
static int lat_ran;
static pthread_mutex_t lat_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lat_cv = PTHREAD_COND_INITIALIZER;

static void lat_fn(lua_State *L, void *ud) {
  double *slot = (double *)ud;
  if (slot != NULL) *slot = now_s() - lat_posted;
  pthread_mutex_lock(&lat_mu);
  lat_ran = 1;
  pthread_cond_signal(&lat_cv);
  pthread_mutex_unlock(&lat_mu);
  if (ud == NULL) call_global(L, "on_wake", 0, NULL);
}

typedef struct lat_arg {
  loom_remote *r;
  double *samples;
  int n;
} lat_arg;

static void *lat_worker(void *arg) {
  lat_arg *a = (lat_arg *)arg;
  int i;
  for (i = 0; i <= a->n; i++) {
    sleep_ms(1);  /* let loom.run go back to sleep in its poll */
    pthread_mutex_lock(&lat_mu);
    lat_ran = 0;
    pthread_mutex_unlock(&lat_mu);
    lat_posted = now_s();
    loom_remote_post(a->r, lat_fn, i < a->n ? &a->samples[i] : NULL);
    pthread_mutex_lock(&lat_mu);
    while (!lat_ran) pthread_cond_wait(&lat_cv, &lat_mu);
    pthread_mutex_unlock(&lat_mu);
  }
  loom_remote_release(a->r);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void scenario_latency(int n) {
  lua_State *L = new_state();
  lat_arg a;
  pthread_t th;
  run(L, "loom = require 'loom'\n"
         "done = loom.event()\n"
         "function on_wake() done:set() end\n");
  a.r = loom_remote_open(L);
  a.n = n;
  a.samples = (double *)calloc((size_t)n, sizeof *a.samples);
  pthread_create(&th, NULL, lat_worker, &a);
  run(L, "loom.run(function() done:wait() end)\n");
  pthread_join(th, NULL);
  qsort(a.samples, (size_t)n, sizeof *a.samples, cmp_double);
  printf("| %d | %.1f us | %.1f us | %.1f us |\n", n,
         a.samples[n / 2] * 1e6, a.samples[n * 99 / 100] * 1e6,
         a.samples[n - 1] * 1e6);
  free(a.samples);
  lua_close(L);
}

/* ---- stats: core.remote_stats() counts what the mailbox holds ------- */

static void stats(lua_State *L, const char *when) {
  char code[256];
  snprintf(code, sizeof code,
           "local s = require('loom.core').remote_stats()\n"
           "print(('stats %s: open %%d, queued %%d, handles %%d')"
           ":format(s.open, s.queued, s.handles))\n", when);
  run(L, code);
}

static void nop_fn(lua_State *L, void *ud) {
  (void)L;
  (void)ud;
}

static void scenario_stats(void) {
  lua_State *L = new_state();
  loom_remote *a, *b;
  run(L, "loom = require 'loom'\n");
  stats(L, "before");
  a = loom_remote_open(L);
  b = loom_remote_open(L);
  CHECK(loom_remote_post(a, nop_fn, NULL) == LOOM_OK);
  CHECK(loom_remote_post(b, nop_fn, NULL) == LOOM_OK);
  stats(L, "2 open, 2 posts");
  loom_remote_release(b);
  run(L, "loom.run(function() loom.sleep(0) end)\n");
  stats(L, "after a run");
  CHECK(loom_close(L, 0) == LOOM_OK);
  stats(L, "after loom_close");
  lua_close(L);
  loom_remote_release(a);
}

/* ---- args: bad arguments get a status, never a crash ----------------- */

static void scenario_args(void) {
  lua_State *L = new_state();
  loom_remote *r;
  printf("args: open(NULL) -> %s\n",
         loom_remote_open(NULL) == NULL ? "NULL" : "a remote");
  printf("args: post(NULL, fn) -> %s\n",
         loom_remote_post(NULL, nop_fn, NULL) == LOOM_ERRARG ? "LOOM_ERRARG"
         : "other");
  r = loom_remote_open(L);
  printf("args: post(r, NULL) -> %s\n",
         loom_remote_post(r, NULL, NULL) == LOOM_ERRARG ? "LOOM_ERRARG"
         : "other");
  loom_remote_release(NULL);
  printf("args: release(NULL) does nothing\n");
  loom_remote_release(r);
  lua_close(L);
}

/* ---- interleave: posts of two remotes run in posting order ----------- */

static void scenario_interleave(void) {
  lua_State *L = new_state();
  loom_remote *a, *b;
  static const char *names[] = {"a1", "b1", "a2", "b2", "b3", "a3"};
  int i;
  run(L, "loom = require 'loom'\n"
         "notes = {}\n"
         "function note(_, s) notes[#notes + 1] = s end\n");
  a = loom_remote_open(L);
  b = loom_remote_open(L);
  for (i = 0; i < 6; i++)
    CHECK(loom_remote_post(names[i][0] == 'a' ? a : b, note_fn,
                           (void *)names[i]) == LOOM_OK);
  loom_remote_release(a);
  loom_remote_release(b);
  run(L, "loom.run(function() loom.sleep(0) end)\n"
         "print('interleave: ' .. table.concat(notes, ' '))\n");
  lua_close(L);
}

/* ---- race: threads post while the owner closes the runtime; every post
 * accepted runs exactly once, every other one gets LOOM_ECLOSED -------- */

typedef struct racer {
  loom_remote *r;
  pthread_t th;
  long accepted;
} racer;

static long race_ran;  /* owner thread only */

static void race_fn(lua_State *L, void *ud) {
  (void)L;
  (void)ud;
  race_ran++;
}

static void *race_worker(void *arg) {
  racer *x = (racer *)arg;
  int st;
  /* Throttled: an unthrottled producer outruns the owner, and a mailbox
   * has no back-pressure (the host paces its threads). */
  while ((st = loom_remote_post(x->r, race_fn, NULL)) == LOOM_OK)
    if (++x->accepted % 32 == 0) sleep_ms(1);
  CHECK(st == LOOM_ECLOSED);
  loom_remote_release(x->r);
  return NULL;
}

static void scenario_race(void) {
  lua_State *L = new_state();
  racer x[NTHREADS];
  long accepted = 0;
  int i;
  run(L, "loom = require 'loom'\n");
  for (i = 0; i < NTHREADS; i++) {
    x[i].r = loom_remote_open(L);
    x[i].accepted = 0;
  }
  for (i = 0; i < NTHREADS; i++)
    pthread_create(&x[i].th, NULL, race_worker, &x[i]);
  run(L, "loom.run(function() for _ = 1, 50 do loom.sleep(0.001) end end)\n");
  CHECK(loom_close(L, 0) == LOOM_OK);
  for (i = 0; i < NTHREADS; i++) {
    pthread_join(x[i].th, NULL);
    accepted += x[i].accepted;
  }
  printf("race: every accepted post ran once: %s\n",
         accepted == race_ran && accepted > 0 ? "yes" : "no");
  lua_close(L);
}

/* ---- borrowed: a remote opened before loom_open moves to the host's
 * loop; its posts wake the host's uv_run; loom_close leaves the loop
 * closable. ---------------------------------------------------------- */

static void *borrowed_worker(void *arg) {
  loom_remote *r = (loom_remote *)arg;
  int i;
  for (i = 1; i <= 3; i++) {
    sleep_ms(20);
    CHECK(loom_remote_post(r, set_done_fn, (void *)(size_t)i) == LOOM_OK);
  }
  loom_remote_release(r);
  return NULL;
}

static uv_timer_t host_timer;

static void host_tick_cb(uv_timer_t *t) {
  uv_close((uv_handle_t *)t, NULL);
}

static void scenario_borrowed(void) {
  lua_State *L = new_state();
  uv_loop_t loop;
  loom_config cfg;
  loom_remote *r;
  pthread_t th;
  int rc;
  uv_loop_init(&loop);
  r = loom_remote_open(L);  /* on loom's own loop for now */
  CHECK(r != NULL);
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.uv_loop = &loop;
  CHECK(loom_open(L, &cfg) == LOOM_OK);
  run(L, "loom = require 'loom'\n"
         "hg = loom.host_group('borrowed')\n"
         "local send, recv = loom.channel(10)\n"
         "function on_wake(v) send:send_nowait(v) if v == 3 then "
         "send:close() end end\n"
         "hg:start_soon(function()\n"
         "  for v in recv do print('borrowed: task got post ' .. v) end\n"
         "end)\n");
  pthread_create(&th, NULL, borrowed_worker, r);
  /* The host's own timer: one tick, then it closes. Returns when the task
   * is done and the remote released: the open remote kept the host's loop
   * running while the task waited, after the timer was gone. */
  uv_timer_init(&loop, &host_timer);
  uv_timer_start(&host_timer, host_tick_cb, 5, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  run(L, "print('borrowed: uv_run returned, ' .. hg:alive() .. ' alive')\n");
  CHECK(loom_close(L, 0) == LOOM_OK);
  rc = uv_loop_close(&loop);
  printf("borrowed: uv_loop_close -> %s\n", rc == 0 ? "ok" : uv_err_name(rc));
  lua_close(L);
}

int main(int argc, char **argv) {
  const char *s = argc > 1 ? argv[1] : "";
  int n = argc > 2 ? atoi(argv[2]) : 500;
  setvbuf(stdout, NULL, _IONBF, 0);
  if (strcmp(s, "order") == 0) scenario_order(n);
  else if (strcmp(s, "wake") == 0) scenario_wake();
  else if (strcmp(s, "release") == 0) scenario_release();
  else if (strcmp(s, "close") == 0) scenario_close();
  else if (strcmp(s, "error") == 0) scenario_error();
  else if (strcmp(s, "repost") == 0) scenario_repost();
  else if (strcmp(s, "loom_close") == 0) scenario_loom_close();
  else if (strcmp(s, "future") == 0) scenario_future();
  else if (strcmp(s, "step") == 0) scenario_step();
  else if (strcmp(s, "borrowed") == 0) scenario_borrowed();
  else if (strcmp(s, "stats") == 0) scenario_stats();
  else if (strcmp(s, "args") == 0) scenario_args();
  else if (strcmp(s, "interleave") == 0) scenario_interleave();
  else if (strcmp(s, "race") == 0) scenario_race();
  else if (strcmp(s, "latency") == 0) scenario_latency(n);
  else if (strcmp(s, "bench") == 0)
    scenario_bench(n, argc > 3 ? atoi(argv[3]) : NTHREADS);
  else {
    fprintf(stderr, "usage: remote_host order|wake|release|close|error|"
            "repost|loom_close|future|step|borrowed|stats|args|interleave|race"
            " [n]\n"
            "       remote_host bench n_per_thread [nthreads] | latency n\n");
    return 2;
  }
  return failures == 0 ? 0 : 1;
}
