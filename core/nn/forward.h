/* GPT-2 forward pass for one phrase, keeping every intermediate the analyses
 * need (docs/MATH.md §7).
 *
 * Notation: n tokens, C = n_embd, H = n_head, dh = C/H, L = n_layer,
 * V = vocab_size, I = n_inner. All tensors are row-major float32.
 *
 * Per block l (pre-LN GPT-2):
 *   x = x + Attn_l(LN1_l(x))   causal softmax attention, scale 1/sqrt(dh)
 *   x = x + MLP_l(LN2_l(x))    GELU(x W_fc + b_fc) W_proj + b_proj
 * and the analysed state is LN_f(x_l). Logits use the tied head LN_f(x_L) wte^T.
 *
 * Two kernel paths compute the same thing: the fast one (every matrix product
 * through cblas_sgemm) and a slow, obviously-correct naive one (plain loops,
 * double accumulators) kept as its reference. Layer norm and GELU are shared.
 *
 * Threads: gpt2_forward touches only its arguments and its own buffers, so
 * concurrent calls on one model are safe. OpenBLAS may use its own threads
 * inside each call; the caller decides the thread budget (openblas_set_num_threads).
 */
#ifndef TW_FORWARD_H
#define TW_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/status.h"
#include "core/model/gpt2.h"

typedef enum {
    GPT2_GELU_TANH = 0, /* GPT-2's 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))), default */
    GPT2_GELU_ERF = 1,  /* exact 0.5x(1+erf(x/sqrt(2))), as nanoGPT */
} gpt2_gelu;

typedef enum {
    GPT2_LOGITS_LAST = 0, /* logits of the last position only: (1, V), default */
    GPT2_LOGITS_ALL = 1,  /* logits of every position: (n, V) */
    GPT2_LOGITS_NONE = 2, /* no logits */
} gpt2_logits;

typedef enum {
    GPT2_KERNELS_BLAS = 0,  /* cblas_sgemm for every matrix product, default */
    GPT2_KERNELS_NAIVE = 1, /* slow reference loops */
} gpt2_kernels;

/* Options; a zeroed struct (or NULL) means all defaults. */
typedef struct {
    gpt2_gelu gelu;
    gpt2_logits logits;
    gpt2_kernels kernels;
    int skip_attention;      /* nonzero: do not keep the attention patterns (att = NULL).
                             They take L*H*n*n floats: 604 MB for 124M at n = 1024. */
    int att_select;          /* GPT2_ATT_* bits: keep the patterns of one block and/or one head only */
    int att_block;           /* with GPT2_ATT_BLOCK */
    int att_head;            /* with GPT2_ATT_HEAD */
    const tw_cancel *cancel; /* checked between blocks; NULL: never stops */
    int keep_mlp;            /* nonzero: keep the MLP hidden activations (mlp_act): L*n*I floats,
                                151 MB for 124M at n = 1024 */
    int keep_mid;            /* nonzero: keep the residual stream between attention and MLP (resid_mid) */
    int keep_select;         /* GPT2_KEEP_BLOCK: keep mlp_act / resid_mid of keep_block only */
    int keep_block;          /* with GPT2_KEEP_BLOCK */
} gpt2_forward_opts;

enum { GPT2_ATT_BLOCK = 1, GPT2_ATT_HEAD = 2 };
enum { GPT2_KEEP_BLOCK = 1 };

/* gpt2_forward returns TW_OK or a base/status.h code: TW_EINVAL (NULL pointer,
 * bad option value, unusable config), TW_ELENGTH (n < 1 or n > n_ctx),
 * TW_ETOKEN (a token id outside [0, V)), TW_ENOMEM (allocation failed or
 * sizes overflow size_t), TW_ECANCELED / TW_ETIMEDOUT (opts.cancel). */

/* Everything one forward pass produced. The struct and all arrays live in ONE
 * allocation owned by the caller and released by gpt2_forward_free. The
 * arrays do not alias the model. */
typedef struct {
    int n, C, H, L, V;          /* dimensions as above */
    int n_inner;                /* I, the MLP width */
    gpt2_gelu gelu;             /* which GELU form was used: report it */
    gpt2_kernels kernels;       /* which kernel path was used */
    int32_t *tokens;            /* (n) copy of the input ids */
    float *emb;                 /* (n, C)     e = wte[tokens] */
    float *x0;                  /* (n, C)     x_0 = e + wpe[0..n-1] */
    float *x0_lnf;              /* (n, C)     LN_f(x_0) */
    float *resid;               /* (L, n, C)  residual stream after block l: resid + (l*n + t)*C */
    float *resid_lnf;           /* (L, n, C)  LN_f of it */
    int att_block0, att_blocks; /* the blocks and heads whose patterns att holds */
    int att_head0, att_heads;
    float *att;                   /* (att_blocks, att_heads, n, n) attention probabilities: element
                   ((b*att_heads + h)*n + t)*n + u is the weight of key u for query t
                   in block att_block0 + b, head att_head0 + h; rows sum to 1 over
                   u <= t, entries u > t are exactly 0. All L x H of them unless
                   opts.att_select says otherwise; NULL when opts.skip_attention. */
    int n_logits;                 /* rows of logits: 1 (last position), n (all) or 0 (none) */
    int logits_pos0;              /* position of the first logits row: n-1 (last) or 0 (all) */
    float *logits;                /* (n_logits, V) LN_f(x_L) wte^T, NULL when n_logits = 0 */
    int keep_block0, keep_blocks; /* the blocks mlp_act and resid_mid hold (all L unless
                                     opts.keep_select says otherwise) */
    float *mlp_act;   /* (keep_blocks, n, I) GELU(LN2(x') W_fc + b_fc) of block keep_block0 + b, the
                         coefficients of the MLP's value vectors (rows of W_proj): element
                         (b*n + t)*I + i is neuron i at position t. NULL unless opts.keep_mlp. */
    float *resid_mid; /* (keep_blocks, n, C) x' = x_l + Attn_l(LN1_l(x_l)), the state ln_2 reads.
                         NULL unless opts.keep_mid. */
} gpt2_forward_result;

/* Runs the model on tokens[0..n). On success returns TW_OK and stores a
 * new result in *out (free with gpt2_forward_free). On error returns a
 * negative GPT2_FWD_* code, sets *out = NULL, and leaves nothing allocated.
 * Allocates the result and one scratch block; never aborts on bad input. */
int gpt2_forward(const gpt2_model *m, const int32_t *tokens, size_t n, const gpt2_forward_opts *opts,
                 gpt2_forward_result **out);

/* Releases a result; NULL is fine. */
void gpt2_forward_free(gpt2_forward_result *r);

/* "tanh" or "erf". */
const char *gpt2_gelu_name(gpt2_gelu g);

/* ---- Per-operation kernels (no allocation; exposed for tests) ---- */

/* out (N, OC) = inp (N, IC) @ weight (IC, OC) + bias (OC); bias may be NULL.
 * weight in either stored layout (gpt2_mat). out must not alias inp. */
void matmul_forward(float *out, const float *inp, gpt2_mat weight, const float *bias, size_t N, size_t IC,
                    size_t OC);
void matmul_forward_naive(float *out, const float *inp, gpt2_mat weight, const float *bias, size_t N,
                          size_t IC, size_t OC);

/* Causal multi-head self-attention core.
 *   out   (N, C)        concatenated head outputs (before c_proj)
 *   att   (H, N, N)     written: softmax probabilities, zero above the diagonal
 *   qkv   (N, 3C)       query | key | value, head h at columns h*dh.. in each third
 * Scale 1/sqrt(C/H); softmax subtracts the row maximum. C % H == 0. */
void attention_forward(float *out, float *att, const float *qkv, size_t N, size_t C, size_t H);
void attention_forward_naive(float *out, float *att, const float *qkv, size_t N, size_t C, size_t H);

/* out[i] = GELU(inp[i]) for i < count; out may equal inp. */
void gelu_forward(float *out, const float *inp, size_t count, gpt2_gelu form);

#endif
