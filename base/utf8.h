/* UTF-8 validation and repair. */
#ifndef TW_UTF8_H
#define TW_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..len) is well-formed UTF-8 (no overlongs, surrogates, > U+10FFFF). */
bool utf8_valid(const char *s, size_t len);

/* Returns a malloc'd NUL-terminated copy of s[0..len) in which every maximal
 * invalid subsequence is replaced by U+FFFD (WHATWG/Unicode "substitution of
 * maximal subparts"), storing its length in *out_len if non-NULL. NULL on OOM. */
char *utf8_sanitize(const char *s, size_t len, size_t *out_len);

#endif
