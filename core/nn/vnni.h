/* Screening scores in 16-bit integers on AVX512-VNNI (VPDPWSSD).
 *
 * A screening pass (core/nn/topk.h) needs float scores only within a proven
 * bound of the exact ones: the candidates are rescored exactly, and the
 * bound decides which rows can be left out. On a CPU with AVX512-VNNI but
 * no tile unit (core/nn/amx.h), VPDPWSSD does 32 exact 16-bit
 * multiply-adds per instruction where an fp32 FMA does 16, so the scores
 * P R^T come about twice as fast from P and R rounded to integers:
 * each row x (a query, or a row of R) is scaled by Q / max_t |x_t| and
 * rounded, Q = min(32767, floor(sqrt((2^31 - 1) / dp))) with dp the depth
 * padded to 32, so that no int32 sum of dp products can overflow; the
 * integer dot product is exact, and one scaling by the two rows' steps
 * gives the float score. The bound (docs/MATH.md §18), h = 1/2 + 2^-7:
 *
 *   E = (h / Q) (Rinf |p|_1 + |p|_inf sqrt(ds) R) + 3 ds h^2 |p|_inf Rinf / Q^2,
 *   |vnni(p, r) - p . r| <= (E + 5.0001 u (|p| R + E)) (1 + 1e-6),  u = 2^-24,
 *
 * for rows of 2-norm at most R and largest element at most Rinf (which the
 * scoring measures and returns). A pass that uses it keeps more candidates
 * per list; the lists and scores it returns are the same, bit for bit.
 *
 * Used when the CPU has AVX512F, AVX512BW and AVX512-VNNI and the OS keeps
 * the AVX-512 state, or else AVX2 and AVX-VNNI (the same instruction on 256
 * bits, nn_vnni_width), and TWD_VNNI is not "0" in the environment (read
 * once per process). Safe to call from several threads at once. */
#ifndef TW_VNNI_H
#define TW_VNNI_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the VNNI path runs on this machine (decided once per process). */
bool nn_vnni_usable(void);

/* Its registers: 512 (AVX512-VNNI), 256 (AVX-VNNI with AVX2: Intel's
 * Alder Lake and later clients, its E-core Xeons; also chosen with
 * TWD_VNNI=256 on a CPU with both), or 0 (not usable). The integers, the
 * scores and the bound are the same on both. */
int nn_vnni_width(void);

/* The integer level Q of rows of ds elements (above). */
int nn_vnni_level(size_t ds);

/* Bytes of the packed queries of nn_vnni_pack_queries. */
size_t nn_vnni_queries_bytes(size_t nq, size_t ds);

/* Bytes of one thread's scratch for nn_vnni_scores of rows of ds. */
size_t nn_vnni_work_bytes(size_t ds);

/* bytes, 64-byte aligned (free with free), or NULL. */
void *nn_vnni_alloc(size_t bytes);

/* P (nq, ds), row i at P + i * ldp, as integer rows with their steps into
 * out (nn_vnni_queries_bytes). */
void nn_vnni_pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, void *out);

/* S (nq, bj), row i at S + i * lds: S_ij = the integer score of query i of
 * Pq (packed by nn_vnni_pack_queries for these nq, ds) against row j of R
 * (bj, ds), row j at R + j * ldr. work: nn_vnni_work_bytes(ds). Returns the
 * largest |R_jt| (NaN when R holds a NaN; INFINITY when a row holds an
 * infinity or its largest element is below 2^-40 without being 0: then the
 * scores are not bounded). Only when nn_vnni_usable(). */
double nn_vnni_scores(const void *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds, float *S,
                      size_t lds, void *work);

/* The bound above for query p (ds floats) against rows of 2-norm at most R
 * whose largest element is at most Rinf: INFINITY when it cannot be given
 * (NaN or infinite inputs, |p| R above 1e36, a query whose largest element
 * is below 2^-40 without being 0). */
double nn_vnni_error(size_t ds, const float *p, double R, double Rinf);

#endif
