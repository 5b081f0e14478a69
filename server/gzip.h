/* gzip on the wire: whether a request accepts it, and the compressed form
 * of an answer, made once and kept beside it (api_blob_side). */
#ifndef TW_GZIP_H
#define TW_GZIP_H

#include <stdbool.h>
#include <stddef.h>

#include "api/api.h"

/* Answers of at most this many bytes are sent as they are. */
#define GZIP_MIN_BYTES 1024

/* Answers above this many bytes are compressed at level 1 rather than 6:
 * on /svd's xl answer (947 KB) 10 ms for 321 KB instead of 38 ms for
 * 262 KB, and a cold answer waits for it. */
#define GZIP_FAST_BYTES ((size_t)256 << 10)

/* Does an Accept-Encoding value accept gzip? Yes when it names gzip (or
 * x-gzip) with a q above 0, or `*` with a q above 0 and gzip not refused
 * (RFC 9110 12.5.3). NULL (no header): no. */
bool gzip_accepted(const char *accept_encoding);

/* Is a content type worth compressing (text, JSON, JavaScript, SVG)? */
bool gzip_worth(const char *content_type);

/* gzip (RFC 1952) of p[0..n) at zlib `level`: malloc'd, its length in
 * *out_len; NULL when memory runs out or the result would not be smaller. */
char *gzip_bytes(const void *p, size_t n, int level, size_t *out_len);

/* The gzip form of b: made on the first call (level 6, or 1 above
 * GZIP_FAST_BYTES where speed matters more) and kept beside b for every later one. A new
 * reference, or NULL when b is not worth compressing (GZIP_MIN_BYTES or
 * less, or no smaller compressed). Thread-safe. */
api_blob *gzip_side(api_blob *b);

#endif
