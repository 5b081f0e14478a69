/* A small random GPT-2 model built in memory, for the unit tests of the
 * forward pass and the analyses: every tensor of gpt2_params, seeded. */
#ifndef TW_TEST_MODEL_H
#define TW_TEST_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/model/gpt2.h"
#include "core/model/synth.h"

typedef struct {
    int n_layer, n_head, n_embd; /* n_inner is 4 n_embd */
    int n_ctx, vocab_size;
    uint64_t seed;
    int linear_layout; /* store the linear weights as nn.Linear (out, in): nanoGPT's layout */
    int no_bias;       /* no biases and no LayerNorm betas (bias=False); the weights stay the same */
} tt_model_opts;

typedef struct {
    gpt2_model m;
    float *store; /* every tensor, one buffer */
    size_t used, cap;
} tt_model;

/* Builds the model of o (ln_eps 1e-5). Weights are normal: gains 1 +- 0.2,
 * biases sd 0.1 (the attention's 0.2), matrices sd 0.2 (the MLP's output
 * 0.1), positions sd 0.1; token embeddings share a mean direction (sd 0.05)
 * plus noise of sd 0.1 scaled by 1.5 - i / V, so that row norms spread out.
 * Fails the test when memory runs out. */
void tt_model_build(tt_model *tm, const tt_model_opts *o);

/* The model of o (its layout and bias flags ignored) three times: in the
 * Hugging Face layout, in nanoGPT's nn.Linear layout, and without biases. */
void tt_model_build_layouts(tt_model *hf, tt_model *linear, tt_model *no_bias, const tt_model_opts *o);

void tt_model_free(tt_model *tm);

/* The synthetic checkpoint options (core/model/synth.h) of the "tiny" shape
 * with vocab_size V, n_ctx positions, the seed, the dtype and no tokenizer
 * files: the small on-disk model of the loader and analysis tests. */
synth_opts tt_synth_tiny(int vocab_size, int n_ctx, uint64_t seed, synth_dtype dtype);

#endif
