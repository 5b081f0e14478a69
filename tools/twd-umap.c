/* twd-umap: fits core/umap (or core/pca) on a raw float32 matrix and
 * transforms extra rows, printing timings as one JSON line. Driver of
 * bench/umap_bench.py.
 *
 *   twd-umap --data X.f32 --rows N --dim D --out E.f32
 *            [--query Q.f32 --qrows M --qout T.f32] [--threads T]
 *            [--seed S] [--epochs E] [--neighbors K] [--components C]
 *            [--min-dist F] [--save FILE] [--pca] [--faith N [--no-fit]]
 *
 * Files are raw little-endian float32, row-major (numpy's tofile). */
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "core/nn/blas.h"
#include "core/proj/faith.h"
#include "core/proj/pca.h"
#include "core/proj/umap.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-umap --data X.f32 --rows N --dim D --out E.f32\n"
    "                [--query Q.f32 --qrows M --qout T.f32] [--threads T]\n"
    "                [--seed S] [--epochs E] [--neighbors K] [--components C]\n"
    "                [--min-dist F] [--save FILE] [--pca] [--faith N [--no-fit]]\n",
    "Fits UMAP (or PCA) on the N x D float32 matrix in X.f32 (raw, row-major, as\n"
    "numpy's tofile writes it), writes the layout to E.f32 and prints the timings\n"
    "as one JSON line.\n"
    "\n"
    "  --query Q.f32     also transform the M rows of Q.f32 (--qrows) into T.f32 (--qout)\n"
    "  --threads T       SGD threads (default: every core)\n"
    "  --seed, --epochs, --neighbors, --components, --min-dist\n"
    "                    UMAP settings (core/proj/umap.h; defaults are umap-learn's)\n"
    "  --save FILE       also time saving the layout to FILE and loading it back\n"
    "  --pca             PCA instead of UMAP\n"
    "  --faith N         then print a second JSON line: trustworthiness and continuity\n"
    "                    (docs/MATH.md §15) of the layout on a seeded sample of N rows\n"
    "                    (the rows drawn, too) and, with --query, the kNN overlap of\n"
    "                    each query row\n"
    "  --no-fit          with --faith: no fit, the figures of the layout already in\n"
    "                    --out (e.g. another implementation's)\n"
    "  -h, --help        this text\n"};

typedef struct {
    const char *data, *out, *query, *qout, *save;
    size_t rows, dim, qrows, faith;
    int no_fit;
    int use_pca;
    umap_params p;
} umap_args;

/* 0: run; 1: --help printed; -1: bad arguments (reported). */
static int parse_args(int argc, char **argv, void *ctx)
{
    umap_args *a = ctx;
    *a = (umap_args){0};
    umap_params_default(&a->p);
    a->p.n_threads = (size_t)sysconf(_SC_NPROCESSORS_ONLN);
    const size_t big = (size_t)1 << 40;
    const tool_opt opts[] = {OPT_STR("data", &a->data),
                             OPT_SIZE("rows", &a->rows, big),
                             OPT_SIZE("dim", &a->dim, big),
                             OPT_STR("out", &a->out),
                             OPT_STR("query", &a->query),
                             OPT_SIZE("qrows", &a->qrows, big),
                             OPT_STR("qout", &a->qout),
                             OPT_SIZE("threads", &a->p.n_threads, big),
                             OPT_U64("seed", &a->p.seed),
                             OPT_SIZE("epochs", &a->p.n_epochs, big),
                             OPT_SIZE("neighbors", &a->p.n_neighbors, big),
                             OPT_SIZE("components", &a->p.n_components, big),
                             OPT_FLOAT("min-dist", &a->p.min_dist),
                             OPT_STR("save", &a->save),
                             OPT_FLAG("pca", &a->use_pca),
                             OPT_SIZE("faith", &a->faith, (size_t)1 << 30),
                             OPT_FLAG("no-fit", &a->no_fit),
                             OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, TOOL_ANY_OPERANDS);
    if (rc) return rc;
    if (optind < argc || !a->data || !a->out || a->rows == 0 || a->dim == 0 ||
        (a->query && (!a->qout || a->qrows == 0))) {
        tw_log("need --data, --rows, --dim, --out (and --qrows, --qout with --query)");
        return -1;
    }
    return 0;
}

/* The first count floats of the regular file path, malloc'd; NULL (reported). */
static float *read_f32(const char *path, size_t count)
{
    char err[512];
    struct stat st;
    int fd = fs_open_regular(path, &st, err, sizeof err);
    FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
    if (!f) {
        if (fd < 0) tw_log("%s", err);
        if (fd >= 0) close(fd);
        return NULL;
    }
    float *x = malloc(count * sizeof *x);
    if (!x || fread(x, sizeof *x, count, f) != count) {
        tw_log("%s: could not read %zu floats", path, count);
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

static int write_f32(const char *path, const float *x, size_t count)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof *x, count, f) != count) {
        tw_log("%s: write failed", path);
        if (f) fclose(f);
        return -1;
    }
    return fclose(f);
}

/* ---- PCA ---- */

static int run_pca(const umap_args *a, const float *x, const float *q)
{
    const size_t nc = a->p.n_components;
    char err[300];
    pca_model pm;
    double t0 = tw_now();
    if (pca_fit(x, a->rows, a->dim, nc, &pm, err, sizeof err) != 0) {
        tw_log("%s", err);
        return 1;
    }
    float *e = malloc(a->rows * nc * sizeof *e);
    float *t = q ? malloc(a->qrows * nc * sizeof *t) : NULL;
    int status = !e || (q && !t);
    if (!status) pca_transform(&pm, x, a->rows, e);
    double t_fit = tw_now() - t0;
    t0 = tw_now();
    if (!status && q) pca_transform(&pm, q, a->qrows, t);
    double t_tr = tw_now() - t0;
    if (status || write_f32(a->out, e, a->rows * nc) || (q && write_f32(a->qout, t, a->qrows * nc)))
        status = 1;
    else
        status =
            tool_print_json(json_pack("{s:s,s:f,s:f}", "method", "pca", "fit_s", t_fit, "transform_s", t_tr),
                            9) != 0;
    pca_free(&pm);
    free(e);
    free(t);
    return status;
}

/* ---- UMAP ---- */

/* Watches the progress struct and records when each stage starts. */
typedef struct {
    umap_progress *prog;
    double t0;
    double stage_start[UMAP_STAGE_DONE + 1];
    volatile int stop;
} watcher;

static void *watch(void *arg)
{
    watcher *w = arg;
    int last = -1;
    while (!w->stop) {
        int st = atomic_load(&w->prog->stage);
        if (st != last && st >= 0 && st <= UMAP_STAGE_DONE) {
            for (int s = last + 1; s <= st; s++)
                if (s >= 0 && w->stage_start[s] == 0.0) w->stage_start[s] = tw_now() - w->t0;
            last = st;
        }
        usleep(1000);
    }
    return NULL;
}

typedef struct {
    double fit, transform, hash, save, load;
    double stage[UMAP_STAGE_DONE + 1]; /* seconds into the fit each stage started */
} umap_times;

/* The fit, timed stage by stage by a watcher thread. 0 or 1 (reported). */
static int fit_timed(const umap_args *a, const float *x, umap_model *m, umap_times *tm)
{
    char err[300];
    umap_progress prog;
    umap_progress_reset(&prog);
    watcher w = {.prog = &prog, .t0 = tw_now()};
    pthread_t th;
    int watching = pthread_create(&th, NULL, watch, &w) == 0;
    int rc = umap_fit(x, a->rows, a->dim, &a->p, &prog, m, err, sizeof err);
    tm->fit = tw_now() - w.t0;
    w.stop = 1;
    if (watching) pthread_join(th, NULL);
    for (int s = UMAP_STAGE_KNN; s <= UMAP_STAGE_DONE; s++) /* missed: short */
        tm->stage[s] = w.stage_start[s] != 0.0 ? w.stage_start[s] : s == UMAP_STAGE_KNN ? 0.0 : tm->fit;
    if (rc != TW_OK) {
        tw_log("fit: %s", err);
        return 1;
    }
    return 0;
}

/* Hashes the data, saves the layout to a->save and loads it back, timed. */
static int save_and_load(const umap_args *a, const float *x, umap_model *m, umap_times *tm)
{
    char err[300];
    double t0 = tw_now();
    uint64_t h = umap_hash_floats(x, a->rows * a->dim, 0);
    tm->hash = tw_now() - t0;
    m->key = umap_cache_key(h, &a->p);
    t0 = tw_now();
    if (umap_save(m, a->save, err, sizeof err) != TW_OK) {
        tw_log("%s", err);
        return 1;
    }
    tm->save = tw_now() - t0;
    umap_model l;
    t0 = tw_now();
    if (umap_load(a->save, m->key, a->rows, a->dim, &l, err, sizeof err) != TW_OK) {
        tw_log("%s", err);
        return 1;
    }
    tm->load = tw_now() - t0;
    umap_model_free(&l);
    return 0;
}

static int print_umap(const umap_args *a, const umap_model *m, const umap_times *tm)
{
    const double *ss = tm->stage;
    return tool_print_json(
        json_pack("{s:s,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:f,s:s,s:s}", "method", "umap",
                  "fit_s", tm->fit, "knn_s", ss[UMAP_STAGE_GRAPH] - ss[UMAP_STAGE_KNN], "graph_s",
                  ss[UMAP_STAGE_INIT] - ss[UMAP_STAGE_GRAPH], "init_s",
                  ss[UMAP_STAGE_OPTIMIZE] - ss[UMAP_STAGE_INIT], "optimize_s",
                  tm->fit - ss[UMAP_STAGE_OPTIMIZE], "transform_s", tm->transform, "hash_s", tm->hash,
                  "save_s", tm->save, "load_s", tm->load, "n_epochs", (json_int_t)m->n_epochs_fit, "threads",
                  (json_int_t)a->p.n_threads, "a", (double)m->a, "b", (double)m->b, "init", m->init_note,
                  "blas_core", blas_corename()),
        9);
}

static int run_umap(const umap_args *a, const float *x, const float *q)
{
    const size_t nc = a->p.n_components;
    char err[300];
    umap_times tm = {0};
    umap_model m;
    if (fit_timed(a, x, &m, &tm)) return 1;
    float *t = NULL;
    int status = 0;
    if (q) {
        t = malloc(a->qrows * nc * sizeof *t);
        double t0 = tw_now();
        int rc = t ? umap_transform(&m, x, q, a->qrows, t, err, sizeof err) : TW_ENOMEM;
        tm.transform = tw_now() - t0;
        if (rc != TW_OK) {
            tw_log("transform: %s", t ? err : tw_strerror(rc));
            status = 1;
        }
    }
    if (!status && a->save) status = save_and_load(a, x, &m, &tm);
    if (!status &&
        (write_f32(a->out, m.embedding, a->rows * nc) || (q && write_f32(a->qout, t, a->qrows * nc))))
        status = 1;
    if (!status) status = print_umap(a, &m, &tm) != 0;
    umap_model_free(&m);
    free(t);
    return status;
}

/* The faithfulness figures of the layout written to a->out (and of the
 * transformed queries in a->qout), as one more JSON line. */
static int print_faith(const umap_args *a, const float *x, const float *q)
{
    const size_t nc = a->p.n_components, n = a->rows, d = a->dim;
    float *e = read_f32(a->out, n * nc), *t = q ? read_f32(a->qout, a->qrows * nc) : NULL;
    size_t *idx = malloc((a->faith < n ? a->faith : n) * sizeof *idx + 1);
    if (!e || (q && !t) || !idx) return 1;
    size_t m = faith_sample(n, a->faith, FAITH_SAMPLE_SEED, idx);
    float *xs = malloc(m * d * sizeof *xs), *es = malloc(m * nc * sizeof *es);
    double trust = NAN, cont = NAN, *frac = q ? malloc(a->qrows * sizeof *frac) : NULL;
    int rc = xs && es && (!q || frac) ? TW_OK : TW_ENOMEM;
    for (size_t i = 0; rc == TW_OK && i < m; i++) {
        memcpy(xs + i * d, x + idx[i] * d, d * sizeof *xs);
        memcpy(es + i * nc, e + idx[i] * nc, nc * sizeof *es);
    }
    if (rc == TW_OK) rc = faith_trust_cont(xs, m, d, es, nc, FAITH_K, &trust, &cont, NULL);
    if (rc == TW_OK && q) rc = faith_knn_overlap(x, n, d, e, nc, q, t, a->qrows, FAITH_K, frac, NULL);
    int status = 1;
    if (rc != TW_OK) {
        tw_log("faithfulness: %s", tw_strerror(rc));
    } else {
        json_t *sample = json_array();
        for (size_t i = 0; i < m; i++) json_array_append_new(sample, json_integer((json_int_t)idx[i]));
        json_t *doc =
            json_pack("{s:i,s:I,s:o,s:o,s:o}", "k", FAITH_K, "seed", (json_int_t)FAITH_SAMPLE_SEED, "sample",
                      sample, "trustworthiness", tool_json_real(trust), "continuity", tool_json_real(cont));
        if (q) json_object_set_new(doc, "knn_overlap", tool_json_doubles(frac, a->qrows));
        status = tool_print_json(doc, 0) != 0;
    }
    free(e);
    free(t);
    free(idx);
    free(xs);
    free(es);
    free(frac);
    return status;
}

int main(int argc, char **argv)
{
    umap_args a;
    int rc = tool_start("twd-umap", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    float *x = read_f32(a.data, a.rows * a.dim);
    float *q = a.query ? read_f32(a.query, a.qrows * a.dim) : NULL;
    int status = !x || (a.query && !q)             ? 1
                 : a.no_fit && a.faith && !a.query ? 0
                 : a.use_pca                       ? run_pca(&a, x, q)
                                                   : run_umap(&a, x, q);
    if (!status && a.faith) status = print_faith(&a, x, q);
    free(x);
    free(q);
    return status;
}
