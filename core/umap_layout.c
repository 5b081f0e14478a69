/* UMAP, part 3: the curve parameters a/b, the epoch schedule, and the SGD
 * layout optimisation (umap-learn's optimize_layout_euclidean). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
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
#pragma GCC unroll 16
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

/* Vertices per SGD chunk (at most UMAP_SGD_MAX_CHUNKS chunks). */
#define UMAP_SGD_CHUNK_MIN 128
#define UMAP_SGD_MAX_CHUNKS 64

typedef struct {
    float *emb;        /* (n, nc) live positions */
    float *snap[2];    /* (n, nc) each: positions at the end of the previous
                          epoch, alternating: epoch e reads snap[e % 2] and
                          leaves its result in snap[(e + 1) % 2] */
    size_t n, nc;
    const umap_graph *g;
    const double *eps;
    double *next_sample;     /* (nnz) */
    double *next_neg;        /* (nnz) */
    double *eps_neg;         /* (nnz) */
    size_t n_epochs;
    float a, b, gamma, alpha0;
    size_t n_chunks;
    const size_t *cstart;    /* (n_chunks + 1) vertex ranges */
    const size_t *cmid;      /* (n_chunks) first edge of each chunk's
                                second half */
    const int32_t *head;     /* (nnz) row of each edge */
    uint64_t *rng;           /* (2 n_chunks) one stream per chunk half */
    atomic_size_t next_chunk[2]; /* epoch e claims chunks from [e % 2] */
    size_t n_threads;
    umap_progress *prog;
    pthread_barrier_t barrier;
    atomic_int stop[2];      /* thread 0's cancel verdict after epoch e in
                                stop[e % 2], read by all after the barrier */
    int stopped;             /* epochs were cut short */
    /* start gate: workers wait until every thread exists (or abort) */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int gate;                /* 0 wait, 1 go, -1 abort */
} sgd_shared;

typedef struct {
    sgd_shared *sh;
    size_t t;
} sgd_arg;

/* One positive sample of edge i = (j, k), due in this epoch; vertices of
 * the chunk [v0, v1) are read live, the others from snap. */
static inline __attribute__((always_inline)) void
sgd_edge(sgd_shared *sh, size_t i, float alpha, double en, size_t v0,
         size_t v1, const float *snap, uint64_t *rng, const size_t nc)
{
    float *emb = sh->emb;
    const float a = sh->a, b = sh->b, gamma = sh->gamma;
    const size_t j = (size_t)sh->head[i], k = (size_t)sh->g->indices[i];
    float *cur = emb + j * nc;
    const float *other = (k >= v0 && k < v1) ? emb + k * nc : snap + k * nc;
    sh->next_sample[i] += sh->eps[i];
    long n_neg = (long)((en - sh->next_neg[i]) / sh->eps_neg[i]);
    /* edge (j, k) and, for umap-learn's move_other, (k, j) */
    attract(cur, other, nc, a, b, 2.0f * alpha);
    float acc[UMAP_MAX_COMPONENTS] = {0};
    for (long p = 0; p < n_neg; p++) {
        size_t s = umap_rng_below(rng, (uint32_t)sh->n);
        const float *o = (s >= v0 && s < v1) ? emb + s * nc : snap + s * nc;
        repel_grad(cur, o, nc, a, b, gamma, s == j, acc);
    }
#pragma GCC unroll 16
    for (size_t d = 0; d < nc; d++)
        cur[d] += acc[d] * alpha;
    sh->next_neg[i] += (double)n_neg * sh->eps_neg[i];
}

/* First edge at or after i, before end, that is due in epoch en. */
static inline size_t next_due(const sgd_shared *sh, size_t i, size_t end,
                              double en)
{
    while (i < end && !(sh->eps[i] > 0.0 && sh->next_sample[i] <= en))
        i++;
    return i;
}

/* Epoch e of chunk c. The chunk's vertices form two halves whose edges are
 * processed alternately, one sample of each in turn, each half with its own
 * random stream: the two update chains are independent, so the CPU
 * overlaps their work. Then the chunk's rows go to the next snapshot.
 * Inlined with a constant nc for the common widths. */
static inline __attribute__((always_inline)) void
sgd_chunk_nc(sgd_shared *sh, size_t c, size_t e, const size_t nc)
{
    const size_t v0 = sh->cstart[c], v1 = sh->cstart[c + 1];
    const float alpha = epoch_alpha(sh->alpha0, e, sh->n_epochs);
    const double en = (double)e;
    const float *snap = sh->snap[e % 2];
    uint64_t *rng = sh->rng + 2 * c;
    const size_t ea = sh->g->indptr[v0], em = sh->cmid[c],
                 eb = sh->g->indptr[v1];
    size_t ia = next_due(sh, ea, em, en), ib = next_due(sh, em, eb, en);
    while (ia < em && ib < eb) {
        sgd_edge(sh, ia, alpha, en, v0, v1, snap, &rng[0], nc);
        sgd_edge(sh, ib, alpha, en, v0, v1, snap, &rng[1], nc);
        ia = next_due(sh, ia + 1, em, en);
        ib = next_due(sh, ib + 1, eb, en);
    }
    for (; ia < em; ia = next_due(sh, ia + 1, em, en))
        sgd_edge(sh, ia, alpha, en, v0, v1, snap, &rng[0], nc);
    for (; ib < eb; ib = next_due(sh, ib + 1, eb, en))
        sgd_edge(sh, ib, alpha, en, v0, v1, snap, &rng[1], nc);
    memcpy(sh->snap[(e + 1) % 2] + v0 * nc, sh->emb + v0 * nc,
           (v1 - v0) * nc * sizeof(float));
}

static void sgd_chunk(sgd_shared *sh, size_t c, size_t e)
{
    switch (sh->nc) {
    case 2:
        sgd_chunk_nc(sh, c, e, 2);
        break;
    case 3:
        sgd_chunk_nc(sh, c, e, 3);
        break;
    default:
        sgd_chunk_nc(sh, c, e, sh->nc);
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
    for (size_t e = 0; e < sh->n_epochs; e++) {
        /* chunks go to whichever thread is free: a thread the scheduler
         * holds back delays the epoch by one chunk at most */
        size_t c;
        while ((c = atomic_fetch_add(&sh->next_chunk[e % 2], 1)) < sh->n_chunks)
            sgd_chunk(sh, c, e);
        if (t == 0) {
            if (sh->prog)
                atomic_store(&sh->prog->done, (long)(e + 1));
            atomic_store(&sh->stop[e % 2], umap_cancelled(sh->prog));
        }
        if (sh->n_threads > 1)
            pthread_barrier_wait(&sh->barrier);
        /* counter e % 2 is next used in epoch e + 2, after the next
         * barrier, which thread 0 reaches only after this reset */
        if (t == 0)
            atomic_store(&sh->next_chunk[e % 2], 0);
        if (atomic_load(&sh->stop[e % 2])) {
            if (t == 0)
                sh->stopped = 1;
            break;
        }
    }
    return NULL;
}

int umap_optimize_fit(float *emb, size_t n, size_t nc, const umap_graph *g,
                      const double *eps, size_t n_epochs, float a, float b,
                      float gamma, float alpha0, size_t neg_rate,
                      size_t n_threads, uint64_t seed, umap_progress *prog)
{
    const size_t nnz = g->nnz;
    size_t n_chunks = n / UMAP_SGD_CHUNK_MIN;
    if (n_chunks < 1)
        n_chunks = 1;
    if (n_chunks > UMAP_SGD_MAX_CHUNKS)
        n_chunks = UMAP_SGD_MAX_CHUNKS;
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > n_chunks)
        n_threads = n_chunks;
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
    sh.n_chunks = n_chunks;
    sh.n_threads = n_threads;
    sh.prog = prog;
    atomic_init(&sh.next_chunk[0], 0);
    atomic_init(&sh.next_chunk[1], 0);
    atomic_init(&sh.stop[0], 0);
    atomic_init(&sh.stop[1], 0);
    sh.next_sample = malloc((nnz ? nnz : 1) * sizeof(double));
    sh.next_neg = malloc((nnz ? nnz : 1) * sizeof(double));
    sh.eps_neg = malloc((nnz ? nnz : 1) * sizeof(double));
    sh.snap[0] = malloc(n * nc * sizeof(float));
    sh.snap[1] = malloc(n * nc * sizeof(float));
    size_t *split = malloc((2 * n_chunks + 1) * sizeof *split);
    size_t *cstart = malloc((n_chunks + 1) * sizeof *cstart);
    size_t *cmid = malloc(n_chunks * sizeof *cmid);
    int32_t *head = malloc((nnz ? nnz : 1) * sizeof *head);
    sh.rng = malloc(2 * n_chunks * sizeof *sh.rng);
    pthread_t *tid = calloc(n_threads, sizeof *tid);
    sgd_arg *args = calloc(n_threads, sizeof *args);
    int rc = UMAP_ENOMEM;
    if (!sh.next_sample || !sh.next_neg || !sh.eps_neg || !sh.snap[0] ||
        !sh.snap[1] || !split || !cstart || !cmid || !head || !sh.rng ||
        !tid || !args)
        goto done;
    /* umap-learn: a negative sample every eps/neg_rate epochs */
    for (size_t i = 0; i < nnz; i++) {
        sh.eps_neg[i] = eps[i] / (double)neg_rate;
        sh.next_neg[i] = sh.eps_neg[i];
        sh.next_sample[i] = eps[i];
    }
    /* 2 n_chunks vertex ranges of similar numbers of samples; chunk c is
     * ranges 2c and 2c + 1. The split depends on the graph only, not on
     * the thread count. */
    const size_t parts = 2 * n_chunks;
    double total = 0.0;
    for (size_t i = 0; i < nnz; i++)
        if (eps[i] > 0.0)
            total += 1.0 / eps[i];
    split[0] = 0;
    {
        size_t t = 1;
        double acc = 0.0;
        for (size_t j = 0; j < n && t < parts; j++) {
            for (size_t i = g->indptr[j]; i < g->indptr[j + 1]; i++)
                if (eps[i] > 0.0)
                    acc += 1.0 / eps[i];
            while (t < parts && acc >= total * (double)t / (double)parts)
                split[t++] = j + 1;
        }
        while (t < parts)
            split[t++] = n;
        split[parts] = n;
    }
    for (size_t c = 0; c <= n_chunks; c++)
        cstart[c] = split[2 * c];
    for (size_t c = 0; c < n_chunks; c++)
        cmid[c] = g->indptr[split[2 * c + 1]];
    for (size_t j = 0; j < n; j++)
        for (size_t i = g->indptr[j]; i < g->indptr[j + 1]; i++)
            head[i] = (int32_t)j;
    for (size_t r = 0; r < 2 * n_chunks; r++)
        sh.rng[r] = umap_rng_derive(seed, r);
    sh.cstart = cstart;
    sh.cmid = cmid;
    sh.head = head;
    memcpy(sh.snap[0], emb, n * nc * sizeof(float));
    umap_progress_set(prog, UMAP_STAGE_OPTIMIZE, 0, (long)n_epochs);
    if (n_threads == 1) {
        args[0] = (sgd_arg){&sh, 0};
        sgd_worker(&args[0]);
    } else {
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
    rc = sh.stopped ? UMAP_ECANCELED : UMAP_OK;
done:
    free(sh.next_sample);
    free(sh.next_neg);
    free(sh.eps_neg);
    free(sh.snap[0]);
    free(sh.snap[1]);
    free(split);
    free(cstart);
    free(cmid);
    free(head);
    free(sh.rng);
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
