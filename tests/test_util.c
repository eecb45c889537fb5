#include "tests/test.h"

int mf_test_checks, mf_test_failures, mf_test_skips;

double mf_test_nerr(const float *a, const double *ref, size_t n) {
  double md = 0, mr = 1e-30;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - ref[i]);
    if (!(d <= md)) md = d; /* NaN propagates as failure */
    if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
  }
  return md / mr;
}

double mf_test_nerr_f(const float *a, const float *ref, size_t n) {
  double md = 0, mr = 1e-30;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)ref[i]);
    if (!(d <= md)) md = d;
    if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
  }
  return md / mr;
}

void mf_test_fill(float *x, size_t n, float lo, float hi, uint64_t *s) {
  for (size_t i = 0; i < n; i++) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    x[i] = lo + (hi - lo) * (float)((*s >> 11) * (1.0 / 9007199254740992.0));
  }
}

int mf_test_report(const char *name) {
  printf("%s: %d checks, %d failed", name, mf_test_checks, mf_test_failures);
  if (mf_test_skips) printf(", %d skipped", mf_test_skips);
  printf("\n");
  return mf_test_failures ? 1 : 0;
}
