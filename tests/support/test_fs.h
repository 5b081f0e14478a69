/* Temporary files of the unit tests. Every test program's run (tw_check_run)
 * gets one directory under $TMPDIR (/tmp when TMPDIR is unset or empty);
 * tt_tmpdir makes the directories of single tests inside it, and the whole
 * run directory is removed when the run ends, also after failed or crashed
 * tests (check ends a failed test's process without running its cleanup). */
#ifndef TW_TEST_FS_H
#define TW_TEST_FS_H

#include <stddef.h>

/* The directory that all temporary files of this process go under: the run
 * directory inside tw_check_run, else $TMPDIR, else /tmp. */
const char *tt_tmp_root(void);

/* Makes a new empty directory <root>/twd-<tag>-XXXXXX and writes its path
 * into out[n]; fails the test when it cannot. */
void tt_tmpdir(char *out, size_t n, const char *tag);

/* Removes path and everything below it (symbolic links are removed, never
 * followed). A missing path is not an error. */
void tt_rmtree(const char *path);

/* Writes data[0..len) to path (created or truncated); fails the test when
 * it cannot. */
void tt_write_file(const char *path, const void *data, size_t len);

/* dir + "/" + name: tt_write_file of a file in a directory. */
void tt_write_in(const char *dir, const char *name, const void *data, size_t len);

/* The whole file at path, malloc'd and NUL-terminated (its length without
 * the NUL in *len); fails the test when it cannot be read. */
void *tt_read_file(const char *path, size_t *len);

/* dir + "/" + name: tt_read_file of a file in a directory. */
void *tt_read_in(const char *dir, const char *name, size_t *len);

/* Called by tw_check_run around the run: makes and removes the run directory. */
void tt_run_dir_begin(void);
void tt_run_dir_end(void);

#endif
