/* twd-ckpt: dumps a nanoGPT checkpoint (ckpt.pt) or meta.pkl as JSON.
 *
 *   twd-ckpt [--verify] [--values] CKPT
 *   twd-ckpt --meta META
 *
 * CKPT: the tensor table of the model state dict (name, dtype, shape,
 * stride, storage offset and key, contiguity, byte span, and the sum, first
 * and last value), model_args, config.dataset, iter_num and best_val_loss.
 * --values adds every tensor's values in row-major logical order (non-finite
 * floats as the strings "nan", "inf", "-inf"); --verify checks the CRC-32 of
 * data.pkl and of every storage the model uses.
 * META: vocab_size and the itos table.
 * tests/ref/torch_ckpt_ref.py compares the output with torch.load.
 * Exit status 0 on success, 1 when the file is refused (one line on
 * stderr), 2 on a bad argument. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/torch_ckpt.h"
#include "tool_common.h"

static const tool_help help = {"usage: twd-ckpt [--verify] [--values] CKPT\n"
                               "       twd-ckpt --meta META\n",
                               "Prints a nanoGPT checkpoint's tensor table, model_args and config as JSON.\n"
                               "\n"
                               "  --verify     also check the CRC-32 of data.pkl and the model's storages\n"
                               "  --values     also print every tensor's values\n"
                               "  --meta META  print a nanoGPT meta.pkl (the character vocabulary) instead\n"
                               "  -h, --help   this text\n"};

typedef struct {
    int verify, values;
    const char *meta, *ckpt;
} ckpt_args;

static int parse_args(int argc, char **argv, void *ctx)
{
    ckpt_args *a = ctx;
    const tool_opt opts[] = {OPT_FLAG("verify", &a->verify), OPT_FLAG("values", &a->values),
                             OPT_STR("meta", &a->meta), OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, TOOL_ANY_OPERANDS);
    if (rc) return rc;
    if (optind < argc) a->ckpt = argv[optind++];
    if (optind < argc || !!a->meta == !!a->ckpt) {
        tool_usage(stderr, &help);
        return -1;
    }
    return 0;
}

static json_t *num(double x)
{
    if (isnan(x)) return json_string("nan");
    if (isinf(x)) return json_string(x > 0 ? "inf" : "-inf");
    return json_real(x);
}

/* element at p as JSON, and as a double in *d */
static json_t *elem_json(st_dtype dt, const void *p, double *d)
{
    const uint8_t *b = p;
    int64_t i;
    switch (dt) {
    case ST_F32: {
        float f;
        memcpy(&f, p, 4);
        *d = f;
        return num(*d);
    }
    case ST_F64: memcpy(d, p, 8); return num(*d);
    case ST_F16: *d = st_f16_to_f32((uint16_t)(b[0] | (b[1] << 8))); return num(*d);
    case ST_BF16: *d = st_bf16_to_f32((uint16_t)(b[0] | (b[1] << 8))); return num(*d);
    case ST_BOOL: *d = b[0] != 0; return json_boolean(b[0] != 0);
    case ST_U8: i = b[0]; break;
    case ST_I8: i = (int8_t)b[0]; break;
    case ST_I16: {
        int16_t x;
        memcpy(&x, p, 2);
        i = x;
        break;
    }
    case ST_I32: {
        int32_t x;
        memcpy(&x, p, 4);
        i = x;
        break;
    }
    case ST_I64: memcpy(&i, p, 8); break;
    default: *d = NAN; return json_null();
    }
    *d = (double)i;
    return json_integer(i);
}

static void elem_double(st_dtype dt, const void *p, double *d)
{
    if (dt == ST_F32) {
        float f;
        memcpy(&f, p, 4);
        *d = f;
        return;
    }
    json_decref(elem_json(dt, p, d));
}

static json_t *int_array(const int64_t *a, int n)
{
    json_t *j = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(j, json_integer(a[i]));
    return j;
}

static json_t *tensor_json(const torch_ckpt *c, const tc_tensor *t, int values)
{
    const tc_storage *s = &c->storages[t->storage];
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(t->name));
    json_object_set_new(j, "dtype", json_string(st_dtype_name(t->dtype)));
    json_object_set_new(j, "shape", int_array(t->shape, t->ndim));
    json_object_set_new(j, "stride", int_array(t->stride, t->ndim));
    json_object_set_new(j, "storage_offset", json_integer(t->storage_offset));
    json_object_set_new(j, "storage", json_string(s->key));
    json_object_set_new(j, "location", json_string(s->location));
    json_object_set_new(j, "storage_numel", json_integer((json_int_t)s->numel));
    json_object_set_new(j, "numel", json_integer((json_int_t)t->numel));
    json_object_set_new(j, "contiguous", json_boolean(t->contiguous));
    json_object_set_new(j, "requires_grad", json_boolean(t->requires_grad));
    json_t *span = json_array();
    json_array_append_new(span, json_integer((json_int_t)t->span_begin));
    json_array_append_new(span, json_integer((json_int_t)t->span_end));
    json_object_set_new(j, "span", span);
    double sum = 0, d;
    json_t *vals = values ? json_array() : NULL;
    for (size_t i = 0; i < t->numel; i++) {
        const void *p = tc_tensor_elem(t, i);
        if (vals || i == 0 || i + 1 == t->numel) {
            json_t *e = elem_json(t->dtype, p, &d);
            if (i == 0) json_object_set(j, "first", e);
            if (i + 1 == t->numel) json_object_set(j, "last", e);
            if (vals) json_array_append(vals, e);
            json_decref(e);
        } else {
            elem_double(t->dtype, p, &d);
        }
        sum += d;
    }
    json_object_set_new(j, "sum", num(sum));
    if (vals) json_object_set_new(j, "values", vals);
    return j;
}

static int dump_ckpt(const char *path, int verify, int values)
{
    torch_ckpt c;
    char err[1024];
    if (torch_ckpt_open(path, &c, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (verify && torch_ckpt_verify_crc(&c, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        torch_ckpt_close(&c);
        return 1;
    }
    json_t *j = json_object();
    json_object_set_new(j, "prefix", json_string(c.prefix));
    json_object_set_new(j, "format_version", json_integer(c.format_version));
    json_object_set_new(j, "compiled", json_boolean(c.compiled));
    json_object_set_new(j, "bare_state_dict", json_boolean(c.bare_state_dict));
    json_t *a = json_object();
    const tc_model_args *m = &c.args;
    if (m->present & TC_ARG_N_LAYER) json_object_set_new(a, "n_layer", json_integer(m->n_layer));
    if (m->present & TC_ARG_N_HEAD) json_object_set_new(a, "n_head", json_integer(m->n_head));
    if (m->present & TC_ARG_N_EMBD) json_object_set_new(a, "n_embd", json_integer(m->n_embd));
    if (m->present & TC_ARG_BLOCK_SIZE) json_object_set_new(a, "block_size", json_integer(m->block_size));
    if (m->present & TC_ARG_BIAS) json_object_set_new(a, "bias", json_boolean(m->bias));
    if (m->present & TC_ARG_VOCAB_SIZE) json_object_set_new(a, "vocab_size", json_integer(m->vocab_size));
    if (m->present & TC_ARG_DROPOUT) json_object_set_new(a, "dropout", json_real(m->dropout));
    json_object_set_new(j, "model_args", a);
    json_object_set_new(j, "dataset", c.dataset ? json_string(c.dataset) : json_null());
    json_object_set_new(j, "iter_num", c.has_iter_num ? json_integer(c.iter_num) : json_null());
    json_object_set_new(j, "best_val_loss", c.has_best_val_loss ? num(c.best_val_loss) : json_null());
    json_object_set_new(j, "n_storages", json_integer((json_int_t)c.n_storages));
    if (verify) json_object_set_new(j, "crc", json_string("ok"));
    json_t *ts = json_array();
    for (size_t i = 0; i < c.n_tensors; i++)
        json_array_append_new(ts, tensor_json(&c, &c.tensors[i], values));
    json_object_set_new(j, "tensors", ts);
    int rc = json_dumpf(j, stdout, JSON_COMPACT) == 0 ? 0 : 1;
    printf("\n");
    json_decref(j);
    torch_ckpt_close(&c);
    return rc;
}

static int dump_meta(const char *path)
{
    tc_meta m;
    char err[1024];
    if (meta_pkl_load(path, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    json_t *j = json_object();
    json_object_set_new(j, "vocab_size", json_integer(m.vocab_size));
    json_t *itos = json_array();
    int lookup_ok = 1;
    for (int i = 0; i < m.vocab_size; i++) {
        json_array_append_new(itos, json_stringn(m.itos[i], m.itos_len[i]));
        lookup_ok &= meta_pkl_lookup(&m, m.itos[i], m.itos_len[i]) == i;
    }
    json_object_set_new(j, "itos", itos);
    json_object_set_new(j, "lookup_ok", json_boolean(lookup_ok));
    int rc = json_dumpf(j, stdout, JSON_COMPACT) == 0 ? 0 : 1;
    printf("\n");
    json_decref(j);
    meta_pkl_free(&m);
    return rc;
}

int main(int argc, char **argv)
{
    ckpt_args a = {0};
    int rc = tool_start("twd-ckpt", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    return a.meta ? dump_meta(a.meta) : dump_ckpt(a.ckpt, a.verify, a.values);
}
