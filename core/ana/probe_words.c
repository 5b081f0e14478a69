/* Word probes: see probe_words.h. */
#include "core/ana/probe_words.h"

#include <cblas.h>
#include <math.h>
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

int probe_words(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                size_t k, probe_words_result *out)
{
    blockcache *c = ana_cache(x);
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m) || (n_words && !ids)) return TW_EINVAL;
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
    float *qa = malloc(d * sizeof(float));                 // (d) q Wq / sqrt(dh), then q Wv + bv
    float *keyq = malloc(W * H * d * sizeof(float));       // (W, H, d) q Wqk_h
    float *valq = malloc(W * (H + 1) * d * sizeof(float)); // (W, H+1, d) value queries
    topk_hit *vhits = malloc(W * (H + 1) * k * sizeof(topk_hit));
    blockcache_entry *en_e = NULL;
    if (!qa || !keyq || !valq || !vhits) {
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
        // keys: qa (d) = q . Wq (d, d) / sqrt(dh); keyq[w, h] = qa_h (dh) . Wk_h^T (dh, d)
        mat_xm(qa, q, blk->attn_w, d, d, (float)(1.0 / sqrt((double)dh)), 0.0f);
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices(m, block, (int)h, &hs);
            mat_mx(keyq + (w * H + h) * d, hs.wk, qa + h * dh, d, dh, 1.0f, 0.0f);
        }
        // values: qa (d) = q . Wv (d, d) + bv; u_h = qa_h (dh) . Wo_h (dh, d)
        if (blk->attn_b) memcpy(qa, blk->attn_b + 2 * d, d * sizeof(float));
        mat_xm(qa, q, gpt2_mat_at(blk->attn_w, 0, 2 * d), d, d, 1.0f, blk->attn_b ? 1.0f : 0.0f);
        float *rowsw = valq + w * (H + 1) * d; // (H+1, d)
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices(m, block, (int)h, &hs);
            mat_xm(rowsw + h * d, qa + h * dh, hs.wo, dh, d, 1.0f, 0.0f);
        }
    }
    rc = topk_rows_opt(En, V, d, keyq, W * H, k, r.keys, NULL, &(topk_opts){.cancel = ana_cancel(x)});
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
    rc = topk_rows_opt(E, V, d, valq, W * (H + 1), k, vhits, NULL, &(topk_opts){.cancel = ana_cancel(x)});
    if (rc) goto done;
    for (size_t w = 0; w < W; w++) {
        memcpy(r.values + w * H * k, vhits + w * (H + 1) * k, H * k * sizeof(topk_hit));
        memcpy(r.layer_values + w * k, vhits + (w * (H + 1) + H) * k, k * sizeof(topk_hit));
    }

done:
    blockcache_release(c, en_e);
    free(qa);
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
