/* One-line error messages: every loader, writer and check in the project
 * reports a failure as one line of text in a caller's buffer. */
#ifndef TW_BASE_ERR_H
#define TW_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* printf into err[errlen] (nothing if err is NULL or errlen 0), with line
 * breaks replaced by spaces so that the message stays one line. */
void tw_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same with a va_list, appending at offset `at` (0: from the start). */
void tw_vset_err(char *err, size_t errlen, size_t at, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* A printable copy of s[0..len) for a message, in out[outlen] (outlen >= 4):
 * bytes outside ASCII 0x20..0x7e become '?', and what does not fit in
 * outlen - 4 bytes is cut with "...". */
void tw_printable(char *out, size_t outlen, const char *s, size_t len);

#endif
