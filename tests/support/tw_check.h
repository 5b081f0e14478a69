/* The one main() body of the check unit tests. */
#ifndef TW_CHECK_H
#define TW_CHECK_H

#include <check.h>
#include <stdlib.h>

/* Runs every test of s (forking, as check does by default) and returns the
 * process exit status: EXIT_FAILURE if any test failed. */
static inline int tw_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
