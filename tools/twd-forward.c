/* twd-forward: runs core/forward on a checkpoint folder.
 *
 *   twd-forward --model DIR --tokens 1,2,3 [--gelu tanh|erf] [--kernels blas|naive]
 *               [--logits last|all] [--json]
 *   twd-forward --model DIR --random N [--seed S] --bench R [--skip-attention]
 *
 * --json prints every kept state as flat row-major arrays (shapes in "shapes")
 * plus the top-5 next tokens; tests/ref/forward_ref.py compares it with numpy.
 * --bench runs the pass R times after one warm-up and prints the timings.
 * Exit status 0 on success, 1 on a bad argument, checkpoint or forward error. */
#include <cblas.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/model/gpt2.h"
#include "core/nn/blas.h"
#include "core/nn/forward.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: twd-forward --model DIR (--tokens ID,ID,... | --random N [--seed S])\n"
               "                   [--gelu tanh|erf] [--kernels blas|naive] [--logits last|all|none]\n"
               "                   [--skip-attention] [--json | --bench R]\n");
}

static void print_array(const char *name, const float *a, size_t count)
{
    printf("\"%s\":[", name);
    for (size_t i = 0; i < count; i++) printf(i ? ",%.9g" : "%.9g", (double)a[i]);
    printf("]");
}

/* Indices of the k largest of a[0..n), descending (ties: lower index first). */
static void top_k(const float *a, size_t n, int *idx, int k)
{
    for (int j = 0; j < k; j++) idx[j] = -1;
    for (size_t i = 0; i < n; i++) {
        int j = k;
        while (j > 0 && (idx[j - 1] < 0 || a[i] > a[idx[j - 1]])) j--;
        if (j >= k) continue;
        memmove(idx + j + 1, idx + j, (size_t)(k - 1 - j) * sizeof(int));
        idx[j] = (int)i;
    }
}

static void print_json(const gpt2_forward_result *r)
{
    const size_t n = (size_t)r->n, C = (size_t)r->C, L = (size_t)r->L, H = (size_t)r->H;
    const size_t V = (size_t)r->V;
    printf("{\"n\":%d,\"C\":%d,\"H\":%d,\"L\":%d,\"V\":%d,\"gelu\":\"%s\",\"kernels\":\"%s\",", r->n, r->C,
           r->H, r->L, r->V, gpt2_gelu_name(r->gelu), r->kernels == GPT2_KERNELS_NAIVE ? "naive" : "blas");
    printf("\"tokens\":[");
    for (size_t t = 0; t < n; t++) printf(t ? ",%d" : "%d", (int)r->tokens[t]);
    printf("],\"logits_pos0\":%d,\"n_logits\":%d,", r->logits_pos0, r->n_logits);
    printf("\"shapes\":{\"emb\":[%zu,%zu],\"x0\":[%zu,%zu],\"x0_lnf\":[%zu,%zu],"
           "\"resid\":[%zu,%zu,%zu],\"resid_lnf\":[%zu,%zu,%zu],\"att\":[%zu,%zu,%zu,%zu],"
           "\"logits\":[%d,%zu]},",
           n, C, n, C, n, C, L, n, C, L, n, C, L, H, n, n, r->n_logits, V);
    print_array("emb", r->emb, n * C);
    printf(",");
    print_array("x0", r->x0, n * C);
    printf(",");
    print_array("x0_lnf", r->x0_lnf, n * C);
    printf(",");
    print_array("resid", r->resid, L * n * C);
    printf(",");
    print_array("resid_lnf", r->resid_lnf, L * n * C);
    if (r->att) {
        printf(",");
        print_array("att", r->att, L * H * n * n);
    }
    if (r->n_logits) {
        printf(",");
        print_array("logits", r->logits, (size_t)r->n_logits * V);
        int top[5];
        top_k(r->logits + (size_t)(r->n_logits - 1) * V, V, top, V < 5 ? (int)V : 5);
        printf(",\"top5\":[");
        for (int j = 0; j < 5 && j < (int)V; j++) printf(j ? ",%d" : "%d", top[j]);
        printf("]");
    }
    printf("}\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parses "1,2,3" into a malloc'd array; -1 on a malformed list. */
static long parse_tokens(const char *s, int32_t **out)
{
    size_t cap = 16, n = 0;
    int32_t *a = malloc(cap * sizeof *a);
    if (!a) return -1;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) {
            free(a);
            return -1;
        }
        if (n == cap) {
            int32_t *b = realloc(a, 2 * cap * sizeof *a);
            if (!b) {
                free(a);
                return -1;
            }
            a = b;
            cap *= 2;
        }
        a[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    *out = a;
    return (long)n;
}

int main(int argc, char **argv)
{
    const char *model_dir = NULL, *tokens_arg = NULL;
    long random_n = 0, bench = 0;
    unsigned long long seed = 1;
    int json = 0;
    gpt2_forward_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--skip-attention")) {
            o.skip_attention = 1;
            continue;
        }
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            usage(stderr);
            return 1;
        }
        i++;
        if (!strcmp(a, "--model"))
            model_dir = v;
        else if (!strcmp(a, "--tokens"))
            tokens_arg = v;
        else if (!strcmp(a, "--random"))
            random_n = strtol(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--bench"))
            bench = strtol(v, NULL, 10);
        else if (!strcmp(a, "--gelu") && !strcmp(v, "tanh"))
            o.gelu = GPT2_GELU_TANH;
        else if (!strcmp(a, "--gelu") && !strcmp(v, "erf"))
            o.gelu = GPT2_GELU_ERF;
        else if (!strcmp(a, "--kernels") && !strcmp(v, "blas"))
            o.kernels = GPT2_KERNELS_BLAS;
        else if (!strcmp(a, "--kernels") && !strcmp(v, "naive"))
            o.kernels = GPT2_KERNELS_NAIVE;
        else if (!strcmp(a, "--logits") && !strcmp(v, "last"))
            o.logits = GPT2_LOGITS_LAST;
        else if (!strcmp(a, "--logits") && !strcmp(v, "all"))
            o.logits = GPT2_LOGITS_ALL;
        else if (!strcmp(a, "--logits") && !strcmp(v, "none"))
            o.logits = GPT2_LOGITS_NONE;
        else {
            fprintf(stderr, "twd-forward: bad argument %s %s\n", a, v);
            usage(stderr);
            return 1;
        }
    }
    if (!model_dir || (!tokens_arg && random_n <= 0) || bench < 0) {
        usage(stderr);
        return 1;
    }

    char err[512];
    gpt2_model m;
    memset(&m, 0, sizeof m);
    double t0 = now_s();
    if (gpt2_load(model_dir, &m, err, sizeof err) != 0) {
        fprintf(stderr, "twd-forward: %s\n", err);
        return 1;
    }
    double t_load = now_s() - t0;

    int32_t *tok = NULL;
    long n;
    if (tokens_arg) {
        n = parse_tokens(tokens_arg, &tok);
        if (n < 0) {
            fprintf(stderr, "twd-forward: --tokens must be comma-separated integers\n");
            gpt2_free(&m);
            return 1;
        }
    } else {
        n = random_n;
        tok = malloc((size_t)n * sizeof *tok);
        if (!tok) {
            gpt2_free(&m);
            return 1;
        }
        unsigned long long s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        for (long t = 0; t < n; t++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            tok[t] = (int32_t)((s >> 33) % (unsigned long long)m.cfg.vocab_size);
        }
    }

    int status = 0;
    gpt2_forward_result *r = NULL;
    if (bench > 0) {
        double *t = malloc((size_t)bench * sizeof *t);
        int rc = t ? gpt2_forward(&m, tok, (size_t)n, &o, &r) : TW_ENOMEM; /* warm-up */
        gpt2_forward_free(r);
        r = NULL;
        for (long i = 0; rc == TW_OK && i < bench; i++) {
            double a = now_s();
            rc = gpt2_forward(&m, tok, (size_t)n, &o, &r);
            t[i] = now_s() - a;
            gpt2_forward_free(r);
            r = NULL;
        }
        if (rc != TW_OK) {
            fprintf(stderr, "twd-forward: %s\n", tw_strerror(rc));
            status = 1;
        } else {
            qsort(t, (size_t)bench, sizeof *t, cmp_double);
            printf("model L=%d H=%d C=%d V=%d  n=%ld  blas %s x%d  gelu=%s kernels=%s att=%s  "
                   "load %.1f ms  forward over %ld runs: min %.1f ms, median %.1f ms, max %.1f ms\n",
                   m.cfg.n_layer, m.cfg.n_head, m.cfg.n_embd, m.cfg.vocab_size, n, blas_corename(),
                   openblas_get_num_threads(), gpt2_gelu_name(o.gelu), o.kernels ? "naive" : "blas",
                   o.skip_attention ? "skipped" : "kept", 1e3 * t_load, bench, 1e3 * t[0], 1e3 * t[bench / 2],
                   1e3 * t[bench - 1]);
        }
        free(t);
    } else {
        int rc = gpt2_forward(&m, tok, (size_t)n, &o, &r);
        if (rc != TW_OK) {
            fprintf(stderr, "twd-forward: %s\n", tw_strerror(rc));
            status = 1;
        } else if (json) {
            print_json(r);
        } else {
            printf("n=%d gelu=%s", r->n, gpt2_gelu_name(r->gelu));
            if (r->n_logits) {
                int top[5];
                int k = r->V < 5 ? r->V : 5;
                top_k(r->logits + (size_t)(r->n_logits - 1) * (size_t)r->V, (size_t)r->V, top, k);
                printf(" top5 next:");
                for (int j = 0; j < k; j++) printf(" %d", top[j]);
            }
            printf("\n");
        }
        gpt2_forward_free(r);
    }
    free(tok);
    gpt2_free(&m);
    return status;
}
