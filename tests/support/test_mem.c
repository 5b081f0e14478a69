#include "tests/support/test_mem.h"

#include <stdlib.h>

void tt_free_n(void *const *p, size_t n)
{
    for (size_t i = 0; i < n; i++) free(p[i]);
}
