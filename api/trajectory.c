/* Words travelling through the layers (docs/MATH.md §7-§8): /trajectory, /umap/layout
 * (and its tokens) and /umap (the state of the background fit). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/format.h"
#include "api/handlers.h"
#include "api/json.h"
#include "base/utf8.h"
#include "core/ana/lens.h"
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
    json_t *a = json_array();
    for (int i = 0; i < 3; i++) api_push(a, api_f32(p[i]));
    return a;
}

/* What a trajectory answer is made of (docs/MATH.md §7): the S = L + 3
 * states of each of the N tokens, rows r = s * N + t of y (S N, C). */
typedef struct {
    size_t S, N, C, k, nt; /* nt: targets per row (next token, and the target if asked) */
    int32_t tid;           /* the asked target, or -1 */
    int32_t *tokens;       /* (N) */
    float *y;              /* (S N, C) */
    float *pts;            /* (S N, 3), or NULL */
    topk_hit *near;        /* (S N, k), or NULL */
    double *lse, *entropy; /* (S N) */
    int32_t *targets;      /* (S N, nt) */
    int32_t *rank;         /* (S N, nt) */
    double *score;         /* (S N, nt) */
    topk_hit next[5];      /* the top next tokens at the last position */
    size_t n_next;
    double next_lse;
    double *overlap; /* (S N) kNN overlap of each state's layout point (§15), or NULL */
} traj_data;

static void traj_free(traj_data *d)
{
    free(d->tokens);
    free(d->y);
    free(d->pts);
    free(d->near);
    free(d->lse);
    free(d->entropy);
    free(d->targets);
    free(d->rank);
    free(d->score);
    free(d->overlap);
}

static void state_name(size_t s, char *out, size_t n)
{
    static const char *const first[] = {"embedding", "embedding+position", "embedding+position, ln_f"};
    if (s < 3)
        snprintf(out, n, "%s", first[s]);
    else
        snprintf(out, n, "block %zu", s - 3);
}

/* The logit lens of every state (rows s * N + t), feeding kn (if any) the
 * products, and the top next tokens at the last position from the same
 * pass. Returns 0, or -1 with *res set. */
static int traj_lens(twd_app *app, const api_args *a, traj_data *d, layout_knn *kn, api_response *res)
{
    const gpt2_config *c = &app->model.cfg;
    size_t C = d->C, rows = d->S * d->N, V = (size_t)c->vocab_size;
    d->n_next = V < 5 ? V : 5;
    size_t kk = d->k > d->n_next ? d->k : d->n_next; /* the lists also give the next tokens */
    topk_hit *top = kk == d->k ? NULL : malloc(rows * kk * sizeof *top);
    d->near = malloc(rows * d->k * sizeof *d->near);
    d->lse = malloc(rows * sizeof *d->lse);
    d->entropy = malloc(rows * sizeof *d->entropy);
    d->targets = malloc(rows * d->nt * sizeof *d->targets);
    d->rank = malloc(rows * d->nt * sizeof *d->rank);
    d->score = malloc(rows * d->nt * sizeof *d->score);
    if (!d->near || !d->lse || !d->entropy || !d->targets || !d->rank || !d->score || (kk != d->k && !top)) {
        free(top);
        return api_status_error(res, TW_ENOMEM, "logit lens");
    }
    for (size_t r = 0; r < rows; r++) {
        size_t t = r % d->N;
        d->targets[r * d->nt] = t + 1 < d->N ? d->tokens[t + 1] : -1; /* the actual next token */
        if (d->nt > 1) d->targets[r * d->nt + 1] = d->tid;
    }
    const float *E = app->model.p.wte;
    lens_opts lo = {.k = kk,
                    .n_targets = d->nt,
                    .targets = d->targets,
                    .max_row_norm = topk_max_row_norm(E, V, C),
                    .cancel = a->cancel,
                    .on_row = kn ? layout_knn_feed : NULL,
                    .row_ctx = kn};
    lens_out out = {
        .top = top ? top : d->near, .lse = d->lse, .entropy = d->entropy, .rank = d->rank, .score = d->score};
    int rc = lens_rows(E, V, C, d->y, rows, &lo, &out);
    if (rc == TW_OK) {
        /* the next tokens: the lens of the last state at the last position
         * (the exact top lists are prefixes of longer ones) */
        const topk_hit *last = (top ? top : d->near) + (rows - 1) * kk;
        memcpy(d->next, last, d->n_next * sizeof *d->next);
        d->next_lse = d->lse[rows - 1];
        for (size_t r = 0; top && r < rows; r++) memcpy(d->near + r * d->k, top + r * kk, d->k * sizeof *top);
    }
    free(top);
    return rc == TW_OK ? 0 : api_status_error(res, rc, "logit lens");
}

/* The projection of every state and the kNN overlap of its point, from kn's
 * neighbours when the lens found them, else alone. Returns 0, or -1 with
 * *res set. */
static int traj_points(twd_app *app, proj_kind kind, traj_data *d, layout_knn *kn, api_response *res)
{
    size_t rows = d->S * d->N;
    double progress = 1;
    char msg[512] = "";
    if (!(d->pts = malloc(rows * 3 * sizeof *d->pts)) || !(d->overlap = malloc(rows * sizeof *d->overlap)))
        return api_status_error(res, TW_ENOMEM, "trajectory");
    int rc = kn ? layout_knn_end(kn) : TW_OK;
    if (rc != TW_OK) return api_status_error(res, rc, "projection");
    rc = kn ? layout_apply_knn(kn, d->pts, msg, sizeof msg)
            : layout_apply(app->ext->layout, kind, d->y, rows, d->pts, &progress, msg, sizeof msg);
    if (rc == TW_ENOTREADY) return layout_unavailable(res, rc, progress, msg);
    if (rc) return api_error(res, 500, "projection: %s", msg);
    rc = kn ? layout_knn_overlap_knn(kn, d->pts, d->overlap)
            : layout_knn_overlap(app->ext->layout, kind, d->y, d->pts, rows, d->overlap);
    return rc == TW_OK ? 0 : api_status_error(res, rc, "faithfulness");
}

/* The forward pass and, as asked, the projection and the logit lens.
 * Returns 0, or -1 with *res set. */
static int traj_compute(twd_app *app, const api_args *a, const int32_t *ids, size_t N, bool points, bool lens,
                        traj_data *d, api_response *res)
{
    const gpt2_config *c = &app->model.cfg;
    proj_kind kind = kind_of(a);
    double progress;
    char msg[512];
    size_t dummy;
    int rc;
    if (points && kind == PROJ_UMAP &&
        !layout_points(app->ext->layout, PROJ_UMAP, &dummy, &rc, &progress, msg, sizeof msg))
        return layout_unavailable(res, rc, progress, msg);
    gpt2_forward_opts opts = {
        .gelu = api_gelu(a), .logits = GPT2_LOGITS_NONE, .skip_attention = 1, .cancel = a->cancel};
    gpt2_forward_result *fr = NULL;
    if ((rc = gpt2_forward(&app->model, ids, N, &opts, &fr)) != TW_OK)
        return api_status_error(res, rc, "forward pass");
    size_t C = d->C, L = (size_t)c->n_layer, rows = d->S * N;
    d->tokens = malloc(N * sizeof *d->tokens);
    d->y = malloc(rows * C * sizeof *d->y);
    if (!d->tokens || !d->y) {
        gpt2_forward_free(fr);
        return api_status_error(res, TW_ENOMEM, "trajectory");
    }
    memcpy(d->tokens, fr->tokens, N * sizeof *d->tokens);
    /* states in order: e, x0, LN_f(x0), LN_f(x_l) for each block */
    memcpy(d->y, fr->emb, N * C * sizeof *d->y);
    memcpy(d->y + N * C, fr->x0, N * C * sizeof *d->y);
    memcpy(d->y + 2 * N * C, fr->x0_lnf, N * C * sizeof *d->y);
    memcpy(d->y + 3 * N * C, fr->resid_lnf, L * N * C * sizeof *d->y);
    gpt2_forward_free(fr);
    /* the logit lens multiplies every state by wte; the layout's kNN of the
     * states among its fitted rows (the first rows of wte) is read from the
     * same products rather than from a GEMM of its own */
    const float *E = app->model.p.wte;
    layout_knn *kn = points && lens ? layout_knn_begin(app->ext->layout, kind, E, d->y, rows) : NULL;
    if (lens && (rc = traj_lens(app, a, d, kn, res)) != 0) {
        layout_knn_free(kn);
        return rc;
    }
    if (points) rc = traj_points(app, kind, d, kn, res);
    layout_knn_free(kn);
    return rc;
}

/* {id, rank, prob} of target column j at row r, or null. */
static json_t *target_json(const traj_data *d, size_t r, size_t j)
{
    size_t i = r * d->nt + j;
    if (d->targets[i] < 0) return json_null();
    json_t *o = json_pack("{s:i,s:i}", "id", d->targets[i], "rank", d->rank[i]);
    api_put(o, "prob", api_num(exp(d->score[i] - d->lse[r])));
    return o;
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
        api_push(per, api_num(m / (double)N));
    }
    api_put(f, "knn_overlap",
            json_pack("{s:i,s:f,s:o,s:s}", "k", FAITH_K, "overall", all / (double)(S * N), "states", per,
                      "definition",
                      "per state, the mean over positions of the fraction of the k nearest fitted "
                      "rows in the full space that are also among the k nearest in the layout"));
    return f;
}

static json_t *traj_json(twd_app *app, const api_args *a, const traj_data *d, bool vectors)
{
    size_t N = d->N, C = d->C;
    json_t *tokens = api_tokens_json(app->tok, d->tokens, N), *states = json_array();
    for (size_t s = 0; s < d->S; s++) {
        char name[64];
        state_name(s, name, sizeof name);
        json_t *points = json_array(), *nearest = json_array(), *ent = json_array(), *next = json_array();
        json_t *target = d->nt > 1 ? json_array() : NULL, *vec = vectors ? json_array() : NULL;
        for (size_t t = 0; t < N; t++) {
            size_t r = s * N + t;
            api_push(points, point_json(d->pts + r * 3));
            json_t *list = json_array();
            for (size_t j = 0; j < d->k; j++) {
                const topk_hit *h = &d->near[r * d->k + j];
                json_t *o = api_scored_token_json(app->tok, h->id, "score", h->score);
                api_put(o, "prob", api_num(exp(h->score - d->lse[r])));
                api_push(list, o);
            }
            api_push(nearest, list);
            api_push(ent, api_num(d->entropy[r]));
            api_push(next, target_json(d, r, 0));
            if (target) api_push(target, target_json(d, r, 1));
            if (vec) {
                json_t *v = json_array();
                for (size_t i = 0; i < C; i++) api_push(v, api_num(d->y[r * C + i]));
                api_push(vec, v);
            }
        }
        json_t *st = json_pack("{s:i,s:s,s:o,s:o,s:o,s:o}", "index", (int)s, "name", name, "points", points,
                               "nearest", nearest, "entropy", ent, "next", next);
        api_put(st, "block", s >= 3 ? json_integer((json_int_t)(s - 3)) : json_null());
        if (target) api_put(st, "target", target);
        if (vec) api_put(st, "vectors", vec);
        api_push(states, st);
    }
    json_t *pred = json_array();
    for (size_t j = 0; j < d->n_next; j++) {
        json_t *o = api_scored_token_json(app->tok, d->next[j].id, "score", d->next[j].score);
        api_put(o, "prob", api_num(exp(d->next[j].score - d->next_lse)));
        api_push(pred, o);
    }
    const api_arg *text = api_arg_get(a, "text");
    json_t *doc = json_pack(
        "{s:s,s:s,s:s,s:i,s:i,s:i,s:b,s:o,s:o,s:o,s:s}", "text", text->s, "projection",
        kind_of(a) == PROJ_PCA ? "pca" : "umap", "gelu", api_str(a, "gelu"), "k", (int)d->k, "n_tokens",
        (int)N, "n_states", (int)d->S, "vectors", vectors, "tokens", tokens, "states", states, "next_tokens",
        pred, "definition",
        "states: e = wte[t], x0 = e + wpe, LN_f(x0), then LN_f of the residual stream after each block; "
        "points: the projection of each state; the logit lens of a state s: scores s . wte_j, prob their "
        "softmax over the whole vocabulary, entropy in nats; nearest: the top-k tokens; next: the actual "
        "next token's rank (1-based) and prob; next_tokens: the top tokens at the last position");
    api_put(doc, "target", d->tid >= 0 ? api_token_json(app->tok, d->tid) : json_null());
    api_put(doc, "faithfulness", faithfulness_json(app, kind_of(a), d->overlap, d->S, N));
    return doc;
}

/* The key columns of a CSV row: state_index, state, block, position,
 * token_id, token_text. */
static void traj_csv_keys(textbuf *tb, const tokenizer *tok, const traj_data *d, size_t s, size_t t)
{
    char name[64];
    state_name(s, name, sizeof name);
    tb_csv_int(tb, (long long)s);
    tb_csv_str(tb, name);
    if (s >= 3)
        tb_csv_int(tb, (long long)s - 3);
    else
        tb_csv_empty(tb);
    tb_csv_int(tb, (long long)t);
    tb_csv_token(tb, tok, d->tokens[t]);
}

static void csv_target(textbuf *tb, const traj_data *d, size_t r, size_t j)
{
    size_t i = r * d->nt + j;
    if (j >= d->nt || d->targets[i] < 0) {
        for (int c = 0; c < 3; c++) tb_csv_empty(tb);
        return;
    }
    tb_csv_int(tb, d->targets[i]);
    tb_csv_int(tb, d->rank[i]);
    tb_csv_num(tb, exp(d->score[i] - d->lse[r]));
}

static int traj_csv(twd_app *app, const char *table, const traj_data *d, api_response *res)
{
    textbuf tb;
    tb_init(&tb);
    const char *keys = "state_index,state,block,position,token_id,token_text";
    bool pts = strcmp(table, "points") == 0, near = strcmp(table, "nearest") == 0;
    if (pts)
        tb_printf(&tb, "%s,x,y,z,entropy,next_id,next_rank,next_prob,target_id,target_rank,target_prob\r\n",
                  keys);
    else if (near)
        tb_printf(&tb, "%s,rank,id,text,score,prob\r\n", keys);
    else {
        tb_printf(&tb, "%s", keys);
        for (size_t i = 0; i < d->C; i++) tb_printf(&tb, ",v%zu", i);
        tb_printf(&tb, "\r\n");
    }
    for (size_t s = 0; s < d->S; s++)
        for (size_t t = 0; t < d->N; t++) {
            size_t r = s * d->N + t;
            for (size_t j = 0; j < (near ? d->k : 1); j++) {
                traj_csv_keys(&tb, app->tok, d, s, t);
                if (pts) {
                    for (int c = 0; c < 3; c++) tb_csv_num(&tb, d->pts[r * 3 + (size_t)c]);
                    tb_csv_num(&tb, d->entropy[r]);
                    csv_target(&tb, d, r, 0);
                    csv_target(&tb, d, r, 1);
                } else if (near) {
                    const topk_hit *h = &d->near[r * d->k + j];
                    tb_csv_int(&tb, (long long)j + 1);
                    tb_csv_hit(&tb, app->tok, h);
                    tb_csv_num(&tb, exp(h->score - d->lse[r]));
                } else {
                    for (size_t i = 0; i < d->C; i++) tb_csv_num(&tb, d->y[r * d->C + i]);
                }
                tb_csv_end(&tb);
            }
        }
    return tb_respond(&tb, res, CSV_TYPE);
}

/* The state vectors as numpy's .npy: float32, shape (states, tokens, d). */
static int traj_npy(const traj_data *d, api_response *res)
{
    size_t shape[3] = {d->S, d->N, d->C};
    return api_npy_respond(res, "<f4", shape, 3, d->y, d->S * d->N * d->C * sizeof(float));
}

int api_trajectory(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text");
    const gpt2_config *c = &app->model.cfg;
    const char *fmt = api_str(a, "format"), *table = api_str(a, "table");
    bool npy = strcmp(fmt, "npy") == 0, csv = strcmp(fmt, "csv") == 0;
    bool vectors = api_int(a, "vectors") != 0 || npy || (csv && strcmp(table, "vectors") == 0);
    bool points = !npy && !(csv && strcmp(table, "points") != 0);
    bool lens = !npy && !(csv && strcmp(table, "vectors") == 0);
    traj_data d = {.C = (size_t)c->n_embd, .S = 3 + (size_t)c->n_layer, .k = (size_t)api_int(a, "k")};
    d.tid = api_token_arg(app, api_arg_get(a, "target"), res);
    if (d.tid == -2) return -1;
    d.nt = d.tid >= 0 ? 2 : 1;
    int32_t *ids = NULL;
    long n = api_encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    d.N = (size_t)n;
    double rows = (double)d.S * d.N;
    /* bytes per vector value: 4 in npy, about 16 in CSV text, and what
     * jansson holds while the JSON answer is built */
    double per_value = npy ? 4 : csv ? 16 : 64;
    int ret = -1;
    if (lens && api_check_answer_size(app, res, rows * (double)(d.k + 1), "the text or k") != 0) goto done;
    if (vectors &&
        api_check_answer_bytes(app, res, rows * (double)d.C * per_value,
                               npy ? "shorten the text" : "shorten the text, or use format=npy") != 0)
        goto done;
    if (traj_compute(app, a, ids, d.N, points, lens, &d, res) != 0) goto done;
    if (npy)
        ret = traj_npy(&d, res);
    else if (csv)
        ret = traj_csv(app, table, &d, res);
    else
        ret = api_json(res, 200, traj_json(app, a, &d, vectors));
done:
    free(ids);
    traj_free(&d);
    return ret;
}

/* The causal attention patterns of a phrase: per block and head, the n x n
 * softmax weights (row t: how much query t attends to each key u; zero for
 * u > t). */
int api_attention(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text"), *ba = api_arg_get(a, "block"), *ha = api_arg_get(a, "head");
    const gpt2_config *c = &app->model.cfg;
    bool csv = api_format_is(a, "csv");
    int32_t *ids = NULL;
    long n = api_encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    int b0 = ba->present ? (int)ba->i : 0, b1 = ba->present ? (int)ba->i + 1 : c->n_layer;
    int h0 = ha->present ? (int)ha->i : 0, h1 = ha->present ? (int)ha->i + 1 : c->n_head;
    /* JSON sends the whole matrix, CSV the causal half */
    double cells = csv ? (double)n * (double)(n + 1) / 2 : (double)n * (double)n;
    if (api_check_answer_size(app, res, (double)(b1 - b0) * (h1 - h0) * cells,
                              "the text, or ask for one block or head") != 0) {
        free(ids);
        return -1;
    }
    /* only the patterns asked for are kept (the whole L x H x n x n tensor
     * is 380 MB for 124M at 774 tokens) */
    gpt2_forward_opts opts = {.gelu = api_gelu(a),
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
#define PATTERN(b, h)                                                                                        \
    (fr->att + ((size_t)((b)-fr->att_block0) * (size_t)fr->att_heads + (size_t)((h)-fr->att_head0)) * N * N)
    if (csv) {
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "block,head,query_pos,key_pos,weight\r\n");
        for (int b = b0; b < b1; b++)
            for (int h = h0; h < h1; h++) {
                const float *att = PATTERN(b, h);
                for (size_t t = 0; t < N; t++)
                    for (size_t u = 0; u <= t; u++) {
                        tb_csv_int(&tb, b);
                        tb_csv_int(&tb, h);
                        tb_csv_int(&tb, (long long)t);
                        tb_csv_int(&tb, (long long)u);
                        tb_csv_num(&tb, att[t * N + u]);
                        tb_csv_end(&tb);
                    }
            }
        gpt2_forward_free(fr);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *tokens = api_tokens_json(app->tok, fr->tokens, N), *blocks = json_array();
    for (int b = b0; b < b1; b++) {
        json_t *heads = json_array();
        for (int h = h0; h < h1; h++) {
            const float *att = PATTERN(b, h);
            json_t *rows = json_array();
            for (size_t t = 0; t < N; t++) {
                json_t *row = json_array();
                for (size_t u = 0; u < N; u++) api_push(row, api_num(u <= t ? att[t * N + u] : 0.0));
                api_push(rows, row);
            }
            api_push(heads, json_pack("{s:i,s:o}", "head", h, "pattern", rows));
        }
        api_push(blocks, json_pack("{s:i,s:o}", "block", b, "heads", heads));
    }
#undef PATTERN
    json_t *doc = json_pack("{s:s,s:s,s:i,s:o,s:o,s:s}", "text", text->s, "gelu", gpt2_gelu_name(fr->gelu),
                            "n_tokens", (int)N, "tokens", tokens, "blocks", blocks, "definition",
                            "pattern[t][u]: softmax weight of key u for query t, scale 1/sqrt(dh); causal, "
                            "so zero for u > t");
    gpt2_forward_free(fr);
    return api_json(res, 200, doc);
}

/* The rows a layout answer holds: the fitted points of the asked
 * projection, *n of them, and *limit spread evenly over them (all of them
 * for limit=0, or more than there are); row i of the answer is fitted row
 * (token id) layout_row(i, ...). NULL, with the 503 answered, while the
 * layout cannot be used. */
static const float *layout_asked(twd_app *app, const api_args *a, api_response *res, size_t *n, size_t *limit)
{
    double progress;
    char msg[512];
    int rc;
    const float *pts = layout_points(app->ext->layout, kind_of(a), n, &rc, &progress, msg, sizeof msg);
    if (!pts) {
        layout_unavailable(res, rc, progress, msg);
        return NULL;
    }
    *limit = (size_t)api_int(a, "limit");
    if (*limit == 0 || *limit > *n) *limit = *n; /* more than the layout has: all of it */
    return pts;
}

static size_t layout_row(size_t i, size_t n, size_t limit) { return i * n / limit; }

/* The points as numpy's .npy: float32, shape (limit, 3), row i the JSON
 * answer's points[i] (the same float32 values: the JSON prints each as the
 * shortest decimal that reads back to it). */
static int layout_npy(const float *pts, size_t n, size_t limit, api_response *res)
{
    size_t shape[2] = {limit, 3};
    if (limit == n) return api_npy_respond(res, "<f4", shape, 2, pts, n * 3 * sizeof *pts);
    float *sel = malloc((limit ? limit : 1) * 3 * sizeof *sel);
    if (!sel) return api_status_error(res, TW_ENOMEM, "the npy answer");
    for (size_t i = 0; i < limit; i++)
        memcpy(sel + i * 3, pts + layout_row(i, n, limit) * 3, 3 * sizeof *sel);
    int ret = api_npy_respond(res, "<f4", shape, 2, sel, limit * 3 * sizeof *sel);
    free(sel);
    return ret;
}

int api_umap_layout(twd_app *app, const api_args *a, api_response *res)
{
    proj_kind kind = kind_of(a);
    size_t n = 0, limit = 0;
    const float *pts = layout_asked(app, a, res, &n, &limit);
    if (!pts) return -1;
    if (api_format_is(a, "npy")) return layout_npy(pts, n, limit, res);
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "id,text,x,y,z\r\n");
        for (size_t i = 0; i < limit; i++) {
            size_t r = layout_row(i, n, limit);
            tb_csv_token(&tb, app->tok, (int)r);
            for (int j = 0; j < 3; j++) tb_csv_num(&tb, pts[r * 3 + (size_t)j]);
            tb_csv_end(&tb);
        }
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *points = json_array(), *tokens = json_array();
    for (size_t i = 0; i < limit; i++) {
        size_t r = layout_row(i, n, limit);
        api_push(points, point_json(pts + r * 3));
        api_push(tokens, api_token_json(app->tok, (int)r));
    }
    json_t *doc = json_pack("{s:s,s:i,s:i,s:o,s:o}", "projection", kind == PROJ_PCA ? "pca" : "umap", "rows",
                            (int)n, "n", (int)limit, "tokens", tokens, "points", points);
    json_t *f = layout_faith_json(app->ext->layout, kind);
    if (doc && f) api_put(doc, "faithfulness", f);
    return api_json(res, 200, doc);
}

/* The tokens of /umap/layout's rows without their bytes: two arrays, ids
 * and texts, row-aligned with the points (and with format=npy's rows), for
 * labelling the cloud at a fraction of the JSON answer's size. */
int api_umap_layout_tokens(twd_app *app, const api_args *a, api_response *res)
{
    size_t n = 0, limit = 0;
    if (!layout_asked(app, a, res, &n, &limit)) return -1;
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "id,text");
        for (size_t i = 0; i < limit; i++) {
            tb_csv_token(&tb, app->tok, (int)layout_row(i, n, limit));
            tb_csv_end(&tb);
        }
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *ids = json_array(), *texts = json_array();
    for (size_t i = 0; i < limit; i++) {
        int id = (int)layout_row(i, n, limit);
        size_t len = 0, tlen = 0;
        const uint8_t *b = tokenizer_token_bytes(app->tok, id, &len);
        char *t = utf8_sanitize(b ? (const char *)b : "", b ? len : 0, &tlen);
        api_push(ids, json_integer(id));
        api_push(texts, t ? json_stringn(t, tlen) : NULL); /* by length: a token may be a NUL byte */
        free(t);
    }
    json_t *doc = json_pack("{s:s,s:i,s:i,s:o,s:o}", "projection", kind_of(a) == PROJ_PCA ? "pca" : "umap",
                            "rows", (int)n, "n", (int)limit, "ids", ids, "texts", texts);
    return api_json(res, 200, doc);
}

int api_umap_status(twd_app *app, const api_args *a, api_response *res)
{
    (void)a;
    return api_json(res, 200, layout_status_json(app->ext->layout));
}

void api_ext_model_info(twd_app *app, json_t *model)
{
    if (app->ext && app->ext->layout) api_put(model, "umap", layout_status_json(app->ext->layout));
}
