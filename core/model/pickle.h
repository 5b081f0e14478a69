/* pickle: a restricted unpickler that turns a Python pickle (protocols 0-5)
 * into a small tree of plain values, executing nothing.
 *
 * It reads the data.pkl of torch.save archives (protocol 2) and plain data
 * pickles such as nanoGPT's meta.pkl (protocol 4, framed). Values:
 *   None, bool, int (int64; a LONG that does not fit is an error), float,
 *   str (valid UTF-8), bytes, tuple, list, set/frozenset, dict and ordered
 *   dict (keys: str or int only; a key given twice is an error), and, only
 *   when pk_options.torch is set:
 *   - global: one of the allow-listed names below, as a value;
 *   - storage: the persistent id ('storage', <torch.XStorage>, key,
 *     location, numel) after BINPERSID;
 *   - tensor: torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 *     requires_grad, backward_hooks[, metadata]) or _rebuild_parameter(tensor,
 *     requires_grad, backward_hooks), with every argument's type checked.
 *
 * Globals (GLOBAL, STACK_GLOBAL) may name only:
 *   collections.OrderedDict (always), and with pk_options.torch:
 *   torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter,
 *   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage.
 * Anything else is refused when the opcode is read, before any other use,
 * with "pickle: global 'os.system' is not allowed (GLOBAL at byte N)".
 * REDUCE is interpreted only for OrderedDict() / OrderedDict(list of pairs)
 * and the two torch rebuild functions; calling anything else (a storage
 * class, a value) is an error. BUILD only sets the attributes of an ordered
 * dict (torch stores `_metadata` that way) from a dict; they are kept in
 * u.dict.attrs. INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT1/2/4, PERSID (text),
 * NEXT_BUFFER, READONLY_BUFFER, and the text STRING/UNICODE/FLOAT opcodes are
 * refused as unsupported.
 *
 * The result is validated after STOP: it must not contain itself (cycles can
 * be built through the memo) and its nesting depth is at most max_depth, so
 * consumers may recurse over it to that depth. Values may be shared (the
 * memo makes a DAG, as in Python): a recursive walk that does not remember
 * what it visited can take time exponential in the depth, so walk only the
 * parts you need (torch_ckpt does) or bound the walk.
 *
 * Errors: one line, "pickle: <problem> (<OPCODE> at byte N)" or
 * "pickle: <problem>", without a path; the caller adds its own prefix.
 *
 * Ownership and lifetime: pk_parse copies everything it keeps (strings are
 * NUL-terminated copies) into an arena owned by the pk_doc; the input buffer
 * may be released right after pk_parse returns. Every pk_value pointer lives
 * until pk_free. A pk_doc is immutable after pk_parse: concurrent readers
 * are safe.
 *
 * Limits (pk_options, 0 = default): values created, stack size, memo size
 * and index (also below the input length, as any pickler numbers them), MARK
 * nesting, result nesting depth, total bytes of strings.
 * Independently of them, every value and container slot comes from an
 * opcode of the input, so memory is O(input length).
 */
#ifndef TW_PICKLE_H
#define TW_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/model/safetensors.h" /* st_dtype */

#define PK_MAX_DIMS 16

#define PK_DEFAULT_MAX_VALUES ((size_t)1 << 24)
#define PK_DEFAULT_MAX_STACK  ((size_t)1 << 20)
#define PK_DEFAULT_MAX_MEMO   ((size_t)1 << 22)
#define PK_DEFAULT_MAX_MARKS  256
#define PK_DEFAULT_MAX_DEPTH  100
#define PK_DEFAULT_MAX_STR    ((size_t)256 << 20)

typedef struct {
    int torch;            /* allow the torch globals and BINPERSID */
    size_t max_values;    /* values created in all */
    size_t max_stack;     /* entries on the stack */
    size_t max_memo;      /* memo slots (largest index + 1) */
    size_t max_marks;     /* MARKs open at once */
    size_t max_depth;     /* nesting depth of the result */
    size_t max_str_bytes; /* bytes of str and bytes values in all */
} pk_options;

typedef enum {
    PK_NONE,
    PK_BOOL,
    PK_INT,
    PK_FLOAT,
    PK_STR,
    PK_BYTES,
    PK_TUPLE,
    PK_LIST,
    PK_SET,
    PK_DICT,
    PK_ODICT,
    PK_GLOBAL,
    PK_STORAGE,
    PK_TENSOR,
    PK_N_KINDS
} pk_kind;

/* the allow-listed globals */
typedef enum {
    PK_G_ORDERED_DICT,
    PK_G_REBUILD_TENSOR_V2,
    PK_G_REBUILD_PARAMETER,
    PK_G_STORAGE_CLASS, /* pk_global.dtype says which */
} pk_global_id;

typedef struct pk_value pk_value;

typedef struct {
    st_dtype dtype;       /* element type of the storage class */
    const char *key;      /* storage key: entry "<prefix>/data/<key>" */
    const char *location; /* "cpu", "cuda:0", ... */
    int64_t numel;        /* elements of the storage (>= 0) */
} pk_storage;

typedef struct {
    pk_storage storage;
    int64_t offset;              /* storage_offset, elements (>= 0) */
    int ndim;                    /* 0..PK_MAX_DIMS */
    int64_t shape[PK_MAX_DIMS];  /* >= 0 */
    int64_t stride[PK_MAX_DIMS]; /* elements, >= 0 */
    int requires_grad;
    int parameter; /* came through _rebuild_parameter */
} pk_tensor;

struct pk_value {
    pk_kind kind;
    union {
        int b;     /* PK_BOOL */
        int64_t i; /* PK_INT */
        double f;  /* PK_FLOAT */
        struct {
            const char *s;
            size_t len;
        } str; /* PK_STR, PK_BYTES */
        struct {
            pk_value **items;
            size_t n, cap;
        } seq; /* PK_TUPLE, PK_LIST, PK_SET */
        struct {
            pk_value **keys, **vals;
            size_t n, cap;
            const pk_value *attrs; /* BUILD state or NULL */
        } dict;                    /* PK_DICT, PK_ODICT */
        struct {
            pk_global_id id;
            st_dtype dtype;
        } global;            /* PK_GLOBAL */
        pk_storage *storage; /* PK_STORAGE */
        pk_tensor *tensor;   /* PK_TENSOR */
    } u;
};

typedef struct pk_doc pk_doc;

/* Unpickles buf[0..len) (which must hold exactly one pickle, up to STOP;
 * trailing bytes are an error). Returns 0 and *out, or -1 with one line in
 * err and *out NULL. opt may be NULL (plain data, default limits). */
int pk_parse(const uint8_t *buf, size_t len, const pk_options *opt, pk_doc **out, char *err, size_t errlen);

const pk_value *pk_root(const pk_doc *d);
size_t pk_doc_values(const pk_doc *d); /* values created while parsing */
void pk_free(pk_doc *d);               /* NULL is fine */

const char *pk_kind_name(pk_kind k); /* "None", "int", "OrderedDict", ... */

/* Dict (or ordered dict) lookups; NULL if v is not a dict or has no such key. */
const pk_value *pk_dict_get(const pk_value *v, const char *key);
const pk_value *pk_dict_get_int(const pk_value *v, int64_t key);

static inline int pk_is_dict(const pk_value *v) { return v && (v->kind == PK_DICT || v->kind == PK_ODICT); }

static inline int pk_is_seq(const pk_value *v)
{
    return v && (v->kind == PK_TUPLE || v->kind == PK_LIST || v->kind == PK_SET);
}

#endif
