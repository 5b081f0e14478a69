/* Loading models, and reloading them when their checkpoint changes: see
 * reload.h. */
#include "server/reload.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mapreg.h"
#include "server/resolve.h"
#include "server/waker.h"

int model_load(twd_app *app, const char *path, const twd_config *cfg, char *err, size_t errlen)
{
    double t0 = tw_now();
    /* F16/BF16 block matrices converted per block, within f16_cache_mb */
    const gpt2_load_options lo = {.lazy_blocks = 1, .block_budget = (size_t)cfg->f16_cache_mb << 20};
    if (gpt2_load_opts(path, &app->model, &lo, err, errlen) != 0) return -1;
    if (!(app->tok = resolve_tokenizer(&app->model, cfg, err, errlen))) goto fail;
    int tv = tokenizer_vocab_size(app->tok);
    if (tv > app->model.vocab_rows) {
        snprintf(err, errlen, "%.1500s: the tokenizer has %d ids but wte has only %d rows", app->model.file,
                 tv, app->model.vocab_rows);
        goto fail;
    }
    gpt2_limit_vocab(&app->model, tv); /* rows beyond the tokenizer are padding, never tokens */
    app->load_seconds = tw_now() - t0;
    app->synthetic = app->model.synthetic != 0;
    app->synthetic_seed = app->model.synthetic_seed;
    if (api_init(app, err, errlen) != 0) goto fail;
    return 0;
fail:
    model_unload(app);
    return -1;
}

void model_unload(twd_app *app)
{
    api_shutdown(app);
    tokenizer_free(app->tok);
    app->tok = NULL;
    gpt2_free(&app->model);
}

/* ---- the watcher ---- */

typedef struct {
    bool exists;
    tw_file_id id;
} file_sig;

typedef struct {
    twd_app *app;
    char path[4096]; /* what to load */
    char file[4096]; /* the checkpoint file to watch */
    bool loaded;     /* app->model holds a model (READY, or RELOADING before the drain) */
    file_sig seen;   /* the file as last looked at */
    double since;    /* when it last changed */
    bool tried;      /* a reload of `tried_sig` was attempted and failed */
    file_sig tried_sig;
    double drain_since; /* when the drain began to wait, 0: not waiting */
    bool drain_logged;
} watched;

struct reloader {
    const twd_config *cfg;
    watched *w;
    size_t n;
    int ino;    /* inotify descriptor, or -1 (then polling only) */
    waker wake; /* reloader_stop wakes the watcher through it */
};

static file_sig sig_of(const char *file)
{
    file_sig s;
    memset(&s, 0, sizeof s);
    struct stat st;
    if (stat(file, &st) == 0) {
        s.exists = true;
        tw_file_id_of(&st, &s.id);
    }
    return s;
}

static bool sig_equal(const file_sig *a, const file_sig *b)
{
    return a->exists == b->exists && (!a->exists || tw_file_id_equal(&a->id, &b->id));
}

/* inotify only wakes the watcher; what changed is decided by stat(). */
static void watch_file(reloader *r, const char *file)
{
    if (r->ino < 0) return;
    (void)inotify_add_watch(r->ino, file,
                            IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    (void)inotify_add_watch(r->ino, dir,
                            IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE);
}

static void try_reload(reloader *r, watched *w)
{
    twd_app *app = w->app;
    char err[2048];
    tw_log("model %s: loading %s again", app->model_name, w->path);
    if (model_load(app, w->path, r->cfg, err, sizeof err) != 0) {
        w->tried = true;
        w->tried_sig = w->seen;
        api_app_set_status(app, "the checkpoint changed and could not be loaded again: %s", err);
        atomic_store(&app->state, APP_FAILED);
        tw_log("model %s: cannot load it again: %s; it answers 503 until the file changes again",
               app->model_name, err);
        return;
    }
    w->loaded = true;
    w->tried = false;
    snprintf(w->file, sizeof w->file, "%s", app->model.file);
    watch_file(r, w->file);
    atomic_store(&app->changed, 0);
    api_app_set_status(app, "ready");
    atomic_store(&app->state, APP_READY);
    tw_log("model %s loaded again in %.3f s from %s", app->model_name, app->load_seconds, w->file);
}

/* One look at one model. */
static void look(reloader *r, watched *w, double now)
{
    twd_app *app = w->app;
    int st = atomic_load(&app->state);
    if (st == APP_READY) {
        char why[256];
        /* the watcher is the only thread that frees the model: it may read it */
        if (gpt2_file_changed(&app->model, why, sizeof why)) api_app_mark_changed(app, why);
        st = atomic_load(&app->state);
    }
    if (st != APP_RELOADING && st != APP_FAILED) return;
    file_sig cur = sig_of(w->file);
    if (!sig_equal(&cur, &w->seen)) {
        w->seen = cur;
        w->since = now;
        if (cur.exists) watch_file(r, w->file); /* perhaps a new file by that name */
    }
    if (w->loaded) {
        /* drained: nothing reads the old model any more */
        long refs = atomic_load(&app->refs);
        if (refs > 0) {
            if (w->drain_since == 0) w->drain_since = now;
            if (!w->drain_logged && now - w->drain_since > 5) {
                tw_log("model %s: waiting for %ld request(s) that read the old checkpoint", app->model_name,
                       refs);
                w->drain_logged = true;
            }
            return;
        }
        w->drain_since = 0;
        w->drain_logged = false;
        model_unload(app);
        w->loaded = false;
        tw_log("model %s: the old checkpoint is unmapped; its cached answers, block cache and layouts are "
               "dropped",
               app->model_name);
    }
    if (!cur.exists || now - w->since < (double)r->cfg->reload_wait) return;
    if (w->tried && sig_equal(&cur, &w->tried_sig)) return; /* failed on this very file: wait for a change */
    try_reload(r, w);
}

static void *watch_main(void *arg)
{
    reloader *r = arg;
    for (;;) {
        struct pollfd p[2] = {{.fd = r->wake.fd[0], .events = POLLIN}, {.fd = r->ino, .events = POLLIN}};
        int n = poll(p, r->ino >= 0 ? 2 : 1, 250);
        if (n > 0 && (p[0].revents & POLLIN)) return NULL;
        if (n > 0 && r->ino >= 0 && (p[1].revents & POLLIN)) {
            char buf[8192];
            while (read(r->ino, buf, sizeof buf) > 0) {} /* the events only wake us */
        }
        double now = tw_now();
        for (size_t i = 0; i < r->n; i++) look(r, &r->w[i], now);
    }
}

reloader *reloader_start(api_service *svc, const char (*paths)[4096], const twd_config *cfg, char *err,
                         size_t errlen)
{
    reloader *r = calloc(1, sizeof *r);
    if (r) r->w = calloc(svc->n_models, sizeof *r->w);
    if (!r || !r->w) {
        free(r);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = cfg;
    r->n = svc->n_models;
    r->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (r->ino < 0)
        tw_log("warning: inotify is not available (%s); checkpoints are looked at 4 times a second",
               strerror(errno));
    for (size_t i = 0; i < r->n; i++) {
        watched *w = &r->w[i];
        w->app = svc->models[i];
        w->loaded = true;
        snprintf(w->path, sizeof w->path, "%s", paths[i]);
        snprintf(w->file, sizeof w->file, "%s", w->app->model.file ? w->app->model.file : paths[i]);
        w->seen = sig_of(w->file);
        watch_file(r, w->file);
    }
    if (waker_open(&r->wake) != 0 || waker_start(&r->wake, watch_main, r) != 0) {
        snprintf(err, errlen, "cannot start the checkpoint watcher: %s", strerror(errno));
        reloader_stop(r);
        return NULL;
    }
    return r;
}

void reloader_stop(reloader *r)
{
    if (!r) return;
    waker_stop(&r->wake);
    if (r->ino >= 0) close(r->ino);
    free(r->w);
    free(r);
}
