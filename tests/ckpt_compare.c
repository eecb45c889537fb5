/* ckpt_compare A.h5 B.h5 [--rtol R] [--atol A] [--optim]: do two checkpoints of the same
 * model hold the same parameters (and AdamW moments) to tolerance? Prints, per tensor, the
 * relative L2 error and the largest element error, then the relative L2 over all of them.
 * Passes (exit 0) when the overall relative L2 <= rtol and every element is within
 * rtol x its tensor's largest |value| + atol. Used by the multi-rank tests, which compare
 * parallel runs with single-process ones.
 * The key block of attn.c_attn.bias (its middle third) is left out of the element check:
 * its gradient is zero in exact arithmetic (q . b_k adds one constant to all the scores of
 * a query; softmax ignores it), so it moves by Adam-normalised rounding noise, which no
 * two summation orders share. It counts in the relative L2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainers/checkpoint.h"
#include "trainers/train.h"

static int compare(const char *what, const mf_params *a, const float *da, const float *db, double rtol, double atol,
                   int verbose) {
  double num = 0, den = 0;
  int bad = 0;
  for (int i = 0; i < a->n; i++) {
    const mf_param *p = &a->p[i];
    size_t n = (size_t)(p->ckpt_rows * (mf_numel(&p->t) / p->t.shape[0]));
    const float *x = da + p->offset, *y = db + p->offset;
    double mx = 0, md = 0, excess = -1, tn = 0, td = 0;
    for (size_t j = 0; j < n; j++) mx = fmax(mx, fabs(x[j]));
    int kbias = strstr(p->name, "attn.c_attn.bias") != NULL;
    for (size_t j = 0; j < n; j++) {
      double d = fabs((double)x[j] - y[j]);
      if (!(d <= md)) md = d; /* NaN: sticks */
      double e = d - (rtol * mx + atol);
      if (!(e <= excess) && !(kbias && j >= n / 3 && j < 2 * n / 3)) excess = e;
      tn += d * d;
      td += (double)x[j] * x[j];
    }
    num += tn;
    den += td;
    int fail = !(excess <= 0);
    bad |= fail;
    if (verbose || fail)
      printf("  %s %-28s rel L2 %.2e  max |diff| %.2e  (max |value| %.2e)%s\n", what, p->name,
             td > 0 ? sqrt(tn / td) : sqrt(tn), md, mx, fail ? "  OUTSIDE TOLERANCE" : "");
  }
  double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  int ok = !bad && rel <= rtol;
  printf("%s: relative L2 %.3e over all tensors (rtol %.0e, atol %.0e): %s\n", what, rel, rtol, atol,
         ok ? "ok" : "DIFFERENT");
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ckpt_compare A.h5 B.h5 [--rtol R] [--atol A] [--optim] [-v]\n");
    return 2;
  }
  double rtol = 1e-5, atol = 1e-5;
  int optim = 0, verbose = 0;
  for (int i = 3; i < argc; i++) {
    if (strcmp(argv[i], "--rtol") == 0 && i + 1 < argc) rtol = atof(argv[++i]);
    else if (strcmp(argv[i], "--atol") == 0 && i + 1 < argc) atol = atof(argv[++i]);
    else if (strcmp(argv[i], "--optim") == 0) optim = 1;
    else if (strcmp(argv[i], "-v") == 0) verbose = 1;
    else {
      fprintf(stderr, "ckpt_compare: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  mf_config ca, cb;
  mf_gpt *a = NULL, *b = NULL;
  if (mf_model_open(argv[1], &ca, &a) != MF_OK || mf_model_open(argv[2], &cb, &b) != MF_OK) {
    fprintf(stderr, "ckpt_compare: %s\n", mf_error_message());
    return 2;
  }
  int ok = compare("params", &a->params, a->params.data, b->params.data, rtol, atol, verbose);
  if (optim) {
    size_t n = a->params.numel;
    float *ma = malloc(n * 4), *va = malloc(n * 4), *mb = malloc(n * 4), *vb = malloc(n * 4);
    if (mf_ckpt_load_optim(argv[1], &a->params, ma, va) != MF_OK ||
        mf_ckpt_load_optim(argv[2], &b->params, mb, vb) != MF_OK) {
      fprintf(stderr, "ckpt_compare: %s\n", mf_error_message());
      return 2;
    }
    /* moments follow the gradients: looser (the second moment squares their noise) */
    ok &= compare("optim m", &a->params, ma, mb, rtol * 10, atol, verbose);
    ok &= compare("optim v", &a->params, va, vb, rtol * 10, atol, verbose);
    free(ma), free(va), free(mb), free(vb);
  }
  mf_gpt_free(a);
  mf_gpt_free(b);
  return ok ? 0 : 1;
}
