/* GPT-2 decoder: pre-norm blocks, tied token embedding, learned positions, GELU (tanh).
 * Parameter names and shapes follow Hugging Face's GPT-2 state dict (Conv1D weights are
 * [in, out]), so a GPT-2 state dict maps one to one. The vocabulary is padded to a
 * multiple of 128 inside (wte has Vp rows, zero and masked beyond V); checkpoints store
 * the V real rows.
 *
 * Tensor parallelism (Megatron-LM) over tp ranks: c_attn (QKV) and c_fc are
 * column-parallel (rank r holds the q, k, v columns of heads [r*NH/tp, (r+1)*NH/tp) and
 * 1/tp of c_fc's columns), attn.c_proj and mlp.c_proj are row-parallel
 * (their biases are added once, after the sum), wte is split by vocabulary rows
 * (vocabulary-parallel embedding, LM head and cross-entropy), layernorms, wpe and the
 * row-parallel biases are replicated. The vocabulary is then padded to a multiple of
 * 128 x tp. Each rank's params hold its slices only; `whole` says where they sit in the
 * whole tensors that checkpoints store. */
#ifndef MF_GPT_H
#define MF_GPT_H

#include "core/config.h"
#include "core/params.h"
#include "core/tape.h"
#include "parallel/tp.h"

struct mf_comm;

typedef struct mf_gpt_block {
  mf_tensor *ln_1_w, *ln_1_b;     /* [C] */
  mf_tensor *c_attn_w, *c_attn_b; /* [C,3C], [3C] */
  mf_tensor *attn_proj_w, *attn_proj_b; /* [C,C], [C] */
  mf_tensor *ln_2_w, *ln_2_b;     /* [C] */
  mf_tensor *c_fc_w, *c_fc_b;     /* [C,4C], [4C] */
  mf_tensor *mlp_proj_w, *mlp_proj_b; /* [4C,C], [C] */
} mf_gpt_block;

typedef struct mf_gpt {
  int L, NH, C, V, Vp, maxT;
  int tp, tp_rank;        /* tensor-parallel degree and this rank's place (1, 0: none) */
  int NHl;                /* heads on this rank */
  int Vl, v0;             /* vocabulary rows on this rank: [v0, v0 + Vl) of Vp */
  struct mf_comm *tp_comm;
  mf_tp_param *whole;     /* per parameter: split and whole shape */
  mf_params params;
  mf_tensor *wte;   /* [Vp,C] */
  mf_tensor *wpe;   /* [maxT,C] */
  mf_gpt_block *h;  /* [L] */
  mf_tensor *ln_f_w, *ln_f_b; /* [C] */
} mf_gpt;

/* Registers and allocates the parameters (not initialised: see mf_gpt_init_params). */
mf_status mf_gpt_create(mf_gpt **out, const mf_model_cfg *cfg);
/* The same, holding this rank's slices for tensor parallelism over tp (NULL or one rank:
 * the whole model, as mf_gpt_create). model.n_head must be a multiple of its size. */
mf_status mf_gpt_create_tp(mf_gpt **out, const mf_model_cfg *cfg, struct mf_comm *tp);
/* Initialises the parameters as mf_params_init does for the whole model (the same
 * values whatever the tensor-parallel degree). */
mf_status mf_gpt_init_params(mf_gpt *g, uint64_t seed);
void mf_gpt_free(mf_gpt *g);
/* Training/eval forward. idx, targets: [B,T] i32. With targets: per-token losses [B*T]
 * (the logits are consumed). Without: logits [B,T,Vp] (tensor parallel: this rank's
 * columns [B,T,Vl]). NULL on error (mf_ctx_status). */
mf_tensor *mf_gpt_forward(mf_gpt *g, mf_ctx *c, mf_tensor *idx, mf_tensor *targets);
/* Forward FLOPs per token (matmuls + attention at length T), for MFU and benchmarks. */
double mf_gpt_flops_per_token(const mf_gpt *g, int T);

/* ---- inference with a KV cache (gpt_infer.c) ---- */
typedef struct mf_gpt_kv {
  int B, Tmax, L, NH, hs;
  float *k, *v; /* [L,B,NH,Tmax,hs] each */
} mf_gpt_kv;

mf_status mf_gpt_kv_create(mf_gpt_kv *kv, const mf_gpt *g, int B, int Tmax);
void mf_gpt_kv_free(mf_gpt_kv *kv);
/* Runs Tq new tokens per sequence: tokens[B,Tq] at positions pos0[b] .. pos0[b]+Tq-1 (their
 * keys/values are appended to the cache; earlier positions must be there already).
 * Writes the logits of each sequence's last new token to logits[B,Vp]. The context must
 * not be recording; its arena is reset by the caller. */
mf_status mf_gpt_step(mf_gpt *g, mf_ctx *c, mf_gpt_kv *kv, const int32_t *tokens, int B, int Tq,
                      const int *pos0, float *logits);

#endif
