/* Principal component analysis of a row-major float matrix (LAPACK).
 *
 * The covariance (divided by n - 1) is accumulated in double with dsyrk over
 * blocks of centred rows; its k largest eigenpairs come from dsyevr. Sign
 * convention, so that the projection is reproducible: each component's
 * largest-magnitude coordinate is positive (the first one on ties).
 */
#ifndef TW_PCA_H
#define TW_PCA_H

#include <stddef.h>

typedef struct {
    size_t dim;            /* input width D */
    size_t n_components;   /* k */
    double *mean;          /* (D) column means; one allocation with the next two, freed by pca_free */
    double *components;    /* (k, D) unit rows, by descending variance */
    double *variance;      /* (k) variance along each component */
    double total_variance; /* trace of the covariance */
} pca_model;

/* Fits k components (1 <= k <= dim, n >= 2) of x (n, dim). Returns 0, or -1
 * with one line in err (bad arguments, out of memory, LAPACK failure); *out
 * is empty on failure and must be released with pca_free on success. */
int pca_fit(const float *x, size_t n, size_t dim, size_t k, pca_model *out, char *err, size_t errlen);

/* Projects x (n, m->dim) onto the components: out (n, k) =
 * (x - mean) components^T, computed in double. */
void pca_transform(const pca_model *m, const float *x, size_t n, float *out);

/* Releases the arrays; idempotent. */
void pca_free(pca_model *m);

#endif
