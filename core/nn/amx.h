/* Screening scores in bfloat16 on Intel's tile unit (AMX).
 *
 * A screening pass (core/nn/topk.h) needs float scores only within a proven
 * bound of the exact ones: the candidates are rescored exactly, and the
 * bound decides which rows can be left out. On a CPU with AMX-BF16 the
 * scores P R^T can be had several times faster than by an fp32 sgemm, from
 * P and R rounded to bfloat16 (8 significant bits) and products summed in
 * fp32 by TDPBF16PS. The bound of such a score is wider (docs/MATH.md §2.6):
 *
 *   |amx(p, r) - p . r| <= (2u + u^2 + gamma_{ds+2} (1 + u)^2) sum_t |p_t r_t|
 *                          + ds 2^-124 (|p| + |r| + 1),   u = 2^-8,
 *
 * and so a pass that uses it keeps more candidates per list; the lists and
 * scores it returns are the same, bit for bit.
 *
 * The unit is used when the CPU has AMX-TILE, AMX-BF16 and AVX512-BF16, the
 * kernel grants the process the tile state (arch_prctl), and TWD_AMX is not
 * "0" in the environment (read once per process).
 * Everything here is safe to call from several threads at once. */
#ifndef TW_AMX_H
#define TW_AMX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether the tile path runs on this machine (decided once per process). */
bool nn_amx_usable(void);

/* The length a row of ds floats takes as bf16 operands: ds rounded up to
 * a multiple of 32 (the tile's depth). */
size_t nn_amx_depth(size_t ds);

/* bf16 elements of the packed queries of nn_amx_pack_queries: nq rounded
 * up to 32 rows of nn_amx_depth(ds). */
size_t nn_amx_queries_elems(size_t nq, size_t ds);

/* bf16 elements of one thread's scratch for nn_amx_scores of nq queries
 * (64-byte aligned scratch is best). */
size_t nn_amx_work_elems(size_t ds, size_t nq);

/* elems bf16 elements, 64-byte aligned (free with free), or NULL. */
uint16_t *nn_amx_alloc(size_t elems);

/* P (nq, ds), row i at P + i * ldp, rounded to bf16 rows of
 * nn_amx_depth(ds) into out (nn_amx_queries_elems), zero-padded. */
void nn_amx_pack_queries(const float *P, size_t ldp, size_t nq, size_t ds, uint16_t *out);

/* S (nq, bj), row i at S + i * lds: S_ij = the bf16 score of query i of
 * Pq (packed by nn_amx_pack_queries for these nq, ds) against row j of R
 * (bj, ds), row j at R + j * ldr. work: nn_amx_work_elems(ds, nq) elements.
 * Only when nn_amx_usable(). */
void nn_amx_scores(const uint16_t *Pq, size_t nq, const float *R, size_t ldr, size_t bj, size_t ds, float *S,
                   size_t lds, uint16_t *work);

/* The bound above for a query of 2-norm pn against rows of 2-norm at most
 * R (sum_t |p_t r_t| <= pn R): what a pass adds to its candidates' reach.
 * INFINITY when pn R is NaN or not small enough for bf16 (1e36). */
double nn_amx_error(size_t ds, double pn, double R);

#endif
