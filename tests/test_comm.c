/* The communicator interface on whatever world this process is in (alone: the single-rank
 * communicator; under mpirun: MPI): every collective against values each rank can
 * compute itself, in place and out of place, blocking and not; split into sub-groups;
 * gatherv; errors that name the rank and the call. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bf16.h"
#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "tests/test.h"

static int R, N;

/* value rank r contributes at index i */
static float val(int r, size_t i) { return (float)((r + 1) * 1000 + (int)(i % 997)); }

static void collectives(mf_comm *c, const char *what) {
  int r = mf_comm_rank(c), n = mf_comm_size(c);
  size_t cnt = 1000 + 3;
  float *a = malloc(cnt * n * sizeof *a), *b = malloc(cnt * n * sizeof *b);
  int ok;

  /* allreduce: sum (exact in float: small integers), max, min; out of place and in place */
  for (size_t i = 0; i < cnt; i++) a[i] = val(r, i);
  CHECK(mf_comm_allreduce(c, a, b, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  ok = 1;
  for (size_t i = 0; i < cnt; i++) {
    float want = 0;
    for (int q = 0; q < n; q++) want += val(q, i);
    ok &= b[i] == want;
  }
  CHECKF(ok, "%s: allreduce sum", what);
  CHECK(mf_comm_allreduce(c, a, a, cnt, MF_C_F32, MF_RED_MAX) == MF_OK);
  ok = 1;
  for (size_t i = 0; i < cnt; i++) ok &= a[i] == val(n - 1, i);
  CHECKF(ok, "%s: allreduce max in place", what);
  double d = r + 0.5;
  CHECK(mf_comm_allreduce(c, &d, &d, 1, MF_C_F64, MF_RED_MIN) == MF_OK);
  CHECKF(d == 0.5, "%s: allreduce min f64: %g", what, d);
  int64_t big = (int64_t)1 << 40;
  CHECK(mf_comm_allreduce(c, &big, &big, 1, MF_C_I64, MF_RED_SUM) == MF_OK);
  CHECK(big == ((int64_t)n << 40));

  /* bf16 (gradients of bf16 runs): sums of small integers are exact; the sum alone */
  uint16_t *h = malloc(cnt * n * sizeof *h), *h2 = malloc(cnt * sizeof *h2);
  for (size_t i = 0; i < cnt; i++) h[i] = mf_f32_to_bf16((float)(r + 1 + (int)(i % 7)));
  CHECK(mf_comm_allreduce(c, h, h2, cnt, MF_C_BF16, MF_RED_SUM) == MF_OK);
  ok = 1;
  for (size_t i = 0; i < cnt; i++) ok &= mf_bf16_to_f32(h2[i]) == (float)(n * (n + 1) / 2 + n * (int)(i % 7));
  CHECKF(ok, "%s: allreduce bf16 sum", what);
  for (size_t i = 0; i < cnt * n; i++) h[i] = mf_f32_to_bf16((float)(r + (int)(i % 5)));
  CHECK(mf_comm_reduce_scatter(c, h, h2, cnt, MF_C_BF16, MF_RED_SUM) == MF_OK);
  ok = 1;
  for (size_t i = 0; i < cnt; i++)
    ok &= mf_bf16_to_f32(h2[i]) == (float)(n * (n - 1) / 2 + n * (int)((r * cnt + i) % 5));
  CHECKF(ok, "%s: reduce_scatter bf16 sum", what);
  if (n > 1 && strcmp(mf_comm_kind(c), "single") != 0) /* one rank's "reduction" is a copy */
    CHECK(mf_comm_allreduce(c, h, h2, cnt, MF_C_BF16, MF_RED_MAX) == MF_ERR_INTERNAL);
  free(h);
  free(h2);

  /* non-blocking all-reduce with tests while "computing" */
  for (size_t i = 0; i < cnt; i++) a[i] = val(r, i);
  mf_comm_req q;
  CHECK(mf_comm_iallreduce(c, a, a, cnt, MF_C_F32, MF_RED_SUM, &q) == MF_OK);
  int done = 0, polls = 0;
  while (!done && polls < 100000) {
    CHECK(mf_comm_test(&q, &done) == MF_OK);
    polls++;
  }
  CHECK(mf_comm_wait(&q) == MF_OK);
  ok = 1;
  for (size_t i = 0; i < cnt; i++) {
    float want = 0;
    for (int k = 0; k < n; k++) want += val(k, i);
    ok &= a[i] == want;
  }
  CHECKF(ok, "%s: iallreduce", what);

  /* reduce-scatter: block q of the sum to rank q */
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < cnt; i++) a[k * cnt + i] = val(r, k * cnt + i);
  CHECK(mf_comm_reduce_scatter(c, a, b, cnt, MF_C_F32, MF_RED_SUM) == MF_OK);
  ok = 1;
  for (size_t i = 0; i < cnt; i++) {
    float want = 0;
    for (int k = 0; k < n; k++) want += val(k, r * cnt + i);
    ok &= b[i] == want;
  }
  CHECKF(ok, "%s: reduce_scatter", what);

  /* all-gather, out of place and in place */
  for (size_t i = 0; i < cnt; i++) a[i] = val(r, i);
  CHECK(mf_comm_allgather(c, a, b, cnt, MF_C_F32) == MF_OK);
  ok = 1;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < cnt; i++) ok &= b[k * cnt + i] == val(k, i);
  CHECKF(ok, "%s: allgather", what);
  memset(b, 0, cnt * n * sizeof *b);
  for (size_t i = 0; i < cnt; i++) b[r * cnt + i] = val(r, i);
  mf_comm_req g;
  CHECK(mf_comm_iallgather(c, b + r * cnt, b, cnt, MF_C_F32, &g) == MF_OK);
  CHECK(mf_comm_wait(&g) == MF_OK);
  ok = 1;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < cnt; i++) ok &= b[k * cnt + i] == val(k, i);
  CHECKF(ok, "%s: allgather in place", what);

  /* all-to-all: block k of rank r's send is r*100+k; receives block r of every rank */
  int32_t *s32 = malloc(n * 4 * sizeof *s32), *r32 = malloc(n * 4 * sizeof *r32);
  for (int k = 0; k < n; k++)
    for (int j = 0; j < 4; j++) s32[k * 4 + j] = r * 100 + k + j * 10000;
  CHECK(mf_comm_alltoall(c, s32, r32, 4, MF_C_I32) == MF_OK);
  ok = 1;
  for (int k = 0; k < n; k++)
    for (int j = 0; j < 4; j++) ok &= r32[k * 4 + j] == k * 100 + r + j * 10000;
  CHECKF(ok, "%s: alltoall", what);
  /* all-to-all(v): rank r sends k+1 elements to rank k */
  size_t *sc = calloc(4 * (size_t)n, sizeof *sc), *sd = sc + n, *rc = sc + 2 * n, *rd = sc + 3 * n;
  size_t so = 0, ro = 0;
  for (int k = 0; k < n; k++) {
    sc[k] = (size_t)k + 1;
    sd[k] = so;
    so += sc[k];
    rc[k] = (size_t)r + 1;
    rd[k] = ro;
    ro += rc[k];
  }
  int32_t *sv = malloc(so * sizeof *sv), *rv = malloc(ro * sizeof *rv);
  for (int k = 0; k < n; k++)
    for (size_t j = 0; j < sc[k]; j++) sv[sd[k] + j] = r * 1000 + k * 10 + (int)j;
  CHECK(mf_comm_alltoallv(c, sv, sc, sd, rv, rc, rd, MF_C_I32) == MF_OK);
  ok = 1;
  for (int k = 0; k < n; k++)
    for (size_t j = 0; j < rc[k]; j++) ok &= rv[rd[k] + j] == k * 1000 + r * 10 + (int)j;
  CHECKF(ok, "%s: alltoallv", what);

  /* gatherv to the last rank: rank k sends k+2 values */
  size_t *counts = malloc(n * sizeof *counts), total = 0;
  for (int k = 0; k < n; k++) total += counts[k] = (size_t)k + 2;
  double *gs = malloc(counts[r] * sizeof *gs), *gr = malloc(total * sizeof *gr);
  for (size_t j = 0; j < counts[r]; j++) gs[j] = r + j * 0.25;
  CHECK(mf_comm_gatherv(c, gs, counts[r], gr, counts, n - 1, MF_C_F64) == MF_OK);
  if (r == n - 1) {
    ok = 1;
    size_t o = 0;
    for (int k = 0; k < n; k++)
      for (size_t j = 0; j < counts[k]; j++) ok &= gr[o++] == k + j * 0.25;
    CHECKF(ok, "%s: gatherv", what);
  }

  /* broadcast from every root in turn; barrier */
  for (int root = 0; root < n; root++) {
    uint8_t msg[5] = {0};
    if (r == root) memcpy(msg, "mfrg", 5), msg[4] = (uint8_t)root;
    CHECK(mf_comm_bcast(c, msg, 5, MF_C_U8, root) == MF_OK);
    CHECK(memcmp(msg, "mfrg", 4) == 0 && msg[4] == root);
  }
  CHECK(mf_comm_barrier(c) == MF_OK);
  free(a), free(b), free(s32), free(r32), free(sc), free(sv), free(rv), free(counts), free(gs), free(gr);
}

int main(void) {
  mf_comm *w;
  if (mf_comm_world(&w) != MF_OK) {
    fprintf(stderr, "%s\n", mf_error_message());
    return 1;
  }
  R = mf_comm_rank(w);
  N = mf_comm_size(w);
  CHECK(strcmp(mf_comm_kind(w), mf_comm_launched() ? "mpi" : "single") == 0);
  CHECK(!mf_comm_on_device(w));
  collectives(w, "world");
  /* the staged device communicator over the world, with the CPU backend as the "device"
   * (its copies are memcpy): every collective through its host staging and copy-back */
  mf_comm *sw;
  CHECK(mf_comm_staged_create(w, &mf_backend_cpu, &sw) == MF_OK);
  CHECK(strcmp(mf_comm_kind(sw), "staged") == 0 && mf_comm_on_device(sw));
  CHECK(mf_comm_rank(sw) == R && mf_comm_size(sw) == N);
  collectives(sw, "staged");
  mf_comm *sw2;
  CHECK(mf_comm_staged_create(sw, &mf_backend_cpu, &sw2) == MF_ERR_INTERNAL);
  mf_comm_destroy(sw);

  /* the DP x TP grid: 2 x (N/2) when N is even */
  int tp = N % 2 == 0 ? 2 : 1;
  mf_par par;
  CHECK(mf_par_init(&par, w, tp) == MF_OK);
  CHECK(par.tp_rank == R % tp && par.dp_rank == R / tp);
  CHECK(mf_comm_size(par.tp) == tp && mf_comm_size(par.dp) == N / tp);
  CHECK(mf_comm_rank(par.tp) == par.tp_rank && mf_comm_rank(par.dp) == par.dp_rank);
  /* a sum over the TP group is the sum of its world ranks */
  int s = R, want = 0;
  for (int k = 0; k < tp; k++) want += par.dp_rank * tp + k;
  CHECK(mf_comm_allreduce(par.tp, &s, &s, 1, MF_C_I32, MF_RED_SUM) == MF_OK);
  CHECKF(s == want, "tp group sum %d, want %d", s, want);
  collectives(par.tp, "tp group");
  collectives(par.dp, "dp group");
  mf_par_free(&par);
  if (N > 1) {
    mf_par bad;
    mf_status st = mf_par_init(&bad, w, N + 1);
    CHECK(st == MF_ERR_CONFIG && strstr(mf_error_message(), "parallel.tp"));
  }

  /* errors name the rank and the call */
  uint8_t x = 0;
  mf_status st = mf_comm_bcast(w, &x, 1, MF_C_U8, N + 3);
  CHECK(st == MF_ERR_INTERNAL && strstr(mf_error_message(), "root"));
  if (N > 1) {
    mf_comm *bad;
    st = mf_comm_split(w, -5, 0, &bad); /* a negative colour other than MPI_UNDEFINED */
    char want_prefix[32];
    snprintf(want_prefix, sizeof want_prefix, "rank %d: MPI_Comm_split failed", R);
    CHECKF(st == MF_ERR_BACKEND && strstr(mf_error_message(), want_prefix), "got: %s", mf_error_message());
    if (R == 0) printf("an MPI error reads: %s\n", mf_error_message());
    float f = 0;
    st = mf_comm_allreduce(w, &f, &f, (size_t)INT_MAX + 1, MF_C_F32, MF_RED_SUM);
    CHECK(st == MF_ERR_BACKEND && strstr(mf_error_message(), "MPI_Iallreduce"));
  }
  mf_comm_barrier(w);
  int failed = 0;
  mf_comm_allreduce(w, &mf_test_failures, &failed, 1, MF_C_I32, MF_RED_MAX);
  int rc = R == 0 ? mf_test_report("test_comm") : 0;
  if (R == 0) printf("test_comm: %d rank%s (%s)\n", N, N > 1 ? "s" : "", mf_comm_kind(w));
  mf_comm_world_finalize();
  return rc || failed ? 1 : 0;
}
