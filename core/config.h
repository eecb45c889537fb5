/* Configs: YAML files (libyaml) mapped onto typed structs by one table per section
 * (key, type, default, help). Unknown keys, wrong types and bad values are errors that
 * quote file:line and the key. `--set section.key=value` overrides any key. The resolved
 * config can be dumped as YAML (printed at start, stored in every checkpoint). */
#ifndef MF_CONFIG_H
#define MF_CONFIG_H

#include <stddef.h>

#include "core/status.h"

#define MF_CFG_STR 256
#define MF_CFG_LIST 16

typedef struct mf_run_cfg {
  char dir[MF_CFG_STR];      /* where metrics.jsonl and checkpoints go */
  int seed;
  int log_every;             /* steps between metrics rows */
  int progress;              /* 1: live progress line on a TTY */
} mf_run_cfg;

typedef struct mf_model_cfg {
  char family[16];           /* gpt */
  int n_layer, n_head, n_embd;
  int block_size;            /* max positions */
  int vocab_size;            /* real vocabulary; padded to a multiple of 128 inside */
} mf_model_cfg;

typedef struct mf_data_cfg {
  char name[64];             /* sotu | moby-dick | fortunes */
  char dir[MF_CFG_STR];      /* prepared shards live in <dir>/<name>/ */
} mf_data_cfg;

typedef struct mf_train_cfg {
  int steps;                 /* optimizer steps; the LR schedule spans them */
  int batch_size;            /* global: sequences per optimizer step, all ranks and micro-steps */
  int micro_batch_size;      /* sequences per forward/backward on one rank */
  int seq_len;
  float lr, min_lr;          /* cosine from lr to min_lr after warmup */
  int warmup_steps;
  float weight_decay, beta1, beta2, eps, grad_clip;
  int eval_every, eval_batches;
  int ckpt_every;
  int keep_ckpts;            /* step checkpoints kept besides last.h5 (0 = only last.h5) */
  int stop_after;            /* stop (with a checkpoint) after this step; 0 = never */
  int threads;               /* 0 = all cores */
} mf_train_cfg;

typedef struct mf_parallel_cfg {
  int tp;
  float bucket_mb;
  int zero;
  char device_comm[16]; /* auto|nccl|host */
} mf_parallel_cfg;

typedef struct mf_sample_cfg {
  char prompt[MF_CFG_STR];   /* printed after training */
  int max_tokens;
  float temperature;
  int top_k;
  float top_p;
  int seed;
} mf_sample_cfg;

typedef struct mf_config {
  char source[MF_CFG_STR];   /* file it came from */
  char device[8];            /* auto | cpu | cuda */
  int recompute;             /* 0 | 1 | 2: core/tape.h */
  int cuda_graph;            /* 0 | 1: the micro-step replayed as a CUDA graph (trainers/train.h) */
  char precision[8];         /* fp32 | bf16 */
  int tf32;                  /* 0 | 1: fp32 matmuls on TF32 tensor cores (core/device.c) */
  char resume[MF_CFG_STR];   /* "" (no) | auto | path to a checkpoint */
  char init_from[MF_CFG_STR];
  char freeze[MF_CFG_LIST][64];
  int n_freeze;
  mf_run_cfg run;
  mf_model_cfg model;
  mf_data_cfg data;
  mf_train_cfg train;
  mf_parallel_cfg parallel;
  mf_sample_cfg sample;
} mf_config;

/* Defaults for every key. */
void mf_config_defaults(mf_config *c);
/* Reads YAML from a file over the current values. */
mf_status mf_config_load(mf_config *c, const char *path);
/* The same from a string; `origin` names it in errors (e.g. "run.h5:/config"). */
mf_status mf_config_parse(mf_config *c, const char *yaml, size_t len, const char *origin);
/* "train.lr=3e-4"; lists as "freeze=[a, b]". */
mf_status mf_config_set(mf_config *c, const char *assignment);
/* Cross-key checks (divisibility, ranges); the message names the keys to change. */
mf_status mf_config_validate(const mf_config *c, int world_dp);
/* The resolved config as YAML, malloc'd. */
char *mf_config_dump(const mf_config *c);
/* Help: every key with its type, default and meaning. */
void mf_config_print_help(void);

#endif
