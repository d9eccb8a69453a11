/*
 * udp.c: UDP sockets on libuv, unconnected (send_to / receive_from) and
 * connected (send / receive). As in tcp.c, reading runs only while a task
 * waits in receive and stops after one datagram, so an idle socket queues
 * datagrams in the kernel, not here; a send that the kernel does not take
 * at once is queued with its own copy of the bytes and waited for. Name
 * resolution and option checks are udp.lua's; this file takes numeric
 * addresses.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE /* SO_REUSEPORT */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "loom_internal.h"

#define UDP_MT "loom.UDPSocket"
#define CUDP_MT "loom.ConnectedUDPSocket"

#define MAX_DGRAM 65536 /* receive buffer: any UDP payload fits */
#define MAX_V4 65507    /* 65535 - 8 (UDP) - 20 (IPv4) */
#define MAX_V6 65527    /* 65535 - 8 (UDP); no jumbograms */

typedef struct send_req send_req;

/* Freed once the userdata is finalised and the close callback ran; queued
 * sends complete (UV_ECANCELED on close) before the close callback. */
typedef struct udp_obj {
  uv_udp_t handle;
  loom_rt *rt;
  struct sockaddr_storage local, remote;
  int family;
  unsigned char ud_alive, handle_live, closing, closed, connected;
  /* receiving */
  unsigned char receiving, got, reading, reader_ref, backlog;
  char *rbuf;
  size_t rlen;
  int read_err;
  struct sockaddr_storage from;
  loom_task *reader;
  /* sending */
  unsigned char sending;
  int send_err;
  loom_task *writer;
  send_req *cur_send;
} udp_obj;

struct send_req {
  uv_udp_send_t req;
  udp_obj *obj;
  loom_task *task;
  char data[];
};

typedef struct udp_box {
  udp_obj *obj;
} udp_box;

/* ---- lifetime ----------------------------------------------------------- */

static void free_obj(udp_obj *o) {
  free(o->rbuf);
  free(o);
}

static void close_cb(uv_handle_t *h) {
  udp_obj *o = (udp_obj *)h->data;
  o->handle_live = 0;
  if (!o->ud_alive) free_obj(o);
}

static void start_close(udp_obj *o) {
  /* After loom_close the runtime's own loop closed every handle (without
   * our callback) and is closed itself: uv_close must not run again. */
  if (o->rt->closed && !o->rt->borrowed) o->handle_live = 0;
  if (o->handle_live && !o->closing) {
    o->closing = 1;
    uv_close((uv_handle_t *)&o->handle, close_cb);
  }
}

static void wake_slot(loom_task **slot, int how) {
  loom_task *t = *slot;
  if (t != NULL) {
    *slot = NULL;
    loom__wake(t, how);
  }
}

static void obj_close(udp_obj *o) {
  if (o->closed) return;
  o->closed = 1;
  if (o->cur_send != NULL) o->cur_send->task = NULL;
  o->cur_send = NULL;
  wake_slot(&o->reader, LOOM_WAKE_CLOSED);
  wake_slot(&o->writer, LOOM_WAKE_CLOSED);
  start_close(o);
}

static int l_obj_gc(lua_State *L) {
  udp_box *box = (udp_box *)lua_touserdata(L, 1);
  udp_obj *o = box->obj;
  if (o == NULL) return 0;
  box->obj = NULL;
  o->ud_alive = 0;
  o->reader = o->writer = NULL;
  if (o->cur_send != NULL) o->cur_send->task = NULL;
  o->cur_send = NULL;
  o->closed = 1;
  if (!o->handle_live) free_obj(o);
  else if (o->rt->closed && !o->rt->borrowed) free_obj(o);
  else start_close(o);
  return 0;
}

static udp_obj *check_obj(lua_State *L, int idx) {
  udp_box *box = (udp_box *)lua_touserdata(L, idx);
  if (box == NULL ||
      (!luaL_testudata(L, idx, UDP_MT) && !luaL_testudata(L, idx, CUDP_MT)))
    luaL_typeerror(L, idx, UDP_MT);
  if (box->obj == NULL) luaL_argerror(L, idx, "finalised object");
  return box->obj;
}

/* ---- addresses and errors ----------------------------------------------- */

static int addr_name(const struct sockaddr_storage *ss, char *host, size_t n,
                     int *port) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    *port = ntohs(a->sin_port);
    return uv_ip4_name(a, host, n);
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    *port = ntohs(a->sin6_port);
    return uv_ip6_name(a, host, n);
  }
  return UV_EAFNOSUPPORT;
}

static void addr_where(const struct sockaddr_storage *ss, char *buf, size_t n) {
  char host[64];
  int port = 0;
  if (addr_name(ss, host, sizeof host, &port) != 0) {
    snprintf(buf, n, "?");
    return;
  }
  snprintf(buf, n, ss->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
}

static int raise_closed(lua_State *L, const char *op) {
  lua_pushfstring(L, "%s: the socket is closed", op);
  return loom__raise_error(L, "ClosedResourceError", lua_tostring(L, -1), NULL);
}

static int raise_busy(lua_State *L, const char *action) {
  lua_pushfstring(L, "Another task is already %s this resource", action);
  return loom__raise_error(L, "BusyResourceError", lua_tostring(L, -1), NULL);
}

static int parse_ip(const char *ip, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return 0;
  memset(ss, 0, sizeof *ss);
  return uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss);
}

static void check_addr(lua_State *L, int idx, struct sockaddr_storage *ss) {
  size_t len;
  const char *ip = luaL_checklstring(L, idx, &len);
  lua_Integer port = luaL_checkinteger(L, idx + 1);
  if (port < 0 || port > 65535)
    luaL_argerror(L, idx + 1, "port must be in 0..65535");
  if (strlen(ip) != len || parse_ip(ip, (int)port, ss) != 0)
    luaL_argerror(L, idx,
                  lua_pushfstring(L,
                                  "not a numeric IP address: "
                                  "'%s'",
                                  ip));
}

static int push_address(lua_State *L, const struct sockaddr_storage *ss) {
  char host[64];
  int port = 0, err = addr_name(ss, host, sizeof host, &port);
  if (err != 0) return loom__raise_oserror(L, "address", err, NULL);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

/* ---- receive ------------------------------------------------------------ */

/* Reading stays on after a datagram went to a waiting receiver (a ping-pong
 * then costs no epoll_ctl per datagram), but at most one datagram is held
 * here: while it waits to be taken, alloc_cb offers no buffer, libuv
 * reports UV_ENOBUFS and reading stops, leaving the rest in the kernel. */
static void stop_reading(udp_obj *o) {
  if (o->reading) {
    o->reading = 0;
    uv_udp_recv_stop(&o->handle);
  }
}

static void unref_reader(udp_obj *o) {
  if (o->reader_ref) {
    o->reader_ref = 0;
    uv_unref((uv_handle_t *)&o->handle);
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  udp_obj *o = (udp_obj *)h->data;
  (void)suggested;
  if (o->got || o->read_err != 0) {
    buf->base = NULL;
    buf->len = 0;
  } else {
    buf->base = o->rbuf;
    buf->len = MAX_DGRAM;
  }
}

/* One datagram (maybe empty) or an error: hand it over. nread 0 with no
 * address is libuv's "nothing more to read". */
static void recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                    const struct sockaddr *addr, unsigned flags) {
  udp_obj *o = (udp_obj *)h->data;
  (void)buf;
  (void)flags;
  if (nread == UV_ENOBUFS) {
    stop_reading(o);
    o->backlog = 1; /* more datagrams wait in the kernel */
    return;
  }
  if (nread == 0 && addr == NULL) return;
  if (o->reader == NULL) stop_reading(o); /* held until a receive */
  if (nread < 0) {
    o->read_err = (int)nread;
  } else {
    o->got = 1;
    o->rlen = (size_t)nread;
    memset(&o->from, 0, sizeof o->from);
    memcpy(&o->from, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                       : sizeof(struct sockaddr_in));
  }
  wake_slot(&o->reader, LOOM_WAKE_OK);
}

static void receive_abort(loom_task *t) {
  udp_obj *o = (udp_obj *)t->wait_data;
  o->reader = NULL;
  unref_reader(o);
}

/* Continuation of receive; ctx: 1 for receive_from (address too). */
static int k_receive(lua_State *L, int status, lua_KContext ctx) {
  udp_obj *o = (udp_obj *)lua_touserdata(L, 1);
  loom_task *t = loom__task_of(L);
  const char *op = ctx ? "receive_from" : "receive";
  char where[80] = "";
  (void)status;
  o = ((udp_box *)o)->obj;
  o->receiving = 0;
  unref_reader(o);
  if (loom__wake_outcome(L, t, 1) == LOOM_WAKE_CLOSED || o->closed)
    return raise_closed(L, op);
  if (o->read_err != 0) {
    int err = o->read_err;
    o->read_err = 0;
    if (o->connected) addr_where(&o->remote, where, sizeof where);
    return loom__raise_oserror(L, op, err, where);
  }
  o->got = 0;
  lua_pushlstring(L, o->rbuf, o->rlen);
  if (!ctx) return 1;
  return 1 + push_address(L, &o->from);
}

/* After reading stopped on a backlog, take the next datagram straight from
 * the socket (no poll round trip while the kernel queue is not empty);
 * the backlog ends at the first EAGAIN. */
static void try_recv(udp_obj *o) {
  uv_os_fd_t fd;
  socklen_t alen = sizeof o->from;
  ssize_t n;
  if (uv_fileno((uv_handle_t *)&o->handle, &fd) != 0) {
    o->backlog = 0;
    return;
  }
  memset(&o->from, 0, sizeof o->from);
  do {
    n = recvfrom(fd, o->rbuf, MAX_DGRAM, MSG_DONTWAIT,
                 (struct sockaddr *)&o->from, &alen);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) {
    o->got = 1;
    o->rlen = (size_t)n;
  } else {
    o->backlog = 0;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      o->read_err = uv_translate_sys_error(errno);
  }
}

static int receive(lua_State *L, int from) {
  udp_obj *o = check_obj(L, 1);
  const char *op = from ? "receive_from" : "receive";
  loom_task *t = loom__check_blocking(
    L, from ? "UDPSocket:receive_from" : "ConnectedUDPSocket:receive", 1);
  int err;
  if (o->closed) return raise_closed(L, op);
  if (o->receiving) return raise_busy(L, "reading from");
  loom__cancel_point(L, t);
  lua_settop(L, 1);
  if (o->rbuf == NULL) {
    o->rbuf = (char *)malloc(MAX_DGRAM);
    if (o->rbuf == NULL) return luaL_error(L, "loom: out of memory");
  }
  o->receiving = 1;
  if (!o->got && o->read_err == 0 && o->backlog) try_recv(o);
  if (o->got || o->read_err != 0)
    return loom__schedule_point(L, t, (lua_KContext)from, k_receive);
  if (!o->reading) {
    err = uv_udp_recv_start(&o->handle, alloc_cb, recv_cb);
    if (err != 0) {
      o->receiving = 0;
      return loom__raise_oserror(L, op, err, NULL);
    }
    o->reading = 1;
  }
  /* Only a waiting receiver keeps the loop alive (deadlock detection). */
  uv_ref((uv_handle_t *)&o->handle);
  o->reader_ref = 1;
  o->reader = t;
  loom__park(t, receive_abort, op, o);
  return loom__suspend(L, (lua_KContext)from, k_receive);
}

static int l_udp_receive_from(lua_State *L) { return receive(L, 1); }
static int l_udp_receive(lua_State *L) { return receive(L, 0); }

/* ---- send --------------------------------------------------------------- */

static void send_cb(uv_udp_send_t *req, int status) {
  send_req *s = (send_req *)req;
  udp_obj *o = s->obj;
  if (s->task != NULL) {
    loom_task *t = s->task;
    o->writer = NULL;
    o->cur_send = NULL;
    o->send_err = status == UV_ECANCELED ? 0 : status;
    loom__wake(t, status == UV_ECANCELED ? LOOM_WAKE_CLOSED
                  : status < 0           ? LOOM_WAKE_ERROR
                                         : LOOM_WAKE_OK);
  }
  free(s);
}

/* A datagram handed to libuv goes out whole or not at all; a cancelled
 * waiter just stops waiting. */
static void send_abort(loom_task *t) {
  udp_obj *o = (udp_obj *)t->wait_data;
  if (o->cur_send != NULL) o->cur_send->task = NULL;
  o->cur_send = NULL;
  o->writer = NULL;
}

static int k_send(lua_State *L, int status, lua_KContext ctx) {
  int how;
  udp_obj *o = (udp_obj *)ctx;
  loom_task *t = loom__task_of(L);
  const char *op = lua_tostring(L, lua_upvalueindex(2));
  char where[80] = "";
  (void)status;
  o->sending = 0;
  how = loom__wake_outcome(L, t, 1);
  if (how == LOOM_WAKE_CLOSED) return raise_closed(L, op);
  if (how == LOOM_WAKE_ERROR) {
    if (o->connected) addr_where(&o->remote, where, sizeof where);
    return loom__raise_oserror(L, op, o->send_err, where);
  }
  return 0;
}

/* Send data to ss (NULL: the connected peer). */
static int do_send(lua_State *L, udp_obj *o, const char *op, const char *data,
                   size_t len, const struct sockaddr_storage *ss) {
  loom_task *t = loom__task_of(L);
  const struct sockaddr *sa = (const struct sockaddr *)ss;
  char where[80] = "";
  uv_buf_t b;
  int n;
  size_t limit;
  if (ss != NULL) addr_where(ss, where, sizeof where);
  else addr_where(&o->remote, where, sizeof where);
  limit = (ss != NULL ? ss->ss_family : o->remote.ss_family) == AF_INET6
            ? MAX_V6
            : MAX_V4;
  if (len > limit) {
    lua_pushfstring(L,
                    "%s: datagram too large (%I bytes; at most %I "
                    "over %s) (%s)",
                    op, (lua_Integer)len, (lua_Integer)limit,
                    limit == MAX_V6 ? "IPv6" : "IPv4", where);
    return loom__raise_error(L, "OSError", lua_tostring(L, -1), "EMSGSIZE");
  }
  loom__cancel_point(L, t);
  b = uv_buf_init((char *)data, (unsigned int)len);
  n = uv_udp_try_send(&o->handle, &b, 1, sa);
  if (n >= 0) {
    o->sending = 1;
    return loom__schedule_point(L, t, (lua_KContext)o, k_send);
  }
  if (n == UV_EAGAIN) {
    send_req *s = (send_req *)malloc(sizeof *s + len);
    int err;
    if (s == NULL) return luaL_error(L, "loom: out of memory");
    memcpy(s->data, data, len);
    s->obj = o;
    s->task = t;
    b = uv_buf_init(s->data, (unsigned int)len);
    err = uv_udp_send(&s->req, &o->handle, &b, 1, sa, send_cb);
    if (err != 0) {
      free(s);
      return loom__raise_oserror(L, op, err, where);
    }
    o->sending = 1;
    o->writer = t;
    o->cur_send = s;
    loom__park(t, send_abort, op, o);
    return loom__suspend(L, (lua_KContext)o, k_send);
  }
  return loom__raise_oserror(L, op, n, where);
}

/* sock:send_to(data, ip, port) (udp.lua resolves names). */
static int l_udp_send_to(lua_State *L) {
  udp_obj *o = check_obj(L, 1);
  struct sockaddr_storage ss;
  size_t len;
  const char *data;
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_typeerror(L, 2, "string");
  data = lua_tolstring(L, 2, &len);
  check_addr(L, 3, &ss);
  loom__check_blocking(L, "UDPSocket:send_to", 1);
  if (o->closed) return raise_closed(L, "send_to");
  if (o->sending) return raise_busy(L, "writing to");
  return do_send(L, o, "send_to", data, len, &ss);
}

static int l_udp_send(lua_State *L) {
  udp_obj *o = check_obj(L, 1);
  size_t len;
  const char *data;
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_typeerror(L, 2, "string");
  data = lua_tolstring(L, 2, &len);
  loom__check_blocking(L, "ConnectedUDPSocket:send", 1);
  if (o->closed) return raise_closed(L, "send");
  if (o->sending) return raise_busy(L, "writing to");
  return do_send(L, o, "send", data, len, NULL);
}

/* ---- creation ----------------------------------------------------------- */

/* core.udp_open(local_ip, local_port, reuse_port[, remote_ip, remote_port])
 * -> UDPSocket, or ConnectedUDPSocket when a remote address is given. */
static int l_udp_open(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  struct sockaddr_storage local, remote;
  int reuse = lua_toboolean(L, 3), connected = !lua_isnoneornil(L, 4);
  char where[80];
  udp_box *box;
  udp_obj *o;
  int err;
  /* After loom_close the loop is closed (or is the host's, maybe gone). */
  if (rt->closed)
    return luaL_error(L, "loom.%s: the runtime is closed",
                      connected ? "create_connected_udp_socket"
                                : "create_udp_socket");
  check_addr(L, 1, &local);
  if (connected) check_addr(L, 4, &remote);
  box = (udp_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->obj = NULL;
  luaL_setmetatable(L, connected ? CUDP_MT : UDP_MT);
  o = (udp_obj *)calloc(1, sizeof *o);
  if (o == NULL) return luaL_error(L, "loom: out of memory");
  o->rt = rt;
  o->ud_alive = 1;
  o->family = local.ss_family;
  err = uv_udp_init_ex(rt->loop, &o->handle, local.ss_family);
  if (err != 0) {
    free(o);
    return loom__raise_oserror(
      L, connected ? "create_connected_udp_socket" : "create_udp_socket", err,
      NULL);
  }
  o->handle.data = o;
  o->handle_live = 1;
  uv_unref((uv_handle_t *)&o->handle);
  box->obj = o;
  if (reuse) {
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&o->handle, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      err = uv_translate_sys_error(errno);
  }
  if (err == 0) err = uv_udp_bind(&o->handle, (struct sockaddr *)&local, 0);
  if (err != 0) {
    addr_where(&local, where, sizeof where);
    obj_close(o);
    return loom__raise_oserror(
      L, connected ? "create_connected_udp_socket" : "create_udp_socket", err,
      where);
  }
  if (connected) {
    err = uv_udp_connect(&o->handle, (struct sockaddr *)&remote);
    if (err != 0) {
      addr_where(&remote, where, sizeof where);
      obj_close(o);
      return loom__raise_oserror(L, "create_connected_udp_socket", err, where);
    }
    o->connected = 1;
    o->remote = remote;
  }
  {
    int n = (int)sizeof o->local;
    uv_udp_getsockname(&o->handle, (struct sockaddr *)&o->local, &n);
  }
  return 1;
}

/* ---- methods ------------------------------------------------------------ */

static int l_udp_close(lua_State *L) {
  obj_close(check_obj(L, 1));
  return 0;
}

static int l_udp_local_address(lua_State *L) {
  udp_obj *o = check_obj(L, 1);
  if (o->closed) return raise_closed(L, "local_address");
  return push_address(L, &o->local);
}

static int l_udp_remote_address(lua_State *L) {
  udp_obj *o = check_obj(L, 1);
  if (o->closed) return raise_closed(L, "remote_address");
  return push_address(L, &o->remote);
}

static int l_udp_family(lua_State *L) {
  udp_obj *o = check_obj(L, 1);
  lua_pushstring(L, o->family == AF_INET6 ? "inet6" : "inet");
  return 1;
}

static int l_udp_tostring(lua_State *L) {
  udp_box *box = (udp_box *)lua_touserdata(L, 1);
  udp_obj *o = box->obj;
  const char *mt = luaL_testudata(L, 1, CUDP_MT) ? CUDP_MT : UDP_MT;
  char a[80], b[80];
  if (o == NULL || o->closed) {
    lua_pushfstring(L, "%s: %p (closed)", mt, (void *)box);
    return 1;
  }
  addr_where(&o->local, a, sizeof a);
  if (o->connected) {
    addr_where(&o->remote, b, sizeof b);
    lua_pushfstring(L, "%s: %p (%s -> %s)", mt, (void *)box, a, b);
  } else {
    lua_pushfstring(L, "%s: %p (bound to %s)", mt, (void *)box, a);
  }
  return 1;
}

static void count_cb(uv_handle_t *h, void *arg) {
  lua_Integer *c = (lua_Integer *)arg;
  if (h->type == UV_UDP && h->data != NULL) {
    c[0]++;
    if (uv_is_closing(h)) c[1]++;
  }
}

/* core.udp_stats() -> {sockets =, closing =}: live libuv UDP handles. */
static int l_udp_stats(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  lua_Integer c[2] = {0, 0};
  if (!rt->closed) uv_walk(rt->loop, count_cb, c);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, c[0]);
  lua_setfield(L, -2, "sockets");
  lua_pushinteger(L, c[1]);
  lua_setfield(L, -2, "closing");
  return 1;
}

static const luaL_Reg udp_methods[] = {
  {"send_to", l_udp_send_to}, {"receive_from", l_udp_receive_from},
  {"close", l_udp_close},     {"local_address", l_udp_local_address},
  {"family", l_udp_family},   {NULL, NULL},
};

static const luaL_Reg cudp_methods[] = {
  {"send", l_udp_send},
  {"receive", l_udp_receive},
  {"close", l_udp_close},
  {"local_address", l_udp_local_address},
  {"remote_address", l_udp_remote_address},
  {"family", l_udp_family},
  {NULL, NULL},
};

static const luaL_Reg udp_funcs[] = {
  {"udp_open", l_udp_open},
  {"udp_stats", l_udp_stats},
  {NULL, NULL},
};

static const luaL_Reg udp_meta[] = {
  {"__close", l_udp_close},
  {"__gc", l_obj_gc},
  {"__tostring", l_udp_tostring},
  {NULL, NULL},
};

/* Methods get upvalues rt and their own name (for k_send's messages). */
static const loom_class udp_class = {UDP_MT,
                                     udp_meta,
                                     udp_methods,
                                     NULL,
                                     NULL,
                                     "udp_socket_methods",
                                     LOOM_CLASS_UP_NAME};
static const loom_class cudp_class = {CUDP_MT,
                                      udp_meta,
                                      cudp_methods,
                                      NULL,
                                      NULL,
                                      "connected_udp_socket_methods",
                                      LOOM_CLASS_UP_NAME};

/* Stack: rt(1) module(top). */
int loom__open_udp(lua_State *L) {
  int mod = lua_gettop(L);
  loom__class_register(L, mod, &udp_class, 1, 1);
  loom__class_register(L, mod, &cudp_class, 1, 1);
  lua_settop(L, mod);
  loom__setfuncs(L, 1, udp_funcs);
  return 0;
}
