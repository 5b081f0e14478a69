/* Hub downloads into the Hugging Face cache layout (hub.h, docs/HUB.md).
 *
 * One hub_fetch: HEAD requests learn each file's commit, etag and size
 * (the first one, config.json at the revision asked for, also decides
 * whether the hub is there, within `timeout`; the others ask for the commit
 * it named, so that every file comes from one commit even when the branch
 * moves meanwhile); then each blob is found in the cache or downloaded into
 * blobs/<etag>.incomplete, verified, and renamed into place; then the
 * snapshot's symlinks; then refs/<revision>. */
#include "server/hub.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fs.h"

#define PATH_N     4096
#define SERVER_MAX 128 /* longest etag or commit taken from a server */

/* ---- names that become paths ---- */

static int is_word(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_name(int c) { return is_word(c) || c == '.' || c == '-'; }

static int is_hex(const char *s, size_t len)
{
    if (strlen(s) != len) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

/* One part of a repo id (org or name), s[0..len). */
static int valid_repo_part(const char *s, size_t len)
{
    if (len == 0 || len > 96 || !is_word(s[0]) || !is_word(s[len - 1])) return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_name(s[i])) return 0;
        if (i && (s[i] == '-' || s[i] == '.') && s[i - 1] == s[i]) return 0; /* "--", ".." */
    }
    return 1;
}

/* "org/name" or "name" -> "models--org--name" / "models--name". 0 or -1. */
static int repo_folder(const char *repo, char *out, size_t n)
{
    if (!repo) return -1;
    const char *slash = strchr(repo, '/');
    if (slash) {
        size_t ol = (size_t)(slash - repo);
        if (!valid_repo_part(repo, ol) || !valid_repo_part(slash + 1, strlen(slash + 1))) return -1;
        return fs_path(out, n, "models--%.*s--%s", (int)ol, repo, slash + 1);
    }
    if (!valid_repo_part(repo, strlen(repo))) return -1;
    return fs_path(out, n, "models--%s", repo);
}

static int valid_revision(const char *r)
{
    size_t len = strlen(r);
    if (len == 0 || len > 255 || r[0] == '/' || r[0] == '.' || r[len - 1] == '/') return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_name(r[i]) && r[i] != '/') return 0;
        if (i && r[i - 1] == '/' && (r[i] == '/' || r[i] == '.'))
            return 0; /* "//", or a part beginning with "." */
        if (i && r[i - 1] == '.' && r[i] == '.') return 0;
    }
    return 1;
}

/* An etag or commit a server sent, used as a file or folder name. */
static int valid_server_name(const char *s)
{
    size_t len = strlen(s);
    static const char inc[] = ".incomplete";
    if (len == 0 || len > SERVER_MAX || !is_word(s[0])) return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_name(s[i]) || (i && s[i] == '.' && s[i - 1] == '.')) return 0;
    return !(len >= sizeof inc - 1 && strcmp(s + len - (sizeof inc - 1), inc) == 0);
}

static const char *default_rev(const char *revision) { return revision && *revision ? revision : "main"; }

/* A number for temporary names, unique across the threads of this process
 * (the pid tells processes apart). */
static unsigned long next_tmp(void)
{
    static _Atomic unsigned long seq;
    return ++seq;
}

/* ---- files and hashes ---- */

static int snapshot_complete(const char *dir)
{
    char a[PATH_N], b[PATH_N];
    if (fs_join(a, sizeof a, dir, "config.json") != 0 || !fs_is_regular(a)) return 0;
    if (fs_join(a, sizeof a, dir, "model.safetensors") != 0 || !fs_is_regular(a)) return 0;
    static const char *const pairs[2][2] = {{"vocab.json", "merges.txt"}, {"encoder.json", "vocab.bpe"}};
    for (int i = 0; i < 2; i++)
        if (fs_join(a, sizeof a, dir, pairs[i][0]) == 0 && fs_join(b, sizeof b, dir, pairs[i][1]) == 0 &&
            fs_is_regular(a) && fs_is_regular(b))
            return 1;
    return 0;
}

/* Hex digest of a file with `md`; `git` prefixes "blob <size>\0", which makes
 * it git's blob hash with SHA-1. 0 or -1. */
static int hash_file(const char *path, const EVP_MD *md, int git, char *hex, size_t hexlen)
{
    FILE *f = fopen(path, "rbe");
    if (!f) return -1;
    struct stat st;
    unsigned char *buf = malloc(1 << 20);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = buf && c && fstat(fileno(f), &st) == 0 && EVP_DigestInit_ex(c, md, NULL) == 1;
    if (ok && git) {
        char head[64];
        int hl = snprintf(head, sizeof head, "blob %lld", (long long)st.st_size);
        ok = EVP_DigestUpdate(c, head, (size_t)hl + 1) == 1; /* with the NUL */
    }
    size_t n;
    while (ok && (n = fread(buf, 1, 1 << 20, f)) > 0) ok = EVP_DigestUpdate(c, buf, n) == 1;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, d, &dl) == 1 && 2 * (size_t)dl < hexlen;
    EVP_MD_CTX_free(c);
    free(buf);
    fclose(f);
    if (!ok) return -1;
    for (unsigned int i = 0; i < dl; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return 0;
}

/* Reads a ref: 1 with the commit in out, 0 when there is none, -1 when it
 * cannot be read or holds no usable name. */
static int read_ref(const char *path, char *out, size_t n)
{
    char e[256];
    size_t len;
    if (access(path, F_OK) != 0 && errno == ENOENT) return 0;
    char *s = fs_read_file(path, 1024, &len, e, sizeof e);
    if (!s) return -1;
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ')) s[--len] = '\0';
    int ok = valid_server_name(s) && fs_path(out, n, "%s", s) == 0;
    free(s);
    return ok ? 1 : -1;
}

/* ---- the public look-ups ---- */

int hub_cached_snapshot(const char *cache_root, const char *repo, const char *revision, char *snapshot_dir,
                        size_t n, char *commit, size_t cn)
{
    const char *rev = default_rev(revision);
    char folder[256], dir[PATH_N], p[PATH_N], c[SERVER_MAX + 1];
    if (!cache_root || !*cache_root || repo_folder(repo, folder, sizeof folder) != 0 || !valid_revision(rev))
        return -1;
    if (fs_path(dir, sizeof dir, "%s/%s", cache_root, folder) != 0 ||
        fs_path(p, sizeof p, "%s/refs/%s", dir, rev) != 0)
        return -1;
    int r = read_ref(p, c, sizeof c);
    if (r < 0) return -1;
    if (r == 0) {
        if (!is_hex(rev, 40) || fs_path(p, sizeof p, "%s/snapshots/%s", dir, rev) != 0 || !fs_is_dir(p))
            return 0;
        snprintf(c, sizeof c, "%s", rev);
    }
    if (fs_path(p, sizeof p, "%s/snapshots/%s", dir, c) != 0) return -1;
    if (snapshot_dir && fs_path(snapshot_dir, n, "%s", p) != 0) return -1;
    if (commit && fs_path(commit, cn, "%s", c) != 0) return -1;
    return fs_is_dir(p) && snapshot_complete(p);
}

int hub_cache_root(char *out, size_t n)
{
    const char *v;
    const char *home = getenv("HOME");
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
    }
    const char *base, *tail;
    if ((v = getenv("HF_HUB_CACHE")) && *v)
        base = v, tail = "";
    else if ((v = getenv("HUGGINGFACE_HUB_CACHE")) && *v)
        base = v, tail = "";
    else if ((v = getenv("HF_HOME")) && *v)
        base = v, tail = "/hub";
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        base = v, tail = "/huggingface/hub";
    else if (home)
        base = "~", tail = "/.cache/huggingface/hub";
    else
        return -1;
    if (base[0] == '~' && (base[1] == '/' || base[1] == '\0')) {
        if (!home) return -1;
        return fs_path(out, n, "%s%s%s", home, base + 1, tail);
    }
    return fs_path(out, n, "%s%s", base, tail);
}

/* "models--org--name" (or "models--name") -> "org/name". 0 or -1. */
static int repo_of_folder(const char *base, char *repo, size_t n)
{
    if (strncmp(base, "models--", 8) != 0) return -1;
    const char *s = base + 8, *sep = strstr(s, "--");
    char folder[256];
    int r = sep ? fs_path(repo, n, "%.*s/%s", (int)(sep - s), s, sep + 2) : fs_path(repo, n, "%s", s);
    if (r != 0 || repo_folder(repo, folder, sizeof folder) != 0 || strcmp(folder, base) != 0) return -1;
    return 0;
}

int hub_repo_of_path(const char *path, char *repo, size_t n, char *snapshot_dir, size_t m, char *err,
                     size_t errlen)
{
    char real[PATH_MAX], p[PATH_N], c[SERVER_MAX + 1];
    if (!path || !realpath(path, real) || !fs_is_dir(real)) return 0;
    char *base = strrchr(real, '/');
    if (!base || !base[1]) return 0;
    base++;
    if (repo_of_folder(base, repo, n) == 0) { /* a repo folder */
        if (fs_path(p, sizeof p, "%s/refs/main", real) != 0) return 0;
        int r = read_ref(p, c, sizeof c);
        if (r < 0) {
            tw_set_err(err, errlen, "%s: unreadable or not a commit", p);
            return -1;
        }
        if (r == 0) { /* no refs/main: the only snapshot, if there is one */
            if (fs_path(p, sizeof p, "%s/snapshots", real) != 0) return 0;
            DIR *d = opendir(p);
            int count = 0;
            struct dirent *e;
            while (d && (e = readdir(d)))
                if (e->d_name[0] != '.' && valid_server_name(e->d_name) && count++ == 0)
                    memcpy(c, e->d_name, strlen(e->d_name) + 1); /* valid: <= SERVER_MAX */
            if (d) closedir(d);
            if (count != 1) {
                tw_set_err(err, errlen, "%s: no refs/main, and %d snapshots to choose from", real, count);
                return -1;
            }
        }
        if (fs_path(p, sizeof p, "%s/snapshots/%s", real, c) != 0 || !fs_is_dir(p)) {
            tw_set_err(err, errlen, "%s: refs/main names %s, which has no snapshot folder", real, c);
            return -1;
        }
        if (fs_path(snapshot_dir, m, "%s", p) != 0) {
            tw_set_err(err, errlen, "%s: path too long", p);
            return -1;
        }
        return 1;
    }
    /* a snapshot folder: <repo folder>/snapshots/<commit> */
    base[-1] = '\0';
    char *snaps = strrchr(real, '/');
    if (!snaps || strcmp(snaps + 1, "snapshots") != 0) return 0;
    *snaps = '\0';
    char *rf = strrchr(real, '/');
    if (!rf || repo_of_folder(rf + 1, repo, n) != 0 || !valid_server_name(base)) return 0;
    *snaps = '/';
    base[-1] = '/';
    if (fs_path(snapshot_dir, m, "%s", real) != 0) {
        tw_set_err(err, errlen, "%s: path too long", real);
        return -1;
    }
    return 1;
}

/* ---- HTTP ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct {
    long long linked_size;
    char etag[SERVER_MAX + 2], linked_etag[SERVER_MAX + 2], commit[SERVER_MAX + 2];
} answer;

/* Copies a header value into dst[n], without W/ and quotes; one that does not
 * fit becomes "!", which no name check accepts. */
static void take_value(char *dst, size_t n, const char *v, int etag)
{
    if (etag && strncmp(v, "W/", 2) == 0) v += 2;
    size_t len = strlen(v);
    if (etag && len >= 2 && v[0] == '"' && v[len - 1] == '"') v++, len -= 2;
    if (len >= n) v = "!", len = 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static size_t on_header(char *b, size_t sz, size_t nm, void *ud)
{
    answer *a = ud;
    size_t len = sz * nm;
    char line[512];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, b, k);
    line[k] = '\0';
    while (k && (line[k - 1] == '\r' || line[k - 1] == '\n' || line[k - 1] == ' ')) line[--k] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new answer (after a 100 Continue, say) */
        memset(a, 0, sizeof *a);
        a->linked_size = -1;
        return len;
    }
    char *colon = strchr(line, ':');
    if (!colon) return len;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    if (len > sizeof line - 1) v = "!"; /* a value too long to be a name */
    if (strcasecmp(line, "etag") == 0)
        take_value(a->etag, sizeof a->etag, v, 1);
    else if (strcasecmp(line, "x-linked-etag") == 0)
        take_value(a->linked_etag, sizeof a->linked_etag, v, 1);
    else if (strcasecmp(line, "x-repo-commit") == 0)
        take_value(a->commit, sizeof a->commit, v, 0);
    else if (strcasecmp(line, "x-linked-size") == 0)
        a->linked_size = strtoll(v, NULL, 10);
    return len;
}

static CURL *new_handle(const char *url, long connect_timeout, char *ebuf)
{
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85 */
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    /* sizes and hashes are of the file itself, never of a compressed answer */
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "identity");
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect_timeout);
    /* a stalled transfer (under 1 kB/s for 30 s) is abandoned, to be resumed */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "twd/0.2 (traveling-words daemon)");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    return h;
}

/* What the hub says about one file. */
typedef struct {
    const char *name;
    char url[PATH_N];
    int found, lfs; /* found: not a 404; lfs: etag from X-Linked-Etag */
    long long size; /* X-Linked-Size or Content-Length, -1 unknown */
    char etag[SERVER_MAX + 2];
    char commit[SERVER_MAX + 2];
} remote;

/* HEAD of a resolve URL. The hub answers that of an LFS file with a redirect
 * to its storage that carries X-Linked-Size and X-Linked-Etag, so redirects
 * are followed by hand, only as long as an answer carries no X-Linked-Etag
 * (a renamed repo's redirect does not). `total` bounds all of it (resolving,
 * connecting, TLS, every answer), in seconds. 0 (f->found 0 for a 404), or -1
 * with one line in err. */
static int head_file(remote *f, long timeout, long total, char *err, size_t errlen)
{
    char url[PATH_N], ebuf[CURL_ERROR_SIZE];
    snprintf(url, sizeof url, "%s", f->url);
    f->found = f->lfs = 0;
    f->size = -1;
    f->etag[0] = f->commit[0] = '\0';
    time_t start = time(NULL);
    for (int hop = 0;; hop++) {
        ebuf[0] = '\0';
        CURL *h = new_handle(url, timeout, ebuf);
        if (!h) {
            tw_set_err(err, errlen, "curl init failed");
            return -1;
        }
        answer a = {.linked_size = -1};
        long left = total > 0 ? total - (long)(time(NULL) - start) : 0;
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(h, CURLOPT_FAILONERROR, 0L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, total > 0 ? (left > 0 ? left : 1) : 0L);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &a);
        CURLcode rc = curl_easy_perform(h);
        long code = 0;
        curl_off_t cl = -1;
        char *next = NULL;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &next);
        char nextbuf[PATH_N] = "";
        if (next) snprintf(nextbuf, sizeof nextbuf, "%s", next);
        curl_easy_cleanup(h);
        if (rc != CURLE_OK) {
            tw_set_err(err, errlen, "%s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
            return -1;
        }
        if (!f->commit[0] && a.commit[0]) snprintf(f->commit, sizeof f->commit, "%s", a.commit);
        if (code >= 300 && code < 400 && !a.linked_etag[0]) {
            if (!nextbuf[0] || hop >= 5) {
                tw_set_err(err, errlen, "%s: HTTP %ld %s", url, code,
                           nextbuf[0] ? "(too many redirects)" : "without a Location");
                return -1;
            }
            snprintf(url, sizeof url, "%s", nextbuf);
            continue;
        }
        if (code == 404) return 0;
        if (code >= 400 || code < 200) {
            tw_set_err(err, errlen, "%s: HTTP %ld", url, code);
            return -1;
        }
        f->found = 1;
        f->lfs = a.linked_etag[0] != '\0';
        snprintf(f->etag, sizeof f->etag, "%s", f->lfs ? a.linked_etag : a.etag);
        f->size = a.linked_size >= 0 ? a.linked_size : (code == 200 ? (long long)cl : -1);
        return 0;
    }
}

typedef struct {
    const char *file;
    hub_progress_fn progress;
    void *ctx;
    FILE *out;
    curl_off_t already; /* bytes present before this transfer */
    curl_off_t limit;   /* bytes this transfer may write, -1 unbounded */
    curl_off_t written;
    int too_long;
    time_t last;
    int last_pct;
} xfer;

static size_t on_write(char *p, size_t sz, size_t nm, void *ud)
{
    xfer *x = ud;
    size_t len = sz * nm;
    if (x->limit >= 0 && x->written + (curl_off_t)len > x->limit) {
        x->too_long = 1;
        return 0;
    }
    size_t w = fwrite(p, 1, len, x->out);
    x->written += (curl_off_t)w;
    return w;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ut, curl_off_t un)
{
    (void)ut;
    (void)un;
    xfer *x = ud;
    if (!x->progress || dltotal <= 0) return 0;
    curl_off_t total = dltotal + x->already, now = dlnow + x->already;
    int pct = (int)(100 * now / total);
    time_t t = time(NULL);
    if (pct == x->last_pct || (t == x->last && pct < 100)) return 0;
    x->last_pct = pct;
    x->last = t;
    char s[256];
    snprintf(s, sizeof s, "downloading %s: %d%% of %.1f MB", x->file, pct, (double)total / 1e6);
    x->progress(x->ctx, s);
    return 0;
}

static void say(hub_progress_fn progress, void *ctx, const char *verb, const char *file)
{
    if (!progress) return;
    char s[256];
    snprintf(s, sizeof s, "%s %s", verb, file);
    progress(ctx, s);
}

/* Downloads f into `part`, resuming what it holds. A server that does not
 * honour the Range (or says it is past the end) gets one fresh start. 0 when
 * the transfer ended well, -1 with one line in err (the partial kept). */
static int download(const remote *f, const char *part, long timeout, hub_progress_fn progress, void *ctx,
                    char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        struct stat st;
        int exists = stat(part, &st) == 0;
        curl_off_t have = exists ? (curl_off_t)st.st_size : 0;
        if (f->size >= 0 && have > f->size) have = 0, exists = 0; /* stale: start again */
        if (f->size >= 0 && have == f->size && exists) return 0;  /* complete from an earlier run */
        FILE *out = fopen(part, have ? "abe" : "wbe");
        if (!out) {
            tw_set_err(err, errlen, "%s: %s", part, strerror(errno));
            return -1;
        }
        char ebuf[CURL_ERROR_SIZE] = "";
        CURL *h = new_handle(f->url, timeout, ebuf);
        if (!h) {
            fclose(out);
            tw_set_err(err, errlen, "curl init failed");
            return -1;
        }
        xfer x = {f->name, progress, ctx, out, have, f->size >= 0 ? f->size - have : -1, 0, 0, 0, -1};
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, have);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
        CURLcode rc = curl_easy_perform(h);
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(h);
        int bad_close = fflush(out) != 0 || fsync(fileno(out)) != 0;
        bad_close |= fclose(out) != 0;
        if (x.too_long) {
            unlink(part);
            tw_set_err(err, errlen, "%s: the hub sends more than the %lld bytes it announced; removed",
                       f->url, f->size);
            return -1;
        }
        if (have > 0 && attempt == 0 &&
            (rc == CURLE_RANGE_ERROR || (rc == CURLE_HTTP_RETURNED_ERROR && code == 416))) {
            unlink(part);
            continue;
        }
        if (rc != CURLE_OK) {
            tw_set_err(err, errlen, "%s: %s (partial download kept for resuming)", f->url,
                       ebuf[0] ? ebuf : curl_easy_strerror(rc));
            return -1;
        }
        if (bad_close) {
            tw_set_err(err, errlen, "%s: %s", part, strerror(errno));
            return -1;
        }
        return 0;
    }
}

/* ---- the cache ---- */

typedef struct {
    const char *root, *folder; /* cache root, models--org--name */
    char dir[PATH_N];          /* root/folder */
    long timeout;
    hub_progress_fn progress;
    void *ctx;
} cache;

/* Whether `path` holds f's contents: a regular file of its size, with its
 * SHA-256 for an LFS file, and with its git blob hash when `git` (used for a
 * blob of another repo, which only the hash ties to this file). */
static int blob_matches(const cache *c, const remote *f, const char *path, int git)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (f->size >= 0 && st.st_size != f->size)) return 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (f->lfs && is_hex(f->etag, 64)) {
        say(c->progress, c->ctx, "verifying", f->name);
        return hash_file(path, EVP_sha256(), 0, hex, sizeof hex) == 0 && strcasecmp(hex, f->etag) == 0;
    }
    if (git) return hash_file(path, EVP_sha1(), 1, hex, sizeof hex) == 0 && strcasecmp(hex, f->etag) == 0;
    return 1;
}

/* The same content under blobs/<etag> of another models--* folder of the
 * cache, hard-linked (else copied) into `part`: 1, or 0 when there is none.
 * Only content-addressed etags qualify (SHA-256 of LFS files, git's SHA-1 of
 * the others), and only once the candidate's own hash confirms it. */
static int borrow_blob(const cache *c, const remote *f, const char *part)
{
    if (!(f->lfs ? is_hex(f->etag, 64) : is_hex(f->etag, 40))) return 0;
    DIR *d = opendir(c->root);
    if (!d) return 0;
    struct dirent *e;
    int done = 0;
    char cand[PATH_N];
    while (!done && (e = readdir(d))) {
        if (strncmp(e->d_name, "models--", 8) != 0 || strcmp(e->d_name, c->folder) == 0) continue;
        if (fs_path(cand, sizeof cand, "%s/%s/blobs/%s", c->root, e->d_name, f->etag) != 0) continue;
        if (!blob_matches(c, f, cand, !f->lfs)) continue;
        unlink(part);
        if (link(cand, part) == 0) {
            done = 1;
        } else { /* another file system, or no hard links: a copy still saves the download */
            FILE *in = fopen(cand, "rbe"), *out = in ? fopen(part, "wbe") : NULL;
            char buf[1 << 16];
            size_t k;
            int ok = in && out;
            while (ok && (k = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, k, out) == k;
            ok = ok && !ferror(in);
            if (in) fclose(in);
            if (out && fclose(out) != 0) ok = 0;
            done = ok && blob_matches(c, f, part, 0);
            if (!done) unlink(part);
        }
        if (done) {
            char s[512];
            snprintf(s, sizeof s, "%.100s: the same file is in %.300s", f->name, e->d_name);
            if (c->progress) c->progress(c->ctx, s);
        }
    }
    closedir(d);
    return done;
}

/* flock on <root>/.locks/<folder>/<etag>.lock, as huggingface_hub takes it;
 * waits up to the timeout for another downloader. The descriptor, or -1. */
static int lock_blob(const cache *c, const remote *f, char *err, size_t errlen)
{
    char dir[PATH_N], path[PATH_N];
    if (fs_path(dir, sizeof dir, "%s/.locks/%s", c->root, c->folder) != 0 ||
        fs_path(path, sizeof path, "%s/%s.lock", dir, f->etag) != 0 || fs_mkdir_p(dir) != 0) {
        tw_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    long waits = 10 * (c->timeout > 0 ? c->timeout : 3);
    for (long i = 0;; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) break;
        if (i >= waits) {
            errno = EWOULDBLOCK;
            break;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    tw_set_err(err, errlen, "%s: %s (another download of %s?)", path, strerror(errno), f->name);
    close(fd);
    return -1;
}

/* blobs/<etag> holding f: already there, borrowed from another repo of the
 * cache, or downloaded (resumed) and verified. 0, or -1 with one line. */
static int ensure_blob(const cache *c, const remote *f, char *err, size_t errlen)
{
    char blob[PATH_N], part[PATH_N];
    if (fs_path(blob, sizeof blob, "%s/blobs/%s", c->dir, f->etag) != 0 ||
        fs_path(part, sizeof part, "%s.incomplete", blob) != 0) {
        tw_set_err(err, errlen, "%s: path too long", c->dir);
        return -1;
    }
    if (blob_matches(c, f, blob, 0)) return 0;
    int lock = lock_blob(c, f, err, errlen);
    if (lock < 0) return -1;
    int rc = 0;
    if (blob_matches(c, f, blob, 0)) goto out; /* another process finished it meanwhile */
    if (!borrow_blob(c, f, part)) {
        if (download(f, part, c->timeout, c->progress, c->ctx, err, errlen) != 0) {
            rc = -1;
            goto out;
        }
        struct stat st;
        if (stat(part, &st) != 0) {
            tw_set_err(err, errlen, "%s: %s", part, strerror(errno));
            rc = -1;
            goto out;
        }
        if (f->size >= 0 && st.st_size != f->size) {
            tw_set_err(err, errlen, "%s: %lld bytes, the hub announced %lld; removed", part,
                       (long long)st.st_size, f->size);
            unlink(part);
            rc = -1;
            goto out;
        }
        if (f->lfs && is_hex(f->etag, 64)) {
            char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
            say(c->progress, c->ctx, "verifying", f->name);
            if (hash_file(part, EVP_sha256(), 0, hex, sizeof hex) != 0 || strcasecmp(hex, f->etag) != 0) {
                tw_set_err(err, errlen, "%s: SHA-256 %s does not match the hub's %s; removed", part,
                           hex[0] ? hex : "(unreadable)", f->etag);
                unlink(part);
                rc = -1;
                goto out;
            }
        }
    }
    if (rename(part, blob) != 0) {
        tw_set_err(err, errlen, "%s: %s", blob, strerror(errno));
        rc = -1;
    }
out:
    close(lock); /* releases the flock */
    return rc;
}

/* snap/<name> -> ../../blobs/<etag>, replacing whatever was there. */
static int link_snapshot(const char *snap, const remote *f, char *err, size_t errlen)
{
    char link_path[PATH_N], tmp[PATH_N], target[PATH_N], now[PATH_N];
    if (fs_path(link_path, sizeof link_path, "%s/%s", snap, f->name) != 0 ||
        fs_path(tmp, sizeof tmp, "%s/.%s.%ld.%lu.tmp", snap, f->name, (long)getpid(), next_tmp()) != 0 ||
        fs_path(target, sizeof target, "../../blobs/%s", f->etag) != 0) {
        tw_set_err(err, errlen, "%s: path too long", snap);
        return -1;
    }
    ssize_t k = readlink(link_path, now, sizeof now - 1);
    if (k >= 0) {
        now[k] = '\0';
        if (strcmp(now, target) == 0) return 0;
    }
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link_path) != 0) {
        tw_set_err(err, errlen, "%s: %s", link_path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* refs/<rev> = commit (no newline, as huggingface_hub writes it), replaced
 * atomically. */
static int write_ref(const char *dir, const char *rev, const char *commit, char *err, size_t errlen)
{
    char path[PATH_N], tmp[PATH_N + 64], now[SERVER_MAX + 1];
    if (fs_path(path, sizeof path, "%s/refs/%s", dir, rev) != 0) {
        tw_set_err(err, errlen, "%s: path too long", dir);
        return -1;
    }
    if (read_ref(path, now, sizeof now) == 1 && strcmp(now, commit) == 0) return 0;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    int made = fs_mkdir_p(path);
    int w = snprintf(tmp, sizeof tmp, "%s/.%s.%ld.%lu.tmp", path, slash + 1, (long)getpid(), next_tmp());
    *slash = '/';
    FILE *f = made == 0 && w > 0 && (size_t)w < sizeof tmp ? fopen(tmp, "we") : NULL;
    if (!f) {
        tw_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int bad = fputs(commit, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        tw_set_err(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* An empty .no_exist/<commit>/<name>: huggingface_hub's record that the file
 * is not in the repo at that commit. Best effort. */
static void mark_missing(const char *dir, const char *commit, const char *name)
{
    char p[PATH_N];
    if (fs_path(p, sizeof p, "%s/.no_exist/%s", dir, commit) != 0 || fs_mkdir_p(p) != 0) return;
    if (fs_path(p, sizeof p, "%s/.no_exist/%s/%s", dir, commit, name) != 0) return;
    int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
}

enum { F_CONFIG, F_MODEL, F_VOCAB, F_MERGES, F_ENCODER, F_BPE, N_FILES };
static const char *const file_names[N_FILES] = {"config.json", "model.safetensors", "vocab.json",
                                                "merges.txt",  "encoder.json",      "vocab.bpe"};

/* One hub_fetch: what is asked, what the hub answered, where it goes. */
typedef struct {
    const char *repo, *rev;
    char folder[256];            /* models--org--name */
    char base[PATH_N];           /* the hub's URL without a trailing '/' */
    char url_rev[3 * 256];       /* rev with its '/' encoded (a branch such as refs/pr/1) */
    const char *at;              /* the commit the hub named (X-Repo-Commit), or "" */
    char commit[SERVER_MAX + 2]; /* that commit, else rev: the snapshot's name */
    remote f[N_FILES];
    int want[4]; /* the files to keep: config, the tokenizer's two, the model */
    cache c;
    char *err;
    size_t errlen;
} fetch;

/* Checks the arguments and makes the cache's folders of the repo. */
static int fetch_start(fetch *q, const char *base_url, const char *cache_root)
{
    if (repo_folder(q->repo, q->folder, sizeof q->folder) != 0) {
        tw_set_err(q->err, q->errlen, "'%.300s' is not a repo id (org/name, each of [A-Za-z0-9._-])",
                   q->repo ? q->repo : "");
        return -1;
    }
    if (!valid_revision(q->rev)) {
        tw_set_err(q->err, q->errlen,
                   "'%.300s' is not a revision (a branch, tag or commit: [A-Za-z0-9._/-], no '..')", q->rev);
        return -1;
    }
    if (!cache_root || !*cache_root || !base_url || !*base_url) {
        tw_set_err(q->err, q->errlen, "hub_fetch: no cache folder or hub URL");
        return -1;
    }
    q->c.root = cache_root;
    q->c.folder = q->folder;
    if (fs_path(q->c.dir, sizeof q->c.dir, "%s/%s", cache_root, q->folder) != 0) {
        tw_set_err(q->err, q->errlen, "%.300s: path too long", cache_root);
        return -1;
    }
    static const char *const subs[] = {"blobs", "snapshots", "refs"};
    char p[PATH_N];
    for (size_t i = 0; i < 3; i++)
        if (fs_path(p, sizeof p, "%s/%s", q->c.dir, subs[i]) != 0 || fs_mkdir_p(p) != 0) {
            tw_set_err(q->err, q->errlen, "%s: %s", p, strerror(errno));
            return -1;
        }
    return 0;
}

/* The hub's URL without trailing '/', and the revision as a URL path part. */
static void fetch_urls(fetch *q, const char *base_url)
{
    size_t k = 0;
    for (const char *s = q->rev; *s; s++) {
        if (*s == '/') {
            memcpy(q->url_rev + k, "%2F", 3);
            k += 3;
        } else {
            q->url_rev[k++] = *s;
        }
    }
    q->url_rev[k] = '\0';
    size_t bl = strlen(base_url);
    while (bl && base_url[bl - 1] == '/') bl--;
    snprintf(q->base, sizeof q->base, "%.*s", (int)bl, base_url);
    for (int i = 0; i < N_FILES; i++) q->f[i].name = file_names[i];
}

/* The resolve URL of file i at revision (or commit) `at_rev`. */
static int file_url(fetch *q, int i, const char *at_rev)
{
    if (fs_path(q->f[i].url, sizeof q->f[i].url, "%s/%s/resolve/%s/%s", q->base, q->repo, at_rev,
                q->f[i].name) == 0)
        return 0;
    tw_set_err(q->err, q->errlen, "%.300s: URL too long", q->base);
    return -1;
}

/* config.json first, at the revision asked for: it decides whether the hub
 * answers at all (within `timeout`), and names the commit. */
static int resolve_commit(fetch *q)
{
    remote *cf = &q->f[F_CONFIG];
    if (file_url(q, F_CONFIG, q->url_rev) != 0) return -1;
    if (head_file(cf, q->c.timeout, q->c.timeout, q->err, q->errlen) != 0) return -1;
    if (!cf->found) {
        tw_set_err(q->err, q->errlen, "%s: not found (is %s a model repo with revision %s?)", cf->url,
                   q->repo, q->rev);
        return -1;
    }
    q->at = cf->commit;
    if (q->at[0] && !valid_server_name(q->at)) {
        tw_set_err(q->err, q->errlen, "%s: the X-Repo-Commit header is not a commit", cf->url);
        return -1;
    }
    if (!q->at[0] && strchr(q->rev, '/')) {
        tw_set_err(q->err, q->errlen,
                   "%s: no X-Repo-Commit header, and revision %s cannot name a snapshot folder", cf->url,
                   q->rev);
        return -1;
    }
    snprintf(q->commit, sizeof q->commit, "%s", q->at[0] ? q->at : q->rev);
    return 0;
}

/* The other files at that commit (or at the revision, from a mirror that
 * names none), each answer allowed three times as long; the tokenizer's
 * second pair only without the first. */
static int head_others(fetch *q)
{
    remote *f = q->f;
    for (int i = 1; i < N_FILES; i++) {
        if (file_url(q, i, q->at[0] ? q->commit : q->url_rev) != 0) return -1;
        if (i == F_MERGES && !f[F_VOCAB].found) continue;
        if (i >= F_ENCODER && f[F_VOCAB].found && f[F_MERGES].found) break;
        if (i == F_BPE && !f[F_ENCODER].found) break;
        if (head_file(&f[i], q->c.timeout, 3 * q->c.timeout, q->err, q->errlen) != 0) return -1;
        if (!f[i].found && q->at[0]) mark_missing(q->c.dir, q->commit, f[i].name);
    }
    return 0;
}

/* The four files to keep (q->want): the model, a tokenizer pair, each with
 * an ETag usable as a file name. */
static int choose_files(fetch *q)
{
    const remote *f = q->f;
    if (!f[F_MODEL].found) {
        tw_set_err(q->err, q->errlen, "%s: not found (twd loads safetensors checkpoints)", f[F_MODEL].url);
        return -1;
    }
    int tok = f[F_VOCAB].found && f[F_MERGES].found  ? F_VOCAB
              : f[F_ENCODER].found && f[F_BPE].found ? F_ENCODER
                                                     : -1;
    if (tok < 0) {
        tw_set_err(q->err, q->errlen,
                   "%s at %s has no tokenizer: neither vocab.json + merges.txt nor encoder.json + vocab.bpe",
                   q->repo, q->rev);
        return -1;
    }
    const int want[4] = {F_CONFIG, tok, tok + 1, F_MODEL};
    memcpy(q->want, want, sizeof want);
    for (size_t i = 0; i < 4; i++)
        if (!valid_server_name(f[want[i]].etag)) {
            tw_set_err(q->err, q->errlen, "%s: %s", f[want[i]].url,
                       f[want[i]].etag[0] ? "the ETag is not a usable file name"
                                          : "no ETag (not a Hugging Face hub?)");
            return -1;
        }
    return 0;
}

/* The blobs, the snapshot's links to them and, last, the ref, now that
 * everything it leads to is in place. The snapshot folder into snap. */
static int store_snapshot(fetch *q, char *snap, size_t n)
{
    if (fs_path(snap, n, "%s/snapshots/%s", q->c.dir, q->commit) != 0 || fs_mkdir_p(snap) != 0) {
        tw_set_err(q->err, q->errlen, "%s: %s", snap, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < 4; i++) {
        const remote *f = &q->f[q->want[i]];
        if (ensure_blob(&q->c, f, q->err, q->errlen) != 0 || link_snapshot(snap, f, q->err, q->errlen) != 0)
            return -1;
    }
    int pinned = is_hex(q->rev, 40) && strcmp(q->rev, q->commit) == 0;
    if (!pinned && write_ref(q->c.dir, q->rev, q->commit, q->err, q->errlen) != 0) return -1;
    return 0;
}

int hub_fetch(const char *base_url, const char *repo, const char *revision, const char *cache_root,
              long timeout, hub_progress_fn progress, void *ctx, char *snapshot_dir, size_t n, char *err,
              size_t errlen)
{
    fetch q = {.repo = repo,
               .rev = default_rev(revision),
               .c = {.timeout = timeout, .progress = progress, .ctx = ctx},
               .err = err,
               .errlen = errlen};
    char snap[PATH_N];
    int rc = fetch_start(&q, base_url, cache_root);
    if (rc == 0) {
        pthread_once(&curl_once, curl_init_once);
        fetch_urls(&q, base_url);
        rc = resolve_commit(&q);
    }
    if (rc == 0) rc = head_others(&q);
    if (rc == 0) rc = choose_files(&q);
    if (rc == 0) rc = store_snapshot(&q, snap, sizeof snap);
    if (rc == 0 && snapshot_dir && fs_path(snapshot_dir, n, "%s", snap) != 0) {
        tw_set_err(err, errlen, "%s: path too long", snap);
        rc = -1;
    }
    return rc;
}
