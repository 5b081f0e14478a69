#include "core/model/torch_ckpt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/fs.h"
#include "base/sort.h"

#define ORIG_MOD "_orig_mod."

/* "<path>: [tensor '<name>': ]<message>" */
static void ck_err(char *err, size_t errlen, const char *path, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void ck_err(char *err, size_t errlen, const char *path, const char *tensor, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (tensor) {
        char nm[ST_NAME_BUF];
        st_printable_name(nm, tensor);
        tw_set_err(err, errlen, "%s: tensor '%s': %s", path, nm, msg);
    } else {
        tw_set_err(err, errlen, "%s: %s", path, msg);
    }
}

/* ---- tensors ----------------------------------------------------------- */

const void *tc_tensor_elem(const tc_tensor *t, size_t i)
{
    size_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        size_t s = (size_t)t->shape[d];
        off += (i % s) * (size_t)t->stride[d];
        i /= s;
    }
    return (const uint8_t *)t->data + off * st_dtype_size(t->dtype);
}

int tc_tensor_to_f32(const tc_tensor *t, float *dst)
{
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) return -1;
    size_t es = st_dtype_size(t->dtype);
    size_t idx[PK_MAX_DIMS] = {0};
    size_t off = 0; /* element offset of idx */
    for (size_t i = 0; i < t->numel; i++) {
        const uint8_t *p = (const uint8_t *)t->data + off * es;
        switch (t->dtype) {
        case ST_F32: memcpy(&dst[i], p, 4); break;
        case ST_F16: dst[i] = st_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); break;
        case ST_BF16: dst[i] = st_bf16_to_f32((uint16_t)(p[0] | (p[1] << 8))); break;
        default: {
            double x;
            memcpy(&x, p, 8);
            dst[i] = (float)x;
        }
        }
        /* odometer over the logical index */
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < (size_t)t->shape[d]) {
                off += (size_t)t->stride[d];
                break;
            }
            off -= (idx[d] - 1) * (size_t)t->stride[d];
            idx[d] = 0;
        }
    }
    return 0;
}

/* Fills out->{dtype, shape, stride, numel, data, contiguous, span} from the
 * pickled tensor and its (validated) storage. */
static int layout_tensor(const torch_ckpt *c, const char *name, const pk_tensor *pt, const tc_storage *s,
                         tc_tensor *out, char *err, size_t errlen)
{
    const size_t es = st_dtype_size(s->dtype);
    out->dtype = s->dtype;
    out->ndim = pt->ndim;
    out->storage_offset = pt->offset;
    out->requires_grad = pt->requires_grad;
    uint64_t numel = 1, last = (uint64_t)pt->offset;
    int overflow = 0;
    for (int d = 0; d < pt->ndim; d++) {
        out->shape[d] = pt->shape[d];
        out->stride[d] = pt->stride[d];
        overflow |= __builtin_mul_overflow(numel, (uint64_t)pt->shape[d], &numel);
    }
    if (!overflow && numel > 0) {
        for (int d = 0; d < pt->ndim; d++) {
            uint64_t reach;
            overflow |= __builtin_mul_overflow((uint64_t)pt->shape[d] - 1, (uint64_t)pt->stride[d], &reach);
            overflow |= __builtin_add_overflow(last, reach, &last);
        }
    }
    if (overflow || numel > SIZE_MAX / es) {
        ck_err(err, errlen, c->path, name, "shape and strides overflow");
        return -1;
    }
    out->numel = (size_t)numel;
    /* stride-0 views (expand) can show more elements than the storage has;
     * one larger than the whole file would make any copy of it unbounded */
    if (numel * es > c->size) {
        ck_err(err, errlen, c->path, name,
               "%llu elements of %s (%llu bytes) are more than the "
               "%zu-byte file holds",
               (unsigned long long)numel, st_dtype_name(s->dtype), (unsigned long long)(numel * es), c->size);
        return -1;
    }
    if (numel == 0) {
        if ((uint64_t)pt->offset > s->numel) {
            ck_err(err, errlen, c->path, name,
                   "storage offset %lld is past the end of "
                   "storage '%s' (%zu elements)",
                   (long long)pt->offset, s->key, s->numel);
            return -1;
        }
        out->span_begin = out->span_end = (size_t)pt->offset * es;
    } else {
        if (last >= s->numel) {
            ck_err(err, errlen, c->path, name,
                   "elements reach index %llu of storage '%s', "
                   "which has %zu elements of %s",
                   (unsigned long long)last, s->key, s->numel, st_dtype_name(s->dtype));
            return -1;
        }
        out->span_begin = (size_t)pt->offset * es;
        out->span_end = ((size_t)last + 1) * es;
    }
    out->data = s->data + out->span_begin;
    int contig = 1;
    uint64_t expect = 1;
    for (int d = pt->ndim - 1; d >= 0 && numel > 0; d--) {
        if (pt->shape[d] == 1) continue;
        if ((uint64_t)pt->stride[d] != expect) {
            contig = 0;
            break;
        }
        expect *= (uint64_t)pt->shape[d];
    }
    out->contiguous = contig;
    return 0;
}

/* Looks up and checks the zip entry of a storage. */
static int resolve_storage(const torch_ckpt *c, const char *tensor, const pk_storage *ps, tc_storage *s,
                           char *err, size_t errlen)
{
    char name[ZIP_MAX_NAME + 300];
    snprintf(name, sizeof name, "%s/data/%s", c->prefix, ps->key);
    memset(s, 0, sizeof *s);
    s->key = ps->key;
    s->location = ps->location;
    s->dtype = ps->dtype;
    s->numel = (size_t)ps->numel;
    size_t es = st_dtype_size(ps->dtype);
    const zip_entry *e = zip_find(&c->zip, name);
    if (!e) {
        ck_err(err, errlen, c->path, tensor, "storage '%s' has no entry '%s' in the archive", ps->key, name);
        return -1;
    }
    char zerr[256];
    const uint8_t *data = zip_entry_data(&c->zip, e, zerr, sizeof zerr);
    if (!data) {
        ck_err(err, errlen, c->path, tensor, "storage '%s': %s", ps->key, zerr);
        return -1;
    }
    if ((uint64_t)ps->numel > SIZE_MAX / es) {
        ck_err(err, errlen, c->path, tensor, "storage '%s': %lld elements overflow", ps->key,
               (long long)ps->numel);
        return -1;
    }
    s->nbytes = (size_t)ps->numel * es;
    if (e->size != s->nbytes) {
        ck_err(err, errlen, c->path, tensor,
               "storage '%s' holds %llu bytes, but %zu elements "
               "of %s need %zu%s",
               ps->key, (unsigned long long)e->size, s->numel, st_dtype_name(s->dtype), s->nbytes,
               e->size < s->nbytes ? " (truncated?)" : "");
        return -1;
    }
    if ((uintptr_t)data % es != 0) {
        ck_err(err, errlen, c->path, tensor,
               "storage '%s' is not aligned to its %zu-byte "
               "elements",
               ps->key, es);
        return -1;
    }
    s->entry = e;
    s->data = data;
    return 0;
}

/* ---- the checkpoint ---------------------------------------------------- */

typedef struct {
    const char *key;
    size_t tensor;
} key_ref;

static int cmp_key_ref(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return x->tensor < y->tensor ? -1 : (x->tensor > y->tensor);
}

/* tensor indices by name, the tensor table as the context */
static int cmp_tensor_idx(const void *a, const void *b, const void *ts)
{
    const tc_tensor *t = ts;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static const char *kind_of(const pk_value *v) { return pk_kind_name(v->kind); }

/* The value under key of dict d into *v, NULL when absent: 0, or -1 when it
 * is there but not of kind want (PK_DICT: a dict or an OrderedDict). `what`
 * names it and `want_name` the kind in the message ("model_args 'bias' is a
 * str, not a bool"). */
static int optional_value(const torch_ckpt *c, const pk_value *d, const char *key, pk_kind want,
                          const char *what, const char *want_name, const pk_value **v, char *err,
                          size_t errlen)
{
    *v = pk_dict_get(d, key);
    if (!*v || (want == PK_DICT ? pk_is_dict(*v) : (*v)->kind == want)) return 0;
    ck_err(err, errlen, c->path, NULL, "%s is a %s, not %s", what, kind_of(*v), want_name);
    return -1;
}

static int read_int_arg(const torch_ckpt *c, const pk_value *args, const char *key, unsigned bit,
                        int64_t *out, unsigned *present, char *err, size_t errlen)
{
    const pk_value *v = pk_dict_get(args, key);
    if (!v) return 0;
    if (v->kind != PK_INT) {
        ck_err(err, errlen, c->path, NULL, "model_args '%s' is a %s, not an int", key, kind_of(v));
        return -1;
    }
    if (v->u.i < 1 || v->u.i > INT32_MAX) {
        ck_err(err, errlen, c->path, NULL, "model_args '%s' is %lld, not in 1..%d", key, (long long)v->u.i,
               INT32_MAX);
        return -1;
    }
    *out = v->u.i;
    *present |= bit;
    return 0;
}

static int read_model_args(torch_ckpt *c, const pk_value *a, char *err, size_t errlen)
{
    if (!pk_is_dict(a)) {
        ck_err(err, errlen, c->path, NULL, "model_args is a %s, not a dict", kind_of(a));
        return -1;
    }
    tc_model_args *m = &c->args;
    if (read_int_arg(c, a, "n_layer", TC_ARG_N_LAYER, &m->n_layer, &m->present, err, errlen) ||
        read_int_arg(c, a, "n_head", TC_ARG_N_HEAD, &m->n_head, &m->present, err, errlen) ||
        read_int_arg(c, a, "n_embd", TC_ARG_N_EMBD, &m->n_embd, &m->present, err, errlen) ||
        read_int_arg(c, a, "block_size", TC_ARG_BLOCK_SIZE, &m->block_size, &m->present, err, errlen) ||
        read_int_arg(c, a, "vocab_size", TC_ARG_VOCAB_SIZE, &m->vocab_size, &m->present, err, errlen))
        return -1;
    const pk_value *v;
    if (optional_value(c, a, "bias", PK_BOOL, "model_args 'bias'", "a bool", &v, err, errlen)) return -1;
    if (v) {
        m->bias = v->u.b;
        m->present |= TC_ARG_BIAS;
    }
    v = pk_dict_get(a, "dropout");
    if (v) {
        double d;
        if (v->kind == PK_FLOAT)
            d = v->u.f;
        else if (v->kind == PK_INT)
            d = (double)v->u.i;
        else {
            ck_err(err, errlen, c->path, NULL, "model_args 'dropout' is a %s, not a float", kind_of(v));
            return -1;
        }
        if (!(d >= 0.0 && d <= 1.0)) {
            ck_err(err, errlen, c->path, NULL, "model_args 'dropout' is %g, not in [0, 1]", d);
            return -1;
        }
        m->dropout = d;
        m->present |= TC_ARG_DROPOUT;
    }
    return 0;
}

/* best_val_loss: a number, or a 0-dim float tensor whose storage is read */
static int read_best_val_loss(torch_ckpt *c, const pk_value *v, char *err, size_t errlen)
{
    if (v->kind == PK_FLOAT || v->kind == PK_INT) {
        c->best_val_loss = v->kind == PK_FLOAT ? v->u.f : (double)v->u.i;
        c->has_best_val_loss = 1;
        return 0;
    }
    if (v->kind != PK_TENSOR) {
        ck_err(err, errlen, c->path, NULL, "best_val_loss is a %s, not a number or tensor", kind_of(v));
        return -1;
    }
    const pk_tensor *pt = v->u.tensor;
    tc_storage s;
    tc_tensor t;
    memset(&t, 0, sizeof t);
    if (resolve_storage(c, "best_val_loss", &pt->storage, &s, err, errlen) ||
        layout_tensor(c, "best_val_loss", pt, &s, &t, err, errlen))
        return -1;
    if (t.numel != 1) {
        ck_err(err, errlen, c->path, "best_val_loss", "has %zu elements, not 1", t.numel);
        return -1;
    }
    float f;
    if (t.dtype == ST_F64) {
        memcpy(&c->best_val_loss, t.data, 8);
    } else if (tc_tensor_to_f32(&t, &f) == 0) {
        c->best_val_loss = f;
    } else {
        ck_err(err, errlen, c->path, "best_val_loss", "is a %s tensor, not a float one",
               st_dtype_name(t.dtype));
        return -1;
    }
    c->has_best_val_loss = 1;
    return 0;
}

static int read_model(torch_ckpt *c, const pk_value *model, char *err, size_t errlen)
{
    if (!pk_is_dict(model)) {
        ck_err(err, errlen, c->path, NULL, "'model' is a %s, not a state dict", kind_of(model));
        return -1;
    }
    size_t n = model->u.dict.n;
    if (n == 0) {
        ck_err(err, errlen, c->path, NULL, "the model state dict is empty");
        return -1;
    }
    c->tensors = calloc(n, sizeof *c->tensors);
    c->by_name = malloc(n * sizeof *c->by_name);
    key_ref *refs = malloc(n * sizeof *refs);
    size_t *tmp = malloc(n * sizeof *tmp);
    int rc = -1;
    if (!c->tensors || !c->by_name || !refs || !tmp) {
        ck_err(err, errlen, c->path, NULL, "out of memory for %zu tensors", n);
        goto out;
    }
    /* names */
    for (size_t i = 0; i < n; i++) {
        const pk_value *k = model->u.dict.keys[i], *v = model->u.dict.vals[i];
        if (k->kind != PK_STR) {
            ck_err(err, errlen, c->path, NULL, "model state dict key %lld is not a string",
                   (long long)k->u.i);
            goto out;
        }
        const char *nm = k->u.str.s;
        size_t nl = k->u.str.len;
        if (nl == 0 || nl > TC_MAX_NAME || memchr(nm, 0, nl)) {
            ck_err(err, errlen, c->path, NULL,
                   "model state dict key '%.*s' is empty, longer "
                   "than %d bytes or holds a NUL",
                   nl > 40 ? 40 : (int)nl, nm, TC_MAX_NAME);
            goto out;
        }
        if (v->kind != PK_TENSOR) {
            ck_err(err, errlen, c->path, nm, "is a %s, not a tensor", kind_of(v));
            goto out;
        }
        if (nl > strlen(ORIG_MOD) && strncmp(nm, ORIG_MOD, strlen(ORIG_MOD)) == 0) {
            nm += strlen(ORIG_MOD);
            c->compiled = 1;
        }
        c->tensors[i].name = strdup(nm);
        if (!c->tensors[i].name) {
            ck_err(err, errlen, c->path, NULL, "out of memory");
            goto out;
        }
        c->n_tensors = i + 1;
        c->by_name[i] = i;
        refs[i] = (key_ref){v->u.tensor->storage.key, i};
    }
    tw_sort(c->by_name, tmp, n, sizeof *c->by_name, cmp_tensor_idx, c->tensors);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(c->tensors[c->by_name[i - 1]].name, c->tensors[c->by_name[i]].name) == 0) {
            ck_err(err, errlen, c->path, c->tensors[c->by_name[i]].name,
                   "appears twice (with and without the '" ORIG_MOD "' prefix)");
            goto out;
        }
    }
    /* storages: one per distinct key, every reference agreeing */
    qsort(refs, n, sizeof *refs, cmp_key_ref);
    c->storages = calloc(n, sizeof *c->storages);
    if (!c->storages) {
        ck_err(err, errlen, c->path, NULL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t ti = refs[i].tensor;
        const pk_storage *ps = &model->u.dict.vals[ti]->u.tensor->storage;
        const char *tname = c->tensors[ti].name;
        if (i == 0 || strcmp(refs[i - 1].key, refs[i].key) != 0) {
            tc_storage *s = &c->storages[c->n_storages];
            if (resolve_storage(c, tname, ps, s, err, errlen)) goto out;
            s->first_tensor = ti;
            c->n_storages++;
        } else {
            const tc_storage *s = &c->storages[c->n_storages - 1];
            if (ps->dtype != s->dtype || (size_t)ps->numel != s->numel) {
                ck_err(err, errlen, c->path, tname,
                       "uses storage '%s' as %lld elements of %s, "
                       "but tensor '%s' as %zu of %s",
                       ps->key, (long long)ps->numel, st_dtype_name(ps->dtype),
                       c->tensors[s->first_tensor].name, s->numel, st_dtype_name(s->dtype));
                goto out;
            }
        }
        c->tensors[ti].storage = c->n_storages - 1;
    }
    for (size_t i = 0; i < n; i++) {
        tc_tensor *t = &c->tensors[i];
        if (layout_tensor(c, t->name, model->u.dict.vals[i]->u.tensor, &c->storages[t->storage], t, err,
                          errlen))
            goto out;
    }
    rc = 0;
out:
    free(refs);
    free(tmp);
    return rc;
}

/* The decimal version record: "3\n" */
static int read_version(torch_ckpt *c, char *err, size_t errlen)
{
    char name[ZIP_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s/version", c->prefix);
    const zip_entry *e = zip_find(&c->zip, name);
    if (!e) {
        snprintf(name, sizeof name, "%s/.data/version", c->prefix);
        e = zip_find(&c->zip, name);
    }
    if (!e) {
        ck_err(err, errlen, c->path, NULL, "no '%s/version' record (not written by torch.save?)", c->prefix);
        return -1;
    }
    char zerr[256];
    const uint8_t *d = zip_entry_data(&c->zip, e, zerr, sizeof zerr);
    if (!d) {
        ck_err(err, errlen, c->path, NULL, "%s", zerr);
        return -1;
    }
    size_t n = (size_t)e->size;
    while (n > 0 && (d[n - 1] == '\n' || d[n - 1] == '\r')) n--;
    int v = 0;
    if (n == 0 || n > 6) goto bad;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9') goto bad;
        v = v * 10 + (d[i] - '0');
    }
    c->format_version = v;
    return 0;
bad:
    ck_err(err, errlen, c->path, NULL, "version record '%s' is not a decimal number", name);
    return -1;
}

static int read_byteorder(torch_ckpt *c, char *err, size_t errlen)
{
    char name[ZIP_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s/byteorder", c->prefix);
    const zip_entry *e = zip_find(&c->zip, name);
    if (!e) return 0; /* before torch 2.1: always little-endian */
    char zerr[256];
    const uint8_t *d = zip_entry_data(&c->zip, e, zerr, sizeof zerr);
    if (!d) {
        ck_err(err, errlen, c->path, NULL, "%s", zerr);
        return -1;
    }
    if (e->size == 6 && memcmp(d, "little", 6) == 0) return 0;
    if (e->size == 3 && memcmp(d, "big", 3) == 0) {
        ck_err(err, errlen, c->path, NULL, "big-endian checkpoints are not supported");
        return -1;
    }
    ck_err(err, errlen, c->path, NULL, "byteorder record is neither 'little' nor 'big'");
    return -1;
}

static int ckpt_parse(torch_ckpt *c, char *err, size_t errlen)
{
    char zerr[400];
    if (zip_open_mem(&c->zip, c->map, c->size, zerr, sizeof zerr)) {
        ck_err(err, errlen, c->path, NULL, "%s", zerr);
        return -1;
    }
    if (c->zip.n_entries == 0) {
        ck_err(err, errlen, c->path, NULL, "the zip archive is empty");
        return -1;
    }
    const zip_entry *first = &c->zip.entries[0];
    const char *slash = memchr(first->name, '/', first->name_len);
    if (!slash || slash == first->name) {
        char nm[ZIP_NAME_BUF];
        zip_printable(nm, first->name, first->name_len);
        ck_err(err, errlen, c->path, NULL,
               "first entry '%s' is not inside a record folder "
               "(not written by torch.save?)",
               nm);
        return -1;
    }
    c->prefix = strndup(first->name, (size_t)(slash - first->name));
    if (!c->prefix) {
        ck_err(err, errlen, c->path, NULL, "out of memory");
        return -1;
    }
    char name[ZIP_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s/constants.pkl", c->prefix);
    if (zip_find(&c->zip, name)) {
        ck_err(err, errlen, c->path, NULL,
               "a TorchScript archive (torch.jit.save), not a "
               "torch.save checkpoint");
        return -1;
    }
    snprintf(name, sizeof name, "%s/data.pkl", c->prefix);
    const zip_entry *pe = zip_find(&c->zip, name);
    if (!pe) {
        ck_err(err, errlen, c->path, NULL, "no '%s' in the archive (not written by torch.save?)", name);
        return -1;
    }
    if (read_version(c, err, errlen) || read_byteorder(c, err, errlen)) return -1;
    const uint8_t *pkl = zip_entry_data(&c->zip, pe, zerr, sizeof zerr);
    if (!pkl) {
        ck_err(err, errlen, c->path, NULL, "%s", zerr);
        return -1;
    }
    if (pe->size > TC_MAX_PICKLE) {
        ck_err(err, errlen, c->path, NULL, "%s is %llu bytes, more than the limit of %zu", name,
               (unsigned long long)pe->size, TC_MAX_PICKLE);
        return -1;
    }
    pk_options opt = {.torch = 1};
    if (pk_parse(pkl, (size_t)pe->size, &opt, &c->doc, zerr, sizeof zerr)) {
        ck_err(err, errlen, c->path, NULL, "%s", zerr);
        return -1;
    }
    const pk_value *root = pk_root(c->doc);
    if (!pk_is_dict(root)) {
        ck_err(err, errlen, c->path, NULL, "data.pkl holds a %s, not a dict", kind_of(root));
        return -1;
    }
    const pk_value *model = pk_dict_get(root, "model");
    if (!model) {
        /* a bare state dict: every value a tensor */
        int bare = root->u.dict.n > 0;
        for (size_t i = 0; i < root->u.dict.n && bare; i++) bare = root->u.dict.vals[i]->kind == PK_TENSOR;
        if (!bare) {
            ck_err(err, errlen, c->path, NULL, "no 'model' state dict in the checkpoint");
            return -1;
        }
        c->bare_state_dict = 1;
        return read_model(c, root, err, errlen);
    }
    if (read_model(c, model, err, errlen)) return -1;

    const pk_value *v = pk_dict_get(root, "model_args");
    if (v && read_model_args(c, v, err, errlen)) return -1;
    if (optional_value(c, root, "config", PK_DICT, "config", "a dict", &v, err, errlen)) return -1;
    if (v) {
        const pk_value *ds;
        if (optional_value(c, v, "dataset", PK_STR, "config 'dataset'", "a str", &ds, err, errlen)) return -1;
        if (ds) {
            c->dataset = strdup(ds->u.str.s);
            if (!c->dataset) {
                ck_err(err, errlen, c->path, NULL, "out of memory");
                return -1;
            }
        }
    }
    if (optional_value(c, root, "iter_num", PK_INT, "iter_num", "an int", &v, err, errlen)) return -1;
    if (v) {
        c->iter_num = v->u.i;
        c->has_iter_num = 1;
    }
    v = pk_dict_get(root, "best_val_loss");
    if (v && read_best_val_loss(c, v, err, errlen)) return -1;
    return 0;
}

int torch_ckpt_open_mem(const void *buf, size_t len, const char *label, torch_ckpt *c, char *err,
                        size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->path = strdup(label);
    if (!c->path) {
        ck_err(err, errlen, label, NULL, "out of memory");
        return -1;
    }
    c->map = buf;
    c->size = len;
    if (ckpt_parse(c, err, errlen)) {
        torch_ckpt_close(c);
        return -1;
    }
    return 0;
}

int torch_ckpt_open(const char *path, torch_ckpt *c, char *err, size_t errlen)
{
    const void *map = NULL;
    size_t size = 0;
    memset(c, 0, sizeof *c);
    if (fs_map_file(path, TC_MAX_FILE, &map, &size, err, errlen) ||
        torch_ckpt_open_mem(map, size, path, c, err, errlen)) {
        fs_unmap_file(map, size);
        return -1;
    }
    c->owns_map = 1;
    return 0;
}

/* The tensor table: names, entries, the name index and the storages. */
static void tensor_table_free(torch_ckpt *c)
{
    for (size_t i = 0; i < c->n_tensors; i++) free(c->tensors[i].name);
    free(c->tensors);
    free(c->by_name);
    free(c->storages);
}

void torch_ckpt_close(torch_ckpt *c)
{
    if (!c) return;
    if (c->owns_map) fs_unmap_file(c->map, c->size);
    tensor_table_free(c);
    free(c->prefix);
    free(c->dataset);
    free(c->path);
    pk_free(c->doc);
    zip_close(&c->zip);
    memset(c, 0, sizeof *c);
}

static int cmp_name_idx(const void *name, const void *i, const void *ts)
{
    const tc_tensor *t = ts;
    return strcmp(name, t[*(const size_t *)i].name);
}

const tc_tensor *torch_ckpt_find(const torch_ckpt *c, const char *name)
{
    const size_t *i = tw_search(name, c->by_name, c->n_tensors, sizeof *c->by_name, cmp_name_idx, c->tensors);
    return i ? &c->tensors[*i] : NULL;
}

int torch_ckpt_verify_crc(const torch_ckpt *c, char *err, size_t errlen)
{
    char name[ZIP_MAX_NAME + 32];
    snprintf(name, sizeof name, "%s/data.pkl", c->prefix);
    const zip_entry *pe = zip_find(&c->zip, name);
    uint32_t got;
    if (pe && zip_entry_crc_ok(&c->zip, pe, &got) != 1) {
        ck_err(err, errlen, c->path, NULL,
               "entry '%s' fails its CRC-32 check (recorded 0x%08x, "
               "computed 0x%08x)",
               name, pe->crc32, got);
        return -1;
    }
    for (size_t i = 0; i < c->n_storages; i++) {
        const tc_storage *s = &c->storages[i];
        if (zip_entry_crc_ok(&c->zip, s->entry, &got) != 1) {
            char en[ZIP_NAME_BUF];
            zip_printable(en, s->entry->name, s->entry->name_len);
            ck_err(err, errlen, c->path, c->tensors[s->first_tensor].name,
                   "storage entry '%s' fails its CRC-32 check (recorded 0x%08x, computed "
                   "0x%08x)",
                   en, s->entry->crc32, got);
            return -1;
        }
    }
    return 0;
}

/* ---- meta.pkl ---------------------------------------------------------- */

/* ids by their strings, the vocabulary as the context */
static int cmp_id(const void *a, const void *b, const void *meta)
{
    const tc_meta *m = meta;
    int x = *(const int *)a, y = *(const int *)b;
    return tw_bytes_cmp(m->itos[x], m->itos_len[x], m->itos[y], m->itos_len[y]);
}

typedef struct {
    const char *s;
    size_t len;
} str_key;

static int cmp_key_id(const void *key, const void *id, const void *meta)
{
    const tc_meta *m = meta;
    const str_key *k = key;
    int y = *(const int *)id;
    return tw_bytes_cmp(k->s, k->len, m->itos[y], m->itos_len[y]);
}

int meta_pkl_lookup(const tc_meta *m, const char *s, size_t len)
{
    const int *id =
        tw_search(&(str_key){s, len}, m->by_str, (size_t)m->vocab_size, sizeof *m->by_str, cmp_key_id, m);
    return id ? *id : -1;
}

void meta_pkl_free(tc_meta *m)
{
    if (!m) return;
    if (m->itos) free(m->itos[0]); /* the one block of strings */
    free(m->itos);
    free(m->itos_len);
    free(m->by_str);
    memset(m, 0, sizeof *m);
}

/* The three entries of meta.pkl: vocab_size in 1..TC_MAX_VOCAB and the
 * dicts itos and stoi, each of vocab_size entries. */
static int meta_entries(const pk_value *root, const char *label, size_t *V, const pk_value **itos,
                        const pk_value **stoi, char *err, size_t errlen)
{
    if (!pk_is_dict(root)) {
        ck_err(err, errlen, label, NULL, "meta.pkl holds a %s, not a dict", kind_of(root));
        return -1;
    }
    const pk_value *vs = pk_dict_get(root, "vocab_size");
    *itos = pk_dict_get(root, "itos");
    *stoi = pk_dict_get(root, "stoi");
    if (!vs || !*itos || !*stoi) {
        ck_err(err, errlen, label, NULL, "meta.pkl lacks '%s'",
               !vs      ? "vocab_size"
               : !*itos ? "itos"
                        : "stoi");
        return -1;
    }
    if (vs->kind != PK_INT || vs->u.i < 1 || vs->u.i > TC_MAX_VOCAB) {
        ck_err(err, errlen, label, NULL, "vocab_size is not an int in 1..%d", TC_MAX_VOCAB);
        return -1;
    }
    *V = (size_t)vs->u.i;
    if (!pk_is_dict(*itos) || !pk_is_dict(*stoi)) {
        const pk_value *bad = pk_is_dict(*itos) ? *stoi : *itos;
        ck_err(err, errlen, label, NULL, "%s is a %s, not a dict", bad == *itos ? "itos" : "stoi",
               kind_of(bad));
        return -1;
    }
    if ((*itos)->u.dict.n != *V || (*stoi)->u.dict.n != *V) {
        ck_err(err, errlen, label, NULL, "itos has %zu entries and stoi %zu, but vocab_size is %zu",
               (*itos)->u.dict.n, (*stoi)->u.dict.n, *V);
        return -1;
    }
    return 0;
}

/* itos: ids 0..V-1 (keys are unique, so V in-range keys are all of them),
 * their strings into by_id, the bytes they take with NULs into *total. */
static int itos_by_id(const pk_value *itos, size_t V, const char *label, const pk_value **by_id,
                      size_t *total, char *err, size_t errlen)
{
    *total = 0;
    for (size_t i = 0; i < V; i++) {
        const pk_value *k = itos->u.dict.keys[i], *v = itos->u.dict.vals[i];
        if (k->kind != PK_INT || k->u.i < 0 || (uint64_t)k->u.i >= V) {
            ck_err(err, errlen, label, NULL, "itos key %zu is not an id in 0..%zu", i, V - 1);
            return -1;
        }
        if (v->kind != PK_STR) {
            ck_err(err, errlen, label, NULL, "itos[%lld] is a %s, not a str", (long long)k->u.i, kind_of(v));
            return -1;
        }
        by_id[k->u.i] = v;
        *total += v->u.str.len + 1;
    }
    return 0;
}

/* stoi: every entry (s, i) has itos[i] == s; with V unique keys that makes
 * stoi the exact inverse of itos. */
static int stoi_inverts(const pk_value *stoi, size_t V, const char *label, const pk_value *const *by_id,
                        char *err, size_t errlen)
{
    for (size_t i = 0; i < V; i++) {
        const pk_value *k = stoi->u.dict.keys[i], *v = stoi->u.dict.vals[i];
        if (k->kind != PK_STR || v->kind != PK_INT || v->u.i < 0 || (uint64_t)v->u.i >= V) {
            ck_err(err, errlen, label, NULL, "stoi entry %zu is not a str -> id in 0..%zu", i, V - 1);
            return -1;
        }
        const pk_value *s = by_id[v->u.i];
        if (tw_bytes_cmp(s->u.str.s, s->u.str.len, k->u.str.s, k->u.str.len) != 0) {
            char a[ZIP_NAME_BUF], b[ZIP_NAME_BUF];
            zip_printable(a, k->u.str.s, k->u.str.len);
            zip_printable(b, s->u.str.s, s->u.str.len);
            ck_err(err, errlen, label, NULL, "stoi['%s'] is %lld, but itos[%lld] is '%s'", a,
                   (long long)v->u.i, (long long)v->u.i, b);
            return -1;
        }
    }
    return 0;
}

/* m's strings in one block of `total` bytes, by id, and the ids in string
 * order for meta_pkl_lookup. */
static int meta_fill(tc_meta *m, size_t V, const pk_value *const *by_id, size_t total, const char *label,
                     char *err, size_t errlen)
{
    m->vocab_size = (int)V;
    m->itos = calloc(V, sizeof *m->itos);
    m->itos_len = malloc(V * sizeof *m->itos_len);
    m->by_str = malloc(V * sizeof *m->by_str);
    char *block = malloc(total);
    int *tmp = malloc(V * sizeof *tmp);
    if (!m->itos || !m->itos_len || !m->by_str || !block || !tmp) {
        free(block);
        free(tmp);
        ck_err(err, errlen, label, NULL, "out of memory");
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < V; i++) {
        m->itos[i] = block + used;
        m->itos_len[i] = by_id[i]->u.str.len;
        memcpy(block + used, by_id[i]->u.str.s, m->itos_len[i] + 1);
        used += m->itos_len[i] + 1;
        m->by_str[i] = (int)i;
    }
    tw_sort(m->by_str, tmp, V, sizeof *m->by_str, cmp_id, m);
    free(tmp);
    return 0;
}

static int meta_from_doc(const pk_value *root, const char *label, tc_meta *m, char *err, size_t errlen)
{
    size_t V, total;
    const pk_value *itos, *stoi;
    if (meta_entries(root, label, &V, &itos, &stoi, err, errlen) != 0) return -1;
    const pk_value **by_id = calloc(V, sizeof *by_id);
    if (!by_id) {
        ck_err(err, errlen, label, NULL, "out of memory");
        return -1;
    }
    int rc = itos_by_id(itos, V, label, by_id, &total, err, errlen);
    if (rc == 0) rc = stoi_inverts(stoi, V, label, by_id, err, errlen);
    if (rc == 0) rc = meta_fill(m, V, by_id, total, label, err, errlen);
    free(by_id);
    return rc;
}

int meta_pkl_parse(const void *buf, size_t len, const char *label, tc_meta *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    pk_doc *doc;
    char perr[400];
    if (pk_parse(buf, len, NULL, &doc, perr, sizeof perr)) {
        ck_err(err, errlen, label, NULL, "%s", perr);
        return -1;
    }
    int rc = meta_from_doc(pk_root(doc), label, m, err, errlen);
    pk_free(doc);
    if (rc) meta_pkl_free(m);
    return rc;
}

int meta_pkl_load(const char *path, tc_meta *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    const void *map;
    size_t size;
    if (fs_map_file(path, TC_MAX_META, &map, &size, err, errlen)) return -1;
    int rc = meta_pkl_parse(map, size, path, m, err, errlen);
    fs_unmap_file(map, size);
    return rc;
}
