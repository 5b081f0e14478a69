/* UMAP, part 1: exact kNN, smooth kNN distances, the fuzzy simplicial set. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/scratch.h"
#include "core/nn/par.h"
#include "core/proj/umap_internal.h"

/* Extra candidates re-measured exactly, beyond k, against rounding in
 * |x|^2 + |y|^2 - 2 x.y. */
#define KNN_MARGIN 8
/* Upper bound on the floats of one sgemm block of query rows (new points
 * against the fitted rows). */
#define KNN_BLOCK_FLOATS ((size_t)1 << 22)
/* Tiles of a fit's product: row blocks of KNN_TILE_ROWS rows against
 * KNN_TILE_COLS columns at a time. Large enough that sgemm runs near its
 * peak and packs each operand once per 1.6 GFLOP, small enough (4 MiB)
 * that the scan reads a tile from the cache the sgemm just wrote it to. */
#define KNN_TILE_ROWS 512
#define KNN_TILE_COLS 2048

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

/* Puts c into the list l of *cnt entries (capacity cap), ascending by
 * distance then index, dropping the last when full. */
static void cand_push(knn_cand *l, size_t *cnt, size_t cap, knn_cand c)
{
    size_t pos = *cnt;
    if (pos == cap) {
        if (!(c.d < l[cap - 1].d || (c.d == l[cap - 1].d && c.j < l[cap - 1].j))) return;
        pos--;
    } else {
        (*cnt)++;
    }
    for (; pos > 0 && (l[pos - 1].d > c.d || (l[pos - 1].d == c.d && l[pos - 1].j > c.j)); pos--)
        l[pos] = l[pos - 1];
    l[pos] = c;
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
    size_t len = 0;
    for (size_t c = 0; c < cnt; c++) {
        double d = same_set && cidx[c] == qi ? -1.0 /* sorts first */
                                             : sqrt(dist2_double(qrow, x + (size_t)cidx[c] * dim, dim));
        cand_push(tmp, &len, cnt, (knn_cand){d, cidx[c]});
    }
    for (size_t c = 0; c < k; c++) {
        idx[c] = tmp[c].j;
        dist[c] = tmp[c].d < 0.0 ? 0.0f : (float)tmp[c].d;
    }
}

void umap_row_norms(const float *x, size_t n, size_t dim, float *xn)
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

/* Scores are tested 16 at a time before any list is touched (most chunks
 * hold no candidate; the loop becomes vector compares). */
#define KNN_CHUNK 16

/* Row `row`'s list takes the columns of g (cols) as candidates j0 + t
 * with score g[t] + xn[t], but the column `skip` (the row itself). */
static void scan_direct(cand_lists *c, size_t row, const float *g, const float *xn, size_t cols, size_t j0,
                        size_t skip)
{
    size_t t = 0;
    for (; t + KNN_CHUNK <= cols; t += KNN_CHUNK) {
        const float thr = c->thr[row];
        int any = 0;
        for (size_t u = 0; u < KNN_CHUNK; u++) any |= g[t + u] + xn[t + u] < thr;
        if (!any) continue;
        for (size_t u = t; u < t + KNN_CHUNK; u++)
            if (u != skip) cand_offer(c, row, g[u] + xn[u], (int32_t)(j0 + u));
    }
    for (; t < cols; t++)
        if (t != skip) cand_offer(c, row, g[t] + xn[t], (int32_t)(j0 + t));
}

/* Row i of the tile is a candidate of the lists j0 + t, t in [t0, t1),
 * with score g[t] + xi. */
static void scan_transposed(cand_lists *c, const float *g, float xi, int32_t i, size_t j0, size_t t0,
                            size_t t1)
{
    const float *thr = c->thr + j0;
    size_t t = t0;
    for (; t + KNN_CHUNK <= t1; t += KNN_CHUNK) {
        int any = 0;
        for (size_t u = 0; u < KNN_CHUNK; u++) any |= g[t + u] + xi < thr[t + u];
        if (!any) continue;
        for (size_t u = t; u < t + KNN_CHUNK; u++) cand_offer(c, j0 + u, g[u] + xi, i);
    }
    for (; t < t1; t++) cand_offer(c, j0 + t, g[t] + xi, i);
}

/* One tile of a fit's product: gram (rows, cols) = -2 x[i0..] x[j0..]^T,
 * j0 >= i0. The block's rows take every column (the first tile of a
 * block holds the block itself: its rows see each other there); the rows
 * of columns beyond the block take the block's rows (the lower triangle
 * is never multiplied). Every list thus gets its candidates in ascending
 * index order, whatever the tiling. */
typedef struct {
    size_t i0, rows, j0, cols;
} knn_tile;

static void scan_tile(cand_lists *c, const float *gram, const float *xn, knn_tile t)
{
    for (size_t r = 0; r < t.rows; r++)
        scan_direct(c, t.i0 + r, gram + r * t.cols, xn + t.j0, t.cols, t.j0,
                    t.i0 + r >= t.j0 ? t.i0 + r - t.j0 : SIZE_MAX);
    const size_t first = t.j0 < t.i0 + t.rows ? t.i0 + t.rows - t.j0 : 0;
    if (first < t.cols)
        for (size_t r = 0; r < t.rows; r++)
            scan_transposed(c, gram + r * t.cols, xn[t.i0 + r], (int32_t)(t.i0 + r), t.j0, first, t.cols);
}

/* The tiles in order: block by block, columns from the block's first row
 * on. Returns the count; with out, writes them. */
static size_t knn_tiles(size_t n, knn_tile *out)
{
    size_t cnt = 0;
    for (size_t i0 = 0; i0 < n; i0 += KNN_TILE_ROWS)
        for (size_t j0 = i0; j0 < n; j0 += KNN_TILE_COLS, cnt++)
            if (out)
                out[cnt] = (knn_tile){i0, n - i0 < KNN_TILE_ROWS ? n - i0 : KNN_TILE_ROWS, j0,
                                      n - j0 < KNN_TILE_COLS ? n - j0 : KNN_TILE_COLS};
    return cnt;
}

/* The fit's kNN as a pipeline: the caller multiplies tile t + 1 (sgemm on
 * OpenBLAS's threads) while a scanner thread scans tile t, over two
 * buffers. One scanner, in tile order: the lists see the same offers in
 * the same order as a sequential run. */
typedef struct {
    cand_lists *c;
    const float *xn;
    const knn_tile *tiles;
    float *buf[2];
    umap_progress *prog;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t produced, consumed; /* tiles multiplied, scanned */
    int closed;                /* no more tiles will come */
    long units;                /* progress units scanned (scanner only) */
} knn_pipe;

static void pipe_scan(knn_pipe *p, size_t t)
{
    const knn_tile tl = p->tiles[t];
    scan_tile(p->c, p->buf[t % 2], p->xn, tl);
    p->units += (long)(tl.rows * tl.cols / 1024);
    if (p->prog) atomic_store(&p->prog->done, p->units);
}

static void *pipe_scanner(void *arg)
{
    knn_pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->consumed == p->produced && !p->closed) pthread_cond_wait(&p->cv, &p->mu);
        if (p->consumed == p->produced) break;
        const size_t t = p->consumed;
        pthread_mutex_unlock(&p->mu);
        pipe_scan(p, t);
        pthread_mutex_lock(&p->mu);
        p->consumed++;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Multiplies and scans every tile; TW_OK or TW_ECANCELED. */
static int knn_fit_tiles(const float *x, size_t dim, knn_pipe *p, size_t n_tiles)
{
    pthread_t th;
    const int threaded = pthread_create(&th, NULL, pipe_scanner, p) == 0;
    int rc = TW_OK;
    for (size_t t = 0; t < n_tiles; t++) {
        if (umap_cancelled(p->prog)) {
            rc = TW_ECANCELED;
            break;
        }
        if (threaded) { /* buffer t % 2 is free once tile t - 2 is scanned */
            pthread_mutex_lock(&p->mu);
            while (p->consumed + 2 <= t) pthread_cond_wait(&p->cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        const knn_tile tl = p->tiles[t];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tl.rows, (int)tl.cols, (int)dim, -2.0f,
                    x + tl.i0 * dim, (int)dim, x + tl.j0 * dim, (int)dim, 0.0f, p->buf[t % 2], (int)tl.cols);
        if (!threaded) {
            pipe_scan(p, t);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        p->produced = t + 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    if (threaded) {
        pthread_mutex_lock(&p->mu);
        p->closed = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(th, NULL);
    }
    return rc;
}

/* Exact re-measuring of every row's candidates, rows split over threads. */
typedef struct {
    const float *x, *q;
    size_t dim, k;
    int same_set;
    const cand_lists *c;
    size_t row0; /* list r is query row row0 + r */
    int32_t *idx;
    float *dist;
    int failed;
} knn_finish;

static void finish_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    knn_finish *f = ctx;
    const cand_lists *c = f->c;
    knn_cand *tmp = malloc(c->cap * sizeof *tmp);
    if (!tmp) {
        f->failed = 1; /* a plain store: only ever set */
        return;
    }
    for (size_t r = lo; r < hi; r++) {
        const size_t i = f->row0 + r;
        knn_finish_row(f->x, f->q + i * f->dim, f->dim, f->k, f->same_set, f->same_set ? (int32_t)i : -1,
                       c->idx + r * c->cap, c->cnt[r], tmp, f->idx + i * f->k, f->dist + i * f->k);
    }
    free(tmp);
}

/* Empty lists for rows [0, rows). */
static void lists_clear(cand_lists *c, size_t rows)
{
    for (size_t r = 0; r < rows; r++) {
        c->cnt[r] = 0;
        c->thr[r] = FLT_MAX;
    }
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
    /* same set: lists for every row, filled over all tiles; otherwise one
     * block of query rows at a time against all n columns */
    const size_t bs =
        same_set ? KNN_TILE_ROWS * KNN_TILE_COLS : (KNN_BLOCK_FLOATS / n > 16 ? KNN_BLOCK_FLOATS / n : 16);
    const size_t lists = same_set ? n : (bs < m ? bs : m);
    const size_t n_tiles = same_set ? knn_tiles(n, NULL) : 0;
    scratch S = {0};
    cand_lists c = {cap, scratch_alloc(&S, lists * cap, sizeof(float)),
                    scratch_alloc(&S, lists * cap, sizeof(int32_t)), scratch_alloc(&S, lists, sizeof(size_t)),
                    scratch_alloc(&S, lists, sizeof(float))};
    float *xn = scratch_alloc(&S, n, sizeof *xn);
    knn_tile *tiles = scratch_alloc(&S, n_tiles, sizeof *tiles);
    float *gram = scratch_alloc(&S, same_set ? 2 * bs : lists * n, sizeof *gram);
    knn_finish fin = {x, q, dim, k, same_set, &c, 0, idx, dist, 0};
    int rc = TW_OK;
    if (S.failed) {
        umap_set_err(err, errlen, "umap_knn: out of memory (%zu rows, %zu columns)", m, n);
        scratch_free(&S);
        return TW_ENOMEM;
    }
    umap_row_norms(x, n, dim, xn);
    if (same_set) {
        knn_tiles(n, tiles);
        long total = 0;
        for (size_t t = 0; t < n_tiles; t++) total += (long)(tiles[t].rows * tiles[t].cols / 1024);
        umap_progress_set(prog, UMAP_STAGE_KNN, 0, total);
        lists_clear(&c, n);
        for (size_t i = 0; i < n; i++) cand_offer(&c, i, -FLT_MAX, (int32_t)i); /* itself, always first */
        knn_pipe p = {.c = &c, .xn = xn, .tiles = tiles, .buf = {gram, gram + bs}, .prog = prog};
        pthread_mutex_init(&p.mu, NULL);
        pthread_cond_init(&p.cv, NULL);
        rc = knn_fit_tiles(x, dim, &p, n_tiles);
        pthread_mutex_destroy(&p.mu);
        pthread_cond_destroy(&p.cv);
        if (rc == TW_OK) nn_parallel_rows(n, nn_parts(), finish_part, &fin);
    } else {
        long total = (long)(m * n / 1024), done_units = 0;
        umap_progress_set(prog, UMAP_STAGE_KNN, 0, total);
        for (size_t i0 = 0; i0 < m && rc == TW_OK; i0 += lists) {
            if (umap_cancelled(prog)) {
                rc = TW_ECANCELED;
                break;
            }
            const size_t rows = m - i0 < lists ? m - i0 : lists;
            /* |q|^2 is constant along a row: ranking row r needs only
             * |x_j|^2 - 2 q_r.x_j */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)dim, -2.0f,
                        q + i0 * dim, (int)dim, x, (int)dim, 0.0f, gram, (int)n);
            lists_clear(&c, rows);
            for (size_t r = 0; r < rows; r++) scan_direct(&c, r, gram + r * n, xn, n, 0, SIZE_MAX);
            fin.row0 = i0;
            finish_part(&fin, 0, rows, 0);
            done_units += (long)(rows * n / 1024);
            if (prog) atomic_store(&prog->done, done_units);
        }
    }
    if (rc == TW_ECANCELED) umap_set_err(err, errlen, "umap_knn: cancelled");
    if (rc == TW_OK && fin.failed) {
        umap_set_err(err, errlen, "umap_knn: out of memory");
        rc = TW_ENOMEM;
    }
    scratch_free(&S);
    return rc;
}

struct umap_knn_feed {
    scratch S;
    cand_lists c;
    knn_finish fin;
    const float *xn;
    size_t n, m;
};

umap_knn_feed *umap_knn_feed_new(const float *x, size_t n, const float *xn, const float *q, size_t m,
                                 size_t dim, size_t k)
{
    if (!x || !xn || (!q && m) || n == 0 || dim == 0 || k == 0 || k > n || n > INT32_MAX || m > INT32_MAX)
        return NULL;
    umap_knn_feed *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    const size_t cap = k + KNN_MARGIN < n ? k + KNN_MARGIN : n, lists = m ? m : 1;
    f->c =
        (cand_lists){cap, scratch_alloc(&f->S, lists * cap, sizeof(float)),
                     scratch_alloc(&f->S, lists * cap, sizeof(int32_t)),
                     scratch_alloc(&f->S, lists, sizeof(size_t)), scratch_alloc(&f->S, lists, sizeof(float))};
    if (f->S.failed) {
        umap_knn_feed_free(f);
        return NULL;
    }
    lists_clear(&f->c, m);
    f->fin = (knn_finish){x, q, dim, k, 0, &f->c, 0, NULL, NULL, 0};
    f->xn = xn;
    f->n = n;
    f->m = m;
    return f;
}

void umap_knn_feed_dots(umap_knn_feed *f, size_t i, const float *dots, size_t b, size_t j0)
{
    if (j0 >= f->n) return;
    size_t cols = f->n - j0 < b ? f->n - j0 : b, t = 0;
    cand_lists *c = &f->c;
    const float *xn = f->xn + j0;
    /* -2 q.x is exact from q.x, so each score is umap_knn's g + |x|^2 */
    for (; t + KNN_CHUNK <= cols; t += KNN_CHUNK) {
        const float thr = c->thr[i];
        int any = 0;
        for (size_t u = 0; u < KNN_CHUNK; u++) any |= -2.0f * dots[t + u] + xn[t + u] < thr;
        if (!any) continue;
        for (size_t u = t; u < t + KNN_CHUNK; u++)
            cand_offer(c, i, -2.0f * dots[u] + xn[u], (int32_t)(j0 + u));
    }
    for (; t < cols; t++) cand_offer(c, i, -2.0f * dots[t] + xn[t], (int32_t)(j0 + t));
}

int umap_knn_feed_finish(umap_knn_feed *f, int32_t *idx, float *dist)
{
    f->fin.idx = idx;
    f->fin.dist = dist;
    f->fin.failed = 0;
    nn_parallel_rows(f->m, nn_parts(), finish_part, &f->fin);
    return f->fin.failed ? TW_ENOMEM : TW_OK;
}

void umap_knn_feed_free(umap_knn_feed *f)
{
    if (!f) return;
    scratch_free(&f->S);
    free(f);
}

void umap_knn_naive(const float *x, size_t n, const float *q, size_t m, size_t dim, size_t k, int same_set,
                    int32_t *idx, float *dist)
{
    knn_cand *best = malloc(k * sizeof *best);
    if (!best) return;
    for (size_t i = 0; i < m; i++) {
        size_t cnt = 0;
        for (size_t j = 0; j < n; j++) {
            double d = (same_set && j == i) ? -1.0 : sqrt(dist2_double(q + i * dim, x + j * dim, dim));
            cand_push(best, &cnt, k, (knn_cand){d, (int32_t)j});
        }
        for (size_t c = 0; c < k; c++) {
            idx[i * k + c] = best[c].j;
            dist[i * k + c] = best[c].d < 0.0 ? 0.0f : (float)best[c].d;
        }
    }
    free(best);
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
    void *arrays[] = {g->indptr, g->indices, g->data};
    for (size_t t = 0; t < sizeof arrays / sizeof *arrays; t++) free(arrays[t]);
    *g = (umap_graph){0};
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
