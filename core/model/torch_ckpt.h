/* torch_ckpt: nanoGPT checkpoints (out/ckpt.pt, written by torch.save) and
 * nanoGPT's character-level tokenizer file meta.pkl, read natively, without
 * Python and without executing anything from the file.
 *
 * ckpt.pt is a ZIP archive (core/model/zipread.h) of stored entries under
 * one record folder <prefix>/ ("archive", or the file's stem, depending on
 * how torch.save was called): <prefix>/data.pkl (a pickle, protocol 2; read
 * by core/model/pickle.h with the torch globals allowed), <prefix>/data/<key>
 * (one raw little-endian storage each), <prefix>/version (or .data/version),
 * and in newer torch <prefix>/byteorder and <prefix>/.data/serialization_id.
 * The prefix is the folder of the archive's first entry, as torch's own
 * reader takes it. data.pkl is nanoGPT's
 *   {'model': state_dict, 'optimizer': ..., 'model_args': {...},
 *    'iter_num': int, 'best_val_loss': float or 0-dim tensor, 'config': {...}}
 * (a bare state dict, every value a tensor, is accepted too).
 *
 * torch_ckpt_open validates, before returning:
 *   - the path is a regular file (FIFOs and devices are refused without
 *     blocking) of at most TC_MAX_FILE bytes; data.pkl is at most
 *     TC_MAX_PICKLE bytes; the whole ZIP structure (zipread.h);
 *   - a version record exists; a byteorder record, if any, says "little";
 *   - every value of the model state dict is a tensor with a str name (a
 *     torch.compile "_orig_mod." prefix is removed; a name then appearing
 *     twice is an error);
 *   - every storage a model tensor uses exists as a stored entry, holds
 *     exactly numel * element size bytes, starts aligned to its element
 *     size, and every reference to it agrees on dtype and numel;
 *   - every tensor's elements (offset + sum((shape_i - 1) * stride_i)) lie
 *     inside its storage, with overflow-checked arithmetic, and its logical
 *     size (numel * element size, which stride-0 views can make larger than
 *     the storage) is at most the file size, so a copy of it is bounded;
 *   - model_args values have the right types and ranges; config.dataset is
 *     a str; iter_num an int; best_val_loss a number or 0-dim float tensor.
 * The optimizer state is not looked at beyond the pickle (which is parsed
 * whole, with its limits). CRCs are not checked at open (that reads every
 * byte): torch_ckpt_verify_crc does it when the caller wants.
 *
 * Tensor layout is torch's: nanoGPT's Linear weights are (out, in), i.e. the
 * transpose of Hugging Face GPT-2's Conv1D (in, out); wte and lm_head are
 * tied (two names, one storage); under torch < 2.0 each block also carries
 * the causal-mask buffer attn.bias (1, 1, block_size, block_size).
 *
 * Errors: one line "<path>: <problem>", or "<path>: tensor '<name>':
 * <problem>" when about a tensor (names made printable and shortened).
 *
 * Ownership and lifetime: torch_ckpt_open maps the file read-only and owns
 * the mapping; torch_ckpt_open_mem reads a caller's buffer, which must
 * outlive the torch_ckpt. tc_tensor.data, tc_storage.data and every string
 * point into the mapping or into memory owned by the torch_ckpt, valid until
 * torch_ckpt_close. The mapping is MAP_PRIVATE, PROT_READ: if another
 * process truncates the file while it is mapped, reading a tensor faults
 * (SIGBUS), as for any mmap reader. After open a torch_ckpt is read-only:
 * concurrent readers (and torch_ckpt_verify_crc) are safe; close must not
 * race with them.
 *
 * meta.pkl (nanoGPT data/shakespeare_char/prepare.py): a plain pickle
 * (protocol 4) {'vocab_size': V, 'itos': {id: str}, 'stoi': {str: id}};
 * meta_pkl_load checks that itos has exactly the ids 0..V-1, stoi exactly V
 * entries, and stoi[itos[i]] == i for every i (so the strings are distinct).
 * No global is allowed in it but collections.OrderedDict.
 */
#ifndef TW_TORCH_CKPT_H
#define TW_TORCH_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/model/pickle.h"
#include "core/model/safetensors.h" /* st_dtype, st_dtype_name, st_dtype_size */
#include "core/model/zipread.h"

#define TC_MAX_FILE   ((uint64_t)256 << 30) /* 256 GiB */
#define TC_MAX_PICKLE ((size_t)512 << 20)   /* data.pkl */
#define TC_MAX_NAME   1024                  /* tensor name bytes */
#define TC_MAX_META   ((size_t)64 << 20)    /* meta.pkl */
#define TC_MAX_VOCAB  (1 << 24)

typedef struct {
    const char *key;      /* storage key (entry <prefix>/data/<key>) */
    const char *location; /* as saved: "cpu", "cuda:0", ... */
    const zip_entry *entry;
    st_dtype dtype;
    size_t numel;
    size_t nbytes;       /* numel * element size == entry size */
    const uint8_t *data; /* inside the mapping, aligned to the element size */
    size_t first_tensor; /* a tensor using it (for messages) */
} tc_storage;

typedef struct {
    char *name; /* state-dict key without "_orig_mod.", owned */
    st_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[PK_MAX_DIMS];
    int64_t stride[PK_MAX_DIMS]; /* in elements */
    int64_t storage_offset;      /* in elements */
    size_t numel;
    const void *data;  /* element (0, ..., 0) inside the mapping */
    int contiguous;    /* C-contiguous (strides of size-1 dims ignored, as torch) */
    size_t span_begin; /* bytes of the storage the tensor can reach: */
    size_t span_end;   /*   [begin, end), begin == end when numel == 0 */
    size_t storage;    /* index into torch_ckpt.storages */
    int requires_grad;
} tc_tensor;

/* bits of tc_model_args.present */
enum {
    TC_ARG_N_LAYER = 1,
    TC_ARG_N_HEAD = 2,
    TC_ARG_N_EMBD = 4,
    TC_ARG_BLOCK_SIZE = 8,
    TC_ARG_BIAS = 16,
    TC_ARG_VOCAB_SIZE = 32,
    TC_ARG_DROPOUT = 64,
};

typedef struct {
    unsigned present;                                        /* TC_ARG_* of the keys found */
    int64_t n_layer, n_head, n_embd, block_size, vocab_size; /* 1 .. INT32_MAX */
    int bias;                                                /* 0/1 */
    double dropout;                                          /* 0 .. 1 */
} tc_model_args;

typedef struct {
    char *path; /* owned copy, used in messages */
    const uint8_t *map;
    size_t size;
    int owns_map;
    zip_archive zip;
    char *prefix;       /* record folder, without '/' */
    int format_version; /* the version record */
    pk_doc *doc;        /* data.pkl, whole */
    tc_tensor *tensors; /* (n_tensors) in state-dict order */
    size_t n_tensors;
    size_t *by_name;      /* tensor indices sorted by name */
    tc_storage *storages; /* (n_storages) the storages model tensors use */
    size_t n_storages;
    int compiled;        /* names had the "_orig_mod." prefix */
    int bare_state_dict; /* the pickle was a state dict, not nanoGPT's dict */
    tc_model_args args;
    char *dataset; /* config['dataset'] or NULL, owned */
    int has_iter_num;
    int64_t iter_num;
    int has_best_val_loss;
    double best_val_loss;
} torch_ckpt;

/* Opens, maps and validates a checkpoint file. Returns 0 and fills *c, or
 * -1 with one line in err and *c left empty (torch_ckpt_close is safe). */
int torch_ckpt_open(const char *path, torch_ckpt *c, char *err, size_t errlen);

/* The same on buf[0..len), not copied and not owned; `label` stands for the
 * path in messages. */
int torch_ckpt_open_mem(const void *buf, size_t len, const char *label, torch_ckpt *c, char *err,
                        size_t errlen);

/* Tensor named exactly `name` (without "_orig_mod."), or NULL. O(log n). */
const tc_tensor *torch_ckpt_find(const torch_ckpt *c, const char *name);

/* Pointer to element i (0 <= i < numel) in row-major logical order,
 * following the strides. */
const void *tc_tensor_elem(const tc_tensor *t, size_t i);

/* Copies a F32, F16, BF16 or F64 tensor into dst (numel floats, row-major
 * logical order; strides followed, so transposed views come out as torch
 * shows them). Returns 0, or -1 for other dtypes. */
int tc_tensor_to_f32(const tc_tensor *t, float *dst);

/* Checks the CRC-32 of data.pkl and of every storage the model uses (reads
 * each byte once). Returns 0, or -1 with one line naming the first storage
 * that fails and a tensor using it. */
int torch_ckpt_verify_crc(const torch_ckpt *c, char *err, size_t errlen);

/* Unmaps (when owned) and frees; idempotent. */
void torch_ckpt_close(torch_ckpt *c);

typedef struct {
    int vocab_size;
    char **itos;      /* (vocab_size) NUL-terminated UTF-8 strings, owned */
    size_t *itos_len; /* byte lengths (a string may hold a NUL) */
    int *by_str;      /* ids sorted by string, for meta_pkl_lookup */
} tc_meta;

/* Reads and validates a meta.pkl file (regular file, <= TC_MAX_META bytes).
 * Returns 0 and fills *m, or -1 with one line in err and *m empty. */
int meta_pkl_load(const char *path, tc_meta *m, char *err, size_t errlen);

/* The same on buf[0..len) (copied as needed; the buffer may go after). */
int meta_pkl_parse(const void *buf, size_t len, const char *label, tc_meta *m, char *err, size_t errlen);

/* Id of the string s[0..len) (stoi), or -1. O(log V). */
int meta_pkl_lookup(const tc_meta *m, const char *s, size_t len);

void meta_pkl_free(tc_meta *m); /* idempotent */

#endif
