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

void scratch_free(scratch *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->p[i]);
    s->n = 0;
    s->failed = false;
}
