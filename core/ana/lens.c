#include "core/ana/lens.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

/* Rows whose float score is within the error bound of a target's exact
 * score: decided by an exact rescoring after the pass. */
typedef struct {
    int32_t *j;
    size_t n, cap;
} near_list;

typedef struct {
    const float *E, *Q;
    size_t d, nq, nt;
    const int32_t *targets;
    double *t_score, *t_err;  /* (nq, nt) exact target scores and their bounds */
    int32_t *above;           /* (nq, nt) rows surely above the target */
    near_list *near;          /* (nq, nt) */
    double *max, *sum, *wsum; /* (nq): running max, sum exp(s - max), sum exp(s - max) s */
} lens_pass;

static int near_add(near_list *l, int32_t j)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        int32_t *p = realloc(l->j, cap * sizeof *p);
        if (!p) return TW_ENOMEM;
        l->j = p;
        l->cap = cap;
    }
    l->j[l->n++] = j;
    return TW_OK;
}

/* One block of GEMM scores: the softmax sums and the rank counts. */
static int on_block(void *ctx, const float *S, size_t nq, size_t j0, size_t bj)
{
    lens_pass *p = ctx;
    for (size_t i = 0; i < nq; i++) {
        const float *s = S + i * bj;
        float bm = -INFINITY;
        for (size_t j = 0; j < bj; j++) bm = s[j] > bm ? s[j] : bm;
        if (bm > p->max[i]) { /* a new maximum: rescale what was summed */
            double f = exp(p->max[i] - bm);
            p->sum[i] *= f;
            p->wsum[i] *= f;
            p->max[i] = bm;
        }
        double m = p->max[i], sum = 0, wsum = 0;
        for (size_t j = 0; j < bj; j++) {
            double e = exp((double)s[j] - m);
            sum += e;
            wsum += e * s[j];
        }
        p->sum[i] += sum;
        p->wsum[i] += wsum;
        for (size_t t = 0; t < p->nt; t++) {
            size_t it = i * p->nt + t;
            if (p->targets[it] < 0) continue;
            double hi = p->t_score[it] + p->t_err[it], lo = p->t_score[it] - p->t_err[it];
            int32_t above = 0;
            for (size_t j = 0; j < bj; j++) {
                if (s[j] > hi)
                    above++;
                else if (s[j] >= lo && near_add(&p->near[it], (int32_t)(j0 + j)) != TW_OK)
                    return TW_ENOMEM;
            }
            p->above[it] += above;
        }
    }
    return TW_OK;
}

/* Per-row and per-target state of a pass, carved from one allocation. */
static int pass_alloc(lens_pass *p)
{
    size_t m = p->nq * (p->nt ? p->nt : 1), nq = p->nq;
    size_t bytes = m * (2 * sizeof(double) + sizeof(near_list) + sizeof(int32_t)) + 3 * nq * sizeof(double);
    char *b = calloc(1, bytes);
    if (!b) return TW_ENOMEM;
    p->t_score = (double *)b;
    p->t_err = p->t_score + m;
    p->max = p->t_err + m;
    p->sum = p->max + nq;
    p->wsum = p->sum + nq;
    p->near = (near_list *)(p->wsum + nq);
    p->above = (int32_t *)(p->near + m);
    return TW_OK;
}

static void pass_free(lens_pass *p)
{
    if (!p->t_score) return;
    for (size_t i = 0; i < p->nq * p->nt; i++) free(p->near[i].j);
    free(p->t_score);
}

/* The exact score of every target and the GEMM's error bound around it. */
static void pass_targets(lens_pass *p, float R)
{
    for (size_t i = 0; i < p->nq; i++) {
        p->max[i] = -INFINITY;
        const float *q = p->Q + i * p->d;
        double err = topk_screen_error(p->d, sqrt(topk_dot(q, q, p->d)), R);
        for (size_t t = 0; t < p->nt; t++) {
            int32_t id = p->targets[i * p->nt + t];
            if (id < 0) continue;
            p->t_score[i * p->nt + t] = topk_dot(q, p->E + (size_t)id * p->d, p->d);
            p->t_err[i * p->nt + t] = err < INFINITY ? err : INFINITY; /* NaN: every row rescored */
        }
    }
}

/* The rank of target column it of row i: the rows surely above it, plus
 * those of its near list whose exact score beats it (ties: lower id). */
static int32_t target_rank(const lens_pass *p, size_t i, size_t it)
{
    int32_t id = p->targets[it], above = p->above[it];
    double ts = p->t_score[it];
    for (size_t c = 0; c < p->near[it].n; c++) {
        int32_t j = p->near[it].j[c];
        if (j == id) continue;
        double s = topk_dot(p->Q + i * p->d, p->E + (size_t)j * p->d, p->d);
        above += s > ts || (s == ts && j < id);
    }
    return above + 1;
}

static void pass_results(const lens_pass *p, lens_out *out)
{
    for (size_t i = 0; i < p->nq; i++) {
        double lse = p->max[i] + log(p->sum[i]);
        if (out->lse) out->lse[i] = lse;
        if (out->entropy) out->entropy[i] = lse - p->wsum[i] / p->sum[i];
        for (size_t t = 0; t < p->nt; t++) {
            size_t it = i * p->nt + t;
            bool none = p->targets[it] < 0;
            if (out->rank) out->rank[it] = none ? 0 : target_rank(p, i, it);
            if (out->score) out->score[it] = none ? NAN : p->t_score[it];
        }
    }
}

static int check_args(const float *E, size_t V, size_t d, const float *Q, size_t nq, const lens_opts *o,
                      const lens_out *out)
{
    size_t nt = o ? o->n_targets : 0, k = o ? o->k : 0;
    if (!E || !Q || !out || V < 1 || d < 1 || k > V || nt > LENS_MAX_TARGETS || (nt && !o->targets))
        return TW_EINVAL;
    for (size_t i = 0; i < nq * nt; i++)
        if (o->targets[i] >= (int64_t)V) return TW_EINVAL;
    return nq && k && !out->top ? TW_EINVAL : TW_OK;
}

int lens_rows(const float *E, size_t V, size_t d, const float *Q, size_t nq, const lens_opts *o,
              lens_out *out)
{
    int rc = check_args(E, V, d, Q, nq, o, out);
    if (rc != TW_OK || nq == 0) return rc;
    size_t nt = o ? o->n_targets : 0, k = o ? o->k : 0;
    float R = o && o->max_row_norm > 0 ? o->max_row_norm : topk_max_row_norm(E, V, d);
    lens_pass p = {.E = E, .Q = Q, .d = d, .nq = nq, .nt = nt, .targets = nt ? o->targets : NULL};
    if ((rc = pass_alloc(&p)) != TW_OK) return rc;
    pass_targets(&p, R);
    topk_opts to = {.max_row_norm = R, .cancel = o ? o->cancel : NULL, .on_block = on_block, .ctx = &p};
    rc = topk_rows_opt(E, V, d, Q, nq, k ? k : 1, k ? out->top : NULL, NULL, &to);
    if (rc == TW_OK) pass_results(&p, out);
    pass_free(&p);
    return rc;
}
