/* twd-analyses: runs the weight analyses of docs/MATH.md §3-§6 and §9-§13 on
 * a checkpoint, for the numpy reference tests (JSON on stdout) and for the
 * benchmarks (cold / warm timings).
 *
 *   twd-analyses dump  --model DIR [--blocks 0,1] [--ids 1,2,3] [--k 5] [--top 20]
 *   twd-analyses bench --model DIR [--block 11] [--ids ...] [--k 5] [--top 20]
 *                      [--budget-mb 2048] [--reps 3]
 *   twd-analyses beyond --model DIR [--blocks 0,1] [--ids 1,2,3] [--phrase 1,2,3] [--k 5]
 *                      [--top 6] [--queries 64]
 *   twd-analyses bench-mlp --model DIR [--block 11] [--k 5] [--reps 3]
 *
 * beyond prints one JSON object with the analyses of §9-§13 (value vectors,
 * search for --ids, SVD of c_fc and c_proj, the sub-updates, layer-norm
 * geometry and self-check of --phrase, unselectable keys with --queries
 * queries, the sketch). bench-mlp times /mlp/values for every neuron of one
 * block, cold, against a plain sgemm of the same size in the same process.
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
#include "core/ana/lngeom.h"
#include "core/ana/mlp.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"
#include "core/ana/selfcheck.h"
#include "core/model/gpt2.h"
#include "core/nn/blas.h"
#include "core/nn/forward.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-analyses dump|bench|beyond|bench-mlp --model DIR [options]\n",
    "Runs the weight analyses (docs/MATH.md §3-§6, §9-§13) on the checkpoint in DIR.\n"
    "  dump       prints one JSON object: embeddings, normalization and, per block,\n"
    "             the word probes, the SVD of qk and vo (all heads) and the bias probes\n"
    "  bench      prints cold (empty block cache) and warm timings of each analysis\n"
    "  beyond     prints one JSON object of the analyses of §9-§13 (MLP, layer norm,\n"
    "             unselectable keys, sketch, self-check)\n"
    "  bench-mlp  times the value vectors of every neuron of --block, cold, and a\n"
    "             plain sgemm of the same size\n"
    "\n"
    "  --model DIR       checkpoint folder (required)\n"
    "  --blocks LIST     dump: blocks to analyse, e.g. 0,5,11 (default all)\n"
    "  --block B         bench: the block to time (default the last)\n"
    "  --ids LIST        token ids to probe (default 100 spread over the vocabulary)\n"
    "  --phrase LIST     beyond: the token ids of the phrase (default 8 spread ids)\n"
    "  --queries N       beyond: queries of the unselectable-keys estimate (default 64)\n"
    "  --k K             hits per list (default 5)\n"
    "  --top T           SVD directions per head (default 20)\n"
    "  --budget-mb MB    block cache budget (default 2048)\n"
    "  --reps N          bench: best of N (default 3)\n"
    "  -h, --help        this text\n"};

enum { CMD_DUMP, CMD_BENCH, CMD_BEYOND, CMD_BENCH_MLP };

typedef struct {
    int cmd;
    const char *dir, *blocks_s, *ids_s, *phrase_s;
    size_t k, top, budget_mb, queries;
    int block, reps;
} ana_args;

/* 0: run; 1: --help printed; -1: bad arguments (reported). The command
 * (dump, bench, beyond or bench-mlp) is the one operand. */
static int parse_args(int argc, char **argv, void *ctx)
{
    ana_args *a = ctx;
    static const char *const cmds[] = {"dump", "bench", "beyond", "bench-mlp"};
    *a = (ana_args){.k = 5, .top = 20, .budget_mb = 2048, .block = -1, .reps = 3, .queries = 64};
    const tool_opt opts[] = {
        OPT_STR("model", &a->dir),
        OPT_STR("blocks", &a->blocks_s),
        OPT_INT("block", &a->block, -1, 1 << 20),
        OPT_STR("ids", &a->ids_s),
        OPT_STR("phrase", &a->phrase_s),
        OPT_SIZE("queries", &a->queries, (size_t)1 << 20),
        OPT_SIZE("k", &a->k, (size_t)1 << 30),
        OPT_SIZE("top", &a->top, (size_t)1 << 30),
        OPT_SIZE("budget-mb", &a->budget_mb, (size_t)1 << 30),
        OPT_INT("reps", &a->reps, 1, 1000),
        OPT_END,
    };
    int rc = tool_getopt(argc, argv, opts, &help, 1);
    if (rc) return rc;
    if ((a->cmd = tool_command(argv[optind], cmds, 4)) < 0) {
        tool_usage(stderr, &help);
        return -1;
    }
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

/* ---- beyond: §9-§13 ---- */

static json_t *ints64_json(const int32_t *x, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(x[i]));
    return a;
}

static json_t *values_json(const gpt2_model *m, blockcache *c, int block, size_t k)
{
    mlp_values_result r;
    int rc = mlp_values(m, ANA_CTX(c), block, NULL, 0, k, &r);
    if (rc) die("mlp_values", rc);
    json_t *o = json_pack("{s:o,s:o,s:o,s:o}", "neurons", ints64_json(r.neurons, r.n), "norm",
                          tool_json_doubles(r.norm, r.n), "top", tool_json_hit_lists(r.top, r.n, k), "bottom",
                          tool_json_hit_lists(r.bottom, r.n, k));
    mlp_values_result_free(&r);
    return o;
}

static json_t *mlp_svd_dump(const gpt2_model *m, blockcache *c, int block, size_t top, size_t k)
{
    json_t *o = json_object();
    for (int mat = 0; mat < 2; mat++) {
        mlp_svd_result r;
        int rc = mlp_svd(m, ANA_CTX(c), block, mat, top, k, &r);
        if (rc) die("mlp_svd", rc);
        json_object_set_new(o, mlp_svd_matrix_name(mat),
                            json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "s", tool_json_doubles(r.s, r.r),
                                      "coverage", tool_json_doubles(r.coverage, r.r), "frac99",
                                      tool_json_real(r.frac99), "sign", tool_json_ints(r.sign, top), "left",
                                      tool_json_hit_lists(r.left, top, k), "right",
                                      tool_json_hit_lists(r.right, top, k), "neurons",
                                      tool_json_hit_lists(r.neurons, top, k)));
        mlp_svd_result_free(&r);
    }
    return o;
}

static json_t *keys_dump(const gpt2_model *m, blockcache *c, int block, size_t queries, int method)
{
    lngeom_keys_result r;
    int rc = lngeom_keys(m, ANA_CTX(c), block, queries, method, 11, &r);
    if (rc) die("lngeom_keys", rc);
    json_t *sel = json_array();
    for (size_t i = 0; i < r.n_head; i++)
        json_array_append_new(sel, json_integer((json_int_t)r.selectable[i]));
    json_t *o = json_pack("{s:o,s:o}", "selectable", sel, "unselectable",
                          tool_json_doubles(r.unselectable, r.n_head));
    if (r.q)
        json_object_set_new(o, "queries",
                            tool_json_floats(r.q, r.queries * (size_t)(m->cfg.n_embd / m->cfg.n_head)));
    if (r.drawn) json_object_set_new(o, "drawn", ints64_json(r.drawn, r.queries));
    lngeom_keys_result_free(&r);
    return o;
}

static json_t *layers_dump(const gpt2_model *m, blockcache *c, const gpt2_forward_result *fr, size_t k)
{
    lngeom_result r;
    int rc = lngeom_layers(m, ANA_CTX(c), fr, k, &r);
    if (rc) die("lngeom_layers", rc);
    json_t *layers = json_array();
    for (size_t li = 0; li < r.n_layers; li++) {
        const lngeom_layer *l = &r.layers[li];
        char name[32];
        lngeom_layer_name(l, name, sizeof name);
        json_t *lists = json_object();
        for (int t = 0; t < LNG_N_LISTS; t++)
            json_object_set_new(lists, lngeom_list_name(t),
                                tool_json_hits(r.lists + (li * LNG_N_LISTS + (size_t)t) * k, k));
        json_array_append_new(
            layers,
            json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:o,s:i,s:o,s:o,s:o,s:o,s:o}", "name", name,
                      "rows", (json_int_t)l->rows, "mean_mean", tool_json_real(l->mean_mean), "mean_abs",
                      tool_json_real(l->mean_abs), "after_mean_abs", tool_json_real(l->after_mean_abs),
                      "after_max_abs", tool_json_real(l->after_max_abs), "radius_mean",
                      tool_json_real(l->radius_mean), "radius_std", tool_json_real(l->radius_std),
                      "gmax_index", l->gmax_index, "gmax", tool_json_real(l->gmax), "gmin_index",
                      l->gmin_index, "gmin", tool_json_real(l->gmin), "beta_norm",
                      tool_json_real(l->beta_norm), "change_mean", tool_json_real(l->change_mean),
                      "change_std", tool_json_real(l->change_std), "lists", lists));
    }
    lngeom_result_free(&r);
    return layers;
}

static json_t *selfcheck_dump(const gpt2_model *m, const gpt2_forward_result *fr)
{
    selfcheck_result r;
    int rc = selfcheck(m, NULL, fr, 5, &r);
    if (rc) die("selfcheck", rc);
    json_t *blocks = json_array();
    for (size_t b = 0; b < r.n_blocks; b++) {
        json_t *heads = json_array();
        for (size_t h = 0; h < r.n_head; h++) {
            const selfcheck_head *s = &r.heads[b * r.n_head + h];
            json_array_append_new(
                heads,
                json_pack("{s:[o,o],s:[o,o],s:[o,o],s:o,s:o,s:o,s:o,s:o}", "scores",
                          tool_json_real(s->scores.max_abs), tool_json_real(s->scores.max_rel), "patterns",
                          tool_json_real(s->patterns.max_abs), tool_json_real(s->patterns.max_rel), "outputs",
                          tool_json_real(s->outputs.max_abs), tool_json_real(s->outputs.max_rel), "bk_norm",
                          tool_json_real(s->bk_norm), "bk_pattern", tool_json_real(s->bk_pattern_diff),
                          "bk_pattern_exact", tool_json_real(s->bk_pattern_exact), "bk_shift",
                          tool_json_real(s->bk_score_shift), "bk_spread",
                          tool_json_real(s->bk_shift_spread)));
        }
        json_array_append_new(blocks, json_pack("{s:i,s:o,s:[o,o]}", "block", r.block0 + (int)b, "heads",
                                                heads, "total", tool_json_real(r.total[b].max_abs),
                                                tool_json_real(r.total[b].max_rel)));
    }
    selfcheck_result_free(&r);
    return blocks;
}

static int run_beyond(const ana_args *a, const gpt2_model *m, blockcache *c, const int32_t *ids, size_t W)
{
    const gpt2_config *g = &m->cfg;
    int32_t *bl, *ph;
    size_t nb = (size_t)g->n_layer, np = 8;
    if (a->blocks_s ? parse_list("--blocks", a->blocks_s, &bl, &nb) : !(bl = spread_ids(nb, 0, 1, nb)))
        return 2;
    if (a->phrase_s ? parse_list("--phrase", a->phrase_s, &ph, &np)
                    : !(ph = spread_ids(np, 5, 37, (size_t)g->vocab_size))) {
        free(bl);
        return 2;
    }
    const size_t k = a->k, dh = (size_t)(g->n_embd / g->n_head);
    size_t r = g->n_embd < g->n_inner ? (size_t)g->n_embd : (size_t)g->n_inner, top = a->top < r ? a->top : r;
    json_t *doc =
        json_pack("{s:{s:i,s:i,s:i,s:i,s:i},s:I,s:I,s:I}", "config", "n_layer", g->n_layer, "n_head",
                  g->n_head, "n_embd", g->n_embd, "n_inner", g->n_inner, "vocab_size", g->vocab_size, "k",
                  (json_int_t)k, "top", (json_int_t)top, "queries", (json_int_t)a->queries);
    json_t *blocks = json_array();
    for (size_t i = 0; i < nb; i++)
        json_array_append_new(
            blocks,
            json_pack("{s:i,s:o,s:o,s:{s:o,s:o}}", "block", (int)bl[i], "values", values_json(m, c, bl[i], k),
                      "svd", mlp_svd_dump(m, c, bl[i], top, k), "keys", "random",
                      keys_dump(m, c, bl[i], a->queries, LNG_KEYS_RANDOM), "targeted",
                      keys_dump(m, c, bl[i],
                                a->queries < (size_t)g->vocab_size ? a->queries : (size_t)g->vocab_size,
                                LNG_KEYS_TARGETED)));
    json_object_set_new(doc, "blocks", blocks);
    /* search: every --ids token, in every block and in the first asked */
    json_t *search = json_array();
    for (size_t w = 0; w < W; w++)
        for (int all = 0; all < 2; all++) {
            int block = all ? -1 : bl[0];
            mlp_search_result sr;
            int rc = mlp_search(m, ANA_CTX(c), block, ids[w], k, &sr);
            if (rc) die("mlp_search", rc);
            json_t *hits = json_array();
            for (size_t j = 0; j < sr.k; j++)
                json_array_append_new(hits, json_pack("[i,i,o,o,I]", sr.hits[j].block, (int)sr.hits[j].neuron,
                                                      tool_json_real(sr.hits[j].score),
                                                      tool_json_real(sr.hits[j].norm),
                                                      (json_int_t)sr.hits[j].rank));
            json_array_append_new(
                search, json_pack("{s:i,s:i,s:o}", "token", (int)ids[w], "block", block, "hits", hits));
            mlp_search_result_free(&sr);
        }
    json_object_set_new(doc, "search", search);
    /* the phrase: sub-updates, layer-norm states, self-check */
    gpt2_forward_opts o = {.logits = GPT2_LOGITS_NONE, .keep_mlp = 1, .keep_mid = 1};
    gpt2_forward_result *fr = NULL;
    int rc = gpt2_forward(m, ph, np, &o, &fr);
    if (rc) die("gpt2_forward", rc);
    mlp_updates_result ur;
    size_t utop = 5 < (size_t)g->n_inner ? 5 : (size_t)g->n_inner;
    if ((rc = mlp_updates(m, ANA_CTX(c), fr, utop, k, &ur))) die("mlp_updates", rc);
    json_t *ub = json_array();
    for (size_t b = 0; b < ur.n_blocks; b++) {
        json_t *pos = json_array();
        for (size_t t = 0; t < np; t++) {
            json_t *ups = json_array();
            for (size_t j = 0; j < utop; j++) {
                size_t at = (b * np + t) * utop + j;
                const mlp_update *u = &ur.updates[at];
                json_array_append_new(ups,
                                      json_pack("{s:i,s:o,s:o,s:o,s:o}", "neuron", (int)u->neuron, "coef",
                                                tool_json_real(u->coef), "norm", tool_json_real(u->norm),
                                                "weight", tool_json_real(u->weight), "tokens",
                                                tool_json_hits(ur.tokens + at * k, k)));
            }
            json_array_append_new(pos, json_pack("{s:o,s:o}", "update_norm",
                                                 tool_json_real(ur.update_norm[b * np + t]), "updates", ups));
        }
        json_array_append_new(
            ub, json_pack("{s:o,s:o}", "bias_norm", tool_json_real(ur.bias_norm[b]), "positions", pos));
    }
    mlp_updates_result_free(&ur);
    json_object_set_new(doc, "phrase", ints64_json(ph, np));
    json_object_set_new(doc, "updates", json_pack("{s:I,s:o}", "top", (json_int_t)utop, "blocks", ub));
    json_object_set_new(
        doc, "layernorm",
        json_pack("{s:o,s:o}", "wte", layers_dump(m, c, NULL, k), "phrase", layers_dump(m, c, fr, k)));
    json_object_set_new(doc, "selfcheck", selfcheck_dump(m, fr));
    /* the forward's patterns, for the reference's own comparison */
    json_object_set_new(doc, "patterns",
                        tool_json_floats(fr->att, (size_t)fr->att_blocks * (size_t)fr->att_heads * np * np));
    gpt2_forward_free(fr);
    /* sketch of block bl[0], head n_head - 1, default dims */
    int dims[2];
    lngeom_default_dims(m, bl[0], dims);
    lngeom_sketch_result sk;
    if ((rc = lngeom_sketch(m, bl[0], g->n_head - 1, dims, 16, &sk))) die("lngeom_sketch", rc);
    json_object_set_new(doc, "sketch",
                        json_pack("{s:i,s:i,s:[i,i],s:[[o,o],[o,o]],s:o}", "block", (int)bl[0], "head",
                                  g->n_head - 1, "dims", dims[0], dims[1], "w2", tool_json_real(sk.w2[0][0]),
                                  tool_json_real(sk.w2[0][1]), tool_json_real(sk.w2[1][0]),
                                  tool_json_real(sk.w2[1][1]), "points",
                                  tool_json_doubles(sk.pts, 4 * 16 * 2)));
    lngeom_sketch_result_free(&sk);
    (void)dh;
    free(bl);
    free(ph);
    return tool_print_json(doc, 0) ? 1 : 0;
}

/* ---- bench-mlp: value vectors of a whole block against a plain sgemm ---- */

static int run_bench_mlp(const ana_args *a, const gpt2_model *m, blockcache *c)
{
    const gpt2_config *g = &m->cfg;
    const int block = a->block < 0 ? g->n_layer - 1 : a->block;
    const size_t F = (size_t)g->n_inner, d = (size_t)g->n_embd, V = (size_t)g->vocab_size;
    const char *hint = blas_coretype_hint();
    printf("model %s: d=%zu d_ff=%zu V=%zu; OpenBLAS core %s, threads %d%s%s\n", a->dir, d, F, V,
           blas_corename(), openblas_get_num_threads(), hint ? "; hint: OPENBLAS_CORETYPE=" : "",
           hint ? hint : "");
    double flop = 2.0 * (double)F * (double)V * (double)d;
    float *Q = malloc(F * d * sizeof(float)), *C = malloc(F * V * sizeof(float));
    if (!Q || !C) die("bench-mlp", TW_ENOMEM);
    for (size_t i = 0; i < F; i++)
        for (size_t j = 0; j < d; j++) Q[i * d + j] = GPT2_AT(m->p.h[block].fc_proj_w, i, j);
    double best_v = 1e30, best_g = 1e30;
    for (int rep = 0; rep < a->reps; rep++) {
        /* plain sgemm: C (F, V) = Q (F, d) E^T, the same product in one call */
        double t0 = tw_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)F, (int)V, (int)d, 1.0f, Q, (int)d,
                    m->p.wte, (int)d, 0.0f, C, (int)V);
        double t1 = tw_now();
        blockcache_clear(c);
        mlp_values_result r;
        int rc = mlp_values(m, ANA_CTX(c), block, NULL, 0, a->k, &r);
        double t2 = tw_now();
        if (rc) die("mlp_values", rc);
        mlp_values_result_free(&r);
        if (t1 - t0 < best_g) best_g = t1 - t0;
        if (t2 - t1 < best_v) best_v = t2 - t1;
        printf("rep %d: sgemm %.3f s (%.1f GFLOP/s), mlp_values cold %.3f s, ratio %.2f\n", rep + 1, t1 - t0,
               flop / (t1 - t0) / 1e9, t2 - t1, (t2 - t1) / (t1 - t0));
        fflush(stdout);
    }
    printf("best: sgemm %.3f s (%.1f GFLOP), mlp_values all %zu neurons of block %d, k %zu, cold %.3f s: "
           "ratio %.2f\n",
           best_g, flop / 1e9, F, block, a->k, best_v, best_v / best_g);
    free(Q);
    free(C);
    return 0;
}

static int run(void *args, gpt2_model *m, double t_load)
{
    const ana_args *a = args;
    const size_t V = (size_t)m->cfg.vocab_size;
    int32_t *ids;
    size_t W = 100 < V ? 100 : V; /* default: 100 ids spread over the vocabulary */
    if (a->ids_s ? parse_list("--ids", a->ids_s, &ids, &W) : !(ids = spread_ids(W, 13, 7919, V))) return 2;
    blockcache *c = blockcache_new(a->budget_mb << 20);
    if (!c) die("blockcache_new", TW_ENOMEM);
    int status = a->cmd == CMD_BENCH       ? run_bench(a, m, c, ids, W, t_load)
                 : a->cmd == CMD_BEYOND    ? run_beyond(a, m, c, ids, W)
                 : a->cmd == CMD_BENCH_MLP ? run_bench_mlp(a, m, c)
                                           : run_dump(a, m, c, ids, W);
    blockcache_free(c);
    free(ids);
    return status;
}

int main(int argc, char **argv)
{
    ana_args a = {0};
    return tool_main_model("twd-analyses", argc, argv, parse_args, &a, 2, &a.dir, run);
}
