/* Every parallel mode computes what one process computes. Run under mpirun with 1, 2 or 4
 * ranks: each rank first trains the single-process reference itself (one process, the
 * whole global batch), then each layout this world size allows, 10 steps from the same
 * initial weights over the same windows of a synthetic token stream, through the real
 * loader, mf_dist and mf_gpt_train_step_dist. Checks per layout:
 *   - losses of every step: relative difference <= 1e-5
 *   - parameters after 10 steps: relative L2 over all of them <= 1e-5, and every element
 *     within 1e-5 x its tensor's largest value + 1e-5, except the key block of
 *     attn.c_attn.bias: its gradient is zero in exact arithmetic (q . b_k adds the same
 *     constant to every score of a query, which softmax ignores), so what it gets is
 *     rounding noise that Adam normalises into steps of ~lr either way; it still counts
 *     in the relative L2
 *   - data-parallel replicas bitwise identical; replicated tensor-parallel tensors too
 *   - ZeRO-1: optimizer state per rank = 1/dp of plain data parallelism (to a bucket's
 *     padding)
 *   - overlapped DP, plain and ZeRO-1, alone and with TP, reduce the tied embedding first
 *     on every step (mf_dp_tie_early), and on none over MF_DP_TIE_EARLY's bound
 *   - a checkpoint saved at this layout loads into one process (whole tensors) as exactly
 *     this layout's parameters and optimizer state
 * A small vocabulary (300) keeps the test fast and puts tp = 4 on a rank with no real
 * vocabulary rows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/optim.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/dp.h"
#include "parallel/grid.h"
#include "tests/test.h"
#include "trainers/checkpoint.h"
#include "trainers/train.h"

enum { L = 2, NH = 4, C = 32, V = 300, T = 16, GLOBAL = 8, B = 2, STEPS = 10, NTOK = 6000 };
#define TOL 1e-5

static mf_config cfg;
static mf_token_set data;
static mf_comm *world;

typedef struct result {
  double loss[STEPS];
  mf_gpt *g;      /* the reference (whole) model after STEPS */
  mf_adamw opt;
} result;

static void setup_cfg(void) {
  mf_config_defaults(&cfg);
  cfg.model = (mf_model_cfg){.family = "gpt", .n_layer = L, .n_head = NH, .n_embd = C, .block_size = T,
                             .vocab_size = V};
  mf_train_cfg *tc = &cfg.train;
  tc->steps = STEPS;
  tc->batch_size = GLOBAL;
  tc->micro_batch_size = B;
  tc->seq_len = T;
  tc->lr = 1e-2f;
  tc->min_lr = 1e-3f;
  tc->warmup_steps = 2;
  tc->grad_clip = 1.0f;
  /* a stream with structure the model picks up in a few steps: a noisy counter over 40
   * ids scattered over the vocabulary (every tensor-parallel slice holds some) */
  data.n = NTOK;
  data.tok = malloc(NTOK * sizeof *data.tok);
  mf_rng r;
  mf_rng_seed(&r, 5, 0);
  int64_t perm[V];
  mf_rng_permutation(&r, perm, V);
  for (int i = 0; i < NTOK; i++) data.tok[i] = (uint16_t)perm[(i * 7 + mf_rng_below(&r, 5)) % 40];
}

/* STEPS steps of `tp` x (world / tp) ranks (dist NULL: one process); losses into loss */
static mf_status train(mf_par *par, int zero, float bucket_mb, double *loss, mf_gpt **gout, mf_adamw *opt,
                       mf_dist *dist) {
  mf_parallel_cfg pc = {.tp = par ? par->tp_size : 1, .bucket_mb = bucket_mb, .zero = zero};
  mf_gpt *g;
  MF_TRY(mf_gpt_create_tp(&g, &cfg.model, par ? par->tp : NULL));
  mf_status st = mf_gpt_init_params(g, 11);
  if (st == MF_OK && par) st = mf_dist_init(dist, par, g, &pc, &mf_backend_cpu, opt);
  else if (st == MF_OK) st = mf_adamw_init(opt, g->params.numel);
  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 1 << 20);
  mf_loader l;
  if (st == MF_OK) st = mf_loader_init(&l, &data, T, 3, 1);
  int dp = par ? par->dp_size : 1, q = par ? par->dp_rank : 0, accum = GLOBAL / (B * dp);
  int32_t *in[GLOBAL / B], *tg[GLOBAL / B];
  for (int k = 0; k < accum; k++) {
    in[k] = malloc(B * T * sizeof(int32_t));
    tg[k] = malloc(B * T * sizeof(int32_t));
  }
  for (int s = 0; s < STEPS && st == MF_OK; s++) {
    mf_loader_begin_batch(&l, GLOBAL);
    for (int k = 0; k < accum; k++) mf_loader_fill(&l, mf_loader_rank_offset(k, dp, q, B), B, in[k], tg[k]);
    double norm;
    st = mf_gpt_train_step_dist(g, c, opt, &mf_backend_cpu, &cfg.train, s + 1, accum, in, tg, B, T,
                                par ? dist : NULL, &loss[s], &norm);
    mf_loader_advance(&l, GLOBAL);
  }
  for (int k = 0; k < accum; k++) {
    free(in[k]);
    free(tg[k]);
  }
  mf_loader_free(&l);
  mf_ctx_destroy(c);
  *gout = g;
  return st;
}

/* reduce a double over the world */
static double allmax(double v) {
  mf_comm_allreduce(world, &v, &v, 1, MF_C_F64, MF_RED_MAX);
  return v;
}

/* 1 when buf is bitwise the same on every rank of comm */
static int identical(mf_comm *comm, const float *buf, size_t n) {
  if (mf_comm_size(comm) == 1) return 1;
  float *mx = malloc(n * sizeof *mx), *mn = malloc(n * sizeof *mn);
  mf_comm_allreduce(comm, buf, mx, n, MF_C_F32, MF_RED_MAX);
  mf_comm_allreduce(comm, buf, mn, n, MF_C_F32, MF_RED_MIN);
  int same = memcmp(mx, buf, n * sizeof *buf) == 0 && memcmp(mn, buf, n * sizeof *buf) == 0;
  int all = same;
  mf_comm_allreduce(comm, &same, &all, 1, MF_C_I32, MF_RED_MIN);
  free(mx);
  free(mn);
  return all;
}

/* parameter i of a whole (one-process) model laid out as the whole tensor of layout
 * `want` (the padded vocabulary grows with tp: real rows copied, the rest zero) */
static float *as_whole(const mf_gpt *w, int i, const mf_tp_param *want) {
  size_t total = (size_t)mf_tp_numel(want), cols = total / (size_t)want->shape[0];
  float *buf = calloc(total, sizeof *buf);
  memcpy(buf, w->params.p[i].t.data, (size_t)want->rows * cols * sizeof *buf);
  return buf;
}

static void run_layout(const result *ref, int tp, int zero, float bucket_mb, const char *name) {
  mf_par par;
  CHECK(mf_par_init(&par, world, tp) == MF_OK);
  double loss[STEPS];
  mf_gpt *g = NULL;
  mf_adamw opt;
  mf_dist dist;
  mf_status st = train(&par, zero, bucket_mb, loss, &g, &opt, &dist);
  CHECKF(st == MF_OK, "%s: %s", name, mf_error_message());
  if (st != MF_OK) exit(mf_test_report("test_parallel"));
  /* overlapped DP (plain or ZeRO-1; with TP, each rank's vocabulary slice) reduces the
   * tied wte first and adds the embedding's rows after (mf_dp_tie_early): every step
   * while B*T*ranks is within the bound (the rows wte holds here, half of them under
   * ZeRO-1); one data-parallel rank: never */
  long tied = dist.dp ? mf_dp_tied_steps(dist.dp) : 0;
  const char *bound = getenv("MF_DP_TIE_EARLY"); /* the most rows (B*T*ranks) tied early */
  long rows = (long)B * T * par.dp_size, vp = (long)g->wte->shape[0];
  long max_rows = bound ? atol(bound) : zero ? vp / 2 : vp;
  int want_tied = bucket_mb > 0 && par.dp_size > 1 && rows <= max_rows;
  CHECKF(tied == (want_tied ? STEPS : 0), "%s: %ld steps with the tied embedding reduced early (want %d)", name, tied,
         want_tied ? STEPS : 0);

  double lerr = 0;
  for (int s = 0; s < STEPS; s++) lerr = fmax(lerr, fabs(loss[s] - ref->loss[s]) / fabs(ref->loss[s]));
  lerr = allmax(lerr);

  /* parameters: this rank's slices against the same slices of the reference */
  double num = 0, den = 0, elem = 0;
  const char *worst = "";
  for (int i = 0; i < g->params.n; i++) {
    mf_param *p = &g->params.p[i];
    size_t n = (size_t)mf_numel(&p->t);
    float *mine = malloc(n * sizeof *mine), *whole = as_whole(ref->g, i, &g->whole[i]);
    mf_tp_extract(&g->whole[i], p, tp, par.tp_rank, whole, mine);
    free(whole);
    double mx = 1e-30, md = 0;
    for (size_t j = 0; j < n; j++) mx = fmax(mx, fabs(mine[j]));
    int kbias = strstr(p->name, "attn.c_attn.bias") != NULL;
    for (size_t j = 0; j < n; j++) {
      double d = fabs((double)((float *)p->t.data)[j] - mine[j]);
      if (!(kbias && j >= n / 3 && j < 2 * n / 3)) md = fmax(md, d - TOL * mx - TOL); /* > 0: outside */
      num += dist.norm_w[i] * d * d;
      den += dist.norm_w[i] * (double)mine[j] * mine[j];
    }
    if (md > elem) {
      elem = md;
      worst = p->name;
    }
    free(mine);
  }
  double sums[2] = {num, den};
  mf_comm_allreduce(par.tp_host, sums, sums, 2, MF_C_F64, MF_RED_SUM);
  double rel = sqrt(sums[0] / sums[1]);
  double elem_all = allmax(elem);

  int dp_same = identical(par.dp_host, g->params.data, g->params.numel);
  int tp_same = 1;
  for (int i = 0; i < g->params.n; i++)
    if (g->whole[i].split == MF_SPLIT_NONE)
      tp_same &= identical(par.tp_host, g->params.p[i].t.data, (size_t)mf_numel(&g->params.p[i].t));

  double mib = (double)mf_adamw_bytes(&opt) / (1 << 20);
  double mib_max = allmax(mib), plain_mib = 8.0 * (double)g->params.numel / (1 << 20); /* m, v of this slice */

  /* a checkpoint of this layout, loaded whole into one process, is this layout */
  char path[256];
  snprintf(path, sizeof path, "/tmp/mf_test_parallel_%s.h5", name);
  mf_train_state ts = {.step = STEPS, .data_seed = 3, .loss = loss[STEPS - 1], .val_loss = NAN};
  CHECK(mf_ckpt_save_par(path, &cfg, &g->params, g->whole, &opt, &ts, "train", &par) == MF_OK);
  mf_comm_barrier(world);
  mf_gpt *w;
  mf_adamw wopt;
  mf_train_state ts2;
  CHECK(mf_gpt_create(&w, &cfg.model) == MF_OK);
  CHECK(mf_adamw_init(&wopt, w->params.numel) == MF_OK);
  CHECK(mf_ckpt_load_par(path, &w->params, w->whole, &wopt, &ts2, NULL) == MF_OK);
  CHECK(ts2.step == STEPS && ts2.loss == loss[STEPS - 1]);
  int exact = 1;
  const mf_adamw_range *rg = opt.r;
  for (int i = 0; i < g->params.n; i++) {
    mf_param *p = &g->params.p[i];
    size_t n = (size_t)mf_numel(&p->t), a = p->offset;
    float *mine = malloc(n * sizeof *mine), *whole = as_whole(w, i, &g->whole[i]);
    mf_tp_extract(&g->whole[i], p, tp, par.tp_rank, whole, mine);
    exact &= memcmp(mine, p->t.data, n * sizeof *mine) == 0;
    for (int which = 0; which < 2; which++) {
      float *wstate = which ? wopt.v : wopt.m, *state = which ? opt.v : opt.m;
      size_t cols = (size_t)mf_tp_numel(&g->whole[i]) / (size_t)g->whole[i].shape[0];
      memcpy(whole, wstate + w->params.p[i].offset, (size_t)g->whole[i].rows * cols * sizeof *whole);
      mf_tp_extract(&g->whole[i], p, tp, par.tp_rank, whole, mine);
      for (int k = 0; k < opt.nr; k++) { /* this rank's pieces only */
        size_t lo = a > rg[k].lo ? a : rg[k].lo, hi = a + n < rg[k].hi ? a + n : rg[k].hi;
        if (lo < hi) exact &= memcmp(mine + (lo - a), state + rg[k].state + (lo - rg[k].lo), (hi - lo) * 4) == 0;
      }
    }
    free(whole);
    free(mine);
  }
  int exact_all = exact;
  mf_comm_allreduce(world, &exact, &exact_all, 1, MF_C_I32, MF_RED_MIN);
  mf_comm_barrier(world);
  if (par.rank == 0) unlink(path);

  if (par.rank == 0)
    printf("%-28s dp %d x tp %d: loss rel err %.2e, params rel L2 %.2e, worst element excess %.1e (%s), "
           "replicas %s/%s, optimizer %.3f MiB/rank, checkpoint %s\n",
           name, par.dp_size, tp, lerr, rel, elem_all, elem_all > 0 ? worst : "-", dp_same ? "same" : "DIFFER",
           tp_same ? "same" : "DIFFER", mib_max, exact_all ? "exact" : "DIFFERS");
  CHECKF(lerr <= TOL, "%s: losses differ by %.3g (relative)", name, lerr);
  CHECKF(rel <= TOL, "%s: parameters differ by %.3g (relative L2)", name, rel);
  CHECKF(elem_all <= 0, "%s: parameter %s off by %.3g beyond tolerance", name, worst, elem_all);
  CHECKF(dp_same, "%s: data-parallel replicas differ", name);
  CHECKF(tp_same, "%s: replicated tensor-parallel parameters differ between ranks", name);
  CHECKF(exact_all, "%s: checkpoint round trip changed parameters or optimizer state", name);
  if (par.rank == 0 && zero)
    printf("%-28s optimizer state per rank: %.3f MiB with ZeRO-1, %.3f MiB without (dp %d)\n", "", mib_max,
           plain_mib, par.dp_size);
  if (zero)
    CHECKF(mib_max <= plain_mib / par.dp_size * 1.02 + 0.01 && mib_max >= plain_mib / par.dp_size * 0.98,
           "%s: ZeRO-1 optimizer state %.3f MiB per rank, plain %.3f MiB over dp %d", name, mib_max, plain_mib,
           par.dp_size);

  mf_gpt_free(w);
  mf_adamw_free(&wopt);
  mf_adamw_free(&opt);
  mf_dist_free(&dist);
  mf_gpt_free(g);
  mf_par_free(&par);
}

int main(void) {
  mf_set_threads(1);
  if (mf_comm_world(&world) != MF_OK) {
    fprintf(stderr, "%s\n", mf_error_message());
    return 1;
  }
  setup_cfg();
  int n = mf_comm_size(world);
  result ref;
  CHECK(train(NULL, 0, 0, ref.loss, &ref.g, &ref.opt, NULL) == MF_OK);
  for (int s = 0; s < STEPS; s++) CHECK(isfinite(ref.loss[s]));
  CHECKF(ref.loss[STEPS - 1] < ref.loss[0] - 0.05, "the reference does not learn: %g -> %g", ref.loss[0],
         ref.loss[STEPS - 1]);
  if (mf_comm_rank(world) == 0)
    printf("reference (1 process): loss %.5f -> %.5f over %d steps; %d ranks (%s)\n", ref.loss[0],
           ref.loss[STEPS - 1], STEPS, n, mf_comm_kind(world));
  const float bucket = 0.02f; /* ~5k floats: the tiny model has several buckets */
  if (n == 1) {
    run_layout(&ref, 1, 1, bucket, "zero1-one-rank");
  } else if (n == 2) {
    run_layout(&ref, 1, 0, bucket, "dp2-overlapped");
    setenv("MF_DP_TIE_EARLY", "63", 1); /* 2 x 16 x 2 rows: over the bound, the plain order */
    run_layout(&ref, 1, 0, bucket, "dp2-overlapped-untied");
    unsetenv("MF_DP_TIE_EARLY");
    run_layout(&ref, 1, 0, 0, "dp2-after-backward");
    run_layout(&ref, 1, 1, bucket, "dp2-zero1");
    setenv("MF_DP_TIE_EARLY", "63", 1);
    run_layout(&ref, 1, 1, bucket, "dp2-zero1-untied");
    unsetenv("MF_DP_TIE_EARLY");
    run_layout(&ref, 2, 0, bucket, "tp2");
    run_layout(&ref, 2, 1, bucket, "tp2-zero1-dp1");
  } else if (n == 4) {
    run_layout(&ref, 1, 1, bucket, "dp4-zero1");
    run_layout(&ref, 2, 0, bucket, "dp2xtp2");
    run_layout(&ref, 2, 1, bucket, "dp2xtp2-zero1"); /* per TP slice: plain/tp */
    run_layout(&ref, 4, 0, bucket, "tp4");
  } else {
    run_layout(&ref, 1, 0, bucket, "dp");
  }
  mf_adamw_free(&ref.opt);
  mf_gpt_free(ref.g);
  free(data.tok);
  int failed = 0;
  mf_comm_allreduce(world, &mf_test_failures, &failed, 1, MF_C_I32, MF_RED_MAX);
  int rc = mf_comm_rank(world) == 0 ? mf_test_report("test_parallel") : (mf_test_failures ? 1 : 0);
  mf_comm_world_finalize();
  return rc || failed ? 1 : 0;
}
