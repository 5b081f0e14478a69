#include "api/textbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tb_init(textbuf *b)
{
    b->cap = 4096;
    b->len = 0;
    b->cells = 0;
    b->s = malloc(b->cap);
    if (b->s) b->s[0] = '\0';
}

static int reserve(textbuf *b, size_t extra)
{
    if (!b->s) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t nc = b->cap;
    while (nc < b->len + extra + 1) nc *= 2;
    char *n = realloc(b->s, nc);
    if (!n) {
        free(b->s);
        b->s = NULL;
        return -1;
    }
    b->s = n;
    b->cap = nc;
    return 0;
}

void tb_putn(textbuf *b, const char *s, size_t n)
{
    if (reserve(b, n) != 0) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void tb_printf(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n) != 0) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sep(textbuf *b)
{
    if (b->cells++) tb_putn(b, ",", 1);
}

void tb_csv_str(textbuf *b, const char *s)
{
    sep(b);
    if (!strpbrk(s, ",\"\r\n")) {
        tb_putn(b, s, strlen(s));
        return;
    }
    tb_putn(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') tb_putn(b, "\"\"", 2);
        else tb_putn(b, p, 1);
    }
    tb_putn(b, "\"", 1);
}

void tb_csv_num(textbuf *b, double v)
{
    sep(b);
    tb_printf(b, "%.9g", v);
}

void tb_csv_int(textbuf *b, long long v)
{
    sep(b);
    tb_printf(b, "%lld", v);
}

void tb_csv_end(textbuf *b)
{
    tb_putn(b, "\r\n", 2);
    b->cells = 0;
}

void tb_latex(textbuf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\': tb_printf(b, "\\textbackslash{}"); break;
        case '~': tb_printf(b, "\\textasciitilde{}"); break;
        case '^': tb_printf(b, "\\textasciicircum{}"); break;
        case '#': case '$': case '%': case '&': case '_': case '{': case '}':
            tb_printf(b, "\\%c", *p);
            break;
        case '\n': tb_printf(b, "\\textbackslash{}n"); break;
        case '\t': tb_printf(b, "\\textbackslash{}t"); break;
        case '\r': tb_printf(b, "\\textbackslash{}r"); break;
        default: tb_putn(b, p, 1);
        }
    }
}

int tb_respond(textbuf *b, api_response *res, const char *content_type)
{
    if (!b->s) return api_error(res, 500, "out of memory while formatting the answer");
    api_response_free(res);
    res->status = 200;
    res->body = b->s;
    res->len = b->len;
    res->content_type = content_type;
    b->s = NULL;
    return 0;
}
