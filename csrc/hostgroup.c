/*
 * hostgroup.c: host groups (loom.host_group). A host group is a task group
 * with no host task, owned by host code: its cancel scope is a root of the
 * scope tree, its children run from the next step, and the errors of its
 * direct children go to the runtime's error hook instead of a parent.
 * Isolating by default (a failed child is reported with its handle, its
 * siblings keep running); fail_fast cancels the group at the first error
 * and reports one ErrorGroup once every child has finished, then closes the
 * group. hg:close(grace) cancels it and runs non-frame passes until its
 * tasks are done or grace seconds passed. The userdata is a loom_group
 * (group.c's spawn and cancel work on it unchanged).
 */
#include <math.h>
#include <string.h>

#include "loom_internal.h"

#define HOSTGROUP_MT "loom.HostGroup"

/* User values: the same slots as group.c's task groups, plus the name. */
enum {
  HG_SCOPE = 1,
  HG_ERRORS = 2,
  HG_TRACEBACKS = 3,
  HG_HOST = 4,
  HG_NAME = 5
};

static loom_group *check_hg(lua_State *L, int idx) {
  return (loom_group *)luaL_checkudata(L, idx, HOSTGROUP_MT);
}

/* loom.host_group(name[, {fail_fast = false}]) -> HostGroup */
static int l_host_group(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  int fail_fast = 0, ud;
  loom_group *g;
  loom_scope *s;
  if (lua_type(L, 1) != LUA_TSTRING) luaL_typeerror(L, 1, "string");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING ||
          strcmp(lua_tostring(L, -2), "fail_fast") != 0)
        return luaL_argerror(L, 2,
                             lua_pushfstring(L,
                                             "unknown option '%s' "
                                             "(expected 'fail_fast')",
                                             lua_type(L, -2) == LUA_TSTRING
                                               ? lua_tostring(L, -2)
                                               : luaL_typename(L, -2)));
      lua_pop(L, 1);
    }
    lua_getfield(L, 2, "fail_fast");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN)
      return luaL_argerror(L, 2,
                           lua_pushfstring(L,
                                           "fail_fast must be a "
                                           "boolean, got %s",
                                           luaL_typename(L, -1)));
    fail_fast = lua_toboolean(L, -1);
  }
  loom__check_open(L, rt, "host_group");
  if (rt->running)
    return luaL_error(L, "loom.host_group: cannot be used while loom.run is "
                         "running (use loom.task_group inside it)");
  lua_settop(L, 1);
  g = (loom_group *)lua_newuserdatauv(L, sizeof *g, HG_NAME);
  ud = lua_gettop(L);
  memset(g, 0, sizeof *g);
  g->magic = LOOM_MAGIC_GROUP;
  g->rt = rt;
  g->ref = LUA_NOREF;
  g->is_host = 1;
  g->fail_fast = (unsigned char)fail_fast;
  loom__list_init(&g->children);
  loom__list_init(&g->starting);
  loom__list_init(&g->host_link);
  loom__list_init(&g->hg_link);
  luaL_setmetatable(L, HOSTGROUP_MT);
  s = loom__scope_new(L);
  lua_setiuservalue(L, ud, HG_SCOPE);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, ud, HG_NAME);
  /* A root of the scope tree, active until the group is released. */
  loom__scope_attach(s, NULL);
  g->scope = s;
  lua_pushvalue(L, ud);
  g->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  loom__list_push(&rt->host_groups, &g->hg_link);
  rt->nhost_open++;
  return 1;
}

static void mark_closed(loom_group *g) {
  if (g->state == LOOM_GROUP_CLOSED) return;
  g->state = LOOM_GROUP_CLOSED;
  g->rt->nhost_open--;
}

/* Closed with no child left: drop the anchor; the scope is left. */
static void maybe_release(lua_State *L, loom_group *g) {
  if (g->state != LOOM_GROUP_CLOSED || g->nlive > 0 || g->ref == LUA_NOREF)
    return;
  /* A fail-fast group reports its errors before it lets go. */
  if (g->fail_fast && g->nerrors > 0) return;
  loom__list_remove(&g->hg_link);
  loom__scope_detach(L, g->rt, g->scope);
  luaL_unref(L, LUA_REGISTRYINDEX, g->ref);
  g->ref = LUA_NOREF;
}

/* [g, task, err, tb|nil] report a direct child's error to the hook. */
static int child_failed_protected(lua_State *L) {
  loom_group *g = (loom_group *)lua_touserdata(L, 1);
  lua_getfield(L, 2, "name");
  loom__report_error(L, g->rt, 3, 2, lua_isnil(L, 4) ? 0 : 4, "task",
                     lua_tostring(L, -1));
  return 0;
}

/* Called while the child finishes, which must not fail half-way: the
 * report (it allocates) runs protected; when memory runs out the error
 * stays in the child's handle and the step returns LOOM_ERRMEM (see
 * loom__step_pcall). */
void loom__host_child_failed(lua_State *L, loom_group *g, int task_idx,
                             int err_idx, int tb_idx) {
  if (g->fail_fast) {
    loom__group_record_safe(L, g, err_idx, tb_idx);
    return;
  }
  task_idx = lua_absindex(L, task_idx);
  err_idx = lua_absindex(L, err_idx);
  if (tb_idx) tb_idx = lua_absindex(L, tb_idx);
  if (lua_checkstack(L, 6)) {
    lua_pushcfunction(L, child_failed_protected);
    lua_pushlightuserdata(L, g);
    lua_pushvalue(L, task_idx);
    lua_pushvalue(L, err_idx);
    if (tb_idx) lua_pushvalue(L, tb_idx);
    else lua_pushnil(L);
    if (lua_pcall(L, 4, 0, 0) == LUA_OK) return;
    lua_pop(L, 1);
  }
  g->rt->lost_reports++;
}

/* [g] a fail-fast group's ErrorGroup of every error, to the hook. */
static int report_eg_protected(lua_State *L) {
  loom_group *g = (loom_group *)lua_touserdata(L, 1);
  loom_rt *rt = g->rt;
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref); /* 2 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->eg_ref);
  lua_getiuservalue(L, 2, HG_ERRORS);
  lua_getiuservalue(L, 2, HG_TRACEBACKS);
  lua_getiuservalue(L, 2, HG_NAME);
  lua_call(L, 3, 1); /* 3 */
  lua_getiuservalue(L, 2, HG_NAME);
  loom__report_error(L, rt, 3, 0, 0, "host group", lua_tostring(L, -1));
  return 0;
}

/* Called while a child finishes: must not fail half-way (see above); the
 * group is closed and released whatever the report did. */
void loom__host_child_done(lua_State *L, loom_group *g) {
  if (g->nlive == 0 && g->fail_fast && g->nerrors > 0 && g->ref != LUA_NOREF) {
    /* Every child finished: one ErrorGroup of the errors, then closed. */
    int reported = 0;
    if (lua_checkstack(L, 8)) {
      lua_pushcfunction(L, report_eg_protected);
      lua_pushlightuserdata(L, g);
      reported = lua_pcall(L, 1, 0, 0) == LUA_OK;
      if (!reported) lua_pop(L, 1);
      lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref);
      lua_pushnil(L);
      lua_setiuservalue(L, -2, HG_ERRORS);
      lua_pushnil(L);
      lua_setiuservalue(L, -2, HG_TRACEBACKS);
      lua_pop(L, 1);
    }
    if (!reported) g->rt->lost_reports++;
    g->nerrors = 0;
    mark_closed(g);
  }
  maybe_release(L, g);
}

void loom__host_groups_close(lua_State *L, loom_rt *rt) {
  loom_list *n, *next;
  for (n = rt->host_groups.next; n != &rt->host_groups; n = next) {
    loom_group *g = loom__container_of(n, loom_group, hg_link);
    next = n->next;
    mark_closed(g);
    loom__scope_cancel(L, rt, g->scope, 0, 0);
  }
  for (n = rt->host_groups.next; n != &rt->host_groups; n = next) {
    next = n->next;
    maybe_release(L, loom__container_of(n, loom_group, hg_link));
  }
}

static int settle_protected(lua_State *L) {
  loom_group *g = (loom_group *)lua_touserdata(L, 1);
  loom__settle(L, g->rt, &g->nlive, NULL, lua_tonumber(L, 2));
  return 0;
}

/* hg:close([grace]) -> true when no task of the group is left */
static int l_hg_close(lua_State *L) {
  loom_group *g = check_hg(L, 1);
  loom_rt *rt = g->rt;
  double grace = luaL_optnumber(L, 2, 0);
  if (isnan(grace)) return luaL_argerror(L, 2, "grace is NaN");
  if (grace < 0) return luaL_argerror(L, 2, "grace must not be negative");
  lua_settop(L, 1);
  if (g->state != LOOM_GROUP_CLOSED) {
    mark_closed(g);
    loom__scope_cancel(L, rt, g->scope, 0, 0);
    /* From host code, run passes; from a task or inside a step, only
     * cancel (resumes are never nested). */
    if (!rt->closed && rt->current == NULL && !rt->stepping && !rt->running &&
        g->nlive > 0) {
      int status;
      lua_pushcfunction(L, settle_protected);
      lua_pushlightuserdata(L, g);
      lua_pushnumber(L, grace);
      rt->stepping = 1;
      status = lua_pcall(L, 2, 0, 0);
      rt->stepping = 0;
      if (status != LUA_OK) return lua_error(L);
      /* "raise" keeps them for the next step, which raises them. */
      if (rt->on_error != LOOM_ONERR_RAISE &&
          loom__deliver_pcall(L, rt, 0) != LUA_OK)
        return lua_error(L);
    }
  }
  maybe_release(L, g);
  lua_pushboolean(L, g->nlive == 0);
  return 1;
}

static int l_hg_alive(lua_State *L) {
  lua_pushinteger(L, check_hg(L, 1)->nlive);
  return 1;
}

static int l_hg_index(lua_State *L) {
  const char *k;
  check_hg(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL) return 1;
  /* (not lua_tostring: it would turn a number key into a string) */
  k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k != NULL && strcmp(k, "name") == 0) lua_getiuservalue(L, 1, HG_NAME);
  else if (k != NULL && strcmp(k, "cancel_scope") == 0)
    lua_getiuservalue(L, 1, HG_SCOPE);
  else if (k != NULL)
    return loom__no_member(L); /* did-you-mean, like every class */
  else lua_pushnil(L);
  return 1;
}

static int l_hg_tostring(lua_State *L) {
  loom_group *g = check_hg(L, 1);
  lua_getiuservalue(L, 1, HG_NAME);
  lua_pushfstring(L, HOSTGROUP_MT ": %p \"%s\" (%s, %d alive)", (void *)g,
                  lua_tostring(L, -1),
                  g->state == LOOM_GROUP_CLOSED ? "closed" : "open", g->nlive);
  return 1;
}

/* core.set_error_group(fn): fn(errors, tracebacks, name) -> ErrorGroup */
static int l_set_error_group(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  if (rt->eg_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, rt->eg_ref);
  rt->eg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* core.host_group_tree([own_dir]) -> { {name, group, cancelled, children},
 * ... } for every host group not yet released, oldest first. */
static int l_host_group_tree(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  const char *own_dir = luaL_optstring(L, 1, NULL);
  loom_list *n;
  int i = 0;
  lua_newtable(L);
  for (n = rt->host_groups.next; n != &rt->host_groups; n = n->next) {
    loom_group *g = loom__container_of(n, loom_group, hg_link);
    luaL_checkstack(L, 4, "loom.task_tree");
    loom__push_group_node(L, g, own_dir);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->ref);
    lua_getiuservalue(L, -1, HG_NAME);
    lua_setfield(L, -3, "name");
    lua_pop(L, 1);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static const luaL_Reg hg_methods[] = {
  {"close", l_hg_close},
  {"alive", l_hg_alive},
  {NULL, NULL},
};

static const luaL_Reg hg_funcs[] = {
  {"host_group", l_host_group},
  {"set_error_group", l_set_error_group},
  {"host_group_tree", l_host_group_tree},
  {NULL, NULL},
};

/* Stack: rt(1) module(top); group.c's methods are in module.group_methods. */
int loom__open_hostgroup(lua_State *L) {
  /* name and cancel_scope are properties: a C __index, upvalues rt,
   * methods; the methods table also gets three of group.c's methods. */
  static const luaL_Reg hg_meta[] = {{"__tostring", l_hg_tostring},
                                     {NULL, NULL}};
  static const loom_class hg_class = {HOSTGROUP_MT, hg_meta, hg_methods, NULL,
                                      l_hg_index,   NULL,    0};
  loom__class_register(L, -1, &hg_class, 1, 1);
  lua_getfield(L, -1, "__index");
  lua_getupvalue(L, -1, 2); /* the methods table */
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_getfield(L, -2, "group_methods");
  lua_getfield(L, -1, "start_soon");
  lua_setfield(L, -3, "start_soon");
  lua_getfield(L, -1, "create_task");
  lua_setfield(L, -3, "create_task");
  lua_getfield(L, -1, "cancel");
  lua_setfield(L, -3, "cancel");
  lua_pop(L, 2);
  loom__setfuncs(L, 1, hg_funcs);
  return 0;
}
