/* GPT vs PyTorch: builds a small GPT (odd sizes, padded vocabulary), writes its initial
 * weights as a checkpoint, then logits, loss, all gradients and 10 AdamW steps (losses and
 * final params) to c_out.h5; tests/ref/gpt_check.py recomputes all of it in PyTorch from
 * the same checkpoint and compares (normalised error <= 1e-4). Without torch the test
 * reports a skip and fails if MF_REQUIRE_TORCH=1 (CI sets it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/h5.h"
#include "core/optim.h"
#include "core/threads.h"
#include "kernels/backend.h"
#include "tests/test.h"
#include "trainers/checkpoint.h"
#include "trainers/gpt.h"
#include "trainers/train.h"

enum { L = 2, NH = 3, C = 48, V = 1000, MAXT = 32, B = 3, T = 17, STEPS = 10 };

static void batch(mf_rng *r, int32_t *idx, int32_t *tgt) {
  for (int i = 0; i < B * T; i++) {
    idx[i] = (int32_t)mf_rng_below(r, V);
    tgt[i] = (int32_t)mf_rng_below(r, V);
  }
}

static int write_grads(mf_h5 *h, const mf_params *ps, const char *group, const float *base) {
  for (int i = 0; i < ps->n; i++) {
    const mf_param *p = &ps->p[i];
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", group, p->name);
    int64_t shape[4];
    for (int d = 0; d < p->t.ndim; d++) shape[d] = p->t.shape[d];
    shape[0] = p->ckpt_rows;
    if (mf_h5_write(h, path, MF_F32, base + p->offset, p->t.ndim, shape) != MF_OK) return 0;
  }
  return 1;
}

int main(void) {
  mf_set_threads(2);
  char dir[] = "/tmp/mf_gpt_ref.XXXXXX";
  if (!mkdtemp(dir)) return 1;
  mf_config cfg;
  mf_config_defaults(&cfg);
  cfg.model = (mf_model_cfg){.family = "gpt", .n_layer = L, .n_head = NH, .n_embd = C, .block_size = MAXT,
                             .vocab_size = V};
  mf_train_cfg *tc = &cfg.train;
  tc->steps = STEPS;
  tc->lr = 1e-3f;
  tc->min_lr = 1e-4f;
  tc->warmup_steps = 3;
  tc->weight_decay = 0.1f;
  tc->grad_clip = 1.0f;
  mf_gpt *g;
  CHECK(mf_gpt_create(&g, &cfg.model) == MF_OK);
  mf_params_init(&g->params, 7);
  char path[256];
  snprintf(path, sizeof path, "%s/init.h5", dir);
  CHECK(mf_ckpt_save(path, &cfg, &g->params, NULL, NULL, NULL, "export") == MF_OK);

  mf_ctx *c = mf_ctx_create(&mf_backend_cpu, 1 << 20);
  mf_rng r;
  mf_rng_seed(&r, 99, 0);
  int32_t idx[B * T], tgt[B * T];
  batch(&r, idx, tgt);
  mf_tensor ti = mf_view(idx, MF_I32, 2, (int64_t[]){B, T}), tt = mf_view(tgt, MF_I32, 2, (int64_t[]){B, T});

  snprintf(path, sizeof path, "%s/c_out.h5", dir);
  mf_h5 *h;
  CHECK(mf_h5_create(&h, path) == MF_OK);
  const char *ik[] = {"n_layer", "n_head", "n_embd", "vocab_size", "block_size", "warmup", "steps"};
  int64_t iv[] = {L, NH, C, V, MAXT, tc->warmup_steps, STEPS};
  for (int i = 0; i < 7; i++) mf_h5_set_i64(h, "/", ik[i], iv[i]);
  const char *fk[] = {"lr", "min_lr", "weight_decay", "grad_clip", "beta1", "beta2", "eps"};
  double fv[] = {tc->lr, tc->min_lr, tc->weight_decay, tc->grad_clip, tc->beta1, tc->beta2, tc->eps};
  for (int i = 0; i < 7; i++) mf_h5_set_f64(h, "/", fk[i], fv[i]);
  mf_h5_write(h, "/idx", MF_I32, idx, 2, (int64_t[]){B, T});
  mf_h5_write(h, "/targets", MF_I32, tgt, 2, (int64_t[]){B, T});

  /* logits (first V of Vp columns) */
  mf_ctx_set_record(c, 0);
  mf_tensor *lg = mf_gpt_forward(g, c, &ti, NULL);
  CHECK(lg != NULL);
  float *logits = malloc(sizeof(float) * B * T * V);
  for (int i = 0; i < B * T; i++) memcpy(logits + i * V, (float *)lg->data + (size_t)i * g->Vp, V * sizeof(float));
  /* padded columns are exactly zero logits: wte's padded rows are zero */
  for (int i = 0; i < B * T; i++)
    for (int j = V; j < g->Vp; j++) CHECK(((float *)lg->data)[(size_t)i * g->Vp + j] == 0.0f);
  mf_h5_write(h, "/logits", MF_F32, logits, 3, (int64_t[]){B, T, V});
  free(logits);

  /* loss and gradients */
  mf_ctx_reset(c);
  mf_ctx_set_record(c, 1);
  mf_tensor *losses = mf_gpt_forward(g, c, &ti, &tt);
  CHECK(losses != NULL);
  double sum = 0;
  for (int i = 0; i < B * T; i++) sum += ((float *)losses->data)[i];
  float loss = (float)(sum / (B * T));
  mf_h5_write(h, "/loss", MF_F32, &loss, 1, (int64_t[]){1});
  mf_params_zero_grad(&g->params);
  CHECK(mf_backward(c, losses, 1.0f / (B * T)) == MF_OK);
  CHECK(write_grads(h, &g->params, "grads", g->params.grad));
  /* padded rows of wte get no gradient */
  const float *gw = g->wte->grad;
  int pad_clean = 1;
  for (size_t i = (size_t)V * C; i < (size_t)g->Vp * C; i++) pad_clean &= gw[i] == 0.0f;
  CHECK(pad_clean);

  /* 10 AdamW steps, as the trainer does them */
  mf_adamw opt;
  CHECK(mf_adamw_init(&opt, g->params.numel) == MF_OK);
  int32_t sidx[STEPS][B * T], stgt[STEPS][B * T];
  float sloss[STEPS];
  for (int s = 0; s < STEPS; s++) {
    batch(&r, sidx[s], stgt[s]);
    int32_t *pi = sidx[s], *pt = stgt[s];
    double l, norm;
    CHECK(mf_gpt_train_step(g, c, &opt, &mf_backend_cpu, tc, s + 1, 1, &pi, &pt, B, T, &l, &norm) == MF_OK);
    sloss[s] = (float)l;
  }
  mf_h5_write(h, "/step_idx", MF_I32, sidx, 3, (int64_t[]){STEPS, B, T});
  mf_h5_write(h, "/step_tgt", MF_I32, stgt, 3, (int64_t[]){STEPS, B, T});
  mf_h5_write(h, "/step_loss", MF_F32, sloss, 1, (int64_t[]){STEPS});
  CHECK(write_grads(h, &g->params, "final", g->params.data));
  CHECK(mf_h5_commit(h) == MF_OK);
  /* the loss must actually fall on repeated random batches? no: random targets; check finite */
  for (int s = 0; s < STEPS; s++) CHECK(sloss[s] > 0 && sloss[s] < 20);

  if (system("/usr/bin/python3 -c 'import torch, h5py' >/dev/null 2>&1") != 0) {
    const char *req = getenv("MF_REQUIRE_TORCH");
    if (req && strcmp(req, "1") == 0) {
      CHECKF(0, "PyTorch/h5py not importable by /usr/bin/python3 (scripts/setup.sh --tests installs them)");
    } else {
      SKIP("gpt vs torch: /usr/bin/python3 cannot import torch and h5py");
    }
  } else {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/ref/gpt_check.py %s", dir);
    int rc = system(cmd);
    CHECKF(rc == 0, "tests/ref/gpt_check.py reported differences (rc %d)", rc);
  }
  char rm[300];
  snprintf(rm, sizeof rm, "rm -rf %s", dir);
  if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", dir);
  mf_adamw_free(&opt);
  mf_ctx_destroy(c);
  mf_gpt_free(g);
  return mf_test_report("test_gpt_ref");
}
