#include "tests/support/tw_check.h"

#include <stdlib.h>

#include "tests/support/test_fs.h"

int tw_check_run(Suite *s)
{
    tt_run_dir_begin();
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tt_run_dir_end();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int tw_check_main(const char *name, const tw_case *cases, size_t n)
{
    Suite *s = suite_create(name);
    for (size_t i = 0; i < n; i++) {
        const tw_case *c = &cases[i];
        TCase *tc = tcase_create(c->name);
        if (c->timeout > 0) tcase_set_timeout(tc, c->timeout);
        if (c->setup || c->teardown) tcase_add_checked_fixture(tc, c->setup, c->teardown);
        for (const TTest *const *t = c->tests; t && *t; t++) tcase_add_test(tc, *t);
        for (const tw_loop *l = c->loops; l && l->test; l++) tcase_add_loop_test(tc, l->test, 0, l->n);
        suite_add_tcase(s, tc);
    }
    return tw_check_run(s);
}

int tw_check_one(const char *name, const char *tcase, double timeout, const TTest *const *tests)
{
    const tw_case c = {.name = tcase, .timeout = timeout, .tests = tests};
    return tw_check_main(name, &c, 1);
}
