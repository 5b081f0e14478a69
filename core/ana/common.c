/* Shared pieces of the weight analyses: see ana_common.h. */
#include "core/ana/common.h"

#include <stdio.h>

#include "core/nn/lnorm.h"
#include "core/nn/topk.h"

int ana_check_model(const gpt2_model *m)
{
    if (!m) return TW_EINVAL;
    const gpt2_config *c = &m->cfg;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->vocab_size < 1 || c->n_embd % c->n_head != 0 ||
        !(c->ln_eps > 0.0f))
        return TW_EINVAL;
    if (!m->p.wte || !m->p.ln_f_w || !m->p.h) return TW_EINVAL;
    return TW_OK;
}

void ana_head_slices(const gpt2_model *m, int block, int head, ana_head *h)
{
    size_t d = (size_t)m->cfg.n_embd;
    size_t dh = d / (size_t)m->cfg.n_head;
    size_t off = (size_t)head * dh;
    const gpt2_block *b = &m->p.h[block];
    h->wq = gpt2_mat_at(b->attn_w, 0, off);
    h->wk = gpt2_mat_at(b->attn_w, 0, d + off);
    h->wv = gpt2_mat_at(b->attn_w, 0, 2 * d + off);
    h->wo = gpt2_mat_at(b->attn_proj_w, off, 0);
    h->bq = b->attn_b ? b->attn_b + off : NULL;
    h->bk = b->attn_b ? b->attn_b + d + off : NULL;
    h->bv = b->attn_b ? b->attn_b + 2 * d + off : NULL;
}

typedef struct {
    const gpt2_model *m;
    int block;
} ln1_ctx;

static int fill_ln1(void *data, size_t bytes, void *ctx)
{
    const ln1_ctx *x = ctx;
    const gpt2_model *m = x->m;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    if (bytes != V * d * sizeof(float)) return TW_EINVAL;
    const gpt2_block *b = &m->p.h[x->block];
    layernorm_rows(data, m->p.wte, b->ln_1_w, b->ln_1_b, V, d, m->cfg.ln_eps);
    return TW_OK;
}

int ana_acquire_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    blockcache *c = ana_cache(x);
    if (ana_check_model(m) || !e) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    char key[32];
    snprintf(key, sizeof key, "ln1(E):%d", block);
    ln1_ctx fx = {m, block};
    return blockcache_acquire(c, key, V * d * sizeof(float), fill_ln1, &fx, e);
}
