#include "core/model/gpt2.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fs.h"
#include "base/mapreg.h"
#include "core/model/model_internal.h"
#include "core/model/safetensors.h"
#include "core/model/torch_ckpt.h"

#define PREFIX "transformer."

/* safetensors data is little-endian; F32 tensors are used in place. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gpt2.c assumes a little-endian host"
#endif

static char *path_join(const char *dir, const char *file)
{
    size_t a = strlen(dir), b = strlen(file);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n == 0 || p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, file, b + 1);
    return p;
}

/* ---- config.json ------------------------------------------------------- */

/* Reads integer key `key` into *out, checking 1..max. present receives
 * whether the key exists (when NULL, the key is required). */
static int cfg_int(const char *path, json_t *root, const char *key, int max, int *out, int *present,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    if (present) *present = (v != NULL);
    if (!v) {
        if (present) return 0;
        tw_set_err(err, errlen, "%s: missing key \"%s\"", path, key);
        return -1;
    }
    if (!json_is_integer(v)) {
        tw_set_err(err, errlen, "%s: \"%s\" must be an integer", path, key);
        return -1;
    }
    json_int_t x = json_integer_value(v);
    if (x < 1 || x > max) {
        tw_set_err(err, errlen, "%s: \"%s\" is %lld, must be 1..%d", path, key, (long long)x, max);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int gpt2_config_load(const char *path, gpt2_config *cfg, int *synthetic, uint64_t *seed, char *err,
                     size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    if (synthetic) *synthetic = 0;
    if (seed) *seed = 0;
    size_t len = 0;
    char why[1024];
    char *text = fs_read_file(path, GPT2_MAX_CONFIG_BYTES, &len, why, sizeof why);
    if (!text) {
        /* fs_read_file's message starts with the path */
        const char *p = strncmp(why, path, strlen(path)) == 0 ? why + strlen(path) : why;
        tw_set_err(err, errlen, "%s: cannot read%s", path, p);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) {
        tw_set_err(err, errlen, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
        return -1;
    }
    int rc = -1, have;
    if (!json_is_object(root)) {
        tw_set_err(err, errlen, "%s: not a JSON object", path);
        goto out;
    }
    if (cfg_int(path, root, "n_layer", GPT2_MAX_LAYER, &cfg->n_layer, NULL, err, errlen) ||
        cfg_int(path, root, "n_head", GPT2_MAX_HEAD, &cfg->n_head, NULL, err, errlen) ||
        cfg_int(path, root, "n_embd", GPT2_MAX_EMBD, &cfg->n_embd, NULL, err, errlen) ||
        cfg_int(path, root, "vocab_size", GPT2_MAX_VOCAB, &cfg->vocab_size, NULL, err, errlen))
        goto out;
    if (cfg_int(path, root, "n_positions", GPT2_MAX_CTX, &cfg->n_ctx, &have, err, errlen)) goto out;
    if (!have) {
        if (!json_object_get(root, "n_ctx")) {
            tw_set_err(err, errlen, "%s: missing key \"n_positions\" (or \"n_ctx\")", path);
            goto out;
        }
        if (cfg_int(path, root, "n_ctx", GPT2_MAX_CTX, &cfg->n_ctx, NULL, err, errlen)) goto out;
    }
    if (cfg->n_embd % cfg->n_head != 0) {
        tw_set_err(err, errlen, "%s: \"n_embd\" %d is not divisible by \"n_head\" %d", path, cfg->n_embd,
                   cfg->n_head);
        goto out;
    }
    json_t *ni = json_object_get(root, "n_inner");
    if (!ni || json_is_null(ni)) {
        cfg->n_inner = 4 * cfg->n_embd;
    } else if (cfg_int(path, root, "n_inner", GPT2_MAX_INNER, &cfg->n_inner, NULL, err, errlen)) {
        goto out;
    }
    json_t *eps = json_object_get(root, "layer_norm_epsilon");
    if (!eps || json_is_null(eps)) {
        cfg->ln_eps = 1e-5f;
    } else if (!json_is_number(eps)) {
        tw_set_err(err, errlen, "%s: \"layer_norm_epsilon\" must be a number", path);
        goto out;
    } else {
        double e = json_number_value(eps);
        if (!(e > 0.0 && e < 1.0)) {
            tw_set_err(err, errlen, "%s: \"layer_norm_epsilon\" is %g, must be in (0, 1)", path, e);
            goto out;
        }
        cfg->ln_eps = (float)e;
    }
    json_t *syn = json_object_get(root, "twd_synthetic");
    if (synthetic && json_is_true(syn)) {
        *synthetic = 1;
        json_t *s = json_object_get(root, "twd_seed");
        if (seed && json_is_integer(s) && json_integer_value(s) >= 0) *seed = (uint64_t)json_integer_value(s);
    }
    rc = 0;
out:
    json_decref(root);
    if (rc != 0) memset(cfg, 0, sizeof *cfg);
    return rc;
}

/* The provenance keys twd writes into config.json (twd_demo, twd_corpus,
 * twd_default_phrase); absent keys leave the fields empty. */
static void read_provenance(const char *path, gpt2_model *m)
{
    size_t len = 0;
    char why[256];
    char *text = fs_read_file(path, GPT2_MAX_CONFIG_BYTES, &len, why, sizeof why);
    json_t *root = text ? json_loadb(text, len, 0, NULL) : NULL;
    free(text);
    if (!root) return;
    m->demo = json_is_true(json_object_get(root, "twd_demo"));
    const char *corpus = json_string_value(json_object_get(root, "twd_corpus"));
    const char *phrase = json_string_value(json_object_get(root, "twd_default_phrase"));
    if (corpus) snprintf(m->corpus, sizeof m->corpus, "%s", corpus);
    if (phrase) snprintf(m->default_phrase, sizeof m->default_phrase, "%s", phrase);
    json_decref(root);
}

int gpt2_config_check(const gpt2_config *c, const char *file, char *err, size_t errlen)
{
    const struct {
        const char *name;
        int v, max;
    } f[] = {{"n_layer", c->n_layer, GPT2_MAX_LAYER}, {"n_head", c->n_head, GPT2_MAX_HEAD},
             {"n_embd", c->n_embd, GPT2_MAX_EMBD},    {"n_inner", c->n_inner, GPT2_MAX_INNER},
             {"n_ctx", c->n_ctx, GPT2_MAX_CTX},       {"vocab_size", c->vocab_size, GPT2_MAX_VOCAB}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < 1 || f[i].v > f[i].max) {
            tw_set_err(err, errlen, "%s: %s is %d, must be 1..%d", file, f[i].name, f[i].v, f[i].max);
            return -1;
        }
    if (c->n_embd % c->n_head != 0) {
        tw_set_err(err, errlen, "%s: n_embd %d is not divisible by n_head %d", file, c->n_embd, c->n_head);
        return -1;
    }
    if (!(c->ln_eps > 0.0f && c->ln_eps < 1.0f)) {
        tw_set_err(err, errlen, "%s: layer_norm_epsilon %g must be in (0, 1)", file, (double)c->ln_eps);
        return -1;
    }
    return 0;
}

int gpt2_limit_vocab(gpt2_model *m, int n)
{
    if (n < 1 || n > m->vocab_rows) return -1;
    m->cfg.vocab_size = n;
    return 0;
}

int gpt2_own(gpt2_model *m, float *buf)
{
    float **n = realloc(m->owned, (m->n_owned + 1) * sizeof *n);
    if (!n) {
        free(buf);
        return -1;
    }
    m->owned = n;
    m->owned[m->n_owned++] = buf;
    return 0;
}

/* Frees what gpt2_own took. */
static void owned_free(gpt2_model *m)
{
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
}

size_t gpt2_param_count(const gpt2_config *c)
{
    size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
    size_t block = 2 * C               /* ln_1 */
                   + C * 3 * C + 3 * C /* c_attn */
                   + C * C + C         /* attn.c_proj */
                   + 2 * C             /* ln_2 */
                   + C * I + I         /* c_fc */
                   + I * C + C;        /* mlp.c_proj */
    return (size_t)c->vocab_size * C + (size_t)c->n_ctx * C + (size_t)c->n_layer * block + 2 * C;
}

/* ---- tensors ------------------------------------------------------------ */

static void shape_str(char *out, size_t n, const size_t *shape, int ndim)
{
    size_t k = 0;
    k += (size_t)snprintf(out + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, i ? ", %zu" : "%zu", shape[i]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* Index of the first NaN or infinity of x (n), or n when every value is
 * finite: an exponent of all ones, tested on the bits so that the loop
 * vectorizes. */
static size_t first_nonfinite(const float *x, size_t n)
{
    const size_t B = 4096;
    for (size_t i0 = 0; i0 < n; i0 += B) {
        size_t e = n - i0 < B ? n - i0 : B;
        unsigned bad = 0;
        for (size_t i = 0; i < e; i++) {
            uint32_t u;
            memcpy(&u, x + i0 + i, 4);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            for (size_t i = 0; i < e; i++)
                if (!isfinite(x[i0 + i])) return i0 + i;
    }
    return n;
}

/* Refuses a tensor holding a value that is not a number: every analysis
 * would silently answer garbage from it. */
int gpt2_check_finite(const float *x, size_t n, const char *file, const char *tensor, char *err,
                      size_t errlen)
{
    size_t i = first_nonfinite(x, n);
    if (i == n) return 0;
    tw_set_err(err, errlen, "%s: tensor '%s': element %zu is %s; the checkpoint is corrupt", file, tensor, i,
               isnan(x[i]) ? "NaN"
               : x[i] > 0  ? "+Inf"
                           : "-Inf");
    return -1;
}

static int check_finite(const st_file *f, const st_tensor *t, const float *x, char *err, size_t errlen)
{
    return gpt2_check_finite(x, t->numel, f->path, t->name, err, errlen);
}

/* The same on F16 or BF16 values in place (an exponent of all ones). */
static int check_finite_half(const st_file *f, const st_tensor *t, const void *src, char *err, size_t errlen)
{
    const uint16_t mask = t->dtype == ST_F16 ? 0x7c00u : 0x7f80u;
    const unsigned char *p = src;
    const size_t B = 4096;
    size_t i = 0;
    for (size_t i0 = 0; i0 < t->numel; i0 += B) { /* blocks tested without a branch: the loop vectorizes */
        size_t e = t->numel - i0 < B ? t->numel - i0 : B;
        unsigned bad = 0;
        for (size_t j = 0; j < e; j++) {
            uint16_t h;
            memcpy(&h, p + 2 * (i0 + j), 2); /* little-endian file and host (safetensors.h) */
            bad |= (h & mask) == mask;
        }
        if (bad) {
            i = i0;
            break;
        }
        i = t->numel;
    }
    for (; i < t->numel; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        if ((h & mask) != mask) continue;
        float v;
        if (t->dtype == ST_F16)
            st_f16_to_f32_n(&v, p + 2 * i, 1);
        else
            st_bf16_to_f32_n(&v, p + 2 * i, 1);
        tw_set_err(err, errlen, "%s: tensor '%s': element %zu is %s; the checkpoint is corrupt", f->path,
                   t->name, i,
                   isnan(v) ? "NaN"
                   : v > 0  ? "+Inf"
                            : "-Inf");
        return -1;
    }
    return 0;
}

/* Finds `name` or PREFIX`name`, checks dtype and shape, and stores an F32
 * pointer for it in *dst (in place or converted into m->owned). A block
 * matrix (lazy_block >= 0, matrix lazy_which) in F16/BF16 is left in the
 * mapping instead (core/model/blocks.c) and *dst set to NULL. */
static int bind_tensor_as(gpt2_model *m, const st_file *f, const char *name, const size_t *shape, int ndim,
                          const float **dst, int lazy_block, int lazy_which, char *err, size_t errlen)
{
    char pname[256];
    snprintf(pname, sizeof pname, PREFIX "%s", name);
    const st_tensor *a = st_find(f, name), *b = st_find(f, pname);
    if (a && b) {
        tw_set_err(err, errlen, "%s: tensor '%s': present both with and without the '" PREFIX "' prefix",
                   f->path, name);
        return -1;
    }
    const st_tensor *t = a ? a : b;
    if (!t) {
        tw_set_err(err, errlen, "%s: tensor '%s': missing (looked for '%s' and '%s')", f->path, name, name,
                   pname);
        return -1;
    }
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        tw_set_err(err, errlen, "%s: tensor '%s': dtype %s not supported (F32, F16 or BF16)", f->path,
                   t->name, st_dtype_name(t->dtype));
        return -1;
    }
    int same = (t->ndim == ndim);
    for (int i = 0; same && i < ndim; i++) same = (t->shape[i] == shape[i]);
    if (!same) {
        char got[160], want[160];
        shape_str(got, sizeof got, t->shape, t->ndim);
        shape_str(want, sizeof want, shape, ndim);
        tw_set_err(err, errlen, "%s: tensor '%s': shape %s, expected %s", f->path, t->name, got, want);
        return -1;
    }
    const void *src = st_data(f, t);
    if (lazy_block >= 0 && t->dtype != ST_F32) {
        if (check_finite_half(f, t, src, err, errlen)) return -1;
        if (gpt2_lazy_add(m, lazy_block, lazy_which, src, t->dtype, t->numel)) {
            tw_set_err(err, errlen, "%s: tensor '%s': out of memory", f->path, t->name);
            return -1;
        }
        *dst = NULL;
        return 0;
    }
    if (t->dtype == ST_F32 && ((uintptr_t)src % sizeof(float)) == 0) {
        if (check_finite(f, t, src, err, errlen)) return -1;
        *dst = src;
        return 0;
    }
    float *buf = malloc(t->numel ? t->numel * sizeof(float) : 1);
    if (!buf) {
        tw_set_err(err, errlen, "%s: tensor '%s': out of memory converting %zu values", f->path, t->name,
                   t->numel);
        return -1;
    }
    if (t->dtype == ST_F32)
        memcpy(buf, src, t->nbytes); /* unaligned F32 */
    else if (t->dtype == ST_F16)
        st_f16_to_f32_n(buf, src, t->numel);
    else
        st_bf16_to_f32_n(buf, src, t->numel);
    if (gpt2_own(m, buf)) {
        tw_set_err(err, errlen, "%s: tensor '%s': out of memory", f->path, t->name);
        return -1;
    }
    *dst = buf;
    return check_finite(f, t, buf, err, errlen);
}

static int bind_tensor(gpt2_model *m, const st_file *f, const char *name, const size_t *shape, int ndim,
                       const float **dst, char *err, size_t errlen)
{
    return bind_tensor_as(m, f, name, shape, ndim, dst, -1, 0, err, errlen);
}

/* Binds every tensor of the model; shapes from m->cfg. */
static int bind_all(gpt2_model *m, const st_file *f, int lazy, char *err, size_t errlen)
{
    const size_t C = (size_t)m->cfg.n_embd, I = (size_t)m->cfg.n_inner;
    const size_t V = (size_t)m->cfg.vocab_size, T = (size_t)m->cfg.n_ctx;
    const size_t s_vc[2] = {V, C}, s_tc[2] = {T, C}, s_c[1] = {C};
    const size_t s_c3c[2] = {C, 3 * C}, s_3c[1] = {3 * C}, s_cc[2] = {C, C};
    const size_t s_ci[2] = {C, I}, s_i[1] = {I}, s_ic[2] = {I, C};
    gpt2_params *p = &m->p;

    if (bind_tensor(m, f, "wte.weight", s_vc, 2, &p->wte, err, errlen) ||
        bind_tensor(m, f, "wpe.weight", s_tc, 2, &p->wpe, err, errlen))
        return -1;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        gpt2_block *h = &p->h[l];
        const float *attn_w, *attn_proj_w, *fc_w, *fc_proj_w;
        /* each sub-module's NAME.weight, then NAME.bias (1-D) */
        const struct {
            const char *name;
            const size_t *w_shape, *b_shape;
            int w_ndim;
            const float **w, **b;
            int lazy; /* the block matrix its weight is (0..3), or -1 */
        } want[] = {
            {"ln_1", s_c, s_c, 1, &h->ln_1_w, &h->ln_1_b, -1},
            {"attn.c_attn", s_c3c, s_3c, 2, &attn_w, &h->attn_b, 0},
            {"attn.c_proj", s_cc, s_c, 2, &attn_proj_w, &h->attn_proj_b, 1},
            {"ln_2", s_c, s_c, 1, &h->ln_2_w, &h->ln_2_b, -1},
            {"mlp.c_fc", s_ci, s_i, 2, &fc_w, &h->fc_b, 2},
            {"mlp.c_proj", s_ic, s_c, 2, &fc_proj_w, &h->fc_proj_b, 3},
        };
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            char w[96], bias[96];
            snprintf(w, sizeof w, "h.%d.%s.weight", l, want[k].name);
            snprintf(bias, sizeof bias, "h.%d.%s.bias", l, want[k].name);
            int lazy_block = lazy && want[k].lazy >= 0 ? l : -1;
            if (bind_tensor_as(m, f, w, want[k].w_shape, want[k].w_ndim, want[k].w, lazy_block, want[k].lazy,
                               err, errlen) ||
                bind_tensor(m, f, bias, want[k].b_shape, 1, want[k].b, err, errlen))
                return -1;
        }
        /* the Hugging Face layout: Conv1D weights are (in, out) row-major */
        h->attn_w = gpt2_mat_rowmajor(attn_w, 3 * C);
        h->attn_proj_w = gpt2_mat_rowmajor(attn_proj_w, C);
        h->fc_w = gpt2_mat_rowmajor(fc_w, I);
        h->fc_proj_w = gpt2_mat_rowmajor(fc_proj_w, C);
    }
    if (bind_tensor(m, f, "ln_f.weight", s_c, 1, &p->ln_f_w, err, errlen) ||
        bind_tensor(m, f, "ln_f.bias", s_c, 1, &p->ln_f_b, err, errlen))
        return -1;
    return 0;
}

static int safetensors_load(const char *dir, gpt2_model *m, const gpt2_load_options *o, char *err,
                            size_t errlen)
{
    char *cfg_path = NULL, *st_path = NULL;
    st_file f;
    memset(&f, 0, sizeof f);
    int rc = -1;

    m->format = GPT2_FORMAT_SAFETENSORS;
    m->has_bias = 1;
    cfg_path = path_join(dir, "config.json");
    st_path = path_join(dir, "model.safetensors");
    m->file = st_path ? strdup(st_path) : NULL;
    if (!m->file || !cfg_path || !st_path) {
        tw_set_err(err, errlen, "%s: out of memory", dir);
        goto out;
    }
    if (gpt2_config_load(cfg_path, &m->cfg, &m->synthetic, &m->synthetic_seed, err, errlen)) goto out;
    read_provenance(cfg_path, m);
    if (st_open(st_path, &f, err, errlen)) goto out;

    m->p.h = calloc((size_t)m->cfg.n_layer, sizeof *m->p.h);
    if (!m->p.h) {
        tw_set_err(err, errlen, "%s: out of memory", st_path);
        goto out;
    }
    if (bind_all(m, &f, o->lazy_blocks, err, errlen)) goto out;
    if (m->lazy) gpt2_set_block_budget(m, o->block_budget);

    const st_tensor *wte = st_find(&f, "wte.weight");
    if (!wte) wte = st_find(&f, PREFIX "wte.weight");
    snprintf(m->dtype, sizeof m->dtype, "%s", st_dtype_name(wte->dtype));
    m->n_params = gpt2_param_count(&m->cfg);
    m->vocab_rows = m->cfg.vocab_size;
    m->file_size = f.size;
    st_release_map(&f, &m->map, &m->map_len);
    /* Ask the kernel to start reading the file in the background; the
     * analyses will touch most of it. Advisory: failure is harmless. */
    (void)madvise(m->map, m->map_len, MADV_WILLNEED);
    rc = 0;
out:
    st_close(&f);
    free(cfg_path);
    free(st_path);
    return rc;
}

/* "PK\3\4": a ZIP archive, as torch.save writes. */
static int is_zip(const char *path)
{
    struct stat st;
    char why[256];
    int fd = fs_open_regular(path, &st, why, sizeof why);
    if (fd < 0) return 0;
    unsigned char b[4] = {0};
    ssize_t n = read(fd, b, 4);
    close(fd);
    return n == 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4;
}

int gpt2_load(const char *path, gpt2_model *m, char *err, size_t errlen)
{
    return gpt2_load_opts(path, m, &(gpt2_load_options){0}, err, errlen);
}

int gpt2_load_opts(const char *path, gpt2_model *m, const gpt2_load_options *o, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    if (err && errlen) err[0] = '\0';
    char dir[4096], probe[4200];
    int rc = -1;
    if (fs_is_regular(path)) {
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) : 1;
        snprintf(dir, sizeof dir, "%.*s", (int)dl, slash ? path : ".");
        if (dl == 0) snprintf(dir, sizeof dir, "/");
        m->dir = strdup(dir);
        if (!m->dir)
            rc = -1;
        else if (is_zip(path))
            rc = nanogpt_load(path, m, err, errlen);
        else if (strcmp(slash ? slash + 1 : path, "model.safetensors") == 0)
            rc = safetensors_load(dir, m, o, err, errlen);
        else
            tw_set_err(err, errlen,
                       "%s: neither a nanoGPT checkpoint (a torch ZIP archive) nor model.safetensors", path);
    } else {
        /* a folder: a nanoGPT ckpt.pt when it holds one and no model.safetensors,
         * else a Hugging Face snapshot (whose loader names what is missing) */
        snprintf(dir, sizeof dir, "%s", path);
        m->dir = strdup(dir);
        char st[4200];
        int have_st = fs_join(st, sizeof st, dir, "model.safetensors") == 0 && fs_is_regular(st);
        /* ckpt.pt beside, or in out/ of a nanoGPT folder */
        int nano =
            !have_st && ((fs_join(probe, sizeof probe, dir, "ckpt.pt") == 0 && fs_is_regular(probe)) ||
                         (fs_join(probe, sizeof probe, dir, "out/ckpt.pt") == 0 && fs_is_regular(probe)));
        if (nano && strstr(probe + strlen(dir), "out/ckpt.pt")) {
            free(m->dir);
            m->dir = NULL;
            snprintf(dir, sizeof dir, "%.*s", (int)(strlen(probe) - strlen("/ckpt.pt")), probe);
            m->dir = strdup(dir);
        }
        rc = !m->dir ? -1
             : nano  ? nanogpt_load(probe, m, err, errlen)
                     : safetensors_load(dir, m, o, err, errlen);
    }
    if (rc == 0 && !m->dir) rc = -1;
    char why[256];
    if (rc == 0 && gpt2_file_changed(m, why, sizeof why)) {
        /* written to while it was being read: what was checked is not what is there */
        tw_set_err(err, errlen, "%s: changed while it was being loaded (%s)", m->file, why);
        rc = -1;
    }
    if (rc != 0) {
        if (err && errlen && !err[0]) tw_set_err(err, errlen, "%s: out of memory", path);
        gpt2_free(m);
    }
    return rc;
}

const void *gpt2_mapping(const gpt2_model *m)
{
    if (m->map) return m->map;
    return m->ckpt ? ((const torch_ckpt *)m->ckpt)->map : NULL;
}

/* Sizes for messages: "523.7 MB", "12 bytes". */
static void size_text(char *out, size_t n, uint64_t b)
{
    if (b < 10000)
        snprintf(out, n, "%llu bytes", (unsigned long long)b);
    else
        snprintf(out, n, "%.1f MB", (double)b / 1e6);
}

int gpt2_file_changed(const gpt2_model *m, char *why, size_t n)
{
    const void *map = gpt2_mapping(m);
    tw_file_id then, now;
    int faulted = 0;
    if (!map || !m->file || tw_map_info(map, &then, &faulted) != 0) return 0; /* not tracked */
    struct stat st;
    char a[32], b[32];
    const char *fault = faulted ? "; a mapped page could not be read" : "";
    if (stat(m->file, &st) != 0) {
        snprintf(why, n, "%s%s", errno == ENOENT ? "removed" : strerror(errno), fault);
        return 1;
    }
    tw_file_id_of(&st, &now);
    if (tw_file_id_equal(&then, &now)) {
        if (faulted) snprintf(why, n, "a mapped page could not be read");
        return faulted;
    }
    size_text(a, sizeof a, then.size);
    size_text(b, sizeof b, now.size);
    if (now.dev != then.dev || now.ino != then.ino)
        snprintf(why, n, "replaced by another file of %s%s", b, fault);
    else if (now.size < then.size)
        snprintf(why, n, "truncated from %s to %s%s", a, b, fault);
    else if (now.size > then.size)
        snprintf(why, n, "grown from %s to %s%s", a, b, fault);
    else
        snprintf(why, n, "rewritten in place%s", fault);
    return 1;
}

void gpt2_free(gpt2_model *m)
{
    if (!m) return;
    fs_unmap_file(m->map, m->map_len);
    if (m->ckpt) {
        torch_ckpt_close(m->ckpt);
        free(m->ckpt);
    }
    free(m->file);
    owned_free(m);
    gpt2_lazy_free(m);
    free(m->p.h);
    free(m->dir);
    memset(m, 0, sizeof *m);
}
