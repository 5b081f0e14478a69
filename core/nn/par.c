/* Parallel row loops: see par.h. */
#include "core/nn/par.h"

#include <cblas.h>
#include <pthread.h>

int nn_parts(void)
{
    int t = openblas_get_num_threads();
    return t < 1 ? 1 : t > NN_MAX_PARTS ? NN_MAX_PARTS : t;
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
