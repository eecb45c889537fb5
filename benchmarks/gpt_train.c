/* benchmarks/gpt_train: mforge's GPT training step vs PyTorch's, side by side.
 * For each shape: writes one set of initial weights and batches, checks that both sides
 * compute the same first and last loss on them (validation before timing), then runs the
 * two sides alternately (A B A B ...) in separate processes and reports medians: ms/step,
 * tokens/s, peak RSS, and the median of the per-round speed ratios.
 *   gpt_train [--shapes tiny,124m] [--T 64,256] [--B 4|max] [--B-cap 128] [--rounds 3] [--steps 4]
 *             [--warmup 2] [--threads 2] [--device cpu|cuda] [--precision fp32|bf16]
 *             [--torch-compile] [--no-torch] [--cuda-graph] [--tf32]
 *   gpt_train --worker DIR ...   (internal: one timed run of our side)
 * --cuda-graph (with --device cuda): our micro-step replayed as a CUDA graph after the first
 * step (config key cuda_graph; the PyTorch side is unchanged). --tf32 (with --device cuda,
 * fp32): fp32 matmuls on TF32 tensor cores on both sides (config key tf32; PyTorch's
 * allow_tf32); the validation bound widens to TF32's.
 * --B max (with --device cuda): the largest micro-batch that fits, a power of two from --B-cap
 * down: ours found by trial runs (one process each: allocation is all at the start and in the
 * first step), PyTorch's in one process from ours down, catching its out-of-memory error;
 * both sides are timed at the smaller of the two, per shape and T.
 * Environment: MF_PYTHON (default /usr/bin/python3) runs the PyTorch side; MF_ROOT (default: the
 * source tree it was built from) holds benchmarks/ref/gpt_train_torch.py.
 * Exit status 1 when a side failed or the two disagreed on the losses (no valid figure).
 * --device cuda: both sides on the GPU (fp32: TF32 off on both unless --tf32; --precision bf16: ours bf16
 * mixed precision, PyTorch autocast bf16 + fused AdamW, --torch-compile adds torch.compile);
 * memory columns are peak device memory, and MFU (model FLOPs incl. attention / 989 TFLOP/s,
 * H100/H200 dense bf16) is printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/h5.h"
#include "core/optim.h"
#include "core/progress.h"
#include "core/threads.h"
#include "core/device.h"
#include "kernels/backend.h"
#include "trainers/checkpoint.h"
#include "trainers/gpt.h"
#include "trainers/train.h"

typedef struct shape {
  const char *name;
  int L, NH, C, V;
} shape;

/* toy: small enough for the emulated CUDA backend (gpt_train_emu's tests), GPT-2's vocabulary
 * otherwise */
static const shape shapes[] = {{"tiny", 4, 4, 128, 50257}, {"124m", 12, 12, 768, 50257}, {"toy", 2, 2, 64, 256}};

typedef struct opts {
  char shapes[64], Ts[64];
  int B, B_cap, rounds, steps, warmup, threads, torch; /* B 0: --B max */
  char device[8], precision[8];
  int compile, graph, tf32;
} opts;

/* ---- our side, in a child process ---- */
/* Bsub > 0: the first Bsub rows of each batch (--B max's trials) */
static int worker(const char *dir, int threads, int warmup, int steps, const char *device, const char *precision,
                  int graph, int tf32, int Bsub) {
  mf_set_threads(threads);
  const mf_backend *be = &mf_backend_cpu;
  if (strcmp(device, "cuda") == 0) {
    char why[600];
    be = mf_device_cuda_backend(strcmp(precision, "bf16") == 0, why, sizeof why);
    if (!be) return fprintf(stderr, "gpt_train: %s\n", why), 1;
    if (tf32 && be->set_tf32) be->set_tf32(1);
  }
  char p[512];
  snprintf(p, sizeof p, "%s/batches.h5", dir);
  mf_h5 *h;
  if (mf_h5_open(&h, p) != MF_OK) return fprintf(stderr, "%s\n", mf_error_message()), 1;
  int64_t a[6];
  const char *keys[] = {"n_layer", "n_head", "n_embd", "vocab_size", "block_size", "nbatch"};
  for (int i = 0; i < 6; i++) mf_h5_get_i64(h, "/", keys[i], &a[i]);
  int nd;
  int64_t shp[4];
  mf_h5_shape(h, "/idx", &nd, shp);
  int NB = (int)shp[0], B = (int)shp[1], T = (int)shp[2], Bfile = B;
  if (Bsub > 0 && Bsub < B) B = Bsub;
  int32_t *idx = malloc(sizeof(int32_t) * NB * Bfile * T), *tgt = malloc(sizeof(int32_t) * NB * Bfile * T);
  mf_h5_read(h, "/idx", MF_I32, idx, 3, shp);
  mf_h5_read(h, "/tgt", MF_I32, tgt, 3, shp);
  mf_h5_close(h);
  mf_model_cfg mc = {.family = "gpt", .n_layer = (int)a[0], .n_head = (int)a[1], .n_embd = (int)a[2],
                     .vocab_size = (int)a[3], .block_size = (int)a[4]};
  mf_gpt *g;
  snprintf(p, sizeof p, "%s/init.h5", dir);
  if (mf_gpt_create(&g, &mc) != MF_OK || mf_ckpt_load_params(p, &g->params) != MF_OK)
    return fprintf(stderr, "%s\n", mf_error_message()), 1;
  mf_train_cfg tc;
  mf_config cfg;
  mf_config_defaults(&cfg);
  tc = cfg.train;
  tc.lr = 1e-4f; /* constant: no warmup, as the torch side */
  tc.min_lr = 1e-4f;
  tc.warmup_steps = 0;
  tc.weight_decay = 0.1f;
  mf_adamw opt;
  mf_adamw_init(&opt, g->params.numel);
  if (mf_params_place(&g->params, be) != MF_OK || mf_adamw_place(&opt, be) != MF_OK)
    return fprintf(stderr, "%s\n", mf_error_message()), 1;
  mf_ctx *c = mf_ctx_create(be, 1 << 20); /* grows in the first step to what B needs (--B max) */
  mf_step_graph *sg = NULL;
  if (graph && mf_step_graph_create(&sg, be) != MF_OK) return fprintf(stderr, "%s\n", mf_error_message()), 1;
  double first = 0, last = 0;
  printf("{\"ms\":[");
  for (int s = 0; s < warmup + steps; s++) {
    int32_t *pi = idx + (size_t)(s % NB) * Bfile * T, *pt = tgt + (size_t)(s % NB) * Bfile * T;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = mf_now(), loss, norm;
    if (mf_gpt_train_step_graph(sg, g, c, &opt, be, &tc, s + 1, 1, &pi, &pt, B, T, &loss, &norm) != MF_OK)
      return fprintf(stderr, "%s\n", mf_error_message()), 1;
    float sync;
    be->to_host(&sync, mf_params_compute_data(&g->params), sizeof sync); /* the update has run */
    double ms = (mf_now() - t0) * 1e3;
    getrusage(RUSAGE_SELF, &r1);
    if (getenv("MF_BENCH_FAULTS")) fprintf(stderr, "step %d: %.1f ms, %ld page faults\n", s + 1, ms, r1.ru_minflt - r0.ru_minflt);
    if (s == 0) first = loss;
    last = loss;
    if (s >= warmup) printf("%s%.3f", s > warmup ? "," : "", ms);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long dev_kb = be->device == MF_CUDA ? (long)(mf_device_mem_used() / 1024) : 0; /* nothing is freed in a step */
  mf_step_graph_free(sg);
  printf("],\"loss_first\":%.7g,\"loss_last\":%.7g,\"peak_rss_kb\":%ld,\"dev_kb\":%ld}\n", first, last,
         ru.ru_maxrss, dev_kb);
  return 0;
}

/* ---- orchestration ---- */
typedef struct result {
  double ms_med, loss_first, loss_last;
  long rss_kb, dev_kb;
  int ok;
} result;

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* runs argv with env additions, its stdout into buf[cap]; quiet: stderr to /dev/null (the
 * expected out-of-memory errors of --B max's trials). 1 when it exited with status 0 */
static int run_capture(char *const argv[], const char *env_kv, int quiet, char *buf, size_t cap) {
  buf[0] = 0;
  int fd[2];
  if (pipe(fd) != 0) return 0;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    if (quiet && !freopen("/dev/null", "w", stderr)) _exit(127);
    if (env_kv) putenv((char *)env_kv);
    execv(argv[0], argv);
    _exit(127);
  }
  close(fd[1]);
  size_t n = 0;
  ssize_t got;
  while ((got = read(fd[0], buf + n, cap - 1 - n)) > 0) n += (size_t)got;
  buf[n] = 0;
  close(fd[0]);
  int status;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* one timed run of a side: its stdout's JSON line (per-step ms, losses, peak memory) */
static result run_side(char *const argv[], const char *env_kv) {
  result r = {0};
  char buf[65536];
  if (!run_capture(argv, env_kv, 0, buf, sizeof buf)) return r;
  char *ms = strstr(buf, "\"ms\":[");
  if (!ms) return r;
  double v[256];
  int k = 0;
  for (char *p = ms + 6; *p && *p != ']' && k < 256;) {
    v[k++] = strtod(p, &p);
    if (*p == ',') p++;
  }
  char *f = strstr(buf, "\"loss_first\":"), *l = strstr(buf, "\"loss_last\":"), *rs = strstr(buf, "\"peak_rss_kb\":");
  if (!f || !l || !rs || k == 0) return r;
  r.ms_med = median(v, k);
  r.loss_first = strtod(f + 13, NULL);
  r.loss_last = strtod(l + 12, NULL);
  r.rss_kb = strtol(rs + 14, NULL, 10);
  char *dk = strstr(buf, "\"dev_kb\":");
  r.dev_kb = dk ? strtol(dk + 9, NULL, 10) : 0;
  r.ok = 1;
  return r;
}

static int prepare(const char *dir, const shape *s, int B, int T, int nbatch) {
  mf_model_cfg mc = {.family = "gpt", .n_layer = s->L, .n_head = s->NH, .n_embd = s->C, .vocab_size = s->V,
                     .block_size = 1024};
  mf_gpt *g;
  if (mf_gpt_create(&g, &mc) != MF_OK) return 0;
  mf_params_init(&g->params, 1234);
  mf_config cfg;
  mf_config_defaults(&cfg);
  cfg.model = mc;
  char p[512];
  snprintf(p, sizeof p, "%s/init.h5", dir);
  int ok = mf_ckpt_save(p, &cfg, &g->params, NULL, NULL, NULL, "export") == MF_OK;
  mf_gpt_free(g);
  size_t n = (size_t)nbatch * B * T;
  int32_t *idx = malloc(n * sizeof *idx), *tgt = malloc(n * sizeof *tgt);
  mf_rng r;
  mf_rng_seed(&r, 5, 0);
  for (size_t i = 0; i < n; i++) { /* text-like: a Zipf-ish mix of frequent ids */
    uint64_t V = (uint64_t)s->V, often = V < 2000 ? V / 4 : 2000;
    idx[i] = (int32_t)(mf_rng_below(&r, 4) ? mf_rng_below(&r, often) : mf_rng_below(&r, V));
    tgt[i] = (int32_t)(mf_rng_below(&r, 4) ? mf_rng_below(&r, often) : mf_rng_below(&r, V));
  }
  snprintf(p, sizeof p, "%s/batches.h5", dir);
  mf_h5 *h;
  ok = ok && mf_h5_create(&h, p) == MF_OK;
  if (ok) {
    int64_t vals[] = {s->L, s->NH, s->C, s->V, 1024, nbatch};
    const char *keys[] = {"n_layer", "n_head", "n_embd", "vocab_size", "block_size", "nbatch"};
    for (int i = 0; i < 6; i++) mf_h5_set_i64(h, "/", keys[i], vals[i]);
    mf_h5_write(h, "/idx", MF_I32, idx, 3, (int64_t[]){nbatch, B, T});
    mf_h5_write(h, "/tgt", MF_I32, tgt, 3, (int64_t[]){nbatch, B, T});
    ok = mf_h5_commit(h) == MF_OK;
  }
  free(idx);
  free(tgt);
  return ok;
}

/* the two sides' command lines for dir; Bsub and probe as worker() and the script's --probe */
typedef struct sides {
  char th[16], wu[16], st[16], bs[16], script[1024];
  char *ours[12], *torch[24];
} sides;

static void make_sides(sides *v, const opts *o, const char *dir, const char *self, int warmup, int steps, int Bsub,
                       const char *probe) {
  snprintf(v->th, sizeof v->th, "%d", o->threads);
  snprintf(v->wu, sizeof v->wu, "%d", warmup);
  snprintf(v->st, sizeof v->st, "%d", steps);
  snprintf(v->bs, sizeof v->bs, "%d", Bsub);
  char *ours[] = {(char *)self, "--worker", (char *)dir, v->th, v->wu, v->st, (char *)o->device, (char *)o->precision,
                  o->graph ? "graph" : "eager", o->tf32 ? "tf32" : "-", v->bs, NULL};
  memcpy(v->ours, ours, sizeof ours);
  /* MF_ROOT: the source tree when the binary runs away from the one it was built in (a GPU
   * machine given a prebuilt bundle, tests/gpu/bundle.sh); MF_PYTHON: the interpreter that
   * imports torch (Debian's /usr/bin/python3 here; a venv's on the GPU image) */
  const char *root = getenv("MF_ROOT"), *py = getenv("MF_PYTHON");
  snprintf(v->script, sizeof v->script, "%s/benchmarks/ref/gpt_train_torch.py", root && *root ? root : MF_SOURCE_DIR);
  char *torch[] = {py && *py ? (char *)py : "/usr/bin/python3", v->script, "--dir", (char *)dir, "--threads", v->th,
                   "--warmup", v->wu, "--steps", v->st, "--device", (char *)o->device, "--precision",
                   (char *)o->precision, "--compile", o->compile ? "1" : "0", "--tf32", o->tf32 ? "1" : "0",
                   probe ? "--probe" : NULL, (char *)probe, NULL};
  memcpy(v->torch, torch, sizeof torch);
}

/* --B max: the largest power of two <= B_cap at which both sides run a step and the next
 * (ours: a trial process per B, downwards; PyTorch: one process trying ours' B and down).
 * 0 when not even B=1 fits ours. */
static int find_max_B(const opts *o, const shape *s, int T, const char *self, const char *dir) {
  if (!prepare(dir, s, o->B_cap, T, 1)) return 0;
  int ours = 0, torch = 0;
  char buf[4096];
  for (int B = o->B_cap; B >= 1 && !ours; B /= 2) {
    sides v;
    make_sides(&v, o, dir, self, 1, 1, B, NULL);
    if (run_capture(v.ours, "OMP_WAIT_POLICY=PASSIVE", 1, buf, sizeof buf)) ours = B;
  }
  if (ours && o->torch) {
    char list[256] = "";
    for (int B = ours; B >= 1; B /= 2)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", B == ours ? "" : ",", B);
    sides v;
    make_sides(&v, o, dir, self, 1, 1, 0, list);
    char *f = run_capture(v.torch, "OMP_WAIT_POLICY=PASSIVE", 0, buf, sizeof buf) ? strstr(buf, "\"fits\":") : NULL;
    torch = f ? atoi(f + 7) : 0;
  }
  int B = o->torch && torch < ours ? torch : ours;
  printf("# --B max, %s T=%d: ours fits up to B=%d, torch %s%d (powers of two from %d); timing at B=%d\n", s->name,
         T, ours, o->torch ? "up to B=" : "not run, ", torch, o->B_cap, B);
  return B;
}

/* 1 when both sides ran and agreed on the losses (the figures mean something), else 0 */
static int bench_one(const opts *o, const shape *s, int T, const char *self) {
  char dir[] = "/tmp/mf_bench.XXXXXX";
  int B = o->B;
  if (!mkdtemp(dir) || (B == 0 && (B = find_max_B(o, s, T, self, dir)) == 0) ||
      !prepare(dir, s, B, T, o->warmup + o->steps)) {
    printf("%-5s T=%-4d %s\n", s->name, T, B == 0 ? "no micro-batch fits both sides (the line above)" : "prepare failed");
    if (B) printf("# %s\n", mf_error_message());
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return 0;
  }
  sides v;
  make_sides(&v, o, dir, self, o->warmup, o->steps, 0, NULL);
  char **ours = v.ours, **torch = v.torch;
  int gpu = strcmp(o->device, "cuda") == 0;
  double a_ms[32], b_ms[32], ratio[32];
  long a_rss = 0, b_rss = 0;
  int n = 0, valid = 1;
  result a0 = {0}, b0 = {0};
  for (int r = 0; r < o->rounds && r < 32; r++) {
    result a = run_side(ours, "OMP_WAIT_POLICY=PASSIVE"); /* mforge's default (trainers/main.c) */
    result b = o->torch ? run_side(torch, "OMP_WAIT_POLICY=PASSIVE") : (result){0};
    if (!a.ok || (o->torch && !b.ok)) {
      printf("%-5s T=%-4d a side failed (ours ok=%d, torch ok=%d)\n", s->name, T, a.ok, b.ok);
      valid = 0;
      break;
    }
    if (r == 0) {
      a0 = a;
      b0 = b;
      if (o->torch) { /* same weights, same batches: the same losses, or the timing means nothing */
        double e1 = fabs(a.loss_first - b.loss_first) / fabs(b.loss_first);
        double e2 = fabs(a.loss_last - b.loss_last) / fabs(b.loss_last);
        /* bf16 (and TF32 operands): two roundings apart */
        double t1 = strcmp(o->precision, "bf16") == 0 || o->tf32 ? 1e-2 : 1e-4, t2 = 10 * t1;
        printf("# validate %s T=%d: first loss %.6f vs %.6f (rel %.1e), last %.6f vs %.6f (rel %.1e) %s\n", s->name,
               T, a.loss_first, b.loss_first, e1, a.loss_last, b.loss_last, e2,
               e1 <= t1 && e2 <= t2 ? "OK" : "MISMATCH");
        if (!(e1 <= t1 && e2 <= t2)) valid = 0;
      }
    }
    a_ms[n] = a.ms_med;
    b_ms[n] = b.ms_med;
    ratio[n] = o->torch ? b.ms_med / a.ms_med : 0;
    long am_kb = gpu ? a.dev_kb : a.rss_kb, bm_kb = gpu ? b.dev_kb : b.rss_kb;
    if (am_kb > a_rss) a_rss = am_kb;
    if (bm_kb > b_rss) b_rss = bm_kb;
    n++;
  }
  (void)a0;
  (void)b0;
  if (n > 0) {
    double am = median(a_ms, n), bm = median(b_ms, n), rm = median(ratio, n);
    double tok = (double)B * T;
    if (o->torch) {
      printf("%-5s %5d %3d %10.1f %10.1f %9.0f %9.0f %9.0f %9.0f %8.2fx %s\n", s->name, T, B, am, bm,
             tok / am * 1e3, tok / bm * 1e3, a_rss / 1024.0, b_rss / 1024.0, rm, valid ? "" : "(NOT VALIDATED)");
    } else {
      printf("%-5s %5d %3d %10.1f %10s %9.0f %9s %9.0f %9s\n", s->name, T, B, am, "-", tok / am * 1e3, "-",
             a_rss / 1024.0, "-");
    }
    if (gpu) { /* 3x the forward FLOPs (trainers/gpt.c's count, causal attention halved) */
      double C = s->C, L = s->L, fwd = L * (2 * 12 * C * C + 2 * C * T) + 2 * C * ((s->V + 127) / 128 * 128);
      printf("# MFU vs 989 TFLOP/s: ours %.1f%%, torch %.1f%% (%.2f GFLOP per token)\n",
             100 * 3 * fwd * tok / am * 1e3 / 989e12, o->torch ? 100 * 3 * fwd * tok / bm * 1e3 / 989e12 : 0.0,
             3 * fwd / 1e9);
    }
    fflush(stdout);
  }
  if (getenv("MF_BENCH_KEEP")) { /* for profiling: gpt_train --worker DIR ... */
    printf("# kept %s\n", dir);
  } else {
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }
  return valid && n > 0;
}

int main(int argc, char **argv) {
  if (argc >= 8 && strcmp(argv[1], "--worker") == 0)
    return worker(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), argv[6], argv[7],
                  argc >= 9 && strcmp(argv[8], "graph") == 0, argc >= 10 && strcmp(argv[9], "tf32") == 0,
                  argc >= 11 ? atoi(argv[10]) : 0);
  opts o = {.B = 4, .B_cap = 128, .rounds = 3, .steps = 4, .warmup = 2, .threads = 2, .torch = 1, .device = "cpu",
            .precision = "fp32"};
  snprintf(o.shapes, sizeof o.shapes, "tiny,124m");
  snprintf(o.Ts, sizeof o.Ts, "64,256");
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : "";
    if (strcmp(argv[i], "--shapes") == 0) snprintf(o.shapes, sizeof o.shapes, "%s", v), i++;
    else if (strcmp(argv[i], "--T") == 0) snprintf(o.Ts, sizeof o.Ts, "%s", v), i++;
    else if (strcmp(argv[i], "--B") == 0) o.B = strcmp(v, "max") == 0 ? 0 : atoi(v) > 0 ? atoi(v) : -1, i++;
    else if (strcmp(argv[i], "--B-cap") == 0) o.B_cap = atoi(v), i++;
    else if (strcmp(argv[i], "--rounds") == 0) o.rounds = atoi(v), i++;
    else if (strcmp(argv[i], "--steps") == 0) o.steps = atoi(v), i++;
    else if (strcmp(argv[i], "--warmup") == 0) o.warmup = atoi(v), i++;
    else if (strcmp(argv[i], "--threads") == 0) o.threads = atoi(v), i++;
    else if (strcmp(argv[i], "--device") == 0 && (strcmp(v, "cpu") == 0 || strcmp(v, "cuda") == 0))
      snprintf(o.device, sizeof o.device, "%s", v), i++;
    else if (strcmp(argv[i], "--precision") == 0 && (strcmp(v, "fp32") == 0 || strcmp(v, "bf16") == 0))
      snprintf(o.precision, sizeof o.precision, "%s", v), i++;
    else if (strcmp(argv[i], "--torch-compile") == 0) o.compile = 1;
    else if (strcmp(argv[i], "--no-torch") == 0) o.torch = 0;
    else if (strcmp(argv[i], "--cuda-graph") == 0) o.graph = 1;
    else if (strcmp(argv[i], "--tf32") == 0) o.tf32 = 1;
    else {
      fprintf(stderr, "usage: gpt_train [--shapes tiny,124m] [--T 64,256] [--B 4|max] [--B-cap 128] [--rounds 3] [--steps 4] "
                      "[--warmup 2] [--threads 2] [--device cpu|cuda] [--precision fp32|bf16] [--torch-compile] [--no-torch] [--cuda-graph] [--tf32]\n");
      return 2;
    }
  }
  if (o.tf32 && (strcmp(o.device, "cuda") != 0 || strcmp(o.precision, "fp32") != 0)) {
    fprintf(stderr, "gpt_train: --tf32 needs --device cuda and --precision fp32\n");
    return 2;
  }
  if (o.graph && strcmp(o.device, "cuda") != 0) {
    fprintf(stderr, "gpt_train: --cuda-graph needs --device cuda\n");
    return 2;
  }
  if (strcmp(o.precision, "bf16") == 0 && strcmp(o.device, "cuda") != 0) {
    fprintf(stderr, "gpt_train: --precision bf16 needs --device cuda\n");
    return 2;
  }
  if (o.B < 0 || o.B_cap < 1 || o.B_cap > 4096 || o.rounds < 1 || o.steps < 1 || o.warmup < 0 || o.threads < 1) {
    fprintf(stderr, "gpt_train: --B (a number or max), --B-cap (up to 4096), --rounds, --steps, --threads must be >= 1\n");
    return 2;
  }
  if (o.B == 0 && strcmp(o.device, "cuda") != 0) {
    fprintf(stderr, "gpt_train: --B max needs --device cuda (what fits in device memory; on the CPU give --B N)\n");
    return 2;
  }
  char self[1024];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = 0;
  char bdesc[32];
  if (o.B) snprintf(bdesc, sizeof bdesc, "B=%d", o.B);
  else snprintf(bdesc, sizeof bdesc, "B=max (<= %d)", o.B_cap);
  int cpu = strcmp(o.device, "cpu") == 0;
  printf("# gpt_train: %s%s AdamW training step on %s, %d threads each side, %s, median of %d rounds x %d steps "
         "(A B alternating); both sides OMP_WAIT_POLICY=PASSIVE%s%s%s%s%s\n", o.precision,
         o.tf32 ? " (TF32 matmuls)" : "",
         o.device, o.threads, bdesc, o.rounds, o.steps, strcmp(o.device, "cuda") == 0 ? "; MiB = peak device memory" : "",
         o.graph ? "; ours as a CUDA graph" : "", cpu ? "; ours on " : "", cpu ? mf_blas_kernels() : "",
         cpu && getenv("MF_BLAS_REPLACED") ? ", OPENBLAS_CORETYPE exported to PyTorch too" : "");
  printf("%-5s %5s %3s %10s %10s %9s %9s %9s %9s %9s\n", "shape", "T", "B", "ours_ms", "torch_ms", "ours_tok/s",
         "torch_tok/s", "ours_MiB", "torch_MiB", "speedup");
  char sh[64];
  int failed = 0;
  snprintf(sh, sizeof sh, "%s", o.shapes);
  for (char *s = strtok(sh, ","); s; s = strtok(NULL, ",")) {
    const shape *sp = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
      if (strcmp(shapes[i].name, s) == 0) sp = &shapes[i];
    if (!sp) {
      fprintf(stderr, "gpt_train: unknown shape '%s' (tiny, 124m, toy)\n", s);
      return 2;
    }
    char ts[64];
    snprintf(ts, sizeof ts, "%s", o.Ts);
    char *save = NULL;
    for (char *t = strtok_r(ts, ",", &save); t; t = strtok_r(NULL, ",", &save))
      failed += !bench_one(&o, sp, atoi(t), self);
  }
  return failed ? 1 : 0;
}
