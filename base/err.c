#include "base/err.h"

#include <stdio.h>

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
