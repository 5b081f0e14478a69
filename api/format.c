#include "api/format.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/json.h"
#include "base/log.h"
#include "base/status.h"
#include "base/utf8.h"

void tb_init(textbuf *b)
{
    b->sb = (strbuf)STRBUF_INIT;
    b->cells = 0;
}

void tb_init_csv(textbuf *b, const char *header)
{
    tb_init(b);
    tb_printf(b, "%s\r\n", header);
}

void tb_printf(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&b->sb, fmt, ap);
    va_end(ap);
}

static void sep(textbuf *b)
{
    if (b->cells++) sb_putc(&b->sb, ',');
}

void tb_csv_str(textbuf *b, const char *s) { tb_csv_strn(b, s, strlen(s)); }

void tb_csv_strn(textbuf *b, const char *s, size_t n)
{
    sep(b);
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n' || !s[i];
    if (!quote) {
        sb_putn(&b->sb, s, n);
        return;
    }
    sb_putc(&b->sb, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') sb_putc(&b->sb, '"');
        sb_putc(&b->sb, s[i]);
    }
    sb_putc(&b->sb, '"');
}

void tb_csv_num(textbuf *b, double v)
{
    sep(b);
    if (!isfinite(v)) api_fault("a value that is not a finite number");
    sb_printf(&b->sb, "%.9g", v);
}

void tb_csv_int(textbuf *b, long long v)
{
    sep(b);
    sb_printf(&b->sb, "%lld", v);
}

void tb_csv_empty(textbuf *b) { sep(b); }

void tb_csv_token(textbuf *b, const tokenizer *tok, int id)
{
    size_t n = 0;
    const uint8_t *bytes = tokenizer_token_bytes(tok, id, &n);
    size_t len = 0;
    char *t = utf8_sanitize(bytes ? (const char *)bytes : "", bytes ? n : 0, &len);
    if (!t) api_fault("out of memory");
    tb_csv_int(b, id);
    tb_csv_strn(b, t ? t : "", t ? len : 0); /* by length: GPT-2 has a token of the byte 0 */
    free(t);
}

void tb_csv_hit(textbuf *b, const tokenizer *tok, const topk_hit *h)
{
    tb_csv_token(b, tok, h->id);
    tb_csv_num(b, h->score);
}

bool api_format_is(const api_args *a, const char *f)
{
    const char *v = api_str(a, "format");
    return v && strcmp(v, f) == 0;
}

void tb_csv_end(textbuf *b)
{
    sb_putn(&b->sb, "\r\n", 2);
    b->cells = 0;
}

void tb_latex(textbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\': sb_puts(&b->sb, "\\textbackslash{}"); break;
        case '~': sb_puts(&b->sb, "\\textasciitilde{}"); break;
        case '^': sb_puts(&b->sb, "\\textasciicircum{}"); break;
        case '#':
        case '$':
        case '%':
        case '&':
        case '_':
        case '{':
        case '}':
            sb_putc(&b->sb, '\\');
            sb_putc(&b->sb, *p);
            break;
        case '\n': sb_puts(&b->sb, "\\textbackslash{}n"); break;
        case '\t': sb_puts(&b->sb, "\\textbackslash{}t"); break;
        case '\r': sb_puts(&b->sb, "\\textbackslash{}r"); break;
        default: sb_putc(&b->sb, *p);
        }
    }
}

int tb_respond(textbuf *b, api_response *res, const char *content_type)
{
    const char *fault = api_fault_take();
    if (fault) {
        sb_free(&b->sb);
        tw_log("could not build a table answer: %s", fault);
        return api_error(res, 500, "could not build the answer: it holds %s; this is a bug, please report it",
                         fault);
    }
    size_t len = 0;
    char *s = sb_take(&b->sb, &len);
    if (!s) return api_status_error(res, TW_ENOMEM, "formatting the answer");
    return api_respond(res, 200, content_type, s, len);
}

int api_npy_respond(api_response *res, const char *descr, const size_t *shape, int ndim, const void *data,
                    size_t bytes)
{
    char dims[128] = "", hdr[256];
    size_t dl = 0;
    for (int i = 0; i < ndim && i < 4; i++)
        dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%zu,%s", shape[i], i + 1 < ndim ? " " : "");
    if (ndim > 1) dims[dl - 1] = '\0'; /* (a, b), but (a,) for one dimension */
    int n =
        snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, dims);
    size_t pre = 10, hl = (size_t)n + 1; /* magic, version, length; the dict and '\n' */
    hl += (64 - (pre + hl) % 64) % 64;
    size_t len = pre + hl + bytes;
    char *b = malloc(len + 1);
    if (!b) return api_status_error(res, TW_ENOMEM, "the npy answer");
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (char)(hl & 0xff);
    b[9] = (char)(hl >> 8);
    memset(b + pre, ' ', hl);
    memcpy(b + pre, hdr, (size_t)n);
    b[pre + hl - 1] = '\n';
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the npy writer assumes a little-endian machine"
#endif
    memcpy(b + pre + hl, data, bytes);
    b[len] = '\0';
    return api_respond(res, 200, NPY_TYPE, b, len);
}
