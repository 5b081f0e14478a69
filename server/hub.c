#include "server/hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fs.h"

static const char *const files[] = {"config.json", "vocab.json", "merges.txt", "model.safetensors"};
#define N_FILES (sizeof files / sizeof files[0])

typedef struct {
    char etag[128]; /* X-Linked-Etag (sha256 of LFS files), unquoted */
    long long size; /* X-Linked-Size or Content-Length, -1 unknown */
} remote_info;

typedef struct {
    const char *file;
    hub_progress_fn progress;
    void *ctx;
    curl_off_t already; /* bytes present before this transfer */
    time_t last;
    int last_pct;
} xfer;

int hub_complete(const char *dest)
{
    char p[4096];
    return fs_path(p, sizeof p, "%s/.complete", dest) == 0 && access(p, F_OK) == 0;
}

static size_t on_header(char *b, size_t sz, size_t n, void *ud)
{
    remote_info *ri = ud;
    size_t len = sz * n;
    char line[512];
    size_t k = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, b, k);
    line[k] = '\0';
    while (k && isspace((unsigned char)line[k - 1])) line[--k] = '\0';
    char *colon = strchr(line, ':');
    if (!colon) return len;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ') v++;
    if (strcasecmp(line, "x-linked-etag") == 0) {
        if (*v == '"') v++;
        snprintf(ri->etag, sizeof ri->etag, "%s", v);
        char *q = strchr(ri->etag, '"');
        if (q) *q = '\0';
    } else if (strcasecmp(line, "x-linked-size") == 0) {
        ri->size = atoll(v);
    }
    return len;
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

static CURL *new_handle(const char *url, long connect_timeout, char *ebuf)
{
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect_timeout);
    /* a stalled transfer (under 1 kB/s for 30 s) is abandoned, to be resumed */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "twd/0.1 (traveling-words daemon)");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    return h;
}

/* HEAD of a file: the size and hash the hub announces. The hub answers a
 * resolve URL of an LFS file with a redirect carrying X-Linked-* headers, so
 * redirects are not followed here. `total` bounds the whole request
 * (resolving, connecting, TLS, the answer), in seconds. */
static int head_info(const char *url, long timeout, long total, remote_info *ri, char *err, size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    CURL *h = new_handle(url, timeout, ebuf);
    if (!h) {
        snprintf(err, errlen, "curl init failed");
        return -1;
    }
    ri->etag[0] = '\0';
    ri->size = -1;
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, total);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, ri);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK && ri->size < 0 && code == 200) {
        curl_off_t cl = -1;
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        ri->size = cl;
    }
    curl_easy_cleanup(h);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return -1;
    }
    if (code >= 400) {
        snprintf(err, errlen, "%s: HTTP %ld", url, code);
        return -1;
    }
    return 0;
}

static int sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    static unsigned char buf[1 << 20];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(c, buf, n) == 1;
    unsigned char md[32];
    unsigned int mdl = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, md, &mdl) == 1 && mdl == 32;
    EVP_MD_CTX_free(c);
    fclose(f);
    if (!ok) return -1;
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    hex[64] = '\0';
    return 0;
}

static int is_sha256(const char *s)
{
    if (strlen(s) != 64) return 0;
    for (const char *p = s; *p; p++)
        if (!isxdigit((unsigned char)*p)) return 0;
    return 1;
}

static int fetch_one(const char *url, const char *part, const char *file, long timeout, const remote_info *ri,
                     hub_progress_fn progress, void *ctx, char *err, size_t errlen)
{
    struct stat st;
    curl_off_t have = stat(part, &st) == 0 ? (curl_off_t)st.st_size : 0;
    if (ri->size >= 0 && have == ri->size) return 0; /* complete from an earlier run */
    if (ri->size >= 0 && have > ri->size) have = 0;  /* stale: start again */
    FILE *f = fopen(part, have ? "ab" : "wb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", part, strerror(errno));
        return -1;
    }
    char ebuf[CURL_ERROR_SIZE] = "";
    CURL *h = new_handle(url, timeout, ebuf);
    if (!h) {
        fclose(f);
        snprintf(err, errlen, "curl init failed");
        return -1;
    }
    xfer x = {file, progress, ctx, have, 0, -1};
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, have);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &x);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_cleanup(h);
    if (fclose(f) != 0 && rc == CURLE_OK) {
        snprintf(err, errlen, "%s: %s", part, strerror(errno));
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s (partial download kept for resuming)", url,
                 ebuf[0] ? ebuf : curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

int hub_fetch(const char *base_url, const char *repo, const char *dest, long timeout,
              hub_progress_fn progress, void *ctx, char *err, size_t errlen)
{
    char partial[4096], url[4096], part[4096], final[4096];
    if (fs_path(partial, sizeof partial, "%s/.partial", dest) != 0 || fs_mkdir_p(partial) != 0) {
        snprintf(err, errlen, "%.1000s/.partial: %s", dest, strerror(errno));
        return -1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = 0;
    for (size_t i = 0; i < N_FILES && rc == 0; i++) {
        if (fs_path(url, sizeof url, "%s/%s/resolve/main/%s", base_url, repo, files[i]) != 0 ||
            fs_path(part, sizeof part, "%s/%s", partial, files[i]) != 0) {
            snprintf(err, errlen, "hub URL or cache path too long");
            rc = -1;
            break;
        }
        /* The first request decides whether the hub can be reached and is
         * answering: all of it, not only the connection, fits in the
         * timeout, so a hub that accepts and then stalls costs no more. Once
         * it has answered, the others get three times as long. */
        remote_info ri;
        if (head_info(url, timeout, i == 0 ? timeout : timeout * 3, &ri, err, errlen) != 0) {
            rc = -1;
            break;
        }
        if (fetch_one(url, part, files[i], timeout, &ri, progress, ctx, err, errlen) != 0) {
            rc = -1;
            break;
        }
        struct stat st;
        if (stat(part, &st) != 0 || (ri.size >= 0 && st.st_size != ri.size)) {
            snprintf(err, errlen, "%s: size %lld, the hub announced %lld", part, (long long)st.st_size,
                     ri.size);
            unlink(part);
            rc = -1;
            break;
        }
        if (is_sha256(ri.etag)) {
            char hex[65];
            if (progress) {
                char s[256];
                snprintf(s, sizeof s, "verifying %s", files[i]);
                progress(ctx, s);
            }
            if (sha256_file(part, hex) != 0 || strcasecmp(hex, ri.etag) != 0) {
                snprintf(err, errlen, "%s: SHA-256 %s does not match the hub's %s; removed", part, hex,
                         ri.etag);
                unlink(part);
                rc = -1;
                break;
            }
        }
    }
    if (rc == 0) {
        for (size_t i = 0; i < N_FILES && rc == 0; i++) {
            if (fs_path(part, sizeof part, "%s/%s", partial, files[i]) != 0 ||
                fs_path(final, sizeof final, "%s/%s", dest, files[i]) != 0 || rename(part, final) != 0) {
                snprintf(err, errlen, "%s: %s", final, strerror(errno));
                rc = -1;
            }
        }
        FILE *f =
            rc == 0 && fs_path(final, sizeof final, "%s/.complete", dest) == 0 ? fopen(final, "w") : NULL;
        if (f) {
            fprintf(f, "%s/%s\n", base_url, repo);
            fclose(f);
            rmdir(partial);
        } else if (rc == 0) {
            snprintf(err, errlen, "%s: %s", final, strerror(errno));
            rc = -1;
        }
    }
    curl_global_cleanup();
    return rc;
}
