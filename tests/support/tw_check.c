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
