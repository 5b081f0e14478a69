/* Top-k selection: see topk.h for the contract. */
#include "core/nn/topk.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Bounded heap of the k best (key, id) seen so far ----
 * "Better" is a total order: larger key, then lower id. The root holds the
 * worst kept item, so a candidate enters only if it beats the root. The heap
 * starts full of sentinels (key -inf, id INT32_MAX) that every real row beats,
 * because real ids are < INT32_MAX. Keys are the scores for a top list and the
 * negated scores for a bottom list, NaN mapped to -inf (ranks last). */

typedef struct {
    double key;
    double score; /* the score as reported (NaN stays NaN) */
    int32_t id;
} heap_item;

static int better(double ka, int32_t ia, double kb, int32_t ib) { return ka > kb || (ka == kb && ia < ib); }

static void heap_init(heap_item *h, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        h[i].key = -INFINITY;
        h[i].score = NAN;
        h[i].id = INT32_MAX;
    }
}

/* Replaces the root by (key, score, id) and restores the heap property
 * (every parent worse than its children). */
static void heap_replace_root(heap_item *h, size_t k, double key, double score, int32_t id)
{
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        double wk = key;
        int32_t wi = id;
        if (l < k && better(wk, wi, h[l].key, h[l].id)) {
            w = l;
            wk = h[l].key;
            wi = h[l].id;
        }
        if (r < k && better(wk, wi, h[r].key, h[r].id)) w = r;
        if (w == i) break;
        h[i] = h[w];
        i = w;
    }
    h[i].key = key;
    h[i].score = score;
    h[i].id = id;
}

static inline void heap_offer(heap_item *h, size_t k, double key, double score, int32_t id)
{
    if (better(key, id, h[0].key, h[0].id)) heap_replace_root(h, k, key, score, id);
}

static int cmp_best_first(const void *a, const void *b)
{
    const heap_item *x = a, *y = b;
    if (better(x->key, x->id, y->key, y->id)) return -1;
    if (better(y->key, y->id, x->key, x->id)) return 1;
    return 0;
}

/* Writes the heap's items into out (k) best first. Reorders h. */
static void heap_emit(heap_item *h, size_t k, topk_hit *out)
{
    qsort(h, k, sizeof *h, cmp_best_first);
    for (size_t i = 0; i < k; i++) {
        out[i].id = h[i].id;
        out[i].score = h[i].score;
    }
}

static double top_key(double s) { return isnan(s) ? -INFINITY : s; }
static double bottom_key(double s) { return isnan(s) ? -INFINITY : -s; }

/* ---- Scanning one query's scores for one block of rows ---- */

/* Offers scores s (b) of rows id0 .. id0+b-1 to the top heap. The float
 * threshold test passes every candidate that could enter (ties included, NaN
 * included), so the exact test in heap_offer decides. */
static void scan_top(heap_item *h, size_t k, const float *s, size_t b, int32_t id0)
{
    float thr = (float)h[0].key; /* exact: keys come from floats or -inf */
    for (size_t j = 0; j < b; j++) {
        float v = s[j];
        if (v >= thr || v != v) {
            heap_offer(h, k, top_key(v), v, id0 + (int32_t)j);
            thr = (float)h[0].key;
        }
    }
}

static void scan_bottom(heap_item *h, size_t k, const float *s, size_t b, int32_t id0)
{
    float thr = (float)-h[0].key; /* candidates need v <= thr */
    for (size_t j = 0; j < b; j++) {
        float v = s[j];
        if (v <= thr || v != v) {
            heap_offer(h, k, bottom_key(v), v, id0 + (int32_t)j);
            thr = (float)-h[0].key;
        }
    }
}

static int check_args(const void *M, size_t n, size_t d, const void *Q, size_t nq, size_t k,
                      const topk_hit *top, const topk_hit *bottom)
{
    if (!M || !Q || (!top && !bottom)) return TW_EINVAL;
    if (k < 1 || k > n || n >= (size_t)INT32_MAX) return TW_EINVAL;
    if (d < 1 || d > (size_t)INT_MAX || nq > (size_t)INT_MAX) return TW_EINVAL;
    if (nq > SIZE_MAX / k / sizeof(heap_item) / 2) return TW_EINVAL;
    return TW_OK;
}

/* Scratch target for one GEMM block of scores (nq x b floats). */
#define TOPK_SCRATCH_BYTES ((size_t)8 << 20)

int topk_rows(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
              topk_hit *bottom)
{
    // M (n, d), Q (nq, d); top, bottom (nq, k)
    int rc = check_args(M, n, d, Q, nq, k, top, bottom);
    if (rc) return rc;
    if (nq == 0) return TW_OK;

    size_t b = TOPK_SCRATCH_BYTES / sizeof(float) / nq;
    b = b / 16 * 16;
    if (b < 16) b = 16;
    if (b > n) b = n;
    if (b > (size_t)INT_MAX / nq) return TW_EINVAL;

    float *S = malloc(nq * b * sizeof(float)); // (nq, b) scores of one block
    heap_item *ht = top ? malloc(nq * k * sizeof(heap_item)) : NULL;
    heap_item *hb = bottom ? malloc(nq * k * sizeof(heap_item)) : NULL;
    if (!S || (top && !ht) || (bottom && !hb)) {
        free(S);
        free(ht);
        free(hb);
        return TW_ENOMEM;
    }
    for (size_t i = 0; i < nq; i++) {
        if (ht) heap_init(ht + i * k, k);
        if (hb) heap_init(hb + i * k, k);
    }

    for (size_t j0 = 0; j0 < n; j0 += b) {
        size_t bj = n - j0 < b ? n - j0 : b;
        // S (nq, bj) = Q (nq, d) . M[j0 .. j0+bj)^T (d, bj)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)bj, (int)d, 1.0f, Q, (int)d,
                    M + j0 * d, (int)d, 0.0f, S, (int)bj);
        for (size_t i = 0; i < nq; i++) {
            const float *s = S + i * bj;
            if (ht) scan_top(ht + i * k, k, s, bj, (int32_t)j0);
            if (hb) scan_bottom(hb + i * k, k, s, bj, (int32_t)j0);
        }
    }

    for (size_t i = 0; i < nq; i++) {
        if (ht) heap_emit(ht + i * k, k, top + i * k);
        if (hb) heap_emit(hb + i * k, k, bottom + i * k);
    }
    free(S);
    free(ht);
    free(hb);
    return TW_OK;
}

/* ---- Naive reference ---- */

typedef struct {
    double s;
    int32_t id;
} naive_item;

static int cmp_naive_top(const void *a, const void *b)
{
    const naive_item *x = a, *y = b;
    double kx = top_key(x->s), ky = top_key(y->s);
    if (kx > ky) return -1;
    if (kx < ky) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_naive_bottom(const void *a, const void *b)
{
    const naive_item *x = a, *y = b;
    double kx = isnan(x->s) ? INFINITY : x->s;
    double ky = isnan(y->s) ? INFINITY : y->s;
    if (kx < ky) return -1;
    if (kx > ky) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

int topk_rows_naive(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
                    topk_hit *bottom)
{
    int rc = check_args(M, n, d, Q, nq, k, top, bottom);
    if (rc) return rc;
    naive_item *all = malloc(n * sizeof *all);
    if (!all) return TW_ENOMEM;
    for (size_t i = 0; i < nq; i++) {
        const float *q = Q + i * d;
        for (size_t j = 0; j < n; j++) {
            const float *m = M + j * d;
            double acc = 0.0;
            for (size_t t = 0; t < d; t++) acc += (double)q[t] * (double)m[t];
            all[j].s = acc;
            all[j].id = (int32_t)j;
        }
        if (top) {
            qsort(all, n, sizeof *all, cmp_naive_top);
            for (size_t t = 0; t < k; t++) {
                top[i * k + t].id = all[t].id;
                top[i * k + t].score = all[t].s;
            }
        }
        if (bottom) {
            qsort(all, n, sizeof *all, cmp_naive_bottom);
            for (size_t t = 0; t < k; t++) {
                bottom[i * k + t].id = all[t].id;
                bottom[i * k + t].score = all[t].s;
            }
        }
    }
    free(all);
    return TW_OK;
}

/* ---- Plain score vector ---- */

int topk_vec(const double *s, size_t n, size_t k, topk_hit *top, topk_hit *bottom)
{
    if (!s || (!top && !bottom)) return TW_EINVAL;
    if (k < 1 || k > n || n >= (size_t)INT32_MAX) return TW_EINVAL;
    heap_item *h = malloc(k * sizeof *h);
    if (!h) return TW_ENOMEM;
    if (top) {
        heap_init(h, k);
        for (size_t j = 0; j < n; j++) heap_offer(h, k, top_key(s[j]), s[j], (int32_t)j);
        heap_emit(h, k, top);
    }
    if (bottom) {
        heap_init(h, k);
        for (size_t j = 0; j < n; j++) heap_offer(h, k, bottom_key(s[j]), s[j], (int32_t)j);
        heap_emit(h, k, bottom);
    }
    free(h);
    return TW_OK;
}
