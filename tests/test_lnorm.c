/* Unit tests of core/nn/lnorm: layer norm of rows against the formula, with
 * and without gain and bias, and in place; and core/nn/par's BLAS thread
 * budget with single-threaded sections and its tiled loop. */
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "base/status.h"
#include "core/nn/lnorm.h"
#include "core/nn/par.h"
#include "tests/support/tw_check.h"

START_TEST(test_layernorm_rows)
{
    float x[8] = {1, 2, 3, 4, -2, 0, 2, 4}, y[8];
    float g[4] = {1, 2, 0.5f, -1}, b[4] = {0, 1, -1, 0.25f};
    layernorm_rows(y, x, NULL, NULL, 2, 4, 1e-5f);
    // row 0: mean 2.5, var 1.25
    double sd = sqrt(1.25 + 1e-5);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y[i], (x[i] - 2.5) / sd, 1e-6);
    // row 1: mean 1, var 5
    sd = sqrt(5 + 1e-5);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y[4 + i], (x[4 + i] - 1) / sd, 1e-6);
    layernorm_rows(y, x, g, b, 2, 4, 1e-5f);
    sd = sqrt(1.25 + 1e-5);
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(y[i], g[i] * (x[i] - 2.5) / sd + b[i], 1e-6);
    layernorm_rows(x, x, g, b, 2, 4, 1e-5f); // in place gives the same
    for (int i = 0; i < 8; i++) ck_assert_float_eq(x[i], y[i]);
}
END_TEST

/* layernorm_stats_rows (sixteen, then four rows' sums interleaved) gives
 * the doubles of layernorm_stats bit for bit, for any row count (the tails
 * too), with NaN and infinite rows; layernorm_apply from them gives the
 * floats of layernorm_rows. */
START_TEST(test_layernorm_stats_rows)
{
    enum { R = 39, D = 37 };
    float x[R * D], y[R * D], z[D], g[D], b[D];
    uint32_t st = 7;
    for (size_t i = 0; i < R * D; i++) {
        st = st * 1664525u + 1013904223u;
        x[i] = (float)((double)(st >> 8) / 16777216.0 * 6.0 - 2.0);
    }
    for (size_t t = 0; t < D; t++) {
        g[t] = 0.5f + x[t] * 0.25f;
        b[t] = x[D + t] * 0.1f;
    }
    x[3 * D + 5] = NAN;       /* a NaN row */
    x[6 * D + 1] = INFINITY;  /* an infinite one */
    x[20 * D + 2] = NAN;      /* and in the sixteen-row part */
    x[25 * D + 9] = -INFINITY;
    double mean[R], rstd[R];
    for (size_t rows = 0; rows <= R; rows++) {
        layernorm_stats_rows(x, rows, D, 1e-5f, mean, rstd);
        for (size_t r = 0; r < rows; r++) {
            double m1, s1;
            layernorm_stats(x + r * D, D, 1e-5f, &m1, &s1);
            ck_assert_msg(memcmp(&m1, &mean[r], sizeof m1) == 0 && memcmp(&s1, &rstd[r], sizeof s1) == 0,
                          "%zu rows, row %zu: mean %.17g / %.17g, rstd %.17g / %.17g", rows, r, mean[r], m1,
                          rstd[r], s1);
        }
    }
    layernorm_rows(y, x, g, b, R, D, 1e-5f);
    for (size_t r = 0; r < R; r++) {
        layernorm_apply(z, x + r * D, g, b, D, mean[r], rstd[r]);
        ck_assert_mem_eq(z, y + r * D, sizeof z);
    }
}
END_TEST

/* layernorm_apply_sumsq writes layernorm_apply's floats bit for bit (the
 * vector loop and its tail, with and without gain and bias: any d, any
 * alignment of the rows) and returns the sum of their squares, to double
 * rounding; NaN when the row holds one. */
START_TEST(test_layernorm_apply_sumsq)
{
    enum { D = 53 };
    float x[D + 3], g[D + 3], b[D + 3], y[D + 3], z[D + 3];
    uint32_t st = 11;
    for (size_t i = 0; i < D + 3; i++) {
        st = st * 1664525u + 1013904223u;
        x[i] = (float)((double)(st >> 8) / 16777216.0 * 8.0 - 3.0);
        g[i] = 0.75f + 0.01f * (float)i;
        b[i] = -0.2f + 0.005f * (float)i;
    }
    for (size_t d = 0; d <= D; d++)
        for (size_t off = 0; off < 3; off++)
            for (int v = 0; v < 4; v++) {
                const float *gv = v & 1 ? g + off : NULL, *bv = v & 2 ? b + off : NULL;
                double mean = 0.0, rstd = 1.0;
                if (d) layernorm_stats(x + off, d, 1e-5f, &mean, &rstd);
                layernorm_apply(z, x + off, gv, bv, d, mean, rstd);
                double s = layernorm_apply_sumsq(y + off, x + off, gv, bv, d, mean, rstd), want = 0.0;
                ck_assert_mem_eq(y + off, z, d * sizeof(float));
                for (size_t i = 0; i < d; i++) want += (double)z[i] * (double)z[i];
                ck_assert_double_eq_tol(s, want, 1e-12 * (want + 1.0));
            }
    x[40] = NAN;
    double mean, rstd;
    layernorm_stats(x, D, 1e-5f, &mean, &rstd);
    ck_assert(isnan(layernorm_apply_sumsq(y, x, g, b, D, 0.0, 1.0)));
}
END_TEST

/* A single-threaded section gives OpenBLAS one thread until the last one
 * ends, then the budget as it is at that moment: a budget lowered meanwhile
 * (another computation started) is not raised back to what it was. */
START_TEST(test_blas_sections)
{
    openblas_set_num_threads(2);
    if (openblas_get_num_threads() < 2) return; /* a one-thread OpenBLAS: nothing to share */
    ck_assert_int_eq(nn_parts(), 2);            /* no owner yet: OpenBLAS's count */
    ck_assert_int_eq(nn_blas_single_begin(), 2);
    ck_assert_int_eq(openblas_get_num_threads(), 1);
    ck_assert_int_eq(nn_parts(), 2); /* the budget, not OpenBLAS's 1 */
    ck_assert_int_eq(nn_blas_single_begin(), 2);
    nn_blas_set_threads(1); /* a second computation: the share is 1 */
    ck_assert_int_eq(openblas_get_num_threads(), 1);
    ck_assert_int_eq(nn_parts(), 1);
    nn_blas_single_end();
    ck_assert_int_eq(openblas_get_num_threads(), 1);
    nn_blas_single_end();
    ck_assert_int_eq(openblas_get_num_threads(), 1); /* not the 2 it was at begin */
    nn_blas_set_threads(2);
    ck_assert_int_eq(openblas_get_num_threads(), 2);
    ck_assert_int_eq(nn_blas_single_begin(), 2);
    ck_assert_int_eq(openblas_get_num_threads(), 1);
    nn_blas_single_end();
    ck_assert_int_eq(openblas_get_num_threads(), 2);
}
END_TEST

/* nn_parallel_tiles: every tile once, the last one shorter; an error (or
 * the cancel) ends the loop and is returned. */
typedef struct {
    unsigned char seen[1000];
    atomic_int calls;
    int fail_at; /* the tile starting there returns 7 (-1: none) */
} tiles_probe;

static int tile_mark(void *ctx, int part, size_t r0, size_t nr)
{
    tiles_probe *t = ctx;
    ck_assert(part >= 0 && part < NN_MAX_PARTS);
    atomic_fetch_add(&t->calls, 1);
    for (size_t j = r0; j < r0 + nr; j++) t->seen[j]++;
    return (int)r0 == t->fail_at ? 7 : 0;
}

START_TEST(test_parallel_tiles)
{
    for (int parts = 1; parts <= 3; parts++) {
        tiles_probe t = {.fail_at = -1};
        ck_assert_int_eq(nn_parallel_tiles(1000, 64, parts, NULL, tile_mark, &t), 0);
        ck_assert_int_eq(atomic_load(&t.calls), 16); /* 15 of 64 rows, one of 40 */
        for (size_t j = 0; j < 1000; j++) ck_assert_int_eq(t.seen[j], 1);
        tiles_probe f = {.fail_at = 128};
        ck_assert_int_eq(nn_parallel_tiles(1000, 64, parts, NULL, tile_mark, &f), 7);
        for (size_t j = 0; j < 1000; j++) ck_assert_int_le(f.seen[j], 1);
        tw_cancel cancel = {0};
        tw_cancel_raise(&cancel);
        tiles_probe c = {.fail_at = -1};
        ck_assert_int_eq(nn_parallel_tiles(1000, 64, parts, &cancel, tile_mark, &c), TW_ECANCELED);
        ck_assert_int_eq(atomic_load(&c.calls), 0);
    }
    tiles_probe e = {.fail_at = -1};
    ck_assert_int_eq(nn_parallel_tiles(0, 64, 2, NULL, tile_mark, &e), 0); /* no rows: no tile */
    ck_assert_int_eq(atomic_load(&e.calls), 0);
}
END_TEST

TW_CHECK_ONE_MAIN("lnorm", "lnorm", 0, test_layernorm_rows, test_layernorm_stats_rows, test_layernorm_apply_sumsq,
                  test_blas_sections, test_parallel_tiles)
