#include "core/progress.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

double mf_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mf_progress_init(mf_progress *p, FILE *out, long start, long total, int enabled) {
  p->out = out;
  p->tty = isatty(fileno(out));
  p->enabled = enabled;
  p->start = start;
  p->total = total;
  p->last_plain = start;
  p->t0 = mf_now();
  p->drawn = 0;
}

static void fmt_time(char *b, size_t n, double s) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(b, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else if (t >= 60) snprintf(b, n, "%ldm%02lds", t / 60, t % 60);
  else snprintf(b, n, "%lds", t);
}

void mf_progress_update(mf_progress *p, long step, const char *msg) {
  if (!p->enabled) return;
  double el = mf_now() - p->t0;
  long done = step - p->start, left = p->total - step;
  char eta[32] = "?";
  if (done > 0) fmt_time(eta, sizeof eta, el / (double)done * (double)left);
  if (p->tty) {
    enum { W = 24 };
    char bar[W + 1];
    int fill = p->total > 0 ? (int)(W * step / p->total) : W;
    for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    fprintf(p->out, "\r\033[K[%s] %ld/%ld | %s | ETA %s", bar, step, p->total, msg, eta);
    fflush(p->out);
    p->drawn = 1;
  } else {
    long every = p->total / 20 > 0 ? p->total / 20 : 1;
    if (step - p->last_plain >= every || step == p->total || step == p->start + 1) {
      fprintf(p->out, "step %ld/%ld | %s | ETA %s\n", step, p->total, msg, eta);
      fflush(p->out);
      p->last_plain = step;
    }
  }
}

void mf_progress_note(mf_progress *p, const char *fmt, ...) {
  if (p->drawn) fprintf(p->out, "\r\033[K");
  va_list ap;
  va_start(ap, fmt);
  vfprintf(p->out, fmt, ap);
  va_end(ap);
  fputc('\n', p->out);
  fflush(p->out);
  p->drawn = 0;
}

void mf_progress_done(mf_progress *p) {
  if (p->drawn) fputc('\n', p->out);
  p->drawn = 0;
  fflush(p->out);
}
