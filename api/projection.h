/* The 3D projections the trajectories are drawn in (SPEC 4): PCA of the
 * first umap_rows rows of wte (fitted at start-up, instantly available) and
 * UMAP of the same rows, fitted once in a background thread and kept on disk
 * under cache_dir/umap/, keyed by the rows' content hash and the settings, so
 * a restarted daemon reloads instead of refitting. */
#ifndef TW_PROJECTION_H
#define TW_PROJECTION_H

#include <jansson.h>
#include <stddef.h>

#include "api/api.h"

typedef struct projection projection;

typedef enum { PROJ_PCA = 0, PROJ_UMAP = 1 } proj_kind;

/* Fits PCA now and starts the UMAP thread (loading the cached layout when
 * there is one) unless cfg->umap is false. NULL with err on failure. */
projection *projection_start(twd_app *app, char *err, size_t errlen);

/* Cancels a running fit, joins the thread, frees everything. NULL ok. */
void projection_stop(projection *p);

/* Projects m rows y (m, n_embd) into out (m, 3). 0 on success; -1 when the
 * UMAP layout is not ready (then *progress in [0,1] and a message in msg),
 * -2 on a computation error (message in msg). */
int projection_apply(projection *p, proj_kind kind, const float *y, size_t m, float *out, double *progress,
                     char *msg, size_t msglen);

/* The fitted rows' 3D points: a pointer valid while p lives, and the count;
 * NULL (with progress/msg as above) when not ready. */
const float *projection_layout(projection *p, proj_kind kind, size_t *n, double *progress, char *msg,
                               size_t msglen);

/* {"state", "progress", "stage", "rows", "from_cache", "fit_seconds", ...} */
json_t *projection_status_json(projection *p);

#endif
