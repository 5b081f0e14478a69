/* Budgeted, reference-counted, single-flight cache: see blockcache.h. */
#include "core/ana/blockcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ENTRY_FILLING, ENTRY_READY, ENTRY_FAILED };

struct blockcache_entry {
    char key[BLOCKCACHE_KEY_MAX + 1];
    size_t bytes;
    void *data;                           /* (bytes), 64-byte aligned, owned by the entry */
    int state;                            /* ENTRY_* */
    int err;                              /* the fill's error when FAILED */
    int refs;                             /* outstanding acquires */
    int linked;                           /* in the cache's list (findable) */
    struct blockcache_entry *prev, *next; /* list, head = most recently used */
};

struct blockcache {
    pthread_mutex_t mu;
    pthread_cond_t filled; /* broadcast whenever a fill finishes */
    pthread_cond_t room;   /* broadcast whenever an entry is freed */
    size_t budget;
    size_t bytes; /* sum of bytes of every entry not yet freed */
    size_t entries;
    blockcache_entry *head, *tail;
    uint64_t hits, misses, waits, evictions, fill_errors, room_waits, refused;
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
    c->budget = budget_bytes;
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
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
    e->linked = 0;
}

static void push_front(blockcache *c, blockcache_entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
    e->linked = 1;
}

/* Unlinks (if needed) and frees e, which has no references. Lock held. */
static void destroy(blockcache *c, blockcache_entry *e)
{
    unlink_entry(c, e);
    c->bytes -= e->bytes;
    c->entries--;
    entry_free(e);
    pthread_cond_broadcast(&c->room);
}

/* Evicts unreferenced ready entries, least recently used first, until
 * bytes + extra <= budget or none is left. Lock held. */
static void evict_for(blockcache *c, size_t extra)
{
    blockcache_entry *e = c->tail;
    while (e && c->bytes + extra > c->budget) {
        blockcache_entry *prev = e->prev;
        if (e->refs == 0 && e->state == ENTRY_READY) {
            destroy(c, e);
            c->evictions++;
        }
        e = prev;
    }
}

void blockcache_free(blockcache *c)
{
    if (!c) return;
    blockcache_entry *e = c->head;
    while (e) {
        blockcache_entry *next = e->next;
        entry_free(e);
        e = next;
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
    bool waited = false;
retry:
    for (blockcache_entry *e = c->head; e; e = e->next) {
        if (strcmp(e->key, key) != 0) continue;
        if (e->bytes != bytes) {
            pthread_mutex_unlock(&c->mu);
            return TW_EINVAL;
        }
        e->refs++;
        c->hits++;
        if (e->state == ENTRY_FILLING) {
            c->waits++;
            while (e->state == ENTRY_FILLING) pthread_cond_wait(&c->filled, &c->mu);
        }
        if (e->state == ENTRY_FAILED) {
            int err = e->err;
            if (--e->refs == 0) destroy(c, e);
            if (err == TW_ECANCELED || err == TW_ETIMEDOUT) {
                /* the filler's request ended, not ours: fill it ourselves */
                pthread_mutex_unlock(&c->mu);
                return blockcache_acquire(c, key, bytes, fill, ctx, out);
            }
            pthread_mutex_unlock(&c->mu);
            return err;
        }
        if (e->linked) { // most recently used
            unlink_entry(c, e);
            push_front(c, e);
        }
        pthread_mutex_unlock(&c->mu);
        held_here++;
        *out = e;
        return TW_OK;
    }

    // Miss: make room (the budget is hard), then fill outside the lock.
    if (c->budget > 0 && bytes > c->budget) {
        c->refused++;
        pthread_mutex_unlock(&c->mu);
        return TW_EBUDGET;
    }
    evict_for(c, bytes);
    if (c->budget > 0 && c->bytes + bytes > c->budget) {
        int rc = held_here > 0 ? TW_ENOMEM : tw_cancel_check(cancel);
        if (rc) {
            if (rc == TW_ENOMEM) c->refused++;
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
        if (!waited) c->room_waits++;
        waited = true;
        wait_room(c);
        goto retry; // another thread may have filled this key meanwhile
    }
    c->misses++;
    blockcache_entry *e = entry_new(key, bytes);
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        return TW_ENOMEM;
    }
    push_front(c, e);
    c->bytes += bytes;
    c->entries++;
    pthread_mutex_unlock(&c->mu);

    held_here++; // while filling too: the fill may acquire other entries
    int rc = fill(e->data, bytes, ctx);

    pthread_mutex_lock(&c->mu);
    if (rc) {
        e->state = ENTRY_FAILED;
        e->err = rc;
        c->fill_errors++;
        unlink_entry(c, e); // later requests try again
        if (--e->refs == 0) destroy(c, e);
        pthread_cond_broadcast(&c->filled);
        pthread_mutex_unlock(&c->mu);
        held_here--;
        return rc;
    }
    e->state = ENTRY_READY;
    pthread_cond_broadcast(&c->filled);
    pthread_mutex_unlock(&c->mu);
    *out = e;
    return TW_OK;
}

int blockcache_lookup(blockcache *c, const char *key, size_t bytes, blockcache_entry **out)
{
    if (!key || !out) return TW_EINVAL;
    *out = NULL;
    if (!c) return 1;
    pthread_mutex_lock(&c->mu);
    for (blockcache_entry *e = c->head; e; e = e->next) {
        if (strcmp(e->key, key) != 0 || e->bytes != bytes || e->state != ENTRY_READY) continue;
        e->refs++;
        c->hits++;
        unlink_entry(c, e);
        push_front(c, e);
        pthread_mutex_unlock(&c->mu);
        held_here++; /* released as an acquired entry is */
        *out = e;
        return TW_OK;
    }
    pthread_mutex_unlock(&c->mu);
    return 1;
}

const void *blockcache_data(const blockcache_entry *e) { return e->data; }

size_t blockcache_size(const blockcache_entry *e) { return e->bytes; }

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
        } else if (e->bytes > c->budget) { // budget 0: nothing is kept
            destroy(c, e);
            c->evictions++;
        } else {
            evict_for(c, 0);
        }
    }
    pthread_mutex_unlock(&c->mu);
}

void blockcache_clear(blockcache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    blockcache_entry *e = c->tail;
    while (e) {
        blockcache_entry *prev = e->prev;
        if (e->refs == 0 && e->state == ENTRY_READY) {
            destroy(c, e);
            c->evictions++;
        }
        e = prev;
    }
    pthread_mutex_unlock(&c->mu);
}

void blockcache_get_stats(blockcache *c, blockcache_stats *s)
{
    memset(s, 0, sizeof *s);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    s->bytes = c->bytes;
    s->budget = c->budget;
    s->entries = c->entries;
    s->hits = c->hits;
    s->misses = c->misses;
    s->waits = c->waits;
    s->evictions = c->evictions;
    s->fill_errors = c->fill_errors;
    s->room_waits = c->room_waits;
    s->refused = c->refused;
    pthread_mutex_unlock(&c->mu);
}
