/* The analyses beyond the paper's attention (docs/MATH.md §9-§13) as routes:
 *   /mlp/values, /mlp/svd, /mlp/updates, /mlp/search   the MLP as key-value memories
 *   /layernorm, /layernorm/sketch                       layer-norm geometry
 *   /selfcheck                                          the decomposition self-check
 * Parameters are validated by the router before these run; the core
 * functions compute, this file only shapes answers (JSON and tidy CSV). */
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
#include "core/ana/lngeom.h"
#include "core/ana/mlp.h"
#include "core/ana/selfcheck.h"
#include "core/nn/forward.h"

/* ---------- shared shaping ---------- */

/* Neurons of a list: [{neuron, score}]. */
static json_t *neuron_hits_json(const topk_hit *h, size_t k)
{
    json_t *a = json_array();
    for (size_t i = 0; i < k; i++)
        api_push(a, json_pack("{s:i,s:o}", "neuron", (int)h[i].id, "score", api_num(h[i].score)));
    return a;
}

static ana_ctx ctx_of(twd_app *app, const api_args *a)
{
    return (ana_ctx){.cache = app->ext->cache, .cancel = a->cancel};
}

/* The optional 'block' parameter: its value, or -1 when absent. */
static int opt_block(const api_args *a)
{
    const api_arg *b = api_arg_get(a, "block");
    return b->present ? (int)b->i : -1;
}

/* ---------- /mlp/values (docs/MATH.md §9.1) ---------- */

int api_mlp_values(twd_app *app, const api_args *a, api_response *res)
{
    const int block = (int)api_int(a, "block");
    const size_t k = (size_t)api_int(a, "k");
    const api_arg *na = api_arg_get(a, "neurons");
    const size_t n = na->present ? na->n_list : (size_t)app->model.cfg.n_inner;
    if (api_check_answer_size(app, res, (double)n * 2.0 * (double)k, "k, or ask for fewer neurons") != 0)
        return -1;
    int32_t *ids = NULL;
    if (na->present) {
        if (!(ids = malloc(n * sizeof *ids))) return api_status_error(res, TW_ENOMEM, "value vectors");
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)na->ints[i];
    }
    mlp_values_result r;
    int rc = mlp_values(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, block, ids, n,
                        k, &r);
    free(ids);
    if (rc != TW_OK) return api_status_error(res, rc, "value vectors");
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "block,neuron,norm,list,rank,id,text,score");
        for (size_t i = 0; i < r.n; i++)
            for (int list = 0; list < 2; list++)
                for (size_t j = 0; j < k; j++) {
                    const topk_hit *h = &(list ? r.bottom : r.top)[i * k + j];
                    tb_csv_int(&tb, block);
                    tb_csv_int(&tb, r.neurons[i]);
                    tb_csv_num(&tb, r.norm[i]);
                    tb_csv_str(&tb, list ? "bottom" : "top");
                    tb_csv_int(&tb, (long long)j + 1);
                    tb_csv_token(&tb, app->tok, h->id);
                    tb_csv_num(&tb, h->score);
                    tb_csv_end(&tb);
                }
        mlp_values_result_free(&r);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *neurons = json_array();
    for (size_t i = 0; i < r.n; i++)
        api_push(neurons, json_pack("{s:i,s:o,s:o,s:o}", "neuron", (int)r.neurons[i], "norm",
                                    api_num(r.norm[i]), "top", api_hits_json(app->tok, r.top + i * k, k),
                                    "bottom", api_hits_json(app->tok, r.bottom + i * k, k)));
    json_t *doc =
        json_pack("{s:i,s:i,s:i,s:o,s:s}", "block", block, "k", (int)k, "n_neurons", (int)r.n, "neurons",
                  neurons, "definition",
                  "value vector v_i = row i of mlp.c_proj.weight (W_proj is d_ff x d); norm ||v_i||; "
                  "top/bottom: the k largest/smallest v_i . E_j over the rows of wte");
    mlp_values_result_free(&r);
    return api_json(res, 200, doc);
}

/* ---------- /mlp/search (docs/MATH.md §9.2) ---------- */

int api_mlp_search(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *t = api_arg_get(a, "token");
    const size_t k = (size_t)api_int(a, "k");
    const int block = opt_block(a);
    int32_t token = api_token_arg(app, t, res);
    if (token < 0) return -1;
    mlp_search_result r;
    int rc = mlp_search(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, block, token,
                        k, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "neuron search");
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "rank,block,neuron,score,norm,token_rank");
        for (size_t i = 0; i < r.k; i++) {
            const mlp_search_hit *h = &r.hits[i];
            tb_csv_int(&tb, (long long)i + 1);
            tb_csv_int(&tb, h->block);
            tb_csv_int(&tb, h->neuron);
            tb_csv_num(&tb, h->score);
            tb_csv_num(&tb, h->norm);
            tb_csv_int(&tb, (long long)h->rank);
            tb_csv_end(&tb);
        }
        mlp_search_result_free(&r);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *list = json_array();
    for (size_t i = 0; i < r.k; i++) {
        const mlp_search_hit *h = &r.hits[i];
        api_push(list, json_pack("{s:i,s:i,s:i,s:o,s:o,s:I}", "rank", (int)i + 1, "block", h->block, "neuron",
                                 (int)h->neuron, "score", api_num(h->score), "norm", api_num(h->norm),
                                 "token_rank", (json_int_t)h->rank));
    }
    json_t *doc =
        json_pack("{s:o,s:o,s:i,s:I,s:o,s:s}", "token", api_token_json(app->tok, token), "block",
                  block < 0 ? json_null() : json_integer(block), "k", (int)k, "n_neurons",
                  (json_int_t)r.n_neurons, "neurons", list, "definition",
                  "score = v_i . E[token] over the value vectors v_i (rows of mlp.c_proj.weight) of the "
                  "block or of every block; token_rank: the token's exact 1-based rank among v_i's own "
                  "tokens (v_i . E_j over wte, ties lower id first)");
    mlp_search_result_free(&r);
    return api_json(res, 200, doc);
}

/* ---------- /mlp/svd (docs/MATH.md §10) ---------- */

static json_t *mlp_svd_json(const tokenizer *tok, const mlp_svd_result *r)
{
    json_t *sv = json_array(), *cov = json_array(), *dirs = json_array();
    for (size_t t = 0; t < r->r; t++) {
        api_push(sv, api_num((r->s[t])));
        api_push(cov, api_num((r->coverage[t])));
    }
    const char *nside = r->matrix == MLP_SVD_IN ? "right" : "left";
    for (size_t t = 0; t < r->top; t++)
        api_push(dirs, json_pack("{s:i,s:o,s:i,s:o,s:o,s:s,s:o}", "rank", (int)t + 1, "singular_value",
                                 api_num(r->s[t]), "sign", r->sign[t], "left",
                                 api_hits_json(tok, r->left + t * r->k, r->k), "right",
                                 api_hits_json(tok, r->right + t * r->k, r->k), "neuron_side", nside,
                                 "neurons", neuron_hits_json(r->neurons + t * r->k, r->k)));
    const char *ref =
        r->matrix == MLP_SVD_IN
            ? "A = c_fc.weight (d x d_ff): left (S_r u_r, model space) against LN2_b(E); right v_r "
              "(neuron space) through c_proj, v_r W_proj, against wte; neurons: v_r's largest "
              "components; sign from the left list"
            : "A = c_proj.weight (d_ff x d): left (S_r u_r, neuron space) through c_fc, W_fc S_r u_r, "
              "against LN2_b(E); right v_r (model space) against wte; neurons: S_r u_r's largest "
              "components; sign from the right list";
    return json_pack("{s:o,s:o,s:o,s:o,s:s}", "singular_values", sv, "coverage", cov, "frac99",
                     api_num(r->frac99), "directions", dirs, "definition", ref);
}

int api_mlp_svd(twd_app *app, const api_args *a, api_response *res)
{
    const int block = (int)api_int(a, "block");
    const char *matrix = api_str(a, "matrix");
    const size_t top = (size_t)api_int(a, "top"), k = (size_t)api_int(a, "k");
    const char *table = api_str(a, "table");
    int mats[2], nm = 0;
    if (strcmp(matrix, "out") != 0) mats[nm++] = MLP_SVD_IN;
    if (strcmp(matrix, "in") != 0) mats[nm++] = MLP_SVD_OUT;
    int chk = api_check_answer_size_for(app, a, res, (double)nm * (double)top * 2.0 * (double)k, "top or k");
    if (chk) return chk < 0 ? -1 : 0;
    mlp_svd_result r[2];
    for (int i = 0; i < nm; i++) {
        int rc = mlp_svd(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, block,
                         mats[i], top, k, &r[i]);
        if (rc != TW_OK) {
            for (int j = 0; j < i; j++) mlp_svd_result_free(&r[j]);
            return api_status_error(res, rc, "MLP SVD");
        }
    }
    int ret;
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init(&tb);
        if (strcmp(table, "spectra") == 0) {
            tb_printf(&tb, "block,matrix,rank,singular_value,coverage\r\n");
            for (int i = 0; i < nm; i++)
                for (size_t t = 0; t < r[i].r; t++) {
                    tb_csv_int(&tb, block);
                    tb_csv_str(&tb, mlp_svd_matrix_name(mats[i]));
                    tb_csv_int(&tb, (long long)t + 1);
                    tb_csv_num(&tb, r[i].s[t]);
                    tb_csv_num(&tb, r[i].coverage[t]);
                    tb_csv_end(&tb);
                }
        } else {
            /* one row per listed item: tokens of either side, or a neuron */
            tb_printf(&tb,
                      "block,matrix,direction,singular_value,sign,side,list,rank,id,text,neuron,score\r\n");
            for (int i = 0; i < nm; i++)
                for (size_t t = 0; t < r[i].top; t++)
                    for (int part = 0; part < 3; part++)
                        for (size_t j = 0; j < k; j++) {
                            const topk_hit *h = &(part == 0   ? r[i].left
                                                  : part == 1 ? r[i].right
                                                              : r[i].neurons)[t * k + j];
                            const char *side = part == 0               ? "left"
                                               : part == 1             ? "right"
                                               : mats[i] == MLP_SVD_IN ? "right"
                                                                       : "left";
                            tb_csv_int(&tb, block);
                            tb_csv_str(&tb, mlp_svd_matrix_name(mats[i]));
                            tb_csv_int(&tb, (long long)t + 1);
                            tb_csv_num(&tb, r[i].s[t]);
                            tb_csv_int(&tb, r[i].sign[t]);
                            tb_csv_str(&tb, side);
                            tb_csv_str(&tb, part == 2 ? "neurons" : "tokens");
                            tb_csv_int(&tb, (long long)j + 1);
                            if (part == 2) {
                                tb_csv_empty(&tb);
                                tb_csv_empty(&tb);
                                tb_csv_int(&tb, h->id);
                            } else {
                                tb_csv_token(&tb, app->tok, h->id);
                                tb_csv_empty(&tb);
                            }
                            tb_csv_num(&tb, h->score);
                            tb_csv_end(&tb);
                        }
        }
        ret = tb_respond(&tb, res, CSV_TYPE);
    } else {
        json_t *ms = json_object();
        for (int i = 0; i < nm; i++) api_put(ms, mlp_svd_matrix_name(mats[i]), mlp_svd_json(app->tok, &r[i]));
        ret = api_json(res, 200,
                       json_pack("{s:i,s:s,s:i,s:i,s:i,s:o}", "block", block, "matrix", matrix, "top",
                                 (int)top, "k", (int)k, "rank", (int)r[0].r, "matrices", ms));
    }
    for (int i = 0; i < nm; i++) mlp_svd_result_free(&r[i]);
    return ret;
}

/* The forward pass of ids (n of them, freed here) with o, in the request's
 * GELU form, without logits and stopped by the request's cancel flag: 0 and
 * *fr, or -1 with the error answer in res. */
static int forward_ids(twd_app *app, const api_args *a, int32_t *ids, long n, gpt2_forward_opts o,
                       api_response *res, gpt2_forward_result **fr)
{
    o.gelu = api_gelu(a);
    o.logits = GPT2_LOGITS_NONE;
    o.cancel = a->cancel;
    int rc = gpt2_forward(&app->model, ids, (size_t)n, &o, fr);
    free(ids);
    return rc == TW_OK ? 0 : api_status_error(res, rc, "forward pass");
}

/* ---------- /mlp/updates (docs/MATH.md §11) ---------- */

int api_mlp_updates(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text");
    const size_t top = (size_t)api_int(a, "top"), k = (size_t)api_int(a, "k");
    const int block = opt_block(a);
    const gpt2_config *c = &app->model.cfg;
    int32_t *ids = NULL;
    long n = api_encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    double nb = block < 0 ? c->n_layer : 1;
    if (api_check_answer_size(app, res, (double)n * nb * (double)top * (double)(k + 1) + (double)n,
                              "the text, top or k, or ask for one block") != 0) {
        free(ids);
        return -1;
    }
    gpt2_forward_opts o = {.skip_attention = 1,
                           .keep_mlp = 1,
                           .keep_select = block < 0 ? 0 : GPT2_KEEP_BLOCK,
                           .keep_block = block < 0 ? 0 : block};
    gpt2_forward_result *fr = NULL;
    if (forward_ids(app, a, ids, n, o, res, &fr) != 0) return -1;
    mlp_updates_result r;
    int rc =
        mlp_updates(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, fr, top, k, &r);
    if (rc != TW_OK) {
        gpt2_forward_free(fr);
        return api_status_error(res, rc, "MLP sub-updates");
    }
    const size_t N = (size_t)n;
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "block,position,token_id,token_text,update_norm,rank,neuron,coefficient,norm,weight,"
                         "value_rank,id,text,score");
        for (size_t b = 0; b < r.n_blocks; b++)
            for (size_t t = 0; t < N; t++)
                for (size_t j = 0; j < top; j++) {
                    size_t at = (b * N + t) * top + j;
                    const mlp_update *u = &r.updates[at];
                    for (size_t q = 0; q < k; q++) {
                        const topk_hit *h = &r.tokens[at * k + q];
                        tb_csv_int(&tb, r.block0 + (long long)b);
                        tb_csv_int(&tb, (long long)t);
                        tb_csv_token(&tb, app->tok, fr->tokens[t]);
                        tb_csv_num(&tb, r.update_norm[b * N + t]);
                        tb_csv_int(&tb, (long long)j + 1);
                        tb_csv_int(&tb, u->neuron);
                        tb_csv_num(&tb, u->coef);
                        tb_csv_num(&tb, u->norm);
                        tb_csv_num(&tb, u->weight);
                        tb_csv_int(&tb, (long long)q + 1);
                        tb_csv_token(&tb, app->tok, h->id);
                        tb_csv_num(&tb, h->score);
                        tb_csv_end(&tb);
                    }
                }
        mlp_updates_result_free(&r);
        gpt2_forward_free(fr);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *blocks = json_array();
    for (size_t b = 0; b < r.n_blocks; b++) {
        json_t *pos = json_array();
        for (size_t t = 0; t < N; t++) {
            json_t *ups = json_array();
            for (size_t j = 0; j < top; j++) {
                size_t at = (b * N + t) * top + j;
                const mlp_update *u = &r.updates[at];
                api_push(ups,
                         json_pack("{s:i,s:i,s:o,s:o,s:o,s:o}", "rank", (int)j + 1, "neuron", (int)u->neuron,
                                   "coefficient", api_num(u->coef), "norm", api_num(u->norm), "weight",
                                   api_num(u->weight), "top", api_hits_json(app->tok, r.tokens + at * k, k)));
            }
            api_push(pos, json_pack("{s:i,s:o,s:o,s:o}", "position", (int)t, "token",
                                    api_token_json(app->tok, fr->tokens[t]), "update_norm",
                                    api_num(r.update_norm[b * N + t]), "updates", ups));
        }
        api_push(blocks, json_pack("{s:i,s:o,s:o}", "block", r.block0 + (int)b, "bias_norm",
                                   api_num(r.bias_norm[b]), "positions", pos));
    }
    json_t *doc = json_pack(
        "{s:s,s:s,s:i,s:i,s:i,s:o,s:o,s:s}", "text", text->s, "gelu", gpt2_gelu_name(fr->gelu), "top",
        (int)top, "k", (int)k, "n_tokens", (int)N, "tokens", api_tokens_json(app->tok, fr->tokens, N),
        "blocks", blocks, "definition",
        "the MLP output at a position is sum_i m_i v_i + b_proj, m_i = GELU activation of neuron i, v_i = "
        "row i "
        "of mlp.c_proj.weight; updates: the top sub-updates m_i v_i by weight |m_i| ||v_i||, each with "
        "coefficient m_i, norm ||v_i|| and v_i's top-k tokens against wte; update_norm: ||sum_i m_i v_i||");
    mlp_updates_result_free(&r);
    gpt2_forward_free(fr);
    return api_json(res, 200, doc);
}

/* ---------- /layernorm (docs/MATH.md §12) ---------- */

static const char *kind_name(int kind)
{
    return kind == LNG_LN1 ? "ln_1" : kind == LNG_LN2 ? "ln_2" : "ln_f";
}

static json_t *axis_json(const tokenizer *tok, int index, double value, const topk_hit *top,
                         const topk_hit *bottom, size_t k)
{
    return json_pack("{s:i,s:o,s:o,s:o}", "index", index, "value", api_num(value), "top",
                     api_hits_json(tok, top, k), "bottom", api_hits_json(tok, bottom, k));
}

static void keys_method_text(const lngeom_keys_result *kr, char *buf, size_t len)
{
    if (kr->method == LNG_KEYS_RANDOM)
        snprintf(buf, len, "sampled, %zu queries", kr->queries);
    else
        snprintf(buf, len, "targeted, %zu drawn keys", kr->queries);
}

static const char *keys_method_name(const lngeom_keys_result *kr)
{
    return kr->method == LNG_KEYS_RANDOM ? "random" : "targeted";
}

/* table=lists: every list of every layer, one row a hit. */
static void layernorm_csv_lists(textbuf *tb, const tokenizer *tok, const lngeom_result *r)
{
    char name[32];
    tb_printf(tb, "name,list,rank,id,text,score\r\n");
    for (size_t li = 0; li < r->n_layers; li++) {
        lngeom_layer_name(&r->layers[li], name, sizeof name);
        for (int l = 0; l < LNG_N_LISTS; l++)
            for (size_t j = 0; j < r->k; j++) {
                const topk_hit *h = &r->lists[(li * LNG_N_LISTS + (size_t)l) * r->k + j];
                tb_csv_str(tb, name);
                tb_csv_str(tb, lngeom_list_name(l));
                tb_csv_int(tb, (long long)j + 1);
                tb_csv_token(tb, tok, h->id);
                tb_csv_num(tb, h->score);
                tb_csv_end(tb);
            }
    }
}

/* table=keys: one row a head (only the header without keys). */
static void layernorm_csv_keys(textbuf *tb, const lngeom_keys_result *kr, bool do_keys)
{
    tb_printf(tb, "block,head,method,queries,selectable,unselectable_fraction\r\n");
    for (size_t b = 0; do_keys && b < kr->n_blocks; b++)
        for (size_t h = 0; h < kr->n_head; h++) {
            tb_csv_int(tb, kr->block0 + (long long)b);
            tb_csv_int(tb, (long long)h);
            tb_csv_str(tb, keys_method_name(kr));
            tb_csv_int(tb, (long long)kr->queries);
            tb_csv_int(tb, (long long)kr->selectable[b * kr->n_head + h]);
            tb_csv_num(tb, kr->unselectable[b * kr->n_head + h]);
            tb_csv_end(tb);
        }
}

/* table=layers: one row a LayerNorm. */
static void layernorm_csv_layers(textbuf *tb, const lngeom_result *r)
{
    char name[32];
    tb_printf(tb, "name,block,kind,rows,mean_before,mean_abs_before,mean_abs_after,max_abs_after,"
                  "radius_mean,radius_std,gamma_max_index,gamma_max,gamma_min_index,gamma_min,beta_norm,"
                  "change_mean,change_std\r\n");
    for (size_t li = 0; li < r->n_layers; li++) {
        const lngeom_layer *l = &r->layers[li];
        lngeom_layer_name(l, name, sizeof name);
        tb_csv_str(tb, name);
        if (l->block >= 0)
            tb_csv_int(tb, l->block);
        else
            tb_csv_empty(tb);
        tb_csv_str(tb, kind_name(l->kind));
        tb_csv_int(tb, (long long)l->rows);
        const double nums[6] = {l->mean_mean,     l->mean_abs,    l->after_mean_abs,
                                l->after_max_abs, l->radius_mean, l->radius_std};
        for (size_t i = 0; i < 6; i++) tb_csv_num(tb, nums[i]);
        tb_csv_int(tb, l->gmax_index);
        tb_csv_num(tb, l->gmax);
        tb_csv_int(tb, l->gmin_index);
        tb_csv_num(tb, l->gmin);
        tb_csv_num(tb, l->beta_norm);
        tb_csv_num(tb, l->change_mean);
        tb_csv_num(tb, l->change_std);
        tb_csv_end(tb);
    }
}

/* One LayerNorm of the JSON answer. */
static json_t *layernorm_layer_json(const tokenizer *tok, const lngeom_result *r, size_t li)
{
    const lngeom_layer *l = &r->layers[li];
    const size_t k = r->k;
    const topk_hit *lists = r->lists + li * LNG_N_LISTS * k;
    char name[32];
    lngeom_layer_name(l, name, sizeof name);
    return json_pack(
        "{s:s,s:o,s:s,s:I,s:{s:o,s:o,s:o,s:o},s:{s:o,s:o},s:{s:o,s:o},s:o,s:{s:o},s:{s:o,s:o}}", "name", name,
        "block", l->block >= 0 ? json_integer(l->block) : json_null(), "kind", kind_name(l->kind), "rows",
        (json_int_t)l->rows, "mean", "before", api_num(l->mean_mean), "before_abs", api_num(l->mean_abs),
        "after_abs", api_num(l->after_mean_abs), "after_max_abs", api_num(l->after_max_abs), "radius", "mean",
        api_num(l->radius_mean), "std", api_num(l->radius_std), "gamma", "max",
        axis_json(tok, l->gmax_index, l->gmax, lists + LNG_GMAX_TOP * k, lists + LNG_GMAX_BOTTOM * k, k),
        "min",
        axis_json(tok, l->gmin_index, l->gmin, lists + LNG_GMIN_TOP * k, lists + LNG_GMIN_BOTTOM * k, k),
        "beta_norm", api_num(l->beta_norm), "beta", "top", api_hits_json(tok, lists + LNG_BETA * k, k),
        "change", "mean", api_num(l->change_mean), "std", api_num(l->change_std));
}

/* The "keys" member of the JSON answer. */
static json_t *layernorm_keys_json(const lngeom_keys_result *kr, int vocab_size)
{
    const int random = kr->method == LNG_KEYS_RANDOM;
    char method_text[64] = "";
    keys_method_text(kr, method_text, sizeof method_text);
    json_t *heads = json_array();
    for (size_t b = 0; b < kr->n_blocks; b++)
        for (size_t h = 0; h < kr->n_head; h++)
            api_push(heads,
                     json_pack("{s:i,s:i,s:I,s:o}", "block", kr->block0 + (int)b, "head", (int)h,
                               "selectable", (json_int_t)kr->selectable[b * kr->n_head + h],
                               "unselectable_fraction", api_num(kr->unselectable[b * kr->n_head + h])));
    double floor = random ? 1.0 - (double)kr->queries / vocab_size : 0.0;
    return json_pack("{s:s,s:s,s:I,s:I,s:o,s:o,s:s}", "method", keys_method_name(kr), "description",
                     method_text, "queries", (json_int_t)kr->queries, "seed", (json_int_t)kr->seed, "floor",
                     api_num(floor > 0 ? floor : 0.0), "heads", heads, "definition",
                     random ? "keys k_j = LN_b(E)_j W_k,h + b_k,h over the vocabulary; selectable: the "
                              "argmax of q.k for "
                              "one of N random unit queries q in the head's dh-dimensional space; "
                              "unselectable_fraction = "
                              "1 - selectable / V, an upper bound of the true fraction (keys inside the "
                              "convex hull of the "
                              "others), and never below floor = 1 - N / V"
                            : "keys k_j = LN_b(E)_j W_k,h + b_k,h over the vocabulary; N keys drawn at "
                              "random, each with "
                              "the query Sigma^-1 (k_j - mu) of the keys' covariance; selectable: key j "
                              "is the argmax of "
                              "its own query (a certificate); unselectable_fraction = 1 - selectable / N");
}

/* The JSON answer of /layernorm. */
static json_t *layernorm_json(twd_app *app, const api_arg *text, const gpt2_forward_result *fr,
                              const lngeom_result *r, const lngeom_keys_result *kr, bool do_keys)
{
    json_t *layers = json_array();
    for (size_t li = 0; li < r->n_layers; li++) api_push(layers, layernorm_layer_json(app->tok, r, li));
    json_t *kj = do_keys ? layernorm_keys_json(kr, app->model.cfg.vocab_size) : json_null();
    json_t *doc =
        json_pack("{s:o,s:s,s:i,s:o,s:o,s:s}", "text", text->present ? json_string(text->s) : json_null(),
                  "states", fr ? "phrase" : "wte", "k", (int)r->k, "layers", layers, "keys", kj, "definition",
                  "per LayerNorm, on the states that reach it (the rows of wte, or the phrase's "
                  "states): mean of x before centring and of LN_0(x) after; radius sqrt(d) "
                  "sqrt(var/(var+eps)) of the normalised state; gamma's largest and smallest |gamma_i| "
                  "with the tokens of largest/smallest component i; beta's norm and tokens; change = "
                  "||gamma n + beta - n|| / ||n||");
    if (doc) api_put(doc, "n_states", json_integer(fr ? fr->n : app->model.cfg.vocab_size));
    if (doc && fr) api_put(doc, "tokens", api_tokens_json(app->tok, fr->tokens, (size_t)fr->n));
    return doc;
}

/* The phrase's states for /layernorm (a forward pass keeping the state
 * between attention and MLP), or *fr NULL without a phrase. 0, or -1 with
 * the error answer in res. */
static int layernorm_states(twd_app *app, const api_args *a, const api_arg *text, api_response *res,
                            gpt2_forward_result **fr)
{
    *fr = NULL;
    if (!text->present) return 0;
    int32_t *ids = NULL;
    long n = api_encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    gpt2_forward_opts o = {.skip_attention = 1, .keep_mid = 1};
    return forward_ids(app, a, ids, n, o, res, fr);
}

int api_layernorm(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text");
    const size_t k = (size_t)api_int(a, "k");
    const char *keys = api_str(a, "keys"), *table = api_str(a, "table");
    const api_arg *kb = api_arg_get(a, "keys_block");
    size_t queries = (size_t)api_int(a, "queries");
    const uint64_t seed = (uint64_t)api_int(a, "seed");
    const gpt2_config *c = &app->model.cfg;
    const size_t NL = 2 * (size_t)c->n_layer + 1;
    if (api_check_answer_size(app, res, (double)NL * LNG_N_LISTS * (double)k, "k") != 0) return -1;
    int method = strcmp(keys, "targeted") == 0 ? LNG_KEYS_TARGETED : LNG_KEYS_RANDOM;
    bool do_keys = strcmp(keys, "none") != 0;
    /* targeted draws distinct keys: more than the vocabulary holds is all of them */
    if (method == LNG_KEYS_TARGETED && queries > (size_t)c->vocab_size) queries = (size_t)c->vocab_size;
    gpt2_forward_result *fr;
    if (layernorm_states(app, a, text, res, &fr) != 0) return -1;
    ana_ctx x = ctx_of(app, a);
    lngeom_result r;
    lngeom_keys_result kr = {0};
    int rc = lngeom_layers(&app->model, &x, fr, k, &r);
    if (rc == TW_OK && do_keys) {
        rc = lngeom_keys(&app->model, &x, kb->present ? (int)kb->i : -1, queries, method, seed, &kr);
        if (rc != TW_OK) lngeom_result_free(&r);
    }
    if (rc != TW_OK) {
        gpt2_forward_free(fr);
        return api_status_error(res, rc, "layer-norm geometry");
    }
    int ret;
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init(&tb);
        if (strcmp(table, "lists") == 0)
            layernorm_csv_lists(&tb, app->tok, &r);
        else if (strcmp(table, "keys") == 0)
            layernorm_csv_keys(&tb, &kr, do_keys);
        else
            layernorm_csv_layers(&tb, &r);
        ret = tb_respond(&tb, res, CSV_TYPE);
    } else {
        ret = api_json(res, 200, layernorm_json(app, text, fr, &r, &kr, do_keys));
    }
    gpt2_forward_free(fr);
    lngeom_result_free(&r);
    lngeom_keys_result_free(&kr);
    return ret;
}

/* ---------- /layernorm/sketch (docs/MATH.md §12.4) ---------- */

int api_layernorm_sketch(twd_app *app, const api_args *a, api_response *res)
{
    const int block = (int)api_int(a, "block"), head = (int)api_int(a, "head");
    const size_t npts = (size_t)api_int(a, "points");
    const api_arg *da = api_arg_get(a, "dims");
    int dims[2];
    if (da->present) {
        dims[0] = (int)da->ints[0];
        dims[1] = (int)da->ints[1];
        if (dims[0] == dims[1])
            return api_error(res, 400, "parameter 'dims': the two coordinates must differ");
    } else {
        lngeom_default_dims(&app->model, block, dims);
    }
    lngeom_sketch_result r;
    int rc = lngeom_sketch(&app->model, block, head, dims, npts, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "layer-norm sketch");
    static const char *const stages[4] = {"circle", "gamma", "gamma+beta", "w_qk"};
    int ret;
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "stage,point,theta,x,y");
        for (int s = 0; s < 4; s++)
            for (size_t p = 0; p < npts; p++) {
                tb_csv_str(&tb, stages[s]);
                tb_csv_int(&tb, (long long)p);
                tb_csv_num(&tb, 2.0 * M_PI * (double)p / (double)npts);
                tb_csv_num(&tb, r.pts[((size_t)s * npts + p) * 2]);
                tb_csv_num(&tb, r.pts[((size_t)s * npts + p) * 2 + 1]);
                tb_csv_end(&tb);
            }
        ret = tb_respond(&tb, res, CSV_TYPE);
    } else {
        json_t *st = json_array();
        for (int s = 0; s < 4; s++) {
            json_t *pts = json_array();
            for (size_t p = 0; p < npts; p++)
                api_push(pts, json_pack("[o,o]", api_num(r.pts[((size_t)s * npts + p) * 2]),
                                        api_num(r.pts[((size_t)s * npts + p) * 2 + 1])));
            api_push(st, json_pack("{s:s,s:o}", "name", stages[s], "points", pts));
        }
        ret = api_json(
            res, 200,
            json_pack(
                "{s:i,s:i,s:[i,i],s:b,s:i,s:[o,o],s:[o,o],s:[[o,o],[o,o]],s:o,s:s}", "block", block, "head",
                head, "dims", dims[0], dims[1], "default_dims", !da->present, "points", (int)npts, "gamma",
                api_num(r.gamma[0]), api_num(r.gamma[1]), "beta", api_num(r.beta[0]), api_num(r.beta[1]),
                "w_qk", api_num(r.w2[0][0]), api_num(r.w2[0][1]), api_num(r.w2[1][0]), api_num(r.w2[1][1]),
                "stages", st, "definition",
                "coordinates (i, j) of block's ln_1: circle (cos t, sin t); gamma: (gamma_i cos t, gamma_j "
                "sin t); gamma+beta: plus (beta_i, beta_j); w_qk: that point times the 2 x 2 block "
                "[[W(i,i), W(i,j)], [W(j,i), W(j,j)]] of W_qk,h = Wq_h Wk_h^T / sqrt(dh)"));
    }
    lngeom_sketch_result_free(&r);
    return ret;
}

/* ---------- /selfcheck (docs/MATH.md §13) ---------- */

static json_t *diff_json(const selfcheck_diff *d)
{
    return json_pack("{s:o,s:o}", "max_abs_diff", api_num(d->max_abs), "max_rel_diff", api_num(d->max_rel));
}

static void csv_diff(textbuf *tb, int block, int head, const char *what, double abs, double rel, int has_rel)
{
    tb_csv_int(tb, block);
    if (head >= 0)
        tb_csv_int(tb, head);
    else
        tb_csv_empty(tb);
    tb_csv_str(tb, what);
    tb_csv_num(tb, abs);
    if (has_rel)
        tb_csv_num(tb, rel);
    else
        tb_csv_empty(tb);
    tb_csv_end(tb);
}

int api_selfcheck(twd_app *app, const api_args *a, api_response *res)
{
    const api_arg *text = api_arg_get(a, "text");
    const int block = opt_block(a);
    const uint64_t seed = (uint64_t)api_int(a, "seed");
    int32_t *ids = NULL;
    long n = api_encode_phrase(app, text, res, &ids);
    if (n < 0) return -1;
    gpt2_forward_opts o = {.att_select = block < 0 ? 0 : GPT2_ATT_BLOCK, .att_block = block < 0 ? 0 : block};
    gpt2_forward_result *fr = NULL;
    if (forward_ids(app, a, ids, n, o, res, &fr) != 0) return -1;
    selfcheck_result r;
    int rc = selfcheck(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, fr, seed, &r);
    if (rc != TW_OK) {
        gpt2_forward_free(fr);
        return api_status_error(res, rc, "self-check");
    }
    const size_t H = r.n_head;
    int ret;
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "block,head,quantity,max_abs_diff,max_rel_diff");
        for (size_t b = 0; b < r.n_blocks; b++) {
            int bl = r.block0 + (int)b;
            for (size_t h = 0; h < H; h++) {
                const selfcheck_head *s = &r.heads[b * H + h];
                csv_diff(&tb, bl, (int)h, "scores", s->scores.max_abs, s->scores.max_rel, 1);
                csv_diff(&tb, bl, (int)h, "patterns", s->patterns.max_abs, s->patterns.max_rel, 1);
                csv_diff(&tb, bl, (int)h, "outputs", s->outputs.max_abs, s->outputs.max_rel, 1);
                csv_diff(&tb, bl, (int)h, "bk_randomised_patterns", s->bk_pattern_diff, 0, 0);
                csv_diff(&tb, bl, (int)h, "bk_randomised_patterns_exact", s->bk_pattern_exact, 0, 0);
                csv_diff(&tb, bl, (int)h, "bk_randomised_score_shift", s->bk_score_shift, 0, 0);
                csv_diff(&tb, bl, (int)h, "bk_randomised_shift_spread", s->bk_shift_spread, 0, 0);
            }
            csv_diff(&tb, bl, -1, "total_output", r.total[b].max_abs, r.total[b].max_rel, 1);
        }
        ret = tb_respond(&tb, res, CSV_TYPE);
    } else {
        json_t *blocks = json_array();
        selfcheck_diff worst[3] = {{0, 0}, {0, 0}, {0, 0}};
        double worst_bk = 0.0;
        for (size_t b = 0; b < r.n_blocks; b++) {
            json_t *heads = json_array();
            for (size_t h = 0; h < H; h++) {
                const selfcheck_head *s = &r.heads[b * H + h];
                const selfcheck_diff *ds[3] = {&s->scores, &s->patterns, &s->outputs};
                for (int q = 0; q < 3; q++) {
                    worst[q].max_abs = fmax(worst[q].max_abs, ds[q]->max_abs);
                    worst[q].max_rel = fmax(worst[q].max_rel, ds[q]->max_rel);
                }
                worst_bk = fmax(worst_bk, s->bk_pattern_diff);
                api_push(heads,
                         json_pack("{s:i,s:o,s:o,s:o,s:{s:o,s:o,s:o,s:o,s:o}}", "head", (int)h, "scores",
                                   diff_json(&s->scores), "patterns", diff_json(&s->patterns), "outputs",
                                   diff_json(&s->outputs), "bk_randomised", "bk_norm", api_num(s->bk_norm),
                                   "pattern_max_abs_diff", api_num(s->bk_pattern_diff),
                                   "pattern_max_abs_diff_exact", api_num(s->bk_pattern_exact),
                                   "score_shift_max", api_num(s->bk_score_shift), "shift_spread",
                                   api_num(s->bk_shift_spread)));
            }
            api_push(blocks, json_pack("{s:i,s:o,s:o}", "block", r.block0 + (int)b, "heads", heads,
                                       "total_output", diff_json(&r.total[b])));
        }
        ret = api_json(
            res, 200,
            json_pack(
                "{s:s,s:s,s:i,s:o,s:I,s:o,s:{s:o,s:o,s:o,s:o},s:s}", "text", text->s, "gelu",
                gpt2_gelu_name(fr->gelu), "n_tokens", fr->n, "tokens",
                api_tokens_json(app->tok, fr->tokens, (size_t)fr->n), "seed", (json_int_t)seed, "blocks",
                blocks, "max", "scores", diff_json(&worst[0]), "patterns", diff_json(&worst[1]), "outputs",
                diff_json(&worst[2]), "bk_randomised_pattern_max_abs_diff", api_num(worst_bk), "definition",
                "per head, the attention rebuilt in double from W_qk,h = Wq_h Wk_h^T / sqrt(dh), W_vo,h = "
                "Wv_h Wo_h and the bias terms (x Wq bk^T + bq Wk^T y^T + bq bk^T) / sqrt(dh), compared with "
                "the forward pass (float32): max_abs_diff over the causal entries and max_rel_diff = "
                "max_abs_diff / max |factored value|; bk_randomised: b_k replaced by a seeded random vector "
                "of the same norm: the scores shift by one constant per query (x Wq r^T + bq r^T), so the "
                "patterns do not change (pattern_max_abs_diff: float kernels vs the forward's patterns)"));
    }
    selfcheck_result_free(&r);
    gpt2_forward_free(fr);
    return ret;
}
