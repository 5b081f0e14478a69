/* Private helpers shared by the core/umap_*.c files; not part of the API. */
#ifndef TW_UMAP_INTERNAL_H
#define TW_UMAP_INTERNAL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "base/hash.h"
#include "core/proj/umap.h"

/* splitmix64: a counter through a 64-bit finaliser. Small state, so every
 * thread and every transformed point can own an independent stream. */
static inline uint64_t umap_rng_next(uint64_t *s) { return tw_splitmix64(s); }

/* Integer in [0, n), n >= 1 (multiply-shift; bias below 2^-32 * n). */
static inline uint32_t umap_rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((umap_rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform double in [0, 1). */
static inline double umap_rng_uniform(uint64_t *s) { return (double)(umap_rng_next(s) >> 11) * 0x1.0p-53; }

/* Standard normal (Box-Muller, one value per call). */
static inline double umap_rng_normal(uint64_t *s)
{
    double u1 = 1.0 - umap_rng_uniform(s); /* (0, 1] */
    double u2 = umap_rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Seed of stream `k` derived from a user seed. */
static inline uint64_t umap_rng_derive(uint64_t seed, uint64_t k)
{
    uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (k + 1));
    return umap_rng_next(&s);
}

/* ---- fast power for the SGD -------------------------------------------
 * The layout gradients need d2^b (d2 a squared distance, b from
 * umap_find_ab) hundreds of millions of times per fit. x^b = exp2(b log2 x)
 * with both parts reduced to small polynomials: relative error below 1e-5
 * (mostly the float rounding of b log2 x) wherever x and x^b are normal
 * floats below 2^126 (tests/test_umap.c measures it: 6.7e-6),
 * far below the noise of the stochastic descent. Plain float arithmetic
 * (no table, no branch) so that loops over a block of samples vectorise;
 * IEEE round-to-nearest only, nothing that -ffast-math would be needed
 * for. */

/* log2 x for normal x > 0 (x >= FLT_MIN, finite). */
static inline float umap_log2_fast(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    /* exponent e and mantissa m = x / 2^e in [sqrt(1/2), sqrt(2)) */
    int32_t e = (int32_t)(u - 0x3f3504f3u) >> 23;
    uint32_t mu = u - ((uint32_t)e << 23);
    float m;
    memcpy(&m, &mu, sizeof m);
    /* ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172: series to t^7
     * (truncation below 3.1e-8) */
    float t = (m - 1.0f) / (m + 1.0f);
    float t2 = t * t;
    float ln_m = t * (2.0f + t2 * (0.6666666667f + t2 * (0.4f + t2 * 0.2857142857f)));
    return (float)e + ln_m * 1.4426950409f;
}

/* 2^y, y clamped to [-126, 126] (the result is then a normal float). */
static inline float umap_exp2_fast(float y)
{
    y = y < -126.0f ? -126.0f : y;
    y = y > 126.0f ? 126.0f : y;
    /* adding 1.5 * 2^23 rounds y to the nearest integer k, held in the low
     * mantissa bits of r; f = y - k in [-0.5, 0.5] */
    float r = y + 12582912.0f;
    float f = y - (r - 12582912.0f);
    uint32_t ru;
    memcpy(&ru, &r, sizeof ru);
    uint32_t su = (ru - 0x4b400000u + 127u) << 23; /* bits of 2^k */
    float scale;
    memcpy(&scale, &su, sizeof scale);
    /* 2^f = e^(f ln 2), Taylor to degree 6: relative truncation error
     * below 1.3e-7 on the range */
    float p = 1.0f +
              f * (0.6931471806f +
                   f * (0.2402265070f +
                        f * (0.0555041087f + f * (0.0096181291f + f * (0.0013333558f + f * 0.0001540353f)))));
    return p * scale;
}

/* x^b for x > 0 (x below FLT_MIN is taken as FLT_MIN). */
static inline float umap_pow_fast(float x, float b)
{
    x = x < 0x1.0p-126f ? 0x1.0p-126f : x;
    return umap_exp2_fast(b * umap_log2_fast(x));
}

/* The same three functions on 4 lanes (GCC vector extensions: SSE2 on
 * x86-64, generic code elsewhere), operation for operation, so lane results
 * equal the scalar ones bit for bit. */
typedef float umap_v4f __attribute__((vector_size(16)));
typedef int32_t umap_v4i __attribute__((vector_size(16)));
typedef uint32_t umap_v4u __attribute__((vector_size(16)));

/* m ? x : y per lane, m from a vector comparison (all ones or zero). */
static inline umap_v4f umap_v4_select(umap_v4i m, umap_v4f x, umap_v4f y)
{
    return (umap_v4f)(((umap_v4i)x & m) | ((umap_v4i)y & ~m));
}

/* Lane minimum / maximum: x < y ? x : y and x > y ? x : y (SSE's minps
 * and maxps where available: one instruction instead of three). */
#if defined(__SSE__)
#include <xmmintrin.h>
static inline umap_v4f umap_v4_min(umap_v4f x, umap_v4f y)
{
    return (umap_v4f)_mm_min_ps((__m128)x, (__m128)y);
}
static inline umap_v4f umap_v4_max(umap_v4f x, umap_v4f y)
{
    return (umap_v4f)_mm_max_ps((__m128)x, (__m128)y);
}
#else
static inline umap_v4f umap_v4_min(umap_v4f x, umap_v4f y) { return umap_v4_select(x < y, x, y); }
static inline umap_v4f umap_v4_max(umap_v4f x, umap_v4f y) { return umap_v4_select(x > y, x, y); }
#endif

static inline umap_v4f umap_log2_fast4(umap_v4f x)
{
    umap_v4u u = (umap_v4u)x;
    umap_v4i e = (umap_v4i)(u - 0x3f3504f3u) >> 23;
    umap_v4f m = (umap_v4f)(u - ((umap_v4u)e << 23));
    umap_v4f t = (m - 1.0f) / (m + 1.0f);
    umap_v4f t2 = t * t;
    umap_v4f ln_m = t * (2.0f + t2 * (0.6666666667f + t2 * (0.4f + t2 * 0.2857142857f)));
    return __builtin_convertvector(e, umap_v4f) + ln_m * 1.4426950409f;
}

static inline umap_v4f umap_exp2_fast4(umap_v4f y)
{
    const umap_v4f lo = {-126.0f, -126.0f, -126.0f, -126.0f};
    const umap_v4f hi = {126.0f, 126.0f, 126.0f, 126.0f};
    y = umap_v4_min(umap_v4_max(y, lo), hi);
    umap_v4f r = y + 12582912.0f;
    umap_v4f f = y - (r - 12582912.0f);
    umap_v4f scale = (umap_v4f)(((umap_v4u)r - 0x4b400000u + 127u) << 23);
    umap_v4f p =
        1.0f +
        f * (0.6931471806f +
             f * (0.2402265070f +
                  f * (0.0555041087f + f * (0.0096181291f + f * (0.0013333558f + f * 0.0001540353f)))));
    return p * scale;
}

static inline umap_v4f umap_pow_fast4(umap_v4f x, float b)
{
    const umap_v4f tiny = {0x1.0p-126f, 0x1.0p-126f, 0x1.0p-126f, 0x1.0p-126f};
    x = umap_v4_max(x, tiny);
    return umap_exp2_fast4(b * umap_log2_fast4(x));
}

static inline void umap_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void umap_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_vset_err(err, errlen, 0, fmt, ap);
    va_end(ap);
}

static inline int umap_cancelled(umap_progress *p)
{
    return p && atomic_load_explicit(&p->cancel, memory_order_relaxed) != 0;
}

static inline void umap_progress_set(umap_progress *p, int stage, long done, long total)
{
    if (!p) return;
    atomic_store(&p->total, total);
    atomic_store(&p->done, done);
    atomic_store(&p->stage, stage);
}

/* SGD of a fit (umap_layout.c). emb (n, nc) is optimised in place over the
 * symmetric graph g (both directions stored) with eps (g->nnz) from
 * umap_epochs_per_sample. The vertices are split into up to 64 chunks of
 * similar work (fixed by the graph, not by n_threads); in each epoch the
 * threads take chunks as they become free. A chunk reads the attraction
 * targets among its own vertices live, every other position (all negative
 * samples included) from a snapshot of the previous epoch's end (two
 * alternating buffers, one barrier per epoch), and draws from its own
 * random streams, so the result depends on the seed only. Each sampling of
 * edge (j, k) pulls j by twice the attractive step, standing in for
 * umap-learn's move_other update of the reverse edge (k, j); the attraction
 * and the edge's negative samples are evaluated at j's position in one
 * vector block (d^(2b) by umap_pow_fast4) and applied together.
 * Gradients, clipping, sampling schedule (in integers) and learning rate
 * are umap-learn's. emb is copied to a padded buffer and back. Returns
 * TW_OK, TW_ECANCELED or TW_ENOMEM. */
int umap_optimize_fit(float *emb, size_t n, size_t nc, const umap_graph *g, const double *eps,
                      size_t n_epochs, float a, float b, float gamma, float alpha0, size_t neg_rate,
                      size_t n_threads, uint64_t seed, umap_progress *prog);

/* SGD of new points (umap_layout.c): head (m, nc) moves, tail (n, nc) is
 * fixed. Row i of head has edges indptr[i]..indptr[i+1] to tail rows
 * indices[] with eps[] (-1 = never sampled). Each new point is independent
 * and owns a random stream derived from (seed, i), so the result does not
 * depend on the processing order. */
void umap_optimize_transform(float *head, size_t m, const float *tail, size_t n, size_t nc,
                             const size_t *indptr, const int32_t *indices, const double *eps, size_t n_epochs,
                             float a, float b, float gamma, float alpha0, size_t neg_rate, uint64_t seed);

/* Connected components: label (n) receives 0..count-1 in order of first
 * vertex; returns the count, or 0 on allocation failure. */
size_t umap_graph_components(const umap_graph *g, int32_t *label);

#endif
