/* GPT-2 forward pass: see forward.h for the contract. */
#include "core/nn/forward.h"

#include "core/nn/lnorm.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Matrix products ---- */

void matmul_forward(float *out, const float *inp, const float *weight,
                    const float *bias, size_t N, size_t IC, size_t OC)
{
    // out (N, OC), inp (N, IC), weight (IC, OC), bias (OC)
    float beta = 0.0f;
    if (bias) {
        for (size_t i = 0; i < N; i++) memcpy(out + i * OC, bias, OC * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                (blasint)N, (blasint)OC, (blasint)IC,
                1.0f, inp, (blasint)IC, weight, (blasint)OC,
                beta, out, (blasint)OC);
}

void matmul_forward_naive(float *out, const float *inp, const float *weight,
                          const float *bias, size_t N, size_t IC, size_t OC)
{
    for (size_t i = 0; i < N; i++) {
        for (size_t o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0;
            for (size_t k = 0; k < IC; k++)
                s += (double)inp[i * IC + k] * weight[k * OC + o];
            out[i * OC + o] = (float)s;
        }
    }
}

/* Tied LM head: out (N, V) = inp (N, C) @ wte^T, wte (V, C). */
static void lm_head_forward(float *out, const float *inp, const float *wte,
                            size_t N, size_t C, size_t V)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                (blasint)N, (blasint)V, (blasint)C,
                1.0f, inp, (blasint)C, wte, (blasint)C,
                0.0f, out, (blasint)V);
}

static void lm_head_forward_naive(float *out, const float *inp, const float *wte,
                                  size_t N, size_t C, size_t V)
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

void attention_forward(float *out, float *att, const float *qkv,
                       size_t N, size_t C, size_t H)
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
            float *S = att + (h * N + r0) * N;   // rows r0..r1-1 of this head's (N, N)
            // S[:, 0..r1) (r1-r0, r1) = scale * Q_h[r0..r1) K_h[0..r1)^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                        (blasint)(r1 - r0), (blasint)r1, (blasint)dh,
                        scale, q + r0 * C3, (blasint)C3, k, (blasint)C3,
                        0.0f, S, (blasint)N);
            for (size_t t = r0; t < r1; t++) {
                float *row = S + (t - r0) * N;
                float mx = row[0];
                for (size_t u = 1; u <= t; u++) if (row[u] > mx) mx = row[u];
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                        (blasint)(r1 - r0), (blasint)dh, (blasint)r1,
                        1.0f, S, (blasint)N, v, (blasint)C3,
                        0.0f, out + r0 * C + h * dh, (blasint)C);
        }
    }
}

void attention_forward_naive(float *out, float *att, const float *qkv,
                             size_t N, size_t C, size_t H)
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
            for (size_t u = 0; u < N; u++)
                row[u] = u <= t ? (float)(exp((double)row[u] - mx) / sum) : 0.0f;
            for (size_t i = 0; i < dh; i++) {
                double s = 0.0;
                for (size_t u = 0; u <= t; u++)
                    s += (double)row[u] * qkv[u * C3 + 2 * C + h * dh + i];
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

const char *gpt2_gelu_name(gpt2_gelu g)
{
    return g == GPT2_GELU_ERF ? "erf" : "tanh";
}

/* a*b into *r; 0 on overflow. */
static int mul_ok(size_t a, size_t b, size_t *r)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *r = a * b;
    return 1;
}

/* Reserves `bytes` at a 64-byte aligned offset of a layout being sized. */
static int layout_take(size_t *total, size_t bytes, size_t *offset)
{
    size_t off = (*total + 63) & ~(size_t)63;
    if (off < *total || bytes > SIZE_MAX - off) return 0;
    *offset = off;
    *total = off + bytes;
    return 1;
}

static int model_usable(const gpt2_model *m)
{
    const gpt2_config *c = &m->cfg;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->n_inner < 1 ||
        c->n_ctx < 1 || c->vocab_size < 1 || c->n_embd % c->n_head != 0 ||
        !(c->ln_eps >= 0.0f))
        return 0;
    const gpt2_params *p = &m->p;
    if (!p->wte || !p->wpe || !p->h || !p->ln_f_w || !p->ln_f_b) return 0;
    for (int l = 0; l < c->n_layer; l++) {
        const gpt2_block *b = &p->h[l];
        if (!b->ln_1_w || !b->ln_1_b || !b->attn_w || !b->attn_b || !b->attn_proj_w ||
            !b->attn_proj_b || !b->ln_2_w || !b->ln_2_b || !b->fc_w || !b->fc_b ||
            !b->fc_proj_w || !b->fc_proj_b)
            return 0;
    }
    return 1;
}

int gpt2_forward(const gpt2_model *m, const int32_t *tokens, size_t n,
                 const gpt2_forward_opts *opts, gpt2_forward_result **out)
{
    if (!out) return TW_EINVAL;
    *out = NULL;
    gpt2_forward_opts o = {0};
    if (opts) o = *opts;
    if (!m || !tokens || !model_usable(m)) return TW_EINVAL;
    if ((o.gelu != GPT2_GELU_TANH && o.gelu != GPT2_GELU_ERF) ||
        (o.logits != GPT2_LOGITS_LAST && o.logits != GPT2_LOGITS_ALL &&
         o.logits != GPT2_LOGITS_NONE) ||
        (o.kernels != GPT2_KERNELS_BLAS && o.kernels != GPT2_KERNELS_NAIVE))
        return TW_EINVAL;

    const gpt2_config *cfg = &m->cfg;
    if (n < 1 || n > (size_t)cfg->n_ctx) return TW_ELENGTH;
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= cfg->vocab_size) return TW_ETOKEN;

    const size_t L = (size_t)cfg->n_layer, H = (size_t)cfg->n_head;
    const size_t C = (size_t)cfg->n_embd, Ni = (size_t)cfg->n_inner;
    const size_t V = (size_t)cfg->vocab_size;
    const size_t n_logits = o.logits == GPT2_LOGITS_ALL ? n
                          : o.logits == GPT2_LOGITS_LAST ? 1 : 0;
    const int naive = o.kernels == GPT2_KERNELS_NAIVE;

    /* Element counts (overflow-checked). */
    size_t nC, LnC, HnN, LHnN, nlV, nI, n3C;
    if (!mul_ok(n, C, &nC) || !mul_ok(L, nC, &LnC) || !mul_ok(n, n, &HnN) ||
        !mul_ok(H, HnN, &HnN) || !mul_ok(L, HnN, &LHnN) || !mul_ok(n_logits, V, &nlV) ||
        !mul_ok(n, Ni, &nI) || !mul_ok(nC, 3, &n3C))
        return TW_ENOMEM;
    if (SIZE_MAX / sizeof(float) < LHnN || SIZE_MAX / sizeof(float) < LnC ||
        SIZE_MAX / sizeof(float) < nlV || SIZE_MAX / sizeof(float) < nI ||
        SIZE_MAX / sizeof(float) < n3C)
        return TW_ENOMEM;

    /* Result: one allocation holding the struct and every array. */
    size_t total = 0, o_hdr, o_tok, o_emb, o_x0, o_x0l, o_res, o_resl, o_att = 0, o_log = 0;
    int ok = layout_take(&total, sizeof(gpt2_forward_result), &o_hdr) &&
             layout_take(&total, n * sizeof(int32_t), &o_tok) &&
             layout_take(&total, nC * sizeof(float), &o_emb) &&
             layout_take(&total, nC * sizeof(float), &o_x0) &&
             layout_take(&total, nC * sizeof(float), &o_x0l) &&
             layout_take(&total, LnC * sizeof(float), &o_res) &&
             layout_take(&total, LnC * sizeof(float), &o_resl) &&
             (o.skip_attention || layout_take(&total, LHnN * sizeof(float), &o_att)) &&
             (n_logits == 0 || layout_take(&total, nlV * sizeof(float), &o_log));
    if (!ok || total > SIZE_MAX - 64) return TW_ENOMEM;
    total = (total + 63) & ~(size_t)63;

    /* Scratch: one allocation for the per-block temporaries. */
    size_t stotal = 0, s_ln, s_qkv, s_aty, s_tmp, s_fch, s_att = 0;
    ok = layout_take(&stotal, nC * sizeof(float), &s_ln) &&
         layout_take(&stotal, n3C * sizeof(float), &s_qkv) &&
         layout_take(&stotal, nC * sizeof(float), &s_aty) &&
         layout_take(&stotal, nC * sizeof(float), &s_tmp) &&
         layout_take(&stotal, nI * sizeof(float), &s_fch) &&
         (!o.skip_attention || layout_take(&stotal, HnN * sizeof(float), &s_att));
    if (!ok || stotal > SIZE_MAX - 64) return TW_ENOMEM;
    stotal = (stotal + 63) & ~(size_t)63;

    char *mem = aligned_alloc(64, total);
    char *scr = aligned_alloc(64, stotal);
    if (!mem || !scr) {
        free(mem);
        free(scr);
        return TW_ENOMEM;
    }

    gpt2_forward_result *r = (gpt2_forward_result *)(mem + o_hdr);
    memset(r, 0, sizeof *r);
    r->n = (int)n;
    r->C = (int)C;
    r->H = (int)H;
    r->L = (int)L;
    r->V = (int)V;
    r->gelu = o.gelu;
    r->kernels = o.kernels;
    r->tokens = (int32_t *)(mem + o_tok);
    r->emb = (float *)(mem + o_emb);
    r->x0 = (float *)(mem + o_x0);
    r->x0_lnf = (float *)(mem + o_x0l);
    r->resid = (float *)(mem + o_res);
    r->resid_lnf = (float *)(mem + o_resl);
    r->att = o.skip_attention ? NULL : (float *)(mem + o_att);
    r->n_logits = (int)n_logits;
    r->logits_pos0 = o.logits == GPT2_LOGITS_ALL ? 0 : (int)n - 1;
    r->logits = n_logits ? (float *)(mem + o_log) : NULL;

    float *ln = (float *)(scr + s_ln);    // (n, C)  LN1 or LN2 output
    float *qkv = (float *)(scr + s_qkv);  // (n, 3C)
    float *aty = (float *)(scr + s_aty);  // (n, C)  attention output before c_proj
    float *tmp = (float *)(scr + s_tmp);  // (n, C)  a branch's output before the add
    float *fch = (float *)(scr + s_fch);  // (n, Ni) MLP hidden
    float *att_scr = o.skip_attention ? (float *)(scr + s_att) : NULL; // (H, n, n)

    void (*matmul)(float *, const float *, const float *, const float *,
                   size_t, size_t, size_t) = naive ? matmul_forward_naive : matmul_forward;
    void (*attention)(float *, float *, const float *, size_t, size_t, size_t) =
        naive ? attention_forward_naive : attention_forward;

    const gpt2_params *p = &m->p;
    const float eps = cfg->ln_eps;

    /* Embeddings. */
    memcpy(r->tokens, tokens, n * sizeof(int32_t));
    for (size_t t = 0; t < n; t++) {
        const float *e = p->wte + (size_t)tokens[t] * C;
        const float *pe = p->wpe + t * C;
        for (size_t i = 0; i < C; i++) {
            r->emb[t * C + i] = e[i];
            r->x0[t * C + i] = e[i] + pe[i];
        }
    }
    layernorm_rows(r->x0_lnf, r->x0, p->ln_f_w, p->ln_f_b, n, C, eps);

    /* Blocks. */
    const float *x_prev = r->x0;
    for (size_t l = 0; l < L; l++) {
        const gpt2_block *b = &p->h[l];
        float *x = r->resid + l * nC;     // (n, C) residual stream of this block
        float *att = r->att ? r->att + l * HnN : att_scr;
        memcpy(x, x_prev, nC * sizeof(float));

        layernorm_rows(ln, x, b->ln_1_w, b->ln_1_b, n, C, eps);
        matmul(qkv, ln, b->attn_w, b->attn_b, n, C, 3 * C);
        attention(aty, att, qkv, n, C, H);
        matmul(tmp, aty, b->attn_proj_w, b->attn_proj_b, n, C, C);
        for (size_t i = 0; i < nC; i++) x[i] += tmp[i];

        layernorm_rows(ln, x, b->ln_2_w, b->ln_2_b, n, C, eps);
        matmul(fch, ln, b->fc_w, b->fc_b, n, C, Ni);
        gelu_forward(fch, fch, nI, o.gelu);
        matmul(tmp, fch, b->fc_proj_w, b->fc_proj_b, n, Ni, C);
        for (size_t i = 0; i < nC; i++) x[i] += tmp[i];

        layernorm_rows(r->resid_lnf + l * nC, x, p->ln_f_w, p->ln_f_b, n, C, eps);
        x_prev = x;
    }

    /* Tied LM head on LN_f(x_L). */
    if (n_logits) {
        const float *lnf = r->resid_lnf + (L - 1) * nC + (size_t)r->logits_pos0 * C;
        if (naive) lm_head_forward_naive(r->logits, lnf, p->wte, n_logits, C, V);
        else lm_head_forward(r->logits, lnf, p->wte, n_logits, C, V);
    }

    free(scr);
    *out = r;
    return TW_OK;
}

void gpt2_forward_free(gpt2_forward_result *r)
{
    /* The struct sits at offset 0 of its allocation. */
    free(r);
}
