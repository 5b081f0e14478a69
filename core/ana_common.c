/* Shared pieces of the weight analyses: see ana_common.h. */
#include "core/ana_common.h"

#include <stdio.h>

#include "core/lnorm.h"
#include "core/topk.h"

const char *ana_strerror(int code)
{
    switch (code) {
    case ANA_OK: return "ok";
    case ANA_EINVAL: return "invalid argument";
    case ANA_EBLOCK: return "block out of range";
    case ANA_EHEAD: return "head out of range";
    case ANA_EK: return "k out of range";
    case ANA_ETOP: return "number of directions out of range";
    case ANA_ETOKEN: return "token id out of range";
    case ANA_ENOMEM: return "out of memory";
    default: return "unknown error";
    }
}

int ana_check_model(const gpt2_model *m)
{
    if (!m) return ANA_EINVAL;
    const gpt2_config *c = &m->cfg;
    if (c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 || c->vocab_size < 1 ||
        c->n_embd % c->n_head != 0 || !(c->ln_eps > 0.0f))
        return ANA_EINVAL;
    if (!m->p.wte || !m->p.ln_f_w || !m->p.ln_f_b || !m->p.h) return ANA_EINVAL;
    return ANA_OK;
}

void ana_head_slices(const gpt2_model *m, int block, int head, ana_head *h)
{
    size_t d = (size_t)m->cfg.n_embd;
    size_t dh = d / (size_t)m->cfg.n_head;
    size_t off = (size_t)head * dh;
    const gpt2_block *b = &m->p.h[block];
    h->ld_qkv = 3 * d;
    h->ld_o = d;
    h->wq = b->attn_w + off;
    h->wk = b->attn_w + d + off;
    h->wv = b->attn_w + 2 * d + off;
    h->wo = b->attn_proj_w + off * d;
    h->bq = b->attn_b + off;
    h->bk = b->attn_b + d + off;
    h->bv = b->attn_b + 2 * d + off;
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
    if (bytes != V * d * sizeof(float)) return ANA_EINVAL;
    const gpt2_block *b = &m->p.h[x->block];
    layernorm_rows(data, m->p.wte, b->ln_1_w, b->ln_1_b, V, d, m->cfg.ln_eps);
    return ANA_OK;
}

int ana_acquire_ln1_embeddings(const gpt2_model *m, blockcache *c, int block,
                               blockcache_entry **e)
{
    if (ana_check_model(m) || !e) return ANA_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return ANA_EBLOCK;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    char key[32];
    snprintf(key, sizeof key, "ln1(E):%d", block);
    ln1_ctx x = {m, block};
    int rc = blockcache_acquire(c, key, V * d * sizeof(float), fill_ln1, &x, e);
    return ana_from_status(rc);
}

int ana_from_status(int rc)
{
    if (rc >= 0) return ANA_OK;
    if (rc == TOPK_ENOMEM || rc == BLOCKCACHE_ENOMEM) return ANA_ENOMEM;
    if (rc == TOPK_EINVAL || rc == BLOCKCACHE_EINVAL) return ANA_EINVAL;
    return rc; // already an ANA_* code (from a fill function)
}
