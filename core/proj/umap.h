/* UMAP (McInnes, Healy, Melville 2018) in C, following umap-learn 0.5's
 * behaviour: exact Euclidean kNN over BLAS, smooth kNN distances, the fuzzy
 * union of the local fuzzy simplicial sets, a/b fitted from min_dist and
 * spread, spectral (Laplacian eigenmap, ARPACK) initialisation, SGD with
 * negative sampling, and transform of new points into a fitted layout.
 *
 * Everything here is computation: no HTTP, no logging, no exit(). Functions
 * that can fail return 0 on success or a negative UMAP_E* code and write one
 * line into err (err may be NULL when errlen is 0).
 *
 * Threads: n_threads counts the pthreads the SGD of a fit starts (the
 * calling thread is one of them). Matrix products (kNN) go through
 * cblas_sgemm, which uses OpenBLAS's own thread pool: the caller decides its
 * size (openblas_set_num_threads) before calling. Only the eigensolver
 * (ARPACK keeps global state) is serialised by a lock: fits may run
 * concurrently, and transforms always can.
 *
 * Determinism: a fit is a pure function of the data and the settings other
 * than n_threads: the same seed gives a bit-identical layout whatever the
 * thread count (the SGD works on a fixed split of the vertices into chunks,
 * each with its own random streams, reading other chunks from a per-epoch
 * snapshot; threads only decide who processes a chunk). Transform is
 * deterministic for a given model and input, also thread-independent.
 *
 * Split over: umap.c (fit/transform orchestration, progress),
 * umap_knn.c (kNN, smooth kNN distances, fuzzy graph), umap_spectral.c
 * (initialisation), umap_layout.c (a/b fit, epoch schedule, SGD),
 * umap_io.c (hashing, save/load).
 */
#ifndef TW_UMAP_H
#define TW_UMAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* Return codes: TW_OK or a base/status.h code (TW_EINVAL bad arguments,
 * settings or data; TW_ENOMEM; TW_ECANCELED when umap_progress.cancel was
 * set; TW_EIO; and from umap_load TW_ENOENT, TW_EFORMAT for a corrupt or
 * truncated file, TW_EMISMATCH for a valid file of another key or shape;
 * TW_ENUMERIC when the eigensolver or the fit did not converge). */

#define UMAP_MAX_COMPONENTS 16
#define UMAP_MAX_NEIGHBORS  256

typedef enum {
    UMAP_INIT_SPECTRAL = 0, /* Laplacian eigenmap of the fuzzy graph */
    UMAP_INIT_RANDOM = 1,   /* uniform in [-10, 10] */
} umap_init;

typedef struct {
    size_t n_components;         /* output width, 1..UMAP_MAX_COMPONENTS (3) */
    size_t n_neighbors;          /* k, counting the point itself, 2..256 (15) */
    float min_dist;              /* 0 <= min_dist <= spread (0.1) */
    float spread;                /* > 0 (1.0) */
    size_t n_epochs;             /* 0: umap-learn's rule, 500 if n <= 10000
                                    else 200; transform: 100 if <= 10000 new
                                    points else 30, or n_epochs/3 if set */
    float learning_rate;         /* initial SGD step alpha (1.0) */
    float repulsion_strength;    /* gamma (1.0) */
    size_t negative_sample_rate; /* negative samples per positive (5) */
    float local_connectivity;    /* >= 0 (1.0) */
    float set_op_mix_ratio;      /* 1 = fuzzy union, 0 = intersection (1.0) */
    umap_init init;              /* (UMAP_INIT_SPECTRAL) */
    uint64_t seed;               /* random seed (42) */
    size_t n_threads;            /* SGD threads, 1..256 (1); does not
                                    change the result */
} umap_params;

/* A fitted layout. Holds no pointer to the training data: transform takes
 * the same rows again from the caller. */
typedef struct {
    umap_params params;  /* settings of the fit (n_epochs as requested) */
    size_t n;            /* training rows */
    size_t dim;          /* input width D */
    size_t n_epochs_fit; /* epochs the fit actually ran (resolved rule) */
    float a, b;          /* curve 1 / (1 + a d^(2b)) */
    float *embedding;    /* (n, n_components) owned; umap_model_free */
    uint64_t key;        /* caller's cache key, stored by umap_save */
    char init_note[160]; /* how the layout was initialised, for the log */
} umap_model;

/* Progress of a running fit, shared with other threads. The caller owns the
 * struct (zero it or call umap_progress_reset), passes it to umap_fit, and
 * may read it at any time from any thread; setting cancel to non-zero makes
 * the fit stop at its next check (within one block of kNN rows or one
 * epoch) and return TW_ECANCELED. */
typedef enum {
    UMAP_STAGE_IDLE = 0,
    UMAP_STAGE_KNN = 1,      /* done/total: units of 1024 distances */
    UMAP_STAGE_GRAPH = 2,    /* smooth kNN distances and fuzzy union */
    UMAP_STAGE_INIT = 3,     /* spectral initialisation */
    UMAP_STAGE_OPTIMIZE = 4, /* done/total: epochs */
    UMAP_STAGE_DONE = 5,
} umap_stage;

typedef struct {
    atomic_int stage;  /* umap_stage */
    atomic_long done;  /* units finished within the stage */
    atomic_long total; /* units of the stage */
    atomic_int cancel; /* written by the caller */
    atomic_long rows;  /* rows of the fit (umap_fit sets it; 0: unknown) */
} umap_progress;

void umap_progress_reset(umap_progress *p);

/* Overall completion estimate in [0, 1] (stages weighted by their typical
 * share of the run time: the kNN's n^2 flops against the epochs' n, so
 * n / (n + 40000) of the run, 0.2 at 10,000 rows and when rows is 0).
 * Safe to call concurrently with the fit. */
double umap_progress_fraction(const umap_progress *p);

/* Fills the defaults listed in umap_params (the paper's settings). */
void umap_params_default(umap_params *p);

/* Checks p for a fit on n rows (n > n_neighbors is required). */
int umap_params_check(const umap_params *p, size_t n, char *err, size_t errlen);

/* Fits a layout of x (n, dim), row-major, finite values. On success *out
 * owns a new embedding (umap_model_free), out->key is 0. On failure *out is
 * left empty (safe to free). prog may be NULL. x must stay unchanged during
 * the call; it is not retained. */
int umap_fit(const float *x, size_t n, size_t dim, const umap_params *p, umap_progress *prog, umap_model *out,
             char *err, size_t errlen);

/* Places m new rows y (m, dim) into the fitted layout: kNN of y among the
 * training rows x_train (model->n, model->dim) — the same matrix the model
 * was fitted on —, smooth kNN weights, the weighted mean of the neighbours'
 * positions as start, then SGD of the new points only against the fixed
 * layout. out (m, n_components) is written by the caller's buffer.
 * Thread-safe: the model and x_train are only read. */
int umap_transform(const umap_model *model, const float *x_train, const float *y, size_t m, float *out,
                   char *err, size_t errlen);

/* umap_transform with the kNN of y among the training rows given: row i's
 * n_neighbors nearest at idx + i * ldk and dist + i * ldk (ldk >=
 * n_neighbors; a longer list's first n_neighbors), as umap_knn finds them
 * (umap_knn_feed). The same layout as umap_transform's. */
int umap_transform_knn(const umap_model *model, const float *y, size_t m, const int32_t *idx,
                       const float *dist, size_t ldk, float *out, char *err, size_t errlen);

/* Releases the embedding; idempotent; leaves *m zeroed. */
void umap_model_free(umap_model *m);

/* ---- persistence (umap_io.c) -------------------------------------------
 * File: 128-byte little-endian header ("TWDUMAP1", version, key, n, dim,
 * every setting, a, b, payload size, 64-bit checksum of header and payload)
 * followed by the embedding as float32. Written to a temporary file in the
 * same folder, fsync'ed, then renamed over path: readers never see a partial
 * file. */

/* Saves m (with m->key) to path atomically. */
int umap_save(const umap_model *m, const char *path, char *err, size_t errlen);

/* Loads path into *out if the file is intact and was saved with exactly
 * `key` for a fit of n rows of width dim. Returns TW_ENOENT when the file
 * does not exist, TW_EMISMATCH for another key or shape, TW_EFORMAT for
 * a corrupt file; *out is empty on any failure. */
int umap_load(const char *path, uint64_t key, size_t n, size_t dim, umap_model *out, char *err,
              size_t errlen);

/* 64-bit hash of count floats (their bytes as stored, host order; the
 * project targets little-endian hosts). Not cryptographic; for cache keys. */
uint64_t umap_hash_floats(const float *x, size_t count, uint64_t seed);

/* Cache key of a layout: combines data_hash (e.g. umap_hash_floats of the
 * training rows, or a checkpoint content hash mixed with the row count) with
 * every field of p except n_threads (it does not change the layout) and the
 * file format version. */
/* The key also covers the fit's algorithm revision, so a daemon updated to a
 * fit that draws differently refits instead of loading an older layout. */
uint64_t umap_cache_key(uint64_t data_hash, const umap_params *p);

/* ---- building blocks (exposed for tests and reuse) ---------------------- */

/* Exact k nearest neighbours, Euclidean. For each query row i of q (m, dim)
 * writes the k nearest reference rows of x (n, dim) into idx (m, k) and their
 * distances (not squared) into dist (m, k), ascending, ties by index.
 * same_set != 0 means q is x (same pointer, m == n): row i is its own first
 * neighbour at distance exactly 0, as in umap-learn, and only the upper
 * triangle of row panels is multiplied (half the flops). Squared distances
 * come from blocked sgemm (|x|^2 + |y|^2 - 2 x.y); the best k + 8 candidates
 * per row are then measured again directly in double. Requires k <= n. prog
 * may be NULL (its KNN stage counts units of 1024 distances; cancel is
 * honoured per panel). */
int umap_knn(const float *x, size_t n, const float *q, size_t m, size_t dim, size_t k, int same_set,
             int32_t *idx, float *dist, umap_progress *prog, char *err, size_t errlen);

/* The same kNN of m new rows q (m, dim) among x (n, dim) as umap_knn with
 * same_set 0, for a caller that has the products q_i . x_j already (another
 * analysis's GEMM of the same rows, core/ana/lens.c): fed those block by
 * block, it keeps the best k + 8 candidates of each row by the float score
 * |x_j|^2 - 2 q_i . x_j (xn: the squared norms of umap_row_norms) and
 * measures them again in double, as umap_knn does, so the lists are
 * umap_knn's.
 *   umap_knn_feed_new     NULL when memory runs out or arguments are bad
 *                         (k in 1..n); x, xn and q are kept, not copied
 *   umap_knn_feed_dots    dots (b) of row i against x_{j0} .. x_{j0+b-1};
 *                         columns at n and beyond are ignored; calls for
 *                         different rows may run concurrently
 *   umap_knn_feed_finish  the lists into idx (m, k) and dist (m, k), rows
 *                         split over threads; TW_OK or TW_ENOMEM */
typedef struct umap_knn_feed umap_knn_feed;
umap_knn_feed *umap_knn_feed_new(const float *x, size_t n, const float *xn, const float *q, size_t m,
                                 size_t dim, size_t k);
void umap_knn_feed_dots(umap_knn_feed *f, size_t i, const float *dots, size_t b, size_t j0);
int umap_knn_feed_finish(umap_knn_feed *f, int32_t *idx, float *dist);
void umap_knn_feed_free(umap_knn_feed *f);

/* Squared norms of the rows of x (n, dim), accumulated in double, as
 * umap_knn ranks by. */
void umap_row_norms(const float *x, size_t n, size_t dim, float *xn);

/* Slow reference: the same result by direct double-precision distances. */
void umap_knn_naive(const float *x, size_t n, const float *q, size_t m, size_t dim, size_t k, int same_set,
                    int32_t *idx, float *dist);

/* umap-learn's smooth_knn_dist. dist (n, k) ascending kNN distances of each
 * row (first column the point itself in a fit). For each row: rho = the
 * local_connectivity-th non-zero distance (interpolated), sigma found by
 * 64 steps of bisection so that sum_{j>=1} exp(-max(0, d_j - rho)/sigma) =
 * log2(k) * bandwidth, floored at 1e-3 times the row's mean distance (or the
 * global mean when rho is 0). Writes sigma (n) and rho (n). */
void umap_smooth_knn_dist(const float *dist, size_t n, size_t k, float local_connectivity, float bandwidth,
                          float *sigma, float *rho);

/* Sparse symmetric graph in CSR: row i's entries are indices/data
 * [indptr[i], indptr[i+1]), columns ascending. Owned arrays. */
typedef struct {
    size_t n;         /* vertices */
    size_t nnz;       /* stored entries (both directions of each edge) */
    size_t *indptr;   /* (n + 1) */
    int32_t *indices; /* (nnz) */
    float *data;      /* (nnz) membership strengths in (0, 1] */
} umap_graph;

void umap_graph_free(umap_graph *g);

/* Fuzzy simplicial set of a kNN graph: membership
 * exp(-(d - rho_i) / sigma_i) (1 when d <= rho_i or sigma_i == 0; the point
 * itself excluded), then mix * (A + A^T - A.A^T) + (1 - mix) * A.A^T with
 * zeros removed. idx/dist (n, k) from umap_knn, sigma/rho (n). */
int umap_fuzzy_graph(const int32_t *idx, const float *dist, size_t n, size_t k, const float *sigma,
                     const float *rho, float mix_ratio, umap_graph *g, char *err, size_t errlen);

/* umap-learn's find_ab_params: least-squares fit (Levenberg-Marquardt, from
 * a = b = 1) of 1 / (1 + a x^(2b)) to 1 for x < min_dist and
 * exp(-(x - min_dist) / spread) beyond, on 300 points of [0, 3 spread]. */
int umap_find_ab(float spread, float min_dist, float *a, float *b);

/* Epochs between samples of each edge: n_epochs / (n_epochs * w / max w),
 * -1 for zero weights. w (nnz) -> eps (nnz). */
void umap_epochs_per_sample(const float *w, size_t nnz, size_t n_epochs, double *eps);

/* Spectral initialisation, unscaled: for each connected component the
 * eigenvectors 2..n_components+1 of I - D^-1/2 W D^-1/2 (largest of
 * D^-1/2 W D^-1/2: ARPACK for more than dense_max vertices, LAPACK below),
 * signs fixed so each vector's largest-magnitude entry is positive. Several
 * components are placed as umap-learn's multi_component_layout does (unit
 * vectors +-e_i as anchors, or PCA of the component centroids of x when there
 * are more than 2 n_components of them; x (n, dim) may be NULL then random
 * anchors are used). Falls back to uniform random in [-10, 10] if the
 * eigensolver fails; note (may be NULL) receives one line saying what was
 * done. out (g->n, n_components). */
int umap_spectral_init(const umap_graph *g, const float *x, size_t dim, size_t n_components, size_t dense_max,
                       uint64_t seed, float *out, char *note, size_t notelen, char *err, size_t errlen);

#endif
