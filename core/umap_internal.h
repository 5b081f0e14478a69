/* Private helpers shared by the core/umap_*.c files; not part of the API. */
#ifndef TW_UMAP_INTERNAL_H
#define TW_UMAP_INTERNAL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "umap.h"

/* splitmix64: a counter through a 64-bit finaliser. Small state, so every
 * thread and every transformed point can own an independent stream. */
static inline uint64_t umap_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Integer in [0, n), n >= 1 (multiply-shift; bias below 2^-32 * n). */
static inline uint32_t umap_rng_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(((umap_rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

/* Uniform double in [0, 1). */
static inline double umap_rng_uniform(uint64_t *s)
{
    return (double)(umap_rng_next(s) >> 11) * 0x1.0p-53;
}

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

static inline void umap_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void umap_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static inline int umap_cancelled(umap_progress *p)
{
    return p && atomic_load_explicit(&p->cancel, memory_order_relaxed) != 0;
}

static inline void umap_progress_set(umap_progress *p, int stage, long done,
                                     long total)
{
    if (!p)
        return;
    atomic_store(&p->total, total);
    atomic_store(&p->done, done);
    atomic_store(&p->stage, stage);
}

/* SGD of a fit (umap_layout.c). emb (n, nc) is optimised in place over the
 * symmetric graph g (both directions stored) with eps (g->nnz) from
 * umap_epochs_per_sample. The vertices are split into up to 64 chunks of
 * similar work (fixed by the graph, not by n_threads); in each epoch the
 * threads take chunks as they become free. A chunk reads its own vertices
 * live and the others from a snapshot of the previous epoch's end (two
 * alternating buffers, one barrier per epoch) and draws from its own random
 * streams, so the result depends on the seed only. Each sampling of edge
 * (j, k) pulls j by twice the attractive step, standing in for umap-learn's
 * move_other update of the reverse edge (k, j); its negative samples are
 * evaluated at one position and applied together. Gradients, clipping,
 * sampling schedule and learning rate are umap-learn's. Returns UMAP_OK,
 * UMAP_ECANCELED or UMAP_ENOMEM. */
int umap_optimize_fit(float *emb, size_t n, size_t nc, const umap_graph *g,
                      const double *eps, size_t n_epochs, float a, float b,
                      float gamma, float alpha0, size_t neg_rate,
                      size_t n_threads, uint64_t seed, umap_progress *prog);

/* SGD of new points (umap_layout.c): head (m, nc) moves, tail (n, nc) is
 * fixed. Row i of head has edges indptr[i]..indptr[i+1] to tail rows
 * indices[] with eps[] (-1 = never sampled). Each new point is independent
 * and owns a random stream derived from (seed, i), so the result does not
 * depend on the processing order. */
void umap_optimize_transform(float *head, size_t m, const float *tail,
                             size_t n, size_t nc, const size_t *indptr,
                             const int32_t *indices, const double *eps,
                             size_t n_epochs, float a, float b, float gamma,
                             float alpha0, size_t neg_rate, uint64_t seed);

/* Connected components: label (n) receives 0..count-1 in order of first
 * vertex; returns the count, or 0 on allocation failure. */
size_t umap_graph_components(const umap_graph *g, int32_t *label);

#endif
