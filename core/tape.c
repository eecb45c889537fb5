#include "core/tape.h"

#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/hostmem.h"
#include "kernels/backend.h"
#include "kernels/ops.h"

struct mf_ctx {
  const mf_backend *be;
  mf_arena *arena; /* the backend's memory: tensor data, saved values, gradients */
  mf_arena *meta;  /* host memory: the mf_tensor structs the host code reads and writes */
  mf_node *nodes;
  int n, cap;
  int record;
  mf_status st;
  mf_backward_hook hook;
  void *hook_user;
  /* gradient buffers by size: every one handed out this step (to tell them from other
   * memory), and the free ones of each size */
  struct grad_blk {
    void *p;
    size_t bytes;
    int free;
  } *gb;
  int ngb, capgb;
  int recompute;
  struct remat_buf {
    void *data;   /* this step's shared buffer of the kind (NULL until its first use) */
    size_t bytes;
    int occupant; /* tape index of the node whose output it holds now (-1: none) */
  } remat[MF_REMAT_KINDS];
  const mf_tensor *defer; /* mf_ctx_defer_rows */
  void *defer_rows;
};

mf_ctx *mf_ctx_create(const mf_backend *be, size_t arena_bytes) {
  mf_ctx *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->be = be;
  c->arena = mf_arena_create(arena_bytes, be->alloc, be->free);
  c->meta = mf_arena_create(256 << 10, mf_host_alloc, mf_host_free);
  if (!c->arena || !c->meta) {
    mf_ctx_destroy(c);
    return NULL;
  }
  c->record = 1;
  return c;
}

void mf_ctx_destroy(mf_ctx *c) {
  if (!c) return;
  free(c->gb);
  mf_arena_destroy(c->arena);
  mf_arena_destroy(c->meta);
  free(c->nodes);
  free(c);
}

const mf_backend *mf_ctx_backend(const mf_ctx *c) { return c->be; }
void mf_ctx_set_record(mf_ctx *c, int on) { c->record = on; }
int mf_ctx_recording(const mf_ctx *c) { return c->record; }
mf_status mf_ctx_status(const mf_ctx *c) { return c->st; }
size_t mf_ctx_arena_peak(const mf_ctx *c) { return mf_arena_peak(c->arena); }
int mf_ctx_arena_grows(const mf_ctx *c) { return mf_arena_grows(c->arena); }
int mf_ctx_nodes(const mf_ctx *c) { return c->n; }

void mf_ctx_reset(mf_ctx *c) {
  memset(c->remat, 0, sizeof c->remat);
  c->defer = NULL;
  c->defer_rows = NULL;
  c->ngb = 0; /* the arena takes the memory back */
  c->n = 0;
  c->st = MF_OK;
  mf_arena_reset(c->arena);
  mf_arena_reset(c->meta);
}

void mf_ctx_fail(mf_ctx *c, mf_status st) {
  if (c->st == MF_OK) c->st = st;
}

const mf_node *mf_ctx_node(const mf_ctx *c, int i) { return i >= 0 && i < c->n ? &c->nodes[i] : NULL; }

void mf_ctx_set_backward_hook(mf_ctx *c, mf_backward_hook fn, void *user) {
  c->hook = fn;
  c->hook_user = user;
}

void *mf_ctx_alloc(mf_ctx *c, size_t bytes) {
  void *p = mf_arena_alloc(c->arena, bytes);
  if (!p && c->st == MF_OK)
    c->st = MF_ERR(MF_ERR_NOMEM, "step arena: out of memory allocating %zu bytes (lower "
                                 "train.micro_batch_size or train.seq_len)", bytes);
  return p;
}

mf_tensor *mf_ctx_tensor(mf_ctx *c, mf_dtype dt, int ndim, const int64_t *shape) {
  mf_tensor *t = mf_arena_alloc(c->meta, sizeof *t);
  if (!t) {
    if (c->st == MF_OK) c->st = MF_ERR(MF_ERR_NOMEM, "out of host memory for tensors");
    return NULL;
  }
  *t = mf_view(NULL, dt, ndim, shape);
  t->device = c->be->device;
  t->data = mf_ctx_alloc(c, mf_nbytes(t));
  return t->data ? t : NULL;
}

mf_tensor *mf_ctx_view(mf_ctx *c, const mf_tensor *x) {
  mf_tensor *t = mf_arena_alloc(c->meta, sizeof *t);
  if (!t) {
    if (c->st == MF_OK) c->st = MF_ERR(MF_ERR_NOMEM, "out of host memory for tensors");
    return NULL;
  }
  *t = *x;
  t->grad = NULL;
  t->is_param = 0;
  t->requires_grad = 0;
  return t; /* remat kept: a recomputed x is made again before whoever reads the view */
}

void *mf_ctx_grad_alloc(mf_ctx *c, size_t bytes) {
  for (int i = 0; i < c->ngb; i++) /* a few dozen live sizes at most: a scan is cheap */
    if (c->gb[i].free && c->gb[i].bytes == bytes) {
      c->gb[i].free = 0;
      return c->gb[i].p;
    }
  if (c->ngb == c->capgb) {
    int cap = c->capgb ? 2 * c->capgb : 64; /* grows in the first step; kept across resets */
    struct grad_blk *nb = realloc(c->gb, (size_t)cap * sizeof *nb);
    if (!nb) {
      if (c->st == MF_OK) c->st = MF_ERR(MF_ERR_NOMEM, "tape: out of memory");
      return NULL;
    }
    c->gb = nb;
    c->capgb = cap;
  }
  void *p = mf_ctx_alloc(c, bytes);
  if (p) c->gb[c->ngb++] = (struct grad_blk){p, bytes, 0};
  return p;
}

void mf_ctx_grad_release(mf_ctx *c, void *p) {
  if (!p) return;
  for (int i = c->ngb - 1; i >= 0; i--)
    if (c->gb[i].p == p) {
      c->gb[i].free = 1;
      return;
    }
}

void mf_ctx_set_recompute(mf_ctx *c, int level) { c->recompute = level; }
int mf_ctx_recompute(const mf_ctx *c) { return c->recompute; }

mf_tensor *mf_ctx_remat_tensor(mf_ctx *c, int kind, mf_dtype dt, int ndim, const int64_t *shape) {
  if (!c->record || c->recompute < kind + 1) return mf_ctx_tensor(c, dt, ndim, shape);
  mf_tensor *t = mf_arena_alloc(c->meta, sizeof *t);
  if (!t) {
    if (c->st == MF_OK) c->st = MF_ERR(MF_ERR_NOMEM, "out of host memory for tensors");
    return NULL;
  }
  *t = mf_view(NULL, dt, ndim, shape);
  t->device = c->be->device;
  struct remat_buf *r = &c->remat[kind];
  size_t bytes = mf_nbytes(t);
  if (!r->data) {
    r->data = mf_ctx_alloc(c, bytes);
    r->bytes = bytes;
    r->occupant = -1;
  }
  if (!r->data) return NULL;
  if (bytes > r->bytes) { /* larger than this step's first: stored, not shared */
    t->data = mf_ctx_alloc(c, bytes);
    return t->data ? t : NULL;
  }
  t->data = r->data;
  t->remat = -1; /* shared; mf_ctx_remat_made names its node */
  return t;
}

void mf_ctx_remat_made(mf_ctx *c, mf_tensor *t, const mf_node *nd) {
  if (!t || t->remat != -1) return;
  /* not recorded (nothing needs its gradient): no backward reads it, but it took the buffer */
  int i = nd ? (int)(nd - c->nodes) : -1;
  t->remat = 1 + i;
  for (int k = 0; k < MF_REMAT_KINDS; k++)
    if (c->remat[k].data == t->data) c->remat[k].occupant = i;
}

void mf_ctx_defer_rows(mf_ctx *c, const mf_tensor *param, void *rows) {
  c->defer = param;
  c->defer_rows = param ? rows : NULL;
}

void *mf_ctx_deferred_rows(const mf_ctx *c, const mf_tensor *param) {
  return param && c->defer == param ? c->defer_rows : NULL;
}

void mf_ctx_remat_ready(mf_ctx *c, const mf_tensor *t) {
  if (!t || t->remat <= 0) return;
  int j = t->remat - 1;
  for (int b = 0; b < MF_REMAT_KINDS; b++) {
    struct remat_buf *r = &c->remat[b];
    if (r->data != t->data || r->occupant == j) continue;
    mf_op_recompute(c, &c->nodes[j]);
    r->occupant = j;
  }
}

/* before node nd's backward: its inputs and output that live in a shared buffer are made
 * again if another node's output has taken the buffer since */
static void remat_inputs(mf_ctx *c, const mf_node *nd) {
  const mf_tensor *ts[4] = {nd->in[0], nd->in[1], nd->in[2], nd->out};
  for (int k = 0; k < 4; k++) mf_ctx_remat_ready(c, ts[k]);
}

mf_node *mf_ctx_record(mf_ctx *c, mf_op_id op) {
  if (!c->record) return NULL;
  if (c->n == c->cap) {
    /* grows during the first step only; the capacity is kept across resets */
    int cap = c->cap ? 2 * c->cap : 256;
    mf_node *nn = realloc(c->nodes, (size_t)cap * sizeof *nn);
    if (!nn) {
      if (c->st == MF_OK) c->st = MF_ERR(MF_ERR_NOMEM, "tape: out of memory");
      return NULL;
    }
    c->nodes = nn;
    c->cap = cap;
  }
  mf_node *nd = &c->nodes[c->n++];
  memset(nd, 0, sizeof *nd);
  nd->op = op;
  return nd;
}

const char *mf_op_name(mf_op_id op) {
  static const char *names[] = {
#define MF_OP(name, fields) #name,
#define MF_TP_OP MF_OP
#include "kernels/ops.def"
#undef MF_TP_OP
#undef MF_OP
  };
  return (unsigned)op < MF_OP_COUNT ? names[op] : "?";
}

mf_status mf_backward(mf_ctx *c, mf_tensor *loss_rows, float seed) {
  if (c->st != MF_OK) return c->st;
  if (!c->record) return MF_ERR(MF_ERR_INTERNAL, "mf_backward: the context did not record a tape");
  int64_t n = mf_numel(loss_rows);
  float *g = mf_ctx_alloc(c, (size_t)n * sizeof(float));
  if (!g) return c->st;
  if (c->be->device == MF_CPU) {
    for (int64_t i = 0; i < n; i++) g[i] = seed;
  } else { /* device memory: filled on the host, then copied */
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return MF_ERR(MF_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) h[i] = seed;
    c->be->to_device(g, h, (size_t)n * sizeof *h);
    free(h);
  }
  return mf_backward_seeded(c, loss_rows, g);
}

mf_status mf_backward_seeded(mf_ctx *c, mf_tensor *loss_rows, float *g) {
  if (c->st != MF_OK) return c->st;
  if (!c->record) return MF_ERR(MF_ERR_INTERNAL, "mf_backward: the context did not record a tape");
  loss_rows->grad = g;
  for (int i = c->n - 1; i >= 0; i--) {
    mf_node *nd = &c->nodes[i];
    if (nd->out->grad) { /* else nothing downstream needs it */
      remat_inputs(c, nd);
      mf_op_backward(c, nd);
      if (c->st != MF_OK) return c->st;
      /* the activation this node made has its gradient used: the buffer goes back */
      if (!nd->out->is_param) {
        mf_ctx_grad_release(c, nd->out->grad);
        nd->out->grad = NULL;
      }
    }
    if (c->hook) MF_TRY(c->hook(c->hook_user, c, i, nd));
  }
  if (c->hook) MF_TRY(c->hook(c->hook_user, c, -1, NULL));
  return MF_OK;
}
