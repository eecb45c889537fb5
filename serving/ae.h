/* A small event loop in the style of redis's ae.c: epoll, an array of file events indexed
 * by fd, one periodic timer, and a hook that runs before every sleep. Single-threaded:
 * only the loop thread calls these (other threads wake it through an eventfd the owner
 * registers like any other fd). Level-triggered, so a handler may read only part of
 * what is there and be called again. */
#ifndef MF_SERVING_AE_H
#define MF_SERVING_AE_H

#define MF_AE_READ 1
#define MF_AE_WRITE 2
#define MF_AE_HUP 4 /* peer closed or error: reported to whichever handler is set */

typedef struct mf_ae mf_ae;
typedef void mf_ae_file_proc(mf_ae *ae, int fd, void *data, int mask);
typedef void mf_ae_proc(mf_ae *ae, void *data);

/* setsize: fds are < setsize (the owner refuses connections beyond it). NULL on failure. */
mf_ae *mf_ae_create(int setsize);
void mf_ae_destroy(mf_ae *ae);
int mf_ae_setsize(const mf_ae *ae);
/* Adds mask to the fd's interest (one handler per fd for both directions); -1 on error. */
int mf_ae_add(mf_ae *ae, int fd, int mask, mf_ae_file_proc *proc, void *data);
/* Removes mask from the interest; with nothing left the fd leaves the loop. */
void mf_ae_del(mf_ae *ae, int fd, int mask);
int mf_ae_mask(const mf_ae *ae, int fd);
/* The periodic timer (every `ms`, also run when a sleep times out) and the before-sleep
 * hook; either may be NULL. */
void mf_ae_set_timer(mf_ae *ae, int ms, mf_ae_proc *proc, void *data);
void mf_ae_set_before_sleep(mf_ae *ae, mf_ae_proc *proc, void *data);
/* Runs until mf_ae_stop (from a handler or hook). */
void mf_ae_run(mf_ae *ae);
void mf_ae_stop(mf_ae *ae);
/* Monotonic seconds. */
double mf_ae_now(void);

#endif
