/* Top-k against LN_b(E) without forming LN_b(E) (docs/MATH.md §6.3).
 *
 * LN_b(E)_j = gamma_b * n_j + beta_b, where n_j = (E_j - mean_j) / sqrt(var_j
 * + eps) does not depend on the block: LN_0(E) (V, d), cached once per model
 * under "ln0(E)". A query q against LN_b(E) is screened as the float GEMM
 * score (q * gamma_b) . LN_0(E)_j plus q . beta_b, within a proven bound of
 * the exact score topk_dot(q, LN_b(E)_j); the candidates (2k + TOPK_MARGIN
 * per list) are rescored against LN_b(E)_j formed row by row exactly as
 * layernorm_rows forms it (the same floats), and a list is certified as
 * topk_rows certifies its lists. A list that cannot be certified (near-ties)
 * is computed by topk_rows_formed against the block's LN_b(E), formed tile
 * by tile (ana_ln1_rows_open; the cached matrix when it is there). So the
 * lists and scores are those of topk_rows_opt(LN_b(E)) bit for bit, and a
 * sweep over the blocks reads one V x d matrix instead of forming one per
 * block. Queries of several blocks share one GEMM pass. */
#ifndef TW_ANA_LNSCREEN_H
#define TW_ANA_LNSCREEN_H

#include <stddef.h>

#include "core/ana/common.h"
#include "core/nn/topk.h"

/* For query i (Q + i * d, d floats) of block blocks[i]: the top-k (top + i *
 * k) and bottom-k (bottom + i * k) against LN_{blocks[i]}(E) (ln_1 of that
 * block), the lists topk_rows_opt gives against that matrix. When every
 * query is of one block whose LN_b(E) is already cached, that entry is used
 * directly. TW_OK, TW_EINVAL, TW_EBLOCK, TW_ENOMEM, TW_EBUDGET, or the
 * cancel's code. */
int ana_ln1_topk(const gpt2_model *m, const ana_ctx *x, const int *blocks, const float *Q, size_t nq,
                 size_t k, topk_hit *top, topk_hit *bottom);

#endif
