/* The registry of file mappings: see mapreg.h. */
#include "base/mapreg.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

enum { SLOT_FREE = 0, SLOT_FILLING = 1, SLOT_LIVE = 2 };

typedef struct {
    _Atomic int state;
    _Atomic int faulted;
    uintptr_t start;
    size_t len;
    tw_file_id id;
    char path[1024];
} map_slot;

static map_slot slots[TW_MAP_SLOTS];

void tw_file_id_of(const struct stat *st, tw_file_id *id)
{
    id->dev = (uint64_t)st->st_dev;
    id->ino = (uint64_t)st->st_ino;
    id->size = (uint64_t)st->st_size;
    id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

int tw_file_id_equal(const tw_file_id *a, const tw_file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

int tw_map_add(const void *addr, size_t len, const char *path, const tw_file_id *id)
{
    for (int i = 0; i < TW_MAP_SLOTS; i++) {
        int want = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &want, SLOT_FILLING)) continue;
        map_slot *s = &slots[i];
        s->start = (uintptr_t)addr;
        s->len = len;
        s->id = *id;
        snprintf(s->path, sizeof s->path, "%s", path);
        atomic_store(&s->faulted, 0);
        atomic_store(&s->state, SLOT_LIVE); /* publishes the fields above */
        return 0;
    }
    return -1;
}

void tw_map_remove(const void *addr)
{
    for (int i = 0; i < TW_MAP_SLOTS; i++)
        if (atomic_load(&slots[i].state) == SLOT_LIVE && slots[i].start == (uintptr_t)addr) {
            atomic_store(&slots[i].state, SLOT_FREE);
            return;
        }
}

int tw_map_info(const void *addr, tw_file_id *id, int *faulted)
{
    for (int i = 0; i < TW_MAP_SLOTS; i++)
        if (atomic_load(&slots[i].state) == SLOT_LIVE && slots[i].start == (uintptr_t)addr) {
            if (id) *id = slots[i].id;
            if (faulted) *faulted = atomic_load(&slots[i].faulted);
            return 0;
        }
    return -1;
}

int tw_map_find(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    for (int i = 0; i < TW_MAP_SLOTS; i++)
        if (atomic_load(&slots[i].state) == SLOT_LIVE && a >= slots[i].start &&
            a - slots[i].start < slots[i].len)
            return i;
    return -1;
}

const char *tw_map_path(int slot) { return slots[slot].path; }

void tw_map_range(int slot, uintptr_t *start, size_t *len)
{
    *start = slots[slot].start;
    *len = slots[slot].len;
}

int tw_map_mark_faulted(int slot) { return atomic_exchange(&slots[slot].faulted, 1); }
