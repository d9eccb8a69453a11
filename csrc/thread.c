/*
 * thread.c: worker threads for loom.to_thread. Each runtime owns a pool of
 * OS threads, each running its own Lua state; a call moves a function (as
 * bytecode, or by "module.func" name) and copies of its arguments to a
 * worker, and the results come back to the runtime's thread through a
 * mailbox (a mutex-protected queue plus a uv_async_t on the runtime's loop).
 * Nothing here ever touches a Lua state from a thread other than its own.
 *
 * Who owns what:
 * - thread_pool: malloc'd, refcounted (the runtime, each live worker thread
 *   and each live job hold one), so that a worker still running when the
 *   runtime is closed can finish safely. Its mutex guards every field shared
 *   with workers; fields marked "owner" are only used by the runtime's
 *   thread.
 * - thread_job: one call. malloc'd, refcounted: the caller's ThreadCall
 *   userdata holds one reference, the pool another from submission until
 *   the runtime has processed the completion (or dropped it at close).
 * - thread_worker: one OS thread. Joined by the runtime when it exits
 *   (idle timeout, or the runtime closing), or detached when it still runs
 *   a call close_grace seconds after the runtime closed (it then frees
 *   itself when the call ends). The shared object stays loaded for good
 *   (pin_library), so a detached worker never runs unloaded code.
 *
 * The mailbox (post_to_owner / async_cb / deliver) has the shape of the
 * embedding API's loom_remote_post: a worker posts a job, and deliver()
 * runs for it on the owner thread. It can become a loom_remote later.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dladdr */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <dlfcn.h>
#include <pthread.h>
#endif

#include <lualib.h>

#include "loom_internal.h"

#define CALL_MT "loom.ThreadCall"
#define REQ_MT "loom.ThreadRequest"
#define POOL_MT "loom.ThreadPool"
#define BOX_MT "loom.ThreadBuffer"

#define DEFAULT_IDLE_TIMEOUT 10.0 /* seconds, as AnyIO's worker threads */
#define DEFAULT_CLOSE_GRACE 1.0   /* seconds lua_close waits for calls */
#define LOAD_CACHE_MAX 64         /* functions kept loaded per state */

/* How the function travels. */
enum { FN_DUMP = 1, FN_NAME = 2 };
/* Outcome of a call, first byte of job->out. */
enum { OUT_OK = 0, OUT_ERROR = 1, OUT_CANCELLED = 2 };
/* The run_sync request of a job. */
enum { REQ_NONE = 0, REQ_POSTED, REQ_REPLIED };
enum { REP_OK = 0, REP_ERROR, REP_CANCELLED, REP_CLOSED };

static const char job_key = 'j';    /* worker registry: running job */
static const char cancel_key = 'c'; /* worker registry: Cancelled raised */
static const char tb_key = 't';     /* worker registry: traceback */
static const char pool_key = 'p';   /* runtime registry: pool userdata */
static const char dump_key = 'd';   /* weak cache function -> bytecode */
static const char load_key = 'l';   /* cache bytecode -> function */

typedef struct thread_pool thread_pool;
typedef struct thread_worker thread_worker;
typedef struct thread_job thread_job;

struct thread_job {
  loom_list link; /* in pool->jobs or pool->mailbox (mu) */
  thread_pool *pool;
  int refs;              /* mu */
  loom_buf in;           /* function and arguments; read-only once queued */
  loom_buf out;          /* outcome; written by the worker before posting */
  loom_buf req, rep;     /* run_sync request and reply (mu) */
  thread_worker *worker; /* running it (mu) */
  int cancel;            /* the caller was cancelled (mu) */
  unsigned char req_state, rep_kind; /* mu */
  uint32_t req_seq;                  /* mu: numbers the run_sync requests */
  unsigned char post_req, post_done; /* posted, not yet delivered (mu) */
  unsigned char queued, in_mail;     /* in pool->jobs / pool->mailbox */
  struct thread_call *call;          /* owner: the caller's object */
};

struct thread_worker {
  loom_list link; /* pool->workers or pool->exited (mu) */
  thread_pool *pool;
  uv_thread_t tid;
  uv_cond_t cv;                    /* run_sync waits for its reply here */
  thread_job *job;                 /* the call it runs (mu) */
  char *path, *cpath;              /* the parent's package paths at creation */
  size_t mem, mem_limit;           /* worker thread only: its allocator */
  unsigned char detached, joining; /* mu */
};

struct thread_pool {
  uv_mutex_t mu;
  uv_cond_t work;                    /* idle workers wait here for jobs */
  int refs;                          /* mu: runtime + worker threads + jobs */
  int closed;                        /* mu */
  uv_async_t *async;                 /* mu: NULL once closed */
  loom_list jobs;                    /* mu: queued, not yet taken */
  loom_list mailbox;                 /* mu: jobs with posts for the owner */
  loom_list workers;                 /* mu: live worker threads */
  loom_list exited;                  /* mu: threads that returned, to join */
  int nworkers, nidle, njobs, nmail; /* mu */
  double idle_timeout;               /* mu */
  double close_grace; /* mu: how long lua_close waits for calls */
  size_t mem_limit;   /* mu: per worker state, 0 = none */
  /* owner thread only */
  loom_rt *rt;
  lua_State *reaper; /* runs limiter releases from async_cb */
  int in_flight;     /* submitted, completion not delivered */
  int waiting;       /* calls a task waits on: async ref'd if > 0 */
};

/* The caller's side of a call: a userdata; user value 1 is the limiter
 * holding a token on its behalf (it is the borrower). */
typedef struct thread_call {
  uint32_t magic;
  thread_pool *pool;
  thread_job *job;
  loom_task *task; /* the task parked on it, or NULL */
  int ref;         /* registry anchor from submit to delivery */
  unsigned char submitted, done, abandon, abandoned, cancel_sent;
  unsigned char req_pending, taken;
} thread_call;

/* A run_sync request being served in the runtime (a userdata). */
typedef struct thread_req {
  uint32_t magic;
  uint32_t seq;    /* the job's request it answers */
  thread_job *job; /* NULL once replied */
} thread_req;

/* A buffer owned by a userdata, so that an error cannot leak it. */
typedef struct buf_box {
  loom_buf b;
} buf_box;

/* ---- references and freeing (pool->mu held) ---------------------------- */

static void pool_free(thread_pool *p) {
  uv_cond_destroy(&p->work);
  uv_mutex_destroy(&p->mu);
  free(p);
}

/* Drop one reference to p; returns 1 when it was the last (free p after
 * unlocking its mutex). */
static int pool_unref_locked(thread_pool *p) { return --p->refs == 0; }

/* Drop one reference to job (mu held); returns 1 when the pool lost its
 * last reference with it. */
static int job_unref_locked(thread_job *job) {
  thread_pool *p = job->pool;
  if (--job->refs > 0) return 0;
  loom__buf_free(&job->in);
  loom__buf_free(&job->out);
  loom__buf_free(&job->req);
  loom__buf_free(&job->rep);
  free(job);
  return pool_unref_locked(p);
}

static void job_unref(thread_job *job) {
  thread_pool *p = job->pool;
  int last;
  uv_mutex_lock(&p->mu);
  last = job_unref_locked(job);
  uv_mutex_unlock(&p->mu);
  if (last) pool_free(p);
}

/* Answer a job's pending run_sync request (mu held). */
static void reply_locked(thread_job *job, int kind, loom_buf *rep) {
  if (job->req_state != REQ_POSTED) {
    if (rep) loom__buf_free(rep);
    return;
  }
  loom__buf_free(&job->req);
  loom__buf_free(&job->rep);
  if (rep) {
    job->rep = *rep;
    memset(rep, 0, sizeof *rep);
  }
  job->rep_kind = (unsigned char)kind;
  job->req_state = REQ_REPLIED;
  if (job->worker) uv_cond_signal(&job->worker->cv);
}

/* ---- the mailbox to the owner thread ------------------------------------ */

/* The internal interface, kept to four points so that it can move onto the
 * embedding API's loom_remote (same shape: any thread posts, a function
 * runs on the owner thread with the Lua state free to use):
 *   ensure_async()   opens it             ~ loom_remote_open(L)
 *   post_to_owner()  any thread, mu held  ~ loom_remote_post(r, fn, job)
 *   deliver()        owner thread         ~ the loom_post_fn run for a post
 *   pool_close()     closes it            ~ loom_remote_release(r)
 * plus update_async_ref(): the runtime counts as busy only while a task
 * waits on a call (a remote that is open counts as busy all the time). */

/* Any thread, mu held: hand job to the owner (a request or a completion).
 * Returns 0 when the runtime is closed (nothing was posted). */
static int post_to_owner(thread_pool *p, thread_job *job, int is_request) {
  if (p->closed || p->async == NULL) return 0;
  if (is_request) job->post_req = 1;
  else job->post_done = 1;
  if (!job->in_mail) {
    job->in_mail = 1;
    loom__list_push(&p->mailbox, &job->link);
    p->nmail++;
  }
  uv_async_send(p->async);
  return 1;
}

static void free_worker(thread_worker *w) {
  uv_cond_destroy(&w->cv);
  free(w->path);
  free(w->cpath);
  free(w);
}

/* Join the worker threads that exited while idle (owner thread). */
static void join_exited(thread_pool *p) {
  for (;;) {
    thread_worker *w = NULL;
    uv_mutex_lock(&p->mu);
    if (!loom__list_empty(&p->exited)) {
      w = loom__container_of(p->exited.next, thread_worker, link);
      loom__list_remove(&w->link);
    }
    uv_mutex_unlock(&p->mu);
    if (w == NULL) return;
    uv_thread_join(&w->tid);
    free_worker(w);
  }
}

static void update_async_ref(thread_pool *p) {
  if (p->async == NULL) return;
  if (p->waiting > 0) uv_ref((uv_handle_t *)p->async);
  else uv_unref((uv_handle_t *)p->async);
}

/* [-0, +0] on the reaper: release the limiter token the call holds and let
 * go of the call's anchor. Runs protected (lua_pcall) from async_cb. */
static int release_call(lua_State *L) {
  thread_call *c = (thread_call *)lua_touserdata(L, 1);
  int ref = c->ref;
  c->ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (lua_getiuservalue(L, -1, 1) == LUA_TNIL) return 0;
  lua_getfield(L, -1, "release_on_behalf_of");
  lua_insert(L, -3); /* release, call, limiter */
  lua_insert(L, -2); /* release, limiter, call */
  lua_call(L, 2, 0);
  return 0;
}

/* Owner thread: what a worker posted for job. A request is queued for the
 * waiting caller (or refused when nobody waits); a completion wakes the
 * caller, or is dropped when the caller left (abandon_on_cancel). Either
 * way the limiter token is released here, when the worker is done. */
static void deliver(thread_pool *p, thread_job *job, int req, int done) {
  thread_call *c = job->call;
  if (req) {
    if (c == NULL || c->abandoned || c->done) {
      uv_mutex_lock(&p->mu);
      reply_locked(job, REP_CANCELLED, NULL);
      uv_mutex_unlock(&p->mu);
    } else {
      c->req_pending = 1;
      if (c->task != NULL) loom__wake(c->task, LOOM_WAKE_OK);
    }
  }
  if (done) {
    p->in_flight--;
    if (c != NULL) {
      c->done = 1;
      if (!c->abandoned) {
        p->waiting--;
        update_async_ref(p);
        if (c->task != NULL) loom__wake(c->task, LOOM_WAKE_OK);
      } else {
        loom__buf_free(&job->out); /* nobody will read it */
      }
      /* Last use of c: once unanchored, an abandoned call may be collected
       * by the next garbage collection step. */
      if (c->ref != LUA_NOREF) {
        lua_State *R = p->reaper;
        lua_pushcfunction(R, release_call);
        lua_pushlightuserdata(R, c);
        if (lua_pcall(R, 1, 0, 0) != LUA_OK) lua_settop(R, 0);
      }
    }
    job_unref(job); /* the pool's reference; the caller keeps its own */
  }
}

static void async_cb(uv_async_t *h) {
  thread_pool *p = (thread_pool *)h->data;
  loom_list mail;
  loom__list_init(&mail);
  join_exited(p);
  uv_mutex_lock(&p->mu);
  while (!loom__list_empty(&p->mailbox)) {
    loom_list *n = p->mailbox.next;
    loom__list_remove(n);
    loom__list_push(&mail, n);
  }
  p->nmail = 0;
  uv_mutex_unlock(&p->mu);
  while (!loom__list_empty(&mail)) {
    thread_job *job = loom__container_of(mail.next, thread_job, link);
    int req, done;
    uv_mutex_lock(&p->mu);
    loom__list_remove(&job->link);
    job->in_mail = 0;
    req = job->post_req;
    done = job->post_done;
    job->post_req = job->post_done = 0;
    uv_mutex_unlock(&p->mu);
    deliver(p, job, req, done);
  }
}

static void async_close_cb(uv_handle_t *h) { free(h); }

/* ---- moving functions ---------------------------------------------------- */

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return loom__buf_put((loom_buf *)ud, p, sz) ? 0 : 1;
}

/* [-0, +0] the registry table at key (created; weak keys when weak). */
static void push_cache(lua_State *L, const char *key, int weak) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  if (weak) loom__new_weak_keys(L);
  else lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

static int put_str(loom_buf *b, const char *s, size_t len) {
  return loom__buf_put(b, &len, sizeof len) && loom__buf_put(b, s, len);
}

/* Encode the function at idx (a Lua function whose only upvalue may be
 * _ENV, or a "module.func" string) into b. Returns NULL, or an error
 * message (pushed) for the argument error. */
static const char *enc_function(lua_State *L, loom_buf *b, int idx) {
  unsigned char kind;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    const char *dot = NULL, *q;
    for (q = s; q < s + len; q++)
      if (*q == '.') dot = q;
    if (dot == NULL || dot == s || dot == s + len - 1)
      return lua_pushfstring(L, "\"module.func\" string expected, got \"%s\"",
                             s);
    kind = FN_NAME;
    if (!loom__buf_put(b, &kind, 1) || !put_str(b, s, (size_t)(dot - s)) ||
        !put_str(b, dot + 1, len - (size_t)(dot - s) - 1))
      return lua_pushliteral(L, "not enough memory");
    return NULL;
  }
  if (lua_type(L, idx) != LUA_TFUNCTION)
    return lua_pushfstring(L,
                           "function or \"module.func\" string expected, "
                           "got %s",
                           luaL_typename(L, idx));
  if (lua_iscfunction(L, idx))
    return lua_pushliteral(L, "a C function cannot be moved to a worker "
                              "thread (name it as a \"module.func\" string)");
  {
    int i;
    const char *name;
    for (i = 1; (name = lua_getupvalue(L, idx, i)) != NULL; i++) {
      lua_pop(L, 1);
      if (strcmp(name, "_ENV") != 0)
        return lua_pushfstring(L,
                               "function has upvalue '%s' (only _ENV can "
                               "be moved to a worker thread)",
                               name);
    }
  }
  kind = FN_DUMP;
  /* Dumps are cached per function (weak keys): the same function moved
   * again costs a table lookup. */
  push_cache(L, &dump_key, 1);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    loom_buf d = {NULL, 0, 0};
    lua_pop(L, 1);
    lua_pushvalue(L, idx);
    if (lua_dump(L, dump_writer, &d, 0) != 0) {
      loom__buf_free(&d);
      lua_pop(L, 2);
      return lua_pushliteral(L, "not enough memory");
    }
    lua_pop(L, 1);
    lua_pushlstring(L, d.p, d.len);
    loom__buf_free(&d);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    int ok = loom__buf_put(b, &kind, 1) && put_str(b, s, len);
    lua_pop(L, 2);
    if (!ok) return lua_pushliteral(L, "not enough memory");
  }
  return NULL;
}

static const char *get_str(lua_State *L, loom_dec *d, size_t *len) {
  const char *s;
  if (d->len - d->pos < sizeof *len) luaL_error(L, "loom: corrupt message");
  memcpy(len, d->p + d->pos, sizeof *len);
  d->pos += sizeof *len;
  if (d->len - d->pos < *len) luaL_error(L, "loom: corrupt message");
  s = d->p + d->pos;
  d->pos += *len;
  return s;
}

/* [-0, +1] the function encoded by enc_function, loaded in this state.
 * Raises (in this state) when the module or function does not exist. */
static void dec_function(lua_State *L, loom_dec *d) {
  unsigned char kind;
  size_t len, flen;
  const char *s, *f;
  luaL_checkstack(L, 6, "loom: loading a function");
  if (d->pos >= d->len) luaL_error(L, "loom: corrupt message");
  kind = (unsigned char)d->p[d->pos++];
  s = get_str(L, d, &len);
  if (kind == FN_NAME) {
    f = get_str(L, d, &flen);
    if (lua_getglobal(L, "require") != LUA_TFUNCTION)
      luaL_error(L, "cannot load module '%s': 'require' is not available",
                 lua_pushlstring(L, s, len));
    lua_pushlstring(L, s, len);
    lua_call(L, 1, 1);
    lua_pushlstring(L, s, len);
    lua_pushlstring(L, f, flen);
    if (!lua_istable(L, -3) && !lua_isuserdata(L, -3))
      luaL_error(L, "module '%s' is not a table, it has no function '%s'",
                 lua_tostring(L, -2), lua_tostring(L, -1));
    lua_pushvalue(L, -1);
    lua_gettable(L, -4);
    if (!loom__is_callable(L, -1))
      luaL_error(L, "module '%s' has no function '%s'", lua_tostring(L, -3),
                 lua_tostring(L, -2));
    lua_replace(L, -4);
    lua_pop(L, 2);
    return;
  }
  /* Loaded functions are cached by their bytecode: each has only _ENV,
   * which load() sets to this state's globals. */
  push_cache(L, &load_key, 0);
  lua_pushlstring(L, s, len);
  if (lua_rawget(L, -2) == LUA_TFUNCTION) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, s, len, "=(moved function)", "b") != LUA_OK)
    lua_error(L);
  /* cache[0] counts the entries: the cache is reset when it is full. */
  lua_rawgeti(L, -2, 0);
  {
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (n >= LOAD_CACHE_MAX) {
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &load_key);
      lua_replace(L, -3);
      n = 0;
    }
    lua_pushinteger(L, n + 1);
    lua_rawseti(L, -3, 0);
  }
  lua_pushlstring(L, s, len);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

/* ---- buffers owned by userdata ----------------------------------------- */

static int l_box_gc(lua_State *L) {
  buf_box *bx = (buf_box *)lua_touserdata(L, 1);
  loom__buf_free(&bx->b);
  return 0;
}

static int l_box_tostring(lua_State *L) {
  buf_box *bx = (buf_box *)luaL_checkudata(L, 1, BOX_MT);
  lua_pushfstring(L, "loom.ThreadBuffer: %p (%d bytes)", (void *)bx,
                  (int)bx->b.len);
  return 1;
}

/* [-0, +1] an empty buffer box. */
static const luaL_Reg box_meta[] = {
  {"__gc", l_box_gc},
  {"__tostring", l_box_tostring},
  {NULL, NULL},
};

static const loom_class box_class = {BOX_MT, box_meta, NULL, NULL,
                                     NULL,   NULL,     0};

static buf_box *new_box(lua_State *L) {
  buf_box *bx = (buf_box *)lua_newuserdatauv(L, sizeof *bx, 0);
  memset(bx, 0, sizeof *bx);
  if (luaL_getmetatable(L, BOX_MT) != LUA_TTABLE) {
    lua_pop(L, 1);
    loom__class_register(L, 0, &box_class, 0, 0);
  }
  lua_setmetatable(L, -2);
  return bx;
}

/* Encode the n values from first into b (a count, then the values), with
 * one encoder so that shared tables stay shared. Returns 0 with the error
 * message pushed and *bad set to the failing value's position. */
static int enc_values(lua_State *L, loom_buf *b, int first, int n,
                      const char *where, int *bad) {
  loom_enc e;
  int32_t cnt = n;
  int i, slot;
  lua_pushnil(L);
  slot = lua_gettop(L);
  loom__enc_init(&e, b, slot);
  if (!loom__buf_put(b, &cnt, sizeof cnt)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "not enough memory");
    *bad = 0;
    return 0;
  }
  for (i = 0; i < n; i++) {
    if (!loom__enc_value(L, &e, first + i)) {
      lua_pop(L, 1);
      loom__enc_error(L, &e, where);
      *bad = i + 1;
      return 0;
    }
  }
  lua_pop(L, 1);
  return 1;
}

/* [-0, +n] decode a count and that many values; returns n. */
static int dec_values(lua_State *L, loom_dec *d) {
  int32_t n, i;
  if (d->len - d->pos < sizeof n) luaL_error(L, "loom: corrupt message");
  memcpy(&n, d->p + d->pos, sizeof n);
  d->pos += sizeof n;
  luaL_checkstack(L, n + 4, "loom: too many values");
  for (i = 0; i < n; i++) loom__dec_value(L, d);
  return (int)n;
}

/* ---- the worker thread -------------------------------------------------- */

/* The worker state's allocator: counts its bytes so that a memory limit
 * (tests) makes allocations fail like a real out-of-memory. */
static void *worker_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  thread_worker *w = (thread_worker *)ud;
  size_t old = ptr != NULL ? osize : 0;
  void *np;
  if (nsize == 0) {
    free(ptr);
    w->mem -= old;
    return NULL;
  }
  if (w->mem_limit != 0 && nsize > old && w->mem - old + nsize > w->mem_limit)
    return NULL;
  np = realloc(ptr, nsize);
  if (np == NULL) return NULL;
  w->mem = w->mem - old + nsize;
  return np;
}

/* Protected: open the standard libraries and set the parent's paths. */
static int init_state(lua_State *L) {
  thread_worker *w = (thread_worker *)lua_touserdata(L, 1);
  luaL_openlibs(L);
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    if (w->path) {
      lua_pushstring(L, w->path);
      lua_setfield(L, -2, "path");
    }
    if (w->cpath) {
      lua_pushstring(L, w->cpath);
      lua_setfield(L, -2, "cpath");
    }
  }
  return 0;
}

/* Message handler of the moved function: keep the traceback. */
static int job_msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  return 1;
}

static int tostring_k(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

static void job_outcome(lua_State *L, thread_job *job, buf_box *bx);

/* Protected, in the worker: run one job and write its outcome to job->out.
 * The outcome is built in a box (index 2) so that an error cannot leak it.
 * Stack: job. */
static int job_main(lua_State *L) {
  thread_job *job = (thread_job *)lua_touserdata(L, 1);
  buf_box *bx;
  lua_settop(L, 1);
  bx = new_box(L); /* 2 */
  job_outcome(L, job, bx);
  loom__buf_free(&job->out);
  job->out = bx->b;
  memset(&bx->b, 0, sizeof bx->b);
  return 0;
}

/* Under job_msgh: load the function (require a module) and the arguments,
 * then call it, so that an error in any of it is the call's error, with
 * its traceback. Stack: job. */
static int call_job(lua_State *L) {
  thread_job *job = (thread_job *)lua_touserdata(L, 1);
  loom_dec d;
  int nargs;
  lua_settop(L, 0);
  lua_pushnil(L); /* 1: refs slot */
  loom__dec_init(&d, job->in.p, job->in.len, 1);
  dec_function(L, &d); /* 2 */
  nargs = dec_values(L, &d);
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

static void job_outcome(lua_State *L, thread_job *job, buf_box *bx) {
  int status, base, bad;
  unsigned char tag;
  lua_pushcfunction(L, job_msgh); /* 3 */
  base = 3;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cancel_key);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  lua_pushcfunction(L, call_job);
  lua_pushlightuserdata(L, job);
  status = lua_pcall(L, 1, LUA_MULTRET, base);
  if (status == LUA_OK) {
    int n = lua_gettop(L) - base;
    tag = OUT_OK;
    if (!loom__buf_put(&bx->b, &tag, 1)) luaL_error(L, "not enough memory");
    if (enc_values(L, &bx->b, base + 1, n, "back from the worker thread", &bad))
      return;
    /* A result that cannot be copied: the call fails with that. */
    lua_pushfstring(L, "%s (result #%d)", lua_tostring(L, -1), bad);
    bx->b.len = 0;
    tag = OUT_ERROR;
    if (!loom__buf_put(&bx->b, &tag, 1)) luaL_error(L, "not enough memory");
    lua_pushnil(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -3);
    lua_pushnil(L);
    {
      loom_enc e;
      int top = lua_gettop(L);
      loom__enc_init(&e, &bx->b, top - 3);
      if (!loom__enc_value(L, &e, top - 2) ||
          !loom__enc_value(L, &e, top - 1) || !loom__enc_value(L, &e, top))
        luaL_error(L, "not enough memory");
    }
    return;
  }
  /* The error is at base + 1; the traceback in the registry. */
  {
    loom_enc e;
    int err = base + 1, text, tb, cslot;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cancel_key);
    tag = (lua_type(L, -1) != LUA_TNIL && lua_rawequal(L, -1, err))
            ? OUT_CANCELLED
            : OUT_ERROR;
    lua_pop(L, 1);
    lua_pushcfunction(L, tostring_k);
    lua_pushvalue(L, err);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
      lua_pop(L, 1);
      lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, err));
    }
    text = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &tb_key);
    tb = lua_gettop(L);
    lua_pushnil(L);
    cslot = lua_gettop(L);
    if (!loom__buf_put(&bx->b, &tag, 1)) luaL_error(L, "not enough memory");
    loom__enc_init(&e, &bx->b, cslot);
    if (!loom__enc_value(L, &e, err)) {
      /* Not copyable: the cause becomes its text. */
      bx->b.len = 1;
      loom__enc_init(&e, &bx->b, cslot);
      if (!loom__enc_value(L, &e, text)) luaL_error(L, "not enough memory");
    }
    if (!loom__enc_value(L, &e, text) || !loom__enc_value(L, &e, tb))
      luaL_error(L, "not enough memory");
  }
}

/* Fallback outcome when even reporting failed (out of memory): a fixed
 * message, built without Lua. */
static void fallback_out(thread_job *job, const char *msg) {
  loom_buf *b = &job->out;
  unsigned char tag = OUT_ERROR, str = 5 /* T_STR */, nil = 0;
  size_t len = strlen(msg);
  loom__buf_free(b);
  if (loom__buf_put(b, &tag, 1) && loom__buf_put(b, &str, 1) &&
      loom__buf_put(b, &len, sizeof len) && loom__buf_put(b, msg, len) &&
      loom__buf_put(b, &str, 1) && loom__buf_put(b, &len, sizeof len) &&
      loom__buf_put(b, msg, len) && loom__buf_put(b, &nil, 1))
    return;
  loom__buf_free(b); /* the owner reads an empty outcome as this case */
}

/* In the worker: run job in L (created on first use; NULL when that
 * failed) and fill job->out. */
static void run_job(lua_State *L, thread_job *job) {
  int st;
  if (L == NULL) {
    fallback_out(job, "not enough memory to create the worker's Lua state");
    return;
  }
  lua_settop(L, 0);
  lua_pushlightuserdata(L, job);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &job_key);
  lua_pushcfunction(L, job_main);
  lua_pushlightuserdata(L, job);
  st = lua_pcall(L, 1, 0, 0);
  if (st != LUA_OK) {
    /* Out of memory (or a corrupt message) outside the function itself. */
    const char *msg = lua_tostring(L, -1);
    fallback_out(job, msg != NULL ? msg : "not enough memory");
  }
  lua_settop(L, 0);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &job_key);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cancel_key);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &tb_key);
  if (st != LUA_OK) lua_gc(L, LUA_GCCOLLECT);
}

static lua_State *new_state(thread_worker *w) {
  lua_State *L = lua_newstate(worker_alloc, w);
  if (L == NULL) return NULL;
  lua_pushcfunction(L, init_state);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

/* The worker thread: take jobs until the pool is closed or nothing came
 * for idle_timeout seconds. Its Lua state is made on its first job. */
static void worker_main(void *arg) {
  thread_worker *w = (thread_worker *)arg;
  thread_pool *p = w->pool;
  lua_State *L = NULL;
  int made = 0, self_free, last;
  uv_mutex_lock(&p->mu);
  for (;;) {
    thread_job *job;
    uint64_t since = uv_hrtime();
    while (!p->closed && loom__list_empty(&p->jobs)) {
      /* Re-read each time: thread_configure may change it meanwhile. */
      uint64_t deadline = since + (uint64_t)(p->idle_timeout * 1e9);
      uint64_t now = uv_hrtime();
      if (now >= deadline) break;
      p->nidle++;
      uv_cond_timedwait(&p->work, &p->mu, deadline - now);
      p->nidle--;
    }
    if (p->closed || loom__list_empty(&p->jobs)) break;
    job = loom__container_of(p->jobs.next, thread_job, link);
    loom__list_remove(&job->link);
    job->queued = 0;
    p->njobs--;
    w->job = job;
    job->worker = w;
    w->mem_limit = p->mem_limit;
    uv_mutex_unlock(&p->mu);
    if (!made) {
      L = new_state(w);
      made = 1;
    }
    run_job(L, job);
    if (L == NULL) made = 0; /* try again for the next job */
    uv_mutex_lock(&p->mu);
    w->job = NULL;
    job->worker = NULL;
    if (!post_to_owner(p, job, 0)) {
      /* The runtime is gone: nobody wants the result. */
      last = job_unref_locked(job);
      (void)last; /* the worker still holds a reference to p */
    }
  }
  p->nworkers--;
  uv_mutex_unlock(&p->mu);
  if (L != NULL) lua_close(L);
  uv_mutex_lock(&p->mu);
  loom__list_remove(&w->link);
  self_free = w->detached;
  if (!self_free && !w->joining) {
    /* Idle timeout, or the runtime closing: whoever joins will find it. */
    loom__list_push(&p->exited, &w->link);
    if (p->async != NULL) uv_async_send(p->async);
  }
  last = pool_unref_locked(p);
  uv_mutex_unlock(&p->mu);
  if (self_free) free_worker(w);
  if (last) pool_free(p);
}

/* Make a worker thread (owner thread); its paths are L's package paths
 * now. Returns 0 or a libuv error. */
static int spawn_worker(lua_State *L, thread_pool *p) {
  thread_worker *w = (thread_worker *)calloc(1, sizeof *w);
  int err;
  if (w == NULL) return UV_ENOMEM;
  if (uv_cond_init(&w->cv) != 0) {
    free(w);
    return UV_ENOMEM;
  }
  w->pool = p;
  /* Raw reads: no metamethod may run (and raise) here. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pushliteral(L, "package");
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_pushliteral(L, "path");
    if (lua_rawget(L, -2) == LUA_TSTRING) w->path = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushliteral(L, "cpath");
    if (lua_rawget(L, -2) == LUA_TSTRING)
      w->cpath = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  uv_mutex_lock(&p->mu);
  p->refs++;
  p->nworkers++;
  loom__list_push(&p->workers, &w->link);
  err = uv_thread_create(&w->tid, worker_main, w);
  if (err != 0) {
    loom__list_remove(&w->link);
    p->nworkers--;
    p->refs--;
  }
  uv_mutex_unlock(&p->mu);
  if (err != 0) free_worker(w);
  return err;
}

/* ---- the pool of a runtime ---------------------------------------------- */

typedef struct pool_box {
  thread_pool *p;
} pool_box;

/* Keep this shared object loaded for good: a worker detached at lua_close
 * may still run code of it after the state unloaded its C modules. */
static void pin_library(void) {
#ifndef _WIN32
  Dl_info info;
  if (dladdr((void *)&pin_library, &info) != 0 && info.dli_fname != NULL)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE | RTLD_NOLOAD);
#endif
}

/* The runtime is closing (lua_close): refuse new work, drop what nobody
 * will read, answer pending run_sync requests, wake idle workers and join
 * them; workers running a call are detached (their call's cancellation
 * flag is set) and free themselves when it ends. */
static void pool_close(pool_box *pb);

static int l_pool_gc(lua_State *L) {
  pool_close((pool_box *)lua_touserdata(L, 1));
  return 0;
}

void loom__thread_close(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key) == LUA_TUSERDATA)
    pool_close((pool_box *)lua_touserdata(L, -1));
  lua_pop(L, 1);
}

static void pool_close(pool_box *pb) {
  thread_pool *p = pb->p;
  uv_async_t *async;
  loom_list *n;
  int last = 0;
  double grace;
  if (p == NULL) return;
  pb->p = NULL;
  uv_mutex_lock(&p->mu);
  p->closed = 1;
  while (!loom__list_empty(&p->jobs)) {
    thread_job *job = loom__container_of(p->jobs.next, thread_job, link);
    loom__list_remove(&job->link);
    job->queued = 0;
    p->njobs--;
    last |= job_unref_locked(job);
  }
  while (!loom__list_empty(&p->mailbox)) {
    thread_job *job = loom__container_of(p->mailbox.next, thread_job, link);
    loom__list_remove(&job->link);
    job->in_mail = 0;
    p->nmail--;
    if (job->post_req) reply_locked(job, REP_CLOSED, NULL);
    if (job->post_done) last |= job_unref_locked(job);
  }
  for (n = p->workers.next; n != &p->workers; n = n->next) {
    thread_worker *w = loom__container_of(n, thread_worker, link);
    if (w->job != NULL) {
      w->job->cancel = 1;
      reply_locked(w->job, REP_CLOSED, NULL);
    }
  }
  uv_cond_broadcast(&p->work);
  async = p->async;
  p->async = NULL;
  grace = p->close_grace;
  uv_mutex_unlock(&p->mu);
  /* Give running calls close_grace seconds to end (their cancellation is
   * set: loom.thread.check_cancelled() raises), then detach the rest. */
  {
    uint64_t stop = uv_hrtime() + (uint64_t)(grace * 1e9);
    for (;;) {
      int busy = 0;
      uv_mutex_lock(&p->mu);
      for (n = p->workers.next; n != &p->workers; n = n->next) {
        thread_worker *w = loom__container_of(n, thread_worker, link);
        if (w->job != NULL && !w->detached) {
          if (uv_hrtime() < stop) {
            busy = 1;
            break;
          }
          w->detached = 1;
#ifndef _WIN32
          pthread_detach(w->tid);
#endif
        }
      }
      uv_mutex_unlock(&p->mu);
      if (!busy) break;
      uv_sleep(1);
    }
  }
  (void)last;
  for (;;) {
    thread_worker *w = NULL;
    uv_mutex_lock(&p->mu);
    if (!loom__list_empty(&p->exited)) {
      w = loom__container_of(p->exited.next, thread_worker, link);
      loom__list_remove(&w->link);
      loom__list_init(&w->link);
    } else {
      for (n = p->workers.next; n != &p->workers; n = n->next) {
        thread_worker *x = loom__container_of(n, thread_worker, link);
        if (!x->detached && !x->joining) {
          x->joining = 1;
          w = x;
          break;
        }
      }
    }
    uv_mutex_unlock(&p->mu);
    if (w == NULL) break;
    uv_thread_join(&w->tid);
    free_worker(w);
  }
  if (async != NULL) uv_close((uv_handle_t *)async, async_close_cb);
  p->reaper = NULL;
  uv_mutex_lock(&p->mu);
  last = pool_unref_locked(p);
  uv_mutex_unlock(&p->mu);
  if (last) pool_free(p);
}

static int l_pool_tostring(lua_State *L) {
  pool_box *pb = (pool_box *)luaL_checkudata(L, 1, POOL_MT);
  lua_pushfstring(L, "loom.ThreadPool: %p (%s)", (void *)pb->p,
                  pb->p ? "open" : "closed");
  return 1;
}

/* The runtime's pool, made on first use (owner thread). */
static thread_pool *get_pool(lua_State *L) {
  pool_box *pb;
  thread_pool *p;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key) == LUA_TUSERDATA) {
    pb = (pool_box *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return pb->p;
  }
  lua_pop(L, 1);
  pb = (pool_box *)lua_newuserdatauv(L, sizeof *pb, 1);
  pb->p = NULL;
  luaL_setmetatable(L, POOL_MT);
  p = (thread_pool *)calloc(1, sizeof *p);
  if (p == NULL) luaL_error(L, "loom: out of memory");
  if (uv_mutex_init(&p->mu) != 0) {
    free(p);
    luaL_error(L, "loom: cannot create a mutex");
  }
  if (uv_cond_init(&p->work) != 0) {
    uv_mutex_destroy(&p->mu);
    free(p);
    luaL_error(L, "loom: cannot create a condition variable");
  }
  p->refs = 1;
  p->idle_timeout = DEFAULT_IDLE_TIMEOUT;
  p->close_grace = DEFAULT_CLOSE_GRACE;
  loom__list_init(&p->jobs);
  loom__list_init(&p->mailbox);
  loom__list_init(&p->workers);
  loom__list_init(&p->exited);
  p->rt = loom__rt(L);
  pb->p = p;
  p->reaper = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &pool_key);
  pin_library();
  return p;
}

/* The async handle, made on the first submission (owner thread). */
static int ensure_async(thread_pool *p) {
  uv_async_t *a;
  if (p->async != NULL) return 0;
  a = (uv_async_t *)malloc(sizeof *a);
  if (a == NULL) return UV_ENOMEM;
  if (uv_async_init(p->rt->loop, a, async_cb) != 0) {
    free(a);
    return UV_ENOMEM;
  }
  a->data = p;
  uv_unref((uv_handle_t *)a);
  uv_mutex_lock(&p->mu);
  p->async = a;
  uv_mutex_unlock(&p->mu);
  return 0;
}

/* ---- the caller's side -------------------------------------------------- */

static thread_call *check_call(lua_State *L, int idx) {
  thread_call *c = (thread_call *)loom__test_ud(L, idx, sizeof(thread_call),
                                                LOOM_MAGIC_CALL);
  return c != NULL ? c : (thread_call *)luaL_checkudata(L, idx, CALL_MT);
}

/* core.thread_new(fname, argbase, fn, ...) -> call, or nil, message, n
 * (bad argument n). Checks and copies fn and the arguments now, then is
 * the call's cancel point (raises Cancelled when the task is cancelled). */
static int l_thread_new(lua_State *L) {
  const char *fname = luaL_checkstring(L, 1);
  int base = (int)luaL_checkinteger(L, 2);
  int nargs = lua_gettop(L) - 3, bad;
  const char *msg;
  thread_pool *p;
  thread_call *c;
  thread_job *job;
  if (nargs < 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "function or \"module.func\" string expected, got "
                       "no value");
    lua_pushinteger(L, base);
    return 3;
  }
  loom__check_blocking(L, fname, 1);
  p = get_pool(L);
  if (p == NULL) return luaL_error(L, "loom.%s: the runtime is closed", fname);
  c = (thread_call *)lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->magic = LOOM_MAGIC_CALL;
  c->ref = LUA_NOREF;
  c->pool = p;
  luaL_setmetatable(L, CALL_MT);
  job = (thread_job *)calloc(1, sizeof *job);
  if (job == NULL) return luaL_error(L, "loom: out of memory");
  job->pool = p;
  job->refs = 1;
  job->call = c;
  uv_mutex_lock(&p->mu);
  p->refs++;
  uv_mutex_unlock(&p->mu);
  c->job = job;
  msg = enc_function(L, &job->in, 3);
  if (msg != NULL) {
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushinteger(L, base);
    return 3;
  }
  if (!enc_values(L, &job->in, 4, nargs, "to a worker thread", &bad)) {
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushinteger(L, base + bad);
    return 3;
  }
  /* The call's cancel point: nothing has been started yet. */
  loom__cancel_point(L, loom__task_of(L));
  return 1;
}

/* core.thread_submit(call, limiter, abandon): queue the call; the caller
 * holds a token of limiter on behalf of call, which is released when the
 * worker is done. */
static int l_thread_submit(lua_State *L) {
  thread_call *c = check_call(L, 1);
  thread_pool *p = c->pool;
  thread_job *job = c->job;
  int spawn, err;
  if (c->submitted) return luaL_error(L, "loom: call already submitted");
  lua_settop(L, 3);
  err = ensure_async(p);
  if (err != 0)
    return luaL_error(L, "loom.to_thread: cannot start: %s", uv_strerror(err));
  join_exited(p);
  /* Everything that may raise comes before the job is queued. */
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, 1);
  lua_pushvalue(L, 1);
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_mutex_lock(&p->mu);
  if (p->closed) {
    uv_mutex_unlock(&p->mu);
    luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
    c->ref = LUA_NOREF;
    return luaL_error(L, "loom.to_thread: the runtime is closed");
  }
  job->refs++;
  job->queued = 1;
  loom__list_push(&p->jobs, &job->link);
  p->njobs++;
  spawn = p->njobs > p->nidle;
  if (!spawn) uv_cond_signal(&p->work);
  uv_mutex_unlock(&p->mu);
  c->submitted = 1;
  c->abandon = (unsigned char)lua_toboolean(L, 3);
  p->in_flight++;
  p->waiting++;
  update_async_ref(p);
  if (spawn && (err = spawn_worker(L, p)) != 0) {
    int none, last = 0;
    uv_mutex_lock(&p->mu);
    none = p->nworkers == 0 && job->queued;
    if (none) {
      loom__list_remove(&job->link);
      job->queued = 0;
      p->njobs--;
      last = job_unref_locked(job);
    }
    uv_mutex_unlock(&p->mu);
    (void)last; /* the call still holds its reference */
    if (none) {
      /* Undo the submission: the caller releases the token. */
      c->submitted = 0;
      p->in_flight--;
      p->waiting--;
      update_async_ref(p);
      luaL_unref(L, LUA_REGISTRYINDEX, c->ref);
      c->ref = LUA_NOREF;
      return luaL_error(L,
                        "loom.to_thread: cannot start a worker thread: "
                        "%s",
                        uv_strerror(err));
    }
    /* Otherwise a running worker takes the job when it is free. */
  }
  return 0;
}

static void set_cancel(thread_call *c) {
  thread_pool *p = c->pool;
  uv_mutex_lock(&p->mu);
  c->job->cancel = 1;
  if (c->abandon) reply_locked(c->job, REP_CANCELLED, NULL);
  uv_mutex_unlock(&p->mu);
}

/* The caller is cancelled. By default it keeps waiting (shielded) and the
 * worker can see the cancellation with loom.thread.check_cancelled(); with
 * abandon_on_cancel it leaves now and the result is dropped later. */
static void note_cancel(thread_call *c) {
  thread_pool *p = c->pool;
  if (c->cancel_sent) return;
  c->cancel_sent = 1;
  set_cancel(c);
  if (c->abandon) {
    c->abandoned = 1;
    c->task = NULL;
    c->req_pending = 0;
    p->waiting--;
    update_async_ref(p);
  }
}

static void wait_abort(loom_task *t) {
  note_cancel((thread_call *)t->wait_data);
}

static int k_wait(lua_State *L, int status, lua_KContext ctx);

/* [-0, +n] the outcome of a finished call:
 * true, results...  or  false, cause, text, traceback, cancelled. */
static int push_outcome(lua_State *L, thread_call *c) {
  thread_job *job = c->job;
  loom_dec d;
  int top, n;
  unsigned char tag;
  c->taken = 1;
  if (job->out.len == 0) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "not enough memory");
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 5;
  }
  lua_pushnil(L); /* refs slot */
  top = lua_gettop(L);
  loom__dec_init(&d, job->out.p, job->out.len, top);
  tag = (unsigned char)job->out.p[d.pos++];
  if (tag == OUT_OK) {
    lua_pushboolean(L, 1);
    n = dec_values(L, &d);
    lua_remove(L, top);
    loom__buf_free(&job->out);
    return n + 1;
  }
  lua_pushboolean(L, 0);
  loom__dec_value(L, &d); /* cause */
  loom__dec_value(L, &d); /* text */
  loom__dec_value(L, &d); /* traceback */
  lua_pushboolean(L, tag == OUT_CANCELLED);
  lua_remove(L, top);
  loom__buf_free(&job->out);
  return 5;
}

static int push_request(lua_State *L, thread_call *c) {
  thread_req *r;
  thread_pool *p = c->pool;
  c->req_pending = 0;
  lua_pushnil(L);
  r = (thread_req *)lua_newuserdatauv(L, sizeof *r, 0);
  r->magic = LOOM_MAGIC_REQ;
  r->job = c->job;
  luaL_setmetatable(L, REQ_MT);
  uv_mutex_lock(&p->mu);
  r->seq = c->job->req_seq;
  c->job->refs++;
  uv_mutex_unlock(&p->mu);
  return 2;
}

/* One step of the wait: return what is there, or park (again). */
static int wait_step(lua_State *L, loom_task *t, thread_call *c) {
  if (c->done) {
    c->task = NULL;
    return push_outcome(L, c);
  }
  if (c->req_pending) {
    c->task = NULL;
    return push_request(L, c);
  }
  if (!c->cancel_sent && loom__effective_cancel(t->cur) != NULL) note_cancel(c);
  if (c->abandoned) {
    c->task = NULL;
    loom__cancel_point(L, t);
    return luaL_error(L, "loom.to_thread: abandoned"); /* not reached */
  }
  c->task = t;
  loom__park(t, c->cancel_sent ? NULL : wait_abort, "to_thread", c);
  return loom__suspend(L, (lua_KContext)c, k_wait);
}

static int k_wait(lua_State *L, int status, lua_KContext ctx) {
  thread_call *c = (thread_call *)ctx;
  loom_task *t = loom__task_of(L);
  /* Woken by wait_abort: the cancellation is noted on the call, and
   * raised here only when the call was abandoned. */
  int abandoned = t->wake == LOOM_WAKE_CANCELLED && c->abandoned;
  (void)status;
  if (abandoned) c->task = NULL;
  loom__wake_outcome(L, t, abandoned);
  return wait_step(L, t, c);
}

/* core.thread_wait(call) -> true, results... | false, cause, text,
 * traceback, cancelled | nil, request */
static int l_thread_wait(lua_State *L) {
  thread_call *c = check_call(L, 1);
  loom_task *t = loom__check_blocking(L, "to_thread", 1);
  if (!c->submitted || c->taken)
    return luaL_error(L, "loom: call not in flight");
  lua_settop(L, 1);
  return wait_step(L, t, c);
}

static int l_call_gc(lua_State *L) {
  thread_call *c = (thread_call *)lua_touserdata(L, 1);
  thread_job *job = c->job;
  thread_pool *p = c->pool;
  int last;
  if (job == NULL) return 0;
  c->job = NULL;
  /* In flight, a call is anchored: this runs for one at lua_close. */
  uv_mutex_lock(&p->mu);
  job->call = NULL;
  job->cancel = 1;
  reply_locked(job, REP_CLOSED, NULL);
  last = job_unref_locked(job);
  uv_mutex_unlock(&p->mu);
  if (last) pool_free(p);
  return 0;
}

static int l_call_tostring(lua_State *L) {
  thread_call *c = check_call(L, 1);
  lua_pushfstring(L, "loom.ThreadCall: %p (%s)", (void *)c,
                  c->done        ? "done"
                  : c->submitted ? "running"
                                 : "new");
  return 1;
}

/* ---- run_sync requests served in the runtime ---------------------------- */

static thread_req *check_req(lua_State *L, int idx) {
  thread_req *r = (thread_req *)loom__test_ud(L, idx, sizeof(thread_req),
                                              LOOM_MAGIC_REQ);
  return r != NULL ? r : (thread_req *)luaL_checkudata(L, idx, REQ_MT);
}

/* core.thread_request_unpack(req) -> fn, args... (loaded in this state) */
static int l_thread_request_unpack(lua_State *L) {
  thread_req *r = check_req(L, 1);
  loom_dec d;
  int n, live;
  if (r->job == NULL) return luaL_error(L, "loom: request already answered");
  /* Answered meanwhile (the caller abandoned the call, the runtime is
   * closing)? Then the worker has moved on and may be writing its next
   * request: do not read it. Every answer is given on this thread, so a
   * request still pending now stays so until this function returns. */
  uv_mutex_lock(&r->job->pool->mu);
  live = r->job->req_seq == r->seq && r->job->req_state == REQ_POSTED;
  uv_mutex_unlock(&r->job->pool->mu);
  if (!live) return luaL_error(L, "loom: request withdrawn");
  lua_settop(L, 1);
  lua_pushnil(L); /* 2: refs slot */
  loom__dec_init(&d, r->job->req.p, r->job->req.len, 2);
  dec_function(L, &d);
  n = dec_values(L, &d);
  return n + 1;
}

static void finish_req(thread_req *r, int kind, loom_buf *rep) {
  thread_job *job = r->job;
  thread_pool *p = job->pool;
  int last;
  r->job = NULL;
  uv_mutex_lock(&p->mu);
  if (job->req_seq == r->seq) reply_locked(job, kind, rep);
  else if (rep != NULL) loom__buf_free(rep);
  last = job_unref_locked(job);
  uv_mutex_unlock(&p->mu);
  if (last) pool_free(p);
}

/* core.thread_reply(req, ok, ...): ok true: the results; false: the error
 * and whether it is a Cancelled (req, false, err, is_cancelled). */
static int l_thread_reply(lua_State *L) {
  thread_req *r = check_req(L, 1);
  int ok = lua_toboolean(L, 2), n, bad, err_idx = 3, slot;
  buf_box *bx;
  loom_enc e;
  if (r->job == NULL) return 0;
  if (!ok) {
    if (lua_toboolean(L, 4)) {
      finish_req(r, REP_CANCELLED, NULL);
      return 0;
    }
    lua_settop(L, 3);
  }
  n = lua_gettop(L) - 2;
  bx = new_box(L);
  if (ok) {
    if (enc_values(L, &bx->b, 3, n, "back to the worker thread", &bad)) {
      finish_req(r, REP_OK, &bx->b);
      return 0;
    }
    lua_pushfstring(L, "%s (result #%d)", lua_tostring(L, -1), bad);
    err_idx = lua_gettop(L);
    bx->b.len = 0;
  }
  lua_pushnil(L);
  slot = lua_gettop(L);
  loom__enc_init(&e, &bx->b, slot);
  if (!loom__enc_value(L, &e, err_idx)) {
    /* Not copyable: the worker gets its text. */
    bx->b.len = 0;
    luaL_tolstring(L, err_idx, NULL);
    loom__enc_init(&e, &bx->b, slot);
    if (!loom__enc_value(L, &e, -1))
      return luaL_error(L, "loom: out of memory");
  }
  finish_req(r, REP_ERROR, &bx->b);
  return 0;
}

static int l_req_gc(lua_State *L) {
  thread_req *r = (thread_req *)lua_touserdata(L, 1);
  if (r->job != NULL) finish_req(r, REP_CANCELLED, NULL);
  return 0;
}

static int l_req_tostring(lua_State *L) {
  thread_req *r = check_req(L, 1);
  lua_pushfstring(L, "loom.ThreadRequest: %p (%s)", (void *)r,
                  r->job ? "pending" : "answered");
  return 1;
}

/* ---- inside a worker: loom.thread.* ------------------------------------- */

/* The job the worker running on L works on, or NULL. */
static thread_job *current_job(lua_State *L) {
  thread_job *job;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &job_key);
  job = (thread_job *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return job;
}

static thread_job *check_worker(lua_State *L, const char *fn) {
  thread_job *job = current_job(L);
  if (job == NULL)
    luaL_error(L,
               "loom.thread.%s: must be called in a worker thread (a "
               "function run by loom.to_thread)",
               fn);
  return job;
}

/* Raise this state's loom.Cancelled, remembered so that the call ends as
 * cancelled when it escapes the function. */
static int raise_cancelled(lua_State *L, const char *why) {
  loom_rt *rt = loom__rt(L);
  loom__push_hook(L, rt, "new_error");
  lua_pushliteral(L, "Cancelled");
  lua_pushstring(L, why);
  lua_pushnil(L);
  lua_call(L, 3, 1);
  /* A real cancellation, as if a scope issued it (only those count). */
  if (rt->issued_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->issued_ref);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &cancel_key);
  return lua_error(L);
}

/* loom.thread.check_cancelled(): raises Cancelled when the task that
 * called loom.to_thread was cancelled. */
static int l_thread_check_cancelled(lua_State *L) {
  thread_job *job = check_worker(L, "check_cancelled");
  int cancel;
  uv_mutex_lock(&job->pool->mu);
  cancel = job->cancel;
  uv_mutex_unlock(&job->pool->mu);
  if (cancel)
    return raise_cancelled(L, "the task that called loom.to_thread was "
                              "cancelled");
  return 0;
}

/* loom.thread.run_sync(fn, ...) -> fn's results, run as a task of the
 * runtime that called loom.to_thread. Blocks this worker thread. */
static int l_thread_run_sync(lua_State *L) {
  thread_job *job = check_worker(L, "run_sync");
  thread_pool *p = job->pool;
  buf_box *bx;
  const char *msg;
  int n = lua_gettop(L) - 1, bad, kind;
  loom_dec d;
  if (n < 0)
    luaL_argerror(L, 1,
                  "function or \"module.func\" string "
                  "expected, got no value");
  bx = new_box(L);
  msg = enc_function(L, &bx->b, 1);
  if (msg != NULL) return luaL_argerror(L, 1, msg);
  if (!enc_values(L, &bx->b, 2, n, "to the runtime's thread", &bad))
    return luaL_argerror(L, bad + 1, lua_tostring(L, -1));
  uv_mutex_lock(&p->mu);
  loom__buf_free(&job->req);
  loom__buf_free(&job->rep);
  job->req = bx->b;
  memset(&bx->b, 0, sizeof bx->b);
  job->req_state = REQ_POSTED;
  job->req_seq++;
  if (!post_to_owner(p, job, 1)) reply_locked(job, REP_CLOSED, NULL);
  while (job->req_state != REQ_REPLIED) uv_cond_wait(&job->worker->cv, &p->mu);
  job->req_state = REQ_NONE;
  kind = job->rep_kind;
  bx->b = job->rep; /* owned by the box (on the stack) from here */
  memset(&job->rep, 0, sizeof job->rep);
  uv_mutex_unlock(&p->mu);
  if (kind == REP_CANCELLED)
    return raise_cancelled(L, "the task that called loom.to_thread was "
                              "cancelled");
  if (kind == REP_CLOSED)
    return luaL_error(L, "loom.thread.run_sync: the runtime that started "
                         "this worker was closed");
  lua_pushnil(L); /* refs slot */
  loom__dec_init(&d, bx->b.p, bx->b.len, lua_gettop(L));
  if (kind == REP_ERROR) {
    loom__dec_value(L, &d);
    return lua_error(L);
  }
  n = dec_values(L, &d);
  return n;
}

/* ---- statistics, settings, registration --------------------------------- */

/* core.thread_stats() -> {workers, idle_workers, queued_jobs,
 * calls_in_flight, calls_waited_on, queued_completions} */
static int l_thread_stats(lua_State *L) {
  thread_pool *p = NULL;
  int workers = 0, idle = 0, jobs = 0, mail = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pool_key) == LUA_TUSERDATA)
    p = ((pool_box *)lua_touserdata(L, -1))->p;
  lua_pop(L, 1);
  if (p != NULL) {
    uv_mutex_lock(&p->mu);
    workers = p->nworkers;
    idle = p->nidle;
    jobs = p->njobs;
    mail = p->nmail;
    uv_mutex_unlock(&p->mu);
  }
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, workers);
  lua_setfield(L, -2, "workers");
  lua_pushinteger(L, idle);
  lua_setfield(L, -2, "idle_workers");
  lua_pushinteger(L, jobs);
  lua_setfield(L, -2, "queued_jobs");
  lua_pushinteger(L, p ? p->in_flight : 0);
  lua_setfield(L, -2, "calls_in_flight");
  lua_pushinteger(L, p ? p->waiting : 0);
  lua_setfield(L, -2, "calls_waited_on");
  lua_pushinteger(L, mail);
  lua_setfield(L, -2, "queued_completions");
  /* The pool's async handle lives as long as the runtime (like its timer):
   * core.stats() counts it in uv_handles, the leak check takes it off. */
  lua_pushinteger(L, p != NULL && p->async != NULL &&
                       !uv_is_closing((uv_handle_t *)p->async));
  lua_setfield(L, -2, "runtime_handles");
  return 1;
}

/* core.thread_configure{idle_timeout = s, close_grace = s, memory_limit =
 * bytes|false}: settings of this runtime's pool (memory_limit applies to
 * calls that start after it). Returns the previous values. For tests and
 * tuning. */
static int l_thread_configure(lua_State *L) {
  thread_pool *p;
  double idle, grace;
  size_t mem;
  luaL_checktype(L, 1, LUA_TTABLE);
  p = get_pool(L);
  if (p == NULL) return luaL_error(L, "loom: the runtime is closed");
  uv_mutex_lock(&p->mu);
  idle = p->idle_timeout;
  mem = p->mem_limit;
  uv_mutex_unlock(&p->mu);
  grace = p->close_grace;
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, idle);
  lua_setfield(L, -2, "idle_timeout");
  lua_pushnumber(L, grace);
  lua_setfield(L, -2, "close_grace");
  if (mem) lua_pushinteger(L, (lua_Integer)mem);
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "memory_limit");
  if (lua_getfield(L, 1, "idle_timeout") != LUA_TNIL) {
    double d = luaL_checknumber(L, -1);
    if (!(d >= 0)) luaL_argerror(L, 1, "idle_timeout must be >= 0");
    if (d > 1e6) d = 1e6;
    idle = d;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "close_grace") != LUA_TNIL) {
    double d = luaL_checknumber(L, -1);
    if (!(d >= 0)) luaL_argerror(L, 1, "close_grace must be >= 0");
    if (d > 1e6) d = 1e6;
    grace = d;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "memory_limit") != LUA_TNIL) {
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
      mem = 0;
    } else {
      lua_Integer m = luaL_checkinteger(L, -1);
      if (m <= 0) luaL_argerror(L, 1, "memory_limit must be > 0");
      mem = (size_t)m;
    }
  }
  lua_pop(L, 1);
  uv_mutex_lock(&p->mu);
  p->idle_timeout = idle;
  p->close_grace = grace;
  p->mem_limit = mem;
  uv_cond_broadcast(&p->work); /* idle workers re-read the timeout */
  uv_mutex_unlock(&p->mu);
  return 1;
}

#define META(gc, tostring)                                 \
  (const luaL_Reg[]) {                                     \
    {"__gc", gc}, {"__tostring", tostring}, { NULL, NULL } \
  }
static const loom_class call_class = {
  CALL_MT, META(l_call_gc, l_call_tostring), NULL, NULL, NULL, NULL, 0};
static const loom_class req_class = {
  REQ_MT, META(l_req_gc, l_req_tostring), NULL, NULL, NULL, NULL, 0};
static const loom_class pool_class = {
  POOL_MT, META(l_pool_gc, l_pool_tostring), NULL, NULL, NULL, NULL, 0};
#undef META

static const luaL_Reg thread_funcs[] = {
  {"thread_new", l_thread_new},
  {"thread_submit", l_thread_submit},
  {"thread_wait", l_thread_wait},
  {"thread_request_unpack", l_thread_request_unpack},
  {"thread_reply", l_thread_reply},
  {"thread_check_cancelled", l_thread_check_cancelled},
  {"thread_run_sync", l_thread_run_sync},
  {"thread_stats", l_thread_stats},
  {"thread_configure", l_thread_configure},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_thread(lua_State *L) {
  loom__class_register(L, 0, &call_class, 0, 0);
  loom__class_register(L, 0, &req_class, 0, 0);
  loom__class_register(L, 0, &pool_class, 0, 0);
  lua_pop(L, 3);
  loom__setfuncs(L, 1, thread_funcs);
  return 0;
}
