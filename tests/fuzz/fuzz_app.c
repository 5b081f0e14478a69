/* See fuzz_app.h. */
#include "tests/fuzz/fuzz_app.h"

#include <cblas.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "core/model/synth.h"
#include "server/config.h"
#include "server/http.h"
#include "tests/fuzz/fuzz_util.h"

static twd_app app, twin;
static twd_app *app_list[] = {&app}, *twin_list[] = {&twin};
static api_service svc = {.models = app_list, .n_models = 1}, twin_svc = {.models = twin_list, .n_models = 1};
static api_limits limits[3];

static void app_free(void)
{
    api_shutdown(&twin); /* shares app's model and tokenizer */
    api_shutdown(&app);
    tokenizer_free(app.tok);
    gpt2_free(&app.model);
}

twd_app *fz_app(void)
{
    static int built;
    if (built) return &app;
    built = 1;
    /* one thread: the fuzzer runs one input at a time, and OpenBLAS's
     * thread pool only adds noise under the sanitizers */
    openblas_set_num_threads(1);
    json_object_seed(1);
    const char *tmp = fz_tempdir("api");
    char model[600], cache[600], err[1024];
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    synth_opts o;
    FZ_CHECK(synth_opts_shape(&o, "tiny") == 0, "no tiny shape");
    FZ_CHECK(synth_write(model, &o, err, sizeof err) == 0, "%s", err);

    twd_config cfg;
    config_defaults(&cfg);
    FZ_CHECK(config_set(&cfg, "umap", "false", err, sizeof err) == 0, "%s", err);
    FZ_CHECK(config_set(&cfg, "cache_dir", cache, err, sizeof err) == 0, "%s", err);
    /* small budgets, so that eviction runs too */
    FZ_CHECK(config_set(&cfg, "answer_cache_mb", "1", err, sizeof err) == 0, "%s", err);
    FZ_CHECK(config_set(&cfg, "cache_mb", "1", err, sizeof err) == 0, "%s", err);
    api_app_init(&app);
    app.svc = &svc;
    config_api_settings(&cfg, &app.set);
    /* Profiles 0 and 2 allow answers of up to 5000 tokens (profile 1: 1000,
     * the configuration's minimum): under the sanitizers and coverage a
     * listed token costs about 0.2 ms, and a 300000-token answer (the
     * default) would take a minute per input. The bound's checks are
     * reached either way. */
    limits[0] = app.set.limits;
    limits[0].max_answer_tokens = 5000;
    limits[0].max_answer_bytes = 16.0 * 1048576.0;
    limits[1] = (api_limits){.max_text = config_find("max_text")->min,
                             .max_tokens = config_find("max_tokens")->min,
                             .max_words = config_find("max_words")->min,
                             .max_k = config_find("max_k")->min,
                             .max_top = config_find("max_top")->min,
                             .max_answer_tokens = config_find("max_answer_tokens")->min,
                             .max_stats_texts = config_find("max_stats_texts")->min,
                             .max_stats_tokens = config_find("max_stats_tokens")->min,
                             .max_answer_bytes = (double)config_find("max_answer_mb")->min * 1048576.0};
    limits[2] = (api_limits){.max_text = config_find("max_text")->max,
                             .max_tokens = config_find("max_tokens")->max,
                             .max_words = config_find("max_words")->max,
                             .max_k = config_find("max_k")->max,
                             .max_top = config_find("max_top")->max,
                             .max_answer_tokens = 5000,
                             .max_stats_texts = config_find("max_stats_texts")->max,
                             .max_stats_tokens = config_find("max_stats_tokens")->max,
                             .max_answer_bytes = 16.0 * 1048576.0};
    app.set.limits = limits[0];
    FZ_CHECK(gpt2_load(model, &app.model, err, sizeof err) == 0, "%s", err);
    app.tok = tokenizer_load(model, err, sizeof err);
    FZ_CHECK(app.tok != NULL, "%s", err);
    FZ_CHECK(tokenizer_vocab_size(app.tok) <= app.model.cfg.vocab_size, "tokenizer larger than wte");
    snprintf(app.model_name, sizeof app.model_name, "tiny");
    snprintf(app.model_source, sizeof app.model_source, "%s", model);
    snprintf(app.model_origin, sizeof app.model_origin, "configured");
    app.synthetic = app.model.synthetic != 0;
    app.synthetic_seed = app.model.synthetic_seed;
    FZ_CHECK(api_init(&app, err, sizeof err) == 0, "%s", err);
    api_app_set_status(&app, "ready");
    atomic_store(&app.state, APP_READY);

    api_app_init(&twin);
    twin.svc = &twin_svc;
    twin.set = app.set;
    twin.set.cache_bytes = 0;
    twin.set.answer_cache_bytes = 0;
    twin.model = app.model;
    twin.tok = app.tok;
    memcpy(twin.model_name, app.model_name, sizeof app.model_name);
    memcpy(twin.model_source, app.model_source, sizeof app.model_source);
    memcpy(twin.model_origin, app.model_origin, sizeof app.model_origin);
    twin.synthetic = app.synthetic;
    twin.synthetic_seed = app.synthetic_seed;
    FZ_CHECK(api_init(&twin, err, sizeof err) == 0, "%s", err);
    atomic_store(&twin.state, APP_READY);
    atexit(app_free);
    return &app;
}

api_service *fz_service(void)
{
    fz_app();
    return &svc;
}

void fz_app_limits(int profile)
{
    fz_app();
    app.set.limits = limits[profile >= 0 && profile < 3 ? profile : 0];
    twin.set.limits = app.set.limits;
}

void fz_check_uncached(const api_route *r, const api_request *req, const api_response *res, const char *what)
{
    if (!(r->flags & API_CACHEABLE)) return;
    api_response fresh;
    api_dispatch(&twin_svc, r, req, &fresh);
    FZ_CHECK(!fresh.cached, "%s: the twin has no answer cache", what);
    FZ_CHECK(fresh.status == res->status && fresh.len == res->len &&
                 strcmp(fresh.content_type, res->content_type) == 0 &&
                 memcmp(fresh.body, res->body, res->len) == 0,
             "%s: the %s answer differs from the one computed without caches:\n  %d %.300s\n  %d %.300s",
             what, res->cached ? "cached" : "computed", res->status, res->body, fresh.status, fresh.body);
    api_response_free(&fresh);
}

/* ---- the request target ---- */

void fz_target_free(fz_target *t)
{
    for (size_t i = 0; i < t->n_query; i++) {
        free(t->query[i].key);
        free(t->query[i].val);
    }
    free(t->query);
    free(t->path);
    memset(t, 0, sizeof *t);
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* http_percent_decode, checked against the definition: every '%' starts
 * two hex digits, the rest is copied ('+' as ' ' when asked). */
static int decode(const char *s, size_t n, int plus, char *out, size_t *len)
{
    int rc = http_percent_decode(s, n, plus, out, len);
    int ok = 1;
    size_t k = 0;
    for (size_t i = 0; i < n && ok; i++) {
        if (s[i] == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                ok = 0;
                break;
            }
            if (rc == 0) FZ_CHECK((unsigned char)out[k] == (unsigned)(hi * 16 + lo), "%%XX decoded wrong");
            k++;
            i += 2;
        } else {
            if (rc == 0) FZ_CHECK(out[k] == (plus && s[i] == '+' ? ' ' : s[i]), "byte %zu decoded wrong", i);
            k++;
        }
    }
    FZ_CHECK((rc == 0) == ok, "http_percent_decode returned %d for a %s escape", rc, ok ? "good" : "bad");
    if (rc == 0) FZ_CHECK(*len == k && k <= n, "decoded length %zu, expected %zu", *len, k);
    return rc;
}

int fz_parse_target(const char *raw, size_t n, fz_target *t)
{
    memset(t, 0, sizeof *t);
    const char *q = memchr(raw, '?', n);
    size_t plen = q ? (size_t)(q - raw) : n, len;
    t->path = malloc(plen + 1);
    FZ_CHECK(t->path != NULL, "out of memory");
    if (decode(raw, plen, 0, t->path, &len) != 0) return 400;
    t->path[len] = '\0';
    if (memchr(t->path, '\0', len)) return 400;
    if (!q) return 0;
    const char *s = q + 1, *end = raw + n;
    size_t cap = 1;
    for (const char *p = s; p < end; p++) cap += *p == '&';
    t->query = calloc(cap, sizeof *t->query);
    FZ_CHECK(t->query != NULL, "out of memory");
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        if (e > s) {
            const char *eq = memchr(s, '=', (size_t)(e - s));
            const char *ke = eq ? eq : e, *vs = eq ? eq + 1 : e;
            api_kv *kv = &t->query[t->n_query++];
            kv->key = malloc((size_t)(ke - s) + 1);
            kv->val = malloc((size_t)(e - vs) + 1);
            FZ_CHECK(kv->key && kv->val, "out of memory");
            if (decode(s, (size_t)(ke - s), 1, kv->key, &kv->key_len) != 0) return 400;
            kv->key[kv->key_len] = '\0';
            if (decode(vs, (size_t)(e - vs), 1, kv->val, &kv->val_len) != 0) return 400;
            kv->val[kv->val_len] = '\0';
        }
        s = e + 1;
    }
    FZ_CHECK(t->n_query <= cap, "more pairs than '&'");
    return 0;
}

/* ---- the answer ---- */

void fz_check_answer(const api_response *res, const char *what)
{
    FZ_CHECK(res->content_type != NULL && res->body != NULL && res->body[res->len] == '\0', "%s: no answer",
             what);
    const char *ct = res->content_type;
    json_error_t e;
    if (res->status == 200) {
        if (strcmp(ct, "application/json") == 0) {
            json_t *j = json_loadb(res->body, res->len, JSON_ALLOW_NUL, &e);
            FZ_CHECK(j != NULL, "%s: 200 body is not JSON: %s: %.200s", what, e.text, res->body);
            json_decref(j);
        } else if (strcmp(ct, "application/octet-stream") == 0) {
            FZ_CHECK(res->len >= 10 && memcmp(res->body, "\x93NUMPY", 6) == 0,
                     "%s: an octet stream that is not .npy", what);
        } else {
            FZ_CHECK(strncmp(ct, "text/csv", 8) == 0 || strncmp(ct, "text/plain", 10) == 0 ||
                         strncmp(ct, "application/x-latex", 19) == 0,
                     "%s: 200 with content type %s", what, ct);
            FZ_CHECK(utf8_valid(res->body, res->len), "%s: %s body is not UTF-8", what, ct);
        }
        return;
    }
    FZ_CHECK(res->status != 500, "%s: 500: %.300s", what, res->body);
    FZ_CHECK(res->status >= 400 && res->status <= 599, "%s: status %d", what, res->status);
    FZ_CHECK(strcmp(ct, "application/json") == 0, "%s: %d with content type %s", what, res->status, ct);
    json_t *root = json_loadb(res->body, res->len, JSON_REJECT_DUPLICATES, &e);
    FZ_CHECK(root != NULL, "%s: error body is not JSON: %s", what, res->body);
    json_t *err = json_object_get(root, "error");
    json_t *code = json_object_get(err, "code"), *type = json_object_get(err, "type"),
           *msg = json_object_get(err, "message");
    FZ_CHECK(json_is_object(root) && json_object_size(root) == 1 && json_is_object(err) &&
                 json_object_size(err) == 3 && json_is_integer(code) && json_is_string(type) &&
                 json_string_length(type) > 0 && json_is_string(msg),
             "%s: not the error shape: %s", what, res->body);
    FZ_CHECK(json_integer_value(code) == res->status, "%s: code %lld for status %d", what,
             (long long)json_integer_value(code), res->status);
    if (res->status == 405) FZ_CHECK(res->allow[0] != '\0', "%s: 405 without Allow", what);
    json_decref(root);
}
