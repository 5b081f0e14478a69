/* Prometheus metrics: requests by route and status, latency histogram,
 * in-flight requests, model load time. Thread-safe. */
#ifndef TW_METRICS_H
#define TW_METRICS_H

#include <stddef.h>

void metrics_init(void);
void metrics_request_start(void);
/* `route` must be a string with static storage (a route path, "static", ...). */
void metrics_request_done(const char *route, int status, double seconds);
void metrics_set_load_seconds(double s);
/* Extra gauge lines appended by other modules (caches, UMAP): called with the
 * output buffer while rendering. */
typedef void (*metrics_extra_fn)(void *ctx, char **buf, size_t *len, size_t *cap);
void metrics_set_extra(metrics_extra_fn fn, void *ctx);
/* Appends formatted text to a growing buffer (for metrics_extra_fn). */
void metrics_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Renders the exposition text; malloc'd, caller frees. */
char *metrics_render(size_t *len);

#endif
