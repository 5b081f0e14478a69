/* A growing text buffer with CSV (RFC 4180) and LaTeX helpers, for the
 * non-JSON answer formats. Allocation failure is sticky: the buffer becomes
 * NULL and every later call is a no-op; check tb.s before using it. */
#ifndef TW_TEXTBUF_H
#define TW_TEXTBUF_H

#include <stddef.h>

#include "api/api.h"

typedef struct {
    char *s;
    size_t len, cap;
    int cells;      /* cells written on the current CSV row */
} textbuf;

void tb_init(textbuf *b);
void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tb_putn(textbuf *b, const char *s, size_t n);

/* CSV: one cell (quoted when it holds a comma, quote, CR or LF), a number
 * cell (%.9g), and the end of a row (CRLF, as RFC 4180). */
void tb_csv_str(textbuf *b, const char *s);
void tb_csv_num(textbuf *b, double v);
void tb_csv_int(textbuf *b, long long v);
void tb_csv_end(textbuf *b);

/* LaTeX: s with the ten special characters escaped; invalid UTF-8 must have
 * been replaced beforehand. */
void tb_latex(textbuf *b, const char *s);

/* Moves the buffer into res with the given content type (200), or a 500 if
 * an allocation failed. Returns 0 or -1. */
int tb_respond(textbuf *b, api_response *res, const char *content_type);

#endif
