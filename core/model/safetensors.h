/* safetensors: a validating reader over a read-only mmap, plus the exact
 * F16/BF16 <-> F32 conversions the loader and the synthetic writer share.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   [8 bytes little-endian u64 N][N bytes JSON header][data area]
 * The header is a JSON object: tensor name -> {"dtype", "shape", "data_offsets"}
 * with data_offsets = [begin, end) relative to the start of the data area,
 * plus an optional "__metadata__" object of strings, which is skipped.
 *
 * st_open validates everything before anything is used:
 *   - the file is a regular file of at least 8 bytes;
 *   - N <= ST_MAX_HEADER and 8 + N <= file size;
 *   - the header is valid JSON (no duplicate keys) and an object;
 *   - every entry has a known dtype (below), a shape of at most ST_MAX_DIMS
 *     non-negative integers whose product does not overflow, and
 *     data_offsets with begin <= end <= size of the data area;
 *   - end - begin == numel * dtype size;
 *   - no two non-empty tensors overlap.
 * Gaps between tensors and trailing bytes are tolerated.
 * Every error is one line "<path>: <problem>" or
 * "<path>: tensor '<name>': <problem>" (the name with control bytes replaced
 * and long names shortened, so the line stays one line).
 *
 * Dtypes: all the standard safetensors dtypes are recognised so that offsets
 * and sizes of every tensor can be checked (BOOL U8 I8 I16 U16 F16 BF16 I32
 * U32 F32 F64 I64 U64 F8_E4M3 F8_E5M2); anything else is an "unknown dtype"
 * error. Which dtypes a consumer accepts is the consumer's decision (the
 * GPT-2 loader takes F32, F16 and BF16 for the tensors it uses).
 */
#ifndef TW_SAFETENSORS_H
#define TW_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS   8
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* as the reference library */

typedef enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_F8_E4M3,
    ST_F8_E5M2,
    ST_N_DTYPES
} st_dtype;

typedef struct {
    char *name; /* owned, NUL-terminated */
    st_dtype dtype;
    int ndim; /* 0 for a scalar */
    size_t shape[ST_MAX_DIMS];
    size_t numel;  /* product of shape (1 for a scalar) */
    size_t offset; /* absolute byte offset in the file */
    size_t nbytes; /* numel * st_dtype_size(dtype) */
} st_tensor;

typedef struct {
    char *path;         /* owned copy, used in messages */
    const uint8_t *map; /* read-only mapping of the whole file */
    size_t size;        /* file size in bytes */
    size_t data_start;  /* 8 + header length */
    st_tensor *tensors; /* (n_tensors) sorted by name, owned */
    size_t n_tensors;
} st_file;

/* Opens, maps (PROT_READ, MAP_PRIVATE) and validates `path`. Returns 0 and
 * fills *f, or -1 with one line in err and *f left empty (st_close is safe).
 * Only the header pages are read; the data is not touched. */
int st_open(const char *path, st_file *f, char *err, size_t errlen);

/* Tensor named exactly `name`, or NULL. O(log n). */
const st_tensor *st_find(const st_file *f, const char *name);

/* First byte of the tensor's data inside the mapping. */
static inline const void *st_data(const st_file *f, const st_tensor *t) { return f->map + t->offset; }

/* Unmaps and frees; idempotent. */
void st_close(st_file *f);

/* Hands the mapping over to the caller (who must munmap(map, size)) and
 * closes the rest of *f. */
void st_release_map(st_file *f, void **map, size_t *size);

const char *st_dtype_name(st_dtype d);          /* "F32", ... */
size_t st_dtype_size(st_dtype d);               /* bytes per element */
int st_dtype_parse(const char *s, st_dtype *d); /* 0 or -1 if unknown */

/* Exact conversions. F16/BF16 -> F32 is exact for every value (normals,
 * subnormals, +-0, +-inf; NaN stays NaN with its payload kept in the top
 * bits). F32 -> F16/BF16 rounds to nearest, ties to even, overflows to inf,
 * keeps NaN a (quiet) NaN. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);
uint16_t st_f32_to_f16(float f);
uint16_t st_f32_to_bf16(float f);

/* Bulk conversion of n little-endian 16-bit values at src (any alignment)
 * into dst (n floats). */
void st_f16_to_f32_n(float *dst, const void *src, size_t n);
void st_bf16_to_f32_n(float *dst, const void *src, size_t n);

/* Writes a printable, bounded copy of a tensor name for messages:
 * control and non-ASCII bytes become '?', names longer than ~120 bytes are
 * cut with "...". out must hold at least ST_NAME_BUF bytes. */
#define ST_NAME_BUF 128
void st_printable_name(char *out, const char *name);

#endif
