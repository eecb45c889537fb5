/* Op tests for the CPU kernels (kernels/cpu/cpu.h).
 *
 * Forward: every kernel against a straightforward double-precision reference written
 * here, on random inputs of several shapes including odd and tiny ones; normalised error
 * (max abs diff / max abs ref) <= ~1e-5.
 * Backward: L = sum(out * R) with a fixed random R; the reference gradient of every input
 * element is the central finite difference of the double reference forward (step 1e-6);
 * the kernel's gradient must match within 1e-4 (normalised). Parameter gradients are
 * pre-filled and must be accumulated (+=); activation gradients are pre-filled with NaN
 * and must be fully written (=); NULL optional outputs must be accepted.
 * Shapes too big for finite differences (long attention, the real vocabulary, wide
 * LayerNorm rows) compare backward with the analytic gradient in double, whose formula the
 * finite differences on the small shapes vouch for.
 * Also: vexpf accuracy and special values, AdamW over 3 steps against PyTorch's formula in
 * double, sumsq, KV-cache attention against full causal attention (prefill, decode, mixed
 * positions), bitwise determinism of the reduced parameter gradients, and the same bits
 * on one thread where a kernel's split does not depend on the thread count.
 * Fused kernels (matmul_gelu, gelu_matmul, residual_layernorm_forward) give the bits of the
 * kernels they fuse, and through the tape the fused ops (mf_matmul_gelu, mf_mlp,
 * mf_residual_layernorm) give the unfused ops' outputs and gradients bit for bit, under
 * every recompute level. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cblas.h>
#include <omp.h>

#include "core/arena.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/ops.h"
#include "tests/test.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4
#define FD_STEP 1e-6

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float *randf(size_t n, float lo, float hi) {
  float *x = malloc((n ? n : 1) * sizeof(float));
  mf_test_fill(x, n, lo, hi, &rng_state);
  return x;
}

static float *nanf_buf(size_t n) {
  float *x = malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = NAN;
  return x;
}

static double *to_d(const float *x, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof(double));
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}

static float *copyf(const float *x, size_t n) {
  float *y = malloc((n ? n : 1) * sizeof(float));
  memcpy(y, x, n * sizeof(float));
  return y;
}

static int randint(int lo, int hi) { /* [lo, hi) */
  float u;
  mf_test_fill(&u, 1, 0.0f, 1.0f, &rng_state);
  int v = lo + (int)(u * (hi - lo));
  return v < hi ? v : hi - 1;
}

static double dot_d(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* Central finite differences of f (a scalar loss of the double inputs) with respect to
 * every element of x, which f reads through ctx. */
typedef double (*loss_fn)(void *ctx);
static void fd_grad(double *g /* [n] */, double *x /* [n] */, size_t n, loss_fn f, void *ctx) {
  for (size_t i = 0; i < n; i++) {
    double x0 = x[i];
    x[i] = x0 + FD_STEP;
    double lp = f(ctx);
    x[i] = x0 - FD_STEP;
    double lm = f(ctx);
    x[i] = x0;
    g[i] = (lp - lm) / (2 * FD_STEP);
  }
}

/* ref + base (the pre-filled value a += must keep) */
static double *plus_base(const double *g, const float *base, size_t n) {
  double *r = malloc((n ? n : 1) * sizeof(double));
  for (size_t i = 0; i < n; i++) r[i] = g[i] + base[i];
  return r;
}

/* ================================ vexpf ================================ */

static void test_vexpf(void) {
  size_t n = 2000003; /* odd: exercises the vector tail */
  float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = -100.0f + 188.0f * (float)((double)i / (n - 1));
  vexpf(y, x, n);
  double maxrel = 0, maxsub = 0;
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    double e = exp((double)x[i]);
    if (!isfinite(y[i]) && isfinite(e) && e < FLT_MAX) bad++;
    if (e >= FLT_MIN && e <= FLT_MAX) {
      double r = fabs(y[i] - e) / e;
      if (!(r <= maxrel)) maxrel = r;
    } else if (e < FLT_MIN) { /* below the normal range: 0 (or a close value) */
      double a = fabs(y[i] - e);
      if (!(a <= maxsub)) maxsub = a;
    }
  }
  CHECKF(maxrel < 2e-7, "vexpf max relative error %.3g", maxrel);
  CHECKF(maxsub <= FLT_MIN, "vexpf error below FLT_MIN %.3g", maxsub);
  CHECK(bad == 0);

  float sx[] = {-INFINITY, -1e30f, -1000.0f, -200.0f, -104.0f, 0.0f, -0.0f, 1.0f,
                88.7f,     89.0f,  100.0f,   1e30f,   INFINITY, NAN,  -87.0f};
  size_t ns = sizeof sx / sizeof sx[0];
  float sy[sizeof sx / sizeof sx[0]];
  vexpf(sy, sx, ns);
  CHECK(sy[0] == 0.0f && sy[1] == 0.0f && sy[2] == 0.0f && sy[3] == 0.0f && sy[4] == 0.0f);
  CHECK(sy[5] == 1.0f && sy[6] == 1.0f);
  CHECKF(fabs(sy[7] - M_E) / M_E < 2e-7, "exp(1) = %.9g", sy[7]);
  CHECK(isfinite(sy[8]) && fabs(sy[8] - exp((double)sx[8])) / exp((double)sx[8]) < 2e-7);
  CHECK(isinf(sy[9]) && isinf(sy[10]) && isinf(sy[11]) && isinf(sy[12]));
  CHECK(fabs(sy[14] - exp(-87.0)) / exp(-87.0) < 2e-7);

  /* in place, and every length 0..20 (tails) gives the same values as the long call */
  for (size_t len = 0; len <= 20; len++) {
    float *t = copyf(x + 1000, len);
    vexpf(t, t, len);
    CHECK(len == 0 || memcmp(t, y + 1000, len * sizeof(float)) == 0);
    free(t);
  }
  free(x);
  free(y);
}

/* ================================ encoder ================================ */

typedef struct {
  int B, T, C;
  const int32_t *inp;
  double *wte, *wpe, *R;
} enc_ctx;

static void ref_encoder(double *out, const int32_t *inp, const double *wte, const double *wpe,
                        int B, int T, int C) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++)
        out[((size_t)b * T + t) * C + c] = wte[(size_t)inp[b * T + t] * C + c] + wpe[(size_t)t * C + c];
}

static double enc_loss(void *p) {
  enc_ctx *e = p;
  size_t n = (size_t)e->B * e->T * e->C;
  double *out = malloc(n * sizeof(double));
  ref_encoder(out, e->inp, e->wte, e->wpe, e->B, e->T, e->C);
  double L = dot_d(out, e->R, n);
  free(out);
  return L;
}

static void test_encoder(void) {
  const int shapes[][4] = {{1, 1, 3, 2}, {2, 5, 17, 7}, {3, 7, 64, 5}, {4, 33, 20, 50}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], Vp = shapes[s][3], maxT = T + 2;
    size_t n = (size_t)B * T * C;
    int32_t *inp = malloc(sizeof(int32_t) * B * T);
    for (int i = 0; i < B * T; i++) inp[i] = randint(0, Vp);
    if (B * T > 2) inp[1] = inp[0]; /* repeated tokens */
    float *wte = randf((size_t)Vp * C, -1, 1), *wpe = randf((size_t)maxT * C, -1, 1);
    float *out = nanf_buf(n), *R = randf(n, -1, 1);
    double *wte_d = to_d(wte, (size_t)Vp * C), *wpe_d = to_d(wpe, (size_t)maxT * C);
    double *ref = malloc(n * sizeof(double));
    encoder_forward(out, inp, wte, wpe, B, T, C);
    ref_encoder(ref, inp, wte_d, wpe_d, B, T, C);
    double err = mf_test_nerr(out, ref, n);
    CHECKF(err <= FWD_TOL, "encoder fwd B=%d T=%d C=%d: %.3g", B, T, C, err);

    /* backward: param grads accumulate onto pre-filled values */
    enc_ctx ctx = {B, T, C, inp, wte_d, wpe_d, to_d(R, n)};
    double *g_wte = malloc(sizeof(double) * Vp * C), *g_wpe = malloc(sizeof(double) * maxT * C);
    fd_grad(g_wte, wte_d, (size_t)Vp * C, enc_loss, &ctx);
    fd_grad(g_wpe, wpe_d, (size_t)maxT * C, enc_loss, &ctx);
    float *dwte = randf((size_t)Vp * C, -1, 1), *dwpe = randf((size_t)maxT * C, -1, 1);
    double *r_wte = plus_base(g_wte, dwte, (size_t)Vp * C);
    double *r_wpe = plus_base(g_wpe, dwpe, (size_t)maxT * C);
    float *dwte2 = copyf(dwte, (size_t)Vp * C), *dwpe2 = copyf(dwpe, (size_t)maxT * C);
    encoder_backward(dwte, dwpe, R, inp, B, T, C);
    err = mf_test_nerr(dwte, r_wte, (size_t)Vp * C);
    CHECKF(err <= GRAD_TOL, "encoder dwte B=%d T=%d C=%d: %.3g", B, T, C, err);
    err = mf_test_nerr(dwpe, r_wpe, (size_t)maxT * C);
    CHECKF(err <= GRAD_TOL, "encoder dwpe B=%d T=%d C=%d: %.3g", B, T, C, err);
    /* either gradient may be NULL (frozen) */
    encoder_backward(NULL, dwpe2, R, inp, B, T, C);
    CHECK(mf_test_nerr(dwpe2, r_wpe, (size_t)maxT * C) <= GRAD_TOL);
    encoder_backward(dwte2, NULL, R, inp, B, T, C);
    CHECK(mf_test_nerr(dwte2, r_wte, (size_t)Vp * C) <= GRAD_TOL);
    encoder_backward(NULL, NULL, R, inp, B, T, C);

    free(inp), free(wte), free(wpe), free(out), free(R), free(wte_d), free(wpe_d), free(ref);
    free(ctx.R), free(g_wte), free(g_wpe), free(dwte), free(dwpe), free(r_wte), free(r_wpe);
    free(dwte2), free(dwpe2);
  }

  /* a size that runs in parallel, with many repeated tokens: against the double sums,
   * bitwise reproducible, and the same bits on one thread (each element's terms are
   * added in position order whatever the split) */
  int B = 8, T = 64, C = 192, Vp = 37;
  size_t n = (size_t)B * T * C;
  int32_t *inp = malloc(sizeof(int32_t) * B * T);
  for (int i = 0; i < B * T; i++) inp[i] = randint(0, Vp);
  float *d = randf(n, -1, 1), *a = randf((size_t)Vp * C, -1, 1), *p = randf((size_t)T * C, -1, 1);
  double *ra = to_d(a, (size_t)Vp * C), *rp = to_d(p, (size_t)T * C);
  for (int i = 0; i < B * T; i++)
    for (int c = 0; c < C; c++) {
      ra[(size_t)inp[i] * C + c] += d[(size_t)i * C + c];
      rp[(size_t)(i % T) * C + c] += d[(size_t)i * C + c];
    }
  float *a2 = copyf(a, (size_t)Vp * C), *p2 = copyf(p, (size_t)T * C);
  float *a3 = copyf(a, (size_t)Vp * C), *p3 = copyf(p, (size_t)T * C);
  encoder_backward(a, p, d, inp, B, T, C);
  encoder_backward(a2, p2, d, inp, B, T, C);
  int nt = omp_get_max_threads();
  omp_set_num_threads(1);
  encoder_backward(a3, p3, d, inp, B, T, C);
  omp_set_num_threads(nt);
  CHECK(mf_test_nerr(a, ra, (size_t)Vp * C) <= FWD_TOL && mf_test_nerr(p, rp, (size_t)T * C) <= FWD_TOL);
  CHECK(memcmp(a, a2, sizeof(float) * Vp * C) == 0 && memcmp(p, p2, sizeof(float) * T * C) == 0);
  CHECK(memcmp(a, a3, sizeof(float) * Vp * C) == 0 && memcmp(p, p3, sizeof(float) * T * C) == 0);
  free(inp), free(d), free(a), free(p), free(a2), free(p2), free(a3), free(p3), free(ra), free(rp);
}

/* ================================ layernorm ================================ */

static void ref_layernorm(double *out, double *mean, double *rstd, const double *x,
                          const double *w, const double *b, int N, int C) {
  for (int i = 0; i < N; i++) {
    const double *xi = x + (size_t)i * C;
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += xi[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (xi[c] - m) * (xi[c] - m);
    v /= C;
    double r = 1.0 / sqrt(v + 1e-5);
    for (int c = 0; c < C; c++) out[(size_t)i * C + c] = (xi[c] - m) * r * w[c] + b[c];
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = r;
  }
}

typedef struct {
  int N, C;
  double *x, *w, *b, *R;
} ln_ctx;

static double ln_loss(void *p) {
  ln_ctx *e = p;
  size_t n = (size_t)e->N * e->C;
  double *out = malloc(n * sizeof(double));
  ref_layernorm(out, NULL, NULL, e->x, e->w, e->b, e->N, e->C);
  double L = dot_d(out, e->R, n);
  free(out);
  return L;
}

static void test_layernorm(void) {
  const int shapes[][2] = {{1, 3}, {7, 17}, {33, 64}, {5, 768}, {2, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int N = shapes[s][0], C = shapes[s][1];
    size_t n = (size_t)N * C;
    float *x = randf(n, -2, 2), *w = randf(C, 0.5f, 1.5f), *b = randf(C, -0.5f, 0.5f);
    for (size_t i = 0; i < n; i += 3) x[i] += 10.0f; /* a large mean: tests two-pass */
    float *out = nanf_buf(n), *mean = nanf_buf(N), *rstd = nanf_buf(N);
    double *xd = to_d(x, n), *wd = to_d(w, C), *bd = to_d(b, C);
    double *ref = malloc(n * sizeof(double)), *rm = malloc(N * sizeof(double)),
           *rr = malloc(N * sizeof(double));
    layernorm_forward(out, mean, rstd, x, w, b, N, C);
    ref_layernorm(ref, rm, rr, xd, wd, bd, N, C);
    double e1 = mf_test_nerr(out, ref, n), e2 = mf_test_nerr(mean, rm, N),
           e3 = mf_test_nerr(rstd, rr, N);
    CHECKF(e1 <= FWD_TOL && e2 <= FWD_TOL && e3 <= FWD_TOL,
           "layernorm fwd N=%d C=%d: out %.3g mean %.3g rstd %.3g", N, C, e1, e2, e3);

    if (C > 64 || C < 2) goto next; /* FD on the small shapes; C = 1 has zero dinp */
    {
      float *R = randf(n, -1, 1);
      ln_ctx ctx = {N, C, xd, wd, bd, to_d(R, n)};
      double *gx = malloc(n * sizeof(double)), *gw = malloc(C * sizeof(double)),
             *gb = malloc(C * sizeof(double));
      fd_grad(gx, xd, n, ln_loss, &ctx);
      fd_grad(gw, wd, C, ln_loss, &ctx);
      fd_grad(gb, bd, C, ln_loss, &ctx);
      float *dx = nanf_buf(n), *dw = randf(C, -1, 1), *db = randf(C, -1, 1);
      double *rw = plus_base(gw, dw, C), *rb = plus_base(gb, db, C);
      float *dw0 = copyf(dw, C), *db0 = copyf(db, C);
      layernorm_backward(dx, dw, db, R, x, w, mean, rstd, N, C);
      e1 = mf_test_nerr(dx, gx, n);
      e2 = mf_test_nerr(dw, rw, C);
      e3 = mf_test_nerr(db, rb, C);
      CHECKF(e1 <= GRAD_TOL && e2 <= GRAD_TOL && e3 <= GRAD_TOL,
             "layernorm bwd N=%d C=%d: dx %.3g dw %.3g db %.3g", N, C, e1, e2, e3);
      /* optional outputs: dinp only; params only; one param only */
      float *dx2 = nanf_buf(n);
      layernorm_backward(dx2, NULL, NULL, R, x, w, mean, rstd, N, C);
      CHECK(mf_test_nerr(dx2, gx, n) <= GRAD_TOL);
      float *dw2 = copyf(dw0, C), *db2 = copyf(db0, C);
      layernorm_backward(NULL, dw2, db2, R, x, w, mean, rstd, N, C);
      CHECK(mf_test_nerr(dw2, rw, C) <= GRAD_TOL && mf_test_nerr(db2, rb, C) <= GRAD_TOL);
      float *db3 = copyf(db0, C);
      layernorm_backward(NULL, NULL, db3, R, x, w, mean, rstd, N, C);
      CHECK(mf_test_nerr(db3, rb, C) <= GRAD_TOL);
      layernorm_backward(NULL, NULL, NULL, R, x, w, mean, rstd, N, C);
      free(R), free(ctx.R), free(gx), free(gw), free(gb), free(dx), free(dw), free(db);
      free(rw), free(rb), free(dw0), free(db0), free(dx2), free(dw2), free(db2), free(db3);
    }
  next:
    free(x), free(w), free(b), free(out), free(mean), free(rstd), free(xd), free(wd), free(bd);
    free(ref), free(rm), free(rr);
  }

  /* rows wider than the kernel's stack partials (C > 8192) take another path for the
   * parameter gradients: the analytic gradient in double (the finite differences above
   * vouch for the formula) */
  {
    int N = 3, C = 9000;
    size_t n = (size_t)N * C;
    float *x = randf(n, -2, 2), *w = randf(C, 0.5f, 1.5f), *b = randf(C, -1, 1), *d = randf(n, -1, 1);
    float *out = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4), *dx = nanf_buf(n);
    float *dw = randf(C, -1, 1), *db = randf(C, -1, 1);
    double *rx = malloc(n * 8), *rw = to_d(dw, C), *rb = to_d(db, C), *xd = to_d(x, n),
           *wd = to_d(w, C), *bd = to_d(b, C), *ro = malloc(n * 8), *rm = malloc(N * 8),
           *rr = malloc(N * 8);
    ref_layernorm(ro, rm, rr, xd, wd, bd, N, C);
    for (int i = 0; i < N; i++) {
      double a = 0, g = 0;
      for (int c = 0; c < C; c++) {
        double xh = (xd[(size_t)i * C + c] - rm[i]) * rr[i], dn = wd[c] * d[(size_t)i * C + c];
        a += dn, g += dn * xh;
        rw[c] += d[(size_t)i * C + c] * xh, rb[c] += d[(size_t)i * C + c];
      }
      for (int c = 0; c < C; c++) {
        double xh = (xd[(size_t)i * C + c] - rm[i]) * rr[i], dn = wd[c] * d[(size_t)i * C + c];
        rx[(size_t)i * C + c] = (dn - a / C - xh * g / C) * rr[i];
      }
    }
    layernorm_forward(out, mean, rstd, x, w, b, N, C);
    layernorm_backward(dx, dw, db, d, x, w, mean, rstd, N, C);
    double e0 = mf_test_nerr(out, ro, n), e1 = mf_test_nerr(dx, rx, n),
           e2 = mf_test_nerr(dw, rw, C), e3 = mf_test_nerr(db, rb, C);
    CHECKF(e0 <= FWD_TOL && e1 <= GRAD_TOL && e2 <= GRAD_TOL && e3 <= GRAD_TOL,
           "layernorm wide N=%d C=%d: out %.3g dx %.3g dw %.3g db %.3g", N, C, e0, e1, e2, e3);
    free(x), free(w), free(b), free(d), free(out), free(mean), free(rstd), free(dx), free(dw);
    free(db), free(rx), free(rw), free(rb), free(xd), free(wd), free(bd), free(ro), free(rm);
    free(rr);
  }

  /* a size that runs in parallel: parameter gradients against double sums of the
   * kernel's own dout * xhat and dout, and bitwise reproducible */
  int N = 300, C = 256;
  size_t n = (size_t)N * C;
  float *x = randf(n, -2, 2), *w = randf(C, 0.5f, 1.5f), *b = randf(C, -1, 1), *d = randf(n, -1, 1);
  float *out = malloc(n * 4), *mean = malloc(N * 4), *rstd = malloc(N * 4);
  layernorm_forward(out, mean, rstd, x, w, b, N, C);
  float *dx1 = malloc(n * 4), *dx2 = malloc(n * 4), *dw1 = randf(C, -1, 1), *db1 = randf(C, -1, 1);
  float *dw2 = copyf(dw1, C), *db2 = copyf(db1, C);
  double *rw = to_d(dw1, C), *rb = to_d(db1, C);
  for (int i = 0; i < N; i++)
    for (int c = 0; c < C; c++) {
      double xhat = ((double)x[(size_t)i * C + c] - mean[i]) * rstd[i];
      rw[c] += d[(size_t)i * C + c] * xhat;
      rb[c] += d[(size_t)i * C + c];
    }
  layernorm_backward(dx1, dw1, db1, d, x, w, mean, rstd, N, C);
  layernorm_backward(dx2, dw2, db2, d, x, w, mean, rstd, N, C);
  CHECK(mf_test_nerr(dw1, rw, C) <= FWD_TOL && mf_test_nerr(db1, rb, C) <= FWD_TOL);
  CHECK(memcmp(dx1, dx2, n * 4) == 0 && memcmp(dw1, dw2, C * 4) == 0 &&
        memcmp(db1, db2, C * 4) == 0);
  free(x), free(w), free(b), free(d), free(out), free(mean), free(rstd), free(rw), free(rb);
  free(dx1), free(dx2), free(dw1), free(db1), free(dw2), free(db2);
}

/* ================================ matmul ================================ */

static void ref_matmul(double *out, const double *x, const double *w, const double *bias, int N,
                       int C, int OC, int wt) {
  for (int i = 0; i < N; i++)
    for (int o = 0; o < OC; o++) {
      double s = bias ? bias[o] : 0;
      for (int c = 0; c < C; c++)
        s += x[(size_t)i * C + c] * (wt ? w[(size_t)o * C + c] : w[(size_t)c * OC + o]);
      out[(size_t)i * OC + o] = s;
    }
}

typedef struct {
  int N, C, OC, wt;
  double *x, *w, *b, *R;
} mm_ctx;

static double mm_loss(void *p) {
  mm_ctx *e = p;
  size_t n = (size_t)e->N * e->OC;
  double *out = malloc(n * sizeof(double));
  ref_matmul(out, e->x, e->w, e->b, e->N, e->C, e->OC, e->wt);
  double L = dot_d(out, e->R, n);
  free(out);
  return L;
}

static void test_matmul(void) {
  const int shapes[][3] = {{1, 3, 5}, {7, 17, 33}, {33, 64, 17}, {5, 7, 6}, {64, 256, 300}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int wt = 0; wt < 2; wt++)
      for (int hasb = 0; hasb < 2; hasb++) {
        int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        size_t nx = (size_t)N * C, nw = (size_t)C * OC, no = (size_t)N * OC;
        float *x = randf(nx, -1, 1), *w = randf(nw, -1, 1), *b = hasb ? randf(OC, -1, 1) : NULL;
        float *out = nanf_buf(no);
        double *xd = to_d(x, nx), *wd = to_d(w, nw), *bd = b ? to_d(b, OC) : NULL;
        double *ref = malloc(no * sizeof(double));
        matmul_forward(out, x, w, b, N, C, OC, wt);
        ref_matmul(ref, xd, wd, bd, N, C, OC, wt);
        double err = mf_test_nerr(out, ref, no);
        CHECKF(err <= FWD_TOL, "matmul fwd N=%d C=%d OC=%d wt=%d bias=%d: %.3g", N, C, OC, wt,
               hasb, err);

        if (nw <= 1200) {
          float *R = randf(no, -1, 1);
          mm_ctx ctx = {N, C, OC, wt, xd, wd, bd, to_d(R, no)};
          double *gx = malloc(nx * sizeof(double)), *gw = malloc(nw * sizeof(double)),
                 *gb = malloc(OC * sizeof(double));
          fd_grad(gx, xd, nx, mm_loss, &ctx);
          fd_grad(gw, wd, nw, mm_loss, &ctx);
          if (bd) fd_grad(gb, bd, OC, mm_loss, &ctx);
          float *dx = nanf_buf(nx), *dw = randf(nw, -1, 1), *db = randf(OC, -1, 1);
          double *rw = plus_base(gw, dw, nw), *rb = plus_base(gb, db, OC);
          float *dw0 = copyf(dw, nw), *db0 = copyf(db, OC);
          matmul_backward(dx, dw, b ? db : NULL, R, x, w, N, C, OC, wt);
          double e1 = mf_test_nerr(dx, gx, nx), e2 = mf_test_nerr(dw, rw, nw),
                 e3 = b ? mf_test_nerr(db, rb, OC) : 0;
          CHECKF(e1 <= GRAD_TOL && e2 <= GRAD_TOL && e3 <= GRAD_TOL,
                 "matmul bwd N=%d C=%d OC=%d wt=%d: dx %.3g dw %.3g db %.3g", N, C, OC, wt, e1,
                 e2, e3);
          if (!b) CHECK(memcmp(db, db0, OC * 4) == 0); /* NULL dbias: untouched */
          /* NULL dinp / NULL dweight */
          float *dw2 = copyf(dw0, nw), *db2 = copyf(db0, OC), *dx2 = nanf_buf(nx);
          matmul_backward(NULL, dw2, NULL, R, x, w, N, C, OC, wt);
          CHECK(mf_test_nerr(dw2, rw, nw) <= GRAD_TOL);
          matmul_backward(dx2, NULL, b ? db2 : NULL, R, x, w, N, C, OC, wt);
          CHECK(mf_test_nerr(dx2, gx, nx) <= GRAD_TOL);
          if (b) CHECK(mf_test_nerr(db2, rb, OC) <= GRAD_TOL);
          free(R), free(ctx.R), free(gx), free(gw), free(gb), free(dx), free(dw), free(db);
          free(rw), free(rb), free(dw0), free(db0), free(dw2), free(db2), free(dx2);
        }
        free(x), free(w), free(b), free(out), free(xd), free(wd), free(bd), free(ref);
      }

  /* dbias on a parallel size: deterministic and against a double column sum */
  int N = 512, OC = 300;
  float *d = randf((size_t)N * OC, -1, 1), *b1 = randf(OC, -1, 1), *b2 = copyf(b1, OC);
  double *rb = malloc(OC * sizeof(double));
  for (int o = 0; o < OC; o++) {
    rb[o] = b1[o];
    for (int i = 0; i < N; i++) rb[o] += d[(size_t)i * OC + o];
  }
  matmul_backward(NULL, NULL, b1, d, NULL, NULL, N, 4, OC, 0);
  matmul_backward(NULL, NULL, b2, d, NULL, NULL, N, 4, OC, 0);
  CHECK(memcmp(b1, b2, OC * 4) == 0);
  CHECK(mf_test_nerr(b1, rb, OC) <= FWD_TOL);
  free(d), free(b1), free(b2), free(rb);
}

/* ================================ gelu ================================ */

static double ref_gelu(double x) {
  return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static void test_gelu(void) {
  const size_t sizes[] = {1, 7, 1000, 100003};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    float *x = randf(n, -6, 6), *out = nanf_buf(n);
    if (n > 10) x[3] = -1e4f, x[4] = 1e4f, x[5] = 0.0f, x[6] = -1e20f, x[7] = 1e20f;
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) ref[i] = ref_gelu(x[i]);
    gelu_forward(out, x, n);
    double err = mf_test_nerr(out, ref, n), rel = 0;
    for (size_t i = 0; i < n; i++)
      if (fabs(ref[i]) > 1e-3 && fabs(x[i]) < 100) {
        double r = fabs(out[i] - ref[i]) / fabs(ref[i]);
        if (!(r <= rel)) rel = r;
      }
    /* 1e20 makes the normaliser huge, so elements are checked too; their error comes from
     * forming u in float (|u| ~ 10, error ~1e-6 in exp(-2u)), torch's is far larger */
    CHECKF(err <= 1e-6 && rel <= 3e-6, "gelu fwd n=%zu: nerr %.3g rel %.3g", n, err, rel);

    /* backward: L = sum(gelu(x) R) is separable, so the FD of L in x_i is
     * R_i (gelu(x+h) - gelu(x-h)) / 2h */
    float *R = randf(n, -1, 1), *dx = nanf_buf(n);
    double *g = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
      double xi = x[i]; /* beyond 1e6, x +- 1e-6 rounds to x in double: use the limit */
      g[i] = fabs(xi) > 1e6 ? R[i] * (xi > 0)
                            : R[i] * (ref_gelu(xi + FD_STEP) - ref_gelu(xi - FD_STEP)) / (2 * FD_STEP);
    }
    gelu_backward(dx, x, R, n);
    err = mf_test_nerr(dx, g, n);
    CHECKF(err <= GRAD_TOL, "gelu bwd n=%zu: %.3g", n, err);
    free(x), free(out), free(ref), free(R), free(dx), free(g);
  }
}

/* ================================ residual ================================ */

static void test_residual(void) {
  const size_t sizes[] = {1, 7, 100003};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    float *a = randf(n, -1, 1), *b = randf(n, -1, 1), *out = nanf_buf(n);
    double *ref = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) ref[i] = (double)a[i] + b[i];
    residual_forward(out, a, b, n);
    CHECKF(mf_test_nerr(out, ref, n) <= 1e-7, "residual fwd n=%zu", n);
    /* L = sum((a+b) R): dL/da = dL/db = R exactly, both written */
    float *R = randf(n, -1, 1), *da = nanf_buf(n), *db = nanf_buf(n);
    residual_backward(da, db, R, n);
    CHECK(memcmp(da, R, n * 4) == 0 && memcmp(db, R, n * 4) == 0);
    float *da2 = nanf_buf(n);
    residual_backward(da2, NULL, R, n);
    CHECK(memcmp(da2, R, n * 4) == 0);
    float *db2 = nanf_buf(n);
    residual_backward(NULL, db2, R, n);
    CHECK(memcmp(db2, R, n * 4) == 0);
    /* accumulate: acc += x */
    float *acc = copyf(a, n);
    accumulate(acc, b, n);
    CHECKF(mf_test_nerr(acc, ref, n) <= 1e-7, "accumulate n=%zu", n);
    free(a), free(b), free(out), free(ref), free(R), free(da), free(db), free(da2), free(db2);
    free(acc);
  }
}

/* ================================ matmul_gelu ================================ */

typedef struct {
  int N, C, OC, wt;
  double *x, *w, *b, *R;
} mg_ctx;

/* L = sum(gelu(x @ W + b) R) in double */
static double mg_loss(void *p) {
  mg_ctx *e = p;
  size_t n = (size_t)e->N * e->OC;
  double *out = malloc(n * sizeof(double));
  ref_matmul(out, e->x, e->w, e->b, e->N, e->C, e->OC, e->wt);
  for (size_t i = 0; i < n; i++) out[i] = ref_gelu(out[i]);
  double L = dot_d(out, e->R, n);
  free(out);
  return L;
}

static void test_matmul_gelu(void) {
  const int shapes[][3] = {{1, 3, 5}, {7, 17, 33}, {5, 7, 6}, {64, 96, 384}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int wt = 0; wt < 2; wt++) {
      int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
      size_t nx = (size_t)N * C, nw = (size_t)C * OC, no = (size_t)N * OC;
      float *x = randf(nx, -1, 1), *w = randf(nw, -1, 1), *b = randf(OC, -1, 1);
      float *out = nanf_buf(no), *pre = nanf_buf(no), *out2 = nanf_buf(no), *pre2 = nanf_buf(no);
      double *xd = to_d(x, nx), *wd = to_d(w, nw), *bd = to_d(b, OC), *ref = malloc(no * sizeof(double));
      matmul_gelu_forward(out, pre, x, w, b, N, C, OC, wt);
      ref_matmul(ref, xd, wd, bd, N, C, OC, wt);
      double e1 = mf_test_nerr(pre, ref, no);
      for (size_t i = 0; i < no; i++) ref[i] = ref_gelu(ref[i]);
      double e2 = mf_test_nerr(out, ref, no);
      CHECKF(e1 <= FWD_TOL && e2 <= FWD_TOL, "matmul_gelu fwd N=%d C=%d OC=%d wt=%d: pre %.3g out %.3g", N, C,
             OC, wt, e1, e2);
      /* the unfused pair gives the same bits (what keeps the model's losses unchanged) */
      matmul_forward(pre2, x, w, b, N, C, OC, wt);
      gelu_forward(out2, pre2, no);
      CHECKF(memcmp(pre, pre2, no * 4) == 0 && memcmp(out, out2, no * 4) == 0,
             "matmul_gelu fwd N=%d C=%d OC=%d wt=%d: not bitwise matmul + gelu", N, C, OC, wt);

      /* backward: dinp written over NaN, dweight/dbias accumulated onto random values */
      float *R = randf(no, -1, 1), *dx = nanf_buf(nx), *dw = randf(nw, -1, 1), *db = randf(OC, -1, 1);
      float *dpre = nanf_buf(no), *dw0 = copyf(dw, nw), *db0 = copyf(db, OC);
      matmul_gelu_backward(dx, dw, db, dpre, R, x, w, pre, N, C, OC, wt);
      float *dx2 = nanf_buf(nx), *dw2 = copyf(dw0, nw), *db2 = copyf(db0, OC), *dpre2 = nanf_buf(no);
      gelu_backward(dpre2, pre2, R, no);
      matmul_backward(dx2, dw2, db2, dpre2, x, w, N, C, OC, wt);
      CHECKF(memcmp(dx, dx2, nx * 4) == 0 && memcmp(dw, dw2, nw * 4) == 0 && memcmp(db, db2, OC * 4) == 0,
             "matmul_gelu bwd N=%d C=%d OC=%d wt=%d: not bitwise gelu + matmul backward", N, C, OC, wt);
      if (nw <= 1200) { /* finite differences of the double reference */
        mg_ctx ctx = {N, C, OC, wt, xd, wd, bd, to_d(R, no)};
        double *gx = malloc(nx * sizeof(double)), *gw = malloc(nw * sizeof(double)),
               *gb = malloc(OC * sizeof(double));
        fd_grad(gx, xd, nx, mg_loss, &ctx);
        fd_grad(gw, wd, nw, mg_loss, &ctx);
        fd_grad(gb, bd, OC, mg_loss, &ctx);
        double *rw = plus_base(gw, dw0, nw), *rb = plus_base(gb, db0, OC);
        double g1 = mf_test_nerr(dx, gx, nx), g2 = mf_test_nerr(dw, rw, nw), g3 = mf_test_nerr(db, rb, OC);
        CHECKF(g1 <= GRAD_TOL && g2 <= GRAD_TOL && g3 <= GRAD_TOL,
               "matmul_gelu bwd N=%d C=%d OC=%d wt=%d: dx %.3g dw %.3g db %.3g", N, C, OC, wt, g1, g2, g3);
        /* NULL dinp, dweight, dbias are skipped; dpre may alias dout */
        float *dw3 = copyf(dw0, nw), *dout = copyf(R, no), *dx3 = nanf_buf(nx);
        matmul_gelu_backward(NULL, dw3, NULL, dout, dout, x, w, pre, N, C, OC, wt);
        CHECK(mf_test_nerr(dw3, rw, nw) <= GRAD_TOL);
        memcpy(dout, R, no * 4);
        matmul_gelu_backward(dx3, NULL, NULL, dout, dout, x, w, pre, N, C, OC, wt);
        CHECK(mf_test_nerr(dx3, gx, nx) <= GRAD_TOL);
        free(ctx.R), free(gx), free(gw), free(gb), free(rw), free(rb), free(dw3), free(dout), free(dx3);
      }
      free(x), free(w), free(b), free(out), free(pre), free(out2), free(pre2), free(xd), free(wd), free(bd);
      free(ref), free(R), free(dx), free(dw), free(db), free(dpre), free(dw0), free(db0), free(dx2), free(dw2);
      free(db2), free(dpre2);
    }
}

/* ================================ gelu_matmul ================================ */

/* L = sum((gelu(x) @ W + b) R) in double (b may be NULL) */
static double gm_loss(void *p) {
  mg_ctx *e = p;
  size_t nx = (size_t)e->N * e->C, n = (size_t)e->N * e->OC;
  double *a = malloc(nx * sizeof(double)), *out = malloc(n * sizeof(double));
  for (size_t i = 0; i < nx; i++) a[i] = ref_gelu(e->x[i]);
  ref_matmul(out, a, e->w, e->b, e->N, e->C, e->OC, e->wt);
  double L = dot_d(out, e->R, n);
  free(a), free(out);
  return L;
}

/* the down-projection from its pre-GELU input: forward against the double reference and
 * bitwise gelu + matmul; backward bitwise matmul_backward on act + gelu_backward, and
 * against finite differences (with and without a bias) */
static void test_gelu_matmul(void) {
  const int shapes[][3] = {{1, 3, 5}, {7, 33, 17}, {5, 6, 7}, {64, 384, 96}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int wt = 0; wt < 2; wt++) {
      int N = shapes[s][0], C = shapes[s][1], OC = shapes[s][2], nob = s == 2;
      size_t nx = (size_t)N * C, nw = (size_t)C * OC, no = (size_t)N * OC;
      float *x = randf(nx, -3, 3), *w = randf(nw, -1, 1), *b = nob ? NULL : randf(OC, -1, 1);
      float *out = nanf_buf(no), *act = nanf_buf(nx), *out2 = nanf_buf(no), *act2 = nanf_buf(nx);
      double *xd = to_d(x, nx), *wd = to_d(w, nw), *bd = b ? to_d(b, OC) : NULL, *ad = malloc(nx * sizeof(double));
      double *ref = malloc(no * sizeof(double));
      gelu_matmul_forward(out, act, x, w, b, N, C, OC, wt);
      for (size_t i = 0; i < nx; i++) ad[i] = ref_gelu(xd[i]);
      ref_matmul(ref, ad, wd, bd, N, C, OC, wt);
      double e1 = mf_test_nerr(act, ad, nx), e2 = mf_test_nerr(out, ref, no);
      CHECKF(e1 <= FWD_TOL && e2 <= FWD_TOL, "gelu_matmul fwd N=%d C=%d OC=%d wt=%d: act %.3g out %.3g", N, C, OC,
             wt, e1, e2);
      gelu_forward(act2, x, nx);
      matmul_forward(out2, act2, w, b, N, C, OC, wt);
      CHECKF(memcmp(act, act2, nx * 4) == 0 && memcmp(out, out2, no * 4) == 0,
             "gelu_matmul fwd N=%d C=%d OC=%d wt=%d: not bitwise gelu + matmul", N, C, OC, wt);

      /* backward: dinp written over NaN, dweight/dbias accumulated onto random values */
      float *R = randf(no, -1, 1), *dx = nanf_buf(nx), *dw = randf(nw, -1, 1), *db = b ? randf(OC, -1, 1) : NULL;
      float *dw0 = copyf(dw, nw), *db0 = b ? copyf(db, OC) : NULL;
      gelu_matmul_backward(dx, dw, db, R, x, w, act, N, C, OC, wt);
      float *dx2 = nanf_buf(nx), *dw2 = copyf(dw0, nw), *db2 = b ? copyf(db0, OC) : NULL, *dact = nanf_buf(nx);
      matmul_backward(dact, dw2, db2, R, act2, w, N, C, OC, wt);
      gelu_backward(dx2, x, dact, nx);
      CHECKF(memcmp(dx, dx2, nx * 4) == 0 && memcmp(dw, dw2, nw * 4) == 0 && (!b || memcmp(db, db2, OC * 4) == 0),
             "gelu_matmul bwd N=%d C=%d OC=%d wt=%d: not bitwise matmul + gelu backward", N, C, OC, wt);
      if (nw <= 1200) { /* finite differences of the double reference */
        mg_ctx ctx = {N, C, OC, wt, xd, wd, bd, to_d(R, no)};
        double *gx = malloc(nx * sizeof(double)), *gw = malloc(nw * sizeof(double)),
               *gb = malloc(OC * sizeof(double));
        fd_grad(gx, xd, nx, gm_loss, &ctx);
        fd_grad(gw, wd, nw, gm_loss, &ctx);
        double *rw = plus_base(gw, dw0, nw), *rb = NULL;
        double g1 = mf_test_nerr(dx, gx, nx), g2 = mf_test_nerr(dw, rw, nw), g3 = 0;
        if (b) {
          fd_grad(gb, bd, OC, gm_loss, &ctx);
          rb = plus_base(gb, db0, OC);
          g3 = mf_test_nerr(db, rb, OC);
        }
        CHECKF(g1 <= GRAD_TOL && g2 <= GRAD_TOL && g3 <= GRAD_TOL,
               "gelu_matmul bwd N=%d C=%d OC=%d wt=%d: dx %.3g dw %.3g db %.3g", N, C, OC, wt, g1, g2, g3);
        /* NULL dinp or dweight is skipped */
        float *dw3 = copyf(dw0, nw), *dx3 = nanf_buf(nx);
        gelu_matmul_backward(NULL, dw3, NULL, R, x, w, act, N, C, OC, wt);
        CHECK(mf_test_nerr(dw3, rw, nw) <= GRAD_TOL);
        gelu_matmul_backward(dx3, NULL, NULL, R, x, w, act, N, C, OC, wt);
        CHECK(mf_test_nerr(dx3, gx, nx) <= GRAD_TOL);
        free(ctx.R), free(gx), free(gw), free(gb), free(rw), free(rb), free(dw3), free(dx3);
      }
      free(x), free(w), free(b), free(out), free(act), free(out2), free(act2), free(xd), free(wd), free(bd);
      free(ad), free(ref), free(R), free(dx), free(dw), free(db), free(dw0), free(db0), free(dx2), free(dw2);
      free(db2), free(dact);
    }
}

/* ================================ residual_layernorm ================================ */

/* the fused kernel against residual_forward + layernorm_forward, bit for bit (N * C past
 * the threads' threshold in the last shape) */
static void test_residual_layernorm(void) {
  const int shapes[][2] = {{1, 3}, {7, 17}, {5, 768}, {64, 384}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int N = shapes[s][0], C = shapes[s][1];
    size_t n = (size_t)N * C;
    float *a = randf(n, -2, 2), *b = randf(n, -2, 2), *w = randf(C, 0.5f, 1.5f), *bias = randf(C, -0.5f, 0.5f);
    for (size_t i = 0; i < n; i += 3) a[i] += 10.0f;
    float *out = nanf_buf(n), *resid = nanf_buf(n), *mean = nanf_buf(N), *rstd = nanf_buf(N);
    float *out2 = nanf_buf(n), *resid2 = nanf_buf(n), *mean2 = nanf_buf(N), *rstd2 = nanf_buf(N);
    residual_layernorm_forward(out, resid, mean, rstd, a, b, w, bias, N, C);
    residual_forward(resid2, a, b, n);
    layernorm_forward(out2, mean2, rstd2, resid2, w, bias, N, C);
    CHECKF(memcmp(out, out2, n * 4) == 0 && memcmp(resid, resid2, n * 4) == 0 &&
               memcmp(mean, mean2, N * 4) == 0 && memcmp(rstd, rstd2, N * 4) == 0,
           "residual_layernorm N=%d C=%d: not bitwise residual + layernorm", N, C);
    float *out3 = nanf_buf(n), *resid3 = nanf_buf(n); /* statistics are optional */
    residual_layernorm_forward(out3, resid3, NULL, NULL, a, b, w, bias, N, C);
    CHECK(memcmp(out3, out, n * 4) == 0 && memcmp(resid3, resid, n * 4) == 0);
    free(a), free(b), free(w), free(bias), free(out), free(resid), free(mean), free(rstd), free(out2);
    free(resid2), free(mean2), free(rstd2), free(out3), free(resid3);
  }
}

/* ============================ the fused ops on the tape ============================ */

typedef struct {
  mf_tensor t;
  float *init;
} tparam;

/* a parameter tensor with random values and a zeroed gradient */
static void tp_make(tparam *p, int ndim, const int64_t *shape, float lo, float hi) {
  p->t = mf_view(NULL, MF_F32, ndim, shape);
  size_t n = (size_t)mf_numel(&p->t);
  p->t.data = randf(n, lo, hi);
  p->t.grad = calloc(n, sizeof(float));
  p->t.is_param = p->t.requires_grad = 1;
}

enum { TP_WA, TP_WB, TP_LW, TP_LB, TP_W1, TP_B1, TP_W2, TP_R, TP_N };
enum { TG_LAYERS = 2 };

/* One forward + backward of a small graph around the fused ops or their unfused forms:
 *   s = X Wa, d = X Wb; TG_LAYERS times: s = s + d, h = LN(s), f = gelu(h W1 + b1), d = f W2;
 *   y = (s + d) R.
 * Two layers, so under recompute one GELU and one layernorm output take the other's buffer
 * and backward must remake them. Copies out each layer's h, s, f as made, y, and every
 * parameter gradient. */
static void tape_graph(int fused, int recompute, tparam *P, const mf_tensor *X, int N, int C, int H,
                       float *outs /* [TG_LAYERS (2 N C + N H) + N] */, float *grads /* the params' sizes */) {
  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 1 << 20);
  mf_ctx_set_recompute(c, recompute);
  for (int i = 0; i < TP_N; i++) memset(P[i].t.grad, 0, mf_nbytes(&P[i].t));
  mf_tensor *x = (mf_tensor *)X;
  mf_tensor *s = mf_matmul(c, x, &P[TP_WA].t, NULL, 0), *d = mf_matmul(c, x, &P[TP_WB].t, NULL, 0);
  size_t nc = (size_t)N * C, nh = (size_t)N * H;
  for (int l = 0; l < TG_LAYERS; l++) {
    mf_tensor *h, *f;
    if (fused == 2) { /* the MLP as one call: matmul node + gelu_matmul node */
      h = mf_residual_layernorm(c, s, d, &P[TP_LW].t, &P[TP_LB].t, &s);
      d = mf_mlp(c, h, &P[TP_W1].t, &P[TP_B1].t, &P[TP_W2].t, NULL, &f);
    } else if (fused) {
      h = mf_residual_layernorm(c, s, d, &P[TP_LW].t, &P[TP_LB].t, &s);
      f = mf_matmul_gelu(c, h, &P[TP_W1].t, &P[TP_B1].t, 0);
    } else {
      s = mf_residual(c, s, d);
      h = mf_layernorm(c, s, &P[TP_LW].t, &P[TP_LB].t);
      f = mf_gelu(c, mf_matmul(c, h, &P[TP_W1].t, &P[TP_B1].t, 0));
    }
    CHECKF(f != NULL, "tape graph (fused %d, recompute %d): %s", fused, recompute, mf_error_message());
    if (!f) break;
    memcpy(outs, h->data, nc * 4); /* before the next layer takes a shared buffer */
    memcpy(outs + nc, s->data, nc * 4);
    memcpy(outs + 2 * nc, f->data, nh * 4);
    outs += 2 * nc + nh;
    if (fused != 2) d = mf_matmul(c, f, &P[TP_W2].t, NULL, 0);
  }
  mf_tensor *y = mf_matmul(c, mf_residual(c, s, d), &P[TP_R].t, NULL, 0);
  CHECK(y != NULL);
  if (y) {
    memcpy(outs, y->data, (size_t)N * 4);
    CHECK(mf_backward(c, y, 1.0f) == MF_OK);
  }
  for (int i = 0; i < TP_N; i++) {
    memcpy(grads, P[i].t.grad, mf_nbytes(&P[i].t));
    grads += mf_numel(&P[i].t);
  }
  mf_ctx_destroy(c);
}

/* mf_residual_layernorm with mf_matmul_gelu, and with mf_mlp, against the unfused ops: the
 * same outputs and parameter gradients bit for bit, also under recompute (which remakes the
 * fused ops' layernorm and GELU outputs from what they saved) */
static void test_fused_tape(void) {
  const int N = 6, C = 24, H = 40, K = 10;
  tparam P[TP_N];
  tp_make(&P[TP_WA], 2, (int64_t[]){K, C}, -1, 1);
  tp_make(&P[TP_WB], 2, (int64_t[]){K, C}, -1, 1);
  tp_make(&P[TP_LW], 1, (int64_t[]){C}, 0.5f, 1.5f);
  tp_make(&P[TP_LB], 1, (int64_t[]){C}, -0.5f, 0.5f);
  tp_make(&P[TP_W1], 2, (int64_t[]){C, H}, -1, 1);
  tp_make(&P[TP_B1], 1, (int64_t[]){H}, -1, 1);
  tp_make(&P[TP_W2], 2, (int64_t[]){H, C}, -0.3f, 0.3f);
  tp_make(&P[TP_R], 2, (int64_t[]){C, 1}, -1, 1);
  float *xd = randf((size_t)N * K, -1, 1);
  mf_tensor X = mf_view(xd, MF_F32, 2, (int64_t[]){N, K});
  size_t nout = TG_LAYERS * ((size_t)2 * N * C + (size_t)N * H) + N, ng = 0;
  for (int i = 0; i < TP_N; i++) ng += (size_t)mf_numel(&P[i].t);
  float *o0 = malloc(nout * 4), *g0 = malloc(ng * 4), *o1 = malloc(nout * 4), *g1 = malloc(ng * 4);
  tape_graph(0, 0, P, &X, N, C, H, o0, g0);
  int nz = 0;
  for (size_t i = 0; i < ng; i++) nz += g0[i] != 0;
  CHECKF(nz > (int)ng * 9 / 10, "tape graph: only %d of %zu gradient elements are nonzero", nz, ng);
  for (int fu = 1; fu <= 2; fu++)
    for (int rc = 0; rc <= 2; rc++) {
      tape_graph(fu, rc, P, &X, N, C, H, o1, g1);
      CHECKF(memcmp(o0, o1, nout * 4) == 0, "fused ops %d (recompute %d): outputs differ from the unfused ops", fu,
             rc);
      size_t diff = 0;
      for (size_t i = 0; i < ng; i++) diff += g0[i] != g1[i];
      CHECKF(diff == 0, "fused ops %d (recompute %d): %zu of %zu gradient elements differ from the unfused ops", fu,
             rc, diff, ng);
    }
  for (int i = 0; i < TP_N; i++) free(P[i].t.data), free(P[i].t.grad);
  free(xd), free(o0), free(g0), free(o1), free(g1);
}

/* ================================ attention ================================ */

static void ref_attention(double *out /* [B,T,C] */, double *lse /* [B,NH,T] or NULL */,
                          const double *qkv, int B, int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  double scale = 1.0 / sqrt((double)hs), *s = malloc(T * sizeof(double));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const double *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
        double mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
          s[j] = scale * dot_d(q, qkv + ((size_t)b * T + j) * C3 + C + h * hs, hs);
          if (s[j] > mx) mx = s[j];
        }
        double sum = 0;
        for (int j = 0; j <= t; j++) sum += (s[j] = exp(s[j] - mx));
        if (lse) lse[((size_t)b * NH + h) * T + t] = mx + log(sum);
        double *o = out + ((size_t)b * T + t) * C + h * hs;
        for (int d = 0; d < hs; d++) {
          double a = 0;
          for (int j = 0; j <= t; j++) a += s[j] * qkv[((size_t)b * T + j) * C3 + 2 * C + h * hs + d];
          o[d] = a / sum;
        }
      }
  free(s);
}

/* the analytic gradient in double, for shapes too big for finite differences */
static void ref_attention_backward(double *dqkv, const double *dout, const double *qkv, int B,
                                   int T, int C, int NH) {
  int hs = C / NH, C3 = 3 * C;
  double scale = 1.0 / sqrt((double)hs);
  double *p = malloc(T * sizeof(double)), *dp = malloc(T * sizeof(double));
  memset(dqkv, 0, sizeof(double) * B * T * C3);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const double *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
        const double *dO = dout + ((size_t)b * T + t) * C + h * hs;
        double mx = -INFINITY, sum = 0, D = 0;
        for (int j = 0; j <= t; j++) {
          p[j] = scale * dot_d(q, qkv + ((size_t)b * T + j) * C3 + C + h * hs, hs);
          if (p[j] > mx) mx = p[j];
        }
        for (int j = 0; j <= t; j++) sum += (p[j] = exp(p[j] - mx));
        for (int j = 0; j <= t; j++) {
          p[j] /= sum;
          dp[j] = dot_d(dO, qkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs, hs);
          D += p[j] * dp[j];
        }
        for (int j = 0; j <= t; j++) {
          double ds = p[j] * (dp[j] - D) * scale;
          const double *kj = qkv + ((size_t)b * T + j) * C3 + C + h * hs;
          double *dq = dqkv + ((size_t)b * T + t) * C3 + h * hs;
          double *dk = dqkv + ((size_t)b * T + j) * C3 + C + h * hs;
          double *dv = dqkv + ((size_t)b * T + j) * C3 + 2 * C + h * hs;
          for (int d = 0; d < hs; d++) {
            dq[d] += ds * kj[d];
            dk[d] += ds * q[d];
            dv[d] += p[j] * dO[d];
          }
        }
      }
  free(p);
  free(dp);
}

typedef struct {
  int B, T, C, NH;
  double *qkv, *R;
} att_ctx;

static double att_loss(void *p) {
  att_ctx *e = p;
  size_t n = (size_t)e->B * e->T * e->C;
  double *out = malloc(n * sizeof(double));
  ref_attention(out, NULL, e->qkv, e->B, e->T, e->C, e->NH);
  double L = dot_d(out, e->R, n);
  free(out);
  return L;
}

static void test_attention(void) {
  /* B, T, C, NH, gradient check: 0 none, 1 finite differences, 2 analytic double */
  /* head sizes 1..64 cover every column tail of the 16-wide micro-tiles (hs = 2, 3, 4,
   * 12, 17, 24, 32, 64); T up to 300 covers several key tiles and query blocks */
  const int shapes[][5] = {{1, 1, 4, 1, 1},    {2, 5, 6, 3, 1},    {1, 9, 8, 2, 1},
                           {1, 70, 6, 2, 1},   {1, 20, 24, 2, 1},  {2, 33, 51, 3, 2},
                           {2, 70, 72, 3, 2},  {1, 67, 64, 2, 2},  {1, 300, 64, 1, 2},
                           {2, 130, 96, 3, 2}, {1, 200, 128, 2, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], NH = shapes[s][3];
    int grad = shapes[s][4];
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = randf(nq, -2, 2), *out = nanf_buf(no), *lse = nanf_buf(nl);
    double *qd = to_d(qkv, nq), *ref = malloc(no * sizeof(double)), *rl = malloc(nl * sizeof(double));
    attention_forward(out, lse, qkv, B, T, C, NH);
    ref_attention(ref, rl, qd, B, T, C, NH);
    double e1 = mf_test_nerr(out, ref, no), e2 = mf_test_nerr(lse, rl, nl);
    CHECKF(e1 <= FWD_TOL && e2 <= FWD_TOL, "attention fwd B=%d T=%d C=%d NH=%d: out %.3g lse %.3g",
           B, T, C, NH, e1, e2);
    if (grad) {
      float *R = randf(no, -1, 1), *dqkv = nanf_buf(nq);
      double *g = malloc(nq * sizeof(double)), *Rd = to_d(R, no);
      if (grad == 1) {
        att_ctx ctx = {B, T, C, NH, qd, Rd};
        fd_grad(g, qd, nq, att_loss, &ctx);
      } else {
        ref_attention_backward(g, Rd, qd, B, T, C, NH);
      }
      attention_backward(dqkv, R, qkv, out, lse, B, T, C, NH);
      double err = mf_test_nerr(dqkv, g, nq);
      CHECKF(err <= GRAD_TOL, "attention bwd (%s) B=%d T=%d C=%d NH=%d: %.3g",
             grad == 1 ? "fd" : "analytic", B, T, C, NH, err);
      if (B * NH > 1) { /* heads are independent tasks: the same bits on one thread */
        float *out1 = nanf_buf(no), *lse1 = nanf_buf(nl), *dqkv1 = nanf_buf(nq);
        int nt = omp_get_max_threads();
        omp_set_num_threads(1);
        attention_forward(out1, lse1, qkv, B, T, C, NH);
        attention_backward(dqkv1, R, qkv, out1, lse1, B, T, C, NH);
        omp_set_num_threads(nt);
        CHECK(memcmp(out1, out, no * 4) == 0 && memcmp(lse1, lse, nl * 4) == 0 &&
              memcmp(dqkv1, dqkv, nq * 4) == 0);
        free(out1), free(lse1), free(dqkv1);
      }
      free(R), free(dqkv), free(g), free(Rd);
    }
    free(qkv), free(out), free(lse), free(qd), free(ref), free(rl);
  }
}

/* Cache layout [B,NH,Tmax,hs] from the k, v parts of qkv[B,T,3C]. */
static void fill_cache(float *kc, float *vc, const float *qkv, int B, int T, int C, int NH,
                       int Tmax) {
  int hs = C / NH;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const float *row = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
        size_t dst = (((size_t)b * NH + h) * Tmax + t) * hs;
        memcpy(kc + dst, row + C, hs * sizeof(float));
        memcpy(vc + dst, row + 2 * C, hs * sizeof(float));
      }
}

/* KV-cache attention against attention_forward: two fp32 implementations that sum in
 * different orders, so the bound is a few ulps of the output, not 0 */
#define KV_TOL 5e-6

static void test_attention_kv(void) {
  const int shapes[][4] = {{2, 67, 64, 2}, {1, 5, 6, 3}, {2, 200, 96, 3}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], NH = shapes[s][3], Tmax = T + 9;
    int hs = C / NH, C3 = 3 * C;
    size_t nq = (size_t)B * T * C3, no = (size_t)B * T * C, nc = (size_t)B * NH * Tmax * hs;
    float *qkv = randf(nq, -2, 2), *full = malloc(no * 4), *lse = malloc((size_t)B * NH * T * 4);
    attention_forward(full, lse, qkv, B, T, C, NH);
    float *kc = nanf_buf(nc), *vc = nanf_buf(nc); /* slots past the positions stay NaN */
    fill_cache(kc, vc, qkv, B, T, C, NH, Tmax);

    /* prefill of the whole sequence (q is a view into qkv, stride 3C) */
    int pos0[2] = {0, 0};
    float *out = nanf_buf(no);
    attention_kv_forward(out, qkv, kc, vc, pos0, C3, B, T, C, NH, Tmax);
    double err = mf_test_nerr_f(out, full, no);
    CHECKF(err <= KV_TOL, "attention_kv prefill B=%d T=%d C=%d NH=%d: %.3g", B, T, C, NH, err);

    /* decode one token at a time: row t at pos0 = t */
    double worst = 0;
    float *row = malloc((size_t)B * C * 4), *qrow = malloc((size_t)B * C3 * 4);
    for (int t = 0; t < T; t++) {
      for (int b = 0; b < B; b++) {
        memcpy(qrow + (size_t)b * C3, qkv + ((size_t)b * T + t) * C3, C3 * 4);
        pos0[b] = t;
      }
      attention_kv_forward(row, qrow, kc, vc, pos0, C3, B, 1, C, NH, Tmax);
      for (int b = 0; b < B; b++) {
        double e = mf_test_nerr_f(row + (size_t)b * C, full + ((size_t)b * T + t) * C, C);
        if (!(e <= worst)) worst = e;
      }
    }
    CHECKF(worst <= KV_TOL, "attention_kv decode B=%d T=%d C=%d NH=%d: %.3g", B, T, C, NH, worst);

    /* a chunk of Tq queries per sequence at different positions (q_stride = C: packed q);
     * a short chunk (the per-row path) and a long one (the tiled path) */
    for (int chunk = 0; chunk < 2 && B == 2; chunk++) {
      int Tq = chunk ? T / 3 : 5;
      int p0[2] = {T - Tq, 3};
      float *qb = malloc((size_t)B * Tq * C * 4), *ob = nanf_buf((size_t)B * Tq * C);
      for (int b = 0; b < B; b++)
        for (int t = 0; t < Tq; t++)
          memcpy(qb + ((size_t)b * Tq + t) * C, qkv + ((size_t)b * T + p0[b] + t) * C3, C * 4);
      attention_kv_forward(ob, qb, kc, vc, p0, C, B, Tq, C, NH, Tmax);
      worst = 0;
      for (int b = 0; b < B; b++) {
        double e = mf_test_nerr_f(ob + (size_t)b * Tq * C, full + ((size_t)b * T + p0[b]) * C,
                                  (size_t)Tq * C);
        if (!(e <= worst)) worst = e;
      }
      CHECKF(worst <= KV_TOL, "attention_kv mixed pos0 T=%d Tq=%d: %.3g", T, Tq, worst);
      free(qb), free(ob);
    }
    free(qkv), free(full), free(lse), free(kc), free(vc), free(out), free(row), free(qrow);
  }
}

/* ================================ softmax_xent ================================ */

static double ref_xent_row(double *probs /* [Vp] or NULL */, const double *x, int t, int V,
                           int Vp) {
  double mx = -INFINITY, sum = 0;
  for (int j = 0; j < V; j++)
    if (x[j] > mx) mx = x[j];
  for (int j = 0; j < V; j++) sum += exp(x[j] - mx);
  if (probs)
    for (int j = 0; j < Vp; j++) probs[j] = j < V ? exp(x[j] - mx) / sum : 0;
  return t < 0 ? 0 : log(sum) + mx - x[t];
}

static void test_softmax_xent(void) {
  const int shapes[][4] = {/* N, V, Vp, finite differences */
                           {1, 5, 5, 1},     {7, 17, 21, 1},    {3, 300, 307, 1},
                           {5, 1000, 1003, 0}, {4, 50257, 50304, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int N = shapes[s][0], V = shapes[s][1], Vp = shapes[s][2], fd = shapes[s][3];
    size_t n = (size_t)N * Vp;
    float *x = randf(n, -8, 8);
    for (int i = 0; i < N; i++)
      for (int j = V; j < Vp; j++) x[(size_t)i * Vp + j] = 1e30f; /* padding must be masked */
    if (N > 1)
      for (int j = 0; j < V; j++) x[Vp + j] += 60.0f; /* large logits: the max matters */
    int32_t *tg = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) tg[i] = randint(0, V);
    if (N > 2) tg[2] = -1;
    if (N > 4) tg[4] = -1;
    if (N > 1) tg[N - 1] = V - 1;

    double *xd = to_d(x, n), *rp = malloc(n * sizeof(double)), *rl = malloc(N * sizeof(double));
    for (int i = 0; i < N; i++)
      rl[i] = ref_xent_row(rp + (size_t)i * Vp, xd + (size_t)i * Vp, tg[i], V, Vp);
    float *loss = nanf_buf(N), *probs = nanf_buf(n);
    softmax_xent_forward(loss, probs, x, tg, N, V, Vp);
    double e1 = mf_test_nerr(loss, rl, N), e2 = mf_test_nerr(probs, rp, n);
    int pad0 = 1, ign0 = 1;
    for (int i = 0; i < N; i++) {
      for (int j = V; j < Vp; j++) pad0 &= probs[(size_t)i * Vp + j] == 0.0f;
      if (tg[i] < 0) ign0 &= loss[i] == 0.0f;
    }
    CHECKF(e1 <= FWD_TOL && e2 <= FWD_TOL && pad0 && ign0,
           "softmax_xent fwd N=%d V=%d Vp=%d: loss %.3g probs %.3g pad0 %d ign0 %d", N, V, Vp,
           e1, e2, pad0, ign0);
    /* in place: probs over the logits gives the same bits */
    float *xa = copyf(x, n), *la = nanf_buf(N);
    softmax_xent_forward(la, xa, xa, tg, N, V, Vp);
    CHECK(memcmp(xa, probs, n * 4) == 0 && memcmp(la, loss, N * 4) == 0);

    /* backward: L = sum(loss * R) */
    float *R = randf(N, -1, 1), *dl = nanf_buf(n);
    softmax_xent_backward(dl, R, probs, tg, N, V, Vp);
    double *g = malloc(n * sizeof(double));
    if (fd) { /* each row's loss depends on its own logits only */
      for (int i = 0; i < N; i++)
        for (int j = 0; j < Vp; j++) {
          double *xi = xd + (size_t)i * Vp, x0 = xi[j];
          if (j >= V) {
            g[(size_t)i * Vp + j] = 0;
            continue;
          }
          xi[j] = x0 + FD_STEP;
          double lp = ref_xent_row(NULL, xi, tg[i], V, Vp);
          xi[j] = x0 - FD_STEP;
          double lm = ref_xent_row(NULL, xi, tg[i], V, Vp);
          xi[j] = x0;
          g[(size_t)i * Vp + j] = R[i] * (lp - lm) / (2 * FD_STEP);
        }
    } else { /* analytic in double: (p - onehot) R */
      for (int i = 0; i < N; i++)
        for (int j = 0; j < Vp; j++)
          g[(size_t)i * Vp + j] = tg[i] < 0 ? 0 : (rp[(size_t)i * Vp + j] - (j == tg[i])) * R[i];
    }
    double err = mf_test_nerr(dl, g, n);
    int zero = 1;
    for (int i = 0; i < N; i++)
      for (int j = 0; j < Vp; j++)
        if ((j >= V || tg[i] < 0) && dl[(size_t)i * Vp + j] != 0.0f) zero = 0;
    CHECKF(err <= GRAD_TOL && zero, "softmax_xent bwd (%s) N=%d V=%d Vp=%d: %.3g zero %d",
           fd ? "fd" : "analytic", N, V, Vp, err, zero);
    /* in place over the probabilities */
    softmax_xent_backward(xa, R, xa, tg, N, V, Vp);
    CHECK(memcmp(xa, dl, n * 4) == 0);
    free(x), free(tg), free(xd), free(rp), free(rl), free(loss), free(probs), free(xa), free(la);
    free(R), free(dl), free(g);
  }
}

/* ================================ the step arena ================================ */

/* an allocator with a budget, as a device's memory: NULL beyond it */
static size_t arena_budget, arena_live;
static void *budget_alloc(size_t n) {
  if (arena_live + n > arena_budget) return NULL;
  size_t *p = malloc(n + 64);
  if (!p) return NULL;
  arena_live += n;
  p[0] = n;
  return (char *)p + 64;
}
static void budget_free(void *q) {
  if (!q) return;
  size_t *p = (size_t *)((char *)q - 64);
  arena_live -= p[0];
  free(p);
}

static void test_arena(void) {
  const size_t MiB = 1 << 20;
  /* a first step of many tensors: the blocks double, so 400 MiB of 1 MiB tensors and some
   * larger ones need ~10 extra blocks, not one per few tensors (which ran out of blocks) */
  arena_budget = (size_t)1 << 40, arena_live = 0;
  mf_arena *a = mf_arena_create(MiB, budget_alloc, budget_free);
  int ok = 1;
  for (int i = 0; i < 400 && ok; i++) ok = mf_arena_alloc(a, i % 40 == 39 ? 8 * MiB : MiB) != NULL;
  CHECKF(ok && mf_arena_grows(a) <= 12, "arena: 400 tensors took %d extra blocks (ok %d)", mf_arena_grows(a), ok);
  size_t peak = mf_arena_peak(a);
  mf_arena_reset(a);
  CHECKF(mf_arena_capacity(a) == peak && arena_live == peak, "arena: after the reset one block of the peak (%zu, %zu, %zu)",
         mf_arena_capacity(a), peak, arena_live);
  mf_arena_destroy(a);
  CHECK(arena_live == 0);
  /* near the limit: 39 of 40 MiB still fit although doubling would ask for more */
  arena_budget = 40 * MiB, arena_live = 0;
  a = mf_arena_create(MiB, budget_alloc, budget_free);
  for (int pass = 0; pass < 2; pass++) {
    int got = 0;
    for (int i = 0; i < 39; i++) got += mf_arena_alloc(a, MiB - 256) != NULL; /* + alignment: < 1 MiB */
    int grows = mf_arena_grows(a);
    mf_arena_reset(a);
    CHECKF(got == 39 && (pass == 0 || mf_arena_grows(a) == grows), "arena near its limit, pass %d: %d of 39 fit, "
           "%d extra blocks", pass, got, mf_arena_grows(a));
  }
  for (int i = 0; i < 39; i++) mf_arena_alloc(a, MiB - 256);
  CHECK(mf_arena_alloc(a, 2 * MiB) == NULL); /* 39 + 2 > 40: out of memory is still reported */
  mf_arena_destroy(a);
}

/* ================================ adamw, sumsq ================================ */

static void test_adamw(void) {
  const size_t sizes[] = {1, 7, 100003};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (int wdi = 0; wdi < 2; wdi++) {
      size_t n = sizes[s];
      float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = wdi ? 0.1f : 0.0f, gs = 0.5f;
      float *p = randf(n, -1, 1), *m = calloc(n, 4), *v = calloc(n, 4), *cp = randf(n, -1, 1);
      double *pd = to_d(p, n), *md = calloc(n, 8), *vd = calloc(n, 8);
      for (int t = 1; t <= 3; t++) {
        float *g = randf(n, -1, 1);
        if (n > 5) g[5] = 0.0f; /* v = 0 at step 1: eps alone in the denominator */
        adamw_update(p, m, v, t == 3 ? cp : NULL, g, n, lr, b1, b2, eps, wd, gs, t);
        double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
        for (size_t i = 0; i < n; i++) {
          double gi = (double)g[i] * gs;
          md[i] = b1 * md[i] + (1 - (double)b1) * gi;
          vd[i] = b2 * vd[i] + (1 - (double)b2) * gi * gi;
          pd[i] *= 1 - (double)lr * wd;
          pd[i] -= lr / bc1 * md[i] / (sqrt(vd[i]) / sqrt(bc2) + eps);
        }
        free(g);
      }
      double e1 = mf_test_nerr(p, pd, n), e2 = mf_test_nerr(m, md, n), e3 = mf_test_nerr(v, vd, n);
      CHECKF(e1 <= 1e-6 && e2 <= 1e-6 && e3 <= 1e-6, "adamw n=%zu wd=%g: p %.3g m %.3g v %.3g",
             n, wd, e1, e2, e3);
      CHECKF(memcmp(cp, p, n * sizeof *p) == 0, "adamw n=%zu: the params copy is not the updated params", n);
      free(p), free(m), free(v), free(cp), free(pd), free(md), free(vd);
    }
}

static void test_sumsq(void) {
  const size_t sizes[] = {0, 1, 7, 1000003};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    size_t n = sizes[s];
    float *x = randf(n, -3, 3);
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    double a = sumsq(x, n), b = sumsq(x, n);
    CHECKF(fabs(a - ref) <= 1e-12 * (ref + 1e-300) && a == b, "sumsq n=%zu: %.17g vs %.17g", n,
           a, ref);
    free(x);
  }
}

/* OpenBLAS's kernels (core/threads.c): on a CPU with AVX2 and FMA they are not its generic
 * SSE ones (the fallback for a CPU it does not know), and a user's OPENBLAS_CORETYPE is
 * kept (checked in a child process, this binary with --blas) */
static void test_blas_kernels(const char *self) {
  const char *k = mf_blas_kernels();
  printf("BLAS: %s\n", k);
#if defined(__x86_64__) && defined(__GNUC__)
  /* no AVX2, or the user chose the kernels (ours exports the variable only with a note) */
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
      (getenv("OPENBLAS_CORETYPE") && !strstr(k, "it took"))) {
    mf_test_skips++;
    return;
  }
  static const char *const generic[] = {"Prescott", "Core2",  "Penryn",     "Dunnington",
                                        "Nehalem",  "Atom",   "Sandybridge"};
  const char *core = openblas_get_corename();
  int is_generic = 0;
  for (size_t i = 0; i < sizeof generic / sizeof *generic; i++) is_generic |= strcasecmp(core, generic[i]) == 0;
  CHECKF(!is_generic, "OpenBLAS runs its generic %s kernels on a CPU with AVX2 and FMA", core);
  char cmd[4200], out[256] = "";
  snprintf(cmd, sizeof cmd, "OPENBLAS_CORETYPE=Haswell '%s' --blas", self);
  FILE *f = popen(cmd, "r");
  CHECK(f != NULL);
  if (!f) return;
  if (!fgets(out, sizeof out, f)) out[0] = 0;
  int rc = pclose(f);
  CHECKF(rc == 0 && strstr(out, "OpenBLAS Haswell kernels") && !strstr(out, "it took"),
         "OPENBLAS_CORETYPE=Haswell: the child ran \"%s\" (exit %d)", out, rc);
#else
  (void)self;
  mf_test_skips++;
#endif
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--blas") == 0) { /* test_blas_kernels' child */
    printf("%s\n", mf_blas_kernels());
    return 0;
  }
  test_blas_kernels(argv[0]);
  test_vexpf();
  test_encoder();
  test_layernorm();
  test_matmul();
  test_gelu();
  test_residual();
  test_matmul_gelu();
  test_gelu_matmul();
  test_residual_layernorm();
  test_fused_tape();
  test_attention();
  test_attention_kv();
  test_softmax_xent();
  test_arena();
  test_adamw();
  test_sumsq();
  return mf_test_report("test_ops");
}
