/* Prometheus metrics: requests by route and status, latency histogram,
 * in-flight requests, model load time. Thread-safe. */
#ifndef TW_METRICS_H
#define TW_METRICS_H

#include <stddef.h>

#include "base/strbuf.h"

void metrics_init(void);
void metrics_request_start(void);
/* `route` must be a string with static storage (a route path, "static", ...). */
void metrics_request_done(const char *route, int status, double seconds);
void metrics_set_load_seconds(double s);
/* Renders the exposition text of the server's counters and the process_*
 * series into b (an api_metrics_render_fn: ctx is unused). */
void metrics_render(void *ctx, strbuf *b);

#endif
