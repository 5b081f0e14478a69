/* The one route table, and the handlers of the service's own routes
 * (/health, /model, /tokenize, /metrics). The analyses' handlers, and
 * /openapi.json's (api/openapi.c), live in their own files and are declared
 * in api/handlers.h. */
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
#define P_BLOCKS                                                                                             \
    {                                                                                                        \
        .name = "block", .type = AP_BLOCKS, .required = true, .max_ref = APB_LAST_LAYER,                     \
        .doc = "Transformer block (0-based), or several: \"all\" or a range \"A-B\" (A <= B), answered "     \
               "block by block as {first_block, last_block, n_blocks, blocks: [one-block answers]} (CSV: "   \
               "the one-block rows, each starting with its block)."                                          \
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
static const char *const fmt_json_csv_npy[] = {"json", "csv", "npy", NULL};
static const api_param p_embed_scores[] = {P_FORMAT(fmt_json_csv_npy), API_PARAMS_END};

static const api_param p_probe[] = {
    P_BLOCKS,
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
    P_BLOCKS,
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

static const char *const corpora[] = {"kjv-heldout", NULL};

/* The inputs of a computation of the statistics (docs/MATH.md §14). */
#define P_STATS_INPUTS                                                                                       \
    {.name = "texts",                                                                                        \
     .type = AP_LIST,                                                                                        \
     .min = 1,                                                                                               \
     .max_ref = APB_MAX_TEXTS,                                                                               \
     .item_ref = APB_MAX_TEXT,                                                                               \
     .doc = "The texts (UTF-8), each encoded as-is; at most max_stats_texts of them, each at most "          \
            "max_tokens tokens and the model's n_ctx, max_stats_tokens in all. Give texts or corpus."},      \
        {.name = "corpus",                                                                                   \
         .type = AP_ENUM,                                                                                    \
         .choices = corpora,                                                                                 \
         .doc =                                                                                              \
             "A corpus that ships with twd, one text per line: kjv-heldout (200 King James Bible sentences " \
             "from chapters the demo model was not trained on). Give texts or corpus."},                     \
        {.name = "limit",                                                                                    \
         .type = AP_INT,                                                                                     \
         .def = "0",                                                                                         \
         .max_ref = APB_MAX_TEXTS,                                                                           \
         .doc = "Use only the first `limit` texts; 0: all of them."},                                        \
        {.name = "k",                                                                                        \
         .type = AP_INT,                                                                                     \
         .def = "5",                                                                                         \
         .min = 1,                                                                                           \
         .max_ref = APB_MAX_K,                                                                               \
         .doc = "rank_next.topk is the fraction of positions whose next token ranks within the top k."},     \
        P_GELU("GELU form of the forward pass: GPT-2's tanh approximation, or the exact erf form nanoGPT "   \
               "uses.")

static const api_param p_stats[] = {P_STATS_INPUTS, P_FORMAT(fmt_json_csv), API_PARAMS_END};
static const api_param p_stats_job[] = {P_STATS_INPUTS, API_PARAMS_END};

#define P_JOB_ID                                                                                             \
    {                                                                                                        \
        .name = "id", .type = AP_INT, .required = true, .min = 1, .max = INT32_MAX,                          \
        .doc = "The job, as the POST that started it answered it."                                           \
    }
static const api_param p_job_status[] = {P_JOB_ID, API_PARAMS_END};
/* The routes whose block parameter sweeps (P_BLOCKS). */
static const char *const sweep_paths[] = {"/svd", "/svd/bias", "/probe", "/mlp/svd", NULL};
static const api_param p_sweep_job[] = {
    {.name = "path", .type = AP_ENUM, .required = true, .choices = sweep_paths, .doc = "The route to sweep."},
    {.name = "query",
     .type = AP_TEXT,
     .required = true,
     .max = 4096,
     .doc = "Its parameters as a query string (e.g. block=all&top=0; percent-encoded, '&' between pairs), "
            "checked as that route checks them; block must be \"all\" or \"A-B\"."},
    API_PARAMS_END,
};
#define P_JOB_WAIT                                                                                           \
    {                                                                                                        \
        .name = "wait", .type = AP_INT, .def = "0", .max = 30,                                               \
        .doc = "Seconds to wait for a running job to finish before answering 503."                           \
    }
static const api_param p_sweep_job_result[] = {P_JOB_ID, P_JOB_WAIT, API_PARAMS_END};
static const api_param p_job_result[] = {P_JOB_ID, P_JOB_WAIT, P_FORMAT(fmt_json_csv), API_PARAMS_END};

#define P_LAYOUT_ROWS                                                                                        \
    {.name = "projection",                                                                                   \
     .type = AP_ENUM,                                                                                        \
     .def = "umap",                                                                                          \
     .choices = projections,                                                                                 \
     .doc = "Which fitted layout."},                                                                         \
    {                                                                                                        \
        .name = "limit", .type = AP_INT, .def = "0", .max = INT32_MAX,                                       \
        .doc =                                                                                               \
            "Points to return, spread evenly over the fitted rows; 0, or more than the layout holds: all "   \
            "of them."                                                                                       \
    }
static const api_param p_layout[] = {P_LAYOUT_ROWS, P_FORMAT(fmt_json_csv_npy), API_PARAMS_END};
static const api_param p_layout_tokens[] = {P_LAYOUT_ROWS, P_FORMAT(fmt_json_csv), API_PARAMS_END};

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
    P_BLOCKS,
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
        char status[1024];
        api_app_get_status(m, status, sizeof status);
        api_error(res, 503, "%s%s%s: %s",
                  st == APP_LOADING     ? "the model is loading"
                  : st == APP_RELOADING ? "the model is reloading"
                                        : "the model failed to load",
                  svc->n_models > 1 ? " " : "", svc->n_models > 1 ? m->model_name : "", status);
        res->retry_after = st == APP_LOADING || st == APP_RELOADING ? 1 : 0;
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
                              st == APP_READY       ? "ready"
                              : st == APP_LOADING   ? "loading"
                              : st == APP_RELOADING ? "reloading"
                                                    : "failed",
                              "origin", m->model_origin);
        if (st != APP_READY) {
            char status[1024];
            api_app_get_status(m, status, sizeof status);
            api_put(o, "message", json_string(status));
        }
        if (api_app_acquire(m)) { /* the shape, read while the model cannot be replaced */
            api_put(o, "source", json_string(m->model_source));
            api_put(o, "synthetic", json_boolean(m->synthetic));
            api_put(o, "n_layer", json_integer(c->n_layer));
            api_put(o, "n_head", json_integer(c->n_head));
            api_put(o, "n_embd", json_integer(c->n_embd));
            api_put(o, "n_ctx", json_integer(c->n_ctx));
            api_put(o, "vocab_size", json_integer(c->vocab_size));
            api_put(o, "n_params", json_integer((json_int_t)m->model.n_params));
            api_app_release(m);
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

/* ---------- the table ---------- */

/* Each row's answers are written in the notation of api/openapi.h; the
 * shared components (Token, ScoredToken, TokenRank, TrajectoryState, ...)
 * are api/openapi.c's. A CSV table's row lists its columns in order. */

/* A route's answers, closed by API_ANSWERS_END, and the recurring ones: a
 * JSON document, a CSV table (of several: table=`table`), each with its
 * schema and what it is. */
// clang-format off
#define ANSWERS(...)                     (const api_answer[]){__VA_ARGS__, API_ANSWERS_END}
#define JSON_ANSWER(schema_, doc_)       {.format = "json", .schema = schema_, .doc = doc_}
#define CSV_ANSWER(schema_, doc_)        {.format = "csv", .schema = schema_, .doc = doc_}
#define CSV_TABLE(table_, schema_, doc_) {.format = "csv", .table = table_, .schema = schema_, .doc = doc_}
#define NPY_ANSWER(doc_)                 {.format = "npy", .doc = doc_}
// clang-format on

#define TOKEN_COLUMNS "id: int(0..), text: str"
#define HIT_COLUMNS   "rank: int(1..), id: int(0..), text: str, score: num"
#define TRAJ_KEYS                                                                                            \
    "state_index: int(0..), state: str, block: int(0..$layer)|null `null for the first three states`, "      \
    "position: int(0..), token_id: int(0..), token_text: str"

/* docs/MATH.md §9-§13: shapes used twice in one answer */
#define MLP_SVD_FACTOR                                                                                       \
    "{singular_values: [num(0..)], coverage: [num(0..1)], frac99: num(0..1), directions: [{rank: int(1..), " \
    "singular_value: num(0..), sign: -1|1, left: [ScoredToken], right: [ScoredToken], "                      \
    "neuron_side: 'left'|'right' `the side in neuron space`, neurons: [{neuron: int(0..$ff), score: num}] "  \
    "`that side's largest components`}], definition: str}"
#define LN_AXIS                                                                                              \
    "{index: int(0..) `the coordinate`, value: num `gamma_i`, top: [ScoredToken], bottom: [ScoredToken]}"
/* docs/MATH.md §14: one statistic, and the statistics of one set of positions */
#define STATS_STAT                                                                                           \
    "{mean: num|null, std: num(0..)|null `unbiased`, ci95: [num|null; 2] `95 % interval of the mean`}"
#define STATS_CELL                                                                                           \
    "n_positions: int(0..), cos_next: " STATS_STAT ", cos_self: " STATS_STAT ", cos_final: " STATS_STAT      \
    ", rank_next: {mean: num|null `of ln(rank)`, std: num(0..)|null, ci95: [num|null; 2], "                  \
    "median: num(1..)|null `the median rank`, top1: num(0..1)|null `fraction at rank 1`, "                   \
    "topk: num(0..1)|null `fraction within the top k`}, prob_next: " STATS_STAT
#define STATS_JSON                                                                                           \
    "{source: 'texts'|'corpus', corpus: str|null `the corpus= name, or null`, "                              \
    "gelu: 'tanh'|'erf', k: int(1..), n_states: int(1..) `n_layer + 3`, "                                    \
    "n_texts: int(0..), n_texts_skipped: int(0..) `texts of one token (no next token)`, "                    \
    "n_texts_truncated: int(0..) `corpus texts cut to the context`, "                                        \
    "n_tokens: int(0..), n_positions: int(0..) `positions with a next token`, "                              \
    "buckets: {first: str, early: str, late: str} `the position buckets`, "                                  \
    "interval: str, states: [{index: int(0..), name: str `as in /trajectory`, "                              \
    "block: int(0..$layer)|null, " STATS_CELL ", buckets: {first: {" STATS_CELL "}, early: {" STATS_CELL     \
    "}, late: {" STATS_CELL "}}}], definition: str}"
#define STATS_CSV                                                                                            \
    "{state_index: int(0..), state: str, block: int(0..$layer)|null, "                                       \
    "statistic: 'cos_next'|'cos_self'|'cos_final'|'rank_next'|'prob_next', "                                 \
    "bucket: 'all'|'first'|'early'|'late', n_positions: int(0..), "                                          \
    "mean: num|null `of ln(rank) for rank_next`, std: num(0..)|null, ci95_low: num|null, "                   \
    "ci95_high: num|null, median: num(1..)|null `rank_next only: the median rank`, "                         \
    "top1: num(0..1)|null `rank_next only`, topk: num(0..1)|null `rank_next only`}"
#define STATS_JOB                                                                                            \
    "{job: int(1..), state: 'running'|'done'|'failed'|'cancelled', stage: str|null `what it computes now`, " \
    "done: int(0..) `units of the stage done`, total: int(0..) `units of the stage`, progress: num(0..1), "  \
    "n_texts: int(0..), n_tokens: int(0..), seconds: num(0..) `since it started (until it finished)`, "      \
    "result: str `where its statistics are`, error?: str `why it failed`}"
#define SWEEP_JOB                                                                                            \
    "{job: int(1..), state: 'running'|'done'|'failed'|'cancelled', path: str `the route swept`, "            \
    "stage: str|null `blocks`, done: int(0..) `blocks answered`, total: int(0..) `blocks of the sweep`, "    \
    "progress: "                                                                                             \
    "num(0..1), "                                                                                            \
    "seconds: num(0..) `since it started (until it finished)`, status: str `where to poll`, result: str "    \
    "`where its answer is`, error?: str `why it failed`}"
#define SC_DIFF "{max_abs_diff: num(0..), max_rel_diff: num(0..)}"

/* The status route of a kind of job (schema: its job's answer). */
#define JOB_STATUS_ROUTE(path_, fn_, summary_, description_, schema_)                                        \
    {                                                                                                        \
        .path = (path_), .methods = API_GET, .fn = (fn_), .params = p_job_status, .flags = API_NEEDS_MODEL,  \
        .summary = (summary_), .description = (description_),                                                \
        .answers = ANSWERS({.schema = (schema_), .doc = "The job."}),                                        \
    }

/* The cancel route of a kind of job (POST, id= in the query or the body). */
#define JOB_CANCEL_ROUTE(path_, fn_, what_, schema_)                                                         \
    {                                                                                                        \
        .path = (path_), .methods = API_POST, .fn = (fn_), .params = p_job_status, .flags = API_NEEDS_MODEL, \
        .summary = "Cancel a running " what_,                                                                \
        .description = "Asks the job to stop: it ends in the state cancelled at its next check (a block of " \
                       "a sweep, a chunk of the statistics) and its result answers 410. A job that has "     \
                       "already ended stays as it ended.",                                                   \
        .answers = ANSWERS({.schema = (schema_), .doc = "The job, asked to stop."}),                         \
    }

const api_route api_routes[] = {
    {
        .path = "/health",
        .methods = API_GET,
        .fn = h_health,
        .params = p_none,
        .summary = "Liveness and readiness",
        .description = "200 when the model is loaded; 503 (with Retry-After) while it loads. Never waits "
                       "behind a computation.",
        .answers = ANSWERS({.schema = "{status: 'ok', model: str `the default model`, "
                                      "synthetic: bool, models: [{name: str, synthetic: bool}]}",
                            .doc = "Every model is loaded."}),
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
        .answers = ANSWERS(
            {.schema = "{name: str, source: str `the checkpoint read`, origin: str `configured, hf-cache, "
                       "twd-cache, download or demo`, format: 'safetensors'|'nanogpt', dtype: str, "
                       "synthetic: bool, n_layer: int(1..), n_head: int(1..), n_embd: int(1..), "
                       "n_inner: int(0..), n_ctx: int(1..), vocab_size: int(1..), vocab_rows: int(0..), "
                       "padding_rows_excluded: int(0..), tokenizer_vocab_size: int(0..), "
                       "tokenizer: 'gpt2-bpe'|'characters', bias: bool, n_params: int(0..), "
                       "file_size: int(0..), gelu_default: 'tanh', note: str, load_seconds: num(0..), "
                       "layer_norm_epsilon: num, synthetic_seed?: int, corpus?: str, default_phrase?: str, "
                       "nanogpt?: {iter_num?: int, dataset?: str, compiled: bool}, umap?: UmapStatus}",
             .doc = "The model and its shape."}),
    },
    {
        .path = "/models",
        .methods = API_GET,
        .fn = h_models,
        .params = p_none,
        .summary = "The models served",
        .description = "Every model the daemon serves with its name (what model= takes on the other routes), "
                       "state, origin and shape; the first is the default.",
        .answers = ANSWERS({.schema = "{models: [{name: str, default: bool, "
                                      "state: 'ready'|'loading'|'reloading'|'failed', "
                                      "message?: str `why it is not ready (not ready only)`, "
                                      "origin: str, "
                                      "source?: str, synthetic?: bool, n_layer?: int(1..), "
                                      "n_head?: int(1..), n_embd?: int(1..), n_ctx?: int(1..), "
                                      "vocab_size?: int(1..), n_params?: int(0..)} "
                                      "`the shape once the model is ready`]}",
                            .doc = "The models, the default first."}),
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
        .answers =
            ANSWERS(JSON_ANSWER("{text: str, n_tokens: int(0..), tokens: [Token]}", "The text's tokens."),
                    CSV_ANSWER("{position: int(0..), " TOKEN_COLUMNS "}", "One row per token.")),
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
        .answers = ANSWERS(JSON_ANSWER("{text: str `the decoded text, invalid UTF-8 replaced`, "
                                       "bytes: [int(0..255)] `the decoded bytes`, "
                                       "n_tokens: int(1..), tokens: [Token]}",
                                       "The tokens and their decoded text."),
                           CSV_ANSWER("{position: int(0..), " TOKEN_COLUMNS "}", "One row per token.")),
    },
    {
        .path = "/metrics",
        .methods = API_GET,
        .fn = h_metrics,
        .params = p_none,
        .summary = "Prometheus metrics",
        .description = "Requests by route and status, latency histogram, in-flight requests, model load "
                       "time, cache use.",
        .answers = ANSWERS({.type = "text/plain", .doc = "Prometheus text exposition format 0.0.4."}),
    },
    {
        .path = "/openapi.json",
        .methods = API_GET,
        .fn = api_openapi,
        .params = p_none,
        .summary = "This API description (OpenAPI 3)",
        .answers = ANSWERS({.schema = "{openapi: '3.0.3', info: {title: str, version: str, ...}, "
                                      "paths: {...}, components: {...}, ...}",
                            .doc = "This document (OpenAPI 3.0.3)."}),
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
        .answers = ANSWERS(
            JSON_ANSWER("{k: int(1..), scheme: 'all'|'norm'|'scaled'|'bias'|'scaled_bias', "
                        "schemes: {norm?: TokenExtremes, scaled?: TokenExtremes, bias?: TokenExtremes, "
                        "scaled_bias?: TokenExtremes} `the scheme asked for, or all four`, definition: str}",
                        "Per scheme the top and bottom tokens."),
            CSV_ANSWER("{scheme: 'norm'|'scaled'|'bias'|'scaled_bias', list: 'top'|'bottom', " HIT_COLUMNS
                       "}",
                       "One row per scheme, list and rank.")),
    },
    {
        .path = "/embeddings/scores",
        .methods = API_GET,
        .fn = api_embeddings_scores,
        .params = p_embed_scores,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Every token's embedding-norm scores (docs/MATH.md §16)",
        .description = "The four scores of /embeddings (norm, scaled, bias, scaled_bias) for every token of "
                       "the vocabulary, in id order: the whole score vectors, e.g. for a scatter.",
        .answers = ANSWERS(
            JSON_ANSWER("{n_tokens: int(1..) `vocabulary size`, tokens: [Token] `every token, id order`, "
                        "scores: {norm: [num(0..)] `||E_i||`, scaled: [num(0..)] `||gamma*E_i||`, "
                        "bias: [num] `||E_i|| + beta.E_i`, scaled_bias: [num] `||gamma*E_i|| + beta.E_i`} "
                        "`per scheme, scores[i] belongs to tokens[i]`, definition: str}",
                        "Every token and, per scheme, its scores in the same order."),
            CSV_ANSWER("{" TOKEN_COLUMNS ", norm: num(0..), scaled: num(0..), bias: num, scaled_bias: num}",
                       "One row per token, in id order."),
            {.format = "npy",
             .doc =
                 "numpy's .npy (format 1.0): the scores as float64, little-endian, shape (vocab_size, 4), C "
                 "order, the columns norm, scaled, bias, scaled_bias (the CSV's); row i is token i."}),
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
        .answers = ANSWERS(
            JSON_ANSWER("{avg_norm: num(0..) `average row norm of E`, "
                        "scale: num|null `s = sqrt(d) / avg_norm; null when every embedding is zero`, "
                        "rows: [{matrix: 'E'|'E - c'|'sE'|'s(E - c)', l2_mean: num, l2_std: num, "
                        "cos_mean: num, cos_std: num}; 4], definition: str}",
                        "The statistics of the four matrices."),
            CSV_ANSWER("{matrix: 'E'|'E - c'|'sE'|'s(E - c)', l2_mean: num, l2_std: num, cos_mean: num, "
                       "cos_std: num}",
                       "One row per matrix.")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{block: int(0..$layer), k: int(1..), n_heads: int(1..), leading_space: bool, "
                        "default_words: bool `the default word list was used`, "
                        "skipped: [{word: str, reason: str, tokens: [Token] `its token split`}] "
                        "`the words that are not one token`, "
                        "words: [{word: str, token: Token, heads: [{head: int(0..$head), "
                        "keys: [ScoredToken], values: [ScoredToken], norm: num(0..) `||u_h||`}], "
                        "layer: {values: [ScoredToken], norm: num(0..) `||U||`} `the sum over heads`}]}",
                        "Per word the keys and values of every head and of the layer sum."),
            CSV_ANSWER("{block: int(0..$layer), word: str, token_id: int(0..)|null `the word's token; empty "
                       "for a skipped word`, kind: 'head'|'layer'|'skipped' `a head, the layer sum, or a "
                       "token of a skipped word's split`, head: int(0..$head)|null, "
                       "list: 'keys'|'values'|null, rank: int(1..) `in the list, or in the skipped word's "
                       "split`, id: int(0..), text: str, score: num|null, norm: num(0..)|null `||u_h|| "
                       "or ||U||, on value rows`}",
                       "One row per word, head (or the layer sum), list and rank; a skipped word's token "
                       "split as rows of kind skipped.")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{block: int(0..$layer), matrix: 'both'|'qk'|'vo', top: int(0..), k: int(1..), "
                        "dh: int(1..) `head dimension`, heads: [{head: int(0..$head), qk?: SvdFactor, "
                        "vo?: SvdFactor}]}",
                        "Per head the spectrum and top directions of each matrix asked for."),
            CSV_TABLE("directions",
                      "{block: int(0..$layer), matrix: 'qk'|'vo', head: int(0..$head), "
                      "direction: int(1..) `1-based rank of the singular direction`, "
                      "singular_value: num(0..), sign: -1|1 `the sign alignment applied`, "
                      "side: 'left'|'right' `left or right singular vector`, " HIT_COLUMNS "}",
                      "The default when top > 0: one row per head, matrix, direction, side and token rank."),
            CSV_TABLE("spectra",
                      "{block: int(0..$layer), matrix: 'qk'|'vo', head: int(0..$head), "
                      "rank: int(1..) `1-based rank of the singular value`, singular_value: num(0..), "
                      "coverage: num(0..1)}",
                      "The default when top = 0: one row per head, matrix and singular value."),
            {.format = "latex",
             .doc = "Paper-style LaTeX tables (one per head and matrix) of the top directions' top three "
                    "tokens."}),
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
        .answers = ANSWERS(
            JSON_ANSWER("{text: str, projection: 'umap'|'pca', gelu: 'tanh'|'erf', k: int(1..), "
                        "n_tokens: int(1..), n_states: int(1..) `n_layer + 3`, vectors: bool, "
                        "tokens: [Token], target: Token|null `the target= token, or null`, "
                        "states: [TrajectoryState], next_tokens: [ScoredToken] `the top tokens after the "
                        "phrase (the logit lens of the last state at the last position)`, definition: str, "
                        "faithfulness: TrajectoryFaithfulness}",
                        "Every state of every token: point, logit lens, next and target tokens."),
            CSV_TABLE("points",
                      "{" TRAJ_KEYS ", x: num, y: num, z: num, entropy: num, "
                      "next_id: int(0..)|null `the actual next token; empty at the last position`, "
                      "next_rank: int(1..)|null, next_prob: num(0..1)|null, "
                      "target_id: int(0..)|null `the target= token; empty without one`, "
                      "target_rank: int(1..)|null, target_prob: num(0..1)|null}",
                      "The default: one row per state and position."),
            CSV_TABLE("nearest", "{" TRAJ_KEYS ", " HIT_COLUMNS ", prob: num(0..1)}",
                      "One row per state, position and rank of the logit lens."),
            CSV_TABLE("vectors", "{" TRAJ_KEYS ", v#$d: num `one value of the state vector`}",
                      "One row per state and position: the state vector, one column v0 .. v(d-1) per "
                      "value."),
            {.format = "npy",
             .doc = "numpy's .npy (format 1.0): the state vectors as float32, little-endian, shape "
                    "(states, tokens, d) in C order; read with numpy.load(io.BytesIO(body))."}),
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
        .answers = ANSWERS(
            JSON_ANSWER("{text: str, gelu: 'tanh'|'erf', n_tokens: int(1..), tokens: [Token], "
                        "blocks: [{block: int(0..$layer), heads: [{head: int(0..$head), "
                        "pattern: [[num(0..1)]] `n_tokens x n_tokens: pattern[t][u] is the weight query t "
                        "gives key u, 0 for u > t`}]}], definition: str}",
                        "The patterns of the blocks and heads asked for."),
            CSV_ANSWER("{block: int(0..$layer), head: int(0..$head), query_pos: int(0..) `the query's "
                       "position`, key_pos: int(0..) `the key's position (at most query_pos)`, "
                       "weight: num(0..1) `softmax weight`}",
                       "One row per block, head, query and key (the causal half).")),
    },
    {
        .path = "/trajectory/stats",
        .methods = API_POST,
        .fn = api_trajectory_stats,
        .params = p_stats,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "Trajectory statistics over many texts (docs/MATH.md §14)",
        .description =
            "For every trajectory state, over every position of every text that has a next token, "
            "in the full dimension: the cosines of the state with the next and the current token's "
            "embedding and with the final state, the exact logit-lens rank of the next token and "
            "its probability; mean, std and 95% confidence interval, overall and per position "
            "bucket (first: t = 0, early: 1 <= t < 8, late: t >= 8).",
        .answers = ANSWERS(
            JSON_ANSWER(STATS_JSON, "Per state, the statistics over every position and per position bucket."),
            CSV_ANSWER(STATS_CSV, "One row per state, statistic and bucket (all: every position).")),
    },
    {
        .path = "/trajectory/stats/job",
        .methods = API_POST,
        .fn = api_trajectory_stats_job,
        .params = p_stats_job,
        .flags = API_NEEDS_MODEL | API_HEAVY,
        .summary = "Start /trajectory/stats as a job to poll",
        .description =
            "Checks the request as /trajectory/stats does (the same 400s), starts the computation in "
            "the background and answers at once with the job's id and progress; poll "
            "/trajectory/stats/job/status, fetch /trajectory/stats/job/result.",
        .answers = ANSWERS({.schema = STATS_JOB, .doc = "The job, just started."}),
    },
    {
        .path = "/sweep/job",
        .methods = API_POST,
        .fn = api_sweep_job,
        .params = p_sweep_job,
        .flags = API_NEEDS_MODEL,
        .summary = "Start a whole-model sweep (block=all or A-B) as a job to poll",
        .description =
            "Checks the parameters as the swept route does (the same 400s), starts the sweep in the "
            "background and answers at once with the job's id and progress (blocks answered); poll "
            "/sweep/job/status, fetch /sweep/job/result. Each block's answer is kept in the answer cache as "
            "the one-block request's, and the whole sweep's as its request's. /metrics: "
            "twd_sweep_job_progress, twd_sweep_blocks.",
        .answers = ANSWERS({.schema = SWEEP_JOB, .doc = "The job, just started."}),
    },
    JOB_STATUS_ROUTE(
        "/sweep/job/status", api_sweep_job_status, "Progress of a /sweep/job",
        "The job's state (running, done, failed, cancelled) and the blocks answered of the sweep.",
        SWEEP_JOB),
    JOB_CANCEL_ROUTE("/sweep/job/cancel", api_sweep_job_cancel, "/sweep/job", SWEEP_JOB),
    {
        .path = "/sweep/job/result",
        .methods = API_GET,
        .fn = api_sweep_job_result,
        .params = p_sweep_job_result,
        .flags = API_NEEDS_MODEL | API_HEAVY,
        .summary = "The answer of a finished /sweep/job",
        .description = "The answer the swept route gives to the same parameters (JSON, CSV or LaTeX as its "
                       "format= asked); 503 with Retry-After while the job runs (after waiting up to wait= "
                       "seconds), the sweep's error answer if it failed.",
        .answers = ANSWERS({.schema = "{first_block: int(0..$layer), last_block: int(0..$layer), "
                                      "n_blocks: int(1..), blocks: [any]}",
                            .doc = "The swept route's answer: in JSON as here (the one-block answers in "
                                   "blocks), in CSV or LaTeX when its query's format= asks for them."}),
    },
    JOB_STATUS_ROUTE(
        "/trajectory/stats/job/status", api_trajectory_stats_job_status,
        "Progress of a /trajectory/stats job",
        "The job's state (running, done, failed, cancelled), its stage and the units done of it.", STATS_JOB),
    JOB_CANCEL_ROUTE("/trajectory/stats/job/cancel", api_trajectory_stats_job_cancel, "/trajectory/stats job",
                     STATS_JOB),
    {
        .path = "/trajectory/stats/job/result",
        .methods = API_GET,
        .fn = api_trajectory_stats_job_result,
        .params = p_job_result,
        .flags = API_NEEDS_MODEL | API_HEAVY,
        .summary = "The statistics of a finished /trajectory/stats job",
        .description =
            "The answer /trajectory/stats gives, in JSON or CSV; 503 with Retry-After while the job "
            "runs (after waiting up to wait= seconds), the job's error if it failed.",
        .answers = ANSWERS(JSON_ANSWER(STATS_JSON, "As /trajectory/stats."),
                           CSV_ANSWER(STATS_CSV, "As /trajectory/stats.")),
    },
    {
        .path = "/umap/layout",
        .methods = API_GET,
        .fn = api_umap_layout,
        .params = p_layout,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "The fitted background points",
        .description =
            "3D coordinates of the vocabulary rows the projection was fitted on, with their token "
            "ids and texts, for drawing the cloud a trajectory moves through. format=npy gives the "
            "points alone and /umap/layout/tokens their tokens alone (the page draws the cloud from "
            "these two).",
        .answers = ANSWERS(
            JSON_ANSWER("{projection: 'umap'|'pca', rows: int(0..) `rows fitted`, "
                        "n: int(0..) `points returned`, tokens: [Token], "
                        "points: [[num; 3]], faithfulness: Faithfulness}",
                        "The points and their tokens."),
            CSV_ANSWER("{" TOKEN_COLUMNS ", x: num, y: num, z: num}", "One row per point."),
            NPY_ANSWER("numpy's .npy (format 1.0): the points as float32, little-endian, shape (n, 3) in C "
                       "order, row i the JSON answer's points[i] (the same values) and "
                       "/umap/layout/tokens' ids[i]; read with numpy.load(io.BytesIO(body)).")),
    },
    {
        .path = "/umap/layout/tokens",
        .methods = API_GET,
        .fn = api_umap_layout_tokens,
        .params = p_layout_tokens,
        .flags = API_NEEDS_MODEL | API_HEAVY | API_CACHEABLE,
        .summary = "The tokens of the fitted background points",
        .description = "The token ids and texts of /umap/layout's points (the same projection and limit), "
                       "row-aligned with them and with its format=npy rows, as two arrays rather than one "
                       "object per token (no bytes): what labelling the cloud needs, at a fraction of the "
                       "size.",
        .answers =
            ANSWERS(JSON_ANSWER("{projection: 'umap'|'pca', rows: int(0..) `rows fitted`, "
                                "n: int(0..) `points returned`, ids: [int(0..)] `the token id of point "
                                "i`, texts: [str] `its text (invalid UTF-8 replaced)`}",
                                "The ids and texts, in the points' order."),
                    CSV_ANSWER("{" TOKEN_COLUMNS "}", "One row per point, in the points' order.")),
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
        .answers = ANSWERS({.schema = "UmapStatus", .doc = "The state of the layout."}),
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
        .answers = ANSWERS(JSON_ANSWER("{block: int(0..$layer), k: int(1..), "
                                       "heads: [{head: int(0..$head), a: [ScoredToken], "
                                       "'-a': [ScoredToken], c: [ScoredToken], '-c': [ScoredToken]}], "
                                       "definition: str, note: str `why the a lists never change a pattern`}",
                                       "Per head the four probes' top tokens."),
                           CSV_ANSWER("{block: int(0..$layer), head: int(0..$head), "
                                      "probe: 'a'|'-a'|'c'|'-c', " HIT_COLUMNS "}",
                                      "One row per head, probe and rank.")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{block: int(0..$layer), k: int(1..), n_neurons: int(0..), neurons: [{neuron: "
                        "int(0..$ff), "
                        "norm: num(0..) `||v_i||`, top: [ScoredToken], bottom: [ScoredToken]}], "
                        "definition: str}",
                        "Per neuron its value vector's norm and top and bottom tokens."),
            CSV_ANSWER("{block: int(0..$layer), neuron: int(0..$ff), norm: num(0..) `||v_i||`, "
                       "list: 'top'|'bottom', " HIT_COLUMNS "}",
                       "One row per neuron, list and rank.")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{block: int(0..$layer), matrix: 'both'|'in'|'out', top: int(0..), k: int(1..), "
                        "rank: int(0..) `singular values per matrix, min(d, d_ff)`, "
                        "matrices: {in?: " MLP_SVD_FACTOR ", out?: " MLP_SVD_FACTOR "}}",
                        "Per matrix the spectrum and the top directions."),
            CSV_TABLE("directions",
                      "{block: int(0..$layer), matrix: 'in'|'out', direction: int(1..) `1-based rank of the "
                      "singular direction`, singular_value: num(0..), sign: -1|1 `the sign alignment "
                      "applied`, "
                      "side: 'left'|'right' `left or right singular vector`, list: 'tokens'|'neurons', "
                      "rank: int(1..), id: int(0..)|null `the token (list tokens)`, text: str|null `the "
                      "token's text (list tokens)`, neuron: int(0..$ff)|null `the neuron (list neurons)`, "
                      "score: num}",
                      "The default: one row per matrix, direction, side and rank of a token or neuron list."),
            CSV_TABLE("spectra",
                      "{block: int(0..$layer), matrix: 'in'|'out', rank: int(1..) `1-based rank of the "
                      "singular value`, singular_value: num(0..), coverage: num(0..1)}",
                      "One row per matrix and singular value.")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{text: str, gelu: 'tanh'|'erf', top: int(1..), k: int(1..), n_tokens: int(1..), "
                        "tokens: [Token], blocks: [{block: int(0..$layer), bias_norm: num(0..) `||b_proj||`, "
                        "positions: [{position: int(0..), token: Token, update_norm: num(0..) "
                        "`||sum_i m_i v_i||`, updates: [{rank: int(1..), neuron: int(0..$ff), "
                        "coefficient: num `m_i`, norm: num(0..) `||v_i||`, weight: num(0..) `|m_i| ||v_i||`, "
                        "top: [ScoredToken] `v_i's top tokens`}]}]}], definition: str}",
                        "Per block and position the heaviest sub-updates."),
            CSV_ANSWER("{block: int(0..$layer), position: int(0..), token_id: int(0..), token_text: str, "
                       "update_norm: num(0..) `||sum_i m_i v_i||`, rank: int(1..) `the sub-update's rank`, "
                       "neuron: int(0..$ff), coefficient: num `m_i`, norm: num(0..) `||v_i||`, "
                       "weight: num(0..) `|m_i| ||v_i||`, value_rank: int(1..) `rank of the token in v_i's "
                       "list`, id: int(0..), text: str, score: num}",
                       "One row per block, position, sub-update and token of its list.")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{token: Token, block: int(0..$layer)|null `the block asked for; null: every block`, "
                        "k: int(1..), n_neurons: int(0..) `neurons searched`, neurons: [{rank: int(1..), "
                        "block: int(0..$layer), neuron: int(0..$ff), score: num `v_i . E[token]`, "
                        "norm: num(0..) `||v_i||`, token_rank: int(1..) `the token's rank among v_i's "
                        "tokens`}], definition: str}",
                        "The neurons that promote the token most."),
            CSV_ANSWER("{rank: int(1..), block: int(0..$layer), neuron: int(0..$ff), score: num `v_i . "
                       "E[token]`, "
                       "norm: num(0..) `||v_i||`, token_rank: int(1..) `the token's rank among v_i's "
                       "tokens`}",
                       "One row per neuron found.")),
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
        .answers = ANSWERS(
            JSON_ANSWER(
                "{text: str|null `the phrase, or null for wte's rows`, states: 'wte'|'phrase', "
                "k: int(1..), n_states: int(1..), tokens?: [Token] `the phrase's tokens`, "
                "layers: [{name: str `h.N.ln_1, h.N.ln_2 or ln_f`, block: int(0..$layer)|null, "
                "kind: 'ln_1'|'ln_2'|'ln_f', rows: int(0..), mean: {before: num, before_abs: num(0..), "
                "after_abs: num(0..), after_max_abs: num(0..)}, radius: {mean: num, std: num}, "
                "gamma: {max: " LN_AXIS ", min: " LN_AXIS "}, beta_norm: num(0..), "
                "beta: {top: [ScoredToken]}, change: {mean: num, std: num}}], "
                "keys: {method: 'random'|'targeted', description: str, queries: int(0..), "
                "seed: int(0..), floor: num(0..1), heads: [{block: int(0..$layer), "
                "head: int(0..$head), selectable: int(0..), unselectable_fraction: num(0..1)}], "
                "definition: str}|null `null with keys=none`, definition: str}",
                "Per LayerNorm its geometry, and the unselectable keys per head."),
            CSV_TABLE("layers",
                      "{name: str `h.N.ln_1, h.N.ln_2 or ln_f`, block: int(0..$layer)|null `empty for ln_f`, "
                      "kind: 'ln_1'|'ln_2'|'ln_f', rows: int(0..) `states that reach it`, mean_before: num, "
                      "mean_abs_before: num(0..), mean_abs_after: num(0..), max_abs_after: num(0..), "
                      "radius_mean: num, radius_std: num, gamma_max_index: int(0..), gamma_max: num, "
                      "gamma_min_index: int(0..), gamma_min: num, beta_norm: num(0..), change_mean: num, "
                      "change_std: num}",
                      "The default: one row per LayerNorm."),
            CSV_TABLE("lists",
                      "{name: str `h.N.ln_1, h.N.ln_2 or ln_f`, "
                      "list: "
                      "'gamma_max_top'|'gamma_max_bottom'|'gamma_min_top'|'gamma_min_bottom'|'beta',"
                      " " HIT_COLUMNS "}",
                      "One row per LayerNorm, token list and rank."),
            CSV_TABLE("keys",
                      "{block: int(0..$layer), head: int(0..$head), method: 'random'|'targeted', "
                      "queries: int(0..), selectable: int(0..), unselectable_fraction: num(0..1)}",
                      "One row per block and head (no rows with keys=none).")),
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
        .answers = ANSWERS(
            JSON_ANSWER("{block: int(0..$layer), head: int(0..$head), dims: [int(0..); 2] `the coordinates "
                        "i, j`, default_dims: bool, points: int(3..), gamma: [num; 2], beta: [num; 2], "
                        "w_qk: [[num; 2]; 2], stages: [{name: 'circle'|'gamma'|'gamma+beta'|'w_qk', "
                        "points: [[num; 2]]}; 4], definition: str}",
                        "The four stages of the sketch."),
            CSV_ANSWER(
                "{stage: 'circle'|'gamma'|'gamma+beta'|'w_qk', point: int(0..), "
                "theta: num(0..) `the point's angle on the circle, in radians`, x: num `coordinate i`, "
                "y: num `coordinate j`}",
                "One row per stage and point.")),
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
        .answers = ANSWERS(
            JSON_ANSWER(
                "{text: str, gelu: 'tanh'|'erf', n_tokens: int(1..), tokens: [Token], seed: int(0..), "
                "blocks: [{block: int(0..$layer), heads: [{head: int(0..$head), scores: " SC_DIFF
                ", patterns: " SC_DIFF ", outputs: " SC_DIFF ", bk_randomised: {bk_norm: num(0..), "
                "pattern_max_abs_diff: num(0..), pattern_max_abs_diff_exact: num(0..), "
                "score_shift_max: num, shift_spread: num}}], total_output: " SC_DIFF "}], "
                "max: {scores: " SC_DIFF ", patterns: " SC_DIFF ", outputs: " SC_DIFF ", "
                "bk_randomised_pattern_max_abs_diff: num(0..)}, definition: str}",
                "Per block and head the differences from the forward pass, and the largest."),
            CSV_ANSWER("{block: int(0..$layer), head: int(0..$head)|null `empty for total_output`, "
                       "quantity: 'scores'|'patterns'|'outputs'|'bk_randomised_patterns'|"
                       "'bk_randomised_patterns_exact'|'bk_randomised_score_shift'|"
                       "'bk_randomised_shift_spread'|'total_output', max_abs_diff: num, "
                       "max_rel_diff: num|null `empty for the bk_randomised rows`}",
                       "One row per block, head and quantity, and the block's total output.")),
    },
    {.path = NULL},
};
