/* Trajectory statistics over many texts (docs/MATH.md §14): for every state
 * of the trajectory (docs/MATH.md §7.3) and every position t of every text
 * that has a next token, in the full d dimensions,
 *   cos_next   cos(s_t, E[x_{t+1}])
 *   cos_self   cos(s_t, E[x_t])
 *   cos_final  cos(s_t, the last state at the same position)
 *   rank_next  the 1-based rank of x_{t+1} among all V tokens by s_t . E_j
 *              (the logit lens), ties lower id first, EXACT
 *   prob_next  softmax(s_t E^T)[x_{t+1}], through a log-sum-exp over all V
 * summarised per state over every position and per position bucket
 * (first: t = 0, early: 1 <= t < 8, late: t >= 8): mean, unbiased standard
 * deviation and the 95 % confidence interval of the mean (normal
 * approximation with Student's t quantile), and for the rank the median,
 * the mean of ln(rank) and the fractions at rank 1 and within the top k.
 *
 * The logit lens is core/ana/lens.h's lens_rows, one pass of large float
 * GEMMs: the states of all texts are gathered in chunks of up to
 * TS_CHUNK_ROWS rows, each chunk multiplied by wte block by block. A rank
 * is certified, not estimated: a row whose GEMM score is beyond
 * topk_screen_error of the target's exact score (topk_dot) is decided by
 * the float score, every other row is rescored with topk_dot (docs/MATH.md
 * §2.3, §14.2). So ranks are exact and do not depend on the chunking, the
 * BLAS kernels or the thread count. The log-sum-exp uses the float GEMM
 * scores (docs/MATH.md §14.3).
 *
 * Threads: like the other analyses (core/ana/common.h) and lens_rows's.
 * Cancellation is
 * checked between forward passes and between GEMM blocks; progress (stage
 * "logit lens", units: state rows) is reported through ana_progress(x). */
#ifndef TW_TRAJ_STATS_H
#define TW_TRAJ_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/progress.h"
#include "core/ana/common.h"
#include "core/model/gpt2.h"
#include "core/nn/forward.h"

/* Positions t < TS_EARLY_END (and t > 0) are "early", the rest "late". */
#define TS_EARLY_END 8

/* State rows gathered before they are multiplied by wte. */
#define TS_CHUNK_ROWS 4096

typedef enum { TS_BUCKET_ALL, TS_BUCKET_FIRST, TS_BUCKET_EARLY, TS_BUCKET_LATE, TS_N_BUCKETS } ts_bucket;

/* The per-position values; TS_LOG_RANK is ln(rank_next). */
typedef enum { TS_COS_NEXT, TS_COS_SELF, TS_COS_FINAL, TS_LOG_RANK, TS_PROB_NEXT, TS_N_STATS } ts_stat;

/* The bucket of position t. */
static inline ts_bucket ts_bucket_of(size_t t)
{
    return t == 0 ? TS_BUCKET_FIRST : t < TS_EARLY_END ? TS_BUCKET_EARLY : TS_BUCKET_LATE;
}

/* The name of trajectory state s (docs/MATH.md §7.3): "embedding",
 * "embedding+position", "embedding+position, ln_f", then "block l" for
 * s = 3 + l; into out (at least 32 bytes). */
void ts_state_name(size_t s, char *out, size_t outlen);

/* "all", "first", "early", "late". */
const char *ts_bucket_name(ts_bucket b);
/* "cos_next", "cos_self", "cos_final", "rank_next", "prob_next". */
const char *ts_stat_name(ts_stat s);

/* A sample summary. n values; std divides by n - 1; ci = mean -/+
 * t_{0.975, n-1} std / sqrt(n). NaN where undefined: mean when n = 0, std
 * and ci when n < 2. */
typedef struct {
    size_t n;
    double mean, std, ci_low, ci_high;
} ts_summary;

/* One state and bucket. stat[TS_LOG_RANK] summarises ln(rank); the rank's
 * median (the mean of the two middle ranks when n is even) and the
 * fractions of positions with rank 1 and rank <= k are beside it (NaN when
 * n = 0). */
typedef struct {
    ts_summary stat[TS_N_STATS];
    double rank_median, top1, topk;
} ts_cell;

/* One text as token ids. */
typedef struct {
    const int32_t *ids;
    size_t n;
} ts_text;

typedef struct {
    size_t n_states; /* L + 3, in trajectory order */
    size_t k;
    size_t n_texts;         /* texts with at least one position (2 tokens or more) */
    size_t n_texts_skipped; /* texts of one token: no next token */
    size_t n_tokens;        /* tokens of the n_texts texts */
    size_t n_positions;     /* positions with a next token: sum of (n - 1) */
    ts_cell *cells;         /* (n_states, TS_N_BUCKETS): cells[s * TS_N_BUCKETS + b] */
    /* the values behind the summaries, position p = 0 .. n_positions - 1 in
     * text order (the positions of text 0, then text 1, ...) */
    int32_t *t;     /* (n_positions) the place of each position in its text */
    int32_t *rank;  /* (n_states, n_positions) rank_next, 1-based */
    double *values; /* (TS_N_STATS, n_states, n_positions) */
} traj_stats_result;

/* The value of statistic st for state s at position p. */
static inline double ts_value(const traj_stats_result *r, ts_stat st, size_t s, size_t p)
{
    return r->values[((size_t)st * r->n_states + s) * r->n_positions + p];
}

/* Computes the statistics of the texts (each 1..n_ctx token ids in [0, V))
 * with the forward pass in GELU form `gelu`. Returns TW_OK with *out filled
 * (traj_stats_result_free), or TW_EINVAL, TW_EK (k outside 1..V),
 * TW_ELENGTH / TW_ETOKEN (a text the forward pass refuses), TW_ENOMEM,
 * TW_ECANCELED, TW_ETIMEDOUT; *out is empty on failure. */
int traj_stats(const gpt2_model *m, const ana_ctx *x, const ts_text *texts, size_t n_texts, size_t k,
               gpt2_gelu gelu, traj_stats_result *out);

void traj_stats_result_free(traj_stats_result *r);

/* Student's t distribution with nu > 0 degrees of freedom: the CDF at x,
 * and the quantile of p in (0, 1) (by bisection of the CDF, to about 1e-12
 * relative). */
double ts_student_t_cdf(double x, double nu);
double ts_student_t_quantile(double p, double nu);

/* The summary of v[0..n) (order matters only to the last bits). */
ts_summary ts_summarise(const double *v, size_t n);

#endif
