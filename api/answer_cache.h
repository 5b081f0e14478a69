/* Finished answers, kept because the model does not change while it is
 * READY (a changed checkpoint drops the whole cache with the model): a
 * byte-budgeted LRU map from a request's canonical key to its body. */
#ifndef TW_ANSWER_CACHE_H
#define TW_ANSWER_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

typedef struct answer_cache answer_cache;

answer_cache *answer_cache_new(size_t budget_bytes);
void answer_cache_free(answer_cache *c);

/* 0 and the cached answer in *res (status, content type, and a reference to
 * its bytes: never a copy) on a hit; -1 on a miss. c may be NULL (always a
 * miss). Thread-safe. */
int answer_cache_get(answer_cache *c, const char *key, size_t klen, api_response *res);
/* Keeps a reference to res's bytes under key when they fit the budget,
 * evicting the least recently used answers. Thread-safe. */
void answer_cache_put(answer_cache *c, const char *key, size_t klen, const api_response *res);

typedef struct {
    uint64_t hits, misses, entries, bytes, budget;
} answer_cache_stats;
void answer_cache_get_stats(answer_cache *c, answer_cache_stats *s);

#endif
