/* Unit tests of base/: the scratch arrays (one failure check, one free). */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "base/scratch.h"
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

int main(void)
{
    const TTest *const scratch_tests[] = {test_scratch_alloc_and_free, test_scratch_failure_is_sticky, NULL};
    const tw_case scratch_case = {"scratch", 0, NULL, NULL, scratch_tests};
    return tw_check_main("base", &scratch_case, 1);
}
