/* How faithful a low-dimensional layout is to the rows it was fitted on
 * (docs/MATH.md §15): trustworthiness and continuity (Venna and Kaski
 * 2001, 2006) with exact neighbours in both spaces, and the overlap of the
 * nearest fitted rows of new points in the full space and in the layout.
 *
 * Distances are Euclidean, computed in double from the float inputs;
 * neighbour lists and ranks order by (distance, index), so equal distances
 * go to the lower index. Every function touches only its arguments:
 * concurrent calls are safe. */
#ifndef TW_FAITH_H
#define TW_FAITH_H

#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/status.h"

/* Neighbours the figures are taken at, and the rows and seed of the sample
 * of fitted rows trustworthiness and continuity are computed on. */
#define FAITH_K           15
#define FAITH_SAMPLE_ROWS 2000
#define FAITH_SAMPLE_SEED 20230913ULL

/* Writes min(m, n) distinct row indices of [0, n) into idx, ascending: all
 * of them when m >= n, else a uniform sample drawn with base/rng.h seeded
 * with seed (a partial Fisher-Yates shuffle). Returns the count. */
size_t faith_sample(size_t n, size_t m, uint64_t seed, size_t *idx);

/* Trustworthiness T and continuity C at K neighbours of the layout Y (m, e)
 * of the rows X (m, d): with r(i, j) the rank of j among the other rows by
 * distance from i in X and rh(i, j) the same in Y, U_K(i) the K nearest of
 * i in Y that are not among its K nearest in X and V_K(i) the converse,
 *   T = 1 - 2 / (m K (2m - 3K - 1)) sum_i sum_{j in U_K(i)} (r(i, j) - K),
 *   C = 1 - 2 / (m K (2m - 3K - 1)) sum_i sum_{j in V_K(i)} (rh(i, j) - K).
 * Requires 1 <= K and 2K < m (the normalisation of Venna and Kaski). TW_OK,
 * TW_EINVAL, TW_ENOMEM, or the cancel's code (checked between row blocks). */
int faith_trust_cont(const float *X, size_t m, size_t d, const float *Y, size_t e, size_t K, double *trust,
                     double *cont, const tw_cancel *cancel);

/* The search structure of the layout side of faith_knn_overlap over 3D
 * layout points Y (n, 3), for a caller that asks many times of one layout
 * (it is read-only once made: calls may share it from any thread). NULL
 * when a coordinate is not finite, n is too small for it to pay (below 64
 * FAITH_K points), or memory runs out. Y must outlive it. */
typedef struct faith_tree faith_tree;
faith_tree *faith_tree_new(const float *Y, size_t n);
void faith_tree_free(faith_tree *t);

/* For each of the m new points (q (m, d) in the full space, qy (m, e) in the
 * layout): the fraction of its K nearest rows of X (n, d) in the full space
 * that are also among its K nearest points of Y (n, e), the layout of X, in
 * the layout, into frac (m). K <= n. tree: faith_tree_new(Y, n) made once
 * for many calls, or NULL (then the call makes its own when it pays). TW_OK,
 * TW_EINVAL, TW_ENOMEM. */
int faith_knn_overlap(const float *X, size_t n, size_t d, const float *Y, size_t e, const float *q,
                      const float *qy, size_t m, size_t K, double *frac, const faith_tree *tree);

/* faith_knn_overlap with the full-space lists given: query i's K nearest
 * rows of X (as umap_knn finds them) at ix + i * ldix (ldix >= K; a longer
 * list's first K), n the rows of X. TW_OK, TW_EINVAL, TW_ENOMEM. */
int faith_knn_overlap_given(size_t n, const float *Y, size_t e, const float *qy, size_t m, size_t K,
                            const int32_t *ix, size_t ldix, double *frac, const faith_tree *tree);

#endif
