#include "trainers/sample.h"

#include <math.h>
#include <stdlib.h>

int mf_sampler_init(mf_sampler *s, int V, float temperature, int top_k, float top_p, uint64_t seed) {
  s->V = V;
  s->temperature = temperature;
  s->top_k = top_k;
  s->top_p = top_p;
  mf_rng_seed(&s->rng, seed, 3);
  s->prob = malloc((size_t)V * sizeof *s->prob);
  s->idx = malloc((size_t)V * sizeof *s->idx);
  return s->prob && s->idx;
}

void mf_sampler_free(mf_sampler *s) {
  free(s->prob);
  free(s->idx);
  s->prob = NULL;
  s->idx = NULL;
}

static const float *g_sort_key;
static int by_prob_desc(const void *a, const void *b) {
  float x = g_sort_key[*(const int *)a], y = g_sort_key[*(const int *)b];
  if (x != y) return x < y ? 1 : -1;
  return *(const int *)a - *(const int *)b; /* stable: lower id first */
}

/* Moves the k largest entries of idx[0..n) (by key) to the front, in no order. */
static void partial_select(int *idx, int n, int k, const float *key) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    float pivot = key[idx[(lo + hi) / 2]];
    int i = lo, j = hi;
    while (i <= j) {
      while (key[idx[i]] > pivot) i++;
      while (key[idx[j]] < pivot) j--;
      if (i <= j) {
        int t = idx[i];
        idx[i++] = idx[j];
        idx[j--] = t;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else break;
  }
}

int mf_sample(mf_sampler *s, const float *logits) {
  int V = s->V;
  if (s->temperature <= 0.0f) {
    int best = 0;
    for (int i = 1; i < V; i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  float mx = logits[0];
  for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
  double sum = 0;
  for (int i = 0; i < V; i++) {
    s->prob[i] = expf((logits[i] - mx) / s->temperature);
    sum += s->prob[i];
    s->idx[i] = i;
  }
  int n = V;
  if (s->top_k > 0 && s->top_k < V) {
    partial_select(s->idx, V, s->top_k, s->prob);
    n = s->top_k;
  }
  if (s->top_p < 1.0f || n < V) {
    g_sort_key = s->prob; /* single-threaded use: the sampler belongs to one caller */
    qsort(s->idx, (size_t)n, sizeof *s->idx, by_prob_desc);
    double total = 0;
    for (int i = 0; i < n; i++) total += s->prob[s->idx[i]];
    if (s->top_p < 1.0f) {
      double acc = 0;
      int keep = 0;
      while (keep < n) {
        acc += s->prob[s->idx[keep++]];
        if (acc >= s->top_p * total) break;
      }
      n = keep;
      total = acc;
    }
    sum = total;
  }
  double u = mf_rng_uniform_d(&s->rng) * sum, acc = 0;
  for (int i = 0; i < n; i++) {
    acc += s->prob[s->idx[i]];
    if (u < acc) return s->idx[i];
  }
  return s->idx[n - 1];
}
