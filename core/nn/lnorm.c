/* Layer norm over rows: see lnorm.h for the contract. */
#include "core/nn/lnorm.h"

#include <math.h>

#include "base/clones.h"

/* Clang contracts a * b + c into an FMA within an expression where the
 * target has one (the AVX2 and AVX-512 versions below); GCC does not in
 * ISO C mode. Either would change the floats, so never. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif


void layernorm_stats(const float *x, size_t d, float eps, double *mean, double *rstd)
{
    double m = 0.0;
    for (size_t i = 0; i < d; i++) m += x[i];
    m /= (double)d;
    double var = 0.0;
    for (size_t i = 0; i < d; i++) {
        double c = (double)x[i] - m;
        var += c * c;
    }
    var /= (double)d;
    *mean = m;
    *rstd = 1.0 / sqrt(var + (double)eps);
}

/* Rows whose sums layernorm_stats_rows runs side by side: each chain waits
 * on its own last addition, so more of them keep the adders busy. */
#define STATS_ROWS 16

void layernorm_stats_rows(const float *x, size_t rows, size_t d, float eps, double *mean, double *rstd)
{
    // x (rows, d); mean, rstd (rows)
    size_t r = 0;
    for (; r + STATS_ROWS <= rows; r += STATS_ROWS) { /* STATS_ROWS rows' chains side by side */
        const float *row[STATS_ROWS];
        double m[STATS_ROWS], v[STATS_ROWS];
        for (size_t t = 0; t < STATS_ROWS; t++) {
            row[t] = x + (r + t) * d;
            m[t] = 0.0;
            v[t] = 0.0;
        }
        for (size_t i = 0; i < d; i++)
            for (size_t t = 0; t < STATS_ROWS; t++) m[t] += row[t][i];
        for (size_t t = 0; t < STATS_ROWS; t++) m[t] /= (double)d;
        for (size_t i = 0; i < d; i++)
            for (size_t t = 0; t < STATS_ROWS; t++) {
                double c = (double)row[t][i] - m[t];
                v[t] += c * c;
            }
        for (size_t t = 0; t < STATS_ROWS; t++) {
            mean[r + t] = m[t];
            rstd[r + t] = 1.0 / sqrt(v[t] / (double)d + (double)eps);
        }
    }
    for (; r + 4 <= rows; r += 4) { /* four rows' chains interleaved, each in layernorm_stats's order */
        const float *a = x + r * d, *b = a + d, *c = b + d, *e = c + d;
        double m0 = 0.0, m1 = 0.0, m2 = 0.0, m3 = 0.0;
        for (size_t i = 0; i < d; i++) {
            m0 += a[i];
            m1 += b[i];
            m2 += c[i];
            m3 += e[i];
        }
        m0 /= (double)d;
        m1 /= (double)d;
        m2 /= (double)d;
        m3 /= (double)d;
        double v0 = 0.0, v1 = 0.0, v2 = 0.0, v3 = 0.0;
        for (size_t i = 0; i < d; i++) {
            double c0 = (double)a[i] - m0, c1 = (double)b[i] - m1, c2 = (double)c[i] - m2, c3 = (double)e[i] - m3;
            v0 += c0 * c0;
            v1 += c1 * c1;
            v2 += c2 * c2;
            v3 += c3 * c3;
        }
        const double v[4] = {v0, v1, v2, v3}, m[4] = {m0, m1, m2, m3};
        for (size_t t = 0; t < 4; t++) {
            mean[r + t] = m[t];
            rstd[r + t] = 1.0 / sqrt(v[t] / (double)d + (double)eps);
        }
    }
    for (; r < rows; r++) layernorm_stats(x + r * d, d, eps, &mean[r], &rstd[r]);
}

void layernorm_apply(float *y, const float *x, const float *gamma, const float *beta, size_t d, double mean,
                     double rstd)
{
    // x[i] is read before y[i] is written: in place is safe.
    for (size_t i = 0; i < d; i++) {
        double v = ((double)x[i] - mean) * rstd;
        if (gamma) v *= (double)gamma[i];
        if (beta) v += (double)beta[i];
        y[i] = (float)v;
    }
}

/* Lanes of the sum of squares: independent chains the vector units run side by side. */
#define SUMSQ_LANES 8

/* The vector loop of layernorm_apply_sumsq (static: Clang resolves a
 * multiversioned function only where its callers see the attribute). */
static TW_CLONES double apply_sumsq(float *restrict y, const float *restrict x, const float *restrict gamma,
                                    const float *restrict beta, size_t d, double mean, double rstd)
{
    double acc[SUMSQ_LANES] = {0};
    size_t i = 0;
    if (gamma && beta) /* the usual case, vectorised; per element exactly layernorm_apply's steps */
        for (; i + SUMSQ_LANES <= d; i += SUMSQ_LANES)
            for (size_t l = 0; l < SUMSQ_LANES; l++) {
                double v = ((double)x[i + l] - mean) * rstd;
                v *= (double)gamma[i + l];
                v += (double)beta[i + l];
                const float o = (float)v;
                y[i + l] = o;
                acc[l] += (double)o * (double)o;
            }
    else if (!gamma && !beta) /* LN_0: the same steps without the affine map */
        for (; i + SUMSQ_LANES <= d; i += SUMSQ_LANES)
            for (size_t l = 0; l < SUMSQ_LANES; l++) {
                const float o = (float)(((double)x[i + l] - mean) * rstd);
                y[i + l] = o;
                acc[l] += (double)o * (double)o;
            }
    if (i < d) {
        layernorm_apply(y + i, x + i, gamma ? gamma + i : NULL, beta ? beta + i : NULL, d - i, mean, rstd);
        for (; i < d; i++) acc[0] += (double)y[i] * (double)y[i];
    }
    double s = 0.0;
    for (size_t l = 0; l < SUMSQ_LANES; l++) s += acc[l];
    return s;
}

double layernorm_apply_sumsq(float *restrict y, const float *restrict x, const float *restrict gamma,
                             const float *restrict beta, size_t d, double mean, double rstd)
{
    return apply_sumsq(y, x, gamma, beta, d, mean, rstd);
}

void layernorm_rows(float *out, const float *in, const float *gamma, const float *beta, size_t rows, size_t d,
                    float eps)
{
    // out, in (rows, d); gamma, beta (d) or NULL
    if (d == 0) return;
    /* the statistics of STATS_ROWS rows side by side (the same doubles as
     * one row at a time), then each row: in place is safe, as its
     * statistics are taken before it is written */
    double mean[STATS_ROWS], rstd[STATS_ROWS];
    for (size_t r = 0; r < rows; r += STATS_ROWS) {
        const size_t n = rows - r < STATS_ROWS ? rows - r : STATS_ROWS;
        layernorm_stats_rows(in + r * d, n, d, eps, mean, rstd);
        for (size_t t = 0; t < n; t++)
            layernorm_apply(out + (r + t) * d, in + (r + t) * d, gamma, beta, d, mean[t], rstd[t]);
    }
}
