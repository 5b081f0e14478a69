/* Small file-system helpers of the server. */
#ifndef TW_FSUTIL_H
#define TW_FSUTIL_H

#include <stddef.h>

/* snprintf into out[n] that fails instead of truncating: 0, or -1 (out then
 * holds a truncated string) when the result does not fit. */
int fs_path(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* mkdir -p: creates path and its missing parents (mode 0755). 0 or -1 (errno). */
int fs_mkdir_p(const char *path);

#endif
