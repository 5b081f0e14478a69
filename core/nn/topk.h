/* Top-k selection: the k best rows of a matrix for many query vectors at
 * once, and the k largest / smallest entries of a score vector.
 *
 * Definition (docs/MATH.md §2): the top-k of a vector s against a matrix M
 * are the k row indices j with the largest dot product s . M_j, in descending
 * order. Equal scores are ordered by lower row index first, so every answer is
 * deterministic. The bottom-k are the k smallest scores in ascending order,
 * equal scores again lower index first; the top-k of -s against M is the
 * bottom-k of s with the scores negated (negation is exact in floating point).
 * NaN scores rank below every number in both lists (they are only returned
 * when fewer than k other rows exist).
 *
 * Threads: topk_rows calls cblas_sgemm, which uses as many OpenBLAS threads
 * as OpenBLAS is configured for (by default every core); the selection after
 * each GEMM block runs in the calling thread. Every function here touches only
 * its arguments, so concurrent calls from several threads are safe (OpenBLAS
 * >= 0.3.7 is thread-safe; concurrent GEMMs share its thread pool). The
 * process owner decides the BLAS thread budget with openblas_set_num_threads.
 *
 * Errors: functions return 0, or a negative code from the TOPK_E* list; they
 * never abort. */
#ifndef TW_TOPK_H
#define TW_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* One selected row: its index and its score (the float dot product, or the
 * double score of topk_vec, widened to double). */
typedef struct {
    int32_t id;
    double score;
} topk_hit;

/* For each query row q_i of Q (nq, d), the top-k and bottom-k of q_i against
 * M (n, d). top and bottom are (nq, k) arrays, row i for query i, owned by the
 * caller; either may be NULL if that list is not wanted (not both).
 * Computes M_blk Q^T block by block with cblas_sgemm (a block of rows of M at
 * a time against all queries, so the queries share one pass over M) and keeps
 * a bounded heap per query and list: O(nq * n * d) flops, O(nq * n * log k)
 * worst-case selection, never a sort of n. Allocates about 8 MiB of scratch
 * (freed before returning). */
int topk_rows(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
              topk_hit *bottom);

/* The slow, obviously-correct reference of topk_rows: double dot products,
 * a full stable ordering. Same contract; scores agree with topk_rows to float
 * rounding (ids agree except between scores closer than that rounding). */
int topk_rows_naive(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
                    topk_hit *bottom);

/* Top-k (descending) and bottom-k (ascending) of the plain score vector
 * s (n), ties lower index first; top or bottom (k each) may be NULL (not
 * both). Bounded heaps, O(n log k). */
int topk_vec(const double *s, size_t n, size_t k, topk_hit *top, topk_hit *bottom);

#endif
