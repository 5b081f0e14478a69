#include "core/model/synth.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/hash.h"
#include "base/rng.h"
#include "base/strbuf.h"
#include "core/model/gpt2.h"
#include "core/model/safetensors.h"
#include "core/tok/synth_vocab.h"
#include "core/tok/tokenizer.h"

#define PREFIX "transformer."
#define CHUNK  ((size_t)1 << 16) /* values generated per step */

/* ---- named shapes ------------------------------------------------------- */

static const struct {
    const char *name, *alias;
    int L, H, C, V, T;
} shapes[] = {
    {"tiny", NULL, 2, 2, 32, 512, 64},
    {"demo", NULL, 12, 12, 192, 4096, 256},
    {"124M", "gpt2", 12, 12, 768, 50257, 1024},
    {"medium", "gpt2-medium", 24, 16, 1024, 50257, 1024},
    {"large", "gpt2-large", 36, 20, 1280, 50257, 1024},
    {"xl", "gpt2-xl", 48, 25, 1600, 50257, 1024},
};

const char *synth_shape_names(void)
{
    return "tiny, demo, 124M (gpt2), medium (gpt2-medium), large (gpt2-large), "
           "xl (gpt2-xl)";
}

int synth_opts_shape(synth_opts *o, const char *shape)
{
    memset(o, 0, sizeof *o);
    o->dtype = SYNTH_F32;
    o->attn_bias = 1;
    o->tokenizer = 1;
    size_t n = sizeof shapes / sizeof shapes[0], k = 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(shape, shapes[i].name) == 0 || (shapes[i].alias && strcmp(shape, shapes[i].alias) == 0)) {
            k = i;
            found = 1;
            break;
        }
    }
    o->n_layer = shapes[k].L;
    o->n_head = shapes[k].H;
    o->n_embd = shapes[k].C;
    o->vocab_size = shapes[k].V;
    o->n_ctx = shapes[k].T;
    return found ? 0 : -1;
}

static int check_range(const char *what, int v, int max, char *err, size_t errlen)
{
    if (v < 1 || v > max) {
        tw_set_err(err, errlen, "%s is %d, must be 1..%d", what, v, max);
        return -1;
    }
    return 0;
}

int synth_check(const synth_opts *o, char *err, size_t errlen)
{
    if (check_range("n_layer", o->n_layer, GPT2_MAX_LAYER, err, errlen) ||
        check_range("n_head", o->n_head, GPT2_MAX_HEAD, err, errlen) ||
        check_range("n_embd", o->n_embd, GPT2_MAX_EMBD, err, errlen) ||
        check_range("n_ctx", o->n_ctx, GPT2_MAX_CTX, err, errlen) ||
        check_range("vocab_size", o->vocab_size, GPT2_MAX_VOCAB, err, errlen))
        return -1;
    if (o->n_embd % o->n_head != 0) {
        tw_set_err(err, errlen, "n_embd %d is not divisible by n_head %d", o->n_embd, o->n_head);
        return -1;
    }
    if (o->seed > (uint64_t)INT64_MAX) {
        tw_set_err(err, errlen, "seed must be 0..%lld", (long long)INT64_MAX);
        return -1;
    }
    if (o->dtype != SYNTH_F32 && o->dtype != SYNTH_F16 && o->dtype != SYNTH_BF16) {
        tw_set_err(err, errlen, "unknown dtype %d", (int)o->dtype);
        return -1;
    }
    if (o->tokenizer && o->vocab_from && o->vocab_size != 50257) {
        tw_set_err(err, errlen,
                   "copying a real GPT-2 vocabulary needs vocab_size 50257, "
                   "not %d",
                   o->vocab_size);
        return -1;
    }
    if (o->tokenizer && !o->vocab_from && o->vocab_size < 257) {
        tw_set_err(err, errlen, "a synthetic tokenizer needs vocab_size >= 257, not %d", o->vocab_size);
        return -1;
    }
    if (o->attn_bias && o->n_ctx > 16384) {
        tw_set_err(err, errlen,
                   "n_ctx %d is too large for attn.bias buffers "
                   "(n_ctx^2 values per layer); use at most 16384 or no buffers",
                   o->n_ctx);
        return -1;
    }
    return 0;
}

/* ---- random numbers ------------------------------------------------------ */

/* Seeds the stream of one tensor from the global seed and its canonical
 * name (FNV-1a), so values do not depend on the order tensors are written. */
static void rng_seed(tw_rng *r, uint64_t seed, const char *name)
{
    tw_rng_seed(r, tw_fnv1a_str(name, TW_FNV1A_INIT) ^ (seed * 0x9e3779b97f4a7c15ull));
}

/* ---- tensor list -------------------------------------------------------- */

typedef enum {
    K_NORMAL, /* mean + std * N(0,1) */
    K_WTE,    /* structured embeddings, see synth.h */
    K_MASK,   /* lower-triangular ones (T, T) per layer */
    K_CONST,  /* every element = mean */
} kind;

typedef struct {
    char name[64]; /* canonical name, no prefix */
    kind k;
    double mean, std;
    int ndim;
    size_t shape[4];
    size_t numel;
} tdesc;

static void td_set(tdesc *t, const char *name, kind k, double mean, double std, int ndim, size_t d0,
                   size_t d1, size_t d2, size_t d3)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->k = k;
    t->mean = mean;
    t->std = std;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->shape[3] = d3;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) t->numel *= t->shape[i];
}

/* Fills ts (capacity 4 + 14 L) with every tensor; returns the count. */
static size_t build_list(const synth_opts *o, tdesc *ts)
{
    size_t C = (size_t)o->n_embd, V = (size_t)o->vocab_size, T = (size_t)o->n_ctx;
    size_t I = 4 * C;
    double pstd = 0.02 / sqrt(2.0 * o->n_layer);
    size_t n = 0;
    td_set(&ts[n++], "wte.weight", K_WTE, 0, 0.02, 2, V, C, 0, 0);
    td_set(&ts[n++], "wpe.weight", K_NORMAL, 0, 0.02, 2, T, C, 0, 0);
    for (int l = 0; l < o->n_layer; l++) {
        char nm[64];
#define T_ADD(suffix, k, mean, std, nd, a, b, c, d)                                                          \
    do {                                                                                                     \
        snprintf(nm, sizeof nm, "h.%d.%s", l, suffix);                                                       \
        td_set(&ts[n++], nm, k, mean, std, nd, a, b, c, d);                                                  \
    } while (0)
        T_ADD("ln_1.weight", K_NORMAL, 1.0, 0.05, 1, C, 0, 0, 0);
        T_ADD("ln_1.bias", K_NORMAL, 0.0, 0.02, 1, C, 0, 0, 0);
        T_ADD("attn.c_attn.weight", K_NORMAL, 0.0, 0.02, 2, C, 3 * C, 0, 0);
        T_ADD("attn.c_attn.bias", K_NORMAL, 0.0, 0.02, 1, 3 * C, 0, 0, 0);
        T_ADD("attn.c_proj.weight", K_NORMAL, 0.0, pstd, 2, C, C, 0, 0);
        T_ADD("attn.c_proj.bias", K_NORMAL, 0.0, 0.02, 1, C, 0, 0, 0);
        T_ADD("ln_2.weight", K_NORMAL, 1.0, 0.05, 1, C, 0, 0, 0);
        T_ADD("ln_2.bias", K_NORMAL, 0.0, 0.02, 1, C, 0, 0, 0);
        T_ADD("mlp.c_fc.weight", K_NORMAL, 0.0, 0.02, 2, C, I, 0, 0);
        T_ADD("mlp.c_fc.bias", K_NORMAL, 0.0, 0.02, 1, I, 0, 0, 0);
        T_ADD("mlp.c_proj.weight", K_NORMAL, 0.0, pstd, 2, I, C, 0, 0);
        T_ADD("mlp.c_proj.bias", K_NORMAL, 0.0, 0.02, 1, C, 0, 0, 0);
        if (o->attn_bias) {
            T_ADD("attn.bias", K_MASK, 0.0, 0.0, 4, 1, 1, T, T);
            T_ADD("attn.masked_bias", K_CONST, -1e4, 0.0, 0, 0, 0, 0, 0);
        }
#undef T_ADD
    }
    td_set(&ts[n++], "ln_f.weight", K_NORMAL, 1.0, 0.05, 1, C, 0, 0, 0);
    td_set(&ts[n++], "ln_f.bias", K_NORMAL, 0.0, 0.02, 1, C, 0, 0, 0);
    return n;
}

static int cmp_tdesc(const void *a, const void *b)
{
    return strcmp(((const tdesc *)a)->name, ((const tdesc *)b)->name);
}

/* Generator of one tensor's values, produced in order in chunks. */
typedef struct {
    const tdesc *t;
    tw_rng r;
    size_t pos;  /* next element index */
    float *mu;   /* (C) wte mean direction, K_WTE only */
    size_t cols; /* row length for K_WTE / K_MASK */
    size_t rows;
} gen;

static int gen_init(gen *g, const synth_opts *o, const tdesc *t)
{
    memset(g, 0, sizeof *g);
    g->t = t;
    rng_seed(&g->r, o->seed, t->name);
    if (t->k == K_WTE) {
        g->rows = t->shape[0];
        g->cols = t->shape[1];
        g->mu = malloc(g->cols * sizeof *g->mu);
        if (!g->mu) return -1;
        tw_rng mr;
        rng_seed(&mr, o->seed, "wte.weight#mean");
        for (size_t j = 0; j < g->cols; j++) g->mu[j] = (float)(0.01 * tw_rng_normal(&mr));
    } else if (t->k == K_MASK) {
        g->rows = t->shape[2];
        g->cols = t->shape[3];
    }
    return 0;
}

static void gen_free(gen *g)
{
    free(g->mu);
    g->mu = NULL;
}

/* Produces the next n values (n <= remaining) into out. */
static void gen_next(gen *g, float *out, size_t n)
{
    const tdesc *t = g->t;
    for (size_t k = 0; k < n; k++) {
        size_t idx = g->pos + k;
        double v;
        switch (t->k) {
        case K_WTE: {
            size_t i = idx / g->cols, j = idx % g->cols;
            double r = g->rows > 1 ? 1.5 - (double)i / (double)(g->rows - 1) : 1.0;
            v = g->mu[j] + r * t->std * tw_rng_normal(&g->r);
            break;
        }
        case K_MASK: {
            size_t i = (idx / g->cols) % g->rows, j = idx % g->cols;
            v = (j <= i) ? 1.0 : 0.0;
            break;
        }
        case K_CONST: v = t->mean; break;
        default: v = t->mean + t->std * tw_rng_normal(&g->r); break;
        }
        out[k] = (float)v;
    }
    g->pos += n;
}

int synth_tensor_values(const synth_opts *o, const char *name, float *out, size_t n)
{
    size_t cap = 4 + 14 * (size_t)o->n_layer;
    tdesc *ts = malloc(cap * sizeof *ts);
    if (!ts) return -1;
    size_t nt = build_list(o, ts);
    int rc = -1;
    for (size_t i = 0; i < nt; i++) {
        if (strcmp(ts[i].name, name) != 0) continue;
        if (n > ts[i].numel) break;
        gen g;
        if (gen_init(&g, o, &ts[i]) == 0) {
            gen_next(&g, out, n);
            rc = 0;
        }
        gen_free(&g);
        break;
    }
    free(ts);
    return rc;
}

/* ---- files -------------------------------------------------------------- */

static const char *dtype_st_name(synth_dtype d)
{
    return d == SYNTH_F16 ? "F16" : d == SYNTH_BF16 ? "BF16" : "F32";
}

static size_t dtype_bytes(synth_dtype d) { return d == SYNTH_F32 ? 4 : 2; }

static int write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n ? 0 : -1; }

/* Streams model.safetensors to `path`. */
static int write_safetensors(const char *path, const synth_opts *o, char *err, size_t errlen)
{
    size_t cap = 4 + 14 * (size_t)o->n_layer;
    tdesc *ts = malloc(cap * sizeof *ts);
    float *vals = malloc(CHUNK * sizeof *vals);
    uint16_t *half = malloc(CHUNK * sizeof *half);
    strbuf h = STRBUF_INIT;
    FILE *fp = NULL;
    int rc = -1;
    if (!ts || !vals || !half) {
        tw_set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t nt = build_list(o, ts);
    qsort(ts, nt, sizeof *ts, cmp_tdesc); /* the safetensors library's order */

    const char *pre = o->prefix ? PREFIX : "";
    size_t es = dtype_bytes(o->dtype), off = 0;
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < nt; i++) {
        size_t nb = ts[i].numel * es;
        sb_printf(&h, ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":[", pre, ts[i].name, dtype_st_name(o->dtype));
        for (int d = 0; d < ts[i].ndim; d++) sb_printf(&h, d ? ",%zu" : "%zu", ts[i].shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    sb_putc(&h, '}');
    while (!h.failed && h.len % 8 != 0) sb_putc(&h, ' ');
    if (h.failed) {
        tw_set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }

    fp = fopen(path, "wb");
    if (!fp) {
        tw_set_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        goto out;
    }
    setvbuf(fp, NULL, _IOFBF, (size_t)1 << 20);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    if (write_all(fp, len8, 8) || write_all(fp, h.s, h.len)) goto werr;

    for (size_t i = 0; i < nt; i++) {
        gen g;
        if (gen_init(&g, o, &ts[i]) != 0) {
            tw_set_err(err, errlen, "%s: out of memory", path);
            goto out;
        }
        int wbad = 0;
        for (size_t done = 0; done < ts[i].numel && !wbad;) {
            size_t n = ts[i].numel - done < CHUNK ? ts[i].numel - done : CHUNK;
            gen_next(&g, vals, n);
            if (o->dtype == SYNTH_F32) {
                /* little-endian host assumed, as by the loader's in-place use */
                wbad = write_all(fp, vals, n * 4);
            } else {
                for (size_t k = 0; k < n; k++)
                    half[k] = o->dtype == SYNTH_F16 ? st_f32_to_f16(vals[k]) : st_f32_to_bf16(vals[k]);
                wbad = write_all(fp, half, n * 2);
            }
            done += n;
        }
        gen_free(&g);
        if (wbad) goto werr;
    }
    if (fflush(fp) != 0) goto werr;
    if (fclose(fp) != 0) {
        fp = NULL;
        goto werr;
    }
    fp = NULL;
    rc = 0;
    goto out;
werr:
    tw_set_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
out:
    if (fp) fclose(fp);
    sb_free(&h);
    free(half);
    free(vals);
    free(ts);
    return rc;
}

static int write_config(const char *path, const synth_opts *o, char *err, size_t errlen)
{
    json_t *c = json_object();
    if (!c) goto oom;
    const char *torch_dtype = o->dtype == SYNTH_F16    ? "float16"
                              : o->dtype == SYNTH_BF16 ? "bfloat16"
                                                       : "float32";
    int bad = 0;
    bad |= json_object_set_new(c, "activation_function", json_string("gelu_new"));
    bad |= json_object_set_new(c, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
    bad |= json_object_set_new(c, "attn_pdrop", json_real(0.1));
    bad |= json_object_set_new(c, "bos_token_id", json_integer(o->vocab_size - 1));
    bad |= json_object_set_new(c, "embd_pdrop", json_real(0.1));
    bad |= json_object_set_new(c, "eos_token_id", json_integer(o->vocab_size - 1));
    bad |= json_object_set_new(c, "initializer_range", json_real(0.02));
    bad |= json_object_set_new(c, "layer_norm_epsilon", json_real(1e-5));
    bad |= json_object_set_new(c, "model_type", json_string("gpt2"));
    bad |= json_object_set_new(c, "n_ctx", json_integer(o->n_ctx));
    bad |= json_object_set_new(c, "n_embd", json_integer(o->n_embd));
    bad |= json_object_set_new(c, "n_head", json_integer(o->n_head));
    bad |= json_object_set_new(c, "n_inner", json_null());
    bad |= json_object_set_new(c, "n_layer", json_integer(o->n_layer));
    bad |= json_object_set_new(c, "n_positions", json_integer(o->n_ctx));
    bad |= json_object_set_new(c, "resid_pdrop", json_real(0.1));
    bad |= json_object_set_new(c, "torch_dtype", json_string(torch_dtype));
    bad |= json_object_set_new(c, "vocab_size", json_integer(o->vocab_size));
    bad |= json_object_set_new(c, "twd_synthetic", json_true());
    bad |= json_object_set_new(c, "twd_seed", json_integer((json_int_t)o->seed));
    bad |= json_object_set_new(c, "twd_generator", json_string("twd-synth 1"));
    if (bad) {
        json_decref(c);
        goto oom;
    }
    int rc = json_dump_file(c, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(c);
    if (rc != 0) {
        tw_set_err(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
oom:
    tw_set_err(err, errlen, "%s: out of memory", path);
    return -1;
}

static char *path_join(const char *dir, const char *file)
{
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, file) < 0) return NULL;
    return p;
}

/* Copies src to dst byte for byte. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
    FILE *in = fopen(src, "rb");
    if (!in) {
        tw_set_err(err, errlen, "%s: cannot open: %s", src, strerror(errno));
        return -1;
    }
    FILE *out = fopen(dst, "wb");
    if (!out) {
        tw_set_err(err, errlen, "%s: cannot create: %s", dst, strerror(errno));
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            tw_set_err(err, errlen, "%s: write failed: %s", dst, strerror(errno));
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(in)) {
        tw_set_err(err, errlen, "%s: read failed", src);
        rc = -1;
    }
    fclose(in);
    if (fclose(out) != 0 && rc == 0) {
        tw_set_err(err, errlen, "%s: write failed: %s", dst, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* Copies a real GPT-2 vocabulary from o->vocab_from into tmp as vocab.json
 * and merges.txt, after checking it has vocab_size entries. */
static int copy_vocab(const char *tmp, const synth_opts *o, char *err, size_t errlen)
{
    const char *pairs[2][2] = {{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}};
    int rc = -1;
    for (int k = 0; k < 2; k++) {
        char *v = path_join(o->vocab_from, pairs[k][0]);
        char *m = path_join(o->vocab_from, pairs[k][1]);
        char *dv = path_join(tmp, "vocab.json"), *dm = path_join(tmp, "merges.txt");
        if (!v || !m || !dv || !dm) {
            tw_set_err(err, errlen, "%s: out of memory", o->vocab_from);
        } else if (access(v, R_OK) == 0 && access(m, R_OK) == 0) {
            json_error_t je;
            json_t *j = json_load_file(v, 0, &je);
            if (!j || !json_is_object(j)) {
                tw_set_err(err, errlen, "%s: not a JSON object%s%s", v, j ? "" : ": ", j ? "" : je.text);
            } else if (json_object_size(j) != (size_t)o->vocab_size) {
                tw_set_err(err, errlen, "%s: %zu entries, expected %d", v, json_object_size(j),
                           o->vocab_size);
            } else if (copy_file(v, dv, err, errlen) == 0 && copy_file(m, dm, err, errlen) == 0) {
                rc = 0;
            }
            json_decref(j);
            k = 2; /* found a pair: stop looking */
        } else if (k == 1) {
            tw_set_err(err, errlen,
                       "%s: no vocab.json + merges.txt or encoder.json + "
                       "vocab.bpe",
                       o->vocab_from);
        }
        free(v);
        free(m);
        free(dv);
        free(dm);
    }
    return rc;
}

/* mkdir -p */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char *p = strdup(dir);
    if (!p) {
        tw_set_err(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                tw_set_err(err, errlen, "%s: cannot create folder: %s", p, strerror(errno));
                free(p);
                return -1;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        tw_set_err(err, errlen, "%s: not a folder", dir);
        return -1;
    }
    return 0;
}

/* Removes tmp and the files in it (no subfolders are created there). */
static void remove_tmp(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *p = path_join(tmp, e->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(tmp);
}

/* Renames every file of tmp into dir, config.json last. */
static int publish(const char *tmp, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(tmp);
    if (!d) {
        tw_set_err(err, errlen, "%s: cannot read folder: %s", tmp, strerror(errno));
        return -1;
    }
    int rc = 0, have_config = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (strcmp(e->d_name, "config.json") == 0) {
            have_config = 1;
            continue;
        }
        char *a = path_join(tmp, e->d_name), *b = path_join(dir, e->d_name);
        if (!a || !b || rename(a, b) != 0) {
            tw_set_err(err, errlen, "%s: cannot move into place: %s", b ? b : dir, strerror(errno));
            rc = -1;
        }
        free(a);
        free(b);
    }
    closedir(d);
    if (rc == 0 && have_config) {
        char *a = path_join(tmp, "config.json"), *b = path_join(dir, "config.json");
        if (!a || !b || rename(a, b) != 0) {
            tw_set_err(err, errlen, "%s: cannot move into place: %s", b ? b : dir, strerror(errno));
            rc = -1;
        }
        free(a);
        free(b);
    }
    return rc;
}

int synth_write(const char *dir, const synth_opts *o, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    char msg[512];
    if (synth_check(o, msg, sizeof msg) != 0) {
        tw_set_err(err, errlen, "%s: %s", dir, msg);
        return -1;
    }
    if (make_dirs(dir, err, errlen) != 0) return -1;

    char *tmp = NULL;
    if (asprintf(&tmp, "%s/.twd-synth.%ld.tmp", dir, (long)getpid()) < 0) {
        tw_set_err(err, errlen, "%s: out of memory", dir);
        return -1;
    }
    remove_tmp(tmp); /* a leftover of a killed run with the same pid */
    if (mkdir(tmp, 0755) != 0) {
        tw_set_err(err, errlen, "%s: cannot create folder: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int rc = -1;
    char *st = path_join(tmp, "model.safetensors");
    char *cj = path_join(tmp, "config.json");
    if (!st || !cj) {
        tw_set_err(err, errlen, "%s: out of memory", dir);
        goto out;
    }
    if (o->tokenizer) {
        if (o->vocab_from) {
            if (copy_vocab(tmp, o, err, errlen) != 0) goto out;
        } else if (tokenizer_write_synthetic(tmp, o->vocab_size, o->seed, err, errlen) != 0) {
            goto out;
        }
    }
    if (write_safetensors(st, o, err, errlen) != 0) goto out;
    if (write_config(cj, o, err, errlen) != 0) goto out;
    rc = publish(tmp, dir, err, errlen);
out:
    remove_tmp(tmp);
    free(st);
    free(cj);
    free(tmp);
    return rc;
}
