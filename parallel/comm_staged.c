/* The staged device communicator: device buffers over a host communicator (MPI).
 *
 * Each operation copies its device input to a host buffer of its own (be->to_host, which
 * waits for the work queued before it), starts the host collective there, and copies the
 * result back to the device when a test sees it complete. Used where a device run has
 * several ranks but no NCCL (a CUDA build without it, parallel.device_comm: host) and in
 * the emulation build, where it lets the CUDA trainer's data parallelism be checked
 * against the CPU without a GPU. Slower than NCCL (every byte crosses the host twice), the
 * same sums: MPI reduces the same values in the same order as on host buffers.
 *
 * Host buffers belong to a slot (one per operation in flight; as many slots as were ever
 * in flight at once) and grow to the largest operation seen, so the steady-state step
 * allocates nothing. */
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "parallel/comm_impl.h"

typedef struct slot {
  int used;
  mf_comm_req inner; /* the host operation */
  char *buf;         /* host staging, cap bytes */
  size_t cap;
  void *dst;         /* device destination of the result (NULL: nothing to copy back) */
  size_t off, bytes; /* the result: buf + off, bytes long */
} slot;

typedef struct staged {
  mf_comm *host;
  int owns_host; /* made by split */
  const mf_backend *be;
  slot *s; /* requests hold an index into it: it may move as it grows */
  int n;
} staged;

#define ST(c) ((staged *)(c)->impl)

static mf_status staged_wrap(mf_comm *host, int owns, const mf_backend *be, mf_comm **out);

/* a free slot whose buffer holds at least `bytes` */
static mf_status take(mf_comm *c, size_t bytes, slot **out) {
  staged *s = ST(c);
  int i = 0;
  while (i < s->n && s->s[i].used) i++;
  if (i == s->n) {
    int n = s->n ? 2 * s->n : 4;
    slot *ns = realloc(s->s, (size_t)n * sizeof *ns);
    if (!ns) return MF_ERR(MF_ERR_NOMEM, "staged communicator: out of memory");
    memset(ns + s->n, 0, (size_t)(n - s->n) * sizeof *ns);
    s->s = ns;
    s->n = n;
  }
  slot *k = &s->s[i];
  if (k->cap < bytes) {
    char *nb = realloc(k->buf, bytes);
    if (!nb) return MF_ERR(MF_ERR_NOMEM, "staged communicator: out of host memory for %zu bytes", bytes);
    k->buf = nb;
    k->cap = bytes;
  }
  k->used = 1;
  k->dst = NULL;
  k->off = k->bytes = 0;
  *out = k;
  return MF_OK;
}

/* the slot's host operation started (or failed): ties req to the slot */
static mf_status started(mf_comm *c, slot *k, mf_status st, mf_comm_req *req, const char *call) {
  if (st != MF_OK) {
    k->used = 0;
    return st;
  }
  mf_comm_req_start(req, c, call);
  int idx = (int)(k - ST(c)->s);
  memcpy(req->h, &idx, sizeof idx);
  return MF_OK;
}

static mf_status staged_iallreduce(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                   mf_red_op op, mf_comm_req *req) {
  size_t bytes = count * mf_cdtype_size(dt);
  slot *k = NULL;
  MF_TRY(take(c, bytes, &k));
  ST(c)->be->to_host(k->buf, send, bytes);
  k->dst = recv;
  k->bytes = bytes;
  return started(c, k, mf_comm_iallreduce(ST(c)->host, k->buf, k->buf, count, dt, op, &k->inner), req,
                 "staged allreduce");
}

static mf_status staged_ireduce_scatter(mf_comm *c, const void *send, void *recv, size_t recvcount,
                                        mf_cdtype dt, mf_red_op op, mf_comm_req *req) {
  size_t piece = recvcount * mf_cdtype_size(dt), whole = piece * (size_t)c->size;
  slot *k = NULL;
  MF_TRY(take(c, whole + piece, &k));
  ST(c)->be->to_host(k->buf, send, whole);
  k->dst = recv;
  k->off = whole;
  k->bytes = piece;
  return started(c, k, mf_comm_ireduce_scatter(ST(c)->host, k->buf, k->buf + whole, recvcount, dt, op, &k->inner),
                 req, "staged reduce_scatter");
}

static mf_status staged_iallgather(mf_comm *c, const void *send, void *recv, size_t count, mf_cdtype dt,
                                   mf_comm_req *req) {
  size_t piece = count * mf_cdtype_size(dt), mine = piece * (size_t)c->rank;
  slot *k = NULL;
  MF_TRY(take(c, piece * (size_t)c->size, &k));
  ST(c)->be->to_host(k->buf + mine, send, piece); /* in place on the host side */
  k->dst = recv;
  k->bytes = piece * (size_t)c->size;
  return started(c, k, mf_comm_iallgather(ST(c)->host, k->buf + mine, k->buf, count, dt, &k->inner), req,
                 "staged allgather");
}

/* rare on device buffers (checkpoint gathers use host mirrors): done at once, and only the
 * received pieces go back, so the gaps between them keep what the device had */
static mf_status staged_ialltoallv(mf_comm *c, const void *send, const size_t *scounts, const size_t *sdispls,
                                   void *recv, const size_t *rcounts, const size_t *rdispls, mf_cdtype dt,
                                   mf_comm_req *req) {
  size_t es = mf_cdtype_size(dt), sext = 0, rext = 0;
  for (int r = 0; r < c->size; r++) {
    if (scounts[r] && sdispls[r] + scounts[r] > sext) sext = sdispls[r] + scounts[r];
    if (rcounts[r] && rdispls[r] + rcounts[r] > rext) rext = rdispls[r] + rcounts[r];
  }
  slot *k = NULL;
  MF_TRY(take(c, (sext + rext) * es, &k));
  if (sext) ST(c)->be->to_host(k->buf, send, sext * es);
  char *hr = k->buf + sext * es;
  mf_status st = mf_comm_alltoallv(ST(c)->host, k->buf, scounts, sdispls, hr, rcounts, rdispls, dt);
  for (int r = 0; st == MF_OK && r < c->size; r++)
    if (rcounts[r]) ST(c)->be->to_device((char *)recv + rdispls[r] * es, hr + rdispls[r] * es, rcounts[r] * es);
  k->used = 0;
  if (st == MF_OK) mf_comm_req_done(req, c, "staged alltoallv");
  return st;
}

static mf_status staged_ibcast(mf_comm *c, void *buf, size_t count, mf_cdtype dt, int root, mf_comm_req *req) {
  size_t bytes = count * mf_cdtype_size(dt);
  slot *k = NULL;
  MF_TRY(take(c, bytes, &k));
  if (c->rank == root) ST(c)->be->to_host(k->buf, buf, bytes);
  else {
    k->dst = buf;
    k->bytes = bytes;
  }
  return started(c, k, ST(c)->host->vt->ibcast(ST(c)->host, k->buf, count, dt, root, &k->inner), req, "staged bcast");
}

static mf_status staged_ibarrier(mf_comm *c, mf_comm_req *req) {
  slot *k = NULL;
  MF_TRY(take(c, 0, &k));
  return started(c, k, ST(c)->host->vt->ibarrier(ST(c)->host, &k->inner), req, "staged barrier");
}

static mf_status staged_split(mf_comm *c, int color, int key, mf_comm **out) {
  mf_comm *h;
  MF_TRY(mf_comm_split(ST(c)->host, color, key, &h));
  mf_status st = staged_wrap(h, 1, ST(c)->be, out);
  if (st != MF_OK) mf_comm_destroy(h);
  return st;
}

static mf_status staged_test(mf_comm_req *req, int *done) {
  mf_comm *c = req->comm;
  int idx;
  memcpy(&idx, req->h, sizeof idx);
  slot *k = &ST(c)->s[idx];
  mf_status st = mf_comm_test(&k->inner, done);
  if (st != MF_OK || !*done) {
    if (st != MF_OK) k->used = 0;
    return st;
  }
  if (k->dst && k->bytes) ST(c)->be->to_device(k->dst, k->buf + k->off, k->bytes);
  k->used = 0;
  return MF_OK;
}

static mf_status staged_progress(mf_comm *c) { return mf_comm_progress(ST(c)->host); }

static mf_status staged_sync(mf_comm *c) { return mf_comm_sync(ST(c)->host); }

static void staged_destroy(mf_comm *c) {
  staged *s = ST(c);
  for (int i = 0; i < s->n; i++) free(s->s[i].buf);
  free(s->s);
  if (s->owns_host) mf_comm_destroy(s->host);
  free(s);
  free(c);
}

static const mf_comm_vt staged_vt = {
    .kind = "staged",
    .on_device = 1,
    .iallreduce = staged_iallreduce,
    .ireduce_scatter = staged_ireduce_scatter,
    .iallgather = staged_iallgather,
    .ialltoallv = staged_ialltoallv,
    .ibcast = staged_ibcast,
    .ibarrier = staged_ibarrier,
    .split = staged_split,
    .test = staged_test,
    .progress = staged_progress,
    .sync = staged_sync,
    .destroy = staged_destroy,
};

static mf_status staged_wrap(mf_comm *host, int owns, const mf_backend *be, mf_comm **out) {
  mf_comm *c = calloc(1, sizeof *c);
  staged *s = calloc(1, sizeof *s);
  if (!c || !s) {
    free(c);
    free(s);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  s->host = host;
  s->owns_host = owns;
  s->be = be;
  c->vt = &staged_vt;
  c->rank = mf_comm_rank(host);
  c->size = mf_comm_size(host);
  c->impl = s;
  *out = c;
  return MF_OK;
}

mf_status mf_comm_staged_create(mf_comm *host, const mf_backend *be, mf_comm **out) {
  if (mf_comm_on_device(host))
    return MF_ERR(MF_ERR_INTERNAL, "staged communicator: '%s' already takes device buffers", mf_comm_kind(host));
  return staged_wrap(host, 0, be, out);
}
