/* Full rankings for checking top-k lists against a plain sort, and the
 * plain double-precision arithmetic the references are written in. */
#ifndef TW_TEST_RANK_H
#define TW_TEST_RANK_H

#include <stddef.h>

#include "core/nn/topk.h"

typedef struct {
    double s;
    int id;
} tt_scored;

/* Sorts a[0..n) by score, largest first, equal scores lower id first (the
 * order of core/nn/topk.h). */
void tt_sort_desc(tt_scored *a, size_t n);

/* Sorts a[0..n) by score, smallest first, equal scores lower id first (the
 * order of nearest neighbours by distance). */
void tt_sort_asc(tt_scored *a, size_t n);

/* sum a[i] b[i] over n, in order. */
double tt_dot(const double *a, const double *b, size_t n);

/* sum (a[i] - b[i])^2 over n, in double, in order. */
double tt_sqdist(const float *a, const float *b, size_t n);

/* Every row of M (n, d) scored by sign * (v . row), sorted by
 * tt_sort_desc: a malloc'd (n) list (NULL when out of memory). */
tt_scored *tt_rank_all(const double *v, const double *M, size_t n, size_t d, double sign);

/* Fails unless hits[0..k) has exactly the ids of ref's first k, in order,
 * and each score within tol * max(1, max |ref score|) of sign * the
 * reference score (sign -1: ref ranks -v, the hits are scores of v).
 * `what` names the list in the messages. Returns the largest difference. */
double tt_check_list(const char *what, const topk_hit *hits, const tt_scored *ref, size_t k, double tol,
                     double sign);

/* x (n) as a malloc'd double array. */
double *tt_to_double(const float *x, size_t n);

/* LayerNorm of one row x (d) in double: (x - mean) / sqrt(var + eps) times
 * g plus b (NULL g: gains 1; NULL b: no bias); var is the biased variance. */
void tt_layernorm_row(const float *x, const float *g, const float *b, size_t d, double eps, double *out);

#endif
