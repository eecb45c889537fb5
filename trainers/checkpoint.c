#include "trainers/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/h5.h"

/* shape as stored: the real rows of a padded parameter */
static int stored_shape(const mf_param *p, int64_t *shape) {
  for (int i = 0; i < p->t.ndim; i++) shape[i] = p->t.shape[i];
  shape[0] = p->ckpt_rows;
  return p->t.ndim;
}

static mf_status put(mf_h5 *h, const char *fmt, const char *name, const mf_param *p, const float *base) {
  char path[256];
  snprintf(path, sizeof path, fmt, name);
  int64_t shape[MF_MAX_DIMS];
  int nd = stored_shape(p, shape);
  return mf_h5_write(h, path, MF_F32, base + p->offset, nd, shape);
}

mf_status mf_ckpt_save(const char *path, const mf_config *cfg, const mf_params *ps,
                       const float *m, const float *v, const mf_train_state *st, const char *kind) {
  mf_h5 *h;
  MF_TRY(mf_h5_create(&h, path));
  char *yaml = mf_config_dump(cfg);
  mf_status s = yaml ? MF_OK : MF_ERR(MF_ERR_NOMEM, "out of memory");
  if (s == MF_OK) s = mf_h5_set_str(h, "/", "format", "mforge-checkpoint");
  if (s == MF_OK) s = mf_h5_set_i64(h, "/", "version", MF_CKPT_VERSION);
  if (s == MF_OK) s = mf_h5_set_str(h, "/", "family", cfg->model.family);
  if (s == MF_OK) s = mf_h5_set_str(h, "/", "kind", kind);
  if (s == MF_OK) s = mf_h5_set_str(h, "/config", "yaml", yaml);
  if (s == MF_OK) s = mf_h5_set_str(h, "/config", "family", cfg->model.family);
  if (s == MF_OK) s = mf_h5_set_i64(h, "/config", "version", MF_CKPT_VERSION);
  if (s == MF_OK) s = mf_h5_set_str(h, "/config", "tokenizer", "gpt2");
  free(yaml);
  for (int i = 0; i < ps->n && s == MF_OK; i++) {
    const mf_param *p = &ps->p[i];
    s = put(h, "/params/%s", p->name, p, ps->data);
    if (s == MF_OK && m) s = put(h, "/optim/%s/m", p->name, p, m);
    if (s == MF_OK && v) s = put(h, "/optim/%s/v", p->name, p, v);
  }
  if (st && s == MF_OK) {
    const char *g = "/state";
    s = mf_h5_set_i64(h, g, "step", st->step);
    if (s == MF_OK) s = mf_h5_set_i64(h, g, "tokens_seen", st->tokens_seen);
    if (s == MF_OK) s = mf_h5_set_i64(h, g, "data_epoch", st->data_epoch);
    if (s == MF_OK) s = mf_h5_set_i64(h, g, "data_cursor", st->data_cursor);
    if (s == MF_OK) s = mf_h5_set_i64(h, g, "data_seed", st->data_seed);
    if (s == MF_OK) s = mf_h5_set_f64(h, g, "loss", st->loss);
    if (s == MF_OK) s = mf_h5_set_f64(h, g, "val_loss", st->val_loss);
  }
  if (s != MF_OK) {
    mf_h5_abort(h);
    return mf_error_context(s, "saving checkpoint: ");
  }
  return mf_h5_commit(h);
}

static mf_status open_ckpt(mf_h5 **h, const char *path) {
  MF_TRY(mf_h5_open(h, path));
  char *fmt = NULL;
  if (!mf_h5_has_attr(*h, "/", "format") || mf_h5_get_str(*h, "/", "format", &fmt) != MF_OK ||
      strcmp(fmt, "mforge-checkpoint") != 0) {
    free(fmt);
    mf_h5_close(*h);
    return MF_ERR(MF_ERR_FORMAT, "'%s' is not an mforge checkpoint (no format=mforge-checkpoint attribute)", path);
  }
  free(fmt);
  return MF_OK;
}

mf_status mf_ckpt_read_config(const char *path, mf_config *cfg) {
  mf_h5 *h;
  MF_TRY(open_ckpt(&h, path));
  char *yaml = NULL;
  mf_status s = mf_h5_get_str(h, "/config", "yaml", &yaml);
  mf_h5_close(h);
  if (s != MF_OK) return s;
  char origin[512];
  snprintf(origin, sizeof origin, "%s:/config", path);
  s = mf_config_parse(cfg, yaml, strlen(yaml), origin);
  free(yaml);
  return s;
}

static mf_status get(mf_h5 *h, const char *fmt, const char *name, const mf_param *p, float *base) {
  char path[256];
  snprintf(path, sizeof path, fmt, name);
  int64_t shape[MF_MAX_DIMS];
  int nd = stored_shape(p, shape);
  float *dst = base + p->offset;
  MF_TRY(mf_h5_read(h, path, MF_F32, dst, nd, shape));
  /* padded rows stay exactly zero */
  int64_t cols = mf_numel(&p->t) / p->t.shape[0];
  memset(dst + p->ckpt_rows * cols, 0, (size_t)((p->t.shape[0] - p->ckpt_rows) * cols) * sizeof(float));
  return MF_OK;
}

mf_status mf_ckpt_load_params(const char *path, mf_params *ps) {
  mf_h5 *h;
  MF_TRY(open_ckpt(&h, path));
  mf_status s = MF_OK;
  long n = mf_h5_group_size(h, "/params");
  if (n != ps->n)
    s = MF_ERR(MF_ERR_SHAPE, "'%s' holds %ld parameter tensors, this model has %d (another model shape?)",
               path, n, ps->n);
  for (int i = 0; i < ps->n && s == MF_OK; i++) s = get(h, "/params/%s", ps->p[i].name, &ps->p[i], ps->data);
  mf_h5_close(h);
  return s;
}

mf_status mf_ckpt_load_optim(const char *path, const mf_params *ps, float *m, float *v) {
  mf_h5 *h;
  MF_TRY(open_ckpt(&h, path));
  mf_status s = MF_OK;
  if (!mf_h5_exists(h, "/optim"))
    s = MF_ERR(MF_ERR_FORMAT, "'%s' has no optimizer state (an exported model?): use init_from to "
               "fine-tune from it instead of resume", path);
  for (int i = 0; i < ps->n && s == MF_OK; i++) {
    s = get(h, "/optim/%s/m", ps->p[i].name, &ps->p[i], m);
    if (s == MF_OK) s = get(h, "/optim/%s/v", ps->p[i].name, &ps->p[i], v);
  }
  mf_h5_close(h);
  return s;
}

mf_status mf_ckpt_load_state(const char *path, mf_train_state *st) {
  mf_h5 *h;
  MF_TRY(open_ckpt(&h, path));
  const char *g = "/state";
  mf_status s = mf_h5_get_i64(h, g, "step", &st->step);
  if (s == MF_OK) s = mf_h5_get_i64(h, g, "tokens_seen", &st->tokens_seen);
  if (s == MF_OK) s = mf_h5_get_i64(h, g, "data_epoch", &st->data_epoch);
  if (s == MF_OK) s = mf_h5_get_i64(h, g, "data_cursor", &st->data_cursor);
  if (s == MF_OK) s = mf_h5_get_i64(h, g, "data_seed", &st->data_seed);
  if (s == MF_OK) s = mf_h5_get_f64(h, g, "loss", &st->loss);
  if (s == MF_OK) s = mf_h5_get_f64(h, g, "val_loss", &st->val_loss);
  mf_h5_close(h);
  return s;
}
