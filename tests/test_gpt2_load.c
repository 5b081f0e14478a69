/* Tests of gpt2_load (core/gpt2.c) and the synthetic checkpoints of
 * core/synth.c.
 *
 * Most checkpoints here are written by a small writer local to this file
 * (independent of core/synth): each tensor is filled with
 * value(tensor id, i) = id * 8192 + i % 8192, exact in F32, so a test can
 * tell from the values which tensor a pointer of gpt2_params points at.
 * Expected parameter counts are summed from the shapes here, not taken from
 * gpt2_param_count. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/model/gpt2.h"
#include "core/model/safetensors.h"
#include "core/model/synth.h"
#include "core/nn/forward.h"
#include "core/tok/tokenizer.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_model.h"
#include "tests/support/tw_check.h"

static char tmpdir[256];

static void setup(void) { tt_tmpdir(tmpdir, sizeof tmpdir, "load"); }

static void teardown(void) { tt_rmtree(tmpdir); }

/* ---- a small independent checkpoint writer ---- */

typedef struct {
    char name[96];
    int ndim;
    size_t shape[4];
    const char *dtype; /* "F32" unless changed */
    int id;            /* value tag */
} tspec;

typedef struct {
    int L, H, C, I, V, T;
    int prefix;           /* "transformer." names */
    int buffers;          /* add attn.bias / masked_bias and lm_head.weight */
    int misalign;         /* data area starts 2 bytes off 4-byte alignment */
    const char *drop;     /* canonical name of a tensor to leave out */
    const char *reshape;  /* canonical name of a tensor whose last dim gets -1 */
    const char *dtype_of; /* canonical name of a tensor stored as `dtype` */
    const char *dtype;
    const char *twice;  /* canonical name also written with the other prefix */
    const char *poison; /* canonical name of a tensor whose element 3 is poison_value */
    float poison_value;
} ckpt;

static size_t numel(const tspec *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static size_t dsize(const char *dtype)
{
    if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32")) return 4;
    if (!strcmp(dtype, "I64") || !strcmp(dtype, "F64")) return 8;
    return 2;
}

static int add(tspec *ts, int n, const char *name, int ndim, size_t a, size_t b, size_t c, size_t d)
{
    tspec *t = &ts[n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = a;
    t->shape[1] = b;
    t->shape[2] = c;
    t->shape[3] = d;
    t->dtype = "F32";
    t->id = n;
    return n + 1;
}

/* Canonical tensor list (used tensors only) in gpt2_params order; returns
 * the count. ts must hold 4 + 12 L entries. */
static int used_tensors(const ckpt *k, tspec *ts)
{
    size_t C = (size_t)k->C, I = (size_t)k->I;
    int n = 0;
    n = add(ts, n, "wte.weight", 2, (size_t)k->V, C, 0, 0);
    n = add(ts, n, "wpe.weight", 2, (size_t)k->T, C, 0, 0);
    for (int l = 0; l < k->L; l++) {
        char b[96];
#define A(suf, nd, x, y)                                                                                     \
    snprintf(b, sizeof b, "h.%d." suf, l);                                                                   \
    n = add(ts, n, b, nd, x, y, 0, 0)
        A("ln_1.weight", 1, C, 0);
        A("ln_1.bias", 1, C, 0);
        A("attn.c_attn.weight", 2, C, 3 * C);
        A("attn.c_attn.bias", 1, 3 * C, 0);
        A("attn.c_proj.weight", 2, C, C);
        A("attn.c_proj.bias", 1, C, 0);
        A("ln_2.weight", 1, C, 0);
        A("ln_2.bias", 1, C, 0);
        A("mlp.c_fc.weight", 2, C, I);
        A("mlp.c_fc.bias", 1, I, 0);
        A("mlp.c_proj.weight", 2, I, C);
        A("mlp.c_proj.bias", 1, C, 0);
#undef A
    }
    n = add(ts, n, "ln_f.weight", 1, C, 0, 0, 0);
    n = add(ts, n, "ln_f.bias", 1, C, 0, 0, 0);
    return n;
}

static float tag_value(int id, size_t i) { return (float)(id * 8192 + (int)(i % 8192)); }

static void write_file(const char *name, const char *text) { tt_write_in(tmpdir, name, text, strlen(text)); }

static void write_config(const ckpt *k, int n_inner_null)
{
    char buf[1024];
    char inner[32];
    if (n_inner_null)
        snprintf(inner, sizeof inner, "null");
    else
        snprintf(inner, sizeof inner, "%d", k->I);
    snprintf(buf, sizeof buf,
             "{\"model_type\": \"gpt2\", \"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d,"
             " \"n_positions\": %d, \"n_ctx\": %d, \"vocab_size\": %d, \"n_inner\": %s,"
             " \"layer_norm_epsilon\": 1e-05}",
             k->L, k->H, k->C, k->T, k->T, k->V, inner);
    write_file("config.json", buf);
}

/* Writes model.safetensors for k; returns the number of used tensors. */
static int write_ckpt(const ckpt *k)
{
    int cap = 8 + 15 * k->L;
    tspec *ts = calloc((size_t)cap, sizeof *ts);
    ck_assert_ptr_nonnull(ts);
    int n = used_tensors(k, ts), n_used = n;
    if (k->buffers) {
        for (int l = 0; l < k->L; l++) {
            char b[96];
            snprintf(b, sizeof b, "h.%d.attn.bias", l);
            n = add(ts, n, b, 4, 1, 1, (size_t)k->T, (size_t)k->T);
            snprintf(b, sizeof b, "h.%d.attn.masked_bias", l);
            n = add(ts, n, b, 0, 0, 0, 0, 0);
        }
        n = add(ts, n, "lm_head.weight", 2, (size_t)k->V, (size_t)k->C, 0, 0);
        ts[n - 1].dtype = "BF16"; /* ignored tensors may have any dtype */
    }
    for (int i = 0; i < n; i++) {
        if (k->reshape && !strcmp(ts[i].name, k->reshape)) ts[i].shape[ts[i].ndim - 1] -= 1;
        if (k->dtype_of && !strcmp(ts[i].name, k->dtype_of)) ts[i].dtype = k->dtype;
    }
    char *hdr = malloc(64 + (size_t)n * 256);
    ck_assert_ptr_nonnull(hdr);
    size_t hl = (size_t)sprintf(hdr, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    int extra_twice = -1;
    for (int i = 0; i < n; i++) {
        if (k->drop && !strcmp(ts[i].name, k->drop)) continue;
        size_t nb = numel(&ts[i]) * dsize(ts[i].dtype);
        const char *pre = k->prefix ? "transformer." : "";
        if (!strncmp(ts[i].name, "lm_head", 7)) pre = "";
        hl += (size_t)sprintf(hdr + hl, ",\"%s%s\":{\"dtype\":\"%s\",\"shape\":[", pre, ts[i].name,
                              ts[i].dtype);
        for (int d = 0; d < ts[i].ndim; d++)
            hl += (size_t)sprintf(hdr + hl, d ? ",%zu" : "%zu", ts[i].shape[d]);
        hl += (size_t)sprintf(hdr + hl, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
        if (k->twice && !strcmp(ts[i].name, k->twice)) {
            extra_twice = i;
            hl += (size_t)sprintf(hdr + hl,
                                  ",\"%s%s\":{\"dtype\":\"F32\",\"shape\":[%zu],"
                                  "\"data_offsets\":[%zu,%zu]}",
                                  k->prefix ? "" : "transformer.", ts[i].name, numel(&ts[i]), off,
                                  off + 4 * numel(&ts[i]));
            off += 4 * numel(&ts[i]);
        }
    }
    hl += (size_t)sprintf(hdr + hl, "}");
    while (hl % 8 != 0) hdr[hl++] = ' '; /* padded as HF does */
    if (k->misalign) hdr[hl++] = ' ', hdr[hl++] = ' ';
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    FILE *fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    fwrite(len8, 1, 8, fp);
    fwrite(hdr, 1, hl, fp);
    for (int i = 0; i < n; i++) {
        if (k->drop && !strcmp(ts[i].name, k->drop)) continue;
        size_t ne = numel(&ts[i]);
        for (size_t j = 0; j < ne; j++) {
            float v = tag_value(ts[i].id, j);
            if (k->poison && !strcmp(ts[i].name, k->poison) && j == 3) v = k->poison_value;
            if (!strcmp(ts[i].dtype, "F32")) {
                fwrite(&v, 4, 1, fp);
            } else if (!strcmp(ts[i].dtype, "BF16")) {
                uint16_t h = st_f32_to_bf16(v);
                fwrite(&h, 2, 1, fp);
            } else if (!strcmp(ts[i].dtype, "F16")) {
                uint16_t h = st_f32_to_f16(v);
                fwrite(&h, 2, 1, fp);
            } else {
                static const unsigned char z[8];
                fwrite(z, 1, dsize(ts[i].dtype), fp);
            }
        }
        if (i == extra_twice)
            for (size_t j = 0; j < ne; j++) {
                float v = -1.0f;
                fwrite(&v, 4, 1, fp);
            }
    }
    ck_assert_int_eq(fclose(fp), 0);
    TT_FREE(hdr, ts);
    return n_used;
}

/* config.json (n_inner null) and model.safetensors of k. */
static void write_checkpoint(const ckpt *k)
{
    write_config(k, 1);
    write_ckpt(k);
}

/* Parameter count summed from the shape list (independent of the loader). */
static size_t count_from_shapes(const ckpt *k)
{
    tspec *ts = calloc((size_t)(4 + 12 * k->L), sizeof *ts);
    ck_assert_ptr_nonnull(ts);
    int n = used_tensors(k, ts);
    size_t s = 0;
    for (int i = 0; i < n; i++) s += numel(&ts[i]);
    free(ts);
    return s;
}

static const ckpt base = {.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5};

/* The tensors of m in gpt2_params order, matching used_tensors. */
static int model_ptrs(const gpt2_model *m, const float **out)
{
    int n = 0;
    out[n++] = m->p.wte;
    out[n++] = m->p.wpe;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const gpt2_block *h = &m->p.h[l];
        const float *b[12] = {h->ln_1_w, h->ln_1_b, h->attn_w.p, h->attn_b, h->attn_proj_w.p, h->attn_proj_b,
                              h->ln_2_w, h->ln_2_b, h->fc_w.p,   h->fc_b,   h->fc_proj_w.p,   h->fc_proj_b};
        for (int i = 0; i < 12; i++) out[n++] = b[i];
    }
    out[n++] = m->p.ln_f_w;
    out[n++] = m->p.ln_f_b;
    return n;
}

/* Loads tmpdir and checks every pointer holds its tensor's tag values. */
static void check_loaded(const ckpt *k, gpt2_model *m, int expect_in_place)
{
    char err[512] = "";
    ck_assert_msg(gpt2_load(tmpdir, m, err, sizeof err) == 0, "gpt2_load: %s", err);
    ck_assert_int_eq(m->cfg.n_layer, k->L);
    ck_assert_int_eq(m->cfg.n_head, k->H);
    ck_assert_int_eq(m->cfg.n_embd, k->C);
    ck_assert_int_eq(m->cfg.n_inner, k->I);
    ck_assert_int_eq(m->cfg.vocab_size, k->V);
    ck_assert_int_eq(m->cfg.n_ctx, k->T);
    ck_assert_float_eq(m->cfg.ln_eps, 1e-5f);
    ck_assert_uint_eq(m->n_params, count_from_shapes(k));
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_uint_eq(m->file_size, (uint64_t)sb.st_size);
    ck_assert_str_eq(m->dir, tmpdir);
    ck_assert_int_eq(m->synthetic, 0);

    tspec *ts = calloc((size_t)(4 + 12 * k->L), sizeof *ts);
    const float **ptr = calloc((size_t)(4 + 12 * k->L), sizeof *ptr);
    ck_assert_ptr_nonnull(ts);
    ck_assert_ptr_nonnull(ptr);
    int n = used_tensors(k, ts);
    ck_assert_int_eq(model_ptrs(m, ptr), n);
    size_t in_place = 0;
    for (int i = 0; i < n; i++) {
        size_t ne = numel(&ts[i]);
        ck_assert_ptr_nonnull(ptr[i]);
        for (size_t j = 0; j < ne; j++)
            ck_assert_msg(ptr[i][j] == tag_value(ts[i].id, j), "tensor %s element %zu: %g, expected %g",
                          ts[i].name, j, (double)ptr[i][j], (double)tag_value(ts[i].id, j));
        const char *a = (const char *)ptr[i], *mb = (const char *)m->map;
        if (a >= mb && a < mb + m->map_len) in_place++;
    }
    if (expect_in_place) {
        ck_assert_uint_eq(in_place, (size_t)n);
        ck_assert_uint_eq(m->n_owned, 0);
    } else {
        ck_assert_uint_eq(in_place, 0);
        ck_assert_uint_eq(m->n_owned, (size_t)n);
    }
    TT_FREE(ts, ptr);
}

/* Checkpoints that load: every pointer holds its tensor's tag values, in
 * place in the mapping unless the data area is misaligned. */
static const struct {
    ckpt k;
    int n_inner_given; /* config.json states n_inner (else null: 4C) */
    int in_place;
} loads[] = {
    /* plain names, with the buffers a loader ignores */
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .buffers = 1}, 0, 1},
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .prefix = 1, .buffers = 1}, 0, 1},
    /* a header whose length leaves the data area 2 bytes off 4-byte
     * alignment (legal, if unusual): F32 tensors must be copied, values
     * unchanged */
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .misalign = 1}, 0, 0},
    /* n_inner not 4C: config says so explicitly */
    {{.L = 3, .H = 2, .C = 8, .I = 24, .V = 11, .T = 5}, 1, 1},
};

START_TEST(t_loads)
{
    const ckpt *k = &loads[_i].k;
    write_config(k, !loads[_i].n_inner_given);
    write_ckpt(k);
    gpt2_model m;
    check_loaded(k, &m, loads[_i].in_place);
    ck_assert_str_eq(m.dtype, "F32");
    gpt2_free(&m);
    gpt2_free(&m); /* idempotent */
    ck_assert_ptr_null(m.map);
}
END_TEST

START_TEST(t_load_f16_bf16_tensor)
{
    /* one used tensor (wpe, tag values 8192..8199) stored as BF16, then as
     * F16: it is converted into an owned buffer, the rest stays in place */
    ckpt k = {.L = 1, .H = 1, .C = 4, .I = 16, .V = 3, .T = 2};
    write_config(&k, 1);
    k.dtype_of = "wpe.weight";
    static const char *dts[2] = {"BF16", "F16"};
    for (int d = 0; d < 2; d++) {
        k.dtype = dts[d];
        write_ckpt(&k);
        gpt2_model m;
        char err[512];
        ck_assert_msg(gpt2_load(tmpdir, &m, err, sizeof err) == 0, "%s", err);
        for (size_t j = 0; j < 8; j++) {
            float v = tag_value(1, j);
            float want = d == 0 ? st_bf16_to_f32(st_f32_to_bf16(v)) : st_f16_to_f32(st_f32_to_f16(v));
            ck_assert_msg(m.p.wpe[j] == want, "%s wpe[%zu] = %g, want %g", dts[d], j, (double)m.p.wpe[j],
                          (double)want);
        }
        ck_assert_uint_eq(m.n_owned, 1);
        ck_assert(m.p.wte[5] == tag_value(0, 5));
        ck_assert_str_eq(m.dtype, "F32"); /* the dtype of wte */
        gpt2_free(&m);
    }
}
END_TEST

/* Loads tmpdir expecting failure with exactly `want` as message. */
static void expect_error(const char *want)
{
    gpt2_model m;
    char err[1024] = "";
    int rc = gpt2_load(tmpdir, &m, err, sizeof err);
    ck_assert_msg(rc == -1, "gpt2_load succeeded, expected: %s", want);
    ck_assert_str_eq(err, want);
    ck_assert_ptr_null(m.map);
    ck_assert_ptr_null(m.p.h);
    ck_assert_ptr_null(m.owned);
    ck_assert_ptr_null(m.dir);
    gpt2_free(&m);
}

/* expect_error of "<tmpdir>/model.safetensors: <msg>". */
static void expect_st_error(const char *msg)
{
    char want[1024];
    snprintf(want, sizeof want, "%s/model.safetensors: %s", tmpdir, msg);
    expect_error(want);
}

/* Loads tmpdir expecting failure with a message that starts with
 * "<tmpdir>/<file>: " and contains `frag`. */
static void expect_error_in(const char *file, const char *frag)
{
    gpt2_model m;
    char err[1024] = "", head[600];
    int rc = gpt2_load(tmpdir, &m, err, sizeof err);
    ck_assert_msg(rc == -1, "gpt2_load succeeded, expected an error with '%s'", frag);
    snprintf(head, sizeof head, "%s/%s: ", tmpdir, file);
    ck_assert_msg(strncmp(err, head, strlen(head)) == 0, "'%s' does not start with '%s'", err, head);
    ck_assert_msg(strstr(err, frag) != NULL, "'%s' lacks '%s'", err, frag);
    ck_assert_msg(strchr(err, '\n') == NULL, "not one line: %s", err);
    gpt2_free(&m);
}

/* issue 9, item 5: NaN in wte stopped start-up with a LAPACK message naming
 * neither file nor tensor; NaN in ln_1 or Inf in ln_f started a daemon that
 * answered garbage. Every tensor is checked, in every stored dtype. */
START_TEST(t_non_finite_weights)
{
    static const struct {
        const char *tensor, *dtype;
        float value;
        const char *says;
    } rows[] = {
        {"wte.weight", "F32", NAN, "tensor 'wte.weight': element 3 is NaN"},
        {"h.0.ln_1.weight", "F32", NAN, "tensor 'h.0.ln_1.weight': element 3 is NaN"},
        {"ln_f.weight", "F32", INFINITY, "tensor 'ln_f.weight': element 3 is +Inf"},
        /* (F16 for a tensor whose tag values fit in its range) */
        {"wpe.weight", "F16", -INFINITY, "tensor 'wpe.weight': element 3 is -Inf"},
        {"h.1.attn.c_proj.bias", "BF16", NAN, "tensor 'h.1.attn.c_proj.bias': element 3 is NaN"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ckpt k = base;
        k.poison = rows[i].tensor;
        k.poison_value = rows[i].value;
        k.dtype_of = rows[i].tensor;
        k.dtype = rows[i].dtype;
        write_checkpoint(&k);
        expect_error_in("model.safetensors", rows[i].says);
    }
}
END_TEST

/* Checkpoints that the loader refuses, with the exact message (after
 * "<dir>/model.safetensors: ") or a fragment of it. */
static const struct {
    ckpt k;
    const char *says, *frag;
} refusals[] = {
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .drop = "h.1.mlp.c_fc.bias"},
     "tensor 'h.1.mlp.c_fc.bias': missing (looked for 'h.1.mlp.c_fc.bias' and "
     "'transformer.h.1.mlp.c_fc.bias')",
     NULL},
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .prefix = 1, .reshape = "h.2.attn.c_attn.weight"},
     "tensor 'transformer.h.2.attn.c_attn.weight': shape [8, 23], expected [8, 24]",
     NULL},
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .reshape = "ln_f.bias"}, /* [8] -> [7] */
     NULL,
     "tensor 'ln_f.bias': shape [7], expected [8]"},
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .dtype_of = "wte.weight", .dtype = "I64"},
     NULL,
     "tensor 'wte.weight': dtype I64 not supported (F32, F16 or BF16)"},
    {{.L = 3, .H = 2, .C = 8, .I = 32, .V = 11, .T = 5, .twice = "ln_f.weight"},
     NULL,
     "tensor 'ln_f.weight': present both with and without"},
};

START_TEST(t_refusals)
{
    write_checkpoint(&refusals[_i].k);
    if (refusals[_i].says)
        expect_st_error(refusals[_i].says);
    else
        expect_error_in("model.safetensors", refusals[_i].frag);
}
END_TEST

START_TEST(t_wrong_shape_wpe_vs_config)
{
    /* config says n_positions 6, the file has 5 rows */
    ckpt k = base;
    write_ckpt(&k);
    k.T = 6;
    write_config(&k, 1);
    expect_st_error("tensor 'wpe.weight': shape [5, 8], expected [6, 8]");
}
END_TEST

START_TEST(t_corrupt_safetensors)
{
    ckpt k = base;
    write_config(&k, 1);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    FILE *fp = fopen(p, "wb");
    ck_assert_ptr_nonnull(fp);
    fwrite("\x05\x00\x00\x00\x00\x00\x00\x00{\"a\":", 1, 13, fp);
    fclose(fp);
    expect_error_in("model.safetensors", "not valid JSON");
    write_file("model.safetensors", "");
    expect_error_in("model.safetensors", "file is empty");
}
END_TEST

START_TEST(t_missing_files)
{
    ckpt k = base;
    write_ckpt(&k);
    expect_error_in("config.json", "cannot read");
    write_config(&k, 1);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    unlink(p);
    expect_st_error("cannot open: No such file or directory");
    /* issue 9, item 4: a FIFO as the checkpoint or its config.json is refused,
     * never waited on (a hang here is the test's timeout) */
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    expect_st_error("not a regular file");
    unlink(p);
    write_ckpt(&k);
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    unlink(p);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    expect_error_in("config.json", "not a regular file");
    unlink(p);
    write_config(&k, 1);
    /* a folder that does not exist at all */
    gpt2_model m;
    char err[512];
    ck_assert_int_eq(gpt2_load("/nonexistent/twd/model", &m, err, sizeof err), -1);
    const char *head = "/nonexistent/twd/model/config.json: cannot read: ";
    ck_assert_msg(strncmp(err, head, strlen(head)) == 0, "%s", err);
}
END_TEST

/* One bad config.json per row: text and a fragment of the expected message. */
START_TEST(t_bad_config)
{
    static const struct {
        const char *json, *frag;
    } rows[] = {
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_positions\":5}", "missing key \"vocab_size\""},
        {"{\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11}", "missing key \"n_layer\""},
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"vocab_size\":11}",
         "missing key \"n_positions\" (or \"n_ctx\")"},
        {"{\"n_layer\":0,\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11}",
         "\"n_layer\" is 0, must be 1..1024"},
        {"{\"n_layer\":-3,\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11}",
         "\"n_layer\" is -3"},
        {"{\"n_layer\":3,\"n_head\":\"2\",\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11}",
         "\"n_head\" must be an integer"},
        {"{\"n_layer\":3,\"n_head\":2.5,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11}",
         "\"n_head\" must be an integer"},
        {"{\"n_layer\":3,\"n_head\":3,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11}",
         "\"n_embd\" 8 is not divisible by \"n_head\" 3"},
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":99999999}",
         "\"vocab_size\" is 99999999"},
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11,"
         "\"n_inner\":0}",
         "\"n_inner\" is 0"},
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11,"
         "\"layer_norm_epsilon\":-1}",
         "\"layer_norm_epsilon\" is -1"},
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_positions\":5,\"vocab_size\":11,"
         "\"layer_norm_epsilon\":\"x\"}",
         "\"layer_norm_epsilon\" must be a number"},
        {"{\"n_layer\":3,\"n_layer\":3}", "invalid JSON"},
        {"{\"n_layer\": 3,", "invalid JSON at line 1"},
        {"[1, 2]", "not a JSON object"},
        {"", "invalid JSON"},
        {"{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_positions\":99999999999,"
         "\"vocab_size\":11}",
         "\"n_positions\" is 99999999999"},
    };
    ckpt k = base;
    write_ckpt(&k);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        write_file("config.json", rows[i].json);
        expect_error_in("config.json", rows[i].frag);
    }
}
END_TEST

START_TEST(t_config_n_ctx_only_and_defaults)
{
    /* n_ctx instead of n_positions, no n_inner, no epsilon: defaults */
    ckpt k = base;
    write_ckpt(&k);
    write_file("config.json", "{\"n_layer\":3,\"n_head\":2,\"n_embd\":8,\"n_ctx\":5,\"vocab_size\":11}");
    gpt2_model m;
    char err[512];
    ck_assert_msg(gpt2_load(tmpdir, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m.cfg.n_ctx, 5);
    ck_assert_int_eq(m.cfg.n_inner, 32);
    ck_assert_float_eq(m.cfg.ln_eps, 1e-5f);
    gpt2_free(&m);
}
END_TEST

/* ---- parameter count ---- */

static size_t count_formula(size_t L, size_t C, size_t V, size_t T)
{
    size_t I = 4 * C;
    size_t per_block = (C + C) + (C * 3 * C + 3 * C) + (C * C + C) + (C + C) + (C * I + I) + (I * C + C);
    return V * C + T * C + L * per_block + (C + C);
}

START_TEST(t_param_count_real_sizes)
{
    /* published parameter counts of the four GPT-2 checkpoints (tied head) */
    static const struct {
        int L, H, C;
        size_t want;
    } rows[] = {
        {12, 12, 768, 124439808},
        {24, 16, 1024, 354823168},
        {36, 20, 1280, 774030080},
        {48, 25, 1600, 1557611200},
    };
    for (size_t i = 0; i < 4; i++) {
        gpt2_config c = {.n_layer = rows[i].L,
                         .n_head = rows[i].H,
                         .n_embd = rows[i].C,
                         .n_inner = 4 * rows[i].C,
                         .n_ctx = 1024,
                         .vocab_size = 50257,
                         .ln_eps = 1e-5f};
        ck_assert_uint_eq(count_formula((size_t)c.n_layer, (size_t)c.n_embd, 50257, 1024), rows[i].want);
        ck_assert_uint_eq(gpt2_param_count(&c), rows[i].want);
    }
}
END_TEST

/* ---- synthetic checkpoints ---- */

static void synth_into(const char *sub, synth_opts *o)
{
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/%s", tmpdir, sub);
    ck_assert_msg(synth_write(d, o, err, sizeof err) == 0, "synth_write: %s", err);
}

static void load_sub(const char *sub, gpt2_model *m)
{
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/%s", tmpdir, sub);
    ck_assert_msg(gpt2_load(d, m, err, sizeof err) == 0, "gpt2_load: %s", err);
}

/* The checkpoint in tmpdir/sub loads, with vocabulary size V. */
static void expect_vocab_size(const char *sub, int V)
{
    gpt2_model m;
    load_sub(sub, &m);
    ck_assert_int_eq(m.cfg.vocab_size, V);
    gpt2_free(&m);
}

/* Largest |a - b| - (rel |a| + abs) over all tensors of two models (<= 0
 * when everything is within tolerance); *max_diff receives max |a - b|. */
static double max_excess(const gpt2_model *a, const gpt2_model *b, double rel, double abs, double *max_diff)
{
    const gpt2_config *c = &a->cfg;
    size_t C = (size_t)c->n_embd, I = (size_t)c->n_inner;
    int n = 4 + 12 * c->n_layer;
    const float **pa = calloc((size_t)n, sizeof *pa), **pb = calloc((size_t)n, sizeof *pb);
    size_t *ne = calloc((size_t)n, sizeof *ne);
    ck_assert_ptr_nonnull(pa);
    ck_assert_ptr_nonnull(pb);
    ck_assert_ptr_nonnull(ne);
    model_ptrs(a, pa);
    model_ptrs(b, pb);
    ne[0] = (size_t)c->vocab_size * C;
    ne[1] = (size_t)c->n_ctx * C;
    for (int l = 0; l < c->n_layer; l++) {
        size_t s[12] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, C * I, I, I * C, C};
        for (int i = 0; i < 12; i++) ne[2 + 12 * l + i] = s[i];
    }
    ne[n - 2] = ne[n - 1] = C;
    double worst = -INFINITY;
    *max_diff = 0;
    for (int t = 0; t < n; t++)
        for (size_t j = 0; j < ne[t]; j++) {
            double x = pa[t][j], y = pb[t][j], d = fabs(x - y);
            if (d > *max_diff) *max_diff = d;
            double e = d - (rel * fabs(x) + abs);
            if (e > worst) worst = e;
        }
    TT_FREE(pa, pb, ne);
    return worst;
}

START_TEST(t_synth_dtypes_and_prefix_agree)
{
    synth_opts o = tt_synth_tiny(300, 16, 7, SYNTH_F32);
    synth_into("f32", &o);
    o.prefix = 1;
    synth_into("f32p", &o);
    o.prefix = 0;
    o.dtype = SYNTH_F16;
    synth_into("f16", &o);
    o.dtype = SYNTH_BF16;
    o.prefix = 1;
    synth_into("bf16p", &o);

    gpt2_model a, b, h, bf;
    load_sub("f32", &a);
    load_sub("f32p", &b);
    load_sub("f16", &h);
    load_sub("bf16p", &bf);
    size_t want = count_formula(2, 32, 300, 16);
    ck_assert_uint_eq(a.n_params, want);
    ck_assert_uint_eq(h.n_params, want);
    ck_assert_uint_eq(bf.n_params, want);
    ck_assert_int_eq(a.synthetic, 1);
    ck_assert_uint_eq(a.synthetic_seed, 7);
    ck_assert_str_eq(a.dtype, "F32");
    ck_assert_str_eq(h.dtype, "F16");
    ck_assert_str_eq(bf.dtype, "BF16");
    ck_assert_uint_eq(a.n_owned, 0); /* F32 used in place */
    ck_assert_uint_eq(h.n_owned, 4 + 12 * 2);

    double d;
    double e = max_excess(&a, &b, 0, 0, &d);
    ck_assert_msg(e <= 0, "F32 with/without prefix differ: max |diff| %g", d);
    /* F16: round to nearest, relative error <= 2^-11 for normals, absolute
     * <= 2^-25 in the subnormal range */
    e = max_excess(&a, &h, ldexp(1, -11), ldexp(1, -25), &d);
    ck_assert_msg(e <= 0, "F16 values outside tolerance: max |diff| %g, excess %g", d, e);
    ck_assert_msg(d > 0, "F16 identical to F32: conversion not exercised");
    e = max_excess(&a, &bf, ldexp(1, -8), 0, &d);
    ck_assert_msg(e <= 0, "BF16 values outside tolerance: max |diff| %g, excess %g", d, e);

    /* the stored F32 values are the generator's stream */
    float *ref = malloc(300 * 32 * sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    o.dtype = SYNTH_F32;
    ck_assert_int_eq(synth_tensor_values(&o, "wte.weight", ref, 300 * 32), 0);
    ck_assert_int_eq(memcmp(ref, a.p.wte, 300 * 32 * sizeof *ref), 0);
    ck_assert_int_eq(synth_tensor_values(&o, "h.1.mlp.c_proj.bias", ref, 32), 0);
    ck_assert_int_eq(memcmp(ref, a.p.h[1].fc_proj_b, 32 * sizeof *ref), 0);
    ck_assert_int_eq(synth_tensor_values(&o, "no.such.tensor", ref, 1), -1);
    free(ref);

    gpt2_free(&a);
    gpt2_free(&b);
    gpt2_free(&h);
    gpt2_free(&bf);
}
END_TEST

/* An F16/BF16 checkpoint loaded with lazy_blocks: the block matrices stay
 * in the mapping (NULL in m->p.h) and gpt2_block_acquire gives the same
 * float32 values as the eager load, bit for bit, kept within the budget or
 * converted per caller; the forward pass on it equals the eager one. */
static void lazy_matches(const char *sub, size_t budget, size_t want_kept)
{
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/%s", tmpdir, sub);
    gpt2_model e, z;
    ck_assert_msg(gpt2_load(d, &e, err, sizeof err) == 0, "gpt2_load: %s", err);
    const gpt2_load_options lo = {.lazy_blocks = 1, .block_budget = budget};
    ck_assert_msg(gpt2_load_opts(d, &z, &lo, err, sizeof err) == 0, "gpt2_load_opts: %s", err);
    const size_t C = (size_t)e.cfg.n_embd, I = (size_t)e.cfg.n_inner;
    const size_t ne[4] = {3 * C * C, C * C, C * I, I * C};
    gpt2_block_stats st;
    gpt2_get_block_stats(&z, &st);
    ck_assert_uint_eq(st.lazy_blocks, (size_t)e.cfg.n_layer);
    ck_assert_uint_eq(st.kept_blocks, 0);
    ck_assert_uint_eq(st.conversions, 0);
    for (int round = 0; round < 2; round++)
        for (int l = 0; l < e.cfg.n_layer; l++) {
            ck_assert(gpt2_block_is_lazy(&z, l));
            ck_assert_ptr_null(z.p.h[l].attn_w.p);
            ck_assert_ptr_null(z.p.h[l].fc_proj_w.p);
            gpt2_block_ref ref;
            const gpt2_block *b = gpt2_block_acquire(&z, l, &ref);
            ck_assert_ptr_nonnull(b);
            const gpt2_block *a = &e.p.h[l];
            const float *pa[4] = {a->attn_w.p, a->attn_proj_w.p, a->fc_w.p, a->fc_proj_w.p};
            const float *pb[4] = {b->attn_w.p, b->attn_proj_w.p, b->fc_w.p, b->fc_proj_w.p};
            for (int i = 0; i < 4; i++)
                ck_assert_msg(memcmp(pa[i], pb[i], ne[i] * sizeof(float)) == 0,
                              "%s block %d matrix %d differs", sub, l, i);
            ck_assert_uint_eq(b->attn_w.rs, a->attn_w.rs);
            ck_assert_uint_eq(b->attn_w.cs, a->attn_w.cs);
            ck_assert_ptr_eq(b->attn_b, z.p.h[l].attn_b); /* the rest is the model's */
            gpt2_block_release(&ref);
        }
    gpt2_get_block_stats(&z, &st);
    ck_assert_uint_eq(st.kept_blocks, want_kept);
    /* kept blocks are converted once; the others on each of the two rounds */
    ck_assert_uint_eq(st.conversions, want_kept + 2 * ((size_t)e.cfg.n_layer - want_kept));
    ck_assert(!gpt2_block_is_lazy(&e, 0));

    const int32_t tok[5] = {1, 7, 3, 250, 42};
    gpt2_forward_result *ra = NULL, *rb = NULL;
    const gpt2_forward_opts fo = {.logits = GPT2_LOGITS_ALL};
    ck_assert_int_eq(gpt2_forward(&e, tok, 5, &fo, &ra), TW_OK);
    ck_assert_int_eq(gpt2_forward(&z, tok, 5, &fo, &rb), TW_OK);
    ck_assert_int_eq(memcmp(ra->logits, rb->logits, 5 * (size_t)e.cfg.vocab_size * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(ra->resid, rb->resid, (size_t)e.cfg.n_layer * 5 * C * sizeof(float)), 0);
    gpt2_forward_free(ra);
    gpt2_forward_free(rb);
    gpt2_free(&e);
    gpt2_free(&z);
}

START_TEST(t_lazy_f16_blocks)
{
    synth_opts o = tt_synth_tiny(300, 16, 11, SYNTH_F16);
    synth_into("lz16", &o);
    o.dtype = SYNTH_BF16;
    o.prefix = 1;
    synth_into("lzbf", &o);
    const size_t C = 32, blk = 12 * C * C * sizeof(float);
    lazy_matches("lz16", 0, 0);               /* nothing kept: converted per caller */
    lazy_matches("lzbf", blk, 1);             /* room for the first block only */
    lazy_matches("lz16", (size_t)1 << 30, 2); /* every block kept */

    /* an F32 checkpoint has no lazy blocks: acquire is the block itself */
    o.dtype = SYNTH_F32;
    synth_into("lz32", &o);
    gpt2_model m;
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/lz32", tmpdir);
    const gpt2_load_options lo = {.lazy_blocks = 1};
    ck_assert_msg(gpt2_load_opts(d, &m, &lo, err, sizeof err) == 0, "%s", err);
    gpt2_block_ref ref;
    ck_assert_ptr_eq(gpt2_block_acquire(&m, 1, &ref), &m.p.h[1]);
    gpt2_block_release(&ref);
    gpt2_block_stats st;
    gpt2_get_block_stats(&m, &st);
    ck_assert_uint_eq(st.lazy_blocks, 0);
    gpt2_free(&m);
}
END_TEST

static void stats(const float *x, size_t n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *sd = sqrt(s2 / (double)(n - 1));
}

START_TEST(t_synth_init_statistics)
{
    synth_opts o = tt_synth_tiny(1000, 32, 0, SYNTH_F32);
    o.n_layer = 4;
    o.n_embd = 64;
    o.n_head = 4;
    synth_into("m", &o);
    gpt2_model m;
    load_sub("m", &m);
    size_t C = 64;
    double mean, sd;
    /* 12288 samples: the sd estimate is within ~1%; allow 5% */
    stats(m.p.h[0].attn_w.p, C * 3 * C, &mean, &sd);
    ck_assert_msg(fabs(sd - 0.02) < 0.001 && fabs(mean) < 0.001, "c_attn sd %g mean %g", sd, mean);
    stats(m.p.h[3].fc_proj_w.p, 4 * C * C, &mean, &sd);
    double want = 0.02 / sqrt(8.0);
    ck_assert_msg(fabs(sd - want) < 0.05 * want, "mlp.c_proj sd %g, want %g", sd, want);
    stats(m.p.h[2].attn_proj_w.p, C * C, &mean, &sd);
    ck_assert_msg(fabs(sd - want) < 0.05 * want, "attn.c_proj sd %g, want %g", sd, want);
    stats(m.p.h[1].ln_2_w, C, &mean, &sd); /* 64 samples: loose */
    ck_assert_msg(fabs(mean - 1) < 0.03 && sd > 0.03 && sd < 0.07, "ln gamma %g %g", mean, sd);
    stats(m.p.ln_f_b, C, &mean, &sd);
    ck_assert_msg(fabs(mean) < 0.01 && sd > 0.01 && sd < 0.03, "ln beta %g %g", mean, sd);
    /* wte: shared mean direction and norms decreasing with the id */
    double n_first = 0, n_last = 0, mu2 = 0;
    for (size_t i = 0; i < 100; i++)
        for (size_t j = 0; j < C; j++) {
            n_first += m.p.wte[i * C + j] * m.p.wte[i * C + j];
            n_last += m.p.wte[(999 - i) * C + j] * m.p.wte[(999 - i) * C + j];
        }
    for (size_t j = 0; j < C; j++) {
        double s = 0;
        for (size_t i = 0; i < 1000; i++) s += m.p.wte[i * C + j];
        mu2 += (s / 1000) * (s / 1000);
    }
    /* expected squared norms: C (0.01^2 + r^2 0.02^2), r ~ 1.45 vs 0.55 */
    ck_assert_msg(n_first / n_last > 3, "wte norms do not fall with the id: %g vs %g", n_first / 100,
                  n_last / 100);
    ck_assert_msg(sqrt(mu2) > 0.5 * 0.01 * sqrt((double)C), "wte mean direction too small: %g", sqrt(mu2));
    gpt2_free(&m);
}
END_TEST

START_TEST(t_synth_file_layout)
{
    synth_opts o = tt_synth_tiny(512, 64, 0, SYNTH_F32);
    o.prefix = 1;
    synth_into("x", &o);
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/x/model.safetensors", tmpdir);
    st_file f;
    ck_assert_msg(st_open(p, &f, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(f.data_start % 8, 0);     /* padded header */
    ck_assert_uint_eq(f.n_tensors, 4 + 14 * 2); /* with the buffers */
    const st_tensor *b = st_find(&f, "transformer.h.1.attn.bias");
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(b->ndim, 4);
    ck_assert_uint_eq(b->shape[2], 64);
    const float *mask = st_data(&f, b);
    ck_assert(mask[0] == 1.0f && mask[1] == 0.0f && mask[64] == 1.0f && mask[65] == 1.0f);
    const st_tensor *mb = st_find(&f, "transformer.h.0.attn.masked_bias");
    ck_assert_ptr_nonnull(mb);
    ck_assert_int_eq(mb->ndim, 0);
    ck_assert(*(const float *)st_data(&f, mb) == -1e4f);
    /* data laid out in name order, contiguous from 0 */
    size_t end = f.data_start;
    for (size_t i = 0; i < f.n_tensors; i++) {
        ck_assert_uint_eq(f.tensors[i].offset, end);
        end += f.tensors[i].nbytes;
    }
    ck_assert_uint_eq(end, f.size);
    st_close(&f);
    /* no temporary folder is left behind */
    snprintf(p, sizeof p, "%s/x", tmpdir);
    DIR *d = opendir(p);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        ck_assert_msg(strstr(e->d_name, "twd-synth") == NULL, "left over: %s", e->d_name);
        n += e->d_name[0] != '.';
    }
    closedir(d);
    ck_assert_int_eq(n, 2); /* config.json, model.safetensors */
}
END_TEST

START_TEST(t_synth_deterministic)
{
    synth_opts o = tt_synth_tiny(512, 64, 123, SYNTH_F32);
    synth_into("a", &o);
    synth_into("b", &o);
    o.seed = 124;
    synth_into("c", &o);
    size_t la, lb, lc;
    char *a = tt_read_in(tmpdir, "a/model.safetensors", &la);
    char *b = tt_read_in(tmpdir, "b/model.safetensors", &lb);
    char *c = tt_read_in(tmpdir, "c/model.safetensors", &lc);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(memcmp(a, b, la), 0);
    ck_assert_uint_eq(la, lc);
    ck_assert_int_ne(memcmp(a, c, la), 0);
    /* rewriting into an existing folder replaces the files */
    synth_into("a", &o);
    free(a);
    a = tt_read_in(tmpdir, "a/model.safetensors", &la);
    ck_assert_int_eq(memcmp(a, c, la), 0);
    TT_FREE(a, b, c);
}
END_TEST

START_TEST(t_synth_gpt2_family_shapes)
{
    /* the layer/head structure of gpt2-medium, -large and -xl with tiny
     * widths (head size 2), so the shape logic is exercised without GBs */
    static const struct {
        const char *shape;
        int C;
    } rows[] = {{"124M", 24}, {"medium", 32}, {"large", 40}, {"xl", 50}};
    for (size_t i = 0; i < 4; i++) {
        synth_opts o, full;
        ck_assert_int_eq(synth_opts_shape(&o, rows[i].shape), 0);
        full = o;
        o.n_embd = rows[i].C;
        o.vocab_size = 300;
        o.n_ctx = 8;
        o.tokenizer = 0;
        o.attn_bias = 0;
        o.dtype = (i % 2) ? SYNTH_BF16 : SYNTH_F32;
        char sub[32];
        snprintf(sub, sizeof sub, "s%zu", i);
        synth_into(sub, &o);
        gpt2_model m;
        load_sub(sub, &m);
        ck_assert_int_eq(m.cfg.n_layer, full.n_layer);
        ck_assert_int_eq(m.cfg.n_head, full.n_head);
        ck_assert_int_eq(m.cfg.n_embd / m.cfg.n_head, 2);
        ck_assert_uint_eq(m.n_params, count_formula((size_t)full.n_layer, (size_t)rows[i].C, 300, 8));
        ck_assert_ptr_nonnull(m.p.h[full.n_layer - 1].fc_proj_b);
        gpt2_free(&m);
        /* the full-size named shapes are the real GPT-2 sizes */
        gpt2_config c = {.n_layer = full.n_layer,
                         .n_head = full.n_head,
                         .n_embd = full.n_embd,
                         .n_inner = 4 * full.n_embd,
                         .n_ctx = full.n_ctx,
                         .vocab_size = full.vocab_size};
        static const size_t real[4] = {124439808, 354823168, 774030080, 1557611200};
        ck_assert_uint_eq(gpt2_param_count(&c), real[i]);
    }
}
END_TEST

START_TEST(t_synth_bad_options)
{
    synth_opts o;
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/bad", tmpdir);
    ck_assert_int_eq(synth_opts_shape(&o, "huge"), -1);
    synth_opts_shape(&o, "tiny");
    o.n_head = 3;
    ck_assert_int_eq(synth_write(d, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not divisible") != NULL, "%s", err);
    ck_assert_int_eq(access(d, F_OK), -1); /* nothing created */
    synth_opts_shape(&o, "tiny");
    o.vocab_size = 100; /* too small for a synthetic tokenizer */
    ck_assert_int_eq(synth_write(d, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "257") != NULL, "%s", err);
    synth_opts_shape(&o, "tiny");
    o.vocab_from = tmpdir; /* needs 50257 */
    ck_assert_int_eq(synth_write(d, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "50257") != NULL, "%s", err);
    synth_opts_shape(&o, "tiny");
    o.seed = (uint64_t)1 << 63;
    ck_assert_int_eq(synth_write(d, &o, err, sizeof err), -1);
    /* a file where the folder should be */
    write_file("afile", "x");
    snprintf(d, sizeof d, "%s/afile/sub", tmpdir);
    synth_opts_shape(&o, "tiny");
    o.tokenizer = 0;
    ck_assert_int_eq(synth_write(d, &o, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "afile") != NULL, "%s", err);
}
END_TEST

START_TEST(t_synth_vocab_from)
{
    /* a fake "real" vocabulary in the encoder.json / vocab.bpe naming */
    char p[512];
    snprintf(p, sizeof p, "%s/real", tmpdir);
    ck_assert_int_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/real/encoder.json", tmpdir);
    FILE *fp = fopen(p, "w");
    ck_assert_ptr_nonnull(fp);
    fputc('{', fp);
    for (int i = 0; i < 50257; i++) fprintf(fp, "%s\"t%d\": %d", i ? ", " : "", i, i);
    fputs("}\n", fp);
    fclose(fp);
    write_file("real/vocab.bpe", "#version: 0.2\nt 0\n");
    synth_opts o;
    synth_opts_shape(&o, "tiny");
    o.vocab_size = 50257;
    o.n_embd = 4;
    o.n_head = 1;
    o.n_layer = 1;
    o.n_ctx = 4;
    snprintf(p, sizeof p, "%s/real", tmpdir);
    o.vocab_from = p;
    synth_into("cp", &o);
    size_t la, lb;
    char *x = tt_read_in(tmpdir, "real/encoder.json", &la), *y = tt_read_in(tmpdir, "cp/vocab.json", &lb);
    ck_assert_uint_eq(la, lb);
    ck_assert_int_eq(memcmp(x, y, la), 0);
    TT_FREE(x, y);
    y = tt_read_in(tmpdir, "cp/merges.txt", &lb);
    ck_assert_str_eq(y, "#version: 0.2\nt 0\n");
    free(y);
    expect_vocab_size("cp", 50257);
}
END_TEST

START_TEST(t_synth_with_tokenizer)
{
    synth_opts o;
    synth_opts_shape(&o, "tiny");
    synth_into("tok", &o);
    char d[512], err[512];
    snprintf(d, sizeof d, "%s/tok", tmpdir);
    tokenizer *t = tokenizer_load(d, err, sizeof err);
    ck_assert_msg(t != NULL, "tokenizer_load: %s", err);
    ck_assert_int_eq(tokenizer_vocab_size(t), 512);
    ck_assert_int_eq(tokenizer_eot(t), 511);
    tokenizer_free(t);
    expect_vocab_size("tok", 512);
}
END_TEST

int main(void)
{
    const TTest *const load_tests[] = {t_load_f16_bf16_tensor,
                                       t_non_finite_weights,
                                       t_wrong_shape_wpe_vs_config,
                                       t_corrupt_safetensors,
                                       t_missing_files,
                                       t_bad_config,
                                       t_config_n_ctx_only_and_defaults,
                                       t_param_count_real_sizes,
                                       NULL};
    const TTest *const synth_tests[] = {t_synth_dtypes_and_prefix_agree,
                                        t_synth_init_statistics,
                                        t_synth_file_layout,
                                        t_synth_deterministic,
                                        t_synth_gpt2_family_shapes,
                                        t_synth_bad_options,
                                        t_synth_vocab_from,
                                        t_synth_with_tokenizer,
                                        t_lazy_f16_blocks,
                                        NULL};
    const tw_case cases[] = {
        {.name = "load",
         .timeout = 60,
         .setup = setup,
         .teardown = teardown,
         .tests = load_tests,
         .loops = (const tw_loop[]){{t_loads, sizeof loads / sizeof *loads},
                                    {t_refusals, sizeof refusals / sizeof *refusals},
                                    {NULL, 0}}},
        {.name = "synth", .timeout = 60, .setup = setup, .teardown = teardown, .tests = synth_tests},
    };
    return tw_check_main("gpt2_load", cases, 2);
}
