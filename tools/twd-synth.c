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

enum {
    O_OUT = 256,
    O_SHAPE,
    O_LAYERS,
    O_HEADS,
    O_EMBD,
    O_VOCAB,
    O_CTX,
    O_DTYPE,
    O_NOPREFIX,
    O_PREFIX,
    O_NOBIAS,
    O_NOTOK,
    O_SEED,
    O_VOCABFROM
};

static const char *dtype_name(int dtype)
{
    return dtype == SYNTH_F16 ? "f16" : dtype == SYNTH_BF16 ? "bf16" : "f32";
}

static int set_dtype(synth_args *a, const char *v)
{
    static const char *const names[] = {"f32", "F32", "f16", "F16", "bf16", "BF16"};
    static const int dtypes[] = {SYNTH_F32, SYNTH_F32, SYNTH_F16, SYNTH_F16, SYNTH_BF16, SYNTH_BF16};
    for (int i = 0; i < 6; i++)
        if (strcmp(v, names[i]) == 0) {
            a->dtype = dtypes[i];
            return 0;
        }
    tw_log("--dtype: '%s' is not f32, f16 or bf16", v);
    return -1;
}

/* One option into *a: 0, or -1 (reported). */
static int set_option(void *ctx, int c, const char *v)
{
    synth_args *a = ctx;
    switch (c) {
    case O_OUT: a->out = v; return 0;
    case O_SHAPE: a->shape = v; return 0;
    case O_LAYERS: return tool_parse_ll("--layers", v, 1, 1024, &a->layers);
    case O_HEADS: return tool_parse_ll("--heads", v, 1, 1024, &a->heads);
    case O_EMBD: return tool_parse_ll("--embd", v, 1, 65536, &a->embd);
    case O_VOCAB: return tool_parse_ll("--vocab", v, 1, 1 << 24, &a->vocab);
    case O_CTX: return tool_parse_ll("--ctx", v, 1, 1 << 20, &a->ctx);
    case O_SEED: return tool_parse_ll("--seed", v, 0, INT64_MAX, &a->seed);
    case O_DTYPE: return set_dtype(a, v);
    case O_NOPREFIX: a->prefix = 0; return 0;
    case O_PREFIX: a->prefix = 1; return 0;
    case O_NOBIAS: a->attn_bias = 0; return 0;
    case O_NOTOK: a->tok = 0; return 0;
    case O_VOCABFROM: a->vocab_from = v; return 0;
    case 'q': a->quiet = 1; return 0;
    default: return -1;
    }
}

/* 0: run; 1: --help printed; -1: bad arguments (reported). */
static int parse_args(int argc, char **argv, void *ctx)
{
    synth_args *a = ctx;
    static const struct option longopts[] = {
        TOOL_ARG("out", O_OUT),
        TOOL_ARG("shape", O_SHAPE),
        TOOL_ARG("layers", O_LAYERS),
        TOOL_ARG("heads", O_HEADS),
        TOOL_ARG("embd", O_EMBD),
        TOOL_ARG("vocab", O_VOCAB),
        TOOL_ARG("ctx", O_CTX),
        TOOL_ARG("dtype", O_DTYPE),
        TOOL_FLAG("no-prefix", O_NOPREFIX),
        TOOL_FLAG("prefix", O_PREFIX),
        TOOL_FLAG("no-attn-bias", O_NOBIAS),
        TOOL_FLAG("no-tokenizer", O_NOTOK),
        TOOL_ARG("seed", O_SEED),
        TOOL_ARG("vocab-from", O_VOCABFROM),
        TOOL_FLAG("quiet", 'q'),
        TOOL_OPTS_END,
    };
    static char text[2048];
    snprintf(text, sizeof text, details, synth_shape_names());
    const tool_help help = {"usage: twd-synth --out DIR [options]\n", text};
    *a = (synth_args){.shape = "tiny", .dtype = SYNTH_F32, .attn_bias = 1, .tok = 1};
    int rc = tool_getopt(argc, argv, "qh", longopts, &help, set_option, a, TOOL_ANY_OPERANDS);
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
