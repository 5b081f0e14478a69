/* twd-stats: the trajectory statistics of docs/MATH.md §14 on a checkpoint,
 * for the numpy reference test (JSON on stdout) and the benchmark.
 *
 *   twd-stats dump  --model DIR (--texts "1,2,3;4,5" | --random N --len T [--seed S])
 *                   [--k 5] [--gelu tanh|erf] [--states]
 *   twd-stats bench --model DIR [--random 50 --len 20] [--k 5] [--reps 3] [--no-big]
 *
 * dump prints one JSON object: the summaries of every state and bucket, the
 * per-position values (t, rank, cos_next, cos_self, cos_final, prob_next per
 * state) and, with --states, every state vector the statistics were
 * computed from (tests/ref/stats_ref.py recomputes everything from them in
 * float64). bench times the forward passes alone, traj_stats, and a plain
 * float GEMM of the same state rows against wte (in the same blocks, and as
 * one call), and prints the ratios. */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/rng.h"
#include "core/ana/traj_stats.h"
#include "core/model/gpt2.h"
#include "core/nn/blas.h"
#include "core/nn/forward.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-stats dump|bench --model DIR [options]\n",
    "Trajectory statistics (docs/MATH.md §14) of token-id texts on the checkpoint in DIR.\n"
    "  dump   prints one JSON object: summaries per state and bucket, the values per\n"
    "         position and, with --states, the state vectors\n"
    "  bench  times the forward passes, the statistics, and a plain sgemm of the same\n"
    "         rows against wte; prints the ratio\n"
    "\n"
    "  --model DIR       checkpoint folder (required)\n"
    "  --texts LIST      texts as comma-separated ids, texts separated by ';'\n"
    "  --random N        N seeded random texts instead (bench default 50)\n"
    "  --len T           tokens per random text (default 20)\n"
    "  --seed S          seed of --random (default 1)\n"
    "  --k K             top-k of rank_next (default 5)\n"
    "  --gelu tanh|erf   GELU form (default tanh)\n"
    "  --states          dump: also print every state vector\n"
    "  --reps N          bench: best of N (default 3)\n"
    "  --no-big          bench: skip the single-call sgemm (it needs rows x V floats)\n"
    "  -h, --help        this text\n"};

typedef struct {
    int bench, states, no_big, reps;
    const char *dir, *texts;
    size_t random, len, k;
    uint64_t seed;
    int gelu; /* gpt2_gelu */
} st_args;

static int parse_args(int argc, char **argv, void *ctx)
{
    st_args *a = ctx;
    static const char *const cmds[] = {"dump", "bench"};
    static const char *const gelu[] = {"tanh", "erf", NULL};
    static const int gelu_v[] = {GPT2_GELU_TANH, GPT2_GELU_ERF};
    *a = (st_args){.k = 5, .len = 20, .seed = 1, .reps = 3};
    const tool_opt opts[] = {OPT_STR("model", &a->dir),
                             OPT_STR("texts", &a->texts),
                             OPT_SIZE("random", &a->random, (size_t)1 << 20),
                             OPT_SIZE("len", &a->len, (size_t)1 << 20),
                             OPT_U64("seed", &a->seed),
                             OPT_SIZE("k", &a->k, (size_t)1 << 30),
                             OPT_CHOICE("gelu", &a->gelu, gelu, gelu_v),
                             OPT_FLAG("states", &a->states),
                             OPT_INT("reps", &a->reps, 1, 1000),
                             OPT_FLAG("no-big", &a->no_big),
                             OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, 1);
    if (rc) return rc;
    if ((a->bench = tool_command(argv[optind], cmds, 2)) < 0) {
        tool_usage(stderr, &help);
        return -1;
    }
    if (a->bench && !a->texts && !a->random) a->random = 50;
    if (!a->dir || (!a->texts && !a->random)) {
        tw_log("--model DIR and one of --texts, --random are required");
        return -1;
    }
    return 0;
}

/* The texts of --texts or --random; *store owns the ids. NULL (reported). */
static ts_text *make_texts(const st_args *a, int V, size_t *nt, int32_t **store)
{
    *store = NULL;
    if (a->random) {
        ts_text *tx = malloc(a->random * sizeof *tx);
        int32_t *ids = *store = malloc((a->random * a->len + 1) * sizeof *ids);
        if (!tx || !ids) return free(tx), NULL;
        tw_rng r;
        tw_rng_seed(&r, a->seed);
        for (size_t i = 0; i < a->random * a->len; i++) ids[i] = (int32_t)tw_rng_below(&r, (uint32_t)V);
        for (size_t i = 0; i < a->random; i++) tx[i] = (ts_text){ids + i * a->len, a->len};
        *nt = a->random;
        return tx;
    }
    size_t n = 1;
    for (const char *p = a->texts; *p; p++) n += *p == ';';
    ts_text *tx = calloc(n, sizeof *tx);
    char *copy = strdup(a->texts);
    int32_t **parts = calloc(n, sizeof *parts);
    if (!tx || !copy || !parts) goto fail;
    char *save = NULL, *s = copy;
    for (size_t i = 0; i < n; i++) {
        char *semi = strchr(s, ';');
        if (semi) *semi = '\0';
        if (tool_parse_ids(s, &parts[i], &tx[i].n) != 0) {
            tw_log("--texts: bad id list '%s'", s);
            goto fail;
        }
        s = semi ? semi + 1 : s + strlen(s);
    }
    (void)save;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += tx[i].n;
    int32_t *ids = *store = malloc((total + 1) * sizeof *ids);
    if (!ids) goto fail;
    for (size_t i = 0, o = 0; i < n; i++) {
        if (tx[i].n) memcpy(ids + o, parts[i], tx[i].n * sizeof *ids);
        tx[i].ids = ids + o;
        o += tx[i].n;
        free(parts[i]);
    }
    free(parts);
    free(copy);
    *nt = n;
    return tx;
fail:
    if (parts)
        for (size_t i = 0; i < n; i++) free(parts[i]);
    free(parts);
    free(copy);
    free(tx);
    return NULL;
}

static json_t *summary_json(const ts_summary *s)
{
    return json_pack("{s:I,s:o,s:o,s:[o,o]}", "n", (json_int_t)s->n, "mean", tool_json_real(s->mean), "std",
                     tool_json_real(s->std), "ci95", tool_json_real(s->ci_low), tool_json_real(s->ci_high));
}

static json_t *cell_json(const ts_cell *c)
{
    json_t *o = json_object();
    for (int st = 0; st < TS_N_STATS; st++) {
        json_t *v = summary_json(&c->stat[st]);
        if (st == TS_LOG_RANK) {
            json_object_set_new(v, "median", tool_json_real(c->rank_median));
            json_object_set_new(v, "top1", tool_json_real(c->top1));
            json_object_set_new(v, "topk", tool_json_real(c->topk));
        }
        json_object_set_new(o, ts_stat_name((ts_stat)st), v);
    }
    return o;
}

/* The state vectors of every position, in the result's order: (S, P, d). */
static json_t *states_json(const gpt2_model *m, const ts_text *tx, size_t nt, gpt2_gelu gelu, size_t S)
{
    const size_t d = (size_t)m->cfg.n_embd;
    json_t *per_state = json_array();
    json_t **rows = calloc(S, sizeof *rows);
    for (size_t s = 0; s < S; s++) rows[s] = json_array();
    gpt2_forward_opts o = {.gelu = gelu, .logits = GPT2_LOGITS_NONE, .skip_attention = 1};
    for (size_t i = 0; i < nt; i++) {
        if (tx[i].n < 2) continue;
        gpt2_forward_result *f = NULL;
        if (gpt2_forward(m, tx[i].ids, tx[i].n, &o, &f) != TW_OK) {
            tw_log("forward pass of text %zu failed", i);
            exit(1);
        }
        const size_t n = tx[i].n;
        for (size_t p = 0; p + 1 < n; p++)
            for (size_t s = 0; s < S; s++) {
                const float *y = s == 0   ? f->emb + p * d
                                 : s == 1 ? f->x0 + p * d
                                 : s == 2 ? f->x0_lnf + p * d
                                          : f->resid_lnf + ((s - 3) * n + p) * d;
                json_array_append_new(rows[s], tool_json_floats(y, d));
            }
        gpt2_forward_free(f);
    }
    for (size_t s = 0; s < S; s++) json_array_append_new(per_state, rows[s]);
    free(rows);
    return per_state;
}

static int run_dump(const st_args *a, const gpt2_model *m, const ts_text *tx, size_t nt)
{
    traj_stats_result r;
    int rc = traj_stats(m, NULL, tx, nt, a->k, a->gelu, &r);
    if (rc != TW_OK) {
        tw_log("traj_stats: %s", tw_strerror(rc));
        return 1;
    }
    const size_t S = r.n_states, P = r.n_positions;
    json_t *states = json_array();
    for (size_t s = 0; s < S; s++) {
        json_t *buckets = json_object();
        for (int b = 0; b < TS_N_BUCKETS; b++)
            json_object_set_new(buckets, ts_bucket_name((ts_bucket)b),
                                cell_json(&r.cells[s * TS_N_BUCKETS + (size_t)b]));
        json_t *vals = json_object();
        json_object_set_new(vals, "rank", tool_json_ints(r.rank + s * P, P));
        static const ts_stat kept[] = {TS_COS_NEXT, TS_COS_SELF, TS_COS_FINAL, TS_PROB_NEXT};
        for (size_t i = 0; i < 4; i++) {
            json_t *v = json_array();
            for (size_t p = 0; p < P; p++)
                json_array_append_new(v, tool_json_real(ts_value(&r, kept[i], s, p)));
            json_object_set_new(vals, ts_stat_name(kept[i]), v);
        }
        json_array_append_new(
            states, json_pack("{s:I,s:o,s:o}", "index", (json_int_t)s, "buckets", buckets, "values", vals));
    }
    json_t *texts = json_array();
    for (size_t i = 0; i < nt; i++) json_array_append_new(texts, tool_json_ints(tx[i].ids, tx[i].n));
    json_t *doc = json_pack("{s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o}", "k", (json_int_t)r.k, "gelu",
                            gpt2_gelu_name(a->gelu), "n_states", (json_int_t)S, "n_texts",
                            (json_int_t)r.n_texts, "n_texts_skipped", (json_int_t)r.n_texts_skipped,
                            "n_tokens", (json_int_t)r.n_tokens, "n_positions", (json_int_t)P, "t",
                            tool_json_ints(r.t, P), "texts", texts, "states", states);
    if (a->states) json_object_set_new(doc, "state_vectors", states_json(m, tx, nt, a->gelu, S));
    traj_stats_result_free(&r);
    return tool_print_json(doc, 0) ? 1 : 0;
}

/* ---- bench ---- */

/* The forward passes alone, and the gathered state rows (rows, d). */
static double time_forward(const gpt2_model *m, const ts_text *tx, size_t nt, gpt2_gelu gelu, float *rows)
{
    const size_t d = (size_t)m->cfg.n_embd, S = (size_t)m->cfg.n_layer + 3;
    gpt2_forward_opts o = {.gelu = gelu, .logits = GPT2_LOGITS_NONE, .skip_attention = 1};
    size_t r = 0;
    double t0 = tw_now();
    for (size_t i = 0; i < nt; i++) {
        gpt2_forward_result *f = NULL;
        if (gpt2_forward(m, tx[i].ids, tx[i].n, &o, &f) != TW_OK) exit(1);
        const size_t n = tx[i].n;
        for (size_t p = 0; rows && p + 1 < n; p++)
            for (size_t s = 0; s < S; s++, r++) {
                const float *y = s == 0   ? f->emb + p * d
                                 : s == 1 ? f->x0 + p * d
                                 : s == 2 ? f->x0_lnf + p * d
                                          : f->resid_lnf + ((s - 3) * n + p) * d;
                memcpy(rows + r * d, y, d * sizeof *rows);
            }
        gpt2_forward_free(f);
    }
    return tw_now() - t0;
}

/* A plain sgemm of the rows against wte in the blocks traj_stats uses
 * (chunks of TS_CHUNK_ROWS rows; its logit lens, lens_rows, multiplies by wte
 * in topk_rows_opt's blocks, filling 8 MiB of scores), or as one call into a
 * rows x V matrix. */
static double time_sgemm(const gpt2_model *m, const float *Q, size_t rows, int one_call)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    double t0 = tw_now();
    if (one_call) {
        float *S = malloc(rows * V * sizeof *S);
        if (!S) return NAN;
        t0 = tw_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)V, (int)d, 1.0f, Q, (int)d,
                    m->p.wte, (int)d, 0.0f, S, (int)V);
        double t = tw_now() - t0;
        free(S);
        return t;
    }
    const size_t block_bytes = (size_t)8 << 20; /* core/nn/topk.c TOPK_SCRATCH_BYTES */
    float *S = malloc(block_bytes + 64 * sizeof(float));
    for (size_t c0 = 0; c0 < rows; c0 += TS_CHUNK_ROWS) {
        size_t nq = rows - c0 < TS_CHUNK_ROWS ? rows - c0 : TS_CHUNK_ROWS;
        size_t b = block_bytes / sizeof(float) / nq / 16 * 16;
        if (b < 16) b = 16;
        if (b > V) b = V;
        for (size_t j0 = 0; j0 < V; j0 += b) {
            size_t bj = V - j0 < b ? V - j0 : b;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)bj, (int)d, 1.0f, Q + c0 * d,
                        (int)d, m->p.wte + j0 * d, (int)d, 0.0f, S, (int)bj);
        }
    }
    double t = tw_now() - t0;
    free(S);
    return t;
}

static int run_bench(const st_args *a, const gpt2_model *m, const ts_text *tx, size_t nt)
{
    const gpt2_config *g = &m->cfg;
    const size_t S = (size_t)g->n_layer + 3, d = (size_t)g->n_embd, V = (size_t)g->vocab_size;
    size_t P = 0;
    for (size_t i = 0; i < nt; i++) P += tx[i].n > 1 ? tx[i].n - 1 : 0;
    const size_t rows = S * P;
    printf("model %s: L=%d d=%d V=%d; %zu texts, %zu positions, %zu state rows; %.2f TFLOP of logits\n",
           a->dir, g->n_layer, g->n_embd, g->vocab_size, nt, P, rows,
           2.0 * (double)rows * (double)V * (double)d / 1e12);
    printf("OpenBLAS core %s, threads %d\n", blas_corename(), openblas_get_num_threads());
    float *Q = malloc(rows * d * sizeof *Q);
    if (!Q) return 1;
    double best_fwd = 1e30, best_all = 1e30, best_blk = 1e30, best_one = 1e30;
    for (int i = 0; i < a->reps; i++) {
        best_fwd = fmin(best_fwd, time_forward(m, tx, nt, a->gelu, Q));
        traj_stats_result r;
        double t0 = tw_now();
        if (traj_stats(m, NULL, tx, nt, a->k, a->gelu, &r) != TW_OK) return 1;
        best_all = fmin(best_all, tw_now() - t0);
        traj_stats_result_free(&r);
        best_blk = fmin(best_blk, time_sgemm(m, Q, rows, 0));
        if (!a->no_big) best_one = fmin(best_one, time_sgemm(m, Q, rows, 1));
    }
    double sg = a->no_big ? best_blk : fmin(best_blk, best_one), lens = best_all - best_fwd;
    printf("forward passes alone                  %8.3f s\n", best_fwd);
    printf("traj_stats (forward + logit lens)     %8.3f s\n", best_all);
    printf("  of which logit lens and summaries   %8.3f s\n", lens);
    printf("plain sgemm, the same blocks          %8.3f s  (%.0f GFLOP/s)\n", best_blk,
           2.0 * (double)rows * (double)V * (double)d / best_blk / 1e9);
    if (!a->no_big) printf("plain sgemm, one call                 %8.3f s\n", best_one);
    printf("ratio logit lens / plain sgemm        %8.2f\n", lens / sg);
    printf("ratio whole traj_stats / plain sgemm  %8.2f   (best of %d)\n", best_all / sg, a->reps);
    free(Q);
    return 0;
}

int main(int argc, char **argv)
{
    st_args a;
    int rc = tool_start("twd-stats", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    gpt2_model m;
    if (tool_load_model(a.dir, &m, NULL)) return 1;
    size_t nt = 0;
    int32_t *store = NULL;
    ts_text *tx = make_texts(&a, m.cfg.vocab_size, &nt, &store);
    int status = !tx ? 2 : a.bench ? run_bench(&a, &m, tx, nt) : run_dump(&a, &m, tx, nt);
    free(tx);
    free(store);
    gpt2_free(&m);
    return status;
}
