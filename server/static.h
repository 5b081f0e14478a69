/* The page's files as twd sends them: read once, fingerprinted (a strong
 * ETag from their content) and, when worth it, gzip-compressed once; kept
 * in memory until the file changes (every request compares the opened
 * file's device, inode, size and mtime with what was read). */
#ifndef TW_STATIC_H
#define TW_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "api/api.h"

typedef struct static_cache static_cache;

/* budget: bytes of files (plain and gzip) kept; larger files are sent
 * from the file each time. NULL when memory runs out. */
static_cache *static_cache_new(size_t budget);
void static_cache_free(static_cache *c);

/* One file as sent. Every field is owned by the caller after a successful
 * static_cache_get (release with static_file_release). */
typedef struct {
    api_blob *plain;  /* the bytes; NULL when the file is too large to keep (send it from fd) */
    api_blob *gz;     /* their gzip encoding, or NULL */
    char etag[40];    /* "\"<16 hex digits>-<size hex>\"": of the plain bytes, or of the id when not kept */
    char etag_gz[44]; /* the gzip form's ETag (etag with "-gz" before the closing quote) */
} static_file;

/* The file `path`, open as fd (a regular file; fstat in *st), gzipped
 * when `compressible` and larger than GZIP_MIN_BYTES. 0, or -1 when it
 * cannot be read (out of memory, a read error). Thread-safe. */
int static_cache_get(static_cache *c, const char *path, int fd, const struct stat *st, bool compressible,
                     static_file *out);
void static_file_release(static_file *f);

/* Does an If-None-Match value match one of the file's ETags (weak
 * comparison, as RFC 9110 13.1.2 asks; `*` matches)? */
int static_etag_matches(const static_file *f, const char *if_none_match);

#endif
