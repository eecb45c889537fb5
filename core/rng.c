#include "core/rng.h"

#include <math.h>

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void mf_rng_seed(mf_rng *r, uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
  for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mf_rng_u64(mf_rng *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return out;
}

float mf_rng_uniform(mf_rng *r) { return (float)(mf_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
double mf_rng_uniform_d(mf_rng *r) { return (double)(mf_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

float mf_rng_normal(mf_rng *r) {
  double u1 = mf_rng_uniform_d(r), u2 = mf_rng_uniform_d(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t mf_rng_below(mf_rng *r, uint64_t n) {
  uint64_t lim = -n % n; /* reject the short tail so every value is equally likely */
  for (;;) {
    uint64_t x = mf_rng_u64(r);
    if (x >= lim) return x % n;
  }
}

void mf_rng_permutation(mf_rng *r, int64_t *perm, int64_t n) {
  for (int64_t i = 0; i < n; i++) perm[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)mf_rng_below(r, (uint64_t)i + 1);
    int64_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}
