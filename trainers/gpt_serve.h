/* GPT inference for the server: a KV cache shared by every sequence in flight, paged in
 * fixed-size blocks, and one forward step over a ragged batch. Each sequence brings its
 * own new tokens (one while decoding, a chunk of its prompt while prefilling), its
 * position and its block table; the step runs all of their rows through each matmul at
 * once (the weights are read once per step, not once per sequence), which is what makes
 * continuous batching pay on a CPU.
 *
 * Not thread-safe: one model worker owns a pool and calls the step. */
#ifndef MF_GPT_SERVE_H
#define MF_GPT_SERVE_H

#include <stdint.h>

#include "core/tape.h"
#include "trainers/gpt.h"

typedef struct mf_kv_pool {
  int L, NH, hs;
  int bs;              /* positions per block */
  int nblocks;
  size_t layer;        /* floats per layer: nblocks * NH * bs * hs */
  float *k, *v;        /* [L, nblocks, NH, bs, hs] each */
  int32_t *free_ids;   /* stack of free block ids (LIFO: recently used blocks are warm) */
  int nfree;
} mf_kv_pool;

/* nblocks blocks of block_size positions for every layer of g. Memory is reserved, and
 * touched (resident) only as blocks are first used. */
mf_status mf_kv_pool_create(mf_kv_pool *p, const mf_gpt *g, int block_size, int nblocks);
void mf_kv_pool_free(mf_kv_pool *p);
/* Bytes one position costs (keys and values, every layer). */
size_t mf_kv_bytes_per_token(const mf_gpt *g);
/* Blocks needed to hold `tokens` positions. */
int mf_kv_blocks_for(const mf_kv_pool *p, int tokens);
/* Takes n free blocks into ids; 0 (and takes none) when fewer than n are free. */
int mf_kv_pool_alloc(mf_kv_pool *p, int n, int32_t *ids);
void mf_kv_pool_release(mf_kv_pool *p, int n, const int32_t *ids);

typedef struct mf_serve_seq {
  const int32_t *tokens; /* n new tokens at positions pos0 .. pos0+n-1 */
  int n, pos0;
  int tiled;             /* prefill arithmetic (see kernels/cpu/paged.h): 1 for the chunks of
                            a prompt longer than MF_PAGED_DECODE_MAX, else 0 */
  const int32_t *blocks; /* block table covering positions 0 .. pos0+n-1 */
  int want_logits;       /* logits of the last new token are wanted */
} mf_serve_seq;

/* Weight layouts for the step, made once at load: every Conv1D weight transposed to
 * [OC, C] for the few-row kernel (kernels/cpu/skinny.h), and the tied embedding
 * transposed to [C, Vp] so the vocabulary projection of many rows runs as a plain sgemm,
 * which packs its operands faster than the transposed one. The originals stay for sgemm
 * on many rows: this costs one more copy of the weights in memory. */
typedef struct mf_serve_weights {
  float *wte_t;   /* [C, Vp] */
  float **conv_t; /* per layer 4: c_attn [3C,C], attn c_proj [C,C], c_fc [4C,C], mlp c_proj [C,4C] */
  int L;
} mf_serve_weights;

mf_status mf_serve_weights_create(mf_serve_weights *w, const mf_gpt *g);
void mf_serve_weights_free(mf_serve_weights *w);

/* One step: appends each sequence's keys/values to its blocks and writes, for each
 * sequence with want_logits (in order), the logits of its last new token to the next row
 * of logits[., Vp]. w: from mf_serve_weights_create, or NULL (sgemm only). Token ids and
 * positions are checked. The context must not be recording; its arena is reset here. */
mf_status mf_gpt_serve_step(mf_gpt *g, mf_ctx *c, mf_kv_pool *kv, const mf_serve_weights *w,
                            const mf_serve_seq *seqs, int nseq, float *logits);

#endif
