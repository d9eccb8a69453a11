/*
 * signal.c: signal receivers (loom.open_signal_receiver) and Ctrl-C during
 * loom.run. Both sit on uv_signal_t. libuv resets a signal to SIG_DFL when
 * its last watcher stops, so this file keeps the disposition that was in
 * place before loom's first watcher of each signal and puts it back after
 * the last one. Ctrl-C cancels the root task's scope; a second Ctrl-C while
 * the run unwinds ends the process the default way.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

#define RX_MT "loom.SignalReceiver"
#define MAX_SIG 65
#define RX_QUEUE 64 /* signals kept for a receiver nobody reads */

static const struct {
  const char *name;
  int sig;
} sig_names[] = {
  {"SIGHUP", SIGHUP},       {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT},
  {"SIGILL", SIGILL},       {"SIGTRAP", SIGTRAP}, {"SIGABRT", SIGABRT},
  {"SIGBUS", SIGBUS},       {"SIGFPE", SIGFPE},   {"SIGKILL", SIGKILL},
  {"SIGUSR1", SIGUSR1},     {"SIGSEGV", SIGSEGV}, {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE},     {"SIGALRM", SIGALRM}, {"SIGTERM", SIGTERM},
  {"SIGCHLD", SIGCHLD},     {"SIGCONT", SIGCONT}, {"SIGSTOP", SIGSTOP},
  {"SIGTSTP", SIGTSTP},     {"SIGTTIN", SIGTTIN}, {"SIGTTOU", SIGTTOU},
  {"SIGURG", SIGURG},       {"SIGXCPU", SIGXCPU}, {"SIGXFSZ", SIGXFSZ},
  {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF}, {"SIGWINCH", SIGWINCH},
  {"SIGIO", SIGIO},         {"SIGSYS", SIGSYS},   {NULL, 0}};

const char *loom__signal_name(int sig) {
  int i;
  for (i = 0; sig_names[i].name != NULL; i++)
    if (sig_names[i].sig == sig) return sig_names[i].name;
  return NULL;
}

int loom__check_signal(lua_State *L, int idx) {
  int i;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n;
    if (!lua_isinteger(L, idx))
      loom__argerror(L, idx, "signal number must be an integer");
    n = lua_tointeger(L, idx);
    if (n < 1 || n >= MAX_SIG)
      loom__argerror(L, idx, lua_pushfstring(L, "no such signal: %d", (int)n));
    return (int)n;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    loom__typeerror(L, idx, "signal name or number");
  {
    const char *s = lua_tostring(L, idx);
    for (i = 0; sig_names[i].name != NULL; i++)
      if (strcmp(sig_names[i].name, s) == 0) return sig_names[i].sig;
    return loom__argerror(L, idx,
                          lua_pushfstring(L,
                                          "unknown signal name "
                                          "'%s'",
                                          s));
  }
}

static void push_signal(lua_State *L, int sig) {
  const char *name = loom__signal_name(sig);
  if (name != NULL) lua_pushstring(L, name);
  else lua_pushinteger(L, sig);
}

/* ---- dispositions ------------------------------------------------------ */

/* Per signal: loom watchers alive in this process (receivers and the
 * Ctrl-C handler), the disposition before the first, and how many of the
 * watchers are user receivers (Ctrl-C defers to them). Dispositions belong
 * to the process, not to a Lua state, so this is the one process-wide
 * table of loom; a mutex guards it (runtimes may live in several threads).
 */
static int watchers[MAX_SIG], receivers[MAX_SIG];
static struct sigaction saved[MAX_SIG];
static uv_mutex_t table_lock;
static uv_once_t table_once = UV_ONCE_INIT;

static void init_lock(void) {
  if (uv_mutex_init(&table_lock) != 0) abort();
}

static void lock_table(void) {
  uv_once(&table_once, init_lock);
  uv_mutex_lock(&table_lock);
}

static void unlock_table(void) { uv_mutex_unlock(&table_lock); }

static int watch_start(uv_signal_t *h, uv_signal_cb cb, int sig, int receiver) {
  int err;
  lock_table();
  if (watchers[sig] == 0) sigaction(sig, NULL, &saved[sig]);
  err = uv_signal_start(h, cb, sig);
  if (err == 0) {
    watchers[sig]++;
    if (receiver) receivers[sig]++;
  }
  unlock_table();
  return err;
}

/* After uv_signal_stop or uv_close of a started watcher. loom's child
 * reaper watches SIGCHLD through libuv too: that handler is left alone. */
static void watch_stopped(int sig, int receiver) {
  lock_table();
  if (receiver) receivers[sig]--;
  if (--watchers[sig] == 0 && sig != SIGCHLD) sigaction(sig, &saved[sig], NULL);
  unlock_table();
}

static int has_receivers(int sig) {
  int n;
  lock_table();
  n = receivers[sig];
  unlock_table();
  return n > 0;
}

/* ---- receivers --------------------------------------------------------- */

typedef struct signal_state signal_state;

/* One per runtime, created on the first loom.run or receiver, anchored in
 * the registry: the Ctrl-C watcher (started for each loom.run, closed when
 * the state closes: a handle of the runtime's whole life, so it lives in
 * struct loom_rt, like its timer) and the receivers' counters for
 * signal_stats. */
struct signal_state {
  uv_signal_t *h; /* &rt->sigint */
  loom_rt *rt;
  lua_Integer rx_handles, rx_watchers;
  unsigned char inited, armed, interrupted;
};

typedef struct sig_rx {
  loom_rt *rt;
  lua_Integer *handles; /* the runtime's count of live rx handles */
  lua_Integer *nwatch;  /* the runtime's count of rx watchers */
  int n, live;          /* watchers; handles not yet closed */
  unsigned char ud_alive, closed, refd;
  int queue[RX_QUEUE]; /* signals received, oldest first */
  int qhead, qlen;
  loom_task *waiter; /* parked in receive */
  int *sigs;
  uv_signal_t *h; /* n handles; h[i].data = this */
} sig_rx;

typedef struct rx_box {
  sig_rx *rx;
} rx_box;

static void rx_free(sig_rx *rx) {
  free(rx->h);
  free(rx->sigs);
  free(rx);
}

static void rx_close_cb(uv_handle_t *h) {
  sig_rx *rx = (sig_rx *)h->data;
  (*rx->handles)--;
  if (--rx->live == 0 && !rx->ud_alive) rx_free(rx);
}

static void rx_set_ref(sig_rx *rx, int on) {
  int i;
  if (rx->refd == on) return;
  rx->refd = (unsigned char)on;
  for (i = 0; i < rx->n; i++) {
    if (on) uv_ref((uv_handle_t *)&rx->h[i]);
    else uv_unref((uv_handle_t *)&rx->h[i]);
  }
}

/* Stop every watcher (restoring dispositions) and close the handles. */
static void rx_close(sig_rx *rx) {
  int i;
  if (rx->closed) return;
  rx->closed = 1;
  if (rx->waiter != NULL) {
    loom_task *t = rx->waiter;
    rx->waiter = NULL;
    loom__wake(t, LOOM_WAKE_CLOSED);
  }
  for (i = 0; i < rx->n; i++) {
    uv_close((uv_handle_t *)&rx->h[i], rx_close_cb);
    watch_stopped(rx->sigs[i], 1);
    (*rx->nwatch)--;
  }
}

static void rx_signal_cb(uv_signal_t *h, int sig) {
  sig_rx *rx = (sig_rx *)h->data;
  if (rx->qlen < RX_QUEUE) {
    rx->queue[(rx->qhead + rx->qlen) % RX_QUEUE] = sig;
    rx->qlen++;
  }
  if (rx->waiter != NULL) {
    loom_task *t = rx->waiter;
    rx->waiter = NULL;
    rx_set_ref(rx, 0);
    loom__wake(t, LOOM_WAKE_OK);
  }
}

static sig_rx *check_rx(lua_State *L, int idx) {
  rx_box *box = (rx_box *)luaL_checkudata(L, idx, RX_MT);
  if (box->rx == NULL) loom__argerror(L, idx, "finalised object");
  return box->rx;
}

static signal_state *get_state(lua_State *L, loom_rt *rt);

/* core.signal_receiver(sig, ...) -> SignalReceiver watching each signal. */
static int l_signal_receiver(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  int n = lua_gettop(L), i, err;
  signal_state *st;
  rx_box *box;
  sig_rx *rx;
  loom__check_open(L, rt, "open_signal_receiver");
  if (n == 0) return loom__argerror(L, 1, "at least one signal expected");
  for (i = 1; i <= n; i++) {
    int sig = loom__check_signal(L, i);
    if (sig == SIGKILL || sig == SIGSTOP)
      loom__argerror(
        L, i,
        lua_pushfstring(L, "%s cannot be caught", loom__signal_name(sig)));
  }
  st = get_state(L, rt);
  box = (rx_box *)lua_newuserdatauv(L, sizeof *box, 0);
  box->rx = NULL;
  luaL_setmetatable(L, RX_MT);
  rx = (sig_rx *)calloc(1, sizeof *rx);
  if (rx != NULL) {
    rx->h = (uv_signal_t *)calloc((size_t)n, sizeof *rx->h);
    rx->sigs = (int *)calloc((size_t)n, sizeof *rx->sigs);
  }
  if (rx == NULL || rx->h == NULL || rx->sigs == NULL) {
    if (rx != NULL) rx_free(rx);
    return luaL_error(L, "loom: out of memory");
  }
  rx->rt = rt;
  rx->handles = &st->rx_handles;
  rx->nwatch = &st->rx_watchers;
  rx->ud_alive = 1;
  box->rx = rx;
  for (i = 0; i < n; i++) {
    int sig = loom__check_signal(L, i + 1), j, k = rx->n;
    for (j = 0; j < rx->n && rx->sigs[j] != sig; j++) {}
    if (j < rx->n) continue; /* listed twice: received once */
    uv_signal_init(rt->loop, &rx->h[k]);
    rx->h[k].data = rx;
    rx->live++;
    (*rx->handles)++;
    rx->n++;
    rx->sigs[k] = sig;
    err = watch_start(&rx->h[k], rx_signal_cb, sig, 1);
    if (err != 0) {
      rx->n--;
      uv_close((uv_handle_t *)&rx->h[k], rx_close_cb);
      rx_close(rx);
      return loom__raise_oserror(L, "open_signal_receiver", err,
                                 loom__signal_name(sig));
    }
    uv_unref((uv_handle_t *)&rx->h[k]);
    (*rx->nwatch)++;
  }
  return 1;
}

static void rx_abort(loom_task *t) {
  sig_rx *rx = (sig_rx *)t->wait_data;
  rx->waiter = NULL;
  rx_set_ref(rx, 0);
}

static int k_rx_receive(lua_State *L, int status, lua_KContext ctx) {
  sig_rx *rx = (sig_rx *)ctx;
  loom_task *t = loom__task_of(L);
  (void)status;
  if (loom__wake_outcome(L, t, 1) == LOOM_WAKE_CLOSED || rx->closed)
    return loom__raise_error(L, "ClosedResourceError",
                             "receive: the signal "
                             "receiver was closed",
                             NULL);
  if (rx->qlen == 0) { /* taken by nobody else: cannot happen */
    return luaL_error(L, "loom.SignalReceiver:receive: woken without a "
                         "signal");
  }
  push_signal(L, rx->queue[rx->qhead]);
  rx->qhead = (rx->qhead + 1) % RX_QUEUE;
  rx->qlen--;
  return 1;
}

/* rx:receive() -> the name of the next signal ("SIGTERM"). A checkpoint.
 * While a task waits here the loop stays alive: never a deadlock. */
static int l_rx_receive(lua_State *L) {
  sig_rx *rx = check_rx(L, 1);
  loom_task *t = loom__check_blocking(L, "SignalReceiver:receive", 1);
  if (rx->closed)
    return loom__raise_error(L, "ClosedResourceError",
                             "receive: the signal "
                             "receiver is closed",
                             NULL);
  if (rx->waiter != NULL)
    return loom__raise_error(L, "BusyResourceError",
                             "Another task is "
                             "already reading from this resource",
                             NULL);
  loom__cancel_point(L, t);
  if (rx->qlen > 0)
    return loom__schedule_point(L, t, (lua_KContext)rx, k_rx_receive);
  rx->waiter = t;
  rx_set_ref(rx, 1);
  loom__park(t, rx_abort, "SignalReceiver:receive", rx);
  return loom__suspend(L, (lua_KContext)rx, k_rx_receive);
}

/* for sig in rx do ... end: __call(rx, ...) is receive(). */
static int l_rx_call(lua_State *L) {
  lua_settop(L, 1);
  return l_rx_receive(L);
}

static int l_rx_close(lua_State *L) {
  rx_close(check_rx(L, 1));
  return 0;
}

static int l_rx_gc(lua_State *L) {
  rx_box *box = (rx_box *)lua_touserdata(L, 1);
  sig_rx *rx = box->rx;
  if (rx == NULL) return 0;
  box->rx = NULL;
  rx->waiter = NULL;
  rx->ud_alive = 0;
  if (rx->rt->closed && !rx->rt->borrowed) { /* own loop closed them */
    rx_free(rx);
    return 0;
  }
  rx_close(rx);
  if (rx->live == 0) rx_free(rx);
  return 0;
}

static int l_rx_tostring(lua_State *L) {
  rx_box *box = (rx_box *)luaL_checkudata(L, 1, RX_MT);
  sig_rx *rx = box->rx;
  luaL_Buffer b;
  int i;
  if (rx == NULL || rx->closed) {
    lua_pushfstring(L, RX_MT ": %p (closed)", (void *)box);
    return 1;
  }
  luaL_buffinit(L, &b);
  lua_pushfstring(L, RX_MT ": %p (", (void *)box);
  luaL_addvalue(&b);
  for (i = 0; i < rx->n; i++) {
    if (i > 0) luaL_addstring(&b, ", ");
    push_signal(L, rx->sigs[i]);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

/* ---- Ctrl-C ------------------------------------------------------------ */

static const char sigint_key = 'i';

/* Cancel the root's scope. Runs in a protected call on the drain's own
 * thread (the signal callback is called from the drain's uv_run, between
 * two resumes): building the Cancelled object calls the hooks. */
static int cancel_root(lua_State *L) {
  loom_rt *rt = (loom_rt *)lua_touserdata(L, 1);
  lua_pushliteral(L, "interrupted by SIGINT (Ctrl-C)");
  loom__scope_cancel(L, rt, &rt->root->scope, lua_gettop(L), 0);
  return 0;
}

/* SIGINT's default action from now on: a second Ctrl-C ends the process
 * at once, even while Lua code runs without reaching the loop (a shell then
 * reports status 130). loom.run's end restores the saved disposition. */
static void sigint_default(void) {
  struct sigaction sa;
  sigset_t set;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
}

static void sigint_cb(uv_signal_t *h, int sig) {
  signal_state *st = (signal_state *)h->data;
  loom_rt *rt = st->rt;
  lua_State *S = rt->S;
  (void)sig;
  if (has_receivers(SIGINT)) return; /* a receiver handles SIGINT */
  if (st->interrupted) {
    /* Both arrived before this callback ran. */
    sigint_default();
    raise(SIGINT);
    return;
  }
  st->interrupted = 1;
  sigint_default();
  if (!rt->running || rt->root == NULL || S == NULL) return;
  if (!lua_checkstack(S, 4)) return;
  lua_pushcfunction(S, cancel_root);
  lua_pushlightuserdata(S, rt);
  if (lua_pcall(S, 1, 0, 0) != LUA_OK) lua_pop(S, 1);
}

static signal_state *get_state(lua_State *L, loom_rt *rt) {
  signal_state *st;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sigint_key);
  st = (signal_state *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (st != NULL) return st;
  st = (signal_state *)lua_newuserdatauv(L, sizeof *st, 0);
  memset(st, 0, sizeof *st);
  st->rt = rt;
  st->h = &rt->sigint;
  luaL_setmetatable(L, "loom.SignalState");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sigint_key);
  return st;
}

/* core.sigint_arm() -> true when loom now handles Ctrl-C for this run:
 * not when SIGINT is ignored (a background job), nor inside a run. */
static int l_sigint_arm(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  signal_state *st;
  struct sigaction cur;
  if (rt->closed || rt->running || sigaction(SIGINT, NULL, &cur) != 0 ||
      cur.sa_handler == SIG_IGN) {
    lua_pushboolean(L, 0);
    return 1;
  }
  st = get_state(L, rt);
  if (st->armed) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (!st->inited) {
    uv_signal_init(rt->loop, st->h);
    st->h->data = st;
    st->inited = 1;
  }
  st->interrupted = 0;
  if (watch_start(st->h, sigint_cb, SIGINT, 0) != 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  uv_unref((uv_handle_t *)st->h); /* never keeps the loop alive */
  st->armed = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* core.sigint_disarm() -> whether Ctrl-C was pressed during the run. The
 * previous disposition of SIGINT is back in place afterwards. */
static int l_sigint_disarm(lua_State *L) {
  loom_rt *rt = loom__rt(L);
  signal_state *st = get_state(L, rt);
  if (st->armed) {
    uv_signal_stop(st->h);
    watch_stopped(SIGINT, 0);
    st->armed = 0;
  }
  lua_pushboolean(L, st->interrupted);
  st->interrupted = 0;
  return 1;
}

static int l_sigint_gc(lua_State *L) {
  signal_state *st = (signal_state *)lua_touserdata(L, 1);
  if (st->armed) {
    uv_signal_stop(st->h);
    watch_stopped(SIGINT, 0);
    st->armed = 0;
  }
  /* Closed here or by the runtime's finaliser; the memory outlives both
   * (a state frees its objects only after running every finaliser). */
  if (st->inited && !st->rt->closed && !uv_is_closing((uv_handle_t *)st->h))
    uv_close((uv_handle_t *)st->h, NULL);
  return 0;
}

/* core.signal_stats() -> {receivers, handles}: this runtime's watchers of
 * open receivers (one per signal of each), and their libuv handles not yet
 * closed (closing ones included). */
static int l_signal_stats(lua_State *L) {
  signal_state *st = get_state(L, loom__rt(L));
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, st->rx_watchers);
  lua_setfield(L, -2, "receivers");
  lua_pushinteger(L, st->rx_handles);
  lua_setfield(L, -2, "handles");
  return 1;
}

/* core.signal_name(n) -> "SIGTERM", or nil for a number without a name. */
static int l_signal_name(lua_State *L) {
  const char *name = loom__signal_name((int)luaL_checkinteger(L, 1));
  if (name == NULL) return 0;
  lua_pushstring(L, name);
  return 1;
}

/* core.sigaction(sig[, "ignore"|"default"]) -> the disposition before:
 * "ignore", "default" or "handler". For tests and hosts that need to see
 * or set what loom restores; changes nothing without a second argument. */
static int l_sigaction(lua_State *L) {
  static const char *const what[] = {"ignore", "default", NULL};
  int sig = loom__check_signal(L, 1);
  struct sigaction old, sa;
  if (lua_isnoneornil(L, 2)) {
    sigaction(sig, NULL, &old);
  } else {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = luaL_checkoption(L, 2, NULL, what) == 0 ? SIG_IGN : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &old) != 0)
      return luaL_argerror(L, 1, "cannot change this signal");
  }
  lua_pushstring(L, old.sa_handler == SIG_IGN   ? "ignore"
                    : old.sa_handler == SIG_DFL ? "default"
                                                : "handler");
  return 1;
}

static const luaL_Reg rx_methods[] = {
  {"receive", l_rx_receive},
  {"close", l_rx_close},
  {NULL, NULL},
};

static const luaL_Reg rx_meta[] = {
  {"__close", l_rx_close},       {"__call", l_rx_call}, {"__gc", l_rx_gc},
  {"__tostring", l_rx_tostring}, {NULL, NULL},
};

static const luaL_Reg sigstate_meta[] = {
  {"__gc", l_sigint_gc},
  {NULL, NULL},
};

/* Functions close over rt. */
static const loom_class rx_class = {RX_MT, rx_meta, rx_methods, NULL,
                                    NULL,  NULL,    0};
static const loom_class sigstate_class = {
  "loom.SignalState", sigstate_meta, NULL, NULL, NULL, NULL, 0};

static const luaL_Reg signal_funcs[] = {
  {"signal_receiver", l_signal_receiver},
  {"sigint_arm", l_sigint_arm},
  {"sigint_disarm", l_sigint_disarm},
  {"signal_stats", l_signal_stats},
  {"signal_name", l_signal_name},
  {"sigaction", l_sigaction},
  {NULL, NULL},
};

/* Stack: rt(1) module(top). */
int loom__open_signal(lua_State *L) {
  loom__class_register(L, 0, &rx_class, 1, 1);
  loom__class_register(L, 0, &sigstate_class, 0, 0);
  lua_pop(L, 2);
  loom__setfuncs(L, 1, signal_funcs);
  return 0;
}
