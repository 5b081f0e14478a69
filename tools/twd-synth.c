/* twd-synth: writes a deterministic synthetic GPT-2 checkpoint (HF layout)
 * of any size. See core/synth.h for what the weights are. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/model/synth.h"

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: twd-synth --out DIR [options]\n"
            "Writes a synthetic GPT-2 checkpoint (config.json, model.safetensors,\n"
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
            "  -h, --help         this text\n",
            synth_shape_names());
}

/* Parses a decimal integer in [lo, hi]; prints an error and returns -1. */
static int parse_int(const char *flag, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "twd-synth: %s: '%s' is not an integer in %lld..%lld\n", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
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
    static const struct option longopts[] = {
        {"out", required_argument, NULL, O_OUT},
        {"shape", required_argument, NULL, O_SHAPE},
        {"layers", required_argument, NULL, O_LAYERS},
        {"heads", required_argument, NULL, O_HEADS},
        {"embd", required_argument, NULL, O_EMBD},
        {"vocab", required_argument, NULL, O_VOCAB},
        {"ctx", required_argument, NULL, O_CTX},
        {"dtype", required_argument, NULL, O_DTYPE},
        {"no-prefix", no_argument, NULL, O_NOPREFIX},
        {"prefix", no_argument, NULL, O_PREFIX},
        {"no-attn-bias", no_argument, NULL, O_NOBIAS},
        {"no-tokenizer", no_argument, NULL, O_NOTOK},
        {"seed", required_argument, NULL, O_SEED},
        {"vocab-from", required_argument, NULL, O_VOCABFROM},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL, *shape = "tiny", *vocab_from = NULL;
    long long layers = 0, heads = 0, embd = 0, vocab = 0, ctx = 0, seed = 0;
    int dtype = SYNTH_F32, prefix = 0, attn_bias = 1, tok = 1, quiet = 0;
    int c;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_SHAPE: shape = optarg; break;
        case O_LAYERS:
            if (parse_int("--layers", optarg, 1, 1024, &layers)) return 2;
            break;
        case O_HEADS:
            if (parse_int("--heads", optarg, 1, 1024, &heads)) return 2;
            break;
        case O_EMBD:
            if (parse_int("--embd", optarg, 1, 65536, &embd)) return 2;
            break;
        case O_VOCAB:
            if (parse_int("--vocab", optarg, 1, 1 << 24, &vocab)) return 2;
            break;
        case O_CTX:
            if (parse_int("--ctx", optarg, 1, 1 << 20, &ctx)) return 2;
            break;
        case O_SEED:
            if (parse_int("--seed", optarg, 0, INT64_MAX, &seed)) return 2;
            break;
        case O_DTYPE:
            if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "F32") == 0)
                dtype = SYNTH_F32;
            else if (strcmp(optarg, "f16") == 0 || strcmp(optarg, "F16") == 0)
                dtype = SYNTH_F16;
            else if (strcmp(optarg, "bf16") == 0 || strcmp(optarg, "BF16") == 0)
                dtype = SYNTH_BF16;
            else {
                fprintf(stderr, "twd-synth: --dtype: '%s' is not f32, f16 or bf16\n", optarg);
                return 2;
            }
            break;
        case O_NOPREFIX: prefix = 0; break;
        case O_PREFIX: prefix = 1; break;
        case O_NOBIAS: attn_bias = 0; break;
        case O_NOTOK: tok = 0; break;
        case O_VOCABFROM: vocab_from = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: /* getopt has printed what is wrong */ fprintf(stderr, "try 'twd-synth --help'\n"); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "twd-synth: unexpected argument '%s'\ntry 'twd-synth --help'\n", argv[optind]);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "twd-synth: --out DIR is required\ntry 'twd-synth --help'\n");
        return 2;
    }
    synth_opts o;
    if (synth_opts_shape(&o, shape) != 0) {
        fprintf(stderr, "twd-synth: --shape: unknown shape '%s' (one of: %s)\n", shape, synth_shape_names());
        return 2;
    }
    if (layers) o.n_layer = (int)layers;
    if (heads) o.n_head = (int)heads;
    if (embd) o.n_embd = (int)embd;
    if (vocab) o.vocab_size = (int)vocab;
    if (ctx) o.n_ctx = (int)ctx;
    o.seed = (uint64_t)seed;
    o.dtype = (synth_dtype)dtype;
    o.prefix = prefix;
    o.attn_bias = attn_bias;
    o.tokenizer = tok;
    o.vocab_from = vocab_from;

    char err[1024];
    if (synth_check(&o, err, sizeof err) != 0) {
        fprintf(stderr, "twd-synth: %s\n", err);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (synth_write(out, &o, err, sizeof err) != 0) {
        fprintf(stderr, "twd-synth: %s\n", err);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!quiet) {
        double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("twd-synth: wrote %s (L=%d H=%d C=%d V=%d ctx=%d, %s, seed %" PRIu64 ") in %.2f s\n", out,
               o.n_layer, o.n_head, o.n_embd, o.vocab_size, o.n_ctx,
               dtype == SYNTH_F16    ? "f16"
               : dtype == SYNTH_BF16 ? "bf16"
                                     : "f32",
               o.seed, s);
    }
    return 0;
}
