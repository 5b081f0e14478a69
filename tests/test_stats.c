/* Unit tests of core/ana/traj_stats (docs/MATH.md §14; its logit lens is
 * core/ana/lens's, tested in test_lens.c): Student's t quantiles against
 * published values, and the whole statistic against a naive double
 * implementation on small models in both weight layouts and without biases,
 * with several chunks, skipped texts, progress and cancellation. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/progress.h"
#include "core/ana/traj_stats.h"
#include "core/nn/forward.h"
#include "core/nn/topk.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

/* Plain double dot product, summed left to right. */
static double dot(const float *a, const float *b, size_t d)
{
    double s = 0;
    for (size_t i = 0; i < d; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* The naive rank and log-sum-exp of q against every row of M. */
static void naive_lens(const float *M, size_t n, size_t d, const float *q, int32_t t, int32_t *rank,
                       double *lse, double *st)
{
    double *s = malloc(n * sizeof *s), mx = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        s[j] = topk_dot(q, M + j * d, d);
        if (s[j] > mx) mx = s[j];
    }
    int32_t r = 1;
    double sum = 0;
    for (size_t j = 0; j < n; j++) {
        if ((int32_t)j != t && (s[j] > s[t] || (s[j] == s[t] && (int32_t)j < t))) r++;
        sum += exp(s[j] - mx);
    }
    *rank = r;
    *lse = mx + log(sum);
    *st = s[t];
    free(s);
}

START_TEST(test_student_t)
{
    /* t_{0.975, nu} from the standard tables (to 12 digits) */
    static const struct {
        double nu, t;
    } tab[] = {{1, 12.7062047361747},   {2, 4.30265272974946},    {3, 3.18244630528371},
               {5, 2.57058183563631},   {10, 2.22813885198627},   {30, 2.04227245630124},
               {100, 1.98397151852355}, {1000, 1.96233908082641}, {1e6, 1.95996629}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        double q = ts_student_t_quantile(0.975, tab[i].nu);
        ck_assert_msg(fabs(q - tab[i].t) < 1e-9 * tab[i].t + (tab[i].nu > 1e5 ? 1e-7 : 0),
                      "nu %g: %.15g vs %.15g", tab[i].nu, q, tab[i].t);
        ck_assert(fabs(ts_student_t_cdf(q, tab[i].nu) - 0.975) < 1e-12);
        ck_assert(fabs(ts_student_t_quantile(0.025, tab[i].nu) + q) < 1e-12 * q);
    }
    ck_assert(fabs(ts_student_t_cdf(0, 3) - 0.5) < 1e-15);
    /* nu = 1 is the Cauchy distribution: F(x) = 1/2 + atan(x)/pi */
    for (double x = -20; x <= 20; x += 0.7)
        ck_assert(fabs(ts_student_t_cdf(x, 1) - (0.5 + atan(x) / M_PI)) < 1e-13);
    ck_assert(isnan(ts_student_t_quantile(1.0, 3)));
    ck_assert(isnan(ts_student_t_quantile(0.9, 0)));

    double v[3] = {1, 2, 6};
    ts_summary s = ts_summarise(v, 3);
    ck_assert(s.n == 3 && fabs(s.mean - 3) < 1e-15 && fabs(s.std - sqrt(7.0)) < 1e-14);
    double half = 4.30265272974946 * sqrt(7.0) / sqrt(3.0);
    ck_assert(fabs(s.ci_low - (3 - half)) < 1e-9 && fabs(s.ci_high - (3 + half)) < 1e-9);
    s = ts_summarise(v, 1);
    ck_assert(s.mean == 1 && isnan(s.std) && isnan(s.ci_low) && isnan(s.ci_high));
    s = ts_summarise(v, 0);
    ck_assert(isnan(s.mean));
}
END_TEST

/* ---- the whole statistic against a naive implementation ---- */

enum { M_L = 2, M_H = 2, M_C = 16, M_CTX = 64, M_V = 300 };

/* Pointer to state s at position p of f, in the trajectory order of
 * docs/MATH.md §7.3: the embedding, x_0, LN_f(x_0), then LN_f of each block's
 * residual (resid_lnf holds those blocks one after another). */
static const float *naive_state(const gpt2_forward_result *f, size_t s, size_t p)
{
    const float *const first[3] = {f->emb, f->x0, f->x0_lnf};
    const size_t C = (size_t)f->C, row = s < 3 ? p : (s - 3) * (size_t)f->n + p;
    return (s < 3 ? first[s] : f->resid_lnf) + row * C;
}

static double naive_cos(const float *a, const float *b, size_t d)
{
    double ab = dot(a, b, d), aa = dot(a, a, d), bb = dot(b, b, d);
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0;
}

static void near(double got, double want, double tol, const char *what, size_t s, int b)
{
    if (isnan(want)) {
        ck_assert_msg(isnan(got), "%s state %zu bucket %d: %g, expected NaN", what, s, b, got);
        return;
    }
    ck_assert_msg(fabs(got - want) <= tol * fmax(1.0, fabs(want)),
                  "%s state %zu bucket %d: %.12g vs naive %.12g", what, s, b, got, want);
}

/* Checks traj_stats on m against a naive computation for the given texts. */
static void check_model(const gpt2_model *m, const ts_text *tx, size_t nt, size_t k)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, S = (size_t)m->cfg.n_layer + 3;
    traj_stats_result r;
    tw_progress pr;
    tw_progress_reset(&pr);
    ana_ctx x = {.progress = &pr};
    ck_assert_int_eq(traj_stats(m, &x, tx, nt, k, GPT2_GELU_TANH, &r), TW_OK);
    const char *stage;
    long long done, total;
    tw_progress_read(&pr, &stage, &done, &total);
    ck_assert_str_eq(stage, "summaries");
    ck_assert(done == 1 && total == 1);

    size_t P = 0, nk = 0, ntok = 0, skipped = 0;
    for (size_t i = 0; i < nt; i++) {
        if (tx[i].n < 2) {
            skipped++;
            continue;
        }
        nk++;
        ntok += tx[i].n;
        P += tx[i].n - 1;
    }
    ck_assert(r.n_states == S && r.n_positions == P && r.n_texts == nk && r.n_tokens == ntok &&
              r.n_texts_skipped == skipped && r.k == k);
    /* naive per-position values: (S, P) each */
    double *val[TS_N_STATS];
    for (int st = 0; st < TS_N_STATS; st++) val[st] = malloc(S * P * sizeof(double));
    int32_t *rank = malloc(S * P * sizeof *rank), *tpos = malloc(P * sizeof *tpos);
    size_t p0 = 0;
    for (size_t i = 0; i < nt; i++) {
        if (tx[i].n < 2) continue;
        gpt2_forward_result *f;
        gpt2_forward_opts o = {.kernels = GPT2_KERNELS_BLAS, .logits = GPT2_LOGITS_NONE, .skip_attention = 1};
        ck_assert_int_eq(gpt2_forward(m, tx[i].ids, tx[i].n, &o, &f), TW_OK);
        for (size_t p = 0; p + 1 < tx[i].n; p++) {
            tpos[p0 + p] = (int32_t)p;
            const float *en = m->p.wte + (size_t)tx[i].ids[p + 1] * d,
                        *es = m->p.wte + (size_t)tx[i].ids[p] * d;
            for (size_t s = 0; s < S; s++) {
                const float *y = naive_state(f, s, p);
                size_t sl = s * P + p0 + p;
                val[TS_COS_NEXT][sl] = naive_cos(y, en, d);
                val[TS_COS_SELF][sl] = naive_cos(y, es, d);
                val[TS_COS_FINAL][sl] = naive_cos(y, naive_state(f, S - 1, p), d);
                double lse, sc;
                naive_lens(m->p.wte, V, d, y, tx[i].ids[p + 1], &rank[sl], &lse, &sc);
                val[TS_LOG_RANK][sl] = log((double)rank[sl]);
                val[TS_PROB_NEXT][sl] = exp(sc - lse);
            }
        }
        gpt2_forward_free(f);
        p0 += tx[i].n - 1;
    }
    for (size_t p = 0; p < P; p++) ck_assert_int_eq(r.t[p], tpos[p]);
    for (size_t i = 0; i < S * P; i++) {
        ck_assert_msg(r.rank[i] == rank[i], "slot %zu: rank %d, naive %d", i, r.rank[i], rank[i]);
        for (int st = 0; st < TS_N_STATS; st++)
            ck_assert_msg(fabs(r.values[(size_t)st * S * P + i] - val[st][i]) <= 1e-6,
                          "slot %zu %s: %.12g vs naive %.12g", i, ts_stat_name((ts_stat)st),
                          r.values[(size_t)st * S * P + i], val[st][i]);
    }
    /* the summaries, by the definition */
    double *v = malloc((P + 1) * sizeof *v);
    for (size_t s = 0; s < S; s++)
        for (int b = 0; b < TS_N_BUCKETS; b++) {
            const ts_cell *c = &r.cells[s * TS_N_BUCKETS + (size_t)b];
            for (int st = 0; st < TS_N_STATS; st++) {
                size_t n = 0;
                double sum = 0;
                for (size_t p = 0; p < P; p++)
                    if (b == TS_BUCKET_ALL || (int)ts_bucket_of((size_t)tpos[p]) == b) {
                        v[n++] = val[st][s * P + p];
                        sum += val[st][s * P + p];
                    }
                const ts_summary *g = &c->stat[st];
                ck_assert_uint_eq(g->n, n);
                double mean = n ? sum / (double)n : NAN, ss = 0;
                for (size_t i = 0; i < n; i++) ss += (v[i] - mean) * (v[i] - mean);
                double sd = n > 1 ? sqrt(ss / (double)(n - 1)) : NAN;
                double half =
                    n > 1 ? ts_student_t_quantile(0.975, (double)(n - 1)) * sd / sqrt((double)n) : NAN;
                near(g->mean, mean, 1e-6, ts_stat_name((ts_stat)st), s, b);
                near(g->std, sd, 1e-5, "std", s, b);
                near(g->ci_low, mean - half, 1e-5, "ci_low", s, b);
                near(g->ci_high, mean + half, 1e-5, "ci_high", s, b);
            }
            /* median, top1, topk of the ranks */
            size_t n = 0, t1 = 0, tk = 0;
            int32_t *rk = malloc((P + 1) * sizeof *rk);
            for (size_t p = 0; p < P; p++)
                if (b == TS_BUCKET_ALL || (int)ts_bucket_of((size_t)tpos[p]) == b) {
                    rk[n++] = rank[s * P + p];
                    t1 += rank[s * P + p] == 1;
                    tk += rank[s * P + p] <= (int32_t)k;
                }
            for (size_t i = 1; i < n; i++) /* insertion sort */
                for (size_t j = i; j > 0 && rk[j - 1] > rk[j]; j--) {
                    int32_t t = rk[j];
                    rk[j] = rk[j - 1];
                    rk[j - 1] = t;
                }
            if (n == 0) {
                ck_assert(isnan(c->rank_median) && isnan(c->top1) && isnan(c->topk));
            } else {
                ck_assert(c->rank_median == 0.5 * (rk[(n - 1) / 2] + rk[n / 2]));
                ck_assert(c->top1 == (double)t1 / (double)n && c->topk == (double)tk / (double)n);
            }
            free(rk);
        }
    /* the last state is its own final state */
    ck_assert(fabs(r.cells[(S - 1) * TS_N_BUCKETS].stat[TS_COS_FINAL].mean - 1) < 1e-12);
    /* the embedding state is the token's own row */
    ck_assert(fabs(r.cells[0].stat[TS_COS_SELF].mean - 1) < 1e-12);
    free(v);
    for (int st = 0; st < TS_N_STATS; st++) free(val[st]);
    TT_FREE(rank, tpos);
    traj_stats_result_free(&r);
}

/* Texts of lengths 1 (skipped), 2, 5, 9, 13, 64 and, with many, enough
 * full-context texts that the rows fill several chunks. */
static ts_text *make_texts(tw_rng *r, size_t *nt, int many, int32_t **store)
{
    static const size_t lens[] = {1, 2, 5, 9, 13, M_CTX};
    size_t n = many ? 22 : 6, total = 0;
    ts_text *tx = malloc(n * sizeof *tx);
    for (size_t i = 0; i < n; i++) total += i < 6 ? lens[i] : M_CTX;
    int32_t *ids = *store = malloc(total * sizeof *ids);
    for (size_t i = 0, o = 0; i < n; i++) {
        tx[i].n = i < 6 ? lens[i] : M_CTX;
        tx[i].ids = ids + o;
        for (size_t t = 0; t < tx[i].n; t++) ids[o + t] = (int32_t)tw_rng_below(r, M_V);
        o += tx[i].n;
    }
    *nt = n;
    return tx;
}

static void run_layout(int linear, int no_bias, int many)
{
    tt_model tm;
    tt_model_build(&tm, &(tt_model_opts){.n_layer = M_L,
                                         .n_head = M_H,
                                         .n_embd = M_C,
                                         .n_ctx = M_CTX,
                                         .vocab_size = M_V,
                                         .seed = 31,
                                         .linear_layout = linear,
                                         .no_bias = no_bias});
    tw_rng r = tt_rng(32);
    int32_t *store;
    size_t nt;
    ts_text *tx = make_texts(&r, &nt, many, &store);
    if (many) { /* more than one chunk of rows */
        size_t rows = 0;
        for (size_t i = 0; i < nt; i++) rows += tx[i].n > 1 ? (tx[i].n - 1) * (M_L + 3) : 0;
        ck_assert(rows > TS_CHUNK_ROWS);
    }
    /* a target that is a repeated token: the next token equals the current */
    store[3] = store[2];
    check_model(&tm.m, tx, nt, 3);
    TT_FREE(tx, store);
    tt_model_free(&tm);
}

START_TEST(test_stats_hf_layout) { run_layout(0, 0, 0); }
END_TEST

START_TEST(test_stats_linear_layout) { run_layout(1, 0, 0); }
END_TEST

START_TEST(test_stats_no_bias) { run_layout(0, 1, 0); }
END_TEST

START_TEST(test_stats_chunks) { run_layout(0, 0, 1); }
END_TEST

START_TEST(test_stats_errors_and_cancel)
{
    tt_model tm;
    tt_model_build(
        &tm,
        &(tt_model_opts){
            .n_layer = M_L, .n_head = M_H, .n_embd = M_C, .n_ctx = M_CTX, .vocab_size = M_V, .seed = 33});
    int32_t ids[4] = {1, 2, 3, 4};
    ts_text t = {ids, 4};
    traj_stats_result r;
    ck_assert_int_eq(traj_stats(&tm.m, NULL, &t, 1, 0, GPT2_GELU_TANH, &r), TW_EK);
    ck_assert_int_eq(traj_stats(&tm.m, NULL, &t, 1, M_V + 1, GPT2_GELU_TANH, &r), TW_EK);
    ids[2] = M_V;
    ck_assert_int_eq(traj_stats(&tm.m, NULL, &t, 1, 2, GPT2_GELU_TANH, &r), TW_ETOKEN);
    ck_assert(r.cells == NULL && r.values == NULL);
    ids[2] = 3;
    tw_cancel c = {.flag = 1};
    ck_assert_int_eq(traj_stats(&tm.m, &(ana_ctx){.cancel = &c}, &t, 1, 2, GPT2_GELU_TANH, &r), TW_ECANCELED);
    /* no text with a next token: every summary empty */
    ts_text one = {ids, 1};
    ck_assert_int_eq(traj_stats(&tm.m, NULL, &one, 1, 2, GPT2_GELU_ERF, &r), TW_OK);
    ck_assert(r.n_positions == 0 && r.n_texts == 0 && r.n_texts_skipped == 1);
    ck_assert(r.cells[0].stat[TS_COS_NEXT].n == 0 && isnan(r.cells[0].stat[TS_COS_NEXT].mean));
    traj_stats_result_free(&r);
    /* the GELU form reaches the forward pass: erf and tanh differ after block 0 */
    traj_stats_result a, b;
    ck_assert_int_eq(traj_stats(&tm.m, NULL, &t, 1, 2, GPT2_GELU_TANH, &a), TW_OK);
    ck_assert_int_eq(traj_stats(&tm.m, NULL, &t, 1, 2, GPT2_GELU_ERF, &b), TW_OK);
    ck_assert(a.cells[0].stat[TS_COS_NEXT].mean == b.cells[0].stat[TS_COS_NEXT].mean);
    ck_assert(a.cells[3 * TS_N_BUCKETS].stat[TS_COS_NEXT].mean !=
              b.cells[3 * TS_N_BUCKETS].stat[TS_COS_NEXT].mean);
    traj_stats_result_free(&a);
    traj_stats_result_free(&b);
    tt_model_free(&tm);
}
END_TEST

int main(void)
{
    const TTest *const student[] = {test_student_t, NULL};
    const TTest *const stats[] = {test_stats_hf_layout, test_stats_linear_layout,     test_stats_no_bias,
                                  test_stats_chunks,    test_stats_errors_and_cancel, NULL};
    const tw_case cases[] = {{.name = "student t", .tests = student},
                             {.name = "statistics", .timeout = 120, .tests = stats}};
    return tw_check_main("stats", cases, 2);
}
