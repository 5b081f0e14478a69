#include "base/rng.h"

#include <math.h>

#include "base/hash.h"

void tw_rng_seed(tw_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = tw_splitmix64(&x);
    r->have_spare = 0;
    r->spare = 0.0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tw_rng_next(tw_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double tw_rng_uniform(tw_rng *r) { return (double)(tw_rng_next(r) >> 11) * 0x1p-53; }

uint32_t tw_rng_below(tw_rng *r, uint32_t n)
{
    return (uint32_t)(((tw_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

double tw_rng_normal(tw_rng *r)
{
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = (double)(tw_rng_next(r) >> 11) * 0x1p-52 - 1.0; /* [-1, 1) */
        v = (double)(tw_rng_next(r) >> 11) * 0x1p-52 - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double f = sqrt(-2.0 * log(s) / s);
    r->spare = v * f;
    r->have_spare = 1;
    return u * f;
}
