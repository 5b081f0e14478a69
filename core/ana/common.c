/* Shared pieces of the weight analyses: see ana_common.h. */
#include "core/ana/common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn/lnorm.h"
#include "core/nn/par.h"
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
    ana_head_slices_of(m, &m->p.h[block], head, h);
}

void ana_head_slices_of(const gpt2_model *m, const gpt2_block *b, int head, ana_head *h)
{
    size_t d = (size_t)m->cfg.n_embd;
    size_t dh = d / (size_t)m->cfg.n_head;
    size_t off = (size_t)head * dh;
    h->wq = gpt2_mat_at(b->attn_w, 0, off);
    h->wk = gpt2_mat_at(b->attn_w, 0, d + off);
    h->wv = gpt2_mat_at(b->attn_w, 0, 2 * d + off);
    h->wo = gpt2_mat_at(b->attn_proj_w, off, 0);
    h->bq = b->attn_b ? b->attn_b + off : NULL;
    h->bk = b->attn_b ? b->attn_b + d + off : NULL;
    h->bv = b->attn_b ? b->attn_b + 2 * d + off : NULL;
}

int ana_block_acquire(const gpt2_model *m, int b, gpt2_block_ref *ref, const gpt2_block **out)
{
    *out = gpt2_block_acquire(m, b, ref);
    return *out ? TW_OK : TW_ENOMEM;
}

typedef struct {
    const gpt2_model *m;
    int block, ln; /* ln_1 or ln_2 of the block */
} ln_ctx;

/* Bytes of a cached (n, d) float matrix followed by its trailer of `extra`
 * doubles (8-byte aligned). */
static size_t rows_bytes(size_t n, size_t d, size_t extra)
{
    return (n * d * sizeof(float) + 7) / 8 * 8 + extra * sizeof(double);
}

const double *ana_rows_trailer(const blockcache_entry *e, size_t n, size_t d)
{
    return (const double *)((const char *)blockcache_data(e) + rows_bytes(n, d, 0));
}

typedef struct {
    const gpt2_model *m;
    const float *g, *beta; /* the LayerNorm's gamma and beta */
    float *out;
    double en_max[NN_MAX_PARTS];
} ln_par;

/* Rows per chunk of LN(E)'s forming: their statistics side by side
 * (layernorm_stats_rows), then each row normalised with its norm in the
 * same pass (layernorm_apply_sumsq), the floats of layernorm_rows. */
#define LN_CHUNK 16

/* out (n, d) = the rows x (n, d) normalised with their statistics and
 * gamma, beta, and the largest norm of the rows written (the square root of
 * each row's sum of squares, NaN-sticky): the one rule of every formed and
 * cached LN(E), so both give the same figure. */
static double form_rows(float *out, const float *x, size_t n, size_t d, const float *g, const float *beta,
                        const double *mean, const double *rstd)
{
    double r = 0.0;
    for (size_t t = 0; t < n; t++) {
        if (t + 2 < n) /* two rows ahead: the hardware's prefetch stops at each 4 KiB page */
            for (size_t c = 0; c < d; c += 16) __builtin_prefetch(x + (t + 2) * d + c);
        topk_raise_max(&r, sqrt(layernorm_apply_sumsq(out + t * d, x + t * d, g, beta, d, mean[t], rstd[t])));
    }
    return r;
}

/* Rows lo..hi of LN(E), with the largest row norm of that range. */
static void ln_rows(void *ctx, size_t lo, size_t hi, int part)
{
    ln_par *p = ctx;
    const size_t d = (size_t)p->m->cfg.n_embd;
    double mean[LN_CHUNK], rstd[LN_CHUNK], r = 0.0;
    for (size_t j = lo; j < hi; j += LN_CHUNK) {
        const size_t n = hi - j < LN_CHUNK ? hi - j : LN_CHUNK;
        const float *x = p->m->p.wte + j * d;
        layernorm_stats_rows(x, n, d, p->m->cfg.ln_eps, mean, rstd);
        topk_raise_max(&r, form_rows(p->out + j * d, x, n, d, p->g, p->beta, mean, rstd));
    }
    p->en_max[part] = r;
}

static int fill_ln(void *data, size_t bytes, void *ctx)
{
    const ln_ctx *x = ctx;
    const gpt2_model *m = x->m;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    if (bytes != rows_bytes(V, d, 1)) return TW_EINVAL;
    const gpt2_block *b = &m->p.h[x->block];
    ln_par p = {.m = m, .out = data}; /* ln 0: neither gamma nor beta */
    if (x->ln > 0) {
        p.g = x->ln == 2 ? b->ln_2_w : b->ln_1_w;
        p.beta = x->ln == 2 ? b->ln_2_b : b->ln_1_b;
    }
    int parts = nn_parts();
    nn_parallel_rows(V, parts, ln_rows, &p);
    double *trailer = (double *)((char *)data + rows_bytes(V, d, 0));
    trailer[0] = 0.0;
    for (int i = 0; i < parts && (size_t)i < V; i++) /* NaN wins: then nothing is certified */
        topk_raise_max(&trailer[0], p.en_max[i]);
    return TW_OK;
}

/* The key of LN(E) through ln_1 or ln_2 of block b, "ln<1|2>(E):<b>", or
 * of LN_0(E), "ln0(E)" (no block: one per model). */
static void ln_key(char *key, size_t n, int block, int ln)
{
    if (ln == 0)
        snprintf(key, n, "ln0(E)");
    else
        snprintf(key, n, "ln%d(E):%d", ln, block);
}

/* LN(E) through ln_1 or ln_2 of block b (ln 0: LN_0(E)), cached under ln_key. */
static int acquire_ln_embeddings(const gpt2_model *m, const ana_ctx *x, int block, int ln,
                                 blockcache_entry **e)
{
    if (ana_check_model(m) || !e) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    char key[32];
    ln_key(key, sizeof key, block, ln);
    ln_ctx fx = {m, block, ln};
    return blockcache_acquire_within(ana_cache(x), key, rows_bytes(V, d, 1), fill_ln, &fx, ana_cancel(x), e);
}

int ana_acquire_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    return acquire_ln_embeddings(m, x, block, 1, e);
}

int ana_acquire_ln0_embeddings(const gpt2_model *m, const ana_ctx *x, blockcache_entry **e)
{
    return acquire_ln_embeddings(m, x, 0, 0, e);
}

int ana_lookup_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    if (ana_check_model(m) || !e) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    char key[32];
    ln_key(key, sizeof key, block, 1);
    return blockcache_lookup(ana_cache(x), key,
                             rows_bytes((size_t)m->cfg.vocab_size, (size_t)m->cfg.n_embd, 1), e);
}

int ana_acquire_ln2_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    return acquire_ln_embeddings(m, x, block, 2, e);
}

float ana_ln1_max_norm(const gpt2_model *m, const blockcache_entry *e)
{
    return (float)ana_rows_trailer(e, (size_t)m->cfg.vocab_size, (size_t)m->cfg.n_embd)[0];
}

/* ---- LN_b(E) formed row by row ---- */

/* Entry "lnstats(E)": mean (V), rstd (V), then max_j |E_j| (1 double):
 * the norms are taken in the same pass, on rows still in the cache, so a
 * cold request reads E from memory once for both (ana_wte_max_norm). */
static size_t stats_doubles(size_t V) { return 2 * V + 1; }

/* Rows per chunk of the statistics pass: their stats, then their norms. */
#define STATS_CHUNK 64

typedef struct {
    const gpt2_model *m;
    double *mean, *rstd; /* (V) each */
    float part_max[NN_MAX_PARTS]; /* 0 for the parts nn_parallel_rows did not make */
} stats_par;

static void stats_rows(void *ctx, size_t lo, size_t hi, int part)
{
    stats_par *p = ctx;
    const size_t d = (size_t)p->m->cfg.n_embd;
    double r = 0.0;
    for (size_t j = lo; j < hi; j += STATS_CHUNK) {
        const size_t n = hi - j < STATS_CHUNK ? hi - j : STATS_CHUNK;
        const float *x = p->m->p.wte + j * d;
        layernorm_stats_rows(x, n, d, p->m->cfg.ln_eps, p->mean + j, p->rstd + j);
        topk_raise_max(&r, topk_max_row_norm(x, n, d));
    }
    p->part_max[part] = (float)r;
}

static int fill_stats(void *data, size_t bytes, void *ctx)
{
    const gpt2_model *m = ctx;
    const size_t V = (size_t)m->cfg.vocab_size;
    if (bytes != stats_doubles(V) * sizeof(double)) return TW_EINVAL;
    stats_par p = {.m = m, .mean = data, .rstd = (double *)data + V};
    nn_parallel_rows(V, nn_parts(), stats_rows, &p);
    double r = 0.0;
    for (int i = 0; i < NN_MAX_PARTS; i++) topk_raise_max(&r, p.part_max[i]);
    ((double *)data)[2 * V] = r;
    return TW_OK;
}

double ana_ln_rows_form(const ana_ln_rows *r, size_t j0, size_t n, float *out)
{
    const size_t d = r->f.d;
    if (r->f.rows) {
        memcpy(out, r->f.rows + j0 * d, n * d * sizeof(float));
        return topk_max_row_norm(out, n, d);
    }
    /* the norms as the rows are formed (one pass over them), by the rule
     * the cached matrix's figure was measured with */
    const double *mean = r->stats + j0, *rstd = r->stats + r->f.n + j0;
    return form_rows(out, r->m->p.wte + j0 * d, n, d, r->gamma, r->beta, mean, rstd);
}

static double ln_rows_former(const void *ctx, size_t j0, size_t n, float *out)
{
    return ana_ln_rows_form(ctx, j0, n, out);
}

int ana_ln1_rows_open(const gpt2_model *m, const ana_ctx *x, int block, ana_ln_rows *r)
{
    if (!r) return TW_EINVAL;
    memset(r, 0, sizeof *r);
    if (ana_check_model(m)) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const gpt2_block *b = &m->p.h[block];
    *r = (ana_ln_rows){.f = {.n = V, .d = d, .form = ln_rows_former, .ctx = r},
                       .m = m,
                       .gamma = b->ln_1_w,
                       .beta = b->ln_1_b,
                       .cache = ana_cache(x)};
    if (ana_lookup_ln1_embeddings(m, x, block, &r->e) == TW_OK) {
        r->f.rows = blockcache_data(r->e);
        r->f.max_row_norm = ana_ln1_max_norm(m, r->e);
        return TW_OK;
    }
    int rc = blockcache_acquire_within(r->cache, "lnstats(E)", stats_doubles(V) * sizeof(double), fill_stats,
                                       (void *)m, ana_cancel(x), &r->e);
    if (rc == TW_OK) r->stats = blockcache_data(r->e);
    return rc;
}

void ana_ln_rows_close(ana_ln_rows *r)
{
    if (!r) return;
    if (r->e) blockcache_release(r->cache, r->e);
    r->e = NULL;
}

/* max_j |E_j| shared among the cores (a cold request waited for one core
 * to read all of E): each part's maximum, the largest of them taken after
 * (the same float as one topk_max_row_norm over every row, NaN aside).
 * When E's statistics are cached their pass measured it already. */
typedef struct {
    const gpt2_model *m;
    float part_max[NN_MAX_PARTS]; /* as stats_par's */
} wte_norm_par;

static void wte_norm_rows(void *ctx, size_t lo, size_t hi, int part)
{
    wte_norm_par *p = ctx;
    const size_t d = (size_t)p->m->cfg.n_embd;
    p->part_max[part] = topk_max_row_norm(p->m->p.wte + lo * d, hi - lo, d);
}

typedef struct {
    const gpt2_model *m;
    blockcache *cache;
} wte_norm_ctx;

static int fill_wte_norm(void *data, size_t bytes, void *ctx)
{
    const wte_norm_ctx *c = ctx;
    const gpt2_model *m = c->m;
    if (bytes != sizeof(double)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size;
    blockcache_entry *st = NULL;
    if (blockcache_lookup(c->cache, "lnstats(E)", stats_doubles(V) * sizeof(double), &st) == TW_OK) {
        *(double *)data = ((const double *)blockcache_data(st))[2 * V];
        blockcache_release(c->cache, st);
        return TW_OK;
    }
    wte_norm_par p = {.m = m};
    nn_parallel_rows(V, nn_parts(), wte_norm_rows, &p);
    double r = 0.0;
    for (int i = 0; i < NN_MAX_PARTS; i++) topk_raise_max(&r, p.part_max[i]);
    *(double *)data = r;
    return TW_OK;
}

int ana_prepare(const gpt2_model *m, const ana_ctx *x)
{
    if (ana_check_model(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size;
    blockcache_entry *e = NULL;
    int rc = blockcache_acquire(ana_cache(x), "lnstats(E)", stats_doubles(V) * sizeof(double), fill_stats,
                                (void *)m, &e);
    if (rc) return rc;
    blockcache_release(ana_cache(x), e);
    float r;
    return ana_wte_max_norm(m, x, &r); /* from the statistics' trailer */
}

int ana_wte_max_norm(const gpt2_model *m, const ana_ctx *x, float *out)
{
    if (ana_check_model(m) || !out) return TW_EINVAL;
    blockcache_entry *e = NULL;
    wte_norm_ctx c = {m, ana_cache(x)};
    int rc = blockcache_acquire(ana_cache(x), "maxnorm(E)", sizeof(double), fill_wte_norm, &c, &e);
    if (rc) return rc;
    *out = (float)*(const double *)blockcache_data(e);
    blockcache_release(ana_cache(x), e);
    return TW_OK;
}
