/* Top-k against LN_b(E) screened through LN_0(E): see lnscreen.h. */
#include "core/ana/lnscreen.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/lnorm.h"
#include "core/nn/par.h"

#define UNIT      0x1p-24 /* float's unit roundoff */
#define QCHUNK    256     /* queries per screening pass: (QCHUNK, V) float scores */
#define GEMM_ROWS 4096u   /* rows of LN_0(E) per GEMM call (the cancel is checked between) */

/* The screening of one pass: queries Q (nq, d) of blocks[i], their screening
 * queries P = fl(q * gamma_b) (nq, d), shifts c = q . beta_b and error
 * bounds err (nq), and the float scores S (nq, V) = P LN_0(E)^T. */
typedef struct {
    const gpt2_model *m;
    const float *N; /* LN_0(E) (V, d) */
    double rn;      /* max_j |LN_0(E)_j| */
    const int *blocks;
    const float *Q;
    size_t nq, k, kc;
    float *P, *S;
    double *c, *err;
    topk_hit *top, *bottom; /* list i at + i * k */
    unsigned char *failed;  /* (nq): a list of query i was not certified */
    int rc[NN_MAX_PARTS];
} screen;

/* P_i, c_i and err_i of query i (docs/MATH.md §6.3): with A = |q * gamma|
 * max_j |n_j| and B = sum_t |q_t beta_t|, the screening score differs from
 * the exact one by at most the float GEMM's bound, 3.5 u A + 1.5 u B for
 * the roundings of P, LN_0(E) and LN_b(E), and a few double roundings. */
static void screen_query(screen *s, size_t i)
{
    const size_t d = (size_t)s->m->cfg.n_embd;
    const gpt2_block *b = &s->m->p.h[s->blocks[i]];
    const float *q = s->Q + i * d, *g = b->ln_1_w, *beta = b->ln_1_b;
    float *p = s->P + i * d;
    double qg2 = 0.0, B = 0.0, c = 0.0;
    for (size_t t = 0; t < d; t++) {
        double v = g ? (double)q[t] * (double)g[t] : (double)q[t]; /* exact in double */
        p[t] = (float)v;
        qg2 += v * v;
        if (beta) {
            double w = (double)q[t] * (double)beta[t];
            c += w;
            B += fabs(w);
        }
    }
    const double pn = sqrt(topk_dot(p, p, d)), A = sqrt(qg2) * s->rn * (1.0 + 4.0 * UNIT);
    double e = topk_screen_error(d, pn, s->rn) + 3.5 * UNIT * A + 1.5 * UNIT * B;
    e = e * (1.0 + 1e-6) + 8.0 * (double)(d + 4) * 0x1p-53 * (A + B);
    s->c[i] = c;
    s->err[i] = pn * s->rn < 1e36 ? e : INFINITY; /* NaN or overflow: never certified */
}

/* S = P LN_0(E)^T, GEMM_ROWS rows of LN_0(E) at a time. */
static int screen_gemm(const screen *s, const tw_cancel *cancel)
{
    const size_t V = (size_t)s->m->cfg.vocab_size, d = (size_t)s->m->cfg.n_embd;
    for (size_t j0 = 0; j0 < V; j0 += GEMM_ROWS) {
        int rc = tw_cancel_check(cancel);
        if (rc) return rc;
        size_t bj = V - j0 < GEMM_ROWS ? V - j0 : GEMM_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->nq, (int)bj, (int)d, 1.0f, s->P, (int)d,
                    s->N + j0 * d, (int)d, 0.0f, s->S + j0, (int)V);
    }
    return TW_OK;
}

/* Scratch of one thread's selections. */
typedef struct {
    double *sd, *es;    /* (V) shifted screening scores; (kc) exact scores */
    topk_hit *ct, *cb;  /* (kc) candidates of the top and bottom lists */
    int32_t *ids;       /* (kc) a list's candidates, ascending */
    float *row;         /* (d) one row of LN_b(E) */
    topk_hit *mem_hits; /* the allocation of ct and cb */
} select_scratch;

static int cmp_id(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The exact list (k) of query i from its kc screened candidates cand (best
 * first): every candidate's row of LN_b(E) formed as layernorm_rows forms
 * it and scored by topk_dot, the best k kept (ties: lower id first, as the
 * candidates are in ascending id order). Returns whether it is certified:
 * no row outside the candidates can reach the list (the worst candidate's
 * screening score, moved by the bound, stays on the far side of the k-th
 * exact score). */
static bool exact_list(const screen *s, size_t i, const topk_hit *cand, bool bottom, select_scratch *w,
                       topk_hit *out)
{
    const gpt2_model *m = s->m;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, kc = s->kc, k = s->k;
    const gpt2_block *b = &m->p.h[s->blocks[i]];
    for (size_t c = 0; c < kc; c++) w->ids[c] = cand[c].id;
    qsort(w->ids, kc, sizeof *w->ids, cmp_id);
    for (size_t c = 0; c < kc; c++) {
        layernorm_rows(w->row, m->p.wte + (size_t)w->ids[c] * d, b->ln_1_w, b->ln_1_b, 1, d, m->cfg.ln_eps);
        w->es[c] = topk_dot(s->Q + i * d, w->row, d);
    }
    if (topk_vec(w->es, kc, k, bottom ? NULL : out, bottom ? out : NULL) != TW_OK) return false;
    for (size_t t = 0; t < k; t++) out[t].id = w->ids[out[t].id];
    if (kc >= V) return true; /* every row was a candidate */
    const double worst = cand[kc - 1].score, e = s->err[i], kth = out[k - 1].score;
    return bottom ? worst - e > kth : worst + e < kth;
}

static int select_one(screen *s, size_t i, select_scratch *w)
{
    const size_t V = (size_t)s->m->cfg.vocab_size;
    const float *Si = s->S + i * V;
    for (size_t j = 0; j < V; j++) w->sd[j] = (double)Si[j] + s->c[i];
    int rc = topk_vec(w->sd, V, s->kc, w->ct, w->cb);
    if (rc) return rc;
    bool ok = exact_list(s, i, w->ct, false, w, s->top + i * s->k);
    ok = exact_list(s, i, w->cb, true, w, s->bottom + i * s->k) && ok;
    if (!ok) s->failed[i] = 1;
    return TW_OK;
}

static void select_part(void *ctx, size_t lo, size_t hi, int part)
{
    screen *s = ctx;
    const size_t V = (size_t)s->m->cfg.vocab_size, d = (size_t)s->m->cfg.n_embd, kc = s->kc;
    select_scratch w = {.sd = malloc((V + kc) * sizeof(double)),
                        .mem_hits = malloc(2 * kc * sizeof(topk_hit)),
                        .ids = malloc(kc * sizeof(int32_t)),
                        .row = malloc(d * sizeof(float))};
    int rc = w.sd && w.mem_hits && w.ids && w.row ? TW_OK : TW_ENOMEM;
    if (rc == TW_OK) {
        w.es = w.sd + V;
        w.ct = w.mem_hits;
        w.cb = w.mem_hits + kc;
    }
    for (size_t i = lo; i < hi && rc == TW_OK; i++) rc = select_one(s, i, &w);
    free(w.sd);
    free(w.mem_hits);
    free(w.ids);
    free(w.row);
    s->rc[part] = rc;
}

/* One pass of at most QCHUNK queries against LN_0(E) (entry e held). */
static int screen_pass(screen *s, const ana_ctx *x)
{
    for (size_t i = 0; i < s->nq; i++) screen_query(s, i);
    int rc = screen_gemm(s, ana_cancel(x));
    if (rc) return rc;
    int parts = nn_parts();
    if ((size_t)parts > s->nq) parts = (int)s->nq;
    memset(s->rc, 0, sizeof s->rc);
    nn_parallel_rows(s->nq, parts, select_part, s);
    for (int p = 0; p < parts; p++)
        if (s->rc[p]) return s->rc[p];
    return TW_OK;
}

/* Queries Q (nq, d) against the cached LN_b(E) entry en by topk_rows_opt:
 * the direct way when LN_b(E) is at hand. */
static int direct_lists(const gpt2_model *m, const ana_ctx *x, blockcache_entry *en, const float *Q,
                        size_t nq, size_t k, topk_hit *top, topk_hit *bottom)
{
    return topk_rows_opt(blockcache_data(en), (size_t)m->cfg.vocab_size, (size_t)m->cfg.n_embd, Q, nq, k, top,
                         bottom,
                         &(topk_opts){.max_row_norm = ana_ln1_max_norm(m, en), .cancel = ana_cancel(x)});
}

/* The failed queries of one pass, block by block, by topk_rows_formed
 * against that block's LN_b(E) (formed tile by tile, or the cached one). */
static int redo_failed(const gpt2_model *m, const ana_ctx *x, const int *blocks, const float *Q, size_t nq,
                       size_t k, unsigned char *failed, topk_hit *top, topk_hit *bottom)
{
    const size_t d = (size_t)m->cfg.n_embd;
    int rc = TW_OK;
    for (size_t i = 0; i < nq && rc == TW_OK; i++) {
        if (!failed[i]) continue;
        ana_ln_rows en;
        rc = ana_ln1_rows_open(m, x, blocks[i], &en);
        for (size_t j = i; j < nq && rc == TW_OK; j++)
            if (failed[j] && blocks[j] == blocks[i]) {
                rc = topk_rows_formed(&en.f, Q + j * d, 1, k, top + j * k, bottom + j * k,
                                      &(topk_opts){.cancel = ana_cancel(x)});
                failed[j] = 0;
            }
        ana_ln_rows_close(&en);
    }
    return rc;
}

static int check_blocks(const gpt2_model *m, const int *blocks, size_t nq)
{
    for (size_t i = 0; i < nq; i++)
        if (blocks[i] < 0 || blocks[i] >= m->cfg.n_layer) return TW_EBLOCK;
    return TW_OK;
}

/* All queries of one block whose LN_b(E) is cached: topk_rows_opt on it.
 * TW_OK, an error, or 1 when that is not the case. */
static int cached_block(const gpt2_model *m, const ana_ctx *x, const int *blocks, const float *Q, size_t nq,
                        size_t k, topk_hit *top, topk_hit *bottom)
{
    for (size_t i = 1; i < nq; i++)
        if (blocks[i] != blocks[0]) return 1;
    blockcache_entry *en = NULL;
    if (ana_lookup_ln1_embeddings(m, x, blocks[0], &en) != TW_OK) return 1;
    int rc = direct_lists(m, x, en, Q, nq, k, top, bottom);
    blockcache_release(ana_cache(x), en);
    return rc;
}

int ana_ln1_topk(const gpt2_model *m, const ana_ctx *x, const int *blocks, const float *Q, size_t nq,
                 size_t k, topk_hit *top, topk_hit *bottom)
{
    if (ana_check_model(m) || !blocks || !Q || !top || !bottom) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    if (k < 1 || k > V) return TW_EINVAL;
    int rc = check_blocks(m, blocks, nq);
    if (rc || nq == 0) return rc;
    if ((rc = cached_block(m, x, blocks, Q, nq, k, top, bottom)) != 1) return rc;
    rc = TW_OK;
    const size_t chunk = nq < QCHUNK ? nq : QCHUNK, kc = 2 * k + TOPK_MARGIN < V ? 2 * k + TOPK_MARGIN : V;
    screen s = {.m = m, .k = k, .kc = kc, .top = top, .bottom = bottom};
    s.P = malloc(chunk * d * sizeof(float));
    s.S = malloc(chunk * V * sizeof(float));
    s.c = malloc(2 * chunk * sizeof(double));
    unsigned char *failed = calloc(nq, 1);
    if (!s.P || !s.S || !s.c || !failed) rc = TW_ENOMEM;
    s.err = s.c ? s.c + chunk : NULL;
    blockcache_entry *e0 = NULL;
    if (rc == TW_OK) rc = ana_acquire_ln0_embeddings(m, x, &e0);
    if (rc == TW_OK) {
        s.N = blockcache_data(e0);
        s.rn = ana_rows_trailer(e0, V, d)[0];
    }
    for (size_t i0 = 0; i0 < nq && rc == TW_OK; i0 += chunk) {
        s.blocks = blocks + i0;
        s.Q = Q + i0 * d;
        s.nq = nq - i0 < chunk ? nq - i0 : chunk;
        s.top = top + i0 * k;
        s.bottom = bottom + i0 * k;
        s.failed = failed + i0;
        rc = screen_pass(&s, x);
    }
    blockcache_release(ana_cache(x), e0); /* before any LN_b(E) is acquired */
    if (rc == TW_OK) rc = redo_failed(m, x, blocks, Q, nq, k, failed, top, bottom);
    free(s.P);
    free(s.S);
    free(s.c);
    free(failed);
    return rc;
}
