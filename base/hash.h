/* Non-cryptographic hashes shared by every layer: FNV-1a for keys and
 * content fingerprints, and the splitmix64 / murmur3 finalisers. */
#ifndef TW_BASE_HASH_H
#define TW_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TW_FNV1A_INIT 0xcbf29ce484222325ull

/* FNV-1a (64-bit) of p[0..n), continuing from h (TW_FNV1A_INIT to start). */
static inline uint64_t tw_fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* FNV-1a of a NUL-terminated string. */
static inline uint64_t tw_fnv1a_str(const char *s, uint64_t h)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* splitmix64: advances *state by the golden-ratio increment and returns a
 * well-mixed 64-bit value (Steele, Lea, Flood 2014). Also the seeder of
 * tw_rng (base/rng.h). */
static inline uint64_t tw_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* murmur3's 64-bit finaliser: a bijective mix of one word. */
static inline uint64_t tw_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

#endif
