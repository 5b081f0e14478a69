/* The non-JSON answer formats: CSV (RFC 4180) and LaTeX, written into a
 * growing buffer (base/strbuf.h; allocation failure is sticky and reported
 * once by tb_respond). */
#ifndef TW_API_FORMAT_H
#define TW_API_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "api/api.h"
#include "base/strbuf.h"
#include "core/nn/topk.h"
#include "core/tok/tokenizer.h"

#define CSV_TYPE   "text/csv; charset=utf-8"
#define LATEX_TYPE "application/x-latex; charset=utf-8"
#define NPY_TYPE   "application/octet-stream"

typedef struct {
    strbuf sb;
    int cells; /* cells written on the current CSV row */
} textbuf;

void tb_init(textbuf *b);
/* tb_init, then a CSV table's header row: header (the column names,
 * comma-separated) and CRLF. */
void tb_init_csv(textbuf *b, const char *header);
void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* CSV: one cell (quoted when it holds a comma, quote, CR or LF), a number
 * cell (%.9g), an integer cell, and the end of a row (CRLF, as RFC 4180). */
void tb_csv_str(textbuf *b, const char *s);
/* n bytes of s, which may hold NUL bytes (then quoted). */
void tb_csv_strn(textbuf *b, const char *s, size_t n);
void tb_csv_num(textbuf *b, double v);
void tb_csv_int(textbuf *b, long long v);
void tb_csv_end(textbuf *b);

/* A token as the cells id, text (invalid UTF-8 replaced; docs/API.md), and
 * a scored one as id, text, score. */
void tb_csv_token(textbuf *b, const tokenizer *tok, int id);
void tb_csv_hit(textbuf *b, const tokenizer *tok, const topk_hit *h);
/* An empty cell (a value that does not apply to the row). */
void tb_csv_empty(textbuf *b);

/* Whether the request's `format` parameter is f. */
bool api_format_is(const api_args *a, const char *f);

/* LaTeX: s with the ten special characters escaped; invalid UTF-8 must have
 * been replaced beforehand. */
void tb_latex(textbuf *b, const char *s);

/* Answers (200) a C-order little-endian array as numpy's .npy (format
 * 1.0): descr its dtype ("<f4", "<f8"), shape[0..ndim) its dimensions
 * (1 <= ndim <= 4), data their product of elements. Returns 0 or -1 (a 500
 * when memory runs out). */
int api_npy_respond(api_response *res, const char *descr, const size_t *shape, int ndim, const void *data,
                    size_t bytes);

/* Moves the buffer into res with the given content type (200), or a 500 if
 * an allocation failed. Returns 0 or -1. */
int tb_respond(textbuf *b, api_response *res, const char *content_type);

#endif
