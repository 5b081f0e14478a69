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
#include "api/format.h"
#include "api/handlers.h"
#include "api/json.h"
#include "base/utf8.h"

/* ---------- parameter tables ---------- */

static const api_param p_none[] = {API_PARAMS_END};

static const char *const fmt_json_csv[] = {"json", "csv", NULL};
static const char *const fmt_svd[] = {"json", "csv", "latex", NULL};
static const char *const svd_tables[] = {"directions", "spectra", NULL};
static const char *const fmt_traj[] = {"json", "csv", "npy", NULL};
static const char *const traj_tables[] = {"points", "nearest", "vectors", NULL};
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
#define P_FORMAT(list)                                                                                       \
    {                                                                                                        \
        .name = "format", .type = AP_ENUM, .def = "json", .choices = (list), .doc = "Answer format."         \
    }
#define P_GELU(text)                                                                                         \
    {                                                                                                        \
        .name = "gelu", .type = AP_ENUM, .def = "tanh", .choices = gelus, .doc = (text)                      \
    }

static const api_param p_tokenize[] = {
    {.name = "text",
     .type = AP_TEXT,
     .required = true,
     .max_ref = APB_MAX_TEXT,
     .doc = "Text to encode (UTF-8). Invalid UTF-8 is rejected with 400."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_detokenize[] = {
    {.name = "ids",
     .type = AP_INTS,
     .required = true,
     .max_ref = APB_LAST_TOKEN,
     .min_items = 1,
     .max_items_ref = APB_MAX_TOKENS,
     .doc = "Token ids (comma-separated, or a JSON array in a POST body), each in 0..vocab_size-1."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

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
    P_BLOCK,
    P_K,
    {.name = "words",
     .type = AP_LIST,
     .min = 1,
     .max_ref = APB_MAX_WORDS,
     .doc = "Words to probe; words that are not one token are skipped and listed with their token split. "
            "Default: the paper's 100 most common English nouns (or, for a character-level model, its "
            "characters)."},
    {.name = "leading_space",
     .type = AP_BOOL,
     .def = "false",
     .doc = "Encode each word with a leading space, as it appears inside a sentence (' idea' is one GPT-2 "
            "token, 'idea' two). The paper encodes words without one."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_svd[] = {
    P_BLOCK,
    {.name = "matrix", .type = AP_ENUM, .def = "both", .choices = matrices, .doc = "W_qk, W_vo or both."},
    {.name = "top",
     .type = AP_INT,
     .def = "20",
     .max_ref = APB_MAX_TOP,
     .clamp_ref = APB_HEAD_DIM,
     .doc = "Singular directions reported per head (at most max_top; more than the head dimension means "
            "all of them; 0: spectra only)."},
    P_K,
    {.name = "head", .type = AP_INT, .max_ref = APB_LAST_HEAD, .doc = "One head (default: all heads)."},
    P_FORMAT(fmt_svd),
    {.name = "table",
     .type = AP_ENUM,
     .choices = svd_tables,
     .doc = "Which table format=csv answers: directions (the top directions' tokens; the default when "
            "top > 0) or spectra (every singular value with its coverage; the default when top = 0)."},
    API_PARAMS_END,
};

static const api_param p_svd_bias[] = {P_BLOCK, P_K, P_FORMAT(fmt_json_csv), API_PARAMS_END};

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
    {.name = "target",
     .type = AP_TEXT,
     .min = 1,
     .max = 256,
     .doc = "A token whose logit-lens rank and probability are reported at every state and position: its "
            "id (digits), or text that is exactly one token (e.g. ' Paris')."},
    {.name = "vectors",
     .type = AP_BOOL,
     .def = "false",
     .doc = "Include every state's full d-dimensional vector per token (bounded by max_answer_mb)."},
    {.name = "format",
     .type = AP_ENUM,
     .def = "json",
     .choices = fmt_traj,
     .doc = "json; csv (the table chosen by 'table'); npy (the state vectors only, as a float32 array "
            "(states, tokens, d) in numpy's .npy format, without projection or logit lens)."},
    {.name = "table",
     .type = AP_ENUM,
     .def = "points",
     .choices = traj_tables,
     .doc = "Which table format=csv answers: points (one row per state and position: point, entropy, the "
            "next and target tokens' rank and probability), nearest (one row per state, position and rank "
            "of the logit lens) or vectors (one row per state and position, d value columns)."},
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
    P_FORMAT(fmt_json_csv),
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
     .max = INT32_MAX,
     .doc = "Points to return, spread evenly over the fitted rows; 0, or more than the layout holds: all of "
            "them."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

/* docs/MATH.md §9-§13 (api/beyond.c) */
static const char *const mlp_matrices[] = {"both", "in", "out", NULL};
static const char *const key_methods[] = {"random", "targeted", "none", NULL};
static const char *const ln_tables[] = {"layers", "lists", "keys", NULL};

#define P_OPT_BLOCK(text)                                                                                    \
    {                                                                                                        \
        .name = "block", .type = AP_INT, .max_ref = APB_LAST_LAYER, .doc = (text)                            \
    }
#define P_PHRASE(req)                                                                                        \
    {                                                                                                        \
        .name = "text", .type = AP_TEXT, .required = (req), .min = 1, .max_ref = APB_MAX_TEXT,               \
        .doc = "The phrase (UTF-8), encoded as-is; at most max_tokens tokens and the model's n_ctx."         \
    }
#define P_SEED(text)                                                                                         \
    {                                                                                                        \
        .name = "seed", .type = AP_INT, .def = "0", .max = INT64_C(999999999999999999), .doc = (text)        \
    }

static const api_param p_mlp_values[] = {
    P_BLOCK,
    P_K,
    {.name = "neurons",
     .type = AP_INTS,
     .max_ref = APB_LAST_FF,
     .min_items = 1,
     .doc = "MLP neurons (0-based, comma-separated; default: all d_ff of them)."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_mlp_svd[] = {
    P_BLOCK,
    {.name = "matrix",
     .type = AP_ENUM,
     .def = "both",
     .choices = mlp_matrices,
     .doc = "in: mlp.c_fc (d x d_ff), out: mlp.c_proj (d_ff x d), or both."},
    {.name = "top",
     .type = AP_INT,
     .def = "20",
     .max_ref = APB_MAX_TOP,
     .clamp_ref = APB_MLP_RANK,
     .doc = "Singular directions with token lists (at most max_top; more than min(d, d_ff) means all of "
            "them; 0: spectra only)."},
    {.name = "k",
     .type = AP_INT,
     .def = "5",
     .min = 1,
     .max_ref = APB_MAX_K_FF,
     .doc = "Tokens (and neurons) per list."},
    {.name = "table",
     .type = AP_ENUM,
     .def = "directions",
     .choices = svd_tables,
     .doc = "With format=csv: the directions' lists, or the spectra and coverage."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_mlp_updates[] = {
    P_PHRASE(true),
    P_OPT_BLOCK("One block (default: every block)."),
    {.name = "top",
     .type = AP_INT,
     .def = "10",
     .min = 1,
     .max_ref = APB_MAX_TOP,
     .clamp_ref = APB_N_INNER,
     .doc = "Sub-updates per token and block (at most max_top; more than d_ff means all of them)."},
    P_K,
    P_GELU("GELU form of the forward pass."),
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_mlp_search[] = {
    {.name = "token",
     .type = AP_TEXT,
     .required = true,
     .min = 1,
     .max_ref = APB_MAX_TEXT,
     .doc = "A token id (a decimal number), or a text that encodes to exactly one token."},
    P_OPT_BLOCK("One block (default: every block)."),
    {.name = "k", .type = AP_INT, .def = "10", .min = 1, .max_ref = APB_MAX_K, .doc = "Neurons to list."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_layernorm[] = {
    P_PHRASE(false),
    P_K,
    {.name = "keys",
     .type = AP_ENUM,
     .def = "targeted",
     .choices = key_methods,
     .doc =
         "Unselectable keys: targeted (N drawn keys, each with its own query: an estimate meaningful at any "
         "N), random (N random unit queries per head: never below 1 - N/V), or none."},
    {.name = "queries",
     .type = AP_INT,
     .def = "256",
     .min = 1,
     .max = 65536,
     .doc = "N, the queries per head of the unselectable-keys estimate (targeted: at most the vocabulary; a "
            "larger N draws every key)."},
    {.name = "keys_block",
     .type = AP_INT,
     .max_ref = APB_LAST_LAYER,
     .doc = "The block whose heads get the unselectable-keys estimate (default: every block)."},
    P_SEED("Seed of the queries (or of the drawn keys)."),
    P_GELU("GELU form of the forward pass (with a text)."),
    {.name = "table",
     .type = AP_ENUM,
     .def = "layers",
     .choices = ln_tables,
     .doc = "With format=csv: the statistics per LayerNorm, the token lists, or the keys per head."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_layernorm_sketch[] = {
    {.name = "block",
     .type = AP_INT,
     .def = "0",
     .max_ref = APB_LAST_LAYER,
     .doc = "The block: its ln_1 and W_qk."},
    {.name = "head",
     .type = AP_INT,
     .def = "0",
     .max_ref = APB_LAST_HEAD,
     .doc = "The head whose W_qk is drawn."},
    {.name = "dims",
     .type = AP_INTS,
     .max_ref = APB_LAST_DIM,
     .min_items = 2,
     .max_items = 2,
     .doc = "The two coordinates i,j (default: the two largest |gamma| of the block's ln_1)."},
    {.name = "points", .type = AP_INT, .def = "64", .min = 3, .max = 4096, .doc = "Points on the circle."},
    P_FORMAT(fmt_json_csv),
    API_PARAMS_END,
};

static const api_param p_selfcheck[] = {
    P_PHRASE(true),
    P_OPT_BLOCK("One block (default: every block)."),
    P_SEED("Seed of the random b_k."),
    P_GELU("GELU form of the forward pass."),
    P_FORMAT(fmt_json_csv),
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
            api_push(models, json_pack("{s:s,s:b}", "name", m->model_name, "synthetic", m->synthetic));
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
            api_put(o, "source", json_string(m->model_source));
            api_put(o, "synthetic", json_boolean(m->synthetic));
            api_put(o, "n_layer", json_integer(c->n_layer));
            api_put(o, "n_head", json_integer(c->n_head));
            api_put(o, "n_embd", json_integer(c->n_embd));
            api_put(o, "n_ctx", json_integer(c->n_ctx));
            api_put(o, "vocab_size", json_integer(c->vocab_size));
            api_put(o, "n_params", json_integer((json_int_t)m->model.n_params));
        }
        api_push(list, o);
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
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:s,s:b,s:I,s:I,s:s,s:s}",
                  "name", app->model_name, "source", app->model_source, "origin", app->model_origin, "format",
                  m->format == GPT2_FORMAT_NANOGPT ? "nanogpt" : "safetensors", "dtype", m->dtype,
                  "synthetic", app->synthetic, "n_layer", c->n_layer, "n_head", c->n_head, "n_embd",
                  c->n_embd, "n_inner", c->n_inner, "n_ctx", c->n_ctx, "vocab_size", c->vocab_size,
                  "vocab_rows", m->vocab_rows, "padding_rows_excluded", m->vocab_rows - c->vocab_size,
                  "tokenizer_vocab_size", app->tok ? tokenizer_vocab_size(app->tok) : 0, "tokenizer",
                  app->tok && tokenizer_is_chars(app->tok) ? "characters" : "gpt2-bpe", "bias", m->has_bias,
                  "n_params", (json_int_t)m->n_params, "file_size", (json_int_t)m->file_size, "gelu_default",
                  "tanh", "note", model_note(app));
    if (o) {
        api_put(o, "load_seconds", api_num(app->load_seconds));
        api_put(o, "layer_norm_epsilon", api_f32(c->ln_eps));
    }
    if (o && app->synthetic) api_put(o, "synthetic_seed", json_integer((json_int_t)app->synthetic_seed));
    if (o && m->corpus[0]) api_put(o, "corpus", json_string(m->corpus));
    if (o && m->default_phrase[0]) api_put(o, "default_phrase", json_string(m->default_phrase));
    if (o && m->format == GPT2_FORMAT_NANOGPT) {
        json_t *n = json_object();
        if (m->has_iter_num) api_put(n, "iter_num", json_integer((json_int_t)m->iter_num));
        if (m->dataset[0]) api_put(n, "dataset", json_string(m->dataset));
        api_put(n, "compiled", json_boolean(m->compiled));
        api_put(o, "nanogpt", n);
    }
    api_ext_model_info(app, o);
    return api_json(res, 200, o);
}

/* The tokens of ids[0..n) as an answer: JSON {text?, n_tokens, tokens} or
 * the CSV position,id,text. */
static int tokens_answer(twd_app *app, const api_args *a, const int32_t *ids, size_t n, json_t *doc,
                         api_response *res)
{
    if (api_format_is(a, "csv")) {
        json_decref(doc);
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "position,id,text\r\n");
        for (size_t i = 0; i < n; i++) {
            tb_csv_int(&tb, (long long)i);
            tb_csv_token(&tb, app->tok, ids[i]);
            tb_csv_end(&tb);
        }
        return tb_respond(&tb, res, CSV_TYPE);
    }
    api_put(doc, "n_tokens", json_integer((json_int_t)n));
    api_put(doc, "tokens", api_tokens_json(app->tok, ids, n));
    return api_json(res, 200, doc);
}

static int h_tokenize(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *t = api_arg_get(a, "text");
    int32_t *ids = NULL;
    long n = api_encode(app, "text", t->s, t->s_len, &ids, res);
    if (n < 0) return -1;
    int rc = tokens_answer(app, a, ids, (size_t)n, json_pack("{s:s#}", "text", t->s, (int)t->s_len), res);
    free(ids);
    return rc;
}

/* Ids back to text: each token and the whole decoded text, as UTF-8 with
 * invalid sequences replaced (text) and exactly (bytes). */
static int h_detokenize(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *ids = api_arg_get(a, "ids");
    char *raw = NULL;
    int32_t *tok = malloc((ids->n_list ? ids->n_list : 1) * sizeof *tok);
    if (!tok) return api_status_error(res, TW_ENOMEM, "detokenizing");
    for (size_t i = 0; i < ids->n_list; i++) tok[i] = (int32_t)ids->ints[i]; /* in 0..vocab_size-1 */
    long n = tokenizer_decode(app->tok, tok, ids->n_list, &raw);
    if (n < 0) {
        free(tok);
        return api_status_error(res, n == -2 ? TW_ETOKEN : TW_ENOMEM, "detokenizing");
    }
    size_t tlen = 0;
    char *text = utf8_sanitize(raw, (size_t)n, &tlen);
    json_t *bytes = json_array();
    for (long i = 0; i < n; i++) api_push(bytes, json_integer((unsigned char)raw[i]));
    free(raw);
    json_t *doc = text ? json_pack("{s:s#,s:o}", "text", text, (int)tlen, "bytes", bytes) : NULL;
    free(text);
    int rc = doc ? tokens_answer(app, a, tok, ids->n_list, doc, res)
                 : api_status_error(res, TW_ENOMEM, "detokenizing");
    if (!doc) json_decref(bytes);
    free(tok);
    return rc;
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
        api_put(s, "type", json_string("integer"));
        api_put(s, "minimum", json_integer(p->min));
        /* bounds that follow the model are known once it is loaded */
        if (p->max_ref == APB_CONST || atomic_load(&app->state) == APP_READY)
            api_put(s, "maximum", json_integer(api_param_max(app, p)));
        if (p->def) api_put(s, "default", json_integer(strtoll(p->def, NULL, 10)));
        break;
    }
    case AP_BOOL:
        api_put(s, "type", json_string("boolean"));
        if (p->def)
            api_put(s, "default", json_boolean(strcmp(p->def, "true") == 0 || strcmp(p->def, "1") == 0));
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
        if (p->max_ref == APB_MAX_TEXT) api_put(s, "maxLength", json_integer(api_param_max(app, p)));
        break;
    case AP_LIST:
        api_put(s, "type", json_string("array"));
        api_put(s, "items", json_pack("{s:s,s:i,s:i}", "type", "string", "minLength", 1, "maxLength", 256));
        api_put(s, "minItems", json_integer(p->min));
        if (p->max_ref == APB_MAX_WORDS) api_put(s, "maxItems", json_integer(api_param_max(app, p)));
        break;
    case AP_INTS: {
        json_t *item = json_pack("{s:s,s:I}", "type", "integer", "minimum", (json_int_t)p->min);
        if (p->max_ref == APB_CONST || atomic_load(&app->state) == APP_READY)
            api_put(item, "maximum", json_integer(api_param_max(app, p)));
        api_put(s, "type", json_string("array"));
        api_put(s, "items", item);
        api_put(s, "minItems", json_integer(p->min_items));
        if (p->max_items_ref == APB_CONST ? p->max_items > 0 : atomic_load(&app->state) == APP_READY)
            api_put(s, "maxItems", json_integer(api_param_max_items(app, p)));
        break;
    }
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
        api_put(r, errs[i].code,
                json_pack("{s:s,s:{s:{s:{s:s}}}}", "description", errs[i].desc, "content", "application/json",
                          "schema", "$ref", "#/components/schemas/Error"));
    return r;
}

static json_t *operation(const twd_app *app, const api_route *r, int method)
{
    json_t *op = json_pack("{s:s,s:s}", "summary", r->summary, "description",
                           r->description ? r->description : r->summary);
    json_t *responses = error_responses();
    const char *ctype = strcmp(r->path, "/metrics") == 0 ? "text/plain" : "application/json";
    api_put(responses, "200",
            json_pack("{s:s,s:{s:{}}}", "description", r->answer ? r->answer : "OK", "content", ctype));
    api_put(op, "responses", responses);
    if (method == API_GET) {
        json_t *params = json_array();
        for (const api_param *p = r->params; p && p->name; p++) {
            json_t *schema =
                p->type == AP_LIST || p->type == AP_INTS
                    ? json_pack("{s:s,s:s}", "type", "string", "description", "comma-separated list")
                    : param_schema(app, p);
            api_push(params, json_pack("{s:s,s:s,s:b,s:s,s:o}", "name", p->name, "in", "query", "required",
                                       p->required, "description", p->doc, "schema", schema));
        }
        api_put(op, "parameters", params);
    } else {
        json_t *props = json_object(), *req = json_array();
        for (const api_param *p = r->params; p && p->name; p++) {
            json_t *schema = param_schema(app, p);
            api_put(schema, "description", json_string(p->doc));
            api_put(props, p->name, schema);
            if (p->required) api_push(req, json_string(p->name));
        }
        json_t *schema =
            json_pack("{s:s,s:o,s:b}", "type", "object", "properties", props, "additionalProperties", 0);
        if (json_array_size(req))
            api_put(schema, "required", req);
        else
            json_decref(req);
        api_put(
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
        if (r->methods & API_GET) api_put(item, "get", operation(app, r, API_GET));
        if (r->methods & API_POST) api_put(item, "post", operation(app, r, API_POST));
        api_put(paths, r->path, item);
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
        .path = "/detokenize",
        .methods = API_GET | API_POST,
        .fn = h_detokenize,
        .params = p_detokenize,
        .flags = API_NEEDS_MODEL,
        .summary = "Token ids back to text",
        .description = "Each token with its text and exact bytes, and the decoded text of all of them "
                       "(invalid UTF-8 replaced by U+FFFD in text, exact in bytes).",
        .answer = "{text, bytes, n_tokens, tokens: [{id, text, bytes}]}",
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
        .answer = "{block, k, n_heads, leading_space, default_words, skipped: [{word, reason, tokens}], "
                  "words: [{word, token, heads: [{head, keys, values, norm}], layer: {values, norm}}]}",
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
        .answer = "{text, projection, gelu, k, n_tokens, n_states, vectors, tokens, target, states: [{index, "
                  "name, block, points, nearest, entropy, next, target, vectors}], next_tokens}",
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
        .answer = "{projection, rows, n, tokens, points}",
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
    {
        .path = "/mlp/values",
        .methods = API_GET,
        .fn = api_mlp_values,
        .params = p_mlp_values,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "MLP value vectors and their tokens (docs/MATH.md §9.1)",
        .description = "For each neuron of the block (all d_ff, or a list), its value vector (row of "
                       "mlp.c_proj.weight): norm and the top-k and bottom-k tokens against wte.",
        .answer = "{block, k, n_neurons, neurons: [{neuron, norm, top, bottom}]}",
    },
    {
        .path = "/mlp/svd",
        .methods = API_GET,
        .fn = api_mlp_svd,
        .params = p_mlp_svd,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "SVD of mlp.c_fc and mlp.c_proj (docs/MATH.md §10)",
        .description =
            "All singular values, coverage and 99 % fraction, and for the top directions the "
            "sign-aligned tokens of the left and right singular vectors (the neuron-space side through "
            "the other half of the MLP) and the neurons of the neuron-space side.",
        .answer = "{block, matrix, top, k, rank, matrices: {in|out: {singular_values, coverage, frac99, "
                  "directions}}}",
    },
    {
        .path = "/mlp/updates",
        .methods = API_GET | API_POST,
        .fn = api_mlp_updates,
        .params = p_mlp_updates,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "The MLP sub-updates of a phrase (docs/MATH.md §11)",
        .description =
            "Per block and token, the heaviest sub-updates m_i v_i (GELU activation times value "
            "vector, ranked by |m_i| ||v_i||), with the coefficient, ||v_i|| and v_i's top tokens.",
        .answer = "{text, gelu, top, k, tokens, blocks: [{block, bias_norm, positions: [{position, token, "
                  "update_norm, updates: [{rank, neuron, coefficient, norm, weight, top}]}]}]}",
    },
    {
        .path = "/mlp/search",
        .methods = API_GET,
        .fn = api_mlp_search,
        .params = p_mlp_search,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "The neurons whose value vectors promote a token (docs/MATH.md §9.2)",
        .description = "The top-k neurons (one block or all) by v_i . E[token], with the token's exact rank "
                       "among each value vector's own tokens.",
        .answer = "{token, block, k, n_neurons, neurons: [{rank, block, neuron, score, norm, token_rank}]}",
    },
    {
        .path = "/layernorm",
        .methods = API_GET | API_POST,
        .fn = api_layernorm,
        .params = p_layernorm,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Layer normalisation as projection onto a sphere, on the real weights (docs/MATH.md §12)",
        .description =
            "Per LayerNorm (every ln_1, ln_2 and ln_f) on the states that reach it (wte's rows, or a "
            "phrase's states): mean before and after centring, radius, gamma's axes and their tokens, "
            "beta's tokens, how much gamma and beta change a state; and per head the estimated "
            "fraction of unselectable keys.",
        .answer = "{text, states, n_states, k, layers: [{name, block, kind, rows, mean, radius, gamma, beta, "
                  "change}], keys: {method, description, queries, seed, floor, heads}}",
    },
    {
        .path = "/layernorm/sketch",
        .methods = API_GET,
        .fn = api_layernorm_sketch,
        .params = p_layernorm_sketch,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "The paper's 2D layer-norm sketch on real weights (docs/MATH.md §12.4)",
        .description = "For two coordinates: the unit circle, its image under gamma, then + beta, then under "
                       "the head's W_qk restricted to those coordinates.",
        .answer = "{block, head, dims, gamma, beta, w_qk, stages: [{name, points}]}",
    },
    {
        .path = "/selfcheck",
        .methods = API_GET | API_POST,
        .fn = api_selfcheck,
        .params = p_selfcheck,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Attention rebuilt from the paper's per-head factors (docs/MATH.md §13)",
        .description =
            "Per head, scores, patterns and outputs from W_qk,h, W_vo,h and the bias terms, compared "
            "with the forward pass; and the pattern with b_k randomised, unchanged.",
        .answer = "{text, gelu, n_tokens, tokens, seed, blocks: [{block, heads: [{head, scores, patterns, "
                  "outputs, bk_randomised}], total_output}], max}",
    },
    {.path = NULL},
};
