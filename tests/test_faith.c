/* Unit tests of core/proj/faith (docs/MATH.md §15): trustworthiness and
 * continuity against a naive double implementation (full rank matrices by
 * sorting), on random data and on integer data full of exact ties; the
 * seeded sample; the kNN overlap of new points against brute force. */
#include <cblas.h>
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"
#include "core/proj/faith.h"
#include "core/proj/layout.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_rank.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

/* rank[i * m + j]: the 1-based rank of j among the rows other than i
 * (rank[i * m + i] = 0). */
static size_t *ranks(const float *X, size_t m, size_t d)
{
    size_t *r = calloc(m * m, sizeof *r);
    tt_scored *row = malloc(m * sizeof *row);
    for (size_t i = 0; i < m; i++) {
        size_t n = 0;
        for (size_t j = 0; j < m; j++)
            if (j != i) row[n++] = (tt_scored){tt_sqdist(X + i * d, X + j * d, d), (int)j};
        tt_sort_asc(row, n);
        for (size_t t = 0; t < n; t++) r[i * m + (size_t)row[t].id] = t + 1;
    }
    free(row);
    return r;
}

static void naive_tc(const float *X, size_t m, size_t d, const float *Y, size_t e, size_t K, double *T,
                     double *C)
{
    size_t *rx = ranks(X, m, d), *ry = ranks(Y, m, e);
    double st = 0, sc = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++) {
            if (j == i) continue;
            int in_x = rx[i * m + j] <= K, in_y = ry[i * m + j] <= K;
            if (in_y && !in_x) st += (double)(rx[i * m + j] - K);
            if (in_x && !in_y) sc += (double)(ry[i * m + j] - K);
        }
    double norm = 2.0 / ((double)m * K * (2.0 * m - 3.0 * K - 1.0));
    *T = 1 - norm * st;
    *C = 1 - norm * sc;
    TT_FREE(rx, ry);
}

static void check_tc(const float *X, size_t m, size_t d, const float *Y, size_t e, size_t K)
{
    double t, c, nt, nc;
    ck_assert_int_eq(faith_trust_cont(X, m, d, Y, e, K, &t, &c, NULL), TW_OK);
    naive_tc(X, m, d, Y, e, K, &nt, &nc);
    ck_assert_msg(fabs(t - nt) < 1e-12 && fabs(c - nc) < 1e-12, "T %.15g vs %.15g, C %.15g vs %.15g", t, nt,
                  c, nc);
    ck_assert(t <= 1 && c <= 1);
}

START_TEST(test_trust_cont_random)
{
    tw_rng r = tt_rng(41);
    const size_t m = 300, d = 20;
    float *X = malloc(m * d * sizeof *X), *Y = malloc(m * 3 * sizeof *Y);
    tt_fill_normal(&r, X, m * d, 0, 1);
    /* a layout that keeps some structure: the first three coordinates plus noise */
    for (size_t i = 0; i < m; i++)
        for (size_t c = 0; c < 3; c++) Y[i * 3 + c] = X[i * d + c] + 0.3f * (float)tw_rng_normal(&r);
    check_tc(X, m, d, Y, 3, 15);
    check_tc(X, m, d, Y, 3, 1);
    check_tc(X, 40, d, Y, 3, 15); /* 2K < m just holds: 30 < 40 */
    /* a layout identical to the data: no errors at all */
    double t, c;
    ck_assert_int_eq(faith_trust_cont(X, m, d, X, d, 15, &t, &c, NULL), TW_OK);
    ck_assert(t == 1 && c == 1);
    TT_FREE(X, Y);
}
END_TEST

START_TEST(test_trust_cont_ties)
{
    tw_rng r = tt_rng(42);
    const size_t m = 200, d = 6;
    float *X = malloc(m * d * sizeof *X), *Y = malloc(m * 3 * sizeof *Y);
    tt_fill_int(&r, X, m * d, -2, 2);
    tt_fill_int(&r, Y, m * 3, -1, 1);
    memcpy(X + 5 * d, X + 150 * d, d * sizeof *X); /* a duplicate row: distance 0 */
    check_tc(X, m, d, Y, 3, 15);
    check_tc(X, m, d, Y, 3, 7);
    TT_FREE(X, Y);
}
END_TEST

START_TEST(test_trust_cont_errors)
{
    float X[60] = {0};
    double t, c;
    ck_assert_int_eq(faith_trust_cont(X, 30, 2, X, 2, 15, &t, &c, NULL), TW_EINVAL); /* 2K = m */
    ck_assert_int_eq(faith_trust_cont(X, 30, 2, X, 2, 0, &t, &c, NULL), TW_EINVAL);
    tw_cancel stop = {.flag = 1};
    ck_assert_int_eq(faith_trust_cont(X, 30, 2, X, 2, 3, &t, &c, &stop), TW_ECANCELED);
}
END_TEST

START_TEST(test_sample)
{
    size_t idx[100], again[100];
    ck_assert_uint_eq(faith_sample(7, 100, 1, idx), 7);
    for (size_t i = 0; i < 7; i++) ck_assert_uint_eq(idx[i], i);
    ck_assert_uint_eq(faith_sample(1000, 100, 5, idx), 100);
    ck_assert_uint_eq(faith_sample(1000, 100, 5, again), 100);
    ck_assert(memcmp(idx, again, sizeof idx) == 0); /* seeded */
    for (size_t i = 0; i < 100; i++) {
        ck_assert(idx[i] < 1000);
        if (i) ck_assert(idx[i] > idx[i - 1]); /* ascending, distinct */
    }
    faith_sample(1000, 100, 6, again);
    ck_assert(memcmp(idx, again, sizeof idx) != 0);
    /* every row can be drawn: over many seeds, both ends appear */
    int lo = 0, hi = 0;
    for (uint64_t s = 0; s < 200; s++) {
        faith_sample(50, 10, s, idx);
        lo |= idx[0] == 0;
        hi |= idx[9] == 49;
    }
    ck_assert(lo && hi);
}
END_TEST

START_TEST(test_knn_overlap)
{
    tw_rng r = tt_rng(43);
    const size_t n = 500, d = 24, m = 40, K = 15;
    float *X = malloc(n * d * sizeof *X), *Y = malloc(n * 3 * sizeof *Y);
    float *q = malloc(m * d * sizeof *q), *qy = malloc(m * 3 * sizeof *qy);
    tt_fill_normal(&r, X, n * d, 0, 1);
    tt_fill_normal(&r, Y, n * 3, 0, 1);
    tt_fill_normal(&r, q, m * d, 0, 1);
    tt_fill_normal(&r, qy, m * 3, 0, 1);
    memcpy(q, X + 17 * d, d * sizeof *q); /* a new point on a fitted row, placed on its point */
    memcpy(qy, Y + 17 * 3, 3 * sizeof *qy);
    double frac[40];
    ck_assert_int_eq(faith_knn_overlap(X, n, d, Y, 3, q, qy, m, K, frac, NULL), TW_OK);
    tt_scored *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            a[j] = (tt_scored){tt_sqdist(q + i * d, X + j * d, d), (int)j};
            b[j] = (tt_scored){tt_sqdist(qy + i * 3, Y + j * 3, 3), (int)j};
        }
        tt_sort_asc(a, n);
        tt_sort_asc(b, n);
        size_t both = 0;
        for (size_t s = 0; s < K; s++)
            for (size_t t = 0; t < K; t++) both += a[s].id == b[t].id;
        ck_assert_msg(frac[i] == (double)both / K, "point %zu: %g vs %g", i, frac[i], (double)both / K);
    }
    ck_assert(frac[0] >= 1.0 / K); /* row 17 itself, in both lists */
    /* the layout identical to the data: full overlap */
    ck_assert_int_eq(faith_knn_overlap(X, n, d, X, d, q, q, m, K, frac, NULL), TW_OK);
    for (size_t i = 0; i < m; i++) ck_assert(frac[i] == 1);
    ck_assert_int_eq(faith_knn_overlap(X, n, d, Y, 3, q, qy, m, n + 1, frac, NULL), TW_EINVAL);
    TT_FREE(a, b, X, Y, q, qy);
}
END_TEST

/* The K nearest by (distance, index) of a query among Y (n, 3) by every
 * distance: the reference of the overlap's layout side. */
static void nearest_ref(const float *Y, size_t n, const float *a, size_t K, size_t *nn)
{
    double *nd = malloc(K * sizeof *nd);
    size_t h = 0;
    for (size_t j = 0; j < n; j++) {
        double s = 0;
        for (size_t c = 0; c < 3; c++) {
            double u = (double)a[c] - (double)Y[j * 3 + c];
            s += u * u;
        }
        if (h == K && !(s < nd[K - 1] || (s == nd[K - 1] && j < nn[K - 1]))) continue;
        size_t c = h < K ? h++ : K - 1;
        for (; c > 0 && (s < nd[c - 1] || (s == nd[c - 1] && j < nn[c - 1])); c--) {
            nd[c] = nd[c - 1];
            nn[c] = nn[c - 1];
        }
        nd[c] = s;
        nn[c] = j;
    }
    free(nd);
}

/* The overlap of many fitted points (searched by a k-d tree) is that
 * of every distance: clustered points, a lattice with many equal distances
 * and points on the boxes' faces, copies of points, queries on points, far
 * outside and between them. */
START_TEST(test_knn_overlap_grid)
{
    tw_rng r = tt_rng(46);
    const size_t n = 4000, K = FAITH_K, m = 300;
    float *Y = malloc(n * 3 * sizeof *Y), *qy = malloc(m * 3 * sizeof *qy);
    tt_fill_normal(&r, Y, 1500 * 3, 0, 1);
    for (size_t j = 1500; j < 3500; j++) /* a 20 x 10 x 10 lattice */
        for (size_t c = 0; c < 3; c++)
            Y[j * 3 + c] = (float)((c == 0 ? (j - 1500) / 100 : c == 1 ? (j / 10) % 10 : j % 10)) * 0.5f - 2;
    for (size_t j = 3500; j < n; j++) memcpy(Y + j * 3, Y + (j - 3500) * 7 * 3, 3 * sizeof *Y); /* copies */
    for (size_t i = 0; i < m; i++) {
        const float *src = Y + (i * 13 % n) * 3;
        for (size_t c = 0; c < 3; c++)
            qy[i * 3 + c] = i % 4 == 0   ? src[c]
                            : i % 4 == 1 ? src[c] + 0.25f
                            : i % 4 == 2 ? src[c] * 40
                                         : src[c] + 0.01f * (float)c;
    }
    int32_t *ix = malloc(m * K * sizeof *ix);
    size_t *nn = malloc(K * sizeof *nn);
    double *frac = malloc(m * sizeof *frac);
    for (size_t i = 0; i < m; i++) { /* half of each list the true neighbours, half others */
        nearest_ref(Y, n, qy + i * 3, K, nn);
        for (size_t t = 0; t < K; t++)
            ix[i * K + t] = t % 2 ? (int32_t)nn[t] : (int32_t)((i * 31 + t * 17) % n);
    }
    ck_assert_int_eq(faith_knn_overlap_given(n, Y, 3, qy, m, K, ix, K, frac, NULL), TW_OK);
    for (size_t i = 0; i < m; i++) {
        nearest_ref(Y, n, qy + i * 3, K, nn);
        size_t both = 0;
        for (size_t t = 0; t < K; t++)
            for (size_t u = 0; u < K; u++) both += (size_t)ix[i * K + t] == nn[u];
        ck_assert_msg(frac[i] == (double)both / (double)K, "query %zu: %g, every distance %g", i, frac[i],
                      (double)both / (double)K);
    }
    ck_assert_int_eq(faith_knn_overlap_given(n, Y, 3, qy, m, K, ix, K - 1, frac, NULL), TW_EINVAL);
    /* a tree made once (as the layout service keeps one) gives the same
     * overlaps; one of other points is refused; none for NaN or few points */
    faith_tree *tree = faith_tree_new(Y, n);
    ck_assert_ptr_nonnull(tree);
    double *again = malloc(m * sizeof *again);
    ck_assert_int_eq(faith_knn_overlap_given(n, Y, 3, qy, m, K, ix, K, again, tree), TW_OK);
    for (size_t i = 0; i < m; i++) ck_assert(again[i] == frac[i]);
    ck_assert_int_eq(faith_knn_overlap_given(n - 1, Y, 3, qy, m, K, ix, K, again, tree), TW_EINVAL);
    faith_tree_free(tree);
    ck_assert_ptr_null(faith_tree_new(Y, 64 * FAITH_K - 1));
    Y[5] = NAN;
    ck_assert_ptr_null(faith_tree_new(Y, n));
    faith_tree_free(NULL);
    TT_FREE(Y, qy, ix, nn, frac, again);
}
END_TEST

/* The layout service computes PCA's figures at start on its seeded sample
 * (the same figures as faith_trust_cont on those rows), with the explained
 * variance ratio; UMAP, disabled, has none. */
START_TEST(test_layout_service)
{
    tw_rng r = tt_rng(44);
    const size_t n = 2600, d = 10;
    float *X = malloc(n * d * sizeof *X);
    tt_fill_normal(&r, X, n * d, 0, 1);
    for (size_t i = 0; i < n; i++) X[i * d] *= 4; /* one dominant direction */
    layout_settings s = {.rows = n, .umap = false, .umap_neighbors = 15};
    char err[256];
    layout_service *p = layout_start(X, n, d, &s, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    layout_faith f;
    ck_assert_int_eq(layout_faithfulness(p, PROJ_PCA, &f), TW_OK);
    ck_assert(f.k == FAITH_K && f.sample_rows == FAITH_SAMPLE_ROWS && f.sample_seed == FAITH_SAMPLE_SEED);
    ck_assert(f.has_variance_ratio);
    double sum =
        f.explained_variance_ratio[0] + f.explained_variance_ratio[1] + f.explained_variance_ratio[2];
    ck_assert(f.explained_variance_ratio[0] > 0.5 && sum < 1 &&
              f.explained_variance_ratio[1] <= f.explained_variance_ratio[0]);
    /* the same sample and figures, recomputed here */
    size_t *idx = malloc(FAITH_SAMPLE_ROWS * sizeof *idx);
    size_t m = faith_sample(n, FAITH_SAMPLE_ROWS, FAITH_SAMPLE_SEED, idx);
    size_t np;
    int rc;
    double prog;
    char msg[64];
    const float *pts = layout_points(p, PROJ_PCA, &np, &rc, &prog, msg, sizeof msg);
    float *xs = malloc(m * d * sizeof *xs), *ys = malloc(m * 3 * sizeof *ys);
    for (size_t i = 0; i < m; i++) {
        memcpy(xs + i * d, X + idx[i] * d, d * sizeof *xs);
        memcpy(ys + i * 3, pts + idx[i] * 3, 3 * sizeof *ys);
    }
    double t, c;
    ck_assert_int_eq(faith_trust_cont(xs, m, d, ys, 3, FAITH_K, &t, &c, NULL), TW_OK);
    ck_assert(t == f.trustworthiness && c == f.continuity);
    ck_assert_int_ne(layout_faithfulness(p, PROJ_UMAP, &f), TW_OK);
    ck_assert(layout_faith_json(p, PROJ_UMAP) == NULL);
    /* the overlap of new points: fitted rows placed by PCA */
    double frac[4];
    float q3[12];
    ck_assert_int_eq(layout_apply(p, PROJ_PCA, X, 4, q3, &prog, msg, sizeof msg), TW_OK);
    ck_assert_int_eq(layout_knn_overlap(p, PROJ_PCA, X, q3, 4, frac), TW_OK);
    for (int i = 0; i < 4; i++) ck_assert(frac[i] >= 1.0 / FAITH_K && frac[i] <= 1);
    /* the same from products fed to layout_knn (as the logit lens feeds
     * them): new rows, their products with the fitted rows in blocks */
    const size_t mq = 70;
    float *yq = malloc(mq * d * sizeof *yq), *dots = malloc(mq * n * sizeof *dots);
    float *p1 = malloc(mq * 3 * sizeof *p1), *p2 = malloc(mq * 3 * sizeof *p2);
    double *f1 = malloc(mq * sizeof *f1), *f2 = malloc(mq * sizeof *f2);
    tt_fill_normal(&r, yq, mq * d, 0, 1.5);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mq, (int)n, (int)d, 1.0f, yq, (int)d, X, (int)d,
                0.0f, dots, (int)n);
    ck_assert_ptr_null(layout_knn_begin(p, PROJ_PCA, yq, yq, mq)); /* not the fitted rows */
    ck_assert_ptr_null(layout_knn_begin(p, PROJ_UMAP, X, yq, mq)); /* UMAP disabled */
    layout_knn *kn = layout_knn_begin(p, PROJ_PCA, X, yq, mq);
    ck_assert_ptr_nonnull(kn);
    for (size_t j0 = 0; j0 < n; j0 += 1000)
        for (size_t i = 0; i < mq; i++)
            layout_knn_feed(kn, i, dots + i * n + j0, n - j0 < 1000 ? n - j0 : 1000, j0);
    ck_assert_int_eq(layout_knn_end(kn), TW_OK);
    ck_assert_int_eq(layout_apply_knn(kn, p2, msg, sizeof msg), TW_OK);
    ck_assert_int_eq(layout_knn_overlap_knn(kn, p2, f2), TW_OK);
    layout_knn_free(kn);
    ck_assert_int_eq(layout_apply(p, PROJ_PCA, yq, mq, p1, &prog, msg, sizeof msg), TW_OK);
    ck_assert_int_eq(layout_knn_overlap(p, PROJ_PCA, yq, p1, mq, f1), TW_OK);
    ck_assert_int_eq(memcmp(p1, p2, mq * 3 * sizeof *p1), 0);
    for (size_t i = 0; i < mq; i++) ck_assert(f1[i] == f2[i]);
    TT_FREE(yq, dots, p1, p2, f1, f2);
    TT_FREE(idx, xs, ys);
    layout_stop(p);
    free(X);
}
END_TEST

/* The UMAP layout's figures are kept beside it (<layout>.faith); a layout
 * read from the disk cache takes them from there, and a record that is
 * not whole is ignored: the figures are computed again and kept anew. */
static layout_faith figures_of(proj_kind kind, const float *X, size_t n, size_t d, const char *dir)
{
    layout_settings s = {.rows = n, .umap = true, .umap_neighbors = 10, .umap_epochs = 30, .threads = 1};
    snprintf(s.cache_dir, sizeof s.cache_dir, "%s", dir);
    char err[256];
    layout_service *p = layout_start(X, n, d, &s, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    layout_faith f;
    int rc = TW_ENOTREADY;
    for (int i = 0; i < 6000 && (rc = layout_faithfulness(p, PROJ_UMAP, &f)) == TW_ENOTREADY; i++)
        nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
    ck_assert_int_eq(rc, TW_OK);
    if (kind == PROJ_PCA) ck_assert_int_eq(layout_faithfulness(p, PROJ_PCA, &f), TW_OK);
    layout_stop(p);
    return f;
}

static layout_faith umap_figures(const float *X, size_t n, size_t d, const char *dir)
{
    return figures_of(PROJ_UMAP, X, n, d, dir);
}

/* The path of the one record of kind in dir (UMAP's *.faith, PCA's
 * *.pca.faith) into out. */
static void faith_file_of(proj_kind kind, const char *dir, char *out, size_t n)
{
    DIR *dp = opendir(dir);
    ck_assert(dp != NULL);
    int found = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        size_t l = strlen(e->d_name);
        bool pca = l > 10 && strcmp(e->d_name + l - 10, ".pca.faith") == 0;
        if (l > 6 && strcmp(e->d_name + l - 6, ".faith") == 0 && pca == (kind == PROJ_PCA)) {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            found++;
        }
    }
    closedir(dp);
    ck_assert_int_eq(found, 1);
}

static void faith_file(const char *dir, char *out, size_t n) { faith_file_of(PROJ_UMAP, dir, out, n); }

/* A record's last two doubles (trustworthiness, continuity): the first set
 * to mark; its length returned. */
static size_t mark_record(const char *path, double mark)
{
    unsigned char rec[256];
    FILE *fp = fopen(path, "rb");
    ck_assert(fp != NULL);
    size_t len = fread(rec, 1, sizeof rec, fp);
    fclose(fp);
    ck_assert(len >= 2 * sizeof(double));
    memcpy(rec + len - 2 * sizeof(double), &mark, sizeof mark);
    fp = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(rec, 1, len, fp), len);
    fclose(fp);
    return len;
}

START_TEST(test_layout_faith_kept)
{
    tw_rng r = tt_rng(45);
    const size_t n = 300, d = 8;
    float *X = malloc(n * d * sizeof *X);
    tt_fill_normal(&r, X, n * d, 0, 1);
    char dir[512], path[1024];
    tt_tmpdir(dir, sizeof dir, "faith-kept");
    const layout_faith f1 = umap_figures(X, n, d, dir); /* fitted: figures computed and kept */
    ck_assert(isfinite(f1.trustworthiness) && isfinite(f1.continuity) && f1.sample_rows == n);
    faith_file(dir, path, sizeof path);
    /* a loaded layout answers the kept figures, not new ones: mark them */
    double mark = 0.125;
    size_t len = mark_record(path, mark);
    layout_faith f2 = umap_figures(X, n, d, dir);
    ck_assert(f2.trustworthiness == mark && f2.continuity == f1.continuity && f2.k == f1.k);
    /* a record cut short: computed again (the first figures) and kept whole */
    ck_assert_int_eq(truncate(path, (off_t)len - 1), 0);
    layout_faith f3 = umap_figures(X, n, d, dir);
    ck_assert(f3.trustworthiness == f1.trustworthiness && f3.continuity == f1.continuity);
    struct stat st;
    ck_assert(stat(path, &st) == 0 && (size_t)st.st_size == len);
    /* PCA's figures are kept beside the layout too (computed at the first
     * start), read at the next, and computed again when not whole */
    const layout_faith p1 = figures_of(PROJ_PCA, X, n, d, dir);
    ck_assert(isfinite(p1.trustworthiness) && p1.has_variance_ratio && p1.sample_rows == n);
    faith_file_of(PROJ_PCA, dir, path, sizeof path);
    len = mark_record(path, mark);
    layout_faith p2 = figures_of(PROJ_PCA, X, n, d, dir);
    ck_assert(p2.trustworthiness == mark && p2.continuity == p1.continuity && p2.has_variance_ratio);
    for (int c = 0; c < 3; c++) ck_assert(p2.explained_variance_ratio[c] == p1.explained_variance_ratio[c]);
    ck_assert_int_eq(truncate(path, (off_t)len - 1), 0);
    layout_faith p3 = figures_of(PROJ_PCA, X, n, d, dir);
    ck_assert(p3.trustworthiness == p1.trustworthiness && p3.continuity == p1.continuity);
    ck_assert(stat(path, &st) == 0 && (size_t)st.st_size == len);
    tt_rmtree(dir);
    free(X);
}
END_TEST

TW_CHECK_ONE_MAIN("faith", "faithfulness", 60, test_trust_cont_random, test_trust_cont_ties,
                  test_trust_cont_errors, test_sample, test_knn_overlap, test_knn_overlap_grid,
                  test_layout_service, test_layout_faith_kept)
