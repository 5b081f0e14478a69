/* Embedding norms and normalisation statistics: see embed_norms.h. */
#include "core/ana/embed_norms.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *embed_scheme_name(int scheme)
{
    static const char *const names[EMBED_N_SCHEMES] = {"norm", "scaled", "bias", "scaled_bias"};
    if (scheme < 0 || scheme >= EMBED_N_SCHEMES) return NULL;
    return names[scheme];
}

const char *embed_normalization_row_name(int row)
{
    static const char *const names[4] = {"E", "E - c", "sE", "s(E - c)"};
    if (row < 0 || row >= 4) return NULL;
    return names[row];
}

int embed_norm_scores(const gpt2_model *m, double *scores)
{
    // scores (4, V)
    if (ana_check_model(m) || !scores) return TW_EINVAL;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const float *E = m->p.wte, *g = m->p.ln_f_w, *b = m->p.ln_f_b;
    for (size_t i = 0; i < V; i++) {
        const float *e = E + i * d;
        double ee = 0.0, gg = 0.0, be = 0.0;
        for (size_t j = 0; j < d; j++) {
            double x = e[j], gx = (double)g[j] * x;
            ee += x * x;
            gg += gx * gx;
            if (b) be += (double)b[j] * x; /* no beta: the bias schemes equal the others */
        }
        double n = sqrt(ee), sn = sqrt(gg);
        scores[EMBED_NORM * V + i] = n;
        scores[EMBED_SCALED * V + i] = sn;
        scores[EMBED_BIAS * V + i] = n + be;
        scores[EMBED_SCALED_BIAS * V + i] = sn + be;
    }
    return TW_OK;
}

static int fill_scores(void *data, size_t bytes, void *ctx)
{
    const gpt2_model *m = ctx;
    if (bytes != EMBED_N_SCHEMES * (size_t)m->cfg.vocab_size * sizeof(double)) return TW_EINVAL;
    return embed_norm_scores(m, data);
}

void embed_norms_result_free(embed_norms_result *r)
{
    if (!r) return;
    free(r->top); // top and bottom share one allocation
    memset(r, 0, sizeof *r);
}

/* The cache entry of the four score vectors, computed on first use. */
static int acquire_scores(const gpt2_model *m, const ana_ctx *x, blockcache_entry **e)
{
    size_t V = (size_t)m->cfg.vocab_size;
    return blockcache_acquire_within(ana_cache(x), "embed-scores", EMBED_N_SCHEMES * V * sizeof(double),
                                     fill_scores, (void *)m, ana_cancel(x), e);
}

int embed_scores(const gpt2_model *m, const ana_ctx *x, double *scores)
{
    if (ana_check_model(m) || !scores) return TW_EINVAL;
    blockcache_entry *e = NULL;
    int rc = acquire_scores(m, x, &e);
    if (rc == TW_OK)
        memcpy(scores, blockcache_data(e), EMBED_N_SCHEMES * (size_t)m->cfg.vocab_size * sizeof(double));
    blockcache_release(ana_cache(x), e);
    return rc;
}

int embed_norms(const gpt2_model *m, const ana_ctx *x, size_t k, embed_norms_result *out)
{
    blockcache *c = ana_cache(x);
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m)) return TW_EINVAL;
    size_t V = (size_t)m->cfg.vocab_size;
    if (k < 1 || k > V) return TW_EK;

    topk_hit *hits = malloc(2 * EMBED_N_SCHEMES * k * sizeof *hits);
    if (!hits) return TW_ENOMEM;
    blockcache_entry *e = NULL;
    int rc = acquire_scores(m, x, &e);
    *out = (embed_norms_result){.k = k, .top = hits, .bottom = hits + EMBED_N_SCHEMES * k};
    for (int s = 0; s < EMBED_N_SCHEMES && rc == 0; s++) {
        const double *scores = (const double *)blockcache_data(e) + (size_t)s * V;
        rc = topk_vec(scores, V, k, out->top + (size_t)s * k, out->bottom + (size_t)s * k);
    }
    blockcache_release(c, e);
    if (rc) embed_norms_result_free(out);
    return rc;
}

/* Mean and unbiased standard deviation of x (n), two passes. */
static void mean_std(const double *x, size_t n, double *mean, double *std)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    double mu = n ? s / (double)n : 0.0;
    double q = 0.0;
    for (size_t i = 0; i < n; i++) q += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *std = n > 1 ? sqrt(q / (double)(n - 1)) : 0.0;
}

static double cos_distance(double xn, double xx, double nn)
{
    double den = sqrt(xx) * sqrt(nn);
    return den > 0.0 ? 1.0 - xn / den : 1.0;
}

int embed_normalization(const gpt2_model *m, embed_normalization_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m)) return TW_EINVAL;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const float *E = m->p.wte;
    double eps = (double)m->cfg.ln_eps;

    double *cm = calloc(d, sizeof *cm);          // (d) mean row c
    double *dist = malloc(8 * V * sizeof *dist); // (8, V): l2 and cos per X
    if (!cm || !dist) {
        free(cm);
        free(dist);
        return TW_ENOMEM;
    }

    // Pass 1: a and c.
    double norm_sum = 0.0;
    for (size_t i = 0; i < V; i++) {
        const float *e = E + i * d;
        double ee = 0.0;
        for (size_t j = 0; j < d; j++) {
            ee += (double)e[j] * e[j];
            cm[j] += e[j];
        }
        norm_sum += sqrt(ee);
    }
    for (size_t j = 0; j < d; j++) cm[j] /= (double)V;
    double a = norm_sum / (double)V;
    double s = sqrt((double)d) / a;

    // Pass 2: per row, N_i = LN_0(E_i) and the four X_i against it.
    for (size_t i = 0; i < V; i++) {
        const float *e = E + i * d;
        double mu = 0.0;
        for (size_t j = 0; j < d; j++) mu += e[j];
        mu /= (double)d;
        double var = 0.0;
        for (size_t j = 0; j < d; j++) var += (e[j] - mu) * (e[j] - mu);
        var /= (double)d;
        double rstd = 1.0 / sqrt(var + eps);

        double nn = 0.0;
        double dd[4] = {0}, xx[4] = {0}, xn[4] = {0};
        for (size_t j = 0; j < d; j++) {
            double n = (e[j] - mu) * rstd;
            double x[4] = {e[j], e[j] - cm[j], s * e[j], s * (e[j] - cm[j])};
            nn += n * n;
            for (int r = 0; r < 4; r++) {
                double t = x[r] - n;
                dd[r] += t * t;
                xx[r] += x[r] * x[r];
                xn[r] += x[r] * n;
            }
        }
        for (int r = 0; r < 4; r++) {
            dist[(size_t)(2 * r) * V + i] = sqrt(dd[r]);
            dist[(size_t)(2 * r + 1) * V + i] = cos_distance(xn[r], xx[r], nn);
        }
    }

    out->avg_norm = a;
    out->scale = s;
    for (int r = 0; r < 4; r++) {
        mean_std(dist + (size_t)(2 * r) * V, V, &out->rows[r].l2_mean, &out->rows[r].l2_std);
        mean_std(dist + (size_t)(2 * r + 1) * V, V, &out->rows[r].cos_mean, &out->rows[r].cos_std);
    }
    free(cm);
    free(dist);
    return TW_OK;
}
