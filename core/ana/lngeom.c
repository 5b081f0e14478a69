/* Layer-norm geometry and unselectable keys: see lngeom.h (docs/MATH.md §12). */
#include "core/ana/lngeom.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/scratch.h"
#include "core/nn/linalg.h"
#include "core/nn/lnorm.h"

const char *lngeom_list_name(int list)
{
    static const char *const names[LNG_N_LISTS] = {"gamma_max_top", "gamma_max_bottom", "gamma_min_top",
                                                   "gamma_min_bottom", "beta"};
    return list >= 0 && list < LNG_N_LISTS ? names[list] : NULL;
}

void lngeom_layer_name(const lngeom_layer *l, char *buf, size_t len)
{
    if (l->kind == LNG_LNF)
        snprintf(buf, len, "ln_f");
    else
        snprintf(buf, len, "h.%d.%s", l->block, l->kind == LNG_LN1 ? "ln_1" : "ln_2");
}

void lngeom_result_free(lngeom_result *r) { TW_FREE_FIELDS(r, r->layers, r->lists); }

/* gamma and beta (or NULL) of layer li (h.0.ln_1, h.0.ln_2, ..., ln_f). */
static void layer_params(const gpt2_model *m, size_t li, const float **g, const float **b)
{
    size_t L = (size_t)m->cfg.n_layer;
    if (li == 2 * L) {
        *g = m->p.ln_f_w;
        *b = m->p.ln_f_b;
        return;
    }
    const gpt2_block *blk = &m->p.h[li / 2];
    *g = li % 2 ? blk->ln_2_w : blk->ln_1_w;
    *b = li % 2 ? blk->ln_2_b : blk->ln_1_b;
}

/* The states layer li reads in a forward pass (n rows). */
static const float *phrase_states(const gpt2_forward_result *fr, size_t li)
{
    size_t L = (size_t)fr->L, n = (size_t)fr->n, C = (size_t)fr->C;
    if (li == 2 * L) return fr->resid + (L - 1) * n * C;
    size_t l = li / 2;
    if (li % 2) return fr->resid_mid + l * n * C;
    return l == 0 ? fr->x0 : fr->resid + (l - 1) * n * C;
}

typedef struct {
    double s, ss; /* running sum and sum of squares */
} acc2;

static void acc_add(acc2 *a, double v)
{
    a->s += v;
    a->ss += v * v;
}

/* mean and unbiased std of `rows` values from their sums */
static void acc_done(const acc2 *a, size_t rows, double *mean, double *sd)
{
    *mean = a->s / (double)rows;
    double var = rows > 1 ? (a->ss - (double)rows * *mean * *mean) / (double)(rows - 1) : 0.0;
    *sd = var > 0.0 ? sqrt(var) : 0.0;
}

/* Mean, variance (biased) of a row in double, two passes. */
static void row_moments(const float *x, size_t d, double *mu, double *var)
{
    double s = 0.0;
    for (size_t i = 0; i < d; i++) s += x[i];
    double m = s / (double)d, ss = 0.0;
    for (size_t i = 0; i < d; i++) ss += ((double)x[i] - m) * ((double)x[i] - m);
    *mu = m;
    *var = ss / (double)d;
}

/* The statistics of one row that do not depend on gamma and beta: into the
 * accumulators, and the normalised row n (double) into nrow. */
typedef struct {
    acc2 mean, mean_abs, after, radius;
    double after_max;
} row_acc;

static void row_stats(const float *x, size_t d, float eps, row_acc *a, double *nrow, float *tmp)
{
    double mu, var;
    row_moments(x, d, &mu, &var);
    double inv = 1.0 / sqrt(var + (double)eps);
    for (size_t i = 0; i < d; i++) nrow[i] = ((double)x[i] - mu) * inv;
    acc_add(&a->mean, mu);
    acc_add(&a->mean_abs, fabs(mu));
    acc_add(&a->radius, sqrt((double)d) * sqrt(var / (var + (double)eps)));
    /* after centring: the float rows LN_0(x) as the model computes them */
    layernorm_rows(tmp, x, NULL, NULL, 1, d, eps);
    double s = 0.0;
    for (size_t i = 0; i < d; i++) s += tmp[i];
    double am = fabs(s / (double)d);
    acc_add(&a->after, am);
    if (am > a->after_max) a->after_max = am;
}

/* ||(gamma - 1) n + beta|| / ||n|| (0 when ||n|| = 0). */
static double change_of(const double *nrow, const float *g, const float *b, size_t d)
{
    double num[4] = {0, 0, 0, 0}, den[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= d; i += 4)
        for (size_t u = 0; u < 4; u++) {
            double n = nrow[i + u], c = ((double)g[i + u] - 1.0) * n + (b ? (double)b[i + u] : 0.0);
            num[u] += c * c;
            den[u] += n * n;
        }
    for (; i < d; i++) {
        double n = nrow[i], c = ((double)g[i] - 1.0) * n + (b ? (double)b[i] : 0.0);
        num[0] += c * c;
        den[0] += n * n;
    }
    double nn = (num[0] + num[1]) + (num[2] + num[3]), dd = (den[0] + den[1]) + (den[2] + den[3]);
    return dd > 0.0 ? sqrt(nn / dd) : 0.0;
}

static void finish_row_stats(lngeom_layer *l, const row_acc *a, size_t rows)
{
    double sd;
    acc_done(&a->mean, rows, &l->mean_mean, &sd);
    acc_done(&a->mean_abs, rows, &l->mean_abs, &sd);
    acc_done(&a->after, rows, &l->after_mean_abs, &sd);
    l->after_max_abs = a->after_max;
    acc_done(&a->radius, rows, &l->radius_mean, &l->radius_std);
}

/* TW_OK if lngeom_layers can run on these arguments, else TW_EINVAL or TW_EK. */
static int layers_check(const gpt2_model *m, const gpt2_forward_result *fr, size_t k)
{
    if (ana_check_model(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size;
    const int d = m->cfg.n_embd, L = m->cfg.n_layer;
    if (k < 1 || k > V) return TW_EK;
    if (fr && (fr->C != d || fr->L != L || !fr->resid_mid || fr->keep_block0 != 0 || fr->keep_blocks != L ||
               fr->n < 1))
        return TW_EINVAL;
    return TW_OK;
}

/* The change of a layer over n = the normalised row, in quadratic form:
 * ||(gamma - 1) n + beta||^2 = sum_i a_i n_i^2 + sum_i b_i n_i + ||beta||^2
 * with a = (gamma - 1)^2, b = 2 (gamma - 1) beta; a and b (NL, d), c = ||beta||^2 (NL). */
static void change_coefficients(const gpt2_model *m, size_t NL, double *a, double *b2, double *c)
{
    const size_t d = (size_t)m->cfg.n_embd;
    for (size_t li = 0; li < NL; li++) {
        const float *g, *b;
        layer_params(m, li, &g, &b);
        c[li] = 0.0;
        for (size_t i = 0; i < d; i++) {
            double gm = (double)g[i] - 1.0, be = b ? (double)b[i] : 0.0;
            a[li * d + i] = gm * gm;
            b2[li * d + i] = 2.0 * gm * be;
            c[li] += be * be;
        }
    }
}

/* Without a phrase every layer reads the rows of wte: the row statistics
 * once (into *a), and the change of all NL layers at once (into chg) from
 * blocks of normalised rows, two GEMMs per block. */
static int wte_changes(const gpt2_model *m, const ana_ctx *x, size_t NL, row_acc *a, acc2 *chg)
{
    enum { RB = 256 };
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    scratch s = {.n = 0};
    double *A = scratch_alloc(&s, 2 * NL * d, sizeof(double));  /* a, then b */
    double *Nb = scratch_alloc(&s, 2 * RB * d, sizeof(double)); /* n, then n^2 */
    double *G = scratch_alloc(&s, 2 * RB * NL, sizeof(double)); /* n^2 . a, then n . b */
    double *cb = scratch_alloc(&s, NL, sizeof(double)), den[RB];
    float *tmp = scratch_alloc(&s, d, sizeof(float));
    if (s.failed) {
        scratch_free(&s);
        return TW_ENOMEM;
    }
    double *Bc = A + NL * d, *N2 = Nb + RB * d, *G2 = G + RB * NL;
    change_coefficients(m, NL, A, Bc, cb);
    int rc = TW_OK;
    for (size_t j0 = 0; j0 < V; j0 += RB) {
        if ((rc = tw_cancel_check(ana_cancel(x)))) break;
        size_t nr = V - j0 < RB ? V - j0 : RB;
        for (size_t j = 0; j < nr; j++) {
            double *nrow_j = Nb + j * d;
            row_stats(m->p.wte + (j0 + j) * d, d, m->cfg.ln_eps, a, nrow_j, tmp);
            double ss = 0.0;
            for (size_t i = 0; i < d; i++) ss += (N2[j * d + i] = nrow_j[i] * nrow_j[i]);
            den[j] = ss;
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)NL, (int)d, 1.0, N2, (int)d, A,
                    (int)d, 0.0, G, (int)NL);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)NL, (int)d, 1.0, Nb, (int)d, Bc,
                    (int)d, 0.0, G2, (int)NL);
        for (size_t j = 0; j < nr; j++)
            for (size_t li = 0; li < NL; li++) {
                double num = G[j * NL + li] + G2[j * NL + li] + cb[li];
                acc_add(&chg[li], den[j] > 0.0 ? sqrt(fmax(num, 0.0) / den[j]) : 0.0);
            }
    }
    scratch_free(&s);
    return rc;
}

/* With a phrase each layer reads its own states: row statistics and change
 * per layer. */
static int phrase_changes(const gpt2_model *m, const gpt2_forward_result *fr, lngeom_result *r, acc2 *chg)
{
    const size_t d = (size_t)m->cfg.n_embd, rows = (size_t)fr->n;
    scratch s = {.n = 0};
    double *nrow = scratch_alloc(&s, d, sizeof(double));
    float *tmp = scratch_alloc(&s, d, sizeof(float));
    if (s.failed) {
        scratch_free(&s);
        return TW_ENOMEM;
    }
    for (size_t li = 0; li < r->n_layers; li++) {
        const float *g, *b, *X = phrase_states(fr, li);
        layer_params(m, li, &g, &b);
        row_acc a = {0};
        for (size_t t = 0; t < rows; t++) {
            row_stats(X + t * d, d, m->cfg.ln_eps, &a, nrow, tmp);
            acc_add(&chg[li], change_of(nrow, g, b, d));
        }
        finish_row_stats(&r->layers[li], &a, rows);
    }
    scratch_free(&s);
    return TW_OK;
}

/* The row statistics of every layer, and the sums of its change into chg. */
static int measure_rows(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr,
                        lngeom_result *r, acc2 *chg)
{
    if (fr) return phrase_changes(m, fr, r, chg);
    row_acc a = {0};
    int rc = wte_changes(m, x, r->n_layers, &a, chg);
    if (rc) return rc;
    for (size_t li = 0; li < r->n_layers; li++)
        finish_row_stats(&r->layers[li], &a, (size_t)m->cfg.vocab_size);
    return TW_OK;
}

/* Layer li's own figures: the change's mean and std, ||beta||, gamma's
 * longest and shortest axes (lower index on ties) and their top and bottom
 * lists against wte. col: V doubles of scratch. */
static int layer_axes(const gpt2_model *m, size_t li, const acc2 *chg, lngeom_result *r, double *col)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, k = r->k;
    lngeom_layer *l = &r->layers[li];
    const float *g, *b;
    layer_params(m, li, &g, &b);
    double sd;
    acc_done(chg, l->rows, &l->change_mean, &sd);
    l->change_std = sd;
    int imax = 0, imin = 0;
    for (size_t i = 1; i < d; i++) {
        if (fabsf(g[i]) > fabsf(g[imax])) imax = (int)i;
        if (fabsf(g[i]) < fabsf(g[imin])) imin = (int)i;
    }
    l->gmax_index = imax;
    l->gmin_index = imin;
    l->gmax = g[imax];
    l->gmin = g[imin];
    l->beta_norm = b ? sqrt(topk_dot(b, b, d)) : 0.0;
    topk_hit *lists = r->lists + li * LNG_N_LISTS * k;
    for (int ax = 0; ax < 2; ax++) {
        size_t i = (size_t)(ax ? imin : imax);
        for (size_t j = 0; j < V; j++) col[j] = m->p.wte[j * d + i]; /* e_i . E_j */
        int rc = topk_vec(col, V, k, lists + (ax ? LNG_GMIN_TOP : LNG_GMAX_TOP) * k,
                          lists + (ax ? LNG_GMIN_BOTTOM : LNG_GMAX_BOTTOM) * k);
        if (rc) return rc;
    }
    return TW_OK;
}

/* The top-k of every layer's beta (zero without biases) against wte, in one
 * call over all layers, into each layer's LNG_BETA list. */
static int beta_lists(const gpt2_model *m, const ana_ctx *x, lngeom_result *r)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, NL = r->n_layers, k = r->k;
    scratch s = {.n = 0};
    float *betas = scratch_zalloc(&s, NL * d, sizeof(float));
    topk_hit *bh = scratch_alloc(&s, NL * k, sizeof(topk_hit));
    int rc = s.failed ? TW_ENOMEM : TW_OK;
    for (size_t li = 0; li < NL && !rc; li++) {
        const float *g, *b;
        layer_params(m, li, &g, &b);
        if (b) memcpy(betas + li * d, b, d * sizeof(float));
    }
    if (!rc)
        rc = topk_rows_opt(m->p.wte, V, d, betas, NL, k, bh, NULL, &(topk_opts){.cancel = ana_cancel(x)});
    for (size_t li = 0; li < NL && !rc; li++)
        memcpy(r->lists + (li * LNG_N_LISTS + LNG_BETA) * k, bh + li * k, k * sizeof(topk_hit));
    scratch_free(&s);
    return rc;
}

int lngeom_layers(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, size_t k,
                  lngeom_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = layers_check(m, fr, k);
    if (rc) return rc;
    const size_t V = (size_t)m->cfg.vocab_size, L = (size_t)m->cfg.n_layer, NL = 2 * L + 1;
    lngeom_result r = {.n_layers = NL, .k = k, .from_phrase = fr != NULL};
    r.layers = calloc(NL, sizeof *r.layers);
    r.lists = malloc(NL * LNG_N_LISTS * k * sizeof(topk_hit));
    scratch s = {.n = 0};
    acc2 *chg = scratch_zalloc(&s, NL, sizeof(acc2));
    double *col = scratch_alloc(&s, V, sizeof(double));
    if (!r.layers || !r.lists || s.failed) rc = TW_ENOMEM;
    for (size_t li = 0; li < NL && !rc; li++) {
        lngeom_layer *l = &r.layers[li];
        l->kind = li == 2 * L ? LNG_LNF : (int)(li % 2);
        l->block = li == 2 * L ? -1 : (int)(li / 2);
        l->rows = fr ? (size_t)fr->n : V;
    }
    if (!rc) rc = measure_rows(m, x, fr, &r, chg);
    for (size_t li = 0; li < NL && !rc; li++) rc = layer_axes(m, li, &chg[li], &r, col);
    if (!rc) rc = beta_lists(m, x, &r);
    scratch_free(&s);
    *out = r;
    if (rc) lngeom_result_free(out);
    return rc;
}

/* ---- Unselectable keys ---- */

void lngeom_keys_result_free(lngeom_keys_result *r)
{
    TW_FREE_FIELDS(r, r->selectable, r->unselectable, r->q, r->drawn);
}

/* N unit queries of R^dh: normal draws normalised in double. */
static int random_queries(float *q, size_t N, size_t dh, uint64_t seed)
{
    tw_rng g;
    tw_rng_seed(&g, seed);
    double *z = malloc(dh * sizeof(double));
    if (!z) return TW_ENOMEM;
    for (size_t i = 0; i < N; i++) {
        double ss = 0.0;
        for (size_t t = 0; t < dh; t++) {
            z[t] = tw_rng_normal(&g);
            ss += z[t] * z[t];
        }
        double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
        for (size_t t = 0; t < dh; t++) q[i * dh + t] = (float)(z[t] * inv);
    }
    free(z);
    return TW_OK;
}

/* N distinct ids of [0, V), in draw order (a partial Fisher-Yates shuffle). */
static int draw_keys(int32_t *out, size_t N, size_t V, uint64_t seed)
{
    int32_t *perm = malloc(V * sizeof *perm);
    if (!perm) return TW_ENOMEM;
    for (size_t j = 0; j < V; j++) perm[j] = (int32_t)j;
    tw_rng g;
    tw_rng_seed(&g, seed);
    for (size_t i = 0; i < N; i++) {
        size_t j = i + tw_rng_below(&g, (uint32_t)(V - i));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        out[i] = perm[i];
    }
    free(perm);
    return TW_OK;
}

/* The targeted queries of head keys K (V, dh) for the drawn ids: Sigma^-1
 * (k_j - mu), normalised, in float. Sigma = (1/V) sum (k - mu)(k - mu)^T;
 * a ridge is added if it is not positive definite. */
static int targeted_queries(const float *K, size_t V, size_t dh, const int32_t *drawn, size_t N, float *q)
{
    scratch s = {.n = 0};
    double *Kc = scratch_alloc(&s, V * dh, sizeof(double)), *mu = scratch_zalloc(&s, dh, sizeof(double));
    double *Sg = scratch_alloc(&s, dh * dh, sizeof(double)), *Sc = scratch_alloc(&s, dh * dh, sizeof(double));
    double *B = scratch_alloc(&s, N * dh, sizeof(double));
    int rc = TW_OK;
    if (s.failed) {
        rc = TW_ENOMEM;
        goto done;
    }
    for (size_t j = 0; j < V; j++)
        for (size_t t = 0; t < dh; t++) mu[t] += K[j * dh + t];
    for (size_t t = 0; t < dh; t++) mu[t] /= (double)V;
    for (size_t j = 0; j < V; j++)
        for (size_t t = 0; t < dh; t++) Kc[j * dh + t] = (double)K[j * dh + t] - mu[t];
    /* Sigma (dh, dh) = Kc^T Kc / V, lower triangle, col-major */
    cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, (int)dh, (int)V, 1.0 / (double)V, Kc, (int)dh, 0.0,
                Sg, (int)dh);
    double tr = 0.0;
    for (size_t t = 0; t < dh; t++) tr += Sg[t + t * dh];
    double ridge = 0.0;
    for (int attempt = 0;; attempt++) {
        memcpy(Sc, Sg, dh * dh * sizeof(double));
        for (size_t t = 0; t < dh; t++) Sc[t + t * dh] += ridge;
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)dh, Sc, (lapack_int)dh) == 0) break;
        if (attempt == 12 || !(tr > 0.0)) {
            rc = TW_ENUMERIC;
            goto done;
        }
        ridge = ridge ? ridge * 100.0 : 1e-12 * tr / (double)dh;
    }
    /* right-hand sides k_j - mu, one per column (col-major dh x N) */
    for (size_t i = 0; i < N; i++) memcpy(B + i * dh, Kc + (size_t)drawn[i] * dh, dh * sizeof(double));
    if (LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'L', (lapack_int)dh, (lapack_int)N, Sc, (lapack_int)dh, B,
                       (lapack_int)dh) != 0) {
        rc = TW_ENUMERIC;
        goto done;
    }
    for (size_t i = 0; i < N; i++) {
        double ss = 0.0;
        for (size_t t = 0; t < dh; t++) ss += B[i * dh + t] * B[i * dh + t];
        double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
        for (size_t t = 0; t < dh; t++) q[i * dh + t] = (float)(B[i * dh + t] * inv);
    }
done:
    scratch_free(&s);
    return rc;
}

/* TW_OK if lngeom_keys can run on these arguments, else TW_EINVAL,
 * TW_EBLOCK or TW_ERANGE. */
static int keys_check(const gpt2_model *m, int block, size_t N, int method)
{
    if (ana_check_model(m)) return TW_EINVAL;
    if (block < -1 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (method != LNG_KEYS_RANDOM && method != LNG_KEYS_TARGETED) return TW_EINVAL;
    size_t most = method == LNG_KEYS_TARGETED ? (size_t)m->cfg.vocab_size : (size_t)1 << 20;
    if (N < 1 || N > most) return TW_ERANGE;
    return TW_OK;
}

/* The method's draws, kept in r: the random queries (also copied to Q,
 * the same for every head) or the drawn key ids. */
static int draw_for_method(lngeom_keys_result *r, size_t V, size_t dh, float *Q)
{
    const size_t N = r->queries;
    if (r->method == LNG_KEYS_TARGETED) {
        if (!(r->drawn = malloc(N * sizeof(int32_t)))) return TW_ENOMEM;
        return draw_keys(r->drawn, N, V, r->seed);
    }
    if (!(r->q = malloc(N * dh * sizeof(float)))) return TW_ENOMEM;
    int rc = random_queries(r->q, N, dh, r->seed);
    if (!rc) memcpy(Q, r->q, N * dh * sizeof(float));
    return rc;
}

/* The keys found selectable from the argmax best[i] of each query, and the
 * estimated unselectable fraction (hit: V bytes of scratch). */
static size_t count_selectable(const lngeom_keys_result *r, const topk_hit *best, size_t V,
                               unsigned char *hit, double *unselectable)
{
    const size_t N = r->queries;
    size_t count = 0;
    if (r->method == LNG_KEYS_TARGETED) {
        for (size_t i = 0; i < N; i++) count += best[i].id == r->drawn[i];
        *unselectable = 1.0 - (double)count / (double)N;
        return count;
    }
    memset(hit, 0, V);
    for (size_t i = 0; i < N; i++) {
        count += !hit[best[i].id];
        hit[best[i].id] = 1;
    }
    *unselectable = 1.0 - (double)count / (double)V;
    return count;
}

/* The scratch arrays of lngeom_keys. */
typedef struct {
    float *K, *Kh, *Q;  /* (V, d) all keys, (V, dh) one head's, (N, dh) queries */
    topk_hit *best;     /* (N) */
    unsigned char *hit; /* (V) */
} keys_work;

/* Block blk's keys K (V, d) = LN_b(E) W_k + b_k: every head's keys, one GEMM. */
static int block_keys(const gpt2_model *m, const ana_ctx *x, int blk, float *K)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    blockcache_entry *en = NULL;
    int rc = tw_cancel_check(ana_cancel(x));
    if (!rc) rc = ana_acquire_ln1_embeddings(m, x, blk, &en);
    if (rc) return rc;
    gpt2_block_ref bref;
    const gpt2_block *gb;
    if ((rc = ana_block_acquire(m, blk, &bref, &gb)) != TW_OK) {
        blockcache_release(ana_cache(x), en);
        return rc;
    }
    mat_gemm(K, blockcache_data(en), gpt2_mat_at(gb->attn_w, 0, d), gb->attn_b ? gb->attn_b + d : NULL, V, d,
             d);
    gpt2_block_release(&bref);
    blockcache_release(ana_cache(x), en);
    return TW_OK;
}

/* The estimate for head h of block b0 + b, into r. */
static int head_keys(const gpt2_model *m, const ana_ctx *x, lngeom_keys_result *r, size_t b, size_t h,
                     keys_work *w)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, dh = d / r->n_head, N = r->queries;
    int rc = tw_cancel_check(ana_cancel(x));
    if (rc) return rc;
    for (size_t j = 0; j < V; j++) memcpy(w->Kh + j * dh, w->K + j * d + h * dh, dh * sizeof(float));
    if (r->method == LNG_KEYS_TARGETED && (rc = targeted_queries(w->Kh, V, dh, r->drawn, N, w->Q))) return rc;
    rc = topk_rows_opt(w->Kh, V, dh, w->Q, N, 1, w->best, NULL, &(topk_opts){.cancel = ana_cancel(x)});
    if (rc) return rc;
    size_t at = b * r->n_head + h;
    r->selectable[at] = count_selectable(r, w->best, V, w->hit, &r->unselectable[at]);
    return TW_OK;
}

int lngeom_keys(const gpt2_model *m, const ana_ctx *x, int block, size_t queries, int method, uint64_t seed,
                lngeom_keys_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = keys_check(m, block, queries, method);
    if (rc) return rc;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    const size_t dh = d / H, N = queries;
    const int b0 = block < 0 ? 0 : block;
    const size_t nb = block < 0 ? (size_t)m->cfg.n_layer : 1;

    lngeom_keys_result r = {
        .block0 = b0, .n_blocks = nb, .n_head = H, .queries = N, .method = method, .seed = seed};
    r.selectable = calloc(nb * H, sizeof(size_t));
    r.unselectable = calloc(nb * H, sizeof(double));
    scratch s = {.n = 0};
    keys_work w = {.K = scratch_alloc(&s, V * d, sizeof(float)),
                   .Kh = scratch_alloc(&s, V * dh, sizeof(float)),
                   .Q = scratch_alloc(&s, N * dh, sizeof(float)),
                   .best = scratch_alloc(&s, N, sizeof(topk_hit)),
                   .hit = scratch_alloc(&s, V, 1)};
    rc = !r.selectable || !r.unselectable || s.failed ? TW_ENOMEM : draw_for_method(&r, V, dh, w.Q);
    for (size_t b = 0; b < nb && !rc; b++) {
        rc = block_keys(m, x, b0 + (int)b, w.K);
        for (size_t h = 0; h < H && !rc; h++) rc = head_keys(m, x, &r, b, h, &w);
    }
    scratch_free(&s);
    *out = r;
    if (rc) lngeom_keys_result_free(out);
    return rc;
}

/* ---- 2D sketch ---- */

void lngeom_sketch_result_free(lngeom_sketch_result *r) { TW_FREE_FIELDS(r, r->pts); }

void lngeom_default_dims(const gpt2_model *m, int block, int dims[2])
{
    const float *g = m->p.h[block].ln_1_w;
    const int d = m->cfg.n_embd;
    int a = 0, b = d > 1 ? 1 : 0;
    if (fabsf(g[b]) > fabsf(g[a])) {
        a = 1;
        b = 0;
    }
    for (int i = 2; i < d; i++) {
        float v = fabsf(g[i]);
        if (v > fabsf(g[a])) {
            b = a;
            a = i;
        } else if (v > fabsf(g[b])) {
            b = i;
        }
    }
    dims[0] = a;
    dims[1] = b;
}

int lngeom_sketch(const gpt2_model *m, int block, int head, const int dims[2], size_t npts,
                  lngeom_sketch_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m) || !dims) return TW_EINVAL;
    const int d = m->cfg.n_embd;
    const size_t dh = (size_t)d / (size_t)m->cfg.n_head;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (head < 0 || head >= m->cfg.n_head) return TW_EHEAD;
    if (dims[0] < 0 || dims[0] >= d || dims[1] < 0 || dims[1] >= d || dims[0] == dims[1]) return TW_ERANGE;
    if (npts < 3 || npts > 4096) return TW_ERANGE;
    lngeom_sketch_result r = {.block = block, .head = head, .dim = {dims[0], dims[1]}, .npts = npts};
    if (!(r.pts = malloc(4 * npts * 2 * sizeof(double)))) return TW_ENOMEM;
    gpt2_block_ref bref;
    const gpt2_block *b;
    if (ana_block_acquire(m, block, &bref, &b) != TW_OK) {
        free(r.pts);
        return TW_ENOMEM;
    }
    ana_head hs;
    ana_head_slices_of(m, b, head, &hs);
    for (int a = 0; a < 2; a++) {
        r.gamma[a] = b->ln_1_w[dims[a]];
        r.beta[a] = b->ln_1_b ? b->ln_1_b[dims[a]] : 0.0;
        for (int c = 0; c < 2; c++) {
            double s = 0.0;
            for (size_t t = 0; t < dh; t++)
                s += (double)GPT2_AT(hs.wq, dims[a], t) * (double)GPT2_AT(hs.wk, dims[c], t);
            r.w2[a][c] = s / sqrt((double)dh);
        }
    }
    gpt2_block_release(&bref);
    for (size_t p = 0; p < npts; p++) {
        double th = 2.0 * M_PI * (double)p / (double)npts;
        double c[2] = {cos(th), sin(th)};
        double *P = r.pts;
        for (int a = 0; a < 2; a++) {
            P[(0 * npts + p) * 2 + a] = c[a];
            P[(1 * npts + p) * 2 + a] = r.gamma[a] * c[a];
            P[(2 * npts + p) * 2 + a] = r.gamma[a] * c[a] + r.beta[a];
        }
        const double *s = P + (2 * npts + p) * 2;
        for (int a = 0; a < 2; a++) P[(3 * npts + p) * 2 + a] = s[0] * r.w2[0][a] + s[1] * r.w2[1][a];
    }
    *out = r;
    return TW_OK;
}
