/*
 * tls.c: the TLS engine on OpenSSL: contexts (loom.core.TLSContext, an SSL_CTX
 * with certificates, verification and ALPN) and engines (loom.core.TLSEngine,
 * one SSL object between two memory BIOs). An engine never does I/O and
 * never yields: ciphertext from the peer is fed in, ciphertext for the
 * peer is taken out, and tls.lua moves it over any loom stream. Failures
 * come back as nil, message, code so that tls.lua raises them.
 */
#define _DEFAULT_SOURCE /* timegm */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "loom_internal.h"

#define CTX_MT "loom.core.TLSContext"
#define ENGINE_MT "loom.core.TLSEngine"
#define STATE_MT "loom.core.TLSState"

#define READ_MAX 65536

/* Live object counters, reference counted like fs.c's. */
typedef struct tls_state {
  int refs;
  lua_Integer ssl_objects, contexts;
} tls_state;

typedef struct tls_ctx {
  SSL_CTX *ctx;
  tls_state *st;
  unsigned char *alpn; /* wire format: length-prefixed names */
  unsigned int alpn_len;
  int server;
} tls_ctx;

typedef struct tls_engine {
  SSL *ssl;
  BIO *rbio, *wbio; /* peer -> SSL, SSL -> peer */
  tls_state *st;
  unsigned char done, shut;
} tls_engine;

static void state_unref(tls_state *st) {
  if (--st->refs == 0) free(st);
}

static tls_state *get_state(lua_State *L) {
  return *(tls_state **)lua_touserdata(L, lua_upvalueindex(2));
}

/* [-0, +3] nil, message, code: the first OpenSSL error queued (or `what`
 * when the queue is empty); a certificate failure names the reason. */
static int push_failure(lua_State *L, SSL *ssl, const char *what) {
  unsigned long e = ERR_peek_last_error();
  char buf[256];
  const char *code = "SSL_ERROR";
  lua_pushnil(L);
  if (ssl != NULL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    long v = SSL_get_verify_result(ssl);
    lua_pushfstring(L, "%s: certificate verify failed: %s", what,
                    X509_verify_cert_error_string(v));
    code = "CERTIFICATE_VERIFY_FAILED";
  } else if (e != 0) {
    const char *reason = ERR_reason_error_string(e);
    ERR_error_string_n(e, buf, sizeof buf);
    lua_pushfstring(L, "%s: %s", what, reason ? reason : buf);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
      /* "sslv3 alert bad certificate" -> "SSLV3_ALERT_BAD_CERTIFICATE" */
      luaL_Buffer b;
      const char *p = reason ? reason : "ssl error";
      luaL_buffinit(L, &b);
      for (; *p; p++)
        luaL_addchar(&b, *p == ' '                  ? '_'
                         : (*p >= 'a' && *p <= 'z') ? (char)(*p - 32)
                                                    : *p);
      luaL_pushresult(&b);
      ERR_clear_error();
      return 3;
    }
  } else {
    lua_pushstring(L, what);
  }
  ERR_clear_error();
  lua_pushstring(L, code);
  return 3;
}

/* ---- contexts ----------------------------------------------------------- */

static int alpn_select_cb(SSL *ssl, const unsigned char **out,
                          unsigned char *outlen, const unsigned char *in,
                          unsigned int inlen, void *arg) {
  tls_ctx *c = (tls_ctx *)arg;
  unsigned char *sel;
  (void)ssl;
  if (c->alpn == NULL) return SSL_TLSEXT_ERR_NOACK;
  /* The server's order of preference wins. */
  if (SSL_select_next_proto(&sel, outlen, c->alpn, c->alpn_len, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static const char *opt_string(lua_State *L, const char *k) {
  const char *s;
  lua_getfield(L, 1, k);
  s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the options table keeps the string alive */
  return s;
}

static int opt_bool(lua_State *L, const char *k, int dflt) {
  int v;
  lua_getfield(L, 1, k);
  v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.tls_context{server_side=, verify=, cafile=, certfile=, keyfile=,
 * alpn=} -> TLSContext, or nil, message, code. Options were checked by
 * tls.lua. */
static int l_tls_context(lua_State *L) {
  tls_state *st = get_state(L);
  int server, verify;
  const char *cafile, *certfile, *keyfile;
  tls_ctx *c;
  luaL_checktype(L, 1, LUA_TTABLE);
  server = opt_bool(L, "server_side", 0);
  verify = opt_bool(L, "verify", !server);
  cafile = opt_string(L, "cafile");
  certfile = opt_string(L, "certfile");
  keyfile = opt_string(L, "keyfile");
  c = (tls_ctx *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  luaL_setmetatable(L, CTX_MT);
  ERR_clear_error();
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (c->ctx == NULL) return push_failure(L, NULL, "tls context");
  c->st = st;
  st->refs++;
  st->contexts++;
  c->server = server;
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(c->ctx, SSL_MODE_RELEASE_BUFFERS);
  if (verify) {
    int ok = cafile != NULL
               ? SSL_CTX_load_verify_locations(c->ctx, cafile, NULL)
               : SSL_CTX_set_default_verify_paths(c->ctx);
    if (!ok) return push_failure(L, NULL, cafile ? cafile : "CA store");
    SSL_CTX_set_verify(c->ctx,
                       server
                         ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                         : SSL_VERIFY_PEER,
                       NULL);
  } else {
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
  }
  if (certfile != NULL) {
    if (SSL_CTX_use_certificate_chain_file(c->ctx, certfile) != 1)
      return push_failure(L, NULL, certfile);
    if (keyfile == NULL) keyfile = certfile;
    if (SSL_CTX_use_PrivateKey_file(c->ctx, keyfile, SSL_FILETYPE_PEM) != 1)
      return push_failure(L, NULL, keyfile);
    if (SSL_CTX_check_private_key(c->ctx) != 1)
      return push_failure(L, NULL, keyfile);
  }
  if (lua_getfield(L, 1, "alpn") == LUA_TTABLE) {
    lua_Integer i, n = luaL_len(L, -1);
    size_t total = 0, len;
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_tolstring(L, -1, &len);
      total += 1 + len;
      lua_pop(L, 1);
    }
    c->alpn = (unsigned char *)malloc(total ? total : 1);
    if (c->alpn == NULL) return luaL_error(L, "loom: out of memory");
    for (i = 1; i <= n; i++) {
      const char *s;
      lua_rawgeti(L, -1, i);
      s = lua_tolstring(L, -1, &len);
      c->alpn[c->alpn_len++] = (unsigned char)len;
      memcpy(c->alpn + c->alpn_len, s, len);
      c->alpn_len += (unsigned int)len;
      lua_pop(L, 1);
    }
    if (server) SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select_cb, c);
    else if (SSL_CTX_set_alpn_protos(c->ctx, c->alpn, c->alpn_len) != 0)
      return push_failure(L, NULL, "alpn");
  }
  lua_pop(L, 1);
  return 1;
}

static int l_ctx_gc(lua_State *L) {
  tls_ctx *c = (tls_ctx *)luaL_checkudata(L, 1, CTX_MT);
  if (c->ctx != NULL) {
    SSL_CTX_free(c->ctx);
    c->ctx = NULL;
    c->st->contexts--;
    state_unref(c->st);
  }
  free(c->alpn);
  c->alpn = NULL;
  return 0;
}

static int l_ctx_tostring(lua_State *L) {
  tls_ctx *c = (tls_ctx *)luaL_checkudata(L, 1, CTX_MT);
  lua_pushfstring(L, CTX_MT ": %p (%s)", (void *)c,
                  c->server ? "server" : "client");
  return 1;
}

/* ---- engines ------------------------------------------------------------ */

static void engine_free(tls_engine *e) {
  if (e->ssl != NULL) {
    SSL_free(e->ssl); /* frees both BIOs */
    e->ssl = NULL;
    e->st->ssl_objects--;
    state_unref(e->st);
  }
}

static tls_engine *check_engine(lua_State *L) {
  tls_engine *e = (tls_engine *)luaL_checkudata(L, 1, ENGINE_MT);
  if (e->ssl == NULL) luaL_argerror(L, 1, "TLS engine is freed");
  return e;
}

/* core.tls_engine(ctx[, hostname]) -> TLSEngine. A client checks the
 * certificate against hostname (an IP literal against IP SANs) and sends
 * it as SNI when it is a name. */
static int l_tls_engine(lua_State *L) {
  tls_ctx *c = (tls_ctx *)luaL_checkudata(L, 1, CTX_MT);
  const char *host = luaL_optstring(L, 2, NULL);
  tls_state *st = get_state(L);
  tls_engine *e;
  e = (tls_engine *)lua_newuserdatauv(L, sizeof *e, 1);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, ENGINE_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the context outlives its engines */
  ERR_clear_error();
  e->ssl = SSL_new(c->ctx);
  if (e->ssl == NULL) return push_failure(L, NULL, "tls engine");
  e->st = st;
  st->refs++;
  st->ssl_objects++;
  e->rbio = BIO_new(BIO_s_mem());
  e->wbio = BIO_new(BIO_s_mem());
  if (e->rbio == NULL || e->wbio == NULL) {
    BIO_free(e->rbio);
    BIO_free(e->wbio);
    engine_free(e);
    return luaL_error(L, "loom: out of memory");
  }
  BIO_set_mem_eof_return(e->rbio, -1);
  SSL_set_bio(e->ssl, e->rbio, e->wbio);
  if (c->server) {
    SSL_set_accept_state(e->ssl);
  } else {
    SSL_set_connect_state(e->ssl);
    if (host != NULL) {
      struct sockaddr_storage ss;
      int is_ip = uv_ip4_addr(host, 0, (struct sockaddr_in *)&ss) == 0 ||
                  uv_ip6_addr(host, 0, (struct sockaddr_in6 *)&ss) == 0;
      if (is_ip) {
        X509_VERIFY_PARAM *p = SSL_get0_param(e->ssl);
        X509_VERIFY_PARAM_set1_ip_asc(p, host);
      } else {
        SSL_set_tlsext_host_name(e->ssl, host);
        SSL_set_hostflags(e->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(e->ssl, host);
      }
    }
  }
  return 1;
}

/* Classify an SSL call's result: 1 done, 0 wants input, -1 failed (the
 * failure is pushed), -2 clean close (close_notify received). */
static int classify(lua_State *L, tls_engine *e, int rc, const char *what) {
  int err = SSL_get_error(e->ssl, rc);
  switch (err) {
  case SSL_ERROR_NONE: return 1;
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE: return 0;
  case SSL_ERROR_ZERO_RETURN: return -2;
  case SSL_ERROR_SSL:
  case SSL_ERROR_SYSCALL:
    if (ERR_peek_error() == 0 || ERR_GET_REASON(ERR_peek_error()) ==
                                   SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      lua_pushnil(L);
      lua_pushfstring(L,
                      "%s: the peer closed the connection without "
                      "a TLS close_notify",
                      what);
      lua_pushliteral(L, "UNEXPECTED_EOF");
      return -1;
    }
    /* fall through */
  default: push_failure(L, e->ssl, what); return -1;
  }
}

/* eng:handshake() -> true (done), false (needs input), or nil, msg, code. */
static int l_engine_handshake(lua_State *L) {
  tls_engine *e = check_engine(L);
  int r;
  if (e->done) {
    lua_pushboolean(L, 1);
    return 1;
  }
  ERR_clear_error();
  r = classify(L, e, SSL_do_handshake(e->ssl), "TLS handshake failed");
  if (r == -1) return 3;
  if (r == -2) {
    lua_pushnil(L);
    lua_pushliteral(L, "TLS handshake failed: the peer closed the "
                       "connection");
    lua_pushliteral(L, "UNEXPECTED_EOF");
    return 3;
  }
  if (r == 1) e->done = 1;
  lua_pushboolean(L, r == 1);
  return 1;
}

/* eng:feed(data): ciphertext from the peer. */
static int l_engine_feed(lua_State *L) {
  tls_engine *e = check_engine(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (len > 0 && BIO_write(e->rbio, s, (int)len) != (int)len)
    return luaL_error(L, "loom: out of memory");
  return 0;
}

/* eng:feed_eof(): the transport ended; reads past the buffered bytes see
 * end of file instead of "want more". */
static int l_engine_feed_eof(lua_State *L) {
  tls_engine *e = check_engine(L);
  BIO_set_mem_eof_return(e->rbio, 0);
  return 0;
}

/* eng:take_output() -> the ciphertext waiting for the peer ("" if none). */
static int l_engine_take_output(lua_State *L) {
  tls_engine *e = check_engine(L);
  char *p;
  long n = BIO_get_mem_data(e->wbio, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  if (n > 0) (void)BIO_reset(e->wbio);
  return 1;
}

static int l_engine_has_output(lua_State *L) {
  tls_engine *e = check_engine(L);
  lua_pushboolean(L, BIO_ctrl_pending(e->wbio) > 0);
  return 1;
}

/* eng:read(max) -> plaintext (non-empty), false (needs input), nil (the
 * peer's close_notify), or nil, msg, code. */
static int l_engine_read(lua_State *L) {
  tls_engine *e = check_engine(L);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_Buffer b;
  size_t got = 0;
  int r = 1;
  if (max < 1) luaL_argerror(L, 2, "max_bytes must be at least 1");
  if (max > READ_MAX) max = READ_MAX;
  luaL_buffinit(L, &b);
  ERR_clear_error();
  while (got < (size_t)max) {
    size_t n = 0;
    char *p = luaL_prepbuffsize(&b, (size_t)max - got);
    int rc = SSL_read_ex(e->ssl, p, (size_t)max - got, &n);
    if (rc == 1) {
      luaL_addsize(&b, n);
      got += n;
      continue;
    }
    r = classify(L, e, 0, "TLS receive failed");
    break;
  }
  if (got > 0) {
    ERR_clear_error();
    luaL_pushresult(&b);
    return 1;
  }
  if (r == -1) return 3;
  if (r == -2) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* eng:write(data) -> true, or nil, msg, code. The ciphertext waits in the
 * engine for take_output. */
static int l_engine_write(lua_State *L) {
  tls_engine *e = check_engine(L);
  size_t len, n = 0;
  const char *s = luaL_checklstring(L, 2, &len);
  int r;
  if (len == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  ERR_clear_error();
  if (SSL_write_ex(e->ssl, s, len, &n) == 1 && n == len) {
    lua_pushboolean(L, 1);
    return 1;
  }
  r = classify(L, e, 0, "TLS send failed");
  if (r == -1) return 3;
  lua_pushnil(L);
  lua_pushliteral(L, "TLS send failed: the session cannot send now");
  lua_pushliteral(L, "SSL_ERROR");
  return 3;
}

/* eng:shutdown(): queue our close_notify (once). */
static int l_engine_shutdown(lua_State *L) {
  tls_engine *e = check_engine(L);
  if (!e->shut && e->done) {
    e->shut = 1;
    ERR_clear_error();
    SSL_shutdown(e->ssl);
    ERR_clear_error();
  }
  return 0;
}

static int l_engine_alpn(lua_State *L) {
  tls_engine *e = check_engine(L);
  const unsigned char *p = NULL;
  unsigned int n = 0;
  SSL_get0_alpn_selected(e->ssl, &p, &n);
  if (p == NULL || n == 0) return 0;
  lua_pushlstring(L, (const char *)p, n);
  return 1;
}

static void push_name(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

static void push_time(lua_State *L, const ASN1_TIME *t) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (ASN1_TIME_to_tm(t, &tm) == 1)
    lua_pushinteger(L, (lua_Integer)timegm(&tm));
  else lua_pushnil(L);
}

/* eng:peer_certificate() -> {subject=, issuer=, not_before=, not_after=,
 * san = {"DNS:name", "IP:addr", ...}, pem=} or nil. */
static int l_engine_peer_certificate(lua_State *L) {
  tls_engine *e = check_engine(L);
  X509 *x = SSL_get1_peer_certificate(e->ssl);
  GENERAL_NAMES *names;
  BIO *b;
  char *p;
  long n;
  int i, k = 0;
  if (x == NULL) return 0;
  lua_createtable(L, 0, 6);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  push_time(L, X509_get0_notBefore(x));
  lua_setfield(L, -2, "not_before");
  push_time(L, X509_get0_notAfter(x));
  lua_setfield(L, -2, "not_after");
  lua_newtable(L);
  names = (GENERAL_NAMES *)X509_get_ext_d2i(x, NID_subject_alt_name, NULL,
                                            NULL);
  for (i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS) {
      lua_pushfstring(L, "DNS:%s",
                      (const char *)ASN1_STRING_get0_data(g->d.dNSName));
    } else if (g->type == GEN_IPADD) {
      char host[64];
      const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
      int len = ASN1_STRING_length(g->d.iPAddress);
      if (len == 4) uv_inet_ntop(AF_INET, a, host, sizeof host);
      else if (len == 16) uv_inet_ntop(AF_INET6, a, host, sizeof host);
      else continue;
      lua_pushfstring(L, "IP:%s", host);
    } else {
      continue;
    }
    lua_rawseti(L, -2, ++k);
  }
  GENERAL_NAMES_free(names);
  lua_setfield(L, -2, "san");
  b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  lua_setfield(L, -2, "pem");
  BIO_free(b);
  X509_free(x);
  return 1;
}

static int l_engine_version(lua_State *L) {
  tls_engine *e = check_engine(L);
  lua_pushstring(L, SSL_get_version(e->ssl));
  return 1;
}

/* eng:free(): idempotent; the SSL object and its buffers go now. */
static int l_engine_free(lua_State *L) {
  tls_engine *e = (tls_engine *)luaL_checkudata(L, 1, ENGINE_MT);
  engine_free(e);
  return 0;
}

static int l_engine_tostring(lua_State *L) {
  tls_engine *e = (tls_engine *)luaL_checkudata(L, 1, ENGINE_MT);
  lua_pushfstring(L, ENGINE_MT ": %p (%s)", (void *)e,
                  e->ssl == NULL ? "freed"
                  : e->done      ? "established"
                                 : "handshaking");
  return 1;
}

/* core.tls_stats() -> {ssl_objects =, contexts =}. */
static int l_tls_stats(lua_State *L) {
  tls_state *st = get_state(L);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, st->ssl_objects);
  lua_setfield(L, -2, "ssl_objects");
  lua_pushinteger(L, st->contexts);
  lua_setfield(L, -2, "contexts");
  return 1;
}

static int l_state_gc(lua_State *L) {
  tls_state **box = (tls_state **)lua_touserdata(L, 1);
  if (*box != NULL) state_unref(*box);
  *box = NULL;
  return 0;
}

static const luaL_Reg engine_methods[] = {
  {"handshake", l_engine_handshake},
  {"feed", l_engine_feed},
  {"feed_eof", l_engine_feed_eof},
  {"take_output", l_engine_take_output},
  {"has_output", l_engine_has_output},
  {"read", l_engine_read},
  {"write", l_engine_write},
  {"shutdown", l_engine_shutdown},
  {"alpn_protocol", l_engine_alpn},
  {"peer_certificate", l_engine_peer_certificate},
  {"version", l_engine_version},
  {"free", l_engine_free},
  {NULL, NULL},
};

static const luaL_Reg tls_funcs[] = {
  {"tls_context", l_tls_context},
  {"tls_engine", l_tls_engine},
  {"tls_stats", l_tls_stats},
  {NULL, NULL},
};

static const luaL_Reg state_meta[] = {
  {"__gc", l_state_gc},
  {NULL, NULL},
};

static const luaL_Reg ctx_meta[] = {
  {"__gc", l_ctx_gc},
  {"__tostring", l_ctx_tostring},
  {NULL, NULL},
};

static const luaL_Reg engine_meta[] = {
  {"__gc", l_engine_free},
  {"__tostring", l_engine_tostring},
  {NULL, NULL},
};

static const loom_class state_class = {STATE_MT, state_meta, NULL, NULL,
                                       NULL,     NULL,       0};
static const loom_class ctx_class = {CTX_MT, ctx_meta, NULL, NULL,
                                     NULL,   NULL,     0};
/* Methods close over rt(1) and the state box. */
static const loom_class engine_class = {
  ENGINE_MT, engine_meta, engine_methods, NULL, NULL, NULL, 0};

/* Stack: rt(1) module(top). */
int loom__open_tls(lua_State *L) {
  tls_state **box;
  int sidx;
  loom__class_register(L, 0, &state_class, 0, 0);
  lua_pop(L, 1);
  box = (tls_state **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, STATE_MT);
  *box = (tls_state *)calloc(1, sizeof **box);
  if (*box == NULL) return luaL_error(L, "loom: out of memory");
  (*box)->refs = 1;
  sidx = lua_gettop(L);
  lua_pushvalue(L, sidx - 1); /* the module */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, sidx); /* upvalues: rt, state */
  loom__class_register(L, 0, &ctx_class, 0, 0);
  loom__class_register(L, 0, &engine_class, -3, 2);
  lua_pop(L, 2);
  luaL_setfuncs(L, tls_funcs, 2);
  lua_pop(L, 2);
  return 0;
}
