/* Daemon configuration: one table row per option (name, type, bounds,
 * default, documentation), read from a `key = value` file and overridden by
 * command-line flags. config/twd.conf is the documented example: what
 * `twd --print-config` prints with no file and no flags. */
#ifndef TW_CONFIG_H
#define TW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api/api.h"

/* CFG_SIZE: bytes, a plain number or with a binary suffix k, m, g, t.
 * CFG_MIB: MiB, a plain number of MiB or a size with a binary suffix that is
 * a whole number of MiB ("2g" = 2048, "512k" is refused). */
typedef enum { CFG_INT, CFG_SIZE, CFG_STRING, CFG_BOOL, CFG_MIB } cfg_type;

typedef struct twd_config {
    char listen[64]; /* listen address (IPv4 or IPv6 literal) */
    int64_t port;
    char pid_file[4096];       /* pid, URL and state, written once listening; empty = none */
    char models[16384];        /* the models to serve, comma-separated specs; empty = the default model */
    char revision[256];        /* hub revision (branch, tag or commit) of hub ids */
    char tokenizer[4096];      /* folder of GPT-2 BPE files for checkpoints that have none beside them */
    char demo_model[4096];     /* the demo model's folder; empty = the one twd ships */
    char cache_dir[4096];      /* downloads, demo model, UMAP layouts */
    char static_dir[4096];     /* files served under / */
    char words_file[4096];     /* default word list of /probe */
    char hub_url[512];         /* Hugging Face hub base URL for the default model */
    char hub_repo[256];        /* repository of the default model */
    int64_t fetch_timeout;     /* seconds for the hub to be reached and answer */
    bool fetch;                /* try to download the default model at all */
    int64_t threads;           /* HTTP threads (connection handling) */
    int64_t workers;           /* threads computing analyses */
    int64_t blas_threads;      /* OpenBLAS threads per computation, 0 = cores */
    char blas_coretype[32];    /* "auto", "off" or an OPENBLAS_CORETYPE name */
    int64_t max_body;          /* bytes of a request body */
    int64_t max_url;           /* bytes of the request target (path + query) */
    int64_t max_text;          /* bytes of a text parameter */
    int64_t max_tokens;        /* tokens of a phrase (also capped by n_ctx) */
    int64_t max_words;         /* words in a probe word list */
    int64_t max_k;             /* cap on k (tokens per list) */
    int64_t max_top;           /* cap on SVD directions per head */
    int64_t max_answer_tokens; /* cap on tokens listed by one answer */
    int64_t max_connections;   /* simultaneous connections */
    int64_t timeout;           /* idle connection timeout, seconds */
    int64_t max_answer_mb;     /* largest answer, MiB */
    int64_t cache_mb;          /* intermediate-matrix cache budget, MiB */
    int64_t answer_cache_mb;   /* finished-answer cache budget, MiB */
    int64_t f16_cache_mb;      /* converted F16/BF16 blocks kept, MiB */
    bool access_log;           /* one line per request on stderr */
    char cors_origin[512];     /* exact Origin allowed for CORS; empty = none */
    bool umap;                 /* fit the UMAP layout in the background */
    int64_t umap_rows;         /* rows of wte the UMAP layout is fitted on */
    int64_t umap_neighbors;
    int64_t umap_epochs; /* 0 = umap-learn's default rule */
    int64_t umap_seed;
    /* what a client may hold (docs/ARCHITECTURE.md, server/guard.h) */
    int64_t max_connections_per_ip; /* connections per client address */
    int64_t max_pending;            /* accepted connections whose request line has not begun */
    int64_t first_byte_timeout;     /* seconds for a new connection's request line to begin */
    int64_t header_timeout;         /* seconds for a request's headers */
    int64_t body_timeout;           /* seconds for a request's body */
    int64_t max_queue;              /* heavy requests waiting for a worker */
    int64_t max_queue_per_client;   /* of them, from one client address */
    int64_t max_request_seconds;    /* deadline of one computation */
    int64_t reload_wait; /* seconds a changed checkpoint must stay unchanged before it is reloaded */
    /* who may talk to the daemon */
    char allowed_hosts[1024]; /* extra Host names accepted, comma-separated */
    char api_key[256];        /* bearer token required by every route but /health; empty: none */
    bool insecure;            /* allow a non-loopback listen address without api_key */
    /* /trajectory/stats */
    int64_t max_stats_texts;  /* texts of one request */
    int64_t max_stats_tokens; /* tokens of all its texts */
} twd_config;

typedef struct {
    const char *name;
    cfg_type type;
    size_t offset;    /* into twd_config */
    size_t size;      /* for CFG_STRING: buffer size */
    int64_t min, max; /* bounds for CFG_INT / CFG_SIZE (bytes) / CFG_MIB (MiB) */
    const char *def;  /* default, as text */
    const char *doc;
} cfg_option;

extern const cfg_option cfg_options[];
extern const size_t cfg_n_options;

/* Fills every option with its default. Defaults that depend on the
 * environment are resolved here: cache_dir from $XDG_CACHE_HOME or $HOME,
 * static_dir and words_file with config_data_path. */
void config_defaults(twd_config *c);

/* Where a data file of the distribution is (rel: "static",
 * "config/common_nouns.txt", "config/twd.conf"): a twd run from its meson
 * build directory (its executable's folder or that folder's parent holds
 * build.ninja) prefers the source tree (TWD_SOURCE_ROOT); any other, i.e.
 * an installed twd, prefers TWD_DATADIR (PREFIX/share/twd). The other place
 * is used when the preferred one lacks rel, and the preferred path is given
 * when neither has it (so that a message names it). 0, or -1 when the path
 * does not fit in out. */
int config_data_path(char *out, size_t n, const char *rel);

/* Sets one option from text. 0 on success; -1 with a message naming the
 * option and the allowed range/values in err. */
int config_set(twd_config *c, const char *name, const char *value, char *err, size_t errlen);

/* Reads a `key = value` file ('#' comments, blank lines; a value in double
 * quotes keeps its spaces and '#'). It must be a regular file of at most
 * 1 MiB. 0 on success; -1 with "config file FILE: problem" (cannot be read)
 * or "FILE:LINE: message" in err. */
int config_load_file(twd_config *c, const char *path, char *err, size_t errlen);

/* Applies argv (after argv[0]): --config FILE is read first, then the other
 * flags in order: --model DIR, --port N, --listen ADDR, --threads N,
 * --workers N, --cache-dir DIR, --static-dir DIR, --pid-file FILE, --set KEY=VALUE,
 * --no-fetch (a value may also be written --flag=VALUE). --help and
 * --version print and stop; --print-config prints the effective
 * configuration once everything is applied. Returns 0 to run, 1 when
 * something was printed instead (exit 0), -1 on error (one line in err). */
int config_from_args(twd_config *c, int argc, char **argv, char *err, size_t errlen);

const cfg_option *config_find(const char *name);

/* Writes the option table as documentation (used by --help and tests). */
void config_print_table(FILE *out);

/* Writes a complete, commented configuration file: every option with its
 * documentation and default, set to its value in c (NULL: the defaults).
 * Options at their default are written as with no file and no flags, so
 * config/twd.conf is this output for the defaults. */
void config_print_conf(FILE *out, const twd_config *c);

/* The models option split into its specs (at most max, each < 4096
 * bytes, blanks trimmed). Returns how many. */
#define TWD_MAX_MODELS 16
size_t config_model_list(const twd_config *c, char specs[][4096], size_t max);

/* Checks that the options make sense together (cors_origin is not "null";
 * a non-loopback listen address has an api_key or insecure). 0, or -1 with
 * one line in err. */
int config_check(const twd_config *c, char *err, size_t errlen);

/* The api layer's settings (limits, cache budgets, layouts) from c. */
void config_api_settings(const twd_config *c, api_settings *s);

#endif
