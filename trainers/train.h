/* The training loop and the pieces `mforge eval` and `mforge generate` share with it. */
#ifndef MF_TRAIN_H
#define MF_TRAIN_H

#include "core/config.h"
#include "core/tape.h"
#include "datasets/tokens.h"
#include "trainers/gpt.h"

/* Trains as cfg says (resume, init_from, freeze included). Returns MF_OK also when stopped
 * early by train.stop_after or SIGINT/SIGTERM (a checkpoint was written). */
mf_status mf_train(mf_config *cfg);

/* One optimizer step: forward/backward over `accum` micro-batches (inputs[k], targets[k]:
 * [B,T] each), global-norm clipping, AdamW at step `step` (1-based) with the scheduled LR.
 * Reports the mean loss and the gradient norm before clipping. */
struct mf_adamw;
struct mf_backend;
mf_status mf_gpt_train_step(mf_gpt *g, mf_ctx *c, struct mf_adamw *opt, const struct mf_backend *be,
                            const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                            int32_t *const *targets, int B, int T, double *loss, double *grad_norm);

/* Mean per-token loss over the first max_batches batches of B windows (0 = all) of ts,
 * in order. The context stops recording for the duration. */
mf_status mf_eval_loss(mf_gpt *g, mf_ctx *c, const mf_token_set *ts, int T, int B, int max_batches,
                       double *loss, int64_t *tokens);

/* Opens a checkpoint for inference: its config (into cfg) and a model with its params. */
mf_status mf_model_open(const char *ckpt, mf_config *cfg, mf_gpt **g);

/* mkdir -p */
mf_status mf_mkdirs(const char *path);

#endif
