/* Seeded pseudo-random numbers: xoshiro256** (Blackman, Vigna 2018) seeded
 * through splitmix64, with uniform and normal variates in double precision.
 * Deterministic for a given seed on every platform; not for cryptography.
 * A tw_rng is a value: each thread or stream owns its own. */
#ifndef TW_BASE_RNG_H
#define TW_BASE_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];  /* xoshiro256** state, never all zero */
    int have_spare; /* tw_rng_normal produces normals in pairs */
    double spare;
} tw_rng;

/* Seeds r from a 64-bit seed (any value). */
void tw_rng_seed(tw_rng *r, uint64_t seed);

/* The next 64 random bits. */
uint64_t tw_rng_next(tw_rng *r);

/* Uniform double in [0, 1) with 53 random bits. */
double tw_rng_uniform(tw_rng *r);

/* Integer in [0, n), n >= 1 (multiply-shift; bias below n / 2^32). */
uint32_t tw_rng_below(tw_rng *r, uint32_t n);

/* Standard normal: Marsaglia's polar form of Box-Muller (no trigonometry). */
double tw_rng_normal(tw_rng *r);

#endif
