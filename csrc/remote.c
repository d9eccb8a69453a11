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
 * wakes the owner, whose next drain updates the reference.
 */
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
  int refs;              /* runtime (until closed) + unreleased remotes */
  int open;              /* unreleased remotes */
  int closed;            /* the runtime closed: posts are refused */
  loom_post *head, *tail;/* queued posts, oldest first */
  uv_async_t *async;     /* NULL once the runtime closed */
  int async_refd;        /* owner thread only: async is ref'd */
  loom_wake_fn wake;     /* the host's wake hook (cfg.wake), or NULL */
  void *wake_ud;
} loom_hub;

struct loom_remote {
  loom_hub *hub;
};

/* ---- runtime glue (until the host-driven runtime lands) ---------------- */

static loom_rt *loom__state_rt(lua_State *L) {
  loom_rt *rt = NULL;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "loom.core") == LUA_TTABLE &&
      lua_getfield(L, -1, "now") == LUA_TFUNCTION &&
      lua_getupvalue(L, -1, 1) != NULL) {
    rt = (loom_rt *)lua_touserdata(L, -1);
  }
  lua_settop(L, top);
  return rt;
}
static uv_loop_t *loom__loop(loom_rt *rt) { return &rt->loop; }
static loom_wake_fn loom__wake_hook(loom_rt *rt, void **ud) {
  (void)rt;
  *ud = NULL;
  return NULL;
}
static void loom__report_error(loom_rt *rt, lua_State *L, int idx,
                               const char *what) {
  (void)rt;
  fprintf(stderr, "loom: unhandled error in %s: %s\n", what,
          luaL_tolstring(L, idx, NULL));
}

/* ---- hub lifetime ------------------------------------------------------ */

/* Drop one reference; the caller holds hub->mu, which this releases. */
static void hub_unref_unlock(loom_hub *hub) {
  int last = --hub->refs == 0;
  uv_mutex_unlock(&hub->mu);
  if (last) {
    uv_mutex_destroy(&hub->mu);
    free(hub);
  }
}

static void async_close_cb(uv_handle_t *h) { free(h); }

/* The async only has to end the owner's poll; the drain does the work. */
static void async_cb(uv_async_t *h) { (void)h; }

/* The runtime's hub, created on first use (owner thread). NULL when out of
 * memory or when the runtime is closed. */
static loom_hub *hub_of(loom_rt *rt) {
  loom_hub *hub = (loom_hub *)rt->remote;
  if (hub != NULL || rt->closed) return hub;
  hub = (loom_hub *)calloc(1, sizeof *hub);
  if (hub == NULL) return NULL;
  hub->async = (uv_async_t *)malloc(sizeof *hub->async);
  if (hub->async == NULL || uv_mutex_init(&hub->mu) != 0) {
    free(hub->async);
    free(hub);
    return NULL;
  }
  if (uv_async_init(loom__loop(rt), hub->async, async_cb) != 0) {
    uv_mutex_destroy(&hub->mu);
    free(hub->async);
    free(hub);
    return NULL;
  }
  uv_unref((uv_handle_t *)hub->async);
  hub->refs = 1;  /* the runtime's */
  rt->remote = hub;
  return hub;
}

/* Owner thread, hub->mu held: keep the async ref'd exactly while a remote
 * is open, and the wake hook in step with the runtime's configuration. */
static void hub_sync(loom_rt *rt, loom_hub *hub) {
  int want = hub->open > 0;
  hub->wake = loom__wake_hook(rt, &hub->wake_ud);
  if (hub->async == NULL || want == hub->async_refd) return;
  if (want)
    uv_ref((uv_handle_t *)hub->async);
  else
    uv_unref((uv_handle_t *)hub->async);
  hub->async_refd = want;
}

/* ---- running posts (owner thread) -------------------------------------- */

static int post_tramp(lua_State *L) {
  loom_post *p = (loom_post *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  p->fn(L, p->ud);
  return 0;
}

/* Run the posts of the list p in order, each under lua_pcall with L's stack
 * left as it was; frees the nodes. An error goes to the runtime's error
 * hook (printed by default). */
static void run_posts(loom_rt *rt, lua_State *L, loom_post *p) {
  while (p != NULL) {
    loom_post *next = p->next;
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 2)) {
      fputs("loom: remote post dropped: Lua stack overflow\n", stderr);
    } else {
      lua_pushcfunction(L, post_tramp);
      lua_pushlightuserdata(L, p);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        loom__report_error(rt, L, lua_gettop(L), "remote post");
    }
    lua_settop(L, top);
    free(p);
    p = next;
  }
}

void loom__remote_drain(loom_rt *rt, lua_State *L) {
  loom_hub *hub = (loom_hub *)rt->remote;
  loom_post *p;
  if (hub == NULL) return;
  uv_mutex_lock(&hub->mu);
  p = hub->head;
  hub->head = hub->tail = NULL;
  hub_sync(rt, hub);
  uv_mutex_unlock(&hub->mu);
  /* Posts queued while these run wait for the next drain: a post that
   * posts again cannot keep a step from ending. */
  run_posts(rt, L, p);
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

void loom__remote_close(loom_rt *rt, lua_State *L) {
  loom_hub *hub = (loom_hub *)rt->remote;
  loom_post *p;
  uv_async_t *async;
  if (hub == NULL) return;
  uv_mutex_lock(&hub->mu);
  hub->closed = 1;
  hub->wake = NULL;
  p = hub->head;
  hub->head = hub->tail = NULL;
  async = hub->async;
  hub->async = NULL;
  uv_mutex_unlock(&hub->mu);
  run_posts(rt, L, p);
  rt->remote = NULL;
  if (async != NULL) uv_close((uv_handle_t *)async, async_close_cb);
  uv_mutex_lock(&hub->mu);
  hub_unref_unlock(hub);
}

/* ---- the public API ---------------------------------------------------- */

LOOM_API loom_remote *loom_remote_open(lua_State *L) {
  loom_rt *rt = loom__state_rt(L);
  loom_hub *hub;
  loom_remote *r;
  if (rt == NULL || rt->closed) return NULL;
  hub = hub_of(rt);
  if (hub == NULL) return NULL;
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
  if (hub->tail != NULL)
    hub->tail->next = p;
  else
    hub->head = p;
  hub->tail = p;
  /* Under the mutex: the owner cannot be closing the async meanwhile. */
  uv_async_send(hub->async);
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
  hub->open--;
  /* The last open remote gone: let the owner unref the async, or a
   * blocking loom.run would wait for a post that cannot come. */
  if (hub->open == 0 && hub->async != NULL) uv_async_send(hub->async);
  hub_unref_unlock(hub);
}
