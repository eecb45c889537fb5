#include "parallel/grid.h"

#include <string.h>

#include "kernels/backend.h"

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

/* dp and tp replaced by device communicators that `make` builds over the host groups */
typedef mf_status (*make_fn)(mf_comm *host, void *arg, mf_comm **out);
static mf_status use_device(mf_par *p, make_fn make, void *arg) {
  if (p->dp != p->dp_host || p->tp != p->tp_host) return MF_OK; /* already */
  mf_comm *dp, *tp;
  MF_TRY(make(p->dp_host, arg, &dp));
  mf_status st = make(p->tp_host, arg, &tp);
  if (st != MF_OK) {
    mf_comm_destroy(dp);
    return st;
  }
  p->dp = dp;
  p->tp = tp;
  return MF_OK;
}

#ifdef MF_HAVE_NCCL
typedef struct nccl_arg {
  int device;
  void *stream;
} nccl_arg;
static mf_status make_nccl(mf_comm *host, void *arg, mf_comm **out) {
  nccl_arg *a = arg;
  return mf_comm_nccl_create(host, a->device, a->stream, out);
}
static mf_status use_nccl(mf_par *p, int device, void *stream) {
  return use_device(p, make_nccl, &(nccl_arg){device, stream});
}
#endif

static mf_status make_staged(mf_comm *host, void *be, mf_comm **out) { return mf_comm_staged_create(host, be, out); }

mf_status mf_par_use_device(mf_par *p, const char *how, int dev, const struct mf_backend *be) {
#ifdef MF_HAVE_NCCL
  if (strcmp(how, "host") != 0) return use_nccl(p, dev, be->stream ? be->stream() : NULL);
#else
  (void)dev;
  if (strcmp(how, "nccl") == 0)
    return MF_ERR(MF_ERR_CONFIG, "parallel.device_comm: nccl, but this mforge was built without NCCL: set "
                  "parallel.device_comm: auto or host");
#endif
  return use_device(p, make_staged, (void *)be);
}

void mf_par_free(mf_par *p) {
  if (p->dp != p->dp_host) mf_comm_destroy(p->dp);
  if (p->tp != p->tp_host) mf_comm_destroy(p->tp);
  mf_comm_destroy(p->dp_host);
  mf_comm_destroy(p->tp_host);
  memset(p, 0, sizeof *p);
}
