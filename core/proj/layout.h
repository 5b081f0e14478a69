/* The 3D layouts trajectories are drawn in (docs/MATH.md, projections): PCA
 * of a set of rows (fitted at start, available at once) and UMAP of the same
 * rows, fitted once in a background thread and kept on disk under
 * `cache_dir`, keyed by the rows' content hash and the settings, so that a
 * restarted daemon reloads the layout instead of refitting it.
 *
 * Threads: layout_start spawns at most one thread (the UMAP fit); every
 * other function may be called from any thread at any time. The rows must
 * stay valid and unchanged until layout_stop. */
#ifndef TW_LAYOUT_H
#define TW_LAYOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct layout_service layout_service;

typedef enum { PROJ_PCA = 0, PROJ_UMAP = 1 } proj_kind;

typedef struct {
    size_t rows; /* rows of the matrix to fit on (from the first) */
    bool umap;   /* fit the UMAP layout at all */
    size_t umap_neighbors;
    size_t umap_epochs; /* 0: umap-learn's rule */
    uint64_t umap_seed;
    size_t threads;       /* threads of the fit; 0: one per core */
    char cache_dir[4096]; /* folder of saved layouts; empty: keep none */
} layout_settings;

/* Fits PCA of the first s->rows rows of data (n, dim) now and starts the
 * UMAP thread (or loads the saved layout) unless s->umap is false. NULL with
 * one line in err when PCA cannot be fitted or memory runs out. */
layout_service *layout_start(const float *data, size_t n, size_t dim, const layout_settings *s, char *err,
                             size_t errlen);

/* Cancels a running fit, joins the thread, frees everything. NULL ok. */
void layout_stop(layout_service *p);

/* Projects m rows y (m, dim) into out (m, 3). TW_OK; TW_ENOTREADY while
 * the UMAP layout is being fitted (then *progress in [0,1) and a message in
 * msg); another code when it failed or is disabled (message in msg). */
int layout_apply(layout_service *p, proj_kind kind, const float *y, size_t m, float *out, double *progress,
                 char *msg, size_t msglen);

/* The fitted rows' 3D points: a pointer valid while p lives, and the count;
 * NULL (with *rc, progress and msg as layout_apply's) when not ready. */
const float *layout_points(layout_service *p, proj_kind kind, size_t *n, int *rc, double *progress, char *msg,
                           size_t msglen);

/* Number of rows the layouts are fitted on. */
size_t layout_rows(const layout_service *p);

/* {"state", "progress", "stage", "rows", "from_cache", "fit_seconds", ...,
 * "faithfulness": {"umap", "pca"}} with the figures computed so far (it
 * never waits). */
json_t *layout_status_json(layout_service *p);

/* 1 when the UMAP layout is ready, and the fit's progress in [0, 1]. */
int layout_umap_ready(layout_service *p, double *progress);

/* How faithful a layout is to the rows it was fitted on (docs/MATH.md §15),
 * computed once per layout by the service, never on a request path and
 * never on the path to readiness: PCA's, and those of a UMAP layout loaded
 * from the disk cache, in a thread layout_start starts; a fitted UMAP
 * layout's in the fit thread, before it is announced ready. Trustworthiness and continuity at FAITH_K neighbours on
 * a seeded sample of min(FAITH_SAMPLE_ROWS, rows) fitted rows (NaN when
 * the sample has 2 FAITH_K rows or fewer); for PCA also the share of the
 * rows' total variance each of the 3 components explains. */
typedef struct {
    size_t k, sample_rows;
    uint64_t sample_seed;
    double trustworthiness, continuity;
    int has_variance_ratio; /* PCA */
    double explained_variance_ratio[3];
} layout_faith;

/* The figures of `kind`, waiting for them while they are computed: TW_OK
 * with *out filled, or, for a UMAP layout that is not ready, the code of
 * layout_apply (TW_ENOTREADY while fitting). */
int layout_faithfulness(layout_service *p, proj_kind kind, layout_faith *out);

/* The same as {"projection", "k", "sample_rows", "sample_seed",
 * "trustworthiness", "continuity"[, "explained_variance_ratio"]} (NaN as
 * null), or NULL when not ready. */
json_t *layout_faith_json(layout_service *p, proj_kind kind);

/* For m new rows y (m, dim) projected to pts (m, 3) by layout_apply: the
 * fraction of their FAITH_K nearest fitted rows in the full space that are
 * also among their FAITH_K nearest fitted points in the layout, into frac
 * (m). TW_OK, TW_ENOMEM, or the layout's code when it is not ready. */
int layout_knn_overlap(layout_service *p, proj_kind kind, const float *y, const float *pts, size_t m,
                       double *frac);

/* The projection and the overlap of m new rows y (m, dim) from one kNN of
 * them among the fitted rows, for a caller that multiplies y by the fitted
 * rows anyway (the logit lens of a trajectory, core/ana/lens.c): begun with
 * E, the matrix whose first rows the layouts were fitted on (NULL when E is
 * another, when the UMAP layout is not ready, or when memory runs out: then
 * layout_apply and layout_knn_overlap do it alone), fed the products
 * y_i . E_j block by block (layout_knn_feed, the lens's on_row: rows may be
 * fed concurrently), ended, then used as layout_apply and
 * layout_knn_overlap would be (the same answers: the kNN is umap_knn's).
 * y must stay valid until layout_knn_free. */
typedef struct layout_knn layout_knn;
layout_knn *layout_knn_begin(layout_service *p, proj_kind kind, const float *E, const float *y, size_t m);
void layout_knn_feed(void *knn, size_t i, const float *dots, size_t b, size_t j0);
int layout_knn_end(layout_knn *s);
int layout_apply_knn(layout_knn *s, float *out, char *msg, size_t msglen);
int layout_knn_overlap_knn(layout_knn *s, const float *pts, double *frac);
void layout_knn_free(layout_knn *s);

#endif
