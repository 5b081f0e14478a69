/* Singular directions of W_qk and W_vo per head, and the bias probes
 * (docs/MATH.md §5-§6).
 *
 * For head h of block b, A = X Y^T with X, Y (d, dh):
 *   QK: X = Wq_h / sqrt(dh), Y = Wk_h     (A = Wqk_h)
 *   VO: X = Wv_h,            Y = Wo_h^T   (A = Wvo_h = Wv_h Wo_h)
 * A has rank <= dh, so never a d x d SVD: thin QR in double X = Qx Rx,
 * Y = Qy Ry (LAPACKE dgeqrf; Qx, Qy kept as Householder reflectors), SVD of
 * the dh x dh matrix Rx Ry^T = Us S Vs^T (dgesdd, dgesvd as fallback), and
 * U = Qx Us, V = Qy Vs (only the requested columns are formed, by dormqr).
 * These factors (reflectors, Us, Vs, S) are cached per (matrix, block,
 * head); the heads of a request are computed several at once, one BLAS
 * thread each.
 *
 * Directions r < top: left u'_r = S_r U[:, r], right v_r = V[:, r];
 * reference matrices Ml = En = LN_b(E) for both, Mr = En for QK and E for VO.
 * Sign: sign_r = +1 if max_j v_r . Mr_j >= max_j (-v_r . Mr_j), else -1;
 * both vectors are multiplied by sign_r, and the reported lists are the top-k
 * of sign_r u'_r against Ml and of sign_r v_r against Mr. The max/min needed
 * for the sign come from the same GEMM pass that selects the lists (top-k and
 * bottom-k of v_r are kept together; the top-k of -v is the bottom-k of v).
 *
 * Spectrum: all dh singular values (descending; the other d - dh singular
 * values of A are exactly zero), coverage[r] = sum_{t<=r} S_t / sum_t S_t, and
 * frac99 = (r + 1) / dh for the first (smallest) r with coverage[r] > 0.99,
 * i.e. the fraction of directions needed to cover more than 99 % of the sum
 * of singular values. If every singular value is 0, coverage is all 0 and
 * frac99 is 0. */
#ifndef TW_PROBE_SVD_H
#define TW_PROBE_SVD_H

#include <stddef.h>

#include "core/ana/common.h"
#include "core/nn/topk.h"

typedef enum { PROBE_SVD_QK = 0, PROBE_SVD_VO = 1 } probe_svd_matrix;

/* "qk", "vo"; NULL outside the enum. */
const char *probe_svd_matrix_name(int matrix);

/* All arrays live in one allocation owned by the result, released by
 * probe_svd_result_free. Head row i is model head first_head + i. */
typedef struct {
    int block;
    int matrix; /* probe_svd_matrix */
    int first_head;
    size_t n_heads; /* 1, or n_head when all heads were asked */
    size_t dh, top, k;
    double *s;        /* (n_heads, dh) singular values, descending */
    double *coverage; /* (n_heads, dh) cumulative coverage */
    double *frac99;   /* (n_heads) */
    int *sign;        /* (n_heads, top) +1 or -1, applied to the lists */
    topk_hit *left;   /* (n_heads, top, k): left + (i * top + r) * k */
    topk_hit *right;  /* (n_heads, top, k) */
} probe_svd_result;

/* Computes the spectra and the first `top` directions of `matrix` for one
 * head (0 <= head < n_head) or all (head == -1) of block `block`.
 * top in [0, dh] (0: spectrum only, no GEMM pass); k in [1, V] (checked even
 * when top == 0). c: the cache for LN_b(E) and the factors (NULL: private).
 * Returns TW_OK or TW_EBLOCK / TW_EHEAD / TW_ETOP / TW_EK / TW_EINVAL /
 * TW_ENOMEM, *out then empty (safe to free). */
int probe_svd(const gpt2_model *m, const ana_ctx *x, int block, int matrix, int head, size_t top, size_t k,
              probe_svd_result *out);

/* probe_svd of n_mat (1 or 2) different matrices of the same block and
 * heads at once, into out[0 .. n_mat): the same answers, with every query
 * against LN_b(E) in one GEMM pass and every one against E in another.
 * Errors as probe_svd (TW_EINVAL for a repeated matrix); on error every
 * out[i] is empty. */
int probe_svd_multi(const gpt2_model *m, const ana_ctx *x, int block, const int *matrices, size_t n_mat,
                    int head, size_t top, size_t k, probe_svd_result *out);

void probe_svd_result_free(probe_svd_result *r);

/* Bias probes, per head h: a_h = Wq_h bk_h (the query direction the key bias
 * rewards) and c_h = Wk_h bq_h (the key direction the query bias rewards), d
 * vectors; lists: top-k of a_h, -a_h, c_h, -c_h against En = LN_b(E). */
enum { PROBE_BIAS_A = 0, PROBE_BIAS_A_NEG = 1, PROBE_BIAS_C = 2, PROBE_BIAS_C_NEG = 3, PROBE_BIAS_N = 4 };

/* "a", "-a", "c", "-c"; NULL outside the enum. */
const char *probe_bias_name(int list);

/* One allocation owned by the result, released by probe_bias_result_free. */
typedef struct {
    int block;
    size_t n_head, k;
    topk_hit *hits; /* (n_head, PROBE_BIAS_N, k): hits + (h * 4 + list) * k */
} probe_bias_result;

/* All heads of block `block`; k in [1, V]. Same errors as probe_svd. */
int probe_svd_bias(const gpt2_model *m, const ana_ctx *x, int block, size_t k, probe_bias_result *out);

/* Block `block`'s lists, in a sweep that will ask for the blocks after it
 * up to `last` next (last <= block: no sweep, probe_svd_bias): the blocks
 * after it, as many as share a screening pass (256 queries), are computed
 * in the same passes and their lists kept in the cache ("bias:<k>:<b>")
 * for those calls; a block kept so is answered from there. The lists are
 * probe_svd_bias's, bit for bit. */
int probe_svd_bias_sweep(const gpt2_model *m, const ana_ctx *x, int block, int last, size_t k,
                         probe_bias_result *out);

/* The same for the n blocks first .. first + n - 1 into out (n), their
 * queries screened in shared GEMM passes (core/ana/lnscreen.h): the lists of
 * n calls of probe_svd_bias, bit for bit. */
int probe_svd_bias_blocks(const gpt2_model *m, const ana_ctx *x, int first, size_t n, size_t k,
                          probe_bias_result *out);

void probe_bias_result_free(probe_bias_result *r);

#endif
