/* Unit tests of core/safetensors: a valid file, every kind of corruption,
 * and the exact F16/BF16 conversions against an independent arithmetic
 * reference (ldexp) over all 65536 bit patterns. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/model/safetensors.h"
#include "tests/support/test_fs.h"
#include "tests/support/test_mem.h"
#include "tests/support/test_rng.h"
#include "tests/support/tw_check.h"

static char tmpdir[256];
static char path[512];

static void setup(void)
{
    tt_tmpdir(tmpdir, sizeof tmpdir, "st");
    snprintf(path, sizeof path, "%s/model.safetensors", tmpdir);
}

static void teardown(void) { tt_rmtree(tmpdir); }

/* Writes raw bytes to `path`. */
static void write_raw(const void *p, size_t n) { tt_write_file(path, p, n); }

/* Writes [u64 len][header][data_len bytes of data]; the header length field
 * is `hlen_field` when not (uint64_t)-1, else strlen(header). Data byte k is
 * (k * 7 + 3) & 0xff. */
static void write_st_len(const char *header, size_t data_len, uint64_t hlen_field)
{
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    uint64_t L = hlen_field == (uint64_t)-1 ? hl : hlen_field;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(L >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t k = 0; k < data_len; k++) b[8 + hl + k] = (unsigned char)((k * 7 + 3) & 0xff);
    write_raw(b, n);
    free(b);
}

static void write_st(const char *header, size_t data_len) { write_st_len(header, data_len, (uint64_t)-1); }

/* Opens `path` expecting failure; checks the message starts with the path,
 * contains every fragment given (NULL-terminated list), is one line, and
 * that *f is left empty. */
static void expect_fail(const char *frag1, const char *frag2)
{
    st_file f;
    char err[512] = "";
    int rc = st_open(path, &f, err, sizeof err);
    ck_assert_msg(rc == -1, "st_open succeeded, expected failure containing '%s'", frag1);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
                  "message does not start with the file path: %s", err);
    ck_assert_msg(strchr(err, '\n') == NULL, "message is not one line: %s", err);
    ck_assert_msg(strstr(err, frag1) != NULL, "message '%s' lacks '%s'", err, frag1);
    if (frag2) ck_assert_msg(strstr(err, frag2) != NULL, "message '%s' lacks '%s'", err, frag2);
    ck_assert_ptr_null(f.map);
    ck_assert_ptr_null(f.tensors);
    ck_assert_uint_eq(f.n_tensors, 0);
    st_close(&f);
    st_close(&f); /* idempotent */
}

/* The tensor `name` of f exists with dtype, ndim dimensions of the given
 * shape and numel elements; returns it. */
static const st_tensor *expect_tensor(const st_file *f, const char *name, st_dtype dtype, int ndim,
                                      const size_t *shape, size_t numel)
{
    const st_tensor *t = st_find(f, name);
    ck_assert_msg(t != NULL, "no tensor '%s'", name);
    ck_assert_int_eq(t->dtype, dtype);
    ck_assert_int_eq(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) ck_assert_uint_eq(t->shape[d], shape[d]);
    ck_assert_uint_eq(t->numel, numel);
    return t;
}

START_TEST(t_valid)
{
    /* header padded with spaces as HF does; tensors out of name order in
     * the file; a scalar; an empty tensor; a gap before 'c'; trailing bytes */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
                    "\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                    "\"s\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[32,34]},"
                    "\"e\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[34,34]},"
                    "\"c\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[40,43]}}      ";
    write_st(h, 48);
    st_file f;
    char err[512] = "";
    ck_assert_msg(st_open(path, &f, err, sizeof err) == 0, "st_open: %s", err);
    ck_assert_uint_eq(f.n_tensors, 5);
    ck_assert_uint_eq(f.data_start, 8 + strlen(h));
    ck_assert_uint_eq(f.size, 8 + strlen(h) + 48);
    const st_tensor *b = expect_tensor(&f, "b", ST_F32, 2, (const size_t[]){2, 3}, 6);
    ck_assert_uint_eq(b->nbytes, 24);
    ck_assert_uint_eq(b->offset, f.data_start + 8);
    const unsigned char *d = st_data(&f, b);
    for (size_t k = 0; k < 24; k++) ck_assert_uint_eq(d[k], ((8 + k) * 7 + 3) & 0xff);
    expect_tensor(&f, "s", ST_F16, 0, NULL, 1);
    expect_tensor(&f, "e", ST_I64, 2, (const size_t[]){0, 5}, 0);
    ck_assert_int_eq(st_find(&f, "a")->dtype, ST_BF16);
    ck_assert_int_eq(st_find(&f, "c")->dtype, ST_U8);
    ck_assert_ptr_null(st_find(&f, "__metadata__"));
    ck_assert_ptr_null(st_find(&f, "z"));
    ck_assert_ptr_null(st_find(&f, ""));
    st_close(&f);
    ck_assert_ptr_null(f.map);
}
END_TEST

START_TEST(t_empty_header_object)
{
    write_st("{}", 0);
    st_file f;
    char err[256];
    ck_assert_msg(st_open(path, &f, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(f.n_tensors, 0);
    st_close(&f);
}
END_TEST

START_TEST(t_missing_file) { expect_fail("cannot open", "No such file"); }
END_TEST

START_TEST(t_directory)
{
    ck_assert_int_eq(mkdir(path, 0700), 0);
    expect_fail("not a regular file", NULL);
    rmdir(path);
}
END_TEST

START_TEST(t_empty_file)
{
    write_raw("", 0);
    expect_fail("file is empty", NULL);
}
END_TEST

START_TEST(t_truncated_length)
{
    write_raw("\x10\x00\x00\x00\x00", 5);
    expect_fail("5 bytes", "too short");
}
END_TEST

START_TEST(t_length_beyond_file)
{
    write_st_len("{}", 0, 1000);
    expect_fail("header length 1000", "past the end");
}
END_TEST

START_TEST(t_length_huge)
{
    write_st_len("{}", 0, (uint64_t)1 << 62);
    expect_fail("header length", "limit");
}
END_TEST

START_TEST(t_malformed_json)
{
    write_st("{\"a\": {\"dtype\": ", 0);
    expect_fail("not valid JSON", NULL);
}
END_TEST

/* issue 9, item 7: jansson quotes the raw input, newlines included; the
 * message stays on one line (expect_fail checks it) */
START_TEST(t_malformed_json_multiline)
{
    write_st("{\"a\":\n  {\"dtype\":\n  nope\n}}", 0);
    expect_fail("not valid JSON", NULL);
}
END_TEST

/* issue 9, item 4: a FIFO in place of the file blocked start-up forever;
 * it is refused at once (a hang here is the test's timeout) */
START_TEST(t_fifo)
{
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    expect_fail("not a regular file", NULL);
    unlink(path);
}
END_TEST

START_TEST(t_nul_in_header)
{
    unsigned char b[8 + 5] = {5, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, '{', '}'};
    write_raw(b, sizeof b);
    expect_fail("not valid JSON", NULL);
}
END_TEST

START_TEST(t_duplicate_key)
{
    write_st("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
             2);
    expect_fail("not valid JSON", "duplicate");
}
END_TEST

START_TEST(t_not_object)
{
    write_st("[1, 2, 3]", 0);
    expect_fail("not a JSON object", NULL);
}
END_TEST

START_TEST(t_entry_not_object)
{
    write_st("{\"w\": 3}", 0);
    expect_fail("tensor 'w'", "not a JSON object");
}
END_TEST

START_TEST(t_metadata_not_object)
{
    write_st("{\"__metadata__\": 3}", 0);
    expect_fail("__metadata__", NULL);
}
END_TEST

START_TEST(t_missing_dtype)
{
    write_st("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_fail("tensor 'w'", "missing \"dtype\"");
}
END_TEST

START_TEST(t_missing_shape)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8);
    expect_fail("tensor 'w'", "missing \"shape\"");
}
END_TEST

START_TEST(t_missing_offsets)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
    expect_fail("tensor 'w'", "missing \"data_offsets\"");
}
END_TEST

START_TEST(t_unknown_dtype)
{
    write_st("{\"w\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_fail("tensor 'w'", "unknown dtype \"F99\"");
}
END_TEST

START_TEST(t_dtype_not_string)
{
    write_st("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    expect_fail("tensor 'w'", "dtype");
}
END_TEST

START_TEST(t_bad_shape_entry)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8);
    expect_fail("tensor 'w'", "shape entry 1");
}
END_TEST

START_TEST(t_shape_not_array)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8);
    expect_fail("tensor 'w'", "\"shape\" is not an array");
}
END_TEST

START_TEST(t_too_many_dims)
{
    write_st("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
             "\"data_offsets\":[0,1]}}",
             1);
    expect_fail("tensor 'w'", "dimensions");
}
END_TEST

START_TEST(t_shape_overflow)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
             "\"data_offsets\":[0,8]}}",
             8);
    expect_fail("tensor 'w'", "overflows");
}
END_TEST

START_TEST(t_bytes_overflow)
{
    /* numel fits in 64 bits, numel * 8 does not */
    write_st("{\"w\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
             "\"data_offsets\":[0,8]}}",
             8);
    expect_fail("tensor 'w'", "overflows");
}
END_TEST

START_TEST(t_offsets_not_pair)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8);
    expect_fail("tensor 'w'", "data_offsets");
}
END_TEST

START_TEST(t_offsets_negative)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8);
    expect_fail("tensor 'w'", "data_offsets");
}
END_TEST

START_TEST(t_offsets_reversed)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8);
    expect_fail("tensor 'w'", "reversed");
}
END_TEST

START_TEST(t_offsets_out_of_range)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[100,108]}}", 8);
    expect_fail("tensor 'w'", "past the end of the data area");
}
END_TEST

START_TEST(t_size_mismatch)
{
    write_st("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 16);
    expect_fail("tensor 'w'", "hold 12 bytes");
}
END_TEST

START_TEST(t_overlap)
{
    write_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[12,28]}}",
             28);
    expect_fail("tensor 'b'", "overlaps tensor 'a'");
}
END_TEST

START_TEST(t_overlap_same_start)
{
    write_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"z\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
             16);
    expect_fail("overlaps", NULL);
}
END_TEST

START_TEST(t_truncated_data)
{
    /* a valid header whose last tensor ends after the end of the file */
    write_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[16,80]}}",
             40);
    expect_fail("tensor 'b'", "truncated");
}
END_TEST

START_TEST(t_name_sanitised)
{
    write_st("{\"bad\\nname\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8);
    expect_fail("tensor 'bad?name'", NULL); /* expect_fail also checks one line */
}
END_TEST

START_TEST(t_long_name_cut)
{
    char h[1024];
    char name[400];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(h, sizeof h, "{\"%s\":{\"dtype\":\"Q\",\"shape\":[],\"data_offsets\":[0,1]}}", name);
    write_st(h, 1);
    expect_fail("...'", "unknown dtype");
}
END_TEST

START_TEST(t_small_err_buffer)
{
    write_raw("", 0);
    st_file f;
    char err[8];
    memset(err, 'Z', sizeof err);
    ck_assert_int_eq(st_open(path, &f, err, sizeof err), -1);
    ck_assert_uint_lt(strnlen(err, sizeof err), sizeof err); /* NUL-terminated */
    ck_assert_int_eq(st_open(path, &f, NULL, 0), -1);        /* no buffer at all */
}
END_TEST

/* Random byte mutations of a valid file: st_open must either fail with a
 * message naming the file, or succeed with every tensor inside the data
 * area and no two non-empty tensors overlapping (checked here, pairwise). */
START_TEST(t_fuzz_mutations)
{
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                    "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[32,33]}}";
    size_t hl = strlen(h), n = 8 + hl + 40;
    unsigned char *orig = malloc(n), *buf = malloc(n);
    ck_assert_ptr_nonnull(orig);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) orig[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(orig + 8, h, hl);
    memset(orig + 8 + hl, 0x5a, 40);
    tw_rng r = tt_rng(88172645463325252ull);
    uint64_t x = 0;
    int ok = 0, failed = 0;
    for (int it = 0; it < 800; it++) {
        memcpy(buf, orig, n);
        size_t len = n;
        int nmut = 1 + (int)(it % 4);
        for (int k = 0; k < nmut; k++) {
            x = tw_rng_next(&r);
            size_t pos = (size_t)(x % (8 + hl)); /* length field or header */
            static const char pool[] = "0123456789[]{},:\"-eE. FBI";
            buf[pos] =
                (x >> 40) & 1 ? (unsigned char)pool[(x >> 20) % (sizeof pool - 1)] : (unsigned char)(x >> 32);
        }
        if (it % 7 == 0) len = (size_t)(x % n); /* truncation */
        write_raw(buf, len);
        st_file f;
        char err[512] = "";
        if (st_open(path, &f, err, sizeof err) == 0) {
            ok++;
            for (size_t i = 0; i < f.n_tensors; i++) {
                const st_tensor *t = &f.tensors[i];
                ck_assert_uint_le(t->offset, f.size);
                ck_assert_uint_le(t->nbytes, f.size - t->offset);
                ck_assert_uint_ge(t->offset, f.data_start);
                for (size_t j = 0; j < i; j++) {
                    const st_tensor *u = &f.tensors[j];
                    if (!t->nbytes || !u->nbytes) continue;
                    ck_assert_msg(t->offset + t->nbytes <= u->offset || u->offset + u->nbytes <= t->offset,
                                  "accepted overlapping tensors");
                }
            }
            st_close(&f);
        } else {
            failed++;
            ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "bad message: %s", err);
            ck_assert_ptr_null(strchr(err, '\n'));
        }
    }
    ck_assert_int_gt(failed, 100);
    fprintf(stderr, "fuzz: %d accepted, %d rejected\n", ok, failed);
    ck_assert_int_gt(ok, 0);
    TT_FREE(orig, buf);
}
END_TEST

/* ---- conversions ---- */

/* Independent reference: the value of a 16-bit float with ebits exponent
 * bits (bias 2^(ebits-1) - 1) and mbits mantissa bits, by arithmetic. */
static double ref_float16(uint16_t h, int ebits, int mbits)
{
    const int emax = (1 << ebits) - 1, bias = emax / 2;
    int s = h >> 15, e = (h >> mbits) & emax, m = h & ((1 << mbits) - 1);
    double v;
    if (e == 0)
        v = ldexp((double)m, 1 - bias - mbits);
    else if (e == emax)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)((1 << mbits) + m), e - bias - mbits);
    return s ? -v : v;
}

/* IEEE half: 5 exponent bits, 10 mantissa bits, bias 15. */
static double ref_f16(uint16_t h) { return ref_float16(h, 5, 10); }

/* bfloat16: 8 exponent bits, 7 mantissa bits, bias 127. */
static double ref_bf16(uint16_t b) { return ref_float16(b, 8, 7); }

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* A 16-bit float format: its conversions, an exact reference decoder, the
 * bits of +inf and the value one step past the largest finite one. */
typedef struct {
    const char *name;
    float (*to_f32)(uint16_t);
    uint16_t (*from_f32)(float);
    double (*ref)(uint16_t);
    uint32_t inf;
    double past_max;
} half_format;

static const half_format f16 = {"F16", st_f16_to_f32, st_f32_to_f16, ref_f16, 0x7c00, 65536.0};
static const half_format bf16 = {"BF16", st_bf16_to_f32, st_f32_to_bf16, ref_bf16, 0x7f80, 0x1p128};

/* Every 16-bit pattern decodes to the reference's value, signed zeros and
 * infinities included; NaN stays NaN (with payload: its sign and the top
 * 10 mantissa bits are kept, as in F16). */
static void check_decode(const half_format *f, int payload)
{
    long bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = f->to_f32((uint16_t)h);
        double want = f->ref((uint16_t)h);
        if (isnan(want)) {
            if (!isnan(got) ||
                (payload && (((fbits(got) >> 13) & 0x3ff) != (h & 0x3ff) || (fbits(got) >> 31) != (h >> 15))))
                bad++;
        } else if ((double)got != want || !signbit(got) != !signbit(want)) {
            if (bad < 5) fprintf(stderr, "%s %04x: got %a want %a\n", f->name, h, got, want);
            bad++;
        }
    }
    ck_assert_msg(bad == 0, "%ld of 65536 %s patterns converted wrongly", bad, f->name);
}

START_TEST(t_f16_to_f32_all)
{
    check_decode(&f16, 1);
    /* the bulk version reads little-endian pairs at any alignment */
    unsigned char raw[7] = {0xff, 0x00, 0x3c, 0x01, 0x00, 0x00, 0xfc};
    float out[3];
    st_f16_to_f32_n(out, raw + 1, 3);
    ck_assert(out[0] == 1.0f);
    ck_assert(out[1] == (float)ldexp(1.0, -24));
    ck_assert(isinf(out[2]) && out[2] < 0);
}
END_TEST

START_TEST(t_bf16_to_f32_all)
{
    check_decode(&bf16, 0);
    unsigned char raw[5] = {0, 0x80, 0x3f, 0x00, 0xc0};
    float out[2];
    st_bf16_to_f32_n(out, raw + 1, 2);
    ck_assert(out[0] == 1.0f);
    ck_assert(out[1] == -2.0f);
}
END_TEST

/* Every value of f round-trips, and for every pair of neighbouring finite
 * positive values the exact midpoint rounds to the even one while the
 * floats just below / above it round down / up (negative values mirror). */
static void check_rounding(const half_format *f)
{
    long bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float v = f->to_f32((uint16_t)h);
        uint16_t back = f->from_f32(v);
        if (isnan(v) ? !isnan(f->to_f32(back)) : back != h) bad++;
    }
    ck_assert_msg(bad == 0, "%ld %s values do not round-trip", bad, f->name);
    for (uint32_t h = 0; h < f->inf; h++) {
        double a = f->ref((uint16_t)h);
        double b = h + 1 == f->inf ? f->past_max : f->ref((uint16_t)(h + 1));
        /* past the largest finite value the midpoint rounds to inf */
        double m = (a + b) / 2;
        float mid = (float)m;
        ck_assert((double)mid == m); /* exact in F32 */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        uint16_t lo = f->from_f32(nextafterf(mid, 0.0f));
        uint16_t mi = f->from_f32(mid);
        uint16_t hi = f->from_f32(nextafterf(mid, INFINITY));
        if (lo != h || mi != even || hi != h + 1) {
            if (bad < 5) fprintf(stderr, "%s %04x: below %04x mid %04x above %04x\n", f->name, h, lo, mi, hi);
            bad++;
        }
        if (f->from_f32(-mid) != (uint16_t)(even | 0x8000)) bad++;
    }
    ck_assert_msg(bad == 0, "%ld %s rounding cases wrong", bad, f->name);
    ck_assert(isnan(f->to_f32(f->from_f32(NAN))));
}

START_TEST(t_f32_to_f16_rounding)
{
    check_rounding(&f16);
    ck_assert_uint_eq(st_f32_to_f16(1e10f), 0x7c00);
    ck_assert_uint_eq(st_f32_to_f16(-INFINITY), 0xfc00);
    ck_assert_uint_eq(st_f32_to_f16(1e-30f), 0);
    ck_assert_uint_eq(st_f32_to_f16(-0.0f), 0x8000);
}
END_TEST

START_TEST(t_f32_to_bf16_rounding) { check_rounding(&bf16); }
END_TEST

START_TEST(t_dtype_table)
{
    st_dtype d;
    ck_assert_int_eq(st_dtype_parse("BF16", &d), 0);
    ck_assert_int_eq(d, ST_BF16);
    ck_assert_uint_eq(st_dtype_size(d), 2);
    ck_assert_int_eq(st_dtype_parse("F64", &d), 0);
    ck_assert_uint_eq(st_dtype_size(d), 8);
    ck_assert_str_eq(st_dtype_name(ST_F32), "F32");
    ck_assert_int_eq(st_dtype_parse("f32", &d), -1); /* case matters */
    ck_assert_int_eq(st_dtype_parse("", &d), -1);
}
END_TEST

int main(void)
{
    const TTest *const parse_tests[] = {t_valid,
                                        t_empty_header_object,
                                        t_missing_file,
                                        t_directory,
                                        t_empty_file,
                                        t_truncated_length,
                                        t_length_beyond_file,
                                        t_length_huge,
                                        t_malformed_json,
                                        t_malformed_json_multiline,
                                        t_fifo,
                                        t_nul_in_header,
                                        t_duplicate_key,
                                        t_not_object,
                                        t_entry_not_object,
                                        t_metadata_not_object,
                                        t_missing_dtype,
                                        t_missing_shape,
                                        t_missing_offsets,
                                        t_unknown_dtype,
                                        t_dtype_not_string,
                                        t_bad_shape_entry,
                                        t_shape_not_array,
                                        t_too_many_dims,
                                        t_shape_overflow,
                                        t_bytes_overflow,
                                        t_offsets_not_pair,
                                        t_offsets_negative,
                                        t_offsets_reversed,
                                        t_offsets_out_of_range,
                                        t_size_mismatch,
                                        t_overlap,
                                        t_overlap_same_start,
                                        t_truncated_data,
                                        t_name_sanitised,
                                        t_long_name_cut,
                                        t_small_err_buffer,
                                        t_fuzz_mutations,
                                        NULL};
    const TTest *const convert_tests[] = {t_f16_to_f32_all,       t_bf16_to_f32_all, t_f32_to_f16_rounding,
                                          t_f32_to_bf16_rounding, t_dtype_table,     NULL};
    const tw_case cases[] = {
        {.name = "parse", .timeout = 60, .setup = setup, .teardown = teardown, .tests = parse_tests},
        {.name = "convert", .tests = convert_tests},
    };
    return tw_check_main("safetensors", cases, 2);
}
