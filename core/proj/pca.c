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

/* Centred rows per dsyrk call. */
#define PCA_BLOCK 256

void pca_free(pca_model *m)
{
    if (!m) return;
    free(m->mean);
    free(m->components);
    free(m->variance);
    memset(m, 0, sizeof *m);
}

int pca_fit(const float *x, size_t n, size_t dim, size_t k, pca_model *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!x || n < 2 || dim == 0 || k == 0 || k > dim || dim > 1u << 20) {
        tw_set_err(err, errlen, "pca_fit: bad arguments (n=%zu dim=%zu k=%zu)", n, dim, k);
        return -1;
    }
    double *cov = calloc(dim * dim, sizeof *cov);
    double *blk = malloc(PCA_BLOCK * dim * sizeof *blk);
    double *w = malloc(dim * sizeof *w);
    double *z = malloc(dim * k * sizeof *z);
    lapack_int *isuppz = malloc(2 * k * sizeof *isuppz);
    out->mean = calloc(dim, sizeof *out->mean);
    out->components = malloc(k * dim * sizeof *out->components);
    out->variance = malloc(k * sizeof *out->variance);
    int rc = -1;
    if (!cov || !blk || !w || !z || !isuppz || !out->mean || !out->components || !out->variance) {
        tw_set_err(err, errlen, "pca_fit: out of memory (dim=%zu)", dim);
        goto done;
    }
    out->dim = dim;
    out->n_components = k;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++) out->mean[j] += x[i * dim + j];
    for (size_t j = 0; j < dim; j++) out->mean[j] /= (double)n;
    /* cov (dim, dim), upper triangle = sum of centred outer products */
    for (size_t i0 = 0; i0 < n; i0 += PCA_BLOCK) {
        size_t rows = n - i0 < PCA_BLOCK ? n - i0 : PCA_BLOCK;
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < dim; j++) blk[r * dim + j] = x[(i0 + r) * dim + j] - out->mean[j];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)dim, (int)rows, 1.0, blk, (int)dim, 1.0, cov,
                    (int)dim);
    }
    out->total_variance = 0.0;
    for (size_t j = 0; j < dim; j++) {
        for (size_t l = j; l < dim; l++) cov[j * dim + l] /= (double)(n - 1);
        out->total_variance += cov[j * dim + j];
    }
    lapack_int found = 0;
    lapack_int info =
        LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', (lapack_int)dim, cov, (lapack_int)dim, 0.0, 0.0,
                       (lapack_int)(dim - k + 1), (lapack_int)dim, 0.0, &found, w, z, (lapack_int)k, isuppz);
    if (info != 0 || found != (lapack_int)k) {
        tw_set_err(err, errlen, "pca_fit: dsyevr failed (info=%d, found %d of %zu)", (int)info, (int)found,
                   k);
        goto done;
    }
    /* dsyevr gives ascending eigenvalues: component c is column k-1-c */
    for (size_t c = 0; c < k; c++) {
        size_t col = k - 1 - c;
        double *v = out->components + c * dim;
        size_t arg = 0;
        for (size_t j = 0; j < dim; j++) {
            v[j] = z[j * k + col];
            if (fabs(v[j]) > fabs(v[arg])) arg = j;
        }
        if (v[arg] < 0.0)
            for (size_t j = 0; j < dim; j++) v[j] = -v[j];
        out->variance[c] = w[col] > 0.0 ? w[col] : 0.0;
    }
    rc = 0;
done:
    free(cov);
    free(blk);
    free(w);
    free(z);
    free(isuppz);
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
