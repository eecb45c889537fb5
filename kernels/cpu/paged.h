/* Paged KV-cache attention for the server's continuous batching (forward only).
 *
 * Keys and values live in one pool of fixed-size blocks shared by every sequence in
 * flight; a sequence owns a list of block ids (its block table) instead of a fixed slice
 * of the context. One layer's pool is [nblocks, NH, bs, hs]: block b, head h holds the
 * keys of positions j*bs .. j*bs+bs-1 of whichever sequence lists b as its j-th block,
 * contiguous per head so a query row reads each block as one stream.
 *
 * The arithmetic mirrors attention_kv.c (same loops, same key tiles of 128, same sgemm
 * calls on gathered tiles) so that a served completion equals `mforge generate` token for
 * token; only where the keys come from differs. */
#ifndef MF_KERNELS_CPU_PAGED_H
#define MF_KERNELS_CPU_PAGED_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A sequence's new query rows in one step. */
typedef struct mf_paged_seq {
  int row0;              /* first row of this sequence in q / out */
  int nq;                /* new rows; row t sits at position pos0 + t */
  int pos0;
  int tiled;             /* 1: tiled (prefill) arithmetic, 0: per-row (decode) arithmetic */
  const int32_t *blocks; /* block table: position p lives in block blocks[p / bs] */
} mf_paged_seq;

/* Query rows up to this many per sequence take the per-row path in attention_kv.c too. */
#define MF_PAGED_DECODE_MAX 8

/* out[N,C] (rows of every sequence) = causal attention of q[N, q_stride] (head h in
 * columns h*hs..h*hs+hs-1) against the sequence's cached keys 0 .. pos0+t, which the caller
 * has written into kpool/vpool ([nblocks, NH, bs, hs] for this layer). */
void attention_paged_forward(float *out, const float *q, const float *kpool, const float *vpool,
                             const mf_paged_seq *seqs, int nseq, int q_stride, int C, int NH,
                             int bs);

/* Writes the keys and values of each sequence's new rows (qkv[N, 3C]: k at columns C..2C,
 * v at 2C..3C) into the pool at positions pos0 .. pos0+nq-1. */
void kv_paged_append(float *kpool, float *vpool, const float *qkv, const mf_paged_seq *seqs,
                     int nseq, int C, int NH, int bs);

#ifdef __cplusplus
}
#endif

#endif
