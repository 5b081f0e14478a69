/* Trajectory statistics over many texts (docs/MATH.md §14): POST
 * /trajectory/stats with the texts or the name of a shipped corpus. */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/format.h"
#include "api/handlers.h"
#include "base/progress.h"
#include "base/utf8.h"
#include "core/ana/traj_stats.h"

#define STATS_DEFINITION                                                                                     \
    "For every state of the trajectory (as /trajectory) and every position t of every text that has a "      \
    "next token, in the full dimension: cos_next = cos(s_t, wte[x_{t+1}]), cos_self = cos(s_t, wte[x_t]), "  \
    "cos_final = cos(s_t, the last state at t), rank_next = the rank (1-based, ties lower id first) of "     \
    "x_{t+1} among all tokens by s_t . wte_j (logit lens; exact), prob_next = softmax(s_t wte^T)[x_{t+1}]. " \
    "Each statistic: mean, std (unbiased) and ci95 (mean -/+ t(0.975, n-1) std / sqrt(n), positions "        \
    "taken as independent); for rank_next, mean, std and ci95 are of ln(rank), with the median rank and "    \
    "the fractions at rank 1 (top1) and within the top k (topk). docs/MATH.md §14."

/* The texts of a request: the strings (borrowed from the arguments or owned
 * lines of a corpus file) and their token ids. */
typedef struct {
    char **lines; /* a corpus file's lines (owned), or NULL */
    size_t n_lines;
    const char *const *text; /* n strings */
    size_t n;
    int32_t **ids;
    size_t *len;
    size_t n_truncated; /* corpus texts cut to min(max_tokens, n_ctx) tokens */
} req_texts;

static void req_texts_free(req_texts *t)
{
    for (size_t i = 0; i < t->n_lines; i++) free(t->lines[i]);
    free(t->lines);
    if (t->ids)
        for (size_t i = 0; i < t->n; i++) free(t->ids[i]);
    free(t->ids);
    free(t->len);
    memset(t, 0, sizeof *t);
}

/* The non-empty, non-comment lines of corpus_dir/<name>.txt. 0, or -1 with
 * *res set. */
static int read_corpus(const twd_app *app, const char *name, req_texts *t, api_response *res)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.txt", app->set.corpus_dir, name);
    FILE *f = app->set.corpus_dir[0] ? fopen(path, "r") : NULL;
    if (!f) return api_error(res, 503, "corpus '%s' is not installed (corpus_dir %s)", name, app->set.corpus_dir);
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) != -1) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len || line[0] == '#') continue;
        if (!utf8_valid(line, (size_t)len) || memchr(line, '\0', (size_t)len)) {
            rc = api_error(res, 500, "corpus '%s': line %zu is not UTF-8 text", name, t->n_lines + 1);
            break;
        }
        if (t->n_lines == alloc) {
            alloc = alloc ? 2 * alloc : 256;
            char **nl = realloc(t->lines, alloc * sizeof *nl);
            if (!nl) {
                rc = api_status_error(res, TW_ENOMEM, "corpus");
                break;
            }
            t->lines = nl;
        }
        if (!(t->lines[t->n_lines] = strdup(line))) {
            rc = api_status_error(res, TW_ENOMEM, "corpus");
            break;
        }
        t->n_lines++;
    }
    free(line);
    fclose(f);
    return rc;
}

/* Chooses the texts (texts or corpus, then limit), checks their count and
 * encodes them, checking every bound. 0, or -1 with *res set. */
static int gather_texts(twd_app *app, const api_args *a, req_texts *t, api_response *res)
{
    const api_arg *texts = api_arg_get(a, "texts"), *corpus = api_arg_get(a, "corpus");
    const api_limits *lim = &app->set.limits;
    const gpt2_config *c = &app->model.cfg;
    if (texts->present == corpus->present)
        return api_error(res, 400,
                         "give exactly one of 'texts' (an array of strings) and 'corpus' (a shipped corpus: "
                         "kjv-heldout)");
    if (texts->present) {
        t->text = (const char *const *)texts->list;
        t->n = texts->n_list;
    } else {
        if (read_corpus(app, corpus->s, t, res) != 0) return -1;
        t->text = (const char *const *)t->lines;
        t->n = t->n_lines;
    }
    size_t limit = (size_t)api_int(a, "limit");
    if (limit && limit < t->n) t->n = limit;
    if ((int64_t)t->n > lim->max_stats_texts)
        return api_error(res, 400,
                         "the corpus has %zu texts; the limit is %" PRId64
                         " (max_stats_texts): set 'limit' to at most that",
                         t->n, lim->max_stats_texts);
    t->ids = calloc(t->n ? t->n : 1, sizeof *t->ids);
    t->len = calloc(t->n ? t->n : 1, sizeof *t->len);
    if (!t->ids || !t->len) return api_status_error(res, TW_ENOMEM, "texts");
    long cap = lim->max_tokens < c->n_ctx ? (long)lim->max_tokens : c->n_ctx;
    size_t total = 0;
    for (size_t i = 0; i < t->n; i++) {
        long n = tokenizer_encode(app->tok, t->text[i], strlen(t->text[i]), &t->ids[i]);
        if (n < 0) return api_status_error(res, TW_ENOMEM, "tokenizing");
        t->len[i] = (size_t)n;
        if (n == 0) return api_error(res, 400, "parameter 'texts': text %zu encodes to no tokens", i);
        if (n > cap && texts->present)
            return api_error(res, 400,
                             "parameter 'texts': text %zu is %ld tokens long; the limit is %ld tokens", i, n,
                             cap);
        if (n > cap) { /* a corpus text is cut to the model's context */
            t->len[i] = (size_t)(n = cap);
            t->n_truncated++;
        }
        for (long j = 0; j < n; j++)
            if (t->ids[i][j] >= c->vocab_size)
                return api_error(res, 400, "text %zu: token %d is outside the model's vocabulary", i,
                                 t->ids[i][j]);
        total += (size_t)n;
    }
    if ((int64_t)total > lim->max_stats_tokens)
        return api_error(res, 400,
                         "the texts are %zu tokens long in all; the limit is %" PRId64
                         " (max_stats_tokens): send fewer or shorter texts%s",
                         total, lim->max_stats_tokens, texts->present ? "" : ", or set 'limit'");
    return 0;
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *stat_json(const ts_cell *c, ts_stat st)
{
    const ts_summary *s = &c->stat[st];
    json_t *o = json_pack("{s:o,s:o,s:[o,o]}", "mean", num(s->mean), "std", num(s->std), "ci95",
                          num(s->ci_low), num(s->ci_high));
    if (st == TS_LOG_RANK) {
        json_object_set_new(o, "median", num(c->rank_median));
        json_object_set_new(o, "top1", num(c->top1));
        json_object_set_new(o, "topk", num(c->topk));
    }
    return o;
}

/* The statistics of one cell: {n_positions, cos_next, ..., prob_next}. */
static json_t *cell_json(const ts_cell *c)
{
    json_t *o = json_pack("{s:I}", "n_positions", (json_int_t)c->stat[0].n);
    for (int st = 0; st < TS_N_STATS; st++)
        json_object_set_new(o, ts_stat_name((ts_stat)st), stat_json(c, (ts_stat)st));
    return o;
}

static int answer_json(const api_args *a, const traj_stats_result *r, gpt2_gelu gelu, size_t truncated,
                       api_response *res)
{
    const api_arg *corpus = api_arg_get(a, "corpus");
    json_t *states = json_array();
    for (size_t s = 0; s < r->n_states; s++) {
        char name[64];
        ts_state_name(s, name, sizeof name);
        const ts_cell *all = &r->cells[s * TS_N_BUCKETS];
        json_t *st = json_pack("{s:I,s:s,s:o}", "index", (json_int_t)s, "name", name, "block",
                               s >= 3 ? json_integer((json_int_t)(s - 3)) : json_null());
        json_t *cj = cell_json(all);
        json_object_update(st, cj);
        json_decref(cj);
        json_t *buckets = json_object();
        for (int b = TS_BUCKET_FIRST; b < TS_N_BUCKETS; b++)
            json_object_set_new(buckets, ts_bucket_name((ts_bucket)b), cell_json(&all[b]));
        json_object_set_new(st, "buckets", buckets);
        json_array_append_new(states, st);
    }
    json_t *doc = json_pack(
        "{s:s,s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:s,s:s,s:s},s:s,s:o,s:s}", "source",
        corpus->present ? "corpus" : "texts", "corpus",
        corpus->present ? json_string(corpus->s) : json_null(), "gelu", gpt2_gelu_name(gelu), "k",
        (json_int_t)r->k, "n_states", (json_int_t)r->n_states, "n_texts", (json_int_t)r->n_texts,
        "n_texts_skipped", (json_int_t)r->n_texts_skipped, "n_tokens", (json_int_t)r->n_tokens, "n_positions",
        (json_int_t)r->n_positions, "buckets", "first", "t = 0", "early", "1 <= t < 8", "late", "t >= 8",
        "interval", "normal approximation with Student's t quantile: mean -/+ t(0.975, n-1) std / sqrt(n)",
        "states", states, "definition", STATS_DEFINITION);
    json_object_set_new(doc, "n_texts_truncated", json_integer((json_int_t)truncated));
    return api_json(res, 200, doc);
}

static void csv_num_or_empty(textbuf *tb, double v)
{
    if (isfinite(v))
        tb_csv_num(tb, v);
    else
        tb_csv_empty(tb);
}

/* One row per (state, statistic, bucket). */
static int answer_csv(const traj_stats_result *r, api_response *res)
{
    textbuf tb;
    tb_init(&tb);
    tb_printf(&tb, "state_index,state,block,statistic,bucket,n_positions,mean,std,ci95_low,ci95_high,median,top1,"
                   "topk\r\n");
    for (size_t s = 0; s < r->n_states; s++) {
        char name[64];
        ts_state_name(s, name, sizeof name);
        for (int st = 0; st < TS_N_STATS; st++)
            for (int b = 0; b < TS_N_BUCKETS; b++) {
                const ts_cell *c = &r->cells[s * TS_N_BUCKETS + (size_t)b];
                const ts_summary *m = &c->stat[st];
                tb_csv_int(&tb, (long long)s);
                tb_csv_str(&tb, name);
                if (s >= 3)
                    tb_csv_int(&tb, (long long)(s - 3));
                else
                    tb_csv_empty(&tb);
                tb_csv_str(&tb, ts_stat_name((ts_stat)st));
                tb_csv_str(&tb, ts_bucket_name((ts_bucket)b));
                tb_csv_int(&tb, (long long)m->n);
                csv_num_or_empty(&tb, m->mean);
                csv_num_or_empty(&tb, m->std);
                csv_num_or_empty(&tb, m->ci_low);
                csv_num_or_empty(&tb, m->ci_high);
                bool rank = st == TS_LOG_RANK;
                csv_num_or_empty(&tb, rank ? c->rank_median : NAN);
                csv_num_or_empty(&tb, rank ? c->top1 : NAN);
                csv_num_or_empty(&tb, rank ? c->topk : NAN);
                tb_csv_end(&tb);
            }
    }
    return tb_respond(&tb, res, CSV_TYPE);
}

int api_trajectory_stats(twd_app *app, const api_args *a, api_response *res)
{
    req_texts t = {0};
    if (gather_texts(app, a, &t, res) != 0) {
        req_texts_free(&t);
        return -1;
    }
    size_t k = (size_t)api_int(a, "k");
    gpt2_gelu gelu = strcmp(api_str(a, "gelu"), "erf") == 0 ? GPT2_GELU_ERF : GPT2_GELU_TANH;
    ts_text *tx = malloc((t.n ? t.n : 1) * sizeof *tx);
    if (!tx) {
        req_texts_free(&t);
        return api_status_error(res, TW_ENOMEM, "trajectory statistics");
    }
    for (size_t i = 0; i < t.n; i++) tx[i] = (ts_text){t.ids[i], t.len[i]};
    tw_progress progress;
    tw_progress_reset(&progress);
    traj_stats_result r;
    int rc = traj_stats(&app->model,
                        &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel, .progress = &progress}, tx,
                        t.n, k, gelu, &r);
    free(tx);
    size_t truncated = t.n_truncated;
    req_texts_free(&t);
    if (rc != TW_OK) return api_status_error(res, rc, "trajectory statistics");
    const char *fmt = api_str(a, "format");
    int out = fmt && strcmp(fmt, "csv") == 0 ? answer_csv(&r, res) : answer_json(a, &r, gelu, truncated, res);
    traj_stats_result_free(&r);
    return out;
}
