/* The one main() body of the check unit tests. */
#ifndef TW_CHECK_H
#define TW_CHECK_H

#include <check.h>
#include <stddef.h>

/* One test case of a suite: its name, check's timeout in seconds (0: check's
 * default, CK_DEFAULT_TIMEOUT), a checked fixture run around each test in
 * the test's own process (setup and teardown may be NULL) and the tests, a
 * NULL-terminated list of START_TEST names, then the loop tests (check's
 * tcase_add_loop_test: one test a row of a table of cases). */
typedef struct {
    const TTest *test;
    int n; /* the test runs for _i = 0 .. n-1, each a test of its own */
} tw_loop;

typedef struct {
    const char *name;
    double timeout;
    SFun setup, teardown;
    const TTest *const *tests;
    const tw_loop *loops; /* NULL, or table-driven tests ended by {NULL, 0} */
} tw_case;

/* Runs every test of s (forking, as check does by default) inside a fresh
 * directory for temporary files (see tt_tmpdir, tests/support/test_fs.h),
 * removes that directory with all that the tests left in it, and returns the
 * process exit status: EXIT_FAILURE if any test failed. */
int tw_check_run(Suite *s);

/* The suite `name` of cases[0..n), run with tw_check_run: a test's main(). */
int tw_check_main(const char *name, const tw_case *cases, size_t n);

/* tw_check_main of the suite `name` with one case, `tcase`, of the given
 * timeout (0: check's default), no fixture and the NULL-terminated tests. */
int tw_check_one(const char *name, const char *tcase, double timeout, const TTest *const *tests);

/* The main() of a test program whose suite `name` is one case: tw_check_one
 * of the START_TEST names that follow the timeout. */
#define TW_CHECK_ONE_MAIN(name, tcase, timeout, ...)                                                         \
    int main(void)                                                                                           \
    {                                                                                                        \
        const TTest *const tw_tests_[] = {__VA_ARGS__, NULL};                                                \
        return tw_check_one(name, tcase, timeout, tw_tests_);                                                \
    }

#endif
