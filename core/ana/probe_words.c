/* Word probes: see probe_words.h. */
#include "core/ana/probe_words.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/linalg.h"
#include "core/nn/lnorm.h"

void probe_words_result_free(probe_words_result *r)
{
    if (!r) return;
    free(r->value_norm); // the single allocation starts there
    memset(r, 0, sizeof *r);
}

/* Carves the result arrays out of one allocation, 8-byte aligned data first,
 * the int32 ids last. */
static int result_alloc(probe_words_result *r, size_t W, size_t H, size_t k)
{
    size_t n_hits = 2 * W * H * k + W * k, n_dbl = W * H + W;
    size_t bytes = n_dbl * sizeof(double) + n_hits * sizeof(topk_hit) + W * sizeof(int32_t) + 1;
    char *p = malloc(bytes);
    if (!p) return TW_ENOMEM;
    r->value_norm = (double *)p;
    r->layer_norm = r->value_norm + W * H;
    r->keys = (topk_hit *)(r->layer_norm + W);
    r->values = r->keys + W * H * k;
    r->layer_values = r->values + W * H * k;
    r->ids = (int32_t *)(r->layer_values + W * k);
    return TW_OK;
}

/* ---- Factored keys ----
 * Entry "keys(En):<b>": K = En Wk (V, d), stored head by head: K_h (V, dh)
 * at K + h V dh, then a trailer of doubles: Rk (H) max_j |K_h[j]| and cn (d)
 * the column norms |Wk[:, t]|. */

typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    int block;
} keys_ctx;

static size_t keys_bytes(size_t V, size_t d, size_t H)
{
    return (V * d * sizeof(float) + 7) / 8 * 8 + (H + d) * sizeof(double);
}

/* Rows of K computed per GEMM, between cancellation checks. */
#define KEYS_ROWS 4096

static int fill_keys(void *data, size_t bytes, void *ctx)
{
    const keys_ctx *kx = ctx;
    const gpt2_model *m = kx->m;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H;
    if (bytes != keys_bytes(V, d, H)) return TW_EINVAL;
    float *tmp = malloc(KEYS_ROWS * d * sizeof(float)); // (KEYS_ROWS, d) rows of En Wk
    if (!tmp) return TW_ENOMEM;
    blockcache_entry *en_e = NULL;
    int rc = ana_acquire_ln1_embeddings(m, kx->x, kx->block, &en_e);
    if (rc) {
        free(tmp);
        return rc;
    }
    const float *En = blockcache_data(en_e);
    float *K = data;
    double *Rk = (double *)((char *)data + (V * d * sizeof(float) + 7) / 8 * 8), *cn = Rk + H;
    for (size_t h = 0; h < H; h++) Rk[h] = 0.0;
    const gpt2_mat wk = gpt2_mat_at(m->p.h[kx->block].attn_w, 0, d);
    for (size_t r0 = 0; r0 < V; r0 += KEYS_ROWS) {
        if ((rc = tw_cancel_check(ana_cancel(kx->x))) != TW_OK) break;
        size_t nr = V - r0 < KEYS_ROWS ? V - r0 : KEYS_ROWS;
        mat_gemm(tmp, En + r0 * d, wk, NULL, nr, d, d);
        for (size_t j = 0; j < nr; j++)
            for (size_t h = 0; h < H; h++) {
                const float *src = tmp + j * d + h * dh;
                memcpy(K + (h * V + r0 + j) * dh, src, dh * sizeof(float));
                double nn = sqrt(topk_dot(src, src, dh));
                if (!(nn <= Rk[h])) Rk[h] = nn; /* NaN wins: nothing is certified */
            }
    }
    blockcache_release(ana_cache(kx->x), en_e);
    free(tmp);
    if (rc) return rc;
    /* column norms, walking the storage in its own order */
    for (size_t t = 0; t < d; t++) cn[t] = 0.0;
    for (size_t a = 0; a < d; a++)
        for (size_t b = 0; b < d; b++) {
            size_t i = wk.cs == 1 ? a : b, t = wk.cs == 1 ? b : a;
            double w = GPT2_AT(wk, i, t);
            cn[t] += w * w;
        }
    for (size_t t = 0; t < d; t++) cn[t] = sqrt(cn[t]);
    return TW_OK;
}

/* The keys of block b by the factored screening: for each head, the W
 * screening queries qa_h (dh) against K_h, certified against the exact
 * scores keyq . En_j. Bound on |fl(qa_h . fl(K_h[j])) - keyq . En_j|, with
 * keyq = fl(Wk_h qa_h) and K_h[j] = fl(Wk_h^T En_j) (docs/MATH.md §4.5):
 *   (gamma_dh + gamma_{d+1}) R_En sum_t |qa_t| |Wk[:, t]|   (keyq and K)
 *   + gamma_{dh+1} |qa_h| R_h                               (the screening dot)
 *   + d 2^-52 |keyq| R_En                                   (topk_dot in double)
 * doubled, as topk_rows widens its own. */
static int keys_factored(const gpt2_model *m, const ana_ctx *x, const float *En, float R_en,
                         const blockcache_entry *ke, const float *qa, const float *keyq, size_t W, size_t k,
                         topk_hit *keys)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H;
    const float *K = blockcache_data(ke);
    const double *Rk = ana_rows_trailer(ke, V, d), *cn = Rk + H;
    double *err = malloc(W * sizeof *err);
    if (!err) return TW_ENOMEM;
    const double g_a = topk_gamma(dh) + topk_gamma(d + 1), g_s = topk_gamma(dh + 1);
    int rc = TW_OK;
    for (size_t h = 0; h < H && rc == TW_OK; h++) {
        for (size_t w = 0; w < W; w++) {
            const float *a = qa + w * d + h * dh;
            const float *kq = keyq + (w * H + h) * d;
            double s = 0.0;
            for (size_t t = 0; t < dh; t++) s += fabs((double)a[t]) * cn[h * dh + t];
            double e = g_a * R_en * s + g_s * sqrt(topk_dot(a, a, dh)) * Rk[h] +
                       (double)d * 0x1p-52 * sqrt(topk_dot(kq, kq, d)) * R_en;
            err[w] = 2.0 * e;
        }
        const topk_screen sc = {.M = En,
                                .n = V,
                                .d = d,
                                .Q = keyq + h * d,
                                .ldq = H * d,
                                .S = K + h * V * dh,
                                .lds = dh,
                                .ds = dh,
                                .P = qa + h * dh,
                                .ldp = d,
                                .err = err};
        rc = topk_rows_screened(&sc, W, k, keys + h * k, NULL, H * k, &(topk_opts){.cancel = ana_cancel(x)});
    }
    free(err);
    return rc;
}

int probe_words(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                size_t k, probe_words_result *out)
{
    return probe_words_opt(m, x, block, ids, n_words, k, PROBE_KEYS_AUTO, out);
}

int probe_words_opt(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                    size_t k, int keys_method, probe_words_result *out)
{
    blockcache *c = ana_cache(x);
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m) || (n_words && !ids)) return TW_EINVAL;
    if (keys_method != PROBE_KEYS_AUTO && keys_method != PROBE_KEYS_DIRECT &&
        keys_method != PROBE_KEYS_FACTORED)
        return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H, W = n_words;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (k < 1 || k > V) return TW_EK;
    for (size_t w = 0; w < W; w++)
        if (ids[w] < 0 || (size_t)ids[w] >= V) return TW_ETOKEN;
    if (W > (size_t)1 << 20) return TW_EINVAL; // keeps every size below in range

    probe_words_result r = {0};
    int rc = result_alloc(&r, W, H, k);
    if (rc) return rc;
    r.block = block;
    r.n_words = W;
    r.n_head = H;
    r.k = k;
    if (W == 0) {
        *out = r;
        return TW_OK;
    }
    memcpy(r.ids, ids, W * sizeof *ids);

    const gpt2_block *blk = &m->p.h[block];
    const float *E = m->p.wte;
    float *qa = malloc(W * d * sizeof(float));             // (W, d) q Wq / sqrt(dh)
    float *va = malloc(d * sizeof(float));                 // (d) q Wv + bv
    float *keyq = malloc(W * H * d * sizeof(float));       // (W, H, d) q Wqk_h
    float *valq = malloc(W * (H + 1) * d * sizeof(float)); // (W, H+1, d) value queries
    topk_hit *vhits = malloc(W * (H + 1) * k * sizeof(topk_hit));
    blockcache_entry *en_e = NULL, *keys_e = NULL;
    if (!qa || !va || !keyq || !valq || !vhits) {
        rc = TW_ENOMEM;
        goto done;
    }
    rc = ana_acquire_ln1_embeddings(m, x, block, &en_e);
    if (rc) goto done;
    const float *En = blockcache_data(en_e);
    /* Every word's query vectors are computed on their own (matrix-vector
     * products, never a GEMM over the batch), so a word's answer does not
     * depend on which other words are probed with it (docs/MATH.md §2). */
    for (size_t w = 0; w < W; w++) {
        const float *q = En + (size_t)ids[w] * d;
        float *qaw = qa + w * d;
        // keys: qa (d) = q . Wq (d, d) / sqrt(dh); keyq[w, h] = qa_h (dh) . Wk_h^T (dh, d)
        mat_xm(qaw, q, blk->attn_w, d, d, (float)(1.0 / sqrt((double)dh)), 0.0f);
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices(m, block, (int)h, &hs);
            mat_mx(keyq + (w * H + h) * d, hs.wk, qaw + h * dh, d, dh, 1.0f, 0.0f);
        }
        // values: va (d) = q . Wv (d, d) + bv; u_h = va_h (dh) . Wo_h (dh, d)
        if (blk->attn_b) memcpy(va, blk->attn_b + 2 * d, d * sizeof(float));
        mat_xm(va, q, gpt2_mat_at(blk->attn_w, 0, 2 * d), d, d, 1.0f, blk->attn_b ? 1.0f : 0.0f);
        float *rowsw = valq + w * (H + 1) * d; // (H+1, d)
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices(m, block, (int)h, &hs);
            mat_xm(rowsw + h * d, va + h * dh, hs.wo, dh, d, 1.0f, 0.0f);
        }
    }
    /* Keys: the factored screening when K = En Wk is cached, or when
     * computing it (V d^2 multiply-adds) costs less than what it saves
     * (W H (d - dh) per row); otherwise every key query against En. */
    char kkey[32];
    snprintf(kkey, sizeof kkey, "keys(En):%d", block);
    size_t kbytes = keys_bytes(V, d, H);
    int factored = keys_method == PROBE_KEYS_FACTORED;
    if (keys_method == PROBE_KEYS_AUTO)
        factored = blockcache_lookup(c, kkey, kbytes, &keys_e) == TW_OK ||
                   (double)W * (double)H * (double)(d - dh) >= (double)d * (double)d;
    if (factored && !keys_e) {
        keys_ctx kx = {m, x, block};
        rc = blockcache_acquire(c, kkey, kbytes, fill_keys, &kx, &keys_e);
        if (rc) goto done;
    }
    if (factored)
        rc = keys_factored(m, x, En, ana_ln1_max_norm(m, en_e), keys_e, qa, keyq, W, k, r.keys);
    else
        rc = topk_rows_opt(En, V, d, keyq, W * H, k, r.keys, NULL,
                           &(topk_opts){.max_row_norm = ana_ln1_max_norm(m, en_e), .cancel = ana_cancel(x)});
    const float R_e = ana_ln1_wte_max_norm(m, en_e);
    blockcache_release(c, keys_e);
    keys_e = NULL;
    blockcache_release(c, en_e);
    en_e = NULL;
    if (rc) goto done;
    // Norms, layer sum U, then E[id] + u + b_o in place, then LN_f.
    const float *bo = blk->attn_proj_b;
    for (size_t w = 0; w < W; w++) {
        float *rowsw = valq + w * (H + 1) * d; // (H+1, d)
        float *Urow = rowsw + H * d;
        const float *e = E + (size_t)ids[w] * d;
        double uu = 0.0;
        for (size_t i = 0; i < d; i++) {
            double s = 0.0;
            for (size_t h = 0; h < H; h++) s += rowsw[h * d + i];
            Urow[i] = (float)s;
            uu += s * s;
        }
        r.layer_norm[w] = sqrt(uu);
        for (size_t h = 0; h <= H; h++) {
            float *u = rowsw + h * d;
            if (h < H) {
                double nn = 0.0;
                for (size_t i = 0; i < d; i++) nn += (double)u[i] * u[i];
                r.value_norm[w * H + h] = sqrt(nn);
            }
            for (size_t i = 0; i < d; i++)
                u[i] = (float)((double)e[i] + (double)u[i] + (bo ? (double)bo[i] : 0.0));
        }
    }
    layernorm_rows(valq, valq, m->p.ln_f_w, m->p.ln_f_b, W * (H + 1), d, m->cfg.ln_eps);
    rc = topk_rows_opt(E, V, d, valq, W * (H + 1), k, vhits, NULL,
                       &(topk_opts){.max_row_norm = R_e, .cancel = ana_cancel(x)});
    if (rc) goto done;
    for (size_t w = 0; w < W; w++) {
        memcpy(r.values + w * H * k, vhits + w * (H + 1) * k, H * k * sizeof(topk_hit));
        memcpy(r.layer_values + w * k, vhits + (w * (H + 1) + H) * k, k * sizeof(topk_hit));
    }

done:
    blockcache_release(c, keys_e);
    blockcache_release(c, en_e);
    free(qa);
    free(va);
    free(keyq);
    free(valq);
    free(vhits);
    if (rc) {
        probe_words_result_free(&r);
        return rc;
    }
    *out = r;
    return TW_OK;
}
