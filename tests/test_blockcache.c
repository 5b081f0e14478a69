/* Unit tests of core/ana/blockcache: the byte budget, LRU eviction,
 * reference counts that keep entries alive over budget, and single-flight
 * fills (one fill for concurrent requests; a failing fill reaches every
 * waiter and caches nothing). */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/ana/blockcache.h"
#include "tests/support/tw_check.h"

typedef struct {
    atomic_int calls;
    int value;
    int sleep_ms;
    int fail;
} fill_ctx;

static int fill_const(void *data, size_t bytes, void *ctx)
{
    fill_ctx *f = ctx;
    atomic_fetch_add(&f->calls, 1);
    if (f->sleep_ms) {
        struct timespec ts = {0, (long)f->sleep_ms * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (f->fail) return -42;
    memset(data, f->value, bytes);
    return 0;
}

static blockcache_stats stats_of(blockcache *c)
{
    blockcache_stats st;
    blockcache_get_stats(c, &st);
    return st;
}

START_TEST(test_cache_budget_lru_refcount)
{
    const size_t X = 1000;
    blockcache *c = blockcache_new(2 * X + X / 2); // room for two entries
    ck_assert_ptr_nonnull(c);
    fill_ctx f = {.value = 7};
    blockcache_entry *a, *b, *e;
    blockcache_stats st;
    ck_assert_int_eq(blockcache_acquire(c, "A", X, fill_const, &f, &a), 0);
    ck_assert_int_eq(((const unsigned char *)blockcache_data(a))[X - 1], 7);
    blockcache_release(c, a);
    ck_assert_int_eq(blockcache_acquire(c, "B", X, fill_const, &f, &b), 0);
    blockcache_release(c, b);
    ck_assert_int_eq(blockcache_acquire(c, "A", X, fill_const, &f, &a), 0); // hit, A now MRU
    blockcache_release(c, a);
    ck_assert_int_eq(atomic_load(&f.calls), 2);
    ck_assert_int_eq(blockcache_acquire(c, "C", X, fill_const, &f, &e), 0); // evicts B (LRU)
    blockcache_release(c, e);
    st = stats_of(c);
    ck_assert_uint_le(st.bytes, st.budget);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(st.evictions, 1);
    ck_assert_int_eq(blockcache_acquire(c, "A", X, fill_const, &f, &a), 0);
    blockcache_release(c, a);
    ck_assert_int_eq(atomic_load(&f.calls), 3); // A was kept
    ck_assert_int_eq(blockcache_acquire(c, "B", X, fill_const, &f, &b), 0);
    ck_assert_int_eq(atomic_load(&f.calls), 4); // B had been evicted
    // Hold B; fill D and E: B must stay valid although over budget.
    f.value = 9;
    blockcache_entry *d, *e2;
    ck_assert_int_eq(blockcache_acquire(c, "D", X, fill_const, &f, &d), 0);
    ck_assert_int_eq(blockcache_acquire(c, "E", X, fill_const, &f, &e2), 0);
    st = stats_of(c);
    ck_assert_uint_eq(st.bytes, 3 * X); // all three referenced
    ck_assert_int_eq(((const unsigned char *)blockcache_data(b))[0], 7);
    blockcache_release(c, d);
    blockcache_release(c, e2);
    blockcache_release(c, b);
    st = stats_of(c);
    ck_assert_uint_le(st.bytes, st.budget);
    ck_assert_uint_eq(st.hits, 2);
    ck_assert_uint_eq(st.misses, 6);
    // an entry bigger than the budget is served and then dropped
    ck_assert_int_eq(blockcache_acquire(c, "huge", 10 * X, fill_const, &f, &a), 0);
    st = stats_of(c);
    ck_assert_uint_ge(st.bytes, 10 * X);
    blockcache_release(c, a);
    st = stats_of(c);
    ck_assert_uint_le(st.bytes, st.budget);
    // same key, other size: refused
    ck_assert_int_eq(blockcache_acquire(c, "F", X, fill_const, &f, &a), 0);
    blockcache_release(c, a);
    ck_assert_int_eq(blockcache_acquire(c, "F", X + 1, fill_const, &f, &a), TW_EINVAL);
    // clear drops everything unreferenced
    blockcache_clear(c);
    st = stats_of(c);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.entries, 0);
    blockcache_free(c);
}
END_TEST

typedef struct {
    blockcache *c;
    fill_ctx *f;
    const void *data;
    int rc;
} thread_arg;

static void *acquire_thread(void *p)
{
    thread_arg *t = p;
    blockcache_entry *e = NULL;
    t->rc = blockcache_acquire(t->c, "cold", 1 << 16, fill_const, t->f, &e);
    if (t->rc == 0) {
        t->data = blockcache_data(e);
        if (((const unsigned char *)t->data)[100] != 5) t->rc = -1;
        blockcache_release(t->c, e);
    }
    return NULL;
}

START_TEST(test_cache_single_flight)
{
    enum { NT = 8 };
    blockcache *c = blockcache_new(1 << 20);
    fill_ctx f = {.value = 5, .sleep_ms = 100};
    pthread_t th[NT];
    thread_arg args[NT];
    for (int i = 0; i < NT; i++) {
        args[i] = (thread_arg){.c = c, .f = &f};
        ck_assert_int_eq(pthread_create(&th[i], NULL, acquire_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    ck_assert_int_eq(atomic_load(&f.calls), 1);
    for (int i = 0; i < NT; i++) {
        ck_assert_int_eq(args[i].rc, 0);
        ck_assert_ptr_eq(args[i].data, args[0].data);
    }
    blockcache_stats st = stats_of(c);
    ck_assert_uint_eq(st.misses, 1);
    ck_assert_uint_eq(st.hits, NT - 1);
    ck_assert_uint_ge(st.waits, 1);
    blockcache_free(c);

    // A failing fill: every waiter gets the error, nothing is cached, the
    // next request tries again.
    c = blockcache_new(1 << 20);
    fill_ctx g = {.value = 5, .sleep_ms = 100, .fail = 1};
    for (int i = 0; i < NT; i++) {
        args[i] = (thread_arg){.c = c, .f = &g};
        ck_assert_int_eq(pthread_create(&th[i], NULL, acquire_thread, &args[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    int failed = 0;
    for (int i = 0; i < NT; i++) failed += args[i].rc == -42;
    ck_assert_int_eq(failed, NT);
    ck_assert_int_le(atomic_load(&g.calls), NT);
    st = stats_of(c);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    int before = atomic_load(&g.calls);
    g.fail = 0;
    g.sleep_ms = 0;
    args[0] = (thread_arg){.c = c, .f = &g};
    acquire_thread(&args[0]);
    ck_assert_int_eq(args[0].rc, 0);
    ck_assert_int_eq(atomic_load(&g.calls), before + 1);
    blockcache_free(c);
}
END_TEST

int main(void)
{
    const TTest *const cache_tests[] = {test_cache_budget_lru_refcount, test_cache_single_flight, NULL};
    return tw_check_one("blockcache", "cache", 0, cache_tests);
}
