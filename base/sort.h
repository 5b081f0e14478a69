/* Sorting and searching with a context argument (C11's qsort and bsearch
 * have none), and the byte-string order the sorted indexes use. */
#ifndef TW_BASE_SORT_H
#define TW_BASE_SORT_H

#include <stddef.h>

/* <0, 0, >0 as a[0..al) sorts before, with, after b[0..bl): bytes compared
 * as unsigned, a proper prefix first. */
int tw_bytes_cmp(const void *a, size_t al, const void *b, size_t bl);

/* cmp(x, y, ctx): <0, 0, >0 as element x sorts before, with, after y. */
typedef int (*tw_cmp_fn)(const void *x, const void *y, const void *ctx);

/* Stable merge sort of n elements of `size` bytes at base; tmp holds n
 * elements (scratch). Equal elements keep their order. */
void tw_sort(void *base, void *tmp, size_t n, size_t size, tw_cmp_fn cmp, const void *ctx);

/* Binary search of key in base[0..n) sorted by cmp(key, element, ctx); the
 * element found, or NULL. Among equal elements it is the one the halving
 * meets first. */
const void *tw_search(const void *key, const void *base, size_t n, size_t size, tw_cmp_fn cmp,
                      const void *ctx);

#endif
