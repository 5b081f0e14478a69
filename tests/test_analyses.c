/* Unit tests of the weight analyses (docs/MATH.md §3-§6): every analysis
 * against a straightforward double computation written here (explicit d x d
 * matrices, a dense LAPACKE SVD, full sorts), on a small random gpt2_model
 * built in memory (tests/support/test_model.h), and concurrent analyses of
 * one cold block sharing one block-cache fill. core/nn/topk, layer norm and
 * the block cache itself have their own tests (test_topk.c, test_lnorm.c,
 * test_blockcache.c). */
#include <check.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ana/blockcache.h"
#include "core/ana/common.h"
#include "core/ana/embed_norms.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"
#include "core/nn/topk.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/test_rank.h"
#include "tests/support/test_thread.h"
#include "tests/support/tw_check.h"

enum { M_L = 2, M_H = 4, M_D = 48, M_V = 600 };

/* The analyses' model: L blocks, H heads, width d, vocabulary V, 8 positions. */
static void model_build(tt_model *tm, int L, int H, int d, int V, uint64_t seed)
{
    tt_model_build(
        tm,
        &(tt_model_opts){.n_layer = L, .n_head = H, .n_embd = d, .n_ctx = 8, .vocab_size = V, .seed = seed});
}

/* Runs check on the analyses' model (M_L blocks, M_H heads, width M_D,
 * vocabulary M_V) of seed. */
static void on_model(uint64_t seed, void (*check)(const gpt2_model *m))
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, seed);
    check(&tm.m);
    tt_model_free(&tm);
}

/* ---- Naive helpers (double) ---- */

/* En (V, d) double for block b. */
static double *naive_en(const gpt2_model *m, int block)
{
    size_t V = m->cfg.vocab_size, d = m->cfg.n_embd;
    double *en = malloc(V * d * sizeof(double));
    for (size_t i = 0; i < V; i++)
        tt_layernorm_row(m->p.wte + i * d, m->p.h[block].ln_1_w, m->p.h[block].ln_1_b, d, m->cfg.ln_eps,
                         en + i * d);
    return en;
}

/* Exact equality of two hit lists, field by field (not the struct padding). */
static void assert_hits_equal(const topk_hit *a, const topk_hit *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(a[i].id == b[i].id && a[i].score == b[i].score, "hit %zu: %d (%.17g) vs %d (%.17g)", i,
                      a[i].id, a[i].score, b[i].id, b[i].score);
}

/* ---- embedding norms ---- */

static void check_embed_norms_vs_naive(const gpt2_model *m)
{
    size_t V = M_V, d = M_D, k = 6;
    embed_norms_result r;
    blockcache *c = blockcache_new(1 << 24);
    ck_assert_int_eq(embed_norms(m, ANA_CTX(c), k, &r), 0);
    const float *g = m->p.ln_f_w, *b = m->p.ln_f_b;
    tt_scored *sc = malloc(V * sizeof *sc);
    for (int s = 0; s < EMBED_N_SCHEMES; s++) {
        for (size_t i = 0; i < V; i++) {
            double n = 0, gn = 0, be = 0;
            for (size_t j = 0; j < d; j++) {
                double x = m->p.wte[i * d + j];
                n += x * x;
                gn += (g[j] * x) * (g[j] * x);
                be += b[j] * x;
            }
            n = sqrt(n);
            gn = sqrt(gn);
            double v = s == EMBED_NORM ? n : s == EMBED_SCALED ? gn : s == EMBED_BIAS ? n + be : gn + be;
            sc[i] = (tt_scored){v, (int)i};
        }
        tt_sort_desc(sc, V);
        tt_check_list(embed_scheme_name(s), r.top + s * k, sc, k, 1e-12, 1);
        for (size_t i = 0; i < V; i++) sc[i].s = -sc[i].s;
        tt_sort_desc(sc, V);
        for (size_t i = 0; i < V; i++) sc[i].s = -sc[i].s;
        tt_check_list("bottom", r.bottom + s * k, sc, k, 1e-12, 1);
    }
    // cached scores give the same answer
    embed_norms_result r2;
    ck_assert_int_eq(embed_norms(m, ANA_CTX(c), k, &r2), 0);
    assert_hits_equal(r.top, r2.top, 2 * EMBED_N_SCHEMES * k);
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.hits, 1);
    embed_norms_result_free(&r);
    embed_norms_result_free(&r2);
    ck_assert_int_eq(embed_norms(m, NULL, 0, &r), TW_EK);
    ck_assert_int_eq(embed_norms(m, NULL, V + 1, &r), TW_EK);
    free(sc);
    blockcache_free(c);
}

START_TEST(test_embed_norms_vs_naive) { on_model(21, check_embed_norms_vs_naive); }
END_TEST

static void check_embed_normalization_vs_naive(const gpt2_model *m)
{
    size_t V = M_V, d = M_D;
    embed_normalization_result r;
    ck_assert_int_eq(embed_normalization(m, &r), 0);
    // naive: explicit matrices, sum / sum of squares statistics
    double *c = calloc(d, sizeof *c), a = 0;
    for (size_t i = 0; i < V; i++) {
        double nn = 0;
        for (size_t j = 0; j < d; j++) {
            c[j] += m->p.wte[i * d + j] / (double)V;
            nn += (double)m->p.wte[i * d + j] * m->p.wte[i * d + j];
        }
        a += sqrt(nn) / V;
    }
    double s = sqrt((double)d) / a;
    ck_assert_double_eq_tol(r.avg_norm, a, 1e-12 * a);
    ck_assert_double_eq_tol(r.scale, s, 1e-12 * s);
    double *N = malloc(d * sizeof *N), *X = malloc(d * sizeof *X);
    double sum[4][2] = {{0}}, sq[4][2] = {{0}};
    for (size_t i = 0; i < V; i++) {
        const float *e = m->p.wte + i * d;
        tt_layernorm_row(e, NULL, NULL, d, 1e-5, N);
        for (int k = 0; k < 4; k++) {
            for (size_t j = 0; j < d; j++) {
                double x = k & 1 ? e[j] - c[j] : e[j];
                X[j] = k & 2 ? s * x : x;
            }
            double l2 = 0, xn = 0, xx = 0, nn = 0;
            for (size_t j = 0; j < d; j++) {
                l2 += (X[j] - N[j]) * (X[j] - N[j]);
                xn += X[j] * N[j];
                xx += X[j] * X[j];
                nn += N[j] * N[j];
            }
            double v[2] = {sqrt(l2), 1 - xn / sqrt(xx * nn)};
            for (int t = 0; t < 2; t++) {
                sum[k][t] += v[t];
                sq[k][t] += v[t] * v[t];
            }
        }
    }
    for (int k = 0; k < 4; k++) {
        double got[2][2] = {{r.rows[k].l2_mean, r.rows[k].l2_std}, {r.rows[k].cos_mean, r.rows[k].cos_std}};
        for (int t = 0; t < 2; t++) {
            double mean = sum[k][t] / V;
            double sd = sqrt((sq[k][t] - V * mean * mean) / (V - 1));
            ck_assert_msg(fabs(got[t][0] - mean) <= 1e-9 * fabs(mean), "row %s stat %d mean %.12g vs %.12g",
                          embed_normalization_row_name(k), t, got[t][0], mean);
            ck_assert_msg(fabs(got[t][1] - sd) <= 1e-6 * fabs(sd), "row %s stat %d std %.12g vs %.12g",
                          embed_normalization_row_name(k), t, got[t][1], sd);
        }
    }
    TT_FREE(c, N, X);
}

START_TEST(test_embed_normalization_vs_naive) { on_model(22, check_embed_normalization_vs_naive); }
END_TEST

/* ---- word probes ---- */

/* Explicit A (d, d) row-major in double for one head. */
static void explicit_matrix(const gpt2_model *m, int block, int head, int matrix, double *A)
{
    size_t d = m->cfg.n_embd, dh = d / m->cfg.n_head;
    ana_head hs;
    ana_head_slices(m, block, head, &hs);
    for (size_t i = 0; i < d; i++)
        for (size_t j = 0; j < d; j++) {
            double s = 0;
            for (size_t t = 0; t < dh; t++)
                s += matrix == PROBE_SVD_QK
                         ? (double)GPT2_AT(hs.wq, i, t) * GPT2_AT(hs.wk, j, t) / sqrt((double)dh)
                         : (double)GPT2_AT(hs.wv, i, t) * GPT2_AT(hs.wo, t, j);
            A[i * d + j] = s;
        }
}

/* A value vector u (d) added to word id's embedding and the output bias bo:
 * checks the list `hits` (k) of LN_f(e + u + bo) against E (V, d), and
 * returns |u|. */
static double check_values(const gpt2_model *m, const double *E, int32_t id, const float *bo, const double *u,
                           const char *what, const topk_hit *hits, size_t k)
{
    const size_t d = (size_t)m->cfg.n_embd, V = (size_t)m->cfg.vocab_size;
    float *xf = calloc(d, sizeof *xf);
    double *x = malloc(d * sizeof *x), nn = 0;
    for (size_t j = 0; j < d; j++) {
        nn += u[j] * u[j];
        xf[j] = (float)(m->p.wte[(size_t)id * d + j] + u[j] + bo[j]);
    }
    tt_layernorm_row(xf, m->p.ln_f_w, m->p.ln_f_b, d, 1e-5, x);
    tt_scored *rv = tt_rank_all(x, E, V, d, 1);
    tt_check_list(what, hits, rv, k, 1e-4, 1);
    TT_FREE(rv, x, xf);
    return sqrt(nn);
}

static void check_probe_words_vs_naive(const gpt2_model *m)
{
    const size_t V = M_V, d = M_D, H = M_H, dh = d / H, k = 5;
    const int32_t ids[] = {0, 17, 599, 300, 17, 42};
    const size_t W = 6;
    blockcache *c = blockcache_new((size_t)1 << 24);
    double *E = tt_to_double(m->p.wte, V * d);
    double *Wqk = malloc(d * d * sizeof(double)), *Wvo = malloc(d * d * sizeof(double));
    double *kq = malloc(d * sizeof(double)), *u = malloc(d * sizeof(double));
    double *U = malloc(d * sizeof(double));
    double worst_norm = 0;
    for (int block = 0; block < M_L; block++) {
        probe_words_result r;
        ck_assert_int_eq(probe_words(m, ANA_CTX(c), block, ids, W, k, &r), 0);
        ck_assert_uint_eq(r.n_words, W);
        double *En = naive_en(m, block);
        const gpt2_block *b = &m->p.h[block];
        for (size_t w = 0; w < W; w++) {
            const double *q = En + (size_t)ids[w] * d;
            for (size_t i = 0; i < d; i++) U[i] = 0;
            for (size_t h = 0; h < H; h++) {
                ana_head hs;
                ana_head_slices(m, block, (int)h, &hs);
                explicit_matrix(m, block, (int)h, PROBE_SVD_QK, Wqk);
                explicit_matrix(m, block, (int)h, PROBE_SVD_VO, Wvo);
                for (size_t j = 0; j < d; j++) {
                    double a = 0, v = 0;
                    for (size_t i = 0; i < d; i++) {
                        a += q[i] * Wqk[i * d + j];
                        v += q[i] * Wvo[i * d + j];
                    }
                    for (size_t t = 0; t < dh; t++) v += (double)hs.bv[t] * GPT2_AT(hs.wo, t, j);
                    kq[j] = a;
                    u[j] = v;
                    U[j] += v;
                }
                tt_scored *rk = tt_rank_all(kq, En, V, d, 1);
                tt_check_list("keys", r.keys + (w * H + h) * k, rk, k, 1e-4, 1);
                free(rk);
                const double norm =
                    check_values(m, E, ids[w], b->attn_proj_b, u, "values", r.values + (w * H + h) * k, k);
                double got = r.value_norm[w * H + h];
                worst_norm = fmax(worst_norm, fabs(got - norm) / norm);
                ck_assert_msg(fabs(got - norm) <= 1e-5 * norm, "value_norm %.9g vs %.9g", got, norm);
            }
            const double norm =
                check_values(m, E, ids[w], b->attn_proj_b, U, "layer values", r.layer_values + w * k, k);
            ck_assert_msg(fabs(r.layer_norm[w] - norm) <= 1e-5 * norm, "layer norm %.9g vs %.9g",
                          r.layer_norm[w], norm);
        }
        free(En);
        // repeated word: identical answers; no cache: identical answers
        assert_hits_equal(r.keys + 1 * H * k, r.keys + 4 * H * k, H * k);
        probe_words_result r2;
        ck_assert_int_eq(probe_words(m, NULL, block, ids, W, k, &r2), 0);
        assert_hits_equal(r.keys, r2.keys, W * H * k);
        assert_hits_equal(r.values, r2.values, W * H * k);
        ck_assert_mem_eq(r.value_norm, r2.value_norm, W * H * sizeof(double));
        probe_words_result_free(&r2);
        probe_words_result_free(&r);
    }
    fprintf(stderr, "probe_words: largest relative value_norm difference %.3g\n", worst_norm);
    // errors
    probe_words_result r;
    int32_t bad = (int32_t)V;
    ck_assert_int_eq(probe_words(m, ANA_CTX(c), M_L, ids, W, k, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_words(m, ANA_CTX(c), -1, ids, W, k, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_words(m, ANA_CTX(c), 0, ids, W, 0, &r), TW_EK);
    ck_assert_int_eq(probe_words(m, ANA_CTX(c), 0, ids, W, V + 1, &r), TW_EK);
    ck_assert_int_eq(probe_words(m, ANA_CTX(c), 0, &bad, 1, k, &r), TW_ETOKEN);
    ck_assert_ptr_null(r.keys);
    probe_words_result_free(&r);
    ck_assert_int_eq(probe_words(m, ANA_CTX(c), 0, ids, 0, k, &r), 0);
    ck_assert_uint_eq(r.n_words, 0);
    probe_words_result_free(&r);
    TT_FREE(E, Wqk, Wvo, kq, u, U);
    blockcache_free(c);
}

START_TEST(test_probe_words_vs_naive) { on_model(31, check_probe_words_vs_naive); }
END_TEST

/* ---- SVD ---- */

static void check_svd_model(const gpt2_model *m, size_t top, size_t k)
{
    const size_t V = m->cfg.vocab_size, d = m->cfg.n_embd, H = m->cfg.n_head, dh = d / H;
    blockcache *c = blockcache_new((size_t)1 << 26);
    double *E = tt_to_double(m->p.wte, V * d);
    double *A = malloc(d * d * sizeof(double)), *S = malloc(d * sizeof(double));
    double *Ud = malloc(d * d * sizeof(double)), *VTd = malloc(d * d * sizeof(double));
    double *u = malloc(d * sizeof(double)), *v = malloc(d * sizeof(double));
    double worst_s = 0;
    for (int block = 0; block < m->cfg.n_layer; block++) {
        double *En = naive_en(m, block);
        for (int matrix = 0; matrix < 2; matrix++) {
            probe_svd_result r;
            ck_assert_int_eq(probe_svd(m, ANA_CTX(c), block, matrix, -1, top, k, &r), 0);
            ck_assert_uint_eq(r.n_heads, H);
            ck_assert_uint_eq(r.dh, dh);
            const double *Mr = matrix == PROBE_SVD_QK ? En : E;
            for (size_t h = 0; h < H; h++) {
                explicit_matrix(m, block, (int)h, matrix, A);
                // dense SVD of the d x d matrix (row-major)
                ck_assert_int_eq(LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'A', (int)d, (int)d, A, (int)d, S, Ud,
                                                (int)d, VTd, (int)d),
                                 0);
                for (size_t t = 0; t < dh; t++) {
                    double rel = fabs(r.s[h * dh + t] - S[t]) / S[t];
                    worst_s = fmax(worst_s, rel);
                    ck_assert_msg(rel <= 1e-4, "block %d %s head %zu s[%zu] %.12g vs dense %.12g", block,
                                  probe_svd_matrix_name(matrix), h, t, r.s[h * dh + t], S[t]);
                }
                for (size_t t = dh; t < d; t++) ck_assert_double_le(S[t], 1e-10 * S[0]);
                // coverage and frac99
                double sum = 0, acc = 0, frac = 0;
                for (size_t t = 0; t < dh; t++) sum += S[t];
                for (size_t t = 0; t < dh; t++) {
                    acc += S[t];
                    ck_assert_double_eq_tol(r.coverage[h * dh + t], acc / sum, 1e-9);
                    if (frac == 0 && acc / sum > 0.99) frac = (t + 1.0) / dh;
                }
                ck_assert_double_eq(r.frac99[h], frac);
                // directions with the sign rule, against full sorts
                for (size_t t = 0; t < top; t++) {
                    for (size_t i = 0; i < d; i++) {
                        u[i] = S[t] * Ud[i * d + t];
                        v[i] = VTd[t * d + i];
                    }
                    tt_scored *rp = tt_rank_all(v, Mr, V, d, 1), *rn = tt_rank_all(v, Mr, V, d, -1);
                    double sign = rp[0].s >= rn[0].s ? 1 : -1;
                    tt_scored *right = sign > 0 ? rp : rn;
                    tt_scored *left = tt_rank_all(u, En, V, d, sign);
                    char what[128];
                    snprintf(what, sizeof what, "block %d %s head %zu dir %zu right", block,
                             probe_svd_matrix_name(matrix), h, t);
                    tt_check_list(what, r.right + (h * top + t) * k, right, k, 1e-4, 1);
                    snprintf(what, sizeof what, "block %d %s head %zu dir %zu left", block,
                             probe_svd_matrix_name(matrix), h, t);
                    tt_check_list(what, r.left + (h * top + t) * k, left, k, 1e-4, 1);
                    TT_FREE(rp, rn, left);
                }
            }
            // one head alone equals its row of the all-heads answer
            probe_svd_result r1;
            ck_assert_int_eq(probe_svd(m, ANA_CTX(c), block, matrix, (int)H - 1, top, k, &r1), 0);
            ck_assert_uint_eq(r1.n_heads, 1);
            ck_assert_int_eq(r1.first_head, (int)H - 1);
            ck_assert_mem_eq(r1.s, r.s + (H - 1) * dh, dh * sizeof(double));
            for (size_t t = 0; t < top * k; t++)
                ck_assert_int_eq(r1.left[t].id, r.left[(H - 1) * top * k + t].id);
            probe_svd_result_free(&r1);
            // deterministic and cache-independent
            ck_assert_int_eq(probe_svd(m, NULL, block, matrix, -1, top, k, &r1), 0);
            ck_assert_mem_eq(r1.s, r.s, H * dh * sizeof(double));
            assert_hits_equal(r1.left, r.left, H * top * k);
            assert_hits_equal(r1.right, r.right, H * top * k);
            ck_assert_mem_eq(r1.sign, r.sign, H * top * sizeof(int));
            probe_svd_result_free(&r1);
            probe_svd_result_free(&r);
        }
        free(En);
    }
    fprintf(stderr, "probe_svd d=%zu H=%zu: largest relative singular value difference %.3g\n", d, H,
            worst_s);
    TT_FREE(E, A, S, Ud, VTd, u, v);
    blockcache_free(c);
}

START_TEST(test_probe_svd_vs_dense)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 41);
    check_svd_model(&tm.m, 6, 4);
    tt_model_free(&tm);
    // one head: dh = d, full rank
    model_build(&tm, 1, 1, 16, 300, 42);
    check_svd_model(&tm.m, 16, 3);
    tt_model_free(&tm);
}
END_TEST

static void check_probe_svd_sign_rule(const gpt2_model *m)
{
    // The reported right list's first score is max_j(sign v . Mr_j), which by
    // the rule is >= max_j(-sign v . Mr_j) = -min_j(sign v . Mr_j).
    const size_t top = 12, k = 1, V = M_V;
    int minus = 0;
    for (int matrix = 0; matrix < 2; matrix++) {
        probe_svd_result r, rall;
        ck_assert_int_eq(probe_svd(m, NULL, 1, matrix, -1, top, k, &r), 0);
        ck_assert_int_eq(probe_svd(m, NULL, 1, matrix, -1, top, V, &rall), 0);
        for (size_t n = 0; n < M_H * top; n++) {
            ck_assert(r.sign[n] == 1 || r.sign[n] == -1);
            minus += r.sign[n] < 0;
            double maxs = rall.right[n * V].score, mins = rall.right[n * V + V - 1].score;
            ck_assert_msg(maxs >= -mins, "direction %zu: max %.9g < -min %.9g", n, maxs, mins);
            ck_assert_int_eq(rall.right[n * V].id, r.right[n].id);
            ck_assert_int_eq(rall.sign[n], r.sign[n]);
        }
        probe_svd_result_free(&r);
        probe_svd_result_free(&rall);
    }
    ck_assert_int_gt(minus, 0); // some directions were flipped
    // top 0: spectrum only
    probe_svd_result r;
    ck_assert_int_eq(probe_svd(m, NULL, 0, PROBE_SVD_VO, 2, 0, 5, &r), 0);
    ck_assert_uint_eq(r.top, 0);
    ck_assert_double_gt(r.s[0], 0);
    probe_svd_result_free(&r);
    // errors
    ck_assert_int_eq(probe_svd(m, NULL, M_L, 0, -1, 5, 5, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_svd(m, NULL, 0, 0, M_H, 5, 5, &r), TW_EHEAD);
    ck_assert_int_eq(probe_svd(m, NULL, 0, 0, -2, 5, 5, &r), TW_EHEAD);
    ck_assert_int_eq(probe_svd(m, NULL, 0, 2, -1, 5, 5, &r), TW_EINVAL);
    ck_assert_int_eq(probe_svd(m, NULL, 0, 0, -1, M_D / M_H + 1, 5, &r), TW_ETOP);
    ck_assert_int_eq(probe_svd(m, NULL, 0, 0, -1, 5, 0, &r), TW_EK);
    ck_assert_int_eq(probe_svd(m, NULL, 0, 0, -1, 5, V + 1, &r), TW_EK);
    ck_assert_ptr_null(r.s);
}

START_TEST(test_probe_svd_sign_rule) { on_model(43, check_probe_svd_sign_rule); }
END_TEST

static void check_probe_bias_vs_naive(const gpt2_model *m)
{
    const size_t V = M_V, d = M_D, H = M_H, dh = d / H, k = 5;
    double *a = malloc(d * sizeof(double)), *cv = malloc(d * sizeof(double));
    for (int block = 0; block < M_L; block++) {
        probe_bias_result r;
        ck_assert_int_eq(probe_svd_bias(m, NULL, block, k, &r), 0);
        double *En = naive_en(m, block);
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices(m, block, (int)h, &hs);
            for (size_t i = 0; i < d; i++) {
                a[i] = cv[i] = 0;
                for (size_t t = 0; t < dh; t++) {
                    a[i] += (double)GPT2_AT(hs.wq, i, t) * hs.bk[t];
                    cv[i] += (double)GPT2_AT(hs.wk, i, t) * hs.bq[t];
                }
            }
            for (int list = 0; list < PROBE_BIAS_N; list++) {
                tt_scored *ref = tt_rank_all(list < 2 ? a : cv, En, V, d, list % 2 ? -1 : 1);
                tt_check_list(probe_bias_name(list), r.hits + (h * PROBE_BIAS_N + list) * k, ref, k, 1e-4, 1);
                free(ref);
            }
        }
        free(En);
        probe_bias_result_free(&r);
    }
    probe_bias_result r;
    ck_assert_int_eq(probe_svd_bias(m, NULL, M_L, k, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_svd_bias(m, NULL, 0, 0, &r), TW_EK);
    TT_FREE(a, cv);
}

START_TEST(test_probe_bias_vs_naive) { on_model(51, check_probe_bias_vs_naive); }
END_TEST

/* top 0 answers the spectra from the Gram matrices (nothing cached): the
 * factors' spectra to 1e-10 of the largest singular value, the same
 * frac99; a head whose W_q is nearly rank-deficient is left to the factors
 * (its entry is then cached) and answers their spectrum bit for bit. */
START_TEST(test_svd_spectra_gram)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 53);
    const gpt2_model *m = &tm.m;
    const size_t dh = M_D / M_H;
    for (int block = 0; block < M_L; block++)
        for (int mat = 0; mat < 2; mat++) {
            blockcache *c = blockcache_new((size_t)1 << 26);
            probe_svd_result r0, r3;
            ck_assert_int_eq(probe_svd(m, ANA_CTX(c), block, mat, -1, 0, 5, &r0), TW_OK);
            blockcache_stats st;
            blockcache_get_stats(c, &st);
            ck_assert_uint_eq(st.entries, 0);
            ck_assert_int_eq(probe_svd(m, NULL, block, mat, -1, 3, 5, &r3), TW_OK);
            for (size_t h = 0; h < M_H; h++) {
                for (size_t t = 0; t < dh; t++) {
                    const double a = r0.s[h * dh + t], b = r3.s[h * dh + t];
                    ck_assert_msg(fabs(a - b) <= 1e-10 * r3.s[h * dh], "block %d head %zu s[%zu] %.17g %.17g",
                                  block, h, t, a, b);
                    ck_assert(fabs(r0.coverage[h * dh + t] - r3.coverage[h * dh + t]) <= 1e-10);
                }
                ck_assert(r0.frac99[h] == r3.frac99[h]);
            }
            probe_svd_result_free(&r0);
            probe_svd_result_free(&r3);
            blockcache_free(c);
        }
    ana_head hs; /* head 1 of block 0: column 1 of W_q a hair from column 0 */
    ana_head_slices(m, 0, 1, &hs);
    for (size_t i = 0; i < M_D; i++)
        ((float *)hs.wq.p)[i * hs.wq.rs + hs.wq.cs] = GPT2_AT(hs.wq, i, 0) * (1.0f + 0x1p-20f);
    blockcache *c = blockcache_new((size_t)1 << 26);
    probe_svd_result r0, r3;
    ck_assert_int_eq(probe_svd(m, ANA_CTX(c), 0, PROBE_SVD_QK, -1, 0, 5, &r0), TW_OK);
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 1); /* that head's factors */
    ck_assert_int_eq(probe_svd(m, NULL, 0, PROBE_SVD_QK, -1, 3, 5, &r3), TW_OK);
    ck_assert_int_eq(memcmp(r0.s + dh, r3.s + dh, dh * sizeof(double)), 0);
    probe_svd_result_free(&r0);
    probe_svd_result_free(&r3);
    blockcache_free(c);
    tt_model_free(&tm);
}
END_TEST

/* Bitwise equality of two bias results' hits. */
static void same_bias(const probe_bias_result *a, const probe_bias_result *b)
{
    ck_assert_int_eq(a->block, b->block);
    ck_assert_uint_eq(a->n_head, b->n_head);
    ck_assert_uint_eq(a->k, b->k);
    assert_hits_equal(a->hits, b->hits, a->n_head * PROBE_BIAS_N * a->k);
}

/* Whether the cache holds LN_b(E) of block b. */
static int has_ln1(const gpt2_model *m, blockcache *c, int b)
{
    blockcache_entry *e = NULL;
    if (ana_lookup_ln1_embeddings(m, ANA_CTX(c), b, &e) != TW_OK) return 0;
    blockcache_release(c, e);
    return 1;
}

/* The bias probes of every block share one LN_0(E) entry, built once (no
 * LN_b(E) is formed), and answer bit for bit what topk_rows_opt against a
 * cached LN_b(E) answers; a sweep's blocks ahead are kept and served from
 * the cache; lists that cannot be certified (rows repeated: exact ties)
 * fall back to LN_b(E) formed tile by tile (from the statistics of E: one
 * more entry, no LN_b(E)) and still answer the same. */
static void check_bias_shared_ln0(const gpt2_model *m, int ties)
{
    const int L = m->cfg.n_layer;
    const size_t k = 6;
    blockcache *c = blockcache_new((size_t)1 << 26), *cd = blockcache_new((size_t)1 << 26);
    for (int b = 0; b < L; b++) {
        probe_bias_result r, d;
        ck_assert_int_eq(probe_svd_bias(m, ANA_CTX(c), b, k, &r), TW_OK);
        blockcache_entry *en = NULL; /* the direct way: LN_b(E) cached first */
        ck_assert_int_eq(ana_acquire_ln1_embeddings(m, ANA_CTX(cd), b, &en), TW_OK);
        blockcache_release(cd, en);
        ck_assert_int_eq(probe_svd_bias(m, ANA_CTX(cd), b, k, &d), TW_OK);
        same_bias(&r, &d);
        ck_assert_int_eq(has_ln1(m, c, b), 0); /* not even for the fallback */
        probe_bias_result_free(&r);
        probe_bias_result_free(&d);
    }
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 1 + (size_t)(ties ? 1 : 0));  /* LN_0(E) (+ the fallbacks' lnstats(E)) */
    ck_assert_uint_eq(st.misses, 1 + (uint64_t)(ties ? 1 : 0)); /* each built once */
    ck_assert_uint_ge(st.hits, (uint64_t)L - 1);                /* and shared by the other blocks */
    /* a sweep: block 0 computes the blocks after it in its passes, keeps them */
    blockcache *cs = blockcache_new((size_t)1 << 26);
    probe_bias_result r0, r1, d1;
    ck_assert_int_eq(probe_svd_bias_sweep(m, ANA_CTX(cs), 0, L - 1, k, &r0), TW_OK);
    blockcache_get_stats(cs, &st);
    const uint64_t misses = st.misses;
    ck_assert_uint_eq(st.entries, (size_t)L + (size_t)(ties ? 1 : 0)); /* LN_0(E) + L - 1 kept blocks */
    ck_assert_int_eq(probe_svd_bias_sweep(m, ANA_CTX(cs), 1, L - 1, k, &r1), TW_OK);
    blockcache_get_stats(cs, &st);
    ck_assert_uint_eq(st.misses, misses); /* served from what block 0 kept */
    ck_assert_int_eq(probe_svd_bias(m, NULL, 1, k, &d1), TW_OK);
    same_bias(&r1, &d1);
    probe_bias_result_free(&d1);
    ck_assert_int_eq(probe_svd_bias(m, NULL, 0, k, &d1), TW_OK);
    same_bias(&r0, &d1);
    probe_bias_result_free(&r0);
    probe_bias_result_free(&r1);
    probe_bias_result_free(&d1);
    blockcache_free(cs);
    blockcache_free(c);
    blockcache_free(cd);
}

START_TEST(test_bias_shared_ln0)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 52);
    check_bias_shared_ln0(&tm.m, 0);
    float *E = (float *)tm.m.p.wte; /* rows repeated: exact ties everywhere */
    for (size_t j = 3; j < M_V; j++) memcpy(E + j * M_D, E + (j % 3) * M_D, M_D * sizeof(float));
    check_bias_shared_ln0(&tm.m, 1);
    check_probe_bias_vs_naive(&tm.m); /* the ties too, against the double ranking */
    tt_model_free(&tm);
}
END_TEST

/* ---- LN_b(E) formed tile by tile ---- */

/* The formed LN_b(E) is the cached one: the same rows and largest norm,
 * bit for bit; and the analyses that read it (/svd's both matrices, /probe
 * by either method) answer bit for bit the same cold (rows formed, no
 * LN_b(E) entry made) as with the block's LN_b(E) cached first. */
static void check_formed_as_cached(const gpt2_model *m)
{
    const size_t V = m->cfg.vocab_size, d = m->cfg.n_embd, H = m->cfg.n_head, k = 5;
    const int32_t ids[] = {3, 77, 431, 5, 9, 12, 40, 41};
    const size_t W = sizeof ids / sizeof ids[0];
    float *row = malloc(V * d * sizeof(float));
    for (int block = 0; block < m->cfg.n_layer; block++) {
        blockcache *cold = blockcache_new((size_t)1 << 26), *warm = blockcache_new((size_t)1 << 26);
        blockcache_entry *en = NULL;
        ck_assert_int_eq(ana_acquire_ln1_embeddings(m, ANA_CTX(warm), block, &en), TW_OK);
        ana_ln_rows lr;
        ck_assert_int_eq(ana_ln1_rows_open(m, ANA_CTX(cold), block, &lr), TW_OK);
        ck_assert_ptr_null(lr.f.rows);
        double mx = ana_ln_rows_form(&lr, 0, V, row);
        ck_assert_mem_eq(row, blockcache_data(en), V * d * sizeof(float));
        ck_assert_msg((float)mx == ana_ln1_max_norm(m, en) || (isnan(mx) && isnan(ana_ln1_max_norm(m, en))),
                      "max norm %.9g vs %.9g", mx, (double)ana_ln1_max_norm(m, en));
        ana_ln_rows_close(&lr);
        ck_assert_int_eq(ana_ln1_rows_open(m, ANA_CTX(warm), block, &lr), TW_OK);
        ck_assert_ptr_eq(lr.f.rows, blockcache_data(en)); /* the cached matrix itself */
        ana_ln_rows_close(&lr);
        const int both[2] = {PROBE_SVD_QK, PROBE_SVD_VO};
        probe_svd_result a[2], b[2];
        ck_assert_int_eq(probe_svd_multi(m, ANA_CTX(cold), block, both, 2, -1, 6, k, a), TW_OK);
        ck_assert_int_eq(probe_svd_multi(m, ANA_CTX(warm), block, both, 2, -1, 6, k, b), TW_OK);
        for (int i = 0; i < 2; i++) {
            assert_hits_equal(a[i].left, b[i].left, H * 6 * k);
            assert_hits_equal(a[i].right, b[i].right, H * 6 * k);
            ck_assert_mem_eq(a[i].sign, b[i].sign, H * 6 * sizeof(int));
            probe_svd_result_free(&a[i]);
            probe_svd_result_free(&b[i]);
        }
        const int methods[] = {PROBE_DIRECT, PROBE_FACTORED};
        for (int mi = 0; mi < 2; mi++) {
            probe_words_result pa, pb;
            ck_assert_int_eq(probe_words_opt(m, ANA_CTX(cold), block, ids, W, k, methods[mi], &pa), TW_OK);
            ck_assert_int_eq(probe_words_opt(m, ANA_CTX(warm), block, ids, W, k, methods[mi], &pb), TW_OK);
            assert_hits_equal(pa.keys, pb.keys, W * H * k);
            assert_hits_equal(pa.values, pb.values, W * H * k);
            assert_hits_equal(pa.layer_values, pb.layer_values, W * k);
            probe_words_result_free(&pa);
            probe_words_result_free(&pb);
        }
        ck_assert_int_eq(has_ln1(m, cold, block), 0); /* never formed whole */
        blockcache_release(warm, en);
        blockcache_free(cold);
        blockcache_free(warm);
    }
    free(row);
}

/* max_j |E_j| (ana_wte_max_norm) is topk_max_row_norm's float whether E's
 * statistics were cached first (their pass measures it) or not (a pass of
 * its own on every core), and with no cache. */
static void check_wte_max_norm(const gpt2_model *m)
{
    const size_t V = m->cfg.vocab_size, d = m->cfg.n_embd;
    const float want = topk_max_row_norm(m->p.wte, V, d);
    float got = 0.0f;
    ck_assert_int_eq(ana_wte_max_norm(m, ANA_CTX(NULL), &got), TW_OK);
    ck_assert_float_eq(got, want);
    blockcache *c = blockcache_new((size_t)1 << 26);
    ck_assert_int_eq(ana_wte_max_norm(m, ANA_CTX(c), &got), TW_OK);
    ck_assert_float_eq(got, want);
    blockcache_free(c);
    c = blockcache_new((size_t)1 << 26);
    ana_ln_rows lr;
    ck_assert_int_eq(ana_ln1_rows_open(m, ANA_CTX(c), 0, &lr), TW_OK); /* the statistics first */
    ana_ln_rows_close(&lr);
    got = 0.0f;
    ck_assert_int_eq(ana_wte_max_norm(m, ANA_CTX(c), &got), TW_OK);
    ck_assert_float_eq(got, want);
    blockcache_free(c);
}

START_TEST(test_ln_rows_formed_as_cached)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 71);
    check_formed_as_cached(&tm.m);
    check_wte_max_norm(&tm.m);
    float *E = (float *)tm.m.p.wte; /* rows repeated: exact ties, the exact fallback over formed rows */
    for (size_t j = 5; j < M_V; j += 3) memcpy(E + j * M_D, E + 2 * M_D, M_D * sizeof(float));
    const unsigned long long scans = topk_exact_scans();
    check_formed_as_cached(&tm.m);
    ck_assert_uint_gt(topk_exact_scans(), scans);
    E[100 * M_D + 3] = NAN; /* a NaN row and an infinite one: nothing certified, the same answers */
    E[200 * M_D + 1] = INFINITY;
    check_formed_as_cached(&tm.m);
    tt_model_free(&tm);
}
END_TEST

static void same_words(const probe_words_result *a, const probe_words_result *b)
{
    ck_assert_uint_eq(a->n_words, b->n_words);
    ck_assert_uint_eq(a->k, b->k);
    const size_t W = a->n_words, H = a->n_head, k = a->k;
    ck_assert_mem_eq(a->ids, b->ids, W * sizeof *a->ids);
    for (size_t i = 0; i < W * H * k; i++) {
        ck_assert(a->keys[i].id == b->keys[i].id && a->keys[i].score == b->keys[i].score);
        ck_assert(a->values[i].id == b->values[i].id && a->values[i].score == b->values[i].score);
    }
    for (size_t i = 0; i < W * k; i++)
        ck_assert(a->layer_values[i].id == b->layer_values[i].id &&
                  a->layer_values[i].score == b->layer_values[i].score);
    for (size_t i = 0; i < W * H; i++) ck_assert(a->value_norm[i] == b->value_norm[i]);
    for (size_t i = 0; i < W; i++) ck_assert(a->layer_norm[i] == b->layer_norm[i]);
}

/* A word's lists are kept per block (with k at least 10): a later probe of
 * the same words with k up to that is answered from them, only the new
 * words computed, and the answers are those of an uncached probe bit for
 * bit (a repeated word included); a larger k computes again. */
START_TEST(test_word_cache_smaller_k)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, 3000, 62);
    blockcache *c = blockcache_new((size_t)1 << 26);
    const int32_t ids[] = {7, 11, 7, 2999}, more[] = {11, 42};
    const struct {
        const int32_t *ids;
        size_t W, k, new_fills;
    } steps[] = {{ids, 4, 5, 3},  {ids, 4, 3, 0},  {ids, 4, 10, 0},
                 {more, 2, 7, 1}, {ids, 4, 12, 3}, {ids, 4, 1, 0}};
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        blockcache_stats b0, b1;
        blockcache_get_stats(c, &b0);
        probe_words_result a, ref;
        ck_assert_int_eq(probe_words(&tm.m, ANA_CTX(c), 1, steps[s].ids, steps[s].W, steps[s].k, &a), 0);
        blockcache_get_stats(c, &b1);
        /* step 0 also fills E's statistics and max |E_j| */
        ck_assert_msg(b1.misses - b0.misses == steps[s].new_fills + (s == 0 ? 2 : 0), "step %zu: %llu fills",
                      s, (unsigned long long)(b1.misses - b0.misses));
        ck_assert_int_eq(probe_words(&tm.m, NULL, 1, steps[s].ids, steps[s].W, steps[s].k, &ref), 0);
        same_words(&a, &ref);
        probe_words_result_free(&a);
        probe_words_result_free(&ref);
    }
    blockcache_free(c);
    tt_model_free(&tm);
}
END_TEST

/* A request of so many words that their lists at k 10 would pass 2^20
 * entries keeps them with its own k: the same request again fills
 * nothing, a k above it fills again, and the answers are an uncached
 * probe's (the arrays of the first words come first in the result). */
START_TEST(test_word_cache_large_request)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, 3000, 63);
    blockcache *c = blockcache_new((size_t)1 << 28);
    const size_t W = ((size_t)1 << 20) / (2 * M_H + 1) / 10 + 1; /* just over */
    int32_t *ids = malloc(W * sizeof *ids);
    for (size_t w = 0; w < W; w++) ids[w] = (int32_t)(w % 3000);
    probe_words_result a, ref;
    blockcache_stats b0, b1;
    ck_assert_int_eq(probe_words(&tm.m, ANA_CTX(c), 0, ids, W, 1, &a), 0);
    probe_words_result_free(&a);
    blockcache_get_stats(c, &b0);
    ck_assert_int_eq(probe_words(&tm.m, ANA_CTX(c), 0, ids, W, 1, &a), 0); /* kept at k 1 */
    blockcache_get_stats(c, &b1);
    ck_assert_uint_eq(b1.misses, b0.misses);
    /* a word's answer is its own: the first 50 against an uncached probe of them */
    ck_assert_int_eq(probe_words(&tm.m, NULL, 0, ids, 50, 1, &ref), 0);
    a.n_words = 50;
    same_words(&a, &ref);
    a.n_words = W;
    probe_words_result_free(&a);
    probe_words_result_free(&ref);
    ck_assert_int_eq(probe_words(&tm.m, ANA_CTX(c), 0, ids, 2, 2, &a), 0); /* not kept at k 10 */
    blockcache_get_stats(c, &b0);
    ck_assert_uint_eq(b0.misses, b1.misses + 2);
    probe_words_result_free(&a);
    free(ids);
    blockcache_free(c);
    tt_model_free(&tm);
}
END_TEST

/* Concurrent analyses of one cold block share one fill of each entry they
 * need (the statistics of E and max |E_j|: LN_b(E) itself is never formed
 * whole). */
typedef struct {
    const gpt2_model *m;
    blockcache *c;
    int rc;
} probe_arg;

static void *probe_thread(void *p)
{
    probe_arg *a = p;
    const int32_t ids[] = {1, 2, 3};
    probe_words_result r;
    a->rc = probe_words(a->m, ANA_CTX(a->c), 1, ids, 3, 4, &r);
    probe_words_result_free(&r);
    return NULL;
}

START_TEST(test_concurrent_probes_share_fill)
{
    tt_model tm;
    model_build(&tm, M_L, M_H, M_D, 20000, 61); // V large enough to overlap
    blockcache *c = blockcache_new((size_t)1 << 26);
    enum { NT = 4 };
    probe_arg args[NT];
    for (int i = 0; i < NT; i++) args[i] = (probe_arg){&tm.m, c, 1};
    tt_run_threads(probe_thread, args, sizeof *args, NT);
    for (int i = 0; i < NT; i++) ck_assert_int_eq(args[i].rc, 0);
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 2 + 3); /* and the three words' kept lists */
    ck_assert_uint_eq(st.misses, 2 + 3);
    /* each entry filled once, found by the other threads (a word by its
     * lookup, or by its store when the lookup came first); and the fill of
     * max |E_j| reads it from E's statistics (one lookup more), no pass of E */
    ck_assert_uint_eq(st.hits, 2 * (NT - 1) + 1 + 3 * (NT - 1));
    blockcache_entry *en = NULL;
    ck_assert_int_eq(ana_lookup_ln1_embeddings(&tm.m, ANA_CTX(c), 1, &en), 1);
    blockcache_free(c);
    tt_model_free(&tm);
}
END_TEST

/* The analyses of a model whose weights are stored as nn.Linear's (out, in)
 * give the same ids, and scores to float rounding, as the Hugging Face
 * layout; a model without biases runs every analysis. */
START_TEST(test_layouts_and_no_bias)
{
    tt_model hf, lin, nob;
    tt_model_build_layouts(
        &hf, &lin, &nob,
        &(tt_model_opts){
            .n_layer = M_L, .n_head = M_H, .n_embd = M_D, .n_ctx = 8, .vocab_size = M_V, .seed = 61});
    const int32_t ids[] = {3, 77, 431};
    const size_t W = 3, k = 6, H = M_H;
    for (int block = 0; block < M_L; block++) {
        probe_words_result a, b, c;
        ck_assert_int_eq(probe_words(&hf.m, NULL, block, ids, W, k, &a), TW_OK);
        ck_assert_int_eq(probe_words(&lin.m, NULL, block, ids, W, k, &b), TW_OK);
        ck_assert_int_eq(probe_words(&nob.m, NULL, block, ids, W, k, &c), TW_OK);
        for (size_t i = 0; i < W * H * k; i++) {
            ck_assert_int_eq(a.keys[i].id, b.keys[i].id);
            ck_assert_int_eq(a.values[i].id, b.values[i].id);
            ck_assert(fabs(a.keys[i].score - b.keys[i].score) <= 1e-5 * (1 + fabs(a.keys[i].score)));
        }
        probe_words_result_free(&a);
        probe_words_result_free(&b);
        probe_words_result_free(&c);
        for (int mat = 0; mat < 2; mat++) {
            probe_svd_result sa, sb, sc;
            int which = mat ? PROBE_SVD_VO : PROBE_SVD_QK;
            ck_assert_int_eq(probe_svd(&hf.m, NULL, block, which, -1, 4, k, &sa), TW_OK);
            ck_assert_int_eq(probe_svd(&lin.m, NULL, block, which, -1, 4, k, &sb), TW_OK);
            ck_assert_int_eq(probe_svd(&nob.m, NULL, block, which, -1, 4, k, &sc), TW_OK);
            for (size_t i = 0; i < H * (M_D / M_H); i++)
                ck_assert(fabs(sa.s[i] - sb.s[i]) <= 1e-9 * (1 + sa.s[i]));
            for (size_t i = 0; i < H * 4 * k; i++) ck_assert_int_eq(sa.left[i].id, sb.left[i].id);
            probe_svd_result_free(&sa);
            probe_svd_result_free(&sb);
            probe_svd_result_free(&sc);
        }
        probe_bias_result br;
        ck_assert_int_eq(probe_svd_bias(&nob.m, NULL, block, k, &br), TW_OK);
        for (size_t i = 0; i < H * PROBE_BIAS_N * k; i++) ck_assert(br.hits[i].score == 0.0); /* a = c = 0 */
        probe_bias_result_free(&br);
    }
    embed_norms_result en;
    ck_assert_int_eq(embed_norms(&nob.m, NULL, k, &en), TW_OK);
    embed_norms_result_free(&en);
    tt_model_free(&hf);
    tt_model_free(&lin);
    tt_model_free(&nob);
}
END_TEST

int main(void)
{
    const TTest *const analyses_tests[] = {test_embed_norms_vs_naive,
                                           test_embed_normalization_vs_naive,
                                           test_probe_words_vs_naive,
                                           test_probe_svd_vs_dense,
                                           test_probe_svd_sign_rule,
                                           test_probe_bias_vs_naive,
                                           test_bias_shared_ln0,
                                           test_svd_spectra_gram,
                                           test_layouts_and_no_bias,
                                           test_ln_rows_formed_as_cached,
                                           NULL};
    const TTest *const cache_tests[] = {test_concurrent_probes_share_fill, test_word_cache_smaller_k,
                                        test_word_cache_large_request, NULL};
    const tw_case cases[] = {
        {.name = "analyses", .timeout = 120, .tests = analyses_tests},
        {.name = "cache", .timeout = 120, .tests = cache_tests},
    };
    return tw_check_main("analyses", cases, 2);
}
