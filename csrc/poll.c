/*
 * poll.c: fd readiness (loom.wait_readable / loom.wait_writable) on
 * uv_poll, so that other libraries' non-blocking sockets can run under
 * loom. libuv allows one poll handle per fd, so each fd being waited on
 * has one malloc'd watcher with a reader slot and a writer slot; the
 * watcher's handle is closed as soon as both slots are empty (an fd the
 * caller closes later must not stay registered), and freed in its close
 * callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

#define STATE_MT "loom.core.PollState"

typedef struct poll_state poll_state;

/* A waiter's record, a userdata on its own stack (anchored while it is
 * parked): the outcome outlives the watcher, which may be freed before the
 * waiter resumes. */
typedef struct wait_rec {
  loom_task *task;
  int err;
} wait_rec;

typedef struct watcher {
  uv_poll_t handle; /* handle.data points here */
  poll_state *st;
  loom_list link; /* node in st->active while not closing */
  int fd;
  wait_rec *reader, *writer;
  unsigned char closing;
} watcher;

/* Reference counted: the state userdata and every live handle. */
struct poll_state {
  int refs;
  loom_list active; /* watchers whose handle is not closing */
  lua_Integer live_handles;
};

static void state_unref(poll_state *st) {
  if (--st->refs == 0) free(st);
}

static void close_cb(uv_handle_t *h) {
  watcher *w = (watcher *)h->data;
  poll_state *st = w->st;
  st->live_handles--;
  free(w);
  state_unref(st);
}

static void watcher_close(watcher *w) {
  if (w->closing) return;
  w->closing = 1;
  loom__list_remove(&w->link);
  uv_close((uv_handle_t *)&w->handle, close_cb);
}

/* Poll for what the waiters want; close the handle when nobody waits. */
static void poll_cb(uv_poll_t *h, int status, int events);

/* Poll for what the waiters want; close the handle when nobody waits. */
static int watcher_update(watcher *w) {
  int events = (w->reader ? UV_READABLE : 0) | (w->writer ? UV_WRITABLE : 0);
  if (events == 0) {
    watcher_close(w);
    return 0;
  }
  return uv_poll_start(&w->handle, events, poll_cb);
}

static void wake_rec(wait_rec **slot, int status) {
  wait_rec *r = *slot;
  *slot = NULL;
  r->err = status < 0 ? status : 0;
  loom__wake(r->task, status < 0 ? LOOM_WAKE_ERROR : LOOM_WAKE_OK);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  watcher *w = (watcher *)h->data;
  if (w->reader != NULL &&
      (status < 0 || (events & (UV_READABLE | UV_DISCONNECT))))
    wake_rec(&w->reader, status);
  if (w->writer != NULL &&
      (status < 0 || (events & (UV_WRITABLE | UV_DISCONNECT))))
    wake_rec(&w->writer, status);
  watcher_update(w);
}

static void wait_abort(loom_task *t) {
  watcher *w = (watcher *)t->wait_data;
  if (w->reader != NULL && w->reader->task == t) w->reader = NULL;
  if (w->writer != NULL && w->writer->task == t) w->writer = NULL;
  watcher_update(w);
}

static int raise_uv(lua_State *L, const char *fname, int err, int fd) {
  char where[32];
  snprintf(where, sizeof where, "fd %d", fd);
  return loom__raise_oserror(L, fname, err, where);
}

/* Stack: fd(1) fname(2) record(3). */
static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  wait_rec *r = (wait_rec *)lua_touserdata(L, 3);
  (void)status;
  (void)ctx;
  loom__wake_outcome(L, t, 1);
  if (r->err != 0)
    return raise_uv(L, lua_tostring(L, 2), r->err, (int)lua_tointeger(L, 1));
  return 0;
}

/* core.poll_wait(fd, writable) */
static int l_poll_wait(lua_State *L) {
  lua_Integer fd = luaL_checkinteger(L, 1);
  int writable = lua_toboolean(L, 2);
  const char *fname = writable ? "wait_writable" : "wait_readable";
  poll_state *st = *(poll_state **)lua_touserdata(L, lua_upvalueindex(2));
  loom_task *t;
  watcher *w = NULL;
  wait_rec *rec;
  loom_list *n;
  int err;
  if (fd < 0 || fd > 0x7fffffff)
    return loom__argerror(L, 1, "fd must be a non-negative integer");
  t = loom__check_blocking(L, fname, 1);
  loom__cancel_point(L, t);
  for (n = st->active.next; n != &st->active; n = n->next) {
    watcher *c = loom__container_of(n, watcher, link);
    if (c->fd == (int)fd) {
      w = c;
      break;
    }
  }
  if (w != NULL && (writable ? w->writer : w->reader) != NULL) {
    lua_pushfstring(L, "Another task is already %s this resource",
                    writable ? "writing to" : "reading from");
    return loom__raise_error(L, "BusyResourceError", lua_tostring(L, -1), NULL);
  }
  if (w == NULL) {
    w = (watcher *)calloc(1, sizeof *w);
    if (w == NULL) return luaL_error(L, "loom: out of memory");
    err = uv_poll_init(t->rt->loop, &w->handle, (int)fd);
    if (err != 0) {
      free(w);
      return raise_uv(L, fname, err, (int)fd);
    }
    w->handle.data = w;
    w->fd = (int)fd;
    w->st = st;
    st->refs++;
    st->live_handles++;
    loom__list_push(&st->active, &w->link);
  }
  lua_settop(L, 1);
  lua_pushstring(L, fname);                               /* 2 */
  rec = (wait_rec *)lua_newuserdatauv(L, sizeof *rec, 0); /* 3 */
  rec->task = t;
  rec->err = 0;
  if (writable) w->writer = rec;
  else w->reader = rec;
  err = watcher_update(w);
  if (err != 0) {
    if (writable) w->writer = NULL;
    else w->reader = NULL;
    watcher_update(w);
    return raise_uv(L, fname, err, (int)fd);
  }
  loom__park(t, wait_abort, fname, w);
  return loom__suspend(L, (lua_KContext)w, k_wait);
}

/* core.poll_stats() -> {handles =}: live poll handles (closing included). */
static int l_poll_stats(lua_State *L) {
  poll_state *st = *(poll_state **)lua_touserdata(L, lua_upvalueindex(2));
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, st->live_handles);
  lua_setfield(L, -2, "handles");
  return 1;
}

/* __gc of the state (before the runtime's, which runs the loop once more
 * to finish closes): close every handle with our callback. After loom_close
 * on the runtime's own loop, that loop already closed the handles (of tasks
 * that outlived the grace) and is closed itself: the watchers are only
 * freed. */
static int l_state_gc(lua_State *L) {
  poll_state **box = (poll_state **)lua_touserdata(L, 1);
  poll_state *st = *box;
  loom_rt *rt = loom__rt(L);
  *box = NULL;
  if (st == NULL) return 0;
  while (!loom__list_empty(&st->active)) {
    watcher *w = loom__container_of(st->active.next, watcher, link);
    w->reader = w->writer = NULL;
    if (rt->closed && !rt->borrowed) {
      loom__list_remove(&w->link);
      st->live_handles--;
      free(w);
      /* its reference on st; the box's own keeps st until below */
      LOOM_ASSERT(st->refs > 1);
      st->refs--;
    } else {
      watcher_close(w);
    }
  }
  state_unref(st);
  return 0;
}

static const luaL_Reg poll_funcs[] = {
  {"poll_wait", l_poll_wait},
  {"poll_stats", l_poll_stats},
  {NULL, NULL},
};

static const luaL_Reg state_meta[] = {
  {"__gc", l_state_gc},
  {NULL, NULL},
};

/* __gc closes over rt. */
static const loom_class state_class = {STATE_MT, state_meta, NULL, NULL,
                                       NULL,     NULL,       0};

/* Stack: rt(1) module(top). */
int loom__open_poll(lua_State *L) {
  poll_state **box;
  loom__class_register(L, 0, &state_class, 1, 1);
  lua_pop(L, 1);
  box = (poll_state **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, STATE_MT);
  *box = (poll_state *)calloc(1, sizeof **box);
  if (*box == NULL) return luaL_error(L, "loom: out of memory");
  (*box)->refs = 1;
  loom__list_init(&(*box)->active);
  lua_pushvalue(L, -2); /* the module */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3); /* upvalues: rt, state */
  luaL_setfuncs(L, poll_funcs, 2);
  lua_pop(L, 2);
  return 0;
}
