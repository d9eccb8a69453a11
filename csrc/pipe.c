/*
 * pipe.c: Unix domain sockets (connect, listen, abstract names, the socket
 * file's life) and the stdio streams (fds 0, 1, 2 as a terminal, a pipe or
 * a file). Streams of both kinds are stream.c's; the class of child-process
 * pipes (loom.PipeStream) is defined here too.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "loom_internal.h"

static const loom_stream_class unix_stream_class = {
  "loom.UnixStream",    "UnixStream",      LOOM_ADDR_UNIX,        NULL,
  "UnixStream:receive", "UnixStream:send", "UnixStream:send_eof", NULL};

static const loom_stream_class unix_listener_class = {"loom.UnixListener",
                                                      "UnixListener",
                                                      LOOM_ADDR_UNIX,
                                                      &unix_stream_class,
                                                      NULL,
                                                      NULL,
                                                      NULL,
                                                      "UnixListener:accept"};

const loom_stream_class loom__pipe_stream_class = {
  "loom.PipeStream",    "PipeStream",      LOOM_ADDR_NONE,        NULL,
  "PipeStream:receive", "PipeStream:send", "PipeStream:send_eof", NULL};

/* ---- Unix socket addresses ------------------------------------------- */

/* Fill sun from the path argument at idx: a file path, or a Linux
 * abstract name (leading NUL, may contain NULs). Returns the address
 * length, or 0 after pushing nothing when the path is too long (the caller
 * raises OSError ENAMETOOLONG, as AnyIO does). Argument errors name the
 * user's function fname and line (the only check of the path: process.lua
 * passes it on unchecked). */
static socklen_t check_unix_path(lua_State *L, int idx, const char *fname,
                                 struct sockaddr_un *sun, size_t *plen) {
  size_t len;
  const char *p;
  if (lua_type(L, idx) != LUA_TSTRING)
    loom__errorf(L, "bad argument #%d to '%s' (string expected, got %s)", idx,
                 fname, luaL_typename(L, idx));
  p = lua_tolstring(L, idx, &len);
  if (len == 0)
    loom__errorf(L, "bad argument #%d to '%s' (path is empty)", idx, fname);
  if (p[0] != '\0' && strlen(p) != len)
    loom__errorf(L, "bad argument #%d to '%s' (path contains a NUL)", idx,
                 fname);
  *plen = len;
  memset(sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  /* a file path needs room for its terminating NUL */
  if (len > sizeof sun->sun_path - (p[0] != '\0')) return 0;
  memcpy(sun->sun_path, p, len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                     (p[0] != '\0'));
}

static int raise_too_long(lua_State *L, const char *op, size_t len) {
  lua_pushfstring(L, "%s: path too long (%d bytes; at most %d)", op, (int)len,
                  (int)sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
  return loom__raise_error(L, "OSError", lua_tostring(L, -1), "ENAMETOOLONG");
}

static void unix_where(const struct sockaddr_un *sun, socklen_t len, char *buf,
                       size_t n) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  memcpy(&ss, sun, len);
  loom__addr_where(&ss, (unsigned)len, buf, n);
}

/* [-0, +1] a UnixStream over the connected socket fd (owned from here). */
static loom_stream *wrap_socket(lua_State *L, loom_rt *rt,
                                const loom_stream_class *cls, int fd) {
  loom_stream *o = loom__stream_new(L, rt, cls);
  int err;
  uv_pipe_init(rt->loop, &o->h.pipe, 0);
  loom__stream_attach(o);
  err = uv_pipe_open(&o->h.pipe, fd);
  if (err != 0) {
    close(fd);
    loom__stream_close(o);
    loom__raise_uv(L, cls->accepts ? "create_unix_listener" : "connect_unix",
                   err, NULL);
  }
  loom__stream_cache_addresses(o);
  return o;
}

static int k_connected(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = loom__task_of(L);
  (void)status;
  (void)ctx;
  loom__wake_outcome(L, t, 1);
  return 1;
}

/* core.unix_connect(path) -> UnixStream, or false, "EAGAIN" when the
 * listener's backlog is full (unix.lua waits a little and retries).
 * Connecting a Unix socket does not wait for the peer: connect(2) either
 * succeeds at once or fails. */
static int l_unix_connect(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  struct sockaddr_un sun;
  size_t plen;
  socklen_t len;
  len = check_unix_path(L, 1, "connect_unix", &sun, &plen);
  loom__check_open(L, rt, "connect_unix");
  loom_task *t = loom__check_blocking(L, "connect_unix", 1);
  char where[160];
  int fd, r;
  loom__cancel_point(L, t);
  if (len == 0) return raise_too_long(L, "connect_unix", plen);
  unix_where(&sun, len, where, sizeof where);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return loom__raise_uv(L, "connect_unix", uv_translate_sys_error(errno),
                          where);
  do r = connect(fd, (struct sockaddr *)&sun, len);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    close(fd);
    if (e == EAGAIN) {
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "EAGAIN");
      return 2;
    }
    return loom__raise_uv(L, "connect_unix", uv_translate_sys_error(e), where);
  }
  wrap_socket(L, rt, &unix_stream_class, fd);
  return loom__schedule_point(L, t, 0, k_connected);
}

/* core.unix_listen(path, mode|nil, backlog) -> UnixListener. An existing
 * socket file at path is replaced (a stale one is the common case); any
 * other file there is an OSError EADDRINUSE. Abstract names have no file. */
static int l_unix_listen(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  struct sockaddr_un sun;
  size_t plen;
  socklen_t len;
  lua_Integer mode = luaL_optinteger(L, 2, -1);
  lua_Integer backlog = luaL_optinteger(L, 3, 65536);
  int abstract, fd, err;
  char where[160];
  loom__check_open(L, rt, "create_unix_listener");
  len = check_unix_path(L, 1, "create_unix_listener", &sun, &plen);
  abstract = sun.sun_path[0] == '\0';
  struct stat st;
  loom_stream *o;
  if (mode != -1 && (mode < 0 || mode > 07777))
    loom__argerror(L, 2, "mode must be in 0..4095 (0o7777)");
  if (backlog < 1 || backlog > 0x7fffffff)
    loom__argerror(L, 3, "backlog must be in 1..2147483647");
  if (len == 0) return raise_too_long(L, "create_unix_listener", plen);
  unix_where(&sun, len, where, sizeof where);
  if (!abstract && lstat(sun.sun_path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      lua_pushfstring(L,
                      "create_unix_listener: a file that is not a socket "
                      "exists at %s",
                      where);
      return loom__raise_error(L, "OSError", lua_tostring(L, -1), "EADDRINUSE");
    }
    unlink(sun.sun_path);
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return loom__raise_uv(L, "create_unix_listener",
                          uv_translate_sys_error(errno), where);
  if (bind(fd, (struct sockaddr *)&sun, len) < 0 ||
      (!abstract && mode != -1 && chmod(sun.sun_path, (mode_t)mode) < 0)) {
    int e = errno;
    if (!abstract && e != EADDRINUSE) unlink(sun.sun_path);
    close(fd);
    return loom__raise_uv(L, "create_unix_listener", uv_translate_sys_error(e),
                          where);
  }
  o = wrap_socket(L, rt, &unix_listener_class, fd);
  if (!abstract && lstat(sun.sun_path, &st) == 0) {
    o->unlink_path = strdup(sun.sun_path);
    o->unlink_dev = (uint64_t)st.st_dev;
    o->unlink_ino = (uint64_t)st.st_ino;
  }
  err = loom__stream_listen(o, (int)backlog);
  if (err != 0) {
    loom__stream_close(o);
    return loom__raise_uv(L, "create_unix_listener", err, where);
  }
  return 1;
}

/* ---- stdio ----------------------------------------------------------- */

static const char files_key = 'f';

/* The runtime's count of live file streams: a userdata anchored in the
 * registry, so that it outlives every stream (a state frees its objects
 * only after running every finaliser). */
static lua_Integer *file_counter(lua_State *L) {
  lua_Integer *n;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &files_key);
  n = (lua_Integer *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (n == NULL) {
    n = (lua_Integer *)lua_newuserdatauv(L, sizeof *n, 0);
    *n = 0;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &files_key);
  }
  return n;
}

/* core.stdio(fd) -> PipeStream over a duplicate of fd 0, 1 or 2: a
 * terminal (uv_tty), a pipe or socket (uv_pipe, put back in blocking mode
 * when closed), or anything else (a regular file, /dev/null: read and
 * written directly, which never waits on a peer). Closing it closes only
 * the duplicate: the process keeps its fd. */
static int l_stdio(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  int fd = (int)luaL_checkinteger(L, 1), dupfd, err = 0;
  const char *name = fd == 0 ? "stdin" : fd == 1 ? "stdout" : "stderr";
  loom_stream *o;
  lua_Integer *files = file_counter(L);
  if (fd < 0 || fd > 2) luaL_argerror(L, 1, "fd must be 0, 1 or 2");
  loom__check_open(L, rt, name);
  dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dupfd < 0)
    return loom__raise_oserror(L, name, uv_translate_sys_error(errno), NULL);
  o = loom__stream_new(L, rt, &loom__pipe_stream_class);
  o->readable = fd == 0;
  o->writable = fd != 0;
  /* Other processes may share the descriptor: read only what receive()
   * asks for, nothing ahead. */
  o->read_ahead = 0;
  switch (uv_guess_handle(dupfd)) {
  case UV_TTY:
    err = uv_tty_init(rt->loop, &o->h.tty, dupfd, fd == 0);
    if (err == 0) {
      loom__stream_attach(o);
      o->no_shutdown = 1;
    }
    break;
  case UV_NAMED_PIPE:
  case UV_TCP:
  case UV_UDP:
    uv_pipe_init(rt->loop, &o->h.pipe, 0);
    loom__stream_attach(o);
    err = uv_pipe_open(&o->h.pipe, dupfd);
    o->restore_block = 1;
    o->no_shutdown = uv_guess_handle(dupfd) == UV_NAMED_PIPE;
    break;
  default:
    o->fd = dupfd;
    o->files = files;
    (*files)++;
    break;
  }
  if (err != 0) {
    if (!o->handle_live) close(dupfd);
    loom__stream_close(o);
    return loom__raise_oserror(L, name, err, NULL);
  }
  return 1;
}

/* ---- introspection ----------------------------------------------------- */

/* core.pipe_stats() -> {streams, listeners, closing, files, rbuf_bytes,
 * write_queue_bytes}: live Unix socket, pipe and terminal handles made by
 * loom (closing ones until their close callback ran) and file streams. */
static int l_pipe_stats(lua_State *L) {
  static const loom_stream_class *const classes[] = {
    &unix_stream_class, &unix_listener_class, &loom__pipe_stream_class, NULL};
  loom_rt *rt = loom__rt(L);
  loom_stream_counts c;
  memset(&c, 0, sizeof c);
  loom__stream_count(rt, classes, &c);
  loom__stream_push_counts(L, &c);
  lua_pushinteger(L, *file_counter(L));
  lua_setfield(L, -2, "files");
  return 1;
}

static const luaL_Reg pipe_funcs[] = {
  {"unix_connect", l_unix_connect},
  {"unix_listen", l_unix_listen},
  {"stdio", l_stdio},
  {"pipe_stats", l_pipe_stats},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_pipe(lua_State *L) {
  loom__stream_register(L, 1, &unix_stream_class, NULL, "unix_stream_methods");
  loom__stream_register(L, 1, &unix_listener_class, NULL,
                        "unix_listener_methods");
  loom__stream_register(L, 1, &loom__pipe_stream_class, NULL,
                        "pipe_stream_methods");
  loom__setfuncs(L, 1, pipe_funcs);
  return 0;
}
