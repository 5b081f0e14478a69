#include "core/ana/lens.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/clones.h"
#include "base/scratch.h"
#include "base/status.h"
#include "core/nn/par.h"

/* Four float lanes (GCC/Clang vector extensions: one SSE register on
 * x86-64, one NEON register on arm64). */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4f_splat(float x) { return (v4f){x, x, x, x}; }
static inline v4i v4i_splat(int32_t x) { return (v4i){x, x, x, x}; }

static inline v4f v4f_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Lane-wise max(a, b) (b where a is NaN). */
static inline v4f v4f_max(v4f a, v4f b)
{
    v4i m = a > b;
    return (v4f)((m & (v4i)a) | (~m & (v4i)b));
}

/* exp(x) lane by lane for x <= 88, with relative error below 2e-7 for
 * x >= -87 (smaller x gives about exp(-87)): Cody-Waite reduction
 * x = r ln2 + f, |f| <= ln2/2, a degree-7 Taylor polynomial of exp(f),
 * and 2^r built in the exponent bits. */
static inline v4f v4f_exp(v4f x)
{
    const v4f magic = v4f_splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    x = v4f_max(x, v4f_splat(-87.0f));
    v4f t = x * v4f_splat(1.44269504088896341f) + magic;
    v4f r = t - magic;
    v4f f = x - r * v4f_splat(0.693145751953125f); /* ln2 split: exact high part */
    f = f - r * v4f_splat(1.42860682030941723e-6f);
    v4f p = v4f_splat(1.0f / 5040.0f);
    p = p * f + v4f_splat(1.0f / 720.0f);
    p = p * f + v4f_splat(1.0f / 120.0f);
    p = p * f + v4f_splat(1.0f / 24.0f);
    p = p * f + v4f_splat(1.0f / 6.0f);
    p = p * f + v4f_splat(0.5f);
    p = p * f + v4f_splat(1.0f);
    p = p * f + v4f_splat(1.0f);
    v4i e = ((v4i)t - (v4i)magic + v4i_splat(127)) << 23;
    return p * (v4f)e;
}

static inline float v4f_hmax(v4f v)
{
    float m = v[0];
    for (int i = 1; i < 4; i++)
        if (v[i] > m) m = v[i];
    return m;
}

/* Largest float score of a row (NaN ignored unless all are NaN). */
static float row_max(const float *s, size_t b)
{
    size_t j = 0;
    float m = -INFINITY;
    if (b >= 8) {
        v4f m0 = v4f_splat(-INFINITY), m1 = m0;
        for (; j + 8 <= b; j += 8) {
            m0 = v4f_max(v4f_load(s + j), m0);
            m1 = v4f_max(v4f_load(s + j + 4), m1);
        }
        m = v4f_hmax(v4f_max(m0, m1));
    }
    for (; j < b; j++)
        if (s[j] > m) m = s[j];
    return m;
}

/* Scores per chunk of a row's pass: float partial sums of at most this many
 * exponentials, and the unit in which scores near a target are looked for. */
#define LENS_CHUNK 256

/* Rows whose float score is within the error bound of a target's exact
 * score: decided by an exact rescoring after the pass. */
typedef struct {
    int32_t *j;
    size_t n, cap;
} near_list;

typedef struct {
    const float *E, *Q;
    size_t d, nq, nt, V;
    float R;                  /* max_j |E_j| (the bound of the GEMM scores) */
    const int32_t *targets;
    float *t_lo, *t_hi;       /* (nq, nt) float scores outside [lo, hi] are decided by the GEMM */
    double *t_score;          /* (nq, nt) exact target scores */
    int32_t *above;           /* (nq, nt) rows surely above the target */
    near_list *near;          /* (nq, nt) */
    double *max, *sum, *wsum; /* (nq): reference m (the largest score so far), sum exp(s - m),
                               * sum exp(s - m) (s - m) */
    tw_progress *progress;
    long long reported; /* the rows' share of the pass added to progress so far */
    size_t row0;        /* the pass's first row in the request */
    void (*on_row)(void *ctx, size_t i, const float *s, size_t b, size_t j0);
    void *row_ctx;
} lens_pass;

static int near_add(near_list *l, int32_t j)
{
    int32_t *p = tw_grow(l->j, &l->cap, l->n + 1, sizeof *p, 16);
    if (!p) return TW_ENOMEM;
    l->j = p;
    l->j[l->n++] = j;
    return TW_OK;
}

/* What one pass over a row's scores in one block gives, relative to ref. */
typedef struct {
    double sum, wsum; /* sum exp(s - ref), sum exp(s - ref) (s - ref) */
    float max;        /* the block's largest score */
} block_sums;

/* sum exp(s_j - ref) and sum exp(s_j - ref) (s_j - ref) over s (b) in one
 * vector pass (terms of s_j - ref < -87 count as about e^-87 each), with
 * the largest score. */
static block_sums row_sums(const float *s, size_t b, float ref)
{
    const v4f vref = v4f_splat(ref);
    v4f vm = v4f_splat(-INFINITY);
    block_sums o = {0, 0, -INFINITY};
    for (size_t c0 = 0; c0 < b; c0 += LENS_CHUNK) {
        size_t end = c0 + LENS_CHUNK < b ? c0 + LENS_CHUNK : b, j = c0;
        v4f a0 = v4f_splat(0.0f), a1 = a0, w0 = a0, w1 = a0;
        for (; j + 8 <= end; j += 8) {
            v4f v = v4f_load(s + j) - vref, w = v4f_load(s + j + 4) - vref;
            vm = v4f_max(v4f_max(v, w), vm);
            v4f ev = v4f_exp(v), ew = v4f_exp(w);
            a0 += ev;
            a1 += ew;
            w0 += ev * v;
            w1 += ew * w;
        }
        v4f acc = a0 + a1, wacc = w0 + w1;
        o.sum += ((double)acc[0] + (double)acc[1]) + ((double)acc[2] + (double)acc[3]);
        o.wsum += ((double)wacc[0] + (double)wacc[1]) + ((double)wacc[2] + (double)wacc[3]);
        float tm = v4f_hmax(vm);
        for (; j < end; j++) {
            float x = s[j] - ref;
            double e = exp((double)x);
            o.sum += e;
            o.wsum += e * x;
            if (x > tm) tm = x;
        }
        vm = v4f_splat(tm);
    }
    o.max = v4f_hmax(vm) + ref;
    return o;
}

/* The rank counts of target column it against one row's scores s (b) of
 * the block starting at j0: the scores surely above it, and the ids within
 * the error bound into its near list (chunks with none are passed over
 * after one vector count). */
static int row_ranks(lens_pass *p, size_t it, const float *s, size_t b, size_t j0)
{
    const float lo = p->t_lo[it], hi = p->t_hi[it];
    const v4f vlo = v4f_splat(lo), vhi = v4f_splat(hi);
    long above = 0;
    for (size_t c0 = 0; c0 < b; c0 += LENS_CHUNK) {
        size_t end = c0 + LENS_CHUNK < b ? c0 + LENS_CHUNK : b, j = c0;
        v4i ah = v4i_splat(0), al = v4i_splat(0);
        for (; j + 8 <= end; j += 8) {
            v4f v = v4f_load(s + j), w = v4f_load(s + j + 4);
            ah -= (v > vhi) + (w > vhi); /* a true lane is -1 */
            al -= (v >= vlo) + (w >= vlo);
        }
        long nh = (long)ah[0] + ah[1] + ah[2] + ah[3], nl = (long)al[0] + al[1] + al[2] + al[3];
        for (; j < end; j++) {
            nh += s[j] > hi;
            nl += s[j] >= lo;
        }
        above += nh;
        if (nl == nh) continue; /* nothing within the bound in this chunk */
        for (j = c0; j < end; j++)
            if (s[j] >= lo && s[j] <= hi && near_add(&p->near[it], (int32_t)(j0 + j)) != TW_OK)
                return TW_ENOMEM;
    }
    p->above[it] += (int32_t)above;
    return TW_OK;
}

/* One row's share of a block: the softmax sums against the running
 * maximum (the block's own on the first block; a block whose scores rise
 * more than e^64 above the reference is summed again against its maximum,
 * so float partial sums never overflow), and the rank counts. */
static int row_block(lens_pass *p, size_t i, const float *s, size_t bj, size_t j0)
{
    float ref = p->max[i] > -INFINITY ? (float)p->max[i] : row_max(s, bj);
    block_sums bs = row_sums(s, bj, ref);
    if (bs.max > ref + 64.0f) bs = row_sums(s, bj, ref = bs.max);
    /* fold into the running sums, with the larger of the two references */
    double m = p->max[i], nm = fmax(m, (double)ref);
    if (bs.max > nm) nm = bs.max;
    if (m > -INFINITY && nm > m) { /* rescale what was summed: s - nm = (s - m) + (m - nm) */
        double f = exp(m - nm);
        p->wsum[i] = f * (p->wsum[i] + (m - nm) * p->sum[i]);
        p->sum[i] *= f;
    }
    double f = exp((double)ref - nm);
    p->wsum[i] += f * (bs.wsum + ((double)ref - nm) * bs.sum);
    p->sum[i] += f * bs.sum;
    p->max[i] = nm;
    for (size_t t = 0; t < p->nt; t++) {
        size_t it = i * p->nt + t;
        if (p->targets[it] < 0) continue;
        int rc = row_ranks(p, it, s, bj, j0);
        if (rc != TW_OK) return rc;
    }
    return TW_OK;
}

/* Rows [i0, i1) of one block of scores. */
typedef struct {
    lens_pass *p;
    const float *S;
    size_t i0, i1, j0, bj;
    int rc;
} block_job;

static void *block_rows(void *arg)
{
    block_job *b = arg;
    const lens_pass *p = b->p;
    for (size_t i = b->i0; i < b->i1 && b->rc == TW_OK; i++) {
        b->rc = row_block(b->p, i, b->S + i * b->bj, b->bj, b->j0);
        if (p->on_row) p->on_row(p->row_ctx, p->row0 + i, b->S + i * b->bj, b->bj, b->j0);
    }
    return NULL;
}

/* Threads for the scan of a block of scores: as many as OpenBLAS uses, which
 * wait while it runs (at most 16). Each row is one thread's, so the answer
 * does not depend on the split. */
#define LENS_MAX_THREADS 16

/* One block of GEMM scores (topk_opts.on_block), split over threads (the
 * caller is one; a thread that cannot be started leaves its rows to it). */
static int on_block(void *ctx, const float *S, size_t nq, size_t j0, size_t bj)
{
    lens_pass *p = ctx;
    int threads = openblas_get_num_threads();
    if (threads > LENS_MAX_THREADS) threads = LENS_MAX_THREADS;
    if (threads < 1 || nq < 64) threads = 1;
    block_job jobs[LENS_MAX_THREADS];
    pthread_t th[LENS_MAX_THREADS];
    bool started[LENS_MAX_THREADS] = {false};
    for (int t = 0; t < threads; t++)
        jobs[t] = (block_job){.p = p,
                              .S = S,
                              .i0 = nq * (size_t)t / (size_t)threads,
                              .i1 = nq * (size_t)(t + 1) / (size_t)threads,
                              .j0 = j0,
                              .bj = bj};
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&th[t], NULL, block_rows, &jobs[t]) == 0;
    block_rows(&jobs[0]);
    int rc = jobs[0].rc;
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            block_rows(&jobs[t]);
        if (rc == TW_OK) rc = jobs[t].rc;
    }
    /* passes may run side by side (lens_rows): each adds what it did */
    long long now = (long long)((double)nq * (double)(j0 + bj) / (double)p->V);
    tw_progress_add(p->progress, now - p->reported);
    p->reported = now;
    return rc;
}

/* Per-row and per-target state of a pass, carved from one allocation. */
static int pass_alloc(lens_pass *p)
{
    size_t m = p->nq * (p->nt ? p->nt : 1), nq = p->nq;
    size_t bytes = m * (sizeof(double) + sizeof(near_list) + sizeof(int32_t) + 2 * sizeof(float)) +
                   3 * nq * sizeof(double);
    char *b = calloc(1, bytes);
    if (!b) return TW_ENOMEM;
    p->t_score = (double *)b;
    p->max = p->t_score + m;
    p->sum = p->max + nq;
    p->wsum = p->sum + nq;
    p->near = (near_list *)(p->wsum + nq);
    p->above = (int32_t *)(p->near + m);
    p->t_lo = (float *)(p->above + m);
    p->t_hi = p->t_lo + m;
    return TW_OK;
}

static void pass_free(lens_pass *p)
{
    if (!p->t_score) return;
    for (size_t i = 0; i < p->nq * p->nt; i++) free(p->near[i].j);
    free(p->t_score);
}

/* The exact score of every target and the float thresholds of the GEMM's
 * error bound around it: a float score above hi is above s_t + err for
 * certain, one below lo below s_t - err. */
static void pass_targets(lens_pass *p, float R)
{
    for (size_t i = 0; i < p->nq; i++) {
        p->max[i] = -INFINITY;
        const float *q = p->Q + i * p->d;
        double err = topk_screen_error(p->d, sqrt(topk_dot(q, q, p->d)), R);
        if (!(err < INFINITY)) err = INFINITY; /* NaN: every row rescored */
        for (size_t t = 0; t < p->nt; t++) {
            size_t it = i * p->nt + t;
            int32_t id = p->targets[it];
            if (id < 0) continue;
            double st = topk_dot(q, p->E + (size_t)id * p->d, p->d);
            p->t_score[it] = st;
            p->t_lo[it] = nextafterf((float)(st - err), -INFINITY);
            p->t_hi[it] = nextafterf((float)(st + err), INFINITY);
        }
    }
}

/* Partial sums of near_dot: independent chains the vector units run side by side. */
#define NEAR_LANES 16

/* a . b in double in an order of its own (NEAR_LANES partial sums, any
 * contraction into FMAs): within gamma_d (u = 2^-53) sum |a_i b_i| of the
 * exact product, like topk_dot, so the two differ by at most twice that. */
static TW_CLONES double near_dot(const float *a, const float *b, size_t d)
{
    double acc[NEAR_LANES] = {0};
    size_t t = 0;
    for (; t + NEAR_LANES <= d; t += NEAR_LANES)
        for (size_t l = 0; l < NEAR_LANES; l++) acc[l] += (double)a[t + l] * (double)b[t + l];
    for (; t < d; t++) acc[0] += (double)a[t] * (double)b[t];
    double s = 0.0;
    for (size_t l = 0; l < NEAR_LANES; l++) s += acc[l];
    return s;
}

/* The rank of target column it of row i: the rows surely above it, plus
 * those of its near list whose exact score (topk_dot) beats it (ties:
 * lower id). A near row is first scored by near_dot: when that lies more
 * than twice its error bound from the target's exact score, the order of
 * the two exact scores is already known, and only the rest are scored by
 * topk_dot (the near lists of a long phrase's late states on the xl
 * shape hold about a hundred rows each; topk_dot's four chains were an
 * eighth of the request). */
static int32_t target_rank(const lens_pass *p, size_t i, size_t it)
{
    int32_t id = p->targets[it], above = p->above[it];
    const float *q = p->Q + i * p->d;
    double ts = p->t_score[it];
    /* |near_dot - topk_dot| <= 2 gamma_d |q| max_j |E_j|, widened for the
     * rounding of this product; NaN (or inf) leaves every row to topk_dot */
    const double u = 0x1p-53, gd = (double)p->d * u / (1.0 - (double)p->d * u);
    double band = 2.0 * gd * sqrt(topk_dot(q, q, p->d)) * (double)p->R * (1.0 + 1e-6);
    if (!(band < INFINITY)) band = INFINITY;
    for (size_t c = 0; c < p->near[it].n; c++) {
        int32_t j = p->near[it].j[c];
        if (j == id) continue;
        const float *e = p->E + (size_t)j * p->d;
        double f = band < INFINITY ? near_dot(q, e, p->d) : NAN;
        if (f > ts + band) {
            above++;
        } else if (!(f < ts - band)) {
            double s = topk_dot(q, e, p->d);
            above += s > ts || (s == ts && j < id);
        }
    }
    return above + 1;
}

static void pass_results(const lens_pass *p, lens_out *out)
{
    for (size_t i = 0; i < p->nq; i++) {
        if (out->lse) out->lse[i] = p->max[i] + log(p->sum[i]);
        if (out->entropy) out->entropy[i] = log(p->sum[i]) - p->wsum[i] / p->sum[i];
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

/* Query rows per GEMM pass over E. topk_rows_opt gives each pass 8 MiB of
 * scores, (rows, b): a pass of every row of a long phrase (15 states x 1024
 * tokens on 124M) would take E 128 rows at a time and pack all of Q again
 * for each of those thin GEMMs (sgemm's copy routines were a fifth of the
 * time). Passes of at most this many rows keep each GEMM about square
 * (1024 x 2048 x d) at the cost of reading E once per pass; a request of
 * fewer rows is one pass, as before. */
#define LENS_ROWS_PER_PASS 1024

/* Rows [i0, i0 + nq) of the request: one pass over E. */
static int lens_pass_rows(const float *E, size_t V, size_t d, const float *Q, size_t i0, size_t nq, float R,
                          const lens_opts *o, const lens_out *out)
{
    size_t nt = o ? o->n_targets : 0, k = o ? o->k : 0;
    lens_pass p = {.E = E,
                   .Q = Q + i0 * d,
                   .d = d,
                   .nq = nq,
                   .nt = nt,
                   .V = V,
                   .R = R,
                   .targets = nt ? o->targets + i0 * nt : NULL,
                   .progress = o ? o->progress : NULL,
                   .row0 = i0,
                   .on_row = o ? o->on_row : NULL,
                   .row_ctx = o ? o->row_ctx : NULL};
    int rc = pass_alloc(&p);
    if (rc != TW_OK) return rc;
    pass_targets(&p, R);
    topk_opts to = {.max_row_norm = R, .cancel = o ? o->cancel : NULL, .on_block = on_block, .ctx = &p};
    rc = topk_rows_opt(E, V, d, p.Q, nq, k ? k : 1, k ? out->top + i0 * k : NULL, NULL, &to);
    if (rc == TW_OK) {
        lens_out part = {.top = NULL,
                         .lse = out->lse ? out->lse + i0 : NULL,
                         .entropy = out->entropy ? out->entropy + i0 : NULL,
                         .rank = out->rank ? out->rank + i0 * nt : NULL,
                         .score = out->score ? out->score + i0 * nt : NULL};
        pass_results(&p, &part);
    }
    pass_free(&p);
    return rc;
}

/* Rows per pass below which the passes are not run side by side: a GEMM
 * this thin on one core packs E for too few products. */
#define LENS_MIN_SIDE_ROWS 64

/* The passes of a request run side by side: pass t is rows
 * [t per, t per + per) (the last shorter), one thread each. */
typedef struct {
    const float *E, *Q;
    size_t V, d, nq, per;
    float R;
    const lens_opts *o;
    const lens_out *out;
} lens_run;

static int run_pass(void *ctx, int part, size_t t0, size_t nt)
{
    (void)part;
    const lens_run *r = ctx;
    int rc = TW_OK;
    for (size_t t = t0; t < t0 + nt && rc == TW_OK; t++) {
        size_t i0 = t * r->per, n = r->nq - i0 < r->per ? r->nq - i0 : r->per;
        rc = lens_pass_rows(r->E, r->V, r->d, r->Q, i0, n, r->R, r->o, r->out);
    }
    return rc;
}

/* The request's rows in passes of at most LENS_ROWS_PER_PASS. With several
 * cores and enough rows, as many passes as a multiple of the cores run
 * side by side, each in its own thread calling BLAS with one thread and
 * scanning its own blocks: one pass whose GEMM used every core and whose
 * scan was then shared out kept OpenBLAS's threads spinning while the
 * scan ran (a fifth of the CPU time of a 200-token trajectory). Every row
 * is one pass's, its lists certified exactly as before, so only the float
 * sums of the softmax may differ in their last bits with the split. */
int lens_rows(const float *E, size_t V, size_t d, const float *Q, size_t nq, const lens_opts *o,
              lens_out *out)
{
    int rc = check_args(E, V, d, Q, nq, o, out);
    if (rc != TW_OK || nq == 0) return rc;
    float R = o && o->max_row_norm > 0 ? o->max_row_norm : topk_max_row_norm(E, V, d);
    if (o && o->progress) tw_progress_set(o->progress, o->progress_done0);
    size_t npass = (nq + LENS_ROWS_PER_PASS - 1) / LENS_ROWS_PER_PASS;
    int parts = nn_parts();
    if (parts > 1 && nq >= (size_t)parts * LENS_MIN_SIDE_ROWS) {
        parts = nn_blas_single_begin();
        npass = (npass + (size_t)parts - 1) / (size_t)parts * (size_t)parts;
        lens_run r = {.E = E, .Q = Q, .V = V, .d = d, .nq = nq, .R = R, .o = o, .out = out};
        r.per = (nq + npass - 1) / npass;
        rc = nn_parallel_tiles((nq + r.per - 1) / r.per, 1, parts, o ? o->cancel : NULL, run_pass, &r);
        nn_blas_single_end();
        return rc;
    }
    for (size_t i0 = 0; i0 < nq && rc == TW_OK; i0 += LENS_ROWS_PER_PASS)
        rc = lens_pass_rows(E, V, d, Q, i0, nq - i0 < LENS_ROWS_PER_PASS ? nq - i0 : LENS_ROWS_PER_PASS, R, o,
                            out);
    return rc;
}
