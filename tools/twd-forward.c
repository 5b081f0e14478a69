/* twd-forward: runs core/forward on a checkpoint folder.
 *
 *   twd-forward --model DIR --tokens 1,2,3 [--gelu tanh|erf] [--kernels blas|naive]
 *               [--logits last|all] [--json]
 *   twd-forward --model DIR --random N [--seed S] --bench R [--skip-attention]
 *
 * --json prints every kept state as flat row-major arrays (shapes in "shapes")
 * plus the top-5 next tokens; tests/ref/forward_ref.py compares it with numpy.
 * --bench runs the pass R times after one warm-up and prints the timings.
 * Exit status 0 on success, 1 on a bad argument, checkpoint or forward error. */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/rng.h"
#include "core/model/gpt2.h"
#include "core/nn/blas.h"
#include "core/nn/forward.h"
#include "core/nn/topk.h"
#include "tool_common.h"

static const tool_help help = {
    "usage: twd-forward --model DIR (--tokens ID,ID,... | --random N [--seed S])\n"
    "                   [--gelu tanh|erf] [--kernels blas|naive] [--logits last|all|none]\n"
    "                   [--skip-attention] [--json | --bench R]\n",
    "Runs the GPT-2 forward pass of the checkpoint in DIR on one phrase.\n"
    "\n"
    "  --model DIR          checkpoint folder (required)\n"
    "  --tokens LIST        the phrase as comma-separated token ids\n"
    "  --random N           a phrase of N seeded random ids instead\n"
    "  --seed S             seed of --random (default 1)\n"
    "  --gelu tanh|erf      GELU form (default tanh)\n"
    "  --kernels blas|naive BLAS or the naive reference kernels (default blas)\n"
    "  --logits last|all|none  which positions get logits (default last)\n"
    "  --skip-attention     do not keep the attention patterns\n"
    "  --json               print every kept state as JSON (see tests/ref/forward_ref.py)\n"
    "  --bench R            time R passes after one warm-up; print min / median / max\n"
    "  -h, --help           this text\n"
    "Without --json or --bench: one line with the top-5 next tokens.\n"};

typedef struct {
    const char *model_dir, *tokens_arg;
    long long random_n, bench;
    uint64_t seed;
    int json, gelu, kernels, logits; /* the choices, then copied into o */
    gpt2_forward_opts o;
} fwd_args;

/* 0: run; 1: --help printed; -1: bad arguments (reported, usage on stderr). */
static int parse_args(int argc, char **argv, void *ctx)
{
    fwd_args *a = ctx;
    static const char *const gelu[] = {"tanh", "erf", NULL}, *const kernels[] = {"blas", "naive", NULL},
                             *const logits[] = {"last", "all", "none", NULL};
    static const int gelu_v[] = {GPT2_GELU_TANH, GPT2_GELU_ERF};
    static const int kernels_v[] = {GPT2_KERNELS_BLAS, GPT2_KERNELS_NAIVE};
    static const int logits_v[] = {GPT2_LOGITS_LAST, GPT2_LOGITS_ALL, GPT2_LOGITS_NONE};
    *a = (fwd_args){.seed = 1};
    const tool_opt opts[] = {OPT_STR("model", &a->model_dir),
                             OPT_STR("tokens", &a->tokens_arg),
                             OPT_LL("random", &a->random_n, 0, 1 << 30),
                             OPT_U64("seed", &a->seed),
                             OPT_LL("bench", &a->bench, 0, 1 << 30),
                             OPT_CHOICE("gelu", &a->gelu, gelu, gelu_v),
                             OPT_CHOICE("kernels", &a->kernels, kernels, kernels_v),
                             OPT_CHOICE("logits", &a->logits, logits, logits_v),
                             OPT_FLAG("skip-attention", &a->o.skip_attention),
                             OPT_FLAG("json", &a->json),
                             OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, 0);
    if (!rc && (!a->model_dir || (!a->tokens_arg && a->random_n <= 0))) {
        tool_usage(stderr, &help);
        rc = -1;
    }
    a->o.gelu = (gpt2_gelu)a->gelu;
    a->o.kernels = (gpt2_kernels)a->kernels;
    a->o.logits = (gpt2_logits)a->logits;
    return rc;
}

static int32_t *phrase(const fwd_args *a, int vocab_size, size_t *n)
{
    int32_t *tok = NULL;
    if (a->tokens_arg) {
        if (tool_parse_ids(a->tokens_arg, &tok, n) != 0) {
            tw_log("--tokens must be comma-separated integers");
            return NULL;
        }
        return tok ? tok : malloc(sizeof *tok); /* "": the forward pass reports the length */
    }
    *n = (size_t)a->random_n;
    tok = malloc(*n * sizeof *tok);
    tw_rng r;
    tw_rng_seed(&r, a->seed);
    for (size_t t = 0; tok && t < *n; t++) tok[t] = (int32_t)tw_rng_below(&r, (uint32_t)vocab_size);
    return tok;
}

/* The k <= 5 best next tokens after the last position of r (r->n_logits > 0). */
static int top5(const gpt2_forward_result *r, int top[5])
{
    const size_t V = (size_t)r->V, k = V < 5 ? V : 5;
    const float *last = r->logits + (size_t)(r->n_logits - 1) * V;
    double *s = calloc(V, sizeof *s);
    topk_hit h[5];
    if (!s) return 0;
    for (size_t i = 0; i < V; i++) s[i] = last[i];
    int rc = topk_vec(s, V, k, h, NULL);
    free(s);
    if (rc != 0) return 0;
    for (size_t j = 0; j < k; j++) top[j] = h[j].id;
    return (int)k;
}

static json_t *shape(size_t nd, const size_t *dims)
{
    json_t *v = json_array();
    for (size_t i = 0; i < nd; i++) json_array_append_new(v, json_integer((json_int_t)dims[i]));
    return v;
}

static json_t *result_json(const gpt2_forward_result *r)
{
    const size_t n = (size_t)r->n, C = (size_t)r->C, L = (size_t)r->L, H = (size_t)r->H, V = (size_t)r->V;
    const size_t nl = (size_t)r->n_logits;
    json_t *doc = json_pack(
        "{s:i,s:i,s:i,s:i,s:i,s:s,s:s,s:o,s:i,s:i}", "n", r->n, "C", r->C, "H", r->H, "L", r->L, "V", r->V,
        "gelu", gpt2_gelu_name(r->gelu), "kernels", r->kernels == GPT2_KERNELS_NAIVE ? "naive" : "blas",
        "tokens", tool_json_ints(r->tokens, n), "logits_pos0", r->logits_pos0, "n_logits", r->n_logits);
    json_object_set_new(doc, "shapes",
                        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "emb", shape(2, (size_t[]){n, C}), "x0",
                                  shape(2, (size_t[]){n, C}), "x0_lnf", shape(2, (size_t[]){n, C}), "resid",
                                  shape(3, (size_t[]){L, n, C}), "resid_lnf", shape(3, (size_t[]){L, n, C}),
                                  "att", shape(4, (size_t[]){L, H, n, n}), "logits",
                                  shape(2, (size_t[]){nl, V})));
    json_object_set_new(doc, "emb", tool_json_floats(r->emb, n * C));
    json_object_set_new(doc, "x0", tool_json_floats(r->x0, n * C));
    json_object_set_new(doc, "x0_lnf", tool_json_floats(r->x0_lnf, n * C));
    json_object_set_new(doc, "resid", tool_json_floats(r->resid, L * n * C));
    json_object_set_new(doc, "resid_lnf", tool_json_floats(r->resid_lnf, L * n * C));
    if (r->att) json_object_set_new(doc, "att", tool_json_floats(r->att, L * H * n * n));
    if (nl) {
        int top[5];
        json_object_set_new(doc, "logits", tool_json_floats(r->logits, nl * V));
        json_object_set_new(doc, "top5", tool_json_ints(top, (size_t)top5(r, top)));
    }
    return doc;
}

/* One forward pass, printed as JSON or as one line. 0 or 1. */
static int run_once(const fwd_args *a, const gpt2_model *m, const int32_t *tok, size_t n)
{
    gpt2_forward_result *r = NULL;
    int rc = gpt2_forward(m, tok, n, &a->o, &r);
    if (rc != TW_OK) {
        tw_log("%s", tw_strerror(rc));
        return 1;
    }
    int status = 0;
    if (a->json) {
        status = tool_print_json(result_json(r), 9) ? 1 : 0;
    } else {
        printf("n=%d gelu=%s", r->n, gpt2_gelu_name(r->gelu));
        int top[5], k = r->n_logits ? top5(r, top) : 0;
        if (r->n_logits) printf(" top5 next:");
        for (int j = 0; j < k; j++) printf(" %d", top[j]);
        printf("\n");
    }
    gpt2_forward_free(r);
    return status;
}

/* One warm-up and a->bench timed passes; prints the statistics line. 0 or 1. */
static int run_bench(const fwd_args *a, const gpt2_model *m, const int32_t *tok, size_t n, double t_load)
{
    const size_t R = (size_t)a->bench;
    double *t = malloc(R * sizeof *t);
    int rc = t ? TW_OK : TW_ENOMEM;
    for (size_t i = 0; rc == TW_OK && i <= R; i++) { /* i == 0: the warm-up */
        gpt2_forward_result *r = NULL;
        double t0 = tw_now();
        rc = gpt2_forward(m, tok, n, &a->o, &r);
        if (i) t[i - 1] = tw_now() - t0;
        gpt2_forward_free(r);
    }
    if (rc != TW_OK) {
        tw_log("%s", tw_strerror(rc));
        free(t);
        return 1;
    }
    tool_times s = tool_time_stats(t, R);
    const gpt2_config *c = &m->cfg;
    printf("model L=%d H=%d C=%d V=%d  n=%zu  blas %s x%d  gelu=%s kernels=%s att=%s  "
           "load %.1f ms  forward over %zu runs: min %.1f ms, median %.1f ms, max %.1f ms\n",
           c->n_layer, c->n_head, c->n_embd, c->vocab_size, n, blas_corename(), openblas_get_num_threads(),
           gpt2_gelu_name(a->o.gelu), a->o.kernels ? "naive" : "blas",
           a->o.skip_attention ? "skipped" : "kept", 1e3 * t_load, R, 1e3 * s.min, 1e3 * s.median,
           1e3 * s.max);
    free(t);
    return 0;
}

static int run(void *args, gpt2_model *m, double t_load)
{
    const fwd_args *a = args;
    size_t n = 0;
    int32_t *tok = phrase(a, m->cfg.vocab_size, &n);
    int status = !tok ? 1 : a->bench > 0 ? run_bench(a, m, tok, n, t_load) : run_once(a, m, tok, n);
    free(tok);
    return status;
}

int main(int argc, char **argv)
{
    fwd_args a = {0};
    return tool_main_model("twd-forward", argc, argv, parse_args, &a, 1, &a.model_dir, run);
}
