/* The decomposition self-check: see selfcheck.h (docs/MATH.md §13). */
#include "core/ana/selfcheck.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "core/nn/linalg.h"
#include "core/nn/lnorm.h"
#include "core/nn/topk.h"

void selfcheck_result_free(selfcheck_result *r)
{
    if (!r) return;
    free(r->heads);
    free(r->total);
    memset(r, 0, sizeof *r);
}

typedef struct {
    double abs, scale;
} diff_acc;

static void diff_add(diff_acc *a, double got, double ref)
{
    double e = fabs(got - ref);
    if (!(e <= a->abs)) a->abs = e; /* NaN propagates */
    if (fabs(ref) > a->scale) a->scale = fabs(ref);
}

static selfcheck_diff diff_done(const diff_acc *a)
{
    selfcheck_diff d = {a->abs, a->scale > 0.0 ? a->abs / a->scale : a->abs};
    return d;
}

/* Causal softmax of the rows of S (n, n) in double, in place (u > t set to 0). */
static void softmax_causal(double *S, size_t n)
{
    for (size_t t = 0; t < n; t++) {
        double *row = S + t * n, mx = row[0], sum = 0.0;
        for (size_t u = 1; u <= t; u++)
            if (row[u] > mx) mx = row[u];
        for (size_t u = 0; u <= t; u++) sum += (row[u] = exp(row[u] - mx));
        for (size_t u = 0; u < n; u++) row[u] = u <= t ? row[u] / sum : 0.0;
    }
}

/* Scratch of one block. */
typedef struct {
    float *z, *qkv, *qkv2, *aty, *aty2, *att2, *Sf, *Oh, *OhW, *tot_std;
    double *Zd, *Wq, *Wk, *Wv, *Wo, *Wqk, *Wvo, *P, *S, *S2, *A, *A2, *Y, *O, *tot;
    double *za, *za2, *zc, *a, *a2, *cv, *bvo;
    double *bk, *bq, *bv, *r2, *rk; /* (dh) each */
} block_work;

static void *take(char **p, size_t bytes)
{
    void *r = *p;
    *p += (bytes + 63) & ~(size_t)63;
    return r;
}

static char *block_work_alloc(block_work *s, size_t n, size_t d, size_t H, size_t dh)
{
    size_t f = sizeof(float), g = sizeof(double), nd = n * d, nn = n * n;
    size_t sizes[] = {nd * f,     3 * nd * f, 3 * nd * f, nd * f, nd * f,     H * nn * f, nn * f,
                      n * dh * f, nd * f,     nd * f,     nd * g, d * dh * g, d * dh * g, d * dh * g,
                      dh * d * g, d * d * g,  d * d * g,  nd * g, nn * g,     nn * g,     nn * g,
                      nn * g,     nd * g,     nd * g,     nd * g, n * g,      n * g,      n * g,
                      d * g,      d * g,      d * g,      d * g,  dh * g,     dh * g,     dh * g,
                      dh * g,     dh * g};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 63) & ~(size_t)63;
    char *mem = aligned_alloc(64, total), *p = mem;
    if (!mem) return NULL;
    size_t i = 0;
    s->z = take(&p, sizes[i++]);
    s->qkv = take(&p, sizes[i++]);
    s->qkv2 = take(&p, sizes[i++]);
    s->aty = take(&p, sizes[i++]);
    s->aty2 = take(&p, sizes[i++]);
    s->att2 = take(&p, sizes[i++]);
    s->Sf = take(&p, sizes[i++]);
    s->Oh = take(&p, sizes[i++]);
    s->OhW = take(&p, sizes[i++]);
    s->tot_std = take(&p, sizes[i++]);
    s->Zd = take(&p, sizes[i++]);
    s->Wq = take(&p, sizes[i++]);
    s->Wk = take(&p, sizes[i++]);
    s->Wv = take(&p, sizes[i++]);
    s->Wo = take(&p, sizes[i++]);
    s->Wqk = take(&p, sizes[i++]);
    s->Wvo = take(&p, sizes[i++]);
    s->P = take(&p, sizes[i++]);
    s->S = take(&p, sizes[i++]);
    s->S2 = take(&p, sizes[i++]);
    s->A = take(&p, sizes[i++]);
    s->A2 = take(&p, sizes[i++]);
    s->Y = take(&p, sizes[i++]);
    s->O = take(&p, sizes[i++]);
    s->tot = take(&p, sizes[i++]);
    s->za = take(&p, sizes[i++]);
    s->za2 = take(&p, sizes[i++]);
    s->zc = take(&p, sizes[i++]);
    s->a = take(&p, sizes[i++]);
    s->a2 = take(&p, sizes[i++]);
    s->cv = take(&p, sizes[i++]);
    s->bvo = take(&p, sizes[i++]);
    s->bk = take(&p, sizes[i++]);
    s->bq = take(&p, sizes[i++]);
    s->bv = take(&p, sizes[i++]);
    s->r2 = take(&p, sizes[i++]);
    s->rk = take(&p, sizes[i++]);
    return mem;
}

/* y (d) = W (d, dh) col-major . v (dh), in double. */
static void mat_vec(double *y, const double *W, const double *v, size_t d, size_t dh)
{
    cblas_dgemv(CblasColMajor, CblasNoTrans, (int)d, (int)dh, 1.0, W, (int)d, v, 1, 0.0, y, 1);
}

/* The factored scores of one head: S = P z^T + (za 1^T + 1 zc^T + beta) / sqrt(dh). */
static void factored_scores(double *S, const double *PZ, const double *za, const double *zc, double beta,
                            size_t n, double rs)
{
    for (size_t t = 0; t < n; t++)
        for (size_t u = 0; u < n; u++) S[t * n + u] = PZ[t * n + u] + (za[t] + zc[u] + beta) * rs;
}

/* The standard pass of block l, float, with the forward pass's own kernels:
 * z = LN_1(x_l), qkv, the attention's y and the total output. */
static void standard_pass(const gpt2_model *m, const gpt2_block *b, const float *xl, size_t n, block_work *s)
{
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head;
    layernorm_rows(s->z, xl, b->ln_1_w, b->ln_1_b, n, d, m->cfg.ln_eps);
    matmul_forward(s->qkv, s->z, b->attn_w, b->attn_b, n, d, 3 * d);
    attention_forward(s->aty, s->att2, s->qkv, n, d, H);
    matmul_forward(s->tot_std, s->aty, b->attn_proj_w, b->attn_proj_b, n, d, d);
}

/* The standard pass again with every head's b_k replaced by a seeded
 * random vector rkf (H, dh) of the same norm (1 without biases): patterns
 * into s->att2. */
static void randomised_bk_pass(const gpt2_model *m, const gpt2_block *b, int l, size_t n, uint64_t seed,
                               block_work *s, float *rkf, selfcheck_head *out)
{
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    memcpy(s->qkv2, s->qkv, 3 * n * d * sizeof(float));
    mat_gemm(s->OhW, s->z, gpt2_mat_at(b->attn_w, 0, d), NULL, n, d, d); /* z W_k, no bias */
    double *rk = s->rk;
    for (size_t h = 0; h < H; h++) {
        ana_head hs;
        ana_head_slices_of(m, b, (int)h, &hs);
        tw_rng g;
        tw_rng_seed(&g, seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)((size_t)l * H + h + 1)));
        double want = hs.bk ? sqrt(topk_dot(hs.bk, hs.bk, dh)) : 0.0, ss = 0.0;
        if (!(want > 0.0)) want = 1.0;
        for (size_t i = 0; i < dh; i++) {
            rk[i] = tw_rng_normal(&g);
            ss += rk[i] * rk[i];
        }
        for (size_t i = 0; i < dh; i++) rkf[h * dh + i] = (float)(rk[i] * want / sqrt(ss));
        out[h].bk_norm = sqrt(topk_dot(rkf + h * dh, rkf + h * dh, dh));
        for (size_t t = 0; t < n; t++)
            for (size_t i = 0; i < dh; i++)
                s->qkv2[t * 3 * d + d + h * dh + i] = s->OhW[t * d + h * dh + i] + rkf[h * dh + i];
    }
    attention_forward(s->aty2, s->att2, s->qkv2, n, d, H);
}

/* Head hs's matrices in double, its virtual matrices Wqk, Wvo (col-major
 * (d, d)) and bias vectors a = Wq bk, c = Wk bq, a2 = Wq r, bvo = bv Wo_h;
 * beta = bq.bk and beta2 = bq.r into beta[0..1]. r: the random b_k (dh). */
static void head_factors(const ana_head *hs, const float *r, size_t d, size_t dh, double rs, block_work *s,
                         double beta[2])
{
    mat_copy_colmajor(s->Wq, d, hs->wq, d, dh, 1.0);
    mat_copy_colmajor(s->Wk, d, hs->wk, d, dh, 1.0);
    mat_copy_colmajor(s->Wv, d, hs->wv, d, dh, 1.0);
    mat_copy_colmajor(s->Wo, dh, hs->wo, dh, d, 1.0);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)d, (int)d, (int)dh, rs, s->Wq, (int)d, s->Wk,
                (int)d, 0.0, s->Wqk, (int)d);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)d, (int)d, (int)dh, 1.0, s->Wv, (int)d, s->Wo,
                (int)dh, 0.0, s->Wvo, (int)d);
    double *bk = s->bk, *bq = s->bq, *bv = s->bv, *r2 = s->r2;
    beta[0] = beta[1] = 0.0;
    for (size_t i = 0; i < dh; i++) {
        bk[i] = hs->bk ? hs->bk[i] : 0.0;
        bq[i] = hs->bq ? hs->bq[i] : 0.0;
        bv[i] = hs->bv ? hs->bv[i] : 0.0;
        r2[i] = r[i];
        beta[0] += bq[i] * bk[i];
        beta[1] += bq[i] * r2[i];
    }
    mat_vec(s->a, s->Wq, bk, d, dh);
    mat_vec(s->cv, s->Wk, bq, d, dh);
    mat_vec(s->a2, s->Wq, r2, d, dh);
    cblas_dgemv(CblasColMajor, CblasTrans, (int)dh, (int)d, 1.0, s->Wo, (int)dh, bv, 1, 0.0, s->bvo, 1);
}

/* The factored scores S, and S(r) with the random b_k into A2 (softmaxed
 * later), in double; head h's standard scores Sf, float, as
 * attention_forward forms them. */
static void head_scores(size_t n, size_t d, size_t dh, size_t h, double rs, const double beta[2],
                        block_work *s)
{
    /* P (n, d) = Z Wqk (row-major Z, col-major Wqk: Wqk^T stored row-major) */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d, (int)d, 1.0, s->Zd, (int)d, s->Wqk,
                (int)d, 0.0, s->P, (int)d);
    /* PZ (n, n) = P Z^T, into S2 for now */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)d, 1.0, s->P, (int)d, s->Zd,
                (int)d, 0.0, s->S2, (int)n);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0, s->Zd, (int)d, s->a, 1, 0.0, s->za, 1);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0, s->Zd, (int)d, s->cv, 1, 0.0, s->zc, 1);
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)d, 1.0, s->Zd, (int)d, s->a2, 1, 0.0, s->za2, 1);
    factored_scores(s->S, s->S2, s->za, s->zc, beta[0], n, rs);
    factored_scores(s->A2, s->S2, s->za2, s->zc, beta[1], n, rs);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)dh, (float)rs, s->qkv + h * dh,
                (int)(3 * d), s->qkv + d + h * dh, (int)(3 * d), 0.0f, s->Sf, (int)n);
}

/* Scores: standard against factored over the causal entries, and the
 * shift S(r) - S (its largest size, and its largest spread within a row). */
static void compare_scores(const block_work *s, size_t n, selfcheck_head *o)
{
    diff_acc ds = {0};
    double shift = 0.0, spread = 0.0;
    for (size_t t = 0; t < n; t++) {
        double lo = INFINITY, hi = -INFINITY;
        for (size_t u = 0; u <= t; u++) {
            diff_add(&ds, s->Sf[t * n + u], s->S[t * n + u]);
            double sh = s->A2[t * n + u] - s->S[t * n + u];
            if (fabs(sh) > shift) shift = fabs(sh);
            lo = fmin(lo, sh);
            hi = fmax(hi, sh);
        }
        if (hi - lo > spread) spread = hi - lo;
    }
    o->scores = diff_done(&ds);
    o->bk_score_shift = shift;
    o->bk_shift_spread = spread;
}

/* Patterns: the softmaxes A, A2 of S, S(r); the forward's patterns ah
 * against A, and what the random b_k changes in float (a2h) and in double. */
static void compare_patterns(block_work *s, size_t n, const float *ah, const float *a2h, selfcheck_head *o)
{
    memcpy(s->A, s->S, n * n * sizeof(double));
    softmax_causal(s->A, n);
    softmax_causal(s->A2, n);
    diff_acc dp = {0};
    double bkf = 0.0, bkx = 0.0;
    for (size_t t = 0; t < n; t++)
        for (size_t u = 0; u <= t; u++) {
            diff_add(&dp, ah[t * n + u], s->A[t * n + u]);
            bkf = fmax(bkf, fabs((double)a2h[t * n + u] - (double)ah[t * n + u]));
            bkx = fmax(bkx, fabs(s->A2[t * n + u] - s->A[t * n + u]));
        }
    o->patterns = diff_done(&dp);
    o->bk_pattern_diff = bkf;
    o->bk_pattern_exact = bkx;
}

/* Outputs: O' = A (Z Wvo) + (A 1) bvo against the standard O_h Wo_h; O'
 * added to the block's total. */
static void compare_outputs(const ana_head *hs, size_t n, size_t d, size_t dh, size_t h, block_work *s,
                            selfcheck_head *o)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)d, (int)d, 1.0, s->Zd, (int)d, s->Wvo,
                (int)d, 0.0, s->Y, (int)d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)n, 1.0, s->A, (int)n, s->Y,
                (int)d, 0.0, s->O, (int)d);
    for (size_t t = 0; t < n; t++) {
        double rsum = 0.0;
        for (size_t u = 0; u <= t; u++) rsum += s->A[t * n + u];
        for (size_t j = 0; j < d; j++) s->O[t * d + j] += rsum * s->bvo[j];
    }
    for (size_t t = 0; t < n; t++) memcpy(s->Oh + t * dh, s->aty + t * d + h * dh, dh * sizeof(float));
    mat_gemm(s->OhW, s->Oh, hs->wo, NULL, n, dh, d);
    diff_acc dout = {0};
    for (size_t i = 0; i < n * d; i++) {
        diff_add(&dout, s->OhW[i], s->O[i]);
        s->tot[i] += s->O[i];
    }
    o->outputs = diff_done(&dout);
}

static int check_block(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, int l,
                       uint64_t seed, block_work *s, selfcheck_head *out, selfcheck_diff *total)
{
    const size_t n = (size_t)fr->n, d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    const size_t nn = n * n, nd = n * d;
    const double rs = 1.0 / sqrt((double)dh);
    const float *xl = l == 0 ? fr->x0 : fr->resid + (size_t)(l - 1) * nd;
    const float *att = fr->att + (size_t)(l - fr->att_block0) * H * nn; /* (H, n, n) */
    float *rkf = malloc(H * dh * sizeof(float));
    gpt2_block_ref bref;
    const gpt2_block *b = rkf ? gpt2_block_acquire(m, l, &bref) : NULL;
    if (!b) {
        free(rkf);
        return TW_ENOMEM;
    }
    standard_pass(m, b, xl, n, s);
    randomised_bk_pass(m, b, l, n, seed, s, rkf, out);

    /* factored, double */
    for (size_t i = 0; i < nd; i++) s->Zd[i] = s->z[i];
    for (size_t i = 0; i < nd; i++) s->tot[i] = 0.0;
    int rc = TW_OK;
    for (size_t h = 0; h < H && rc == TW_OK; h++) {
        if ((rc = tw_cancel_check(ana_cancel(x)))) break;
        ana_head hs;
        ana_head_slices_of(m, b, (int)h, &hs);
        double beta[2];
        head_factors(&hs, rkf + h * dh, d, dh, rs, s, beta);
        head_scores(n, d, dh, h, rs, beta, s);
        compare_scores(s, n, &out[h]);
        compare_patterns(s, n, att + h * nn, s->att2 + h * nn, &out[h]);
        compare_outputs(&hs, n, d, dh, h, s, &out[h]);
    }
    free(rkf);
    gpt2_block_release(&bref); /* the biases stay the model's */
    if (rc) return rc;
    diff_acc dt = {0};
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < d; j++)
            diff_add(&dt, s->tot_std[t * d + j],
                     s->tot[t * d + j] + (b->attn_proj_b ? b->attn_proj_b[j] : 0.0));
    *total = diff_done(&dt);
    return TW_OK;
}

int selfcheck(const gpt2_model *m, const ana_ctx *x, const gpt2_forward_result *fr, uint64_t seed,
              selfcheck_result *out)
{
    if (!out) return TW_EINVAL;
    memset(out, 0, sizeof *out);
    if (ana_check_model(m) || !fr || !fr->att) return TW_EINVAL;
    const size_t d = (size_t)m->cfg.n_embd, H = (size_t)m->cfg.n_head, dh = d / H;
    if (fr->C != (int)d || fr->H != (int)H || fr->L != m->cfg.n_layer || fr->att_head0 != 0 ||
        fr->att_heads != (int)H || fr->att_block0 < 0 || fr->att_blocks < 1 ||
        fr->att_block0 + fr->att_blocks > fr->L || fr->n < 1)
        return TW_EINVAL;
    const size_t nb = (size_t)fr->att_blocks, n = (size_t)fr->n;
    selfcheck_result r = {.block0 = fr->att_block0, .n_blocks = nb, .n_head = H, .n_tokens = n, .seed = seed};
    r.heads = calloc(nb * H, sizeof *r.heads);
    r.total = calloc(nb, sizeof *r.total);
    block_work s = {0};
    char *mem = block_work_alloc(&s, n, d, H, dh);
    int rc = r.heads && r.total && mem ? TW_OK : TW_ENOMEM;
    for (size_t b = 0; b < nb && rc == TW_OK; b++)
        rc = check_block(m, x, fr, r.block0 + (int)b, seed, &s, r.heads + b * H, r.total + b);
    free(mem);
    *out = r;
    if (rc) selfcheck_result_free(out);
    return rc;
}
