/* Products with stored weight matrices (gpt2_mat, core/model/gpt2.h), in
 * whichever layout the checkpoint has: the one place that turns a layout
 * into BLAS arguments. Matrices are (rows, cols) = (in, out); x, y and the
 * row-major A and C are contiguous. */
#ifndef TW_LINALG_H
#define TW_LINALG_H

#include <stddef.h>

#include "core/model/gpt2.h"

/* y (cols) = alpha * x (rows) . M + beta * y */
void mat_xm(float *y, const float *x, gpt2_mat M, size_t rows, size_t cols, float alpha, float beta);

/* y (rows) = alpha * M . x (cols) + beta * y, i.e. x . M^T */
void mat_mx(float *y, gpt2_mat M, const float *x, size_t rows, size_t cols, float alpha, float beta);

/* C (n, cols) = A (n, rows) . M (+ bias (cols), when not NULL, on every row) */
void mat_gemm(float *C, const float *A, gpt2_mat M, const float *bias, size_t n, size_t rows, size_t cols);

/* The same with plain loops and double accumulators: the reference. */
void mat_gemm_naive(float *C, const float *A, gpt2_mat M, const float *bias, size_t n, size_t rows,
                    size_t cols);

/* dst (rows, cols), column-major with leading dimension ld (LAPACK's
 * order) = alpha * M. */
void mat_copy_colmajor(double *dst, size_t ld, gpt2_mat M, size_t rows, size_t cols, double alpha);

#endif
