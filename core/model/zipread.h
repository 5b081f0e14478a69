/* zipread: a validating reader of ZIP archives held in memory (typically a
 * read-only mmap of a whole file), for the archives torch.save writes.
 *
 * Format (PKWARE APPNOTE 6.3): [local header + name + extra + data
 * (+ data descriptor)]* [central directory] [ZIP64 end-of-central-directory
 * record + locator] [end-of-central-directory record + comment].
 *
 * zip_open_mem validates the whole structure before anything is used:
 *   - the end-of-central-directory record is searched only in the last
 *     22 + 65535 bytes and its comment must end exactly at the end of the
 *     buffer; a ZIP64 locator right before it leads to the ZIP64 record,
 *     whose counts and offsets must agree with the 32-bit ones that are not
 *     saturated (0xFFFF / 0xFFFFFFFF); single-disk archives only;
 *   - the central directory lies inside the buffer before those records and
 *     holds exactly the announced number of entries (at most ZIP_MAX_ENTRIES)
 *     and bytes; ZIP64 extra fields supply the saturated sizes and offsets;
 *   - every name is 1..ZIP_MAX_NAME bytes without NUL, and names are unique;
 *     encrypted entries are refused;
 *   - every local header lies before the central directory, has the same
 *     name, method, encryption and descriptor flags, and the same CRC-32 and
 *     sizes (or zeros when the sizes are in a data descriptor, bit 3);
 *     a data descriptor, when flagged, must agree with the central directory;
 *   - the data of stored entries (method 0) has equal compressed and
 *     uncompressed sizes; no two entries' bytes overlap.
 * Every offset and size is checked against the buffer length with
 * overflow-safe arithmetic. The data itself is not read (zip_entry_crc_ok
 * reads it on request).
 *
 * Only stored entries can be read (zip_entry_data); any other method is a
 * clear error naming the entry. Deflated entries may be present as long as
 * they are not read.
 *
 * Errors: one line without a path prefix (the caller adds "<path>: "), e.g.
 * "entry 'archive/data/0': local header name differs from the central
 * directory"; entry names in messages are made printable and shortened.
 *
 * Ownership and lifetime: the archive does not own the buffer; the buffer
 * must stay mapped and unchanged while the archive and any pointer from
 * zip_entry_data are used. Entry names are owned by the archive and live
 * until zip_close. A zip_archive is immutable after zip_open_mem: concurrent
 * readers are safe; zip_close must not race with them.
 *
 * Limits: ZIP_MAX_ENTRIES entries, ZIP_MAX_NAME bytes per name; memory is
 * O(entries) (bounded by the central directory size, which is bounded by the
 * buffer length).
 */
#ifndef TW_ZIPREAD_H
#define TW_ZIPREAD_H

#include <stddef.h>
#include <stdint.h>

#define ZIP_MAX_ENTRIES 1000000
#define ZIP_MAX_NAME    1024

typedef struct {
    const char *name; /* NUL-terminated, owned by the archive */
    size_t name_len;
    uint16_t flags;         /* general purpose bit flags */
    uint16_t method;        /* 0 stored, 8 deflate, ... */
    uint32_t crc32;         /* from the central directory */
    uint64_t comp_size;     /* bytes of data in the archive */
    uint64_t size;          /* uncompressed size */
    uint64_t header_offset; /* local header */
    uint64_t data_offset;   /* first byte of data */
    uint64_t end_offset;    /* past the data and any data descriptor */
} zip_entry;

typedef struct {
    const uint8_t *buf; /* not owned */
    size_t len;
    zip_entry *entries; /* (n_entries) in central-directory order */
    size_t n_entries;
    const zip_entry **by_name; /* (n_entries) sorted by name */
    char *names;               /* every name, NUL-terminated, one block */
    uint64_t cd_offset, cd_size;
    int zip64; /* ZIP64 end-of-central-directory records present */
} zip_archive;

/* Validates buf[0..len) as described above. Returns 0 and fills *z, or -1
 * with one line in err and *z left empty (zip_close is safe either way). */
int zip_open_mem(zip_archive *z, const void *buf, size_t len, char *err, size_t errlen);

/* Frees what zip_open_mem allocated; idempotent. Does not touch the buffer. */
void zip_close(zip_archive *z);

/* Entry named exactly `name` (bytes, NUL-terminated), or NULL. O(log n). */
const zip_entry *zip_find(const zip_archive *z, const char *name);

/* The data of a stored entry (comp_size == size bytes inside the buffer),
 * or NULL with "entry '<name>': compressed with method N; only stored
 * entries can be read" in err. A zero-length entry gives a valid pointer. */
const uint8_t *zip_entry_data(const zip_archive *z, const zip_entry *e, char *err, size_t errlen);

/* Computes the CRC-32 of a stored entry's data (zlib's crc32) and compares
 * it with the central directory's. Returns 1 if they match, 0 if not, -1 if
 * the entry is not stored. *computed (if non-NULL) receives the CRC found. */
int zip_entry_crc_ok(const zip_archive *z, const zip_entry *e, uint32_t *computed);

/* Writes a printable, bounded copy of an entry name (or any string) for
 * messages: bytes outside 0x20..0x7e become '?', long names end in "...".
 * out must hold ZIP_NAME_BUF bytes. */
#define ZIP_NAME_BUF 128
void zip_printable(char *out, const char *s, size_t len);

#endif
