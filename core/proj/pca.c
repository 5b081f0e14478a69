/* PCA by the eigendecomposition of the covariance (see pca.h). */
#include "core/proj/pca.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/scratch.h"

/* Centred rows per dsyrk call. */
#define PCA_BLOCK 256

void pca_free(pca_model *m)
{
    if (!m) return;
    free(m->mean); /* the one allocation of mean, components and variance */
    memset(m, 0, sizeof *m);
}

/* The mean of the rows and the upper triangle of their covariance (dim,
 * dim), centred in blocks of rows (blk: PCA_BLOCK rows of scratch); the
 * trace into m->total_variance. */
static void covariance(const float *x, size_t n, size_t dim, pca_model *m, double *cov, double *blk)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++) m->mean[j] += x[i * dim + j];
    for (size_t j = 0; j < dim; j++) m->mean[j] /= (double)n;
    /* sum of centred outer products */
    for (size_t i0 = 0; i0 < n; i0 += PCA_BLOCK) {
        size_t rows = n - i0 < PCA_BLOCK ? n - i0 : PCA_BLOCK;
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < dim; j++) blk[r * dim + j] = x[(i0 + r) * dim + j] - m->mean[j];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dim, (int)rows, 1.0, blk, (int)dim, 1.0, cov,
                    (int)dim);
    }
    m->total_variance = 0.0;
    for (size_t j = 0; j < dim; j++) {
        for (size_t l = j; l < dim; l++) cov[j * dim + l] /= (double)(n - 1);
        m->total_variance += cov[j * dim + j];
    }
}

/* The components from dsyevr's k eigenvectors z (dim, k) and ascending
 * eigenvalues w: component c is column k-1-c, signed so that its largest
 * entry is positive. */
static void take_components(const double *z, const double *w, pca_model *m)
{
    const size_t dim = m->dim, k = m->n_components;
    for (size_t c = 0; c < k; c++) {
        size_t col = k - 1 - c;
        double *v = m->components + c * dim;
        size_t arg = 0;
        for (size_t j = 0; j < dim; j++) {
            v[j] = z[j * k + col];
            if (fabs(v[j]) > fabs(v[arg])) arg = j;
        }
        if (v[arg] < 0.0)
            for (size_t j = 0; j < dim; j++) v[j] = -v[j];
        m->variance[c] = w[col] > 0.0 ? w[col] : 0.0;
    }
}

int pca_fit(const float *x, size_t n, size_t dim, size_t k, pca_model *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!x || n < 2 || dim == 0 || k == 0 || k > dim || dim > 1u << 20) {
        tw_set_err(err, errlen, "pca_fit: bad arguments (n=%zu dim=%zu k=%zu)", n, dim, k);
        return -1;
    }
    scratch s = {.n = 0};
    double *cov = scratch_zalloc(&s, dim * dim, sizeof *cov);
    double *blk = scratch_alloc(&s, PCA_BLOCK * dim, sizeof *blk);
    double *w = scratch_alloc(&s, dim, sizeof *w);
    double *z = scratch_alloc(&s, dim * k, sizeof *z);
    lapack_int *isuppz = scratch_alloc(&s, 2 * k, sizeof *isuppz);
    out->mean = calloc(dim + k * dim + k, sizeof(double));
    int rc = -1;
    if (s.failed || !out->mean) {
        tw_set_err(err, errlen, "pca_fit: out of memory (dim=%zu)", dim);
        goto done;
    }
    out->components = out->mean + dim;
    out->variance = out->components + k * dim;
    out->dim = dim;
    out->n_components = k;
    covariance(x, n, dim, out, cov, blk);
    lapack_int found = 0;
    lapack_int info =
        LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', (lapack_int)dim, cov, (lapack_int)dim, 0.0, 0.0,
                       (lapack_int)(dim - k + 1), (lapack_int)dim, 0.0, &found, w, z, (lapack_int)k, isuppz);
    if (info != 0 || found != (lapack_int)k) {
        tw_set_err(err, errlen, "pca_fit: dsyevr failed (info=%d, found %d of %zu)", (int)info, (int)found,
                   k);
        goto done;
    }
    take_components(z, w, out);
    rc = 0;
done:
    scratch_free(&s);
    if (rc != 0) pca_free(out);
    return rc;
}

void pca_transform(const pca_model *m, const float *x, size_t n, float *out)
{
    const size_t dim = m->dim, k = m->n_components;
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < k; c++) {
            const double *v = m->components + c * dim;
            double s = 0.0;
            for (size_t j = 0; j < dim; j++) s += ((double)x[i * dim + j] - m->mean[j]) * v[j];
            out[i * k + c] = (float)s;
        }
}
