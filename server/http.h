/* The HTTP side: libmicrohttpd with a bounded thread pool for connections and
 * a separate pool of workers for analyses (connections are suspended while a
 * worker computes, so /health never waits behind work). Owns request limits,
 * strict percent-decoding, static files, CORS, access log and metrics. */
#ifndef TW_HTTP_H
#define TW_HTTP_H

#include <stddef.h>

#include "api/api.h"
#include "server/config.h"

typedef struct http_server http_server;

/* Binds and starts serving. NULL with a message in err (e.g. port in use). */
http_server *http_start(api_service *svc, const twd_config *cfg, char *err, size_t errlen);

/* The port actually bound (useful with port 0 in tests). */
int http_port(const http_server *s);

/* The connection guard's counters (server/guard.h), for /metrics. */
#include "server/guard.h"
void http_guard_stats(http_server *s, guard_stats *st);

/* Stops accepting, answers queued work with 503, joins every thread. */
void http_stop(http_server *s);

/* Cancels every computation under way of the running server (their
 * clients get 503): what a third stop signal does while http_stop drains.
 * Any thread, at any time (nothing happens before http_start or once
 * http_stop has finished draining). */
void http_hurry(void);

/* Strict percent-decoding of s[0..n): "%XX" must be two hex digits; with
 * plus_is_space, '+' decodes to ' '. Writes the decoded bytes (never longer
 * than n) to out and their count to *out_len. 0 on success, -1 on a bad
 * escape. Exposed for the unit tests. */
int http_percent_decode(const char *s, size_t n, int plus_is_space, char *out, size_t *out_len);

#endif
