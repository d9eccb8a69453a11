/*
 * remote.c: the thread-safe mailbox into a runtime (loom_remote_*).
 *
 * Owns the runtime's hub (rt->remote): one mutex, one FIFO of posts, the
 * count of open remotes, and a uv_async_t that wakes the owner thread out of
 * a blocking poll. A post is a (fn, ud) pair queued from any thread and run
 * on the owner thread by loom__remote_drain(), which the scheduler calls at
 * every step and every pass of loom.run. One FIFO for the whole runtime
 * keeps the posts of each remote in order (and the posts of all remotes in
 * arrival order).
 *
 * Lifetimes. The hub is refcounted: the runtime holds one reference until
 * loom__remote_close(), each remote not yet released holds one. A remote
 * (the host's handle) is freed by loom_remote_release(); the hub is freed
 * by whichever of the runtime and the remotes lets go last, so a remote
 * outlives its runtime and a post after loom_close() gets LOOM_ECLOSED.
 *
 * The uv_async_t belongs to the owner thread: it is created, ref'd and
 * unref'd there, and other threads only call uv_async_send() on it while
 * holding the mutex, under which the owner clears hub->async before closing
 * the handle. It is ref'd while a remote is open (a post may still come:
 * the runtime is not deadlocked, and a blocking loom.run waits for it) and
 * unref'd otherwise (it never keeps an idle loop alive by itself). Since
 * uv_ref/uv_unref are owner-thread calls, a release on another thread only
 * wakes the owner, whose next drain updates the reference. The async lives
 * on the runtime's current loop (its own, or the host's borrowed one) and
 * moves with it if loom_open changes the loop after a remote was opened.
 *
 * cfg.wake is called by the posting thread under the mutex, so that once
 * loom_close has returned it is never called again; it must only signal.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "loom_internal.h"

typedef struct loom_post {
  loom_post_fn fn;
  void *ud;
  struct loom_post *next;
} loom_post;

typedef struct loom_hub {
  uv_mutex_t mu;
  int refs;               /* runtime (until closed) + unreleased remotes */
  int open;               /* unreleased remotes */
  int closed;             /* the runtime closed: posts are refused */
  loom_post *head, *tail; /* queued posts, oldest first */
  long queued;            /* their number */
  uv_async_t *async;      /* on loop; NULL once the runtime closed */
  uv_loop_t *loop;        /* owner thread only: the loop async is on */
  int async_refd;         /* owner thread only: async is ref'd */
  loom_wake_fn wake;      /* the host's wake hook (cfg.wake), or NULL */
  void *wake_ud;
} loom_hub;

struct loom_remote {
  loom_hub *hub;
};

/* ---- hub lifetime ------------------------------------------------------ */

/* Drop one reference; the caller holds hub->mu, which this releases. */
static void hub_unref_unlock(loom_hub *hub) {
  int last;
  assert(hub->refs > 0);
  last = --hub->refs == 0;
  uv_mutex_unlock(&hub->mu);
  if (last) {
    uv_mutex_destroy(&hub->mu);
    free(hub);
  }
}

/* The async only has to end the owner's poll; the drain does the work. */
static void async_cb(uv_async_t *h) { (void)h; }

static void async_close_cb(uv_handle_t *h) {
  *(int *)h->data = 1;
  free(h);
}

/* Close an async and run its loop (NOWAIT) until the close callback ran,
 * so that nothing of loom stays on a loop the host may close next. */
static void async_close_wait(uv_async_t *a) {
  uv_loop_t *loop = a->loop;
  int done = 0;
  /* The close callback runs before this function returns (the loop below). */
  /* cppcheck-suppress autoVariables */
  a->data = &done;
  uv_close((uv_handle_t *)a, async_close_cb);
  /* cppcheck-suppress knownConditionTrueFalse ; async_close_cb sets done
   * inside uv_run */
  while (!done) uv_run(loop, UV_RUN_NOWAIT);
}

/* Owner thread: put the hub's async on the runtime's current loop (first
 * use, or loom_open moved the runtime to a borrowed loop). Without memory
 * for it, posts still queue and run at the next step; only the wake-up of a
 * blocking loom.run is lost. */
static void hub_attach(loom_rt *rt, loom_hub *hub) {
  uv_async_t *a, *old;
  if (hub->loop == rt->loop) return;
  a = (uv_async_t *)malloc(sizeof *a);
  if (a != NULL && uv_async_init(rt->loop, a, async_cb) != 0) {
    free(a);
    a = NULL;
  }
  if (a != NULL) uv_unref((uv_handle_t *)a);
  uv_mutex_lock(&hub->mu);
  old = hub->async;
  hub->async = a;
  hub->async_refd = 0;
  hub->loop = a != NULL ? rt->loop : NULL;
  uv_mutex_unlock(&hub->mu);
  if (old != NULL) async_close_wait(old);
}

/* The runtime's hub, created on first use (owner thread). NULL when out of
 * memory or when the runtime is closed. */
static loom_hub *hub_of(loom_rt *rt) {
  loom_hub *hub = (loom_hub *)rt->remote;
  if (hub != NULL || rt->closed) return hub;
  hub = (loom_hub *)calloc(1, sizeof *hub);
  if (hub == NULL) return NULL;
  if (uv_mutex_init(&hub->mu) != 0) {
    free(hub);
    return NULL;
  }
  hub->refs = 1; /* the runtime's */
  rt->remote = hub;
  return hub;
}

/* Owner thread, hub->mu held: keep the async ref'd exactly while a remote
 * is open, and the wake hook in step with the runtime's configuration. */
static void hub_sync(loom_rt *rt, loom_hub *hub) {
  int want = hub->open > 0;
  hub->wake = rt->wake;
  hub->wake_ud = rt->wake_ud;
  if (hub->async == NULL || want == hub->async_refd) return;
  if (want) uv_ref((uv_handle_t *)hub->async);
  else uv_unref((uv_handle_t *)hub->async);
  hub->async_refd = want;
}

/* ---- running posts (owner thread) -------------------------------------- */

/* Unlink the oldest queued post into *out and free its node; 0 when the
 * queue is empty. */
static int hub_pop(loom_hub *hub, loom_post *out) {
  loom_post *p;
  uv_mutex_lock(&hub->mu);
  p = hub->head;
  if (p != NULL) {
    hub->head = p->next;
    if (hub->head == NULL) hub->tail = NULL;
    hub->queued--;
  }
  uv_mutex_unlock(&hub->mu);
  if (p == NULL) return 0;
  *out = *p;
  free(p);
  return 1;
}

static int post_tramp(lua_State *L) {
  loom_post *p = (loom_post *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  p->fn(L, p->ud);
  return 0;
}

/* Run at most n queued posts (n < 0: until the queue is empty), oldest
 * first, each under lua_pcall with L's stack as it was. A post's error is
 * queued for the error hook (it names the remote post). Posts are unlinked
 * one at a time, so if reporting itself raises (out of memory), the rest
 * stay queued for the next drain. */
/* [-0, +0] */
static void run_posts(loom_rt *rt, lua_State *L, loom_hub *hub, long n) {
  loom_post p;
  while (n-- != 0 && hub_pop(hub, &p)) {
    int top = lua_gettop(L);
    luaL_checkstack(L, 2, "loom: running a remote post");
    lua_pushcfunction(L, post_tramp);
    lua_pushlightuserdata(L, &p);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK)
      loom__report_error(L, rt, -1, 0, 0, "remote", "post");
    lua_settop(L, top);
  }
}

void loom__remote_drain(loom_rt *rt, lua_State *L) {
  loom_hub *hub = (loom_hub *)rt->remote;
  long n;
  if (hub == NULL) return;
  hub_attach(rt, hub);
  uv_mutex_lock(&hub->mu);
  n = hub->queued;
  hub_sync(rt, hub);
  uv_mutex_unlock(&hub->mu);
  /* Posts queued while these run wait for the next drain: a post that
   * posts again cannot keep a step from ending. */
  run_posts(rt, L, hub, n);
}

int loom__remote_open_count(loom_rt *rt) {
  loom_hub *hub = (loom_hub *)rt->remote;
  int n;
  if (hub == NULL) return 0;
  uv_mutex_lock(&hub->mu);
  n = hub->open;
  uv_mutex_unlock(&hub->mu);
  return n;
}

/* The posts still queued at close, then their errors to the hook. */
static int close_posts_protected(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  run_posts(rt, L, (loom_hub *)rt->remote, -1);
  if (rt->errq_len > 0) loom__deliver_errors(L, rt, 0);
  return 0;
}

void loom__remote_close(loom_rt *rt, lua_State *L) {
  loom_hub *hub = (loom_hub *)rt->remote;
  uv_async_t *async;
  loom_post p;
  int stepping;
  if (hub == NULL) return;
  uv_mutex_lock(&hub->mu);
  hub->closed = 1;  /* from now on posts get LOOM_ECLOSED */
  hub->wake = NULL; /* and the host's wake hook is never called again */
  uv_mutex_unlock(&hub->mu);
  /* The posts see what they see in a step: no nested step or run. Only
   * running out of memory can make this fail; the mailbox is closed and
   * freed all the same, the posts left are dropped. */
  stepping = rt->stepping;
  rt->stepping = 1;
  lua_pushcfunction(L, close_posts_protected);
  lua_pushlightuserdata(L, rt);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "loom: closing the remote mailbox: %s\n",
            lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error");
    lua_pop(L, 1);
    while (hub_pop(hub, &p)) {}
  }
  rt->stepping = stepping;
  uv_mutex_lock(&hub->mu);
  async = hub->async;
  hub->async = NULL;
  uv_mutex_unlock(&hub->mu);
  rt->remote = NULL;
  if (async != NULL) async_close_wait(async);
  uv_mutex_lock(&hub->mu);
  hub_unref_unlock(hub);
}

/* Find or create the runtime of L (under lua_pcall: creating can raise). */
static int state_rt_protected(lua_State *L) {
  lua_pushlightuserdata(L, loom__state_rt(L, 1));
  return 1;
}

/* ---- the public API ---------------------------------------------------- */

LOOM_API loom_remote *loom_remote_open(lua_State *L) {
  loom_rt *rt;
  loom_hub *hub;
  loom_remote *r;
  if (L == NULL) return NULL;
  rt = loom__state_rt(L, 0);
  if (rt == NULL) {
    if (!lua_checkstack(L, 2)) return NULL;
    lua_pushcfunction(L, state_rt_protected);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
      lua_pop(L, 1);
      return NULL;
    }
    rt = (loom_rt *)lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  if (rt == NULL || rt->closed) return NULL;
  hub = hub_of(rt);
  if (hub == NULL) return NULL;
  hub_attach(rt, hub);
  r = (loom_remote *)malloc(sizeof *r);
  if (r == NULL) return NULL;
  r->hub = hub;
  uv_mutex_lock(&hub->mu);
  hub->refs++;
  hub->open++;
  hub_sync(rt, hub);
  uv_mutex_unlock(&hub->mu);
  return r;
}

LOOM_API int loom_remote_post(loom_remote *r, loom_post_fn fn, void *ud) {
  loom_hub *hub;
  loom_post *p;
  if (r == NULL || fn == NULL) return LOOM_ERRARG;
  hub = r->hub;
  p = (loom_post *)malloc(sizeof *p);
  if (p == NULL) return LOOM_ERRMEM;
  p->fn = fn;
  p->ud = ud;
  p->next = NULL;
  uv_mutex_lock(&hub->mu);
  if (hub->closed) {
    uv_mutex_unlock(&hub->mu);
    free(p);
    return LOOM_ECLOSED;
  }
  if (hub->tail != NULL) hub->tail->next = p;
  else hub->head = p;
  hub->tail = p;
  hub->queued++;
  /* Under the mutex: the owner cannot be closing the async meanwhile. */
  if (hub->async != NULL) uv_async_send(hub->async);
  if (hub->wake != NULL) hub->wake(hub->wake_ud);
  uv_mutex_unlock(&hub->mu);
  return LOOM_OK;
}

LOOM_API void loom_remote_release(loom_remote *r) {
  loom_hub *hub;
  if (r == NULL) return;
  hub = r->hub;
  free(r);
  uv_mutex_lock(&hub->mu);
  assert(hub->open > 0 && hub->refs > hub->open - 1);
  hub->open--;
  /* The last open remote gone: let the owner unref the async, or a
   * blocking loom.run would wait for a post that cannot come. */
  if (hub->open == 0 && hub->async != NULL) uv_async_send(hub->async);
  hub_unref_unlock(hub);
}

/* ---- core.remote_stats() ----------------------------------------------- */

/* core.remote_stats() -> {open =, queued =, handles =}: remotes opened and
 * not released, posts waiting for the next step, and libuv handles the
 * mailbox holds (its wake-up async: 0 or 1), for leak checks in specs. */
static int l_remote_stats(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  loom_hub *hub = (loom_hub *)rt->remote;
  int open = 0, handles = 0;
  long queued = 0;
  if (hub != NULL) {
    uv_mutex_lock(&hub->mu);
    open = hub->open;
    queued = hub->queued;
    handles = hub->async != NULL;
    uv_mutex_unlock(&hub->mu);
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, open);
  lua_setfield(L, -2, "open");
  lua_pushinteger(L, (lua_Integer)queued);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, handles);
  lua_setfield(L, -2, "handles");
  return 1;
}

/* Stack: rt(1) module(top). */
int loom__open_remote(lua_State *L) {
  static const luaL_Reg funcs[] = {{"remote_stats", l_remote_stats},
                                   {NULL, NULL}};
  loom__setfuncs(L, 1, funcs);
  return 0;
}
