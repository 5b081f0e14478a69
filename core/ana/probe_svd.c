/* SVD of W_qk / W_vo per head and bias probes: see probe_svd.h. */
#include "core/ana/probe_svd.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ana/lnscreen.h"
#include "core/nn/linalg.h"
#include "core/nn/par.h"

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
 *   Hx  (d, dh)     X's QR as dgeqrf leaves it: Householder vectors below
 *                   the diagonal (R on and above it, not used again)
 *   Hy  (d, dh)
 *   Us  (dh, dh)    left singular vectors of Rx Ry^T
 *   VsT (dh, dh)    right singular vectors, transposed (row r = Vs[:, r])
 *   tx, ty (dh)     the reflectors' scalars
 * Qx is never formed (dorgqr would cost as much as the QR itself, and the
 * spectra do not need it): Qx z is dormqr applied to (z; 0). */

typedef struct {
    const double *S, *Hx, *Hy, *Us, *VsT, *tx, *ty;
} svd_factors;

static size_t factors_doubles(size_t d, size_t dh) { return 3 * dh + 2 * d * dh + 2 * dh * dh; }

static void factors_view(const double *p, size_t d, size_t dh, svd_factors *f)
{
    f->S = p;
    f->Hx = f->S + dh;
    f->Hy = f->Hx + d * dh;
    f->Us = f->Hy + d * dh;
    f->VsT = f->Us + dh * dh;
    f->tx = f->VsT + dh * dh;
    f->ty = f->tx + dh;
}

typedef struct {
    const gpt2_model *m;
    int block, matrix, head;
    const gpt2_block *blk; /* the block, already acquired by the caller; NULL: acquired here */
} factors_ctx;

/* X (d, dh) col-major -> its dgeqrf factorisation in place (tau: dh), R
 * (dh, dh) col-major upper triangular copied out. X is finite (factors_xy
 * checked it), so LAPACKE's NaN scan of it is skipped (_work): the same
 * call of dgeqrf with the workspace it asks for. */
static int thin_qr(double *X, size_t d, size_t dh, double *R, double *tau)
{
    double wq = 0.0;
    lapack_int info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)dh, X, (lapack_int)d, tau,
                                          &wq, -1);
    lapack_int lwork = info == 0 && wq >= 1.0 ? (lapack_int)wq : (lapack_int)dh;
    double *work = malloc((size_t)lwork * sizeof(double));
    if (!work) return TW_ENOMEM;
    info = LAPACKE_dgeqrf_work(LAPACK_COL_MAJOR, (lapack_int)d, (lapack_int)dh, X, (lapack_int)d, tau, work, lwork);
    free(work);
    if (info != 0) return TW_EINVAL;
    for (size_t j = 0; j < dh; j++)
        for (size_t i = 0; i < dh; i++) R[i + j * dh] = i <= j ? X[i + j * d] : 0.0;
    return TW_OK;
}

/* Z (d, n) col-major := Q Z for the Q of a thin_qr (H, tau); only Z's
 * first dh rows need be set, the others zero. */
static int apply_q(const double *H, const double *tau, size_t d, size_t dh, double *Z, size_t n)
{
    /* H and Z are finite (a finite QR; Z from a converged SVD): no NaN scan (_work) */
    double wq = 0.0;
    lapack_int info = LAPACKE_dormqr_work(LAPACK_COL_MAJOR, 'L', 'N', (lapack_int)d, (lapack_int)n,
                                          (lapack_int)dh, H, (lapack_int)d, tau, Z, (lapack_int)d, &wq, -1);
    lapack_int lwork = info == 0 && wq >= 1.0 ? (lapack_int)wq : (lapack_int)(n ? n : 1);
    double *work = malloc((size_t)lwork * sizeof(double));
    if (!work) return TW_ENOMEM;
    info = LAPACKE_dormqr_work(LAPACK_COL_MAJOR, 'L', 'N', (lapack_int)d, (lapack_int)n, (lapack_int)dh, H,
                               (lapack_int)d, tau, Z, (lapack_int)d, work, lwork);
    free(work);
    return info == 0 ? TW_OK : TW_EINVAL;
}

/* X, Y (d, dh) col-major (element (i, j) at [i + j * d]) of a head. */
static int factors_xy(const factors_ctx *x, size_t d, size_t dh, double *X, double *Y)
{
    gpt2_block_ref bref = {0};
    const gpt2_block *blk = x->blk;
    int rc = blk ? TW_OK : ana_block_acquire(x->m, x->block, &bref, &blk);
    if (rc) return rc;
    ana_head hs;
    ana_head_slices_of(x->m, blk, x->head, &hs);
    if (x->matrix == PROBE_SVD_QK) {
        mat_copy_colmajor(X, d, hs.wq, d, dh, 1.0 / sqrt((double)dh));
        mat_copy_colmajor(Y, d, hs.wk, d, dh, 1.0);
    } else {
        mat_copy_colmajor(X, d, hs.wv, d, dh, 1.0);
        for (size_t j = 0; j < dh; j++) // Wo_h^T, Wo_h's rows read in order
            for (size_t i = 0; i < d; i++) Y[i + j * d] = GPT2_AT(hs.wo, j, i);
    }
    gpt2_block_release(&bref); /* the slices are in X, Y now */
    /* a NaN weight has no factors (what LAPACKE's NaN check of dgeqrf said
     * before the scan was left to this loop; infinities pass, as there) */
    bool nan = false;
    for (size_t i = 0; i < d * dh; i++) nan |= isnan(X[i]) || isnan(Y[i]);
    return nan ? TW_EINVAL : TW_OK;
}

static int fill_factors(void *data, size_t bytes, void *ctx)
{
    const factors_ctx *x = ctx;
    const gpt2_model *m = x->m;
    const size_t d = (size_t)m->cfg.n_embd, dh = d / (size_t)m->cfg.n_head;
    if (bytes != factors_doubles(d, dh) * sizeof(double)) return TW_EINVAL;
    svd_factors f;
    factors_view(data, d, dh, &f);
    double *S = (double *)f.S, *Hx = (double *)f.Hx, *Hy = (double *)f.Hy, *Us = (double *)f.Us,
           *VsT = (double *)f.VsT;

    double *work = malloc((3 * dh * dh + dh) * sizeof(double));
    if (!work) return TW_ENOMEM;
    double *Rx = work, *Ry = Rx + dh * dh, *B = Ry + dh * dh, *sup = B + dh * dh;
    int rc = factors_xy(x, d, dh, Hx, Hy);
    if (!rc) rc = thin_qr(Hx, d, dh, Rx, (double *)f.tx);
    if (!rc) rc = thin_qr(Hy, d, dh, Ry, (double *)f.ty);
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

static void factors_key(char *key, size_t n, int matrix, int block, int head)
{
    snprintf(key, n, "svd-%s:%d:%d", probe_svd_matrix_name(matrix), block, head);
}

static int acquire_factors(const gpt2_model *m, const ana_ctx *ax, const gpt2_block *blk, int block,
                           int matrix, int head, blockcache_entry **e)
{
    const size_t d = (size_t)m->cfg.n_embd, dh = d / (size_t)m->cfg.n_head;
    char key[48];
    factors_key(key, sizeof key, matrix, block, head);
    factors_ctx x = {m, block, matrix, head, blk};
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

/* ---- The per-head steps, several heads at once ----
 * A head's factors (two thin QRs of d x dh, one dh x dh SVD) and its query
 * vectors (2 top matrix-vector products of d x dh) are many small LAPACK and
 * BLAS calls: OpenBLAS's threads cost more in hand-offs there than they save
 * (on a loaded machine, far more: a whole-model sweep of the spectra spent
 * minutes in them). So the heads are shared among as many threads as
 * OpenBLAS has (nn_parts), each calling BLAS with one thread, and every
 * head's steps stay what they were (the same calls, the same answers). */

typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    probe_svd_result *r;
    float *ql, *qr;        /* (nd, d) each, or NULL (top 0) */
    const gpt2_block *blk; /* the block, when a head's factors are to be computed */
    atomic_size_t next;    /* the next head to take */
    int rc[NN_MAX_PARTS];
} heads_ctx;

/* Head i of r: its spectrum, coverage, and its first `top` directions as
 * float queries, left S_t Qx Us[:, t] into ql, right Qy Vs[:, t] into qr,
 * row i * top + t. Z: (d, top) doubles. */
static int head_spectrum_queries(const heads_ctx *hc, size_t i, double *Z)
{
    const gpt2_model *m = hc->m;
    probe_svd_result *r = hc->r;
    const size_t d = (size_t)m->cfg.n_embd, dh = r->dh, top = r->top;
    blockcache_entry *fe = NULL;
    int rc = tw_cancel_check(ana_cancel(hc->x));
    if (rc == TW_OK)
        rc = acquire_factors(m, hc->x, hc->blk, r->block, r->matrix, r->first_head + (int)i, &fe);
    if (rc) return rc;
    svd_factors f;
    factors_view(blockcache_data(fe), d, dh, &f);
    memcpy(r->s + i * dh, f.S, dh * sizeof(double));
    coverage_of(f.S, dh, r->coverage + i * dh, &r->frac99[i]);
    if (top) {
        // left: Z[:, t] = Qx (S_t Us[:, t]; 0)
        memset(Z, 0, d * top * sizeof(double));
        for (size_t t = 0; t < top; t++)
            for (size_t j = 0; j < dh; j++) Z[j + t * d] = f.S[t] * f.Us[j + t * dh];
        rc = apply_q(f.Hx, f.tx, d, dh, Z, top);
        for (size_t t = 0; rc == TW_OK && t < top; t++)
            for (size_t j = 0; j < d; j++) hc->ql[(i * top + t) * d + j] = (float)Z[j + t * d];
        // right: Z[:, t] = Qy (Vs[:, t]; 0), Vs[:, t] = row t of VsT (stride dh)
        memset(Z, 0, d * top * sizeof(double));
        for (size_t t = 0; t < top; t++)
            for (size_t j = 0; j < dh; j++) Z[j + t * d] = f.VsT[t + j * dh];
        if (rc == TW_OK) rc = apply_q(f.Hy, f.ty, d, dh, Z, top);
        for (size_t t = 0; rc == TW_OK && t < top; t++)
            for (size_t j = 0; j < d; j++) hc->qr[(i * top + t) * d + j] = (float)Z[j + t * d];
    }
    blockcache_release(ana_cache(hc->x), fe);
    return rc;
}

/* ---- Spectra alone (top 0) ----
 * The singular values of W_h = X Y^T are those of Rx Ry^T for any R with
 * R^T R = X^T X (QR's R up to the signs of its rows, which change no
 * singular value): from the Cholesky factors of the Gram matrices (one
 * level-3 dsyrk each, where the unblocked Householder QR of a d x dh
 * panel is level 2) and a values-only SVD, in a fraction of the factors'
 * time. Squaring X loses accuracy with its condition: a Gram matrix whose
 * estimated reciprocal condition is below GRAM_RCOND_MIN (kappa(X) above
 * about 1e3, where the singular values could move by 1e-10 of the largest)
 * is left to the factors, and so is a head whose factors are cached. */
#define GRAM_RCOND_MIN 1e-6

/* R (dh, dh) upper, zero below: the Cholesky factor of X^T X (X (d, dh)
 * col-major). TW_OK, or 1 when X is too badly conditioned for it. */
static int gram_factor(const double *X, size_t d, size_t dh, double *R)
{
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, (int)dh, (int)d, 1.0, X, (int)d, 0.0, R, (int)dh);
    double anorm = LAPACKE_dlansy(LAPACK_COL_MAJOR, '1', 'U', (lapack_int)dh, R, (lapack_int)dh), rcond = 0.0;
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', (lapack_int)dh, R, (lapack_int)dh) != 0) return 1;
    if (LAPACKE_dpocon(LAPACK_COL_MAJOR, 'U', (lapack_int)dh, R, (lapack_int)dh, anorm, &rcond) != 0 ||
        !(rcond >= GRAM_RCOND_MIN))
        return 1;
    for (size_t j = 0; j < dh; j++)
        for (size_t i = j + 1; i < dh; i++) R[i + j * dh] = 0.0;
    return TW_OK;
}

/* The singular values S (dh) of head `head` of r by the Gram matrices;
 * work: 2 d dh + 3 dh dh doubles. TW_OK, 1 (use the factors), or an error. */
static int head_spectrum_gram(const heads_ctx *hc, int head, double *S, double *work)
{
    const size_t d = (size_t)hc->m->cfg.n_embd, dh = hc->r->dh;
    double *X = work, *Y = X + d * dh, *Rx = Y + d * dh, *Ry = Rx + dh * dh, *B = Ry + dh * dh;
    factors_ctx fx = {hc->m, hc->r->block, hc->r->matrix, head, hc->blk};
    int rc = factors_xy(&fx, d, dh, X, Y);
    if (rc) return rc;
    if (gram_factor(X, d, dh, Rx) || gram_factor(Y, d, dh, Ry)) return 1;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)dh, (int)dh, (int)dh, 1.0, Rx, (int)dh, Ry,
                (int)dh, 0.0, B, (int)dh);
    lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)dh, (lapack_int)dh, B, (lapack_int)dh,
                                     S, NULL, 1, NULL, 1);
    return info == 0 ? TW_OK : 1;
}

/* Head i of r with top 0: the cached factors' spectrum when they are
 * cached, else head_spectrum_gram's, else the factors'. */
static int head_spectrum_only(const heads_ctx *hc, size_t i, double *work)
{
    probe_svd_result *r = hc->r;
    const size_t d = (size_t)hc->m->cfg.n_embd, dh = r->dh;
    const int head = r->first_head + (int)i;
    char key[48];
    factors_key(key, sizeof key, r->matrix, r->block, head);
    blockcache_entry *fe = NULL;
    int rc = tw_cancel_check(ana_cancel(hc->x));
    if (rc) return rc;
    if (!hc->blk ||
        blockcache_lookup(ana_cache(hc->x), key, factors_doubles(d, dh) * sizeof(double), &fe) == TW_OK) {
        blockcache_release(ana_cache(hc->x), fe);
        return head_spectrum_queries(hc, i, NULL);
    }
    double *S = r->s + i * dh;
    rc = head_spectrum_gram(hc, head, S, work);
    if (rc == 1) return head_spectrum_queries(hc, i, NULL);
    if (rc == TW_OK) coverage_of(S, dh, r->coverage + i * dh, &r->frac99[i]);
    return rc;
}

/* Part `part` of the heads: takes the next head not yet taken until none
 * is left; a part beyond the BLAS budget stops taking any (a computation
 * that starts meanwhile takes its share from the server, and this one
 * shrinks to what is left of it), part 0 always goes on. */
static void heads_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)lo;
    (void)hi;
    heads_ctx *hc = ctx;
    const size_t d = (size_t)hc->m->cfg.n_embd, dh = hc->r->dh, top = hc->r->top;
    double *tmp = malloc((top ? d * top + 1 : 2 * d * dh + 3 * dh * dh) * sizeof(double));
    int rc = tmp ? TW_OK : TW_ENOMEM;
    while (rc == TW_OK && (part == 0 || part < nn_parts())) {
        size_t i = atomic_fetch_add(&hc->next, 1);
        if (i >= hc->r->n_heads) break;
        rc = top ? head_spectrum_queries(hc, i, tmp) : head_spectrum_only(hc, i, tmp);
    }
    free(tmp);
    hc->rc[part] = rc;
}

/* Whether the factors of some head of r are not in the cache. */
static bool factors_missing(const gpt2_model *m, const ana_ctx *x, const probe_svd_result *r)
{
    const size_t d = (size_t)m->cfg.n_embd;
    for (size_t i = 0; i < r->n_heads; i++) {
        char key[48];
        factors_key(key, sizeof key, r->matrix, r->block, r->first_head + (int)i);
        blockcache_entry *e = NULL;
        if (blockcache_lookup(ana_cache(x), key, factors_doubles(d, r->dh) * sizeof(double), &e) != TW_OK)
            return true;
        blockcache_release(ana_cache(x), e);
    }
    return false;
}

/* Spectra and queries of every head of r (head_spectrum_queries), the heads
 * shared among the BLAS budget's threads with one BLAS thread each
 * (nn_blas_single_begin: OpenBLAS's count is process-wide, and the budget
 * is what the server shares out; when another computation starts meanwhile
 * it takes its share and the parts beyond this one's stop, and at the end
 * OpenBLAS gets the budget as it is then, never more). */
static int svd_spectra_queries(const gpt2_model *m, const ana_ctx *x, const gpt2_block *blk,
                               probe_svd_result *r, float *ql, float *qr)
{
    heads_ctx hc = {.m = m, .x = x, .r = r, .ql = ql, .qr = qr, .blk = blk};
    atomic_init(&hc.next, 0);
    int parts = nn_blas_single_begin();
    if ((size_t)parts > r->n_heads) parts = (int)r->n_heads;
    nn_parallel_rows(r->n_heads, parts, heads_part, &hc);
    nn_blas_single_end();
    for (int p = 0; p < parts; p++)
        if (hc.rc[p]) return hc.rc[p];
    return TW_OK;
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

/* The checks of probe_svd_multi's arguments. */
static int svd_check(const gpt2_model *m, int block, const int *matrices, size_t n_mat, int head, size_t top,
                     size_t k)
{
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
    return TW_OK;
}

/* The queries of one request and their lists: rows of q (2 n_mat nd, d)
 * are, per matrix in order, its nd left then nd right queries; they are
 * gathered into qen with the En queries first (QK's left and right, VO's
 * left: n_en rows), then the E ones (VO's right), pos[2 i + side] being
 * where group (matrix i, side) starts there. */
typedef struct {
    size_t nd, nq, n_en, n_e;
    float *q, *qen;
    topk_hit *tops, *bots;
    size_t pos[4];
} svd_queries;

static int svd_queries_alloc(svd_queries *sq, size_t n_mat, size_t nd, size_t d, size_t k)
{
    memset(sq, 0, sizeof *sq);
    sq->nd = nd;
    sq->nq = 2 * n_mat * nd;
    if (!sq->nq) return TW_OK;
    sq->q = malloc(sq->nq * d * sizeof(float));
    sq->qen = malloc(sq->nq * d * sizeof(float));
    sq->tops = malloc(sq->nq * k * sizeof(topk_hit));
    sq->bots = malloc(sq->nq * k * sizeof(topk_hit));
    return sq->q && sq->qen && sq->tops && sq->bots ? TW_OK : TW_ENOMEM;
}

static void svd_queries_free(svd_queries *sq)
{
    free(sq->q);
    free(sq->qen);
    free(sq->tops);
    free(sq->bots);
}

static void svd_queries_gather(svd_queries *sq, const int *matrices, size_t n_mat, size_t d)
{
    const size_t nd = sq->nd;
    sq->n_en = 0;
    for (size_t i = 0; i < n_mat; i++)
        for (size_t side = 0; side < 2; side++)
            if (side == 0 || matrices[i] == PROBE_SVD_QK) {
                sq->pos[2 * i + side] = sq->n_en;
                memcpy(sq->qen + sq->n_en * d, sq->q + (2 * i + side) * nd * d, nd * d * sizeof(float));
                sq->n_en += nd;
            }
    sq->n_e = sq->n_en;
    for (size_t i = 0; i < n_mat; i++)
        if (matrices[i] == PROBE_SVD_VO) {
            sq->pos[2 * i + 1] = sq->n_e;
            memcpy(sq->qen + sq->n_e * d, sq->q + (2 * i + 1) * nd * d, nd * d * sizeof(float));
            sq->n_e += nd;
        }
}

/* Every gathered query against LN_b(E) in one GEMM pass, every E one in
 * another (docs/MATH.md §5): LN_b(E) formed tile by tile unless the block's
 * matrix is cached (ana_ln1_rows_open). */
static int svd_queries_probe(const gpt2_model *m, const ana_ctx *x, int block, svd_queries *sq, size_t k)
{
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    ana_ln_rows en;
    float r_e = 0.0f;
    int rc = ana_ln1_rows_open(m, x, block, &en);
    if (!rc) rc = topk_rows_formed(&en.f, sq->qen, sq->n_en, k, sq->tops, sq->bots,
                                   &(topk_opts){.cancel = ana_cancel(x)});
    ana_ln_rows_close(&en);
    if (!rc && sq->n_e > sq->n_en) rc = ana_wte_max_norm(m, x, &r_e);
    if (!rc && sq->n_e > sq->n_en)
        rc = topk_rows_opt(m->p.wte, V, d, sq->qen + sq->n_en * d, sq->n_e - sq->n_en, k,
                           sq->tops + sq->n_en * k, sq->bots + sq->n_en * k,
                           &(topk_opts){.max_row_norm = r_e, .cancel = ana_cancel(x)});
    return rc;
}

int probe_svd_multi(const gpt2_model *m, const ana_ctx *x, int block, const int *matrices, size_t n_mat,
                    int head, size_t top, size_t k, probe_svd_result *out)
{
    if (!out || !matrices || n_mat < 1 || n_mat > 2) return TW_EINVAL;
    memset(out, 0, n_mat * sizeof *out);
    int rc = svd_check(m, block, matrices, n_mat, head, top, k);
    if (rc) return rc;
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    const size_t nh = head < 0 ? H : 1;
    const size_t nd = nh * top; // directions probed per matrix
    probe_svd_result r[2] = {{0}, {0}};
    for (size_t i = 0; i < n_mat && rc == TW_OK; i++) {
        rc = svd_result_alloc(&r[i], nh, dh, top, k);
        r[i].block = block;
        r[i].matrix = matrices[i];
        r[i].first_head = head < 0 ? 0 : head;
        r[i].n_heads = nh;
        r[i].dh = dh;
        r[i].top = top;
        r[i].k = k;
    }
    svd_queries sq = {0};
    if (rc == TW_OK) rc = svd_queries_alloc(&sq, n_mat, nd, d, k);
    /* the block once for every head whose factors are missing (an F16
     * block not kept converted is converted once, not once per head) */
    gpt2_block_ref bref = {0};
    const gpt2_block *blk = NULL;
    bool missing = false;
    for (size_t i = 0; i < n_mat && rc == TW_OK; i++) missing = missing || factors_missing(m, x, &r[i]);
    if (missing && ana_block_acquire(m, block, &bref, &blk) != TW_OK) blk = NULL; /* then per head */
    for (size_t i = 0; i < n_mat && rc == TW_OK; i++)
        rc = svd_spectra_queries(m, x, blk, &r[i], sq.q ? sq.q + 2 * i * nd * d : NULL,
                                 sq.q ? sq.q + (2 * i + 1) * nd * d : NULL);
    gpt2_block_release(&bref);
    if (rc == TW_OK && nd) {
        svd_queries_gather(&sq, matrices, n_mat, d);
        rc = svd_queries_probe(m, x, block, &sq, k);
        for (size_t i = 0; i < n_mat && rc == TW_OK; i++) {
            size_t pl = sq.pos[2 * i] * k, pr = sq.pos[2 * i + 1] * k;
            svd_lists(&r[i], sq.tops + pl, sq.bots + pl, sq.tops + pr, sq.bots + pr);
        }
    }
    svd_queries_free(&sq);
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

/* The queries a_h = Wq_h bk_h and c_h = Wk_h bq_h of every head of block
 * `block` into q (2H, d): row 2h a_h, row 2h + 1 c_h. */
static int bias_queries(const gpt2_model *m, int block, float *q)
{
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    gpt2_block_ref bref = {0};
    const gpt2_block *blk = NULL;
    int rc = ana_block_acquire(m, block, &bref, &blk);
    if (rc) return rc;
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
    return TW_OK;
}

/* The four lists of every head of one block from the top and bottom lists
 * (2H, k) of its queries. */
static void bias_lists(size_t H, size_t k, const topk_hit *tops, const topk_hit *bots, topk_hit *hits)
{
    for (size_t h = 0; h < H; h++) {
        topk_hit *dst = hits + h * PROBE_BIAS_N * k;
        memcpy(dst + PROBE_BIAS_A * k, tops + (2 * h) * k, k * sizeof(topk_hit));
        negate_hits(dst + PROBE_BIAS_A_NEG * k, bots + (2 * h) * k, k);
        memcpy(dst + PROBE_BIAS_C * k, tops + (2 * h + 1) * k, k * sizeof(topk_hit));
        negate_hits(dst + PROBE_BIAS_C_NEG * k, bots + (2 * h + 1) * k, k);
    }
}

int probe_svd_bias(const gpt2_model *m, const ana_ctx *x, int block, size_t k, probe_bias_result *out)
{
    return probe_svd_bias_sweep(m, x, block, block, k, out);
}

/* ---- A sweep's blocks ahead, kept in the cache ----
 * "bias:<k>:<b>": block b's hits (H, PROBE_BIAS_N, k), computed in the
 * GEMM passes of an earlier block of the same sweep. */

static size_t bias_hits_bytes(const gpt2_model *m, size_t k)
{
    return (size_t)m->cfg.n_head * PROBE_BIAS_N * k * sizeof(topk_hit);
}

static void bias_key(char *key, size_t n, size_t k, int block) { snprintf(key, n, "bias:%zu:%d", k, block); }

static int fill_copy(void *data, size_t bytes, void *ctx)
{
    memcpy(data, ctx, bytes);
    return TW_OK;
}

/* Keeps r's hits for a later call (best effort: no room, no keeping). */
static void bias_keep(const gpt2_model *m, const ana_ctx *x, const probe_bias_result *r)
{
    char key[48];
    bias_key(key, sizeof key, r->k, r->block);
    blockcache_entry *e = NULL;
    if (ana_cache(x) && blockcache_acquire_within(ana_cache(x), key, bias_hits_bytes(m, r->k), fill_copy,
                                                  r->hits, ana_cancel(x), &e) == TW_OK)
        blockcache_release(ana_cache(x), e);
}

/* Block `block`'s hits from the cache into *out: TW_OK, or 1 when absent. */
static int bias_kept(const gpt2_model *m, const ana_ctx *x, int block, size_t k, probe_bias_result *out)
{
    char key[48];
    bias_key(key, sizeof key, k, block);
    blockcache_entry *e = NULL;
    const size_t bytes = bias_hits_bytes(m, k);
    if (blockcache_lookup(ana_cache(x), key, bytes, &e) != TW_OK) return 1;
    *out =
        (probe_bias_result){.block = block, .n_head = (size_t)m->cfg.n_head, .k = k, .hits = malloc(bytes)};
    if (out->hits) memcpy(out->hits, blockcache_data(e), bytes);
    blockcache_release(ana_cache(x), e);
    return out->hits ? TW_OK : TW_ENOMEM;
}

/* Queries per screening pass of a sweep (core/ana/lnscreen.c's pass). */
#define BIAS_PASS_QUERIES 256

int probe_svd_bias_sweep(const gpt2_model *m, const ana_ctx *x, int block, int last, size_t k,
                         probe_bias_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m)) return TW_EINVAL;
    if (block < 0 || block >= m->cfg.n_layer) return TW_EBLOCK;
    if (k < 1 || k > (size_t)m->cfg.vocab_size) return TW_EK;
    int rc = bias_kept(m, x, block, k, out);
    if (rc != 1) return rc;
    size_t n = 1, per_pass = BIAS_PASS_QUERIES / (2 * (size_t)m->cfg.n_head);
    if (ana_cache(x) && last > block && last < m->cfg.n_layer) n = (size_t)(last - block) + 1;
    if (n > per_pass) n = per_pass > 0 ? per_pass : 1;
    if (n == 1) return probe_svd_bias_blocks(m, x, block, 1, k, out);
    probe_bias_result *r = calloc(n, sizeof *r);
    if (!r) return TW_ENOMEM;
    rc = probe_svd_bias_blocks(m, x, block, n, k, r);
    for (size_t b = 1; b < n && rc == TW_OK; b++) bias_keep(m, x, &r[b]);
    if (rc == TW_OK) *out = r[0];
    for (size_t b = rc == TW_OK ? 1 : n; b < n; b++) probe_bias_result_free(&r[b]);
    free(r);
    return rc;
}

int probe_svd_bias_blocks(const gpt2_model *m, const ana_ctx *x, int first, size_t n, size_t k,
                          probe_bias_result *out)
{
    if (!out || n < 1) return TW_EINVAL;
    memset(out, 0, n * sizeof *out);
    if (ana_check_model(m)) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    if (first < 0 || n > (size_t)m->cfg.n_layer || first > m->cfg.n_layer - (int)n) return TW_EBLOCK;
    if (k < 1 || k > V) return TW_EK;

    const size_t nq = 2 * H * n; /* the queries of every block, block by block */
    float *q = malloc(nq * d * sizeof(float));
    int *blocks = malloc(nq * sizeof(int));
    topk_hit *tops = malloc(nq * k * sizeof(topk_hit)), *bots = malloc(nq * k * sizeof(topk_hit));
    int rc = q && blocks && tops && bots ? TW_OK : TW_ENOMEM;
    for (size_t b = 0; b < n && rc == TW_OK; b++) {
        rc = bias_queries(m, first + (int)b, q + b * 2 * H * d);
        for (size_t i = 0; i < 2 * H; i++) blocks[b * 2 * H + i] = first + (int)b;
    }
    if (rc == TW_OK) rc = ana_ln1_topk(m, x, blocks, q, nq, k, tops, bots);
    for (size_t b = 0; b < n && rc == TW_OK; b++) {
        out[b] = (probe_bias_result){.block = first + (int)b, .n_head = H, .k = k};
        out[b].hits = malloc(H * PROBE_BIAS_N * k * sizeof(topk_hit));
        if (!out[b].hits) {
            rc = TW_ENOMEM;
            break;
        }
        bias_lists(H, k, tops + b * 2 * H * k, bots + b * 2 * H * k, out[b].hits);
    }
    free(q);
    free(blocks);
    free(tops);
    free(bots);
    if (rc)
        for (size_t b = 0; b < n; b++) probe_bias_result_free(&out[b]);
    return rc;
}
