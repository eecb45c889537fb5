/* The live progress line: on a terminal one line redrawn in place (bar, step, the
 * caller's figures, ETA); otherwise (logs, CI) a plain line every ~5% of the run. */
#ifndef MF_PROGRESS_H
#define MF_PROGRESS_H

#include <stdio.h>

typedef struct mf_progress {
  FILE *out;
  int tty, enabled;
  long start, total;   /* steps */
  long last_plain;     /* last step printed in plain mode */
  double t0;           /* seconds at start */
  int drawn;           /* a live line is on screen */
} mf_progress;

double mf_now(void); /* monotonic seconds */
void mf_progress_init(mf_progress *p, FILE *out, long start_step, long total_steps, int enabled);
/* step: steps done so far; msg: "loss 3.21 | 812 tok/s" */
void mf_progress_update(mf_progress *p, long step, const char *msg);
/* A whole line (eval results, checkpoints) above the live line. */
void mf_progress_note(mf_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mf_progress_done(mf_progress *p);

#endif
