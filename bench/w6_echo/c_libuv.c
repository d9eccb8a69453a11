/* W6 TCP echo on 127.0.0.1, plain C on libuv, server and clients on one loop:
 * C clients each do R round trips of 64 bytes (send, then read until 64 bytes
 * came back). Args: R (round trips per client), C (clients). */
#include <uv.h>
#include "bench.h"

#define MSG 64

typedef struct { uv_write_t req; char data[]; } wreq_t;
typedef struct { uv_tcp_t tcp; long left; int got; char buf[MSG]; } client_t;

static uv_loop_t *loop;
static uv_tcp_t server;
static long rounds, clients_left;
static char payload[MSG];

static void alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = sz;
}
static void free_close(uv_handle_t *h) { free(h); }
static void write_done(uv_write_t *req, int status) { (void)status; free(req); }

static void write_copy(uv_stream_t *s, const char *data, size_t len) {
  wreq_t *w = malloc(sizeof *w + len);
  memcpy(w->data, data, len);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  uv_write(&w->req, s, &b, 1, write_done);
}

/* server side: echo whatever arrives */
static void echo_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  if (n > 0) write_copy(s, b->base, (size_t)n);
  else if (n < 0) uv_close((uv_handle_t *)s, free_close);
  free(b->base);
}
static void on_conn(uv_stream_t *srv, int status) {
  if (status < 0) abort();
  uv_tcp_t *c = malloc(sizeof *c);
  uv_tcp_init(loop, c);
  if (uv_accept(srv, (uv_stream_t *)c) == 0) uv_read_start((uv_stream_t *)c, alloc_cb, echo_read);
  else uv_close((uv_handle_t *)c, free_close);
}

/* client side */
static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client_t *c = (client_t *)s;
  if (n < 0) abort();
  c->got += (int)n;
  free(b->base);
  if (c->got < MSG) return;
  c->got = 0;
  if (--c->left > 0) {
    write_copy(s, payload, MSG);
  } else {
    uv_close((uv_handle_t *)s, free_close);
    if (--clients_left == 0) uv_close((uv_handle_t *)&server, NULL);
  }
}
static void on_connect(uv_connect_t *req, int status) {
  if (status < 0) abort();
  uv_stream_t *s = req->handle;
  free(req);
  uv_read_start(s, alloc_cb, client_read);
  write_copy(s, payload, MSG);
}

int main(int argc, char **argv) {
  rounds = bench_arg(argc, argv, 1, 2000);
  long nclients = bench_arg(argc, argv, 2, 50);
  struct sockaddr_in addr;
  int namelen = sizeof addr;
  memset(payload, 'x', MSG);
  loop = uv_default_loop();
  uv_tcp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&server, (struct sockaddr *)&addr, 0);
  if (uv_listen((uv_stream_t *)&server, 128, on_conn) != 0) return 1;
  uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &namelen);

  double t0 = bench_now();
  clients_left = nclients;
  for (long i = 0; i < nclients; i++) {
    client_t *c = calloc(1, sizeof *c);
    c->left = rounds;
    uv_tcp_init(loop, &c->tcp);
    uv_connect_t *req = malloc(sizeof *req);
    uv_tcp_connect(req, &c->tcp, (struct sockaddr *)&addr, on_connect);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  double secs = bench_now() - t0;
  bench_report("W6", "c-libuv", rounds * nclients, secs, NULL);
  return 0;
}
