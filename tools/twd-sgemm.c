/* twd-sgemm: the machine's single-precision GEMM rate, measured the way
 * twd's analyses use OpenBLAS (same library, same thread count), so that a
 * benchmark can report its timings as a fraction of what the CPU does.
 *
 *   twd-sgemm [--n 4096] [--reps 5] [--threads T]
 *
 * Times C (n, n) = A (n, n) B (n, n) with cblas_sgemm (row-major, random
 * inputs), one untimed warm-up first, and prints one JSON line:
 *   {"n", "threads", "core", "hint", "gflops_best", "gflops_median", "seconds"}
 * (2 n^3 / time). "hint" is the OPENBLAS_CORETYPE worth setting when
 * OpenBLAS runs older kernels than the CPU supports (core/nn/blas.h), null
 * otherwise: a caller that wants the rate twd runs at re-runs with it set,
 * as twd does itself with blas_coretype=auto. */
#include <cblas.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/rng.h"
#include "core/nn/blas.h"
#include "tool_common.h"

static const tool_help help = {"usage: twd-sgemm [--n N] [--reps R] [--threads T]\n",
                               "Prints the sgemm rate of this machine's OpenBLAS as one JSON line.\n"
                               "  --n N         matrix size (default 4096)\n"
                               "  --reps R      timed runs (default 5)\n"
                               "  --threads T   OpenBLAS threads (default: OpenBLAS's own, one per core)\n"
                               "  -h, --help    this text\n"};

typedef struct {
    size_t n;
    long long reps, threads;
} sgemm_args;

static int parse_args(int argc, char **argv, void *ctx)
{
    sgemm_args *a = ctx;
    *a = (sgemm_args){.n = 4096, .reps = 5, .threads = 0};
    const tool_opt opts[] = {OPT_SIZE("n", &a->n, 32768), OPT_LL("reps", &a->reps, 1, 1000),
                             OPT_LL("threads", &a->threads, 1, 256), OPT_END};
    int rc = tool_getopt(argc, argv, opts, &help, 0);
    if (!rc && a->n < 16) {
        tw_log("--n must be at least 16");
        rc = -1;
    }
    return rc;
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
    free(A);
    free(B);
    free(C);
    free(t);
    return tool_print_json(out, 6) ? 1 : 0;
}
