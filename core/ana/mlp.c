/* The MLP as key-value memories: see mlp.h (docs/MATH.md §9-§11). */
#include "core/ana/mlp.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/scratch.h"
#include "core/nn/linalg.h"

/* ---- Cached intermediates ---- */

static size_t values_norm_offset(size_t F, size_t d) { return (F * d * sizeof(float) + 7) & ~(size_t)7; }

typedef struct {
    const gpt2_model *m;
    int block;
} block_ctx;

static int fill_values(void *data, size_t bytes, void *ctx)
{
    const block_ctx *x = ctx;
    const size_t F = (size_t)x->m->cfg.n_inner, d = (size_t)x->m->cfg.n_embd;
    if (bytes != values_norm_offset(F, d) + F * sizeof(double)) return TW_EINVAL;
    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(x->m, x->block, &bref, &blk);
    if (rc) return rc;
    gpt2_mat W = blk->fc_proj_w; /* (F, d) */
    float *v = data;
    double *norm = (double *)((char *)data + values_norm_offset(F, d));
    /* row i of W is contiguous in the Hugging Face layout, a strided column
     * in nanoGPT's: walk the stored order either way */
    if (W.cs == 1) {
        for (size_t i = 0; i < F; i++) memcpy(v + i * d, &GPT2_AT(W, i, 0), d * sizeof(float));
    } else {
        for (size_t j = 0; j < d; j++)
            for (size_t i = 0; i < F; i++) v[i * d + j] = GPT2_AT(W, i, j);
    }
    gpt2_block_release(&bref);
    for (size_t i = 0; i < F; i++) norm[i] = sqrt(topk_dot(v + i * d, v + i * d, d));
    return TW_OK;
}

int mlp_acquire_values(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    if (ana_check_model(m) || !e || m->cfg.n_inner < 1) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    const size_t F = (size_t)m->cfg.n_inner, d = (size_t)m->cfg.n_embd;
    char key[32];
    snprintf(key, sizeof key, "mlp-v:%d", block);
    block_ctx fx = {m, block};
    return blockcache_acquire_within(ana_cache(x), key, values_norm_offset(F, d) + F * sizeof(double),
                                     fill_values, &fx, ana_cancel(x), e);
}

mlp_values_view mlp_values_of(const gpt2_model *m, const blockcache_entry *e)
{
    const size_t F = (size_t)m->cfg.n_inner, d = (size_t)m->cfg.n_embd;
    const char *p = blockcache_data(e);
    mlp_values_view v = {(const float *)p, (const double *)(p + values_norm_offset(F, d))};
    return v;
}

static int mlp_model_ok(const gpt2_model *m) { return ana_check_model(m) == TW_OK && m->cfg.n_inner >= 1; }

/* ---- Value vectors ---- */

/* norm: the single allocation starts there */
void mlp_values_result_free(mlp_values_result *r) { TW_FREE_FIELDS(r, r->norm); }

int mlp_values(const gpt2_model *m, const ana_ctx *x, int block, const int32_t *neurons, size_t n, size_t k,
               mlp_values_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (!mlp_model_ok(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (k < 1 || k > V) return TW_EK;
    if (!neurons) n = F;
    if (n > ((size_t)1 << 24)) return TW_ERANGE;
    for (size_t i = 0; neurons && i < n; i++)
        if (neurons[i] < 0 || (size_t)neurons[i] >= F) return TW_ERANGE;

    mlp_values_result r = {.block = block, .n = n, .k = k};
    char *p = malloc(n * sizeof(double) + 2 * n * k * sizeof(topk_hit) + n * sizeof(int32_t) + 1);
    if (!p) return TW_ENOMEM;
    r.norm = (double *)p;
    r.top = (topk_hit *)(r.norm + n);
    r.bottom = r.top + n * k;
    r.neurons = (int32_t *)(r.bottom + n * k);
    for (size_t i = 0; i < n; i++) r.neurons[i] = neurons ? neurons[i] : (int32_t)i;

    blockcache_entry *e = NULL;
    float *q = NULL;
    int rc = mlp_acquire_values(m, x, block, &e);
    if (rc) goto done;
    mlp_values_view vv = mlp_values_of(m, e);
    const float *Q = vv.v; /* every neuron in order: the cached rows themselves */
    if (neurons) {
        if (!(q = malloc((n ? n : 1) * d * sizeof(float)))) {
            rc = TW_ENOMEM;
            goto done;
        }
        for (size_t i = 0; i < n; i++) memcpy(q + i * d, vv.v + (size_t)neurons[i] * d, d * sizeof(float));
        Q = q;
    }
    for (size_t i = 0; i < n; i++) r.norm[i] = vv.norm[r.neurons[i]];
    if (n)
        rc = topk_rows_opt(m->p.wte, V, d, Q, n, k, r.top, r.bottom, &(topk_opts){.cancel = ana_cancel(x)});
done:
    blockcache_release(ana_cache(x), e);
    free(q);
    *out = r;
    if (rc) mlp_values_result_free(out);
    return rc;
}

/* ---- Search ---- */

void mlp_search_result_free(mlp_search_result *r) { TW_FREE_FIELDS(r, r->hits); }

int mlp_search(const gpt2_model *m, const ana_ctx *x, int block, int32_t token, size_t k,
               mlp_search_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (!mlp_model_ok(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    if (block < -1 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (token < 0 || (size_t)token >= V) return TW_ETOKEN;
    const int b0 = block < 0 ? 0 : block, nb = block < 0 ? m->cfg.n_layer : 1;
    const size_t N = (size_t)nb * F;
    if (k < 1 || k > N) return TW_EK;

    mlp_search_hit *hits = calloc(k, sizeof *hits);
    scratch s = {.n = 0};
    double *score = scratch_alloc(&s, N, sizeof(double));
    topk_hit *best = scratch_alloc(&s, k, sizeof(topk_hit));
    float *q = scratch_alloc(&s, k * d, sizeof(float));
    int32_t *tok = scratch_alloc(&s, k, sizeof(int32_t));
    size_t *rank = scratch_alloc(&s, k, sizeof(size_t));
    int rc = TW_OK;
    if (!hits || s.failed) {
        rc = TW_ENOMEM;
        goto done;
    }
    const float *et = m->p.wte + (size_t)token * d;
    for (int b = 0; b < nb && rc == TW_OK; b++) {
        blockcache_entry *e = NULL;
        if ((rc = tw_cancel_check(ana_cancel(x))) || (rc = mlp_acquire_values(m, x, b0 + b, &e))) break;
        mlp_values_view vv = mlp_values_of(m, e);
        for (size_t i = 0; i < F; i++) score[(size_t)b * F + i] = topk_dot(vv.v + i * d, et, d);
        blockcache_release(ana_cache(x), e);
    }
    if (rc) goto done;
    /* ties: lower global index (block, then neuron) first */
    if ((rc = topk_vec(score, N, k, best, NULL))) goto done;
    for (size_t r = 0; r < k; r++) {
        blockcache_entry *e = NULL;
        int b = b0 + (int)((size_t)best[r].id / F);
        size_t i = (size_t)best[r].id % F;
        if ((rc = mlp_acquire_values(m, x, b, &e))) goto done;
        mlp_values_view vv = mlp_values_of(m, e);
        memcpy(q + r * d, vv.v + i * d, d * sizeof(float));
        hits[r] =
            (mlp_search_hit){.block = b, .neuron = (int32_t)i, .score = best[r].score, .norm = vv.norm[i]};
        blockcache_release(ana_cache(x), e);
        tok[r] = token;
    }
    rc = topk_rank_rows(m->p.wte, V, d, q, k, tok, rank, &(topk_opts){.cancel = ana_cancel(x)});
    if (rc) goto done;
    for (size_t r = 0; r < k; r++) hits[r].rank = rank[r];
done:
    scratch_free(&s);
    if (rc) {
        free(hits);
        return rc;
    }
    *out = (mlp_search_result){.token = token, .k = k, .n_neurons = N, .hits = hits};
    return TW_OK;
}

/* ---- SVD of c_fc and c_proj ----
 * Both matrices are factored in their (d, F) orientation B (in: B = W_fc,
 * out: B = W_proj^T), B = U S V^T, so that in: A = B has left U and right V;
 * out: A = B^T = V S U^T has left V and right U. Through the Gram matrix of
 * the smaller side, in double: for d <= F, B B^T = U S^2 U^T (dsyrk, dsyevd)
 * and V^T = S^-1 U^T B (a zero singular value gives a zero row); for F < d
 * the same with B^T B. dgesdd of the 768 x 3072 matrix takes ten times
 * longer; the Gram route's relative error in S_t is about eps (S_0 / S_t)^2.
 * One cache entry (doubles): S (r), U (d, r) col-major, VT (r, F) col-major
 * (ld r). */

const char *mlp_svd_matrix_name(int matrix)
{
    if (matrix == MLP_SVD_IN) return "in";
    if (matrix == MLP_SVD_OUT) return "out";
    return NULL;
}

typedef struct {
    const gpt2_model *m;
    int block, matrix;
} svd_ctx;

static size_t svd_doubles(size_t d, size_t F)
{
    size_t r = d < F ? d : F;
    return r + d * r + r * F;
}

static int fill_svd(void *data, size_t bytes, void *ctx)
{
    const svd_ctx *x = ctx;
    const size_t d = (size_t)x->m->cfg.n_embd, F = (size_t)x->m->cfg.n_inner, r = d < F ? d : F;
    if (bytes != svd_doubles(d, F) * sizeof(double)) return TW_EINVAL;
    double *S = data, *U = S + r, *VT = U + d * r;
    double *B = malloc((d * F + 2 * r * r + r) * sizeof(double));
    if (!B) return TW_ENOMEM;
    double *G = B + d * F, *Q = G + r * r, *w = Q + r * r;
    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(x->m, x->block, &bref, &blk);
    if (rc) {
        free(B);
        return rc;
    }
    if (x->matrix == MLP_SVD_IN) {
        mat_copy_colmajor(B, d, blk->fc_w, d, F, 1.0);
    } else {
        for (size_t j = 0; j < F; j++) /* B (d, F) = W_proj^T */
            for (size_t i = 0; i < d; i++) B[i + j * d] = GPT2_AT(blk->fc_proj_w, j, i);
    }
    gpt2_block_release(&bref);
    const int wide = d <= F; /* the Gram matrix of the smaller side: B B^T (d, d) or B^T B (F, F) */
    cblas_dsyrk(CblasColMajor, CblasLower, wide ? CblasNoTrans : CblasTrans, (int)r, wide ? (int)F : (int)d,
                1.0, B, (int)d, 0.0, G, (int)r);
    lapack_int info = LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', (lapack_int)r, G, (lapack_int)r, w);
    if (info != 0) {
        free(B);
        return info < 0 ? TW_EINVAL : TW_ENUMERIC;
    }
    /* descending: column t of Q is eigenvector r-1-t */
    for (size_t t = 0; t < r; t++) {
        double l = w[r - 1 - t];
        S[t] = l > 0.0 ? sqrt(l) : 0.0;
        memcpy(Q + t * r, G + (r - 1 - t) * r, r * sizeof(double));
    }
    if (wide) {
        memcpy(U, Q, d * r * sizeof(double));
        /* VT (r, F) = U^T B, then row t / S_t */
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)r, (int)F, (int)d, 1.0, U, (int)d, B,
                    (int)d, 0.0, VT, (int)r);
        for (size_t t = 0; t < r; t++) {
            double inv = S[t] > 0.0 ? 1.0 / S[t] : 0.0;
            for (size_t i = 0; i < F; i++) VT[t + i * r] *= inv;
        }
    } else {
        for (size_t t = 0; t < r; t++) /* VT = Q^T */
            for (size_t i = 0; i < F; i++) VT[t + i * r] = Q[i + t * r];
        /* U (d, r) = B Q, then column t / S_t */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)r, (int)F, 1.0, B, (int)d, Q,
                    (int)r, 0.0, U, (int)d);
        for (size_t t = 0; t < r; t++) {
            double inv = S[t] > 0.0 ? 1.0 / S[t] : 0.0;
            for (size_t i = 0; i < d; i++) U[i + t * d] *= inv;
        }
    }
    free(B);
    return TW_OK;
}

/* s: the single allocation starts there */
void mlp_svd_result_free(mlp_svd_result *r) { TW_FREE_FIELDS(r, r->s); }

static void negate_hits(topk_hit *dst, const topk_hit *src, size_t k)
{
    for (size_t i = 0; i < k; i++) dst[i] = (topk_hit){src[i].id, -src[i].score};
}

/* TW_OK if mlp_svd can run on these arguments, else TW_EINVAL, TW_EBLOCK,
 * TW_ETOP or TW_EK. */
static int svd_check(const gpt2_model *m, int block, int matrix, size_t top, size_t k)
{
    if (!mlp_model_ok(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (matrix != MLP_SVD_IN && matrix != MLP_SVD_OUT) return TW_EINVAL;
    if (top > (d < F ? d : F)) return TW_ETOP;
    if (k < 1 || k > V || k > F) return TW_EK;
    return TW_OK;
}

/* The arrays of res (r, top, k set) in one allocation, starting at res->s. */
static int svd_result_alloc(mlp_svd_result *res)
{
    const size_t r = res->r, top = res->top, k = res->k;
    char *p = malloc(2 * r * sizeof(double) + 3 * top * k * sizeof(topk_hit) + top * sizeof(int) + 1);
    if (!p) return TW_ENOMEM;
    res->s = (double *)p;
    res->coverage = res->s + r;
    res->left = (topk_hit *)(res->coverage + r);
    res->right = res->left + top * k;
    res->neurons = res->right + top * k;
    res->sign = (int *)(res->neurons + top * k);
    return TW_OK;
}

/* The singular values, their cumulative share and the fraction of
 * directions it takes to pass 99%. */
static void svd_spectrum(mlp_svd_result *res, const double *S)
{
    const size_t r = res->r;
    memcpy(res->s, S, r * sizeof(double));
    double sum = 0.0, acc = 0.0;
    for (size_t t = 0; t < r; t++) sum += S[t];
    res->frac99 = 0.0;
    for (size_t t = 0; t < r; t++) {
        acc += S[t];
        res->coverage[t] = sum > 0.0 ? acc / sum : 0.0;
        if (sum > 0.0 && res->frac99 == 0.0 && res->coverage[t] > 0.99)
            res->frac99 = (double)(t + 1) / (double)r;
    }
}

/* A neuron-space vector y (F) through the other half of the MLP, in double,
 * into q (d floats): in: y W_proj; out: W_fc y. z: d doubles of scratch. */
static void through_other_half(const gpt2_block *blk, int in, const double *y, size_t F, size_t d, double *z,
                               float *q)
{
    for (size_t j = 0; j < d; j++) z[j] = 0.0;
    for (size_t i = 0; i < F; i++) {
        double yi = y[i];
        if (in)
            for (size_t j = 0; j < d; j++) z[j] += yi * (double)GPT2_AT(blk->fc_proj_w, i, j);
        else
            for (size_t j = 0; j < d; j++) z[j] += yi * (double)GPT2_AT(blk->fc_w, j, i);
    }
    for (size_t j = 0; j < d; j++) q[j] = (float)z[j];
}

/* The scratch arrays of the direction lists. */
typedef struct {
    float *qd, *qt;        /* (top, d): the d-space vectors, the neuron side through the other matrix */
    double *y, *z;         /* (F), (d) */
    topk_hit *tops, *bots; /* (top, k): both ends of the d-space lists */
} svd_work;

/* Direction t: its sign (the larger end of the d-space lists), its d-side
 * list, its neurons, and its neuron-side vector into w->qt. */
static int svd_direction(const gpt2_model *m, const gpt2_block *blk, mlp_svd_result *res, const double *S,
                         const double *VT, size_t t, svd_work *w)
{
    const size_t d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner, r = res->r, k = res->k;
    const int in = res->matrix == MLP_SVD_IN;
    const topk_hit *tt = w->tops + t * k, *bb = w->bots + t * k;
    int sg = tt[0].score >= -bb[0].score ? 1 : -1;
    res->sign[t] = sg;
    topk_hit *dside = in ? res->left : res->right;
    if (sg > 0)
        memcpy(dside + t * k, tt, k * sizeof(topk_hit));
    else
        negate_hits(dside + t * k, bb, k);
    /* the neuron-space vector y_t (in: V_t, out: S_t V_t), signed */
    double sc = sg * (in ? 1.0 : S[t]);
    for (size_t i = 0; i < F; i++) w->y[i] = sc * VT[t + i * r];
    int rc = topk_vec(w->y, F, k, res->neurons + t * k, NULL);
    if (rc) return rc;
    through_other_half(blk, in, w->y, F, d, w->z, w->qt + t * d);
    return TW_OK;
}

/* The lists of the top >= 1 directions from the factors S, U, VT. */
static int svd_lists(const gpt2_model *m, const ana_ctx *x, mlp_svd_result *res, const double *S,
                     const double *U, const double *VT)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    const size_t top = res->top, k = res->k;
    const int in = res->matrix == MLP_SVD_IN;
    scratch s = {.n = 0};
    svd_work w = {.qd = scratch_alloc(&s, top * d, sizeof(float)),
                  .qt = scratch_alloc(&s, top * d, sizeof(float)),
                  .y = scratch_alloc(&s, F, sizeof(double)),
                  .z = scratch_alloc(&s, d, sizeof(double)),
                  .tops = scratch_alloc(&s, top * k, sizeof(topk_hit)),
                  .bots = scratch_alloc(&s, top * k, sizeof(topk_hit))};
    blockcache_entry *ln2 = NULL;
    int rc = s.failed ? TW_ENOMEM : ana_acquire_ln2_embeddings(m, x, res->block, &ln2);
    if (rc) goto done;
    /* d-space vectors x_t (in: S_t U_t, out: U_t), rounded to float */
    for (size_t t = 0; t < top; t++)
        for (size_t i = 0; i < d; i++) w.qd[t * d + i] = (float)((in ? S[t] : 1.0) * U[i + t * d]);
    const float *E = m->p.wte, *En2 = blockcache_data(ln2);
    const float *Mx = in ? En2 : E, *My = in ? E : En2; /* references of the two sides */
    rc = topk_rows_opt(Mx, V, d, w.qd, top, k, w.tops, w.bots, &(topk_opts){.cancel = ana_cancel(x)});
    gpt2_block_ref bref = {0};
    const gpt2_block *blk = NULL;
    if (!rc) rc = ana_block_acquire(m, res->block, &bref, &blk);
    for (size_t t = 0; t < top && !rc; t++) rc = svd_direction(m, blk, res, S, VT, t, &w);
    gpt2_block_release(&bref);
    if (!rc)
        rc = topk_rows_opt(My, V, d, w.qt, top, k, in ? res->right : res->left, NULL,
                           &(topk_opts){.cancel = ana_cancel(x)});
done:
    blockcache_release(ana_cache(x), ln2);
    scratch_free(&s);
    return rc;
}

int mlp_svd(const gpt2_model *m, const ana_ctx *x, int block, int matrix, size_t top, size_t k,
            mlp_svd_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = svd_check(m, block, matrix, top, k);
    if (rc) return rc;
    const size_t d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner, r = d < F ? d : F;
    mlp_svd_result res = {.block = block, .matrix = matrix, .r = r, .top = top, .k = k};
    if ((rc = svd_result_alloc(&res))) return rc;
    char key[48];
    snprintf(key, sizeof key, "mlp-svd-%s:%d", mlp_svd_matrix_name(matrix), block);
    svd_ctx sx = {m, block, matrix};
    blockcache_entry *fe = NULL;
    rc = blockcache_acquire_within(ana_cache(x), key, svd_doubles(d, F) * sizeof(double), fill_svd, &sx,
                                   ana_cancel(x), &fe);
    if (!rc) {
        const double *S = blockcache_data(fe), *U = S + r, *VT = U + d * r;
        svd_spectrum(&res, S);
        if (top > 0) rc = svd_lists(m, x, &res, S, U, VT);
    }
    blockcache_release(ana_cache(x), fe);
    *out = res;
    if (rc) mlp_svd_result_free(out);
    return rc;
}

/* ---- Sub-updates ---- */

/* update_norm: the single allocation starts there */
void mlp_updates_result_free(mlp_updates_result *r) { TW_FREE_FIELDS(r, r->update_norm); }

/* TW_OK if mlp_updates can run on these arguments, else TW_EINVAL, TW_ETOP
 * or TW_EK. */
static int updates_check(const gpt2_model *m, const gpt2_forward_result *fr, size_t top, size_t k)
{
    if (!mlp_model_ok(m) || !fr || !fr->mlp_act) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    if ((size_t)fr->n_inner != F || (size_t)fr->C != d || fr->L != m->cfg.n_layer || fr->n < 1 ||
        fr->keep_block0 < 0 || fr->keep_blocks < 1 || fr->keep_block0 + fr->keep_blocks > fr->L)
        return TW_EINVAL;
    if (top < 1 || top > F) return TW_ETOP;
    if (k < 1 || k > V) return TW_EK;
    return TW_OK;
}

/* The arrays of r (n_blocks, n_tokens, top, k set) in one allocation,
 * starting at r->update_norm. */
static int updates_result_alloc(mlp_updates_result *r)
{
    const size_t nb = r->n_blocks, n = r->n_tokens, top = r->top, k = r->k;
    char *p = malloc((nb * n + nb) * sizeof(double) + nb * n * top * sizeof(mlp_update) +
                     nb * n * top * k * sizeof(topk_hit));
    if (!p) return TW_ENOMEM;
    r->update_norm = (double *)p;
    r->bias_norm = r->update_norm + nb * n;
    r->updates = (mlp_update *)(r->bias_norm + nb);
    r->tokens = (topk_hit *)(r->updates + nb * n * top);
    return TW_OK;
}

/* The scratch arrays of mlp_updates. */
typedef struct {
    double *w;           /* (F) weights |m_i| ||v_i|| of one position */
    topk_hit *best;      /* (top) */
    int32_t *slot;       /* (F) neuron -> row of the unique list, or -1 */
    int32_t *uniq;       /* (F) the unique list of the block's neurons */
    size_t nu;           /* its length */
    float *q, *out_rows; /* (F, d) their value vectors, (n, d) the MLP outputs */
    topk_hit *uh;        /* (F, k) their top-k tokens */
} updates_work;

/* Position t of block b: the update's norm and its `top` heaviest
 * sub-updates, their neurons added to the block's unique list. */
static int position_updates(const mlp_values_view *vv, const float *a, size_t F, size_t d, size_t b, size_t t,
                            mlp_updates_result *r, updates_work *w)
{
    const size_t n = r->n_tokens, top = r->top;
    const float *o = w->out_rows + t * d;
    r->update_norm[b * n + t] = sqrt(topk_dot(o, o, d));
    for (size_t i = 0; i < F; i++) w->w[i] = fabs((double)a[i]) * vv->norm[i];
    int rc = topk_vec(w->w, F, top, w->best, NULL);
    if (rc) return rc;
    for (size_t j = 0; j < top; j++) {
        int32_t i = w->best[j].id;
        r->updates[(b * n + t) * top + j] =
            (mlp_update){.neuron = i, .coef = a[i], .norm = vv->norm[i], .weight = w->best[j].score};
        if (w->slot[i] < 0) {
            w->slot[i] = (int32_t)w->nu;
            w->uniq[w->nu++] = i;
        }
    }
    return TW_OK;
}

/* Every position of block b (the fr's b-th kept block), and the top-k
 * tokens of the value vectors they list, each computed once. */
static int block_updates(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, size_t b,
                         mlp_updates_result *r, updates_work *w)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    const size_t n = r->n_tokens, top = r->top, k = r->k;
    const int block = fr->keep_block0 + (int)b;
    blockcache_entry *e = NULL;
    int rc = tw_cancel_check(ana_cancel(x));
    if (!rc) rc = mlp_acquire_values(m, x, block, &e);
    if (rc) return rc;
    mlp_values_view vv = mlp_values_of(m, e);
    const float *act = fr->mlp_act + b * n * F;
    const float *bp = m->p.h[block].fc_proj_b;
    r->bias_norm[b] = bp ? sqrt(topk_dot(bp, bp, d)) : 0.0;
    /* the MLP output without b_proj, sum_i m_i v_i, by one float GEMM */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)F, 1.0f, act, (int)F, vv.v,
                (int)d, 0.0f, w->out_rows, (int)d);
    w->nu = 0;
    for (size_t i = 0; i < F; i++) w->slot[i] = -1;
    for (size_t t = 0; t < n && !rc; t++) rc = position_updates(&vv, act + t * F, F, d, b, t, r, w);
    for (size_t u = 0; u < w->nu; u++) memcpy(w->q + u * d, vv.v + (size_t)w->uniq[u] * d, d * sizeof(float));
    if (!rc)
        rc =
            topk_rows_opt(m->p.wte, V, d, w->q, w->nu, k, w->uh, NULL, &(topk_opts){.cancel = ana_cancel(x)});
    blockcache_release(ana_cache(x), e);
    for (size_t t = 0; t < n && !rc; t++)
        for (size_t j = 0; j < top; j++) {
            size_t at = (b * n + t) * top + j;
            memcpy(r->tokens + at * k, w->uh + (size_t)w->slot[r->updates[at].neuron] * k,
                   k * sizeof(topk_hit));
        }
    return rc;
}

int mlp_updates(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, size_t top, size_t k,
                mlp_updates_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = updates_check(m, fr, top, k);
    if (rc) return rc;
    const size_t d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    const size_t n = (size_t)fr->n, nb = (size_t)fr->keep_blocks;
    mlp_updates_result r = {.block0 = fr->keep_block0, .n_blocks = nb, .n_tokens = n, .top = top, .k = k};
    if ((rc = updates_result_alloc(&r))) return rc;
    scratch s = {.n = 0};
    updates_work w = {.w = scratch_alloc(&s, F, sizeof(double)),
                      .best = scratch_alloc(&s, top, sizeof(topk_hit)),
                      .slot = scratch_alloc(&s, F, sizeof(int32_t)),
                      .uniq = scratch_alloc(&s, F, sizeof(int32_t)),
                      .q = scratch_alloc(&s, F * d, sizeof(float)),
                      .out_rows = scratch_alloc(&s, n * d, sizeof(float)),
                      .uh = scratch_alloc(&s, F * k, sizeof(topk_hit))};
    if (s.failed) rc = TW_ENOMEM;
    for (size_t b = 0; b < nb && !rc; b++) rc = block_updates(m, x, fr, b, &r, &w);
    scratch_free(&s);
    *out = r;
    if (rc) mlp_updates_result_free(out);
    return rc;
}
