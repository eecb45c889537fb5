/* The step arena: a bump allocator for activations and their gradients, reset after
 * every micro-step. It grows in the first steps (extra blocks, each as large as all before
 * it while the allocator gives that much, else smaller); at the next reset the blocks are
 * merged into one of the high-water size, so the steady state never allocates. */
#ifndef MF_ARENA_H
#define MF_ARENA_H

#include <stddef.h>

typedef struct mf_arena mf_arena;

/* alloc/free: the device's allocator (64-byte aligned). */
mf_arena *mf_arena_create(size_t initial_bytes, void *(*alloc)(size_t), void (*release)(void *));
void mf_arena_destroy(mf_arena *a);
void *mf_arena_alloc(mf_arena *a, size_t bytes); /* 64-byte aligned; NULL when out of memory */
void mf_arena_reset(mf_arena *a);
size_t mf_arena_used(const mf_arena *a);
size_t mf_arena_peak(const mf_arena *a);    /* high-water mark since creation */
size_t mf_arena_capacity(const mf_arena *a);
int mf_arena_grows(const mf_arena *a);      /* times an extra block was allocated */

#endif
