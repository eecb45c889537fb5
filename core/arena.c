#include "core/arena.h"

#include <stdlib.h>

#define ALIGN 64
#define MAX_BLOCKS 64 /* enough: each extra block doubles the capacity while memory allows */

typedef struct block {
  char *base;
  size_t size, used;
} block;

struct mf_arena {
  block b[MAX_BLOCKS];
  int nb;                 /* blocks in use; b[nb-1] is the current one */
  size_t used, peak, cap;
  int grows;
  void *(*alloc)(size_t);
  void (*release)(void *);
};

static int add_block(mf_arena *a, size_t size) {
  if (a->nb == MAX_BLOCKS) return 0;
  char *p = a->alloc(size);
  if (!p) return 0;
  a->b[a->nb++] = (block){p, size, 0};
  a->cap += size;
  return 1;
}

mf_arena *mf_arena_create(size_t initial, void *(*alloc)(size_t), void (*release)(void *)) {
  mf_arena *a = calloc(1, sizeof *a);
  if (!a) return NULL;
  a->alloc = alloc;
  a->release = release;
  if (!add_block(a, initial < (1 << 20) ? (1 << 20) : initial)) {
    free(a);
    return NULL;
  }
  return a;
}

void mf_arena_destroy(mf_arena *a) {
  if (!a) return;
  for (int i = 0; i < a->nb; i++) a->release(a->b[i].base);
  free(a);
}

void *mf_arena_alloc(mf_arena *a, size_t bytes) {
  bytes = (bytes + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  block *cur = &a->b[a->nb - 1];
  if (cur->used + bytes > cur->size) {
    /* first the whole capacity again (doubling: a 30 GB first step takes ~10 blocks, not
     * hundreds of blocks the size of its largest tensor); near the device's limit, smaller
     * ones, so what fits still fits (the merge at the next reset returns the slack) */
    size_t want[3] = {a->cap > bytes ? a->cap : bytes, cur->size > bytes ? cur->size : bytes, bytes};
    int k = 0;
    while (k < 3 && !add_block(a, want[k])) k++;
    if (k == 3) return NULL;
    a->grows++;
    cur = &a->b[a->nb - 1];
  }
  void *p = cur->base + cur->used;
  cur->used += bytes;
  a->used += bytes;
  if (a->used > a->peak) a->peak = a->used;
  return p;
}

void mf_arena_reset(mf_arena *a) {
  if (a->nb > 1) {
    /* merge: one block that holds the high-water mark */
    for (int i = 0; i < a->nb; i++) a->release(a->b[i].base);
    a->nb = 0;
    a->cap = 0;
    if (!add_block(a, a->peak)) add_block(a, 1 << 20); /* next alloc reports the failure */
  }
  a->b[0].used = 0;
  a->used = 0;
}

size_t mf_arena_used(const mf_arena *a) { return a->used; }
size_t mf_arena_peak(const mf_arena *a) { return a->peak; }
size_t mf_arena_capacity(const mf_arena *a) { return a->cap; }
int mf_arena_grows(const mf_arena *a) { return a->grows; }
