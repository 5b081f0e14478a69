/* twd-synth: writes a deterministic synthetic GPT-2 checkpoint (HF layout)
 * of any size. See core/synth.h for what the weights are. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "core/model/synth.h"
#include "tool_common.h"

/* The help text; %s: the shape names. */
static const char details[] = "Writes a synthetic GPT-2 checkpoint (config.json, model.safetensors,\n"
                              "vocab.json, merges.txt) into DIR, deterministically from the seed.\n"
                              "\n"
                              "  --out DIR          folder to write (created if missing)\n"
                              "  --shape NAME       %s\n"
                              "                     (default tiny); the flags below override it\n"
                              "  --layers N         number of blocks\n"
                              "  --heads N          attention heads (must divide --embd)\n"
                              "  --embd N           model width\n"
                              "  --vocab N          vocabulary size (>= 257 for the synthetic tokenizer)\n"
                              "  --ctx N            positions\n"
                              "  --dtype T          f32 (default), f16 or bf16\n"
                              "  --no-prefix        tensor names without 'transformer.' (default)\n"
                              "  --prefix           tensor names with 'transformer.'\n"
                              "  --no-attn-bias     omit the h.N.attn.bias/masked_bias buffers\n"
                              "  --no-tokenizer     write only config.json and model.safetensors\n"
                              "  --seed N           0..2^63-1 (default 0)\n"
                              "  --vocab-from DIR   copy the real GPT-2 vocab.json/merges.txt (or\n"
                              "                     encoder.json/vocab.bpe) from DIR; needs vocab 50257\n"
                              "  -q, --quiet        no summary line\n"
                              "  -h, --help         this text\n";

typedef struct {
    const char *out, *shape, *vocab_from;
    long long layers, heads, embd, vocab, ctx, seed; /* 0: the shape's */
    int dtype, prefix, attn_bias, tok, quiet;
} synth_args;

static const char *dtype_name(int dtype)
{
    return dtype == SYNTH_F16 ? "f16" : dtype == SYNTH_BF16 ? "bf16" : "f32";
}

/* 0: run; 1: --help printed; -1: bad arguments (reported). */
static int parse_args(int argc, char **argv, void *ctx)
{
    synth_args *a = ctx;
    static char text[2048];
    snprintf(text, sizeof text, details, synth_shape_names());
    const tool_help help = {"usage: twd-synth --out DIR [options]\n", text};
    static const char *const dtypes[] = {"f32", "f16", "bf16", NULL};
    static const int dtype_v[] = {SYNTH_F32, SYNTH_F16, SYNTH_BF16};
    *a = (synth_args){.shape = "tiny", .dtype = SYNTH_F32, .attn_bias = 1, .tok = 1};
    const tool_opt opts[] = {OPT_STR("out", &a->out),
                             OPT_STR("shape", &a->shape),
                             OPT_LL("layers", &a->layers, 1, 1024),
                             OPT_LL("heads", &a->heads, 1, 1024),
                             OPT_LL("embd", &a->embd, 1, 65536),
                             OPT_LL("vocab", &a->vocab, 1, 1 << 24),
                             OPT_LL("ctx", &a->ctx, 1, 1 << 20),
                             OPT_CHOICE("dtype", &a->dtype, dtypes, dtype_v),
                             OPT_SET("no-prefix", &a->prefix, 0),
                             OPT_SET("prefix", &a->prefix, 1),
                             OPT_SET("no-attn-bias", &a->attn_bias, 0),
                             OPT_SET("no-tokenizer", &a->tok, 0),
                             OPT_LL("seed", &a->seed, 0, INT64_MAX),
                             OPT_STR("vocab-from", &a->vocab_from),
                             {.name = "quiet", .kind = TOOL_O_SET, .at = &a->quiet, .lo = 1, .key = 'q'},
                             OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, TOOL_ANY_OPERANDS);
    if (rc) return rc;
    if (optind < argc) tw_log("unexpected argument '%s'", argv[optind]);
    if (!a->out) tw_log("--out DIR is required");
    if (optind < argc || !a->out) {
        tool_usage(stderr, &help);
        return -1;
    }
    return 0;
}

/* The synth options of the arguments: 0, or -1 (reported). */
static int make_opts(const synth_args *a, synth_opts *o)
{
    if (synth_opts_shape(o, a->shape) != 0) {
        tw_log("--shape: unknown shape '%s' (one of: %s)", a->shape, synth_shape_names());
        return -1;
    }
    if (a->layers) o->n_layer = (int)a->layers;
    if (a->heads) o->n_head = (int)a->heads;
    if (a->embd) o->n_embd = (int)a->embd;
    if (a->vocab) o->vocab_size = (int)a->vocab;
    if (a->ctx) o->n_ctx = (int)a->ctx;
    o->seed = (uint64_t)a->seed;
    o->dtype = (synth_dtype)a->dtype;
    o->prefix = a->prefix;
    o->attn_bias = a->attn_bias;
    o->tokenizer = a->tok;
    o->vocab_from = a->vocab_from;
    char err[1024];
    if (synth_check(o, err, sizeof err) != 0) {
        tw_log("%s", err);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    synth_args a;
    synth_opts o;
    int rc = tool_start("twd-synth", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    if (make_opts(&a, &o) != 0) return 2;
    char err[1024];
    double t0 = tw_now();
    if (synth_write(a.out, &o, err, sizeof err) != 0) {
        tw_log("%s", err);
        return 1;
    }
    if (!a.quiet)
        printf("twd-synth: wrote %s (L=%d H=%d C=%d V=%d ctx=%d, %s, seed %" PRIu64 ") in %.2f s\n", a.out,
               o.n_layer, o.n_head, o.n_embd, o.vocab_size, o.n_ctx, dtype_name(a.dtype), o.seed,
               tw_now() - t0);
    return 0;
}
