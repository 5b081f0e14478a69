/* A thread-safe cache of computed buffers (per-block intermediates such as
 * LN_b(E)) with a byte budget, LRU eviction, reference counting and
 * single-flight filling.
 *
 * - An entry is a buffer of a fixed size under a string key. The first
 *   request for a key (a miss) allocates the buffer and runs the caller's fill
 *   function on it, without holding the cache lock; concurrent requests for
 *   the same key wait on a condition variable and share the result, so a cold
 *   entry is computed once. A failed fill is handed to every waiter and not
 *   cached (the next request tries again), except a fill that stopped because
 *   the filler's request was canceled or passed its deadline (TW_ECANCELED,
 *   TW_ETIMEDOUT): a waiter then fills the entry itself.
 * - Acquired entries are reference counted: eviction never frees a buffer
 *   somebody holds.
 * - Budget, a hard one: the bytes held (cached, in use, filling) never
 *   exceed it. Before allocating a new entry, and whenever an entry loses its
 *   last reference, unreferenced entries are evicted least recently used first
 *   until the total size fits. When the entries in use leave no room, an
 *   acquire by a thread that holds no entry of any cache waits for room
 *   (stopping with the cancel flag's TW_ECANCELED or TW_ETIMEDOUT); one by a
 *   thread that holds an entry (or is filling one) returns TW_ENOMEM at once,
 *   so that two holders never wait for each other. An entry larger than the
 *   whole budget is refused with TW_EBUDGET. Budget 0 is the exception: it
 *   keeps nothing and bounds nothing (each entry is freed at its last release).
 * - Keys identify contents within one model: use one cache per model.
 * The number of entries is small (a few per block), so lookup is a list scan. */
#ifndef TW_BLOCKCACHE_H
#define TW_BLOCKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/status.h"

typedef struct blockcache blockcache;
typedef struct blockcache_entry blockcache_entry;

/* Longest key, in bytes, without the terminating NUL. */
#define BLOCKCACHE_KEY_MAX 63

/* Fills data (bytes, 64-byte aligned, contents undefined) for one entry.
 * Returns 0, or a negative error code that acquire returns to the filler and
 * to every waiter. Called without any cache lock held, in the thread that
 * missed; it may acquire other entries of the same cache. */
typedef int (*blockcache_fill_fn)(void *data, size_t bytes, void *ctx);

typedef struct {
    size_t bytes;         /* bytes held by all entries (cached, in use, filling) */
    size_t budget;        /* the configured budget */
    size_t entries;       /* number of entries held */
    uint64_t hits;        /* acquires served by an existing entry (incl. waits) */
    uint64_t misses;      /* acquires that ran the fill function */
    uint64_t waits;       /* hits that had to wait for a concurrent fill */
    uint64_t evictions;   /* entries freed to respect the budget */
    uint64_t fill_errors; /* fills that returned an error */
    uint64_t room_waits;  /* acquires that waited for entries in use to make room */
    uint64_t refused;     /* acquires refused for want of room (TW_ENOMEM, TW_EBUDGET) */
} blockcache_stats;

/* A new empty cache that keeps at most budget_bytes of unreferenced entries.
 * NULL on allocation failure. budget 0 caches nothing (every entry is freed
 * at its last release, but concurrent requests still share one fill). */
blockcache *blockcache_new(size_t budget_bytes);

/* Frees the cache and every entry. No entry may still be acquired. NULL ok. */
void blockcache_free(blockcache *c);

/* Returns in *out a referenced entry of `bytes` bytes under `key`, filling it
 * with fill(data, bytes, ctx) if it is not present. The caller must call
 * blockcache_release once per successful acquire. c may be NULL: then the
 * entry is private to the caller (filled every time, freed at release).
 * Returns 0, TW_ENOMEM or TW_EBUDGET (see Budget above), TW_EINVAL, or the
 * fill function's error. Waits for room without a cancel flag. */
int blockcache_acquire(blockcache *c, const char *key, size_t bytes, blockcache_fill_fn fill, void *ctx,
                       blockcache_entry **out);

/* The same, waiting for room only until `cancel` stops (NULL: no limit):
 * then its TW_ECANCELED or TW_ETIMEDOUT. */
int blockcache_acquire_within(blockcache *c, const char *key, size_t bytes, blockcache_fill_fn fill,
                              void *ctx, const tw_cancel *cancel, blockcache_entry **out);
/* Acquires the entry `key` of `bytes` bytes only if it is there and ready
 * (counted as a hit; nothing is filled, no fill is waited for): TW_OK with
 * *out referenced (release it), or 1 with *out NULL when it is absent (always
 * for a NULL c). For a caller whose choice of method depends on what is
 * cached. */
int blockcache_lookup(blockcache *c, const char *key, size_t bytes, blockcache_entry **out);

/* The entry's buffer (valid until its release). */
const void *blockcache_data(const blockcache_entry *e);

/* Drops one reference (c as given to acquire, possibly NULL). NULL e ok. */
void blockcache_release(blockcache *c, blockcache_entry *e);

/* Evicts every unreferenced entry (for cold-start measurements). */
void blockcache_clear(blockcache *c);

/* A consistent snapshot of the counters, for /metrics. */
void blockcache_get_stats(blockcache *c, blockcache_stats *s);

#endif
