/* Route lookup, parameter validation, the error shape and answer helpers. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/answer_cache.h"
#include "api/api.h"
#include "api/ext.h"
#include "api/json.h"
#include "api/sweep.h"
#include "base/log.h"
#include "base/utf8.h"

/* ---------- answers ---------- */

static const char *error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 413: return "payload_too_large";
    case 414: return "uri_too_long";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    case 505: return "http_version_not_supported";
    default: return status >= 500 ? "internal_error" : "invalid_request";
    }
}

struct api_blob {
    _Atomic long refs;
    size_t len;
    char *data;
    _Atomic uintptr_t side; /* 0: not made yet, SIDE_NONE: none, else an api_blob * */
};

#define SIDE_NONE ((uintptr_t)1)

api_blob *api_blob_ref(api_blob *b)
{
    if (b) atomic_fetch_add(&b->refs, 1);
    return b;
}

void api_blob_unref(api_blob *b)
{
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
    uintptr_t side = atomic_load(&b->side);
    if (side > SIDE_NONE) api_blob_unref((api_blob *)side);
    free(b->data);
    free(b);
}

api_blob *api_blob_new(char *bytes, size_t len)
{
    api_blob *b = bytes ? malloc(sizeof *b) : NULL;
    if (!b) {
        free(bytes);
        return NULL;
    }
    atomic_init(&b->refs, 1);
    atomic_init(&b->side, 0);
    b->len = len;
    b->data = bytes;
    return b;
}

bool api_blob_side(const api_blob *b, api_blob **side)
{
    uintptr_t s = atomic_load(&b->side);
    *side = s > SIDE_NONE ? (api_blob *)s : NULL;
    return s != 0;
}

api_blob *api_blob_set_side(api_blob *b, api_blob *side)
{
    uintptr_t want = 0, s = side ? (uintptr_t)side : SIDE_NONE;
    if (atomic_compare_exchange_strong(&b->side, &want, s)) return side;
    api_blob_unref(side); /* another thread made it first */
    return want > SIDE_NONE ? (api_blob *)want : NULL;
}

const char *api_blob_data(const api_blob *b) { return b->data; }
size_t api_blob_len(const api_blob *b) { return b->len; }

void api_response_free(api_response *res)
{
    api_blob_unref(res->blob);
    res->blob = NULL;
    res->body = NULL;
    res->len = 0;
}

void api_respond_blob(api_response *res, int status, const char *content_type, api_blob *blob)
{
    api_response_free(res);
    res->status = status;
    res->content_type = content_type;
    res->blob = api_blob_ref(blob);
    res->body = blob->data;
    res->len = blob->len;
}

/* The answer of last resort, when even an error cannot be allocated. */
static char oom_text[] =
    "{\"error\":{\"code\":500,\"type\":\"internal_error\",\"message\":\"out of memory\"}}";
static api_blob oom_blob = {1, sizeof oom_text - 1, oom_text, SIDE_NONE};

int api_respond(api_response *res, int status, const char *content_type, char *bytes, size_t len)
{
    api_blob *b = api_blob_new(bytes, len);
    if (!b) {
        api_respond_blob(res, 500, "application/json", &oom_blob);
        return -1;
    }
    api_response_free(res);
    res->status = status;
    res->content_type = content_type;
    res->blob = b;
    res->body = b->data;
    res->len = len;
    return 0;
}

int api_text(api_response *res, int status, const char *content_type, const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    return api_respond(res, status, content_type, copy, len);
}

int api_json(api_response *res, int status, json_t *root)
{
    const char *fault = api_fault_take();
    if (fault || !root) {
        json_decref(root);
        tw_log("could not build a JSON answer: %s", fault ? fault : "out of memory");
        return api_error(res, 500, "could not build the answer: it holds %s; this is a bug, please report it",
                         fault ? fault : "a value that could not be built (out of memory)");
    }
    /* 9 significant digits: what float32 carries (docs/API.md, Numbers) */
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!s) {
        tw_log("could not serialise a JSON answer (out of memory)");
        static const char fallback[] = "{\"error\":{\"code\":500,\"type\":\"internal_error\",\"message\":"
                                       "\"could not build the answer\"}}";
        api_text(res, 500, "application/json", fallback, sizeof fallback - 1);
        return -1;
    }
    return api_respond(res, status, "application/json", s, strlen(s));
}

void api_quote(char *out, size_t outlen, const char *s, size_t n)
{
    size_t k = n < 40 ? n : 40;
    if (k + 4 > outlen) k = outlen > 4 ? outlen - 4 : 0;
    for (size_t i = 0; i < k; i++) out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[k] = '\0';
    if (k < n) strcat(out, "...");
}

int api_error(api_response *res, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* messages may quote client input: never let invalid UTF-8 through */
    char *clean = utf8_sanitize(msg, strlen(msg), NULL);
    json_t *root = json_pack("{s:{s:i,s:s,s:s}}", "error", "code", status, "type", error_type(status),
                             "message", clean ? clean : "error");
    free(clean);
    api_json(res, status, root);
    return -1;
}

int api_status_error(api_response *res, int rc, const char *what)
{
    const char *why = tw_strerror(rc);
    if (tw_status_is_range(rc)) return api_error(res, 400, "%s: %s", what, why);
    switch (rc) {
    case TW_ENOMEM:
        api_error(res, 503, "%s: not enough memory for this request; retry later", what);
        res->retry_after = 5;
        return -1;
    case TW_ENOTREADY:
        api_error(res, 503, "%s: not ready yet; retry shortly", what);
        res->retry_after = 2;
        return -1;
    case TW_EBUDGET: /* no Retry-After: waiting cannot help */
        return api_error(res, 503, "%s: needs more intermediate memory than cache_mb allows", what);
    case TW_ECANCELED: return api_error(res, 503, "%s: canceled", what);
    case TW_ETIMEDOUT: return api_error(res, 503, "%s: the computation passed its deadline", what);
    default: return api_error(res, 500, "%s: internal error: %s", what, why);
    }
}

long api_encode(twd_app *app, const char *param, const char *text, size_t len, int32_t **ids,
                api_response *res)
{
    long n = tokenizer_encode(app->tok, text, len, ids);
    if (n >= 0) return n;
    if (n == -1) return api_status_error(res, TW_ENOMEM, "tokenizing");
    size_t cl = 0;
    long at = tokenizer_unknown_char(app->tok, text, len, &cl);
    char shown[64];
    api_quote(shown, sizeof shown, at >= 0 ? text + at : "", at >= 0 ? cl : 0);
    if (at < 0)
        return api_error(res, 400, "parameter '%s' is not valid UTF-8 for this model's character vocabulary",
                         param);
    return api_error(res, 400,
                     "parameter '%s': the character '%s' at byte %ld is not in this model's vocabulary "
                     "(a character-level model knows only the characters it was trained on)",
                     param, shown, at);
}

gpt2_gelu api_gelu(const api_args *a)
{
    return strcmp(api_str(a, "gelu"), "erf") == 0 ? GPT2_GELU_ERF : GPT2_GELU_TANH;
}

long api_encode_phrase(twd_app *app, const api_arg *text, api_response *res, int32_t **ids)
{
    const gpt2_config *c = &app->model.cfg;
    long n = api_encode(app, "text", text->s, text->s_len, ids, res);
    if (n < 0) return -1;
    long cap = app->set.limits.max_tokens < c->n_ctx ? (long)app->set.limits.max_tokens : c->n_ctx;
    const char *bad = NULL;
    char msg[160];
    if (n == 0)
        bad = "encodes to no tokens";
    else if (n > cap) {
        snprintf(msg, sizeof msg, "is %ld tokens long; the limit is %ld tokens", n, cap);
        bad = msg;
    }
    for (long i = 0; !bad && i < n; i++)
        if ((*ids)[i] >= c->vocab_size) {
            snprintf(msg, sizeof msg, ": token %d is outside the model's vocabulary", (*ids)[i]);
            bad = msg;
        }
    if (!bad) return n;
    free(*ids);
    *ids = NULL;
    return api_error(res, 400, "parameter 'text'%s%s", bad[0] == ':' ? "" : " ", bad);
}

int32_t api_token_arg(twd_app *app, const api_arg *t, api_response *res)
{
    if (!t->present) return -1;
    int V = app->model.cfg.vocab_size;
    bool digits = t->s_len > 0 && t->s_len <= 9;
    for (size_t i = 0; digits && i < t->s_len; i++) digits = t->s[i] >= '0' && t->s[i] <= '9';
    if (digits) {
        long id = strtol(t->s, NULL, 10);
        if (id < V) return (int32_t)id;
        api_error(res, 400, "parameter '%s': token id %ld is outside 0..%d", t->spec->name, id, V - 1);
        return -2;
    }
    int32_t *ids = NULL;
    long n = api_encode(app, t->spec->name, t->s, t->s_len, &ids, res);
    if (n < 0) return -2;
    int32_t id = n == 1 ? ids[0] : -1;
    free(ids);
    if (n == 1 && id < V) return id;
    char shown[64];
    api_quote(shown, sizeof shown, t->s, t->s_len);
    api_error(res, 400,
              "parameter '%s' must be a token id or text that is exactly one token; '%s' is %ld tokens",
              t->spec->name, shown, n);
    return -2;
}

int api_check_answer_bytes(const twd_app *app, api_response *res, double bytes, const char *what)
{
    if (bytes <= app->set.limits.max_answer_bytes) return 0;
    return api_error(res, 400,
                     "the answer would take about %.0f MiB; the limit is %.0f MiB (max_answer_mb): %s",
                     bytes / 1048576.0, app->set.limits.max_answer_bytes / 1048576.0, what);
}

int api_check_answer_size(const twd_app *app, api_response *res, double n, const char *what)
{
    if (n <= (double)app->set.limits.max_answer_tokens) return 0;
    return api_error(res, 400,
                     "the answer would list %.0f tokens; the limit is %lld (max_answer_tokens): reduce %s", n,
                     (long long)app->set.limits.max_answer_tokens, what);
}

int api_check_answer_size_for(const twd_app *app, const api_args *a, api_response *res, double n,
                              const char *what)
{
    size_t blocks = a->answer_blocks > 1 ? a->answer_blocks : 1;
    if (blocks > 1) {
        double total = n * (double)blocks;
        if (total > (double)app->set.limits.max_answer_tokens)
            return api_error(res, 400,
                             "the answer would list %.0f tokens (%zu blocks of %.0f); the limit is %lld "
                             "(max_answer_tokens): reduce %s, or ask for fewer blocks",
                             total, blocks, n, (long long)app->set.limits.max_answer_tokens, what);
    } else if (api_check_answer_size(app, res, n, what) != 0) {
        return -1;
    }
    return a->check_only ? 1 : 0;
}

/* ---------- routes ---------- */

const api_route *api_find_route(const char *path)
{
    for (const api_route *r = api_routes; r->path; r++)
        if (strcmp(r->path, path) == 0) return r;
    return NULL;
}

const api_arg *api_arg_get(const api_args *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].spec->name, name) == 0) return &a->v[i];
    tw_log("BUG: a handler asked for parameter '%s', which its route does not declare", name);
    abort();
}

int64_t api_int(const api_args *a, const char *name) { return api_arg_get(a, name)->i; }

const char *api_str(const api_args *a, const char *name) { return api_arg_get(a, name)->s; }

/* ---------- argument storage ---------- */

typedef struct {
    void **p;
    size_t n, cap;
} arena;

static void *arena_keep(api_args *a, void *p)
{
    if (!p) return NULL;
    arena *ar = a->arena;
    if (!ar) {
        ar = a->arena = calloc(1, sizeof *ar);
        if (!ar) {
            free(p);
            return NULL;
        }
    }
    if (ar->n == ar->cap) {
        size_t nc = ar->cap ? ar->cap * 2 : 16;
        void **np = realloc(ar->p, nc * sizeof *np);
        if (!np) {
            free(p);
            return NULL;
        }
        ar->p = np;
        ar->cap = nc;
    }
    ar->p[ar->n++] = p;
    return p;
}

static char *arena_strndup(api_args *a, const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return arena_keep(a, d);
}

static void api_args_free(api_args *a)
{
    arena *ar = a->arena;
    if (ar) {
        for (size_t i = 0; i < ar->n; i++) free(ar->p[i]);
        free(ar->p);
        free(ar);
    }
    a->arena = NULL;
}

/* ---------- validation ---------- */

/* The value of bound `ref` for the loaded model and configuration (konst
 * for APB_CONST). */
static int64_t bound_value(const twd_app *app, api_bound ref, int64_t konst)
{
    const api_limits *c = &app->set.limits;
    const gpt2_config *m = &app->model.cfg;
    switch (ref) {
    case APB_CONST: return konst;
    case APB_LAST_LAYER: return m->n_layer - 1;
    case APB_LAST_HEAD: return m->n_head - 1;
    case APB_MAX_K: return c->max_k < m->vocab_size ? c->max_k : m->vocab_size;
    case APB_MAX_TOP: return c->max_top;
    case APB_HEAD_DIM: return m->n_head > 0 ? m->n_embd / m->n_head : 0;
    case APB_MLP_RANK: return m->n_embd < m->n_inner ? m->n_embd : m->n_inner;
    case APB_N_INNER: return m->n_inner;
    case APB_MAX_WORDS: return c->max_words;
    case APB_MAX_TEXT: return c->max_text;
    case APB_MAX_TOKENS: return c->max_tokens;
    case APB_LAST_TOKEN: {
        int64_t v = m->vocab_size;
        if (app->tok && tokenizer_vocab_size(app->tok) < v) v = tokenizer_vocab_size(app->tok);
        return v - 1;
    }
    case APB_LAST_FF: return m->n_inner - 1;
    case APB_LAST_DIM: return m->n_embd - 1;
    case APB_MAX_K_FF: {
        int64_t k = c->max_k < m->vocab_size ? c->max_k : m->vocab_size;
        return k < m->n_inner ? k : m->n_inner;
    }
    case APB_MAX_TEXTS: return c->max_stats_texts;
    }
    return konst;
}

int64_t api_param_max(const twd_app *app, const api_param *p) { return bound_value(app, p->max_ref, p->max); }

int64_t api_param_used(const twd_app *app, const api_param *p, int64_t x)
{
    if (p->clamp_ref == APB_CONST) return x;
    int64_t most = bound_value(app, p->clamp_ref, 0);
    if (x <= most) return x;
    return most < p->min ? p->min : most;
}

int64_t api_param_default(const twd_app *app, const api_param *p)
{
    int64_t d = strtoll(p->def, NULL, 10), hi = api_param_max(app, p);
    return api_param_used(app, p, d < hi ? d : hi);
}

int64_t api_param_max_items(const twd_app *app, const api_param *p)
{
    return bound_value(app, p->max_items_ref, p->max_items > 0 ? p->max_items : (int64_t)1 << 20);
}

int64_t api_param_item_max(const twd_app *app, const api_param *p)
{
    return bound_value(app, p->item_ref, 256);
}

static void choices_text(const api_param *p, char *out, size_t n)
{
    out[0] = '\0';
    size_t o = 0;
    for (const char *const *c = p->choices; c && *c; c++) {
        int w = snprintf(out + o, n - o, "%s%s", o ? ", " : "", *c);
        if (w < 0 || (size_t)w >= n - o) break;
        o += (size_t)w;
    }
}

static int word_item_check(const twd_app *app, api_response *res, const api_param *p, const char *s, size_t n,
                           size_t idx)
{
    int64_t max = api_param_item_max(app, p);
    if (n == 0) return api_error(res, 400, "parameter '%s': item %zu is empty", p->name, idx);
    if ((int64_t)n > max)
        return api_error(res, 400, "parameter '%s': item %zu is longer than %" PRId64 " bytes", p->name, idx,
                         max);
    if (!utf8_valid(s, n))
        return api_error(res, 400, "parameter '%s': item %zu is not valid UTF-8", p->name, idx);
    if (memchr(s, '\0', n))
        return api_error(res, 400, "parameter '%s': item %zu contains a NUL byte", p->name, idx);
    return 0;
}

/* One value as the client gave it: text from the query string (s, n), or a
 * JSON value from the body (j, with s NULL). */
typedef struct {
    const char *s;
    size_t n;
    const json_t *j;
    char shown[64]; /* the text, cut for messages */
} raw_value;

static void raw_init(raw_value *v, const char *s, size_t n, const json_t *j)
{
    v->s = s;
    v->n = n;
    v->j = j;
    v->shown[0] = '\0';
    if (s) api_quote(v->shown, sizeof v->shown, s, n);
}

/* Strict decimal: an optional '-' and 1..18 digits, nothing else (no
 * spaces, no '+', no NUL). */
static int strict_integer(const char *s, size_t n, long long *out)
{
    size_t i = n && s[0] == '-';
    if (n == i || n - i > 18) return -1;
    long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = s[0] == '-' ? -v : v;
    return 0;
}

static int parse_int(const twd_app *app, const api_param *p, const raw_value *v, api_arg *out,
                     api_response *res)
{
    int64_t hi = api_param_max(app, p);
    long long x;
    if (v->j) {
        if (!json_is_integer(v->j))
            return api_error(res, 400, "parameter '%s' must be an integer in %" PRId64 "..%" PRId64, p->name,
                             p->min, hi);
        x = json_integer_value(v->j);
    } else if (strict_integer(v->s, v->n, &x) != 0) {
        return api_error(res, 400, "parameter '%s' must be an integer in %" PRId64 "..%" PRId64 ", got '%s'",
                         p->name, p->min, hi, v->shown);
    }
    if (x < p->min || x > hi)
        return api_error(res, 400, "parameter '%s' must be in %" PRId64 "..%" PRId64 ", got %lld", p->name,
                         p->min, hi, x);
    out->i = api_param_used(app, p, x);
    return 0;
}

/* AP_BLOCKS: an integer (one block, as AP_INT), "all", or "A-B". */
static int parse_blocks(const twd_app *app, const api_param *p, const raw_value *v, api_arg *out,
                        api_response *res)
{
    int64_t hi = api_param_max(app, p);
    if (v->j && json_is_integer(v->j)) {
        if (parse_int(app, p, v, out, res) != 0) return -1;
        out->last = out->i;
        out->sweep = false;
        return 0;
    }
    const char *s = v->s;
    size_t n = v->n;
    char shown[64];
    if (v->j && !json_is_string(v->j))
        return api_error(res, 400,
                         "parameter '%s' must be an integer in %" PRId64 "..%" PRId64
                         " (one block), \"all\", or a range \"A-B\"",
                         p->name, p->min, hi);
    if (v->j) {
        s = json_string_value(v->j);
        n = json_string_length(v->j);
        api_quote(shown, sizeof shown, s, n);
    } else {
        snprintf(shown, sizeof shown, "%s", v->shown);
    }
    if (n == 3 && memcmp(s, "all", 3) == 0) {
        out->i = p->min;
        out->last = hi;
        out->sweep = true;
        return 0;
    }
    const char *dash = n > 1 ? memchr(s + 1, '-', n - 1) : NULL; /* a leading '-' is a sign */
    long long a, b;
    if (!dash) {
        /* one block: an integer (in a JSON body, a JSON integer, not a string) */
        if (v->j || strict_integer(s, n, &a) != 0)
            return api_error(res, 400,
                             "parameter '%s' must be an integer in %" PRId64 "..%" PRId64
                             " (one block), \"all\", or a range A-B, got '%s'",
                             p->name, p->min, hi, shown);
        if (a < p->min || a > hi)
            return api_error(res, 400, "parameter '%s' must be in %" PRId64 "..%" PRId64 ", got %lld",
                             p->name, p->min, hi, a);
        out->i = out->last = a;
        out->sweep = false;
        return 0;
    }
    size_t la = (size_t)(dash - s);
    if (strict_integer(s, la, &a) != 0 || strict_integer(dash + 1, n - la - 1, &b) != 0 || a < 0 || b < 0)
        return api_error(res, 400,
                         "parameter '%s' must be an integer in %" PRId64 "..%" PRId64
                         " (one block), \"all\", or a range A-B of two blocks, got '%s'",
                         p->name, p->min, hi, shown);
    if (a > b)
        return api_error(res, 400, "parameter '%s': the range %lld-%lld is reversed (write %lld-%lld)",
                         p->name, a, b, b, a);
    if (a < p->min || b > hi)
        return api_error(res, 400, "parameter '%s': the range %lld-%lld is outside %" PRId64 "..%" PRId64,
                         p->name, a, b, p->min, hi);
    out->i = a;
    out->last = b;
    out->sweep = true;
    return 0;
}

static int parse_bool(const api_param *p, const raw_value *v, api_arg *out, api_response *res)
{
    if (v->j) {
        if (!json_is_boolean(v->j))
            return api_error(res, 400, "parameter '%s' must be true or false", p->name);
        out->i = json_is_true(v->j);
        return 0;
    }
    if ((v->n == 4 && !memcmp(v->s, "true", 4)) || (v->n == 1 && v->s[0] == '1'))
        out->i = 1;
    else if ((v->n == 5 && !memcmp(v->s, "false", 5)) || (v->n == 1 && v->s[0] == '0'))
        out->i = 0;
    else
        return api_error(res, 400, "parameter '%s' must be true or false, got '%s'", p->name, v->shown);
    return 0;
}

/* AP_ENUM and AP_TEXT: a string. */
static int parse_string(const twd_app *app, const api_param *p, const raw_value *v, api_arg *out,
                        api_args *args, api_response *res)
{
    const char *s = v->s;
    size_t n = v->n;
    if (v->j) {
        if (!json_is_string(v->j)) return api_error(res, 400, "parameter '%s' must be a string", p->name);
        s = json_string_value(v->j);
        n = json_string_length(v->j);
    }
    if (!utf8_valid(s, n)) return api_error(res, 400, "parameter '%s' is not valid UTF-8", p->name);
    if (p->type == AP_ENUM) {
        for (const char *const *c = p->choices; *c; c++)
            if (strlen(*c) == n && memcmp(*c, s, n) == 0) {
                out->s = *c;
                out->s_len = n;
                return 0;
            }
        char ch[256];
        choices_text(p, ch, sizeof ch);
        return api_error(res, 400, "parameter '%s' must be one of %s, got '%s'", p->name, ch,
                         v->j ? json_string_value(v->j) : v->shown);
    }
    int64_t hi = api_param_max(app, p);
    if (memchr(s, '\0', n)) return api_error(res, 400, "parameter '%s' contains a NUL byte", p->name);
    if ((int64_t)n < p->min) return api_error(res, 400, "parameter '%s' must not be empty", p->name);
    if ((int64_t)n > hi)
        return api_error(res, 400, "parameter '%s' is %zu bytes long; the limit is %" PRId64 " bytes",
                         p->name, n, hi);
    out->s = arena_strndup(args, s, n);
    out->s_len = n;
    return out->s ? 0 : api_status_error(res, TW_ENOMEM, "parameters");
}

/* The i-th item of a list: the i-th string of a JSON array, or the i-th
 * comma-separated piece of the text (*cur walks the text). */
static int list_item(const api_param *p, const raw_value *v, size_t i, const char **cur, const char **item,
                     size_t *len, api_response *res)
{
    if (v->j) {
        const json_t *e = json_array_get(v->j, i);
        if (!json_is_string(e))
            return api_error(res, 400, "parameter '%s': item %zu is not a string", p->name, i);
        *item = json_string_value(e);
        *len = json_string_length(e);
        return 0;
    }
    const char *end = v->s + v->n;
    const char *comma = memchr(*cur, ',', (size_t)(end - *cur));
    *item = *cur;
    *len = comma ? (size_t)(comma - *cur) : (size_t)(end - *cur);
    *cur = *item + *len + 1;
    return 0;
}

/* The item count of a list (a JSON array, or comma-separated text), checked
 * against the parameter's bounds. */
static int list_count(const twd_app *app, const api_param *p, const raw_value *v, const char *items,
                      size_t *count, api_response *res)
{
    int64_t hi = api_param_max(app, p);
    size_t n = 0;
    if (v->j) {
        if (!json_is_array(v->j))
            return api_error(res, 400, "parameter '%s' must be an array of %s", p->name, items);
        n = json_array_size(v->j);
    } else if (v->n) {
        n = 1;
        for (size_t i = 0; i < v->n; i++) n += v->s[i] == ',';
    }
    if ((int64_t)n < p->min)
        return api_error(res, 400, "parameter '%s' must hold at least %" PRId64 " item(s)", p->name, p->min);
    if ((int64_t)n > hi)
        return api_error(res, 400, "parameter '%s' holds %zu items; the limit is %" PRId64, p->name, n, hi);
    *count = n;
    return 0;
}

static int parse_list(const twd_app *app, const api_param *p, const raw_value *v, api_arg *out,
                      api_args *args, api_response *res)
{
    size_t count = 0;
    if (list_count(app, p, v, "strings", &count, res) != 0) return -1;
    out->list = arena_keep(args, calloc(count ? count : 1, sizeof(char *)));
    if (!out->list) return api_status_error(res, TW_ENOMEM, "parameters");
    const char *cur = v->s;
    for (size_t i = 0; i < count; i++) {
        const char *item = NULL;
        size_t len = 0;
        if (list_item(p, v, i, &cur, &item, &len, res) != 0) return -1;
        if (word_item_check(app, res, p, item, len, i) != 0) return -1;
        if (!(out->list[i] = arena_strndup(args, item, len)))
            return api_status_error(res, TW_ENOMEM, "parameters");
    }
    out->n_list = count;
    return 0;
}

/* AP_INTS: integers in [min, max], min_items..max_items of them, kept as
 * numbers and as canonical decimal strings (the answer cache's key). */
static int parse_ints(const twd_app *app, const api_param *p, const raw_value *v, api_arg *out,
                      api_args *args, api_response *res)
{
    int64_t hi = api_param_max(app, p), most = api_param_max_items(app, p);
    size_t count = 0;
    if (v->j) {
        if (!json_is_array(v->j))
            return api_error(res, 400, "parameter '%s' must be an array of integers", p->name);
        count = json_array_size(v->j);
    } else if (v->n) {
        count = 1;
        for (size_t i = 0; i < v->n; i++) count += v->s[i] == ',';
    }
    if ((int64_t)count < p->min_items || (int64_t)count > most) {
        if (p->min_items == most)
            return api_error(res, 400, "parameter '%s' must hold exactly %" PRId64 " integers", p->name,
                             most);
        return api_error(res, 400, "parameter '%s' must hold %" PRId64 " to %" PRId64 " integers, got %zu",
                         p->name, p->min_items, most, count);
    }
    out->ints = arena_keep(args, malloc((count ? count : 1) * sizeof(int64_t)));
    out->list = arena_keep(args, calloc(count ? count : 1, sizeof(char *)));
    if (!out->ints || !out->list) return api_status_error(res, TW_ENOMEM, "parameters");
    const char *cur = v->s;
    for (size_t i = 0; i < count; i++) {
        long long x;
        if (v->j) {
            const json_t *e = json_array_get(v->j, i);
            if (!json_is_integer(e))
                return api_error(res, 400, "parameter '%s': item %zu is not an integer", p->name, i);
            x = json_integer_value(e);
        } else {
            const char *end = v->s + v->n, *comma = memchr(cur, ',', (size_t)(end - cur));
            size_t len = comma ? (size_t)(comma - cur) : (size_t)(end - cur);
            char shown[64];
            api_quote(shown, sizeof shown, cur, len);
            if (strict_integer(cur, len, &x) != 0)
                return api_error(res, 400,
                                 "parameter '%s': item %zu must be an integer in %" PRId64 "..%" PRId64
                                 ", got '%s'",
                                 p->name, i, p->min, hi, shown);
            cur += len + 1;
        }
        if (x < p->min || x > hi)
            return api_error(res, 400,
                             "parameter '%s': item %zu must be in %" PRId64 "..%" PRId64 ", got %lld",
                             p->name, i, p->min, hi, x);
        char num[24];
        int w = snprintf(num, sizeof num, "%lld", x);
        out->ints[i] = x;
        if (!(out->list[i] = arena_strndup(args, num, (size_t)w)))
            return api_status_error(res, TW_ENOMEM, "parameters");
    }
    out->n_list = count;
    return 0;
}

/* Validates one value given as text (query string) or JSON (body). */
static int parse_value(const twd_app *app, const api_param *p, const char *s, size_t n, const json_t *j,
                       api_arg *out, api_args *args, api_response *res)
{
    raw_value v;
    raw_init(&v, s, n, j);
    switch (p->type) {
    case AP_INT: return parse_int(app, p, &v, out, res);
    case AP_BLOCKS: return parse_blocks(app, p, &v, out, res);
    case AP_BOOL: return parse_bool(p, &v, out, res);
    case AP_ENUM:
    case AP_TEXT: return parse_string(app, p, &v, out, args, res);
    case AP_LIST: return parse_list(app, p, &v, out, args, res);
    case AP_INTS: return parse_ints(app, p, &v, out, args, res);
    }
    return api_error(res, 500, "unknown parameter type");
}

static const api_param *find_param(const api_route *r, const char *name, size_t n)
{
    for (const api_param *p = r->params; p && p->name; p++)
        if (strlen(p->name) == n && memcmp(p->name, name, n) == 0) return p;
    return NULL;
}

static void allowed_names(const api_route *r, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (const api_param *p = r->params; p && p->name; p++) {
        int w = snprintf(out + o, cap - o, "%s%s", o ? ", " : "", p->name);
        if (w < 0 || (size_t)w >= cap - o) break;
        o += (size_t)w;
    }
    if (!o) snprintf(out, cap, "none");
}

static int set_arg(const twd_app *app, const api_route *r, api_args *args, const char *key, size_t klen,
                   const char *s, size_t n, const json_t *j, api_response *res)
{
    const api_param *p = find_param(r, key, klen);
    if (!p) {
        char allowed[512], shown[64];
        api_quote(shown, sizeof shown, key, klen);
        allowed_names(r, allowed, sizeof allowed);
        return api_error(res, 400, "unknown parameter '%s' for %s; allowed: %s", shown, r->path, allowed);
    }
    api_arg *a = NULL;
    for (size_t i = 0; i < args->n; i++)
        if (args->v[i].spec == p) a = &args->v[i];
    if (a->present) return api_error(res, 400, "parameter '%s' is given more than once", p->name);
    if (parse_value(app, p, s, n, j, a, args, res) != 0) return -1;
    a->present = true;
    return 0;
}

/* The request's JSON body as an object (*root, NULL without a body). 0, or
 * -1 with a 400. */
static int parse_body(const api_request *req, json_t **root, api_response *res)
{
    *root = NULL;
    if (req->method != API_POST || req->body_len == 0) return 0;
    json_error_t jerr;
    json_t *j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return api_error(res, 400, "body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                         jerr.column);
    if (!json_is_object(j)) {
        json_decref(j);
        return api_error(res, 400, "body must be a JSON object");
    }
    *root = j;
    return 0;
}

twd_app *api_find_model(const api_service *svc, const char *name, size_t len)
{
    for (size_t i = 0; i < svc->n_models; i++)
        if (strlen(svc->models[i]->model_name) == len && memcmp(svc->models[i]->model_name, name, len) == 0)
            return svc->models[i];
    return NULL;
}

/* The `model` a route that needs one is asked about (query or body; the
 * first model when not given). 0, or -1 with a 400 listing the models. */
static int select_model(api_service *svc, const api_route *r, const api_request *req, const json_t *body,
                        twd_app **out, api_response *res)
{
    *out = svc->models[0];
    if (!(r->flags & API_NEEDS_MODEL)) return 0;
    const char *name = NULL;
    size_t len = 0;
    int given = 0;
    for (size_t i = 0; i < req->n_query; i++)
        if (req->query[i].key_len == 5 && memcmp(req->query[i].key, "model", 5) == 0) {
            name = req->query[i].val;
            len = req->query[i].val_len;
            given++;
        }
    const json_t *j = body ? json_object_get(body, "model") : NULL;
    if (j) {
        if (!json_is_string(j)) return api_error(res, 400, "parameter 'model' must be a string");
        name = json_string_value(j);
        len = json_string_length(j);
        given++;
    }
    if (given > 1) return api_error(res, 400, "parameter 'model' is given more than once");
    if (!given) return 0;
    twd_app *app = api_find_model(svc, name, len);
    if (app) {
        *out = app;
        return 0;
    }
    strbuf names = STRBUF_INIT;
    for (size_t i = 0; i < svc->n_models; i++)
        sb_printf(&names, "%s%s", i ? ", " : "", svc->models[i]->model_name);
    char shown[64];
    api_quote(shown, sizeof shown, name, len);
    api_error(res, 400, "unknown model '%s'; the models are: %s", shown, names.s ? names.s : "");
    sb_free(&names);
    return -1;
}

static int parse_args(const twd_app *app, const api_route *r, const api_request *req, const json_t *body,
                      api_args *args, api_response *res)
{
    memset(args, 0, sizeof *args);
    for (const api_param *p = r->params; p && p->name; p++) {
        if (args->n == API_MAX_PARAMS) return api_error(res, 500, "route has too many parameters");
        args->v[args->n++].spec = p;
    }
    bool model_param = (r->flags & API_NEEDS_MODEL) != 0; /* taken by select_model */
    for (size_t i = 0; i < req->n_query; i++) {
        const api_kv *kv = &req->query[i];
        if (model_param && kv->key_len == 5 && memcmp(kv->key, "model", 5) == 0) continue;
        if (set_arg(app, r, args, kv->key, kv->key_len, kv->val, kv->val_len, NULL, res) != 0) return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)body, key, val)
    {
        if (model_param && strcmp(key, "model") == 0) continue;
        if (set_arg(app, r, args, key, strlen(key), NULL, 0, val, res) != 0) return -1;
    }
    for (size_t i = 0; i < args->n; i++) {
        api_arg *a = &args->v[i];
        if (a->present) continue;
        if (a->spec->required) return api_error(res, 400, "parameter '%s' is required", a->spec->name);
        if (!a->spec->def) continue;
        if (a->spec->type == AP_INT) {
            a->i = api_param_default(app, a->spec);
        } else if (parse_value(app, a->spec, a->spec->def, strlen(a->spec->def), NULL, a, args, res) != 0) {
            return -1;
        }
    }
    return 0;
}

const char *api_allow_header(const api_route *r)
{
    return (r->methods & API_POST) ? ((r->methods & API_GET) ? "GET, HEAD, POST" : "POST") : "GET, HEAD";
}

/* Canonical key of a request for the answer cache: route and every
 * parameter (defaults included) in table order, length-prefixed, with
 * whether it has a value: an optional parameter without a default (head,
 * block) absent means "all", given as 0 means the first, and both hold
 * i == 0 and no string. (A default spelled out is the same request.) */
char *api_cache_key(const api_route *r, const api_args *args, size_t *len)
{
    size_t cap = strlen(r->path) + 16, n = 0;
    for (size_t i = 0; i < args->n; i++) {
        const api_arg *a = &args->v[i];
        /* "|i:p:int64:size:" + string + ":size", and for AP_BLOCKS "int64:0:": at most 92 bytes + string */
        cap += 96 + a->s_len;
        for (size_t j = 0; j < a->n_list; j++) cap += strlen(a->list[j]) + 24;
    }
    char *k = malloc(cap);
    if (!k) return NULL;
    n += (size_t)sprintf(k, "%s", r->path);
    for (size_t i = 0; i < args->n; i++) {
        const api_arg *a = &args->v[i];
        n += (size_t)sprintf(k + n, "|%zu:%d:%" PRId64 ":%zu:", i, a->present || a->spec->def != NULL, a->i,
                             a->s ? a->s_len : (size_t)-1);
        if (a->spec->type == AP_BLOCKS)
            n += (size_t)sprintf(k + n, "%" PRId64 ":%d:", a->last, (int)a->sweep);
        if (a->s) {
            memcpy(k + n, a->s, a->s_len);
            n += a->s_len;
        }
        n += (size_t)sprintf(k + n, ":%zu", a->n_list);
        for (size_t j = 0; j < a->n_list; j++) {
            size_t l = strlen(a->list[j]);
            n += (size_t)sprintf(k + n, ":%zu:", l);
            memcpy(k + n, a->list[j], l);
            n += l;
        }
    }
    *len = n;
    return k;
}

void api_call_free(api_call *call)
{
    free(call->key);
    api_args_free(&call->args);
    call->key = NULL;
    if (call->held) api_app_release(call->app);
    call->held = false;
}

void api_call_link_cancel(const api_call *call, tw_cancel *c)
{
    c->shared = call->held ? &call->app->changed : NULL;
}

void api_call_abandon(api_call *call, int why, api_response *res)
{
    if (call->held && atomic_load(&call->app->changed))
        api_app_unavailable(call->app, res);
    else
        api_status_error(res, why, "request");
    api_call_free(call);
}

int api_prepare(api_service *svc, const api_route *route, const api_request *req, api_call *call,
                api_response *res)
{
    memset(res, 0, sizeof *res);
    memset(call, 0, sizeof *call);
    call->route = route;
    int m = req->method == API_HEAD ? API_GET : req->method;
    if (!(route->methods & m)) {
        snprintf(res->allow, sizeof res->allow, "%s", api_allow_header(route));
        api_error(res, 405, "method not allowed on %s; allowed: %s", route->path, res->allow);
        return API_DONE;
    }
    json_t *body = NULL;
    twd_app *app = NULL;
    if (parse_body(req, &body, res) != 0 || select_model(svc, route, req, body, &app, res) != 0) {
        json_decref(body);
        return API_DONE;
    }
    call->app = app;
    if (route->flags & API_NEEDS_MODEL) {
        /* held until the call is freed: the model cannot be replaced under it */
        if (!(call->held = api_app_acquire(app)) || api_app_check(app)) {
            json_decref(body);
            api_call_free(call);
            api_app_unavailable(app, res);
            return API_DONE;
        }
    }
    int prc = parse_args(app, route, req, body, &call->args, res);
    json_decref(body);
    if (prc != 0) {
        api_call_free(call);
        return API_DONE;
    }
    if ((route->flags & API_CACHEABLE) && app->ext) {
        call->key = api_cache_key(route, &call->args, &call->klen);
        if (call->key && answer_cache_get(app->ext->answers, call->key, call->klen, res) == 0) {
            res->cached = true;
            api_call_free(call);
            return API_DONE;
        }
    }
    if (route->flags & API_HEAVY) return API_COMPUTE;
    api_compute(call, res);
    return API_DONE;
}

int api_prepare_args(twd_app *app, const api_route *route, const api_kv *query, size_t n_query,
                     api_call *call, api_response *res)
{
    memset(call, 0, sizeof *call);
    call->route = route;
    call->app = app;
    if (route->flags & API_NEEDS_MODEL) {
        if (!(call->held = api_app_acquire(app)) || api_app_check(app)) {
            api_call_free(call);
            api_app_unavailable(app, res);
            return -1;
        }
    }
    api_request req = {.method = API_GET, .query = query, .n_query = n_query};
    if (parse_args(app, route, &req, NULL, &call->args, res) != 0) {
        api_call_free(call);
        return -1;
    }
    return 0;
}

void api_compute(api_call *call, api_response *res)
{
    twd_app *app = call->app;
    api_fault_take(); /* a mark left by an earlier answer on this thread is not this one's */
    int rc = api_sweep_requested(&call->args) ? api_sweep(call, res) : call->route->fn(app, &call->args, res);
    /* read from a file that changed meanwhile: the answer may mix old and
     * new weights (or zeros, after a SIGBUS): never sent, never kept */
    if (call->held && api_app_check(app)) {
        api_app_unavailable(app, res);
        rc = -1;
    }
    if (rc == 0 && call->key && res->status == 200)
        answer_cache_put(app->ext->answers, call->key, call->klen, res);
    if (!res->content_type) api_error(res, 500, "handler produced no answer");
    api_call_free(call);
}

void api_dispatch(api_service *svc, const api_route *route, const api_request *req, api_response *res)
{
    api_call call;
    if (api_prepare(svc, route, req, &call, res) == API_COMPUTE) api_compute(&call, res);
}
