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

mf_status mf_eval_loss(mf_gpt *g, mf_ctx *c, const mf_token_set *ts, int T, int B, int max_batches,
                       double *loss, int64_t *tokens) {
  mf_loader l;
  MF_TRY(mf_loader_init(&l, ts, T, 0, 0));
  if (B > l.nwin) B = (int)l.nwin;
  int64_t nb = l.nwin / B;
  if (max_batches > 0 && nb > max_batches) nb = max_batches;
  int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
  if (!in || !tg) {
    free(in);
    free(tg);
    mf_loader_free(&l);
    return MF_ERR(MF_ERR_NOMEM, "out of memory");
  }
  int rec = mf_ctx_recording(c);
  mf_ctx_set_record(c, 0);
  double sum = 0;
  mf_status st = MF_OK;
  for (int64_t b = 0; b < nb && st == MF_OK; b++) {
    mf_loader_fill(&l, b * B, B, in, tg);
    mf_ctx_reset(c);
    mf_tensor idx = mf_view(in, MF_I32, 2, (int64_t[]){B, T});
    mf_tensor tgt = mf_view(tg, MF_I32, 2, (int64_t[]){B, T});
    mf_tensor *losses = mf_gpt_forward(g, c, &idx, &tgt);
    if (!losses) {
      st = mf_ctx_status(c);
      break;
    }
    const float *lv = losses->data;
    for (int i = 0; i < B * T; i++) sum += lv[i];
  }
  mf_ctx_reset(c);
  mf_ctx_set_record(c, rec);
  free(in);
  free(tg);
  mf_loader_free(&l);
  *loss = sum / (double)(nb * B * T);
  if (tokens) *tokens = nb * B * T;
  return st;
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
} run;

static mf_status save(run *r, const char *why) {
  char path[4096];
  snprintf(path, sizeof path, "%s/last.h5", r->dir);
  r->st.data_epoch = r->loader.epoch;
  r->st.data_cursor = r->loader.cursor;
  MF_TRY(mf_ckpt_save(path, r->cfg, &r->g->params, r->opt.m, r->opt.v, &r->st, "train"));
  int keep = r->cfg->train.keep_ckpts;
  if (keep > 0) {
    /* a hard link: the step file costs no second write */
    char step_path[4096], old[4096];
    snprintf(step_path, sizeof step_path, "%s/step_%06lld.h5", r->dir, (long long)r->st.step);
    unlink(step_path);
    if (link(path, step_path) != 0)
      return MF_ERR(MF_ERR_IO, "cannot create %s: %s", step_path, strerror(errno));
    int every = r->cfg->train.ckpt_every > 0 ? r->cfg->train.ckpt_every : 1;
    long long drop = (long long)r->st.step - (long long)keep * every;
    if (drop > 0) {
      snprintf(old, sizeof old, "%s/step_%06lld.h5", r->dir, drop);
      unlink(old);
    }
  }
  mf_progress_note(&r->prog, "checkpoint: %s (step %lld, %s)", path, (long long)r->st.step, why);
  return MF_OK;
}

static mf_status eval(run *r, int final) {
  double vl;
  int64_t ntok;
  const mf_train_cfg *t = &r->cfg->train;
  MF_TRY(mf_eval_loss(r->g, r->ctx, &r->val, t->seq_len, t->micro_batch_size, t->eval_batches, &vl, &ntok));
  r->st.val_loss = vl;
  if (r->metrics) {
    fprintf(r->metrics, "{\"step\":%lld", (long long)r->st.step);
    json_num(r->metrics, "val_loss", vl);
    json_num(r->metrics, "val_ppl", exp(vl));
    fprintf(r->metrics, ",\"val_tokens\":%lld}\n", (long long)ntok);
    fflush(r->metrics);
  }
  mf_progress_note(&r->prog, "%s step %lld: val_loss %.4f (ppl %.2f, %lld tokens)", final ? "final" : "eval",
                   (long long)r->st.step, vl, exp(vl), (long long)ntok);
  return MF_OK;
}

static mf_status load_data(run *r) {
  const mf_data_cfg *d = &r->cfg->data;
  char tp[4096], vp[4096];
  mf_tokens_path(tp, sizeof tp, d->dir, d->name, "train");
  mf_tokens_path(vp, sizeof vp, d->dir, d->name, "val");
  if (!file_exists(tp) || !file_exists(vp)) {
    if (!mf_data_known(d->name))
      return MF_ERR(MF_ERR_IO, "data set '%s' not found at %s (data.name: one of %s, or a prepared "
                               "directory under data.dir)", d->name, tp, mf_data_names());
    printf("preparing data set '%s' (first use)\n", d->name);
    MF_TRY(mf_data_prepare(d->name, d->dir, 1));
  }
  MF_TRY(mf_tokens_load(&r->train, tp, r->cfg->model.vocab_size));
  MF_TRY(mf_tokens_load(&r->val, vp, r->cfg->model.vocab_size));
  return MF_OK;
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

static mf_status setup(run *r) {
  mf_config *cfg = r->cfg;
  mf_set_threads(cfg->train.threads);
  MF_TRY(mf_config_validate(cfg, 1));
  char desc[256];
  MF_TRY(mf_device_select(cfg, &r->be, desc, sizeof desc));
  snprintf(r->dir, sizeof r->dir, "%s", cfg->run.dir);
  MF_TRY(mf_mkdirs(r->dir));
  remove_stale_tmp(r->dir);
  MF_TRY(load_data(r));
  MF_TRY(mf_gpt_create(&r->g, &cfg->model));
  mf_params_init(&r->g->params, (uint64_t)cfg->run.seed);
  MF_TRY(mf_adamw_init(&r->opt, r->g->params.numel));
  r->st = (mf_train_state){.data_seed = cfg->run.seed, .loss = NAN, .val_loss = NAN};

  char rp[4096];
  MF_TRY(resume_path(cfg, rp, sizeof rp));
  if (rp[0]) {
    mf_status s = mf_ckpt_load_params(rp, &r->g->params);
    if (s == MF_OK) s = mf_ckpt_load_optim(rp, &r->g->params, r->opt.m, r->opt.v);
    if (s == MF_OK) s = mf_ckpt_load_state(rp, &r->st);
    if (s != MF_OK) return mf_error_context(s, "resume from %s: ", rp);
    printf("resumed from %s at step %lld\n", rp, (long long)r->st.step);
  } else if (cfg->init_from[0]) {
    mf_status s = mf_ckpt_load_params(cfg->init_from, &r->g->params);
    if (s != MF_OK) return mf_error_context(s, "init_from: ");
    printf("initialised from %s\n", cfg->init_from);
  }
  int frozen = 0;
  MF_TRY(mf_params_freeze(&r->g->params, cfg->freeze, cfg->n_freeze, &frozen));

  r->ctx = mf_ctx_create(r->be, 64 << 20);
  if (!r->ctx) return MF_ERR(MF_ERR_NOMEM, "out of memory for the step arena");
  MF_TRY(mf_loader_init(&r->loader, &r->train, cfg->train.seq_len, (uint64_t)r->st.data_seed, 1));
  mf_loader_seek(&r->loader, r->st.data_epoch, r->st.data_cursor);

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
  r->metrics = fopen(cp, rp[0] ? "a" : "w");
  if (!r->metrics) return MF_ERR(MF_ERR_IO, "cannot write %s: %s", cp, strerror(errno));

  size_t np = mf_params_count_trainable(&r->g->params);
  printf("model: gpt L%d H%d C%d T%d, %.2fM parameters (%.2fM trainable%s), device %s\n", cfg->model.n_layer,
         cfg->model.n_head, cfg->model.n_embd, cfg->model.block_size,
         (double)(r->g->params.numel) / 1e6, (double)np / 1e6, frozen ? ", some frozen" : "", desc);
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
  mf_gpt_free(r->g);
}

mf_status mf_gpt_train_step(mf_gpt *g, mf_ctx *c, mf_adamw *opt, const mf_backend *be,
                            const mf_train_cfg *tc, int step, int accum, int32_t *const *inputs,
                            int32_t *const *targets, int B, int T, double *loss_out, double *norm_out) {
  mf_params_zero_grad(&g->params);
  double loss = 0;
  float seed = 1.0f / ((float)B * T * accum); /* d(mean loss over the global batch) */
  for (int k = 0; k < accum; k++) {
    mf_tensor idx = mf_view(inputs[k], MF_I32, 2, (int64_t[]){B, T});
    mf_tensor tgt = mf_view(targets[k], MF_I32, 2, (int64_t[]){B, T});
    mf_ctx_reset(c);
    mf_tensor *losses = mf_gpt_forward(g, c, &idx, &tgt);
    if (!losses) return mf_ctx_status(c);
    const float *lv = losses->data;
    double s = 0;
    for (int i = 0; i < B * T; i++) s += lv[i];
    loss += s / ((double)B * T * accum);
    MF_TRY(mf_backward(c, losses, seed));
  }
  double norm = mf_grad_norm(&g->params, be);
  *loss_out = loss;
  *norm_out = norm;
  if (!isfinite(loss) || !isfinite(norm))
    return MF_ERR(MF_ERR_INPUT, "step %d: loss or gradient is not finite (loss %g, grad norm %g); lower "
                  "train.lr or raise train.warmup_steps", step, loss, norm);
  /* as torch.nn.utils.clip_grad_norm_ */
  float scale = tc->grad_clip > 0 ? (float)(tc->grad_clip / (norm + 1e-6)) : 1.0f;
  if (scale > 1.0f) scale = 1.0f;
  mf_adamw_step(opt, &g->params, be, tc, mf_lr_at(tc, step), scale, step);
  return MF_OK;
}

static mf_status loop(run *r) {
  mf_config *cfg = r->cfg;
  const mf_train_cfg *t = &cfg->train;
  int B = t->micro_batch_size, T = t->seq_len, accum = t->batch_size / B;
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
  mf_progress_init(&r->prog, stderr, (long)r->st.step, t->steps, cfg->run.progress);
  mf_status st = ok ? MF_OK : MF_ERR(MF_ERR_NOMEM, "out of memory");
  int finished = r->st.step >= t->steps;
  double tok_s = 0;
  while (!finished && st == MF_OK) {
    int step = (int)r->st.step + 1;
    double t0 = mf_now(), loss, norm;
    mf_loader_begin_batch(&r->loader, t->batch_size);
    for (int k = 0; k < accum; k++) mf_loader_fill(&r->loader, (int64_t)k * B, B, in[k], tg[k]);
    st = mf_gpt_train_step(r->g, r->ctx, &r->opt, r->be, t, step, accum, in, tg, B, T, &loss, &norm);
    if (st != MF_OK) break;
    mf_loader_advance(&r->loader, t->batch_size);
    float lr = mf_lr_at(t, step);
    double dt = mf_now() - t0;
    r->st.step = step;
    r->st.tokens_seen += (int64_t)t->batch_size * T;
    r->st.loss = loss;
    tok_s = (double)t->batch_size * T / dt;
    if (step % cfg->run.log_every == 0 || step == 1 || step == t->steps) {
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
    if (t->stop_after > 0 && step >= t->stop_after) why = "train.stop_after";
    else if (g_stop_signal) why = g_stop_signal == SIGINT ? "interrupted" : "terminated";
    if (why) {
      st = save(r, why);
      mf_progress_done(&r->prog);
      if (st == MF_OK) printf("stopped after step %d (%s); continue with --resume\n", step, why);
      goto out;
    }
    if (t->ckpt_every > 0 && step % t->ckpt_every == 0) st = save(r, "train.ckpt_every");
  }
  if (st == MF_OK) st = eval(r, 1);
  if (st == MF_OK) st = save(r, "end of training");
  mf_progress_done(&r->prog);
  if (st == MF_OK)
    printf("done: step %lld, loss %.4f, val_loss %.4f, %.0f tok/s (last step)\n", (long long)r->st.step,
           r->st.loss, r->st.val_loss, tok_s);
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
  mf_status st = setup(&r);
  if (st == MF_OK) st = loop(&r);
  teardown(&r);
  return st;
}
