/* The working arrays of one computation, allocated one by one and freed
 * together. Allocation failure is sticky, as in strbuf: a function takes
 * its arrays, checks `failed` once, and calls scratch_free on every path.
 * At most SCRATCH_MAX arrays; one more is a failure too. */
#ifndef TW_BASE_SCRATCH_H
#define TW_BASE_SCRATCH_H

#include <stdbool.h>
#include <stddef.h>

#define SCRATCH_MAX 16

typedef struct {
    void *p[SCRATCH_MAX];
    size_t n;
    bool failed; /* an allocation failed (or count * size overflowed) */
} scratch;

/* count * size bytes, uninitialised; NULL (and s->failed) on failure. A
 * zero size still gives a distinct pointer. */
void *scratch_alloc(scratch *s, size_t count, size_t size);

/* The same, zeroed. */
void *scratch_zalloc(scratch *s, size_t count, size_t size);

/* Frees every array taken and resets s to empty. */
void scratch_free(scratch *s);

#endif
