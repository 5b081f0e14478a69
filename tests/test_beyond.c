/* Unit tests of the analyses beyond the paper (docs/MATH.md §9-§13): the MLP
 * value vectors, search, SVD and sub-updates, the layer-norm geometry and
 * unselectable keys, the 2D sketch and the decomposition self-check, and the
 * pieces they added below them (the forward pass's kept MLP activations and
 * mid-block states, topk_rank_rows). Each against a straightforward double
 * computation written here, on small in-memory models in both weight layouts
 * and without biases (tests/support/test_model.h). */
#include <check.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ana/blockcache.h"
#include "core/ana/lngeom.h"
#include "core/ana/mlp.h"
#include "core/ana/selfcheck.h"
#include "core/nn/forward.h"
#include "core/nn/topk.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/test_rank.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

enum { B_L = 2, B_H = 4, B_D = 32, B_V = 300, B_CTX = 16 };
#define B_F (4 * B_D)

/* The three variants of one model: Hugging Face layout, nn.Linear layout,
 * no biases (same weights). */
static void model_variant(tt_model *tm, int variant, uint64_t seed)
{
    tt_model_build(tm, &(tt_model_opts){.n_layer = B_L,
                                        .n_head = B_H,
                                        .n_embd = B_D,
                                        .n_ctx = B_CTX,
                                        .vocab_size = B_V,
                                        .seed = seed,
                                        .linear_layout = variant == 1,
                                        .no_bias = variant == 2});
}

static const char *variant_name(int v) { return v == 0 ? "hf" : v == 1 ? "linear" : "no_bias"; }

/* Runs check on each of the three variants of the model of seed. */
static void for_each_variant(uint64_t seed, void (*check)(const gpt2_model *m, int var))
{
    for (int var = 0; var < 3; var++) {
        tt_model tm;
        model_variant(&tm, var, seed);
        check(&tm.m, var);
        tt_model_free(&tm);
    }
}

/* ---- naive helpers (double) ---- */

/* Value vector i of block b (double, d). */
static void value_vec(const gpt2_model *m, int b, size_t i, double *v)
{
    for (size_t j = 0; j < (size_t)m->cfg.n_embd; j++) v[j] = GPT2_AT(m->p.h[b].fc_proj_w, i, j);
}

/* ---- forward: kept MLP activations and mid-block states ---- */

static void test_forward_keeps_mlp_and_mid_on(const gpt2_model *m, int var)
{
    const size_t n = 9, d = B_D, F = B_F, L = B_L;
    int32_t tok[9] = {1, 5, 299, 17, 0, 42, 42, 100, 7};
    gpt2_forward_result *plain = NULL, *kept = NULL, *one = NULL;
    ck_assert_int_eq(gpt2_forward(m, tok, n, NULL, &plain), TW_OK);
    ck_assert_ptr_null(plain->mlp_act);
    ck_assert_ptr_null(plain->resid_mid);
    gpt2_forward_opts o = {.keep_mlp = 1, .keep_mid = 1};
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &kept), TW_OK);
    ck_assert_int_eq(kept->n_inner, (int)F);
    ck_assert_int_eq(kept->keep_blocks, (int)L);
    /* keeping changes nothing else */
    ck_assert_mem_eq(plain->resid, kept->resid, L * n * d * sizeof(float));
    double *z = malloc(d * sizeof(double)), *h = malloc(F * sizeof(double));
    float *zf = malloc(d * sizeof(float));
    double worst = 0;
    for (size_t l = 0; l < L; l++) {
        const gpt2_block *b = &m->p.h[l];
        for (size_t t = 0; t < n; t++) {
            const float *mid = kept->resid_mid + (l * n + t) * d;
            tt_layernorm_row(mid, b->ln_2_w, b->ln_2_b, d, 1e-5, z);
            for (size_t i = 0; i < F; i++) {
                double s = b->fc_b ? b->fc_b[i] : 0.0;
                for (size_t j = 0; j < d; j++) s += z[j] * GPT2_AT(b->fc_w, j, i);
                h[i] = 0.5 * s * (1.0 + tanh(sqrt(2.0 / M_PI) * (s + 0.044715 * s * s * s)));
                double got = kept->mlp_act[(l * n + t) * F + i];
                worst = fmax(worst, fabs(got - h[i]));
                ck_assert_msg(fabs(got - h[i]) <= 1e-4 * (1 + fabs(h[i])), "%s act %zu %zu %zu: %.7g vs %.7g",
                              variant_name(var), l, t, i, got, h[i]);
            }
            /* the block's output is the mid state plus the MLP of it */
            for (size_t j = 0; j < d; j++) {
                double s = (double)mid[j] + (b->fc_proj_b ? b->fc_proj_b[j] : 0.0);
                for (size_t i = 0; i < F; i++)
                    s += (double)kept->mlp_act[(l * n + t) * F + i] * GPT2_AT(b->fc_proj_w, i, j);
                ck_assert_double_eq_tol(kept->resid[(l * n + t) * d + j], s, 1e-4 * (1 + fabs(s)));
            }
        }
    }
    (void)zf;
    /* one block only */
    o.keep_select = GPT2_KEEP_BLOCK;
    o.keep_block = 1;
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &one), TW_OK);
    ck_assert_int_eq(one->keep_block0, 1);
    ck_assert_int_eq(one->keep_blocks, 1);
    ck_assert_mem_eq(one->mlp_act, kept->mlp_act + n * F, n * F * sizeof(float));
    ck_assert_mem_eq(one->resid_mid, kept->resid_mid + n * d, n * d * sizeof(float));
    gpt2_forward_free(one);
    o.keep_block = (int)L;
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &one), TW_ERANGE);
    ck_assert_ptr_null(one);
    /* the naive kernels keep the same */
    o = (gpt2_forward_opts){.keep_mlp = 1, .kernels = GPT2_KERNELS_NAIVE};
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &one), TW_OK);
    for (size_t i = 0; i < L * n * F; i++)
        ck_assert(fabs(one->mlp_act[i] - kept->mlp_act[i]) <= 1e-4 * (1 + fabs(kept->mlp_act[i])));
    gpt2_forward_free(one);
    TT_FREE(z, h, zf);
    gpt2_forward_free(plain);
    gpt2_forward_free(kept);
}

START_TEST(test_forward_keeps_mlp_and_mid) { for_each_variant(11, test_forward_keeps_mlp_and_mid_on); }
END_TEST

/* ---- topk_rank_rows ---- */

START_TEST(test_rank_rows_vs_sort)
{
    const size_t n = 700, d = 24, nq = 9;
    tw_rng r = tt_rng(5);
    float *M = tt_normal(&r, n * d, 0, 1);
    float *Q = tt_normal(&r, nq * d, 0, 1);
    for (size_t j = 100; j < 110; j++) memcpy(M + j * d, M + 3 * d, d * sizeof(float)); /* exact ties */
    memset(Q + 8 * d, 0, d * sizeof(float));                                            /* all scores equal */
    int32_t ids[9] = {0, 3, 105, 699, 350, 3, 109, 42, 500};
    size_t ranks[9];
    ck_assert_int_eq(topk_rank_rows(M, n, d, Q, nq, ids, ranks, NULL), TW_OK);
    tt_scored *all = malloc(n * sizeof *all);
    for (size_t i = 0; i < nq; i++) {
        for (size_t j = 0; j < n; j++) all[j] = (tt_scored){topk_dot(Q + i * d, M + j * d, d), (int)j};
        tt_sort_desc(all, n);
        size_t want = 0;
        for (size_t j = 0; j < n; j++)
            if (all[j].id == ids[i]) want = j + 1;
        ck_assert_msg(ranks[i] == want, "query %zu id %d: rank %zu, sorted %zu", i, ids[i], ranks[i], want);
    }
    ck_assert_uint_eq(ranks[8], 501); /* all equal: lower ids first */
    /* and the same as topk_rows's list with k = n */
    topk_hit *top = malloc(n * sizeof *top);
    ck_assert_int_eq(topk_rows(M, n, d, Q + d, 1, n, top, NULL), TW_OK);
    ck_assert_int_eq(top[ranks[1] - 1].id, 3);
    int32_t bad = (int32_t)n;
    ck_assert_int_eq(topk_rank_rows(M, n, d, Q, 1, &bad, ranks, NULL), TW_EINVAL);
    TT_FREE(top, all, M, Q);
}
END_TEST

/* ---- §9 value vectors ---- */

static void test_mlp_values_vs_naive_on(const gpt2_model *m, int var)
{
    (void)var;
    const size_t V = B_V, d = B_D, F = B_F, k = 5;
    double *E = tt_to_double(m->p.wte, V * d), *v = malloc(d * sizeof(double));
    blockcache *c = blockcache_new(1 << 24);
    for (int b = 0; b < B_L; b++) {
        mlp_values_result r;
        ck_assert_int_eq(mlp_values(m, ANA_CTX(c), b, NULL, 0, k, &r), TW_OK);
        ck_assert_uint_eq(r.n, F);
        for (size_t i = 0; i < F; i++) {
            ck_assert_int_eq(r.neurons[i], (int)i);
            value_vec(m, b, i, v);
            ck_assert_double_eq_tol(r.norm[i], sqrt(tt_dot(v, v, d)), 1e-12);
            tt_scored *top = tt_rank_all(v, E, V, d, 1), *bot = tt_rank_all(v, E, V, d, -1);
            tt_check_list("values top", r.top + i * k, top, k, 1e-9, 1);
            tt_check_list("values bottom", r.bottom + i * k, bot, k, 1e-9, -1);
            TT_FREE(top, bot);
        }
        /* a subset gives the rows of the whole */
        int32_t sub[] = {F - 1, 0, 17, 17};
        mlp_values_result s;
        ck_assert_int_eq(mlp_values(m, NULL, b, sub, 4, k, &s), TW_OK);
        for (size_t i = 0; i < 4; i++) {
            ck_assert_int_eq(s.neurons[i], sub[i]);
            ck_assert(s.norm[i] == r.norm[sub[i]]);
            for (size_t j = 0; j < k; j++) {
                ck_assert_int_eq(s.top[i * k + j].id, r.top[(size_t)sub[i] * k + j].id);
                ck_assert(s.top[i * k + j].score == r.top[(size_t)sub[i] * k + j].score);
            }
        }
        mlp_values_result_free(&s);
        mlp_values_result_free(&r);
    }
    mlp_values_result r;
    int32_t bad = (int32_t)F;
    ck_assert_int_eq(mlp_values(m, NULL, B_L, NULL, 0, k, &r), TW_EBLOCK);
    ck_assert_int_eq(mlp_values(m, NULL, 0, NULL, 0, 0, &r), TW_EK);
    ck_assert_int_eq(mlp_values(m, NULL, 0, &bad, 1, k, &r), TW_ERANGE);
    ck_assert_ptr_null(r.top);
    blockcache_free(c);
    TT_FREE(E, v);
}

START_TEST(test_mlp_values_vs_naive) { for_each_variant(21, test_mlp_values_vs_naive_on); }
END_TEST

static void test_mlp_search_vs_naive_on(const gpt2_model *m, int var)
{
    (void)var;
    const size_t V = B_V, d = B_D, F = B_F, k = 7;
    double *E = tt_to_double(m->p.wte, V * d), *v = malloc(d * sizeof(double));
    tt_scored *all = malloc(B_L * F * sizeof *all);
    const int32_t toks[] = {0, 123, 299};
    for (int block = -1; block < B_L; block++)
        for (size_t ti = 0; ti < 3; ti++) {
            int32_t t = toks[ti];
            mlp_search_result r;
            ck_assert_int_eq(mlp_search(m, NULL, block, t, k, &r), TW_OK);
            int b0 = block < 0 ? 0 : block, nb = block < 0 ? B_L : 1;
            ck_assert_uint_eq(r.n_neurons, nb * F);
            size_t N = 0;
            for (int b = b0; b < b0 + nb; b++)
                for (size_t i = 0; i < F; i++) {
                    value_vec(m, b, i, v);
                    all[N] = (tt_scored){tt_dot(v, E + (size_t)t * d, d), (int)N};
                    N++;
                }
            tt_sort_desc(all, N);
            for (size_t j = 0; j < k; j++) {
                const mlp_search_hit *h = &r.hits[j];
                ck_assert_int_eq(h->block, b0 + all[j].id / (int)F);
                ck_assert_int_eq(h->neuron, all[j].id % (int)F);
                ck_assert_double_eq_tol(h->score, all[j].s, 1e-9);
                value_vec(m, h->block, (size_t)h->neuron, v);
                ck_assert_double_eq_tol(h->norm, sqrt(tt_dot(v, v, d)), 1e-9);
                tt_scored *own = tt_rank_all(v, E, V, d, 1);
                size_t want = 0;
                for (size_t q = 0; q < V; q++)
                    if (own[q].id == t) want = q + 1;
                ck_assert_msg(h->rank == want, "rank %zu vs %zu", h->rank, want);
                free(own);
            }
            mlp_search_result_free(&r);
        }
    mlp_search_result r;
    ck_assert_int_eq(mlp_search(m, NULL, 0, (int32_t)V, k, &r), TW_ETOKEN);
    ck_assert_int_eq(mlp_search(m, NULL, B_L, 0, k, &r), TW_EBLOCK);
    ck_assert_int_eq(mlp_search(m, NULL, 0, 0, F + 1, &r), TW_EK);
    TT_FREE(all, E, v);
}

START_TEST(test_mlp_search_vs_naive) { for_each_variant(22, test_mlp_search_vs_naive_on); }
END_TEST

/* ---- §10 SVD ---- */

START_TEST(test_mlp_svd_vs_dense)
{
    for (int var = 0; var < 4; var++) {
        tt_model tm;
        model_variant(&tm, var % 3, 23);
        /* variant 3: an MLP narrower than the model (the first d/2 neurons),
         * which takes the other Gram matrix */
        if (var == 3) tm.m.cfg.n_inner = B_D / 2;
        const gpt2_model *m = &tm.m;
        const size_t V = B_V, d = B_D, F = (size_t)m->cfg.n_inner, r = d < F ? d : F, top = 6, k = 4;
        double *E = tt_to_double(m->p.wte, V * d), *En2 = malloc(V * d * sizeof(double));
        double *A = malloc(d * F * sizeof(double)), *S = malloc(r * sizeof(double));
        double *U = malloc(d * r * sizeof(double)), *VT = malloc(r * F * sizeof(double));
        double *x = malloc(d * sizeof(double)), *y = malloc(F * sizeof(double)),
               *z = malloc(d * sizeof(double));
        blockcache *c = blockcache_new(1 << 26);
        for (int b = 0; b < B_L; b++) {
            const gpt2_block *blk = &m->p.h[b];
            for (size_t j = 0; j < V; j++)
                tt_layernorm_row(m->p.wte + j * d, blk->ln_2_w, blk->ln_2_b, d, 1e-5, En2 + j * d);
            for (int mat = 0; mat < 2; mat++) {
                mlp_svd_result res;
                ck_assert_int_eq(mlp_svd(m, ANA_CTX(c), b, mat, top, k, &res), TW_OK);
                ck_assert_uint_eq(res.r, r);
                /* B (d, F) row-major: in W_fc, out W_proj^T; dense SVD */
                for (size_t i = 0; i < d; i++)
                    for (size_t j = 0; j < F; j++)
                        A[i * F + j] =
                            mat == MLP_SVD_IN ? GPT2_AT(blk->fc_w, i, j) : GPT2_AT(blk->fc_proj_w, j, i);
                ck_assert_int_eq(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', (int)d, (int)F, A, (int)F, S, U,
                                                (int)r, VT, (int)F),
                                 0);
                double sum = 0, acc = 0, frac = 0;
                for (size_t t = 0; t < r; t++) sum += S[t];
                for (size_t t = 0; t < r; t++) {
                    ck_assert_msg(fabs(res.s[t] - S[t]) <= 1e-9 * S[0], "s[%zu] %.12g vs %.12g", t, res.s[t],
                                  S[t]);
                    acc += S[t];
                    ck_assert_double_eq_tol(res.coverage[t], acc / sum, 1e-9);
                    if (frac == 0 && acc / sum > 0.99) frac = (t + 1.0) / r;
                }
                ck_assert_double_eq(res.frac99, frac);
                for (size_t t = 0; t < top; t++) {
                    int in = mat == MLP_SVD_IN;
                    for (size_t i = 0; i < d; i++) x[i] = (in ? S[t] : 1.0) * U[i * r + t];
                    for (size_t i = 0; i < F; i++) y[i] = (in ? 1.0 : S[t]) * VT[t * F + i];
                    const double *Mx = in ? En2 : E, *My = in ? E : En2;
                    tt_scored *p = tt_rank_all(x, Mx, V, d, 1), *q = tt_rank_all(x, Mx, V, d, -1);
                    double sg = p[0].s >= q[0].s ? 1 : -1;
                    tt_check_list("svd d side", (in ? res.left : res.right) + t * k, sg > 0 ? p : q, k, 1e-6,
                                  1);
                    /* neurons: the largest components of sg y */
                    tt_scored *nr = malloc(F * sizeof *nr);
                    for (size_t i = 0; i < F; i++) nr[i] = (tt_scored){sg * y[i], (int)i};
                    tt_sort_desc(nr, F);
                    tt_check_list("svd neurons", res.neurons + t * k, nr, k, 1e-6, 1);
                    /* through the other matrix */
                    for (size_t j = 0; j < d; j++) {
                        z[j] = 0;
                        for (size_t i = 0; i < F; i++)
                            z[j] +=
                                sg * y[i] * (in ? GPT2_AT(blk->fc_proj_w, i, j) : GPT2_AT(blk->fc_w, j, i));
                    }
                    tt_scored *th = tt_rank_all(z, My, V, d, 1);
                    tt_check_list("svd through", (in ? res.right : res.left) + t * k, th, k, 1e-6, 1);
                    TT_FREE(th, nr, p, q);
                }
                mlp_svd_result_free(&res);
            }
        }
        mlp_svd_result res;
        ck_assert_int_eq(mlp_svd(m, NULL, 0, MLP_SVD_IN, 0, 3, &res), TW_OK); /* spectrum only */
        ck_assert_double_gt(res.s[0], 0);
        mlp_svd_result_free(&res);
        ck_assert_int_eq(mlp_svd(m, NULL, 0, MLP_SVD_IN, r + 1, 3, &res), TW_ETOP);
        ck_assert_int_eq(mlp_svd(m, NULL, 0, 2, 1, 3, &res), TW_EINVAL);
        ck_assert_int_eq(mlp_svd(m, NULL, -1, MLP_SVD_IN, 1, 3, &res), TW_EBLOCK);
        ck_assert_int_eq(mlp_svd(m, NULL, 0, MLP_SVD_OUT, 1, 0, &res), TW_EK);
        blockcache_free(c);
        TT_FREE(E, En2, A, S, U, VT, x, y, z);
        tt_model_free(&tm);
    }
}
END_TEST

/* ---- §11 sub-updates ---- */

static void test_mlp_updates_vs_naive_on(const gpt2_model *m, int var)
{
    (void)var;
    const size_t V = B_V, d = B_D, F = B_F, n = 6, top = 5, k = 3;
    int32_t tok[6] = {4, 8, 15, 16, 23, 42};
    gpt2_forward_result *fr = NULL;
    gpt2_forward_opts o = {.keep_mlp = 1};
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &fr), TW_OK);
    mlp_updates_result r;
    ck_assert_int_eq(mlp_updates(m, NULL, fr, top, k, &r), TW_OK);
    ck_assert_uint_eq(r.n_blocks, B_L);
    double *E = tt_to_double(m->p.wte, V * d), *v = malloc(d * sizeof(double)),
           *u = malloc(d * sizeof(double));
    tt_scored *w = malloc(F * sizeof *w);
    for (size_t b = 0; b < B_L; b++)
        for (size_t t = 0; t < n; t++) {
            const float *a = fr->mlp_act + (b * n + t) * F;
            for (size_t j = 0; j < d; j++) u[j] = 0;
            for (size_t i = 0; i < F; i++) {
                value_vec(m, (int)b, i, v);
                w[i] = (tt_scored){fabs(a[i]) * sqrt(tt_dot(v, v, d)), (int)i};
                for (size_t j = 0; j < d; j++) u[j] += a[i] * v[j];
            }
            ck_assert_double_eq_tol(r.update_norm[b * n + t], sqrt(tt_dot(u, u, d)),
                                    1e-5 * (1 + sqrt(tt_dot(u, u, d))));
            tt_sort_desc(w, F);
            for (size_t j = 0; j < top; j++) {
                const mlp_update *up = &r.updates[(b * n + t) * top + j];
                ck_assert_int_eq(up->neuron, w[j].id);
                ck_assert_double_eq_tol(up->weight, w[j].s, 1e-9);
                ck_assert(up->coef == a[w[j].id]);
                value_vec(m, (int)b, (size_t)up->neuron, v);
                ck_assert_double_eq_tol(up->norm, sqrt(tt_dot(v, v, d)), 1e-9);
                tt_scored *own = tt_rank_all(v, E, V, d, 1);
                tt_check_list("update tokens", r.tokens + ((b * n + t) * top + j) * k, own, k, 1e-9, 1);
                free(own);
            }
        }
    mlp_updates_result_free(&r);
    gpt2_forward_free(fr);
    /* without activations */
    ck_assert_int_eq(gpt2_forward(m, tok, n, NULL, &fr), TW_OK);
    ck_assert_int_eq(mlp_updates(m, NULL, fr, top, k, &r), TW_EINVAL);
    gpt2_forward_free(fr);
    /* one block */
    o.keep_select = GPT2_KEEP_BLOCK;
    o.keep_block = 1;
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &fr), TW_OK);
    ck_assert_int_eq(mlp_updates(m, NULL, fr, top, k, &r), TW_OK);
    ck_assert_int_eq(r.block0, 1);
    ck_assert_uint_eq(r.n_blocks, 1);
    mlp_updates_result_free(&r);
    ck_assert_int_eq(mlp_updates(m, NULL, fr, 0, k, &r), TW_ETOP);
    ck_assert_int_eq(mlp_updates(m, NULL, fr, top, 0, &r), TW_EK);
    gpt2_forward_free(fr);
    TT_FREE(E, v, u, w);
}

START_TEST(test_mlp_updates_vs_naive) { for_each_variant(24, test_mlp_updates_vs_naive_on); }
END_TEST

/* ---- §12 layer-norm geometry ---- */

typedef struct {
    double s, ss;
    size_t n;
} stat;

static void stat_add(stat *s, double v)
{
    s->s += v;
    s->ss += v * v;
    s->n++;
}

static double stat_mean(const stat *s) { return s->s / s->n; }

static double stat_std(const stat *s)
{
    double m = stat_mean(s);
    return s->n > 1 ? sqrt(fmax(0, (s->ss - s->n * m * m) / (s->n - 1))) : 0;
}

static void check_layers(const gpt2_model *m, const lngeom_result *r, const float *const *states, size_t rows)
{
    const size_t d = B_D, V = B_V, k = r->k;
    double *n = malloc(d * sizeof(double)), *col = malloc(V * sizeof(double));
    for (size_t li = 0; li < r->n_layers; li++) {
        const lngeom_layer *l = &r->layers[li];
        const float *g = li == 2 * B_L ? m->p.ln_f_w : li % 2 ? m->p.h[li / 2].ln_2_w : m->p.h[li / 2].ln_1_w;
        const float *b = li == 2 * B_L ? m->p.ln_f_b : li % 2 ? m->p.h[li / 2].ln_2_b : m->p.h[li / 2].ln_1_b;
        char name[32];
        lngeom_layer_name(l, name, sizeof name);
        ck_assert_uint_eq(l->rows, rows);
        stat mu = {0}, mua = {0}, rad = {0}, chg = {0};
        for (size_t t = 0; t < rows; t++) {
            const float *x = states[li] + t * d;
            double s = 0, ss = 0;
            for (size_t i = 0; i < d; i++) s += x[i];
            double mean = s / d;
            for (size_t i = 0; i < d; i++) ss += (x[i] - mean) * (x[i] - mean);
            double var = ss / d;
            stat_add(&mu, mean);
            stat_add(&mua, fabs(mean));
            stat_add(&rad, sqrt(d) * sqrt(var / (var + 1e-5)));
            tt_layernorm_row(x, NULL, NULL, d, 1e-5, n);
            double num = 0, den = 0;
            for (size_t i = 0; i < d; i++) {
                double c = g[i] * n[i] + (b ? b[i] : 0) - n[i];
                num += c * c;
                den += n[i] * n[i];
            }
            stat_add(&chg, sqrt(num / den));
        }
        ck_assert_msg(fabs(l->mean_mean - stat_mean(&mu)) <= 1e-9 * (1 + fabs(stat_mean(&mu))), "%s mean",
                      name);
        ck_assert_double_eq_tol(l->mean_abs, stat_mean(&mua), 1e-9);
        ck_assert_double_eq_tol(l->radius_mean, stat_mean(&rad), 1e-9);
        ck_assert_double_eq_tol(l->radius_std, stat_std(&rad), 1e-6);
        ck_assert_double_eq_tol(l->change_mean, stat_mean(&chg), 1e-9);
        ck_assert_double_eq_tol(l->change_std, stat_std(&chg), 1e-6);
        ck_assert_double_lt(l->after_max_abs, 1e-6);
        ck_assert_double_le(l->after_mean_abs, l->after_max_abs);
        /* gamma axes */
        int imax = 0, imin = 0;
        for (size_t i = 1; i < d; i++) {
            if (fabs(g[i]) > fabs(g[imax])) imax = (int)i;
            if (fabs(g[i]) < fabs(g[imin])) imin = (int)i;
        }
        ck_assert_int_eq(l->gmax_index, imax);
        ck_assert_int_eq(l->gmin_index, imin);
        ck_assert(l->gmax == g[imax] && l->gmin == g[imin]);
        double bn = 0;
        for (size_t i = 0; b && i < d; i++) bn += (double)b[i] * b[i];
        ck_assert_double_eq_tol(l->beta_norm, sqrt(bn), 1e-9);
        const topk_hit *lists = r->lists + li * LNG_N_LISTS * k;
        for (int ax = 0; ax < 2; ax++) {
            tt_scored *sc = malloc(V * sizeof *sc);
            size_t i = (size_t)(ax ? imin : imax);
            for (size_t j = 0; j < V; j++) sc[j] = (tt_scored){m->p.wte[j * d + i], (int)j};
            tt_sort_desc(sc, V);
            tt_check_list("axis top", lists + (ax ? LNG_GMIN_TOP : LNG_GMAX_TOP) * k, sc, k, 0, 1);
            for (size_t j = 0; j < V; j++) sc[j] = (tt_scored){-m->p.wte[j * d + i], (int)j};
            tt_sort_desc(sc, V);
            tt_check_list("axis bottom", lists + (ax ? LNG_GMIN_BOTTOM : LNG_GMAX_BOTTOM) * k, sc, k, 0, -1);
            free(sc);
        }
        double *bd = malloc(d * sizeof(double)), *E = tt_to_double(m->p.wte, V * d);
        for (size_t i = 0; i < d; i++) bd[i] = b ? b[i] : 0;
        tt_scored *br = tt_rank_all(bd, E, V, d, 1);
        tt_check_list("beta", lists + LNG_BETA * k, br, k, 1e-9, 1);
        TT_FREE(br, bd, E);
    }
    TT_FREE(n, col);
}

static void test_lngeom_layers_vs_naive_on(const gpt2_model *m, int var)
{
    (void)var;
    const size_t k = 4, NL = 2 * B_L + 1, n = 7;
    const float *states[2 * B_L + 1];
    lngeom_result r;
    ck_assert_int_eq(lngeom_layers(m, NULL, NULL, k, &r), TW_OK);
    ck_assert_uint_eq(r.n_layers, NL);
    ck_assert_int_eq(r.from_phrase, 0);
    for (size_t li = 0; li < NL; li++) states[li] = m->p.wte;
    check_layers(m, &r, states, B_V);
    char name[32];
    lngeom_layer_name(&r.layers[3], name, sizeof name);
    ck_assert_str_eq(name, "h.1.ln_2");
    lngeom_layer_name(&r.layers[NL - 1], name, sizeof name);
    ck_assert_str_eq(name, "ln_f");
    lngeom_result_free(&r);
    /* a phrase: the states of the forward pass */
    int32_t tok[7] = {3, 1, 4, 1, 5, 9, 2};
    gpt2_forward_result *fr = NULL;
    ck_assert_int_eq(gpt2_forward(m, tok, n, &(gpt2_forward_opts){.keep_mid = 1}, &fr), TW_OK);
    ck_assert_int_eq(lngeom_layers(m, NULL, fr, k, &r), TW_OK);
    ck_assert_int_eq(r.from_phrase, 1);
    for (size_t l = 0; l < B_L; l++) {
        states[2 * l] = l ? fr->resid + (l - 1) * n * B_D : fr->x0;
        states[2 * l + 1] = fr->resid_mid + l * n * B_D;
    }
    states[NL - 1] = fr->resid + (B_L - 1) * n * B_D;
    check_layers(m, &r, states, n);
    lngeom_result_free(&r);
    gpt2_forward_free(fr);
    ck_assert_int_eq(gpt2_forward(m, tok, n, NULL, &fr), TW_OK);
    ck_assert_int_eq(lngeom_layers(m, NULL, fr, k, &r), TW_EINVAL); /* no mid states */
    gpt2_forward_free(fr);
    ck_assert_int_eq(lngeom_layers(m, NULL, NULL, 0, &r), TW_EK);
}

START_TEST(test_lngeom_layers_vs_naive) { for_each_variant(31, test_lngeom_layers_vs_naive_on); }
END_TEST

/* The keys of head h of block b in double: LN_b(E) W_k,h + b_k,h. */
static double *naive_keys(const gpt2_model *m, int b, int h)
{
    const size_t V = B_V, d = B_D, dh = d / B_H;
    double *K = malloc(V * dh * sizeof(double)), *x = malloc(d * sizeof(double));
    ana_head hs;
    ana_head_slices(m, b, h, &hs);
    for (size_t j = 0; j < V; j++) {
        tt_layernorm_row(m->p.wte + j * d, m->p.h[b].ln_1_w, m->p.h[b].ln_1_b, d, 1e-5, x);
        for (size_t t = 0; t < dh; t++) {
            double s = hs.bk ? hs.bk[t] : 0;
            for (size_t i = 0; i < d; i++) s += x[i] * GPT2_AT(hs.wk, i, t);
            K[j * dh + t] = s;
        }
    }
    free(x);
    return K;
}

static int argmax(const double *K, size_t V, size_t dh, const double *q)
{
    int best = 0;
    double bs = -INFINITY;
    for (size_t j = 0; j < V; j++) {
        double s = tt_dot(q, K + j * dh, dh);
        if (s > bs) {
            bs = s;
            best = (int)j;
        }
    }
    return best;
}

/* Solves A x = b (A (n, n) row-major, copied) by Gaussian elimination with partial pivoting. */
static void solve(const double *A0, const double *b0, size_t n, double *x)
{
    double *A = malloc(n * n * sizeof(double)), *b = malloc(n * sizeof(double));
    memcpy(A, A0, n * n * sizeof(double));
    memcpy(b, b0, n * sizeof(double));
    for (size_t c = 0; c < n; c++) {
        size_t p = c;
        for (size_t r = c + 1; r < n; r++)
            if (fabs(A[r * n + c]) > fabs(A[p * n + c])) p = r;
        for (size_t j = 0; j < n; j++) {
            double t = A[c * n + j];
            A[c * n + j] = A[p * n + j];
            A[p * n + j] = t;
        }
        double t = b[c];
        b[c] = b[p];
        b[p] = t;
        for (size_t r = c + 1; r < n; r++) {
            double f = A[r * n + c] / A[c * n + c];
            for (size_t j = c; j < n; j++) A[r * n + j] -= f * A[c * n + j];
            b[r] -= f * b[c];
        }
    }
    for (size_t c = n; c-- > 0;) {
        double s = b[c];
        for (size_t j = c + 1; j < n; j++) s -= A[c * n + j] * x[j];
        x[c] = s / A[c * n + c];
    }
    TT_FREE(A, b);
}

static void test_lngeom_keys_vs_naive_on(const gpt2_model *m, int var)
{
    (void)var;
    const size_t V = B_V, dh = B_D / B_H, N = 200;
    blockcache *c = blockcache_new(1 << 24);
    lngeom_keys_result r, t;
    ck_assert_int_eq(lngeom_keys(m, ANA_CTX(c), -1, N, LNG_KEYS_RANDOM, 7, &r), TW_OK);
    ck_assert_int_eq(lngeom_keys(m, ANA_CTX(c), -1, N, LNG_KEYS_TARGETED, 7, &t), TW_OK);
    ck_assert_uint_eq(r.n_blocks, B_L);
    ck_assert_ptr_nonnull(r.q);
    ck_assert_ptr_nonnull(t.drawn);
    double *q = malloc(dh * sizeof(double)), *Sg = malloc(dh * dh * sizeof(double));
    double *mu = malloc(dh * sizeof(double)), *rhs = malloc(dh * sizeof(double));
    unsigned char *hit = malloc(V);
    for (int b = 0; b < B_L; b++)
        for (int h = 0; h < B_H; h++) {
            double *K = naive_keys(m, b, h);
            memset(hit, 0, V);
            size_t count = 0;
            for (size_t i = 0; i < N; i++) {
                for (size_t j = 0; j < dh; j++) q[j] = r.q[i * dh + j];
                int a = argmax(K, V, dh, q);
                count += !hit[a];
                hit[a] = 1;
            }
            ck_assert_uint_eq(r.selectable[b * B_H + h], count);
            ck_assert_double_eq_tol(r.unselectable[b * B_H + h], 1.0 - (double)count / V, 1e-12);
            /* targeted: Sigma^-1 (k_j - mu) */
            for (size_t j = 0; j < dh; j++) {
                mu[j] = 0;
                for (size_t i = 0; i < V; i++) mu[j] += K[i * dh + j] / V;
            }
            for (size_t a = 0; a < dh; a++)
                for (size_t e = 0; e < dh; e++) {
                    double s = 0;
                    for (size_t i = 0; i < V; i++) s += (K[i * dh + a] - mu[a]) * (K[i * dh + e] - mu[e]);
                    Sg[a * dh + e] = s / V;
                }
            size_t cert = 0;
            for (size_t i = 0; i < N; i++) {
                int j = t.drawn[i];
                for (size_t a = 0; a < dh; a++) rhs[a] = K[(size_t)j * dh + a] - mu[a];
                solve(Sg, rhs, dh, q);
                cert += argmax(K, V, dh, q) == j;
            }
            ck_assert_uint_eq(t.selectable[b * B_H + h], cert);
            ck_assert_double_eq_tol(t.unselectable[b * B_H + h], 1.0 - (double)cert / N, 1e-12);
            free(K);
        }
    /* the drawn keys are distinct */
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < i; j++) ck_assert_int_ne(t.drawn[i], t.drawn[j]);
    /* one block equals its rows of all blocks; same seed, same answer */
    lngeom_keys_result one;
    ck_assert_int_eq(lngeom_keys(m, NULL, 1, N, LNG_KEYS_RANDOM, 7, &one), TW_OK);
    ck_assert_int_eq(one.block0, 1);
    ck_assert_mem_eq(one.selectable, r.selectable + B_H, B_H * sizeof(size_t));
    lngeom_keys_result_free(&one);
    ck_assert_int_eq(lngeom_keys(m, NULL, 0, V + 1, LNG_KEYS_TARGETED, 7, &one), TW_ERANGE);
    ck_assert_int_eq(lngeom_keys(m, NULL, 0, 0, LNG_KEYS_RANDOM, 7, &one), TW_ERANGE);
    ck_assert_int_eq(lngeom_keys(m, NULL, B_L, 4, LNG_KEYS_RANDOM, 7, &one), TW_EBLOCK);
    lngeom_keys_result_free(&r);
    lngeom_keys_result_free(&t);
    blockcache_free(c);
    TT_FREE(q, Sg, mu, rhs, hit);
}

START_TEST(test_lngeom_keys_vs_naive) { for_each_variant(32, test_lngeom_keys_vs_naive_on); }
END_TEST

static void test_lngeom_sketch_on(const gpt2_model *m, int var)
{
    (void)var;
    const size_t dh = B_D / B_H;
    int dims[2];
    lngeom_default_dims(m, 1, dims);
    const float *g = m->p.h[1].ln_1_w;
    for (int i = 0; i < B_D; i++) {
        if (i != dims[0]) ck_assert(fabsf(g[i]) <= fabsf(g[dims[0]]));
        if (i != dims[0] && i != dims[1]) ck_assert(fabsf(g[i]) <= fabsf(g[dims[1]]));
    }
    lngeom_sketch_result r;
    ck_assert_int_eq(lngeom_sketch(m, 1, 2, dims, 64, &r), TW_OK);
    ana_head hs;
    ana_head_slices(m, 1, 2, &hs);
    double W[2][2];
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 2; c++) {
            double s = 0;
            for (size_t t = 0; t < dh; t++)
                s += (double)GPT2_AT(hs.wq, dims[a], t) * GPT2_AT(hs.wk, dims[c], t);
            W[a][c] = s / sqrt(dh);
            ck_assert_double_eq_tol(r.w2[a][c], W[a][c], 1e-12);
        }
    const float *beta = m->p.h[1].ln_1_b;
    for (size_t p = 0; p < 64; p++) {
        double th = 2 * M_PI * p / 64, c[2] = {cos(th), sin(th)}, s[2];
        for (int a = 0; a < 2; a++) {
            s[a] = g[dims[a]] * c[a] + (beta ? beta[dims[a]] : 0);
            ck_assert_double_eq_tol(r.pts[(0 * 64 + p) * 2 + a], c[a], 1e-12);
            ck_assert_double_eq_tol(r.pts[(1 * 64 + p) * 2 + a], g[dims[a]] * c[a], 1e-12);
            ck_assert_double_eq_tol(r.pts[(2 * 64 + p) * 2 + a], s[a], 1e-12);
        }
        for (int a = 0; a < 2; a++)
            ck_assert_double_eq_tol(r.pts[(3 * 64 + p) * 2 + a], s[0] * W[0][a] + s[1] * W[1][a], 1e-12);
    }
    lngeom_sketch_result_free(&r);
    int same[2] = {3, 3}, out[2] = {0, B_D};
    ck_assert_int_eq(lngeom_sketch(m, 1, 2, same, 64, &r), TW_ERANGE);
    ck_assert_int_eq(lngeom_sketch(m, 1, 2, out, 64, &r), TW_ERANGE);
    ck_assert_int_eq(lngeom_sketch(m, 1, B_H, dims, 64, &r), TW_EHEAD);
    ck_assert_int_eq(lngeom_sketch(m, B_L, 0, dims, 64, &r), TW_EBLOCK);
}

START_TEST(test_lngeom_sketch) { for_each_variant(33, test_lngeom_sketch_on); }
END_TEST

/* ---- §13 self-check ---- */

static void test_selfcheck_on(const gpt2_model *m, int var)
{
    const size_t n = 11;
    int32_t tok[11] = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144};
    gpt2_forward_result *fr = NULL;
    ck_assert_int_eq(gpt2_forward(m, tok, n, NULL, &fr), TW_OK);
    selfcheck_result r;
    ck_assert_int_eq(selfcheck(m, NULL, fr, 99, &r), TW_OK);
    ck_assert_uint_eq(r.n_blocks, B_L);
    ck_assert_uint_eq(r.n_tokens, n);
    for (size_t i = 0; i < B_L * B_H; i++) {
        const selfcheck_head *h = &r.heads[i];
        ck_assert_msg(h->scores.max_rel < 1e-5 && h->patterns.max_abs < 1e-5 && h->outputs.max_rel < 1e-5,
                      "%s head %zu: scores %.3g patterns %.3g outputs %.3g", variant_name(var), i,
                      h->scores.max_rel, h->patterns.max_abs, h->outputs.max_rel);
        ck_assert_double_gt(h->scores.max_abs, 0); /* float vs double: not bit-identical */
        ck_assert_double_lt(h->bk_pattern_diff, 1e-5);
        ck_assert_double_lt(h->bk_pattern_exact, 1e-12);
        ck_assert_double_gt(h->bk_score_shift, 1e-3); /* the scores did change */
        ck_assert_double_lt(h->bk_shift_spread, 1e-12 * (1 + h->bk_score_shift) * 100);
        ck_assert_double_gt(h->bk_norm, 0);
    }
    for (size_t b = 0; b < B_L; b++) ck_assert_double_lt(r.total[b].max_rel, 1e-5);
    /* the random b_k has the norm of b_k */
    if (var != 2) {
        ana_head hs;
        ana_head_slices(m, 1, 3, &hs);
        double nn = 0;
        for (size_t i = 0; i < B_D / B_H; i++) nn += (double)hs.bk[i] * hs.bk[i];
        ck_assert_double_eq_tol(r.heads[B_H + 3].bk_norm, sqrt(nn), 1e-6 * sqrt(nn));
    }
    selfcheck_result_free(&r);
    /* it detects a wrong pattern */
    fr->att[(size_t)(1 * B_H + 2) * n * n + 5 * n + 2] += 0.01f;
    ck_assert_int_eq(selfcheck(m, NULL, fr, 99, &r), TW_OK);
    ck_assert_double_gt(r.heads[B_H + 2].patterns.max_abs, 0.009);
    ck_assert_double_lt(r.heads[B_H + 1].patterns.max_abs, 1e-5);
    selfcheck_result_free(&r);
    gpt2_forward_free(fr);
    /* one block's patterns */
    gpt2_forward_opts o = {.att_select = GPT2_ATT_BLOCK, .att_block = 1};
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &fr), TW_OK);
    ck_assert_int_eq(selfcheck(m, NULL, fr, 99, &r), TW_OK);
    ck_assert_int_eq(r.block0, 1);
    ck_assert_uint_eq(r.n_blocks, 1);
    selfcheck_result_free(&r);
    gpt2_forward_free(fr);
    o.att_select = GPT2_ATT_HEAD;
    o.att_head = 0;
    ck_assert_int_eq(gpt2_forward(m, tok, n, &o, &fr), TW_OK);
    ck_assert_int_eq(selfcheck(m, NULL, fr, 99, &r), TW_EINVAL); /* not every head */
    gpt2_forward_free(fr);
}

START_TEST(test_selfcheck) { for_each_variant(41, test_selfcheck_on); }
END_TEST

/* ---- cancellation ---- */

START_TEST(test_cancel)
{
    tt_model tm;
    model_variant(&tm, 0, 51);
    tw_cancel cc = {0};
    tw_cancel_raise(&cc);
    ana_ctx x = {.cache = NULL, .cancel = &cc};
    mlp_values_result v;
    mlp_search_result s;
    mlp_svd_result d;
    lngeom_keys_result k;
    lngeom_result l;
    ck_assert_int_eq(mlp_values(&tm.m, &x, 0, NULL, 0, 3, &v), TW_ECANCELED);
    ck_assert_int_eq(mlp_search(&tm.m, &x, -1, 3, 3, &s), TW_ECANCELED);
    ck_assert_int_eq(mlp_svd(&tm.m, &x, 0, MLP_SVD_IN, 3, 3, &d), TW_ECANCELED);
    ck_assert_int_eq(lngeom_keys(&tm.m, &x, -1, 10, LNG_KEYS_RANDOM, 1, &k), TW_ECANCELED);
    ck_assert_int_eq(lngeom_layers(&tm.m, &x, NULL, 3, &l), TW_ECANCELED);
    tt_model_free(&tm);
}
END_TEST

int main(void)
{
    const TTest *const nn_tests[] = {test_forward_keeps_mlp_and_mid, test_rank_rows_vs_sort, NULL};
    const TTest *const mlp_tests[] = {test_mlp_values_vs_naive, test_mlp_search_vs_naive,
                                      test_mlp_svd_vs_dense, test_mlp_updates_vs_naive, NULL};
    const TTest *const ln_tests[] = {test_lngeom_layers_vs_naive, test_lngeom_keys_vs_naive,
                                     test_lngeom_sketch, NULL};
    const TTest *const sc_tests[] = {test_selfcheck, test_cancel, NULL};
    const tw_case cases[] = {
        {.name = "nn", .timeout = 60, .tests = nn_tests},
        {.name = "mlp", .timeout = 120, .tests = mlp_tests},
        {.name = "layernorm", .timeout = 120, .tests = ln_tests},
        {.name = "selfcheck", .timeout = 60, .tests = sc_tests},
    };
    return tw_check_main("beyond", cases, 4);
}
