/* Unit tests for core/forward: the BLAS path against the naive reference
 * path on a small in-memory random model, causality, GELU forms, logits
 * options and error codes. The numpy reference test (forward_ref.py) checks
 * both paths' maths independently on a checkpoint. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/forward.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

/* ---- A small random model (tests/support/test_model.h) ---- */

enum { T_L = 3, T_H = 4, T_C = 32, T_CTX = 140, T_V = 97 }; /* T_CTX > 128: crosses an attention row block */

static void model_build(tt_model *tm, uint64_t seed)
{
    tt_model_build(
        tm,
        &(tt_model_opts){
            .n_layer = T_L, .n_head = T_H, .n_embd = T_C, .n_ctx = T_CTX, .vocab_size = T_V, .seed = seed});
}

/* n random token ids of the vocabulary. */
static void tokens_fill(int32_t *tok, size_t n, uint64_t seed)
{
    tw_rng r = tt_rng(seed);
    for (size_t t = 0; t < n; t++) tok[t] = (int32_t)tw_rng_below(&r, T_V);
}

static gpt2_forward_result *run(const gpt2_model *m, const int32_t *tok, size_t n, gpt2_gelu g,
                                gpt2_kernels k, gpt2_logits lg)
{
    gpt2_forward_opts o = {.gelu = g, .kernels = k, .logits = lg};
    gpt2_forward_result *r = NULL;
    int rc = gpt2_forward(m, tok, n, &o, &r);
    ck_assert_msg(rc == TW_OK, "gpt2_forward: %s", tw_strerror(rc));
    ck_assert_ptr_nonnull(r);
    return r;
}

/* The test model of seed and a phrase of n tokens from the same seed. */
static void model_and_phrase(tt_model *tm, uint64_t seed, int32_t *tok, size_t n)
{
    model_build(tm, seed);
    tokens_fill(tok, n, seed);
}

/* The BLAS kernels' pass (the other kernels are compared with it). */
static gpt2_forward_result *run_blas(const gpt2_model *m, const int32_t *tok, size_t n, gpt2_gelu g,
                                     gpt2_logits lg)
{
    return run(m, tok, n, g, GPT2_KERNELS_BLAS, lg);
}

/* Max |a-b| over count values, and the scale max(|b|) it is judged against. */
static double max_abs_diff(const float *a, const float *b, size_t count, double *scale)
{
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; /* NaN propagates as a failure */
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    if (scale) *scale = s;
    return d;
}

/* Fails with the largest difference when rel. error exceeds tol. */
static void expect_close(const char *what, const float *got, const float *ref, size_t count, double tol)
{
    double scale;
    double d = max_abs_diff(got, ref, count, &scale);
    double rel = d / (scale > 0 ? scale : 1.0);
    ck_assert_msg(rel < tol, "%s: max abs diff %.3g, scale %.3g, relative %.3g >= %.1g", what, d, scale, rel,
                  tol);
}

/* Compares every kept state of two results with relative tolerance tol. */
static void expect_results_close(const gpt2_forward_result *a, const gpt2_forward_result *b, double tol,
                                 const char *tag)
{
    ck_assert_int_eq(a->n, b->n);
    const size_t n = (size_t)a->n, C = T_C, L = T_L, H = T_H;
    char what[96];
    expect_close("emb", a->emb, b->emb, n * C, tol);
    expect_close("x0", a->x0, b->x0, n * C, tol);
    expect_close("x0_lnf", a->x0_lnf, b->x0_lnf, n * C, tol);
    for (size_t l = 0; l < L; l++) {
        snprintf(what, sizeof what, "%s resid[%zu]", tag, l);
        expect_close(what, a->resid + l * n * C, b->resid + l * n * C, n * C, tol);
        snprintf(what, sizeof what, "%s resid_lnf[%zu]", tag, l);
        expect_close(what, a->resid_lnf + l * n * C, b->resid_lnf + l * n * C, n * C, tol);
        snprintf(what, sizeof what, "%s att[%zu]", tag, l);
        expect_close(what, a->att + l * H * n * n, b->att + l * H * n * n, H * n * n, tol);
    }
    ck_assert_int_eq(a->n_logits, b->n_logits);
    snprintf(what, sizeof what, "%s logits", tag);
    if (a->n_logits) expect_close(what, a->logits, b->logits, (size_t)a->n_logits * T_V, tol);
}

/* ---- Kernels ---- */

START_TEST(test_matmul_blas_vs_naive)
{
    const size_t N = 7, IC = 13, OC = 11;
    float inp[7 * 13], w[13 * 11], bias[11], out1[7 * 11], out2[7 * 11];
    tw_rng r = tt_rng(42);
    tt_fill_uniform(&r, inp, N * IC, -0.5, 0.5);
    tt_fill_uniform(&r, w, IC * OC, -0.5, 0.5);
    tt_fill_uniform(&r, bias, OC, -0.5, 0.5);
    gpt2_mat W = gpt2_mat_rowmajor(w, OC);
    matmul_forward(out1, inp, W, bias, N, IC, OC);
    matmul_forward_naive(out2, inp, W, bias, N, IC, OC);
    expect_close("matmul with bias", out1, out2, N * OC, 1e-6);
    matmul_forward(out1, inp, W, NULL, N, IC, OC);
    matmul_forward_naive(out2, inp, W, NULL, N, IC, OC);
    expect_close("matmul without bias", out1, out2, N * OC, 1e-6);
    /* the same matrix stored as nn.Linear's (out, in) */
    float wt[13 * 11];
    for (size_t i = 0; i < IC; i++)
        for (size_t j = 0; j < OC; j++) wt[j * IC + i] = w[i * OC + j];
    gpt2_mat WT = {wt, 1, IC};
    float out3[7 * 11];
    matmul_forward(out3, inp, WT, bias, N, IC, OC);
    matmul_forward_naive(out1, inp, W, bias, N, IC, OC);
    expect_close("matmul of the (out, in) layout", out3, out1, N * OC, 1e-6);
    /* one element by hand: out[2][5] = sum_k inp[2][k] w[k][5] */
    double s = 0.0;
    for (size_t k = 0; k < IC; k++) s += (double)inp[2 * IC + k] * w[k * OC + 5];
    ck_assert_double_eq_tol(out2[2 * OC + 5], s, 1e-6);
}
END_TEST

START_TEST(test_gelu_values)
{
    /* Reference values: exact GELU(x) = x Phi(x); tanh form from its formula. */
    const float x[] = {-3.0f, -1.0f, 0.0f, 0.5f, 1.0f, 2.0f};
    const double exact[] = {-0.0040496974, -0.15865525393, 0.0, 0.34573123063, 0.84134474607, 1.95449973610};
    float y[6];
    gelu_forward(y, x, 6, GPT2_GELU_ERF);
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(y[i], exact[i], 5e-7);
    gelu_forward(y, x, 6, GPT2_GELU_TANH);
    for (int i = 0; i < 6; i++) {
        double u = sqrt(2.0 / M_PI) * (x[i] + 0.044715 * x[i] * x[i] * x[i]);
        ck_assert_double_eq_tol(y[i], 0.5 * x[i] * (1.0 + tanh(u)), 5e-7);
    }
    /* the forms differ, by about 1.5e-4 at x = 1 */
    ck_assert_double_gt(fabs(0.84134474607 - y[4]), 1e-4);
}
END_TEST

START_TEST(test_attention_blas_vs_naive)
{
    const size_t N = 9, C = 12, H = 3;
    float qkv[9 * 36], out1[9 * 12], out2[9 * 12], att1[3 * 81], att2[3 * 81];
    tw_rng r = tt_rng(7);
    tt_fill_uniform(&r, qkv, N * 3 * C, -2.0, 2.0);
    attention_forward(out1, att1, qkv, N, C, H);
    attention_forward_naive(out2, att2, qkv, N, C, H);
    expect_close("attention out", out1, out2, N * C, 1e-5);
    expect_close("attention pattern", att1, att2, H * N * N, 1e-5);
    for (size_t h = 0; h < H; h++)
        for (size_t t = 0; t < N; t++) {
            double s = 0.0;
            for (size_t u = 0; u < N; u++) {
                float p = att1[(h * N + t) * N + u];
                if (u > t)
                    ck_assert_float_eq(p, 0.0f);
                else
                    ck_assert_float_ge(p, 0.0f);
                s += p;
            }
            ck_assert_double_eq_tol(s, 1.0, 1e-5);
        }
    /* position 0 attends only to itself: its output is its value vector */
    for (size_t h = 0; h < H; h++)
        for (size_t i = 0; i < C / H; i++)
            ck_assert_float_eq(out2[h * (C / H) + i], qkv[2 * C + h * (C / H) + i]);
}
END_TEST

/* Long phrase: spans several row blocks of the BLAS path, the last partial. */
START_TEST(test_attention_blocks)
{
    const size_t N = 300, C = 8, H = 2;
    float *qkv = malloc(N * 3 * C * sizeof(float));
    float *out1 = malloc(N * C * sizeof(float)), *out2 = malloc(N * C * sizeof(float));
    float *att1 = malloc(H * N * N * sizeof(float)), *att2 = malloc(H * N * N * sizeof(float));
    ck_assert(qkv && out1 && out2 && att1 && att2);
    tw_rng r = tt_rng(11);
    tt_fill_uniform(&r, qkv, N * 3 * C, -2.0, 2.0);
    for (size_t i = 0; i < H * N * N; i++) att1[i] = NAN; /* every entry must be written */
    attention_forward(out1, att1, qkv, N, C, H);
    attention_forward_naive(out2, att2, qkv, N, C, H);
    expect_close("blocked attention out", out1, out2, N * C, 1e-5);
    expect_close("blocked attention pattern", att1, att2, H * N * N, 1e-5);
    for (size_t h = 0; h < H; h++)
        for (size_t t = 0; t < N; t++)
            for (size_t u = t + 1; u < N; u++) ck_assert_float_eq(att1[(h * N + t) * N + u], 0.0f);
    TT_FREE(qkv, out1, out2, att1, att2);
}
END_TEST

/* Softmax must not overflow on large scores. */
START_TEST(test_attention_large_scores)
{
    const size_t N = 3, C = 2, H = 1;
    float qkv[3 * 6] = {0};
    for (size_t t = 0; t < N; t++) {
        qkv[t * 6 + 0] = 100.0f;            /* q */
        qkv[t * 6 + 2] = 100.0f * (float)t; /* k: score grows to 1e4/sqrt(2) */
        qkv[t * 6 + 4] = (float)t;          /* v */
    }
    float out[6], att[9];
    attention_forward(out, att, qkv, N, C, H);
    for (size_t i = 0; i < 9; i++) ck_assert(isfinite(att[i]));
    ck_assert_float_eq_tol(att[2 * 3 + 2], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(out[2 * 2 + 0], 2.0f, 1e-5f);
}
END_TEST

/* ---- Whole forward pass ---- */

START_TEST(test_fast_vs_naive)
{
    tt_model tm;
    model_build(&tm, 1);
    int32_t tok[T_CTX];
    const size_t lens[] = {1, 5, T_CTX};
    for (int gi = 0; gi < 2; gi++)
        for (size_t li = 0; li < 3; li++) {
            size_t n = lens[li];
            tokens_fill(tok, n, 100 + n);
            gpt2_gelu g = gi ? GPT2_GELU_ERF : GPT2_GELU_TANH;
            gpt2_forward_result *f = run(&tm.m, tok, n, g, GPT2_KERNELS_BLAS, GPT2_LOGITS_ALL);
            gpt2_forward_result *s = run(&tm.m, tok, n, g, GPT2_KERNELS_NAIVE, GPT2_LOGITS_ALL);
            ck_assert_int_eq(f->gelu, g);
            ck_assert_int_eq(f->kernels, GPT2_KERNELS_BLAS);
            ck_assert_int_eq(s->kernels, GPT2_KERNELS_NAIVE);
            char tag[48];
            snprintf(tag, sizeof tag, "%s n=%zu", gpt2_gelu_name(g), n);
            expect_results_close(f, s, 1e-4, tag);
            /* the states are not trivially equal to each other */
            double sc;
            ck_assert_double_gt(max_abs_diff(f->resid, f->x0, n * T_C, &sc), 0.1 * sc);
            gpt2_forward_free(f);
            gpt2_forward_free(s);
        }
    tt_model_free(&tm);
}
END_TEST

/* e, x0 and the LN of x0 computed directly from the parameters. */
START_TEST(test_embeddings_direct)
{
    tt_model tm;
    model_build(&tm, 2);
    int32_t tok[4] = {0, 96, 5, 5};
    gpt2_forward_result *r = run_blas(&tm.m, tok, 4, GPT2_GELU_TANH, GPT2_LOGITS_LAST);
    const gpt2_params *p = &tm.m.p;
    for (size_t t = 0; t < 4; t++) {
        double mean = 0, var = 0;
        for (size_t i = 0; i < T_C; i++) {
            ck_assert_float_eq(r->emb[t * T_C + i], p->wte[tok[t] * T_C + i]);
            ck_assert_float_eq(r->x0[t * T_C + i], p->wte[tok[t] * T_C + i] + p->wpe[t * T_C + i]);
            mean += r->x0[t * T_C + i];
        }
        mean /= T_C;
        for (size_t i = 0; i < T_C; i++) var += pow(r->x0[t * T_C + i] - mean, 2);
        var /= T_C;
        for (size_t i = 0; i < T_C; i++) {
            double y = (r->x0[t * T_C + i] - mean) / sqrt(var + 1e-5) * p->ln_f_w[i] + p->ln_f_b[i];
            ck_assert_double_eq_tol(r->x0_lnf[t * T_C + i], y, 1e-5);
        }
    }
    ck_assert_int_eq(r->tokens[1], 96);
    gpt2_forward_free(r);
    tt_model_free(&tm);
}
END_TEST

START_TEST(test_causality)
{
    tt_model tm;
    model_build(&tm, 3);
    const size_t n = 11, C = T_C, H = T_H;
    int32_t a[11], b[11];
    tokens_fill(a, n, 9);
    memcpy(b, a, sizeof a);
    b[n - 1] = (a[n - 1] + 1) % T_V;
    b[n - 3] = (a[n - 3] + 7) % T_V; /* changes positions >= n-3 */
    const size_t first = n - 3;
    for (int k = 0; k < 2; k++) {
        gpt2_kernels kk = k ? GPT2_KERNELS_NAIVE : GPT2_KERNELS_BLAS;
        gpt2_forward_result *ra = run(&tm.m, a, n, GPT2_GELU_TANH, kk, GPT2_LOGITS_ALL);
        gpt2_forward_result *rb = run(&tm.m, b, n, GPT2_GELU_TANH, kk, GPT2_LOGITS_ALL);
        for (size_t l = 0; l < T_L; l++) {
            const float *xa = ra->resid_lnf + l * n * C, *xb = rb->resid_lnf + l * n * C;
            expect_close("earlier positions after a later change", xa, xb, first * C, 1e-6);
            double sc;
            double d = max_abs_diff(xa + first * C, xb + first * C, (n - first) * C, &sc);
            ck_assert_msg(d > 1e-3 * sc, "changed positions did not change (block %zu)", l);
            for (size_t h = 0; h < H; h++)
                expect_close("earlier attention rows", ra->att + ((l * H + h) * n) * n,
                             rb->att + ((l * H + h) * n) * n, first * n, 1e-6);
        }
        expect_close("earlier logits", ra->logits, rb->logits, first * T_V, 1e-6);

        /* the prefix alone gives the same states as inside the longer phrase */
        gpt2_forward_result *rp = run(&tm.m, a, first, GPT2_GELU_TANH, kk, GPT2_LOGITS_ALL);
        for (size_t l = 0; l < T_L; l++)
            expect_close("prefix run", rp->resid + l * first * C, ra->resid + l * n * C, first * C, 1e-5);
        expect_close("prefix logits", rp->logits, ra->logits, first * T_V, 1e-5);
        gpt2_forward_free(ra);
        gpt2_forward_free(rb);
        gpt2_forward_free(rp);
    }
    tt_model_free(&tm);
}
END_TEST

START_TEST(test_gelu_forms)
{
    enum { n = 8 };
    const size_t C = T_C;
    tt_model tm;
    int32_t tok[n];
    model_and_phrase(&tm, 4, tok, n);
    gpt2_forward_result *t = run_blas(&tm.m, tok, n, GPT2_GELU_TANH, GPT2_LOGITS_LAST);
    gpt2_forward_result *e = run_blas(&tm.m, tok, n, GPT2_GELU_ERF, GPT2_LOGITS_LAST);
    ck_assert_int_eq(t->gelu, GPT2_GELU_TANH);
    ck_assert_int_eq(e->gelu, GPT2_GELU_ERF);
    ck_assert_str_eq(gpt2_gelu_name(t->gelu), "tanh");
    ck_assert_str_eq(gpt2_gelu_name(e->gelu), "erf");
    /* before any MLP: bit-identical */
    ck_assert_mem_eq(t->emb, e->emb, n * C * sizeof(float));
    ck_assert_mem_eq(t->x0, e->x0, n * C * sizeof(float));
    ck_assert_mem_eq(t->x0_lnf, e->x0_lnf, n * C * sizeof(float));
    ck_assert_mem_eq(t->att, e->att, T_H * n * n * sizeof(float)); /* block 0 attention */
    /* after: slightly different */
    for (size_t l = 0; l < T_L; l++) {
        double sc;
        double d = max_abs_diff(t->resid + l * n * C, e->resid + l * n * C, n * C, &sc);
        ck_assert_msg(d > 1e-7 * sc && d < 1e-2 * sc, "block %zu: tanh vs erf differ by %.3g (scale %.3g)", l,
                      d, sc);
    }
    gpt2_forward_free(t);
    gpt2_forward_free(e);
    tt_model_free(&tm);
}
END_TEST

START_TEST(test_logits_options)
{
    static const gpt2_logits mode[3] = {GPT2_LOGITS_ALL, GPT2_LOGITS_LAST, GPT2_LOGITS_NONE};
    enum { n = 6 };
    const size_t C = T_C;
    tt_model tm;
    int32_t tok[n];
    model_and_phrase(&tm, 5, tok, n);
    gpt2_forward_result *r[3];
    for (int i = 0; i < 3; i++) r[i] = run_blas(&tm.m, tok, n, GPT2_GELU_TANH, mode[i]);
    gpt2_forward_result *all = r[0], *last = r[1], *none = r[2];
    ck_assert_int_eq(all->n_logits, (int)n);
    ck_assert_int_eq(all->logits_pos0, 0);
    ck_assert_int_eq(last->n_logits, 1);
    ck_assert_int_eq(last->logits_pos0, (int)n - 1);
    ck_assert_int_eq(none->n_logits, 0);
    ck_assert_ptr_null(none->logits);
    expect_close("last row", last->logits, all->logits + (n - 1) * T_V, T_V, 1e-6);
    /* logits = LN_f(x_L) . wte rows, directly */
    const float *h = all->resid_lnf + (T_L - 1) * n * C + 2 * C;
    for (size_t v = 0; v < T_V; v += 13) {
        double s = 0;
        for (size_t i = 0; i < C; i++) s += (double)h[i] * tm.m.p.wte[v * C + i];
        ck_assert_double_eq_tol(all->logits[2 * T_V + v], s, 1e-4);
    }
    /* skip_attention keeps the states, drops the patterns */
    gpt2_forward_opts o = {.skip_attention = 1};
    gpt2_forward_result *sk = NULL;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, n, &o, &sk), TW_OK);
    ck_assert_ptr_null(sk->att);
    ck_assert_mem_eq(sk->resid_lnf, last->resid_lnf, T_L * n * C * sizeof(float));
    ck_assert_mem_eq(sk->logits, last->logits, T_V * sizeof(float));
    /* NULL options = defaults: tanh, BLAS, last logits */
    gpt2_forward_result *d = NULL;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, n, NULL, &d), TW_OK);
    ck_assert_int_eq(d->gelu, GPT2_GELU_TANH);
    ck_assert_mem_eq(d->logits, last->logits, T_V * sizeof(float));
    for (int i = 0; i < 3; i++) gpt2_forward_free(r[i]);
    gpt2_forward_free(sk);
    gpt2_forward_free(d);
    tt_model_free(&tm);
}
END_TEST

/* issue 9, item 2: the forward pass stops between blocks when its request
 * is canceled or passes its deadline. */
START_TEST(test_forward_cancel)
{
    tt_model tm;
    model_build(&tm, 7);
    int32_t tok[T_CTX];
    tokens_fill(tok, T_CTX, 7);
    gpt2_forward_result *r = NULL;
    tw_cancel gone = {0};
    tw_cancel_raise(&gone);
    gpt2_forward_opts o = {.cancel = &gone};
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, T_CTX, &o, &r), TW_ECANCELED);
    ck_assert_ptr_null(r);
    tw_cancel late = {.deadline = 1e-9};
    o.cancel = &late;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, T_CTX, &o, &r), TW_ETIMEDOUT);
    ck_assert_ptr_null(r);
    _Atomic int changed = 1; /* the model's own flag: its checkpoint changed */
    tw_cancel shared = {.shared = &changed};
    o.cancel = &shared;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, T_CTX, &o, &r), TW_ECANCELED);
    o.cancel = NULL;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, T_CTX, &o, &r), TW_OK);
    gpt2_forward_free(r);
    tt_model_free(&tm);
}
END_TEST

START_TEST(test_errors)
{
    tt_model tm;
    model_build(&tm, 6);
    int32_t tok[T_CTX + 1];
    tokens_fill(tok, T_CTX + 1, 6);
    gpt2_forward_result *r = (gpt2_forward_result *)&tok; /* must be overwritten with NULL */
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 0, NULL, &r), TW_ELENGTH);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, T_CTX + 1, NULL, &r), TW_ELENGTH);
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, SIZE_MAX, NULL, &r), TW_ELENGTH);
    tok[3] = T_V;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 5, NULL, &r), TW_ETOKEN);
    tok[3] = -1;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 5, NULL, &r), TW_ETOKEN);
    ck_assert_ptr_null(r);
    tok[3] = T_V - 1;
    ck_assert_int_eq(gpt2_forward(NULL, tok, 5, NULL, &r), TW_EINVAL);
    ck_assert_int_eq(gpt2_forward(&tm.m, NULL, 5, NULL, &r), TW_EINVAL);
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 5, NULL, NULL), TW_EINVAL);
    gpt2_forward_opts bad = {.gelu = (gpt2_gelu)7};
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 5, &bad, &r), TW_EINVAL);
    const float *keep = tm.m.p.h[1].fc_w.p;
    tm.m.p.h[1].fc_w.p = NULL;
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 5, NULL, &r), TW_EINVAL);
    tm.m.p.h[1].fc_w.p = keep;
    tm.m.cfg.n_head = 5; /* 32 % 5 != 0 */
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, 5, NULL, &r), TW_EINVAL);
    tm.m.cfg.n_head = T_H;
    ck_assert_ptr_null(r);
    ck_assert_str_eq(tw_strerror(TW_ETOKEN), "token id out of range");
    /* the full context is accepted */
    ck_assert_int_eq(gpt2_forward(&tm.m, tok, T_CTX, NULL, &r), TW_OK);
    ck_assert_int_eq(r->n, T_CTX);
    gpt2_forward_free(r);
    gpt2_forward_free(NULL);
    tt_model_free(&tm);
}
END_TEST

/* The same weights stored as nn.Linear's (out, in), nanoGPT's layout, give
 * the same pass (up to the rounding of the other GEMM kernel); a model
 * without biases runs, and equals the model whose biases are all zero. */
START_TEST(test_layouts_and_no_bias)
{
    tt_model hf, lin, nob;
    tt_model_opts o = {
        .n_layer = T_L, .n_head = T_H, .n_embd = T_C, .n_ctx = T_CTX, .vocab_size = T_V, .seed = 77};
    tt_model_build_layouts(&hf, &lin, &nob, &o);
    int32_t tok[19];
    tokens_fill(tok, 19, 5);
    gpt2_forward_result *a = run_blas(&hf.m, tok, 19, GPT2_GELU_TANH, GPT2_LOGITS_ALL);
    gpt2_forward_result *b = run_blas(&lin.m, tok, 19, GPT2_GELU_TANH, GPT2_LOGITS_ALL);
    expect_close("resid_lnf, (out, in) layout", b->resid_lnf, a->resid_lnf, (size_t)T_L * 19 * T_C, 1e-5);
    expect_close("logits, (out, in) layout", b->logits, a->logits, (size_t)19 * T_V, 1e-5);
    gpt2_forward_result *c = run_blas(&nob.m, tok, 19, GPT2_GELU_TANH, GPT2_LOGITS_ALL);
    /* the reference: the biased model with every bias and beta zeroed */
    float *zeros = calloc(4 * T_C, sizeof(float));
    ck_assert_ptr_nonnull(zeros);
    gpt2_model z = nob.m;
    gpt2_block *blocks = calloc(T_L, sizeof *blocks);
    ck_assert_ptr_nonnull(blocks);
    for (int l = 0; l < T_L; l++) {
        blocks[l] = nob.m.p.h[l];
        blocks[l].ln_1_b = blocks[l].ln_2_b = blocks[l].attn_proj_b = blocks[l].fc_proj_b = zeros;
        blocks[l].attn_b = blocks[l].fc_b = zeros;
    }
    z.p.h = blocks;
    z.p.ln_f_b = zeros;
    gpt2_forward_result *d = run(&z, tok, 19, GPT2_GELU_TANH, GPT2_KERNELS_NAIVE, GPT2_LOGITS_ALL);
    expect_close("resid_lnf, no biases", c->resid_lnf, d->resid_lnf, (size_t)T_L * 19 * T_C, 1e-5);
    gpt2_forward_free(a);
    gpt2_forward_free(b);
    gpt2_forward_free(c);
    gpt2_forward_free(d);
    TT_FREE(blocks, zeros);
    tt_model_free(&hf);
    tt_model_free(&lin);
    tt_model_free(&nob);
}
END_TEST

int main(void)
{
    const TTest *const kernels_tests[] = {test_matmul_blas_vs_naive,    test_gelu_values,
                                          test_attention_blas_vs_naive, test_attention_blocks,
                                          test_attention_large_scores,  NULL};
    const TTest *const forward_tests[] = {test_fast_vs_naive,       test_embeddings_direct, test_causality,
                                          test_gelu_forms,          test_logits_options,    test_errors,
                                          test_layouts_and_no_bias, test_forward_cancel,    NULL};
    const tw_case cases[] = {
        {.name = "kernels", .tests = kernels_tests},
        {.name = "forward", .timeout = 60, .tests = forward_tests},
    };
    return tw_check_main("forward", cases, 2);
}
