/*
 * stream.c: byte streams and listeners over any uv_stream_t (TCP, Unix
 * sockets, pipes, terminals) plus regular files. Every blocking operation
 * (accept, receive, send) parks the calling task with an abort function;
 * libuv callbacks only store outcomes in C and wake the task, and the
 * task's continuation builds the Lua values. Reading is started only while
 * a task waits in receive and stopped as soon as one read landed, so a
 * stream nobody reads from buffers nothing; a send waits until libuv has
 * handed all of its bytes to the kernel, so writers feel backpressure.
 * Connecting and binding are the callers' business (tcp.c, pipe.c).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loom_internal.h"

#define READ_CHUNK 65536      /* most bytes one receive reads */
#define DEFAULT_RECEIVE 65536 /* receive() without max_bytes */
#define KEEP_RBUF 4096        /* read buffers up to this size are reused */

/* A queued write owns a copy of the bytes libuv could not write at once.
 * task is the parked sender, NULL once it stopped waiting (cancelled, or
 * the stream was closed): the request then completes on its own. */
struct loom_write_req {
  uv_write_t req;
  loom_stream *obj;
  loom_task *task;
  char data[];
};

/* The userdata: magic and class first, for the fast type check of every
 * method call (loom__stream_check). */
typedef struct stream_box {
  uint32_t magic; /* LOOM_MAGIC_STREAM */
  const loom_stream_class *cls;
  loom_stream *obj;
} stream_box;

/* The class of the methods being called: upvalue 2 of every method. */
#define method_class(L) \
  ((const loom_stream_class *)lua_touserdata((L), lua_upvalueindex(2)))

/* ---- lifetime ---------------------------------------------------------- */

static void free_obj(loom_stream *o) {
  free(o->rbuf);
  free(o->unlink_path);
  free(o);
}

static void close_cb(uv_handle_t *h) {
  loom_stream *o = (loom_stream *)h->data;
  o->handle_live = 0;
  if (!o->ud_alive) free_obj(o);
}

/* A file stream's descriptor, or a pipe given back to blocking mode (the
 * file description may be shared with other processes: stdio). */
static void release_fd(loom_stream *o) {
  if (o->fd >= 0) {
    close(o->fd);
    o->fd = -1;
    if (o->files != NULL) (*o->files)--;
  }
}

/* Close the libuv handle (once). A pipe shared with other processes
 * (stdio) goes back to blocking mode first. */
static void close_handle(loom_stream *o) {
  /* After loom_close the runtime's own loop closed every handle (without
   * our callback) and is closed itself: uv_close must not run again. */
  if (o->rt->closed && !o->rt->borrowed) o->handle_live = 0;
  if (o->restore_block && o->handle_live) {
    uv_os_fd_t fd;
    if (uv_fileno(&o->h.handle, &fd) == 0) {
      int fl = fcntl(fd, F_GETFL);
      if (fl != -1) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    o->restore_block = 0;
  }
  if (o->handle_live && !o->closing) {
    o->closing = 1;
    uv_close(&o->h.handle, close_cb);
  }
}

static void start_close(loom_stream *o) {
  o->reading = 0; /* (uv_close stops it) */
  close_handle(o);
  release_fd(o);
}

/* The socket file of a Unix listener goes with it, unless another
 * listener replaced it meanwhile (different inode). */
static void remove_socket_file(loom_stream *o) {
  struct stat st;
  if (o->unlink_path == NULL) return;
  if (lstat(o->unlink_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
      (uint64_t)st.st_dev == o->unlink_dev &&
      (uint64_t)st.st_ino == o->unlink_ino)
    unlink(o->unlink_path);
  free(o->unlink_path);
  o->unlink_path = NULL;
}

static void wake_slot(loom_task **slot, int how) {
  loom_task *t = *slot;
  if (t != NULL) {
    *slot = NULL;
    loom__wake(t, how);
  }
}

void loom__stream_close(loom_stream *o) {
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
  remove_socket_file(o);
  start_close(o);
}

loom_stream *loom__stream_new(lua_State *L, loom_rt *rt,
                              const loom_stream_class *cls) {
  stream_box *box = (stream_box *)lua_newuserdatauv(L, sizeof *box, 0);
  loom_stream *o;
  box->magic = LOOM_MAGIC_STREAM;
  box->cls = cls;
  box->obj = NULL;
  luaL_setmetatable(L, cls->mt);
  o = (loom_stream *)calloc(1, sizeof *o);
  if (o == NULL) luaL_error(L, "loom: out of memory");
  o->rt = rt;
  o->cls = cls;
  o->fd = -1;
  o->ud_alive = 1;
  o->listener = cls->accepts != NULL;
  o->readable = o->writable = 1;
  o->read_ahead = 1;
  o->rsize = KEEP_RBUF;
  box->obj = o;
  return o;
}

void loom__stream_attach(loom_stream *o) {
  o->h.handle.data = o;
  o->handle_live = 1;
}

/* __gc: finalise only. A parked task keeps its stream reachable, so no task
 * waits here any more (or the whole state is being closed). */
static int l_obj_gc(lua_State *L) {
  stream_box *box = (stream_box *)lua_touserdata(L, 1);
  loom_stream *o = box->obj;
  if (o == NULL) return 0;
  box->obj = NULL;
  o->ud_alive = 0;
  o->reader = o->writer = o->connecter = o->acceptor = NULL;
  if (o->cur_write != NULL) o->cur_write->task = NULL;
  o->cur_write = NULL;
  o->closed = 1;
  remove_socket_file(o);
  release_fd(o);
  if (!o->handle_live) free_obj(o);
  else if (o->rt->closed && !o->rt->borrowed)
    free_obj(o); /* the (own) loop already closed it */
  else start_close(o);
  return 0;
}

loom_stream *loom__stream_check(lua_State *L, int idx,
                                const loom_stream_class *cls) {
  /* The magic and the class instead of the metatable by name: luaL_checkudata
   * interns the name (luaS_new, a strcmp) and looks it up on every call. */
  stream_box *box = (stream_box *)loom__test_ud(L, idx, sizeof *box,
                                                LOOM_MAGIC_STREAM);
  if (box == NULL || box->cls != cls)
    box = (stream_box *)luaL_checkudata(L, idx, cls->mt);
  if (box->obj == NULL) luaL_argerror(L, idx, "finalised object");
  return box->obj;
}

#define check_self(L) loom__stream_check((L), 1, method_class(L))

/* ---- errors and addresses ---------------------------------------------- */

void loom__addr_where(const struct sockaddr_storage *ss, unsigned len,
                      char *buf, size_t n) {
  char host[64];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, host, sizeof host);
    snprintf(buf, n, "%s:%d", host, ntohs(a->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, host, sizeof host);
    snprintf(buf, n, "[%s]:%d", host, ntohs(a->sin6_port));
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
    size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                    ? len - offsetof(struct sockaddr_un, sun_path)
                    : 0;
    if (plen == 0) snprintf(buf, n, "(unnamed)");
    else if (a->sun_path[0] == '\0') /* abstract: shown as @name */
      snprintf(buf, n, "@%.*s", (int)(plen - 1), a->sun_path + 1);
    else snprintf(buf, n, "%s", a->sun_path);
  } else {
    snprintf(buf, n, "?");
  }
}

/* An error naming the peer when it is known. */
static int raise_stream_err(lua_State *L, loom_stream *o, const char *op,
                            int err) {
  char where[160] = "";
  if (o->has_remote && o->cls->addr == LOOM_ADDR_INET)
    loom__addr_where(&o->remote, o->remote_len, where, sizeof where);
  return loom__raise_uv(L, op, err, where);
}

static int raise_closed(lua_State *L, const char *msg) {
  return loom__raise_error(L, "ClosedResourceError", msg, NULL);
}

/* AnyIO's words: "Another task is already reading from this resource". */
static int raise_busy(lua_State *L, const char *action) {
  lua_pushfstring(L, "Another task is already %s this resource", action);
  return loom__raise_error(L, "BusyResourceError", lua_tostring(L, -1), NULL);
}

void loom__stream_cache_addresses(loom_stream *o) {
  uv_os_fd_t fd;
  socklen_t n;
  if (uv_fileno(&o->h.handle, &fd) != 0) return;
  n = (socklen_t)sizeof o->local;
  o->has_local = getsockname(fd, (struct sockaddr *)&o->local, &n) == 0;
  o->local_len = (unsigned)n;
  n = (socklen_t)sizeof o->remote;
  o->has_remote = getpeername(fd, (struct sockaddr *)&o->remote, &n) == 0;
  o->remote_len = (unsigned)n;
}

/* [-0, +1 or +2] an address: host, port (TCP) or a path (Unix; an
 * abstract name keeps its leading NUL; "" for an unnamed socket). */
static int push_address(lua_State *L, const struct sockaddr_storage *ss,
                        unsigned len) {
  char host[64];
  if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
    size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                    ? len - offsetof(struct sockaddr_un, sun_path)
                    : 0;
    if (plen > 0 && a->sun_path[0] != '\0') plen = strnlen(a->sun_path, plen);
    lua_pushlstring(L, a->sun_path, plen);
    return 1;
  }
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, host, sizeof host);
    lua_pushstring(L, host);
    lua_pushinteger(L, ntohs(a->sin_port));
    return 2;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, host, sizeof host);
    lua_pushstring(L, host);
    lua_pushinteger(L, ntohs(a->sin6_port));
    return 2;
  }
  return loom__raise_uv(L, "address", UV_EAFNOSUPPORT, NULL);
}

static int schedule_point(lua_State *L, loom_task *t, loom_stream *o,
                          lua_KFunction k) {
  return loom__schedule_point(L, t, (lua_KContext)o, k);
}

/* ---- receive ----------------------------------------------------------- *
 * receive() turns libuv reading on when it is off. A read that lands goes
 * to the parked receiver and reading stays on, so that the next receive()
 * costs no epoll_ctl: turning reading off and on again costs two system
 * calls per receive (libuv re-adds the descriptor, EEXIST, then modifies
 * it), as many as the read itself. A read that lands while nobody waits is
 * kept; the next one finds no room (alloc_cb), gets UV_ENOBUFS without a
 * system call, and reading stops. So loom holds at most one read per
 * stream, of at most the last receive's max_bytes or 4 KiB (read_size),
 * and a stream nobody receives from reads nothing. Stdio streams (read_ahead =
 * 0) stop after every read: other processes may share the descriptor. */

/* Bytes one read asks the kernel for. A stdio stream: receive's
 * max_bytes. A read-ahead stream: at least KEEP_RBUF (receive(64) of a
 * 64-byte message would fill the buffer, and libuv then reads again at
 * once, finds no room and stops reading), at most max_bytes, and in
 * between what its reads have needed lately (rsize doubles when a read
 * fills the buffer, halves when one uses less than a quarter): small
 * messages are read into one small buffer, kept, instead of a 64 KiB one
 * allocated and freed per receive; a bulk transfer grows to 64 KiB reads
 * within five. */
static size_t read_size(const loom_stream *o) {
  if (!o->read_ahead) return o->want;
  if (o->want <= KEEP_RBUF) return KEEP_RBUF;
  return o->want < o->rsize ? o->want : o->rsize;
}

static void adapt_read_size(loom_stream *o, size_t nread, size_t asked) {
  if (nread == asked && o->rsize < READ_CHUNK && asked == o->rsize)
    o->rsize *= 2;
  else if (nread < o->rsize / 4 && o->rsize > KEEP_RBUF) o->rsize /= 2;
}

static void stop_reading(loom_stream *o) {
  if (o->reading) {
    o->reading = 0;
    uv_read_stop(&o->h.stream);
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  loom_stream *o = (loom_stream *)h->data;
  size_t n = read_size(o);
  (void)suggested;
  buf->base = NULL;
  buf->len = 0; /* no room: read_cb gets UV_ENOBUFS and stops reading */
  if (o->rlen > 0) return; /* the last read is not taken yet */
  if (o->rcap < n) {       /* (receive() reserved it; a trim freed it) */
    char *b = (char *)realloc(o->rbuf, n);
    if (b == NULL) return;
    o->rbuf = b;
    o->rcap = n;
  }
  o->roff = 0;
  buf->base = o->rbuf;
  buf->len = n;
}

/* A read landed: hand it to the parked receiver, or keep it and stop. */
static void read_cb(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  loom_stream *o = (loom_stream *)h->data;
  if (nread == 0) return; /* EAGAIN: keep waiting */
  if (nread == UV_ENOBUFS) {
    /* No room: a read is already held (or memory ran out, and then the
     * next receive() raises it). A parked receiver always has room. */
    LOOM_ASSERT(o->reader == NULL);
    stop_reading(o);
    return;
  }
  if (nread > 0) {
    o->roff = 0;
    o->rlen = (size_t)nread;
    if (!o->read_ahead) stop_reading(o);
    else adapt_read_size(o, (size_t)nread, buf->len);
  } else {
    if (nread == UV_EOF) o->eof = 1;
    else o->read_err = (int)nread;
    stop_reading(o);
  }
  wake_slot(&o->reader, LOOM_WAKE_OK);
}

static void receive_abort(loom_task *t) {
  loom_stream *o = (loom_stream *)t->wait_data;
  o->reader = NULL;
  stop_reading(o);
}

/* Give back big read buffers once empty: an idle stream holds little. */
static void trim_rbuf(loom_stream *o) {
  if (o->rlen == 0 && o->rcap > KEEP_RBUF) {
    free(o->rbuf);
    o->rbuf = NULL;
    o->rcap = 0;
  }
}

static int k_receive(lua_State *L, int status, lua_KContext ctx) {
  loom_stream *o = (loom_stream *)ctx;
  loom_task *t = o->rt->current; /* (k_guard checked it runs on L) */
  (void)status;
  LOOM_ASSERT(t != NULL && t->L == L);
  o->receiving = 0;
  if (loom__wake_outcome(L, t, 1) == LOOM_WAKE_CLOSED)
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

static int reserve_rbuf(lua_State *L, loom_stream *o) {
  size_t n = o->fd >= 0 ? o->want : read_size(o);
  if (o->rcap < n) {
    char *b = (char *)realloc(o->rbuf, n);
    if (b == NULL) return luaL_error(L, "loom: out of memory");
    o->rbuf = b;
    o->rcap = n;
  }
  o->roff = o->rlen = 0;
  return 0;
}

/* A file stream: regular files never make read(2) wait for a peer, so it
 * reads at once and the schedule point keeps it a checkpoint. */
static void file_read(loom_stream *o) {
  ssize_t n;
  do n = read(o->fd, o->rbuf, o->want);
  while (n < 0 && errno == EINTR);
  if (n > 0) o->rlen = (size_t)n;
  else if (n == 0) o->eof = 1;
  else o->read_err = uv_translate_sys_error(errno);
}

/* stream:receive([max_bytes]) -> a non-empty string of at most max_bytes,
 * or raises EndOfStream once the peer has closed its side. */
static int l_stream_receive(lua_State *L) {
  const loom_stream_class *cls = method_class(L);
  loom_stream *o = loom__stream_check(L, 1, cls);
  lua_Integer max = DEFAULT_RECEIVE;
  loom_task *t;
  int err;
  if (!lua_isnoneornil(L, 2)) {
    max = luaL_checkinteger(L, 2);
    if (max < 1) luaL_argerror(L, 2, "max_bytes must be at least 1");
  }
  t = loom__check_blocking_rt(L, o->rt, cls->op_receive, 1);
  if (o->closed) return raise_closed(L, "receive: the stream is closed");
  if (!o->readable)
    return luaL_error(L, "loom.%s:receive: this stream is send-only",
                      cls->name);
  if (o->receiving) return raise_busy(L, "reading from");
  loom__cancel_point(L, t);
  o->want = max > READ_CHUNK ? READ_CHUNK : (size_t)max;
  if (o->rlen > 0 || o->eof || o->read_err != 0) {
    o->receiving = 1;
    return schedule_point(L, t, o, k_receive);
  }
  reserve_rbuf(L, o);
  if (o->fd >= 0) {
    file_read(o);
    o->receiving = 1;
    return schedule_point(L, t, o, k_receive);
  }
  if (!o->reading) {
    err = uv_read_start(&o->h.stream, alloc_cb, read_cb);
    if (err != 0) return raise_stream_err(L, o, "receive", err);
    o->reading = 1;
  }
  o->receiving = 1;
  o->reader = t;
  loom__park(t, receive_abort, cls->op_receive, o);
  return loom__suspend_task(L, t, (lua_KContext)o, k_receive);
}

/* ---- send -------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status) {
  loom_write_req *w = (loom_write_req *)req;
  loom_stream *o = w->obj;
  if (status < 0 && status != UV_ECANCELED && o->write_err == 0)
    o->write_err = status;
  if (w->task != NULL) {
    loom_task *t = w->task;
    o->writer = NULL;
    o->cur_write = NULL;
    loom__wake(t, status == 0              ? LOOM_WAKE_OK
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
  loom_stream *o = (loom_stream *)t->wait_data;
  if (o->cur_write != NULL) o->cur_write->task = NULL;
  o->cur_write = NULL;
  o->writer = NULL;
  o->send_broken = 1;
}

static int k_send(lua_State *L, int status, lua_KContext ctx) {
  int how;
  loom_stream *o = (loom_stream *)ctx;
  loom_task *t = o->rt->current; /* (k_guard checked it runs on L) */
  (void)status;
  LOOM_ASSERT(t != NULL && t->L == L);
  o->sending = 0;
  how = loom__wake_outcome(L, t, 1);
  if (how == LOOM_WAKE_CLOSED)
    return raise_closed(L, "send: the stream was closed by another task");
  if (how == LOOM_WAKE_ERROR || o->write_err != 0)
    return raise_stream_err(L, o, "send", o->write_err);
  return 0;
}

/* Checks shared by send and send_eof. */
static void check_sendable(lua_State *L, loom_stream *o, const char *op) {
  if (o->closed) {
    lua_pushfstring(L, "%s: the stream is closed", op);
    raise_closed(L, lua_tostring(L, -1));
  }
  if (!o->writable)
    luaL_error(L, "loom.%s:%s: this stream is receive-only", o->cls->name, op);
  if (o->sending) raise_busy(L, "writing to");
  if (o->send_broken) {
    lua_pushfstring(L,
                    "%s: a cancelled send left this stream's sending "
                    "side in an unknown state",
                    op);
    loom__raise_error(L, "BrokenResourceError", lua_tostring(L, -1), NULL);
  }
  if (o->write_err != 0) raise_stream_err(L, o, op, o->write_err);
}

/* A file stream writes everything at once (regular files do not wait). */
static int file_write(loom_stream *o, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(o->fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return uv_translate_sys_error(errno);
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* stream:send(data): returns once libuv has handed every byte to the
 * kernel. Writes what the socket takes at once; queues the rest. */
static int l_stream_send(lua_State *L) {
  const loom_stream_class *cls = method_class(L);
  loom_stream *o = loom__stream_check(L, 1, cls);
  size_t len;
  const char *data;
  loom_task *t;
  if (lua_type(L, 2) != LUA_TSTRING) return luaL_typeerror(L, 2, "string");
  data = lua_tolstring(L, 2, &len);
  if (len > 0x7fffffffu) /* libuv buffers hold an unsigned int length */
    luaL_argerror(L, 2, "data too large (at most 2 GiB per send)");
  t = loom__check_blocking_rt(L, o->rt, cls->op_send, 1);
  check_sendable(L, o, "send");
  if (o->eof_sent) return raise_closed(L, "send: cannot send after send_eof()");
  loom__cancel_point(L, t);
  if (len > 0 && o->fd >= 0) {
    int err = file_write(o, data, len);
    if (err != 0) {
      o->write_err = err;
      return raise_stream_err(L, o, "send", err);
    }
  } else if (len > 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned int)len);
    int n = uv_try_write(&o->h.stream, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
    if (n < 0) {
      o->write_err = n;
      return raise_stream_err(L, o, "send", n);
    }
    if ((size_t)n < len) {
      size_t rest = len - (size_t)n;
      loom_write_req *w = (loom_write_req *)malloc(sizeof *w + rest);
      int err;
      if (w == NULL) return luaL_error(L, "loom: out of memory");
      memcpy(w->data, data + n, rest);
      w->obj = o;
      w->task = t;
      b = uv_buf_init(w->data, (unsigned int)rest);
      err = uv_write(&w->req, &o->h.stream, &b, 1, write_cb);
      if (err != 0) {
        free(w);
        o->write_err = err;
        return raise_stream_err(L, o, "send", err);
      }
      o->sending = 1;
      o->writer = t;
      o->cur_write = w;
      loom__park(t, send_abort, cls->op_send, o);
      return loom__suspend_task(L, t, (lua_KContext)o, k_send);
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
 * wait for the FIN to be sent (nothing to take back once issued). A pipe
 * or terminal has no half-close: send_eof closes it (the reader then sees
 * the end of the stream); a file stream just stops sending. */
static int l_stream_send_eof(lua_State *L) {
  const loom_stream_class *cls = method_class(L);
  loom_stream *o = loom__stream_check(L, 1, cls);
  loom_task *t = loom__check_blocking(L, cls->op_send_eof, 1);
  uv_shutdown_t *req;
  int err;
  check_sendable(L, o, "send_eof");
  loom__cancel_point(L, t);
  if (!o->eof_sent && o->no_shutdown) {
    /* No half-close on a pipe: the reader sees the end once it closes.
     * Sends wait for their bytes, so no write is pending here. */
    close_handle(o);
  } else if (!o->eof_sent && o->fd < 0) {
    req = (uv_shutdown_t *)malloc(sizeof *req);
    if (req == NULL) return luaL_error(L, "loom: out of memory");
    err = uv_shutdown(req, &o->h.stream, shutdown_cb);
    if (err != 0) {
      free(req);
      return raise_stream_err(L, o, "send_eof", err);
    }
  }
  o->eof_sent = 1;
  o->sending = 1;
  return schedule_point(L, t, o, k_send);
}

/* ---- listeners --------------------------------------------------------- */

static void connection_cb(uv_stream_t *server, int status) {
  loom_stream *o = (loom_stream *)server->data;
  /* Not accepted here: libuv stops polling the listening socket until
   * uv_accept, so connections wait in the kernel's backlog until a task
   * calls accept(). */
  if (status < 0) o->listen_err = status;
  else o->conn_ready = 1;
  if (o->acceptor != NULL) {
    if (o->acceptor_ref) uv_unref(&o->h.handle);
    o->acceptor_ref = 0;
    wake_slot(&o->acceptor, LOOM_WAKE_OK);
  }
}

int loom__stream_listen(loom_stream *o, int backlog) {
  int err = uv_listen(&o->h.stream, backlog, connection_cb);
  if (err == 0) uv_unref(&o->h.handle);
  return err;
}

static void accept_abort(loom_task *t) {
  loom_stream *o = (loom_stream *)t->wait_data;
  o->acceptor = NULL;
  if (o->acceptor_ref) uv_unref(&o->h.handle);
  o->acceptor_ref = 0;
}

static int k_accept(lua_State *L, int status, lua_KContext ctx) {
  loom_stream *o = (loom_stream *)ctx, *c;
  loom_task *t = loom__task_of(L);
  int err;
  (void)status;
  o->accepting = 0;
  if (loom__wake_outcome(L, t, 1) == LOOM_WAKE_CLOSED || o->closed)
    return raise_closed(L, "accept: the listener was closed by another "
                           "task");
  if (o->listen_err != 0) {
    err = o->listen_err;
    o->listen_err = 0;
    return loom__raise_uv(L, "accept", err, NULL);
  }
  o->conn_ready = 0;
  c = loom__stream_new(L, o->rt, o->cls->accepts);
  if (o->h.handle.type == UV_TCP) uv_tcp_init(o->rt->loop, &c->h.tcp);
  else uv_pipe_init(o->rt->loop, &c->h.pipe, 0);
  loom__stream_attach(c);
  err = uv_accept(&o->h.stream, &c->h.stream);
  if (err != 0) {
    loom__stream_close(c);
    return loom__raise_uv(L, "accept", err, NULL);
  }
  if (c->h.handle.type == UV_TCP) uv_tcp_nodelay(&c->h.tcp, 1);
  loom__stream_cache_addresses(c);
  return 1;
}

/* listener:accept() -> a stream of the listener's kind */
static int l_listener_accept(lua_State *L) {
  const loom_stream_class *cls = method_class(L);
  loom_stream *o = loom__stream_check(L, 1, cls);
  loom_task *t = loom__check_blocking(L, cls->op_accept, 1);
  if (o->closed) return raise_closed(L, "accept: the listener is closed");
  if (o->accepting) return raise_busy(L, "accepting connections from");
  loom__cancel_point(L, t);
  o->accepting = 1;
  if (o->conn_ready || o->listen_err != 0)
    return schedule_point(L, t, o, k_accept);
  /* Only a waiting acceptor keeps the loop alive (deadlock detection). */
  uv_ref(&o->h.handle);
  o->acceptor_ref = 1;
  o->acceptor = t;
  loom__park(t, accept_abort, cls->op_accept, o);
  return loom__suspend(L, (lua_KContext)o, k_accept);
}

/* ---- shared methods ---------------------------------------------------- */

static int l_obj_close(lua_State *L) {
  loom__stream_close(check_self(L));
  return 0;
}

static int l_obj_local_address(lua_State *L) {
  loom_stream *o = check_self(L);
  if (o->closed) return raise_closed(L, "local_address: closed");
  if (!o->has_local)
    return loom__raise_uv(L, "local_address", UV_ENOTCONN, NULL);
  return push_address(L, &o->local, o->local_len);
}

static int l_stream_remote_address(lua_State *L) {
  loom_stream *o = check_self(L);
  if (o->closed) return raise_closed(L, "remote_address: closed");
  if (!o->has_remote)
    return loom__raise_uv(L, "remote_address", UV_ENOTCONN, NULL);
  return push_address(L, &o->remote, o->remote_len);
}

/* "loom.TCPStream: 0x... (a -> b)", "loom.TCPListener: 0x... (listening on
 * a)", "loom.PipeStream: 0x... (pipe)" or "... (closed)". */
static int l_obj_tostring(lua_State *L) {
  const loom_stream_class *cls = method_class(L);
  stream_box *box = (stream_box *)luaL_checkudata(L, 1, cls->mt);
  loom_stream *o = box->obj;
  char a[160], b[160];
  if (o == NULL || o->closed) {
    lua_pushfstring(L, "%s: %p (closed)", cls->mt, (void *)box);
    return 1;
  }
  if (cls->addr == LOOM_ADDR_NONE) {
    const char *what = o->fd >= 0                   ? "file"
                       : o->h.handle.type == UV_TTY ? "terminal"
                                                    : "pipe";
    lua_pushfstring(L, "%s: %p (%s, %s)", cls->mt, (void *)box, what,
                    o->readable && o->writable ? "read-write"
                    : o->readable              ? "receive-only"
                                               : "send-only");
    return 1;
  }
  loom__addr_where(&o->local, o->has_local ? o->local_len : 0, a, sizeof a);
  if (o->listener) {
    lua_pushfstring(L, "%s: %p (listening on %s)", cls->mt, (void *)box, a);
    return 1;
  }
  loom__addr_where(&o->remote, o->has_remote ? o->remote_len : 0, b, sizeof b);
  lua_pushfstring(L, "%s: %p (%s -> %s)", cls->mt, (void *)box, a, b);
  return 1;
}

/* ---- introspection for tests --------------------------------------------- */

typedef struct count_arg {
  const loom_stream_class *const *classes;
  loom_stream_counts *c;
} count_arg;

static int class_in(const loom_stream_class *cls,
                    const loom_stream_class *const *classes) {
  for (; *classes != NULL; classes++)
    if (*classes == cls) return 1;
  return 0;
}

static void count_cb(uv_handle_t *h, void *arg) {
  count_arg *a = (count_arg *)arg;
  loom_stream *o;
  if (h->type != UV_TCP && h->type != UV_NAMED_PIPE && h->type != UV_TTY)
    return;
  if (h->data == NULL) return;
  o = (loom_stream *)h->data;
  if (&o->h.handle != h || !class_in(o->cls, a->classes)) return;
  if (o->listener) a->c->listeners++;
  else a->c->streams++;
  if (uv_is_closing(h)) a->c->closing++;
  a->c->rbuf_bytes += (lua_Integer)o->rcap;
  a->c->write_queue_bytes += (lua_Integer)uv_stream_get_write_queue_size(
    (uv_stream_t *)h);
}

/* Count the live handles of the given classes (NULL-terminated). File
 * streams hold no handle and are not counted here (pipe.c counts them). */
void loom__stream_count(loom_rt *rt, const loom_stream_class *const *classes,
                        loom_stream_counts *c) {
  count_arg a;
  a.classes = classes;
  a.c = c;
  if (!rt->closed) uv_walk(rt->loop, count_cb, &a); /* a closed loop: none */
}

void loom__stream_push_counts(lua_State *L, const loom_stream_counts *c) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, c->streams);
  lua_setfield(L, -2, "streams");
  lua_pushinteger(L, c->listeners);
  lua_setfield(L, -2, "listeners");
  lua_pushinteger(L, c->closing);
  lua_setfield(L, -2, "closing");
  lua_pushinteger(L, c->rbuf_bytes);
  lua_setfield(L, -2, "rbuf_bytes");
  lua_pushinteger(L, c->write_queue_bytes);
  lua_setfield(L, -2, "write_queue_bytes");
}

/* ---- registration ------------------------------------------------------ */

static const luaL_Reg stream_methods[] = {
  {"receive", l_stream_receive},
  {"send", l_stream_send},
  {"send_eof", l_stream_send_eof},
  {"close", l_obj_close},
  {NULL, NULL},
};

static const luaL_Reg socket_methods[] = {
  {"local_address", l_obj_local_address},
  {"remote_address", l_stream_remote_address},
  {NULL, NULL},
};

static const luaL_Reg listener_methods[] = {
  {"accept", l_listener_accept},
  {"close", l_obj_close},
  {"local_address", l_obj_local_address},
  {NULL, NULL},
};

static const luaL_Reg obj_meta[] = {
  {"__close", l_obj_close},
  {"__gc", l_obj_gc},
  {"__tostring", l_obj_tostring},
  {NULL, NULL},
};

/* Every function closes over (runtime, class). */
void loom__stream_register(lua_State *L, int rt_idx,
                           const loom_stream_class *cls, const luaL_Reg *extra,
                           const char *field) {
  int mod = lua_gettop(L);
  loom_class c = {NULL, obj_meta, NULL, NULL, NULL, NULL, 0};
  c.name = cls->mt;
  c.export = field;
  if (cls->accepts != NULL) {
    c.methods = listener_methods;
  } else {
    c.methods = stream_methods;
    if (cls->addr != LOOM_ADDR_NONE) c.more_methods = socket_methods;
  }
  lua_pushvalue(L, rt_idx);
  lua_pushlightuserdata(L, (void *)cls);
  loom__class_register(L, mod, &c, mod + 1, 2);
  if (extra != NULL) {
    lua_getfield(L, -1, "__index");
    lua_pushvalue(L, mod + 1);
    lua_pushvalue(L, mod + 2);
    luaL_setfuncs(L, extra, 2);
  }
  lua_settop(L, mod);
}
