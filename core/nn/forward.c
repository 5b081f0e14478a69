/* GPT-2 forward pass: see forward.h for the contract. */
#include "core/nn/forward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/linalg.h"
#include "core/nn/lnorm.h"

/* ---- Matrix products ---- */

void matmul_forward(float *out, const float *inp, gpt2_mat weight, const float *bias, size_t N, size_t IC,
                    size_t OC)
{
    mat_gemm(out, inp, weight, bias, N, IC, OC);
}

void matmul_forward_naive(float *out, const float *inp, gpt2_mat weight, const float *bias, size_t N,
                          size_t IC, size_t OC)
{
    mat_gemm_naive(out, inp, weight, bias, N, IC, OC);
}

/* Tied LM head: out (N, V) = inp (N, C) @ wte^T, wte (V, C). */
static void lm_head_forward(float *out, const float *inp, const float *wte, size_t N, size_t C, size_t V)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)V, (blasint)C, 1.0f, inp,
                (blasint)C, wte, (blasint)C, 0.0f, out, (blasint)V);
}

static void lm_head_forward_naive(float *out, const float *inp, const float *wte, size_t N, size_t C,
                                  size_t V)
{
    for (size_t i = 0; i < N; i++)
        for (size_t v = 0; v < V; v++) {
            double s = 0.0;
            for (size_t k = 0; k < C; k++) s += (double)inp[i * C + k] * wte[v * C + k];
            out[i * V + v] = (float)s;
        }
}

/* ---- Attention ---- */

/* Query rows per block in attention_forward: a block of rows [r0, r1) only
 * needs keys [0, r1), so blocking skips most of the masked upper triangle
 * (about 44% of the work at N = 1024) while keeping the products large. */
#define ATT_ROW_BLOCK 128

void attention_forward(float *out, float *att, const float *qkv, size_t N, size_t C, size_t H)
{
    // out (N, C), att (H, N, N), qkv (N, 3C)
    size_t dh = C / H;
    size_t C3 = 3 * C;
    float scale = (float)(1.0 / sqrt((double)dh));
    for (size_t h = 0; h < H; h++) {
        const float *q = qkv + h * dh;
        const float *k = qkv + C + h * dh;
        const float *v = qkv + 2 * C + h * dh;
        for (size_t r0 = 0; r0 < N; r0 += ATT_ROW_BLOCK) {
            size_t r1 = r0 + ATT_ROW_BLOCK < N ? r0 + ATT_ROW_BLOCK : N;
            float *S = att + (h * N + r0) * N; // rows r0..r1-1 of this head's (N, N)
            // S[:, 0..r1) (r1-r0, r1) = scale * Q_h[r0..r1) K_h[0..r1)^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)(r1 - r0), (blasint)r1, (blasint)dh,
                        scale, q + r0 * C3, (blasint)C3, k, (blasint)C3, 0.0f, S, (blasint)N);
            for (size_t t = r0; t < r1; t++) {
                float *row = S + (t - r0) * N;
                float mx = row[0];
                for (size_t u = 1; u <= t; u++)
                    if (row[u] > mx) mx = row[u];
                float sum = 0.0f;
                for (size_t u = 0; u <= t; u++) {
                    row[u] = expf(row[u] - mx);
                    sum += row[u];
                }
                float inv = 1.0f / sum;
                for (size_t u = 0; u <= t; u++) row[u] *= inv;
                memset(row + t + 1, 0, (N - t - 1) * sizeof(float));
            }
            // out[r0..r1), h*dh..] (r1-r0, dh) = S[:, 0..r1) @ V_h[0..r1) (r1, dh)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)(r1 - r0), (blasint)dh,
                        (blasint)r1, 1.0f, S, (blasint)N, v, (blasint)C3, 0.0f, out + r0 * C + h * dh,
                        (blasint)C);
        }
    }
}

void attention_forward_naive(float *out, float *att, const float *qkv, size_t N, size_t C, size_t H)
{
    size_t dh = C / H;
    size_t C3 = 3 * C;
    double scale = 1.0 / sqrt((double)dh);
    for (size_t h = 0; h < H; h++) {
        for (size_t t = 0; t < N; t++) {
            const float *q = qkv + t * C3 + h * dh;
            float *row = att + (h * N + t) * N;
            double mx = -INFINITY;
            for (size_t u = 0; u <= t; u++) {
                const float *k = qkv + u * C3 + C + h * dh;
                double s = 0.0;
                for (size_t i = 0; i < dh; i++) s += (double)q[i] * k[i];
                s *= scale;
                row[u] = (float)s;
                if (s > mx) mx = s;
            }
            double sum = 0.0;
            for (size_t u = 0; u <= t; u++) sum += exp((double)row[u] - mx);
            for (size_t u = 0; u < N; u++) row[u] = u <= t ? (float)(exp((double)row[u] - mx) / sum) : 0.0f;
            for (size_t i = 0; i < dh; i++) {
                double s = 0.0;
                for (size_t u = 0; u <= t; u++) s += (double)row[u] * qkv[u * C3 + 2 * C + h * dh + i];
                out[t * C + h * dh + i] = (float)s;
            }
        }
    }
}

/* ---- GELU ---- */

void gelu_forward(float *out, const float *inp, size_t count, gpt2_gelu form)
{
    if (form == GPT2_GELU_ERF) {
        const float r2 = (float)(1.0 / sqrt(2.0));
        for (size_t i = 0; i < count; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + erff(x * r2));
        }
    } else {
        /* 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): the same function, written
         * with expf, which is several times faster than tanhf and has no
         * cancellation (exp overflow gives x / inf = -0, the right limit). */
        const float m2s2pi = (float)(-2.0 * sqrt(2.0 / M_PI));
        for (size_t i = 0; i < count; i++) {
            float x = inp[i];
            out[i] = x / (1.0f + expf(m2s2pi * (x + 0.044715f * x * x * x)));
        }
    }
}

/* ---- Top level ---- */

const char *gpt2_gelu_name(gpt2_gelu g) { return g == GPT2_GELU_ERF ? "erf" : "tanh"; }

/* a*b into *r; 0 on overflow. */
/* ---- Sizing: one table per allocation, as llm.c sizes its activations ---- */

/* The arrays of a result, in allocation order. */
enum { R_TOKENS, R_EMB, R_X0, R_X0_LNF, R_RESID, R_RESID_LNF, R_ATT, R_LOGITS, R_MLP, R_MID, R_N };
/* The per-block temporaries. */
enum { S_LN, S_QKV, S_ATY, S_TMP, S_FCH, S_ATT, S_N };
#define MAX_ARRAYS 10 /* >= R_N and S_N */

/* a * b into *r; 0 on overflow. */
static int mul_ok(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *r = a * b;
    return 1;
}

/* Byte offsets of `count` arrays of bytes[i] bytes each, every one 64-byte
 * aligned, after `head` bytes; the total (rounded to 64) in *total. 0 on
 * overflow. */
static int layout_arrays(size_t head, const size_t *bytes, size_t count, size_t *off, size_t *total)
{
    size_t t = head;
    for (size_t i = 0; i < count; i++) {
        size_t o = (t + 63) & ~(size_t)63;
        if (o < t || bytes[i] > SIZE_MAX - o) return 0;
        off[i] = o;
        t = o + bytes[i];
    }
    if (t > SIZE_MAX - 64) return 0;
    *total = (t + 63) & ~(size_t)63;
    return 1;
}

/* Element counts of every array (result and scratch) for n tokens; 0 when
 * a size overflows. Arrays that the options leave out have 0 elements. */
static int size_tables(const gpt2_config *c, size_t n, const gpt2_forward_opts *o, size_t n_logits,
                       size_t rel[R_N], size_t sel[S_N])
{
    const size_t L = (size_t)c->n_layer, H = (size_t)c->n_head, C = (size_t)c->n_embd;
    size_t nC, LnC, HnN, nlV, nI, n3C;
    if (!mul_ok(n, C, &nC) || !mul_ok(L, nC, &LnC) || !mul_ok(n, n, &HnN) || !mul_ok(H, HnN, &HnN) ||
        !mul_ok(n_logits, (size_t)c->vocab_size, &nlV) || !mul_ok(n, (size_t)c->n_inner, &nI) ||
        !mul_ok(nC, 3, &n3C))
        return 0;
    rel[R_TOKENS] = n;      /* int32 */
    rel[R_EMB] = nC;        /* (n, C) */
    rel[R_X0] = nC;         /* (n, C) */
    rel[R_X0_LNF] = nC;     /* (n, C) */
    rel[R_RESID] = LnC;     /* (L, n, C) */
    rel[R_RESID_LNF] = LnC; /* (L, n, C) */
    size_t nb = (o->att_select & GPT2_ATT_BLOCK) ? 1 : L, nh = (o->att_select & GPT2_ATT_HEAD) ? 1 : H, kept;
    if (!mul_ok(nb * nh, n * n, &kept)) return 0;
    rel[R_ATT] = o->skip_attention ? 0 : kept; /* (blocks, heads, n, n) of those kept */
    rel[R_LOGITS] = nlV;                       /* (n_logits, V) */
    size_t kb = (o->keep_select & GPT2_KEEP_BLOCK) ? 1 : L, kI, kC;
    if (!mul_ok(kb, nI, &kI) || !mul_ok(kb, nC, &kC)) return 0;
    rel[R_MLP] = o->keep_mlp ? kI : 0; /* (keep_blocks, n, I) */
    rel[R_MID] = o->keep_mid ? kC : 0; /* (keep_blocks, n, C) */
    sel[S_LN] = nC;                    /* (n, C)  LN1 or LN2 output */
    sel[S_QKV] = n3C;                  /* (n, 3C) */
    sel[S_ATY] = nC;                   /* (n, C)  attention output before c_proj */
    sel[S_TMP] = nC;                   /* (n, C)  a branch's output before the add */
    sel[S_FCH] = nI;                   /* (n, I)  MLP hidden */
    sel[S_ATT] = HnN;                  /* (H, n, n) one block's patterns */
    for (int i = 0; i < R_N; i++)
        if (rel[i] > SIZE_MAX / sizeof(float)) return 0;
    for (int i = 0; i < S_N; i++)
        if (sel[i] > SIZE_MAX / sizeof(float)) return 0;
    return 1;
}

/* One 64-byte aligned allocation holding `head` bytes and then the arrays;
 * ptrs[i] points at array i. NULL on overflow or allocation failure. */
static char *alloc_arrays(size_t head, const size_t *elems, size_t count, void **ptrs)
{
    size_t bytes[MAX_ARRAYS], off[MAX_ARRAYS], total;
    for (size_t i = 0; i < count; i++) bytes[i] = elems[i] * sizeof(float); /* int32 is as wide */
    if (!layout_arrays(head, bytes, count, off, &total)) return NULL;
    char *mem = aligned_alloc(64, total);
    if (!mem) return NULL;
    for (size_t i = 0; i < count; i++) ptrs[i] = elems[i] ? mem + off[i] : NULL;
    return mem;
}

static int model_usable(const gpt2_model *m)
{
    const gpt2_config *c = &m->cfg;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_inner < 1 || c->n_ctx < 1 ||
        c->vocab_size < 1 || c->n_embd % c->n_head != 0 || !(c->ln_eps >= 0.0f))
        return 0;
    const gpt2_params *p = &m->p;
    if (!p->wte || !p->wpe || !p->h || !p->ln_f_w) return 0;
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_block *b = &p->h[l];
        /* biases may be absent (bias=False models); weights may not (those
         * of an F16/BF16 block are converted when acquired) */
        if (!b->ln_1_w || !b->ln_2_w) return 0;
        if (!gpt2_block_is_lazy(m, (int)l) &&
            (!b->attn_w.p || !b->attn_proj_w.p || !b->fc_w.p || !b->fc_proj_w.p))
            return 0;
    }
    return 1;
}

static int check_args(const gpt2_model *m, const int32_t *tokens, size_t n, const gpt2_forward_opts *o)
{
    if (!m || !tokens || !model_usable(m)) return TW_EINVAL;
    if ((o->gelu != GPT2_GELU_TANH && o->gelu != GPT2_GELU_ERF) ||
        (o->logits != GPT2_LOGITS_LAST && o->logits != GPT2_LOGITS_ALL && o->logits != GPT2_LOGITS_NONE) ||
        (o->kernels != GPT2_KERNELS_BLAS && o->kernels != GPT2_KERNELS_NAIVE))
        return TW_EINVAL;
    if (((o->att_select & GPT2_ATT_BLOCK) && (o->att_block < 0 || o->att_block >= m->cfg.n_layer)) ||
        ((o->att_select & GPT2_ATT_HEAD) && (o->att_head < 0 || o->att_head >= m->cfg.n_head)) ||
        ((o->keep_select & GPT2_KEEP_BLOCK) && (o->keep_block < 0 || o->keep_block >= m->cfg.n_layer)))
        return TW_ERANGE;
    if (n < 1 || n > (size_t)m->cfg.n_ctx) return TW_ELENGTH;
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= m->cfg.vocab_size) return TW_ETOKEN;
    return TW_OK;
}

/* ---- The pass ---- */

/* x (count) += y (count): the residual connection. */
static void residual_forward(float *x, const float *y, size_t count)
{
    for (size_t i = 0; i < count; i++) x[i] += y[i];
}

/* e = wte[tokens], x0 = e + wpe[0..n-1]. */
static void embed_forward(float *emb, float *x0, const int32_t *tokens, const float *wte, const float *wpe,
                          size_t n, size_t C)
{
    for (size_t t = 0; t < n; t++) {
        const float *e = wte + (size_t)tokens[t] * C;
        const float *pe = wpe + t * C;
        for (size_t i = 0; i < C; i++) {
            emb[t * C + i] = e[i];
            x0[t * C + i] = e[i] + pe[i];
        }
    }
}

typedef void (*matmul_fn)(float *, const float *, gpt2_mat, const float *, size_t, size_t, size_t);
typedef void (*attention_fn)(float *, float *, const float *, size_t, size_t, size_t);

/* One pre-LN block on the residual stream x (n, C), in place:
 *   x += c_proj(attention(c_attn(LN1(x)))),  x += c_proj(GELU(c_fc(LN2(x)))).
 * att (H, n, n) receives the attention probabilities; keep_mid (n, C) and
 * keep_act (n, I), when not NULL, the state between the two halves and the
 * MLP's hidden activations. */
static void block_forward(float *x, float *att, void *const *s, const gpt2_block *b, const gpt2_config *c,
                          size_t n, gpt2_gelu gelu, matmul_fn matmul, attention_fn attention, float *keep_mid,
                          float *keep_act)
{
    const size_t C = (size_t)c->n_embd, F = (size_t)c->n_inner, H = (size_t)c->n_head;
    float *ln = s[S_LN], *qkv = s[S_QKV], *aty = s[S_ATY], *tmp = s[S_TMP], *fch = s[S_FCH];
    layernorm_rows(ln, x, b->ln_1_w, b->ln_1_b, n, C, c->ln_eps);
    matmul(qkv, ln, b->attn_w, b->attn_b, n, C, 3 * C);
    attention(aty, att, qkv, n, C, H);
    matmul(tmp, aty, b->attn_proj_w, b->attn_proj_b, n, C, C);
    residual_forward(x, tmp, n * C);
    if (keep_mid) memcpy(keep_mid, x, n * C * sizeof(float));
    layernorm_rows(ln, x, b->ln_2_w, b->ln_2_b, n, C, c->ln_eps);
    matmul(fch, ln, b->fc_w, b->fc_b, n, C, F);
    gelu_forward(fch, fch, n * F, gelu);
    if (keep_act) memcpy(keep_act, fch, n * F * sizeof(float));
    matmul(tmp, fch, b->fc_proj_w, b->fc_proj_b, n, F, C);
    residual_forward(x, tmp, n * C);
}

/* Copies block l's patterns (H, n, n) into the result when they are kept. */
static void keep_patterns(gpt2_forward_result *r, const float *att, int l)
{
    if (!r->att || l < r->att_block0 || l >= r->att_block0 + r->att_blocks) return;
    size_t nn = (size_t)r->n * (size_t)r->n;
    float *dst = r->att + (size_t)(l - r->att_block0) * (size_t)r->att_heads * nn;
    memcpy(dst, att + (size_t)r->att_head0 * nn, (size_t)r->att_heads * nn * sizeof(float));
}

/* The result's header: shapes, settings and where each kept array lies
 * (ra, the arrays of alloc_arrays in R_* order). */
static gpt2_forward_result result_header(const gpt2_config *cfg, const gpt2_forward_opts *o, size_t n,
                                         size_t n_logits, void *const *ra)
{
    const int L = cfg->n_layer, H = cfg->n_head;
    const int att_block = (o->att_select & GPT2_ATT_BLOCK) != 0,
              att_head = (o->att_select & GPT2_ATT_HEAD) != 0;
    const int keep_block = (o->keep_select & GPT2_KEEP_BLOCK) != 0;
    return (gpt2_forward_result){
        .n = (int)n,
        .C = cfg->n_embd,
        .H = H,
        .L = L,
        .V = cfg->vocab_size,
        .gelu = o->gelu,
        .kernels = o->kernels,
        .tokens = ra[R_TOKENS],
        .emb = ra[R_EMB],
        .x0 = ra[R_X0],
        .x0_lnf = ra[R_X0_LNF],
        .resid = ra[R_RESID],
        .resid_lnf = ra[R_RESID_LNF],
        .att = ra[R_ATT],
        .att_block0 = att_block ? o->att_block : 0,
        .att_blocks = att_block ? 1 : L,
        .att_head0 = att_head ? o->att_head : 0,
        .att_heads = att_head ? 1 : H,
        .n_logits = (int)n_logits,
        .logits_pos0 = o->logits == GPT2_LOGITS_ALL ? 0 : (int)n - 1,
        .logits = ra[R_LOGITS],
        .n_inner = cfg->n_inner,
        .keep_block0 = keep_block ? o->keep_block : 0,
        .keep_blocks = keep_block ? 1 : L,
        .mlp_act = ra[R_MLP],
        .resid_mid = ra[R_MID],
    };
}

/* The kernels of a pass. */
typedef struct {
    matmul_fn matmul;
    attention_fn attention;
} kernels;

/* Block l of the pass: x_l = block_l(x_{l-1}) into r->resid, LN_f of it
 * into r->resid_lnf, what is kept of it copied out. s: the scratch arrays. */
static int layer_forward(const gpt2_model *m, gpt2_forward_result *r, size_t l, const gpt2_forward_opts *o,
                         kernels k, void *const *s)
{
    const gpt2_config *cfg = &m->cfg;
    const size_t n = (size_t)r->n, C = (size_t)r->C;
    float *x = r->resid + l * n * C; /* the residual stream after block l */
    memcpy(x, l ? x - n * C : r->x0, n * C * sizeof(float));
    /* this block's slot in the kept arrays, if it is kept */
    int kept = (int)l >= r->keep_block0 && (int)l < r->keep_block0 + r->keep_blocks;
    size_t kl = kept ? l - (size_t)r->keep_block0 : 0;
    float *mid = kept && r->resid_mid ? r->resid_mid + kl * n * C : NULL;
    float *act = kept && r->mlp_act ? r->mlp_act + kl * n * (size_t)cfg->n_inner : NULL;
    gpt2_block_ref bref;
    const gpt2_block *blk = gpt2_block_acquire(m, (int)l, &bref);
    if (!blk) return TW_ENOMEM;
    block_forward(x, s[S_ATT], s, blk, cfg, n, o->gelu, k.matmul, k.attention, mid, act);
    gpt2_block_release(&bref);
    layernorm_rows(r->resid_lnf + l * n * C, x, m->p.ln_f_w, m->p.ln_f_b, n, C, cfg->ln_eps);
    keep_patterns(r, s[S_ATT], (int)l);
    return tw_cancel_check(o->cancel);
}

/* The tied LM head on LN_f(x_L) at the logits' positions. */
static void logits_forward(const gpt2_model *m, gpt2_forward_result *r, int naive)
{
    const size_t n = (size_t)r->n, C = (size_t)r->C, L = (size_t)r->L, V = (size_t)r->V;
    const float *lnf = r->resid_lnf + (L - 1) * n * C + (size_t)r->logits_pos0 * C;
    if (naive)
        lm_head_forward_naive(r->logits, lnf, m->p.wte, (size_t)r->n_logits, C, V);
    else
        lm_head_forward(r->logits, lnf, m->p.wte, (size_t)r->n_logits, C, V);
}

int gpt2_forward(const gpt2_model *m, const int32_t *tokens, size_t n, const gpt2_forward_opts *opts,
                 gpt2_forward_result **out)
{
    if (!out) return TW_EINVAL;
    *out = NULL;
    gpt2_forward_opts o = {0};
    if (opts) o = *opts;
    int rc = check_args(m, tokens, n, &o);
    if (rc != TW_OK) return rc;

    /* Sizes, then one allocation for the result and one for the scratch. */
    const gpt2_config *cfg = &m->cfg;
    const size_t L = (size_t)cfg->n_layer, C = (size_t)cfg->n_embd;
    const size_t n_logits = o.logits == GPT2_LOGITS_ALL ? n : o.logits == GPT2_LOGITS_LAST ? 1 : 0;
    size_t rel[R_N], sel[S_N];
    void *ra[R_N], *sa[S_N];
    if (!size_tables(cfg, n, &o, n_logits, rel, sel)) return TW_ENOMEM;
    char *mem = alloc_arrays(sizeof(gpt2_forward_result), rel, R_N, ra);
    char *scr = alloc_arrays(0, sel, S_N, sa);
    if (!mem || !scr) {
        free(mem);
        free(scr);
        return TW_ENOMEM;
    }
    gpt2_forward_result *r = (gpt2_forward_result *)mem;
    *r = result_header(cfg, &o, n, n_logits, ra);

    /* The pass. */
    const int naive = o.kernels == GPT2_KERNELS_NAIVE;
    const kernels k = {naive ? matmul_forward_naive : matmul_forward,
                       naive ? attention_forward_naive : attention_forward};
    memcpy(r->tokens, tokens, n * sizeof(int32_t));
    embed_forward(r->emb, r->x0, tokens, m->p.wte, m->p.wpe, n, C);
    layernorm_rows(r->x0_lnf, r->x0, m->p.ln_f_w, m->p.ln_f_b, n, C, cfg->ln_eps);
    for (size_t l = 0; l < L && rc == TW_OK; l++) rc = layer_forward(m, r, l, &o, k, sa);
    if (rc == TW_OK && n_logits) logits_forward(m, r, naive);
    free(scr);
    if (rc != TW_OK) {
        free(mem);
        return rc;
    }
    *out = r;
    return TW_OK;
}

void gpt2_forward_free(gpt2_forward_result *r)
{
    /* The struct sits at offset 0 of its allocation. */
    free(r);
}
