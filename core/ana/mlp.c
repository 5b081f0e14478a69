/* The MLP as key-value memories: see mlp.h (docs/MATH.md §9-§11). */
#include "core/ana/mlp.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/linalg.h"
#include "core/nn/lnorm.h"

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
    gpt2_mat W = x->m->p.h[x->block].fc_proj_w; /* (F, d) */
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
    return blockcache_acquire(ana_cache(x), key, values_norm_offset(F, d) + F * sizeof(double), fill_values,
                              &fx, e);
}

mlp_values_view mlp_values_of(const gpt2_model *m, const blockcache_entry *e)
{
    const size_t F = (size_t)m->cfg.n_inner, d = (size_t)m->cfg.n_embd;
    const char *p = blockcache_data(e);
    mlp_values_view v = {(const float *)p, (const double *)(p + values_norm_offset(F, d))};
    return v;
}

static int fill_ln2(void *data, size_t bytes, void *ctx)
{
    const block_ctx *x = ctx;
    const gpt2_model *m = x->m;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    if (bytes != V * d * sizeof(float)) return TW_EINVAL;
    const gpt2_block *b = &m->p.h[x->block];
    layernorm_rows(data, m->p.wte, b->ln_2_w, b->ln_2_b, V, d, m->cfg.ln_eps);
    return TW_OK;
}

int mlp_acquire_ln2_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e)
{
    if (ana_check_model(m) || !e) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    char key[32];
    snprintf(key, sizeof key, "ln2(E):%d", block);
    block_ctx fx = {m, block};
    return blockcache_acquire(ana_cache(x), key, V * d * sizeof(float), fill_ln2, &fx, e);
}

static int mlp_model_ok(const gpt2_model *m) { return ana_check_model(m) == TW_OK && m->cfg.n_inner >= 1; }

/* ---- Value vectors ---- */

void mlp_values_result_free(mlp_values_result *r)
{
    if (!r) return;
    free(r->norm); /* the single allocation starts there */
    memset(r, 0, sizeof *r);
}

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
    if (rc) {
        mlp_values_result_free(&r);
        return rc;
    }
    *out = r;
    return TW_OK;
}

/* ---- Search ---- */

void mlp_search_result_free(mlp_search_result *r)
{
    if (!r) return;
    free(r->hits);
    memset(r, 0, sizeof *r);
}

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

    double *score = malloc(N * sizeof(double));
    topk_hit *best = malloc(k * sizeof(topk_hit));
    mlp_search_hit *hits = calloc(k, sizeof *hits);
    float *q = malloc(k * d * sizeof(float));
    int32_t *tok = malloc(k * sizeof(int32_t));
    size_t *rank = malloc(k * sizeof(size_t));
    int rc = TW_OK;
    if (!score || !best || !hits || !q || !tok || !rank) {
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
    free(score);
    free(best);
    free(q);
    free(tok);
    free(rank);
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
    const gpt2_block *blk = &x->m->p.h[x->block];
    if (x->matrix == MLP_SVD_IN) {
        mat_copy_colmajor(B, d, blk->fc_w, d, F, 1.0);
    } else {
        for (size_t j = 0; j < F; j++) /* B (d, F) = W_proj^T */
            for (size_t i = 0; i < d; i++) B[i + j * d] = GPT2_AT(blk->fc_proj_w, j, i);
    }
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

void mlp_svd_result_free(mlp_svd_result *r)
{
    if (!r) return;
    free(r->s); /* the single allocation starts there */
    memset(r, 0, sizeof *r);
}

static void negate_hits(topk_hit *dst, const topk_hit *src, size_t k)
{
    for (size_t i = 0; i < k; i++) dst[i] = (topk_hit){src[i].id, -src[i].score};
}

int mlp_svd(const gpt2_model *m, const ana_ctx *x, int block, int matrix, size_t top, size_t k,
            mlp_svd_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (!mlp_model_ok(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    const size_t r = d < F ? d : F;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (matrix != MLP_SVD_IN && matrix != MLP_SVD_OUT) return TW_EINVAL;
    if (top > r) return TW_ETOP;
    if (k < 1 || k > V || k > F) return TW_EK;

    mlp_svd_result res = {.block = block, .matrix = matrix, .r = r, .top = top, .k = k};
    char *p = malloc(2 * r * sizeof(double) + 3 * top * k * sizeof(topk_hit) + top * sizeof(int) + 1);
    if (!p) return TW_ENOMEM;
    res.s = (double *)p;
    res.coverage = res.s + r;
    res.left = (topk_hit *)(res.coverage + r);
    res.right = res.left + top * k;
    res.neurons = res.right + top * k;
    res.sign = (int *)(res.neurons + top * k);

    const int in = matrix == MLP_SVD_IN;
    blockcache_entry *fe = NULL, *ln2 = NULL;
    float *qd = malloc((top ? top : 1) * d * sizeof(float)); /* the d-space vectors */
    float *qt = malloc((top ? top : 1) * d * sizeof(float)); /* the neuron side, through the other matrix */
    double *y = malloc(F * sizeof(double)), *z = malloc(d * sizeof(double));
    topk_hit *tops = malloc((top ? top : 1) * k * sizeof(topk_hit));
    topk_hit *bots = malloc((top ? top : 1) * k * sizeof(topk_hit));
    int rc = TW_OK;
    if (!qd || !qt || !y || !z || !tops || !bots) {
        rc = TW_ENOMEM;
        goto done;
    }
    char key[48];
    snprintf(key, sizeof key, "mlp-svd-%s:%d", mlp_svd_matrix_name(matrix), block);
    svd_ctx sx = {m, block, matrix};
    if ((rc = blockcache_acquire(ana_cache(x), key, svd_doubles(d, F) * sizeof(double), fill_svd, &sx, &fe)))
        goto done;
    const double *S = blockcache_data(fe), *U = S + r, *VT = U + d * r;
    memcpy(res.s, S, r * sizeof(double));
    double sum = 0.0, acc = 0.0;
    for (size_t t = 0; t < r; t++) sum += S[t];
    res.frac99 = 0.0;
    for (size_t t = 0; t < r; t++) {
        acc += S[t];
        res.coverage[t] = sum > 0.0 ? acc / sum : 0.0;
        if (sum > 0.0 && res.frac99 == 0.0 && res.coverage[t] > 0.99)
            res.frac99 = (double)(t + 1) / (double)r;
    }
    if (top == 0) goto done;

    /* d-space vectors x_t (in: S_t U_t, out: U_t), rounded to float */
    for (size_t t = 0; t < top; t++)
        for (size_t i = 0; i < d; i++) qd[t * d + i] = (float)((in ? S[t] : 1.0) * U[i + t * d]);
    const float *E = m->p.wte;
    if ((rc = mlp_acquire_ln2_embeddings(m, x, block, &ln2))) goto done;
    const float *En2 = blockcache_data(ln2);
    const float *Mx = in ? En2 : E, *My = in ? E : En2; /* references of the two sides */
    if ((rc = topk_rows_opt(Mx, V, d, qd, top, k, tops, bots, &(topk_opts){.cancel = ana_cancel(x)})))
        goto done;
    const gpt2_block *blk = &m->p.h[block];
    for (size_t t = 0; t < top; t++) {
        const topk_hit *tt = tops + t * k, *bb = bots + t * k;
        int sg = tt[0].score >= -bb[0].score ? 1 : -1;
        res.sign[t] = sg;
        topk_hit *dside = in ? res.left : res.right;
        if (sg > 0)
            memcpy(dside + t * k, tt, k * sizeof(topk_hit));
        else
            negate_hits(dside + t * k, bb, k);
        /* the neuron-space vector y_t (in: V_t, out: S_t V_t), signed */
        double sc = sg * (in ? 1.0 : S[t]);
        for (size_t i = 0; i < F; i++) y[i] = sc * VT[t + i * r];
        if ((rc = topk_vec(y, F, k, res.neurons + t * k, NULL))) goto done;
        /* through the other half: in: y W_proj (d); out: W_fc y (d) */
        for (size_t j = 0; j < d; j++) z[j] = 0.0;
        for (size_t i = 0; i < F; i++) {
            double yi = y[i];
            if (in)
                for (size_t j = 0; j < d; j++) z[j] += yi * (double)GPT2_AT(blk->fc_proj_w, i, j);
            else
                for (size_t j = 0; j < d; j++) z[j] += yi * (double)GPT2_AT(blk->fc_w, j, i);
        }
        for (size_t j = 0; j < d; j++) qt[t * d + j] = (float)z[j];
    }
    rc = topk_rows_opt(My, V, d, qt, top, k, in ? res.right : res.left, NULL,
                       &(topk_opts){.cancel = ana_cancel(x)});
done:
    blockcache_release(ana_cache(x), fe);
    blockcache_release(ana_cache(x), ln2);
    free(qd);
    free(qt);
    free(y);
    free(z);
    free(tops);
    free(bots);
    if (rc) {
        mlp_svd_result_free(&res);
        return rc;
    }
    *out = res;
    return TW_OK;
}

/* ---- Sub-updates ---- */

void mlp_updates_result_free(mlp_updates_result *r)
{
    if (!r) return;
    free(r->update_norm); /* the single allocation starts there */
    memset(r, 0, sizeof *r);
}

int mlp_updates(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, size_t top, size_t k,
                mlp_updates_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (!mlp_model_ok(m) || !fr || !fr->mlp_act) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, F = (size_t)m->cfg.n_inner;
    if ((size_t)fr->n_inner != F || (size_t)fr->C != d || fr->L != m->cfg.n_layer || fr->n < 1 ||
        fr->keep_block0 < 0 || fr->keep_blocks < 1 || fr->keep_block0 + fr->keep_blocks > fr->L)
        return TW_EINVAL;
    if (top < 1 || top > F) return TW_ETOP;
    if (k < 1 || k > V) return TW_EK;
    const size_t n = (size_t)fr->n, nb = (size_t)fr->keep_blocks;

    mlp_updates_result r = {.block0 = fr->keep_block0, .n_blocks = nb, .n_tokens = n, .top = top, .k = k};
    char *p = malloc((nb * n + nb) * sizeof(double) + nb * n * top * sizeof(mlp_update) +
                     nb * n * top * k * sizeof(topk_hit));
    if (!p) return TW_ENOMEM;
    r.update_norm = (double *)p;
    r.bias_norm = r.update_norm + nb * n;
    r.updates = (mlp_update *)(r.bias_norm + nb);
    r.tokens = (topk_hit *)(r.updates + nb * n * top);

    double *w = malloc(F * sizeof(double));
    topk_hit *best = malloc(top * sizeof(topk_hit));
    int32_t *slot = malloc(F * sizeof(int32_t)); /* neuron -> row of the unique list, or -1 */
    int32_t *uniq = malloc(F * sizeof(int32_t));
    float *q = malloc(F * d * sizeof(float)), *out_rows = malloc(n * d * sizeof(float));
    topk_hit *uh = malloc(F * k * sizeof(topk_hit));
    int rc = TW_OK;
    if (!w || !best || !slot || !uniq || !q || !out_rows || !uh) {
        rc = TW_ENOMEM;
        goto done;
    }
    for (size_t b = 0; b < nb && rc == TW_OK; b++) {
        const int block = fr->keep_block0 + (int)b;
        blockcache_entry *e = NULL;
        if ((rc = tw_cancel_check(ana_cancel(x))) || (rc = mlp_acquire_values(m, x, block, &e))) break;
        mlp_values_view vv = mlp_values_of(m, e);
        const float *act = fr->mlp_act + b * n * F;
        const float *bp = m->p.h[block].fc_proj_b;
        r.bias_norm[b] = bp ? sqrt(topk_dot(bp, bp, d)) : 0.0;
        /* the MLP output without b_proj, sum_i m_i v_i, by one float GEMM */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)F, 1.0f, act, (int)F,
                    vv.v, (int)d, 0.0f, out_rows, (int)d);
        size_t nu = 0;
        for (size_t i = 0; i < F; i++) slot[i] = -1;
        for (size_t t = 0; t < n && rc == TW_OK; t++) {
            const float *a = act + t * F;
            r.update_norm[b * n + t] = sqrt(topk_dot(out_rows + t * d, out_rows + t * d, d));
            for (size_t i = 0; i < F; i++) w[i] = fabs((double)a[i]) * vv.norm[i];
            if ((rc = topk_vec(w, F, top, best, NULL))) break;
            for (size_t j = 0; j < top; j++) {
                int32_t i = best[j].id;
                r.updates[(b * n + t) * top + j] =
                    (mlp_update){.neuron = i, .coef = a[i], .norm = vv.norm[i], .weight = best[j].score};
                if (slot[i] < 0) {
                    slot[i] = (int32_t)nu;
                    uniq[nu++] = i;
                }
            }
        }
        for (size_t u = 0; u < nu; u++) memcpy(q + u * d, vv.v + (size_t)uniq[u] * d, d * sizeof(float));
        if (!rc)
            rc = topk_rows_opt(m->p.wte, V, d, q, nu, k, uh, NULL, &(topk_opts){.cancel = ana_cancel(x)});
        blockcache_release(ana_cache(x), e);
        for (size_t t = 0; t < n && !rc; t++)
            for (size_t j = 0; j < top; j++) {
                size_t at = (b * n + t) * top + j;
                memcpy(r.tokens + at * k, uh + (size_t)slot[r.updates[at].neuron] * k, k * sizeof(topk_hit));
            }
    }
done:
    free(w);
    free(best);
    free(slot);
    free(uniq);
    free(q);
    free(out_rows);
    free(uh);
    if (rc) {
        mlp_updates_result_free(&r);
        return rc;
    }
    *out = r;
    return TW_OK;
}
