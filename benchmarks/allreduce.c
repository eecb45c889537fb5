/* All-reduce bandwidth through mforge's communicator, printed like nccl-tests
 * (all_reduce_perf): size, count, type, redop, root, then time / algbw / busbw / #wrong
 * out of place and in place, and the "Out of bounds values : N OK" and "Avg bus bandwidth"
 * footer. busbw = algbw x 2 (n - 1) / n, the figure comparable across rank counts.
 *
 *   mpirun -np 2 build/benchmarks/allreduce [-b 1K] [-e 256M] [-f 2] [-n 20] [-w 3]
 *          [-c 1] [-t 1.0] [--backend mpi|nccl] [--raw]
 *
 * --backend nccl (built with NCCL, one GPU per rank) uses device buffers; mpi (default)
 * host buffers. -t caps the seconds spent timing each size (iterations shrink for large
 * sizes so 256 MiB stays affordable on a small machine); the time reported is the mean per
 * iteration, the slowest rank's. --raw times MPI_Allreduce itself as well, for comparison
 * with the interface (which polls a non-blocking all-reduce with a deadline). Values are
 * small integers, so sums are exact and #wrong counts every element that is off. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef MF_HAVE_MPI
#include <mpi.h>
#endif
#ifdef MF_HAVE_NCCL
#include <cuda_runtime.h>
#endif

#include "core/progress.h"
#include "parallel/comm.h"

static size_t parse_size(const char *s) {
  char *end;
  double v = strtod(s, &end);
  switch (*end) {
  case 'K': case 'k': v *= 1024; break;
  case 'M': case 'm': v *= 1024 * 1024; break;
  case 'G': case 'g': v *= 1024.0 * 1024 * 1024; break;
  }
  return (size_t)v;
}

typedef struct bufs {
  int dev;
  float *send, *recv, *host;
} bufs;

static int alloc_bufs(bufs *b, size_t n, int dev) {
  b->dev = dev;
  b->host = malloc(n * sizeof(float));
#ifdef MF_HAVE_NCCL
  if (dev) {
    if (cudaMalloc((void **)&b->send, n * sizeof(float)) != cudaSuccess ||
        cudaMalloc((void **)&b->recv, n * sizeof(float)) != cudaSuccess)
      return 0;
    return b->host != NULL;
  }
#endif
  b->send = malloc(n * sizeof(float));
  b->recv = malloc(n * sizeof(float));
  return b->send && b->recv && b->host;
}

static void put(bufs *b, float *dst, size_t n) {
#ifdef MF_HAVE_NCCL
  if (b->dev) {
    cudaMemcpy(dst, b->host, n * sizeof(float), cudaMemcpyHostToDevice);
    return;
  }
#endif
  if (dst != b->host) memcpy(dst, b->host, n * sizeof(float));
}

static const float *get(bufs *b, const float *src, size_t n) {
#ifdef MF_HAVE_NCCL
  if (b->dev) {
    cudaMemcpy(b->host, src, n * sizeof(float), cudaMemcpyDeviceToHost);
    return b->host;
  }
#endif
  return src;
}

/* rank r's element i: small integers, exact in any summation order */
static void fill(float *x, size_t n, int r) {
  for (size_t i = 0; i < n; i++) x[i] = (float)((r + 1) * (int)(i % 13 + 1));
}

static long wrong(const float *x, size_t n, int ranks) {
  long bad = 0;
  float f = (float)(ranks * (ranks + 1) / 2);
  for (size_t i = 0; i < n; i++) bad += x[i] != f * (float)(i % 13 + 1);
  return bad;
}

typedef mf_status (*op_fn)(mf_comm *c, bufs *b, size_t n, int in_place, int raw);

static mf_status do_allreduce(mf_comm *c, bufs *b, size_t n, int in_place, int raw) {
#ifdef MF_HAVE_MPI
  if (raw) {
    int rc = MPI_Allreduce(in_place ? MPI_IN_PLACE : b->send, b->recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? MF_OK : MF_ERR(MF_ERR_BACKEND, "MPI_Allreduce failed");
  }
#endif
  return mf_comm_allreduce(c, in_place ? b->recv : b->send, b->recv, n, MF_C_F32, MF_RED_SUM);
}

/* mean seconds per all-reduce (the slowest rank), or < 0 on error */
static double timed(mf_comm *c, bufs *b, size_t n, int in_place, int raw, int warm, int iters, double cap,
                    long *bad) {
  int R = mf_comm_rank(c), N = mf_comm_size(c);
  fill(b->host, n, R);
  put(b, b->send, n);
  put(b, b->recv, n);
  double t0 = mf_now();
  for (int i = 0; i < warm; i++)
    if (do_allreduce(c, b, n, in_place, raw) != MF_OK) return -1;
  mf_comm_sync(c);
  double est = warm > 0 ? (mf_now() - t0) / warm : 0;
  mf_comm_allreduce(c, &est, &est, 1, MF_C_F64, MF_RED_MAX);
  if (est > 0 && iters * est > cap) iters = (int)(cap / est) > 1 ? (int)(cap / est) : 1;
  mf_comm_barrier(c);
  t0 = mf_now();
  for (int i = 0; i < iters; i++)
    if (do_allreduce(c, b, n, in_place, raw) != MF_OK) return -1;
  mf_comm_sync(c);
  double t = (mf_now() - t0) / iters;
  mf_comm_allreduce(c, &t, &t, 1, MF_C_F64, MF_RED_MAX);
  /* check one fresh all-reduce (in place, repeated runs compound) */
  fill(b->host, n, R);
  put(b, b->send, n);
  put(b, b->recv, n);
  if (do_allreduce(c, b, n, in_place, raw) != MF_OK) return -1;
  mf_comm_sync(c);
  *bad = wrong(get(b, b->recv, n), n, N);
  mf_comm_allreduce(c, bad, bad, 1, MF_C_I64, MF_RED_SUM);
  return t;
}

int main(int argc, char **argv) {
  size_t minb = 1024, maxb = 256u << 20;
  int factor = 2, iters = 20, warm = 3, check = 1, raw = 0;
  double cap = 1.0;
  const char *backend = "mpi";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
    if (strcmp(a, "-b") == 0) minb = parse_size(v), i++;
    else if (strcmp(a, "-e") == 0) maxb = parse_size(v), i++;
    else if (strcmp(a, "-f") == 0) factor = atoi(v), i++;
    else if (strcmp(a, "-n") == 0) iters = atoi(v), i++;
    else if (strcmp(a, "-w") == 0) warm = atoi(v), i++;
    else if (strcmp(a, "-c") == 0) check = atoi(v), i++;
    else if (strcmp(a, "-t") == 0) cap = atof(v), i++;
    else if (strcmp(a, "--backend") == 0) backend = v, i++;
    else if (strcmp(a, "--raw") == 0) raw = 1;
    else {
      fprintf(stderr, "usage: allreduce [-b 1K] [-e 256M] [-f 2] [-n 20] [-w 3] [-c 1] [-t 1.0] "
                      "[--backend mpi|nccl] [--raw]\n");
      return 2;
    }
  }
  if (factor < 2) factor = 2;
  if (iters < 1) iters = 1;
  mf_comm *w, *c;
  if (mf_comm_world(&w) != MF_OK) {
    fprintf(stderr, "allreduce: %s\n", mf_error_message());
    return 1;
  }
  c = w;
  int dev = 0;
  if (strcmp(backend, "nccl") == 0) {
#ifdef MF_HAVE_NCCL
    if (mf_comm_nccl_create(w, -1, NULL, &c) != MF_OK) {
      fprintf(stderr, "allreduce: %s\n", mf_error_message());
      return 1;
    }
    dev = 1;
    raw = 0;
#else
    fprintf(stderr, "allreduce: built without NCCL\n");
    return 1;
#endif
  } else if (strcmp(backend, "mpi") != 0) {
    fprintf(stderr, "allreduce: --backend mpi or nccl\n");
    return 2;
  }
#ifndef MF_HAVE_MPI
  raw = 0;
#endif
  if (!mf_comm_launched()) raw = 0;
  int R = mf_comm_rank(c), N = mf_comm_size(c);
  bufs b;
  size_t maxn = maxb / sizeof(float);
  if (!alloc_bufs(&b, maxn > 0 ? maxn : 1, dev)) {
    fprintf(stderr, "allreduce: out of memory for %zu bytes\n", maxb);
    return 1;
  }
  char host[64] = "?";
  gethostname(host, sizeof host);
  if (R == 0) {
    printf("# mforge allreduce: backend %s (%s), %d ranks, minBytes %zu maxBytes %zu step: %d(factor) "
           "warmup iters: %d iters: %d (at most %.1f s per size) validation: %d\n",
           backend, mf_comm_kind(c), N, minb, maxb, factor, warm, iters, cap, check);
    printf("#  Rank  0 on %s, %s buffers%s\n#\n", host, dev ? "device" : "host",
           raw ? "; raw: MPI_Allreduce on the same buffers" : "");
    printf("# %10s  %12s  %8s  %6s  %6s  %31s  %31s%s\n", "", "", "", "", "", "out-of-place", "in-place",
           raw ? "           raw MPI_Allreduce" : "");
    printf("# %10s  %12s  %8s  %6s  %6s  %8s %7s %7s %6s  %8s %7s %7s %6s%s\n", "size", "count", "type", "redop",
           "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong",
           raw ? "      time   algbw   busbw" : "");
    printf("# %10s  %12s  %8s  %6s  %6s  %8s %7s %7s %6s  %8s %7s %7s %6s%s\n", "(B)", "(elements)", "", "", "",
           "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "", raw ? "      (us)  (GB/s)  (GB/s)" : "");
    fflush(stdout);
  }
  long total_bad = 0;
  double bus_sum = 0;
  int nsizes = 0;
  double bw_factor = N > 1 ? 2.0 * (N - 1) / N : 1.0;
  for (size_t bytes = minb; bytes <= maxb; bytes *= (size_t)factor) {
    size_t n = bytes / sizeof(float);
    if (n == 0) continue;
    long bad[2] = {0, 0}, rbad = 0;
    double t[2], tr = 0;
    for (int ip = 0; ip < 2; ip++) {
      t[ip] = timed(c, &b, n, ip, 0, warm, iters, cap, &bad[ip]);
      if (t[ip] < 0) {
        fprintf(stderr, "allreduce: %s\n", mf_error_message());
        return 1;
      }
    }
    if (raw) tr = timed(c, &b, n, 0, 1, warm, iters, cap, &rbad);
    if (!check) bad[0] = bad[1] = rbad = 0;
    total_bad += bad[0] + bad[1] + rbad;
    double alg[2], bus[2];
    for (int ip = 0; ip < 2; ip++) {
      alg[ip] = (double)(n * sizeof(float)) / t[ip] / 1e9;
      bus[ip] = alg[ip] * bw_factor;
    }
    bus_sum += (bus[0] + bus[1]) / 2;
    nsizes++;
    if (R == 0) {
      printf("  %10zu  %12zu  %8s  %6s  %6d  %8.1f %7.2f %7.2f %6ld  %8.1f %7.2f %7.2f %6ld", n * sizeof(float), n,
             "float", "sum", -1, t[0] * 1e6, alg[0], bus[0], bad[0], t[1] * 1e6, alg[1], bus[1], bad[1]);
      if (raw) {
        double ra = (double)(n * sizeof(float)) / tr / 1e9;
        printf("  %8.1f %7.2f %7.2f", tr * 1e6, ra, ra * bw_factor);
      }
      printf("\n");
      fflush(stdout);
    }
  }
  if (R == 0) {
    printf("# Out of bounds values : %ld %s\n", total_bad, total_bad ? "FAILED" : "OK");
    printf("# Avg bus bandwidth    : %g \n#\n", nsizes ? bus_sum / nsizes : 0.0);
  }
  if (c != w) mf_comm_destroy(c);
  mf_comm_world_finalize();
  return total_bad ? 1 : 0;
}
