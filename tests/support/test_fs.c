#include "tests/support/test_fs.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

static char run_dir[1024]; /* "" outside tw_check_run */

static const char *tmpdir_env(void)
{
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

const char *tt_tmp_root(void) { return run_dir[0] ? run_dir : tmpdir_env(); }

void tt_tmpdir(char *out, size_t n, const char *tag)
{
    ck_assert_msg(fs_path(out, n, "%s/twd-%s-XXXXXX", tt_tmp_root(), tag) == 0, "temporary path too long");
    ck_assert_msg(mkdtemp(out) != NULL, "cannot make a temporary directory %s", out);
}

void tt_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[4096];
            if (fs_join(p, sizeof p, path, e->d_name) == 0) tt_rmtree(p);
        }
        closedir(d);
    }
    rmdir(path);
}

void tt_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

void tt_write_in(const char *dir, const char *name, const void *data, size_t len)
{
    char p[4096];
    ck_assert_int_eq(fs_join(p, sizeof p, dir, name), 0);
    tt_write_file(p, data, len);
}

void *tt_read_file(const char *path, size_t *len)
{
    char err[512];
    char *b = fs_read_file(path, (size_t)1 << 30, len, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    return b;
}

void *tt_read_in(const char *dir, const char *name, size_t *len)
{
    char p[4096];
    ck_assert_int_eq(fs_join(p, sizeof p, dir, name), 0);
    return tt_read_file(p, len);
}

void tt_run_dir_begin(void)
{
    run_dir[0] = '\0';
    char d[sizeof run_dir];
    if (fs_path(d, sizeof d, "%s/twd-test-XXXXXX", tmpdir_env()) == 0 && mkdtemp(d))
        memcpy(run_dir, d, sizeof d);
}

void tt_run_dir_end(void)
{
    if (run_dir[0]) tt_rmtree(run_dir);
    run_dir[0] = '\0';
}
