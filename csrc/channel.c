/*
 * channel.c: memory channels (AnyIO's memory object streams, Trio's memory
 * channels). One shared state holds the buffer and two FIFO queues of parked
 * tasks, senders and receivers; any number of send and receive ends (clones)
 * point at it. An item goes straight to the longest-waiting receiver when
 * there is one, so a rendezvous channel (size 0) never touches the buffer.
 * A parked sender keeps its item on its own stack (index 2) until a receiver
 * takes it; a parked receiver is handed its item on its stack.
 */
#include <math.h>
#include <string.h>

#include "loom_internal.h"

#define SEND_MT "loom.SendChannel"
#define RECV_MT "loom.ReceiveChannel"

/* How a parked sender or receiver is woken besides LOOM_WAKE_OK (item taken
 * or delivered) and LOOM_WAKE_CANCELLED. */
enum {
  WAKE_HANDLE_CLOSED = LOOM_WAKE_CLOSED, /* its own end was closed */
  WAKE_OTHER_SIDE_GONE = LOOM_WAKE_ERROR /* receiver: EndOfStream;
                                            sender: BrokenResourceError */
};

/* Shared by every end; user value 1 is the buffer, a table used as a ring
 * (slots 1..cap, created on first use). */
typedef struct chan_state {
  loom_waitq senders, receivers;
  double max; /* max_buffer_size; HUGE_VAL: unbounded */
  lua_Integer head, count, cap, peak;
  int open_send, open_recv; /* ends not closed yet */
} chan_state;

/* One end. User value 1 anchors the state userdata. A task parked on this
 * end has wait_data pointing here, so close() finds the tasks blocked on
 * this very end. */
typedef struct chan_end {
  uint32_t magic; /* LOOM_MAGIC_SEND or LOOM_MAGIC_RECEIVE */
  chan_state *st;
  unsigned char closed, is_send;
} chan_end;

enum { GOT_ITEM, WOULD_BLOCK, END_OF_STREAM };

/* ---- wait queues ------------------------------------------------------- */

static loom_waitq *queue_of(chan_end *e) {
  return e->is_send ? &e->st->senders : &e->st->receivers;
}

static void wq_wake_all(loom_waitq *q, int how) {
  loom_task *t;
  while ((t = loom__waitq_pop(q)) != NULL) loom__wake(t, how);
}

/* ---- the buffer -------------------------------------------------------- */

/* Buffer operations need the state userdata on the stack: index 1 holds an
 * end, whose user value 1 is the state. */
static int push_state(lua_State *L) {
  lua_getiuservalue(L, 1, 1);
  return lua_gettop(L);
}

/* Double the ring (at least 4 slots), keeping the items in order. */
static void buf_grow(lua_State *L, chan_state *st, int sidx) {
  lua_Integer cap = st->cap ? st->cap * 2 : 4, i;
  int old;
  lua_getiuservalue(L, sidx, 1);
  old = lua_gettop(L);
  lua_createtable(L, (int)cap, 0);
  for (i = 0; i < st->count; i++) {
    lua_rawgeti(L, old, (st->head + i) % st->cap + 1);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setiuservalue(L, sidx, 1);
  lua_pop(L, 1);
  st->head = 0;
  st->cap = cap;
}

/* [-1, +0] append the value on top. */
static void buf_push(lua_State *L, chan_state *st, int sidx) {
  if (st->count == st->cap) buf_grow(L, st, sidx);
  lua_getiuservalue(L, sidx, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (st->head + st->count) % st->cap + 1);
  lua_pop(L, 1);
  if (++st->count > st->peak) st->peak = st->count;
}

#define BUF_KEEP 64 /* a drained ring larger than this is let go */

/* [-0, +1] remove and push the oldest item. */
static void buf_pop(lua_State *L, chan_state *st, int sidx) {
  lua_getiuservalue(L, sidx, 1);
  lua_rawgeti(L, -1, st->head + 1);
  lua_pushnil(L);
  lua_rawseti(L, -3, st->head + 1);
  lua_remove(L, -2);
  st->head = (st->head + 1) % st->cap;
  if (--st->count == 0 && st->cap > BUF_KEEP) {
    /* A burst into a big or unbounded buffer must not pin its memory. */
    lua_pushnil(L);
    lua_setiuservalue(L, sidx, 1);
    st->head = st->cap = 0;
  }
}

static void buf_clear(lua_State *L, chan_state *st, int sidx) {
  lua_pushnil(L);
  lua_setiuservalue(L, sidx, 1);
  st->head = st->count = st->cap = 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* The end at idx, a send end or a receive end, or the standard lauxlib
 * error ("loom.SendChannel expected, got ..."). Hot-path type check
 * (loom__test_ud) first, as for the core's objects. */
static chan_end *check_end(lua_State *L, int idx, int is_send) {
  void *p = loom__test_ud(L, idx, sizeof(chan_end),
                          is_send ? LOOM_MAGIC_SEND : LOOM_MAGIC_RECEIVE);
  if (p != NULL) return (chan_end *)p;
  return (chan_end *)luaL_checkudata(L, idx, is_send ? SEND_MT : RECV_MT);
}

static int raise_closed(lua_State *L, chan_end *e) {
  return loom__raise_error(L, "ClosedResourceError",
                           e->is_send ? "this send channel is closed"
                                      : "this receive channel is closed",
                           NULL);
}

static int raise_broken(lua_State *L) {
  return loom__raise_error(L, "BrokenResourceError",
                           "every receive channel is closed", NULL);
}

static int raise_eof(lua_State *L) {
  return loom__raise_error(L, "EndOfStream", "every send channel is closed",
                           NULL);
}

static void check_item(lua_State *L) {
  if (lua_isnoneornil(L, 2))
    luaL_argerror(L, 2, "cannot send nil (nil ends a channel's iteration)");
  lua_settop(L, 2);
}

/* [-0, +1] a new end of st (state userdata at sidx). */
static chan_end *new_end(lua_State *L, chan_state *st, int sidx, int is_send,
                         int mt) {
  chan_end *e = (chan_end *)lua_newuserdatauv(L, sizeof *e, 1);
  e->magic = is_send ? LOOM_MAGIC_SEND : LOOM_MAGIC_RECEIVE;
  e->st = st;
  e->closed = 0;
  e->is_send = (unsigned char)is_send;
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, sidx);
  lua_setiuservalue(L, -2, 1);
  if (is_send) st->open_send++;
  else st->open_recv++;
  return e;
}

/* Continuations get the waiting task as their context: it is the one that
 * resumes them, and this saves looking it up on every wake. */
#define TASK_CTX(t) ((lua_KContext)(t))
#define CTX_TASK(ctx) ((loom_task *)(ctx))

/* Yield once after a fast-path send or receive (done: not cancellable). */
static int schedule_point(lua_State *L, loom_task *t, lua_KFunction k) {
  return loom__schedule_point(L, t, TASK_CTX(t), k);
}

/* ---- sending ------------------------------------------------------------ */

/* send_nowait's steps for the item at 2: returns 1 if the item was
 * delivered or buffered, 0 if it would block. */
static int try_send(lua_State *L, chan_end *e) {
  chan_state *st = e->st;
  loom_task *w;
  if (e->closed) raise_closed(L, e);
  if (st->open_recv == 0) raise_broken(L);
  if ((w = loom__waitq_pop(&st->receivers)) != NULL) {
    lua_pushvalue(L, 2);
    lua_xmove(L, w->L, 1);
    w->wake_nargs = 1;
    loom__wake(w, LOOM_WAKE_OK);
    return 1;
  }
  if ((double)st->count < st->max) {
    int sidx = push_state(L);
    lua_pushvalue(L, 2);
    buf_push(L, st, sidx);
    lua_settop(L, 2);
    return 1;
  }
  return 0;
}

static int k_send(lua_State *L, int status, lua_KContext ctx) {
  loom_task *t = CTX_TASK(ctx);
  int how;
  (void)status;
  how = loom__wake_outcome(L, t, 1);
  if (how == WAKE_HANDLE_CLOSED) return raise_closed(L, lua_touserdata(L, 1));
  if (how == WAKE_OTHER_SIDE_GONE) return raise_broken(L);
  return 0;
}

/* send:send(item): a checkpoint; waits while the buffer is full. */
static int l_send(lua_State *L) {
  chan_end *e = check_end(L, 1, 1);
  loom_task *t;
  check_item(L);
  t = loom__check_blocking(L, "SendChannel:send", 1);
  loom__cancel_point(L, t);
  if (try_send(L, e)) return schedule_point(L, t, k_send);
  loom__waitq_park(queue_of(e), t, "channel send", e);
  return loom__suspend_task(L, t, TASK_CTX(t), k_send);
}

static int l_send_nowait(lua_State *L) {
  chan_end *e = check_end(L, 1, 1);
  check_item(L);
  if (!try_send(L, e))
    return loom__raise_error(L, "WouldBlock",
                             "the channel's buffer is full "
                             "and no receiver is waiting",
                             NULL);
  return 0;
}

/* ---- receiving ---------------------------------------------------------- */

/* receive_nowait's steps: pushes the item and returns GOT_ITEM, or
 * returns WOULD_BLOCK / END_OF_STREAM with nothing pushed. */
static int try_receive(lua_State *L, chan_end *e) {
  chan_state *st = e->st;
  loom_task *w;
  if (e->closed) raise_closed(L, e);
  if ((w = loom__waitq_pop(&st->senders)) != NULL) {
    /* The oldest sender's item goes to the end of the buffer and the front
     * comes out, so items always arrive in send order. */
    lua_pushvalue(w->L, 2);
    lua_xmove(w->L, L, 1); /* [item] */
    if (st->count > 0) {
      int sidx = push_state(L); /* [item, state] */
      buf_pop(L, st, sidx);     /* [item, state, front] */
      lua_pushvalue(L, sidx - 1);
      buf_push(L, st, sidx);
      lua_replace(L, sidx - 1); /* [front, state] */
      lua_settop(L, sidx - 1);
    }
    loom__wake(w, LOOM_WAKE_OK);
    return GOT_ITEM;
  }
  if (st->count > 0) {
    int sidx = push_state(L);
    buf_pop(L, st, sidx);
    lua_remove(L, sidx);
    return GOT_ITEM;
  }
  return st->open_send == 0 ? END_OF_STREAM : WOULD_BLOCK;
}

/* After a receive waited or yielded: the item is on top, or the wake says
 * why there is none. Iteration (`iter`) returns nil at the end of the stream
 * where receive() raises EndOfStream. */
static int received(lua_State *L, loom_task *t, int iter) {
  int how;
  how = loom__wake_outcome(L, t, 1);
  if (how == WAKE_HANDLE_CLOSED) return raise_closed(L, lua_touserdata(L, 1));
  if (how == WAKE_OTHER_SIDE_GONE) {
    if (!iter) return raise_eof(L);
    lua_pushnil(L);
  }
  return 1;
}

static int k_receive(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return received(L, CTX_TASK(ctx), 0);
}

static int k_receive_iter(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return received(L, CTX_TASK(ctx), 1);
}

static int receive(lua_State *L, int iter) {
  chan_end *e = check_end(L, 1, 0);
  loom_task *t;
  lua_settop(L, 1);
  t = loom__check_blocking(
    L, iter ? "ReceiveChannel:__call" : "ReceiveChannel:receive", 1);
  loom__cancel_point(L, t);
  switch (try_receive(L, e)) {
  case GOT_ITEM: return schedule_point(L, t, iter ? k_receive_iter : k_receive);
  case END_OF_STREAM:
    if (!iter) return raise_eof(L);
    lua_pushnil(L);
    return 1;
  default:
    loom__waitq_park(queue_of(e), t, "channel receive", e);
    return loom__suspend_task(L, t, TASK_CTX(t),
                              iter ? k_receive_iter : k_receive);
  }
}

/* receive:receive() -> item: a checkpoint; raises loom.EndOfStream once
 * every send end is closed and the buffer is empty. */
static int l_receive(lua_State *L) { return receive(L, 0); }

/* `for item in receive do`: the next item, or nil at the end. */
static int l_receive_call(lua_State *L) { return receive(L, 1); }

static int l_receive_nowait(lua_State *L) {
  chan_end *e = check_end(L, 1, 0);
  lua_settop(L, 1);
  switch (try_receive(L, e)) {
  case GOT_ITEM: return 1;
  case END_OF_STREAM: return raise_eof(L);
  default:
    return loom__raise_error(L, "WouldBlock",
                             "the channel is empty and no "
                             "sender is waiting",
                             NULL);
  }
}

/* ---- both ends ---------------------------------------------------------- */

/* end:close(): synchronous, idempotent, also __close. Tasks blocked on this
 * very end get ClosedResourceError (Trio's choice). Closing the last
 * send end ends the stream for waiting receivers; closing the last receive
 * end breaks waiting senders and drops the buffered items. */
static int end_close(lua_State *L, int is_send) {
  chan_end *e = check_end(L, 1, is_send);
  chan_state *st = e->st;
  loom_waitq *q = queue_of(e);
  loom_list *n, *next;
  if (e->closed) return 0;
  e->closed = 1;
  for (n = q->head.next; n != &q->head; n = next) {
    loom_task *t = loom__container_of(n, loom_task, wait_link);
    next = n->next;
    if (t->wait_data == e) {
      loom__waitq_remove(t);
      loom__wake(t, WAKE_HANDLE_CLOSED);
    }
  }
  if (e->is_send) {
    if (--st->open_send == 0) wq_wake_all(&st->receivers, WAKE_OTHER_SIDE_GONE);
  } else if (--st->open_recv == 0) {
    wq_wake_all(&st->senders, WAKE_OTHER_SIDE_GONE);
    lua_settop(L, 1);
    buf_clear(L, st, push_state(L));
  }
  return 0;
}

static int l_send_close(lua_State *L) { return end_close(L, 1); }
static int l_receive_close(lua_State *L) { return end_close(L, 0); }

/* end:clone() -> a new end of the same kind on the same channel. */
static int end_clone(lua_State *L, int is_send) {
  chan_end *e = check_end(L, 1, is_send);
  lua_settop(L, 1);
  if (e->closed) return raise_closed(L, e);
  new_end(L, e->st, push_state(L), e->is_send, lua_upvalueindex(2));
  return 1;
}

static int l_send_clone(lua_State *L) { return end_clone(L, 1); }
static int l_receive_clone(lua_State *L) { return end_clone(L, 0); }

static int end_statistics(lua_State *L, int is_send) {
  chan_state *st = check_end(L, 1, is_send)->st;
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, st->count);
  lua_setfield(L, -2, "current_buffer_used");
  if (isinf(st->max)) lua_pushnumber(L, st->max);
  else lua_pushinteger(L, (lua_Integer)st->max);
  lua_setfield(L, -2, "max_buffer_size");
  lua_pushinteger(L, st->open_send);
  lua_setfield(L, -2, "open_send_streams");
  lua_pushinteger(L, st->open_recv);
  lua_setfield(L, -2, "open_receive_streams");
  lua_pushinteger(L, st->senders.n);
  lua_setfield(L, -2, "tasks_waiting_send");
  lua_pushinteger(L, st->receivers.n);
  lua_setfield(L, -2, "tasks_waiting_receive");
  lua_pushinteger(L, st->peak);
  lua_setfield(L, -2, "peak_buffer_used");
  return 1;
}

static int l_send_statistics(lua_State *L) { return end_statistics(L, 1); }

static int l_receive_statistics(lua_State *L) { return end_statistics(L, 0); }

static int end_tostring(lua_State *L, int is_send) {
  chan_end *e = check_end(L, 1, is_send);
  chan_state *st = e->st;
  const char *tname = is_send ? SEND_MT : RECV_MT;
  if (isinf(st->max))
    lua_pushfstring(L, "%s: %p (%s, %I buffered, unbounded)", tname, (void *)e,
                    e->closed ? "closed" : "open", st->count);
  else
    lua_pushfstring(L, "%s: %p (%s, %I of %I buffered)", tname, (void *)e,
                    e->closed ? "closed" : "open", st->count,
                    (lua_Integer)st->max);
  return 1;
}

static int l_send_tostring(lua_State *L) { return end_tostring(L, 1); }
static int l_receive_tostring(lua_State *L) { return end_tostring(L, 0); }

/* ---- creation ----------------------------------------------------------- */

/* loom.channel([max_buffer_size]) -> send, receive. Upvalues: rt, the send
 * metatable, the receive metatable. */
static int l_channel_new(lua_State *L) {
  double max = 0;
  chan_state *st;
  int sidx;
  if (!lua_isnoneornil(L, 1)) {
    int isint;
    lua_Integer n = 0;
    if (lua_type(L, 1) == LUA_TNUMBER) n = lua_tointegerx(L, 1, &isint);
    else isint = 0;
    if (isint) max = (double)n;
    else if (lua_type(L, 1) == LUA_TNUMBER && lua_tonumber(L, 1) == HUGE_VAL)
      max = HUGE_VAL;
    else
      return luaL_argerror(L, 1,
                           "max_buffer_size must be either an integer "
                           "or math.inf");
    if (max < 0)
      return luaL_argerror(L, 1, "max_buffer_size cannot be negative");
  }
  st = (chan_state *)lua_newuserdatauv(L, sizeof *st, 1);
  sidx = lua_gettop(L);
  memset(st, 0, sizeof *st);
  loom__waitq_init(&st->senders);
  loom__waitq_init(&st->receivers);
  st->max = max;
  new_end(L, st, sidx, 1, lua_upvalueindex(2));
  new_end(L, st, sidx, 0, lua_upvalueindex(3));
  return 2;
}

/* ---- registration ------------------------------------------------------- */

static const luaL_Reg send_meta[] = {
  {"__close", l_send_close},
  {"__tostring", l_send_tostring},
  {NULL, NULL},
};

static const luaL_Reg send_methods[] = {
  {"send", l_send},
  {"send_nowait", l_send_nowait},
  {"clone", l_send_clone},
  {"close", l_send_close},
  {"statistics", l_send_statistics},
  {NULL, NULL},
};

static const luaL_Reg receive_meta[] = {
  {"__call", l_receive_call},
  {"__close", l_receive_close},
  {"__tostring", l_receive_tostring},
  {NULL, NULL},
};

static const luaL_Reg receive_methods[] = {
  {"receive", l_receive},
  {"receive_nowait", l_receive_nowait},
  {"clone", l_receive_clone},
  {"close", l_receive_close},
  {"statistics", l_receive_statistics},
  {NULL, NULL},
};

static const loom_class send_class = {
  SEND_MT,         send_meta, send_methods, NULL, NULL, "send_channel_methods",
  LOOM_CLASS_UP_MT};

static const loom_class receive_class = {RECV_MT,
                                         receive_meta,
                                         receive_methods,
                                         NULL,
                                         NULL,
                                         "receive_channel_methods",
                                         LOOM_CLASS_UP_MT};

/* Stack: rt(1) module(top). Adds core.channel and the methods tables
 * core.send_channel_methods and core.receive_channel_methods; methods
 * close over (rt, their metatable), core.channel over (rt, both). */
int loom__open_channel(lua_State *L) {
  int mod = lua_gettop(L);
  lua_pushvalue(L, 1);
  loom__class_register(L, mod, &send_class, 1, 1);
  loom__class_register(L, mod, &receive_class, 1, 1);
  lua_pushcclosure(L, l_channel_new, 3);
  lua_setfield(L, mod, "channel");
  return 0;
}
