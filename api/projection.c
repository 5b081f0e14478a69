#include "api/projection.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/pca.h"
#include "core/umap.h"
#include "server/fsutil.h"

enum { U_DISABLED, U_FITTING, U_READY, U_FAILED };

struct projection {
    twd_app *app;
    const float *rows;        /* first n rows of wte (in the model) */
    size_t n, dim;
    pca_model pca;
    float *pca_layout;        /* (n, 3) */
    /* UMAP */
    pthread_t thread;
    bool thread_started;
    _Atomic int state;
    umap_progress prog;
    umap_params params;
    umap_model model;         /* valid once state == U_READY */
    char path[4200];
    bool from_cache;
    double fit_seconds;
    char error[512];
    pthread_mutex_t lock;     /* guards error */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *fit_main(void *arg)
{
    projection *p = arg;
    char err[512] = "";
    double t0 = now_s();
    umap_model m;
    memset(&m, 0, sizeof m);
    int rc = umap_fit(p->rows, p->n, p->dim, &p->params, &p->prog, &m, err, sizeof err);
    if (rc == UMAP_OK) {
        p->fit_seconds = now_s() - t0;
        m.key = umap_cache_key(umap_hash_floats(p->rows, p->n * p->dim, 0), &p->params);
        char serr[512];
        if (umap_save(&m, p->path, serr, sizeof serr) != UMAP_OK)
            fprintf(stderr, "twd: umap: could not cache the layout: %s\n", serr);
        p->model = m;
        fprintf(stderr, "twd: umap: layout of %zu rows fitted in %.1f s (%s); saved to %s\n", p->n, p->fit_seconds,
                m.init_note, p->path);
        atomic_store(&p->state, U_READY);
    } else {
        pthread_mutex_lock(&p->lock);
        snprintf(p->error, sizeof p->error, "%s", rc == UMAP_ECANCELED ? "canceled" : err);
        pthread_mutex_unlock(&p->lock);
        if (rc != UMAP_ECANCELED) fprintf(stderr, "twd: umap: fit failed: %s\n", err);
        atomic_store(&p->state, U_FAILED);
    }
    return NULL;
}

projection *projection_start(twd_app *app, char *err, size_t errlen)
{
    const twd_config *cfg = app->cfg;
    const gpt2_config *mc = &app->model.cfg;
    projection *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->app = app;
    p->dim = (size_t)mc->n_embd;
    p->n = (size_t)(cfg->umap_rows < mc->vocab_size ? cfg->umap_rows : mc->vocab_size);
    p->rows = app->model.p.wte;
    p->pca_layout = malloc(p->n * 3 * sizeof(float));
    if (!p->pca_layout || pca_fit(p->rows, p->n, p->dim, 3, &p->pca, err, errlen) != 0) {
        if (!p->pca_layout) snprintf(err, errlen, "out of memory");
        projection_stop(p);
        return NULL;
    }
    pca_transform(&p->pca, p->rows, p->n, p->pca_layout);

    umap_params_default(&p->params);
    p->params.n_neighbors = (size_t)cfg->umap_neighbors;
    p->params.n_epochs = (size_t)cfg->umap_epochs;
    p->params.seed = (uint64_t)cfg->umap_seed;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->params.n_threads = (size_t)(cores > 0 ? cores : 1);
    if (!cfg->umap) {
        atomic_store(&p->state, U_DISABLED);
        return p;
    }
    char perr[256];
    if (p->n <= p->params.n_neighbors || umap_params_check(&p->params, p->n, perr, sizeof perr) != UMAP_OK) {
        snprintf(p->error, sizeof p->error, "UMAP cannot be fitted on %zu rows: %s", p->n,
                 p->n <= p->params.n_neighbors ? "fewer rows than neighbours" : perr);
        atomic_store(&p->state, U_FAILED);
        return p;
    }
    uint64_t key = umap_cache_key(umap_hash_floats(p->rows, p->n * p->dim, 0), &p->params);
    char dir[4200];
    if (fs_path(dir, sizeof dir, "%s/umap", cfg->cache_dir) != 0 ||
        fs_path(p->path, sizeof p->path, "%s/%016" PRIx64 ".umap", dir, key) != 0 || fs_mkdir_p(dir) != 0) {
        snprintf(p->error, sizeof p->error, "cannot use the cache folder %.300s/umap", cfg->cache_dir);
        atomic_store(&p->state, U_FAILED);
        return p;
    }
    char lerr[512];
    int rc = umap_load(p->path, key, p->n, p->dim, &p->model, lerr, sizeof lerr);
    if (rc == UMAP_OK) {
        p->from_cache = true;
        fprintf(stderr, "twd: umap: layout loaded from %s\n", p->path);
        atomic_store(&p->state, U_READY);
        return p;
    }
    if (rc != UMAP_ENOENT) fprintf(stderr, "twd: umap: ignoring cached layout: %s\n", lerr);
    umap_progress_reset(&p->prog);
    atomic_store(&p->state, U_FITTING);
    if (pthread_create(&p->thread, NULL, fit_main, p) != 0) {
        snprintf(p->error, sizeof p->error, "cannot start the UMAP thread");
        atomic_store(&p->state, U_FAILED);
        return p;
    }
    p->thread_started = true;
    fprintf(stderr, "twd: umap: fitting the layout of %zu rows in the background\n", p->n);
    return p;
}

void projection_stop(projection *p)
{
    if (!p) return;
    if (p->thread_started) {
        atomic_store(&p->prog.cancel, 1);
        pthread_join(p->thread, NULL);
    }
    umap_model_free(&p->model);
    pca_free(&p->pca);
    free(p->pca_layout);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int not_ready(projection *p, double *progress, char *msg, size_t msglen)
{
    int st = atomic_load(&p->state);
    *progress = st == U_FITTING ? umap_progress_fraction(&p->prog) : 0;
    if (st == U_FITTING)
        snprintf(msg, msglen, "the UMAP layout is being fitted (%.0f%% done); retry shortly, or use projection=pca",
                 *progress * 100);
    else if (st == U_DISABLED)
        snprintf(msg, msglen, "UMAP is disabled in the configuration (umap = false); use projection=pca");
    else {
        pthread_mutex_lock(&p->lock);
        snprintf(msg, msglen, "the UMAP layout is not available: %s; use projection=pca", p->error);
        pthread_mutex_unlock(&p->lock);
    }
    return st == U_FITTING ? -1 : -2;
}

int projection_apply(projection *p, proj_kind kind, const float *y, size_t m, float *out, double *progress, char *msg,
                     size_t msglen)
{
    *progress = 1;
    if (kind == PROJ_PCA) {
        pca_transform(&p->pca, y, m, out);
        return 0;
    }
    if (atomic_load(&p->state) != U_READY) return not_ready(p, progress, msg, msglen);
    if (umap_transform(&p->model, p->rows, y, m, out, msg, msglen) != UMAP_OK) return -2;
    return 0;
}

const float *projection_layout(projection *p, proj_kind kind, size_t *n, double *progress, char *msg, size_t msglen)
{
    *n = p->n;
    *progress = 1;
    if (kind == PROJ_PCA) return p->pca_layout;
    if (atomic_load(&p->state) != U_READY) {
        not_ready(p, progress, msg, msglen);
        return NULL;
    }
    return p->model.embedding;
}

json_t *projection_status_json(projection *p)
{
    static const char *states[] = {"disabled", "fitting", "ready", "failed"};
    static const char *stages[] = {"idle", "knn", "graph", "init", "optimize", "done"};
    int st = atomic_load(&p->state);
    int stage = atomic_load(&p->prog.stage);
    json_t *o = json_pack("{s:s,s:i,s:i,s:i,s:f,s:b}", "state", states[st], "rows", (int)p->n, "n_neighbors",
                          (int)p->params.n_neighbors, "n_components", 3, "min_dist", (double)p->params.min_dist,
                          "from_cache", p->from_cache);
    if (st == U_FITTING) {
        json_object_set_new(o, "progress", json_real(umap_progress_fraction(&p->prog)));
        json_object_set_new(o, "stage", json_string(stage >= 0 && stage <= 5 ? stages[stage] : "?"));
        json_object_set_new(o, "stage_done", json_integer(atomic_load(&p->prog.done)));
        json_object_set_new(o, "stage_total", json_integer(atomic_load(&p->prog.total)));
    } else if (st == U_READY) {
        json_object_set_new(o, "progress", json_real(1.0));
        if (!p->from_cache) json_object_set_new(o, "fit_seconds", json_real(p->fit_seconds));
        json_object_set_new(o, "n_epochs", json_integer((json_int_t)p->model.n_epochs_fit));
        json_object_set_new(o, "init", json_string(p->model.init_note));
    } else if (st == U_FAILED) {
        pthread_mutex_lock(&p->lock);
        json_object_set_new(o, "error", json_string(p->error));
        pthread_mutex_unlock(&p->lock);
    }
    return o;
}
