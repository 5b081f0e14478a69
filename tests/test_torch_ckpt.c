/* Unit tests of core/model/{zipread,pickle,torch_ckpt}: hand-built pickles
 * and ZIP archives (built here byte by byte, laid out as torch's writer lays
 * them out: 64-byte aligned data through an extra field, data descriptors,
 * ZIP64 end records), valid ones and every kind of corruption: truncation at
 * every byte, bad CRCs, offsets, local headers disagreeing with the central
 * directory, storages too short, forbidden globals (GLOBAL and STACK_GLOBAL),
 * REDUCE of something not allowed, memo misuse, deep nesting, huge LONG4,
 * and random mutations that must never crash. tests/ref/torch_ckpt_ref.py
 * covers the files real torch writes. */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/model/pickle.h"
#include "core/model/torch_ckpt.h"
#include "core/model/zipread.h"
#include "tests/support/test_fs.h"
#include "tests/support/tw_check.h"

/* ---- a growable byte buffer -------------------------------------------- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n) nc *= 2;
        b->b = realloc(b->b, nc);
        ck_assert_ptr_nonnull(b->b);
        b->cap = nc;
    }
    if (n) memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put8(buf *b, unsigned v)
{
    uint8_t c = (uint8_t)v;
    put(b, &c, 1);
}

static void put16(buf *b, unsigned v)
{
    put8(b, v & 0xff);
    put8(b, (v >> 8) & 0xff);
}

static void put32(buf *b, uint32_t v)
{
    put16(b, v & 0xffff);
    put16(b, v >> 16);
}

static void put64(buf *b, uint64_t v)
{
    put32(b, (uint32_t)v);
    put32(b, (uint32_t)(v >> 32));
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* a string literal that may hold NUL bytes */
#define PUTL(b, lit) put((b), (lit), sizeof(lit) - 1)

static void set32(buf *b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++) b->b[at + i] = (uint8_t)(v >> (8 * i));
}

static void set16(buf *b, size_t at, unsigned v)
{
    b->b[at] = (uint8_t)v;
    b->b[at + 1] = (uint8_t)(v >> 8);
}

static void freebuf(buf *b)
{
    free(b->b);
    memset(b, 0, sizeof *b);
}

/* ---- pickle builder ----------------------------------------------------- */

static void p_str(buf *b, const char *s) /* BINUNICODE */
{
    put8(b, 'X');
    put32(b, (uint32_t)strlen(s));
    puts_(b, s);
}

static void p_int(buf *b, long long v)
{
    if (v >= 0 && v < 256) {
        put8(b, 'K');
        put8(b, (unsigned)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        put8(b, 'J');
        put32(b, (uint32_t)(int32_t)v);
    } else {
        put8(b, 0x8a);
        put8(b, 8);
        put64(b, (uint64_t)v);
    }
}

static void p_global(buf *b, const char *mod, const char *name)
{
    put8(b, 'c');
    puts_(b, mod);
    put8(b, '\n');
    puts_(b, name);
    put8(b, '\n');
}

static void p_odict(buf *b) /* OrderedDict() */
{
    p_global(b, "collections", "OrderedDict");
    put8(b, ')');
    put8(b, 'R');
}

typedef struct {
    const char *name;
    const char *cls; /* FloatStorage, ... */
    const char *key;
    long long numel, offset;
    int nd;
    long long shape[5], stride[5];
} tspec;

static void p_tensor(buf *b, const tspec *t)
{
    p_global(b, "torch._utils", "_rebuild_tensor_v2");
    put8(b, '(');
    put8(b, '(');
    p_str(b, "storage");
    p_global(b, "torch", t->cls);
    p_str(b, t->key);
    p_str(b, "cpu");
    p_int(b, t->numel);
    put8(b, 't');
    put8(b, 'Q');
    p_int(b, t->offset);
    put8(b, '(');
    for (int i = 0; i < t->nd; i++) p_int(b, t->shape[i]);
    put8(b, 't');
    put8(b, '(');
    for (int i = 0; i < t->nd; i++) p_int(b, t->stride[i]);
    put8(b, 't');
    put8(b, 0x89);
    p_odict(b);
    put8(b, 't');
    put8(b, 'R');
}

/* nanoGPT's checkpoint dict around a model state dict of the given tensors */
static void p_checkpoint(buf *b, const tspec *ts, int n, int with_extras)
{
    put8(b, 0x80);
    put8(b, 2);
    put8(b, '}');
    put8(b, '(');
    p_str(b, "model");
    p_odict(b);
    put8(b, '(');
    for (int i = 0; i < n; i++) {
        p_str(b, ts[i].name);
        p_tensor(b, &ts[i]);
    }
    put8(b, 'u');
    if (with_extras) {
        p_str(b, "optimizer");
        put8(b, '}');
        p_str(b, "model_args");
        put8(b, '}');
        put8(b, '(');
        p_str(b, "n_layer");
        p_int(b, 1);
        p_str(b, "n_head");
        p_int(b, 1);
        p_str(b, "n_embd");
        p_int(b, 3);
        p_str(b, "block_size");
        p_int(b, 2);
        p_str(b, "bias");
        put8(b, 0x88);
        p_str(b, "vocab_size");
        p_int(b, 2);
        p_str(b, "dropout");
        put8(b, 'G');
        put64(b, 0); /* 0.0 big-endian is all zeros */
        put8(b, 'u');
        p_str(b, "iter_num");
        p_int(b, 7);
        p_str(b, "best_val_loss");
        tspec bvl = {"best_val_loss", "FloatStorage", "9", 1, 0, 0, {0}, {0}};
        p_tensor(b, &bvl);
        p_str(b, "config");
        put8(b, '}');
        p_str(b, "dataset");
        p_str(b, "shakespeare_char");
        put8(b, 's');
    }
    put8(b, 'u');
    put8(b, '.');
}

/* ---- zip builder -------------------------------------------------------- */

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    uint16_t method;
} zentry;

typedef struct {
    int align;       /* pad data to 64 bytes through an extra field */
    int descriptor;  /* bit 3: zeros in the local header, descriptor after data */
    int zip64;       /* ZIP64 end record + locator, as torch 1.13 writes */
    int zip64_extra; /* sizes and offsets saturated in the central directory */
    const char *comment;
} zopts;

#define ZMAX 16
typedef struct {
    size_t local[ZMAX], data[ZMAX], central[ZMAX];
    size_t cd_offset, cd_size, eocd64, eocd;
} zlayout;

static void build_zip(buf *z, const zentry *e, int n, const zopts *o, zlayout *L)
{
    ck_assert_int_le(n, ZMAX);
    memset(L, 0, sizeof *L);
    uint32_t crc[ZMAX];
    for (int i = 0; i < n; i++) {
        crc[i] = (uint32_t)crc32(0, e[i].data, (uInt)e[i].len);
        size_t nl = strlen(e[i].name);
        L->local[i] = z->n;
        size_t pad = 0;
        if (o->align) {
            size_t at = z->n + 30 + nl + 4;
            pad = (64 - at % 64) % 64;
        }
        uint16_t flags = o->descriptor ? 0x0808 : 0x0800;
        put32(z, 0x04034b50);
        put16(z, 20);
        put16(z, flags);
        put16(z, e[i].method);
        put16(z, 0);
        put16(z, 0);
        put32(z, o->descriptor ? 0 : crc[i]);
        put32(z, o->descriptor ? 0 : (uint32_t)e[i].len);
        put32(z, o->descriptor ? 0 : (uint32_t)e[i].len);
        put16(z, (unsigned)nl);
        put16(z, o->align ? (unsigned)(4 + pad) : 0);
        puts_(z, e[i].name);
        if (o->align) {
            put16(z, 0x4246); /* "FB", as torch's writer */
            put16(z, (unsigned)pad);
            for (size_t k = 0; k < pad; k++) put8(z, 'Z');
        }
        L->data[i] = z->n;
        put(z, e[i].data, e[i].len);
        if (o->descriptor) {
            put32(z, 0x08074b50);
            put32(z, crc[i]);
            put32(z, (uint32_t)e[i].len);
            put32(z, (uint32_t)e[i].len);
        }
    }
    L->cd_offset = z->n;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(e[i].name);
        L->central[i] = z->n;
        put32(z, 0x02014b50);
        put16(z, 0x031e);
        put16(z, 45);
        put16(z, o->descriptor ? 0x0808 : 0x0800);
        put16(z, e[i].method);
        put16(z, 0);
        put16(z, 0);
        put32(z, crc[i]);
        put32(z, o->zip64_extra ? 0xffffffffu : (uint32_t)e[i].len);
        put32(z, o->zip64_extra ? 0xffffffffu : (uint32_t)e[i].len);
        put16(z, (unsigned)nl);
        put16(z, o->zip64_extra ? 28 : 0);
        put16(z, 0);
        put16(z, 0);
        put16(z, 0);
        put32(z, 0);
        put32(z, o->zip64_extra ? 0xffffffffu : (uint32_t)L->local[i]);
        puts_(z, e[i].name);
        if (o->zip64_extra) {
            put16(z, 1);
            put16(z, 24);
            put64(z, e[i].len);
            put64(z, e[i].len);
            put64(z, L->local[i]);
        }
    }
    L->cd_size = z->n - L->cd_offset;
    if (o->zip64) {
        L->eocd64 = z->n;
        put32(z, 0x06064b50);
        put64(z, 44);
        put16(z, 0x031e);
        put16(z, 45);
        put32(z, 0);
        put32(z, 0);
        put64(z, (uint64_t)n);
        put64(z, (uint64_t)n);
        put64(z, L->cd_size);
        put64(z, L->cd_offset);
        put32(z, 0x07064b50);
        put32(z, 0);
        put64(z, L->eocd64);
        put32(z, 1);
    }
    L->eocd = z->n;
    size_t cl = o->comment ? strlen(o->comment) : 0;
    put32(z, 0x06054b50);
    put16(z, 0);
    put16(z, 0);
    put16(z, (unsigned)n);
    put16(z, (unsigned)n);
    put32(z, (uint32_t)L->cd_size);
    put32(z, (uint32_t)L->cd_offset);
    put16(z, (unsigned)cl);
    if (cl) puts_(z, o->comment);
}

static const zopts torch_like = {.align = 1, .descriptor = 1, .zip64 = 1};

/* A built archive and where its parts are. */
typedef struct {
    buf z;
    zlayout L;
} zfix;

static zfix zip_of(const zentry *e, int n, zopts o)
{
    zfix f;
    memset(&f, 0, sizeof f);
    build_zip(&f.z, e, n, &o, &f.L);
    return f;
}

/* One change to a valid archive: `width` little-endian bytes (1, 2 or 4) at
 * `at` set to value, and the fragments of the error it must give. */
typedef struct {
    size_t at;
    int width;
    uint32_t value;
    const char *frag1, *frag2;
} zmut;

static void zip_fail(const buf *z, const char *frag1, const char *frag2);

/* Each of m[0..n) applied alone to a copy of f's archive must fail. */
static void zip_fail_each(const zfix *f, const zmut *m, size_t n)
{
    buf y = {0};
    put(&y, f->z.b, f->z.n);
    for (size_t i = 0; i < n; i++) {
        memcpy(y.b, f->z.b, f->z.n);
        if (m[i].width == 1)
            y.b[m[i].at] = (uint8_t)m[i].value;
        else if (m[i].width == 2)
            set16(&y, m[i].at, m[i].value);
        else
            set32(&y, m[i].at, m[i].value);
        zip_fail(&y, m[i].frag1, m[i].frag2);
    }
    freebuf(&y);
}

/* Offsets in a central directory header: the name length, the compressed
 * size, the name. */
enum { ZC_NAME_LEN = 28, ZC_COMPRESSED_SIZE = 20, ZC_NAME = 46 };

/* The archive of the one entry e, with `width` bytes at offset `at` of its
 * central directory header set to value, must fail with frag1 and frag2. */
static void zip_fail_one(zentry e, size_t at, int width, uint32_t value, const char *frag1, const char *frag2)
{
    zfix f = zip_of(&e, 1, (zopts){0});
    zip_fail_each(&f, &(zmut){f.L.central[0] + at, width, value, frag1, frag2}, 1);
    freebuf(&f.z);
}

/* "hello" and "yo": the entries of most malformed-archive tests */
static const zentry HELLO_YO[2] = {{"d/a", "hello", 5, 0}, {"d/b", "yo", 2, 0}};

/* ---- a small valid checkpoint ----------------------------------------- */

static float st0[6] = {0.5f, -1.0f, 2.0f, 3.25f, -0.0f, 1e-3f}; /* 'w' (2,3) */
static uint16_t st1[3] = {0x3c00, 0xc000, 0x7c00};              /* F16 1, -2, inf */
static float st9[1] = {1.625f};                                 /* best_val_loss */

static const tspec default_tensors[] = {
    {"w", "FloatStorage", "0", 6, 0, 2, {2, 3}, {3, 1}},
    {"b", "HalfStorage", "1", 3, 0, 1, {3}, {1}},
    {"w_t", "FloatStorage", "0", 6, 0, 2, {3, 2}, {1, 3}},
    {"row1", "FloatStorage", "0", 6, 3, 1, {3}, {1}},
};

/* Builds a checkpoint archive of the given tensors (storages '0', '1', '9'
 * always present) under `prefix`. */
static void build_ckpt_ex(buf *z, const tspec *ts, int n, const char *prefix, const zopts *o, zlayout *L,
                          size_t st0_len)
{
    buf p = {0};
    p_checkpoint(&p, ts, n, 1);
    char n_pkl[64], n0[64], n1[64], n9[64], nv[64];
    snprintf(n_pkl, sizeof n_pkl, "%s/data.pkl", prefix);
    snprintf(n0, sizeof n0, "%s/data/0", prefix);
    snprintf(n1, sizeof n1, "%s/data/1", prefix);
    snprintf(n9, sizeof n9, "%s/data/9", prefix);
    snprintf(nv, sizeof nv, "%s/version", prefix);
    zentry e[5] = {
        {n_pkl, p.b, p.n, 0},     {n0, st0, st0_len, 0}, {n1, st1, sizeof st1, 0},
        {n9, st9, sizeof st9, 0}, {nv, "3\n", 2, 0},
    };
    build_zip(z, e, 5, o, L);
    freebuf(&p);
}

/* build_ckpt_ex as a fixture */
static zfix ckpt_ex(const tspec *ts, int n, const char *prefix, zopts o, size_t st0_len)
{
    zfix f;
    memset(&f, 0, sizeof f);
    build_ckpt_ex(&f.z, ts, n, prefix, &o, &f.L, st0_len);
    return f;
}

/* The default checkpoint (default_tensors, torch_like) as a fixture. */
static zfix ckpt_of(void) { return ckpt_ex(default_tensors, 4, "archive", torch_like, sizeof st0); }

/* ---- expectations -------------------------------------------------------- */

static void check_line(const char *err, const char *label, const char *frag1, const char *frag2)
{
    ck_assert_msg(strchr(err, '\n') == NULL, "message is not one line: %s", err);
    if (label)
        ck_assert_msg(strncmp(err, label, strlen(label)) == 0 && err[strlen(label)] == ':',
                      "message does not start with '%s:': %s", label, err);
    if (frag1) ck_assert_msg(strstr(err, frag1) != NULL, "message '%s' lacks '%s'", err, frag1);
    if (frag2) ck_assert_msg(strstr(err, frag2) != NULL, "message '%s' lacks '%s'", err, frag2);
}

static void ckpt_fail(const buf *z, const char *frag1, const char *frag2)
{
    torch_ckpt c;
    char err[600] = "";
    int rc = torch_ckpt_open_mem(z->b, z->n, "mem.pt", &c, err, sizeof err);
    ck_assert_msg(rc == -1, "open succeeded, expected '%s'", frag1);
    check_line(err, "mem.pt", frag1, frag2);
    ck_assert_ptr_null(c.tensors);
    ck_assert_ptr_null(c.doc);
    torch_ckpt_close(&c);
}

static void ckpt_ok(const buf *z, torch_ckpt *c)
{
    char err[600] = "";
    ck_assert_msg(torch_ckpt_open_mem(z->b, z->n, "mem.pt", c, err, sizeof err) == 0, "%s", err);
}

static void zip_fail(const buf *z, const char *frag1, const char *frag2)
{
    zip_archive a;
    char err[600] = "";
    ck_assert_msg(zip_open_mem(&a, z->b, z->n, err, sizeof err) == -1,
                  "zip_open_mem succeeded, expected '%s'", frag1);
    check_line(err, NULL, frag1, frag2);
    ck_assert_ptr_null(a.entries);
    zip_close(&a);
}

static pk_doc *pk_ok(const buf *p, int torch)
{
    pk_options o = {.torch = torch};
    pk_doc *d = NULL;
    char err[600] = "";
    ck_assert_msg(pk_parse(p->b, p->n, &o, &d, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_nonnull(d);
    return d;
}

static void pk_fail_opt(const void *bytes, size_t n, const pk_options *o, const char *frag1,
                        const char *frag2)
{
    pk_doc *d = (pk_doc *)1;
    char err[600] = "";
    ck_assert_msg(pk_parse(bytes, n, o, &d, err, sizeof err) == -1, "pk_parse succeeded, expected '%s'",
                  frag1);
    ck_assert_ptr_null(d);
    ck_assert_msg(strncmp(err, "pickle: ", 8) == 0, "not a pickle message: %s", err);
    check_line(err, NULL, frag1, frag2);
}

static void pk_fail(const char *bytes, size_t n, int torch, const char *frag1, const char *frag2)
{
    pk_options o = {.torch = torch};
    pk_fail_opt(bytes, n, &o, frag1, frag2);
}

#define PKF(lit, torch, f1, f2) pk_fail(lit, sizeof lit - 1, torch, f1, f2)

/* ===================================================================== zip */

START_TEST(t_zip_valid)
{
    const zopts variants[] = {
        {0},
        {.align = 1},
        {.descriptor = 1},
        {.zip64 = 1},
        {.zip64_extra = 1, .zip64 = 1},
        {.align = 1, .descriptor = 1, .zip64 = 1, .comment = "a comment PK"},
    };
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
        zentry e[3] = {{"d/a", "hello", 5, 0}, {"d/bb", "", 0, 0}, {"d/c", "xyz!", 4, 0}};
        buf z = {0};
        zlayout L;
        build_zip(&z, e, 3, &variants[v], &L);
        zip_archive a;
        char err[400];
        ck_assert_msg(zip_open_mem(&a, z.b, z.n, err, sizeof err) == 0, "variant %zu: %s", v, err);
        ck_assert_uint_eq(a.n_entries, 3);
        ck_assert_int_eq(a.zip64, variants[v].zip64);
        const zip_entry *x = zip_find(&a, "d/c");
        ck_assert_ptr_nonnull(x);
        ck_assert_uint_eq(x->size, 4);
        ck_assert_uint_eq(x->data_offset, L.data[2]);
        if (variants[v].align) ck_assert_uint_eq(x->data_offset % 64, 0);
        const uint8_t *d = zip_entry_data(&a, x, err, sizeof err);
        ck_assert_ptr_nonnull(d);
        ck_assert_int_eq(memcmp(d, "xyz!", 4), 0);
        uint32_t got;
        ck_assert_int_eq(zip_entry_crc_ok(&a, x, &got), 1);
        ck_assert_uint_eq(got, x->crc32);
        ck_assert_int_eq(zip_entry_crc_ok(&a, zip_find(&a, "d/bb"), NULL), 1);
        ck_assert_ptr_null(zip_find(&a, "d/"));
        ck_assert_ptr_null(zip_find(&a, "d/cc"));
        ck_assert_ptr_null(zip_find(&a, ""));
        ck_assert_ptr_nonnull(zip_find(&a, "d/a"));
        zip_close(&a);
        zip_close(&a);
        freebuf(&z);
    }
}
END_TEST

START_TEST(t_zip_empty_archive)
{
    buf z = {0};
    zlayout L;
    build_zip(&z, NULL, 0, &(zopts){0}, &L);
    zip_archive a;
    char err[200];
    ck_assert_int_eq(zip_open_mem(&a, z.b, z.n, err, sizeof err), 0);
    ck_assert_uint_eq(a.n_entries, 0);
    ck_assert_ptr_null(zip_find(&a, "x"));
    zip_close(&a);
    ckpt_fail(&z, "the zip archive is empty", NULL);
    freebuf(&z);
}
END_TEST

START_TEST(t_zip_too_short)
{
    buf z = {0};
    puts_(&z, "PK\x05\x06");
    zip_fail(&z, "too short for a zip archive", NULL);
    z.n = 0;
    zip_fail(&z, "empty", NULL);
    for (int i = 0; i < 40; i++) put8(&z, 'x');
    zip_fail(&z, "no end-of-central-directory record", NULL);
    freebuf(&z);
}
END_TEST

START_TEST(t_zip_bad_comment_length)
{
    zentry e[1] = {{"d/a", "hi", 2, 0}};
    zfix f = zip_of(e, 1, (zopts){.comment = "abc"});
    set16(&f.z, f.L.eocd + 20, 4); /* one more than there is */
    zip_fail(&f.z, "no end-of-central-directory record", NULL);
    set16(&f.z, f.L.eocd + 20, 2); /* one less: the record does not end the file */
    zip_fail(&f.z, "no end-of-central-directory record", NULL);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_bad_cd_offset)
{
    zfix f = zip_of(HELLO_YO, 2, (zopts){0});
    set32(&f.z, f.L.eocd + 16, (uint32_t)f.z.n); /* central directory past the end */
    zip_fail(&f.z, "central directory", "does not lie before");
    set32(&f.z, f.L.eocd + 16, (uint32_t)f.L.cd_offset);
    set32(&f.z, f.L.eocd + 12, 0xfffffff0u); /* size overflows */
    zip_fail(&f.z, "central directory", NULL);
    set32(&f.z, f.L.eocd + 12, (uint32_t)f.L.cd_size);
    set32(&f.z, f.L.eocd + 16, (uint32_t)f.L.cd_offset + 1); /* misplaced */
    set32(&f.z, f.L.eocd + 12, (uint32_t)f.L.cd_size - 1);
    zip_fail(&f.z, "bad signature", NULL);
    freebuf(&f.z);
}
END_TEST

/* The end record's two entry counts (this disk's and the total). */
static void set_entry_counts(zfix *f, uint16_t n)
{
    set16(&f->z, f->L.eocd + 8, n);
    set16(&f->z, f->L.eocd + 10, n);
}

START_TEST(t_zip_entry_count)
{
    zfix f = zip_of(HELLO_YO, 2, (zopts){0});
    set_entry_counts(&f, 3);
    zip_fail(&f.z, "cannot hold 3 entries", NULL);
    set_entry_counts(&f, 1);
    zip_fail(&f.z, "bytes after its 1 entries", NULL);
    set16(&f.z, f.L.eocd + 8, 2);
    zip_fail(&f.z, "multi-disk", NULL);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_too_many_entries)
{
    zfix f = zip_of(HELLO_YO, 1, (zopts){.zip64 = 1});
    /* the ZIP64 record claims two million entries; the 32-bit fields are
     * saturated so that they do not contradict it */
    for (int i = 0; i < 2; i++) {
        size_t at = f.L.eocd64 + 24 + 8 * (size_t)i;
        set32(&f.z, at, 2000000);
        set32(&f.z, at + 4, 0);
    }
    set_entry_counts(&f, 0xffff);
    zip_fail(&f.z, "2000000 entries, more than the limit of 1000000", NULL);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip64_records)
{
    zfix f = zip_of(HELLO_YO, 1, (zopts){.zip64 = 1});
    const zmut m[] = {
        /* disagrees with 32-bit record */
        {f.L.eocd64 + 48, 4, (uint32_t)f.L.cd_offset + 2,
         "ZIP64 and the 32-bit end-of-central-directory records disagree", NULL},
        /* locator points past the end */
        {f.L.eocd - 20 + 8, 4, (uint32_t)f.z.n, "ZIP64 end-of-central-directory record offset",
         "out of range"},
        /* no record there */
        {f.L.eocd - 20 + 8, 4, (uint32_t)f.L.cd_offset, "no ZIP64 end-of-central-directory record", NULL},
        /* record size */
        {f.L.eocd64 + 4, 4, 0x7fffffff, "record size", "out of range"},
        /* two disks */
        {f.L.eocd - 20 + 16, 4, 2, "multi-disk", NULL},
    };
    zip_fail_each(&f, m, sizeof m / sizeof *m);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip64_extra_missing)
{
    zfix f = zip_of(HELLO_YO, 1, (zopts){.zip64_extra = 1});
    const zmut m[] = {
        /* ZIP64 record of 8 bytes: 24 needed */
        {f.L.central[0] + 46 + 3 + 2, 2, 8, "ZIP64 extra field has 8 bytes, 24 needed", NULL},
        /* not the ZIP64 id */
        {f.L.central[0] + 46 + 3, 2, 0x9999, "saturated size or offset but no ZIP64 extra field", NULL},
        /* runs past the field */
        {f.L.central[0] + 46 + 3 + 2, 2, 200, "runs past the field", NULL},
    };
    zip_fail_each(&f, m, sizeof m / sizeof *m);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_local_header_disagrees)
{
    zfix f = zip_of(HELLO_YO, 2, (zopts){0});
    const zmut m[] = {
        /* name */
        {f.L.local[1] + 30 + 2, 1, 'x', "entry 'd/b'",
         "local header name differs from the central directory"},
        /* CRC */
        {f.L.local[0] + 14, 4, 0x12345678, "entry 'd/a'", "disagrees with the central directory"},
        /* size */
        {f.L.local[0] + 22, 4, 4, "entry 'd/a'", "disagrees with the central directory"},
        /* method */
        {f.L.local[0] + 8, 2, 8, "local header method 8 differs", NULL},
        /* descriptor flag only locally */
        {f.L.local[0] + 6, 2, 0x0808, "flags", NULL},
        /* name length */
        {f.L.local[1] + 26, 2, 4, "local header name differs", NULL},
        /* signature */
        {f.L.local[1], 1, 'Q', "no local header at offset", NULL},
        /* offset */
        {f.L.central[1] + 42, 4, (uint32_t)f.L.cd_offset - 10, "local header offset", "out of range"},
        /* extra field runs into the directory */
        {f.L.local[1] + 28, 2, 60000, "runs into the central directory", NULL},
    };
    zip_fail_each(&f, m, sizeof m / sizeof *m);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_descriptor_disagrees)
{
    zfix f = zip_of(HELLO_YO, 2, (zopts){.descriptor = 1});
    const zmut m[] = {
        /* descriptor CRC */
        {f.L.data[0] + 5 + 4, 4, 0xdeadbeef, "entry 'd/a'", "data descriptor"},
        /* local CRC neither 0 nor the right one */
        {f.L.local[0] + 14, 4, 0xdeadbeef, "disagrees with the central directory", NULL},
    };
    zip_fail_each(&f, m, sizeof m / sizeof *m);
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_overlap)
{
    zfix f = zip_of(HELLO_YO, 2, (zopts){0});
    /* grow d/a's data over d/b's local header, consistently in both headers */
    uint32_t big = (uint32_t)(f.L.local[1] - f.L.data[0] + 4);
    for (int k = 0; k < 2; k++) {
        set32(&f.z, f.L.local[0] + 18 + 4 * (size_t)k, big);
        set32(&f.z, f.L.central[0] + 20 + 4 * (size_t)k, big);
    }
    zip_fail(&f.z, "entry 'd/b'", "overlaps entry 'd/a'");
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_duplicate_name)
{
    zentry e[2] = {{"d/a", "hello", 5, 0}, {"d/a", "yo", 2, 0}};
    zfix f = zip_of(e, 2, (zopts){0});
    zip_fail(&f.z, "entry 'd/a'", "appears twice");
    freebuf(&f.z);
}
END_TEST

START_TEST(t_zip_names)
{
    char longname[1100];
    memset(longname, 'n', 1025);
    longname[1025] = '\0';
    zentry e[1] = {{longname, "x", 1, 0}};
    zfix f = zip_of(e, 1, (zopts){0});
    zip_fail(&f.z, "name is 1025 bytes, more than the limit of 1024", "...");
    freebuf(&f.z);
    /* NUL inside the central name; a name length of 0 */
    zip_fail_one((zentry){"d/\x01\xff", "x", 1, 0}, ZC_NAME + 1, 1, 0, "NUL", NULL);
    zip_fail_one((zentry){"d/x", "x", 1, 0}, ZC_NAME_LEN, 2, 0, "empty name", NULL);
}
END_TEST

START_TEST(t_zip_method_and_encryption)
{
    zentry e[2] = {{"d/a", "hello", 5, 8}, {"d/b", "yo", 2, 0}};
    zfix f = zip_of(e, 2, (zopts){0});
    zip_archive a;
    char err[300];
    ck_assert_int_eq(zip_open_mem(&a, f.z.b, f.z.n, err, sizeof err), 0);
    ck_assert_ptr_null(zip_entry_data(&a, zip_find(&a, "d/a"), err, sizeof err));
    check_line(err, NULL, "entry 'd/a': compressed with method 8; only stored entries can be read", NULL);
    ck_assert_int_eq(zip_entry_crc_ok(&a, zip_find(&a, "d/a"), NULL), -1);
    zip_close(&a);
    set16(&f.z, f.L.central[1] + 8, 1);
    set16(&f.z, f.L.local[1] + 6, 1);
    zip_fail(&f.z, "entry 'd/b'", "encrypted");
    freebuf(&f.z);
    /* a stored entry whose two sizes differ */
    zip_fail_one(HELLO_YO[0], ZC_COMPRESSED_SIZE, 4, 3, "stored entry has compressed size 3 but size 5",
                 NULL);
}
END_TEST

START_TEST(t_zip_crc)
{
    zfix f = zip_of(HELLO_YO, 1, torch_like);
    f.z.b[f.L.data[0] + 1] ^= 1;
    zip_archive a;
    char err[300];
    ck_assert_int_eq(zip_open_mem(&a, f.z.b, f.z.n, err, sizeof err), 0); /* open does not read data */
    uint32_t got;
    ck_assert_int_eq(zip_entry_crc_ok(&a, &a.entries[0], &got), 0);
    ck_assert_uint_ne(got, a.entries[0].crc32);
    ck_assert_uint_eq(got, (uint32_t)crc32(0, f.z.b + f.L.data[0], 5));
    zip_close(&a);
    freebuf(&f.z);
}
END_TEST

/* ================================================================= pickle */

START_TEST(t_pk_scalars)
{
    /* (None, True, False, 255, 65535, -2, -2**40, 2**63-1, -2**63, 12, -7,
     *  1.5, 'é', b'\x00b', 'x', bytes8, bytearray8, '', 00/01 text bools,
     *  LONG1 of 9 bytes that fits, LONG1 of 0 bytes) */
    buf p = {0};
    put8(&p, 0x80);
    put8(&p, 4);
    put8(&p, 0x95);
    put64(&p, 0); /* a FRAME header: a hint only */
    put8(&p, '(');
    put8(&p, 'N');
    put8(&p, 0x88);
    put8(&p, 0x89);
    put8(&p, 'K');
    put8(&p, 255);
    put8(&p, 'M');
    put16(&p, 65535);
    put8(&p, 'J');
    put32(&p, (uint32_t)-2);
    put8(&p, 0x8a);
    put8(&p, 6);
    put32(&p, 0);
    put16(&p, 0xff00); /* -2**40 */
    put8(&p, 0x8a);
    put8(&p, 8);
    put64(&p, (uint64_t)INT64_MAX);
    put8(&p, 0x8b);
    put32(&p, 8);
    put64(&p, (uint64_t)INT64_MIN);
    puts_(&p, "I12\n");
    puts_(&p, "L-7L\n");
    put8(&p, 'G');
    put(&p, "\x3f\xf8\0\0\0\0\0\0", 8);
    put8(&p, 0x8c);
    put8(&p, 2);
    puts_(&p, "\xc3\xa9");
    put8(&p, 'C');
    put8(&p, 2);
    put(&p, "\0b", 2);
    put8(&p, 'U');
    put8(&p, 1);
    puts_(&p, "x");
    put8(&p, 0x8e);
    put64(&p, 3);
    puts_(&p, "abc");
    put8(&p, 0x96);
    put64(&p, 1);
    puts_(&p, "z");
    put8(&p, 0x8d);
    put64(&p, 0);
    puts_(&p, "I00\n");
    puts_(&p, "I01\n");
    put8(&p, 0x8a);
    put8(&p, 9);
    put64(&p, (uint64_t)-5);
    put8(&p, 0xff);
    put8(&p, 0x8a);
    put8(&p, 0);
    put8(&p, 't');
    put8(&p, '.');
    pk_doc *d = pk_ok(&p, 0);
    const pk_value *r = pk_root(d);
    ck_assert_int_eq(r->kind, PK_TUPLE);
    ck_assert_uint_eq(r->u.seq.n, 22);
    pk_value **v = r->u.seq.items;
    ck_assert_int_eq(v[0]->kind, PK_NONE);
    ck_assert(v[1]->kind == PK_BOOL && v[1]->u.b == 1);
    ck_assert(v[2]->kind == PK_BOOL && v[2]->u.b == 0);
    const int64_t want[] = {255, 65535, -2, -(INT64_C(1) << 40), INT64_MAX, INT64_MIN, 12, -7};
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(v[3 + i]->kind, PK_INT);
        ck_assert_int_eq(v[3 + i]->u.i, want[i]);
    }
    ck_assert(v[11]->kind == PK_FLOAT && v[11]->u.f == 1.5);
    ck_assert(v[12]->kind == PK_STR && strcmp(v[12]->u.str.s, "\xc3\xa9") == 0);
    ck_assert(v[13]->kind == PK_BYTES && v[13]->u.str.len == 2 && v[13]->u.str.s[1] == 'b');
    ck_assert(v[14]->kind == PK_STR && strcmp(v[14]->u.str.s, "x") == 0);
    ck_assert(v[15]->kind == PK_BYTES && strcmp(v[15]->u.str.s, "abc") == 0);
    ck_assert(v[16]->kind == PK_BYTES && strcmp(v[16]->u.str.s, "z") == 0);
    ck_assert(v[17]->kind == PK_STR && v[17]->u.str.len == 0);
    ck_assert(v[18]->kind == PK_BOOL && v[18]->u.b == 0);
    ck_assert(v[19]->kind == PK_BOOL && v[19]->u.b == 1);
    ck_assert(v[20]->kind == PK_INT && v[20]->u.i == -5);
    ck_assert(v[21]->kind == PK_INT && v[21]->u.i == 0);
    pk_free(d);
    freebuf(&p);
}
END_TEST

START_TEST(t_pk_containers)
{
    /* {'a': [1, 2, 3], 'b': ('x', 'x'), 7: {frozenset, set}, 'c': OrderedDict} with
     * memo (BINPUT, LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET, PUT/GET), DUP,
     * POP, POP_MARK, DICT/LIST/TUPLE from marks */
    static const char pkl[] = "\x80\x04}\x94("
                              "X\x01\x00\x00\x00"
                              "a"
                              "]q\x05(K\x01K\x02"
                              "e"
                              "\x8c\x01y"
                              "0"
                              "K\x03"
                              "a"
                              "X\x01\x00\x00\x00"
                              "b"
                              "\x8c\x01x"
                              "r\x80\x00\x00\x00"
                              "j\x80\x00\x00\x00"
                              "\x86"
                              "K\x07"
                              "\x8f\x94(K\x01K\x02\x90"
                              "(K\x05\x91"
                              "\x86"
                              "\x8c\x01z"
                              "\x8c\x01z"
                              "2"
                              "\x86"
                              "\x8c\x01"
                              "c"
                              "\x8c\x0b"
                              "collections"
                              "\x8c\x0b"
                              "OrderedDict"
                              "\x93)R"
                              "\x8c\x01k"
                              "h\x05"
                              "s"
                              "(K\x09K\x09"
                              "1"
                              "\x8c\x01"
                              "d"
                              "p17\ng17\n0"
                              "(X\x01\x00\x00\x00"
                              "e"
                              "K\x01"
                              "d"
                              "\x8c\x01"
                              "f"
                              "(K\x04"
                              "l"
                              "\x8c\x01"
                              "g"
                              "(K\x04"
                              "t"
                              "u.";
    buf p = {0};
    put(&p, pkl, sizeof pkl - 1);
    pk_doc *d = pk_ok(&p, 0);
    const pk_value *r = pk_root(d);
    ck_assert_int_eq(r->kind, PK_DICT);
    ck_assert_uint_eq(r->u.dict.n, 8);
    const pk_value *a = pk_dict_get(r, "a");
    ck_assert(a && a->kind == PK_LIST && a->u.seq.n == 3);
    ck_assert_int_eq(a->u.seq.items[0]->u.i, 1);
    ck_assert_int_eq(a->u.seq.items[2]->u.i, 3);
    const pk_value *b = pk_dict_get(r, "b");
    ck_assert(b && b->kind == PK_TUPLE && b->u.seq.n == 2);
    ck_assert_str_eq(b->u.seq.items[0]->u.str.s, "x");
    ck_assert_ptr_eq(b->u.seq.items[0], b->u.seq.items[1]); /* shared through the memo */
    const pk_value *s = pk_dict_get_int(r, 7);
    ck_assert(s && s->kind == PK_TUPLE && s->u.seq.n == 2);
    ck_assert(s->u.seq.items[0]->kind == PK_SET && s->u.seq.items[0]->u.seq.n == 2);
    ck_assert(s->u.seq.items[1]->kind == PK_SET && s->u.seq.items[1]->u.seq.n == 1);
    ck_assert_int_eq(s->u.seq.items[1]->u.seq.items[0]->u.i, 5);
    const pk_value *zz = pk_dict_get(r, "z");
    ck_assert(zz && zz->kind == PK_TUPLE && zz->u.seq.items[0] == zz->u.seq.items[1]); /* DUP */
    const pk_value *c = pk_dict_get(r, "c");
    ck_assert(c && c->kind == PK_ODICT && c->u.dict.n == 1);
    ck_assert_ptr_eq(pk_dict_get(c, "k"), a);
    const pk_value *dd = pk_dict_get(r, "d");
    ck_assert(dd && dd->kind == PK_DICT && dd->u.dict.n == 1);
    const pk_value *e = pk_dict_get(dd, "e");
    ck_assert(e && e->kind == PK_INT && e->u.i == 1);
    const pk_value *f = pk_dict_get(r, "f");
    ck_assert(f && f->kind == PK_LIST && f->u.seq.n == 1 && f->u.seq.items[0]->u.i == 4);
    const pk_value *g = pk_dict_get(r, "g");
    ck_assert(g && g->kind == PK_TUPLE && g->u.seq.n == 1);
    ck_assert_ptr_null(pk_dict_get(r, "zz"));
    ck_assert_ptr_null(pk_dict_get_int(r, 8));
    ck_assert_ptr_null(pk_dict_get(a, "a"));
    pk_free(d);
    freebuf(&p);
}
END_TEST

/* MARK over an empty stack (found by the fuzzer: UB on a NULL stack) */
START_TEST(t_pk_mark_empty_stack)
{
    static const struct {
        const char *p;
        pk_kind kind;
    } cases[] = {
        {"(t.", PK_TUPLE},
        {"(l.", PK_LIST},
        {"(d.", PK_DICT},
        {"(\x91.", PK_SET},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf p = {0};
        puts_(&p, cases[i].p);
        pk_doc *d = pk_ok(&p, 0);
        ck_assert_int_eq(pk_root(d)->kind, cases[i].kind);
        ck_assert_uint_eq(pk_root(d)->u.seq.n, 0);
        pk_free(d);
        freebuf(&p);
    }
    PKF("(1.", 1, "0 values on the stack at STOP", NULL);
}
END_TEST

/* pickle.dumps({'vocab_size': 3, 'itos': {0: '\n', 1: 'a', 2: 'é'},
 *               'stoi': {'\n': 0, 'a': 1, 'é': 2}}) by Python 3.11 (protocol 4) */
static const char meta_p4[] =
    "\x80\x04\x95\x49\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\nvocab_size\x94K\x03\x8c\x04itos"
    "\x94}\x94(K\x00\x8c\x01\n\x94K\x01\x8c\x01"
    "a\x94K\x02\x8c\x02\xc3\xa9\x94u\x8c\x04stoi"
    "\x94}\x94(h\x04K\x00h\x05K\x01h\x06K\x02uu.";

START_TEST(t_pk_meta_python)
{
    tc_meta m;
    char err[300];
    ck_assert_msg(meta_pkl_parse(meta_p4, sizeof meta_p4 - 1, "meta.pkl", &m, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_eq(m.vocab_size, 3);
    ck_assert_str_eq(m.itos[0], "\n");
    ck_assert_str_eq(m.itos[1], "a");
    ck_assert_str_eq(m.itos[2], "\xc3\xa9");
    ck_assert_uint_eq(m.itos_len[2], 2);
    ck_assert_int_eq(meta_pkl_lookup(&m, "a", 1), 1);
    ck_assert_int_eq(meta_pkl_lookup(&m, "\xc3\xa9", 2), 2);
    ck_assert_int_eq(meta_pkl_lookup(&m, "\n", 1), 0);
    ck_assert_int_eq(meta_pkl_lookup(&m, "b", 1), -1);
    ck_assert_int_eq(meta_pkl_lookup(&m, "", 0), -1);
    meta_pkl_free(&m);
    meta_pkl_free(&m);
}
END_TEST

START_TEST(t_pk_forbidden_globals)
{
    PKF("\x80\x02"
        "cos\nsystem\nX\x02\x00\x00\x00ls\x85R.",
        1, "pickle: global 'os.system' is not allowed (GLOBAL at byte 2)", NULL);
    PKF("\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02ls\x85R.", 1,
        "pickle: global 'os.system' is not allowed (STACK_GLOBAL at byte 14)", NULL);
    PKF("cposix\nsystem\n.", 1, "global 'posix.system' is not allowed", NULL);
    PKF("cbuiltins\neval\n.", 1, "global 'builtins.eval' is not allowed", NULL);
    PKF("csubprocess\nPopen\n.", 1, "global 'subprocess.Popen' is not allowed", NULL);
    PKF("c__builtin__\ngetattr\n.", 1, "global '__builtin__.getattr' is not allowed", NULL);
    PKF("ctorch\nload\n.", 1, "global 'torch.load' is not allowed", NULL);
    PKF("ctorch._utils\n_rebuild_tensor\n.", 1, "global 'torch._utils._rebuild_tensor'", NULL);
    PKF("ctorch\nFloatStorage2\n.", 1, "global 'torch.FloatStorage2' is not allowed", NULL);
    PKF("ccollections\nOrderedDictX\n.", 1, "global 'collections.OrderedDictX'", NULL);
    PKF("ccollections\nOrderedDict \n.", 1, "global 'collections.OrderedDict '", NULL);
    /* control bytes in the name are shown as '?' */
    PKF("cos\x01\nsys\x1btem\n.", 1, "global 'os?.sys?tem' is not allowed", NULL);
    /* the torch globals are refused without the torch option (meta.pkl) */
    PKF("ctorch._utils\n_rebuild_tensor_v2\n.", 0, "global 'torch._utils._rebuild_tensor_v2' is not allowed",
        NULL);
    PKF("ctorch\nFloatStorage\n.", 0, "global 'torch.FloatStorage' is not allowed", NULL);
    /* STACK_GLOBAL needs two strings */
    PKF("\x8c\x02osK\x01\x93.", 1, "STACK_GLOBAL module and name are not strings", NULL);
    PKF("\x8c\x02os\x93.", 1, "stack underflow", "STACK_GLOBAL");
    /* a GLOBAL line that never ends, or is too long */
    PKF("cos\nsystem", 1, "no end of line", NULL);
    char longg[400] = "c";
    memset(longg + 1, 'a', 300);
    strcpy(longg + 301, "\nb\n.");
    pk_fail(longg, strlen(longg), 1, "text argument longer than 256 bytes", NULL);
}
END_TEST

START_TEST(t_pk_forbidden_opcodes)
{
    PKF("(X\x01\x00\x00\x00xios\nsystem\n.", 1, "INST of 'os.system' is not allowed", NULL);
    PKF("(ccollections\nOrderedDict\no.", 1, "opcode OBJ is not allowed", NULL);
    PKF("ccollections\nOrderedDict\n)\x81.", 1, "opcode NEWOBJ is not allowed", NULL);
    PKF("ccollections\nOrderedDict\n)}\x92.", 1, "opcode NEWOBJ_EX is not allowed", NULL);
    PKF("\x82\x01.", 1, "opcode EXT1 is not allowed", NULL);
    PKF("\x83\x01\x00.", 1, "opcode EXT2 is not allowed", NULL);
    PKF("\x84\x01\x00\x00\x00.", 1, "opcode EXT4 is not allowed", NULL);
    PKF("P0\n.", 1, "opcode PERSID is not allowed", NULL);
    PKF("\x97.", 1, "opcode NEXT_BUFFER is not allowed", NULL);
    PKF("N\x98.", 1, "opcode READONLY_BUFFER is not allowed", NULL);
    PKF("S'a'\n.", 1, "opcode STRING", "not supported");
    PKF("Vabc\n.", 1, "opcode UNICODE", "not supported");
    PKF("F1.5\n.", 1, "opcode FLOAT", "not supported");
    PKF("\xff.", 1, "unknown opcode 0xff (at byte 0)", NULL);
    PKF("N\x00.", 1, "unknown opcode 0x00 (at byte 1)", NULL);
    PKF("\x80\x06N.", 1, "protocol 6 is not supported", NULL);
}
END_TEST

START_TEST(t_pk_reduce)
{
    /* REDUCE on anything but the allow-listed callables */
    PKF("\x80\x02"
        "ctorch\nFloatStorage\n)R.",
        1, "calling 'torch.FloatStorage' is not allowed", "REDUCE at byte 23");
    PKF("X\x01\x00\x00\x00"
        "f)R.",
        1, "calling a str", NULL);
    PKF(")K\x01R.", 1, "calling a tuple", NULL); /* (callable, args) order matters */
    PKF("ccollections\nOrderedDict\nK\x01R.", 1, "arguments of collections.OrderedDict are a int", NULL);
    PKF("ccollections\nOrderedDict\n(K\x01K\x02tR.", 1, "OrderedDict takes at most 1 argument", NULL);
    PKF("ccollections\nOrderedDict\nK\x01\x85R.", 1, "not a list of pairs", NULL);
    PKF("ccollections\nOrderedDict\n]K\x01"
        "a\x85R.",
        1, "item 0 is not a pair", NULL);
    /* OrderedDict([(k, v)]) is fine */
    static const char ok[] = "ccollections\nOrderedDict\n]X\x01\x00\x00\x00kK\x05\x86"
                             "a\x85R.";
    buf p = {0};
    put(&p, ok, sizeof ok - 1);
    pk_doc *d = pk_ok(&p, 0);
    ck_assert_int_eq(pk_root(d)->kind, PK_ODICT);
    ck_assert_int_eq(pk_dict_get(pk_root(d), "k")->u.i, 5);
    pk_free(d);
    freebuf(&p);
    PKF("R.", 1, "stack underflow", NULL);
    PKF("N)R.", 1, "calling a None", NULL);
}
END_TEST

START_TEST(t_pk_build)
{
    /* BUILD sets an OrderedDict's attributes (torch's _metadata), nothing else */
    static const char ok[] = "ccollections\nOrderedDict\n)R}X\x09\x00\x00\x00_metadata}sb.";
    buf p = {0};
    put(&p, ok, sizeof ok - 1);
    pk_doc *d = pk_ok(&p, 0);
    const pk_value *r = pk_root(d);
    ck_assert_int_eq(r->kind, PK_ODICT);
    ck_assert_ptr_nonnull(r->u.dict.attrs);
    ck_assert_ptr_nonnull(pk_dict_get(r->u.dict.attrs, "_metadata"));
    pk_free(d);
    freebuf(&p);
    PKF("]}b.", 1, "BUILD on a list", NULL);
    PKF("}}b.", 1, "BUILD on a dict", NULL);
    PKF("ccollections\nOrderedDict\n)RK\x01"
        "b.",
        1, "BUILD state is a int", NULL);
    PKF("ccollections\nOrderedDict\n)R}b}b.", 1, "attributes are set", NULL);
    PKF("ccollections\nOrderedDict\n)R}K\x01K\x02sb.", 1, "non-string attribute name", NULL);
}
END_TEST

START_TEST(t_pk_memo)
{
    PKF("h\x05.", 1, "memo index 5 was never set", "BINGET at byte 0");
    PKF("Nq\x01h\x02.", 1, "memo index 2 was never set", NULL);
    PKF("j\x00\x00\x00\x10.", 1, "memo index 268435456 was never set", NULL);
    PKF("Nr\xff\xff\xff\xff.", 1, "memo index 4294967295 is beyond the limit", NULL);
    PKF("q\x00N.", 1, "stack underflow", "BINPUT");
    PKF("\x94.", 1, "stack underflow", "MEMOIZE");
    PKF("Np-1\n.", 1, "malformed memo index", NULL);
    PKF("g5\n.", 1, "memo index 5 was never set", NULL);
    /* a memo index below the limit but sparse is fine */
    static const char ok[] = "Nr\x09\x00\x00\x00j\x09\x00\x00\x00\x86.";
    buf p = {0};
    put(&p, ok, sizeof ok - 1);
    pk_doc *d = pk_ok(&p, 0);
    pk_free(d);
    freebuf(&p);
    pk_options o = {.max_memo = 100};
    pk_fail_opt("Nq\x64.", 4, &o, "memo index 100 is beyond the limit of 100", NULL);
    /* an index no pickler would write for an input this short */
    PKF("Nr\x00\x00\x01\x00j\x00\x00\x01\x00\x86.", 1, "memo index 65536 is beyond the 13-byte input", NULL);
}
END_TEST

START_TEST(t_pk_stack_and_marks)
{
    PKF("a.", 1, "stack underflow", "APPEND");
    PKF("]a.", 1, "stack underflow", NULL);
    PKF("NNa.", 1, "APPEND to a None", NULL);
    PKF("N(e.", 1, "APPENDS to a None", NULL);
    PKF("(N(\x90.", 1, "ADDITEMS to a None", NULL);
    PKF("(\x91(N\x90.", 1, "ADDITEMS to a frozenset", NULL);
    PKF("}Ns.", 1, "stack underflow", "SETITEM");
    PKF("]NNs.", 1, "setting items on a list", NULL);
    PKF("}(Nu.", 1, "odd number of items", NULL);
    PKF("(Nd.", 1, "odd number of items for a dict", NULL);
    PKF("t.", 1, "no MARK open", NULL);
    PKF("N(\x85.", 1, "stack underflow", "TUPLE1");
    PKF("NN.", 1, "2 values on the stack at STOP", NULL);
    PKF("(N.", 1, "MARK still open at STOP", NULL);
    PKF(".", 1, "0 values on the stack at STOP", NULL);
    PKF("N", 1, "truncated: no STOP opcode", NULL);
    PKF("", 1, "truncated: no STOP opcode", NULL);
    PKF("N.N", 1, "1 bytes after STOP", NULL);
    PKF("N0.", 1, "0 values on the stack", NULL);
    PKF("0.", 1, "stack underflow", "POP");
    PKF("2.", 1, "stack underflow", "DUP");
    PKF("1N.", 1, "no MARK open", "POP_MARK");
    char marks[400];
    memset(marks, '(', 300);
    marks[300] = '.';
    pk_fail(marks, 301, 1, "more than 256 MARKs open", NULL);
    pk_options o = {.max_stack = 5};
    pk_fail_opt("NNNNNN.", 7, &o, "stack deeper than 5", NULL);
    pk_options o2 = {.max_values = 10};
    pk_fail_opt("(K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01t.", 18, &o2, "more than 10 values", NULL);
}
END_TEST

START_TEST(t_pk_strings)
{
    PKF("\x8c\x02\xc3(.", 1, "not valid UTF-8", NULL);
    PKF("X\x02\x00\x00\x00\xed\xa0.", 1, "not valid UTF-8", NULL); /* a surrogate */
    PKF("X\xff\xff\xff\xff.", 1, "truncated: 4294967295-byte string", NULL);
    PKF("\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", 1, "truncated", "string");
    PKF("\x8e\x00\x00\x00\x00\x00\x00\x00\x80.", 1, "truncated", NULL);
    PKF("T\xff\xff\xff\xff.", 1, "negative BINSTRING length", NULL);
    PKF("\x8c\x05"
        "ab",
        1, "truncated: 5-byte string, 2 bytes left", NULL);
    pk_options o = {.max_str_bytes = 4};
    pk_fail_opt("\x8c\x03"
                "abc\x8c\x02"
                "de\x86.",
                10, &o, "more than 4 bytes of strings", NULL);
}
END_TEST

START_TEST(t_pk_integers)
{
    /* LONG4 with an enormous length: truncated, never allocated */
    PKF("\x8b\xff\xff\xff\x7f.", 1, "truncated: 2147483647 bytes needed", NULL);
    PKF("\x8b\xff\xff\xff\xff.", 1, "negative LONG4 length", NULL);
    /* 2**64 and -2**64 - 1: do not fit */
    PKF("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", 1, "integer of 9 bytes does not fit in 64 bits",
        NULL);
    PKF("\x8b\x10\x00\x00\x00"
        "aaaaaaaaaaaaaaaa.",
        1, "integer of 16 bytes does not fit", NULL);
    /* 2**63: sign extension byte 0 but the 8th byte's top bit set */
    PKF("\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00.", 1, "does not fit in 64 bits", NULL);
    PKF("I9223372036854775808\n.", 1, "integer does not fit in 64 bits", NULL);
    PKF("I12a\n.", 1, "malformed decimal integer", NULL);
    PKF("I\n.", 1, "malformed decimal integer", NULL);
    PKF("J\x01\x02.", 1, "truncated: 4 bytes needed, 3 left", NULL);
    PKF("M\x01", 1, "truncated: 2 bytes needed, 1 left", NULL);
    PKF("G\x01\x02", 1, "truncated: 8 bytes needed", NULL);
    PKF("\x95\x00\x10\x00\x00\x00\x00\x00\x00N.", 1, "truncated: frame of 4096 bytes", NULL);
}
END_TEST

START_TEST(t_pk_nesting_and_cycles)
{
    /* 150 nested lists: refused past 100 */
    buf p = {0};
    for (int i = 0; i < 150; i++) put8(&p, ']');
    for (int i = 0; i < 149; i++) put8(&p, 'a');
    put8(&p, '.');
    pk_fail((const char *)p.b, p.n, 1, "nested deeper than 100", NULL);
    /* 100 nested lists are fine */
    p.n = 0;
    for (int i = 0; i < 100; i++) put8(&p, ']');
    for (int i = 0; i < 99; i++) put8(&p, 'a');
    put8(&p, '.');
    pk_doc *d = pk_ok(&p, 1);
    pk_free(d);
    /* nesting hidden behind sharing: a list of depth 60 reached through a
     * second chain of 60, the shared one visited first */
    p.n = 0;
    put8(&p, ']');
    for (int i = 0; i < 60; i++) put8(&p, ']');
    for (int i = 0; i < 59; i++) put8(&p, 'a');
    put8(&p, 'q');
    put8(&p, 0);   /* memo[0] = the chain of 60 */
    put8(&p, 'a'); /* outer = [chain] */
    for (int i = 0; i < 60; i++) put8(&p, ']');
    put8(&p, 'h');
    put8(&p, 0);
    for (int i = 0; i < 60; i++) put8(&p, 'a');
    put8(&p, 'a');
    put8(&p, '.');
    pk_fail((const char *)p.b, p.n, 1, "nested deeper than 100", NULL);
    freebuf(&p);
    /* a list that contains itself, a dict that contains itself */
    PKF("]q\x00h\x00"
        "a.",
        1, "a list contains itself", NULL);
    PKF("}q\x00K\x01h\x00s.", 1, "a dict contains itself", NULL);
    PKF("]q\x00]h\x00"
        "a"
        "a.",
        1, "contains itself", NULL);
    /* sharing without a cycle is fine */
    static const char ok[] = "]q\x00h\x00\x86.";
    buf q = {0};
    put(&q, ok, sizeof ok - 1);
    d = pk_ok(&q, 1);
    pk_free(d);
    freebuf(&q);
}
END_TEST

START_TEST(t_pk_dict_keys)
{
    PKF("}(K\x01NK\x01Nu.", 1, "dict key 1 appears twice", NULL);
    PKF("}(X\x01\x00\x00\x00kNX\x01\x00\x00\x00kNu.", 1, "dict key 'k' appears twice", NULL);
    PKF("}]Ns.", 1, "dict key of type list is not supported", NULL);
    PKF("}NNs.", 1, "dict key of type None is not supported", NULL);
    PKF("}\x88Ns.", 1, "dict key of type bool", NULL);
    /* 1 and '1' are different keys */
    static const char ok[] = "}(K\x01NX\x01\x00\x00\x00"
                             "1Nu.";
    buf p = {0};
    put(&p, ok, sizeof ok - 1);
    pk_doc *d = pk_ok(&p, 0);
    pk_free(d);
    freebuf(&p);
}
END_TEST

static void persid(buf *b, const char *tag, const char *cls, const char *key, long long numel)
{
    put8(b, '(');
    p_str(b, tag);
    p_global(b, "torch", cls);
    p_str(b, key);
    p_str(b, "cpu");
    p_int(b, numel);
    put8(b, 't');
    put8(b, 'Q');
}

START_TEST(t_pk_persid)
{
    buf p = {0};
    persid(&p, "storage", "HalfStorage", "7", 5);
    put8(&p, '.');
    pk_doc *d = pk_ok(&p, 1);
    const pk_value *r = pk_root(d);
    ck_assert_int_eq(r->kind, PK_STORAGE);
    ck_assert_int_eq(r->u.storage->dtype, ST_F16);
    ck_assert_str_eq(r->u.storage->key, "7");
    ck_assert_str_eq(r->u.storage->location, "cpu");
    ck_assert_int_eq(r->u.storage->numel, 5);
    pk_free(d);
    /* not allowed in plain data */
    PKF("(X\x07\x00\x00\x00storageK\x01tQ.", 0, "persistent ids are not allowed here", NULL);
    p.n = 0;
    persid(&p, "storagf", "HalfStorage", "7", 5);
    put8(&p, '.');
    pk_fail((const char *)p.b, p.n, 1, "persistent id is not a ('storage'", NULL);
    p.n = 0;
    persid(&p, "storage", "HalfStorage", "a/b", 5);
    put8(&p, '.');
    pk_fail((const char *)p.b, p.n, 1, "storage key is empty, too long, or has '/'", NULL);
    p.n = 0;
    persid(&p, "storage", "HalfStorage", "", 5);
    put8(&p, '.');
    pk_fail((const char *)p.b, p.n, 1, "storage key is empty", NULL);
    p.n = 0;
    persid(&p, "storage", "HalfStorage", "1", -5);
    put8(&p, '.');
    pk_fail((const char *)p.b, p.n, 1, "numel is not a non-negative int", NULL);
    PKF("(X\x07\x00\x00\x00storageccollections\nOrderedDict\nX\x01\x00\x00\x00"
        "0X\x03\x00\x00\x00"
        "cpuK\x01tQ.",
        1, "the storage class is a collections.OrderedDict", NULL);
    PKF("NQ.", 1, "persistent id is not a", NULL);
    freebuf(&p);
}
END_TEST

/* A _rebuild_tensor_v2 call with the given argument bytes after the storage. */
static void rebuild(buf *b, const char *after_storage, size_t n)
{
    p_global(b, "torch._utils", "_rebuild_tensor_v2");
    put8(b, '(');
    persid(b, "storage", "FloatStorage", "0", 6);
    put(b, after_storage, n);
    put8(b, 't');
    put8(b, 'R');
    put8(b, '.');
}

#define ODICT "ccollections\nOrderedDict\n)R"

static void rebuild_fail(const char *args, size_t n, const char *frag)
{
    buf p = {0};
    rebuild(&p, args, n);
    pk_fail((const char *)p.b, p.n, 1, frag, NULL);
    freebuf(&p);
}

#define RBF(lit, frag) rebuild_fail(lit, sizeof lit - 1, frag)

START_TEST(t_pk_rebuild_tensor)
{
    static const char ok[] = "K\x02(K\x02K\x02t(K\x01K\x02t\x88" ODICT;
    buf p = {0};
    rebuild(&p, ok, sizeof ok - 1);
    pk_doc *d = pk_ok(&p, 1);
    const pk_value *r = pk_root(d);
    ck_assert_int_eq(r->kind, PK_TENSOR);
    const pk_tensor *t = r->u.tensor;
    ck_assert_int_eq(t->storage.dtype, ST_F32);
    ck_assert_int_eq(t->offset, 2);
    ck_assert_int_eq(t->ndim, 2);
    ck_assert_int_eq(t->shape[1], 2);
    ck_assert_int_eq(t->stride[1], 2);
    ck_assert_int_eq(t->requires_grad, 1);
    ck_assert_int_eq(t->parameter, 0);
    pk_free(d);
    /* a 7th argument: None or an empty dict */
    static const char ok7[] = "K\x00)\x29\x89" ODICT "N";
    p.n = 0;
    rebuild(&p, ok7, sizeof ok7 - 1);
    pk_free(pk_ok(&p, 1));
    /* _rebuild_parameter around it */
    p.n = 0;
    p_global(&p, "torch._utils", "_rebuild_parameter");
    put8(&p, '(');
    p_global(&p, "torch._utils", "_rebuild_tensor_v2");
    put8(&p, '(');
    persid(&p, "storage", "FloatStorage", "0", 6);
    PUTL(&p, "K\x00)\x29\x89" ODICT);
    put8(&p, 't');
    put8(&p, 'R');
    put8(&p, 0x88);
    puts_(&p, ODICT);
    put8(&p, 't');
    put8(&p, 'R');
    put8(&p, '.');
    d = pk_ok(&p, 1);
    ck_assert_int_eq(pk_root(d)->kind, PK_TENSOR);
    ck_assert_int_eq(pk_root(d)->u.tensor->parameter, 1);
    ck_assert_int_eq(pk_root(d)->u.tensor->requires_grad, 1);
    pk_free(d);
    freebuf(&p);

    RBF("K\x00)\x29\x89", "takes 6 or 7 arguments, got 5");
    RBF("K\x00)\x29\x89" ODICT "NN", "takes 6 or 7 arguments, got 8");
    RBF("N)\x29\x89" ODICT, "storage offset is not a non-negative int");
    RBF("J\xff\xff\xff\xff)\x29\x89" ODICT, "storage offset is not a non-negative int");
    RBF("K\x00)"
        "X\x01\x00\x00\x00"
        "a"
        "\x89" ODICT,
        "tensor stride is a str, not a tuple");
    RBF("K\x00N\x29\x89" ODICT, "tensor size is a None, not a tuple");
    RBF("K\x00(K\x01t)\x89" ODICT, "size has 1 dimensions but stride 0");
    RBF("K\x00(K\x01t(J\xff\xff\xff\xfft\x89" ODICT, "tensor stride entry 0 is not a non-negative");
    RBF("K\x00(X\x01\x00\x00\x00"
        "at(K\x01t\x89" ODICT,
        "tensor size entry 0 is not");
    RBF("K\x00)\x29K\x01" ODICT, "requires_grad is not a bool");
    RBF("K\x00)\x29\x89}", "backward hooks are not an empty OrderedDict");
    RBF("K\x00)\x29\x89" ODICT "(K\x01K\x02u", "backward hooks are not an empty OrderedDict");
    RBF("K\x00)\x29\x89" ODICT "}(K\x01K\x02u", "tensor metadata is not supported");
    buf big = {0};
    put(&big, "K\x00(", 3);
    for (int i = 0; i < 17; i++) put(&big, "K\x01", 2);
    put(&big, "t)\x89" ODICT, sizeof("t)\x89" ODICT) - 1);
    rebuild_fail((const char *)big.b, big.n, "tensor size has 17 dimensions (at most 16)");
    freebuf(&big);
    /* the storage argument must be a storage */
    PKF("ctorch._utils\n_rebuild_tensor_v2\n(NK\x00)\x29\x89" ODICT "tR.", 1,
        "argument 1 is a None, not a storage", NULL);
    PKF("ctorch._utils\n_rebuild_parameter\n(N\x88" ODICT "tR.", 1, "argument 1 is a None, not a tensor",
        NULL);
    PKF("ctorch._utils\n_rebuild_parameter\n(NtR.", 1, "takes 3 arguments, got 1", NULL);
}
END_TEST

/* every prefix of a valid pickle is an error, never a crash or overread */
START_TEST(t_pk_truncation)
{
    buf p = {0};
    p_checkpoint(&p, default_tensors, 4, 1);
    pk_free(pk_ok(&p, 1));
    for (size_t cut = 0; cut < p.n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, p.b, cut);
        pk_options o = {.torch = 1};
        pk_doc *d = NULL;
        char err[400] = "";
        ck_assert_msg(pk_parse(copy, cut, &o, &d, err, sizeof err) == -1, "cut %zu parsed", cut);
        check_line(err, NULL, "pickle: ", NULL);
        free(copy);
    }
    freebuf(&p);
}
END_TEST

/* ============================================================= torch_ckpt */

START_TEST(t_ck_valid)
{
    zfix fx = ckpt_of();
    torch_ckpt c;
    ckpt_ok(&fx.z, &c);
    ck_assert_str_eq(c.prefix, "archive");
    ck_assert_int_eq(c.format_version, 3);
    ck_assert_uint_eq(c.n_tensors, 4);
    ck_assert_uint_eq(c.n_storages, 2);
    ck_assert_int_eq(c.compiled, 0);
    ck_assert_str_eq(c.tensors[0].name, "w"); /* state-dict order */
    ck_assert_str_eq(c.tensors[3].name, "row1");

    const tc_tensor *w = torch_ckpt_find(&c, "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->dtype, ST_F32);
    ck_assert_int_eq(w->ndim, 2);
    ck_assert_int_eq(w->shape[0], 2);
    ck_assert_int_eq(w->shape[1], 3);
    ck_assert_int_eq(w->stride[0], 3);
    ck_assert_uint_eq(w->numel, 6);
    ck_assert_int_eq(w->contiguous, 1);
    ck_assert_uint_eq(w->span_begin, 0);
    ck_assert_uint_eq(w->span_end, 24);
    ck_assert_ptr_eq(w->data, fx.z.b + fx.L.data[1]);
    ck_assert_uint_eq(((uintptr_t)w->data - (uintptr_t)fx.z.b) % 64, 0);
    ck_assert(memcmp(w->data, st0, sizeof st0) == 0);

    const tc_tensor *wt = torch_ckpt_find(&c, "w_t");
    ck_assert_ptr_nonnull(wt);
    ck_assert_int_eq(wt->contiguous, 0);
    ck_assert_uint_eq(wt->storage, w->storage);
    float f[6];
    ck_assert_int_eq(tc_tensor_to_f32(wt, f), 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) ck_assert(f[i * 2 + j] == st0[j * 3 + i]);
    float one;
    memcpy(&one, tc_tensor_elem(wt, 1), 4);
    ck_assert(one == st0[3]);

    const tc_tensor *r1 = torch_ckpt_find(&c, "row1");
    ck_assert_int_eq(r1->storage_offset, 3);
    ck_assert_uint_eq(r1->span_begin, 12);
    ck_assert_uint_eq(r1->span_end, 24);
    ck_assert_int_eq(r1->contiguous, 1);
    ck_assert_ptr_eq(r1->data, (const uint8_t *)w->data + 12);

    const tc_tensor *b = torch_ckpt_find(&c, "b");
    ck_assert_int_eq(b->dtype, ST_F16);
    ck_assert_int_eq(tc_tensor_to_f32(b, f), 0);
    ck_assert(f[0] == 1.0f && f[1] == -2.0f && isinf(f[2]));
    ck_assert_str_eq(c.storages[b->storage].key, "1");
    ck_assert_str_eq(c.storages[b->storage].location, "cpu");

    ck_assert_ptr_null(torch_ckpt_find(&c, "x"));
    ck_assert_ptr_null(torch_ckpt_find(&c, "best_val_loss")); /* not a model tensor */

    ck_assert_uint_eq(c.args.present, 127);
    ck_assert_int_eq(c.args.n_layer, 1);
    ck_assert_int_eq(c.args.n_embd, 3);
    ck_assert_int_eq(c.args.block_size, 2);
    ck_assert_int_eq(c.args.vocab_size, 2);
    ck_assert_int_eq(c.args.bias, 1);
    ck_assert(c.args.dropout == 0.0);
    ck_assert_str_eq(c.dataset, "shakespeare_char");
    ck_assert_int_eq(c.has_iter_num, 1);
    ck_assert_int_eq(c.iter_num, 7);
    ck_assert_int_eq(c.has_best_val_loss, 1);
    ck_assert(c.best_val_loss == 1.625);

    char err[300];
    ck_assert_msg(torch_ckpt_verify_crc(&c, err, sizeof err) == 0, "%s", err);
    torch_ckpt_close(&c);
    torch_ckpt_close(&c);

    /* TWD_FUZZ_CORPUS=DIR: leave this archive and its pickle as fuzz seeds */
    const char *dir = getenv("TWD_FUZZ_CORPUS");
    if (dir && *dir) {
        char path[512];
        snprintf(path, sizeof path, "%s/zip/handbuilt_ckpt.pt", dir);
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(fx.z.b, 1, fx.z.n, f), fx.z.n);
        fclose(f);
        snprintf(path, sizeof path, "%s/pickle/handbuilt_data.pkl", dir);
        f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fwrite(fx.z.b + fx.L.data[0], 1, fx.L.data[1] - fx.L.data[0], f),
                          fx.L.data[1] - fx.L.data[0]);
        fclose(f);
    }
    freebuf(&fx.z);
}
END_TEST

START_TEST(t_ck_layouts)
{
    /* other writers' layouts: no alignment padding (then the F16 storage
     * must still land on an even offset), no descriptors, no ZIP64 */
    zfix fx = ckpt_ex(default_tensors, 4, "ckpt", (zopts){.align = 1}, sizeof st0);
    torch_ckpt c;
    ckpt_ok(&fx.z, &c);
    ck_assert_str_eq(c.prefix, "ckpt");
    torch_ckpt_close(&c);
    freebuf(&fx.z);
    build_ckpt_ex(&fx.z, default_tensors, 4, "x", &(zopts){.align = 1, .zip64 = 1, .zip64_extra = 1}, &fx.L,
                  sizeof st0);
    ckpt_ok(&fx.z, &c);
    torch_ckpt_close(&c);
    freebuf(&fx.z);
}
END_TEST

START_TEST(t_ck_orig_mod)
{
    tspec ts[2] = {
        {"_orig_mod.transformer.wte.weight", "FloatStorage", "0", 6, 0, 2, {2, 3}, {3, 1}},
        {"_orig_mod.lm_head.weight", "FloatStorage", "0", 6, 0, 2, {2, 3}, {3, 1}},
    };
    buf z = {0};
    zlayout L;
    build_ckpt_ex(&z, ts, 2, "archive", &torch_like, &L, sizeof st0);
    torch_ckpt c;
    ckpt_ok(&z, &c);
    ck_assert_int_eq(c.compiled, 1);
    ck_assert_ptr_nonnull(torch_ckpt_find(&c, "transformer.wte.weight"));
    ck_assert_ptr_nonnull(torch_ckpt_find(&c, "lm_head.weight"));
    ck_assert_ptr_null(torch_ckpt_find(&c, "_orig_mod.lm_head.weight"));
    ck_assert_uint_eq(c.n_storages, 1); /* tied */
    torch_ckpt_close(&c);
    freebuf(&z);
    /* the same name with and without the prefix */
    ts[1].name = "transformer.wte.weight";
    build_ckpt_ex(&z, ts, 2, "archive", &torch_like, &L, sizeof st0);
    ckpt_fail(&z, "tensor 'transformer.wte.weight': appears twice", "_orig_mod.");
    freebuf(&z);
}
END_TEST

static void ck_tensor_fail(const tspec *ts, int n, size_t st0_len, const char *f1, const char *f2)
{
    buf z = {0};
    zlayout L;
    build_ckpt_ex(&z, ts, n, "archive", &torch_like, &L, st0_len);
    ckpt_fail(&z, f1, f2);
    freebuf(&z);
}

START_TEST(t_ck_bad_tensors)
{
    /* storage shorter than its numel needs */
    tspec t1[1] = {{"w", "FloatStorage", "0", 6, 0, 2, {2, 3}, {3, 1}}};
    ck_tensor_fail(t1, 1, 20,
                   "mem.pt: tensor 'w': storage '0' holds 20 bytes, but 6 elements of "
                   "F32 need 24 (truncated?)",
                   NULL);
    /* or longer */
    t1[0] = (tspec){"w", "FloatStorage", "0", 5, 0, 1, {5}, {1}};
    ck_tensor_fail(t1, 1, 24, "storage '0' holds 24 bytes, but 5 elements of F32 need 20", NULL);
    tspec t[2];
    /* elements past the storage: offset, shape, stride */
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 1, 2, {2, 3}, {3, 1}};
    ck_tensor_fail(t, 1, 24, "tensor 'w': elements reach index 6 of storage '0', which has 6", NULL);
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 2, {3, 3}, {3, 1}};
    ck_tensor_fail(t, 1, 24, "elements reach index 8", NULL);
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 2, {2, 3}, {6, 1}};
    ck_tensor_fail(t, 1, 24, "elements reach index 8", NULL);
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 1, {2}, {1LL << 40}};
    ck_tensor_fail(t, 1, 24, "elements reach index 1099511627776", NULL);
    /* stride 0 (expand): fine while the view is not larger than the file */
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 2, {1 << 20, 6}, {0, 1}};
    ck_tensor_fail(t, 1, 24, "tensor 'w': 6291456 elements of F32 (25165824 bytes) are more than", NULL);
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 2, {1LL << 40, 1LL << 40}, {0, 0}};
    ck_tensor_fail(t, 1, 24, "tensor 'w': shape and strides overflow", NULL);
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 2, {3, 2}, {INT64_MAX, 1}};
    ck_tensor_fail(t, 1, 24, "elements reach index 18446744073709551615", NULL);
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 2, {4, 2}, {INT64_MAX, 1}};
    ck_tensor_fail(t, 1, 24, "shape and strides overflow", NULL);
    /* an empty tensor may sit at the end of its storage, not past it */
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 6, 2, {0, 3}, {3, 1}};
    zfix fx = ckpt_ex(t, 1, "archive", torch_like, 24);
    torch_ckpt c;
    ckpt_ok(&fx.z, &c);
    ck_assert_uint_eq(c.tensors[0].numel, 0);
    ck_assert_uint_eq(c.tensors[0].span_begin, 24);
    torch_ckpt_close(&c);
    freebuf(&fx.z);
    t[0].offset = 7;
    ck_tensor_fail(t, 1, 24, "storage offset 7 is past the end", NULL);
    /* a storage the archive does not have */
    t[0] = (tspec){"w", "FloatStorage", "5", 6, 0, 1, {6}, {1}};
    ck_tensor_fail(t, 1, 24, "tensor 'w': storage '5' has no entry 'archive/data/5'", NULL);
    /* two views disagreeing on the storage's dtype or size */
    t[0] = (tspec){"w", "FloatStorage", "0", 6, 0, 1, {6}, {1}};
    t[1] = (tspec){"h", "HalfStorage", "0", 12, 0, 1, {12}, {1}};
    ck_tensor_fail(t, 2, 24, "uses storage '0' as", "F16");
    t[1] = (tspec){"h", "FloatStorage", "0", 5, 0, 1, {5}, {1}};
    ck_tensor_fail(t, 2, 24, "uses storage '0' as 5 elements of F32", NULL);
    /* a storage class whose element size does not divide the entry */
    t[0] = (tspec){"w", "DoubleStorage", "0", 6, 0, 1, {6}, {1}};
    ck_tensor_fail(t, 1, 24, "holds 24 bytes, but 6 elements of F64 need 48", NULL);
    t[0] = (tspec){"w", "HalfStorage", "0", 6, 0, 1, {6}, {1}};
    ck_tensor_fail(t, 1, 24, "holds 24 bytes, but 6 elements of F16 need 12", NULL);
}
END_TEST

START_TEST(t_ck_misaligned)
{
    /* without padding, storage data lands where the names put it */
    tspec t[1] = {{"w", "FloatStorage", "0", 6, 0, 1, {6}, {1}}};
    int aligned = 0, misaligned = 0;
    for (int shift = 0; shift < 4; shift++) {
        buf p = {0};
        p_checkpoint(&p, t, 1, 0);
        char pre[8] = "a";
        for (int i = 0; i < shift; i++) strcat(pre, "a");
        char n_pkl[32], n0[32], nv[32];
        snprintf(n_pkl, sizeof n_pkl, "%s/data.pkl", pre);
        snprintf(n0, sizeof n0, "%s/data/0", pre);
        snprintf(nv, sizeof nv, "%s/version", pre);
        zentry e[3] = {{n_pkl, p.b, p.n, 0}, {n0, st0, 24, 0}, {nv, "3", 1, 0}};
        buf z = {0};
        zlayout L;
        build_zip(&z, e, 3, &(zopts){0}, &L);
        uint8_t *copy = aligned_alloc(64, (z.n + 63) / 64 * 64);
        memcpy(copy, z.b, z.n);
        torch_ckpt c;
        char err[400];
        int rc = torch_ckpt_open_mem(copy, z.n, "mem.pt", &c, err, sizeof err);
        if (L.data[1] % 4 == 0) {
            ck_assert_msg(rc == 0, "%s", err);
            torch_ckpt_close(&c);
            aligned++;
        } else {
            misaligned++;
            ck_assert_int_eq(rc, -1);
            check_line(err, "mem.pt", "tensor 'w': storage '0' is not aligned to its 4-byte", NULL);
        }
        free(copy);
        freebuf(&z);
        freebuf(&p);
    }
    ck_assert_int_gt(aligned, 0);
    ck_assert_int_gt(misaligned, 0);
}
END_TEST

/* a checkpoint archive around arbitrary data.pkl bytes */
static void zip_pickle(buf *z, const void *pkl, size_t n, int with_version)
{
    zentry e[3] = {
        {"archive/data.pkl", pkl, n, 0}, {"archive/data/0", st0, 24, 0}, {"archive/version", "3\n", 2, 0}};
    zlayout L;
    build_zip(z, e, with_version ? 3 : 2, &torch_like, &L);
}

static void ck_pickle_fail(const char *pkl, size_t n, const char *f1, const char *f2)
{
    buf z = {0};
    zip_pickle(&z, pkl, n, 1);
    ckpt_fail(&z, f1, f2);
    freebuf(&z);
}

/* An OrderedDict holding the one tensor 'w' (6 floats of storage "0"). */
static void p_w_dict(buf *p)
{
    p_odict(p);
    p_str(p, "w");
    tspec t = {"w", "FloatStorage", "0", 6, 0, 1, {6}, {1}};
    p_tensor(p, &t);
    put8(p, 's');
}

#define CKPF(lit, f1, f2) ck_pickle_fail(lit, sizeof lit - 1, f1, f2)

START_TEST(t_ck_structure)
{
    CKPF("\x80\x02"
         "cos\nsystem\nX\x02\x00\x00\x00ls\x85R.",
         "mem.pt: pickle: global 'os.system' is not allowed (GLOBAL at byte 2)", NULL);
    CKPF("\x80\x02]q\x00.", "mem.pt: data.pkl holds a list, not a dict", NULL);
    CKPF("}(X\x01\x00\x00\x00"
         "aK\x01u.",
         "no 'model' state dict", NULL);
    CKPF("}.", "no 'model' state dict", NULL);
    CKPF("}(X\x05\x00\x00\x00modelK\x01u.", "'model' is a int, not a state dict", NULL);
    CKPF("}(X\x05\x00\x00\x00model}u.", "the model state dict is empty", NULL);
    CKPF("}(X\x05\x00\x00\x00model}(X\x01\x00\x00\x00wK\x01uu.", "mem.pt: tensor 'w': is a int, not a tensor",
         NULL);
    CKPF("}(X\x05\x00\x00\x00model}(K\x01K\x01uu.", "model state dict key 1 is not a string", NULL);
    CKPF("}(X\x05\x00\x00\x00model}(X\x00\x00\x00\x00K\x01uu.", "is empty, longer than", NULL);
    /* model_args, config, iter_num, best_val_loss types */
    buf p = {0};
#define TAIL(x) x, sizeof(x) - 1
    static const struct {
        const char *s;
        size_t n;
        const char *msg;
    } bad_tail[] = {
        {TAIL("X\x0a\x00\x00\x00model_argsK\x01"), "model_args is a int, not a dict"},
        {TAIL("X\x0a\x00\x00\x00model_args}X\x07\x00\x00\x00n_layerX\x01\x00\x00\x00"
              "2s"),
         "model_args 'n_layer' is a str, not an int"},
        {TAIL("X\x0a\x00\x00\x00model_args}X\x06\x00\x00\x00n_headK\x00s"),
         "model_args 'n_head' is 0, not in 1..2147483647"},
        {TAIL("X\x0a\x00\x00\x00model_args}X\x04\x00\x00\x00"
              "biasK\x01s"),
         "model_args 'bias' is a int, not a bool"},
        {TAIL("X\x0a\x00\x00\x00model_args}X\x07\x00\x00\x00"
              "dropout"
              "G\x40\x00\x00\x00\x00\x00\x00\x00s"),
         "model_args 'dropout' is 2, not in [0, 1]"},
        {TAIL("X\x0a\x00\x00\x00model_args}X\x07\x00\x00\x00"
              "dropoutNs"),
         "model_args 'dropout' is a None"},
        {TAIL("X\x06\x00\x00\x00"
              "configN"),
         "config is a None, not a dict"},
        {TAIL("X\x06\x00\x00\x00"
              "config}X\x07\x00\x00\x00"
              "datasetK\x01s"),
         "config 'dataset' is a int, not a str"},
        {TAIL("X\x08\x00\x00\x00iter_numG\x3f\xf0\x00\x00\x00\x00\x00\x00"), "iter_num is a float"},
        {TAIL("X\x0d\x00\x00\x00"
              "best_val_lossN"),
         "best_val_loss is a None"},
    };
    for (size_t i = 0; i < sizeof bad_tail / sizeof *bad_tail; i++) {
        p.n = 0;
        puts_(&p, "\x80\x02}(");
        p_str(&p, "model");
        p_w_dict(&p);
        put(&p, bad_tail[i].s, bad_tail[i].n);
        puts_(&p, "u.");
        buf z = {0};
        zip_pickle(&z, p.b, p.n, 1);
        ckpt_fail(&z, bad_tail[i].msg, NULL);
        freebuf(&z);
    }
    /* a bare state dict */
    p.n = 0;
    puts_(&p, "\x80\x02");
    p_w_dict(&p);
    puts_(&p, ".");
    buf z = {0};
    zip_pickle(&z, p.b, p.n, 1);
    torch_ckpt c;
    ckpt_ok(&z, &c);
    ck_assert_int_eq(c.bare_state_dict, 1);
    ck_assert_uint_eq(c.n_tensors, 1);
    ck_assert_uint_eq(c.args.present, 0);
    ck_assert_ptr_null(c.dataset);
    torch_ckpt_close(&c);
    freebuf(&z);
    /* no version record */
    zip_pickle(&z, p.b, p.n, 0);
    ckpt_fail(&z, "no 'archive/version' record", NULL);
    freebuf(&z);
    freebuf(&p);
}
END_TEST

START_TEST(t_ck_records)
{
    buf p = {0};
    p_checkpoint(&p, default_tensors, 1, 0);
    buf z = {0};
    zlayout L;
    /* first entry outside a folder */
    zentry e1[2] = {{"data.pkl", p.b, p.n, 0}, {"archive/version", "3", 1, 0}};
    build_zip(&z, e1, 2, &torch_like, &L);
    ckpt_fail(&z, "first entry 'data.pkl' is not inside a record folder", NULL);
    freebuf(&z);
    zentry e2[2] = {{"/data.pkl", p.b, p.n, 0}, {"archive/version", "3", 1, 0}};
    build_zip(&z, e2, 2, &torch_like, &L);
    ckpt_fail(&z, "is not inside a record folder", NULL);
    freebuf(&z);
    /* the prefix comes from the first entry: data.pkl must be under it */
    zentry e3[3] = {
        {"other/version", "3", 1, 0}, {"archive/data.pkl", p.b, p.n, 0}, {"archive/version", "3", 1, 0}};
    build_zip(&z, e3, 3, &torch_like, &L);
    ckpt_fail(&z, "no 'other/data.pkl' in the archive", NULL);
    freebuf(&z);
    /* TorchScript */
    zentry e4[3] = {
        {"m/data.pkl", p.b, p.n, 0}, {"m/constants.pkl", "\x80\x02).", 4, 0}, {"m/version", "3", 1, 0}};
    build_zip(&z, e4, 3, &torch_like, &L);
    ckpt_fail(&z, "TorchScript archive", NULL);
    freebuf(&z);
    /* version record contents, .data/version, byteorder */
    const char *vers[] = {"x", "", "1234567", "3\n\n"};
    for (int i = 0; i < 4; i++) {
        zentry e5[3] = {{"m/data.pkl", p.b, p.n, 0},
                        {"m/data/0", st0, 24, 0},
                        {"m/version", vers[i], strlen(vers[i]), 0}};
        build_zip(&z, e5, 3, &torch_like, &L);
        if (i < 3)
            ckpt_fail(&z, "version record 'm/version' is not a decimal number", NULL);
        else {
            torch_ckpt c;
            ckpt_ok(&z, &c);
            torch_ckpt_close(&c);
        }
        freebuf(&z);
    }
    zentry e6[4] = {{"m/data.pkl", p.b, p.n, 0},
                    {"m/data/0", st0, 24, 0},
                    {"m/.data/version", "3\n", 2, 0},
                    {"m/byteorder", "little", 6, 0}};
    build_zip(&z, e6, 4, &torch_like, &L);
    torch_ckpt c;
    ckpt_ok(&z, &c);
    ck_assert_int_eq(c.format_version, 3);
    torch_ckpt_close(&c);
    freebuf(&z);
    e6[3].data = "big";
    e6[3].len = 3;
    build_zip(&z, e6, 4, &torch_like, &L);
    ckpt_fail(&z, "big-endian checkpoints are not supported", NULL);
    freebuf(&z);
    e6[3].data = "middle";
    e6[3].len = 6;
    build_zip(&z, e6, 4, &torch_like, &L);
    ckpt_fail(&z, "byteorder record is neither", NULL);
    freebuf(&z);
    /* a compressed data.pkl or storage */
    zentry e7[3] = {{"m/data.pkl", p.b, p.n, 8}, {"m/data/0", st0, 24, 0}, {"m/version", "3", 1, 0}};
    build_zip(&z, e7, 3, &torch_like, &L);
    ckpt_fail(&z, "entry 'm/data.pkl': compressed with method 8", NULL);
    freebuf(&z);
    e7[0].method = 0;
    e7[1].method = 8;
    build_zip(&z, e7, 3, &torch_like, &L);
    ckpt_fail(&z, "tensor 'w': storage '0': entry 'm/data/0': compressed with method 8", NULL);
    freebuf(&z);
    freebuf(&p);
}
END_TEST

START_TEST(t_ck_crc)
{
    zfix fx = ckpt_of();
    fx.z.b[fx.L.data[2] + 1] ^= 0x10; /* inside storage '1' (tensor 'b') */
    torch_ckpt c;
    ckpt_ok(&fx.z, &c);
    char err[400];
    ck_assert_int_eq(torch_ckpt_verify_crc(&c, err, sizeof err), -1);
    check_line(err, "mem.pt", "tensor 'b': storage entry 'archive/data/1' fails its CRC-32 check", NULL);
    torch_ckpt_close(&c);
    fx.z.b[fx.L.data[2] + 1] ^= 0x10;
    /* a changed letter of config.dataset inside data.pkl: still a valid pickle */
    uint8_t *ds = memmem(fx.z.b + fx.L.data[0], fx.L.data[1] - fx.L.data[0], "shakespeare", 11);
    ck_assert_ptr_nonnull(ds);
    ds[0] = 'S';
    ckpt_ok(&fx.z, &c);
    ck_assert_str_eq(c.dataset, "Shakespeare_char");
    ck_assert_int_eq(torch_ckpt_verify_crc(&c, err, sizeof err), -1);
    check_line(err, "mem.pt", "entry 'archive/data.pkl' fails its CRC-32 check", NULL);
    torch_ckpt_close(&c);
    freebuf(&fx.z);
}
END_TEST

/* every truncation of a valid checkpoint is refused, never a crash */
START_TEST(t_ck_truncation)
{
    zfix fx = ckpt_of();
    for (size_t cut = 0; cut < fx.z.n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, fx.z.b, cut);
        torch_ckpt c;
        char err[400] = "";
        ck_assert_msg(torch_ckpt_open_mem(copy, cut, "mem.pt", &c, err, sizeof err) == -1,
                      "cut at %zu of %zu opened", cut, fx.z.n);
        check_line(err, "mem.pt", NULL, NULL);
        zip_archive a;
        ck_assert_int_eq(zip_open_mem(&a, copy, cut, err, sizeof err), -1);
        free(copy);
    }
    freebuf(&fx.z);
}
END_TEST

/* random byte changes: opening may succeed or fail, never crash; a failure
 * is one line starting with the label */
START_TEST(t_ck_mutations)
{
    zfix fx = ckpt_of();
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int opened = 0, refused = 0;
    uint8_t *copy = malloc(fx.z.n);
    for (int it = 0; it < 4000; it++) {
        memcpy(copy, fx.z.b, fx.z.n);
        int k = 1 + (int)(it % 4);
        for (int j = 0; j < k; j++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            /* half of the changes inside data.pkl, where they matter most */
            size_t at = (it & 1) ? fx.L.data[0] + (size_t)(s >> 20) % (fx.L.data[1] - fx.L.data[0])
                                 : (size_t)(s >> 20) % fx.z.n;
            copy[at] = (uint8_t)(s >> 8);
        }
        torch_ckpt c;
        char err[400] = "";
        if (torch_ckpt_open_mem(copy, fx.z.n, "mem.pt", &c, err, sizeof err) == 0) {
            opened++;
            (void)torch_ckpt_verify_crc(&c, err, sizeof err);
            for (size_t i = 0; i < c.n_tensors; i++) {
                float *f = malloc((c.tensors[i].numel ? c.tensors[i].numel : 1) * sizeof *f);
                (void)tc_tensor_to_f32(&c.tensors[i], f);
                free(f);
            }
            torch_ckpt_close(&c);
        } else {
            refused++;
            check_line(err, "mem.pt", NULL, NULL);
        }
    }
    free(copy);
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(opened, 0);
    freebuf(&fx.z);
}
END_TEST

/* ----------------------------------------------------------------- files */

static char tmpdir[256];

static void setup(void) { tt_tmpdir(tmpdir, sizeof tmpdir, "tc"); }

static void teardown(void)
{
    tt_rmtree(tmpdir);
    ck_assert_int_ne(access(tmpdir, F_OK), 0);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(t_ck_files)
{
    char path[400];
    snprintf(path, sizeof path, "%s/ckpt.pt", tmpdir);
    zfix fx = ckpt_of();
    write_file(path, fx.z.b, fx.z.n);
    torch_ckpt c;
    char err[600];
    ck_assert_msg(torch_ckpt_open(path, &c, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(c.owns_map, 1);
    ck_assert_str_eq(c.path, path);
    ck_assert_msg(torch_ckpt_verify_crc(&c, err, sizeof err) == 0, "%s", err);
    const tc_tensor *w = torch_ckpt_find(&c, "w");
    ck_assert(memcmp(w->data, st0, 24) == 0);
    torch_ckpt_close(&c);
    /* a missing file, a directory, a FIFO (must not block), an empty file */
    snprintf(path, sizeof path, "%s/none.pt", tmpdir);
    ck_assert_int_eq(torch_ckpt_open(path, &c, err, sizeof err), -1);
    check_line(err, path, "cannot open", "No such file");
    ck_assert_int_eq(torch_ckpt_open(tmpdir, &c, err, sizeof err), -1);
    check_line(err, tmpdir, "not a regular file", NULL);
    snprintf(path, sizeof path, "%s/fifo.pt", tmpdir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(torch_ckpt_open(path, &c, err, sizeof err), -1);
    check_line(err, path, "not a regular file", NULL);
    ck_assert_int_eq(torch_ckpt_open("/dev/null", &c, err, sizeof err), -1);
    check_line(err, "/dev/null", "not a regular file", NULL);
    snprintf(path, sizeof path, "%s/empty.pt", tmpdir);
    write_file(path, "", 0);
    ck_assert_int_eq(torch_ckpt_open(path, &c, err, sizeof err), -1);
    check_line(err, path, "file is empty", NULL);
    /* meta.pkl from a file */
    snprintf(path, sizeof path, "%s/meta.pkl", tmpdir);
    write_file(path, meta_p4, sizeof meta_p4 - 1);
    tc_meta m;
    ck_assert_msg(meta_pkl_load(path, &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m.vocab_size, 3);
    meta_pkl_free(&m);
    ck_assert_int_eq(meta_pkl_load(tmpdir, &m, err, sizeof err), -1);
    check_line(err, tmpdir, "not a regular file", NULL);
    freebuf(&fx.z);
}
END_TEST

/* ------------------------------------------------------------------ meta */

/* A dict of n pairs, {ids[i]: chars[i]} (ids_first) or {chars[i]: ids[i]}. */
static void p_pairs(buf *b, const long long *ids, const char *const *chars, int n, int ids_first)
{
    puts_(b, "}(");
    for (int i = 0; i < n; i++) {
        if (ids_first) p_int(b, ids[i]);
        p_str(b, chars[i]);
        if (!ids_first) p_int(b, ids[i]);
    }
    puts_(b, "u");
}

/* {'vocab_size': V, 'itos': {...}, 'stoi': {...}} from explicit pairs */
static void p_meta(buf *b, long long vocab, const long long *ids, const char *const *chars, int n_itos,
                   const char *const *schars, const long long *sids, int n_stoi)
{
    puts_(b, "\x80\x02}(");
    p_str(b, "vocab_size");
    p_int(b, vocab);
    p_str(b, "itos");
    p_pairs(b, ids, chars, n_itos, 1);
    p_str(b, "stoi");
    p_pairs(b, sids, schars, n_stoi, 0);
    puts_(b, "u.");
}

static void meta_fail(const buf *b, const char *frag)
{
    tc_meta m;
    char err[400];
    ck_assert_int_eq(meta_pkl_parse(b->b, b->n, "meta.pkl", &m, err, sizeof err), -1);
    check_line(err, "meta.pkl", frag, NULL);
    ck_assert_ptr_null(m.itos);
}

START_TEST(t_meta_validation)
{
    const long long ids[] = {0, 1, 2};
    const char *ch[] = {"a", "b", "c"};
    buf b = {0};
    p_meta(&b, 3, ids, ch, 3, ch, ids, 3);
    tc_meta m;
    char err[400];
    ck_assert_msg(meta_pkl_parse(b.b, b.n, "meta.pkl", &m, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(meta_pkl_lookup(&m, "c", 1), 2);
    meta_pkl_free(&m);

    /* meta.pkl files that disagree with themselves: vocab_size, itos's keys
     * and values, stoi's keys and values, and what the error says */
    const long long gap[] = {0, 1, 3}, swap[] = {0, 2, 1}, twice[] = {0, 1, 1};
    const char *dup[] = {"a", "b", "b"};
    const struct {
        long long vocab;
        const long long *itos_ids;
        const char *const *itos_chars;
        int n_itos;
        const char *const *stoi_chars;
        const long long *stoi_ids;
        int n_stoi;
        const char *says;
    } bad[] = {
        {4, ids, ch, 3, ch, ids, 3, "itos has 3 entries and stoi 3, but vocab_size is 4"},
        {3, gap, ch, 3, ch, gap, 3, "itos key 2 is not an id in 0..2"},
        {3, ids, ch, 3, ch, swap, 3, "stoi['b'] is 2, but itos[2] is 'c'"},
        {3, ids, dup, 3, ch, ids, 3, "stoi['c'] is 2, but itos[2] is 'b'"},
        {0, ids, ch, 0, ch, ids, 0, "vocab_size is not an int in 1.."},
        {3, ids, ch, 3, ch, ids, 2, "itos has 3 entries and stoi 2"},
        /* the dict key check comes from the unpickler */
        {3, twice, ch, 3, ch, ids, 3, "pickle: dict key 1 appears twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        b.n = 0;
        p_meta(&b, bad[i].vocab, bad[i].itos_ids, bad[i].itos_chars, bad[i].n_itos, bad[i].stoi_chars,
               bad[i].stoi_ids, bad[i].n_stoi);
        meta_fail(&b, bad[i].says);
    }
    b.n = 0;
    PUTL(&b, "\x80\x02}(X\x04\x00\x00\x00itos}u.");
    meta_fail(&b, "lacks 'vocab_size'");
    b.n = 0;
    PUTL(&b, "\x80\x02]q\x00.");
    meta_fail(&b, "meta.pkl holds a list, not a dict");
    b.n = 0;
    PUTL(&b, "\x80\x02}(X\x0a\x00\x00\x00vocab_sizeK\x01X\x04\x00\x00\x00itos]"
             "X\x04\x00\x00\x00stoi}u.");
    meta_fail(&b, "itos is a list, not a dict");
    b.n = 0;
    PUTL(&b, "\x80\x02}(X\x0a\x00\x00\x00vocab_sizeK\x01X\x04\x00\x00\x00itos}K\x00K\x01s"
             "X\x04\x00\x00\x00stoi}X\x01\x00\x00\x00"
             "aK\x00su.");
    meta_fail(&b, "itos[0] is a int, not a str");
    b.n = 0;
    puts_(&b, "\x80\x02"
              "cos\nsystem\n.");
    meta_fail(&b, "pickle: global 'os.system' is not allowed");
    freebuf(&b);
    /* every truncation of the Python-written meta.pkl is refused */
    for (size_t cut = 0; cut < sizeof meta_p4 - 1; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, meta_p4, cut);
        ck_assert_int_eq(meta_pkl_parse(copy, cut, "meta.pkl", &m, err, sizeof err), -1);
        free(copy);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("torch_ckpt");
    TCase *z = tcase_create("zip");
    tcase_add_test(z, t_zip_valid);
    tcase_add_test(z, t_zip_empty_archive);
    tcase_add_test(z, t_zip_too_short);
    tcase_add_test(z, t_zip_bad_comment_length);
    tcase_add_test(z, t_zip_bad_cd_offset);
    tcase_add_test(z, t_zip_entry_count);
    tcase_add_test(z, t_zip_too_many_entries);
    tcase_add_test(z, t_zip64_records);
    tcase_add_test(z, t_zip64_extra_missing);
    tcase_add_test(z, t_zip_local_header_disagrees);
    tcase_add_test(z, t_zip_descriptor_disagrees);
    tcase_add_test(z, t_zip_overlap);
    tcase_add_test(z, t_zip_duplicate_name);
    tcase_add_test(z, t_zip_names);
    tcase_add_test(z, t_zip_method_and_encryption);
    tcase_add_test(z, t_zip_crc);
    suite_add_tcase(s, z);
    TCase *p = tcase_create("pickle");
    tcase_set_timeout(p, 60);
    tcase_add_test(p, t_pk_scalars);
    tcase_add_test(p, t_pk_containers);
    tcase_add_test(p, t_pk_mark_empty_stack);
    tcase_add_test(p, t_pk_meta_python);
    tcase_add_test(p, t_pk_forbidden_globals);
    tcase_add_test(p, t_pk_forbidden_opcodes);
    tcase_add_test(p, t_pk_reduce);
    tcase_add_test(p, t_pk_build);
    tcase_add_test(p, t_pk_memo);
    tcase_add_test(p, t_pk_stack_and_marks);
    tcase_add_test(p, t_pk_strings);
    tcase_add_test(p, t_pk_integers);
    tcase_add_test(p, t_pk_nesting_and_cycles);
    tcase_add_test(p, t_pk_dict_keys);
    tcase_add_test(p, t_pk_persid);
    tcase_add_test(p, t_pk_rebuild_tensor);
    tcase_add_test(p, t_pk_truncation);
    suite_add_tcase(s, p);
    TCase *c = tcase_create("ckpt");
    tcase_set_timeout(c, 120);
    tcase_add_checked_fixture(c, setup, teardown);
    tcase_add_test(c, t_ck_valid);
    tcase_add_test(c, t_ck_layouts);
    tcase_add_test(c, t_ck_orig_mod);
    tcase_add_test(c, t_ck_bad_tensors);
    tcase_add_test(c, t_ck_misaligned);
    tcase_add_test(c, t_ck_structure);
    tcase_add_test(c, t_ck_records);
    tcase_add_test(c, t_ck_crc);
    tcase_add_test(c, t_ck_truncation);
    tcase_add_test(c, t_ck_mutations);
    tcase_add_test(c, t_ck_files);
    tcase_add_test(c, t_meta_validation);
    suite_add_tcase(s, c);
    return s;
}

int main(void) { return tw_check_run(suite()); }
