/* Top-k selection: see topk.h for the contract. */
#include "core/nn/topk.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/amx.h"
#include "core/nn/par.h"
#include "core/nn/scratch.h"
#include "core/nn/vnni.h"

/* ---- Bounded heap of the k best (key, id) seen so far ----
 * "Better" is a total order: larger key, then lower id. The root holds the
 * worst kept item, so a candidate enters only if it beats the root. The heap
 * starts full of sentinels (key -inf, id INT32_MAX) that every real row beats,
 * because real ids are < INT32_MAX. Keys are the scores for a top list and the
 * negated scores for a bottom list, NaN mapped to -inf (ranks last). */

typedef struct {
    double key;
    double score; /* the score as reported (NaN stays NaN) */
    int32_t id;
} heap_item;

static int better(double ka, int32_t ia, double kb, int32_t ib) { return ka > kb || (ka == kb && ia < ib); }

static void heap_init(heap_item *h, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        h[i].key = -INFINITY;
        h[i].score = NAN;
        h[i].id = INT32_MAX;
    }
}

/* Replaces the root by (key, score, id) and restores the heap property
 * (every parent worse than its children). */
static void heap_replace_root(heap_item *h, size_t k, double key, double score, int32_t id)
{
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        double wk = key;
        int32_t wi = id;
        if (l < k && better(wk, wi, h[l].key, h[l].id)) {
            w = l;
            wk = h[l].key;
            wi = h[l].id;
        }
        if (r < k && better(wk, wi, h[r].key, h[r].id)) w = r;
        if (w == i) break;
        h[i] = h[w];
        i = w;
    }
    h[i].key = key;
    h[i].score = score;
    h[i].id = id;
}

static inline void heap_offer(heap_item *h, size_t k, double key, double score, int32_t id)
{
    if (better(key, id, h[0].key, h[0].id)) heap_replace_root(h, k, key, score, id);
}

static int cmp_best_first(const void *a, const void *b)
{
    const heap_item *x = a, *y = b;
    if (better(x->key, x->id, y->key, y->id)) return -1;
    if (better(y->key, y->id, x->key, x->id)) return 1;
    return 0;
}

/* Writes the heap's items into out (k) best first. Reorders h. */
static void heap_emit(heap_item *h, size_t k, topk_hit *out)
{
    qsort(h, k, sizeof *h, cmp_best_first);
    for (size_t i = 0; i < k; i++) {
        out[i].id = h[i].id;
        out[i].score = h[i].score;
    }
}

static double top_key(double s) { return isnan(s) ? -INFINITY : s; }
static double bottom_key(double s) { return isnan(s) ? -INFINITY : -s; }

/* ---- A screening's candidates of one list ----
 * The kc best (key, id) of the rows offered, as heap_offer would keep
 * them, but gathered unordered in a buffer of CAND_CAP kc items: a row
 * that beats the bar (the worst of the kc best at the last compaction;
 * the sentinel before) is appended, and a full buffer is compacted to its
 * kc best by a selection, raising the bar. A row the heap would turn away
 * is beaten by kc rows already kept, so it is turned away here too, or
 * dropped at the next compaction: after cand_finish the buffer's first kc
 * items are the heap's (sentinels padding when fewer rows were offered).
 * An offer costs a store and, every kc of them or so, a selection over
 * CAND_CAP kc items, where the heap's costs about log2 kc moves of its items:
 * with the tile unit's wider bound (kc 82 for k 5) the heap had taken a
 * fifth of a /svd's CPU on the 124M shape, the selections take some 13 %.
 * CAND_CAP 4 was no faster there (fewer selections, more offers). */
#define CAND_CAP 2

typedef struct {
    heap_item bar;
    size_t n;
} cand_head;

static void cand_init(cand_head *h)
{
    h->bar = (heap_item){.key = -INFINITY, .score = NAN, .id = INT32_MAX};
    h->n = 0;
}

/* Puts the kth best (k >= 1) of a (n > k) at a[k - 1], the better ones
 * before it, the worse after (a quickselect in the order of better). */
static void select_best(heap_item *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const heap_item piv = a[mid];
        a[mid] = a[hi];
        a[hi] = piv;
        size_t st = lo;
        for (size_t i = lo; i < hi; i++)
            if (better(a[i].key, a[i].id, piv.key, piv.id)) {
                const heap_item t = a[i];
                a[i] = a[st];
                a[st++] = t;
            }
        a[hi] = a[st];
        a[st] = piv;
        if (st == want) return;
        if (st < want)
            lo = st + 1;
        else
            hi = st - 1;
    }
}

/* Keeps the kc best items of the buffer, and raises the bar to the worst of them. */
static void cand_compact(heap_item *it, cand_head *h, size_t kc)
{
    if (h->n <= kc) return;
    select_best(it, h->n, kc);
    h->n = kc;
    h->bar = it[kc - 1];
}

static inline void cand_offer(heap_item *it, cand_head *h, size_t kc, double key, double score, int32_t id)
{
    if (!better(key, id, h->bar.key, h->bar.id)) return;
    it[h->n++] = (heap_item){.key = key, .score = score, .id = id};
    if (h->n == CAND_CAP * kc) cand_compact(it, h, kc);
}

/* The buffer's first kc items become the list's candidates. */
static void cand_finish(heap_item *it, cand_head *h, size_t kc)
{
    cand_compact(it, h, kc);
    if (h->n < kc) heap_init(it + h->n, kc - h->n);
    h->n = kc;
}

/* ---- Scanning one query's scores for one block of rows ---- */

/* Offers scores s (b) of rows id0 .. id0+b-1 to the top list (it, ht) and
 * the bottom list (ib, hb), either may be NULL. The float threshold tests
 * pass every candidate that could enter (ties included, NaN included), so
 * the exact test in cand_offer decides. Most scores enter neither list: a
 * chunk of SCAN_CHUNK scores is first tested as a whole against the
 * thresholds as they stand at its start (thresholds only tighten within a
 * chunk, so a chunk that passes nothing then passes nothing later either),
 * with vector compares. */
#define SCAN_CHUNK 16

typedef struct {
    heap_item *it, *ib;
    cand_head *ht, *hb;
    size_t kc;
} scan_lists;

static void scan_one(const scan_lists *l, float v, int32_t id, float *tt, float *tb)
{
    if (l->ht && (v >= *tt || v != v)) {
        cand_offer(l->it, l->ht, l->kc, top_key(v), v, id);
        *tt = (float)l->ht->bar.key; /* exact: keys come from floats or -inf */
    }
    if (l->hb && (v <= *tb || v != v)) {
        cand_offer(l->ib, l->hb, l->kc, bottom_key(v), v, id);
        *tb = (float)-l->hb->bar.key;
    }
}

/* Four floats, and the lanes of a comparison of them (GCC/Clang vectors:
 * SSE on any x86-64, NEON on arm64, plain code elsewhere). */
typedef float scan_v4 __attribute__((vector_size(16)));
typedef int32_t scan_m4 __attribute__((vector_size(16)));

/* Whether some score of s (SCAN_CHUNK) may enter a list: v >= tt, v <= tb
 * or NaN, i.e. not (tb < v < tt). */
static int chunk_passes(const float *s, float tt, float tb)
{
    const scan_v4 vt = {tt, tt, tt, tt}, vb = {tb, tb, tb, tb};
    scan_m4 inside = {-1, -1, -1, -1};
    for (size_t u = 0; u < SCAN_CHUNK; u += 4) {
        scan_v4 v;
        memcpy(&v, s + u, sizeof v);
        inside &= (v < vt) & (v > vb);
    }
    return (inside[0] & inside[1] & inside[2] & inside[3]) == 0;
}

/* The scan of scan_block: each chunk of SCAN_CHUNK scores tested with
 * chunk_passes, or with one AVX-512 comparison pair where the CPU has it
 * (the same test: NaN is never inside; a fifth of the CPU of a 124M /svd
 * was the scan and its selections). */
#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 8)
#include <immintrin.h>
#define SCAN_AVX512 1
__attribute__((target("avx512f"))) static void scan_avx512(const scan_lists *l, const float *s, size_t b,
                                                           int32_t id0, float *tt, float *tb, size_t *done)
{
    size_t j = 0;
    for (; j + SCAN_CHUNK <= b; j += SCAN_CHUNK) {
        const __m512 v = _mm512_loadu_ps(s + j);
        const __mmask16 inside = _mm512_cmp_ps_mask(v, _mm512_set1_ps(*tt), _CMP_LT_OQ) &
                                 _mm512_cmp_ps_mask(v, _mm512_set1_ps(*tb), _CMP_GT_OQ);
        /* only the lanes outside at the chunk's start: the thresholds only
         * tighten, and scan_one's own test decides for those */
        for (unsigned out = (unsigned)(__mmask16)~inside; out; out &= out - 1) {
            const unsigned u = (unsigned)__builtin_ctz(out);
            scan_one(l, s[j + u], id0 + (int32_t)(j + u), tt, tb);
        }
    }
    *done = j;
}

static bool scan_has_avx512(void)
{
    static int has = -1; /* a benign race: every thread stores the same answer */
    if (has < 0) has = __builtin_cpu_supports("avx512f") ? 1 : 0;
    return has;
}
#endif

static void scan_block(const scan_lists *l, const float *s, size_t b, int32_t id0)
{
    float tt = l->ht ? (float)l->ht->bar.key : INFINITY;   /* top candidates need v >= tt */
    float tb = l->hb ? (float)-l->hb->bar.key : -INFINITY; /* bottom candidates need v <= tb */
    size_t j = 0;
#ifdef SCAN_AVX512
    if (scan_has_avx512()) scan_avx512(l, s, b, id0, &tt, &tb, &j);
#endif
    for (; j + SCAN_CHUNK <= b; j += SCAN_CHUNK) {
        if (!chunk_passes(s + j, tt, tb)) continue;
        for (size_t u = 0; u < SCAN_CHUNK; u++) scan_one(l, s[j + u], id0 + (int32_t)(j + u), &tt, &tb);
    }
    for (; j < b; j++) scan_one(l, s[j], id0 + (int32_t)j, &tt, &tb);
}

static int check_args(const void *M, size_t n, size_t d, const void *Q, size_t nq, size_t k,
                      const topk_hit *top, const topk_hit *bottom, bool lists_optional)
{
    if (!M || !Q || (!top && !bottom && !lists_optional)) return TW_EINVAL;
    if (k < 1 || k > n || n >= (size_t)INT32_MAX) return TW_EINVAL;
    if (d < 1 || d > (size_t)INT_MAX || nq > (size_t)INT_MAX) return TW_EINVAL;
    if (nq > SIZE_MAX / (2 * k + TOPK_MARGIN) / sizeof(heap_item) / 2) return TW_EINVAL;
    return TW_OK;
}

/* ---- Exact scores ---- */

double topk_dot(const float *a, const float *b, size_t d)
{
    /* Products of two floats are exact in double; four partial sums in a
     * fixed pattern, so the result never depends on anything but a and b. */
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t t = 0;
    for (; t + 4 <= d; t += 4) {
        s0 += (double)a[t] * (double)b[t];
        s1 += (double)a[t + 1] * (double)b[t + 1];
        s2 += (double)a[t + 2] * (double)b[t + 2];
        s3 += (double)a[t + 3] * (double)b[t + 3];
    }
    for (; t < d; t++) s0 += (double)a[t] * (double)b[t];
    return (s0 + s1) + (s2 + s3);
}

static double norm2(const float *a, size_t d) { return sqrt(topk_dot(a, a, d)); }

float topk_max_row_norm(const float *M, size_t n, size_t d)
{
    double r = 0.0;
    for (size_t j = 0; j < n; j++) {
        double v = norm2(M + j * d, d);
        if (isnan(v)) return NAN; /* NaN wins wherever it is: then nothing is certified */
        if (!(v <= r)) r = v;
    }
    return (float)r;
}

/* Bound on |float GEMM score - exact score| for a query of norm qn against
 * rows of norm at most R: gamma_{d+1} * qn * R, u = 2^-24 (any summation
 * order, with or without FMA), widened by 2 for the float rounding of R. */
double topk_gamma(size_t n)
{
    double nu = (double)n * 0x1p-24;
    return nu < 1.0 ? nu / (1.0 - nu) : INFINITY;
}

double topk_screen_error(size_t d, double qn, double R) { return 2.0 * topk_gamma(d + 1) * qn * R; }

/* Where the exact rows come from: stored (M) or formed one at a time (f). */
typedef struct {
    const float *M;
    const topk_former *f;
    size_t d;
} rows_src;

/* Row j of src: in M, or formed into buf (d floats). */
static const float *src_row(const rows_src *src, size_t j, float *buf)
{
    if (src->M) return src->M + j * src->d;
    src->f->form(src->f->ctx, j, 1, buf);
    return buf;
}

/* Exact top or bottom list of one query over every row of src (the
 * fallback when screening cannot certify a list, and the naive reference);
 * buf (d) the scratch of a formed row. */
static void exact_scan(const rows_src *src, size_t n, const float *q, size_t k, int bottom, heap_item *h,
                       float *buf, topk_hit *out)
{
    heap_init(h, k);
    for (size_t j = 0; j < n; j++) {
        double s = topk_dot(q, src_row(src, j, buf), src->d);
        heap_offer(h, k, bottom ? bottom_key(s) : top_key(s), s, (int32_t)j);
    }
    heap_emit(h, k, out);
}

/* Asks for row r (d floats) in the cache while the previous one is scored:
 * the candidates' rows are scattered over M. */
static void prefetch_row(const float *r, size_t d)
{
    for (size_t t = 0; t < d; t += 64 / sizeof(float)) __builtin_prefetch(r + t);
}

/* The screened candidates of one list (kc of them, float scores) become
 * the exact list. They are rescored exactly best first (by float score),
 * the best k kept, until the next candidate's float score, moved by the
 * screening error, stays below the k-th exact score: then neither it nor
 * any row after it (a candidate or not: their float scores are no higher)
 * can reach the list, which is certified, usually after k + 1 or 2 of the
 * kc rows. When every candidate was rescored the list is certified if the
 * worst one stays below so (no row outside the candidates can reach it),
 * else it is computed by an exact scan. Either way the list is the exact
 * one, the same as rescoring every candidate. Reorders cand. Returns 1
 * when the list could not be certified: then it was scanned, or with scan
 * false out is left as it was (the caller computes the list). */
static int certify(const rows_src *src, size_t n, const float *q, size_t k, size_t kc, int bottom, double err,
                   bool scan, heap_item *cand, heap_item *tmp, float *buf, topk_hit *out)
{
    const size_t d = src->d;
    qsort(cand, kc, sizeof *cand, cmp_best_first); /* the heap's items, best first (sentinels last) */
    heap_init(tmp, k);
    bool reached = false; /* a candidate out of reach of the list was met */
    for (size_t c = 0; c < kc; c++) {
        /* a sentinel: fewer rows than kc were offered, every one a candidate */
        if (cand[c].id == INT32_MAX) break;
        if ((reached = c >= k && cand[c].key + err < tmp[0].key)) break;
        if (src->M && c + 1 < kc && cand[c + 1].id != INT32_MAX)
            prefetch_row(src->M + (size_t)cand[c + 1].id * d, d);
        double s = topk_dot(q, src_row(src, (size_t)cand[c].id, buf), d);
        heap_offer(tmp, k, bottom ? bottom_key(s) : top_key(s), s, cand[c].id);
    }
    /* kc >= n: every row was a candidate */
    if (reached || kc >= n || cand[kc - 1].id == INT32_MAX || cand[kc - 1].key + err < tmp[0].key) {
        heap_emit(tmp, k, out);
        return 0;
    }
    if (scan) exact_scan(src, n, q, k, bottom, tmp, buf, out);
    return 1;
}

static _Atomic unsigned long long exact_scans;

unsigned long long topk_exact_scans(void) { return atomic_load(&exact_scans); }

/* Scratch target for one GEMM block of scores (nq x b floats). */
#define TOPK_SCRATCH_BYTES ((size_t)8 << 20)

/* ---- Candidates of a screening ---- */

struct topk_cands {
    size_t nq, n, k, kc, extra, bytes;
    heap_item *it, *ib; /* (nq, CAND_CAP kc): each top / bottom list's buffer, or NULL */
    cand_head *ht, *hb; /* (nq): their heads, as in scan_lists; NULL when the list is not wanted */
    heap_item items[];  /* it and ib, then ht and hb: one allocation */
};

/* Candidates kept beyond 2k + TOPK_MARGIN per list by a pass whose scores
 * are bf16 tile products (core/nn/amx.h) or 16-bit integer ones
 * (core/nn/vnni.h): their bound is some 40 (bf16) or 15 (int16) times
 * the fp32 GEMM's, so more rows lie within reach of a list's k-th. Each
 * extra candidate costs buffer work in every list (with 64, the scan and
 * its selections took a fifth of a 124M /svd on the VNNI unit: 0.31 s,
 * against 0.26 s with 16 and no exact scan either way). */
#define AMX_EXTRA  64
#define VNNI_EXTRA 16

/* topk_cands_new keeping 2k + TOPK_MARGIN + extra candidates per list. */
static topk_cands *cands_new(size_t nq, size_t n, size_t k, size_t extra, int top, int bottom)
{
    if ((!top && !bottom) || k < 1 || k > n || n >= (size_t)INT32_MAX) return NULL;
    if (nq >
        SIZE_MAX / (2 * k + TOPK_MARGIN + extra) / (CAND_CAP * sizeof(heap_item) + sizeof(cand_head)) / 2)
        return NULL;
    const size_t kc = 2 * k + TOPK_MARGIN + extra < n ? 2 * k + TOPK_MARGIN + extra : n;
    const size_t nl = nq ? nq : 1, cells = nl * CAND_CAP * kc, lists = (top ? 1u : 0u) + (bottom ? 1u : 0u);
    const size_t bytes = sizeof(topk_cands) + lists * (cells * sizeof(heap_item) + nl * sizeof(cand_head));
    topk_cands *c = nn_scratch_get(bytes);
    if (!c) return NULL;
    *c = (topk_cands){.nq = nq, .n = n, .k = k, .kc = kc, .extra = extra, .bytes = bytes};
    cand_head *heads = (cand_head *)(c->items + lists * cells);
    c->it = top ? c->items : NULL;
    c->ib = bottom ? c->items + (top ? cells : 0) : NULL;
    c->ht = top ? heads : NULL;
    c->hb = bottom ? heads + (top ? nl : 0) : NULL;
    for (size_t i = 0; i < nq; i++) {
        if (c->ht) cand_init(c->ht + i);
        if (c->hb) cand_init(c->hb + i);
    }
    return c;
}

topk_cands *topk_cands_new(size_t nq, size_t n, size_t k, int top, int bottom)
{
    return cands_new(nq, n, k, 0, top, bottom);
}

void topk_cands_free(topk_cands *c)
{
    if (c) nn_scratch_put(c, c->bytes);
}

size_t topk_cands_k(const topk_cands *c) { return c->k; }

/* List i's buffers and heads in l. */
static void cands_lists(const topk_cands *c, size_t i, scan_lists *l)
{
    l->it = c->it ? c->it + i * CAND_CAP * c->kc : NULL;
    l->ib = c->ib ? c->ib + i * CAND_CAP * c->kc : NULL;
    l->ht = c->ht ? c->ht + i : NULL;
    l->hb = c->hb ? c->hb + i : NULL;
    l->kc = c->kc;
}

void topk_cands_scan(topk_cands *c, size_t i, const float *s, size_t b, size_t j0)
{
    scan_lists l;
    cands_lists(c, i, &l);
    scan_block(&l, s, b, (int32_t)j0);
}

/* The certification of queries lo .. hi - 1 of c, tmp (c->k) its scratch
 * heap and buf (d) that of a formed row; returns the lists that could not
 * be certified: scanned exactly, or with failed set only marked there
 * (failed[i] = 1 when either of query i's lists failed, else 0). */
static unsigned long long certify_range(topk_cands *c, size_t lo, size_t hi, const rows_src *src,
                                        const float *Q, size_t ldq, const double *err, topk_hit *top,
                                        topk_hit *bottom, size_t ldo, heap_item *tmp, float *buf,
                                        unsigned char *failed)
{
    unsigned long long scans = 0;
    const bool scan = failed == NULL;
    for (size_t i = lo; i < hi; i++) {
        const float *q = Q + i * ldq;
        double ei = err[i];
        if (!(ei < INFINITY)) ei = INFINITY; /* NaN: never certified */
        int f = 0;
        scan_lists l;
        cands_lists(c, i, &l);
        if (l.ht) {
            cand_finish(l.it, l.ht, c->kc);
            f += certify(src, c->n, q, c->k, c->kc, 0, ei, scan, l.it, tmp, buf, top + i * ldo);
        }
        if (l.hb) {
            cand_finish(l.ib, l.hb, c->kc);
            f += certify(src, c->n, q, c->k, c->kc, 1, ei, scan, l.ib, tmp, buf, bottom + i * ldo);
        }
        if (failed) failed[i] = f > 0;
        scans += (unsigned)f;
    }
    return scans;
}

/* The certification shared among threads (each list is one thread's, so
 * the lists do not depend on the split). */
typedef struct {
    topk_cands *c;
    const rows_src *src;
    const float *Q;
    size_t ldq, ldo;
    const double *err;
    topk_hit *top, *bottom;
    heap_item *tmp;        /* (parts, k) */
    float *buf;            /* (parts, d), or NULL when the rows are stored */
    unsigned char *failed; /* (nq) or NULL */
    unsigned long long scans[NN_MAX_PARTS];
} certify_ctx;

static void certify_part(void *ctx, size_t lo, size_t hi, int part)
{
    certify_ctx *x = ctx;
    float *buf = x->buf ? x->buf + (size_t)part * x->src->d : NULL;
    x->scans[part] = certify_range(x->c, lo, hi, x->src, x->Q, x->ldq, x->err, x->top, x->bottom, x->ldo,
                                   x->tmp + (size_t)part * x->c->k, buf, x->failed);
}

/* Multiply-adds below which a pass stays in one thread. */
#define TOPK_PAR_WORK ((double)(1 << 24))

/* topk_cands_certify_rows against the rows of src (arguments checked). */
static int cands_certify(topk_cands *c, const rows_src *src, const float *Q, size_t ldq, const double *err,
                         topk_hit *top, topk_hit *bottom, size_t ldo, unsigned char *failed)
{
    const size_t d = src->d;
    const double work = (double)c->nq * (double)c->kc * (double)d * ((c->ht ? 1 : 0) + (c->hb ? 1 : 0));
    int parts = work >= TOPK_PAR_WORK ? nn_parts() : 1;
    if ((size_t)parts > c->nq) parts = c->nq ? (int)c->nq : 1;
    certify_ctx x = {
        .c = c, .src = src, .Q = Q, .ldq = ldq, .ldo = ldo, .err = err, .top = top, .bottom = bottom};
    x.failed = failed;
    x.tmp = malloc((size_t)parts * c->k * sizeof(heap_item));
    x.buf = src->M ? NULL : malloc((size_t)parts * d * sizeof(float));
    if (!x.tmp || (!src->M && !x.buf)) {
        free(x.tmp);
        free(x.buf);
        return TW_ENOMEM;
    }
    unsigned long long scans = 0;
    nn_parallel_rows(c->nq, parts, certify_part, &x);
    for (int p = 0; p < parts; p++) scans += x.scans[p];
    free(x.tmp);
    free(x.buf);
    if (scans) atomic_fetch_add(&exact_scans, scans);
    return TW_OK;
}

int topk_cands_certify(topk_cands *c, const float *M, size_t d, const float *Q, size_t ldq, const double *err,
                       topk_hit *top, topk_hit *bottom, size_t ldo)
{
    if (!c || !M) return TW_EINVAL;
    const topk_former f = {.n = c->n, .d = d, .rows = M};
    return topk_cands_certify_rows(c, &f, Q, ldq, err, top, bottom, ldo, NULL);
}

int topk_cands_certify_rows(topk_cands *c, const topk_former *f, const float *Q, size_t ldq,
                            const double *err, topk_hit *top, topk_hit *bottom, size_t ldo,
                            unsigned char *failed)
{
    if (!c || !f || (!f->rows && !f->form) || f->n != c->n || !Q || !err || f->d < 1 || ldq < f->d ||
        ldo < c->k || (c->ht && !top) || (c->hb && !bottom))
        return TW_EINVAL;
    const rows_src src = {.M = f->rows, .f = f, .d = f->d};
    return cands_certify(c, &src, Q, ldq, err, top, bottom, ldo, failed);
}

/* Offers the n items of src (sentinels skipped) to the list (it, h). */
static void cand_offer_all(heap_item *it, cand_head *h, size_t kc, const heap_item *src, size_t n)
{
    for (size_t u = 0; u < n; u++)
        if (src[u].id != INT32_MAX) cand_offer(it, h, kc, src[u].key, src[u].score, src[u].id);
}

void topk_cands_merge(topk_cands *dst, const topk_cands *src)
{
    for (size_t i = 0; i < dst->nq; i++) {
        scan_lists ld, ls;
        cands_lists(dst, i, &ld);
        cands_lists(src, i, &ls);
        if (ld.ht) cand_offer_all(ld.it, ld.ht, dst->kc, ls.it, ls.ht->n);
        if (ld.hb) cand_offer_all(ld.ib, ld.hb, dst->kc, ls.ib, ls.hb->n);
    }
}

size_t topk_block_rows(size_t nq, size_t n)
{
    size_t b = TOPK_SCRATCH_BYTES / sizeof(float) / (nq ? nq : 1);
    b = b / 16 * 16;
    if (b < 16) b = 16;
    if (b > n) b = n;
    return b;
}

/* ---- The blocked float GEMM pass ---- */

/* topk_block_rows for nq >= 1 queries, or 0 when a block of scores would
 * not fit sgemm's int dimensions. */
static size_t gemm_block_rows(size_t nq, size_t n)
{
    size_t b = topk_block_rows(nq, n);
    return b > (size_t)INT_MAX / nq ? 0 : b;
}

/* S (nq, bj) = P (nq, ds) . R (bj, ds)^T, query i at P + i * ldp, row j at
 * R + j * ldr: the float scores of one block. */
static void gemm_block(const float *P, size_t ldp, const float *R, size_t ldr, size_t nq, size_t bj,
                       size_t ds, float *S)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)bj, (int)ds, 1.0f, P, (int)ldp, R,
                (int)ldr, 0.0f, S, (int)bj);
}

/* max_j |M_j|: the caller's figure when it gave one, else computed. */
static double row_norm_bound(const float *M, size_t n, size_t d, const topk_opts *opts)
{
    return opts && opts->max_row_norm > 0 ? opts->max_row_norm : topk_max_row_norm(M, n, d);
}

/* ---- Screened top-k ---- */

/* The arguments of topk_rows_screened beyond those of topk_rows. */
static bool screen_args_ok(const topk_screen *s, size_t k, size_t ldo)
{
    const size_t big = (size_t)INT_MAX;
    if (!s->S || !s->P || s->ds < 1 || s->ds > big || ldo < k) return false;
    if (s->lds < s->ds || s->ldp < s->ds || s->ldq < s->d || s->lds > big || s->ldp > big) return false;
    if (!s->M && (!s->Mf || s->Mf->n != s->n || s->Mf->d != s->d || (!s->Mf->rows && !s->Mf->form)))
        return false;
    return s->err || (s->S == s->M && s->ds == s->d); /* no bound given: the plain problem */
}

/* The screening rows of s are formed (by s->Mf) tile by tile: S is NULL,
 * the plain problem of topk_rows_formed. */
static bool formed_pass(const topk_screen *s) { return !s->S; }

/* Largest rows per tile of a formed pass: the tile (b, d) within the
 * scratch target too. */
static size_t formed_rows_cap(size_t d)
{
    size_t b = TOPK_SCRATCH_BYTES / sizeof(float) / d / 16 * 16;
    return b < 16 ? 16 : b;
}

/* Rows per block of a pass of nq queries over (a share of) n rows: 0 when
 * a block of scores would not fit sgemm's int dimensions. */
static size_t pass_block_rows(const topk_screen *s, size_t nq, size_t n)
{
    size_t b = gemm_block_rows(nq, n), cap = formed_rows_cap(s->d);
    return formed_pass(s) && b > cap ? cap : b;
}

/* The unit a pass screens on: the fp32 GEMM, bf16 tile products
 * (core/nn/amx.h) or 16-bit integer products (core/nn/vnni.h). */
enum { UNIT_FP32, UNIT_AMX, UNIT_VNNI };

/* The queries of a pass on a low-precision unit, packed for it (shared by
 * the pass's threads); P NULL for the fp32 GEMM. */
typedef struct {
    int unit;
    void *P;
} lp_queries;

static int lp_pack(lp_queries *lq, int unit, const topk_screen *s, size_t nq)
{
    *lq = (lp_queries){.unit = unit};
    if (unit == UNIT_AMX && (lq->P = nn_amx_alloc(nn_amx_queries_elems(nq, s->ds))))
        nn_amx_pack_queries(s->P, s->ldp, nq, s->ds, lq->P);
    if (unit == UNIT_VNNI && (lq->P = nn_vnni_alloc(nn_vnni_queries_bytes(nq, s->ds))))
        nn_vnni_pack_queries(s->P, s->ldp, nq, s->ds, lq->P);
    return unit == UNIT_FP32 || lq->P ? TW_OK : TW_ENOMEM;
}

/* One thread's scratch of a pass: the scores of a block (nq, b), the rows
 * of a formed tile (b, d) or NULL, the largest norm of the rows it formed
 * and the largest element of the rows it scored on the VNNI unit (NaN
 * wins); for a pass on a low-precision unit, the packed queries and this
 * thread's scratch for that unit. */
typedef struct {
    float *S, *R;
    double rmax, rinf;
    const lp_queries *lq;
    void *aw;
    size_t nS, nR, nA; /* their bytes (core/nn/scratch.h) */
} pass_scratch;

static int scratch_alloc(pass_scratch *w, const topk_screen *s, size_t nq, size_t b, const lp_queries *lq)
{
    *w = (pass_scratch){
        .lq = lq, .nS = nq * b * sizeof(float), .nR = formed_pass(s) ? b * s->d * sizeof(float) : 0};
    if (lq->unit == UNIT_AMX) w->nA = nn_amx_work_elems(s->ds, nq) * sizeof(uint16_t);
    if (lq->unit == UNIT_VNNI) w->nA = nn_vnni_work_bytes(s->ds);
    w->S = nn_scratch_get(w->nS);
    if (w->nR) w->R = nn_scratch_get(w->nR);
    if (w->nA) w->aw = nn_scratch_get(w->nA);
    return w->S && (w->R || !w->nR) && (w->aw || !w->nA) ? TW_OK : TW_ENOMEM;
}

static void scratch_free(pass_scratch *w)
{
    nn_scratch_put(w->S, w->nS);
    nn_scratch_put(w->R, w->nR);
    nn_scratch_put(w->aw, w->nA);
}

/* Screening: block by block, the float scores of S's rows lo .. hi - 1
 * (formed into w->R first when the pass is formed) against every
 * screening query, offered to the candidates c (if any) and to
 * opts->on_block (if set). */
static int screen_rows(const topk_screen *s, size_t nq, size_t b, size_t lo, size_t hi, pass_scratch *w,
                       topk_cands *c, const topk_opts *opts)
{
    const tw_cancel *cancel = opts ? opts->cancel : NULL;
    int rc = TW_OK;
    for (size_t j0 = lo; j0 < hi && rc == TW_OK; j0 += b) {
        if ((rc = tw_cancel_check(cancel)) != TW_OK) break;
        size_t bj = hi - j0 < b ? hi - j0 : b;
        const float *R;
        size_t ldr = s->lds;
        if (!formed_pass(s)) {
            R = s->S + j0 * s->lds;
        } else {
            topk_raise_max(&w->rmax, s->Mf->form(s->Mf->ctx, j0, bj, w->R));
            R = w->R;
            ldr = s->d;
        }
        if (w->lq->unit == UNIT_AMX)
            nn_amx_scores(w->lq->P, nq, R, ldr, bj, s->ds, w->S, bj, w->aw);
        else if (w->lq->unit == UNIT_VNNI)
            topk_raise_max(&w->rinf, nn_vnni_scores(w->lq->P, nq, R, ldr, bj, s->ds, w->S, bj, w->aw));
        else
            gemm_block(s->P, s->ldp, R, ldr, nq, bj, s->ds, w->S);
        for (size_t i = 0; c && i < nq; i++) topk_cands_scan(c, i, w->S + i * bj, bj, j0);
        if (opts && opts->on_block) rc = opts->on_block(opts->ctx, w->S, nq, j0, bj);
    }
    return rc;
}

/* ---- The tiled pass ----
 * One thread per core (nn_parts), each with its own scores and its own
 * candidates, claiming blocks of rows one at a time (nn_parallel_tiles),
 * calling the GEMM with one BLAS thread and scanning each block it
 * computed at once: the scan runs on every core beside the GEMMs instead
 * of after them in one thread, and no BLAS hand-off waits on another
 * thread block by block. The candidates are merged afterwards: a list's
 * candidates are the best of the rows whoever scanned them, so the lists
 * are those of the plain pass. */
typedef struct {
    const topk_screen *s;
    const topk_opts *opts;
    size_t nq, b;
    topk_cands *c[NN_MAX_PARTS];
    pass_scratch w[NN_MAX_PARTS];
} tiles_ctx;

static int tiles_block(void *ctx, int part, size_t j0, size_t bj)
{
    tiles_ctx *t = ctx;
    return screen_rows(t->s, t->nq, t->b, j0, j0 + bj, &t->w[part], t->c[part], t->opts);
}

/* Rows per block of a tiled pass at most b (a multiple of 16, or n): as
 * few blocks as b allows, their count rounded up to a multiple of parts so
 * that on a quiet machine the threads' last blocks end together (one
 * thread no longer does a whole block alone at the end: 1/19 of a 124M
 * screening pass, 1/39 of an xl one). */
static size_t balanced_rows(size_t b, size_t n, int parts)
{
    if (!b || n <= b) return b;
    size_t blocks = (n + b - 1) / b;
    blocks = (blocks + (size_t)parts - 1) / (size_t)parts * (size_t)parts;
    size_t nb = ((n + blocks - 1) / blocks + 15) / 16 * 16;
    return nb < b ? nb : b;
}

/* The tiled screening into c (parts >= 2 threads), raising *rmax to the
 * norms of the rows formed and *rinf to the largest element of the rows
 * scored on the VNNI unit; TW_ENOMEM when the scratch of a thread cannot
 * be had. */
static int screen_tiled(const topk_screen *s, size_t nq, size_t k, topk_cands *c, int parts,
                        const topk_opts *opts, const lp_queries *lq, double *rmax, double *rinf)
{
    tiles_ctx t = {.s = s, .opts = opts, .nq = nq};
    t.b = balanced_rows(pass_block_rows(s, nq, (s->n + (size_t)parts - 1) / (size_t)parts), s->n, parts);
    int rc = TW_OK;
    for (int p = 0; p < parts && rc == TW_OK; p++) {
        rc = scratch_alloc(&t.w[p], s, nq, t.b, lq);
        t.c[p] = p ? cands_new(nq, s->n, k, c->extra, c->ht != NULL, c->hb != NULL) : c;
        if (!t.c[p]) rc = TW_ENOMEM;
    }
    if (rc == TW_OK) {
        nn_blas_single_begin(); /* one BLAS thread per part; the server's budget again after */
        rc = nn_parallel_tiles(s->n, t.b, parts, NULL /* screen_rows checks opts->cancel */, tiles_block, &t);
        nn_blas_single_end();
    }
    for (int p = 1; p < parts && rc == TW_OK; p++) topk_cands_merge(c, t.c[p]);
    for (int p = 0; p < parts; p++) {
        topk_raise_max(rmax, t.w[p].rmax);
        topk_raise_max(rinf, t.w[p].rinf);
        scratch_free(&t.w[p]);
        if (p) topk_cands_free(t.c[p]);
    }
    return rc;
}

/* Threads for the screening of nq queries over n rows of ds: 1 (the plain
 * pass, OpenBLAS's own threads) for a pass with a callback, or too small
 * to be worth splitting. */
static int screen_parts(const topk_screen *s, size_t nq, const topk_opts *opts)
{
    if (opts && opts->on_block) return 1;
    int parts = nn_parts();
    if ((double)nq * (double)s->n * (double)s->ds < TOPK_PAR_WORK * parts || s->n < 256 * (size_t)parts)
        return 1;
    return parts;
}

/* The screening error bound of each query of the plain problem (the
 * screening rows are the exact ones, P = Q) with rows of norm at most R
 * (and elements at most rinf): err (nq); the bound of the unit's products. */
static void plain_errors(const topk_screen *s, size_t nq, double R, int unit, double rinf, double *err)
{
    for (size_t i = 0; i < nq; i++) {
        const float *q = s->Q + i * s->ldq;
        if (unit == UNIT_VNNI) {
            err[i] = nn_vnni_error(s->d, q, R, rinf);
            continue;
        }
        double qn = norm2(q, s->d);
        err[i] = unit == UNIT_AMX ? nn_amx_error(s->d, qn, R) : topk_screen_error(s->d, qn, R);
    }
}

/* Queries below which a pass keeps to the fp32 GEMM: the tile unit takes
 * them 32 at a time, the VNNI kernel 12, and a few queries are not worth
 * the packing. */
#define LP_MIN_QUERIES 64

/* The unit a plain pass of nq queries would screen on here. */
static int plain_unit(size_t nq)
{
    if (nq < LP_MIN_QUERIES) return UNIT_FP32;
    if (nn_amx_usable()) return UNIT_AMX;
    return nn_vnni_usable() ? UNIT_VNNI : UNIT_FP32;
}

/* The candidates a pass on unit keeps beyond 2k + TOPK_MARGIN per list. */
static size_t unit_extra(int unit)
{
    return unit == UNIT_AMX ? AMX_EXTRA : unit == UNIT_VNNI ? VNNI_EXTRA : 0;
}

/* The unit a pass screens on: a low-precision one for the plain problem
 * (its own bound, so a wider one can be used) with lists wanted and no
 * callback (which is owed the fp32 scores). */
static int pass_unit(const topk_screen *s, size_t nq, bool lists, const topk_opts *opts)
{
    return lists && !s->err && !(opts && opts->on_block) ? plain_unit(nq) : UNIT_FP32;
}

const char *topk_unit_name(void)
{
    static const char *const names[] = {[UNIT_FP32] = "fp32", [UNIT_AMX] = "amx", [UNIT_VNNI] = "vnni"};
    const int unit = plain_unit(LP_MIN_QUERIES);
    return unit == UNIT_VNNI && nn_vnni_width() == 256 ? "avxvnni" : names[unit];
}

double topk_plain_pass_speedup(size_t nq)
{
    const int unit = plain_unit(nq);
    if (unit == UNIT_VNNI) return nn_vnni_width() == 256 ? TOPK_AVX_VNNI_SPEEDUP : TOPK_VNNI_SPEEDUP;
    return unit == UNIT_AMX ? TOPK_AMX_SPEEDUP : 1.0;
}

/* max_j |M_j| of the plain problem: the caller's figure when it gave one,
 * else the norms measured as a formed pass formed the rows (rmax), else
 * computed from the stored rows. */
static double plain_bound(const topk_screen *s, const topk_opts *opts, double rmax)
{
    if (s->Mf && s->Mf->max_row_norm > 0) return s->Mf->max_row_norm;
    if (formed_pass(s)) return rmax;
    return row_norm_bound(s->M, s->n, s->d, opts);
}

static _Atomic unsigned long long rescreened;

unsigned long long topk_rescreened(void) { return atomic_load(&rescreened); }

static int screen_on(const topk_screen *s, size_t nq, size_t k, topk_hit *top, topk_hit *bottom, size_t ldo,
                     const topk_opts *opts, int unit);

/* The queries of a plain pass on a low-precision unit whose lists its
 * wider bound left uncertified (failed[i]), screened again together by the
 * fp32 GEMM, whose bound is 15 to 40 times tighter (§2.4: the same exact
 * lists either way), instead of an exact scan of every row for each: a
 * matrix with one outlying element (which widens the int16 bound with
 * max |M_jt|) or many near-ties costs one more fp32 pass, not nq scans. */
static int rescreen_failed(const topk_screen *s, size_t nq, size_t k, topk_hit *top, topk_hit *bottom,
                           size_t ldo, const topk_opts *opts, const unsigned char *failed)
{
    size_t nf = 0;
    for (size_t i = 0; i < nq; i++) nf += failed[i] != 0;
    if (!nf) return TW_OK;
    atomic_fetch_add(&rescreened, nf);
    const size_t d = s->d;
    float *Qf = malloc(nf * d * sizeof(float));
    topk_hit *tf = top ? malloc(nf * k * sizeof(topk_hit)) : NULL,
             *bf = bottom ? malloc(nf * k * sizeof(topk_hit)) : NULL;
    int rc = Qf && (tf || !top) && (bf || !bottom) ? TW_OK : TW_ENOMEM;
    for (size_t i = 0, f = 0; rc == TW_OK && i < nq; i++)
        if (failed[i]) memcpy(Qf + f++ * d, s->Q + i * s->ldq, d * sizeof(float));
    if (rc == TW_OK) {
        topk_screen sf = *s;
        sf.Q = sf.P = Qf;
        sf.ldq = sf.ldp = d;
        rc = screen_on(&sf, nf, k, tf, bf, k, opts, UNIT_FP32);
    }
    for (size_t i = 0, f = 0; rc == TW_OK && i < nq; i++) {
        if (!failed[i]) continue;
        if (top) memcpy(top + i * ldo, tf + f * k, k * sizeof(topk_hit));
        if (bottom) memcpy(bottom + i * ldo, bf + f * k, k * sizeof(topk_hit));
        f++;
    }
    free(Qf);
    free(tf);
    free(bf);
    return rc;
}

/* Screens, then certifies the candidates (when a list is wanted): the
 * common body of topk_rows_opt, topk_rows_formed and topk_rows_screened,
 * arguments checked, nq >= 1. */
static int screen_and_certify(const topk_screen *s, size_t nq, size_t k, topk_hit *top, topk_hit *bottom,
                              size_t ldo, const topk_opts *opts)
{
    return screen_on(s, nq, k, top, bottom, ldo, opts, pass_unit(s, nq, top || bottom, opts));
}

/* screen_and_certify on unit (fp32 for a pass pass_unit keeps to it). */
static int screen_on(const topk_screen *s, size_t nq, size_t k, topk_hit *top, topk_hit *bottom, size_t ldo,
                     const topk_opts *opts, int unit)
{
    const size_t b = pass_block_rows(s, nq, s->n);
    if (!b) return TW_EINVAL;
    const bool lists = top || bottom;
    const int parts = lists ? screen_parts(s, nq, opts) : 1;
    pass_scratch w = {0};
    topk_cands *c = lists ? cands_new(nq, s->n, k, unit_extra(unit), top != NULL, bottom != NULL) : NULL;
    double *err = lists && !s->err ? malloc(nq * sizeof(double)) : NULL, rmax = 0.0, rinf = 0.0;
    lp_queries lq;
    int rc = lp_pack(&lq, unit, s, nq);
    if (rc == TW_OK && parts == 1) rc = scratch_alloc(&w, s, nq, b, &lq);
    if (rc == TW_OK && lists && !(c && (s->err || err))) rc = TW_ENOMEM;
    if (rc == TW_OK) {
        rc = parts > 1 ? screen_tiled(s, nq, k, c, parts, opts, &lq, &rmax, &rinf)
                       : screen_rows(s, nq, b, 0, s->n, &w, c, opts);
        topk_raise_max(&rmax, w.rmax);
        topk_raise_max(&rinf, w.rinf);
    }
    free(lq.P);
    if (rc == TW_OK && lists) {
        if (err) plain_errors(s, nq, plain_bound(s, opts, rmax), unit, rinf, err);
        const rows_src src = {.M = s->M ? s->M : s->Mf->rows, .f = s->Mf, .d = s->d};
        unsigned char *failed = unit != UNIT_FP32 ? calloc(nq, 1) : NULL;
        rc = unit != UNIT_FP32 && !failed ? TW_ENOMEM : TW_OK;
        if (rc == TW_OK)
            rc = cands_certify(c, &src, s->Q, s->ldq, s->err ? s->err : err, top, bottom, ldo, failed);
        /* this pass's scratch and candidates go back before the second
         * screening, which takes its own (from the same kept buffers) */
        scratch_free(&w);
        w = (pass_scratch){0};
        topk_cands_free(c);
        c = NULL;
        if (rc == TW_OK && failed) rc = rescreen_failed(s, nq, k, top, bottom, ldo, opts, failed);
        free(failed);
    }
    scratch_free(&w);
    topk_cands_free(c);
    free(err);
    return rc;
}

int topk_rows_screened(const topk_screen *s, size_t nq, size_t k, topk_hit *top, topk_hit *bottom, size_t ldo,
                       const topk_opts *opts)
{
    // exact: M (n, d) or formed by Mf, query i at Q + i * ldq; screening: S
    // (n, ds) rows at stride lds, query i at P + i * ldp; top, bottom: list
    // i at + i * ldo
    if (!s) return TW_EINVAL;
    int rc = check_args(s->M ? (const void *)s->M : (const void *)s->Mf, s->n, s->d, s->Q, nq, k, top, bottom,
                        false);
    if (rc) return rc;
    if (!screen_args_ok(s, k, ldo)) return TW_EINVAL;
    return nq == 0 ? TW_OK : screen_and_certify(s, nq, k, top, bottom, ldo, opts);
}

int topk_rows_opt(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
                  topk_hit *bottom, const topk_opts *opts)
{
    // M (n, d), Q (nq, d); top, bottom (nq, k)
    int rc = check_args(M, n, d, Q, nq, k, top, bottom, opts && opts->on_block);
    if (rc) return rc;
    if (nq == 0) return TW_OK;
    const topk_screen plain = {
        .M = M, .n = n, .d = d, .Q = Q, .ldq = d, .S = M, .lds = d, .ds = d, .P = Q, .ldp = d};
    return screen_and_certify(&plain, nq, k, top, bottom, k, opts);
}

int topk_rows_formed(const topk_former *f, const float *Q, size_t nq, size_t k, topk_hit *top,
                     topk_hit *bottom, const topk_opts *opts)
{
    // f: (n, d) rows; Q (nq, d); top, bottom (nq, k)
    if (!f || (!f->rows && !f->form)) return TW_EINVAL;
    if (f->rows) {
        topk_opts o = opts ? *opts : (topk_opts){0};
        o.max_row_norm = f->max_row_norm;
        return topk_rows_opt(f->rows, f->n, f->d, Q, nq, k, top, bottom, &o);
    }
    int rc = check_args(f, f->n, f->d, Q, nq, k, top, bottom, opts && opts->on_block);
    if (rc) return rc;
    if (nq == 0) return TW_OK;
    const topk_screen formed = {
        .Mf = f, .n = f->n, .d = f->d, .Q = Q, .ldq = f->d, .lds = f->d, .ds = f->d, .P = Q, .ldp = f->d};
    return screen_and_certify(&formed, nq, k, top, bottom, k, opts);
}

/* ---- Ranks ---- */

static int rank_args(const float *M, size_t n, size_t d, const float *Q, size_t nq, const int32_t *ids,
                     const size_t *ranks)
{
    if (!M || !Q || (nq && (!ids || !ranks))) return TW_EINVAL;
    if (n < 1 || n >= (size_t)INT32_MAX || d < 1 || d > (size_t)INT_MAX || nq > (size_t)INT_MAX)
        return TW_EINVAL;
    for (size_t i = 0; i < nq; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= n) return TW_EINVAL;
    return TW_OK;
}

/* One query's ranking target: the exact key of its row and the screening
 * error bound of its float scores. */
typedef struct {
    double key, err;
} rank_target;

/* The rows among j0 .. j0 + bj - 1 (float scores s) that come before row t
 * (exact key t_key) in q's order: a float score surely above the bound
 * counts at once, one within it is decided exactly. */
static size_t rank_above(const float *M, size_t d, const float *q, const float *s, size_t j0, size_t bj,
                         int32_t t, rank_target g)
{
    size_t above = 0;
    for (size_t j = 0; j < bj; j++) {
        double f = s[j];
        int32_t id = (int32_t)(j0 + j);
        if (id == t) continue;
        if (f - g.err > g.key) { /* surely better (and not NaN) */
            above++;
        } else if (!(f + g.err < g.key)) { /* undecided (or NaN): exact */
            double e = top_key(topk_dot(q, M + (size_t)id * d, d));
            above += (size_t)better(e, id, g.key, t);
        }
    }
    return above;
}

int topk_rank_rows(const float *M, size_t n, size_t d, const float *Q, size_t nq, const int32_t *ids,
                   size_t *ranks, const topk_opts *opts)
{
    int rc = rank_args(M, n, d, Q, nq, ids, ranks);
    if (rc || nq == 0) return rc;
    const size_t b = gemm_block_rows(nq, n);
    if (!b) return TW_EINVAL;
    float *S = malloc(nq * b * sizeof(float)); // (nq, b) scores of one block
    rank_target *g = malloc(nq * sizeof *g);
    if (!S || !g) {
        free(S);
        free(g);
        return TW_ENOMEM;
    }
    double R = row_norm_bound(M, n, d, opts);
    for (size_t i = 0; i < nq; i++) {
        const float *q = Q + i * d;
        double err = topk_screen_error(d, norm2(q, d), R);
        g[i].key = top_key(topk_dot(q, M + (size_t)ids[i] * d, d));
        g[i].err = err < INFINITY ? err : INFINITY; /* NaN: every row rescored */
        ranks[i] = 1;
    }
    const tw_cancel *cancel = opts ? opts->cancel : NULL;
    for (size_t j0 = 0; j0 < n; j0 += b) {
        if ((rc = tw_cancel_check(cancel)) != TW_OK) break;
        size_t bj = n - j0 < b ? n - j0 : b;
        gemm_block(Q, d, M + j0 * d, d, nq, bj, d, S);
        for (size_t i = 0; i < nq; i++)
            ranks[i] += rank_above(M, d, Q + i * d, S + i * bj, j0, bj, ids[i], g[i]);
    }
    free(S);
    free(g);
    return rc;
}

int topk_rows(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
              topk_hit *bottom)
{
    return topk_rows_opt(M, n, d, Q, nq, k, top, bottom, NULL);
}

/* ---- Naive reference ---- */

int topk_rows_naive(const float *M, size_t n, size_t d, const float *Q, size_t nq, size_t k, topk_hit *top,
                    topk_hit *bottom)
{
    int rc = check_args(M, n, d, Q, nq, k, top, bottom, false);
    if (rc) return rc;
    heap_item *h = malloc(k * sizeof *h);
    if (!h) return TW_ENOMEM;
    const rows_src src = {.M = M, .d = d};
    for (size_t i = 0; i < nq; i++) {
        if (top) exact_scan(&src, n, Q + i * d, k, 0, h, NULL, top + i * k);
        if (bottom) exact_scan(&src, n, Q + i * d, k, 1, h, NULL, bottom + i * k);
    }
    free(h);
    return TW_OK;
}

/* ---- Plain score vector ---- */

int topk_vec(const double *s, size_t n, size_t k, topk_hit *top, topk_hit *bottom)
{
    if (!s || (!top && !bottom)) return TW_EINVAL;
    if (k < 1 || k > n || n >= (size_t)INT32_MAX) return TW_EINVAL;
    heap_item *h = malloc(k * sizeof *h);
    if (!h) return TW_ENOMEM;
    if (top) {
        heap_init(h, k);
        for (size_t j = 0; j < n; j++) heap_offer(h, k, top_key(s[j]), s[j], (int32_t)j);
        heap_emit(h, k, top);
    }
    if (bottom) {
        heap_init(h, k);
        for (size_t j = 0; j < n; j++) heap_offer(h, k, bottom_key(s[j]), s[j], (int32_t)j);
        heap_emit(h, k, bottom);
    }
    free(h);
    return TW_OK;
}
