/* Threads of the unit tests that exercise concurrent callers. */
#ifndef TW_TEST_THREAD_H
#define TW_TEST_THREAD_H

#include <stddef.h>

#include "core/ana/blockcache.h"

/* Runs fn on each of the n arguments args[0..n) (each `size` bytes) in its
 * own thread, all started before any is joined, and joins them all; fails
 * the test when a thread cannot be started. n <= 64. */
void tt_run_threads(void *(*fn)(void *), void *args, size_t size, size_t n);

/* After n concurrent callers of one key of c: asserts that they shared one
 * fill (one miss, n - 1 hits) and returns the counters in *st. */
void tt_expect_one_fill(blockcache *c, size_t n, blockcache_stats *st);

#endif
