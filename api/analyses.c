/* The paper's weight analyses as routes (docs/MATH.md §3-§6):
 *   /embeddings, /embeddings/scores, /embeddings/normalization, /probe, /svd,
 *   /svd/bias.
 * Parameters are validated by the router before these run; the core
 * functions compute, this file only shapes answers (JSON, CSV, LaTeX). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ext.h"
#include "api/format.h"
#include "api/handlers.h"
#include "api/json.h"
#include "base/utf8.h"
#include "core/ana/embed_norms.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"

/* ---------- /embeddings ---------- */

int api_embeddings(twd_app *app, const api_args *a, api_response *res)
{
    size_t k = (size_t)api_int(a, "k");
    const char *scheme = api_str(a, "scheme");
    embed_norms_result r;
    int rc = embed_norms(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, k, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "embedding norms");
    textbuf tb;
    bool csv = api_format_is(a, "csv");
    if (csv) {
        tb_init_csv(&tb, "scheme,list,rank,id,text,score");
    }
    json_t *schemes = json_object();
    for (int s = 0; s < EMBED_N_SCHEMES; s++) {
        const char *name = embed_scheme_name(s);
        if (strcmp(scheme, "all") != 0 && strcmp(scheme, name) != 0) continue;
        if (csv) {
            for (int list = 0; list < 2; list++)
                for (size_t i = 0; i < k; i++) {
                    tb_csv_str(&tb, name);
                    tb_csv_str(&tb, list ? "bottom" : "top");
                    tb_csv_int(&tb, (long long)i + 1);
                    tb_csv_hit(&tb, app->tok, &(list ? r.bottom : r.top)[(size_t)s * k + i]);
                    tb_csv_end(&tb);
                }
            continue;
        }
        api_put(schemes, name,
                json_pack("{s:o,s:o}", "top", api_hits_json(app->tok, r.top + (size_t)s * k, k), "bottom",
                          api_hits_json(app->tok, r.bottom + (size_t)s * k, k)));
    }
    embed_norms_result_free(&r);
    if (csv) {
        json_decref(schemes);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    return api_json(res, 200,
                    json_pack("{s:i,s:s,s:o,s:s}", "k", (int)k, "scheme", scheme, "schemes", schemes,
                              "definition",
                              "norm ||E_i||; scaled ||gamma*E_i||; bias ||E_i|| + beta.E_i; scaled_bias "
                              "||gamma*E_i|| + beta.E_i; gamma, beta of ln_f"));
}

/* Every token's four scores (docs/MATH.md §16): the score vectors of
 * /embeddings, whole. JSON and CSV carry the tokens; npy only the scores,
 * float64 (V, 4) in the CSV's column order. */
int api_embeddings_scores(twd_app *app, const api_args *a, api_response *res)
{
    size_t V = (size_t)app->model.cfg.vocab_size;
    bool npy = api_format_is(a, "npy"), csv = api_format_is(a, "csv");
    if (!npy &&
        api_check_answer_size(app, res, (double)V, "it: format=npy gives the scores without the tokens") != 0)
        return -1;
    double *sc = malloc(EMBED_N_SCHEMES * V * sizeof *sc); /* (scheme, V) */
    if (!sc) return api_status_error(res, TW_ENOMEM, "embedding scores");
    int rc = embed_scores(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, sc);
    if (rc != TW_OK) {
        free(sc);
        return api_status_error(res, rc, "embedding scores");
    }
    int ret;
    if (npy) {
        double *rows = malloc(EMBED_N_SCHEMES * V * sizeof *rows); /* (V, scheme) */
        if (!rows) {
            free(sc);
            return api_status_error(res, TW_ENOMEM, "the npy answer");
        }
        for (size_t i = 0; i < V; i++)
            for (size_t s = 0; s < EMBED_N_SCHEMES; s++) rows[i * EMBED_N_SCHEMES + s] = sc[s * V + i];
        size_t shape[2] = {V, EMBED_N_SCHEMES};
        ret = api_npy_respond(res, "<f8", shape, 2, rows, EMBED_N_SCHEMES * V * sizeof *rows);
        free(rows);
    } else if (csv) {
        textbuf tb;
        tb_init_csv(&tb, "id,text,norm,scaled,bias,scaled_bias");
        for (size_t i = 0; i < V; i++) {
            tb_csv_token(&tb, app->tok, (int)i);
            for (size_t s = 0; s < EMBED_N_SCHEMES; s++) tb_csv_num(&tb, sc[s * V + i]);
            tb_csv_end(&tb);
        }
        ret = tb_respond(&tb, res, CSV_TYPE);
    } else {
        json_t *tokens = json_array(), *scores = json_object();
        for (size_t i = 0; i < V; i++) api_push(tokens, api_token_json(app->tok, (int)i));
        for (int s = 0; s < EMBED_N_SCHEMES; s++) {
            json_t *v = json_array();
            for (size_t i = 0; i < V; i++) api_push(v, api_num(sc[(size_t)s * V + i]));
            api_put(scores, embed_scheme_name(s), v);
        }
        ret = api_json(res, 200,
                       json_pack("{s:i,s:o,s:o,s:s}", "n_tokens", (int)V, "tokens", tokens, "scores", scores,
                                 "definition",
                                 "scores[scheme][i] of token i = tokens[i]: norm ||E_i||; scaled "
                                 "||gamma*E_i||; bias ||E_i|| + beta.E_i; scaled_bias ||gamma*E_i|| + "
                                 "beta.E_i; gamma, beta of ln_f"));
    }
    free(sc);
    return ret;
}

int api_embeddings_normalization(twd_app *app, const api_args *a, api_response *res)
{
    embed_normalization_result r;
    int rc = embed_normalization(&app->model, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "normalisation statistics");
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "matrix,l2_mean,l2_std,cos_mean,cos_std");
        for (int i = 0; i < 4; i++) {
            tb_csv_str(&tb, embed_normalization_row_name(i));
            tb_csv_num(&tb, r.rows[i].l2_mean);
            tb_csv_num(&tb, r.rows[i].l2_std);
            tb_csv_num(&tb, r.rows[i].cos_mean);
            tb_csv_num(&tb, r.rows[i].cos_std);
            tb_csv_end(&tb);
        }
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *rows = json_array();
    for (int i = 0; i < 4; i++) {
        json_t *o = json_pack("{s:s}", "matrix", embed_normalization_row_name(i));
        api_put(o, "l2_mean", api_num(r.rows[i].l2_mean));
        api_put(o, "l2_std", api_num(r.rows[i].l2_std));
        api_put(o, "cos_mean", api_num(r.rows[i].cos_mean));
        api_put(o, "cos_std", api_num(r.rows[i].cos_std));
        api_push(rows, o);
    }
    json_t *doc = json_object();
    api_put(doc, "avg_norm", api_num(r.avg_norm));
    /* all-zero embeddings have no scale: null, not a made-up number */
    api_put(doc, "scale", isfinite(r.scale) ? api_num(r.scale) : json_null());
    api_put(doc, "rows", rows);
    api_put(doc, "definition",
            json_string("distances of E, E-c, sE, s(E-c) to LN_0(E) (c mean row, s = sqrt(d)/avg_norm); "
                        "mean and unbiased std over rows of the L2 and cosine distances"));
    return api_json(res, 200, doc);
}

/* ---------- /probe ---------- */

/* The probe words that are one token of the model (ids[], and in which[]
 * their place in words[]); the others go to *skipped with why and their
 * token split. With `space`, each word is encoded as " word", as it appears
 * inside a sentence. Returns the count, or -1 with *res set. */
static long probe_encode(twd_app *app, char **words, size_t n_words, bool space, int32_t *ids, size_t *which,
                         json_t *skipped, api_response *res)
{
    size_t n = 0;
    for (size_t i = 0; i < n_words; i++) {
        size_t wl = strlen(words[i]);
        char *w = malloc(wl + 2);
        if (!w) return api_status_error(res, TW_ENOMEM, "word probes");
        w[0] = ' ';
        memcpy(w + 1, words[i], wl + 1);
        int32_t *t = NULL;
        long nt = tokenizer_encode(app->tok, space ? w : w + 1, space ? wl + 1 : wl, &t);
        free(w);
        if (nt == -1) return api_status_error(res, TW_ENOMEM, "word probes");
        if (nt == 1 && t[0] < app->model.cfg.vocab_size) {
            ids[n] = t[0];
            which[n++] = i;
            free(t);
            continue;
        }
        const char *why = nt == -2  ? "a character is not in the model's vocabulary"
                          : nt == 0 ? "encodes to no tokens"
                          : nt == 1 ? "its token is outside the model's embedding rows"
                                    : "encodes to more than one token";
        json_t *split = api_tokens_json(app->tok, t, nt > 0 ? (size_t)nt : 0);
        free(t);
        api_push(skipped, json_pack("{s:s,s:s,s:o}", "word", words[i], "reason", why, "tokens", split));
    }
    return (long)n;
}

/* CSV of the probes: one row per word, head (or the layer sum), list and
 * rank; the skipped words as rows of kind "skipped", one per token of
 * their split (rank: the token's place in it). */
static int probe_csv(twd_app *app, const probe_words_result *r, char **words, const size_t *which,
                     const json_t *skipped, api_response *res)
{
    size_t H = r->n_head, k = r->k;
    textbuf tb;
    tb_init_csv(&tb, "block,word,token_id,kind,head,list,rank,id,text,score,norm");
    for (size_t i = 0; i < r->n_words; i++)
        for (size_t h = 0; h <= H; h++)
            for (int list = h == H ? 1 : 0; list < 2; list++) { /* the layer sum has values only */
                const topk_hit *hits = h == H      ? r->layer_values + i * k
                                       : list == 0 ? r->keys + (i * H + h) * k
                                                   : r->values + (i * H + h) * k;
                for (size_t j = 0; j < k; j++) {
                    tb_csv_int(&tb, r->block);
                    tb_csv_str(&tb, words[which[i]]);
                    tb_csv_int(&tb, r->ids[i]);
                    tb_csv_str(&tb, h == H ? "layer" : "head");
                    if (h == H)
                        tb_csv_empty(&tb);
                    else
                        tb_csv_int(&tb, (long long)h);
                    tb_csv_str(&tb, list == 0 ? "keys" : "values");
                    tb_csv_int(&tb, (long long)j + 1);
                    tb_csv_hit(&tb, app->tok, &hits[j]);
                    if (list == 0)
                        tb_csv_empty(&tb);
                    else
                        tb_csv_num(&tb, h == H ? r->layer_norm[i] : r->value_norm[i * H + h]);
                    tb_csv_end(&tb);
                }
            }
    size_t si;
    json_t *sk;
    json_array_foreach(skipped, si, sk)
    {
        size_t ti;
        json_t *t;
        json_array_foreach(json_object_get(sk, "tokens"), ti, t)
        {
            tb_csv_int(&tb, r->block);
            tb_csv_str(&tb, json_string_value(json_object_get(sk, "word")));
            tb_csv_empty(&tb);
            tb_csv_str(&tb, "skipped");
            tb_csv_empty(&tb);
            tb_csv_empty(&tb);
            tb_csv_int(&tb, (long long)ti + 1);
            tb_csv_token(&tb, app->tok, (int)json_integer_value(json_object_get(t, "id")));
            tb_csv_empty(&tb);
            tb_csv_empty(&tb);
            tb_csv_end(&tb);
        }
    }
    return tb_respond(&tb, res, CSV_TYPE);
}

static json_t *probe_json(twd_app *app, const probe_words_result *r, char **words, const size_t *which)
{
    size_t H = r->n_head, k = r->k;
    json_t *out = json_array();
    for (size_t i = 0; i < r->n_words; i++) {
        json_t *heads = json_array();
        for (size_t h = 0; h < H; h++) {
            json_t *o = json_pack("{s:i,s:o,s:o}", "head", (int)h, "keys",
                                  api_hits_json(app->tok, r->keys + (i * H + h) * k, k), "values",
                                  api_hits_json(app->tok, r->values + (i * H + h) * k, k));
            api_put(o, "norm", api_num(r->value_norm[i * H + h]));
            api_push(heads, o);
        }
        json_t *layer = json_pack("{s:o}", "values", api_hits_json(app->tok, r->layer_values + i * k, k));
        api_put(layer, "norm", api_num(r->layer_norm[i]));
        api_push(out, json_pack("{s:s,s:o,s:o,s:o}", "word", words[which[i]], "token",
                                api_token_json(app->tok, r->ids[i]), "heads", heads, "layer", layer));
    }
    return out;
}

int api_probe(twd_app *app, const api_args *a, api_response *res)
{
    int block = (int)api_int(a, "block");
    size_t k = (size_t)api_int(a, "k");
    bool space = api_int(a, "leading_space") != 0;
    const api_arg *w = api_arg_get(a, "words");
    char **words = w->present ? w->list : app->ext->default_words;
    size_t n_words = w->present ? w->n_list : app->ext->n_default_words;
    int chk = api_check_answer_size_for(
        app, a, res, (double)n_words * (2.0 * app->model.cfg.n_head + 1) * (double)k + n_words,
        "the number of words or k");
    if (chk) return chk < 0 ? -1 : 0;
    int32_t *ids = malloc((n_words ? n_words : 1) * sizeof *ids);
    size_t *which = malloc((n_words ? n_words : 1) * sizeof *which);
    json_t *skipped = json_array();
    probe_words_result r = {0};
    int ret = -1;
    long n = ids && which ? probe_encode(app, words, n_words, space, ids, which, skipped, res)
                          : api_status_error(res, TW_ENOMEM, "word probes");
    if (n < 0) goto done;
    int rc = probe_words(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, block, ids,
                         (size_t)n, k, &r);
    if (rc != TW_OK) {
        ret = api_status_error(res, rc, "word probes");
        goto done;
    }
    if (api_format_is(a, "csv")) {
        ret = probe_csv(app, &r, words, which, skipped, res);
        goto done;
    }
    json_t *doc = json_pack("{s:i,s:i,s:i,s:b,s:b,s:O,s:o}", "block", block, "k", (int)k, "n_heads",
                            (int)r.n_head, "leading_space", space, "default_words", !w->present, "skipped",
                            skipped, "words", probe_json(app, &r, words, which));
    ret = api_json(res, 200, doc);
done:
    probe_words_result_free(&r);
    json_decref(skipped);
    free(ids);
    free(which);
    return ret;
}

/* ---------- /svd ---------- */

static json_t *svd_json(const tokenizer *tok, const probe_svd_result *r, size_t i)
{
    size_t dh = r->dh, top = r->top, k = r->k;
    json_t *sv = json_array(), *cov = json_array(), *dirs = json_array();
    for (size_t j = 0; j < dh; j++) {
        api_push(sv, api_num(r->s[i * dh + j]));
        api_push(cov, api_num(r->coverage[i * dh + j]));
    }
    for (size_t t = 0; t < top; t++) {
        json_t *d = json_pack("{s:i}", "rank", (int)t + 1);
        api_put(d, "singular_value", api_num(r->s[i * dh + t]));
        api_put(d, "sign", json_integer(r->sign[i * top + t]));
        api_put(d, "left", api_hits_json(tok, r->left + (i * top + t) * k, k));
        api_put(d, "right", api_hits_json(tok, r->right + (i * top + t) * k, k));
        api_push(dirs, d);
    }
    json_t *o = json_pack("{s:o,s:o}", "singular_values", sv, "coverage", cov);
    api_put(o, "frac99", api_num(r->frac99[i]));
    api_put(o, "directions", dirs);
    return o;
}

/* The columns both SVD tables start with: block, matrix, head, direction
 * (1-based) and its singular value. */
static void svd_csv_direction(textbuf *tb, const probe_svd_result *r, const char *mname, size_t i, size_t t)
{
    tb_csv_int(tb, r->block);
    tb_csv_str(tb, mname);
    tb_csv_int(tb, r->first_head + (long long)i);
    tb_csv_int(tb, (long long)t + 1);
    tb_csv_num(tb, r->s[i * r->dh + t]);
}

/* The directions table: one row per head, matrix, direction, side and
 * token rank. */
static void svd_csv_directions(textbuf *tb, const tokenizer *tok, const probe_svd_result *r)
{
    const char *mname = probe_svd_matrix_name(r->matrix);
    for (size_t i = 0; i < r->n_heads; i++)
        for (size_t t = 0; t < r->top; t++)
            for (int side = 0; side < 2; side++)
                for (size_t j = 0; j < r->k; j++) {
                    svd_csv_direction(tb, r, mname, i, t);
                    tb_csv_int(tb, r->sign[i * r->top + t]);
                    tb_csv_str(tb, side ? "right" : "left");
                    tb_csv_int(tb, (long long)j + 1);
                    tb_csv_hit(tb, tok, &(side ? r->right : r->left)[(i * r->top + t) * r->k + j]);
                    tb_csv_end(tb);
                }
}

/* The spectra table: one row per head, matrix and singular value. */
static void svd_csv_spectra(textbuf *tb, const probe_svd_result *r)
{
    const char *mname = probe_svd_matrix_name(r->matrix);
    for (size_t i = 0; i < r->n_heads; i++)
        for (size_t t = 0; t < r->dh; t++) {
            svd_csv_direction(tb, r, mname, i, t);
            tb_csv_num(tb, r->coverage[i * r->dh + t]);
            tb_csv_end(tb);
        }
}

/* One paper-style table per head and matrix: rank, top-3 left and right words. */
static void svd_latex(textbuf *tb, const tokenizer *tok, const probe_svd_result *r)
{
    size_t shown = r->k < 3 ? r->k : 3;
    for (size_t i = 0; i < r->n_heads; i++) {
        tb_printf(tb, "%% block %d, head %zu, W_%s\n", r->block, r->first_head + i,
                  probe_svd_matrix_name(r->matrix));
        tb_printf(tb,
                  "\\begin{table}[h]\n\\centering\n\\begin{tabular}{r l l}\n\\hline\n"
                  "Rank & Left (top %zu) & Right (top %zu) \\\\\n\\hline\n",
                  shown, shown);
        for (size_t t = 0; t < r->top; t++) {
            tb_printf(tb, "%zu", t + 1);
            for (int side = 0; side < 2; side++) {
                tb_printf(tb, " & ");
                for (size_t j = 0; j < shown; j++) {
                    char *s =
                        api_token_text(tok, (side ? r->right : r->left)[(i * r->top + t) * r->k + j].id);
                    if (j) tb_printf(tb, ", ");
                    tb_printf(tb, "\\texttt{");
                    tb_latex(tb, s ? s : "");
                    tb_printf(tb, "}");
                    free(s);
                }
            }
            tb_printf(tb, " \\\\\n");
        }
        tb_printf(tb,
                  "\\hline\n\\end{tabular}\n\\caption{Block %d, head %zu: singular directions of "
                  "$W_{%s}$}\n\\end{table}\n\n",
                  r->block, r->first_head + i, r->matrix == PROBE_SVD_QK ? "qk" : "vo");
    }
}

int api_svd(twd_app *app, const api_args *a, api_response *res)
{
    int block = (int)api_int(a, "block");
    const char *matrix = api_str(a, "matrix");
    size_t top = (size_t)api_int(a, "top"), k = (size_t)api_int(a, "k");
    const api_arg *ha = api_arg_get(a, "head");
    int head = ha->present ? (int)ha->i : -1;
    size_t dh = (size_t)(app->model.cfg.n_embd / app->model.cfg.n_head);
    const char *fmt = api_str(a, "format"), *table = api_str(a, "table");
    bool spectra = table ? strcmp(table, "spectra") == 0 : top == 0;
    double heads = head >= 0 ? 1 : app->model.cfg.n_head;
    int chk = api_check_answer_size_for(app, a, res, heads * 2 * (double)top * 2 * (double)k,
                                        "top, k, or ask for one head");
    if (chk) return chk < 0 ? -1 : 0;
    probe_svd_result r[2];
    int mats[2], nm = 0;
    if (strcmp(matrix, "vo") != 0) mats[nm++] = PROBE_SVD_QK;
    if (strcmp(matrix, "qk") != 0) mats[nm++] = PROBE_SVD_VO;
    /* both matrices' queries share the GEMM passes over LN_b(E) and E */
    int rc = probe_svd_multi(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel}, block,
                             mats, (size_t)nm, head, top, k, r);
    if (rc != TW_OK) return api_status_error(res, rc, "SVD");
    int ret;
    if (strcmp(fmt, "csv") == 0) {
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, spectra
                           ? "block,matrix,head,rank,singular_value,coverage\r\n"
                           : "block,matrix,head,direction,singular_value,sign,side,rank,id,text,score\r\n");
        for (int i = 0; i < nm; i++) {
            if (spectra)
                svd_csv_spectra(&tb, &r[i]);
            else
                svd_csv_directions(&tb, app->tok, &r[i]);
        }
        ret = tb_respond(&tb, res, CSV_TYPE);
    } else if (strcmp(fmt, "latex") == 0) {
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "%% twd: SVD of W_qk / W_vo, %s, block %d (sign-aligned as the paper)\n\n",
                  app->model_name, block);
        for (int i = 0; i < nm; i++) svd_latex(&tb, app->tok, &r[i]);
        ret = tb_respond(&tb, res, LATEX_TYPE);
    } else {
        json_t *heads = json_array();
        for (size_t i = 0; i < r[0].n_heads; i++) {
            json_t *h = json_pack("{s:i}", "head", r[0].first_head + (int)i);
            for (int m = 0; m < nm; m++)
                api_put(h, probe_svd_matrix_name(mats[m]), svd_json(app->tok, &r[m], i));
            api_push(heads, h);
        }
        ret = api_json(res, 200,
                       json_pack("{s:i,s:s,s:i,s:i,s:i,s:o}", "block", block, "matrix", matrix, "top",
                                 (int)top, "k", (int)k, "dh", (int)dh, "heads", heads));
    }
    for (int i = 0; i < nm; i++) probe_svd_result_free(&r[i]);
    return ret;
}

/* Why the a lists never change a pattern (docs/MATH.md §6.2; /selfcheck shows it on the weights). */
#define SVD_BIAS_NOTE                                                                                        \
    "x Wq bk^T = x.a is the same for every key of a query, so it cancels in the softmax and never changes "  \
    "the attention pattern; only c (bq Wk^T y^T) does"

int api_svd_bias(twd_app *app, const api_args *a, api_response *res)
{
    int block = (int)api_int(a, "block");
    size_t k = (size_t)api_int(a, "k");
    int chk =
        api_check_answer_size_for(app, a, res, (double)app->model.cfg.n_head * PROBE_BIAS_N * (double)k, "k");
    if (chk) return chk < 0 ? -1 : 0;
    probe_bias_result r;
    int rc = probe_svd_bias_sweep(&app->model, &(ana_ctx){.cache = app->ext->cache, .cancel = a->cancel},
                                  block, (int)a->sweep_last, k, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "bias probes");
    if (api_format_is(a, "csv")) {
        textbuf tb;
        tb_init_csv(&tb, "block,head,probe,rank,id,text,score");
        for (size_t h = 0; h < r.n_head; h++)
            for (int l = 0; l < PROBE_BIAS_N; l++)
                for (size_t j = 0; j < k; j++) {
                    tb_csv_int(&tb, block);
                    tb_csv_int(&tb, (long long)h);
                    tb_csv_str(&tb, probe_bias_name(l));
                    tb_csv_int(&tb, (long long)j + 1);
                    tb_csv_hit(&tb, app->tok, &r.hits[(h * PROBE_BIAS_N + (size_t)l) * k + j]);
                    tb_csv_end(&tb);
                }
        probe_bias_result_free(&r);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *heads = json_array();
    for (size_t h = 0; h < r.n_head; h++) {
        json_t *o = json_pack("{s:i}", "head", (int)h);
        for (int l = 0; l < PROBE_BIAS_N; l++)
            api_put(o, probe_bias_name(l),
                    api_hits_json(app->tok, r.hits + (h * PROBE_BIAS_N + (size_t)l) * k, k));
        api_push(heads, o);
    }
    probe_bias_result_free(&r);
    return api_json(
        res, 200,
        json_pack("{s:i,s:i,s:o,s:s,s:s}", "block", block, "k", (int)k, "heads", heads, "definition",
                  "a = Wq_h bk_h (query direction the key bias rewards), c = Wk_h bq_h (key direction the "
                  "query bias rewards); top-k of a, -a, c, -c against LN_b(E)",
                  "note", SVD_BIAS_NOTE));
}
