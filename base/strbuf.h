/* A growing byte buffer for building text (answers, metrics, files).
 * Allocation failure is sticky: the buffer is freed, `failed` is set, and
 * every later call is a no-op, so a writer checks once at the end. The
 * contents are always NUL-terminated while s is not NULL. */
#ifndef TW_BASE_STRBUF_H
#define TW_BASE_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *s; /* NULL until the first write, or after a failure */
    size_t len, cap;
    bool failed; /* an allocation failed: the contents are gone */
} strbuf;

#define STRBUF_INIT                                                                                          \
    {                                                                                                        \
        NULL, 0, 0, false                                                                                    \
    }

/* Ensures room for `extra` more bytes (plus the NUL). 0, or -1 (failed). */
int sb_reserve(strbuf *b, size_t extra);
void sb_putn(strbuf *b, const char *s, size_t n);
void sb_puts(strbuf *b, const char *s);
void sb_putc(strbuf *b, char c);
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(strbuf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Hands the bytes to the caller (malloc'd, NUL-terminated; *len may be
 * NULL) and empties b. NULL when the buffer failed (b is then reset). An
 * empty buffer gives an empty string, not NULL. */
char *sb_take(strbuf *b, size_t *len);

/* Frees the contents and resets b to STRBUF_INIT. */
void sb_free(strbuf *b);

#endif
