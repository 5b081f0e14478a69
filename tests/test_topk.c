/* Unit tests of core/nn/topk: the fast path against its naive reference
 * (including exact ties across GEMM blocks), the score-vector selection with
 * NaN and infinities, and the argument errors. */
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/amx.h"
#include "core/nn/topk.h"
#include "core/nn/vnni.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_rank.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

START_TEST(test_topk_fast_vs_naive)
{
    tw_rng r = tt_rng(11);
    const size_t n = 1500, d = 37, nq = 60;
    float *M = tt_uniform(&r, n * d, -1, 1);
    float *Q = tt_uniform(&r, nq * d, -1, 1);
    const size_t ks[] = {1, 5, 17};
    double worst = 0;
    for (size_t ki = 0; ki < 3; ki++) {
        size_t k = ks[ki];
        topk_hit *ft = malloc(nq * k * sizeof *ft), *fb = malloc(nq * k * sizeof *fb);
        topk_hit *nt = malloc(nq * k * sizeof *nt), *nb = malloc(nq * k * sizeof *nb);
        ck_assert_int_eq(topk_rows(M, n, d, Q, nq, k, ft, fb), 0);
        ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, nt, nb), 0);
        for (size_t i = 0; i < nq * k; i++) {
            ck_assert_msg(ft[i].id == nt[i].id && fb[i].id == nb[i].id,
                          "k=%zu item %zu: top %d/%d bottom %d/%d", k, i, ft[i].id, nt[i].id, fb[i].id,
                          nb[i].id);
            worst = fmax(worst, fabs(ft[i].score - nt[i].score));
            worst = fmax(worst, fabs(fb[i].score - nb[i].score));
        }
        // descending / ascending
        for (size_t i = 0; i < nq; i++)
            for (size_t t = 1; t < k; t++) {
                ck_assert(ft[i * k + t - 1].score >= ft[i * k + t].score);
                ck_assert(fb[i * k + t - 1].score <= fb[i * k + t].score);
            }
        TT_FREE(ft, fb, nt, nb);
    }
    ck_assert_msg(worst < 1e-5, "largest score difference fast vs naive %.3g", worst);
    TT_FREE(M, Q);
}
END_TEST

/* topk_rows of nq random queries against n random rows of d (elements in
 * [-1, 1]; element 7 of row 123 set to outlier when not 0), k 10, checked
 * against topk_rows_naive bit for bit: the lists not certified by the
 * screening (topk_exact_scans) and the queries screened again
 * (topk_rescreened) it took. */
static void plain_pass_vs_naive(tw_rng *r, size_t n, size_t d, size_t nq, float outlier,
                                unsigned long long *scans, unsigned long long *again)
{
    const size_t k = 10;
    float *M = tt_uniform(r, n * d, -1, 1), *Q = tt_uniform(r, nq * d, -1, 1);
    if (outlier != 0.0f) M[123 * d + 7] = outlier;
    topk_hit *ft = malloc(nq * k * sizeof *ft), *fb = malloc(nq * k * sizeof *fb);
    topk_hit *nt = malloc(nq * k * sizeof *nt), *nb = malloc(nq * k * sizeof *nb);
    const unsigned long long s0 = topk_exact_scans(), a0 = topk_rescreened();
    ck_assert_int_eq(topk_rows(M, n, d, Q, nq, k, ft, fb), 0);
    *scans = topk_exact_scans() - s0;
    *again = topk_rescreened() - a0;
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, nt, nb), 0);
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_msg(ft[i].id == nt[i].id && ft[i].score == nt[i].score, "top item %zu", i);
        ck_assert_msg(fb[i].id == nb[i].id && fb[i].score == nb[i].score, "bottom item %zu", i);
    }
    TT_FREE(M, Q, ft, fb, nt, nb);
}

/* The bf16 tile scores (core/nn/amx.h) within their stated bound of the
 * exact products, at every edge of the tiles: a depth that is not a
 * multiple of 32, queries and rows that do not fill their tiles, a row
 * stride beyond the depth; and a pass on the tile unit (enough queries)
 * gives the naive lists bit for bit, rarely needing an exact scan. */
START_TEST(test_topk_amx_bound_and_lists)
{
    if (!nn_amx_usable()) {
        fprintf(stderr, "test_topk_amx_bound_and_lists: no tile unit here (or TWD_AMX=0): fp32 path only\n");
        return;
    }
    tw_rng r = tt_rng(77);
    const size_t nq = 70, bj = 150, ds = 100, ldr = 103, lds = 161;
    float *P = tt_uniform(&r, nq * ds, -1, 1), *R = tt_uniform(&r, bj * ldr, -3, 3);
    P[5] = 1e-40f; /* a subnormal, flushed by the conversion */
    R[7] = 3e4f;
    float *S = malloc(nq * lds * sizeof *S);
    uint16_t *Pq = malloc(nn_amx_queries_elems(nq, ds) * sizeof *Pq),
             *w = malloc(nn_amx_work_elems(ds, nq) * sizeof *w);
    for (size_t i = 0; i < nq * lds; i++) S[i] = -12345.0f;
    nn_amx_pack_queries(P, ds, nq, ds, Pq);
    nn_amx_scores(Pq, nq, R, ldr, bj, ds, S, lds, w);
    double worst = 0.0, seen = 0.0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < bj; j++) {
            double e = 0.0, pn = 0.0, rn = 0.0;
            for (size_t t = 0; t < ds; t++) {
                e += (double)P[i * ds + t] * R[j * ldr + t];
                pn += (double)P[i * ds + t] * P[i * ds + t];
                rn += (double)R[j * ldr + t] * R[j * ldr + t];
            }
            double off = fabs(S[i * lds + j] - e), bound = nn_amx_error(ds, sqrt(pn), sqrt(rn));
            worst = fmax(worst, off / bound);
            seen = fmax(seen, off / (sqrt(pn) * sqrt(rn)));
        }
    ck_assert_msg(worst <= 1.0, "a tile score is %.3g bounds off", worst);
    ck_assert_msg(seen > 1e-4, "the scores look like fp32 ones (%.3g), not bf16", seen);
    for (size_t i = 0; i < nq; i++) /* nothing written past the block */
        for (size_t j = bj; j < lds; j++) ck_assert(S[i * lds + j] == -12345.0f);
    TT_FREE(P, R, S, Pq, w);

    unsigned long long scans, again;
    plain_pass_vs_naive(&r, 5000, 100, 100, 0.0f, &scans, &again);
    ck_assert_msg(scans <= 10 && again == 0, "%llu of 200 lists needed an exact scan", scans);
}
END_TEST

/* The 16-bit integer scores (core/nn/vnni.h) within their stated bound of
 * the exact products, each row's bound taken with its own norm and largest
 * element, at every edge: a depth that is not a multiple of 32, queries
 * that do not fill a block of 12, rows past a chunk of 128 and not filling
 * a pair of panels, a row stride beyond the depth, an outlier, a zero row
 * and a zero query; the sums of the largest integers at depth 1600 do not
 * overflow; a NaN row and a tiny one make the scores unbounded; and a
 * plain pass on the VNNI unit (when it is the one used: no tile unit, or
 * TWD_AMX=0) gives the naive lists bit for bit, rarely needing an exact
 * scan. */
START_TEST(test_topk_vnni_bound_and_lists)
{
    if (!nn_vnni_usable()) {
        fprintf(stderr,
                "test_topk_vnni_bound_and_lists: no AVX512-VNNI here (or TWD_VNNI=0): fp32 path only\n");
        return;
    }
    tw_rng r = tt_rng(78);
    const size_t nq = 70, bj = 150, ds = 100, ldr = 103, lds = 161;
    float *P = tt_uniform(&r, nq * ds, -1, 1), *R = tt_uniform(&r, bj * ldr, -3, 3);
    R[7] = 3e4f;
    for (size_t t = 0; t < ds; t++) R[140 * ldr + t] = 0.0f, P[3 * ds + t] = 0.0f;
    P[5 * ds + 9] = 1e-30f; /* below a step: rounds to 0 */
    float *S = malloc(nq * lds * sizeof *S);
    void *Pq = nn_vnni_alloc(nn_vnni_queries_bytes(nq, ds)), *w = nn_vnni_alloc(nn_vnni_work_bytes(ds));
    for (size_t i = 0; i < nq * lds; i++) S[i] = -12345.0f;
    nn_vnni_pack_queries(P, ds, nq, ds, Pq);
    double rinf = nn_vnni_scores(Pq, nq, R, ldr, bj, ds, S, lds, w);
    ck_assert_msg(rinf == 3e4, "largest element %g", rinf);
    double worst = 0.0, seen = 0.0;
    for (size_t i = 0; i < nq; i++)
        for (size_t j = 0; j < bj; j++) {
            double e = 0.0, rn = 0.0, rm = 0.0, pn = 0.0;
            for (size_t t = 0; t < ds; t++) {
                e += (double)P[i * ds + t] * R[j * ldr + t];
                pn += (double)P[i * ds + t] * P[i * ds + t];
                rn += (double)R[j * ldr + t] * R[j * ldr + t];
                rm = fmax(rm, fabs(R[j * ldr + t]));
            }
            double off = fabs(S[i * lds + j] - e), bound = nn_vnni_error(ds, P + i * ds, sqrt(rn), rm);
            if (j == 140 || i == 3)
                ck_assert_msg(S[i * lds + j] == 0.0f, "zero row or query scored %g", S[i * lds + j]);
            worst = fmax(worst, bound > 0 ? off / bound : off > 0 ? INFINITY : 0.0);
            seen = fmax(seen, off / (sqrt(pn) * sqrt(rn) + 1e-300));
        }
    ck_assert_msg(worst <= 1.0, "an integer score is %.3g bounds off", worst);
    ck_assert_msg(seen > 1e-6, "the scores look like fp32 ones (%.3g), not int16", seen);
    for (size_t i = 0; i < nq; i++) /* nothing written past the block */
        for (size_t j = bj; j < lds; j++) ck_assert(S[i * lds + j] == -12345.0f);
    TT_FREE(P, R, S, Pq, w);

    /* the largest sums the level allows: every product Q^2, at depth 1600 */
    const size_t dx = 1600, nx = 64, bx = 40;
    float *Px = malloc(nx * dx * sizeof *Px), *Rx = malloc(bx * dx * sizeof *Rx),
          *Sx = malloc(nx * bx * sizeof *Sx);
    for (size_t i = 0; i < nx * dx; i++) Px[i] = (i / dx) % 2 ? -2.0f : 2.0f;
    for (size_t i = 0; i < bx * dx; i++) Rx[i] = 0.5f;
    Rx[3 * dx + 5] = NAN; /* row 3 */
    Pq = nn_vnni_alloc(nn_vnni_queries_bytes(nx, dx));
    w = nn_vnni_alloc(nn_vnni_work_bytes(dx));
    nn_vnni_pack_queries(Px, dx, nx, dx, Pq);
    rinf = nn_vnni_scores(Pq, nx, Rx, dx, bx, dx, Sx, bx, w);
    ck_assert_msg(isnan(rinf), "a NaN row reported %g", rinf);
    for (size_t i = 0; i < nx; i++)
        for (size_t j = 0; j < bx; j++)
            if (j != 3) /* an overflow would be off by 2^32 steps */
                ck_assert_msg(fabs(Sx[i * bx + j] - (i % 2 ? -1600.0 : 1600.0)) < 1e-3, "sum %g",
                              Sx[i * bx + j]);
    for (size_t t = 0; t < dx; t++) Rx[3 * dx + t] = 1e-13f; /* below 2^-40 */
    rinf = nn_vnni_scores(Pq, nx, Rx, dx, bx, dx, Sx, bx, w);
    ck_assert_msg(rinf == INFINITY, "a tiny row reported %g", rinf);
    ck_assert(nn_vnni_error(dx, Px, 100.0, INFINITY) == INFINITY);
    ck_assert(isfinite(nn_vnni_error(dx, Px, 100.0, 2.0)));
    TT_FREE(Px, Rx, Sx, Pq, w);

    unsigned long long scans, again;
    plain_pass_vs_naive(&r, 5000, 100, 100, 0.0f, &scans, &again);
    ck_assert_msg(scans <= 10 && again == 0, "%llu of 200 lists needed an exact scan", scans);
    fprintf(stderr, "test_topk_vnni_bound_and_lists (width %d): lists on the %s unit, %llu exact scans\n",
            nn_vnni_width(), nn_amx_usable() ? "tile" : "VNNI", scans);
}
END_TEST

/* Integer data: every dot product is exact in float, so there are many exact
 * ties, and with 2100 queries the rows are scanned in several GEMM blocks. */
START_TEST(test_topk_exact_ties)
{
    tw_rng r = tt_rng(12);
    const size_t n = 2000, d = 16, nq = 2100, k = 7;
    float *M = tt_ints(&r, n * d, -2, 2);
    float *Q = tt_ints(&r, nq * d, -2, 2);
    // the best row overall duplicated on both sides of block boundaries
    for (size_t t = 0; t < d; t++) M[1990 * d + t] = M[3 * d + t] = M[1000 * d + t] = 2.0f;
    topk_hit *ft = malloc(nq * k * sizeof *ft), *fb = malloc(nq * k * sizeof *fb);
    topk_hit *nt = malloc(nq * k * sizeof *nt), *nb = malloc(nq * k * sizeof *nb);
    ck_assert_int_eq(topk_rows(M, n, d, Q, nq, k, ft, fb), 0);
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, nt, nb), 0);
    size_t tied = 0;
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_msg(ft[i].id == nt[i].id && ft[i].score == nt[i].score,
                      "top item %zu: %d (%g) vs naive %d (%g)", i, ft[i].id, ft[i].score, nt[i].id,
                      nt[i].score);
        ck_assert_msg(fb[i].id == nb[i].id && fb[i].score == nb[i].score,
                      "bottom item %zu: %d (%g) vs naive %d (%g)", i, fb[i].id, fb[i].score, nb[i].id,
                      nb[i].score);
        if (i % k && ft[i].score == ft[i - 1].score) {
            tied++;
            ck_assert_int_lt(ft[i - 1].id, ft[i].id); // lower id first
        }
        if (i % k && fb[i].score == fb[i - 1].score) ck_assert_int_lt(fb[i - 1].id, fb[i].id);
    }
    ck_assert_uint_gt(tied, nq); // the test did exercise ties
    // the all-2 query's top list is the three duplicated rows, in id order
    for (size_t t = 0; t < d; t++) Q[t] = 1.0f;
    ck_assert_int_eq(topk_rows(M, n, d, Q, 1, 3, ft, NULL), 0);
    ck_assert_int_eq(ft[0].id, 3);
    ck_assert_int_eq(ft[1].id, 1000);
    ck_assert_int_eq(ft[2].id, 1990);
    TT_FREE(M, Q, ft, fb, nt, nb);
}
END_TEST

/* The candidates of a screening (topk_cands) keep the best 2k + TOPK_MARGIN
 * rows of what they were offered, as a bounded heap would: scores with
 * many exact ties and NaN, offered in blocks of every size, split among
 * up to three candidate sets that are merged, for row counts below, at and
 * well above the buffer's compaction point. The rows are 1-vectors (M_j =
 * s_j, the query 1), so the certified lists must be the naive ones. */
START_TEST(test_topk_cands_ties_merges)
{
    tw_rng r = tt_rng(19);
    const size_t ns[] = {3, 20, 21, 43, 44, 45, 300, 5000};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (size_t k = 1; k <= 8; k += 7)
            for (size_t parts = 1; parts <= 3; parts++) {
                const size_t n = ns[ni];
                if (k > n) continue;
                float *M = tt_ints(&r, n, -3, 3), q = 1.0f;
                for (size_t j = 0; j < n; j += 7) M[j] = NAN;
                topk_cands *c[3] = {NULL, NULL, NULL};
                for (size_t p = 0; p < parts; p++)
                    ck_assert_ptr_nonnull(c[p] = topk_cands_new(1, n, k, 1, 1));
                for (size_t j0 = 0, b = 1; j0 < n; j0 += b, b = b * 3 % 17 + 1) {
                    const size_t bj = n - j0 < b ? n - j0 : b;
                    topk_cands_scan(c[(j0 / 5) % parts], 0, M + j0, bj, j0);
                }
                for (size_t p = 1; p < parts; p++) topk_cands_merge(c[0], c[p]);
                topk_hit top[8], bot[8], nt[8], nb[8];
                const double err = 0.0; /* the scores are exact */
                ck_assert_int_eq(topk_cands_certify(c[0], M, 1, &q, 1, &err, top, bot, k), 0);
                ck_assert_int_eq(topk_rows_naive(M, n, 1, &q, 1, k, nt, nb), 0);
                for (size_t t = 0; t < k; t++) {
                    ck_assert_msg(top[t].id == nt[t].id, "n %zu k %zu parts %zu top %zu: %d, naive %d", n, k,
                                  parts, t, top[t].id, nt[t].id);
                    ck_assert_msg(bot[t].id == nb[t].id, "n %zu k %zu parts %zu bottom %zu: %d, naive %d", n,
                                  k, parts, t, bot[t].id, nb[t].id);
                }
                for (size_t p = 0; p < parts; p++) topk_cands_free(c[p]);
                free(M);
            }
}
END_TEST

START_TEST(test_topk_vec_and_nan)
{
    tw_rng r = tt_rng(13);
    const size_t n = 3000, k = 9;
    double *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (double)tw_rng_below(&r, 200);
    s[17] = NAN;
    s[18] = INFINITY;
    s[19] = -INFINITY;
    topk_hit top[9], bot[9];
    ck_assert_int_eq(topk_vec(s, n, k, top, bot), 0);
    tt_scored *all = malloc(n * sizeof *all);
    for (size_t i = 0; i < n; i++) all[i] = (tt_scored){isnan(s[i]) ? -INFINITY : s[i], (int)i};
    tt_sort_desc(all, n);
    for (size_t t = 0; t < k; t++) ck_assert_int_eq(top[t].id, all[t].id);
    ck_assert_int_eq(top[0].id, 18);
    for (size_t i = 0; i < n; i++) all[i] = (tt_scored){isnan(s[i]) ? -INFINITY : -s[i], (int)i};
    tt_sort_desc(all, n);
    for (size_t t = 0; t < k; t++) ck_assert_int_eq(bot[t].id, all[t].id);
    ck_assert_int_eq(bot[0].id, 19);
    // NaN rows of a matrix never enter a list while other rows remain
    float M[4 * 2] = {1, 1, NAN, 0, 5, 5, -3, -3};
    float q[2] = {1, 1};
    topk_hit t3[3], b3[3];
    ck_assert_int_eq(topk_rows(M, 4, 2, q, 1, 3, t3, b3), 0);
    ck_assert_int_eq(t3[0].id, 2);
    ck_assert_int_eq(t3[1].id, 0);
    ck_assert_int_eq(t3[2].id, 3);
    ck_assert_int_eq(b3[0].id, 3);
    ck_assert_int_eq(b3[2].id, 2);
    topk_hit t4[4];
    ck_assert_int_eq(topk_rows(M, 4, 2, q, 1, 4, t4, NULL), 0);
    ck_assert_int_eq(t4[3].id, 1); // the NaN row comes last
    ck_assert(isnan(t4[3].score));
    TT_FREE(s, all);
}
END_TEST

/* The largest row norm, the bound of every certification: a NaN row makes
 * it NaN wherever it lies (then nothing is certified), never a smaller
 * norm than a real row's. */
START_TEST(test_topk_max_row_norm_nan)
{
    const float rows[][3] = {{5, 1, 0}, {NAN, 0, 0}, {1, 0, 0}}; /* norms sqrt 26, NaN, 1 */
    ck_assert(isnan(topk_max_row_norm(&rows[0][0], 3, 3)));
    ck_assert(isnan(topk_max_row_norm(&rows[1][0], 2, 3)));
    ck_assert(isnan(topk_max_row_norm(&rows[0][0], 2, 3)));
    ck_assert_float_eq(topk_max_row_norm(&rows[0][0], 1, 3), sqrtf(26.0f));
    ck_assert_float_eq(topk_max_row_norm(&rows[2][0], 1, 3), 1.0f);
    const float inf[] = {1, 0, INFINITY, 0, 2, 0};
    ck_assert(isinf(topk_max_row_norm(inf, 3, 2)));
}
END_TEST

START_TEST(test_topk_errors)
{
    float M[6] = {0}, q[2] = {0};
    topk_hit h[4];
    ck_assert_int_eq(topk_rows(M, 3, 2, q, 1, 0, h, NULL), TW_EINVAL);
    ck_assert_int_eq(topk_rows(M, 3, 2, q, 1, 4, h, NULL), TW_EINVAL);
    ck_assert_int_eq(topk_rows(M, 3, 2, q, 1, 2, NULL, NULL), TW_EINVAL);
    ck_assert_int_eq(topk_rows_naive(M, 3, 2, q, 1, 4, h, NULL), TW_EINVAL);
    double s[3] = {0};
    ck_assert_int_eq(topk_vec(s, 3, 4, h, NULL), TW_EINVAL);
    ck_assert_int_eq(topk_rows(M, 3, 2, q, 0, 2, h, NULL), 0); // no queries: nothing to do
}
END_TEST

/* issue 9, item 2: running work stops when its client goes away, not only
 * queued work. The flag is raised from inside the first block (as the guard
 * would from its thread): the pass stops before the next GEMM block. */
typedef struct {
    tw_cancel *cancel;
    int blocks;
} cancel_ctx;

static int raise_on_first_block(void *ctx, const float *S, size_t nq, size_t j0, size_t bj)
{
    (void)S, (void)nq, (void)j0, (void)bj;
    cancel_ctx *c = ctx;
    if (c->blocks++ == 0) tw_cancel_raise(c->cancel);
    return 0;
}

START_TEST(test_topk_cancel_between_blocks)
{
    const size_t n = 20000, d = 4, nq = 512, k = 3; /* blocks of 4096 rows: 5 of them */
    float *M = malloc(n * d * sizeof *M), *Q = malloc(nq * d * sizeof *Q);
    topk_hit *top = malloc(nq * k * sizeof *top);
    ck_assert(M && Q && top);
    tw_rng r = tt_rng(5);
    for (size_t i = 0; i < n * d; i++) M[i] = (float)tw_rng_normal(&r);
    for (size_t i = 0; i < nq * d; i++) Q[i] = (float)tw_rng_normal(&r);
    tw_cancel cancel = {0};
    cancel_ctx c = {&cancel, 0};
    topk_opts o = {.cancel = &cancel, .on_block = raise_on_first_block, .ctx = &c};
    ck_assert_int_eq(topk_rows_opt(M, n, d, Q, nq, k, top, NULL, &o), TW_ECANCELED);
    ck_assert_int_eq(c.blocks, 1);
    /* a deadline already passed: not one block */
    tw_cancel late = {.deadline = 1e-9};
    c = (cancel_ctx){&late, 0};
    o.cancel = &late;
    ck_assert_int_eq(topk_rows_opt(M, n, d, Q, nq, k, top, NULL, &o), TW_ETIMEDOUT);
    ck_assert_int_eq(c.blocks, 0);
    /* the same pass without a flag runs every block */
    cancel = (tw_cancel){0};
    c = (cancel_ctx){NULL, 0};
    o.cancel = NULL;
    o.on_block = NULL;
    ck_assert_int_eq(topk_rows_opt(M, n, d, Q, nq, k, top, NULL, &o), TW_OK);
    TT_FREE(M, Q, top);
}
END_TEST

/* The tiled pass (rows shared among threads, each with its own GEMMs and
 * candidates, merged afterwards): the same lists as the naive reference,
 * with exact ties on both sides of the threads' boundary, and a deadline
 * already passed stops it before one block. */
START_TEST(test_topk_tiled_vs_naive)
{
    const int saved = openblas_get_num_threads();
    openblas_set_num_threads(2); /* two parts, whatever the machine */
    tw_rng r = tt_rng(21);
    const size_t n = 6000, d = 48, nq = 200, k = 6;
    float *M = tt_ints(&r, n * d, -2, 2);
    float *Q = tt_ints(&r, nq * d, -2, 2);
    for (size_t t = 0; t < d; t++) M[2999 * d + t] = M[3000 * d + t] = M[17 * d + t] = 2.0f;
    for (size_t t = 0; t < d; t++) M[2998 * d + t] = M[5999 * d + t] = -2.0f;
    topk_hit *ft = malloc(nq * k * sizeof *ft), *fb = malloc(nq * k * sizeof *fb);
    topk_hit *nt = malloc(nq * k * sizeof *nt), *nb = malloc(nq * k * sizeof *nb);
    ck_assert_int_eq(topk_rows(M, n, d, Q, nq, k, ft, fb), 0);
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, nt, nb), 0);
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_msg(ft[i].id == nt[i].id && ft[i].score == nt[i].score, "top item %zu: %d vs naive %d", i,
                      ft[i].id, nt[i].id);
        ck_assert_msg(fb[i].id == nb[i].id && fb[i].score == nb[i].score, "bottom item %zu: %d vs naive %d",
                      i, fb[i].id, nb[i].id);
    }
    for (size_t t = 0; t < d; t++) Q[t] = 1.0f; /* the all-2 rows first, in id order, across the boundary */
    ck_assert_int_eq(topk_rows(M, n, d, Q, nq, 3, ft, fb), 0);
    ck_assert_int_eq(ft[0].id, 17);
    ck_assert_int_eq(ft[1].id, 2999);
    ck_assert_int_eq(ft[2].id, 3000);
    ck_assert_int_eq(fb[0].id, 2998);
    ck_assert_int_eq(fb[1].id, 5999);
    tw_cancel late = {.deadline = 1e-9};
    ck_assert_int_eq(topk_rows_opt(M, n, d, Q, nq, k, ft, NULL, &(topk_opts){.cancel = &late}), TW_ETIMEDOUT);
    openblas_set_num_threads(saved);
    TT_FREE(M, Q, ft, fb, nt, nb);
}
END_TEST

/* ---- A matrix formed on demand ---- */

/* Rows of M = fl(2 B + 1), formed from B (n, d) as asked; counts the rows
 * formed. */
typedef struct {
    const float *B;
    size_t d;
    _Atomic size_t formed;
} affine_rows;

static double affine_form(const void *ctx, size_t j0, size_t nr, float *out)
{
    affine_rows *a = (affine_rows *)ctx;
    for (size_t i = 0; i < nr * a->d; i++) out[i] = (float)(2.0 * (double)a->B[j0 * a->d + i] + 1.0);
    a->formed += nr;
    return topk_max_row_norm(out, nr, a->d);
}

/* topk_rows_formed of nq queries Q against fl(2 B + 1) is topk_rows_naive
 * against that matrix, ids and scores bit for bit; every row is formed
 * once by the pass (never the whole matrix at once beyond a tile) plus
 * the candidates; the stored form of the same matrix gives the same. */
static void check_formed(const float *B, size_t n, size_t d, const float *Q, size_t nq, size_t k)
{
    float *M = malloc(n * d * sizeof(float));
    affine_rows a = {.B = B, .d = d};
    affine_form(&a, 0, n, M);
    a.formed = 0;
    const topk_former f = {.n = n, .d = d, .form = affine_form, .ctx = &a};
    const topk_former fs = {.n = n, .d = d, .rows = M};
    topk_hit *ft = malloc(nq * k * sizeof *ft), *fb = malloc(nq * k * sizeof *fb);
    topk_hit *st = malloc(nq * k * sizeof *st), *sb = malloc(nq * k * sizeof *sb);
    topk_hit *nt = malloc(nq * k * sizeof *nt), *nb = malloc(nq * k * sizeof *nb);
    ck_assert_int_eq(topk_rows_formed(&f, Q, nq, k, ft, fb, NULL), 0);
    ck_assert_uint_ge(a.formed, n);
    ck_assert_int_eq(topk_rows_formed(&fs, Q, nq, k, st, sb, NULL), 0);
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, nt, nb), 0);
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_msg(ft[i].id == nt[i].id && !memcmp(&ft[i].score, &nt[i].score, sizeof(double)),
                      "top item %zu: %d (%.17g) vs naive %d (%.17g)", i, ft[i].id, ft[i].score, nt[i].id,
                      nt[i].score);
        ck_assert_msg(fb[i].id == nb[i].id && !memcmp(&fb[i].score, &nb[i].score, sizeof(double)),
                      "bottom item %zu: %d (%.17g) vs naive %d (%.17g)", i, fb[i].id, fb[i].score, nb[i].id,
                      nb[i].score);
        ck_assert(st[i].id == nt[i].id && !memcmp(&st[i].score, &nt[i].score, sizeof(double)));
        ck_assert(sb[i].id == nb[i].id && !memcmp(&sb[i].score, &nb[i].score, sizeof(double)));
    }
    TT_FREE(M, ft, fb, st, sb, nt, nb);
}

/* The formed pass against the naive reference: random rows, in one thread
 * and tiled over two; integer rows with exact ties across tiles and the
 * threads' boundary (lists that cannot be certified: the exact scan over
 * formed rows); NaN and infinite rows (never certified: every list so
 * scanned); the screened problem with its exact rows formed; a deadline
 * already passed; bad arguments. */
START_TEST(test_topk_formed_vs_naive)
{
    const int saved = openblas_get_num_threads();
    tw_rng r = tt_rng(31);
    const size_t n = 5000, d = 40, nq = 200; /* 2 threads: a tiled pass */
    float *B = tt_uniform(&r, n * d, -1, 1), *Q = tt_uniform(&r, nq * d, -1, 1);
    for (int threads = 1; threads <= 2; threads++) {
        openblas_set_num_threads(threads);
        const size_t ks[] = {1, 17};
        for (size_t ki = 0; ki < 2; ki++) check_formed(B, n, d, Q, nq, ks[ki]);
    }
    openblas_set_num_threads(2);
    const size_t di = 8, ni = 22000; /* few distinct scores: many ties; still a tiled pass */
    float *Bi = tt_ints(&r, ni * di, -2, 2), *Qi = tt_ints(&r, nq * di, -2, 2);
    for (size_t t = 0; t < di; t++) Bi[9999 * di + t] = Bi[10000 * di + t] = Bi[17 * di + t] = 2.0f;
    const unsigned long long scans = topk_exact_scans();
    check_formed(Bi, ni, di, Qi, nq, 6);
    ck_assert_uint_gt(topk_exact_scans(), scans); /* the ties forced the exact fallback */
    B[123 * d + 7] = NAN;
    B[4000 * d + 2] = INFINITY;
    const unsigned long long scans2 = topk_exact_scans();
    check_formed(B, n, d, Q, 10, 5);
    ck_assert_uint_ge(topk_exact_scans(), scans2 + 2 * 10); /* no list certified */
    /* the screened problem: screening rows stored, the exact ones formed */
    B[123 * d + 7] = 0.5f;
    B[4000 * d + 2] = 0.5f;
    float *M = malloc(n * d * sizeof(float));
    affine_rows a = {.B = B, .d = d};
    const double R = affine_form(&a, 0, n, M);
    double *err = malloc(nq * sizeof(double));
    for (size_t i = 0; i < nq; i++) err[i] = topk_screen_error(d, sqrt(topk_dot(Q + i * d, Q + i * d, d)), R);
    const topk_former f = {.n = n, .d = d, .form = affine_form, .ctx = &a};
    const topk_screen sc = {
        .Mf = &f, .n = n, .d = d, .Q = Q, .ldq = d, .S = M, .lds = d, .ds = d, .P = Q, .ldp = d, .err = err};
    const size_t k = 4;
    topk_hit *st = malloc(nq * k * sizeof *st), *nt = malloc(nq * k * sizeof *nt);
    ck_assert_int_eq(topk_rows_screened(&sc, nq, k, st, NULL, k, NULL), 0);
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, nt, NULL), 0);
    for (size_t i = 0; i < nq * k; i++) ck_assert(st[i].id == nt[i].id && st[i].score == nt[i].score);
    tw_cancel late = {.deadline = 1e-9};
    ck_assert_int_eq(topk_rows_formed(&f, Q, nq, k, st, NULL, &(topk_opts){.cancel = &late}), TW_ETIMEDOUT);
    const topk_former none = {.n = n, .d = d};
    ck_assert_int_eq(topk_rows_formed(&none, Q, nq, k, st, NULL, NULL), TW_EINVAL);
    ck_assert_int_eq(topk_rows_formed(NULL, Q, nq, k, st, NULL, NULL), TW_EINVAL);
    ck_assert_int_eq(topk_rows_formed(&f, Q, nq, n + 1, st, NULL, NULL), TW_EINVAL);
    openblas_set_num_threads(saved);
    TT_FREE(B, Q, Bi, Qi, M, err, st, nt);
}
END_TEST

/* A plain pass on a low-precision unit (the tile unit or VNNI, when this
 * CPU has one) whose bound fails every list (one row holds an element of
 * 400 among elements of at most 1: the int16 step and the bf16 bound grow
 * with it, the fp32 bound barely) screens those queries again in fp32:
 * the naive lists bit for bit, and no list needs an exact scan beyond the
 * ones marked for the second screening. */
START_TEST(test_topk_low_precision_rescreened)
{
    tw_rng r = tt_rng(79);
    const size_t nq = 100;
    unsigned long long ds, da;
    plain_pass_vs_naive(&r, 5000, 100, nq, 400.0f, &ds, &da);
    if (topk_plain_pass_speedup(nq) > 1.0) {
        ck_assert_msg(da == nq, "%llu of %zu queries screened again", da, nq);
        ck_assert_msg(ds <= 2 * nq, "%llu lists left uncertified for %zu queries", ds, nq);
    } else {
        ck_assert_msg(da == 0 && ds == 0, "fp32: %llu screened again, %llu scans", da, ds);
    }
    fprintf(stderr, "test_topk_low_precision_rescreened: %llu queries screened again, %llu lists marked\n",
            da, ds);
}
END_TEST

TW_CHECK_ONE_MAIN("topk", "topk", 60, test_topk_fast_vs_naive, test_topk_exact_ties,
                  test_topk_cands_ties_merges, test_topk_vec_and_nan, test_topk_max_row_norm_nan,
                  test_topk_errors, test_topk_cancel_between_blocks, test_topk_tiled_vs_naive,
                  test_topk_formed_vs_naive, test_topk_amx_bound_and_lists, test_topk_vnni_bound_and_lists,
                  test_topk_low_precision_rescreened)
