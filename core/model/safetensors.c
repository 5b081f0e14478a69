#include "core/model/safetensors.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/fs.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},           [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},         [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4},         [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8},         [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_N_DTYPES ? dtypes[d].name : "?"; }

size_t st_dtype_size(st_dtype d) { return (unsigned)d < ST_N_DTYPES ? dtypes[d].size : 0; }

int st_dtype_parse(const char *s, st_dtype *d)
{
    for (int i = 0; i < ST_N_DTYPES; i++) {
        if (strcmp(s, dtypes[i].name) == 0) {
            *d = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

void st_printable_name(char *out, const char *name) { tw_printable(out, ST_NAME_BUF, name, strlen(name)); }

/* Writes "<path>: [tensor '<name>': ]<message>" into err. */
static void st_error(char *err, size_t errlen, const char *path, const char *tensor, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    int n;
    if (tensor) {
        char nm[ST_NAME_BUF];
        st_printable_name(nm, tensor);
        n = snprintf(err, errlen, "%s: tensor '%s': ", path, nm);
    } else {
        n = snprintf(err, errlen, "%s: ", path);
    }
    if (n < 0 || (size_t)n >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    tw_vset_err(err, errlen, (size_t)n, fmt, ap);
    va_end(ap);
}

static void st_clear(st_file *f) { memset(f, 0, sizeof *f); }

void st_close(st_file *f)
{
    if (!f) return;
    fs_unmap_file(f->map, f->size);
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    st_clear(f);
}

void st_release_map(st_file *f, void **map, size_t *size)
{
    *map = (void *)f->map;
    *size = f->size;
    f->map = NULL;
    st_close(f);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a;
    const st_tensor *y = *(const st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : (x->nbytes > y->nbytes);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    size_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->tensors[mid].name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Reads one non-negative JSON integer into *out. */
static int json_to_size(const json_t *v, size_t *out)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return -1;
    if ((unsigned long long)x > (unsigned long long)SIZE_MAX) return -1;
    *out = (size_t)x;
    return 0;
}

/* Validates one header entry and fills *t (name not yet set). data_len is
 * the size of the data area; data_start its absolute offset. */
static int parse_entry(const char *path, const char *name, const json_t *e, size_t data_start,
                       size_t data_len, st_tensor *t, char *err, size_t errlen)
{
    if (!json_is_object(e)) {
        st_error(err, errlen, path, name, "entry is not a JSON object");
        return -1;
    }
    const json_t *jd = json_object_get(e, "dtype");
    const json_t *js = json_object_get(e, "shape");
    const json_t *jo = json_object_get(e, "data_offsets");
    if (!jd) {
        st_error(err, errlen, path, name, "missing \"dtype\"");
        return -1;
    }
    if (!js) {
        st_error(err, errlen, path, name, "missing \"shape\"");
        return -1;
    }
    if (!jo) {
        st_error(err, errlen, path, name, "missing \"data_offsets\"");
        return -1;
    }

    if (!json_is_string(jd)) {
        st_error(err, errlen, path, name, "\"dtype\" is not a string");
        return -1;
    }
    if (st_dtype_parse(json_string_value(jd), &t->dtype) != 0) {
        char dn[ST_NAME_BUF];
        st_printable_name(dn, json_string_value(jd));
        st_error(err, errlen, path, name, "unknown dtype \"%s\"", dn);
        return -1;
    }

    if (!json_is_array(js)) {
        st_error(err, errlen, path, name, "\"shape\" is not an array");
        return -1;
    }
    size_t nd = json_array_size(js);
    if (nd > ST_MAX_DIMS) {
        st_error(err, errlen, path, name, "shape has %zu dimensions (at most %d)", nd, ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)nd;
    t->numel = 1;
    for (size_t i = 0; i < nd; i++) {
        size_t d;
        if (json_to_size(json_array_get(js, i), &d) != 0) {
            st_error(err, errlen, path, name, "shape entry %zu is not a non-negative integer", i);
            return -1;
        }
        t->shape[i] = d;
        if (__builtin_mul_overflow(t->numel, d, &t->numel)) {
            st_error(err, errlen, path, name, "shape element count overflows");
            return -1;
        }
    }
    size_t es = st_dtype_size(t->dtype);
    if (__builtin_mul_overflow(t->numel, es, &t->nbytes)) {
        st_error(err, errlen, path, name, "shape byte size overflows");
        return -1;
    }

    size_t b, en;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || json_to_size(json_array_get(jo, 0), &b) != 0 ||
        json_to_size(json_array_get(jo, 1), &en) != 0) {
        st_error(err, errlen, path, name, "\"data_offsets\" is not a pair of non-negative integers");
        return -1;
    }
    if (b > en) {
        st_error(err, errlen, path, name, "data_offsets [%zu, %zu] are reversed", b, en);
        return -1;
    }
    if (en > data_len) {
        st_error(err, errlen, path, name,
                 "data_offsets [%zu, %zu] go past the end of the data area "
                 "(%zu bytes; file truncated?)",
                 b, en, data_len);
        return -1;
    }
    if (en - b != t->nbytes) {
        st_error(err, errlen, path, name,
                 "data_offsets [%zu, %zu] hold %zu bytes, but %s shape of %zu "
                 "elements needs %zu",
                 b, en, en - b, st_dtype_name(t->dtype), t->numel, t->nbytes);
        return -1;
    }
    t->offset = data_start + b;
    return 0;
}

/* Checks that no two non-empty tensors share a byte. */
static int check_overlap(const char *path, st_tensor *ts, size_t n, char *err, size_t errlen)
{
    if (n < 2) return 0;
    const st_tensor **by = malloc(n * sizeof *by);
    if (!by) {
        st_error(err, errlen, path, NULL, "out of memory");
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ts[i].nbytes > 0) by[m++] = &ts[i];
    qsort(by, m, sizeof *by, cmp_tensor_offset);
    int rc = 0;
    for (size_t i = 1; i < m; i++) {
        const st_tensor *p = by[i - 1], *q = by[i];
        if (q->offset < p->offset + p->nbytes) {
            char pn[ST_NAME_BUF];
            st_printable_name(pn, p->name);
            st_error(err, errlen, path, q->name, "data overlaps tensor '%s'", pn);
            rc = -1;
            break;
        }
    }
    free(by);
    return rc;
}

/* Parses and validates the header of the mapped file in f. */
static int parse_header(st_file *f, char *err, size_t errlen)
{
    const char *path = f->path;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    if (hlen > ST_MAX_HEADER) {
        st_error(err, errlen, path, NULL,
                 "header length %llu is larger than the %llu-byte limit "
                 "(not a safetensors file?)",
                 (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        return -1;
    }
    if (hlen > f->size - 8) {
        st_error(err, errlen, path, NULL,
                 "header length %llu goes past the end of the %zu-byte file "
                 "(truncated?)",
                 (unsigned long long)hlen, f->size);
        return -1;
    }
    f->data_start = 8 + (size_t)hlen;
    size_t data_len = f->size - f->data_start;

    json_error_t je;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        st_error(err, errlen, path, NULL, "header is not valid JSON: %s (byte %d)", je.text, je.position);
        return -1;
    }
    if (!json_is_object(root)) {
        st_error(err, errlen, path, NULL, "header is not a JSON object");
        json_decref(root);
        return -1;
    }

    size_t cap = json_object_size(root);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) {
        st_error(err, errlen, path, NULL, "out of memory");
        json_decref(root);
        return -1;
    }
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                st_error(err, errlen, path, NULL, "\"__metadata__\" is not an object");
                rc = -1;
                break;
            }
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        if (parse_entry(path, key, val, f->data_start, data_len, t, err, errlen) != 0) {
            rc = -1;
            break;
        }
        t->name = strdup(key);
        if (!t->name) {
            st_error(err, errlen, path, NULL, "out of memory");
            rc = -1;
            break;
        }
        f->n_tensors++;
    }
    json_decref(root);
    if (rc != 0) return -1;

    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    return check_overlap(path, f->tensors, f->n_tensors, err, errlen);
}

int st_open(const char *path, st_file *f, char *err, size_t errlen)
{
    st_clear(f);
    f->path = strdup(path);
    if (!f->path) {
        st_error(err, errlen, path, NULL, "out of memory");
        return -1;
    }
    /* fs_map_file refuses a FIFO or device before it could block start-up */
    const void *map;
    size_t size;
    if (fs_map_file(path, SIZE_MAX, &map, &size, err, errlen) != 0) {
        st_close(f);
        return -1;
    }
    f->map = map;
    f->size = size;
    if (size < 8) {
        st_error(err, errlen, path, NULL, "file is %zu bytes, too short for the 8-byte header length", size);
        st_close(f);
        return -1;
    }
    if (parse_header(f, err, errlen) != 0) {
        st_close(f);
        return -1;
    }
    return 0;
}

/* ---- exact half-precision conversions ---------------------------------- */

static inline float bits_to_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t f32_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

float st_f16_to_f32(uint16_t h)
{
    /* Place exponent and mantissa at the F32 positions and rescale by
     * 2^(127-15): exact for normals, and for subnormals too (an F32
     * subnormal times a power of two that lands in the normal range is
     * exact). Inf/NaN get the all-ones exponent and keep the payload. */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t em = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t u = f32_to_bits(bits_to_f32(em) * 0x1p112f);
    if ((h & 0x7c00u) == 0x7c00u) u = 0x7f800000u | em;
    return bits_to_f32(u | sign);
}

float st_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t st_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb; /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t st_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) {                     /* normal half (>= 2^-14) */
        uint32_t r = a - ((uint32_t)112 << 23); /* rebias 127 -> 15 */
        uint32_t lsb = (r >> 13) & 1u;
        r += 0xfffu + lsb; /* nearest even on bit 13 */
        return (uint16_t)(sign | (r >> 13));
    }
    if (a < 0x33000000u) /* < 2^-25: rounds to 0 */
        return sign;
    /* subnormal half: value = m * 2^-24, m in [0, 1024] after rounding */
    uint32_t e = a >> 23;                       /* biased f32 exponent */
    uint32_t man = (a & 0x7fffffu) | 0x800000u; /* 24-bit significand */
    uint32_t shift = 126u - e;                  /* so that man >> shift = m */
    uint32_t m = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (m & 1u))) m++;
    return (uint16_t)(sign | m); /* m == 1024 is the smallest normal */
}

void st_f16_to_f32_n(float *dst, const void *src, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = st_f16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
}

void st_bf16_to_f32_n(float *dst, const void *src, size_t n)
{
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = st_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
}
