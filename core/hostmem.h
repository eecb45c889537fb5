/* Host memory for the big long-lived buffers (params, grads, optimizer state, the step
 * arena): 64-byte aligned, and from 4 MiB up 2 MiB aligned and marked for transparent huge
 * pages, which cuts first-touch page faults 512-fold and TLB misses in the memory-bound
 * passes (AdamW, embeddings). Free with mf_host_free. */
#ifndef MF_HOSTMEM_H
#define MF_HOSTMEM_H

#include <stddef.h>

void *mf_host_alloc(size_t bytes); /* NULL on failure; contents undefined */
void mf_host_free(void *p);

#endif
