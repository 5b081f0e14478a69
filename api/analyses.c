/* The paper's weight analyses as routes (docs/MATH.md §3-§6):
 *   /embeddings, /embeddings/normalization, /probe, /svd, /svd/bias.
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
#include "base/utf8.h"
#include "core/ana/embed_norms.h"
#include "core/ana/probe_svd.h"
#include "core/ana/probe_words.h"

static json_t *hit_json(const tokenizer *tok, const topk_hit *h)
{
    return api_scored_token_json(tok, h->id, "score", h->score);
}

static json_t *hits_json(const tokenizer *tok, const topk_hit *h, size_t k)
{
    json_t *a = json_array();
    for (size_t i = 0; i < k; i++) json_array_append_new(a, hit_json(tok, &h[i]));
    return a;
}

/* The token's text with invalid UTF-8 replaced (malloc'd). */
static char *token_text(const tokenizer *tok, int id)
{
    size_t n = 0;
    const uint8_t *b = tokenizer_token_bytes(tok, id, &n);
    return utf8_sanitize(b ? (const char *)b : "", b ? n : 0, NULL);
}

/* CSV cells: id, text, score. */
static void csv_hit(textbuf *b, const tokenizer *tok, const topk_hit *h)
{
    char *t = token_text(tok, h->id);
    tb_csv_int(b, h->id);
    tb_csv_str(b, t ? t : "");
    tb_csv_num(b, h->score);
    free(t);
}

static bool fmt_is(const api_args *a, const char *f)
{
    const char *v = api_str(a, "format");
    return v && strcmp(v, f) == 0;
}

static double real_or_zero(double v) { return isfinite(v) ? v : 0.0; }

/* ---------- /embeddings ---------- */

int api_embeddings(twd_app *app, const api_args *a, api_response *res)
{
    size_t k = (size_t)api_int(a, "k");
    const char *scheme = api_str(a, "scheme");
    embed_norms_result r;
    int rc = embed_norms(&app->model, &(ana_ctx){app->ext->cache, a->cancel}, k, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "embedding norms");
    textbuf tb;
    bool csv = fmt_is(a, "csv");
    if (csv) {
        tb_init(&tb);
        tb_printf(&tb, "scheme,list,rank,id,text,score\r\n");
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
                    csv_hit(&tb, app->tok, &(list ? r.bottom : r.top)[(size_t)s * k + i]);
                    tb_csv_end(&tb);
                }
            continue;
        }
        json_object_set_new(schemes, name,
                            json_pack("{s:o,s:o}", "top", hits_json(app->tok, r.top + (size_t)s * k, k),
                                      "bottom", hits_json(app->tok, r.bottom + (size_t)s * k, k)));
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

int api_embeddings_normalization(twd_app *app, const api_args *a, api_response *res)
{
    embed_normalization_result r;
    int rc = embed_normalization(&app->model, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "normalisation statistics");
    if (fmt_is(a, "csv")) {
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "matrix,l2_mean,l2_std,cos_mean,cos_std\r\n");
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
    for (int i = 0; i < 4; i++)
        json_array_append_new(rows,
                              json_pack("{s:s,s:f,s:f,s:f,s:f}", "matrix", embed_normalization_row_name(i),
                                        "l2_mean", r.rows[i].l2_mean, "l2_std", r.rows[i].l2_std, "cos_mean",
                                        r.rows[i].cos_mean, "cos_std", r.rows[i].cos_std));
    return api_json(
        res, 200,
        json_pack("{s:f,s:f,s:o,s:s}", "avg_norm", r.avg_norm, "scale", real_or_zero(r.scale), "rows", rows,
                  "definition",
                  "distances of E, E-c, sE, s(E-c) to LN_0(E) (c mean row, s = sqrt(d)/avg_norm); "
                  "mean and unbiased std over rows of the L2 and cosine distances"));
}

/* ---------- /probe ---------- */

int api_probe(twd_app *app, const api_args *a, api_response *res)
{
    int block = (int)api_int(a, "block");
    size_t k = (size_t)api_int(a, "k");
    const api_arg *w = api_arg_get(a, "words");
    char **words = w->present ? w->list : app->ext->default_words;
    size_t n_words = w->present ? w->n_list : app->ext->n_default_words;
    int chk = api_check_answer_size_for(
        app, a, res, (double)n_words * (2.0 * app->model.cfg.n_head + 1) * (double)k + n_words,
        "the number of words or k");
    if (chk) return chk < 0 ? -1 : 0;
    int32_t *ids = malloc((n_words ? n_words : 1) * sizeof *ids);
    size_t *which = malloc((n_words ? n_words : 1) * sizeof *which);
    if (!ids || !which) {
        free(ids);
        free(which);
        return api_status_error(res, TW_ENOMEM, "word probes");
    }
    json_t *skipped = json_array();
    size_t n = 0;
    for (size_t i = 0; i < n_words; i++) {
        int32_t *t = NULL;
        long nt = tokenizer_encode(app->tok, words[i], strlen(words[i]), &t);
        if (nt == 1 && t[0] < app->model.cfg.vocab_size) {
            ids[n] = t[0];
            which[n++] = i;
        } else if (nt == -2) {
            json_array_append_new(skipped, json_pack("{s:s,s:s}", "word", words[i], "reason",
                                                     "a character is not in the model's vocabulary"));
        } else {
            json_array_append_new(skipped, json_pack("{s:s,s:i}", "word", words[i], "n_tokens", (int)nt));
        }
        free(t);
    }
    probe_words_result r;
    int rc = probe_words(&app->model, &(ana_ctx){app->ext->cache, a->cancel}, block, ids, n, k, &r);
    free(ids);
    if (rc != TW_OK) {
        free(which);
        json_decref(skipped);
        return api_status_error(res, rc, "word probes");
    }
    size_t H = r.n_head;
    if (fmt_is(a, "csv")) {
        json_decref(skipped);
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "word,token_id,head,list,rank,id,text,score,norm\r\n");
        for (size_t i = 0; i < n; i++) {
            for (size_t h = 0; h <= H; h++) {
                for (int list = 0; list < 2; list++) {
                    if (h == H && list == 0) continue; /* the layer sum has values only */
                    const topk_hit *hits = h == H      ? r.layer_values + i * k
                                           : list == 0 ? r.keys + (i * H + h) * k
                                                       : r.values + (i * H + h) * k;
                    double norm = h == H ? r.layer_norm[i] : r.value_norm[i * H + h];
                    for (size_t j = 0; j < k; j++) {
                        tb_csv_str(&tb, words[which[i]]);
                        tb_csv_int(&tb, r.ids[i]);
                        if (h == H)
                            tb_csv_str(&tb, "layer");
                        else
                            tb_csv_int(&tb, (long long)h);
                        tb_csv_str(&tb, list == 0 ? "keys" : "values");
                        tb_csv_int(&tb, (long long)j + 1);
                        csv_hit(&tb, app->tok, &hits[j]);
                        if (list == 1)
                            tb_csv_num(&tb, norm);
                        else
                            tb_csv_str(&tb, "");
                        tb_csv_end(&tb);
                    }
                }
            }
        }
        probe_words_result_free(&r);
        free(which);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *out = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *heads = json_array();
        for (size_t h = 0; h < H; h++)
            json_array_append_new(heads, json_pack("{s:i,s:o,s:o,s:f}", "head", (int)h, "keys",
                                                   hits_json(app->tok, r.keys + (i * H + h) * k, k), "values",
                                                   hits_json(app->tok, r.values + (i * H + h) * k, k),
                                                   "value_norm", real_or_zero(r.value_norm[i * H + h])));
        json_array_append_new(out, json_pack("{s:s,s:o,s:o,s:{s:o,s:f}}", "word", words[which[i]], "token",
                                             api_token_json(app->tok, r.ids[i]), "heads", heads, "layer",
                                             "values", hits_json(app->tok, r.layer_values + i * k, k), "norm",
                                             real_or_zero(r.layer_norm[i])));
    }
    json_t *doc = json_pack("{s:i,s:i,s:i,s:b,s:o,s:o}", "block", block, "k", (int)k, "n_heads", (int)H,
                            "default_words", !w->present, "skipped", skipped, "words", out);
    probe_words_result_free(&r);
    free(which);
    return api_json(res, 200, doc);
}

/* ---------- /svd ---------- */

static json_t *svd_json(const tokenizer *tok, const probe_svd_result *r, size_t i)
{
    size_t dh = r->dh, top = r->top, k = r->k;
    json_t *sv = json_array(), *cov = json_array(), *dirs = json_array();
    for (size_t j = 0; j < dh; j++) {
        json_array_append_new(sv, json_real(real_or_zero(r->s[i * dh + j])));
        json_array_append_new(cov, json_real(real_or_zero(r->coverage[i * dh + j])));
    }
    for (size_t t = 0; t < top; t++)
        json_array_append_new(dirs, json_pack("{s:i,s:f,s:i,s:o,s:o}", "rank", (int)t, "s",
                                              real_or_zero(r->s[i * dh + t]), "sign", r->sign[i * top + t],
                                              "left", hits_json(tok, r->left + (i * top + t) * k, k), "right",
                                              hits_json(tok, r->right + (i * top + t) * k, k)));
    return json_pack("{s:o,s:o,s:f,s:o}", "singular_values", sv, "coverage", cov, "frac99",
                     real_or_zero(r->frac99[i]), "directions", dirs);
}

static void svd_csv(textbuf *tb, const tokenizer *tok, const probe_svd_result *r)
{
    const char *mname = probe_svd_matrix_name(r->matrix);
    for (size_t i = 0; i < r->n_heads; i++)
        for (size_t t = 0; t < r->top; t++)
            for (int side = 0; side < 2; side++)
                for (size_t j = 0; j < r->k; j++) {
                    tb_csv_int(tb, r->first_head + (long long)i);
                    tb_csv_str(tb, mname);
                    tb_csv_int(tb, (long long)t);
                    tb_csv_num(tb, r->s[i * r->dh + t]);
                    tb_csv_str(tb, side ? "right" : "left");
                    tb_csv_int(tb, (long long)j + 1);
                    csv_hit(tb, tok, &(side ? r->right : r->left)[(i * r->top + t) * r->k + j]);
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
            tb_printf(tb, "%zu", t);
            for (int side = 0; side < 2; side++) {
                tb_printf(tb, " & ");
                for (size_t j = 0; j < shown; j++) {
                    char *s = token_text(tok, (side ? r->right : r->left)[(i * r->top + t) * r->k + j].id);
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
    const char *fmt = api_str(a, "format");
    double heads = head >= 0 ? 1 : app->model.cfg.n_head;
    int chk = api_check_answer_size_for(app, a, res, heads * 2 * (double)top * 2 * (double)k,
                                        "top, k, or ask for one head");
    if (chk) return chk < 0 ? -1 : 0;
    probe_svd_result r[2];
    int mats[2], nm = 0;
    if (strcmp(matrix, "vo") != 0) mats[nm++] = PROBE_SVD_QK;
    if (strcmp(matrix, "qk") != 0) mats[nm++] = PROBE_SVD_VO;
    /* both matrices' queries share the GEMM passes over LN_b(E) and E */
    int rc = probe_svd_multi(&app->model, &(ana_ctx){app->ext->cache, a->cancel}, block, mats, (size_t)nm,
                             head, top, k, r);
    if (rc != TW_OK) return api_status_error(res, rc, "SVD");
    int ret;
    if (strcmp(fmt, "json") != 0) {
        textbuf tb;
        tb_init(&tb);
        if (strcmp(fmt, "csv") == 0)
            tb_printf(&tb, "head,matrix,rank,s,side,pos,id,text,score\r\n");
        else
            tb_printf(&tb, "%% twd: SVD of W_qk / W_vo, %s, block %d (sign-aligned as the paper)\n\n",
                      app->model_name, block);
        for (int i = 0; i < nm; i++) {
            if (strcmp(fmt, "csv") == 0)
                svd_csv(&tb, app->tok, &r[i]);
            else
                svd_latex(&tb, app->tok, &r[i]);
        }
        ret = tb_respond(&tb, res, strcmp(fmt, "csv") == 0 ? CSV_TYPE : "application/x-latex; charset=utf-8");
    } else {
        json_t *heads = json_array();
        for (size_t i = 0; i < r[0].n_heads; i++) {
            json_t *h = json_pack("{s:i}", "head", r[0].first_head + (int)i);
            for (int m = 0; m < nm; m++)
                json_object_set_new(h, probe_svd_matrix_name(mats[m]), svd_json(app->tok, &r[m], i));
            json_array_append_new(heads, h);
        }
        ret = api_json(res, 200,
                       json_pack("{s:i,s:s,s:i,s:i,s:i,s:o}", "block", block, "matrix", matrix, "top",
                                 (int)top, "k", (int)k, "dh", (int)dh, "heads", heads));
    }
    for (int i = 0; i < nm; i++) probe_svd_result_free(&r[i]);
    return ret;
}

int api_svd_bias(twd_app *app, const api_args *a, api_response *res)
{
    int block = (int)api_int(a, "block");
    size_t k = (size_t)api_int(a, "k");
    int chk =
        api_check_answer_size_for(app, a, res, (double)app->model.cfg.n_head * PROBE_BIAS_N * (double)k, "k");
    if (chk) return chk < 0 ? -1 : 0;
    probe_bias_result r;
    int rc = probe_svd_bias(&app->model, &(ana_ctx){app->ext->cache, a->cancel}, block, k, &r);
    if (rc != TW_OK) return api_status_error(res, rc, "bias probes");
    if (fmt_is(a, "csv")) {
        textbuf tb;
        tb_init(&tb);
        tb_printf(&tb, "head,probe,rank,id,text,score\r\n");
        for (size_t h = 0; h < r.n_head; h++)
            for (int l = 0; l < PROBE_BIAS_N; l++)
                for (size_t j = 0; j < k; j++) {
                    tb_csv_int(&tb, (long long)h);
                    tb_csv_str(&tb, probe_bias_name(l));
                    tb_csv_int(&tb, (long long)j + 1);
                    csv_hit(&tb, app->tok, &r.hits[(h * PROBE_BIAS_N + (size_t)l) * k + j]);
                    tb_csv_end(&tb);
                }
        probe_bias_result_free(&r);
        return tb_respond(&tb, res, CSV_TYPE);
    }
    json_t *heads = json_array();
    for (size_t h = 0; h < r.n_head; h++) {
        json_t *o = json_pack("{s:i}", "head", (int)h);
        for (int l = 0; l < PROBE_BIAS_N; l++)
            json_object_set_new(o, probe_bias_name(l),
                                hits_json(app->tok, r.hits + (h * PROBE_BIAS_N + (size_t)l) * k, k));
        json_array_append_new(heads, o);
    }
    probe_bias_result_free(&r);
    return api_json(
        res, 200,
        json_pack("{s:i,s:i,s:o,s:s}", "block", block, "k", (int)k, "heads", heads, "definition",
                  "a = Wq_h bk_h (query direction the key bias rewards), c = Wk_h bq_h (key direction the "
                  "query bias rewards); top-k of a, -a, c, -c against LN_b(E)"));
}
