/* twd-umap: fits core/umap (or core/pca) on a raw float32 matrix and
 * transforms extra rows, printing timings as one JSON line. Driver of
 * bench/umap_bench.py.
 *
 *   twd-umap --data X.f32 --rows N --dim D --out E.f32
 *            [--query Q.f32 --qrows M --qout T.f32] [--threads T]
 *            [--seed S] [--epochs E] [--neighbors K] [--components C]
 *            [--min-dist F] [--save FILE] [--pca]
 *
 * Files are raw little-endian float32, row-major (numpy's tofile). */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/nn/blas.h"
#include "core/proj/pca.h"
#include "core/proj/umap.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *read_f32(const char *path, size_t count)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "twd-umap: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    float *x = malloc(count * sizeof *x);
    if (!x || fread(x, sizeof *x, count, f) != count) {
        fprintf(stderr, "twd-umap: %s: could not read %zu floats\n", path, count);
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
        fprintf(stderr, "twd-umap: %s: write failed\n", path);
        if (f) fclose(f);
        return -1;
    }
    return fclose(f);
}

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
                if (s >= 0 && w->stage_start[s] == 0.0) w->stage_start[s] = now_s() - w->t0;
            last = st;
        }
        usleep(200);
    }
    return NULL;
}

static long long parse_ll(const char *s, const char *flag)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) {
        fprintf(stderr, "twd-umap: %s: bad number '%s'\n", flag, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *query = NULL, *qout = NULL, *save = NULL;
    size_t rows = 0, dim = 0, qrows = 0;
    int use_pca = 0;
    umap_params p;
    umap_params_default(&p);
    p.n_threads = (size_t)sysconf(_SC_NPROCESSORS_ONLN);
    static const struct option opts[] = {{"data", required_argument, 0, 'd'},
                                         {"rows", required_argument, 0, 'n'},
                                         {"dim", required_argument, 0, 'D'},
                                         {"out", required_argument, 0, 'o'},
                                         {"query", required_argument, 0, 'q'},
                                         {"qrows", required_argument, 0, 'm'},
                                         {"qout", required_argument, 0, 'Q'},
                                         {"threads", required_argument, 0, 't'},
                                         {"seed", required_argument, 0, 's'},
                                         {"epochs", required_argument, 0, 'e'},
                                         {"neighbors", required_argument, 0, 'k'},
                                         {"components", required_argument, 0, 'c'},
                                         {"min-dist", required_argument, 0, 'M'},
                                         {"save", required_argument, 0, 'S'},
                                         {"pca", no_argument, 0, 'P'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': data = optarg; break;
        case 'n': rows = (size_t)parse_ll(optarg, "--rows"); break;
        case 'D': dim = (size_t)parse_ll(optarg, "--dim"); break;
        case 'o': out = optarg; break;
        case 'q': query = optarg; break;
        case 'm': qrows = (size_t)parse_ll(optarg, "--qrows"); break;
        case 'Q': qout = optarg; break;
        case 't': p.n_threads = (size_t)parse_ll(optarg, "--threads"); break;
        case 's': p.seed = (uint64_t)parse_ll(optarg, "--seed"); break;
        case 'e': p.n_epochs = (size_t)parse_ll(optarg, "--epochs"); break;
        case 'k': p.n_neighbors = (size_t)parse_ll(optarg, "--neighbors"); break;
        case 'c': p.n_components = (size_t)parse_ll(optarg, "--components"); break;
        case 'M': p.min_dist = strtof(optarg, NULL); break;
        case 'S': save = optarg; break;
        case 'P': use_pca = 1; break;
        default: fprintf(stderr, "usage: see the comment at the top of twd-umap.c\n"); return 2;
        }
    }
    if (!data || !out || rows == 0 || dim == 0 || (query && (!qout || qrows == 0))) {
        fprintf(stderr, "twd-umap: need --data, --rows, --dim, --out "
                        "(and --qrows, --qout with --query)\n");
        return 2;
    }
    float *x = read_f32(data, rows * dim);
    float *q = query ? read_f32(query, qrows * dim) : NULL;
    if (!x || (query && !q)) return 1;
    const size_t nc = p.n_components;
    char err[300];

    if (use_pca) {
        pca_model pm;
        double t0 = now_s();
        if (pca_fit(x, rows, dim, nc, &pm, err, sizeof err) != 0) {
            fprintf(stderr, "twd-umap: %s\n", err);
            return 1;
        }
        float *e = malloc(rows * nc * sizeof *e);
        pca_transform(&pm, x, rows, e);
        double t_fit = now_s() - t0;
        float *t = q ? malloc(qrows * nc * sizeof *t) : NULL;
        t0 = now_s();
        if (q) pca_transform(&pm, q, qrows, t);
        double t_tr = now_s() - t0;
        if (write_f32(out, e, rows * nc) || (q && write_f32(qout, t, qrows * nc))) return 1;
        printf("{\"method\": \"pca\", \"fit_s\": %.4f, \"transform_s\": %.5f}\n", t_fit, t_tr);
        pca_free(&pm);
        free(e);
        free(t);
        free(x);
        free(q);
        return 0;
    }

    umap_progress prog;
    umap_progress_reset(&prog);
    watcher w = {.prog = &prog, .t0 = now_s()};
    pthread_t th;
    pthread_create(&th, NULL, watch, &w);
    umap_model m;
    int rc = umap_fit(x, rows, dim, &p, &prog, &m, err, sizeof err);
    double t_fit = now_s() - w.t0;
    w.stop = 1;
    pthread_join(th, NULL);
    for (int s = UMAP_STAGE_KNN; s <= UMAP_STAGE_DONE; s++) /* missed: short */
        if (w.stage_start[s] == 0.0) w.stage_start[s] = s == UMAP_STAGE_KNN ? 0.0 : t_fit;
    if (rc != TW_OK) {
        fprintf(stderr, "twd-umap: fit: %s\n", err);
        return 1;
    }
    double t_tr = 0.0;
    float *t = NULL;
    if (q) {
        t = malloc(qrows * nc * sizeof *t);
        double t0 = now_s();
        rc = umap_transform(&m, x, q, qrows, t, err, sizeof err);
        t_tr = now_s() - t0;
        if (rc != TW_OK) {
            fprintf(stderr, "twd-umap: transform: %s\n", err);
            return 1;
        }
    }
    double t_save = 0.0, t_load = 0.0, t_hash = 0.0;
    if (save) {
        double t0 = now_s();
        uint64_t h = umap_hash_floats(x, rows * dim, 0);
        t_hash = now_s() - t0;
        m.key = umap_cache_key(h, &p);
        t0 = now_s();
        if (umap_save(&m, save, err, sizeof err) != TW_OK) {
            fprintf(stderr, "twd-umap: %s\n", err);
            return 1;
        }
        t_save = now_s() - t0;
        umap_model l;
        t0 = now_s();
        if (umap_load(save, m.key, rows, dim, &l, err, sizeof err) != TW_OK) {
            fprintf(stderr, "twd-umap: %s\n", err);
            return 1;
        }
        t_load = now_s() - t0;
        umap_model_free(&l);
    }
    if (write_f32(out, m.embedding, rows * nc) || (q && write_f32(qout, t, qrows * nc))) return 1;
    double *ss = w.stage_start;
    double end = t_fit;
    printf("{\"method\": \"umap\", \"fit_s\": %.3f, \"knn_s\": %.3f, "
           "\"graph_s\": %.3f, \"init_s\": %.3f, \"optimize_s\": %.3f, "
           "\"transform_s\": %.4f, \"hash_s\": %.4f, \"save_s\": %.4f, "
           "\"load_s\": %.4f, \"n_epochs\": %zu, \"threads\": %zu, "
           "\"a\": %.6f, \"b\": %.6f, \"init\": \"%s\", \"blas_core\": \"%s\"}\n",
           t_fit, ss[UMAP_STAGE_GRAPH] - ss[UMAP_STAGE_KNN], ss[UMAP_STAGE_INIT] - ss[UMAP_STAGE_GRAPH],
           ss[UMAP_STAGE_OPTIMIZE] - ss[UMAP_STAGE_INIT], end - ss[UMAP_STAGE_OPTIMIZE], t_tr, t_hash, t_save,
           t_load, m.n_epochs_fit, p.n_threads, (double)m.a, (double)m.b, m.init_note, blas_corename());
    umap_model_free(&m);
    free(t);
    free(x);
    free(q);
    return 0;
}
