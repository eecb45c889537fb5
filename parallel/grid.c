#include "parallel/grid.h"

#include <string.h>

mf_status mf_par_init(mf_par *p, mf_comm *world, int tp) {
  memset(p, 0, sizeof *p);
  int n = mf_comm_size(world), r = mf_comm_rank(world);
  if (tp < 1 || n % tp != 0)
    return MF_ERR(MF_ERR_CONFIG, "parallel.tp (%d) must divide the number of ranks (%d): data parallel = "
                  "ranks / parallel.tp", tp, n);
  p->world = world;
  p->rank = r;
  p->size = n;
  p->tp_size = tp;
  p->dp_size = n / tp;
  p->tp_rank = r % tp;
  p->dp_rank = r / tp;
  MF_TRY(mf_comm_split(world, p->dp_rank, p->tp_rank, &p->tp));
  mf_status st = mf_comm_split(world, p->tp_rank, p->dp_rank, &p->dp);
  if (st != MF_OK) {
    mf_comm_destroy(p->tp);
    p->tp = NULL;
  }
  p->dp_host = p->dp;
  p->tp_host = p->tp;
  return st;
}

#ifdef MF_HAVE_NCCL
mf_status mf_par_use_nccl(mf_par *p, int device, void *stream) {
  if (p->dp != p->dp_host || p->tp != p->tp_host) return MF_OK; /* already */
  mf_comm *dp, *tp;
  MF_TRY(mf_comm_nccl_create(p->dp_host, device, stream, &dp));
  mf_status st = mf_comm_nccl_create(p->tp_host, device, stream, &tp);
  if (st != MF_OK) {
    mf_comm_destroy(dp);
    return st;
  }
  p->dp = dp;
  p->tp = tp;
  return MF_OK;
}
#endif

void mf_par_free(mf_par *p) {
  if (p->dp != p->dp_host) mf_comm_destroy(p->dp);
  if (p->tp != p->tp_host) mf_comm_destroy(p->tp);
  mf_comm_destroy(p->dp_host);
  mf_comm_destroy(p->tp_host);
  memset(p, 0, sizeof *p);
}
