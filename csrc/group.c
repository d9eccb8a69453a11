/*
 * group.c: task groups and tg:start(). A group owns a cancel scope entered
 * by its host task; its children's private scopes hang below it, so
 * cancelling the group reaches every child. The group counts its live
 * children (and pending start() calls) and wakes the host, parked in
 * core.group_wait, when the count drops to zero. Errors of failed children
 * are recorded in order, with their tracebacks, and cancel the group.
 */
#include <string.h>

#include "loom_internal.h"

#define STATUS_MT "loom.TaskStatus"

/* User values of a group userdata. G_TASK_MT: its children's Task
 * metatable, from its OWN_MT_AT-th spawn (own_metatables). */
enum { G_SCOPE = 1, G_ERRORS = 2, G_TRACEBACKS = 3, G_HOST = 4, G_TASK_MT = 5 };

/* The spawn that gives a group metatables of its own (own_metatables). */
#define OWN_MT_AT 8

/* The key of the parent's handle in a group's own Task metatable. */
static const char parent_key = 0;

static loom_group *check_group(lua_State *L, int idx) {
  loom_group *g = (loom_group *)loom__test_ud(L, idx, sizeof *g,
                                              LOOM_MAGIC_GROUP);
  if (g == NULL) g = (loom_group *)luaL_checkudata(L, idx, LOOM_GROUP_MT);
  return g;
}

static void check_active(lua_State *L, loom_group *g) {
  if (g->state == LOOM_GROUP_CLOSED)
    luaL_error(L, "This task group is not active; no new tasks can be "
                  "started.");
}

/* Put a new task under scope `parent` and make it ready. Stack: [...,
 * handle, parent's handle] -> [..., handle]. */
static void launch(lua_State *L, loom_task *t, loom_scope *parent) {
  lua_setiuservalue(L, -2, LOOM_HV_PARENT);
  loom__launch(t, parent);
}

/* The group at 1 (upvalues of tg:start_soon: 2 the Task class's
 * metatable, 3 the group methods) gets two metatables of its own, for a
 * group that spawns many children only (each costs a table, ~350 ns: a
 * group of one child would pay 40 % more):
 * - its own: {__index = itself, cancel_scope = its scope, the methods,
 *   __name, __tostring}, whose metatable is the class's (a name neither
 *   has reaches the class's C __index, which raises the "has no method"
 *   error). A method is then one table hit instead of a call of the class's
 *   C __index (~250 instructions per tg:start_soon).
 * - its children's Task metatable (G_TASK_MT): the class's fields and the
 *   parent's handle. Their handles then need no user value for the parent
 *   (LOOM_SPAWN_PARENT_IN_MT): 104 bytes instead of 120, one write less
 *   per spawn (1e6 spawns: -16 MB, -9 %).
 * May raise (out of memory) before anything changed. */
static void own_metatables(lua_State *L, loom_group *g) {
  lua_createtable(L, 0, 8); /* the children's Task metatable */
  lua_pushnil(L);
  while (lua_next(L, lua_upvalueindex(2)) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_getiuservalue(L, 1, G_HOST);
  lua_rawsetp(L, -2, &parent_key);
  lua_createtable(L, 0, 8);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "__index");
  lua_getiuservalue(L, 1, G_SCOPE);
  lua_setfield(L, -2, "cancel_scope");
  luaL_getmetatable(L, LOOM_GROUP_MT);
  lua_getfield(L, -1, "__name");
  lua_setfield(L, -3, "__name");
  lua_getfield(L, -1, "__tostring");
  lua_setfield(L, -3, "__tostring");
  lua_pushnil(L);
  while (lua_next(L, lua_upvalueindex(3)) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -5);
  }
  lua_setmetatable(L, -2);
  /* Nothing below can fail. */
  lua_setmetatable(L, 1);
  lua_setiuservalue(L, 1, G_TASK_MT);
  g->children_mt = 1;
}

void loom__push_parent(lua_State *L, int hi) {
  loom_handle *h = (loom_handle *)lua_touserdata(L, hi);
  if (!h->parent_in_mt) {
    lua_getiuservalue(L, hi, LOOM_HV_PARENT);
    return;
  }
  if (!lua_getmetatable(L, hi)) { /* (debug.setmetatable(h, nil)) */
    lua_pushnil(L);
    return;
  }
  lua_rawgetp(L, -1, &parent_key);
  lua_remove(L, -2);
}

/* tg:start_soon(fn, ...) / tg:create_task(fn, ...) -> TaskHandle */
static int l_group_spawn(lua_State *L) {
  loom_group *g = check_group(L, 1);
  loom_rt *rt = g->rt;
  int nargs = lua_gettop(L) - 2;
  loom_task *t;
  check_active(L, g);
  loom__check_callable(L, 2, NULL);
  if (g->nspawned < OWN_MT_AT) {
    if (g->nspawned == OWN_MT_AT - 1 && !g->is_host) own_metatables(L, g);
    g->nspawned++;
  }
  if (g->children_mt) {
    lua_getiuservalue(L, 1, G_TASK_MT);
    t = loom__task_new(L, rt, 2, nargs, rt->current, lua_gettop(L),
                       LOOM_SPAWN_MAY_PEND | LOOM_SPAWN_PARENT_IN_MT |
                         LOOM_SPAWN_ANCHORS_IN_UV);
  } else {
    t = loom__task_new(L, rt, 2, nargs, rt->current, lua_upvalueindex(2),
                       LOOM_SPAWN_MAY_PEND | LOOM_SPAWN_ANCHORS_IN_UV);
    lua_getiuservalue(L, 1, G_HOST); /* [..., task, host] */
    lua_setiuservalue(L, -2, LOOM_HV_PARENT);
  }
  t->group = g;
  loom__list_push(&g->children, &t->group_link);
  g->nlive++;
  loom__launch(t, g->scope);
  return 1;
}

/* tg:start(fn, ...) -> value, handle (docs/api.md, TaskGroup:start). */
static int k_start(lua_State *L, int status, lua_KContext ctx) {
  loom_task *caller = loom__task_of(L);
  loom_handle *h = loom__check_handle(L, 1);
  (void)status;
  (void)ctx;
  caller->wait_what = NULL;
  caller->wait_data = NULL;
  if (h->start_state == LOOM_START_MOVED) {
    lua_pushvalue(L, 1); /* [T, value, T] */
    return 2;
  }
  switch (h->outcome) {
  case LOOM_OUT_FAILED:
    lua_getiuservalue(L, 1, LOOM_HV_RESULT);
    return lua_error(L); /* bare: the group is not told */
  case LOOM_OUT_CANCELLED:
    /* Cancelled with the caller: the caller's own Cancelled. Cancelled on
     * its own (its handle's cancel()): TaskCancelled, as result() says. */
    loom__cancel_point(L, caller);
    loom__push_hook(L, caller->rt, "task_cancelled");
    lua_getiuservalue(L, 1, LOOM_HV_RESULT);
    lua_call(L, 1, 1);
    return lua_error(L);
  default:
    if (h->start_state == LOOM_START_NOOP) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, h->start_value_ref);
      luaL_unref(L, LUA_REGISTRYINDEX, h->start_value_ref);
      h->start_value_ref = LUA_NOREF;
      lua_pushvalue(L, 1);
      return 2;
    }
    return luaL_error(L, "child exited without calling "
                         "task_status:started()");
  }
}

static int l_group_start(lua_State *L) {
  loom_group *g = check_group(L, 1);
  loom_task *caller = loom__check_blocking(L, "TaskGroup:start", 1);
  loom_rt *rt = g->rt;
  int nargs = lua_gettop(L) - 2;
  loom_task *t;
  loom_task_ext *x;
  check_active(L, g);
  loom__check_callable(L, 2, NULL);
  loom__task_ext_reserve(L, rt); /* so that loom__task_ext cannot fail */
  lua_newuserdatauv(L, 1, 1);    /* the task_status object */
  luaL_setmetatable(L, STATUS_MT);
  lua_insert(L, 3); /* [tg, fn, status, args...] */
  t = loom__task_new(L, rt, 2, nargs + 1, caller, lua_upvalueindex(2), 0);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 3, 1);
  t->h->start_state = LOOM_START_PENDING;
  x = loom__task_ext(L, t);
  x->start_caller = caller;
  x->start_group = g;
  loom__list_push(&g->starting, &t->group_link);
  g->nlive++;
  /* Before started() the child lives under the caller's scopes. */
  loom__push_task(L, caller);
  launch(L, t, caller->cur);
  lua_replace(L, 1);
  lua_settop(L, 1);
  loom__park(caller, NULL, "start", t);
  return loom__suspend(L, 0, k_start);
}

/* task_status:started([value]) */
static int l_status_started(lua_State *L) {
  loom_task *t, *caller;
  loom_handle *h;
  loom_group *g;
  luaL_checkudata(L, 1, STATUS_MT);
  lua_settop(L, 2);
  lua_getiuservalue(L, 1, 1);
  h = (loom_handle *)lua_touserdata(L, 3);
  t = h->t;
  if (t == NULL || (loom__task_of(L) != t && t->rt->current != t))
    return luaL_error(L, "task_status:started() must be called by the task "
                         "that tg:start() started");
  if (h->start_state == LOOM_START_MOVED)
    return luaL_error(L, "called 'started' twice on the same task status");
  if (h->start_state == LOOM_START_NOOP) return 0;
  caller = t->ext->start_caller;
  g = t->ext->start_group;
  if (loom__effective_cancel(caller->cur) != NULL) {
    /* The start() caller is cancelled: stay under it; start() returns
     * this value if the child then exits cleanly. */
    lua_pushvalue(L, 2);
    h->start_value_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    h->start_state = LOOM_START_NOOP;
    return 0;
  }
  loom__list_remove(&t->scope.link);
  t->scope.parent = g->scope;
  loom__list_push(&g->scope->children, &t->scope.link);
  t->group = g;
  loom__list_remove(&t->group_link);
  loom__list_push(&g->children, &t->group_link);
  /* Moved under a group that was cancelled earlier: whatever the child
   * left parked below itself (tasks of its own groups) is cancelled now. */
  if (loom__effective_cancel(&t->scope) != NULL)
    loom__scope_abort_subtree(t->rt, &t->scope);
  h->start_state = LOOM_START_MOVED;
  t->ext->start_caller = NULL;
  t->ext->start_group = NULL;
  /* (tg:start() gives its child a handle with the parent's slot) */
  LOOM_ASSERT(!h->parent_in_mt);
  loom__push_task(L, g->host);
  lua_setiuservalue(L, 3, LOOM_HV_PARENT);
  lua_pushvalue(L, 2);
  lua_xmove(L, caller->L, 1);
  caller->wake_nargs = 1;
  loom__wake(caller, LOOM_WAKE_OK);
  return 0;
}

void loom__start_child_done(lua_State *L, loom_task *t, int err_idx) {
  loom_task *caller = t->ext->start_caller;
  loom_group *g = t->ext->start_group;
  (void)err_idx;
  /* The value of a no-op started() is returned only by a clean exit. */
  loom_handle *h = t->h;
  if (h->outcome != LOOM_OUT_FINISHED && h->start_value_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, h->start_value_ref);
    h->start_value_ref = LUA_NOREF;
  }
  t->ext->start_caller = NULL;
  t->ext->start_group = NULL;
  loom__list_remove(&t->group_link);
  loom__group_child_done(L, g);
  caller->wake_nargs = 0;
  loom__wake(caller, LOOM_WAKE_OK);
}

void loom__group_record(lua_State *L, loom_group *g, int err_idx, int tb_idx) {
  int gi;
  err_idx = lua_absindex(L, err_idx);
  if (tb_idx) tb_idx = lua_absindex(L, tb_idx);
  luaL_checkstack(L, 6, "loom: recording an error");
  loom__scope_mark_cancelled(g->rt, g->scope, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref);
  gi = lua_gettop(L);
  if (lua_getiuservalue(L, gi, G_ERRORS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, gi, G_ERRORS);
  }
  lua_pushvalue(L, err_idx);
  lua_rawseti(L, -2, g->nerrors + 1);
  if (lua_getiuservalue(L, gi, G_TRACEBACKS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, gi, G_TRACEBACKS);
  }
  if (tb_idx && lua_type(L, tb_idx) == LUA_TSTRING) lua_pushvalue(L, tb_idx);
  else lua_pushboolean(L, 0);
  lua_rawseti(L, -2, g->nerrors + 1);
  g->nerrors++;
  lua_settop(L, gi - 1);
  /* Always cancel the group's own scope, whatever the outer scopes say
   * (marked already; this builds its Cancelled object). */
  loom__scope_cancel_object(L, g->rt, g->scope);
}

static int record_helper(lua_State *L) {
  loom__group_record(L, (loom_group *)lua_touserdata(L, 1), 2, 3);
  return 0;
}

void loom__group_record_safe(lua_State *L, loom_group *g, int err_idx,
                             int tb_idx) {
  /* Cancel first: this allocates nothing, so whatever happens next the
   * group stops its children. */
  loom__scope_mark_cancelled(g->rt, g->scope, 0);
  err_idx = lua_absindex(L, err_idx);
  if (tb_idx) tb_idx = lua_absindex(L, tb_idx);
  if (!lua_checkstack(L, 5)) {
    g->record_failed = 1;
    return;
  }
  lua_pushcfunction(L, record_helper);
  lua_pushlightuserdata(L, g);
  lua_pushvalue(L, err_idx);
  if (tb_idx) lua_pushvalue(L, tb_idx);
  else lua_pushnil(L);
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    /* Out of memory: the group raises "not enough memory" at its exit
     * rather than lose the failure silently. */
    lua_pop(L, 1);
    g->record_failed = 1;
  }
}

void loom__group_child_done(lua_State *L, loom_group *g) {
  g->nlive--;
  if (g->nlive == 0 && g->host == NULL && !g->is_host && g->ref != LUA_NOREF) {
    /* The last child of an orphaned group: release it. (A host group has
     * no host either: hostgroup.c releases it once it is closed.) */
    luaL_unref(L, LUA_REGISTRYINDEX, g->ref);
    g->ref = LUA_NOREF;
    return;
  }
  if (g->nlive == 0 && g->host_waiting) loom__wake(g->host, LOOM_WAKE_OK);
}

void loom__group_orphan(lua_State *L, loom_group *g) {
  loom__list_remove(&g->host_link);
  g->host = NULL;
  g->host_waiting = 0;
  g->state = LOOM_GROUP_CLOSED;
  loom__scope_mark_cancelled(g->rt, g->scope, 0);
  if (g->nlive == 0 && g->ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, g->ref);
    g->ref = LUA_NOREF;
  }
}

/* ---- a finishing task's upcalls (from loom__task_finish) -------------- */

void loom__group_host_finished(lua_State *L, loom_task *t) {
  /* Groups it still hosts (its coroutine was killed inside them): they are
   * cancelled and live on without a host until their children finished. */
  loom_list *groups = loom__task_groups(t);
  while (groups != NULL && !loom__list_empty(groups))
    loom__group_orphan(L,
                       loom__container_of(groups->next, loom_group, host_link));
}

void loom__group_task_done(lua_State *L, loom_task *t, int ud, int err,
                           int tb) {
  loom_handle *h = t->h;
  if (h->start_state == LOOM_START_PENDING ||
      h->start_state == LOOM_START_NOOP) {
    loom__start_child_done(L, t, err);
  } else if (t->group != NULL) {
    loom_group *g = t->group;
    if (h->outcome == LOOM_OUT_FAILED) {
      if (g->is_host) loom__host_child_failed(L, g, ud, err, tb);
      else loom__group_record_safe(L, g, err, tb);
    }
    loom__list_remove(&t->group_link);
    t->group = NULL;
    loom__group_child_done(L, g);
    if (g->is_host) loom__host_child_done(L, g);
  }
}

/* ---- task_tree ---------------------------------------------------------- */

void loom__push_group_node(lua_State *L, loom_group *g, const char *own_dir) {
  loom_list *n;
  int i = 0;
  luaL_checkstack(L, 6, "loom.task_tree: nesting too deep");
  lua_createtable(L, 0, 3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref);
  lua_setfield(L, -2, "group");
  lua_pushboolean(L, g->scope->cancel_called);
  lua_setfield(L, -2, "cancelled");
  lua_newtable(L);
  for (n = g->children.next; n != &g->children; n = n->next) {
    loom__push_task_node(L, loom__container_of(n, loom_task, group_link),
                         own_dir);
    lua_rawseti(L, -2, ++i);
  }
  /* Children of pending tg:start() calls, not yet moved in. */
  for (n = g->starting.next; n != &g->starting; n = n->next) {
    loom__push_task_node(L, loom__container_of(n, loom_task, group_link),
                         own_dir);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "starting");
    lua_rawseti(L, -2, ++i);
  }
  lua_setfield(L, -2, "children");
}

void loom__push_hosted_groups(lua_State *L, loom_task *t, const char *own_dir) {
  loom_list *n, *groups = loom__task_groups(t);
  int i = 0;
  lua_newtable(L);
  for (n = groups ? groups->next : NULL; n != groups; n = n->next) {
    loom__push_group_node(L, loom__container_of(n, loom_group, host_link),
                          own_dir);
    lua_rawseti(L, -2, ++i);
  }
}

static void host_wait_abort(loom_task *t) { (void)t; }

static int wait_more(lua_State *L, loom_group *g, loom_task *t);

/* The host was cancelled while waiting for its children: cancel the
 * group's scope (the same cancellation already reaches the children
 * through the scope tree) and from now on wait shielded. */
static void host_cancelled(loom_group *g) {
  g->host_cancelled = 1;
  loom__scope_mark_cancelled(g->rt, g->scope, 0);
}

static int k_group_wait(lua_State *L, int status, lua_KContext ctx) {
  loom_group *g = (loom_group *)ctx;
  loom_task *t = g->host;
  (void)status;
  if (loom__wake_outcome(L, t, 0) == LOOM_WAKE_CANCELLED) host_cancelled(g);
  return wait_more(L, g, t);
}

/* Every child finished: close the group. Nothing before the scope is left
 * can fail. Stack [tg, msgh, results... | error] ->
 * tg, catches, errors|nil, tracebacks|nil, host_cancelled, ok,
 * results... | error. */
static int group_exit(lua_State *L, loom_group *g, loom_task *t) {
  int catches, ok = !g->body_failed;
  g->host_waiting = 0;
  g->state = LOOM_GROUP_CLOSED;
  loom__list_remove(&g->host_link);
  catches = loom__scope_unlink(L, t, g->scope);
  luaL_unref(L, LUA_REGISTRYINDEX, g->ref);
  g->ref = LUA_NOREF;
  /* Closed: from here on, raising is safe. */
  lua_remove(L, 2);
  luaL_checkstack(L, 6, "loom: task_group");
  if (g->record_failed) {
    /* A failure could not be recorded (out of memory): never drop it. */
    catches = 0;
    if (ok || loom__is_cancelled(L, g->rt, -1)) {
      lua_settop(L, 1);
      lua_pushliteral(L, "not enough memory");
      ok = 0;
    }
  }
  lua_pushboolean(L, catches);
  if (g->nerrors > 0) {
    lua_getiuservalue(L, 1, G_ERRORS);
    lua_getiuservalue(L, 1, G_TRACEBACKS);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_pushboolean(L, g->host_cancelled);
  lua_pushboolean(L, ok);
  lua_rotate(L, 2, 5);
  return lua_gettop(L);
}

static int wait_more(lua_State *L, loom_group *g, loom_task *t) {
  if (g->nlive == 0) return group_exit(L, g, t);
  if (!g->host_cancelled && loom__effective_cancel(t->cur) != NULL)
    host_cancelled(g);
  g->host_waiting = 1;
  loom__park(t, g->host_cancelled ? NULL : host_wait_abort, "task_group", g);
  return loom__suspend(L, (lua_KContext)g, k_group_wait);
}

/* The body returned or raised: record its error, then wait for every
 * child, then close. */
static int k_group_body(lua_State *L, int status, lua_KContext ctx) {
  loom_group *g = (loom_group *)ctx;
  loom_task *t = g->host;
  g->state = LOOM_GROUP_EXITING;
  if (status != LUA_OK && status != LUA_YIELD) {
    g->body_failed = 1;
    if (!loom__is_cancelled(L, g->rt, -1)) {
      /* Its traceback, if the message handler recorded one for it. */
      int tb = 0;
      if (lua_checkstack(L, 2)) {
        loom__push_traceback_for(L, t, lua_gettop(L));
        if (lua_isnil(L, -1)) lua_pop(L, 1);
        else tb = lua_gettop(L);
      }
      loom__group_record_safe(L, g, tb ? tb - 1 : -1, tb);
      if (tb) lua_pop(L, 1);
    }
  }
  if (g->nlive == 0) {
    /* An empty group's exit is one schedule point, never a cancel point. */
    return loom__schedule_point(L, t, (lua_KContext)g, k_group_wait);
  }
  return wait_more(L, g, t);
}

/* core.group_run(body) -> tg, catches, errors|nil, tracebacks|nil,
 * host_cancelled, ok, results... | error. The whole life of a group in one
 * C call: everything that can fail (the group, its scope, its anchor) is
 * made before the host enters the group's scope; the body runs under a
 * protected call; the exit (record, wait for every child, close) allocates
 * nothing until the scope is left, so the children are always waited for
 * and the scope always left, even when memory runs out. */
static int l_group_run(lua_State *L) {
  /* The exit waits, so refuse at once where Lua cannot yield. */
  loom_task *t = loom__check_blocking(L, "task_group", 1);
  loom_group *g;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  luaL_checkstack(L, 8, "loom: task_group");
  loom__task_ext(L, t); /* it hosts a group: the list is there */
  g = (loom_group *)lua_newuserdatauv(L, sizeof *g, G_TASK_MT);
  memset(g, 0, sizeof *g);
  g->magic = LOOM_MAGIC_GROUP;
  g->rt = t->rt;
  g->host = t;
  g->ref = LUA_NOREF;
  loom__list_init(&g->children);
  loom__list_init(&g->starting);
  loom__list_init(&g->host_link);
  luaL_setmetatable(L, LOOM_GROUP_MT);
  g->scope = loom__scope_new(L);
  lua_setiuservalue(L, 2, G_SCOPE);
  loom__push_task(L, t);
  lua_setiuservalue(L, 2, G_HOST);
  lua_pushvalue(L, 2);
  g->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_insert(L, 1);                      /* [tg, body] */
  lua_pushvalue(L, lua_upvalueindex(2)); /* the message handler */
  lua_insert(L, 2);                      /* [tg, msgh, body] */
  lua_pushvalue(L, 1);                   /* [tg, msgh, body, tg] */
  /* Nothing below can fail before the protected call. */
  loom__scope_link(t, g->scope);
  loom__list_push(&t->ext->groups, &g->host_link);
  return k_group_body(
    L, lua_pcallk(L, 1, LUA_MULTRET, 2, (lua_KContext)g, k_group_body),
    (lua_KContext)g);
}

static int l_group_cancel(lua_State *L) {
  loom_group *g = check_group(L, 1);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  loom__scope_cancel(L, g->rt, g->scope, lua_isnil(L, 2) ? 0 : 2, 0);
  return 0;
}

static int l_group_index(lua_State *L) {
  /* A method is a table hit (no type check: a method checks its self);
   * only the property reads the group. */
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  if (lua_type(L, 2) == LUA_TSTRING &&
      strcmp(lua_tostring(L, 2), "cancel_scope") == 0) {
    check_group(L, 1);
    lua_getiuservalue(L, 1, G_SCOPE);
  } else return loom__no_member(L);
  return 1;
}

static int l_group_tostring(lua_State *L) {
  loom_group *g = check_group(L, 1);
  static const char *const states[] = {"open", "exiting", "closed"};
  lua_pushfstring(L, "loom.TaskGroup: %p (%s, %d live)", (void *)g,
                  states[g->state], g->nlive);
  return 1;
}

static const luaL_Reg group_meta[] = {
  {"__tostring", l_group_tostring},
  {NULL, NULL},
};

static const luaL_Reg group_methods[] = {
  {"start_soon", l_group_spawn},
  {"create_task", l_group_spawn},
  {"start", l_group_start},
  {"cancel", l_group_cancel},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_group(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  /* cancel_scope is a property: a C __index, upvalues rt, methods (and a
   * group that spawns many children gets a metatable of its own, see
   * own_metatables) */
  static const loom_class group_class = {
    LOOM_GROUP_MT,   group_meta, group_methods, NULL, l_group_index,
    "group_methods", 0};
  static const luaL_Reg status_methods[] = {{"started", l_status_started},
                                            {NULL, NULL}};
  static const loom_class status_class = {
    STATUS_MT, NULL, status_methods, NULL, NULL, NULL, 0};
  loom__class_register(L, -1, &group_class, 1, 1);
  lua_pop(L, 1);
  /* tg:start_soon closes over (rt, the Task metatable, the methods, the
   * anchor table): a spawn reads no registry slot. A rebuild of the anchor
   * table replaces its upvalue (loom__register_spawner). */
  lua_getfield(L, -1, "group_methods");
  lua_pushvalue(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LOOM_TASK_MT);
  lua_pushvalue(L, -3);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor_ref);
  lua_pushcclosure(L, l_group_spawn, LOOM_SPAWN_ANCHORS_UV);
  lua_pushvalue(L, -1);
  loom__register_spawner(L, rt);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "start_soon");
  lua_setfield(L, -2, "create_task");
  lua_pushvalue(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LOOM_TASK_MT);
  lua_pushcclosure(L, l_group_start, 2);
  lua_setfield(L, -2, "start");
  lua_pop(L, 1);
  loom__class_register(L, 0, &status_class, 1, 1);
  lua_pop(L, 1);
  /* core.group_run: upvalues runtime, message handler. */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, loom__msgh, 1);
  lua_pushcclosure(L, l_group_run, 2);
  lua_setfield(L, -2, "group_run");
  return 0;
}
