#include "tests/support/test_rank.h"

#include <stdlib.h>

static int cmp_desc(const void *a, const void *b)
{
    const tt_scored *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return x->id - y->id;
}

void tt_sort_desc(tt_scored *a, size_t n) { qsort(a, n, sizeof *a, cmp_desc); }
