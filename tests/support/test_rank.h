/* Full rankings for checking top-k lists against a plain sort. */
#ifndef TW_TEST_RANK_H
#define TW_TEST_RANK_H

#include <stddef.h>

typedef struct {
    double s;
    int id;
} tt_scored;

/* Sorts a[0..n) by score, largest first, equal scores lower id first (the
 * order of core/nn/topk.h). */
void tt_sort_desc(tt_scored *a, size_t n);

#endif
