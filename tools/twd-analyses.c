/* twd-analyses: runs the weight analyses of docs/MATH.md §3-§6 on a
 * checkpoint, for the numpy reference test (JSON on stdout) and for the
 * benchmark (cold / warm timings).
 *
 *   twd-analyses dump  --model DIR [--blocks 0,1] [--ids 1,2,3] [--k 5] [--top 20]
 *   twd-analyses bench --model DIR [--block 11] [--ids ...] [--k 5] [--top 20]
 *                      [--budget-mb 2048] [--reps 3]
 *
 * dump prints one JSON object: embeddings (top/bottom per scheme),
 * normalization, and per block the word probes of --ids, the SVD of qk and vo
 * for all heads (top directions) and the bias probes. Lists are [id, score]
 * pairs. bench prints one line per measurement: cold = fresh cache (first
 * request of a block after start), warm = the same request again. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/ana/blockcache.h"
#include "core/ana/embed_norms.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"
#include "core/model/gpt2.h"
#include "core/nn/blas.h"
#include "core/nn/topk.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "twd-analyses: %s: %s (%d)\n", what, tw_strerror(rc), rc);
    exit(1);
}

/* Parses "1,2,3" into a malloc'd array; returns the count. */
static size_t parse_list(const char *s, long **out)
{
    size_t n = 0, cap = 16;
    long *v = malloc(cap * sizeof *v);
    while (s && *s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno) {
            fprintf(stderr, "twd-analyses: bad number list '%s'\n", s);
            exit(2);
        }
        if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            fprintf(stderr, "twd-analyses: bad number list\n");
            exit(2);
        }
    }
    *out = v;
    return n;
}

static void print_hits(const topk_hit *h, size_t k)
{
    putchar('[');
    for (size_t i = 0; i < k; i++) printf("%s[%d,%.9g]", i ? "," : "", h[i].id, h[i].score);
    putchar(']');
}

static void print_doubles(const double *x, size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) printf("%s%.17g", i ? "," : "", x[i]);
    putchar(']');
}

static void dump_embeddings(const gpt2_model *m, blockcache *c, size_t k)
{
    embed_norms_result r;
    int rc = embed_norms(m, c, k, &r);
    if (rc) die("embed_norms", rc);
    printf("\"embeddings\":{\"k\":%zu,\"schemes\":{", k);
    for (int s = 0; s < EMBED_N_SCHEMES; s++) {
        printf("%s\"%s\":{\"top\":", s ? "," : "", embed_scheme_name(s));
        print_hits(r.top + (size_t)s * k, k);
        printf(",\"bottom\":");
        print_hits(r.bottom + (size_t)s * k, k);
        putchar('}');
    }
    printf("}},");
    embed_norms_result_free(&r);

    embed_normalization_result n;
    rc = embed_normalization(m, &n);
    if (rc) die("embed_normalization", rc);
    printf("\"normalization\":{\"avg_norm\":%.17g,\"scale\":%.17g,\"rows\":[", n.avg_norm, n.scale);
    for (int i = 0; i < 4; i++)
        printf("%s{\"name\":\"%s\",\"l2_mean\":%.17g,\"l2_std\":%.17g,\"cos_mean\":%.17g,"
               "\"cos_std\":%.17g}",
               i ? "," : "", embed_normalization_row_name(i), n.rows[i].l2_mean, n.rows[i].l2_std,
               n.rows[i].cos_mean, n.rows[i].cos_std);
    printf("]}");
}

static void dump_block(const gpt2_model *m, blockcache *c, int block, const int32_t *ids, size_t W, size_t k,
                       size_t top)
{
    const size_t H = (size_t)m->cfg.n_head;
    printf("{\"block\":%d,", block);

    probe_words_result pw;
    int rc = probe_words(m, c, block, ids, W, k, &pw);
    if (rc) die("probe_words", rc);
    printf("\"probe\":{\"ids\":[");
    for (size_t w = 0; w < W; w++) printf("%s%d", w ? "," : "", ids[w]);
    printf("],\"words\":[");
    for (size_t w = 0; w < W; w++) {
        printf("%s{\"keys\":[", w ? "," : "");
        for (size_t h = 0; h < H; h++) {
            if (h) putchar(',');
            print_hits(pw.keys + (w * H + h) * k, k);
        }
        printf("],\"values\":[");
        for (size_t h = 0; h < H; h++) {
            if (h) putchar(',');
            print_hits(pw.values + (w * H + h) * k, k);
        }
        printf("],\"value_norm\":");
        print_doubles(pw.value_norm + w * H, H);
        printf(",\"layer_values\":");
        print_hits(pw.layer_values + w * k, k);
        printf(",\"layer_norm\":%.17g}", pw.layer_norm[w]);
    }
    printf("]},");
    probe_words_result_free(&pw);

    printf("\"svd\":{");
    for (int mat = 0; mat < 2; mat++) {
        probe_svd_result r;
        rc = probe_svd(m, c, block, mat, -1, top, k, &r);
        if (rc) die("probe_svd", rc);
        printf("%s\"%s\":{\"heads\":[", mat ? "," : "", probe_svd_matrix_name(mat));
        for (size_t i = 0; i < r.n_heads; i++) {
            printf("%s{\"s\":", i ? "," : "");
            print_doubles(r.s + i * r.dh, r.dh);
            printf(",\"coverage\":");
            print_doubles(r.coverage + i * r.dh, r.dh);
            printf(",\"frac99\":%.17g,\"sign\":[", r.frac99[i]);
            for (size_t t = 0; t < top; t++) printf("%s%d", t ? "," : "", r.sign[i * top + t]);
            printf("],\"left\":[");
            for (size_t t = 0; t < top; t++) {
                if (t) putchar(',');
                print_hits(r.left + (i * top + t) * k, k);
            }
            printf("],\"right\":[");
            for (size_t t = 0; t < top; t++) {
                if (t) putchar(',');
                print_hits(r.right + (i * top + t) * k, k);
            }
            printf("]}");
        }
        printf("]}");
        probe_svd_result_free(&r);
    }
    printf("},");

    probe_bias_result b;
    rc = probe_svd_bias(m, c, block, k, &b);
    if (rc) die("probe_svd_bias", rc);
    printf("\"bias\":[");
    for (size_t h = 0; h < H; h++) {
        printf("%s{", h ? "," : "");
        for (int l = 0; l < PROBE_BIAS_N; l++) {
            printf("%s\"%s\":", l ? "," : "", probe_bias_name(l));
            print_hits(b.hits + (h * PROBE_BIAS_N + (size_t)l) * k, k);
        }
        putchar('}');
    }
    printf("]}");
    probe_bias_result_free(&b);
}

static double peak_rss_mb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0;
}

typedef struct {
    const gpt2_model *m;
    blockcache *c;
    int block;
    const int32_t *ids;
    size_t W, k, top;
} bench_args;

static void run_svd_both(const bench_args *a)
{
    for (int mat = 0; mat < 2; mat++) {
        probe_svd_result r;
        int rc = probe_svd(a->m, a->c, a->block, mat, -1, a->top, a->k, &r);
        if (rc) die("probe_svd", rc);
        probe_svd_result_free(&r);
    }
}

static void run_probe(const bench_args *a)
{
    probe_words_result r;
    int rc = probe_words(a->m, a->c, a->block, a->ids, a->W, a->k, &r);
    if (rc) die("probe_words", rc);
    probe_words_result_free(&r);
}

static void run_embeddings(const bench_args *a)
{
    embed_norms_result r;
    int rc = embed_norms(a->m, a->c, a->k, &r);
    if (rc) die("embed_norms", rc);
    embed_norms_result_free(&r);
}

static void run_normalization(const bench_args *a)
{
    embed_normalization_result r;
    int rc = embed_normalization(a->m, &r);
    if (rc) die("embed_normalization", rc);
}

static void run_bias(const bench_args *a)
{
    probe_bias_result r;
    int rc = probe_svd_bias(a->m, a->c, a->block, a->k, &r);
    if (rc) die("probe_svd_bias", rc);
    probe_bias_result_free(&r);
}

static void bench_one(const char *name, void (*fn)(const bench_args *), bench_args *a, int reps)
{
    double best_cold = 1e30, best_warm = 1e30;
    for (int i = 0; i < reps; i++) {
        blockcache_clear(a->c);
        double t0 = now();
        fn(a);
        double t1 = now();
        fn(a);
        double t2 = now();
        if (t1 - t0 < best_cold) best_cold = t1 - t0;
        if (t2 - t1 < best_warm) best_warm = t2 - t1;
    }
    printf("%-44s cold %8.3f s   warm-cache %8.3f s   (best of %d)\n", name, best_cold, best_warm, reps);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "dump") && strcmp(argv[1], "bench"))) {
        fprintf(stderr, "usage: twd-analyses dump|bench --model DIR [--blocks LIST] [--block B]"
                        " [--ids LIST] [--k K] [--top T] [--budget-mb MB] [--reps N]\n");
        return 2;
    }
    int bench = strcmp(argv[1], "bench") == 0;
    const char *dir = NULL, *blocks_s = NULL, *ids_s = NULL;
    size_t k = 5, top = 20, budget_mb = 2048;
    int block = -1, reps = 3;
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "twd-analyses: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--model"))
            dir = v;
        else if (!strcmp(argv[i], "--blocks"))
            blocks_s = v;
        else if (!strcmp(argv[i], "--block"))
            block = atoi(v);
        else if (!strcmp(argv[i], "--ids"))
            ids_s = v;
        else if (!strcmp(argv[i], "--k"))
            k = (size_t)atol(v);
        else if (!strcmp(argv[i], "--top"))
            top = (size_t)atol(v);
        else if (!strcmp(argv[i], "--budget-mb"))
            budget_mb = (size_t)atol(v);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(v);
        else {
            fprintf(stderr, "twd-analyses: unknown option %s\n", argv[i]);
            return 2;
        }
        i++;
    }
    if (!dir) {
        fprintf(stderr, "twd-analyses: --model DIR is required\n");
        return 2;
    }
    gpt2_model m;
    char err[512];
    double t0 = now();
    if (gpt2_load(dir, &m, err, sizeof err) != 0) {
        fprintf(stderr, "twd-analyses: %s\n", err);
        return 1;
    }
    double t_load = now() - t0;
    const size_t V = (size_t)m.cfg.vocab_size;

    long *idl = NULL;
    size_t W = parse_list(ids_s, &idl);
    if (!ids_s) { // default: 100 ids spread over the vocabulary
        free(idl);
        W = 100 < V ? 100 : V;
        idl = malloc(W * sizeof *idl);
        for (size_t w = 0; w < W; w++) idl[w] = (long)((w * 7919 + 13) % V);
    }
    int32_t *ids = malloc((W + 1) * sizeof *ids);
    for (size_t w = 0; w < W; w++) ids[w] = (int32_t)idl[w];
    free(idl);

    blockcache *c = blockcache_new(budget_mb << 20);
    if (!c) die("blockcache_new", TW_ENOMEM);

    if (!bench) {
        long *bl = NULL;
        size_t nb = parse_list(blocks_s, &bl);
        if (!blocks_s) {
            free(bl);
            nb = (size_t)m.cfg.n_layer;
            bl = malloc(nb * sizeof *bl);
            for (size_t i = 0; i < nb; i++) bl[i] = (long)i;
        }
        printf("{\"config\":{\"n_layer\":%d,\"n_head\":%d,\"n_embd\":%d,\"vocab_size\":%d},", m.cfg.n_layer,
               m.cfg.n_head, m.cfg.n_embd, m.cfg.vocab_size);
        printf("\"k\":%zu,\"top\":%zu,", k, top);
        dump_embeddings(&m, c, k);
        printf(",\"blocks\":[");
        for (size_t i = 0; i < nb; i++) {
            if (i) putchar(',');
            dump_block(&m, c, (int)bl[i], ids, W, k, top);
        }
        printf("]}\n");
        free(bl);
    } else {
        if (block < 0) block = m.cfg.n_layer - 1;
        const char *hint = blas_coretype_hint();
        printf("model %s: L=%d H=%d d=%d V=%d, loaded in %.3f s\n", dir, m.cfg.n_layer, m.cfg.n_head,
               m.cfg.n_embd, m.cfg.vocab_size, t_load);
        printf("OpenBLAS core %s, threads %d%s%s\n", blas_corename(), openblas_get_num_threads(),
               hint ? "; hint: OPENBLAS_CORETYPE=" : "", hint ? hint : "");
        bench_args a = {&m, c, block, ids, W, k, top};
        char name[128];
        snprintf(name, sizeof name, "svd block %d qk+vo top %zu k %zu", block, top, k);
        bench_one(name, run_svd_both, &a, reps);
        snprintf(name, sizeof name, "probe block %d, %zu words, k %zu", block, W, k);
        bench_one(name, run_probe, &a, reps);
        snprintf(name, sizeof name, "embeddings all schemes k %zu", k);
        bench_one(name, run_embeddings, &a, reps);
        bench_one("embeddings normalization", run_normalization, &a, reps);
        snprintf(name, sizeof name, "svd bias block %d k %zu", block, k);
        bench_one(name, run_bias, &a, reps);
        blockcache_stats st;
        blockcache_get_stats(c, &st);
        printf("cache: %zu bytes in %zu entries, budget %zu, hits %llu, misses %llu\n", st.bytes, st.entries,
               st.budget, (unsigned long long)st.hits, (unsigned long long)st.misses);
        printf("peak RSS %.0f MB (checkpoint file %.0f MB)\n", peak_rss_mb(),
               (double)m.file_size / 1048576.0);
    }
    blockcache_free(c);
    free(ids);
    gpt2_free(&m);
    return 0;
}
