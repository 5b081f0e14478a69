/* UMAP, part 3: the curve parameters a/b, the epoch schedule, and the SGD
 * layout optimisation (umap-learn's optimize_layout_euclidean). */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "umap_internal.h"

/* ---- a, b ------------------------------------------------------------- */

#define AB_POINTS 300

/* Residuals r = f(x) - y and Jacobian (AB_POINTS, 2) of
 * f(x) = 1 / (1 + a x^(2b)); returns the sum of squares (NaN if the curve
 * is undefined at these parameters). */
static double ab_eval(const double *x, const double *y, double a, double b,
                      double *r, double *jac)
{
    double cost = 0.0;
    for (int i = 0; i < AB_POINTS; i++) {
        double u = x[i] > 0.0 ? pow(x[i], 2.0 * b) : 0.0;
        double den = 1.0 + a * u;
        double f = 1.0 / den;
        r[i] = f - y[i];
        cost += r[i] * r[i];
        if (jac) {
            double g = -1.0 / (den * den);
            jac[2 * i] = g * u;
            jac[2 * i + 1] = x[i] > 0.0 ? g * a * u * 2.0 * log(x[i]) : 0.0;
        }
    }
    return cost;
}

int umap_find_ab(float spread, float min_dist, float *a_out, float *b_out)
{
    if (!(spread > 0.0f) || !(min_dist >= 0.0f) || !isfinite(spread) ||
        !isfinite(min_dist))
        return UMAP_EINVAL;
    double x[AB_POINTS], y[AB_POINTS], r[AB_POINTS], jac[2 * AB_POINTS],
        rn[AB_POINTS];
    for (int i = 0; i < AB_POINTS; i++) {
        x[i] = 3.0 * spread * i / (AB_POINTS - 1);
        y[i] = x[i] < min_dist ? 1.0 : exp(-(x[i] - min_dist) / spread);
    }
    /* Levenberg-Marquardt from (1, 1), as curve_fit's default start */
    double a = 1.0, b = 1.0, lambda = 1e-3;
    double cost = ab_eval(x, y, a, b, r, jac);
    int converged = 0;
    for (int it = 0; it < 1000 && !converged; it++) {
        double h00 = 0, h01 = 0, h11 = 0, g0 = 0, g1 = 0;
        for (int i = 0; i < AB_POINTS; i++) {
            h00 += jac[2 * i] * jac[2 * i];
            h01 += jac[2 * i] * jac[2 * i + 1];
            h11 += jac[2 * i + 1] * jac[2 * i + 1];
            g0 += jac[2 * i] * r[i];
            g1 += jac[2 * i + 1] * r[i];
        }
        for (;;) {
            double m00 = h00 * (1.0 + lambda), m11 = h11 * (1.0 + lambda);
            double det = m00 * m11 - h01 * h01;
            if (!(fabs(det) > 0.0) || lambda > 1e30)
                return UMAP_ENUMERIC;
            double da = -(m11 * g0 - h01 * g1) / det;
            double db = -(m00 * g1 - h01 * g0) / det;
            double an = a + da, bn = b + db;
            double cn = ab_eval(x, y, an, bn, rn, NULL);
            if (isfinite(cn) && cn <= cost) {
                double step = sqrt(da * da + db * db);
                double size = sqrt(an * an + bn * bn);
                converged = step <= 1e-12 * (size + 1e-12) ||
                            cost - cn <= 1e-16 * cost;
                a = an;
                b = bn;
                cost = ab_eval(x, y, a, b, r, jac);
                lambda = lambda / 10.0 > 1e-12 ? lambda / 10.0 : 1e-12;
                break;
            }
            lambda *= 10.0;
        }
    }
    if (!isfinite(a) || !isfinite(b))
        return UMAP_ENUMERIC;
    *a_out = (float)a;
    *b_out = (float)b;
    return UMAP_OK;
}

/* ---- epoch schedule --------------------------------------------------- */

void umap_epochs_per_sample(const float *w, size_t nnz, size_t n_epochs,
                            double *eps)
{
    double wmax = 0.0;
    for (size_t i = 0; i < nnz; i++)
        if (w[i] > wmax)
            wmax = w[i];
    for (size_t i = 0; i < nnz; i++) {
        double samples = wmax > 0.0 ? (double)n_epochs * (w[i] / wmax) : 0.0;
        eps[i] = samples > 0.0 ? (double)n_epochs / samples : -1.0;
    }
}

/* ---- SGD ---------------------------------------------------------------- */

static inline float clip4(float v)
{
    return v > 4.0f ? 4.0f : (v < -4.0f ? -4.0f : v);
}

static inline __attribute__((always_inline)) float rdist(const float *x, const float *y, size_t nc)
{
    float s = 0.0f;
    for (size_t d = 0; d < nc; d++) {
        float t = x[d] - y[d];
        s += t * t;
    }
    return s;
}

/* Learning rate of epoch e: umap-learn runs epoch 0 and 1 at alpha0 and
 * then decays linearly (it updates alpha after each epoch from the epoch
 * just finished). */
static inline float epoch_alpha(float alpha0, size_t e, size_t n_epochs)
{
    size_t done = e > 0 ? e - 1 : 0;
    return alpha0 * (1.0f - (float)done / (float)n_epochs);
}

/* Pull of cur towards other: umap-learn's attractive update, applied
 * `times` times from one gradient evaluation (2 in a fit: the edge and,
 * standing in for move_other, its reverse). */
static inline __attribute__((always_inline)) void
attract(float *cur, const float *other, size_t nc, float a, float b,
        float step)
{
    float d2 = rdist(cur, other, nc);
    float gc = 0.0f;
    if (d2 > 0.0f) {
        float pb = powf(d2, b);
        gc = (-2.0f * a * b * (pb / d2)) / (a * pb + 1.0f);
    }
    for (size_t d = 0; d < nc; d++)
        cur[d] += clip4(gc * (cur[d] - other[d])) * step;
}

/* Adds the clipped repulsive gradient of one negative sample at cur into
 * acc; same_vertex when the sample is cur's own vertex (a zero distance
 * then means "skip", otherwise umap-learn pushes by 4 in every
 * coordinate). The negative samples of one positive sample are evaluated at
 * the same position and applied together: their power functions do not
 * wait for each other. */
static inline __attribute__((always_inline)) void
repel_grad(const float *cur, const float *other, size_t nc, float a, float b,
           float gamma, int same_vertex, float *acc)
{
    float d2 = rdist(cur, other, nc);
    float gc;
    if (d2 > 0.0f)
        gc = (2.0f * gamma * b) / ((0.001f + d2) * (a * powf(d2, b) + 1.0f));
    else if (same_vertex)
        return;
    else
        gc = 0.0f;
    for (size_t d = 0; d < nc; d++)
        acc[d] += gc > 0.0f ? clip4(gc * (cur[d] - other[d])) : 4.0f;
}

typedef struct {
    float *emb;        /* (n, nc) live positions; a thread writes its rows */
    float *snap;       /* (n, nc) positions at the start of the epoch */
    size_t n, nc;
    const umap_graph *g;
    const double *eps;
    double *next_sample;     /* (nnz) */
    double *next_neg;        /* (nnz) */
    double *eps_neg;         /* (nnz) */
    size_t n_epochs;
    float a, b, gamma, alpha0;
    size_t neg_rate;
    size_t n_threads;
    const size_t *vstart;    /* (n_threads + 1) vertex ranges */
    uint64_t seed;
    umap_progress *prog;
    pthread_barrier_t barrier;
    int stop;                /* written by thread 0 between barriers */
    /* start gate: workers wait until every thread exists (or abort) */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int gate;                /* 0 wait, 1 go, -1 abort */
} sgd_shared;

typedef struct {
    sgd_shared *sh;
    size_t t;
} sgd_arg;

/* One epoch of thread t's edges; inlined with a constant nc for the
 * common widths so the coordinate loops unroll. */
static inline __attribute__((always_inline)) void
sgd_epoch_nc(sgd_shared *sh, size_t t, size_t e, uint64_t *rng, const size_t nc)
{
    const umap_graph *g = sh->g;
    const size_t v0 = sh->vstart[t], v1 = sh->vstart[t + 1];
    const float alpha = epoch_alpha(sh->alpha0, e, sh->n_epochs);
    const float a = sh->a, b = sh->b, gamma = sh->gamma;
    const double en = (double)e;
    float *emb = sh->emb;
    const float *snap = sh->snap ? sh->snap : sh->emb;
    for (size_t j = v0; j < v1; j++) {
        float *cur = emb + j * nc;
        for (size_t i = g->indptr[j]; i < g->indptr[j + 1]; i++) {
            if (sh->eps[i] <= 0.0 || !(sh->next_sample[i] <= en))
                continue;
            size_t k = (size_t)g->indices[i];
            const float *other = (k >= v0 && k < v1) ? emb + k * nc
                                                      : snap + k * nc;
            /* edge (j, k) and, for umap-learn's move_other, (k, j) */
            attract(cur, other, nc, a, b, 2.0f * alpha);
            sh->next_sample[i] += sh->eps[i];
            long n_neg = (long)((en - sh->next_neg[i]) / sh->eps_neg[i]);
            float acc[UMAP_MAX_COMPONENTS] = {0};
            for (long p = 0; p < n_neg; p++) {
                size_t s = umap_rng_below(rng, (uint32_t)sh->n);
                const float *o = (s >= v0 && s < v1) ? emb + s * nc
                                                      : snap + s * nc;
                repel_grad(cur, o, nc, a, b, gamma, s == j, acc);
            }
            for (size_t d = 0; d < nc; d++)
                cur[d] += acc[d] * alpha;
            sh->next_neg[i] += (double)n_neg * sh->eps_neg[i];
        }
    }
}

static void sgd_epoch(sgd_shared *sh, size_t t, size_t e, uint64_t *rng)
{
    switch (sh->nc) {
    case 2:
        sgd_epoch_nc(sh, t, e, rng, 2);
        break;
    case 3:
        sgd_epoch_nc(sh, t, e, rng, 3);
        break;
    default:
        sgd_epoch_nc(sh, t, e, rng, sh->nc);
        break;
    }
}

static void *sgd_worker(void *p)
{
    sgd_arg *arg = p;
    sgd_shared *sh = arg->sh;
    const size_t t = arg->t;
    if (sh->n_threads > 1) {
        pthread_mutex_lock(&sh->gate_mu);
        while (sh->gate == 0)
            pthread_cond_wait(&sh->gate_cv, &sh->gate_mu);
        int go = sh->gate;
        pthread_mutex_unlock(&sh->gate_mu);
        if (go < 0)
            return NULL;
    }
    uint64_t rng = umap_rng_derive(sh->seed, t);
    const size_t v0 = sh->vstart[t], v1 = sh->vstart[t + 1], nc = sh->nc;
    for (size_t e = 0; e < sh->n_epochs; e++) {
        sgd_epoch(sh, t, e, &rng);
        if (sh->n_threads > 1) {
            pthread_barrier_wait(&sh->barrier);
            memcpy(sh->snap + v0 * nc, sh->emb + v0 * nc,
                   (v1 - v0) * nc * sizeof(float));
        }
        if (t == 0) {
            if (sh->prog)
                atomic_store(&sh->prog->done, (long)(e + 1));
            sh->stop = umap_cancelled(sh->prog);
        }
        if (sh->n_threads > 1)
            pthread_barrier_wait(&sh->barrier);
        if (sh->stop)
            break;
    }
    return NULL;
}

int umap_optimize_fit(float *emb, size_t n, size_t nc, const umap_graph *g,
                      const double *eps, size_t n_epochs, float a, float b,
                      float gamma, float alpha0, size_t neg_rate,
                      size_t n_threads, uint64_t seed, umap_progress *prog)
{
    const size_t nnz = g->nnz;
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > n)
        n_threads = n;
    sgd_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.emb = emb;
    sh.n = n;
    sh.nc = nc;
    sh.g = g;
    sh.eps = eps;
    sh.n_epochs = n_epochs;
    sh.a = a;
    sh.b = b;
    sh.gamma = gamma;
    sh.alpha0 = alpha0;
    sh.neg_rate = neg_rate;
    sh.n_threads = n_threads;
    sh.seed = seed;
    sh.prog = prog;
    sh.next_sample = malloc((nnz ? nnz : 1) * sizeof(double));
    sh.next_neg = malloc((nnz ? nnz : 1) * sizeof(double));
    sh.eps_neg = malloc((nnz ? nnz : 1) * sizeof(double));
    size_t *vstart = malloc((n_threads + 1) * sizeof *vstart);
    pthread_t *tid = calloc(n_threads, sizeof *tid);
    sgd_arg *args = calloc(n_threads, sizeof *args);
    if (n_threads > 1)
        sh.snap = malloc(n * nc * sizeof(float));
    int rc = UMAP_ENOMEM;
    if (!sh.next_sample || !sh.next_neg || !sh.eps_neg || !vstart || !tid ||
        !args || (n_threads > 1 && !sh.snap))
        goto done;
    /* umap-learn: a negative sample every eps/neg_rate epochs */
    for (size_t i = 0; i < nnz; i++) {
        sh.eps_neg[i] = eps[i] / (double)neg_rate;
        sh.next_neg[i] = sh.eps_neg[i];
        sh.next_sample[i] = eps[i];
    }
    /* split vertices so each thread gets a similar number of samples */
    double total = 0.0;
    for (size_t i = 0; i < nnz; i++)
        if (eps[i] > 0.0)
            total += 1.0 / eps[i];
    vstart[0] = 0;
    {
        size_t t = 1;
        double acc = 0.0;
        for (size_t j = 0; j < n && t < n_threads; j++) {
            for (size_t i = g->indptr[j]; i < g->indptr[j + 1]; i++)
                if (eps[i] > 0.0)
                    acc += 1.0 / eps[i];
            while (t < n_threads && acc >= total * (double)t / (double)n_threads)
                vstart[t++] = j + 1;
        }
        while (t < n_threads)
            vstart[t++] = n;
        vstart[n_threads] = n;
    }
    sh.vstart = vstart;
    umap_progress_set(prog, UMAP_STAGE_OPTIMIZE, 0, (long)n_epochs);
    if (n_threads == 1) {
        args[0] = (sgd_arg){&sh, 0};
        sgd_worker(&args[0]);
    } else {
        memcpy(sh.snap, emb, n * nc * sizeof(float));
        pthread_barrier_init(&sh.barrier, NULL, (unsigned)n_threads);
        pthread_mutex_init(&sh.gate_mu, NULL);
        pthread_cond_init(&sh.gate_cv, NULL);
        size_t started = 1;
        for (size_t t = 1; t < n_threads; t++) {
            args[t] = (sgd_arg){&sh, t};
            if (pthread_create(&tid[t], NULL, sgd_worker, &args[t]) != 0)
                break;
            started++;
        }
        pthread_mutex_lock(&sh.gate_mu);
        sh.gate = started == n_threads ? 1 : -1;
        pthread_cond_broadcast(&sh.gate_cv);
        pthread_mutex_unlock(&sh.gate_mu);
        if (started == n_threads) {
            args[0] = (sgd_arg){&sh, 0};
            sgd_worker(&args[0]);
        }
        for (size_t t = 1; t < started; t++)
            pthread_join(tid[t], NULL);
        pthread_barrier_destroy(&sh.barrier);
        pthread_mutex_destroy(&sh.gate_mu);
        pthread_cond_destroy(&sh.gate_cv);
        if (started != n_threads)
            goto done; /* UMAP_ENOMEM: could not start the threads */
    }
    rc = sh.stop ? UMAP_ECANCELED : UMAP_OK;
done:
    free(sh.next_sample);
    free(sh.next_neg);
    free(sh.eps_neg);
    free(sh.snap);
    free(vstart);
    free(tid);
    free(args);
    return rc;
}

void umap_optimize_transform(float *head, size_t m, const float *tail,
                             size_t n, size_t nc, const size_t *indptr,
                             const int32_t *indices, const double *eps,
                             size_t n_epochs, float a, float b, float gamma,
                             float alpha0, size_t neg_rate, uint64_t seed)
{
    for (size_t j = 0; j < m; j++) {
        float *cur = head + j * nc;
        uint64_t rng = umap_rng_derive(seed, j);
        const size_t e0 = indptr[j], e1 = indptr[j + 1];
        /* per-edge schedule of this point (at most n_neighbors edges) */
        double next_sample[UMAP_MAX_NEIGHBORS], next_neg[UMAP_MAX_NEIGHBORS],
            eps_neg[UMAP_MAX_NEIGHBORS];
        for (size_t i = e0; i < e1; i++) {
            eps_neg[i - e0] = eps[i] / (double)neg_rate;
            next_neg[i - e0] = eps_neg[i - e0];
            next_sample[i - e0] = eps[i];
        }
        for (size_t e = 0; e < n_epochs; e++) {
            const float alpha = epoch_alpha(alpha0, e, n_epochs);
            const double en = (double)e;
            for (size_t i = e0; i < e1; i++) {
                size_t q = i - e0;
                if (eps[i] <= 0.0 || !(next_sample[q] <= en))
                    continue;
                attract(cur, tail + (size_t)indices[i] * nc, nc, a, b, alpha);
                next_sample[q] += eps[i];
                long n_neg = (long)((en - next_neg[q]) / eps_neg[q]);
                float acc[UMAP_MAX_COMPONENTS] = {0};
                for (long p = 0; p < n_neg; p++) {
                    size_t s = umap_rng_below(&rng, (uint32_t)n);
                    repel_grad(cur, tail + s * nc, nc, a, b, gamma, 0, acc);
                }
                for (size_t d = 0; d < nc; d++)
                    cur[d] += acc[d] * alpha;
                next_neg[q] += (double)n_neg * eps_neg[q];
            }
        }
    }
}
