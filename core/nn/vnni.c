/* 16-bit integer screening scores on AVX512-VNNI: see vnni.h. */
#include "core/nn/vnni.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/topk.h"

/* The VNNI path needs x86-64 and a compiler with the AVX512-VNNI and
 * AVX-VNNI intrinsics (GCC 11, Clang 12). */
#if defined(__x86_64__) && (defined(__clang__) ? __clang_major__ >= 12 : __GNUC__ >= 11)
#define TW_VNNI 1
#include <cpuid.h>
#include <immintrin.h>

#include "core/nn/x86_transpose.h"
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
#define AVX_TARGET  __attribute__((target("avx2,avxvnni")))
#define AVX2_TARGET __attribute__((target("avx2")))
#endif

#define DEPTH      32u  /* int16 per step of the packing: 16 pairs, one transpose */
#define PANEL      16u  /* rows of a panel: one register of int32 sums */
#define CHUNK_ROWS 128u /* rows of R packed at a time (400 KiB for ds 1600: stays in L2) */
#define NQB        12u  /* queries of the kernel's block: 12 x 2 panels of sums, 24 registers */
#define TINY       0x1p-40

static size_t depth(size_t ds) { return (ds + DEPTH - 1) / DEPTH * DEPTH; }

int nn_vnni_level(size_t ds)
{
    double q = floor(sqrt(2147483647.0 / (double)(depth(ds) ? depth(ds) : DEPTH)));
    return q > 32767.0 ? 32767 : (int)q;
}

static size_t queries_padded(size_t nq) { return (nq + NQB - 1) / NQB * NQB; }

/* The packed queries: nqp rows of dp int16, then their nqp steps. */
size_t nn_vnni_queries_bytes(size_t nq, size_t ds)
{
    const size_t nqp = queries_padded(nq);
    return nqp * depth(ds) * sizeof(int16_t) + nqp * sizeof(float);
}

/* The packed panels of a chunk (CHUNK_ROWS rows of dp int16), then the
 * rows' steps. */
size_t nn_vnni_work_bytes(size_t ds)
{
    return CHUNK_ROWS * depth(ds) * sizeof(int16_t) + CHUNK_ROWS * sizeof(float);
}

void *nn_vnni_alloc(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

double nn_vnni_error(size_t ds, const float *p, double R, double Rinf)
{
    double p1 = 0.0, pinf = 0.0, pn = 0.0;
    for (size_t t = 0; t < ds; t++) {
        double a = fabs((double)p[t]);
        p1 += a;
        pn += a * a;
        topk_raise_max(&pinf, a);
    }
    pn = sqrt(pn);
    if (!(pn * R < 1e36) || !(Rinf <= R) || !(pinf < INFINITY) || (pinf > 0.0 && pinf < TINY))
        return INFINITY;
    const double Q = nn_vnni_level(ds), h = 0.5 + 0x1p-7, u = 0x1p-24;
    const double E =
        h / Q * (Rinf * p1 + pinf * sqrt((double)ds) * R) + 3.0 * (double)ds * h * h * pinf * Rinf / (Q * Q);
    /* widened by 1e-6 for the double roundings of this very sum */
    return (E + 5.0001 * u * (pn * R + E)) * (1.0 + 1e-6);
}

#ifdef TW_VNNI

static int width; /* 512, 256 or 0 */
static pthread_once_t width_once = PTHREAD_ONCE_INIT;

static void decide(void)
{
    const char *env = getenv("TWD_VNNI");
    if (env && strcmp(env, "0") == 0) return;
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    const bool avx2 = b & (1u << 5), f512 = b & (1u << 16), bw = b & (1u << 30), vnni512 = c & (1u << 11);
    const bool avx_vnni = a >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const bool os512 = (lo & 0xe6u) == 0xe6u, os256 = (lo & 0x6u) == 0x6u; /* the AVX-512, AVX states on */
    const bool want256 = env && strcmp(env, "256") == 0;
    if (f512 && bw && vnni512 && os512 && !want256)
        width = 512;
    else if (avx2 && avx_vnni && os256)
        width = 256;
}

int nn_vnni_width(void)
{
    pthread_once(&width_once, decide);
    return width;
}

bool nn_vnni_usable(void) { return nn_vnni_width() != 0; }

/* The largest |x_t| of x (n), NaN when x holds one. */
VNNI_TARGET static float row_max(const float *x, size_t n)
{
    __m512 m = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (size_t t = 0; t < n; t += 16) {
        __mmask16 k = n - t >= 16 ? 0xffff : (__mmask16)((1u << (n - t)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(k, x + t);
        bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        m = _mm512_max_ps(m, _mm512_abs_ps(v));
    }
    return bad ? NAN : _mm512_reduce_max_ps(m);
}

/* The factor a row of largest element m is scaled by before rounding (0
 * for a row that is not bounded, or 0), and the step its integers stand
 * for; what the row reports to the pass's maximum. */
static float row_scale(float m, int Q, float *step, double *report)
{
    *report = m;
    *step = 0.0f;
    if (m == 0.0f) return 0.0f;
    if (!(m < INFINITY) || m < TINY) {
        *report = m != m ? (double)NAN : INFINITY;
        return 0.0f;
    }
    *step = m / (float)Q;
    return (float)Q / m;
}

/* 32 floats of x (n of them; the rest 0) times f, rounded to the nearest
 * integers (|x_t f| <= Q + 2^-7, so no saturation), as 16 dwords of pairs. */
VNNI_TARGET static inline __m512i int_pairs(const float *x, size_t n, float f)
{
    __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1u);
    __mmask16 m1 = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1u) : 0;
    const __m512 s = _mm512_set1_ps(f);
    __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m0, x), s));
    __m512i b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m1, x + 16), s));
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtsepi32_epi16(a)), _mm512_cvtsepi32_epi16(b),
                              1);
}

static void pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, void *out);

void nn_vnni_pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, void *out)
{
    memset(out, 0, nn_vnni_queries_bytes(nq, ds));
    if (nn_vnni_usable()) pack_queries(P, ldp, nq, ds, out);
}

/* Rows R (nr <= PANEL of them; the rest zero) as one panel: for each pair
 * index m of the depth, 16 dwords (row n's int16 2m, 2m + 1). Their steps
 * to steps; returns the largest element seen (as nn_vnni_scores). */
VNNI_TARGET static double pack_panel(const float *R, size_t ldr, size_t nr, size_t ds, int Q, int32_t *out,
                                     float *steps)
{
    const size_t dp = depth(ds);
    float f[PANEL];
    double seen = 0.0;
    for (size_t i = 0; i < PANEL; i++) {
        double rep = 0.0;
        f[i] = i < nr ? row_scale(row_max(R + i * ldr, ds), Q, &steps[i], &rep) : (steps[i] = 0.0f);
        topk_raise_max(&seen, rep);
    }
    for (size_t t = 0; t < dp; t += DEPTH) {
        __m512i r[16];
        const size_t n = ds - t < DEPTH ? ds - t : DEPTH;
        for (size_t i = 0; i < PANEL; i++)
            r[i] = i < nr ? int_pairs(R + i * ldr + t, n, f[i]) : _mm512_setzero_si512();
        nn_transpose16(r);
        for (size_t m = 0; m < 16; m++) _mm512_store_si512((void *)(out + (t / 2 + m) * PANEL), r[m]);
    }
    return seen;
}

/* NQB queries (int16 rows of dp at q) against two panels b0, b1: the 24
 * int32 sums, acc[2 i + c] = query i against panel c's 16 rows (named
 * registers: an array of them is kept in memory by some compilers). */
#define ACC_DECL(i) __m512i a##i##0 = _mm512_setzero_si512(), a##i##1 = _mm512_setzero_si512()
#define ACC_STEP(i)                                                                                          \
    do {                                                                                                     \
        const __m512i x_ = _mm512_set1_epi32(qd[t * NQB + (i)]);                                             \
        a##i##0 = _mm512_dpwssd_epi32(a##i##0, r0, x_);                                                      \
        a##i##1 = _mm512_dpwssd_epi32(a##i##1, r1, x_);                                                      \
    } while (0)
#define ACC_OUT(i) (acc[2 * (i)] = a##i##0, acc[2 * (i) + 1] = a##i##1)

VNNI_TARGET static void kernel(const int16_t *q, size_t dp, const int32_t *b0, const int32_t *b1,
                               __m512i acc[2 * NQB])
{
    const int32_t *qd = (const int32_t *)(const void *)q;
    const size_t hp = dp / 2;
    ACC_DECL(0);
    ACC_DECL(1);
    ACC_DECL(2);
    ACC_DECL(3);
    ACC_DECL(4);
    ACC_DECL(5);
    ACC_DECL(6);
    ACC_DECL(7);
    ACC_DECL(8);
    ACC_DECL(9);
    ACC_DECL(10);
    ACC_DECL(11);
    for (size_t t = 0; t < hp; t++) {
        const __m512i r0 = _mm512_load_si512((const void *)(b0 + t * PANEL)),
                      r1 = _mm512_load_si512((const void *)(b1 + t * PANEL));
        _mm_prefetch((const char *)(b0 + (t + 16) * PANEL), _MM_HINT_T0);
        _mm_prefetch((const char *)(b1 + (t + 16) * PANEL), _MM_HINT_T0);
        ACC_STEP(0);
        ACC_STEP(1);
        ACC_STEP(2);
        ACC_STEP(3);
        ACC_STEP(4);
        ACC_STEP(5);
        ACC_STEP(6);
        ACC_STEP(7);
        ACC_STEP(8);
        ACC_STEP(9);
        ACC_STEP(10);
        ACC_STEP(11);
    }
    ACC_OUT(0);
    ACC_OUT(1);
    ACC_OUT(2);
    ACC_OUT(3);
    ACC_OUT(4);
    ACC_OUT(5);
    ACC_OUT(6);
    ACC_OUT(7);
    ACC_OUT(8);
    ACC_OUT(9);
    ACC_OUT(10);
    ACC_OUT(11);
}

VNNI_TARGET static double scores512(const void *Pq, size_t nq, const float *R, size_t ldr, size_t bj,
                                    size_t ds, float *S, size_t lds, void *work)
{
    const size_t dp = depth(ds), nqp = queries_padded(nq), panel_elems = PANEL * dp / 2;
    const int Q = nn_vnni_level(ds);
    const int16_t *qrows = Pq;
    const float *qsteps = (const float *)(qrows + nqp * dp);
    int32_t *panels = work;
    float *steps = (float *)(panels + CHUNK_ROWS * dp / 2);
    double seen = 0.0;
    for (size_t r0 = 0; r0 < bj; r0 += CHUNK_ROWS) {
        const size_t nr = bj - r0 < CHUNK_ROWS ? bj - r0 : CHUNK_ROWS;
        const size_t np = (nr + 2 * PANEL - 1) / (2 * PANEL) * 2; /* even: the kernel takes them in pairs */
        for (size_t g = 0; g < np; g++) {
            size_t lo = g * PANEL, n = lo < nr ? (nr - lo < PANEL ? nr - lo : PANEL) : 0;
            double m =
                pack_panel(n ? R + (r0 + lo) * ldr : R, ldr, n, ds, Q, panels + g * panel_elems, steps + lo);
            topk_raise_max(&seen, m);
        }
        for (size_t q0 = 0; q0 < nqp; q0 += NQB) {
            for (size_t g = 0; g < np; g += 2) {
                __m512i acc[2 * NQB];
                kernel(qrows + q0 * dp, dp, panels + g * panel_elems, panels + (g + 1) * panel_elems, acc);
                for (size_t c = 0; c < 2; c++) {
                    const size_t col = r0 + (g + c) * PANEL;
                    if (col >= r0 + nr) continue;
                    const __mmask16 k =
                        r0 + nr - col >= PANEL ? 0xffff : (__mmask16)((1u << (r0 + nr - col)) - 1u);
                    const __m512 st = _mm512_load_ps(steps + (g + c) * PANEL);
                    for (size_t i = 0; i < NQB && q0 + i < nq; i++) {
                        const __m512 g2 = _mm512_mul_ps(_mm512_set1_ps(qsteps[q0 + i]), st);
                        const __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[2 * i + c]), g2);
                        _mm512_mask_storeu_ps(S + (q0 + i) * lds + col, k, s);
                    }
                }
            }
        }
    }
    return seen;
}

/* ---- The same on AVX-VNNI (256-bit VPDPWSSD, no AVX-512): the query
 * layout and the 16-row panels are those above, a panel taken as two
 * registers of 8 rows; 6 queries of a block at a time (12 sums: AVX2 has
 * 16 registers). The integers are the same (the same floats, the same
 * rounding), so is the bound. */

/* The largest |x_t| of x (n), NaN when x holds one. */
AVX2_TARGET static float row_max256(const float *x, size_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
    size_t t = 0;
    for (; t + 8 <= n; t += 8) {
        const __m256 v = _mm256_loadu_ps(x + t);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
    }
    float lanes[8], r = 0.0f;
    _mm256_storeu_ps(lanes, m);
    for (int i = 0; i < 8; i++) r = lanes[i] > r ? lanes[i] : r;
    bool nan = _mm256_movemask_ps(bad) != 0;
    for (; t < n; t++) {
        const float a = fabsf(x[t]);
        nan |= a != a;
        r = a > r ? a : r;
    }
    return nan ? NAN : r;
}

/* 32 floats of x (n of them; the rest 0) times f, rounded to the nearest
 * integers as int_pairs does, as 16 dwords of pairs into out. */
AVX2_TARGET static inline void int_pairs256(const float *x, size_t n, float f, int32_t out[16])
{
    float tail[32];
    if (n < 32) {
        memset(tail, 0, sizeof tail);
        memcpy(tail, x, n * sizeof *x);
        x = tail;
    }
    const __m256 s = _mm256_set1_ps(f);
    __m256i i[4];
    for (int h = 0; h < 4; h++) i[h] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * h), s));
    /* packs works within 128-bit lanes: the permute puts the 16 int16 in order */
    const __m256i a = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[0], i[1]), 0xd8),
                  b = _mm256_permute4x64_epi64(_mm256_packs_epi32(i[2], i[3]), 0xd8);
    _mm256_storeu_si256((__m256i *)(void *)out, a);
    _mm256_storeu_si256((__m256i *)(void *)(out + 8), b);
}

/* Query rows in blocks of NQB, for both widths (a few rows: AVX2 is enough):
 * block b's pair t of query i (int16 2t, 2t + 1) is dword (b dp / 2 + t)
 * NQB + i; zero past ds and past nq. Steps after the nqp rows. */
AVX2_TARGET static void pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, void *out)
{
    const size_t dp = depth(ds), nqp = queries_padded(nq);
    const int Q = nn_vnni_level(ds);
    int32_t *q = out;
    float *steps = (float *)(q + nqp * dp / 2);
    for (size_t i = 0; i < nq; i++) {
        double rep;
        float f = row_scale(row_max256(P + i * ldp, ds), Q, &steps[i], &rep);
        int32_t *blk = q + (i / NQB) * NQB * dp / 2 + i % NQB;
        for (size_t t = 0; t < dp; t += DEPTH) {
            int32_t v[16];
            int_pairs256(P + i * ldp + t, ds - t < DEPTH ? ds - t : DEPTH, f, v);
            for (size_t m = 0; m < 16; m++) blk[(t / 2 + m) * NQB] = v[m];
        }
    }
}

/* pack_panel's panel, made with AVX2. */
AVX2_TARGET static double pack_panel256(const float *R, size_t ldr, size_t nr, size_t ds, int Q, int32_t *out,
                                        float *steps)
{
    const size_t dp = depth(ds);
    double seen = 0.0;
    for (size_t i = 0; i < PANEL; i++) {
        double rep = 0.0;
        const float f =
            i < nr ? row_scale(row_max256(R + i * ldr, ds), Q, &steps[i], &rep) : (steps[i] = 0.0f);
        topk_raise_max(&seen, rep);
        for (size_t t = 0; t < dp; t += DEPTH) {
            int32_t v[16] = {0};
            if (i < nr) int_pairs256(R + i * ldr + t, ds - t < DEPTH ? ds - t : DEPTH, f, v);
            for (size_t m = 0; m < 16; m++) out[(t / 2 + m) * PANEL + i] = v[m];
        }
    }
    return seen;
}

#define ACC256_DECL(i) __m256i a##i##l = _mm256_setzero_si256(), a##i##h = _mm256_setzero_si256()
#define ACC256_STEP(i)                                                                                       \
    do {                                                                                                     \
        const __m256i x_ = _mm256_set1_epi32(qd[t * NQB + (i)]);                                             \
        a##i##l = _mm256_dpwssd_avx_epi32(a##i##l, rl, x_);                                                  \
        a##i##h = _mm256_dpwssd_avx_epi32(a##i##h, rh, x_);                                                  \
    } while (0)
#define ACC256_OUT(i) (acc[2 * (i)] = a##i##l, acc[2 * (i) + 1] = a##i##h)

/* 6 queries (qd: their block's dwords, offset to the first) against one
 * panel b: acc[2 i] its rows 0-7, acc[2 i + 1] rows 8-15. */
AVX_TARGET static void kernel256(const int32_t *qd, size_t hp, const int32_t *b, __m256i acc[12])
{
    ACC256_DECL(0);
    ACC256_DECL(1);
    ACC256_DECL(2);
    ACC256_DECL(3);
    ACC256_DECL(4);
    ACC256_DECL(5);
    for (size_t t = 0; t < hp; t++) {
        const __m256i rl = _mm256_load_si256((const __m256i *)(const void *)(b + t * PANEL)),
                      rh = _mm256_load_si256((const __m256i *)(const void *)(b + t * PANEL + 8));
        ACC256_STEP(0);
        ACC256_STEP(1);
        ACC256_STEP(2);
        ACC256_STEP(3);
        ACC256_STEP(4);
        ACC256_STEP(5);
    }
    ACC256_OUT(0);
    ACC256_OUT(1);
    ACC256_OUT(2);
    ACC256_OUT(3);
    ACC256_OUT(4);
    ACC256_OUT(5);
}

AVX_TARGET static double scores256(const void *Pq, size_t nq, const float *R, size_t ldr, size_t bj,
                                   size_t ds, float *S, size_t lds, void *work)
{
    const size_t dp = depth(ds), hp = dp / 2, nqp = queries_padded(nq), panel_elems = PANEL * hp;
    const int Q = nn_vnni_level(ds);
    const int32_t *qrows = Pq;
    const float *qsteps = (const float *)(qrows + nqp * hp);
    int32_t *panels = work;
    float *steps = (float *)(panels + CHUNK_ROWS * hp);
    double seen = 0.0;
    for (size_t r0 = 0; r0 < bj; r0 += CHUNK_ROWS) {
        const size_t nr = bj - r0 < CHUNK_ROWS ? bj - r0 : CHUNK_ROWS, np = (nr + PANEL - 1) / PANEL;
        for (size_t g = 0; g < np; g++) {
            size_t lo = g * PANEL, n = nr - lo < PANEL ? nr - lo : PANEL;
            double m =
                pack_panel256(R + (r0 + lo) * ldr, ldr, n, ds, Q, panels + g * panel_elems, steps + lo);
            topk_raise_max(&seen, m);
        }
        for (size_t q0 = 0; q0 < nqp; q0 += NQB)
            for (size_t half = 0; half < NQB && q0 + half < nq; half += NQB / 2)
                for (size_t g = 0; g < np; g++) {
                    __m256i acc[12];
                    kernel256(qrows + q0 * hp + half, hp, panels + g * panel_elems, acc);
                    for (size_t c = 0; c < 2; c++) {
                        const size_t col = r0 + g * PANEL + 8 * c;
                        if (col >= r0 + nr) continue;
                        const size_t w = r0 + nr - col >= 8 ? 8 : r0 + nr - col;
                        const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)w),
                                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                        const __m256 st = _mm256_load_ps(steps + g * PANEL + 8 * c);
                        for (size_t i = 0; i < NQB / 2 && q0 + half + i < nq; i++) {
                            const __m256 g2 = _mm256_mul_ps(_mm256_set1_ps(qsteps[q0 + half + i]), st);
                            _mm256_maskstore_ps(S + (q0 + half + i) * lds + col, k,
                                                _mm256_mul_ps(_mm256_cvtepi32_ps(acc[2 * i + c]), g2));
                        }
                    }
                }
    }
    return seen;
}

double nn_vnni_scores(const void *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds, float *S,
                      size_t lds, void *work)
{
    if (nn_vnni_width() == 512) return scores512(Pq, nq, R, ldr, bj, ds, S, lds, work);
    if (nn_vnni_width() == 256) return scores256(Pq, nq, R, ldr, bj, ds, S, lds, work);
    return NAN;
}

#else

int nn_vnni_width(void) { return 0; }

bool nn_vnni_usable(void) { return false; }

void nn_vnni_pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, void *out)
{
    (void)P;
    (void)ldp;
    memset(out, 0, nn_vnni_queries_bytes(nq, ds));
}

double nn_vnni_scores(const void *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds, float *S,
                      size_t lds, void *work)
{
    (void)Pq, (void)nq, (void)R, (void)ldr, (void)bj, (void)ds, (void)S, (void)lds, (void)work;
    return NAN;
}

#endif
