/* twd: the Traveling Words daemon.
 *
 * Start-up order: configuration, HTTP (so /health answers 503 at once),
 * then, on a background thread, every model of the models option in turn is
 * resolved (server/resolve.c: a path, a hub id through the Hugging Face
 * cache, twd's cache or a download, or with no model the default hub repo,
 * else twd's demo model), loaded and prepared. A checkpoint that fails to
 * load stops the daemon with exit status 1 and one line naming the file and
 * the tensor. Once they are loaded, server/reload.c watches their
 * checkpoints and loads one again when it changes. SIGINT/SIGTERM stop it
 * cleanly, whatever thread they land on (server/signals.h). */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "base/clock.h"
#include "base/fs.h"
#include "base/log.h"
#include "core/model/gpt2.h"
#include "core/model/synth.h"
#include "core/nn/amx.h"
#include "core/nn/blas.h"
#include "core/nn/vnni.h"
#include "core/tok/tokenizer.h"
#include "server/config.h"
#include "server/http.h"
#include "server/hub.h"
#include "server/metrics.h"
#include "server/reload.h"
#include "server/resolve.h"
#include "server/signals.h"

typedef struct {
    api_service *svc;
    const twd_config *cfg;
    char specs[TWD_MAX_MODELS][4096];
    char paths[TWD_MAX_MODELS][4096]; /* each spec as resolved: what a reload reads */
    char err[2048];
    _Atomic int done;
    _Atomic int failed;
} loader;

/* A name no other model has: the resolved one, or it with -2, -3 ... */
static void unique_name(const api_service *svc, size_t upto, const char *want, char *out, size_t n)
{
    snprintf(out, n, "%s", want);
    for (int k = 2;; k++) {
        bool taken = false;
        for (size_t i = 0; i < upto; i++) taken |= strcmp(svc->models[i]->model_name, out) == 0;
        if (!taken) return;
        snprintf(out, n, "%.200s-%d", want, k);
    }
}

/* Resolves, loads and prepares one model; one exit path. */
static int load_one(loader *ld, size_t i)
{
    twd_app *app = ld->svc->models[i];
    const twd_config *cfg = ld->cfg;
    model_source src;
    int ok = 0;
    if (resolve_model(ld->specs[i], cfg, app, &src, ld->err, sizeof ld->err) != 0) goto out;
    api_app_set_status(app, "loading %s", src.path);
    snprintf(ld->paths[i], sizeof ld->paths[i], "%s", src.path);
    char real[4096];
    snprintf(app->model_source, sizeof app->model_source, "%s", realpath(src.path, real) ? real : src.path);
    snprintf(app->model_origin, sizeof app->model_origin, "%s", src.origin);
    unique_name(ld->svc, i, src.name, app->model_name, sizeof app->model_name);
    if (model_load(app, src.path, cfg, ld->err, sizeof ld->err) != 0) goto out;
    ok = 1;
    const gpt2_config *c = &app->model.cfg;
    tw_log("model %s ready in %.3f s: %d layers, %d heads, width %d, vocab %d%s, %zu parameters%s",
           app->model_name, app->load_seconds, c->n_layer, c->n_head, c->n_embd, c->vocab_size,
           app->model.vocab_rows > c->vocab_size ? " (padded rows left out)" : "", app->model.n_params,
           app->synthetic ? " (SYNTHETIC weights)" : "");
out:
    api_app_set_status(app, ok ? "ready" : "failed");
    atomic_store(&app->state, ok ? APP_READY : APP_FAILED);
    return ok;
}

static void *load_main(void *arg)
{
    loader *ld = arg;
    double total = 0;
    for (size_t i = 0; i < ld->svc->n_models; i++) {
        if (!load_one(ld, i)) {
            atomic_store(&ld->failed, 1);
            break;
        }
        total += ld->svc->models[i]->load_seconds;
    }
    if (!atomic_load(&ld->failed)) metrics_set_load_seconds(total);
    atomic_store(&ld->done, 1);
    return NULL;
}

/* OpenBLAS picks its kernels when it loads, before main: when it fell back
 * to generic kernels on a CPU it does not know, restart once with the
 * family the CPU supports (see blas_coretype in config/twd.conf). */
static void maybe_reexec_for_blas(const twd_config *cfg, char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcasecmp(cfg->blas_coretype, "off") == 0) return;
    const char *want =
        strcasecmp(cfg->blas_coretype, "auto") == 0 ? blas_coretype_hint() : cfg->blas_coretype;
    if (!want || !*want || strcasecmp(want, blas_corename()) == 0) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    tw_log("OpenBLAS chose %s kernels on this CPU; restarting with OPENBLAS_CORETYPE=%s", blas_corename(),
           want);
    fflush(stderr);
    execv("/proc/self/exe", argv);
    tw_log("restart failed (%s); continuing with %s kernels", strerror(errno), blas_corename());
}

/* The server's counters for /metrics: requests, latency, the process, and
 * what the connection guard refused. */
static void render_metrics(void *ctx, strbuf *b)
{
    metrics_render(NULL, b);
    guard_stats g;
    http_guard_stats(ctx, &g);
    sb_printf(
        b,
        "# HELP twd_connections Connections by state.\n# TYPE twd_connections gauge\n"
        "twd_connections{state=\"pending\"} %zu\ntwd_connections{state=\"active\"} %zu\n"
        "# HELP twd_connections_total Connections accepted, and how the guard ended those it refused.\n"
        "# TYPE twd_connections_total counter\n"
        "twd_connections_total{outcome=\"accepted\"} %llu\ntwd_connections_total{outcome=\"garbage\"} %llu\n"
        "twd_connections_total{outcome=\"per_ip_limit\"} %llu\n"
        "twd_connections_total{outcome=\"pending_dropped\"} %llu\n"
        "twd_connections_total{outcome=\"deadline\"} %llu\ntwd_connections_total{outcome=\"evicted\"} %llu\n"
        "# HELP twd_requests_canceled_total Computations canceled because the client went away.\n"
        "# TYPE twd_requests_canceled_total counter\ntwd_requests_canceled_total %llu\n",
        g.pending, g.active, g.accepted, g.rejected_garbage, g.rejected_per_ip, g.dropped_pending,
        g.timed_out, g.evicted, g.canceled);
}

/* The pid_file option: "<pid>\n<url>\n<state>\n", replaced atomically (a
 * temporary file beside it, renamed over it), so a reader never sees half
 * of it. 0, or -1 with one line naming the option and the file. */
static int write_pid_file(const char *path, const char *url, const char *state, char *err, size_t errlen)
{
    char tmp[4200];
    if (fs_path(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid()) != 0) {
        snprintf(err, errlen, "pid_file %.1000s: the path is too long", path);
        return -1;
    }
    FILE *f = fopen(tmp, "we");
    if (!f) {
        snprintf(err, errlen, "pid_file %.1000s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%ld\n%s\n%s\n", (long)getpid(), url, state);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        int e = errno ? errno : EIO;
        unlink(tmp);
        snprintf(err, errlen, "pid_file %.1000s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

/* Removes the pid file at exit, unless another twd has since replaced it. */
static void remove_pid_file(const char *path)
{
    FILE *f = path[0] ? fopen(path, "re") : NULL;
    long pid = 0;
    if (!f) return;
    int ok = fscanf(f, "%ld", &pid) == 1;
    fclose(f);
    if (ok && pid == (long)getpid()) unlink(path);
}

/* Waits for a signal or for the loader to finish; returns the exit code.
 * Once every model is loaded, starts the checkpoint watcher (*rl). */
static int run(loader *ld, pthread_t lt, bool *joined, reloader **rl)
{
    for (;;) {
        int sig = signals_wait_stop(0.05);
        if (sig) {
            tw_log("%s received, stopping (a second signal is logged, a third cancels the work under way)",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
            return 0;
        }
        if (!*joined && atomic_load(&ld->done)) {
            pthread_join(lt, NULL);
            *joined = true;
            if (atomic_load(&ld->failed)) {
                tw_log("cannot load the model: %s", ld->err);
                return 1;
            }
            char err[512];
            if (!(*rl = reloader_start(ld->svc, (const char(*)[4096])ld->paths, ld->cfg, err, sizeof err)))
                tw_log("warning: %s; a checkpoint that changes underneath will not be reloaded", err);
        }
    }
}

static void hurry(void *ctx)
{
    (void)ctx;
    http_hurry();
}

int main(int argc, char **argv)
{
    static twd_config cfg;
    char err[2048];
    config_defaults(&cfg);
    int rc = config_from_args(&cfg, argc, argv, err, sizeof err);
    if (rc == 1) { /* --help, --version or --print-config: its output must have been written */
        if (fflush(stdout) != 0 || ferror(stdout)) {
            tw_log("cannot write to standard output: %s", strerror(errno));
            return 1;
        }
        return 0;
    }
    if (rc == 0) rc = config_check(&cfg, err, sizeof err);
    if (rc != 0) {
        tw_log("%s", err);
        return 2;
    }
    maybe_reexec_for_blas(&cfg, argv);
    tw_log("page from %s; default /probe words from %s", cfg.static_dir, cfg.words_file);
    tw_log("top-k screening: %s",
           nn_amx_usable()          ? "bf16 on the AMX tile unit (certified; TWD_AMX=0 turns it off)"
           : nn_vnni_width() == 512 ? "int16 on AVX512-VNNI (certified; no AMX here or TWD_AMX=0; TWD_VNNI=0 "
                                      "turns it off)"
           : nn_vnni_width() == 256
               ? "int16 on AVX-VNNI (certified; no AMX or AVX-512 VNNI here, or TWD_VNNI=256; "
                 "TWD_VNNI=0 turns it off)"
               : "fp32 sgemm (no AMX or VNNI here, or TWD_AMX=0 and TWD_VNNI=0)");
    json_object_seed(0); /* before any thread: jansson's hash seed */
#ifdef __GLIBC__
    /* A fixed mmap threshold: glibc's default one rises to 32 MiB after the
     * first large free, after which the cache's megabyte entries (the /svd
     * factors) come from the heaps and are kept there after eviction, so the
     * resident size outgrew the budgets in whole-model sweeps. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    openblas_set_num_threads(cfg.blas_threads > 0 ? (int)cfg.blas_threads : (int)(cores > 0 ? cores : 1));

    /* Before any thread of ours: every signal, on whatever thread it lands,
     * goes through server/signals.c */
    if (signals_start(err, sizeof err) != 0) {
        tw_log("%s", err);
        return 1;
    }

    static loader ld;
    static twd_app apps[TWD_MAX_MODELS];
    static twd_app *app_list[TWD_MAX_MODELS];
    static api_service svc;
    size_t n_models = config_model_list(&cfg, ld.specs, TWD_MAX_MODELS);
    if (n_models == 0) ld.specs[0][0] = '\0'; /* the default model */
    svc.models = app_list;
    svc.n_models = n_models ? n_models : 1;
    for (size_t i = 0; i < svc.n_models; i++) {
        api_app_init(&apps[i]);
        config_api_settings(&cfg, &apps[i].set);
        apps[i].svc = &svc;
        /* a placeholder until resolve_model names it (a spec may be a long path) */
        snprintf(apps[i].model_name, sizeof apps[i].model_name, "%.*s", (int)sizeof apps[i].model_name - 1,
                 ld.specs[i][0] ? ld.specs[i] : "default");
        app_list[i] = &apps[i];
    }
    metrics_init();

    http_server *srv = http_start(&svc, &cfg, err, sizeof err);
    if (!srv) {
        tw_log("%s", err);
        return 1;
    }
    svc.metrics_ctx = srv;
    svc.metrics_render = render_metrics;
    signals_on_hurry(hurry, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://%s%s%s:%d/", strchr(cfg.listen, ':') ? "[" : "", cfg.listen,
             strchr(cfg.listen, ':') ? "]" : "", http_port(srv));
    tw_log("listening on %s", url);
    if (cfg.pid_file[0] && write_pid_file(cfg.pid_file, url, "listening", err, sizeof err) != 0) {
        tw_log("%s", err);
        http_stop(srv);
        return 1;
    }

    ld.svc = &svc;
    ld.cfg = &cfg;
    pthread_t lt;
    if (pthread_create(&lt, NULL, load_main, &ld) != 0) {
        tw_log("cannot start the loader thread");
        http_stop(srv);
        remove_pid_file(cfg.pid_file);
        return 1;
    }
    bool joined = false;
    reloader *rl = NULL;
    int exit_code = run(&ld, lt, &joined, &rl);
    /* going away: whoever waits for this twd to stop may now wait for it */
    if (cfg.pid_file[0] && write_pid_file(cfg.pid_file, url, "stopping", err, sizeof err) != 0)
        tw_log("%s", err);
    http_stop(srv);
    reloader_stop(rl);
    if (!joined && atomic_load(&ld.done)) { /* finished just as the signal came */
        pthread_join(lt, NULL);
        joined = true;
    }
    if (!joined) {
        /* Still loading (e.g. a download): the thread holds no lock we need;
         * leave without waiting for it. */
        tw_log("stopped while loading");
        remove_pid_file(cfg.pid_file);
        return exit_code;
    }
    for (size_t i = 0; i < svc.n_models; i++) model_unload(&apps[i]);
    remove_pid_file(cfg.pid_file);
    tw_log("stopped");
    return exit_code;
}
