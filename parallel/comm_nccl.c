/* The NCCL communicator: device buffers, one GPU per rank. Built only where CMake finds
 * CUDA and NCCL (cmake/nccl.cmake defines MF_HAVE_NCCL); plain C against the CUDA runtime
 * headers.
 *
 * Bootstrap: rank 0 makes the unique id and broadcasts it over a host communicator (MPI,
 * or the single one); each rank takes the GPU of its local rank (Open MPI / Slurm / PMI
 * variables, modulo the visible devices). Streams: collectives run on the communicator's
 * own stream, which first waits (an event) for the work queued on the compute stream, so
 * gradients a backward pass has queued are complete before they travel. A request is an
 * event recorded after the operation: mf_comm_test queries it (and NCCL's asynchronous
 * error state), mf_comm_wait polls it with the interface's deadline. Errors name the rank
 * and the call: "rank 1: ncclAllReduce failed: unhandled cuda error (...)". */
#ifdef MF_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/comm_impl.h"

_Static_assert(sizeof(cudaEvent_t) <= sizeof(((mf_comm_req *)0)->h), "mf_comm_req.h holds a cudaEvent_t");

typedef struct nccl_comm {
  ncclComm_t comm;
  int device;
  cudaStream_t stream;  /* the communicator's own */
  cudaStream_t compute; /* the caller's */
  cudaEvent_t ready;    /* compute work queued so far */
  int *scratch;         /* device int for the barrier */
} nccl_comm;

#define NC(c) ((nccl_comm *)(c)->impl)

static mf_status nccl_fail(const mf_comm *c, ncclResult_t r, const char *call) {
  const char *last = c && c->impl ? ncclGetLastError(NC(c)->comm) : NULL;
  return MF_ERR(MF_ERR_BACKEND, "%s failed (rank %d of %d in its group, GPU %d): %s%s%s%s", call,
                c ? c->rank : -1, c ? c->size : -1, c && c->impl ? NC(c)->device : -1, ncclGetErrorString(r),
                last && *last ? " (" : "", last && *last ? last : "", last && *last ? ")" : "");
}

static mf_status cuda_fail(const mf_comm *c, cudaError_t e, const char *call) {
  return MF_ERR(MF_ERR_BACKEND, "%s failed (rank %d, GPU %d): %s", call, c ? c->rank : -1,
                c && c->impl ? NC(c)->device : -1, cudaGetErrorString(e));
}

#define CU(c, expr, call)                         \
  do {                                            \
    cudaError_t e_ = (expr);                      \
    if (e_ != cudaSuccess) return cuda_fail((c), e_, (call)); \
  } while (0)
#define NCCL(c, expr, call)                       \
  do {                                            \
    ncclResult_t r_ = (expr);                     \
    if (r_ != ncclSuccess) return nccl_fail((c), r_, (call)); \
  } while (0)

static ncclDataType_t nccl_type(mf_cdtype dt) {
  switch (dt) {
  case MF_C_F32: return ncclFloat32;
  case MF_C_F64: return ncclFloat64;
  case MF_C_I32: return ncclInt32;
  case MF_C_I64: return ncclInt64;
  case MF_C_U8: return ncclUint8;
  case MF_C_BF16: return ncclBfloat16;
  }
  return ncclUint8;
}

static ncclRedOp_t nccl_op(mf_red_op op) { return op == MF_RED_MAX ? ncclMax : op == MF_RED_MIN ? ncclMin : ncclSum; }

/* the communicator's stream waits for what the compute stream has queued */
static mf_status pre(mf_comm *c) {
  nccl_comm *n = NC(c);
  CU(c, cudaSetDevice(n->device), "cudaSetDevice");
  CU(c, cudaEventRecord(n->ready, n->compute), "cudaEventRecord");
  CU(c, cudaStreamWaitEvent(n->stream, n->ready, 0), "cudaStreamWaitEvent");
  return MF_OK;
}

/* a request: an event after the operation on the communicator's stream */
static mf_status post(mf_comm *c, mf_comm_req *req, const char *call) {
  nccl_comm *n = NC(c);
  cudaEvent_t ev;
  CU(c, cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
  cudaError_t e = cudaEventRecord(ev, n->stream);
  if (e != cudaSuccess) {
    cudaEventDestroy(ev);
    return cuda_fail(c, e, "cudaEventRecord");
  }
  memcpy(req->h, &ev, sizeof ev);
  mf_comm_req_start(req, c, call);
  return MF_OK;
}

static mf_status nccl_iallreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                 mf_red_op op, mf_comm_req *req) {
  MF_TRY(pre(c));
  NCCL(c, ncclAllReduce(send, recv, count, nccl_type(dt), nccl_op(op), NC(c)->comm, NC(c)->stream), "ncclAllReduce");
  return post(c, req, "ncclAllReduce");
}

static mf_status nccl_ireduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                      mf_cdtype dt, mf_red_op op, mf_comm_req *req) {
  MF_TRY(pre(c));
  NCCL(c, ncclReduceScatter(send, recv, recvcount, nccl_type(dt), nccl_op(op), NC(c)->comm, NC(c)->stream),
       "ncclReduceScatter");
  return post(c, req, "ncclReduceScatter");
}

static mf_status nccl_iallgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                 mf_comm_req *req) {
  MF_TRY(pre(c));
  NCCL(c, ncclAllGather(send, recv, count, nccl_type(dt), NC(c)->comm, NC(c)->stream), "ncclAllGather");
  return post(c, req, "ncclAllGather");
}

static mf_status nccl_ialltoallv(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                                 void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt,
                                 mf_comm_req *req) {
  MF_TRY(pre(c));
  size_t es = mf_cdtype_size(dt);
  nccl_comm *n = NC(c);
  NCCL(c, ncclGroupStart(), "ncclGroupStart");
  for (int r = 0; r < c->size; r++) {
    if (scounts[r]) {
      ncclResult_t res = ncclSend((const char *)send + sdispls[r] * es, scounts[r], nccl_type(dt), r, n->comm, n->stream);
      if (res != ncclSuccess) {
        ncclGroupEnd();
        return nccl_fail(c, res, "ncclSend");
      }
    }
    if (rcounts[r]) {
      ncclResult_t res = ncclRecv((char *)recv + rdispls[r] * es, rcounts[r], nccl_type(dt), r, n->comm, n->stream);
      if (res != ncclSuccess) {
        ncclGroupEnd();
        return nccl_fail(c, res, "ncclRecv");
      }
    }
  }
  NCCL(c, ncclGroupEnd(), "ncclGroupEnd (alltoallv)");
  return post(c, req, "ncclSend/ncclRecv (alltoallv)");
}

static mf_status nccl_ibcast(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root, mf_comm_req *req) {
  MF_TRY(pre(c));
  NCCL(c, ncclBroadcast(buf, buf, count, nccl_type(dt), root, NC(c)->comm, NC(c)->stream), "ncclBroadcast");
  return post(c, req, "ncclBroadcast");
}

/* NCCL has no barrier: an all-reduce of one int stands in for it */
static mf_status nccl_ibarrier(mf_comm *c, mf_comm_req *req) {
  MF_TRY(pre(c));
  NCCL(c, ncclAllReduce(NC(c)->scratch, NC(c)->scratch, 1, ncclInt32, ncclSum, NC(c)->comm, NC(c)->stream),
       "ncclAllReduce (barrier)");
  return post(c, req, "barrier (ncclAllReduce)");
}

static mf_status nccl_test(mf_comm_req *req, int *done) {
  mf_comm *c = req->comm;
  cudaEvent_t ev;
  memcpy(&ev, req->h, sizeof ev);
  ncclResult_t async = ncclSuccess;
  ncclCommGetAsyncError(NC(c)->comm, &async);
  if (async != ncclSuccess && async != ncclInProgress) {
    cudaEventDestroy(ev);
    return nccl_fail(c, async, req->call);
  }
  cudaError_t e = cudaEventQuery(ev);
  if (e == cudaErrorNotReady) {
    *done = 0;
    return MF_OK;
  }
  cudaEventDestroy(ev);
  if (e != cudaSuccess) return cuda_fail(c, e, req->call);
  *done = 1;
  return MF_OK;
}

static mf_status nccl_sync(mf_comm *c) {
  CU(c, cudaSetDevice(NC(c)->device), "cudaSetDevice");
  CU(c, cudaStreamSynchronize(NC(c)->stream), "cudaStreamSynchronize");
  CU(c, cudaStreamSynchronize(NC(c)->compute), "cudaStreamSynchronize");
  return MF_OK;
}

static void nccl_destroy(mf_comm *c) {
  nccl_comm *n = c->impl;
  if (n) {
    cudaSetDevice(n->device);
    if (n->comm) {
      cudaStreamSynchronize(n->stream);
      ncclCommDestroy(n->comm);
    }
    if (n->ready) cudaEventDestroy(n->ready);
    if (n->stream) cudaStreamDestroy(n->stream);
    if (n->scratch) cudaFree(n->scratch);
    free(n);
  }
  free(c);
}

static mf_status nccl_split(mf_comm *c, int color, int key, mf_comm **out);

static const mf_comm_vt nccl_vt = {
    .kind = "nccl",
    .on_device = 1,
    .iallreduce = nccl_iallreduce,
    .ireduce_scatter = nccl_ireduce_scatter,
    .iallgather = nccl_iallgather,
    .ialltoallv = nccl_ialltoallv,
    .ibcast = nccl_ibcast,
    .ibarrier = nccl_ibarrier,
    .split = nccl_split,
    .test = nccl_test,
    .sync = nccl_sync,
    .destroy = nccl_destroy,
};

/* the handle and its streams, events and scratch on `device` (comm filled by the caller) */
static mf_status make(int device, cudaStream_t compute, mf_comm **out) {
  mf_comm *c = calloc(1, sizeof *c);
  nccl_comm *n = calloc(1, sizeof *n);
  if (!c || !n) {
    free(c);
    free(n);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  c->vt = &nccl_vt;
  c->impl = n;
  n->device = device;
  n->compute = compute;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&n->ready, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaMalloc((void **)&n->scratch, sizeof(int));
  if (e == cudaSuccess) e = cudaMemset(n->scratch, 0, sizeof(int));
  if (e != cudaSuccess) {
    mf_status st = cuda_fail(c, e, "setting up the NCCL communicator's stream");
    nccl_destroy(c);
    return st;
  }
  *out = c;
  return MF_OK;
}

static mf_status nccl_split(mf_comm *c, int color, int key, mf_comm **out) {
  nccl_comm *n = NC(c);
  mf_comm *nc;
  MF_TRY(make(n->device, n->compute, &nc));
  ncclResult_t r = ncclCommSplit(n->comm, color, key, &NC(nc)->comm, NULL);
  if (r != ncclSuccess) {
    mf_status st = nccl_fail(c, r, "ncclCommSplit");
    nccl_destroy(nc);
    return st;
  }
  int rank = 0, size = 1;
  ncclCommUserRank(NC(nc)->comm, &rank);
  ncclCommCount(NC(nc)->comm, &size);
  nc->rank = rank;
  nc->size = size;
  *out = nc;
  return MF_OK;
}

mf_status mf_comm_nccl_create(mf_comm *boot, int device, void *stream, mf_comm **out) {
  if (mf_comm_on_device(boot))
    return MF_ERR(MF_ERR_INTERNAL, "mf_comm_nccl_create: the bootstrap communicator must take host buffers");
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess || ndev == 0)
    return MF_ERR(MF_ERR_BACKEND, "NCCL needs a GPU: cudaGetDeviceCount: %s",
                  e != cudaSuccess ? cudaGetErrorString(e) : "no device");
  if (device < 0) device = mf_comm_local_rank() % ndev;
  if (device >= ndev) return MF_ERR(MF_ERR_CONFIG, "GPU %d asked for, %d visible", device, ndev);
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  /* rank 0's failure must reach the others before they block in ncclCommInitRank */
  int ok = 1;
  if (mf_comm_rank(boot) == 0 && ncclGetUniqueId(&id) != ncclSuccess) ok = 0;
  MF_TRY(mf_comm_bcast(boot, &ok, 1, MF_C_I32, 0));
  if (!ok) return MF_ERR(MF_ERR_BACKEND, "ncclGetUniqueId failed on rank 0");
  MF_TRY(mf_comm_bcast(boot, &id, sizeof id, MF_C_U8, 0));
  mf_comm *c;
  MF_TRY(make(device, (cudaStream_t)stream, &c));
  c->rank = mf_comm_rank(boot);
  c->size = mf_comm_size(boot);
  ncclResult_t r = ncclCommInitRank(&NC(c)->comm, c->size, id, c->rank);
  if (r != ncclSuccess) {
    mf_status st = nccl_fail(c, r, "ncclCommInitRank");
    NC(c)->comm = NULL;
    nccl_destroy(c);
    return st;
  }
  *out = c;
  return MF_OK;
}

#endif /* MF_HAVE_NCCL */
