/*
 * host_60fps.c: a C "engine" that embeds Lua 5.4 and loom (libloom) and
 * drives it one bounded step per frame, at 60 FPS on game time.
 *
 *   - runtime A runs the game: a manual clock moved by the engine, a level
 *     (host group) of NPC tasks using next_frame, sleep and channels, a
 *     background group whose failing task reaches the C error hook, and
 *     worker threads that resolve loom.futures through loom_remote_post;
 *   - at frame 90 the level is unloaded (hg:close), running every task's
 *     cleanup before the call returns;
 *   - runtime B, a second lua_State in the same process, runs the menu;
 *   - each state uses a counting allocator, back to zero after lua_close.
 *
 * The transcript (stdout) depends only on frames and game time, never on
 * the machine's speed: two runs print the same bytes (checked by
 * spec/examples_c_spec.lua, also under valgrind and ASan).
 *
 * Usage: host_60fps path/to/host_60fps.lua [--times]
 * With --times each game step also gets a 2 ms wall-time budget, and the
 * distribution of step times goes to stderr (the transcript stays the
 * same as long as no step reaches the budget).
 * Build: cc host_60fps.c $(pkg-config --cflags --libs loom lua5.4) -pthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include <loom.h>

#define FPS 60
#define FRAMES 120
#define UNLOAD_FRAME 90
/* Resumes per step: fewer than the level's tasks, so a frame never runs
 * the whole crowd; the rest run first in the next step (the guard and the
 * pathfinder below wait their turn behind the villagers). */
#define MAX_RESUMES 64
#define MAX_JOBS 4

/* ---- a counting allocator, one per state ----------------------------- */

typedef struct counter {
  size_t bytes;
} counter;

static void *count_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counter *c = (counter *)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    free(ptr);
    c->bytes -= osize;
    return NULL;
  }
  ptr = realloc(ptr, nsize);
  if (ptr != NULL) c->bytes += nsize - osize;
  return ptr;
}

/* ---- worker threads ---------------------------------------------------- */

typedef struct job {
  struct engine *eng;
  loom_remote *remote;
  pthread_t thread;
  int future_ref;   /* the loom.future, anchored in the registry */
  long n, result;   /* input; output (-1: failed) */
  int due;          /* the frame at which the result is delivered */
  int go;           /* set by the engine at frame `due` */
} job;

typedef struct engine {
  const char *name;
  lua_State *L;
  counter mem;
  int game_ref;     /* the table host_60fps.lua returned */
  job jobs[MAX_JOBS];
  int njobs;
} engine;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int wakes;   /* calls of the wake hook (any thread) */

/* cfg.wake: "work arrived, step soon". An engine would wake its event
 * loop; this one steps every frame anyway and only counts the calls. */
static void wake_hook(void *ud) {
  (void)ud;
  pthread_mutex_lock(&mu);
  wakes++;
  pthread_mutex_unlock(&mu);
}

/* Owner thread, inside a step: resolve the job's future. */
static void job_done(lua_State *L, void *ud) {
  job *j = (job *)ud;
  lua_rawgeti(L, LUA_REGISTRYINDEX, j->future_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, j->future_ref);
  j->future_ref = LUA_NOREF;
  if (j->result < 0) {
    lua_getfield(L, -1, "fail");
    lua_insert(L, -2);
    lua_pushliteral(L, "no path to the target");
    lua_call(L, 2, 0);
  } else {
    lua_getfield(L, -1, "set");
    lua_insert(L, -2);
    lua_pushinteger(L, (lua_Integer)j->result);
    lua_call(L, 2, 0);
  }
}

static void *job_thread(void *arg) {
  job *j = (job *)arg;
  long i, sum = 0;
  for (i = 1; i <= j->n; i++) sum += i;  /* the work */
  j->result = j->n < 0 ? -1 : sum;
  /* Deliver at the agreed frame, so that the transcript does not depend
   * on how fast this thread ran. */
  pthread_mutex_lock(&mu);
  while (!j->go) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  if (loom_remote_post(j->remote, job_done, j) != LOOM_OK)
    fprintf(stderr, "host: post refused\n");
  loom_remote_release(j->remote);
  return NULL;
}

/* engine.start_job(future, n, due_frame) */
static int l_start_job(lua_State *L) {
  engine *eng = (engine *)lua_touserdata(L, lua_upvalueindex(1));
  job *j;
  luaL_checkudata(L, 1, "loom.Future");
  if (eng->njobs == MAX_JOBS) return luaL_error(L, "too many jobs");
  j = &eng->jobs[eng->njobs];
  memset(j, 0, sizeof *j);
  j->eng = eng;
  j->n = (long)luaL_checkinteger(L, 2);
  j->due = (int)luaL_checkinteger(L, 3);
  j->remote = loom_remote_open(L);
  if (j->remote == NULL) return luaL_error(L, "cannot open a remote");
  lua_pushvalue(L, 1);
  j->future_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (pthread_create(&j->thread, NULL, job_thread, j) != 0) {
    loom_remote_release(j->remote);
    return luaL_error(L, "cannot start a thread");
  }
  eng->njobs++;
  return 0;
}

/* At the start of a frame: let the jobs due now post, and wait for them
 * (their post is queued when the thread ends; this step runs it). */
static void deliver_jobs(engine *eng, int frame) {
  int i;
  for (i = 0; i < eng->njobs; i++) {
    job *j = &eng->jobs[i];
    if (j->due != frame) continue;
    pthread_mutex_lock(&mu);
    j->go = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(j->thread, NULL);
  }
}

/* ---- the error hook ---------------------------------------------------- */

static void error_hook(void *ud, lua_State *L, int err_idx,
                       const char *task_name) {
  engine *eng = (engine *)ud;
  const char *msg = lua_tostring(L, err_idx);
  printf("[%s] error hook: task \"%s\" failed: %s\n", eng->name, task_name,
         msg != NULL ? msg : "(not a string)");
}

/* ---- driving a runtime --------------------------------------------------- */

static void die(engine *eng, const char *what, int status) {
  fprintf(stderr, "host: %s %s failed (%d): %s\n", eng->name, what, status,
          lua_gettop(eng->L) > 0 ? luaL_tolstring(eng->L, -1, NULL) : "");
  exit(1);
}

/* Call game[fn](engine_table). */
static void call_game(engine *eng, const char *fn) {
  lua_State *L = eng->L;
  int st;
  lua_rawgeti(L, LUA_REGISTRYINDEX, eng->game_ref);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, eng);
  lua_pushcclosure(L, l_start_job, 1);
  lua_setfield(L, -2, "start_job");
  st = lua_pcall(L, 1, 0, 0);
  if (st != LUA_OK) die(eng, fn, st);
}

static void open_engine(engine *eng, const char *name, const char *script,
                        const char *src, size_t len) {
  loom_config cfg;
  lua_State *L;
  int st;
  memset(eng, 0, sizeof *eng);
  eng->name = name;
  eng->L = L = lua_newstate(count_alloc, &eng->mem);
  luaL_openlibs(L);
  if (loom_preload(L) != LOOM_OK) die(eng, "loom_preload", 0);
  memset(&cfg, 0, sizeof cfg);
  cfg.size = sizeof cfg;
  cfg.clock = LOOM_CLOCK_MANUAL;  /* game time: moved by loom_advance */
  cfg.on_error = error_hook;
  cfg.error_ud = eng;
  cfg.wake = wake_hook;
  if ((st = loom_open(L, &cfg)) != LOOM_OK) die(eng, "loom_open", st);
  st = luaL_loadbuffer(L, src, len, script);
  if (st == LUA_OK) st = lua_pcall(L, 0, 1, 0);
  if (st != LUA_OK) die(eng, "loading the game", st);
  eng->game_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void close_engine(engine *eng) {
  int st, i;
  /* Cancel what is left (the background group), run its cleanup. */
  if ((st = loom_close(eng->L, 0.1)) != LOOM_OK) die(eng, "loom_close", st);
  for (i = 0; i < eng->njobs; i++)
    if (!eng->jobs[i].go) pthread_join(eng->jobs[i].thread, NULL);
  lua_close(eng->L);
  printf("[%s] Lua memory after lua_close: %zu bytes\n", eng->name,
         eng->mem.bytes);
}

static double budget;             /* --times: 0.002 s */
static double step_times[FRAMES]; /* --times: the game's step durations */

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void step(engine *eng, int frame) {
  int ready = 0, st;
  double t0 = wall();
  st = loom_step(eng->L, budget, MAX_RESUMES, &ready);
  if (eng->name[0] == 'g') step_times[frame - 1] = wall() - t0;
  if (st != LOOM_OK) die(eng, "loom_step", st);
  if (frame <= 3)
    printf("[%s] frame %d: step left %d tasks ready for the next one\n",
           eng->name, frame, ready);
}

static void advance(engine *eng, int frame) {
  /* Game time is frame / FPS: adding 1/60 each frame would drift. */
  int st = loom_advance(eng->L, (double)frame / FPS - loom_now(eng->L));
  if (st != LOOM_OK) die(eng, "loom_advance", st);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = (char *)malloc((size_t)n + 1);
  if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  *len = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  engine game, menu;
  size_t len;
  char *src;
  int frame;
  if (argc == 3 && strcmp(argv[2], "--times") == 0) {
    budget = 0.002;
  } else if (argc != 2) {
    fprintf(stderr, "usage: host_60fps path/to/host_60fps.lua [--times]\n");
    return 2;
  }
  src = read_file(argv[1], &len);
  if (src == NULL) {
    perror(argv[1]);
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  open_engine(&game, "game", "@host_60fps.lua", src, len);
  open_engine(&menu, "menu", "@host_60fps.lua", src, len);
  free(src);
  call_game(&game, "load_level");
  call_game(&game, "start_background");
  call_game(&menu, "start_menu");

  for (frame = 1; frame <= FRAMES; frame++) {
    deliver_jobs(&game, frame);
    step(&game, frame);
    step(&menu, frame);
    if (frame == UNLOAD_FRAME) call_game(&game, "unload_level");
    advance(&game, frame);
    advance(&menu, frame);
  }
  printf("[game] after %d frames: t = %.3f, next deadline at t = %.3f, "
         "wait %d ms\n", FRAMES, loom_now(game.L), loom_next_deadline(game.L),
         loom_timeout_ms(game.L));
  printf("[game] the wake hook was called %d times\n", wakes);
  close_engine(&game);
  close_engine(&menu);
  if (budget > 0) {
    qsort(step_times, FRAMES, sizeof step_times[0], cmp_double);
    fprintf(stderr, "| %d | %.0f us | %.0f us | %.0f us | %.0f us |\n",
            FRAMES, budget * 1e6, step_times[FRAMES / 2] * 1e6,
            step_times[FRAMES * 99 / 100] * 1e6, step_times[FRAMES - 1] * 1e6);
  }
  printf("[game] a post after close: %s\n",
         loom_remote_post(NULL, job_done, NULL) == LOOM_ERRARG ?
         "refused" : "accepted");
  return 0;
}
