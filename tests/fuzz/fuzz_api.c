/* libFuzzer target for api_dispatch: method, route, query pairs and JSON
 * body all from the input, against a tiny synthetic model:
 *
 *   [method byte][route byte][query string] ['\n' [body]]
 *
 * The method byte picks GET, POST, HEAD or another method (bits 0-1) and
 * the request limits (bits 2-3: the defaults, the smallest or the largest
 * the configuration allows; fz_app_limits), the route byte
 * one row of api_routes[]; the query string ("block=0&k=5") is decoded as
 * server/http.c decodes it (a bad escape is the server's 400, not sent
 * on); the rest is the body (read by POST routes as a JSON object). Every
 * answer must be a 200 with a JSON, CSV or text body, or an error other
 * than 500 with the one JSON error shape whose code is the status. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "tests/fuzz/fuzz_app.h"

static size_t n_routes;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_app();
    while (api_routes[n_routes].path) n_routes++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 20)) return 0; /* max_body */
    static const int methods[] = {API_GET, API_POST, API_HEAD, API_OTHER};
    static const char *const names[] = {"GET", "POST", "HEAD", "OTHER"};
    int mi = data[0] & 3, profile = (data[0] >> 2) & 3;
    fz_app_limits(profile == 3 ? 0 : profile);
    const api_route *r = &api_routes[data[1] % n_routes];
    const char *rest = (const char *)data + 2;
    size_t n = size - 2;
    const char *nl = memchr(rest, '\n', n);
    size_t qlen = nl ? (size_t)(nl - rest) : n;
    const char *body = nl ? nl + 1 : NULL;
    size_t blen = nl ? n - qlen - 1 : 0;

    /* "?" + query, decoded as a request target with an empty path */
    char *target = malloc(qlen + 1);
    if (!target) return 0;
    target[0] = '?';
    memcpy(target + 1, rest, qlen);
    fz_target t;
    if (fz_parse_target(target, qlen + 1, &t) == 0) {
        /* an exact-size copy of the body: an overread is caught */
        char *b = blen ? malloc(blen) : NULL;
        if (blen && b) memcpy(b, body, blen);
        api_request req = {.method = methods[mi],
                           .query = t.query,
                           .n_query = t.n_query,
                           .body = b,
                           .body_len = b ? blen : 0};
        api_response res;
        api_dispatch(fz_service(), r, &req, &res);
        char what[96];
        snprintf(what, sizeof what, "%s %s (limits %d)", names[mi], r->path, profile);
        fz_check_answer(&res, what);
        fz_check_uncached(r, &req, &res, what);
        api_response_free(&res);
        free(b);
    }
    fz_target_free(&t);
    free(target);
    return 0;
}
