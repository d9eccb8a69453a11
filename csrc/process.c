/*
 * process.c: child processes on uv_spawn. Owns the loom.Process object
 * (pid, returncode, wait, signals), the pipes to the child's stdio (made
 * here with pipe2 so that stderr can share stdout's pipe; the parent's ends
 * are stream.c PipeStreams) and the reaping rules: a child still running
 * when loom.run ends or the state closes is killed (SIGKILL) and reaped, so
 * no child outlives its runtime and no zombie is left.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loom_internal.h"

#define PROC_MT "loom.Process"

enum { UV_STDIN = 1, UV_STDOUT, UV_STDERR, UV_ARGS };

typedef struct proc {
  uv_process_t h;              /* h.data points back here */
  loom_rt *rt;
  int pid;
  lua_Integer returncode;      /* valid once exited */
  unsigned char exited, handle_live, ud_alive, refd;
  loom_waitq waiters;          /* tasks in wait() */
} proc;

typedef struct proc_box {
  proc *p;
} proc_box;

static lua_Integer live_handles;   /* process handles not yet closed */

/* ---- lifetime ---------------------------------------------------------- */

static void proc_close_cb(uv_handle_t *h) {
  proc *p = (proc *)h->data;
  live_handles--;
  p->handle_live = 0;
  if (!p->ud_alive) free(p);
}

static void set_ref(proc *p, int on) {
  if (p->refd == on || !p->handle_live) return;
  p->refd = (unsigned char)on;
  if (on) uv_ref((uv_handle_t *)&p->h);
  else uv_unref((uv_handle_t *)&p->h);
}

/* The exit is known: record it, wake every waiter, let the handle go. */
static void mark_exited(proc *p, lua_Integer code) {
  loom_task *t;
  p->exited = 1;
  p->returncode = code;
  while ((t = loom__waitq_shift(&p->waiters)) != NULL)
    loom__wake(t, LOOM_WAKE_OK);
  if (p->handle_live && !uv_is_closing((uv_handle_t *)&p->h))
    uv_close((uv_handle_t *)&p->h, proc_close_cb);
}

static void exit_cb(uv_process_t *h, int64_t status, int term_signal) {
  proc *p = (proc *)h->data;
  mark_exited(p, term_signal != 0 ? -(lua_Integer)term_signal
                                  : (lua_Integer)status);
}

/* SIGKILL the child and reap it now, without the loop (a __close during
 * error unwinding, a cancelled run_process, the end of loom.run). Closing
 * the handle takes it out of libuv's list, so libuv never waits for it. */
static void kill_and_reap(proc *p) {
  int st;
  pid_t r;
  if (p->exited) return;
  kill(p->pid, SIGKILL);
  do r = waitpid(p->pid, &st, 0);
  while (r < 0 && errno == EINTR);
  if (r == p->pid)
    mark_exited(p, WIFSIGNALED(st) ? -(lua_Integer)WTERMSIG(st)
                                   : (lua_Integer)WEXITSTATUS(st));
  else
    mark_exited(p, -SIGKILL);
}

static proc *check_proc(lua_State *L, int idx) {
  proc_box *box = (proc_box *)luaL_checkudata(L, idx, PROC_MT);
  if (box->p == NULL) luaL_argerror(L, idx, "finalised object");
  return box->p;
}

/* __gc: a child nobody can wait for any more is killed and reaped. */
static int l_proc_gc(lua_State *L) {
  proc_box *box = (proc_box *)lua_touserdata(L, 1);
  proc *p = box->p;
  if (p == NULL) return 0;
  box->p = NULL;
  p->ud_alive = 0;
  if (p->rt->closed) {     /* the loop is gone; the child was reaped */
    free(p);
    return 0;
  }
  kill_and_reap(p);
  if (!p->handle_live) free(p);
  return 0;
}

/* ---- spawning ------------------------------------------------------------ */

enum { MODE_PIPE, MODE_INHERIT, MODE_NULL, MODE_STDOUT };
static const char *const mode_names[] = {"pipe", "inherit", "null",
                                         "stdout", NULL};

/* A NULL-terminated copy of the strings of the array at idx (the strings
 * stay owned by Lua; the caller frees the array). */
static char **string_array(lua_State *L, int idx, const char *what) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
  char **v = (char **)calloc((size_t)n + 1, sizeof *v);
  if (v == NULL) luaL_error(L, "loom: out of memory");
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, idx, i);
    s = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(s) != len) {
      free(v);
      luaL_error(L, "loom.core.spawn: %s %d is not a string without NULs",
                 what, (int)i);
    }
    v[i - 1] = (char *)s;   /* anchored by the table */
    lua_pop(L, 1);
  }
  return v;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* [-0, +1] a receive- or send-only PipeStream over the parent's end. */
static int push_pipe(lua_State *L, loom_rt *rt, int fd, int readable) {
  loom_stream *o = loom__stream_new(L, rt, &loom__pipe_stream_class);
  int err;
  uv_pipe_init(&rt->loop, &o->h.pipe, 0);
  loom__stream_attach(o);
  o->readable = (unsigned char)readable;
  o->writable = (unsigned char)!readable;
  o->no_shutdown = 1;
  err = uv_pipe_open(&o->h.pipe, fd);
  if (err != 0) {
    close(fd);
    loom__stream_close(o);
  }
  return err;
}

/* core.spawn(file, argv, env|false, cwd|false, new_session, stdin, stdout,
 * stderr, args, fname) -> Process. argv and env are arrays of strings
 * (env "NAME=value"; false: inherit). Modes: "pipe", "inherit", "null",
 * and "stdout" for stderr. args is kept as p.args; fname names the public
 * function in errors. The user-facing checks are process.lua's. */
static int l_spawn(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  const char *file = luaL_checkstring(L, 1);
  const char *cwd = lua_toboolean(L, 4) ? luaL_checkstring(L, 4) : NULL;
  int detached = lua_toboolean(L, 5);
  int modes[3], child[3] = {-1, -1, -1}, parent[3] = {-1, -1, -1};
  int nullfd = -1, err = 0, i;
  const char *fname = luaL_optstring(L, 10, "open_process");
  uv_process_options_t opt;
  uv_stdio_container_t stdio[3];
  char **argv, **env = NULL;
  proc_box *box;
  proc *p;
  luaL_checktype(L, 2, LUA_TTABLE);
  for (i = 0; i < 3; i++) modes[i] = luaL_checkoption(L, 6 + i, NULL,
                                                      mode_names);
  if (modes[0] == MODE_STDOUT || modes[1] == MODE_STDOUT)
    luaL_argerror(L, 6, "only stderr can be \"stdout\"");
  box = (proc_box *)lua_newuserdatauv(L, sizeof *box, 4);   /* 11 */
  box->p = NULL;
  luaL_setmetatable(L, PROC_MT);
  p = (proc *)calloc(1, sizeof *p);
  if (p == NULL) return luaL_error(L, "loom: out of memory");
  p->rt = rt;
  p->ud_alive = 1;
  loom__waitq_init(&p->waiters);
  box->p = p;
  lua_pushvalue(L, 9);
  lua_setiuservalue(L, 11, UV_ARGS);
  argv = string_array(L, 2, "argument");
  if (lua_istable(L, 3)) {
    env = (char **)string_array(L, 3, "environment entry");
  }
  /* Pipes and /dev/null first; the child's ends are closed after spawn. */
  for (i = 0; i < 3 && err == 0; i++) {
    int fds[2];
    if (modes[i] == MODE_PIPE) {
      if (pipe2(fds, O_CLOEXEC) != 0) {
        err = uv_translate_sys_error(errno);
        break;
      }
      child[i] = i == 0 ? fds[0] : fds[1];
      parent[i] = i == 0 ? fds[1] : fds[0];
    } else if (modes[i] == MODE_NULL && nullfd < 0) {
      nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (nullfd < 0) err = uv_translate_sys_error(errno);
    }
  }
  for (i = 0; i < 3; i++) {
    stdio[i].flags = UV_INHERIT_FD;
    switch (modes[i]) {
    case MODE_PIPE: stdio[i].data.fd = child[i]; break;
    case MODE_NULL: stdio[i].data.fd = nullfd; break;
    case MODE_STDOUT: stdio[i].data.fd = stdio[1].data.fd; break;
    default: stdio[i].data.fd = i; break;
    }
  }
  if (err == 0) {
    memset(&opt, 0, sizeof opt);
    opt.exit_cb = exit_cb;
    opt.file = file;
    opt.args = argv;
    opt.env = env;
    opt.cwd = cwd;
    opt.flags = detached ? UV_PROCESS_DETACHED : 0;
    opt.stdio_count = 3;
    opt.stdio = stdio;
    err = uv_spawn(&rt->loop, &p->h, &opt);
    p->h.data = p;
    p->handle_live = 1;
    live_handles++;
    if (err != 0) {
      uv_close((uv_handle_t *)&p->h, proc_close_cb);
      p->exited = 1;
    }
  }
  free(argv);
  free(env);
  for (i = 0; i < 3; i++) close_fd(&child[i]);
  close_fd(&nullfd);
  if (err != 0) {
    for (i = 0; i < 3; i++) close_fd(&parent[i]);
    if (cwd != NULL)
      lua_pushfstring(L, "%s: %s (%s, cwd '%s')", fname, uv_strerror(err),
                      file, cwd);
    else
      lua_pushfstring(L, "%s: %s (%s)", fname, uv_strerror(err), file);
    return loom__raise_error(L, "OSError", lua_tostring(L, -1),
                             uv_err_name(err));
  }
  p->pid = p->h.pid;
  uv_unref((uv_handle_t *)&p->h);   /* only waiters keep the loop alive */
  for (i = 0; i < 3; i++) {
    if (parent[i] < 0) continue;
    err = push_pipe(L, rt, parent[i], i != 0);
    parent[i] = -1;
    if (err != 0) {
      for (; i < 3; i++) close_fd(&parent[i]);
      kill_and_reap(p);
      lua_pushfstring(L, "%s: %s", fname, uv_strerror(err));
      return loom__raise_error(L, "OSError", lua_tostring(L, -1),
                               uv_err_name(err));
    }
    lua_setiuservalue(L, 11, UV_STDIN + i);
  }
  lua_settop(L, 11);
  return 1;
}

/* ---- methods ------------------------------------------------------------- */

static void wait_abort(loom_task *t) {
  proc *p = (proc *)t->wait_data;
  loom__waitq_remove(t);
  if (p->waiters.n == 0) set_ref(p, 0);
}

static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  proc *p = (proc *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  loom__check_wake(L, t);
  lua_pushinteger(L, p->returncode);
  return 1;
}

/* p:wait() -> returncode. A checkpoint; a cancelled wait leaves the child
 * running (AnyIO). While a task waits the loop stays alive. */
static int l_proc_wait(lua_State *L) {
  proc *p = check_proc(L, 1);
  loom_task *t = loom__check_blocking(L, "Process:wait", 1);
  loom__cancel_point(L, t);
  if (p->exited) return loom__schedule_point(L, t, (lua_KContext)p, k_wait);
  set_ref(p, 1);
  loom__park(t, wait_abort, "Process:wait", p);
  loom__waitq_push(&p->waiters, t);
  return loom__suspend(L, (lua_KContext)p, k_wait);
}

static int send_signal(lua_State *L, proc *p, int sig) {
  if (p->exited) return 0;   /* nothing to signal: like asyncio */
  if (kill(p->pid, sig) != 0 && errno != ESRCH) {
    int err = uv_translate_sys_error(errno);
    lua_pushfstring(L, "send_signal: %s (pid %d)", uv_strerror(err), p->pid);
    return loom__raise_error(L, "OSError", lua_tostring(L, -1),
                             uv_err_name(err));
  }
  return 0;
}

static int l_proc_send_signal(lua_State *L) {
  proc *p = check_proc(L, 1);
  return send_signal(L, p, loom__check_signal(L, 2));
}

static int l_proc_terminate(lua_State *L) {
  return send_signal(L, check_proc(L, 1), SIGTERM);
}

static int l_proc_kill(lua_State *L) {
  return send_signal(L, check_proc(L, 1), SIGKILL);
}

/* core.process_kill_reap(p): SIGKILL and reap now (no checkpoint). */
static int l_proc_kill_reap(lua_State *L) {
  kill_and_reap(check_proc(L, 1));
  return 0;
}

static int l_proc_index(lua_State *L) {
  proc *p = check_proc(L, 1);
  const char *k = lua_tostring(L, 2);
  if (lua_type(L, 2) == LUA_TSTRING) {
    if (lua_getfield(L, lua_upvalueindex(2), k) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (strcmp(k, "pid") == 0) {
      lua_pushinteger(L, p->pid);
      return 1;
    }
    if (strcmp(k, "returncode") == 0) {
      if (p->exited) lua_pushinteger(L, p->returncode);
      else lua_pushnil(L);
      return 1;
    }
    if (strcmp(k, "stdin") == 0) return lua_getiuservalue(L, 1, UV_STDIN), 1;
    if (strcmp(k, "stdout") == 0)
      return lua_getiuservalue(L, 1, UV_STDOUT), 1;
    if (strcmp(k, "stderr") == 0)
      return lua_getiuservalue(L, 1, UV_STDERR), 1;
    if (strcmp(k, "args") == 0) return lua_getiuservalue(L, 1, UV_ARGS), 1;
  }
  return 0;
}

static int l_proc_tostring(lua_State *L) {
  proc_box *box = (proc_box *)luaL_checkudata(L, 1, PROC_MT);
  proc *p = box->p;
  if (p == NULL)
    lua_pushfstring(L, PROC_MT ": %p (finalised)", (void *)box);
  else if (!p->exited)
    lua_pushfstring(L, PROC_MT ": %p (pid %d, running)", (void *)box,
                    p->pid);
  else
    lua_pushfstring(L, PROC_MT ": %p (pid %d, returncode %d)", (void *)box,
                    p->pid, (int)p->returncode);
  return 1;
}

/* ---- runtime-wide reaping ------------------------------------------------ */

typedef struct reap_list {
  proc **v;
  size_t n, cap;
} reap_list;

static void collect_cb(uv_handle_t *h, void *arg) {
  reap_list *l = (reap_list *)arg;
  proc *p;
  if (h->type != UV_PROCESS || h->data == NULL || uv_is_closing(h)) return;
  p = (proc *)h->data;
  if (&p->h != (uv_process_t *)h || p->exited) return;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    proc **v = (proc **)realloc(l->v, cap * sizeof *v);
    if (v == NULL) return;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = p;
}

/* Kill and reap every child of rt still running; returns how many. */
static size_t reap_all(loom_rt *rt) {
  reap_list l = {NULL, 0, 0};
  size_t i, n;
  uv_walk(&rt->loop, collect_cb, &l);
  for (i = 0; i < l.n; i++) kill_and_reap(l.v[i]);
  n = l.n;
  free(l.v);
  return n;
}

/* core.process_reap_all() -> n: loom.run's last step. */
static int l_process_reap_all(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)reap_all(loom__rt(L)));
  return 1;
}

static const char reaper_key = 'p';

/* The reaper's __gc runs before the runtime's (it was made later), while
 * the loop still works: children left by a closing state are reaped. */
static int l_reaper_gc(lua_State *L) {
  loom_rt *rt = *(loom_rt **)lua_touserdata(L, 1);
  if (!rt->closed) reap_all(rt);
  return 0;
}

/* core.process_stats() -> {handles, running}: process handles not yet
 * closed, children not yet reaped. */
static void count_cb(uv_handle_t *h, void *arg) {
  lua_Integer *running = (lua_Integer *)arg;
  if (h->type == UV_PROCESS && h->data != NULL &&
      !((proc *)h->data)->exited)
    (*running)++;
}

static int l_process_stats(lua_State *L) {
  lua_Integer running = 0;
  uv_walk(&loom__rt(L)->loop, count_cb, &running);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, live_handles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, running);
  lua_setfield(L, -2, "running");
  return 1;
}

static const luaL_Reg proc_methods[] = {
  {"wait", l_proc_wait},
  {"send_signal", l_proc_send_signal},
  {"terminate", l_proc_terminate},
  {"kill", l_proc_kill},
  {NULL, NULL}
};

static const luaL_Reg process_funcs[] = {
  {"spawn", l_spawn},
  {"process_kill_reap", l_proc_kill_reap},
  {"process_reap_all", l_process_reap_all},
  {"process_stats", l_process_stats},
  {NULL, NULL}
};

/* Stack: rt(1) module(top). */
int loom__open_process(lua_State *L) {
  luaL_newmetatable(L, PROC_MT);
  lua_newtable(L);
  loom__setfuncs(L, 1, proc_methods);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "process_methods");
  lua_pushvalue(L, 1);
  lua_insert(L, -2);
  lua_pushcclosure(L, l_proc_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_proc_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_proc_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setfield(L, -2, "process_meta");
  loom__setfuncs(L, 1, process_funcs);
  /* the reaper: one per runtime, anchored in the registry */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &reaper_key);
  if (lua_isnil(L, -1)) {
    loom_rt **r = (loom_rt **)lua_newuserdatauv(L, sizeof *r, 0);
    *r = (loom_rt *)lua_touserdata(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_reaper_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reaper_key);
  }
  lua_pop(L, 1);
  return 0;
}
