/* Shared pieces of the weight analyses (docs/MATH.md §1.3, §3-§6): status codes,
 * per-head weight slices, and the cached per-block intermediate LN_b(E).
 *
 * Every analysis function is deterministic (same model, same arguments, same
 * BLAS thread count -> bitwise the same answer), touches the model read-only,
 * and is safe to call from several threads at once with one shared cache. */
#ifndef TW_ANA_COMMON_H
#define TW_ANA_COMMON_H

#include <stddef.h>

#include "base/cancel.h"
#include "base/progress.h"
#include "base/status.h"
#include "core/ana/blockcache.h"
#include "core/model/gpt2.h"

/* The analysis functions return TW_OK or a base/status.h code. Range checks
 * belong to the api layer; the range codes (TW_EBLOCK, TW_EHEAD, TW_EK,
 * TW_ETOP, TW_ETOKEN) exist so that a missed check is an error answer,
 * never a crash. */

/* What every analysis runs with: the cache of intermediates it may share
 * with other requests (NULL: private copies, freed at the end), the
 * request's cancel flag and deadline, checked between blocks of work (NULL:
 * never stops; the analysis then returns TW_ECANCELED or TW_ETIMEDOUT), and
 * where a long analysis reports how far it is (NULL: nowhere). A NULL
 * ana_ctx means all defaults. */
typedef struct {
    blockcache *cache;
    const tw_cancel *cancel;
    tw_progress *progress;
} ana_ctx;

/* A context with only a cache, for tools and tests. */
#define ANA_CTX(c) (&(ana_ctx){.cache = (c), .cancel = NULL})

/* The parts of x, NULL-safe. */
static inline blockcache *ana_cache(const ana_ctx *x) { return x ? x->cache : NULL; }
static inline const tw_cancel *ana_cancel(const ana_ctx *x) { return x ? x->cancel : NULL; }
static inline tw_progress *ana_progress(const ana_ctx *x) { return x ? x->progress : NULL; }

/* TW_OK if the model's config and the pointers the analyses read are usable
 * (dimensions >= 1, n_embd % n_head == 0, wte/ln_f/blocks present). */
int ana_check_model(const gpt2_model *m);

/* Per-head slices of block b (docs/MATH.md §1.3), as views into the
 * checkpoint's storage in whichever layout it has (GPT2_AT(h.wq, i, j)):
 *   Wq_h, Wk_h, Wv_h: (d, dh);  Wo_h: (dh, d);
 *   bq_h, bk_h, bv_h: (dh) contiguous, or NULL in a model without biases. */
typedef struct {
    gpt2_mat wq, wk, wv;
    gpt2_mat wo;
    const float *bq, *bk, *bv;
} ana_head;

/* Fills *h for head `head` of block `block`; no range check (callers check). */
void ana_head_slices(const gpt2_model *m, int block, int head, ana_head *h);

/* Acquires LN_b(E) (V, d) floats for block b (ln_1 of that block, the
 * model's ln_eps), filling it on a miss; 4 V d bytes (154 MB for 124M). The
 * buffer is at blockcache_data(*e) until blockcache_release(c, *e). c may be
 * NULL (a private copy). Returns TW_OK, TW_EBLOCK, or TW_ENOMEM. Release with
 * blockcache_release(ana_cache(x), *e). */
int ana_acquire_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e);

/* LN2_b(E): the same through block b's ln_2, cached under "ln2(E):<b>". */
int ana_acquire_ln2_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e);

#endif
