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

static const api_param p_none[] = {{NULL}};

static const api_param p_tokenize[] = {
    {"text", AP_TEXT, true, NULL, 0, APB_MAX_TEXT, 0, NULL,
     "Text to encode (UTF-8). Invalid UTF-8 is rejected with 400."},
    {NULL},
};

static const char *const fmt_json_csv[] = {"json", "csv", NULL};
static const char *const fmt_svd[] = {"json", "csv", "latex", NULL};
static const char *const schemes[] = {"all", "norm", "scaled", "bias", "scaled_bias", NULL};
static const char *const matrices[] = {"both", "qk", "vo", NULL};

#define P_K {"k", AP_INT, false, "5", 1, APB_MAX_K, 0, NULL, "Tokens per list (top-k by dot product)."}
#define P_BLOCK {"block", AP_INT, true, NULL, 0, APB_LAST_LAYER, 0, NULL, "Transformer block (0-based)."}
#define P_FORMAT(choices) {"format", AP_ENUM, false, "json", 0, APB_CONST, 0, choices, "Answer format."}

static const api_param p_embeddings[] = {
    {"scheme", AP_ENUM, false, "all", 0, APB_CONST, 0, schemes,
     "Scoring scheme (SPEC 1): norm, scaled (by ln_f gamma), bias (plus beta.E), scaled_bias, or all."},
    P_K,
    P_FORMAT(fmt_json_csv),
    {NULL},
};

static const api_param p_format[] = {P_FORMAT(fmt_json_csv), {NULL}};

static const api_param p_probe[] = {
    P_BLOCK,
    P_K,
    {"words", AP_LIST, false, NULL, 1, APB_MAX_WORDS, 0, NULL,
     "Words to probe, encoded without a leading space; words that are not one token are skipped and "
     "listed. Default: the paper's 100 most common English nouns."},
    P_FORMAT(fmt_json_csv),
    {NULL},
};

static const api_param p_svd[] = {
    P_BLOCK,
    {"matrix", AP_ENUM, false, "both", 0, APB_CONST, 0, matrices, "W_qk, W_vo or both."},
    {"top", AP_INT, false, "20", 0, APB_MAX_TOP, 0, NULL,
     "Singular directions reported per head (at most the head dimension; 0: spectra only)."},
    P_K,
    {"head", AP_INT, false, NULL, 0, APB_LAST_HEAD, 0, NULL, "One head (default: all heads)."},
    P_FORMAT(fmt_svd),
    {NULL},
};

static const api_param p_svd_bias[] = {P_BLOCK, P_K, P_FORMAT(fmt_json_csv), {NULL}};

static const char *const projections[] = {"umap", "pca", NULL};
static const char *const gelus[] = {"tanh", "erf", NULL};

static const api_param p_trajectory[] = {
    {"text", AP_TEXT, true, NULL, 1, APB_MAX_TEXT, 0, NULL,
     "The phrase (UTF-8), encoded as-is; at most max_tokens tokens and the model's n_ctx."},
    {"projection", AP_ENUM, false, "umap", 0, APB_CONST, 0, projections,
     "umap (the layout fitted in the background; 503 with Retry-After until it is ready) or pca "
     "(available at once)."},
    {"gelu", AP_ENUM, false, "tanh", 0, APB_CONST, 0, gelus,
     "GELU form of the forward pass: GPT-2's tanh approximation, or the exact erf form nanoGPT uses."},
    P_K,
    {NULL},
};

static const api_param p_attention[] = {
    {"text", AP_TEXT, true, NULL, 1, APB_MAX_TEXT, 0, NULL, "The phrase (UTF-8), encoded as-is."},
    {"block", AP_INT, false, NULL, 0, APB_LAST_LAYER, 0, NULL, "One block (default: all blocks)."},
    {"head", AP_INT, false, NULL, 0, APB_LAST_HEAD, 0, NULL, "One head (default: all heads)."},
    {"gelu", AP_ENUM, false, "tanh", 0, APB_CONST, 0, gelus, "GELU form of the forward pass."},
    {NULL},
};

static const api_param p_layout[] = {
    {"projection", AP_ENUM, false, "umap", 0, APB_CONST, 0, projections, "Which fitted layout."},
    {"limit", AP_INT, false, "0", 0, APB_UMAP_ROWS, 0, NULL,
     "Points to return, spread evenly over the fitted rows; 0: all of them."},
    {NULL},
};

/* ---------- handlers ---------- */

static int h_health(twd_app *app, const api_request *req, const api_args *a, api_response *res)
{
    (void)req; (void)a;
    int st = atomic_load(&app->state);
    if (st == APP_READY)
        return api_json(res, 200, json_pack("{s:s,s:s,s:b}", "status", "ok", "model", app->model_name,
                                            "synthetic", app->synthetic));
    char status[256];
    pthread_mutex_lock(&app->status_lock);
    snprintf(status, sizeof status, "%s", app->status);
    pthread_mutex_unlock(&app->status_lock);
    api_error(res, 503, "%s: %s", st == APP_LOADING ? "the model is loading" : "the model failed to load", status);
    res->retry_after = st == APP_LOADING ? 1 : 0;
    return 0;
}

static int h_model(twd_app *app, const api_request *req, const api_args *a, api_response *res)
{
    (void)req; (void)a;
    const gpt2_config *c = &app->model.cfg;
    json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:I,s:f,s:f,s:s,s:s}",
                          "name", app->model_name, "source", app->model_source, "origin", app->model_origin,
                          "synthetic", app->synthetic, "n_layer", c->n_layer, "n_head", c->n_head, "n_embd",
                          c->n_embd, "n_inner", c->n_inner, "n_ctx", c->n_ctx, "vocab_size", c->vocab_size,
                          "tokenizer_vocab_size", app->tok ? tokenizer_vocab_size(app->tok) : 0, "n_params",
                          (json_int_t)app->model.n_params, "file_size", (json_int_t)app->model.file_size,
                          "load_seconds", app->load_seconds, "layer_norm_epsilon", (double)c->ln_eps,
                          "gelu_default", "tanh", "note",
                          app->synthetic ? "SYNTHETIC WEIGHTS: this model was generated from a seed, not "
                                           "trained; analyses show structure of random weights only."
                                         : "trained weights");
    if (o && app->synthetic) json_object_set_new(o, "synthetic_seed", json_integer((json_int_t)app->synthetic_seed));
    api_ext_model_info(app, o);
    return api_json(res, 200, o);
}

static int h_tokenize(twd_app *app, const api_request *req, const api_args *a, api_response *res)
{
    (void)req;
    const api_arg *t = api_arg_get(a, "text");
    int32_t *ids = NULL;
    long n = tokenizer_encode(app->tok, t->s, t->s_len, &ids);
    if (n < 0) return api_status_error(res, TW_ENOMEM, "tokenizing");
    json_t *toks = json_array();
    for (long i = 0; i < n; i++) json_array_append_new(toks, api_token_json(app->tok, ids[i]));
    free(ids);
    return api_json(res, 200, json_pack("{s:s,s:i,s:o}", "text", t->s, "n_tokens", (int)n, "tokens", toks));
}

static int h_metrics(twd_app *app, const api_request *req, const api_args *a, api_response *res)
{
    (void)req; (void)a;
    strbuf b = STRBUF_INIT;
    if (app->metrics_render) app->metrics_render(app->metrics_ctx, &b);
    api_render_metrics(app, &b);
    size_t len = 0;
    char *s = sb_take(&b, &len);
    if (!s) return api_status_error(res, TW_ENOMEM, "metrics");
    api_response_free(res);
    res->status = 200;
    res->body = s;
    res->len = len;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return 0;
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
    case AP_BOOL:
        json_object_set_new(s, "type", json_string("boolean"));
        if (p->def) json_object_set_new(s, "default", json_boolean(strcmp(p->def, "true") == 0 || strcmp(p->def, "1") == 0));
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
        if (p->max_ref == APB_MAX_TEXT) json_object_set_new(s, "maxLength", json_integer(api_param_max(app, p)));
        break;
    case AP_LIST:
        json_object_set_new(s, "type", json_string("array"));
        json_object_set_new(s, "items", json_pack("{s:s,s:i,s:i}", "type", "string", "minLength", 1, "maxLength", 256));
        json_object_set_new(s, "minItems", json_integer(p->min));
        if (p->max_ref == APB_MAX_WORDS) json_object_set_new(s, "maxItems", json_integer(api_param_max(app, p)));
        break;
    }
    return s;
}

static json_t *error_responses(void)
{
    json_t *r = json_object();
    static const struct { const char *code, *desc; } errs[] = {
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
    json_t *op = json_pack("{s:s,s:s}", "summary", r->summary, "description", r->description ? r->description : r->summary);
    json_t *responses = error_responses();
    const char *ctype = strcmp(r->path, "/metrics") == 0 ? "text/plain" : "application/json";
    json_object_set_new(responses, "200", json_pack("{s:s,s:{s:{}}}", "description", r->answer ? r->answer : "OK",
                                                    "content", ctype));
    json_object_set_new(op, "responses", responses);
    if (method == API_GET) {
        json_t *params = json_array();
        for (const api_param *p = r->params; p && p->name; p++) {
            json_t *schema = p->type == AP_LIST ? json_pack("{s:s,s:s}", "type", "string", "description",
                                                            "comma-separated list")
                                                : param_schema(app, p);
            json_array_append_new(params, json_pack("{s:s,s:s,s:b,s:s,s:o}", "name", p->name, "in", "query", "required",
                                                    p->required, "description", p->doc, "schema", schema));
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
        json_t *schema = json_pack("{s:s,s:o,s:b}", "type", "object", "properties", props, "additionalProperties", 0);
        if (json_array_size(req)) json_object_set_new(schema, "required", req);
        else json_decref(req);
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b,s:{s:{s:o}}}", "required", 0, "content", "application/json", "schema", schema));
    }
    return op;
}

static int h_openapi(twd_app *app, const api_request *req, const api_args *a, api_response *res)
{
    (void)req; (void)a;
    json_t *paths = json_object();
    for (const api_route *r = api_routes; r->path; r++) {
        json_t *item = json_object();
        if (r->methods & API_GET) json_object_set_new(item, "get", operation(app, r, API_GET));
        if (r->methods & API_POST) json_object_set_new(item, "post", operation(app, r, API_POST));
        json_object_set_new(paths, r->path, item);
    }
    json_t *doc = json_pack(
        "{s:s,s:{s:s,s:s,s:s},s:[{s:s}],s:o,s:{s:{s:{s:s,s:{s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s}},s:[s,s,s]}},s:[s]}}}}",
        "openapi", "3.0.3", "info", "title", "twd: Traveling Words analysis service", "version", "0.1.0",
        "description",
        "GPT-2 analyses of 'Traveling Words: A Geometric Interpretation of Transformers' (arXiv 2309.07315). "
        "Every error has the shape {\"error\": {\"code\", \"type\", \"message\"}}.",
        "servers", "url", "/", "paths", paths, "components", "schemas", "Error", "type", "object", "properties",
        "error", "type", "object", "properties", "code", "type", "integer", "type", "type", "string", "message",
        "type", "string", "required", "code", "type", "message", "required", "error");
    return api_json(res, 200, doc);
}

/* ---------- the table ---------- */

const api_route api_routes[] = {
    {"/health", API_GET, h_health, p_none, 0, "Liveness and readiness",
     "200 when the model is loaded; 503 (with Retry-After) while it loads. Never waits behind a computation.",
     "{status, model, synthetic}"},
    {"/model", API_GET, h_model, p_none, API_NEEDS_MODEL, "The loaded model",
     "Name, source, whether the weights are synthetic, shapes, parameter count, file size, load time, and the "
     "state of background work (UMAP fit).",
     "model description"},
    {"/tokenize", API_GET | API_POST, h_tokenize, p_tokenize, API_NEEDS_MODEL, "GPT-2 tokenization",
     "Byte-level BPE exactly as GPT-2; '<|endoftext|>' is the special token. Each token has its id, its text "
     "(invalid UTF-8 replaced by U+FFFD) and its exact bytes.",
     "{text, n_tokens, tokens: [{id, text, bytes}]}"},
    {"/metrics", API_GET, h_metrics, p_none, 0, "Prometheus metrics",
     "Requests by route and status, latency histogram, in-flight requests, model load time, cache use.",
     "Prometheus text exposition"},
    {"/openapi.json", API_GET, h_openapi, p_none, 0, "This API description (OpenAPI 3)", NULL, "OpenAPI document"},
    {"/embeddings", API_GET, api_embeddings, p_embeddings, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "Embedding norms under ln_f (SPEC 1)",
     "Per scheme the top-k and bottom-k tokens of norm ||E_i||, scaled ||gamma*E_i||, bias ||E_i|| + beta.E_i "
     "and scaled_bias, with their scores.",
     "{k, scheme, schemes: {name: {top: [token+score], bottom: [token+score]}}}"},
    {"/embeddings/normalization", API_GET, api_embeddings_normalization, p_format,
     API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE, "Normalisation statistics of the embeddings (SPEC 1)",
     "Average row norm, and mean/std of the L2 and cosine distances of E, E-c, sE, s(E-c) to LN_0(E).",
     "{avg_norm, scale, rows: [{matrix, l2_mean, l2_std, cos_mean, cos_std}]}"},
    {"/probe", API_GET | API_POST, api_probe, p_probe, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "Attention heads as ellipsoids: word probes (SPEC 2)",
     "For each word, per head the top-k keys (q Wqk_h against LN_b(E)) and values (LN_f(E + u_h + b_o) "
     "against E) with ||u_h||, and the same for the layer sum.",
     "{block, k, n_heads, skipped, words: [{word, token, heads: [{head, keys, values, value_norm}], layer}]}"},
    {"/svd", API_GET, api_svd, p_svd, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "SVD of W_qk and W_vo per head (SPEC 3)",
     "All non-zero singular values, the coverage curve and the fraction of directions reaching 99 %, and for "
     "the top directions the sign-aligned top-k tokens of the left and right singular vectors. "
     "format=latex gives the paper-style tables.",
     "{block, matrix, top, k, dh, heads: [{head, qk|vo: {singular_values, coverage, frac99, directions}}]}"},
    {"/trajectory", API_GET | API_POST, api_trajectory, p_trajectory, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "Trajectory of a phrase through the layers (SPEC 4)",
     "The phrase's tokens and, for each state (embedding, embedding+position, its ln_f, then ln_f of the "
     "residual stream after every block), the 3D point of every token and its k nearest vocabulary tokens "
     "by dot product with wte (the logit lens), plus the top next tokens.",
     "{text, projection, gelu, k, tokens, states: [{index, name, block, points, nearest}], next_tokens}"},
    {"/attention", API_GET | API_POST, api_attention, p_attention, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "Attention patterns of a phrase",
     "Per block and head, the causal softmax weights of the forward pass: row t lists the weights query t "
     "gives to keys 0..t.",
     "{text, gelu, n_tokens, tokens, blocks: [{block, heads: [{head, pattern}]}]}"},
    {"/umap/layout", API_GET, api_umap_layout, p_layout, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "The fitted background points",
     "3D coordinates of the vocabulary rows the projection was fitted on, with their token ids and texts, "
     "for drawing the cloud a trajectory moves through.",
     "{projection, rows, n, points, ids, texts}"},
    {"/umap", API_GET, api_umap_status, p_none, API_NEEDS_MODEL, "State of the UMAP layout",
     "disabled, fitting (with progress and stage), ready (loaded from the disk cache or fitted, with the fit "
     "time) or failed.",
     "{state, progress, stage, rows, from_cache, fit_seconds}"},
    {"/svd/bias", API_GET, api_svd_bias, p_svd_bias, API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
     "Bias probes of the attention heads (SPEC 3)",
     "Per head the top-k tokens of a = Wq_h bk_h, -a, c = Wk_h bq_h and -c against LN_b(E).",
     "{block, k, heads: [{head, a, -a, c, -c}]}"},
    {NULL},
};
