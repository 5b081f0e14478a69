/* gzip on the wire: see gzip.h. */
#include "server/gzip.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* The q of one coding's parameters (";q=0.5"); 1 when absent. */
static double q_value(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') return strtod(p + 2, NULL);
        while (p < end && *p != ';') p++;
    }
    return 1.0;
}

bool gzip_accepted(const char *ae)
{
    if (!ae) return false;
    double gzip = -1, star = -1;
    for (const char *p = ae; *p;) {
        while (*p == ',' || *p == ' ' || *p == '\t') p++;
        const char *e = p;
        while (*e && *e != ',') e++;
        const char *ne = p;
        while (ne < e && *ne != ';' && *ne != ' ' && *ne != '\t') ne++;
        size_t n = (size_t)(ne - p);
        double q = q_value(ne, e);
        if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) || (n == 6 && strncasecmp(p, "x-gzip", 6) == 0))
            gzip = q;
        else if (n == 1 && *p == '*')
            star = q;
        p = e;
    }
    return gzip >= 0 ? gzip > 0 : star > 0;
}

bool gzip_worth(const char *t)
{
    if (!t) return false;
    return strncmp(t, "text/", 5) == 0 || strncmp(t, "application/json", 16) == 0 ||
           strncmp(t, "application/javascript", 22) == 0 || strncmp(t, "application/x-latex", 19) == 0 ||
           strncmp(t, "image/svg+xml", 13) == 0;
}

char *gzip_bytes(const void *p, size_t n, int level, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&z, (uLong)n);
    char *out = cap < n ? malloc(cap) : malloc(n); /* no use for a result as large as the input */
    size_t room = cap < n ? cap : n;
    if (!out) {
        deflateEnd(&z);
        return NULL;
    }
    const unsigned char *in = p;
    size_t done_in = 0;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)(room > 0xffffffffu ? 0xffffffffu : room);
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (z.avail_in == 0 && done_in < n) {
            size_t chunk = n - done_in > (1u << 30) ? (1u << 30) : n - done_in;
            z.next_in = (Bytef *)(in + done_in);
            z.avail_in = (uInt)chunk;
            done_in += chunk;
        }
        rc = deflate(&z, done_in == n ? Z_FINISH : Z_NO_FLUSH);
        if (rc == Z_OK && z.avail_out == 0) break; /* not smaller */
    }
    size_t len = (size_t)z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END || len >= n) {
        free(out);
        return NULL;
    }
    *out_len = len;
    return out;
}

api_blob *gzip_side(api_blob *b)
{
    api_blob *side;
    if (api_blob_side(b, &side)) return api_blob_ref(side);
    size_t n = api_blob_len(b), len = 0;
    char *z = n > GZIP_MIN_BYTES ? gzip_bytes(api_blob_data(b), n, n > GZIP_FAST_BYTES ? 1 : 6, &len) : NULL;
    return api_blob_ref(api_blob_set_side(b, z ? api_blob_new(z, len) : NULL));
}
