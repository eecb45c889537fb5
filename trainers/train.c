#include "trainers/train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/device.h"
#include "core/optim.h"
#include "core/progress.h"
#include "core/threads.h"
#include "datasets/prepare.h"
#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/dp.h"
#include "parallel/grid.h"
#include "trainers/checkpoint.h"

static volatile sig_atomic_t g_stop_signal;

static void on_signal(int sig) {
  g_stop_signal = sig;
  signal(sig, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

mf_status mf_mkdirs(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return MF_ERR(MF_ERR_IO, "cannot create directory '%s': %s", buf, strerror(errno));
      *p = c;
      if (!c) break;
    }
  }
  return MF_OK;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* Leftovers of a checkpoint write that was killed: "<name>.h5.tmp.<pid>". */
static void remove_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strstr(e->d_name, ".h5.tmp.")) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
  }
  closedir(d);
}

/* The batch as tensors the backend's kernels can read: the host arrays themselves on the
 * CPU, copies in the step arena on a device (so after mf_ctx_reset). */
static mf_status batch_tensors(mf_ctx *c, int32_t *in, int32_t *tg, int B, int T, mf_tensor *idx, mf_tensor *tgt) {
  const mf_backend *be = mf_ctx_backend(c);
  size_t bytes = (size_t)B * T * sizeof(int32_t);
  if (be->device != MF_CPU) {
    int32_t *din = mf_ctx_alloc(c, bytes), *dtg = mf_ctx_alloc(c, bytes);
    if (!din || !dtg) return mf_ctx_status(c);
    be->to_device(din, in, bytes);
    be->to_device(dtg, tg, bytes);
    in = din;
    tg = dtg;
  }
  *idx = mf_view(in, MF_I32, 2, (int64_t[]){B, T});
  *tgt = mf_view(tg, MF_I32, 2, (int64_t[]){B, T});
  idx->device = tgt->device = be->device;
  return MF_OK;
}

/* sum of the n per-token losses, in order, in double (the same sum on every backend) */
static mf_status loss_sum(mf_ctx *c, const float *losses, int n, double *sum) {
  const mf_backend *be = mf_ctx_backend(c);
  const float *lv = losses;
  float *host = NULL;
  if (be->device != MF_CPU) {
    host = malloc((size_t)n * sizeof *host);
    if (!host) return MF_ERR(MF_ERR_NOMEM, "out of memory");
    be->to_host(host, lv, (size_t)n * sizeof *host);
    lv = host;
  }
  double s = 0;
  for (int i = 0; i < n; i++) s += lv[i];
  free(host);
  *sum = s;
  return MF_OK;
}

/* sum of the per-token losses of batches first, first + stride, ... below nb */
static mf_status eval_sum(mf_gpt *g, mf_ctx *c, mf_loader *l, int T, int B, int64_t nb, int64_t first,
                          int64_t stride, double *sum_out) {
  int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
  if (!in || !tg) {
    free(in);
    free(tg);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  int rec = mf_ctx_recording(c);
  mf_ctx_set_record(c, 0);
  double sum = 0;
  mf_status st = MF_OK;
  for (int64_t b = first; b < nb && st == MF_OK; b += stride) {
    mf_loader_fill(l, b * B, B, in, tg);
    mf_ctx_reset(c);
    mf_tensor idx, tgt;
    st = batch_tensors(c, in, tg, B, T, &idx, &tgt);
    if (st != MF_OK) break;
    mf_tensor *losses = mf_gpt_forward(g, c, &idx, &tgt);
    if (!losses) {
      st = mf_ctx_status(c);
      break;
    }
    double s = 0;
    st = loss_sum(c, losses->data, B * T, &s);
    sum += s;
  }
  mf_ctx_reset(c);
  mf_ctx_set_record(c, rec);
  free(in);
  free(tg);
  *sum_out = sum;
  return st;
}

mf_status mf_eval_loss_par(mf_gpt *g, mf_ctx *c, const mf_token_set *ts, int T, int B, int max_batches,
                           mf_par *par, double *loss, int64_t *tokens) {
  mf_loader l;
  MF_TRY(mf_loader_init(&l, ts, T, 0, 0));
  if (B > l.nwin) B = (int)l.nwin;
  int64_t nb = l.nwin / B;
  if (max_batches > 0 && nb > max_batches) nb = max_batches;
  int dp = par ? par->dp_size : 1, r = par ? par->dp_rank : 0;
  double sum = 0;
  mf_status st = eval_sum(g, c, &l, T, B, nb, r, dp, &sum);
  mf_loader_free(&l);
  if (st == MF_OK && par && dp > 1) st = mf_comm_allreduce(par->dp_host, &sum, &sum, 1, MF_C_F64, MF_RED_SUM);
  *loss = sum / (double)(nb * B * T);
  if (tokens) *tokens = nb * B * T;
  return st;
}

mf_status mf_eval_loss(mf_gpt *g, mf_ctx *c, const mf_token_set *ts, int T, int B, int max_batches,
                       double *loss, int64_t *tokens) {
  return mf_eval_loss_par(g, c, ts, T, B, max_batches, NULL, loss, tokens);
}

mf_status mf_model_open(const char *ckpt, mf_config *cfg, mf_gpt **g) {
  mf_config_defaults(cfg);
  MF_TRY(mf_ckpt_read_config(ckpt, cfg));
  MF_TRY(mf_config_validate(cfg, 1));
  MF_TRY(mf_gpt_create(g, &cfg->model));
  mf_status st = mf_ckpt_load_params(ckpt, &(*g)->params);
  if (st != MF_OK) {
    mf_gpt_free(*g);
    *g = NULL;
  }
  return st;
}

static void json_num(FILE *f, const char *key, double v) {
  if (isfinite(v)) fprintf(f, ",\"%s\":%.7g", key, v);
  else fprintf(f, ",\"%s\":null", key);
}

typedef struct run {
  mf_config *cfg;
  const mf_backend *be;
  mf_gpt *g;
  mf_adamw opt;
  mf_train_state st;
  mf_token_set train, val;
  mf_loader loader;
  mf_ctx *ctx;
  FILE *metrics;
  mf_progress prog;
  char dir[MF_CFG_STR];
  mf_comm *world;
  mf_par par;
  mf_dist dist;
  int lead;       /* world rank 0: prints, writes metrics and checkpoints */
  int sym;        /* the error being returned happened on every rank alike */
} run;

#define NOTE(r, ...) \
  do {               \
    if ((r)->lead) mf_progress_note(&(r)->prog, __VA_ARGS__); \
  } while (0)

/* One status for all ranks after a stage some rank may fail alone: OK everywhere, or an
 * error everywhere (the failing rank's own; "rank N failed" on the others). */
static mf_status agree(run *r, mf_status st, const char *what) {
  if (r->par.size <= 1) return st;
  int first = st == MF_OK ? r->par.size : r->par.rank;
  mf_status cs = mf_comm_allreduce(r->world, &first, &first, 1, MF_C_I32, MF_RED_MIN);
  if (cs != MF_OK) return cs;
  if (first == r->par.size) return MF_OK;
  r->sym = 1;
  if (st != MF_OK) return st;
  return MF_ERR(MF_ERR_BACKEND, "%s: stopped because rank %d failed (its message says why)", what, first);
}

static mf_status save(run *r, const char *why) {
  char path[4096];
  snprintf(path, sizeof path, "%s/last.h5", r->dir);
  r->st.data_epoch = r->loader.epoch;
  r->st.data_cursor = r->loader.cursor;
  mf_params_pull(&r->g->params); /* a device run saves what is on the device */
  mf_adamw_pull(&r->opt);
  mf_status s = mf_ckpt_save_par(path, r->cfg, &r->g->params, r->g->whole, &r->opt, &r->st, "train", &r->par);
  r->sym = 1; /* every rank knows whether rank 0 wrote it */
  MF_TRY(s);
  if (!r->lead) return MF_OK;
  int keep = r->cfg->train.keep_ckpts;
  if (keep > 0) {
    /* a hard link: the step file costs no second write */
    char step_path[4096], old[4096];
    snprintf(step_path, sizeof step_path, "%s/step_%06lld.h5", r->dir, (long long)r->st.step);
    unlink(step_path);
    if (link(path, step_path) != 0) {
      r->sym = 0;
      return MF_ERR(MF_ERR_IO, "cannot create %s: %s", step_path, strerror(errno));
    }
    int every = r->cfg->train.ckpt_every > 0 ? r->cfg->train.ckpt_every : 1;
    long long drop = (long long)r->st.step - (long long)keep * every;
    if (drop > 0) {
      snprintf(old, sizeof old, "%s/step_%06lld.h5", r->dir, drop);
      unlink(old);
    }
  }
  NOTE(r, "checkpoint: %s (step %lld, %s)", path, (long long)r->st.step, why);
  return MF_OK;
}

static mf_status eval(run *r, int final) {
  double vl;
  int64_t ntok;
  const mf_train_cfg *t = &r->cfg->train;
  MF_TRY(mf_eval_loss_par(r->g, r->ctx, &r->val, t->seq_len, t->micro_batch_size, t->eval_batches, &r->par, &vl,
                          &ntok));
  r->st.val_loss = vl;
  if (r->metrics) {
    fprintf(r->metrics, "{\"step\":%lld", (long long)r->st.step);
    json_num(r->metrics, "val_loss", vl);
    json_num(r->metrics, "val_ppl", exp(vl));
    fprintf(r->metrics, ",\"val_tokens\":%lld}\n", (long long)ntok);
    fflush(r->metrics);
  }
  NOTE(r, "%s step %lld: val_loss %.4f (ppl %.2f, %lld tokens)", final ? "final" : "eval", (long long)r->st.step, vl,
       exp(vl), (long long)ntok);
  return MF_OK;
}

/* rank 0 prepares a missing data set; then every rank loads it */
static mf_status load_data(run *r) {
  const mf_data_cfg *d = &r->cfg->data;
  char tp[4096], vp[4096];
  mf_tokens_path(tp, sizeof tp, d->dir, d->name, "train");
  mf_tokens_path(vp, sizeof vp, d->dir, d->name, "val");
  mf_status st = MF_OK;
  if (r->lead && (!file_exists(tp) || !file_exists(vp))) {
    if (!mf_data_known(d->name))
      st = MF_ERR(MF_ERR_IO, "data set '%s' not found at %s (data.name: one of %s, or a prepared "
                             "directory under data.dir)", d->name, tp, mf_data_names());
    else {
      printf("preparing data set '%s' (first use)\n", d->name);
      st = mf_data_prepare(d->name, d->dir, 1);
    }
  }
  MF_TRY(agree(r, st, "preparing data"));
  st = mf_tokens_load(&r->train, tp, r->cfg->model.vocab_size);
  if (st == MF_OK) st = mf_tokens_load(&r->val, vp, r->cfg->model.vocab_size);
  return agree(r, st, "loading data");
}

/* resume: '' -> none; auto -> <run.dir>/last.h5 if present; else a path that must exist */
static mf_status resume_path(const mf_config *cfg, char *out, size_t n) {
  out[0] = 0;
  if (!cfg->resume[0] || strcmp(cfg->resume, "no") == 0) return MF_OK;
  if (strcmp(cfg->resume, "auto") == 0) {
    snprintf(out, n, "%s/last.h5", cfg->run.dir);
    if (!file_exists(out)) out[0] = 0;
    return MF_OK;
  }
  if (!file_exists(cfg->resume))
    return MF_ERR(MF_ERR_IO, "resume: checkpoint '%s' not found (use resume: auto to start fresh when none exists)",
                  cfg->resume);
  snprintf(out, n, "%s", cfg->resume);
  return MF_OK;
}

/* cuda_graph: true where it cannot work is the user's mistake, as with precision: bf16, except
 * that device: auto falling back to the CPU just trains without (the same config runs on
 * either); several ranks are refused, since the gradient all-reduce runs inside backward
 * through the communicator, which a graph of the stream's work cannot hold */
static mf_status graph_config(run *r) {
  const mf_config *cfg = r->cfg;
  const char *src = cfg->source[0] ? cfg->source : "config";
  if (!cfg->cuda_graph) return MF_OK;
  if (r->be->device == MF_CPU) {
    if (strcmp(cfg->device, "auto") != 0)
      return MF_ERR(MF_ERR_CONFIG, "%s: cuda_graph: true needs device: cuda (the CPU backend has no CUDA graphs); "
                    "set cuda_graph: false", src);
    if (r->lead) printf("note: cuda_graph ignored: device auto chose the CPU\n");
    return MF_OK;
  }
  if (r->par.size > 1 || cfg->parallel.zero)
    return MF_ERR(MF_ERR_CONFIG, "%s: cuda_graph: true needs one process without parallel.zero (here %d rank%s, "
                  "zero %d): the data-parallel gradient reduction runs inside backward; set cuda_graph: false", src,
                  r->par.size, r->par.size == 1 ? "" : "s", cfg->parallel.zero);
  return MF_OK;
}

/* the checks every rank makes alike (a mistake here is everyone's) */
static mf_status setup_config(run *r) {
  mf_config *cfg = r->cfg;
  MF_TRY(mf_comm_world(&r->world));
  MF_TRY(mf_par_init(&r->par, r->world, cfg->parallel.tp));
  r->lead = r->par.rank == 0;
  int threads = cfg->train.threads;
  if (threads == 0 && r->par.size > 1) { /* share the node's cores among its ranks */
    int cores = mf_set_threads(0), local = mf_comm_local_size();
    threads = local > 1 ? (cores / local > 0 ? cores / local : 1) : cores;
  }
  mf_set_threads(threads);
  MF_TRY(mf_config_validate(cfg, r->par.dp_size));
  if (cfg->model.n_head % r->par.tp_size != 0)
    return MF_ERR(MF_ERR_CONFIG, "%s: model.n_head (%d) must be a multiple of parallel.tp (%d)",
                  cfg->source[0] ? cfg->source : "config", cfg->model.n_head, r->par.tp_size);
  char desc[256];
  MF_TRY(mf_device_select(cfg, &r->be, desc, sizeof desc));
  snprintf(r->dir, sizeof r->dir, "%s", cfg->run.dir);
  return graph_config(r);
}

/* A device run on several ranks: each rank takes its node-local GPU, and the gradients and
 * the tensor-parallel activations travel between device buffers over NCCL, or staged
 * through host memory over MPI (parallel.device_comm). */
static mf_status device_comms(run *r) {
  const mf_config *cfg = r->cfg;
  int dev = 0;
  MF_TRY(mf_device_bind(mf_comm_local_rank(), &dev));
  return mf_par_use_device(&r->par, cfg->parallel.device_comm, dev, r->be);
}

static mf_status setup(run *r) {
  mf_config *cfg = r->cfg;
  mf_status st = MF_OK;
  if (r->lead) {
    st = mf_mkdirs(r->dir);
    if (st == MF_OK) remove_stale_tmp(r->dir);
  }
  MF_TRY(agree(r, st, "creating run.dir"));
  MF_TRY(load_data(r));
  if (r->be->device != MF_CPU && r->par.size > 1) MF_TRY(agree(r, device_comms(r), "device communicators"));
  st = mf_gpt_create_tp(&r->g, &cfg->model, r->par.tp);
  if (st == MF_OK) st = mf_gpt_init_params(r->g, (uint64_t)cfg->run.seed);
  if (st == MF_OK) st = mf_dist_init(&r->dist, &r->par, r->g, &cfg->parallel, r->be, &r->opt);
  MF_TRY(agree(r, st, "creating the model"));
  r->st = (mf_train_state){.data_seed = cfg->run.seed, .loss = NAN, .val_loss = NAN};

  /* rank 0 looks for the checkpoint; everyone loads it (rank 0 reads, all keep their slices) */
  char rp[4096];
  st = r->lead ? resume_path(cfg, rp, sizeof rp) : MF_OK;
  MF_TRY(agree(r, st, "resume"));
  int have = r->lead && rp[0];
  if (r->par.size > 1) MF_TRY(mf_comm_bcast(r->world, &have, 1, MF_C_I32, 0));
  r->sym = 1; /* loading agrees on its status; freezing and the loader see the same config */
  if (have) {
    st = mf_ckpt_load_par(rp, &r->g->params, r->g->whole, &r->opt, &r->st, &r->par);
    if (st != MF_OK) return mf_error_context(st, "resume from %s: ", r->lead ? rp : "rank 0's checkpoint");
    if (r->lead)
      printf("resumed from %s at step %lld (%d rank%s, tp %d)\n", rp, (long long)r->st.step, r->par.size,
             r->par.size > 1 ? "s" : "", r->par.tp_size);
  } else if (cfg->init_from[0]) {
    st = mf_ckpt_load_par(cfg->init_from, &r->g->params, r->g->whole, NULL, NULL, &r->par);
    if (st != MF_OK) return mf_error_context(st, "init_from: ");
    if (r->lead) printf("initialised from %s\n", cfg->init_from);
  }
  int frozen = 0;
  MF_TRY(mf_params_freeze(&r->g->params, cfg->freeze, cfg->n_freeze, &frozen));
  if (r->be->device != MF_CPU) {
    MF_TRY(mf_params_place(&r->g->params, r->be));
    MF_TRY(mf_adamw_place(&r->opt, r->be));
  }
  MF_TRY(mf_loader_init(&r->loader, &r->train, cfg->train.seq_len, (uint64_t)r->st.data_seed, 1));
  mf_loader_seek(&r->loader, r->st.data_epoch, r->st.data_cursor);
  r->sym = 0;
  r->ctx = mf_ctx_create(r->be, 64 << 20);
  if (!r->ctx) return MF_ERR(MF_ERR_NOMEM, "out of memory for the step arena");
  mf_ctx_set_recompute(r->ctx, cfg->recompute);
  if (cfg->cuda_graph && r->be->device != MF_CPU) MF_TRY(mf_step_graph_create(&r->dist.graph, r->be));

  /* optimizer state per rank: the most any rank holds */
  double opt_mib = (double)mf_adamw_bytes(&r->opt) / (1 << 20);
  if (r->par.size > 1) MF_TRY(mf_comm_allreduce(r->world, &opt_mib, &opt_mib, 1, MF_C_F64, MF_RED_MAX));
  if (!r->lead) return MF_OK;

  /* the resolved config: printed, and kept next to the metrics */
  char *yaml = mf_config_dump(cfg);
  char cp[4096];
  snprintf(cp, sizeof cp, "%s/config.yaml", r->dir);
  FILE *f = fopen(cp, "w");
  if (f) {
    fputs(yaml, f);
    fclose(f);
  }
  printf("--- resolved config ---\n%s-----------------------\n", yaml);
  free(yaml);
  snprintf(cp, sizeof cp, "%s/metrics.jsonl", r->dir);
  r->metrics = fopen(cp, have ? "a" : "w");
  if (!r->metrics) return MF_ERR(MF_ERR_IO, "cannot write %s: %s", cp, strerror(errno));

  size_t np = mf_params_count_trainable(&r->g->params);
  double total = (double)r->g->params.numel;
  if (r->par.tp_size > 1) { /* whole-model figures, not this rank's slices */
    total = 0;
    np = 0;
    for (int i = 0; i < r->g->params.n; i++) {
      const mf_tp_param *w = &r->g->whole[i];
      double n = (double)w->rows * (double)(mf_tp_numel(w) / w->shape[0]);
      total += n;
      if (!r->g->params.p[i].frozen) np += (size_t)n;
    }
  }
  char desc[256];
  mf_device_select(cfg, &r->be, desc, sizeof desc);
  printf("model: gpt L%d H%d C%d T%d, %.2fM parameters (%.2fM trainable%s), device %s\n", cfg->model.n_layer,
         cfg->model.n_head, cfg->model.n_embd, cfg->model.block_size, total / 1e6, (double)np / 1e6,
         frozen ? ", some frozen" : "", desc);
  if (r->par.size > 1 || cfg->parallel.zero) {
    printf("parallel: %d ranks (%s) = data parallel %d x tensor parallel %d; %s%d gradient bucket%s; ZeRO-1 %s; "
           "gradients over %s\n",
           r->par.size, mf_comm_kind(r->world), r->par.dp_size, r->par.tp_size,
           cfg->parallel.bucket_mb > 0 ? "overlapped, " : "after backward, ",
           r->dist.dp ? mf_dp_buckets(r->dist.dp) : 0, r->dist.dp && mf_dp_buckets(r->dist.dp) == 1 ? "" : "s",
           r->dist.dp && mf_dp_zero(r->dist.dp) ? "on" : "off", mf_comm_kind(r->par.dp));
  }
  printf("optimizer state: %.3f MiB per rank (AdamW m, v%s)\n", opt_mib,
         r->dist.dp && mf_dp_zero(r->dist.dp) ? "; ZeRO-1 shard" : "");
  printf("data: %s: %lld train tokens (%lld windows of %d), %lld val tokens\n", cfg->data.name,
         (long long)r->train.n, (long long)r->loader.nwin, cfg->train.seq_len, (long long)r->val.n);
  return MF_OK;
}

static void teardown(run *r) {
  if (r->metrics) fclose(r->metrics);
  mf_ctx_destroy(r->ctx);
  mf_loader_free(&r->loader);
  mf_tokens_free(&r->train);
  mf_tokens_free(&r->val);
  mf_adamw_free(&r->opt);
  mf_dist_free(&r->dist);
  mf_gpt_free(r->g);
  mf_par_free(&r->par);
}

/* ---- one step ---- */

static mf_train_hook g_hook;

void mf_train_set_hook(mf_train_hook fn) { g_hook = fn; }

static mf_status check_finite(int step, double loss, double norm) {
  if (!isfinite(loss) || !isfinite(norm))
    return MF_ERR(MF_ERR_INPUT, "step %d: loss or gradient is not finite (loss %g, grad norm %g); lower "
                  "train.lr or raise train.warmup_steps", step, loss, norm);
  return MF_OK;
}

/* as torch.nn.utils.clip_grad_norm_ */
static float clip_scale(const mf_train_cfg *tc, double norm) {
  float scale = tc->grad_clip > 0 ? (float)(tc->grad_clip / (norm + 1e-6)) : 1.0f;
  return scale > 1.0f ? 1.0f : scale;
}

/* one forward and backward; *sum: the sum of its per-token losses. hook_step > 0: the
 * test hook runs after the forward */
static mf_status micro_step(mf_gpt *g, mf_ctx *c, int32_t *in, int32_t *tg, int B, int T, float seed,
                            int hook_step, double *sum) {
  mf_ctx_reset(c);
  mf_tensor idx, tgt;
  MF_TRY(batch_tensors(c, in, tg, B, T, &idx, &tgt));
  mf_tensor *losses = mf_gpt_forward(g, c, &idx, &tgt);
  if (!losses) return mf_ctx_status(c);
  if (hook_step && g_hook) MF_TRY(g_hook(0, hook_step));
  MF_TRY(loss_sum(c, losses->data, B * T, sum));
  return mf_backward(c, losses, seed);
}

/* ---- the micro-step as a CUDA graph (cuda_graph: true) ----
 * A graph replays the kernels it recorded on the addresses they were given, so everything
 * the micro-step touches must stay where it was at the capture: the parameters, their
 * gradients and the bf16 weight copy (placed once), the batch and the loss seed (buffers
 * of their own here), and the activations in the step arena, whose allocation sequence is
 * the same in every micro-step of one shape (B, T, recompute level), so it hands out the
 * same addresses after each reset, unless it grew (then the next reset moves it: the
 * arena's growth count is compared). Host work that would wait for the device stays
 * outside the capture: the batch upload before, the loss readback after, the gradient
 * norm and AdamW (its lr changes per step) after the micro-steps.
 * The first micro-step of a shape runs eagerly, so the arena, the tape, the scratch area
 * and cuBLASLt's state reach their final sizes; the next is captured and launched, and
 * every later one only launches the graph. A change of shape, recompute level or arena
 * drops the graph and starts over. */
struct mf_step_graph {
  const mf_backend *be;
  void *exec;           /* the captured micro-step; NULL until captured */
  int32_t *din, *dtg;   /* the batch, device copies at fixed addresses */
  float *dseed;         /* d(loss)/d(per-token loss) for each token, uploaded before capture */
  float seed;           /* the value in dseed (NAN: not filled) */
  int B, T, recompute;  /* the shape the buffers and the graph are for */
  int grows;            /* the arena's growth count when they were made */
  int warm;             /* an eager micro-step ran at this shape and the arena kept still */
  const float *losses;  /* where the captured forward leaves the per-token losses */
  long captures, replays;
};

mf_status mf_step_graph_create(mf_step_graph **out, const mf_backend *be) {
  *out = NULL;
  if (!be->graph_begin)
    return MF_ERR(MF_ERR_CONFIG, "cuda_graph: true needs device: cuda (the %s backend has no CUDA graphs); set "
                  "cuda_graph: false", be->name);
  mf_step_graph *sg = calloc(1, sizeof *sg);
  if (!sg) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  sg->be = be;
  sg->seed = NAN;
  *out = sg;
  return MF_OK;
}

static void graph_drop(mf_step_graph *sg) {
  if (sg->exec && sg->be->graph_free) sg->be->graph_free(sg->exec);
  sg->exec = NULL;
}

void mf_step_graph_free(mf_step_graph *sg) {
  if (!sg) return;
  graph_drop(sg);
  sg->be->free(sg->din);
  sg->be->free(sg->dtg);
  sg->be->free(sg->dseed);
  free(sg);
}

void mf_step_graph_stats(const mf_step_graph *sg, long *captures, long *replays) {
  *captures = sg ? sg->captures : 0;
  *replays = sg ? sg->replays : 0;
}

/* the buffers for shape B x T and the current arena; a stale graph is dropped */
static mf_status graph_prepare(mf_step_graph *sg, mf_ctx *c, int B, int T, float seed) {
  const mf_backend *be = sg->be;
  int grows = mf_ctx_arena_grows(c), rc = mf_ctx_recompute(c);
  if (sg->B != B || sg->T != T) {
    graph_drop(sg);
    be->free(sg->din);
    be->free(sg->dtg);
    be->free(sg->dseed);
    size_t n = (size_t)B * T;
    sg->din = be->alloc(n * sizeof(int32_t));
    sg->dtg = be->alloc(n * sizeof(int32_t));
    sg->dseed = be->alloc(n * sizeof(float));
    sg->B = sg->T = 0;
    if (!sg->din || !sg->dtg || !sg->dseed) return MF_ERR(MF_ERR_NOMEM, "cuda_graph: out of device memory");
    sg->B = B;
    sg->T = T;
    sg->seed = NAN;
    sg->warm = 0;
  }
  if (sg->recompute != rc || sg->grows != grows) {
    graph_drop(sg);
    sg->recompute = rc;
    sg->grows = grows;
    sg->warm = 0;
  }
  if (!(sg->seed == seed)) { /* a new accumulation count (or the first micro-step) */
    size_t n = (size_t)B * T;
    float *h = malloc(n * sizeof *h);
    if (!h) return MF_ERR(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) h[i] = seed;
    be->to_device(sg->dseed, h, n * sizeof *h);
    free(h);
    sg->seed = seed;
  }
  return MF_OK;
}

/* forward and backward on the fixed buffers, captured (capture 1) or run now */
static mf_status graph_forward_backward(mf_step_graph *sg, mf_gpt *g, mf_ctx *c, int capture, const float **losses) {
  const mf_backend *be = sg->be;
  mf_ctx_reset(c);
  const char *why = capture ? be->graph_begin() : NULL;
  if (why) return MF_ERR(MF_ERR_BACKEND, "cuda_graph: cannot start capturing the training step: %s", why);
  mf_tensor idx = mf_view(sg->din, MF_I32, 2, (int64_t[]){sg->B, sg->T});
  mf_tensor tgt = mf_view(sg->dtg, MF_I32, 2, (int64_t[]){sg->B, sg->T});
  idx.device = tgt.device = be->device;
  mf_tensor *l = mf_gpt_forward(g, c, &idx, &tgt);
  mf_status st = l ? mf_backward_seeded(c, l, sg->dseed) : mf_ctx_status(c);
  *losses = l ? l->data : NULL;
  if (!capture) return st;
  void *x = NULL;
  why = be->graph_end(&x); /* ends the capture whatever happened in it */
  if (st != MF_OK || why) {
    if (x) be->graph_free(x);
    return st != MF_OK ? st : MF_ERR(MF_ERR_BACKEND, "cuda_graph: capturing the training step failed: %s", why);
  }
  sg->exec = x;
  sg->captures++;
  return MF_OK;
}

static mf_status graph_micro_step(mf_step_graph *sg, mf_gpt *g, mf_ctx *c, int32_t *in, int32_t *tg, int B,
                                  int T, float seed, int hook_step, double *sum) {
  const mf_backend *be = sg->be;
  size_t bytes = (size_t)B * T * sizeof(int32_t);
  MF_TRY(graph_prepare(sg, c, B, T, seed));
  be->to_device(sg->din, in, bytes);
  be->to_device(sg->dtg, tg, bytes);
  const float *losses = sg->losses;
  int grows = mf_ctx_arena_grows(c);
  if (!sg->exec && sg->warm) {
    MF_TRY(graph_forward_backward(sg, g, c, 1, &losses));
    sg->losses = losses;
    if (mf_ctx_arena_grows(c) != grows) graph_drop(sg); /* it moves at the next reset: run it now */
  }
  if (sg->exec) {
    const char *why = be->graph_launch(sg->exec);
    if (why) return MF_ERR(MF_ERR_BACKEND, "cuda_graph: replaying the training step failed: %s", why);
    sg->replays++;
  } else {
    MF_TRY(graph_forward_backward(sg, g, c, 0, &losses));
    sg->warm = mf_ctx_arena_grows(c) == sg->grows;
  }
  if (hook_step && g_hook) MF_TRY(g_hook(0, hook_step));
  return loss_sum(c, losses, B * T, sum);
}

mf_status mf_gpt_train_step(mf_gpt *g, mf_ctx *c, mf_adamw *opt, const mf_backend *be,
                            const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                            int32_t *const *targets, int B, int T, double *loss_out, double *norm_out) {
  return mf_gpt_train_step_graph(NULL, g, c, opt, be, tc, step, accum, inputs, targets, B, T, loss_out, norm_out);
}

mf_status mf_gpt_train_step_graph(mf_step_graph *sg, mf_gpt *g, mf_ctx *c, mf_adamw *opt, const mf_backend *be,
                                  const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                                  int32_t *const *targets, int B, int T, double *loss_out, double *norm_out) {
  mf_params_zero_grad(&g->params);
  double loss = 0;
  float seed = 1.0f / ((float)B * T * accum); /* d(mean loss over the global batch) */
  for (int k = 0; k < accum; k++) {
    double s = 0;
    if (sg) MF_TRY(graph_micro_step(sg, g, c, inputs[k], targets[k], B, T, seed, k == 0 ? step : 0, &s));
    else MF_TRY(micro_step(g, c, inputs[k], targets[k], B, T, seed, k == 0 ? step : 0, &s));
    loss += s / ((double)B * T * accum);
  }
  double norm = mf_grad_norm(&g->params, be);
  *loss_out = loss;
  *norm_out = norm;
  MF_TRY(check_finite(step, loss, norm));
  mf_adamw_step(opt, &g->params, be, tc, mf_lr_at(tc, step), clip_scale(tc, norm), step);
  return MF_OK;
}

mf_status mf_dist_init(mf_dist *d, mf_par *par, mf_gpt *g, const mf_parallel_cfg *pc, const mf_backend *be,
                       mf_adamw *opt) {
  memset(d, 0, sizeof *d);
  d->par = par;
  int n = g->params.n;
  d->norm_w = malloc((size_t)n * sizeof *d->norm_w);
  if (!d->norm_w) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  /* replicated parameters are on every tensor-parallel rank: count them once */
  for (int i = 0; i < n; i++)
    d->norm_w[i] = g->whole[i].split == MF_SPLIT_NONE && par->tp_size > 1 ? 1.0 / par->tp_size : 1.0;
  if (par->dp_size > 1 || pc->zero) {
    mf_status st = mf_dp_create(&d->dp, &g->params, par->dp, pc->bucket_mb, pc->zero, be);
    if (st == MF_OK) st = mf_dp_tie_early(d->dp, g->wte); /* wte: the LM head's weight too */
    if (st != MF_OK) return st;
  }
  if (!d->dp) return mf_adamw_init(opt, g->params.numel);
  /* AdamW reads the reduced gradients where the reduction put them: plain, one range over
   * the whole buffer; ZeRO-1, state for this rank's pieces only */
  const mf_adamw_range *rg;
  int nr = mf_dp_ranges(d->dp, &rg);
  MF_TRY(mf_adamw_init_ranges(opt, rg, nr));
  opt->grads = mf_dp_reduced_grads(d->dp);
  return MF_OK;
}

void mf_dist_free(mf_dist *d) {
  mf_step_graph_free(d->graph);
  mf_dp_free(d->dp);
  free(d->norm_w);
  memset(d, 0, sizeof *d);
}

mf_status mf_gpt_train_step_dist(mf_gpt *g, mf_ctx *c, mf_adamw *opt, const mf_backend *be,
                                 const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                                 int32_t *const *targets, int B, int T, mf_dist *d, double *loss_out,
                                 double *norm_out) {
  if (!d || !d->par || (d->par->size == 1 && !d->dp)) {
    if (d) d->stop_out = d->stop_in;
    return mf_gpt_train_step_graph(d ? d->graph : NULL, g, c, opt, be, tc, step, accum, inputs, targets, B, T,
                                   loss_out, norm_out);
  }
  mf_par *par = d->par;
  mf_params_zero_grad(&g->params);
  double loss = 0, denom = (double)B * T * accum * par->dp_size;
  float seed = 1.0f / ((float)B * T * accum * par->dp_size); /* d(mean loss over the global batch) */
  for (int k = 0; k < accum; k++) {
    mf_ctx_reset(c);
    mf_tensor idx, tgt;
    MF_TRY(batch_tensors(c, inputs[k], targets[k], B, T, &idx, &tgt));
    mf_tensor *losses = mf_gpt_forward(g, c, &idx, &tgt);
    if (!losses) return mf_ctx_status(c);
    if (k == 0 && g_hook) MF_TRY(g_hook(par->rank, step));
    double s = 0;
    MF_TRY(loss_sum(c, losses->data, B * T, &s));
    loss += s / denom;
    /* the last micro-batch completes the gradients: reduce buckets as they become final */
    if (k == accum - 1 && d->dp) MF_TRY(mf_dp_arm(d->dp, c));
    mf_status st = mf_backward(c, losses, seed);
    if (st != MF_OK) {
      mf_ctx_set_backward_hook(c, NULL, NULL);
      return st;
    }
  }
  if (d->dp) MF_TRY(mf_dp_finish(d->dp, c));
  int zero = d->dp && mf_dp_zero(d->dp);
  double ss = 0;
  if (d->dp) ss = mf_dp_grad_sumsq(d->dp, d->norm_w);
  else
    for (int i = 0; i < g->params.n; i++)
      ss += d->norm_w[i] * be->sumsq(g->params.p[i].t.grad, (size_t)mf_numel(&g->params.p[i].t));
  /* one reduction over the world: the loss (from one rank of each TP group), the squared
   * norm (ZeRO: every rank's pieces; plain: one DP replica's TP slices), stop requests */
  double red[3] = {par->tp_rank == 0 ? loss : 0.0, zero || par->dp_rank == 0 ? ss : 0.0, d->stop_in ? 1.0 : 0.0};
  MF_TRY(mf_comm_allreduce(par->world, red, red, 3, MF_C_F64, MF_RED_SUM));
  loss = red[0];
  double norm = sqrt(red[1]);
  d->stop_out = red[2] > 0;
  *loss_out = loss;
  *norm_out = norm;
  MF_TRY(check_finite(step, loss, norm));
  mf_adamw_step(opt, &g->params, be, tc, mf_lr_at(tc, step), clip_scale(tc, norm), step);
  if (zero) MF_TRY(mf_dp_gather_params(d->dp));
  return MF_OK;
}

/* ---- the loop ---- */

static mf_status loop(run *r) {
  mf_config *cfg = r->cfg;
  const mf_train_cfg *t = &cfg->train;
  int B = t->micro_batch_size, T = t->seq_len, dp = r->par.dp_size, accum = t->batch_size / (B * dp);
  int32_t **in = calloc((size_t)accum, sizeof *in), **tg = calloc((size_t)accum, sizeof *tg);
  int ok = in && tg;
  for (int k = 0; ok && k < accum; k++) {
    in[k] = malloc((size_t)B * T * sizeof **in);
    tg[k] = malloc((size_t)B * T * sizeof **tg);
    ok = in[k] && tg[k];
  }
  g_stop_signal = 0;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  mf_progress_init(&r->prog, r->lead ? stderr : stdout, (long)r->st.step, t->steps, cfg->run.progress && r->lead);
  mf_status st = ok ? MF_OK : MF_ERR(MF_ERR_NOMEM, "out of memory");
  int finished = r->st.step >= t->steps;
  double tok_s = 0;
  while (!finished && st == MF_OK) {
    int step = (int)r->st.step + 1;
    double t0 = mf_now(), loss, norm;
    mf_loader_begin_batch(&r->loader, t->batch_size);
    /* data-parallel rank q takes micro-batches k*dp + q of the global batch */
    for (int k = 0; k < accum; k++)
      mf_loader_fill(&r->loader, mf_loader_rank_offset(k, dp, r->par.dp_rank, B), B, in[k], tg[k]);
    r->dist.stop_in = g_stop_signal != 0;
    r->sym = 0;
    st = mf_gpt_train_step_dist(r->g, r->ctx, &r->opt, r->be, t, step, accum, in, tg, B, T, &r->dist, &loss, &norm);
    if (st == MF_ERR_INPUT) r->sym = 1; /* not finite: decided on reduced values, on every rank */
    if (st != MF_OK) break;
    mf_loader_advance(&r->loader, t->batch_size);
    float lr = mf_lr_at(t, step);
    double dt = mf_now() - t0;
    r->st.step = step;
    r->st.tokens_seen += (int64_t)t->batch_size * T;
    r->st.loss = loss;
    tok_s = (double)t->batch_size * T / dt;
    if (r->metrics && (step % cfg->run.log_every == 0 || step == 1 || step == t->steps)) {
      fprintf(r->metrics, "{\"step\":%d", step);
      json_num(r->metrics, "loss", loss);
      json_num(r->metrics, "lr", lr);
      json_num(r->metrics, "grad_norm", norm);
      json_num(r->metrics, "ms_per_step", dt * 1e3);
      json_num(r->metrics, "tokens_per_s", tok_s);
      fprintf(r->metrics, ",\"tokens\":%lld}\n", (long long)r->st.tokens_seen);
      fflush(r->metrics);
    }
    char msg[160];
    snprintf(msg, sizeof msg, "loss %.4f | lr %.2e | %.0f tok/s | %.0f ms/step", loss, lr, tok_s, dt * 1e3);
    mf_progress_update(&r->prog, step, msg);
    finished = step >= t->steps;
    if (finished) break;
    if (t->eval_every > 0 && step % t->eval_every == 0) st = eval(r, 0);
    if (st != MF_OK) break;
    const char *why = NULL;
    int stop = r->dist.stop_out; /* every rank agrees (reduced in the step) */
    if (t->stop_after > 0 && step >= t->stop_after) why = "train.stop_after";
    else if (stop) why = g_stop_signal == SIGINT ? "interrupted" : "terminated";
    if (why) {
      st = save(r, why);
      if (r->lead) mf_progress_done(&r->prog);
      if (st == MF_OK && r->lead) printf("stopped after step %d (%s); continue with --resume\n", step, why);
      goto out;
    }
    if (t->ckpt_every > 0 && step % t->ckpt_every == 0) st = save(r, "train.ckpt_every");
  }
  if (st == MF_OK) st = eval(r, 1);
  if (st == MF_OK) st = save(r, "end of training");
  if (r->lead) mf_progress_done(&r->prog);
  if (st == MF_OK && r->lead)
    printf("done: step %lld, loss %.4f, val_loss %.4f, %.0f tok/s (last step)\n", (long long)r->st.step,
           r->st.loss, r->st.val_loss, tok_s);
  if (st == MF_OK && r->lead && r->dist.graph) {
    long cap, rep;
    mf_step_graph_stats(r->dist.graph, &cap, &rep);
    printf("cuda graph: the micro-step captured %ld time%s, replayed %ld times\n", cap, cap == 1 ? "" : "s", rep);
  }
  if (st == MF_OK && r->lead && r->dist.dp) {
    double exposed, hook;
    long n;
    mf_dp_stats(r->dist.dp, &exposed, &hook, &n);
    if (n > 0)
      printf("data parallel: %.1f ms/step waiting for gradient reductions after backward, %.1f ms/step "
             "launching and progressing them during backward (rank 0, %ld steps; the tied embedding "
             "reduced first on %ld)\n", exposed * 1e3 / n, hook * 1e3 / n, n, mf_dp_tied_steps(r->dist.dp));
  }
out:
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  for (int k = 0; k < accum && in && tg; k++) {
    free(in[k]);
    free(tg[k]);
  }
  free(in);
  free(tg);
  return st;
}

mf_status mf_train(mf_config *cfg) {
  run r;
  memset(&r, 0, sizeof r);
  r.cfg = cfg;
  int own_world = !mf_comm_world_active();
  mf_status st = setup_config(&r);
  r.sym = 1; /* config mistakes: every rank makes them alike */
  if (st == MF_OK) {
    r.sym = 0;
    st = setup(&r);
  }
  if (st == MF_OK) st = loop(&r);
  if (st != MF_OK && r.par.size > 1 && !r.sym) {
    /* this rank alone failed: the others may be waiting in a collective for it; end the job */
    fprintf(stderr, "mforge: error: %s [%s]\n", mf_error_message(), mf_error_location());
    mf_comm_abort_job(mf_status_exit_code(st));
  }
  teardown(&r);
  if (own_world) mf_comm_world_finalize();
  return st;
}
