#include "api/format.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/status.h"

void tb_init(textbuf *b)
{
    b->sb = (strbuf)STRBUF_INIT;
    b->cells = 0;
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

void tb_csv_str(textbuf *b, const char *s)
{
    sep(b);
    if (!strpbrk(s, ",\"\r\n")) {
        sb_puts(&b->sb, s);
        return;
    }
    sb_putc(&b->sb, '"');
    for (const char *p = s; *p; p++) {
        if (*p == '"') sb_putc(&b->sb, '"');
        sb_putc(&b->sb, *p);
    }
    sb_putc(&b->sb, '"');
}

void tb_csv_num(textbuf *b, double v)
{
    sep(b);
    sb_printf(&b->sb, "%.9g", v);
}

void tb_csv_int(textbuf *b, long long v)
{
    sep(b);
    sb_printf(&b->sb, "%lld", v);
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
    size_t len = 0;
    char *s = sb_take(&b->sb, &len);
    if (!s) return api_status_error(res, TW_ENOMEM, "formatting the answer");
    return api_respond(res, 200, content_type, s, len);
}
