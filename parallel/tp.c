#include "parallel/tp.h"

#include <string.h>

int64_t mf_tp_numel(const mf_tp_param *w) {
  int64_t n = 1;
  for (int i = 0; i < w->ndim; i++) n *= w->shape[i];
  return n;
}

/* whole <-> local; dir 0: whole -> local, 1: local -> whole */
static void move(const mf_tp_param *w, const mf_param *p, int tp, int r, float *whole, float *local, int dir) {
  int64_t n = mf_numel(&p->t);
  size_t row_bytes;
  if (tp == 1 || w->split == MF_SPLIT_NONE) {
    if (dir) memcpy(whole, local, (size_t)n * sizeof(float));
    else memcpy(local, whole, (size_t)n * sizeof(float));
    return;
  }
  if (w->split == MF_SPLIT_ROW || w->split == MF_SPLIT_VOCAB) {
    float *wp = whole + (size_t)r * (size_t)n; /* rows r*Rl.. : n floats per rank */
    if (dir) memcpy(wp, local, (size_t)n * sizeof(float));
    else memcpy(local, wp, (size_t)n * sizeof(float));
    return;
  }
  /* COL: [R, Cw] whole, [R, Cw/tp] local (1-D: R = 1) */
  int64_t Cw = w->shape[w->ndim - 1], Cl = Cw / tp, R = mf_tp_numel(w) / Cw;
  int G = w->groups > 0 ? w->groups : 1;
  int64_t gw = Cw / G, lw = gw / tp;
  row_bytes = (size_t)lw * sizeof(float);
  for (int64_t i = 0; i < R; i++)
    for (int g = 0; g < G; g++) {
      float *a = whole + i * Cw + g * gw + (int64_t)r * lw, *b = local + i * Cl + g * lw;
      if (dir) memcpy(a, b, row_bytes);
      else memcpy(b, a, row_bytes);
    }
}

void mf_tp_extract(const mf_tp_param *w, const mf_param *p, int tp, int r, const float *whole, float *local) {
  move(w, p, tp, r, (float *)whole, local, 0);
}

void mf_tp_insert(const mf_tp_param *w, const mf_param *p, int tp, int r, const float *local, float *whole) {
  move(w, p, tp, r, whole, (float *)local, 1);
}
