/* /openapi.json (api/openapi.h): the notation of answers, the shared
 * components, and the document built from the route table. */
#include "api/openapi.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "api/json.h"
#include "base/log.h"
#include "base/strbuf.h"

#ifndef TWD_VERSION
#define TWD_VERSION "0"
#endif

/* ---------- shared components ---------- */

/* The shapes several routes answer with (docs/API.md, the vocabulary). A
 * route's own answer is written beside its row in api/routes.c. */
static const struct {
    const char *name, *notation;
} components[] = {
    {"Token", "{id: int(0..) `token id`,"
              " text: str `the token's bytes as UTF-8, invalid sequences replaced by U+FFFD`,"
              " bytes: [int(0..255)] `the token's exact bytes`}"
              " `a token (docs/API.md, Tokens)`"},
    {"ScoredToken",
     "{id: int(0..) `token id`,"
     " text: str `the token's bytes as UTF-8, invalid sequences replaced by U+FFFD`,"
     " bytes: [int(0..255)] `the token's exact bytes`,"
     " score: num `the dot product the list is ranked by (a logit for the logit lens)`,"
     " prob?: num(0..1) `softmax probability over the whole vocabulary, where the list gives one`}"
     " `a token with its score; ranked lists are arrays in rank order (rank 1 first)`"},
    {"TokenRank", "{id: int(0..) `token id`, rank: int(1..) `1-based rank in the logit lens`,"
                  " prob: num(0..1) `softmax probability over the whole vocabulary`}"
                  " `a token asked about by id (the actual next token, a target)`"},
    {"TokenExtremes",
     "{top: [ScoredToken] `the k highest scores`, bottom: [ScoredToken] `the k lowest, lowest first`}"},
    {"SvdFactor", "{singular_values: [num(0..); $dh] `every singular value, largest first`,"
                  " coverage: [num(0..1); $dh] `cumulative share of the sum of squared singular values`,"
                  " frac99: num(0..1) `fraction of the directions needed to reach 99 % coverage`,"
                  " directions: [{rank: int(1..) `1-based rank of the direction`, singular_value: num(0..),"
                  " sign: -1|1 `sign alignment applied to the singular vectors (as the paper)`,"
                  " left: [ScoredToken] `top tokens of the left singular vector`,"
                  " right: [ScoredToken] `top tokens of the right singular vector`}]"
                  " `the top directions`}"},
    {"TrajectoryState",
     "{index: int(0..) `0-based place of the state (0 .. n_layer + 2)`,"
     " name: str `embedding, embedding+position, 'embedding+position, ln_f', or 'block N'`,"
     " block: int(0..$layer)|null `the block whose output this is; null for the first three states`,"
     " points: [[num; 3]] `the projected point of each token`,"
     " nearest: [[ScoredToken]] `per token, the logit lens's top k (with prob)`,"
     " entropy: [num] `per token, the entropy of the logit-lens distribution in nats`,"
     " next: [TokenRank|null] `per token, the actual next token's rank and prob; null at the last position`,"
     " target?: [TokenRank] `per token, the asked target's rank and prob (with target=)`,"
     " vectors?: [[num; $d]] `per token, the state vector (with vectors=true)`}"
     " `one state of every token of the phrase (docs/MATH.md §7.3)`"},
    {"UmapStatus",
     "{state: 'disabled'|'fitting'|'ready'|'failed', rows: int(0..) `vocabulary rows fitted`,"
     " n_neighbors: int(0..), n_components: 3, min_dist: num, from_cache: bool `loaded from the disk cache`,"
     " kept_on_disk: bool `the fitted layout is written to the disk cache`,"
     " progress?: num `fraction of the fit done (fitting, ready)`,"
     " stage?: str `idle, knn, graph, init, optimize or done (fitting)`, stage_done?: int(0..), "
     "stage_total?: int(0..),"
     " fit_seconds?: num(0..) `wall time of the fit (ready, when fitted now)`, n_epochs?: int(0..), init?: "
     "str,"
     " error?: str `why it failed (failed)`,"
     " faithfulness: {umap?: Faithfulness `once the layout is ready`, pca?: Faithfulness}"
     " `the figures computed so far (they are computed in the background at start)`}"
     " `the state of the background UMAP layout`"},
    {"Faithfulness",
     "{projection: 'umap'|'pca', k: int(1..) `neighbours`, sample_rows: int(0..) `fitted rows sampled`,"
     " sample_seed: int(0..), trustworthiness: num(0..1)|null, continuity: num(0..1)|null,"
     " explained_variance_ratio?: [num(0..1)|null; 3] `PCA: the share of the variance of each component`}"
     " `how faithful a 3D layout is to the fitted rows (docs/MATH.md §15)`"},
    {"TrajectoryFaithfulness",
     "{projection: 'umap'|'pca', k: int(1..) `neighbours`, sample_rows: int(0..) `fitted rows sampled`,"
     " sample_seed: int(0..), trustworthiness: num(0..1)|null, continuity: num(0..1)|null,"
     " explained_variance_ratio?: [num(0..1)|null; 3] `PCA: the share of the variance of each component`,"
     " knn_overlap: {k: int(1..), overall: num(0..1), states: [num(0..1)] `per state, in trajectory order`,"
     " definition: str}}"
     " `the layout's faithfulness and that of the phrase's states (docs/MATH.md §15)`"},
    {"Error", "{error: {code: int(400..599) `the HTTP status`,"
              " type: 'invalid_request'|'not_found'|'method_not_allowed'|'payload_too_large'|'uri_too_long'|"
              "'headers_too_large'|'unavailable'|'internal_error'|'not_implemented'|"
              "'http_version_not_supported',"
              " message: str `what is wrong: the parameter and its allowed values, or what to do`}}"
              " `the one shape of every error (docs/ARCHITECTURE.md, Errors)`"},
};

/* What the common CSV columns mean (docs/API.md), for the columns whose row
 * notation gives no description. */
typedef struct {
    const char *column, *meaning;
} glossary_row;

static const glossary_row glossary[] = {
    {"block", "0-based transformer block"},
    {"head", "0-based attention head"},
    {"rank", "1-based place in a ranked list"},
    {"id", "token id"},
    {"text", "the token's text (its bytes as UTF-8, invalid sequences replaced by U+FFFD)"},
    {"score", "the dot product the list is ranked by (a logit for the logit lens)"},
    {"prob", "softmax probability over the whole vocabulary"},
    {"norm", "a Euclidean norm"},
    {"position", "0-based place of the token in the phrase"},
    {"token_id", "id of the token the row is about"},
    {"token_text", "text of the token the row is about"},
    {"state_index", "0-based place of the state in the trajectory (0 .. n_layer + 2)"},
    {"state", "name of the state (embedding, embedding+position, 'embedding+position, ln_f', block N)"},
    {"singular_value", "a singular value"},
    {"coverage", "cumulative share of the sum of squared singular values up to this one"},
    {"entropy", "entropy of the logit-lens distribution, in nats"},
    {"x", "first coordinate of the projected point"},
    {"y", "second coordinate of the projected point"},
    {"z", "third coordinate of the projected point"},
};

/* ---------- the notation ---------- */

typedef struct {
    const api_service *svc;
    const char *src, *p;
    char *err;
    size_t errlen;
    int depth;
    bool failed;
} parser;

static json_t *fail(parser *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static json_t *fail(parser *P, const char *fmt, ...)
{
    if (P->failed) return NULL;
    P->failed = true;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(P->err, P->errlen, "%s at offset %ld ('%.24s') of '%.60s%s'", what, (long)(P->p - P->src), P->p,
             P->src, strlen(P->src) > 60 ? "..." : "");
    return NULL;
}

static void skip(parser *P)
{
    while (isspace((unsigned char)*P->p)) P->p++;
}

static bool accept(parser *P, const char *tok)
{
    skip(P);
    size_t n = strlen(tok);
    if (strncmp(P->p, tok, n) != 0) return false;
    P->p += n;
    return true;
}

static size_t ident_len(const char *s)
{
    size_t n = 0;
    if (!isalpha((unsigned char)s[0]) && s[0] != '_') return 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '_') n++;
    return n;
}

static bool is(const char *s, size_t n, const char *word) { return strlen(word) == n && !memcmp(s, word, n); }

/* The model values of the notation. */
static const char *const value_names[] = {"layer", "head", "ff", "d", "dh", NULL};

static int64_t value_of(const gpt2_config *c, const char *name, size_t n)
{
    if (is(name, n, "layer")) return c->n_layer - 1;
    if (is(name, n, "head")) return c->n_head - 1;
    if (is(name, n, "ff")) return c->n_inner - 1;
    if (is(name, n, "d")) return c->n_embd;
    return c->n_head > 0 ? c->n_embd / c->n_head : 0; /* dh */
}

/* A model value ($layer ...) over every model served: the largest (a
 * bound) or the one they all share (a count). */
static bool model_value(const api_service *svc, const char *name, size_t n, bool count, int64_t *out)
{
    bool any = false;
    int64_t v = 0;
    for (size_t i = 0; svc && i < svc->n_models; i++) {
        const twd_app *m = svc->models[i];
        if (atomic_load(&m->state) != APP_READY) return false;
        int64_t x = value_of(&m->model.cfg, name, n);
        if (any && count && x != v) return false;
        if (!any || x > v) v = x;
        any = true;
    }
    *out = v;
    return any;
}

/* An integer or $name: 1 with *v, 0 when the models cannot give it now,
 * -1 on a mistake. */
static int parse_value(parser *P, bool count, int64_t *v)
{
    skip(P);
    if (*P->p == '$') {
        P->p++;
        size_t n = ident_len(P->p);
        const char *name = P->p;
        bool known = false;
        for (const char *const *k = value_names; *k; k++) known |= is(name, n, *k);
        if (!known) {
            fail(P, "unknown model value (known: $layer, $head, $ff, $d, $dh)");
            return -1;
        }
        P->p += n;
        return model_value(P->svc, name, n, count, v) ? 1 : 0;
    }
    char *end;
    long long x = strtoll(P->p, &end, 10);
    if (end == P->p) {
        fail(P, "expected a number or $name");
        return -1;
    }
    P->p = end;
    *v = x;
    return 1;
}

static json_t *parse_type(parser *P);

/* The schema of a component, as a copy (for T|null) or a reference. */
static json_t *component(parser *P, const char *name, size_t n, bool copy)
{
    for (size_t i = 0; i < sizeof components / sizeof components[0]; i++) {
        if (!is(name, n, components[i].name)) continue;
        if (!copy) {
            char ref[96];
            snprintf(ref, sizeof ref, "#/components/schemas/%s", components[i].name);
            return json_pack("{s:s}", "$ref", ref);
        }
        if (P->depth > 16) return fail(P, "components nest too deeply");
        parser sub = {P->svc, components[i].notation, components[i].notation, P->err, P->errlen, P->depth + 1,
                      false};
        json_t *s = parse_type(&sub);
        if (!s) {
            P->failed = true;
            return NULL;
        }
        return s;
    }
    return fail(P, "unknown component '%.*s'", (int)n, name);
}

/* One end of a range: a value unless the next character is `end` (an open
 * end), stored as `key` of s, then `sep`. 0, or -1 with msg as the error. */
static int parse_bound(parser *P, json_t *s, char end, const char *key, const char *sep, const char *msg)
{
    int64_t v;
    skip(P);
    if (*P->p != end) {
        int r = parse_value(P, false, &v);
        if (r < 0) return -1;
        if (r) json_object_set_new(s, key, json_integer(v));
    }
    if (!accept(P, sep)) {
        fail(P, "%s", msg);
        return -1;
    }
    return 0;
}

/* (lo..hi) after int or num. */
static int parse_range(parser *P, json_t *s)
{
    if (!accept(P, "(")) return 0;
    if (parse_bound(P, s, '.', "minimum", "..", "expected '..' in a range") != 0) return -1;
    return parse_bound(P, s, ')', "maximum", ")", "expected ')' after a range");
}

static json_t *parse_object(parser *P)
{
    json_t *props = json_object(), *req = json_array(), *more = NULL;
    bool open = false;
    if (!accept(P, "}")) {
        for (;;) {
            if (accept(P, "...")) {
                open = true;
                if (!accept(P, "}")) goto bad_end;
                break;
            }
            skip(P);
            char key[128];
            size_t kn;
            if (*P->p == '\'') {
                const char *q = strchr(P->p + 1, '\'');
                kn = q ? (size_t)(q - P->p - 1) : 0;
                if (!q || kn == 0 || kn >= sizeof key) goto bad_key;
                memcpy(key, P->p + 1, kn);
                P->p = q + 1;
            } else {
                kn = ident_len(P->p);
                if (kn == 0 || kn >= sizeof key) goto bad_key;
                memcpy(key, P->p, kn);
                P->p += kn;
            }
            key[kn] = '\0';
            int64_t repeat = -1;
            if (accept(P, "#")) {
                int r = parse_value(P, true, &repeat);
                if (r < 0) goto fail;
                if (r == 0) repeat = -2; /* not known now: any number of them */
            }
            bool optional = accept(P, "?");
            if (!accept(P, ":")) {
                fail(P, "expected ':' after member '%s'", key);
                goto fail;
            }
            json_t *t = parse_type(P);
            if (!t) goto fail;
            if (repeat == -2) {
                if (more) {
                    json_decref(t);
                    fail(P, "two repeated members of unknown count");
                    goto fail;
                }
                more = t;
            } else {
                for (int64_t i = 0; i < (repeat < 0 ? 1 : repeat); i++) {
                    char name[160];
                    if (repeat < 0)
                        snprintf(name, sizeof name, "%s", key);
                    else
                        snprintf(name, sizeof name, "%s%" PRId64, key, i);
                    if (json_object_get(props, name)) {
                        json_decref(t);
                        fail(P, "member '%s' is given twice", name);
                        goto fail;
                    }
                    json_object_set_new(props, name, json_deep_copy(t));
                    if (!optional) json_array_append_new(req, json_string(name));
                }
                json_decref(t);
            }
            if (accept(P, ",")) continue;
            if (accept(P, "}")) break;
            goto bad_end;
        }
    }
    json_t *s = json_pack("{s:s}", "type", "object");
    if (json_object_size(props)) json_object_set(s, "properties", props);
    if (json_array_size(req)) json_object_set(s, "required", req);
    if (more)
        json_object_set_new(s, "additionalProperties", more);
    else if (!open)
        json_object_set_new(s, "additionalProperties", json_false());
    json_decref(props);
    json_decref(req);
    return s;
bad_key:
    fail(P, "expected a member name");
    goto fail;
bad_end:
    fail(P, "expected ',' or '}'");
fail:
    json_decref(props);
    json_decref(req);
    json_decref(more);
    return NULL;
}

static json_t *parse_array(parser *P)
{
    json_t *items = parse_type(P);
    if (!items) return NULL;
    json_t *s = json_pack("{s:s,s:o}", "type", "array", "items", items);
    if (accept(P, ";")) {
        int64_t n;
        int r = parse_value(P, true, &n);
        if (r < 0) {
            json_decref(s);
            return NULL;
        }
        if (r) {
            json_object_set_new(s, "minItems", json_integer(n));
            json_object_set_new(s, "maxItems", json_integer(n));
        }
    }
    if (!accept(P, "]")) {
        json_decref(s);
        return fail(P, "expected ']'");
    }
    return s;
}

/* One alternative of a union. */
typedef struct {
    enum { ALT_SCHEMA, ALT_NULL, ALT_STR, ALT_INT } kind;
    json_t *schema;   /* ALT_SCHEMA */
    const char *comp; /* ALT_SCHEMA of a component: its name */
    size_t comp_len;
    json_t *lit; /* ALT_STR, ALT_INT */
} alt;

static int parse_alt(parser *P, alt *a)
{
    memset(a, 0, sizeof *a);
    skip(P);
    const char *s = P->p;
    if (accept(P, "{")) {
        a->schema = parse_object(P);
    } else if (accept(P, "[")) {
        a->schema = parse_array(P);
    } else if (*s == '\'') {
        const char *q = strchr(s + 1, '\'');
        if (!q) return fail(P, "unterminated string"), -1;
        a->kind = ALT_STR;
        a->lit = json_stringn(s + 1, (size_t)(q - s - 1));
        P->p = q + 1;
        return a->lit ? 0 : -1;
    } else if (*s == '-' || isdigit((unsigned char)*s)) {
        int64_t v;
        if (parse_value(P, false, &v) < 0) return -1;
        a->kind = ALT_INT;
        a->lit = json_integer(v);
        return 0;
    } else {
        size_t n = ident_len(s);
        if (n == 0) return fail(P, "expected a type"), -1;
        P->p += n;
        if (is(s, n, "null")) {
            a->kind = ALT_NULL;
            return 0;
        }
        if (isupper((unsigned char)s[0])) {
            a->comp = s;
            a->comp_len = n;
            a->schema = component(P, s, n, false);
        } else if (is(s, n, "str")) {
            a->schema = json_pack("{s:s}", "type", "string");
        } else if (is(s, n, "bool")) {
            a->schema = json_pack("{s:s}", "type", "boolean");
        } else if (is(s, n, "any")) {
            a->schema = json_object();
        } else if (is(s, n, "int") || is(s, n, "num")) {
            a->schema = json_pack("{s:s}", "type", s[0] == 'i' ? "integer" : "number");
            if (parse_range(P, a->schema) != 0) {
                json_decref(a->schema);
                return -1;
            }
        } else {
            P->p = s;
            return fail(P, "unknown type (known: str int num bool any null, components)"), -1;
        }
    }
    return a->schema ? 0 : -1;
}

static json_t *parse_type(parser *P)
{
    alt alts[16];
    size_t n = 0, n_schema = 0, n_str = 0, n_int = 0;
    bool nullable = false;
    json_t *s = NULL;
    do {
        if (n == sizeof alts / sizeof alts[0]) {
            fail(P, "too many alternatives");
            goto done;
        }
        if (parse_alt(P, &alts[n]) != 0) goto done;
        int k = alts[n++].kind;
        n_schema += k == ALT_SCHEMA;
        n_str += k == ALT_STR;
        n_int += k == ALT_INT;
        nullable |= k == ALT_NULL;
    } while (accept(P, "|"));
    if (n_schema > 1 || (n_schema && (n_str || n_int)) || (n_str && n_int)) {
        fail(P, "a union may only be T|null or an enum of strings or of integers");
        goto done;
    }
    if (n_schema) {
        for (size_t i = 0; i < n; i++)
            if (alts[i].kind == ALT_SCHEMA) {
                if (nullable && alts[i].comp) {
                    s = component(P, alts[i].comp, alts[i].comp_len, true);
                } else {
                    s = alts[i].schema;
                    alts[i].schema = NULL;
                }
            }
        if (!s) goto done;
        if (nullable) {
            if (!json_object_get(s, "type")) {
                json_decref(s);
                s = fail(P, "only a schema with a type can be nullable");
                goto done;
            }
            json_object_set_new(s, "nullable", json_true());
            json_t *e = json_object_get(s, "enum");
            if (e) json_array_append_new(e, json_null());
        }
    } else if (n_str || n_int) {
        json_t *e = json_array();
        for (size_t i = 0; i < n; i++)
            if (alts[i].lit) json_array_append(e, alts[i].lit);
        if (nullable) json_array_append_new(e, json_null());
        s = json_pack("{s:s,s:o}", "type", n_str ? "string" : "integer", "enum", e);
        if (nullable) json_object_set_new(s, "nullable", json_true());
    } else {
        fail(P, "null alone is not a type");
        goto done;
    }
    if (accept(P, "`")) {
        const char *q = strchr(P->p, '`');
        if (!q) {
            json_decref(s);
            s = fail(P, "unterminated description");
            goto done;
        }
        json_t *d = json_stringn(P->p, (size_t)(q - P->p));
        P->p = q + 1;
        if (json_object_get(s, "$ref"))
            s = json_pack("{s:[o],s:o}", "allOf", s, "description", d);
        else
            json_object_set_new(s, "description", d);
    }
done:
    for (size_t i = 0; i < n; i++) {
        json_decref(alts[i].schema);
        json_decref(alts[i].lit);
    }
    return s;
}

json_t *api_schema_of(const api_service *svc, const char *notation, char *err, size_t errlen)
{
    parser P = {svc, notation, notation, err, errlen, 0, false};
    json_t *s = parse_type(&P);
    skip(&P);
    if (s && *P.p) {
        json_decref(s);
        s = fail(&P, "unexpected text after the type");
    }
    if (!s && !P.failed) snprintf(err, errlen, "out of memory");
    return s;
}

/* ---------- parameters ---------- */

/* Bounds that only the configuration sets; every other follows the model. */
static bool bound_follows_model(api_bound b)
{
    return !(b == APB_CONST || b == APB_MAX_WORDS || b == APB_MAX_TEXT || b == APB_MAX_TOKENS);
}

/* The largest upper bound of p (of its items' count with `items`) over the
 * models served; false when it is not known yet (a model is still loading). */
static bool param_bound(const api_service *svc, const api_param *p, bool items, int64_t *hi)
{
    bool any = false;
    for (size_t i = 0; i < svc->n_models; i++) {
        const twd_app *m = svc->models[i];
        if (bound_follows_model(items ? p->max_items_ref : p->max_ref) && atomic_load(&m->state) != APP_READY)
            return false;
        int64_t x = items ? api_param_max_items(m, p) : api_param_max(m, p);
        if (!items) x = api_param_used(m, p, x);
        if (!any || x > *hi) *hi = x;
        any = true;
    }
    return any;
}

/* The default of an AP_INT parameter as the models served use it (the
 * largest over them; def itself while a model is loading). */
static int64_t param_default(const api_service *svc, const api_param *p, int64_t def)
{
    int64_t d = 0;
    for (size_t i = 0; i < svc->n_models; i++) {
        const twd_app *m = svc->models[i];
        if (atomic_load(&m->state) != APP_READY) return def;
        int64_t x = api_param_default(m, p);
        if (i == 0 || x > d) d = x;
    }
    return svc->n_models ? d : def;
}

/* A parameter's schema and, in *note, what the description adds to the
 * row's doc (how lengths are counted, how lists are written). */
static json_t *param_schema(const api_service *svc, const api_param *p, bool query, strbuf *note)
{
    json_t *s = json_object();
    int64_t hi = 0;
    bool has_hi = param_bound(svc, p, false, &hi);
    switch (p->type) {
    case AP_INT: {
        api_put(s, "type", json_string("integer"));
        api_put(s, "minimum", json_integer(p->min));
        if (has_hi) api_put(s, "maximum", json_integer(hi));
        if (p->def) {
            int64_t d = strtoll(p->def, NULL, 10), used = param_default(svc, p, d);
            if (used != d)
                sb_printf(note,
                          " Default %" PRId64 ", or the largest value the model allows when that is smaller.",
                          d);
            api_put(s, "default", json_integer(used));
        }
        if (p->clamp_ref != APB_CONST && has_hi) {
            /* the server takes up to the configured bound and answers what
             * the model has: the document's maximum is what it has */
            int64_t accepted = 0;
            for (size_t i = 0; i < svc->n_models; i++)
                if (api_param_max(svc->models[i], p) > accepted) accepted = api_param_max(svc->models[i], p);
            if (accepted > hi) {
                api_put(s, "x-twd-accepted-maximum", json_integer(accepted));
                sb_printf(note, " Values up to %" PRId64 " are taken and answer the maximum.", accepted);
            }
        }
        if (bound_follows_model(p->max_ref)) sb_printf(note, " The bounds follow the model.");
        break;
    }
    case AP_BLOCKS: {
        /* one block, or a sweep: "all" or "A-B" (api/sweep.h) */
        json_t *one = json_pack("{s:s,s:I}", "type", "integer", "minimum", (json_int_t)p->min);
        if (has_hi) api_put(one, "maximum", json_integer(hi));
        api_put(s, "oneOf",
                json_pack("[o,{s:s,s:s}]", one, "type", "string", "pattern", "^(all|[0-9]+-[0-9]+)$"));
        if (bound_follows_model(p->max_ref)) sb_printf(note, " The bounds follow the model.");
        break;
    }
    case AP_BOOL:
        api_put(s, "type", json_string("boolean"));
        if (p->def)
            api_put(s, "default", json_boolean(strcmp(p->def, "true") == 0 || strcmp(p->def, "1") == 0));
        if (query) sb_printf(note, " In the query string: true, false, 1 or 0.");
        break;
    case AP_ENUM: {
        api_put(s, "type", json_string("string"));
        json_t *e = json_array();
        for (const char *const *c = p->choices; *c; c++) api_push(e, json_string(*c));
        api_put(s, "enum", e);
        if (p->def) api_put(s, "default", json_string(p->def));
        break;
    }
    case AP_TEXT:
        api_put(s, "type", json_string("string"));
        api_put(s, "minLength", json_integer(p->min));
        if (has_hi) {
            /* the server counts bytes; maxLength counts characters, and a
             * text of at most hi bytes has at most hi characters */
            api_put(s, "maxLength", json_integer(hi));
            sb_printf(note,
                      " At most %" PRId64 " bytes of UTF-8 (the server counts bytes: a text of fewer "
                      "characters than maxLength may still be too long), without NUL bytes.",
                      hi);
        }
        break;
    case AP_INTS: {
        json_t *items = json_pack("{s:s,s:I}", "type", "integer", "minimum", (json_int_t)p->min);
        if (has_hi) api_put(items, "maximum", json_integer(hi));
        int64_t most = 0;
        api_put(s, "type", json_string("array"));
        api_put(s, "items", items);
        api_put(s, "minItems", json_integer(p->min_items));
        if (param_bound(svc, p, true, &most)) api_put(s, "maxItems", json_integer(most));
        if (bound_follows_model(p->max_ref)) sb_printf(note, " The bounds follow the model.");
        if (query) sb_printf(note, " In the query string: comma-separated.");
        break;
    }
    case AP_LIST:
        api_put(s, "type", json_string("array"));
        api_put(s, "items", json_pack("{s:s,s:i,s:i}", "type", "string", "minLength", 1, "maxLength", 256));
        api_put(s, "minItems", json_integer(p->min));
        if (has_hi) api_put(s, "maxItems", json_integer(hi));
        sb_printf(note, " Each item: 1 to 256 bytes of UTF-8 (the server counts bytes), without NUL bytes.%s",
                  query ? " In the query string: comma-separated, so an item cannot hold a comma (a JSON "
                          "body can)."
                        : "");
        break;
    }
    return s;
}

static json_t *model_param_schema(const api_service *svc)
{
    json_t *e = json_array();
    for (size_t i = 0; i < svc->n_models; i++) api_push(e, json_string(svc->models[i]->model_name));
    return json_pack("{s:s,s:o,s:s}", "type", "string", "enum", e, "default", svc->models[0]->model_name);
}

static const char model_doc[] = "The model to ask: a name from /models (default: the first model served).";

static json_t *query_parameters(const api_service *svc, const api_route *r)
{
    json_t *params = json_array();
    for (const api_param *p = r->params; p && p->name; p++) {
        strbuf note = STRBUF_INIT;
        json_t *schema = param_schema(svc, p, true, &note);
        json_t *o = json_pack("{s:s,s:s,s:b,s:s+,s:o}", "name", p->name, "in", "query", "required",
                              p->required, "description", p->doc, note.s ? note.s : "", "schema", schema);
        if (p->type == AP_LIST || p->type == AP_INTS) {
            api_put(o, "style", json_string("form"));
            api_put(o, "explode", json_false());
        }
        sb_free(&note);
        api_push(params, o);
    }
    if (r->flags & API_NEEDS_MODEL)
        api_push(params, json_pack("{s:s,s:s,s:b,s:s,s:o}", "name", "model", "in", "query", "required", 0,
                                   "description", model_doc, "schema", model_param_schema(svc)));
    return params;
}

static json_t *request_body(const api_service *svc, const api_route *r)
{
    json_t *props = json_object(), *req = json_array();
    for (const api_param *p = r->params; p && p->name; p++) {
        strbuf note = STRBUF_INIT;
        json_t *schema = param_schema(svc, p, false, &note);
        api_put(schema, "description", json_pack("s+", p->doc, note.s ? note.s : ""));
        sb_free(&note);
        api_put(props, p->name, schema);
        if (p->required) api_push(req, json_string(p->name));
    }
    if (r->flags & API_NEEDS_MODEL) {
        json_t *m = model_param_schema(svc);
        api_put(m, "description", json_string(model_doc));
        api_put(props, "model", m);
    }
    json_t *schema =
        json_pack("{s:s,s:o,s:b}", "type", "object", "properties", props, "additionalProperties", 0);
    bool required = json_array_size(req) > 0;
    if (required)
        api_put(schema, "required", req);
    else
        json_decref(req);
    return json_pack("{s:s,s:b,s:{s:{s:o}}}", "description",
                     "The parameters as a JSON object (Content-Type: application/json; other types are "
                     "refused with 415). Parameters may also be given in the query string.",
                     "required", required, "content", "application/json", "schema", schema);
}

/* ---------- answers ---------- */

/* "/embeddings/normalization" -> "EmbeddingsNormalization"; an extension
 * (".json") is left out. */
static void route_name(const char *path, char *out, size_t n)
{
    size_t o = 0;
    bool up = true;
    for (const char *c = path; *c && *c != '.' && o + 1 < n; c++) {
        if (!isalnum((unsigned char)*c)) {
            up = true;
            continue;
        }
        out[o++] = up ? (char)toupper((unsigned char)*c) : *c;
        up = false;
    }
    out[o] = '\0';
}

static const char *media_type(const api_answer *a)
{
    if (a->type) return a->type;
    if (!a->format || strcmp(a->format, "json") == 0) return "application/json";
    if (strcmp(a->format, "csv") == 0) return "text/csv";
    if (strcmp(a->format, "latex") == 0) return "application/x-latex";
    if (strcmp(a->format, "npy") == 0) return "application/octet-stream";
    return NULL;
}

static const char *column_doc(const char *name, const json_t *col)
{
    const char *d = json_string_value(json_object_get(col, "description"));
    if (d) return d;
    for (size_t i = 0; i < sizeof glossary / sizeof glossary[0]; i++)
        if (strcmp(glossary[i].column, name) == 0) return glossary[i].meaning;
    return NULL;
}

/* One column of a CSV table described: "`head` (integer, or empty): 0-based ...". */
static void describe_column(strbuf *b, const char *name, const json_t *col)
{
    const json_t *e = json_object_get(col, "enum");
    const char *type = json_string_value(json_object_get(col, "type"));
    sb_printf(b, "\n- `%s` (", name);
    if (e) {
        size_t i;
        const json_t *v;
        sb_printf(b, "one of");
        json_array_foreach(e, i, v)
        {
            if (json_is_null(v)) continue;
            if (json_is_string(v))
                sb_printf(b, "%s `%s`", i ? "," : "", json_string_value(v));
            else
                sb_printf(b, "%s `%" JSON_INTEGER_FORMAT "`", i ? "," : "", json_integer_value(v));
        }
    } else {
        sb_printf(b, "%s", type ? type : "text");
    }
    sb_printf(b, "%s)",
              json_is_true(json_object_get(col, "nullable")) ? ", or empty where it does not apply" : "");
    const char *d = column_doc(name, col);
    if (d) sb_printf(b, ": %s", d);
}

/* Adds one CSV table to the text/csv media type: its columns in the
 * x-twd-tables extension (name, columns in order, and the row as an object
 * whose empty cells are null), the header as the example, the columns
 * described. */
static int add_csv_table(const api_service *svc, json_t *media, strbuf *desc, const api_answer *a,
                         size_t n_tables, char *err, size_t errlen)
{
    json_t *row = api_schema_of(svc, a->schema ? a->schema : "", err, errlen);
    if (!row) return -1;
    json_t *props = json_object_get(row, "properties"), *more = json_object_get(row, "additionalProperties");
    /* closed, or (while a model loads) open to the columns whose number follows it */
    if (!json_is_object(props) || !(json_is_false(more) || json_is_object(more))) {
        json_decref(row);
        snprintf(err, errlen, "a CSV row must be a closed object of its columns: %s", a->schema);
        return -1;
    }
    json_t *cols = json_array();
    strbuf header = STRBUF_INIT;
    const char *name;
    json_t *col;
    if (a->table)
        sb_printf(desc, "\n\nTable `%s` (table=%s): %s Columns:", a->table, a->table, a->doc);
    else
        sb_printf(desc, "\n\n%s Columns:", a->doc);
    json_object_foreach(props, name, col)
    {
        api_push(cols, json_string(name));
        sb_printf(&header, "%s%s", header.len ? "," : "", name);
        describe_column(desc, name, col);
    }
    if (json_is_object(more)) {
        sb_printf(&header, ",...");
        sb_printf(desc, "\n- then one column per value (their number follows the model)");
    }
    sb_printf(&header, "\r\n");
    json_t *tables = json_object_get(media, "x-twd-tables");
    api_push(tables, json_pack("{s:o,s:o,s:o}", "table", a->table ? json_string(a->table) : json_null(),
                               "columns", cols, "row", row));
    if (n_tables == 1) {
        api_put(media, "example", json_string(header.s));
    } else {
        json_t *ex = json_object_get(media, "examples");
        if (!ex) api_put(media, "examples", ex = json_object());
        char summary[96];
        snprintf(summary, sizeof summary, "the header of table=%s", a->table ? a->table : "");
        api_put(ex, a->table ? a->table : "rows",
                json_pack("{s:s,s:s}", "summary", summary, "value", header.s));
    }
    sb_free(&header);
    return 0;
}

/* Whether a route's block parameter takes "all" or "A-B" (api/sweep.h). */
static bool sweeps(const api_route *r)
{
    for (const api_param *p = r->params; p && p->name; p++)
        if (p->type == AP_BLOCKS) return true;
    return false;
}

/* The JSON answer of a route with sweeps: the one-block answer `one` (a
 * $ref, adopted) or, for block=all or A-B, <Name>Sweep: the one-block
 * answers of the blocks in order. */
static json_t *sweep_schema(json_t *schemas, const char *name, json_t *one)
{
    char comp[128], ref[160];
    snprintf(comp, sizeof comp, "%sSweep", name);
    snprintf(ref, sizeof ref, "#/components/schemas/%s", comp);
    json_t *blk = json_pack("{s:s,s:i}", "type", "integer", "minimum", 0);
    api_put(
        schemas, comp,
        json_pack("{s:s,s:s,s:{s:O,s:O,s:{s:s,s:i},s:{s:s,s:i,s:O}},s:[s,s,s,s],s:b}", "type", "object",
                  "description",
                  "A whole-model sweep (block=all or A-B): the one-block answers of blocks first_block .. "
                  "last_block, in order.",
                  "properties", "first_block", blk, "last_block", blk, "n_blocks", "type", "integer",
                  "minimum", 1, "blocks", "type", "array", "minItems", 1, "items", one, "required",
                  "first_block", "last_block", "n_blocks", "blocks", "additionalProperties", 0));
    json_decref(blk);
    return json_pack("{s:[o,{s:s}]}", "anyOf", one, "$ref", ref);
}

/* The 200 answer of a route: every media type it answers, and the JSON
 * answer's schema added to `schemas` as <Name>Answer. */
static json_t *ok_response(const api_service *svc, const api_route *r, json_t *schemas, char *err,
                           size_t errlen)
{
    char name[96];
    route_name(r->path, name, sizeof name);
    json_t *content = json_object();
    strbuf desc = STRBUF_INIT, csv = STRBUF_INIT;
    size_t n_tables = 0;
    for (const api_answer *a = r->answers; a && a->doc; a++)
        n_tables += a->format && !strcmp(a->format, "csv");
    sb_printf(&csv,
              "CSV (RFC 4180: UTF-8, lines end with CRLF, fields quoted where needed), one row per "
              "observation. Read it with pandas.read_csv(..., keep_default_na=False, na_values=[\"\"]): "
              "token texts such as NA or null are text; an empty cell is a value that does not apply "
              "(docs/API.md, Tables).");
    int rc = 0;
    bool csv_told = false;
    for (const api_answer *a = r->answers; a && a->doc && rc == 0; a++) {
        const char *type = media_type(a);
        if (!type) {
            snprintf(err, errlen, "format '%s' has no media type", a->format);
            rc = -1;
            break;
        }
        bool is_csv = strcmp(type, "text/csv") == 0;
        if (!is_csv || !csv_told) {
            sb_printf(&desc, "%s", desc.len ? " " : "");
            if (a->format) sb_printf(&desc, "format=%s: ", a->format);
            if (is_csv && n_tables > 1)
                sb_printf(&desc, "one of %zu tables, chosen by table= (see the text/csv schema).", n_tables);
            else
                sb_printf(&desc, "%s", a->doc);
            csv_told |= is_csv;
        }
        if (strcmp(type, "application/json") == 0) {
            json_t *s = api_schema_of(svc, a->schema ? a->schema : "", err, errlen);
            if (!s) {
                rc = -1;
                break;
            }
            if (!json_object_get(s, "$ref")) {
                char comp[128], ref[160];
                snprintf(comp, sizeof comp, "%sAnswer", name);
                snprintf(ref, sizeof ref, "#/components/schemas/%s", comp);
                api_put(schemas, comp, s);
                s = json_pack("{s:s}", "$ref", ref);
            }
            if (sweeps(r)) s = sweep_schema(schemas, name, s);
            api_put(content, type, json_pack("{s:o}", "schema", s));
        } else if (is_csv) {
            json_t *media = json_object_get(content, type);
            if (!media) {
                media = json_pack("{s:{s:s},s:[]}", "schema", "type", "string", "x-twd-tables");
                api_put(content, type, media);
            }
            rc = add_csv_table(svc, media, &csv, a, n_tables, err, errlen);
        } else {
            json_t *s = json_pack("{s:s,s:s}", "type", "string", "description", a->doc);
            if (strcmp(type, "application/octet-stream") == 0) api_put(s, "format", json_string("binary"));
            api_put(content, type, json_pack("{s:o}", "schema", s));
        }
    }
    json_t *media = json_object_get(content, "text/csv");
    if (rc == 0 && media) api_put(json_object_get(media, "schema"), "description", json_string(csv.s));
    json_t *res = NULL;
    if (rc == 0 && json_object_size(content) == 0) {
        snprintf(err, errlen, "the route has no answers (api_route.answers)");
        rc = -1;
    }
    if (rc == 0) {
        res = json_pack("{s:s,s:O}", "description", desc.s, "content", content);
        if (r->flags & API_CACHEABLE)
            api_put(res, "headers",
                    json_pack("{s:{s:s,s:{s:s,s:[s,s]}}}", "X-Twd-Cache", "description",
                              "hit: the answer came from the answer cache; miss: it was computed", "schema",
                              "type", "string", "enum", "hit", "miss"));
    }
    json_decref(content);
    sb_free(&desc);
    sb_free(&csv);
    return res;
}

/* ---------- errors ---------- */

static const struct {
    const char *status, *name, *doc;
} errors[] = {
    {"400", "BadRequest",
     "A parameter is invalid (the message names it and its allowed values), unknown or given twice; the body "
     "is not a JSON object; or the request is malformed (not HTTP, a bad header line, bad percent-encoding, "
     "a Content-Length that is not a number or given twice with different values)."},
    {"401", "Unauthorized",
     "The daemon has an api_key and the request has no 'Authorization: Bearer <api_key>' with it."},
    {"408", "RequestTimeout",
     "The request's head or body did not arrive within its deadline (first_byte_timeout, header_timeout, "
     "body_timeout); the connection is closed."},
    {"410", "Gone", "The job was cancelled (its cancel route) before it finished: it has no answer."},
    {"413", "PayloadTooLarge", "The body is larger than max_body (or its Content-Length is)."},
    {"414", "URITooLong", "The request target is longer than max_url."},
    {"415", "UnsupportedMediaType", "A request body that is not sent as Content-Type: application/json."},
    {"421", "MisdirectedRequest",
     "The Host header names a host this daemon does not answer for (see allowed_hosts; a defence against DNS "
     "rebinding)."},
    {"431", "RequestHeaderFieldsTooLarge",
     "The request's header lines are larger in all than the daemon takes."},
    {"500", "InternalError", "A bug (the message says what), or no memory left even for the answer."},
    {"501", "NotImplemented", "A request body sent with a Transfer-Encoding other than chunked."},
    {"503", "Unavailable",
     "Not now: the model is loading (Retry-After), reloading after its checkpoint file changed (Retry-After) "
     "or "
     "failed to load; too many connections or queued requests "
     "(Retry-After); not enough memory for this request (Retry-After); a background result such as the UMAP "
     "layout is being fitted (Retry-After; without one when it will never be there: use projection=pca); the "
     "computation passed its deadline or was canceled; the service is shutting down."},
    {"505", "HTTPVersionNotSupported", "A request line of an HTTP version other than 1.0 and 1.1."},
};

static json_t *error_components(void)
{
    json_t *r = json_object();
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        json_t *o = json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", errors[i].doc, "content",
                              "application/json", "schema", "$ref", "#/components/schemas/Error");
        if (strcmp(errors[i].status, "503") == 0)
            api_put(o, "headers",
                    json_pack("{s:{s:s,s:{s:s,s:i}}}", "Retry-After", "description",
                              "Seconds after which the request may succeed; absent when retrying cannot help",
                              "schema", "type", "integer", "minimum", 1));
        api_put(r, errors[i].name, o);
    }
    return r;
}

static void add_error(json_t *responses, const char *status)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (strcmp(errors[i].status, status) == 0) {
            char ref[96];
            snprintf(ref, sizeof ref, "#/components/responses/%s", errors[i].name);
            api_put(responses, status, json_pack("{s:s}", "$ref", ref));
        }
}

/* ---------- the document ---------- */

static json_t *operation(const api_service *svc, const api_route *r, int method, const json_t *ok)
{
    char name[96], id[112];
    route_name(r->path, name, sizeof name);
    snprintf(id, sizeof id, "%s%s", method == API_GET ? "get" : "post", name);
    strbuf d = STRBUF_INIT;
    sb_printf(&d, "%s", r->description ? r->description : r->summary);
    if (r->flags & API_NEEDS_MODEL) sb_printf(&d, " model= picks the model (default: the first).");
    if (method == API_GET) sb_printf(&d, " HEAD is answered as GET without the body.");
    json_t *op = json_pack("{s:s,s:s,s:s}", "operationId", id, "summary", r->summary, "description",
                           d.s ? d.s : r->summary);
    sb_free(&d);
    /* the key guards every route but /health (server/http.c) */
    if (strcmp(r->path, "/health") != 0) api_put(op, "security", json_pack("[{},{s:[]}]", "bearerAuth"));
    if (method == API_GET)
        api_put(op, "parameters", query_parameters(svc, r));
    else
        api_put(op, "requestBody", request_body(svc, r));
    json_t *responses = json_pack("{s:O}", "200", ok);
    add_error(responses, "400");
    if (strcmp(r->path, "/health") != 0) add_error(responses, "401");
    /* the HTTP layer's own refusals (server/guard.c, server/http.c) */
    add_error(responses, "408");
    if (strstr(r->path, "/job/result")) add_error(responses, "410"); /* a cancelled job */
    add_error(responses, "413");
    add_error(responses, "414");
    if (method == API_POST) add_error(responses, "415");
    add_error(responses, "421");
    add_error(responses, "431");
    add_error(responses, "500");
    add_error(responses, "501");
    add_error(responses, "503");
    add_error(responses, "505");
    api_put(op, "responses", responses);
    return op;
}

json_t *api_openapi_doc(const api_service *svc, char *err, size_t errlen)
{
    json_t *schemas = json_object(), *paths = json_object();
    char msg[512];
    for (size_t i = 0; i < sizeof components / sizeof components[0]; i++) {
        json_t *s = api_schema_of(svc, components[i].notation, msg, sizeof msg);
        if (!s) {
            snprintf(err, errlen, "component %s: %s", components[i].name, msg);
            goto fail;
        }
        api_put(schemas, components[i].name, s);
    }
    for (const api_route *r = api_routes; r->path; r++) {
        json_t *ok = ok_response(svc, r, schemas, msg, sizeof msg);
        if (!ok) {
            snprintf(err, errlen, "%s: %s", r->path, msg);
            goto fail;
        }
        json_t *item = json_object();
        if (r->methods & API_GET) api_put(item, "get", operation(svc, r, API_GET, ok));
        if (r->methods & API_POST) api_put(item, "post", operation(svc, r, API_POST, ok));
        json_decref(ok);
        api_put(paths, r->path, item);
    }
    json_t *doc = json_pack(
        "{s:s,s:{s:s,s:s,s:s,s:{s:s,s:s}},s:[{s:s}],s:[],s:o,s:{s:o,s:o,s:{s:{s:s,s:s,s:s}}}}", "openapi",
        "3.0.3", "info", "title", "twd: Traveling Words analysis service", "version", TWD_VERSION,
        "description",
        "GPT-2 analyses of 'Traveling Words: A Geometric Interpretation of Transformers' (arXiv 2309.07315). "
        "Every answer uses one vocabulary of names (docs/API.md); every error has the shape {\"error\": "
        "{\"code\", \"type\", \"message\"}}. Bounds that follow the model (blocks, heads, k, top, token ids) "
        "are "
        "the loaded models' (the largest, when several are served). A path that is not a route is a static "
        "file of the web page or 404; a method a route does not take is 405 with Allow; OPTIONS answers 204 "
        "with Allow. When the daemon has an api_key, every route but /health needs 'Authorization: Bearer "
        "<api_key>'.",
        "license", "name", "MIT", "url", "https://opensource.org/licenses/MIT", "servers", "url", "/",
        "security", "paths", paths, "components", "schemas", schemas, "responses", error_components(),
        "securitySchemes", "bearerAuth", "type", "http", "scheme", "bearer", "description",
        "The daemon's api_key (configuration), when it has one; without one every route is open.");
    if (!doc) snprintf(err, errlen, "out of memory");
    return doc;
fail:
    json_decref(schemas);
    json_decref(paths);
    return NULL;
}

int api_openapi(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    char err[512];
    json_t *doc = api_openapi_doc(app->svc, err, sizeof err);
    if (!doc) {
        tw_log("BUG: /openapi.json: %s", err);
        return api_error(res, 500, "the API description is wrong (a bug, please report it): %s", err);
    }
    return api_json(res, 200, doc);
}
