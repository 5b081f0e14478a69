#include "tests/support/test_model.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/test_rng.h"

/* The next n values of the store: mean + sd z. */
static float *take(tt_model *tm, tw_rng *r, size_t n, double mean, double sd)
{
    ck_assert_uint_le(tm->used + n, tm->cap);
    float *p = tm->store + tm->used;
    tt_fill_normal(r, p, n, mean, sd);
    tm->used += n;
    return p;
}

/* A weight (in, out) drawn in that order; stored as nn.Linear's (out, in)
 * when `linear`: the same matrix in the other layout. */
static gpt2_mat take_mat(tt_model *tm, tw_rng *r, size_t in, size_t out, double sd, int linear)
{
    float *w = take(tm, r, in * out, 0.0, sd);
    if (!linear) return gpt2_mat_rowmajor(w, out);
    float *t = malloc(in * out * sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < in; i++)
        for (size_t j = 0; j < out; j++) t[j * in + i] = w[i * out + j];
    memcpy(w, t, in * out * sizeof *t);
    free(t);
    gpt2_mat m = {w, 1, in};
    return m;
}

/* NULL when the model has no biases: the values are still drawn, so that
 * the weights do not depend on the option. */
static const float *take_bias(tt_model *tm, tw_rng *r, size_t n, double sd, int no_bias)
{
    const float *b = take(tm, r, n, 0.0, sd);
    return no_bias ? NULL : b;
}

static void block_build(tt_model *tm, tw_rng *r, gpt2_block *b, size_t C, const tt_model_opts *o)
{
    b->ln_1_w = take(tm, r, C, 1.0, 0.2);
    b->ln_1_b = take_bias(tm, r, C, 0.1, o->no_bias);
    b->attn_w = take_mat(tm, r, C, 3 * C, 0.2, o->linear_layout);
    b->attn_b = take_bias(tm, r, 3 * C, 0.2, o->no_bias);
    b->attn_proj_w = take_mat(tm, r, C, C, 0.2, o->linear_layout);
    b->attn_proj_b = take_bias(tm, r, C, 0.1, o->no_bias);
    b->ln_2_w = take(tm, r, C, 1.0, 0.2);
    b->ln_2_b = take_bias(tm, r, C, 0.1, o->no_bias);
    b->fc_w = take_mat(tm, r, C, 4 * C, 0.2, o->linear_layout);
    b->fc_b = take_bias(tm, r, 4 * C, 0.1, o->no_bias);
    b->fc_proj_w = take_mat(tm, r, 4 * C, C, 0.1, o->linear_layout);
    b->fc_proj_b = take_bias(tm, r, C, 0.1, o->no_bias);
}

void tt_model_build(tt_model *tm, const tt_model_opts *o)
{
    memset(tm, 0, sizeof *tm);
    const size_t C = (size_t)o->n_embd, V = (size_t)o->vocab_size, L = (size_t)o->n_layer;
    tm->cap = C + V * C + (size_t)o->n_ctx * C + 2 * C + L * (12 * C * C + 13 * C);
    tm->store = malloc(tm->cap * sizeof(float));
    ck_assert_ptr_nonnull(tm->store);
    gpt2_model *m = &tm->m;
    m->cfg = (gpt2_config){.n_layer = o->n_layer,
                           .n_head = o->n_head,
                           .n_embd = o->n_embd,
                           .n_inner = 4 * o->n_embd,
                           .n_ctx = o->n_ctx,
                           .vocab_size = o->vocab_size,
                           .ln_eps = 1e-5f};
    m->p.h = calloc(L, sizeof(gpt2_block));
    ck_assert_ptr_nonnull(m->p.h);
    tw_rng r = tt_rng(o->seed);
    const float *mu = take(tm, &r, C, 0.0, 0.05);
    float *E = take(tm, &r, V * C, 0.0, 0.1);
    for (size_t i = 0; i < V; i++)
        for (size_t j = 0; j < C; j++)
            E[i * C + j] = mu[j] + (float)(1.5 - (double)i / (double)V) * E[i * C + j];
    m->p.wte = E;
    m->p.wpe = take(tm, &r, (size_t)o->n_ctx * C, 0.0, 0.1);
    m->p.ln_f_w = take(tm, &r, C, 1.0, 0.2);
    m->p.ln_f_b = take_bias(tm, &r, C, 0.1, o->no_bias);
    for (size_t l = 0; l < L; l++) block_build(tm, &r, &m->p.h[l], C, o);
    ck_assert_uint_eq(tm->used, tm->cap);
}

void tt_model_free(tt_model *tm)
{
    free(tm->m.p.h);
    free(tm->store);
    memset(tm, 0, sizeof *tm);
}

void tt_model_build_layouts(tt_model *hf, tt_model *linear, tt_model *no_bias, const tt_model_opts *o)
{
    tt_model_opts v = *o;
    v.no_bias = 0;
    v.linear_layout = 0;
    tt_model_build(hf, &v);
    v.linear_layout = 1;
    tt_model_build(linear, &v);
    v.linear_layout = 0;
    v.no_bias = 1;
    tt_model_build(no_bias, &v);
}

synth_opts tt_synth_tiny(int vocab_size, int n_ctx, uint64_t seed, synth_dtype dtype)
{
    synth_opts o;
    ck_assert_int_eq(synth_opts_shape(&o, "tiny"), 0);
    o.vocab_size = vocab_size;
    o.n_ctx = n_ctx;
    o.seed = seed;
    o.tokenizer = 0;
    o.dtype = dtype;
    return o;
}
