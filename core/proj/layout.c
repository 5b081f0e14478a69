/* The background layout service: see layout.h. */
#include "core/proj/layout.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cancel.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/num.h"
#include "base/status.h"
#include "core/proj/faith.h"
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
    uint64_t rows_hash; /* of the rows when the fit began (part of key) */
    char path[4200];    /* where the layout is kept; empty: kept in memory only */
    bool from_cache;
    double fit_seconds;
    char error[512];
    pthread_mutex_t lock; /* guards error */
    /* faithfulness (docs/MATH.md §15): the sample of fitted rows, and the
     * figures of each layout (UMAP's valid once state == U_READY) */
    size_t *sample, n_sample;
    layout_faith faith[2];
    bool faith_ready[2]; /* faith[kind] computed (guarded by faith_lock) */
    pthread_mutex_t faith_lock;
    pthread_cond_t faith_done; /* a faith_ready became true */
    pthread_t faith_thread;    /* PCA's figures, and a loaded UMAP layout's */
    bool faith_started;
    float *row_norms; /* (n) the fitted rows' squared norms (umap_row_norms), made at first use under lock */
    faith_tree *tree[2]; /* each layout's search tree for the overlap, made at first use under lock */
    bool tree_tried[2];
    tw_cancel stop;   /* raised by layout_stop */
};

static const float *row_norms(layout_service *p);

/* PCA's share of the rows' variance in each component, into its figures. */
static void pca_ratios(layout_service *p)
{
    layout_faith *f = &p->faith[PROJ_PCA];
    f->has_variance_ratio = 1;
    for (int c = 0; c < 3; c++)
        f->explained_variance_ratio[c] = p->pca.total_variance > 0 && (size_t)c < p->pca.n_components
                                             ? p->pca.variance[c] / p->pca.total_variance
                                             : 0.0;
}

/* The figures of the layout pts (n, 3) of the fitted rows into p->faith[kind]
 * (NaN figures when they cannot be computed; logged). */
static void faith_figures(layout_service *p, proj_kind kind, const float *pts)
{
    layout_faith *f = &p->faith[kind];
    f->k = FAITH_K;
    f->sample_rows = p->n_sample;
    f->sample_seed = FAITH_SAMPLE_SEED;
    f->trustworthiness = f->continuity = NAN;
    if (kind == PROJ_PCA) pca_ratios(p);
    if (!p->sample || p->n_sample <= 2 * FAITH_K) return;
    const size_t m = p->n_sample, d = p->dim;
    float *xs = malloc(m * d * sizeof *xs), *ys = malloc(m * 3 * sizeof *ys);
    int rc = TW_ENOMEM;
    if (xs && ys) {
        for (size_t i = 0; i < m; i++) {
            memcpy(xs + i * d, p->rows + p->sample[i] * d, d * sizeof *xs);
            memcpy(ys + i * 3, pts + p->sample[i] * 3, 3 * sizeof *ys);
        }
        double t0 = tw_now();
        rc = faith_trust_cont(xs, m, d, ys, 3, FAITH_K, &f->trustworthiness, &f->continuity, &p->stop);
        if (rc == TW_OK)
            tw_log("%s: trustworthiness %.4f, continuity %.4f at %d neighbours on %zu rows (%.2f s)",
                   kind == PROJ_PCA ? "pca" : "umap", f->trustworthiness, f->continuity, FAITH_K, m,
                   tw_now() - t0);
    }
    if (rc != TW_OK && rc != TW_ECANCELED)
        tw_log("%s: the faithfulness figures could not be computed: %s", kind == PROJ_PCA ? "pca" : "umap",
               tw_strerror(rc));
    free(xs);
    free(ys);
}

/* The figures are kept beside the layout (UMAP's in <layout>.faith, PCA's
 * in <layout>.pca.faith: PCA's, a 2000 x 2000 x d DGEMM and the rank counts,
 * were computed at every start beside the first requests), so that a daemon that finds them answers at
 * once rather than after the figures are computed again: a fixed record of
 * the layout's key (of the rows and the UMAP settings), the sample it was
 * measured on and the two figures. A record that is not exactly that
 * (another key, sample or size) is ignored and the figures are computed. */
typedef struct {
    char magic[8];
    uint64_t key, k, sample_rows, sample_seed;
    double trustworthiness, continuity;
} faith_record;

static const char FAITH_MAGIC[2][8] = {"TWDFTP1", "TWDFTH1"}; /* PCA's, UMAP's */
static const char *const FAITH_TAIL[2] = {".pca.faith", ".faith"};

static void faith_path(const layout_service *p, char *out, size_t n, const char *tail)
{
    if (fs_path(out, n, "%s%s", p->path, tail) != 0) out[0] = '\0';
}

static void faith_save(const layout_service *p, proj_kind kind)
{
    const layout_faith *f = &p->faith[kind];
    if (!p->path[0] || !p->key || isnan(f->trustworthiness)) return;
    faith_record r = {.key = p->key,
                      .k = f->k,
                      .sample_rows = f->sample_rows,
                      .sample_seed = f->sample_seed,
                      .trustworthiness = f->trustworthiness,
                      .continuity = f->continuity};
    memcpy(r.magic, FAITH_MAGIC[kind], sizeof r.magic);
    char tmp[4400], path[4400], tail[64];
    /* removed with the layout's stale temps */
    snprintf(tail, sizeof tail, ".tmp.%ld%s", (long)getpid(), FAITH_TAIL[kind]);
    faith_path(p, tmp, sizeof tmp, tail);
    faith_path(p, path, sizeof path, FAITH_TAIL[kind]);
    if (!tmp[0] || !path[0]) return;
    FILE *fp = fopen(tmp, "wb");
    bool ok = fp && fwrite(&r, sizeof r, 1, fp) == 1;
    if (fp && fclose(fp) != 0) ok = false;
    if (!ok || rename(tmp, path) != 0) {
        tw_log("%s: the faithfulness figures are not kept beside the layout: %s",
               kind == PROJ_PCA ? "pca" : "umap", strerror(errno));
        unlink(tmp);
    }
}

/* true when the record of kind beside the layout holds the figures of this
 * layout and sample (then in p->faith[kind], PCA's variance ratios kept). */
static bool faith_load(layout_service *p, proj_kind kind)
{
    char path[4400];
    if (!p->path[0] || !p->key) return false;
    faith_path(p, path, sizeof path, FAITH_TAIL[kind]);
    if (!path[0] || !fs_is_regular(path)) return false;
    size_t len = 0;
    char err[256];
    char *buf = fs_read_file(path, sizeof(faith_record), &len, err, sizeof err);
    faith_record r;
    bool ok = buf && len == sizeof r;
    if (ok) memcpy(&r, buf, sizeof r);
    free(buf);
    ok = ok && memcmp(r.magic, FAITH_MAGIC[kind], sizeof r.magic) == 0 && r.key == p->key && r.k == FAITH_K &&
         r.sample_rows == p->n_sample && r.sample_seed == FAITH_SAMPLE_SEED && isfinite(r.trustworthiness) &&
         isfinite(r.continuity);
    if (!ok) return false;
    layout_faith *f = &p->faith[kind];
    f->k = FAITH_K;
    f->sample_rows = p->n_sample;
    f->sample_seed = FAITH_SAMPLE_SEED;
    f->trustworthiness = r.trustworthiness;
    f->continuity = r.continuity;
    tw_log("%s: trustworthiness %.4f, continuity %.4f read from %s", kind == PROJ_PCA ? "pca" : "umap",
           f->trustworthiness, f->continuity, path);
    return true;
}

/* faith_figures, then announced to those who wait for them (always, even
 * when they could not be computed). A UMAP layout just fitted is measured;
 * one from the disk cache, and PCA, read from their records when kept. */
static void compute_faith(layout_service *p, proj_kind kind, const float *pts)
{
    bool fresh = kind == PROJ_UMAP && !p->from_cache;
    if (kind == PROJ_PCA) pca_ratios(p); /* not in the record: PCA's own */
    if (fresh || !faith_load(p, kind)) {
        faith_figures(p, kind, pts);
        faith_save(p, kind);
    }
    pthread_mutex_lock(&p->faith_lock);
    p->faith_ready[kind] = true;
    pthread_cond_broadcast(&p->faith_done);
    pthread_mutex_unlock(&p->faith_lock);
}

/* The figures that are not the fit's own, off the path to readiness: PCA's,
 * and those of a UMAP layout loaded from the disk cache. */
static void *faith_main(void *arg)
{
    layout_service *p = arg;
    /* a layout from the disk cache first: UMAP is the page's first picture,
     * and its answers wait for these figures */
    if (p->from_cache) compute_faith(p, PROJ_UMAP, p->model.embedding);
    compute_faith(p, PROJ_PCA, p->pca_points);
    (void)row_norms(p); /* for the first trajectory's layout_knn */
    return NULL;
}

/* Whether the figures of kind are there; with wait, waits for them (the
 * service computes them in the background at start). */
static bool faith_wait(layout_service *p, proj_kind kind, bool wait)
{
    pthread_mutex_lock(&p->faith_lock);
    while (wait && !p->faith_ready[kind]) pthread_cond_wait(&p->faith_done, &p->faith_lock);
    bool ready = p->faith_ready[kind];
    pthread_mutex_unlock(&p->faith_lock);
    return ready;
}

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
    compute_faith(p, PROJ_UMAP, p->model.embedding);
    atomic_store(&p->state, U_READY);
    char serr[512];
    /* The rows are the caller's (a mapped checkpoint): if they changed
     * during the fit, the layout is of no rows anyone has, and must not be
     * kept under the key of the rows it began with. */
    if (p->path[0] && umap_hash_floats(p->rows, p->n * p->dim, 0) != p->rows_hash) {
        tw_log("umap: the rows changed while the layout was fitted; it is not kept");
        return NULL;
    }
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

/* The UMAP layout: disabled, failed, loaded from the disk cache or fitted
 * in the background. */
static void start_umap(layout_service *p, const layout_settings *s);

layout_service *layout_start(const float *data, size_t n, size_t dim, const layout_settings *s, char *err,
                             size_t errlen)
{
    layout_service *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->faith_lock, NULL);
    pthread_cond_init(&p->faith_done, NULL);
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
    size_t want = p->n < FAITH_SAMPLE_ROWS ? p->n : FAITH_SAMPLE_ROWS;
    if ((p->sample = malloc((want ? want : 1) * sizeof *p->sample)))
        p->n_sample = faith_sample(p->n, FAITH_SAMPLE_ROWS, FAITH_SAMPLE_SEED, p->sample);
    start_umap(p, s);
    p->faith_started = pthread_create(&p->faith_thread, NULL, faith_main, p) == 0;
    if (!p->faith_started) faith_main(p);
    return p;
}

static void start_umap(layout_service *p, const layout_settings *s)
{
    umap_params_default(&p->params);
    p->params.n_neighbors = s->umap_neighbors;
    p->params.n_epochs = s->umap_epochs;
    p->params.seed = s->umap_seed;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    p->params.n_threads = s->threads ? s->threads : (size_t)(cores > 0 ? cores : 1);
    if (!s->umap) {
        atomic_store(&p->state, U_DISABLED);
        return;
    }
    char perr[256];
    if (p->n <= p->params.n_neighbors || umap_params_check(&p->params, p->n, perr, sizeof perr) != TW_OK) {
        snprintf(p->error, sizeof p->error, "UMAP cannot be fitted on %zu rows: %s", p->n,
                 p->n <= p->params.n_neighbors ? "fewer rows than neighbours" : perr);
        atomic_store(&p->state, U_FAILED);
        return;
    }
    p->rows_hash = umap_hash_floats(p->rows, p->n * p->dim, 0);
    p->key = umap_cache_key(p->rows_hash, &p->params);
    choose_path(p, s->cache_dir);
    if (p->path[0]) {
        char lerr[512];
        int rc = umap_load(p->path, p->key, p->n, p->dim, &p->model, lerr, sizeof lerr);
        if (rc == TW_OK) {
            p->from_cache = true;
            tw_log("umap: layout loaded from %s", p->path);
            atomic_store(&p->state, U_READY); /* its figures follow (faith_main) */
            return;
        }
        if (rc != TW_ENOENT) tw_log("umap: ignoring the saved layout: %s", lerr);
    }
    umap_progress_reset(&p->prog);
    atomic_store(&p->state, U_FITTING);
    if (pthread_create(&p->thread, NULL, fit_main, p) != 0) {
        snprintf(p->error, sizeof p->error, "cannot start the UMAP thread");
        atomic_store(&p->state, U_FAILED);
        return;
    }
    p->thread_started = true;
    tw_log("umap: fitting the layout of %zu rows in the background", p->n);
    return;
}

void layout_stop(layout_service *p)
{
    if (!p) return;
    tw_cancel_raise(&p->stop);
    if (p->thread_started) {
        atomic_store(&p->prog.cancel, 1);
        pthread_join(p->thread, NULL);
    }
    if (p->faith_started) pthread_join(p->faith_thread, NULL);
    umap_model_free(&p->model);
    pca_free(&p->pca);
    free(p->pca_points);
    free(p->sample);
    free(p->row_norms);
    for (int k = 0; k < 2; k++) faith_tree_free(p->tree[k]);
    pthread_cond_destroy(&p->faith_done);
    pthread_mutex_destroy(&p->faith_lock);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Why the UMAP layout cannot answer: TW_ENOTREADY while it is fitted, else
 * TW_ENUMERIC; the reason in msg unless msg is NULL. */
static int not_ready(layout_service *p, double *progress, char *msg, size_t msglen)
{
    int st = atomic_load(&p->state);
    *progress = st == U_FITTING ? umap_progress_fraction(&p->prog) : 0;
    if (!msg) return st == U_FITTING ? TW_ENOTREADY : TW_ENUMERIC;
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

static int faithfulness(layout_service *p, proj_kind kind, bool wait, layout_faith *out)
{
    if (kind == PROJ_UMAP && atomic_load(&p->state) != U_READY) {
        double progress;
        return not_ready(p, &progress, NULL, 0);
    }
    if (!faith_wait(p, kind, wait)) return TW_ENOTREADY;
    *out = p->faith[kind];
    return TW_OK;
}

int layout_faithfulness(layout_service *p, proj_kind kind, layout_faith *out)
{
    return faithfulness(p, kind, true, out);
}

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *faith_json(layout_service *p, proj_kind kind, bool wait)
{
    layout_faith f;
    if (faithfulness(p, kind, wait, &f) != TW_OK) return NULL;
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:o,s:o}", "projection", kind == PROJ_PCA ? "pca" : "umap", "k",
                          (json_int_t)f.k, "sample_rows", (json_int_t)f.sample_rows, "sample_seed",
                          (json_int_t)f.sample_seed, "trustworthiness", real_or_null(f.trustworthiness),
                          "continuity", real_or_null(f.continuity));
    if (o && f.has_variance_ratio)
        json_object_set_new(o, "explained_variance_ratio",
                            json_pack("[o,o,o]", real_or_null(f.explained_variance_ratio[0]),
                                      real_or_null(f.explained_variance_ratio[1]),
                                      real_or_null(f.explained_variance_ratio[2])));
    return o;
}

json_t *layout_faith_json(layout_service *p, proj_kind kind) { return faith_json(p, kind, true); }

/* The search tree of layout kind's fitted points (fixed once the layout is
 * ready), made at first use: a trajectory's overlap no longer builds one
 * per request (25 ms for the 50,257 rows of GPT-2). NULL when none pays or
 * memory ran out: the overlap then makes do without. */
static const faith_tree *fitted_tree(layout_service *p, proj_kind kind, const float *fitted)
{
    pthread_mutex_lock(&p->lock);
    if (!p->tree_tried[kind]) {
        p->tree[kind] = faith_tree_new(fitted, p->n);
        p->tree_tried[kind] = true;
    }
    const faith_tree *t = p->tree[kind];
    pthread_mutex_unlock(&p->lock);
    return t;
}

int layout_knn_overlap(layout_service *p, proj_kind kind, const float *y, const float *pts, size_t m,
                       double *frac)
{
    const float *fitted = p->pca_points;
    if (kind == PROJ_UMAP) {
        if (atomic_load(&p->state) != U_READY) {
            double progress;
            return not_ready(p, &progress, NULL, 0);
        }
        fitted = p->model.embedding;
    }
    size_t k = p->n < FAITH_K ? p->n : FAITH_K;
    return faith_knn_overlap(p->rows, p->n, p->dim, fitted, 3, y, pts, m, k, frac,
                             fitted_tree(p, kind, fitted));
}

struct layout_knn {
    layout_service *p;
    proj_kind kind;
    const float *y;
    size_t m, k; /* neighbours in each list: those of the transform and of the overlap */
    umap_knn_feed *feed;
    int32_t *idx; /* (m, k) once ended */
    float *dist;  /* (m, k) */
};

/* The fitted rows' squared norms, made once. */
static const float *row_norms(layout_service *p)
{
    pthread_mutex_lock(&p->lock);
    if (!p->row_norms && (p->row_norms = malloc((p->n ? p->n : 1) * sizeof *p->row_norms)))
        umap_row_norms(p->rows, p->n, p->dim, p->row_norms);
    pthread_mutex_unlock(&p->lock);
    return p->row_norms;
}

layout_knn *layout_knn_begin(layout_service *p, proj_kind kind, const float *E, const float *y, size_t m)
{
    if (E != p->rows || (kind == PROJ_UMAP && atomic_load(&p->state) != U_READY)) return NULL;
    size_t k = p->n < FAITH_K ? p->n : FAITH_K;
    if (kind == PROJ_UMAP && p->model.params.n_neighbors > k) k = p->model.params.n_neighbors;
    const float *xn = row_norms(p);
    umap_knn_feed *feed = xn && k <= p->n ? umap_knn_feed_new(p->rows, p->n, xn, y, m, p->dim, k) : NULL;
    layout_knn *s = feed ? malloc(sizeof *s) : NULL;
    if (s)
        *s = (layout_knn){.p = p, .kind = kind, .y = y, .m = m, .k = k, .feed = feed};
    else
        umap_knn_feed_free(feed);
    return s;
}

void layout_knn_feed(void *ctx, size_t i, const float *dots, size_t b, size_t j0)
{
    layout_knn *s = ctx;
    umap_knn_feed_dots(s->feed, i, dots, b, j0);
}

int layout_knn_end(layout_knn *s)
{
    size_t cells = (s->m ? s->m : 1) * s->k;
    if (!(s->idx = malloc(cells * sizeof *s->idx)) || !(s->dist = malloc(cells * sizeof *s->dist)))
        return TW_ENOMEM;
    return umap_knn_feed_finish(s->feed, s->idx, s->dist);
}

int layout_apply_knn(layout_knn *s, float *out, char *msg, size_t msglen)
{
    layout_service *p = s->p;
    if (s->kind == PROJ_PCA) {
        pca_transform(&p->pca, s->y, s->m, out);
        return TW_OK;
    }
    return umap_transform_knn(&p->model, s->y, s->m, s->idx, s->dist, s->k, out, msg, msglen);
}

int layout_knn_overlap_knn(layout_knn *s, const float *pts, double *frac)
{
    layout_service *p = s->p;
    const float *fitted = s->kind == PROJ_UMAP ? p->model.embedding : p->pca_points;
    size_t k = p->n < FAITH_K ? p->n : FAITH_K;
    return faith_knn_overlap_given(p->n, fitted, 3, pts, s->m, k, s->idx, s->k, frac,
                                   fitted_tree(p, s->kind, fitted));
}

void layout_knn_free(layout_knn *s)
{
    if (!s) return;
    umap_knn_feed_free(s->feed);
    free(s->idx);
    free(s->dist);
    free(s);
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
    /* the figures computed so far: this answer never waits */
    json_t *faith = json_object(), *u = faith_json(p, PROJ_UMAP, false), *c = faith_json(p, PROJ_PCA, false);
    if (u) json_object_set_new(faith, "umap", u);
    if (c) json_object_set_new(faith, "pca", c);
    json_object_set_new(o, "faithfulness", faith);
    return o;
}
