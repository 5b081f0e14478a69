/* Layer normalisation as a projection onto a sphere, measured on the real
 * weights, and the keys it leaves selectable (docs/MATH.md §12).
 *
 * Every LayerNorm of the model, in order h.0.ln_1, h.0.ln_2, ..., h.{L-1}.ln_2,
 * ln_f, is measured on the states that reach it: without a phrase the rows
 * of wte (all V of them) for every LayerNorm; with a phrase (a forward pass
 * with keep_mid) the actual states: x_l for h.l.ln_1, the state between
 * attention and MLP for h.l.ln_2, x_L for ln_f. */
#ifndef TW_ANA_LNGEOM_H
#define TW_ANA_LNGEOM_H

#include <stddef.h>
#include <stdint.h>

#include "core/ana/common.h"
#include "core/nn/forward.h"
#include "core/nn/topk.h"

enum { LNG_LN1 = 0, LNG_LN2 = 1, LNG_LNF = 2 };

typedef struct {
    int block; /* -1 for ln_f */
    int kind;  /* LNG_* */
    size_t rows;
    double mean_mean, mean_abs;           /* over rows: mu(x) and |mu(x)| before centring */
    double after_mean_abs, after_max_abs; /* |mean| of the normalised float rows LN_0(x): 0 up to rounding */
    double radius_mean, radius_std;       /* sqrt(d) sqrt(var / (var + eps)), std unbiased */
    int gmax_index, gmin_index;           /* largest and smallest |gamma_i| (lower index on ties) */
    double gmax, gmin;                    /* gamma at those indices (signed) */
    double beta_norm;                     /* ||beta|| (0 without biases) */
    double change_mean, change_std;       /* ||gamma n + beta - n|| / ||n||, n = the normalised row */
} lngeom_layer;

/* The lists of a layer: top-k (largest component first) and bottom-k (most
 * negative first) of the basis vectors e_gmax and e_gmin against wte, and the
 * top-k of beta against wte. */
enum {
    LNG_GMAX_TOP = 0,
    LNG_GMAX_BOTTOM = 1,
    LNG_GMIN_TOP = 2,
    LNG_GMIN_BOTTOM = 3,
    LNG_BETA = 4,
    LNG_N_LISTS = 5
};

/* "gamma_max_top", ...; NULL outside the enum. */
const char *lngeom_list_name(int list);

typedef struct {
    size_t n_layers, k;
    int from_phrase; /* 1: the states of a forward pass; 0: the rows of wte */
    lngeom_layer *layers;
    topk_hit *lists; /* (n_layers, LNG_N_LISTS, k) */
} lngeom_result;

/* Writes the layer's name ("h.3.ln_2", "ln_f") into buf. */
void lngeom_layer_name(const lngeom_layer *l, char *buf, size_t len);

/* fr NULL: the rows of wte; else a forward pass that kept resid_mid of every
 * block. k in [1, V]. Errors: TW_EINVAL, TW_EK, TW_ENOMEM, cancel codes. */
int lngeom_layers(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, size_t k,
                  lngeom_result *out);
void lngeom_result_free(lngeom_result *r);

/* ---- Unselectable keys (Brody, Alon, Yahav 2023) ----
 * Keys of head h of block b: K = LN_b(E) W_k,h + b_k,h (V, dh), float32 (one
 * GEMM). A key is selectable when some query makes it the unique argmax of
 * q . k. Estimated with N queries per head, the argmax exact over the float
 * keys (topk_rows_opt with k = 1, ties lower id):
 *   LNG_KEYS_RANDOM:   N unit queries uniform on the sphere of R^dh (normal
 *                      draws, normalised), the same for every head; a key is
 *                      counted selectable when it is the argmax of one of them.
 *                      At most N keys can be found: the estimate of the
 *                      unselectable fraction is >= 1 - N / V by construction.
 *   LNG_KEYS_TARGETED: N keys drawn without replacement; for each, the query
 *                      Sigma^-1 (k_j - mu) (the outward normal of the keys'
 *                      covariance ellipsoid through k_j); key j is counted
 *                      selectable when it is the argmax of its own query (a
 *                      certificate). The unselectable fraction is estimated as
 *                      the fraction of drawn keys without a certificate.
 * Both are upper bounds (in expectation, for the second) of the true fraction,
 * the keys that are not vertices of the keys' convex hull. Seeded (base/rng). */
enum { LNG_KEYS_RANDOM = 0, LNG_KEYS_TARGETED = 1 };

typedef struct {
    int block0;
    size_t n_blocks, n_head, queries;
    int method;
    uint64_t seed;
    size_t *selectable;   /* (n_blocks, n_head) keys found selectable */
    double *unselectable; /* (n_blocks, n_head) estimated unselectable fraction */
    float *q;             /* (queries, dh) the random queries (LNG_KEYS_RANDOM), else NULL */
    int32_t *drawn;       /* (queries) the drawn key ids (LNG_KEYS_TARGETED), else NULL */
} lngeom_keys_result;

/* Every head of block `block` (or of every block, block == -1). queries in
 * [1, V] (targeted) or [1, 2^20] (random). Errors: TW_EBLOCK, TW_ERANGE,
 * TW_EINVAL, TW_ENOMEM, cancel codes. */
int lngeom_keys(const gpt2_model *m, const ana_ctx *x, int block, size_t queries, int method, uint64_t seed,
                lngeom_keys_result *out);
void lngeom_keys_result_free(lngeom_keys_result *r);

/* ---- The paper's 2D sketch on real weights ----
 * Coordinates i, j of block b's ln_1 and head h: the unit circle
 * c_p = (cos t_p, sin t_p), t_p = 2 pi p / npts; its image under gamma,
 * g_p = (gamma_i cos t_p, gamma_j sin t_p); then s_p = g_p + (beta_i, beta_j);
 * then q_p = s_p W2 with W2 the 2 x 2 block of W_qk,h at rows and columns
 * (i, j): W2 = [[W(i,i), W(i,j)], [W(j,i), W(j,j)]], W = Wq_h Wk_h^T / sqrt(dh). */
typedef struct {
    int block, head, dim[2];
    size_t npts;
    double gamma[2], beta[2], w2[2][2];
    double *pts; /* (4, npts, 2): circle, gamma, gamma+beta, W_qk */
} lngeom_sketch_result;

/* The two largest-|gamma| coordinates of block b's ln_1 (largest first,
 * lower index on ties). */
void lngeom_default_dims(const gpt2_model *m, int block, int dims[2]);

/* dims distinct in [0, d), npts in [3, 4096]. Errors: TW_EBLOCK, TW_EHEAD,
 * TW_ERANGE, TW_ENOMEM. */
int lngeom_sketch(const gpt2_model *m, int block, int head, const int dims[2], size_t npts,
                  lngeom_sketch_result *out);
void lngeom_sketch_result_free(lngeom_sketch_result *r);

#endif
