#include "tests/support/test_rng.h"

#include <check.h>
#include <stdlib.h>

tw_rng tt_rng(uint64_t seed)
{
    tw_rng r;
    tw_rng_seed(&r, seed);
    return r;
}

void tt_fill_uniform(tw_rng *r, float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * tw_rng_uniform(r));
}

void tt_fill_normal(tw_rng *r, float *x, size_t n, double mean, double sd)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + sd * tw_rng_normal(r));
}

void tt_fill_int(tw_rng *r, float *x, size_t n, int lo, int hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (int)tw_rng_below(r, (uint32_t)(hi - lo + 1)));
}

static float *floats(size_t n)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_msg(x != NULL, "out of memory for %zu floats", n);
    return x;
}

float *tt_uniform(tw_rng *r, size_t n, double lo, double hi)
{
    float *x = floats(n);
    tt_fill_uniform(r, x, n, lo, hi);
    return x;
}

float *tt_normal(tw_rng *r, size_t n, double mean, double sd)
{
    float *x = floats(n);
    tt_fill_normal(r, x, n, mean, sd);
    return x;
}

float *tt_ints(tw_rng *r, size_t n, int lo, int hi)
{
    float *x = floats(n);
    tt_fill_int(r, x, n, lo, hi);
    return x;
}
