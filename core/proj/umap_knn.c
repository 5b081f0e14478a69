/* UMAP, part 1: exact kNN, smooth kNN distances, the fuzzy simplicial set. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/par.h"
#include "core/proj/umap_internal.h"

/* Extra candidates re-measured exactly, beyond k, against rounding in
 * |x|^2 + |y|^2 - 2 x.y. */
#define KNN_MARGIN 8
/* Upper bound on the floats of one sgemm block of query rows. */
#define KNN_BLOCK_FLOATS ((size_t)1 << 22)

/* umap-learn's constants (umap_.py). */
#define SMOOTH_K_TOLERANCE 1e-5
#define MIN_K_DIST_SCALE   1e-3
#define SMOOTH_K_ITERS     64

/* Squared distance in double: four interleaved partial sums (a fixed
 * order, so still deterministic) instead of one chain of dependent adds,
 * which made this latency-bound: the re-measuring of the candidates took
 * as long as half the sgemm. */
static double dist2_double(const float *a, const float *b, size_t dim)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t t = 0;
    for (; t + 4 <= dim; t += 4) {
        double d0 = (double)a[t] - (double)b[t];
        double d1 = (double)a[t + 1] - (double)b[t + 1];
        double d2 = (double)a[t + 2] - (double)b[t + 2];
        double d3 = (double)a[t + 3] - (double)b[t + 3];
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; t < dim; t++) {
        double d = (double)a[t] - (double)b[t];
        s0 += d * d;
    }
    return (s0 + s1) + (s2 + s3);
}

typedef struct {
    double d;
    int32_t j;
} knn_cand;

/* Ascending by distance, then by index. */
static int knn_cand_cmp(const void *pa, const void *pb)
{
    const knn_cand *a = pa, *b = pb;
    if (a->d < b->d) return -1;
    if (a->d > b->d) return 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* Inserts (v, j) into the ascending list val/idx of *cnt entries, capacity
 * cap, dropping the last when full. */
static void topk_insert(float *val, int32_t *idx, size_t *cnt, size_t cap, float v, int32_t j)
{
    size_t pos = *cnt < cap ? *cnt : cap - 1;
    if (*cnt < cap) (*cnt)++;
    while (pos > 0 && val[pos - 1] > v) {
        val[pos] = val[pos - 1];
        idx[pos] = idx[pos - 1];
        pos--;
    }
    val[pos] = v;
    idx[pos] = j;
}

/* Exact distances of the candidates of query row qi, sorted; the best k go
 * to idx/dist. The point itself (same_set) is first with distance 0. */
static void knn_finish_row(const float *x, const float *qrow, size_t dim, size_t k, int same_set, int32_t qi,
                           const int32_t *cidx, size_t cnt, knn_cand *tmp, int32_t *idx, float *dist)
{
    for (size_t c = 0; c < cnt; c++) {
        tmp[c].j = cidx[c];
        if (same_set && cidx[c] == qi)
            tmp[c].d = -1.0; /* sorts first */
        else
            tmp[c].d = sqrt(dist2_double(qrow, x + (size_t)cidx[c] * dim, dim));
    }
    qsort(tmp, cnt, sizeof *tmp, knn_cand_cmp);
    for (size_t c = 0; c < k; c++) {
        idx[c] = tmp[c].j;
        dist[c] = tmp[c].d < 0.0 ? 0.0f : (float)tmp[c].d;
    }
}

/* Squared norms of the rows of x (n, dim), accumulated in double. */
static void row_norms(const float *x, size_t n, size_t dim, float *xn)
{
    for (size_t j = 0; j < n; j++) {
        double s = 0.0;
        for (size_t t = 0; t < dim; t++) s += (double)x[j * dim + t] * x[j * dim + t];
        xn[j] = (float)s;
    }
}

/* Candidate lists: cap entries per row, ascending, with the current worst
 * value of each full list in thr (FLT_MAX while not full). */
typedef struct {
    size_t cap;
    float *val;   /* (rows, cap) */
    int32_t *idx; /* (rows, cap) */
    size_t *cnt;  /* (rows) */
    float *thr;   /* (rows) */
} cand_lists;

static void cand_offer(cand_lists *c, size_t row, float v, int32_t j)
{
    if (!(v < c->thr[row])) return;
    topk_insert(c->val + row * c->cap, c->idx + row * c->cap, &c->cnt[row], c->cap, v, j);
    if (c->cnt[row] == c->cap) c->thr[row] = c->val[row * c->cap + c->cap - 1];
}

/* The scan of one same-set panel: gram (rows, cols) = -2 x[i0..] x[i0..n)^T.
 * Direct: row i0 + r's list takes every column t (but itself); transposed:
 * row i0 + r is a candidate of every later row's list (columns t >= rows).
 * The two touch disjoint lists, and a list gets its offers in the same
 * order whichever part scans it, so splitting the work changes nothing. */
typedef struct {
    cand_lists *c;
    const float *gram, *xn;
    size_t i0, rows, cols;
    int direct_parts; /* parts [0, direct_parts) split the rows' direct pass */
    int parts;
} panel_scan;

/* Scores are tested 16 at a time before any list is touched (most chunks
 * hold no candidate; the loop becomes vector compares). */
#define KNN_CHUNK 16

static void scan_direct(const panel_scan *p, size_t r)
{
    cand_lists *c = p->c;
    const float *g = p->gram + r * p->cols, *xn = p->xn + p->i0;
    const size_t i = p->i0 + r, cols = p->cols;
    size_t t = 0;
    for (; t + KNN_CHUNK <= cols; t += KNN_CHUNK) {
        const float thr = c->thr[i];
        int any = 0;
        for (size_t u = 0; u < KNN_CHUNK; u++) any |= g[t + u] + xn[t + u] < thr;
        if (!any) continue;
        for (size_t u = t; u < t + KNN_CHUNK; u++) {
            float v = g[u] + xn[u];
            if (v < c->thr[i] && u != r) cand_offer(c, i, v, (int32_t)(p->i0 + u));
        }
    }
    for (; t < cols; t++) {
        float v = g[t] + xn[t];
        if (v < c->thr[i] && t != r) cand_offer(c, i, v, (int32_t)(p->i0 + t));
    }
}

static void scan_transposed(const panel_scan *p, size_t r, size_t t0, size_t t1)
{
    cand_lists *c = p->c;
    const float *g = p->gram + r * p->cols, *thr = c->thr + p->i0;
    const size_t i = p->i0 + r;
    const float xi = p->xn[i];
    size_t t = t0;
    for (; t + KNN_CHUNK <= t1; t += KNN_CHUNK) {
        int any = 0;
        for (size_t u = 0; u < KNN_CHUNK; u++) any |= g[t + u] + xi < thr[t + u];
        if (!any) continue;
        for (size_t u = t; u < t + KNN_CHUNK; u++) {
            float v = g[u] + xi;
            if (v < thr[u]) cand_offer(c, p->i0 + u, v, (int32_t)i);
        }
    }
    for (; t < t1; t++) {
        float v = g[t] + xi;
        if (v < thr[t]) cand_offer(c, p->i0 + t, v, (int32_t)i);
    }
}

static void panel_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)lo;
    (void)hi;
    const panel_scan *p = ctx;
    const int nd = p->direct_parts, nt = p->parts - nd;
    if (part < nd) {
        for (size_t r = p->rows * (size_t)part / (size_t)nd; r < p->rows * (size_t)(part + 1) / (size_t)nd;
             r++)
            scan_direct(p, r);
        if (nt > 0) return;
    }
    /* transposed: this part's share of the later columns, every row in order */
    const int tp = nt > 0 ? part - nd : 0, tn = nt > 0 ? nt : 1;
    const size_t span = p->cols - p->rows;
    const size_t t0 = p->rows + span * (size_t)tp / (size_t)tn,
                 t1 = p->rows + span * (size_t)(tp + 1) / (size_t)tn;
    for (size_t r = 0; r < p->rows; r++) scan_transposed(p, r, t0, t1);
}

/* The scan of one panel of query rows against every row of x (not the same
 * set): gram (rows, n) = -2 q[i0..] x^T. Each row's list and answer are its
 * own, so the rows are split over the parts, each with its own scratch. */
typedef struct {
    cand_lists *c;
    const float *gram, *xn, *x, *q;
    size_t n, dim, k, i0;
    knn_cand *tmp; /* (parts, cap) */
    int32_t *idx;
    float *dist;
} query_scan;

static void query_part(void *ctx, size_t lo, size_t hi, int part)
{
    const query_scan *p = ctx;
    cand_lists *c = p->c;
    knn_cand *tmp = p->tmp + (size_t)part * c->cap;
    for (size_t r = lo; r < hi; r++) {
        const float *g = p->gram + r * p->n;
        c->cnt[r] = 0;
        c->thr[r] = FLT_MAX;
        for (size_t j = 0; j < p->n; j++) cand_offer(c, r, g[j] + p->xn[j], (int32_t)j);
        const size_t qi = p->i0 + r;
        knn_finish_row(p->x, p->q + qi * p->dim, p->dim, p->k, 0, -1, c->idx + r * c->cap, c->cnt[r], tmp,
                       p->idx + qi * p->k, p->dist + qi * p->k);
    }
}

/* Rows per sgemm panel for a panel width of n columns. */
static size_t panel_rows(size_t n, size_t m)
{
    size_t bs = KNN_BLOCK_FLOATS / n;
    if (bs < 16) bs = 16;
    if (bs > 512) bs = 512;
    return bs > m ? m : bs;
}

int umap_knn(const float *x, size_t n, const float *q, size_t m, size_t dim, size_t k, int same_set,
             int32_t *idx, float *dist, umap_progress *prog, char *err, size_t errlen)
{
    if (!x || !q || !idx || !dist || n == 0 || dim == 0 || k == 0 || k > n || n > INT32_MAX ||
        m > INT32_MAX || (same_set && (m != n || q != x))) {
        umap_set_err(err, errlen, "umap_knn: bad arguments (n=%zu m=%zu k=%zu)", n, m, k);
        return TW_EINVAL;
    }
    const size_t cap = k + KNN_MARGIN < n ? k + KNN_MARGIN : n;
    const size_t bs = panel_rows(n, m);
    cand_lists c = {cap, NULL, NULL, NULL, NULL};
    float *xn = malloc(n * sizeof *xn);
    float *gram = malloc(bs * n * sizeof *gram);
    knn_cand *tmp = malloc(NN_MAX_PARTS * cap * sizeof *tmp); /* a part's scratch each */
    /* same set: lists for every row, filled over all panels; otherwise one
     * panel's rows at a time */
    const size_t lists = same_set ? n : bs;
    c.val = malloc(lists * cap * sizeof *c.val);
    c.idx = malloc(lists * cap * sizeof *c.idx);
    c.cnt = malloc(lists * sizeof *c.cnt);
    c.thr = malloc(lists * sizeof *c.thr);
    int rc = TW_OK;
    if (!xn || !gram || !tmp || !c.val || !c.idx || !c.cnt || !c.thr) {
        umap_set_err(err, errlen, "umap_knn: out of memory (%zu x %zu block)", bs, n);
        rc = TW_ENOMEM;
        goto done;
    }
    row_norms(x, n, dim, xn);
    /* progress in units of computed distances (the same-set path computes
     * the upper triangle of panels only) */
    long total = 0;
    for (size_t i0 = 0; i0 < m; i0 += bs)
        total += (long)((m - i0 < bs ? m - i0 : bs) * (same_set ? n - i0 : n) / 1024);
    umap_progress_set(prog, UMAP_STAGE_KNN, 0, total);
    long done_units = 0;
    if (same_set)
        for (size_t i = 0; i < n; i++) {
            c.cnt[i] = 0;
            c.thr[i] = FLT_MAX;
            cand_offer(&c, i, -FLT_MAX, (int32_t)i); /* itself, always first */
        }
    for (size_t i0 = 0; i0 < m; i0 += bs) {
        if (umap_cancelled(prog)) {
            umap_set_err(err, errlen, "umap_knn: cancelled");
            rc = TW_ECANCELED;
            goto done;
        }
        const size_t rows = m - i0 < bs ? m - i0 : bs;
        /* |q|^2 is constant along a row: ranking row r needs only
         * |x_j|^2 - 2 q_r.x_j */
        if (same_set) {
            /* gram (rows, cols) = -2 x[i0..] x[i0..n)^T: the panel's rows
             * against themselves and every later row; earlier rows reach
             * these lists through the transposed pass of their panels */
            const size_t cols = n - i0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)cols, (int)dim, -2.0f,
                        x + i0 * dim, (int)dim, x + i0 * dim, (int)dim, 0.0f, gram, (int)cols);
            int parts = nn_parts();
            panel_scan ps = {&c, gram, xn, i0, rows, cols, parts > 1 ? parts / 2 : 1, parts};
            nn_parallel_rows((size_t)parts, parts, panel_part, &ps);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)dim, -2.0f,
                        q + i0 * dim, (int)dim, x, (int)dim, 0.0f, gram, (int)n);
            query_scan qs = {&c, gram, xn, x, q, n, dim, k, i0, tmp, idx, dist};
            nn_parallel_rows(rows, nn_parts(), query_part, &qs);
        }
        done_units += (long)(rows * (same_set ? n - i0 : n) / 1024);
        if (prog) atomic_store(&prog->done, done_units);
    }
    if (same_set)
        for (size_t i = 0; i < n; i++)
            knn_finish_row(x, x + i * dim, dim, k, 1, (int32_t)i, c.idx + i * cap, c.cnt[i], tmp, idx + i * k,
                           dist + i * k);
done:
    free(xn);
    free(gram);
    free(tmp);
    free(c.val);
    free(c.idx);
    free(c.cnt);
    free(c.thr);
    return rc;
}

void umap_knn_naive(const float *x, size_t n, const float *q, size_t m, size_t dim, size_t k, int same_set,
                    int32_t *idx, float *dist)
{
    knn_cand *all = malloc(n * sizeof *all);
    if (!all) return;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            all[j].j = (int32_t)j;
            all[j].d = (same_set && j == i) ? -1.0 : sqrt(dist2_double(q + i * dim, x + j * dim, dim));
        }
        qsort(all, n, sizeof *all, knn_cand_cmp);
        for (size_t c = 0; c < k; c++) {
            idx[i * k + c] = all[c].j;
            dist[i * k + c] = all[c].d < 0.0 ? 0.0f : (float)all[c].d;
        }
    }
    free(all);
}

void umap_smooth_knn_dist(const float *dist, size_t n, size_t k, float local_connectivity, float bandwidth,
                          float *sigma, float *rho)
{
    const double target = log2((double)k) * bandwidth;
    double mean_all = 0.0;
    for (size_t t = 0; t < n * k; t++) mean_all += dist[t];
    mean_all /= (double)(n * k);
    const size_t index = (size_t)floor(local_connectivity);
    const double interp = local_connectivity - (double)index;

    for (size_t i = 0; i < n; i++) {
        const float *d = dist + i * k;
        /* rho: the index-th non-zero distance, interpolated */
        size_t nz = 0, first_nz = k;
        double max_nz = 0.0;
        for (size_t j = 0; j < k; j++)
            if (d[j] > 0.0f) {
                if (nz == 0) first_nz = j;
                nz++;
                if (d[j] > max_nz) max_nz = d[j];
            }
        double r = 0.0;
        if ((double)nz >= local_connectivity) {
            /* the p-th non-zero (0-based) is d[first_nz + p]: d ascends */
            if (index > 0) {
                r = d[first_nz + index - 1];
                if (interp > SMOOTH_K_TOLERANCE && first_nz + index < k)
                    r += interp * (d[first_nz + index] - d[first_nz + index - 1]);
            } else if (nz > 0) {
                r = interp * d[first_nz];
            }
        } else if (nz > 0) {
            r = max_nz;
        }

        double lo = 0.0, hi = INFINITY, mid = 1.0;
        for (int it = 0; it < SMOOTH_K_ITERS; it++) {
            double psum = 0.0;
            for (size_t j = 1; j < k; j++) {
                double e = d[j] - r;
                psum += e > 0.0 ? exp(-(e / mid)) : 1.0;
            }
            if (fabs(psum - target) < SMOOTH_K_TOLERANCE) break;
            if (psum > target) {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                mid = isinf(hi) ? mid * 2.0 : (lo + hi) / 2.0;
            }
        }
        if (r > 0.0) {
            double mean_i = 0.0;
            for (size_t j = 0; j < k; j++) mean_i += d[j];
            mean_i /= (double)k;
            if (mid < MIN_K_DIST_SCALE * mean_i) mid = MIN_K_DIST_SCALE * mean_i;
        } else if (mid < MIN_K_DIST_SCALE * mean_all) {
            mid = MIN_K_DIST_SCALE * mean_all;
        }
        sigma[i] = (float)mid;
        rho[i] = (float)r;
    }
}

void umap_graph_free(umap_graph *g)
{
    if (!g) return;
    free(g->indptr);
    free(g->indices);
    free(g->data);
    memset(g, 0, sizeof *g);
}

typedef struct {
    int32_t col;
    float val;
} graph_entry;

static int graph_entry_cmp(const void *pa, const void *pb)
{
    const graph_entry *a = pa, *b = pb;
    return (a->col > b->col) - (a->col < b->col);
}

/* Value of A[i, j] in the row-sorted k-wide membership table, 0 if absent. */
static float row_lookup(const graph_entry *rows, const size_t *len, size_t k, size_t i, int32_t j)
{
    const graph_entry *r = rows + i * k;
    size_t lo = 0, hi = len[i];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r[mid].col < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < len[i] && r[lo].col == j) ? r[lo].val : 0.0f;
}

int umap_fuzzy_graph(const int32_t *idx, const float *dist, size_t n, size_t k, const float *sigma,
                     const float *rho, float mix_ratio, umap_graph *g, char *err, size_t errlen)
{
    memset(g, 0, sizeof *g);
    if (!idx || !dist || !sigma || !rho || n == 0 || k == 0 || n > INT32_MAX) {
        umap_set_err(err, errlen, "umap_fuzzy_graph: bad arguments");
        return TW_EINVAL;
    }
    /* A: the local fuzzy sets, one sorted row of at most k entries each */
    graph_entry *a = malloc(n * k * sizeof *a);
    size_t *alen = calloc(n, sizeof *alen);
    size_t *count = calloc(n + 1, sizeof *count);
    size_t *fill = NULL;
    graph_entry *out = NULL;
    int rc = TW_ENOMEM;
    if (!a || !alen || !count) goto fail;
    for (size_t i = 0; i < n; i++) {
        graph_entry *r = a + i * k;
        size_t len = 0;
        for (size_t j = 0; j < k; j++) {
            int32_t c = idx[i * k + j];
            if (c < 0 || (size_t)c >= n) {
                umap_set_err(err, errlen, "umap_fuzzy_graph: neighbour %d of row %zu out of range", (int)c,
                             i);
                rc = TW_EINVAL;
                goto fail;
            }
            if ((size_t)c == i) continue;
            double e = (double)dist[i * k + j] - rho[i];
            float v = (e <= 0.0 || sigma[i] == 0.0f) ? 1.0f : (float)exp(-(e / sigma[i]));
            if (v > 0.0f) {
                r[len].col = c;
                r[len].val = v;
                len++;
            }
        }
        qsort(r, len, sizeof *r, graph_entry_cmp);
        /* a repeated neighbour would be a kNN bug; keep its first entry */
        size_t w = 0;
        for (size_t t = 0; t < len; t++)
            if (w == 0 || r[w - 1].col != r[t].col) r[w++] = r[t];
        alen[i] = w;
    }
    /* union: (i,j) for every entry of A, and (j,i) too when A[j,i] is 0 */
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < alen[i]; t++) {
            const graph_entry *e = a + i * k + t;
            float tv = row_lookup(a, alen, k, (size_t)e->col, (int32_t)i);
            count[i + 1]++;
            if (tv == 0.0f) count[e->col + 1]++;
        }
    for (size_t i = 0; i < n; i++) count[i + 1] += count[i];
    size_t cap = count[n];
    out = malloc((cap ? cap : 1) * sizeof *out);
    fill = malloc(n * sizeof *fill);
    if (!out || !fill) goto fail;
    memcpy(fill, count, n * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < alen[i]; t++) {
            const graph_entry *e = a + i * k + t;
            double v = e->val;
            double tv = row_lookup(a, alen, k, (size_t)e->col, (int32_t)i);
            double prod = v * tv;
            float w = (float)(mix_ratio * (v + tv - prod) + (1.0 - mix_ratio) * prod);
            out[fill[i]++] = (graph_entry){e->col, w};
            if (tv == 0.0) out[fill[e->col]++] = (graph_entry){(int32_t)i, w};
        }
    /* sort rows, drop zeros, pack into CSR */
    g->n = n;
    g->indptr = malloc((n + 1) * sizeof *g->indptr);
    g->indices = malloc((cap ? cap : 1) * sizeof *g->indices);
    g->data = malloc((cap ? cap : 1) * sizeof *g->data);
    if (!g->indptr || !g->indices || !g->data) goto fail;
    size_t nnz = 0;
    g->indptr[0] = 0;
    for (size_t i = 0; i < n; i++) {
        graph_entry *r = out + count[i];
        size_t len = count[i + 1] - count[i];
        qsort(r, len, sizeof *r, graph_entry_cmp);
        for (size_t t = 0; t < len; t++)
            if (r[t].val > 0.0f) {
                g->indices[nnz] = r[t].col;
                g->data[nnz] = r[t].val;
                nnz++;
            }
        g->indptr[i + 1] = nnz;
    }
    g->nnz = nnz;
    rc = TW_OK;
fail:
    if (rc == TW_ENOMEM) umap_set_err(err, errlen, "umap_fuzzy_graph: out of memory (n=%zu k=%zu)", n, k);
    if (rc != TW_OK) umap_graph_free(g);
    free(a);
    free(alen);
    free(count);
    free(fill);
    free(out);
    return rc;
}

size_t umap_graph_components(const umap_graph *g, int32_t *label)
{
    int32_t *queue = malloc((g->n ? g->n : 1) * sizeof *queue);
    if (!queue) return 0;
    for (size_t i = 0; i < g->n; i++) label[i] = -1;
    size_t count = 0;
    for (size_t s = 0; s < g->n; s++) {
        if (label[s] >= 0) continue;
        size_t head = 0, tail = 0;
        queue[tail++] = (int32_t)s;
        label[s] = (int32_t)count;
        while (head < tail) {
            size_t v = (size_t)queue[head++];
            for (size_t t = g->indptr[v]; t < g->indptr[v + 1]; t++) {
                int32_t u = g->indices[t];
                if (label[u] < 0) {
                    label[u] = (int32_t)count;
                    queue[tail++] = u;
                }
            }
        }
        count++;
    }
    free(queue);
    return count;
}
