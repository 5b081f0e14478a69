/* Words travelling through the layers (docs/MATH.md §7-§8): /trajectory, /umap/layout
 * and /umap (the state of the background fit). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/handlers.h"
#include "core/nn/forward.h"
#include "core/nn/topk.h"
#include "core/proj/faith.h"
#include "core/proj/layout.h"

static proj_kind kind_of(const api_args *a)
{
    const char *p = api_str(a, "projection");
    return p && strcmp(p, "pca") == 0 ? PROJ_PCA : PROJ_UMAP;
}

/* The answer when a layout cannot be used: while UMAP is being fitted, 503
 * with a Retry-After that follows the progress; when it will never be
 * there (turned off, failed), 503 without one: retrying cannot help. */
static int layout_unavailable(api_response *res, int rc, double progress, const char *msg)
{
    api_error(res, 503, "%s; %suse projection=pca", msg, rc == TW_ENOTREADY ? "retry shortly, or " : "");
    res->retry_after = rc != TW_ENOTREADY ? 0 : progress > 0.9 ? 1 : 5;
    return -1;
}

static json_t *point_json(const float *p)
{
    return json_pack("[f,f,f]", isfinite(p[0]) ? p[0] : 0.0, isfinite(p[1]) ? p[1] : 0.0,
                     isfinite(p[2]) ? p[2] : 0.0);
}

static gpt2_gelu gelu_of(const api_args *a)
{
    return strcmp(api_str(a, "gelu"), "erf") == 0 ? GPT2_GELU_ERF : GPT2_GELU_TANH;
}

/* Encodes the 'text' parameter as the phrase of a forward pass: 1 to
 * min(max_tokens, n_ctx) tokens, all inside the model's vocabulary. Returns
 * the token count with the ids in *ids (caller frees), or -1 with *res set. */
static long encode_phrase(twd_app *app, const api_arg *text, api_response *res, int32_t **ids)
{
    const gpt2_config *c = &app->model.cfg;
    long n = tokenizer_encode(app->tok, text->s, text->s_len, ids);
    if (n < 0) return api_status_error(res, TW_ENOMEM, "tokenizing");
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

/* How faithful the picture is (docs/MATH.md §15): the layout's figures and,
 * for the phrase's states (S states of N positions, state-major), the
 * fraction of their nearest fitted rows in the full space that stay among
 * their nearest in 3D, per state and overall. */
static json_t *faithfulness_json(twd_app *app, proj_kind kind, const double *overlap, size_t S, size_t N)
{
    json_t *f = layout_faith_json(app->ext->layout, kind);
    if (!f) f = json_object();
    json_t *per = json_array();
    double all = 0;
    for (size_t s = 0; s < S; s++) {
        double m = 0;
        for (size_t t = 0; t < N; t++) m += overlap[s * N + t];
        all += m;
        json_array_append_new(per, json_real(m / (double)N));
    }
    json_object_set_new(
        f, "knn_overlap",
        json_pack("{s:i,s:f,s:o,s:s}", "k", FAITH_K, "overall", all / (double)(S * N), "states", per,
                  "definition",
                  "per state, the mean over positions of the fraction of the k nearest fitted "
                  "rows in the full space that are also among the k nearest in the layout"));
    return f;
}

int api_trajectory(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text");
    size_t k = (size_t)api_int(a, "k");
    proj_kind kind = kind_of(a);
    const gpt2_config *c = &app->model.cfg;
    int32_t *ids = NULL;
    long n = encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    if (api_check_answer_size(app, res, (double)n * (3.0 + c->n_layer) * (double)(k + 1), "the text or k") !=
        0) {
        free(ids);
        return -1;
    }
    double progress;
    char msg[512];
    size_t dummy;
    int lrc;
    if (kind == PROJ_UMAP &&
        !layout_points(app->ext->layout, PROJ_UMAP, &dummy, &lrc, &progress, msg, sizeof msg)) {
        free(ids);
        return layout_unavailable(res, lrc, progress, msg);
    }
    gpt2_forward_opts opts = {
        .gelu = gelu_of(a), .logits = GPT2_LOGITS_LAST, .skip_attention = 1, .cancel = a->cancel};
    gpt2_forward_result *fr = NULL;
    int rc = gpt2_forward(&app->model, ids, (size_t)n, &opts, &fr);
    free(ids);
    if (rc != TW_OK) return api_status_error(res, rc, "forward pass");

    size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer, S = 3 + L, N = (size_t)n, rows = S * N;
    float *y = malloc(rows * C * sizeof *y), *pts = malloc(rows * 3 * sizeof *pts);
    topk_hit *near = malloc(rows * k * sizeof *near);
    topk_hit next[5];
    size_t n_next = (size_t)c->vocab_size < 5 ? (size_t)c->vocab_size : 5;
    double *logits = malloc((size_t)c->vocab_size * sizeof *logits);
    if (!y || !pts || !near || !logits) {
        free(y);
        free(pts);
        free(near);
        free(logits);
        gpt2_forward_free(fr);
        return api_status_error(res, TW_ENOMEM, "trajectory");
    }
    /* states in order: e, x0, LN_f(x0), LN_f(x_l) for each block */
    memcpy(y, fr->emb, N * C * sizeof *y);
    memcpy(y + N * C, fr->x0, N * C * sizeof *y);
    memcpy(y + 2 * N * C, fr->x0_lnf, N * C * sizeof *y);
    memcpy(y + 3 * N * C, fr->resid_lnf, L * N * C * sizeof *y);
    for (size_t v = 0; v < (size_t)c->vocab_size; v++) logits[v] = fr->logits[v];
    int trc = topk_vec(logits, (size_t)c->vocab_size, n_next, next, NULL);
    free(logits);
    int prc = layout_apply(app->ext->layout, kind, y, rows, pts, &progress, msg, sizeof msg);
    int krc = prc == 0 ? topk_rows(app->model.p.wte, (size_t)c->vocab_size, C, y, rows, k, near, NULL) : 0;
    double *overlap = prc == 0 && krc == 0 ? malloc(rows * sizeof *overlap) : NULL;
    if (prc == 0 && krc == 0)
        krc = overlap ? layout_knn_overlap(app->ext->layout, kind, y, pts, rows, overlap) : TW_ENOMEM;
    free(y);
    if (prc != 0 || krc != 0 || trc != 0) {
        free(pts);
        free(near);
        free(overlap);
        gpt2_forward_free(fr);
        if (prc == TW_ENOTREADY) return layout_unavailable(res, prc, progress, msg);
        if (prc) return api_error(res, 500, "projection: %s", msg);
        return api_status_error(res, krc ? krc : trc, "nearest tokens");
    }
    json_t *tokens = json_array();
    for (size_t t = 0; t < N; t++) json_array_append_new(tokens, api_token_json(app->tok, fr->tokens[t]));
    json_t *states = json_array();
    for (size_t s = 0; s < S; s++) {
        char name[64];
        if (s == 0)
            snprintf(name, sizeof name, "embedding");
        else if (s == 1)
            snprintf(name, sizeof name, "embedding+position");
        else if (s == 2)
            snprintf(name, sizeof name, "embedding+position, ln_f");
        else
            snprintf(name, sizeof name, "block %zu", s - 3);
        json_t *points = json_array(), *nearest = json_array();
        for (size_t t = 0; t < N; t++) {
            json_array_append_new(points, point_json(pts + (s * N + t) * 3));
            json_t *list = json_array();
            for (size_t j = 0; j < k; j++) {
                const topk_hit *h = &near[(s * N + t) * k + j];
                json_array_append_new(list, api_scored_token_json(app->tok, h->id, "score", h->score));
            }
            json_array_append_new(nearest, list);
        }
        json_t *st = json_pack("{s:i,s:s,s:o,s:o}", "index", (int)s, "name", name, "points", points,
                               "nearest", nearest);
        json_object_set_new(st, "block", s >= 3 ? json_integer((json_int_t)(s - 3)) : json_null());
        json_array_append_new(states, st);
    }
    json_t *pred = json_array();
    for (size_t j = 0; j < n_next; j++)
        json_array_append_new(pred, api_scored_token_json(app->tok, next[j].id, "logit", next[j].score));
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:i,s:i,s:i,s:o,s:o,s:o,s:s}", "text", text->s, "projection",
        kind == PROJ_PCA ? "pca" : "umap", "gelu", gpt2_gelu_name(fr->gelu), "k", (int)k, "n_tokens", (int)N,
        "n_states", (int)S, "tokens", tokens, "states", states, "next_tokens", pred, "definition",
        "states: e = wte[t], x0 = e + wpe, LN_f(x0), then LN_f of the residual stream after "
        "each block; points: the projection of each state; nearest: top-k tokens of wte by dot "
        "product with the state (logit lens); next_tokens: top logits at the last position");
    json_object_set_new(doc, "faithfulness", faithfulness_json(app, kind, overlap, S, N));
    free(pts);
    free(near);
    free(overlap);
    gpt2_forward_free(fr);
    return api_json(res, 200, doc);
}

/* The causal attention patterns of a phrase: per block and head, the n x n
 * softmax weights (row t: how much query t attends to each key u <= t). */
int api_attention(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text"), *ba = api_arg_get(a, "block"), *ha = api_arg_get(a, "head");
    const gpt2_config *c = &app->model.cfg;
    int32_t *ids = NULL;
    long n = encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    int b0 = ba->present ? (int)ba->i : 0, b1 = ba->present ? (int)ba->i + 1 : c->n_layer;
    int h0 = ha->present ? (int)ha->i : 0, h1 = ha->present ? (int)ha->i + 1 : c->n_head;
    if (api_check_answer_size(app, res, (double)(b1 - b0) * (h1 - h0) * (double)n * (double)(n + 1) / 2,
                              "the text, or ask for one block or head") != 0) {
        free(ids);
        return -1;
    }
    /* only the patterns asked for are kept (the whole L x H x n x n tensor
     * is 380 MB for 124M at 774 tokens) */
    gpt2_forward_opts opts = {.gelu = gelu_of(a),
                              .logits = GPT2_LOGITS_NONE,
                              .att_select =
                                  (ba->present ? GPT2_ATT_BLOCK : 0) | (ha->present ? GPT2_ATT_HEAD : 0),
                              .att_block = b0,
                              .att_head = h0,
                              .cancel = a->cancel};
    gpt2_forward_result *fr = NULL;
    int rc = gpt2_forward(&app->model, ids, (size_t)n, &opts, &fr);
    free(ids);
    if (rc != TW_OK) return api_status_error(res, rc, "forward pass");
    size_t N = (size_t)n;
    json_t *tokens = json_array(), *blocks = json_array();
    for (size_t t = 0; t < N; t++) json_array_append_new(tokens, api_token_json(app->tok, fr->tokens[t]));
    for (int b = b0; b < b1; b++) {
        json_t *heads = json_array();
        for (int h = h0; h < h1; h++) {
            const float *att =
                fr->att +
                ((size_t)(b - fr->att_block0) * (size_t)fr->att_heads + (size_t)(h - fr->att_head0)) * N * N;
            json_t *rows = json_array();
            for (size_t t = 0; t < N; t++) {
                json_t *row = json_array(); /* keys 0..t; later keys are masked (0) */
                for (size_t u = 0; u <= t; u++) json_array_append_new(row, json_real(att[t * N + u]));
                json_array_append_new(rows, row);
            }
            json_array_append_new(heads, json_pack("{s:i,s:o}", "head", h, "pattern", rows));
        }
        json_array_append_new(blocks, json_pack("{s:i,s:o}", "block", b, "heads", heads));
    }
    json_t *doc =
        json_pack("{s:s,s:s,s:i,s:o,s:o,s:s}", "text", text->s, "gelu", gpt2_gelu_name(fr->gelu), "n_tokens",
                  (int)N, "tokens", tokens, "blocks", blocks, "definition",
                  "pattern[t][u]: softmax weight of key u for query t (u <= t; causal), scale 1/sqrt(dh)");
    gpt2_forward_free(fr);
    return api_json(res, 200, doc);
}

int api_umap_layout(twd_app *app, const api_args *a, api_response *res)
{
    proj_kind kind = kind_of(a);
    size_t n = 0, limit = (size_t)api_int(a, "limit");
    double progress;
    char msg[512];
    int rc;
    const float *pts = layout_points(app->ext->layout, kind, &n, &rc, &progress, msg, sizeof msg);
    if (!pts) return layout_unavailable(res, rc, progress, msg);
    if (limit == 0 || limit > n) limit = n;
    json_t *points = json_array(), *ids = json_array(), *texts = json_array();
    for (size_t i = 0; i < limit; i++) {
        size_t r = i * n / limit; /* an even spread over the fitted rows */
        json_array_append_new(points, point_json(pts + r * 3));
        json_array_append_new(ids, json_integer((json_int_t)r));
        json_t *tok = api_token_json(app->tok, (int)r);
        json_array_append(texts, json_object_get(tok, "text"));
        json_decref(tok);
    }
    json_t *doc = json_pack("{s:s,s:i,s:i,s:o,s:o,s:o}", "projection", kind == PROJ_PCA ? "pca" : "umap",
                            "rows", (int)n, "n", (int)limit, "points", points, "ids", ids, "texts", texts);
    json_t *f = layout_faith_json(app->ext->layout, kind);
    if (doc && f) json_object_set_new(doc, "faithfulness", f);
    return api_json(res, 200, doc);
}

int api_umap_status(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    return api_json(res, 200, layout_status_json(app->ext->layout));
}

void api_ext_model_info(twd_app *app, json_t *model)
{
    if (app->ext && app->ext->layout)
        json_object_set_new(model, "umap", layout_status_json(app->ext->layout));
}
