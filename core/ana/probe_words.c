/* Word probes: see probe_words.h. */
#include "core/ana/probe_words.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* ---- Tiled passes over the vocabulary ----
 * The fills of K and G and the screenings against them go over the V rows
 * in tiles of TILE_ROWS, claimed one at a time from a shared counter by
 * threads of ours (nn_parts of them; on a loaded machine a thread that
 * gets less of its core does fewer tiles), each calling BLAS with one
 * thread (nn_blas_single_begin): no hand-off to OpenBLAS's pool tile by
 * tile, none of its threads spinning beside ours, and what follows a
 * tile's GEMM (the scatter into the head-major layout, the bounds, the
 * screening) runs on the tile while it is still in the cache. Each thread
 * keeps its own scratch, bounds and candidates; they are merged after the
 * pass, so nothing depends on which thread took which tile. A tile's GEMM
 * packs all of its d x d B (Wk, Wg) again, so tiles are large: 2048 rows
 * took about 2 % less CPU than 512 on the xl shape (the same on 124M),
 * with the screening still in blocks of at most SCREEN_ROWS rows (its
 * GEMMs against a taller block of K packed more). */
#ifndef TILE_ROWS
#define TILE_ROWS 2048
#endif
/* Rows per block of screening scores within a tile, at most (fewer for
 * many words: the scores stay within topk_block_rows' 8 MiB). */
#define SCREEN_ROWS 512

typedef int (*tile_fn)(void *ctx, int part, size_t r0, size_t nr);

/* Has the kernel map the whole pages of [p, p + bytes) at once
 * (MADV_POPULATE_WRITE, Linux 5.14; elsewhere nothing, and the pages come
 * at their first write as before): a fresh cache entry's pages cost about
 * half as much so as one fault at a time (321 MB: 0.09-0.10 s against
 * 0.17-0.19 s here), and the faults of two threads do not overlap anyway.
 * A tile asks for the pages it is about to write. */
static void populate(void *p, size_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    const long page = sysconf(_SC_PAGESIZE); /* from the auxiliary vector: no system call */
    if (page <= 0) return;
    const uintptr_t pg = (uintptr_t)page, a = ((uintptr_t)p + pg - 1) / pg * pg,
                    b = ((uintptr_t)p + bytes) / pg * pg;
    if (b > a) (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* Rows per tile of a pass over n rows on `parts` threads: TILE_ROWS, or
 * fewer (down to 256, a multiple of 16) so that each thread gets two
 * tiles or more of a small vocabulary. */
static size_t tile_rows(size_t n, int parts)
{
    size_t b = (n / (2 * (size_t)parts) + 15) / 16 * 16;
    if (b < 256) b = 256;
    return b < TILE_ROWS ? b : TILE_ROWS; /* never more than the scratch holds */
}

/* The pass over n rows on `parts` threads (1 .. NN_MAX_PARTS): TW_OK, or
 * the error of a tile. */
static int tile_pass_run(size_t n, int parts, const tw_cancel *cancel, tile_fn tile, void *ctx)
{
    /* one BLAS thread per part, the budget again after; one part keeps the
     * budget (OpenBLAS's count is the process's: others would be held to 1) */
    if (parts > 1) nn_blas_single_begin();
    int rc = nn_parallel_tiles(n, tile_rows(n, parts), parts, cancel, tile, ctx);
    if (parts > 1) nn_blas_single_end();
    return rc;
}

/* The threads of a pass: the budget, at most NN_MAX_PARTS, and at least
 * two tiles each to be worth it. */
static int pass_parts(size_t V)
{
    int parts = nn_parts();
    while (parts > 1 && (size_t)parts * 2 * 256 > V) parts--;
    return parts;
}

/* Per-thread candidates of a screening: c[0] the caller's, the others new
 * (NULL on failure). */
static int cands_split(topk_cands **c, int parts, size_t nq, size_t V, size_t k)
{
    for (int p = 1; p < parts; p++)
        if (!(c[p] = topk_cands_new(nq, V, k, 1, 0))) return TW_ENOMEM;
    return TW_OK;
}

/* Merges c[1 ..] into c[0] (when ok) and frees them. */
static void cands_join(topk_cands **c, int parts, int ok)
{
    for (int p = 1; p < parts; p++) {
        if (ok && c[p]) topk_cands_merge(c[0], c[p]);
        topk_cands_free(c[p]);
        c[p] = NULL;
    }
}

/* The lists failed[i] of a certification that could not be certified,
 * computed in one plain pass over the rows of f (topk_rows_formed: a GEMM
 * of all of them against every row, certified by the float GEMM's own
 * bound): the exact lists, as an exact scan of each would give, at a
 * fraction of its cost. Query i at Q + i * ldq (d floats), list i to top
 * + i * k. */
static int failed_lists(const topk_former *f, const float *Q, size_t ldq, size_t nq, size_t k,
                        const unsigned char *failed, topk_hit *top, const tw_cancel *cancel)
{
    const size_t d = f->d;
    size_t nf = 0;
    for (size_t i = 0; i < nq; i++) nf += failed[i] != 0;
    if (!nf) return TW_OK;
    float *Qf = malloc(nf * d * sizeof(float));
    topk_hit *hf = malloc(nf * k * sizeof *hf);
    int rc = Qf && hf ? TW_OK : TW_ENOMEM;
    for (size_t i = 0, j = 0; rc == TW_OK && i < nq; i++)
        if (failed[i]) memcpy(Qf + j++ * d, Q + i * ldq, d * sizeof(float));
    if (rc == TW_OK) rc = topk_rows_formed(f, Qf, nf, k, hf, NULL, &(topk_opts){.cancel = cancel});
    for (size_t i = 0, j = 0; rc == TW_OK && i < nq; i++)
        if (failed[i]) memcpy(top + i * k, hf + j++ * k, k * sizeof *hf);
    free(Qf);
    free(hf);
    return rc;
}

/* ---- Factored keys ----
 * Entry "keys(En):<b>": K = En Wk (V, d), stored head by head: K_h (V, dh)
 * at K + h V dh, then a trailer of doubles: Rk (H) max_j |K_h[j]|, cn (d)
 * the column norms |Wk[:, t]|, and R_En = max_j |En_j| (measured on the
 * rows of En as they were formed for the GEMM). */

static size_t keys_bytes(size_t V, size_t d, size_t H)
{
    return (V * d * sizeof(float) + 7) / 8 * 8 + (H + d + 1) * sizeof(double);
}

/* A pass over K: its fill (K NULL: En formed tile by tile, K = En Wk
 * scattered into the entry), its screening (qa set: the W H key lists, w H
 * + h, screened with qa_h against K_h, whether in the fill or over the
 * cached K), or both. */
typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    int block;
    const ana_ln_rows *en; /* LN_b(E), formed tile by tile */
    int parts;
    size_t V, d, H, dh;
    /* the screening, or qa NULL: none */
    const float *qa; /* (W, d) q Wq / sqrt(dh) */
    size_t W, sb;    /* words; rows per block of screening scores */
    topk_cands *c[NN_MAX_PARTS];
    float *S[NN_MAX_PARTS]; /* (W, sb) scores */
    int screened;           /* the fill screened every row */
    /* the fill */
    float *wk;       /* (d, d) Wk, row-major and contiguous (the GEMM's B: a strided one is slower) */
    float *K;        /* the entry's (H, V, dh) */
    const float *Kc; /* the cached entry's, for a screening pass */
    float *buf[NN_MAX_PARTS]; /* (TILE_ROWS, d) rows of En, then (TILE_ROWS, d) of En Wk */
    double *mx;               /* (parts, H + 1): max |K_h[j]| per head, then max |En_j| */
} keys_pass;

/* Scores of rows r0 .. r0 + nr - 1 against every head's screening
 * queries into the part's candidates; head h's row j at R + h hs + j ldr.
 * The request's cancel is checked at each block (a tile of many words is
 * long work). */
static int keys_screen_rows(keys_pass *kp, int part, const float *R, size_t ldr, size_t hs, size_t r0,
                            size_t nr)
{
    const size_t W = kp->W, H = kp->H, dh = kp->dh, d = kp->d;
    float *S = kp->S[part];
    for (size_t j = 0; j < nr; j += kp->sb) {
        int rc = tw_cancel_check(ana_cancel(kp->x));
        if (rc != TW_OK) return rc;
        const size_t bj = nr - j < kp->sb ? nr - j : kp->sb;
        for (size_t h = 0; h < H; h++) {
            // S (W, bj) = qa_h (W, dh) . K_h[r0 + j ..]^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)W, (int)bj, (int)dh, 1.0f,
                        kp->qa + h * dh, (int)d, R + h * hs + j * ldr, (int)ldr, 0.0f, S, (int)bj);
            for (size_t w = 0; w < W; w++) topk_cands_scan(kp->c[part], w * H + h, S + w * bj, bj, r0 + j);
        }
    }
    return TW_OK;
}

static int keys_fill_tile(void *ctx, int part, size_t r0, size_t nr)
{
    keys_pass *kp = ctx;
    const size_t V = kp->V, d = kp->d, H = kp->H, dh = kp->dh;
    float *En = kp->buf[part], *T = En + TILE_ROWS * d;
    double *mx = kp->mx + (size_t)part * (H + 1);
    topk_raise_max(&mx[H], ana_ln_rows_form(kp->en, r0, nr, En)); /* rows r0 .. r0 + nr of En */
    // T (nr, d) = En[r0 ..] (nr, d) . Wk (d, d)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)d, (int)d, 1.0f, En, (int)d, kp->wk,
                (int)d, 0.0f, T, (int)d);
    for (size_t h = 0; h < H; h++) populate(kp->K + (h * V + r0) * dh, nr * dh * sizeof(float));
    for (size_t j = 0; j < nr; j++)
        for (size_t h = 0; h < H; h++) {
            const float *src = T + j * d + h * dh;
            memcpy(kp->K + (h * V + r0 + j) * dh, src, dh * sizeof(float));
            topk_raise_max(&mx[h], sqrt(topk_dot(src, src, dh)));
        }
    return kp->qa ? keys_screen_rows(kp, part, T, d, dh, r0, nr) : TW_OK;
}

static int keys_screen_tile(void *ctx, int part, size_t r0, size_t nr)
{
    keys_pass *kp = ctx;
    return keys_screen_rows(kp, part, kp->Kc + r0 * kp->dh, kp->dh, kp->V * kp->dh, r0, nr);
}

static int fill_keys(void *data, size_t bytes, void *ctx)
{
    keys_pass *kp = ctx;
    const size_t V = kp->V, d = kp->d, H = kp->H;
    if (bytes != keys_bytes(V, d, H)) return TW_EINVAL;
    double *Rk = (double *)((char *)data + (V * d * sizeof(float) + 7) / 8 * 8), *cn = Rk + H, *R_en = cn + d;
    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(kp->m, kp->block, &bref, &blk);
    if (rc != TW_OK) return rc;
    const gpt2_mat wk = gpt2_mat_at(blk->attn_w, 0, d);
    kp->K = data;
    kp->wk = malloc(d * d * sizeof(float));
    kp->mx = calloc((size_t)kp->parts * (H + 1), sizeof(double));
    rc = kp->mx && kp->wk ? TW_OK : TW_ENOMEM;
    /* Wk copied, and its column norms, walking the storage in its own order */
    for (size_t t = 0; rc == TW_OK && t < d; t++) cn[t] = 0.0;
    for (size_t a = 0; rc == TW_OK && a < d; a++)
        for (size_t b = 0; b < d; b++) {
            size_t i = wk.cs == 1 ? a : b, t = wk.cs == 1 ? b : a;
            float w = GPT2_AT(wk, i, t);
            kp->wk[i * d + t] = w;
            cn[t] += (double)w * w;
        }
    gpt2_block_release(&bref); /* Wk is in kp->wk now */
    for (int p = 0; p < kp->parts && rc == TW_OK; p++)
        if (!(kp->buf[p] = malloc(2 * TILE_ROWS * d * sizeof(float)))) rc = TW_ENOMEM;
    if (rc == TW_OK) rc = tile_pass_run(V, kp->parts, ana_cancel(kp->x), keys_fill_tile, kp);
    for (int p = 0; p < kp->parts; p++) {
        free(kp->buf[p]);
        kp->buf[p] = NULL;
    }
    if (rc == TW_OK) {
        for (size_t h = 0; h < H; h++) Rk[h] = 0.0;
        *R_en = 0.0;
        for (int p = 0; p < kp->parts; p++) {
            for (size_t h = 0; h < H; h++) topk_raise_max(&Rk[h], kp->mx[(size_t)p * (H + 1) + h]);
            topk_raise_max(R_en, kp->mx[(size_t)p * (H + 1) + H]);
        }
        for (size_t t = 0; t < d; t++) cn[t] = sqrt(cn[t]);
        kp->screened = kp->qa != NULL;
    }
    free(kp->mx);
    free(kp->wk);
    kp->mx = NULL;
    kp->wk = NULL;
    return rc;
}

/* The bound of the factored key screening of every list w H + h into err
 * (W H): on |fl(qa_h . fl(K_h[j])) - keyq . En_j|, with keyq = fl(Wk_h
 * qa_h) and K_h[j] = fl(Wk_h^T En_j) (docs/MATH.md §4.5):
 *   (gamma_dh + gamma_{d+1}) R_En sum_t |qa_t| |Wk[:, t]|   (keyq and K)
 *   + gamma_{dh+1} |qa_h| R_h                               (the screening dot)
 *   + d 2^-52 |keyq| R_En                                   (topk_dot in double)
 * doubled, as topk_rows widens its own. */
static void keys_errors(const keys_pass *kp, const double *Rk, const float *keyq, double *err)
{
    const size_t d = kp->d, H = kp->H, dh = kp->dh;
    const double *cn = Rk + H, R_en = cn[d];
    const double g_a = topk_gamma(dh) + topk_gamma(d + 1), g_s = topk_gamma(dh + 1);
    for (size_t w = 0; w < kp->W; w++)
        for (size_t h = 0; h < H; h++) {
            const float *a = kp->qa + w * d + h * dh, *kq = keyq + (w * H + h) * d;
            double s = 0.0;
            for (size_t t = 0; t < dh; t++) s += fabs((double)a[t]) * cn[h * dh + t];
            double e = g_a * R_en * s + g_s * sqrt(topk_dot(a, a, dh)) * Rk[h] +
                       (double)d * 0x1p-52 * sqrt(topk_dot(kq, kq, d)) * R_en;
            err[w * H + h] = 2.0 * e;
        }
}

/* PROBE_CHECK: every row's screening score (a float dot product in another
 * order than the GEMM's: the bound holds for any) against the exact score,
 * the largest ratio of their difference to the bound into *worst. */
static int keys_check(const keys_pass *kp, const float *K, const float *keyq, const double *err,
                      double *worst)
{
    const size_t V = kp->V, d = kp->d, H = kp->H, dh = kp->dh;
    float *row = malloc(d * sizeof(float)); /* one row of En */
    if (!row) return TW_ENOMEM;
    for (size_t j = 0; j < V; j++) {
        ana_ln_rows_form(kp->en, j, 1, row);
        for (size_t h = 0; h < H; h++)
            for (size_t w = 0; w < kp->W; w++) {
                const float *a = kp->qa + w * d + h * dh, *kr = K + (h * V + j) * dh;
                float sf = 0.0f;
                for (size_t t = 0; t < dh; t++) sf += a[t] * kr[t];
                double ex = topk_dot(keyq + (w * H + h) * d, row, d);
                double ratio = fabs((double)sf - ex) / err[w * H + h];
                if (!(ratio <= *worst)) *worst = ratio;
            }
    }
    free(row);
    return TW_OK;
}

/* The keys of block b by the factored screening: K acquired (filled, and
 * the lists screened in the same pass, when it is not cached: ke NULL),
 * else one pass over the cached K screening every head; then one
 * certification of the W H lists against the exact scores keyq . En_j,
 * the lists it cannot certify computed together in one plain pass. */
static int keys_factored(keys_pass *kp, const char *kkey, blockcache_entry *ke, const float *keyq, size_t k,
                         topk_hit *keys, double *worst)
{
    const size_t V = kp->V, d = kp->d, H = kp->H, W = kp->W, NQ = W * H;
    blockcache *cache = ana_cache(kp->x);
    const tw_cancel *cancel = ana_cancel(kp->x);
    topk_cands *c0 = topk_cands_new(NQ, V, k, 1, 0);
    double *err = malloc(NQ * sizeof *err);
    unsigned char *failed = malloc(NQ);
    kp->sb = topk_block_rows(W, SCREEN_ROWS);
    kp->c[0] = c0;
    int rc = c0 && err && failed ? cands_split(kp->c, kp->parts, NQ, V, k) : TW_ENOMEM;
    for (int p = 0; p < kp->parts && rc == TW_OK; p++)
        if (!(kp->S[p] = malloc(W * kp->sb * sizeof(float)))) rc = TW_ENOMEM;
    if (rc == TW_OK && !ke)
        rc = blockcache_acquire_within(cache, kkey, keys_bytes(V, d, H), fill_keys, kp, cancel, &ke);
    if (rc == TW_OK && !kp->screened) { /* cached, or filled by another request */
        kp->Kc = blockcache_data(ke);
        rc = tile_pass_run(V, kp->parts, cancel, keys_screen_tile, kp);
    }
    cands_join(kp->c, kp->parts, rc == TW_OK);
    for (int p = 0; p < kp->parts; p++) free(kp->S[p]);
    if (rc == TW_OK) {
        const double *Rk = ana_rows_trailer(ke, V, d);
        keys_errors(kp, Rk, keyq, err);
        rc = topk_cands_certify_rows(c0, &kp->en->f, keyq, d, err, keys, NULL, k, failed);
    }
    if (rc == TW_OK) rc = failed_lists(&kp->en->f, keyq, d, NQ, k, failed, keys, cancel);
    if (rc == TW_OK && worst) rc = keys_check(kp, blockcache_data(ke), keyq, err, worst);
    blockcache_release(cache, ke);
    topk_cands_free(c0);
    free(err);
    free(failed);
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

/* What the value screening of one word needs beyond the entry. */
typedef struct {
    const float *va;    /* (W, d) q Wv + bv per word */
    const float *ge;    /* (W, d) fl(gamma o E_id) */
    const double *mu;   /* (W, H+1) LN_f mean of each value query's input */
    const double *rstd; /* (W, H+1) its 1 / sqrt(var + eps) */
    const double *err;  /* (W, H+1) screening bounds (PROBE_CHECK) */
    const float *valq;  /* (W, H+1, d) the exact queries, for PROBE_CHECK */
    double *worst;      /* PROBE_CHECK: the largest |screening - exact| / err seen; NULL otherwise */
} vals_queries;

/* The scratch of one thread of the value screening: sb rows at a time. */
typedef struct {
    float *A;   // (W, sb) ge . E_j, then + Bv_j
    float *Q;   // (W, sb) a_h . G_h[j]
    float *Qs;  // (W, sb) sum over heads
    float *row; // (sb) scores of one query
} vals_scratch;

/* A pass over G: its fill (G = E Wg scattered into the entry, with Bv, gE,
 * cE and the bounds RG), its screening of the W (H + 1) value queries
 * (q set), or both, as keys_pass. */
typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    int block;
    int parts;
    size_t V, d, H, dh;
    /* the screening, or q NULL: none */
    const vals_queries *q;
    size_t W, sb; /* words; rows per block of screening scores */
    topk_cands *c[NN_MAX_PARTS];
    vals_scratch sc[NN_MAX_PARTS];
    double worst[NN_MAX_PARTS]; /* PROBE_CHECK's per part */
    int screened;               /* the fill screened every row */
    vals_view v;                /* the entry (being filled, or cached) */
    /* the fill */
    float *Wg;                /* (d, d) Wg[i][t] = gamma_i Wo[t][i] */
    float *vec;               /* (d, 3) fl(gamma o b_o), gamma, beta */
    float *buf[NN_MAX_PARTS]; /* (TILE_ROWS, d) rows of E Wg, then (TILE_ROWS, 3) of E vec */
    double *mx;               /* (parts, H): max |G_h[j]| per head */
} vals_pass;

/* The screening of rows j0 .. j0 + bj - 1 (of V) into c, head h's rows of
 * G at G0 + h hs + j ldg; *worst as vals_queries' (NULL: no check). */
static void vals_block(const vals_pass *vp, const float *G0, size_t ldg, size_t hs, size_t j0, size_t bj,
                       const vals_scratch *t, topk_cands *c, double *worst)
{
    const size_t d = vp->d, H = vp->H, dh = vp->dh, W = vp->W;
    const vals_queries *q = vp->q;
    const float *E = vp->m->p.wte;
    const float *Bv = vp->v.Bv + j0, *gE = vp->v.gE + j0, *cE = vp->v.cE + j0;
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
                        q->va + h * dh, (int)d, G0 + h * hs, (int)ldg, 0.0f, Q, (int)bj);
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

/* The screening of rows r0 .. r0 + nr - 1, sb at a time, head h's rows
 * of G at G0 + h hs + j ldg. */
/* The value screening of rows r0 .. r0 + nr - 1, block by block, the
 * request's cancel checked at each (as in keys_screen_rows). */
static int vals_screen_rows(vals_pass *vp, int part, const float *G0, size_t ldg, size_t hs, size_t r0,
                            size_t nr)
{
    double *worst = vp->q->worst ? &vp->worst[part] : NULL;
    for (size_t j = 0; j < nr; j += vp->sb) {
        int rc = tw_cancel_check(ana_cancel(vp->x));
        if (rc != TW_OK) return rc;
        vals_block(vp, G0 + j * ldg, ldg, hs, r0 + j, nr - j < vp->sb ? nr - j : vp->sb, &vp->sc[part],
                   vp->c[part], worst);
    }
    return TW_OK;
}

static int vals_fill_tile(void *ctx, int part, size_t r0, size_t nr)
{
    vals_pass *vp = ctx;
    const size_t V = vp->V, d = vp->d, H = vp->H, dh = vp->dh;
    const float *E = vp->m->p.wte + r0 * d;
    float *T = vp->buf[part], *out3 = T + TILE_ROWS * d;
    float *G = (float *)vp->v.G, *Bv = (float *)vp->v.Bv, *gE = (float *)vp->v.gE, *cE = (float *)vp->v.cE;
    double *mx = vp->mx + (size_t)part * H;
    // T (nr, d) = E[r0 ..] (nr, d) . Wg (d, d); out3 (nr, 3) = E[r0 ..] . vec (d, 3)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)d, (int)d, 1.0f, E, (int)d, vp->Wg,
                (int)d, 0.0f, T, (int)d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, 3, (int)d, 1.0f, E, (int)d, vp->vec, 3,
                0.0f, out3, 3);
    for (size_t h = 0; h < H; h++) populate(G + (h * V + r0) * dh, nr * dh * sizeof(float));
    for (size_t j = 0; j < nr; j++) {
        for (size_t h = 0; h < H; h++) {
            const float *src = T + j * d + h * dh;
            memcpy(G + (h * V + r0 + j) * dh, src, dh * sizeof(float));
            topk_raise_max(&mx[h], sqrt(topk_dot(src, src, dh)));
        }
        Bv[r0 + j] = out3[j * 3];
        gE[r0 + j] = out3[j * 3 + 1];
        cE[r0 + j] = out3[j * 3 + 2];
    }
    return vp->q ? vals_screen_rows(vp, part, T, d, dh, r0, nr) : TW_OK;
}

static int vals_screen_tile(void *ctx, int part, size_t r0, size_t nr)
{
    vals_pass *vp = ctx;
    return vals_screen_rows(vp, part, vp->v.G + r0 * vp->dh, vp->dh, vp->V * vp->dh, r0, nr);
}

/* Wg, the bounds w (d) and vec with their norms (the trailer's extra
 * three) from block b's Wo and ln_f. */
static int vals_weights(vals_pass *vp, double *w, double *extra)
{
    const gpt2_model *m = vp->m;
    const size_t d = vp->d;
    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(m, vp->block, &bref, &blk);
    if (rc) return rc;
    const float *g = m->p.ln_f_w, *beta = m->p.ln_f_b, *bo = blk->attn_proj_b;
    const gpt2_mat wo = blk->attn_proj_w; /* (d, d): row t is head t / dh's */
    float *Wg = vp->Wg, *vec = vp->vec;
    for (size_t t = 0; t < d; t++) w[t] = 0.0;
    for (size_t a = 0; a < d; a++) /* walk Wo in its storage order */
        for (size_t b = 0; b < d; b++) {
            size_t t = wo.cs == 1 ? a : b, i = wo.cs == 1 ? b : a;
            double p = (double)g[i] * (double)GPT2_AT(wo, t, i);
            Wg[i * d + t] = (float)p;
            w[t] += p * p;
        }
    for (size_t t = 0; t < d; t++) w[t] = sqrt(w[t]);
    double ng = 0.0, nb = 0.0, ngb = 0.0;
    for (size_t i = 0; i < d; i++) {
        vec[i * 3] = bo ? (float)((double)g[i] * (double)bo[i]) : 0.0f;
        vec[i * 3 + 1] = g[i];
        vec[i * 3 + 2] = beta ? beta[i] : 0.0f;
        ng += (double)g[i] * g[i];
        nb += beta ? (double)beta[i] * beta[i] : 0.0;
        ngb += (double)vec[i * 3] * vec[i * 3];
    }
    gpt2_block_release(&bref); /* Wo is in Wg now */
    extra[0] = sqrt(ng);
    extra[1] = sqrt(nb);
    extra[2] = sqrt(ngb);
    return TW_OK;
}

static int fill_vals(void *data, size_t bytes, void *ctx)
{
    vals_pass *vp = ctx;
    const size_t V = vp->V, d = vp->d, H = vp->H;
    if (bytes != vals_bytes(V, d, H)) return TW_EINVAL;
    vals_view_of(data, V, d, H, &vp->v);
    double *RG = (double *)vp->v.RG, *w = (double *)vp->v.w;
    vp->Wg = malloc(d * d * sizeof(float));
    vp->vec = malloc(3 * d * sizeof(float));
    vp->mx = calloc((size_t)vp->parts * H, sizeof(double));
    int rc = vp->Wg && vp->vec && vp->mx ? TW_OK : TW_ENOMEM;
    for (int p = 0; p < vp->parts && rc == TW_OK; p++)
        if (!(vp->buf[p] = malloc(TILE_ROWS * (d + 3) * sizeof(float)))) rc = TW_ENOMEM;
    if (rc == TW_OK) rc = vals_weights(vp, w, w + d);
    if (rc == TW_OK) rc = tile_pass_run(V, vp->parts, ana_cancel(vp->x), vals_fill_tile, vp);
    if (rc == TW_OK) {
        for (size_t h = 0; h < H; h++) RG[h] = 0.0;
        for (int p = 0; p < vp->parts; p++)
            for (size_t h = 0; h < H; h++) topk_raise_max(&RG[h], vp->mx[(size_t)p * H + h]);
        vp->screened = vp->q != NULL;
    }
    for (int p = 0; p < vp->parts; p++) {
        free(vp->buf[p]);
        vp->buf[p] = NULL;
    }
    free(vp->Wg);
    free(vp->vec);
    free(vp->mx);
    vp->Wg = vp->vec = NULL;
    vp->mx = NULL;
    return rc;
}

/* The value screening's scratch and candidates per part (c[0] given). */
static int vals_pass_alloc(vals_pass *vp, size_t k)
{
    const size_t W = vp->W, sb = vp->sb;
    int rc = cands_split(vp->c, vp->parts, W * (vp->H + 1), vp->V, k);
    for (int p = 0; p < vp->parts && rc == TW_OK; p++) {
        vals_scratch *t = &vp->sc[p];
        *t = (vals_scratch){malloc(W * sb * sizeof(float)), malloc(W * sb * sizeof(float)),
                            malloc(W * sb * sizeof(float)), malloc(sb * sizeof(float))};
        if (!t->A || !t->Q || !t->Qs || !t->row) rc = TW_ENOMEM;
    }
    return rc;
}

static void vals_pass_free(vals_pass *vp)
{
    for (int p = 0; p < vp->parts; p++) {
        free(vp->sc[p].A);
        free(vp->sc[p].Q);
        free(vp->sc[p].Qs);
        free(vp->sc[p].row);
    }
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
    topk_hit *vhits; // (W, H+1, k)
    double *vstat;   // (6, W, H+1) see words_value_queries
    float R_e;       /* the largest |E_j| (for the value queries) */
} words_run;

/* The working arrays, in one allocation (vstat first: the doubles). */
static int words_run_alloc(words_run *p)
{
    const size_t W = p->W, d = (size_t)p->m->cfg.n_embd, H = (size_t)p->m->cfg.n_head;
    const size_t n_dbl = 6 * W * (H + 1), n_hits = W * (H + 1) * p->k, n_flt = (2 + H + H + 1) * W * d;
    char *b = malloc(n_dbl * sizeof(double) + n_hits * sizeof(topk_hit) + n_flt * sizeof(float));
    if (!b) return TW_ENOMEM;
    p->vstat = (double *)b;
    p->vhits = (topk_hit *)(p->vstat + n_dbl);
    p->qa = (float *)(p->vhits + n_hits);
    p->va = p->qa + W * d;
    p->keyq = p->va + W * d;
    p->valq = p->keyq + W * H * d;
    return TW_OK;
}

static void words_run_free(words_run *p) { free(p->vstat); }

/* Every word's query vectors, each computed on its own (matrix-vector
 * products, never a GEMM over the batch), so a word's answer does not
 * depend on which other words are probed with it (docs/MATH.md §2). The
 * words are shared among the cores, each calling BLAS with one thread. */
typedef struct {
    words_run *p;
    const ana_ln_rows *en;
    float *rows; /* (parts, d): one row of En per part */
} queries_ctx;

static void queries_part(void *ctx, size_t lo, size_t hi, int part)
{
    const queries_ctx *qc = ctx;
    words_run *p = qc->p;
    const gpt2_model *m = p->m;
    const gpt2_block *blk = p->blk;
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    float *q = qc->rows + (size_t)part * d;
    for (size_t w = lo; w < hi; w++) {
        ana_ln_rows_form(qc->en, (size_t)p->ids[w], 1, q); /* En[id] */
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

static int words_queries(words_run *p, const ana_ln_rows *en)
{
    const size_t d = (size_t)p->m->cfg.n_embd;
    int parts = nn_parts();
    if ((size_t)parts > p->W) parts = (int)p->W;
    queries_ctx qc = {p, en, malloc((size_t)parts * d * sizeof(float))};
    if (!qc.rows) return TW_ENOMEM;
    if (parts > 1) nn_blas_single_begin(); /* as in tile_pass_run */
    nn_parallel_rows(p->W, parts, queries_part, &qc);
    if (parts > 1) nn_blas_single_end();
    free(qc.rows);
    return TW_OK;
}

/* The cost of a direct pass's multiply-adds relative to a factor's fp32
 * GEMM: less when the pass screens on the tile or VNNI unit (topk.h). */
static double direct_scale(size_t nq) { return 1.0 / topk_plain_pass_speedup(nq); }

/* Keys: the factored screening when K = En Wk is cached, or when computing
 * it (V d^2 multiply-adds) and screening against it (W H dh per row) costs
 * less than the direct pass (W H d per row, scaled by direct_scale);
 * otherwise every key query against En. */
static int words_keys(words_run *p, const ana_ln_rows *en, topk_hit *keys)
{
    const gpt2_model *m = p->m;
    blockcache *c = ana_cache(p->x);
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H, W = p->W;
    char kkey[32];
    snprintf(kkey, sizeof kkey, "keys(En):%d", p->block);
    blockcache_entry *keys_e = NULL;
    int factored = p->method == PROBE_FACTORED;
    if (p->method == PROBE_AUTO)
        factored =
            blockcache_lookup(c, kkey, keys_bytes(V, d, H), &keys_e) == TW_OK ||
            (double)W * (double)H * ((double)d * direct_scale(W * H) - (double)dh) >= (double)d * (double)d;
    if (!factored)
        return topk_rows_formed(&en->f, p->keyq, W * H, p->k, keys, NULL,
                                &(topk_opts){.cancel = ana_cancel(p->x)});
    keys_pass kp = {.m = m,
                    .x = p->x,
                    .block = p->block,
                    .en = en,
                    .parts = pass_parts(V),
                    .V = V,
                    .d = d,
                    .H = H,
                    .dh = dh,
                    .qa = p->qa,
                    .W = W};
    return keys_factored(&kp, kkey, keys_e, p->keyq, p->k, keys, p->worst);
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

/* The factored value screening of every value query against G, acquired
 * (filled, and the queries screened in the same pass, when it is not
 * cached: vals_e NULL), else one pass over the cached G; certified, the
 * lists it cannot certify computed together in one plain pass over E;
 * into vhits. */
static int words_values_factored(words_run *p, const char *vkey, blockcache_entry *vals_e)
{
    const gpt2_model *m = p->m;
    blockcache *cache = ana_cache(p->x);
    const tw_cancel *cancel = ana_cancel(p->x);
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    const size_t W = p->W, NQ = W * (H + 1);
    const float *E = m->p.wte, *gam = m->p.ln_f_w;
    double *mu = p->vstat, *rstd = mu + NQ, *verr = rstd + 4 * NQ;
    float *ge = p->keyq; /* (W, d) fl(gamma o E_id): keyq is free now */
    for (size_t w = 0; w < W; w++)
        for (size_t i = 0; i < d; i++) ge[w * d + i] = (float)((double)gam[i] * E[(size_t)p->ids[w] * d + i]);
    const vals_queries vq = {p->va, ge, mu, rstd, verr, p->valq, p->worst};
    vals_pass vp = {.m = m,
                    .x = p->x,
                    .block = p->block,
                    .parts = pass_parts(V),
                    .V = V,
                    .d = d,
                    .H = H,
                    .dh = d / H,
                    .q = p->worst ? NULL : &vq, /* PROBE_CHECK: the screening needs the bounds first */
                    .W = W,
                    .sb = topk_block_rows(3 * W, SCREEN_ROWS)};
    topk_cands *c0 = topk_cands_new(NQ, V, p->k, 1, 0);
    unsigned char *failed = malloc(NQ);
    vp.c[0] = c0;
    int rc = c0 && failed ? vals_pass_alloc(&vp, p->k) : TW_ENOMEM;
    if (rc == TW_OK && !vals_e)
        rc = blockcache_acquire_within(cache, vkey, vals_bytes(V, d, H), fill_vals, &vp, cancel, &vals_e);
    if (rc == TW_OK) {
        vals_view_of(blockcache_data(vals_e), V, d, H, &vp.v);
        vals_errors(m, &vp.v, p->R_e, p->va, ge, p->vstat, W, verr);
        if (!vp.screened) { /* cached, filled by another request, or PROBE_CHECK */
            vp.q = &vq;
            rc = tile_pass_run(V, vp.parts, cancel, vals_screen_tile, &vp);
        }
    }
    cands_join(vp.c, vp.parts, rc == TW_OK);
    vals_pass_free(&vp);
    for (int q = 0; p->worst && q < vp.parts; q++)
        if (!(vp.worst[q] <= *p->worst)) *p->worst = vp.worst[q];
    const topk_former ef = {.n = V, .d = d, .rows = E, .max_row_norm = p->R_e};
    if (rc == TW_OK) rc = topk_cands_certify_rows(c0, &ef, p->valq, d, verr, p->vhits, NULL, p->k, failed);
    if (rc == TW_OK) rc = failed_lists(&ef, p->valq, d, NQ, p->k, failed, p->vhits, cancel);
    blockcache_release(cache, vals_e);
    topk_cands_free(c0);
    free(failed);
    return rc;
}

/* Values: the factored screening when G = E diag(gamma) Wo^T is cached or
 * worth computing (V d^2 multiply-adds, and about 2 W d per row to screen
 * against it, against the direct pass's W (H + 1) d per row, scaled by
 * direct_scale), else every value query against E. */
static int words_values(words_run *p)
{
    const gpt2_model *m = p->m;
    blockcache *c = ana_cache(p->x);
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    const size_t W = p->W;
    char vkey[32];
    snprintf(vkey, sizeof vkey, "vals(E):%d", p->block);
    blockcache_entry *vals_e = NULL;
    int factored = p->method == PROBE_FACTORED;
    if (p->method == PROBE_AUTO)
        factored = blockcache_lookup(c, vkey, vals_bytes(V, d, H), &vals_e) == TW_OK ||
                   (double)W * ((double)(H + 1) * direct_scale(W * (H + 1)) - 2.0) >= (double)d;
    if (factored) return words_values_factored(p, vkey, vals_e);
    return topk_rows_opt(m->p.wte, V, d, p->valq, W * (H + 1), p->k, p->vhits, NULL,
                         &(topk_opts){.max_row_norm = p->R_e, .cancel = ana_cancel(p->x)});
}

/* The queries, the keys and the values of p into r. */
static int words_compute(words_run *p, probe_words_result *r)
{
    const size_t H = (size_t)p->m->cfg.n_head, W = p->W, k = p->k;
    ana_ln_rows en = {0};
    int rc = words_run_alloc(p);
    /* E's statistics first: their pass measures max |E_j| too (one read of E) */
    if (rc == TW_OK) rc = ana_ln1_rows_open(p->m, p->x, p->block, &en);
    if (rc == TW_OK) rc = ana_wte_max_norm(p->m, p->x, &p->R_e);
    if (rc == TW_OK) rc = words_queries(p, &en);
    if (rc == TW_OK) rc = words_keys(p, &en, r->keys);
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

/* probe_words_opt without the word cache (arguments checked). */
static int words_solve(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                       size_t k, int method, probe_words_result *out)
{
    int rc;
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

/* ---- The word cache ----
 * A word's answer on a block does not depend on the other words probed
 * with it (docs/MATH.md §4.7), so it is kept per (block, token, k) in the
 * cache ("word:<b>:<id>:<k>"), its lists computed with k at least
 * PROBE_KEEP_K (in a request of at most PROBE_KEEP_MAX_HITS list entries):
 * a later request of the same word with any k up to that is the first k of
 * each kept list (the top k of an exact top K are the exact top k, ties by
 * id alike), and only the words not kept are computed. The
 * entry: value_norm (H) and layer_norm (1) doubles, then the key lists (H,
 * K), the value lists (H, K) and the layer list (K). */
#define PROBE_KEEP_K 10
/* List entries a request computes at most to keep PROBE_KEEP_K: beyond,
 * its words are computed and kept with its own k (a request of thousands
 * of words at k 1 would otherwise hold ten times its candidates). */
#define PROBE_KEEP_MAX_HITS ((size_t)1 << 20)

static size_t word_bytes(size_t H, size_t K)
{
    return (H + 1) * sizeof(double) + (2 * H + 1) * K * sizeof(topk_hit);
}

static void word_key(char *key, size_t len, int block, int32_t id, size_t K)
{
    snprintf(key, len, "word:%d:%d:%zu", block, (int)id, K);
}

/* Word w of r (computed with k = K) into an entry's data, or the entry's
 * data into word w of r (its k, at most K): the first k of each list. */
static void word_copy(probe_words_result *r, size_t w, void *data, size_t H, size_t K, int to_entry)
{
    double *norms = data;
    topk_hit *keys = (topk_hit *)(norms + H + 1), *vals = keys + H * K, *layer = vals + H * K;
    const size_t k = to_entry ? K : r->k;
    for (size_t h = 0; h < H; h++) {
        topk_hit *rk = r->keys + (w * H + h) * r->k, *rv = r->values + (w * H + h) * r->k;
        if (to_entry) {
            memcpy(keys + h * K, rk, K * sizeof *rk);
            memcpy(vals + h * K, rv, K * sizeof *rv);
            norms[h] = r->value_norm[w * H + h];
        } else {
            memcpy(rk, keys + h * K, k * sizeof *rk);
            memcpy(rv, vals + h * K, k * sizeof *rv);
            r->value_norm[w * H + h] = norms[h];
        }
    }
    if (to_entry) {
        memcpy(layer, r->layer_values + w * r->k, K * sizeof *layer);
        norms[H] = r->layer_norm[w];
    } else {
        memcpy(r->layer_values + w * r->k, layer, k * sizeof *layer);
        r->layer_norm[w] = norms[H];
    }
}

typedef struct {
    const void *src;
    size_t bytes;
} word_fill_ctx;

static int fill_word(void *data, size_t bytes, void *ctx)
{
    const word_fill_ctx *f = ctx;
    if (bytes != f->bytes) return TW_EINVAL;
    memcpy(data, f->src, bytes);
    return TW_OK;
}

/* probe_words_opt for AUTO with a cache: the kept words from it, the
 * others computed (with k at least PROBE_KEEP_K) and kept. */
static int words_cached(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t W,
                        size_t k, probe_words_result *out)
{
    blockcache *c = ana_cache(x);
    const size_t V = (size_t)m->cfg.vocab_size, H = (size_t)m->cfg.n_head;
    const size_t keep = PROBE_KEEP_K < V ? PROBE_KEEP_K : V;
    const size_t K = k < keep && W * (2 * H + 1) * keep <= PROBE_KEEP_MAX_HITS ? keep : k;
    probe_words_result r = {0}, rm = {0};
    int rc = result_alloc(&r, W, H, k);
    size_t *miss = malloc(W * sizeof *miss), nm = 0;
    int32_t *mids = malloc(W * sizeof *mids);
    if (rc == TW_OK && !(miss && mids)) rc = TW_ENOMEM;
    r.block = block;
    r.n_words = W;
    r.n_head = H;
    r.k = k;
    char key[BLOCKCACHE_KEY_MAX + 1];
    for (size_t w = 0; rc == TW_OK && w < W; w++) {
        r.ids[w] = ids[w];
        blockcache_entry *e = NULL;
        word_key(key, sizeof key, block, ids[w], K);
        if (blockcache_lookup(c, key, word_bytes(H, K), &e) == TW_OK) {
            word_copy(&r, w, (void *)blockcache_data(e), H, K, 0);
            blockcache_release(c, e);
        } else {
            miss[nm] = w;
            mids[nm++] = ids[w];
        }
    }
    if (rc == TW_OK && nm) rc = words_solve(m, x, block, mids, nm, K, PROBE_AUTO, &rm);
    void *buf = nm && rc == TW_OK ? malloc(word_bytes(H, K)) : NULL;
    if (rc == TW_OK && nm && !buf) rc = TW_ENOMEM;
    for (size_t i = 0; rc == TW_OK && i < nm; i++) {
        word_copy(&rm, i, buf, H, K, 1);
        word_copy(&r, miss[i], buf, H, K, 0);
        /* kept for the next request; a cache that cannot take it changes nothing */
        blockcache_entry *e = NULL;
        word_fill_ctx f = {buf, word_bytes(H, K)};
        word_key(key, sizeof key, block, mids[i], K);
        if (blockcache_acquire_within(c, key, f.bytes, fill_word, &f, ana_cancel(x), &e) == TW_OK)
            blockcache_release(c, e);
    }
    free(buf);
    free(miss);
    free(mids);
    probe_words_result_free(&rm);
    if (rc) {
        probe_words_result_free(&r);
        return rc;
    }
    *out = r;
    return TW_OK;
}

int probe_words_opt(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *ids, size_t n_words,
                    size_t k, int method, probe_words_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = words_check(m, block, ids, n_words, k, method);
    if (rc) return rc;
    if (method == PROBE_AUTO && ana_cache(x) && n_words)
        return words_cached(m, x, block, ids, n_words, k, out);
    return words_solve(m, x, block, ids, n_words, k, method, out);
}
