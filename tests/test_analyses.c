/* Unit tests for the weight analyses (docs/MATH.md §2-§6): core/topk fast
 * path against its naive reference (including exact ties across GEMM
 * blocks), layer norm, the block cache (budget, LRU, reference counts,
 * single-flight), and every analysis against a straightforward double
 * computation written here: explicit d x d matrices, a dense LAPACKE SVD,
 * full sorts. The model is a small random gpt2_model built in memory. */
#include <check.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ana/blockcache.h"
#include "core/ana/embed_norms.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"
#include "core/nn/lnorm.h"
#include "core/nn/topk.h"
#include "tests/support/tw_check.h"

/* ---- Random numbers ---- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed * 0x9E3779B97F4A7C15ULL + 1; }

static double rng_uniform(void) /* [0, 1), xorshift64* */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static double rng_normal(void)
{
    double u = rng_uniform(), v = rng_uniform();
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

/* ---- A small random model ---- */

typedef struct {
    gpt2_model m;
    float *store;
    size_t used, cap;
} test_model;

static float *take(test_model *tm, size_t n, double center, double sd)
{
    ck_assert_uint_le(tm->used + n, tm->cap);
    float *p = tm->store + tm->used;
    for (size_t i = 0; i < n; i++) p[i] = (float)(center + sd * rng_normal());
    tm->used += n;
    return p;
}

/* L blocks, H heads, width d, vocabulary V; only what the analyses read. */
static void model_build(test_model *tm, int L, int H, int d, int V, uint64_t seed)
{
    memset(tm, 0, sizeof *tm);
    rng_seed(seed);
    size_t D = (size_t)d;
    tm->cap = (size_t)V * D + 2 * D + D + (size_t)L * (4 * D + 3 * D * D + 3 * D + D * D + D);
    tm->store = malloc(tm->cap * sizeof(float));
    ck_assert_ptr_nonnull(tm->store);
    gpt2_model *m = &tm->m;
    m->cfg = (gpt2_config){.n_layer = L,
                           .n_head = H,
                           .n_embd = d,
                           .n_inner = 4 * d,
                           .n_ctx = 8,
                           .vocab_size = V,
                           .ln_eps = 1e-5f};
    m->p.h = calloc((size_t)L, sizeof(gpt2_block));
    ck_assert_ptr_nonnull(m->p.h);
    // E: a shared mean direction plus per-row noise of varying size
    float *mu = take(tm, D, 0.0, 0.05);
    float *E = take(tm, (size_t)V * D, 0.0, 0.1);
    for (int i = 0; i < V; i++)
        for (size_t j = 0; j < D; j++)
            E[(size_t)i * D + j] = mu[j] + (float)(1.5 - (double)i / V) * E[(size_t)i * D + j];
    m->p.wte = E;
    m->p.ln_f_w = take(tm, D, 1.0, 0.2);
    m->p.ln_f_b = take(tm, D, 0.0, 0.1);
    for (int l = 0; l < L; l++) {
        gpt2_block *b = &m->p.h[l];
        b->ln_1_w = take(tm, D, 1.0, 0.2);
        b->ln_1_b = take(tm, D, 0.0, 0.1);
        b->ln_2_w = take(tm, D, 1.0, 0.2);
        b->ln_2_b = take(tm, D, 0.0, 0.1);
        b->attn_w = take(tm, 3 * D * D, 0.0, 0.2);
        b->attn_b = take(tm, 3 * D, 0.0, 0.2);
        b->attn_proj_w = take(tm, D * D, 0.0, 0.2);
        b->attn_proj_b = take(tm, D, 0.0, 0.1);
    }
}

static void model_free(test_model *tm)
{
    free(tm->m.p.h);
    free(tm->store);
}

enum { M_L = 2, M_H = 4, M_D = 48, M_V = 600 };

/* ---- Naive helpers (double) ---- */

/* LN of one row in double, written independently of core/lnorm. */
static void ln_row(const float *x, const float *g, const float *b, size_t d, double eps, double *out)
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < d; i++) s += x[i];
    double mean = s / d;
    for (size_t i = 0; i < d; i++) ss += (x[i] - mean) * (x[i] - mean);
    double sd = sqrt(ss / d + eps);
    for (size_t i = 0; i < d; i++) out[i] = (g ? g[i] : 1.0) * (x[i] - mean) / sd + (b ? b[i] : 0.0);
}

/* En (V, d) double for block b. */
static double *naive_en(const gpt2_model *m, int block)
{
    size_t V = m->cfg.vocab_size, d = m->cfg.n_embd;
    double *en = malloc(V * d * sizeof(double));
    for (size_t i = 0; i < V; i++)
        ln_row(m->p.wte + i * d, m->p.h[block].ln_1_w, m->p.h[block].ln_1_b, d, m->cfg.ln_eps, en + i * d);
    return en;
}

static double *as_double(const float *x, size_t n)
{
    double *y = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

typedef struct {
    double s;
    int id;
} scored;

static int cmp_desc(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return x->id - y->id;
}

/* The sorted list of v against M (n, d) double, best first (sign -1: of -v). */
static scored *naive_rank(const double *v, const double *M, size_t n, size_t d, double sign)
{
    scored *all = malloc(n * sizeof *all);
    for (size_t j = 0; j < n; j++) {
        double s = 0;
        for (size_t t = 0; t < d; t++) s += v[t] * M[j * d + t];
        all[j].s = sign * s;
        all[j].id = (int)j;
    }
    qsort(all, n, sizeof *all, cmp_desc);
    return all;
}

/* Fails unless hits (k) has exactly the ids of ref's first k and scores
 * within tol * (1 + max |score|). Returns the largest score difference. */
static double check_list(const char *what, const topk_hit *hits, const scored *ref, size_t k, double tol)
{
    double scale = 1.0, worst = 0.0;
    for (size_t t = 0; t < k; t++) scale = fmax(scale, fabs(ref[t].s));
    for (size_t t = 0; t < k; t++) {
        double diff = fabs(hits[t].score - ref[t].s);
        worst = fmax(worst, diff);
        ck_assert_msg(hits[t].id == ref[t].id, "%s: rank %zu id %d (score %.9g) != reference %d (score %.9g)",
                      what, t, hits[t].id, hits[t].score, ref[t].id, ref[t].s);
        ck_assert_msg(diff <= tol * scale, "%s: rank %zu score %.9g vs %.9g (diff %.3g > %.3g)", what, t,
                      hits[t].score, ref[t].s, diff, tol * scale);
    }
    return worst;
}

/* Exact equality of two hit lists, field by field (not the struct padding). */
static void assert_hits_equal(const topk_hit *a, const topk_hit *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(a[i].id == b[i].id && a[i].score == b[i].score, "hit %zu: %d (%.17g) vs %d (%.17g)", i,
                      a[i].id, a[i].score, b[i].id, b[i].score);
}

/* ---- topk ---- */

static void fill_uniform(float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * rng_uniform());
}

START_TEST(test_topk_fast_vs_naive)
{
    rng_seed(11);
    const size_t n = 1500, d = 37, nq = 60;
    float *M = malloc(n * d * sizeof(float)), *Q = malloc(nq * d * sizeof(float));
    fill_uniform(M, n * d, -1, 1);
    fill_uniform(Q, nq * d, -1, 1);
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
        free(ft);
        free(fb);
        free(nt);
        free(nb);
    }
    ck_assert_msg(worst < 1e-5, "largest score difference fast vs naive %.3g", worst);
    free(M);
    free(Q);
}
END_TEST

/* Integer data: every dot product is exact in float, so there are many exact
 * ties, and with 2100 queries the rows are scanned in several GEMM blocks. */
START_TEST(test_topk_exact_ties)
{
    rng_seed(12);
    const size_t n = 2000, d = 16, nq = 2100, k = 7;
    float *M = malloc(n * d * sizeof(float)), *Q = malloc(nq * d * sizeof(float));
    for (size_t i = 0; i < n * d; i++) M[i] = (float)((int)(rng_uniform() * 5) - 2);
    for (size_t i = 0; i < nq * d; i++) Q[i] = (float)((int)(rng_uniform() * 5) - 2);
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
    free(M);
    free(Q);
    free(ft);
    free(fb);
    free(nt);
    free(nb);
}
END_TEST

START_TEST(test_topk_vec_and_nan)
{
    rng_seed(13);
    const size_t n = 3000, k = 9;
    double *s = malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) s[i] = (double)(int)(rng_uniform() * 200);
    s[17] = NAN;
    s[18] = INFINITY;
    s[19] = -INFINITY;
    topk_hit top[9], bot[9];
    ck_assert_int_eq(topk_vec(s, n, k, top, bot), 0);
    scored *all = malloc(n * sizeof *all);
    for (size_t i = 0; i < n; i++) all[i] = (scored){isnan(s[i]) ? -INFINITY : s[i], (int)i};
    qsort(all, n, sizeof *all, cmp_desc);
    for (size_t t = 0; t < k; t++) ck_assert_int_eq(top[t].id, all[t].id);
    ck_assert_int_eq(top[0].id, 18);
    for (size_t i = 0; i < n; i++) all[i] = (scored){isnan(s[i]) ? -INFINITY : -s[i], (int)i};
    qsort(all, n, sizeof *all, cmp_desc);
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
    free(s);
    free(all);
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

/* ---- layer norm ---- */

START_TEST(test_layernorm_rows)
{
    float x[8] = {1, 2, 3, 4, -2, 0, 2, 4}, y[8];
    float g[4] = {1, 2, 0.5f, -1}, b[4] = {0, 1, -1, 0.25f};
    layernorm_rows(y, x, NULL, NULL, 2, 4, 1e-5f);
    // row 0: mean 2.5, var 1.25
    double sd = sqrt(1.25 + 1e-5);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y[i], (x[i] - 2.5) / sd, 1e-6);
    // row 1: mean 1, var 5
    sd = sqrt(5 + 1e-5);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y[4 + i], (x[4 + i] - 1) / sd, 1e-6);
    layernorm_rows(y, x, g, b, 2, 4, 1e-5f);
    sd = sqrt(1.25 + 1e-5);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y[i], g[i] * (x[i] - 2.5) / sd + b[i], 1e-6);
    layernorm_rows(x, x, g, b, 2, 4, 1e-5f); // in place gives the same
    for (int i = 0; i < 8; i++) ck_assert_float_eq(x[i], y[i]);
}
END_TEST

/* ---- block cache ---- */

typedef struct {
    atomic_int calls;
    int value;
    int sleep_ms;
    int fail;
} fill_ctx;

static int fill_const(void *data, size_t bytes, void *ctx)
{
    fill_ctx *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    if (f->sleep_ms) {
        struct timespec ts = {0, (long)f->sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (f->fail) return -42;
    memset(data, f->value, bytes);
    return 0;
}

START_TEST(test_cache_budget_lru_refcount)
{
    const size_t X = 1000;
    blockcache *c = blockcache_new(2 * X + X / 2); // room for two entries
    ck_assert_ptr_nonnull(c);
    fill_ctx f = {.value = 7};
    blockcache_entry *a, *b, *e;
    blockcache_stats st;
    ck_assert_int_eq(blockcache_acquire(c, "A", X, fill_const, &f, &a), 0);
    ck_assert_int_eq(((const unsigned char *)blockcache_data(a))[X - 1], 7);
    blockcache_release(c, a);
    ck_assert_int_eq(blockcache_acquire(c, "B", X, fill_const, &f, &b), 0);
    blockcache_release(c, b);
    ck_assert_int_eq(blockcache_acquire(c, "A", X, fill_const, &f, &a), 0); // hit, A now MRU
    blockcache_release(c, a);
    ck_assert_int_eq(atomic_load(&f.calls), 2);
    ck_assert_int_eq(blockcache_acquire(c, "C", X, fill_const, &f, &e), 0); // evicts B (LRU)
    blockcache_release(c, e);
    blockcache_get_stats(c, &st);
    ck_assert_uint_le(st.bytes, st.budget);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(st.evictions, 1);
    ck_assert_int_eq(blockcache_acquire(c, "A", X, fill_const, &f, &a), 0);
    blockcache_release(c, a);
    ck_assert_int_eq(atomic_load(&f.calls), 3); // A was kept
    ck_assert_int_eq(blockcache_acquire(c, "B", X, fill_const, &f, &b), 0);
    ck_assert_int_eq(atomic_load(&f.calls), 4); // B had been evicted
    // Hold B; fill D and E: B must stay valid although over budget.
    f.value = 9;
    blockcache_entry *d, *e2;
    ck_assert_int_eq(blockcache_acquire(c, "D", X, fill_const, &f, &d), 0);
    ck_assert_int_eq(blockcache_acquire(c, "E", X, fill_const, &f, &e2), 0);
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.bytes, 3 * X); // all three referenced
    ck_assert_int_eq(((const unsigned char *)blockcache_data(b))[0], 7);
    blockcache_release(c, d);
    blockcache_release(c, e2);
    blockcache_release(c, b);
    blockcache_get_stats(c, &st);
    ck_assert_uint_le(st.bytes, st.budget);
    ck_assert_uint_eq(st.hits, 2);
    ck_assert_uint_eq(st.misses, 6);
    // an entry bigger than the budget is served and then dropped
    ck_assert_int_eq(blockcache_acquire(c, "huge", 10 * X, fill_const, &f, &a), 0);
    blockcache_get_stats(c, &st);
    ck_assert_uint_ge(st.bytes, 10 * X);
    blockcache_release(c, a);
    blockcache_get_stats(c, &st);
    ck_assert_uint_le(st.bytes, st.budget);
    // same key, other size: refused
    ck_assert_int_eq(blockcache_acquire(c, "F", X, fill_const, &f, &a), 0);
    blockcache_release(c, a);
    ck_assert_int_eq(blockcache_acquire(c, "F", X + 1, fill_const, &f, &a), TW_EINVAL);
    // clear drops everything unreferenced
    blockcache_clear(c);
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.entries, 0);
    blockcache_free(c);
}
END_TEST

typedef struct {
    blockcache *c;
    fill_ctx *f;
    const void *data;
    int rc;
} thread_arg;

static void *acquire_thread(void *p)
{
    thread_arg *t = p;
    blockcache_entry *e = NULL;
    t->rc = blockcache_acquire(t->c, "cold", 1 << 16, fill_const, t->f, &e);
    if (t->rc == 0) {
        t->data = blockcache_data(e);
        if (((const unsigned char *)t->data)[100] != 5) t->rc = -1;
        blockcache_release(t->c, e);
    }
    return NULL;
}

START_TEST(test_cache_single_flight)
{
    enum { NT = 8 };
    blockcache *c = blockcache_new(1 << 20);
    fill_ctx f = {.value = 5, .sleep_ms = 100};
    pthread_t th[NT];
    thread_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (thread_arg){.c = c, .f = &f};
        ck_assert_int_eq(pthread_create(&th[i], NULL, acquire_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&f.calls), 1);
    for (int i = 0; i < NT; i++) {
        ck_assert_int_eq(args[i].rc, 0);
        ck_assert_ptr_eq(args[i].data, args[0].data);
    }
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.misses, 1);
    ck_assert_uint_eq(st.hits, NT - 1);
    ck_assert_uint_ge(st.waits, 1);
    blockcache_free(c);

    // A failing fill: every waiter gets the error, nothing is cached, the
    // next request tries again.
    c = blockcache_new(1 << 20);
    fill_ctx g = {.value = 5, .sleep_ms = 100, .fail = 1};
    for (int i = 0; i < NT; i++) {
        args[i] = (thread_arg){.c = c, .f = &g};
        ck_assert_int_eq(pthread_create(&th[i], NULL, acquire_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    int failed = 0;
    for (int i = 0; i < NT; i++) failed += args[i].rc == -42;
    ck_assert_int_eq(failed, NT);
    ck_assert_int_le(atomic_load(&g.calls), NT);
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    int before = atomic_load(&g.calls);
    g.fail = 0;
    g.sleep_ms = 0;
    args[0] = (thread_arg){.c = c, .f = &g};
    acquire_thread(&args[0]);
    ck_assert_int_eq(args[0].rc, 0);
    ck_assert_int_eq(atomic_load(&g.calls), before + 1);
    blockcache_free(c);
}
END_TEST

/* ---- embedding norms ---- */

START_TEST(test_embed_norms_vs_naive)
{
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 21);
    const gpt2_model *m = &tm.m;
    size_t V = M_V, d = M_D, k = 6;
    embed_norms_result r;
    blockcache *c = blockcache_new(1 << 24);
    ck_assert_int_eq(embed_norms(m, c, k, &r), 0);
    const float *g = m->p.ln_f_w, *b = m->p.ln_f_b;
    scored *sc = malloc(V * sizeof *sc);
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
            sc[i] = (scored){v, (int)i};
        }
        qsort(sc, V, sizeof *sc, cmp_desc);
        check_list(embed_scheme_name(s), r.top + s * k, sc, k, 1e-12);
        for (size_t i = 0; i < V; i++) sc[i].s = -sc[i].s;
        qsort(sc, V, sizeof *sc, cmp_desc);
        for (size_t i = 0; i < V; i++) sc[i].s = -sc[i].s;
        check_list("bottom", r.bottom + s * k, sc, k, 1e-12);
    }
    // cached scores give the same answer
    embed_norms_result r2;
    ck_assert_int_eq(embed_norms(m, c, k, &r2), 0);
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
    model_free(&tm);
}
END_TEST

START_TEST(test_embed_normalization_vs_naive)
{
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 22);
    const gpt2_model *m = &tm.m;
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
        ln_row(e, NULL, NULL, d, 1e-5, N);
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
    free(c);
    free(N);
    free(X);
    model_free(&tm);
}
END_TEST

/* ---- word probes ---- */

START_TEST(test_probe_words_vs_naive)
{
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 31);
    const gpt2_model *m = &tm.m;
    const size_t V = M_V, d = M_D, H = M_H, dh = d / H, k = 5;
    const int32_t ids[] = {0, 17, 599, 300, 17, 42};
    const size_t W = 6;
    blockcache *c = blockcache_new((size_t)1 << 24);
    double *E = as_double(m->p.wte, V * d);
    double *Wqk = malloc(d * d * sizeof(double)), *Wvo = malloc(d * d * sizeof(double));
    double *kq = malloc(d * sizeof(double)), *u = malloc(d * sizeof(double));
    double *U = malloc(d * sizeof(double)), *x = malloc(d * sizeof(double));
    float *xf = malloc(d * sizeof(float));
    double worst_norm = 0;
    for (int block = 0; block < M_L; block++) {
        probe_words_result r;
        ck_assert_int_eq(probe_words(m, c, block, ids, W, k, &r), 0);
        ck_assert_uint_eq(r.n_words, W);
        double *En = naive_en(m, block);
        const gpt2_block *b = &m->p.h[block];
        for (size_t w = 0; w < W; w++) {
            const double *q = En + (size_t)ids[w] * d;
            for (size_t i = 0; i < d; i++) U[i] = 0;
            for (size_t h = 0; h < H; h++) {
                ana_head hs;
                ana_head_slices(m, block, (int)h, &hs);
                // explicit d x d matrices
                for (size_t i = 0; i < d; i++)
                    for (size_t j = 0; j < d; j++) {
                        double sqk = 0, svo = 0;
                        for (size_t t = 0; t < dh; t++) {
                            sqk += (double)hs.wq[i * 3 * d + t] * hs.wk[j * 3 * d + t];
                            svo += (double)hs.wv[i * 3 * d + t] * hs.wo[t * d + j];
                        }
                        Wqk[i * d + j] = sqk / sqrt((double)dh);
                        Wvo[i * d + j] = svo;
                    }
                for (size_t j = 0; j < d; j++) {
                    double a = 0, v = 0;
                    for (size_t i = 0; i < d; i++) {
                        a += q[i] * Wqk[i * d + j];
                        v += q[i] * Wvo[i * d + j];
                    }
                    for (size_t t = 0; t < dh; t++) v += (double)hs.bv[t] * hs.wo[t * d + j];
                    kq[j] = a;
                    u[j] = v;
                    U[j] += v;
                }
                scored *rk = naive_rank(kq, En, V, d, 1);
                check_list("keys", r.keys + (w * H + h) * k, rk, k, 1e-4);
                free(rk);
                double nn = 0;
                for (size_t j = 0; j < d; j++) {
                    nn += u[j] * u[j];
                    xf[j] = (float)(m->p.wte[(size_t)ids[w] * d + j] + u[j] + b->attn_proj_b[j]);
                }
                double got = r.value_norm[w * H + h];
                worst_norm = fmax(worst_norm, fabs(got - sqrt(nn)) / sqrt(nn));
                ck_assert_msg(fabs(got - sqrt(nn)) <= 1e-5 * sqrt(nn), "value_norm %.9g vs %.9g", got,
                              sqrt(nn));
                ln_row(xf, m->p.ln_f_w, m->p.ln_f_b, d, 1e-5, x);
                scored *rv = naive_rank(x, E, V, d, 1);
                check_list("values", r.values + (w * H + h) * k, rv, k, 1e-4);
                free(rv);
            }
            double nn = 0;
            for (size_t j = 0; j < d; j++) {
                nn += U[j] * U[j];
                xf[j] = (float)(m->p.wte[(size_t)ids[w] * d + j] + U[j] + b->attn_proj_b[j]);
            }
            ck_assert_msg(fabs(r.layer_norm[w] - sqrt(nn)) <= 1e-5 * sqrt(nn), "layer norm %.9g vs %.9g",
                          r.layer_norm[w], sqrt(nn));
            ln_row(xf, m->p.ln_f_w, m->p.ln_f_b, d, 1e-5, x);
            scored *rv = naive_rank(x, E, V, d, 1);
            check_list("layer values", r.layer_values + w * k, rv, k, 1e-4);
            free(rv);
        }
        // repeated word: identical answers; no cache: identical answers
        assert_hits_equal(r.keys + 1 * H * k, r.keys + 4 * H * k, H * k);
        probe_words_result r2;
        ck_assert_int_eq(probe_words(m, NULL, block, ids, W, k, &r2), 0);
        assert_hits_equal(r.keys, r2.keys, W * H * k);
        assert_hits_equal(r.values, r2.values, W * H * k);
        ck_assert_mem_eq(r.value_norm, r2.value_norm, W * H * sizeof(double));
        probe_words_result_free(&r2);
        probe_words_result_free(&r);
        free(En);
    }
    fprintf(stderr, "probe_words: largest relative value_norm difference %.3g\n", worst_norm);
    // errors
    probe_words_result r;
    int32_t bad = (int32_t)V;
    ck_assert_int_eq(probe_words(m, c, M_L, ids, W, k, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_words(m, c, -1, ids, W, k, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_words(m, c, 0, ids, W, 0, &r), TW_EK);
    ck_assert_int_eq(probe_words(m, c, 0, ids, W, V + 1, &r), TW_EK);
    ck_assert_int_eq(probe_words(m, c, 0, &bad, 1, k, &r), TW_ETOKEN);
    ck_assert_ptr_null(r.keys);
    probe_words_result_free(&r);
    ck_assert_int_eq(probe_words(m, c, 0, ids, 0, k, &r), 0);
    ck_assert_uint_eq(r.n_words, 0);
    probe_words_result_free(&r);
    free(E);
    free(Wqk);
    free(Wvo);
    free(kq);
    free(u);
    free(U);
    free(x);
    free(xf);
    blockcache_free(c);
    model_free(&tm);
}
END_TEST

/* ---- SVD ---- */

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
                         ? (double)hs.wq[i * 3 * d + t] * hs.wk[j * 3 * d + t] / sqrt((double)dh)
                         : (double)hs.wv[i * 3 * d + t] * hs.wo[t * d + j];
            A[i * d + j] = s;
        }
}

static void check_svd_model(const gpt2_model *m, size_t top, size_t k)
{
    const size_t V = m->cfg.vocab_size, d = m->cfg.n_embd, H = m->cfg.n_head, dh = d / H;
    blockcache *c = blockcache_new((size_t)1 << 26);
    double *E = as_double(m->p.wte, V * d);
    double *A = malloc(d * d * sizeof(double)), *S = malloc(d * sizeof(double));
    double *Ud = malloc(d * d * sizeof(double)), *VTd = malloc(d * d * sizeof(double));
    double *u = malloc(d * sizeof(double)), *v = malloc(d * sizeof(double));
    double worst_s = 0;
    for (int block = 0; block < m->cfg.n_layer; block++) {
        double *En = naive_en(m, block);
        for (int matrix = 0; matrix < 2; matrix++) {
            probe_svd_result r;
            ck_assert_int_eq(probe_svd(m, c, block, matrix, -1, top, k, &r), 0);
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
                    scored *rp = naive_rank(v, Mr, V, d, 1), *rn = naive_rank(v, Mr, V, d, -1);
                    double sign = rp[0].s >= rn[0].s ? 1 : -1;
                    scored *right = sign > 0 ? rp : rn;
                    scored *left = naive_rank(u, En, V, d, sign);
                    char what[128];
                    snprintf(what, sizeof what, "block %d %s head %zu dir %zu right", block,
                             probe_svd_matrix_name(matrix), h, t);
                    check_list(what, r.right + (h * top + t) * k, right, k, 1e-4);
                    snprintf(what, sizeof what, "block %d %s head %zu dir %zu left", block,
                             probe_svd_matrix_name(matrix), h, t);
                    check_list(what, r.left + (h * top + t) * k, left, k, 1e-4);
                    free(rp);
                    free(rn);
                    free(left);
                }
            }
            // one head alone equals its row of the all-heads answer
            probe_svd_result r1;
            ck_assert_int_eq(probe_svd(m, c, block, matrix, (int)H - 1, top, k, &r1), 0);
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
    free(E);
    free(A);
    free(S);
    free(Ud);
    free(VTd);
    free(u);
    free(v);
    blockcache_free(c);
}

START_TEST(test_probe_svd_vs_dense)
{
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 41);
    check_svd_model(&tm.m, 6, 4);
    model_free(&tm);
    // one head: dh = d, full rank
    model_build(&tm, 1, 1, 16, 300, 42);
    check_svd_model(&tm.m, 16, 3);
    model_free(&tm);
}
END_TEST

START_TEST(test_probe_svd_sign_rule)
{
    // The reported right list's first score is max_j(sign v . Mr_j), which by
    // the rule is >= max_j(-sign v . Mr_j) = -min_j(sign v . Mr_j).
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 43);
    const gpt2_model *m = &tm.m;
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
    model_free(&tm);
}
END_TEST

START_TEST(test_probe_bias_vs_naive)
{
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, M_V, 51);
    const gpt2_model *m = &tm.m;
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
                    a[i] += (double)hs.wq[i * 3 * d + t] * hs.bk[t];
                    cv[i] += (double)hs.wk[i * 3 * d + t] * hs.bq[t];
                }
            }
            for (int list = 0; list < PROBE_BIAS_N; list++) {
                scored *ref = naive_rank(list < 2 ? a : cv, En, V, d, list % 2 ? -1 : 1);
                check_list(probe_bias_name(list), r.hits + (h * PROBE_BIAS_N + list) * k, ref, k, 1e-4);
                free(ref);
            }
        }
        free(En);
        probe_bias_result_free(&r);
    }
    probe_bias_result r;
    ck_assert_int_eq(probe_svd_bias(m, NULL, M_L, k, &r), TW_EBLOCK);
    ck_assert_int_eq(probe_svd_bias(m, NULL, 0, 0, &r), TW_EK);
    free(a);
    free(cv);
    model_free(&tm);
}
END_TEST

/* Concurrent analyses of one cold block share one LN_b(E) fill. */
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
    a->rc = probe_words(a->m, a->c, 1, ids, 3, 4, &r);
    probe_words_result_free(&r);
    return NULL;
}

START_TEST(test_concurrent_probes_share_fill)
{
    test_model tm;
    model_build(&tm, M_L, M_H, M_D, 20000, 61); // V large enough to overlap
    blockcache *c = blockcache_new((size_t)1 << 26);
    enum { NT = 4 };
    pthread_t th[NT];
    probe_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (probe_arg){&tm.m, c, 1};
        pthread_create(&th[i], NULL, probe_thread, &args[i]);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].rc, 0);
    }
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    ck_assert_uint_eq(st.misses, 1);
    ck_assert_uint_eq(st.hits, NT - 1);
    ck_assert_uint_eq(st.entries, 1);
    blockcache_free(c);
    model_free(&tm);
}
END_TEST

static Suite *analyses_suite(void)
{
    Suite *s = suite_create("analyses");
    TCase *t = tcase_create("topk");
    tcase_add_test(t, test_topk_fast_vs_naive);
    tcase_add_test(t, test_topk_exact_ties);
    tcase_add_test(t, test_topk_vec_and_nan);
    tcase_add_test(t, test_topk_errors);
    tcase_add_test(t, test_layernorm_rows);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("cache");
    tcase_add_test(c, test_cache_budget_lru_refcount);
    tcase_add_test(c, test_cache_single_flight);
    tcase_add_test(c, test_concurrent_probes_share_fill);
    suite_add_tcase(s, c);
    TCase *a = tcase_create("analyses");
    tcase_set_timeout(a, 120);
    tcase_add_test(a, test_embed_norms_vs_naive);
    tcase_add_test(a, test_embed_normalization_vs_naive);
    tcase_add_test(a, test_probe_words_vs_naive);
    tcase_add_test(a, test_probe_svd_vs_dense);
    tcase_add_test(a, test_probe_svd_sign_rule);
    tcase_add_test(a, test_probe_bias_vs_naive);
    suite_add_tcase(s, a);
    return s;
}

int main(void) { return tw_check_run(analyses_suite()); }
