/* Activation recomputation (`recompute: 1|2`): for a random GPT and batch, the loss and
 * every parameter gradient equal those of recompute 0 bit for bit (the same kernels on
 * the same inputs), and the step arena's peak falls by the GELU outputs (level 1) and
 * also the layernorm outputs (level 2) that are no longer stored: one buffer of each
 * kind instead of one per use. */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "tests/test.h"
#include "trainers/gpt.h"

enum { L = 3, NH = 2, C = 32, V = 300, T = 24, B = 2 };

/* one forward + backward at `level`: loss, the flat gradients and the arena peak */
static void step(mf_gpt *g, int level, const int32_t *idx, const int32_t *tgt, double *loss, float *grads,
                 size_t *peak) {
  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 1 << 16); /* small: the peak is what grows */
  mf_ctx_set_recompute(c, level);
  mf_params_zero_grad(&g->params);
  mf_tensor ti = mf_view((void *)idx, MF_I32, 2, (int64_t[]){B, T});
  mf_tensor tt = mf_view((void *)tgt, MF_I32, 2, (int64_t[]){B, T});
  mf_tensor *losses = mf_gpt_forward(g, c, &ti, &tt);
  CHECKF(losses != NULL, "forward at recompute %d: %s", level, mf_error_message());
  double s = 0;
  for (int i = 0; losses && i < B * T; i++) s += ((float *)losses->data)[i];
  *loss = s / (B * T);
  CHECK(losses && mf_backward(c, losses, 1.0f / (B * T)) == MF_OK);
  memcpy(grads, g->params.grad, g->params.numel * sizeof(float));
  *peak = mf_ctx_arena_peak(c);
  mf_ctx_destroy(c);
}

int main(void) {
  mf_set_threads(2);
  mf_model_cfg mc = {.family = "gpt", .n_layer = L, .n_head = NH, .n_embd = C, .block_size = T, .vocab_size = V};
  mf_gpt *g;
  CHECK(mf_gpt_create(&g, &mc) == MF_OK);
  mf_params_init(&g->params, 5);
  int32_t idx[B * T], tgt[B * T];
  mf_rng r;
  mf_rng_seed(&r, 9, 0);
  for (int i = 0; i < B * T; i++) {
    idx[i] = (int32_t)mf_rng_below(&r, V);
    tgt[i] = (int32_t)mf_rng_below(&r, V);
  }
  size_t n = g->params.numel, peak[3];
  float *gr[3];
  double loss[3];
  for (int lv = 0; lv < 3; lv++) {
    gr[lv] = malloc(n * sizeof(float));
    step(g, lv, idx, tgt, &loss[lv], gr[lv], &peak[lv]);
  }
  size_t act = (size_t)B * T * C * sizeof(float); /* one [B,T,C] activation */
  for (int lv = 1; lv < 3; lv++) {
    CHECKF(loss[lv] == loss[0], "recompute %d: loss %.9g vs %.9g", lv, loss[lv], loss[0]);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += gr[lv][i] != gr[0][i];
    CHECKF(diff == 0, "recompute %d: %zu of %zu gradient elements differ from recompute 0", lv, diff, n);
  }
  CHECKF(loss[0] > 5 && loss[0] < 7, "loss %.4f is not near ln(%d) = 5.7 for random weights", loss[0], V);
  /* level 1 stores one GELU output [B,T,4C] instead of L; level 2 also one layernorm
   * output instead of 2L + 1 (the arena rounds each allocation up a little) */
  size_t want1 = (size_t)(L - 1) * 4 * act, want2 = want1 + (size_t)(2 * L) * act;
  CHECKF(peak[0] - peak[1] >= want1 && peak[0] - peak[1] <= want1 + want1 / 8,
         "recompute 1 saves %zu bytes, want ~%zu", peak[0] - peak[1], want1);
  CHECKF(peak[0] - peak[2] >= want2 && peak[0] - peak[2] <= want2 + want2 / 8,
         "recompute 2 saves %zu bytes, want ~%zu", peak[0] - peak[2], want2);
  printf("arena peak: %zu (recompute 0), %zu (1), %zu (2) bytes; gradients bitwise equal\n", peak[0], peak[1],
         peak[2]);
  for (int lv = 0; lv < 3; lv++) free(gr[lv]);
  mf_gpt_free(g);
  return mf_test_report("test_recompute");
}
