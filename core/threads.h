/* One thread count for our OpenMP kernels and OpenBLAS. */
#ifndef MF_THREADS_H
#define MF_THREADS_H

/* n <= 0: every core. Returns the count in use. */
int mf_set_threads(int n);
int mf_get_threads(void);
/* Which BLAS kernels run, for the start-up lines: "OpenBLAS SkylakeX kernels", with a note
 * when ours replaced OpenBLAS's generic choice for an unknown CPU (threads.c). */
const char *mf_blas_kernels(void);

#endif
