/* File-system helpers shared by every layer: bounded path building, mkdir -p,
 * and opening or reading files that must be regular files (a FIFO or a
 * device given where a file is expected must never block start-up or feed
 * endless bytes). */
#ifndef TW_BASE_FS_H
#define TW_BASE_FS_H

#include <stddef.h>
#include <sys/stat.h>

/* snprintf into out[n] that fails instead of truncating: 0, or -1 (errno
 * ENAMETOOLONG; out then holds a truncated string) when it does not fit. */
int fs_path(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* dir + "/" + name into out[n] (no doubled slash when dir ends in one).
 * 0, or -1 as fs_path. */
int fs_join(char *out, size_t n, const char *dir, const char *name);

/* mkdir -p: creates path and its missing parents (mode 0755). 0 or -1 (errno). */
int fs_mkdir_p(const char *path);

/* Opens path read-only for a regular file: never blocks on a FIFO (opened
 * with O_NONBLOCK, then switched back to blocking), refuses anything that is
 * not a regular file. Returns the descriptor (O_CLOEXEC) and fills *st, or
 * -1 with one line "<path>: <problem>" in err. */
int fs_open_regular(const char *path, struct stat *st, char *err, size_t errlen);

/* Maps a regular file of 1..max bytes read-only (unmap with fs_unmap_file). A FIFO
 * or device is refused before it could block or have side effects: stat
 * first, then open with O_NONBLOCK and check the opened file again. The
 * mapping is registered (base/mapreg.h: tw_map_remove it before munmap), so
 * that a SIGBUS from a page of a file truncated underneath is traced to it.
 * 0, or -1 with one line "<path>: <problem>" in err. */
int fs_map_file(const char *path, unsigned long long max, const void **map, size_t *size, char *err,
                size_t errlen);

/* Undoes fs_map_file: takes the mapping out of the registry, then unmaps
 * it. NULL map: nothing. */
void fs_unmap_file(const void *map, size_t size);

/* Reads a whole regular file of at most max_bytes into a malloc'd buffer
 * (NUL-terminated; the length without the NUL in *len). NULL with one line
 * "<path>: <problem>" in err when it cannot be opened, is not a regular
 * file, is larger than max_bytes, or a read fails. */
char *fs_read_file(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen);

/* True if path exists and is a regular file. */
int fs_is_regular(const char *path);

/* True if path exists and is a directory. */
int fs_is_dir(const char *path);

#endif
