/* Scratch buffers kept between passes: see scratch.h. */
#include "core/nn/scratch.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    void *p;
    size_t cap; /* bytes, a multiple of 64 */
} slot;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot slots[NN_SCRATCH_SLOTS];
static size_t kept;

static size_t rounded(size_t bytes) { return bytes > SIZE_MAX - 63 ? 0 : (bytes + 63) / 64 * 64; }

void *nn_scratch_get(size_t bytes)
{
    const size_t cap = rounded(bytes ? bytes : 1);
    if (!cap) return NULL;
    void *p = NULL;
    pthread_mutex_lock(&lock);
    int best = -1;
    for (int i = 0; i < NN_SCRATCH_SLOTS; i++)
        if (slots[i].p && slots[i].cap >= cap && slots[i].cap / 4 <= cap &&
            (best < 0 || slots[i].cap < slots[best].cap))
            best = i;
    if (best >= 0) {
        p = slots[best].p;
        kept -= slots[best].cap;
        slots[best] = (slot){0};
    }
    pthread_mutex_unlock(&lock);
    return p ? p : aligned_alloc(64, cap);
}

void nn_scratch_put(void *p, size_t bytes)
{
    if (!p) return;
    const size_t cap = rounded(bytes ? bytes : 1);
    void *drop = p;
    pthread_mutex_lock(&lock);
    if (cap <= NN_SCRATCH_KEEP) {
        /* room: free the smallest kept buffers smaller than this one until it fits */
        for (;;) {
            int empty = -1, small = -1;
            for (int i = 0; i < NN_SCRATCH_SLOTS; i++) {
                if (!slots[i].p)
                    empty = empty < 0 ? i : empty;
                else if (slots[i].cap < cap && (small < 0 || slots[i].cap < slots[small].cap))
                    small = i;
            }
            if (empty >= 0 && kept + cap <= NN_SCRATCH_KEEP) {
                slots[empty] = (slot){p, cap};
                kept += cap;
                drop = NULL;
                break;
            }
            if (small < 0) break;
            free(slots[small].p);
            kept -= slots[small].cap;
            slots[small] = (slot){0};
        }
    }
    pthread_mutex_unlock(&lock);
    free(drop);
}

size_t nn_scratch_kept_bytes(void)
{
    pthread_mutex_lock(&lock);
    size_t k = kept;
    pthread_mutex_unlock(&lock);
    return k;
}
