/* Event loop (see ae.h). The fd-indexed array makes lookup O(1) and needs no hashing;
 * epoll reports readiness and we call the fd's one handler with what fired. */
#include "serving/ae.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

typedef struct ev {
  int mask;
  mf_ae_file_proc *proc;
  void *data;
} ev;

struct mf_ae {
  int epfd, setsize, stop;
  ev *events;
  struct epoll_event *fired;
  int timer_ms;
  double next_timer;
  mf_ae_proc *timer, *before_sleep;
  void *timer_data, *before_sleep_data;
};

double mf_ae_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

mf_ae *mf_ae_create(int setsize) {
  mf_ae *ae = calloc(1, sizeof *ae);
  if (!ae) return NULL;
  ae->setsize = setsize;
  ae->events = calloc((size_t)setsize, sizeof *ae->events);
  ae->fired = calloc((size_t)setsize, sizeof *ae->fired);
  ae->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!ae->events || !ae->fired || ae->epfd < 0) {
    mf_ae_destroy(ae);
    return NULL;
  }
  return ae;
}

void mf_ae_destroy(mf_ae *ae) {
  if (!ae) return;
  if (ae->epfd >= 0) close(ae->epfd);
  free(ae->events);
  free(ae->fired);
  free(ae);
}

int mf_ae_setsize(const mf_ae *ae) { return ae->setsize; }

/* the peer's FIN (EPOLLRDHUP) only while reading: level-triggered, it would fire on and
 * on while a response to a half-closed peer is still being written */
static int to_epoll(int mask) {
  return (mask & MF_AE_READ ? EPOLLIN | EPOLLRDHUP : 0) | (mask & MF_AE_WRITE ? EPOLLOUT : 0);
}

int mf_ae_add(mf_ae *ae, int fd, int mask, mf_ae_file_proc *proc, void *data) {
  if (fd < 0 || fd >= ae->setsize) {
    errno = ERANGE;
    return -1;
  }
  ev *e = &ae->events[fd];
  int op = e->mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  struct epoll_event ee = {.events = (uint32_t)to_epoll(e->mask | mask), .data.fd = fd};
  if (epoll_ctl(ae->epfd, op, fd, &ee) < 0) return -1;
  e->mask |= mask;
  e->proc = proc;
  e->data = data;
  return 0;
}

void mf_ae_del(mf_ae *ae, int fd, int mask) {
  if (fd < 0 || fd >= ae->setsize) return;
  ev *e = &ae->events[fd];
  if (!e->mask) return;
  int left = e->mask & ~mask;
  struct epoll_event ee = {.events = (uint32_t)to_epoll(left), .data.fd = fd};
  epoll_ctl(ae->epfd, left ? EPOLL_CTL_MOD : EPOLL_CTL_DEL, fd, &ee);
  e->mask = left;
}

int mf_ae_mask(const mf_ae *ae, int fd) { return fd >= 0 && fd < ae->setsize ? ae->events[fd].mask : 0; }

void mf_ae_set_timer(mf_ae *ae, int ms, mf_ae_proc *proc, void *data) {
  ae->timer_ms = ms;
  ae->timer = proc;
  ae->timer_data = data;
  ae->next_timer = mf_ae_now() + ms / 1000.0;
}

void mf_ae_set_before_sleep(mf_ae *ae, mf_ae_proc *proc, void *data) {
  ae->before_sleep = proc;
  ae->before_sleep_data = data;
}

void mf_ae_stop(mf_ae *ae) { ae->stop = 1; }

void mf_ae_run(mf_ae *ae) {
  ae->stop = 0;
  while (!ae->stop) {
    if (ae->before_sleep) ae->before_sleep(ae, ae->before_sleep_data);
    if (ae->stop) break;
    int wait_ms = -1;
    if (ae->timer) {
      double left = ae->next_timer - mf_ae_now();
      wait_ms = left <= 0 ? 0 : (int)(left * 1000) + 1;
    }
    int n = epoll_wait(ae->epfd, ae->fired, ae->setsize, wait_ms);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++) {
      int fd = ae->fired[i].data.fd;
      uint32_t what = ae->fired[i].events;
      ev *e = &ae->events[fd];
      /* an earlier handler of this round may have closed fd (mask 0) */
      if (!e->mask) continue;
      int m = 0;
      if (what & EPOLLIN) m |= MF_AE_READ;
      if (what & EPOLLOUT) m |= MF_AE_WRITE;
      if (what & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) m |= MF_AE_HUP;
      e->proc(ae, fd, e->data, m);
    }
    if (ae->timer && mf_ae_now() >= ae->next_timer) {
      ae->next_timer = mf_ae_now() + ae->timer_ms / 1000.0;
      ae->timer(ae, ae->timer_data);
    }
  }
}
