#include "trainers/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/h5.h"
#include "core/optim.h"
#include "parallel/comm.h"
#include "parallel/grid.h"
#include "parallel/tp.h"

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

static mf_status write_header(mf_h5 *h, const mf_config *cfg, const char *kind) {
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
  return s;
}

static mf_status write_state(mf_h5 *h, const mf_train_state *st) {
  const char *g = "/state";
  mf_status s = mf_h5_set_i64(h, g, "step", st->step);
  if (s == MF_OK) s = mf_h5_set_i64(h, g, "tokens_seen", st->tokens_seen);
  if (s == MF_OK) s = mf_h5_set_i64(h, g, "data_epoch", st->data_epoch);
  if (s == MF_OK) s = mf_h5_set_i64(h, g, "data_cursor", st->data_cursor);
  if (s == MF_OK) s = mf_h5_set_i64(h, g, "data_seed", st->data_seed);
  if (s == MF_OK) s = mf_h5_set_f64(h, g, "loss", st->loss);
  if (s == MF_OK) s = mf_h5_set_f64(h, g, "val_loss", st->val_loss);
  return s;
}

mf_status mf_ckpt_save(const char *path, const mf_config *cfg, const mf_params *ps,
                       const float *m, const float *v, const mf_train_state *st, const char *kind) {
  mf_h5 *h;
  MF_TRY(mf_h5_create(&h, path));
  mf_status s = write_header(h, cfg, kind);
  for (int i = 0; i < ps->n && s == MF_OK; i++) {
    const mf_param *p = &ps->p[i];
    s = put(h, "/params/%s", p->name, p, ps->data);
    if (s == MF_OK && m) s = put(h, "/optim/%s/m", p->name, p, m);
    if (s == MF_OK && v) s = put(h, "/optim/%s/v", p->name, p, v);
  }
  if (st && s == MF_OK) s = write_state(h, st);
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

/* ---- any parallel layout ---- */

typedef struct layout {
  int rank, size, tp, tp_rank, dp_rank;
  mf_comm *world, *tp_comm, *dp_comm; /* NULL without a grid */
} layout;

static layout layout_of(mf_par *par) {
  layout L = {0, 1, 1, 0, 0, NULL, NULL, NULL};
  if (par) {
    L = (layout){par->rank, par->size, par->tp_size, par->tp_rank, par->dp_rank, par->world, par->tp_host,
                 par->dp_host};
  }
  return L;
}

static int whole_range(const mf_adamw *o, size_t numel) {
  return o->nr == 1 && o->r[0].lo == 0 && o->r[0].hi >= numel && o->r[0].state == 0;
}

/* this rank's optimizer state for flat [a, e): into dst (zeros where another rank holds
 * it), or back from src */
static void state_pieces(const mf_adamw *o, const float *state, size_t a, size_t e, float *dst) {
  memset(dst, 0, (e - a) * sizeof(float));
  for (int k = 0; k < o->nr; k++) {
    size_t lo = a > o->r[k].lo ? a : o->r[k].lo, hi = e < o->r[k].hi ? e : o->r[k].hi;
    if (lo < hi) memcpy(dst + (lo - a), state + o->r[k].state + (lo - o->r[k].lo), (hi - lo) * sizeof(float));
  }
}

static void state_store(const mf_adamw *o, float *state, size_t a, size_t e, const float *src) {
  for (int k = 0; k < o->nr; k++) {
    size_t lo = a > o->r[k].lo ? a : o->r[k].lo, hi = e < o->r[k].hi ? e : o->r[k].hi;
    if (lo < hi) memcpy(state + o->r[k].state + (lo - o->r[k].lo), src + (lo - a), (hi - lo) * sizeof(float));
  }
}

static size_t most_local(const mf_params *ps) {
  size_t m = 1;
  for (int i = 0; i < ps->n; i++)
    if ((size_t)mf_numel(&ps->p[i].t) > m) m = (size_t)mf_numel(&ps->p[i].t);
  return m;
}

static size_t most_whole(const mf_params *ps, const mf_tp_param *whole) {
  size_t m = 1;
  for (int i = 0; i < ps->n; i++)
    if ((size_t)mf_tp_numel(&whole[i]) > m) m = (size_t)mf_tp_numel(&whole[i]);
  return m;
}

static mf_status peer_failed(const char *what, const char *path) {
  return MF_ERR(MF_ERR_IO, "%s %s failed on rank 0 (its message says why)", what, path);
}

mf_status mf_ckpt_save_par(const char *path, const mf_config *cfg, const mf_params *ps, const mf_tp_param *whole,
                           const mf_adamw *opt, const mf_train_state *st, const char *kind, mf_par *par) {
  layout L = layout_of(par);
  int lead = L.rank == 0, tp_root = L.dp_rank == 0; /* tp_root: in the TP group that gathers */
  size_t nl = most_local(ps), nw = most_whole(ps, whole);
  float *loc = malloc(nl * sizeof(float));
  float *gat = tp_root && L.tp_rank == 0 ? malloc((size_t)L.tp * nl * sizeof(float)) : NULL;
  float *W = lead ? malloc(nw * sizeof(float)) : NULL;
  size_t *counts = malloc((size_t)L.tp * sizeof *counts);
  mf_status s = loc && counts && (!tp_root || L.tp_rank || gat) && (!lead || W) ? MF_OK : MF_ERR(MF_ERR_NOMEM, "out of memory");
  mf_status comm = MF_OK; /* a failed collective: the ranks no longer agree, stop */
  mf_h5 *h = NULL;
  if (lead && s == MF_OK) {
    s = mf_h5_create(&h, path);
    if (s != MF_OK) h = NULL;
    else s = write_header(h, cfg, kind);
  }
  int nwhat = opt ? 3 : 1;
  for (int i = 0; i < ps->n && comm == MF_OK; i++) {
    const mf_param *p = &ps->p[i];
    size_t a = p->offset, n = (size_t)mf_numel(&p->t);
    for (int w = 0; w < nwhat && comm == MF_OK; w++) {
      const float *src;
      if (w == 0) {
        src = ps->data + a;
      } else {
        const float *state = w == 1 ? opt->m : opt->v;
        if (whole_range(opt, ps->numel)) {
          src = state + a;
        } else { /* ZeRO-1: each element lives on one rank of the DP group; the sum collects it */
          if (loc) state_pieces(opt, state, a, a + n, loc);
          if (L.dp_comm && loc) comm = mf_comm_allreduce(L.dp_comm, loc, loc, n, MF_C_F32, MF_RED_SUM);
          src = loc;
        }
      }
      if (!tp_root || comm != MF_OK) continue;
      const float *pieces = src;
      if (L.tp > 1) {
        for (int r = 0; r < L.tp; r++) counts[r] = n;
        comm = mf_comm_gatherv(L.tp_comm, src, n, gat, counts, 0, MF_C_F32);
        pieces = gat;
      }
      if (!lead || s != MF_OK || comm != MF_OK) continue;
      for (int r = 0; r < L.tp; r++) mf_tp_insert(&whole[i], p, L.tp, r, pieces + (size_t)r * n, W);
      char dpath[256];
      snprintf(dpath, sizeof dpath, w == 0 ? "/params/%s" : w == 1 ? "/optim/%s/m" : "/optim/%s/v", p->name);
      int64_t shape[MF_MAX_DIMS];
      for (int d = 0; d < whole[i].ndim; d++) shape[d] = whole[i].shape[d];
      shape[0] = whole[i].rows;
      s = mf_h5_write(h, dpath, MF_F32, W, whole[i].ndim, shape);
    }
  }
  if (lead && s == MF_OK && comm == MF_OK && st) s = write_state(h, st);
  free(loc);
  free(gat);
  free(W);
  free(counts);
  if (lead && h) {
    if (s == MF_OK && comm == MF_OK) s = mf_h5_commit(h);
    else mf_h5_abort(h);
  }
  if (comm != MF_OK) return comm;
  if (s != MF_OK && lead) s = mf_error_context(s, "saving checkpoint: ");
  int ok = s == MF_OK;
  if (L.world) MF_TRY(mf_comm_bcast(L.world, &ok, 1, MF_C_I32, 0));
  if (s != MF_OK) return s;
  return ok ? MF_OK : peer_failed("writing checkpoint", path);
}

/* rank 0's status to everyone: its own error on rank 0, "rank 0 failed" elsewhere */
static mf_status agree(const layout *L, mf_status s, const char *what, const char *path) {
  int ok = s == MF_OK;
  if (L->world) MF_TRY(mf_comm_bcast(L->world, &ok, 1, MF_C_I32, 0));
  if (L->rank == 0) return s;
  return ok ? MF_OK : peer_failed(what, path);
}

mf_status mf_ckpt_load_par(const char *path, mf_params *ps, const mf_tp_param *whole, mf_adamw *opt,
                           mf_train_state *st, mf_par *par) {
  layout L = layout_of(par);
  int lead = L.rank == 0;
  mf_h5 *h = NULL;
  mf_status s = MF_OK;
  if (lead) {
    s = open_ckpt(&h, path);
    if (s != MF_OK) h = NULL;
    long n = h ? mf_h5_group_size(h, "/params") : 0;
    if (s == MF_OK && n != ps->n)
      s = MF_ERR(MF_ERR_SHAPE, "'%s' holds %ld parameter tensors, this model has %d (another model shape?)",
                 path, n, ps->n);
    if (s == MF_OK && opt && !mf_h5_exists(h, "/optim"))
      s = MF_ERR(MF_ERR_FORMAT, "'%s' has no optimizer state (an exported model?): use init_from to "
                 "fine-tune from it instead of resume", path);
  }
  size_t nw = most_whole(ps, whole), nl = most_local(ps);
  float *W = malloc(nw * sizeof(float)), *loc = malloc(nl * sizeof(float));
  if (s == MF_OK && (!W || !loc)) s = MF_ERR(MF_ERR_NOMEM, "out of memory");
  s = agree(&L, s, "reading checkpoint", path);
  int nwhat = opt ? 3 : 1;
  for (int i = 0; i < ps->n && s == MF_OK; i++) {
    mf_param *p = &ps->p[i];
    const mf_tp_param *wp = &whole[i];
    size_t a = p->offset, n = (size_t)mf_numel(&p->t), total = (size_t)mf_tp_numel(wp);
    for (int w = 0; w < nwhat && s == MF_OK; w++) {
      if (lead) {
        char dpath[256];
        snprintf(dpath, sizeof dpath, w == 0 ? "/params/%s" : w == 1 ? "/optim/%s/m" : "/optim/%s/v", p->name);
        int64_t shape[MF_MAX_DIMS];
        for (int d = 0; d < wp->ndim; d++) shape[d] = wp->shape[d];
        shape[0] = wp->rows;
        size_t cols = total / (size_t)wp->shape[0], real = (size_t)wp->rows * cols;
        s = mf_h5_read(h, dpath, MF_F32, W, wp->ndim, shape);
        if (s == MF_OK) memset(W + real, 0, (total - real) * sizeof(float)); /* padded rows stay 0 */
      }
      s = agree(&L, s, "reading checkpoint", path);
      if (s != MF_OK) break;
      if (L.world && L.size > 1) s = mf_comm_bcast(L.world, W, total, MF_C_F32, 0);
      if (s != MF_OK) break;
      if (w == 0) {
        mf_tp_extract(wp, p, L.tp, L.tp_rank, W, ps->data + a);
      } else {
        float *state = w == 1 ? opt->m : opt->v;
        if (whole_range(opt, ps->numel)) {
          mf_tp_extract(wp, p, L.tp, L.tp_rank, W, state + a);
        } else {
          mf_tp_extract(wp, p, L.tp, L.tp_rank, W, loc);
          state_store(opt, state, a, a + n, loc);
        }
      }
    }
  }
  if (h) mf_h5_close(h);
  free(W);
  free(loc);
  if (s != MF_OK || !st) return s;
  if (lead) s = mf_ckpt_load_state(path, st);
  s = agree(&L, s, "reading checkpoint", path);
  if (s == MF_OK && L.world && L.size > 1) s = mf_comm_bcast(L.world, st, sizeof *st, MF_C_U8, 0);
  return s;
}
