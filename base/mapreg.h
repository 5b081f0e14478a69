/* The read-only file mappings the process holds (the checkpoints), so that
 * a SIGBUS from a mapped page can be traced to its file, and so that a
 * loaded model can tell whether its file has changed since it was mapped.
 *
 * The loaders of core/model register every mapping right after mmap and
 * remove it right before munmap. The lookups marked async-signal-safe take
 * no lock and may be called from a signal handler; the others may be called
 * from any thread. The table has TW_MAP_SLOTS entries; a mapping that finds
 * no free entry is simply not tracked. */
#ifndef TW_BASE_MAPREG_H
#define TW_BASE_MAPREG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define TW_MAP_SLOTS 64

/* What identifies a file's contents cheaply: device, inode, size and
 * modification time. Two equal ids mean the file was not replaced,
 * truncated or written to in between (to the resolution of mtime). */
typedef struct {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
} tw_file_id;

void tw_file_id_of(const struct stat *st, tw_file_id *id);
int tw_file_id_equal(const tw_file_id *a, const tw_file_id *b);

/* Registers [addr, addr+len) as a mapping of `path` whose file had id `id`
 * when mapped. 0, or -1 when the table is full. */
int tw_map_add(const void *addr, size_t len, const char *path, const tw_file_id *id);
/* Forgets the mapping that starts at addr (before it is unmapped). */
void tw_map_remove(const void *addr);

/* The mapping that starts at addr: 0 and its file's id and whether a page
 * of it faulted (SIGBUS); -1 when addr starts no registered mapping. */
int tw_map_info(const void *addr, tw_file_id *id, int *faulted);

/* Async-signal-safe: the slot of the mapping containing addr, or -1. */
int tw_map_find(const void *addr);
/* Async-signal-safe: the slot's path (NUL-terminated), range, and marks it
 * faulted; returns whether it had already faulted. */
const char *tw_map_path(int slot);
void tw_map_range(int slot, uintptr_t *start, size_t *len);
int tw_map_mark_faulted(int slot);

#endif
