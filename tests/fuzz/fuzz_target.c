/* libFuzzer target for the request target: the input is what a client
 * sends after the method ("/svd?block=0&k=5"). It is strictly
 * percent-decoded into a path and query pairs as server/http.c does
 * (http_percent_decode, checked against its definition), and when the path
 * names a route the pairs are dispatched as a GET (and as a HEAD) against a
 * tiny synthetic model. Every answer must be a 200 with a JSON, CSV or text
 * body, or an error other than 500 with the one JSON error shape. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "tests/fuzz/fuzz_app.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_app();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0; /* the server's max_url answers 413 */
    fz_service();
    fz_target t;
    if (fz_parse_target((const char *)data, size, &t) == 0) {
        const api_route *r = api_find_route(t.path);
        for (int m = 0; r && m < 2; m++) {
            api_request req = {.method = m ? API_HEAD : API_GET, .query = t.query, .n_query = t.n_query};
            api_response res;
            api_dispatch(fz_service(), r, &req, &res);
            char what[96];
            snprintf(what, sizeof what, "%s %s", m ? "HEAD" : "GET", r->path);
            fz_check_answer(&res, what);
            fz_check_uncached(r, &req, &res, what);
            api_response_free(&res);
        }
    }
    fz_target_free(&t);
    return 0;
}
