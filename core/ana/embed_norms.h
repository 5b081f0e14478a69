/* Embedding norms under ln_f's gamma and beta, and the normalisation
 * statistics of the embedding matrix (docs/MATH.md §3).
 *
 * E = wte (V, d); gamma, beta = ln_f. Scores per token i:
 *   norm         ||E_i||
 *   scaled       ||gamma * E_i||
 *   bias         ||E_i|| + beta . E_i
 *   scaled_bias  ||gamma * E_i|| + beta . E_i
 * all accumulated in double. */
#ifndef TW_EMBED_NORMS_H
#define TW_EMBED_NORMS_H

#include <stddef.h>

#include "core/ana/common.h"
#include "core/nn/topk.h"

typedef enum {
    EMBED_NORM = 0,
    EMBED_SCALED = 1,
    EMBED_BIAS = 2,
    EMBED_SCALED_BIAS = 3,
    EMBED_N_SCHEMES = 4
} embed_scheme;

/* "norm", "scaled", "bias", "scaled_bias"; NULL outside the enum. */
const char *embed_scheme_name(int scheme);

/* Writes the four score vectors: scores (EMBED_N_SCHEMES, V), row = scheme,
 * caller-owned. One pass over E. Returns TW_OK or TW_EINVAL. */
int embed_norm_scores(const gpt2_model *m, double *scores);

/* The same four score vectors (EMBED_N_SCHEMES, V) copied into scores
 * (caller-owned), taken from the cache entry embed_norms uses (computed on
 * first use; c may be NULL). Returns TW_OK or an ANA_* error. */
int embed_scores(const gpt2_model *m, const ana_ctx *x, double *scores);

/* Top-k and bottom-k of every scheme. All arrays are owned by the result and
 * released by embed_norms_result_free. */
typedef struct {
    size_t k;
    topk_hit *top;    /* (EMBED_N_SCHEMES, k): largest score first */
    topk_hit *bottom; /* (EMBED_N_SCHEMES, k): smallest score first
                         ("Bottom 1" of the reference is bottom[s * k + 0]) */
} embed_norms_result;

/* Fills *out for all four schemes. The score vectors are kept in the cache
 * under "embed-scores" (4 V doubles, 1.6 MB for 124M); c may be NULL.
 * k in [1, V] (else TW_EK). Returns TW_OK or an ANA_* error, leaving *out
 * empty (safe to free) on error. */
int embed_norms(const gpt2_model *m, const ana_ctx *x, size_t k, embed_norms_result *out);
void embed_norms_result_free(embed_norms_result *r);

/* Normalisation statistics. a = mean row norm of E, s = sqrt(d) / a,
 * c = mean row of E, N = LN_0(E) (gamma 1, beta 0, the model's ln_eps). For
 * X in {E, E - c, s E, s (E - c)} (rows 0..3, in that order): mean and
 * unbiased standard deviation (divide by V - 1; 0 when V == 1) over rows i of
 * the L2 distance ||X_i - N_i|| and of the cosine distance
 * 1 - X_i . N_i / (||X_i|| ||N_i||), the latter taken as 1 when either norm is
 * 0. Everything in double. */
typedef struct {
    double l2_mean, l2_std;
    double cos_mean, cos_std;
} embed_distance_stats;

typedef struct {
    double avg_norm; /* a */
    double scale;    /* s = sqrt(d) / a (inf when a == 0) */
    embed_distance_stats rows[4];
} embed_normalization_result;

/* "E", "E - c", "sE", "s(E - c)"; NULL outside 0..3. */
const char *embed_normalization_row_name(int row);

/* Fills *out (no allocation kept). Returns TW_OK, TW_EINVAL or TW_ENOMEM
 * (scratch of 8 V doubles). */
int embed_normalization(const gpt2_model *m, embed_normalization_result *out);

#endif
