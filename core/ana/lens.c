#include "core/ana/lens.h"

#include <math.h>
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

int lens_rows(const float *E, size_t V, size_t d, const float *Q, size_t nq, const lens_opts *o,
              lens_out *out)
{
    size_t nt = o ? o->n_targets : 0, k = o ? o->k : 0;
    if (!E || !Q || !out || V < 1 || d < 1 || k > V || nt > LENS_MAX_TARGETS || (nt && !o->targets))
        return TW_EINVAL;
    for (size_t i = 0; i < nq * nt; i++)
        if (o->targets[i] >= (int64_t)V) return TW_EINVAL;
    if (nq == 0) return TW_OK;
    if (k && !out->top) return TW_EINVAL;
    float R = o && o->max_row_norm > 0 ? o->max_row_norm : topk_max_row_norm(E, V, d);
    lens_pass p = {.E = E, .Q = Q, .d = d, .nq = nq, .nt = nt, .targets = nt ? o->targets : NULL};
    size_t m = nq * (nt ? nt : 1);
    p.t_score = calloc(m, sizeof *p.t_score);
    p.t_err = calloc(m, sizeof *p.t_err);
    p.above = calloc(m, sizeof *p.above);
    p.near = calloc(m, sizeof *p.near);
    p.max = malloc(nq * sizeof *p.max);
    p.sum = calloc(nq, sizeof *p.sum);
    p.wsum = calloc(nq, sizeof *p.wsum);
    int rc = TW_ENOMEM;
    if (!p.t_score || !p.t_err || !p.above || !p.near || !p.max || !p.sum || !p.wsum) goto out;
    for (size_t i = 0; i < nq; i++) {
        p.max[i] = -INFINITY;
        const float *q = Q + i * d;
        double qn = sqrt(topk_dot(q, q, d));
        for (size_t t = 0; t < nt; t++) {
            int32_t id = o->targets[i * nt + t];
            if (id < 0) continue;
            p.t_score[i * nt + t] = topk_dot(q, E + (size_t)id * d, d);
            double err = topk_screen_error(d, qn, R);
            p.t_err[i * nt + t] = err < INFINITY ? err : INFINITY; /* NaN: every row rescored */
        }
    }
    topk_opts to = {.max_row_norm = R, .cancel = o ? o->cancel : NULL, .on_block = on_block, .ctx = &p};
    rc = topk_rows_opt(E, V, d, Q, nq, k ? k : 1, k ? out->top : NULL, NULL, &to);
    if (rc != TW_OK) goto out;
    for (size_t i = 0; i < nq; i++) {
        double lse = p.max[i] + log(p.sum[i]);
        if (out->lse) out->lse[i] = lse;
        if (out->entropy) out->entropy[i] = lse - p.wsum[i] / p.sum[i];
        for (size_t t = 0; t < nt; t++) {
            size_t it = i * nt + t;
            int32_t id = o->targets[it];
            if (id < 0) {
                if (out->rank) out->rank[it] = 0;
                if (out->score) out->score[it] = NAN;
                continue;
            }
            int32_t above = p.above[it];
            double ts = p.t_score[it];
            for (size_t c = 0; c < p.near[it].n; c++) {
                int32_t j = p.near[it].j[c];
                if (j == id) continue;
                double s = topk_dot(Q + i * d, E + (size_t)j * d, d);
                above += s > ts || (s == ts && j < id);
            }
            if (out->rank) out->rank[it] = above + 1;
            if (out->score) out->score[it] = ts;
        }
    }
out:
    if (p.near)
        for (size_t i = 0; i < m; i++) free(p.near[i].j);
    free(p.near);
    free(p.t_score);
    free(p.t_err);
    free(p.above);
    free(p.max);
    free(p.sum);
    free(p.wsum);
    return rc;
}
