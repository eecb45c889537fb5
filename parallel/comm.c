/* The communicator interface: dispatch to the implementation's table, the choice of the
 * world communicator, blocking collectives as non-blocking ones plus a wait, and waits
 * that poll with a deadline so a dead or hung peer turns into an error. */
#include "parallel/comm_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

static double g_timeout = -1; /* < 0: not read from the environment yet */
static mf_comm *g_world;

double mf_comm_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t mf_cdtype_size(mf_cdtype dt) {
  switch (dt) {
  case MF_C_F32: case MF_C_I32: return 4;
  case MF_C_F64: case MF_C_I64: return 8;
  case MF_C_U8: return 1;
  case MF_C_BF16: return 2;
  }
  return 0;
}

void mf_comm_set_timeout(double s) { g_timeout = s > 0 ? s : 0; }

double mf_comm_timeout(void) {
  if (g_timeout < 0) {
    const char *e = getenv("MF_COMM_TIMEOUT_S");
    double v = e && *e ? atof(e) : 600.0;
    g_timeout = v > 0 ? v : 0;
  }
  return g_timeout;
}

/* ---- launcher detection ---- */

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}

int mf_comm_launched(void) {
  const char *force = getenv("MF_COMM");
  if (force && strcmp(force, "single") == 0) return 0;
  if (force && strcmp(force, "mpi") == 0) return 1;
  if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") ||
      getenv("MPI_LOCALNRANKS"))
    return 1;
  /* srun: a job step with several tasks (sbatch's own shell has no SLURM_STEP_ID task rank) */
  if (getenv("SLURM_STEP_ID") && getenv("SLURM_PROCID") && env_int("SLURM_NTASKS", 1) > 1) return 1;
  return 0;
}

int mf_comm_local_rank(void) {
  static const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID",
                                "PMI_LOCAL_RANK", "PMIX_LOCAL_RANK"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (getenv(names[i])) return env_int(names[i], 0);
  return 0;
}

int mf_comm_local_size(void) {
  static const char *names[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE",
                                "PMIX_LOCAL_SIZE"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (getenv(names[i])) return env_int(names[i], 1);
  /* Slurm: "2(x3),1" style per-node counts; the first node's is good enough here */
  const char *s = getenv("SLURM_TASKS_PER_NODE");
  if (s && *s) return atoi(s) > 0 ? atoi(s) : 1;
  return 1;
}

mf_status mf_comm_world(mf_comm **out) {
  if (!g_world) {
    if (mf_comm_launched()) {
#ifdef MF_HAVE_MPI
      MF_TRY(mf_comm_mpi_world(&g_world));
#else
      return MF_ERR(MF_ERR_CONFIG, "started by an MPI launcher, but this mforge was built without MPI "
                                   "(install libopenmpi-dev and rebuild, or run without mpirun)");
#endif
    } else {
      MF_TRY(mf_comm_single(&g_world));
    }
    if (g_world->size > 1) mf_error_set_rank(g_world->rank);
  }
  *out = g_world;
  return MF_OK;
}

int mf_comm_world_active(void) { return g_world != NULL; }

void mf_comm_world_finalize(void) {
  if (!g_world) return;
  mf_comm *w = g_world;
  g_world = NULL;
  mf_comm_destroy(w);
#ifdef MF_HAVE_MPI
  mf_comm_mpi_finalize();
#endif
}

void mf_comm_abort_job(int code) {
  fflush(stdout);
  fflush(stderr);
#ifdef MF_HAVE_MPI
  if (mf_comm_mpi_initialized()) mf_comm_mpi_abort(code);
#endif
  _exit(code);
}

/* ---- dispatch ---- */

int mf_comm_rank(const mf_comm *c) { return c->rank; }
int mf_comm_size(const mf_comm *c) { return c->size; }
const char *mf_comm_kind(const mf_comm *c) { return c->vt->kind; }
int mf_comm_on_device(const mf_comm *c) { return c->vt->on_device; }

void mf_comm_req_start(mf_comm_req *req, mf_comm *c, const char *call) {
  req->comm = c;
  req->call = call;
  req->active = 1;
}

void mf_comm_req_done(mf_comm_req *req, mf_comm *c, const char *call) {
  req->comm = c;
  req->call = call;
  req->active = 0;
}

mf_status mf_comm_test(mf_comm_req *req, int *done) {
  if (!req->active) {
    *done = 1;
    return MF_OK;
  }
  *done = 0;
  mf_status st = req->comm->vt->test(req, done);
  if (st != MF_OK || *done) req->active = 0;
  return st;
}

/* More ranks (x threads) on this node than cores: waiting ranks must leave the cores to
 * the ones that compute. */
static int oversubscribed(void) {
  static int v = -1;
  if (v < 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    v = cores > 0 && mf_comm_local_size() > cores;
  }
  return v;
}

/* Polls as MPI's own blocking waits do (MPI moves data only while it is called; the peer
 * needs us to take part), yielding the core when the node is oversubscribed; checks the
 * deadline every so often. */
mf_status mf_comm_wait(mf_comm_req *req) {
  if (!req->active) return MF_OK;
  double t0 = mf_comm_now(), limit = mf_comm_timeout();
  int yield = oversubscribed();
  for (long it = 0;; it++) {
    int done = 0;
    MF_TRY(mf_comm_test(req, &done));
    if (done) return MF_OK;
    if (yield) sched_yield();
    if ((it & 255) == 255) {
      double el = mf_comm_now() - t0;
      if (limit > 0 && el > limit) {
        req->active = 0;
        return MF_ERR(MF_ERR_BACKEND, "%s: no progress for %.0f s: another rank died, hangs, or took "
                      "another path (MF_COMM_TIMEOUT_S sets the limit)", req->call, el);
      }
      if (el > 1.0) { /* long waits (a slow peer, a hang): stop burning the core */
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
      }
    }
  }
}

mf_status mf_comm_progress(mf_comm *c) { return c->vt->progress ? c->vt->progress(c) : MF_OK; }

int mf_comm_thread_progress(const mf_comm *c) {
#ifdef MF_HAVE_MPI
  if (strcmp(c->vt->kind, "mpi") == 0) return c->size > 1 && mf_comm_mpi_thread_ok();
#endif
  return 0;
}

mf_status mf_comm_sync(mf_comm *c) { return c->vt->sync ? c->vt->sync(c) : MF_OK; }

mf_status mf_comm_iallreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                             mf_red_op op, mf_comm_req *req) {
  return c->vt->iallreduce(c, send, recv, count, dt, op, req);
}

mf_status mf_comm_ireduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                  mf_cdtype dt, mf_red_op op, mf_comm_req *req) {
  return c->vt->ireduce_scatter(c, send, recv, recvcount, dt, op, req);
}

mf_status mf_comm_iallgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                             mf_comm_req *req) {
  return c->vt->iallgather(c, send, recv, count, dt, req);
}

mf_status mf_comm_allreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                            mf_red_op op) {
  mf_comm_req r;
  MF_TRY(c->vt->iallreduce(c, send, recv, count, dt, op, &r));
  return mf_comm_wait(&r);
}

mf_status mf_comm_reduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                 mf_cdtype dt, mf_red_op op) {
  mf_comm_req r;
  MF_TRY(c->vt->ireduce_scatter(c, send, recv, recvcount, dt, op, &r));
  return mf_comm_wait(&r);
}

mf_status mf_comm_allgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt) {
  mf_comm_req r;
  MF_TRY(c->vt->iallgather(c, send, recv, count, dt, &r));
  return mf_comm_wait(&r);
}

mf_status mf_comm_alltoallv(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                            void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt) {
  mf_comm_req r;
  MF_TRY(c->vt->ialltoallv(c, send, scounts, sdispls, recv, rcounts, rdispls, dt, &r));
  return mf_comm_wait(&r);
}

mf_status mf_comm_alltoall(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt) {
  size_t *v = malloc(2 * (size_t)c->size * sizeof *v);
  if (!v) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  for (int r = 0; r < c->size; r++) {
    v[r] = count;
    v[c->size + r] = (size_t)r * count;
  }
  mf_status st = mf_comm_alltoallv(c, send, v, v + c->size, recv, v, v + c->size, dt);
  free(v);
  return st;
}

mf_status mf_comm_bcast(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root) {
  if (root < 0 || root >= c->size) return MF_ERR(MF_ERR_INTERNAL, "bcast: root %d outside [0, %d)", root, c->size);
  mf_comm_req r;
  MF_TRY(c->vt->ibcast(c, buf, count, dt, root, &r));
  return mf_comm_wait(&r);
}

mf_status mf_comm_barrier(mf_comm *c) {
  mf_comm_req r;
  MF_TRY(c->vt->ibarrier(c, &r));
  return mf_comm_wait(&r);
}

mf_status mf_comm_split(mf_comm *c, int color, int key, mf_comm **out) {
  return c->vt->split(c, color, key, out);
}

mf_status mf_comm_gatherv(mf_comm *c, const void *send, size_t count, void *recv, const size_t *counts,
                          int root, mf_cdtype dt) {
  int n = c->size;
  if (count != counts[c->rank])
    return MF_ERR(MF_ERR_INTERNAL, "gatherv: rank %d sends %zu elements, counts says %zu", c->rank, count,
                  counts[c->rank]);
  size_t *v = calloc(4 * (size_t)n, sizeof *v);
  if (!v) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  size_t *sc = v, *sd = v + n, *rc = v + 2 * n, *rd = v + 3 * n;
  sc[root] = count;
  if (c->rank == root) {
    size_t off = 0;
    for (int r = 0; r < n; r++) {
      rc[r] = counts[r];
      rd[r] = off;
      off += counts[r];
    }
  }
  mf_status st = mf_comm_alltoallv(c, send, sc, sd, recv, rc, rd, dt);
  free(v);
  return st;
}

void mf_comm_destroy(mf_comm *c) {
  if (!c) return;
  if (c == g_world) return; /* the world ends with mf_comm_world_finalize */
  c->vt->destroy(c);
}
