/* The single-rank communicator: every collective is a copy (or nothing) and completes at
 * once. It needs no MPI, so plain `mforge train` never touches an MPI library. Host
 * buffers only. */
#include <stdlib.h>
#include <string.h>

#include "parallel/comm_impl.h"

static void copy(void *dst, const void *src, size_t count, mf_cdtype dt) {
  if (dst != src && count) memmove(dst, src, count * mf_cdtype_size(dt));
}

static mf_status single_iallreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                   mf_red_op op, mf_comm_req *req) {
  copy(recv, send, count, dt);
  mf_comm_req_done(req, c, "allreduce");
  return MF_OK;
}

static mf_status single_ireduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                        mf_cdtype dt, mf_red_op op, mf_comm_req *req) {
  copy(recv, send, recvcount, dt);
  mf_comm_req_done(req, c, "reduce_scatter");
  return MF_OK;
}

static mf_status single_iallgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                   mf_comm_req *req) {
  copy(recv, send, count, dt);
  mf_comm_req_done(req, c, "allgather");
  return MF_OK;
}

static mf_status single_ialltoallv(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                                   void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt,
                                   mf_comm_req *req) {
  if (scounts[0] != rcounts[0])
    return MF_ERR(MF_ERR_INTERNAL, "alltoallv: sends %zu elements to itself but expects %zu", scounts[0], rcounts[0]);
  size_t es = mf_cdtype_size(dt);
  if (scounts[0]) copy((char *)recv + rdispls[0] * es, (const char *)send + sdispls[0] * es, scounts[0], dt);
  mf_comm_req_done(req, c, "alltoallv");
  return MF_OK;
}

static mf_status single_ibcast(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root, mf_comm_req *req) {
  mf_comm_req_done(req, c, "bcast");
  return MF_OK;
}

static mf_status single_ibarrier(mf_comm *c, mf_comm_req *req) {
  mf_comm_req_done(req, c, "barrier");
  return MF_OK;
}

static mf_status single_split(mf_comm *c, int color, int key, mf_comm **out) { return mf_comm_single(out); }

static mf_status single_test(mf_comm_req *req, int *done) {
  *done = 1;
  return MF_OK;
}

static void single_destroy(mf_comm *c) { free(c); }

static const mf_comm_vt single_vt = {
    .kind = "single",
    .on_device = 0,
    .iallreduce = single_iallreduce,
    .ireduce_scatter = single_ireduce_scatter,
    .iallgather = single_iallgather,
    .ialltoallv = single_ialltoallv,
    .ibcast = single_ibcast,
    .ibarrier = single_ibarrier,
    .split = single_split,
    .test = single_test,
    .sync = NULL,
    .destroy = single_destroy,
};

mf_status mf_comm_single(mf_comm **out) {
  mf_comm *c = calloc(1, sizeof *c);
  if (!c) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  c->vt = &single_vt;
  c->rank = 0;
  c->size = 1;
  *out = c;
  return MF_OK;
}
