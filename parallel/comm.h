/* Communicators: one interface over three implementations.
 *   single  one rank, no MPI at all (plain `mforge train`, tests)
 *   mpi     host buffers (Open MPI, MPICH); also the bootstrap for NCCL
 *   nccl    CUDA device buffers, stream-ordered (built where CUDA and NCCL are found)
 *
 * Every collective must be called by every rank of the communicator, in the same order.
 * Every call returns an mf_status; a failure names the rank and the call
 * ("rank 1: MPI_Allreduce failed: ..."). Waits poll with a deadline (mf_comm_set_timeout,
 * MF_COMM_TIMEOUT_S; default 600 s): a peer that died or hangs becomes an error here
 * rather than a hang. Non-blocking collectives return a request: MPI advances them only
 * inside MPI calls, so whoever computes meanwhile calls mf_comm_test now and then (the
 * data-parallel layer does it after every backward node); mf_comm_wait completes one.
 *
 * Buffers: send == recv means in place for allreduce; for allgather, in place is
 * send == recv + rank * count (the MPI and NCCL convention); reduce-scatter is never in
 * place. Device communicators (nccl) take device pointers and order every operation on
 * their stream after the work already queued on the compute stream; the result is ready
 * for later work on the compute stream (mf_comm_sync waits for it on the host). */
#ifndef MF_COMM_H
#define MF_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mf_comm mf_comm;

/* MF_C_BF16: bf16 (uint16 bits); reductions sum only, each result rounded to nearest even
 * (NCCL's ncclBfloat16; a user-defined MPI_Op that adds in fp32 on MPI) */
typedef enum mf_cdtype { MF_C_F32, MF_C_F64, MF_C_I32, MF_C_I64, MF_C_U8, MF_C_BF16 } mf_cdtype;
typedef enum mf_red_op { MF_RED_SUM, MF_RED_MAX, MF_RED_MIN } mf_red_op;

/* A non-blocking operation in flight (storage owned by the caller). */
typedef struct mf_comm_req {
  mf_comm *comm;
  const char *call;          /* "MPI_Iallreduce", for messages */
  unsigned char h[16];       /* the implementation's handle (MPI_Request, cudaEvent_t) */
  int active;
} mf_comm_req;

size_t mf_cdtype_size(mf_cdtype dt);

/* ---- the world ---- */

/* The world communicator, created on first use: MPI when an MPI launcher started this
 * process (mpirun/mpiexec: OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK; srun: SLURM_STEP_ID
 * with SLURM_NTASKS > 1), otherwise the single-rank one without MPI_Init. MF_COMM=single
 * or MF_COMM=mpi forces the choice. With more than one rank, error messages of this
 * process start with "rank N: " from then on. */
mf_status mf_comm_world(mf_comm **out);
/* 1 when the world exists (mf_comm_world was called and not finalized). */
int mf_comm_world_active(void);
/* 1 when the environment says an MPI launcher started this process. */
int mf_comm_launched(void);
/* This process's place among the ranks on its node (launcher variables; 0 and 1 when
 * unknown), e.g. to pick its GPU or divide the cores. */
int mf_comm_local_rank(void);
int mf_comm_local_size(void);
/* Ends MPI when mf_comm_world started it (every rank must call it: it synchronises);
 * the world and its sub-communicators must not be used afterwards. */
void mf_comm_world_finalize(void);
/* Ends the whole job now from this rank with `code` (MPI_Abort; exit without MPI). */
void mf_comm_abort_job(int code) __attribute__((noreturn));
/* Deadline for every wait, in seconds (<= 0: none). */
void mf_comm_set_timeout(double seconds);
double mf_comm_timeout(void);

/* A single-rank communicator (always available). */
mf_status mf_comm_single(mf_comm **out);

struct mf_backend;
/* A device communicator without a device library (parallel/comm_staged.c): each operation
 * copies its device buffers through host memory and runs on `host` (MPI or single), the
 * result copied back when a test or wait sees it complete. For device runs without NCCL
 * and for the emulation build. Does not own `host`. */
mf_status mf_comm_staged_create(mf_comm *host, const struct mf_backend *be, mf_comm **out);

#ifdef MF_HAVE_NCCL
/* An NCCL communicator over the ranks of `boot` (an MPI or single communicator): rank 0
 * makes the unique id and broadcasts it over `boot`. device < 0 picks the local rank's GPU
 * (mf_comm_local_rank() modulo the visible devices). `stream` is the compute stream
 * (a cudaStream_t; NULL = the legacy default stream); the communicator makes its own. */
mf_status mf_comm_nccl_create(mf_comm *boot, int device, void *stream, mf_comm **out);
#endif

/* ---- queries ---- */
int mf_comm_rank(const mf_comm *c);
int mf_comm_size(const mf_comm *c);
const char *mf_comm_kind(const mf_comm *c);  /* "single", "mpi", "nccl", "staged" */
int mf_comm_on_device(const mf_comm *c);     /* 1: buffers are device pointers */

/* ---- collectives (blocking: the result is there on return) ---- */
mf_status mf_comm_allreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                            mf_red_op op);
/* send[size * recvcount]; rank r receives the reduction of block r */
mf_status mf_comm_reduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                 mf_cdtype dt, mf_red_op op);
/* recv[size * count] = every rank's send[count], in rank order */
mf_status mf_comm_allgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt);
/* block r of send (count elements) goes to rank r; block r of recv comes from rank r */
mf_status mf_comm_alltoall(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt);
/* counts and displacements in elements, one per rank */
mf_status mf_comm_alltoallv(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                            void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt);
mf_status mf_comm_bcast(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root);
mf_status mf_comm_barrier(mf_comm *c);
/* Ranks with the same color form a new communicator, ordered by key (then old rank). */
mf_status mf_comm_split(mf_comm *c, int color, int key, mf_comm **out);
/* Derived (over alltoallv): root receives counts[r] elements from each rank r, packed
 * in rank order into recv; count = counts[rank]. recv is used on root only. */
mf_status mf_comm_gatherv(mf_comm *c, const void *send, size_t count, void *recv, const size_t *counts,
                          int root, mf_cdtype dt);

/* ---- non-blocking ---- */
mf_status mf_comm_iallreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                             mf_red_op op, mf_comm_req *req);
mf_status mf_comm_ireduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                  mf_cdtype dt, mf_red_op op, mf_comm_req *req);
mf_status mf_comm_iallgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                             mf_comm_req *req);
/* *done = 1 once complete (the request is then inactive); progresses the library. */
mf_status mf_comm_test(mf_comm_req *req, int *done);
mf_status mf_comm_wait(mf_comm_req *req);
/* Moves the non-blocking collectives in flight along (MPI progresses only inside MPI
 * calls). Callable from a thread other than the one that started them when
 * mf_comm_thread_progress(c) says so (MPI_THREAD_SERIALIZED; calls are serialised inside). */
mf_status mf_comm_progress(mf_comm *c);
int mf_comm_thread_progress(const mf_comm *c);
/* Device communicators: blocks the host until everything queued has finished. */
mf_status mf_comm_sync(mf_comm *c);

void mf_comm_destroy(mf_comm *c);

#endif
