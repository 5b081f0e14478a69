/* The seeded random numbers of the unit tests: base/rng.h (xoshiro256**)
 * and a few fills. Each test seeds its own generator, so its data do not
 * depend on which other tests ran before it. */
#ifndef TW_TEST_RNG_H
#define TW_TEST_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"

/* A generator seeded with seed. */
tw_rng tt_rng(uint64_t seed);

/* x[i] = lo + (hi - lo) u, u uniform in [0, 1). */
void tt_fill_uniform(tw_rng *r, float *x, size_t n, double lo, double hi);

/* x[i] = mean + sd z, z standard normal. */
void tt_fill_normal(tw_rng *r, float *x, size_t n, double mean, double sd);

/* x[i] = an integer uniform in [lo, hi], as a float. */
void tt_fill_int(tw_rng *r, float *x, size_t n, int lo, int hi);

/* The same fills into a new malloc'd array of n floats (the test fails
 * when memory runs out); free it with free. */
float *tt_uniform(tw_rng *r, size_t n, double lo, double hi);
float *tt_normal(tw_rng *r, size_t n, double mean, double sd);
float *tt_ints(tw_rng *r, size_t n, int lo, int hi);

#endif
