/* The background layout service: see layout.h. */
#include "core/proj/layout.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/num.h"
#include "base/status.h"
#include "core/proj/pca.h"
#include "core/proj/umap.h"

enum { U_DISABLED, U_FITTING, U_READY, U_FAILED };

struct layout_service {
    const float *rows; /* the first n rows of the caller's matrix */
    size_t n, dim;
    pca_model pca;
    float *pca_points; /* (n, 3) */
    /* UMAP */
    pthread_t thread;
    bool thread_started;
    _Atomic int state;
    umap_progress prog;
    umap_params params;
    umap_model model; /* valid once state == U_READY */
    uint64_t key;
    char path[4200]; /* where the layout is kept; empty: kept in memory only */
    bool from_cache;
    double fit_seconds;
    char error[512];
    pthread_mutex_t lock; /* guards error */
};

static void set_error(layout_service *p, const char *msg)
{
    pthread_mutex_lock(&p->lock);
    snprintf(p->error, sizeof p->error, "%s", msg);
    pthread_mutex_unlock(&p->lock);
}

/* Removes temporary files a crashed save left beside the layout files
 * ("<key>.umap.tmp.<pid>.<n>"), except those of a process still alive. */
static void remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *t = strstr(e->d_name, ".umap.tmp.");
        if (!t) continue;
        long pid = strtol(t + strlen(".umap.tmp."), NULL, 10);
        if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) == 0) continue;
        char path[4400];
        if (fs_join(path, sizeof path, dir, e->d_name) == 0 && unlink(path) == 0)
            tw_log("umap: removed %s, left by an interrupted save", path);
    }
    closedir(d);
}

static void *fit_main(void *arg)
{
    layout_service *p = arg;
    char err[512] = "";
    double t0 = tw_now();
    umap_model m;
    memset(&m, 0, sizeof m);
    int rc = umap_fit(p->rows, p->n, p->dim, &p->params, &p->prog, &m, err, sizeof err);
    if (rc != TW_OK) {
        set_error(p, rc == TW_ECANCELED ? "canceled" : err);
        if (rc != TW_ECANCELED) tw_log("umap: fit failed: %s", err);
        atomic_store(&p->state, U_FAILED);
        return NULL;
    }
    p->fit_seconds = tw_now() - t0;
    m.key = p->key;
    p->model = m;
    atomic_store(&p->state, U_READY);
    char serr[512];
    if (!p->path[0])
        tw_log("umap: layout of %zu rows fitted in %.1f s (%s); kept in memory only", p->n, p->fit_seconds,
               m.init_note);
    else if (umap_save(&p->model, p->path, serr, sizeof serr) != TW_OK)
        tw_log("umap: layout of %zu rows fitted in %.1f s (%s); it will not be kept: %s", p->n,
               p->fit_seconds, m.init_note, serr);
    else
        tw_log("umap: layout of %zu rows fitted in %.1f s (%s); saved to %s", p->n, p->fit_seconds,
               m.init_note, p->path);
    return NULL;
}

/* Chooses where the layout is kept: cache_dir/<key>.umap when the folder
 * can be made and written, else nowhere (the fit runs in memory). */
static void choose_path(layout_service *p, const char *cache_dir)
{
    p->path[0] = '\0';
    if (!cache_dir[0]) return;
    if (fs_mkdir_p(cache_dir) != 0 || access(cache_dir, W_OK) != 0) {
        tw_log(
            "umap: cannot write the cache folder %s (%s); the layout will be fitted in memory and not kept",
            cache_dir, strerror(errno));
        return;
    }
    char name[64];
    snprintf(name, sizeof name, "%016" PRIx64 ".umap", p->key);
    if (fs_join(p->path, sizeof p->path, cache_dir, name) != 0) {
        tw_log("umap: cache folder path too long; the layout will not be kept");
        p->path[0] = '\0';
        return;
    }
    remove_stale_tmp(cache_dir);
}

layout_service *layout_start(const float *data, size_t n, size_t dim, const layout_settings *s, char *err,
                             size_t errlen)
{
    layout_service *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->dim = dim;
    p->n = s->rows < n ? s->rows : n;
    p->rows = data;
    p->pca_points = malloc(p->n * 3 * sizeof(float));
    if (!p->pca_points || pca_fit(p->rows, p->n, p->dim, 3, &p->pca, err, errlen) != 0) {
        if (!p->pca_points) snprintf(err, errlen, "out of memory");
        layout_stop(p);
        return NULL;
    }
    pca_transform(&p->pca, p->rows, p->n, p->pca_points);

    umap_params_default(&p->params);
    p->params.n_neighbors = s->umap_neighbors;
    p->params.n_epochs = s->umap_epochs;
    p->params.seed = s->umap_seed;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->params.n_threads = s->threads ? s->threads : (size_t)(cores > 0 ? cores : 1);
    if (!s->umap) {
        atomic_store(&p->state, U_DISABLED);
        return p;
    }
    char perr[256];
    if (p->n <= p->params.n_neighbors || umap_params_check(&p->params, p->n, perr, sizeof perr) != TW_OK) {
        snprintf(p->error, sizeof p->error, "UMAP cannot be fitted on %zu rows: %s", p->n,
                 p->n <= p->params.n_neighbors ? "fewer rows than neighbours" : perr);
        atomic_store(&p->state, U_FAILED);
        return p;
    }
    p->key = umap_cache_key(umap_hash_floats(p->rows, p->n * p->dim, 0), &p->params);
    choose_path(p, s->cache_dir);
    if (p->path[0]) {
        char lerr[512];
        int rc = umap_load(p->path, p->key, p->n, p->dim, &p->model, lerr, sizeof lerr);
        if (rc == TW_OK) {
            p->from_cache = true;
            tw_log("umap: layout loaded from %s", p->path);
            atomic_store(&p->state, U_READY);
            return p;
        }
        if (rc != TW_ENOENT) tw_log("umap: ignoring the saved layout: %s", lerr);
    }
    umap_progress_reset(&p->prog);
    atomic_store(&p->state, U_FITTING);
    if (pthread_create(&p->thread, NULL, fit_main, p) != 0) {
        snprintf(p->error, sizeof p->error, "cannot start the UMAP thread");
        atomic_store(&p->state, U_FAILED);
        return p;
    }
    p->thread_started = true;
    tw_log("umap: fitting the layout of %zu rows in the background", p->n);
    return p;
}

void layout_stop(layout_service *p)
{
    if (!p) return;
    if (p->thread_started) {
        atomic_store(&p->prog.cancel, 1);
        pthread_join(p->thread, NULL);
    }
    umap_model_free(&p->model);
    pca_free(&p->pca);
    free(p->pca_points);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int not_ready(layout_service *p, double *progress, char *msg, size_t msglen)
{
    int st = atomic_load(&p->state);
    *progress = st == U_FITTING ? umap_progress_fraction(&p->prog) : 0;
    if (st == U_FITTING) {
        snprintf(msg, msglen, "the UMAP layout is being fitted (%.0f%% done)", *progress * 100);
        return TW_ENOTREADY;
    }
    if (st == U_DISABLED) {
        snprintf(msg, msglen, "UMAP is disabled in the configuration (umap = false)");
    } else {
        pthread_mutex_lock(&p->lock);
        snprintf(msg, msglen, "the UMAP layout is not available: %s", p->error);
        pthread_mutex_unlock(&p->lock);
    }
    return TW_ENUMERIC;
}

int layout_apply(layout_service *p, proj_kind kind, const float *y, size_t m, float *out, double *progress,
                 char *msg, size_t msglen)
{
    *progress = 1;
    if (kind == PROJ_PCA) {
        pca_transform(&p->pca, y, m, out);
        return TW_OK;
    }
    if (atomic_load(&p->state) != U_READY) return not_ready(p, progress, msg, msglen);
    return umap_transform(&p->model, p->rows, y, m, out, msg, msglen);
}

const float *layout_points(layout_service *p, proj_kind kind, size_t *n, int *rc, double *progress, char *msg,
                           size_t msglen)
{
    *n = p->n;
    *progress = 1;
    *rc = TW_OK;
    if (kind == PROJ_PCA) return p->pca_points;
    if (atomic_load(&p->state) != U_READY) {
        *rc = not_ready(p, progress, msg, msglen);
        return NULL;
    }
    return p->model.embedding;
}

size_t layout_rows(const layout_service *p) { return p->n; }

int layout_umap_ready(layout_service *p, double *progress)
{
    int st = atomic_load(&p->state);
    *progress = st == U_READY ? 1.0 : st == U_FITTING ? umap_progress_fraction(&p->prog) : 0.0;
    return st == U_READY;
}

json_t *layout_status_json(layout_service *p)
{
    static const char *states[] = {"disabled", "fitting", "ready", "failed"};
    static const char *stages[] = {"idle", "knn", "graph", "init", "optimize", "done"};
    int st = atomic_load(&p->state);
    int stage = atomic_load(&p->prog.stage);
    json_t *o = json_pack("{s:s,s:i,s:i,s:i,s:f,s:b,s:b}", "state", states[st], "rows", (int)p->n,
                          "n_neighbors", (int)p->params.n_neighbors, "n_components", 3, "min_dist",
                          tw_float_decimal(p->params.min_dist), "from_cache", p->from_cache, "kept_on_disk",
                          p->path[0] != '\0');
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
