/* Trajectory statistics over many texts: see traj_stats.h and
 * docs/MATH.md §14. */
#include "core/ana/traj_stats.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/scratch.h"
#include "core/ana/lens.h"
#include "core/nn/topk.h"

void ts_state_name(size_t s, char *out, size_t outlen)
{
    static const char *const inputs[3] = {"embedding", "embedding+position", "embedding+position, ln_f"};
    if (s < 3)
        snprintf(out, outlen, "%s", inputs[s]);
    else
        snprintf(out, outlen, "block %zu", s - 3);
}

const char *ts_bucket_name(ts_bucket b)
{
    static const char *const names[TS_N_BUCKETS] = {"all", "first", "early", "late"};
    return (unsigned)b < TS_N_BUCKETS ? names[b] : "?";
}

const char *ts_stat_name(ts_stat s)
{
    static const char *const names[TS_N_STATS] = {"cos_next", "cos_self", "cos_final", "rank_next",
                                                  "prob_next"};
    return (unsigned)s < TS_N_STATS ? names[s] : "?";
}

/* ---- Student's t ---- */

/* The continued fraction of the regularised incomplete beta function
 * I_x(a, b) (modified Lentz), for x < (a + 1) / (a + b + 2). */
static double beta_cf(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double f = d;
    for (int m = 1; m <= 1000; m++) {
        /* even step d_{2m}, then odd step d_{2m+1} */
        double num = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 + num * d;
        c = 1.0 + num / c;
        if (fabs(d) < tiny) d = tiny;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        f *= d * c;
        num = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 + num * d;
        c = 1.0 + num / c;
        if (fabs(d) < tiny) d = tiny;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double step = d * c;
        f *= step;
        if (fabs(step - 1.0) < 1e-15) break;
    }
    return f;
}

/* I_x(a, b), x in [0, 1]. */
static double beta_inc(double a, double b, double x)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    double lfront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(lfront) * beta_cf(a, b, x) / a;
    return 1.0 - exp(lfront) * beta_cf(b, a, 1.0 - x) / b;
}

double ts_student_t_cdf(double x, double nu)
{
    if (isnan(x) || !(nu > 0)) return NAN;
    if (isinf(x)) return x > 0 ? 1.0 : 0.0;
    double tail = 0.5 * beta_inc(0.5 * nu, 0.5, nu / (nu + x * x)); /* P(T > |x|) */
    return x >= 0 ? 1.0 - tail : tail;
}

double ts_student_t_quantile(double p, double nu)
{
    if (!(p > 0 && p < 1) || !(nu > 0)) return NAN;
    if (p == 0.5) return 0.0;
    if (p < 0.5) return -ts_student_t_quantile(1.0 - p, nu);
    double lo = 0.0, hi = 1.0;
    while (ts_student_t_cdf(hi, nu) < p && hi < 1e300) hi *= 2.0;
    for (int i = 0; i < 2000 && hi - lo > 1e-13 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (ts_student_t_cdf(mid, nu) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

ts_summary ts_summarise(const double *v, size_t n)
{
    ts_summary s = {.n = n, .mean = NAN, .std = NAN, .ci_low = NAN, .ci_high = NAN};
    if (n == 0) return s;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += v[i];
    s.mean = sum / (double)n;
    if (n < 2) return s;
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (v[i] - s.mean) * (v[i] - s.mean);
    s.std = sqrt(ss / (double)(n - 1));
    double half = ts_student_t_quantile(0.975, (double)(n - 1)) * s.std / sqrt((double)n);
    s.ci_low = s.mean - half;
    s.ci_high = s.mean + half;
    return s;
}

/* ---- The statistics ---- */

void traj_stats_result_free(traj_stats_result *r) { TW_FREE_FIELDS(r, r->cells, r->t, r->rank, r->values); }

static double cosine(const float *a, const float *b, size_t d)
{
    double ab = topk_dot(a, b, d), aa = topk_dot(a, a, d), bb = topk_dot(b, b, d);
    double den = sqrt(aa) * sqrt(bb);
    return den > 0 ? ab / den : 0.0;
}

/* The chunk of state rows waiting for the logit lens. */
typedef struct {
    float *q;      /* (TS_CHUNK_ROWS, d) */
    int32_t *tgt;  /* next token of each row */
    size_t *slot;  /* s * n_positions + p of each row */
    int32_t *rank; /* results of one chunk */
    double *lse, *score;
    size_t n;
} chunk;

static int flush_chunk(const gpt2_model *m, float R, chunk *c, traj_stats_result *r, const ana_ctx *x,
                       long long *done)
{
    if (c->n == 0) return TW_OK;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd, P = r->n_positions;
    lens_opts o = {.n_targets = 1,
                   .targets = c->tgt,
                   .max_row_norm = R,
                   .cancel = ana_cancel(x),
                   .progress = ana_progress(x),
                   .progress_done0 = *done};
    lens_out lo = {.lse = c->lse, .rank = c->rank, .score = c->score};
    int rc = lens_rows(m->p.wte, V, d, c->q, c->n, &o, &lo);
    if (rc != TW_OK) return rc;
    for (size_t i = 0; i < c->n; i++) {
        size_t sl = c->slot[i];
        r->rank[sl] = c->rank[i];
        r->values[(size_t)TS_LOG_RANK * r->n_states * P + sl] = log((double)c->rank[i]);
        double p = exp(c->score[i] - c->lse[i]);
        r->values[(size_t)TS_PROB_NEXT * r->n_states * P + sl] = p < 1.0 ? p : 1.0;
    }
    *done += (long long)c->n;
    tw_progress_set(ana_progress(x), *done);
    c->n = 0;
    return TW_OK;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The summaries of every state and bucket from the values. */
static int summarise_all(traj_stats_result *r)
{
    const size_t S = r->n_states, P = r->n_positions;
    double *v = malloc((P ? P : 1) * sizeof *v);
    int32_t *rk = malloc((P ? P : 1) * sizeof *rk);
    if (!v || !rk) {
        free(v);
        free(rk);
        return TW_ENOMEM;
    }
    for (size_t s = 0; s < S; s++)
        for (int b = 0; b < TS_N_BUCKETS; b++) {
            ts_cell *cell = &r->cells[s * TS_N_BUCKETS + (size_t)b];
            for (int st = 0; st < TS_N_STATS; st++) {
                size_t n = 0;
                for (size_t p = 0; p < P; p++)
                    if (b == TS_BUCKET_ALL || ts_bucket_of((size_t)r->t[p]) == (ts_bucket)b)
                        v[n++] = ts_value(r, (ts_stat)st, s, p);
                cell->stat[st] = ts_summarise(v, n);
            }
            size_t n = 0, top1 = 0, topk = 0;
            for (size_t p = 0; p < P; p++)
                if (b == TS_BUCKET_ALL || ts_bucket_of((size_t)r->t[p]) == (ts_bucket)b) {
                    int32_t x = r->rank[s * P + p];
                    rk[n++] = x;
                    top1 += x == 1;
                    topk += (size_t)x <= r->k;
                }
            if (n == 0) {
                cell->rank_median = cell->top1 = cell->topk = NAN;
                continue;
            }
            qsort(rk, n, sizeof *rk, cmp_i32);
            cell->rank_median = 0.5 * ((double)rk[(n - 1) / 2] + (double)rk[n / 2]);
            cell->top1 = (double)top1 / (double)n;
            cell->topk = (double)topk / (double)n;
        }
    free(v);
    free(rk);
    return TW_OK;
}

/* The states of position p of a forward result, in trajectory order. */
static const float *state_row(const gpt2_forward_result *f, size_t s, size_t p)
{
    const size_t n = (size_t)f->n, C = (size_t)f->C;
    if (s == 0) return f->emb + p * C;
    if (s == 1) return f->x0 + p * C;
    if (s == 2) return f->x0_lnf + p * C;
    return f->resid_lnf + ((s - 3) * n + p) * C;
}

/* Checks the texts and counts them into r: texts, tokens, positions (a text
 * of fewer than 2 tokens has no next token and is skipped). */
static int count_texts(const ts_text *texts, size_t n_texts, traj_stats_result *r)
{
    for (size_t i = 0; i < n_texts; i++) {
        if (!texts[i].ids && texts[i].n) return TW_EINVAL;
        if (texts[i].n < 2) {
            r->n_texts_skipped++;
            continue;
        }
        r->n_texts++;
        r->n_tokens += texts[i].n;
        r->n_positions += texts[i].n - 1;
    }
    return TW_OK;
}

/* The arrays of r for its n_states x n_positions cells. */
static int result_alloc(traj_stats_result *r)
{
    const size_t S = r->n_states, P = r->n_positions, P1 = P ? P : 1;
    if (P > (size_t)INT32_MAX / S || P > SIZE_MAX / sizeof(double) / TS_N_STATS / S) return TW_ENOMEM;
    r->cells = calloc(S * TS_N_BUCKETS, sizeof *r->cells);
    r->t = malloc(P1 * sizeof *r->t);
    r->rank = malloc(P1 * S * sizeof *r->rank);
    r->values = malloc(P1 * S * TS_N_STATS * sizeof *r->values);
    return r->cells && r->t && r->rank && r->values ? TW_OK : TW_ENOMEM;
}

/* The arrays of a chunk of TS_CHUNK_ROWS rows of d floats, taken from sc. */
static int chunk_alloc(chunk *c, size_t d, scratch *sc)
{
    const size_t ch = TS_CHUNK_ROWS;
    *c = (chunk){.q = scratch_alloc(sc, ch * d, sizeof *c->q),
                 .tgt = scratch_alloc(sc, ch, sizeof *c->tgt),
                 .slot = scratch_alloc(sc, ch, sizeof *c->slot),
                 .rank = scratch_alloc(sc, ch, sizeof *c->rank),
                 .lse = scratch_alloc(sc, ch, sizeof *c->lse),
                 .score = scratch_alloc(sc, ch, sizeof *c->score)};
    return sc->failed ? TW_ENOMEM : TW_OK;
}

/* What the pass over the texts shares. */
typedef struct {
    const gpt2_model *m;
    const ana_ctx *x;
    traj_stats_result *r;
    chunk c;
    float R;        /* max row norm of wte */
    long long done; /* rows through the lens */
} ts_pass;

/* The cosines of every state of position p of text tx (forward result f,
 * global position gp) and its rows queued for the logit lens. */
static int position_states(ts_pass *t, const ts_text *tx, const gpt2_forward_result *f, size_t p, size_t gp)
{
    traj_stats_result *r = t->r;
    const size_t d = (size_t)t->m->cfg.n_embd, S = r->n_states, P = r->n_positions;
    const float *e_self = t->m->p.wte + (size_t)tx->ids[p] * d;
    const float *e_next = t->m->p.wte + (size_t)tx->ids[p + 1] * d;
    const float *fin = state_row(f, S - 1, p);
    r->t[gp] = (int32_t)p;
    for (size_t s = 0; s < S; s++) {
        const float *y = state_row(f, s, p);
        const size_t sl = s * P + gp;
        r->values[(size_t)TS_COS_NEXT * S * P + sl] = cosine(y, e_next, d);
        r->values[(size_t)TS_COS_SELF * S * P + sl] = cosine(y, e_self, d);
        r->values[(size_t)TS_COS_FINAL * S * P + sl] = cosine(y, fin, d);
        chunk *c = &t->c;
        memcpy(c->q + c->n * d, y, d * sizeof *c->q);
        c->tgt[c->n] = tx->ids[p + 1];
        c->slot[c->n] = sl;
        if (++c->n == TS_CHUNK_ROWS) {
            int rc = flush_chunk(t->m, t->R, c, r, t->x, &t->done);
            if (rc != TW_OK) return rc;
        }
    }
    return TW_OK;
}

/* The forward pass of every text and the statistics of its states. */
static int texts_pass(ts_pass *t, const ts_text *texts, size_t n_texts, gpt2_gelu gelu)
{
    gpt2_forward_opts fo = {
        .gelu = gelu, .logits = GPT2_LOGITS_NONE, .skip_attention = 1, .cancel = ana_cancel(t->x)};
    int rc = TW_OK;
    size_t p0 = 0; /* the first position of the current text */
    for (size_t i = 0; i < n_texts && rc == TW_OK; i++) {
        const ts_text *tx = &texts[i];
        if (tx->n < 2) continue;
        gpt2_forward_result *f = NULL;
        if ((rc = gpt2_forward(t->m, tx->ids, tx->n, &fo, &f)) != TW_OK) break;
        for (size_t p = 0; p + 1 < tx->n && rc == TW_OK; p++) rc = position_states(t, tx, f, p, p0 + p);
        gpt2_forward_free(f);
        p0 += tx->n - 1;
    }
    if (rc == TW_OK) rc = flush_chunk(t->m, t->R, &t->c, t->r, t->x, &t->done);
    return rc;
}

int traj_stats(const gpt2_model *m, const ana_ctx *x, const ts_text *texts, size_t n_texts, size_t k,
               gpt2_gelu gelu, traj_stats_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = ana_check_model(m);
    if (rc != TW_OK) return rc;
    if (!texts && n_texts) return TW_EINVAL;
    const size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.n_embd;
    if (k < 1 || k > V) return TW_EK;
    ts_pass t = {.m = m, .x = x, .r = out};
    out->n_states = (size_t)m->cfg.n_layer + 3;
    out->k = k;
    scratch sc = {.n = 0};
    if ((rc = count_texts(texts, n_texts, out)) != TW_OK) return rc;
    if ((rc = result_alloc(out)) == TW_OK) rc = chunk_alloc(&t.c, d, &sc);
    if (rc == TW_OK) {
        t.R = topk_max_row_norm(m->p.wte, V, d);
        tw_progress_stage(ana_progress(x), "logit lens", (long long)(out->n_states * out->n_positions));
        rc = texts_pass(&t, texts, n_texts, gelu);
    }
    if (rc == TW_OK) {
        tw_progress_stage(ana_progress(x), "summaries", 1);
        rc = summarise_all(out);
        tw_progress_add(ana_progress(x), 1);
    }
    scratch_free(&sc);
    if (rc != TW_OK) traj_stats_result_free(out);
    return rc;
}
