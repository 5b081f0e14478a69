/* GPT-2 model: configuration, named parameter tensors, and the checkpoint loader.
 *
 * The loader reads a Hugging Face GPT-2 snapshot folder (config.json,
 * model.safetensors, and the tokenizer files). F32 tensors are used in place
 * inside a read-only mmap of model.safetensors; F16/BF16 tensors are converted
 * to F32 at load time into memory owned by the model (with lazy_blocks, the
 * blocks' weight matrices only when a computation needs them:
 * gpt2_block_acquire).
 *
 * Layout (Conv1D style, `in x out`, applied as y = x W + b), C = n_embd:
 *   attn_w (C, 3C): columns [0,C) query, [C,2C) key, [2C,3C) value;
 *   head h owns columns h*dh .. (h+1)*dh-1 inside each third.
 *   attn_proj_w (C, C): head h owns rows h*dh .. (h+1)*dh-1.
 */
#ifndef TW_GPT2_H
#define TW_GPT2_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_layer;    /* L, number of transformer blocks */
    int n_head;     /* H */
    int n_embd;     /* C (d) */
    int n_inner;    /* MLP width, 4C unless config.json says otherwise */
    int n_ctx;      /* positions in wpe */
    int vocab_size; /* V, rows of wte */
    float ln_eps;   /* layer_norm_epsilon, 1e-5 for GPT-2 */
} gpt2_config;

/* The weight of a linear map y = x W + b, W (in, out), as it is stored:
 * element (i, j) of W is p[i * rs + j * cs]. The Hugging Face layout
 * (Conv1D) stores W itself row-major: rs = out, cs = 1. nanoGPT's nn.Linear
 * stores W^T, (out, in) row-major: rs = 1, cs = in. Both are used in place
 * from the mapping; one of rs and cs is always 1. */
typedef struct {
    const float *p;
    size_t rs, cs;
} gpt2_mat;

/* Element (i, j) of a gpt2_mat. */
#define GPT2_AT(m, i, j) ((m).p[(size_t)(i) * (m).rs + (size_t)(j) * (m).cs])

/* The sub-matrix of m from row i0 and column j0 (its shape is the caller's). */
static inline gpt2_mat gpt2_mat_at(gpt2_mat m, size_t i0, size_t j0)
{
    m.p += i0 * m.rs + j0 * m.cs;
    return m;
}

/* W stored (in, out) row-major (the Hugging Face layout). */
static inline gpt2_mat gpt2_mat_rowmajor(const float *p, size_t out)
{
    gpt2_mat m = {p, out, 1};
    return m;
}

/* Biases and LayerNorm betas are NULL in a model trained without biases
 * (nanoGPT's bias=False): every computation then takes them as zero. */
typedef struct {
    const float *ln_1_w;      /* (C) gamma of ln_1 */
    const float *ln_1_b;      /* (C) beta of ln_1, or NULL */
    gpt2_mat attn_w;          /* (C, 3C) c_attn.weight */
    const float *attn_b;      /* (3C)    c_attn.bias, or NULL */
    gpt2_mat attn_proj_w;     /* (C, C)  attn.c_proj.weight */
    const float *attn_proj_b; /* (C) attn.c_proj.bias, or NULL */
    const float *ln_2_w;      /* (C) */
    const float *ln_2_b;      /* (C), or NULL */
    gpt2_mat fc_w;            /* (C, n_inner) mlp.c_fc.weight */
    const float *fc_b;        /* (n_inner), or NULL */
    gpt2_mat fc_proj_w;       /* (n_inner, C) mlp.c_proj.weight */
    const float *fc_proj_b;   /* (C), or NULL */
} gpt2_block;

typedef struct {
    const float *wte;    /* (V, C) token embeddings, also the tied LM head */
    const float *wpe;    /* (n_ctx, C) position embeddings */
    gpt2_block *h;       /* (L) blocks, array owned by the model */
    const float *ln_f_w; /* (C) */
    const float *ln_f_b; /* (C), or NULL */
} gpt2_params;

typedef enum {
    GPT2_FORMAT_SAFETENSORS = 0, /* a Hugging Face snapshot: config.json + model.safetensors */
    GPT2_FORMAT_NANOGPT = 1,     /* nanoGPT's ckpt.pt (torch.save of a dict with model_args) */
} gpt2_format;

typedef struct {
    gpt2_config cfg;
    gpt2_params p;
    gpt2_format format;
    size_t n_params;    /* number of scalar parameters (buffers excluded) */
    uint64_t file_size; /* bytes of the checkpoint file */
    char *dir;          /* folder holding the checkpoint (owned) */
    char *file;         /* the checkpoint file: model.safetensors or ckpt.pt (owned) */
    int has_bias;       /* every linear map and LayerNorm has its bias (nanoGPT bias=False: 0) */
    int vocab_rows;     /* rows of wte; cfg.vocab_size may be fewer (gpt2_limit_vocab) */
    /* storage: private to the loaders */
    void *map; /* mmap of model.safetensors */
    size_t map_len;
    void *ckpt;    /* the open torch_ckpt of a nanoGPT checkpoint */
    float **owned; /* converted tensors */
    size_t n_owned;
    struct gpt2_lazy *lazy; /* F16/BF16 block matrices left in the mapping (gpt2_block_acquire), or NULL */
    /* provenance */
    int synthetic;           /* 1 when config.json says "twd_synthetic": true */
    uint64_t synthetic_seed; /* "twd_seed" when synthetic, else 0 */
    char dtype[8];           /* stored dtype of wte: "F32", "F16" or "BF16" */
    int has_iter_num;        /* nanoGPT: the training step it was saved at */
    int64_t iter_num;
    char dataset[128];        /* nanoGPT: config['dataset'], or empty */
    int compiled;             /* nanoGPT: saved from a torch.compile'd model (_orig_mod.) */
    int demo;                 /* config.json: "twd_demo": true (twd's own small trained model) */
    char corpus[128];         /* config.json "twd_corpus": what the demo model was trained on */
    char default_phrase[256]; /* config.json "twd_default_phrase": a phrase the model makes sense of */
} gpt2_model;

/* Only the first n rows of wte are real tokens (nanoGPT pads the vocabulary
 * to a multiple of 64, e.g. 50304 rows for GPT-2's 50257 tokens): every
 * analysis and the logits then use those n rows (cfg.vocab_size = n), and
 * vocab_rows keeps the stored count. 0, or -1 when n is 0 or more than the
 * rows. */
int gpt2_limit_vocab(gpt2_model *m, int n);

/* Sanity bounds on config.json values (gpt2-xl is 48/25/1600/1024/50257). */
#define GPT2_MAX_LAYER        1024
#define GPT2_MAX_HEAD         1024
#define GPT2_MAX_EMBD         65536
#define GPT2_MAX_INNER        (4 * 65536)
#define GPT2_MAX_CTX          (1 << 20)
#define GPT2_MAX_VOCAB        (1 << 24)
#define GPT2_MAX_CONFIG_BYTES ((size_t)16 << 20) /* config.json larger than this is refused */

/* Reads and validates `path` (a GPT-2 config.json) into *cfg: n_layer,
 * n_head, n_embd, n_positions (or n_ctx), vocab_size must be integers in
 * 1..GPT2_MAX_*, n_embd % n_head == 0; n_inner absent or null means
 * 4*n_embd; layer_norm_epsilon defaults to 1e-5 and must be > 0 and finite.
 * If synthetic is not NULL it receives 1 when "twd_synthetic" is true (and
 * *seed the "twd_seed"), else 0. Returns 0, or -1 with one line in err
 * naming the file and the key. */
int gpt2_config_load(const char *path, gpt2_config *cfg, int *synthetic, uint64_t *seed, char *err,
                     size_t errlen);

/* Number of scalar parameters a checkpoint of this config holds (wte, wpe,
 * every block's weights and biases, ln_f; no buffers, no separate lm_head). */
size_t gpt2_param_count(const gpt2_config *cfg);

/* Loads a checkpoint into *m: `path` is a folder holding model.safetensors
 * (with config.json: a Hugging Face snapshot) or ckpt.pt (nanoGPT; also in
 * out/ of a nanoGPT folder), or the ckpt.pt / model.safetensors file itself. nanoGPT checkpoints are read by
 * core/model/torch_ckpt.h without Python (nothing in them is executed), their
 * nn.Linear weights used in place in their (out, in) layout; the
 * "_orig_mod." prefix of torch.compile, bias=False models (biases NULL), the
 * causal-mask buffers and the tied lm_head are handled; model_args gives the
 * shape. Returns 0 on success. On failure
 * returns -1, leaves *m empty (safe to gpt2_free), and writes one line into
 * err naming the file and, where there is one, the tensor, e.g.
 *   "/models/gpt2/model.safetensors: tensor 'h.3.attn.c_attn.weight': shape [768, 2000], expected [768, 2304]"
 * Never aborts on bad input. The file in the message is the full path
 * (dir/model.safetensors or dir/config.json).
 * Tensor names are accepted with or without the "transformer." prefix (the
 * same tensor under both names is an error); h.N.attn.bias and
 * h.N.attn.masked_bias and any tensor the model does not use (lm_head.weight)
 * are ignored. Used tensors must be F32, F16 or BF16 with exactly the shape
 * the config implies, and hold finite values only (a NaN or an infinity is
 * refused naming the tensor and the element). F32 data 4-byte aligned in the file is used in place
 * (pointers into the mmap, valid until gpt2_free); otherwise, and for
 * F16/BF16, it is converted into buffers owned by the model. Loading reads
 * the header and makes one pass over the data (the finiteness check, about
 * 0.1 s for the 124M shape with a warm page cache).
 * Not thread-safe on the same *m; a loaded model is read-only and may be
 * shared between threads. */
int gpt2_load(const char *path, gpt2_model *m, char *err, size_t errlen);

/* The mapping of the checkpoint file (its first byte), or NULL. */
const void *gpt2_mapping(const gpt2_model *m);

/* Has the checkpoint file changed since it was mapped? 0 when it has not
 * (same device, inode, size and modification time as when it was mapped,
 * and no page of the mapping failed to read); 1 with what happened in why:
 * "truncated from 523.7 MB to 0 bytes", "rewritten in place", "replaced by
 * another file of ...", "removed", "a mapped page could not be read". One
 * stat() of the file; thread-safe on a loaded model. gpt2_load itself fails
 * ("changed while it was being loaded") when the file changed during the
 * load. */
int gpt2_file_changed(const gpt2_model *m, char *why, size_t n);
/* How gpt2_load_opts loads; zeroed, what gpt2_load does. */
typedef struct {
    int lazy_blocks;     /* leave the block matrices of an F16/BF16 safetensors checkpoint unconverted
                            (gpt2_block_acquire converts them when needed) */
    size_t block_budget; /* with lazy_blocks: bytes of converted blocks kept (gpt2_set_block_budget) */
} gpt2_load_options;

/* gpt2_load with options. */
int gpt2_load_opts(const char *path, gpt2_model *m, const gpt2_load_options *o, char *err, size_t errlen);

/* Releases everything gpt2_load acquired; idempotent. */
void gpt2_free(gpt2_model *m);

/* ---- Blocks of F16/BF16 checkpoints ----
 * Loaded with gpt2_load_options.lazy_blocks (the daemon does), the four
 * weight matrices of every block of an F16 or BF16 safetensors checkpoint
 * (c_attn, attn.c_proj, c_fc, mlp.c_proj: 12 C^2 of the block's 12 C^2 +
 * 13 C values) are not converted at load: they stay in the file's
 * dtype in the mapping, and their gpt2_mat.p in m->p.h is NULL. Everything
 * else (wte, wpe, the biases and LayerNorm parameters) is converted at load.
 * Code that reads a block's weight matrices gets the block through
 * gpt2_block_acquire: for an F32 checkpoint that is m->p.h[b] itself (no
 * copy, no cost); for a lazy block, float32 copies of its matrices, kept
 * for the model's lifetime while the converted blocks fit its budget (the
 * first blocks asked for), otherwise converted for this caller alone and
 * freed at release. So the resident size stays within the mapping, the
 * budget and the blocks in use. */
typedef struct {
    gpt2_block view; /* the block, its matrices in float32 */
    float *own;      /* a conversion private to this reference, or NULL */
} gpt2_block_ref;

/* Block b (0 <= b < n_layer) with float32 matrices, valid until
 * gpt2_block_release(ref); NULL when memory for a conversion runs out.
 * Thread-safe; a block being converted for the cache is waited for, never
 * converted twice. */
const gpt2_block *gpt2_block_acquire(const gpt2_model *m, int b, gpt2_block_ref *ref);
void gpt2_block_release(gpt2_block_ref *ref);

/* True when block b's matrices are left in F16/BF16 (acquire it to read them). */
int gpt2_block_is_lazy(const gpt2_model *m, int b);

/* Bytes of converted blocks a model keeps (default GPT2_BLOCK_BUDGET_DEFAULT);
 * blocks already kept stay. No effect on a model without lazy blocks. */
#define GPT2_BLOCK_BUDGET_DEFAULT ((size_t)1 << 30)
void gpt2_set_block_budget(gpt2_model *m, size_t bytes);

typedef struct {
    size_t lazy_blocks;             /* blocks whose matrices stay F16/BF16 */
    size_t kept_blocks, kept_bytes; /* converted and kept */
    size_t budget;
    unsigned long long conversions; /* block conversions since load (kept or private) */
} gpt2_block_stats;
void gpt2_get_block_stats(const gpt2_model *m, gpt2_block_stats *s);

#endif
