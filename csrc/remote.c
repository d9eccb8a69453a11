/*
 * remote.c: the thread-safe mailbox into a runtime (loom_remote_*).
 *
 * Placeholder, replaced by the remote mailbox: these three hooks are what
 * the scheduler and loom_close call; until the mailbox lands there are no
 * remotes, so they do nothing, and loom_remote_open returns NULL.
 */
#include "loom_internal.h"

/* Run the posts queued for rt (replaced by the remote mailbox). */
void loom__remote_drain(loom_rt *rt, lua_State *L) {
  (void)rt;
  (void)L;
}

/* Remotes open on rt (replaced by the remote mailbox). */
int loom__remote_open_count(loom_rt *rt) {
  (void)rt;
  return 0;
}

/* Run queued posts, then refuse later ones (replaced by the mailbox). */
void loom__remote_close(loom_rt *rt, lua_State *L) {
  (void)rt;
  (void)L;
}

LOOM_API loom_remote *loom_remote_open(lua_State *L) {
  (void)L;
  return NULL;
}

LOOM_API int loom_remote_post(loom_remote *r, loom_post_fn fn, void *ud) {
  (void)r;
  (void)fn;
  (void)ud;
  return LOOM_ECLOSED;
}

LOOM_API void loom_remote_release(loom_remote *r) { (void)r; }
