/* The decomposition self-check (docs/MATH.md §13): each head's attention
 * rebuilt from the paper's per-head factors W_qk,h = Wq_h Wk_h^T / sqrt(dh),
 * W_vo,h = Wv_h Wo_h and the bias terms of §6.2, in double, compared with the
 * forward pass (float32, the standard kernels); then b_k replaced by a random
 * vector, to show that the pattern does not change.
 *
 * For block l, z = LN1_l(x_l) (n, d) from the forward pass's residual stream:
 *   standard (float):  Q, K, V = z W + b (matmul_forward), scores
 *                      Q_h K_h^T / sqrt(dh) (one sgemm), the forward's kept
 *                      patterns A, head outputs O_h W_o,h with O_h from
 *                      attention_forward, total c_proj(O) + b_o;
 *   factored (double): S = z W_qk,h z^T + (z a_h 1^T + 1 (z c_h)^T + bq.bk) / sqrt(dh),
 *                      a_h = Wq_h bk_h, c_h = Wk_h bq_h; A' = causal softmax(S);
 *                      O'_h = A' (z W_vo,h) + (A' 1)(bv_h Wo_h); total sum_h O'_h + b_o.
 * Differences over the causal entries u <= t: max |std - factored| and that
 * divided by max |factored|. */
#ifndef TW_ANA_SELFCHECK_H
#define TW_ANA_SELFCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "core/ana/common.h"
#include "core/nn/forward.h"

typedef struct {
    double max_abs, max_rel;
} selfcheck_diff;

typedef struct {
    selfcheck_diff scores, patterns, outputs;
    /* b_k replaced by a random vector r of the same norm (unit norm when
     * b_k = 0), seeded per block and head: */
    double bk_norm;          /* ||r|| */
    double bk_pattern_diff;  /* max |A(r) - A| of the float patterns (standard kernels) vs the forward's */
    double bk_pattern_exact; /* the same for the double factored patterns */
    double bk_score_shift;   /* max |S(r) - S| (double): the scores do change ... */
    double bk_shift_spread;  /* ... by one constant per query: max_t (max_u - min_u) of the shift */
} selfcheck_head;

typedef struct {
    int block0;
    size_t n_blocks, n_head, n_tokens;
    uint64_t seed;
    selfcheck_head *heads; /* (n_blocks, n_head) */
    selfcheck_diff *total; /* (n_blocks) the attention output sum_h O_h W_o,h + b_o */
} selfcheck_result;

/* The blocks whose patterns fr holds (att kept for all heads of one block or
 * all blocks). Errors: TW_EINVAL (fr without patterns of every head, or of
 * another model), TW_ENOMEM, cancel codes. */
int selfcheck(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, uint64_t seed,
              selfcheck_result *out);
void selfcheck_result_free(selfcheck_result *r);

#endif
