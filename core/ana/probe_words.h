/* Attention as an ellipsoid: word probes of one block (docs/MATH.md §4).
 *
 * For block b, En = LN_b(E) (ln_1 of block b over all V rows of E = wte),
 * and each word's token id with q = En[id]:
 *   keys, head h:    top-k of q Wqk_h against En,
 *                    Wqk_h = Wq_h Wk_h^T / sqrt(dh)
 *   values, head h:  u_h = q Wvo_h + bv_h Wo_h  (computed as (q Wv_h + bv_h) Wo_h),
 *                    top-k of LN_f(E[id] + u_h + b_o) against E; ||u_h||
 *   layer:           U = sum_h u_h, top-k of LN_f(E[id] + U + b_o) against E; ||U||
 * Each word's query vectors are computed on their own (matrix-vector
 * products), so its answer never depends on the other words of the request;
 * then the n_words * H key queries share one blocked GEMM pass over En and
 * the n_words * (H + 1) value queries one pass over E (core/nn/topk.h, whose
 * scores are exact). Tokenising words (and skipping those that are not a
 * single token) is the caller's job: this takes token ids.
 *
 * With a cache, probe_words keeps each word's answer per block (computed
 * with k at least 10, docs/MATH.md §4.7): a later probe of the same word
 * with a k up to that is read from it, the same answer bit for bit. */
#ifndef TW_PROBE_WORDS_H
#define TW_PROBE_WORDS_H

#include <stddef.h>
#include <stdint.h>

#include "core/ana/common.h"
#include "core/nn/topk.h"

/* Everything probe_words computed. All arrays live in one allocation owned by
 * the result and released by probe_words_result_free. */
typedef struct {
    int block;
    size_t n_words; /* W */
    size_t n_head;  /* H */
    size_t k;
    int32_t *ids;           /* (W) copy of the input ids */
    topk_hit *keys;         /* (W, H, k): keys + (w * H + h) * k */
    topk_hit *values;       /* (W, H, k) */
    double *value_norm;     /* (W, H): ||u_h||, the real value */
    topk_hit *layer_values; /* (W, k) */
    double *layer_norm;     /* (W): ||U|| */
    double screen_worst;    /* PROBE_CHECK only: max over queries and rows of |screening - exact| / bound */
} probe_words_result;

/* Probes block `block` with the W token ids `ids` (W may be 0: an empty
 * result). k in [1, V]. Acquires LN_b(E) from the cache c (NULL: computed
 * privately). Returns TW_OK, or TW_EBLOCK / TW_EK / TW_ETOKEN /
 * TW_EINVAL / TW_ENOMEM with *out left empty (safe to free). */
int probe_words(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                size_t k, probe_words_result *out);

/* How probe_words_opt screens the keys and the values; the answer is the
 * same bit for bit.
 *   AUTO      per part, factored when its factor is cached or worth
 *             computing (keys: W H (s d - dh) >= d^2; values:
 *             W ((H + 1) s - 2) >= d, where s = 1 for an fp32 direct pass
 *             and 1 / topk_plain_pass_speedup when the direct pass would
 *             screen on a faster unit, core/nn/topk.h), else direct (what
 *             probe_words does)
 *   DIRECT    every query (q Wqk_h against LN_b(E); LN_f(E_id + u_h + b_o)
 *             against E) screened over all d coordinates
 *   FACTORED  keys: K = LN_b(E) Wk (V, d) computed once per block and cached
 *             ("keys(En):<b>", 4 V d bytes), each query qa_h (dh) against
 *             K_h (docs/MATH.md §4.5); values: G = E diag(gamma_f) Wo^T
 *             (V, d) and three V-vectors cached ("vals(E):<b>"), each value
 *             query screened with dh multiply-adds per row plus one d-long
 *             product per word (§4.6); the candidates rescored exactly and
 *             certified (core/nn/topk.h). */
enum { PROBE_AUTO = 0, PROBE_DIRECT = 1, PROBE_FACTORED = 2, PROBE_CHECK = 3 };
/* PROBE_CHECK (for tests): FACTORED, and the factored screening score of
 * every query and row compared with the exact score; the largest ratio of
 * the difference to the query's bound goes to screen_worst (the bounds hold
 * when it is at most 1). Costs an exact scan of every row per query. */

/* probe_words with the choice of screening (method, above). */
int probe_words_opt(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                    size_t k, int method, probe_words_result *out);

void probe_words_result_free(probe_words_result *r);

#endif
