/* The MLP half of the blocks read as key-value memories (Geva et al. 2021,
 * 2022): value vectors, their tokens, the search for a token among them, the
 * SVD of c_fc and c_proj, and the sub-updates of a phrase (docs/MATH.md
 * §9-§11).
 *
 * Block b's MLP is GELU(z W_fc + b_fc) W_proj + b_proj with W_fc (d, I) and
 * W_proj (I, d), I = n_inner. Its value vectors are the rows v_i of W_proj
 * (element (i, j) = GPT2_AT(W_proj, i, j), in either stored layout): the MLP
 * output is sum_i m_i v_i + b_proj, with m_i the GELU activation of neuron i.
 *
 * Every list is an exact top-k of core/nn/topk.h (double scores of the float
 * values, ties lower index first); every function returns TW_OK or a
 * base/status.h code and leaves its result empty (safe to free) on error. */
#ifndef TW_ANA_MLP_H
#define TW_ANA_MLP_H

#include <stddef.h>
#include <stdint.h>

#include "core/ana/common.h"
#include "core/nn/forward.h"
#include "core/nn/topk.h"

/* Block b's value vectors copied into one contiguous (I, d) float matrix
 * (row i = v_i), then their norms ||v_i|| (I doubles, in double), cached
 * under "mlp-v:<b>" (4 I d + 8 I bytes, 9.4 MB for 124M). Views of an
 * acquired entry: */
typedef struct {
    const float *v;     /* (I, d) */
    const double *norm; /* (I) */
} mlp_values_view;

int mlp_acquire_values(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e);
mlp_values_view mlp_values_of(const gpt2_model *m, const blockcache_entry *e);

/* ---- §9: value vectors ---- */

typedef struct {
    int block;
    size_t n, k;
    int32_t *neurons; /* (n) */
    double *norm;     /* (n) ||v_i|| */
    topk_hit *top;    /* (n, k) top-k of v_i against E, row r for neurons[r] */
    topk_hit *bottom; /* (n, k) bottom-k (smallest scores first) */
} mlp_values_result;

/* The value vectors of `neurons` (n of them, each in [0, I); NULL: all I, in
 * order) of block `block`: norms and top/bottom-k against wte, all queries
 * in one blocked GEMM pass (topk_rows_opt). Errors: TW_EBLOCK, TW_EK (k
 * outside [1, V]), TW_ERANGE (a neuron outside [0, I)), TW_ENOMEM, and the
 * cancel codes. */
int mlp_values(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *neurons, size_t n, size_t k,
               mlp_values_result *out);
void mlp_values_result_free(mlp_values_result *r);

/* ---- §9: search ---- */

typedef struct {
    int block;
    int32_t neuron;
    double score; /* v_i . E[token] */
    double norm;  /* ||v_i|| */
    size_t rank;  /* 1-based rank of the token in v_i's own list against E (exact) */
} mlp_search_hit;

typedef struct {
    int32_t token;
    size_t k, n_neurons;  /* n_neurons: how many neurons were searched */
    mlp_search_hit *hits; /* (k), best first */
} mlp_search_result;

/* The k neurons of block `block` (or of every block, block == -1) whose
 * value vectors score E[token] highest, score_i = v_i . E[token] (exact),
 * ties lower (block, neuron) first, each with the token's exact rank among
 * its value vector's tokens (topk_rank_rows). Errors: TW_EBLOCK, TW_ETOKEN,
 * TW_EK (k outside [1, neurons searched]), TW_ENOMEM, cancel codes. */
int mlp_search(const gpt2_model *m, const ana_ctx *x, int block, int32_t token, size_t k,
               mlp_search_result *out);
void mlp_search_result_free(mlp_search_result *r);

/* ---- §10: SVD of c_fc and c_proj ---- */

typedef enum { MLP_SVD_IN = 0 /* c_fc (d, I) */, MLP_SVD_OUT = 1 /* c_proj (I, d) */ } mlp_svd_matrix;

/* "in", "out"; NULL outside the enum. */
const char *mlp_svd_matrix_name(int matrix);

/* A = W_fc (in) or W_proj (out) = U S V^T (thin, r = min(d, I) values).
 * For direction t < top, with the d-space vector x_t (in: the left S_t U_t,
 * out: the right V_t) and the neuron-space vector y_t (in: the right V_t,
 * out: the left S_t U_t), both multiplied by sign_t:
 *   tokens of the d-space side: top-k of x_t against its reference (in: LN2_b(E),
 *     out: E); sign_t = +1 if max_j x_t . M_j >= max_j (-x_t . M_j), else -1;
 *   tokens of the neuron side, through the other half of the MLP: in: top-k
 *     of y_t W_proj against E (what those neurons write); out: top-k of
 *     W_fc y_t against LN2_b(E) (what drives them);
 *   neurons: the k largest components of y_t (id = neuron, score = component).
 * left/right hold the lists of the left/right singular vector of A. */
typedef struct {
    int block, matrix;
    size_t r, top, k;
    double *s;         /* (r) descending */
    double *coverage;  /* (r) cumulative sum S / total */
    double frac99;     /* (first t with coverage > 0.99, + 1) / r; 0 if sum S = 0 */
    int *sign;         /* (top) */
    topk_hit *left;    /* (top, k) tokens of the left vector */
    topk_hit *right;   /* (top, k) tokens of the right vector */
    topk_hit *neurons; /* (top, k) the neuron-space vector's largest components */
} mlp_svd_result;

/* The factors (S, U, V in double, through the Gram matrix of the (d, I) orientation) are
 * cached under "mlp-svd-<matrix>:<b>". top in [0, r], k in [1, min(V, I)].
 * Errors: TW_EBLOCK, TW_ETOP, TW_EK, TW_EINVAL (matrix), TW_ENUMERIC (the eigensolver
 * did not converge), TW_ENOMEM, cancel codes. */
int mlp_svd(const gpt2_model *m, const ana_ctx *x, int block, int matrix, size_t top, size_t k,
            mlp_svd_result *out);
void mlp_svd_result_free(mlp_svd_result *r);

/* ---- §11: sub-updates of a phrase ---- */

typedef struct {
    int32_t neuron;
    double coef;   /* m_i, the GELU activation */
    double norm;   /* ||v_i|| */
    double weight; /* |m_i| ||v_i|| = ||m_i v_i||, the ranking key */
} mlp_update;

typedef struct {
    int block0;
    size_t n_blocks, n_tokens, top, k;
    mlp_update *updates; /* (n_blocks, n_tokens, top) heaviest first, ties lower neuron first */
    double *update_norm; /* (n_blocks, n_tokens) ||sum_i m_i v_i|| (the MLP output without b_proj) */
    double *bias_norm;   /* (n_blocks) ||b_proj|| */
    topk_hit *tokens;    /* (n_blocks, n_tokens, top, k) top-k of each listed v_i against E */
} mlp_updates_result;

/* The top `top` sub-updates m_i v_i of every position for the blocks whose
 * activations fr holds (a forward pass with keep_mlp), each with its value
 * vector's top-k tokens. top in [1, I], k in [1, V]. Errors: TW_EINVAL (fr
 * without activations, or of another model), TW_ETOP, TW_EK, TW_ENOMEM,
 * cancel codes. */
int mlp_updates(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, size_t top, size_t k,
                mlp_updates_result *out);
void mlp_updates_result_free(mlp_updates_result *r);

#endif
