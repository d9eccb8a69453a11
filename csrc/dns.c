/*
 * dns.c: loom.getaddrinfo on libuv's resolver (getaddrinfo(3) run in the
 * libuv thread pool). The request lives in malloc'd memory that its
 * callback frees when nobody waits for it any more (the task was
 * cancelled); otherwise the woken task takes the result over.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

#define RESULT_MT "loom.AddrinfoResult"

typedef struct dns_result dns_result;

/* task is the parked caller; NULL once it stopped waiting (then the
 * callback frees everything). */
typedef struct dns_req {
  uv_getaddrinfo_t req;
  loom_task *task;
  dns_result *owner;
} dns_req;

/* A userdata on the caller's stack. While the task waits, req points to
 * the request; the callback moves the outcome here (status, res) and frees
 * the request. From then on the box owns res, so an error while building
 * the Lua table (out of memory) cannot leak it: __gc frees what is left. */
struct dns_result {
  dns_req *req;
  struct addrinfo *res;
  int status;
};

static void getaddrinfo_cb(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res) {
  dns_req *r = (dns_req *)req;
  if (r->task != NULL) {
    dns_result *owner = r->owner;
    owner->req = NULL;
    owner->res = res;
    owner->status = status;
    loom__wake(r->task, LOOM_WAKE_OK);
  } else if (res != NULL) {
    uv_freeaddrinfo(res);
  }
  free(r);
}

/* Cancelled while resolving: orphan the request. uv_cancel succeeds only
 * if no pool thread picked it up yet; either way the callback runs later
 * (with UV_EAI_CANCELED, or with a result nobody wants) and frees it. */
static void getaddrinfo_abort(loom_task *t) {
  dns_result *owner = (dns_result *)t->wait_data;
  dns_req *r = owner->req;
  owner->req = NULL;
  if (r != NULL) {
    r->task = NULL;
    uv_cancel((uv_req_t *)&r->req);
  }
}

static int l_result_gc(lua_State *L) {
  dns_result *owner = (dns_result *)lua_touserdata(L, 1);
  if (owner->req != NULL) owner->req->task = NULL; /* state closing */
  owner->req = NULL;
  if (owner->res != NULL) uv_freeaddrinfo(owner->res);
  owner->res = NULL;
  return 0;
}

/* [-0, +1] one {family, address, port} entry, or nothing for families
 * other than IPv4/IPv6. */
static int push_entry(lua_State *L, const struct addrinfo *ai) {
  char host[64];
  int port;
  const char *family;
  if (ai->ai_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ai->ai_addr;
    if (uv_ip4_name(a, host, sizeof host) != 0) return 0;
    port = ntohs(a->sin_port);
    family = "inet";
  } else if (ai->ai_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ai->ai_addr;
    if (uv_ip6_name(a, host, sizeof host) != 0) return 0;
    port = ntohs(a->sin6_port);
    family = "inet6";
  } else return 0;
  lua_createtable(L, 0, 3);
  lua_pushstring(L, family);
  lua_setfield(L, -2, "family");
  lua_pushstring(L, host);
  lua_setfield(L, -2, "address");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  return 1;
}

/* Stack in the continuation: host(1) port(2) result box(3). */
static int k_getaddrinfo(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  dns_result *owner = (dns_result *)lua_touserdata(L, 3);
  const struct addrinfo *ai;
  int n = 0, i, err;
  (void)status;
  (void)ctx;
  loom__wake_outcome(L, t, 1);
  err = owner->status;
  if (owner->res == NULL && err == 0) err = UV_EAI_NONAME;
  if (err != 0) goto fail;
  lua_newtable(L); /* 4 */
  for (ai = owner->res; ai != NULL; ai = ai->ai_next) {
    if (!push_entry(L, ai)) continue;
    /* getaddrinfo may list an address twice (hosts file lines): once is
     * enough for callers that try the addresses in turn. */
    for (i = 1; i <= n; i++) {
      int same;
      lua_rawgeti(L, 4, i);
      lua_getfield(L, -1, "address");
      lua_getfield(L, -3, "address");
      same = lua_rawequal(L, -1, -2);
      lua_pop(L, 3);
      if (same) break;
    }
    if (i <= n) lua_pop(L, 1);
    else lua_rawseti(L, 4, ++n);
  }
  uv_freeaddrinfo(owner->res);
  owner->res = NULL;
  return 1;
fail:
  return loom__raise_oserror(L, "getaddrinfo", err, lua_tostring(L, 1));
}

/* loom.getaddrinfo(host[, port]) -> array of {family = "inet"|"inet6",
 * address = string, port = integer}, in the resolver's order, duplicates
 * removed. Raises loom.OSError (.code "EAI_NONAME", ...) when the name does
 * not resolve. */
static int l_getaddrinfo(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  size_t len;
  const char *host = luaL_checklstring(L, 1, &len);
  lua_Integer port = luaL_optinteger(L, 2, 0);
  char service[16];
  struct addrinfo hints;
  dns_result *owner;
  dns_req *r;
  loom_task *t;
  int err;
  if (strlen(host) != len) luaL_argerror(L, 1, "host contains a NUL");
  if (len == 0) luaL_argerror(L, 1, "host is empty");
  if (len > 1024) luaL_argerror(L, 1, "host is too long");
  if (port < 0 || port > 65535) luaL_argerror(L, 2, "port must be in 0..65535");
  t = loom__check_blocking(L, "getaddrinfo", 1);
  loom__cancel_point(L, t);
  lua_settop(L, 2);
  owner = (dns_result *)lua_newuserdatauv(L, sizeof *owner, 0); /* 3 */
  owner->req = NULL;
  owner->res = NULL;
  owner->status = 0;
  luaL_setmetatable(L, RESULT_MT);
  r = (dns_req *)calloc(1, sizeof *r);
  if (r == NULL) return luaL_error(L, "loom: out of memory");
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(service, sizeof service, "%d", (int)port);
  r->task = t;
  r->owner = owner;
  owner->req = r;
  err = uv_getaddrinfo(rt->loop, &r->req, getaddrinfo_cb, host, service,
                       &hints);
  if (err != 0) {
    owner->req = NULL;
    free(r);
    return loom__raise_oserror(L, "getaddrinfo", err, host);
  }
  loom__park(t, getaddrinfo_abort, "getaddrinfo", owner);
  return loom__suspend(L, 0, k_getaddrinfo);
}

static const luaL_Reg dns_funcs[] = {
  {"getaddrinfo", l_getaddrinfo},
  {NULL, NULL},
};

static const luaL_Reg result_meta[] = {
  {"__gc", l_result_gc},
  {NULL, NULL},
};

static const loom_class result_class = {RESULT_MT, result_meta, NULL, NULL,
                                        NULL,      NULL,        0};

/* Stack: rt(1) module(top). */
int loom__open_dns(lua_State *L) {
  loom__class_register(L, 0, &result_class, 0, 0);
  lua_pop(L, 1);
  loom__setfuncs(L, 1, dns_funcs);
  return 0;
}
