/* UMAP, part 3: the curve parameters a/b, the epoch schedule, and the SGD
 * layout optimisation (umap-learn's optimize_layout_euclidean). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/scratch.h"
#include "core/nn/par.h"
#include "core/proj/umap_internal.h"

/* ---- a, b ------------------------------------------------------------- */

#define AB_POINTS 300

/* Residuals r = f(x) - y and Jacobian (AB_POINTS, 2) of
 * f(x) = 1 / (1 + a x^(2b)); returns the sum of squares (NaN if the curve
 * is undefined at these parameters). */
static double ab_eval(const double *x, const double *y, double a, double b, double *r, double *jac)
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
    if (!(spread > 0.0f) || !(min_dist >= 0.0f) || !isfinite(spread) || !isfinite(min_dist)) return TW_EINVAL;
    double x[AB_POINTS], y[AB_POINTS], r[AB_POINTS], jac[2 * AB_POINTS], rn[AB_POINTS];
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
            if (!(fabs(det) > 0.0) || lambda > 1e30) return TW_ENUMERIC;
            double da = -(m11 * g0 - h01 * g1) / det;
            double db = -(m00 * g1 - h01 * g0) / det;
            double an = a + da, bn = b + db;
            double cn = ab_eval(x, y, an, bn, rn, NULL);
            if (isfinite(cn) && cn <= cost) {
                double step = sqrt(da * da + db * db);
                double size = sqrt(an * an + bn * bn);
                converged = step <= 1e-12 * (size + 1e-12) || cost - cn <= 1e-16 * cost;
                a = an;
                b = bn;
                cost = ab_eval(x, y, a, b, r, jac);
                lambda = lambda / 10.0 > 1e-12 ? lambda / 10.0 : 1e-12;
                break;
            }
            lambda *= 10.0;
        }
    }
    if (!isfinite(a) || !isfinite(b)) return TW_ENUMERIC;
    *a_out = (float)a;
    *b_out = (float)b;
    return TW_OK;
}

/* ---- epoch schedule --------------------------------------------------- */

void umap_epochs_per_sample(const float *w, size_t nnz, size_t n_epochs, double *eps)
{
    double wmax = 0.0;
    for (size_t i = 0; i < nnz; i++)
        if (w[i] > wmax) wmax = w[i];
    for (size_t i = 0; i < nnz; i++) {
        double samples = wmax > 0.0 ? (double)n_epochs * (w[i] / wmax) : 0.0;
        eps[i] = samples > 0.0 ? (double)n_epochs / samples : -1.0;
    }
}

/* ---- SGD ---------------------------------------------------------------- */

/* Learning rate of epoch e: umap-learn runs epoch 0 and 1 at alpha0 and
 * then decays linearly (it updates alpha after each epoch from the epoch
 * just finished). */
static inline float epoch_alpha(float alpha0, size_t e, size_t n_epochs)
{
    size_t done = e > 0 ? e - 1 : 0;
    return alpha0 * (1.0f - (float)done / (float)n_epochs);
}

/* Negative samples are evaluated in blocks of UMAP_NEG_BLOCK lanes, as
 * UMAP_NEG_VECS vectors of 4. */
#define UMAP_NEG_VECS  2
#define UMAP_NEG_BLOCK (4 * UMAP_NEG_VECS)

/* Lanes i0..i3 of the 8 lanes of (x, y): GCC >= 12 and clang have
 * __builtin_shufflevector, older GCC only __builtin_shuffle. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define UMAP_SHUFFLE(x, y, i0, i1, i2, i3) __builtin_shufflevector(x, y, i0, i1, i2, i3)
#endif
#endif
#ifndef UMAP_SHUFFLE
#define UMAP_SHUFFLE(x, y, i0, i1, i2, i3) __builtin_shuffle(x, y, (umap_v4i){i0, i1, i2, i3})
#endif

/* Floats readable past the last row of the SGD's position buffers. */
#define UMAP_ROW_PAD 4

/* Lane q of o[d] = src[q][d] (q < 4): four rows as vectors per
 * coordinate, built in registers (storing lanes one by one and loading the
 * vector back would stall store forwarding). Width 3 with `padded` (every
 * src row has a readable float after it): four 16-byte row loads (the 4th
 * float is the next row's, or padding) and a 4x4 transpose. */
static inline __attribute__((always_inline)) void gather_rows(const float *const *src, size_t nc, int padded,
                                                              umap_v4f *o)
{
    const float *p0 = src[0], *p1 = src[1], *p2 = src[2], *p3 = src[3];
    if (nc == 3 && padded) {
        umap_v4f l0, l1, l2, l3;
        memcpy(&l0, p0, sizeof l0);
        memcpy(&l1, p1, sizeof l1);
        memcpy(&l2, p2, sizeof l2);
        memcpy(&l3, p3, sizeof l3);
        umap_v4f t0 = UMAP_SHUFFLE(l0, l1, 0, 4, 1, 5); /* x0 x1 y0 y1 */
        umap_v4f t1 = UMAP_SHUFFLE(l2, l3, 0, 4, 1, 5); /* x2 x3 y2 y3 */
        umap_v4f t2 = UMAP_SHUFFLE(l0, l1, 2, 6, 3, 7); /* z0 z1 .. .. */
        umap_v4f t3 = UMAP_SHUFFLE(l2, l3, 2, 6, 3, 7); /* z2 z3 .. .. */
        o[0] = UMAP_SHUFFLE(t0, t1, 0, 1, 4, 5);
        o[1] = UMAP_SHUFFLE(t0, t1, 2, 3, 6, 7);
        o[2] = UMAP_SHUFFLE(t2, t3, 0, 1, 4, 5);
        return;
    }
#pragma GCC unroll 16
    for (size_t d = 0; d < nc; d++) {
        const umap_v4f t = {p0[d], p1[d], p2[d], p3[d]};
        o[d] = t;
    }
}

/* Adds to acc (nc) the clipped gradients of one block of a positive
 * sample at cur, all evaluated at cur, lane q of vector v weighted by
 * lane q of wv[v] (0 for lanes not drawn); lane 4 v + q reads row
 * src[4 v + q] (padded: see gather_rows). With `first`, lane 0 is the
 * edge's other end: umap-learn's attraction -2ab d2^(b-1) / (a d2^b + 1)
 * (0 at d2 = 0). The other lanes are negative samples: repulsion
 * 2 gamma b / ((0.001 + d2) (a d2^b + 1)), and at d2 = 0 (or for
 * gamma = 0) umap-learn's push by 4 in every coordinate. Lanes are summed
 * in a fixed order. One vector at a time, to stay within the registers. */
static inline __attribute__((always_inline)) void sample_block(const float *cur, const float *const *src,
                                                               int padded, const umap_v4f *wv, int first,
                                                               size_t nc, float a, float b, float gamma,
                                                               float *acc)
{
    const umap_v4f zero = {0.0f, 0.0f, 0.0f, 0.0f};
    const umap_v4f four = {4.0f, 4.0f, 4.0f, 4.0f};
    const umap_v4f mfour = -four;
    const umap_v4i no = {0, 0, 0, 0};
    const umap_v4i lane0 = {-1, 0, 0, 0};
    const umap_v4f flat0 = {0.0f, 4.0f, 4.0f, 4.0f};
    const float rep_num = 2.0f * gamma * b, att_num = -2.0f * a * b;
    umap_v4f sum[UMAP_MAX_COMPONENTS] = {{0}};
    for (size_t v = 0; v < UMAP_NEG_VECS; v++) {
        const umap_v4i att = (first && v == 0) ? lane0 : no;
        const umap_v4f flat = (first && v == 0) ? flat0 : four;
        umap_v4f o[UMAP_MAX_COMPONENTS] = {{0}};
        gather_rows(src + 4 * v, nc, padded, o);
        umap_v4f d2 = zero;
#pragma GCC unroll 16
        for (size_t d = 0; d < nc; d++) {
            o[d] = cur[d] - o[d];
            d2 += o[d] * o[d];
        }
        umap_v4f pb = umap_pow_fast4(d2, b);
        umap_v4f num = umap_v4_select(att, att_num * pb, rep_num + zero);
        umap_v4f den = umap_v4_select(att, d2, 0.001f + d2);
        umap_v4f c = num / (den * (a * pb + 1.0f));
        /* the gradient where d2 > 0 (for a negative sample: and c > 0),
         * elsewhere flat */
        umap_v4i use = (d2 > zero) & (att | (c > zero));
#pragma GCC unroll 16
        for (size_t d = 0; d < nc; d++) {
            umap_v4f t = umap_v4_min(umap_v4_max(c * o[d], mfour), four);
            sum[d] += umap_v4_select(use, t, flat) * wv[v];
        }
    }
    if (nc == 3) {
        /* transpose (sum x, y, z, 0) so that one vector addition tree gives
         * the three lane sums, in the same order as below */
        umap_v4f t0 = UMAP_SHUFFLE(sum[0], sum[1], 0, 4, 1, 5); /* x0 y0 x1 y1 */
        umap_v4f t1 = UMAP_SHUFFLE(sum[2], zero, 0, 4, 1, 5);   /* z0 0 z1 0 */
        umap_v4f t2 = UMAP_SHUFFLE(sum[0], sum[1], 2, 6, 3, 7); /* x2 y2 x3 y3 */
        umap_v4f t3 = UMAP_SHUFFLE(sum[2], zero, 2, 6, 3, 7);   /* z2 0 z3 0 */
        umap_v4f l0 = UMAP_SHUFFLE(t0, t1, 0, 1, 4, 5);         /* lane 0 */
        umap_v4f l1 = UMAP_SHUFFLE(t0, t1, 2, 3, 6, 7);         /* lane 1 */
        umap_v4f l2 = UMAP_SHUFFLE(t2, t3, 0, 1, 4, 5);         /* lane 2 */
        umap_v4f l3 = UMAP_SHUFFLE(t2, t3, 2, 3, 6, 7);         /* lane 3 */
        umap_v4f h = (l0 + l1) + (l2 + l3);
        acc[0] += h[0];
        acc[1] += h[1];
        acc[2] += h[2];
        return;
    }
#pragma GCC unroll 16
    for (size_t d = 0; d < nc; d++) acc[d] += (sum[d][0] + sum[d][1]) + (sum[d][2] + sum[d][3]);
}

/* Lane weights of a block of which the first `used` lanes (0..8) count. */
static inline void lane_weights(long used, float att_w, int first, umap_v4f *wv)
{
    for (size_t v = 0; v < UMAP_NEG_VECS; v++) {
        const long base = 4 * (long)v;
        const umap_v4f t = {base < used ? 1.0f : 0.0f, base + 1 < used ? 1.0f : 0.0f,
                            base + 2 < used ? 1.0f : 0.0f, base + 3 < used ? 1.0f : 0.0f};
        wv[v] = t;
    }
    if (first) wv[0][0] = att_w;
}

/* Vertices per SGD chunk (at most UMAP_SGD_MAX_CHUNKS chunks). */
#define UMAP_SGD_CHUNK_MIN  128
#define UMAP_SGD_MAX_CHUNKS 64

typedef struct {
    float *emb;     /* (n, nc) live positions */
    float *snap[2]; /* (n, nc) each: positions at the end of the previous
                          epoch, alternating: epoch e reads snap[e % 2] and
                          leaves its result in snap[(e + 1) % 2] */
    size_t n, nc;
    const umap_graph *g;
    /* sampling schedule, integers: edge i's relative weight w / max w as
     * wfix[i] / 2^31; it has been sampled floor(e wfix / 2^31) times by
     * epoch e (umap-learn: every eps = max w / w epochs, from epoch eps
     * on), is next due in epoch due[i] and was last sampled in prev[i]
     * (0: never) */
    uint32_t *wfix; /* (nnz) */
    uint32_t *due;  /* (nnz) */
    uint32_t *prev; /* (nnz) */
    uint64_t neg_rate;
    size_t n_epochs;
    float a, b, gamma, alpha0;
    size_t n_chunks;
    const size_t *cstart;        /* (n_chunks + 1) vertex ranges */
    const size_t *cmid;          /* (n_chunks) first edge of each chunk's
                                second half */
    const int32_t *head;         /* (nnz) row of each edge */
    uint64_t *rng;               /* (2 n_chunks) one stream per chunk half */
    atomic_size_t next_chunk[2]; /* epoch e claims chunks from [e % 2] */
    size_t n_threads;
    umap_progress *prog;
    pthread_barrier_t barrier;
    atomic_int stop[2]; /* thread 0's cancel verdict after epoch e in
                                stop[e % 2], read by all after the barrier */
    int stopped;        /* epochs were cut short */
    /* start gate: workers wait until every thread exists (or abort) */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    int gate; /* 0 wait, 1 go, -1 abort */
} sgd_shared;

typedef struct {
    sgd_shared *sh;
    size_t t;
    uint32_t *list; /* scratch: due edges of one chunk */
} sgd_arg;

/* One positive sample of edge i = (j, k), due in this epoch; vertices of
 * the chunk [v0, v1) are read live, the others from snap. The attraction
 * and the negative samples are all evaluated at j's current position, in
 * vector blocks, and applied together. */
static inline __attribute__((always_inline)) void sgd_edge(sgd_shared *sh, size_t i, float alpha, double en,
                                                           size_t v0, size_t v1, const float *snap,
                                                           uint64_t *rng, const size_t nc)
{
    float *emb = sh->emb;
    const float a = sh->a, b = sh->b, gamma = sh->gamma;
    const size_t j = (size_t)sh->head[i], k = (size_t)sh->g->indices[i];
    float *cur = emb + j * nc;
    /* umap-learn draws a negative sample every eps / neg_rate epochs,
     * the first at eps / neg_rate: by epoch e, floor(e neg_rate w) - 1 */
    const uint64_t w = sh->wfix[i], e = (uint64_t)en;
    const uint64_t negs = (e * sh->neg_rate * w) >> 31;
    const long n_neg =
        sh->prev[i] == 0 ? (long)negs - 1 : (long)(negs - (((uint64_t)sh->prev[i] * sh->neg_rate * w) >> 31));
    const uint64_t m = ((e * w) >> 31) + 1; /* samples after the next */
    sh->due[i] = (uint32_t)(((m << 31) + w - 1) / w);
    sh->prev[i] = (uint32_t)e;
    float acc[UMAP_MAX_COMPONENTS] = {0};
    /* lane 0 of the first block: edge (j, k), read live when k is in the
     * chunk; then the negative samples, read from the snapshot (a sample
     * of j itself gets weight 0: umap-learn skips it) */
    const uint64_t n64 = sh->n;
    for (long p0 = -1; p0 < n_neg; p0 += UMAP_NEG_BLOCK) {
        const float *src[UMAP_NEG_BLOCK];
        uint32_t r[UMAP_NEG_BLOCK];
        int self = 0;
        for (long q = 0; q < UMAP_NEG_BLOCK; q += 2) {
            const uint64_t z = umap_rng_next(rng); /* two lanes per draw */
            const uint32_t ra = (uint32_t)(((z >> 32) * n64) >> 32);
            const uint32_t rb = (uint32_t)(((z & 0xffffffffu) * n64) >> 32);
            r[q] = ra;
            r[q + 1] = rb;
            src[q] = snap + (size_t)ra * nc;
            src[q + 1] = snap + (size_t)rb * nc;
            self |= (ra == j) | (rb == j);
        }
        if (p0 < 0) src[0] = (k >= v0 && k < v1) ? emb + k * nc : snap + k * nc;
        const long left = n_neg - p0;
        umap_v4f wv[UMAP_NEG_VECS];
        lane_weights(left < UMAP_NEG_BLOCK ? left : UMAP_NEG_BLOCK, 2.0f, p0 < 0, wv);
        if (self) /* rare */
            for (long q = p0 < 0; q < UMAP_NEG_BLOCK; q++)
                if (r[q] == j) wv[q / 4][q % 4] = 0.0f;
        sample_block(cur, src, 1, wv, p0 < 0, nc, a, b, gamma, acc);
    }
#pragma GCC unroll 16
    for (size_t d = 0; d < nc; d++) cur[d] += acc[d] * alpha;
}

/* Writes the edges of [begin, end) due in epoch e into list (in order)
 * and returns their count. Branch-free: about 30% of the edges are due in
 * an epoch, in no predictable pattern. */
static inline size_t due_edges(const sgd_shared *sh, size_t begin, size_t end, uint32_t e, uint32_t *list)
{
    size_t cnt = 0;
    for (size_t i = begin; i < end; i++) {
        list[cnt] = (uint32_t)i;
        cnt += sh->due[i] == e;
    }
    return cnt;
}

/* Epoch e of chunk c. The chunk's vertices form two halves whose edges are
 * processed alternately, one sample of each in turn, each half with its own
 * random stream: the two update chains are independent, so the CPU
 * overlaps their work. Then the chunk's rows go to the next snapshot.
 * list: scratch for the chunk's due edges (at least its edge count).
 * Inlined with a constant nc for the common widths. */
static inline __attribute__((always_inline)) void sgd_chunk_nc(sgd_shared *sh, size_t c, size_t e,
                                                               uint32_t *list, const size_t nc)
{
    const size_t v0 = sh->cstart[c], v1 = sh->cstart[c + 1];
    const float alpha = epoch_alpha(sh->alpha0, e, sh->n_epochs);
    const double en = (double)e;
    const float *snap = sh->snap[e % 2];
    /* the streams live in registers while the chunk runs: neighbouring
     * chunks' states share cache lines, and two threads writing them on
     * every draw would bounce the line between the cores */
    uint64_t rng[2] = {sh->rng[2 * c], sh->rng[2 * c + 1]};
    const size_t ea = sh->g->indptr[v0], em = sh->cmid[c], eb = sh->g->indptr[v1];
    uint32_t *la = list, *lb = list + (em - ea);
    const size_t na = due_edges(sh, ea, em, (uint32_t)e, la), nb = due_edges(sh, em, eb, (uint32_t)e, lb);
    const size_t nboth = na < nb ? na : nb;
    for (size_t t = 0; t < nboth; t++) {
        sgd_edge(sh, la[t], alpha, en, v0, v1, snap, &rng[0], nc);
        sgd_edge(sh, lb[t], alpha, en, v0, v1, snap, &rng[1], nc);
    }
    for (size_t t = nboth; t < na; t++) sgd_edge(sh, la[t], alpha, en, v0, v1, snap, &rng[0], nc);
    for (size_t t = nboth; t < nb; t++) sgd_edge(sh, lb[t], alpha, en, v0, v1, snap, &rng[1], nc);
    sh->rng[2 * c] = rng[0];
    sh->rng[2 * c + 1] = rng[1];
    memcpy(sh->snap[(e + 1) % 2] + v0 * nc, sh->emb + v0 * nc, (v1 - v0) * nc * sizeof(float));
}

static void sgd_chunk(sgd_shared *sh, size_t c, size_t e, uint32_t *list)
{
    switch (sh->nc) {
    case 2: sgd_chunk_nc(sh, c, e, list, 2); break;
    case 3: sgd_chunk_nc(sh, c, e, list, 3); break;
    default: sgd_chunk_nc(sh, c, e, list, sh->nc); break;
    }
}

static void *sgd_worker(void *p)
{
    sgd_arg *arg = p;
    sgd_shared *sh = arg->sh;
    const size_t t = arg->t;
    if (sh->n_threads > 1) {
        pthread_mutex_lock(&sh->gate_mu);
        while (sh->gate == 0) pthread_cond_wait(&sh->gate_cv, &sh->gate_mu);
        int go = sh->gate;
        pthread_mutex_unlock(&sh->gate_mu);
        if (go < 0) return NULL;
    }
    for (size_t e = 0; e < sh->n_epochs; e++) {
        /* chunks go to whichever thread is free: a thread the scheduler
         * holds back delays the epoch by one chunk at most */
        size_t c;
        while ((c = atomic_fetch_add(&sh->next_chunk[e % 2], 1)) < sh->n_chunks)
            sgd_chunk(sh, c, e, arg->list);
        if (t == 0) {
            if (sh->prog) atomic_store(&sh->prog->done, (long)(e + 1));
            atomic_store(&sh->stop[e % 2], umap_cancelled(sh->prog));
        }
        if (sh->n_threads > 1) pthread_barrier_wait(&sh->barrier);
        /* counter e % 2 is next used in epoch e + 2, after the next
         * barrier, which thread 0 reaches only after this reset */
        if (t == 0) atomic_store(&sh->next_chunk[e % 2], 0);
        if (atomic_load(&sh->stop[e % 2])) {
            if (t == 0) sh->stopped = 1;
            break;
        }
    }
    return NULL;
}

int umap_optimize_fit(float *emb, size_t n, size_t nc, const umap_graph *g, const double *eps,
                      size_t n_epochs, float a, float b, float gamma, float alpha0, size_t neg_rate,
                      size_t n_threads, uint64_t seed, umap_progress *prog)
{
    const size_t nnz = g->nnz;
    size_t n_chunks = n / UMAP_SGD_CHUNK_MIN;
    if (n_chunks < 1) n_chunks = 1;
    if (n_chunks > UMAP_SGD_MAX_CHUNKS) n_chunks = UMAP_SGD_MAX_CHUNKS;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_chunks) n_threads = n_chunks;
    sgd_shared sh = {.n = n,
                     .nc = nc,
                     .g = g,
                     .neg_rate = neg_rate,
                     .n_epochs = n_epochs,
                     .a = a,
                     .b = b,
                     .gamma = gamma,
                     .alpha0 = alpha0,
                     .n_chunks = n_chunks,
                     .n_threads = n_threads,
                     .prog = prog};
    /* every array in one scratch, freed together */
    scratch S = {0};
    /* live positions in a padded copy: the width-3 gather loads 16 bytes
     * per row (UMAP_ROW_PAD floats past the end) */
    sh.emb = scratch_alloc(&S, n * nc + UMAP_ROW_PAD, sizeof(float));
    atomic_init(&sh.next_chunk[0], 0);
    atomic_init(&sh.next_chunk[1], 0);
    atomic_init(&sh.stop[0], 0);
    atomic_init(&sh.stop[1], 0);
    sh.wfix = scratch_alloc(&S, nnz, sizeof *sh.wfix);
    sh.due = scratch_alloc(&S, nnz, sizeof *sh.due);
    sh.prev = scratch_alloc(&S, nnz, sizeof *sh.prev);
    sh.snap[0] = scratch_alloc(&S, n * nc + UMAP_ROW_PAD, sizeof(float));
    sh.snap[1] = scratch_alloc(&S, n * nc + UMAP_ROW_PAD, sizeof(float));
    size_t *split = scratch_alloc(&S, 2 * n_chunks + 1, sizeof *split);
    size_t *cstart = scratch_alloc(&S, n_chunks + 1, sizeof *cstart);
    size_t *cmid = scratch_alloc(&S, n_chunks, sizeof *cmid);
    int32_t *head = scratch_alloc(&S, nnz, sizeof *head);
    sh.rng = scratch_alloc(&S, 2 * n_chunks, sizeof *sh.rng);
    pthread_t *tid = scratch_zalloc(&S, n_threads, sizeof *tid);
    sgd_arg *args = scratch_zalloc(&S, n_threads, sizeof *args);
    int rc = TW_ENOMEM;
    if (S.failed) goto done;
    /* relative weights 1 / eps in 31-bit fixed point; first sample in
     * epoch ceil(eps) (never for eps <= 0) */
    for (size_t i = 0; i < nnz; i++) {
        /* (eps below 1: still once per epoch, as umap-learn) */
        double wf = eps[i] > 0.0 ? 0x1.0p31 / (eps[i] > 1.0 ? eps[i] : 1.0) : 0.0;
        uint64_t w = (uint64_t)llround(wf);
        sh.wfix[i] = (uint32_t)w;
        sh.due[i] = w > 0 ? (uint32_t)((((uint64_t)1 << 31) + w - 1) / w) : UINT32_MAX;
        sh.prev[i] = 0;
    }
    /* 2 n_chunks vertex ranges of similar numbers of samples; chunk c is
     * ranges 2c and 2c + 1. The split depends on the graph only, not on
     * the thread count. */
    const size_t parts = 2 * n_chunks;
    double total = 0.0;
    for (size_t i = 0; i < nnz; i++)
        if (eps[i] > 0.0) total += 1.0 / eps[i];
    split[0] = 0;
    {
        size_t t = 1;
        double acc = 0.0;
        for (size_t j = 0; j < n && t < parts; j++) {
            for (size_t i = g->indptr[j]; i < g->indptr[j + 1]; i++)
                if (eps[i] > 0.0) acc += 1.0 / eps[i];
            while (t < parts && acc >= total * (double)t / (double)parts) split[t++] = j + 1;
        }
        while (t < parts) split[t++] = n;
        split[parts] = n;
    }
    for (size_t c = 0; c <= n_chunks; c++) cstart[c] = split[2 * c];
    for (size_t c = 0; c < n_chunks; c++) cmid[c] = g->indptr[split[2 * c + 1]];
    for (size_t j = 0; j < n; j++)
        for (size_t i = g->indptr[j]; i < g->indptr[j + 1]; i++) head[i] = (int32_t)j;
    for (size_t r = 0; r < 2 * n_chunks; r++) sh.rng[r] = umap_rng_derive(seed, r);
    size_t max_edges = 1;
    for (size_t c = 0; c < n_chunks; c++) {
        size_t ne = g->indptr[cstart[c + 1]] - g->indptr[cstart[c]];
        max_edges = ne > max_edges ? ne : max_edges;
    }
    uint32_t *lists = scratch_alloc(&S, n_threads * max_edges, sizeof *lists);
    if (!lists) goto done;
    sh.cstart = cstart;
    sh.cmid = cmid;
    sh.head = head;
    memcpy(sh.emb, emb, n * nc * sizeof(float));
    memcpy(sh.snap[0], emb, n * nc * sizeof(float));
    for (size_t t = 0; t < UMAP_ROW_PAD; t++)
        sh.emb[n * nc + t] = sh.snap[0][n * nc + t] = sh.snap[1][n * nc + t] = 0.0f;
    umap_progress_set(prog, UMAP_STAGE_OPTIMIZE, 0, (long)n_epochs);
    if (n_threads == 1) {
        args[0] = (sgd_arg){&sh, 0, lists};
        sgd_worker(&args[0]);
    } else {
        pthread_barrier_init(&sh.barrier, NULL, (unsigned)n_threads);
        pthread_mutex_init(&sh.gate_mu, NULL);
        pthread_cond_init(&sh.gate_cv, NULL);
        size_t started = 1;
        for (size_t t = 1; t < n_threads; t++) {
            args[t] = (sgd_arg){&sh, t, lists + t * max_edges};
            if (pthread_create(&tid[t], NULL, sgd_worker, &args[t]) != 0) break;
            started++;
        }
        pthread_mutex_lock(&sh.gate_mu);
        sh.gate = started == n_threads ? 1 : -1;
        pthread_cond_broadcast(&sh.gate_cv);
        pthread_mutex_unlock(&sh.gate_mu);
        if (started == n_threads) {
            args[0] = (sgd_arg){&sh, 0, lists};
            sgd_worker(&args[0]);
        }
        for (size_t t = 1; t < started; t++) pthread_join(tid[t], NULL);
        pthread_barrier_destroy(&sh.barrier);
        pthread_mutex_destroy(&sh.gate_mu);
        pthread_cond_destroy(&sh.gate_cv);
        if (started != n_threads) goto done; /* TW_ENOMEM: could not start the threads */
    }
    memcpy(emb, sh.emb, n * nc * sizeof(float));
    rc = sh.stopped ? TW_ECANCELED : TW_OK;
done:
    scratch_free(&S);
    return rc;
}

/* The arguments of umap_optimize_transform, for its parts. */
typedef struct {
    float *head;
    const float *tail;
    size_t n, nc;
    const size_t *indptr;
    const int32_t *indices;
    const double *eps;
    size_t n_epochs;
    float a, b, gamma, alpha0;
    size_t neg_rate;
    uint64_t seed;
} transform_sgd;

/* Points [lo, hi) of a transform's SGD (each point its own). */
static void transform_part(void *ctx, size_t lo, size_t hi, int part)
{
    (void)part;
    const transform_sgd *t = ctx;
    float *head = t->head;
    const float *tail = t->tail;
    const size_t n = t->n, nc = t->nc, *indptr = t->indptr, n_epochs = t->n_epochs, neg_rate = t->neg_rate;
    const int32_t *indices = t->indices;
    const double *eps = t->eps;
    const float a = t->a, b = t->b, gamma = t->gamma, alpha0 = t->alpha0;
    const uint64_t seed = t->seed;
    for (size_t j = lo; j < hi; j++) {
        float *cur = head + j * nc;
        uint64_t rng = umap_rng_derive(seed, j);
        const size_t e0 = indptr[j], e1 = indptr[j + 1];
        /* per-edge schedule of this point (at most n_neighbors edges) */
        double next_sample[UMAP_MAX_NEIGHBORS], next_neg[UMAP_MAX_NEIGHBORS], eps_neg[UMAP_MAX_NEIGHBORS];
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
                if (eps[i] <= 0.0 || !(next_sample[q] <= en)) continue;
                next_sample[q] += eps[i];
                const long n_neg = (long)((en - next_neg[q]) / eps_neg[q]);
                /* as umap-learn: the attraction first (a block of one
                 * lane), then the negative samples at the moved point */
                for (long p0 = -1; p0 < n_neg; p0 = p0 < 0 ? 0 : p0 + UMAP_NEG_BLOCK) {
                    float acc[UMAP_MAX_COMPONENTS] = {0};
                    const float *src[UMAP_NEG_BLOCK];
                    for (long l = 0; l < UMAP_NEG_BLOCK; l++)
                        src[l] = p0 < 0           ? (l == 0 ? tail + (size_t)indices[i] * nc : cur)
                                 : p0 + l < n_neg ? tail + umap_rng_below(&rng, (uint32_t)n) * nc
                                                  : cur; /* unused lane, weight 0 */
                    const long left = p0 < 0 ? 1 : n_neg - p0;
                    umap_v4f wv[UMAP_NEG_VECS];
                    lane_weights(left < UMAP_NEG_BLOCK ? left : UMAP_NEG_BLOCK, 1.0f, p0 < 0, wv);
                    sample_block(cur, src, 0, wv, p0 < 0, nc, a, b, gamma, acc);
                    for (size_t d = 0; d < nc; d++) cur[d] += acc[d] * alpha;
                }
                next_neg[q] += (double)n_neg * eps_neg[q];
            }
        }
    }
}

void umap_optimize_transform(float *head, size_t m, const float *tail, size_t n, size_t nc,
                             const size_t *indptr, const int32_t *indices, const double *eps, size_t n_epochs,
                             float a, float b, float gamma, float alpha0, size_t neg_rate, uint64_t seed)
{
    transform_sgd t = {head,     tail, n, nc,    indptr, indices,  eps,
                       n_epochs, a,    b, gamma, alpha0, neg_rate, seed};
    /* the points are independent (a stream each): split over the cores
     * when there are enough of them to pay for the threads */
    nn_parallel_rows(m, m >= 64 ? nn_parts() : 1, transform_part, &t);
}
