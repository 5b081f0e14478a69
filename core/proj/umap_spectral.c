/* UMAP, part 2: spectral initialisation (umap-learn's spectral_layout and
 * multi_component_layout), eigenvectors by ARPACK or dense LAPACK. */
#include <arpack.h>
#include <lapacke.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/proj/pca.h"
#include "core/proj/umap_internal.h"

/* ARPACK keeps state in Fortran SAVE variables: one solve at a time. */
static pthread_mutex_t arpack_mu = PTHREAD_MUTEX_INITIALIZER;

/* A graph (or one component of it) with local vertex numbers and
 * the scaling D^-1/2. */
typedef struct {
    size_t m;
    const size_t *indptr;
    const int32_t *indices;
    const float *data;
    double *dinv; /* (m) 1 / sqrt(degree) */
} sym_op;

/* y = D^-1/2 W D^-1/2 x */
static void sym_matvec(const sym_op *op, const double *x, double *y)
{
    for (size_t i = 0; i < op->m; i++) {
        double s = 0.0;
        for (size_t t = op->indptr[i]; t < op->indptr[i + 1]; t++) {
            size_t j = (size_t)op->indices[t];
            s += (double)op->data[t] * op->dinv[j] * x[j];
        }
        y[i] = op->dinv[i] * s;
    }
}

/* Largest nev eigenpairs of D^-1/2 W D^-1/2 by dense dsyevr: vec (m, nev)
 * column c for the c-th largest eigenvalue val[c]. */
static int eig_dense(const sym_op *op, size_t nev, double *val, double *vec)
{
    const size_t m = op->m;
    double *a = calloc(m * m, sizeof *a);
    double *w = malloc(m * sizeof *w);
    double *z = malloc(m * nev * sizeof *z);
    lapack_int *isuppz = malloc(2 * nev * sizeof *isuppz);
    int rc = TW_ENOMEM;
    if (!a || !w || !z || !isuppz) goto done;
    for (size_t i = 0; i < m; i++)
        for (size_t t = op->indptr[i]; t < op->indptr[i + 1]; t++) {
            size_t j = (size_t)op->indices[t];
            a[i * m + j] += (double)op->data[t] * op->dinv[i] * op->dinv[j];
        }
    lapack_int found = 0;
    lapack_int info =
        LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', (lapack_int)m, a, (lapack_int)m, 0.0, 0.0,
                       (lapack_int)(m - nev + 1), (lapack_int)m, 0.0, &found, w, z, (lapack_int)nev, isuppz);
    if (info != 0 || found != (lapack_int)nev) {
        rc = TW_ENUMERIC;
        goto done;
    }
    for (size_t c = 0; c < nev; c++) {
        val[c] = w[nev - 1 - c];
        for (size_t i = 0; i < m; i++) vec[i * nev + c] = z[i * nev + (nev - 1 - c)];
    }
    rc = TW_OK;
done:
    free(a);
    free(w);
    free(z);
    free(isuppz);
    return rc;
}

/* Same by ARPACK (dsaupd/dseupd, which="LA", tol 1e-4, start vector of
 * ones, ncv = max(2 nev + 1, sqrt(m)), at most 5 m restarts: the settings
 * umap-learn passes to eigsh). *arpack_info receives the failing info. */
static int eig_arpack(const sym_op *op, size_t nev, double *val, double *vec, int *arpack_info)
{
    const a_int n = (a_int)op->m;
    a_int ncv = (a_int)(2 * nev + 1);
    a_int sq = (a_int)sqrt((double)op->m);
    if (sq > ncv) ncv = sq;
    if (ncv > n) ncv = n;
    if ((a_int)nev >= ncv) return TW_EINVAL;
    const a_int lworkl = ncv * (ncv + 8);
    double *resid = malloc((size_t)n * sizeof *resid);
    double *v = malloc((size_t)n * (size_t)ncv * sizeof *v);
    double *workd = malloc(3 * (size_t)n * sizeof *workd);
    double *workl = malloc((size_t)lworkl * sizeof *workl);
    double *d = malloc((size_t)nev * sizeof *d);
    double *z = malloc((size_t)n * nev * sizeof *z);
    a_int *select = calloc((size_t)ncv, sizeof *select);
    int rc = TW_ENOMEM;
    if (!resid || !v || !workd || !workl || !d || !z || !select) goto done;
    for (a_int i = 0; i < n; i++) resid[i] = 1.0;
    a_int iparam[11] = {0}, ipntr[14] = {0};
    iparam[0] = 1;           /* exact shifts */
    iparam[2] = 5 * n;       /* max iterations */
    iparam[6] = 1;           /* mode 1: A x = lambda x */
    a_int ido = 0, info = 1; /* info 1: resid is the start vector */
    const double tol = 1e-4;
    pthread_mutex_lock(&arpack_mu);
    for (;;) {
        dsaupd_c(&ido, "I", n, "LA", (a_int)nev, tol, resid, ncv, v, n, iparam, ipntr, workd, workl, lworkl,
                 &info);
        if (ido != -1 && ido != 1) break;
        sym_matvec(op, workd + ipntr[0] - 1, workd + ipntr[1] - 1);
    }
    if (info == 0) {
        dseupd_c(1, "A", select, d, z, n, 0.0, "I", n, "LA", (a_int)nev, tol, resid, ncv, v, n, iparam, ipntr,
                 workd, workl, lworkl, &info);
    }
    pthread_mutex_unlock(&arpack_mu);
    if (info != 0 || iparam[4] < (a_int)nev) {
        *arpack_info = (int)info;
        rc = TW_ENUMERIC;
        goto done;
    }
    /* z is column-major (n, nev); order the pairs by descending value */
    for (size_t c = 0; c < nev; c++) {
        size_t best = 0;
        for (size_t t = 1; t < nev; t++)
            if (d[t] > d[best]) best = t;
        val[c] = d[best];
        for (a_int i = 0; i < n; i++) vec[(size_t)i * nev + c] = z[(size_t)best * (size_t)n + (size_t)i];
        d[best] = -INFINITY;
    }
    rc = TW_OK;
done:
    free(resid);
    free(v);
    free(workd);
    free(workl);
    free(d);
    free(z);
    free(select);
    return rc;
}

/* Eigenvectors 2..nc+1 of the normalised Laplacian of op into emb (m, nc)
 * (row stride ld), each sign-fixed and scaled by `scale / max |entry|` over
 * the block when scale > 0. */
static int spectral_block(sym_op *op, size_t nc, size_t dense_max, double scale, double *emb,
                          int *arpack_info)
{
    const size_t nev = nc + 1, m = op->m;
    double *val = malloc(nev * sizeof *val);
    double *vec = malloc(m * nev * sizeof *vec);
    int rc = TW_ENOMEM;
    if (!val || !vec) goto done;
    rc = (m <= dense_max) ? eig_dense(op, nev, val, vec) : eig_arpack(op, nev, val, vec, arpack_info);
    if (rc != TW_OK) goto done;
    double amax = 0.0;
    for (size_t c = 1; c < nev; c++) {
        size_t arg = 0;
        for (size_t i = 0; i < m; i++)
            if (fabs(vec[i * nev + c]) > fabs(vec[arg * nev + c])) arg = i;
        double sign = vec[arg * nev + c] < 0.0 ? -1.0 : 1.0;
        for (size_t i = 0; i < m; i++) {
            double v = sign * vec[i * nev + c];
            emb[i * nc + (c - 1)] = v;
            if (fabs(v) > amax) amax = fabs(v);
        }
    }
    if (scale > 0.0 && amax > 0.0)
        for (size_t i = 0; i < m * nc; i++) emb[i] *= scale / amax;
    rc = TW_OK;
done:
    free(val);
    free(vec);
    return rc;
}

static int degrees(sym_op *op)
{
    op->dinv = malloc((op->m ? op->m : 1) * sizeof *op->dinv);
    if (!op->dinv) return TW_ENOMEM;
    for (size_t i = 0; i < op->m; i++) {
        double s = 0.0;
        for (size_t t = op->indptr[i]; t < op->indptr[i + 1]; t++) s += op->data[t];
        op->dinv[i] = s > 0.0 ? 1.0 / sqrt(s) : 0.0;
    }
    return TW_OK;
}

static void random_fill(float *out, size_t count, double lo, double hi, uint64_t *rng)
{
    for (size_t i = 0; i < count; i++) out[i] = (float)(lo + (hi - lo) * umap_rng_uniform(rng));
}

/* Anchor positions of `count` components (count, nc), max |entry| 1. */
static int component_anchors(const int32_t *label, size_t n, size_t count, const float *x, size_t dim,
                             size_t nc, uint64_t *rng, double *meta, const char **how)
{
    memset(meta, 0, count * nc * sizeof *meta);
    if (count <= 2 * nc) {
        /* umap-learn: +-unit vectors */
        size_t half = (count + 1) / 2;
        for (size_t c = 0; c < count; c++) meta[c * nc + (c % half)] = c < half ? 1.0 : -1.0;
        *how = "unit-vector anchors";
        return TW_OK;
    }
    if (x) {
        /* umap-learn embeds the component centroids spectrally; a PCA of
         * the centroids serves the same purpose here */
        float *cent = calloc(count * dim, sizeof *cent);
        double *acc = calloc(count * dim, sizeof *acc);
        size_t *sz = calloc(count, sizeof *sz);
        int ok = cent && acc && sz;
        if (ok) {
            for (size_t i = 0; i < n; i++) {
                sz[label[i]]++;
                for (size_t j = 0; j < dim; j++) acc[(size_t)label[i] * dim + j] += x[i * dim + j];
            }
            for (size_t c = 0; c < count; c++)
                for (size_t j = 0; j < dim; j++)
                    cent[c * dim + j] = (float)(acc[c * dim + j] / (double)sz[c]);
            size_t k = nc < dim ? nc : dim;
            pca_model pm;
            float *proj = malloc(count * k * sizeof *proj);
            if (proj && pca_fit(cent, count, dim, k, &pm, NULL, 0) == 0) {
                pca_transform(&pm, cent, count, proj);
                pca_free(&pm);
                double amax = 0.0;
                for (size_t c = 0; c < count; c++)
                    for (size_t d = 0; d < k; d++) {
                        meta[c * nc + d] = proj[c * k + d];
                        if (fabs(proj[c * k + d]) > amax) amax = fabs(proj[c * k + d]);
                    }
                if (amax > 0.0) {
                    for (size_t t = 0; t < count * nc; t++) meta[t] /= amax;
                    *how = "PCA anchors of component centroids";
                } else {
                    ok = 0;
                }
            } else {
                ok = 0;
            }
            free(proj);
        }
        free(cent);
        free(acc);
        free(sz);
        if (ok) return TW_OK;
    }
    for (size_t t = 0; t < count * nc; t++) meta[t] = 2.0 * umap_rng_uniform(rng) - 1.0;
    *how = "random anchors";
    return TW_OK;
}

int umap_spectral_init(const umap_graph *g, const float *x, size_t dim, size_t nc, size_t dense_max,
                       uint64_t seed, float *out, char *note, size_t notelen, char *err, size_t errlen)
{
    const size_t n = g->n;
    if (n == 0 || nc == 0 || nc > UMAP_MAX_COMPONENTS || !out) {
        umap_set_err(err, errlen, "umap_spectral_init: bad arguments");
        return TW_EINVAL;
    }
    uint64_t rng = umap_rng_derive(seed, 0x5bec);
    int32_t *label = malloc(n * sizeof *label);
    if (!label || umap_graph_components(g, label) == 0) {
        free(label);
        umap_set_err(err, errlen, "umap_spectral_init: out of memory");
        return TW_ENOMEM;
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if ((size_t)label[i] + 1 > count) count = (size_t)label[i] + 1;
    int rc = TW_OK, arpack_info = 0;

    if (count == 1) {
        double *emb = malloc(n * nc * sizeof *emb);
        sym_op op = {n, g->indptr, g->indices, g->data, NULL};
        rc = emb ? degrees(&op) : TW_ENOMEM;
        if (rc == TW_OK && n > nc + 1)
            rc = spectral_block(&op, nc, dense_max, 0.0, emb, &arpack_info);
        else if (rc == TW_OK)
            rc = TW_ENUMERIC; /* too few vertices for nc + 1 eigenvectors */
        if (rc == TW_OK) {
            for (size_t t = 0; t < n * nc; t++) out[t] = (float)emb[t];
            umap_set_err(note, notelen, "spectral (%s, connected graph)",
                         n <= dense_max ? "LAPACK" : "ARPACK");
        } else if (rc == TW_ENUMERIC) {
            random_fill(out, n * nc, -10.0, 10.0, &rng);
            umap_set_err(note, notelen, "random: the eigensolver failed (ARPACK info %d)", arpack_info);
            rc = TW_OK;
        } else {
            umap_set_err(err, errlen, "umap_spectral_init: out of memory");
        }
        free(op.dinv);
        free(emb);
        free(label);
        return rc;
    }

    /* several components: umap-learn's multi_component_layout */
    double *meta = malloc(count * nc * sizeof *meta);
    size_t *members = malloc(n * sizeof *members); /* vertices by label */
    size_t *start = calloc(count + 1, sizeof *start);
    int32_t *local = malloc(n * sizeof *local); /* global -> local */
    size_t *sub_ptr = malloc((n + 1) * sizeof *sub_ptr);
    int32_t *sub_idx = malloc((g->nnz ? g->nnz : 1) * sizeof *sub_idx);
    float *sub_val = malloc((g->nnz ? g->nnz : 1) * sizeof *sub_val);
    double *emb = malloc(n * nc * sizeof *emb);
    const char *anchors = "";
    size_t n_spectral = 0, n_random = 0, n_failed = 0;
    if (!meta || !members || !start || !local || !sub_ptr || !sub_idx || !sub_val || !emb) {
        rc = TW_ENOMEM;
        goto multi_done;
    }
    component_anchors(label, n, count, x, dim, nc, &rng, meta, &anchors);
    for (size_t i = 0; i < n; i++) start[label[i] + 1]++;
    for (size_t c = 0; c < count; c++) start[c + 1] += start[c];
    {
        size_t *fill = sub_ptr; /* borrowed as a cursor, rebuilt below */
        memcpy(fill, start, count * sizeof *fill);
        for (size_t i = 0; i < n; i++) {
            local[i] = (int32_t)(fill[label[i]] - start[label[i]]);
            members[fill[label[i]]++] = i;
        }
    }
    for (size_t c = 0; c < count && rc == TW_OK; c++) {
        const size_t m = start[c + 1] - start[c];
        const size_t *mem = members + start[c];
        double range = INFINITY;
        for (size_t o = 0; o < count; o++) {
            double s = 0.0;
            for (size_t d = 0; d < nc; d++) {
                double t = meta[c * nc + d] - meta[o * nc + d];
                s += t * t;
            }
            if (s > 0.0 && sqrt(s) < range) range = sqrt(s);
        }
        range = isinf(range) ? 1.0 : range / 2.0;
        int spectral = !(m < 2 * nc || m <= nc + 1);
        if (spectral) {
            size_t nnz = 0;
            sub_ptr[0] = 0;
            for (size_t v = 0; v < m; v++) {
                size_t gi = mem[v];
                for (size_t t = g->indptr[gi]; t < g->indptr[gi + 1]; t++) {
                    sub_idx[nnz] = local[g->indices[t]];
                    sub_val[nnz] = g->data[t];
                    nnz++;
                }
                sub_ptr[v + 1] = nnz;
            }
            sym_op op = {m, sub_ptr, sub_idx, sub_val, NULL};
            rc = degrees(&op);
            if (rc == TW_OK) {
                rc = spectral_block(&op, nc, dense_max, range, emb, &arpack_info);
                if (rc == TW_ENUMERIC) {
                    n_failed++;
                    spectral = 0;
                    rc = TW_OK;
                }
            }
            free(op.dinv);
            if (rc != TW_OK) break;
            if (spectral) {
                n_spectral++;
                for (size_t v = 0; v < m; v++)
                    for (size_t d = 0; d < nc; d++)
                        out[mem[v] * nc + d] = (float)(emb[v * nc + d] + meta[c * nc + d]);
            }
        }
        if (!spectral) {
            n_random++;
            for (size_t v = 0; v < m; v++)
                for (size_t d = 0; d < nc; d++)
                    out[mem[v] * nc + d] =
                        (float)(meta[c * nc + d] + range * (2.0 * umap_rng_uniform(&rng) - 1.0));
        }
    }
    if (rc == TW_OK)
        umap_set_err(note, notelen,
                     "spectral per component: %zu components (%s), %zu "
                     "spectral, %zu random (%zu eigensolver failures)",
                     count, anchors, n_spectral, n_random, n_failed);
multi_done:
    if (rc == TW_ENOMEM) umap_set_err(err, errlen, "umap_spectral_init: out of memory");
    free(meta);
    free(members);
    free(start);
    free(local);
    free(sub_ptr);
    free(sub_idx);
    free(sub_val);
    free(emb);
    free(label);
    return rc;
}
