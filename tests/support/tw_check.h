/* The one main() body of the check unit tests. */
#ifndef TW_CHECK_H
#define TW_CHECK_H

#include <check.h>

/* Runs every test of s (forking, as check does by default) inside a fresh
 * directory for temporary files (see tt_tmpdir, tests/support/test_fs.h),
 * removes that directory with all that the tests left in it, and returns the
 * process exit status: EXIT_FAILURE if any test failed. */
int tw_check_run(Suite *s);

#endif
