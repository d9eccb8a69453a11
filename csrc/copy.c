/*
 * copy.c: copying Lua values between two Lua states that share nothing
 * (a runtime and its worker threads). A value is encoded into a flat byte
 * buffer in one state and decoded in the other. Copyable: nil, booleans,
 * numbers (integer and float kept apart), strings (any bytes) and tables of
 * those, nested, with shared references and cycles preserved across every
 * value encoded with one encoder. Metatables are not copied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom_internal.h"

enum { T_NIL = 0, T_FALSE, T_TRUE, T_INT, T_FLT, T_STR, T_TABLE, T_REF, T_END };

#define MAX_DEPTH 100

/* ---- growable byte buffers --------------------------------------------- */

int loom__buf_put(loom_buf *b, const void *data, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap : 64;
    char *p;
    while (cap - b->len < n) {
      if (cap > ((size_t)-1) / 2) return 0;
      cap *= 2;
    }
    p = (char *)realloc(b->p, cap);
    if (p == NULL) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 1;
}

void loom__buf_free(loom_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- encoding ----------------------------------------------------------- */

void loom__enc_init(loom_enc *e, loom_buf *b, int seen_slot) {
  e->b = b;
  e->seen = seen_slot;
  e->ntables = 0;
  e->what[0] = '\0';
  e->path[0] = '\0';
}

static int put_tag(loom_enc *e, int tag) {
  unsigned char c = (unsigned char)tag;
  if (loom__buf_put(e->b, &c, 1)) return 1;
  snprintf(e->what, sizeof e->what, "a value (not enough memory)");
  return 0;
}

static int put_raw(loom_enc *e, const void *p, size_t n) {
  if (loom__buf_put(e->b, p, n)) return 1;
  snprintf(e->what, sizeof e->what, "a value (not enough memory)");
  return 0;
}

/* Prepend one step ("[2]", ".name", "[key]") to the failure's path. */
static void path_prepend(lua_State *L, loom_enc *e, int key) {
  char step[48];
  size_t n, have = strlen(e->path);
  if (lua_type(L, key) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, key, &len);
    int ident = len > 0 && len < 30 && !(s[0] >= '0' && s[0] <= '9');
    size_t i;
    for (i = 0; ident && i < len; i++) {
      char c = s[i];
      if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9')))
        ident = 0;
    }
    if (ident) snprintf(step, sizeof step, ".%s", s);
    else snprintf(step, sizeof step, "[\"%.20s%s\"]", s, len > 20 ? "..." : "");
  } else if (lua_type(L, key) == LUA_TNUMBER) {
    if (lua_isinteger(L, key))
      snprintf(step, sizeof step, "[" LUA_INTEGER_FMT "]",
               (LUAI_UACINT)lua_tointeger(L, key));
    else
      snprintf(step, sizeof step, "[" LUA_NUMBER_FMT "]",
               (LUAI_UACNUMBER)lua_tonumber(L, key));
  } else {
    snprintf(step, sizeof step, "[%s]", luaL_typename(L, key));
  }
  n = strlen(step);
  if (n + have + 1 > sizeof e->path) return; /* keep the inner part */
  memmove(e->path + n, e->path, have + 1);
  memcpy(e->path, step, n);
}

static int enc_value(lua_State *L, loom_enc *e, int idx, int depth);

static int enc_table(lua_State *L, loom_enc *e, int idx, int depth) {
  lua_Integer id;
  if (depth > MAX_DEPTH) {
    snprintf(e->what, sizeof e->what, "a table nested more than %d deep",
             MAX_DEPTH);
    return 0;
  }
  luaL_checkstack(L, 6, "loom: copying a table");
  if (lua_type(L, e->seen) != LUA_TTABLE) {
    lua_newtable(L);
    lua_replace(L, e->seen);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) == LUA_TNUMBER) {
    uint32_t ref = (uint32_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return put_tag(e, T_REF) && put_raw(e, &ref, sizeof ref);
  }
  lua_pop(L, 1);
  id = e->ntables++;
  lua_pushvalue(L, idx);
  lua_pushinteger(L, id);
  lua_rawset(L, e->seen);
  if (!put_tag(e, T_TABLE)) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int top = lua_gettop(L);
    if (!enc_value(L, e, top - 1, depth + 1)) {
      size_t n = strlen(e->what);
      if (e->path[0] == '\0' && n + 20 < sizeof e->what)
        memcpy(e->what + n, " used as a key", 15);
      return 0;
    }
    if (!enc_value(L, e, top, depth + 1)) {
      path_prepend(L, e, top - 1);
      return 0;
    }
    lua_pop(L, 1);
  }
  return put_tag(e, T_END);
}

static int enc_value(lua_State *L, loom_enc *e, int idx, int depth) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return put_tag(e, T_NIL);
  case LUA_TBOOLEAN:
    return put_tag(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      lua_Integer i = lua_tointeger(L, idx);
      return put_tag(e, T_INT) && put_raw(e, &i, sizeof i);
    } else {
      lua_Number n = lua_tonumber(L, idx);
      return put_tag(e, T_FLT) && put_raw(e, &n, sizeof n);
    }
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_tag(e, T_STR) && put_raw(e, &len, sizeof len) &&
           put_raw(e, s, len);
  }
  case LUA_TTABLE: return enc_table(L, e, idx, depth);
  default:
    snprintf(e->what, sizeof e->what, "a %s", luaL_typename(L, idx));
    return 0;
  }
}

int loom__enc_value(lua_State *L, loom_enc *e, int idx) {
  return enc_value(L, e, lua_absindex(L, idx), 0);
}

const char *loom__enc_error(lua_State *L, loom_enc *e, const char *where) {
  if (e->path[0] != '\0')
    return lua_pushfstring(L, "cannot copy %s (at %s) %s", e->what, e->path,
                           where);
  return lua_pushfstring(L, "cannot copy %s %s", e->what, where);
}

/* ---- decoding ----------------------------------------------------------- */

void loom__dec_init(loom_dec *d, const char *p, size_t len, int refs_slot) {
  d->p = p;
  d->len = len;
  d->pos = 0;
  d->refs = refs_slot;
  d->ntables = 0;
}

static void get_raw(lua_State *L, loom_dec *d, void *out, size_t n) {
  if (d->len - d->pos < n) luaL_error(L, "loom: corrupt copied value");
  memcpy(out, d->p + d->pos, n);
  d->pos += n;
}

static int get_tag(lua_State *L, loom_dec *d) {
  unsigned char c;
  get_raw(L, d, &c, 1);
  return c;
}

static void dec_value(lua_State *L, loom_dec *d, int tag);

static void dec_table(lua_State *L, loom_dec *d) {
  int t, tag;
  luaL_checkstack(L, 6, "loom: copying a table");
  if (lua_type(L, d->refs) != LUA_TTABLE) {
    lua_newtable(L);
    lua_replace(L, d->refs);
  }
  lua_newtable(L);
  t = lua_gettop(L);
  lua_pushvalue(L, t);
  lua_rawseti(L, d->refs, ++d->ntables);
  while ((tag = get_tag(L, d)) != T_END) {
    dec_value(L, d, tag);
    dec_value(L, d, get_tag(L, d));
    if (lua_isnil(L, -2)) luaL_error(L, "loom: corrupt copied value");
    lua_rawset(L, t);
  }
}

static void dec_value(lua_State *L, loom_dec *d, int tag) {
  switch (tag) {
  case T_NIL: lua_pushnil(L); break;
  case T_FALSE: lua_pushboolean(L, 0); break;
  case T_TRUE: lua_pushboolean(L, 1); break;
  case T_INT: {
    lua_Integer i;
    get_raw(L, d, &i, sizeof i);
    lua_pushinteger(L, i);
    break;
  }
  case T_FLT: {
    lua_Number n;
    get_raw(L, d, &n, sizeof n);
    lua_pushnumber(L, n);
    break;
  }
  case T_STR: {
    size_t len;
    get_raw(L, d, &len, sizeof len);
    if (d->len - d->pos < len) luaL_error(L, "loom: corrupt copied value");
    lua_pushlstring(L, d->p + d->pos, len);
    d->pos += len;
    break;
  }
  case T_TABLE: dec_table(L, d); break;
  case T_REF: {
    uint32_t ref;
    get_raw(L, d, &ref, sizeof ref);
    if (lua_type(L, d->refs) != LUA_TTABLE ||
        lua_rawgeti(L, d->refs, (lua_Integer)ref + 1) != LUA_TTABLE)
      luaL_error(L, "loom: corrupt copied value");
    break;
  }
  default: luaL_error(L, "loom: corrupt copied value");
  }
}

void loom__dec_value(lua_State *L, loom_dec *d) {
  luaL_checkstack(L, 4, "loom: copying a value");
  dec_value(L, d, get_tag(L, d));
}

int loom__dec_more(const loom_dec *d) { return d->pos < d->len; }
