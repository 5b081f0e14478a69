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
#include <unistd.h>

#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "core/model/gpt2.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-loadbench [--cold] [--repeat N (1..1000)] [--touch] DIR\n",
    "Times gpt2_load on the checkpoint in DIR: one line per run, then min / median.\n"
    "\n"
    "  --cold        evict model.safetensors and config.json from the page cache\n"
    "                before each load (fsync + posix_fadvise DONTNEED; no root needed)\n"
    "  --repeat N    number of loads (default 5)\n"
    "  --touch       after each load, also time one read of every parameter page\n"
    "  -h, --help    this text\n"};

static void evict(const char *dir, const char *file)
{
    char p[4096];
    if (fs_join(p, sizeof p, dir, file) != 0) return;
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
        gpt2_block_ref ref;
        const gpt2_block *h = gpt2_block_acquire(m, l, &ref);
        if (!h) continue;
        s += touch(h->attn_w.p, 3 * C * C) + touch(h->attn_proj_w.p, C * C) + touch(h->fc_w.p, C * I) +
             touch(h->fc_proj_w.p, I * C);
        gpt2_block_release(&ref);
    }
    return s;
}

typedef struct {
    int cold, repeat, touch;
    const char *dir;
} lb_args;

/* 0: run; 1: --help printed; -1: bad arguments (usage on stderr). */
static int parse_args(int argc, char **argv, void *ctx)
{
    lb_args *a = ctx;
    *a = (lb_args){.repeat = 5};
    /* (-c, -r N and -t too) */
    const tool_opt opts[] = {
        {.name = "cold", .kind = TOOL_O_SET, .at = &a->cold, .lo = 1, .key = 'c'},
        {.name = "repeat", .kind = TOOL_O_INT, .at = &a->repeat, .lo = 1, .hi = 1000, .key = 'r'},
        {.name = "touch", .kind = TOOL_O_SET, .at = &a->touch, .lo = 1, .key = 't'},
        OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, 1);
    if (!rc) a->dir = argv[optind];
    return rc;
}

/* One load (and touch); prints its line and returns its load time, or -1. */
static double load_once(const lb_args *a, int run)
{
    if (a->cold) {
        evict(a->dir, "model.safetensors");
        evict(a->dir, "config.json");
    }
    gpt2_model m;
    double t;
    if (tool_load_model(a->dir, &m, &t)) return -1;
    printf("run %d: load %.4f s", run, t);
    if (a->touch) {
        double t1 = tw_now();
        volatile double s = touch_all(&m);
        (void)s;
        printf(", touch all pages %.3f s", tw_now() - t1);
    }
    printf("  (%zu params, %.1f MB, %s)\n", m.n_params, (double)m.file_size / 1e6, m.dtype);
    gpt2_free(&m);
    return t;
}

int main(int argc, char **argv)
{
    lb_args a;
    int rc = tool_start("twd-loadbench", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    double *t = malloc((size_t)a.repeat * sizeof *t);
    if (!t) return 1;
    for (int i = 0; i < a.repeat; i++)
        if ((t[i] = load_once(&a, i + 1)) < 0) {
            free(t);
            return 1;
        }
    tool_times s = tool_time_stats(t, (size_t)a.repeat);
    printf("%s load: min %.4f s, median %.4f s over %d runs\n", a.cold ? "cold" : "warm", s.min, s.median,
           a.repeat);
    free(t);
    return 0;
}
