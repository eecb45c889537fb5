/* Training checkpoints in HDF5, as DESIGN.md lays out:
 *   /            attrs format="mforge-checkpoint", version, family, kind (train | export)
 *   /config      attrs yaml (the resolved config), family, version
 *   /params/<n>  whole tensors (a padded vocabulary stores its real rows only)
 *   /optim/<n>/m, /optim/<n>/v   AdamW moments (train checkpoints only)
 *   /state       attrs step, tokens_seen, data_epoch, data_cursor, data_seed, loss, val_loss
 * Files are written under a temporary name and renamed into place (core/h5.h).
 *
 * Tensors are stored whole whatever the parallel layout, so a run saved with one world
 * size / tensor-parallel degree / ZeRO setting resumes with any other: the _par
 * functions gather the ranks' slices to world rank 0, which alone writes, and on load
 * rank 0 reads each whole tensor and broadcasts it, and every rank keeps its slice. */
#ifndef MF_CHECKPOINT_H
#define MF_CHECKPOINT_H

#include <stdint.h>

#include "core/config.h"
#include "core/params.h"

#define MF_CKPT_VERSION 1

typedef struct mf_train_state {
  int64_t step;         /* optimizer steps done */
  int64_t tokens_seen;
  int64_t data_epoch, data_cursor;
  int64_t data_seed;
  double loss, val_loss; /* last seen; NaN when none */
} mf_train_state;

struct mf_adamw;
struct mf_par;
struct mf_tp_param;

/* m, v: NULL for a checkpoint without optimizer state. */
mf_status mf_ckpt_save(const char *path, const mf_config *cfg, const mf_params *ps,
                       const float *m, const float *v, const mf_train_state *st, const char *kind);
/* Reads /config into cfg (over its defaults). */
mf_status mf_ckpt_read_config(const char *path, mf_config *cfg);
/* Loads every parameter; the checkpoint must hold exactly these names and shapes. */
mf_status mf_ckpt_load_params(const char *path, mf_params *ps);
mf_status mf_ckpt_load_optim(const char *path, const mf_params *ps, float *m, float *v);
mf_status mf_ckpt_load_state(const char *path, mf_train_state *st);

/* Every rank calls these. whole[i]: where parameter i's local slice sits in its whole
 * tensor (trainers/gpt.h); opt: the optimizer state of this rank (its ranges, for
 * ZeRO-1), NULL for none; par: the grid (NULL: one process). Save: only world rank 0
 * touches the file; every rank returns its status (MF_ERR_IO on the others when rank 0
 * failed). Load: state may be NULL. */
mf_status mf_ckpt_save_par(const char *path, const mf_config *cfg, const mf_params *ps,
                           const struct mf_tp_param *whole, const struct mf_adamw *opt,
                           const mf_train_state *st, const char *kind, struct mf_par *par);
mf_status mf_ckpt_load_par(const char *path, mf_params *ps, const struct mf_tp_param *whole,
                           struct mf_adamw *opt, mf_train_state *st, struct mf_par *par);

#endif
