/* twd: the Traveling Words daemon.
 *
 * Start-up order: configuration, HTTP (so /health answers 503 at once),
 * then the model is resolved and loaded on a background thread:
 *   1. `model` configured: that folder;
 *   2. else the cached hub snapshot (cache_dir/hub/<repo>), downloaded first
 *      when missing and the hub answers within fetch_timeout;
 *   3. else the built-in demo model, generated once into cache_dir/demo-v1.
 * A checkpoint that fails to load stops the daemon with exit status 1 and one
 * line naming the file and the tensor. SIGINT/SIGTERM stop it cleanly. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "core/gpt2.h"
#include "core/synth.h"
#include "core/tokenizer.h"
#include "core/topk.h"
#include "server/config.h"
#include "server/fsutil.h"
#include "server/http.h"
#include "server/hub.h"
#include "server/metrics.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static pthread_mutex_t status_lock = PTHREAD_MUTEX_INITIALIZER;

static void set_status(twd_app *app, const char *s)
{
    pthread_mutex_lock(&status_lock);
    snprintf(app->status, sizeof app->status, "%s", s);
    pthread_mutex_unlock(&status_lock);
}

static void on_fetch_progress(void *ctx, const char *s)
{
    set_status(ctx, s);
    if (isatty(2)) fprintf(stderr, "\rtwd: %-70s", s);
    else if (strstr(s, "0%") || strncmp(s, "verifying", 9) == 0) fprintf(stderr, "twd: %s\n", s);
}

/* Picks the folder to load (see the comment at the top). */
static int resolve_model(twd_app *app, char *dir, size_t dirlen, char *err, size_t errlen)
{
    const twd_config *cfg = app->cfg;
    if (cfg->model[0]) {
        snprintf(dir, dirlen, "%s", cfg->model);
        snprintf(app->model_origin, sizeof app->model_origin, "configured");
        return 0;
    }
    char repo[256];
    snprintf(repo, sizeof repo, "%s", cfg->hub_repo);
    for (char *p = repo; *p; p++)
        if (*p == '/') *p = '-';
    char hub_dir[4096];
    if (fs_path(hub_dir, sizeof hub_dir, "%s/hub/%s", cfg->cache_dir, repo) != 0) {
        snprintf(err, errlen, "cache_dir is too long");
        return -1;
    }
    if (!hub_complete(hub_dir) && cfg->fetch) {
        char ferr[1024];
        set_status(app, "contacting the model hub");
        fprintf(stderr, "twd: no model configured; fetching %s from %s into %s\n", cfg->hub_repo, cfg->hub_url, hub_dir);
        if (hub_fetch(cfg->hub_url, cfg->hub_repo, hub_dir, (long)cfg->fetch_timeout, on_fetch_progress, app, ferr,
                      sizeof ferr) != 0) {
            if (isatty(2)) fputc('\n', stderr);
            fprintf(stderr, "twd: download failed: %s\ntwd: falling back to the synthetic demo model\n", ferr);
        } else if (isatty(2)) {
            fputc('\n', stderr);
        }
    }
    if (hub_complete(hub_dir)) {
        snprintf(dir, dirlen, "%s", hub_dir);
        snprintf(app->model_origin, sizeof app->model_origin, "hub-cache");
        return 0;
    }
    /* The demo model: GPT-2 architecture at reduced width, generated once. */
    char probe[4200];
    if (fs_path(dir, dirlen, "%s/demo-v1", cfg->cache_dir) != 0 ||
        fs_path(probe, sizeof probe, "%s/config.json", dir) != 0) {
        snprintf(err, errlen, "cache_dir is too long");
        return -1;
    }
    snprintf(app->model_origin, sizeof app->model_origin, "demo");
    if (access(probe, F_OK) == 0) return 0;
    set_status(app, "generating the synthetic demo model");
    fprintf(stderr, "twd: generating the synthetic demo model into %s\n", dir);
    if (fs_mkdir_p(dir) != 0) {
        snprintf(err, errlen, "%.1500s: %s", dir, strerror(errno));
        return -1;
    }
    synth_opts o;
    synth_opts_shape(&o, "demo");
    o.seed = 1;
    return synth_write(dir, &o, err, errlen);
}

typedef struct {
    twd_app *app;
    char err[2048];
    _Atomic int done;
} loader;

static void *load_main(void *arg)
{
    loader *ld = arg;
    twd_app *app = ld->app;
    char dir[4096];
    if (resolve_model(app, dir, sizeof dir, ld->err, sizeof ld->err) != 0) {
        atomic_store(&app->state, APP_FAILED);
        atomic_store(&ld->done, 1);
        return NULL;
    }
    set_status(app, "loading the checkpoint");
    double t0 = now_s();
    if (gpt2_load(dir, &app->model, ld->err, sizeof ld->err) != 0 ||
        !(app->tok = tokenizer_load(dir, ld->err, sizeof ld->err))) {
        atomic_store(&app->state, APP_FAILED);
        atomic_store(&ld->done, 1);
        return NULL;
    }
    if (tokenizer_vocab_size(app->tok) > app->model.cfg.vocab_size) {
        snprintf(ld->err, sizeof ld->err, "%.1500s: tokenizer has %d ids but wte has only %d rows", dir,
                 tokenizer_vocab_size(app->tok), app->model.cfg.vocab_size);
        atomic_store(&app->state, APP_FAILED);
        atomic_store(&ld->done, 1);
        return NULL;
    }
    app->load_seconds = now_s() - t0;
    char real[4096];
    snprintf(app->model_source, sizeof app->model_source, "%s", realpath(dir, real) ? real : dir);
    const char *base = strrchr(app->model_source, '/');
    if (strcmp(app->model_origin, "hub-cache") == 0) snprintf(app->model_name, sizeof app->model_name, "%.200s", app->cfg->hub_repo);
    else if (strcmp(app->model_origin, "demo") == 0) snprintf(app->model_name, sizeof app->model_name, "twd-demo");
    else snprintf(app->model_name, sizeof app->model_name, "%.200s", base && base[1] ? base + 1 : app->model_source);
    app->synthetic = app->model.synthetic != 0;
    app->synthetic_seed = app->model.synthetic_seed;
    if (api_init(app, ld->err, sizeof ld->err) != 0) {
        atomic_store(&app->state, APP_FAILED);
        atomic_store(&ld->done, 1);
        return NULL;
    }
    metrics_set_load_seconds(app->load_seconds);
    set_status(app, "ready");
    atomic_store(&app->state, APP_READY);
    const gpt2_config *c = &app->model.cfg;
    fprintf(stderr, "twd: model %s ready in %.3f s: %d layers, %d heads, width %d, vocab %d, %zu parameters%s\n",
            app->model_name, app->load_seconds, c->n_layer, c->n_head, c->n_embd, c->vocab_size, app->model.n_params,
            app->synthetic ? " (SYNTHETIC weights)" : "");
    atomic_store(&ld->done, 1);
    return NULL;
}

/* OpenBLAS picks its kernels when it loads, before main: when it fell back
 * to generic kernels on a CPU it does not know, restart once with the
 * family the CPU supports (see blas_coretype in config/twd.conf). */
static void maybe_reexec_for_blas(const twd_config *cfg, char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcmp(cfg->blas_coretype, "off") == 0) return;
    const char *want = strcmp(cfg->blas_coretype, "auto") == 0 ? topk_blas_coretype_hint() : cfg->blas_coretype;
    if (!want || !*want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    fprintf(stderr, "twd: OpenBLAS chose %s kernels on this CPU; restarting with OPENBLAS_CORETYPE=%s\n",
            openblas_get_corename(), want);
    fflush(stderr);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "twd: restart failed (%s); continuing with %s kernels\n", strerror(errno), openblas_get_corename());
}

int main(int argc, char **argv)
{
    static twd_config cfg;
    char err[2048];
    config_defaults(&cfg);
    int rc = config_from_args(&cfg, argc, argv, err, sizeof err);
    if (rc == 1) return 0;
    if (rc != 0) {
        fprintf(stderr, "twd: %s\n", err);
        return 2;
    }
    maybe_reexec_for_blas(&cfg, argv);
    json_object_seed(0); /* before any thread: jansson's hash seed */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    openblas_set_num_threads(cfg.blas_threads > 0 ? (int)cfg.blas_threads : (int)(cores > 0 ? cores : 1));

    /* Signals are taken synchronously by the main thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static twd_app app;
    app.cfg = &cfg;
    app.status_lock = &status_lock;
    app.started_at = now_s();
    atomic_store(&app.state, APP_LOADING);
    set_status(&app, "starting");
    metrics_init();

    http_server *srv = http_start(&app, &cfg, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "twd: %s\n", err);
        return 1;
    }
    fprintf(stderr, "twd: listening on http://%s%s%s:%d/\n", strchr(cfg.listen, ':') ? "[" : "", cfg.listen,
            strchr(cfg.listen, ':') ? "]" : "", http_port(srv));

    static loader ld;
    ld.app = &app;
    pthread_t lt;
    if (pthread_create(&lt, NULL, load_main, &ld) != 0) {
        fprintf(stderr, "twd: cannot start the loader thread\n");
        http_stop(srv);
        return 1;
    }
    int exit_code = 0;
    bool joined = false;
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            fprintf(stderr, "twd: %s received, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
        if (!joined && atomic_load(&ld.done)) {
            pthread_join(lt, NULL);
            joined = true;
            if (atomic_load(&app.state) == APP_FAILED) {
                fprintf(stderr, "twd: cannot load the model: %s\n", ld.err);
                exit_code = 1;
                break;
            }
        }
    }
    http_stop(srv);
    if (!joined) {
        /* Still loading (e.g. a download): the thread holds no lock we need;
         * leave without waiting for it. */
        fprintf(stderr, "twd: stopped while loading\n");
        return exit_code;
    }
    api_shutdown(&app);
    tokenizer_free(app.tok);
    gpt2_free(&app.model);
    fprintf(stderr, "twd: stopped\n");
    return exit_code;
}
