/* The logit lens (docs/MATH.md §7.4): a state read as next-token logits
 * against the token embeddings, s_j = q . E_j for every token j.
 *
 * For each of nq query rows q_i of Q (nq, d) against E (V, d), in one pass
 * of float GEMMs over E:
 *   top      the k tokens of largest s_j with their exact scores (topk_rows:
 *            exact, certified, independent of the batch);
 *   lse      log sum_j exp(s_j), so that p_j = exp(s_j - lse) is the softmax;
 *   entropy  -sum_j p_j log p_j = lse - sum_j p_j s_j (nats);
 *   rank     for each of n_targets target ids t per row (-1: none), the
 *            1-based rank 1 + #{j : s_j > s_t, or s_j == s_t and j < t}
 *            with exact scores (topk_dot): a row whose float score is
 *            beyond the GEMM's proven error bound of s_t is decided by the
 *            float score, every other one is rescored exactly, so the rank
 *            is exact whatever the batch, the blocks or the BLAS;
 *   score    s_t, exact.
 * lse and entropy come from the float GEMM scores in one vector pass per
 * row and block (docs/MATH.md §14.3): exponentials of s_j - m in float
 * against the running maximum m, partial sums of 256 terms in float, added
 * in double; they agree with an exact computation to about 1e-6 relative,
 * and may differ in the last printed digits between batches (the scores
 * and ranks never do).
 *
 * Threads: the GEMMs use OpenBLAS's threads; the scan of each block of
 * scores (the sums, the rank counts, the rows to rescore) is split over as
 * many threads of its own, which run while OpenBLAS's wait, each row one
 * thread's, so the answer does not depend on the split. Cancellation is
 * checked between GEMM blocks. */
#ifndef TW_LENS_H
#define TW_LENS_H

#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/progress.h"
#include "core/nn/topk.h"

/* Targets per row at most. */
#define LENS_MAX_TARGETS 4

typedef struct {
    size_t k;                /* tokens in each top list; 0: no lists */
    size_t n_targets;        /* 0 .. LENS_MAX_TARGETS */
    const int32_t *targets;  /* (nq, n_targets), each in [0, V) or -1 */
    float max_row_norm;      /* max_j |E_j| if known (> 0), else computed */
    const tw_cancel *cancel; /* NULL: never stops */
    /* Where the pass reports how far it is: done = progress_done0 + the
     * rows' share of the pass finished (nq when it ends). NULL: nowhere. */
    tw_progress *progress;
    long long progress_done0;
    /* Called with each row's float scores of each block, s (b) for tokens
     * j0 .. j0 + b - 1 of request row i, from the thread that scans that
     * row (rows run concurrently, a row's blocks in order), for a caller
     * that needs the same products (core/proj/layout.h layout_knn_feed).
     * NULL: none. */
    void (*on_row)(void *ctx, size_t i, const float *s, size_t b, size_t j0);
    void *row_ctx;
} lens_opts;

/* Outputs, owned by the caller; any may be NULL when not wanted. */
typedef struct {
    topk_hit *top;   /* (nq, k) */
    double *lse;     /* (nq) */
    double *entropy; /* (nq) */
    int32_t *rank;   /* (nq, n_targets); 0 where the target is -1 */
    double *score;   /* (nq, n_targets); NaN where the target is -1 */
} lens_out;

/* TW_OK, TW_EINVAL (bad sizes, k > V, a target outside [0, V)), TW_ENOMEM,
 * or the cancel's code. */
int lens_rows(const float *E, size_t V, size_t d, const float *Q, size_t nq, const lens_opts *o,
              lens_out *out);

#endif
