/* Inside the communicators: the function table each implementation fills with named
 * initialisers (.allreduce = mpi_allreduce, ...), and the handle every one of them
 * starts with. parallel/comm.c dispatches through it. */
#ifndef MF_COMM_IMPL_H
#define MF_COMM_IMPL_H

#include "parallel/comm.h"

typedef struct mf_comm_vt {
  const char *kind;
  int on_device;
  mf_status (*iallreduce)(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                          mf_red_op op, mf_comm_req *req);
  mf_status (*ireduce_scatter)(mf_comm *c, const void *send, void *recv, size_t recvcount,
                               mf_cdtype dt, mf_red_op op, mf_comm_req *req);
  mf_status (*iallgather)(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                          mf_comm_req *req);
  mf_status (*ialltoallv)(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                          void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt,
                          mf_comm_req *req);
  mf_status (*ibcast)(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root, mf_comm_req *req);
  mf_status (*ibarrier)(mf_comm *c, mf_comm_req *req);
  mf_status (*split)(mf_comm *c, int color, int key, mf_comm **out);
  /* one poll: *done = 1 when complete */
  mf_status (*test)(mf_comm_req *req, int *done);
  /* drives the library's progress engine (any thread; NULL: nothing to drive) */
  mf_status (*progress)(mf_comm *c);
  mf_status (*sync)(mf_comm *c);
  void (*destroy)(mf_comm *c);
} mf_comm_vt;

struct mf_comm {
  const mf_comm_vt *vt;
  int rank, size;
  void *impl;
};

/* For implementations: a started request; a finished one (single rank). */
void mf_comm_req_start(mf_comm_req *req, mf_comm *c, const char *call);
void mf_comm_req_done(mf_comm_req *req, mf_comm *c, const char *call);
double mf_comm_now(void);

/* Implementations' constructors (comm_mpi.c: only with MF_HAVE_MPI). */
mf_status mf_comm_mpi_world(mf_comm **out);
void mf_comm_mpi_finalize(void);
void mf_comm_mpi_abort(int code) __attribute__((noreturn));
int mf_comm_mpi_initialized(void);
int mf_comm_mpi_thread_ok(void);

#endif
