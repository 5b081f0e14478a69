/* Shared pieces of the weight analyses (SPEC.md sections 1-3): status codes,
 * per-head weight slices, and the cached per-block intermediate LN_b(E).
 *
 * Every analysis function is deterministic (same model, same arguments, same
 * BLAS thread count -> bitwise the same answer), touches the model read-only,
 * and is safe to call from several threads at once with one shared cache. */
#ifndef TW_ANA_COMMON_H
#define TW_ANA_COMMON_H

#include <stddef.h>

#include "core/blockcache.h"
#include "core/gpt2.h"

/* Status codes of the analysis functions (0 = success). Range checks belong
 * to the api layer; these codes exist so that a missed check is an error
 * answer, never a crash. */
enum {
    ANA_OK = 0,
    ANA_EINVAL = -1, /* NULL pointer, unusable model config, bad enum value */
    ANA_EBLOCK = -2, /* block outside [0, n_layer) */
    ANA_EHEAD = -3,  /* head outside [0, n_head) (and not -1 = all) */
    ANA_EK = -4,     /* k outside [1, vocab_size] */
    ANA_ETOP = -5,   /* number of directions outside [0, dh] */
    ANA_ETOKEN = -6, /* a token id outside [0, vocab_size) */
    ANA_ENOMEM = -7, /* allocation failed */
};

/* A short English name for a status code ("block out of range", ...). */
const char *ana_strerror(int code);

/* ANA_OK if the model's config and the pointers the analyses read are usable
 * (dimensions >= 1, n_embd % n_head == 0, wte/ln_f/blocks present). */
int ana_check_model(const gpt2_model *m);

/* Per-head slices of block b (SPEC.md, Notation), as (pointer, leading
 * dimension) into the checkpoint's row-major storage:
 *   Wq_h, Wk_h, Wv_h: (d, dh), element (i, j) at w[i * ld + j], ld = 3d
 *   Wo_h:             (dh, d), element (i, j) at w[i * ld + j], ld = d
 *   bq_h, bk_h, bv_h: (dh) contiguous. */
typedef struct {
    const float *wq, *wk, *wv; /* ld = ld_qkv */
    const float *wo;           /* ld = ld_o */
    const float *bq, *bk, *bv;
    size_t ld_qkv, ld_o;
} ana_head;

/* Fills *h for head `head` of block `block`; no range check (callers check). */
void ana_head_slices(const gpt2_model *m, int block, int head, ana_head *h);

/* Acquires LN_b(E) (V, d) floats for block b (ln_1 of that block, the
 * model's ln_eps), filling it on a miss; 4 V d bytes (154 MB for 124M). The
 * buffer is at blockcache_data(*e) until blockcache_release(c, *e). c may be
 * NULL (a private copy). Returns ANA_OK, ANA_EBLOCK, or ANA_ENOMEM. */
int ana_acquire_ln1_embeddings(const gpt2_model *m, blockcache *c, int block,
                               blockcache_entry **e);

/* Maps a topk/blockcache status to an ANA_* code. */
int ana_from_status(int rc);

#endif
