/* The daemon's log: one line per event on a sink (stderr unless set), each
 * prefixed "twd: ". Every layer logs through it, so the server decides
 * where lines go and tests can capture them. Thread-safe; a line is written
 * with one call, so lines of concurrent threads never interleave. */
#ifndef TW_BASE_LOG_H
#define TW_BASE_LOG_H

#include <stdarg.h>

typedef void (*tw_log_sink)(void *ctx, const char *line);

/* Replaces the sink (NULL: stderr). Not to be called while other threads log. */
void tw_log_set_sink(tw_log_sink sink, void *ctx);

/* Formats one line (no trailing newline needed; line breaks in the text are
 * replaced by spaces) and writes it with the "twd: " prefix. */
void tw_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
