#include "api/answer_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "base/lru.h"

typedef struct entry {
    tw_lru_node lru;     /* first: the LRU list, most recent at head */
    struct entry *chain; /* hash bucket chain */
    uint64_t hash;
    char *key;
    size_t klen;
    api_blob *blob; /* one reference, shared with the responses that send it */
    int status;
    const char *content_type;
} entry;

struct answer_cache {
    pthread_mutex_t lock;
    entry **buckets;
    size_t n_buckets;
    tw_lru list;
    answer_cache_stats st;
};

#define ENTRY(node) ((entry *)(node)) /* lru is the first member */

static uint64_t key_hash(const char *s, size_t n) { return tw_fnv1a(s, n, TW_FNV1A_INIT); }

static size_t entry_bytes(const entry *e) { return sizeof *e + e->klen + api_blob_len(e->blob); }

answer_cache *answer_cache_new(size_t budget)
{
    answer_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->n_buckets = 1024;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->st.budget = budget;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void drop(answer_cache *c, entry *e)
{
    entry **pp = &c->buckets[e->hash % c->n_buckets];
    while (*pp != e) pp = &(*pp)->chain;
    *pp = e->chain;
    tw_lru_unlink(&c->list, &e->lru);
    c->st.bytes -= entry_bytes(e);
    c->st.entries--;
    free(e->key);
    api_blob_unref(e->blob);
    free(e);
}

void answer_cache_free(answer_cache *c)
{
    if (!c) return;
    while (c->list.head) drop(c, ENTRY(c->list.head));
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static entry *find(answer_cache *c, uint64_t h, const char *key, size_t klen)
{
    for (entry *e = c->buckets[h % c->n_buckets]; e; e = e->chain)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
    return NULL;
}

int answer_cache_get(answer_cache *c, const char *key, size_t klen, api_response *res)
{
    if (!c) return -1;
    uint64_t h = key_hash(key, klen);
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, h, key, klen);
    if (e) {
        api_respond_blob(res, e->status, e->content_type, e->blob); /* a reference, not a copy */
        tw_lru_touch(&c->list, &e->lru);
        c->st.hits++;
    } else {
        c->st.misses++;
    }
    pthread_mutex_unlock(&c->lock);
    return e ? 0 : -1;
}

void answer_cache_put(answer_cache *c, const char *key, size_t klen, const api_response *res)
{
    if (!c || !res->blob) return;
    entry *e = calloc(1, sizeof *e);
    if (!e) return;
    e->key = malloc(klen);
    if (!e->key) {
        free(e);
        return;
    }
    memcpy(e->key, key, klen);
    e->klen = klen;
    e->blob = api_blob_ref(res->blob);
    e->status = res->status;
    e->content_type = res->content_type;
    e->hash = key_hash(key, klen);
    pthread_mutex_lock(&c->lock);
    if (entry_bytes(e) > c->st.budget || find(c, e->hash, key, klen)) {
        pthread_mutex_unlock(&c->lock);
        free(e->key);
        api_blob_unref(e->blob);
        free(e);
        return;
    }
    while (c->st.bytes + entry_bytes(e) > c->st.budget && c->list.tail) drop(c, ENTRY(c->list.tail));
    e->chain = c->buckets[e->hash % c->n_buckets];
    c->buckets[e->hash % c->n_buckets] = e;
    tw_lru_push_front(&c->list, &e->lru);
    c->st.bytes += entry_bytes(e);
    c->st.entries++;
    pthread_mutex_unlock(&c->lock);
}

void answer_cache_get_stats(answer_cache *c, answer_cache_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    *s = c->st;
    pthread_mutex_unlock(&c->lock);
}
