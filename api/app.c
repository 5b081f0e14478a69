/* Life cycle of the api layer's state (struct api_ext), and its metrics. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/handlers.h"
#include "api/json.h"
#include "api/stats.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/utf8.h"
#include "core/ana/common.h"
#include "core/nn/scratch.h"
#include "core/nn/topk.h"

/* One word per line; blank lines and '#' comments skipped. A regular file
 * of at most 16 MiB (a FIFO or a device is refused, not read). */
static int load_words(struct api_ext *x, const char *path, char *err, size_t errlen)
{
    char why[1024];
    size_t size = 0;
    char *text = fs_read_file(path, (size_t)16 << 20, &size, why, sizeof why);
    FILE *f = text ? fmemopen(text, size, "r") : NULL;
    if (!f) {
        snprintf(err, errlen, "%s: cannot open the default word list (%s)", path,
                 text ? strerror(errno) : why);
        free(text);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, n = 0, alloc = 0;
    ssize_t len;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) != -1) {
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len || line[0] == '#') continue;
        if (!utf8_valid(line, (size_t)len) || len > 256) {
            snprintf(err, errlen, "%s:%zu: not a word (invalid UTF-8 or longer than 256 bytes)", path, n + 1);
            rc = -1;
            break;
        }
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 128;
            char **nw = realloc(x->default_words, alloc * sizeof *nw);
            if (!nw) {
                rc = -1;
                snprintf(err, errlen, "out of memory");
                break;
            }
            x->default_words = nw;
        }
        if (!(x->default_words[n] = strdup(line))) {
            rc = -1;
            snprintf(err, errlen, "out of memory");
            break;
        }
        x->n_default_words = ++n;
    }
    free(line);
    fclose(f);
    free(text);
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "%s: the default word list is empty", path);
        rc = -1;
    }
    return rc;
}

/* Every printable entry of a character vocabulary, as the default words. */
static int vocabulary_words(struct api_ext *x, const tokenizer *tok, char *err, size_t errlen)
{
    int n = tokenizer_vocab_size(tok);
    x->default_words = calloc((size_t)n + 1, sizeof *x->default_words);
    if (!x->default_words) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t len;
        const uint8_t *b = tokenizer_token_bytes(tok, i, &len);
        if (!b || len == 0 || !utf8_valid((const char *)b, len) || memchr(b, '\0', len) ||
            (len == 1 && (b[0] < 0x20 || b[0] == ',')))
            continue; /* control characters cannot be given as words either */
        char *w = malloc(len + 1);
        if (!w) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memcpy(w, b, len);
        w[len] = '\0';
        x->default_words[x->n_default_words++] = w;
    }
    return 0;
}

void api_render_metrics(const api_service *svc, strbuf *b)
{
    sb_puts(
        b,
        "# HELP twd_cache_bytes Bytes held by a cache.\n# TYPE twd_cache_bytes gauge\n"
        "# HELP twd_cache_budget_bytes Configured budget of a cache.\n# TYPE twd_cache_budget_bytes gauge\n"
        "# HELP twd_cache_hits_total Lookups served from a cache.\n# TYPE twd_cache_hits_total counter\n"
        "# HELP twd_cache_misses_total Lookups that computed.\n# TYPE twd_cache_misses_total counter\n"
        "# HELP twd_cache_evictions_total Entries evicted to respect the budget.\n"
        "# TYPE twd_cache_evictions_total counter\n"
        "# HELP twd_cache_room_waits_total Computations that waited for entries in use to leave room.\n"
        "# TYPE twd_cache_room_waits_total counter\n"
        "# HELP twd_cache_refused_total Computations refused for want of room in the budget (503).\n"
        "# TYPE twd_cache_refused_total counter\n"
        "# HELP twd_umap_ready 1 when the UMAP layout is ready.\n# TYPE twd_umap_ready gauge\n"
        "# HELP twd_umap_progress Progress of the UMAP fit (0..1).\n# TYPE twd_umap_progress gauge\n"
        "# HELP twd_sweeps_running Whole-model sweeps (block=all or A-B) being computed.\n"
        "# TYPE twd_sweeps_running gauge\n"
        "# HELP twd_sweep_blocks Blocks of the running sweeps: done and total.\n"
        "# TYPE twd_sweep_blocks gauge\n"
        "# HELP twd_f16_blocks Blocks of an F16/BF16 checkpoint: left in the file's dtype, and kept "
        "converted.\n"
        "# TYPE twd_f16_blocks gauge\n"
        "# HELP twd_f16_kept_bytes Bytes of F16/BF16 blocks kept converted to float32 (f16_cache_mb).\n"
        "# TYPE twd_f16_kept_bytes gauge\n"
        "# HELP twd_f16_conversions_total Conversions of an F16/BF16 block to float32.\n"
        "# TYPE twd_f16_conversions_total counter\n"
        "# HELP twd_stats_running Computations of /trajectory/stats in flight (requests and jobs).\n"
        "# TYPE twd_stats_running gauge\n"
        "# HELP twd_stats_progress Progress (0..1) of one computation of /trajectory/stats in flight.\n"
        "# TYPE twd_stats_progress gauge\n"
        "# HELP twd_sweep_job_progress Progress (0..1, blocks answered) of a running POST /sweep/job.\n"
        "# TYPE twd_sweep_job_progress gauge\n"
        "# HELP twd_stats_rows_done State rows of the current stage done by one computation in flight.\n"
        "# TYPE twd_stats_rows_done gauge\n"
        "# HELP twd_stats_rows_total State rows of the current stage of one computation in flight.\n"
        "# TYPE twd_stats_rows_total gauge\n");
    sb_printf(
        b,
        "# HELP twd_topk_unit The unit large top-k screenings use here (amx, vnni, avxvnni or fp32).\n"
        "# TYPE twd_topk_unit gauge\ntwd_topk_unit{unit=\"%s\"} 1\n"
        "# HELP twd_topk_exact_scans_total Top-k lists a screening could not certify (scanned exactly, or "
        "screened again).\n"
        "# TYPE twd_topk_exact_scans_total counter\ntwd_topk_exact_scans_total %llu\n"
        "# HELP twd_topk_rescreened_total Queries whose lists the amx or vnni bound left uncertified, "
        "screened again in fp32.\n"
        "# TYPE twd_topk_rescreened_total counter\ntwd_topk_rescreened_total %llu\n"
        "# HELP twd_scratch_kept_bytes Scratch of the top-k passes kept for the next one.\n"
        "# TYPE twd_scratch_kept_bytes gauge\ntwd_scratch_kept_bytes %zu\n",
        topk_unit_name(), topk_exact_scans(), topk_rescreened(), nn_scratch_kept_bytes());
    for (size_t i = 0; i < svc->n_models; i++) {
        twd_app *app = svc->models[i];
        if (!api_app_acquire(app)) continue;
        if (!app->ext) {
            api_app_release(app);
            continue;
        }
        const char *m = app->model_name;
        blockcache_stats s;
        blockcache_get_stats(app->ext->cache, &s);
        answer_cache_stats a;
        answer_cache_get_stats(app->ext->answers, &a);
        const struct {
            const char *metric, *cache;
            unsigned long long v;
        } rows[] = {
            {"twd_cache_bytes", "intermediates", s.bytes},
            {"twd_cache_bytes", "answers", a.bytes},
            {"twd_cache_budget_bytes", "intermediates", s.budget},
            {"twd_cache_budget_bytes", "answers", a.budget},
            {"twd_cache_hits_total", "intermediates", s.hits},
            {"twd_cache_hits_total", "answers", a.hits},
            {"twd_cache_misses_total", "intermediates", s.misses},
            {"twd_cache_misses_total", "answers", a.misses},
            {"twd_cache_evictions_total", "intermediates", s.evictions},
            {"twd_cache_room_waits_total", "intermediates", s.room_waits},
            {"twd_cache_refused_total", "intermediates", s.refused},
        };
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
            sb_printf(b, "%s{model=\"%s\",cache=\"%s\"} %llu\n", rows[r].metric, m, rows[r].cache, rows[r].v);
        sb_printf(
            b,
            "twd_sweeps_running{model=\"%s\"} %lld\ntwd_sweep_blocks{model=\"%s\",state=\"done\"} %lld\n"
            "twd_sweep_blocks{model=\"%s\",state=\"total\"} %lld\n",
            m, atomic_load(&app->ext->sweeps_running), m, atomic_load(&app->ext->sweep_blocks_done), m,
            atomic_load(&app->ext->sweep_blocks_total));
        gpt2_block_stats bs;
        gpt2_get_block_stats(&app->model, &bs);
        sb_printf(b,
                  "twd_f16_blocks{model=\"%s\",state=\"lazy\"} "
                  "%zu\ntwd_f16_blocks{model=\"%s\",state=\"kept\"} %zu\n"
                  "twd_f16_kept_bytes{model=\"%s\"} %zu\ntwd_f16_conversions_total{model=\"%s\"} %llu\n",
                  m, bs.lazy_blocks, m, bs.kept_blocks, m, bs.kept_bytes, m, bs.conversions);
        if (app->ext->layout) {
            double progress;
            int ready = layout_umap_ready(app->ext->layout, &progress);
            sb_printf(b, "twd_umap_ready{model=\"%s\"} %d\ntwd_umap_progress{model=\"%s\"} %g\n", m, ready, m,
                      progress);
        }
        api_stats_render_metrics(app, b); /* the reference still held */
        api_app_release(app);
    }
}

void api_app_init(twd_app *app)
{
    memset(app, 0, sizeof *app);
    pthread_mutex_init(&app->status_lock, NULL);
    atomic_store(&app->state, APP_LOADING);
    snprintf(app->status, sizeof app->status, "starting");
}

void api_app_set_status(twd_app *app, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&app->status_lock);
    vsnprintf(app->status, sizeof app->status, fmt, ap);
    pthread_mutex_unlock(&app->status_lock);
    va_end(ap);
}

void api_app_get_status(twd_app *app, char *out, size_t n)
{
    pthread_mutex_lock(&app->status_lock);
    snprintf(out, n, "%s", app->status);
    pthread_mutex_unlock(&app->status_lock);
}

/* The reference count and the state are both sequentially consistent: a
 * reader counts itself, then looks at the state; the reloader changes the
 * state, then looks at the count. Whichever comes second sees the other,
 * so a reader that saw READY is always counted by the reloader. */
bool api_app_acquire(twd_app *app)
{
    atomic_fetch_add(&app->refs, 1);
    if (atomic_load(&app->state) == APP_READY) return true;
    atomic_fetch_sub(&app->refs, 1);
    return false;
}

void api_app_release(twd_app *app) { atomic_fetch_sub(&app->refs, 1); }

bool api_app_mark_changed(twd_app *app, const char *why)
{
    int want = APP_READY;
    if (!atomic_compare_exchange_strong(&app->state, &want, APP_RELOADING)) return false;
    atomic_store(&app->changed, 1);
    const char *file = app->model.file ? app->model.file : app->model_source;
    api_app_set_status(app, "the checkpoint changed; reloading (%s: %s)", file, why);
    tw_log("model %s: the checkpoint %s changed (%s): it answers 503 until it is reloaded", app->model_name,
           file, why);
    return true;
}

bool api_app_check(twd_app *app)
{
    if (atomic_load(&app->changed)) return true;
    char why[256];
    if (!gpt2_file_changed(&app->model, why, sizeof why)) return false;
    api_app_mark_changed(app, why);
    return true;
}

void api_app_unavailable(twd_app *app, api_response *res)
{
    char status[1024];
    api_app_get_status(app, status, sizeof status);
    switch (atomic_load(&app->state)) {
    case APP_LOADING:
        api_error(res, 503, "the model is still loading; retry shortly");
        res->retry_after = 2;
        return;
    case APP_RELOADING:
    case APP_READY: /* changed just now, not yet marked */
        api_error(res, 503, "model '%s': %s", app->model_name, status);
        res->retry_after = 2;
        return;
    default: api_error(res, 503, "model '%s' is not available: %s", app->model_name, status);
    }
}

int api_init(twd_app *app, char *err, size_t errlen)
{
    struct api_ext *x = calloc(1, sizeof *x);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    x->answers = answer_cache_new(app->set.answer_cache_bytes);
    x->cache = blockcache_new(app->set.cache_bytes);
    x->stats_jobs = api_stats_jobs_new();
    if (!x->answers || !x->cache || !x->stats_jobs) {
        snprintf(err, errlen, "out of memory");
        app->ext = x;
        api_shutdown(app);
        return -1;
    }
    app->ext = x;
    /* a character-level model's words are its characters; a BPE model's the
     * word list (the paper's 100 nouns) */
    int rc = app->tok && tokenizer_is_chars(app->tok) ? vocabulary_words(x, app->tok, err, errlen)
                                                      : load_words(x, app->set.words_file, err, errlen);
    if (rc != 0) {
        api_shutdown(app);
        return -1;
    }
    /* the statistics of E every analysis starts from, before the first
     * request (some 20 ms of 2 cores on GPT-2's 124M shape, 60 on xl's) and
     * before the layout's start-up work shares the cores; should it fail
     * (no memory, a cache too small), the first analysis computes them */
    (void)ana_prepare(&app->model, ANA_CTX(x->cache));
    const gpt2_config *c = &app->model.cfg;
    if (!(x->layout = layout_start(app->model.p.wte, (size_t)c->vocab_size, (size_t)c->n_embd,
                                   &app->set.layout, err, errlen))) {
        api_shutdown(app);
        return -1;
    }
    return 0;
}

void api_shutdown(twd_app *app)
{
    struct api_ext *x = app->ext;
    if (!x) return;
    api_stats_jobs_free(x->stats_jobs); /* before what the jobs use */
    layout_stop(x->layout);
    answer_cache_free(x->answers);
    blockcache_free(x->cache);
    for (size_t i = 0; i < x->n_default_words; i++) free(x->default_words[i]);
    free(x->default_words);
    free(x);
    app->ext = NULL;
}
