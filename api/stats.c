/* Trajectory statistics over many texts (docs/MATH.md §14): POST
 * /trajectory/stats with the texts or the name of a shipped corpus, or the
 * same as a job that is polled (POST /trajectory/stats/job, GET
 * /trajectory/stats/job/status and /trajectory/stats/job/result); the
 * progress of every computation in flight in /metrics. */
#include "api/stats.h"

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/answer_cache.h"
#include "api/api.h"
#include "api/ext.h"
#include "api/format.h"
#include "api/handlers.h"
#include "api/json.h"
#include "api/sweep.h"
#include "base/clock.h"
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
    if (!f)
        return api_error(res, 503, "corpus '%s' is not installed (corpus_dir %s)", name, app->set.corpus_dir);
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

/* corpus: the corpus= name, or NULL for texts. */
static int answer_json(const char *corpus, const traj_stats_result *r, gpt2_gelu gelu, size_t truncated,
                       api_response *res)
{
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
    json_t *doc =
        json_pack("{s:s,s:o,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:{s:s,s:s,s:s},s:s,s:o,s:s}", "source",
                  corpus ? "corpus" : "texts", "corpus", corpus ? json_string(corpus) : json_null(), "gelu",
                  gpt2_gelu_name(gelu), "k", (json_int_t)r->k, "n_states", (json_int_t)r->n_states, "n_texts",
                  (json_int_t)r->n_texts, "n_texts_skipped", (json_int_t)r->n_texts_skipped, "n_tokens",
                  (json_int_t)r->n_tokens, "n_positions", (json_int_t)r->n_positions, "buckets", "first",
                  "t = 0", "early", "1 <= t < 8", "late", "t >= 8", "interval",
                  "normal approximation with Student's t quantile: mean -/+ t(0.975, n-1) std / sqrt(n)",
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
    tb_printf(&tb,
              "state_index,state,block,statistic,bucket,n_positions,mean,std,ci95_low,ci95_high,median,top1,"
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

/* ---------- computations in flight and jobs ---------- */

/* One computation of the statistics: a request being answered (sync), or a
 * job started by POST /trajectory/stats/job and polled by id. The slot
 * owns the token ids and, once done, the result. The same slots (and ids)
 * hold the whole-model sweeps started by POST /sweep/job (kind JOB_SWEEP):
 * the sweep's call while it runs, then its answer. */
typedef enum { JOB_FREE, JOB_RUNNING, JOB_DONE, JOB_FAILED, JOB_CANCELLED } job_state;
typedef enum { JOB_STATS, JOB_SWEEP } job_kind;

typedef struct {
    long long id; /* jobs 1, 2, ... in the order they started; requests likewise, apart */
    job_state state;
    bool sync;            /* a request's own computation: not kept after it */
    tw_progress progress; /* read by /metrics and the job's status */
    tw_cancel cancel;     /* a job's (set at shutdown, or by its cancel route); a request's is its own */
    bool cancel_asked;    /* its cancel route was called while it ran */
    pthread_t thread;     /* a job's */
    bool joinable;        /* thread is to be joined */
    twd_app *app;         /* the model it runs on */
    req_texts texts;      /* the token ids (owned) */
    size_t k;
    gpt2_gelu gelu;
    char corpus[64]; /* the corpus= name, or "" */
    double started, seconds;
    int rc;              /* TW_OK, or why it failed */
    traj_stats_result r; /* JOB_DONE */
    job_kind kind;
    api_call call;    /* JOB_SWEEP: the sweep's call (arguments, model hold) until it ends */
    api_response res; /* JOB_SWEEP: its answer (or error), once it ended */
    char path[40];    /* JOB_SWEEP: the route swept */
} stats_job;

struct api_stats_jobs {
    pthread_mutex_t lock;
    pthread_cond_t changed;           /* a job finished */
    long long next_job, next_request; /* ids of jobs, of requests (counted apart) */
    stats_job slot[API_STATS_SLOTS];
};

api_stats_jobs *api_stats_jobs_new(void)
{
    api_stats_jobs *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->changed, NULL);
    j->next_job = j->next_request = 1;
    return j;
}

static void slot_clear(stats_job *s)
{
    req_texts_free(&s->texts);
    traj_stats_result_free(&s->r);
    api_call_free(&s->call);
    api_response_free(&s->res);
    memset(s, 0, sizeof *s);
}

void api_stats_jobs_free(api_stats_jobs *j)
{
    if (!j) return;
    pthread_mutex_lock(&j->lock);
    for (size_t i = 0; i < API_STATS_SLOTS; i++) atomic_store(&j->slot[i].cancel.flag, 1);
    pthread_mutex_unlock(&j->lock);
    for (size_t i = 0; i < API_STATS_SLOTS; i++) {
        stats_job *s = &j->slot[i];
        if (s->joinable) pthread_join(s->thread, NULL);
        slot_clear(s);
    }
    pthread_cond_destroy(&j->changed);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* A slot for a new computation, under the lock: a free one, else the job
 * that finished first (its thread has ended). NULL when every slot runs. */
static stats_job *slot_take(api_stats_jobs *j)
{
    stats_job *old = NULL;
    for (size_t i = 0; i < API_STATS_SLOTS; i++) {
        stats_job *s = &j->slot[i];
        if (s->state == JOB_FREE) return s;
        if (s->state != JOB_RUNNING && (!old || s->id < old->id)) old = s;
    }
    if (old) {
        if (old->joinable) pthread_join(old->thread, NULL);
        slot_clear(old);
    }
    return old;
}

static stats_job *slot_find(api_stats_jobs *j, long long id, job_kind kind)
{
    for (size_t i = 0; i < API_STATS_SLOTS; i++) {
        const stats_job *s = &j->slot[i];
        if (s->state != JOB_FREE && !s->sync && s->kind == kind && s->id == id) return &j->slot[i];
    }
    return NULL;
}

/* Runs the computation of slot s (outside the lock: the slot's inputs are
 * its own while it runs), with the request's cancel or the job's. */
static int slot_run(stats_job *s, const tw_cancel *cancel)
{
    size_t n = s->texts.n;
    ts_text *tx = malloc((n ? n : 1) * sizeof *tx);
    if (!tx) return TW_ENOMEM;
    for (size_t i = 0; i < n; i++) tx[i] = (ts_text){s->texts.ids[i], s->texts.len[i]};
    twd_app *app = s->app;
    int rc = traj_stats(&app->model,
                        &(ana_ctx){.cache = app->ext->cache, .cancel = cancel, .progress = &s->progress}, tx,
                        n, s->k, s->gelu, &s->r);
    free(tx);
    return rc;
}

static void slot_finish(api_stats_jobs *j, stats_job *s, int rc)
{
    pthread_mutex_lock(&j->lock);
    s->rc = rc;
    s->seconds = tw_now() - s->started;
    s->state = rc == TW_OK ? JOB_DONE : s->cancel_asked ? JOB_CANCELLED : JOB_FAILED;
    pthread_cond_broadcast(&j->changed);
    pthread_mutex_unlock(&j->lock);
}

/* Runs the sweep of slot s; its call (and the model hold) ends with it. */
static int sweep_run(stats_job *s)
{
    const api_route *r = s->call.route;
    int rc = api_sweep_requested(&s->call.args) ? api_sweep_run(&s->call, &s->res, &s->progress)
                                                : r->fn(s->app, &s->call.args, &s->res);
    if (s->call.held && api_app_check(s->app)) {
        api_app_unavailable(s->app, &s->res);
        rc = -1;
    }
    if (!s->res.content_type) rc = api_error(&s->res, 500, "handler produced no answer");
    if (rc == 0 && s->res.status == 200 && s->app->ext) { /* as the request itself would be */
        size_t klen = 0;
        char *key = api_cache_key(r, &s->call.args, &klen);
        if (key) answer_cache_put(s->app->ext->answers, key, klen, &s->res);
        free(key);
    }
    api_call_free(&s->call);
    return rc == 0 && s->res.status == 200 ? TW_OK : TW_EINVAL; /* the answer says why */
}

static void *job_main(void *arg)
{
    stats_job *s = arg;
    api_stats_jobs *j = s->app->ext->stats_jobs;
    slot_finish(j, s, s->kind == JOB_SWEEP ? sweep_run(s) : slot_run(s, &s->cancel));
    return NULL;
}

/* Checks and encodes the request's texts into a new slot (RUNNING). NULL
 * with *res set: a bad request (400), or, for a job, 503 when every slot
 * runs (a request then computes in *own instead, unlisted). */
static stats_job *slot_start(twd_app *app, const api_args *a, bool sync, stats_job *own, api_response *res)
{
    req_texts t = {0};
    if (gather_texts(app, a, &t, res) != 0) {
        req_texts_free(&t);
        return NULL;
    }
    t.text = NULL; /* borrowed from the request or the corpus lines: not kept */
    for (size_t i = 0; i < t.n_lines; i++) free(t.lines[i]);
    free(t.lines);
    t.lines = NULL;
    t.n_lines = 0;
    api_stats_jobs *j = app->ext->stats_jobs;
    pthread_mutex_lock(&j->lock);
    stats_job *s = slot_take(j);
    if (!s && !sync) {
        pthread_mutex_unlock(&j->lock);
        req_texts_free(&t);
        api_error(res, 503, "%d computations of the statistics are running; try again later",
                  API_STATS_SLOTS);
        res->retry_after = 5;
        return NULL;
    }
    if (!s) s = own; /* every slot busy: a request computes unlisted */
    memset(s, 0, sizeof *s);
    s->id = sync ? j->next_request++ : j->next_job++;
    s->state = JOB_RUNNING;
    s->sync = sync;
    s->app = app;
    s->texts = t;
    s->k = (size_t)api_int(a, "k");
    s->gelu = api_gelu(a);
    const api_arg *corpus = api_arg_get(a, "corpus");
    snprintf(s->corpus, sizeof s->corpus, "%s", corpus->present ? corpus->s : "");
    s->started = tw_now();
    tw_progress_reset(&s->progress);
    pthread_mutex_unlock(&j->lock);
    return s;
}

/* The statistics computed in slot s, in format fmt (json or csv). */
static int slot_answer(const stats_job *s, const char *fmt, api_response *res)
{
    if (fmt && strcmp(fmt, "csv") == 0) return answer_csv(&s->r, res);
    return answer_json(s->corpus[0] ? s->corpus : NULL, &s->r, s->gelu, s->texts.n_truncated, res);
}

/* Frees slot s of a finished request (own: the caller's, unlisted). */
static void slot_release(api_stats_jobs *j, stats_job *s)
{
    pthread_mutex_lock(&j->lock);
    slot_clear(s);
    pthread_mutex_unlock(&j->lock);
}

int api_trajectory_stats(twd_app *app, const api_args *a, api_response *res)
{
    stats_job own;
    stats_job *s = slot_start(app, a, true, &own, res);
    if (!s) return -1;
    int rc = slot_run(s, a->cancel);
    int out = rc == TW_OK ? slot_answer(s, api_str(a, "format"), res)
                          : api_status_error(res, rc, "trajectory statistics");
    slot_release(app->ext->stats_jobs, s);
    return out;
}

static const char *const job_states[] = {"free", "running", "done", "failed", "cancelled"};

/* {job, state, path, stage, done, total, progress, seconds, status, result,
 * error?} of sweep s, under the lock. */
static json_t *sweep_job_json(const stats_job *s)
{
    const char *stage;
    long long done, total;
    tw_progress_read(&s->progress, &stage, &done, &total);
    char status[64], result[64];
    snprintf(status, sizeof status, "/sweep/job/status?id=%lld", s->id);
    snprintf(result, sizeof result, "/sweep/job/result?id=%lld", s->id);
    json_t *o =
        json_pack("{s:I,s:s,s:s,s:o,s:I,s:I,s:o,s:o,s:s,s:s}", "job", (json_int_t)s->id, "state",
                  job_states[s->state], "path", s->path, "stage", stage ? json_string(stage) : json_null(),
                  "done", (json_int_t)done, "total", (json_int_t)total, "progress",
                  api_num(s->state == JOB_DONE ? 1.0 : tw_progress_fraction(&s->progress)), "seconds",
                  api_num(s->state == JOB_RUNNING ? tw_now() - s->started : s->seconds), "status", status,
                  "result", result);
    if (s->state == JOB_FAILED && s->res.body) {
        json_t *e = json_loadb(s->res.body, s->res.len, 0, NULL);
        json_t *m = json_object_get(json_object_get(e, "error"), "message");
        api_put(o, "error", json_string(json_is_string(m) ? json_string_value(m) : "failed"));
        json_decref(e);
    }
    return o;
}

/* {job, state, stage, done, total, progress, ...} of s, under the lock. */
static json_t *job_json(const stats_job *s)
{
    if (s->kind == JOB_SWEEP) return sweep_job_json(s);
    const char *const *states = job_states;
    const char *stage;
    long long done, total;
    tw_progress_read(&s->progress, &stage, &done, &total);
    size_t tokens = 0;
    for (size_t i = 0; i < s->texts.n; i++) tokens += s->texts.len[i];
    char result[96];
    snprintf(result, sizeof result, "/trajectory/stats/job/result?id=%lld", s->id);
    json_t *o =
        json_pack("{s:I,s:s,s:o,s:I,s:I,s:o,s:I,s:I,s:o,s:s}", "job", (json_int_t)s->id, "state",
                  states[s->state], "stage", stage ? json_string(stage) : json_null(), "done",
                  (json_int_t)done, "total", (json_int_t)total, "progress",
                  api_num(s->state == JOB_DONE ? 1.0 : tw_progress_fraction(&s->progress)), "n_texts",
                  (json_int_t)s->texts.n, "n_tokens", (json_int_t)tokens, "seconds",
                  api_num(s->state == JOB_RUNNING ? tw_now() - s->started : s->seconds), "result", result);
    if (s->state == JOB_FAILED) {
        api_put(o, "error", json_string(tw_strerror(s->rc)));
    }
    return o;
}

int api_trajectory_stats_job(twd_app *app, const api_args *a, api_response *res)
{
    stats_job *s = slot_start(app, a, false, NULL, res);
    if (!s) return -1;
    api_stats_jobs *j = app->ext->stats_jobs;
    pthread_mutex_lock(&j->lock);
    int rc = pthread_create(&s->thread, NULL, job_main, s);
    s->joinable = rc == 0;
    if (rc != 0) {
        s->state = JOB_FAILED;
        s->rc = TW_ENOMEM;
    }
    json_t *o = job_json(s);
    pthread_mutex_unlock(&j->lock);
    return api_json(res, 200, o);
}

/* ---------- whole-model sweeps as jobs (POST /sweep/job) ---------- */

/* Decodes the query string q (pairs separated by '&', '+' for a space,
 * %XX escapes) into at most cap pairs, their bytes in buf (q's length +
 * 2 cap). The number of pairs, or -1 when there are more than cap or an
 * escape is malformed. */
static long query_pairs(const char *q, size_t len, api_kv *kv, size_t cap, char *buf)
{
    size_t n = 0;
    char *o = buf;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && q[end] != '&') end++;
        if (end > i) {
            if (n == cap) return -1;
            char *start[2] = {o, NULL};
            size_t part = 0;
            for (size_t p = i; p < end; p++) {
                char c = q[p];
                if (c == '=' && part == 0) {
                    kv[n].key_len = (size_t)(o - start[0]);
                    *o++ = 0;
                    start[1] = o;
                    part = 1;
                    continue;
                }
                if (c == '%') {
                    if (p + 2 >= end || !isxdigit((unsigned char)q[p + 1]) ||
                        !isxdigit((unsigned char)q[p + 2]))
                        return -1;
                    char hex[3] = {q[p + 1], q[p + 2], 0};
                    c = (char)strtol(hex, NULL, 16);
                    p += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                *o++ = c;
            }
            if (part == 0) {
                kv[n].key_len = (size_t)(o - start[0]);
                *o++ = 0;
                start[1] = o;
            }
            kv[n].val_len = (size_t)(o - start[1]);
            *o++ = 0;
            kv[n].key = start[0];
            kv[n].val = start[1];
            n++;
        }
        i = end + 1;
    }
    return (long)n;
}

/* The call of the sweep a POST /sweep/job asks for, checked as its own
 * request would be (the same 400s). 0, or -1 with *res set. */
static int sweep_call(twd_app *app, const api_args *a, api_call *call, api_response *res)
{
    const char *path = api_str(a, "path");
    const api_arg *qa = api_arg_get(a, "query");
    const api_route *r = api_find_route(path);
    if (!r) return api_error(res, 500, "no route %s", path);
    api_kv kv[API_MAX_PARAMS * 2];
    char *buf = malloc(qa->s_len + 2 * API_MAX_PARAMS * 2 + 1);
    if (!buf) return api_status_error(res, TW_ENOMEM, "sweep job");
    long n = query_pairs(qa->s, qa->s_len, kv, API_MAX_PARAMS * 2, buf);
    int rc = n < 0 ? api_error(res, 400,
                               "parameter 'query': not a query string of at most %d parameters (name=value "
                               "pairs separated by '&', percent-encoded)",
                               API_MAX_PARAMS * 2)
                   : api_prepare_args(app, r, kv, (size_t)n, call, res);
    free(buf);
    if (rc == 0 && !api_sweep_requested(&call->args)) {
        api_call_free(call);
        rc = api_error(res, 400,
                       "parameter 'query': block must be \"all\" or a range \"A-B\" for a sweep job");
    }
    return rc;
}

int api_sweep_job(twd_app *app, const api_args *a, api_response *res)
{
    api_call call;
    if (sweep_call(app, a, &call, res) != 0) return -1;
    api_stats_jobs *j = app->ext->stats_jobs;
    pthread_mutex_lock(&j->lock);
    stats_job *s = slot_take(j);
    if (!s) {
        pthread_mutex_unlock(&j->lock);
        api_call_free(&call);
        api_error(res, 503, "%d jobs are running; try again later", API_STATS_SLOTS);
        res->retry_after = 5;
        return -1;
    }
    memset(s, 0, sizeof *s);
    s->kind = JOB_SWEEP;
    s->id = j->next_job++;
    s->state = JOB_RUNNING;
    s->app = app;
    s->call = call;
    s->call.args.cancel = &s->cancel;
    api_call_link_cancel(&s->call, &s->cancel);
    snprintf(s->path, sizeof s->path, "%s", s->call.route->path);
    s->started = tw_now();
    tw_progress_reset(&s->progress);
    int rc = pthread_create(&s->thread, NULL, job_main, s);
    s->joinable = rc == 0;
    if (rc != 0) {
        s->state = JOB_FAILED;
        api_call_free(&s->call);
        api_status_error(&s->res, TW_ENOMEM, "sweep job");
    }
    json_t *o = job_json(s);
    pthread_mutex_unlock(&j->lock);
    return api_json(res, 200, o);
}

static stats_job *job_arg(api_stats_jobs *j, const api_args *a, job_kind kind, api_response *res)
{
    long long id = (long long)api_int(a, "id");
    stats_job *s = slot_find(j, id, kind);
    if (!s)
        api_error(res, 400,
                  "parameter 'id': there is no job %lld (a finished job is kept until %d newer computations "
                  "have started)",
                  id, API_STATS_SLOTS);
    return s;
}

/* Answers job id= as it is now; with cancel, first asks it to stop: its
 * computation sees its cancel flag at the next check (a block of a sweep, a
 * chunk of the statistics) and the job ends "cancelled". One that has
 * already ended stays as it ended (cancelling is best effort: it may finish
 * first). */
static int job_status(twd_app *app, const api_args *a, job_kind kind, bool cancel, api_response *res)
{
    api_stats_jobs *j = app->ext->stats_jobs;
    pthread_mutex_lock(&j->lock);
    stats_job *s = job_arg(j, a, kind, res);
    if (s && cancel && s->state == JOB_RUNNING) {
        s->cancel_asked = true;
        atomic_store(&s->cancel.flag, 1);
    }
    json_t *o = s ? job_json(s) : NULL;
    pthread_mutex_unlock(&j->lock);
    return o ? api_json(res, 200, o) : -1;
}

int api_trajectory_stats_job_status(twd_app *app, const api_args *a, api_response *res)
{
    return job_status(app, a, JOB_STATS, false, res);
}

int api_sweep_job_status(twd_app *app, const api_args *a, api_response *res)
{
    return job_status(app, a, JOB_SWEEP, false, res);
}

int api_trajectory_stats_job_cancel(twd_app *app, const api_args *a, api_response *res)
{
    return job_status(app, a, JOB_STATS, true, res);
}

int api_sweep_job_cancel(twd_app *app, const api_args *a, api_response *res)
{
    return job_status(app, a, JOB_SWEEP, true, res);
}

/* The finished job's answer: the statistics, or the sweep's own answer (its
 * error too). Under the lock. */
static int job_answer(const stats_job *s, const api_args *a, api_response *res)
{
    if (s->state == JOB_CANCELLED)
        return api_error(res, 410, "job %lld was cancelled; it has no answer", s->id);
    if (s->kind == JOB_SWEEP) {
        api_respond_blob(res, s->res.status, s->res.content_type, s->res.blob);
        return s->res.status == 200 ? 0 : -1;
    }
    if (s->state == JOB_FAILED) return api_status_error(res, s->rc, "trajectory statistics");
    return slot_answer(s, api_str(a, "format"), res);
}

static int job_result(twd_app *app, const api_args *a, job_kind kind, api_response *res)
{
    api_stats_jobs *j = app->ext->stats_jobs;
    double until = tw_now() + (double)api_int(a, "wait");
    pthread_mutex_lock(&j->lock);
    stats_job *s = job_arg(j, a, kind, res);
    const long long id = (long long)api_int(a, "id");
    while (s && s->state == JOB_RUNNING && tw_now() < until && tw_cancel_check(a->cancel) == TW_OK) {
        double now = tw_now(), t = fmin(until, now + 0.25); /* wake to look at the request's cancel */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double w = t - now;
        ts.tv_sec += (time_t)w;
        ts.tv_nsec += (long)((w - floor(w)) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->changed, &j->lock, &ts);
        if (!(s = slot_find(j, id, kind))) job_arg(j, a, kind, res);
    }
    int out = -1;
    if (!s)
        ; /* no such job, or it was dropped while we waited: *res says which */
    else if (s->state == JOB_RUNNING) {
        double f = tw_progress_fraction(&s->progress);
        out = api_error(res, 503, "job %lld is still running (%.0f %% done); ask again, or with wait=", s->id,
                        100 * f);
        res->retry_after = 1;
    } else
        out = job_answer(s, a, res);
    pthread_mutex_unlock(&j->lock);
    return out;
}

int api_trajectory_stats_job_result(twd_app *app, const api_args *a, api_response *res)
{
    return job_result(app, a, JOB_STATS, res);
}

int api_sweep_job_result(twd_app *app, const api_args *a, api_response *res)
{
    return job_result(app, a, JOB_SWEEP, res);
}

void api_stats_render_metrics(const twd_app *app, strbuf *b)
{
    api_stats_jobs *j = app->ext ? app->ext->stats_jobs : NULL;
    if (!j) return;
    pthread_mutex_lock(&j->lock);
    int running = 0;
    for (size_t i = 0; i < API_STATS_SLOTS; i++) {
        const stats_job *s = &j->slot[i];
        if (s->state != JOB_RUNNING) continue;
        if (s->kind == JOB_SWEEP) {
            sb_printf(b, "twd_sweep_job_progress{model=\"%s\",id=\"%lld\",path=\"%s\"} %g\n", app->model_name,
                      s->id, s->path, tw_progress_fraction(&s->progress));
            continue;
        }
        running++;
        long long done, total;
        tw_progress_read(&s->progress, NULL, &done, &total);
        sb_printf(b,
                  "twd_stats_progress{model=\"%s\",id=\"%lld\",kind=\"%s\"} %g\n"
                  "twd_stats_rows_done{model=\"%s\",id=\"%lld\",kind=\"%s\"} %lld\n"
                  "twd_stats_rows_total{model=\"%s\",id=\"%lld\",kind=\"%s\"} %lld\n",
                  app->model_name, s->id, s->sync ? "request" : "job", tw_progress_fraction(&s->progress),
                  app->model_name, s->id, s->sync ? "request" : "job", done, app->model_name, s->id,
                  s->sync ? "request" : "job", total);
    }
    sb_printf(b, "twd_stats_running{model=\"%s\"} %d\n", app->model_name, running);
    pthread_mutex_unlock(&j->lock);
}
