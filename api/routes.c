/* The one route table, and the handlers of the service's own routes
 * (/health, /model, /tokenize, /metrics, /openapi.json). The analyses'
 * handlers live in their own files and are declared in api/handlers.h. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/handlers.h"

/* ---------- parameter tables ---------- */

static const api_param p_none[] = {API_PARAMS_END};

static const api_param p_tokenize[] = {
    {.name = "text",
     .type = AP_TEXT,
     .required = true,
     .max_ref = APB_MAX_TEXT,
     .doc = "Text to encode (UTF-8). Invalid UTF-8 is rejected with 400."},
    API_PARAMS_END,
};

static const char *const fmt_json_csv[] = {"json", "csv", NULL};
static const char *const fmt_svd[] = {"json", "csv", "latex", NULL};
static const char *const schemes[] = {"all", "norm", "scaled", "bias", "scaled_bias", NULL};
static const char *const matrices[] = {"both", "qk", "vo", NULL};
static const char *const projections[] = {"umap", "pca", NULL};
static const char *const gelus[] = {"tanh", "erf", NULL};

#define P_K                                                                                                  \
    {                                                                                                        \
        .name = "k", .type = AP_INT, .def = "5", .min = 1, .max_ref = APB_MAX_K,                             \
        .doc = "Tokens per list (top-k by dot product)."                                                     \
    }
#define P_BLOCK                                                                                              \
    {                                                                                                        \
        .name = "block", .type = AP_INT, .required = true, .max_ref = APB_LAST_LAYER,                        \
        .doc = "Transformer block (0-based)."                                                                \
    }
#define P_BLOCKS                                                                                             \
    {                                                                                                        \
        .name = "block", .type = AP_BLOCKS, .required = true, .max_ref = APB_LAST_LAYER,                     \
        .doc = "Transformer block (0-based), or several: \"all\" or a range \"A-B\" (A <= B), answered "     \
               "block by block as {first_block, last_block, n_blocks, blocks: [one-block answers]} (CSV: a " \
               "first column block)."                                                                        \
    }
#define P_FORMAT(list)                                                                                       \
    {                                                                                                        \
        .name = "format", .type = AP_ENUM, .def = "json", .choices = (list), .doc = "Answer format."         \
    }
#define P_GELU(text)                                                                                         \
    {                                                                                                        \
        .name = "gelu", .type = AP_ENUM, .def = "tanh", .choices = gelus, .doc = (text)                      \
    }

static const api_param p_embeddings[] = {
    {.name = "scheme",
     .type = AP_ENUM,
     .def = "all",
     .choices = schemes,
     .doc = "Scoring scheme (docs/MATH.md §3.1): norm, scaled (by ln_f gamma), bias (plus beta.E), "
            "scaled_bias, or all."},
    P_K,
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_format[] = {P_FORMAT(fmt_json_csv), API_PARAMS_END};

static const api_param p_probe[] = {
    P_BLOCKS,
    P_K,
    {.name = "words",
     .type = AP_LIST,
     .min = 1,
     .max_ref = APB_MAX_WORDS,
     .doc = "Words to probe, encoded without a leading space; words that are not one token are skipped and "
            "listed. Default: the paper's 100 most common English nouns."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_svd[] = {
    P_BLOCKS,
    {.name = "matrix", .type = AP_ENUM, .def = "both", .choices = matrices, .doc = "W_qk, W_vo or both."},
    {.name = "top",
     .type = AP_INT,
     .def = "20",
     .max_ref = APB_MAX_TOP_DH,
     .doc = "Singular directions reported per head (at most the head dimension and max_top; 0: spectra "
            "only)."},
    P_K,
    {.name = "head", .type = AP_INT, .max_ref = APB_LAST_HEAD, .doc = "One head (default: all heads)."},
    P_FORMAT(fmt_svd),
    API_PARAMS_END,
};

static const api_param p_svd_bias[] = {P_BLOCKS, P_K, P_FORMAT(fmt_json_csv), API_PARAMS_END};

static const api_param p_trajectory[] = {
    {.name = "text",
     .type = AP_TEXT,
     .required = true,
     .min = 1,
     .max_ref = APB_MAX_TEXT,
     .doc = "The phrase (UTF-8), encoded as-is; at most max_tokens tokens and the model's n_ctx."},
    {.name = "projection",
     .type = AP_ENUM,
     .def = "umap",
     .choices = projections,
     .doc = "umap (the layout fitted in the background; 503 with Retry-After until it is ready) or pca "
            "(available at once)."},
    P_GELU("GELU form of the forward pass: GPT-2's tanh approximation, or the exact erf form nanoGPT uses."),
    P_K,
    API_PARAMS_END,
};

static const api_param p_attention[] = {
    {.name = "text",
     .type = AP_TEXT,
     .required = true,
     .min = 1,
     .max_ref = APB_MAX_TEXT,
     .doc = "The phrase (UTF-8), encoded as-is."},
    {.name = "block", .type = AP_INT, .max_ref = APB_LAST_LAYER, .doc = "One block (default: all blocks)."},
    {.name = "head", .type = AP_INT, .max_ref = APB_LAST_HEAD, .doc = "One head (default: all heads)."},
    P_GELU("GELU form of the forward pass."),
    API_PARAMS_END,
};

static const api_param p_layout[] = {
    {.name = "projection",
     .type = AP_ENUM,
     .def = "umap",
     .choices = projections,
     .doc = "Which fitted layout."},
    {.name = "limit",
     .type = AP_INT,
     .def = "0",
     .max_ref = APB_UMAP_ROWS,
     .doc = "Points to return, spread evenly over the fitted rows; 0: all of them."},
    API_PARAMS_END,
};

/* ---------- handlers ---------- */

/* 200 when every model is ready; 503 with the first one still loading (or
 * failed) and what it is doing. */
static int h_health(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    const api_service *svc = app->svc;
    json_t *models = json_array();
    for (size_t i = 0; i < svc->n_models; i++) {
        twd_app *m = svc->models[i];
        int st = atomic_load(&m->state);
        if (st == APP_READY) {
            json_array_append_new(models,
                                  json_pack("{s:s,s:b}", "name", m->model_name, "synthetic", m->synthetic));
            continue;
        }
        json_decref(models);
        char status[256];
        pthread_mutex_lock(&m->status_lock);
        snprintf(status, sizeof status, "%s", m->status);
        pthread_mutex_unlock(&m->status_lock);
        api_error(res, 503, "%s%s%s: %s",
                  st == APP_LOADING ? "the model is loading" : "the model failed to load",
                  svc->n_models > 1 ? " " : "", svc->n_models > 1 ? m->model_name : "", status);
        res->retry_after = st == APP_LOADING ? 1 : 0;
        return 0;
    }
    twd_app *first = svc->models[0];
    return api_json(res, 200,
                    json_pack("{s:s,s:s,s:b,s:o}", "status", "ok", "model", first->model_name, "synthetic",
                              first->synthetic, "models", models));
}

/* Every model served, with its shape: the names `model=` takes. */
static int h_models(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    const api_service *svc = app->svc;
    json_t *list = json_array();
    for (size_t i = 0; i < svc->n_models; i++) {
        twd_app *m = svc->models[i];
        int st = atomic_load(&m->state);
        const gpt2_config *c = &m->model.cfg;
        json_t *o = json_pack("{s:s,s:b,s:s,s:s}", "name", m->model_name, "default", i == 0, "state",
                              st == APP_READY     ? "ready"
                              : st == APP_LOADING ? "loading"
                                                  : "failed",
                              "origin", m->model_origin);
        if (st == APP_READY) {
            json_object_set_new(o, "source", json_string(m->model_source));
            json_object_set_new(o, "synthetic", json_boolean(m->synthetic));
            json_object_set_new(o, "n_layer", json_integer(c->n_layer));
            json_object_set_new(o, "n_head", json_integer(c->n_head));
            json_object_set_new(o, "n_embd", json_integer(c->n_embd));
            json_object_set_new(o, "n_ctx", json_integer(c->n_ctx));
            json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
            json_object_set_new(o, "n_params", json_integer((json_int_t)m->model.n_params));
        }
        json_array_append_new(list, o);
    }
    return api_json(res, 200, json_pack("{s:o}", "models", list));
}

/* What /model can say of where the weights come from: never a claim that
 * they are trained unless the checkpoint says so (twd's demo model). */
static const char *model_note(const twd_app *app)
{
    if (app->synthetic)
        return "SYNTHETIC WEIGHTS: this model was generated from a seed, not trained; analyses show the "
               "structure of random weights only.";
    if (app->model.demo)
        return "twd's demo model: a small GPT-2-architecture model trained by tools/demo-model/train.py, "
               "not GPT-2 (see 'corpus').";
    return app->model.format == GPT2_FORMAT_NANOGPT
               ? "a nanoGPT checkpoint read from disk (see 'source')"
               : "a Hugging Face GPT-2 snapshot read from disk (see 'source')";
}

static int h_model(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    const gpt2_model *m = &app->model;
    const gpt2_config *c = &m->cfg;
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:b,s:I,s:I,s:f,s:f,s:s,s:s}",
        "name", app->model_name, "source", app->model_source, "origin", app->model_origin, "format",
        m->format == GPT2_FORMAT_NANOGPT ? "nanogpt" : "safetensors", "dtype", m->dtype, "synthetic",
        app->synthetic, "n_layer", c->n_layer, "n_head", c->n_head, "n_embd", c->n_embd, "n_inner",
        c->n_inner, "n_ctx", c->n_ctx, "vocab_size", c->vocab_size, "vocab_rows", m->vocab_rows,
        "padding_rows_excluded", m->vocab_rows - c->vocab_size, "tokenizer_vocab_size",
        app->tok ? tokenizer_vocab_size(app->tok) : 0, "tokenizer",
        app->tok && tokenizer_is_chars(app->tok) ? "characters" : "gpt2-bpe", "bias", m->has_bias, "n_params",
        (json_int_t)m->n_params, "file_size", (json_int_t)m->file_size, "load_seconds", app->load_seconds,
        "layer_norm_epsilon", (double)c->ln_eps, "gelu_default", "tanh", "note", model_note(app));
    if (o && app->synthetic)
        json_object_set_new(o, "synthetic_seed", json_integer((json_int_t)app->synthetic_seed));
    if (o && m->corpus[0]) json_object_set_new(o, "corpus", json_string(m->corpus));
    if (o && m->default_phrase[0]) json_object_set_new(o, "default_phrase", json_string(m->default_phrase));
    if (o && m->format == GPT2_FORMAT_NANOGPT) {
        json_t *n = json_object();
        if (m->has_iter_num) json_object_set_new(n, "iter_num", json_integer((json_int_t)m->iter_num));
        if (m->dataset[0]) json_object_set_new(n, "dataset", json_string(m->dataset));
        json_object_set_new(n, "compiled", json_boolean(m->compiled));
        json_object_set_new(o, "nanogpt", n);
    }
    api_ext_model_info(app, o);
    return api_json(res, 200, o);
}

static int h_tokenize(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *t = api_arg_get(a, "text");
    int32_t *ids = NULL;
    long n = api_encode(app, "text", t->s, t->s_len, &ids, res);
    if (n < 0) return -1;
    json_t *toks = json_array();
    for (long i = 0; i < n; i++) json_array_append_new(toks, api_token_json(app->tok, ids[i]));
    free(ids);
    return api_json(res, 200, json_pack("{s:s,s:i,s:o}", "text", t->s, "n_tokens", (int)n, "tokens", toks));
}

static int h_metrics(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    strbuf b = STRBUF_INIT;
    const api_service *svc = app->svc;
    if (svc->metrics_render) svc->metrics_render(svc->metrics_ctx, &b);
    api_render_metrics(svc, &b);
    size_t len = 0;
    char *s = sb_take(&b, &len);
    if (!s) return api_status_error(res, TW_ENOMEM, "metrics");
    return api_respond(res, 200, "text/plain; version=0.0.4; charset=utf-8", s, len);
}

/* ---------- OpenAPI ---------- */

static json_t *param_schema(const twd_app *app, const api_param *p)
{
    json_t *s = json_object();
    switch (p->type) {
    case AP_INT: {
        json_object_set_new(s, "type", json_string("integer"));
        json_object_set_new(s, "minimum", json_integer(p->min));
        /* bounds that follow the model are known once it is loaded */
        if (p->max_ref == APB_CONST || atomic_load(&app->state) == APP_READY)
            json_object_set_new(s, "maximum", json_integer(api_param_max(app, p)));
        if (p->def) json_object_set_new(s, "default", json_integer(strtoll(p->def, NULL, 10)));
        break;
    }
    case AP_BLOCKS: {
        json_t *one = json_pack("{s:s,s:I}", "type", "integer", "minimum", (json_int_t)p->min);
        if (atomic_load(&app->state) == APP_READY)
            json_object_set_new(one, "maximum", json_integer(api_param_max(app, p)));
        json_object_set_new(
            s, "oneOf",
            json_pack("[o,{s:s,s:s}]", one, "type", "string", "pattern", "^(all|[0-9]+-[0-9]+)$"));
        break;
    }
    case AP_BOOL:
        json_object_set_new(s, "type", json_string("boolean"));
        if (p->def)
            json_object_set_new(s, "default",
                                json_boolean(strcmp(p->def, "true") == 0 || strcmp(p->def, "1") == 0));
        break;
    case AP_ENUM: {
        json_object_set_new(s, "type", json_string("string"));
        json_t *e = json_array();
        for (const char *const *c = p->choices; *c; c++) json_array_append_new(e, json_string(*c));
        json_object_set_new(s, "enum", e);
        if (p->def) json_object_set_new(s, "default", json_string(p->def));
        break;
    }
    case AP_TEXT:
        json_object_set_new(s, "type", json_string("string"));
        json_object_set_new(s, "minLength", json_integer(p->min));
        if (p->max_ref == APB_MAX_TEXT)
            json_object_set_new(s, "maxLength", json_integer(api_param_max(app, p)));
        break;
    case AP_LIST:
        json_object_set_new(s, "type", json_string("array"));
        json_object_set_new(s, "items",
                            json_pack("{s:s,s:i,s:i}", "type", "string", "minLength", 1, "maxLength", 256));
        json_object_set_new(s, "minItems", json_integer(p->min));
        if (p->max_ref == APB_MAX_WORDS)
            json_object_set_new(s, "maxItems", json_integer(api_param_max(app, p)));
        break;
    }
    return s;
}

static json_t *error_responses(void)
{
    json_t *r = json_object();
    static const struct {
        const char *code, *desc;
    } errs[] = {
        {"400", "Invalid parameter (the message names it and its allowed range)."},
        {"404", "No such route."},
        {"405", "Method not allowed (see the Allow header)."},
        {"413", "Request target or body too large."},
        {"503", "The model is still loading, or a background computation is not ready (see Retry-After)."},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        json_object_set_new(r, errs[i].code,
                            json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", errs[i].desc, "content",
                                      "application/json", "schema", "$ref", "#/components/schemas/Error"));
    return r;
}

static json_t *operation(const twd_app *app, const api_route *r, int method)
{
    json_t *op = json_pack("{s:s,s:s}", "summary", r->summary, "description",
                           r->description ? r->description : r->summary);
    json_t *responses = error_responses();
    const char *ctype = strcmp(r->path, "/metrics") == 0 ? "text/plain" : "application/json";
    json_object_set_new(
        responses, "200",
        json_pack("{s:s,s:{s:{}}}", "description", r->answer ? r->answer : "OK", "content", ctype));
    json_object_set_new(op, "responses", responses);
    if (method == API_GET) {
        json_t *params = json_array();
        for (const api_param *p = r->params; p && p->name; p++) {
            json_t *schema = p->type == AP_LIST ? json_pack("{s:s,s:s}", "type", "string", "description",
                                                            "comma-separated list")
                                                : param_schema(app, p);
            json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:s,s:o}", "name", p->name, "in", "query",
                                                    "required", p->required, "description", p->doc, "schema",
                                                    schema));
        }
        json_object_set_new(op, "parameters", params);
    } else {
        json_t *props = json_object(), *req = json_array();
        for (const api_param *p = r->params; p && p->name; p++) {
            json_t *schema = param_schema(app, p);
            json_object_set_new(schema, "description", json_string(p->doc));
            json_object_set_new(props, p->name, schema);
            if (p->required) json_array_append_new(req, json_string(p->name));
        }
        json_t *schema =
            json_pack("{s:s,s:o,s:b}", "type", "object", "properties", props, "additionalProperties", 0);
        if (json_array_size(req))
            json_object_set_new(schema, "required", req);
        else
            json_decref(req);
        json_object_set_new(
            op, "requestBody",
            json_pack("{s:b,s:{s:{s:o}}}", "required", 0, "content", "application/json", "schema", schema));
    }
    return op;
}

static int h_openapi(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    json_t *paths = json_object();
    for (const api_route *r = api_routes; r->path; r++) {
        json_t *item = json_object();
        if (r->methods & API_GET) json_object_set_new(item, "get", operation(app, r, API_GET));
        if (r->methods & API_POST) json_object_set_new(item, "post", operation(app, r, API_POST));
        json_object_set_new(paths, r->path, item);
    }
    json_t *doc = json_pack(
        "{s:s,s:{s:s,s:s,s:s},s:[{s:s}],s:o,s:{s:{s:{s:s,s:{s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s}},s:[s,s,s]}},s:"
        "[s]}}}}",
        "openapi", "3.0.3", "info", "title", "twd: Traveling Words analysis service", "version", "0.1.0",
        "description",
        "GPT-2 analyses of 'Traveling Words: A Geometric Interpretation of Transformers' (arXiv 2309.07315). "
        "Every error has the shape {\"error\": {\"code\", \"type\", \"message\"}}.",
        "servers", "url", "/", "paths", paths, "components", "schemas", "Error", "type", "object",
        "properties", "error", "type", "object", "properties", "code", "type", "integer", "type", "type",
        "string", "message", "type", "string", "required", "code", "type", "message", "required", "error");
    return api_json(res, 200, doc);
}

/* ---------- the table ---------- */

const api_route api_routes[] = {
    {
        .path = "/health",
        .methods = API_GET,
        .fn = h_health,
        .params = p_none,
        .summary = "Liveness and readiness",
        .description = "200 when the model is loaded; 503 (with Retry-After) while it loads. Never waits "
                       "behind a computation.",
        .answer = "{status, model, synthetic}",
    },
    {
        .path = "/model",
        .methods = API_GET,
        .fn = h_model,
        .params = p_none,
        .flags = API_NEEDS_MODEL,
        .summary = "The loaded model",
        .description = "Name, source, whether the weights are synthetic, shapes, parameter count, file size, "
                       "load time, and the state of background work (UMAP fit).",
        .answer = "model description",
    },
    {
        .path = "/models",
        .methods = API_GET,
        .fn = h_models,
        .params = p_none,
        .summary = "The models served",
        .description = "Every model the daemon serves with its name (what model= takes on the other routes), "
                       "state, origin and shape; the first is the default.",
        .answer = "{models: [{name, default, state, origin, source, synthetic, n_layer, n_head, n_embd, "
                  "n_ctx, vocab_size, n_params}]}",
    },
    {
        .path = "/tokenize",
        .methods = API_GET | API_POST,
        .fn = h_tokenize,
        .params = p_tokenize,
        .flags = API_NEEDS_MODEL,
        .summary = "GPT-2 tokenization",
        .description = "Byte-level BPE exactly as GPT-2; '<|endoftext|>' is the special token. Each token "
                       "has its id, its text (invalid UTF-8 replaced by U+FFFD) and its exact bytes.",
        .answer = "{text, n_tokens, tokens: [{id, text, bytes}]}",
    },
    {
        .path = "/metrics",
        .methods = API_GET,
        .fn = h_metrics,
        .params = p_none,
        .summary = "Prometheus metrics",
        .description = "Requests by route and status, latency histogram, in-flight requests, model load "
                       "time, cache use.",
        .answer = "Prometheus text exposition",
    },
    {
        .path = "/openapi.json",
        .methods = API_GET,
        .fn = h_openapi,
        .params = p_none,
        .summary = "This API description (OpenAPI 3)",
        .answer = "OpenAPI document",
    },
    {
        .path = "/embeddings",
        .methods = API_GET,
        .fn = api_embeddings,
        .params = p_embeddings,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Embedding norms under ln_f (docs/MATH.md §3.1)",
        .description = "Per scheme the top-k and bottom-k tokens of norm ||E_i||, scaled ||gamma*E_i||, bias "
                       "||E_i|| + beta.E_i and scaled_bias, with their scores.",
        .answer = "{k, scheme, schemes: {name: {top: [token+score], bottom: [token+score]}}}",
    },
    {
        .path = "/embeddings/normalization",
        .methods = API_GET,
        .fn = api_embeddings_normalization,
        .params = p_format,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Normalisation statistics of the embeddings (docs/MATH.md §3.2)",
        .description =
            "Average row norm, and mean/std of the L2 and cosine distances of E, E-c, sE, s(E-c) to LN_0(E).",
        .answer = "{avg_norm, scale, rows: [{matrix, l2_mean, l2_std, cos_mean, cos_std}]}",
    },
    {
        .path = "/probe",
        .methods = API_GET | API_POST,
        .fn = api_probe,
        .params = p_probe,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Attention heads as ellipsoids: word probes (docs/MATH.md §4)",
        .description = "For each word, per head the top-k keys (q Wqk_h against LN_b(E)) and values (LN_f(E "
                       "+ u_h + b_o) against E) with ||u_h||, and the same for the layer sum.",
        .answer = "{block, k, n_heads, skipped, words: [{word, token, heads: [{head, keys, values, "
                  "value_norm}], layer}]}",
    },
    {
        .path = "/svd",
        .methods = API_GET,
        .fn = api_svd,
        .params = p_svd,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "SVD of W_qk and W_vo per head (docs/MATH.md §5)",
        .description = "All non-zero singular values, the coverage curve and the fraction of directions "
                       "reaching 99 %, and for the top directions the sign-aligned top-k tokens of the left "
                       "and right singular vectors. format=latex gives the paper-style tables.",
        .answer = "{block, matrix, top, k, dh, heads: [{head, qk|vo: {singular_values, coverage, frac99, "
                  "directions}}]}",
    },
    {
        .path = "/trajectory",
        .methods = API_GET | API_POST,
        .fn = api_trajectory,
        .params = p_trajectory,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Trajectory of a phrase through the layers (docs/MATH.md §7-§8)",
        .description =
            "The phrase's tokens and, for each state (embedding, embedding+position, its ln_f, then ln_f of "
            "the residual stream after every block), the 3D point of every token and its k nearest "
            "vocabulary tokens by dot product with wte (the logit lens), plus the top next tokens.",
        .answer = "{text, projection, gelu, k, tokens, states: [{index, name, block, points, nearest}], "
                  "next_tokens}",
    },
    {
        .path = "/attention",
        .methods = API_GET | API_POST,
        .fn = api_attention,
        .params = p_attention,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Attention patterns of a phrase",
        .description = "Per block and head, the causal softmax weights of the forward pass: row t lists the "
                       "weights query t gives to keys 0..t.",
        .answer = "{text, gelu, n_tokens, tokens, blocks: [{block, heads: [{head, pattern}]}]}",
    },
    {
        .path = "/umap/layout",
        .methods = API_GET,
        .fn = api_umap_layout,
        .params = p_layout,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "The fitted background points",
        .description = "3D coordinates of the vocabulary rows the projection was fitted on, with their token "
                       "ids and texts, for drawing the cloud a trajectory moves through.",
        .answer = "{projection, rows, n, points, ids, texts}",
    },
    {
        .path = "/umap",
        .methods = API_GET,
        .fn = api_umap_status,
        .params = p_none,
        .flags = API_NEEDS_MODEL,
        .summary = "State of the UMAP layout",
        .description = "disabled, fitting (with progress and stage), ready (loaded from the disk cache or "
                       "fitted, with the fit time) or failed.",
        .answer = "{state, progress, stage, rows, from_cache, fit_seconds}",
    },
    {
        .path = "/svd/bias",
        .methods = API_GET,
        .fn = api_svd_bias,
        .params = p_svd_bias,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Bias probes of the attention heads (docs/MATH.md §6)",
        .description =
            "Per head the top-k tokens of a = Wq_h bk_h, -a, c = Wk_h bq_h and -c against LN_b(E).",
        .answer = "{block, k, heads: [{head, a, -a, c, -c}]}",
    },
    {.path = NULL},
};
