/* Model and tokenizer resolution: see resolve.h. */
#include "server/resolve.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fs.h"
#include "base/log.h"
#include "core/model/synth.h"
#include "core/model/torch_ckpt.h"
#include "core/tok/tokenizer.h"
#include "server/hub.h"

static void set_status(twd_app *app, const char *s) { api_app_set_status(app, "%s", s); }

static void on_fetch_progress(void *ctx, const char *s)
{
    set_status(ctx, s);
    if (isatty(2))
        fprintf(stderr, "\rtwd: %-70s", s);
    else if (strstr(s, "0%") || strncmp(s, "verifying", 9) == 0)
        fprintf(stderr, "twd: %s\n", s);
}

/* The last component of a path, without trailing slashes. */
static void base_name(const char *path, char *out, size_t n)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = '\0';
    snprintf(out, n, "%s", basename(tmp));
}

/* A model given as a path: its name is the folder's (for a checkpoint file,
 * its folder's; nanoGPT's usual out/ is named after the folder above). */
static void name_of_path(const char *path, char *name, size_t n)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    if (fs_is_regular(path)) {
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof dir, ".");
    }
    char real[4096];
    if (realpath(dir, real)) snprintf(dir, sizeof dir, "%s", real);
    base_name(dir, name, n);
    if (strcmp(name, "out") == 0 || strcmp(name, ".") == 0) {
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            char parent[256];
            base_name(dir, parent, sizeof parent);
            snprintf(name, n, "%s", parent);
        }
    }
}

/* True for "org/name": a hub id rather than a path. */
static int looks_like_hub_id(const char *s)
{
    if (!s[0] || s[0] == '/' || s[0] == '.' || s[0] == '~') return 0;
    const char *slash = strchr(s, '/');
    return slash && slash != s && slash[1] && !strchr(slash + 1, '/');
}

/* twd's own cache of a hub id, from before downloads went into the Hugging
 * Face layout: cache_dir/hub/org-name, finished when .complete is there. */
static int twd_cached(const twd_config *cfg, const char *repo, char *dir, size_t n)
{
    char name[256], mark[4200];
    snprintf(name, sizeof name, "%s", repo);
    for (char *p = name; *p; p++)
        if (*p == '/') *p = '-';
    if (fs_path(dir, n, "%s/hub/%s", cfg->cache_dir, name) != 0) return 0;
    return fs_join(mark, sizeof mark, dir, ".complete") == 0 && access(mark, F_OK) == 0;
}

/* A hub id at cfg->revision: the Hugging Face cache (where huggingface_hub
 * and twd both download), twd's older cache, then a download into the
 * Hugging Face cache when the hub answers. 1 found, 0 not, -1 error. */
static int resolve_hub_id(const char *repo, const twd_config *cfg, twd_app *app, model_source *out, char *err,
                          size_t errlen)
{
    const char *rev = cfg->revision[0] ? cfg->revision : NULL;
    char root[4096];
    if (hub_cache_root(root, sizeof root) != 0) {
        tw_set_err(err, errlen, "the Hugging Face cache folder is not known (set HF_HUB_CACHE or HOME)");
        return -1;
    }
    int rc = hub_cached_snapshot(root, repo, rev, out->path, sizeof out->path, NULL, 0);
    if (rc < 0) {
        tw_set_err(err, errlen, "%s%s%s: not a hub repository id and revision", repo, rev ? "@" : "",
                   rev ? rev : "");
        return -1;
    }
    if (rc == 1) {
        snprintf(out->origin, sizeof out->origin, "hf-cache");
        return 1;
    }
    if ((!rev || strcmp(rev, "main") == 0) && twd_cached(cfg, repo, out->path, sizeof out->path)) {
        snprintf(out->origin, sizeof out->origin, "twd-cache");
        return 1;
    }
    if (!cfg->fetch) return 0;
    set_status(app, "contacting the model hub");
    tw_log("fetching %s%s%s from %s into %s", repo, rev ? "@" : "", rev ? rev : "", cfg->hub_url, root);
    char ferr[1024];
    rc = hub_fetch(cfg->hub_url, repo, rev, root, (long)cfg->fetch_timeout, on_fetch_progress, app, out->path,
                   sizeof out->path, ferr, sizeof ferr);
    if (isatty(2)) fputc('\n', stderr);
    if (rc != 0) {
        tw_log("download of %s failed: %s", repo, ferr);
        return 0;
    }
    snprintf(out->origin, sizeof out->origin, "download");
    return 1;
}

/* twd's demo model (the trained one it ships), else, where it is missing, a
 * synthetic model generated once into cache_dir/demo-v1. */
static int resolve_demo(const twd_config *cfg, twd_app *app, model_source *out, char *err, size_t errlen)
{
    char dir[4096], probe[4200];
    if (cfg->demo_model[0])
        snprintf(dir, sizeof dir, "%s", cfg->demo_model);
    else if (config_data_path(dir, sizeof dir, DEMO_MODEL_DIR) != 0)
        dir[0] = '\0';
    if (dir[0] && fs_join(probe, sizeof probe, dir, "model.safetensors") == 0 && fs_is_regular(probe)) {
        snprintf(out->path, sizeof out->path, "%s", dir);
        snprintf(out->name, sizeof out->name, "twd-demo");
        snprintf(out->origin, sizeof out->origin, "demo");
        return 0;
    }
    if (cfg->demo_model[0]) {
        tw_set_err(err, errlen, "demo_model %s: no model.safetensors there", cfg->demo_model);
        return -1;
    }
    snprintf(out->name, sizeof out->name, "twd-demo");
    snprintf(out->origin, sizeof out->origin, "demo"); /* /model says the weights are synthetic */
    if (fs_path(out->path, sizeof out->path, "%s/demo-v1", cfg->cache_dir) != 0 ||
        fs_join(probe, sizeof probe, out->path, "config.json") != 0) {
        tw_set_err(err, errlen, "cache_dir is too long");
        return -1;
    }
    if (fs_is_regular(probe)) return 0;
    set_status(app, "generating the synthetic demo model");
    tw_log("the demo model is missing; generating a synthetic one into %s", out->path);
    if (fs_mkdir_p(out->path) != 0) {
        tw_set_err(err, errlen, "%.1500s: %s", out->path, strerror(errno));
        return -1;
    }
    synth_opts o;
    synth_opts_shape(&o, "demo");
    o.seed = 1;
    return synth_write(out->path, &o, err, errlen);
}

int resolve_model(const char *spec, const twd_config *cfg, twd_app *app, model_source *out, char *err,
                  size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!spec[0]) { /* the default: hub_repo, else the demo model */
        snprintf(out->name, sizeof out->name, "%s", cfg->hub_repo);
        int rc = resolve_hub_id(cfg->hub_repo, cfg, app, out, err, errlen);
        if (rc != 0) return rc < 0 ? -1 : 0;
        int drc = resolve_demo(cfg, app, out, err, errlen);
        if (drc == 0)
            tw_log("%s is not cached and could not be downloaded: falling back to the %sdemo model",
                   cfg->hub_repo, strstr(out->path, "demo-v1") ? "synthetic " : "");
        return drc;
    }
    snprintf(out->origin, sizeof out->origin, "configured");
    if (access(spec, F_OK) == 0) {
        /* a models--org--name folder of the Hugging Face cache, or a
         * snapshot inside one: named by its repository */
        char repo[256];
        int hr = hub_repo_of_path(spec, repo, sizeof repo, out->path, sizeof out->path, err, errlen);
        if (hr < 0) return -1;
        if (hr == 1) {
            snprintf(out->name, sizeof out->name, "%s", repo);
            snprintf(out->origin, sizeof out->origin, "hf-cache");
            return 0;
        }
        snprintf(out->path, sizeof out->path, "%s", spec);
        name_of_path(spec, out->name, sizeof out->name);
        return 0;
    }
    if (looks_like_hub_id(spec)) {
        snprintf(out->name, sizeof out->name, "%s", spec);
        int rc = resolve_hub_id(spec, cfg, app, out, err, errlen);
        if (rc == 1) return 0;
        if (rc == 0)
            tw_set_err(err, errlen, "%s: not in the Hugging Face cache or twd's, and %s", spec,
                       cfg->fetch ? "the download failed (see the log)" : "downloads are off (--no-fetch)");
        return -1;
    }
    tw_set_err(err, errlen, "%s: no such file or folder (nor a hub id org/name)", spec);
    return -1;
}

/* ---- tokenizers ---- */

static tokenizer *from_meta(const char *path, char *err, size_t errlen)
{
    tc_meta meta;
    if (meta_pkl_load(path, &meta, err, errlen) != 0) return NULL;
    tokenizer *t = tokenizer_from_strings((const char *const *)meta.itos, meta.itos_len, meta.vocab_size,
                                          path, err, errlen);
    meta_pkl_free(&meta);
    return t;
}

static int has_bpe_files(const char *dir)
{
    char a[4200], b[4200];
    return (fs_join(a, sizeof a, dir, "vocab.json") == 0 && fs_is_regular(a)) ||
           (fs_join(b, sizeof b, dir, "encoder.json") == 0 && fs_is_regular(b));
}

tokenizer *resolve_tokenizer(const gpt2_model *m, const twd_config *cfg, char *err, size_t errlen)
{
    char path[4400];
    if (m->format == GPT2_FORMAT_NANOGPT) {
        /* nanoGPT's sample.py: data/<dataset>/meta.pkl of the nanoGPT folder
         * (the one holding out/); here also beside the checkpoint */
        if (fs_join(path, sizeof path, m->dir, "meta.pkl") == 0 && fs_is_regular(path))
            return from_meta(path, err, errlen);
        if (m->dataset[0] && !strstr(m->dataset, "..") &&
            fs_path(path, sizeof path, "%s/../data/%s/meta.pkl", m->dir, m->dataset) == 0 &&
            fs_is_regular(path))
            return from_meta(path, err, errlen);
    }
    if (has_bpe_files(m->dir)) return tokenizer_load(m->dir, err, errlen);
    if (cfg->tokenizer[0]) return tokenizer_load(cfg->tokenizer, err, errlen);
    /* GPT-2's own BPE files, which twd ships with its demo model */
    if (m->vocab_rows >= 50257 && config_data_path(path, sizeof path, DEMO_MODEL_DIR) == 0 &&
        has_bpe_files(path))
        return tokenizer_load(path, err, errlen);
    tw_set_err(err, errlen,
               "%s: no tokenizer files beside it (vocab.json + merges.txt, or encoder.json + vocab.bpe, or "
               "nanoGPT's meta.pkl) and no --set tokenizer=DIR%s",
               m->dir, m->vocab_rows >= 50257 ? "" : " (and its vocabulary is not GPT-2's)");
    return NULL;
}
