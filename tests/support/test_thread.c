#include "tests/support/test_thread.h"

#include <check.h>
#include <pthread.h>

void tt_run_threads(void *(*fn)(void *), void *args, size_t size, size_t n)
{
    pthread_t th[64];
    ck_assert_uint_le(n, 64);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, fn, (char *)args + i * size), 0);
    for (size_t i = 0; i < n; i++) pthread_join(th[i], NULL);
}

void tt_expect_one_fill(blockcache *c, size_t n, blockcache_stats *st)
{
    blockcache_get_stats(c, st);
    ck_assert_uint_eq(st->misses, 1);
    ck_assert_uint_eq(st->hits, n - 1);
}
