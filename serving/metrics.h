/* Prometheus text exposition helpers: fixed-bucket histograms and the lines for
 * counters, gauges and histograms. No locking here: each histogram belongs to one
 * thread's data or is guarded by its owner's lock. */
#ifndef MF_SERVING_METRICS_H
#define MF_SERVING_METRICS_H

#include <stdint.h>

#include "serving/api.h"

#define MF_HIST_MAX 20

typedef struct mf_hist {
  int n;                    /* buckets (upper bounds; +Inf is implicit) */
  double le[MF_HIST_MAX];
  uint64_t count[MF_HIST_MAX + 1];
  uint64_t total;
  double sum;
} mf_hist;

/* le: n increasing upper bounds (n <= MF_HIST_MAX) */
void mf_hist_init(mf_hist *h, const double *le, int n);
void mf_hist_add(mf_hist *h, double v);
/* Quantile estimate (0..1) by linear interpolation within the bucket; 0 when empty. */
double mf_hist_quantile(const mf_hist *h, double q);

/* "# HELP" and "# TYPE" lines */
void mf_prom_head(mf_buf *b, const char *name, const char *type, const char *help);
/* name{labels} value; labels may be "" */
void mf_prom_value(mf_buf *b, const char *name, const char *labels, double v);
/* name_bucket{labels,le=...}, name_sum, name_count */
void mf_prom_hist(mf_buf *b, const char *name, const char *labels, const mf_hist *h);

/* bucket bounds used across the server */
extern const double mf_buckets_latency[]; /* seconds: 1 ms .. 120 s */
extern const int mf_buckets_latency_n;
extern const double mf_buckets_batch[];   /* 1 .. 512 */
extern const int mf_buckets_batch_n;

#endif
