/* The NCCL communicator on device buffers, against the host communicator on the same data
 * (single-rank alone, MPI under mpirun: one GPU per rank, chosen by local rank). Every
 * collective of the interface, in place and not, blocking and not, a split, and the
 * data-parallel gradient reduction (all-reduce of float buckets, reduce-scatter and
 * all-gather as ZeRO-1 does them) compared with the host result. Without a GPU it
 * reports "skipped" (and passes): a lent GPU machine runs it with
 *   ctest -R gpu_nccl            (1 GPU: a 1-rank NCCL communicator)
 *   mpirun -np 2 build/tests/test_nccl   (2 GPUs) */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/comm.h"
#include "tests/test.h"

static float val(int r, size_t i) { return (float)((r + 1) * 1000 + (int)(i % 997)); }

static float *dev(size_t n) {
  float *p = NULL;
  if (cudaMalloc((void **)&p, n * sizeof(float) + 16) != cudaSuccess) return NULL;
  return p;
}
static void up(float *d, const float *h, size_t n) { cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice); }
static void down(float *h, const float *d, size_t n) { cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost); }

int main(void) {
  int ndev = 0;
  cudaError_t e = cudaGetDeviceCount(&ndev);
  mf_comm *w;
  if (mf_comm_world(&w) != MF_OK) {
    fprintf(stderr, "%s\n", mf_error_message());
    return 1;
  }
  int R = mf_comm_rank(w), N = mf_comm_size(w);
  int have = e == cudaSuccess && ndev > 0, all = have;
  mf_comm_allreduce(w, &have, &all, 1, MF_C_I32, MF_RED_MIN);
  if (!all) {
    if (R == 0) SKIP("NCCL: no usable GPU on every rank (cudaGetDeviceCount: %s, %d devices)",
                     e == cudaSuccess ? "ok" : cudaGetErrorString(e), ndev);
    int rc = R == 0 ? mf_test_report("test_nccl") : 0;
    mf_comm_world_finalize();
    return rc;
  }
  mf_comm *nc;
  mf_status st = mf_comm_nccl_create(w, -1, NULL, &nc);
  CHECKF(st == MF_OK, "mf_comm_nccl_create: %s", mf_error_message());
  if (st != MF_OK) return mf_test_report("test_nccl");
  CHECK(mf_comm_on_device(nc) && strcmp(mf_comm_kind(nc), "nccl") == 0);
  CHECK(mf_comm_rank(nc) == R && mf_comm_size(nc) == N);

  size_t cnt = (1 << 20) + 48; /* a bucket of ~4 MB, not a round number */
  float *h = malloc(cnt * N * sizeof *h), *h2 = malloc(cnt * N * sizeof *h2), *ref = malloc(cnt * N * sizeof *ref);
  float *d = dev(cnt * N), *d2 = dev(cnt * N);
  CHECK(d && d2);
  int ok;

  /* all-reduce, out of place and in place, against the host communicator */
  for (size_t i = 0; i < cnt; i++) h[i] = val(R, i);
  up(d, h, cnt);
  CHECK(mf_comm_allreduce(nc, d, d2, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  CHECK(mf_comm_allreduce(w, h, ref, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  down(h2, d2, cnt);
  CHECKF(memcmp(h2, ref, cnt * sizeof *h2) == 0, "ncclAllReduce != host all-reduce");
  mf_comm_req q;
  CHECK(mf_comm_iallreduce(nc, d, d, cnt, MF_C_F32, MF_RED_MAX, &q) == MF_OK);
  CHECK(mf_comm_wait(&q) == MF_OK);
  down(h2, d, cnt);
  ok = 1;
  for (size_t i = 0; i < cnt; i++) ok &= h2[i] == val(N - 1, i);
  CHECKF(ok, "in-place non-blocking all-reduce max");

  /* gradients as data parallelism reduces them: random floats, relative agreement */
  uint64_t s = 88172645463325252ull + (uint64_t)R;
  mf_test_fill(h, cnt, -1e-3f, 1e-3f, &s);
  up(d, h, cnt);
  CHECK(mf_comm_allreduce(nc, d, d, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  CHECK(mf_comm_allreduce(w, h, ref, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  down(h2, d, cnt);
  double err = mf_test_nerr_f(h2, ref, cnt);
  CHECKF(err <= 1e-6, "bucket all-reduce: normalised error %.3g vs the host", err);

  /* ZeRO-1: reduce-scatter, then all-gather in place */
  for (size_t i = 0; i < cnt * N; i++) h[i] = val(R, i);
  up(d, h, cnt * N);
  CHECK(mf_comm_reduce_scatter(nc, d, d2, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  CHECK(mf_comm_reduce_scatter(w, h, ref, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  down(h2, d2, cnt);
  CHECKF(memcmp(h2, ref, cnt * sizeof *h2) == 0, "ncclReduceScatter != host");
  cudaMemcpy(d + (size_t)R * cnt, d2, cnt * sizeof(float), cudaMemcpyDeviceToDevice);
  CHECK(mf_comm_allgather(nc, d + (size_t)R * cnt, d, cnt, MF_C_F32) == MF_OK);
  CHECK(mf_comm_allgather(w, ref, h, cnt, MF_C_F32) == MF_OK);
  down(h2, d, cnt * N);
  CHECKF(memcmp(h2, h, cnt * N * sizeof *h2) == 0, "ncclAllGather (in place) != host");

  /* all-to-all(v), gatherv, broadcast, barrier */
  size_t *v = calloc(4 * (size_t)N, sizeof *v);
  for (int k = 0; k < N; k++) {
    v[k] = 3;
    v[N + k] = (size_t)k * 3;
    v[2 * N + k] = 3;
    v[3 * N + k] = (size_t)k * 3;
  }
  for (int k = 0; k < 3 * N; k++) h[k] = (float)(R * 100 + k);
  up(d, h, 3 * (size_t)N);
  CHECK(mf_comm_alltoallv(nc, d, v, v + N, d2, v + 2 * N, v + 3 * N, MF_C_F32) == MF_OK);
  CHECK(mf_comm_alltoallv(w, h, v, v + N, ref, v + 2 * N, v + 3 * N, MF_C_F32) == MF_OK);
  down(h2, d2, 3 * (size_t)N);
  CHECKF(memcmp(h2, ref, 3 * (size_t)N * sizeof *h2) == 0, "alltoallv (ncclSend/ncclRecv) != host");
  h[0] = R == 0 ? 42.0f : 0.0f;
  up(d, h, 1);
  CHECK(mf_comm_bcast(nc, d, 1, MF_C_F32, 0) == MF_OK);
  down(h2, d, 1);
  CHECK(h2[0] == 42.0f);
  CHECK(mf_comm_barrier(nc) == MF_OK);
  mf_comm *sub;
  CHECK(mf_comm_split(nc, R % 2, R, &sub) == MF_OK);
  if (sub) {
    CHECK(mf_comm_size(sub) == (N + 1 - R % 2) / 2);
    CHECK(mf_comm_barrier(sub) == MF_OK);
    mf_comm_destroy(sub);
  }
  CHECK(mf_comm_sync(nc) == MF_OK);
  cudaFree(d);
  cudaFree(d2);
  free(h), free(h2), free(ref), free(v);
  mf_comm_destroy(nc);
  int failed = 0;
  mf_comm_allreduce(w, &mf_test_failures, &failed, 1, MF_C_I32, MF_RED_MAX);
  int rc = R == 0 ? mf_test_report("test_nccl") : 0;
  mf_comm_world_finalize();
  return rc || failed ? 1 : 0;
}
