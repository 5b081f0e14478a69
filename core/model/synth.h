/* Synthetic GPT-2 checkpoints in the Hugging Face layout.
 *
 * synth_write creates (or completes) a folder holding
 *   config.json        HF GPT-2 keys plus "twd_synthetic": true, "twd_seed",
 *                      "twd_generator" (so the daemon can say so);
 *   model.safetensors  every GPT-2 tensor, names sorted as the safetensors
 *                      library writes them, header padded with spaces to a
 *                      multiple of 8 bytes, data streamed to disk;
 *   vocab.json, merges.txt  from tokenizer_write_synthetic (core/tokenizer.h),
 *                      or copied from a real GPT-2 folder (vocab_from).
 * Every file is written under a temporary folder inside `dir` and renamed
 * into place, config.json last, so an interrupted run never leaves a
 * half-written file under a final name.
 *
 * Weights are a deterministic function of (seed, tensor name, index): the
 * same seed gives the same values whatever the dtype or name prefix (F16 and
 * BF16 hold the F32 values rounded to nearest even). GPT-2-like init, with
 * L = n_layer and N(m, s) a normal of mean m and standard deviation s:
 *   c_attn.weight, c_fc.weight, wpe          N(0, 0.02)
 *   attn.c_proj.weight, mlp.c_proj.weight    N(0, 0.02 / sqrt(2 L))
 *   every bias                               N(0, 0.02)
 *   ln_*.weight                              1 + N(0, 0.05)
 *   ln_*.bias                                N(0, 0.02)
 *   wte row i (of V):  mu + r_i * z_i, with mu a shared mean direction
 *                      (components N(0, 0.01)), z_i per-token noise
 *                      (components N(0, 0.02)), and r_i = 1.5 - i / (V - 1)
 *                      (from 1.5 for id 0 down to 0.5 for the last id), so
 *                      norms vary with the token id and the rows share a
 *                      common component, as real embeddings do.
 * Optional buffers, as in real HF checkpoints (to exercise that loaders
 * ignore them): h.N.attn.bias (1, 1, n_ctx, n_ctx) lower-triangular ones and
 * h.N.attn.masked_bias () = -1e4.
 * The random numbers come from xoshiro256** seeded per tensor by splitmix64
 * and the polar Box-Muller method in double precision. */
#ifndef TW_SYNTH_H
#define TW_SYNTH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SYNTH_F32, SYNTH_F16, SYNTH_BF16 } synth_dtype;

typedef struct {
    int n_layer;            /* L */
    int n_head;             /* H, divides n_embd */
    int n_embd;             /* C; n_inner is always 4C */
    int n_ctx;              /* positions (n_positions = n_ctx) */
    int vocab_size;         /* V; >= 257 when a synthetic tokenizer is written */
    uint64_t seed;          /* 0 .. INT64_MAX (stored in config.json) */
    synth_dtype dtype;      /* storage dtype of every tensor */
    int prefix;             /* 1: tensor names start with "transformer." */
    int attn_bias;          /* 1: also write the attn.bias / masked_bias buffers */
    int tokenizer;          /* 1: write vocab.json and merges.txt */
    const char *vocab_from; /* NULL, or a folder with vocab.json + merges.txt
                               (or encoder.json + vocab.bpe) to copy;
                               requires vocab_size 50257 */
} synth_opts;

/* Sets *o to the named shape with defaults (seed 0, F32, no prefix,
 * attn_bias 1, tokenizer 1, vocab_from NULL). Shapes (L/H/C, V, n_ctx):
 *   tiny    2/2/32,      512,   64
 *   demo    12/12/192,   4096,  256    (the offline demo model)
 *   124M    12/12/768,   50257, 1024   (alias gpt2)
 *   medium  24/16/1024,  50257, 1024   (alias gpt2-medium)
 *   large   36/20/1280,  50257, 1024   (alias gpt2-large)
 *   xl      48/25/1600,  50257, 1024   (alias gpt2-xl)
 * Returns 0, or -1 if the name is unknown (then *o holds "tiny"). */
int synth_opts_shape(synth_opts *o, const char *shape);

/* Comma-separated list of the shape names, for help texts. */
const char *synth_shape_names(void);

/* Checks the options (bounds as gpt2_config_load's, n_embd % n_head == 0,
 * seed range, tokenizer constraints). 0, or -1 with one line in err. */
int synth_check(const synth_opts *o, char *err, size_t errlen);

/* Writes the checkpoint into `dir` (created if missing, parents included;
 * existing files of the same names are replaced). 0 on success, -1 with one
 * line in err naming the file. Memory use is O(n_embd + a 1 MiB buffer),
 * independent of the model size. */
int synth_write(const char *dir, const synth_opts *o, char *err, size_t errlen);

/* The value synth_write stores (before dtype rounding) for element `index`
 * of every tensor is produced by this stream; exposed so tests can check
 * determinism without a file: fills out[0..n) with the first n F32 values of
 * the canonical (unprefixed) tensor `name` for options o. -1 if the name is
 * not a tensor of this model. */
int synth_tensor_values(const synth_opts *o, const char *name, float *out, size_t n);

#endif
