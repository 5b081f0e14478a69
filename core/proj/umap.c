/* UMAP: fit and transform (the pipeline of umap-learn's UMAP.fit and
 * UMAP.transform over the building blocks in umap_knn.c, umap_spectral.c,
 * umap_layout.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/scratch.h"
#include "core/proj/umap_internal.h"

/* Graphs up to this many vertices get their eigenvectors from dense LAPACK
 * (robust for small graphs, where ARPACK's Krylov space would be most of
 * the matrix anyway). */
#define UMAP_DENSE_EIGEN_MAX 400

void umap_params_default(umap_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_components = 3;
    p->n_neighbors = 15;
    p->min_dist = 0.1f;
    p->spread = 1.0f;
    p->n_epochs = 0;
    p->learning_rate = 1.0f;
    p->repulsion_strength = 1.0f;
    p->negative_sample_rate = 5;
    p->local_connectivity = 1.0f;
    p->set_op_mix_ratio = 1.0f;
    p->init = UMAP_INIT_SPECTRAL;
    p->seed = 42;
    p->n_threads = 1;
}

int umap_params_check(const umap_params *p, size_t n, char *err, size_t errlen)
{
#define BAD(...)                                                                                             \
    do {                                                                                                     \
        umap_set_err(err, errlen, __VA_ARGS__);                                                              \
        return TW_EINVAL;                                                                                    \
    } while (0)
    if (!p) BAD("umap: no parameters");
    if (p->n_components < 1 || p->n_components > UMAP_MAX_COMPONENTS)
        BAD("umap: n_components must be 1..%d", UMAP_MAX_COMPONENTS);
    if (p->n_neighbors < 2 || p->n_neighbors > UMAP_MAX_NEIGHBORS)
        BAD("umap: n_neighbors must be 2..%d", UMAP_MAX_NEIGHBORS);
    if (n <= p->n_neighbors) BAD("umap: %zu rows, need more than n_neighbors (%zu)", n, p->n_neighbors);
    if (n > INT32_MAX) BAD("umap: too many rows (%zu)", n);
    if (!(p->spread > 0.0f) || !isfinite(p->spread)) BAD("umap: spread must be > 0");
    if (!(p->min_dist >= 0.0f) || !(p->min_dist <= p->spread)) BAD("umap: min_dist must be in [0, spread]");
    if (p->n_epochs > 100000) BAD("umap: n_epochs must be at most 100000");
    if (!(p->learning_rate > 0.0f) || !isfinite(p->learning_rate)) BAD("umap: learning_rate must be > 0");
    if (!(p->repulsion_strength >= 0.0f) || !isfinite(p->repulsion_strength))
        BAD("umap: repulsion_strength must be >= 0");
    if (p->negative_sample_rate < 1 || p->negative_sample_rate > 1000)
        BAD("umap: negative_sample_rate must be 1..1000");
    if (!(p->local_connectivity >= 0.0f) || !(p->local_connectivity <= (float)p->n_neighbors))
        BAD("umap: local_connectivity must be in [0, n_neighbors]");
    if (!(p->set_op_mix_ratio >= 0.0f) || !(p->set_op_mix_ratio <= 1.0f))
        BAD("umap: set_op_mix_ratio must be in [0, 1]");
    if (p->init != UMAP_INIT_SPECTRAL && p->init != UMAP_INIT_RANDOM)
        BAD("umap: unknown init %d", (int)p->init);
    if (p->n_threads < 1 || p->n_threads > 256) BAD("umap: n_threads must be 1..256");
    return TW_OK;
#undef BAD
}

void umap_progress_reset(umap_progress *p)
{
    atomic_store(&p->stage, UMAP_STAGE_IDLE);
    atomic_store(&p->done, 0);
    atomic_store(&p->total, 0);
    atomic_store(&p->cancel, 0);
    atomic_store(&p->rows, 0);
}

double umap_progress_fraction(const umap_progress *p)
{
    /* start of each stage in the overall run. The kNN's share s grows
     * with the rows n (n^2 d flops against the epochs' work in n): measured
     * on 10,000 x 768, 2 threads, 13% with OpenBLAS's SkylakeX kernels,
     * 30% with its generic ones; on 50,257 rows 55-72% (Zen kernels, under
     * load); s = n / (n + 40000) gives 0.20 and 0.56. Of the rest, graph
     * and initialisation take 2.5% and 3.75%, the epochs the remainder. */
    umap_progress *q = (umap_progress *)p; /* atomic loads of a const view */
    const long rows = atomic_load(&q->rows);
    const double s = rows > 0 ? (double)rows / ((double)rows + 40000.0) : 0.20;
    const double begin[] = {0.0, 0.0, s, s + 0.025 * (1.0 - s), s + 0.0625 * (1.0 - s), 1.0};
    int stage = atomic_load(&q->stage);
    if (stage < UMAP_STAGE_IDLE || stage > UMAP_STAGE_DONE) return 0.0;
    if (stage == UMAP_STAGE_DONE) return 1.0;
    if (stage == UMAP_STAGE_IDLE) return 0.0;
    long done = atomic_load(&q->done), total = atomic_load(&q->total);
    double within = total > 0 ? (double)done / (double)total : 0.0;
    if (within < 0.0) within = 0.0;
    if (within > 1.0) within = 1.0;
    return begin[stage] + within * (begin[stage + 1] - begin[stage]);
}

void umap_model_free(umap_model *m)
{
    if (!m) return;
    free(m->embedding);
    memset(m, 0, sizeof *m);
}

/* The kNN of n rows and their local scales, in S. */
typedef struct {
    int32_t *idx; /* (n, k) */
    float *dist;  /* (n, k) */
    float *sigma; /* (n) */
    float *rho;   /* (n) */
} knn_rows;

static knn_rows knn_rows_alloc(scratch *S, size_t n, size_t k)
{
    return (knn_rows){scratch_alloc(S, n * k, sizeof(int32_t)), scratch_alloc(S, n * k, sizeof(float)),
                      scratch_alloc(S, n, sizeof(float)), scratch_alloc(S, n, sizeof(float))};
}

/* umap-learn's epoch rule for a fit of n rows. */
static size_t fit_epochs(const umap_params *p, size_t n)
{
    if (p->n_epochs > 0) return p->n_epochs;
    return n <= 10000 ? 500 : 200;
}

/* Drops graph entries below max / n_epochs (umap-learn: they would be
 * sampled less than once), compacting the CSR in place. */
static void graph_prune(umap_graph *g, size_t n_epochs)
{
    float wmax = 0.0f;
    for (size_t t = 0; t < g->nnz; t++)
        if (g->data[t] > wmax) wmax = g->data[t];
    const float cut = wmax / (float)n_epochs;
    size_t w = 0, row_begin = 0;
    for (size_t i = 0; i < g->n; i++) {
        size_t end = g->indptr[i + 1];
        for (size_t t = row_begin; t < end; t++)
            if (!(g->data[t] < cut)) {
                g->indices[w] = g->indices[t];
                g->data[w] = g->data[t];
                w++;
            }
        row_begin = end;
        g->indptr[i + 1] = w;
    }
    g->nnz = w;
}

/* Spectral/random start as umap-learn's simplicial_set_embedding: spectral
 * layout scaled to max |entry| 10 plus N(0, 1e-4) noise, or uniform
 * [-10, 10]; then every column mapped onto [0, 10]. */
static int initial_layout(const umap_graph *g, const float *x, size_t dim, const umap_params *p, float *emb,
                          char *note, size_t notelen, char *err, size_t errlen)
{
    const size_t n = g->n, nc = p->n_components;
    uint64_t rng = umap_rng_derive(p->seed, 0x1417);
    if (p->init == UMAP_INIT_RANDOM) {
        for (size_t t = 0; t < n * nc; t++) emb[t] = (float)(-10.0 + 20.0 * umap_rng_uniform(&rng));
        umap_set_err(note, notelen, "random (uniform in [-10, 10])");
    } else {
        int rc =
            umap_spectral_init(g, x, dim, nc, UMAP_DENSE_EIGEN_MAX, p->seed, emb, note, notelen, err, errlen);
        if (rc != TW_OK) return rc;
        double amax = 0.0;
        for (size_t t = 0; t < n * nc; t++)
            if (fabs(emb[t]) > amax) amax = fabs(emb[t]);
        double expansion = amax > 0.0 ? 10.0 / amax : 1.0;
        for (size_t t = 0; t < n * nc; t++)
            emb[t] = (float)(emb[t] * expansion) + (float)(1e-4 * umap_rng_normal(&rng));
    }
    for (size_t d = 0; d < nc; d++) {
        float lo = emb[d], hi = emb[d];
        for (size_t i = 0; i < n; i++) {
            float v = emb[i * nc + d];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        float span = hi - lo;
        for (size_t i = 0; i < n; i++)
            emb[i * nc + d] = span > 0.0f ? 10.0f * (emb[i * nc + d] - lo) / span : 0.0f;
    }
    return TW_OK;
}

int umap_fit(const float *x, size_t n, size_t dim, const umap_params *p, umap_progress *prog, umap_model *out,
             char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!x || dim == 0) {
        umap_set_err(err, errlen, "umap_fit: no data");
        return TW_EINVAL;
    }
    int rc = umap_params_check(p, n, err, errlen);
    if (rc != TW_OK) return rc;
    for (size_t t = 0; t < n * dim; t++)
        if (!isfinite(x[t])) {
            umap_set_err(err, errlen, "umap_fit: non-finite value at row %zu", t / dim);
            return TW_EINVAL;
        }
    if (prog) atomic_store(&prog->rows, (long)n);
    const size_t k = p->n_neighbors, nc = p->n_components;
    const size_t n_epochs = fit_epochs(p, n);
    float a, b;
    if (umap_find_ab(p->spread, p->min_dist, &a, &b) != TW_OK) {
        umap_set_err(err, errlen, "umap_fit: a/b fit failed (spread %g, min_dist %g)", (double)p->spread,
                     (double)p->min_dist);
        return TW_ENUMERIC;
    }
    scratch S = {0};
    knn_rows kr = knn_rows_alloc(&S, n, k);
    float *emb = malloc(n * nc * sizeof *emb);
    double *eps = NULL;
    umap_graph g = {0};
    char note[sizeof out->init_note] = "";
    if (S.failed || !emb) {
        umap_set_err(err, errlen, "umap_fit: out of memory (n=%zu)", n);
        rc = TW_ENOMEM;
        goto done;
    }
    rc = umap_knn(x, n, x, n, dim, k, 1, kr.idx, kr.dist, prog, err, errlen);
    if (rc != TW_OK) goto done;

    umap_progress_set(prog, UMAP_STAGE_GRAPH, 0, 1);
    umap_smooth_knn_dist(kr.dist, n, k, p->local_connectivity, 1.0f, kr.sigma, kr.rho);
    rc = umap_fuzzy_graph(kr.idx, kr.dist, n, k, kr.sigma, kr.rho, p->set_op_mix_ratio, &g, err, errlen);
    if (rc != TW_OK) goto done;
    graph_prune(&g, n_epochs > 10 ? n_epochs : (n <= 10000 ? 500 : 200));
    if (umap_cancelled(prog)) {
        rc = TW_ECANCELED;
        umap_set_err(err, errlen, "umap_fit: cancelled");
        goto done;
    }

    umap_progress_set(prog, UMAP_STAGE_INIT, 0, 1);
    rc = initial_layout(&g, x, dim, p, emb, note, sizeof note, err, errlen);
    if (rc != TW_OK) goto done;
    if (umap_cancelled(prog)) {
        rc = TW_ECANCELED;
        umap_set_err(err, errlen, "umap_fit: cancelled");
        goto done;
    }

    eps = malloc((g.nnz ? g.nnz : 1) * sizeof *eps);
    if (!eps) {
        rc = TW_ENOMEM;
        umap_set_err(err, errlen, "umap_fit: out of memory (%zu edges)", g.nnz);
        goto done;
    }
    umap_epochs_per_sample(g.data, g.nnz, n_epochs, eps);
    rc = umap_optimize_fit(emb, n, nc, &g, eps, n_epochs, a, b, p->repulsion_strength, p->learning_rate,
                           p->negative_sample_rate, p->n_threads, umap_rng_derive(p->seed, 0x5d9), prog);
    if (rc == TW_ECANCELED)
        umap_set_err(err, errlen, "umap_fit: cancelled");
    else if (rc != TW_OK)
        umap_set_err(err, errlen, "umap_fit: could not start %zu threads", p->n_threads);
    if (rc != TW_OK) goto done;

    *out = (umap_model){
        .params = *p, .n = n, .dim = dim, .n_epochs_fit = n_epochs, .a = a, .b = b, .embedding = emb};
    memcpy(out->init_note, note, sizeof note);
    emb = NULL;
    umap_progress_set(prog, UMAP_STAGE_DONE, 1, 1);
done:
    scratch_free(&S);
    free(emb);
    free(eps);
    umap_graph_free(&g);
    return rc;
}

/* The arguments and the rows of a transform: TW_OK, or TW_EINVAL with err. */
static int transform_check(const umap_model *model, const float *y, size_t m, const float *out, char *err,
                           size_t errlen)
{
    if (!model || !model->embedding || (!y && m > 0) || (!out && m > 0)) {
        umap_set_err(err, errlen, "umap_transform: bad arguments");
        return TW_EINVAL;
    }
    for (size_t t = 0; t < m * model->dim; t++)
        if (!isfinite(y[t])) {
            umap_set_err(err, errlen, "umap_transform: non-finite value at row %zu", t / model->dim);
            return TW_EINVAL;
        }
    return TW_OK;
}

static int transform_rows(const umap_model *model, const float *x_train, const float *y, size_t m,
                          const int32_t *kidx, const float *kdist, size_t ldk, float *out, char *err,
                          size_t errlen);

int umap_transform(const umap_model *model, const float *x_train, const float *y, size_t m, float *out,
                   char *err, size_t errlen)
{
    if (!x_train) {
        umap_set_err(err, errlen, "umap_transform: bad arguments");
        return TW_EINVAL;
    }
    int rc = transform_check(model, y, m, out, err, errlen);
    return rc != TW_OK || m == 0 ? rc : transform_rows(model, x_train, y, m, NULL, NULL, 0, out, err, errlen);
}

int umap_transform_knn(const umap_model *model, const float *y, size_t m, const int32_t *idx,
                       const float *dist, size_t ldk, float *out, char *err, size_t errlen)
{
    int rc = transform_check(model, y, m, out, err, errlen);
    if (rc != TW_OK || m == 0) return rc;
    if (!idx || !dist || ldk < model->params.n_neighbors) {
        umap_set_err(err, errlen, "umap_transform: bad arguments");
        return TW_EINVAL;
    }
    return transform_rows(model, NULL, y, m, idx, dist, ldk, out, err, errlen);
}

/* The transform of m >= 1 checked rows: their kNN among x_train, or the
 * first n_neighbors of each row of kidx/kdist (stride ldk) when x_train is
 * NULL. */
static int transform_rows(const umap_model *model, const float *x_train, const float *y, size_t m,
                          const int32_t *kidx, const float *kdist, size_t ldk, float *out, char *err,
                          size_t errlen)
{
    const umap_params *p = &model->params;
    const size_t n = model->n, dim = model->dim, k = p->n_neighbors, nc = p->n_components;
    scratch S = {0};
    const knn_rows kr = knn_rows_alloc(&S, m, k);
    const int32_t *idx = kr.idx;
    const float *dist = kr.dist, *sigma = kr.sigma, *rho = kr.rho;
    float *w = scratch_alloc(&S, m * k, sizeof *w);
    size_t *indptr = scratch_alloc(&S, m + 1, sizeof *indptr);
    int32_t *cols = scratch_alloc(&S, m * k, sizeof *cols);
    float *vals = scratch_alloc(&S, m * k, sizeof *vals);
    double *eps = scratch_alloc(&S, m * k, sizeof *eps);
    int rc = TW_ENOMEM;
    if (S.failed) {
        umap_set_err(err, errlen, "umap_transform: out of memory (m=%zu)", m);
        goto done;
    }
    if (x_train) {
        rc = umap_knn(x_train, n, y, m, dim, k, 0, kr.idx, kr.dist, NULL, err, errlen);
        if (rc != TW_OK) goto done;
    } else {
        for (size_t i = 0; i < m; i++) {
            memcpy(kr.idx + i * k, kidx + i * ldk, k * sizeof *kr.idx);
            memcpy(kr.dist + i * k, kdist + i * ldk, k * sizeof *kr.dist);
        }
    }
    /* umap-learn lowers local_connectivity by one for new points */
    float lc = p->local_connectivity - 1.0f;
    umap_smooth_knn_dist(kr.dist, m, k, lc > 0.0f ? lc : 0.0f, 1.0f, kr.sigma, kr.rho);

    /* memberships (bipartite: no self edge), start positions */
    for (size_t i = 0; i < m; i++) {
        double wsum = 0.0;
        int32_t exact = -1;
        for (size_t j = 0; j < k; j++) {
            double e = (double)dist[i * k + j] - rho[i];
            float v = (e <= 0.0 || sigma[i] == 0.0f) ? 1.0f : (float)exp(-(e / sigma[i]));
            w[i * k + j] = v;
            wsum += v;
            if (v == 1.0f && (exact < 0 || idx[i * k + j] < exact)) exact = idx[i * k + j];
        }
        float *o = out + i * nc;
        if (exact >= 0 || !(wsum > 0.0)) {
            /* identical to a training row (or no weight at all: the
             * nearest one) */
            int32_t src = exact >= 0 ? exact : idx[i * k];
            memcpy(o, model->embedding + (size_t)src * nc, nc * sizeof *o);
        } else {
            for (size_t d = 0; d < nc; d++) {
                double s = 0.0;
                for (size_t j = 0; j < k; j++)
                    s += w[i * k + j] * (double)model->embedding[(size_t)idx[i * k + j] * nc + d];
                o[d] = (float)(s / wsum);
            }
        }
    }
    size_t n_epochs;
    if (p->n_epochs == 0)
        n_epochs = m <= 10000 ? 100 : 30;
    else
        n_epochs = p->n_epochs / 3 > 0 ? p->n_epochs / 3 : 1;
    float wmax = 0.0f;
    for (size_t t = 0; t < m * k; t++) wmax = w[t] > wmax ? w[t] : wmax;
    const float cut = wmax / (float)n_epochs;
    size_t nnz = 0;
    indptr[0] = 0;
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < k; j++)
            if (w[i * k + j] > 0.0f && !(w[i * k + j] < cut)) {
                cols[nnz] = idx[i * k + j];
                vals[nnz] = w[i * k + j];
                nnz++;
            }
        indptr[i + 1] = nnz;
    }
    umap_epochs_per_sample(vals, nnz, n_epochs, eps);
    umap_optimize_transform(out, m, model->embedding, n, nc, indptr, cols, eps, n_epochs, model->a, model->b,
                            p->repulsion_strength, p->learning_rate / 4.0f, p->negative_sample_rate,
                            umap_rng_derive(p->seed, 0x7a5f));
    rc = TW_OK;
done:
    scratch_free(&S);
    return rc;
}
