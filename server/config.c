#include "server/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"

#define OFF(f)          offsetof(twd_config, f)
#define SZ(f)           sizeof(((twd_config *)0)->f)
#define STR(f)          CFG_STRING, OFF(f), SZ(f), 0, 0
#define INT(f, lo, hi)  CFG_INT, OFF(f), 0, lo, hi
#define SIZE(f, lo, hi) CFG_SIZE, OFF(f), 0, lo, hi
#define BOOL(f)         CFG_BOOL, OFF(f), 0, 0, 1

/* The one table of options: name, type, bounds, default, runtime, doc. */
const cfg_option cfg_options[] = {
    {"listen", STR(listen), "127.0.0.1", false,
     "Address to listen on. Loopback by default; the service has no authentication."},
    {"port", INT(port, 0, 65535), "8080", false, "TCP port (0: any free port, printed at start)."},
    {"model", STR(model), "", false,
     "Hugging Face GPT-2 snapshot folder (config.json, model.safetensors, vocab.json + merges.txt). "
     "Empty: the cached openai-community/gpt2, downloaded on first start when the hub is reachable, "
     "else the built-in synthetic demo model."},
    {"cache_dir", STR(cache_dir), "", false,
     "Folder for the downloaded model, the demo model and fitted UMAP layouts. "
     "Empty: $XDG_CACHE_HOME/twd or ~/.cache/twd."},
    {"static_dir", STR(static_dir), "", false,
     "Folder of the web page served under /. Empty: the static/ folder of the source tree."},
    {"words_file", STR(words_file), "", false,
     "Default word list of /probe, one word per line. Empty: config/common_nouns.txt of the source tree "
     "(the paper's 100 most common English nouns)."},
    {"hub_url", STR(hub_url), "https://huggingface.co", false,
     "Base URL of the Hugging Face hub used for the default model."},
    {"hub_repo", STR(hub_repo), "openai-community/gpt2", false, "Hub repository of the default model."},
    {"fetch_timeout", INT(fetch_timeout, 1, 60), "3", false,
     "Seconds to wait for the hub to answer before falling back to the demo model."},
    {"fetch", BOOL(fetch), "true", false, "Try to download the default model when it is not cached."},
    {"threads", INT(threads, 1, 256), "8", false,
     "HTTP threads. They never compute analyses, so /health answers while work runs."},
    {"workers", INT(workers, 1, 64), "2", false, "Threads that compute analyses concurrently."},
    {"blas_threads", INT(blas_threads, 0, 64), "0", false,
     "OpenBLAS threads used by one computation; 0: one per core. Concurrent computations share them."},
    {"blas_coretype", STR(blas_coretype), "auto", false,
     "OpenBLAS kernel family. auto: when OpenBLAS does not recognise the CPU and would run its generic "
     "kernels on an AVX2/AVX-512 machine, restart once with OPENBLAS_CORETYPE set (about 3x faster GEMM); "
     "off: leave OpenBLAS alone; or a name such as Haswell or SkylakeX. An OPENBLAS_CORETYPE already in "
     "the environment always wins."},
    {"max_body", SIZE(max_body, 1024, 1073741824), "1048576", false,
     "Largest request body in bytes; larger bodies get 413."},
    {"max_url", SIZE(max_url, 256, 1048576), "65536", false,
     "Longest request target (path and query) in bytes; longer ones get 413."},
    {"max_text", SIZE(max_text, 1, 1048576), "16384", false, "Longest text parameter in bytes."},
    {"max_tokens", INT(max_tokens, 1, 1048576), "1024", false,
     "Most tokens in a phrase (also capped by the model's n_ctx)."},
    {"max_words", INT(max_words, 1, 100000), "1000", false, "Most words in a probe word list."},
    {"max_k", INT(max_k, 1, 100000), "100", false, "Largest k (tokens per list)."},
    {"max_top", INT(max_top, 1, 100000), "64", false, "Most SVD directions reported per head."},
    {"max_answer_tokens", INT(max_answer_tokens, 1000, 100000000), "300000", false,
     "Most tokens one answer may list (e.g. words x heads x k); larger requests get 400 and are not "
     "computed."},
    {"max_connections", INT(max_connections, 1, 100000), "256", false, "Simultaneous connections."},
    {"timeout", INT(timeout, 1, 86400), "60", false, "Seconds before an idle connection is closed."},
    {"cache_mb", SIZE(cache_mb, 0, 1048576), "2048", false,
     "Budget in MiB for cached intermediate matrices (e.g. LN_b(E) per block)."},
    {"answer_cache_mb", SIZE(answer_cache_mb, 0, 1048576), "256", false,
     "Budget in MiB for cached finished answers."},
    {"access_log", BOOL(access_log), "true", false, "Write one line per request to stderr."},
    {"cors_origin", STR(cors_origin), "", false,
     "The one Origin allowed to read answers cross-site (exact match, never reflected). Empty: none."},
    {"umap", BOOL(umap), "true", false, "Fit the UMAP layout in the background after start-up."},
    {"umap_rows", INT(umap_rows, 16, 1000000), "10000", false,
     "Rows of wte (from the first) the UMAP layout is fitted on."},
    {"umap_neighbors", INT(umap_neighbors, 2, 200), "15", false, "UMAP n_neighbors."},
    {"umap_epochs", INT(umap_epochs, 0, 10000), "0", false,
     "UMAP epochs; 0 follows umap-learn (200 above 10,000 rows, else 500)."},
    {"umap_seed", INT(umap_seed, 0, INT64_MAX), "42", false, "UMAP random seed."},
    {"max_connections_per_ip", INT(max_connections_per_ip, 1, 100000), "128", false,
     "Connections one client address may hold (waiting, being read, computed or answered)."},
    {"max_pending", INT(max_pending, 1, 100000), "256", false,
     "Accepted connections whose request line has not begun; beyond, the oldest is dropped."},
    {"first_byte_timeout", INT(first_byte_timeout, 1, 3600), "5", false,
     "Seconds a new connection may take to begin its request line."},
    {"header_timeout", INT(header_timeout, 1, 3600), "10", false,
     "Seconds a request may take to send its headers (a deadline, not an idle timeout)."},
    {"body_timeout", INT(body_timeout, 1, 3600), "30", false,
     "Seconds a request may take to send its body once the headers are in."},
    {"max_queue", INT(max_queue, 1, 100000), "64", false,
     "Heavy requests waiting for a worker; beyond, 503 with Retry-After."},
    {"max_queue_per_client", INT(max_queue_per_client, 1, 100000), "16", false,
     "Heavy requests one client address may have waiting or running; beyond, 503 with Retry-After."},
    {"max_request_seconds", INT(max_request_seconds, 1, 86400), "120", false,
     "Deadline of one computation, from the moment it is queued; past it the work stops with a 503."},
    {"allowed_hosts", STR(allowed_hosts), "", false,
     "Host names, besides localhost, 127.0.0.1, ::1 and the listen address, that requests may name in "
     "their Host header (comma-separated); any other Host gets 421 (a defence against DNS rebinding)."},
    {"api_key", STR(api_key), "", false,
     "When set, every route but /health (and the page's static files) needs 'Authorization: Bearer "
     "<api_key>' (401 otherwise)."},
    {"insecure", BOOL(insecure), "false", false,
     "Allow a listen address that is not loopback without api_key (otherwise twd refuses to start)."},
    {"max_stats_texts", INT(max_stats_texts, 1, 100000), "256", false,
     "Most texts in one /trajectory/stats request (a shipped corpus counts its texts after 'limit')."},
    {"max_stats_tokens", INT(max_stats_tokens, 2, 10000000), "8192", false,
     "Most tokens of all the texts of one /trajectory/stats request together. The logit lens costs "
     "about 1.2 TFLOP per 1,000 tokens on the GPT-2 124M shape (15 states x 50,257 x 768 x 2)."},
};
const size_t cfg_n_options = sizeof(cfg_options) / sizeof(cfg_options[0]);

const cfg_option *config_find(const char *name)
{
    for (size_t i = 0; i < cfg_n_options; i++)
        if (strcmp(cfg_options[i].name, name) == 0) return &cfg_options[i];
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

int config_set(twd_config *c, const char *name, const char *value, char *err, size_t errlen)
{
    const cfg_option *o = config_find(name);
    if (!o) {
        snprintf(err, errlen, "unknown option '%s'", name);
        return -1;
    }
    char *field = (char *)c + o->offset;
    switch (o->type) {
    case CFG_STRING:
        if (strlen(value) >= o->size) {
            snprintf(err, errlen, "option '%s': value longer than %zu bytes", name, o->size - 1);
            return -1;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case CFG_BOOL:
        if (parse_bool(value, (bool *)field) != 0) {
            snprintf(err, errlen, "option '%s': '%s' is not a boolean (true/false)", name, value);
            return -1;
        }
        return 0;
    case CFG_INT:
    case CFG_SIZE: {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(value, &end, 10);
        int64_t mul = 1;
        if (o->type == CFG_SIZE && end != value && *end && end[1] == '\0' && strchr("kKmMgG", *end)) {
            mul = (*end == 'k' || *end == 'K') ? 1024 : (*end == 'm' || *end == 'M') ? 1048576 : 1073741824;
            end++;
        }
        if (end == value || *end || errno == ERANGE || (mul > 1 && v < 0) || v > o->max / mul ||
            v * mul < o->min) {
            snprintf(err, errlen, "option '%s': '%s' is not %s in %" PRId64 "..%" PRId64, name, value,
                     o->type == CFG_SIZE ? "a size (bytes, or with k/m/g)" : "an integer", o->min, o->max);
            return -1;
        }
        v *= mul;
        *(int64_t *)field = v;
        return 0;
    }
    }
    return -1;
}

void config_defaults(twd_config *c)
{
    char err[256];
    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < cfg_n_options; i++)
        if (config_set(c, cfg_options[i].name, cfg_options[i].def, err, sizeof err) != 0) {
            fprintf(stderr, "twd: internal error: bad default: %s\n", err);
            abort();
        }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(c->cache_dir, sizeof c->cache_dir, "%s/twd", xdg);
    else if (home && *home)
        snprintf(c->cache_dir, sizeof c->cache_dir, "%s/.cache/twd", home);
    else
        snprintf(c->cache_dir, sizeof c->cache_dir, "/tmp/twd-cache");
    snprintf(c->static_dir, sizeof c->static_dir, "%s/static", TWD_SOURCE_ROOT);
    snprintf(c->words_file, sizeof c->words_file, "%s/config/common_nouns.txt", TWD_SOURCE_ROOT);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int config_load_file(twd_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) != -1) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        char msg[512];
        if (config_set(c, key, val, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: twd [--config FILE] [--model DIR] [--listen ADDR] [--port N]\n"
                 "           [--threads N] [--workers N] [--cache-dir DIR] [--static-dir DIR]\n"
                 "           [--no-fetch] [--set KEY=VALUE ...] [--print-config]\n\n"
                 "Traveling Words daemon: serves the analyses of arXiv 2309.07315 on a GPT-2\n"
                 "checkpoint over HTTP/JSON. Options (config file keys; --set KEY=VALUE):\n\n");
    config_print_table(out);
}

int config_from_args(twd_config *c, int argc, char **argv, char *err, size_t errlen)
{
    static const struct {
        const char *flag, *key;
    } flags[] = {
        {"--model", "model"},           {"--port", "port"},       {"--listen", "listen"},
        {"--threads", "threads"},       {"--workers", "workers"}, {"--cache-dir", "cache_dir"},
        {"--static-dir", "static_dir"},
    };
    /* --config first, so that flags override the file wherever they stand. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file");
                return -1;
            }
            if (config_load_file(c, argv[i + 1], err, errlen) != 0) return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--no-fetch") == 0) {
            c->fetch = false;
            continue;
        }
        if (strcmp(a, "--print-config") == 0) {
            config_print_conf(stdout);
            return 1;
        }
        const char *key = NULL;
        for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++)
            if (strcmp(a, flags[f].flag) == 0) key = flags[f].key;
        if (key || strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", a);
                return -1;
            }
            const char *v = argv[++i];
            if (key) {
                if (config_set(c, key, v, err, errlen) != 0) return -1;
                continue;
            }
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                snprintf(err, errlen, "--set needs KEY=VALUE, got '%s'", v);
                return -1;
            }
            char name[128];
            size_t n = (size_t)(eq - v);
            if (n >= sizeof name) n = sizeof name - 1;
            memcpy(name, v, n);
            name[n] = '\0';
            if (config_set(c, name, eq + 1, err, errlen) != 0) return -1;
            continue;
        }
        snprintf(err, errlen, "unknown argument '%s' (see twd --help)", a);
        return -1;
    }
    return 0;
}

void config_print_table(FILE *out)
{
    static const char *tn[] = {"int", "size", "string", "bool"};
    for (size_t i = 0; i < cfg_n_options; i++) {
        const cfg_option *o = &cfg_options[i];
        fprintf(out, "  %-16s %-6s default %-24s", o->name, tn[o->type], *o->def ? o->def : "\"\"");
        if (o->type == CFG_INT || o->type == CFG_SIZE)
            fprintf(out, " range %" PRId64 "..%" PRId64, o->min, o->max);
        fprintf(out, "\n      %s\n", o->doc);
    }
}

void config_print_conf(FILE *out)
{
    static const char *tn[] = {"integer", "size in bytes (suffix k, m or g allowed)", "string", "boolean"};
    fprintf(out, "# twd configuration. Every option, its type, bounds and default; this file is\n"
                 "# generated by `twd --print-config` from the option table in server/config.c and\n"
                 "# a unit test keeps the two identical. Command-line flags override the file:\n"
                 "#   twd --config FILE [--model DIR] [--port N] [--listen ADDR] [--set KEY=VALUE]\n"
                 "# Lines are `key = value`; '#' starts a comment.\n");
    for (size_t i = 0; i < cfg_n_options; i++) {
        const cfg_option *o = &cfg_options[i];
        fprintf(out, "\n# %s\n# type: %s", o->doc, tn[o->type]);
        if (o->type == CFG_INT || o->type == CFG_SIZE)
            fprintf(out, "; range %" PRId64 "..%" PRId64, o->min, o->max);
        fprintf(out, "; default: %s\n", *o->def ? o->def : "(empty)");
        fprintf(out, "%s%s = %s\n", *o->def ? "" : "# ", o->name, *o->def ? o->def : "");
    }
}

/* The api layer's settings, from the daemon's configuration. */
void config_api_settings(const twd_config *cfg, api_settings *s)
{
    memset(s, 0, sizeof *s);
    s->limits = (api_limits){.max_text = cfg->max_text,
                             .max_tokens = cfg->max_tokens,
                             .max_words = cfg->max_words,
                             .max_k = cfg->max_k,
                             .max_top = cfg->max_top,
                             .max_answer_tokens = cfg->max_answer_tokens,
                             .max_stats_texts = cfg->max_stats_texts,
                             .max_stats_tokens = cfg->max_stats_tokens};
    s->cache_bytes = (size_t)cfg->cache_mb << 20;
    s->answer_cache_bytes = (size_t)cfg->answer_cache_mb << 20;
    snprintf(s->words_file, sizeof s->words_file, "%s", cfg->words_file);
    snprintf(s->corpus_dir, sizeof s->corpus_dir, "%s/config/corpus", TWD_SOURCE_ROOT);
    layout_settings *l = &s->layout;
    l->rows = (size_t)cfg->umap_rows;
    l->umap = cfg->umap;
    l->umap_neighbors = (size_t)cfg->umap_neighbors;
    l->umap_epochs = (size_t)cfg->umap_epochs;
    l->umap_seed = (uint64_t)cfg->umap_seed;
    if (fs_join(l->cache_dir, sizeof l->cache_dir, cfg->cache_dir, "umap") != 0) l->cache_dir[0] = '\0';
}

/* True for 127.0.0.0/8 and ::1. */
static bool loopback_address(const char *a)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, a, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, a, &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

int config_check(const twd_config *c, char *err, size_t errlen)
{
    if (strcmp(c->cors_origin, "null") == 0) {
        snprintf(err, errlen, "option 'cors_origin': 'null' is refused: sandboxed pages and local files all send "
                              "Origin: null, so it would let any of them read answers");
        return -1;
    }
    if (!loopback_address(c->listen) && !c->api_key[0] && !c->insecure) {
        snprintf(err, errlen,
                 "listen address %s is not loopback and no api_key is set: anyone who can reach it could use "
                 "the service; set api_key (recommended) or --set insecure=true",
                 c->listen);
        return -1;
    }
    return 0;
}
