/* Token sampling from logits: temperature, top-k, top-p (nucleus), seeded; temperature 0
 * is greedy (argmax, lowest id on ties). */
#ifndef MF_SAMPLE_H
#define MF_SAMPLE_H

#include "core/rng.h"

typedef struct mf_sampler {
  float temperature;
  int top_k;     /* 0 = all */
  float top_p;   /* 1 = off */
  mf_rng rng;
  int V;
  float *prob;   /* [V] scratch */
  int *idx;      /* [V] scratch */
} mf_sampler;

int mf_sampler_init(mf_sampler *s, int V, float temperature, int top_k, float top_p, uint64_t seed);
void mf_sampler_free(mf_sampler *s);
/* logits[V] (only the first V real entries are read) -> token id */
int mf_sample(mf_sampler *s, const float *logits);

#endif
