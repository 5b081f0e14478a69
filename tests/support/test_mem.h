/* Memory of the unit tests: many tests hold several buffers until their
 * end and free them together. */
#ifndef TW_TEST_MEM_H
#define TW_TEST_MEM_H

#include <stddef.h>

/* free() of p[0..n) (NULL entries allowed). */
void tt_free_n(void *const *p, size_t n);

/* TT_FREE(a, b, c): frees every pointer named, in order. */
#define TT_FREE(...)                                                                                         \
    tt_free_n((void *const[]){__VA_ARGS__}, sizeof((void *const[]){__VA_ARGS__}) / sizeof(void *))

#endif
