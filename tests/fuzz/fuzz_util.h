/* Helpers shared by the libFuzzer targets: files made of the fuzz input
 * without touching the disk, folders of such files, and the input split into
 * parts.
 *
 * A parser that takes a path is fed through a memfd: its bytes are replaced
 * on every run and the parser opens "/proc/self/fd/N" (a regular file, so
 * fstat, mmap and the "regular files only" checks behave as on disk). A
 * loader that takes a folder gets a temporary folder whose entries are
 * symbolic links to such paths, made once; each run only rewrites the memfds.
 * Temporary folders live under $TMPDIR (scripts/fuzz points it into the
 * build folder) and are removed at exit. */
#ifndef TW_FUZZ_UTIL_H
#define TW_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Prints why and aborts, so that libFuzzer reports the input. */
#define FZ_CHECK(cond, ...)                                                                                  \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz check failed: %s (%s:%d): ", #cond, __FILE__, __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

typedef struct {
    int fd;
    char path[64]; /* "/proc/self/fd/N" */
} fz_file;

/* A new empty memfd; aborts when the kernel refuses (nothing to fuzz then). */
static inline void fz_file_init(fz_file *f, const char *name)
{
    f->fd = memfd_create(name, MFD_CLOEXEC);
    FZ_CHECK(f->fd >= 0, "memfd_create failed");
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

/* Makes the file's content exactly p[0..n). */
static inline void fz_file_set(fz_file *f, const void *p, size_t n)
{
    FZ_CHECK(ftruncate(f->fd, 0) == 0 && ftruncate(f->fd, (off_t)n) == 0, "ftruncate failed");
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(f->fd, (const char *)p + done, n - done, (off_t)done);
        FZ_CHECK(w > 0, "pwrite failed");
        done += (size_t)w;
    }
}

/* ---- temporary folders ---- */

#define FZ_MAX_DIRS 4
typedef struct {
    char dir[FZ_MAX_DIRS][512];
    int n;
} fz_dir_list;

static inline fz_dir_list *fz_dirs(void)
{
    static fz_dir_list l;
    return &l;
}

static inline void fz_remove_dirs(void)
{
    fz_dir_list *l = fz_dirs();
    for (int i = 0; i < l->n; i++) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", l->dir[i]);
        if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", l->dir[i]);
    }
    l->n = 0;
}

/* A fresh folder $TMPDIR/twd-fuzz-<tag>-XXXXXX, removed at exit. */
static inline const char *fz_tempdir(const char *tag)
{
    fz_dir_list *l = fz_dirs();
    FZ_CHECK(l->n < FZ_MAX_DIRS, "too many temporary folders");
    const char *base = getenv("TMPDIR");
    char *d = l->dir[l->n];
    snprintf(d, sizeof l->dir[0], "%s/twd-fuzz-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    FZ_CHECK(mkdtemp(d) != NULL, "mkdtemp %s failed", d);
    if (l->n++ == 0) atexit(fz_remove_dirs);
    return d;
}

/* dir/name becomes a symbolic link to f's /proc/self/fd path. */
static inline void fz_link(const char *dir, const char *name, const fz_file *f)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FZ_CHECK(symlink(f->path, p) == 0, "symlink %s failed", p);
}

/* ---- splitting the input ---- */

/* The input as [u32 little-endian n][n bytes][the rest]: the first part is
 * at most what is there. Inputs shorter than 4 bytes are all rest. */
static inline void fz_split(const uint8_t *data, size_t size, const uint8_t **a, size_t *na,
                            const uint8_t **b, size_t *nb)
{
    if (size < 4) {
        *a = data;
        *na = 0;
        *b = data;
        *nb = size;
        return;
    }
    size_t n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
    size -= 4;
    data += 4;
    if (n > size) n = size;
    *a = data;
    *na = n;
    *b = data + n;
    *nb = size - n;
}

/* err is one line (no newline) starting with prefix. */
static inline int fz_one_line(const char *err, const char *prefix)
{
    return strchr(err, '\n') == NULL && strncmp(err, prefix, strlen(prefix)) == 0;
}

#endif
