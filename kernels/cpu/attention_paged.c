/* Attention against a paged KV cache: the serving twin of attention_kv.c, forward only
 * (there is no backward; nothing here takes parameter or activation gradients).
 *
 * Every sequence of a continuous batch brings its own query rows (one per decoding
 * sequence, a chunk of the prompt for one being prefilled) and its own block table.
 * Two paths, chosen per sequence by the caller (mf_paged_seq.tiled):
 *   per row (decode): each query row against the cached keys, read block by block in
 *     their own layout: dot products, one vexpf, out = sum_j p_j v_j;
 *   tiled (prefill): online softmax over key tiles of BK, tile products on sgemm. A tile
 *     spanning blocks is first gathered into a contiguous scratch tile.
 * Both repeat attention_kv.c's arithmetic operation for operation (the same tile bounds
 * at multiples of BK from key 0, the same sgemm shapes and strides, the same loop order
 * in the reductions), so the logits equal those of mf_gpt_step bit for bit and a served
 * greedy completion equals `mforge generate`. Keep the two files in step.
 *
 * One OpenMP region covers all (sequence, head, query block) tasks of the step. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/paged.h"

#define BQ 64
#define BK 128
#define PAR_MIN (1 << 16) /* score elements times hs below which one thread does it all */

static inline int imin(int a, int b) { return a < b ? a : b; }

/* one head's cached keys (or values) of position p */
static inline const float *at(const float *pool, const int32_t *blocks, int p, int h, int NH,
                              int bs, int hs) {
  return pool + (((size_t)blocks[p / bs] * NH + h) * bs + p % bs) * hs;
}

/* Tile rows j0 .. j0+jn-1 of one head as a contiguous [jn, hs] array: in place when
 * they sit in one block, else copied into scratch. */
static const float *tile(const float *pool, const int32_t *blocks, int j0, int jn, int h, int NH,
                         int bs, int hs, float *scratch) {
  if (j0 / bs == (j0 + jn - 1) / bs) return at(pool, blocks, j0, h, NH, bs, hs);
  for (int j = 0; j < jn;) {
    int p = j0 + j, run = imin(bs - p % bs, jn - j);
    memcpy(scratch + (size_t)j * hs, at(pool, blocks, p, h, NH, bs, hs), (size_t)run * hs * sizeof(float));
    j += run;
  }
  return scratch;
}

/* attention_kv.c's kv_block: qn query rows at positions pos .. pos+qn-1 against keys
 * 0 .. pos+qn-1, tiles of BK keys from key 0. */
static void paged_block(float *out, int ldo, const float *q, int ldq, const float *kpool,
                        const float *vpool, const int32_t *blocks, int h, int NH, int bs, int qn,
                        int pos, int hs, float scale, float *S /* [BQ,BK] */, float *O /* [BQ,hs] */,
                        float *m, float *l, float *kt /* [BK,hs] */, float *vt /* [BK,hs] */) {
  int nkeys = pos + qn;
  for (int j0 = 0; j0 < nkeys; j0 += BK) {
    int jn = imin(BK, nkeys - j0);
    const float *k = tile(kpool, blocks, j0, jn, h, NH, bs, hs, kt);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qn, jn, hs, scale, q, ldq, k, hs, 0.0f, S, BK);
    for (int r = 0; r < qn; r++) {
      float *s = S + (size_t)r * BK;
      int nv = imin(pos + r - j0 + 1, jn);
      if (nv <= 0) {
        memset(s, 0, (size_t)jn * sizeof(float));
        continue;
      }
      float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
      for (int c = 0; c < nv; c++) mx = s[c] > mx ? s[c] : mx;
      float mold = j0 == 0 ? -INFINITY : m[r];
      float mnew = mx > mold ? mx : mold;
#pragma omp simd
      for (int c = 0; c < nv; c++) s[c] -= mnew;
      vexpf(s, s, (size_t)nv);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int c = 0; c < nv; c++) sum += s[c];
      if (nv < jn) memset(s + nv, 0, (size_t)(jn - nv) * sizeof(float));
      if (j0 == 0) {
        l[r] = sum;
      } else {
        float alpha = expf(mold - mnew);
        l[r] = l[r] * alpha + sum;
        if (alpha != 1.0f) {
          float *o = O + (size_t)r * hs;
#pragma omp simd
          for (int d = 0; d < hs; d++) o[d] *= alpha;
        }
      }
      m[r] = mnew;
    }
    const float *v = tile(vpool, blocks, j0, jn, h, NH, bs, hs, vt);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, qn, hs, jn, 1.0f, S, BK, v, hs,
                j0 == 0 ? 0.0f : 1.0f, O, hs);
  }
  for (int r = 0; r < qn; r++) {
    float inv = 1.0f / l[r];
    const float *o = O + (size_t)r * hs;
    float *dst = out + (size_t)r * ldo;
#pragma omp simd
    for (int d = 0; d < hs; d++) dst[d] = o[d] * inv;
  }
}

/* attention_kv.c's kv_row: one query row at position pos against keys 0 .. pos.
 * S: [pos+1] scratch; acc: [hs] scratch. The loops over keys run block by block, in the
 * same key order as the contiguous version. */
static void paged_row(float *out, const float *q, const float *kpool, const float *vpool,
                      const int32_t *blocks, int h, int NH, int bs, int pos, int hs, float scale,
                      float *S, float *acc) {
  int n = pos + 1;
  float mx = -INFINITY;
  for (int j0 = 0; j0 < n; j0 += bs) {
    const float *kb = at(kpool, blocks, j0, h, NH, bs, hs);
    int jn = imin(bs, n - j0);
    for (int jj = 0; jj < jn; jj++) {
      const float *kj = kb + (size_t)jj * hs;
      float d = 0;
#pragma omp simd reduction(+ : d)
      for (int c = 0; c < hs; c++) d += q[c] * kj[c];
      S[j0 + jj] = d * scale;
      mx = S[j0 + jj] > mx ? S[j0 + jj] : mx;
    }
  }
#pragma omp simd
  for (int j = 0; j < n; j++) S[j] -= mx;
  vexpf(S, S, (size_t)n);
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; j++) sum += S[j];
  memset(acc, 0, (size_t)hs * sizeof(float));
  for (int j0 = 0; j0 < n; j0 += bs) {
    const float *vb = at(vpool, blocks, j0, h, NH, bs, hs);
    int jn = imin(bs, n - j0);
    for (int jj = 0; jj < jn; jj++) {
      const float *vj = vb + (size_t)jj * hs;
      float p = S[j0 + jj];
#pragma omp simd
      for (int c = 0; c < hs; c++) acc[c] += p * vj[c];
    }
  }
  float inv = 1.0f / sum;
#pragma omp simd
  for (int c = 0; c < hs; c++) out[c] = acc[c] * inv;
}

void attention_paged_forward(float *out /* [N,C] */, const float *q /* [N,q_stride] */,
                             const float *kpool, const float *vpool, const mf_paged_seq *seqs,
                             int nseq, int q_stride, int C, int NH, int bs) {
  if (nseq <= 0 || C <= 0) return;
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  /* tasks: per sequence, NH x (query blocks when tiled, else 1); first[s] = first task */
  long first[nseq + 1];
  double work = 0;
  int maxpos = 1;
  first[0] = 0;
  for (int s = 0; s < nseq; s++) {
    const mf_paged_seq *sq = &seqs[s];
    int nblk = sq->tiled ? (sq->nq + BQ - 1) / BQ : 1;
    first[s + 1] = first[s] + (long)NH * (sq->nq > 0 ? nblk : 0);
    work += (double)NH * sq->nq * (sq->pos0 + sq->nq) * hs;
    if (sq->pos0 + sq->nq > maxpos) maxpos = sq->pos0 + sq->nq;
  }
  long ntask = first[nseq];
#pragma omp parallel if (ntask > 1 && work > PAR_MIN)
  {
    /* per-thread scratch; the heap, as hs and the context can be large */
    size_t ns = (size_t)(maxpos > BQ * BK ? maxpos : BQ * BK);
    float *S = malloc((ns + (size_t)BQ * hs + 2 * BQ + 2 * (size_t)BK * hs + hs) * sizeof(float));
    float *O = S + ns, *m = O + (size_t)BQ * hs, *l = m + BQ, *kt = l + BQ, *vt = kt + (size_t)BK * hs;
    float *acc = vt + (size_t)BK * hs;
#pragma omp for schedule(dynamic, 1)
    for (long task = 0; task < ntask; task++) {
      int lo = 0, hi = nseq - 1; /* the sequence whose range holds task */
      while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (first[mid] <= task) lo = mid;
        else hi = mid - 1;
      }
      const mf_paged_seq *sq = &seqs[lo];
      long k = task - first[lo];
      int h = (int)(k % NH), qb = (int)(k / NH);
      if (!S) { /* no scratch: this task's rows become NaN, so the failure shows in the logits */
        int t0 = sq->tiled ? qb * BQ : 0, tn = sq->tiled ? imin(BQ, sq->nq - t0) : sq->nq;
        for (int t = t0; t < t0 + tn; t++)
          for (int d = 0; d < hs; d++) out[((size_t)sq->row0 + t) * C + (size_t)h * hs + d] = NAN;
      } else if (!sq->tiled) {
        for (int t = 0; t < sq->nq; t++) {
          size_t row = (size_t)sq->row0 + t;
          paged_row(out + row * C + (size_t)h * hs, q + row * q_stride + (size_t)h * hs, kpool, vpool,
                    sq->blocks, h, NH, bs, sq->pos0 + t, hs, scale, S, acc);
        }
      } else {
        int t0 = qb * BQ, qn = imin(BQ, sq->nq - t0);
        size_t row = (size_t)sq->row0 + t0;
        paged_block(out + row * C + (size_t)h * hs, C, q + row * q_stride + (size_t)h * hs, q_stride,
                    kpool, vpool, sq->blocks, h, NH, bs, qn, sq->pos0 + t0, hs, scale, S, O, m, l, kt, vt);
      }
    }
    free(S);
  }
}

void kv_paged_append(float *kpool, float *vpool, const float *qkv /* [N,3C] */,
                     const mf_paged_seq *seqs, int nseq, int C, int NH, int bs) {
  int hs = C / NH;
  for (int s = 0; s < nseq; s++) {
    const mf_paged_seq *sq = &seqs[s];
    for (int t = 0; t < sq->nq; t++) {
      const float *row = qkv + ((size_t)sq->row0 + t) * 3 * C;
      int p = sq->pos0 + t;
      for (int h = 0; h < NH; h++) {
        size_t o = (((size_t)sq->blocks[p / bs] * NH + h) * bs + p % bs) * hs;
        memcpy(kpool + o, row + C + (size_t)h * hs, (size_t)hs * sizeof(float));
        memcpy(vpool + o, row + 2 * C + (size_t)h * hs, (size_t)hs * sizeof(float));
      }
    }
  }
}
