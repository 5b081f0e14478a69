/* Layer norm over rows: see lnorm.h for the contract. */
#include "core/nn/lnorm.h"

#include <math.h>

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

void layernorm_stats_rows(const float *x, size_t rows, size_t d, float eps, double *mean, double *rstd)
{
    // x (rows, d); mean, rstd (rows)
    size_t r = 0;
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

void layernorm_rows(float *out, const float *in, const float *gamma, const float *beta, size_t rows, size_t d,
                    float eps)
{
    // out, in (rows, d); gamma, beta (d) or NULL
    if (d == 0) return;
    for (size_t r = 0; r < rows; r++) {
        double mean, rstd;
        layernorm_stats(in + r * d, d, eps, &mean, &rstd);
        layernorm_apply(out + r * d, in + r * d, gamma, beta, d, mean, rstd);
    }
}
