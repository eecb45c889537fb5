/* The training loop and the pieces `mforge eval` and `mforge generate` share with it. */
#ifndef MF_TRAIN_H
#define MF_TRAIN_H

#include "core/config.h"
#include "core/tape.h"
#include "datasets/tokens.h"
#include "trainers/gpt.h"

/* Trains as cfg says (resume, init_from, freeze included). Returns MF_OK also when stopped
 * early by train.stop_after or SIGINT/SIGTERM (a checkpoint was written).
 *
 * Under an MPI launcher (mpirun -np N, srun) every rank calls it: ranks form a DP x TP
 * grid (parallel.tp; data parallel = N / tp), each reads its own windows of every global
 * batch, gradients are reduced in buckets overlapped with backward (parallel.bucket_mb;
 * parallel.zero: 1 shards the optimizer state), and world rank 0 alone prints, writes
 * metrics and checkpoints. A config mistake is reported by every rank and MPI ends
 * normally; any other failure on one rank ends the whole job at once (MPI_Abort) after
 * that rank prints "mforge: error: rank N: ...", so no rank waits forever. It finalizes
 * MPI when it started it. train.threads 0 divides the cores among the node's ranks. */
mf_status mf_train(mf_config *cfg);

/* Tests only: called on every rank in each step after the first micro-batch's forward
 * (world rank, step). A non-OK status fails the step on that rank (fault injection). */
typedef mf_status (*mf_train_hook)(int rank, int step);
void mf_train_set_hook(mf_train_hook fn);

/* One optimizer step: forward/backward over `accum` micro-batches (inputs[k], targets[k]:
 * [B,T] each), global-norm clipping, AdamW at step `step` (1-based) with the scheduled LR.
 * Reports the mean loss and the gradient norm before clipping. */
struct mf_adamw;
struct mf_backend;
struct mf_par;
struct mf_dp;
mf_status mf_gpt_train_step(mf_gpt *g, mf_ctx *c, struct mf_adamw *opt, const struct mf_backend *be,
                            const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                            int32_t *const *targets, int B, int T, double *loss, double *grad_norm);

/* The micro-step (forward and backward) captured once as a CUDA graph and replayed after
 * (config key cuda_graph; trainers/train.c says what stays fixed). For backends with graph
 * entries only (CUDA; MF_ERR_CONFIG otherwise), one process, static shapes: the graph is
 * made again when B, T, the recompute level or the step arena change, never silently
 * reused. The same kernels on the same data as without: the same losses, bit for bit. */
typedef struct mf_step_graph mf_step_graph;
mf_status mf_step_graph_create(mf_step_graph **sg, const struct mf_backend *be);
void mf_step_graph_free(mf_step_graph *sg);
void mf_step_graph_stats(const mf_step_graph *sg, long *captures, long *replays);
/* mf_gpt_train_step with the micro-steps replayed from sg (NULL: run as they come) */
mf_status mf_gpt_train_step_graph(mf_step_graph *sg, mf_gpt *g, mf_ctx *c, struct mf_adamw *opt,
                                  const struct mf_backend *be, const mf_train_cfg *tc, int step, int accum,
                                  int32_t *const *inputs, int32_t *const *targets, int B, int T,
                                  double *loss, double *grad_norm);

/* How a step spreads over the ranks (every rank of the grid runs the same steps). */
typedef struct mf_dist {
  struct mf_par *par;    /* the DP x TP grid; g was made with par->tp (mf_gpt_create_tp) */
  mf_step_graph *graph;  /* one process only: the micro-step as a CUDA graph (NULL: none);
                          * owned (mf_dist_free); set after mf_dist_init */
  struct mf_dp *dp;      /* gradient sync over par->dp; NULL with one data-parallel rank */
  double *norm_w;        /* per parameter: its weight in the squared gradient norm */
  int stop_in, stop_out; /* in: this rank wants to stop; out: some rank does (all agree) */
} mf_dist;

/* Sets up d for g on par: gradient buckets of pc->bucket_mb MiB and, with pc->zero, the
 * optimizer state of this rank's shard only; initialises opt to match. */
mf_status mf_dist_init(mf_dist *d, struct mf_par *par, mf_gpt *g, const mf_parallel_cfg *pc,
                       const struct mf_backend *be, struct mf_adamw *opt);
void mf_dist_free(mf_dist *d);
/* mf_gpt_train_step on every rank of d's grid: `accum` is this rank's micro-batches (its
 * windows of the global batch of B x accum x dp); the loss and the norm are those of the
 * global batch, the same on every rank. d NULL: one process. */
mf_status mf_gpt_train_step_dist(mf_gpt *g, mf_ctx *c, struct mf_adamw *opt, const struct mf_backend *be,
                                 const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                                 int32_t *const *targets, int B, int T, mf_dist *d, double *loss,
                                 double *grad_norm);

/* Mean per-token loss over the first max_batches batches of B windows (0 = all) of ts,
 * in order. The context stops recording for the duration. */
mf_status mf_eval_loss(mf_gpt *g, mf_ctx *c, const mf_token_set *ts, int T, int B, int max_batches,
                       double *loss, int64_t *tokens);
/* The same on every rank of par: data-parallel ranks take every dp-th batch, and the sum
 * is reduced (par NULL: mf_eval_loss). */
mf_status mf_eval_loss_par(mf_gpt *g, mf_ctx *c, const mf_token_set *ts, int T, int B, int max_batches,
                           struct mf_par *par, double *loss, int64_t *tokens);

/* Opens a checkpoint for inference: its config (into cfg) and a model with its params. */
mf_status mf_model_open(const char *ckpt, mf_config *cfg, mf_gpt **g);

/* mkdir -p */
mf_status mf_mkdirs(const char *path);

#endif
