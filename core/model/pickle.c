#include "core/model/pickle.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"

/* ---- arena ------------------------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    max_align_t data[];
} chunk;

#define CHUNK_MIN ((size_t)64 << 10)

/* A value with the bookkeeping of the final validation pass. Every pk_value
 * is allocated as one of these, so a pk_value * converts back. */
typedef struct {
    pk_value v;
    uint32_t height; /* nesting height, valid when color == 2 */
    uint8_t color;   /* 0 unseen, 1 on the walk's path, 2 done */
    uint8_t frozen;  /* tuple, frozenset: no APPEND/ADDITEMS */
} node;

struct pk_doc {
    chunk *chunks;
    pk_value *root;
    size_t n_values;
};

static void *arena_alloc(pk_doc *d, size_t n)
{
    const size_t al = sizeof(max_align_t);
    if (n > SIZE_MAX - al) return NULL;
    n = (n + al - 1) / al * al;
    chunk *c = d->chunks;
    if (!c || c->size - c->used < n) {
        size_t sz = n > CHUNK_MIN ? n : CHUNK_MIN;
        if (c && c->size < ((size_t)1 << 24) && sz < c->size * 2) sz = c->size * 2;
        c = malloc(sizeof(chunk) + sz);
        if (!c) return NULL;
        c->size = sz;
        c->used = 0;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void pk_free(pk_doc *d)
{
    if (!d) return;
    chunk *c = d->chunks;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    free(d);
}

const pk_value *pk_root(const pk_doc *d) { return d ? d->root : NULL; }

size_t pk_doc_values(const pk_doc *d) { return d ? d->n_values : 0; }

/* ---- opcodes ----------------------------------------------------------- */

/* By byte value. Protocols 0 and 1 use printable bytes; 2 and later add
 * 0x80 and up, and BINBYTES and SHORT_BINBYTES (protocol 3). */
enum {
    OP_MARK = '(',
    OP_EMPTY_TUPLE = ')',
    OP_STOP = '.',
    OP_POP = '0',
    OP_POP_MARK = '1',
    OP_DUP = '2',
    OP_BINBYTES = 'B',
    OP_SHORT_BINBYTES = 'C',
    OP_FLOAT = 'F',
    OP_BINFLOAT = 'G',
    OP_INT = 'I',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_LONG = 'L',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_PERSID = 'P',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_STRING = 'S',
    OP_BINSTRING = 'T',
    OP_SHORT_BINSTRING = 'U',
    OP_UNICODE = 'V',
    OP_BINUNICODE = 'X',
    OP_EMPTY_LIST = ']',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_DICT = 'd',
    OP_APPENDS = 'e',
    OP_GET = 'g',
    OP_BINGET = 'h',
    OP_INST = 'i',
    OP_LONG_BINGET = 'j',
    OP_LIST = 'l',
    OP_OBJ = 'o',
    OP_PUT = 'p',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_SETITEMS = 'u',
    OP_EMPTY_DICT = '}',
    OP_PROTO = 0x80,
    OP_NEWOBJ = 0x81,
    OP_EXT1 = 0x82,
    OP_EXT2 = 0x83,
    OP_EXT4 = 0x84,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e,
    OP_EMPTY_SET = 0x8f,
    OP_ADDITEMS = 0x90,
    OP_FROZENSET = 0x91,
    OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
    OP_BYTEARRAY8 = 0x96,
    OP_NEXT_BUFFER = 0x97,
    OP_READONLY_BUFFER = 0x98,
};

static const char *op_name(int op);

/* ---- the machine ------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    size_t op_pos; /* where the current opcode starts */
    int op;
    pk_options o;
    pk_doc *doc;
    pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t n_marks;
    pk_value **memo;
    size_t memo_cap, memo_count;
    size_t str_bytes;
    pk_value *none, *yes, *no;
    int stopped; /* STOP has been run */
    char *err;
    size_t errlen;
} unpickler;

static int fail(unpickler *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(unpickler *u, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *on = op_name(u->op);
    if (on)
        tw_set_err(u->err, u->errlen, "pickle: %s (%s at byte %zu)", msg, on, u->op_pos);
    else
        tw_set_err(u->err, u->errlen, "pickle: %s (at byte %zu)", msg, u->op_pos);
    return -1;
}

/* Printable, bounded copy of s[0..n) for messages (out: 100 bytes). */
static void printable(char *out, const char *s, size_t n) { tw_printable(out, 100, s, n); }

static node *node_of(const pk_value *v) { return (node *)(void *)v; }

static pk_value *new_value(unpickler *u, pk_kind k)
{
    if (u->doc->n_values >= u->o.max_values) {
        fail(u, "more than %zu values", u->o.max_values);
        return NULL;
    }
    node *n = arena_alloc(u->doc, sizeof *n);
    if (!n) {
        fail(u, "out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->v.kind = k;
    u->doc->n_values++;
    return &n->v;
}

static int push(unpickler *u, pk_value *v)
{
    if (!v) return -1;
    if (u->sp >= u->o.max_stack) return fail(u, "stack deeper than %zu", u->o.max_stack);
    if (u->sp == u->stack_cap) {
        size_t nc = u->stack_cap ? u->stack_cap * 2 : 64;
        if (nc > u->o.max_stack) nc = u->o.max_stack;
        pk_value **ns = realloc(u->stack, nc * sizeof *ns);
        if (!ns) return fail(u, "out of memory");
        u->stack = ns;
        u->stack_cap = nc;
    }
    u->stack[u->sp++] = v;
    return 0;
}

/* Bottom of the current mark frame: items at [fence, sp) may be popped. */
static size_t fence(const unpickler *u) { return u->n_marks ? u->marks[u->n_marks - 1] : 0; }

static pk_value *pop(unpickler *u)
{
    if (u->sp <= fence(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[--u->sp];
}

static pk_value *top(unpickler *u)
{
    if (u->sp <= fence(u)) {
        fail(u, "stack underflow");
        return NULL;
    }
    return u->stack[u->sp - 1];
}

/* Closes the innermost mark: *items = the values above it, *n their count;
 * they stay valid until the next push. */
static int pop_mark(unpickler *u, pk_value ***items, size_t *n)
{
    if (u->n_marks == 0) return fail(u, "no MARK open");
    size_t m = u->marks[--u->n_marks];
    *items = u->stack + m;
    *n = u->sp - m;
    u->sp = m;
    return 0;
}

static int need(unpickler *u, size_t n)
{
    if (u->len - u->pos < n) return fail(u, "truncated: %zu bytes needed, %zu left", n, u->len - u->pos);
    return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--) x = (x << 8) | p[i];
    return x;
}

/* A text line (protocol 0 arguments) of at most maxlen bytes before '\n'. */
static int read_line(unpickler *u, size_t maxlen, const char **s, size_t *n)
{
    size_t left = u->len - u->pos;
    size_t lim = left < maxlen + 1 ? left : maxlen + 1;
    const uint8_t *p = u->buf + u->pos;
    const uint8_t *nl = memchr(p, '\n', lim);
    if (!nl) {
        if (lim == left) return fail(u, "truncated: text argument has no end of line");
        return fail(u, "text argument longer than %zu bytes", maxlen);
    }
    *s = (const char *)p;
    *n = (size_t)(nl - p);
    u->pos += *n + 1;
    return 0;
}

/* Strict decimal int64 of s[0..n) (optional sign). */
static int parse_dec(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    if (i == n) return -1;
    uint64_t x = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (lim - d) / 10) return -2;
        x = x * 10 + d;
    }
    *out = neg ? (int64_t)(0 - x) : (int64_t)x;
    return 0;
}

static pk_value *new_int(unpickler *u, int64_t x)
{
    pk_value *v = new_value(u, PK_INT);
    if (v) v->u.i = x;
    return v;
}

/* Little-endian two's complement integer of n bytes (LONG1/LONG4). */
static int op_long_bytes(unpickler *u, size_t n)
{
    if (need(u, n)) return -1;
    const uint8_t *p = u->buf + u->pos;
    u->pos += n;
    if (n == 0) return push(u, new_int(u, 0));
    int neg = (p[n - 1] & 0x80) != 0;
    /* bytes past the 8th must be pure sign extension */
    for (size_t i = 8; i < n; i++)
        if (p[i] != (neg ? 0xff : 0x00)) return fail(u, "integer of %zu bytes does not fit in 64 bits", n);
    if (n > 8 && ((p[7] & 0x80) != 0) != neg)
        return fail(u, "integer of %zu bytes does not fit in 64 bits", n);
    uint64_t x = 0;
    size_t m = n < 8 ? n : 8;
    for (size_t i = m; i-- > 0;) x = (x << 8) | p[i];
    if (neg && m < 8) x |= ~(uint64_t)0 << (8 * m);
    return push(u, new_int(u, (int64_t)x));
}

/* str (UTF-8 checked) or bytes of n bytes at the read position. */
static int op_string(unpickler *u, uint64_t n, pk_kind kind)
{
    if (n > u->len - u->pos)
        return fail(u, "truncated: %llu-byte string, %zu bytes left", (unsigned long long)n, u->len - u->pos);
    if (n > u->o.max_str_bytes - u->str_bytes)
        return fail(u, "more than %zu bytes of strings", u->o.max_str_bytes);
    const char *s = (const char *)u->buf + u->pos;
    if (kind == PK_STR && !utf8_valid(s, (size_t)n)) return fail(u, "string is not valid UTF-8");
    pk_value *v = new_value(u, kind);
    if (!v) return -1;
    char *copy = arena_alloc(u->doc, (size_t)n + 1);
    if (!copy) return fail(u, "out of memory");
    memcpy(copy, s, (size_t)n);
    copy[n] = '\0';
    v->u.str.s = copy;
    v->u.str.len = (size_t)n;
    u->pos += (size_t)n;
    u->str_bytes += (size_t)n;
    return push(u, v);
}

/* Grows a pointer array in the arena to hold at least `want` items. */
static int grow(unpickler *u, pk_value ***items, size_t *cap, size_t n, size_t want)
{
    if (want <= *cap) return 0;
    size_t nc = *cap ? *cap : 4;
    while (nc < want) {
        if (nc > SIZE_MAX / 2 / sizeof(pk_value *)) return fail(u, "out of memory");
        nc *= 2;
    }
    pk_value **ni = arena_alloc(u->doc, nc * sizeof *ni);
    if (!ni) return fail(u, "out of memory");
    if (n) memcpy(ni, *items, n * sizeof *ni);
    *items = ni;
    *cap = nc;
    return 0;
}

static pk_value *new_seq(unpickler *u, pk_kind kind, pk_value **items, size_t n, int frozen)
{
    pk_value *v = new_value(u, kind);
    if (!v) return NULL;
    node_of(v)->frozen = (uint8_t)frozen;
    if (n && grow(u, &v->u.seq.items, &v->u.seq.cap, 0, n)) return NULL;
    if (n) memcpy(v->u.seq.items, items, n * sizeof *items);
    v->u.seq.n = n;
    return v;
}

static int seq_extend(unpickler *u, pk_value *seq, pk_value **items, size_t n)
{
    if (n == 0) return 0;
    if (grow(u, &seq->u.seq.items, &seq->u.seq.cap, seq->u.seq.n, seq->u.seq.n + n)) return -1;
    memcpy(seq->u.seq.items + seq->u.seq.n, items, n * sizeof *items);
    seq->u.seq.n += n;
    return 0;
}

/* Adds key/value pairs; a key that is not str or int is an error (so are
 * duplicates, found by the final pass). */
static int dict_add(unpickler *u, pk_value *d, pk_value **kv, size_t n_pairs)
{
    if (!pk_is_dict(d)) return fail(u, "setting items on a %s", pk_kind_name(d->kind));
    for (size_t i = 0; i < n_pairs; i++) {
        pk_kind k = kv[2 * i]->kind;
        if (k != PK_STR && k != PK_INT)
            return fail(u, "dict key of type %s is not supported", pk_kind_name(k));
    }
    size_t n = d->u.dict.n;
    if (n_pairs == 0) return 0;
    if (n + n_pairs > d->u.dict.cap) {
        /* keys and values grow together to the same capacity */
        size_t kcap = d->u.dict.cap, vcap = d->u.dict.cap;
        if (grow(u, &d->u.dict.keys, &kcap, n, n + n_pairs) ||
            grow(u, &d->u.dict.vals, &vcap, n, n + n_pairs))
            return -1;
        d->u.dict.cap = kcap;
    }
    for (size_t i = 0; i < n_pairs; i++) {
        d->u.dict.keys[n + i] = kv[2 * i];
        d->u.dict.vals[n + i] = kv[2 * i + 1];
    }
    d->u.dict.n = n + n_pairs;
    return 0;
}

/* ---- globals ----------------------------------------------------------- */

static const struct {
    const char *name; /* in module torch */
    st_dtype dtype;
} storage_classes[] = {
    {"FloatStorage", ST_F32},  {"HalfStorage", ST_F16}, {"BFloat16Storage", ST_BF16},
    {"DoubleStorage", ST_F64}, {"LongStorage", ST_I64}, {"IntStorage", ST_I32},
    {"ShortStorage", ST_I16},  {"CharStorage", ST_I8},  {"ByteStorage", ST_U8},
    {"BoolStorage", ST_BOOL},
};
#define N_STORAGE_CLASSES (sizeof storage_classes / sizeof *storage_classes)

static int eq(const char *s, size_t n, const char *lit) { return strlen(lit) == n && memcmp(s, lit, n) == 0; }

static int op_global_named(unpickler *u, const char *mod, size_t mlen, const char *name, size_t nlen)
{
    pk_global_id id;
    st_dtype dt = ST_U8;
    int ok = 0;
    if (eq(mod, mlen, "collections") && eq(name, nlen, "OrderedDict")) {
        id = PK_G_ORDERED_DICT;
        ok = 1;
    } else if (u->o.torch && eq(mod, mlen, "torch._utils") && eq(name, nlen, "_rebuild_tensor_v2")) {
        id = PK_G_REBUILD_TENSOR_V2;
        ok = 1;
    } else if (u->o.torch && eq(mod, mlen, "torch._utils") && eq(name, nlen, "_rebuild_parameter")) {
        id = PK_G_REBUILD_PARAMETER;
        ok = 1;
    } else if (u->o.torch && eq(mod, mlen, "torch")) {
        for (size_t i = 0; i < N_STORAGE_CLASSES; i++) {
            if (eq(name, nlen, storage_classes[i].name)) {
                id = PK_G_STORAGE_CLASS;
                dt = storage_classes[i].dtype;
                ok = 1;
                break;
            }
        }
    }
    if (!ok) {
        char pm[100], pn[100];
        printable(pm, mod, mlen);
        printable(pn, name, nlen);
        return fail(u, "global '%s.%s' is not allowed", pm, pn);
    }
    pk_value *v = new_value(u, PK_GLOBAL);
    if (!v) return -1;
    v->u.global.id = id;
    v->u.global.dtype = dt;
    return push(u, v);
}

/* "collections.OrderedDict", "torch.FloatStorage", ... (static storage) */
static const char *global_name(const pk_value *g)
{
    static const char *const storage_full[] = {
        "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage", "torch.DoubleStorage",
        "torch.LongStorage",  "torch.IntStorage",  "torch.ShortStorage",    "torch.CharStorage",
        "torch.ByteStorage",  "torch.BoolStorage",
    };
    switch (g->u.global.id) {
    case PK_G_ORDERED_DICT: return "collections.OrderedDict";
    case PK_G_REBUILD_TENSOR_V2: return "torch._utils._rebuild_tensor_v2";
    case PK_G_REBUILD_PARAMETER: return "torch._utils._rebuild_parameter";
    case PK_G_STORAGE_CLASS:
        for (size_t i = 0; i < N_STORAGE_CLASSES; i++)
            if (storage_classes[i].dtype == g->u.global.dtype) return storage_full[i];
        break;
    }
    return "?";
}

/* ---- REDUCE, BUILD, BINPERSID ----------------------------------------- */

static int is_empty_odict(const pk_value *v)
{
    return v->kind == PK_ODICT && v->u.dict.n == 0 && !v->u.dict.attrs;
}

/* A tuple (or list) of non-negative ints into out[0..n); *n its length. */
static int int_tuple(unpickler *u, const pk_value *v, const char *what, int64_t *out, int *n)
{
    if (v->kind != PK_TUPLE && v->kind != PK_LIST)
        return fail(u, "tensor %s is a %s, not a tuple", what, pk_kind_name(v->kind));
    if (v->u.seq.n > PK_MAX_DIMS)
        return fail(u, "tensor %s has %zu dimensions (at most %d)", what, v->u.seq.n, PK_MAX_DIMS);
    for (size_t i = 0; i < v->u.seq.n; i++) {
        const pk_value *x = v->u.seq.items[i];
        if (x->kind != PK_INT || x->u.i < 0)
            return fail(u, "tensor %s entry %zu is not a non-negative int", what, i);
        out[i] = x->u.i;
    }
    *n = (int)v->u.seq.n;
    return 0;
}

static int reduce_tensor_v2(unpickler *u, pk_value **a, size_t n)
{
    if (n != 6 && n != 7) return fail(u, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", n);
    if (a[0]->kind != PK_STORAGE)
        return fail(u, "_rebuild_tensor_v2: argument 1 is a %s, not a storage", pk_kind_name(a[0]->kind));
    if (a[1]->kind != PK_INT || a[1]->u.i < 0)
        return fail(u, "_rebuild_tensor_v2: storage offset is not a non-negative int");
    pk_tensor *t = arena_alloc(u->doc, sizeof *t);
    if (!t) return fail(u, "out of memory");
    memset(t, 0, sizeof *t);
    t->storage = *a[0]->u.storage;
    t->offset = a[1]->u.i;
    int nd_shape, nd_stride;
    if (int_tuple(u, a[2], "size", t->shape, &nd_shape)) return -1;
    if (int_tuple(u, a[3], "stride", t->stride, &nd_stride)) return -1;
    if (nd_shape != nd_stride)
        return fail(u, "tensor size has %d dimensions but stride %d", nd_shape, nd_stride);
    t->ndim = nd_shape;
    if (a[4]->kind != PK_BOOL) return fail(u, "_rebuild_tensor_v2: requires_grad is not a bool");
    t->requires_grad = a[4]->u.b;
    if (!is_empty_odict(a[5]))
        return fail(u, "_rebuild_tensor_v2: backward hooks are not an empty OrderedDict");
    if (n == 7 && a[6]->kind != PK_NONE && !(pk_is_dict(a[6]) && a[6]->u.dict.n == 0))
        return fail(u, "_rebuild_tensor_v2: tensor metadata is not supported");
    pk_value *v = new_value(u, PK_TENSOR);
    if (!v) return -1;
    v->u.tensor = t;
    return push(u, v);
}

static int reduce_parameter(unpickler *u, pk_value **a, size_t n)
{
    if (n != 3) return fail(u, "_rebuild_parameter takes 3 arguments, got %zu", n);
    if (a[0]->kind != PK_TENSOR)
        return fail(u, "_rebuild_parameter: argument 1 is a %s, not a tensor", pk_kind_name(a[0]->kind));
    if (a[1]->kind != PK_BOOL) return fail(u, "_rebuild_parameter: requires_grad is not a bool");
    if (!is_empty_odict(a[2]))
        return fail(u, "_rebuild_parameter: backward hooks are not an empty OrderedDict");
    pk_tensor *t = arena_alloc(u->doc, sizeof *t);
    if (!t) return fail(u, "out of memory");
    *t = *a[0]->u.tensor;
    t->requires_grad = a[1]->u.b;
    t->parameter = 1;
    pk_value *v = new_value(u, PK_TENSOR);
    if (!v) return -1;
    v->u.tensor = t;
    return push(u, v);
}

static int reduce_odict(unpickler *u, pk_value **a, size_t n)
{
    if (n > 1) return fail(u, "OrderedDict takes at most 1 argument, got %zu", n);
    pk_value *d = new_value(u, PK_ODICT);
    if (!d) return -1;
    if (n == 1) {
        const pk_value *items = a[0];
        if (items->kind != PK_LIST && items->kind != PK_TUPLE)
            return fail(u, "OrderedDict argument is a %s, not a list of pairs", pk_kind_name(items->kind));
        for (size_t i = 0; i < items->u.seq.n; i++) {
            const pk_value *p = items->u.seq.items[i];
            if ((p->kind != PK_TUPLE && p->kind != PK_LIST) || p->u.seq.n != 2)
                return fail(u, "OrderedDict argument item %zu is not a pair", i);
            if (dict_add(u, d, p->u.seq.items, 1)) return -1;
        }
    }
    return push(u, d);
}

static int op_reduce(unpickler *u)
{
    pk_value *args = pop(u);
    if (!args) return -1;
    pk_value *f = pop(u);
    if (!f) return -1;
    if (f->kind != PK_GLOBAL) return fail(u, "calling a %s", pk_kind_name(f->kind));
    if (args->kind != PK_TUPLE)
        return fail(u, "arguments of %s are a %s, not a tuple", global_name(f), pk_kind_name(args->kind));
    pk_value **a = args->u.seq.items;
    size_t n = args->u.seq.n;
    switch (f->u.global.id) {
    case PK_G_ORDERED_DICT: return reduce_odict(u, a, n);
    case PK_G_REBUILD_TENSOR_V2: return reduce_tensor_v2(u, a, n);
    case PK_G_REBUILD_PARAMETER: return reduce_parameter(u, a, n);
    case PK_G_STORAGE_CLASS: break;
    }
    return fail(u, "calling '%s' is not allowed", global_name(f));
}

static int op_build(unpickler *u)
{
    pk_value *state = pop(u);
    if (!state) return -1;
    pk_value *obj = top(u);
    if (!obj) return -1;
    if (obj->kind != PK_ODICT)
        return fail(u, "BUILD on a %s (only an OrderedDict's attributes can be set)",
                    pk_kind_name(obj->kind));
    if (state->kind != PK_DICT) return fail(u, "BUILD state is a %s, not a dict", pk_kind_name(state->kind));
    if (obj->u.dict.attrs) return fail(u, "BUILD on an OrderedDict whose attributes are set");
    for (size_t i = 0; i < state->u.dict.n; i++)
        if (state->u.dict.keys[i]->kind != PK_STR)
            return fail(u, "BUILD state has a non-string attribute name");
    obj->u.dict.attrs = state;
    return 0;
}

static int op_persid(unpickler *u)
{
    pk_value *pid = pop(u);
    if (!pid) return -1;
    if (!u->o.torch) return fail(u, "persistent ids are not allowed here");
    pk_value **a = pid->u.seq.items;
    if (pid->kind != PK_TUPLE || pid->u.seq.n != 5 || a[0]->kind != PK_STR ||
        strcmp(a[0]->u.str.s, "storage") != 0)
        return fail(u, "persistent id is not a ('storage', class, key, location, numel) tuple");
    if (a[1]->kind != PK_GLOBAL || a[1]->u.global.id != PK_G_STORAGE_CLASS)
        return fail(u, "persistent id: the storage class is a %s",
                    a[1]->kind == PK_GLOBAL ? global_name(a[1]) : pk_kind_name(a[1]->kind));
    if (a[2]->kind != PK_STR) return fail(u, "persistent id: storage key is not a str");
    const char *key = a[2]->u.str.s;
    size_t kl = a[2]->u.str.len;
    if (kl == 0 || kl > 256 || memchr(key, '/', kl) || memchr(key, 0, kl))
        return fail(u, "persistent id: storage key is empty, too long, or has '/' or NUL");
    if (a[3]->kind != PK_STR || a[3]->u.str.len > 256 || memchr(a[3]->u.str.s, 0, a[3]->u.str.len))
        return fail(u, "persistent id: location is not a short str");
    if (a[4]->kind != PK_INT || a[4]->u.i < 0)
        return fail(u, "persistent id: numel is not a non-negative int");
    pk_storage *s = arena_alloc(u->doc, sizeof *s);
    if (!s) return fail(u, "out of memory");
    s->dtype = a[1]->u.global.dtype;
    s->key = key;
    s->location = a[3]->u.str.s;
    s->numel = a[4]->u.i;
    pk_value *v = new_value(u, PK_STORAGE);
    if (!v) return -1;
    v->u.storage = s;
    return push(u, v);
}

/* ---- memo -------------------------------------------------------------- */

static int memo_put(unpickler *u, uint64_t idx)
{
    pk_value *v = top(u);
    if (!v) return -1;
    if (idx >= u->o.max_memo)
        return fail(u, "memo index %llu is beyond the limit of %zu", (unsigned long long)idx, u->o.max_memo);
    /* picklers number memo slots 0, 1, 2, ..., one per memo opcode, so an
     * index at or past the input length is not from one: refusing it keeps
     * the memo array (8 bytes a slot) within a small multiple of the input */
    if (idx >= u->len)
        return fail(u, "memo index %llu is beyond the %zu-byte input", (unsigned long long)idx, u->len);
    if (idx >= u->memo_cap) {
        size_t nc = u->memo_cap ? u->memo_cap : 64;
        while (nc <= idx && nc <= SIZE_MAX / 2) nc *= 2;
        if (nc > u->o.max_memo) nc = u->o.max_memo; /* still > idx */
        pk_value **nm = nc <= SIZE_MAX / sizeof *nm ? realloc(u->memo, nc * sizeof *nm) : NULL;
        if (!nm) return fail(u, "out of memory");
        memset(nm + u->memo_cap, 0, (nc - u->memo_cap) * sizeof *nm);
        u->memo = nm;
        u->memo_cap = nc;
    }
    if (!u->memo[idx]) u->memo_count++;
    u->memo[idx] = v;
    return 0;
}

static int memo_get(unpickler *u, uint64_t idx)
{
    if (idx >= u->memo_cap || !u->memo[idx])
        return fail(u, "memo index %llu was never set", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

/* ---- the final pass ---------------------------------------------------- */

static int cmp_key(const void *a, const void *b)
{
    const pk_value *x = *(const pk_value *const *)a, *y = *(const pk_value *const *)b;
    if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
    if (x->kind == PK_INT) return x->u.i < y->u.i ? -1 : (x->u.i > y->u.i);
    size_t n = x->u.str.len < y->u.str.len ? x->u.str.len : y->u.str.len;
    int c = memcmp(x->u.str.s, y->u.str.s, n);
    if (c) return c;
    return x->u.str.len < y->u.str.len ? -1 : (x->u.str.len > y->u.str.len);
}

static int check_unique_keys(unpickler *u, const pk_value *d)
{
    size_t n = d->u.dict.n;
    if (n < 2) return 0;
    const pk_value **k = malloc(n * sizeof *k);
    if (!k) return fail(u, "out of memory");
    memcpy(k, d->u.dict.keys, n * sizeof *k);
    qsort(k, n, sizeof *k, cmp_key);
    int rc = 0;
    for (size_t i = 1; i < n; i++) {
        if (cmp_key(&k[i - 1], &k[i]) == 0) {
            if (k[i]->kind == PK_INT) {
                rc = fail(u, "dict key %lld appears twice", (long long)k[i]->u.i);
            } else {
                char pk[100];
                printable(pk, k[i]->u.str.s, k[i]->u.str.len);
                rc = fail(u, "dict key '%s' appears twice", pk);
            }
            break;
        }
    }
    free(k);
    return rc;
}

static size_t n_children(const pk_value *v)
{
    switch (v->kind) {
    case PK_TUPLE:
    case PK_LIST:
    case PK_SET: return v->u.seq.n;
    case PK_DICT:
    case PK_ODICT: return 2 * v->u.dict.n + (v->u.dict.attrs != NULL);
    default: return 0;
    }
}

static const pk_value *child(const pk_value *v, size_t i)
{
    if (pk_is_seq(v)) return v->u.seq.items[i];
    if (i < 2 * v->u.dict.n) return i & 1 ? v->u.dict.vals[i / 2] : v->u.dict.keys[i / 2];
    return v->u.dict.attrs;
}

/* Depth-first over the result, each value once: no value contains itself,
 * nesting height <= max_depth, dict keys unique. */
static int validate(unpickler *u, const pk_value *root)
{
    size_t cap = u->o.max_depth + 2;
    struct frame {
        const pk_value *v;
        size_t next;
    } *st = malloc(cap * sizeof *st);
    if (!st) return fail(u, "out of memory");
    int rc = 0;
    size_t n = 0;
    st[n++] = (struct frame){root, 0};
    node_of(root)->color = 1;
    if (pk_is_dict(root)) rc = check_unique_keys(u, root);
    while (n > 0 && rc == 0) {
        struct frame *f = &st[n - 1];
        if (f->next < n_children(f->v)) {
            const pk_value *c = child(f->v, f->next++);
            node *cn = node_of(c);
            if (cn->color == 1) {
                rc = fail(u, "a %s contains itself", pk_kind_name(c->kind));
            } else if (cn->color == 2) {
                if (n + cn->height > u->o.max_depth)
                    rc = fail(u, "values nested deeper than %zu", u->o.max_depth);
            } else if (n_children(c) == 0) {
                cn->color = 2;
                cn->height = 0;
            } else if (n >= u->o.max_depth) {
                rc = fail(u, "values nested deeper than %zu", u->o.max_depth);
            } else {
                cn->color = 1;
                if (pk_is_dict(c)) rc = check_unique_keys(u, c);
                st[n++] = (struct frame){c, 0};
            }
        } else {
            /* height = 1 + max height of children (all done now) */
            uint32_t h = 0;
            size_t m = n_children(f->v);
            for (size_t i = 0; i < m; i++) {
                uint32_t ch = node_of(child(f->v, i))->height;
                if (ch + 1 > h) h = ch + 1;
            }
            node_of(f->v)->height = h;
            node_of(f->v)->color = 2;
            n--;
        }
    }
    free(st);
    return rc;
}

/* ---- the opcodes ------------------------------------------------------- */

/* Each handler runs the opcode u->op, whose byte has been read; it reads
 * its arguments at u->pos. */

/* An n-byte little-endian argument (n <= 8). */
static int take_le(unpickler *u, size_t n, uint64_t *x)
{
    if (need(u, n)) return -1;
    *x = le(u->buf + u->pos, (int)n);
    u->pos += n;
    return 0;
}

/* A 4-byte argument that pickle reads as a signed length. */
static int take_len4(unpickler *u, const char *what, uint64_t *x)
{
    if (take_le(u, 4, x)) return -1;
    if ((int32_t)(uint32_t)*x < 0) return fail(u, "negative %s length", what);
    return 0;
}

/* The width of the little-endian argument of a binary opcode. */
static size_t arg_width(int op)
{
    switch (op) {
    case OP_BININT1:
    case OP_LONG1:
    case OP_SHORT_BINUNICODE:
    case OP_SHORT_BINSTRING:
    case OP_SHORT_BINBYTES:
    case OP_BINPUT:
    case OP_BINGET: return 1;
    case OP_BININT2: return 2;
    case OP_BINUNICODE8:
    case OP_BINBYTES8:
    case OP_BYTEARRAY8: return 8;
    default: return 4;
    }
}

/* -- framing and the stack -- */

static int op_proto(unpickler *u)
{
    if (need(u, 1)) return -1;
    if (u->buf[u->pos] > 5) return fail(u, "protocol %d is not supported", u->buf[u->pos]);
    u->pos++;
    return 0;
}

static int op_frame(unpickler *u)
{
    uint64_t fl;
    if (take_le(u, 8, &fl)) return -1;
    if (fl > u->len - u->pos)
        return fail(u, "truncated: frame of %llu bytes, %zu left", (unsigned long long)fl, u->len - u->pos);
    return 0;
}

static int op_stop(unpickler *u)
{
    if (u->n_marks) return fail(u, "MARK still open at STOP");
    if (u->sp != 1) return fail(u, "%zu values on the stack at STOP, 1 expected", u->sp);
    u->stopped = 1;
    return 0;
}

static int op_mark(unpickler *u)
{
    if (u->n_marks >= u->o.max_marks) return fail(u, "more than %zu MARKs open", u->o.max_marks);
    u->marks[u->n_marks++] = u->sp;
    return 0;
}

static int op_pop(unpickler *u) { return pop(u) ? 0 : -1; }

static int op_pop_mark(unpickler *u)
{
    pk_value **items = NULL;
    size_t n = 0;
    return pop_mark(u, &items, &n);
}

static int op_dup(unpickler *u)
{
    pk_value *v = top(u);
    return v ? push(u, v) : -1;
}

/* -- numbers -- */

static int op_none(unpickler *u) { return push(u, u->none); }

static int op_bool(unpickler *u) { return push(u, u->op == OP_NEWTRUE ? u->yes : u->no); }

/* BININT (signed 32 bits), BININT1, BININT2 (unsigned). */
static int op_binint(unpickler *u)
{
    uint64_t x;
    if (take_le(u, arg_width(u->op), &x)) return -1;
    return push(u, new_int(u, u->op == OP_BININT ? (int32_t)(uint32_t)x : (int64_t)x));
}

/* LONG1, LONG4: a length, then that many bytes of integer. */
static int op_long_n(unpickler *u)
{
    uint64_t n;
    if (u->op == OP_LONG1 ? take_le(u, 1, &n) : take_len4(u, "LONG4", &n)) return -1;
    return op_long_bytes(u, (size_t)n);
}

/* INT, LONG: a decimal line; INT 00 and 01 are False and True. */
static int op_decimal(unpickler *u)
{
    const char *s;
    size_t n;
    int64_t x;
    if (read_line(u, 64, &s, &n)) return -1;
    if (u->op == OP_INT && eq(s, n, "00")) return push(u, u->no);
    if (u->op == OP_INT && eq(s, n, "01")) return push(u, u->yes);
    if (u->op == OP_LONG && n > 0 && s[n - 1] == 'L') n--;
    int r = parse_dec(s, n, &x);
    if (r == -2) return fail(u, "integer does not fit in 64 bits");
    if (r != 0) return fail(u, "malformed decimal integer");
    return push(u, new_int(u, x));
}

/* BINFLOAT: a big-endian IEEE double. */
static int op_binfloat(unpickler *u)
{
    if (need(u, 8)) return -1;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = (bits << 8) | u->buf[u->pos + i];
    u->pos += 8;
    pk_value *v = new_value(u, PK_FLOAT);
    if (!v) return -1;
    memcpy(&v->u.f, &bits, sizeof v->u.f);
    return push(u, v);
}

/* -- strings -- */

/* The str and bytes opcodes with a binary length: 1, 4 or 8 bytes of it. */
static int op_sized_string(unpickler *u)
{
    int op = u->op;
    uint64_t n;
    if (op == OP_BINSTRING ? take_len4(u, "BINSTRING", &n) : take_le(u, arg_width(op), &n)) return -1;
    int bytes = op == OP_SHORT_BINBYTES || op == OP_BINBYTES || op == OP_BINBYTES8 || op == OP_BYTEARRAY8;
    return op_string(u, n, bytes ? PK_BYTES : PK_STR);
}

/* -- containers -- */

/* The sequence an opcode builds: its kind, and whether it is frozen. */
static pk_kind seq_kind(int op, int *frozen)
{
    switch (op) {
    case OP_EMPTY_LIST:
    case OP_LIST: *frozen = 0; return PK_LIST;
    case OP_EMPTY_SET: *frozen = 0; return PK_SET;
    case OP_FROZENSET: *frozen = 1; return PK_SET;
    default: *frozen = 1; return PK_TUPLE;
    }
}

/* EMPTY_TUPLE, EMPTY_LIST, EMPTY_SET */
static int op_empty_seq(unpickler *u)
{
    int frozen;
    pk_kind k = seq_kind(u->op, &frozen);
    return push(u, new_seq(u, k, NULL, 0, frozen));
}

/* TUPLE, LIST, FROZENSET: the items above the innermost MARK. */
static int op_marked_seq(unpickler *u)
{
    pk_value **items = NULL;
    size_t n = 0;
    int frozen;
    pk_kind k = seq_kind(u->op, &frozen);
    if (pop_mark(u, &items, &n)) return -1;
    return push(u, new_seq(u, k, items, n, frozen));
}

/* TUPLE1, TUPLE2, TUPLE3: the top 1-3 items. */
static int op_small_tuple(unpickler *u)
{
    size_t k = (size_t)(u->op - OP_TUPLE1 + 1);
    if (u->sp - fence(u) < k) return fail(u, "stack underflow");
    u->sp -= k;
    return push(u, new_seq(u, PK_TUPLE, u->stack + u->sp, k, 1));
}

static int op_append(unpickler *u)
{
    pk_value *x = pop(u), *v;
    if (!x || !(v = top(u))) return -1;
    if (v->kind != PK_LIST) return fail(u, "APPEND to a %s", pk_kind_name(v->kind));
    return seq_extend(u, v, &x, 1);
}

/* APPENDS (to a list), ADDITEMS (to a set that is not frozen) */
static int op_extend(unpickler *u)
{
    pk_value **items = NULL, *v;
    size_t n = 0;
    if (pop_mark(u, &items, &n)) return -1;
    if (!(v = top(u))) return -1;
    if (u->op == OP_APPENDS ? v->kind != PK_LIST : (v->kind != PK_SET || node_of(v)->frozen))
        return fail(u, "%s to a %s", op_name(u->op), v->kind == PK_SET ? "frozenset" : pk_kind_name(v->kind));
    return seq_extend(u, v, items, n);
}

static int op_empty_dict(unpickler *u) { return push(u, new_value(u, PK_DICT)); }

static int op_dict(unpickler *u)
{
    pk_value **items = NULL, *v;
    size_t n = 0;
    if (pop_mark(u, &items, &n)) return -1;
    if (n % 2) return fail(u, "odd number of items for a dict");
    if (!(v = new_value(u, PK_DICT))) return -1;
    if (dict_add(u, v, items, n / 2)) return -1;
    return push(u, v);
}

static int op_setitem(unpickler *u)
{
    if (u->sp - fence(u) < 3) return fail(u, "stack underflow");
    u->sp -= 2;
    return dict_add(u, u->stack[u->sp - 1], u->stack + u->sp, 1);
}

static int op_setitems(unpickler *u)
{
    pk_value **items = NULL, *v;
    size_t n = 0;
    if (pop_mark(u, &items, &n)) return -1;
    if (n % 2) return fail(u, "odd number of items for SETITEMS");
    if (!(v = top(u))) return -1;
    return dict_add(u, v, items, n / 2);
}

/* -- the memo -- */

/* BINPUT, LONG_BINPUT, BINGET, LONG_BINGET: a binary index. */
static int op_memo_bin(unpickler *u)
{
    uint64_t idx;
    if (take_le(u, arg_width(u->op), &idx)) return -1;
    return u->op == OP_BINPUT || u->op == OP_LONG_BINPUT ? memo_put(u, idx) : memo_get(u, idx);
}

/* PUT, GET: a decimal index line. */
static int op_memo_text(unpickler *u)
{
    const char *s;
    size_t n;
    int64_t x;
    if (read_line(u, 32, &s, &n)) return -1;
    if (parse_dec(s, n, &x) != 0 || x < 0) return fail(u, "malformed memo index");
    return u->op == OP_PUT ? memo_put(u, (uint64_t)x) : memo_get(u, (uint64_t)x);
}

static int op_memoize(unpickler *u) { return memo_put(u, u->memo_count); }

/* -- globals and calls -- */

/* GLOBAL (module and name lines); INST, which would also call it, is refused. */
static int op_global_text(unpickler *u)
{
    const char *m, *nm;
    size_t ml, nl;
    if (read_line(u, 256, &m, &ml) || read_line(u, 256, &nm, &nl)) return -1;
    if (u->op == OP_INST) {
        char pm[100], pn[100];
        printable(pm, m, ml);
        printable(pn, nm, nl);
        return fail(u, "INST of '%s.%s' is not allowed", pm, pn);
    }
    return op_global_named(u, m, ml, nm, nl);
}

static int op_stack_global(unpickler *u)
{
    pk_value *nm = pop(u);
    if (!nm) return -1;
    pk_value *m = pop(u);
    if (!m) return -1;
    if (m->kind != PK_STR || nm->kind != PK_STR)
        return fail(u, "STACK_GLOBAL module and name are not strings");
    return op_global_named(u, m->u.str.s, m->u.str.len, nm->u.str.s, nm->u.str.len);
}

/* Opcodes that would build arbitrary objects or reach outside the pickle. */
static int op_refused(unpickler *u) { return fail(u, "opcode %s is not allowed", op_name(u->op)); }

/* Protocol 0 text forms that checkpoints do not use. */
static int op_text_unsupported(unpickler *u)
{
    return fail(u, "opcode %s (protocol 0 text) is not supported", op_name(u->op));
}

/* ---- the loop ---------------------------------------------------------- */

typedef int op_fn(unpickler *u);

/* Every opcode of protocols 0-5, by its byte: its name and its handler. */
static const struct {
    const char *name;
    op_fn *run;
} opcodes[256] = {
    [OP_MARK] = {"MARK", op_mark},
    [OP_STOP] = {"STOP", op_stop},
    [OP_POP] = {"POP", op_pop},
    [OP_POP_MARK] = {"POP_MARK", op_pop_mark},
    [OP_DUP] = {"DUP", op_dup},
    [OP_FLOAT] = {"FLOAT", op_text_unsupported},
    [OP_INT] = {"INT", op_decimal},
    [OP_BININT] = {"BININT", op_binint},
    [OP_BININT1] = {"BININT1", op_binint},
    [OP_LONG] = {"LONG", op_decimal},
    [OP_BININT2] = {"BININT2", op_binint},
    [OP_NONE] = {"NONE", op_none},
    [OP_PERSID] = {"PERSID", op_refused},
    [OP_BINPERSID] = {"BINPERSID", op_persid},
    [OP_REDUCE] = {"REDUCE", op_reduce},
    [OP_STRING] = {"STRING", op_text_unsupported},
    [OP_BINSTRING] = {"BINSTRING", op_sized_string},
    [OP_SHORT_BINSTRING] = {"SHORT_BINSTRING", op_sized_string},
    [OP_UNICODE] = {"UNICODE", op_text_unsupported},
    [OP_BINUNICODE] = {"BINUNICODE", op_sized_string},
    [OP_APPEND] = {"APPEND", op_append},
    [OP_BUILD] = {"BUILD", op_build},
    [OP_GLOBAL] = {"GLOBAL", op_global_text},
    [OP_DICT] = {"DICT", op_dict},
    [OP_EMPTY_DICT] = {"EMPTY_DICT", op_empty_dict},
    [OP_APPENDS] = {"APPENDS", op_extend},
    [OP_GET] = {"GET", op_memo_text},
    [OP_BINGET] = {"BINGET", op_memo_bin},
    [OP_INST] = {"INST", op_global_text},
    [OP_LONG_BINGET] = {"LONG_BINGET", op_memo_bin},
    [OP_LIST] = {"LIST", op_marked_seq},
    [OP_EMPTY_LIST] = {"EMPTY_LIST", op_empty_seq},
    [OP_OBJ] = {"OBJ", op_refused},
    [OP_PUT] = {"PUT", op_memo_text},
    [OP_BINPUT] = {"BINPUT", op_memo_bin},
    [OP_LONG_BINPUT] = {"LONG_BINPUT", op_memo_bin},
    [OP_SETITEM] = {"SETITEM", op_setitem},
    [OP_TUPLE] = {"TUPLE", op_marked_seq},
    [OP_EMPTY_TUPLE] = {"EMPTY_TUPLE", op_empty_seq},
    [OP_SETITEMS] = {"SETITEMS", op_setitems},
    [OP_BINFLOAT] = {"BINFLOAT", op_binfloat},
    [OP_PROTO] = {"PROTO", op_proto},
    [OP_NEWOBJ] = {"NEWOBJ", op_refused},
    [OP_EXT1] = {"EXT1", op_refused},
    [OP_EXT2] = {"EXT2", op_refused},
    [OP_EXT4] = {"EXT4", op_refused},
    [OP_TUPLE1] = {"TUPLE1", op_small_tuple},
    [OP_TUPLE2] = {"TUPLE2", op_small_tuple},
    [OP_TUPLE3] = {"TUPLE3", op_small_tuple},
    [OP_NEWTRUE] = {"NEWTRUE", op_bool},
    [OP_NEWFALSE] = {"NEWFALSE", op_bool},
    [OP_LONG1] = {"LONG1", op_long_n},
    [OP_LONG4] = {"LONG4", op_long_n},
    [OP_BINBYTES] = {"BINBYTES", op_sized_string},
    [OP_SHORT_BINBYTES] = {"SHORT_BINBYTES", op_sized_string},
    [OP_SHORT_BINUNICODE] = {"SHORT_BINUNICODE", op_sized_string},
    [OP_BINUNICODE8] = {"BINUNICODE8", op_sized_string},
    [OP_BINBYTES8] = {"BINBYTES8", op_sized_string},
    [OP_EMPTY_SET] = {"EMPTY_SET", op_empty_seq},
    [OP_ADDITEMS] = {"ADDITEMS", op_extend},
    [OP_FROZENSET] = {"FROZENSET", op_marked_seq},
    [OP_NEWOBJ_EX] = {"NEWOBJ_EX", op_refused},
    [OP_STACK_GLOBAL] = {"STACK_GLOBAL", op_stack_global},
    [OP_MEMOIZE] = {"MEMOIZE", op_memoize},
    [OP_FRAME] = {"FRAME", op_frame},
    [OP_BYTEARRAY8] = {"BYTEARRAY8", op_sized_string},
    [OP_NEXT_BUFFER] = {"NEXT_BUFFER", op_refused},
    [OP_READONLY_BUFFER] = {"READONLY_BUFFER", op_refused},
};

static const char *op_name(int op) { return op >= 0 && op < 256 ? opcodes[op].name : NULL; }

/* Reads and runs one opcode. */
static int step(unpickler *u)
{
    u->op_pos = u->pos;
    u->op = -1;
    if (u->pos >= u->len) return fail(u, "truncated: no STOP opcode");
    int op = u->buf[u->pos++];
    if (!opcodes[op].run) return fail(u, "unknown opcode 0x%02x", op);
    u->op = op;
    return opcodes[op].run(u);
}

static size_t or_default(size_t v, size_t d) { return v ? v : d; }

int pk_parse(const uint8_t *buf, size_t len, const pk_options *opt, pk_doc **out, char *err, size_t errlen)
{
    *out = NULL;
    unpickler u;
    memset(&u, 0, sizeof u);
    u.buf = buf;
    u.len = len;
    u.err = err;
    u.errlen = errlen;
    u.op = -1;
    if (opt) u.o = *opt;
    u.o.max_values = or_default(u.o.max_values, PK_DEFAULT_MAX_VALUES);
    u.o.max_stack = or_default(u.o.max_stack, PK_DEFAULT_MAX_STACK);
    u.o.max_memo = or_default(u.o.max_memo, PK_DEFAULT_MAX_MEMO);
    u.o.max_marks = or_default(u.o.max_marks, PK_DEFAULT_MAX_MARKS);
    u.o.max_depth = or_default(u.o.max_depth, PK_DEFAULT_MAX_DEPTH);
    u.o.max_str_bytes = or_default(u.o.max_str_bytes, PK_DEFAULT_MAX_STR);
    if (u.o.max_values < 3) u.o.max_values = 3;
    u.doc = calloc(1, sizeof *u.doc);
    u.marks = malloc(u.o.max_marks * sizeof *u.marks);
    /* never NULL, so that a MARK frame over an empty stack has a base */
    u.stack_cap = u.o.max_stack < 64 ? u.o.max_stack : 64;
    u.stack = malloc(u.stack_cap * sizeof *u.stack);
    int rc = -1;
    if (!u.doc || !u.marks || !u.stack) {
        tw_set_err(err, errlen, "pickle: out of memory");
        goto out;
    }
    if (!(u.none = new_value(&u, PK_NONE)) || !(u.yes = new_value(&u, PK_BOOL)) ||
        !(u.no = new_value(&u, PK_BOOL)))
        goto out;
    u.yes->u.b = 1;
    while (!u.stopped)
        if (step(&u)) goto out;
    u.op = -1;
    u.op_pos = u.pos;
    if (u.pos != len) {
        fail(&u, "%zu bytes after STOP", len - u.pos);
        goto out;
    }
    u.doc->root = u.stack[0];
    if (validate(&u, u.doc->root)) goto out;
    rc = 0;
out:
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (rc == 0) {
        *out = u.doc;
    } else {
        pk_free(u.doc);
    }
    return rc;
}

/* ---- queries ----------------------------------------------------------- */

const char *pk_kind_name(pk_kind k)
{
    static const char *const names[PK_N_KINDS] = {
        [PK_NONE] = "None",       [PK_BOOL] = "bool",     [PK_INT] = "int",           [PK_FLOAT] = "float",
        [PK_STR] = "str",         [PK_BYTES] = "bytes",   [PK_TUPLE] = "tuple",       [PK_LIST] = "list",
        [PK_SET] = "set",         [PK_DICT] = "dict",     [PK_ODICT] = "OrderedDict", [PK_GLOBAL] = "global",
        [PK_STORAGE] = "storage", [PK_TENSOR] = "tensor",
    };
    return (unsigned)k < PK_N_KINDS ? names[k] : "?";
}

const pk_value *pk_dict_get(const pk_value *v, const char *key)
{
    if (!pk_is_dict(v)) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < v->u.dict.n; i++) {
        const pk_value *k = v->u.dict.keys[i];
        if (k->kind == PK_STR && k->u.str.len == kl && memcmp(k->u.str.s, key, kl) == 0)
            return v->u.dict.vals[i];
    }
    return NULL;
}

const pk_value *pk_dict_get_int(const pk_value *v, int64_t key)
{
    if (!pk_is_dict(v)) return NULL;
    for (size_t i = 0; i < v->u.dict.n; i++) {
        const pk_value *k = v->u.dict.keys[i];
        if (k->kind == PK_INT && k->u.i == key) return v->u.dict.vals[i];
    }
    return NULL;
}
