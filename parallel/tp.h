/* Tensor-parallel layout: how each rank's slice of a parameter sits in the whole tensor.
 * A model registers the local (sliced) shapes in its mf_params and keeps one mf_tp_param
 * per parameter with the whole shape; checkpoints, initialisation and resharding go
 * through mf_tp_extract / mf_tp_insert, so whole tensors are all anyone outside sees.
 *
 * Splits (core/params.h mf_split) over tp ranks, rank r:
 *   NONE   the whole tensor on every rank (layernorms, row-parallel biases, positions)
 *   COL    output columns (last dim). With groups = G the columns are G equal blocks,
 *          each split on its own: QKV [C, 3C] is [q | k | v], rank r holds
 *          [q_r | k_r | v_r], i.e. the q, k and v columns of its heads (G = 3).
 *   ROW    input rows (first dim): rows [r*R/tp, (r+1)*R/tp).
 *   VOCAB  vocabulary rows, as ROW over the padded vocabulary. */
#ifndef MF_TP_H
#define MF_TP_H

#include "core/params.h"

typedef struct mf_tp_param {
  mf_split split;
  int groups;                  /* COL: column blocks split separately (1, or 3 for QKV) */
  int ndim;
  int64_t shape[MF_MAX_DIMS];  /* the whole tensor (padded vocabulary rows included) */
  int64_t rows;                /* rows of the whole tensor kept in checkpoints */
} mf_tp_param;

int64_t mf_tp_numel(const mf_tp_param *w);
/* The local slice p of rank r (of tp) from the whole tensor, and back. */
void mf_tp_extract(const mf_tp_param *w, const mf_param *p, int tp, int r, const float *whole, float *local);
void mf_tp_insert(const mf_tp_param *w, const mf_param *p, int tp, int r, const float *local, float *whole);

#endif
