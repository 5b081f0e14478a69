/* Whole-model sweeps (api/sweep.c) on a small model built in memory: the
 * answer of block=all and of a range is the list of the one-block answers,
 * byte for byte, in JSON, CSV (with a block column) and LaTeX; each block's
 * answer lands in the answer cache under the one-block key; a canceled
 * sweep stops with a 503 and leaves the progress gauges at zero; the size
 * limit bounds the whole sweep even when every block is cached. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "core/tok/synth_vocab.h"
#include "core/tok/tokenizer.h"
#include "server/config.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/tw_check.h"

enum { S_L = 3 };

static twd_config cfg;
static twd_app app;
static twd_app *app_list[1] = {&app};
static api_service svc = {.models = app_list, .n_models = 1};
static tt_model tm;

static void setup(void)
{
    config_defaults(&cfg);
    api_app_init(&app);
    app.svc = &svc;
    config_api_settings(&cfg, &app.set);
    app.set.layout.umap = false;
    app.set.layout.cache_dir[0] = '\0';
    tt_model_build(&tm,
                   &(tt_model_opts){
                       .n_layer = S_L, .n_head = 2, .n_embd = 16, .n_ctx = 8, .vocab_size = 300, .seed = 81});
    app.model = tm.m;
    char dir[2048], err[256];
    tt_tmpdir(dir, sizeof dir, "sweep");
    ck_assert_msg(tokenizer_write_synthetic(dir, 300, 81, err, sizeof err) == 0, "%s", err);
    app.tok = tokenizer_load(dir, err, sizeof err);
    ck_assert_msg(app.tok != NULL, "%s", err);
    tt_write_in(dir, "words.txt", "time\n", 5);
    snprintf(app.set.words_file, sizeof app.set.words_file, "%s/words.txt", dir);
    ck_assert_msg(api_init(&app, err, sizeof err) == 0, "api_init: %s", err);
    atomic_store(&app.state, APP_READY);
}

static void teardown(void)
{
    api_shutdown(&app);
    tokenizer_free(app.tok);
    app.tok = NULL;
    memset(&app.model, 0, sizeof app.model);
    tt_model_free(&tm);
}

/* GET path?query through the whole api layer (prepare, then compute on this
 * thread), optionally with a cancel flag. */
static void get(const char *path, const char *query, const tw_cancel *cancel, api_response *res)
{
    api_kv kv[8];
    size_t n = 0;
    char *q = strdup(query);
    for (char *tok = strtok(q, "&"); tok && n < 8; tok = strtok(NULL, "&")) {
        char *eq = strchr(tok, '=');
        *eq = '\0';
        kv[n++] = (api_kv){tok, strlen(tok), eq + 1, strlen(eq + 1)};
    }
    api_request req = {.method = API_GET, .query = kv, .n_query = n};
    const api_route *r = api_find_route(path);
    ck_assert_ptr_nonnull(r);
    api_call call;
    if (api_prepare(&svc, r, &req, &call, res) == API_COMPUTE) {
        call.args.cancel = cancel;
        api_compute(&call, res);
    }
    free(q);
}

static char *body_of(const api_response *res) { return strndup(res->body, res->len); }

/* The JSON sweep of `query` (with block=spec) equals the one-block answers. */
static void check_json_sweep(const char *path, const char *query, int first, int last)
{
    char q[256];
    api_response res;
    snprintf(q, sizeof q, "block=%d-%d&%s", first, last, query);
    if (first == 0 && last == S_L - 1) snprintf(q, sizeof q, "block=all&%s", query);
    get(path, q, NULL, &res);
    ck_assert_msg(res.status == 200, "%s?%s: %d %.*s", path, q, res.status, (int)res.len, res.body);
    json_error_t e;
    json_t *doc = json_loadb(res.body, res.len, JSON_ALLOW_NUL, &e);
    ck_assert_msg(doc != NULL, "not JSON: %s", e.text);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "first_block")), first);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "last_block")), last);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "n_blocks")), last - first + 1);
    json_t *blocks = json_object_get(doc, "blocks");
    ck_assert_int_eq(json_array_size(blocks), (size_t)(last - first + 1));
    for (int b = first; b <= last; b++) {
        api_response one;
        snprintf(q, sizeof q, "block=%d&%s", b, query);
        get(path, q, NULL, &one);
        ck_assert_int_eq(one.status, 200);
        ck_assert_msg(one.cached, "block %d of the sweep was not kept under its own key", b);
        json_t *single = json_loadb(one.body, one.len, JSON_ALLOW_NUL, &e);
        ck_assert(json_equal(single, json_array_get(blocks, (size_t)(b - first))));
        json_decref(single);
        api_response_free(&one);
    }
    json_decref(doc);
    api_response_free(&res);
}

START_TEST(sweep_json_equals_blocks)
{
    check_json_sweep("/svd", "top=3&k=2", 0, S_L - 1);
    check_json_sweep("/svd", "top=0&k=1&matrix=vo", 1, 2);
    check_json_sweep("/svd/bias", "k=4", 0, S_L - 1);
    check_json_sweep("/svd/bias", "k=3", 2, 2);
}
END_TEST

/* CSV: the one-block header once (its first column is already the block),
 * then every block's rows as they are; LaTeX the documents one after the
 * other. */
START_TEST(sweep_csv_and_latex)
{
    api_response res, one;
    get("/svd/bias", "block=0-2&k=2&format=csv", NULL, &res);
    ck_assert_int_eq(res.status, 200);
    char *all = body_of(&res), *expect = calloc(1, 1 << 20);
    for (int b = 0; b < S_L; b++) {
        char q[64];
        snprintf(q, sizeof q, "block=%d&k=2&format=csv", b);
        get("/svd/bias", q, NULL, &one);
        char *s = body_of(&one), *row = strstr(s, "\r\n") + 2;
        if (b == 0) strncat(expect, s, (size_t)(row - s));
        while (*row) {
            char *end = strstr(row, "\r\n") + 2;
            char lead[16];
            snprintf(lead, sizeof lead, "%d,", b);
            ck_assert(strncmp(row, lead, strlen(lead)) == 0); /* each row starts with its block */
            strncat(expect, row, (size_t)(end - row));
            row = end;
        }
        free(s);
        api_response_free(&one);
    }
    ck_assert_str_eq(all, expect);
    ck_assert(strncmp(all, "block,head,probe,rank,id,text,score\r\n", 37) == 0);
    free(all);
    api_response_free(&res);

    get("/svd", "block=1-2&top=1&k=1&format=latex", NULL, &res);
    ck_assert_int_eq(res.status, 200);
    all = body_of(&res);
    expect[0] = '\0';
    for (int b = 1; b <= 2; b++) {
        char q[64];
        snprintf(q, sizeof q, "block=%d&top=1&k=1&format=latex", b);
        get("/svd", q, NULL, &one);
        strncat(expect, one.body, one.len);
        api_response_free(&one);
    }
    ck_assert_str_eq(all, expect);
    TT_FREE(all, expect);
    api_response_free(&res);
}
END_TEST

static long long gauge(const char *name)
{
    api_response res;
    get("/metrics", "", NULL, &res);
    char *s = body_of(&res), *p = strstr(s, name);
    ck_assert_msg(p != NULL, "no %s in /metrics", name);
    long long v = atoll(strchr(p, ' ') + 1);
    free(s);
    api_response_free(&res);
    return v;
}

START_TEST(sweep_cancel_and_gauges)
{
    tw_cancel c = {0};
    tw_cancel_raise(&c);
    api_response res;
    get("/svd", "block=all&top=2&k=2", &c, &res);
    ck_assert_int_eq(res.status, 503);
    ck_assert(strstr(res.body, "canceled") != NULL);
    api_response_free(&res);
    /* nothing computed: the first block is not in the answer cache */
    get("/svd", "block=0&top=2&k=2", NULL, &res);
    ck_assert_int_eq(res.status, 200);
    ck_assert(!res.cached);
    api_response_free(&res);
    ck_assert_int_eq(gauge("twd_sweeps_running{"), 0);
    ck_assert_int_eq(gauge("twd_sweep_blocks{model=\"\",state=\"done\"}"), 0);
    ck_assert_int_eq(gauge("twd_sweep_blocks{model=\"\",state=\"total\"}"), 0);
}
END_TEST

/* 2 heads x 4 lists x k tokens per block, against a limit of 5,000: k = 300
 * is 2,400 per block, 7,200 for the 3 blocks; k = 400 is 3,200 per block,
 * 6,400 for 2 blocks. */
START_TEST(sweep_answer_limit)
{
    app.set.limits.max_answer_tokens = 5000;
    app.set.limits.max_k = 1000;
    api_response res;
    for (int b = 0; b < S_L; b++) { /* every block cached first */
        char q[64];
        snprintf(q, sizeof q, "block=%d&k=300", b);
        get("/svd/bias", q, NULL, &res);
        ck_assert_int_eq(res.status, 200);
        api_response_free(&res);
    }
    get("/svd/bias", "block=all&k=300", NULL, &res);
    ck_assert_int_eq(res.status, 400);
    ck_assert_msg(strstr(res.body, "fewer blocks") != NULL, "%s", res.body);
    api_response_free(&res);
    get("/svd/bias", "block=1-2&k=400", NULL, &res);
    ck_assert_int_eq(res.status, 400);
    api_response_free(&res);
    get("/svd/bias", "block=1-2&k=100", NULL, &res);
    ck_assert_int_eq(res.status, 200);
    api_response_free(&res);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {sweep_json_equals_blocks, sweep_csv_and_latex, sweep_cancel_and_gauges,
                                  sweep_answer_limit, NULL};
    const tw_case cases[] = {
        {.name = "sweep", .timeout = 60, .setup = setup, .teardown = teardown, .tests = tests}};
    return tw_check_main("sweep", cases, 1);
}
