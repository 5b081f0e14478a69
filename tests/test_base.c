/* Unit tests of base/: the scratch arrays (one failure check, one free),
 * the intrusive list, the file helpers. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/lru.h"
#include "base/scratch.h"
#include "tests/support/test_fs.h"
#include "tests/support/tw_check.h"

START_TEST(test_scratch_alloc_and_free)
{
    scratch s = {.n = 0};
    double *a = scratch_alloc(&s, 100, sizeof(double));
    int *z = scratch_zalloc(&s, 1000, sizeof(int));
    char *e = scratch_alloc(&s, 0, 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_nonnull(e); /* a zero size still gives a pointer */
    ck_assert(!s.failed);
    ck_assert_uint_eq(s.n, 3);
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(z[i], 0);
    memset(a, 0x5a, 100 * sizeof(double)); /* writable to the end */
    scratch_free(&s);
    ck_assert_uint_eq(s.n, 0);
    ck_assert(!s.failed);
}
END_TEST

START_TEST(test_scratch_failure_is_sticky)
{
    scratch s = {.n = 0};
    ck_assert_ptr_nonnull(scratch_alloc(&s, 4, 4));
    ck_assert_ptr_null(scratch_alloc(&s, SIZE_MAX / 2, 4)); /* count * size overflows */
    ck_assert(s.failed);
    ck_assert_ptr_nonnull(scratch_alloc(&s, 4, 4)); /* later arrays still come, failed stays */
    ck_assert(s.failed);
    scratch_free(&s);
    ck_assert(!s.failed);
    for (int i = 0; i < SCRATCH_MAX; i++) ck_assert_ptr_nonnull(scratch_alloc(&s, 1, 1));
    ck_assert_ptr_null(scratch_zalloc(&s, 1, 1)); /* one more than SCRATCH_MAX */
    ck_assert(s.failed);
    ck_assert_uint_eq(s.n, SCRATCH_MAX);
    scratch_free(&s);
}
END_TEST

/* A result's arrays freed and the struct zeroed in one line; NULL is
 * nothing (ASan reports a leak or a double free if either went wrong). */
START_TEST(test_free_fields)
{
    typedef struct {
        double *a;
        int *b;
        size_t n;
    } res;
    res r = {malloc(8 * sizeof(double)), malloc(4 * sizeof(int)), 4}, *rp = &r, *none = NULL;
    TW_FREE_FIELDS(rp, rp->a, rp->b);
    ck_assert_ptr_null(r.a);
    ck_assert_ptr_null(r.b);
    ck_assert_uint_eq(r.n, 0);
    TW_FREE_FIELDS(none, NULL);
}
END_TEST

typedef struct {
    tw_lru_node node; /* first */
    int id;
} item;

/* The ids from head to tail, checking every back link on the way. */
static void expect_order(const tw_lru *l, const int *ids, int n)
{
    const tw_lru_node *prev = NULL, *p = l->head;
    for (int i = 0; i < n; i++, prev = p, p = p->next) {
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(((const item *)p)->id, ids[i]);
        ck_assert_ptr_eq(p->prev, prev);
    }
    ck_assert_ptr_null(p);
    ck_assert_ptr_eq(l->tail, prev);
}

/* push_front (recency order), push_back (arrival order), touch and unlink
 * at the head, the tail and the middle. */
START_TEST(test_lru_orders)
{
    item it[4] = {{.id = 0}, {.id = 1}, {.id = 2}, {.id = 3}};
    tw_lru l = {NULL, NULL};
    tw_lru_push_back(&l, &it[1].node);
    tw_lru_push_back(&l, &it[2].node);
    tw_lru_push_front(&l, &it[0].node);
    tw_lru_push_back(&l, &it[3].node);
    expect_order(&l, (const int[]){0, 1, 2, 3}, 4);
    tw_lru_touch(&l, &it[2].node);
    expect_order(&l, (const int[]){2, 0, 1, 3}, 4);
    tw_lru_touch(&l, &it[3].node);
    expect_order(&l, (const int[]){3, 2, 0, 1}, 4);
    tw_lru_unlink(&l, &it[2].node);
    ck_assert_ptr_null(it[2].node.prev);
    ck_assert_ptr_null(it[2].node.next);
    expect_order(&l, (const int[]){3, 0, 1}, 3);
    tw_lru_unlink(&l, &it[1].node);
    tw_lru_unlink(&l, &it[3].node);
    expect_order(&l, (const int[]){0}, 1);
    tw_lru_unlink(&l, &it[0].node);
    expect_order(&l, NULL, 0);
}
END_TEST

/* fs_map_file's mapping is undone by fs_unmap_file (NULL: nothing). */
START_TEST(test_map_and_unmap)
{
    char dir[512], p[600], err[1024];
    tt_tmpdir(dir, sizeof dir, "map");
    snprintf(p, sizeof p, "%s/f", dir);
    tt_write_file(p, "abcdef", 6);
    const void *map = NULL;
    size_t size = 0;
    ck_assert_int_eq(fs_map_file(p, 100, &map, &size, err, sizeof err), 0);
    ck_assert_uint_eq(size, 6);
    ck_assert_int_eq(memcmp(map, "abcdef", 6), 0);
    fs_unmap_file(map, size);
    fs_unmap_file(NULL, 0);
    ck_assert_int_eq(fs_map_file(p, 5, &map, &size, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "more than the limit of 5"), "%s", err);
    tt_rmtree(dir);
}
END_TEST

/* The one reader of the loaders' small files (config.json, vocab.json,
 * merges.txt, twd.conf, the word list): regular files only (a FIFO is not
 * waited on, /dev/zero is not read until memory runs out) and at most
 * max_bytes (issue 9, item 4). */
START_TEST(test_read_file_regular_and_capped)
{
    char dir[512], p[600], err[1024];
    size_t len = 99;
    tt_tmpdir(dir, sizeof dir, "fs");
    snprintf(p, sizeof p, "%s/small", dir);
    tt_write_file(p, "hello", 5);
    char *s = fs_read_file(p, 5, &len, err, sizeof err);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(len, 5);
    ck_assert_str_eq(s, "hello");
    free(s);
    ck_assert_ptr_null(fs_read_file(p, 4, &len, err, sizeof err));
    ck_assert_msg(strstr(err, p) == err && strstr(err, "limit is 4"), "%s", err);
    snprintf(p, sizeof p, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    ck_assert_ptr_null(fs_read_file(p, 1 << 20, &len, err, sizeof err));
    ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
    snprintf(p, sizeof p, "%s/zero", dir);
    ck_assert_int_eq(symlink("/dev/zero", p), 0);
    ck_assert_ptr_null(fs_read_file(p, 1 << 20, &len, err, sizeof err));
    ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
    ck_assert_ptr_null(fs_read_file(dir, 1 << 20, &len, err, sizeof err));
    ck_assert_msg(strstr(err, "not a regular file"), "%s", err);
    tt_rmtree(dir);
}
END_TEST

int main(void)
{
    const TTest *const scratch_tests[] = {test_scratch_alloc_and_free, test_scratch_failure_is_sticky,
                                          test_free_fields, NULL};
    const TTest *const lru_tests[] = {test_lru_orders, NULL};
    const TTest *const fs_tests[] = {test_read_file_regular_and_capped, test_map_and_unmap, NULL};
    const tw_case cases[] = {{.name = "scratch", .tests = scratch_tests},
                             {.name = "lru", .tests = lru_tests},
                             {.name = "fs", .tests = fs_tests}};
    return tw_check_main("base", cases, 3);
}
