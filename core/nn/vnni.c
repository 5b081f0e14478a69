/* 16-bit integer screening scores on AVX512-VNNI: see vnni.h. */
#include "core/nn/vnni.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The VNNI path needs x86-64 and a compiler with the AVX512-VNNI
 * intrinsics (GCC 8, Clang 6). */
#if defined(__x86_64__) && (defined(__clang__) ? __clang_major__ >= 6 : __GNUC__ >= 8)
#define TW_VNNI 1
#include <cpuid.h>
#include <immintrin.h>

#include "core/nn/x86_transpose.h"
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vnni")))
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
        if (!(a <= pinf)) pinf = a; /* NaN wins */
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

static bool usable;
static pthread_once_t usable_once = PTHREAD_ONCE_INIT;

static void decide(void)
{
    const char *env = getenv("TWD_VNNI");
    if (env && strcmp(env, "0") == 0) return;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    const bool f512 = b & (1u << 16), bw = b & (1u << 30), vnni = c & (1u << 11);
    if (!(f512 && bw && vnni)) return;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    usable = (lo & 0xe6u) == 0xe6u; /* SSE, AVX and the three AVX-512 states on */
}

bool nn_vnni_usable(void)
{
    pthread_once(&usable_once, decide);
    return usable;
}

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

/* Query rows in blocks of NQB: block b's pair t of query i (int16 2t,
 * 2t + 1) is dword (b dp / 2 + t) NQB + i; zero past ds and past nq.
 * Steps after the nqp rows. */
VNNI_TARGET static void pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, void *out)
{
    const size_t dp = depth(ds), nqp = queries_padded(nq);
    const int Q = nn_vnni_level(ds);
    int32_t *q = out;
    float *steps = (float *)(q + nqp * dp / 2);
    for (size_t i = 0; i < nq; i++) {
        double rep;
        float f = row_scale(row_max(P + i * ldp, ds), Q, &steps[i], &rep);
        int32_t *blk = q + (i / NQB) * NQB * dp / 2 + i % NQB;
        for (size_t t = 0; t < dp; t += DEPTH) {
            int32_t v[16] __attribute__((aligned(64)));
            _mm512_store_si512((void *)v, int_pairs(P + i * ldp + t, ds - t < DEPTH ? ds - t : DEPTH, f));
            for (size_t m = 0; m < 16; m++) blk[(t / 2 + m) * NQB] = v[m];
        }
    }
}

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
        if (!(rep <= seen)) seen = seen != seen ? seen : rep; /* NaN wins */
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

VNNI_TARGET double nn_vnni_scores(const void *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds,
                                  float *S, size_t lds, void *work)
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
            if (!(m <= seen)) seen = seen != seen ? seen : m;
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

#else

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
