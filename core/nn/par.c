/* Parallel row loops: see par.h. */
#include "core/nn/par.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- OpenBLAS's thread count ----
 * target: the budget the process owner set with nn_blas_set_threads (0 if
 * it never did: then OpenBLAS's count as it was when the first running
 * section began, saved). single: the single-threaded sections running;
 * while there is one OpenBLAS runs with one thread, and the budget is
 * applied when the last one ends. */
static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int blas_target, blas_single, blas_saved;

static int clamp_parts(int t) { return t < 1 ? 1 : t > NN_MAX_PARTS ? NN_MAX_PARTS : t; }

/* The budget now. Lock held. */
static int budget(void)
{
    if (blas_target) return blas_target;
    return blas_single ? blas_saved : openblas_get_num_threads();
}

void nn_blas_set_threads(int t)
{
    pthread_mutex_lock(&blas_mu);
    blas_target = t < 1 ? 1 : t;
    if (blas_single == 0) openblas_set_num_threads(blas_target);
    pthread_mutex_unlock(&blas_mu);
}

int nn_parts(void)
{
    pthread_mutex_lock(&blas_mu);
    int t = budget();
    pthread_mutex_unlock(&blas_mu);
    return clamp_parts(t);
}

int nn_blas_single_begin(void)
{
    pthread_mutex_lock(&blas_mu);
    if (blas_single++ == 0) {
        blas_saved = openblas_get_num_threads();
        if (blas_saved > 1) openblas_set_num_threads(1);
    }
    int t = budget();
    pthread_mutex_unlock(&blas_mu);
    return clamp_parts(t);
}

void nn_blas_single_end(void)
{
    pthread_mutex_lock(&blas_mu);
    const int t = budget(); /* counted while this section still runs */
    if (--blas_single == 0 && t != openblas_get_num_threads()) openblas_set_num_threads(t);
    pthread_mutex_unlock(&blas_mu);
}

typedef struct {
    void (*fn)(void *ctx, size_t lo, size_t hi, int part);
    void *ctx;
    size_t lo, hi;
    int part;
} par_job;

static void *par_main(void *p)
{
    par_job *j = p;
    j->fn(j->ctx, j->lo, j->hi, j->part);
    return NULL;
}

void nn_parallel_rows(size_t n, int parts, void (*fn)(void *ctx, size_t lo, size_t hi, int part), void *ctx)
{
    if (parts < 1) parts = 1;
    if (parts > NN_MAX_PARTS) parts = NN_MAX_PARTS;
    if ((size_t)parts > n) parts = n ? (int)n : 1;
    par_job jobs[NN_MAX_PARTS];
    pthread_t tid[NN_MAX_PARTS];
    int started[NN_MAX_PARTS] = {0};
    for (int p = 0; p < parts; p++)
        jobs[p] = (par_job){fn, ctx, n * (size_t)p / (size_t)parts, n * (size_t)(p + 1) / (size_t)parts, p};
    for (int p = 1; p < parts; p++) started[p] = pthread_create(&tid[p], NULL, par_main, &jobs[p]) == 0;
    par_main(&jobs[0]);
    for (int p = 1; p < parts; p++) {
        if (started[p])
            pthread_join(tid[p], NULL);
        else
            par_main(&jobs[p]);
    }
}

typedef struct {
    size_t n, b;
    const tw_cancel *cancel;
    int (*tile)(void *ctx, int part, size_t r0, size_t nr);
    void *ctx;
    atomic_size_t next; /* the next tile to claim */
    atomic_int stop;    /* raised on an error */
    int rc[NN_MAX_PARTS];
} tiles_job;

static void tiles_part(void *ctx, size_t lo, size_t hi, int part)
{
    tiles_job *t = ctx;
    (void)lo;
    (void)hi;
    int rc = 0;
    while (rc == 0 && !atomic_load(&t->stop)) {
        size_t i = atomic_fetch_add(&t->next, 1);
        if (i >= (t->n + t->b - 1) / t->b) break;
        size_t r0 = i * t->b;
        if ((rc = tw_cancel_check(t->cancel)) == 0)
            rc = t->tile(t->ctx, part, r0, t->n - r0 < t->b ? t->n - r0 : t->b);
    }
    if (rc) atomic_store(&t->stop, 1);
    t->rc[part] = rc;
}

int nn_parallel_tiles(size_t n, size_t b, int parts, const tw_cancel *cancel,
                      int (*tile)(void *ctx, int part, size_t r0, size_t nr), void *ctx)
{
    if (parts < 1) parts = 1;
    if (parts > NN_MAX_PARTS) parts = NN_MAX_PARTS;
    tiles_job t = {.n = n, .b = b ? b : 1, .cancel = cancel, .tile = tile, .ctx = ctx};
    atomic_init(&t.next, 0);
    atomic_init(&t.stop, 0);
    nn_parallel_rows((size_t)parts, parts, tiles_part, &t);
    for (int p = 0; p < parts; p++)
        if (t.rc[p]) return t.rc[p];
    return 0;
}
