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
