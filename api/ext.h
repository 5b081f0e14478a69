/* State the api layer keeps beside the model once it is READY. */
#ifndef TW_API_EXT_H
#define TW_API_EXT_H

#include <stdatomic.h>
#include <stddef.h>

#include "api/answer_cache.h"
#include "core/ana/blockcache.h"
#include "core/proj/layout.h"

struct api_ext {
    answer_cache *answers; /* finished answers */
    blockcache *cache;     /* per-block intermediates (LN_b(E), SVD factors) */
    char **default_words;  /* the words file (the paper's 100 nouns) */
    size_t n_default_words;
    layout_service *layout;            /* PCA and the (background) UMAP layout */
    struct api_stats_jobs *stats_jobs; /* /trajectory/stats in flight and its jobs (api/stats.h) */
    /* whole-model sweeps in flight (api/sweep.c): how many, and their blocks */
    _Atomic long long sweeps_running, sweep_blocks_total, sweep_blocks_done;
};

#endif
