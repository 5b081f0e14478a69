/* SVD of W_qk / W_vo per head and bias probes: see probe_svd.h. */
#include "core/ana/probe_svd.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/linalg.h"

const char *probe_svd_matrix_name(int matrix)
{
    if (matrix == PROBE_SVD_QK) return "qk";
    if (matrix == PROBE_SVD_VO) return "vo";
    return NULL;
}

const char *probe_bias_name(int list)
{
    static const char *const names[PROBE_BIAS_N] = {"a", "-a", "c", "-c"};
    if (list < 0 || list >= PROBE_BIAS_N) return NULL;
    return names[list];
}

/* ---- Per-head factors, cached ----
 * Layout of one cache entry (doubles), col-major matrices:
 *   S   (dh)        singular values, descending
 *   Qx  (d, dh)     orthonormal basis of X's columns
 *   Qy  (d, dh)
 *   Us  (dh, dh)    left singular vectors of Rx Ry^T
 *   VsT (dh, dh)    right singular vectors, transposed (row r = Vs[:, r]) */

typedef struct {
    const double *S, *Qx, *Qy, *Us, *VsT;
} svd_factors;

static size_t factors_doubles(size_t d, size_t dh) { return dh + 2 * d * dh + 2 * dh * dh; }

static void factors_view(const double *p, size_t d, size_t dh, svd_factors *f)
{
    f->S = p;
    f->Qx = f->S + dh;
    f->Qy = f->Qx + d * dh;
    f->Us = f->Qy + d * dh;
    f->VsT = f->Us + dh * dh;
}

typedef struct {
    const gpt2_model *m;
    int block, matrix, head;
} factors_ctx;

/* X (d, dh) col-major -> Q in place, R (dh, dh) col-major upper triangular. */
static int thin_qr(double *X, size_t d, size_t dh, double *R, double *tau)
{
    lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)dh, X, (lapack_int)d, tau);
    if (info != 0) return TW_EINVAL;
    for (size_t j = 0; j < dh; j++)
        for (size_t i = 0; i < dh; i++) R[i + j * dh] = i <= j ? X[i + j * d] : 0.0;
    info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)dh, (lapack_int)dh, X, (lapack_int)d,
                          tau);
    return info == 0 ? TW_OK : TW_EINVAL;
}

static int fill_factors(void *data, size_t bytes, void *ctx)
{
    const factors_ctx *x = ctx;
    const gpt2_model *m = x->m;
    const size_t d = (size_t)m->cfg.n_embd, dh = d / (size_t)m->cfg.n_head;
    if (bytes != factors_doubles(d, dh) * sizeof(double)) return TW_EINVAL;
    double *S = data, *Qx = S + dh, *Qy = Qx + d * dh, *Us = Qy + d * dh, *VsT = Us + dh * dh;

    double *work = malloc((3 * dh * dh + 2 * dh) * sizeof(double));
    if (!work) return TW_ENOMEM;
    double *Rx = work, *Ry = Rx + dh * dh, *B = Ry + dh * dh, *tau = B + dh * dh, *sup = tau + dh;

    gpt2_block_ref bref;
    const gpt2_block *blk;
    int rc = ana_block_acquire(m, x->block, &bref, &blk);
    if (rc) {
        free(work);
        return rc;
    }
    ana_head hs;
    ana_head_slices_of(m, blk, x->head, &hs);
    // X, Y (d, dh) col-major: element (i, j) at [i + j * d]
    if (x->matrix == PROBE_SVD_QK) {
        mat_copy_colmajor(Qx, d, hs.wq, d, dh, 1.0 / sqrt((double)dh));
        mat_copy_colmajor(Qy, d, hs.wk, d, dh, 1.0);
    } else {
        mat_copy_colmajor(Qx, d, hs.wv, d, dh, 1.0);
        for (size_t i = 0; i < d; i++)
            for (size_t j = 0; j < dh; j++) Qy[i + j * d] = GPT2_AT(hs.wo, j, i); // Wo_h^T
    }
    gpt2_block_release(&bref); /* the slices are in Qx, Qy now */
    rc = thin_qr(Qx, d, dh, Rx, tau);
    if (!rc) rc = thin_qr(Qy, d, dh, Ry, tau);
    if (rc) {
        free(work);
        return rc;
    }
    // B (dh, dh) = Rx Ry^T
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)dh, (int)dh, (int)dh, 1.0, Rx, (int)dh, Ry,
                (int)dh, 0.0, B, (int)dh);
    memcpy(Rx, B, dh * dh * sizeof(double)); // keep a copy for the fallback
    lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', (lapack_int)dh, (lapack_int)dh, B, (lapack_int)dh,
                                     S, Us, (lapack_int)dh, VsT, (lapack_int)dh);
    if (info > 0) // did not converge: the slower, more robust driver
        info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'S', 'S', (lapack_int)dh, (lapack_int)dh, Rx, (lapack_int)dh,
                              S, Us, (lapack_int)dh, VsT, (lapack_int)dh, sup);
    free(work);
    return info == 0 ? TW_OK : TW_EINVAL;
}

static int acquire_factors(const gpt2_model *m, const ana_ctx *ax, int block, int matrix, int head,
                           blockcache_entry **e)
{
    const size_t d = (size_t)m->cfg.n_embd, dh = d / (size_t)m->cfg.n_head;
    char key[48];
    snprintf(key, sizeof key, "svd-%s:%d:%d", probe_svd_matrix_name(matrix), block, head);
    factors_ctx x = {m, block, matrix, head};
    return blockcache_acquire_within(ana_cache(ax), key, factors_doubles(d, dh) * sizeof(double),
                                     fill_factors, &x, ana_cancel(ax), e);
}

/* ---- probe_svd ---- */

void probe_svd_result_free(probe_svd_result *r)
{
    if (!r) return;
    free(r->s); // the single allocation starts there
    memset(r, 0, sizeof *r);
}

static void coverage_of(const double *S, size_t dh, double *cov, double *frac)
{
    double sum = 0.0;
    for (size_t r = 0; r < dh; r++) sum += S[r];
    *frac = 0.0;
    if (!(sum > 0.0)) {
        for (size_t r = 0; r < dh; r++) cov[r] = 0.0;
        return;
    }
    double acc = 0.0;
    int found = 0;
    for (size_t r = 0; r < dh; r++) {
        acc += S[r];
        cov[r] = acc / sum;
        if (!found && cov[r] > 0.99) {
            *frac = (double)(r + 1) / (double)dh;
            found = 1;
        }
    }
}

/* Negated copy of a bottom-k list: the top-k of -v. */
static void negate_hits(topk_hit *dst, const topk_hit *src, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        dst[i].id = src[i].id;
        dst[i].score = -src[i].score;
    }
}

/* The result arrays of one matrix (n_heads heads, top directions, k). */
static int svd_result_alloc(probe_svd_result *r, size_t nh, size_t dh, size_t top, size_t k)
{
    const size_t nd = nh * top;
    size_t bytes = (2 * nh * dh + nh) * sizeof(double) + 2 * nd * k * sizeof(topk_hit) + nd * sizeof(int);
    char *p = malloc(bytes);
    if (!p) return TW_ENOMEM;
    r->s = (double *)p;
    r->coverage = r->s + nh * dh;
    r->frac99 = r->coverage + nh * dh;
    r->left = (topk_hit *)(r->frac99 + nh);
    r->right = r->left + nd * k;
    r->sign = (int *)(r->right + nd * k);
    return TW_OK;
}

/* Spectra of r's heads, and their first `top` directions as float queries:
 * left S_t Qx Us[:, t] into ql (nd, d), right Qy Vs[:, t] into qr (nd, d),
 * row i * top + t. */
static int svd_spectra_queries(const gpt2_model *m, const ana_ctx *x, probe_svd_result *r, float *ql,
                               float *qr, double *tmp)
{
    blockcache *c = ana_cache(x);
    const size_t d = (size_t)m->cfg.n_embd, dh = r->dh, top = r->top;
    int rc = TW_OK;
    for (size_t i = 0; i < r->n_heads && rc == TW_OK; i++) {
        blockcache_entry *fe = NULL;
        if ((rc = tw_cancel_check(ana_cancel(x))) != TW_OK) break;
        rc = acquire_factors(m, x, r->block, r->matrix, r->first_head + (int)i, &fe);
        if (rc) break;
        svd_factors f;
        factors_view(blockcache_data(fe), d, dh, &f);
        memcpy(r->s + i * dh, f.S, dh * sizeof(double));
        coverage_of(f.S, dh, r->coverage + i * dh, &r->frac99[i]);
        for (size_t t = 0; t < top; t++) {
            // left: S_t Qx Us[:, t]
            cblas_dgemv(CblasColMajor, CblasNoTrans, (int)d, (int)dh, f.S[t], f.Qx, (int)d, f.Us + t * dh, 1,
                        0.0, tmp, 1);
            for (size_t j = 0; j < d; j++) ql[(i * top + t) * d + j] = (float)tmp[j];
            // right: Qy Vs[:, t], Vs[:, t] = row t of VsT (stride dh)
            cblas_dgemv(CblasColMajor, CblasNoTrans, (int)d, (int)dh, 1.0, f.Qy, (int)d, f.VsT + t, (int)dh,
                        0.0, tmp, 1);
            for (size_t j = 0; j < d; j++) qr[(i * top + t) * d + j] = (float)tmp[j];
        }
        blockcache_release(c, fe);
    }
    return rc;
}

/* The sign rule and the reported lists of r's nd directions from the top-k
 * and bottom-k of the left (lt, lb) and right (rt, rb) queries. */
static void svd_lists(probe_svd_result *r, const topk_hit *lt, const topk_hit *lb, const topk_hit *rt,
                      const topk_hit *rb)
{
    const size_t nd = r->n_heads * r->top, k = r->k;
    for (size_t n = 0; n < nd; n++) {
        // max_j v.Mr_j = rt[0].score; max_j (-v.Mr_j) = -rb[0].score
        int sgn = rt[n * k].score >= -rb[n * k].score ? 1 : -1;
        r->sign[n] = sgn;
        if (sgn > 0) {
            memcpy(r->left + n * k, lt + n * k, k * sizeof(topk_hit));
            memcpy(r->right + n * k, rt + n * k, k * sizeof(topk_hit));
        } else {
            negate_hits(r->left + n * k, lb + n * k, k);
            negate_hits(r->right + n * k, rb + n * k, k);
        }
    }
}

int probe_svd(const gpt2_model *m, const ana_ctx *x, int block, int matrix, int head, size_t top, size_t k,
              probe_svd_result *out)
{
    return probe_svd_multi(m, x, block, &matrix, 1, head, top, k, out);
}

int probe_svd_multi(const gpt2_model *m, const ana_ctx *x, int block, const int *matrices, size_t n_mat,
                    int head, size_t top, size_t k, probe_svd_result *out)
{
    blockcache *c = ana_cache(x);
    if (!out || !matrices || n_mat < 1 || n_mat > 2) return TW_EINVAL;
    memset(out, 0, n_mat * sizeof *out);
    if (ana_check_model(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    for (size_t i = 0; i < n_mat; i++)
        if ((matrices[i] != PROBE_SVD_QK && matrices[i] != PROBE_SVD_VO) ||
            (i == 1 && matrices[1] == matrices[0]))
            return TW_EINVAL;
    if (head < -1 || head >= (int)H) return TW_EHEAD;
    if (top > dh) return TW_ETOP;
    if (k < 1 || k > V) return TW_EK;

    const size_t nh = head < 0 ? H : 1;
    const int h0 = head < 0 ? 0 : head;
    const size_t nd = nh * top; // directions probed per matrix
    probe_svd_result r[2] = {{0}, {0}};
    int rc = TW_OK;
    for (size_t i = 0; i < n_mat && rc == TW_OK; i++) {
        rc = svd_result_alloc(&r[i], nh, dh, top, k);
        r[i].block = block;
        r[i].matrix = matrices[i];
        r[i].first_head = h0;
        r[i].n_heads = nh;
        r[i].dh = dh;
        r[i].top = top;
        r[i].k = k;
    }

    /* Every query of the request against LN_b(E) shares one GEMM pass, and
     * every one against E another (docs/MATH.md §5): rows of q (2 n_mat nd,
     * d) are, per matrix in order, its nd left then nd right queries; QK's
     * left and right and VO's left go against En, VO's right against E.
     * The En queries are gathered in qen, the E ones in qe. */
    const size_t nq = 2 * n_mat * nd;
    float *q = nq ? malloc(nq * d * sizeof(float)) : NULL;
    float *qen = nq ? malloc(nq * d * sizeof(float)) : NULL;
    double *tmp = malloc(d * sizeof(double));
    topk_hit *tops = nq ? malloc(nq * k * sizeof(topk_hit)) : NULL;
    topk_hit *bots = nq ? malloc(nq * k * sizeof(topk_hit)) : NULL;
    size_t pos[4]; /* row of each query group (matrix i, side s) in the gathered order: En rows first */
    blockcache_entry *en_e = NULL;
    if (rc == TW_OK && (!tmp || (nq && (!q || !qen || !tops || !bots)))) rc = TW_ENOMEM;
    for (size_t i = 0; i < n_mat && rc == TW_OK; i++)
        rc = svd_spectra_queries(m, x, &r[i], q ? q + 2 * i * nd * d : NULL,
                                 q ? q + (2 * i + 1) * nd * d : NULL, tmp);
    if (rc || nd == 0) goto done;

    size_t n_en = 0;
    for (size_t i = 0; i < n_mat; i++)
        for (int side = 0; side < 2; side++)
            if (side == 0 || matrices[i] == PROBE_SVD_QK) {
                pos[2 * i + (size_t)side] = n_en;
                memcpy(qen + n_en * d, q + (2 * i + (size_t)side) * nd * d, nd * d * sizeof(float));
                n_en += nd;
            }
    size_t n_e = n_en;
    for (size_t i = 0; i < n_mat; i++)
        if (matrices[i] == PROBE_SVD_VO) {
            pos[2 * i + 1] = n_e;
            memcpy(qen + n_e * d, q + (2 * i + 1) * nd * d, nd * d * sizeof(float));
            n_e += nd;
        }

    rc = ana_acquire_ln1_embeddings(m, x, block, &en_e);
    if (rc) goto done;
    rc = topk_rows_opt(blockcache_data(en_e), V, d, qen, n_en, k, tops, bots,
                       &(topk_opts){.max_row_norm = ana_ln1_max_norm(m, en_e), .cancel = ana_cancel(x)});
    if (!rc && n_e > n_en)
        rc = topk_rows_opt(
            m->p.wte, V, d, qen + n_en * d, n_e - n_en, k, tops + n_en * k, bots + n_en * k,
            &(topk_opts){.max_row_norm = ana_ln1_wte_max_norm(m, en_e), .cancel = ana_cancel(x)});
    if (rc) goto done;
    for (size_t i = 0; i < n_mat; i++) {
        size_t pl = pos[2 * i] * k, pr = pos[2 * i + 1] * k;
        svd_lists(&r[i], tops + pl, bots + pl, tops + pr, bots + pr);
    }

done:
    blockcache_release(c, en_e);
    free(q);
    free(qen);
    free(tmp);
    free(tops);
    free(bots);
    if (rc) {
        for (size_t i = 0; i < n_mat; i++) probe_svd_result_free(&r[i]);
        return rc;
    }
    memcpy(out, r, n_mat * sizeof *out);
    return TW_OK;
}

/* ---- Bias probes ---- */

void probe_bias_result_free(probe_bias_result *r)
{
    if (!r) return;
    free(r->hits);
    memset(r, 0, sizeof *r);
}

int probe_svd_bias(const gpt2_model *m, const ana_ctx *x, int block, size_t k, probe_bias_result *out)
{
    blockcache *c = ana_cache(x);
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    const size_t H = (size_t)m->cfg.n_head, dh = d / H;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (k < 1 || k > V) return TW_EK;

    topk_hit *hits = malloc(H * PROBE_BIAS_N * k * sizeof(topk_hit));
    float *q = malloc(2 * H * d * sizeof(float)); // (2H, d): a_h, c_h
    topk_hit *tops = malloc(2 * H * k * sizeof(topk_hit));
    topk_hit *bots = malloc(2 * H * k * sizeof(topk_hit));
    blockcache_entry *en_e = NULL;
    gpt2_block_ref bref = {0};
    const gpt2_block *blk = NULL;
    int rc = TW_OK;
    if (!hits || !q || !tops || !bots) {
        rc = TW_ENOMEM;
        goto done;
    }
    if ((rc = ana_block_acquire(m, block, &bref, &blk)) != TW_OK) goto done;
    for (size_t h = 0; h < H; h++) {
        ana_head hs;
        ana_head_slices_of(m, blk, (int)h, &hs);
        float *a = q + (2 * h) * d, *cv = q + (2 * h + 1) * d;
        /* a model without biases has a = c = 0 (docs/MATH.md §6) */
        for (size_t i = 0; i < d; i++) {
            double sa = 0.0, sc = 0.0;
            for (size_t j = 0; hs.bk && j < dh; j++) {
                sa += (double)GPT2_AT(hs.wq, i, j) * hs.bk[j];
                sc += (double)GPT2_AT(hs.wk, i, j) * hs.bq[j];
            }
            a[i] = (float)sa;
            cv[i] = (float)sc;
        }
    }
    gpt2_block_release(&bref);
    rc = ana_acquire_ln1_embeddings(m, x, block, &en_e);
    if (rc) goto done;
    rc = topk_rows_opt(blockcache_data(en_e), V, d, q, 2 * H, k, tops, bots,
                       &(topk_opts){.max_row_norm = ana_ln1_max_norm(m, en_e), .cancel = ana_cancel(x)});
    if (rc) goto done;
    for (size_t h = 0; h < H; h++) {
        topk_hit *dst = hits + h * PROBE_BIAS_N * k;
        memcpy(dst + PROBE_BIAS_A * k, tops + (2 * h) * k, k * sizeof(topk_hit));
        negate_hits(dst + PROBE_BIAS_A_NEG * k, bots + (2 * h) * k, k);
        memcpy(dst + PROBE_BIAS_C * k, tops + (2 * h + 1) * k, k * sizeof(topk_hit));
        negate_hits(dst + PROBE_BIAS_C_NEG * k, bots + (2 * h + 1) * k, k);
    }

done:
    blockcache_release(c, en_e);
    free(q);
    free(tops);
    free(bots);
    if (rc) {
        free(hits);
        return rc;
    }
    out->block = block;
    out->n_head = H;
    out->k = k;
    out->hits = hits;
    return TW_OK;
}
