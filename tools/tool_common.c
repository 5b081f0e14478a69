#include "tool_common.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/log.h"

static const char *prog_name = "tool";

/* base/log.h writes "twd: <message>"; a tool's lines carry its own name. */
static void stderr_sink(void *ctx, const char *line)
{
    (void)ctx;
    if (strncmp(line, "twd: ", 5) == 0) line += 5;
    fprintf(stderr, "%s: %s\n", prog_name, line);
}

void tool_init(const char *prog)
{
    prog_name = prog;
    tw_log_set_sink(stderr_sink, NULL);
}

int tool_start(const char *prog, int argc, char **argv, int (*parse)(int, char **, void *), void *args,
               int bad_status)
{
    tool_init(prog);
    int rc = parse(argc, argv, args);
    return rc == 0 ? -1 : rc > 0 ? 0 : bad_status;
}

/* ---- arguments ---- */

void tool_usage(FILE *f, const tool_help *h)
{
    fputs(h->synopsis, f);
    if (f == stdout && h->details) fputs(h->details, f);
}

/* "--name: 'arg' is not <what>" for a value outside what the option takes. */
static int parse_choice(const tool_opt *o, const char *flag, const char *v)
{
    char list[256] = "";
    size_t at = 0;
    for (int i = 0; o->names[i]; i++) {
        if (strcasecmp(v, o->names[i]) == 0) {
            *(int *)o->at = o->values[i];
            return 0;
        }
        const char *sep = i == 0 ? "" : o->names[i + 1] ? ", " : " or ";
        int w = snprintf(list + at, sizeof list - at, "%s%s", sep, o->names[i]);
        if (w > 0 && (size_t)w < sizeof list - at) at += (size_t)w;
    }
    tw_log("%s: '%s' is not %s", flag, v, list);
    return -1;
}

/* The value v of option o into its field: 0, or -1 (logged). */
static int take_option(const tool_opt *o, const char *v)
{
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", o->name);
    long long x;
    double d;
    switch (o->kind) {
    case TOOL_O_STR: *(const char **)o->at = v; return 0;
    case TOOL_O_SET: *(int *)o->at = (int)o->lo; return 0;
    case TOOL_O_INT: return tool_parse_int(flag, v, (int)o->lo, (int)o->hi, o->at);
    case TOOL_O_LL: return tool_parse_ll(flag, v, o->lo, o->hi, o->at);
    case TOOL_O_SIZE: return tool_parse_size(flag, v, (size_t)o->hi, o->at);
    case TOOL_O_U64:
        if (tool_parse_ll(flag, v, 0, INT64_MAX, &x) != 0) return -1;
        *(uint64_t *)o->at = (uint64_t)x;
        return 0;
    case TOOL_O_FLOAT:
        if (tool_parse_double(flag, v, &d) != 0) return -1;
        *(float *)o->at = (float)d;
        return 0;
    case TOOL_O_CHOICE: return parse_choice(o, flag, v);
    }
    return -1;
}

enum { MAX_OPTS = 64 };

int tool_getopt(int argc, char **argv, const tool_opt *opts, const tool_help *help, int operands)
{
    struct option lo[MAX_OPTS + 2];
    char shortopts[2 * MAX_OPTS + 2] = "h";
    size_t n = 0, ns = 1;
    for (; n < MAX_OPTS && opts[n].name; n++) {
        int has_arg = opts[n].kind == TOOL_O_SET ? no_argument : required_argument;
        lo[n] = (struct option){opts[n].name, has_arg, NULL, opts[n].key ? opts[n].key : 256 + (int)n};
        if (opts[n].key) {
            shortopts[ns++] = opts[n].key;
            if (has_arg == required_argument) shortopts[ns++] = ':';
        }
    }
    shortopts[ns] = '\0';
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    int c;
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        if (c == 'h') {
            tool_usage(stdout, help);
            return 1;
        }
        const tool_opt *o = NULL;
        for (size_t i = 0; i < n && !o; i++)
            if (lo[i].val == c) o = &opts[i];
        if (!o || take_option(o, optarg) != 0) {
            tool_usage(stderr, help);
            return -1;
        }
    }
    if (operands != TOOL_ANY_OPERANDS && argc - optind != operands) {
        tool_usage(stderr, help);
        return -1;
    }
    return 0;
}

int tool_command(const char *cmd, const char *const *cmds, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(cmd, cmds[i]) == 0) return i;
    return -1;
}

int tool_parse_ll(const char *flag, const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        tw_log("%s: '%s' is not an integer in %lld..%lld", flag, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int tool_parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    long long v;
    if (tool_parse_ll(flag, s, lo, hi, &v) != 0) return -1;
    *out = (int)v;
    return 0;
}

int tool_parse_size(const char *flag, const char *s, size_t hi, size_t *out)
{
    long long v;
    if (tool_parse_ll(flag, s, 0, hi < (size_t)LLONG_MAX ? (long long)hi : LLONG_MAX, &v) != 0) return -1;
    *out = (size_t)v;
    return 0;
}

int tool_parse_double(const char *flag, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        tw_log("%s: '%s' is not a number", flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

int tool_parse_ids(const char *s, int32_t **out, size_t *n)
{
    size_t cap = 0, len = 0;
    int32_t *a = NULL;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) break;
        if (len == cap) {
            int32_t *b = realloc(a, (cap = cap ? 2 * cap : 16) * sizeof *a);
            if (!b) break;
            a = b;
        }
        a[len++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (*s) { /* stopped early: malformed or out of memory */
        free(a);
        return -1;
    }
    *out = a;
    *n = len;
    return 0;
}

/* ---- checkpoints and timing ---- */

int tool_load_model(const char *dir, gpt2_model *m, double *seconds)
{
    char err[1024];
    double t0 = tw_now();
    if (gpt2_load(dir, m, err, sizeof err) != 0) {
        tw_log("%s", err);
        return -1;
    }
    if (seconds) *seconds = tw_now() - t0;
    return 0;
}

int tool_main_model(const char *prog, int argc, char **argv, int (*parse)(int, char **, void *), void *args,
                    int bad_status, const char *const *dir, tool_run_fn run)
{
    int rc = tool_start(prog, argc, argv, parse, args, bad_status);
    if (rc >= 0) return rc;
    gpt2_model m;
    double t_load;
    if (tool_load_model(*dir, &m, &t_load) != 0) return 1;
    rc = run(args, &m, t_load);
    gpt2_free(&m);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

tool_times tool_time_stats(double *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_double);
    return (tool_times){t[0], t[n / 2], t[n - 1]};
}

/* ---- JSON ---- */

json_t *tool_json_real(double x) { return isfinite(x) ? json_real(x) : json_null(); }

/* Appends v (stolen) to a; on failure releases a and returns NULL. */
static json_t *append(json_t *a, json_t *v)
{
    if (a && json_array_append_new(a, v) == 0) return a;
    json_decref(a);
    return NULL;
}

/* An array of item(x, i) for i < n. */
static json_t *array_of(const void *x, size_t n, json_t *(*item)(const void *x, size_t i))
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) a = append(a, item(x, i));
    return a;
}

static json_t *double_at(const void *x, size_t i) { return tool_json_real(((const double *)x)[i]); }
static json_t *float_at(const void *x, size_t i) { return tool_json_real((double)((const float *)x)[i]); }
static json_t *int_at(const void *x, size_t i) { return json_integer(((const int *)x)[i]); }

static json_t *hit_at(const void *x, size_t i)
{
    const topk_hit *h = (const topk_hit *)x + i;
    return json_pack("[io]", (int)h->id, tool_json_real(h->score));
}

typedef struct {
    const topk_hit *h;
    size_t k;
} hit_lists;

static json_t *hit_list_at(const void *x, size_t i)
{
    const hit_lists *l = x;
    return tool_json_hits(l->h + i * l->k, l->k);
}

json_t *tool_json_doubles(const double *x, size_t n) { return array_of(x, n, double_at); }
json_t *tool_json_floats(const float *x, size_t n) { return array_of(x, n, float_at); }
json_t *tool_json_ints(const int *x, size_t n) { return array_of(x, n, int_at); }
json_t *tool_json_hits(const topk_hit *h, size_t k) { return array_of(h, k, hit_at); }

json_t *tool_json_hit_lists(const topk_hit *h, size_t count, size_t k)
{
    return array_of(&(hit_lists){h, k}, count, hit_list_at);
}

int tool_print_json(json_t *v, int digits)
{
    if (!v) {
        tw_log("out of memory building the JSON answer");
        return -1;
    }
    size_t flags = JSON_COMPACT | (digits > 0 ? JSON_REAL_PRECISION(digits) : 0);
    int rc = json_dumpf(v, stdout, flags);
    json_decref(v);
    if (rc != 0 || putchar('\n') == EOF || fflush(stdout) != 0) {
        tw_log("writing the JSON answer failed");
        return -1;
    }
    return 0;
}
