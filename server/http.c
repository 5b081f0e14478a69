#include "server/http.h"

#include <arpa/inet.h>
#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "core/nn/par.h"
#include "server/guard.h"
#include "server/gzip.h"
#include "server/metrics.h"
#include "server/static.h"

enum { PH_NEW, PH_BODY, PH_QUEUED, PH_ANSWERED };

typedef struct req_state {
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct req_state *next_job; /* worker queue link */
    char *raw;                  /* request target as sent */
    size_t raw_len;
    double t0;
    int phase;
    int method;
    const char *label; /* route label for metrics (static string) */
    const api_route *route;
    char *path;
    api_kv *query;
    size_t n_query;
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    int status;
    size_t sent_bytes;
    bool cache_hit;
    bool gzip_ok;     /* Accept-Encoding accepts gzip */
    gconn *gc;        /* the connection as the guard sees it */
    bool queued;      /* counted in the worker queue */
    tw_cancel cancel; /* raised when the client goes away; the computation's deadline */
    api_call call;    /* a heavy request waiting for a worker */
    api_response res;
} req_state;

struct http_server {
    struct MHD_Daemon *d;
    guard *guard;
    static_cache *statics; /* the page's files, read and compressed once */
    api_service *svc;
    const twd_config *cfg;
    char static_root[PATH_MAX];
    int port;
    /* workers */
    pthread_t *workers;
    size_t n_workers;
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    req_state *qhead, *qtail;
    size_t queued; /* heavy requests waiting or running */
    bool stopping;
    _Atomic bool hurried; /* http_hurry: the computations under way were canceled */
    /* the cores shared by the computations running (qlock): each gets
     * blas_budget / computing BLAS threads, so two workers never run more
     * threads than the budget (OpenBLAS's count at start) */
    int blas_budget, computing;
    /* per client address: heavy requests waiting or running (qlock) */
    struct {
        char addr[INET6_ADDRSTRLEN];
        size_t n;
    } * clients;
    size_t n_clients, cap_clients;
};

/* The server http_hurry acts on: the one started, until it is freed. */
static pthread_mutex_t hurry_lock = PTHREAD_MUTEX_INITIALIZER;
static http_server *hurry_srv;

/* ---------- decoding ---------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int http_percent_decode(const char *s, size_t n, int plus_is_space, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n) return -1;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    *out_len = o;
    return 0;
}

static void free_query(req_state *rs)
{
    for (size_t i = 0; i < rs->n_query; i++) {
        free(rs->query[i].key);
        free(rs->query[i].val);
    }
    free(rs->query);
    rs->query = NULL;
    rs->n_query = 0;
}

/* Splits the raw target into a decoded path and decoded query pairs.
 * Returns 0, or -1 with a client-facing message in msg. */
static int parse_target(req_state *rs, char *msg, size_t msglen)
{
    const char *q = memchr(rs->raw, '?', rs->raw_len);
    size_t plen = q ? (size_t)(q - rs->raw) : rs->raw_len;
    size_t n;
    rs->path = malloc(plen + 1);
    if (!rs->path) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    if (http_percent_decode(rs->raw, plen, 0, rs->path, &n) != 0) {
        snprintf(msg, msglen, "bad percent-encoding in the path");
        return -1;
    }
    rs->path[n] = '\0';
    if (memchr(rs->path, '\0', n)) {
        snprintf(msg, msglen, "NUL byte in the path");
        return -1;
    }
    if (!q) return 0;
    const char *s = q + 1, *end = rs->raw + rs->raw_len;
    size_t cap = 1;
    for (const char *p = s; p < end; p++) cap += *p == '&';
    rs->query = calloc(cap, sizeof *rs->query);
    if (!rs->query) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        if (e > s) {
            const char *eq = memchr(s, '=', (size_t)(e - s));
            const char *ke = eq ? eq : e;
            const char *vs = eq ? eq + 1 : e;
            api_kv *kv = &rs->query[rs->n_query++];
            kv->key = malloc((size_t)(ke - s) + 1);
            kv->val = malloc((size_t)(e - vs) + 1);
            if (!kv->key || !kv->val) {
                snprintf(msg, msglen, "out of memory");
                return -1;
            }
            if (http_percent_decode(s, (size_t)(ke - s), 1, kv->key, &kv->key_len) != 0) {
                snprintf(msg, msglen, "bad percent-encoding in a query parameter name");
                return -1;
            }
            kv->key[kv->key_len] = '\0';
            if (http_percent_decode(vs, (size_t)(e - vs), 1, kv->val, &kv->val_len) != 0) {
                char shown[64];
                api_quote(shown, sizeof shown, kv->key, kv->key_len);
                snprintf(msg, msglen, "bad percent-encoding in query parameter '%s'", shown);
                return -1;
            }
            kv->val[kv->val_len] = '\0';
        }
        s = e + 1;
    }
    return 0;
}

/* ---------- responses ---------- */

/* True when the request's Origin is the one configured cors_origin. */
static bool origin_allowed(http_server *srv, struct MHD_Connection *c)
{
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    return origin && srv->cfg->cors_origin[0] && strcmp(origin, srv->cfg->cors_origin) == 0;
}

static void add_common_headers(http_server *srv, struct MHD_Connection *c, struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (origin_allowed(srv, c)) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", srv->cfg->cors_origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
}

static void unref_blob(void *blob) { api_blob_unref(blob); }

/* Queues r (with the common headers) as the answer, status `status`, and
 * releases it; the connection enters its sending phase. */
static enum MHD_Result send_answer(req_state *rs, int status, struct MHD_Response *r)
{
    add_common_headers(rs->srv, rs->conn, r);
    rs->status = status;
    rs->phase = PH_ANSWERED;
    gconn_phase_set(rs->srv->guard, rs->gc, GC_SEND, NULL);
    enum MHD_Result ret = MHD_queue_response(rs->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Answers larger than GZIP_MIN_BYTES go gzip-compressed to clients that
 * accept it; the compressed form is made once per answer and kept beside
 * it, so a cached answer is compressed once however often it is sent. */
static enum MHD_Result queue_api_response(req_state *rs)
{
    api_response *res = &rs->res;
    /* the response holds its own reference to the (possibly cached) bytes */
    api_blob *blob = api_blob_ref(res->blob);
    const char *ct = res->content_type ? res->content_type : "application/json";
    bool varies = gzip_worth(ct) && res->len > GZIP_MIN_BYTES, gz = false;
    if (varies && rs->gzip_ok) {
        api_blob *z = gzip_side(blob);
        if (z) {
            api_blob_unref(blob);
            blob = z;
            gz = true;
        }
    }
    size_t len = api_blob_len(blob);
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
        len, (void *)api_blob_data(blob), unref_blob, blob);
    if (!r) {
        api_blob_unref(blob);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ct);
    if (varies) MHD_add_response_header(r, "Vary", "Accept-Encoding");
    if (gz) MHD_add_response_header(r, "Content-Encoding", "gzip");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (res->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", res->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    if (res->allow[0]) MHD_add_response_header(r, "Allow", res->allow);
    if (rs->route && (rs->route->flags & API_CACHEABLE))
        MHD_add_response_header(r, "X-Twd-Cache", res->cached ? "hit" : "miss");
    rs->sent_bytes = len;
    rs->cache_hit = res->cached;
    return send_answer(rs, res->status, r);
}

static enum MHD_Result reply_error(req_state *rs, int status, const char *fmt, const char *arg)
{
    api_response_free(&rs->res);
    memset(&rs->res, 0, sizeof rs->res);
    api_error(&rs->res, status, fmt, arg);
    return queue_api_response(rs);
}

/* ---------- static files ---------- */

static const char *mime_type(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".svg", "image/svg+xml"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},
        {".woff2", "font/woff2"},
        {".jpg", "image/jpeg"},
    };
    const char *dot = strrchr(path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

/* Why a static file is not served: the answer's status and message. */
typedef struct {
    int status;
    const char *fmt, *arg;
    char shown[64]; /* the client's path, quoted, when arg names it */
} refusal;

static int refuse(refusal *why, int status, const char *fmt, const char *arg)
{
    *why = (refusal){.status = status, .fmt = fmt, .arg = arg};
    return -1;
}

/* The file below the web root that the request path p names ("/" is
 * index.html), as a real path in real[PATH_MAX]: 0, or -1 with the 404 in
 * *why. Dot files, "//", backslashes and whatever resolves (through links)
 * outside the root are refused. */
static int static_resolve(const http_server *srv, const char *p, char *real, refusal *why)
{
    if (p[0] != '/') return refuse(why, 404, "no such route: %s", "(relative path)");
    if (strstr(p, "/.") || strstr(p, "//") || strstr(p, "\\"))
        return refuse(why, 404, "no such route: %s",
                      "(dot files and paths outside the web root are not served)");
    char want[PATH_MAX];
    int w =
        snprintf(want, sizeof want, "%s%s%s", srv->static_root, p, strcmp(p, "/") == 0 ? "index.html" : "");
    if (w < 0 || (size_t)w >= sizeof want || !srv->static_root[0] || !realpath(want, real)) {
        refuse(why, 404, "no such route or file: %s (see /openapi.json)", why->shown);
        api_quote(why->shown, sizeof why->shown, p, strlen(p));
        return -1;
    }
    size_t rl = strlen(srv->static_root);
    if (strncmp(real, srv->static_root, rl) != 0 || real[rl] != '/')
        return refuse(why, 404, "no such route: %s", "(path outside the web root)");
    return 0;
}

/* Opens real for reading (fstat in *st): the descriptor, or -1 with the
 * 404 in *why when it is not a regular file. O_NONBLOCK: a FIFO must never
 * block an HTTP thread. */
static int static_open(const char *real, struct stat *st, refusal *why)
{
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd >= 0 && fstat(fd, st) == 0 && S_ISREG(st->st_mode)) return fd;
    if (fd >= 0) close(fd);
    return refuse(why, 404, "no such file: %s", "(not a regular file)");
}

/* The response's body: none for a 304, the kept bytes (gzip or plain), or
 * the file itself when it is too large to keep. Takes fd (closes it unless
 * the response reads from it); sets rs->sent_bytes. NULL when out of
 * memory. */
static struct MHD_Response *static_body(req_state *rs, const static_file *f, bool gz, bool not_modified,
                                        int fd, const struct stat *st)
{
    struct MHD_Response *r;
    if (not_modified) {
        r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        rs->sent_bytes = 0; /* (libmicrohttpd 0.9.75 labels it Content-Length: 0; clients read no body) */
    } else if (f->plain) {
        api_blob *b = api_blob_ref(gz ? f->gz : f->plain);
        r = MHD_create_response_from_buffer_with_free_callback_cls(api_blob_len(b), (void *)api_blob_data(b),
                                                                   unref_blob, b);
        if (!r) api_blob_unref(b);
        rs->sent_bytes = api_blob_len(b);
    } else { /* too large to keep: from the file, as it is */
        r = MHD_create_response_from_fd((uint64_t)st->st_size, fd);
        fd = r ? -1 : fd;
        rs->sent_bytes = (size_t)st->st_size;
    }
    if (fd >= 0) close(fd);
    return r;
}

/* Content type, caching and encoding headers of a static answer. */
static void static_headers(struct MHD_Response *r, const char *path, const char *type, const static_file *f,
                           bool gz, bool not_modified)
{
    if (!not_modified) MHD_add_response_header(r, "Content-Type", type);
    /* the page revalidates (it changes with twd); the vendored library may be
     * kept a week: its URL changes only when scripts/deps.sh installs another */
    MHD_add_response_header(r, "Cache-Control",
                            strncmp(path, "/vendor/", 8) == 0 ? "public, max-age=604800" : "no-cache");
    MHD_add_response_header(r, "ETag", gz ? f->etag_gz : f->etag);
    if (f->gz) MHD_add_response_header(r, "Vary", "Accept-Encoding");
    if (gz && !not_modified) MHD_add_response_header(r, "Content-Encoding", "gzip");
}

/* A page file: resolved below the web root, opened, read through the
 * static cache, answered 304 when the client's ETag matches, gzip when
 * the client accepts it and a compressed form is kept. */
static enum MHD_Result serve_static(req_state *rs)
{
    http_server *srv = rs->srv;
    rs->label = "static";
    refusal why;
    char real[PATH_MAX];
    struct stat st;
    int fd;
    if (static_resolve(srv, rs->path, real, &why) != 0 || (fd = static_open(real, &st, &why)) < 0)
        return reply_error(rs, why.status, why.fmt, why.arg);
    const char *type = mime_type(real);
    static_file f;
    if (static_cache_get(srv->statics, real, fd, &st, gzip_worth(type), &f) != 0) {
        close(fd);
        return reply_error(rs, 500, "cannot read %s", "the file");
    }
    bool gz = f.gz && rs->gzip_ok;
    const char *inm = MHD_lookup_connection_value(rs->conn, MHD_HEADER_KIND, "If-None-Match");
    bool not_modified = static_etag_matches(&f, inm);
    struct MHD_Response *r = static_body(rs, &f, gz, not_modified, fd, &st);
    if (r) static_headers(r, rs->path, type, &f, gz, not_modified);
    static_file_release(&f);
    return r ? send_answer(rs, not_modified ? 304 : 200, r) : MHD_NO;
}

/* ---------- workers ---------- */

static void build_request(req_state *rs, api_request *req)
{
    memset(req, 0, sizeof *req);
    req->method = rs->method;
    req->query = rs->query;
    req->n_query = rs->n_query;
    req->body = rs->body;
    req->body_len = rs->body_len;
}

/* Per-client count of heavy requests waiting or running (qlock held). */
static size_t *client_slot(http_server *srv, const char *addr, bool create)
{
    for (size_t i = 0; i < srv->n_clients; i++)
        if (strcmp(srv->clients[i].addr, addr) == 0) return &srv->clients[i].n;
    if (!create) return NULL;
    if (srv->n_clients == srv->cap_clients) {
        size_t nc = srv->cap_clients ? 2 * srv->cap_clients : 16;
        void *n = realloc(srv->clients, nc * sizeof *srv->clients);
        if (!n) return NULL;
        srv->clients = n;
        srv->cap_clients = nc;
    }
    snprintf(srv->clients[srv->n_clients].addr, sizeof srv->clients[0].addr, "%s", addr);
    srv->clients[srv->n_clients].n = 0;
    return &srv->clients[srv->n_clients++].n;
}

/* A heavy request leaves the queue's books (done, or refused). qlock held. */
static void unqueue(http_server *srv, req_state *rs)
{
    if (!rs->queued) return;
    rs->queued = false;
    srv->queued--;
    size_t *n = client_slot(srv, gconn_addr(rs->gc), false);
    if (n && *n) --*n;
    if (n && *n == 0) {
        size_t i = (size_t)((char *)n - (char *)&srv->clients[0].n) / sizeof srv->clients[0];
        srv->clients[i] = srv->clients[--srv->n_clients];
    }
}

/* One computation more (delta 1) or fewer (-1): OpenBLAS's thread count
 * (and core/nn/par.h's parts, which follow it) becomes the budget shared by
 * those running, at least 1. A computation already inside a BLAS call keeps
 * the threads it started with; its next call takes its share. */
static void share_cores(http_server *srv, int delta)
{
    pthread_mutex_lock(&srv->qlock);
    srv->computing += delta;
    int t = srv->blas_budget / (srv->computing > 1 ? srv->computing : 1);
    nn_blas_set_threads(t < 1 ? 1 : t);
    pthread_mutex_unlock(&srv->qlock);
}

static void *worker_main(void *arg)
{
    http_server *srv = arg;
    for (;;) {
        pthread_mutex_lock(&srv->qlock);
        while (!srv->qhead && !srv->stopping) pthread_cond_wait(&srv->qcond, &srv->qlock);
        req_state *rs = srv->qhead;
        if (!rs) {
            pthread_mutex_unlock(&srv->qlock);
            return NULL;
        }
        srv->qhead = rs->next_job;
        if (!srv->qhead) srv->qtail = NULL;
        bool stopping = srv->stopping;
        pthread_mutex_unlock(&srv->qlock);

        int why = stopping ? TW_ECANCELED : tw_cancel_check(&rs->cancel);
        api_blob *later = NULL; /* an answer to compress once it is on its way */
        bool computed = false;
        if (stopping) {
            api_call_free(&rs->call);
            api_error(&rs->res, 503, "the service is shutting down");
        } else if (why != TW_OK) {
            /* the client went away, the request waited past its deadline, or
             * its model's checkpoint changed */
            api_call_abandon(&rs->call, why, &rs->res);
        } else {
            rs->call.args.cancel = &rs->cancel;
            bool keep = rs->call.key != NULL; /* a cacheable answer: sent again, compressed once */
            share_cores(srv, 1);
            api_compute(&rs->call, &rs->res);
            share_cores(srv, -1);
            /* compressed here rather than on an HTTP thread: before the
             * answer goes for a client that takes it compressed, after it
             * for one that does not (a cacheable answer, for the clients
             * that get it from the cache later), which so never waits for
             * bytes it will not use */
            if ((rs->gzip_ok || keep) && rs->res.status == 200 && rs->res.len > GZIP_MIN_BYTES &&
                gzip_worth(rs->res.content_type)) {
                if (rs->gzip_ok)
                    api_blob_unref(gzip_side(rs->res.blob));
                else
                    later = api_blob_ref(rs->res.blob);
            }
            if (atomic_load(&srv->hurried) && rs->res.status == 503) {
                api_response_free(&rs->res);
                api_error(&rs->res, 503, "the service is shutting down");
            }
            computed = true;
        }
        pthread_mutex_lock(&srv->qlock);
        unqueue(srv, rs);
        pthread_mutex_unlock(&srv->qlock);
        MHD_resume_connection(rs->conn); /* rs is the HTTP thread's from here on */
        if (later) {
            api_blob_unref(gzip_side(later));
            api_blob_unref(later);
        }
#ifdef __GLIBC__
        if (computed) malloc_trim(0); /* what the computation freed goes back to the system */
#else
        (void)computed;
#endif
    }
}

/* ---------- MHD callbacks ---------- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    req_state *rs = calloc(1, sizeof *rs);
    if (!rs) return NULL;
    rs->srv = cls;
    rs->conn = c;
    rs->t0 = tw_now();
    rs->raw_len = strlen(uri);
    rs->raw = strdup(uri);
    rs->label = "unknown";
    rs->status = 500;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    rs->gc = ci ? ci->socket_context : NULL;
    gconn_phase_set(rs->srv->guard, rs->gc, GC_HEADERS, NULL);
    metrics_request_start();
    return rs;
}

static int method_code(const char *m)
{
    if (strcmp(m, "GET") == 0) return API_GET;
    if (strcmp(m, "POST") == 0) return API_POST;
    if (strcmp(m, "HEAD") == 0) return API_HEAD;
    if (strcmp(m, "OPTIONS") == 0) return API_OPTIONS;
    return API_OTHER;
}

/* Counts the values of header `name` (case-insensitive). */
typedef struct {
    const char *name;
    int n;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    header_count *h = cls;
    (void)kind;
    (void)value;
    if (key && strcasecmp(key, h->name) == 0) h->n++;
    return MHD_YES;
}

static int header_occurrences(struct MHD_Connection *c, const char *name)
{
    header_count h = {name, 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &h);
    return h.n;
}

/* Is `host` (the Host header: a name or [v6], optionally :port) one this
 * daemon listens as? localhost, 127.0.0.1, ::1, the listen address and
 * allowed_hosts; the port, when given, must be ours. */
static bool host_allowed(const http_server *srv, const char *host)
{
    char name[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof name) return false;
    memcpy(name, host, n + 1);
    char *port = NULL;
    if (name[0] == '[') {
        char *close = strchr(name, ']');
        if (!close) return false;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            return false;
        *close = '\0';
        memmove(name, name + 1, strlen(name + 1) + 1);
    } else if ((port = strchr(name, ':'))) {
        *port++ = '\0';
    }
    if (port) {
        char *end;
        long p = strtol(port, &end, 10);
        if (*end || end == port || p != srv->port) return false;
    }
    for (char *q = name; *q; q++) *q = (char)tolower((unsigned char)*q);
    if (!strcmp(name, "localhost") || !strcmp(name, "127.0.0.1") || !strcmp(name, "::1") ||
        !strcasecmp(name, srv->cfg->listen))
        return true;
    const char *list = srv->cfg->allowed_hosts;
    size_t len = strlen(name);
    while (*list) {
        while (*list == ',' || *list == ' ') list++;
        const char *e = list;
        while (*e && *e != ',' && *e != ' ') e++;
        if ((size_t)(e - list) == len && strncasecmp(list, name, len) == 0) return true;
        list = e;
    }
    return false;
}

/* The checks of who may ask (HTTP level, before any route logic): Host
 * (DNS rebinding), request smuggling shapes, the bearer key. Fills msg and
 * returns the status to answer, or 0. */
static int check_client(req_state *rs, char *msg, size_t msglen)
{
    http_server *srv = rs->srv;
    struct MHD_Connection *c = rs->conn;
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (host && !host_allowed(srv, host)) {
        char shown[64];
        api_quote(shown, sizeof shown, host, strlen(host));
        snprintf(msg, msglen, "this server does not answer for host '%s' (see allowed_hosts)", shown);
        return 421;
    }
    if (header_occurrences(c, "Content-Length") > 1) {
        snprintf(msg, msglen, "more than one Content-Length header");
        return 400;
    }
    if (header_occurrences(c, "Content-Length") && header_occurrences(c, "Transfer-Encoding")) {
        snprintf(msg, msglen, "both Content-Length and Transfer-Encoding");
        return 400;
    }
    /* the key guards the API; the page's static files and /health stay open */
    if (srv->cfg->api_key[0] && rs->route && strcmp(rs->route->path, "/health") != 0) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        size_t kl = strlen(srv->cfg->api_key);
        bool ok = auth && strncmp(auth, "Bearer ", 7) == 0 && strlen(auth + 7) == kl;
        /* compared in constant time */
        unsigned diff = 0;
        for (size_t i = 0; ok && i < kl; i++) diff |= (unsigned char)(auth[7 + i] ^ srv->cfg->api_key[i]);
        if (!ok || diff) {
            snprintf(msg, msglen, "this route needs 'Authorization: Bearer <api_key>'");
            return 401;
        }
    }
    return 0;
}

/* The request line and headers have arrived: bound the target, decode it,
 * find the route, check the client and the declared body size. */
static enum MHD_Result on_headers(req_state *rs, const char *method)
{
    http_server *srv = rs->srv;
    rs->phase = PH_BODY;
    rs->method = method_code(method);
    rs->gzip_ok = gzip_accepted(MHD_lookup_connection_value(rs->conn, MHD_HEADER_KIND, "Accept-Encoding"));
    gconn_phase_set(srv->guard, rs->gc, GC_BODY, NULL);
    char msg[256];
    if (rs->raw_len > (size_t)srv->cfg->max_url) {
        snprintf(msg, sizeof msg, "%zu bytes; the limit is %lld (max_url)", rs->raw_len,
                 (long long)srv->cfg->max_url);
        return reply_error(rs, 414, "request target too long: %s", msg);
    }
    if (parse_target(rs, msg, sizeof msg) != 0) return reply_error(rs, 400, "%s", msg);
    rs->route = api_find_route(rs->path);
    if (rs->route) rs->label = rs->route->path;
    int status = check_client(rs, msg, sizeof msg);
    if (status) return reply_error(rs, status, "%s", msg);
    const char *cl = MHD_lookup_connection_value(rs->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        /* A body over the cap is read and dropped, so that ordinary clients
         * (which send the whole body before reading) see the 413; one too
         * large to be worth reading is refused at once and the connection
         * closed. */
        if (errno || *end || !isdigit((unsigned char)cl[0]) ||
            v > (unsigned long long)srv->cfg->max_body * 16 + (64u << 20)) {
            api_quote(msg, sizeof msg, cl, strlen(cl));
            char lim[64];
            snprintf(lim, sizeof lim, "; the limit is %lld", (long long)srv->cfg->max_body);
            strncat(msg, lim, sizeof msg - strlen(msg) - 1);
            return reply_error(rs, 413, "request body too large: %s bytes", msg);
        }
        if (v > (unsigned long long)srv->cfg->max_body) rs->body_too_large = true;
    }
    return MHD_YES;
}

/* A piece of the body: kept up to max_body, dropped beyond. */
static enum MHD_Result on_body(req_state *rs, const char *upload, size_t *upload_size)
{
    size_t n = *upload_size, cap = (size_t)rs->srv->cfg->max_body;
    *upload_size = 0;
    if (rs->body_too_large) return MHD_YES;
    if (rs->body_len + n > cap) {
        rs->body_too_large = true;
        free(rs->body);
        rs->body = NULL;
        rs->body_len = rs->body_cap = 0;
        return MHD_YES;
    }
    if (rs->body_len + n > rs->body_cap) {
        size_t nc = rs->body_cap ? rs->body_cap : 4096;
        while (nc < rs->body_len + n) nc *= 2;
        char *nb = realloc(rs->body, nc);
        if (!nb) return MHD_NO;
        rs->body = nb;
        rs->body_cap = nc;
    }
    memcpy(rs->body + rs->body_len, upload, n);
    rs->body_len += n;
    return MHD_YES;
}

/* CORS preflight and OPTIONS: 204 with the route's Allow header. */
static enum MHD_Result answer_options(req_state *rs)
{
    http_server *srv = rs->srv;
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    const char *allow = api_allow_header(rs->route);
    MHD_add_response_header(r, "Allow", allow);
    if (origin_allowed(srv, rs->conn)) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", allow);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    add_common_headers(srv, rs->conn, r);
    rs->status = 204;
    rs->phase = PH_ANSWERED;
    enum MHD_Result ret = MHD_queue_response(rs->conn, 204, r);
    MHD_destroy_response(r);
    return ret;
}

/* Hands a prepared heavy request to the workers; the connection sleeps
 * until a worker resumes it with the answer. The queue is bounded, in all
 * and per client address, so that one client cannot fill it. */
static enum MHD_Result enqueue(req_state *rs)
{
    http_server *srv = rs->srv;
    const char *why = NULL;
    const char *addr = gconn_addr(rs->gc);
    pthread_mutex_lock(&srv->qlock);
    size_t *mine = client_slot(srv, addr, false);
    if (srv->stopping)
        why = "the service is shutting down";
    else if (srv->queued >= (size_t)srv->cfg->max_queue)
        why = "too many requests are waiting (max_queue)";
    else if (mine && *mine >= (size_t)srv->cfg->max_queue_per_client)
        why = "this client has too many requests waiting (max_queue_per_client)";
    else if (!(mine = client_slot(srv, addr, true)))
        why = "out of memory";
    if (why) {
        pthread_mutex_unlock(&srv->qlock);
        api_call_free(&rs->call);
        api_response_free(&rs->res);
        api_error(&rs->res, 503, "%s; retry shortly", why);
        rs->res.retry_after = srv->stopping ? 0 : 1;
        return queue_api_response(rs);
    }
    ++*mine;
    srv->queued++;
    rs->queued = true;
    rs->cancel.deadline = tw_now() + (double)srv->cfg->max_request_seconds;
    api_call_link_cancel(&rs->call, &rs->cancel); /* stops when the checkpoint changes */
    gconn_phase_set(srv->guard, rs->gc, GC_WORK, &rs->cancel);
    rs->phase = PH_QUEUED;
    MHD_suspend_connection(rs->conn);
    rs->next_job = NULL;
    if (srv->qtail)
        srv->qtail->next_job = rs;
    else
        srv->qhead = rs;
    srv->qtail = rs;
    pthread_cond_signal(&srv->qcond);
    pthread_mutex_unlock(&srv->qlock);
    return MHD_YES;
}

/* The whole request is here: answer it, or queue it for a worker. Every
 * check of the route (method, readiness, parameters, the answer cache) is
 * api_prepare's. */
static enum MHD_Result on_complete(req_state *rs)
{
    if (rs->body_too_large) {
        char msg[64];
        snprintf(msg, sizeof msg, "the limit is %lld bytes", (long long)rs->srv->cfg->max_body);
        return reply_error(rs, 413, "request body too large: %s", msg);
    }
    if (!rs->route) {
        if (rs->method == API_GET || rs->method == API_HEAD) return serve_static(rs);
        rs->label = "not_found";
        char shown[64];
        api_quote(shown, sizeof shown, rs->path, strlen(rs->path));
        return reply_error(rs, 404, "no such route: %s (see /openapi.json)", shown);
    }
    if (rs->method == API_OPTIONS) return answer_options(rs);
    if (rs->method == API_POST && rs->body_len > 0 && (rs->route->methods & API_POST)) {
        const char *ct = MHD_lookup_connection_value(rs->conn, MHD_HEADER_KIND, "Content-Type");
        size_t n = strlen("application/json");
        if (!ct || strncasecmp(ct, "application/json", n) != 0 || (ct[n] && ct[n] != ';' && ct[n] != ' '))
            return reply_error(rs, 415, "a request body must be JSON, sent with %s",
                               "'Content-Type: application/json'");
    }
    api_request req;
    build_request(rs, &req);
    if (api_prepare(rs->srv->svc, rs->route, &req, &rs->call, &rs->res) == API_COMPUTE) return enqueue(rs);
    return queue_api_response(rs);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size,
                                  void **req_cls)
{
    req_state *rs = *req_cls;
    (void)cls;
    (void)c;
    (void)url;
    (void)version;
    if (!rs || !rs->raw) return MHD_NO; /* out of memory in on_uri */
    switch (rs->phase) {
    case PH_NEW: return on_headers(rs, method);
    case PH_BODY: return *upload_size ? on_body(rs, upload, upload_size) : on_complete(rs);
    case PH_QUEUED: return queue_api_response(rs); /* resumed by a worker */
    default: return MHD_YES;
    }
}

static void log_line(req_state *rs, double dt)
{
    char target[256];
    size_t n = rs->raw_len < 200 ? rs->raw_len : 200, o = 0;
    for (size_t i = 0; i < n && o + 5 < sizeof target; i++) {
        unsigned char ch = (unsigned char)rs->raw[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '"')
            o += (size_t)snprintf(target + o, sizeof target - o, "\\x%02x", ch);
        else
            target[o++] = (char)ch;
    }
    target[o] = '\0';
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(rs->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char addr[INET6_ADDRSTRLEN] = "-";
    if (ci && ci->client_addr) {
        if (ci->client_addr->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, addr, sizeof addr);
        else if (ci->client_addr->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, addr,
                      sizeof addr);
    }
    static const char *mn[] = {"?", "GET", "POST", "?", "HEAD", "?", "?", "?", "OPTIONS"};
    const char *m = rs->method > 0 && rs->method <= 8 ? mn[rs->method] : "OTHER";
    time_t t = time(NULL);
    struct tm tm;
    char ts[32];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s \"%s %s%s\" %d %zu %.2fms%s\n", ts, addr, m, target,
            rs->raw_len > 200 ? "..." : "", rs->status, rs->sent_bytes, dt * 1e3,
            rs->cache_hit ? " cache=hit" : "");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *srv = cls;
    req_state *rs = *req_cls;
    (void)c;
    if (!rs) return;
    double dt = tw_now() - rs->t0;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && rs->phase != PH_ANSWERED) rs->status = 499;
    gconn_phase_set(srv->guard, rs->gc, GC_IDLE, NULL);
    metrics_request_done(rs->label, rs->status, dt);
    if (srv->cfg->access_log) log_line(rs, dt);
    api_response_free(&rs->res);
    free_query(rs);
    free(rs->path);
    free(rs->body);
    free(rs->raw);
    free(rs);
    *req_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    fputs("twd: http: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* libmicrohttpd took over a connection from the guard, or closed one. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ad = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct sockaddr_storage none = {0};
        *socket_context = fd ? gconn_open(srv->guard, fd->connect_fd,
                                          ad && ad->client_addr ? ad->client_addr : (struct sockaddr *)&none)
                             : NULL;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        gconn_close(srv->guard, *socket_context);
        *socket_context = NULL;
    }
}

/* ---------- life cycle ---------- */

/* A listening, non-blocking socket on cfg's address and port; the bound port
 * in *port. -1 with a message in err. */
static int listen_socket(const twd_config *cfg, int *port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    if (inet_pton(AF_INET, cfg->listen, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)cfg->port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, cfg->listen, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)cfg->port);
        len = sizeof *s6;
    } else {
        snprintf(err, errlen, "listen address '%s' is not an IPv4 or IPv6 address", cfg->listen);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd >= 0 && ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%lld (%s)", cfg->listen, (long long)cfg->port,
                 strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = ntohs(ss.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port);
    return fd;
}

http_server *http_start(api_service *svc, const twd_config *cfg, char *err, size_t errlen)
{
    http_server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->svc = svc;
    srv->cfg = cfg;
    if (!realpath(cfg->static_dir, srv->static_root)) {
        tw_log("warning: static_dir %s: %s; the page will not be served", cfg->static_dir, strerror(errno));
        srv->static_root[0] = '\0';
    }
    pthread_mutex_init(&srv->qlock, NULL);
    srv->blas_budget = openblas_get_num_threads();
    pthread_cond_init(&srv->qcond, NULL);
    if (!(srv->statics = static_cache_new((size_t)64 << 20))) {
        snprintf(err, errlen, "out of memory");
        http_stop(srv);
        return NULL;
    }
    int lfd = listen_socket(cfg, &srv->port, err, errlen);
    if (lfd < 0) {
        http_stop(srv);
        return NULL;
    }
    /* The connection's memory pool holds the request line and headers: keep it
     * above max_url so that our own 413 (JSON) answers long targets. */
    size_t pool = (size_t)cfg->max_url * 2 + 65536;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_NO_LISTEN_SOCKET;
    srv->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(cfg->max_connections + cfg->max_connections / 4 + 16), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
        srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_END);
    guard_settings gs = {
        .max_target = (size_t)cfg->max_url,
        .max_head = (size_t)cfg->max_url + 32768, /* within the memory pool above */
        .max_connections = (size_t)cfg->max_connections,
        .max_pending = (size_t)cfg->max_pending,
        .max_per_ip = (size_t)cfg->max_connections_per_ip,
        .first_byte_timeout = (double)cfg->first_byte_timeout,
        .header_timeout = (double)cfg->header_timeout,
        .body_timeout = (double)cfg->body_timeout,
        .idle_timeout = (double)cfg->timeout,
    };
    if (!srv->d) {
        snprintf(err, errlen, "cannot start the HTTP server");
        close(lfd);
        http_stop(srv);
        return NULL;
    }
    if (!(srv->guard = guard_start(lfd, srv->d, &gs, err, errlen))) {
        close(lfd);
        http_stop(srv);
        return NULL;
    }
    srv->n_workers = (size_t)cfg->workers;
    srv->workers = calloc(srv->n_workers, sizeof *srv->workers);
    for (size_t i = 0; srv->workers && i < srv->n_workers; i++)
        if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
            srv->n_workers = i;
            break;
        }
    if (!srv->workers || srv->n_workers == 0) {
        snprintf(err, errlen, "cannot start worker threads");
        http_stop(srv);
        return NULL;
    }
    pthread_mutex_lock(&hurry_lock);
    hurry_srv = srv;
    pthread_mutex_unlock(&hurry_lock);
    return srv;
}

int http_port(const http_server *s) { return s->port; }

void http_guard_stats(http_server *srv, guard_stats *st)
{
    memset(st, 0, sizeof *st);
    if (srv && srv->guard) guard_get_stats(srv->guard, st);
}

void http_hurry(void)
{
    pthread_mutex_lock(&hurry_lock);
    http_server *srv = hurry_srv;
    if (srv) {
        atomic_store(&srv->hurried, true);
        if (srv->guard) guard_cancel_all(srv->guard);
    }
    pthread_mutex_unlock(&hurry_lock);
}

void http_stop(http_server *srv)
{
    if (!srv) return;
    /* No new connections; queued jobs are answered 503 by the workers; the
     * running ones finish. */
    guard_stop(srv->guard);
    pthread_mutex_lock(&srv->qlock);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->qcond);
    pthread_mutex_unlock(&srv->qlock);
    for (size_t i = 0; srv->workers && i < srv->n_workers; i++) pthread_join(srv->workers[i], NULL);
    /* Let the polling threads send the answers of the connections just resumed. */
    for (int i = 0; srv->d && i < 50; i++) {
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!di || di->num_connections == 0) break;
        usleep(10000);
    }
    if (srv->d) MHD_stop_daemon(srv->d);
    pthread_mutex_lock(&hurry_lock);
    if (hurry_srv == srv) hurry_srv = NULL;
    pthread_mutex_unlock(&hurry_lock);
    guard_free(srv->guard);
    static_cache_free(srv->statics);
    free(srv->workers);
    free(srv->clients);
    pthread_mutex_destroy(&srv->qlock);
    pthread_cond_destroy(&srv->qcond);
    free(srv);
}
