/* libFuzzer target for core/model/safetensors: st_open on arbitrary bytes
 * (through a memfd), then every promise of safetensors.h is checked and
 * every tensor's declared range is read byte by byte.
 *
 * A mapping has no redzones, so ASan cannot see a read past a tensor inside
 * the file's last page: the ranges are checked against the file size here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

static fz_file in;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_file_init(&in, "model.safetensors");
    return 0;
}

typedef struct {
    size_t offset, nbytes;
} range;

static int cmp_range(const void *a, const void *b)
{
    size_t x = ((const range *)a)->offset, y = ((const range *)b)->offset;
    return x < y ? -1 : x > y;
}

static void check_file(const st_file *f, size_t size)
{
    FZ_CHECK(f->map != NULL && f->size == size, "mapping of %zu bytes for a %zu-byte file", f->size, size);
    FZ_CHECK(f->data_start >= 8 && f->data_start <= size, "data_start %zu", f->data_start);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)f->map[i] << (8 * i);
    FZ_CHECK(hl <= ST_MAX_HEADER && f->data_start == 8 + hl, "header length %llu", (unsigned long long)hl);
    FZ_CHECK(strcmp(f->path, in.path) == 0, "path %s", f->path);
    uint64_t sum = 0;
    range *ranges = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *ranges);
    FZ_CHECK(ranges != NULL, "out of memory");
    size_t nr = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        FZ_CHECK(t->dtype >= 0 && t->dtype < ST_N_DTYPES, "dtype %d", (int)t->dtype);
        FZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS, "ndim %d", t->ndim);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            FZ_CHECK(t->shape[d] == 0 || numel <= SIZE_MAX / t->shape[d], "shape overflows");
            numel *= t->shape[d];
        }
        FZ_CHECK(numel == t->numel, "numel %zu, shape says %zu", t->numel, numel);
        FZ_CHECK(t->numel <= SIZE_MAX / st_dtype_size(t->dtype) &&
                     t->nbytes == t->numel * st_dtype_size(t->dtype),
                 "nbytes %zu", t->nbytes);
        FZ_CHECK(t->offset >= f->data_start && t->offset <= size && t->nbytes <= size - t->offset,
                 "tensor %zu: [%zu, +%zu) outside the data area [%zu, %zu)", i, t->offset, t->nbytes,
                 f->data_start, size);
        /* names are sorted, unique, and found by st_find */
        if (i) FZ_CHECK(strcmp(f->tensors[i - 1].name, t->name) < 0, "names out of order");
        FZ_CHECK(st_find(f, t->name) == t, "st_find misses '%s'", t->name);
        if (t->nbytes) ranges[nr++] = (range){t->offset, t->nbytes};
        const uint8_t *p = st_data(f, t);
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        if (t->dtype == ST_F16 || t->dtype == ST_BF16) {
            size_t n = t->numel < 4096 ? t->numel : 4096;
            float *out = malloc(n ? n * sizeof *out : 1);
            FZ_CHECK(out != NULL, "out of memory");
            if (t->dtype == ST_F16)
                st_f16_to_f32_n(out, p, n);
            else
                st_bf16_to_f32_n(out, p, n);
            for (size_t k = 0; k < n; k++) sum += out[k] == out[k];
            free(out);
        }
        char shown[ST_NAME_BUF];
        st_printable_name(shown, t->name);
        FZ_CHECK(strlen(shown) < ST_NAME_BUF && !strchr(shown, '\n'), "printable name");
        FZ_CHECK(strcmp(st_dtype_name(t->dtype), "?") != 0, "dtype name");
    }
    /* no two non-empty tensors overlap */
    qsort(ranges, nr, sizeof *ranges, cmp_range);
    for (size_t i = 1; i < nr; i++)
        FZ_CHECK(ranges[i - 1].offset + ranges[i - 1].nbytes <= ranges[i].offset, "tensors overlap at %zu",
                 ranges[i].offset);
    free(ranges);
    volatile uint64_t keep = sum;
    (void)keep;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_file_set(&in, data, size);
    st_file f;
    char err[512];
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%s: ", in.path);
    if (st_open(in.path, &f, err, sizeof err) == 0) {
        check_file(&f, size);
        if (size & 1) {
            /* the hand-over the loader uses */
            void *map;
            size_t len;
            st_release_map(&f, &map, &len);
            FZ_CHECK(map != NULL && len == size && f.map == NULL && f.tensors == NULL, "st_release_map");
            munmap(map, len);
        }
    } else {
        FZ_CHECK(fz_one_line(err, prefix), "error message \"%s\"", err);
        FZ_CHECK(f.map == NULL && f.tensors == NULL && f.n_tensors == 0, "failed st_open left state");
    }
    st_close(&f);
    st_close(&f); /* idempotent */
    return 0;
}
