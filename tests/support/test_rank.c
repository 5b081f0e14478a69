#include "tests/support/test_rank.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>

static int cmp_desc(const void *a, const void *b)
{
    const tt_scored *x = a, *y = b;
    if (x->s > y->s) return -1;
    if (x->s < y->s) return 1;
    return x->id - y->id;
}

void tt_sort_desc(tt_scored *a, size_t n) { qsort(a, n, sizeof *a, cmp_desc); }

static int cmp_asc(const void *a, const void *b)
{
    const tt_scored *x = a, *y = b;
    if (x->s < y->s) return -1;
    if (x->s > y->s) return 1;
    return x->id - y->id;
}

void tt_sort_asc(tt_scored *a, size_t n) { qsort(a, n, sizeof *a, cmp_asc); }

double tt_dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

double tt_sqdist(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        const double u = (double)a[i] - (double)b[i];
        s += u * u;
    }
    return s;
}

tt_scored *tt_rank_all(const double *v, const double *M, size_t n, size_t d, double sign)
{
    tt_scored *all = malloc(n * sizeof *all);
    if (!all) return NULL;
    for (size_t j = 0; j < n; j++) {
        all[j].s = sign * tt_dot(v, M + j * d, d);
        all[j].id = (int)j;
    }
    tt_sort_desc(all, n);
    return all;
}

double tt_check_list(const char *what, const topk_hit *hits, const tt_scored *ref, size_t k, double tol,
                     double sign)
{
    double scale = 1.0, worst = 0.0;
    for (size_t t = 0; t < k; t++) scale = fmax(scale, fabs(ref[t].s));
    for (size_t t = 0; t < k; t++) {
        const double want = sign * ref[t].s, diff = fabs(hits[t].score - want);
        worst = fmax(worst, diff);
        ck_assert_msg(hits[t].id == ref[t].id, "%s: rank %zu id %d (score %.9g) != reference %d (score %.9g)",
                      what, t, hits[t].id, hits[t].score, ref[t].id, want);
        ck_assert_msg(diff <= tol * scale, "%s: rank %zu score %.9g vs %.9g (diff %.3g > %.3g)", what, t,
                      hits[t].score, want, diff, tol * scale);
    }
    return worst;
}

double *tt_to_double(const float *x, size_t n)
{
    double *y = malloc(n * sizeof *y);
    if (y)
        for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

void tt_layernorm_row(const float *x, const float *g, const float *b, size_t d, double eps, double *out)
{
    double sum = 0, sq = 0;
    for (size_t i = 0; i < d; i++) sum += x[i];
    const double mean = sum / d;
    for (size_t i = 0; i < d; i++) {
        const double c = x[i] - mean;
        sq += c * c;
    }
    const double sd = sqrt(sq / d + eps);
    for (size_t i = 0; i < d; i++) out[i] = (g ? g[i] : 1.0) * (x[i] - mean) / sd + (b ? b[i] : 0.0);
}
