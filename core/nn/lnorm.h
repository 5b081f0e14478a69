/* Layer normalisation over the rows of a matrix (docs/MATH.md §1.4):
 *   LN(x) = gamma * (x - mean(x)) / sqrt(var(x) + eps) + beta,
 * var the biased variance (divide by d). */
#ifndef TW_LNORM_H
#define TW_LNORM_H

#include <stddef.h>

/* out (rows, d) = LN(in (rows, d)) row by row.
 * gamma, beta: (d), or NULL for 1 and 0 (NULL gamma and NULL beta is LN_0).
 * Mean, variance and the affine map are computed in double and rounded to
 * float once, so the result does not depend on how rows are split between
 * calls. out may equal in (in place); other overlaps are not allowed.
 * No allocation, no failure; a row of d == 0 is a no-op. Thread-safe. */
void layernorm_rows(float *out, const float *in, const float *gamma, const float *beta, size_t rows, size_t d,
                    float eps);

/* The mean and 1 / sqrt(var + eps) of one row x (d >= 1), in double, exactly
 * as layernorm_rows computes them (through layernorm_stats_rows, the same
 * doubles), so that a caller can
 * write LN(x)_i = gamma_i (x_i - *mean) * *rstd + beta_i. */
void layernorm_stats(const float *x, size_t d, float eps, double *mean, double *rstd);

/* layernorm_stats of each row of x (rows, d) into mean, rstd (rows): the
 * same doubles, bit for bit, several rows' sums interleaved (independent
 * chains instead of one latency-bound chain), each in the same order. */
void layernorm_stats_rows(const float *x, size_t rows, size_t d, float eps, double *mean, double *rstd);

/* y (d) = LN(x) from the statistics layernorm_stats gave for x: the affine
 * map of layernorm_rows (which calls this), so a row formed from stored
 * statistics is the same floats as layernorm_rows's. y may equal x. */
void layernorm_apply(float *y, const float *x, const float *gamma, const float *beta, size_t d, double mean,
                     double rstd);

/* layernorm_apply (the same floats y, bit for bit) and the sum of the
 * squares of the floats written, in double (an order of its own: the
 * products are exact, the sum within d * 2^-53 of the exact one), for a
 * caller that needs |y| as a bound. y must not overlap x, gamma or beta.
 * With gamma and beta both given or both NULL (LN_0), on x86-64 the loop
 * has AVX-512 and AVX2 versions chosen at run time:
 * the same operations lane for lane, never contracted into FMAs, so the
 * floats do not depend on the processor. */
double layernorm_apply_sumsq(float *restrict y, const float *restrict x, const float *restrict gamma,
                             const float *restrict beta, size_t d, double mean, double rstd);

#endif
