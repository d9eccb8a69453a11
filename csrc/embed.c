/*
 * embed.c: what a host needs to drive loom. It owns loom.configure (the
 * runtime clock and the error hook), the queue of unhandled errors and
 * their delivery to the hook, the borrowed libuv loop driven by a
 * prepare/check pair, and the C API of loom.h except the remote mailbox
 * (remote.c); loom_close runs the runtime's teardown, which runtime.c
 * owns. No function of loom.h raises into the host: whatever can
 * raise runs under lua_pcall.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <stdlib.h>

#include "loom_internal.h"

/* ---- unhandled errors --------------------------------------------------- */

#define ERRQ_SLOTS 5 /* error, task|false, traceback|false, name, kind */

void loom__report_error(lua_State *L, loom_rt *rt, int err_idx, int task_idx,
                        int tb_idx, const char *kind, const char *name) {
  int q, base;
  err_idx = lua_absindex(L, err_idx);
  if (task_idx) task_idx = lua_absindex(L, task_idx);
  if (tb_idx) tb_idx = lua_absindex(L, tb_idx);
  luaL_checkstack(L, 4, "loom: reporting an error");
  if (rt->errq_ref == LUA_NOREF) {
    lua_newtable(L);
    rt->errq_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->errq_ref);
  q = lua_gettop(L);
  base = (rt->errq_head + rt->errq_len) * ERRQ_SLOTS;
  lua_pushvalue(L, err_idx);
  lua_rawseti(L, q, base + 1);
  if (task_idx) lua_pushvalue(L, task_idx);
  else lua_pushboolean(L, 0);
  lua_rawseti(L, q, base + 2);
  if (tb_idx && lua_type(L, tb_idx) == LUA_TSTRING) lua_pushvalue(L, tb_idx);
  else lua_pushboolean(L, 0);
  lua_rawseti(L, q, base + 3);
  lua_pushstring(L, name ? name : "?");
  lua_rawseti(L, q, base + 4);
  lua_pushstring(L, kind ? kind : "task");
  lua_rawseti(L, q, base + 5);
  lua_pop(L, 1);
  rt->errq_len++;
}

/* [err, tb|false, name, kind] -> writes the "print" report to stderr. */
static int print_error(lua_State *L) {
  const char *tb = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  const char *msg = luaL_tolstring(L, 1, NULL);
  const char *st = tb ? strstr(tb, "stack traceback:") : NULL;
  fprintf(stderr, "loom: unhandled error in %s %s: %s\n%s%s",
          lua_tostring(L, 4), lua_tostring(L, 3), msg, st ? st : "",
          st ? "\n" : "");
  fflush(stderr);
  return 0;
}

void loom__print_failure(lua_State *L, const char *what) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "loom: %s: %s\n", what, msg ? msg : luaL_typename(L, -1));
  fflush(stderr);
  lua_pop(L, 1);
}

void loom__deliver_errors(lua_State *L, loom_rt *rt, int allow_raise) {
  while (rt->errq_len > 0) {
    int top = lua_gettop(L), q, base, i;
    luaL_checkstack(L, 12, "loom: delivering an error");
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->errq_ref);
    q = top + 1;
    base = rt->errq_head * ERRQ_SLOTS;
    for (i = 1; i <= ERRQ_SLOTS; i++) {
      lua_rawgeti(L, q, base + i);
      lua_pushnil(L);
      lua_rawseti(L, q, base + i);
    }
    /* [q, err, task, tb, name, kind] */
    if (--rt->errq_len == 0) rt->errq_head = 0;
    else rt->errq_head++;
    if (rt->on_error == LOOM_ONERR_RAISE && allow_raise) {
      lua_pushvalue(L, top + 2);
      lua_error(L);
    }
    if (rt->on_error == LOOM_ONERR_FUNC) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, rt->on_error_ref);
      lua_pushvalue(L, top + 2);
      if (lua_toboolean(L, top + 3)) lua_pushvalue(L, top + 3);
      else lua_pushnil(L);
      if (lua_toboolean(L, top + 4)) lua_pushvalue(L, top + 4);
      else lua_pushnil(L);
      if (lua_pcall(L, 3, 0, 0) != LUA_OK)
        loom__print_failure(L, "error in the on_error hook");
    } else if (rt->on_error == LOOM_ONERR_C && rt->error_fn != NULL) {
      /* The error, then its traceback (or nil) just above it. */
      int err;
      lua_pushvalue(L, top + 2);
      err = lua_gettop(L);
      if (lua_toboolean(L, top + 4)) lua_pushvalue(L, top + 4);
      else lua_pushnil(L);
      rt->error_fn(rt->error_ud, L, err, lua_tostring(L, top + 5));
    } else {
      lua_pushcfunction(L, print_error);
      lua_pushvalue(L, top + 2);
      lua_pushvalue(L, top + 4);
      lua_pushvalue(L, top + 5);
      lua_pushvalue(L, top + 6);
      if (lua_pcall(L, 4, 0, 0) != LUA_OK)
        loom__print_failure(L, "cannot print an unhandled error");
    }
    lua_settop(L, top);
  }
}

/* [rt, allow_raise] */
static int deliver_protected(lua_State *L) {
  loom__deliver_errors(L, (loom_rt *)lua_touserdata(L, 1), lua_toboolean(L, 2));
  return 0;
}

int loom__deliver_pcall(lua_State *L, loom_rt *rt, int allow_raise) {
  int status;
  if (rt->errq_len == 0) return LUA_OK;
  lua_pushcfunction(L, deliver_protected);
  lua_pushlightuserdata(L, rt);
  lua_pushboolean(L, allow_raise);
  rt->stepping = 1; /* the hook runs as part of the step: no nesting */
  status = lua_pcall(L, 2, 0, 0);
  rt->stepping = 0;
  return status;
}

/* ---- loom.configure ----------------------------------------------------- */

static void set_clock(lua_State *L, loom_rt *rt, int clock, int fn_idx) {
  if (rt->clock_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->clock_ref);
  rt->clock_ref = LUA_NOREF;
  if (fn_idx) {
    lua_pushvalue(L, fn_idx);
    rt->clock_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  rt->clock = clock;
  rt->clock_fn = NULL;
  rt->clock_ud = NULL;
  rt->clock_now = 0;
  rt->clock_sampled = 0;
}

static void set_on_error(lua_State *L, loom_rt *rt, int mode, int fn_idx) {
  if (rt->on_error_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->on_error_ref);
  rt->on_error_ref = LUA_NOREF;
  if (fn_idx) {
    lua_pushvalue(L, fn_idx);
    rt->on_error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  rt->on_error = mode;
  rt->error_fn = NULL;
  rt->error_ud = NULL;
}

/* loom.configure{clock = "real"|"manual"|"autojump"|fn,
 *                on_error = "print"|"raise"|fn} */
static int l_configure(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  int clock = LOOM_CLOCK_REAL, mode = LOOM_ONERR_PRINT;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    if (k == NULL || (strcmp(k, "clock") != 0 && strcmp(k, "on_error") != 0))
      return luaL_argerror(L, 1,
                           lua_pushfstring(L,
                                           "unknown option '%s' "
                                           "(expected 'clock' or 'on_error')",
                                           k ? k : luaL_typename(L, -2)));
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "clock");    /* 2 */
  lua_getfield(L, 1, "on_error"); /* 3 */
  switch (lua_type(L, 2)) {
  case LUA_TNIL: break;
  case LUA_TFUNCTION: clock = LOOM_CLOCK_HOST; break;
  case LUA_TSTRING: {
    const char *c = lua_tostring(L, 2);
    if (strcmp(c, "real") == 0) clock = LOOM_CLOCK_REAL;
    else if (strcmp(c, "manual") == 0) clock = LOOM_CLOCK_MANUAL;
    else if (strcmp(c, "autojump") == 0) clock = LOOM_CLOCK_AUTOJUMP;
    else
      return luaL_argerror(
        L, 1,
        lua_pushfstring(L,
                        "unknown clock \"%s\" "
                        "(expected \"real\", \"manual\", \"autojump\" or "
                        "a function)",
                        c));
    break;
  }
  default:
    return luaL_argerror(L, 1,
                         lua_pushfstring(L,
                                         "clock must be a string "
                                         "or a function, got %s",
                                         luaL_typename(L, 2)));
  }
  switch (lua_type(L, 3)) {
  case LUA_TNIL: break;
  case LUA_TFUNCTION: mode = LOOM_ONERR_FUNC; break;
  case LUA_TSTRING: {
    const char *m = lua_tostring(L, 3);
    if (strcmp(m, "print") == 0) mode = LOOM_ONERR_PRINT;
    else if (strcmp(m, "raise") == 0) mode = LOOM_ONERR_RAISE;
    else
      return luaL_argerror(
        L, 1,
        lua_pushfstring(L,
                        "unknown on_error "
                        "\"%s\" (expected \"print\", \"raise\" or a "
                        "function)",
                        m));
    break;
  }
  default:
    return luaL_argerror(L, 1,
                         lua_pushfstring(L,
                                         "on_error must be a "
                                         "string or a function, got %s",
                                         luaL_typename(L, 3)));
  }
  loom__check_open(L, rt, "configure");
  if (rt->next_id > 0)
    return luaL_error(L, "loom.configure: the runtime has already run tasks");
  set_clock(L, rt, clock, clock == LOOM_CLOCK_HOST ? 2 : 0);
  set_on_error(L, rt, mode, mode == LOOM_ONERR_FUNC ? 3 : 0);
  return 0;
}

/* ---- the borrowed loop -------------------------------------------------- */

static void noop_timer_cb(uv_timer_t *h) { (void)h; }

/* Arm the timer so that the host's poll does not block past loom's work:
 * at once when tasks are ready (or wait for a frame), else at the next
 * deadline (ref'd: pending deadlines keep the host's uv_run going); stopped
 * when loom has nothing timed. */
static void arm_borrowed_timer(loom_rt *rt) {
  loom_timer *tm = loom__heap_min(rt);
  double ms;
  if (rt->closed) return;
  if (rt->nready > 0 || rt->frame_waiters.n > 0) ms = 0;
  else if (tm == NULL || rt->clock == LOOM_CLOCK_MANUAL) {
    uv_timer_stop(&rt->timer);
    return;
  } else {
    ms = ceil((tm->when - loom__time(rt)) * 1000.0);
    if (!(ms > 0)) ms = 0;
    if (ms > 86400000.0) ms = 86400000.0;
  }
  uv_timer_start(&rt->timer, noop_timer_cb, (uint64_t)ms, 0);
  uv_ref((uv_handle_t *)&rt->timer);
}

/* A task became ready outside loom's own steps on a borrowed loop: a due
 * timer keeps the host's uv_run from returning before check_cb steps. */
void loom__borrowed_kick(loom_rt *rt) {
  if (rt->closed) return;
  uv_timer_start(&rt->timer, noop_timer_cb, 0, 0);
  uv_ref((uv_handle_t *)&rt->timer);
}

static void prepare_cb(uv_prepare_t *h) {
  arm_borrowed_timer((loom_rt *)h->data);
}

/* After the host's poll: one step of loom (a frame), errors to the hook. */
static void check_cb(uv_check_t *h) {
  loom_rt *rt = (loom_rt *)h->data;
  lua_State *L = rt->host_L;
  int top;
  if (rt->closed || L == NULL || rt->current != NULL || rt->stepping ||
      rt->running)
    return;
  top = lua_gettop(L);
  if (loom__step_pcall(L, rt, 0, 0) != LUA_OK)
    loom__print_failure(L, "error in a step run by the host's libuv loop");
  if (loom__deliver_pcall(L, rt, 0) != LUA_OK)
    loom__print_failure(L, "cannot deliver an unhandled error");
  lua_settop(L, top);
  arm_borrowed_timer(rt);
}

/* Move the runtime to `loop` (NULL: its own). Only before tasks ran. */
static void use_loop(loom_rt *rt, lua_State *L, uv_loop_t *loop) {
  if (loop == NULL) loop = &rt->own_loop;
  if (loop == rt->loop) return;
  loom__rt_close_handles(rt);
  rt->loop = loop;
  rt->borrowed = loop != &rt->own_loop;
  uv_timer_init(loop, &rt->timer);
  uv_unref((uv_handle_t *)&rt->timer);
  rt->timer.data = rt;
  if (rt->borrowed) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    rt->host_L = lua_tothread(L, -1);
    lua_pop(L, 1);
    uv_prepare_init(loop, &rt->prepare);
    uv_check_init(loop, &rt->check);
    rt->prepare.data = rt->check.data = rt;
    uv_prepare_start(&rt->prepare, prepare_cb);
    uv_check_start(&rt->check, check_cb);
    uv_unref((uv_handle_t *)&rt->prepare);
    uv_unref((uv_handle_t *)&rt->check);
  } else rt->host_L = NULL;
}

/* Status of the C API for work run under lua_pcall. */
static int pcall_status(int status) {
  if (status == LUA_OK) return LOOM_OK;
  return status == LUA_ERRMEM ? LOOM_ERRMEM : LOOM_ERRRUN;
}

/* ---- the C API ---------------------------------------------------------- */

static int open_protected(lua_State *L) {
  const loom_config *cfg = (const loom_config *)lua_touserdata(L, 1);
  loom_rt *rt = loom__state_rt(L, 1);
  loom_config c;
  memset(&c, 0, sizeof c);
  if (cfg != NULL) memcpy(&c, cfg, cfg->size);
  if (rt->closed) {
    lua_pushinteger(L, LOOM_ECLOSED);
    return 1;
  }
  if (rt->next_id > 0 || loom__rt_busy(rt)) {
    lua_pushinteger(L, LOOM_ERRSTATE);
    return 1;
  }
  set_clock(L, rt, c.clock, 0);
  rt->clock_fn = c.clock_fn;
  rt->clock_ud = c.clock_ud;
  set_on_error(L, rt, c.on_error ? LOOM_ONERR_C : LOOM_ONERR_PRINT, 0);
  rt->error_fn = c.on_error;
  rt->error_ud = c.error_ud;
  rt->wake = c.wake;
  rt->wake_ud = c.wake_ud;
  use_loop(rt, L, (uv_loop_t *)c.uv_loop);
  lua_pushinteger(L, LOOM_OK);
  return 1;
}

LOOM_API int loom_open(lua_State *L, const loom_config *cfg) {
  int status;
  if (L == NULL) return LOOM_ERRARG;
  if (cfg != NULL) {
    if (cfg->size < offsetof(loom_config, clock_fn) ||
        cfg->size > sizeof(loom_config))
      return LOOM_ERRARG;
    if (cfg->clock < LOOM_CLOCK_REAL || cfg->clock > LOOM_CLOCK_HOST)
      return LOOM_ERRARG;
    if (cfg->clock == LOOM_CLOCK_HOST &&
        (cfg->size < offsetof(loom_config, clock_ud) || cfg->clock_fn == NULL))
      return LOOM_ERRARG;
  }
  if (!lua_checkstack(L, 4)) return LOOM_ERRMEM;
  lua_pushcfunction(L, open_protected);
  lua_pushlightuserdata(L, (void *)cfg);
  status = lua_pcall(L, 1, 1, 0);
  if (status != LUA_OK) return pcall_status(status);
  status = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return status;
}

/* The runtime of L, or NULL (no state, or loom never loaded or opened). */
static loom_rt *live_rt(lua_State *L) {
  return L == NULL ? NULL : loom__state_rt(L, 0);
}

LOOM_API int loom_step(lua_State *L, double budget, int max_resumes,
                       int *ready_left) {
  loom_rt *rt = live_rt(L);
  int status;
  if (ready_left) *ready_left = 0;
  if (L == NULL || isnan(budget) || budget < 0 || max_resumes < 0)
    return LOOM_ERRARG;
  if (rt == NULL) return LOOM_ERRSTATE;
  if (rt->closed) return LOOM_ECLOSED;
  if (loom__rt_busy(rt)) return LOOM_ERRSTATE;
  if (!lua_checkstack(L, 8)) return LOOM_ERRMEM;
  status = loom__step_pcall(L, rt, budget, (double)max_resumes);
  if (status == LUA_OK) status = loom__deliver_pcall(L, rt, 1);
  if (ready_left)
    *ready_left = (int)(rt->nready > INT_MAX ? INT_MAX : rt->nready);
  return pcall_status(status);
}

LOOM_API int loom_advance(lua_State *L, double dt) {
  loom_rt *rt = live_rt(L);
  if (L == NULL || isnan(dt) || dt < 0 || isinf(dt)) return LOOM_ERRARG;
  if (rt == NULL) return LOOM_ERRSTATE;
  if (rt->closed) return LOOM_ECLOSED;
  if (rt->clock != LOOM_CLOCK_MANUAL || rt->stepping) return LOOM_ERRSTATE;
  rt->clock_now += dt;
  return LOOM_OK;
}

LOOM_API double loom_now(lua_State *L) {
  loom_rt *rt = live_rt(L);
  if (rt == NULL) return 0;
  if (rt->closed) return rt->closed_time;
  return loom__time(rt);
}

LOOM_API double loom_next_deadline(lua_State *L) {
  loom_rt *rt = live_rt(L);
  loom_timer *tm;
  if (rt == NULL || rt->closed) return HUGE_VAL;
  tm = loom__heap_min(rt);
  return tm ? tm->when : HUGE_VAL;
}

LOOM_API int loom_timeout_ms(lua_State *L) {
  loom_rt *rt = live_rt(L);
  loom_timer *tm;
  double now, ms;
  if (rt == NULL || rt->closed) return -1;
  if (rt->nready > 0 || rt->errq_len > 0) return 0;
  tm = loom__heap_min(rt);
  if (tm == NULL) return -1;
  now = loom__time(rt);
  if (tm->when <= now) return 0; /* a due deadline is ready work */
  if (rt->clock == LOOM_CLOCK_MANUAL) return -1;
  if (rt->clock == LOOM_CLOCK_AUTOJUMP && !uv_loop_alive(rt->loop) &&
      loom__remote_open_count(rt) == 0)
    return 0; /* the next step jumps to it */
  ms = ceil((tm->when - now) * 1000.0);
  if (ms > INT_MAX) return INT_MAX;
  return (int)ms;
}

LOOM_API int loom_backend_fd(lua_State *L) {
  loom_rt *rt = live_rt(L);
  if (rt == NULL || rt->closed) return -1;
  return uv_backend_fd(rt->loop);
}

LOOM_API int loom_close(lua_State *L, double grace) {
  loom_rt *rt = live_rt(L);
  if (L == NULL || isnan(grace) || grace < 0) return LOOM_ERRARG;
  if (rt == NULL || rt->closed) return LOOM_OK;
  if (loom__rt_busy(rt)) return LOOM_ERRSTATE;
  if (!lua_checkstack(L, 4)) return LOOM_ERRMEM;
  return pcall_status(loom__rt_close(L, rt, grace));
}

/* ---- Lua functions ------------------------------------------------------ */

static const luaL_Reg embed_funcs[] = {
  {"configure", l_configure},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_embed(lua_State *L) {
  loom__setfuncs(L, 1, embed_funcs);
  return 0;
}
