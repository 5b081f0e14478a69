/* The page's files: see static.h. */
#include "server/static.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/hash.h"
#include "base/mapreg.h"
#include "server/gzip.h"

typedef struct entry {
    char *path;
    tw_file_id id;
    static_file f; /* one reference to each blob */
    size_t bytes;
    struct entry *next;
} entry;

struct static_cache {
    pthread_mutex_t lock; /* guards everything below */
    entry *head;
    size_t bytes, budget;
};

static_cache *static_cache_new(size_t budget)
{
    static_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->budget = budget;
    return c;
}

static void entry_free(entry *e)
{
    static_file_release(&e->f);
    free(e->path);
    free(e);
}

void static_cache_free(static_cache *c)
{
    if (!c) return;
    for (entry *e = c->head, *next; e; e = next) {
        next = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void static_file_release(static_file *f)
{
    api_blob_unref(f->plain);
    api_blob_unref(f->gz);
    f->plain = f->gz = NULL;
}

static void copy_out(const static_file *in, static_file *out)
{
    *out = *in;
    api_blob_ref(out->plain);
    api_blob_ref(out->gz);
}

static void set_etags(static_file *f, uint64_t h, uint64_t size)
{
    snprintf(f->etag, sizeof f->etag, "\"%016" PRIx64 "-%" PRIx64 "\"", h, size);
    snprintf(f->etag_gz, sizeof f->etag_gz, "\"%016" PRIx64 "-%" PRIx64 "-gz\"", h, size);
}

/* Reads the whole file from fd (n bytes). NULL on a read error or when it
 * changed size meanwhile. */
static char *read_all(int fd, size_t n)
{
    char *b = malloc(n + 1);
    size_t got = 0;
    while (b && got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (!b || got != n) {
        free(b);
        return NULL;
    }
    b[n] = '\0';
    return b;
}

int static_cache_get(static_cache *c, const char *path, int fd, const struct stat *st, bool compressible,
                     static_file *out)
{
    memset(out, 0, sizeof *out);
    tw_file_id id;
    tw_file_id_of(st, &id);
    pthread_mutex_lock(&c->lock);
    for (entry *e = c->head; e; e = e->next)
        if (strcmp(e->path, path) == 0 && tw_file_id_equal(&e->id, &id)) {
            copy_out(&e->f, out);
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
    pthread_mutex_unlock(&c->lock);

    size_t n = (size_t)st->st_size;
    if (n > c->budget) { /* sent from the file: an ETag of its identity */
        set_etags(out, tw_fnv1a(&id, sizeof id, TW_FNV1A_INIT), n);
        return 0;
    }
    char *bytes = read_all(fd, n);
    if (!bytes) return -1;
    static_file f = {0};
    set_etags(&f, tw_fnv1a(bytes, n, TW_FNV1A_INIT), n);
    if (!(f.plain = api_blob_new(bytes, n))) return -1;
    size_t zl = 0; /* compressed once per version of the file, at zlib's default level */
    char *z = compressible && n > GZIP_MIN_BYTES ? gzip_bytes(bytes, n, 6, &zl) : NULL;
    f.gz = z ? api_blob_new(z, zl) : NULL;
    entry *e = calloc(1, sizeof *e);
    if (e && (e->path = strdup(path))) {
        e->id = id;
        copy_out(&f, &e->f);
        e->bytes = n + (f.gz ? api_blob_len(f.gz) : 0);
        pthread_mutex_lock(&c->lock);
        /* drop the older versions of this file, then keep this one if it fits */
        for (entry **pp = &c->head; *pp;) {
            if (strcmp((*pp)->path, path) == 0) {
                entry *old = *pp;
                *pp = old->next;
                c->bytes -= old->bytes;
                entry_free(old);
            } else {
                pp = &(*pp)->next;
            }
        }
        if (c->bytes + e->bytes <= c->budget) {
            e->next = c->head;
            c->head = e;
            c->bytes += e->bytes;
            e = NULL;
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (e) entry_free(e);
    *out = f;
    return 0;
}

/* Compares two entity tags weakly: W/ prefixes ignored. */
static int tag_equal(const char *a, size_t an, const char *b)
{
    if (an >= 2 && a[0] == 'W' && a[1] == '/') a += 2, an -= 2;
    return strlen(b) == an && memcmp(a, b, an) == 0;
}

int static_etag_matches(const static_file *f, const char *inm)
{
    if (!inm) return 0;
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *e = p;
        if (*e == 'W' && e[1] == '/') e += 2;
        if (*e == '"') {
            const char *q = strchr(e + 1, '"');
            e = q ? q + 1 : e + strlen(e);
        } else {
            while (*e && *e != ',' && *e != ' ') e++;
        }
        size_t n = (size_t)(e - p);
        if (n == 1 && *p == '*') return 1;
        if (n && (tag_equal(p, n, f->etag) || tag_equal(p, n, f->etag_gz))) return 1;
        p = e;
        while (*p && *p != ',') p++;
    }
    return 0;
}
