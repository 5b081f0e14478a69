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
 * request of a block after start), warm = the same request again (for the
 * probe: other words, the ids + 1, with k + 5, as a second /probe of the
 * block). */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "base/clock.h"
#include "base/log.h"
#include "core/ana/blockcache.h"
#include "core/ana/embed_norms.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"
#include "core/model/gpt2.h"
#include "core/nn/blas.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-analyses dump|bench --model DIR [options]\n",
    "Runs the weight analyses (docs/MATH.md §3-§6) on the checkpoint in DIR.\n"
    "  dump   prints one JSON object: embeddings, normalization and, per block,\n"
    "         the word probes, the SVD of qk and vo (all heads) and the bias probes\n"
    "  bench  prints cold (empty block cache) and warm timings of each analysis\n"
    "\n"
    "  --model DIR       checkpoint folder (required)\n"
    "  --blocks LIST     dump: blocks to analyse, e.g. 0,5,11 (default all)\n"
    "  --block B         bench: the block to time (default the last)\n"
    "  --ids LIST        token ids to probe (default 100 spread over the vocabulary)\n"
    "  --k K             hits per list (default 5)\n"
    "  --top T           SVD directions per head (default 20)\n"
    "  --budget-mb MB    block cache budget (default 2048)\n"
    "  --reps N          bench: best of N (default 3)\n"
    "  -h, --help        this text\n"};

typedef struct {
    int bench;
    const char *dir, *blocks_s, *ids_s;
    size_t k, top, budget_mb;
    int block, reps;
} ana_args;

/* One option of argv into *a: 0, or -1 (reported). */
static int set_option(void *ctx, int c, const char *v)
{
    ana_args *a = ctx;
    long long x;
    switch (c) {
    case 'm': a->dir = v; return 0;
    case 'B': a->blocks_s = v; return 0;
    case 'i': a->ids_s = v; return 0;
    case 'k': return tool_parse_size("--k", v, (size_t)1 << 30, &a->k);
    case 't': return tool_parse_size("--top", v, (size_t)1 << 30, &a->top);
    case 'M': return tool_parse_size("--budget-mb", v, (size_t)1 << 30, &a->budget_mb);
    case 'b':
        if (tool_parse_ll("--block", v, -1, 1 << 20, &x)) return -1;
        a->block = (int)x;
        return 0;
    case 'r':
        if (tool_parse_ll("--reps", v, 1, 1000, &x)) return -1;
        a->reps = (int)x;
        return 0;
    default: return -1;
    }
}

/* 0: run; 1: --help printed; -1: bad arguments (reported). The command
 * (dump or bench) is the one argument that is not an option. */
static int parse_args(int argc, char **argv, void *ctx)
{
    ana_args *a = ctx;
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"blocks", required_argument, NULL, 'B'},
                                         {"block", required_argument, NULL, 'b'},
                                         {"ids", required_argument, NULL, 'i'},
                                         {"k", required_argument, NULL, 'k'},
                                         {"top", required_argument, NULL, 't'},
                                         {"budget-mb", required_argument, NULL, 'M'},
                                         {"reps", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *a = (ana_args){.k = 5, .top = 20, .budget_mb = 2048, .block = -1, .reps = 3};
    int rc = tool_getopt(argc, argv, "h", opts, &help, set_option, a);
    const char *cmd = optind < argc ? argv[optind] : "";
    if (!rc && (optind + 1 != argc || (strcmp(cmd, "dump") && strcmp(cmd, "bench")))) {
        tool_usage(stderr, &help);
        rc = -1;
    }
    if (rc) return rc;
    a->bench = strcmp(cmd, "bench") == 0;
    if (!a->dir) {
        tw_log("--model DIR is required");
        return -1;
    }
    return 0;
}

/* The list s of flag into *out (*n items, never NULL). 0, or -1 (reported). */
static int parse_list(const char *flag, const char *s, int32_t **out, size_t *n)
{
    if (tool_parse_ids(s, out, n) != 0) {
        tw_log("%s: bad number list '%s'", flag, s);
        return -1;
    }
    if (!*out && !(*out = malloc(sizeof **out))) return -1;
    return 0;
}

/* n ids (first + w * step) % mod, w = 0..n-1: the default lists. */
static int32_t *spread_ids(size_t n, size_t first, size_t step, size_t mod)
{
    int32_t *v = malloc((n + 1) * sizeof *v);
    for (size_t w = 0; v && w < n; w++) v[w] = (int32_t)((first + w * step) % mod);
    return v;
}

static void die(const char *what, int rc)
{
    tw_log("%s: %s (%d)", what, tw_strerror(rc), rc);
    exit(1);
}

/* ---- dump ---- */

static json_t *embeddings_json(const gpt2_model *m, blockcache *c, size_t k)
{
    embed_norms_result r;
    int rc = embed_norms(m, ANA_CTX(c), k, &r);
    if (rc) die("embed_norms", rc);
    json_t *schemes = json_object();
    for (int s = 0; s < EMBED_N_SCHEMES; s++)
        json_object_set_new(schemes, embed_scheme_name(s),
                            json_pack("{s:o,s:o}", "top", tool_json_hits(r.top + (size_t)s * k, k), "bottom",
                                      tool_json_hits(r.bottom + (size_t)s * k, k)));
    embed_norms_result_free(&r);
    return json_pack("{s:I,s:o}", "k", (json_int_t)k, "schemes", schemes);
}

static json_t *normalization_json(const gpt2_model *m)
{
    embed_normalization_result n;
    int rc = embed_normalization(m, &n);
    if (rc) die("embed_normalization", rc);
    json_t *rows = json_array();
    for (int i = 0; i < 4; i++) {
        const embed_distance_stats *s = &n.rows[i];
        json_array_append_new(
            rows, json_pack("{s:s,s:o,s:o,s:o,s:o}", "name", embed_normalization_row_name(i), "l2_mean",
                            tool_json_real(s->l2_mean), "l2_std", tool_json_real(s->l2_std), "cos_mean",
                            tool_json_real(s->cos_mean), "cos_std", tool_json_real(s->cos_std)));
    }
    return json_pack("{s:o,s:o,s:o}", "avg_norm", tool_json_real(n.avg_norm), "scale",
                     tool_json_real(n.scale), "rows", rows);
}

static json_t *probe_json(const gpt2_model *m, blockcache *c, int block, const int32_t *ids, size_t W,
                          size_t k)
{
    const size_t H = (size_t)m->cfg.n_head;
    probe_words_result pw;
    int rc = probe_words(m, ANA_CTX(c), block, ids, W, k, &pw);
    if (rc) die("probe_words", rc);
    json_t *words = json_array();
    for (size_t w = 0; w < W; w++)
        json_array_append_new(words, json_pack("{s:o,s:o,s:o,s:o,s:o}", "keys",
                                               tool_json_hit_lists(pw.keys + w * H * k, H, k), "values",
                                               tool_json_hit_lists(pw.values + w * H * k, H, k), "value_norm",
                                               tool_json_doubles(pw.value_norm + w * H, H), "layer_values",
                                               tool_json_hits(pw.layer_values + w * k, k), "layer_norm",
                                               tool_json_real(pw.layer_norm[w])));
    probe_words_result_free(&pw);
    return json_pack("{s:o,s:o}", "ids", tool_json_ints(ids, W), "words", words);
}

static json_t *svd_json(const gpt2_model *m, blockcache *c, int block, size_t k, size_t top)
{
    json_t *svd = json_object();
    for (int mat = 0; mat < 2; mat++) {
        probe_svd_result r;
        int rc = probe_svd(m, ANA_CTX(c), block, mat, -1, top, k, &r);
        if (rc) die("probe_svd", rc);
        json_t *heads = json_array();
        for (size_t i = 0; i < r.n_heads; i++)
            json_array_append_new(
                heads, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "s", tool_json_doubles(r.s + i * r.dh, r.dh),
                                 "coverage", tool_json_doubles(r.coverage + i * r.dh, r.dh), "frac99",
                                 tool_json_real(r.frac99[i]), "sign", tool_json_ints(r.sign + i * top, top),
                                 "left", tool_json_hit_lists(r.left + i * top * k, top, k), "right",
                                 tool_json_hit_lists(r.right + i * top * k, top, k)));
        json_object_set_new(svd, probe_svd_matrix_name(mat), json_pack("{s:o}", "heads", heads));
        probe_svd_result_free(&r);
    }
    return svd;
}

static json_t *bias_json(const gpt2_model *m, blockcache *c, int block, size_t k)
{
    const size_t H = (size_t)m->cfg.n_head;
    probe_bias_result b;
    int rc = probe_svd_bias(m, ANA_CTX(c), block, k, &b);
    if (rc) die("probe_svd_bias", rc);
    json_t *heads = json_array();
    for (size_t h = 0; h < H; h++) {
        json_t *lists = json_object();
        for (int l = 0; l < PROBE_BIAS_N; l++)
            json_object_set_new(lists, probe_bias_name(l),
                                tool_json_hits(b.hits + (h * PROBE_BIAS_N + (size_t)l) * k, k));
        json_array_append_new(heads, lists);
    }
    probe_bias_result_free(&b);
    return heads;
}

static int run_dump(const ana_args *a, const gpt2_model *m, blockcache *c, const int32_t *ids, size_t W)
{
    int32_t *bl;
    size_t nb = (size_t)m->cfg.n_layer; /* default: every block */
    if (a->blocks_s ? parse_list("--blocks", a->blocks_s, &bl, &nb) : !(bl = spread_ids(nb, 0, 1, nb)))
        return 2;
    const gpt2_config *g = &m->cfg;
    json_t *doc = json_pack("{s:{s:i,s:i,s:i,s:i},s:I,s:I}", "config", "n_layer", g->n_layer, "n_head",
                            g->n_head, "n_embd", g->n_embd, "vocab_size", g->vocab_size, "k",
                            (json_int_t)a->k, "top", (json_int_t)a->top);
    json_object_set_new(doc, "embeddings", embeddings_json(m, c, a->k));
    json_object_set_new(doc, "normalization", normalization_json(m));
    json_t *blocks = json_array();
    for (size_t i = 0; i < nb; i++)
        json_array_append_new(blocks, json_pack("{s:i,s:o,s:o,s:o}", "block", (int)bl[i], "probe",
                                                probe_json(m, c, bl[i], ids, W, a->k), "svd",
                                                svd_json(m, c, bl[i], a->k, a->top), "bias",
                                                bias_json(m, c, bl[i], a->k)));
    json_object_set_new(doc, "blocks", blocks);
    free(bl);
    return tool_print_json(doc, 0) ? 1 : 0;
}

/* ---- bench ---- */

typedef struct {
    const gpt2_model *m;
    blockcache *c;
    int block;
    const int32_t *ids;
    size_t W, k, top;
} bench_args;

static void run_svd_both(const bench_args *a)
{
    static const int mats[2] = {PROBE_SVD_QK, PROBE_SVD_VO};
    probe_svd_result r[2];
    int rc = probe_svd_multi(a->m, ANA_CTX(a->c), a->block, mats, 2, -1, a->top, a->k, r);
    if (rc) die("probe_svd_multi", rc);
    probe_svd_result_free(&r[0]);
    probe_svd_result_free(&r[1]);
}

static void run_probe(const bench_args *a)
{
    probe_words_result r;
    int rc = probe_words(a->m, ANA_CTX(a->c), a->block, a->ids, a->W, a->k, &r);
    if (rc) die("probe_words", rc);
    probe_words_result_free(&r);
}

static void run_embeddings(const bench_args *a)
{
    embed_norms_result r;
    int rc = embed_norms(a->m, ANA_CTX(a->c), a->k, &r);
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
    int rc = probe_svd_bias(a->m, ANA_CTX(a->c), a->block, a->k, &r);
    if (rc) die("probe_svd_bias", rc);
    probe_bias_result_free(&r);
}

/* The probe of other words (the ids shifted by one) with k + 5, on the
 * block a probe just warmed: what a second /probe of the block costs. */
static void run_probe_other(const bench_args *a)
{
    int32_t *ids = malloc((a->W + 1) * sizeof *ids);
    if (!ids) die("probe_words", TW_ENOMEM);
    for (size_t w = 0; w < a->W; w++) ids[w] = (a->ids[w] + 1) % a->m->cfg.vocab_size;
    probe_words_result r;
    int rc = probe_words(a->m, ANA_CTX(a->c), a->block, ids, a->W, a->k + 5, &r);
    free(ids);
    if (rc) die("probe_words", rc);
    probe_words_result_free(&r);
}

/* Best of reps of fn on an empty cache (cold) and right after, cached
 * (warm: fn again, or `then` when given). */
static void bench_two(const char *name, void (*fn)(const bench_args *), void (*then)(const bench_args *),
                      const bench_args *a, int reps)
{
    double best_cold = 1e30, best_warm = 1e30;
    for (int i = 0; i < reps; i++) {
        blockcache_clear(a->c);
        double t0 = tw_now();
        fn(a);
        double t1 = tw_now();
        (then ? then : fn)(a);
        double t2 = tw_now();
        if (t1 - t0 < best_cold) best_cold = t1 - t0;
        if (t2 - t1 < best_warm) best_warm = t2 - t1;
    }
    printf("%-44s cold %8.3f s   %s %8.3f s   (best of %d)\n", name, best_cold,
           then ? "then other" : "warm-cache", best_warm, reps);
    fflush(stdout);
}

static void bench_one(const char *name, void (*fn)(const bench_args *), const bench_args *a, int reps)
{
    bench_two(name, fn, NULL, a, reps);
}

static double peak_rss_mb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0;
}

static int run_bench(const ana_args *aa, const gpt2_model *m, blockcache *c, const int32_t *ids, size_t W,
                     double t_load)
{
    const gpt2_config *g = &m->cfg;
    const int block = aa->block < 0 ? g->n_layer - 1 : aa->block;
    const char *hint = blas_coretype_hint();
    printf("model %s: L=%d H=%d d=%d V=%d, loaded in %.3f s\n", aa->dir, g->n_layer, g->n_head, g->n_embd,
           g->vocab_size, t_load);
    printf("OpenBLAS core %s, threads %d%s%s\n", blas_corename(), openblas_get_num_threads(),
           hint ? "; hint: OPENBLAS_CORETYPE=" : "", hint ? hint : "");
    const bench_args a = {m, c, block, ids, W, aa->k, aa->top};
    char name[128];
    snprintf(name, sizeof name, "svd block %d qk+vo top %zu k %zu", block, a.top, a.k);
    bench_one(name, run_svd_both, &a, aa->reps);
    snprintf(name, sizeof name, "probe block %d, %zu words, k %zu", block, W, a.k);
    bench_two(name, run_probe, run_probe_other, &a, aa->reps);
    snprintf(name, sizeof name, "embeddings all schemes k %zu", a.k);
    bench_one(name, run_embeddings, &a, aa->reps);
    bench_one("embeddings normalization", run_normalization, &a, aa->reps);
    snprintf(name, sizeof name, "svd bias block %d k %zu", block, a.k);
    bench_one(name, run_bias, &a, aa->reps);
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    printf("cache: %zu bytes in %zu entries, budget %zu, hits %llu, misses %llu\n", st.bytes, st.entries,
           st.budget, (unsigned long long)st.hits, (unsigned long long)st.misses);
    printf("peak RSS %.0f MB (checkpoint file %.0f MB)\n", peak_rss_mb(), (double)m->file_size / 1048576.0);
    return 0;
}

int main(int argc, char **argv)
{
    ana_args a;
    int rc = tool_start("twd-analyses", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    gpt2_model m;
    double t_load;
    if (tool_load_model(a.dir, &m, &t_load)) return 1;
    const size_t V = (size_t)m.cfg.vocab_size;
    int32_t *ids;
    size_t W = 100 < V ? 100 : V; /* default: 100 ids spread over the vocabulary */
    if (a.ids_s ? parse_list("--ids", a.ids_s, &ids, &W) : !(ids = spread_ids(W, 13, 7919, V))) {
        gpt2_free(&m);
        return 2;
    }
    blockcache *c = blockcache_new(a.budget_mb << 20);
    if (!c) die("blockcache_new", TW_ENOMEM);
    int status = a.bench ? run_bench(&a, &m, c, ids, W, t_load) : run_dump(&a, &m, c, ids, W);
    blockcache_free(c);
    free(ids);
    gpt2_free(&m);
    return status;
}
