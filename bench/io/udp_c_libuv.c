/* UDP echo on 127.0.0.1 in plain C on libuv, server and clients on one
 * loop: C connected clients each do N/C round trips of 64 bytes.
 * Args: N (1e5), C (10). Prints round trips/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define MSG 64

static uv_loop_t *loop;
static uv_udp_t server;
static long rounds;
static int clients_left;
static char payload[MSG];
static char sbuf[65536];

typedef struct { uv_udp_t udp; long left; char buf[65536]; } client_t;
typedef struct { uv_udp_send_t req; char data[]; } sreq_t;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void srv_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h; (void)sz;
  b->base = sbuf;
  b->len = sizeof sbuf;
}

static void send_done(uv_udp_send_t *req, int status) {
  (void)status;
  free(req);
}

static void send_copy(uv_udp_t *u, const char *d, size_t n,
                      const struct sockaddr *to) {
  uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
  if (uv_udp_try_send(u, &b, 1, to) >= 0) return;
  sreq_t *r = malloc(sizeof *r + n);
  memcpy(r->data, d, n);
  b = uv_buf_init(r->data, (unsigned)n);
  uv_udp_send(&r->req, u, &b, 1, to, send_done);
}

static void srv_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *b,
                     const struct sockaddr *addr, unsigned flags) {
  (void)flags;
  if (n < 0 || addr == NULL) return;
  send_copy(u, b->base, (size_t)n, addr);
}

static void cli_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  client_t *c = (client_t *)h;
  (void)sz;
  b->base = c->buf;
  b->len = sizeof c->buf;
}

static void cli_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *b,
                     const struct sockaddr *addr, unsigned flags) {
  client_t *c = (client_t *)u;
  (void)b; (void)flags;
  if (n < 0 || (n == 0 && addr == NULL)) return;
  if (--c->left == 0) {
    uv_close((uv_handle_t *)u, NULL);
    if (--clients_left == 0) uv_close((uv_handle_t *)&server, NULL);
    return;
  }
  send_copy(u, payload, MSG, NULL);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  int nc = argc > 2 ? atoi(argv[2]) : 10, i;
  struct sockaddr_in a;
  int len = sizeof a;
  client_t *cs;
  double t0;
  loop = uv_default_loop();
  memset(payload, 'x', MSG);
  rounds = n / nc;
  uv_udp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_udp_bind(&server, (struct sockaddr *)&a, 0);
  uv_udp_getsockname(&server, (struct sockaddr *)&a, &len);
  uv_udp_recv_start(&server, srv_alloc, srv_recv);
  cs = calloc((size_t)nc, sizeof *cs);
  clients_left = nc;
  t0 = now();
  for (i = 0; i < nc; i++) {
    uv_udp_init(loop, &cs[i].udp);
    cs[i].left = rounds;
    uv_udp_connect(&cs[i].udp, (struct sockaddr *)&a);
    uv_udp_recv_start(&cs[i].udp, cli_alloc, cli_recv);
    send_copy(&cs[i].udp, payload, MSG, NULL);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  printf("c-libuv udp_echo %ld round trips %.3f s %.0f rt/s\n",
         rounds * nc, now() - t0, (double)(rounds * nc) / (now() - t0));
  free(cs);
  return 0;
}
