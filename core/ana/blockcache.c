/* Budgeted, reference-counted, single-flight cache: see blockcache.h. */
#include "core/ana/blockcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#define ENTRY(node) ((blockcache_entry *)(node)) /* lru is the first member */

struct blockcache {
    pthread_mutex_t mu;
    pthread_cond_t filled; /* broadcast whenever a fill finishes */
    pthread_cond_t room;   /* broadcast whenever an entry is freed */
    tw_lru list;
    blockcache_stats st; /* st.bytes: sum of bytes of every entry not yet freed */
};

/* Entries of any cache this thread holds (acquired and not yet released, or
 * being filled): a thread holding one never waits for room, so two holders
 * never wait for each other. */
static _Thread_local long held_here;

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
    if (pthread_cond_init(&c->room, NULL) != 0) {
        pthread_cond_destroy(&c->filled);
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
    pthread_cond_broadcast(&c->room);
}

/* Evicts unreferenced ready entries, least recently used first: every one
 * (all), else until bytes + extra <= budget or none is left. Lock held. */
static void evict(blockcache *c, size_t extra, bool all)
{
    tw_lru_node *n = c->list.tail;
    while (n && (all || c->st.bytes + extra > c->st.budget)) {
        tw_lru_node *prev = n->prev;
        blockcache_entry *e = ENTRY(n);
        if (e->refs == 0 && e->state == ENTRY_READY) {
            destroy(c, e);
            c->st.evictions++;
        }
        n = prev;
    }
}

void blockcache_free(blockcache *c)
{
    if (!c) return;
    while (c->list.head) {
        blockcache_entry *e = ENTRY(c->list.head);
        tw_lru_unlink(&c->list, &e->lru);
        entry_free(e);
    }
    pthread_cond_destroy(&c->room);
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

/* The linked entry under key, or NULL. Lock held. */
static blockcache_entry *find(blockcache *c, const char *key)
{
    for (tw_lru_node *n = c->list.head; n; n = n->next)
        if (strcmp(ENTRY(n)->key, key) == 0) return ENTRY(n);
    return NULL;
}

/* Waits (lock held) a little for an entry to be freed. */
static void wait_room(blockcache *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&c->room, &c->mu, &ts);
}

/* What an acquire asks for. */
typedef struct {
    const char *key;
    size_t bytes;
    blockcache_fill_fn fill;
    void *ctx;
} request;

/* An entry of no cache (c NULL): filled now, freed at its release. */
static int acquire_private(const request *q, blockcache_entry **out)
{
    blockcache_entry *e = entry_new(q->key, q->bytes);
    if (!e) return TW_ENOMEM;
    int rc = q->fill(e->data, q->bytes, q->ctx);
    if (rc) {
        entry_free(e);
        return rc;
    }
    e->state = ENTRY_READY;
    *out = e;
    return TW_OK;
}

/* A hit on e: waits for its fill if one is under way. Lock held on entry,
 * released on return. */
static int take_hit(blockcache *c, blockcache_entry *e, const request *q, blockcache_entry **out)
{
    if (e->bytes != q->bytes) {
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
        /* a filler whose request ended (not ours): fill it ourselves */
        if (err == TW_ECANCELED || err == TW_ETIMEDOUT)
            return blockcache_acquire(c, q->key, q->bytes, q->fill, q->ctx, out);
        return err;
    }
    if (e->linked) tw_lru_touch(&c->list, &e->lru); // most recently used
    pthread_mutex_unlock(&c->mu);
    held_here++;
    *out = e;
    return TW_OK;
}

#define ROOM_WAITED 1

/* Makes room for bytes more (the budget is hard). TW_OK when there is room,
 * ROOM_WAITED after waiting a little for entries in use (look again: another
 * thread may have filled the key meanwhile), or an error. Lock held. */
static int make_room(blockcache *c, size_t bytes, const tw_cancel *cancel, bool *waited)
{
    const size_t budget = c->st.budget;
    if (budget > 0 && bytes > budget) {
        c->st.refused++;
        return TW_EBUDGET;
    }
    evict(c, bytes, false);
    if (budget == 0 || c->st.bytes + bytes <= budget) return TW_OK;
    int rc = held_here > 0 ? TW_ENOMEM : tw_cancel_check(cancel);
    if (rc == TW_ENOMEM) c->st.refused++;
    if (rc) return rc;
    if (!*waited) c->st.room_waits++;
    *waited = true;
    wait_room(c);
    return ROOM_WAITED;
}

/* A miss: a new entry, filled outside the lock. Lock held on entry,
 * released on return. */
static int fill_new(blockcache *c, const request *q, blockcache_entry **out)
{
    c->st.misses++;
    blockcache_entry *e = entry_new(q->key, q->bytes);
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        return TW_ENOMEM;
    }
    push_front(c, e);
    c->st.bytes += q->bytes;
    c->st.entries++;
    pthread_mutex_unlock(&c->mu);

    held_here++; // while filling too: the fill may acquire other entries
    int rc = q->fill(e->data, q->bytes, q->ctx);

    pthread_mutex_lock(&c->mu);
    if (rc) {
        e->state = ENTRY_FAILED;
        e->err = rc;
        c->st.fill_errors++;
        unlink_entry(c, e); // later requests try again
        if (--e->refs == 0) destroy(c, e);
    } else {
        e->state = ENTRY_READY;
        *out = e;
    }
    pthread_cond_broadcast(&c->filled);
    pthread_mutex_unlock(&c->mu);
    if (rc) held_here--;
    return rc;
}

int blockcache_acquire(blockcache *c, const char *key, size_t bytes, blockcache_fill_fn fill, void *ctx,
                       blockcache_entry **out)
{
    return blockcache_acquire_within(c, key, bytes, fill, ctx, NULL, out);
}

int blockcache_acquire_within(blockcache *c, const char *key, size_t bytes, blockcache_fill_fn fill,
                              void *ctx, const tw_cancel *cancel, blockcache_entry **out)
{
    if (!key || !fill || !out || bytes == 0 || bytes > SIZE_MAX - 64 || strlen(key) > BLOCKCACHE_KEY_MAX)
        return TW_EINVAL;
    *out = NULL;
    const request q = {.key = key, .bytes = bytes, .fill = fill, .ctx = ctx};
    if (!c) return acquire_private(&q, out);

    pthread_mutex_lock(&c->mu);
    bool waited = false;
    for (;;) {
        blockcache_entry *e = find(c, key);
        if (e) return take_hit(c, e, &q, out);
        int rc = make_room(c, bytes, cancel, &waited);
        if (rc == TW_OK) return fill_new(c, &q, out);
        if (rc != ROOM_WAITED) {
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
    }
}

int blockcache_lookup(blockcache *c, const char *key, size_t bytes, blockcache_entry **out)
{
    if (!key || !out) return TW_EINVAL;
    *out = NULL;
    if (!c) return 1;
    pthread_mutex_lock(&c->mu);
    for (tw_lru_node *n = c->list.head; n; n = n->next) {
        blockcache_entry *e = ENTRY(n);
        if (strcmp(e->key, key) != 0 || e->bytes != bytes || e->state != ENTRY_READY) continue;
        e->refs++;
        c->st.hits++;
        tw_lru_touch(&c->list, &e->lru);
        pthread_mutex_unlock(&c->mu);
        held_here++; /* released as an acquired entry is */
        *out = e;
        return TW_OK;
    }
    pthread_mutex_unlock(&c->mu);
    return 1;
}

const void *blockcache_data(const blockcache_entry *e) { return e->data; }

void blockcache_release(blockcache *c, blockcache_entry *e)
{
    if (!e) return;
    if (!c) {
        entry_free(e);
        return;
    }
    if (held_here > 0) held_here--;
    pthread_mutex_lock(&c->mu);
    if (--e->refs == 0) {
        if (!e->linked) {
            destroy(c, e);
        } else if (e->bytes > c->st.budget) { // budget 0: nothing is kept
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
    blockcache_stats st = {0};
    if (c) {
        pthread_mutex_lock(&c->mu);
        st = c->st;
        pthread_mutex_unlock(&c->mu);
    }
    *s = st;
}
