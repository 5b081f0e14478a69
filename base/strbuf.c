#include "base/strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(strbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
    b->failed = true;
}

int sb_reserve(strbuf *b, size_t extra)
{
    if (b->failed) return -1;
    if (extra > ((size_t)-1) / 2 - b->len) {
        fail(b);
        return -1;
    }
    if (b->s && b->len + extra + 1 <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + extra + 1) nc *= 2;
    char *n = realloc(b->s, nc);
    if (!n) {
        fail(b);
        return -1;
    }
    if (!b->s) n[0] = '\0';
    b->s = n;
    b->cap = nc;
    return 0;
}

void sb_putn(strbuf *b, const char *s, size_t n)
{
    if (sb_reserve(b, n) != 0) return;
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_puts(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

void sb_putc(strbuf *b, char c) { sb_putn(b, &c, 1); }

void sb_vprintf(strbuf *b, const char *fmt, va_list ap)
{
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    if (n < 0) {
        fail(b);
        return;
    }
    if (sb_reserve(b, (size_t)n) != 0) return;
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void sb_printf(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

char *sb_take(strbuf *b, size_t *len)
{
    if (b->failed) {
        *b = (strbuf)STRBUF_INIT;
        return NULL;
    }
    if (!b->s && sb_reserve(b, 0) != 0) {
        *b = (strbuf)STRBUF_INIT;
        return NULL;
    }
    char *s = b->s;
    if (len) *len = b->len;
    *b = (strbuf)STRBUF_INIT;
    return s;
}

void sb_free(strbuf *b)
{
    free(b->s);
    *b = (strbuf)STRBUF_INIT;
}
