#include "base/log.h"

#include <stdio.h>
#include <string.h>

static tw_log_sink sink_fn;
static void *sink_ctx;

void tw_log_set_sink(tw_log_sink sink, void *ctx)
{
    sink_fn = sink;
    sink_ctx = ctx;
}

void tw_log(const char *fmt, ...)
{
    char line[2048];
    memcpy(line, "twd: ", 5);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + 5, sizeof line - 6, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = strlen(line);
    for (size_t i = 5; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    if (sink_fn) {
        sink_fn(sink_ctx, line);
        return;
    }
    line[len++] = '\n';
    fwrite(line, 1, len, stderr); /* one write per line */
}
