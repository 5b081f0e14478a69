/* twd-sgemm: the machine's single-precision GEMM rate, measured the way
 * twd's analyses use OpenBLAS (same library, same thread count), so that a
 * benchmark can report its timings as a fraction of what the CPU does.
 *
 *   twd-sgemm [--n 4096] [--reps 5] [--threads T] [--units D]
 *
 * Times C (n, n) = A (n, n) B (n, n) with cblas_sgemm (row-major, random
 * inputs), one untimed warm-up first, and prints one JSON line:
 *   {"n", "threads", "core", "hint", "gflops_best", "gflops_median", "seconds"}
 * (2 n^3 / time). "hint" is the OPENBLAS_CORETYPE worth setting when
 * OpenBLAS runs older kernels than the CPU supports (core/nn/blas.h), null
 * otherwise: a caller that wants the rate twd runs at re-runs with it set,
 * as twd does itself with blas_coretype=auto.
 *
 * --units D adds "units": the screening scores of 1024 queries against 8192
 * rows of depth D on one core, as a top-k pass computes them (core/nn/topk.h):
 * fp32 sgemm, and the bf16 tile unit (core/nn/amx.h) and 16-bit integer
 * VNNI (core/nn/vnni.h) when this CPU has them (null otherwise, or when
 * TWD_AMX=0 / TWD_VNNI=0), each as 2 * 1024 * 8192 * D / time. */
#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/rng.h"
#include "core/nn/amx.h"
#include "core/nn/blas.h"
#include "core/nn/vnni.h"
#include "tool_common.h"

static const tool_help help = {"usage: twd-sgemm [--n N] [--reps R] [--threads T]\n",
                               "Prints the sgemm rate of this machine's OpenBLAS as one JSON line.\n"
                               "  --n N         matrix size (default 4096)\n"
                               "  --reps R      timed runs (default 5)\n"
                               "  --threads T   OpenBLAS threads (default: OpenBLAS's own, one per core)\n"
                               "  --units D     also the screening units' rates on one core at depth D\n"
                               "  -h, --help    this text\n"};

typedef struct {
    size_t n, units;
    long long reps, threads;
} sgemm_args;

static int parse_args(int argc, char **argv, void *ctx)
{
    sgemm_args *a = ctx;
    *a = (sgemm_args){.n = 4096, .reps = 5, .threads = 0};
    const tool_opt opts[] = {OPT_SIZE("n", &a->n, 32768), OPT_LL("reps", &a->reps, 1, 1000),
                             OPT_LL("threads", &a->threads, 1, 256), OPT_SIZE("units", &a->units, 16384),
                             OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, 0);
    if (!rc && a->n < 16) {
        tw_log("--n must be at least 16");
        rc = -1;
    }
    return rc;
}

/* Best of reps timings of the unit's scores of Q (nq, d) against R (nr, d)
 * on one core: 0 for fp32, 1 for the tile unit, 2 for VNNI. */
static double unit_seconds(int unit, const float *Q, size_t nq, const float *R, size_t nr, size_t d, float *S,
                           long long reps)
{
    void *Pq = NULL, *w = NULL;
    if (unit == 1) {
        Pq = nn_amx_alloc(nn_amx_queries_elems(nq, d));
        w = nn_amx_alloc(nn_amx_work_elems(d, nq));
        if (Pq) nn_amx_pack_queries(Q, d, nq, d, Pq);
    } else if (unit == 2) {
        Pq = nn_vnni_alloc(nn_vnni_queries_bytes(nq, d));
        w = nn_vnni_alloc(nn_vnni_work_bytes(d));
        if (Pq) nn_vnni_pack_queries(Q, d, nq, d, Pq);
    }
    double best = INFINITY;
    for (long long i = 0; i <= reps && (unit == 0 || (Pq && w)); i++) { /* the first is a warm-up */
        double t0 = tw_now();
        if (unit == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nr, (int)d, 1.0f, Q, (int)d, R,
                        (int)d, 0.0f, S, (int)nr);
        else if (unit == 1)
            nn_amx_scores(Pq, nq, R, d, nr, d, S, nr, w);
        else
            (void)nn_vnni_scores(Pq, nq, R, d, nr, d, S, nr, w);
        double dt = tw_now() - t0;
        if (i > 0 && dt < best) best = dt;
    }
    free(Pq);
    free(w);
    return best;
}

/* The "units" object of --units d. */
static json_t *units_json(size_t d, long long reps)
{
    const size_t nq = 1024, nr = 8192;
    float *Q = malloc(nq * d * sizeof *Q), *R = malloc(nr * d * sizeof *R), *S = malloc(nq * nr * sizeof *S);
    if (!Q || !R || !S) {
        free(Q), free(R), free(S);
        return json_null();
    }
    tw_rng r;
    tw_rng_seed(&r, 2);
    for (size_t i = 0; i < nq * d; i++) Q[i] = (float)(tw_rng_uniform(&r) - 0.5);
    for (size_t i = 0; i < nr * d; i++) R[i] = (float)(tw_rng_uniform(&r) - 0.5);
    const int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    const double flops = 2.0 * (double)nq * (double)nr * (double)d;
    const bool usable[3] = {true, nn_amx_usable(), nn_vnni_usable()};
    json_t *rates[3];
    for (int u = 0; u < 3; u++)
        rates[u] =
            usable[u] ? json_real(flops / unit_seconds(u, Q, nq, R, nr, d, S, reps) * 1e-9) : json_null();
    openblas_set_num_threads(saved);
    free(Q), free(R), free(S);
    return json_pack("{s:I,s:I,s:I,s:o,s:o,s:o}", "d", (json_int_t)d, "queries", (json_int_t)nq, "rows",
                     (json_int_t)nr, "fp32_gflops", rates[0], "amx_gflops", rates[1], "vnni_gflops",
                     rates[2]);
}

int main(int argc, char **argv)
{
    sgemm_args a;
    int rc = tool_start("twd-sgemm", argc, argv, parse_args, &a, 2);
    if (rc >= 0) return rc;
    if (a.threads > 0) openblas_set_num_threads((int)a.threads);
    const size_t n = a.n;
    float *A = malloc(n * n * sizeof *A), *B = malloc(n * n * sizeof *B), *C = malloc(n * n * sizeof *C);
    double *t = malloc((size_t)a.reps * sizeof *t);
    if (!A || !B || !C || !t) {
        tw_log("out of memory for n = %zu", n);
        return 1;
    }
    tw_rng r;
    tw_rng_seed(&r, 1);
    for (size_t i = 0; i < n * n; i++) {
        A[i] = (float)(tw_rng_uniform(&r) - 0.5);
        B[i] = (float)(tw_rng_uniform(&r) - 0.5);
    }
    const int N = (int)n;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, A, N, B, N, 0.0f, C, N);
    for (long long i = 0; i < a.reps; i++) {
        double t0 = tw_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, A, N, B, N, 0.0f, C, N);
        t[i] = tw_now() - t0;
    }
    tool_times s = tool_time_stats(t, (size_t)a.reps);
    double flops = 2.0 * (double)n * (double)n * (double)n;
    const char *hint = blas_coretype_hint();
    json_t *out =
        json_pack("{s:I,s:i,s:s,s:o,s:f,s:f,s:f}", "n", (json_int_t)n, "threads", openblas_get_num_threads(),
                  "core", blas_corename(), "hint", hint ? json_string(hint) : json_null(), "gflops_best",
                  flops / s.min * 1e-9, "gflops_median", flops / s.median * 1e-9, "seconds", s.median);
    if (out && a.units) json_object_set_new(out, "units", units_json(a.units, a.reps));
    free(A);
    free(B);
    free(C);
    free(t);
    return tool_print_json(out, 6) ? 1 : 0;
}
