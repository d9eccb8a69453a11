/*
 * handle.c: TaskHandles (struct loom_handle: the small userdata that
 * outlives its task and answers status, result, error, wait, name, id,
 * parent), the context of the running task (copy-on-write, LOOM_CTX_* in
 * loom_internal.h), loom.current_task and the data of loom.task_tree.
 */
#include <string.h>

#include "loom_internal.h"

loom_handle *loom__check_handle(lua_State *L, int idx) {
  loom_handle *h = (loom_handle *)loom__test_ud(L, idx, sizeof *h,
                                                LOOM_MAGIC_TASK);
  if (h == NULL) h = (loom_handle *)luaL_checkudata(L, idx, LOOM_TASK_MT);
  return h;
}

/* ---- context ------------------------------------------------------------ */

/* [-0, +(0|1)] push a shallow copy of the context table at src and return
 * 1, or push nothing and return 0 when it is empty. */
int loom__copy_context(lua_State *L, int src) {
  lua_pushnil(L);
  if (!lua_next(L, src)) return 0;
  lua_pop(L, 2);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, src)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  return 1;
}

/* ---- handles ------------------------------------------------------------ */

static const char *status_of(loom_handle *h) {
  if (!h->done) return h->cancel_requested ? "cancelling" : "pending";
  switch (h->outcome) {
  case LOOM_OUT_CANCELLED: return "cancelled";
  case LOOM_OUT_FAILED: return "failed";
  default: return "finished";
  }
}

/* [-0, +1] the task's name: explicit, or "function <source>:<line>". */
static void push_name(lua_State *L, int ud) {
  lua_Debug ar;
  int tp = lua_getiuservalue(L, ud, LOOM_HV_NAME);
  if (tp == LUA_TSTRING) return;
  if (tp != LUA_TFUNCTION) {
    const char *tn = luaL_typename(L, -1);
    lua_pop(L, 1);
    lua_pushfstring(L, "callable %s", tn);
    return;
  }
  lua_getinfo(L, ">S", &ar);
  if (ar.what[0] == 'C') lua_pushliteral(L, "C function");
  else lua_pushfstring(L, "function %s:%d", ar.short_src, ar.linedefined);
}

static int l_task_status(lua_State *L) {
  lua_pushstring(L, status_of(loom__check_handle(L, 1)));
  return 1;
}

static int l_task_done(lua_State *L) {
  lua_pushboolean(L, loom__check_handle(L, 1)->done);
  return 1;
}

static int l_task_cancel(lua_State *L) {
  loom_handle *h = loom__check_handle(L, 1);
  loom_task *t;
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  if (h->done || h->t == NULL) return 0;
  if (h->t->record && h->t->state == LOOM_TASK_ABANDONED) {
    h->cancel_requested = 1; /* never ran, never will: nothing to cancel */
    return 0;
  }
  /* A pending record takes its struct now (may raise: out of memory). */
  t = loom__task_materialize(L, h->t);
  h->cancel_requested = 1;
  loom__scope_cancel(L, t->rt, &t->scope, lua_isnil(L, 2) ? 0 : 2, 0);
  return 0;
}

/* [-0, +1] the error a non-blocking accessor raises, from hooks[name]. */
static int raise_hook(lua_State *L, int ud, const char *name, int with_cause) {
  loom_rt *rt = loom__rt(L);
  loom__push_hook(L, rt, name);
  if (with_cause && ((loom_handle *)lua_touserdata(L, ud))->done) {
    lua_getiuservalue(L, ud, LOOM_HV_RESULT);
    loom__aux_get(L, rt, ud); /* the traceback of a failure */
    lua_call(L, 2, 1);
  } else if (with_cause) {
    /* Not finished: its slot still holds its coroutine. */
    lua_pushnil(L);
    lua_pushnil(L);
    lua_call(L, 2, 1);
  } else lua_call(L, 0, 1);
  return lua_error(L);
}

/* The outcome of a finished task as result() gives it. */
static int deliver_result(lua_State *L, loom_handle *h, int ud) {
  switch (h->outcome) {
  case LOOM_OUT_FAILED: return raise_hook(L, ud, "task_failed", 1);
  case LOOM_OUT_CANCELLED: return raise_hook(L, ud, "task_cancelled", 1);
  default: return loom__task_push_results(L, h, ud);
  }
}

static void waiter_abort(loom_task *t) { loom__list_remove(&t->wait_link); }

static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  loom_task *self = loom__task_of(L);
  loom_handle *h = loom__check_handle(L, 1);
  (void)status;
  loom__wake_outcome(L, self, 1);
  if (ctx) return deliver_result(L, h, 1);
  return 0;
}

/* h:wait() / h:result(): a checkpoint even when the task is done. */
static int wait_task(lua_State *L, const char *fn, int want_result) {
  loom_handle *h = loom__check_handle(L, 1);
  loom_task *self = loom__check_blocking(L, fn, 1), *t;
  lua_settop(L, 1);
  if (h->t == self)
    return luaL_error(L,
                      "loom.%s: a task cannot wait for itself (it would "
                      "wait forever)",
                      fn);
  loom__cancel_point(L, self);
  if (h->done) return loom__schedule_point(L, self, want_result, k_wait);
  if (h->t->record && h->t->state == LOOM_TASK_ABANDONED) {
    /* never ran, never will (memory ran out): waits until cancelled */
    loom__park(self, waiter_abort, "task", h->t);
    return loom__suspend(L, want_result, k_wait);
  }
  /* A pending record takes its struct (which has the extension) and keeps
   * its turn; both may raise (out of memory) before parking. */
  t = loom__task_materialize(L, h->t);
  loom__task_ext(L, t);
  loom__park(self, waiter_abort, "task", t);
  loom__list_push(&t->ext->waiters, &self->wait_link);
  return loom__suspend(L, want_result, k_wait);
}

static int l_task_wait(lua_State *L) {
  return wait_task(L, "TaskHandle:wait", 0);
}

static int l_task_result(lua_State *L) {
  return wait_task(L, "TaskHandle:result", 1);
}

static int l_task_return_value(lua_State *L) {
  loom_handle *h = loom__check_handle(L, 1);
  lua_settop(L, 1);
  if (!h->done) {
    if (h->cancel_requested) return raise_hook(L, 1, "task_cancelled", 1);
    return raise_hook(L, 1, "task_not_finished", 0);
  }
  return deliver_result(L, h, 1);
}

static int l_task_error(lua_State *L) {
  loom_handle *h = loom__check_handle(L, 1);
  lua_settop(L, 1);
  if (!h->done) {
    if (h->cancel_requested) return raise_hook(L, 1, "task_cancelled", 1);
    return raise_hook(L, 1, "task_not_finished", 0);
  }
  if (h->outcome == LOOM_OUT_CANCELLED)
    return raise_hook(L, 1, "task_cancelled", 1);
  if (h->outcome == LOOM_OUT_FAILED) {
    lua_getiuservalue(L, 1, LOOM_HV_RESULT);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int l_task_parent(lua_State *L) {
  loom__check_handle(L, 1);
  loom__push_parent(L, 1);
  return 1;
}

static int l_task_index(lua_State *L) {
  loom_handle *h;
  const char *k;
  /* A method is a table hit (a method checks its self); only the
   * properties read the handle. */
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  h = loom__check_handle(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING) return 0; /* h[1]: nil */
  k = lua_tostring(L, 2);
  if (strcmp(k, "name") == 0) push_name(L, 1);
  else if (strcmp(k, "id") == 0) lua_pushinteger(L, h->id);
  else return loom__no_member(L);
  return 1;
}

static int l_task_newindex(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  loom_handle *h = loom__check_handle(L, 1);
  if (k == NULL || strcmp(k, "name") != 0)
    return luaL_error(L,
                      "loom.Task: cannot set field '%s' (only 'name' is "
                      "writable)",
                      k ? k : luaL_typename(L, 2));
  if (lua_type(L, 3) != LUA_TSTRING)
    return luaL_error(L, "loom.Task: name must be a string, got %s",
                      luaL_typename(L, 3));
  lua_settop(L, 3);
  if (h->t != NULL && h->t->nargs >= 0 &&
      lua_getiuservalue(L, 1, LOOM_HV_NAME) != LUA_TSTRING) {
    /* Not started, its function waits in the name's slot: move it to the
     * result's slot, unused until the task finishes
     * (loom__task_prepare takes it from there). */
    lua_setiuservalue(L, 1, LOOM_HV_RESULT);
  } else lua_settop(L, 3);
  lua_setiuservalue(L, 1, LOOM_HV_NAME);
  return 0;
}

static int l_task_tostring(lua_State *L) {
  loom_handle *h = loom__check_handle(L, 1);
  push_name(L, 1);
  lua_pushfstring(L, "loom.Task: %p (%s) \"%s\"", (void *)h, status_of(h),
                  lua_tostring(L, -1));
  return 1;
}

/* ---- context and introspection ---------------------------------------- */

/* The task on whose behalf L runs: L's own task, or for a coroutine the
 * user resumes inside a task, that task. Raises outside any task. */
static loom_task *current_or_raise(lua_State *L, const char *fn) {
  loom_rt *rt = loom__rt(L);
  if (loom__task_of(L) == NULL && rt->current == NULL)
    loom__check_blocking(L, fn, 0); /* raises the documented message */
  return rt->current;
}

static int l_context(lua_State *L) {
  loom_task *t = current_or_raise(L, "context");
  loom_rt *rt = t->rt;
  int hi;
  loom__push_task(L, t);
  hi = lua_gettop(L);
  if (t->ctx_state == LOOM_CTX_OWNED) {
    loom__aux_get(L, rt, hi);
    return 1;
  }
  if (t->ctx_state == LOOM_CTX_PRIVATE) loom__aux_get(L, rt, hi);
  else if (t->ctx_state == LOOM_CTX_SHARED) {
    /* Other tasks may hold this table: this task writes to its own copy. */
    loom__aux_get(L, rt, hi);
    if (!loom__copy_context(L, lua_gettop(L))) lua_newtable(L);
    lua_remove(L, -2);
  } else lua_newtable(L);
  lua_pushvalue(L, -1);
  loom__aux_set(L, rt, hi);
  t->ctx_state = LOOM_CTX_OWNED;
  return 1;
}

static int l_current_task(lua_State *L) {
  loom_task *t = current_or_raise(L, "current_task");
  loom__push_task(L, t);
  return 1;
}

/* [-0, +1] "source:line" of the innermost Lua frame of a parked task. */
static void push_where(lua_State *L, loom_task *t, const char *own_dir) {
  lua_Debug ar;
  int level;
  size_t n = own_dir ? strlen(own_dir) : 0;
  if (!t->record && t->L != NULL && t->state != LOOM_TASK_RUNNING) {
    for (level = 0; lua_getstack(t->L, level, &ar); level++) {
      lua_getinfo(t->L, "Sl", &ar);
      /* Frames of loom's own Lua files are not where the user waits. */
      if (n > 0 && strncmp(ar.source, own_dir, n) == 0) continue;
      if (ar.currentline > 0) {
        lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
        return;
      }
    }
  }
  lua_pushnil(L);
}

/* [-0, +1] {handle, id, name, status, waiting, where, groups = {...},
 * starting = {...}} for t and its descendants. */
void loom__push_task_node(lua_State *L, loom_task *t, const char *own_dir) {
  luaL_checkstack(L, 8, "loom.task_tree: nesting too deep");
  lua_createtable(L, 0, 7);
  loom__push_task(L, t);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "handle");
  push_name(L, lua_gettop(L));
  lua_setfield(L, -3, "name");
  lua_pop(L, 1);
  lua_pushinteger(L, t->h->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, status_of(t->h));
  lua_setfield(L, -2, "status");
  lua_pushstring(L, t->record                       ? "not started"
                    : t->state == LOOM_TASK_RUNNING ? "running"
                    : t->state == LOOM_TASK_NEW     ? "not started"
                    : t->state == LOOM_TASK_READY   ? "ready"
                    : t->wait_what                  ? t->wait_what
                                                    : "ready");
  lua_setfield(L, -2, "waiting");
  push_where(L, t, own_dir);
  lua_setfield(L, -2, "where");
  loom__push_hosted_groups(L, t, own_dir);
  lua_setfield(L, -2, "groups");
}

/* core.task_tree() -> the root's node, or nil outside loom.run */
/* core.task_tree([own_dir]): own_dir is the source prefix of loom's Lua
 * files ("@/path/lua/loom/"), whose frames `where` skips. */
static int l_task_tree(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  const char *own_dir = luaL_optstring(L, 1, NULL);
  if (rt->root == NULL) return 0;
  loom__push_task_node(L, rt->root, own_dir);
  return 1;
}

/* core.check_in_task(name): raise the documented message for loom.<name>. */
static int l_check_in_task(lua_State *L) {
  const char *fn = luaL_checkstring(L, 1);
  loom__check_open(L, loom__rt(L), fn);
  if (loom__task_of(L) == NULL)
    /* Blame the caller of the loom.<fn> Lua function, not loom's file. */
    return loom__errorf(L, "loom.%s: %s", fn, loom__not_in_task(L));
  return 0;
}

/* core.layout() -> {task =, task_ext =, pending_record =, record_slot =,
 * handle =, scope =, cancel_scope =, handle_user_values =, pooled_tasks =,
 * slab_regions =, task_extensions =, record_chunks =}: the sizes in bytes
 * of the task layout's C structs (docs/architecture.md, "Task layout"), for
 * bench/core/mem_split.lua, the task structs kept for reuse now, the 2 MiB
 * regions of task slabs held now, the extensions live tasks hold now and
 * the chunks of pending records held now. */
static int l_layout(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  lua_createtable(L, 0, 12);
  lua_pushinteger(L, (lua_Integer)sizeof(loom_task));
  lua_setfield(L, -2, "task");
  lua_pushinteger(L, (lua_Integer)sizeof(loom_task_ext));
  lua_setfield(L, -2, "task_ext");
  lua_pushinteger(L, (lua_Integer)LOOM_TASK_RECORD_BYTES);
  lua_setfield(L, -2, "pending_record");
  lua_pushinteger(L, (lua_Integer)LOOM_REC_SLOT);
  lua_setfield(L, -2, "record_slot");
  lua_pushinteger(L, rt->rec_chunks);
  lua_setfield(L, -2, "record_chunks");
  lua_pushinteger(L, rt->ext_live);
  lua_setfield(L, -2, "task_extensions");
  lua_pushinteger(L, (lua_Integer)sizeof(loom_handle));
  lua_setfield(L, -2, "handle");
  lua_pushinteger(L, (lua_Integer)sizeof(loom_scope));
  lua_setfield(L, -2, "scope");
  lua_pushinteger(L, (lua_Integer)sizeof(loom_cscope));
  lua_setfield(L, -2, "cancel_scope");
  lua_pushinteger(L, LOOM_HV_N);
  lua_setfield(L, -2, "handle_user_values");
  lua_pushinteger(L, rt->task_free_n);
  lua_setfield(L, -2, "pooled_tasks");
  lua_pushinteger(L, rt->nregions);
  lua_setfield(L, -2, "slab_regions");
  return 1;
}

static const luaL_Reg task_meta[] = {
  {"__newindex", l_task_newindex},
  {"__tostring", l_task_tostring},
  {NULL, NULL},
};

static const luaL_Reg task_methods[] = {
  {"status", l_task_status},
  {"done", l_task_done},
  {"cancel", l_task_cancel},
  {"wait", l_task_wait},
  {"result", l_task_result},
  {"return_value", l_task_return_value},
  {"error", l_task_error},
  {"parent", l_task_parent},
  {NULL, NULL},
};

static const luaL_Reg task_funcs[] = {
  {"context", l_context},     {"current_task", l_current_task},
  {"task_tree", l_task_tree}, {"check_in_task", l_check_in_task},
  {"layout", l_layout},       {NULL, NULL},
};

/* Task handles: properties name and id, so a C __index (methods first). */
static const loom_class task_class = {
  LOOM_TASK_MT, task_meta, task_methods, NULL, l_task_index, "task_methods", 0};

/* Stack: rt(1) module(top); after loom__open_task (the Task metatable,
 * filled here). */
int loom__open_handle(lua_State *L) {
  loom__class_register(L, -1, &task_class, 1, 1);
  lua_pop(L, 1);
  loom__setfuncs(L, 1, task_funcs);
  return 0;
}
