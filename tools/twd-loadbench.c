/* twd-loadbench: times gpt2_load on a model folder.
 *
 *   twd-loadbench [--cold] [--repeat N] [--touch] DIR
 *
 * --cold   before each load, evicts model.safetensors and config.json from
 *          the page cache (fsync + posix_fadvise DONTNEED; no root needed),
 *          so the load sees a cold file. Without it the cache is warm after
 *          the first run.
 * --touch  after each load, also times one pass reading every parameter
 *          (the cost the mmap defers to the first analyses).
 * Prints one line per run and a summary (min / median seconds). */
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/model/gpt2.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void evict(const char *dir, const char *file)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return;
    fsync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Reads one float per 4 KiB page of every tensor; returns a sum so the
 * compiler keeps the reads. */
static double touch(const float *p, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i += 1024) s += p[i];
    return s;
}

static double touch_all(const gpt2_model *m)
{
    const gpt2_config *c = &m->cfg;
    size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
    double s = touch(m->p.wte, (size_t)c->vocab_size * C) + touch(m->p.wpe, (size_t)c->n_ctx * C);
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_block *h = &m->p.h[l];
        s += touch(h->attn_w, 3 * C * C) + touch(h->attn_proj_w, C * C) + touch(h->fc_w, C * I) +
             touch(h->fc_proj_w, I * C);
    }
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"cold", no_argument, NULL, 'c'},
        {"repeat", required_argument, NULL, 'r'},
        {"touch", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int cold = 0, repeat = 5, do_touch = 0, c;
    while ((c = getopt_long(argc, argv, "cr:th", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': cold = 1; break;
        case 'r': repeat = atoi(optarg); break;
        case 't': do_touch = 1; break;
        case 'h': printf("usage: twd-loadbench [--cold] [--repeat N] [--touch] DIR\n"); return 0;
        default: return 2;
        }
    }
    if (optind + 1 != argc || repeat < 1 || repeat > 1000) {
        fprintf(stderr, "usage: twd-loadbench [--cold] [--repeat N (1..1000)] [--touch] DIR\n");
        return 2;
    }
    const char *dir = argv[optind];
    double *t = malloc((size_t)repeat * sizeof *t);
    if (!t) return 1;
    char err[1024];
    for (int i = 0; i < repeat; i++) {
        if (cold) {
            evict(dir, "model.safetensors");
            evict(dir, "config.json");
        }
        gpt2_model m;
        double t0 = now();
        if (gpt2_load(dir, &m, err, sizeof err) != 0) {
            fprintf(stderr, "twd-loadbench: %s\n", err);
            free(t);
            return 1;
        }
        t[i] = now() - t0;
        printf("run %d: load %.4f s", i + 1, t[i]);
        if (do_touch) {
            double t1 = now();
            volatile double s = touch_all(&m);
            (void)s;
            printf(", touch all pages %.3f s", now() - t1);
        }
        printf("  (%zu params, %.1f MB, %s)\n", m.n_params, (double)m.file_size / 1e6, m.dtype);
        gpt2_free(&m);
    }
    qsort(t, (size_t)repeat, sizeof *t, cmp_double);
    printf("%s load: min %.4f s, median %.4f s over %d runs\n", cold ? "cold" : "warm", t[0], t[repeat / 2],
           repeat);
    free(t);
    return 0;
}
