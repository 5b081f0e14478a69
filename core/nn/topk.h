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
 * Exactness: every score is the exact dot product of the float inputs,
 * computed in double in one fixed order (topk_dot), so a query's list and
 * scores never depend on the other queries of the batch, the block sizes,
 * the thread count or the BLAS kernels. topk_rows screens with a float GEMM,
 * keeping 2k + TOPK_MARGIN candidates per list, rescores the candidates
 * exactly, and certifies the result: a row outside the candidates could
 * only enter the list if its float score were off by more than the proven
 * error bound of the GEMM (gamma_{d+1} |q| max_j |M_j|); when that cannot be
 * ruled out (near-ties), that one list is recomputed by an exact scan of
 * every row. So topk_rows gives the same ids and scores as
 * topk_rows_naive, bit for bit, always (docs/MATH.md §2). A pass of at least
 * 64 queries without on_block screens with bf16 tile products instead when
 * the CPU has them (core/nn/amx.h; docs/MATH.md §2.6), with their wider
 * bound and 64 more candidates per list, or 16-bit integer products on
 * AVX512-VNNI when there is no tile unit (core/nn/vnni.h; docs/MATH.md §18): the same
 * lists and scores.
 *
 * Threads: the process owner decides the budget with openblas_set_num_threads
 * (by default every core). A large pass without on_block is shared among
 * that many threads (core/nn/par.h), each with a contiguous share of M's
 * rows, its own scores and candidates, calling cblas_sgemm with one BLAS
 * thread (OpenBLAS's count is set to 1 for the pass and put back after) and
 * scanning each block it computed; the candidates are merged afterwards, so
 * the lists never depend on the split. A small pass, or one with on_block,
 * calls cblas_sgemm with OpenBLAS's own threads and scans in the calling
 * thread. The certification is shared by query. Every function here touches
 * only its arguments, so concurrent calls from several threads are safe
 * (OpenBLAS >= 0.3.7 is thread-safe; concurrent GEMMs share its thread pool).
 *
 * Errors: functions return TW_OK or a base/status.h code (TW_EINVAL,
 * TW_ENOMEM, and TW_ECANCELED / TW_ETIMEDOUT from topk_rows_opt's cancel);
 * they never abort. */
#ifndef TW_TOPK_H
#define TW_TOPK_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/status.h"

/* Candidates kept per list beyond 2k while screening. */
#define TOPK_MARGIN 8

/* One selected row: its index and its score (the exact dot product in
 * double, or the score given to topk_vec). */
typedef struct {
    int32_t id;
    double score;
} topk_hit;

/* For each query row q_i of Q (nq, d), the top-k and bottom-k of q_i against
 * M (n, d). top and bottom are (nq, k) arrays, row i for query i, owned by the
 * caller; either may be NULL if that list is not wanted (not both).
 * Computes M_blk Q^T block by block with cblas_sgemm (a block of rows of M at
 * a time against all queries, so the queries share one pass over M) and keeps
 * the best 2k + TOPK_MARGIN candidates per query and list in a buffer of
 * twice that, compacted by a selection when full: O(nq * n * d) flops,
 * O(nq * n * k) worst-case selection, never a sort of n. Allocates about
 * 8 MiB of scratch per thread (freed before returning). */
int topk_rows(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
              topk_hit *bottom);

/* Options of topk_rows_opt; a zeroed struct (or NULL) means defaults. */
typedef struct {
    float max_row_norm;      /* max_j |M_j| when the caller knows it (> 0); else computed */
    const tw_cancel *cancel; /* checked between GEMM blocks; NULL: never stops */
    /* Called with every block of float GEMM scores: S (nq, bj), row i the
     * scores of query i against rows j0 .. j0 + bj of M. Lets a caller
     * compute more from the same pass (the logit lens' log-sum-exp); a
     * non-zero return stops the pass with that code. NULL: none. */
    int (*on_block)(void *ctx, const float *S, size_t nq, size_t j0, size_t bj);
    void *ctx;
} topk_opts;

/* A matrix M (n, d) whose rows are stored or formed on demand (LN_b(E),
 * core/ana/common.h, is formed tile by tile instead of being kept whole).
 *   rows          (n, d) the stored rows, or NULL: rows are formed by form
 *   form          writes rows j0 .. j0 + nr - 1 into out (nr, d), row j
 *                 the same floats whichever range it is formed in, and
 *                 returns the largest of their norms (the square root of
 *                 a double sum of the squares of the floats written, in
 *                 any order; NaN when a row holds NaN); thread-safe
 *   max_row_norm  max_j |M_j| when known (> 0), else 0: then measured on
 *                 the rows as a pass forms them (the bound is needed only
 *                 at certification, after the pass). */
typedef struct {
    size_t n, d;
    const float *rows;
    double (*form)(const void *ctx, size_t j0, size_t nr, float *out);
    const void *ctx;
    float max_row_norm;
} topk_former;

/* topk_rows_opt against the rows of f: with stored rows, topk_rows_opt
 * itself; else every GEMM tile's rows formed into per-thread scratch
 * (about 8 MiB) just before its GEMM, the candidates rescored on rows
 * formed one at a time, so the matrix is never held whole. The same lists
 * and scores as topk_rows_naive on the formed matrix, bit for bit.
 * opts->max_row_norm is not used (f's is). Errors as topk_rows_opt. */
int topk_rows_formed(const topk_former *f, const float *Q, size_t nq, size_t k, topk_hit *top,
                     topk_hit *bottom, const topk_opts *opts);

/* How many times cheaper a plain pass of nq queries (topk_rows,
 * topk_rows_opt or topk_rows_formed with a list wanted and no on_block)
 * makes its multiply-adds here than an fp32 sgemm: TOPK_AMX_SPEEDUP when
 * it screens on the tile unit (core/nn/amx.h), TOPK_VNNI_SPEEDUP or
 * TOPK_AVX_VNNI_SPEEDUP on the VNNI unit (core/nn/vnni.h), else 1. A caller choosing between such a
 * pass and a factored one weighs it (core/ana/probe_words.c). */
double topk_plain_pass_speedup(size_t nq);

/* "amx", "vnni" (AVX512-VNNI), "avxvnni" (its 256-bit form) or "fp32":
 * the unit a plain pass of many queries screens on here (for /metrics and
 * the log). */
const char *topk_unit_name(void);

/* The bf16 tile products against the fp32 sgemm, per core, on the same
 * rows: about 635 against 160 GFLOP/s on a 2-core Sapphire Rapids
 * (bench/xl.py's direct /probe beside tools/twd-sgemm), kept low. */
#define TOPK_AMX_SPEEDUP 3.5

/* The 16-bit integer products against the fp32 sgemm, per core: about
 * 2.0 times on the same machine (tools/twd-sgemm --units: 307 against 154
 * GFLOP/s at depth 1600, 290 against 148 at 768), kept low. */
#define TOPK_VNNI_SPEEDUP 1.6

/* The same on the 256-bit AVX-VNNI form, against an AVX2 sgemm: 143
 * against 111 GFLOP/s at depth 768, 148 against 113 at 1600 (the same
 * machine with OPENBLAS_CORETYPE=Haswell and TWD_VNNI=256). */
#define TOPK_AVX_VNNI_SPEEDUP 1.25

/* topk_rows with options. With on_block set, top and bottom may both be
 * NULL (a pass for the callback alone). */
int topk_rows_opt(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
                  topk_hit *bottom, const topk_opts *opts);

/* Top-k screened by a cheaper, factored score and certified against the
 * exact one. The exact problem is that of topk_rows: the scores
 * topk_dot(Q_i, M_j) of query i (Q + i * ldq, d floats) against the rows of
 * M (n, d, contiguous). The screening scores are float GEMM products of P_i
 * (P + i * ldp, ds floats) with S_j (S + j * lds, ds floats), which the
 * caller guarantees to be within err[i] of the exact score of every row j
 * (|screen_ij - topk_dot(Q_i, M_j)| <= err[i]). Screening keeps 2k +
 * TOPK_MARGIN candidates per list, rescoring them exactly and certifying as
 * topk_rows does, so the lists and scores are those of topk_rows_naive bit
 * for bit, whatever S and P are (a list that cannot be certified is computed
 * by an exact scan of M). err NULL means the plain problem: S must be M and
 * ds = d, and the bound is topk_rows's own (opts->max_row_norm applies).
 * List i goes to top + i * ldo and bottom + i * ldo (ldo >= k), either NULL
 * when not wanted (not both). opts->on_block, when set, is called with each
 * block of screening scores (P_i . S_j). The exact rows may be formed
 * (M NULL, Mf set: each candidate's row formed when it is rescored).
 * Errors as topk_rows_opt. */
typedef struct {
    const float *M;        /* (n, d) the exact rows, or NULL: formed by Mf */
    const topk_former *Mf; /* the exact rows when M is NULL (Mf->n = n, Mf->d = d) */
    size_t n, d;
    const float *Q; /* exact query i at Q + i * ldq */
    size_t ldq;
    const float *S; /* screening row j at S + j * lds (ds floats) */
    size_t lds, ds;
    const float *P; /* screening query i at P + i * ldp (ds floats) */
    size_t ldp;
    const double *err; /* (nq) screening error bound per query, or NULL (see above) */
} topk_screen;

int topk_rows_screened(const topk_screen *s, size_t nq, size_t k, topk_hit *top, topk_hit *bottom, size_t ldo,
                       const topk_opts *opts);

/* The pieces of topk_rows_screened, for a caller whose screening scores are
 * not one GEMM (core/ana/probe_words.c sums several): candidates per list
 * for nq queries over n rows (top and/or bottom lists, k of each), fed the
 * float screening scores block by block, then rescored exactly against M
 * and certified with the caller's error bound as topk_rows_screened does.
 *   topk_cands_new      NULL when memory runs out or the arguments are bad
 *                       (k in 1..n, a list wanted)
 *   topk_cands_scan     scores s (b) of query i for rows j0 .. j0 + b - 1
 *   topk_cands_merge    offers every candidate of src to dst (made with the
 *                       same nq, n, k and lists): dst then holds what one
 *                       scan of both's rows would have left (for a pass
 *                       whose rows are shared among threads, each with
 *                       its own candidates)
 *   topk_cands_certify  M (n, d), query i at Q + i * ldq, err (nq) bounds on
 *                       |screening score - topk_dot(Q_i, M_j)| for every j;
 *                       lists to top/bottom + i * ldo. TW_OK, TW_EINVAL or
 *                       TW_ENOMEM.
 *   topk_cands_certify_rows  the same against the rows of f (stored, or
 *                       formed one at a time: f->n = n), and with failed
 *                       (nq) set, a list that cannot be certified is not
 *                       scanned: failed[i] = 1 and query i's lists are left
 *                       as they were, for the caller to compute (say all
 *                       the failed queries in one topk_rows_opt pass);
 *                       failed[i] = 0 for a certified query. */
typedef struct topk_cands topk_cands;
topk_cands *topk_cands_new(size_t nq, size_t n, size_t k, int top, int bottom);
void topk_cands_scan(topk_cands *c, size_t i, const float *s, size_t b, size_t j0);
void topk_cands_merge(topk_cands *dst, const topk_cands *src);
size_t topk_cands_k(const topk_cands *c); /* the k it was made with */
int topk_cands_certify(topk_cands *c, const float *M, size_t d, const float *Q, size_t ldq, const double *err,
                       topk_hit *top, topk_hit *bottom, size_t ldo);
int topk_cands_certify_rows(topk_cands *c, const topk_former *f, const float *Q, size_t ldq,
                            const double *err, topk_hit *top, topk_hit *bottom, size_t ldo,
                            unsigned char *failed);
void topk_cands_free(topk_cands *c);

/* Rows per screening block for nq queries (a multiple of 16, at most n):
 * the block of scores nq x rows stays within 8 MiB. */
size_t topk_block_rows(size_t nq, size_t n);

/* gamma_n = n u / (1 - n u), u = 2^-24: the classic bound on the relative
 * error of a float dot product of length n (|fl(x.y) - x.y| <= gamma_n
 * sum |x_i y_i|), in any summation order, with or without FMA. */
double topk_gamma(size_t n);
/* For each query q_i of Q (nq, d), the exact 1-based rank of row ids[i] of M
 * (n, d) in q_i's top list: ranks[i] = 1 + the number of rows j that come
 * before it in the order of topk_rows (a larger exact score topk_dot(q_i, M_j),
 * or an equal one and j < ids[i]), i.e. its position in topk_rows's list with
 * k = n. Screened with the same float GEMM and error bound as topk_rows_opt:
 * only the rows whose float score lies within the bound of the row's exact
 * score are rescored exactly, so the rank is exact. opts->cancel is checked
 * between GEMM blocks. */
int topk_rank_rows(const float *M, size_t n, size_t d, const float *Q, size_t nq, const int32_t *ids,
                   size_t *ranks, const topk_opts *opts);

/* The exact dot product of two float vectors, in double, in a fixed order:
 * the score of every list. */
double topk_dot(const float *a, const float *b, size_t d);

/* The screening error bound: for a query q with |q| = qnorm and any row
 * M_j with |M_j| <= max_row_norm, the float32 GEMM score of q . M_j (any
 * BLAS kernel, any summation order, with or without FMA) differs from
 * topk_dot(q, M_j) by less than this. A row whose GEMM score exceeds a
 * threshold t by more than the bound has topk_dot > t for certain (and
 * likewise below), so only rows within the bound of t need rescoring.
 * NaN or +inf when an input is. */
double topk_screen_error(size_t d, double qnorm, double max_row_norm);

/* *m = max(*m, v), NaN-sticky: a NaN v or *m leaves *m NaN (a bound
 * measured on rows one of which holds NaN certifies nothing). */
static inline void topk_raise_max(double *m, double v)
{
    if (!isnan(*m) && !(v <= *m)) *m = v;
}

/* max_j |M_j| over the n rows of M (n, d) (NaN if a row holds NaN). */
float topk_max_row_norm(const float *M, size_t n, size_t d);

/* How many lists, since the process started, could not be certified from
 * the screened candidates and were recomputed: by an exact scan, or (those
 * marked failed by topk_cands_certify_rows) by the caller's own pass. */
unsigned long long topk_exact_scans(void);

/* Queries of plain passes on a low-precision unit (amx, vnni) whose lists
 * that unit's bound left uncertified, screened again together by the fp32
 * GEMM (for /metrics). */
unsigned long long topk_rescreened(void);

/* The slow, obviously-correct reference of topk_rows: every row scored by
 * topk_dot. Same contract and the same answer, bit for bit. */
int topk_rows_naive(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
                    topk_hit *bottom);

/* Top-k (descending) and bottom-k (ascending) of the plain score vector
 * s (n), ties lower index first; top or bottom (k each) may be NULL (not
 * both). Bounded heaps, O(n log k). */
int topk_vec(const double *s, size_t n, size_t k, topk_hit *top, topk_hit *bottom);

#endif
