/* api/: the route table, parameter validation, and JSON answers.
 *
 * The server hands over a parsed request (method, decoded path, strictly
 * percent-decoded query pairs, raw body) and gets back a finished response
 * (status, content type, body). Nothing here touches sockets. Every route is
 * one row of api_routes[]: its parameters are declared there with type and
 * bounds, validated before the handler runs, and described in /openapi.json
 * from the same rows. */
#ifndef TW_API_H
#define TW_API_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cancel.h"
#include "base/status.h"
#include "base/strbuf.h"
#include "core/model/gpt2.h"
#include "core/nn/forward.h"
#include "core/proj/layout.h"
#include "core/tok/tokenizer.h"

/* LOADING -> READY or FAILED at start-up; READY -> RELOADING when the
 * checkpoint file changes underneath (api_app_mark_changed), then READY
 * again, or FAILED until the file changes again. */
typedef enum { APP_LOADING = 0, APP_READY = 1, APP_FAILED = 2, APP_RELOADING = 3 } app_state;

/* Bounds on what one request may ask for; the server fills them from its
 * configuration (server/config.c documents each). */
typedef struct {
    int64_t max_text;          /* bytes of a text parameter */
    int64_t max_tokens;        /* tokens of a phrase (also capped by n_ctx) */
    int64_t max_words;         /* words in a probe word list */
    int64_t max_k;             /* tokens per list */
    int64_t max_top;           /* SVD directions per head */
    int64_t max_answer_tokens; /* tokens one answer may list */
    int64_t max_stats_texts;   /* texts of one /trajectory/stats request */
    int64_t max_stats_tokens;  /* tokens of all the texts of one /trajectory/stats request */
    double max_answer_bytes;   /* bytes of one answer (estimated before computing) */
} api_limits;

/* Everything the api layer is configured with. */
typedef struct {
    api_limits limits;
    size_t cache_bytes;        /* budget of the per-block intermediates */
    size_t answer_cache_bytes; /* budget of the finished answers */
    char words_file[4096];     /* default word list of /probe */
    char corpus_dir[4096];     /* the corpora /trajectory/stats ships with (<name>.txt) */
    layout_settings layout;    /* the background projections (rows, UMAP settings, cache folder) */
} api_settings;

/* The server's own counters (requests, latency, load time) in Prometheus
 * text, written into the /metrics answer before the api layer's gauges. */
typedef void (*api_metrics_render_fn)(void *ctx, strbuf *out);

struct api_ext; /* analysis state (caches, layouts), owned by the api layer */

struct api_service;

/* One model being served, and everything a handler may read of it.
 *
 * Who may read the model (model, tok, ext and what they point to): a
 * request holding a reference (api_app_acquire, taken by api_prepare for
 * every route that needs the model and dropped when its call is freed).
 * The model is only replaced (after its checkpoint changed) once no
 * reference is held: api_app_mark_changed turns the state away from READY,
 * so that no new reference is granted, and raises `changed`, which cancels
 * the computations under way; the reloader (server/reload.c) waits for
 * refs to reach 0 before freeing anything. */
typedef struct twd_app {
    api_settings set;
    _Atomic int state;           /* app_state */
    _Atomic long refs;           /* requests reading the model now */
    _Atomic int changed;         /* raised when the checkpoint changed; cancels work under way */
    pthread_mutex_t status_lock; /* guards status */
    char status[1024];           /* what loading is doing now, or why the model is not available */
    gpt2_model model;
    tokenizer *tok;
    char model_name[256];    /* e.g. "openai-community/gpt2" or the folder's name; unique in the service */
    char model_source[4096]; /* the checkpoint read */
    char model_origin[64];   /* "configured", "hf-cache", "twd-cache", "download", "demo" */
    bool synthetic;          /* weights generated, not trained */
    uint64_t synthetic_seed;
    double load_seconds; /* wall time of gpt2_load + tokenizer_load */
    struct api_ext *ext;
    struct api_service *svc; /* the service this model belongs to */
} twd_app;

/* Every model the daemon serves: routes that need a model take `model=`
 * (a name; default the first), the others (/health, /metrics, /models,
 * /openapi.json) speak for all. */
typedef struct api_service {
    twd_app **models;
    size_t n_models;
    api_metrics_render_fn metrics_render;
    void *metrics_ctx;
} api_service;

/* The model named `name`, or NULL. */
twd_app *api_find_model(const api_service *svc, const char *name, size_t len);

/* Prepares *app (LOADING, status "starting"); the caller then fills set,
 * the metrics hook and, once loaded, the model fields. */
void api_app_init(twd_app *app);
/* Sets the loading status shown by /health (printf-style). Thread-safe. */
void api_app_set_status(twd_app *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies the status. Thread-safe. */
void api_app_get_status(twd_app *app, char *out, size_t n);

/* A reference on the model for a reader: true when the model is READY
 * (then api_app_release must follow), false otherwise (nothing held). */
bool api_app_acquire(twd_app *app);
void api_app_release(twd_app *app);

/* The checkpoint changed (why: e.g. "truncated from 1.2 MB to 0 bytes"):
 * READY -> RELOADING, `changed` raised, the status says so, one log line.
 * True when this call made the change (false when it was not READY). */
bool api_app_mark_changed(twd_app *app, const char *why);

/* Called with a reference held: has the checkpoint file changed (or a page
 * of it failed to read)? Then marks the model changed and returns true.
 * One stat(). */
bool api_app_check(twd_app *app);

enum { API_GET = 1, API_POST = 2, API_HEAD = 4, API_OPTIONS = 8, API_OTHER = 16 };

typedef struct {
    char *key;
    size_t key_len;
    char *val;
    size_t val_len;
} api_kv;

typedef struct {
    int method;          /* one of API_GET.. */
    const api_kv *query; /* decoded query pairs (may contain NUL bytes) */
    size_t n_query;
    const char *body; /* raw body bytes (not NUL-terminated) */
    size_t body_len;
} api_request;

/* The bytes of an answer: immutable once made, shared by reference between
 * the answer cache and every connection that sends them, so a cached answer
 * exists once in memory however many clients receive it. */
typedef struct api_blob api_blob;

typedef struct {
    int status;
    const char *body; /* the answer's bytes, NUL-terminated; inside blob */
    size_t len;
    api_blob *blob;           /* owns body (one reference) */
    const char *content_type; /* static string */
    int retry_after;          /* seconds for Retry-After, 0 = none */
    char allow[48];           /* Allow header of a 405, empty = none */
    bool cached;              /* served from the answer cache */
} api_response;

/* Makes *res a `status` answer of the malloc'd bytes (len of them, followed by
 * a NUL), which it adopts. On allocation failure frees them and answers 500.
 * Returns 0 or -1. */
int api_respond(api_response *res, int status, const char *content_type, char *bytes, size_t len);

/* Sets *res to the answer held by blob (one more reference). */
void api_respond_blob(api_response *res, int status, const char *content_type, api_blob *blob);

api_blob *api_blob_ref(api_blob *b);
void api_blob_unref(api_blob *b); /* frees the bytes with the last reference; NULL ok */
const char *api_blob_data(const api_blob *b);
size_t api_blob_len(const api_blob *b);
/* A blob adopting `len` malloc'd bytes; NULL (bytes freed) when memory runs out. */
api_blob *api_blob_new(char *bytes, size_t len);

/* A second form of the same bytes kept beside them (the server keeps their
 * gzip encoding there), made once by whichever thread needs it first and
 * freed with the blob. api_blob_side: false when none was set yet; true
 * with *side the one set (NULL: it was found not worth making).
 * api_blob_set_side adopts `side` (NULL: none) unless one was set first,
 * and returns the side now kept (owned by b; NULL for none). */
bool api_blob_side(const api_blob *b, api_blob **side);
api_blob *api_blob_set_side(api_blob *b, api_blob *side);

/* ---- parameters ---- */
/* AP_BLOCKS: a block of the model (an integer, as AP_INT) or several: "all"
 * or a range "A-B" (A <= B, both within the bounds), computed block by block
 * (api/sweep.c).
 * AP_INTS: a list of integers, comma-separated in a query string or a JSON
 * array of integers in a body; every item in [min, max], between min_items
 * and max_items of them. */
typedef enum { AP_INT, AP_ENUM, AP_TEXT, AP_LIST, AP_BOOL, AP_BLOCKS, AP_INTS } api_ptype;
/* Upper bounds that depend on the model or the configuration. */
typedef enum {
    APB_CONST,      /* the row's own max */
    APB_LAST_LAYER, /* n_layer - 1 */
    APB_LAST_HEAD,  /* n_head - 1 */
    APB_MAX_K,      /* min(max_k, vocab_size) */
    APB_MAX_TOP,    /* max_top */
    APB_HEAD_DIM,   /* the head dimension n_embd / n_head */
    APB_MLP_RANK,   /* min(n_embd, n_inner): the rank of c_fc and c_proj */
    APB_N_INNER,    /* n_inner (d_ff) */
    APB_MAX_WORDS,  /* max_words */
    APB_MAX_TEXT,   /* max_text (bytes) */
    APB_MAX_TOKENS, /* max_tokens */
    APB_LAST_TOKEN, /* the last id both the model and its tokenizer know */
    APB_LAST_FF,    /* n_inner - 1 (an MLP neuron) */
    APB_LAST_DIM,   /* n_embd - 1 (a coordinate of the residual stream) */
    APB_MAX_K_FF,   /* min(max_k, vocab_size, n_inner): lists over tokens and neurons */
    APB_MAX_TEXTS,  /* max_stats_texts */
} api_bound;

typedef struct {
    const char *name;
    api_ptype type;
    bool required;
    const char *def; /* default as text, NULL = absent */
    int64_t min;
    api_bound max_ref;
    int64_t max; /* when max_ref == APB_CONST */
    /* AP_INT: a model-dependent count the value is clamped to when larger
     * (e.g. top: more directions than the head has means all of them); the
     * client cannot know it in advance, so it is not refused. APB_CONST:
     * none. */
    api_bound clamp_ref;
    const char *const *choices; /* AP_ENUM: NULL-terminated */
    const char *doc;
    api_bound item_ref; /* AP_LIST: bound of an item's length in bytes; APB_CONST: 256 */
    /* AP_INTS: item count bounds; max_items_ref as max_ref (APB_CONST: max_items, 0 meaning 1 << 20) */
    int64_t min_items, max_items;
    api_bound max_items_ref;
} api_param;

/* The sentinel row that ends a parameter table. */
#define API_PARAMS_END                                                                                       \
    {                                                                                                        \
        .name = NULL                                                                                         \
    }

#define API_MAX_PARAMS 16

typedef struct {
    const api_param *spec;
    bool present;  /* given by the client (not defaulted) */
    int64_t i;     /* AP_INT, AP_BOOL; AP_BLOCKS: the first block */
    int64_t last;  /* AP_BLOCKS: the last block (== i for one block) */
    bool sweep;    /* AP_BLOCKS: "all" or "A-B" was given (an answer per block) */
    const char *s; /* AP_ENUM, AP_TEXT (NUL-terminated, valid UTF-8) */
    size_t s_len;
    char **list; /* AP_LIST: valid UTF-8 strings; AP_INTS: the items in canonical decimal */
    size_t n_list;
    int64_t *ints; /* AP_INTS: the items (n_list of them) */
} api_arg;

typedef struct {
    api_arg v[API_MAX_PARAMS];
    size_t n;
    void *arena;             /* owns strings; freed with the call */
    const tw_cancel *cancel; /* the request's cancel flag and deadline; NULL: never stops */
    size_t answer_blocks;    /* blocks the whole answer holds (a sweep's; 0 or 1: one) */
    int64_t sweep_last;      /* a sweep: the last block it will ask for (a handler may compute ahead) */
    bool check_only; /* a sweep asks the handler for its checks only (see api_check_answer_size_for) */
} api_args;

/* The upper bound of a parameter for the loaded model and configuration,
 * and of an AP_INTS parameter's item count. */
int64_t api_param_max(const twd_app *app, const api_param *p);
int64_t api_param_max_items(const twd_app *app, const api_param *p);
/* An AP_INT value x as it is used: at most what the model has (clamp_ref:
 * top=20 on 16-dimensional heads answers 16), never below the minimum. */
int64_t api_param_used(const twd_app *app, const api_param *p, int64_t x);
/* An AP_INT parameter's default as it is used: above the parameter's bound,
 * or above what the model has (clamp_ref: top=20 on 16-dimensional heads),
 * it is that. */
int64_t api_param_default(const twd_app *app, const api_param *p);

/* The longest item of an AP_LIST parameter, in bytes. */
int64_t api_param_item_max(const twd_app *app, const api_param *p);

/* The argument `name` of the route being served. A name the route's table
 * does not have is a bug in the handler: these abort with a message rather
 * than answer with a silent default. */
const api_arg *api_arg_get(const api_args *a, const char *name);
int64_t api_int(const api_args *a, const char *name);     /* 0 if not given and no default */
const char *api_str(const api_args *a, const char *name); /* NULL if not given and no default */

/* ---- routes ---- */
/* A route's handler: computes the answer from validated arguments. */
typedef int (*api_handler)(twd_app *app, const api_args *args, api_response *res);

enum {
    API_NEEDS_MODEL = 1, /* 503 until the model is loaded */
    API_HEAVY = 2,       /* runs on a worker thread, never on an HTTP thread */
    API_CACHEABLE = 4,   /* finished answers are kept (keyed by route + args) */
};

/* One kind of 200 answer of a route, as /openapi.json describes it
 * (api/openapi.c): the answer to format=`format` (NULL: the route has no
 * format parameter) and, for a CSV answer of several tables, table=`table`.
 * `schema` is the answer's shape in the notation of api/openapi.h (a JSON
 * answer's whole document; a CSV table's row, its members the columns in
 * order); NULL for a text or binary answer, which `doc` describes. */
typedef struct {
    const char *format;
    const char *table;
    const char *type; /* media type; NULL: the format's (json, csv, latex, npy) */
    const char *schema;
    const char *doc; /* what the answer is; NULL ends a table of answers */
} api_answer;

/* The sentinel row that ends a table of answers. */
#define API_ANSWERS_END                                                                                      \
    {                                                                                                        \
        .doc = NULL                                                                                          \
    }

typedef struct {
    const char *path;
    int methods; /* API_GET | API_POST ... */
    api_handler fn;
    const api_param *params; /* terminated by {NULL} */
    int flags;
    const char *summary;
    const char *description;
    const api_answer *answers; /* every 200 answer; terminated by API_ANSWERS_END */
} api_route;

extern const api_route api_routes[];

/* Route lookup: returns the route for `path`, or NULL. */
const api_route *api_find_route(const char *path);

/* The Allow header of a route ("GET, HEAD", "GET, HEAD, POST"), for 405
 * answers and OPTIONS alike. */
const char *api_allow_header(const api_route *r);

/* A request that passed every check and waits for its handler. */
typedef struct {
    const api_route *route;
    twd_app *app; /* the model it is about */
    bool held;    /* a reference on app is held (released by api_call_free) */
    api_args args;
    char *key; /* answer-cache key, or NULL */
    size_t klen;
} api_call;

enum { API_DONE = 0, API_COMPUTE = 1 };

/* The checks of every request, in one place and in this order: method (405
 * with Allow), readiness (503 with Retry-After), parameters (400 naming the
 * parameter and its allowed range), the answer cache. Cheap: meant for the
 * HTTP thread. Returns API_DONE when *res holds the answer (an error, a
 * cached answer, or the answer of a light route, computed here), or
 * API_COMPUTE when the route is heavy: then *call must be passed to
 * api_compute (on a worker) or api_call_free. */
int api_prepare(api_service *svc, const api_route *route, const api_request *req, api_call *call,
                api_response *res);

/* A call of `route` on app with the arguments of the decoded pairs query
 * (as a GET's query; no answer-cache lookup), for work that runs outside
 * its request (POST /sweep/job). 0, or -1 with *res the 400 or 503. */
int api_prepare_args(twd_app *app, const api_route *route, const api_kv *query, size_t n_query,
                     api_call *call, api_response *res);

/* Runs the handler of a prepared call, keeps a 200 answer in the answer
 * cache, and frees the call. An answer computed while the checkpoint
 * changed is replaced by the 503 of api_app_unavailable and not kept. */
void api_compute(api_call *call, api_response *res);
void api_call_free(api_call *call);

/* Makes c (the request's cancel flag) also stop when the call's model
 * changes. */
void api_call_link_cancel(const api_call *call, tw_cancel *c);

/* Answers a prepared call that will not be computed, because its request
 * was canceled or passed its deadline (why: TW_ECANCELED, TW_ETIMEDOUT),
 * and frees it; a call whose model changed meanwhile answers as
 * api_app_unavailable. */
void api_call_abandon(api_call *call, int why, api_response *res);

/* api_prepare then, when needed, api_compute: a request end to end. */
void api_dispatch(api_service *svc, const api_route *route, const api_request *req, api_response *res);

/* ---- answers ---- */
/* Client input quoted in a message: at most 40 bytes (then "..."), control
 * bytes as '?'. out has room for at least 48 bytes. (api_error also
 * replaces invalid UTF-8.) */
void api_quote(char *out, size_t outlen, const char *s, size_t n);

/* Sets *res to the one JSON error shape
 *   {"error": {"code": status, "type": "...", "message": "..."}}
 * The type is derived from the status. Returns -1 for handler convenience. */
int api_error(api_response *res, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct json_t;
/* Serialises and takes ownership of `root` (decref'd). Returns 0. */
int api_json(api_response *res, int status, struct json_t *root);

/* Plain text answer with the given static content type; copies the text. */
int api_text(api_response *res, int status, const char *content_type, const char *text, size_t len);

void api_response_free(api_response *res);

/* The one mapping of a core status code (base/status.h) to an answer:
 * arguments out of range 400; out of memory 503 with Retry-After; a
 * background result not ready 503 with Retry-After; canceled or past its
 * deadline 503; anything else (a bug, a file fault) 500. The message is
 * "<what>: <reason>". Returns -1 (docs/ARCHITECTURE.md, Errors). */
int api_status_error(api_response *res, int rc, const char *what);

/* The 503 answer of a model that is not READY: still loading (Retry-After),
 * reloading after its checkpoint changed (naming the file; Retry-After), or
 * failed (the loader's message). */
void api_app_unavailable(twd_app *app, api_response *res);

/* The api layer's gauges (caches, the UMAP fit) in Prometheus text. */
void api_render_metrics(const api_service *svc, strbuf *out);

/* Encodes client text (the parameter `param`) with the model's tokenizer:
 * the token count with the ids in *ids (caller frees), or -1 with *res set
 * (400 naming the character a character-level vocabulary lacks; 503 when
 * memory runs out). */
long api_encode(twd_app *app, const char *param, const char *text, size_t len, int32_t **ids,
                api_response *res);

/* Encodes the 'text' parameter as the phrase of a forward pass: 1 to
 * min(max_tokens, n_ctx) tokens, all inside the model's vocabulary. Returns
 * the token count with the ids in *ids (caller frees), or -1 with *res set. */
long api_encode_phrase(twd_app *app, const api_arg *text, api_response *res, int32_t **ids);

/* A parameter naming one token (e.g. 'target', 'token'): digits are an id,
 * anything else must encode to exactly one token. The id; -1 when absent;
 * -2 with *res set (400). */
int32_t api_token_arg(twd_app *app, const api_arg *t, api_response *res);

/* The 'gelu' parameter as the forward pass's GELU form. */
gpt2_gelu api_gelu(const api_args *a);

/* 0 if an answer listing `n` tokens is within max_answer_tokens; otherwise a
 * 400 naming what to reduce (`what`, e.g. "words or k") and -1. */
int api_check_answer_size(const twd_app *app, api_response *res, double n, const char *what);

/* The same for a handler whose one-block answer lists `n` tokens, in a
 * request that may be a sweep of a->answer_blocks blocks (the limit bounds
 * the whole answer; "or fewer blocks" is added to what to reduce). Returns
 * -1 with the 400; 1 when the checks passed and a->check_only asks for
 * nothing more (the handler then returns 0 without an answer); else 0:
 *     int c = api_check_answer_size_for(app, a, res, n, "k");
 *     if (c) return c < 0 ? -1 : 0; */
int api_check_answer_size_for(const twd_app *app, const api_args *a, api_response *res, double n,
                              const char *what);

/* 0 if an answer of about `bytes` bytes (or, for JSON, the memory that
 * building it takes) is within max_answer_mb; otherwise a 400 naming what to
 * reduce and -1. */
int api_check_answer_bytes(const twd_app *app, api_response *res, double bytes, const char *what);

/* Initialisation after the model is READY (caches etc.) and tear-down. */
int api_init(twd_app *app, char *err, size_t errlen);
void api_shutdown(twd_app *app);

#endif
