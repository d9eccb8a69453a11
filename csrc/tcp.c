/*
 * tcp.c: what is TCP-specific about TCP streams and listeners: connecting
 * to and binding numeric addresses, TCP_NODELAY, the TCP classes and their
 * counters. Receiving, sending, accepting and closing are stream.c's.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

static const loom_stream_class stream_class = {
  "loom.TCPStream",    "TCPStream",      LOOM_ADDR_INET,       NULL,
  "TCPStream:receive", "TCPStream:send", "TCPStream:send_eof", NULL};

static const loom_stream_class listener_class = {"loom.TCPListener",
                                                 "TCPListener",
                                                 LOOM_ADDR_INET,
                                                 &stream_class,
                                                 NULL,
                                                 NULL,
                                                 NULL,
                                                 "TCPListener:accept"};

/* Parse a numeric IPv4 or IPv6 address; 0 on success. */
static int parse_ip(const char *ip, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return 0;
  memset(ss, 0, sizeof *ss);
  return uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss);
}

static const char *check_ip(lua_State *L, int idx, struct sockaddr_storage *ss,
                            int port) {
  size_t len;
  const char *ip = luaL_checklstring(L, idx, &len);
  if (strlen(ip) != len) luaL_argerror(L, idx, "address contains a NUL");
  if (parse_ip(ip, port, ss) != 0)
    luaL_argerror(L, idx,
                  lua_pushfstring(L,
                                  "not a numeric IP address: "
                                  "'%s'",
                                  ip));
  return ip;
}

static int check_port(lua_State *L, int idx, int min) {
  lua_Integer p = luaL_checkinteger(L, idx);
  if (p < min || p > 65535)
    luaL_argerror(L, idx, lua_pushfstring(L, "port must be in %d..65535", min));
  return (int)p;
}

static void where_of(const struct sockaddr_storage *ss, char *buf, size_t n) {
  loom__addr_where(ss, sizeof *ss, buf, n);
}

/* ---- connect ----------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status) {
  loom_stream *o = (loom_stream *)req->handle->data;
  loom_task *t = o->connecter;
  o->connect_status = status;
  if (t != NULL) {
    o->connecter = NULL;
    loom__wake(t, LOOM_WAKE_OK);
  }
}

/* Cancelling a connect closes the handle; the connect callback then runs
 * with UV_ECANCELED and nobody waits for it. */
static void connect_abort(loom_task *t) {
  loom_stream *o = (loom_stream *)t->wait_data;
  o->connecter = NULL;
  loom__stream_close(o);
}

static int k_connect(lua_State *L, int status, lua_KContext ctx) {
  loom_stream *o = (loom_stream *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  loom__wake_outcome(L, t, 1);
  if (o->connect_status < 0 || o->closed) {
    int err = o->connect_status < 0 ? o->connect_status : UV_ECANCELED;
    loom__stream_close(o);
    return loom__raise_uv(L, "connect_tcp", err, lua_tostring(L, 4));
  }
  uv_tcp_nodelay(&o->h.tcp, 1);
  loom__stream_cache_addresses(o);
  lua_settop(L, 3);
  return 1;
}

/* core.tcp_connect(ip, port) -> TCPStream. ip must be numeric; name
 * resolution and trying several addresses is net.lua's job. */
static int l_tcp_connect(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  struct sockaddr_storage ss;
  int port = check_port(L, 2, 1), err;
  char where[80];
  loom_task *t;
  loom_stream *o;
  check_ip(L, 1, &ss, port);
  t = loom__check_blocking(L, "connect_tcp", 1);
  loom__cancel_point(L, t);
  lua_settop(L, 2);
  o = loom__stream_new(L, rt, &stream_class); /* 3 */
  uv_tcp_init(rt->loop, &o->h.tcp);
  loom__stream_attach(o);
  where_of(&ss, where, sizeof where);
  lua_pushstring(L, where); /* 4 */
  err = uv_tcp_connect(&o->connect, &o->h.tcp, (struct sockaddr *)&ss,
                       connect_cb);
  if (err != 0) {
    loom__stream_close(o);
    return loom__raise_uv(L, "connect_tcp", err, where);
  }
  o->connecter = t;
  loom__park(t, connect_abort, "connect_tcp", o);
  return loom__suspend(L, (lua_KContext)o, k_connect);
}

/* ---- listeners --------------------------------------------------------- */

/* core.tcp_listen(ip, port, backlog) -> TCPListener. Binding is
 * synchronous; EADDRINUSE shows here (libuv reports it from uv_listen). */
static int l_tcp_listen(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  struct sockaddr_storage ss;
  int port = check_port(L, 2, 0), err;
  lua_Integer backlog = luaL_optinteger(L, 3, 65536);
  char where[80];
  loom_stream *o;
  loom__check_open(L, rt, "create_tcp_listener");
  check_ip(L, 1, &ss, port);
  if (backlog < 1 || backlog > 0x7fffffff)
    luaL_argerror(L, 3, "backlog must be in 1..2147483647");
  o = loom__stream_new(L, rt, &listener_class);
  uv_tcp_init(rt->loop, &o->h.tcp);
  loom__stream_attach(o);
  err = uv_tcp_bind(&o->h.tcp, (struct sockaddr *)&ss, 0);
  if (err == 0) err = loom__stream_listen(o, (int)backlog);
  if (err != 0) {
    loom__stream_close(o);
    where_of(&ss, where, sizeof where);
    return loom__raise_uv(L, "create_tcp_listener", err, where);
  }
  loom__stream_cache_addresses(o);
  return 1;
}

/* ---- introspection for tests --------------------------------------------- */

/* core.tcp_stats() -> {streams, listeners, closing, rbuf_bytes,
 * write_queue_bytes, active_reqs}: live libuv TCP handles (closing ones
 * included until their close callback ran) and what they buffer. */
static int l_tcp_stats(lua_State *L) {
  static const loom_stream_class *const classes[] = {&stream_class,
                                                     &listener_class, NULL};
  loom_rt *rt = loom__rt(L);
  loom_stream_counts c;
  memset(&c, 0, sizeof c);
  loom__stream_count(rt, classes, &c);
  loom__stream_push_counts(L, &c);
  lua_pushinteger(L, rt->closed ? 0 : (lua_Integer)rt->loop->active_reqs.count);
  lua_setfield(L, -2, "active_reqs");
  return 1;
}

/* core.ip_family(s) -> "inet" | "inet6" | nil: is s a numeric address? */
static int l_ip_family(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  struct sockaddr_storage ss;
  if (strlen(s) != len || parse_ip(s, 0, &ss) != 0) return 0;
  lua_pushstring(L, ss.ss_family == AF_INET ? "inet" : "inet6");
  return 1;
}

/* ---- registration ------------------------------------------------------ */

static const luaL_Reg tcp_funcs[] = {
  {"tcp_connect", l_tcp_connect},
  {"tcp_listen", l_tcp_listen},
  {"tcp_stats", l_tcp_stats},
  {"ip_family", l_ip_family},
  {NULL, NULL},
};

/* libuv writes with write(2): a peer that vanished would kill the process
 * with SIGPIPE. Ignore it unless the host installed its own handler. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }
}

/* Stack: rt(1) module(top). */
int loom__open_tcp(lua_State *L) {
  ignore_sigpipe();
  loom__stream_register(L, 1, &stream_class, NULL, "tcp_stream_methods");
  loom__stream_register(L, 1, &listener_class, NULL, "tcp_listener_methods");
  loom__setfuncs(L, 1, tcp_funcs);
  return 0;
}
