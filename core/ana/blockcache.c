/* Budgeted, reference-counted, single-flight cache: see blockcache.h. */
#include "core/ana/blockcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/lru.h"

enum { ENTRY_FILLING, ENTRY_READY, ENTRY_FAILED };

struct blockcache_entry {
    tw_lru_node lru; /* first: the cache's list, head = most recently used */
    char key[BLOCKCACHE_KEY_MAX + 1];
    size_t bytes;
    void *data; /* (bytes), 64-byte aligned, owned by the entry */
    int state;  /* ENTRY_* */
    int err;    /* the fill's error when FAILED */
    int refs;   /* outstanding acquires */
    int linked; /* in the cache's list (findable) */
};

struct blockcache {
    pthread_mutex_t mu;
    pthread_cond_t filled; /* broadcast whenever a fill finishes */
    blockcache_stats st;   /* st.bytes: of every entry not yet freed */
    tw_lru list;
};

#define ENTRY(node) ((blockcache_entry *)(node)) /* lru is the first member */

blockcache *blockcache_new(size_t budget_bytes)
{
    blockcache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    if (pthread_cond_init(&c->filled, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return NULL;
    }
    c->st.budget = budget_bytes;
    return c;
}

static void entry_free(blockcache_entry *e)
{
    free(e->data);
    free(e);
}

static void unlink_entry(blockcache *c, blockcache_entry *e)
{
    if (!e->linked) return;
    tw_lru_unlink(&c->list, &e->lru);
    e->linked = 0;
}

static void push_front(blockcache *c, blockcache_entry *e)
{
    tw_lru_push_front(&c->list, &e->lru);
    e->linked = 1;
}

/* Unlinks (if needed) and frees e, which has no references. Lock held. */
static void destroy(blockcache *c, blockcache_entry *e)
{
    unlink_entry(c, e);
    c->st.bytes -= e->bytes;
    c->st.entries--;
    entry_free(e);
}

/* Evicts unreferenced ready entries, least recently used first, until
 * bytes + extra <= budget (every one when all) or none is left. Lock held. */
static void evict(blockcache *c, size_t extra, bool all)
{
    blockcache_entry *e = ENTRY(c->list.tail);
    while (e && (all || c->st.bytes + extra > c->st.budget)) {
        blockcache_entry *prev = ENTRY(e->lru.prev);
        if (e->refs == 0 && e->state == ENTRY_READY) {
            destroy(c, e);
            c->st.evictions++;
        }
        e = prev;
    }
}

void blockcache_free(blockcache *c)
{
    if (!c) return;
    for (blockcache_entry *e = ENTRY(c->list.head), *next; e; e = next) {
        next = ENTRY(e->lru.next);
        entry_free(e);
    }
    pthread_cond_destroy(&c->filled);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static blockcache_entry *entry_new(const char *key, size_t bytes)
{
    blockcache_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    size_t alloc = (bytes + 63) / 64 * 64;
    e->data = aligned_alloc(64, alloc);
    if (!e->data) {
        free(e);
        return NULL;
    }
    strcpy(e->key, key);
    e->bytes = bytes;
    e->state = ENTRY_FILLING;
    e->refs = 1;
    return e;
}

int blockcache_acquire(blockcache *c, const char *key, size_t bytes, blockcache_fill_fn fill, void *ctx,
                       blockcache_entry **out)
{
    if (!key || !fill || !out || bytes == 0 || bytes > SIZE_MAX - 64 || strlen(key) > BLOCKCACHE_KEY_MAX)
        return TW_EINVAL;
    *out = NULL;

    if (!c) { // private entry
        blockcache_entry *e = entry_new(key, bytes);
        if (!e) return TW_ENOMEM;
        int rc = fill(e->data, bytes, ctx);
        if (rc) {
            entry_free(e);
            return rc;
        }
        e->state = ENTRY_READY;
        *out = e;
        return TW_OK;
    }

    pthread_mutex_lock(&c->mu);
    for (blockcache_entry *e = ENTRY(c->list.head); e; e = ENTRY(e->lru.next)) {
        if (strcmp(e->key, key) != 0) continue;
        if (e->bytes != bytes) {
            pthread_mutex_unlock(&c->mu);
            return TW_EINVAL;
        }
        e->refs++;
        c->st.hits++;
        if (e->state == ENTRY_FILLING) {
            c->st.waits++;
            while (e->state == ENTRY_FILLING) pthread_cond_wait(&c->filled, &c->mu);
        }
        if (e->state == ENTRY_FAILED) {
            int err = e->err;
            if (--e->refs == 0) destroy(c, e);
            pthread_mutex_unlock(&c->mu);
            return err;
        }
        if (e->linked) tw_lru_touch(&c->list, &e->lru); // most recently used
        pthread_mutex_unlock(&c->mu);
        *out = e;
        return TW_OK;
    }

    // Miss: make room, then fill outside the lock.
    c->st.misses++;
    evict(c, bytes, false);
    blockcache_entry *e = entry_new(key, bytes);
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        return TW_ENOMEM;
    }
    push_front(c, e);
    c->st.bytes += bytes;
    c->st.entries++;
    pthread_mutex_unlock(&c->mu);

    int rc = fill(e->data, bytes, ctx);

    pthread_mutex_lock(&c->mu);
    if (rc) {
        e->state = ENTRY_FAILED;
        e->err = rc;
        c->st.fill_errors++;
        unlink_entry(c, e); // later requests try again
        if (--e->refs == 0) destroy(c, e);
        pthread_cond_broadcast(&c->filled);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    e->state = ENTRY_READY;
    pthread_cond_broadcast(&c->filled);
    pthread_mutex_unlock(&c->mu);
    *out = e;
    return TW_OK;
}

const void *blockcache_data(const blockcache_entry *e) { return e->data; }

void blockcache_release(blockcache *c, blockcache_entry *e)
{
    if (!e) return;
    if (!c) {
        entry_free(e);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (--e->refs == 0) {
        if (!e->linked) {
            destroy(c, e);
        } else if (e->bytes > c->st.budget) { // can never be kept
            destroy(c, e);
            c->st.evictions++;
        } else {
            evict(c, 0, false);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void blockcache_clear(blockcache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    evict(c, 0, true);
    pthread_mutex_unlock(&c->mu);
}

void blockcache_get_stats(blockcache *c, blockcache_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    *s = c->st;
    pthread_mutex_unlock(&c->mu);
}
