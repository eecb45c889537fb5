/* The DP x TP grid: world rank = dp_rank * tp + tp_rank, so the ranks of one
 * tensor-parallel group are neighbours (one node under a block placement), and each
 * data-parallel group holds the same slice of every parameter. */
#ifndef MF_GRID_H
#define MF_GRID_H

#include "parallel/comm.h"

typedef struct mf_par {
  mf_comm *world;          /* host buffers; not owned */
  mf_comm *dp, *tp;        /* the groups the model's buffers travel over (gradients, TP ops) */
  mf_comm *dp_host, *tp_host; /* the same groups for host buffers (checkpoints, metrics) */
  int rank, size;
  int dp_rank, dp_size, tp_rank, tp_size;
} mf_par;

/* tp must divide the world size (MF_ERR_CONFIG naming parallel.tp otherwise). All groups
 * take host buffers (world's kind). */
mf_status mf_par_init(mf_par *p, mf_comm *world, int tp);
struct mf_backend;
/* GPU runs with several ranks: dp and tp become device communicators over the host groups
 * (dp_host and tp_host stay), by parallel.device_comm: "nccl" (NCCL; an error naming the
 * key in a build without it), "host" (staged: device buffers copied through host memory,
 * mf_comm_staged_create), "auto" (NCCL where built with it, else staged). dev: this rank's
 * GPU; NCCL orders its work after be->stream(). */
mf_status mf_par_use_device(mf_par *p, const char *how, int dev, const struct mf_backend *be);
void mf_par_free(mf_par *p);

#endif
