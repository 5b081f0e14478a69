/* Faithfulness of a layout: see faith.h and docs/MATH.md §15. */
#include "core/proj/faith.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "base/scratch.h"
#include "core/proj/umap.h"

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

size_t faith_sample(size_t n, size_t m, uint64_t seed, size_t *idx)
{
    if (m >= n) {
        for (size_t i = 0; i < n; i++) idx[i] = i;
        return n;
    }
    size_t *perm = malloc(n * sizeof *perm);
    if (!perm) { /* out of memory: every (n/m)-th row instead */
        for (size_t i = 0; i < m; i++) idx[i] = i * n / m;
        return m;
    }
    for (size_t i = 0; i < n; i++) perm[i] = i;
    tw_rng r;
    tw_rng_seed(&r, seed);
    for (size_t i = 0; i < m; i++) { /* the first m steps of a Fisher-Yates shuffle */
        size_t j = i + (size_t)(tw_rng_uniform(&r) * (double)(n - i));
        if (j >= n) j = n - 1;
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(idx, perm, m * sizeof *idx);
    free(perm);
    qsort(idx, m, sizeof *idx, cmp_size);
    return m;
}

/* (distance, index) order: a before b. */
static int closer(double da, size_t ia, double db, size_t ib) { return da < db || (da == db && ia < ib); }

/* The K nearest of row i by dist (m entries; i itself skipped) into nn,
 * nearest first (a bounded max-heap, then sorted). */
static void nearest(const double *dist, size_t m, size_t i, size_t K, size_t *nn)
{
    size_t h = 0; /* heap of the K best so far, the farthest at the root */
    for (size_t j = 0; j < m; j++) {
        if (j == i) continue;
        if (h == K && !closer(dist[j], j, dist[nn[0]], nn[0])) continue;
        size_t c;
        if (h < K) { /* sift up */
            c = h++;
            while (c > 0) {
                size_t p = (c - 1) / 2;
                if (!closer(dist[nn[p]], nn[p], dist[j], j)) break;
                nn[c] = nn[p];
                c = p;
            }
        } else { /* replace the root, sift down */
            c = 0;
            for (;;) {
                size_t l = 2 * c + 1, r = l + 1, w = c;
                size_t wi = j;
                if (l < K && closer(dist[wi], wi, dist[nn[l]], nn[l])) {
                    w = l;
                    wi = nn[l];
                }
                if (r < K && closer(dist[wi], wi, dist[nn[r]], nn[r])) w = r;
                if (w == c) break;
                nn[c] = nn[w];
                c = w;
            }
        }
        nn[c] = j;
    }
    /* insertion sort, nearest first (K is small) */
    for (size_t a = 1; a < h; a++)
        for (size_t b = a; b > 0 && closer(dist[nn[b]], nn[b], dist[nn[b - 1]], nn[b - 1]); b--) {
            size_t t = nn[b];
            nn[b] = nn[b - 1];
            nn[b - 1] = t;
        }
}

/* The rank (1-based) of j among the rows other than i by dist. */
static size_t rank_of(const double *dist, size_t m, size_t i, size_t j)
{
    size_t r = 1;
    for (size_t l = 0; l < m; l++)
        if (l != i && l != j && closer(dist[l], l, dist[j], j)) r++;
    return r;
}

static int member(const size_t *a, size_t K, size_t x)
{
    for (size_t t = 0; t < K; t++)
        if (a[t] == x) return 1;
    return 0;
}

/* Rows of X per dgemm block. */
#define FAITH_BLOCK 128

/* xd (m, d) = X in double, nrm (m) the squared norm of each row. */
static void rows_double(const float *X, size_t m, size_t d, double *xd, double *nrm)
{
    for (size_t i = 0; i < m * d; i++) xd[i] = X[i];
    for (size_t i = 0; i < m; i++) {
        double s = 0;
        for (size_t t = 0; t < d; t++) s += xd[i * d + t] * xd[i * d + t];
        nrm[i] = s;
    }
}

/* The squared distances of row i to every row in place of its Gram row g
 * (m): |x_i|^2 + |x_j|^2 - 2 x_i.x_j, clamped at 0. */
static void gram_to_dist(double *g, const double *nrm, size_t m, size_t i)
{
    for (size_t j = 0; j < m; j++) {
        double v = nrm[i] + nrm[j] - 2.0 * g[j];
        g[j] = v > 0 ? v : 0;
    }
}

/* dy (m): the squared layout distances of row i of Y (m, e) to every row. */
static void layout_dist(const float *Y, size_t m, size_t e, size_t i, double *dy)
{
    for (size_t j = 0; j < m; j++) {
        double s = 0;
        for (size_t t = 0; t < e; t++) {
            double u = (double)Y[i * e + t] - (double)Y[j * e + t];
            s += u * u;
        }
        dy[j] = s;
    }
}

/* Row i's terms of the two sums: the excess ranks (r - K) in the full space
 * of its layout neighbours that are not full-space neighbours (sum_t), and
 * the other way round (sum_c). nx, ny (K) scratch. */
static void row_terms(const double *dx, const double *dy, size_t m, size_t i, size_t K, size_t *nx,
                      size_t *ny, double *sum_t, double *sum_c)
{
    nearest(dx, m, i, K, nx);
    nearest(dy, m, i, K, ny);
    for (size_t t = 0; t < K; t++) {
        if (!member(nx, K, ny[t])) *sum_t += (double)(rank_of(dx, m, i, ny[t]) - K);
        if (!member(ny, K, nx[t])) *sum_c += (double)(rank_of(dy, m, i, nx[t]) - K);
    }
}

int faith_trust_cont(const float *X, size_t m, size_t d, const float *Y, size_t e, size_t K, double *trust,
                     double *cont, const tw_cancel *cancel)
{
    if (!X || !Y || !trust || !cont || K < 1 || 2 * K >= m || d < 1 || e < 1) return TW_EINVAL;
    if (m > (size_t)INT_MAX || d > (size_t)INT_MAX) return TW_EINVAL;
    scratch s = {.n = 0};
    double *xd = scratch_alloc(&s, m * d, sizeof *xd), *nrm = scratch_alloc(&s, m, sizeof *nrm);
    double *G = scratch_alloc(&s, FAITH_BLOCK * m, sizeof *G), *dy = scratch_alloc(&s, m, sizeof *dy);
    size_t *nx = scratch_alloc(&s, K, sizeof *nx), *ny = scratch_alloc(&s, K, sizeof *ny);
    int rc = s.failed ? TW_ENOMEM : TW_OK;
    if (rc == TW_OK) rows_double(X, m, d, xd, nrm);
    double sum_t = 0, sum_c = 0;
    for (size_t i0 = 0; i0 < m && rc == TW_OK; i0 += FAITH_BLOCK) {
        if ((rc = tw_cancel_check(cancel)) != TW_OK) break;
        size_t bi = m - i0 < FAITH_BLOCK ? m - i0 : FAITH_BLOCK;
        // G (bi, m) = X[i0 .. i0+bi) X^T
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bi, (int)m, (int)d, 1.0, xd + i0 * d,
                    (int)d, xd, (int)d, 0.0, G, (int)m);
        for (size_t r = 0; r < bi; r++) {
            const size_t i = i0 + r;
            double *dx = G + r * m; /* squared distances from i, in place */
            gram_to_dist(dx, nrm, m, i);
            layout_dist(Y, m, e, i, dy);
            row_terms(dx, dy, m, i, K, nx, ny, &sum_t, &sum_c);
        }
    }
    if (rc == TW_OK) {
        double norm = 2.0 / ((double)m * (double)K * (2.0 * (double)m - 3.0 * (double)K - 1.0));
        *trust = 1.0 - norm * sum_t;
        *cont = 1.0 - norm * sum_c;
    }
    scratch_free(&s);
    return rc;
}

int faith_knn_overlap(const float *X, size_t n, size_t d, const float *Y, size_t e, const float *q,
                      const float *qy, size_t m, size_t K, double *frac)
{
    if (!X || !Y || !q || !qy || !frac || K < 1 || K > n || d < 1 || e < 1 || n > (size_t)INT32_MAX ||
        m > (size_t)INT32_MAX)
        return TW_EINVAL;
    if (m == 0) return TW_OK;
    /* the full space: UMAP's exact kNN (float GEMM screening, the best
     * candidates measured again in double; docs/MATH.md §8.1 step 1) */
    int32_t *ix = malloc(m * K * sizeof *ix);
    float *dist = malloc(m * K * sizeof *dist);
    double *dy = malloc(n * sizeof *dy);
    size_t *ny = malloc(K * sizeof *ny);
    int rc = TW_OK;
    if (!ix || !dist || !dy || !ny) {
        rc = TW_ENOMEM;
        goto out;
    }
    char err[256];
    if ((rc = umap_knn(X, n, q, m, d, K, 0, ix, dist, NULL, err, sizeof err)) != TW_OK) goto out;
    /* the layout: every distance, in double */
    for (size_t i = 0; i < m; i++) {
        const float *ay = qy + i * e;
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t c = 0; c < e; c++) {
                double u = (double)ay[c] - (double)Y[j * e + c];
                s += u * u;
            }
            dy[j] = s;
        }
        nearest(dy, n, (size_t)-1, K, ny);
        size_t both = 0;
        for (size_t t = 0; t < K; t++) both += (size_t)member(ny, K, (size_t)ix[i * K + t]);
        frac[i] = (double)both / (double)K;
    }
out:
    free(ix);
    free(dist);
    free(dy);
    free(ny);
    return rc;
}
