/* Unit tests of core/ana/lens (the logit lens): ranks against a full sort of
 * exact scores, with exact ties and across GEMM blocks; the log-sum-exp and
 * entropy against a direct double computation; every output of a query the
 * same whatever batch it is computed in; the argument errors. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/progress.h"
#include "core/ana/lens.h"
#include "core/nn/topk.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_rank.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

/* The reference of one query: exact scores, ranks by a full sort, lse and
 * entropy in double. */
static void reference(const float *E, size_t V, size_t d, const float *q, const int32_t *tg, size_t nt,
                      int32_t *rank, double *lse, double *ent)
{
    tt_scored *a = malloc(V * sizeof *a);
    double m = -INFINITY;
    for (size_t j = 0; j < V; j++) {
        a[j].s = topk_dot(q, E + j * d, d);
        a[j].id = (int)j;
        m = fmax(m, a[j].s);
    }
    double sum = 0, wsum = 0;
    for (size_t j = 0; j < V; j++) {
        double e = exp(a[j].s - m);
        sum += e;
        wsum += e * a[j].s;
    }
    *lse = m + log(sum);
    *ent = *lse - wsum / sum;
    tt_sort_desc(a, V);
    for (size_t t = 0; t < nt; t++) {
        rank[t] = 0;
        for (size_t r = 0; r < V; r++)
            if (a[r].id == tg[t]) rank[t] = (int32_t)r + 1;
    }
    free(a);
}

/* tol: the agreement of lse and entropy with the exact computation, which
 * the float GEMM's own score errors bound (about |s| 2^-24 sqrt(d)). */
static void check_lens(const float *E, size_t V, size_t d, const float *Q, size_t nq, size_t k, tw_rng *r,
                       double tol)
{
    const size_t nt = 2;
    int32_t *tg = malloc(nq * nt * sizeof *tg), *rank = malloc(nq * nt * sizeof *rank);
    double *lse = malloc(nq * sizeof *lse), *ent = malloc(nq * sizeof *ent);
    double *score = malloc(nq * nt * sizeof *score);
    topk_hit *top = malloc(nq * k * sizeof *top), *want = malloc(nq * k * sizeof *want);
    for (size_t i = 0; i < nq * nt; i++) tg[i] = (int32_t)(tw_rng_next(r) % V);
    tg[1] = -1; /* no second target for query 0 */
    lens_opts o = {.k = k, .n_targets = nt, .targets = tg};
    lens_out out = {.top = top, .lse = lse, .entropy = ent, .rank = rank, .score = score};
    ck_assert_int_eq(lens_rows(E, V, d, Q, nq, &o, &out), TW_OK);
    ck_assert_int_eq(topk_rows_naive(E, V, d, Q, nq, k, want, NULL), TW_OK);
    for (size_t i = 0; i < nq * k; i++) {
        ck_assert_int_eq(top[i].id, want[i].id);
        ck_assert(top[i].score == want[i].score);
    }
    for (size_t i = 0; i < nq; i++) {
        int32_t rr[2];
        double l, e;
        reference(E, V, d, Q + i * d, tg + i * nt, nt, rr, &l, &e);
        for (size_t t = 0; t < nt; t++) {
            if (tg[i * nt + t] < 0) {
                ck_assert_int_eq(rank[i * nt + t], 0);
                ck_assert(isnan(score[i * nt + t]));
                continue;
            }
            ck_assert_msg(rank[i * nt + t] == rr[t], "query %zu target %zu: rank %d, reference %d", i, t,
                          rank[i * nt + t], rr[t]);
            ck_assert(score[i * nt + t] == topk_dot(Q + i * d, E + (size_t)tg[i * nt + t] * d, d));
        }
        ck_assert_msg(fabs(lse[i] - l) <= tol * fmax(1, fabs(l)), "lse %.9g vs %.9g", lse[i], l);
        ck_assert_msg(fabs(ent[i] - e) <= tol * fmax(1, fabs(e)), "entropy %.9g vs %.9g", ent[i], e);
    }
    TT_FREE(tg, rank, lse, ent, score, top, want);
}

/* Uniform data, and integer data with many exact ties (which the rank
 * breaks by the lower id) over 600 queries, so several GEMM blocks; and
 * 2200 queries, more than one pass over E takes (three passes: the
 * outputs of each land at its rows, the progress counts every row). */
START_TEST(test_lens_vs_reference)
{
    static const struct {
        uint64_t seed;
        size_t V, d, nq, k;
        int integers;
    } cases[] = {{31, 3000, 40, 50, 5, 0}, {32, 2500, 8, 600, 3, 1}, {35, 200, 8, 2100, 2, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tw_rng r = tt_rng(cases[c].seed);
        size_t V = cases[c].V, d = cases[c].d, nq = cases[c].nq;
        float *E = malloc(V * d * sizeof(float)), *Q = malloc(nq * d * sizeof(float));
        if (cases[c].integers) {
            tt_fill_int(&r, E, V * d, -2, 2);
            tt_fill_int(&r, Q, nq * d, -1, 1);
        } else {
            tt_fill_uniform(&r, E, V * d, -1, 1);
            tt_fill_uniform(&r, Q, nq * d, -2, 2);
        }
        check_lens(E, V, d, Q, nq, cases[c].k, &r, 1e-5);
        tw_progress pr;
        tw_progress_reset(&pr);
        double *lse = malloc(nq * sizeof *lse);
        ck_assert_int_eq(lens_rows(E, V, d, Q, nq, &(lens_opts){.progress = &pr, .progress_done0 = 7},
                                   &(lens_out){.lse = lse}),
                         TW_OK);
        long long done;
        tw_progress_read(&pr, NULL, &done, NULL);
        ck_assert_int_eq(done, 7 + (long long)nq);
        TT_FREE(lse, E, Q);
    }
}
END_TEST

/* Scores that spread far more than e^64 within a row and rise block after
 * block (the pass changes its reference), and the progress and cancel of a
 * pass. */
START_TEST(test_lens_large_scores_progress)
{
    tw_rng r = tt_rng(34);
    const size_t V = 3000, d = 16, nq = 70;
    float *E = tt_uniform(&r, V * d, -1, 1);
    for (size_t j = 0; j < V; j++) E[j * d] = 4.0f * (float)j / (float)V; /* rising along coordinate 0 */
    float *Q = tt_uniform(&r, nq * d, -40, 40);
    for (size_t i = 0; i < nq; i++) Q[i * d] = 60.0f; /* every score rises with the id */
    check_lens(E, V, d, Q, nq, 3, &r, 1e-4);          /* scores up to about 300 */
    tw_progress pr;
    tw_progress_reset(&pr);
    int32_t tg[70] = {0}, rank[70];
    lens_opts o = {.n_targets = 1, .targets = tg, .progress = &pr, .progress_done0 = 10};
    lens_out out = {.rank = rank};
    ck_assert_int_eq(lens_rows(E, V, d, Q, nq, &o, &out), TW_OK);
    long long done;
    tw_progress_read(&pr, NULL, &done, NULL);
    ck_assert_int_eq(done, 10 + (long long)nq);
    tw_cancel c = {.flag = 1};
    o.cancel = &c;
    ck_assert_int_eq(lens_rows(E, V, d, Q, nq, &o, &out), TW_ECANCELED);
    TT_FREE(E, Q);
}
END_TEST

/* A query's top list, ranks and scores are bit for bit the same alone and
 * inside a batch. */
START_TEST(test_lens_batch_independent)
{
    tw_rng r = tt_rng(33);
    const size_t V = 4000, d = 64, nq = 300, k = 4;
    float *E = tt_uniform(&r, V * d, -1, 1), *Q = tt_uniform(&r, nq * d, -1, 1);
    int32_t *tg = malloc(nq * sizeof *tg), *rank = malloc(nq * sizeof *rank);
    double *score = malloc(nq * sizeof *score);
    topk_hit *top = malloc(nq * k * sizeof *top);
    for (size_t i = 0; i < nq; i++) tg[i] = (int32_t)(i * 13 % V);
    lens_opts o = {.k = k, .n_targets = 1, .targets = tg};
    lens_out out = {.top = top, .rank = rank, .score = score};
    ck_assert_int_eq(lens_rows(E, V, d, Q, nq, &o, &out), TW_OK);
    for (size_t i = 0; i < nq; i += 37) {
        topk_hit one[4];
        int32_t r1;
        double s1;
        lens_opts o1 = {.k = k, .n_targets = 1, .targets = tg + i};
        lens_out out1 = {.top = one, .rank = &r1, .score = &s1};
        ck_assert_int_eq(lens_rows(E, V, d, Q + i * d, 1, &o1, &out1), TW_OK);
        ck_assert_int_eq(r1, rank[i]);
        ck_assert(s1 == score[i]);
        for (size_t j = 0; j < k; j++) {
            ck_assert_int_eq(one[j].id, top[i * k + j].id);
            ck_assert(one[j].score == top[i * k + j].score);
        }
    }
    TT_FREE(E, Q, tg, rank, score, top);
}
END_TEST

/* on_row is given every row's scores of every token once, in order of the
 * tokens within a row, and they are the float products q . E_j (within the
 * GEMM's error bound), across passes of more than 1024 rows. */
typedef struct {
    const float *E, *Q;
    size_t V, d;
    size_t *next; /* (nq) the next token each row expects */
    int bad;
} row_seen;

static void seen_row(void *ctx, size_t i, const float *s, size_t b, size_t j0)
{
    row_seen *w = ctx;
    if (j0 != w->next[i]) w->bad = 1;
    w->next[i] = j0 + b;
    const float *q = w->Q + i * w->d;
    double err = topk_screen_error(w->d, sqrt(topk_dot(q, q, w->d)), topk_max_row_norm(w->E, w->V, w->d));
    for (size_t j = 0; j < b; j += 97)
        if (fabs((double)s[j] - topk_dot(q, w->E + (j0 + j) * w->d, w->d)) > err) w->bad = 1;
}

START_TEST(test_lens_on_row)
{
    tw_rng r = tt_rng(34);
    const size_t V = 3000, d = 32, nq = 1100;
    float *E = tt_uniform(&r, V * d, -1, 1), *Q = tt_uniform(&r, nq * d, -1, 1);
    double *lse = malloc(nq * sizeof *lse);
    row_seen w = {E, Q, V, d, calloc(nq, sizeof(size_t)), 0};
    lens_opts o = {.on_row = seen_row, .row_ctx = &w};
    lens_out out = {.lse = lse};
    ck_assert_int_eq(lens_rows(E, V, d, Q, nq, &o, &out), TW_OK);
    ck_assert_int_eq(w.bad, 0);
    for (size_t i = 0; i < nq; i++) ck_assert_uint_eq(w.next[i], V);
    TT_FREE(E, Q, lse, w.next);
}
END_TEST

/* Rows that are permutations of one another against an all-ones query:
 * their exact scores are one sum in different orders, so topk_dot's
 * values differ only in their last bits, and a faster double dot in
 * another order can rank them otherwise. The ranks still follow topk_dot
 * (the reference's full sort), so only what near_dot settles beyond its
 * error bound is taken from it. */
START_TEST(test_lens_rank_near_ties)
{
    tw_rng r = tt_rng(36);
    const size_t V = 400, d = 48, nq = 3;
    float *E = malloc(V * d * sizeof *E), *Q = malloc(nq * d * sizeof *Q);
    for (size_t i = 0; i < d; i++) /* terms of many magnitudes, so the order of the sum tells */
        E[i] = (float)((tw_rng_next(&r) % 2 ? 1 : -1) * ldexp(1.0 + (double)(tw_rng_next(&r) % 1000) / 1000.0,
                                                            (int)(tw_rng_next(&r) % 40) - 20));
    for (size_t j = 1; j < V; j++) {
        memcpy(E + j * d, E, d * sizeof *E);
        for (size_t i = d - 1; i > 0; i--) { /* a Fisher-Yates shuffle of row 0 */
            size_t t = tw_rng_next(&r) % (i + 1);
            float x = E[j * d + i];
            E[j * d + i] = E[j * d + t];
            E[j * d + t] = x;
        }
    }
    for (size_t i = 0; i < nq * d; i++) Q[i] = 1.0f;
    size_t distinct = 0; /* the test means something only if topk_dot's values differ */
    for (size_t j = 1; j < V; j++) distinct += topk_dot(Q, E + j * d, d) != topk_dot(Q, E, d);
    ck_assert_uint_gt(distinct, V / 4);
    /* the float GEMM's scores of such sums are far from exact (terms of
     * 2^20 cancel), so lse and entropy are only held to 1: the ranks are
     * what this checks */
    check_lens(E, V, d, Q, nq, 3, &r, 1.0);
    TT_FREE(E, Q);
}
END_TEST

START_TEST(test_lens_errors)
{
    float E[6] = {1, 0, 0, 1, 1, 1}, q[2] = {1, 2};
    int32_t bad = 3, ok = 2, rank;
    double lse;
    topk_hit h[4];
    lens_out out = {.top = h, .lse = &lse, .rank = &rank};
    ck_assert_int_eq(lens_rows(E, 3, 2, q, 1, &(lens_opts){.k = 4}, &out), TW_EINVAL);
    ck_assert_int_eq(lens_rows(E, 3, 2, q, 1, &(lens_opts){.k = 1, .n_targets = 1, .targets = &bad}, &out),
                     TW_EINVAL);
    ck_assert_int_eq(
        lens_rows(E, 3, 2, q, 1, &(lens_opts){.n_targets = LENS_MAX_TARGETS + 1, .targets = &ok}, &out),
        TW_EINVAL);
    ck_assert_int_eq(lens_rows(NULL, 3, 2, q, 1, &(lens_opts){.k = 1}, &out), TW_EINVAL);
    /* k = 0: no list, only the sums and the rank */
    ck_assert_int_eq(lens_rows(E, 3, 2, q, 1, &(lens_opts){.n_targets = 1, .targets = &ok}, &out), TW_OK);
    ck_assert_int_eq(rank, 1); /* scores 1, 2, 3: row 2 is the best */
    ck_assert(fabs(lse - log(exp(1) + exp(2) + exp(3))) < 1e-12);
}
END_TEST

TW_CHECK_ONE_MAIN("lens", "lens", 60, test_lens_vs_reference, test_lens_large_scores_progress,
                  test_lens_batch_independent, test_lens_on_row, test_lens_rank_near_ties, test_lens_errors)
