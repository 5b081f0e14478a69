/* Faithfulness of a layout: see faith.h and docs/MATH.md §15. */
#include "core/proj/faith.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "core/nn/par.h"
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

/* The rows [lo, hi) of one dgemm block of faith_trust_cont: each row's
 * neighbours in both spaces and its share of the two sums. The sums are of
 * integers (ranks minus K), exact in double, so the split over parts does
 * not change them. */
typedef struct {
    double *G; /* (bi, m) the block's Gram rows, made squared distances in place */
    const double *nrm;
    const float *Y;
    size_t m, e, K, i0;
    double *dy;      /* (parts, m) */
    size_t *nx, *ny; /* (parts, K) each */
    double sum_t[NN_MAX_PARTS], sum_c[NN_MAX_PARTS];
} trust_scan;

static void trust_part(void *ctx, size_t lo, size_t hi, int part)
{
    trust_scan *p = ctx;
    const size_t m = p->m, e = p->e, K = p->K;
    double *dy = p->dy + (size_t)part * m;
    size_t *nx = p->nx + (size_t)part * K, *ny = p->ny + (size_t)part * K;
    double st = 0, sc = 0;
    for (size_t r = lo; r < hi; r++) {
        const size_t i = p->i0 + r;
        double *dx = p->G + r * m; /* squared distances from i, in place */
        for (size_t j = 0; j < m; j++) {
            double v = p->nrm[i] + p->nrm[j] - 2.0 * dx[j];
            dx[j] = v > 0 ? v : 0;
        }
        for (size_t j = 0; j < m; j++) {
            double s = 0;
            for (size_t t = 0; t < e; t++) {
                double u = (double)p->Y[i * e + t] - (double)p->Y[j * e + t];
                s += u * u;
            }
            dy[j] = s;
        }
        nearest(dx, m, i, K, nx);
        nearest(dy, m, i, K, ny);
        for (size_t t = 0; t < K; t++) {
            if (!member(nx, K, ny[t])) st += (double)(rank_of(dx, m, i, ny[t]) - K);
            if (!member(ny, K, nx[t])) sc += (double)(rank_of(dy, m, i, nx[t]) - K);
        }
    }
    p->sum_t[part] += st;
    p->sum_c[part] += sc;
}

int faith_trust_cont(const float *X, size_t m, size_t d, const float *Y, size_t e, size_t K, double *trust,
                     double *cont, const tw_cancel *cancel)
{
    if (!X || !Y || !trust || !cont || K < 1 || 2 * K >= m || d < 1 || e < 1 || m > (size_t)INT_MAX ||
        d > (size_t)INT_MAX)
        return TW_EINVAL;
    int parts = nn_parts();
    double *xd = malloc(m * d * sizeof *xd), *nrm = malloc(m * sizeof *nrm);
    double *G = malloc(FAITH_BLOCK * m * sizeof *G), *dy = malloc((size_t)parts * m * sizeof *dy);
    size_t *nx = malloc((size_t)parts * K * sizeof *nx), *ny = malloc((size_t)parts * K * sizeof *ny);
    int rc = TW_OK;
    if (!xd || !nrm || !G || !dy || !nx || !ny) {
        rc = TW_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m * d; i++) xd[i] = X[i];
    for (size_t i = 0; i < m; i++) {
        double s = 0;
        for (size_t t = 0; t < d; t++) s += xd[i * d + t] * xd[i * d + t];
        nrm[i] = s;
    }
    trust_scan ts = {.G = G, .nrm = nrm, .Y = Y, .m = m, .e = e, .K = K, .dy = dy, .nx = nx, .ny = ny};
    for (size_t i0 = 0; i0 < m; i0 += FAITH_BLOCK) {
        if ((rc = tw_cancel_check(cancel)) != TW_OK) goto out;
        size_t bi = m - i0 < FAITH_BLOCK ? m - i0 : FAITH_BLOCK;
        // G (bi, m) = X[i0 .. i0+bi) X^T
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bi, (int)m, (int)d, 1.0, xd + i0 * d,
                    (int)d, xd, (int)d, 0.0, G, (int)m);
        ts.i0 = i0;
        nn_parallel_rows(bi, parts, trust_part, &ts);
    }
    double sum_t = 0, sum_c = 0;
    for (int t = 0; t < NN_MAX_PARTS; t++) {
        sum_t += ts.sum_t[t];
        sum_c += ts.sum_c[t];
    }
    double norm = 2.0 / ((double)m * (double)K * (2.0 * (double)m - 3.0 * (double)K - 1.0));
    *trust = 1.0 - norm * sum_t;
    *cont = 1.0 - norm * sum_c;
out:
    free(xd);
    free(nrm);
    free(G);
    free(dy);
    free(nx);
    free(ny);
    return rc;
}

/* A k-d tree over 3D layout points, for the K nearest of a new point
 * without measuring all n: node t (children 2t + 1 and 2t + 2) holds the
 * points order[b, e) of its range, split at the middle of the range along
 * the axis where its box is widest, with the bounding box of its points.
 * The shape follows from n alone (a range of more than KD_LEAF points is
 * halved), so no node stores its range. A query far outside the cloud
 * (the trajectory's late states under PCA) is answered in a few leaves,
 * where the uniform grid this replaces searched shell after shell. */
#define TREE_DIM 3
#define KD_LEAF 8
struct faith_tree {
    size_t n, nodes;
    float (*box)[2][TREE_DIM]; /* (nodes) lo, hi of each node's points */
    int32_t *order;            /* (n) point indices, each node's a contiguous range */
};
typedef struct faith_tree layout_tree;

static size_t kd_nodes(size_t n)
{
    /* the heap-numbered nodes of the shape: ranges halved down to KD_LEAF */
    size_t levels = 1;
    for (size_t m = n; m > KD_LEAF; m = (m + 1) / 2) levels++;
    return ((size_t)1 << levels) - 1;
}

/* Reorders order[b, e) so that the m-th by coordinate a (ties by index:
 * a strict order) is at m, those before it smaller, those after larger
 * (quickselect, the middle of three as pivot, Lomuto's partition: the
 * pivot lands where it belongs and the range shrinks past it). */
static void kd_select(int32_t *order, const float *Y, size_t b, size_t e, size_t m, int a)
{
#define KD_LESS(i, j) (Y[(size_t)(i) * TREE_DIM + a] < Y[(size_t)(j) * TREE_DIM + a] || \
                       (Y[(size_t)(i) * TREE_DIM + a] == Y[(size_t)(j) * TREE_DIM + a] && (i) < (j)))
#define KD_SWAP(p, q) do { int32_t t_ = order[p]; order[p] = order[q]; order[q] = t_; } while (0)
    while (e - b > 1) {
        size_t mid = b + (e - b) / 2, last = e - 1, pv;
        int32_t x = order[b], y = order[mid], z = order[last];
        if (KD_LESS(x, y))
            pv = KD_LESS(y, z) ? mid : KD_LESS(x, z) ? last : b;
        else
            pv = KD_LESS(x, z) ? b : KD_LESS(y, z) ? last : mid;
        KD_SWAP(pv, last);
        const int32_t piv = order[last];
        size_t store = b;
        for (size_t i = b; i < last; i++)
            if (KD_LESS(order[i], piv)) {
                KD_SWAP(i, store);
                store++;
            }
        KD_SWAP(store, last);
        if (m == store) break;
        if (m < store)
            e = store;
        else
            b = store + 1;
    }
#undef KD_SWAP
#undef KD_LESS
}

static void kd_build(layout_tree *t, const float *Y, size_t node, size_t b, size_t e)
{
    float(*bx)[TREE_DIM] = t->box[node];
    for (int a = 0; a < TREE_DIM; a++) bx[0][a] = bx[1][a] = Y[(size_t)t->order[b] * TREE_DIM + a];
    for (size_t i = b + 1; i < e; i++)
        for (int a = 0; a < TREE_DIM; a++) {
            float v = Y[(size_t)t->order[i] * TREE_DIM + a];
            if (v < bx[0][a]) bx[0][a] = v;
            if (v > bx[1][a]) bx[1][a] = v;
        }
    if (e - b <= KD_LEAF) return;
    int w = 0;
    for (int a = 1; a < TREE_DIM; a++)
        if ((double)bx[1][a] - bx[0][a] > (double)bx[1][w] - bx[0][w]) w = a;
    size_t m = b + (e - b + 1) / 2;
    kd_select(t->order, Y, b, e, m, w);
    kd_build(t, Y, 2 * node + 1, b, m);
    kd_build(t, Y, 2 * node + 2, m, e);
}

/* The tree of Y (n, 3), or false when a coordinate is not finite (or
 * memory runs out): then the caller measures every point. */
static bool tree_build(layout_tree *t, const float *Y, size_t n)
{
    for (size_t j = 0; j < n * TREE_DIM; j++)
        if (!isfinite(Y[j])) return false;
    if (n == 0 || n > (size_t)INT32_MAX) return false;
    t->n = n;
    t->nodes = kd_nodes(n);
    t->box = malloc(t->nodes * sizeof *t->box);
    t->order = malloc(n * sizeof *t->order);
    if (!t->box || !t->order) return false;
    for (size_t j = 0; j < n; j++) t->order[j] = (int32_t)j;
    kd_build(t, Y, 0, 0, n);
    return true;
}

static void tree_free(layout_tree *t)
{
    free(t->box);
    free(t->order);
}

/* Whether a tree pays for itself: many more points than a query needs to
 * look at. */
static bool tree_pays(size_t n, size_t K) { return n >= 64 * K; }

faith_tree *faith_tree_new(const float *Y, size_t n)
{
    faith_tree *t = Y && tree_pays(n, FAITH_K) ? calloc(1, sizeof *t) : NULL;
    if (t && !tree_build(t, Y, n)) {
        tree_free(t);
        free(t);
        t = NULL;
    }
    return t;
}

void faith_tree_free(faith_tree *t)
{
    if (!t) return;
    tree_free(t);
    free(t);
}

/* The squared distance of the layout side, as faith_knn_overlap has always
 * measured it. */
static double dist_layout(const float *ay, const float *y, size_t e)
{
    double s = 0;
    for (size_t c = 0; c < e; c++) {
        double u = (double)ay[c] - (double)y[c];
        s += u * u;
    }
    return s;
}

/* Puts (d, j) into the list nn/nd of *h entries, nearest first in the
 * (distance, index) order, keeping at most K. */
static void best_push(size_t *nn, double *nd, size_t *h, size_t K, double d, size_t j)
{
    size_t c = *h;
    if (c == K) {
        if (!closer(d, j, nd[K - 1], nn[K - 1])) return;
        c--;
    } else {
        (*h)++;
    }
    for (; c > 0 && closer(d, j, nd[c - 1], nn[c - 1]); c--) {
        nn[c] = nn[c - 1];
        nd[c] = nd[c - 1];
    }
    nn[c] = j;
    nd[c] = d;
}

/* The squared distance from ay to node t's box, by dist_layout's
 * operations on the nearest coordinates of the box: rounding is monotone,
 * so it is at most dist_layout(ay, y) for every point y in the box. */
static double kd_gap(const layout_tree *t, size_t node, const float *ay)
{
    const float(*bx)[TREE_DIM] = t->box[node];
    double s = 0;
    for (int a = 0; a < TREE_DIM; a++) {
        float c = ay[a] < bx[0][a] ? bx[0][a] : ay[a] > bx[1][a] ? bx[1][a] : ay[a];
        double u = (double)ay[a] - (double)c;
        s += u * u;
    }
    return s;
}

typedef struct {
    const layout_tree *t;
    const float *Y, *ay;
    size_t K, h, *nn;
    double *nd;
} kd_query;

static void kd_search(kd_query *q, size_t node, size_t b, size_t e)
{
    if (e - b <= KD_LEAF) {
        for (size_t i = b; i < e; i++) {
            size_t j = (size_t)q->t->order[i];
            best_push(q->nn, q->nd, &q->h, q->K, dist_layout(q->ay, q->Y + j * TREE_DIM, TREE_DIM), j);
        }
        return;
    }
    size_t m = b + (e - b + 1) / 2, l = 2 * node + 1, r = l + 1;
    double gl = kd_gap(q->t, l, q->ay), gr = kd_gap(q->t, r, q->ay);
    /* a box whose gap equals the K-th distance may still hold a point
     * that ties it with a lower index: only a larger gap is skipped */
    if (gl <= gr) {
        if (q->h < q->K || gl <= q->nd[q->K - 1]) kd_search(q, l, b, m);
        if (q->h < q->K || gr <= q->nd[q->K - 1]) kd_search(q, r, m, e);
    } else {
        if (q->h < q->K || gr <= q->nd[q->K - 1]) kd_search(q, r, m, e);
        if (q->h < q->K || gl <= q->nd[q->K - 1]) kd_search(q, l, b, m);
    }
}

/* The K nearest points of Y to ay by the tree: the same set as nearest()
 * over every distance, in the same (distance, index) order. */
static void tree_nearest(const layout_tree *t, const float *Y, const float *ay, size_t K, size_t *nn,
                         double *nd)
{
    kd_query q = {.t = t, .Y = Y, .ay = ay, .K = K, .h = 0, .nn = nn, .nd = nd};
    kd_search(&q, 0, 0, t->n);
}

/* The layout side of faith_knn_overlap for queries [lo, hi): each
 * query's K nearest fitted points (by the tree when there is one, else
 * every distance in double), the share of the full space's. Each query is
 * its own, so they are split over parts, each with its scratch. */
typedef struct {
    const float *Y;
    size_t e, n;
    const float *qy;
    size_t K;
    const int32_t *ix;
    size_t ldix;             /* query i's full-space list at ix + i * ldix */
    double *dy;              /* (parts, n) */
    size_t *ny;              /* (parts, K) */
    const layout_tree *tree; /* NULL: every distance */
    double *frac;
} overlap_scan;

static void overlap_part(void *ctx, size_t lo, size_t hi, int part)
{
    const overlap_scan *p = ctx;
    const size_t n = p->n, e = p->e, K = p->K;
    double *dy = p->dy + (size_t)part * n;
    size_t *ny = p->ny + (size_t)part * K;
    for (size_t i = lo; i < hi; i++) {
        const float *ay = p->qy + i * e;
        bool finite = true;
        for (size_t c = 0; c < e; c++) finite = finite && isfinite(ay[c]);
        if (p->tree && finite) {
            tree_nearest(p->tree, p->Y, ay, K, ny, dy);
        } else {
            for (size_t j = 0; j < n; j++) dy[j] = dist_layout(ay, p->Y + j * e, e);
            nearest(dy, n, (size_t)-1, K, ny);
        }
        size_t both = 0;
        for (size_t t = 0; t < K; t++) both += (size_t)member(ny, K, (size_t)p->ix[i * p->ldix + t]);
        p->frac[i] = (double)both / (double)K;
    }
}

/* The layout side, scratch allocated: TW_OK or TW_ENOMEM. given: the
 * caller's tree of Y, or NULL (one is made for the call when it pays). */
static int overlap_layout(const float *Y, size_t n, size_t e, const float *qy, size_t m, size_t K,
                          const int32_t *ix, size_t ldix, double *frac, const faith_tree *given)
{
    int parts = nn_parts();
    double *dy = malloc((size_t)parts * n * sizeof *dy); /* a part's scratch each */
    size_t *ny = malloc((size_t)parts * K * sizeof *ny);
    int rc = dy && ny ? TW_OK : TW_ENOMEM;
    if (given && (e != TREE_DIM || given->n != n)) rc = TW_EINVAL;
    layout_tree tree = {0};
    const layout_tree *use = given;
    if (rc == TW_OK && !use && e == TREE_DIM && tree_pays(n, K) && tree_build(&tree, Y, n)) use = &tree;
    if (rc == TW_OK) {
        overlap_scan os = {Y, e, n, qy, K, ix, ldix, dy, ny, use, frac};
        nn_parallel_rows(m, parts, overlap_part, &os);
    }
    tree_free(&tree);
    free(dy);
    free(ny);
    return rc;
}

static bool overlap_args_ok(size_t n, size_t d, const float *Y, size_t e, const float *qy, size_t m, size_t K,
                            const double *frac)
{
    return Y && qy && frac && K >= 1 && K <= n && d >= 1 && e >= 1 && n <= (size_t)INT32_MAX &&
           m <= (size_t)INT32_MAX;
}

int faith_knn_overlap(const float *X, size_t n, size_t d, const float *Y, size_t e, const float *q,
                      const float *qy, size_t m, size_t K, double *frac, const faith_tree *tree)
{
    if (!X || !q || !overlap_args_ok(n, d, Y, e, qy, m, K, frac)) return TW_EINVAL;
    if (m == 0) return TW_OK;
    /* the full space: UMAP's exact kNN (float GEMM screening, the best
     * candidates measured again in double; docs/MATH.md §8.1 step 1) */
    int32_t *ix = malloc(m * K * sizeof *ix);
    float *dist = malloc(m * K * sizeof *dist);
    int rc = ix && dist ? TW_OK : TW_ENOMEM;
    char err[256];
    if (rc == TW_OK) rc = umap_knn(X, n, q, m, d, K, 0, ix, dist, NULL, err, sizeof err);
    if (rc == TW_OK) rc = overlap_layout(Y, n, e, qy, m, K, ix, K, frac, tree);
    free(ix);
    free(dist);
    return rc;
}

int faith_knn_overlap_given(size_t n, const float *Y, size_t e, const float *qy, size_t m, size_t K,
                            const int32_t *ix, size_t ldix, double *frac, const faith_tree *tree)
{
    if (!ix || ldix < K || !overlap_args_ok(n, 1, Y, e, qy, m, K, frac)) return TW_EINVAL;
    return m == 0 ? TW_OK : overlap_layout(Y, n, e, qy, m, K, ix, ldix, frac, tree);
}
