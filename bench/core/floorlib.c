/*
 * floorlib.c: the two C pieces the bare-Lua floors (bench/core/floors.lua)
 * cannot write in Lua. Built by bench/core/floors.sh into
 * bench/out/floorlib.so. For benchmarks only.
 *
 *   floorlib.handle()        a full userdata of 16 bytes with one user value,
 *                            the smallest object a runtime can hand out as a
 *                            task handle (a pointer + a generation) or an
 *                            event; its metatable's __index has `set` (a C
 *                            function doing nothing) and `wait` (yields the
 *                            handle), the calls of the W3 script.
 *   floorlib.callk(f, ...)   calls f(...) through lua_callk from a C
 *                            function, so a coroutine that yields inside f is
 *                            parked under a C frame (as a task whose body is
 *                            called by a C task_main); returns f's results.
 *   floorlib.drive(co, m)    resumes the coroutine co m times from C
 *                            (lua_resume, results dropped), as a scheduler
 *                            written in C does: the switch floor without
 *                            coroutine.resume's own call.
 *   floorlib.spawn_run(runner, fn, n, handles)
 *                            the W1 floor with the scheduler in C: n tasks
 *                            of fn queued (a FIFO: an array slot each, holding
 *                            fn, or with handles a 16-byte userdata handle
 *                            holding fn in its user value), then run in order
 *                            on one pooled coroutine running runner (which
 *                            calls each function it is resumed with and
 *                            yields after it), each slot cleared after.
 *   floorlib.spawn_yield_run(body, n, handles)
 *                            the W2 floor in C: n tasks spawned (a FIFO
 *                            slot each, with handles a 16-byte userdata per
 *                            task as well), then a FIFO scheduler: each task
 *                            gets its own coroutine running body (all n are
 *                            suspended at once, so none can come from a
 *                            pool) and is resumed; a task that yields goes
 *                            to the back of the FIFO, one that ends is
 *                            dropped. Returns the number of resumes.
 *   floorlib.event(), floorlib.run(f1, f2, ...)
 *                            the W3 contract floor: the least a runtime
 *                            must do per switch to keep loom's contract for
 *                            events, and nothing more (see "W3 contract
 *                            floor" below). event() makes an event (a
 *                            userdata with a FIFO of waiters); run() runs
 *                            each function as a task on its own coroutine,
 *                            FIFO, until all have returned.
 *   floorlib.group_run(body)  the W1 contract floor: the least a runtime
 *                            must do per task to keep loom's contract for
 *                            tg:start_soon (see "W1 contract floor"
 *                            below). body(tg) is called with a task group
 *                            whose start_soon(fn, ...) returns a handle;
 *                            the tasks then run, FIFO, each on a pooled
 *                            coroutine, until the group has none left.
 *   floorlib.timers(body, delays, fresh)
 *                            the W4 floor with the scheduler in C: for each
 *                            delay d (ms) of the array, a coroutine running
 *                            body(d) is created and resumed until it yields
 *                            (parks), and a libuv timer of d ms is started
 *                            for it (from the loop's cached time, or from a
 *                            fresh clock read when fresh is true); each timer
 *                            resumes its coroutine to its end and unanchors
 *                            it. Returns the seconds to park all, and the
 *                            total seconds until the last has finished.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

static int l_floor_handle(lua_State *L) {
  lua_newuserdatauv(L, 16, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return 1;
}

static int l_floor_set(lua_State *L) {
  (void)L;
  return 0;
}

static int l_floor_wait(lua_State *L) {
  lua_settop(L, 1);
  return lua_yield(L, 1);
}

/* Continuation of callk: f's results are on the stack above index 1. */
static int callk_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L) - 1;
}

static int l_floor_callk(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushvalue(L, 1);
  lua_insert(L, 2);
  lua_callk(L, n - 1, LUA_MULTRET, 0, callk_k);
  return callk_k(L, LUA_OK, 0);
}

static int l_floor_drive(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  lua_Integer m = luaL_checkinteger(L, 2), i;
  luaL_argcheck(L, co != NULL, 1, "coroutine expected");
  for (i = 0; i < m; i++) {
    int nres, st = lua_resume(co, L, 0, &nres);
    if (st != LUA_YIELD) return luaL_error(L, "drive: coroutine did not yield");
    lua_pop(co, nres);
  }
  return 0;
}

static int l_floor_spawn_run(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 3), i;
  int handles = lua_toboolean(L, 4), nres;
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 4);
  lua_createtable(L, (int)n, 0); /* 5: the FIFO */
  co = lua_newthread(L);         /* 6: the pooled coroutine */
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  for (i = 1; i <= n; i++) { /* spawn */
    if (handles) {
      lua_newuserdatauv(L, 16, 1);
      lua_pushvalue(L, 2);
      lua_setiuservalue(L, -2, 1);
    } else {
      lua_pushvalue(L, 2);
    }
    lua_rawseti(L, 5, i);
  }
  for (i = 1; i <= n; i++) { /* run */
    lua_rawgeti(L, 5, i);
    if (handles) lua_getiuservalue(L, -1, 1);
    lua_xmove(L, co, 1);
    if (lua_resume(co, L, 1, &nres) != LUA_YIELD)
      return luaL_error(L, "spawn_run: the runner did not yield");
    lua_pop(co, nres);
    lua_settop(L, 6);
    lua_pushnil(L);
    lua_rawseti(L, 5, i);
  }
  return 0;
}

static int l_floor_spawn_yield_run(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 2), head = 1, tail = 0, resumes = 0;
  int handles = lua_toboolean(L, 3), nres;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 3);
  lua_createtable(L, (int)n, 0); /* 4: the FIFO: handle or true, then co */
  while (tail < n) { /* spawn */
    if (handles)
      lua_newuserdatauv(L, 16, 1);
    else
      lua_pushboolean(L, 1);
    lua_rawseti(L, 4, ++tail);
  }
  while (head <= tail) {
    lua_State *co;
    int st;
    lua_rawgeti(L, 4, head);
    if (lua_type(L, -1) != LUA_TTHREAD) { /* first run: its coroutine */
      lua_pop(L, 1);
      co = lua_newthread(L);
      lua_pushvalue(L, 1);
      lua_xmove(L, co, 1);
    } else {
      co = lua_tothread(L, -1);
    }
    lua_pushnil(L);
    lua_rawseti(L, 4, head++);
    st = lua_resume(co, L, 0, &nres);
    resumes++;
    if (st == LUA_YIELD) { /* to the back of the FIFO */
      lua_pop(co, nres);
      lua_rawseti(L, 4, ++tail);
    } else if (st == LUA_OK) {
      lua_pop(L, 1); /* dropped */
    } else {
      return luaL_error(L, "spawn_yield_run: task failed");
    }
  }
  lua_pushinteger(L, resumes);
  return 1;
}

typedef struct {
  uv_timer_t timer;
  lua_State *L;  /* the state holding the anchor table at index 4 */
  lua_State *co;
  lua_Integer slot;
} floor_timer;

static long timers_left;

static void floor_timer_cb(uv_timer_t *t) {
  floor_timer *ft = (floor_timer *)t;
  int nres;
  if (lua_resume(ft->co, ft->L, 0, &nres) != LUA_OK) abort();
  lua_pushnil(ft->L);
  lua_rawseti(ft->L, 4, ft->slot); /* unanchored: collectable */
  timers_left--;
}

static int l_floor_timers(lua_State *L) {
  uv_loop_t loop;
  floor_timer *ft;
  lua_Integer n, i;
  int fresh = lua_toboolean(L, 3);
  double t0, t_park, t_end;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 2);
  lua_settop(L, 3);
  lua_createtable(L, (int)n, 0); /* 4: the anchor of every live coroutine */
  ft = malloc(sizeof *ft * (size_t)(n > 0 ? n : 1));
  if (ft == NULL || uv_loop_init(&loop) != 0) return luaL_error(L, "no memory");
  t0 = (double)uv_hrtime() / 1e9;
  uv_update_time(&loop); /* delays count from t0 */
  for (i = 0; i < n; i++) {
    int nres;
    lua_State *co = lua_newthread(L);
    lua_rawseti(L, 4, i + 1);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_rawgeti(L, 2, i + 1);
    lua_xmove(L, co, 1);
    if (lua_resume(co, L, 1, &nres) != LUA_YIELD)
      return luaL_error(L, "timers: body did not park");
    lua_pop(co, nres);
    ft[i].L = L;
    ft[i].co = co;
    ft[i].slot = i + 1;
    uv_timer_init(&loop, &ft[i].timer);
    if (fresh) uv_update_time(&loop);
    lua_rawgeti(L, 2, i + 1);
    uv_timer_start(&ft[i].timer, floor_timer_cb,
                   (uint64_t)lua_tointeger(L, -1), 0);
    lua_pop(L, 1);
  }
  t_park = (double)uv_hrtime() / 1e9;
  timers_left = (long)n;
  uv_run(&loop, UV_RUN_DEFAULT); /* one-shot timers: the loop runs dry */
  t_end = (double)uv_hrtime() / 1e9;
  for (i = 0; i < n; i++) uv_close((uv_handle_t *)&ft[i].timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(ft);
  if (timers_left != 0) return luaL_error(L, "timers: not all fired");
  lua_pushnumber(L, t_park - t0);
  lua_pushnumber(L, t_end - t0);
  return 2;
}

/* ---- W3 contract floor -------------------------------------------------
 * What any runtime keeping loom's contract for events must do per switch,
 * written as plainly as C allows, with none of loom's extras (no groups,
 * no task tree, no hooks, no host frames, no guard against foreign
 * resumes, no assertions):
 *   - ev:set() and ev:wait() check their self (a bad one must raise, not
 *     crash): a full userdata of the event's size with its magic, the same
 *     two API calls as loom's check;
 *   - ev:wait() must be called from a task and where Lua can yield (else a
 *     clear error): the runtime from the C function's upvalue, its running
 *     task compared with L, lua_isyieldable;
 *   - ev:wait() is a checkpoint: it reads the task's cancellation and the
 *     earliest deadline (none here, so one load each);
 *   - a waiter parks in the event's FIFO; set() moves every waiter to the
 *     runtime's FIFO ready queue;
 *   - a woken task learns how it was woken (a cancel raises in it): the
 *     wait yields with a continuation that reads it;
 *   - the scheduler resumes the ready queue in FIFO order from C, and
 *     polls libuv every 512 resumes so that I/O is not starved (loom's
 *     IO_BUDGET).
 * The event is a 32-byte userdata without user values (loom's is 32
 * bytes too); it keeps a pointer to its runtime, so that set and wait need
 * no upvalue look-up.
 */
#define CF_MAGIC_RT 0x63667274u
#define CF_MAGIC_EV 0x63666576u

typedef struct cf_task {
  lua_State *L;
  struct cf_task *next; /* ready queue or an event's waiters */
  int cancelled;        /* a cancel is pending (never, here) */
  int woken_by_cancel;
} cf_task;

typedef struct cf_rt {
  uint32_t magic;
  cf_task *cur;
  cf_task *head, *tail; /* ready FIFO */
  void *deadlines;      /* earliest deadline (none, here) */
  uv_loop_t *loop;
} cf_rt;

typedef struct cf_event {
  uint32_t magic;
  int is_set;
  cf_rt *rt;             /* its runtime: no upvalue look-up in set/wait */
  cf_task *first, *last; /* waiters, FIFO */
} cf_event;

static void cf_enqueue(cf_rt *rt, cf_task *t) {
  t->next = NULL;
  if (rt->tail) rt->tail->next = t;
  else rt->head = t;
  rt->tail = t;
}

static cf_event *cf_check(lua_State *L) {
  cf_event *e = (cf_event *)lua_touserdata(L, 1);
  if (e == NULL || lua_rawlen(L, 1) != sizeof *e || e->magic != CF_MAGIC_EV)
    luaL_error(L, "bad self: an event expected");
  return e;
}

static int l_cf_event(lua_State *L) {
  cf_event *e = (cf_event *)lua_newuserdatauv(L, sizeof *e, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setmetatable(L, -2);
  e->magic = CF_MAGIC_EV;
  e->is_set = 0;
  e->rt = (cf_rt *)lua_touserdata(L, lua_upvalueindex(1));
  e->first = e->last = NULL;
  return 1;
}

static int l_cf_set(lua_State *L) {
  cf_event *e = cf_check(L);
  cf_rt *rt = e->rt;
  cf_task *t;
  if (e->is_set) return 0;
  e->is_set = 1;
  while ((t = e->first) != NULL) {
    e->first = t->next;
    cf_enqueue(rt, t);
  }
  e->last = NULL;
  return 0;
}

static int cf_raise_cancel(lua_State *L) {
  return luaL_error(L, "cancelled");
}

static int k_cf_wait(lua_State *L, int status, lua_KContext ctx) {
  cf_task *t = (cf_task *)ctx;
  (void)status;
  if (t->woken_by_cancel) return cf_raise_cancel(L);
  return 0;
}

static int l_cf_wait(lua_State *L) {
  cf_event *e = cf_check(L);
  cf_rt *rt = e->rt;
  cf_task *t;
  if ((t = rt->cur) == NULL || t->L != L)
    return luaL_error(L, "wait: not inside a task");
  if (!lua_isyieldable(L)) return luaL_error(L, "wait: cannot suspend here");
  if (rt->deadlines != NULL || t->cancelled) return cf_raise_cancel(L);
  if (e->is_set) {
    cf_enqueue(rt, t); /* a schedule point */
  } else {
    t->next = NULL;
    if (e->last) e->last->next = t;
    else e->first = t;
    e->last = t;
  }
  t->woken_by_cancel = 0;
  return lua_yieldk(L, 0, (lua_KContext)t, k_cf_wait);
}

static int l_cf_run(lua_State *L) {
  cf_rt *rt = (cf_rt *)lua_touserdata(L, lua_upvalueindex(1));
  int n = lua_gettop(L), i, since_poll = 0;
  cf_task *tasks = (cf_task *)lua_newuserdatauv(L, sizeof(cf_task) * n, 0);
  for (i = 0; i < n; i++) {
    luaL_checktype(L, i + 1, LUA_TFUNCTION);
    tasks[i].L = lua_newthread(L); /* anchored on L's stack */
    lua_pushvalue(L, i + 1);
    lua_xmove(L, tasks[i].L, 1);
    tasks[i].cancelled = tasks[i].woken_by_cancel = 0;
    cf_enqueue(rt, &tasks[i]);
  }
  while (rt->head != NULL) {
    cf_task *t = rt->head;
    int nres, st;
    rt->head = t->next;
    if (rt->head == NULL) rt->tail = NULL;
    rt->cur = t;
    st = lua_resume(t->L, L, 0, &nres);
    rt->cur = NULL;
    if (st == LUA_YIELD) lua_pop(t->L, nres);
    else if (st != LUA_OK) {
      lua_xmove(t->L, L, 1);
      return lua_error(L);
    }
    if (++since_poll == 512) {
      uv_run(rt->loop, UV_RUN_NOWAIT);
      since_poll = 0;
    }
  }
  return 0;
}

/* [-0, +1] the contract floor's functions, in the table on top. */
static void cf_open(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"set", l_cf_set}, {"wait", l_cf_wait}, {NULL, NULL}};
  cf_rt *rt = (cf_rt *)lua_newuserdatauv(L, sizeof *rt, 0);
  rt->magic = CF_MAGIC_RT;
  rt->cur = rt->head = rt->tail = NULL;
  rt->deadlines = NULL;
  rt->loop = uv_default_loop();
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "contract_rt"); /* anchored by the library */
  lua_createtable(L, 0, 1);           /* the events' metatable */
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  /* [lib, rt, mt] */
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_cf_event, 2); /* upvalues: the runtime, the mt */
  lua_setfield(L, -4, "event");
  lua_pop(L, 1);
  lua_pushcclosure(L, l_cf_run, 1);
  lua_setfield(L, -2, "run");
}

/* ---- W1 contract floor -------------------------------------------------
 * What any runtime keeping loom's contract for tg:start_soon must do per
 * task, and nothing more (no scopes, no context, no task tree, no
 * records, no hooks, no assertions, no leak counters):
 *   - start_soon checks its self (a group, still open) and that fn is a
 *     function (bad input raises, never crashes);
 *   - it returns a handle that outlives the task and answers its outcome:
 *     a 24-byte userdata (magic, done/outcome, the task, an id) with two
 *     user values, the function (a task's name is made from it when asked)
 *     and then the result or error. Its metatable is the group's own,
 *     made once per group, which also names the parent (h:parent() needs
 *     no user value);
 *   - the task's state is a 48-byte C struct from a free list: the ready
 *     FIFO link, its group's doubly linked children (a cancel reaches
 *     every child), the handle, its anchor slot;
 *   - the live task's handle is anchored in an array slot (the GC must
 *     not collect it while the task is alive and only C points at it);
 *   - the task runs on a pooled coroutine under lua_pcallk with a message
 *     handler (an error reaches the group with its traceback);
 *   - at its end: the outcome goes into the handle, the slot, the struct
 *     and the coroutine are given back, the group counts it.
 * The group's body is called directly (no host task parks); then the
 * tasks run FIFO until none is left.
 */
#define CG_MAGIC_GROUP 0x63666770u
#define CG_MAGIC_TASK 0x63667473u
#define CG_SLAB 256
#define CG_POOL 64

typedef struct cg_task {
  struct cg_task *next;          /* ready FIFO, or the free list */
  struct cg_task *gprev, *gnext; /* the group's children */
  struct cg_handle *h;
  int ref; /* anchor slot */
  int nargs;
} cg_task;

typedef struct cg_handle {
  uint32_t magic;
  unsigned char done, outcome;
  cg_task *t;
  lua_Integer id;
} cg_handle;

typedef struct cg_group {
  uint32_t magic;
  int active, nlive;
  cg_task children; /* sentinel of the children's ring */
  cg_task *head, *tail, *free;
  void **slabs;
  int nslabs, npool, npooled, nfree_refs, cap_refs, next_ref;
  int *free_refs;
  lua_Integer next_id;
  lua_State *pool[CG_POOL];
} cg_group;

static int cg_msgh(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  lua_pop(L, 1); /* (a real runtime keeps the traceback with the error) */
  return 1;
}

static int cg_main_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_replace(L, 1);
  }
  return lua_gettop(L);
}

/* [msgh, fn, args...] -> [ok, results... | error] */
static int cg_main(lua_State *L) {
  return cg_main_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0,
                                 cg_main_k),
                   0);
}

static cg_task *cg_take(lua_State *L, cg_group *g) {
  cg_task *t = g->free;
  if (t == NULL) {
    int i;
    void **slabs = (void **)realloc(g->slabs, sizeof(void *) * (g->nslabs + 1));
    cg_task *slab = (cg_task *)malloc(sizeof(cg_task) * CG_SLAB);
    if (slabs == NULL || slab == NULL) luaL_error(L, "not enough memory");
    g->slabs = slabs;
    g->slabs[g->nslabs++] = slab;
    for (i = 0; i < CG_SLAB; i++) {
      slab[i].next = g->free;
      g->free = &slab[i];
    }
    t = g->free;
  }
  g->free = t->next;
  return t;
}

/* tg:start_soon(fn, ...) -> handle. Upvalue 1: the anchor table. */
static int l_cg_spawn(lua_State *L) {
  cg_group *g = (cg_group *)lua_touserdata(L, 1);
  int nargs = lua_gettop(L) - 2, i, ref;
  cg_handle *h;
  cg_task *t;
  if (g == NULL || lua_rawlen(L, 1) != sizeof *g || g->magic != CG_MAGIC_GROUP)
    return luaL_error(L, "bad self: a task group expected");
  if (!g->active) return luaL_error(L, "start_soon: the group is closed");
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return luaL_error(L, "start_soon: a function expected");
  /* (the free slots never outnumber the slots ever used: room for those) */
  if (g->nfree_refs == 0 && g->next_ref == g->cap_refs) {
    int cap = g->cap_refs ? 2 * g->cap_refs : 1024;
    int *refs = (int *)realloc(g->free_refs, sizeof(int) * cap);
    if (refs == NULL) return luaL_error(L, "not enough memory");
    g->free_refs = refs;
    g->cap_refs = cap;
  }
  t = cg_take(L, g);
  h = (cg_handle *)lua_newuserdatauv(L, sizeof *h, 2 + nargs);
  h->magic = CG_MAGIC_TASK;
  h->done = h->outcome = 0;
  h->t = t;
  h->id = ++g->next_id;
  lua_getiuservalue(L, 1, 1); /* the group's handle metatable */
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  for (i = 1; i <= nargs; i++) {
    lua_pushvalue(L, 2 + i);
    lua_setiuservalue(L, -2, 2 + i);
  }
  ref = g->nfree_refs > 0 ? g->free_refs[--g->nfree_refs] : ++g->next_ref;
  lua_pushvalue(L, -1);
  lua_rawseti(L, lua_upvalueindex(1), ref);
  t->h = h;
  t->ref = ref;
  t->nargs = nargs;
  t->gnext = &g->children; /* link last among the children */
  t->gprev = g->children.gprev;
  g->children.gprev->gnext = t;
  g->children.gprev = t;
  g->nlive++;
  t->next = NULL;
  if (g->tail) g->tail->next = t;
  else g->head = t;
  g->tail = t;
  return 1;
}

static int cg_group_gc(lua_State *L) {
  cg_group *g = (cg_group *)lua_touserdata(L, 1);
  int i;
  for (i = 0; i < g->nslabs; i++) free(g->slabs[i]);
  free(g->slabs);
  free(g->free_refs);
  g->slabs = NULL;
  g->free_refs = NULL;
  g->nslabs = 0;
  return 0;
}

/* floorlib.group_run(body): body(tg), then run the group's tasks. */
static int l_cg_run(lua_State *L) {
  cg_group *g;
  int anchor, pooltab, gi, base, i;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_newtable(L); /* 2: the anchor table */
  anchor = 2;
  lua_newtable(L); /* 3: anchors the pooled coroutines */
  pooltab = 3;
  g = (cg_group *)lua_newuserdatauv(L, sizeof *g, 1); /* 4 */
  gi = 4;
  memset(g, 0, sizeof *g);
  g->magic = CG_MAGIC_GROUP;
  g->active = 1;
  g->children.gnext = g->children.gprev = &g->children;
  lua_createtable(L, 0, 1); /* the group's metatable: __gc, __index */
  lua_pushcfunction(L, cg_group_gc);
  lua_setfield(L, -2, "__gc");
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, anchor);
  lua_pushcclosure(L, l_cg_spawn, 1);
  lua_setfield(L, -2, "start_soon");
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, gi);
  lua_createtable(L, 0, 2); /* the handles' metatable, the group's own */
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__parent"); /* (the host's handle, in a runtime) */
  lua_setiuservalue(L, gi, 1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, gi);
  lua_call(L, 1, 0); /* body(tg): the spawns */
  g->active = 0;
  base = lua_gettop(L);
  while (g->head != NULL) {
    cg_task *t = g->head;
    cg_handle *h = t->h;
    lua_State *co;
    int nres, st, ok;
    g->head = t->next;
    if (g->head == NULL) g->tail = NULL;
    lua_rawgeti(L, anchor, t->ref); /* base + 1: the handle */
    if (g->npool > 0) {
      co = g->pool[--g->npool];
    } else {
      co = lua_newthread(L);
      lua_rawseti(L, pooltab, ++g->npooled);
    }
    lua_pushcfunction(L, cg_main);
    lua_pushcfunction(L, cg_msgh);
    lua_getiuservalue(L, base + 1, 1);
    for (i = 1; i <= t->nargs; i++) lua_getiuservalue(L, base + 1, 2 + i);
    lua_xmove(L, co, 3 + t->nargs);
    st = lua_resume(co, L, 2 + t->nargs, &nres);
    if (st != LUA_OK) return luaL_error(L, "group_run: a task yielded");
    ok = lua_toboolean(co, -nres);
    /* the outcome: the error, or the one result (0 results: nothing) */
    if (!ok || nres == 2) {
      lua_xmove(co, L, 1);
      lua_setiuservalue(L, base + 1, 2);
    }
    h->outcome = ok ? 1 : 2;
    h->done = 1;
    h->t = NULL;
    lua_pushnil(L);
    lua_rawseti(L, anchor, t->ref);
    g->free_refs[g->nfree_refs++] = t->ref;
    t->gprev->gnext = t->gnext;
    t->gnext->gprev = t->gprev;
    g->nlive--;
    lua_settop(co, 0);
    if (g->npool < CG_POOL) g->pool[g->npool++] = co;
    t->next = g->free;
    g->free = t;
    lua_settop(L, base);
  }
  return 0;
}

int luaopen_floorlib(lua_State *L);
int luaopen_floorlib(lua_State *L) {
  static const luaL_Reg fns[] = {{"callk", l_floor_callk},
                                 {"drive", l_floor_drive},
                                 {"timers", l_floor_timers},
                                 {"spawn_run", l_floor_spawn_run},
                                 {"spawn_yield_run", l_floor_spawn_yield_run},
                                 {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"set", l_floor_set}, {"wait", l_floor_wait}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_createtable(L, 0, 1); /* the handles' metatable */
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcclosure(L, l_floor_handle, 1);
  lua_setfield(L, -2, "handle");
  cf_open(L);
  lua_pushcfunction(L, l_cg_run);
  lua_setfield(L, -2, "group_run");
  return 1;
}
