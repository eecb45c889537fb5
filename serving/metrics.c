/* Prometheus text helpers (see metrics.h). The format: version 0.0.4 of the text
 * exposition, cumulative buckets, le labels as decimal numbers. */
#include "serving/metrics.h"

#include <string.h>

const double mf_buckets_latency[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,    5,     10,   30,    60,   120};
const int mf_buckets_latency_n = sizeof mf_buckets_latency / sizeof mf_buckets_latency[0];
const double mf_buckets_batch[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
const int mf_buckets_batch_n = sizeof mf_buckets_batch / sizeof mf_buckets_batch[0];

void mf_hist_init(mf_hist *h, const double *le, int n) {
  memset(h, 0, sizeof *h);
  h->n = n > MF_HIST_MAX ? MF_HIST_MAX : n;
  memcpy(h->le, le, (size_t)h->n * sizeof *le);
}

void mf_hist_add(mf_hist *h, double v) {
  int i = 0;
  while (i < h->n && v > h->le[i]) i++;
  h->count[i]++;
  h->total++;
  h->sum += v;
}

double mf_hist_quantile(const mf_hist *h, double q) {
  if (!h->total) return 0;
  double want = q * (double)h->total, acc = 0;
  for (int i = 0; i <= h->n; i++) {
    if (acc + (double)h->count[i] >= want && h->count[i]) {
      double lo = i ? h->le[i - 1] : 0, hi = i < h->n ? h->le[i] : h->le[h->n - 1];
      return lo + (hi - lo) * (want - acc) / (double)h->count[i];
    }
    acc += (double)h->count[i];
  }
  return h->le[h->n - 1];
}

void mf_prom_head(mf_buf *b, const char *name, const char *type, const char *help) {
  mf_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void mf_prom_value(mf_buf *b, const char *name, const char *labels, double v) {
  if (labels && *labels) mf_buf_printf(b, "%s{%s} %.17g\n", name, labels, v);
  else mf_buf_printf(b, "%s %.17g\n", name, v);
}

void mf_prom_hist(mf_buf *b, const char *name, const char *labels, const mf_hist *h) {
  const char *sep = labels && *labels ? "," : "";
  const char *lab = labels ? labels : "";
  uint64_t acc = 0;
  for (int i = 0; i < h->n; i++) {
    acc += h->count[i];
    mf_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep, h->le[i], (unsigned long long)acc);
  }
  mf_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep, (unsigned long long)h->total);
  if (*lab) {
    mf_buf_printf(b, "%s_sum{%s} %.17g\n", name, lab, h->sum);
    mf_buf_printf(b, "%s_count{%s} %llu\n", name, lab, (unsigned long long)h->total);
  } else {
    mf_buf_printf(b, "%s_sum %.17g\n", name, h->sum);
    mf_buf_printf(b, "%s_count %llu\n", name, (unsigned long long)h->total);
  }
}
