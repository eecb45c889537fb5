/* Parameters: every model registers its tensors by name (Hugging Face style, e.g.
 * "h.3.attn.c_attn.weight") with shape, init, weight-decay flag and tensor-parallel split.
 * All live in one flat buffer (and their gradients in a second of the same layout), so
 * the optimizer and the all-reduce see one range while checkpoints see names. */
#ifndef MF_PARAMS_H
#define MF_PARAMS_H

#include <stddef.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/tensor.h"

typedef enum mf_init { MF_INIT_NORMAL, MF_INIT_ZEROS, MF_INIT_ONES } mf_init;
/* how tensor parallelism splits it: whole on every rank, by output columns, by input
 * rows, or by vocabulary rows */
typedef enum mf_split { MF_SPLIT_NONE, MF_SPLIT_COL, MF_SPLIT_ROW, MF_SPLIT_VOCAB } mf_split;

#define MF_PARAM_NAME 64

typedef struct mf_param {
  char name[MF_PARAM_NAME];
  mf_tensor t;        /* view: data into the params buffer, grad into the grads buffer */
  int64_t ckpt_rows;  /* rows stored in checkpoints (< shape[0] for a padded vocabulary) */
  size_t offset;      /* in floats, into the flat buffers */
  mf_init init;
  float init_std;
  int decay;          /* AdamW weight decay applies */
  int frozen;         /* fine-tuning: no gradient, no update */
  mf_split split;
} mf_param;

typedef struct mf_params {
  mf_param *p;
  int n, cap;
  float *data;  /* [numel] host: what init, checkpoints and export read and write */
  float *grad;  /* [numel] host */
  size_t numel;
  /* placed on a device backend (mf_params_place): the views point into these instead;
   * NULL on the CPU, where data/grad are the compute buffers themselves */
  const struct mf_backend *be;
  float *dev_data;     /* [numel] fp32: the compute copy, or the master when be->act is bf16 */
  void *dev_copy;      /* [numel] be->act (bf16 only): the weights the kernels read */
  void *dev_grad;      /* [numel] be->act */
} mf_params;

/* Registers a parameter (before mf_params_alloc). ckpt_rows = 0 means shape[0]. */
mf_status mf_params_add(mf_params *ps, const char *name, int ndim, const int64_t *shape,
                        int64_t ckpt_rows, mf_init init, float std, int decay, mf_split split);
/* Allocates the flat buffers (64-byte aligned, grads zeroed) and points the views. */
mf_status mf_params_alloc(mf_params *ps);
/* Fills every parameter from its init rule; a padded vocabulary's extra rows stay 0. */
void mf_params_init(mf_params *ps, uint64_t seed);
mf_param *mf_params_find(const mf_params *ps, const char *name);
void mf_params_zero_grad(mf_params *ps);
/* Puts the compute copy on be's memory (a no-op for the CPU backend): allocates device
 * buffers once, copies data there and points every view at them. */
mf_status mf_params_place(mf_params *ps, const struct mf_backend *be);
/* host data -> device copy (after loading), device -> host (before saving); no-ops on the CPU */
void mf_params_push(mf_params *ps);
void mf_params_pull(mf_params *ps);
/* bf16 backends: the kernels' weight copy from the fp32 master (after loading; AdamW
 * writes it as it updates); _range: elements [lo, hi) only (widened to whole 16-byte
 * groups, which is harmless: elsewhere the copy already equals the cast master) */
void mf_params_refresh_copy(mf_params *ps);
void mf_params_refresh_copy_range(mf_params *ps, size_t lo, size_t hi);
/* the bf16 copy at flat element i (NULL when there is none: fp32, or the CPU) */
float *mf_params_copy_at(const mf_params *ps, size_t i);
/* the buffers the optimizer sees: fp32 (master) weights, and the gradients (in the
 * backend's act dtype) from flat element i on; device copies when placed, else the host ones */
float *mf_params_compute_data(const mf_params *ps);
float *mf_params_compute_grad(const mf_params *ps, size_t i);
/* Marks parameters whose name matches any glob pattern ("h.*.attn.*", "wte.weight")
 * as frozen; returns how many matched in *count; a pattern matching nothing is an error. */
mf_status mf_params_freeze(mf_params *ps, char (*patterns)[MF_PARAM_NAME], int n, int *count);
size_t mf_params_count_trainable(const mf_params *ps);
void mf_params_free(mf_params *ps);

#endif
