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
#include "core/nn/topk.h"

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

/* Fills *h for head `head` of block `block`; no range check (callers check).
 * The views are m->p.h[block]'s: for a block left in F16/BF16
 * (gpt2_block_is_lazy) its matrices are NULL, so code that may see such
 * checkpoints acquires the block (ana_block_acquire) and uses
 * ana_head_slices_of on what it got. */
void ana_head_slices(const gpt2_model *m, int block, int head, ana_head *h);
void ana_head_slices_of(const gpt2_model *m, const gpt2_block *b, int head, ana_head *h);

/* Block b with float32 matrices (core/model/gpt2.h gpt2_block_acquire):
 * TW_OK and *out, valid until gpt2_block_release(ref), or TW_ENOMEM. */
int ana_block_acquire(const gpt2_model *m, int b, gpt2_block_ref *ref, const gpt2_block **out);

/* Acquires LN_b(E) (V, d) floats for block b (ln_1 of that block, the
 * model's ln_eps), filling it on a miss; 4 V d bytes (154 MB for 124M) and
 * a trailer holding max_j |LN_b(E)_j| (ana_ln1_max_norm). The matrix is at
 * blockcache_data(*e) until blockcache_release(c, *e). c may be NULL (a
 * private copy). Returns TW_OK, TW_EBLOCK, or TW_ENOMEM. Release with
 * blockcache_release(ana_cache(x), *e). */
int ana_acquire_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e);

/* max_j |LN_b(E)_j| of an entry from ana_acquire_ln1_embeddings (what
 * topk_opts.max_row_norm takes), computed once when the entry was filled
 * (the square root of each formed row's double sum of squares, as
 * ana_ln_rows_form measures rows formed on demand). */
float ana_ln1_max_norm(const gpt2_model *m, const blockcache_entry *e);

/* What every analysis of the vocabulary needs first, computed into x's
 * cache ahead of the first request (the daemon calls it at load): the
 * statistics of E ("lnstats(E)", one read of wte, on every core, which
 * also maps its pages) and max_j |E_j|. TW_OK, TW_EINVAL or TW_ENOMEM;
 * without a cache it computes and drops them. */
int ana_prepare(const gpt2_model *m, const ana_ctx *x);

/* max_j |E_j| over the rows of wte into *out, computed once per cache
 * (entry "maxnorm(E)"), for callers that hold no LN_b(E) entry. TW_OK,
 * TW_EINVAL or TW_ENOMEM. */
int ana_wte_max_norm(const gpt2_model *m, const ana_ctx *x, float *out);

/* The trailer of doubles that follows a cached (n, d) float matrix (8-byte
 * aligned after the n d floats): the layout of the row-matrix entries of
 * core/ana (LN_b(E), the factored keys). */
const double *ana_rows_trailer(const blockcache_entry *e, size_t n, size_t d);
/* LN_0(E): the rows of wte normalised with neither gamma nor beta (what
 * every LN_b(E) is an affine map of, core/ana/lnscreen.h), (V, d) floats
 * with the same trailer, cached once per model under "ln0(E)". */
int ana_acquire_ln0_embeddings(const gpt2_model *m, const ana_ctx *x, blockcache_entry **e);

/* LN_b(E) of ana_acquire_ln1_embeddings only if it is cached and ready
 * (blockcache_lookup): TW_OK with *e referenced, or 1 with *e NULL. */
int ana_lookup_ln1_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e);

/* LN_b(E) (ln_1 of block b) without forming it whole, for the analyses
 * that screen against it (docs/MATH.md §2.5): r->f is a topk_former of
 * LN_b(E) (V, d). When the block's LN_b(E) is cached (ana_lookup_ln1_
 * embeddings) f has its rows and its max_row_norm; otherwise rows are
 * formed on demand from the per-model statistics of E (entry "lnstats(E)":
 * mean (V) then 1 / sqrt(var + eps) (V) of the rows of wte, doubles,
 * computed once per model by layernorm_stats_rows), with layernorm_apply, so
 * every formed row is the same floats as the row of the cached matrix.
 * The struct is referred to by r->f.ctx: do not copy or move it while
 * open. TW_OK, TW_EINVAL, TW_EBLOCK, TW_ENOMEM or the cancel's code; close
 * with ana_ln_rows_close (also after a failed open). */
typedef struct {
    topk_former f;
    /* private */
    const gpt2_model *m;
    const float *gamma, *beta;
    const double *stats; /* "lnstats(E)": mean (V), rstd (V); NULL when f.rows is set */
    blockcache *cache;
    blockcache_entry *e; /* the entry held: LN_b(E) or the statistics */
} ana_ln_rows;

int ana_ln1_rows_open(const gpt2_model *m, const ana_ctx *x, int block, ana_ln_rows *r);
void ana_ln_rows_close(ana_ln_rows *r);

/* Rows j0 .. j0 + n - 1 of r's LN_b(E) into out (n, d) (copied when
 * cached, formed otherwise); returns their largest norm as
 * topk_max_row_norm computes it (NaN when a row holds NaN). r->f.form. */
double ana_ln_rows_form(const ana_ln_rows *r, size_t j0, size_t n, float *out);

/* LN2_b(E): the same through block b's ln_2, cached under "ln2(E):<b>". */
int ana_acquire_ln2_embeddings(const gpt2_model *m, const ana_ctx *x, int block, blockcache_entry **e);

#endif
