#include "core/nn/linalg.h"

#include <cblas.h>
#include <string.h>

/* M as BLAS sees it: the stored row-major matrix and whether it is W or W^T. */
typedef struct {
    const float *p;
    int ld;
    int transposed; /* the stored matrix is M^T (cols, rows) */
} stored;

static stored as_stored(gpt2_mat M)
{
    stored s = {M.p, (int)(M.cs == 1 ? M.rs : M.cs), M.cs != 1};
    return s;
}

void mat_xm(float *y, const float *x, gpt2_mat M, size_t rows, size_t cols, float alpha, float beta)
{
    stored s = as_stored(M);
    if (!s.transposed)
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)rows, (int)cols, alpha, s.p, s.ld, x, 1, beta, y, 1);
    else
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)cols, (int)rows, alpha, s.p, s.ld, x, 1, beta, y, 1);
}

void mat_mx(float *y, gpt2_mat M, const float *x, size_t rows, size_t cols, float alpha, float beta)
{
    stored s = as_stored(M);
    if (!s.transposed)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, alpha, s.p, s.ld, x, 1, beta, y, 1);
    else
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)cols, (int)rows, alpha, s.p, s.ld, x, 1, beta, y, 1);
}

void mat_gemm(float *C, const float *A, gpt2_mat M, const float *bias, size_t n, size_t rows, size_t cols)
{
    stored s = as_stored(M);
    float beta = 0.0f;
    if (bias) {
        for (size_t t = 0; t < n; t++) memcpy(C + t * cols, bias, cols * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, s.transposed ? CblasTrans : CblasNoTrans, (int)n, (int)cols,
                (int)rows, 1.0f, A, (int)rows, s.p, s.ld, beta, C, (int)cols);
}

void mat_gemm_naive(float *C, const float *A, gpt2_mat M, const float *bias, size_t n, size_t rows,
                    size_t cols)
{
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < cols; j++) {
            double acc = bias ? (double)bias[j] : 0.0;
            for (size_t i = 0; i < rows; i++) acc += (double)A[t * rows + i] * (double)GPT2_AT(M, i, j);
            C[t * cols + j] = (float)acc;
        }
}

void mat_copy_colmajor(double *dst, size_t ld, gpt2_mat M, size_t rows, size_t cols, double alpha)
{
    if (M.cs == 1) /* M's rows are contiguous: read them in order (a head's slice of W_qkv) */
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++) dst[i + j * ld] = alpha * (double)GPT2_AT(M, i, j);
    else
        for (size_t j = 0; j < cols; j++)
            for (size_t i = 0; i < rows; i++) dst[i + j * ld] = alpha * (double)GPT2_AT(M, i, j);
}
