/*
 * loom.h: the public C API of loom, for hosts that embed Lua 5.4.
 *
 * One runtime exists per Lua state. A host either loads the Lua module as
 * usual (require "loom", with luaopen_loom_core found on package.cpath or
 * registered with luaL_requiref), or links libloom and calls loom_preload()
 * so that require "loom" needs no files on disk.
 *
 * A host that owns its frame loop calls loom_step() once per frame; a host
 * that runs its own libuv loop passes it in loom_config.uv_loop and loom
 * drives itself from that loop. Every function returns a status (LOOM_OK or
 * one of the codes below) or a plain value, and none raises (longjmps) into
 * the host: work that can raise runs under lua_pcall, and LOOM_ERRRUN /
 * LOOM_ERRMEM leave the error object on top of L's stack, like lua_pcall.
 *
 * Thread rule: every function taking a lua_State runs on the thread that
 * owns that state. Only loom_remote_post() and loom_remote_release() may be
 * called from any thread.
 */
#ifndef LOOM_H
#define LOOM_H

#include <lua.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_VERSION "0.2.0"
#define LOOM_VERSION_NUM 200 /* bumped with the API */

#if defined(__GNUC__)
#define LOOM_API __attribute__((visibility("default")))
#else
#define LOOM_API
#endif

/* Statuses. */
enum {
  LOOM_OK = 0,
  LOOM_ERRRUN,   /* an error was raised; the error object is on the stack */
  LOOM_ERRMEM,   /* out of memory; the message is on the stack */
  LOOM_ERRSTATE, /* right arguments at the wrong time */
  LOOM_ERRARG,   /* a bad argument */
  LOOM_ECLOSED   /* the runtime (or remote) was closed */
};

/* Clocks. */
enum {
  LOOM_CLOCK_REAL = 0, /* monotonic wall clock (default) */
  LOOM_CLOCK_MANUAL,   /* starts at 0, moves only by loom_advance */
  LOOM_CLOCK_AUTOJUMP, /* real semantics, jumps to the next deadline when idle
                        */
  LOOM_CLOCK_HOST      /* clock_fn(clock_ud), seconds, non-decreasing */
};

typedef double (*loom_clock_fn)(void *ud);
/* Receives each error that no task group can receive; err_idx is a stack
 * index of the error in L, task_name the failing task's (or host group's)
 * name. Must not yield or longjmp. */
typedef void (*loom_error_fn)(void *ud, lua_State *L, int err_idx,
                              const char *task_name);
/* Called from any thread when work arrived and the host should step soon. */
typedef void (*loom_wake_fn)(void *ud);

typedef struct loom_config {
  size_t size; /* sizeof(loom_config): lets the struct grow */
  int clock;   /* LOOM_CLOCK_REAL | _MANUAL | _AUTOJUMP | _HOST */
  loom_clock_fn clock_fn;
  void *clock_ud;
  loom_error_fn on_error; /* NULL: print to stderr */
  void *error_ud;
  loom_wake_fn wake; /* optional */
  void *wake_ud;
  void *uv_loop; /* a host uv_loop_t* to run on (borrowed), or NULL */
} loom_config;

/* The Lua module entry point (require "loom.core"). */
LOOM_API int luaopen_loom_core(lua_State *L);

/* Put loom, loom.core and the Lua submodules into package.preload (libloom
 * only: the Lua front is embedded in the library). */
LOOM_API int loom_preload(lua_State *L);
/* Configure the runtime of L before any task was spawned; cfg NULL means
 * defaults. May be called before or after require "loom", repeatedly. */
LOOM_API int loom_open(lua_State *L, const loom_config *cfg);
/* Run one bounded slice without blocking (see loom.step). budget in
 * seconds and max_resumes: 0 means no limit. ready_left may be NULL. */
LOOM_API int loom_step(lua_State *L, double budget, int max_resumes,
                       int *ready_left);
/* Manual clock only: move time by dt >= 0 seconds. */
LOOM_API int loom_advance(lua_State *L, double dt);
/* Seconds on the runtime clock. */
LOOM_API double loom_now(lua_State *L);
/* How long the host may wait for events: 0 when work is ready, -1 when idle
 * with no deadline, else milliseconds until the next deadline. */
LOOM_API int loom_timeout_ms(lua_State *L);
/* The earliest deadline on the runtime clock; HUGE_VAL if none. */
LOOM_API double loom_next_deadline(lua_State *L);
/* libuv's backend fd, for a host poller; -1 if none. */
LOOM_API int loom_backend_fd(lua_State *L);
/* Cancel every host group and the root, step until all finished (at most
 * grace seconds), close every handle, free all memory. Idempotent. */
LOOM_API int loom_close(lua_State *L, double grace);

/* A thread-safe mailbox into a runtime. Refcounted: it outlives the
 * runtime; posts after loom_close get LOOM_ECLOSED. */
typedef struct loom_remote loom_remote;
/* Runs on the owner thread, in a step or a pass of loom.run, with L free
 * to use; must not yield. */
typedef void (*loom_post_fn)(lua_State *L, void *ud);
LOOM_API loom_remote *loom_remote_open(lua_State *L);
/* Any thread. Posts of one remote run in order. */
LOOM_API int loom_remote_post(loom_remote *r, loom_post_fn fn, void *ud);
/* Any thread. Drops the caller's reference. */
LOOM_API void loom_remote_release(loom_remote *r);

#ifdef __cplusplus
}
#endif

#endif
