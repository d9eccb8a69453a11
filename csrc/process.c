/*
 * process.c: child processes. Owns the loom.Process object (pid,
 * returncode, wait, signals), starting children with posix_spawn (glibc's
 * vfork path: much cheaper than uv_spawn's fork), the pipes to their stdio
 * (made here with pipe2 so that stderr can share stdout's pipe; the
 * parent's ends are stream.c PipeStreams) and reaping: a SIGCHLD watcher of
 * our own waits for each child; one still running when loom.run ends or the
 * state closes is killed (SIGKILL) and reaped, so no child outlives its
 * runtime and no zombie is left.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loom_internal.h"

#define PROC_MT "loom.Process"
#define PIPE_BYTES (256 * 1024) /* capacity asked for the child's pipes */

/* user values of a Process userdata */
enum { SLOT_STDIN = 1, SLOT_STDOUT, SLOT_STDERR, SLOT_ARGS };

typedef struct reaper reaper;

typedef struct proc {
  reaper *r;
  int pid;
  lua_Integer returncode; /* valid once exited */
  unsigned char exited;
  loom_list link;     /* in r->running until reaped */
  loom_waitq waiters; /* tasks in wait() */
} proc;

typedef struct proc_box {
  proc *p;
} proc_box;

/* One per runtime (a userdata anchored in the registry): the children
 * still running and the SIGCHLD watcher that reaps them (a handle of the
 * runtime's whole life, so it lives in struct loom_rt, like its timer).
 * Children are started with posix_spawn (vfork-fast) rather than uv_spawn
 * (fork), so the reaping is ours: on SIGCHLD, waitpid(WNOHANG) each running
 * child. The watcher is unreferenced except while a task waits for a child. */
struct reaper {
  loom_rt *rt;
  uv_signal_t *sig; /* &rt->sigchld */
  loom_list running;
  int nwaiting; /* tasks in wait(), all children */
  unsigned char inited, started;
};

static const char reaper_key = 'p';

/* ---- lifetime ---------------------------------------------------------- */

static void set_waiting(reaper *r, int delta) {
  int was = r->nwaiting > 0;
  r->nwaiting += delta;
  if (!r->started) return;
  if (!was && r->nwaiting > 0) uv_ref((uv_handle_t *)r->sig);
  else if (was && r->nwaiting == 0) uv_unref((uv_handle_t *)r->sig);
}

/* The exit is known: record it, wake every waiter. */
static void mark_exited(proc *p, int status) {
  loom_task *t;
  p->exited = 1;
  p->returncode = WIFSIGNALED(status) ? -(lua_Integer)WTERMSIG(status)
                                      : (lua_Integer)WEXITSTATUS(status);
  loom__list_remove(&p->link);
  while ((t = loom__waitq_shift(&p->waiters)) != NULL) {
    set_waiting(p->r, -1);
    loom__wake(t, LOOM_WAKE_OK);
  }
}

/* SIGCHLD (coalesced: any number of children may have exited). */
static void sigchld_cb(uv_signal_t *h, int signum) {
  reaper *r = (reaper *)h->data;
  loom_list *n = r->running.next;
  (void)signum;
  while (n != &r->running) {
    proc *p = loom__container_of(n, proc, link);
    int st;
    pid_t got;
    n = n->next; /* mark_exited unlinks p */
    do got = waitpid(p->pid, &st, WNOHANG);
    while (got < 0 && errno == EINTR);
    if (got == p->pid) mark_exited(p, st);
    else if (got < 0 && errno == ECHILD) mark_exited(p, 0);
  }
}

/* SIGKILL the child and reap it now, without the loop (a __close during
 * error unwinding, a cancelled run_process, the end of loom.run). */
static void kill_and_reap(proc *p) {
  int st = 0;
  pid_t got;
  if (p->exited) return;
  kill(p->pid, SIGKILL);
  do got = waitpid(p->pid, &st, 0);
  while (got < 0 && errno == EINTR);
  if (got != p->pid) st = SIGKILL; /* reaped elsewhere: say killed */
  mark_exited(p, st);
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
  kill_and_reap(p);
  free(p);
  return 0;
}

static reaper *get_reaper(lua_State *L) {
  reaper *r;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &reaper_key);
  r = (reaper *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return r;
}

/* Start watching SIGCHLD before the first child exists. */
static int start_reaper(reaper *r) {
  int err;
  if (r->started) return 0;
  if (!r->inited) {
    uv_signal_init(r->rt->loop, r->sig);
    r->sig->data = r;
    r->inited = 1;
  }
  err = uv_signal_start(r->sig, sigchld_cb, SIGCHLD);
  if (err != 0) return err;
  r->started = 1;
  if (r->nwaiting == 0) uv_unref((uv_handle_t *)r->sig);
  return 0;
}

/* ---- spawning ------------------------------------------------------------ */

enum { MODE_PIPE, MODE_INHERIT, MODE_NULL, MODE_STDOUT };
static const char *const mode_names[] = {"pipe", "inherit", "null", "stdout",
                                         NULL};

/* A NULL-terminated copy of the strings of the array at idx (the strings
 * stay owned by Lua; the caller frees the array). */
/* Raise unless the array at idx holds only strings without NULs. */
static void check_strings(lua_State *L, int idx, const char *what) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, idx, i);
    s = lua_tolstring(L, -1, &len);
    if (lua_type(L, -1) != LUA_TSTRING || strlen(s) != len)
      luaL_error(L, "loom.core.spawn: %s %d is not a string without NULs", what,
                 (int)i);
    lua_pop(L, 1);
  }
}

/* A NULL-terminated copy of the (checked) string array at idx, or NULL when
 * out of memory. The strings stay anchored by the table. */
static char **string_array(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), i;
  char **v = (char **)calloc((size_t)n + 1, sizeof *v);
  if (v == NULL) return NULL;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    v[i - 1] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  return v;
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* Open o, a stream box made before the spawn (so that nothing allocates
 * once the pipes exist), as a receive- or send-only PipeStream over the
 * parent's end fd. */
static int open_pipe(loom_rt *rt, loom_stream *o, int fd, int readable) {
  int err;
  uv_pipe_init(rt->loop, &o->h.pipe, 0);
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

/* The program to execute: file itself when it names a path, else the
 * first executable file/dir in PATH (the child's PATH when env gives one,
 * as Python does; else ours; else /bin:/usr/bin). Returns 0 and the path
 * in buf, or an errno (EACCES when only non-executable files matched). */
static int find_program(const char *file, char **env, const char *cwd,
                        char *buf, size_t n) {
  const char *path = NULL, *p;
  int seen = 0;
  size_t flen = strlen(file);
  if (strchr(file, '/') != NULL) {
    if (flen + 1 > n) return ENAMETOOLONG;
    memcpy(buf, file, flen + 1);
    /* Checked here too, so that the error does not depend on posix_spawn
     * reporting a failed exec (it cannot under valgrind). A relative path
     * is relative to cwd, which the child has not entered yet. */
    if ((cwd == NULL || file[0] == '/') && access(file, X_OK) != 0)
      return errno;
    return 0;
  }
  if (env != NULL) {
    char **e;
    for (e = env; *e != NULL; e++)
      if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  } else {
    path = getenv("PATH");
  }
  if (path == NULL) path = "/bin:/usr/bin";
  for (p = path;; p++) {
    const char *end = strchr(p, ':');
    size_t dlen = end ? (size_t)(end - p) : strlen(p);
    if (dlen == 0) dlen = 1, p = "."; /* an empty entry means "." */
    if (dlen + flen + 2 <= n) {
      memcpy(buf, p, dlen);
      buf[dlen] = '/';
      memcpy(buf + dlen + 1, file, flen + 1);
      if (access(buf, X_OK) == 0) return 0;
      if (errno == EACCES) seen = 1;
    }
    if (end == NULL) break;
    p = end;
  }
  return seen ? EACCES : ENOENT;
}

/* Start the child: its stdio from src[] (-1: inherit fd i unchanged; for
 * stderr, -2: a copy of the child's stdout), every other fd closed, cwd,
 * a new session when asked, SIGPIPE and SIGXFSZ back to default (loom
 * ignores SIGPIPE; Python resets the same ones). Returns an errno. */
static int spawn_child(pid_t *pid, const char *prog, char **argv, char **env,
                       const char *cwd, int detached, const int src[3]) {
  extern char **environ;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, def;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  int i, err;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  for (i = 0; i < 3; i++) {
    if (src[i] >= 0) posix_spawn_file_actions_adddup2(&fa, src[i], i);
    else if (src[i] == -2) posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  if (cwd != NULL) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  sigaddset(&def, SIGXFSZ);
  if (detached) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &def);
  err = posix_spawn(pid, prog, &fa, &attr, argv, env ? env : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return err;
}

/* core.spawn(file, argv, env|false, cwd|false, new_session, stdin, stdout,
 * stderr, args, fname) -> Process. argv and env are arrays of strings
 * (env "NAME=value"; false: inherit). Modes: "pipe", "inherit", "null",
 * and "stdout" for stderr. args is kept as p.args; fname names the public
 * function in errors. The user-facing checks are process.lua's. */
static int l_spawn(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  reaper *r;
  const char *file = luaL_checkstring(L, 1);
  const char *cwd = lua_toboolean(L, 4) ? luaL_checkstring(L, 4) : NULL;
  int detached = lua_toboolean(L, 5);
  int modes[3], child[3] = {-1, -1, -1}, parent[3] = {-1, -1, -1};
  int src[3], nullfd = -1, err = 0, i;
  const char *fname = luaL_optstring(L, 10, "open_process");
  char **argv, **env = NULL, prog[4096];
  pid_t pid = -1;
  proc_box *box;
  proc *p;
  loom_stream *streams[3];
  loom__check_open(L, rt, fname);
  r = get_reaper(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  for (i = 0; i < 3; i++)
    modes[i] = luaL_checkoption(L, 6 + i, NULL, mode_names);
  if (modes[0] == MODE_STDOUT || modes[1] == MODE_STDOUT)
    luaL_argerror(L, 6, "only stderr can be \"stdout\"");
  box = (proc_box *)lua_newuserdatauv(L, sizeof *box, 4); /* 11 */
  box->p = NULL;
  luaL_setmetatable(L, PROC_MT);
  p = (proc *)calloc(1, sizeof *p);
  if (p == NULL) return luaL_error(L, "loom: out of memory");
  p->r = r;
  p->exited = 1; /* until the child exists */
  loom__list_init(&p->link);
  loom__waitq_init(&p->waiters);
  box->p = p;
  lua_pushvalue(L, 9);
  lua_setiuservalue(L, 11, SLOT_ARGS);
  /* The pipe streams (12, 13, 14; nil when not piped) before any pipe or
   * child exists: running out of memory here leaks neither. */
  for (i = 0; i < 3; i++) {
    if (modes[i] == MODE_PIPE)
      streams[i] = loom__stream_new(L, rt, &loom__pipe_stream_class);
    else {
      streams[i] = NULL;
      lua_pushnil(L);
    }
  }
  /* Checked first: nothing raises once the arrays are allocated. */
  check_strings(L, 2, "argument");
  if (lua_istable(L, 3)) check_strings(L, 3, "environment entry");
  argv = string_array(L, 2);
  if (argv != NULL && lua_istable(L, 3)) {
    env = string_array(L, 3);
    if (env == NULL) {
      free(argv);
      argv = NULL;
    }
  }
  if (argv == NULL) return luaL_error(L, "loom: out of memory");
  err = start_reaper(r);
  if (err == 0 && cwd != NULL && access(cwd, X_OK) != 0)
    err = uv_translate_sys_error(errno); /* a cwd the child cannot enter */
  if (err == 0) {
    int e = find_program(file, env, cwd, prog, sizeof prog);
    if (e != 0) err = uv_translate_sys_error(e);
  }
  /* Pipes and /dev/null; the child's ends are closed after the spawn. */
  for (i = 0; i < 3 && err == 0; i++) {
    int fds[2];
    src[i] = -1;
    if (modes[i] == MODE_PIPE) {
      if (pipe2(fds, O_CLOEXEC) != 0) {
        err = uv_translate_sys_error(errno);
        break;
      }
      /* Bigger pipes: fewer wake-ups per megabyte (best effort). */
      fcntl(fds[0], F_SETPIPE_SZ, PIPE_BYTES);
      child[i] = i == 0 ? fds[0] : fds[1];
      parent[i] = i == 0 ? fds[1] : fds[0];
      src[i] = child[i];
    } else if (modes[i] == MODE_NULL) {
      if (nullfd < 0) nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (nullfd < 0) err = uv_translate_sys_error(errno);
      src[i] = nullfd;
    } else if (modes[i] == MODE_STDOUT) {
      src[i] = -2;
    }
  }
  if (err == 0) {
    int e = spawn_child(&pid, prog, argv, env, cwd, detached, src);
    if (e != 0) err = uv_translate_sys_error(e);
  }
  free(argv);
  free(env);
  for (i = 0; i < 3; i++) close_fd(&child[i]);
  close_fd(&nullfd);
  if (err != 0) {
    for (i = 0; i < 3; i++) close_fd(&parent[i]);
    if (cwd != NULL) lua_pushfstring(L, "%s, cwd '%s'", file, cwd);
    else lua_pushstring(L, file);
    return loom__raise_oserror(L, fname, err, lua_tostring(L, -1));
  }
  p->pid = (int)pid;
  p->exited = 0;
  loom__list_push(&r->running, &p->link);
  for (i = 0; i < 3; i++) {
    if (parent[i] < 0) continue;
    err = open_pipe(rt, streams[i], parent[i], i != 0);
    parent[i] = -1;
    if (err != 0) {
      for (; i < 3; i++) close_fd(&parent[i]);
      kill_and_reap(p);
      return loom__raise_oserror(L, fname, err, NULL);
    }
    lua_pushvalue(L, 12 + i);
    lua_setiuservalue(L, 11, SLOT_STDIN + i);
  }
  lua_settop(L, 11);
  return 1;
}

/* ---- methods ------------------------------------------------------------- */

static void wait_abort(loom_task *t) {
  proc *p = (proc *)t->wait_data;
  loom__waitq_remove(t);
  set_waiting(p->r, -1);
}

static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  proc *p = (proc *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  loom__wake_outcome(L, t, 1);
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
  set_waiting(p->r, 1);
  loom__park(t, wait_abort, "Process:wait", p);
  loom__waitq_push(&p->waiters, t);
  return loom__suspend(L, (lua_KContext)p, k_wait);
}

static int send_signal(lua_State *L, proc *p, int sig) {
  if (p->exited) return 0; /* nothing to signal: like asyncio */
  if (kill(p->pid, sig) != 0 && errno != ESRCH) {
    int err = uv_translate_sys_error(errno);
    lua_pushfstring(L, "pid %d", p->pid);
    return loom__raise_oserror(L, "send_signal", err, lua_tostring(L, -1));
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

/* p.pid, p.returncode (nil while running), p.stdin/stdout/stderr (nil
 * when not piped), p.args; methods first (upvalue 2). Any other key
 * raises the misspelt-member error. */
static const char *const proc_fields[] = {
  "pid", "returncode", "stdin", "stdout", "stderr", "args", NULL};

static int l_proc_index(lua_State *L) {
  const char *const *fields = proc_fields;
  proc *p = check_proc(L, 1);
  int i;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  if (lua_getfield(L, lua_upvalueindex(2), lua_tostring(L, 2)) != LUA_TNIL)
    return 1;
  for (i = 0; fields[i] != NULL; i++)
    if (strcmp(fields[i], lua_tostring(L, 2)) == 0) break;
  switch (i) {
  case 0: lua_pushinteger(L, p->pid); return 1;
  case 1:
    if (p->exited) lua_pushinteger(L, p->returncode);
    else lua_pushnil(L);
    return 1;
  case 2:
  case 3:
  case 4:
  case 5: lua_getiuservalue(L, 1, SLOT_STDIN + (i - 2)); return 1;
  default: return loom__no_member(L); /* "did you mean" */
  }
}

static int l_proc_tostring(lua_State *L) {
  proc_box *box = (proc_box *)luaL_checkudata(L, 1, PROC_MT);
  proc *p = box->p;
  if (p == NULL) lua_pushfstring(L, PROC_MT ": %p (finalised)", (void *)box);
  else if (!p->exited)
    lua_pushfstring(L, PROC_MT ": %p (pid %d, running)", (void *)box, p->pid);
  else
    lua_pushfstring(L, PROC_MT ": %p (pid %d, returncode %d)", (void *)box,
                    p->pid, (int)p->returncode);
  return 1;
}

/* ---- runtime-wide reaping ------------------------------------------------ */

/* Kill and reap every child of the runtime still running; returns how
 * many. */
static size_t reap_all(reaper *r) {
  size_t n = 0;
  while (!loom__list_empty(&r->running)) {
    kill_and_reap(loom__container_of(r->running.next, proc, link));
    n++;
  }
  return n;
}

/* core.process_reap_all() -> n: loom.run's last step. */
static int l_process_reap_all(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)reap_all(get_reaper(L)));
  return 1;
}

/* loom.run(fn, ...): checks fn, then calls the Lua implementation
 * (upvalue 1, process.lua's run with Ctrl-C and reaping) with every
 * argument. In C so that a missing fn is told from a nil one ("got no
 * value"), which a Lua function with a named fn parameter cannot do. */
static int l_run_entry(lua_State *L) {
  loom__check_callable(L, 1, "run");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* core.run_entry(impl) -> loom.run: impl behind l_run_entry's check. */
static int l_run_entry_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushcclosure(L, l_run_entry, 1);
  return 1;
}

/* The reaper's __gc runs before the runtime's (it was made later), while
 * the loop still works: children left by a closing state are reaped and
 * the watcher is closed (the memory outlives every finaliser). */
static int l_reaper_gc(lua_State *L) {
  reaper *r = (reaper *)lua_touserdata(L, 1);
  reap_all(r);
  if (r->inited && !r->rt->closed && !uv_is_closing((uv_handle_t *)r->sig))
    uv_close((uv_handle_t *)r->sig, NULL);
  return 0;
}

/* core.process_stats() -> {running}: children started and not yet reaped
 * (live OS resources only: a Process object whose child is reaped holds
 * nothing but memory, freed by the collector; its pipes are counted by
 * pipe_stats). */
static int l_process_stats(lua_State *L) {
  reaper *r = get_reaper(L);
  lua_Integer running = 0;
  loom_list *n;
  for (n = r->running.next; n != &r->running; n = n->next) running++;
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, running);
  lua_setfield(L, -2, "running");
  return 1;
}

static const luaL_Reg proc_methods[] = {
  {"wait", l_proc_wait},
  {"send_signal", l_proc_send_signal},
  {"terminate", l_proc_terminate},
  {"kill", l_proc_kill},
  {NULL, NULL},
};

static const luaL_Reg proc_meta[] = {
  {"__gc", l_proc_gc},
  {"__tostring", l_proc_tostring},
  {NULL, NULL},
};

/* Functions close over rt; __index (the fields) also over the methods. */
static const loom_class proc_class = {
  PROC_MT, proc_meta, proc_methods, NULL, l_proc_index, "process_methods", 0};

static const luaL_Reg process_funcs[] = {
  {"spawn", l_spawn},
  {"process_kill_reap", l_proc_kill_reap},
  {"process_reap_all", l_process_reap_all},
  {"process_stats", l_process_stats},
  {"run_entry", l_run_entry_new},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_process(lua_State *L) {
  int i;
  loom__class_register(L, lua_gettop(L), &proc_class, 1, 1);
  /* the computed fields, for diagnostics' suggestions */
  lua_createtable(L, 6, 0);
  for (i = 0; proc_fields[i] != NULL; i++) {
    lua_pushstring(L, proc_fields[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "__fields");
  lua_setfield(L, -2, "process_meta");
  loom__setfuncs(L, 1, process_funcs);
  /* the reaper: one per runtime, anchored in the registry */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &reaper_key);
  if (lua_isnil(L, -1)) {
    reaper *r = (reaper *)lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->rt = (loom_rt *)lua_touserdata(L, 1);
    r->sig = &r->rt->sigchld;
    loom__list_init(&r->running);
    lua_newtable(L);
    lua_pushcfunction(L, l_reaper_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &reaper_key);
  }
  lua_pop(L, 1);
  return 0;
}
