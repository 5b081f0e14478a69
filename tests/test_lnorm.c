/* Unit tests of core/nn/lnorm: layer norm of rows against the formula, with
 * and without gain and bias, and in place. */
#include <check.h>
#include <math.h>

#include "core/nn/lnorm.h"
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

TW_CHECK_ONE_MAIN("lnorm", "lnorm", 0, test_layernorm_rows)
