#include "base/scratch.h"

#include <stdint.h>
#include <stdlib.h>

static void *take(scratch *s, size_t count, size_t size, bool zero)
{
    if (s->n >= SCRATCH_MAX || (size && count > SIZE_MAX / size)) {
        s->failed = true;
        return NULL;
    }
    size_t bytes = count * size;
    if (bytes == 0) bytes = 1;
    void *p = zero ? calloc(1, bytes) : malloc(bytes);
    if (!p) {
        s->failed = true;
        return NULL;
    }
    s->p[s->n++] = p;
    return p;
}

void *scratch_alloc(scratch *s, size_t count, size_t size) { return take(s, count, size, false); }

void *scratch_zalloc(scratch *s, size_t count, size_t size) { return take(s, count, size, true); }

void tw_free_arrays(void *const *p, size_t n)
{
    for (size_t i = 0; i < n; i++) free(p[i]);
}

void scratch_free(scratch *s)
{
    tw_free_arrays(s->p, s->n);
    s->n = 0;
    s->failed = false;
}

void *tw_grow(void *p, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap && p) return p;
    size_t c = *cap ? *cap : (first ? first : 1);
    while (c < need) {
        if (c > SIZE_MAX / 2) return NULL;
        c *= 2;
    }
    if (size && c > SIZE_MAX / size) return NULL;
    void *n = realloc(p, c * size);
    if (!n) return NULL;
    *cap = c;
    return n;
}
