/* The MPI communicator: host buffers, MPI-3 non-blocking collectives. MPI is initialised
 * with MPI_THREAD_SERIALIZED: the main thread makes the calls, and the data-parallel
 * layer's progress thread pokes MPI (mf_comm_progress) while buckets are in flight so
 * they move during long backward kernels; one lock keeps the calls one at a time. OpenMP
 * threads never call MPI. Errors return (MPI_ERRORS_RETURN), so each failure becomes an
 * mf_status that names the rank and the call. The world is a duplicate of
 * MPI_COMM_WORLD, so our traffic never meets a library's. */
#ifdef MF_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "parallel/comm_impl.h"

_Static_assert(sizeof(MPI_Request) + sizeof(void *) <= sizeof(((mf_comm_req *)0)->h),
               "mf_comm_req.h holds an MPI_Request and a pointer");

static int g_we_initialised;
static int g_serialized; /* the library gave MPI_THREAD_SERIALIZED: other threads may poke it */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* every call that may overlap the progress thread goes through the lock */
#define CALL(expr)                  \
  ({                                \
    pthread_mutex_lock(&g_lock);    \
    int rc_ = (expr);               \
    pthread_mutex_unlock(&g_lock);  \
    rc_;                            \
  })

typedef struct mpi_comm {
  MPI_Comm comm;
} mpi_comm;

#define MCOMM(c) (((mpi_comm *)(c)->impl)->comm)

static mf_status mpi_fail(const mf_comm *c, int rc, const char *call) {
  char msg[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = 0;
  /* mf_error_at prefixes "rank N: " with the world rank; name the group's rank too */
  return MF_ERR(MF_ERR_BACKEND, "%s failed (rank %d of %d in its group): %s", call, c->rank, c->size,
                len ? msg : "unknown MPI error");
}

static MPI_Datatype mpi_type(mf_cdtype dt) {
  switch (dt) {
  case MF_C_F32: return MPI_FLOAT;
  case MF_C_F64: return MPI_DOUBLE;
  case MF_C_I32: return MPI_INT32_T;
  case MF_C_I64: return MPI_INT64_T;
  case MF_C_U8: return MPI_UINT8_T;
  case MF_C_BF16: return MPI_UINT16_T; /* bits; summed by bf16_sum */
  }
  return MPI_BYTE;
}

/* MPI has no bf16: in[i] + inout[i] in fp32, rounded once, as NCCL's ncclBfloat16 sum */
static void bf16_sum(void *in, void *inout, int *len, MPI_Datatype *dt) {
  (void)dt;
  const uint16_t *a = in;
  uint16_t *b = inout;
  for (int i = 0; i < *len; i++) b[i] = mf_f32_to_bf16(mf_bf16_to_f32(a[i]) + mf_bf16_to_f32(b[i]));
}

static MPI_Op g_bf16_sum = MPI_OP_NULL; /* made with the world, freed before MPI_Finalize */

/* bf16 sums only (check_op): a max or min of bf16 is nobody's need yet */
static MPI_Op mpi_op(mf_red_op op, mf_cdtype dt) {
  if (dt == MF_C_BF16) return g_bf16_sum;
  return op == MF_RED_MAX ? MPI_MAX : op == MF_RED_MIN ? MPI_MIN : MPI_SUM;
}

static mf_status check_count(size_t n, const char *call) {
  if (n > (size_t)INT_MAX)
    return MF_ERR(MF_ERR_BACKEND, "%s: %zu elements is more than one MPI call takes (2^31 - 1); lower "
                  "parallel.bucket_mb", call, n);
  return MF_OK;
}

/* the request's handle, and a heap block (alltoallv's int arrays) freed on completion */
static MPI_Request *req_handle(mf_comm_req *r) { return (MPI_Request *)r->h; }
static void **req_extra(mf_comm_req *r) { return (void **)(r->h + sizeof(MPI_Request)); }

static mf_status started(mf_comm *c, int rc, mf_comm_req *req, const char *call, void *extra) {
  if (rc != MPI_SUCCESS) {
    free(extra);
    return mpi_fail(c, rc, call);
  }
  mf_comm_req_start(req, c, call);
  *req_extra(req) = extra;
  return MF_OK;
}

static mf_status check_op(mf_red_op op, mf_cdtype dt, const char *call) {
  if (dt == MF_C_BF16 && op != MF_RED_SUM) return MF_ERR(MF_ERR_INTERNAL, "%s: bf16 reduces by sum only", call);
  return MF_OK;
}

static mf_status mpi_iallreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                mf_red_op op, mf_comm_req *req) {
  MF_TRY(check_count(count, "MPI_Iallreduce"));
  MF_TRY(check_op(op, dt, "MPI_Iallreduce"));
  int rc = CALL(MPI_Iallreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, mpi_type(dt), mpi_op(op, dt),
                          MCOMM(c), req_handle(req)));
  return started(c, rc, req, "MPI_Iallreduce", NULL);
}

static mf_status mpi_ireduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                     mf_cdtype dt, mf_red_op op, mf_comm_req *req) {
  MF_TRY(check_count(recvcount * (size_t)c->size, "MPI_Ireduce_scatter_block"));
  MF_TRY(check_op(op, dt, "MPI_Ireduce_scatter_block"));
  int rc = CALL(MPI_Ireduce_scatter_block(send, recv, (int)recvcount, mpi_type(dt), mpi_op(op, dt), MCOMM(c),
                                     req_handle(req)));
  return started(c, rc, req, "MPI_Ireduce_scatter_block", NULL);
}

static mf_status mpi_iallgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                mf_comm_req *req) {
  MF_TRY(check_count(count * (size_t)c->size, "MPI_Iallgather"));
  int in_place = (const char *)send == (const char *)recv + (size_t)c->rank * count * mf_cdtype_size(dt);
  int rc = CALL(MPI_Iallgather(in_place ? MPI_IN_PLACE : send, (int)count, mpi_type(dt), recv, (int)count,
                          mpi_type(dt), MCOMM(c), req_handle(req)));
  return started(c, rc, req, "MPI_Iallgather", NULL);
}

static mf_status mpi_ialltoallv(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                                void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt,
                                mf_comm_req *req) {
  int n = c->size;
  int *a = malloc(4 * (size_t)n * sizeof *a); /* must live until the operation completes */
  if (!a) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  for (int r = 0; r < n; r++) {
    if (scounts[r] + sdispls[r] > (size_t)INT_MAX || rcounts[r] + rdispls[r] > (size_t)INT_MAX) {
      free(a);
      return check_count((size_t)INT_MAX + 1, "MPI_Ialltoallv");
    }
    a[r] = (int)scounts[r];
    a[n + r] = (int)sdispls[r];
    a[2 * n + r] = (int)rcounts[r];
    a[3 * n + r] = (int)rdispls[r];
  }
  int rc = CALL(MPI_Ialltoallv(send, a, a + n, mpi_type(dt), recv, a + 2 * n, a + 3 * n, mpi_type(dt), MCOMM(c),
                          req_handle(req)));
  return started(c, rc, req, "MPI_Ialltoallv", a);
}

static mf_status mpi_ibcast(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root, mf_comm_req *req) {
  MF_TRY(check_count(count, "MPI_Ibcast"));
  int rc = CALL(MPI_Ibcast(buf, (int)count, mpi_type(dt), root, MCOMM(c), req_handle(req)));
  return started(c, rc, req, "MPI_Ibcast", NULL);
}

static mf_status mpi_ibarrier(mf_comm *c, mf_comm_req *req) {
  int rc = CALL(MPI_Ibarrier(MCOMM(c), req_handle(req)));
  return started(c, rc, req, "MPI_Ibarrier", NULL);
}

/* any MPI call runs the progress engine: a probe that never matches (no point-to-point
 * traffic on our communicators) moves the collectives in flight */
static mf_status mpi_progress(mf_comm *c) {
  int flag = 0;
  CALL(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MCOMM(c), &flag, MPI_STATUS_IGNORE));
  return MF_OK;
}

int mf_comm_mpi_thread_ok(void) { return g_serialized; }

static mf_status mpi_test(mf_comm_req *req, int *done) {
  int flag = 0;
  int rc = CALL(MPI_Test(req_handle(req), &flag, MPI_STATUS_IGNORE));
  if (rc != MPI_SUCCESS || flag) {
    free(*req_extra(req));
    *req_extra(req) = NULL;
  }
  if (rc != MPI_SUCCESS) return mpi_fail(req->comm, rc, req->call);
  *done = flag;
  return MF_OK;
}

static const mf_comm_vt mpi_vt;

static mf_status wrap(MPI_Comm mc, mf_comm **out) {
  mf_comm *c = calloc(1, sizeof *c);
  mpi_comm *m = calloc(1, sizeof *m);
  if (!c || !m) {
    free(c);
    free(m);
    MPI_Comm_free(&mc);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  m->comm = mc;
  c->vt = &mpi_vt;
  c->impl = m;
  MPI_Comm_rank(mc, &c->rank);
  MPI_Comm_size(mc, &c->size);
  *out = c;
  return MF_OK;
}

static mf_status mpi_split(mf_comm *c, int color, int key, mf_comm **out) {
  MPI_Comm nc;
  int rc = CALL(MPI_Comm_split(MCOMM(c), color, key, &nc));
  if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "MPI_Comm_split");
  return wrap(nc, out);
}

static void mpi_destroy(mf_comm *c) {
  mpi_comm *m = c->impl;
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) CALL(MPI_Comm_free(&m->comm));
  free(m);
  free(c);
}

static const mf_comm_vt mpi_vt = {
    .kind = "mpi",
    .on_device = 0,
    .iallreduce = mpi_iallreduce,
    .ireduce_scatter = mpi_ireduce_scatter,
    .iallgather = mpi_iallgather,
    .ialltoallv = mpi_ialltoallv,
    .ibcast = mpi_ibcast,
    .ibarrier = mpi_ibarrier,
    .split = mpi_split,
    .test = mpi_test,
    .progress = mpi_progress,
    .sync = NULL,
    .destroy = mpi_destroy,
};

int mf_comm_mpi_initialized(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

mf_status mf_comm_mpi_world(mf_comm **out) {
  int init = 0;
  MPI_Initialized(&init);
  if (!init) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return MF_ERR(MF_ERR_BACKEND, "MPI_Init_thread failed (code %d)", rc);
    g_we_initialised = 1;
    if (provided < MPI_THREAD_FUNNELED)
      return MF_ERR(MF_ERR_BACKEND, "MPI_Init_thread: the MPI library gives thread level %d, mforge needs "
                    "MPI_THREAD_FUNNELED", provided);
    g_serialized = provided >= MPI_THREAD_SERIALIZED;
  } else {
    int provided = 0;
    MPI_Query_thread(&provided);
    g_serialized = provided >= MPI_THREAD_SERIALIZED;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm w;
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &w);
  if (rc != MPI_SUCCESS) return MF_ERR(MF_ERR_BACKEND, "MPI_Comm_dup(MPI_COMM_WORLD) failed (code %d)", rc);
  MPI_Comm_set_errhandler(w, MPI_ERRORS_RETURN);
  if (g_bf16_sum == MPI_OP_NULL && MPI_Op_create(bf16_sum, 1, &g_bf16_sum) != MPI_SUCCESS)
    return MF_ERR(MF_ERR_BACKEND, "MPI_Op_create (the bf16 sum) failed");
  return wrap(w, out);
}

void mf_comm_mpi_finalize(void) {
  if (!mf_comm_mpi_initialized()) return;
  if (g_bf16_sum != MPI_OP_NULL) MPI_Op_free(&g_bf16_sum);
  if (g_we_initialised) MPI_Finalize();
}

void mf_comm_mpi_abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  _Exit(code); /* MPI_Abort does not return; if it ever did */
}

#endif /* MF_HAVE_MPI */
