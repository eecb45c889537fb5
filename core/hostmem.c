#include "core/hostmem.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_MIN (4u << 20)
#define HUGE_ALIGN (2u << 20)

void *mf_host_alloc(size_t bytes) {
  void *p = NULL;
  if (!bytes) bytes = 64;
  size_t align = bytes >= HUGE_MIN ? HUGE_ALIGN : 64;
  if (posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  if (align == HUGE_ALIGN) madvise(p, bytes & ~(size_t)(HUGE_ALIGN - 1), MADV_HUGEPAGE); /* a hint only */
#endif
  return p;
}

void mf_host_free(void *p) { free(p); }
