#include "server/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fs.h"
#include "core/nn/blas.h"

#define OFF(f) offsetof(twd_config, f)
#define SZ(f)  sizeof(((twd_config *)0)->f)
/* An option's name (its twd_config field's), type, place and bounds. */
#define STR(f)          #f, CFG_STRING, OFF(f), SZ(f), 0, 0
#define INT(f, lo, hi)  #f, CFG_INT, OFF(f), 0, lo, hi
#define SIZE(f, lo, hi) #f, CFG_SIZE, OFF(f), 0, lo, hi
#define MIB(f, lo, hi)  #f, CFG_MIB, OFF(f), 0, lo, hi
#define BOOL(f)         #f, CFG_BOOL, OFF(f), 0, 0, 1

/* blas_coretype: auto, off, or a name this OpenBLAS accepts (it would
 * otherwise ignore the name silently and keep its own choice). Returns the
 * value to store, or NULL with the message in err. */
static const char *check_coretype(const char *v, char *err, size_t errlen)
{
    if (strcasecmp(v, "auto") == 0) return "auto";
    if (strcasecmp(v, "off") == 0) return "off";
    if (blas_coretype_known(v)) return v;
    snprintf(err, errlen,
             "option 'blas_coretype': '%.64s' is not auto, off or a kernel family OpenBLAS accepts (%s)", v,
             blas_coretype_names());
    return NULL;
}

/* listen: an address literal (the HTTP layer binds it as such). */
static const char *check_listen(const char *v, char *err, size_t errlen)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, v, buf) == 1 || inet_pton(AF_INET6, v, buf) == 1) return v;
    snprintf(err, errlen,
             "option 'listen': '%.100s' is not an IPv4 or IPv6 address (e.g. 127.0.0.1, ::1, 0.0.0.0)", v);
    return NULL;
}

/* String options whose values are checked beyond their length. */
static const struct {
    const char *name;
    const char *(*check)(const char *value, char *err, size_t errlen);
} string_checks[] = {{"blas_coretype", check_coretype}, {"listen", check_listen}};

/* The one table of options: name, type and bounds, default, doc. */
const cfg_option cfg_options[] = {
    {STR(listen), "127.0.0.1",
     "Address to listen on. Loopback by default; the service has no authentication."},
    {INT(port, 0, 65535), "8080", "TCP port (0: any free port, printed at start)."},
    {STR(pid_file), "",
     "File written once the port is bound, in three lines: the pid, the URL twd listens on and 'listening' "
     "('stopping' once it is asked to stop); replaced atomically, removed at exit (scripts/up reads it). "
     "Empty: none."},
    {STR(models), "",
     "The models to serve, comma-separated (--model may be given several times; 'model' is the same "
     "option). Each is a folder holding a Hugging Face snapshot (config.json + model.safetensors) or a "
     "nanoGPT ckpt.pt, the ckpt.pt or model.safetensors file itself, a models--org--name folder of the "
     "Hugging Face cache, or a hub id such as openai-community/gpt2-medium (looked up in the Hugging Face "
     "cache, then twd's cache, then downloaded when the hub is reachable). The first is the default of "
     "model= on every route. Empty: hub_repo the same way, else twd's demo model."},
    {STR(revision), "main", "Hub revision (a branch, tag or commit) of the models given as hub ids."},
    {STR(tokenizer), "",
     "Folder of GPT-2 BPE files (vocab.json + merges.txt, or encoder.json + vocab.bpe) for checkpoints "
     "that have no tokenizer beside them. Empty: GPT-2's own files that twd ships."},
    {STR(demo_model), "",
     "The demo model, served when no model is given and none is cached: a small GPT-2-architecture model "
     "trained by tools/demo-model/train.py. Empty: the one twd ships."},
    {STR(cache_dir), "",
     "Folder for the synthetic demo model and the fitted UMAP layouts (downloads go to the Hugging Face "
     "cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). "
     "Empty: $XDG_CACHE_HOME/twd or ~/.cache/twd."},
    {STR(static_dir), "",
     "Folder of the web page served under /. Empty: static/ of the source tree when twd runs from its build "
     "directory, else static/ under PREFIX/share/twd (an installed twd); each falls back to the other when "
     "it has no static/."},
    {STR(words_file), "",
     "Default word list of /probe, one word per line. Empty: config/common_nouns.txt (the paper's 100 most "
     "common English nouns), found as static_dir is: the source tree's for a twd run from its build "
     "directory, else the one under PREFIX/share/twd, each falling back to the other."},
    {STR(hub_url), "https://huggingface.co", "Base URL of the Hugging Face hub used for the default model."},
    {STR(hub_repo), "openai-community/gpt2", "Hub repository of the default model."},
    {INT(fetch_timeout, 1, 60), "3",
     "Seconds the hub has to be reached and answer its first request (connecting and the answer) before "
     "twd falls back to the demo model; a download under way is only abandoned when it stalls."},
    {BOOL(fetch), "true", "Try to download the default model when it is not cached."},
    {INT(threads, 1, 256), "8",
     "HTTP threads. They never compute analyses, so /health answers while work runs."},
    {INT(workers, 1, 64), "2",
     "Threads that compute analyses concurrently; the BLAS threads (blas_threads) are shared among the "
     "computations running, so two workers never run more threads than one."},
    {INT(blas_threads, 0, 64), "0",
     "OpenBLAS threads used by one computation; 0: one per core. Concurrent computations share them."},
    {STR(blas_coretype), "auto",
     "OpenBLAS kernel family. auto: when OpenBLAS does not recognise the CPU and would run its generic "
     "kernels on an AVX2/AVX-512 machine, restart once with OPENBLAS_CORETYPE set (about 3x faster GEMM); "
     "off: leave OpenBLAS alone; or a kernel family OpenBLAS accepts, such as Haswell, Zen or SkylakeX (any "
     "other name is refused at start with the list). An OPENBLAS_CORETYPE already in the environment "
     "always wins."},
    {SIZE(max_body, 1024, 1073741824), "1048576", "Largest request body in bytes; larger bodies get 413."},
    {SIZE(max_url, 256, 1048576), "65536",
     "Longest request target (path and query) in bytes; longer ones get 413."},
    {SIZE(max_text, 1, 1048576), "16384", "Longest text parameter in bytes."},
    {INT(max_tokens, 1, 1048576), "1024", "Most tokens in a phrase (also capped by the model's n_ctx)."},
    {INT(max_words, 1, 100000), "1000", "Most words in a probe word list."},
    {INT(max_k, 1, 100000), "100", "Largest k (tokens per list)."},
    {INT(max_top, 1, 100000), "64", "Most SVD directions reported per head."},
    {INT(max_answer_tokens, 1000, 100000000), "300000",
     "Most tokens one answer may list (e.g. words x heads x k); larger requests get 400 and are not "
     "computed."},
    {MIB(max_answer_mb, 1, 1048576), "256",
     "Largest answer in MiB, as estimated before computing (vectors, matrices); larger requests get 400 "
     "and are not computed."},
    {INT(max_connections, 1, 100000), "256", "Simultaneous connections."},
    {INT(timeout, 1, 86400), "60", "Seconds before an idle connection is closed."},
    {MIB(cache_mb, 0, 1048576), "2048",
     "Budget in MiB for cached intermediate matrices (e.g. LN_b(E) per block): 2048, or 2g."},
    {MIB(answer_cache_mb, 0, 1048576), "256", "Budget in MiB for cached finished answers: 256, or 256m."},
    {MIB(f16_cache_mb, 0, 1048576), "1024",
     "F16/BF16 checkpoints: MiB of block weights kept converted to float32 (the first blocks used); the "
     "other blocks are converted for each computation that needs them, so no full float32 copy is made."},
    {BOOL(access_log), "true", "Write one line per request to stderr."},
    {STR(cors_origin), "",
     "The one Origin allowed to read answers cross-site (exact match, never reflected). Empty: none."},
    {BOOL(umap), "true", "Fit the UMAP layout in the background after start-up."},
    {INT(umap_rows, 16, 1000000), "1000000",
     "Rows of wte (from the first) the UMAP layout is fitted on; the default takes every row (the whole "
     "vocabulary: 50,257 rows of GPT-2 in about 55 s on 2 idle cores); the paper used 10000."},
    {INT(umap_neighbors, 2, 200), "15", "UMAP n_neighbors."},
    {INT(umap_epochs, 0, 10000), "0", "UMAP epochs; 0 follows umap-learn (200 above 10,000 rows, else 500)."},
    {INT(umap_seed, 0, INT64_MAX), "42", "UMAP random seed."},
    {INT(max_connections_per_ip, 1, 100000), "128",
     "Connections one client address may hold (waiting, being read, computed or answered)."},
    {INT(max_pending, 1, 100000), "256",
     "Accepted connections whose request line has not begun; beyond, the oldest is dropped."},
    {INT(first_byte_timeout, 1, 3600), "5", "Seconds a new connection may take to begin its request line."},
    {INT(header_timeout, 1, 3600), "10",
     "Seconds a request may take to send its headers (a deadline, not an idle timeout)."},
    {INT(body_timeout, 1, 3600), "30",
     "Seconds a request may take to send its body once the headers are in."},
    {INT(max_queue, 1, 100000), "64", "Heavy requests waiting for a worker; beyond, 503 with Retry-After."},
    {INT(max_queue_per_client, 1, 100000), "16",
     "Heavy requests one client address may have waiting or running; beyond, 503 with Retry-After."},
    {INT(max_request_seconds, 1, 86400), "120",
     "Deadline of one computation, from the moment it is queued; past it the work stops with a 503."},
    {INT(reload_wait, 0, 3600), "2",
     "Seconds a changed checkpoint file must stay unchanged (size, mtime, inode) before it is loaded "
     "again; meanwhile its model answers 503."},
    {STR(allowed_hosts), "",
     "Host names, besides localhost, 127.0.0.1, ::1 and the listen address, that requests may name in "
     "their Host header (comma-separated); any other Host gets 421 (a defence against DNS rebinding)."},
    {STR(api_key), "",
     "When set, every route but /health (and the page's static files) needs 'Authorization: Bearer "
     "<api_key>' (401 otherwise)."},
    {BOOL(insecure), "false",
     "Allow a listen address that is not loopback without api_key (otherwise twd refuses to start)."},
    {INT(max_stats_texts, 1, 100000), "256",
     "Most texts in one /trajectory/stats request (a shipped corpus counts its texts after 'limit')."},
    {INT(max_stats_tokens, 2, 10000000), "8192",
     "Most tokens of all the texts of one /trajectory/stats request together. The logit lens costs "
     "about 1.2 TFLOP per 1,000 tokens on the GPT-2 124M shape (15 states x 50,257 x 768 x 2)."},
};
const size_t cfg_n_options = sizeof(cfg_options) / sizeof(cfg_options[0]);

const cfg_option *config_find(const char *name)
{
    if (strcmp(name, "model") == 0) name = "models"; /* the singular reads better with one */
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

/* A decimal integer, with suffix_ok optionally followed by one binary unit
 * letter (k, m, g, t; either case) whose power of two goes to *shift. */
static int parse_number(const char *s, bool suffix_ok, long long *v, int *shift)
{
    static const char units[] = "kmgt";
    char *end = NULL;
    errno = 0;
    *v = strtoll(s, &end, 10);
    *shift = 0;
    if (end == s || errno == ERANGE) return -1;
    if (suffix_ok && *end && end[1] == '\0') {
        const char *u = strchr(units, tolower((unsigned char)*end));
        if (!u) return -1;
        *shift = 10 * (int)(u - units + 1);
        end++;
    }
    return *end ? -1 : 0;
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
        for (const char *p = value; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\t') {
                snprintf(err, errlen, "option '%s': the value contains a control character (0x%02x)", name,
                         (unsigned)(unsigned char)*p);
                return -1;
            }
        for (size_t i = 0; i < sizeof string_checks / sizeof string_checks[0]; i++)
            if (strcmp(name, string_checks[i].name) == 0 &&
                !(value = string_checks[i].check(value, err, errlen)))
                return -1;
        memset(field, 0, o->size); /* no trace of an earlier value: configurations compare with memcmp */
        memcpy(field, value, strlen(value));
        return 0;
    case CFG_BOOL:
        if (parse_bool(value, (bool *)field) != 0) {
            snprintf(err, errlen, "option '%s': '%s' is not a boolean (true/false)", name, value);
            return -1;
        }
        return 0;
    case CFG_INT:
    case CFG_SIZE:
    case CFG_MIB: {
        long long v = 0;
        int shift = 0;
        bool ok = parse_number(value, o->type != CFG_INT, &v, &shift) == 0;
        if (ok && o->type == CFG_MIB) {
            /* a plain number is MiB; a suffix gives bytes, which must be whole MiB */
            if (shift == 10) {
                if (v % 1024 != 0) {
                    snprintf(err, errlen,
                             "option '%s': '%s' is not a whole number of MiB (in MiB, or a multiple of "
                             "1024k, or with m, g, t)",
                             name, value);
                    return -1;
                }
                v /= 1024;
            } else if (shift > 20) {
                ok = v >= 0 && v <= (o->max >> (shift - 20));
                v = ok ? v << (shift - 20) : 0;
            }
        } else if (ok && shift) {
            ok = v >= 0 && v <= (o->max >> shift);
            v = ok ? v << shift : 0;
        }
        if (!ok || v < o->min || v > o->max) {
            snprintf(err, errlen, "option '%s': '%s' is not %s in %" PRId64 "..%" PRId64, name, value,
                     o->type == CFG_INT    ? "an integer"
                     : o->type == CFG_SIZE ? "a size in bytes (a number, or with k, m, g, t)"
                                           : "a size in MiB (a number of MiB, or with k, m, g, t)",
                     o->min, o->max);
            return -1;
        }
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
    if (config_data_path(c->static_dir, sizeof c->static_dir, "static") != 0) c->static_dir[0] = '\0';
    if (config_data_path(c->words_file, sizeof c->words_file, "config/common_nouns.txt") != 0)
        c->words_file[0] = '\0';
}

/* True when this process's executable lies in a meson build directory: its
 * folder, or that folder's parent, holds build.ninja (build/server/twd,
 * build/tests/test_config). An installed twd (PREFIX/bin/twd) does not. */
static bool runs_from_build_dir(void)
{
    char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0) return false;
    dir[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(dir, '/'), probe[4200];
        if (!slash) return false;
        *slash = '\0';
        if (fs_path(probe, sizeof probe, "%s/build.ninja", dir) == 0 && fs_is_regular(probe)) return true;
    }
    return false;
}

int config_data_path(char *out, size_t n, const char *rel)
{
    char src[4096], inst[4096];
    if (fs_join(src, sizeof src, TWD_SOURCE_ROOT, rel) != 0 ||
        fs_join(inst, sizeof inst, TWD_DATADIR, rel) != 0)
        return -1;
    bool build = runs_from_build_dir();
    const char *first = build ? src : inst, *second = build ? inst : src;
    return fs_path(out, n, "%s", access(first, F_OK) == 0 || access(second, F_OK) != 0 ? first : second);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

/* One line of a configuration file (NUL-terminated, no newline). A '#'
 * before the '=' or after an unquoted value starts a comment; a value in
 * double quotes is taken as written. 0, or -1 with "FILE:LINE: message". */
static int load_line(twd_config *c, char *line, const char *path, int lineno, char *err, size_t errlen)
{
    char *hash = strchr(line, '#'), *eq = strchr(line, '=');
    if (hash && (!eq || hash < eq)) {
        *hash = '\0';
        eq = NULL;
    }
    char *s = trim(line);
    if (!*s) return 0;
    if (!eq) {
        snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
        return -1;
    }
    *eq = '\0';
    char *key = trim(s), *val = eq + 1;
    while (isspace((unsigned char)*val)) val++;
    if (!*key) {
        snprintf(err, errlen, "%s:%d: expected 'key = value'", path, lineno);
        return -1;
    }
    if (*val == '"') {
        char *close = strchr(val + 1, '"');
        if (!close) {
            snprintf(err, errlen, "%s:%d: the value of '%s' has no closing quote", path, lineno, key);
            return -1;
        }
        *close = '\0';
        char *rest = close + 1;
        while (isspace((unsigned char)*rest)) rest++;
        if (*rest && *rest != '#') {
            snprintf(err, errlen, "%s:%d: text after the closing quote of '%s'", path, lineno, key);
            return -1;
        }
        val++;
    } else {
        char *h = strchr(val, '#');
        if (h) *h = '\0';
        val = trim(val);
    }
    char msg[1024];
    if (config_set(c, key, val, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
        return -1;
    }
    return 0;
}

#define CONF_MAX_BYTES (1 << 20)

int config_load_file(twd_config *c, const char *path, char *err, size_t errlen)
{
    char ferr[1024];
    size_t len = 0;
    /* a regular file only: a FIFO or a device must not block or feed start-up */
    char *text = fs_read_file(path, CONF_MAX_BYTES, &len, ferr, sizeof ferr);
    if (!text) {
        snprintf(err, errlen, "config file %s", ferr);
        return -1;
    }
    int lineno = 0, rc = 0;
    char *p = text, *end = text + len;
    while (rc == 0 && p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
        lineno++;
        if (memchr(p, '\0', (size_t)(eol - p))) {
            snprintf(err, errlen, "%s:%d: NUL byte (not a text file?)", path, lineno);
            rc = -1;
            break;
        }
        *eol = '\0';
        rc = load_line(c, p, path, lineno, err, errlen);
        p = eol + 1;
    }
    free(text);
    return rc;
}

static void usage(FILE *out)
{
    char example[4096];
    if (config_data_path(example, sizeof example, "config/twd.conf") != 0)
        snprintf(example, sizeof example, "twd.conf");
    fprintf(out, "usage: twd [--config FILE] [--model DIR] [--listen ADDR] [--port N]\n"
                 "           [--threads N] [--workers N] [--cache-dir DIR] [--static-dir DIR]\n"
                 "           [--pid-file FILE] [--no-fetch] [--set KEY=VALUE ...]\n"
                 "           [--print-config] [--version]\n\n"
                 "Traveling Words daemon: serves the analyses of arXiv 2309.07315 on a GPT-2\n"
                 "checkpoint over HTTP/JSON. --config FILE is read first, then the flags apply in\n"
                 "order (a value may also be given as --flag=VALUE). --print-config prints the\n"
                 "resulting configuration as a file and exits. Options (config file keys;\n"
                 "--set KEY=VALUE):\n\n");
    config_print_table(out);
    fprintf(out, "\nA documented configuration file with every default: %s\n", example);
}

/* The flags: those with a key set that option; --config and --set are
 * handled apart. */
static const struct {
    const char *flag, *key;
    bool value;
} flag_defs[] = {
    {"--config", NULL, true},
    {"--set", NULL, true},
    {"--model", NULL, true},
    {"--port", "port", true},
    {"--listen", "listen", true},
    {"--threads", "threads", true},
    {"--workers", "workers", true},
    {"--cache-dir", "cache_dir", true},
    {"--static-dir", "static_dir", true},
    {"--pid-file", "pid_file", true},
    {"--no-fetch", NULL, false},
    {"--print-config", NULL, false},
    {"--help", NULL, false},
    {"-h", NULL, false},
    {"--version", NULL, false},
};
#define N_FLAGS (sizeof flag_defs / sizeof flag_defs[0])

/* argv[*i] as a flag (index into flag_defs) and its value (the next
 * argument, or the text after '=' in --flag=VALUE); advances *i past the
 * value. -1 with a message for an unknown flag or a missing value. */
static int next_flag(int argc, char **argv, int *i, const char **val, char *err, size_t errlen)
{
    const char *a = argv[*i], *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    *val = NULL;
    for (size_t f = 0; f < N_FLAGS; f++) {
        if (strlen(flag_defs[f].flag) != n || strncmp(a, flag_defs[f].flag, n) != 0) continue;
        if (!flag_defs[f].value) {
            if (eq) {
                snprintf(err, errlen, "%s takes no value", flag_defs[f].flag);
                return -1;
            }
            return (int)f;
        }
        if (eq) {
            *val = eq + 1;
        } else if (*i + 1 < argc) {
            *val = argv[++*i];
        } else {
            snprintf(err, errlen, "%s needs a value", flag_defs[f].flag);
            return -1;
        }
        return (int)f;
    }
    snprintf(err, errlen, "unknown argument '%.200s' (see twd --help)", a);
    return -1;
}

static int apply_set(twd_config *c, const char *v, char *err, size_t errlen)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v) {
        snprintf(err, errlen, "--set needs KEY=VALUE, got '%.200s'", v);
        return -1;
    }
    char name[128];
    size_t n = (size_t)(eq - v);
    if (n >= sizeof name) {
        snprintf(err, errlen, "unknown option '%.100s...'", v);
        return -1;
    }
    memcpy(name, v, n);
    name[n] = '\0';
    return config_set(c, name, eq + 1, err, errlen);
}

/* Appends one model spec to the models list (clearing it first when
 * `replace`). A spec holding a comma cannot be listed. */
static int add_model(twd_config *c, const char *spec, bool replace, char *err, size_t errlen)
{
    if (!spec[0] || strchr(spec, ',')) {
        snprintf(err, errlen, "--model '%s': %s", spec,
                 spec[0] ? "a model spec may not contain a comma" : "empty");
        return -1;
    }
    if (replace) c->models[0] = '\0';
    size_t have = strlen(c->models), add = strlen(spec);
    if (have + add + 3 > sizeof c->models) {
        snprintf(err, errlen, "--model: the list of models is longer than %zu bytes", sizeof c->models - 1);
        return -1;
    }
    snprintf(c->models + have, sizeof c->models - have, "%s%s", have ? ", " : "", spec);
    return 0;
}

size_t config_model_list(const twd_config *c, char specs[][4096], size_t max)
{
    size_t n = 0;
    const char *p = c->models;
    while (*p && n < max) {
        while (*p == ',' || *p == ' ' || *p == '\t') p++;
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len && len < 4096) {
            memcpy(specs[n], p, len);
            specs[n++][len] = '\0';
        }
        p += e ? (size_t)(e - p) + 1 : strlen(p);
    }
    return n;
}

int config_from_args(twd_config *c, int argc, char **argv, char *err, size_t errlen)
{
    /* Three passes: --help and --version (nothing else matters then), every
     * --config file, then the flags in order, so that flags override the
     * file wherever they stand. */
    bool print = false, models_from_flags = false;
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 1; i < argc; i++) {
            const char *v = NULL;
            int f = next_flag(argc, argv, &i, &v, err, errlen);
            if (f < 0) {
                if (pass == 0) continue; /* reported in the last pass, unless --help comes */
                return -1;
            }
            const char *flag = flag_defs[f].flag, *key = flag_defs[f].key;
            if (pass == 0) {
                if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
                    usage(stdout);
                    return 1;
                }
                if (strcmp(flag, "--version") == 0) {
                    printf("twd %s\n", TWD_VERSION);
                    return 1;
                }
            } else if (pass == 1) {
                if (strcmp(flag, "--config") == 0 && config_load_file(c, v, err, errlen) != 0) return -1;
            } else if (key) {
                if (config_set(c, key, v, err, errlen) != 0) return -1;
            } else if (strcmp(flag, "--set") == 0) {
                if (apply_set(c, v, err, errlen) != 0) return -1;
            } else if (strcmp(flag, "--model") == 0) {
                /* each --model adds one; the flags replace the file's list */
                if (add_model(c, v, !models_from_flags, err, errlen) != 0) return -1;
                models_from_flags = true;
            } else if (strcmp(flag, "--no-fetch") == 0) {
                c->fetch = false;
            } else if (strcmp(flag, "--print-config") == 0) {
                print = true;
            }
        }
    }
    if (print) {
        config_print_conf(stdout, c);
        return 1;
    }
    return 0;
}

void config_print_table(FILE *out)
{
    static const char *tn[] = {"int", "size", "string", "bool", "MiB"};
    for (size_t i = 0; i < cfg_n_options; i++) {
        const cfg_option *o = &cfg_options[i];
        fprintf(out, "  %-16s %-6s default %-24s", o->name, tn[o->type], *o->def ? o->def : "\"\"");
        if (o->type == CFG_INT || o->type == CFG_SIZE || o->type == CFG_MIB)
            fprintf(out, " range %" PRId64 "..%" PRId64, o->min, o->max);
        fprintf(out, "\n      %s\n", o->doc);
    }
}

/* True when option o has the same value in a and b. */
static bool same_value(const cfg_option *o, const twd_config *a, const twd_config *b)
{
    const char *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;
    switch (o->type) {
    case CFG_STRING: return strcmp(fa, fb) == 0;
    case CFG_BOOL: return *(const bool *)fa == *(const bool *)fb;
    default: return *(const int64_t *)fa == *(const int64_t *)fb;
    }
}

/* The `key = value` line of option o as set in c, in the form
 * config_load_file reads back. */
static void print_value_line(FILE *out, const cfg_option *o, const twd_config *c)
{
    const char *field = (const char *)c + o->offset;
    if (o->type == CFG_BOOL) {
        fprintf(out, "%s = %s\n", o->name, *(const bool *)field ? "true" : "false");
        return;
    }
    if (o->type != CFG_STRING) {
        fprintf(out, "%s = %" PRId64 "\n", o->name, *(const int64_t *)field);
        return;
    }
    size_t n = strlen(field);
    bool quote = n == 0 || isspace((unsigned char)field[0]) || isspace((unsigned char)field[n - 1]) ||
                 field[0] == '"' || strchr(field, '#');
    if (!quote)
        fprintf(out, "%s = %s\n", o->name, field);
    else if (!strchr(field, '"'))
        fprintf(out, "%s = \"%s\"\n", o->name, field);
    else /* no escapes in this format: say so rather than write a line that reads back differently */
        fprintf(out, "# %s: the value set (%s) cannot be written in this format\n", o->name, field);
}

void config_print_conf(FILE *out, const twd_config *c)
{
    static const char *tn[] = {"integer", "size in bytes (suffix k, m, g or t allowed)", "string", "boolean",
                               "size in MiB (a number of MiB, or with suffix k, m, g or t)"};
    static twd_config defaults; /* large: not on the stack */
    config_defaults(&defaults);
    if (!c) c = &defaults;
    fprintf(out, "# twd configuration. Every option, its type, bounds and default; this file is\n"
                 "# generated by `twd --print-config` from the option table in server/config.c and\n"
                 "# a unit test keeps the two identical. Command-line flags override the file:\n"
                 "#   twd --config FILE [--model DIR] [--port N] [--listen ADDR] [--set KEY=VALUE]\n"
                 "# Lines are `key = value`; '#' starts a comment.\n");
    for (size_t i = 0; i < cfg_n_options; i++) {
        const cfg_option *o = &cfg_options[i];
        fprintf(out, "\n# %s\n# type: %s", o->doc, tn[o->type]);
        if (o->type == CFG_INT || o->type == CFG_SIZE || o->type == CFG_MIB)
            fprintf(out, "; range %" PRId64 "..%" PRId64, o->min, o->max);
        fprintf(out, "; default: %s\n", *o->def ? o->def : "(empty)");
        if (same_value(o, c, &defaults))
            fprintf(out, "%s%s = %s\n", *o->def ? "" : "# ", o->name, *o->def ? o->def : "");
        else
            print_value_line(out, o, c);
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
                             .max_stats_tokens = cfg->max_stats_tokens,
                             .max_answer_bytes = (double)cfg->max_answer_mb * 1048576.0};
    s->cache_bytes = (size_t)cfg->cache_mb << 20;
    s->answer_cache_bytes = (size_t)cfg->answer_cache_mb << 20;
    snprintf(s->words_file, sizeof s->words_file, "%s", cfg->words_file);
    if (config_data_path(s->corpus_dir, sizeof s->corpus_dir, "config/corpus") != 0) s->corpus_dir[0] = '\0';
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
        snprintf(err, errlen,
                 "option 'cors_origin': 'null' is refused: sandboxed pages and local files all send "
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
