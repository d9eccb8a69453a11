/*
 * fs.c: files and file-system calls on libuv's fs requests (run in the
 * libuv thread pool). Owns the raw file handle (loom.core.FileHandle: an fd,
 * positional read/write, fstat, close) and one core function per fs call;
 * the io-style File object (formats, buffering, seek) is fs.lua's.
 *
 * Every call parks the caller with an abort function. A cancelled call
 * orphans its request: libuv cancels it if no pool thread took it yet,
 * otherwise it runs to completion; either way its callback frees it, so
 * the request and the buffers it owns stay allocated until then, and a
 * file's fd stays open while a request on it is in flight. A handle may
 * also own one read-ahead request (a sequential reader's next chunk),
 * which the next matching read takes over and anything else drops.
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loom_internal.h"

#define STATE_MT "loom.core.FsState"
#define CALL_MT "loom.core.FsCall"
#define HANDLE_MT "loom.core.FileHandle"

#define MAX_IO (1 << 30) /* most bytes one read or write request moves */

/* Per-runtime counters, malloc'd and reference counted: the state userdata,
 * every live request and every live file hold a reference, so callbacks
 * that run while the Lua state closes (the runtime's final uv_run) still
 * find it. */
typedef struct fs_state {
  int refs;
  lua_Integer live_reqs, open_files;
} fs_state;

/* An open fd. Freed once its userdata is finalised and no request on it is
 * in flight; the fd is closed when close() was asked for (or the userdata
 * was finalised) and the last in-flight request completed. */
typedef struct fs_req fs_req;

typedef struct fs_file {
  fs_state *st;
  uv_file fd;    /* -1 once closed or handed to a close request */
  int pending;   /* requests in flight on fd (ahead included) */
  fs_req *ahead; /* a read issued before it was asked for, or NULL */
  int64_t ahead_off;
  unsigned char ud_alive, close_wanted, seekable;
} fs_file;

enum {
  OP_OPEN = 1,
  OP_READ,
  OP_WRITE,
  OP_CLOSE,
  OP_STAT,
  OP_MKDTEMP,
  OP_SCANDIR,
  OP_OTHER
};

typedef struct fs_call fs_call;

/* task is the parked caller, NULL once the request is orphaned (cancel, or
 * the caller's box was finalised). buf holds the bytes the request owns.
 * A read-ahead belongs to its file (owned) until a read takes it over. */
struct fs_req {
  uv_fs_t fs;
  fs_state *st;
  loom_task *task;
  fs_call *call;
  fs_file *file;
  int op;
  unsigned char done, owned;
  size_t len;
  char buf[];
};

/* A userdata on the caller's stack that owns the request while the caller
 * waits or builds the results (dns.c's pattern). */
struct fs_call {
  fs_req *req;
  const char *fname; /* for error messages: "open_file", "stat" ... */
};

/* ---- lifetime ----------------------------------------------------------- */

static void state_unref(fs_state *st) {
  if (--st->refs == 0) free(st);
}

/* A synchronous close(2), not uv_fs_close: it runs from finalisers, when
 * the runtime may be closed and a borrowed loop gone, so it must not touch
 * the loop (a synchronous uv_fs_* call counts itself in loop->active_reqs).
 * close(2) releases the fd even when it fails with EINTR on Linux. */
static void close_fd_now(uv_file fd) { (void)close(fd); }

/* Drop one pending request from f; close a deferred fd, free f when
 * nothing refers to it any more. */
static void file_release(fs_file *f) {
  f->pending--;
  if (f->pending > 0) return;
  if (f->close_wanted && f->fd >= 0) {
    close_fd_now(f->fd);
    f->fd = -1;
    f->st->open_files--;
  }
  if (!f->ud_alive && f->fd < 0) {
    fs_state *st = f->st;
    free(f);
    state_unref(st);
  }
}

/* Free a request nobody will read: an fd a late open produced is closed,
 * a late close's fd is already gone. */
static void req_free(fs_req *r) {
  if (r->op == OP_OPEN && r->fs.result >= 0 && r->done)
    close_fd_now((uv_file)r->fs.result);
  uv_fs_req_cleanup(&r->fs);
  if (r->file != NULL) file_release(r->file);
  r->st->live_reqs--;
  state_unref(r->st);
  free(r);
}

static void fs_cb(uv_fs_t *req) {
  fs_req *r = (fs_req *)req;
  r->done = 1;
  if (r->task != NULL) {
    loom_task *t = r->task;
    r->task = NULL;
    loom__wake(t, LOOM_WAKE_OK);
  } else if (r->call == NULL && !r->owned) {
    req_free(r);
  }
}

/* Forget f's read-ahead: freed now if it completed, by its callback
 * otherwise. */
static void drop_ahead(fs_file *f) {
  fs_req *a = f->ahead;
  if (a == NULL) return;
  f->ahead = NULL;
  a->owned = 0;
  if (a->done) req_free(a);
  else uv_cancel((uv_req_t *)&a->fs);
}

/* Cancelled while the request is in flight: orphan it. */
static void fs_abort(loom_task *t) {
  fs_call *c = (fs_call *)t->wait_data;
  fs_req *r = c->req;
  c->req = NULL;
  if (r != NULL) {
    r->task = NULL;
    r->call = NULL;
    uv_cancel((uv_req_t *)&r->fs);
  }
}

static int l_call_gc(lua_State *L) {
  fs_call *c = (fs_call *)lua_touserdata(L, 1);
  fs_req *r = c->req;
  c->req = NULL;
  if (r != NULL) {
    r->task = NULL;
    r->call = NULL;
    if (r->done) req_free(r);
  }
  return 0;
}

static fs_state *get_state(lua_State *L) {
  return *(fs_state **)lua_touserdata(L, lua_upvalueindex(2));
}

/* A fresh request holding `extra` buffer bytes (not zeroed: reads fill
 * it, writes copy into it), or NULL when out of memory. */
static fs_req *alloc_req(fs_state *st, int op, size_t extra, fs_file *f) {
  fs_req *r = (fs_req *)malloc(sizeof *r + extra);
  if (r == NULL) return NULL;
  memset(r, 0, sizeof *r);
  r->st = st;
  st->refs++;
  st->live_reqs++;
  r->op = op;
  r->len = extra;
  r->file = f;
  if (f != NULL) f->pending++;
  return r;
}

/* [-0, +1] a call box owning r (or a fresh request when r is NULL). */
static fs_req *new_call(lua_State *L, fs_req *r, int op, size_t extra,
                        fs_file *f, const char *fname) {
  fs_call *c = (fs_call *)lua_newuserdatauv(L, sizeof *c, 0);
  c->req = NULL;
  c->fname = fname;
  luaL_setmetatable(L, CALL_MT);
  if (r == NULL) r = alloc_req(get_state(L), op, extra, f);
  if (r == NULL) luaL_error(L, "loom: out of memory");
  r->call = c;
  c->req = r;
  return r;
}

#define new_req(L, op, extra, f, fname) \
  new_call((L), NULL, (op), (extra), (f), (fname))

/* The start every plain request shares, once its arguments are checked and
 * t = FS_BEGIN(...): a cancel point (may raise Cancelled before anything is
 * allocated), the stack cut to argument 1 (kept alive for the wait), then
 * a new request on top of it. */
static fs_req *begin_req(lua_State *L, loom_task *t, int op, size_t extra,
                         fs_file *f, const char *fname) {
  loom__cancel_point(L, t);
  lua_settop(L, 1);
  return new_req(L, op, extra, f, fname);
}

/* ---- errors ------------------------------------------------------------- */

/* Raise loom.OSError "<fname>: <message> (<path>)" with .code and .path. */
static int raise_fs(lua_State *L, const char *fname, int err,
                    const char *path) {
  loom__push_oserror(L, "OSError", fname, err, path);
  if (path != NULL && lua_type(L, -1) == LUA_TTABLE) {
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
  }
  return lua_error(L);
}

/* Argument idx must be a non-empty string without NUL. The message names
 * the user's function fname ("bad argument #1 to 'stat' (path is empty)")
 * and blames the user's line, also when a Lua wrapper of fs.lua calls. */
static const char *check_path(lua_State *L, int idx, const char *fname) {
  size_t len;
  const char *p;
  if (lua_type(L, idx) != LUA_TSTRING)
    loom__errorf(L, "bad argument #%d to '%s' (string expected, got %s)", idx,
                 fname,
                 lua_isnoneornil(L, idx) ? "no value" : luaL_typename(L, idx));
  p = lua_tolstring(L, idx, &len);
  if (strlen(p) != len)
    loom__errorf(L, "bad argument #%d to '%s' (path contains a NUL)", idx,
                 fname);
  if (len == 0)
    loom__errorf(L, "bad argument #%d to '%s' (path is empty)", idx, fname);
  return p;
}

/* ---- the shared wait ---------------------------------------------------- */

typedef int (*fs_result_fn)(lua_State *L, fs_req *r, int path_idx);

/* Continuation: the box is on top of the stack; ctx packs the result
 * builder. The request is freed once its results are pushed. */
static int k_fs(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  fs_call *c = (fs_call *)lua_touserdata(L, -1);
  int n;
  fs_req *r;
  fs_result_fn fn = *(fs_result_fn *)ctx;
  (void)status;
  loom__wake_outcome(L, t, 1);
  r = c->req;
  n = r->fs.result < 0 ? -1 : fn(L, r, 1);
  if (n < 0) {
    int err = (int)r->fs.result;
    const char *path = NULL;
    if (lua_type(L, 1) == LUA_TSTRING) path = lua_tostring(L, 1);
    else if (lua_type(L, 1) == LUA_TUSERDATA &&
             lua_getiuservalue(L, 1, 1) == LUA_TSTRING)
      path = lua_tostring(L, -1); /* a FileHandle's path */
    c->req = NULL;
    r->call = NULL;
    req_free(r);
    return raise_fs(L, c->fname, err, path);
  }
  c->req = NULL;
  r->call = NULL;
  req_free(r);
  return n;
}

/* Park the running task on r (submitted: err is uv_fs_*'s return). */
static int wait_req(lua_State *L, loom_task *t, fs_req *r, int err,
                    const fs_result_fn *fn, const char *path) {
  fs_call *c = r->call;
  if (err < 0) {
    c->req = NULL;
    r->call = NULL;
    r->done = 1;
    r->fs.result = err;
    req_free(r);
    return raise_fs(L, c->fname, err, path);
  }
  r->task = t;
  loom__park(t, fs_abort, c->fname, c);
  return loom__suspend(L, (lua_KContext)fn, k_fs);
}

#define FS_BEGIN(L, fname) loom__check_blocking((L), (fname), 1)

/* ---- stat tables -------------------------------------------------------- */

static const char *type_name(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return "file";
  case S_IFDIR: return "directory";
  case S_IFLNK: return "link";
  case S_IFIFO: return "fifo";
  case S_IFSOCK: return "socket";
  case S_IFCHR: return "char";
  case S_IFBLK: return "block";
  default: return "unknown";
  }
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_time(lua_State *L, const char *k, uv_timespec_t ts) {
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  lua_setfield(L, -2, k);
}

/* [-0, +1] luv's field names. */
static void push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 12);
  set_int(L, "size", (lua_Integer)s->st_size);
  set_int(L, "mode", (lua_Integer)(s->st_mode & 07777));
  lua_pushstring(L, type_name(s->st_mode));
  lua_setfield(L, -2, "type");
  set_time(L, "mtime", s->st_mtim);
  set_time(L, "atime", s->st_atim);
  set_time(L, "ctime", s->st_ctim);
  set_int(L, "nlink", (lua_Integer)s->st_nlink);
  set_int(L, "uid", (lua_Integer)s->st_uid);
  set_int(L, "gid", (lua_Integer)s->st_gid);
  set_int(L, "ino", (lua_Integer)s->st_ino);
  set_int(L, "dev", (lua_Integer)s->st_dev);
  set_int(L, "blksize", (lua_Integer)s->st_blksize);
  set_int(L, "blocks", (lua_Integer)s->st_blocks);
}

/* ---- result builders ---------------------------------------------------- */

static int res_none(lua_State *L, fs_req *r, int p) {
  (void)L;
  (void)r;
  (void)p;
  return 0;
}

static int res_stat(lua_State *L, fs_req *r, int p) {
  (void)p;
  push_stat(L, &r->fs.statbuf);
  return 1;
}

static int res_path(lua_State *L, fs_req *r, int p) {
  (void)p;
  lua_pushstring(L, r->op == OP_MKDTEMP ? r->fs.path : (char *)r->fs.ptr);
  return 1;
}

static int res_read(lua_State *L, fs_req *r, int p) {
  (void)p;
  lua_pushlstring(L, r->buf, (size_t)r->fs.result);
  return 1;
}

static int res_count(lua_State *L, fs_req *r, int p) {
  (void)p;
  lua_pushinteger(L, (lua_Integer)r->fs.result);
  return 1;
}

static int res_scandir(lua_State *L, fs_req *r, int p) {
  uv_dirent_t ent;
  lua_Integer i = 0;
  static const char *const names[] = {
    "unknown", "file", "directory", "link", "fifo", "socket", "char", "block"};
  (void)p;
  lua_newtable(L);
  while (uv_fs_scandir_next(&r->fs, &ent) == 0) {
    int ty = (int)ent.type;
    if (ty < 0 || ty > 7) ty = 0;
    lua_createtable(L, 2, 0);
    lua_pushstring(L, ent.name);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, names[ty]);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* [-0, +1] open: a FileHandle; the fd is checked with fstat (not a
 * directory: Lua's io.open would succeed there and fail on read). */
static int res_open(lua_State *L, fs_req *r, int p) {
  fs_state *st = r->st;
  uv_file fd = (uv_file)r->fs.result;
  fs_file **box, *f;
  uv_fs_t sr;
  int err;
  (void)p;
  err = uv_fs_fstat(r->fs.loop, &sr, fd, NULL);
  if (err == 0 && (sr.statbuf.st_mode & S_IFMT) == S_IFDIR) err = UV_EISDIR;
  uv_fs_req_cleanup(&sr);
  if (err != 0) {
    /* report like a failed open */
    close_fd_now(fd);
    r->fs.result = err;
    return -1;
  }
  box = (fs_file **)lua_newuserdatauv(L, sizeof *box, 1);
  *box = NULL;
  luaL_setmetatable(L, HANDLE_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the path, for error messages */
  f = (fs_file *)calloc(1, sizeof *f);
  if (f == NULL) return luaL_error(L, "loom: out of memory");
  f->st = st;
  st->refs++;
  st->open_files++;
  f->fd = fd;
  f->ud_alive = 1;
  f->seekable = (sr.statbuf.st_mode & S_IFMT) == S_IFREG ||
                (sr.statbuf.st_mode & S_IFMT) == S_IFBLK;
  *box = f;
  r->fs.result = -1; /* the handle owns fd now */
  r->op = OP_OTHER;
  return 1;
}

static const fs_result_fn RES_NONE = res_none, RES_STAT = res_stat,
                          RES_PATH = res_path, RES_READ = res_read,
                          RES_COUNT = res_count, RES_SCANDIR = res_scandir,
                          RES_OPEN = res_open;

/* ---- file handles ------------------------------------------------------- */

static fs_file *check_handle(lua_State *L, int idx, const char *fname) {
  fs_file *f = *(fs_file **)luaL_checkudata(L, idx, HANDLE_MT);
  if (f == NULL || f->fd < 0 || f->close_wanted) {
    lua_pushfstring(L, "%s: the file is closed", fname);
    loom__raise_error(L, "ClosedResourceError", lua_tostring(L, -1), NULL);
  }
  return f;
}

static int64_t check_offset(lua_State *L, int idx) {
  lua_Integer off = luaL_optinteger(L, idx, -1);
  if (off < -1) loom__argerror(L, idx, "offset must not be negative");
  return (int64_t)off;
}

/* core.fs_open(path, mode) -> FileHandle, flags-description. mode is
 * io.open's: "r", "w", "a", "r+", "w+", "a+", with "b" allowed after.
 * The only check of loom.open_file's arguments (fs.lua passes them on). */
static int l_fs_open(lua_State *L) {
  const char *path = check_path(L, 1, "open_file");
  const char *mode = "r", *m;
  size_t mlen = 1;
  loom_task *t;
  fs_req *r;
  int flags, err;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TSTRING)
      return loom__errorf(L,
                          "bad argument #2 to 'open_file' (string "
                          "expected, got %s)",
                          luaL_typename(L, 2));
    mode = lua_tolstring(L, 2, &mlen);
  }
  m = mode;
  switch (*m++) {
  case 'r': flags = O_RDONLY; break;
  case 'w': flags = O_WRONLY | O_CREAT | O_TRUNC; break;
  case 'a': flags = O_WRONLY | O_CREAT | O_APPEND; break;
  default: flags = -1; break;
  }
  if (flags != -1 && *m == '+') {
    m++;
    flags = (flags & ~(O_RDONLY | O_WRONLY)) | O_RDWR;
  }
  while (flags != -1 && *m == 'b') m++;
  if (flags == -1 || *m != '\0' || strlen(mode) != mlen)
    return loom__errorf(L, "bad argument #2 to 'open_file' (invalid mode)");
  t = FS_BEGIN(L, "open_file");
  r = begin_req(L, t, OP_OPEN, 0, NULL, "open_file");
  err = uv_fs_open(t->rt->loop, &r->fs, path, flags | O_CLOEXEC, 0666, fs_cb);
  return wait_req(L, t, r, err, &RES_OPEN, path);
}

/* Issue a read of n bytes at off that nobody waits for yet; the next
 * read asking for exactly that takes it over. Best effort: on any failure
 * there is simply no read-ahead. */
static void read_ahead(uv_loop_t *loop, fs_file *f, size_t n, int64_t off) {
  fs_req *a = alloc_req(f->st, OP_READ, n, f);
  uv_buf_t b;
  if (a == NULL) return;
  a->owned = 1;
  b = uv_buf_init(a->buf, (unsigned int)n);
  if (uv_fs_read(loop, &a->fs, f->fd, &b, 1, off, fs_cb) != 0) {
    a->owned = 0;
    a->done = 1;
    a->fs.result = -1;
    req_free(a);
    return;
  }
  f->ahead = a;
  f->ahead_off = off;
}

/* handle:read(n[, offset[, ahead]]) -> up to n bytes, "" at end of file.
 * offset -1 (default) reads at the fd's position. With ahead (and an
 * offset), the read of the next n bytes is issued at once, so that a
 * sequential reader finds it done or under way: the pool reads while Lua
 * handles the previous chunk. */
static int l_handle_read(lua_State *L) {
  fs_file *f = check_handle(L, 1, "read");
  lua_Integer n = luaL_checkinteger(L, 2);
  int64_t off = check_offset(L, 3);
  int ahead = lua_toboolean(L, 4);
  loom_task *t;
  fs_req *r, *a;
  uv_buf_t b;
  int err;
  if (n < 0) loom__argerror(L, 2, "count must not be negative");
  if (n > MAX_IO) n = MAX_IO;
  t = FS_BEGIN(L, "File:read");
  loom__cancel_point(L, t);
  lua_settop(L, 1);
  a = f->ahead;
  if (a != NULL && off >= 0 && f->ahead_off == off && a->len == (size_t)n) {
    f->ahead = NULL;
    a->owned = 0;
    r = new_call(L, a, OP_READ, 0, f, "read");
    if (ahead) read_ahead(t->rt->loop, f, (size_t)n, off + n);
    if (r->done)
      return loom__schedule_point(L, t, (lua_KContext)&RES_READ, k_fs);
    return wait_req(L, t, r, 0, &RES_READ, NULL);
  }
  drop_ahead(f);
  r = new_req(L, OP_READ, (size_t)n, f, "read");
  b = uv_buf_init(r->buf, (unsigned int)n);
  err = uv_fs_read(t->rt->loop, &r->fs, f->fd, &b, 1, off, fs_cb);
  if (err == 0 && ahead && off >= 0)
    read_ahead(t->rt->loop, f, (size_t)n, off + n);
  return wait_req(L, t, r, err, &RES_READ, NULL);
}

/* handle:write(data[, offset]) -> bytes written (maybe fewer). The request
 * owns a copy of the data, so a cancelled write may still land. */
static int l_handle_write(lua_State *L) {
  fs_file *f = check_handle(L, 1, "write");
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int64_t off = check_offset(L, 3);
  loom_task *t;
  fs_req *r;
  uv_buf_t b;
  int err;
  if (len > MAX_IO) len = MAX_IO;
  t = FS_BEGIN(L, "File:write");
  loom__cancel_point(L, t);
  drop_ahead(f); /* it may read what this write replaces */
  lua_settop(L, 1);
  r = new_req(L, OP_WRITE, len, f, "write");
  memcpy(r->buf, data, len);
  b = uv_buf_init(r->buf, (unsigned int)len);
  err = uv_fs_write(t->rt->loop, &r->fs, f->fd, &b, 1, off, fs_cb);
  return wait_req(L, t, r, err, &RES_COUNT, NULL);
}

static int l_handle_stat(lua_State *L) {
  fs_file *f = check_handle(L, 1, "stat");
  loom_task *t = FS_BEGIN(L, "File:stat");
  fs_req *r;
  int err;
  r = begin_req(L, t, OP_STAT, 0, f, "stat");
  err = uv_fs_fstat(t->rt->loop, &r->fs, f->fd, fs_cb);
  return wait_req(L, t, r, err, &RES_STAT, NULL);
}

static int l_handle_sync(lua_State *L) {
  fs_file *f = check_handle(L, 1, "sync");
  loom_task *t = FS_BEGIN(L, "File:sync");
  fs_req *r;
  int err;
  r = begin_req(L, t, OP_OTHER, 0, f, "sync");
  err = uv_fs_fsync(t->rt->loop, &r->fs, f->fd, fs_cb);
  return wait_req(L, t, r, err, &RES_NONE, NULL);
}

/* handle:close(): idempotent. Closes the fd in the pool, or, when requests
 * on it are still in flight (orphaned by a cancel), once they completed. */
static int l_handle_close(lua_State *L) {
  fs_file *f = *(fs_file **)luaL_checkudata(L, 1, HANDLE_MT);
  loom_task *t;
  fs_req *r;
  uv_file fd;
  int err;
  if (f == NULL || f->fd < 0 || f->close_wanted) return 0;
  t = FS_BEGIN(L, "File:close");
  drop_ahead(f);
  if (f->pending > 0) {
    f->close_wanted = 1;
    return 0;
  }
  fd = f->fd;
  f->fd = -1;
  f->st->open_files--;
  lua_settop(L, 1);
  r = new_req(L, OP_CLOSE, 0, NULL, "close");
  err = uv_fs_close(t->rt->loop, &r->fs, fd, fs_cb);
  return wait_req(L, t, r, err, &RES_NONE, NULL);
}

static int l_handle_fileno(lua_State *L) {
  fs_file *f = check_handle(L, 1, "fileno");
  lua_pushinteger(L, f->fd);
  return 1;
}

static int l_handle_seekable(lua_State *L) {
  fs_file *f = check_handle(L, 1, "seekable");
  lua_pushboolean(L, f->seekable);
  return 1;
}

/* __gc: finalise only; the fd is closed now unless a request on it is in
 * flight (then its callback closes it). */
static int l_handle_gc(lua_State *L) {
  fs_file **box = (fs_file **)lua_touserdata(L, 1);
  fs_file *f = *box;
  *box = NULL;
  if (f == NULL) return 0;
  drop_ahead(f); /* first: while ud_alive, releasing it cannot free f */
  f->ud_alive = 0;
  f->close_wanted = 1;
  if (f->pending > 0) return 0;
  if (f->fd >= 0) {
    close_fd_now(f->fd);
    f->fd = -1;
    f->st->open_files--;
  }
  {
    fs_state *st = f->st;
    free(f);
    state_unref(st);
  }
  return 0;
}

static int l_handle_tostring(lua_State *L) {
  fs_file *f = *(fs_file **)luaL_checkudata(L, 1, HANDLE_MT);
  if (f == NULL || f->fd < 0 || f->close_wanted)
    lua_pushfstring(L, HANDLE_MT ": %p (closed)", lua_touserdata(L, 1));
  else
    lua_pushfstring(L, HANDLE_MT ": %p (fd %d)", lua_touserdata(L, 1),
                    (int)f->fd);
  return 1;
}

/* ---- path calls --------------------------------------------------------- */

static int l_fs_stat(lua_State *L) {
  const char *path = check_path(L, 1, "stat");
  loom_task *t = FS_BEGIN(L, "fs.stat");
  fs_req *r;
  r = begin_req(L, t, OP_STAT, 0, NULL, "stat");
  return wait_req(L, t, r, uv_fs_stat(t->rt->loop, &r->fs, path, fs_cb),
                  &RES_STAT, path);
}

static int l_fs_lstat(lua_State *L) {
  const char *path = check_path(L, 1, "lstat");
  loom_task *t = FS_BEGIN(L, "fs.lstat");
  fs_req *r;
  r = begin_req(L, t, OP_STAT, 0, NULL, "lstat");
  return wait_req(L, t, r, uv_fs_lstat(t->rt->loop, &r->fs, path, fs_cb),
                  &RES_STAT, path);
}

static int l_fs_mkdir(lua_State *L) {
  const char *path = check_path(L, 1, "mkdir");
  lua_Integer mode = luaL_optinteger(L, 2, 0777);
  loom_task *t = FS_BEGIN(L, "fs.mkdir");
  fs_req *r;
  r = begin_req(L, t, OP_OTHER, 0, NULL, "mkdir");
  return wait_req(L, t, r,
                  uv_fs_mkdir(t->rt->loop, &r->fs, path, (int)mode, fs_cb),
                  &RES_NONE, path);
}

static int l_fs_rmdir(lua_State *L) {
  const char *path = check_path(L, 1, "rmdir");
  loom_task *t = FS_BEGIN(L, "fs.rmdir");
  fs_req *r;
  r = begin_req(L, t, OP_OTHER, 0, NULL, "rmdir");
  return wait_req(L, t, r, uv_fs_rmdir(t->rt->loop, &r->fs, path, fs_cb),
                  &RES_NONE, path);
}

static int l_fs_unlink(lua_State *L) {
  const char *path = check_path(L, 1, "unlink");
  loom_task *t = FS_BEGIN(L, "fs.unlink");
  fs_req *r;
  r = begin_req(L, t, OP_OTHER, 0, NULL, "unlink");
  return wait_req(L, t, r, uv_fs_unlink(t->rt->loop, &r->fs, path, fs_cb),
                  &RES_NONE, path);
}

static int l_fs_rename(lua_State *L) {
  const char *from = check_path(L, 1, "rename");
  const char *to = check_path(L, 2, "rename");
  loom_task *t = FS_BEGIN(L, "fs.rename");
  fs_req *r;
  /* Not begin_req: `to` (argument 2) stays on the stack, so that the
   * collector cannot free it before libuv copied it. */
  loom__cancel_point(L, t);
  lua_settop(L, 2);
  r = new_req(L, OP_OTHER, 0, NULL, "rename");
  return wait_req(L, t, r, uv_fs_rename(t->rt->loop, &r->fs, from, to, fs_cb),
                  &RES_NONE, from);
}

static int l_fs_copyfile(lua_State *L) {
  const char *from = check_path(L, 1, "copyfile");
  const char *to = check_path(L, 2, "copyfile");
  loom_task *t = FS_BEGIN(L, "fs.copyfile");
  fs_req *r;
  /* Not begin_req: `to` (argument 2) stays on the stack, so that the
   * collector cannot free it before libuv copied it. */
  loom__cancel_point(L, t);
  lua_settop(L, 2);
  r = new_req(L, OP_OTHER, 0, NULL, "copyfile");
  return wait_req(L, t, r,
                  uv_fs_copyfile(t->rt->loop, &r->fs, from, to, 0, fs_cb),
                  &RES_NONE, from);
}

static int l_fs_scandir(lua_State *L) {
  const char *path = check_path(L, 1, "readdir");
  loom_task *t = FS_BEGIN(L, "fs.readdir");
  fs_req *r;
  r = begin_req(L, t, OP_SCANDIR, 0, NULL, "readdir");
  return wait_req(L, t, r, uv_fs_scandir(t->rt->loop, &r->fs, path, 0, fs_cb),
                  &RES_SCANDIR, path);
}

static int l_fs_realpath(lua_State *L) {
  const char *path = check_path(L, 1, "realpath");
  loom_task *t = FS_BEGIN(L, "fs.realpath");
  fs_req *r;
  r = begin_req(L, t, OP_OTHER, 0, NULL, "realpath");
  return wait_req(L, t, r, uv_fs_realpath(t->rt->loop, &r->fs, path, fs_cb),
                  &RES_PATH, path);
}

/* core.fs_mkdtemp(prefix) -> prefix .. six random characters. */
static int l_fs_mkdtemp(lua_State *L) {
  const char *prefix = check_path(L, 1, "mkdtemp");
  loom_task *t = FS_BEGIN(L, "fs.mkdtemp");
  fs_req *r;
  const char *tpl;
  loom__cancel_point(L, t);
  lua_settop(L, 1);
  tpl = lua_pushfstring(L, "%sXXXXXX", prefix);
  lua_replace(L, 1);
  r = new_req(L, OP_MKDTEMP, 0, NULL, "mkdtemp");
  return wait_req(L, t, r, uv_fs_mkdtemp(t->rt->loop, &r->fs, tpl, fs_cb),
                  &RES_PATH, prefix);
}

/* core.fs_stats() -> {requests =, files =}: fs requests in flight (orphaned
 * ones included) and fds held by file handles (deferred closes included). */
static int l_fs_stats(lua_State *L) {
  fs_state *st = get_state(L);
  lua_createtable(L, 0, 2);
  set_int(L, "requests", st->live_reqs);
  set_int(L, "files", st->open_files);
  return 1;
}

static int l_state_gc(lua_State *L) {
  fs_state **box = (fs_state **)lua_touserdata(L, 1);
  if (*box != NULL) state_unref(*box);
  *box = NULL;
  return 0;
}

/* ---- registration ------------------------------------------------------- */

static const luaL_Reg handle_methods[] = {
  {"read", l_handle_read},         {"write", l_handle_write},
  {"stat", l_handle_stat},         {"sync", l_handle_sync},
  {"close", l_handle_close},       {"fileno", l_handle_fileno},
  {"seekable", l_handle_seekable}, {NULL, NULL},
};

static const luaL_Reg fs_funcs[] = {
  {"fs_open", l_fs_open},
  {"fs_stat", l_fs_stat},
  {"fs_lstat", l_fs_lstat},
  {"fs_mkdir", l_fs_mkdir},
  {"fs_rmdir", l_fs_rmdir},
  {"fs_unlink", l_fs_unlink},
  {"fs_rename", l_fs_rename},
  {"fs_copyfile", l_fs_copyfile},
  {"fs_scandir", l_fs_scandir},
  {"fs_realpath", l_fs_realpath},
  {"fs_mkdtemp", l_fs_mkdtemp},
  {"fs_stats", l_fs_stats},
  {NULL, NULL},
};

static const luaL_Reg state_meta[] = {
  {"__gc", l_state_gc},
  {NULL, NULL},
};

static const luaL_Reg call_meta[] = {
  {"__gc", l_call_gc},
  {NULL, NULL},
};

static const luaL_Reg handle_meta[] = {
  {"__gc", l_handle_gc},
  {"__tostring", l_handle_tostring},
  {NULL, NULL},
};

static const loom_class state_class = {STATE_MT, state_meta, NULL, NULL,
                                       NULL,     NULL,       0};
static const loom_class call_class = {CALL_MT, call_meta, NULL, NULL,
                                      NULL,    NULL,      0};
/* Methods close over rt(1) and the state box. */
static const loom_class handle_class = {
  HANDLE_MT, handle_meta, handle_methods, NULL, NULL, NULL, 0};

/* Stack: rt(1) module(top). */
int loom__open_fs(lua_State *L) {
  fs_state **sbox;
  int sidx;
  loom__class_register(L, 0, &state_class, 0, 0);
  loom__class_register(L, 0, &call_class, 0, 0);
  lua_pop(L, 2);
  sbox = (fs_state **)lua_newuserdatauv(L, sizeof *sbox, 0);
  *sbox = NULL;
  luaL_setmetatable(L, STATE_MT);
  *sbox = (fs_state *)calloc(1, sizeof **sbox);
  if (*sbox == NULL) return luaL_error(L, "loom: out of memory");
  (*sbox)->refs = 1;
  sidx = lua_gettop(L);
  lua_pushvalue(L, sidx - 1); /* the module */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, sidx); /* upvalues: rt, state */
  loom__class_register(L, 0, &handle_class, -2, 2);
  lua_pop(L, 1);
  luaL_setfuncs(L, fs_funcs, 2);
  lua_pop(L, 2);
  return 0;
}
