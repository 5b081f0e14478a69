/* Scratch buffers kept between passes.
 *
 * A top-k pass allocates megabytes of scratch per thread (a block of scores,
 * a tile of formed rows, candidate buffers) and frees them at its end. Fresh
 * memory from the kernel is zeroed page by page on first touch: on a 124M
 * /svd that was 6 % of the CPU (clear_page) plus the faults themselves. So
 * freed scratch is kept here for the next pass, at most NN_SCRATCH_KEEP bytes
 * in NN_SCRATCH_SLOTS buffers (the largest kept when there is no room), and
 * handed to a request of at most the kept size and at least a quarter of it.
 * Safe from several threads at once. */
#ifndef TW_SCRATCH_H
#define TW_SCRATCH_H

#include <stddef.h>

#define NN_SCRATCH_KEEP  ((size_t)64 << 20)
#define NN_SCRATCH_SLOTS 16

/* A buffer of at least bytes, 64-byte aligned, or NULL; return it with
 * nn_scratch_put (the same bytes), never with free. */
void *nn_scratch_get(size_t bytes);

/* Gives p (from nn_scratch_get(bytes), or NULL) back: kept or freed. */
void nn_scratch_put(void *p, size_t bytes);

/* Bytes kept now (for /metrics). */
size_t nn_scratch_kept_bytes(void);

#endif
