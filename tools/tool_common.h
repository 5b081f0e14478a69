/* What the command-line tools in tools/ share: their error lines (through
 * base/log.h, prefixed with the tool's name), number and list arguments,
 * checkpoint loading with the error printed, timing statistics and the
 * JSON they print (jansson). Built as the static library twtool. */
#ifndef TW_TOOL_COMMON_H
#define TW_TOOL_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/model/gpt2.h"
#include "core/nn/topk.h"

/* Names the running tool and sends every base/log.h line (tw_log) to stderr
 * as "<prog>: <message>". Called first in main (tool_start calls it). */
void tool_init(const char *prog);

/* tool_init(prog), then parse(argc, argv, args), a tool's parse_args (0:
 * run, 1: --help printed, -1: bad arguments, reported). Returns the exit
 * status to end main with, 0 after --help or bad_status after bad
 * arguments, or -1 to go on. */
int tool_start(const char *prog, int argc, char **argv, int (*parse)(int, char **, void *), void *args,
               int bad_status);

/* ---- arguments ---- */

/* What --help prints: the synopsis (also printed on stderr after a usage
 * error) and the details below it. */
typedef struct {
    const char *synopsis, *details;
} tool_help;

/* h->synopsis on f, and on stdout also h->details. */
void tool_usage(FILE *f, const tool_help *h);

/* What an option does with its argument (the field it sets is named by
 * its tool_opt row). */
typedef enum {
    TOOL_O_STR,    /* const char *: the argument itself */
    TOOL_O_SET,    /* int: set to lo; takes no argument (a flag) */
    TOOL_O_INT,    /* int: a whole number in lo..hi */
    TOOL_O_LL,     /* long long: a whole number in lo..hi */
    TOOL_O_SIZE,   /* size_t: a whole number in 0..hi */
    TOOL_O_U64,    /* uint64_t: a whole number in 0..INT64_MAX (seeds) */
    TOOL_O_FLOAT,  /* float: any finite number */
    TOOL_O_CHOICE, /* int: values[i] for the i-th of names (case-insensitive) */
} tool_opt_kind;

/* One option of a tool: --name (and -key when key is not 0). */
typedef struct {
    const char *name;
    tool_opt_kind kind;
    void *at; /* the field it sets, of the kind's type */
    long long lo, hi;
    const char *const *names; /* TOOL_O_CHOICE: the names, NULL-terminated */
    const int *values;        /* TOOL_O_CHOICE: what each name stands for */
    char key;
} tool_opt;

/* Rows of a tool's option table, each checking the type of its field. */
// clang-format off
#define TOOL_FIELD(T, p)                ((void *)(1 ? (p) : (T *)0))
#define OPT_STR(n, p)                   {n, TOOL_O_STR, TOOL_FIELD(const char *, p), 0, 0, NULL, NULL, 0}
#define OPT_FLAG(n, p)                  {n, TOOL_O_SET, TOOL_FIELD(int, p), 1, 0, NULL, NULL, 0}
#define OPT_SET(n, p, v)                {n, TOOL_O_SET, TOOL_FIELD(int, p), v, 0, NULL, NULL, 0}
#define OPT_INT(n, p, lo, hi)           {n, TOOL_O_INT, TOOL_FIELD(int, p), lo, hi, NULL, NULL, 0}
#define OPT_LL(n, p, lo, hi)            {n, TOOL_O_LL, TOOL_FIELD(long long, p), lo, hi, NULL, NULL, 0}
#define OPT_SIZE(n, p, hi)              {n, TOOL_O_SIZE, TOOL_FIELD(size_t, p), 0, hi, NULL, NULL, 0}
#define OPT_U64(n, p)                   {n, TOOL_O_U64, TOOL_FIELD(uint64_t, p), 0, INT64_MAX, NULL, NULL, 0}
#define OPT_FLOAT(n, p)                 {n, TOOL_O_FLOAT, TOOL_FIELD(float, p), 0, 0, NULL, NULL, 0}
#define OPT_CHOICE(n, p, names, values) {n, TOOL_O_CHOICE, TOOL_FIELD(int, p), 0, 0, names, values, 0}
#define OPT_END                         {NULL, TOOL_O_STR, NULL, 0, 0, NULL, NULL, 0}
// clang-format on

/* tool_getopt's `operands` when the tool checks its operands itself. */
#define TOOL_ANY_OPERANDS (-1)

/* Parses the options of argv (getopt_long: --name value, --name=value,
 * and -key) into the fields that opts[] (closed by OPT_END) names; -h and
 * --help print the help on stdout. Then exactly `operands` operands must
 * follow (unless TOOL_ANY_OPERANDS). 0 when every option was taken (optind
 * then indexes the first operand), 1 after --help, -1 after an unknown
 * option, a bad value (logged: "--name: ...") or another count of operands
 * (then the synopsis is printed on stderr). */
int tool_getopt(int argc, char **argv, const tool_opt *opts, const tool_help *help, int operands);

/* The index of cmd in cmds[0..n), or -1. */
int tool_command(const char *cmd, const char *const *cmds, int n);

/* Parses a whole decimal integer in [lo, hi] into *out: 0, or -1 after
 * logging "<flag>: '<s>' is not an integer in <lo>..<hi>". */
int tool_parse_ll(const char *flag, const char *s, long long lo, long long hi, long long *out);

/* The same for an int (lo..hi, within int). */
int tool_parse_int(const char *flag, const char *s, int lo, int hi, int *out);

/* The same for a size (0..hi). */
int tool_parse_size(const char *flag, const char *s, size_t hi, size_t *out);

/* Parses a whole finite decimal number into *out: 0, or -1 after logging
 * "<flag>: '<s>' is not a number". */
int tool_parse_double(const char *flag, const char *s, double *out);

/* Parses "1,2,3" (a trailing comma is allowed, "" is the empty list) into a
 * malloc'd array (*out, *n items; *out may be NULL when *n is 0). -1, with
 * nothing allocated, for an item that is not an integer or lies outside
 * int32, or when memory runs out. Logs nothing: callers name the flag. */
int tool_parse_ids(const char *s, int32_t **out, size_t *n);

/* ---- checkpoints and timing ---- */

/* gpt2_load(dir) into *m; the seconds it took in *seconds (may be NULL).
 * 0, or -1 after logging gpt2_load's one-line error. */
int tool_load_model(const char *dir, gpt2_model *m, double *seconds);

/* What a tool does with its loaded model: the exit status. */
typedef int (*tool_run_fn)(void *args, gpt2_model *m, double t_load);

/* A whole main of a tool that works on one checkpoint: tool_start, then
 * tool_load_model of *dir (a field of args that parse fills in), then
 * run(args, model, seconds the load took), then gpt2_free. The exit
 * status (1 when the model does not load). */
int tool_main_model(const char *prog, int argc, char **argv, int (*parse)(int, char **, void *), void *args,
                    int bad_status, const char *const *dir, tool_run_fn run);

typedef struct {
    double min, median, max; /* median: t[n / 2] of the sorted times */
} tool_times;

/* Sorts t[0..n) (n >= 1) ascending and returns its minimum, median, maximum. */
tool_times tool_time_stats(double *t, size_t n);

/* ---- JSON on stdout ---- */

/* A JSON number of x (null when x is not finite: JSON has no NaN). */
json_t *tool_json_real(double x);

/* Arrays of numbers. */
json_t *tool_json_doubles(const double *x, size_t n);
json_t *tool_json_floats(const float *x, size_t n);
json_t *tool_json_ints(const int *x, size_t n);

/* A hit list as [[id, score], ...]. */
json_t *tool_json_hits(const topk_hit *h, size_t k);

/* count hit lists of k hits each, h[0..count * k), as an array of lists. */
json_t *tool_json_hit_lists(const topk_hit *h, size_t count, size_t k);

/* Writes v as one line of compact JSON on stdout, keys in insertion order,
 * numbers with `digits` significant digits (0: 17, enough for any double),
 * and releases v. 0, or -1 after logging when v is NULL (a builder ran out
 * of memory) or the write failed. */
int tool_print_json(json_t *v, int digits);

#endif
