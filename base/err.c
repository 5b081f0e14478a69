#include "base/err.h"

#include <stdio.h>
#include <string.h>

void tw_vset_err(char *err, size_t errlen, size_t at, const char *fmt, va_list ap)
{
    if (!err || errlen == 0 || at >= errlen) return;
    vsnprintf(err + at, errlen - at, fmt, ap);
    for (char *p = err + at; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

void tw_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_vset_err(err, errlen, 0, fmt, ap);
    va_end(ap);
}

void tw_printable(char *out, size_t outlen, const char *s, size_t len)
{
    const size_t keep = outlen - 4; /* room for "..." and NUL */
    size_t i;
    for (i = 0; i < len && i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    if (i < len) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}
