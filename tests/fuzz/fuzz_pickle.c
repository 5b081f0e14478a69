/* libFuzzer entry point for core/model/pickle (and meta.pkl validation).
 *
 * The input is parsed twice, with and without the torch globals allowed,
 * and as a meta.pkl. A parsed tree is walked (bounded: values may be shared,
 * so an unbounded walk could take exponential time) to touch every field.
 *
 * Built with -Dfuzz=true (tests/fuzz/meson.build); run with
 *   scripts/fuzz 60 pickle
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/model/pickle.h"
#include "core/model/torch_ckpt.h"

static size_t budget;

static uint64_t walk(const pk_value *v, int depth)
{
    if (budget == 0) return 0;
    budget--;
    uint64_t h = (uint64_t)v->kind * 31u + (uint64_t)depth;
    switch (v->kind) {
    case PK_BOOL: h += (uint64_t)v->u.b; break;
    case PK_INT: h += (uint64_t)v->u.i; break;
    case PK_FLOAT: h += (uint64_t)(v->u.f == v->u.f); break;
    case PK_STR:
    case PK_BYTES:
        h += v->u.str.len;
        if (v->u.str.len) h += (unsigned char)v->u.str.s[v->u.str.len - 1];
        h += (unsigned char)v->u.str.s[v->u.str.len]; /* the NUL terminator */
        break;
    case PK_TUPLE:
    case PK_LIST:
    case PK_SET:
        for (size_t i = 0; i < v->u.seq.n; i++) h += walk(v->u.seq.items[i], depth + 1);
        break;
    case PK_DICT:
    case PK_ODICT:
        for (size_t i = 0; i < v->u.dict.n; i++)
            h += walk(v->u.dict.keys[i], depth + 1) + walk(v->u.dict.vals[i], depth + 1);
        if (v->u.dict.attrs) h += walk(v->u.dict.attrs, depth + 1);
        h += pk_dict_get(v, "model") != NULL;
        h += pk_dict_get_int(v, 0) != NULL;
        break;
    case PK_GLOBAL: h += (uint64_t)v->u.global.id; break;
    case PK_STORAGE:
        h += strlen(v->u.storage->key) + strlen(v->u.storage->location) + (uint64_t)v->u.storage->numel;
        break;
    case PK_TENSOR: {
        const pk_tensor *t = v->u.tensor;
        h += (uint64_t)t->ndim + (uint64_t)t->offset + strlen(t->storage.key);
        for (int i = 0; i < t->ndim; i++) h += (uint64_t)(t->shape[i] ^ t->stride[i]);
        break;
    }
    default: break;
    }
    if (depth > PK_DEFAULT_MAX_DEPTH + 1) abort(); /* the parser bounds nesting */
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy, so that any overread is caught */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    char err[256];
    for (int torch = 0; torch < 2; torch++) {
        pk_options o = {.torch = torch};
        pk_doc *d = NULL;
        if (pk_parse(copy, size, &o, &d, err, sizeof err) == 0) {
            budget = 100000;
            volatile uint64_t h = walk(pk_root(d), 0);
            (void)h;
            pk_free(d);
        } else if (d != NULL || strchr(err, '\n') || strncmp(err, "pickle: ", 8) != 0) {
            abort();
        }
    }
    tc_meta m;
    if (meta_pkl_parse(copy, size, "fuzz", &m, err, sizeof err) == 0) {
        for (int i = 0; i < m.vocab_size; i++)
            if (meta_pkl_lookup(&m, m.itos[i], m.itos_len[i]) != i) abort();
        meta_pkl_free(&m);
    }
    free(copy);
    return 0;
}
