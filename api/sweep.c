/* Whole-model sweeps: see sweep.h. */
#include "api/sweep.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/answer_cache.h"
#include "api/ext.h"
#include "api/format.h"
#include "base/strbuf.h"

/* The AP_BLOCKS argument of a, or NULL. */
static api_arg *blocks_arg(api_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].spec->type == AP_BLOCKS) return &a->v[i];
    return NULL;
}

bool api_sweep_requested(const api_args *a)
{
    const api_arg *b = blocks_arg((api_args *)a);
    return b && b->sweep;
}

static bool is_csv(const api_response *r)
{
    return r->content_type && strncmp(r->content_type, "text/csv", 8) == 0;
}

static bool is_json(const api_response *r)
{
    return r->content_type && strncmp(r->content_type, "application/json", 16) == 0;
}

/* The end of the CSV row starting at p (its CRLF or LF outside quotes
 * included), or end. */
static const char *csv_row_end(const char *p, const char *end)
{
    bool quoted = false;
    for (; p < end; p++) {
        if (*p == '"')
            quoted = !quoted;
        else if (*p == '\n' && !quoted)
            return p + 1;
    }
    return end;
}

/* Appends the rows of one block's CSV answer (its header skipped unless
 * `header`). A table whose first column is already `block` (every table of
 * the routes with AP_BLOCKS) is appended as it is, so a sweep's CSV has the
 * one-block columns; any other gets a first column `block`. */
static void csv_append(strbuf *out, const char *body, size_t len, long long block, bool header)
{
    const char *p = body, *end = body + len;
    const char *row = csv_row_end(p, end);
    bool has_block = (size_t)(row - p) >= 6 && memcmp(p, "block", 5) == 0 && (p[5] == ',' || p[5] == '\r');
    if (header) {
        if (!has_block) sb_puts(out, "block,");
        sb_putn(out, p, (size_t)(row - p));
    }
    for (p = row; p < end; p = row) {
        row = csv_row_end(p, end);
        if (!has_block) sb_printf(out, "%lld,", block);
        sb_putn(out, p, (size_t)(row - p));
    }
}

/* One block's answer: from the answer cache, or computed by the handler
 * (and then kept there). Returns the handler's status (0 for a 200). */
static int block_answer(api_call *call, const api_args *args, api_response *res)
{
    twd_app *app = call->app;
    size_t klen = 0;
    char *key = app->ext ? api_cache_key(call->route, args, &klen) : NULL;
    if (key && answer_cache_get(app->ext->answers, key, klen, res) == 0) {
        free(key);
        return res->status == 200 ? 0 : -1;
    }
    int rc = call->route->fn(app, args, res);
    if (rc == 0 && key && res->status == 200) answer_cache_put(app->ext->answers, key, klen, res);
    free(key);
    if (!res->content_type) return api_error(res, 500, "handler produced no answer");
    return rc == 0 && res->status == 200 ? 0 : -1;
}

/* The checks of the whole answer (args set for the first block): a handler
 * that answers anyway has answered the first block, which is kept. 0, or
 * -1 with the error in *res. */
static int sweep_check(api_call *call, api_args *args, api_response *res)
{
    twd_app *app = call->app;
    args->check_only = true;
    api_response probe = {0};
    int rc = call->route->fn(app, args, &probe);
    args->check_only = false;
    if (rc != 0) {
        if (!probe.content_type) api_error(&probe, 500, "handler produced no answer");
        *res = probe;
        return -1;
    }
    if (probe.content_type && probe.status == 200 && app->ext) {
        size_t klen = 0;
        char *key = api_cache_key(call->route, args, &klen);
        if (key) answer_cache_put(app->ext->answers, key, klen, &probe);
        free(key);
    }
    api_response_free(&probe);
    return 0;
}

/* Appends block blk's answer `one` to the sweep's answer out. */
static void sweep_append(strbuf *out, const api_response *one, long long blk, long long first, long long last)
{
    if (blk == first && is_json(one))
        sb_printf(out, "{\"first_block\":%lld,\"last_block\":%lld,\"n_blocks\":%lld,\"blocks\":[", first,
                  last, last - first + 1);
    if (is_csv(one)) {
        csv_append(out, one->body, one->len, blk, blk == first);
    } else {
        if (is_json(one) && blk != first) sb_puts(out, ",");
        sb_putn(out, one->body, one->len);
    }
}

int api_sweep(api_call *call, api_response *res) { return api_sweep_run(call, res, NULL); }

int api_sweep_run(api_call *call, api_response *res, tw_progress *progress)
{
    struct api_ext *x = call->app->ext;
    api_args args = call->args; /* a shallow copy: its arena stays the call's */
    api_arg *b = blocks_arg(&args);
    const long long first = b->i, last = b->last, n = last - first + 1;
    args.answer_blocks = (size_t)n;
    args.sweep_last = last;
    b->sweep = false;
    b->i = b->last = first;
    tw_progress_stage(progress, "blocks", n);
    if (sweep_check(call, &args, res) != 0) return -1;

    if (x) {
        atomic_fetch_add(&x->sweeps_running, 1);
        atomic_fetch_add(&x->sweep_blocks_total, n);
    }
    strbuf out = STRBUF_INIT;
    long long done = 0;
    const char *ctype = NULL;
    int rc = 0;
    for (long long blk = first; blk <= last && rc == 0; blk++) {
        int crc = tw_cancel_check(args.cancel);
        if (crc != TW_OK) {
            rc = api_status_error(res, crc, "sweep");
            break;
        }
        b->i = b->last = blk;
        api_response one = {0};
        if (block_answer(call, &args, &one) != 0) {
            api_response_free(res);
            *res = one;
            rc = -1;
            break;
        }
        if (blk == first) ctype = one.content_type;
        sweep_append(&out, &one, blk, first, last);
        api_response_free(&one);
        done++;
        tw_progress_set(progress, done);
        if (x) atomic_fetch_add(&x->sweep_blocks_done, 1);
    }
    if (x) {
        atomic_fetch_sub(&x->sweep_blocks_done, done);
        atomic_fetch_sub(&x->sweep_blocks_total, n);
        atomic_fetch_sub(&x->sweeps_running, 1);
    }
    if (rc != 0) {
        sb_free(&out);
        return -1;
    }
    if (ctype && strncmp(ctype, "application/json", 16) == 0) sb_puts(&out, "]}");
    size_t len = 0;
    char *body = sb_take(&out, &len);
    if (!body) return api_status_error(res, TW_ENOMEM, "sweep");
    return api_respond(res, 200, ctype, body, len);
}
