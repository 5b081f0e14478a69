/* The api layer assembled as the daemon assembles it (server/main.c
 * load_main), around a tiny synthetic model, for the request fuzzers; the
 * request target decoded as server/http.c decodes it; and the one property
 * every answer must have. */
#ifndef TW_FUZZ_APP_H
#define TW_FUZZ_APP_H

#include <stddef.h>

#include "api/api.h"

/* The READY app over a 'tiny' synth_write checkpoint in a temporary folder,
 * built on the first call (UMAP off, as config_defaults otherwise). */
twd_app *fz_app(void);
/* The service of that one app: what api_dispatch takes. */
api_service *fz_service(void);

/* Request limits of the app: 0 the defaults; 1 the smallest the
 * configuration allows (max_text 1, max_tokens 1, max_answer_tokens 1000,
 * ...); 2 the largest (every cap at its maximum, so the model's shape is
 * the bound). Profiles 0 and 2 cap max_answer_tokens at 5000, so that no
 * input takes seconds under the sanitizers. The server never changes its
 * limits while running; the fuzzer does between inputs, to reach the
 * checks of every bound. fz_app starts with profile 0. */
void fz_app_limits(int profile);

/* The caches must never change an answer: the same request is dispatched
 * on a twin of the app that shares the model but has no answer cache and
 * no block cache (budgets 0), and status, content type and body must be
 * identical to res. For the cacheable routes, whose answers the caches
 * keep and reuse. */
void fz_check_uncached(const api_route *r, const api_request *req, const api_response *res, const char *what);

/* A decoded request target: path and query pairs. */
typedef struct {
    char *path;
    api_kv *query;
    size_t n_query;
} fz_target;

/* Splits raw[0..n) at the first '?' and strictly percent-decodes the path
 * and each '&'-separated key=value pair with http_percent_decode ('+' is a
 * space in the query), as server/http.c parse_target does. 0, or 400 (a bad
 * escape or a NUL byte in the path: what the server answers). *t is
 * filled either way and must be freed with fz_target_free. */
int fz_parse_target(const char *raw, size_t n, fz_target *t);
void fz_target_free(fz_target *t);

/* Aborts unless res is a 200 with a JSON (parsed), CSV or text (UTF-8)
 * body, or an error other than 500 with exactly the JSON error shape
 * {"error": {"code", "type", "message"}} and code == status. `what` names
 * the request in the report. */
void fz_check_answer(const api_response *res, const char *what);

#endif
