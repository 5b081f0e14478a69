/* UMAP, part 4: hashing for cache keys, and the layout file (save/load). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/proj/umap_internal.h"

#define UMAP_FILE_MAGIC   "TWDUMAP1"
#define UMAP_FILE_VERSION 1u
/* Revision of the fit itself: bump it whenever the same data and settings
 * give a different layout (e.g. a change to the SGD), so that layouts cached
 * on disk by older code are refitted rather than reused. 2: joint
 * attraction/negative evaluation and the fast power (cf5d80b and before). */
#define UMAP_ALGORITHM_REVISION 2u
#define UMAP_HEADER_BYTES       128u
#define UMAP_CHECKSUM_AT        120u

/* ---- hashing ------------------------------------------------------------
 * 64-bit words folded into the state by multiply/rotate rounds, then a
 * final avalanche. Host byte order (little-endian targets). */

static const uint64_t H_P1 = 0x9E3779B185EBCA87ull;
static const uint64_t H_P2 = 0xC2B2AE3D27D4EB4Full;

static inline uint64_t rotl64(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

static inline uint64_t hash_round(uint64_t h, uint64_t w)
{
    h ^= rotl64(w * H_P2, 31) * H_P1;
    return rotl64(h, 27) * H_P1 + 0x165667B19E3779F9ull;
}

static inline uint64_t hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= H_P2;
    h ^= h >> 29;
    h *= 0x165667B19E3779F9ull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ (len * H_P1);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = hash_round(h, w);
    }
    if (i < len) {
        uint64_t w = 0;
        memcpy(&w, p + i, len - i);
        h = hash_round(h, w ^ ((uint64_t)(len - i) << 56));
    }
    return hash_final(h);
}

uint64_t umap_hash_floats(const float *x, size_t count, uint64_t seed)
{
    return hash_bytes(x, count * sizeof *x, seed);
}

/* ---- little-endian field packing --------------------------------------- */

static void put_u32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static void put_f32(unsigned char *b, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(b, v);
}

static uint32_t get_u32(const unsigned char *b)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)b[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}

static float get_f32(const unsigned char *b)
{
    uint32_t v = get_u32(b);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* The settings as bytes (shared by the cache key and the file header):
 * PARAM_BYTES bytes at offset 0 of buf. */
#define PARAM_BYTES 64
static void pack_params(unsigned char *b, const umap_params *p)
{
    put_u32(b + 0, (uint32_t)p->n_components);
    put_u32(b + 4, (uint32_t)p->n_neighbors);
    put_f32(b + 8, p->min_dist);
    put_f32(b + 12, p->spread);
    put_u32(b + 16, (uint32_t)p->n_epochs);
    put_f32(b + 20, p->learning_rate);
    put_f32(b + 24, p->repulsion_strength);
    put_u32(b + 28, (uint32_t)p->negative_sample_rate);
    put_f32(b + 32, p->local_connectivity);
    put_f32(b + 36, p->set_op_mix_ratio);
    put_u32(b + 40, (uint32_t)p->init);
    put_u64(b + 44, p->seed);
    put_u32(b + 52, (uint32_t)p->n_threads);
    memset(b + 56, 0, PARAM_BYTES - 56);
}

static void unpack_params(const unsigned char *b, umap_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_components = get_u32(b + 0);
    p->n_neighbors = get_u32(b + 4);
    p->min_dist = get_f32(b + 8);
    p->spread = get_f32(b + 12);
    p->n_epochs = get_u32(b + 16);
    p->learning_rate = get_f32(b + 20);
    p->repulsion_strength = get_f32(b + 24);
    p->negative_sample_rate = get_u32(b + 28);
    p->local_connectivity = get_f32(b + 32);
    p->set_op_mix_ratio = get_f32(b + 36);
    p->init = (umap_init)get_u32(b + 40);
    p->seed = get_u64(b + 44);
    p->n_threads = get_u32(b + 52);
}

uint64_t umap_cache_key(uint64_t data_hash, const umap_params *p)
{
    unsigned char b[8 + 4 + 4 + PARAM_BYTES];
    put_u64(b, data_hash);
    put_u32(b + 8, UMAP_FILE_VERSION);
    put_u32(b + 12, UMAP_ALGORITHM_REVISION);
    umap_params q = *p;
    q.n_threads = 0; /* does not change the layout */
    pack_params(b + 16, &q);
    return hash_bytes(b, sizeof b, 0x75D3A9B1C0FFEEull);
}

/* Header layout (little-endian):
 *   0 magic[8]  8 version u32  12 header bytes u32  16 key u64  24 n u64
 *  32 dim u64  40 n_epochs_fit u32  44 a f32  48 b f32  52 params[64]
 *  116 zero[4]  120 checksum u64 of bytes [0,120) and the payload.
 * Payload: n * n_components float32. */
static void pack_header(unsigned char *h, const umap_model *m)
{
    memset(h, 0, UMAP_HEADER_BYTES);
    memcpy(h, UMAP_FILE_MAGIC, 8);
    put_u32(h + 8, UMAP_FILE_VERSION);
    put_u32(h + 12, UMAP_HEADER_BYTES);
    put_u64(h + 16, m->key);
    put_u64(h + 24, m->n);
    put_u64(h + 32, m->dim);
    put_u32(h + 40, (uint32_t)m->n_epochs_fit);
    put_f32(h + 44, m->a);
    put_f32(h + 48, m->b);
    pack_params(h + 52, &m->params);
}

static uint64_t file_checksum(const unsigned char *header, const unsigned char *payload, size_t len)
{
    uint64_t h = hash_bytes(header, UMAP_CHECKSUM_AT, 0x51CEull);
    return hash_bytes(payload, len, h);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int umap_save(const umap_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !m->embedding || !path || m->n == 0 || m->params.n_components == 0 ||
        m->params.n_components > UMAP_MAX_COMPONENTS) {
        umap_set_err(err, errlen, "umap_save: nothing to save");
        return TW_EINVAL;
    }
    const size_t count = m->n * m->params.n_components;
    const size_t len = count * 4;
    unsigned char header[UMAP_HEADER_BYTES];
    unsigned char *payload = malloc(len);
    if (!payload) {
        umap_set_err(err, errlen, "umap_save: out of memory");
        return TW_ENOMEM;
    }
    for (size_t i = 0; i < count; i++) put_f32(payload + 4 * i, m->embedding[i]);
    pack_header(header, m);
    put_u64(header + UMAP_CHECKSUM_AT, file_checksum(header, payload, len));

    static atomic_uint counter;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64);
    if (!tmp) {
        free(payload);
        umap_set_err(err, errlen, "umap_save: out of memory");
        return TW_ENOMEM;
    }
    snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    int rc = TW_EIO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        umap_set_err(err, errlen, "umap_save: %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (write_all(fd, header, sizeof header) != 0 || write_all(fd, payload, len) != 0 || fsync(fd) != 0) {
        umap_set_err(err, errlen, "umap_save: %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto done;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        umap_set_err(err, errlen, "umap_save: %s: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    /* make the rename durable: fsync the folder (best effort) */
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    rc = TW_OK;
done:
    free(tmp);
    free(payload);
    return rc;
}

/* Reads and checks the header of an open layout file: magic, version and a
 * plausible shape; the settings it stores in *p. TW_OK, TW_EFORMAT or
 * TW_EMISMATCH (another format version), with the message in err. */
static int read_header(int fd, const char *path, unsigned char *header, umap_params *p, char *err,
                       size_t errlen)
{
    ssize_t got = pread(fd, header, UMAP_HEADER_BYTES, 0);
    if (got != (ssize_t)UMAP_HEADER_BYTES || memcmp(header, UMAP_FILE_MAGIC, 8) != 0 ||
        get_u32(header + 12) != UMAP_HEADER_BYTES) {
        umap_set_err(err, errlen, "umap_load: %s: not a twd UMAP layout file", path);
        return TW_EFORMAT;
    }
    if (get_u32(header + 8) != UMAP_FILE_VERSION) {
        umap_set_err(err, errlen, "umap_load: %s: format version %u, expected %u", path, get_u32(header + 8),
                     UMAP_FILE_VERSION);
        return TW_EMISMATCH;
    }
    unpack_params(header + 52, p);
    uint64_t fn = get_u64(header + 24), fdim = get_u64(header + 32);
    if (p->n_components < 1 || p->n_components > UMAP_MAX_COMPONENTS || fn == 0 || fn > INT32_MAX ||
        fdim == 0 || fdim > (1u << 24)) {
        umap_set_err(err, errlen, "umap_load: %s: implausible header", path);
        return TW_EFORMAT;
    }
    return TW_OK;
}

/* The len bytes after the header into a new *payload (the caller frees it,
 * also on failure). TW_OK, TW_ENOMEM or TW_EFORMAT (short read). */
static int read_payload(int fd, const char *path, size_t len, unsigned char **payload, char *err,
                        size_t errlen)
{
    unsigned char *b = *payload = malloc(len ? len : 1);
    if (!b) {
        umap_set_err(err, errlen, "umap_load: out of memory");
        return TW_ENOMEM;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t r = pread(fd, b + off, len - off, (off_t)(UMAP_HEADER_BYTES + off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            umap_set_err(err, errlen, "umap_load: %s: short read", path);
            return TW_EFORMAT;
        }
        off += (size_t)r;
    }
    return TW_OK;
}

int umap_load(const char *path, uint64_t key, size_t n, size_t dim, umap_model *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!path) {
        umap_set_err(err, errlen, "umap_load: no path");
        return TW_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        umap_set_err(err, errlen, "umap_load: %s: %s", path, strerror(e));
        return e == ENOENT ? TW_ENOENT : TW_EIO;
    }
    unsigned char header[UMAP_HEADER_BYTES];
    unsigned char *payload = NULL;
    int rc = TW_EFORMAT;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        umap_set_err(err, errlen, "umap_load: %s: %s", path, strerror(errno));
        rc = TW_EIO;
        goto done;
    }
    umap_params p;
    rc = read_header(fd, path, header, &p, err, errlen);
    if (rc != TW_OK) goto done;
    rc = TW_EFORMAT;
    uint64_t fkey = get_u64(header + 16), fn = get_u64(header + 24), fdim = get_u64(header + 32);
    const size_t len = (size_t)fn * p.n_components * 4;
    if ((uint64_t)st.st_size != UMAP_HEADER_BYTES + (uint64_t)len) {
        umap_set_err(err, errlen, "umap_load: %s: %lld bytes, header says %llu", path, (long long)st.st_size,
                     (unsigned long long)(UMAP_HEADER_BYTES + len));
        goto done;
    }
    rc = read_payload(fd, path, len, &payload, err, errlen);
    if (rc != TW_OK) goto done;
    rc = TW_EFORMAT;
    if (file_checksum(header, payload, len) != get_u64(header + UMAP_CHECKSUM_AT)) {
        umap_set_err(err, errlen, "umap_load: %s: checksum mismatch (corrupt file)", path);
        goto done;
    }
    if (fkey != key || fn != n || fdim != dim) {
        umap_set_err(err, errlen,
                     "umap_load: %s: layout of key %016llx (%llu x %llu), "
                     "wanted %016llx (%zu x %zu)",
                     path, (unsigned long long)fkey, (unsigned long long)fn, (unsigned long long)fdim,
                     (unsigned long long)key, n, dim);
        rc = TW_EMISMATCH;
        goto done;
    }
    char perr[128];
    if (umap_params_check(&p, n, perr, sizeof perr) != TW_OK) {
        umap_set_err(err, errlen, "umap_load: %s: %s", path, perr);
        goto done;
    }
    float a = get_f32(header + 44), b = get_f32(header + 48);
    if (!(a > 0.0f) || !(b > 0.0f) || !isfinite(a) || !isfinite(b)) {
        umap_set_err(err, errlen, "umap_load: %s: bad curve parameters", path);
        goto done;
    }
    const size_t count = (size_t)fn * p.n_components;
    out->embedding = malloc(count * sizeof(float));
    if (!out->embedding) {
        umap_set_err(err, errlen, "umap_load: out of memory");
        rc = TW_ENOMEM;
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        out->embedding[i] = get_f32(payload + 4 * i);
        if (!isfinite(out->embedding[i])) {
            umap_set_err(err, errlen, "umap_load: %s: non-finite coordinate", path);
            umap_model_free(out);
            goto done;
        }
    }
    out->params = p;
    out->n = n;
    out->dim = dim;
    out->n_epochs_fit = get_u32(header + 40);
    out->a = a;
    out->b = b;
    out->key = key;
    snprintf(out->init_note, sizeof out->init_note, "loaded from %s", path);
    rc = TW_OK;
done:
    close(fd);
    free(payload);
    return rc;
}
