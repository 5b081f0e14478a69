/* The faster paths of the analyses give the answers of the direct ones,
 * bit for bit: the factored key and value probes (K = LN_b(E) Wk and
 * G = E diag(gamma_f) Wo^T cached per block, core/ana/probe_words.h) against
 * every query screened over all d coordinates,
 * in both weight layouts, with and without biases, with exact ties in the
 * vocabulary, from a cold and from a warm cache; and the screened top-k
 * (core/nn/topk.h topk_rows_screened) with a deliberately poor screening
 * against topk_rows_naive. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ana/blockcache.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"
#include "core/model/synth.h"
#include "core/nn/topk.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

/* Same ids and the same scores (==) in every list of a and b. */
static void same_hits(const topk_hit *a, const topk_hit *b, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(a[i].id == b[i].id && a[i].score == b[i].score, "%s item %zu: %d (%.17g) vs %d (%.17g)",
                      what, i, a[i].id, a[i].score, b[i].id, b[i].score);
}

static void same_probe(const probe_words_result *a, const probe_words_result *b)
{
    const size_t W = a->n_words, H = a->n_head, k = a->k;
    ck_assert_uint_eq(W, b->n_words);
    same_hits(a->keys, b->keys, W * H * k, "keys");
    same_hits(a->values, b->values, W * H * k, "values");
    same_hits(a->layer_values, b->layer_values, W * k, "layer values");
    for (size_t i = 0; i < W * H; i++) ck_assert(a->value_norm[i] == b->value_norm[i]);
    for (size_t i = 0; i < W; i++) ck_assert(a->layer_norm[i] == b->layer_norm[i]);
}

/* W ids spread over the vocabulary, with 0, V - 1 and a repeat. */
static int32_t *some_ids(size_t W, size_t V)
{
    int32_t *ids = malloc(W * sizeof *ids);
    for (size_t w = 0; w < W; w++) ids[w] = (int32_t)((w * 7919 + 13) % V);
    ids[0] = 0;
    ids[1] = (int32_t)(V - 1);
    ids[2] = ids[5];
    return ids;
}

/* The largest screening error seen, as a fraction of its bound. */
static double worst_ratio;

/* For each k: DIRECT, FACTORED (cold cache), AUTO (K and G now cached),
 * FACTORED without a cache, and for k = 5 PROBE_CHECK: all identical, and
 * every row's screening score within its bound. */
static void check_model(const gpt2_model *m, size_t W)
{
    const size_t V = (size_t)m->cfg.vocab_size;
    int32_t *ids = some_ids(W, V);
    const size_t ks[] = {1, 5, 20};
    for (int block = 0; block < m->cfg.n_layer; block++)
        for (size_t ki = 0; ki < 3; ki++) {
            blockcache *c = blockcache_new((size_t)1 << 28);
            probe_words_result d, f, a, p;
            ck_assert_int_eq(probe_words_opt(m, ANA_CTX(c), block, ids, W, ks[ki], PROBE_DIRECT, &d), 0);
            ck_assert_int_eq(probe_words_opt(m, ANA_CTX(c), block, ids, W, ks[ki], PROBE_FACTORED, &f), 0);
            blockcache_stats st;
            blockcache_get_stats(c, &st);
            ck_assert_uint_eq(st.entries, 4); /* the statistics of E, max |E_j|, K and G */
            blockcache_entry *en = NULL;      /* LN_b(E) is never formed whole */
            ck_assert_int_eq(ana_lookup_ln1_embeddings(m, ANA_CTX(c), block, &en), 1);
            ck_assert_int_eq(probe_words_opt(m, ANA_CTX(c), block, ids, 3, ks[ki], PROBE_AUTO, &a), 0);
            ck_assert_int_eq(probe_words_opt(m, NULL, block, ids, W, ks[ki], PROBE_FACTORED, &p), 0);
            same_probe(&d, &f);
            same_probe(&d, &p);
            /* AUTO with 3 words uses the cached K and G: the first 3 words' lists */
            same_hits(d.keys, a.keys, 3 * d.n_head * ks[ki], "auto keys");
            same_hits(d.values, a.values, 3 * d.n_head * ks[ki], "auto values");
            same_hits(d.layer_values, a.layer_values, 3 * ks[ki], "auto layer values");
            if (ki == 1) { /* the bounds themselves, on every row */
                probe_words_result ck;
                ck_assert_int_eq(probe_words_opt(m, NULL, block, ids, W, ks[ki], PROBE_CHECK, &ck), 0);
                same_probe(&d, &ck);
                ck_assert_msg(ck.screen_worst <= 1.0 && ck.screen_worst > 0.0,
                              "block %d: screening error / bound reaches %.3g", block, ck.screen_worst);
                if (ck.screen_worst > worst_ratio) worst_ratio = ck.screen_worst;
                probe_words_result_free(&ck);
            }
            probe_words_result_free(&d);
            probe_words_result_free(&f);
            probe_words_result_free(&a);
            probe_words_result_free(&p);
            blockcache_free(c);
        }
    free(ids);
}

START_TEST(test_factored_keys_layouts)
{
    tt_model tm[3]; /* Hugging Face layout, nn.Linear layout, no biases */
    tt_model_build_layouts(
        &tm[0], &tm[1], &tm[2],
        &(tt_model_opts){
            .n_layer = 2, .n_head = 4, .n_embd = 64, .n_ctx = 8, .vocab_size = 3000, .seed = 71});
    unsigned long long s0 = topk_exact_scans();
    for (int v = 0; v < 3; v++) {
        check_model(&tm[v].m, 40);
        tt_model_free(&tm[v]);
    }
    fprintf(
        stderr,
        "factored probes: %llu lists fell back to an exact scan; screening error up to %.3g of its bound\n",
        topk_exact_scans() - s0, worst_ratio);
}
END_TEST

/* Rows of wte repeated (exact ties in every score) and one head dimension
 * of 1 (dh = 1: the screening is a single product). */
START_TEST(test_factored_keys_ties_and_thin_heads)
{
    tt_model tm;
    tt_model_build(&tm,
                   &(tt_model_opts){
                       .n_layer = 1, .n_head = 4, .n_embd = 32, .n_ctx = 8, .vocab_size = 2000, .seed = 72});
    float *wte = (float *)tm.m.p.wte;
    const size_t d = 32;
    for (size_t r = 100; r < 2000; r += 97) memcpy(wte + r * d, wte + 7 * d, d * sizeof(float));
    check_model(&tm.m, 30);
    tt_model_free(&tm);
    tt_model_build(&tm,
                   &(tt_model_opts){
                       .n_layer = 1, .n_head = 16, .n_embd = 16, .n_ctx = 8, .vocab_size = 900, .seed = 73});
    check_model(&tm.m, 50);
    tt_model_free(&tm);
}
END_TEST

/* A canceled request stops the fill of K, leaves nothing half-made in the
 * cache, and the next request computes the same answer. */
START_TEST(test_factored_keys_cancel)
{
    tt_model tm;
    tt_model_build(&tm,
                   &(tt_model_opts){
                       .n_layer = 1, .n_head = 4, .n_embd = 64, .n_ctx = 8, .vocab_size = 9000, .seed = 74});
    int32_t *ids = some_ids(20, 9000);
    blockcache *c = blockcache_new((size_t)1 << 28);
    tw_cancel cancel = {0};
    tw_cancel_raise(&cancel);
    probe_words_result r, d;
    ck_assert_int_eq(
        probe_words_opt(&tm.m, &(ana_ctx){.cache = c, .cancel = &cancel}, 0, ids, 20, 5, PROBE_FACTORED, &r),
        TW_ECANCELED);
    ck_assert_int_eq(probe_words_opt(&tm.m, ANA_CTX(c), 0, ids, 20, 5, PROBE_FACTORED, &r), 0);
    ck_assert_int_eq(probe_words_opt(&tm.m, ANA_CTX(c), 0, ids, 20, 5, PROBE_DIRECT, &d), 0);
    same_probe(&r, &d);
    probe_words_result_free(&r);
    probe_words_result_free(&d);
    blockcache_free(c);
    free(ids);
    tt_model_free(&tm);
}
END_TEST

/* topk_rows_screened with a screening that is only an approximation (the
 * rows and queries rounded to a coarse grid, the bound computed for it):
 * the answer is still topk_rows_naive's, bit for bit; a bound of 0 with a
 * wrong screening must not be trusted blindly either, so it is not tested
 * here (the caller's contract). */
START_TEST(test_screened_coarse)
{
    tw_rng r = tt_rng(75);
    const size_t n = 3000, d = 24, nq = 50, k = 6;
    float *M = malloc(n * d * sizeof(float)), *Q = malloc(nq * d * sizeof(float));
    float *S = malloc(n * d * sizeof(float)), *P = malloc(nq * d * sizeof(float));
    double *err = malloc(nq * sizeof(double));
    tt_fill_uniform(&r, M, n * d, -1, 1);
    tt_fill_uniform(&r, Q, nq * d, -1, 1);
    const double step = 1.0 / 64;
    double rs = 0.0; /* max |S_j| */
    for (size_t i = 0; i < n * d; i++) S[i] = (float)(round(M[i] / step) * step);
    for (size_t i = 0; i < nq * d; i++) P[i] = (float)(round(Q[i] / step) * step);
    for (size_t j = 0; j < n; j++) rs = fmax(rs, sqrt(topk_dot(S + j * d, S + j * d, d)));
    for (size_t i = 0; i < nq; i++) {
        /* |P.S - Q.M| <= |P - Q| |S| + |Q| |S - M|, plus the float GEMM's and topk_dot's rounding */
        double dq = 0.0, qn = sqrt(topk_dot(Q + i * d, Q + i * d, d)),
               pn = sqrt(topk_dot(P + i * d, P + i * d, d));
        for (size_t t = 0; t < d; t++)
            dq += (double)(P[i * d + t] - Q[i * d + t]) * (P[i * d + t] - Q[i * d + t]);
        err[i] =
            2.0 * (sqrt(dq) * rs + qn * (step / 2) * sqrt((double)d) + topk_gamma(d + 1) * pn * rs + 1e-12);
    }
    topk_hit *t1 = malloc(nq * 2 * k * sizeof *t1), *b1 = malloc(nq * 2 * k * sizeof *b1);
    topk_hit *t2 = malloc(nq * k * sizeof *t2), *b2 = malloc(nq * k * sizeof *b2);
    const topk_screen s = {
        .M = M, .n = n, .d = d, .Q = Q, .ldq = d, .S = S, .lds = d, .ds = d, .P = P, .ldp = d, .err = err};
    ck_assert_int_eq(topk_rows_screened(&s, nq, k, t1, b1, 2 * k, NULL), 0); /* lists at stride 2k */
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, t2, b2), 0);
    for (size_t i = 0; i < nq; i++) {
        same_hits(t1 + i * 2 * k, t2 + i * k, k, "screened top");
        same_hits(b1 + i * 2 * k, b2 + i * k, k, "screened bottom");
    }
    /* the plain problem through the same entry point */
    const topk_screen plain = {
        .M = M, .n = n, .d = d, .Q = Q, .ldq = d, .S = M, .lds = d, .ds = d, .P = Q, .ldp = d};
    ck_assert_int_eq(topk_rows_screened(&plain, nq, k, t1, NULL, k, NULL), 0);
    same_hits(t1, t2, nq * k, "plain top");
    /* a bound for another screening is refused without one (err NULL and S != M) */
    const topk_screen bad = {
        .M = M, .n = n, .d = d, .Q = Q, .ldq = d, .S = S, .lds = d, .ds = d, .P = P, .ldp = d};
    ck_assert_int_eq(topk_rows_screened(&bad, nq, k, t1, NULL, k, NULL), TW_EINVAL);
    TT_FREE(M, Q, S, P, err, t1, b1, t2, b2);
}
END_TEST

/* The rows (CERT_D floats each) of a test matrix formed on demand (copied):
 * a topk_former. */
#define CERT_D 24
static double copy_rows(const void *ctx, size_t j0, size_t nr, float *out)
{
    const float *M = ctx;
    memcpy(out, M + j0 * CERT_D, nr * CERT_D * sizeof(float));
    return topk_max_row_norm(out, nr, CERT_D);
}

/* topk_cands_certify_rows with failed: lists whose bound is too loose to be
 * certified by their candidates are marked and left as they were, the
 * others are topk_rows_naive's; the marked ones, computed by one plain
 * pass, are too. With stored and with formed rows. */
START_TEST(test_certify_failed)
{
    tw_rng r = tt_rng(76);
    const size_t n = 2000, d = CERT_D, nq = 40, k = 5;
    float *M = malloc(n * d * sizeof(float)), *Q = malloc(nq * d * sizeof(float)),
          *s = malloc(n * sizeof(float));
    double *err = malloc(nq * sizeof(double));
    unsigned char *failed = malloc(nq);
    tt_fill_uniform(&r, M, n * d, -1, 1);
    tt_fill_uniform(&r, Q, nq * d, -1, 1);
    const float R = topk_max_row_norm(M, n, d);
    topk_hit *ref = malloc(nq * k * sizeof *ref), *out = malloc(nq * k * sizeof *out),
             *fix = malloc(nq * k * sizeof *fix);
    ck_assert_int_eq(topk_rows_naive(M, n, d, Q, nq, k, ref, NULL), 0);
    for (int formed = 0; formed < 2; formed++) {
        topk_cands *c = topk_cands_new(nq, n, k, 1, 0);
        for (size_t i = 0; i < nq; i++) {
            for (size_t j = 0; j < n; j++) s[j] = (float)topk_dot(Q + i * d, M + j * d, d);
            topk_cands_scan(c, i, s, n, 0);
            /* a valid bound for every query; far too loose for every third */
            err[i] = topk_screen_error(d, sqrt(topk_dot(Q + i * d, Q + i * d, d)), R) * (i % 3 ? 1.0 : 1e6);
        }
        for (size_t i = 0; i < nq * k; i++) out[i] = (topk_hit){.id = -7, .score = -7.0};
        const topk_former f = {.n = n, .d = d, .rows = formed ? NULL : M, .form = copy_rows, .ctx = M};
        ck_assert_int_eq(topk_cands_certify_rows(c, &f, Q, d, err, out, NULL, k, failed), 0);
        size_t nf = 0;
        for (size_t i = 0; i < nq; i++) {
            if (failed[i]) {
                nf++;
                for (size_t t = 0; t < k; t++) ck_assert_int_eq(out[i * k + t].id, -7);
                ck_assert_int_eq(topk_rows_formed(&f, Q + i * d, 1, k, fix, NULL, NULL), 0);
                same_hits(fix, ref + i * k, k, "failed list, plain pass");
            } else {
                same_hits(out + i * k, ref + i * k, k, "certified list");
            }
        }
        ck_assert_uint_gt(nf, 0);
        ck_assert_uint_lt(nf, nq);
        topk_cands_free(c);
    }
    /* bad arguments */
    topk_cands *c = topk_cands_new(nq, n, k, 1, 0);
    const topk_former short_f = {.n = n - 1, .d = d, .rows = M};
    ck_assert_int_eq(topk_cands_certify_rows(c, &short_f, Q, d, err, out, NULL, k, failed), TW_EINVAL);
    ck_assert_int_eq(topk_cands_certify_rows(c, NULL, Q, d, err, out, NULL, k, failed), TW_EINVAL);
    topk_cands_free(c);
    TT_FREE(M, Q, s, err, failed, ref, out, fix);
}
END_TEST

/* An F16 checkpoint with its block matrices left in the mapping
 * (gpt2_load_options.lazy_blocks, none kept: each analysis converts what it
 * needs) answers the probes exactly as the same checkpoint converted whole
 * at load. */
START_TEST(test_lazy_f16_same_answers)
{
    char dir[256], err[512];
    tt_tmpdir(dir, sizeof dir, "lazy");
    const synth_opts o = tt_synth_tiny(400, 16, 5, SYNTH_F16);
    ck_assert_msg(synth_write(dir, &o, err, sizeof err) == 0, "%s", err);
    gpt2_model e, z;
    ck_assert_msg(gpt2_load(dir, &e, err, sizeof err) == 0, "%s", err);
    const gpt2_load_options lo = {.lazy_blocks = 1, .block_budget = 0};
    ck_assert_msg(gpt2_load_opts(dir, &z, &lo, err, sizeof err) == 0, "%s", err);
    ck_assert(gpt2_block_is_lazy(&z, 1));
    const size_t V = (size_t)e.cfg.vocab_size, W = 12;
    int32_t *ids = some_ids(W, V);
    for (int block = 0; block < e.cfg.n_layer; block++) {
        blockcache *ce = blockcache_new((size_t)1 << 26), *cz = blockcache_new((size_t)1 << 26);
        probe_words_result a, b;
        ck_assert_int_eq(probe_words_opt(&e, ANA_CTX(ce), block, ids, W, 5, PROBE_FACTORED, &a), 0);
        ck_assert_int_eq(probe_words_opt(&z, ANA_CTX(cz), block, ids, W, 5, PROBE_FACTORED, &b), 0);
        same_probe(&a, &b);
        probe_words_result_free(&b);
        ck_assert_int_eq(probe_words_opt(&z, ANA_CTX(cz), block, ids, W, 5, PROBE_DIRECT, &b), 0);
        same_probe(&a, &b);
        probe_words_result_free(&a);
        probe_words_result_free(&b);
        const int mats[2] = {PROBE_SVD_QK, PROBE_SVD_VO};
        probe_svd_result sa[2], sb[2];
        ck_assert_int_eq(probe_svd_multi(&e, ANA_CTX(ce), block, mats, 2, -1, 3, 4, sa), 0);
        ck_assert_int_eq(probe_svd_multi(&z, ANA_CTX(cz), block, mats, 2, -1, 3, 4, sb), 0);
        for (int i = 0; i < 2; i++) {
            const size_t nh = sa[i].n_heads;
            ck_assert_uint_eq(nh, sb[i].n_heads);
            ck_assert_int_eq(memcmp(sa[i].s, sb[i].s, nh * sa[i].dh * sizeof(double)), 0);
            same_hits(sa[i].left, sb[i].left, nh * 3 * 4, "svd left");
            same_hits(sa[i].right, sb[i].right, nh * 3 * 4, "svd right");
            probe_svd_result_free(&sa[i]);
            probe_svd_result_free(&sb[i]);
        }
        probe_bias_result ba, bb;
        ck_assert_int_eq(probe_svd_bias(&e, ANA_CTX(ce), block, 4, &ba), 0);
        ck_assert_int_eq(probe_svd_bias(&z, ANA_CTX(cz), block, 4, &bb), 0);
        same_hits(ba.hits, bb.hits, ba.n_head * PROBE_BIAS_N * 4, "bias");
        probe_bias_result_free(&ba);
        probe_bias_result_free(&bb);
        blockcache_free(ce);
        blockcache_free(cz);
    }
    gpt2_block_stats st;
    gpt2_get_block_stats(&z, &st);
    ck_assert_uint_eq(st.kept_blocks, 0);
    ck_assert_uint_gt(st.conversions, (unsigned long long)e.cfg.n_layer);
    free(ids);
    gpt2_free(&e);
    gpt2_free(&z);
    tt_rmtree(dir);
}
END_TEST

TW_CHECK_ONE_MAIN("factored", "factored", 180, test_factored_keys_layouts,
                  test_factored_keys_ties_and_thin_heads, test_factored_keys_cancel, test_screened_coarse,
                  test_certify_failed, test_lazy_f16_same_answers)
