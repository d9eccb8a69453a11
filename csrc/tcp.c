/*
 * tcp.c: TCP streams and listeners on libuv. Every blocking operation
 * (connect, accept, receive, send) parks the calling task with an abort
 * function; libuv callbacks only store outcomes in C and wake the task, and
 * the task's continuation builds the Lua values. Reading is started only
 * while a task waits in receive and stopped as soon as one read landed, so a
 * stream nobody reads from buffers nothing; a send waits until libuv has
 * handed all of its bytes to the kernel, so writers feel backpressure.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

#define STREAM_MT "loom.TCPStream"
#define LISTENER_MT "loom.TCPListener"

#define READ_CHUNK 65536       /* most bytes one receive reads */
#define DEFAULT_RECEIVE 65536  /* receive() without max_bytes */
#define KEEP_RBUF 4096         /* read buffers up to this size are reused */

enum { KIND_STREAM = 1, KIND_LISTENER = 2 };

typedef struct write_req write_req;

/* A stream or a listener. The userdata is a box holding a pointer to this
 * malloc'd struct, because libuv may still call back after the userdata is
 * finalised: the struct is freed once both the userdata has been finalised
 * (ud_alive = 0) and the handle's close callback has run (handle_live = 0).
 * Pending write, connect and shutdown requests complete (with UV_ECANCELED
 * when the handle is closed) before the close callback, so they may use the
 * struct until then. */
typedef struct tcp_obj {
  uv_tcp_t handle;             /* handle.data points back here */
  uv_connect_t connect;        /* a client stream's connect request */
  loom_rt *rt;
  struct sockaddr_storage local, remote;   /* cached addresses */
  int kind;
  unsigned char ud_alive, handle_live, closing, closed, has_local,
    has_remote;
  /* reading: one receive at a time */
  unsigned char receiving, eof;
  int read_err;                /* sticky error of a failed read */
  char *rbuf;                  /* data read but not yet returned */
  size_t rcap, roff, rlen, want;
  loom_task *reader;           /* parked in receive */
  /* writing: one send at a time */
  unsigned char sending, eof_sent, send_broken, acceptor_ref;
  int write_err;               /* sticky error of a failed write */
  loom_task *writer;           /* parked in send */
  write_req *cur_write;        /* the write the parked sender waits for */
  /* connecting */
  loom_task *connecter;
  int connect_status;
  /* listening */
  unsigned char accepting, conn_ready;
  int listen_err;
  loom_task *acceptor;         /* parked in accept */
} tcp_obj;

/* A queued write owns a copy of the bytes libuv could not write at once.
 * task is the parked sender, NULL once it stopped waiting (cancelled, or
 * the stream was closed): the request then completes on its own. */
struct write_req {
  uv_write_t req;
  tcp_obj *obj;
  loom_task *task;
  char data[];
};

typedef struct tcp_box {
  tcp_obj *obj;
} tcp_box;

/* ---- lifetime ---------------------------------------------------------- */

static void free_obj(tcp_obj *o) {
  free(o->rbuf);
  free(o);
}

static void close_cb(uv_handle_t *h) {
  tcp_obj *o = (tcp_obj *)h->data;
  o->handle_live = 0;
  if (!o->ud_alive) free_obj(o);
}

static void start_close(tcp_obj *o) {
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

/* close(): idempotent. Tasks blocked on the object wake with
 * ClosedResourceError (Trio's choice, SEMANTICS.md D7); a queued write is
 * dropped by libuv (its callback frees it). */
static void obj_close(tcp_obj *o) {
  if (o->closed) return;
  o->closed = 1;
  if (o->cur_write != NULL) {
    o->cur_write->task = NULL;
    o->cur_write = NULL;
  }
  wake_slot(&o->reader, LOOM_WAKE_CLOSED);
  wake_slot(&o->writer, LOOM_WAKE_CLOSED);
  wake_slot(&o->connecter, LOOM_WAKE_CLOSED);
  wake_slot(&o->acceptor, LOOM_WAKE_CLOSED);
  start_close(o);
}

/* [-0, +1] a new box with a fresh object and an initialised handle. */
static tcp_obj *new_obj(lua_State *L, loom_rt *rt, int kind) {
  tcp_box *box = (tcp_box *)lua_newuserdatauv(L, sizeof *box, 0);
  tcp_obj *o;
  box->obj = NULL;
  luaL_setmetatable(L, kind == KIND_STREAM ? STREAM_MT : LISTENER_MT);
  o = (tcp_obj *)calloc(1, sizeof *o);
  if (o == NULL) luaL_error(L, "loom: out of memory");
  o->rt = rt;
  o->kind = kind;
  o->ud_alive = 1;
  uv_tcp_init(rt->loop, &o->handle);
  o->handle.data = o;
  o->handle_live = 1;
  box->obj = o;
  return o;
}

/* __gc: finalise only. A parked task keeps its stream reachable, so no task
 * waits here any more (or the whole state is being closed). */
static int l_obj_gc(lua_State *L) {
  tcp_box *box = (tcp_box *)lua_touserdata(L, 1);
  tcp_obj *o = box->obj;
  if (o == NULL) return 0;
  box->obj = NULL;
  o->ud_alive = 0;
  o->reader = o->writer = o->connecter = o->acceptor = NULL;
  if (o->cur_write != NULL) o->cur_write->task = NULL;
  o->cur_write = NULL;
  o->closed = 1;
  if (!o->handle_live) free_obj(o);
  else if (o->rt->closed && !o->rt->borrowed)
    free_obj(o);   /* the (own) loop already closed it */
  else start_close(o);
  return 0;
}

static tcp_obj *check_obj(lua_State *L, int idx, const char *mt) {
  tcp_box *box = (tcp_box *)luaL_checkudata(L, idx, mt);
  if (box->obj == NULL) luaL_argerror(L, idx, "finalised object");
  return box->obj;
}

#define check_stream(L, i) check_obj((L), (i), STREAM_MT)
#define check_listener(L, i) check_obj((L), (i), LISTENER_MT)

/* ---- errors and addresses ---------------------------------------------- */

/* "host:port" or "[host]:port" of a socket address into buf. */
static int addr_name(const struct sockaddr_storage *ss, char *host,
                     size_t hostlen, int *port) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    *port = ntohs(a->sin_port);
    return uv_ip4_name(a, host, hostlen);
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    *port = ntohs(a->sin6_port);
    return uv_ip6_name(a, host, hostlen);
  }
  return UV_EAFNOSUPPORT;
}

static void addr_where(const struct sockaddr_storage *ss, char *buf,
                       size_t n) {
  char host[64];
  int port = 0;
  if (addr_name(ss, host, sizeof host, &port) != 0) {
    snprintf(buf, n, "?");
    return;
  }
  snprintf(buf, n, ss->ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host,
           port);
}

/* Raise loom.OSError "op: <libuv message> (where)" with .code the libuv
 * error name. */
static int raise_uv(lua_State *L, const char *op, int err,
                    const char *where) {
  if (where != NULL && where[0] != '\0')
    lua_pushfstring(L, "%s: %s (%s)", op, uv_strerror(err), where);
  else
    lua_pushfstring(L, "%s: %s", op, uv_strerror(err));
  return loom__raise_error(L, "OSError", lua_tostring(L, -1),
                           uv_err_name(err));
}

/* An OSError naming the peer when it is known. */
static int raise_stream_err(lua_State *L, tcp_obj *o, const char *op,
                            int err) {
  char where[80] = "";
  if (o->has_remote) addr_where(&o->remote, where, sizeof where);
  return raise_uv(L, op, err, where);
}

static int raise_closed(lua_State *L, const char *msg) {
  return loom__raise_error(L, "ClosedResourceError", msg, NULL);
}

/* AnyIO's words: "Another task is already reading from this resource". */
static int raise_busy(lua_State *L, const char *action) {
  lua_pushfstring(L, "Another task is already %s this resource", action);
  return loom__raise_error(L, "BusyResourceError", lua_tostring(L, -1),
                           NULL);
}

/* Parse a numeric IPv4 or IPv6 address; 0 on success. */
static int parse_ip(const char *ip, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return 0;
  memset(ss, 0, sizeof *ss);
  return uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss);
}

static const char *check_ip(lua_State *L, int idx,
                            struct sockaddr_storage *ss, int port) {
  size_t len;
  const char *ip = luaL_checklstring(L, idx, &len);
  if (strlen(ip) != len) luaL_argerror(L, idx, "address contains a NUL");
  if (parse_ip(ip, port, ss) != 0)
    luaL_argerror(L, idx, lua_pushfstring(L, "not a numeric IP address: "
                                          "'%s'", ip));
  return ip;
}

static int check_port(lua_State *L, int idx, int min) {
  lua_Integer p = luaL_checkinteger(L, idx);
  if (p < min || p > 65535)
    luaL_argerror(L, idx, lua_pushfstring(L, "port must be in %d..65535",
                                          min));
  return (int)p;
}

/* Remember both ends of a connected stream (for errors and accessors). */
static void cache_addresses(tcp_obj *o) {
  int n = (int)sizeof o->local;
  o->has_local = uv_tcp_getsockname(&o->handle,
                                    (struct sockaddr *)&o->local, &n) == 0;
  n = (int)sizeof o->remote;
  o->has_remote = uv_tcp_getpeername(&o->handle,
                                     (struct sockaddr *)&o->remote, &n) == 0;
}

/* [-0, +2] host, port of a cached address. */
static int push_address(lua_State *L, const struct sockaddr_storage *ss) {
  char host[64];
  int port = 0, err = addr_name(ss, host, sizeof host, &port);
  if (err != 0) return raise_uv(L, "address", err, NULL);
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

/* ---- the shared schedule point ------------------------------------------ */

/* Yield once and continue in k on the next scheduler turn (the fast path of
 * an operation that did not need to wait is still a checkpoint). */
static int schedule_point(lua_State *L, loom_task *t, tcp_obj *o,
                          lua_KFunction k) {
  return loom__schedule_point(L, t, (lua_KContext)o, k);
}

/* ---- receive ----------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  tcp_obj *o = (tcp_obj *)h->data;
  (void)suggested;
  /* receive() made sure rbuf holds `want` bytes and is empty. */
  buf->base = o->rbuf;
  buf->len = o->want;
}

/* One read landed: stop reading (nothing is read while nobody receives)
 * and hand it to the parked receiver. */
static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  tcp_obj *o = (tcp_obj *)h->data;
  (void)buf;
  if (nread == 0) return;   /* EAGAIN: keep waiting */
  uv_read_stop(h);
  if (nread > 0) {
    o->roff = 0;
    o->rlen = (size_t)nread;
  } else if (nread == UV_EOF) {
    o->eof = 1;
  } else {
    o->read_err = (int)nread;
  }
  wake_slot(&o->reader, LOOM_WAKE_OK);
}

static void receive_abort(loom_task *t) {
  tcp_obj *o = (tcp_obj *)t->wait_data;
  o->reader = NULL;
  uv_read_stop((uv_stream_t *)&o->handle);
}

/* Give back big read buffers once empty: an idle stream holds little. */
static void trim_rbuf(tcp_obj *o) {
  if (o->rlen == 0 && o->rcap > KEEP_RBUF) {
    free(o->rbuf);
    o->rbuf = NULL;
    o->rcap = 0;
  }
}

static int k_receive(lua_State *L, int status, lua_KContext ctx) {
  tcp_obj *o = (tcp_obj *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  o->receiving = 0;
  loom__check_wake(L, t);
  if (t->wake == LOOM_WAKE_CLOSED)
    return raise_closed(L, "receive: the stream was closed by another task");
  if (o->rlen > 0) {
    size_t n = o->rlen < o->want ? o->rlen : o->want;
    lua_pushlstring(L, o->rbuf + o->roff, n);
    o->roff += n;
    o->rlen -= n;
    if (o->rlen == 0) o->roff = 0;
    trim_rbuf(o);
    return 1;
  }
  if (o->read_err != 0) return raise_stream_err(L, o, "receive", o->read_err);
  if (o->eof)
    return loom__raise_error(L, "EndOfStream",
                             "receive: the peer closed the connection", NULL);
  return raise_closed(L, "receive: the stream is closed");
}

/* stream:receive([max_bytes]) -> a non-empty string of at most max_bytes,
 * or raises EndOfStream once the peer has closed its side. */
static int l_stream_receive(lua_State *L) {
  tcp_obj *o = check_stream(L, 1);
  lua_Integer max = DEFAULT_RECEIVE;
  loom_task *t;
  int err;
  if (!lua_isnoneornil(L, 2)) {
    max = luaL_checkinteger(L, 2);
    if (max < 1) luaL_argerror(L, 2, "max_bytes must be at least 1");
  }
  t = loom__check_blocking(L, "TCPStream:receive", 1);
  if (o->closed) return raise_closed(L, "receive: the stream is closed");
  if (o->receiving) return raise_busy(L, "reading from");
  loom__cancel_point(L, t);
  o->want = max > READ_CHUNK ? READ_CHUNK : (size_t)max;
  if (o->rlen > 0 || o->eof || o->read_err != 0) {
    o->receiving = 1;
    return schedule_point(L, t, o, k_receive);
  }
  if (o->rcap < o->want) {
    char *b = (char *)realloc(o->rbuf, o->want);
    if (b == NULL) return luaL_error(L, "loom: out of memory");
    o->rbuf = b;
    o->rcap = o->want;
  }
  o->roff = o->rlen = 0;
  err = uv_read_start((uv_stream_t *)&o->handle, alloc_cb, read_cb);
  if (err != 0) return raise_stream_err(L, o, "receive", err);
  o->receiving = 1;
  o->reader = t;
  loom__park(t, receive_abort, "TCPStream:receive", o);
  return loom__suspend(L, (lua_KContext)o, k_receive);
}

/* ---- send -------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  tcp_obj *o = w->obj;
  if (status < 0 && status != UV_ECANCELED && o->write_err == 0)
    o->write_err = status;
  if (w->task != NULL) {
    loom_task *t = w->task;
    o->writer = NULL;
    o->cur_write = NULL;
    loom__wake(t, status == 0 ? LOOM_WAKE_OK
                  : status == UV_ECANCELED ? LOOM_WAKE_CLOSED
                                           : LOOM_WAKE_ERROR);
  }
  free(w);
}

/* A blocked send cannot be taken back: libuv owns the queued bytes. The
 * write goes on in the background (its request owns its copy of the data)
 * and the stream's sending side is marked broken, because an unknown part
 * of the message reached the peer (Trio's rule for send_all). */
static void send_abort(loom_task *t) {
  tcp_obj *o = (tcp_obj *)t->wait_data;
  if (o->cur_write != NULL) o->cur_write->task = NULL;
  o->cur_write = NULL;
  o->writer = NULL;
  o->send_broken = 1;
}

static int k_send(lua_State *L, int status, lua_KContext ctx) {
  tcp_obj *o = (tcp_obj *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  o->sending = 0;
  loom__check_wake(L, t);
  if (t->wake == LOOM_WAKE_CLOSED)
    return raise_closed(L, "send: the stream was closed by another task");
  if (t->wake == LOOM_WAKE_ERROR)
    return raise_stream_err(L, o, "send", o->write_err);
  return 0;
}

/* Checks shared by send and send_eof. */
static void check_sendable(lua_State *L, tcp_obj *o, const char *op) {
  if (o->closed) {
    lua_pushfstring(L, "%s: the stream is closed", op);
    raise_closed(L, lua_tostring(L, -1));
  }
  if (o->sending) raise_busy(L, "writing to");
  if (o->send_broken) {
    lua_pushfstring(L, "%s: a cancelled send left this stream's sending "
                    "side in an unknown state", op);
    loom__raise_error(L, "BrokenResourceError", lua_tostring(L, -1), NULL);
  }
  if (o->write_err != 0) raise_stream_err(L, o, op, o->write_err);
}

/* stream:send(data): returns once libuv has handed every byte to the
 * kernel. Writes what the socket takes at once; queues the rest. */
static int l_stream_send(lua_State *L) {
  tcp_obj *o = check_stream(L, 1);
  size_t len;
  const char *data;
  loom_task *t;
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_typeerror(L, 2, "string");
  data = lua_tolstring(L, 2, &len);
  if (len > 0x7fffffffu)   /* libuv buffers hold an unsigned int length */
    luaL_argerror(L, 2, "data too large (at most 2 GiB per send)");
  t = loom__check_blocking(L, "TCPStream:send", 1);
  check_sendable(L, o, "send");
  if (o->eof_sent)
    return raise_closed(L, "send: cannot send after send_eof()");
  loom__cancel_point(L, t);
  if (len > 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
    int n = uv_try_write((uv_stream_t *)&o->handle, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
      o->write_err = n;
      return raise_stream_err(L, o, "send", n);
    }
    if ((size_t)n < len) {
      size_t rest = len - (size_t)n;
      write_req *w = (write_req *)malloc(sizeof *w + rest);
      int err;
      if (w == NULL) return luaL_error(L, "loom: out of memory");
      memcpy(w->data, data + n, rest);
      w->obj = o;
      w->task = t;
      b = uv_buf_init(w->data, (unsigned int)rest);
      err = uv_write(&w->req, (uv_stream_t *)&o->handle, &b, 1, write_cb);
      if (err != 0) {
        free(w);
        o->write_err = err;
        return raise_stream_err(L, o, "send", err);
      }
      o->sending = 1;
      o->writer = t;
      o->cur_write = w;
      loom__park(t, send_abort, "TCPStream:send", o);
      return loom__suspend(L, (lua_KContext)o, k_send);
    }
  }
  o->sending = 1;
  return schedule_point(L, t, o, k_send);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

/* stream:send_eof(): half-close. Queued after any pending write; does not
 * wait for the FIN to be sent (nothing to take back once issued). */
static int l_stream_send_eof(lua_State *L) {
  tcp_obj *o = check_stream(L, 1);
  loom_task *t = loom__check_blocking(L, "TCPStream:send_eof", 1);
  uv_shutdown_t *req;
  int err;
  check_sendable(L, o, "send_eof");
  loom__cancel_point(L, t);
  if (!o->eof_sent) {
    req = (uv_shutdown_t *)malloc(sizeof *req);
    if (req == NULL) return luaL_error(L, "loom: out of memory");
    err = uv_shutdown(req, (uv_stream_t *)&o->handle, shutdown_cb);
    if (err != 0) {
      free(req);
      return raise_stream_err(L, o, "send_eof", err);
    }
    o->eof_sent = 1;
  }
  o->sending = 1;
  return schedule_point(L, t, o, k_send);
}

/* ---- connect ----------------------------------------------------------- */

static void connect_cb(uv_connect_t *req, int status) {
  tcp_obj *o = (tcp_obj *)req->handle->data;
  o->connect_status = status;
  wake_slot(&o->connecter, LOOM_WAKE_OK);
}

/* Cancelling a connect closes the handle; the connect callback then runs
 * with UV_ECANCELED and nobody waits for it. */
static void connect_abort(loom_task *t) {
  tcp_obj *o = (tcp_obj *)t->wait_data;
  o->connecter = NULL;
  obj_close(o);
}

static int k_connect(lua_State *L, int status, lua_KContext ctx) {
  tcp_obj *o = (tcp_obj *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  loom__check_wake(L, t);
  if (o->connect_status < 0 || o->closed) {
    int err = o->connect_status < 0 ? o->connect_status : UV_ECANCELED;
    obj_close(o);
    return raise_uv(L, "connect_tcp", err, lua_tostring(L, 4));
  }
  uv_tcp_nodelay(&o->handle, 1);
  cache_addresses(o);
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
  tcp_obj *o;
  check_ip(L, 1, &ss, port);
  t = loom__check_blocking(L, "connect_tcp", 1);
  loom__cancel_point(L, t);
  lua_settop(L, 2);
  o = new_obj(L, rt, KIND_STREAM);                     /* 3 */
  addr_where(&ss, where, sizeof where);
  lua_pushstring(L, where);                            /* 4 */
  err = uv_tcp_connect(&o->connect, &o->handle, (struct sockaddr *)&ss,
                       connect_cb);
  if (err != 0) {
    obj_close(o);
    return raise_uv(L, "connect_tcp", err, where);
  }
  o->connecter = t;
  loom__park(t, connect_abort, "connect_tcp", o);
  return loom__suspend(L, (lua_KContext)o, k_connect);
}

/* ---- listeners --------------------------------------------------------- */

static void connection_cb(uv_stream_t *server, int status) {
  tcp_obj *o = (tcp_obj *)server->data;
  /* Not accepted here: libuv stops polling the listening socket until
   * uv_accept, so connections wait in the kernel's backlog until a task
   * calls accept(). */
  if (status < 0) o->listen_err = status;
  else o->conn_ready = 1;
  if (o->acceptor != NULL) {
    if (o->acceptor_ref) uv_unref((uv_handle_t *)&o->handle);
    o->acceptor_ref = 0;
    wake_slot(&o->acceptor, LOOM_WAKE_OK);
  }
}

static void accept_abort(loom_task *t) {
  tcp_obj *o = (tcp_obj *)t->wait_data;
  o->acceptor = NULL;
  if (o->acceptor_ref) uv_unref((uv_handle_t *)&o->handle);
  o->acceptor_ref = 0;
}

static int k_accept(lua_State *L, int status, lua_KContext ctx) {
  tcp_obj *o = (tcp_obj *)ctx, *c;
  loom_task *t = loom__task_of(L);
  int err;
  (void)status;
  o->accepting = 0;
  loom__check_wake(L, t);
  if (t->wake == LOOM_WAKE_CLOSED || o->closed)
    return raise_closed(L, "accept: the listener was closed by another "
                        "task");
  if (o->listen_err != 0) {
    err = o->listen_err;
    o->listen_err = 0;
    return raise_uv(L, "accept", err, NULL);
  }
  o->conn_ready = 0;
  c = new_obj(L, o->rt, KIND_STREAM);
  err = uv_accept((uv_stream_t *)&o->handle, (uv_stream_t *)&c->handle);
  if (err != 0) {
    obj_close(c);
    return raise_uv(L, "accept", err, NULL);
  }
  uv_tcp_nodelay(&c->handle, 1);
  cache_addresses(c);
  return 1;
}

/* listener:accept() -> TCPStream */
static int l_listener_accept(lua_State *L) {
  tcp_obj *o = check_listener(L, 1);
  loom_task *t = loom__check_blocking(L, "TCPListener:accept", 1);
  if (o->closed) return raise_closed(L, "accept: the listener is closed");
  if (o->accepting) return raise_busy(L, "accepting connections from");
  loom__cancel_point(L, t);
  o->accepting = 1;
  if (o->conn_ready || o->listen_err != 0)
    return schedule_point(L, t, o, k_accept);
  /* Only a waiting acceptor keeps the loop alive (deadlock detection). */
  uv_ref((uv_handle_t *)&o->handle);
  o->acceptor_ref = 1;
  o->acceptor = t;
  loom__park(t, accept_abort, "TCPListener:accept", o);
  return loom__suspend(L, (lua_KContext)o, k_accept);
}

/* core.tcp_listen(ip, port, backlog) -> TCPListener. Binding is
 * synchronous; EADDRINUSE shows here (libuv reports it from uv_listen). */
static int l_tcp_listen(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  struct sockaddr_storage ss;
  int port = check_port(L, 2, 0), err;
  lua_Integer backlog = luaL_optinteger(L, 3, 65536);
  char where[80];
  tcp_obj *o;
  check_ip(L, 1, &ss, port);
  if (backlog < 1 || backlog > 0x7fffffff)
    luaL_argerror(L, 3, "backlog must be in 1..2147483647");
  o = new_obj(L, rt, KIND_LISTENER);
  err = uv_tcp_bind(&o->handle, (struct sockaddr *)&ss, 0);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&o->handle, (int)backlog, connection_cb);
  if (err != 0) {
    obj_close(o);
    addr_where(&ss, where, sizeof where);
    return raise_uv(L, "create_tcp_listener", err, where);
  }
  uv_unref((uv_handle_t *)&o->handle);
  {
    int n = (int)sizeof o->local;
    o->has_local = uv_tcp_getsockname(&o->handle,
                                      (struct sockaddr *)&o->local, &n) == 0;
  }
  return 1;
}

/* ---- shared methods ---------------------------------------------------- */

static int l_stream_close(lua_State *L) {
  obj_close(check_stream(L, 1));
  return 0;
}

static int l_listener_close(lua_State *L) {
  obj_close(check_listener(L, 1));
  return 0;
}

static int local_address(lua_State *L, tcp_obj *o) {
  if (o->closed) return raise_closed(L, "local_address: closed");
  if (!o->has_local) return raise_uv(L, "local_address", UV_ENOTCONN, NULL);
  return push_address(L, &o->local);
}

static int l_stream_local_address(lua_State *L) {
  return local_address(L, check_stream(L, 1));
}

static int l_listener_local_address(lua_State *L) {
  return local_address(L, check_listener(L, 1));
}

static int l_stream_remote_address(lua_State *L) {
  tcp_obj *o = check_stream(L, 1);
  if (o->closed) return raise_closed(L, "remote_address: closed");
  if (!o->has_remote)
    return raise_uv(L, "remote_address", UV_ENOTCONN, NULL);
  return push_address(L, &o->remote);
}

static int l_stream_tostring(lua_State *L) {
  tcp_box *box = (tcp_box *)luaL_checkudata(L, 1, STREAM_MT);
  tcp_obj *o = box->obj;
  char a[80], b[80];
  if (o == NULL || o->closed) {
    lua_pushfstring(L, STREAM_MT ": %p (closed)", (void *)box);
    return 1;
  }
  addr_where(&o->local, a, sizeof a);
  addr_where(&o->remote, b, sizeof b);
  lua_pushfstring(L, STREAM_MT ": %p (%s -> %s)", (void *)box, a, b);
  return 1;
}

static int l_listener_tostring(lua_State *L) {
  tcp_box *box = (tcp_box *)luaL_checkudata(L, 1, LISTENER_MT);
  tcp_obj *o = box->obj;
  char a[80];
  if (o == NULL || o->closed) {
    lua_pushfstring(L, LISTENER_MT ": %p (closed)", (void *)box);
    return 1;
  }
  addr_where(&o->local, a, sizeof a);
  lua_pushfstring(L, LISTENER_MT ": %p (listening on %s)", (void *)box, a);
  return 1;
}

/* ---- introspection for tests --------------------------------------------- */

typedef struct tcp_counts {
  lua_Integer streams, listeners, closing, rbuf_bytes, write_queue_bytes;
} tcp_counts;

static void count_cb(uv_handle_t *h, void *arg) {
  tcp_counts *c = (tcp_counts *)arg;
  tcp_obj *o;
  if (h->type != UV_TCP || h->data == NULL) return;
  o = (tcp_obj *)h->data;
  if (o->kind == KIND_LISTENER) c->listeners++;
  else c->streams++;
  if (uv_is_closing(h)) c->closing++;
  c->rbuf_bytes += (lua_Integer)o->rcap;
  c->write_queue_bytes +=
    (lua_Integer)uv_stream_get_write_queue_size((uv_stream_t *)h);
}

/* core.tcp_stats() -> {streams, listeners, closing, rbuf_bytes,
 * write_queue_bytes, active_reqs}: live libuv TCP handles (closing ones
 * included until their close callback ran) and what they buffer. */
static int l_tcp_stats(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  tcp_counts c;
  memset(&c, 0, sizeof c);
  uv_walk(rt->loop, count_cb, &c);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, c.streams);
  lua_setfield(L, -2, "streams");
  lua_pushinteger(L, c.listeners);
  lua_setfield(L, -2, "listeners");
  lua_pushinteger(L, c.closing);
  lua_setfield(L, -2, "closing");
  lua_pushinteger(L, c.rbuf_bytes);
  lua_setfield(L, -2, "rbuf_bytes");
  lua_pushinteger(L, c.write_queue_bytes);
  lua_setfield(L, -2, "write_queue_bytes");
  lua_pushinteger(L, (lua_Integer)rt->loop->active_reqs.count);
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

static const luaL_Reg stream_methods[] = {
  {"receive", l_stream_receive},
  {"send", l_stream_send},
  {"send_eof", l_stream_send_eof},
  {"close", l_stream_close},
  {"local_address", l_stream_local_address},
  {"remote_address", l_stream_remote_address},
  {NULL, NULL}
};

static const luaL_Reg listener_methods[] = {
  {"accept", l_listener_accept},
  {"close", l_listener_close},
  {"local_address", l_listener_local_address},
  {NULL, NULL}
};

static const luaL_Reg tcp_funcs[] = {
  {"tcp_connect", l_tcp_connect},
  {"tcp_listen", l_tcp_listen},
  {"tcp_stats", l_tcp_stats},
  {"ip_family", l_ip_family},
  {NULL, NULL}
};

/* [-0, +0] a metatable whose __index is a methods table, exported to the
 * module as `field` so that Lua can add methods. */
static void new_class(lua_State *L, const char *mt, const luaL_Reg *methods,
                      lua_CFunction close_fn, lua_CFunction tostring_fn,
                      const char *field) {
  luaL_newmetatable(L, mt);
  lua_newtable(L);
  loom__setfuncs(L, 1, methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, field);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, close_fn);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_obj_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tostring_fn);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

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
  new_class(L, STREAM_MT, stream_methods, l_stream_close, l_stream_tostring,
            "tcp_stream_methods");
  new_class(L, LISTENER_MT, listener_methods, l_listener_close,
            l_listener_tostring, "tcp_listener_methods");
  loom__setfuncs(L, 1, tcp_funcs);
  return 0;
}
