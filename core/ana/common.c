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
    int block, ln; /* ln_1 or ln_2 of the block */
} ln_ctx;

static int fill_ln(void *data, size_t bytes, void *ctx)
{
    const ln_ctx *x = ctx;
    const gpt2_model *m = x->m;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    if (bytes != V * d * sizeof(float)) return TW_EINVAL;
    const gpt2_block *b = &m->p.h[x->block];
    const float *g = x->ln == 2 ? b->ln_2_w : b->ln_1_w, *beta = x->ln == 2 ? b->ln_2_b : b->ln_1_b;
    layernorm_rows(data, m->p.wte, g, beta, V, d, m->cfg.ln_eps);
    return TW_OK;
}

/* LN(E) through ln_1 or ln_2 of block b, cached under "ln<1|2>(E):<b>". */
static int acquire_ln_embeddings(const gpt2_model *m, const ana_ctx *x, int block, int ln,
                                 blockcache_entry **e)
{
    if (ana_check_model(m) || !e) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    char key[32];
    snprintf(key, sizeof key, "ln%d(E):%d", ln, block);
    ln_ctx fx = {m, block, ln};
    return blockcache_acquire(ana_cache(x), key, V * d * sizeof(float), fill_ln, &fx, e);
}

int ana_acquire_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    return acquire_ln_embeddings(m, x, block, 1, e);
}

int ana_acquire_ln2_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    return acquire_ln_embeddings(m, x, block, 2, e);
}
