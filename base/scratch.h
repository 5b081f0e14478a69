/* The working arrays of one computation, allocated one by one and freed
 * together. Allocation failure is sticky, as in strbuf: a function takes
 * its arrays, checks `failed` once, and calls scratch_free on every path.
 * At most SCRATCH_MAX arrays; one more is a failure too. */
#ifndef TW_BASE_SCRATCH_H
#define TW_BASE_SCRATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

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

/* Frees the n arrays p[0..n). */
void tw_free_arrays(void *const *p, size_t n);

/* The body of a result's free function: when obj is not NULL, frees the
 * arrays it owns (its members, named after it) and zeroes *obj, e.g.
 *   void x_result_free(x_result *r) { TW_FREE_FIELDS(r, r->rows, r->ids); } */
#define TW_FREE_FIELDS(obj, ...)                                                                             \
    do {                                                                                                     \
        if (obj) {                                                                                           \
            void *const tw_arrays_[] = {__VA_ARGS__};                                                        \
            tw_free_arrays(tw_arrays_, sizeof tw_arrays_ / sizeof tw_arrays_[0]);                            \
            memset((obj), 0, sizeof *(obj));                                                                 \
        }                                                                                                    \
    } while (0)

/* A growing array: p (NULL or from malloc) with room for *cap elements of
 * `size` bytes, given room for at least `need`, the room doubling from
 * `first`. Returns the array (p itself when it has room) and updates *cap,
 * or NULL on failure, p then untouched and *cap unchanged. */
void *tw_grow(void *p, size_t *cap, size_t need, size_t size, size_t first);

#endif
