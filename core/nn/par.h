/* A parallel loop over row ranges for the few non-BLAS passes that are
 * worth splitting across the cores (layer norms of the whole vocabulary,
 * row norms): as many parts as OpenBLAS has threads (the process owner's
 * budget, core/nn/topk.h), the first run by the caller. */
#ifndef TW_PAR_H
#define TW_PAR_H

#include <stddef.h>

/* Most parts nn_parallel_rows splits into. */
#define NN_MAX_PARTS 64

/* The parts a loop is split into: OpenBLAS's thread count, 1..NN_MAX_PARTS. */
int nn_parts(void);

/* Calls fn(ctx, lo, hi, part) for `parts` contiguous ranges [lo, hi) that
 * cover [0, n) in order (part 0 first), each in its own thread, part 0 in
 * the caller's; returns when all are done. When a thread cannot be started
 * its range runs in the caller's thread, so every range always runs once.
 * parts is clamped to 1..NN_MAX_PARTS and to n. */
void nn_parallel_rows(size_t n, int parts, void (*fn)(void *ctx, size_t lo, size_t hi, int part), void *ctx);

#endif
