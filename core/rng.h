/* Seeded RNG (xoshiro256**): init, data shuffles and sampling all draw from their own
 * streams so a run is reproducible and its state can be checkpointed. */
#ifndef MF_RNG_H
#define MF_RNG_H

#include <stdint.h>

typedef struct mf_rng {
  uint64_t s[4];
} mf_rng;

/* stream separates independent uses of one seed (init, shuffle, sampling ...) */
void mf_rng_seed(mf_rng *r, uint64_t seed, uint64_t stream);
uint64_t mf_rng_u64(mf_rng *r);
float mf_rng_uniform(mf_rng *r);           /* [0, 1) with 24 bits */
double mf_rng_uniform_d(mf_rng *r);        /* [0, 1) with 53 bits */
float mf_rng_normal(mf_rng *r);            /* standard normal */
uint64_t mf_rng_below(mf_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
/* Fisher-Yates permutation of 0..n-1 into perm. */
void mf_rng_permutation(mf_rng *r, int64_t *perm, int64_t n);

#endif
