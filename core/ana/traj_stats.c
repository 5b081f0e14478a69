/* Trajectory statistics over many texts: see traj_stats.h and
 * docs/MATH.md §14. */
#include "core/ana/traj_stats.h"

#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- The logit lens of many rows: exact ranks and log-sum-exp ---- */

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

/* Scores per chunk of a row pass: float partial sums of at most this many
 * exponentials, and the unit in which rows near the target are looked for. */
#define TS_CHUNK_SCORES 256

/* One pass over the scores s (b) of one row in one block, relative to ref:
 * returns sum_j exp(s_j - ref) (terms of s_j - ref < -87 count as about
 * e^-87), with the block's largest score in *bmax, the count of s_j > hi in
 * *n_hi, and the starts of the chunks holding an s_j in [lo, hi] in amb
 * (*n_amb of them; when more than cap, only the count is right). */
static double row_pass(const float *s, size_t b, float ref, float lo, float hi, float *bmax, long *n_hi,
                       size_t *amb, size_t cap, size_t *n_amb)
{
    const v4f vref = v4f_splat(ref), vlo = v4f_splat(lo), vhi = v4f_splat(hi);
    v4f vm = v4f_splat(-INFINITY);
    double sum = 0.0;
    long ch = 0;
    size_t na = 0;
    for (size_t c0 = 0; c0 < b; c0 += TS_CHUNK_SCORES) {
        size_t end = c0 + TS_CHUNK_SCORES < b ? c0 + TS_CHUNK_SCORES : b, j = c0;
        v4f a0 = v4f_splat(0.0f), a1 = a0;
        v4i ah = v4i_splat(0), al = v4i_splat(0);
        for (; j + 8 <= end; j += 8) {
            v4f v = v4f_load(s + j), w = v4f_load(s + j + 4);
            vm = v4f_max(v4f_max(v, w), vm);
            a0 += v4f_exp(v - vref);
            a1 += v4f_exp(w - vref);
            ah -= (v > vhi) + (w > vhi); /* a true lane is -1 */
            al -= (v >= vlo) + (w >= vlo);
        }
        v4f acc = a0 + a1;
        sum += ((double)acc[0] + (double)acc[1]) + ((double)acc[2] + (double)acc[3]);
        long nh = (long)ah[0] + ah[1] + ah[2] + ah[3], nl = (long)al[0] + al[1] + al[2] + al[3];
        float tm = v4f_hmax(vm);
        for (; j < end; j++) {
            sum += exp((double)s[j] - ref);
            if (s[j] > tm) tm = s[j];
            nh += s[j] > hi;
            nl += s[j] >= lo;
        }
        vm = v4f_splat(tm);
        ch += nh;
        if (nl > nh) {
            if (na < cap) amb[na] = c0;
            na++;
        }
    }
    *bmax = v4f_hmax(vm);
    *n_hi = ch;
    *n_amb = na;
    return sum;
}

/* The running state of one row's logit lens. */
typedef struct {
    double st;    /* the target's exact score */
    float lo, hi; /* float scores outside [lo, hi] are decided without rescoring */
    double mx;    /* reference of sum: the largest score so far (-inf before the first block) */
    double sum;   /* sum_j exp(s_j - mx) over the blocks so far */
    long above;   /* rows certainly above the target so far */
} lens_row;

/* One block's scores for rows [i0, i1) of a chunk. */
typedef struct {
    const float *S, *Q, *M;
    size_t bj, j0, d, i0, i1;
    const int32_t *target;
    lens_row *rows;
} lens_job;

static void lens_rows(const lens_job *jb)
{
    size_t amb[64];
    for (size_t i = jb->i0; i < jb->i1; i++) {
        const float *s = jb->S + i * jb->bj;
        lens_row *r = &jb->rows[i];
        /* the first block sets the reference; afterwards the running maximum,
         * and a block whose scores rise far above it is summed again */
        float ref = r->mx > -INFINITY ? (float)r->mx : row_max(s, jb->bj), bmax;
        long n_hi;
        size_t n_amb;
        double bs = row_pass(s, jb->bj, ref, r->lo, r->hi, &bmax, &n_hi, amb, 64, &n_amb);
        if (bmax > ref + 64.0f) { /* terms up to e^64 are safe in float partial sums */
            float ref2 = bmax;
            double b2 = 0.0;
            for (size_t j = 0; j < jb->bj; j++) b2 += exp((double)s[j] - ref2);
            bs = b2;
            ref = ref2;
        }
        if (ref > r->mx) {
            r->sum = r->sum * exp(r->mx - ref) + bs;
            r->mx = ref;
        } else {
            r->sum += bs * exp(ref - r->mx);
        }
        if (bmax > r->mx) {
            r->sum *= exp(r->mx - bmax);
            r->mx = bmax;
        }
        r->above += n_hi;
        if (n_amb == 0) continue;
        /* rows within the screening error of the target: decide exactly */
        const float *q = jb->Q + i * jb->d;
        const int32_t tg = jb->target[i];
        size_t nc = n_amb <= 64 ? n_amb : (jb->bj + TS_CHUNK_SCORES - 1) / TS_CHUNK_SCORES;
        for (size_t c = 0; c < nc; c++) {
            size_t c0 = n_amb <= 64 ? amb[c] : c * TS_CHUNK_SCORES;
            size_t end = c0 + TS_CHUNK_SCORES < jb->bj ? c0 + TS_CHUNK_SCORES : jb->bj;
            for (size_t j = c0; j < end; j++) {
                if (!(s[j] >= r->lo && s[j] <= r->hi)) continue;
                int32_t id = (int32_t)(jb->j0 + j);
                if (id == tg) continue;
                double e = topk_dot(q, jb->M + (size_t)id * jb->d, jb->d);
                r->above += e > r->st || (e == r->st && id < tg);
            }
        }
    }
}

static void *lens_main(void *arg)
{
    lens_rows(arg);
    return NULL;
}

/* Threads for the scan of a block of scores: as many as OpenBLAS uses, which
 * wait while the GEMM runs (at most 16). */
#define TS_MAX_THREADS 16

/* lens_rows over rows [0, nq) of a block, split between threads (the caller
 * is one; a thread that cannot be started leaves its rows to the caller). */
static void lens_block(lens_job base, size_t nq, int threads)
{
    if (threads > TS_MAX_THREADS) threads = TS_MAX_THREADS;
    if (threads < 1 || nq < 64) threads = 1;
    lens_job jobs[TS_MAX_THREADS];
    pthread_t th[TS_MAX_THREADS];
    int started[TS_MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = base;
        jobs[t].i0 = nq * (size_t)t / (size_t)threads;
        jobs[t].i1 = nq * (size_t)(t + 1) / (size_t)threads;
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&th[t], NULL, lens_main, &jobs[t]) == 0;
    lens_rows(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            lens_rows(&jobs[t]);
    }
}

/* Scores of one GEMM block: about 16 MiB whatever the chunk. */
#define TS_SCRATCH_BYTES ((size_t)16 << 20)

int ts_rank_rows(const float *M, size_t n, size_t d, float R, const float *Q, size_t nq,
                 const int32_t *target, int32_t *rank, double *lse, double *score, const tw_cancel *cancel,
                 tw_progress *progress, long long done0)
{
    if (!M || !Q || !target || !rank || n < 1 || d < 1 || n >= (size_t)INT32_MAX || d > (size_t)INT_MAX ||
        nq > (size_t)INT_MAX)
        return TW_EINVAL;
    if (nq == 0) return TW_OK;
    for (size_t i = 0; i < nq; i++)
        if (target[i] < 0 || (size_t)target[i] >= n) return TW_EINVAL;
    size_t b = TS_SCRATCH_BYTES / sizeof(float) / nq;
    b = b / 16 * 16;
    if (b < 16) b = 16;
    if (b > n) b = n;
    if (b > (size_t)INT_MAX / nq) return TW_EINVAL;
    float *S = malloc(nq * b * sizeof *S);
    lens_row *rows = malloc(nq * sizeof *rows);
    int rc = TW_OK;
    if (!S || !rows) {
        rc = TW_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nq; i++) {
        const float *q = Q + i * d;
        lens_row *r = &rows[i];
        r->st = topk_dot(q, M + (size_t)target[i] * d, d);
        double err = topk_screen_error(d, sqrt(topk_dot(q, q, d)), R);
        if (!(err < INFINITY)) err = INFINITY; /* NaN: rescore every row */
        /* float thresholds outside [st - err, st + err]: a float score above
         * hi is above st + err, one below lo is below st - err */
        r->lo = nextafterf((float)(r->st - err), -INFINITY);
        r->hi = nextafterf((float)(r->st + err), INFINITY);
        r->mx = -INFINITY;
        r->sum = 0.0;
        r->above = 0;
    }
    const int threads = openblas_get_num_threads();
    for (size_t j0 = 0; j0 < n; j0 += b) {
        if ((rc = tw_cancel_check(cancel)) != TW_OK) goto out;
        size_t bj = n - j0 < b ? n - j0 : b;
        // S (nq, bj) = Q (nq, d) . M[j0 .. j0+bj)^T (d, bj)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)bj, (int)d, 1.0f, Q, (int)d,
                    M + j0 * d, (int)d, 0.0f, S, (int)bj);
        lens_block(
            (lens_job){.S = S, .Q = Q, .M = M, .bj = bj, .j0 = j0, .d = d, .target = target, .rows = rows},
            nq, threads);
        tw_progress_set(progress, done0 + (long long)((double)nq * (double)(j0 + bj) / (double)n));
    }
    for (size_t i = 0; i < nq; i++) {
        rank[i] = (int32_t)(1 + rows[i].above);
        if (lse) lse[i] = rows[i].mx + log(rows[i].sum);
        if (score) score[i] = rows[i].st;
    }
out:
    free(S);
    free(rows);
    return rc;
}

/* ---- The statistics ---- */

void traj_stats_result_free(traj_stats_result *r)
{
    if (!r) return;
    free(r->cells);
    free(r->t);
    free(r->rank);
    free(r->values);
    memset(r, 0, sizeof *r);
}

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
    int rc = ts_rank_rows(m->p.wte, V, d, R, c->q, c->n, c->tgt, c->rank, c->lse, c->score, ana_cancel(x),
                          ana_progress(x), *done);
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

int traj_stats(const gpt2_model *m, const ana_ctx *x, const ts_text *texts, size_t n_texts, size_t k,
               gpt2_gelu gelu, traj_stats_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    int rc = ana_check_model(m);
    if (rc != TW_OK) return rc;
    if (!texts && n_texts) return TW_EINVAL;
    const gpt2_config *cfg = &m->cfg;
    const size_t V = (size_t)cfg->vocab_size, d = (size_t)cfg->n_embd, L = (size_t)cfg->n_layer, S = L + 3;
    if (k < 1 || k > V) return TW_EK;
    traj_stats_result *r = out;
    r->n_states = S;
    r->k = k;
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
    const size_t P = r->n_positions;
    if (P > (size_t)INT32_MAX / S || P > SIZE_MAX / sizeof(double) / TS_N_STATS / S) return TW_ENOMEM;
    chunk c = {0};
    r->cells = calloc(S * TS_N_BUCKETS, sizeof *r->cells);
    r->t = malloc((P ? P : 1) * sizeof *r->t);
    r->rank = malloc((P ? P : 1) * S * sizeof *r->rank);
    r->values = malloc((P ? P : 1) * S * TS_N_STATS * sizeof *r->values);
    size_t ch = TS_CHUNK_ROWS;
    c.q = malloc(ch * d * sizeof *c.q);
    c.tgt = malloc(ch * sizeof *c.tgt);
    c.slot = malloc(ch * sizeof *c.slot);
    c.rank = malloc(ch * sizeof *c.rank);
    c.lse = malloc(ch * sizeof *c.lse);
    c.score = malloc(ch * sizeof *c.score);
    if (!r->cells || !r->t || !r->rank || !r->values || !c.q || !c.tgt || !c.slot || !c.rank || !c.lse ||
        !c.score) {
        rc = TW_ENOMEM;
        goto out;
    }
    const float R = topk_max_row_norm(m->p.wte, V, d);
    tw_progress_stage(ana_progress(x), "logit lens", (long long)(S * P));
    long long done = 0;
    gpt2_forward_opts fo = {
        .gelu = gelu, .logits = GPT2_LOGITS_NONE, .skip_attention = 1, .cancel = ana_cancel(x)};
    size_t p0 = 0; /* the first position of the current text */
    for (size_t i = 0; i < n_texts && rc == TW_OK; i++) {
        const ts_text *tx = &texts[i];
        if (tx->n < 2) continue;
        gpt2_forward_result *f = NULL;
        if ((rc = gpt2_forward(m, tx->ids, tx->n, &fo, &f)) != TW_OK) break;
        for (size_t p = 0; p + 1 < tx->n && rc == TW_OK; p++) {
            const size_t gp = p0 + p;
            r->t[gp] = (int32_t)p;
            const float *e_self = m->p.wte + (size_t)tx->ids[p] * d;
            const float *e_next = m->p.wte + (size_t)tx->ids[p + 1] * d;
            const float *fin = state_row(f, S - 1, p);
            for (size_t s = 0; s < S; s++) {
                const float *y = state_row(f, s, p);
                size_t sl = s * P + gp;
                r->values[(size_t)TS_COS_NEXT * S * P + sl] = cosine(y, e_next, d);
                r->values[(size_t)TS_COS_SELF * S * P + sl] = cosine(y, e_self, d);
                r->values[(size_t)TS_COS_FINAL * S * P + sl] = cosine(y, fin, d);
                memcpy(c.q + c.n * d, y, d * sizeof *c.q);
                c.tgt[c.n] = tx->ids[p + 1];
                c.slot[c.n] = sl;
                if (++c.n == ch) rc = flush_chunk(m, R, &c, r, x, &done);
            }
        }
        gpt2_forward_free(f);
        p0 += tx->n - 1;
    }
    if (rc == TW_OK) rc = flush_chunk(m, R, &c, r, x, &done);
    if (rc == TW_OK) {
        tw_progress_stage(ana_progress(x), "summaries", 1);
        rc = summarise_all(r);
        tw_progress_add(ana_progress(x), 1);
    }
out:
    free(c.q);
    free(c.tgt);
    free(c.slot);
    free(c.rank);
    free(c.lse);
    free(c.score);
    if (rc != TW_OK) traj_stats_result_free(r);
    return rc;
}
