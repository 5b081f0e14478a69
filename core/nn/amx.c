/* bf16 screening scores on the tile unit: see amx.h. */
#include "core/nn/amx.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/topk.h"

/* The tile path needs x86-64 Linux (arch_prctl) and a compiler with the
 * AMX intrinsics (GCC 11, Clang 12). */
#if defined(__x86_64__) && defined(__linux__) &&                                                             \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define TW_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/nn/x86_transpose.h"
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

#define DEPTH      32u  /* bf16 per tile row: one TDPBF16PS step of the sum */
#define GROUP      16u  /* rows of a tile */
#define CHUNK_ROWS 128u /* rows of R packed at a time (8 groups: 400 KiB for ds 1600) */
#define KSTEPS     25u  /* depth steps per block of the sum (measured: 8 and 16 slower) */

size_t nn_amx_depth(size_t ds) { return (ds + DEPTH - 1) / DEPTH * DEPTH; }

size_t nn_amx_queries_elems(size_t nq, size_t ds)
{
    return (nq + 2 * GROUP - 1) / (2 * GROUP) * (2 * GROUP) * nn_amx_depth(ds);
}

size_t nn_amx_work_elems(size_t ds, size_t nq)
{
    /* the packed rows, then the scores kept between blocks of the sum */
    const size_t nqp = nn_amx_queries_elems(nq, 1) / DEPTH;
    return CHUNK_ROWS * nn_amx_depth(ds) + 2 * nqp * CHUNK_ROWS;
}

uint16_t *nn_amx_alloc(size_t elems) { return aligned_alloc(64, (elems * sizeof(uint16_t) + 63) / 64 * 64); }

double nn_amx_error(size_t ds, double pn, double R)
{
    const double u = 0x1p-8, s = pn * R;
    if (!(s < 1e36)) return INFINITY;
    const double rel = 2.0 * u + u * u + topk_gamma(ds + 2) * (1.0 + u) * (1.0 + u);
    /* widened by 1e-6 for the double roundings of this very sum */
    return (rel * s + (double)ds * 0x1p-124 * (pn + R + 1.0)) * (1.0 + 1e-6);
}

#ifdef TW_AMX

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA  18

static bool usable;
static pthread_once_t usable_once = PTHREAD_ONCE_INIT;

static void decide(void)
{
    const char *env = getenv("TWD_AMX");
    if (env && strcmp(env, "0") == 0) return;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    const bool tile = d & (1u << 24), bf16 = d & (1u << 22), f512 = b & (1u << 16), bw = b & (1u << 30),
               vl = b & (1u << 31);
    if (!(tile && bf16 && f512 && bw && vl) || a < 1) return;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return;  /* AVX512-BF16 */
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6u) != 0xe6u || (lo & (3u << 17)) != (3u << 17)) return; /* AVX-512 and tile state on */
    usable = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

bool nn_amx_usable(void)
{
    pthread_once(&usable_once, decide);
    return usable;
}

/* Floats x (n <= 32, the rest zero) as 32 bf16, round to nearest even
 * (VCVTNE2PS2BF16: subnormals to zero, amx.h's bound counts them). */
AMX_TARGET static inline __m512i bf16_row(const float *x, size_t n)
{
    __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1u);
    __mmask16 m1 = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1u) : 0;
    __m512 lo = _mm512_maskz_loadu_ps(m0, x), hi = _mm512_maskz_loadu_ps(m1, x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* Rows of P as bf16 tile operands: groups of 16 rows, each as dp / DEPTH
 * steps of 16 rows of DEPTH bf16 (one tile, 1 KiB, contiguous), the tail
 * of a row and the rows past nq zero. */
AMX_TARGET static void pack_rows(const float *P, size_t ldp, size_t nq, size_t ds, uint16_t *out)
{
    const size_t dp = nn_amx_depth(ds);
    for (size_t i = 0; i < nq; i++)
        for (size_t t = 0; t < ds; t += DEPTH)
            _mm512_storeu_si512((void *)(out + (i / GROUP) * GROUP * dp + t * GROUP + (i % GROUP) * DEPTH),
                                bf16_row(P + i * ldp + t, ds - t < DEPTH ? ds - t : DEPTH));
}

void nn_amx_pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, uint16_t *out)
{
    memset(out, 0, nn_amx_queries_elems(nq, ds) * sizeof *out);
    if (nn_amx_usable()) pack_rows(P, ldp, nq, ds, out);
}

/* Rows j0 .. j0 + nr - 1 of R (nr <= GROUP; missing rows zero) as one
 * group of tile operands: for each depth step s, 16 rows (pair index m of
 * the step) of 16 dwords (row n's bf16 pair 2m, 2m + 1), 512 elements per
 * step, dp / DEPTH steps. */
AMX_TARGET static void pack_group(const float *R, size_t ldr, size_t nr, size_t ds, uint16_t *out)
{
    const size_t dp = nn_amx_depth(ds);
    for (size_t t = 0; t < dp; t += DEPTH) {
        __m512i r[16];
        size_t n = ds - t < DEPTH ? ds - t : DEPTH;
        for (size_t i = 0; i < GROUP; i++)
            r[i] = i < nr ? bf16_row(R + i * ldr + t, n) : _mm512_setzero_si512();
        nn_transpose16(r);
        for (size_t m = 0; m < GROUP; m++) _mm512_storeu_si512((void *)(out + t * GROUP + m * 32), r[m]);
    }
}

/* The tile configuration: palette 1, eight tiles of 16 rows of 64 bytes
 * (0-3: scores 16 x 16 fp32; 4-5: queries 16 x 32 bf16; 6-7: rows). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_config;

/* One 16 x 16 tile of scores to S (rows q .. q + 15, columns c .. c + 15),
 * whole or, at an edge, the part inside (nq, bj). */
#define STORE_TILE(T, q, c)                                                                                  \
    do {                                                                                                     \
        if ((q) + GROUP <= nq && (c) + GROUP <= bj) {                                                        \
            _tile_stored(T, S + (q)*lds + (c), (long)(lds * sizeof(float)));                                 \
        } else if ((q) < nq && (c) < bj) {                                                                   \
            _tile_stored(T, edge, 64);                                                                       \
            for (size_t i_ = 0; i_ < GROUP && (q) + i_ < nq; i_++)                                           \
                for (size_t j_ = 0; j_ < GROUP && (c) + j_ < bj; j_++)                                       \
                    S[((q) + i_) * lds + (c) + j_] = edge[i_ * GROUP + j_];                                  \
        }                                                                                                    \
    } while (0)

AMX_TARGET void nn_amx_scores(const uint16_t *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds,
                              float *S, size_t lds, uint16_t *work)
{
    const size_t dp = nn_amx_depth(ds), steps = dp / DEPTH, nqp = nn_amx_queries_elems(nq, ds) / dp;
    float *acc = (float *)(work + CHUNK_ROWS * dp); /* (nqp / 16, CHUNK_ROWS / 16) tiles */
    const size_t group_elems = GROUP * dp;          /* one packed group of 16 rows */
    float edge[GROUP * GROUP] __attribute__((aligned(64)));
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = GROUP;
    }
    _tile_loadconfig(&cfg);
    for (size_t r0 = 0; r0 < bj; r0 += CHUNK_ROWS) {
        const size_t nr = bj - r0 < CHUNK_ROWS ? bj - r0 : CHUNK_ROWS;
        const size_t groups = (nr + 2 * GROUP - 1) / (2 * GROUP) * 2; /* even: tiles go in pairs */
        for (size_t g = 0; g < groups; g++) {
            size_t lo = g * GROUP, n = lo < nr ? (nr - lo < GROUP ? nr - lo : GROUP) : 0;
            pack_group(R + (r0 + lo) * ldr, ldr, n, ds, work + g * group_elems);
        }
        /* K in blocks of KSTEPS steps: a pair of row groups' block (32 KiB)
         * stays in L1 while every pair of query groups passes it, the
         * scores kept in acc between blocks */
        for (size_t s0 = 0; s0 < steps; s0 += KSTEPS) {
            const size_t s1 = steps - s0 < KSTEPS ? steps : s0 + KSTEPS;
            const bool first = s0 == 0, last = s1 == steps;
            for (size_t g = 0; g < groups; g += 2) {
                const uint16_t *b0 = work + g * group_elems, *b1 = b0 + group_elems;
                for (size_t q = 0; q < nqp; q += 2 * GROUP) {
                    const uint16_t *a0 = Pq + q * dp, *a1 = a0 + group_elems;
                    float *c = acc + ((q / GROUP) * (CHUNK_ROWS / GROUP) + g) * GROUP * GROUP;
                    const size_t tq = CHUNK_ROWS / GROUP * GROUP * GROUP; /* next query group's tiles */
                    if (first) {
                        _tile_zero(0);
                        _tile_zero(1);
                        _tile_zero(2);
                        _tile_zero(3);
                    } else {
                        _tile_loadd(0, c, 64);
                        _tile_loadd(1, c + GROUP * GROUP, 64);
                        _tile_loadd(2, c + tq, 64);
                        _tile_loadd(3, c + tq + GROUP * GROUP, 64);
                    }
                    for (size_t st = s0; st < s1; st++) {
                        _tile_loadd(4, a0 + st * DEPTH * GROUP, 64);
                        _tile_loadd(5, a1 + st * DEPTH * GROUP, 64);
                        _tile_loadd(6, b0 + st * DEPTH * GROUP, 64);
                        _tile_loadd(7, b1 + st * DEPTH * GROUP, 64);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(1, 4, 7);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                    if (last) {
                        const size_t c0 = r0 + g * GROUP, c1 = c0 + GROUP;
                        STORE_TILE(0, q, c0);
                        STORE_TILE(1, q, c1);
                        STORE_TILE(2, q + GROUP, c0);
                        STORE_TILE(3, q + GROUP, c1);
                    } else {
                        _tile_stored(0, c, 64);
                        _tile_stored(1, c + GROUP * GROUP, 64);
                        _tile_stored(2, c + tq, 64);
                        _tile_stored(3, c + tq + GROUP * GROUP, 64);
                    }
                }
            }
        }
    }
    _tile_release();
}

#else

bool nn_amx_usable(void) { return false; }

void nn_amx_pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, uint16_t *out)
{
    (void)P;
    (void)ldp;
    memset(out, 0, nn_amx_queries_elems(nq, ds) * sizeof *out);
}

void nn_amx_scores(const uint16_t *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds, float *S,
                   size_t lds, uint16_t *work)
{
    (void)Pq, (void)nq, (void)R, (void)ldr, (void)bj, (void)ds, (void)S, (void)lds, (void)work;
}

#endif
