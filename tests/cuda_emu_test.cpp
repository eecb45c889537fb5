/* Harness for emulated CUDA tests; see cuda_emu_test.h. */
#include "tests/cuda_emu_test.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace mf_emu_test {

int checks, failures, skips;

static uint64_t next(uint64_t &s) { /* xorshift64 */
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

std::vector<float> rand_floats(size_t n, float lo, float hi, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; i++)
    x[i] = lo + (hi - lo) * (float)((next(s) >> 11) * (1.0 / 9007199254740992.0));
  return x;
}

std::vector<int32_t> rand_ints(size_t n, int32_t lo, int32_t hi, uint64_t seed) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
  std::vector<int32_t> x(n);
  for (size_t i = 0; i < n; i++) x[i] = lo + (int32_t)(next(s) % (uint64_t)(hi - lo));
  return x;
}

Diff compare(const std::vector<float> &got, const std::vector<float> &want) {
  Diff d{0, 0, 0};
  double md = 0, mr = 1e-30;
  size_t n = std::min(got.size(), want.size());
  for (size_t i = 0; i < n; i++) {
    double g = got[i], w = want[i];
    if (std::isfinite(w) && !std::isfinite(g)) d.nonfinite++;
    double e = std::isfinite(g) || !std::isfinite(w) ? std::fabs(g - w) : INFINITY;
    if (g == w) e = 0; /* equal infinities */
    if (!(e <= md)) {
      md = e;
      d.worst = i;
    }
    if (std::fabs(w) > mr && std::isfinite(w)) mr = std::fabs(w);
  }
  d.nerr = md / mr;
  if (got.size() != want.size()) d.nerr = INFINITY;
  return d;
}

bool check_close(const char *what, const std::vector<float> &got, const std::vector<float> &want,
                 double tol) {
  Diff d = compare(got, want);
  bool ok = d.nerr <= tol;
  CHECKF(ok, "%s: normalised error %.3g > %.3g (worst at [%zu]: got %.9g, want %.9g; %zu non-finite)",
         what, d.nerr, tol, d.worst, d.worst < got.size() ? got[d.worst] : NAN,
         d.worst < want.size() ? want[d.worst] : NAN, d.nonfinite);
  if (getenv("MF_EMU_VERBOSE")) fprintf(stderr, "  %s: nerr %.3g (tol %.3g)\n", what, d.nerr, tol);
  return ok;
}

bool check_equal_bits(const char *what, const void *got, const void *want, size_t bytes) {
  const unsigned char *g = (const unsigned char *)got, *w = (const unsigned char *)want;
  size_t i = 0;
  while (i < bytes && g[i] == w[i]) i++;
  CHECKF(i == bytes, "%s: first differing byte at offset %zu of %zu", what, i, bytes);
  return i == bytes;
}

bool check_emu_clean(const char *what) {
  long n = mf_emu::error_count();
  CHECKF(n == 0, "%s: the emulator reported %ld problem(s); the last one:\n%s", what, n,
         mf_emu::last_report().c_str());
  mf_emu::clear_errors();
  return n == 0;
}

std::vector<uint64_t> schedule_seeds() {
  std::vector<uint64_t> v;
  if (const char *e = getenv("MF_EMU_SEEDS")) {
    for (const char *p = e; *p;) {
      char *end;
      unsigned long long s = strtoull(p, &end, 0);
      if (end == p) break;
      v.push_back(s);
      p = *end ? end + 1 : end;
    }
  }
  if (v.empty()) v = {mf_emu::seed(), mf_emu::seed() + 1};
  return v;
}

void set_schedule_seed(uint64_t s) { mf_emu::set_seed(s); }

int report(const char *name) {
  if (mf_emu::error_count() > 0) {
    failures++;
    fprintf(stderr, "%s: %ld emulator report(s) were never checked (check_emu_clean); the last:\n%s",
            name, mf_emu::error_count(), mf_emu::last_report().c_str());
    mf_emu::clear_errors();
  }
  printf("%s: %d checks, %d failed", name, checks, failures);
  if (skips) printf(", %d skipped", skips);
  printf("\n");
  return failures ? 1 : 0;
}

}  // namespace mf_emu_test
