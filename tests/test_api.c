/* The JSON error shape, parameter validation and strict percent-decoding,
 * without a model or sockets; and, over a tiny synthetic model, the answer
 * cache. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/format.h"
#include "api/json.h"
#include "api/openapi.h"
#include "core/model/synth.h"
#include "server/config.h"
#include "server/http.h"
#include "tests/support/test_fs.h"
#include "tests/support/tw_check.h"

static twd_config cfg;
static twd_app app;
static twd_app *app_list[1] = {&app};
static api_service svc = {.models = app_list, .n_models = 1};

static void setup(void)
{
    config_defaults(&cfg);
    api_app_init(&app);
    app.svc = &svc;
    config_api_settings(&cfg, &app.set);
    api_app_set_status(&app, "loading the checkpoint");
    app.model.cfg = (gpt2_config){.n_layer = 12,
                                  .n_head = 12,
                                  .n_embd = 768,
                                  .n_inner = 3072,
                                  .n_ctx = 1024,
                                  .vocab_size = 50257,
                                  .ln_eps = 1e-5f};
    atomic_store(&app.state, APP_LOADING);
}

/* Parses res as the error shape and checks code/type; returns the message. */
static const char *check_error(api_response *res, int code, const char *type, json_t **keep)
{
    ck_assert_int_eq(res->status, code);
    ck_assert_str_eq(res->content_type, "application/json");
    json_error_t e;
    json_t *root = json_loadb(res->body, res->len, 0, &e);
    ck_assert_msg(root != NULL, "not JSON: %s", res->body);
    ck_assert_int_eq(json_object_size(root), 1);
    json_t *err = json_object_get(root, "error");
    ck_assert(json_is_object(err));
    ck_assert_int_eq(json_object_size(err), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(err, "code")), code);
    ck_assert_str_eq(json_string_value(json_object_get(err, "type")), type);
    *keep = root;
    return json_string_value(json_object_get(err, "message"));
}

START_TEST(error_shape_for_each_status)
{
    static const struct {
        int code;
        const char *type;
    } cases[] = {
        {400, "invalid_request"},
        {404, "not_found"},
        {405, "method_not_allowed"},
        {408, "invalid_request"},
        {413, "payload_too_large"},
        {414, "uri_too_long"},
        {431, "headers_too_large"},
        {503, "unavailable"},
        {500, "internal_error"},
        {501, "not_implemented"},
        {505, "http_version_not_supported"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_response res = {0};
        api_error(&res, cases[i].code, "problem %d with \"%s\"", cases[i].code, "quotes");
        json_t *root;
        const char *msg = check_error(&res, cases[i].code, cases[i].type, &root);
        ck_assert_msg(strstr(msg, "with \"quotes\""), "message: %s", msg);
        json_decref(root);
        api_response_free(&res);
    }
    /* invalid UTF-8 quoted from a client never breaks the JSON */
    api_response res = {0};
    api_error(&res, 400, "bad word '%s'",
              "\xff\xfe"
              "abc");
    json_t *root;
    const char *msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_ptr_nonnull(strstr(msg, "\xef\xbf\xbd"));
    json_decref(root);
    api_response_free(&res);
}
END_TEST

static void dispatch(const char *path, int method, const char *const *kv, size_t n, const char *body,
                     api_response *res)
{
    api_kv q[8];
    for (size_t i = 0; i < n; i++) {
        q[i].key = (char *)kv[2 * i];
        q[i].key_len = strlen(kv[2 * i]);
        q[i].val = (char *)kv[2 * i + 1];
        q[i].val_len = strlen(kv[2 * i + 1]);
    }
    api_request req = {
        .method = method, .query = q, .n_query = n, .body = body, .body_len = body ? strlen(body) : 0};
    const api_route *r = api_find_route(path);
    ck_assert_msg(r != NULL, "route %s missing", path);
    api_dispatch(&svc, r, &req, res);
}

START_TEST(health_and_readiness)
{
    api_response res;
    dispatch("/health", API_GET, NULL, 0, NULL, &res);
    json_t *root;
    const char *msg = check_error(&res, 503, "unavailable", &root);
    ck_assert_msg(strstr(msg, "loading the checkpoint"), "message: %s", msg);
    ck_assert_int_gt(res.retry_after, 0);
    json_decref(root);
    api_response_free(&res);
    /* routes that need the model answer 503 while loading, before validation */
    const char *kv[] = {"text", "hello"};
    dispatch("/tokenize", API_GET, kv, 1, NULL, &res);
    check_error(&res, 503, "unavailable", &root);
    json_decref(root);
    api_response_free(&res);
}
END_TEST

START_TEST(method_checks)
{
    api_response res;
    json_t *root;
    dispatch("/health", API_POST, NULL, 0, "{}", &res);
    check_error(&res, 405, "method_not_allowed", &root);
    ck_assert_str_eq(res.allow, "GET, HEAD");
    json_decref(root);
    api_response_free(&res);
    ck_assert_ptr_null(api_find_route("/nope"));
}
END_TEST

START_TEST(parameter_validation)
{
    atomic_store(&app.state, APP_READY);
    api_response res;
    json_t *root;
    const char *msg;
    const char *missing[] = {"other", "1"};
    dispatch("/tokenize", API_GET, missing, 1, NULL, &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_msg(strstr(msg, "unknown parameter 'other'") && strstr(msg, "allowed: text"), "message: %s",
                  msg);
    json_decref(root);
    api_response_free(&res);

    dispatch("/tokenize", API_GET, NULL, 0, NULL, &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_str_eq(msg, "parameter 'text' is required");
    json_decref(root);
    api_response_free(&res);

    const char *twice[] = {"text", "a", "text", "b"};
    dispatch("/tokenize", API_GET, twice, 2, NULL, &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_str_eq(msg, "parameter 'text' is given more than once");
    json_decref(root);
    api_response_free(&res);

    const char *bad_utf8[] = {"text", "ab\xc3"};
    dispatch("/tokenize", API_GET, bad_utf8, 1, NULL, &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_str_eq(msg, "parameter 'text' is not valid UTF-8");
    json_decref(root);
    api_response_free(&res);

    app.set.limits.max_text = 4;
    const char *too_long[] = {"text", "hello"};
    dispatch("/tokenize", API_GET, too_long, 1, NULL, &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_msg(strstr(msg, "5 bytes long; the limit is 4"), "message: %s", msg);
    json_decref(root);
    api_response_free(&res);

    dispatch("/tokenize", API_POST, NULL, 0, "{\"text\": 5}", &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_str_eq(msg, "parameter 'text' must be a string");
    json_decref(root);
    api_response_free(&res);

    dispatch("/tokenize", API_POST, NULL, 0, "[1,2]", &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_str_eq(msg, "body must be a JSON object");
    json_decref(root);
    api_response_free(&res);

    dispatch("/tokenize", API_POST, NULL, 0, "{\"text\": ", &res);
    msg = check_error(&res, 400, "invalid_request", &root);
    ck_assert_msg(strncmp(msg, "body is not valid JSON", 22) == 0, "message: %s", msg);
    json_decref(root);
    api_response_free(&res);
}
END_TEST

START_TEST(openapi_lists_every_route)
{
    api_response res;
    dispatch("/openapi.json", API_GET, NULL, 0, NULL, &res);
    ck_assert_int_eq(res.status, 200);
    json_t *doc = json_loadb(res.body, res.len, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "openapi")), "3.0.3");
    json_t *paths = json_object_get(doc, "paths");
    size_t n = 0;
    for (const api_route *r = api_routes; r->path; r++, n++) {
        json_t *item = json_object_get(paths, r->path);
        ck_assert_msg(item != NULL, "%s missing from openapi", r->path);
        if (r->methods & API_GET) ck_assert_ptr_nonnull(json_object_get(item, "get"));
        if (r->methods & API_POST) ck_assert_ptr_nonnull(json_object_get(item, "post"));
        json_t *get = json_object_get(item, "get");
        if (get) {
            /* the row's parameters, and model= on the routes that need a model */
            size_t np = (r->flags & API_NEEDS_MODEL) ? 1 : 0;
            for (const api_param *p = r->params; p && p->name; p++) np++;
            ck_assert_int_eq(json_array_size(json_object_get(get, "parameters")), np);
        }
    }
    ck_assert_int_eq(json_object_size(paths), n);
    json_decref(doc);
    api_response_free(&res);
}
END_TEST

/* The notation of answers (api/openapi.h) as JSON Schema: the schema's
 * compact JSON, or the start of the error message. */
static void check_notation(const char *notation, const char *want)
{
    char err[512];
    json_t *s = api_schema_of(&svc, notation, err, sizeof err);
    if (!s) {
        ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s: error '%s', want '%s'", notation, err,
                      want);
        return;
    }
    char *got = json_dumps(s, JSON_COMPACT);
    ck_assert_msg(strcmp(got, want) == 0, "%s:\n got  %s\n want %s", notation, got, want);
    free(got);
    json_decref(s);
}

START_TEST(answer_notation)
{
    atomic_store(&app.state, APP_READY); /* n_layer 12, n_head 12, n_embd 768 */
    check_notation("{a: int, b?: str}", "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                                        "\"b\":{\"type\":\"string\"}},\"required\":[\"a\"],"
                                        "\"additionalProperties\":false}");
    check_notation("{a: num, ...}", "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"}},"
                                    "\"required\":[\"a\"]}");
    check_notation("{...}", "{\"type\":\"object\"}");
    check_notation("{}", "{\"type\":\"object\",\"additionalProperties\":false}");
    check_notation("int(0..$layer)", "{\"type\":\"integer\",\"minimum\":0,\"maximum\":11}");
    check_notation("num(..1)", "{\"type\":\"number\",\"maximum\":1}");
    check_notation("[num; $dh]", "{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":64,"
                                 "\"maxItems\":64}");
    check_notation("{v#3: num}", "{\"type\":\"object\",\"properties\":{\"v0\":{\"type\":\"number\"},"
                                 "\"v1\":{\"type\":\"number\"},\"v2\":{\"type\":\"number\"}},"
                                 "\"required\":[\"v0\",\"v1\",\"v2\"],\"additionalProperties\":false}");
    check_notation("'a'|'b'|null", "{\"type\":\"string\",\"enum\":[\"a\",\"b\",null],\"nullable\":true}");
    check_notation("-1|1", "{\"type\":\"integer\",\"enum\":[-1,1]}");
    check_notation("int(1..)|null `r`", "{\"type\":\"integer\",\"minimum\":1,\"nullable\":true,"
                                        "\"description\":\"r\"}");
    check_notation("Token", "{\"$ref\":\"#/components/schemas/Token\"}");
    check_notation("Token `t`",
                   "{\"allOf\":[{\"$ref\":\"#/components/schemas/Token\"}],\"description\":\"t\"}");
    /* a nullable component is copied in: OpenAPI 3.0 has no nullable $ref */
    char err[256];
    json_t *s = api_schema_of(&svc, "TokenRank|null", err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert(json_is_true(json_object_get(s, "nullable")));
    ck_assert_str_eq(json_string_value(json_object_get(s, "type")), "object");
    ck_assert_int_eq(json_array_size(json_object_get(s, "required")), 3);
    json_decref(s);
    /* model values the models cannot give yet leave the bound out */
    atomic_store(&app.state, APP_LOADING);
    check_notation("int(0..$head)", "{\"type\":\"integer\",\"minimum\":0}");
    check_notation("[num; $d]", "{\"type\":\"array\",\"items\":{\"type\":\"number\"}}");
    check_notation("{k: str, v#$d: num}",
                   "{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"string\"}},"
                   "\"required\":[\"k\"],\"additionalProperties\":{\"type\":\"number\"}}");
    /* mistakes name themselves */
    check_notation("{a: int", "expected ',' or '}'");
    check_notation("{a int}", "expected ':' after member 'a'");
    check_notation("{a: int, a: str}", "member 'a' is given twice");
    check_notation("Nope", "unknown component 'Nope'");
    check_notation("integer", "unknown type");
    check_notation("int(0..$layers)", "unknown model value");
    check_notation("str|int", "a union may only be");
    check_notation("'a'|1", "a union may only be");
    check_notation("null", "null alone is not a type");
    check_notation("int x", "unexpected text after the type");
    check_notation("str `open", "unterminated description");
    check_notation("", "expected a type");
}
END_TEST

/* A format parameter's choices and a table parameter's, as a set. */
static bool choices_have(const api_param *p, const char *v)
{
    for (const char *const *c = p->choices; c && *c; c++)
        if (strcmp(*c, v) == 0) return true;
    return false;
}

START_TEST(every_answer_is_described)
{
    for (int ready = 0; ready < 2; ready++) {
        atomic_store(&app.state, ready ? APP_READY : APP_LOADING);
        for (const api_route *r = api_routes; r->path; r++) {
            const api_param *fmt = NULL, *table = NULL;
            for (const api_param *p = r->params; p && p->name; p++) {
                if (strcmp(p->name, "format") == 0) fmt = p;
                if (strcmp(p->name, "table") == 0) table = p;
            }
            ck_assert_msg(r->answers && r->answers[0].doc, "%s has no answers (api_route.answers)", r->path);
            size_t n_csv = 0;
            for (const api_answer *a = r->answers; a->doc; a++) {
                if (fmt)
                    ck_assert_msg(a->format && choices_have(fmt, a->format), "%s: answer for format '%s'",
                                  r->path, a->format ? a->format : "(none)");
                else
                    ck_assert_msg(!a->format, "%s has no format parameter", r->path);
                if (a->table)
                    ck_assert_msg(table && choices_have(table, a->table), "%s: table '%s'", r->path,
                                  a->table);
                n_csv += a->format && strcmp(a->format, "csv") == 0;
                bool data =
                    !a->type && (!a->format || !strcmp(a->format, "json") || !strcmp(a->format, "csv"));
                ck_assert_msg(!data || a->schema, "%s: a JSON or CSV answer needs a schema", r->path);
                if (a->schema) {
                    char err[512];
                    json_t *s = api_schema_of(&svc, a->schema, err, sizeof err);
                    ck_assert_msg(s != NULL, "%s: %s", r->path, err);
                    json_decref(s);
                }
            }
            /* every format answered is described, and every table */
            for (const char *const *c = fmt ? fmt->choices : NULL; c && *c; c++) {
                bool found = false;
                for (const api_answer *a = r->answers; a->doc; a++) found |= strcmp(a->format, *c) == 0;
                ck_assert_msg(found, "%s: format=%s has no answer", r->path, *c);
            }
            for (const char *const *c = table ? table->choices : NULL; c && *c; c++) {
                bool found = false;
                for (const api_answer *a = r->answers; a->doc; a++)
                    found |= a->table && !strcmp(a->table, *c);
                ck_assert_msg(found, "%s: table=%s has no answer", r->path, *c);
            }
            ck_assert_msg(!table || n_csv > 1, "%s: table= needs one answer per table", r->path);
        }
        char err[512];
        json_t *doc = api_openapi_doc(&svc, err, sizeof err);
        ck_assert_msg(doc != NULL, "%s", err);
        json_decref(doc);
    }
}
END_TEST

START_TEST(openapi_bounds_follow_the_model)
{
    atomic_store(&app.state, APP_READY);
    app.set.limits.max_top = 64;
    app.model.cfg.n_embd = 64; /* 12 heads of 5 dimensions */
    char err[512];
    json_t *doc = api_openapi_doc(&svc, err, sizeof err);
    ck_assert_msg(doc != NULL, "%s", err);
    json_t *params = json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "paths"), "/svd"), "get"), "parameters");
    size_t i;
    json_t *p;
    int seen = 0;
    json_array_foreach(params, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "name"));
        json_t *schema = json_object_get(p, "schema");
        if (strcmp(name, "top") == 0) {
            /* what the model has; taken up to max_top */
            ck_assert_int_eq(json_integer_value(json_object_get(schema, "maximum")), 5);
            ck_assert_int_eq(json_integer_value(json_object_get(schema, "x-twd-accepted-maximum")), 64);
            ck_assert_int_eq(json_integer_value(json_object_get(schema, "default")), 5);
            seen++;
        } else if (strcmp(name, "block") == 0) { /* one block (an integer), or "all" / "A-B" */
            json_t *one = json_array_get(json_object_get(schema, "oneOf"), 0);
            ck_assert_int_eq(json_integer_value(json_object_get(one, "maximum")), 11);
            seen++;
        }
    }
    ck_assert_int_eq(seen, 2);
    json_decref(doc);
    /* loading: no bound that follows the model */
    atomic_store(&app.state, APP_LOADING);
    doc = api_openapi_doc(&svc, err, sizeof err);
    ck_assert_msg(doc != NULL, "%s", err);
    params = json_object_get(json_object_get(json_object_get(json_object_get(doc, "paths"), "/svd"), "get"),
                             "parameters");
    json_array_foreach(params, i, p)
    {
        if (strcmp(json_string_value(json_object_get(p, "name")), "top") == 0)
            ck_assert_ptr_null(json_object_get(json_object_get(p, "schema"), "maximum"));
    }
    json_decref(doc);
}
END_TEST

START_TEST(percent_decoding)
{
    char out[64];
    size_t n;
    ck_assert_int_eq(http_percent_decode("a%20b+c", 7, 1, out, &n), 0);
    ck_assert_int_eq(n, 5);
    ck_assert(memcmp(out, "a b c", 5) == 0);
    ck_assert_int_eq(http_percent_decode("a+b", 3, 0, out, &n), 0);
    ck_assert(memcmp(out, "a+b", 3) == 0);
    ck_assert_int_eq(http_percent_decode("%e2%82%AC", 9, 1, out, &n), 0);
    ck_assert_int_eq(n, 3);
    ck_assert(memcmp(out, "\xe2\x82\xac", 3) == 0);
    ck_assert_int_eq(http_percent_decode("%00", 3, 1, out, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(out[0], 0);
    ck_assert_int_eq(http_percent_decode("%", 1, 1, out, &n), -1);
    ck_assert_int_eq(http_percent_decode("%4", 2, 1, out, &n), -1);
    ck_assert_int_eq(http_percent_decode("%zz", 3, 1, out, &n), -1);
    ck_assert_int_eq(http_percent_decode("ab%4g", 5, 1, out, &n), -1);
}
END_TEST

/* ---- with a model: the answer cache ---- */

static char model_tmp[256];
static twd_app mapp;
static twd_app *mapp_list[] = {&mapp};
static api_service msvc = {.models = mapp_list, .n_models = 1};

static void model_setup(void)
{
    tt_tmpdir(model_tmp, sizeof model_tmp, "api");
    char err[1024];
    synth_opts o;
    synth_opts_shape(&o, "tiny");
    ck_assert_msg(synth_write(model_tmp, &o, err, sizeof err) == 0, "%s", err);
    config_defaults(&cfg);
    ck_assert_int_eq(config_set(&cfg, "umap", "false", err, sizeof err), 0);
    api_app_init(&mapp);
    mapp.svc = &msvc;
    config_api_settings(&cfg, &mapp.set);
    ck_assert_msg(gpt2_load(model_tmp, &mapp.model, err, sizeof err) == 0, "%s", err);
    mapp.tok = tokenizer_load(model_tmp, err, sizeof err);
    ck_assert_msg(mapp.tok != NULL, "%s", err);
    ck_assert_msg(api_init(&mapp, err, sizeof err) == 0, "%s", err);
    atomic_store(&mapp.state, APP_READY);
}

static void model_teardown(void)
{
    api_shutdown(&mapp);
    tokenizer_free(mapp.tok);
    gpt2_free(&mapp.model);
    tt_rmtree(model_tmp);
    ck_assert_int_ne(access(model_tmp, F_OK), 0);
}

static json_t *get_json(const char *path, const char *const *kv, size_t n, bool *cached)
{
    api_kv q[8];
    for (size_t i = 0; i < n; i++)
        q[i] = (api_kv){(char *)kv[2 * i], strlen(kv[2 * i]), (char *)kv[2 * i + 1], strlen(kv[2 * i + 1])};
    api_request req = {.method = API_GET, .query = q, .n_query = n};
    api_response res;
    api_dispatch(&msvc, api_find_route(path), &req, &res);
    ck_assert_msg(res.status == 200, "%s: %d %s", path, res.status, res.body);
    json_t *j = json_loadb(res.body, res.len, 0, NULL);
    ck_assert_ptr_nonnull(j);
    *cached = res.cached;
    api_response_free(&res);
    return j;
}

/* An optional parameter without a default (head, block) given as 0 and
 * not given at all are different requests; both once had the same cache
 * key (the value 0, no string), so the second got the first's answer.
 * Found by tests/fuzz (fuzz_target comparing answers with and without
 * caches). */
START_TEST(cache_tells_absent_from_zero)
{
    bool cached;
    const char *one[] = {"block", "1", "top", "2", "k", "3", "head", "0"};
    json_t *a = get_json("/svd", one, 4, &cached);
    ck_assert(!cached);
    ck_assert_int_eq(json_array_size(json_object_get(a, "heads")), 1);
    const char *all[] = {"block", "1", "top", "2", "k", "3"};
    json_t *b = get_json("/svd", all, 3, &cached);
    ck_assert_msg(!cached, "all heads served from the cache of head 0");
    ck_assert_int_eq(json_array_size(json_object_get(b, "heads")), 2);
    json_decref(b);
    b = get_json("/svd", all, 3, &cached);
    ck_assert(cached); /* the same request again is a hit */
    json_decref(b);
    const char *spelled[] = {"block", "1", "top", "2", "k", "3", "matrix", "both"};
    b = get_json("/svd", spelled, 4, &cached);
    ck_assert_msg(cached, "a default spelled out is the same request");
    json_decref(a);
    json_decref(b);

    const char *block0[] = {"text", "the cat", "block", "0"};
    a = get_json("/attention", block0, 2, &cached);
    ck_assert_int_eq(json_array_size(json_object_get(a, "blocks")), 1);
    const char *blocks[] = {"text", "the cat"};
    b = get_json("/attention", blocks, 1, &cached);
    ck_assert(!cached);
    ck_assert_int_eq(json_array_size(json_object_get(b, "blocks")), 2);
    json_decref(a);
    json_decref(b);
}
END_TEST

/* issue 9, item 5: json_real(NaN) is NULL and the append was silently
 * dropped (/attention answered "pattern":[[],[]] with 200). A value that is
 * not a number makes the whole answer a 500 that says so, in JSON and CSV. */
START_TEST(non_finite_values_fail_loudly)
{
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < 3; i++) {
        api_response res = {0};
        json_t *row = json_array();
        api_push(row, api_num(1.5));
        api_push(row, api_num(bad[i]));
        api_json(&res, 200, json_pack("{s:o}", "pattern", row));
        json_t *root;
        const char *msg = check_error(&res, 500, "internal_error", &root);
        ck_assert_msg(strstr(msg, "not a finite number"), "%s", msg);
        json_decref(root);
        api_response_free(&res);

        textbuf tb;
        tb_init(&tb);
        tb_csv_num(&tb, 2.0);
        tb_csv_num(&tb, bad[i]);
        tb_csv_end(&tb);
        tb_respond(&tb, &res, "text/csv");
        msg = check_error(&res, 500, "internal_error", &root);
        ck_assert_msg(strstr(msg, "not a finite number"), "%s", msg);
        json_decref(root);
        api_response_free(&res);
    }
    /* and the mark does not outlive its answer */
    api_response res = {0};
    api_json(&res, 200, json_pack("{s:o}", "x", api_num(1.0)));
    ck_assert_int_eq(res.status, 200);
    api_response_free(&res);
}
END_TEST

int main(void)
{
    json_object_seed(0);
    const TTest *const api_tests[] = {error_shape_for_each_status,
                                      non_finite_values_fail_loudly,
                                      health_and_readiness,
                                      method_checks,
                                      parameter_validation,
                                      openapi_lists_every_route,
                                      answer_notation,
                                      every_answer_is_described,
                                      openapi_bounds_follow_the_model,
                                      percent_decoding,
                                      NULL};
    const TTest *const model_tests[] = {cache_tells_absent_from_zero, NULL};
    const tw_case cases[] = {
        {.name = "api", .setup = setup, .tests = api_tests},
        {.name = "model", .setup = model_setup, .teardown = model_teardown, .tests = model_tests}};
    return tw_check_main("api", cases, 2);
}
