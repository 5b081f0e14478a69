/* A parallel loop over row ranges for the few non-BLAS passes that are
 * worth splitting across the cores (layer norms of the whole vocabulary,
 * row norms): as many parts as OpenBLAS has threads (the process owner's
 * budget, core/nn/topk.h), the first run by the caller. */
#ifndef TW_PAR_H
#define TW_PAR_H

#include <stddef.h>

#include "base/cancel.h"

/* Most parts nn_parallel_rows splits into. */
#define NN_MAX_PARTS 64

/* The parts a loop is split into: the BLAS thread budget (what the process
 * owner last gave nn_blas_set_threads, else OpenBLAS's thread count),
 * 1..NN_MAX_PARTS. */
int nn_parts(void);

/* The process owner's BLAS thread budget (a server: its share per running
 * computation): OpenBLAS's thread count from now on, except while a
 * single-threaded section runs (then from its end). Use this, never
 * openblas_set_num_threads, once sections may run. */
void nn_blas_set_threads(int t);

/* A section whose threads each call BLAS with one thread (many small
 * LAPACK calls, where OpenBLAS's hand-offs cost more than they save):
 * OpenBLAS's count is 1 from begin until the last such section ends, and
 * then the budget again, whatever nn_blas_set_threads set meanwhile (so a
 * section never hands another computation more threads than its share).
 * begin returns the budget now (the threads the section may use; check
 * nn_parts again between items to shrink when the budget does). */
int nn_blas_single_begin(void);
void nn_blas_single_end(void);

/* Calls fn(ctx, lo, hi, part) for `parts` contiguous ranges [lo, hi) that
 * cover [0, n) in order (part 0 first), each in its own thread, part 0 in
 * the caller's; returns when all are done. When a thread cannot be started
 * its range runs in the caller's thread, so every range always runs once.
 * parts is clamped to 1..NN_MAX_PARTS and to n. */
void nn_parallel_rows(size_t n, int parts, void (*fn)(void *ctx, size_t lo, size_t hi, int part), void *ctx);

/* Calls tile(ctx, part, r0, nr) for the tiles [r0, r0 + nr) of b rows (the
 * last one shorter) that cover [0, n), claimed one at a time from a shared
 * counter by `parts` threads (as nn_parallel_rows starts them, part 0 the
 * caller's): on a loaded machine a thread that gets less of its core does
 * fewer tiles instead of keeping the others waiting. cancel (NULL: none)
 * is checked before each tile; a tile's non-zero return, or the cancel's,
 * ends every thread's work at its next tile. Returns 0 or the first such
 * code (by part). Each tile runs once at most, and every tile runs when
 * none fails. b >= 1. */
int nn_parallel_tiles(size_t n, size_t b, int parts, const tw_cancel *cancel,
                      int (*tile)(void *ctx, int part, size_t r0, size_t nr), void *ctx);

#endif
