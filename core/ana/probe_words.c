/* Word probes: see probe_words.h. */
#include "core/ana/probe_words.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/linalg.h"
#include "core/nn/lnorm.h"
#include "core/nn/par.h"

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
 * at K + h V dh, then a trailer of doubles: Rk (H) max_j |K_h[j]|, cn (d)
 * the column norms |Wk[:, t]|, and R_En = max_j |En_j| (measured on the
 * rows of En as they were formed for the GEMM). */

typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    int block;
    const ana_ln_rows *en; /* LN_b(E), formed tile by tile */
} keys_ctx;

static size_t keys_bytes(size_t V, size_t d, size_t H)
{
    return (V * d * sizeof(float) + 7) / 8 * 8 + (H + d + 1) * sizeof(double);
}

/* Scatters the nr rows of tmp (nr, d) into the head-major dst: row j's
 * head-h part goes to dst + (h V + r0 + j) dh; and raises mx[h] to the
 * largest |part| seen (a NaN stays: nothing is certified then). The rows
 * are shared among the BLAS threads (nn_parts): this pass is V d of memory
 * traffic and norms per entry, worth splitting. */
typedef struct {
    const float *tmp;
    float *dst;
    size_t V, d, H, r0;
    double *mx; /* (parts, H) */
} scatter_ctx;

static void raise_max(double *m, double v)
{
    if (isnan(*m)) return;
    if (!(v <= *m)) *m = v;
}

static void scatter_part(void *ctx, size_t lo, size_t hi, int part)
{
    const scatter_ctx *sc = ctx;
    const size_t d = sc->d, H = sc->H, dh = d / H;
    double *mx = sc->mx + (size_t)part * H;
    for (size_t j = lo; j < hi; j++)
        for (size_t h = 0; h < H; h++) {
            const float *src = sc->tmp + j * d + h * dh;
            memcpy(sc->dst + (h * sc->V + sc->r0 + j) * dh, src, dh * sizeof(float));
            raise_max(&mx[h], sqrt(topk_dot(src, src, dh)));
        }
}

static void scatter_heads(const float *tmp, size_t nr, float *dst, size_t V, size_t d, size_t H, size_t r0,
                          double *mx)
{
    int parts = nn_parts();
    if ((size_t)parts > nr) parts = nr ? (int)nr : 1;
    double *own = parts > 1 ? calloc((size_t)parts * H, sizeof(double)) : NULL;
    if (!own) parts = 1; /* in this thread, into mx itself */
    scatter_ctx sc = {.tmp = tmp, .dst = dst, .V = V, .d = d, .H = H, .r0 = r0, .mx = own ? own : mx};
    nn_parallel_rows(nr, parts, scatter_part, &sc);
    for (int p = 0; own && p < parts; p++)
        for (size_t h = 0; h < H; h++) raise_max(&mx[h], own[(size_t)p * H + h]);
    free(own);
}

/* Rows of K computed per GEMM, between cancellation checks. */
#define KEYS_ROWS 4096

static int fill_keys(void *data, size_t bytes, void *ctx)
{
    const keys_ctx *kx = ctx;
    const gpt2_model *m = kx->m;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head;
    if (bytes != keys_bytes(V, d, H)) return TW_EINVAL;
    float *tmp = malloc(2 * KEYS_ROWS * d * sizeof(float)); // (KEYS_ROWS, d) rows of En Wk, then of En
    if (!tmp) return TW_ENOMEM;
    float *En = tmp + KEYS_ROWS * d, *K = data;
    double *Rk = (double *)((char *)data + (V * d * sizeof(float) + 7) / 8 * 8), *cn = Rk + H, *R_en = cn + d;
    for (size_t h = 0; h < H; h++) Rk[h] = 0.0;
    *R_en = 0.0;
    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(m, kx->block, &bref, &blk);
    if (rc != TW_OK) {
        free(tmp);
        return rc;
    }
    const gpt2_mat wk = gpt2_mat_at(blk->attn_w, 0, d);
    for (size_t r0 = 0; r0 < V; r0 += KEYS_ROWS) {
        if ((rc = tw_cancel_check(ana_cancel(kx->x))) != TW_OK) break;
        size_t nr = V - r0 < KEYS_ROWS ? V - r0 : KEYS_ROWS;
        raise_max(R_en, ana_ln_rows_form(kx->en, r0, nr, En)); /* rows r0 .. r0 + nr of En */
        mat_gemm(tmp, En, wk, NULL, nr, d, d);
        scatter_heads(tmp, nr, K, V, d, H, r0, Rk);
    }
    free(tmp);
    if (rc) {
        gpt2_block_release(&bref);
        return rc;
    }
    /* column norms, walking the storage in its own order */
    for (size_t t = 0; t < d; t++) cn[t] = 0.0;
    for (size_t a = 0; a < d; a++)
        for (size_t b = 0; b < d; b++) {
            size_t i = wk.cs == 1 ? a : b, t = wk.cs == 1 ? b : a;
            double w = GPT2_AT(wk, i, t);
            cn[t] += w * w;
        }
    for (size_t t = 0; t < d; t++) cn[t] = sqrt(cn[t]);
    gpt2_block_release(&bref);
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
static int keys_factored(const gpt2_model *m, const ana_ctx *x, const ana_ln_rows *en,
                         const blockcache_entry *ke, const float *qa, const float *keyq, size_t W, size_t k,
                         topk_hit *keys, double *worst)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H;
    const float *K = blockcache_data(ke);
    const double *Rk = ana_rows_trailer(ke, V, d), *cn = Rk + H;
    const double R_en = cn[d];
    double *err = malloc(W * sizeof *err);
    float *row = worst ? malloc(d * sizeof(float)) : NULL; /* PROBE_CHECK: one row of En */
    if (!err || (worst && !row)) {
        free(err);
        free(row);
        return TW_ENOMEM;
    }
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
        const topk_screen sc = {.M = en->f.rows,
                                .Mf = en->f.rows ? NULL : &en->f,
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
        /* PROBE_CHECK: every row's screening score (a float dot product in
         * another order than the GEMM's: the bound holds for any) against
         * the exact score */
        for (size_t j = 0; worst && rc == TW_OK && j < V; j++) {
            ana_ln_rows_form(en, j, 1, row);
            for (size_t w = 0; w < W; w++) {
                const float *a = qa + w * d + h * dh, *kr = K + (h * V + j) * dh;
                float sf = 0.0f;
                for (size_t t = 0; t < dh; t++) sf += a[t] * kr[t];
                double ex = topk_dot(keyq + (w * H + h) * d, row, d);
                double ratio = fabs((double)sf - ex) / err[w];
                if (!(ratio <= *worst)) *worst = ratio;
            }
        }
    }
    free(err);
    free(row);
    return rc;
}

/* ---- Factored values ----
 * Entry "vals(E):<b>": G = E diag(gamma) Wo^T (V, d) with gamma = ln_f's
 * gain, stored head by head (G_h (V, dh) at G + h V dh: G_h[j]_t =
 * sum_i E_j,i gamma_i Wo[h dh + t, i]), then three (V) vectors: Bv_j =
 * fl(gamma o b_o) . E_j, gE_j = gamma . E_j, cE_j = beta . E_j; then a
 * trailer of doubles: RG (H) max_j |G_h[j]|, w (d) |gamma o Wo[t, :]| per
 * row t of Wo, and |gamma|, |beta|, |fl(gamma o b_o)|. docs/MATH.md §4.6. */

enum { VALS_TRAILER_EXTRA = 3 };

static size_t vals_floats(size_t V, size_t d) { return V * d + 3 * V; }

static size_t vals_bytes(size_t V, size_t d, size_t H)
{
    return (vals_floats(V, d) * sizeof(float) + 7) / 8 * 8 + (H + d + VALS_TRAILER_EXTRA) * sizeof(double);
}

typedef struct {
    const float *G, *Bv, *gE, *cE; /* as above */
    const double *RG, *w;
    double n_gamma, n_beta, n_gb;
} vals_view;

static void vals_view_of(const void *data, size_t V, size_t d, size_t H, vals_view *v)
{
    const float *f = data;
    v->G = f;
    v->Bv = f + V * d;
    v->gE = v->Bv + V;
    v->cE = v->gE + V;
    const double *t = (const double *)((const char *)data + (vals_floats(V, d) * sizeof(float) + 7) / 8 * 8);
    v->RG = t;
    v->w = t + H;
    v->n_gamma = t[H + d];
    v->n_beta = t[H + d + 1];
    v->n_gb = t[H + d + 2];
}

typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    int block;
} vals_ctx;

static int fill_vals(void *data, size_t bytes, void *ctx)
{
    const vals_ctx *vx = ctx;
    const gpt2_model *m = vx->m;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head;
    if (bytes != vals_bytes(V, d, H)) return TW_EINVAL;
    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(m, vx->block, &bref, &blk);
    if (rc) return rc;
    const float *E = m->p.wte, *g = m->p.ln_f_w, *beta = m->p.ln_f_b, *bo = blk->attn_proj_b;
    const gpt2_mat wo = blk->attn_proj_w;                /* (d, d): row t is head t / dh's */
    float *Wg = malloc(d * d * sizeof(float));           // (d, d) Wg[i][t] = gamma_i Wo[t][i]
    float *tmp = malloc(KEYS_ROWS * d * sizeof(float));  // (KEYS_ROWS, d) rows of E Wg
    float *vec = malloc(3 * d * sizeof(float));          // (d, 3) fl(gamma o b_o), gamma, beta
    float *out3 = malloc(KEYS_ROWS * 3 * sizeof(float)); // (KEYS_ROWS, 3)
    if (!Wg || !tmp || !vec || !out3) {
        free(Wg);
        free(tmp);
        free(vec);
        free(out3);
        gpt2_block_release(&bref);
        return TW_ENOMEM;
    }
    vals_view v;
    vals_view_of(data, V, d, H, &v);
    float *G = data, *Bv = G + V * d, *gE = Bv + V, *cE = gE + V;
    double *RG = (double *)v.RG, *w = (double *)v.w;
    for (size_t t = 0; t < d; t++) w[t] = 0.0;
    for (size_t a = 0; a < d; a++) /* walk Wo in its storage order */
        for (size_t b = 0; b < d; b++) {
            size_t t = wo.cs == 1 ? a : b, i = wo.cs == 1 ? b : a;
            double p = (double)g[i] * (double)GPT2_AT(wo, t, i);
            Wg[i * d + t] = (float)p;
            w[t] += p * p;
        }
    for (size_t t = 0; t < d; t++) w[t] = sqrt(w[t]);
    gpt2_block_release(&bref); /* Wo is in Wg now */
    double ng = 0.0, nb = 0.0, ngb = 0.0;
    for (size_t i = 0; i < d; i++) {
        vec[i * 3] = bo ? (float)((double)g[i] * (double)bo[i]) : 0.0f;
        vec[i * 3 + 1] = g[i];
        vec[i * 3 + 2] = beta ? beta[i] : 0.0f;
        ng += (double)g[i] * g[i];
        nb += beta ? (double)beta[i] * beta[i] : 0.0;
        ngb += (double)vec[i * 3] * vec[i * 3];
    }
    double *extra = (double *)v.w + d;
    extra[0] = sqrt(ng);
    extra[1] = sqrt(nb);
    extra[2] = sqrt(ngb);
    for (size_t h = 0; h < H; h++) RG[h] = 0.0;
    for (size_t r0 = 0; r0 < V; r0 += KEYS_ROWS) {
        if ((rc = tw_cancel_check(ana_cancel(vx->x))) != TW_OK) break;
        size_t nr = V - r0 < KEYS_ROWS ? V - r0 : KEYS_ROWS;
        // tmp (nr, d) = E[r0 ..] (nr, d) . Wg (d, d); out3 (nr, 3) = E[r0 ..] . vec (d, 3)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)d, (int)d, 1.0f, E + r0 * d,
                    (int)d, Wg, (int)d, 0.0f, tmp, (int)d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, 3, (int)d, 1.0f, E + r0 * d, (int)d,
                    vec, 3, 0.0f, out3, 3);
        scatter_heads(tmp, nr, G, V, d, H, r0, RG);
        for (size_t j = 0; j < nr; j++) {
            Bv[r0 + j] = out3[j * 3];
            gE[r0 + j] = out3[j * 3 + 1];
            cE[r0 + j] = out3[j * 3 + 2];
        }
    }
    free(Wg);
    free(tmp);
    free(vec);
    free(out3);
    return rc;
}

/* What the value screening of one word needs beyond the entry. */
typedef struct {
    const float *va;    /* (W, d) q Wv + bv per word */
    const float *ge;    /* (W, d) fl(gamma o E_id) */
    const double *mu;   /* (W, H+1) LN_f mean of each value query's input */
    const double *rstd; /* (W, H+1) its 1 / sqrt(var + eps) */
    const double *err;  /* (W, H+1) screening bounds */
    const float *valq;  /* (W, H+1, d) the exact queries, for PROBE_CHECK */
    double *worst;      /* PROBE_CHECK: the largest |screening - exact| / err seen; NULL otherwise */
} vals_queries;

/* The scratch of one thread of the value screening: b rows at a time. */
typedef struct {
    float *A;   // (W, b) ge . E_j, then + Bv_j
    float *Q;   // (W, b) a_h . G_h[j]
    float *Qs;  // (W, b) sum over heads
    float *row; // (b) scores of one query
} vals_scratch;

/* The screening of rows j0 .. j0 + bj - 1 (of V) into c; *worst as
 * vals_queries' (NULL: no check). */
static void vals_block(const gpt2_model *m, const vals_view *v, const vals_queries *q, size_t W, size_t j0,
                       size_t bj, const vals_scratch *t, topk_cands *c, double *worst)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H;
    const float *E = m->p.wte;
    const float *Bv = v->Bv + j0, *gE = v->gE + j0, *cE = v->cE + j0;
    float *A = t->A, *Q = t->Q, *Qs = t->Qs, *row = t->row;
    // A (W, bj) = ge (W, d) . E[j0 ..]^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)W, (int)bj, (int)d, 1.0f, q->ge, (int)d,
                E + j0 * d, (int)d, 0.0f, A, (int)bj);
    for (size_t w = 0; w < W; w++)
        for (size_t j = 0; j < bj; j++) A[w * bj + j] += Bv[j];
    memset(Qs, 0, W * bj * sizeof(float));
    for (size_t h = 0; h <= H; h++) {
        const float *Qh = Qs;
        if (h < H) {
            // Q (W, bj) = va_h (W, dh) . G_h[j0 ..]^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)W, (int)bj, (int)dh, 1.0f,
                        q->va + h * dh, (int)d, v->G + (h * V + j0) * dh, (int)dh, 0.0f, Q, (int)bj);
            for (size_t i = 0; i < W * bj; i++) Qs[i] += Q[i];
            Qh = Q;
        }
        for (size_t w = 0; w < W; w++) {
            const size_t qi = w * (H + 1) + h;
            const float mu = (float)q->mu[qi], rs = (float)q->rstd[qi];
            const float *Qw = Qh + w * bj, *Aw = A + w * bj;
            for (size_t j = 0; j < bj; j++) row[j] = rs * (Qw[j] + Aw[j] - mu * gE[j]) + cE[j];
            topk_cands_scan(c, qi, row, bj, j0);
            for (size_t j = 0; worst && j < bj; j++) {
                double ex = topk_dot(q->valq + qi * d, E + (j0 + j) * d, d);
                double ratio = fabs((double)row[j] - ex) / q->err[qi];
                if (!(ratio <= *worst)) *worst = ratio;
            }
        }
    }
}

/* The value screening of one thread: rows lo .. hi - 1 of V, b at a time,
 * into c; stop as topk's tiled pass uses it (raised on an error, ends the
 * pass when another thread raised it). */
typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    const vals_view *v;
    const vals_queries *q;
    size_t W, b;
    topk_cands *c[NN_MAX_PARTS];
    double worst[NN_MAX_PARTS];
    atomic_int stop;
    int rc[NN_MAX_PARTS];
} vals_pass;

static void vals_part(void *ctx, size_t lo, size_t hi, int part)
{
    vals_pass *t = ctx;
    const size_t W = t->W, b = t->b;
    vals_scratch sc = {malloc(W * b * sizeof(float)), malloc(W * b * sizeof(float)),
                       malloc(W * b * sizeof(float)), malloc(b * sizeof(float))};
    int rc = sc.A && sc.Q && sc.Qs && sc.row ? TW_OK : TW_ENOMEM;
    for (size_t j0 = lo; j0 < hi && rc == TW_OK && !atomic_load(&t->stop); j0 += b) {
        if ((rc = tw_cancel_check(ana_cancel(t->x))) != TW_OK) break;
        vals_block(t->m, t->v, t->q, W, j0, hi - j0 < b ? hi - j0 : b, &sc, t->c[part],
                   t->q->worst ? &t->worst[part] : NULL);
    }
    if (rc) atomic_store(&t->stop, 1);
    free(sc.A);
    free(sc.Q);
    free(sc.Qs);
    free(sc.row);
    t->rc[part] = rc;
}

/* Screens the W (H + 1) value queries with the factored scores
 *   rstd (a_h . G_h[j] + A_j + Bv_j - mu gE_j) + cE_j,
 * A_j = ge . E_j, a_h = va's head-h part (the layer: the sum over heads),
 * into the candidates c (query w (H+1) + h). The rows are shared among
 * the cores (nn_parts), each thread with its own candidates, GEMMs with
 * one BLAS thread (H + 2 small GEMMs a block: OpenBLAS's own threads
 * spent more in hand-offs than in them) and scans; the candidates are
 * merged afterwards, so the lists do not depend on the split. */
static int vals_screen(const gpt2_model *m, const ana_ctx *x, const vals_view *v, const vals_queries *q,
                       size_t W, topk_cands *c)
{
    const size_t V = (size_t)m->cfg.vocab_size, H = (size_t)m->cfg.n_head;
    int parts = nn_parts();
    if ((size_t)parts * 256 > V) parts = 1;
    vals_pass t = {.m = m, .x = x, .v = v, .q = q, .W = W, .c = {c}};
    t.b = topk_block_rows(3 * W, (V + (size_t)parts - 1) / (size_t)parts);
    int rc = TW_OK;
    for (int p = 1; p < parts && rc == TW_OK; p++)
        if (!(t.c[p] = topk_cands_new(W * (H + 1), V, topk_cands_k(c), 1, 0))) rc = TW_ENOMEM;
    if (rc == TW_OK) {
        if (parts > 1) nn_blas_single_begin(); /* one BLAS thread per part; the budget again after */
        nn_parallel_rows(V, parts, vals_part, &t);
        if (parts > 1) nn_blas_single_end();
        for (int p = 0; p < parts && rc == TW_OK; p++) rc = t.rc[p];
    }
    for (int p = 1; p < parts; p++) {
        if (rc == TW_OK) topk_cands_merge(c, t.c[p]);
        topk_cands_free(t.c[p]);
    }
    for (int p = 0; q->worst && p < parts; p++)
        if (!(t.worst[p] <= *q->worst)) *q->worst = t.worst[p];
    return rc;
}

/* The bound of the factored value screening for every query (docs/MATH.md
 * §4.6): |screening score - topk_dot(LN_f(x), E_j)| <= err for every row j.
 * vstat as in probe_words_opt: mu, rstd, |gamma o x|, |gamma o U|, |LN_f(x)|. */
static void vals_errors(const gpt2_model *m, const vals_view *v, double R_e, const float *va, const float *ge,
                        const double *vstat, size_t W, double *err)
{
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H, NQ = W * (H + 1);
    const double *mu = vstat, *rstd = mu + NQ, *gx = rstd + NQ, *gU = gx + NQ, *vn = gU + NQ;
    const double u = 0x1p-24, g_dh = topk_gamma(dh), g_dh1 = topk_gamma(dh + 1), g_d1 = topk_gamma(d + 1),
                 g_d2 = topk_gamma(d + 2), g_H = topk_gamma(H + 1);
    for (size_t w = 0; w < W; w++) {
        const float *a = va + w * d;
        double ge_n = sqrt(topk_dot(ge + w * d, ge + w * d, d));
        double sw_all = 0.0, LR = 0.0; /* sum_t |a_t| w_t over every row; sum_h |a_h| RG_h */
        for (size_t h = 0; h <= H; h++) {
            const size_t qi = w * (H + 1) + h;
            double sw = 0.0, QR; /* the head's sum_t |a_t| w_t; the bound on |a . G[j]| */
            if (h < H) {
                for (size_t t = h * dh; t < (h + 1) * dh; t++) sw += fabs((double)a[t]) * v->w[t];
                QR = sqrt(topk_dot(a + h * dh, a + h * dh, dh)) * v->RG[h];
                sw_all += sw;
                LR += QR;
            } else {
                sw = sw_all;
                QR = LR;
            }
            const double sd = rstd[qi], amu = fabs(mu[qi]);
            double t_delta =
                sd * R_e * (g_dh * sw + u * gx[qi] + (h == H ? u * gU[qi] + 0x1p-50 * (double)H * sw : 0.0));
            double t_q = sd * (g_dh1 * QR + g_d2 * R_e * sw + (h == H ? g_H * LR * (1.0 + g_dh1) : 0.0));
            double t_abc = sd * (1.001 * g_d2 * (ge_n + v->n_gb) * R_e + amu * g_d1 * v->n_gamma * R_e) +
                           g_d1 * v->n_beta * R_e;
            double M1 = (QR + (ge_n + v->n_gb + amu * v->n_gamma) * R_e) * (1.0 + g_d2);
            double t_ops = 8.0 * u * (sd * M1 + v->n_beta * R_e) * 1.01;
            double t_rho = (u + 0x1p-50) * vn[qi] * R_e * 1.001 +
                           0x1p-50 * (sd * (gx[qi] + amu * v->n_gamma) + v->n_beta) * R_e;
            double t_dot = (double)d * 0x1p-52 * vn[qi] * R_e;
            err[qi] = 2.0 * (t_delta + t_q + t_abc + t_ops + t_rho + t_dot);
        }
    }
}

int probe_words(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                size_t k, probe_words_result *out)
{
    return probe_words_opt(m, x, block, ids, n_words, k, PROBE_AUTO, out);
}

/* The checks of probe_words_opt's arguments (method as given). */
static int words_check(const gpt2_model *m, int block, const int32_t *ids, size_t W, size_t k, int method)
{
    if (ana_check_model(m) || (W && !ids)) return TW_EINVAL;
    if (method != PROBE_AUTO && method != PROBE_DIRECT && method != PROBE_FACTORED && method != PROBE_CHECK)
        return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (k < 1 || k > V) return TW_EK;
    for (size_t w = 0; w < W; w++)
        if (ids[w] < 0 || (size_t)ids[w] >= V) return TW_ETOKEN;
    if (W > (size_t)1 << 20) return TW_EINVAL; // keeps every size below in range
    return TW_OK;
}

/* The working state of one probe_words_opt call. */
typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    int block, method; /* PROBE_AUTO, PROBE_DIRECT or PROBE_FACTORED */
    const int32_t *ids;
    size_t W, k;
    double *worst; /* PROBE_CHECK's, or NULL */
    const gpt2_block *blk;
    float *qa;       // (W, d) q Wq / sqrt(dh)
    float *va;       // (W, d) q Wv + bv
    float *keyq;     // (W, H, d) q Wqk_h
    float *valq;     // (W, H+1, d) value queries
    float *qrow;     // (d) one row of En
    topk_hit *vhits; // (W, H+1, k)
    double *vstat;   // (6, W, H+1) see words_value_queries
    float R_e;       /* the largest |E_j| (for the value queries) */
} words_run;

/* The working arrays, in one allocation (vstat first: the doubles). */
static int words_run_alloc(words_run *p)
{
    const size_t W = p->W, d = (size_t)p->m->cfg.n_embd, H = (size_t)p->m->cfg.n_head;
    const size_t n_dbl = 6 * W * (H + 1), n_hits = W * (H + 1) * p->k, n_flt = (2 + H + H + 1) * W * d + d;
    char *b = malloc(n_dbl * sizeof(double) + n_hits * sizeof(topk_hit) + n_flt * sizeof(float));
    if (!b) return TW_ENOMEM;
    p->vstat = (double *)b;
    p->vhits = (topk_hit *)(p->vstat + n_dbl);
    p->qa = (float *)(p->vhits + n_hits);
    p->va = p->qa + W * d;
    p->keyq = p->va + W * d;
    p->valq = p->keyq + W * H * d;
    p->qrow = p->valq + W * (H + 1) * d;
    return TW_OK;
}

static void words_run_free(words_run *p) { free(p->vstat); }

/* Every word's query vectors, each computed on its own (matrix-vector
 * products, never a GEMM over the batch), so a word's answer does not
 * depend on which other words are probed with it (docs/MATH.md §2). */
static void words_queries(words_run *p, const ana_ln_rows *en)
{
    const gpt2_model *m = p->m;
    const gpt2_block *blk = p->blk;
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    float *q = p->qrow;
    for (size_t w = 0; w < p->W; w++) {
        ana_ln_rows_form(en, (size_t)p->ids[w], 1, q); /* En[id] */
        float *qaw = p->qa + w * d;
        // keys: qa (d) = q . Wq (d, d) / sqrt(dh); keyq[w, h] = qa_h (dh) . Wk_h^T (dh, d)
        mat_xm(qaw, q, blk->attn_w, d, d, (float)(1.0 / sqrt((double)dh)), 0.0f);
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices_of(m, blk, (int)h, &hs);
            mat_mx(p->keyq + (w * H + h) * d, hs.wk, qaw + h * dh, d, dh, 1.0f, 0.0f);
        }
        // values: va (d) = q . Wv (d, d) + bv; u_h = va_h (dh) . Wo_h (dh, d)
        float *vaw = p->va + w * d;
        if (blk->attn_b) memcpy(vaw, blk->attn_b + 2 * d, d * sizeof(float));
        mat_xm(vaw, q, gpt2_mat_at(blk->attn_w, 0, 2 * d), d, d, 1.0f, blk->attn_b ? 1.0f : 0.0f);
        float *rowsw = p->valq + w * (H + 1) * d; // (H+1, d)
        for (size_t h = 0; h < H; h++) {
            ana_head hs;
            ana_head_slices_of(m, blk, (int)h, &hs);
            mat_xm(rowsw + h * d, vaw + h * dh, hs.wo, dh, d, 1.0f, 0.0f);
        }
    }
}

/* Keys: the factored screening when K = En Wk is cached, or when computing
 * it (V d^2 multiply-adds) costs less than what it saves (W H (d - dh) per
 * row); otherwise every key query against En. */
static int words_keys(words_run *p, const ana_ln_rows *en, topk_hit *keys)
{
    const gpt2_model *m = p->m;
    blockcache *c = ana_cache(p->x);
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H, W = p->W;
    char kkey[32];
    snprintf(kkey, sizeof kkey, "keys(En):%d", p->block);
    size_t kbytes = keys_bytes(V, d, H);
    blockcache_entry *keys_e = NULL;
    int rc = TW_OK, factored = p->method == PROBE_FACTORED;
    if (p->method == PROBE_AUTO)
        factored = blockcache_lookup(c, kkey, kbytes, &keys_e) == TW_OK ||
                   (double)W * (double)H * (double)(d - dh) >= (double)d * (double)d;
    if (factored && !keys_e) {
        keys_ctx kx = {m, p->x, p->block, en};
        rc = blockcache_acquire_within(c, kkey, kbytes, fill_keys, &kx, ana_cancel(p->x), &keys_e);
    }
    if (rc == TW_OK && factored)
        rc = keys_factored(m, p->x, en, keys_e, p->qa, p->keyq, W, p->k, keys, p->worst);
    else if (rc == TW_OK)
        rc = topk_rows_formed(&en->f, p->keyq, W * H, p->k, keys, NULL, &(topk_opts){.cancel = ana_cancel(p->x)});
    blockcache_release(c, keys_e);
    return rc;
}

/* Norms, layer sum U, then E[id] + u + b_o in place, then LN_f. For the
 * factored screening (docs/MATH.md §4.6), per query (w, h), in vstat:
 * [0] LN_f mean and [1] 1/sqrt(var + eps) of its input x, [2] |gamma o x|,
 * [3] |gamma o U| (the layer's), [4] |LN_f(x)| after rounding; [5] is the
 * screening bound, set later. */
static void words_value_queries(words_run *p, probe_words_result *r)
{
    const gpt2_model *m = p->m;
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, W = p->W, NQ = W * (H + 1);
    double *mu = p->vstat, *rstd = mu + NQ, *gx = rstd + NQ, *gU = gx + NQ, *vn = gU + NQ;
    const float *bo = p->blk->attn_proj_b, *gam = m->p.ln_f_w, *E = m->p.wte;
    for (size_t w = 0; w < W; w++) {
        float *rowsw = p->valq + w * (H + 1) * d; // (H+1, d)
        float *Urow = rowsw + H * d;
        const float *e = E + (size_t)p->ids[w] * d;
        double uu = 0.0, gu = 0.0;
        for (size_t i = 0; i < d; i++) {
            double s = 0.0;
            for (size_t h = 0; h < H; h++) s += rowsw[h * d + i];
            Urow[i] = (float)s;
            uu += s * s;
            gu += ((double)gam[i] * Urow[i]) * ((double)gam[i] * Urow[i]);
        }
        r->layer_norm[w] = sqrt(uu);
        for (size_t h = 0; h <= H; h++) {
            float *u = rowsw + h * d;
            if (h < H) {
                double nn = 0.0;
                for (size_t i = 0; i < d; i++) nn += (double)u[i] * u[i];
                r->value_norm[w * H + h] = sqrt(nn);
            }
            double gg = 0.0;
            for (size_t i = 0; i < d; i++) {
                u[i] = (float)((double)e[i] + (double)u[i] + (bo ? (double)bo[i] : 0.0));
                gg += ((double)gam[i] * u[i]) * ((double)gam[i] * u[i]);
            }
            const size_t qi = w * (H + 1) + h;
            layernorm_stats(u, d, m->cfg.ln_eps, &mu[qi], &rstd[qi]);
            gx[qi] = sqrt(gg);
            gU[qi] = h == H ? sqrt(gu) : 0.0;
        }
    }
    layernorm_rows(p->valq, p->valq, m->p.ln_f_w, m->p.ln_f_b, NQ, d, m->cfg.ln_eps);
    for (size_t qi = 0; qi < NQ; qi++) vn[qi] = sqrt(topk_dot(p->valq + qi * d, p->valq + qi * d, d));
}

/* The factored value screening of every value query with the cached G
 * (vals_e), certified, into vhits. */
static int words_values_factored(words_run *p, const blockcache_entry *vals_e)
{
    const gpt2_model *m = p->m;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    const size_t W = p->W, NQ = W * (H + 1);
    const float *E = m->p.wte, *gam = m->p.ln_f_w;
    double *mu = p->vstat, *rstd = mu + NQ, *verr = rstd + 4 * NQ;
    float *ge = p->keyq; /* (W, d) fl(gamma o E_id): keyq is free now */
    for (size_t w = 0; w < W; w++)
        for (size_t i = 0; i < d; i++) ge[w * d + i] = (float)((double)gam[i] * E[(size_t)p->ids[w] * d + i]);
    vals_view v;
    vals_view_of(blockcache_data(vals_e), V, d, H, &v);
    vals_errors(m, &v, p->R_e, p->va, ge, p->vstat, W, verr);
    topk_cands *cand = topk_cands_new(NQ, V, p->k, 1, 0);
    if (!cand) return TW_ENOMEM;
    vals_queries vq = {p->va, ge, mu, rstd, verr, p->valq, p->worst};
    int rc = vals_screen(m, p->x, &v, &vq, W, cand);
    if (rc == TW_OK) rc = topk_cands_certify(cand, E, d, p->valq, d, verr, p->vhits, NULL, p->k);
    topk_cands_free(cand);
    return rc;
}

/* Values: the factored screening when G = E diag(gamma) Wo^T is cached or
 * worth computing (V d^2 multiply-adds against the W (H - 1) d per row it
 * saves), else every value query against E. */
static int words_values(words_run *p)
{
    const gpt2_model *m = p->m;
    blockcache *c = ana_cache(p->x);
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    const size_t W = p->W;
    char vkey[32];
    snprintf(vkey, sizeof vkey, "vals(E):%d", p->block);
    size_t vbytes = vals_bytes(V, d, H);
    blockcache_entry *vals_e = NULL;
    int rc = TW_OK, factored = p->method == PROBE_FACTORED;
    if (p->method == PROBE_AUTO)
        factored =
            blockcache_lookup(c, vkey, vbytes, &vals_e) == TW_OK || (double)W * (double)(H - 1) >= (double)d;
    if (factored && !vals_e) {
        vals_ctx vx = {m, p->x, p->block};
        rc = blockcache_acquire_within(c, vkey, vbytes, fill_vals, &vx, ana_cancel(p->x), &vals_e);
    }
    if (rc == TW_OK && factored)
        rc = words_values_factored(p, vals_e);
    else if (rc == TW_OK)
        rc = topk_rows_opt(m->p.wte, V, d, p->valq, W * (H + 1), p->k, p->vhits, NULL,
                           &(topk_opts){.max_row_norm = p->R_e, .cancel = ana_cancel(p->x)});
    blockcache_release(c, vals_e);
    return rc;
}

/* The queries, the keys and the values of p into r. */
static int words_compute(words_run *p, probe_words_result *r)
{
    const size_t H = (size_t)p->m->cfg.n_head, W = p->W, k = p->k;
    ana_ln_rows en = {0};
    int rc = words_run_alloc(p);
    if (rc == TW_OK) rc = ana_wte_max_norm(p->m, p->x, &p->R_e);
    if (rc == TW_OK) rc = ana_ln1_rows_open(p->m, p->x, p->block, &en);
    if (rc == TW_OK) {
        words_queries(p, &en);
        rc = words_keys(p, &en, r->keys);
    }
    ana_ln_rows_close(&en);
    if (rc) return rc;
    words_value_queries(p, r);
    rc = words_values(p);
    if (rc) return rc;
    for (size_t w = 0; w < W; w++) {
        memcpy(r->values + w * H * k, p->vhits + w * (H + 1) * k, H * k * sizeof(topk_hit));
        memcpy(r->layer_values + w * k, p->vhits + (w * (H + 1) + H) * k, k * sizeof(topk_hit));
    }
    return TW_OK;
}

int probe_words_opt(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                    size_t k, int method, probe_words_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = words_check(m, block, ids, n_words, k, method);
    if (rc) return rc;
    const size_t H = (size_t)m->cfg.n_head, W = n_words;
    probe_words_result r = {0};
    if ((rc = result_alloc(&r, W, H, k)) != TW_OK) return rc;
    r.block = block;
    r.n_words = W;
    r.n_head = H;
    r.k = k;
    if (W == 0) {
        *out = r;
        return TW_OK;
    }
    memcpy(r.ids, ids, W * sizeof *ids);
    words_run p = {.m = m,
                   .x = x,
                   .block = block,
                   .method = method == PROBE_CHECK ? PROBE_FACTORED : method,
                   .ids = ids,
                   .W = W,
                   .k = k,
                   .worst = method == PROBE_CHECK ? &r.screen_worst : NULL};
    gpt2_block_ref bref = {0};
    p.blk = gpt2_block_acquire(m, block, &bref);
    rc = p.blk ? words_compute(&p, &r) : TW_ENOMEM;
    gpt2_block_release(&bref);
    words_run_free(&p);
    if (rc) {
        probe_words_result_free(&r);
        return rc;
    }
    *out = r;
    return TW_OK;
}
