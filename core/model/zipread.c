#include "core/model/zipread.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef TW_HAVE_ISAL
#include <isa-l/crc.h>
#endif

#include "base/err.h"
#include "base/scratch.h"
#include "base/sort.h"

#define SIG_LOCAL      0x04034b50u
#define SIG_CENTRAL    0x02014b50u
#define SIG_EOCD       0x06054b50u
#define SIG_EOCD64     0x06064b50u
#define SIG_LOC64      0x07064b50u
#define SIG_DESCRIPTOR 0x08074b50u

#define EOCD_LEN    22u
#define LOC64_LEN   20u
#define EOCD64_LEN  56u /* fixed part, signature included */
#define CENTRAL_LEN 46u
#define LOCAL_LEN   30u
#define MAX_COMMENT 65535u

#define FLAG_ENCRYPTED  0x0001u
#define FLAG_DESCRIPTOR 0x0008u
#define FLAG_STRONG_ENC 0x0040u
#define FLAG_MASKED_CD  0x2000u

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* True if [off, off + n) lies inside [0, limit). */
static int in_range(uint64_t off, uint64_t n, uint64_t limit) { return off <= limit && n <= limit - off; }

void zip_printable(char *out, const char *s, size_t len) { tw_printable(out, ZIP_NAME_BUF, s, len); }

/* "entry '<name>': <message>" */
static void entry_err(char *err, size_t errlen, const char *name, size_t name_len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void entry_err(char *err, size_t errlen, const char *name, size_t name_len, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char nm[ZIP_NAME_BUF];
    zip_printable(nm, name, name_len);
    tw_set_err(err, errlen, "entry '%s': %s", nm, msg);
}

void zip_close(zip_archive *z) { TW_FREE_FIELDS(z, z->entries, z->by_name, z->names); }

/* ZIP64 extended information inside an extra-field block. The fields
 * present are those whose 32-bit value is saturated, in this order:
 * uncompressed size, compressed size, local header offset, disk number.
 * want_* say which are needed; the values replace *usize etc. Returns 0, or
 * -1 with a message. `strict` requires the whole block to be a well-formed
 * chain of (id, size) records. */
static int read_zip64_extra(const uint8_t *ex, size_t exlen, int strict, int want_usize, uint64_t *usize,
                            int want_csize, uint64_t *csize, int want_offset, uint64_t *offset, int want_disk,
                            uint32_t *disk, const char *name, size_t name_len, const char *where, char *err,
                            size_t errlen)
{
    int found = 0;
    size_t p = 0;
    while (p < exlen) {
        if (exlen - p < 4) {
            if (!strict) break;
            entry_err(err, errlen, name, name_len, "%s extra field ends inside a record header", where);
            return -1;
        }
        uint16_t id = rd16(ex + p), sz = rd16(ex + p + 2);
        p += 4;
        if (sz > exlen - p) {
            if (!strict) break;
            entry_err(err, errlen, name, name_len,
                      "%s extra field record 0x%04x of %u bytes runs past the field", where, id, sz);
            return -1;
        }
        if (id == 0x0001 && !found) {
            found = 1;
            const uint8_t *q = ex + p;
            size_t need = (size_t)(want_usize + want_csize + want_offset) * 8 + (size_t)want_disk * 4;
            if (sz < need) {
                entry_err(err, errlen, name, name_len, "%s ZIP64 extra field has %u bytes, %zu needed", where,
                          sz, need);
                return -1;
            }
            if (want_usize) {
                *usize = rd64(q);
                q += 8;
            }
            if (want_csize) {
                *csize = rd64(q);
                q += 8;
            }
            if (want_offset) {
                *offset = rd64(q);
                q += 8;
            }
            if (want_disk) *disk = rd32(q);
        }
        p += sz;
    }
    if (!found && (want_usize || want_csize || want_offset || want_disk)) {
        entry_err(err, errlen, name, name_len, "%s has a saturated size or offset but no ZIP64 extra field",
                  where);
        return -1;
    }
    return 0;
}

/* The fields of an end-of-central-directory record (32-bit or ZIP64). */
typedef struct {
    uint64_t disk, cd_disk, n_disk, n_total, cd_size, cd_off;
} eocd_fields;

/* Finds the end-of-central-directory record: its offset into *pos. */
static int find_eocd(const uint8_t *b, size_t len, size_t *pos, char *err, size_t errlen)
{
    if (len < EOCD_LEN) {
        tw_set_err(err, errlen,
                   len == 0 ? "file is empty, not a zip archive"
                            : "file is %zu bytes, too short for a zip archive",
                   len);
        return -1;
    }
    size_t lo = len - EOCD_LEN > MAX_COMMENT ? len - EOCD_LEN - MAX_COMMENT : 0;
    for (size_t p = len - EOCD_LEN;; p--) {
        if (rd32(b + p) == SIG_EOCD && p + EOCD_LEN + rd16(b + p + 20) == len) {
            *pos = p;
            return 0;
        }
        if (p == lo) break;
    }
    /* torch.save before 1.6 (or with _use_new_zipfile_serialization=False)
     * wrote a bare pickle that starts with the protocol-2 magic number */
    if (len >= 2 && b[0] == 0x80 && b[1] == 0x02)
        tw_set_err(err, errlen,
                   "not a zip archive: looks like a bare pickle "
                   "(the legacy torch.save format, which is not supported)");
    else
        tw_set_err(err, errlen,
                   "not a zip archive: no end-of-central-directory record "
                   "(truncated?)");
    return -1;
}

/* A 32-bit field agrees with its ZIP64 one when equal or saturated. */
static int agrees(uint64_t v32, uint64_t saturated, uint64_t v64) { return v32 == saturated || v32 == v64; }

static int eocd_agree(const eocd_fields *e, const eocd_fields *e64)
{
    return agrees(e->disk, 0xffff, e64->disk) && agrees(e->cd_disk, 0xffff, e64->cd_disk) &&
           agrees(e->n_disk, 0xffff, e64->n_disk) && agrees(e->n_total, 0xffff, e64->n_total) &&
           agrees(e->cd_size, 0xffffffffu, e64->cd_size) && agrees(e->cd_off, 0xffffffffu, e64->cd_off);
}

/* The ZIP64 end-of-central-directory record that the locator before the
 * record at pos points to: checked against *e and then in its place; its
 * offset into *cd_limit. */
static int read_eocd64(zip_archive *z, size_t pos, eocd_fields *e, uint64_t *cd_limit, char *err,
                       size_t errlen)
{
    const uint8_t *l = z->buf + pos - LOC64_LEN;
    uint32_t l_disk = rd32(l + 4), l_total = rd32(l + 16);
    uint64_t off64 = rd64(l + 8);
    uint64_t limit = pos - LOC64_LEN;
    if (l_disk != 0 || l_total != 1) {
        tw_set_err(err, errlen, "multi-disk zip archives are not supported");
        return -1;
    }
    if (!in_range(off64, EOCD64_LEN, limit)) {
        tw_set_err(err, errlen,
                   "ZIP64 end-of-central-directory record offset %llu is "
                   "out of range",
                   (unsigned long long)off64);
        return -1;
    }
    const uint8_t *r = z->buf + off64;
    if (rd32(r) != SIG_EOCD64) {
        tw_set_err(err, errlen, "no ZIP64 end-of-central-directory record at offset %llu",
                   (unsigned long long)off64);
        return -1;
    }
    uint64_t rsize = rd64(r + 4);
    if (rsize < EOCD64_LEN - 12 || !in_range(off64 + 12, rsize, limit)) {
        tw_set_err(err, errlen,
                   "ZIP64 end-of-central-directory record size %llu is "
                   "out of range",
                   (unsigned long long)rsize);
        return -1;
    }
    eocd_fields e64 = {rd32(r + 16), rd32(r + 20), rd64(r + 24), rd64(r + 32), rd64(r + 40), rd64(r + 48)};
    if (!eocd_agree(e, &e64)) {
        tw_set_err(err, errlen,
                   "the ZIP64 and the 32-bit end-of-central-directory "
                   "records disagree");
        return -1;
    }
    *e = e64;
    *cd_limit = off64;
    z->zip64 = 1;
    return 0;
}

/* The central directory the end records describe: one disk, within the
 * entry limit, before cd_limit, and large enough for its entries. */
static int check_eocd(const eocd_fields *e, uint64_t cd_limit, char *err, size_t errlen)
{
    if (e->disk != 0 || e->cd_disk != 0 || e->n_disk != e->n_total) {
        tw_set_err(err, errlen, "multi-disk zip archives are not supported");
        return -1;
    }
    if (e->n_total > ZIP_MAX_ENTRIES) {
        tw_set_err(err, errlen, "%llu entries, more than the limit of %d", (unsigned long long)e->n_total,
                   ZIP_MAX_ENTRIES);
        return -1;
    }
    if (!in_range(e->cd_off, e->cd_size, cd_limit)) {
        tw_set_err(err, errlen,
                   "central directory [%llu, +%llu) does not lie before the "
                   "end records at %llu (truncated?)",
                   (unsigned long long)e->cd_off, (unsigned long long)e->cd_size,
                   (unsigned long long)cd_limit);
        return -1;
    }
    if (e->n_total > e->cd_size / CENTRAL_LEN) {
        tw_set_err(err, errlen, "central directory of %llu bytes cannot hold %llu entries",
                   (unsigned long long)e->cd_size, (unsigned long long)e->n_total);
        return -1;
    }
    return 0;
}

/* Finds and reads the end-of-central-directory records: fills the central
 * directory offset, size, entry count, and *cd_limit (where the central
 * directory must end at the latest). */
static int read_eocd(zip_archive *z, uint64_t *n_entries, uint64_t *cd_limit, char *err, size_t errlen)
{
    const uint8_t *b = z->buf;
    size_t pos;
    if (find_eocd(b, z->len, &pos, err, errlen) != 0) return -1;
    const uint8_t *p = b + pos;
    eocd_fields e = {rd16(p + 4), rd16(p + 6), rd16(p + 8), rd16(p + 10), rd32(p + 12), rd32(p + 16)};
    *cd_limit = pos;
    if (pos >= LOC64_LEN && rd32(b + pos - LOC64_LEN) == SIG_LOC64 &&
        read_eocd64(z, pos, &e, cd_limit, err, errlen) != 0)
        return -1;
    if (check_eocd(&e, *cd_limit, err, errlen) != 0) return -1;
    z->cd_offset = e.cd_off;
    z->cd_size = e.cd_size;
    *n_entries = e.n_total;
    return 0;
}

/* Parses central directory entries into z->entries and z->names. */
static int read_central(zip_archive *z, size_t n, char *err, size_t errlen)
{
    const uint8_t *cd = z->buf + z->cd_offset;
    const uint64_t cd_size = z->cd_size;
    z->entries = calloc(n ? n : 1, sizeof *z->entries);
    /* names are at most cd_size bytes in all, plus one NUL each */
    z->names = malloc((size_t)cd_size + n + 1);
    if (!z->entries || !z->names) {
        tw_set_err(err, errlen, "out of memory for %zu zip entries", n);
        return -1;
    }
    size_t names_used = 0;
    uint64_t p = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_range(p, CENTRAL_LEN, cd_size)) {
            tw_set_err(err, errlen, "central directory entry %zu runs past the directory", i);
            return -1;
        }
        const uint8_t *c = cd + p;
        if (rd32(c) != SIG_CENTRAL) {
            tw_set_err(err, errlen, "central directory entry %zu has a bad signature", i);
            return -1;
        }
        uint16_t flags = rd16(c + 8), method = rd16(c + 10);
        uint32_t crc = rd32(c + 16);
        uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
        uint16_t nlen = rd16(c + 28), elen = rd16(c + 30), clen = rd16(c + 32);
        uint32_t disk = rd16(c + 34);
        uint64_t lho = rd32(c + 42);
        uint64_t total = (uint64_t)CENTRAL_LEN + nlen + elen + clen;
        if (!in_range(p, total, cd_size)) {
            tw_set_err(err, errlen, "central directory entry %zu runs past the directory", i);
            return -1;
        }
        const char *name = (const char *)c + CENTRAL_LEN;
        if (nlen == 0) {
            tw_set_err(err, errlen, "central directory entry %zu has an empty name", i);
            return -1;
        }
        if (nlen > ZIP_MAX_NAME) {
            entry_err(err, errlen, name, nlen, "name is %u bytes, more than the limit of %d", nlen,
                      ZIP_MAX_NAME);
            return -1;
        }
        if (memchr(name, 0, nlen)) {
            entry_err(err, errlen, name, nlen, "name contains a NUL byte");
            return -1;
        }
        if (flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENC | FLAG_MASKED_CD)) {
            entry_err(err, errlen, name, nlen, "encrypted entries are not supported");
            return -1;
        }
        if (read_zip64_extra(c + CENTRAL_LEN + nlen, elen, 1, usize == 0xffffffffu, &usize,
                             csize == 0xffffffffu, &csize, lho == 0xffffffffu, &lho, disk == 0xffff, &disk,
                             name, nlen, "central directory", err, errlen) != 0)
            return -1;
        if (disk != 0) {
            entry_err(err, errlen, name, nlen, "starts on disk %u (multi-disk archive)", disk);
            return -1;
        }
        if (method == 0 && csize != usize) {
            entry_err(err, errlen, name, nlen, "stored entry has compressed size %llu but size %llu",
                      (unsigned long long)csize, (unsigned long long)usize);
            return -1;
        }
        memcpy(z->names + names_used, name, nlen);
        z->names[names_used + nlen] = '\0';
        zip_entry *e = &z->entries[i];
        e->name = z->names + names_used;
        e->name_len = nlen;
        e->flags = flags;
        e->method = method;
        e->crc32 = crc;
        e->comp_size = csize;
        e->size = usize;
        e->header_offset = lho;
        names_used += (size_t)nlen + 1;
        p += total;
    }
    if (p != cd_size) {
        tw_set_err(err, errlen, "central directory has %llu bytes after its %zu entries",
                   (unsigned long long)(cd_size - p), n);
        return -1;
    }
    z->n_entries = n;
    return 0;
}

/* The data descriptor after e's data at *end: [signature] crc32 csize
 * usize, sizes of 4 or (ZIP64) 8 bytes, agreeing with the central
 * directory. Moves *end past it; -1 if it is missing or disagrees. */
static int descriptor_end(const zip_archive *z, const zip_entry *e, uint64_t *end)
{
    const uint64_t limit = z->cd_offset;
    const uint8_t *b = z->buf;
    uint64_t q = *end;
    if (in_range(q, 4, limit) && rd32(b + q) == SIG_DESCRIPTOR) q += 4;
    if (in_range(q, 12, limit) && rd32(b + q) == e->crc32 && rd32(b + q + 4) == e->comp_size &&
        rd32(b + q + 8) == e->size) {
        *end = q + 12;
        return 0;
    }
    if (in_range(q, 20, limit) && rd32(b + q) == e->crc32 && rd64(b + q + 4) == e->comp_size &&
        rd64(b + q + 12) == e->size) {
        *end = q + 20;
        return 0;
    }
    return -1;
}

/* Checks the local header of e against the central directory and fills
 * data_offset and end_offset. Local headers and data lie before the
 * central directory. */
static int read_local(const zip_archive *z, zip_entry *e, char *err, size_t errlen)
{
    const uint64_t limit = z->cd_offset;
    const char *nm = e->name;
    const size_t nl = e->name_len;
    if (!in_range(e->header_offset, LOCAL_LEN, limit)) {
        entry_err(err, errlen, nm, nl, "local header offset %llu is out of range",
                  (unsigned long long)e->header_offset);
        return -1;
    }
    const uint8_t *l = z->buf + e->header_offset;
    if (rd32(l) != SIG_LOCAL) {
        entry_err(err, errlen, nm, nl, "no local header at offset %llu",
                  (unsigned long long)e->header_offset);
        return -1;
    }
    uint16_t flags = rd16(l + 6), method = rd16(l + 8);
    uint32_t crc = rd32(l + 14);
    uint64_t csize = rd32(l + 18), usize = rd32(l + 22);
    uint16_t nlen = rd16(l + 26), elen = rd16(l + 28);
    uint64_t data = e->header_offset + LOCAL_LEN + nlen + elen;
    if (!in_range(e->header_offset + LOCAL_LEN, (uint64_t)nlen + elen, limit)) {
        entry_err(err, errlen, nm, nl, "local header runs into the central directory");
        return -1;
    }
    if (nlen != nl || memcmp(l + LOCAL_LEN, nm, nl) != 0) {
        entry_err(err, errlen, nm, nl, "local header name differs from the central directory");
        return -1;
    }
    if (method != e->method) {
        entry_err(err, errlen, nm, nl,
                  "local header method %u differs from the central "
                  "directory's %u",
                  method, e->method);
        return -1;
    }
    if ((flags ^ e->flags) & (FLAG_ENCRYPTED | FLAG_DESCRIPTOR)) {
        entry_err(err, errlen, nm, nl,
                  "local header flags 0x%04x differ from the central "
                  "directory's 0x%04x",
                  flags, e->flags);
        return -1;
    }
    int sat_u = usize == 0xffffffffu, sat_c = csize == 0xffffffffu;
    if ((sat_u || sat_c) && read_zip64_extra(l + LOCAL_LEN + nlen, elen, 0, sat_u, &usize, sat_c, &csize, 0,
                                             NULL, 0, NULL, nm, nl, "local header", err, errlen) != 0)
        return -1;
    /* APPNOTE 4.5.3: in a local header both sizes are in the ZIP64 field
     * when either is; read_zip64_extra reads them in order, so a field that
     * has only one of them gives the wrong one and fails the check below. */
    int desc = (e->flags & FLAG_DESCRIPTOR) != 0;
    int zero = crc == 0 && csize == 0 && usize == 0;
    if (!(desc && zero) && (crc != e->crc32 || csize != e->comp_size || usize != e->size)) {
        entry_err(err, errlen, nm, nl,
                  "local header (CRC 0x%08x, sizes %llu/%llu) disagrees "
                  "with the central directory (CRC 0x%08x, sizes %llu/%llu)",
                  crc, (unsigned long long)csize, (unsigned long long)usize, e->crc32,
                  (unsigned long long)e->comp_size, (unsigned long long)e->size);
        return -1;
    }
    if (!in_range(data, e->comp_size, limit)) {
        entry_err(err, errlen, nm, nl,
                  "data [%llu, +%llu) runs into the central directory "
                  "(truncated?)",
                  (unsigned long long)data, (unsigned long long)e->comp_size);
        return -1;
    }
    uint64_t end = data + e->comp_size;
    if (desc && descriptor_end(z, e, &end) != 0) {
        entry_err(err, errlen, nm, nl,
                  "data descriptor is missing or disagrees with the "
                  "central directory");
        return -1;
    }
    e->data_offset = data;
    e->end_offset = end;
    return 0;
}

static int cmp_by_name(const void *a, const void *b)
{
    const zip_entry *x = *(const zip_entry *const *)a;
    const zip_entry *y = *(const zip_entry *const *)b;
    return tw_bytes_cmp(x->name, x->name_len, y->name, y->name_len);
}

static int cmp_by_offset(const void *a, const void *b)
{
    const zip_entry *x = *(const zip_entry *const *)a;
    const zip_entry *y = *(const zip_entry *const *)b;
    if (x->header_offset != y->header_offset) return x->header_offset < y->header_offset ? -1 : 1;
    return 0;
}

int zip_open_mem(zip_archive *z, const void *buf, size_t len, char *err, size_t errlen)
{
    memset(z, 0, sizeof *z);
    z->buf = buf;
    z->len = len;
    uint64_t n64 = 0, cd_limit = 0;
    if (read_eocd(z, &n64, &cd_limit, err, errlen) != 0) goto fail;
    size_t n = (size_t)n64;
    if (read_central(z, n, err, errlen) != 0) goto fail;
    for (size_t i = 0; i < n; i++)
        if (read_local(z, &z->entries[i], err, errlen) != 0) goto fail;

    z->by_name = malloc((n ? n : 1) * sizeof *z->by_name);
    if (!z->by_name) {
        tw_set_err(err, errlen, "out of memory for %zu zip entries", n);
        goto fail;
    }
    /* no two entries' bytes overlap (header through descriptor) */
    for (size_t i = 0; i < n; i++) z->by_name[i] = &z->entries[i];
    qsort(z->by_name, n, sizeof *z->by_name, cmp_by_offset);
    for (size_t i = 1; i < n; i++) {
        const zip_entry *p = z->by_name[i - 1], *q = z->by_name[i];
        if (q->header_offset < p->end_offset) {
            char pn[ZIP_NAME_BUF];
            zip_printable(pn, p->name, p->name_len);
            entry_err(err, errlen, q->name, q->name_len, "overlaps entry '%s'", pn);
            goto fail;
        }
    }
    /* unique names, and the index for zip_find */
    for (size_t i = 0; i < n; i++) z->by_name[i] = &z->entries[i];
    qsort(z->by_name, n, sizeof *z->by_name, cmp_by_name);
    for (size_t i = 1; i < n; i++) {
        const zip_entry *p = z->by_name[i - 1], *q = z->by_name[i];
        if (p->name_len == q->name_len && memcmp(p->name, q->name, p->name_len) == 0) {
            entry_err(err, errlen, q->name, q->name_len, "name appears twice");
            goto fail;
        }
    }
    return 0;
fail:
    zip_close(z);
    return -1;
}

static int cmp_name_entry(const void *name, const void *entry, const void *ctx)
{
    (void)ctx;
    const zip_entry *e = *(const zip_entry *const *)entry;
    return tw_bytes_cmp(name, strlen(name), e->name, e->name_len);
}

const zip_entry *zip_find(const zip_archive *z, const char *name)
{
    const zip_entry *const *e =
        tw_search(name, z->by_name, z->n_entries, sizeof *z->by_name, cmp_name_entry, NULL);
    return e ? *e : NULL;
}

const uint8_t *zip_entry_data(const zip_archive *z, const zip_entry *e, char *err, size_t errlen)
{
    if (e->method != 0) {
        entry_err(err, errlen, e->name, e->name_len,
                  "compressed with method %u; only stored entries can be read", e->method);
        return NULL;
    }
    return z->buf + e->data_offset;
}

/* The ZIP CRC-32 of n bytes: ISA-L's folding (PCLMULQDQ) where the build
 * has it, several times faster than zlib's tables on a checkpoint's
 * hundreds of megabytes (bench/models.sh), else zlib's. */
static uint32_t crc32_of(const uint8_t *p, uint64_t n)
{
#ifdef TW_HAVE_ISAL
    return crc32_gzip_refl(0, p, n);
#else
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
#endif
}

int zip_entry_crc_ok(const zip_archive *z, const zip_entry *e, uint32_t *computed)
{
    if (e->method != 0) return -1;
    uint32_t crc = crc32_of(z->buf + e->data_offset, e->comp_size);
    if (computed) *computed = crc;
    return crc == e->crc32;
}
