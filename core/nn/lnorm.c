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
