/* A tiny test harness: checks count failures and print where; main returns the count.
 * Each test program prints "<name>: N checks, M failed[, K skipped]" at the end. */
#ifndef MF_TEST_H
#define MF_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int mf_test_checks, mf_test_failures, mf_test_skips;

#define CHECK(cond)                                                          \
  do {                                                                       \
    mf_test_checks++;                                                        \
    if (!(cond)) {                                                           \
      mf_test_failures++;                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                        \
  } while (0)

#define CHECKF(cond, ...)                                                    \
  do {                                                                       \
    mf_test_checks++;                                                        \
    if (!(cond)) {                                                           \
      mf_test_failures++;                                                    \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                          \
      fputc('\n', stderr);                                                   \
    }                                                                        \
  } while (0)

#define SKIP(...)                                     \
  do {                                                \
    mf_test_skips++;                                  \
    fprintf(stderr, "skipped: " __VA_ARGS__);         \
    fputc('\n', stderr);                              \
  } while (0)

/* Normalised error: max|a-b| / max(max|b|, tiny). */
double mf_test_nerr(const float *a, const double *ref, size_t n);
double mf_test_nerr_f(const float *a, const float *ref, size_t n);
/* Deterministic uniform in [lo, hi). */
void mf_test_fill(float *x, size_t n, float lo, float hi, uint64_t *state);
/* Prints the summary; returns the exit code (0 when nothing failed). */
int mf_test_report(const char *name);

#endif
