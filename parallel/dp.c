/* Bucketed gradient reduction overlapped with backward, and ZeRO-1 (parallel/dp.h). */
#include "parallel/dp.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "parallel/comm_impl.h" /* mf_comm_now */

typedef struct bucket {
  size_t lo, hi;     /* flat range */
  size_t P;          /* ZeRO: piece length (size * P >= hi - lo) */
  size_t state;      /* ZeRO: where this rank's piece sits in the shard buffers */
  int staged;        /* ZeRO: size * P != hi - lo, goes through the staging buffer */
  int pending;       /* parameters overlapping it whose gradient is not final yet */
  int tied;          /* inside the tied weight's range (mf_dp_tie_early) */
  mf_comm_req req;
} bucket;

struct mf_dp {
  mf_params *ps;
  mf_comm *comm;
  const mf_backend *be;
  size_t es;         /* bytes per gradient element: the backend's act dtype (fp32 or bf16) */
  mf_cdtype cdt;     /* the same for the communicator */
  int zero, overlap, rank, size;
  int nb;
  size_t bs;         /* bucket length, elements */
  bucket *b;         /* b[0]: the highest offsets, finished first by backward */
  int *ord;          /* the order buckets go in this step: b[ord[0]] first (mf_dp_arm) */
  int *uses;         /* per parameter: tape nodes left to visit that use it */
  int *pb0, *pb1;    /* per parameter: the buckets it overlaps, b[pb0] .. b[pb1] */
  int next;          /* next bucket to launch: b[ord[next]] */
  int done;          /* buckets waited for: b[ord[0]] .. b[ord[done - 1]] */
  int armed;
  /* gradient buffers hold the act dtype: typed float *, offset with at() */
  float *recv;       /* plain: where buckets are reduced to (out of place: MPI's non-blocking
                        in-place all-reduce runs at half speed); AdamW and the norm read it */
  float *shard;      /* ZeRO: reduced gradients of this rank's pieces */
  float *stage;      /* ZeRO: size * P of the staged bucket (4 bytes each: gradients or fp32 params) */
  size_t stage_n;
  mf_adamw_range *ranges;
  int nranges;
  /* mf_dp_tie_early: the tied weight (parameter index, -1: none), the embedding node that
   * defers its rows this step (-1: none), and the rows: this rank's [B*T, C] (act) and
   * token ids [B*T], then every rank's, all-gathered after the buckets */
  int tie, tie_node, tie_B, tie_T, tie_C;
  int tie_v0, tie_nv;    /* the vocabulary rows the weight holds (tensor parallel: a slice) */
  size_t tie_lo, tie_hi; /* its flat range: buckets are cut at both ends */
  int64_t tie_max;   /* the most rows (B*T*ranks) a step ties early */
  size_t tie_cap;    /* B*T the buffers hold */
  void *rows, *rows_all;
  int32_t *ids, *ids_all;
  long tie_steps;
  double exposed_s, hook_s;
  long steps;
  /* progress thread: pokes MPI every poll_us while buckets are in flight, so they move
   * during long backward kernels too, not only between nodes; it sleeps otherwise */
  pthread_t thr;
  int thr_on, busy, quit;
  long poll_us;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

static void *progress_main(void *arg) {
  mf_dp *d = arg;
  struct timespec ts = {0, d->poll_us * 1000};
  pthread_mutex_lock(&d->mu);
  for (;;) {
    while (!d->busy && !d->quit) pthread_cond_wait(&d->cv, &d->mu);
    if (d->quit) break;
    pthread_mutex_unlock(&d->mu);
    mf_comm_progress(d->comm); /* failures surface in the main thread's tests */
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&d->mu);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

static void set_busy(mf_dp *d, int busy) {
  if (!d->thr_on || d->busy == busy) return; /* d->busy changes only here, on this thread */
  pthread_mutex_lock(&d->mu);
  d->busy = busy;
  pthread_cond_signal(&d->cv);
  pthread_mutex_unlock(&d->mu);
}

void mf_dp_stats(const mf_dp *d, double *exposed_s, double *hook_s, long *steps) {
  *exposed_s = d->exposed_s;
  *hook_s = d->hook_s;
  *steps = d->steps;
}

int mf_dp_zero(const mf_dp *d) { return d->zero; }
int mf_dp_buckets(const mf_dp *d) { return d->nb; }
const float *mf_dp_reduced_grads(const mf_dp *d) { return d->zero ? d->shard : d->recv; }

int mf_dp_ranges(const mf_dp *d, const mf_adamw_range **r) {
  *r = d->ranges;
  return d->nranges;
}

/* element i of a gradient buffer */
static float *at(const mf_dp *d, float *base, size_t i) { return (float *)((char *)base + i * d->es); }


/* pb0, pb1 from the buckets: a parameter lies in one run of neighbouring buckets (none for
 * an empty one: pb0 > pb1) */
static void map_params(mf_dp *d) {
  for (int i = 0; i < d->ps->n; i++) {
    size_t a = d->ps->p[i].offset, e = a + (size_t)mf_numel(&d->ps->p[i].t);
    d->pb0[i] = d->nb;
    d->pb1[i] = -1;
    for (int k = 0; k < d->nb; k++)
      if (d->b[k].lo < e && a < d->b[k].hi) {
        if (k < d->pb0[i]) d->pb0[i] = k;
        d->pb1[i] = k;
      }
  }
}

static int param_index(const mf_dp *d, const mf_tensor *t);

/* buckets of at most bs over [lo, hi), from hi down, at d->b[*k] on */
static void cut(mf_dp *d, size_t lo, size_t hi, size_t bs, int tied, int *k) {
  for (size_t h = hi; h > lo; (*k)++) {
    size_t l = h - lo > bs ? h - bs : lo;
    d->b[*k] = (bucket){.lo = l, .hi = h, .tied = tied};
    h = l;
  }
}

static size_t round_up(size_t x, size_t q) { return (x + q - 1) / q * q; }

/* lcm(16, C) elements: whole rows of the tied weight, and 16-element aligned pieces */
static size_t row_quantum(const mf_dp *d) {
  size_t q = 16, C = (size_t)d->ps->p[d->tie].t.shape[1];
  while (q % C) q += 16;
  return q;
}

/* ZeRO-1: each bucket's pieces (P, a multiple of 16 elements, and of the tied weight's
 * rows in its buckets, so each rank's piece of it is whole rows: mf_dp_finish adds the
 * embedding's rows into it), where this rank's piece sits in the shard (state), the
 * staging buffer for buckets that do not split evenly, and the ranges AdamW updates. */
static mf_status plan_shard(mf_dp *d) {
  size_t state = 0, stage_n = 0, S = (size_t)d->size;
  for (int k = 0; k < d->nb; k++) {
    bucket *b = &d->b[k];
    size_t len = b->hi - b->lo;
    b->P = round_up((len + S - 1) / S, b->tied ? row_quantum(d) : 16);
    b->staged = b->P * S != len;
    if (b->staged && b->P * S > stage_n) stage_n = b->P * S;
    b->state = state;
    state += b->P;
  }
  /* the pieces this rank updates, by increasing offset (buckets run downwards) */
  d->nranges = 0;
  for (int k = d->nb - 1; k >= 0; k--) {
    bucket *b = &d->b[k];
    size_t lo = b->lo + (size_t)d->rank * b->P, hi = lo + b->P;
    if (hi > b->hi) hi = b->hi;
    if (lo < hi) d->ranges[d->nranges++] = (mf_adamw_range){lo, hi, b->state};
  }
  if (d->shard) d->be->free(d->shard);
  if (d->stage) d->be->free(d->stage);
  d->stage = NULL;
  d->stage_n = stage_n;
  d->shard = d->be->alloc(state * d->es + 64);
  if (stage_n) d->stage = d->be->alloc(stage_n * sizeof(float));
  if (!d->shard || (stage_n && !d->stage))
    return MF_ERR(MF_ERR_NOMEM, "out of memory for the ZeRO-1 gradient shard");
  d->be->memset0(d->shard, state * d->es);
  return MF_OK;
}

/* the buckets, from the top down (the order backward finishes the parameters in): of at
 * most bs elements, cut at both ends of the tied weight's range (mf_dp_tie_early), so its
 * buckets can go first; under ZeRO-1 its buckets split into whole rows per rank */
static mf_status layout(mf_dp *d) {
  size_t n = d->ps->numel;
  d->nb = 0;
  if (d->tie >= 0) {
    /* ZeRO-1: whole rows per rank, so a multiple of size * lcm(16, C) */
    size_t bw = d->zero ? round_up(d->bs, row_quantum(d) * (size_t)d->size) : d->bs;
    cut(d, d->tie_hi, n, d->bs, 0, &d->nb);
    cut(d, d->tie_lo, d->tie_hi, bw, 1, &d->nb);
    cut(d, 0, d->tie_lo, d->bs, 0, &d->nb);
  } else {
    cut(d, 0, n, d->bs, 0, &d->nb);
  }
  if (d->nb == 0) d->b[d->nb++] = (bucket){0}; /* no parameters: one empty bucket */
  for (int k = 0; k < d->nb; k++) d->ord[k] = k;
  map_params(d);
  if (d->zero) return plan_shard(d);
  d->ranges[0] = (mf_adamw_range){0, n, 0};
  d->nranges = 1;
  return MF_OK;
}

mf_status mf_dp_tie_early(mf_dp *d, const mf_tensor *param) {
  const char *e = getenv("MF_DP_TIE_EARLY");
  int i = param_index(d, param);
  if (!d->overlap || d->size < 2 || i < 0 || param->ndim != 2) return MF_OK;
  /* the all-gathered rows at most half the weight's reduction: an all-reduce moves about
   * 2V rows per rank, a reduce-scatter V */
  d->tie_max = e && *e ? strtoll(e, NULL, 10) : d->zero ? param->shape[0] / 2 : param->shape[0];
  if (d->tie_max <= 0) return MF_OK;
  /* cutting the tied range out adds at most two buckets (ZeRO's longer ones for it only
   * make fewer) */
  int cap = d->nb + 2;
  bucket *b = realloc(d->b, (size_t)cap * sizeof *b);
  if (b) d->b = b;
  int *o = b ? realloc(d->ord, (size_t)cap * sizeof *o) : NULL;
  if (o) d->ord = o;
  mf_adamw_range *r = o ? realloc(d->ranges, (size_t)cap * sizeof *r) : NULL;
  if (!r) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  d->ranges = r;
  d->tie = i;
  d->tie_lo = d->ps->p[i].offset;
  d->tie_hi = d->tie_lo + (size_t)mf_numel(param);
  return layout(d);
}

long mf_dp_tied_steps(const mf_dp *d) { return d->tie_steps; }

/* the tie's buffers for B*T rows of C (allocated at the first step, again only if B*T grows) */
static mf_status tie_buffers(mf_dp *d, size_t BT, int C) {
  if (BT <= d->tie_cap && C == d->tie_C) return MF_OK;
  const mf_backend *be = d->be;
  be->free(d->rows), be->free(d->rows_all), be->free(d->ids), be->free(d->ids_all);
  size_t rb = BT * (size_t)C * d->es, ib = BT * sizeof(int32_t), R = (size_t)d->size;
  d->rows = be->alloc(rb), d->rows_all = be->alloc(rb * R);
  d->ids = be->alloc(ib), d->ids_all = be->alloc(ib * R);
  d->tie_cap = d->rows && d->rows_all && d->ids && d->ids_all ? BT : 0;
  d->tie_C = C;
  if (!d->tie_cap)
    return MF_ERR(MF_ERR_NOMEM, "out of %s memory for the tied embedding's rows (%.1f MiB)", be->name,
                  (double)(rb + ib) * (R + 1) / (1 << 20));
  return MF_OK;
}

mf_status mf_dp_create(mf_dp **out, mf_params *ps, mf_comm *comm, float bucket_mb, int zero,
                       const mf_backend *be) {
  mf_dp *d = calloc(1, sizeof *d);
  if (!d) return MF_ERR(MF_ERR_NOMEM, "out of memory");
  d->ps = ps;
  d->comm = comm;
  d->be = be;
  d->es = mf_dtype_size(be->act);
  d->cdt = be->act == MF_BF16 ? MF_C_BF16 : MF_C_F32;
  d->zero = zero;
  d->rank = mf_comm_rank(comm);
  d->size = mf_comm_size(comm);
  d->overlap = bucket_mb > 0;
  size_t numel = ps->numel, quantum = 16 * (size_t)d->size;
  size_t bs = d->overlap ? (size_t)((double)bucket_mb * (1 << 20) / sizeof(float)) : numel;
  bs = (bs + quantum - 1) / quantum * quantum;
  if (bs == 0) bs = quantum;
  int cap = (int)((numel + bs - 1) / bs);
  if (cap == 0) cap = 1;
  d->bs = bs;
  d->tie = d->tie_node = -1;
  d->b = calloc((size_t)cap, sizeof *d->b);
  d->ord = calloc((size_t)cap, sizeof *d->ord);
  d->uses = calloc((size_t)ps->n, sizeof *d->uses);
  d->pb0 = calloc((size_t)ps->n, sizeof *d->pb0);
  d->pb1 = calloc((size_t)ps->n, sizeof *d->pb1);
  d->ranges = calloc((size_t)cap, sizeof *d->ranges);
  int ok = d->b && d->ord && d->uses && d->pb0 && d->pb1 && d->ranges;
  mf_status st = ok ? MF_OK : MF_ERR(MF_ERR_NOMEM, "out of memory");
  if (st == MF_OK) st = layout(d);
  if (st == MF_OK && !zero) {
    d->recv = be->alloc(numel * d->es + 64);
    if (!d->recv) st = MF_ERR(MF_ERR_NOMEM, "out of memory for the gradient reduction buffer");
  }
  if (st != MF_OK) {
    mf_dp_free(d);
    return st;
  }
  d->next = d->done = d->nb; /* nothing in flight */
  /* MF_DP_PROGRESS_US: the progress thread's period (0: no thread) */
  const char *e = getenv("MF_DP_PROGRESS_US");
  d->poll_us = e && *e ? atol(e) : 200;
  if (d->overlap && d->poll_us > 0 && d->poll_us < 1000000 && mf_comm_thread_progress(comm)) {
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->thr_on = pthread_create(&d->thr, NULL, progress_main, d) == 0;
    if (!d->thr_on) {
      pthread_mutex_destroy(&d->mu);
      pthread_cond_destroy(&d->cv);
    }
  }
  *out = d;
  return MF_OK;
}

void mf_dp_free(mf_dp *d) {
  if (!d) return;
  if (d->thr_on) {
    pthread_mutex_lock(&d->mu);
    d->quit = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thr, NULL);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
  }
  free(d->b);
  free(d->ord);
  free(d->uses);
  free(d->pb0);
  free(d->pb1);
  free(d->ranges);
  d->be->free(d->rows), d->be->free(d->rows_all), d->be->free(d->ids), d->be->free(d->ids_all);
  if (d->recv) d->be->free(d->recv);
  if (d->shard) d->be->free(d->shard);
  if (d->stage) d->be->free(d->stage);
  free(d);
}

static mf_status launch(mf_dp *d, int k) {
  bucket *b = &d->b[k];
  float *g = mf_params_compute_grad(d->ps, b->lo);
  size_t len = b->hi - b->lo;
  if (!d->zero) return mf_comm_iallreduce(d->comm, g, at(d, d->recv, b->lo), len, d->cdt, MF_RED_SUM, &b->req);
  const float *send = g;
  if (b->staged) {
    d->be->memset0(d->stage, b->P * (size_t)d->size * d->es);
    d->be->copy(d->stage, g, len * d->es);
    send = d->stage;
  }
  return mf_comm_ireduce_scatter(d->comm, send, at(d, d->shard, b->state), b->P, d->cdt, MF_RED_SUM, &b->req);
}

/* MPI moves non-blocking collectives only inside MPI calls: one test of the oldest
 * request in flight progresses them all; finished buckets complete in order */
static mf_status progress(mf_dp *d) {
  while (d->done < d->next) {
    int ok = 0;
    MF_TRY(mf_comm_test(&d->b[d->ord[d->done]].req, &ok));
    if (!ok) break;
    d->done++;
  }
  set_busy(d, d->done < d->next); /* the progress thread runs only while buckets travel */
  return MF_OK;
}

/* Launches ready buckets in this step's order (the same on every rank), at most INFLIGHT
 * at a time: a bucket is reduced while it is still in cache, and many collectives in
 * flight only take turns at the same cores. all: every gradient is final. */
#define INFLIGHT 2
static mf_status pump(mf_dp *d, int all) {
  MF_TRY(progress(d));
  while (d->next < d->nb && d->next - d->done < INFLIGHT && (all || d->b[d->ord[d->next]].pending == 0)) {
    MF_TRY(launch(d, d->ord[d->next]));
    d->next++;
    MF_TRY(progress(d));
  }
  return MF_OK;
}

static int param_index(const mf_dp *d, const mf_tensor *t) {
  const mf_param *p = (const mf_param *)((const char *)t - offsetof(mf_param, t));
  ptrdiff_t i = p - d->ps->p;
  return i >= 0 && i < d->ps->n && &d->ps->p[i].t == t ? (int)i : -1;
}

static mf_status hook(void *user, mf_ctx *c, int index, const mf_node *nd) {
  mf_dp *d = user;
  double t0 = mf_comm_now();
  if (nd) {
    for (int k = 0; k < 3; k++) {
      const mf_tensor *t = nd->in[k];
      if (!t || !t->is_param) continue;
      int i = param_index(d, t);
      if (i >= 0 && d->uses[i] > 0 && --d->uses[i] == 0)
        for (int b = d->pb0[i]; b <= d->pb1[i]; b++) d->b[b].pending--;
    }
  }
  mf_status st = pump(d, nd == NULL);
  d->hook_s += mf_comm_now() - t0;
  return st;
}

mf_status mf_dp_arm(mf_dp *d, mf_ctx *c) {
  d->next = d->done = 0;
  d->armed = 1;
  for (int k = 0; k < d->nb; k++) {
    d->b[k].pending = 0;
    d->ord[k] = k;
  }
  if (!d->overlap || !c) return MF_OK;
  memset(d->uses, 0, (size_t)d->ps->n * sizeof *d->uses);
  int n = mf_ctx_nodes(c);
  for (int j = 0; j < n; j++) {
    const mf_node *nd = mf_ctx_node(c, j);
    for (int k = 0; k < 3; k++)
      if (nd->in[k] && nd->in[k]->is_param) {
        int i = param_index(d, nd->in[k]);
        if (i >= 0) d->uses[i]++;
      }
  }
  /* the tied weight: final after its other uses (the LM head, first in backward); the
   * embedding's rows come after the reduction (mf_dp_finish). Worth it while all ranks'
   * rows (B*T*ranks of them, all-gathered) are at most half the weight's reduction
   * (tie_max): for a small batch per rank or few ranks. The same choice on every rank (B
   * and T are). */
  d->tie_node = -1;
  const mf_param *tp = d->tie >= 0 ? &d->ps->p[d->tie] : NULL;
  for (int j = 0; tp && tp->t.requires_grad && j < n; j++) {
    const mf_node *nd = mf_ctx_node(c, j);
    if ((nd->op != MF_OP_encoder && nd->op != MF_OP_tp_embed) || nd->in[1] != &tp->t) continue;
    /* the embedding, or its vocabulary-parallel form: rows [v0, v0 + nv) here */
    int B, T, C, v0 = 0, nv = (int)tp->t.shape[0];
    if (nd->op == MF_OP_encoder) {
      B = nd->p.encoder.B, T = nd->p.encoder.T, C = nd->p.encoder.C;
    } else {
      B = nd->p.tp_embed.B, T = nd->p.tp_embed.T, C = nd->p.tp_embed.C;
      v0 = nd->p.tp_embed.v0, nv = nd->p.tp_embed.nv;
    }
    if ((int64_t)B * T * d->size > d->tie_max) break;
    MF_TRY(tie_buffers(d, (size_t)B * T, C));
    d->be->copy(d->ids, nd->in[0]->data, (size_t)B * T * sizeof(int32_t));
    mf_ctx_defer_rows(c, nd->in[1], d->rows);
    d->tie_node = j;
    d->tie_B = B;
    d->tie_T = T;
    d->tie_v0 = v0;
    d->tie_nv = nv;
    d->uses[d->tie]--;
    break;
  }
  if (d->tie_node >= 0) { /* its buckets first, then the rest from the top down */
    int m = 0;
    for (int k = 0; k < d->nb; k++)
      if (d->b[k].tied) d->ord[m++] = k;
    for (int k = 0; k < d->nb; k++)
      if (!d->b[k].tied) d->ord[m++] = k;
  }
  for (int i = 0; i < d->ps->n; i++)
    if (d->uses[i] > 0)
      for (int b = d->pb0[i]; b <= d->pb1[i]; b++) d->b[b].pending++;
  mf_ctx_set_backward_hook(c, hook, d);
  return pump(d, 0); /* buckets of parameters the tape never touches */
}

mf_status mf_dp_finish(mf_dp *d, mf_ctx *c) {
  double t0 = mf_comm_now();
  if (c) mf_ctx_set_backward_hook(c, NULL, NULL);
  if (!d->armed) {
    d->next = d->done = 0;
    for (int k = 0; k < d->nb; k++) d->ord[k] = k;
  }
  d->armed = 0;
  while (d->done < d->nb) {
    MF_TRY(pump(d, 1));
    if (d->done < d->next) {
      MF_TRY(mf_comm_wait(&d->b[d->ord[d->done]].req));
      d->done++;
    }
  }
  if (d->tie_node >= 0) { /* after every bucket: collectives go in the same order on all ranks */
    if (c) mf_ctx_defer_rows(c, NULL, NULL);
    d->tie_node = -1;
    size_t BT = (size_t)d->tie_B * d->tie_T, C = (size_t)d->tie_C;
    MF_TRY(mf_comm_allgather(d->comm, d->rows, d->rows_all, BT * C, d->cdt));
    MF_TRY(mf_comm_allgather(d->comm, d->ids, d->ids_all, BT, MF_C_I32));
    /* in rank order, so every rank adds the same numbers in the same order */
    for (int r = 0; r < d->size; r++) {
      const float *rows = (const float *)((const char *)d->rows_all + r * BT * C * d->es);
      const int32_t *ids = d->ids_all + r * BT;
      if (!d->zero) {
        d->be->tp_embed_backward(at(d, d->recv, d->tie_lo), NULL, rows, ids, d->tie_B, d->tie_T, (int)C,
                                 d->tie_v0, d->tie_nv);
        continue;
      }
      /* ZeRO-1: into this rank's pieces of the weight, whole rows each (plan_shard) */
      for (int k = 0; k < d->nb; k++) {
        const bucket *b = &d->b[k];
        size_t lo = b->lo + (size_t)d->rank * b->P, hi = lo + b->P < b->hi ? lo + b->P : b->hi;
        if (!b->tied || lo >= hi) continue;
        d->be->tp_embed_backward(at(d, d->shard, b->state), NULL, rows, ids, d->tie_B, d->tie_T, (int)C,
                                 d->tie_v0 + (int)((lo - d->tie_lo) / C), (int)((hi - lo) / C));
      }
    }
    d->tie_steps++;
  }
  set_busy(d, 0);
  d->exposed_s += mf_comm_now() - t0;
  d->steps++;
  return MF_OK;
}

mf_status mf_dp_gather_params(mf_dp *d) {
  if (!d->zero) return MF_OK;
  float *p = mf_params_compute_data(d->ps);
  for (int k = 0; k < d->nb; k++) {
    bucket *b = &d->b[k];
    size_t mine = b->lo + (size_t)d->rank * b->P;
    if (!b->staged) {
      MF_TRY(mf_comm_iallgather(d->comm, p + mine, p + b->lo, b->P, MF_C_F32, &b->req));
      continue;
    }
    /* the staged bucket goes alone: finish the others first, then it, then copy out */
    for (int j = 0; j < k; j++) MF_TRY(mf_comm_wait(&d->b[j].req));
    size_t hi = mine + b->P < b->hi ? mine + b->P : b->hi;
    if (mine < hi) d->be->copy(d->stage + (size_t)d->rank * b->P, p + mine, (hi - mine) * sizeof(float));
    MF_TRY(mf_comm_allgather(d->comm, d->stage + (size_t)d->rank * b->P, d->stage, b->P, MF_C_F32));
    d->be->copy(p + b->lo, d->stage, (b->hi - b->lo) * sizeof(float));
  }
  for (int k = 0; k < d->nb; k++) {
    MF_TRY(mf_comm_wait(&d->b[k].req));
    /* bf16: the weight copy of the pieces other ranks updated (AdamW wrote this rank's) */
    const bucket *b = &d->b[k];
    size_t mine = b->lo + (size_t)d->rank * b->P, end = mine + b->P < b->hi ? mine + b->P : b->hi;
    if (mine < b->hi) {
      mf_params_refresh_copy_range(d->ps, b->lo, mine);
      mf_params_refresh_copy_range(d->ps, end, b->hi);
    } else mf_params_refresh_copy_range(d->ps, b->lo, b->hi);
  }
  return MF_OK;
}

double mf_dp_grad_sumsq(const mf_dp *d, const double *w) {
  const mf_params *ps = d->ps;
  double s = 0;
  for (int i = 0; i < ps->n; i++) {
    size_t a = ps->p[i].offset, e = a + (size_t)mf_numel(&ps->p[i].t);
    double wi = w ? w[i] : 1.0;
    if (!d->zero) {
      s += wi * d->be->sumsq(at(d, d->recv, a), e - a);
      continue;
    }
    for (int k = 0; k < d->nranges; k++) {
      const mf_adamw_range *r = &d->ranges[k];
      size_t lo = a > r->lo ? a : r->lo, hi = e < r->hi ? e : r->hi;
      if (lo < hi) s += wi * d->be->sumsq(at(d, d->shard, r->state + (lo - r->lo)), hi - lo);
    }
  }
  return s;
}
